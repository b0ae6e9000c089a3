//! Bounds-checked reads, the segment walk and the XOR checksum, shared by every format.
//!
//! Every read goes through `get(..)`; a short file becomes [`ImageError::Truncated`] or
//! [`ImageError::SegmentOutOfBounds`], never a panic.

use flotilla_proto::firmware::SegmentInfo;

use super::ImageError;

/// Size of a segment header (`load_addr: u32`, `data_len: u32`).
pub(super) const SEGMENT_HEADER_LEN: usize = 8;
/// Most segments a header may declare (ESP-IDF `ESP_IMAGE_MAX_SEGMENTS`, esptool's limit too).
pub(super) const MAX_SEGMENTS: u8 = 16;
/// Seed of the XOR checksum.
const CHECKSUM_SEED: u8 = 0xEF;

/// `len` bytes at `offset`, or [`ImageError::Truncated`] naming `what` (built only on error).
pub(super) fn take(
    bytes: &[u8],
    offset: usize,
    len: usize,
    what: impl FnOnce() -> String,
) -> Result<&[u8], ImageError> {
    bytes.get(offset..).and_then(|rest| rest.get(..len)).ok_or_else(|| ImageError::Truncated {
        what: what(),
        offset: offset as u64,
        needed: len as u64,
        available: bytes.len().saturating_sub(offset) as u64,
    })
}

/// A fixed-size header at `offset`.
pub(super) fn header<'a, const N: usize>(
    bytes: &'a [u8],
    offset: usize,
    what: &'static str,
) -> Result<&'a [u8; N], ImageError> {
    take(bytes, offset, N, || what.to_owned())?.first_chunk::<N>().ok_or_else(|| ImageError::Truncated {
        what: what.to_owned(),
        offset: offset as u64,
        needed: N as u64,
        available: 0,
    })
}

/// Little-endian `u32` at `offset` of `bytes`, if it is there.
pub(super) fn le32(bytes: &[u8], offset: usize) -> Option<u32> {
    bytes.get(offset..).and_then(|rest| rest.first_chunk::<4>()).map(|w| u32::from_le_bytes(*w))
}

/// Checks a header's segment count byte (at `offset`).
pub(super) fn check_segment_count(count: u8, offset: usize) -> Result<(), ImageError> {
    if count == 0 {
        return Err(ImageError::NoSegments { offset: offset as u64 });
    }
    if count > MAX_SEGMENTS {
        return Err(ImageError::TooManySegments { count, offset: offset as u64, max: MAX_SEGMENTS });
    }
    Ok(())
}

/// What walking a run of segments found.
#[derive(Debug)]
pub(super) struct Walk {
    /// The segments, in file order.
    pub segments: Vec<SegmentInfo>,
    /// Offset just past the last segment's data.
    pub end: usize,
    /// XOR of all segment data, folded into 64 bits (see [`checksum_byte`]).
    pub xor: u64,
}

/// Walks `count` segments starting at `start`, checking each lies inside the file, and XORs
/// their data on the way. `first_index` numbers them in errors (segments of one file are
/// numbered across its sub-images).
pub(super) fn walk_segments(bytes: &[u8], start: usize, count: u8, first_index: usize) -> Result<Walk, ImageError> {
    let mut segments = Vec::with_capacity(usize::from(count));
    let mut offset = start;
    let mut xor = 0u64;
    for i in 0..usize::from(count) {
        let index = first_index + i;
        let head = take(bytes, offset, SEGMENT_HEADER_LEN, || format!("segment {index} header"))?;
        let load_addr = le32(head, 0).unwrap_or(0);
        let len = le32(head, 4).unwrap_or(0);
        let data_offset = offset + SEGMENT_HEADER_LEN;
        let data = bytes
            .get(data_offset..)
            .and_then(|rest| rest.get(..usize::try_from(len).unwrap_or(usize::MAX)))
            .ok_or(ImageError::SegmentOutOfBounds {
                index,
                offset: offset as u64,
                len,
                remaining: bytes.len().saturating_sub(data_offset) as u64,
            })?;
        xor = xor_words(xor, data);
        segments.push(SegmentInfo { offset: offset as u64, load_addr, len });
        offset = data_offset + data.len();
    }
    Ok(Walk { segments, end: offset, xor })
}

/// XORs `data` into a 64-bit accumulator, eight bytes at a time. The checksum is the XOR of
/// every byte, which does not depend on where a byte sits in the word, so the lanes can be
/// folded at the end ([`checksum_byte`]).
pub(super) fn xor_words(acc: u64, data: &[u8]) -> u64 {
    let (blocks, rest) = data.as_chunks::<32>();
    // Four independent lanes let the compiler keep several loads in flight (and vectorize).
    let mut lanes = [0u64; 4];
    for block in blocks {
        for (lane, word) in lanes.iter_mut().zip(block.as_chunks::<8>().0) {
            *lane ^= u64::from_le_bytes(*word);
        }
    }
    let (words, tail) = rest.as_chunks::<8>();
    let mut acc = lanes.iter().fold(acc, |a, l| a ^ l);
    for word in words {
        acc ^= u64::from_le_bytes(*word);
    }
    for byte in tail {
        acc ^= u64::from(*byte);
    }
    acc
}

/// The checksum byte for an accumulator from [`xor_words`]: the seed XOR every byte.
pub(super) fn checksum_byte(acc: u64) -> u8 {
    acc.to_le_bytes().iter().fold(CHECKSUM_SEED, |sum, byte| sum ^ byte)
}

/// Where the checksum byte sits when segment data ends at `end`: the last byte of the 16-byte
/// block (esptool pads up to `offset % 16 == 15`).
pub(super) fn checksum_offset(end: usize) -> usize {
    end + (15 - end % 16)
}

/// Reads the checksum byte after segment data ending at `end` and compares it with `xor`.
/// Returns the checksum's offset.
pub(super) fn verify_checksum(bytes: &[u8], end: usize, xor: u64) -> Result<usize, ImageError> {
    let at = checksum_offset(end);
    let stored = take(bytes, at, 1, || "checksum byte".to_owned())?.first().copied().unwrap_or(0);
    let computed = checksum_byte(xor);
    if stored != computed {
        return Err(ImageError::ChecksumMismatch { offset: at as u64, stored, computed });
    }
    Ok(at)
}

/// Offset of the first byte that is not 0xFF, scanning a word at a time.
pub(super) fn first_non_ff(data: &[u8]) -> Option<usize> {
    let (words, _) = data.as_chunks::<8>();
    let word = words.iter().position(|w| *w != [0xFF; 8]);
    let base = word.map_or(words.len() * 8, |w| w * 8);
    let scan = data.get(base..).unwrap_or_default();
    scan.iter().position(|b| *b != 0xFF).map(|i| base + i)
}

/// Requires everything from `from` to the end of the file to be 0xFF padding.
pub(super) fn expect_padding(bytes: &[u8], from: usize, after: &'static str) -> Result<(), ImageError> {
    let rest = bytes.get(from..).unwrap_or_default();
    match first_non_ff(rest) {
        None => Ok(()),
        Some(i) => Err(ImageError::TrailingData { offset: (from + i) as u64, len: (rest.len() - i) as u64, after }),
    }
}

/// A NUL-padded C string field; `None` when empty, an error when not UTF-8.
pub(super) fn c_string(field: &[u8], name: &'static str, offset: usize) -> Result<Option<String>, ImageError> {
    let len = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let raw = field.get(..len).unwrap_or_default();
    let text =
        std::str::from_utf8(raw).map_err(|_| ImageError::InvalidString { field: name, offset: offset as u64 })?;
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// SPI flash mode name for header byte 2 (same codes on every chip).
pub(super) fn flash_mode_name(code: u8) -> Option<String> {
    let name = match code {
        0 => "qio",
        1 => "qout",
        2 => "dio",
        3 => "dout",
        4 => "fast-read",
        5 => "slow-read",
        _ => return None,
    };
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_words_matches_a_byte_loop_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let slice = &data[start..end];
                let bytewise = slice.iter().fold(0xEF, |a, b| a ^ b);
                assert_eq!(checksum_byte(xor_words(0, slice)), bytewise, "{start}..{end}");
            }
        }
    }

    #[test]
    fn first_non_ff_finds_the_first_byte() {
        let mut data = vec![0xFF; 100];
        assert_eq!(first_non_ff(&data), None);
        for at in [0, 7, 8, 63, 95, 96, 99] {
            data.fill(0xFF);
            data[at] = 0;
            assert_eq!(first_non_ff(&data), Some(at));
        }
        assert_eq!(first_non_ff(&[]), None);
    }

    #[test]
    fn c_strings() {
        assert_eq!(c_string(b"1.2.3\0\0junk", "v", 0).ok().flatten().as_deref(), Some("1.2.3"));
        assert_eq!(c_string(b"abcd", "v", 0).ok().flatten().as_deref(), Some("abcd"));
        assert!(matches!(c_string(b"\0\0", "v", 0), Ok(None)));
        assert!(matches!(
            c_string(b"a\xFFb\0", "version", 48),
            Err(ImageError::InvalidString { field: "version", offset: 48 })
        ));
    }
}
