//! ESP32-family app images, laid out the way esptool's `elf2image` writes them:
//! a 24-byte header (8 common bytes + 16-byte extended header), segments, zero padding up to the
//! checksum byte at the end of a 16-byte block, then the SHA-256 of everything before it.

use sha2::{Digest, Sha256};

use crate::flash::{FlashMode, FlashSize, freq};
use crate::prng::{Prng, payload};
use crate::{
    CHECKSUM_SEED, Corruption, IMAGE_MAGIC, Layout, MAX_SEGMENTS, SEGMENT_HEADER_LEN, SegmentSpan,
    checksum_offset_after, fit_big_segment, push_checksum, push_segment, xor_checksum,
};

/// Size of `esp_image_header_t` (common header + extended header).
pub const ESP32_HEADER_LEN: usize = 24;
/// `esp_app_desc_t.magic_word`.
pub const APP_DESC_MAGIC: u32 = 0xABCD_5432;
/// Size of `esp_app_desc_t`.
pub const APP_DESC_LEN: usize = 256;
/// File offset of the app descriptor: the start of the first segment's data.
pub const APP_DESC_OFFSET: usize = ESP32_HEADER_LEN + SEGMENT_HEADER_LEN;
const DIGEST_LEN: usize = 32;
/// Offsets of the descriptor's string fields, relative to the descriptor.
const DESC_VERSION: usize = 16;

/// An ESP32-family chip and its `chip_id` in the image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Esp32Chip {
    Esp32,
    Esp32s2,
    Esp32s3,
    Esp32c2,
    Esp32c3,
    Esp32c5,
    Esp32c6,
    Esp32c61,
    Esp32h2,
    Esp32p4,
}

impl Esp32Chip {
    /// Every chip, in a stable order.
    pub const ALL: [Esp32Chip; 10] = [
        Esp32Chip::Esp32,
        Esp32Chip::Esp32s2,
        Esp32Chip::Esp32s3,
        Esp32Chip::Esp32c2,
        Esp32Chip::Esp32c3,
        Esp32Chip::Esp32c5,
        Esp32Chip::Esp32c6,
        Esp32Chip::Esp32c61,
        Esp32Chip::Esp32h2,
        Esp32Chip::Esp32p4,
    ];

    /// `esp_chip_id_t` as written at header offset 12 (esptool's `IMAGE_CHIP_ID`).
    pub fn chip_id(self) -> u16 {
        match self {
            Esp32Chip::Esp32 => 0x0000,
            Esp32Chip::Esp32s2 => 0x0002,
            Esp32Chip::Esp32c3 => 0x0005,
            Esp32Chip::Esp32s3 => 0x0009,
            Esp32Chip::Esp32c2 => 0x000C,
            Esp32Chip::Esp32c6 => 0x000D,
            Esp32Chip::Esp32h2 => 0x0010,
            Esp32Chip::Esp32p4 => 0x0012,
            Esp32Chip::Esp32c61 => 0x0014,
            Esp32Chip::Esp32c5 => 0x0017,
        }
    }

    /// Espressif's name in lower case without dashes (`esp32s3`).
    pub fn name(self) -> &'static str {
        match self {
            Esp32Chip::Esp32 => "esp32",
            Esp32Chip::Esp32s2 => "esp32s2",
            Esp32Chip::Esp32s3 => "esp32s3",
            Esp32Chip::Esp32c2 => "esp32c2",
            Esp32Chip::Esp32c3 => "esp32c3",
            Esp32Chip::Esp32c5 => "esp32c5",
            Esp32Chip::Esp32c6 => "esp32c6",
            Esp32Chip::Esp32c61 => "esp32c61",
            Esp32Chip::Esp32h2 => "esp32h2",
            Esp32Chip::Esp32p4 => "esp32p4",
        }
    }

    /// Parses [`Esp32Chip::name`], also `esp32-s3` / `ESP32_S3` spellings.
    pub fn parse(s: &str) -> Option<Esp32Chip> {
        let norm: String = s.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect();
        Esp32Chip::ALL.into_iter().find(|c| c.name() == norm)
    }

    /// The chip with this `chip_id`, if it is one of ours.
    pub fn from_chip_id(id: u16) -> Option<Esp32Chip> {
        Esp32Chip::ALL.into_iter().find(|c| c.chip_id() == id)
    }
}

/// Plausible load addresses (DROM, DRAM, IRAM, IROM) per chip family, so a hex dump of a built
/// image reads like a real one. The parser does not look at them.
fn memory_map(chip_id: u16) -> [u32; 4] {
    match Esp32Chip::from_chip_id(chip_id) {
        Some(Esp32Chip::Esp32s2) => [0x3F00_0020, 0x3FFB_E000, 0x4002_2000, 0x4008_0020],
        Some(Esp32Chip::Esp32s3 | Esp32Chip::Esp32c3 | Esp32Chip::Esp32c2) => {
            [0x3C00_0020, 0x3FC8_8000, 0x4037_C000, 0x4200_0020]
        }
        Some(Esp32Chip::Esp32c5 | Esp32Chip::Esp32c6 | Esp32Chip::Esp32c61 | Esp32Chip::Esp32h2) => {
            [0x4280_0020, 0x4080_0000, 0x4080_8000, 0x4200_0020]
        }
        Some(Esp32Chip::Esp32p4) => [0x4000_0020, 0x4FF0_0000, 0x4FF1_0000, 0x4001_0020],
        Some(Esp32Chip::Esp32) | None => [0x3F40_0020, 0x3FFB_0000, 0x4008_0000, 0x400D_0020],
    }
}

/// Builder for a valid ESP32-family app image.
///
/// The first segment (DROM) starts with the `esp_app_desc_t`; the last segment (IROM) is the
/// "data segment" whose length is adjusted so the file is exactly [`Esp32Image::size`] bytes.
/// Because the checksum always ends a 16-byte block, an image proper is a multiple of 16 bytes
/// long; a requested size that is not gets 1–15 bytes of trailing 0xFF padding (which parsers
/// ignore, as they must for `--pad-to-size` images).
#[derive(Debug, Clone)]
#[must_use]
pub struct Esp32Image {
    chip_id: u16,
    version: String,
    project: String,
    idf_version: String,
    compile_time: String,
    compile_date: String,
    secure_version: u32,
    app_elf_sha256: Option<[u8; 32]>,
    size: usize,
    segments: usize,
    flash_mode: u8,
    flash_size: u8,
    flash_freq: u8,
    entry_addr: Option<u32>,
    wp_pin: u8,
    min_chip_rev: u16,
    max_chip_rev: u16,
    hash_appended: bool,
    app_desc: bool,
    pad_ff: usize,
    seed: u64,
}

impl Default for Esp32Image {
    fn default() -> Self {
        Esp32Image {
            chip_id: Esp32Chip::Esp32.chip_id(),
            version: "1.0.0".into(),
            project: "flotilla-demo".into(),
            idf_version: "v5.3.1".into(),
            compile_time: "12:00:00".into(),
            compile_date: "Jan  1 2025".into(),
            secure_version: 0,
            app_elf_sha256: None,
            size: 48 * 1024,
            segments: 4,
            flash_mode: FlashMode::Dio.code(),
            flash_size: FlashSize::Mb4.code(),
            flash_freq: freq::DIV2,
            entry_addr: None,
            wp_pin: 0xEE,
            min_chip_rev: 0,
            max_chip_rev: 399,
            hash_appended: true,
            app_desc: true,
            pad_ff: 0,
            seed: 1,
        }
    }
}

impl Esp32Image {
    /// An ESP32 image, version `1.0.0`, project `flotilla-demo`, 48 KiB, 4 segments, DIO 40 MHz
    /// 4 MB flash, SHA-256 appended, seed 1.
    pub fn new() -> Self {
        Esp32Image::default()
    }

    /// Target chip.
    pub fn chip(mut self, chip: Esp32Chip) -> Self {
        self.chip_id = chip.chip_id();
        self
    }

    /// Raw `chip_id`, for chips this crate does not know (or to test unknown ids).
    pub fn chip_id(mut self, chip_id: u16) -> Self {
        self.chip_id = chip_id;
        self
    }

    /// `esp_app_desc_t.version` (at most 32 bytes are written; any string is accepted).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// `esp_app_desc_t.project_name` (at most 32 bytes).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = project.into();
        self
    }

    /// `esp_app_desc_t.idf_ver` (at most 32 bytes).
    pub fn idf_version(mut self, idf_version: impl Into<String>) -> Self {
        self.idf_version = idf_version.into();
        self
    }

    /// `esp_app_desc_t.time` (at most 16 bytes).
    pub fn compile_time(mut self, time: impl Into<String>) -> Self {
        self.compile_time = time.into();
        self
    }

    /// `esp_app_desc_t.date` (at most 16 bytes).
    pub fn compile_date(mut self, date: impl Into<String>) -> Self {
        self.compile_date = date.into();
        self
    }

    /// `esp_app_desc_t.secure_version`.
    pub fn secure_version(mut self, secure_version: u32) -> Self {
        self.secure_version = secure_version;
        self
    }

    /// `esp_app_desc_t.app_elf_sha256`; by default derived from the seed.
    pub fn app_elf_sha256(mut self, sha: [u8; 32]) -> Self {
        self.app_elf_sha256 = Some(sha);
        self
    }

    /// Exact file size in bytes (clamped up to [`Esp32Image::min_size`]).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Number of segments, 1..=16 (clamped). Use [`Corruption::TooManySegments`] for more.
    pub fn segments(mut self, segments: usize) -> Self {
        self.segments = segments.clamp(1, MAX_SEGMENTS);
        self
    }

    /// SPI flash mode.
    pub fn flash_mode(mut self, mode: FlashMode) -> Self {
        self.flash_mode = mode.code();
        self
    }

    /// Raw flash mode byte (for values outside [`FlashMode`]).
    pub fn flash_mode_code(mut self, code: u8) -> Self {
        self.flash_mode = code;
        self
    }

    /// Flash size.
    pub fn flash_size(mut self, size: FlashSize) -> Self {
        self.flash_size = size.code();
        self
    }

    /// Raw flash size nibble (0..=15).
    pub fn flash_size_code(mut self, code: u8) -> Self {
        self.flash_size = code & 0x0F;
        self
    }

    /// Raw flash frequency nibble (see [`crate::freq`]).
    pub fn flash_freq_code(mut self, code: u8) -> Self {
        self.flash_freq = code & 0x0F;
        self
    }

    /// Entry point; by default an address inside the IROM segment.
    pub fn entry_addr(mut self, entry: u32) -> Self {
        self.entry_addr = Some(entry);
        self
    }

    /// `wp_pin` byte (0xEE = disabled, the esptool default).
    pub fn wp_pin(mut self, wp_pin: u8) -> Self {
        self.wp_pin = wp_pin;
        self
    }

    /// `min_chip_rev_full` (major*100+minor); the legacy byte gets `min / 100`.
    pub fn min_chip_rev(mut self, rev: u16) -> Self {
        self.min_chip_rev = rev;
        self
    }

    /// `max_chip_rev_full` (major*100+minor).
    pub fn max_chip_rev(mut self, rev: u16) -> Self {
        self.max_chip_rev = rev;
        self
    }

    /// Whether a SHA-256 digest follows the checksum (default true).
    pub fn hash_appended(mut self, on: bool) -> Self {
        self.hash_appended = on;
        self
    }

    /// Whether the first segment starts with an `esp_app_desc_t` (default true).
    pub fn app_desc(mut self, on: bool) -> Self {
        self.app_desc = on;
        self
    }

    /// Extra 0xFF bytes after the image (as `esptool --pad-to-size` leaves), beyond
    /// [`Esp32Image::size`].
    pub fn pad_ff(mut self, bytes: usize) -> Self {
        self.pad_ff = bytes;
        self
    }

    /// Seed of the segment payload.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The smallest size this configuration can be built at.
    pub fn min_size(&self) -> usize {
        let lens = self.segment_lens(self.min_big());
        self.layout(&lens).image_end
    }

    /// The image bytes.
    pub fn build(&self) -> Vec<u8> {
        self.build_with_layout().0
    }

    /// The image bytes and where everything is in them.
    pub fn build_with_layout(&self) -> (Vec<u8>, Layout) {
        let (mut bytes, layout) = self.render();
        seal(&mut bytes, &layout);
        (bytes, layout)
    }

    /// The image broken in one specific way; see [`Corruption`] for what each variant does.
    pub fn build_corrupted(&self, corruption: &Corruption) -> Vec<u8> {
        let (mut bytes, layout) = self.render();
        // Changes to covered fields first, then seal, so the image is wrong in one way only.
        match corruption {
            Corruption::UnknownChipId(id) => put(&mut bytes, 12, &id.to_le_bytes()),
            Corruption::HashAppendedFlag(flag) => put(&mut bytes, 23, &[*flag]),
            Corruption::BadAppDescMagic => {
                if let Some(off) = layout.app_desc_offset {
                    put(&mut bytes, off, &0xDEAD_BEEF_u32.to_le_bytes());
                }
            }
            Corruption::NonUtf8Version => {
                if let Some(off) = layout.app_desc_offset {
                    put(&mut bytes, off + DESC_VERSION, &[b'1', 0xFF, 0xFE, b'0', 0]);
                }
            }
            _ => {}
        }
        seal(&mut bytes, &layout);
        match corruption {
            Corruption::BadChecksum => {
                flip(&mut bytes, layout.checksum_offset, 0x5A);
                write_digest(&mut bytes, &layout);
            }
            Corruption::BadDigest => {
                if let Some(off) = layout.digest_offset {
                    flip(&mut bytes, off + 7, 0x01);
                }
            }
            other => other.apply_generic(&mut bytes, &layout),
        }
        bytes
    }

    fn min_big(&self) -> usize {
        if self.segments == 1 && self.app_desc { APP_DESC_LEN } else { 16 }
    }

    /// Segment lengths for a given length of the big (last) segment.
    fn segment_lens(&self, big: usize) -> Vec<usize> {
        let n = self.segments.clamp(1, MAX_SEGMENTS);
        if n == 1 {
            return vec![big];
        }
        // DROM gets about a quarter of the requested size; the middle RAM segments are small.
        let drom_min = if self.app_desc { APP_DESC_LEN } else { 16 };
        let drom = (self.size / 4 / 4 * 4).max(drom_min);
        let mut lens = vec![drom];
        for i in 1..n - 1 {
            let small = (0x400 + 0x100 * i).min(self.size / 32 / 4 * 4).max(16);
            lens.push(small);
        }
        lens.push(big);
        lens
    }

    fn layout(&self, lens: &[usize]) -> Layout {
        let map = memory_map(self.chip_id);
        let n = lens.len();
        let mut segments = Vec::with_capacity(n);
        let mut offset = ESP32_HEADER_LEN;
        for (i, len) in lens.iter().copied().enumerate() {
            let load_addr = if i == 0 {
                map[0]
            } else if i + 1 == n {
                map[3]
            } else if i % 2 == 1 {
                map[1] + 0x100 * i as u32
            } else {
                map[2] + 0x100 * i as u32
            };
            segments.push(SegmentSpan { offset, load_addr, len });
            offset += SEGMENT_HEADER_LEN + len;
        }
        let checksum_offset = checksum_offset_after(offset);
        let mut image_end = checksum_offset + 1;
        let digest_offset = self.hash_appended.then_some(image_end);
        if self.hash_appended {
            image_end += DIGEST_LEN;
        }
        Layout {
            segments,
            checksum_offset,
            digest_offset,
            app_desc_offset: self.app_desc.then_some(APP_DESC_OFFSET),
            second_header_offset: None,
            crc_offset: None,
            tasmota_marker_offset: None,
            image_end,
            file_len: image_end.max(self.size) + self.pad_ff,
        }
    }

    /// Everything but the checksum and digest (which [`seal`] fills in).
    fn render(&self) -> (Vec<u8>, Layout) {
        let big = fit_big_segment(self.size, self.min_big(), 4, |big| self.layout(&self.segment_lens(big)).image_end);
        let layout = self.layout(&self.segment_lens(big));
        let mut rng = Prng::new(self.seed);
        let irom = layout.segments.last().map_or(0, |s| s.load_addr);
        let entry = self.entry_addr.unwrap_or(irom.wrapping_add(0x4A0));

        let mut out = Vec::with_capacity(layout.file_len);
        out.push(IMAGE_MAGIC);
        out.push(layout.segments.len() as u8);
        out.push(self.flash_mode);
        out.push((self.flash_size << 4) | (self.flash_freq & 0x0F));
        out.extend_from_slice(&entry.to_le_bytes());
        out.push(self.wp_pin);
        out.extend_from_slice(&[0, 0, 0]); // spi_pin_drv
        out.extend_from_slice(&self.chip_id.to_le_bytes());
        out.push((self.min_chip_rev / 100).min(255) as u8);
        out.extend_from_slice(&self.min_chip_rev.to_le_bytes());
        out.extend_from_slice(&self.max_chip_rev.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // reserved
        out.push(u8::from(self.hash_appended));

        for (i, seg) in layout.segments.iter().enumerate() {
            let mut data = payload(&mut rng, seg.len);
            if i == 0 {
                if self.app_desc {
                    let desc = self.app_desc_bytes(&mut rng);
                    put(&mut data, 0, &desc);
                } else if data.get(..4) == Some(&APP_DESC_MAGIC.to_le_bytes()[..]) {
                    put(&mut data, 0, &[0; 4]);
                }
            }
            push_segment(&mut out, seg.load_addr, &data);
        }
        push_checksum(&mut out, 0);
        if self.hash_appended {
            out.resize(out.len() + DIGEST_LEN, 0);
        }
        out.resize(layout.file_len, 0xFF);
        (out, layout)
    }

    fn app_desc_bytes(&self, rng: &mut Prng) -> [u8; APP_DESC_LEN] {
        let mut desc = [0u8; APP_DESC_LEN];
        let elf_sha = self.app_elf_sha256.unwrap_or_else(|| {
            let mut sha = [0u8; 32];
            rng.fill(&mut sha);
            sha
        });
        put(&mut desc, 0, &APP_DESC_MAGIC.to_le_bytes());
        put(&mut desc, 4, &self.secure_version.to_le_bytes());
        put_str(&mut desc, DESC_VERSION, 32, &self.version);
        put_str(&mut desc, 48, 32, &self.project);
        put_str(&mut desc, 80, 16, &self.compile_time);
        put_str(&mut desc, 96, 16, &self.compile_date);
        put_str(&mut desc, 112, 32, &self.idf_version);
        put(&mut desc, 144, &elf_sha);
        desc
    }
}

/// Copies `src` into `dst` at `offset`, clipped to `dst`.
pub(crate) fn put(dst: &mut [u8], offset: usize, src: &[u8]) {
    if let Some(tail) = dst.get_mut(offset..) {
        for (d, s) in tail.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// XORs the byte at `offset` with `mask`, if there is one.
pub(crate) fn flip(dst: &mut [u8], offset: usize, mask: u8) {
    if let Some(b) = dst.get_mut(offset) {
        *b ^= mask;
    }
}

/// Writes `s` as a NUL-padded C string field of `width` bytes (truncated, like `strncpy`).
fn put_str(dst: &mut [u8], offset: usize, width: usize, s: &str) {
    let bytes = s.as_bytes();
    put(dst, offset, bytes.get(..width).unwrap_or(bytes));
}

/// Fills in the checksum and (if the layout has one) the digest.
fn seal(bytes: &mut [u8], layout: &Layout) {
    let checksum = xor_checksum(layout.segments.iter().map(|s| bytes.get(s.data_offset()..s.end()).unwrap_or(&[])));
    put(bytes, layout.checksum_offset, &[checksum]);
    write_digest(bytes, layout);
}

fn write_digest(bytes: &mut [u8], layout: &Layout) {
    if let Some(off) = layout.digest_offset {
        let digest = Sha256::digest(bytes.get(..off).unwrap_or(&[]));
        put(bytes, off, &digest);
    }
}

// The checksum seed is part of the format; make sure the shared constant is what esptool uses.
const _: () = assert!(CHECKSUM_SEED == 0xEF);

#[cfg(test)]
mod tests {
    use super::*;

    fn le32(b: &[u8], off: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[off..off + 4]);
        u32::from_le_bytes(w)
    }

    #[test]
    fn exact_size_and_checksum_position() {
        for size in [48 * 1024, 4_089_446, 100_003, 65_536] {
            let (bytes, layout) = Esp32Image::new().size(size).build_with_layout();
            assert_eq!(bytes.len(), size);
            assert_eq!(layout.file_len, size);
            assert_eq!(layout.checksum_offset % 16, 15);
            assert_eq!(layout.image_end % 16, 0);
            assert_eq!(layout.digest_offset, Some(layout.checksum_offset + 1));
            assert!(size - layout.image_end < 16);
            assert!(bytes[layout.image_end..].iter().all(|b| *b == 0xFF));
            // Padding between the last segment and the checksum is zeros, at most 15 bytes.
            let end = layout.segments.last().map(|s| s.end()).unwrap_or(0);
            assert!(layout.checksum_offset - end < 16);
            assert!(bytes[end..layout.checksum_offset].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn checksum_and_digest_are_right() {
        let (bytes, layout) = Esp32Image::new().segments(6).build_with_layout();
        let data = layout.segments.iter().map(|s| &bytes[s.data_offset()..s.end()]);
        assert_eq!(bytes[layout.checksum_offset], xor_checksum(data));
        let digest = Sha256::digest(&bytes[..=layout.checksum_offset]);
        assert_eq!(&bytes[layout.checksum_offset + 1..][..32], &digest[..]);
    }

    #[test]
    fn header_and_app_desc_fields() {
        let bytes = Esp32Image::new()
            .chip(Esp32Chip::Esp32c6)
            .version("2.0.1")
            .project("lamp")
            .secure_version(3)
            .min_chip_rev(101)
            .max_chip_rev(199)
            .flash_size(FlashSize::Mb16)
            .flash_freq_code(freq::DIV1)
            .segments(3)
            .build();
        assert_eq!(bytes[0], 0xE9);
        assert_eq!(bytes[1], 3);
        assert_eq!(bytes[3], 0x4F);
        assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), 0x000D);
        assert_eq!(bytes[14], 1);
        assert_eq!(u16::from_le_bytes([bytes[15], bytes[16]]), 101);
        assert_eq!(u16::from_le_bytes([bytes[17], bytes[18]]), 199);
        assert_eq!(bytes[23], 1);
        assert_eq!(le32(&bytes, APP_DESC_OFFSET), APP_DESC_MAGIC);
        assert_eq!(le32(&bytes, APP_DESC_OFFSET + 4), 3);
        assert_eq!(&bytes[APP_DESC_OFFSET + 16..][..6], b"2.0.1\0");
        assert_eq!(&bytes[APP_DESC_OFFSET + 48..][..5], b"lamp\0");
    }

    #[test]
    fn segments_walk_to_the_checksum() {
        for n in 1..=16 {
            let (bytes, layout) = Esp32Image::new().segments(n).build_with_layout();
            let mut off = ESP32_HEADER_LEN;
            for _ in 0..bytes[1] {
                off += SEGMENT_HEADER_LEN + le32(&bytes, off + 4) as usize;
            }
            assert_eq!(checksum_offset_after(off), layout.checksum_offset, "{n} segments");
            assert_eq!(layout.segments.len(), n);
        }
    }

    #[test]
    fn deterministic_per_seed() {
        assert_eq!(Esp32Image::new().build(), Esp32Image::new().build());
        assert_ne!(Esp32Image::new().build(), Esp32Image::new().seed(2).build());
    }

    #[test]
    fn tiny_size_is_clamped_to_the_minimum() {
        let image = Esp32Image::new().size(10);
        assert_eq!(image.build().len(), image.min_size());
        let no_desc = Esp32Image::new().app_desc(false).segments(1).size(0);
        let bytes = no_desc.build();
        assert_ne!(le32(&bytes, APP_DESC_OFFSET), APP_DESC_MAGIC);
    }

    #[test]
    fn no_hash_image_ends_at_the_checksum() {
        let (bytes, layout) = Esp32Image::new().hash_appended(false).build_with_layout();
        assert_eq!(bytes[23], 0);
        assert_eq!(layout.digest_offset, None);
        assert_eq!(layout.image_end, layout.checksum_offset + 1);
        assert_eq!(bytes.len(), 48 * 1024);
    }

    #[test]
    fn corruptions_change_only_what_they_say() {
        let image = Esp32Image::new();
        let (good, layout) = image.build_with_layout();
        let bad = image.build_corrupted(&Corruption::BadChecksum);
        let diff: Vec<usize> = (0..good.len()).filter(|i| good[*i] != bad[*i]).collect();
        assert!(diff.contains(&layout.checksum_offset));
        assert!(diff.iter().all(|i| *i >= layout.checksum_offset));

        let chip = image.build_corrupted(&Corruption::UnknownChipId(0x00FF));
        assert_eq!(&chip[12..14], &[0xFF, 0x00]);
        let digest = Sha256::digest(&chip[..=layout.checksum_offset]);
        assert_eq!(&chip[layout.checksum_offset + 1..][..32], &digest[..]);

        let cut = image.build_corrupted(&Corruption::TruncateAt(100));
        assert_eq!(cut, good[..100]);

        let past = image.build_corrupted(&Corruption::SegmentLenPastEnd);
        let last = layout.segments.last().copied().unwrap_or(layout.segments[0]);
        assert!(le32(&past, last.offset + 4) as usize > good.len() - last.data_offset());
    }
}
