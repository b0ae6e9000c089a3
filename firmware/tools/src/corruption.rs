//! Deliberate damage to built images, one fault at a time, for the parser's error tests.

use crate::Layout;
use crate::esp32::{flip, put};

/// One way to break an image. Apply it with `Esp32Image::build_corrupted` or
/// `Esp8266Image::build_corrupted`: the builder knows the layout, and re-seals checksums and
/// digests around the change where that is needed for the image to be wrong in exactly one way.
/// A corruption that does not apply to a format (an app descriptor on ESP8266, say) leaves the
/// image unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// First byte becomes 0x7F (as in an ELF file given by mistake).
    BadMagic,
    /// The file is cut to this many bytes (no change if it is not longer).
    TruncateAt(usize),
    /// The last segment declares more bytes than the file has after its header.
    SegmentLenPastEnd,
    /// The checksum byte is wrong; an appended digest is recomputed, so only the checksum is off.
    BadChecksum,
    /// The appended SHA-256 digest is wrong (ESP32 with `hash_appended`).
    BadDigest,
    /// ESP32 `chip_id` replaced; checksum and digest still match.
    UnknownChipId(u16),
    /// ESP32 `esp_app_desc_t` magic broken; the image is otherwise valid (an image without a
    /// descriptor).
    BadAppDescMagic,
    /// ESP32 descriptor `version` holds invalid UTF-8; otherwise valid.
    NonUtf8Version,
    /// The header's segment count byte is set to this value (use > 16).
    TooManySegments(u8),
    /// The header's segment count byte is set to 0.
    NoSegments,
    /// ESP32 `hash_appended` byte (header offset 23) set to this value, digest recomputed.
    HashAppendedFlag(u8),
    /// This many 0x5A bytes are appended after the image and its padding.
    TrailingGarbage(usize),
    /// The byte at this offset is XORed with 0xFF and nothing is re-sealed.
    FlipByte(usize),
    /// ESP8266 v2 or Arduino: the first byte of the second image header becomes this value.
    SecondHeaderMagic(u8),
    /// ESP8266 v2 or Arduino: the trailing CRC word is wrong.
    BadCrc,
}

impl Corruption {
    /// The format-independent corruptions, applied after sealing.
    pub(crate) fn apply_generic(&self, bytes: &mut Vec<u8>, layout: &Layout) {
        match self {
            Corruption::BadMagic => put(bytes, 0, &[0x7F]),
            Corruption::TruncateAt(n) => bytes.truncate(*n),
            Corruption::SegmentLenPastEnd => {
                if let Some(last) = layout.segments.last() {
                    let remaining = bytes.len().saturating_sub(last.data_offset());
                    let len = (remaining + 0x1000) as u32;
                    put(bytes, last.offset + 4, &len.to_le_bytes());
                }
            }
            Corruption::TooManySegments(n) => put(bytes, 1, &[*n]),
            Corruption::NoSegments => put(bytes, 1, &[0]),
            Corruption::TrailingGarbage(n) => bytes.resize(bytes.len() + n, 0x5A),
            Corruption::FlipByte(offset) => flip(bytes, *offset, 0xFF),
            Corruption::SecondHeaderMagic(magic) => {
                if let Some(off) = layout.second_header_offset {
                    put(bytes, off, &[*magic]);
                }
            }
            Corruption::BadCrc => {
                if let Some(off) = layout.crc_offset {
                    flip(bytes, off, 0x01);
                }
            }
            Corruption::BadChecksum
            | Corruption::BadDigest
            | Corruption::UnknownChipId(_)
            | Corruption::BadAppDescMagic
            | Corruption::NonUtf8Version
            | Corruption::HashAppendedFlag(_) => {}
        }
    }
}
