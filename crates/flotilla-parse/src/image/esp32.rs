//! ESP32-family app images: `esp_image_header_t` (8 common bytes + 16-byte extended header),
//! segments, the XOR checksum at the end of a 16-byte block, the optional SHA-256 of everything
//! up to it, and the `esp_app_desc_t` at the start of the first segment.

use flotilla_proto::firmware::{Chip, ImageFormat, ImageInfo, SegmentInfo};
use sha2::{Digest, Sha256};

use super::layout::{
    SEGMENT_HEADER_LEN, c_string, check_segment_count, expect_padding, flash_mode_name, header, le32, take,
    verify_checksum, walk_segments,
};
use super::{ImageError, base_info};

/// First byte of an ESP32 image (and of an ESP8266 v1 image).
pub(super) const MAGIC: u8 = 0xE9;
const HEADER_LEN: usize = 24;
const CHIP_ID_OFFSET: usize = 12;
const HASH_APPENDED_OFFSET: usize = 23;
const DIGEST_LEN: usize = 32;
const APP_DESC_MAGIC: u32 = 0xABCD_5432;
const APP_DESC_LEN: usize = 256;
/// Secure Boot v2: esptool pads a signed image so its digest ends on a 64 KiB boundary and
/// puts the 4 KiB signature sector (blocks starting 0xE7) right after it.
const SIGNATURE_ALIGN: usize = 0x10000;
const SIGNATURE_SECTOR_LEN: usize = 0x1000;
const SIGNATURE_BLOCK_MAGIC: u8 = 0xE7;

/// The chip for an `esp_chip_id_t` (esptool `IMAGE_CHIP_ID`).
pub(super) fn chip_from_id(id: u16) -> Option<Chip> {
    Some(match id {
        0x0000 => Chip::Esp32,
        0x0002 => Chip::Esp32s2,
        0x0005 => Chip::Esp32c3,
        0x0009 => Chip::Esp32s3,
        0x000C => Chip::Esp32c2,
        0x000D => Chip::Esp32c6,
        0x0010 => Chip::Esp32h2,
        0x0012 => Chip::Esp32p4,
        0x0014 => Chip::Esp32c61,
        0x0017 => Chip::Esp32c5,
        _ => return None,
    })
}

/// Whether the first 24 bytes look like an ESP32 header rather than an ESP8266 header plus the
/// start of its first segment: the extended header's reserved bytes (19..23) are zero, and
/// either `wp_pin` is 0xEE (esptool's "disabled") or the chip id is one we know. In an ESP8266
/// image those bytes are segment data and the first load address. Only used to choose which
/// error to report when an 0xE9 file validates as neither format. Files shorter than a header
/// count as ESP32 so a truncated upload reports the header it lacks.
pub(super) fn looks_like_esp32(bytes: &[u8]) -> bool {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        return true;
    };
    let reserved_zero = h[19] == 0 && h[20] == 0 && h[21] == 0 && h[22] == 0;
    let chip_known = chip_from_id(u16::from_le_bytes([h[12], h[13]])).is_some();
    reserved_zero && (h[8] == 0xEE || chip_known)
}

/// Parses and validates an ESP32-family image. Also returns the SHA-256 of the whole file,
/// computed in the same pass as the appended digest: the hasher is fed up to the checksum byte,
/// a clone is finalized for the digest, and the original goes on over the rest.
pub(super) fn parse(bytes: &[u8]) -> Result<(ImageInfo, Option<[u8; 32]>), ImageError> {
    let h: &[u8; HEADER_LEN] = header(bytes, 0, "ESP32 image header")?;
    check_segment_count(h[1], 1)?;
    let chip_id = u16::from_le_bytes([h[12], h[13]]);
    let chip = chip_from_id(chip_id).ok_or(ImageError::UnknownChipId { chip_id, offset: CHIP_ID_OFFSET as u64 })?;
    let hash_appended = match h[HASH_APPENDED_OFFSET] {
        0 => false,
        1 => true,
        other => {
            return Err(ImageError::InvalidField {
                field: "hash_appended",
                offset: HASH_APPENDED_OFFSET as u64,
                detail: format!("{other:#04x} (expected 0 or 1)"),
            });
        }
    };

    let walk = walk_segments(bytes, HEADER_LEN, h[1], 0)?;
    let checksum_at = verify_checksum(bytes, walk.end, walk.xor)?;
    let mut end = checksum_at + 1;

    let mut hasher = Sha256::new();
    let mut hashed = 0;
    if hash_appended {
        let stored = take(bytes, end, DIGEST_LEN, || "SHA-256 digest".to_owned())?;
        hasher.update(bytes.get(..end).unwrap_or_default());
        hashed = end;
        if hasher.clone().finalize().as_slice() != stored {
            return Err(ImageError::DigestMismatch { offset: end as u64 });
        }
        end += DIGEST_LEN;
    }
    expect_padding(bytes, skip_signature_sector(bytes, end), "image")?;

    let mut info = base_info(ImageFormat::Esp32, chip, bytes, le32(h, 4).unwrap_or(0));
    info.hash_appended = hash_appended;
    info.flash_mode = flash_mode_name(h[2]);
    info.flash_size = flash_size_name(h[3] >> 4);
    info.flash_freq = flash_freq_name(chip, h[3] & 0x0F);
    let min_full = u16::from_le_bytes([h[15], h[16]]);
    // Images from before ESP-IDF 5.0 only have the legacy major-revision byte.
    info.min_chip_rev = Some(if min_full == 0 { u16::from(h[14]) * 100 } else { min_full });
    info.max_chip_rev = Some(u16::from_le_bytes([h[17], h[18]]));
    read_app_desc(bytes, walk.segments.first(), &mut info)?;
    info.segments = walk.segments;

    hasher.update(bytes.get(hashed..).unwrap_or_default());
    Ok((info, Some(hasher.finalize().into())))
}

/// Where padding checks resume after the image: past a Secure Boot v2 signature sector if one
/// sits where esptool puts it, else at `end`.
fn skip_signature_sector(bytes: &[u8], end: usize) -> usize {
    let signed = end.is_multiple_of(SIGNATURE_ALIGN)
        && bytes.get(end) == Some(&SIGNATURE_BLOCK_MAGIC)
        && matches!(bytes.get(end + 1), Some(0x02 | 0x03));
    if signed { (end + SIGNATURE_SECTOR_LEN).min(bytes.len()) } else { end }
}

/// Fills the descriptor fields if the first segment starts with `esp_app_desc_t`.
fn read_app_desc(bytes: &[u8], first: Option<&SegmentInfo>, info: &mut ImageInfo) -> Result<(), ImageError> {
    let Some(segment) = first else {
        return Ok(());
    };
    let start = usize::try_from(segment.offset).unwrap_or(usize::MAX) + SEGMENT_HEADER_LEN;
    let data = bytes
        .get(start..)
        .and_then(|rest| rest.get(..usize::try_from(segment.len).unwrap_or(usize::MAX)))
        .unwrap_or_default();
    if le32(data, 0) != Some(APP_DESC_MAGIC) {
        return Ok(());
    }
    let desc = take(data, 0, APP_DESC_LEN, || "app descriptor in segment 0".to_owned()).map_err(|e| match e {
        ImageError::Truncated { what, needed, available, .. } => {
            ImageError::Truncated { what, offset: start as u64, needed, available }
        }
        other => other,
    })?;
    let field = |name: &'static str, at: usize, len: usize| {
        let raw = desc.get(at..at + len).unwrap_or_default();
        c_string(raw, name, start + at)
    };
    info.secure_version = le32(desc, 4);
    info.version = field("version", 16, 32)?;
    info.project = field("project_name", 48, 32)?;
    info.compile_time = field("time", 80, 16)?;
    info.compile_date = field("date", 96, 16)?;
    info.idf_version = field("idf_ver", 112, 32)?;
    info.app_elf_sha256 = desc.get(144..176).map(hex::encode);
    Ok(())
}

/// Flash size for the high nibble of header byte 3 (ESP32-family table).
fn flash_size_name(nibble: u8) -> Option<String> {
    let mb = match nibble {
        0..=7 => 1u32 << nibble,
        _ => return None,
    };
    Some(format!("{mb}MB"))
}

/// Flash frequency for the low nibble of header byte 3. The nibble is a divider of the flash
/// clock, which differs per chip (esptool `FLASH_FREQUENCY`).
fn flash_freq_name(chip: Chip, nibble: u8) -> Option<String> {
    let mhz = match (chip, nibble) {
        (Chip::Esp32c2, 0xF) => 60,
        (Chip::Esp32c2, 0x0) => 30,
        (Chip::Esp32c2, 0x1) => 20,
        (Chip::Esp32c2, 0x2) => 15,
        (Chip::Esp32h2, 0xF) => 48,
        (Chip::Esp32h2, 0x0) => 24,
        (Chip::Esp32h2, 0x1) => 16,
        (Chip::Esp32h2, 0x2) => 12,
        (Chip::Esp32c2 | Chip::Esp32h2, _) => return None,
        (_, 0xF) => 80,
        (_, 0x0) => 40,
        (_, 0x1) => 26,
        (_, 0x2) => 20,
        _ => return None,
    };
    Some(format!("{mhz}m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_tables() {
        assert_eq!(flash_size_name(0).as_deref(), Some("1MB"));
        assert_eq!(flash_size_name(2).as_deref(), Some("4MB"));
        assert_eq!(flash_size_name(7).as_deref(), Some("128MB"));
        assert_eq!(flash_size_name(8), None);
        assert_eq!(flash_freq_name(Chip::Esp32, 0xF).as_deref(), Some("80m"));
        assert_eq!(flash_freq_name(Chip::Esp32s3, 0x0).as_deref(), Some("40m"));
        assert_eq!(flash_freq_name(Chip::Esp32c2, 0xF).as_deref(), Some("60m"));
        assert_eq!(flash_freq_name(Chip::Esp32h2, 0x0).as_deref(), Some("24m"));
        assert_eq!(flash_freq_name(Chip::Esp32, 0x7), None);
    }

    #[test]
    fn every_chip_id_round_trips() {
        for chip in flotilla_imagegen::Esp32Chip::ALL {
            let ours = chip_from_id(chip.chip_id());
            assert_eq!(ours.map(Chip::as_str), Some(chip.name()));
        }
    }
}
