//! `flotilla-imagegen` builds firmware images for Flotilla's tests, demos and benchmarks: valid
//! ESP32-family and ESP8266 images, gzip wrappers, gzip bombs, and deliberately broken variants.
//!
//! Everything Flotilla's tests feed to the image parser comes from here, so the repository holds
//! no binary blobs. Images are deterministic: the same builder settings and seed give the same
//! bytes on every machine.
//!
//! This crate is a leaf: it must never depend on `flotilla-proto` or `flotilla-core`, because it
//! is the independent second implementation of the formats that the parser is checked against.
//!
//! # Layout
//! - [`Esp32Image`] (`esp32`): `esp_image_header_t` + extended header + segments + XOR checksum
//!   + appended SHA-256, with an `esp_app_desc_t` at file offset 0x20.
//! - [`Esp8266Image`] (`esp8266`): v1 (0xE9), v2 (0xEA) and the Arduino eboot+app layout.
//! - [`gzip`] and [`gzip_bomb`] (`gzip`).
//! - [`Corruption`]: the ways a built image can be broken on purpose.
//! - [`Prng`]: the seeded generator behind every payload byte.
//!
//! ```
//! use flotilla_imagegen::{Corruption, Esp32Chip, Esp32Image};
//!
//! let image = Esp32Image::new().chip(Esp32Chip::Esp32s3).version("1.2.3").size(64 * 1024);
//! let good = image.build();
//! let broken = image.build_corrupted(&Corruption::BadChecksum);
//! assert_eq!(good.len(), 64 * 1024);
//! assert_eq!(good.len(), broken.len());
//! ```

mod corruption;
mod esp32;
mod esp8266;
mod flash;
mod gzip;
mod prng;

pub use corruption::Corruption;
pub use esp32::{APP_DESC_LEN, APP_DESC_MAGIC, APP_DESC_OFFSET, ESP32_HEADER_LEN, Esp32Chip, Esp32Image};
pub use esp8266::{
    ARDUINO_APP_OFFSET, ESP8266_HEADER_LEN, Esp8266Image, Esp8266Layout, TASMOTA_MARKER_HEAD, TASMOTA_MARKER_TAIL,
    tasmota_version,
};
pub use flash::{Esp8266FlashSize, FlashMode, FlashSize, freq};
pub use gzip::{gzip, gzip_bomb};
pub use prng::Prng;

/// First byte of every ESP32 image and of ESP8266 v1 images.
pub const IMAGE_MAGIC: u8 = 0xE9;
/// First byte of ESP8266 v2 images.
pub const IMAGE_V2_MAGIC: u8 = 0xEA;
/// Seed of the XOR checksum over segment data.
pub const CHECKSUM_SEED: u8 = 0xEF;
/// Size of a segment header (`load_addr: u32`, `data_len: u32`).
pub const SEGMENT_HEADER_LEN: usize = 8;
/// Most segments an image header may declare.
pub const MAX_SEGMENTS: usize = 16;

/// Where things are in a built image, so tests can aim at exact offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Every segment in file order (for ESP8266 v2 the IROM segment first; for the Arduino
    /// layout the eboot segments, then the app's).
    pub segments: Vec<SegmentSpan>,
    /// Offset of the XOR checksum byte that a parser verifies (ESP8266 Arduino: eboot's).
    pub checksum_offset: usize,
    /// Offset of the appended SHA-256 digest (ESP32 with `hash_appended`).
    pub digest_offset: Option<usize>,
    /// Offset of the `esp_app_desc_t` (ESP32 with a descriptor).
    pub app_desc_offset: Option<usize>,
    /// Offset of the second image header: ESP8266 v2's 0xE9 header after the IROM segment, or
    /// the Arduino app image at [`ARDUINO_APP_OFFSET`].
    pub second_header_offset: Option<usize>,
    /// Offset of a trailing CRC word: ESP8266 v2's CRC-32 after the checksum, or the Arduino
    /// eboot CRC word at `0x1014` (the image length sits just before it).
    pub crc_offset: Option<usize>,
    /// Offset of the 12-byte Tasmota version marker, if embedded.
    pub tasmota_marker_offset: Option<usize>,
    /// End of the image proper; 0xFF padding (if any) runs from here to the end of the file.
    pub image_end: usize,
    /// Length of the finished file.
    pub file_len: usize,
}

/// One segment of a built image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    /// File offset of the 8-byte segment header.
    pub offset: usize,
    /// Load address written in the header.
    pub load_addr: u32,
    /// Data length written in the header.
    pub len: usize,
}

impl SegmentSpan {
    /// File offset of the segment data.
    pub fn data_offset(&self) -> usize {
        self.offset + SEGMENT_HEADER_LEN
    }

    /// File offset just past the segment data.
    pub fn end(&self) -> usize {
        self.data_offset() + self.len
    }
}

/// The XOR checksum bootloaders compute: [`CHECKSUM_SEED`] XOR every byte of every segment's
/// data. Deliberately the plain byte loop, so the parser's word-wise version has something
/// independent to be checked against.
pub fn xor_checksum<'a>(segments: impl IntoIterator<Item = &'a [u8]>) -> u8 {
    segments.into_iter().flat_map(|s| s.iter()).fold(CHECKSUM_SEED, |acc, b| acc ^ b)
}

/// Where the checksum byte goes when the segment data ends at `end`: the last byte of a 16-byte
/// aligned block (esptool pads with zeros up to `offset % 16 == 15`).
pub fn checksum_offset_after(end: usize) -> usize {
    end + (15 - end % 16)
}

/// Writes a segment header (`load_addr`, `len`, both little-endian) and its data.
fn push_segment(out: &mut Vec<u8>, load_addr: u32, data: &[u8]) {
    out.extend_from_slice(&load_addr.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// Pads with zeros up to the checksum position and writes the checksum byte.
fn push_checksum(out: &mut Vec<u8>, checksum: u8) {
    out.resize(checksum_offset_after(out.len()), 0);
    out.push(checksum);
}

/// Finds the largest "big segment" length (a multiple of `step`, at least `min`) whose image
/// ends at or before `target`, given `image_len(big)`, the image length for a big segment length.
fn fit_big_segment(target: usize, min: usize, step: usize, image_len: impl Fn(usize) -> usize) -> usize {
    let base = image_len(min);
    if target <= base {
        return min;
    }
    let mut big = (min + (target - base)) / step * step;
    while big > min && image_len(big) > target {
        big = big.saturating_sub(step).max(min);
    }
    big
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_lands_on_last_byte_of_16_byte_block() {
        assert_eq!(checksum_offset_after(0), 15);
        assert_eq!(checksum_offset_after(15), 15);
        assert_eq!(checksum_offset_after(16), 31);
        assert_eq!(checksum_offset_after(100), 111);
    }

    #[test]
    fn xor_checksum_of_nothing_is_the_seed() {
        assert_eq!(xor_checksum([]), CHECKSUM_SEED);
        assert_eq!(xor_checksum([&[0xEF_u8][..]]), 0);
        assert_eq!(xor_checksum([&[1_u8, 2][..], &[4][..]]), CHECKSUM_SEED ^ 7);
    }

    #[test]
    fn fit_big_segment_never_overshoots() {
        let len = |big: usize| checksum_offset_after(40 + big) + 1 + 32;
        for target in [0, 10, 100, 4096, 4_089_446] {
            let big = fit_big_segment(target, 16, 4, len);
            assert!(big >= 16);
            if len(16) <= target {
                assert!(len(big) <= target);
                assert!(target - len(big) < 16, "target {target} big {big}");
            }
        }
    }
}
