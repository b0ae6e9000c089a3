//! ESP8266 images:
//! - v1 (magic 0xE9): 8-byte header `<BBBBI>`, segments, checksum at the end of a 16-byte block.
//! - Arduino core `.bin` (`elf2bin.py`): a v1 eboot image, 0xAA padding up to 0x1000, the sketch
//!   as a second v1 image there, and eboot's CRC (image length at 0x1010, CRC-32/MPEG-2 at
//!   0x1014, both taken as zero while computing). The sketch's own XOR checksum is not checked:
//!   `elf2bin.py` writes those two CRC words into the sketch's first segment after computing it,
//!   so on real files it never matches. The CRC covers the sketch instead.
//! - v2 (magic 0xEA): header, the IROM segment (outside the checksum), a normal 0xE9 header with
//!   the loadable segments and checksum, then (esptool) a CRC-32 of everything before it.
//!
//! There is no app descriptor; the version comes from Tasmota's marker if the image has one.

use flotilla_proto::firmware::{Chip, ImageFormat, ImageInfo};

use super::layout::{
    check_segment_count, expect_padding, flash_mode_name, header, le32, take, verify_checksum, walk_segments,
};
use super::{ImageError, base_info};

/// First byte of a v2 image.
pub(super) const V2_MAGIC: u8 = 0xEA;
const V1_MAGIC: u8 = 0xE9;
const HEADER_LEN: usize = 8;
/// Where `elf2bin.py` puts the sketch image.
const ARDUINO_APP_OFFSET: usize = 0x1000;
const ARDUINO_LEN_OFFSET: usize = ARDUINO_APP_OFFSET + 16;
const ARDUINO_CRC_OFFSET: usize = ARDUINO_APP_OFFSET + 20;
/// Bytes `elf2bin.py` pads eboot with (0xAA), plus erased flash (0xFF).
const GAP_FILL: [u8; 2] = [0xAA, 0xFF];
const V2_CRC_LEN: usize = 4;
const MARKER_HEAD: [u8; 4] = [0xA5, 0x5A, 0xA5, 0x5A];
const MARKER_TAIL: [u8; 4] = [0x5A, 0xA5, 0x5A, 0xA5];

/// Parses and validates a v1 image (plain or Arduino layout).
pub(super) fn parse_v1(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let h: &[u8; HEADER_LEN] = header(bytes, 0, "ESP8266 image header")?;
    check_segment_count(h[1], 1)?;
    let walk = walk_segments(bytes, HEADER_LEN, h[1], 0)?;
    let end = verify_checksum(bytes, walk.end, walk.xor)? + 1;
    let mut segments = walk.segments;
    let mut entry = le32(h, 4).unwrap_or(0);

    let end = match arduino_sketch(bytes, end, segments.len())? {
        Some(sketch) => {
            entry = sketch.entry;
            segments.extend(sketch.segments);
            sketch.end
        }
        None => end,
    };
    expect_padding(bytes, end, "image")?;

    let mut info = info_from_header(bytes, h, entry, 1);
    info.segments = segments;
    Ok(info)
}

/// Parses and validates a v2 image. Flash settings and entry come from the second header, as
/// esptool reads them.
pub(super) fn parse_v2(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    // The first header's flash settings repeat in the second one, which esptool uses.
    header::<HEADER_LEN>(bytes, 0, "ESP8266 v2 image header")?;
    let irom = walk_segments(bytes, HEADER_LEN, 1, 0)?;
    let second_at = irom.end;
    let h: &[u8; HEADER_LEN] = header(bytes, second_at, "ESP8266 v2 second image header")?;
    if h[0] != V1_MAGIC {
        return Err(ImageError::InvalidField {
            field: "second image header magic",
            offset: second_at as u64,
            detail: format!("{:#04x} (expected 0xe9 after the IROM segment)", h[0]),
        });
    }
    check_segment_count(h[1], second_at + 1)?;
    let walk = walk_segments(bytes, second_at + HEADER_LEN, h[1], 1)?;
    let mut end = verify_checksum(bytes, walk.end, walk.xor)? + 1;

    // esptool appends `esp8266_crc32` of everything before it; older tools append nothing.
    if let Some(stored) = le32(bytes, end)
        && stored != u32::MAX
    {
        let computed = esptool_crc32(bytes.get(..end).unwrap_or_default());
        if stored != computed {
            return Err(ImageError::CrcMismatch { offset: end as u64, stored, computed });
        }
        end += V2_CRC_LEN;
    }
    expect_padding(bytes, end, "image")?;

    let mut info = info_from_header(bytes, h, le32(h, 4).unwrap_or(0), 2);
    info.segments = irom.segments;
    info.segments.extend(walk.segments);
    Ok(info)
}

fn info_from_header(bytes: &[u8], h: &[u8; HEADER_LEN], entry: u32, version: u8) -> ImageInfo {
    let mut info = base_info(ImageFormat::Esp8266, Chip::Esp8266, bytes, entry);
    info.esp8266_image_version = Some(version);
    info.flash_mode = flash_mode_name(h[2]);
    info.flash_size = flash_size_name(h[3] >> 4);
    info.flash_freq = flash_freq_name(h[3] & 0x0F);
    info.version = tasmota_version(bytes);
    info
}

/// The sketch image of an Arduino `.bin`, when one follows eboot.
struct Sketch {
    segments: Vec<flotilla_proto::firmware::SegmentInfo>,
    entry: u32,
    end: usize,
}

/// Looks for the Arduino sketch image after the eboot image ending at `eboot_end`: only
/// padding up to 0x1000, then an 0xE9 header there. Anything else is left for the padding check
/// to report. A file that stops inside 0xAA padding is a truncated Arduino image.
fn arduino_sketch(bytes: &[u8], eboot_end: usize, first_index: usize) -> Result<Option<Sketch>, ImageError> {
    let Some(gap) = bytes.get(eboot_end..ARDUINO_APP_OFFSET.min(bytes.len())) else {
        return Ok(None);
    };
    if !gap.iter().all(|b| GAP_FILL.contains(b)) {
        return Ok(None);
    }
    if bytes.len() <= ARDUINO_APP_OFFSET {
        if gap.contains(&0xAA) {
            return Err(ImageError::Truncated {
                what: "Arduino sketch image header".to_owned(),
                offset: ARDUINO_APP_OFFSET as u64,
                needed: HEADER_LEN as u64,
                available: 0,
            });
        }
        return Ok(None);
    }
    if bytes.get(ARDUINO_APP_OFFSET) != Some(&V1_MAGIC) {
        return Ok(None);
    }
    let h: &[u8; HEADER_LEN] = header(bytes, ARDUINO_APP_OFFSET, "Arduino sketch image header")?;
    check_segment_count(h[1], ARDUINO_APP_OFFSET + 1)?;
    let walk = walk_segments(bytes, ARDUINO_APP_OFFSET + HEADER_LEN, h[1], first_index)?;
    let checksum_at = super::layout::checksum_offset(walk.end);
    take(bytes, checksum_at, 1, || "sketch checksum byte".to_owned())?;
    let end = checksum_at + 1;

    // The length word tells a CRC-stamped file from an older one without the CRC.
    if le32(bytes, ARDUINO_LEN_OFFSET).and_then(|len| usize::try_from(len).ok()) == Some(end) {
        let stored = le32(bytes, ARDUINO_CRC_OFFSET).unwrap_or(0);
        let computed = eboot_crc(bytes.get(..end).unwrap_or_default());
        if stored != computed {
            return Err(ImageError::CrcMismatch { offset: ARDUINO_CRC_OFFSET as u64, stored, computed });
        }
    }
    Ok(Some(Sketch { segments: walk.segments, entry: le32(h, 4).unwrap_or(0), end }))
}

/// eboot's CRC over `data` with the length and CRC words read as zero: CRC-32/MPEG-2
/// (polynomial 0x04C11DB7, MSB first, initial value all ones, no final XOR).
fn eboot_crc(data: &[u8]) -> u32 {
    let head = data.get(..ARDUINO_LEN_OFFSET).unwrap_or_default();
    let tail = data.get(ARDUINO_CRC_OFFSET + 4..).unwrap_or_default();
    let crc = mpeg2_update(0xFFFF_FFFF, head);
    let crc = mpeg2_update(crc, &[0; 8]);
    mpeg2_update(crc, tail)
}

const MPEG2_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn mpeg2_update(crc: u32, data: &[u8]) -> u32 {
    data.iter().fold(crc, |crc, byte| {
        let index = usize::from((crc >> 24) as u8 ^ byte);
        (crc << 8) ^ MPEG2_TABLE.get(index).copied().unwrap_or(0)
    })
}

/// esptool's `esp8266_crc32`: zlib's CRC-32, then flipped when the top bit is set, else plus one.
fn esptool_crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let crc = crc.sum();
    if crc & 0x8000_0000 != 0 { crc ^ 0xFFFF_FFFF } else { crc.wrapping_add(1) }
}

/// The version in Tasmota's `VERSION_MARKER` (`A5 5A A5 5A | u32 LE | 5A A5 5A A5`,
/// `major<<24 | minor<<16 | patch<<8 | build`) as `major.minor.patch`. Current Tasmota writes
/// 0xFFFFFFFF there, which means "no version".
fn tasmota_version(bytes: &[u8]) -> Option<String> {
    let mut rest = bytes;
    while let Some(at) = rest.windows(4).position(|w| w == MARKER_HEAD) {
        let candidate = rest.get(at..).unwrap_or_default();
        if let Some((_, after)) = candidate.split_first_chunk::<4>()
            && let Some((word, after)) = after.split_first_chunk::<4>()
            && after.starts_with(&MARKER_TAIL)
        {
            let version = u32::from_le_bytes(*word);
            if version == u32::MAX {
                return None;
            }
            let [major, minor, patch, _build] = version.to_be_bytes();
            return Some(format!("{major}.{minor}.{patch}"));
        }
        rest = rest.get(at + 1..).unwrap_or_default();
    }
    None
}

/// ESP8266 flash size for the high nibble of header byte 3 (esptool `ESP8266ROM.FLASH_SIZES`).
fn flash_size_name(nibble: u8) -> Option<String> {
    let name = match nibble {
        0x0 => "512KB",
        0x1 => "256KB",
        0x2 => "1MB",
        0x3 => "2MB",
        0x4 => "4MB",
        0x5 => "2MB-c1",
        0x6 => "4MB-c1",
        0x8 => "8MB",
        0x9 => "16MB",
        _ => return None,
    };
    Some(name.to_owned())
}

/// ESP8266 flash frequency for the low nibble of header byte 3.
fn flash_freq_name(nibble: u8) -> Option<String> {
    let name = match nibble {
        0x0 => "40m",
        0x1 => "26m",
        0x2 => "20m",
        0xF => "80m",
        _ => return None,
    };
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpeg2_check_value() {
        assert_eq!(mpeg2_update(0xFFFF_FFFF, b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn marker_search() {
        let mut bytes = vec![0xA5, 0x5A, 0xA5, 0x00, 0xA5];
        bytes.extend_from_slice(&MARKER_HEAD);
        bytes.extend_from_slice(&0x0E03_0001_u32.to_le_bytes());
        bytes.extend_from_slice(&MARKER_TAIL);
        assert_eq!(tasmota_version(&bytes).as_deref(), Some("14.3.0"));
        assert_eq!(tasmota_version(&bytes[..bytes.len() - 1]), None);
        let mut unset = MARKER_HEAD.to_vec();
        unset.extend_from_slice(&[0xFF; 4]);
        unset.extend_from_slice(&MARKER_TAIL);
        assert_eq!(tasmota_version(&unset), None);
    }
}
