//! gzip wrappers: the `.bin.gz` form ESP8266 devices accept, and a bomb to prove the parser caps
//! how much it inflates.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// gzip of `bytes` at the default level, like Tasmota's and PlatformIO's `.bin.gz`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// A small gzip file that inflates to `inflated_len` bytes: 0xE9 followed by zeros, so it even
/// looks like an image until the parser has inflated too much of it. It is built in chunks, so
/// making a 64 MiB bomb does not allocate 64 MiB.
pub fn gzip_bomb(inflated_len: usize) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    let chunk = vec![0u8; 1 << 20];
    let mut left = inflated_len;
    if left > 0 {
        let _ = encoder.write_all(&[0xE9]);
        left -= 1;
    }
    while left > 0 {
        let n = left.min(chunk.len());
        let _ = encoder.write_all(chunk.get(..n).unwrap_or(&[]));
        left -= n;
    }
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::Esp32Image;

    #[test]
    fn gzip_round_trips_and_compresses_realistically() {
        let image = Esp32Image::new().size(1 << 20).build();
        let gz = gzip(&image);
        assert_eq!(&gz[..2], &[0x1F, 0x8B]);
        let ratio = gz.len() as f64 / image.len() as f64;
        assert!((0.4..0.9).contains(&ratio), "compression ratio {ratio}");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap_or_default();
        assert_eq!(back, image);
    }

    #[test]
    fn bomb_is_small_and_inflates_to_the_requested_size() {
        let bomb = gzip_bomb(64 << 20);
        assert!(bomb.len() < 128 * 1024, "bomb is {} bytes", bomb.len());
        let mut head = [0u8; 4];
        let mut decoder = flate2::read::GzDecoder::new(&bomb[..]);
        decoder.read_exact(&mut head).unwrap_or_default();
        assert_eq!(head, [0xE9, 0, 0, 0]);
        let rest = std::io::copy(&mut decoder, &mut std::io::sink()).unwrap_or(0);
        assert_eq!(rest + 4, 64 << 20);
    }
}
