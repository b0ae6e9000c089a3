//! Parser tests against images built by `flotilla-imagegen`, the independent implementation of
//! the same formats.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use flotilla_imagegen::{
    Corruption, Esp32Chip, Esp32Image, Esp8266FlashSize, Esp8266Image, Esp8266Layout, FlashMode, FlashSize, Layout,
    Prng, freq, gzip, gzip_bomb, tasmota_version,
};
use flotilla_proto::firmware::{Chip, GzipForm, ImageFormat, ImageInfo};
use sha2::{Digest, Sha256};

use super::{DEFAULT_GZIP_LIMIT, ImageError, inspect, inspect_with_limit, read};

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn ok(bytes: &[u8]) -> ImageInfo {
    match inspect(bytes) {
        Ok(info) => info,
        Err(e) => panic!("expected a valid image, got: {e}"),
    }
}

fn err(bytes: &[u8]) -> ImageError {
    match inspect(bytes) {
        Ok(info) => panic!("expected an error, got {info:?}"),
        Err(e) => e,
    }
}

fn assert_segments_match(info: &ImageInfo, layout: &Layout) {
    assert_eq!(info.segments.len(), layout.segments.len());
    for (got, want) in info.segments.iter().zip(&layout.segments) {
        assert_eq!(got.offset, want.offset as u64);
        assert_eq!(got.load_addr, want.load_addr);
        assert_eq!(got.len as usize, want.len);
    }
}

fn proto_chip(chip: Esp32Chip) -> Chip {
    Chip::parse(chip.name()).unwrap()
}

// ---------------------------------------------------------------- ESP32 family: valid images

#[test]
fn esp32_every_field_reads_back_for_every_chip() {
    for (i, chip) in Esp32Chip::ALL.into_iter().enumerate() {
        let elf_sha = [i as u8 + 1; 32];
        let image = Esp32Image::new()
            .chip(chip)
            .version(format!("{i}.2.3"))
            .project(format!("proj-{}", chip.name()))
            .idf_version("v5.4.1-dirty")
            .compile_time("10:11:12")
            .compile_date("Mar  4 2025")
            .secure_version(7 + i as u32)
            .app_elf_sha256(elf_sha)
            .min_chip_rev(100 + i as u16)
            .max_chip_rev(399)
            .flash_mode(FlashMode::Qio)
            .flash_size(FlashSize::Mb8)
            .flash_freq_code(freq::DIV2)
            .entry_addr(0x4200_1234)
            .segments(1 + i % 16)
            .size(20_000 + 1_000 * i)
            .seed(i as u64);
        let (bytes, layout) = image.build_with_layout();
        let info = ok(&bytes);

        assert_eq!(info.format, ImageFormat::Esp32);
        assert_eq!(info.inner_format, None);
        assert_eq!(info.esp8266_image_version, None);
        assert_eq!(info.chip, proto_chip(chip));
        assert_eq!(info.version.as_deref(), Some(format!("{i}.2.3").as_str()));
        assert_eq!(info.project, Some(format!("proj-{}", chip.name())));
        assert_eq!(info.idf_version.as_deref(), Some("v5.4.1-dirty"));
        assert_eq!(info.compile_time.as_deref(), Some("10:11:12"));
        assert_eq!(info.compile_date.as_deref(), Some("Mar  4 2025"));
        assert_eq!(info.secure_version, Some(7 + i as u32));
        assert_eq!(info.app_elf_sha256, Some(hex::encode(elf_sha)));
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.image_size, bytes.len() as u64);
        assert_eq!(info.sha256, sha_hex(&bytes));
        assert_eq!(info.flash_size.as_deref(), Some("8MB"));
        assert_eq!(info.flash_mode.as_deref(), Some("qio"));
        let expected_freq = match chip {
            Esp32Chip::Esp32c2 => "30m",
            Esp32Chip::Esp32h2 => "24m",
            _ => "40m",
        };
        assert_eq!(info.flash_freq.as_deref(), Some(expected_freq));
        assert_eq!(info.min_chip_rev, Some(100 + i as u16));
        assert_eq!(info.max_chip_rev, Some(399));
        assert_eq!(info.entry_addr, 0x4200_1234);
        assert!(info.hash_appended);
        assert_segments_match(&info, &layout);
    }
}

#[test]
fn esp32_full_size_image_with_odd_length_is_accepted() {
    let bytes = Esp32Image::new().size(4_089_446).build();
    let info = ok(&bytes);
    assert_eq!(info.size, 4_089_446);
    assert_eq!(info.sha256, sha_hex(&bytes));
    assert_eq!(info.version.as_deref(), Some("1.0.0"));
}

#[test]
fn esp32_trailing_ff_padding_is_accepted() {
    let bytes = Esp32Image::new().pad_ff(64 * 1024).build();
    let info = ok(&bytes);
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.sha256, sha_hex(&bytes));
}

#[test]
fn esp32_without_app_descriptor_has_no_descriptor_fields() {
    for image in [Esp32Image::new().app_desc(false), Esp32Image::new().app_desc(false).segments(1)] {
        let info = ok(&image.build());
        assert_eq!(info.version, None);
        assert_eq!(info.project, None);
        assert_eq!(info.idf_version, None);
        assert_eq!(info.compile_time, None);
        assert_eq!(info.compile_date, None);
        assert_eq!(info.secure_version, None);
        assert_eq!(info.app_elf_sha256, None);
        assert_eq!(info.chip, Chip::Esp32);
    }
    let info = ok(&Esp32Image::new().build_corrupted(&Corruption::BadAppDescMagic));
    assert_eq!(info.version, None);
}

#[test]
fn esp32_without_appended_digest() {
    let bytes = Esp32Image::new().hash_appended(false).size(30_001).build();
    let info = ok(&bytes);
    assert!(!info.hash_appended);
    assert_eq!(info.sha256, sha_hex(&bytes));
}

#[test]
fn esp32_non_semver_and_empty_strings_are_read_as_is() {
    let info = ok(&Esp32Image::new().version("esp-idf: v4.4.7 38eeba213a").project("").build());
    assert_eq!(info.version.as_deref(), Some("esp-idf: v4.4.7 38eeba213a"));
    assert_eq!(info.project, None);
    // A 32-byte version fills the field with no NUL.
    let long = "v".repeat(40);
    let info = ok(&Esp32Image::new().version(long.clone()).build());
    assert_eq!(info.version.as_deref(), Some(&long[..32]));
}

#[test]
fn esp32_legacy_min_rev_byte_and_unknown_flash_nibbles() {
    let mut bytes =
        Esp32Image::new().hash_appended(false).flash_size_code(0x9).flash_freq_code(0x7).flash_mode_code(9).build();
    // The header is outside the checksum, and there is no digest: rewrite the revision fields.
    bytes[14] = 3;
    bytes[15] = 0;
    bytes[16] = 0;
    let info = ok(&bytes);
    assert_eq!(info.min_chip_rev, Some(300));
    assert_eq!(info.flash_size, None);
    assert_eq!(info.flash_freq, None);
    assert_eq!(info.flash_mode, None);
}

#[test]
fn esp32_wp_pin_is_not_required_for_detection() {
    let info = ok(&Esp32Image::new().wp_pin(0x00).build());
    assert_eq!(info.format, ImageFormat::Esp32);
}

#[test]
fn esp32_secure_boot_v2_signature_sector_is_accepted_only_where_esptool_puts_it() {
    // 65536 bytes with the digest: the image ends exactly on the 64 KiB boundary.
    let mut bytes = Esp32Image::new().size(65_536).build();
    assert_eq!(bytes.len(), 65_536);
    let mut sector = vec![0xFF; 4096];
    sector[0] = 0xE7;
    sector[1] = 0x02;
    Prng::new(3).fill(&mut sector[4..1216]);
    bytes.extend_from_slice(&sector);
    bytes.extend_from_slice(&[0xFF; 100]);
    assert!(ok(&bytes).hash_appended);

    let mut unaligned = Esp32Image::new().size(65_520).build();
    unaligned.extend_from_slice(&sector);
    assert!(matches!(err(&unaligned), ImageError::TrailingData { offset: 65_520, after: "image", .. }));
}

// ---------------------------------------------------------------- ESP32 family: each fault

#[test]
fn empty_and_foreign_files() {
    assert!(matches!(err(&[]), ImageError::Empty));
    let e = err(b"\x7FELF\x02\x01\x01");
    assert!(matches!(e, ImageError::NotAnImage { first_byte: 0x7F }));
    assert_eq!(
        e.to_string(),
        "not a firmware image: first byte is 0x7F at offset 0 (expected 0xE9, 0xEA or gzip 1F 8B)"
    );
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::BadMagic));
    assert!(matches!(e, ImageError::NotAnImage { first_byte: 0x7F }));
}

#[test]
fn esp32_truncated_header() {
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::TruncateAt(10)));
    assert!(matches!(e, ImageError::Truncated { offset: 0, needed: 24, available: 10, .. }));
    assert_eq!(e.to_string(), "truncated: ESP32 image header at offset 0x0 needs 24 bytes, only 10 remain");
}

#[test]
fn esp32_truncated_inside_a_segment() {
    let image = Esp32Image::new().segments(5);
    let (bytes, layout) = image.build_with_layout();
    let last = layout.segments.len() - 1;
    let e = err(&image.build_corrupted(&Corruption::TruncateAt(bytes.len() / 2)));
    match e {
        ImageError::SegmentOutOfBounds { index, offset, .. } => {
            assert_eq!(index, last);
            assert_eq!(offset, layout.segments[last].offset as u64);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn esp32_truncated_at_checksum_and_digest() {
    let image = Esp32Image::new();
    let (_, layout) = image.build_with_layout();
    let at_checksum = image.build_corrupted(&Corruption::TruncateAt(layout.checksum_offset));
    assert!(matches!(
        err(&at_checksum),
        ImageError::Truncated { ref what, needed: 1, available: 0, .. } if what == "checksum byte"
    ));
    let in_digest = image.build_corrupted(&Corruption::TruncateAt(layout.checksum_offset + 11));
    let e = err(&in_digest);
    assert!(matches!(
        e,
        ImageError::Truncated { ref what, needed: 32, available: 10, .. } if what == "SHA-256 digest"
    ));
}

#[test]
fn esp32_segment_length_past_end() {
    let image = Esp32Image::new().segments(3);
    let (bytes, layout) = image.build_with_layout();
    let e = err(&image.build_corrupted(&Corruption::SegmentLenPastEnd));
    let last = &layout.segments[2];
    match &e {
        ImageError::SegmentOutOfBounds { index, offset, len, remaining } => {
            assert_eq!(*index, 2);
            assert_eq!(*offset, last.offset as u64);
            assert_eq!(*remaining, (bytes.len() - last.data_offset()) as u64);
            assert!(u64::from(*len) > *remaining);
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        e.to_string(),
        format!(
            "segment 2 at offset {:#x} declares {} bytes but only {} remain",
            last.offset,
            bytes.len() - last.data_offset() + 0x1000,
            bytes.len() - last.data_offset()
        )
    );
}

#[test]
fn esp32_bad_checksum() {
    let image = Esp32Image::new();
    let (good, layout) = image.build_with_layout();
    let e = err(&image.build_corrupted(&Corruption::BadChecksum));
    match e {
        ImageError::ChecksumMismatch { offset, stored, computed } => {
            assert_eq!(offset, layout.checksum_offset as u64);
            assert_eq!(computed, good[layout.checksum_offset]);
            assert_eq!(stored, computed ^ 0x5A);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn esp32_data_flip_is_a_checksum_error() {
    let image = Esp32Image::new();
    let (_, layout) = image.build_with_layout();
    let target = layout.segments[1].data_offset() + 5;
    let e = err(&image.build_corrupted(&Corruption::FlipByte(target)));
    assert!(matches!(e, ImageError::ChecksumMismatch { .. }), "{e}");
}

#[test]
fn esp32_bad_digest() {
    let image = Esp32Image::new();
    let (_, layout) = image.build_with_layout();
    let e = err(&image.build_corrupted(&Corruption::BadDigest));
    let at = layout.digest_offset.unwrap();
    assert!(matches!(e, ImageError::DigestMismatch { offset } if offset == at as u64));
    assert_eq!(e.to_string(), format!("SHA-256 digest at offset {at:#x} does not match the image"));
    // A header change is caught by the digest (the checksum covers only segment data).
    let e = err(&image.build_corrupted(&Corruption::FlipByte(2)));
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
}

#[test]
fn esp32_unknown_chip_id() {
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::UnknownChipId(0x00FF)));
    assert!(matches!(e, ImageError::UnknownChipId { chip_id: 0x00FF, offset: 12 }));
    assert_eq!(e.to_string(), "unknown chip id 0x00ff at offset 0xc");
    let e = err(&Esp32Image::new().chip_id(0x001C).build());
    assert!(matches!(e, ImageError::UnknownChipId { chip_id: 0x001C, .. }));
}

#[test]
fn esp32_segment_counts() {
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::TooManySegments(40)));
    assert!(matches!(e, ImageError::TooManySegments { count: 40, max: 16, .. }));
    assert_eq!(e.to_string(), "too many segments: 40 at offset 0x1 (at most 16)");
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::NoSegments));
    assert!(matches!(e, ImageError::NoSegments { offset: 1 }));
    // Sixteen is fine.
    assert_eq!(ok(&Esp32Image::new().segments(16).build()).segments.len(), 16);
}

#[test]
fn esp32_bad_hash_appended_flag() {
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::HashAppendedFlag(5)));
    assert!(matches!(e, ImageError::InvalidField { field: "hash_appended", offset: 23, .. }));
}

#[test]
fn esp32_non_utf8_version() {
    let e = err(&Esp32Image::new().build_corrupted(&Corruption::NonUtf8Version));
    assert!(matches!(e, ImageError::InvalidString { field: "version", offset: 0x30 }));
    assert_eq!(e.to_string(), "app descriptor field `version` at offset 0x30 is not valid UTF-8");
}

#[test]
fn esp32_app_descriptor_cut_short_by_its_segment() {
    // One segment of 256 bytes holds the descriptor; shrink it to 100 and fix everything up.
    let image = Esp32Image::new().segments(1).size(0).hash_appended(false);
    let (mut bytes, layout) = image.build_with_layout();
    let seg = layout.segments[0];
    bytes[seg.offset + 4..seg.offset + 8].copy_from_slice(&100u32.to_le_bytes());
    bytes.truncate(seg.data_offset() + 100);
    let sum = bytes[seg.data_offset()..].iter().fold(0xEF, |a, b| a ^ b);
    bytes.resize(seg.data_offset() + 100 + (15 - (seg.data_offset() + 100) % 16), 0);
    bytes.push(sum);
    let e = err(&bytes);
    assert!(matches!(e, ImageError::Truncated { offset: 0x20, needed: 256, available: 100, .. }), "{e}");
}

#[test]
fn esp32_trailing_garbage() {
    let image = Esp32Image::new();
    let len = image.build().len();
    let e = err(&image.build_corrupted(&Corruption::TrailingGarbage(10)));
    assert!(matches!(
        e,
        ImageError::TrailingData { offset, len: 10, after: "image" } if offset == len as u64
    ));
}

// ---------------------------------------------------------------- ESP8266

#[test]
fn esp8266_v1_fields() {
    let image = Esp8266Image::new()
        .flash_size(Esp8266FlashSize::Mb1)
        .flash_mode(FlashMode::Dio)
        .flash_freq_code(freq::DIV1)
        .entry_addr(0x4010_0ABC)
        .segments(4)
        .size(12_345);
    let (bytes, layout) = image.build_with_layout();
    let info = ok(&bytes);
    assert_eq!(info.format, ImageFormat::Esp8266);
    assert_eq!(info.chip, Chip::Esp8266);
    assert_eq!(info.esp8266_image_version, Some(1));
    assert_eq!(info.flash_size.as_deref(), Some("1MB"));
    assert_eq!(info.flash_mode.as_deref(), Some("dio"));
    assert_eq!(info.flash_freq.as_deref(), Some("80m"));
    assert_eq!(info.entry_addr, 0x4010_0ABC);
    assert_eq!(info.version, None);
    assert_eq!(info.project, None);
    assert_eq!(info.min_chip_rev, None);
    assert!(!info.hash_appended);
    assert_eq!(info.size, 12_345);
    assert_eq!(info.sha256, sha_hex(&bytes));
    assert_segments_match(&info, &layout);
}

#[test]
fn esp8266_flash_size_table() {
    for (size, name) in [
        (Esp8266FlashSize::Kb512, "512KB"),
        (Esp8266FlashSize::Kb256, "256KB"),
        (Esp8266FlashSize::Mb2, "2MB"),
        (Esp8266FlashSize::Mb4, "4MB"),
        (Esp8266FlashSize::Mb2C1, "2MB-c1"),
        (Esp8266FlashSize::Mb4C1, "4MB-c1"),
        (Esp8266FlashSize::Mb8, "8MB"),
        (Esp8266FlashSize::Mb16, "16MB"),
    ] {
        let info = ok(&Esp8266Image::new().flash_size(size).build());
        assert_eq!(info.flash_size.as_deref(), Some(name));
    }
    let info = ok(&Esp8266Image::new().flash_size_code(0x7).build());
    assert_eq!(info.flash_size, None);
}

#[test]
fn esp8266_tasmota_marker() {
    for layout in [Esp8266Layout::V1, Esp8266Layout::V2, Esp8266Layout::Arduino] {
        let bytes =
            Esp8266Image::new().layout(layout).tasmota_version(tasmota_version(14, 3, 0, 2)).size(40_000).build();
        assert_eq!(ok(&bytes).version.as_deref(), Some("14.3.0"), "{layout:?}");
    }
    let unset = Esp8266Image::new().tasmota_version(u32::MAX).build();
    assert_eq!(ok(&unset).version, None);
}

#[test]
fn esp8266_v2_fields_and_faults() {
    let image =
        Esp8266Image::new().layout(Esp8266Layout::V2).flash_size(Esp8266FlashSize::Mb4C1).segments(3).size(50_000);
    let (bytes, layout) = image.build_with_layout();
    let info = ok(&bytes);
    assert_eq!(info.format, ImageFormat::Esp8266);
    assert_eq!(info.esp8266_image_version, Some(2));
    assert_eq!(info.flash_size.as_deref(), Some("4MB-c1"));
    assert_eq!(info.flash_mode.as_deref(), Some("dout"));
    assert_eq!(info.sha256, sha_hex(&bytes));
    assert_segments_match(&info, &layout);

    let e = err(&image.build_corrupted(&Corruption::BadChecksum));
    assert!(matches!(e, ImageError::ChecksumMismatch { offset, .. } if offset == layout.checksum_offset as u64));
    let e = err(&image.build_corrupted(&Corruption::BadCrc));
    assert!(matches!(e, ImageError::CrcMismatch { offset, .. } if Some(offset as usize) == layout.crc_offset));
    let e = err(&image.build_corrupted(&Corruption::SecondHeaderMagic(0x00)));
    assert!(matches!(e, ImageError::InvalidField { field: "second image header magic", .. }));
    let e = err(&image.build_corrupted(&Corruption::SegmentLenPastEnd));
    assert!(matches!(e, ImageError::SegmentOutOfBounds { index: 3, .. }), "{e}");
    // The IROM segment is outside the checksum but inside the CRC.
    let irom = layout.segments[0].data_offset() + 40;
    let e = err(&image.build_corrupted(&Corruption::FlipByte(irom)));
    assert!(matches!(e, ImageError::CrcMismatch { .. }), "{e}");
    // Without the CRC (older tools) the image is still valid.
    let mut no_crc = bytes[..layout.crc_offset.unwrap()].to_vec();
    no_crc.extend_from_slice(&[0xFF; 12]);
    assert_eq!(ok(&no_crc).esp8266_image_version, Some(2));
}

#[test]
fn esp8266_arduino_layout() {
    let image = Esp8266Image::new().layout(Esp8266Layout::Arduino).entry_addr(0x4010_0F00).segments(4).size(300_000);
    let (bytes, layout) = image.build_with_layout();
    let info = ok(&bytes);
    assert_eq!(info.esp8266_image_version, Some(1));
    assert_eq!(info.entry_addr, 0x4010_0F00);
    assert_eq!(info.size, 300_000);
    assert_segments_match(&info, &layout);

    let e = err(&image.build_corrupted(&Corruption::BadCrc));
    assert!(matches!(e, ImageError::CrcMismatch { offset: 0x1014, .. }), "{e}");
    let sketch_data = layout.segments[3].data_offset() + 3;
    let e = err(&image.build_corrupted(&Corruption::FlipByte(sketch_data)));
    assert!(matches!(e, ImageError::CrcMismatch { .. }), "{e}");
    let e = err(&image.build_corrupted(&Corruption::BadChecksum));
    assert!(matches!(e, ImageError::ChecksumMismatch { offset, .. } if offset == layout.checksum_offset as u64));
    let e = err(&image.build_corrupted(&Corruption::TruncateAt(200_000)));
    assert!(matches!(e, ImageError::SegmentOutOfBounds { index: 2, .. }), "{e}");
    let e = err(&image.build_corrupted(&Corruption::TruncateAt(0x800)));
    assert!(matches!(e, ImageError::Truncated { offset: 0x1000, .. }), "{e}");
    let e = err(&image.build_corrupted(&Corruption::SecondHeaderMagic(0x00)));
    assert!(matches!(e, ImageError::TrailingData { .. }), "{e}");
}

#[test]
fn esp8266_v1_faults_are_reported_as_esp8266_faults() {
    let image = Esp8266Image::new().segments(3).size(9_000);
    let (_, layout) = image.build_with_layout();
    let e = err(&image.build_corrupted(&Corruption::BadChecksum));
    assert!(matches!(e, ImageError::ChecksumMismatch { offset, .. } if offset == layout.checksum_offset as u64), "{e}");
    let e = err(&image.build_corrupted(&Corruption::SegmentLenPastEnd));
    assert!(matches!(e, ImageError::SegmentOutOfBounds { index: 2, .. }), "{e}");
    let e = err(&image.build_corrupted(&Corruption::TrailingGarbage(3)));
    assert!(matches!(e, ImageError::TrailingData { len: 3, .. }), "{e}");
    let e = err(&image.build_corrupted(&Corruption::TooManySegments(17)));
    assert!(matches!(e, ImageError::TooManySegments { count: 17, .. }), "{e}");
}

#[test]
fn magic_e9_is_told_apart_both_ways() {
    for seed in 0..40 {
        let n = 1 + (seed as usize % 16);
        let esp32 = Esp32Image::new().seed(seed).segments(n).size(5_000 + 97 * seed as usize);
        assert_eq!(ok(&esp32.build()).format, ImageFormat::Esp32, "seed {seed}");
        let no_hash = esp32.clone().hash_appended(false);
        assert_eq!(ok(&no_hash.build()).format, ImageFormat::Esp32, "seed {seed}");
        let esp8266 = Esp8266Image::new().seed(seed).segments(n.min(15)).size(5_000 + 97 * seed as usize);
        assert_eq!(ok(&esp8266.build()).format, ImageFormat::Esp8266, "seed {seed}");
    }
    // An ESP8266 image whose first segment is 64 KiB long has bytes 12..14 = 00 00, the ESP32
    // chip id: still ESP8266, and its faults are still reported as ESP8266 faults.
    let tricky = Esp8266Image::new().segments(1).size(65_568);
    let (bytes, layout) = tricky.build_with_layout();
    assert_eq!(layout.segments[0].len, 0x10000);
    assert_eq!(&bytes[12..14], &[0, 0]);
    assert_eq!(ok(&bytes).format, ImageFormat::Esp8266);
    let e = err(&tricky.build_corrupted(&Corruption::BadChecksum));
    assert!(matches!(e, ImageError::ChecksumMismatch { .. }), "{e}");
}

// ---------------------------------------------------------------- gzip

#[test]
fn gzip_esp32_and_esp8266() {
    let raw = Esp32Image::new().version("3.1.4").size(200_000).build();
    let gz = gzip(&raw);
    let info = ok(&gz);
    assert_eq!(info.format, ImageFormat::Gzip);
    assert_eq!(info.inner_format, Some(ImageFormat::Esp32));
    assert_eq!(info.size, gz.len() as u64);
    assert_eq!(info.image_size, raw.len() as u64);
    // One identity: the image's SHA-256, the same as the raw file's; the gzip form is described
    // beside it.
    assert_eq!(info.sha256, sha_hex(&raw));
    assert_eq!(info.sha256, ok(&raw).sha256);
    assert_eq!(info.gzip, Some(GzipForm { size: gz.len() as u64, sha256: sha_hex(&gz) }));
    assert_eq!(ok(&raw).gzip, None);
    assert_eq!(info.version.as_deref(), Some("3.1.4"));
    assert!(info.hash_appended);

    let raw = Esp8266Image::new().layout(Esp8266Layout::Arduino).tasmota_version(tasmota_version(13, 4, 1, 0)).build();
    let info = ok(&gzip(&raw));
    assert_eq!(info.inner_format, Some(ImageFormat::Esp8266));
    assert_eq!(info.chip, Chip::Esp8266);
    assert_eq!(info.version.as_deref(), Some("13.4.1"));
    assert_eq!(info.sha256, sha_hex(&raw), "ESP8266 images are hashed whole too");
}

#[test]
fn read_keeps_both_forms() {
    let raw = Esp8266Image::new().layout(Esp8266Layout::V1).size(40_000).build();
    let gz = gzip(&raw);
    let read = read(bytes::Bytes::from(gz.clone())).unwrap();
    assert_eq!(&read.image[..], &raw[..]);
    assert_eq!(read.gzip.as_deref(), Some(&gz[..]));
    assert_eq!(read.info.sha256, sha_hex(&raw));
    let plain = super::read(bytes::Bytes::from(raw.clone())).unwrap();
    assert_eq!(&plain.image[..], &raw[..]);
    assert!(plain.gzip.is_none());
    assert_eq!(plain.info, ok(&raw));
}

#[test]
fn gzip_corrupt_streams() {
    let gz = gzip(&Esp32Image::new().build());
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xFF;
    assert!(matches!(err(&flipped), ImageError::GzipCorrupt { .. }));
    let e = err(&gz[..gz.len() - 100]);
    assert!(matches!(e, ImageError::GzipCorrupt { .. }), "{e}");
    assert!(e.to_string().starts_with("corrupt gzip stream: "));
    let mut bad_crc = gz;
    let at = bad_crc.len() - 6;
    bad_crc[at] ^= 1;
    assert!(matches!(err(&bad_crc), ImageError::GzipCorrupt { .. }));
    assert!(matches!(err(&[0x1F, 0x8B]), ImageError::GzipCorrupt { .. }));
}

#[test]
fn gzip_with_a_bad_image_inside() {
    let image = Esp32Image::new();
    let (_, layout) = image.build_with_layout();
    let e = err(&gzip(&image.build_corrupted(&Corruption::BadChecksum)));
    match &e {
        ImageError::InGzip(inner) => assert!(matches!(
            **inner,
            ImageError::ChecksumMismatch { offset, .. } if offset == layout.checksum_offset as u64
        )),
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().starts_with("in the inflated gzip image: checksum mismatch at offset"));
    assert!(matches!(err(&gzip(b"hello")), ImageError::InGzip(_)));
    assert!(matches!(err(&gzip(&[])), ImageError::InGzip(ref inner) if matches!(**inner, ImageError::Empty)));
}

#[test]
fn gzip_nested_and_trailing_data() {
    let gz = gzip(&Esp32Image::new().build());
    assert!(matches!(err(&gzip(&gz)), ImageError::NestedGzip));
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"junk");
    let e = err(&trailing);
    assert!(
        matches!(e, ImageError::TrailingData { offset, len: 4, after: "gzip stream" } if offset == gz.len() as u64),
        "{e}"
    );
}

#[test]
fn gzip_limit_is_exact() {
    let raw = Esp32Image::new().size(100_000).build();
    let gz = gzip(&raw);
    assert!(inspect_with_limit(&gz, 100_000).is_ok());
    let e = inspect_with_limit(&gz, 99_999).unwrap_err();
    assert!(matches!(e, ImageError::GzipTooLarge { limit: 99_999 }));
    assert_eq!(e.to_string(), "gzip image inflates past the 99999-byte limit");
}

#[test]
fn gzip_bomb_is_refused_quickly() {
    let bomb = gzip_bomb(64 << 20);
    assert!(bomb.len() < 128 * 1024);
    let started = Instant::now();
    let e = err(&bomb);
    assert!(matches!(e, ImageError::GzipTooLarge { limit } if limit == DEFAULT_GZIP_LIMIT));
    assert_eq!(e.to_string(), "gzip image inflates past the 16777216-byte limit");
    // Generous for debug builds; it stops at the limit instead of inflating 64 MiB.
    assert!(started.elapsed() < Duration::from_secs(20));
    let e = inspect_with_limit(&bomb, 1 << 20).unwrap_err();
    assert!(matches!(e, ImageError::GzipTooLarge { limit: 1_048_576 }));
}

#[test]
fn gzip_trailer_size_hint_cannot_force_a_huge_allocation() {
    // A tiny stream whose ISIZE trailer claims 4 GiB: the hint is capped, the parse fails cleanly.
    let mut gz = gzip(&Esp32Image::new().size(1_000).build());
    let n = gz.len();
    gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(inspect_with_limit(&gz, u64::MAX).is_err());
}

// ---------------------------------------------------------------- robustness

/// Small valid images of every shape, as mutation seeds.
fn seed_images() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, chip) in Esp32Chip::ALL.into_iter().enumerate() {
        seeds.push(
            Esp32Image::new()
                .chip(chip)
                .segments(1 + i)
                .size(1_500 + 300 * i)
                .hash_appended(i % 3 != 0)
                .app_desc(i % 4 != 1)
                .seed(i as u64)
                .build(),
        );
    }
    for layout in [Esp8266Layout::V1, Esp8266Layout::V2, Esp8266Layout::Arduino] {
        seeds.push(Esp8266Image::new().layout(layout).tasmota_version(tasmota_version(1, 2, 3, 4)).size(1_200).build());
    }
    let small = Esp32Image::new().size(1_000).build();
    seeds.push(gzip(&small));
    seeds
}

#[test]
fn any_byte_string_gives_ok_or_err_never_a_panic() {
    let seeds = seed_images();
    for seed in &seeds {
        assert!(inspect(seed).is_ok());
    }
    let mut rng = Prng::new(0x5EED);
    let mut outcomes = [0usize; 2];
    for round in 0..4_000 {
        let mut bytes = seeds[rng.below(seeds.len() as u64) as usize].clone();
        match round % 5 {
            // A few random byte flips.
            0 | 1 => {
                for _ in 0..=rng.below(8) {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next_u64() as u8;
                }
            }
            // A truncation.
            2 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            // Hostile header values: segment counts and lengths.
            3 => {
                let at = [1usize, 3, 12, 13, 23, 28, 29, 30, 31][rng.below(9) as usize];
                if at < bytes.len() {
                    bytes[at] = [0x00, 0x01, 0x10, 0x11, 0x7F, 0xFF][rng.below(6) as usize];
                }
                let len_at = 8 + 4 + 8 * rng.below(4) as usize;
                if len_at + 4 <= bytes.len() {
                    let len = [0u32, 1, 0xFFFF_FFFF, 0x8000_0000, 7][rng.below(5) as usize];
                    bytes[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
                }
            }
            // Pure noise behind a plausible first byte.
            _ => {
                let len = rng.below(600) as usize;
                bytes = vec![0; len];
                rng.fill(&mut bytes);
                if let Some(first) = bytes.first_mut() {
                    *first = [0xE9, 0xEA, 0x1F][rng.below(3) as usize];
                }
                if bytes.len() > 1 && bytes[0] == 0x1F {
                    bytes[1] = 0x8B;
                }
            }
        }
        let result = inspect(&bytes);
        outcomes[usize::from(result.is_err())] += 1;
        if let Err(e) = result {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }
    // Both outcomes happen: the mutations are neither all harmless nor all fatal.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
