//! ESP8266 images in their three shapes:
//! - v1 (magic 0xE9): 8-byte header, segments, checksum at the end of a 16-byte block;
//! - v2 (magic 0xEA, Espressif/rboot bootloaders): a first header, the IROM segment (outside the
//!   checksum), a normal 0xE9 header with the loadable segments and checksum, then esptool's
//!   trailing CRC-32;
//! - Arduino (`elf2bin.py`): an eboot v1 image padded with 0xAA to 0x1000, the sketch as a
//!   second v1 image there, and eboot's CRC (length word at 0x1010, CRC at 0x1014) over the file.

use crate::esp32::{flip, put};
use crate::flash::{Esp8266FlashSize, FlashMode, freq};
use crate::prng::{Prng, payload};
use crate::{
    Corruption, IMAGE_MAGIC, IMAGE_V2_MAGIC, Layout, MAX_SEGMENTS, SEGMENT_HEADER_LEN, SegmentSpan,
    checksum_offset_after, fit_big_segment, push_checksum, push_segment, xor_checksum,
};

/// Size of the ESP8266 image header (`<BBBBI>`: magic, segments, flash mode, size/freq, entry).
pub const ESP8266_HEADER_LEN: usize = 8;
/// Where `elf2bin.py` puts the sketch image, after eboot.
pub const ARDUINO_APP_OFFSET: usize = 0x1000;
/// First four bytes of Tasmota's `VERSION_MARKER`.
pub const TASMOTA_MARKER_HEAD: [u8; 4] = [0xA5, 0x5A, 0xA5, 0x5A];
/// Last four bytes of Tasmota's `VERSION_MARKER` (the version `u32` LE sits between).
pub const TASMOTA_MARKER_TAIL: [u8; 4] = [0x5A, 0xA5, 0x5A, 0xA5];
/// Arduino eboot CRC: image length word, then CRC word, at the start of the app's IROM data.
const ARDUINO_LEN_OFFSET: usize = ARDUINO_APP_OFFSET + 16;
const ARDUINO_CRC_OFFSET: usize = ARDUINO_APP_OFFSET + 20;
const EBOOT_SEGMENTS: usize = 2;
/// Where the Tasmota marker goes inside the big segment's data (past the Arduino CRC words).
const MARKER_IN_SEGMENT: usize = 64;
const V2_CRC_LEN: usize = 4;

/// Tasmota's `VERSION` word: `major<<24 | minor<<16 | patch<<8 | build`.
pub fn tasmota_version(major: u8, minor: u8, patch: u8, build: u8) -> u32 {
    u32::from_be_bytes([major, minor, patch, build])
}

/// Which ESP8266 image shape to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Esp8266Layout {
    /// Magic 0xE9, one image.
    V1,
    /// Magic 0xEA first header + IROM segment, then a 0xE9 image, then a CRC-32.
    V2,
    /// Arduino core `.bin`: eboot image, 0xAA padding, sketch image at 0x1000, eboot CRC.
    Arduino,
}

/// Builder for a valid ESP8266 image.
#[derive(Debug, Clone)]
#[must_use]
pub struct Esp8266Image {
    layout: Esp8266Layout,
    flash_mode: u8,
    flash_size: u8,
    flash_freq: u8,
    entry_addr: u32,
    segments: usize,
    size: usize,
    tasmota_version: Option<u32>,
    pad_ff: usize,
    seed: u64,
}

impl Default for Esp8266Image {
    fn default() -> Self {
        Esp8266Image {
            layout: Esp8266Layout::V1,
            flash_mode: FlashMode::Dout.code(),
            flash_size: Esp8266FlashSize::Mb4.code(),
            flash_freq: freq::DIV2,
            entry_addr: 0x4010_0004,
            segments: 3,
            size: 32 * 1024,
            tasmota_version: None,
            pad_ff: 0,
            seed: 1,
        }
    }
}

impl Esp8266Image {
    /// A v1 image, 32 KiB, 3 segments, DOUT 40 MHz 4 MB flash, no version marker, seed 1.
    pub fn new() -> Self {
        Esp8266Image::default()
    }

    /// Image shape.
    pub fn layout(mut self, layout: Esp8266Layout) -> Self {
        self.layout = layout;
        self
    }

    /// SPI flash mode.
    pub fn flash_mode(mut self, mode: FlashMode) -> Self {
        self.flash_mode = mode.code();
        self
    }

    /// Flash size.
    pub fn flash_size(mut self, size: Esp8266FlashSize) -> Self {
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

    /// Entry point of the image (of the sketch, for the Arduino layout).
    pub fn entry_addr(mut self, entry: u32) -> Self {
        self.entry_addr = entry;
        self
    }

    /// Number of loadable segments besides IROM, 1..=15 (clamped).
    pub fn segments(mut self, segments: usize) -> Self {
        self.segments = segments.clamp(1, MAX_SEGMENTS - 1);
        self
    }

    /// Exact file size in bytes (clamped up to [`Esp8266Image::min_size`]); smaller steps than
    /// the format allows are filled with trailing 0xFF.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Embeds Tasmota's version marker with this `VERSION` word (see [`tasmota_version`]).
    pub fn tasmota_version(mut self, version: u32) -> Self {
        self.tasmota_version = Some(version);
        self
    }

    /// Extra 0xFF bytes after the image, beyond [`Esp8266Image::size`].
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
        self.plan(self.min_big()).image_end
    }

    /// The image bytes.
    pub fn build(&self) -> Vec<u8> {
        self.build_with_layout().0
    }

    /// The image bytes and where everything is in them.
    pub fn build_with_layout(&self) -> (Vec<u8>, Layout) {
        let (mut bytes, layout) = self.render();
        self.seal(&mut bytes, &layout);
        (bytes, layout)
    }

    /// The image broken in one specific way; see [`Corruption`].
    pub fn build_corrupted(&self, corruption: &Corruption) -> Vec<u8> {
        let (mut bytes, layout) = self.build_with_layout();
        match corruption {
            Corruption::BadChecksum => {
                flip(&mut bytes, layout.checksum_offset, 0x5A);
                self.write_crc(&mut bytes, &layout);
            }
            other => other.apply_generic(&mut bytes, &layout),
        }
        bytes
    }

    fn big_step(&self) -> usize {
        if self.layout == Esp8266Layout::V2 { 16 } else { 4 }
    }

    fn min_big(&self) -> usize {
        if self.tasmota_version.is_some() { 96 } else { 16 }
    }

    fn small_len(&self, i: usize) -> usize {
        (0x200 + 0x80 * i).min(self.size / 32 / 4 * 4).max(16)
    }

    /// Offsets for a big segment of `big` bytes (IROM for v2 and Arduino, the first for v1).
    fn plan(&self, big: usize) -> Layout {
        let mut segments = Vec::new();
        let mut second_header_offset = None;
        let mut checksum_offset = 0;
        let mut offset = ESP8266_HEADER_LEN;
        let mut add = |offset: &mut usize, load_addr: u32, len: usize| {
            segments.push(SegmentSpan { offset: *offset, load_addr, len });
            *offset += SEGMENT_HEADER_LEN + len;
        };
        let small = |i: usize| (0x3FFE_8000 + 0x400 * i as u32, self.small_len(i));
        match self.layout {
            Esp8266Layout::V1 => {
                add(&mut offset, 0x4010_0000, big);
                for i in 1..self.segments {
                    let (addr, len) = small(i);
                    add(&mut offset, addr, len);
                }
            }
            Esp8266Layout::V2 => {
                add(&mut offset, 0, big);
                second_header_offset = Some(offset);
                offset += ESP8266_HEADER_LEN;
                add(&mut offset, 0x4010_0000, self.small_len(0));
                for i in 1..self.segments {
                    let (addr, len) = small(i);
                    add(&mut offset, addr, len);
                }
            }
            Esp8266Layout::Arduino => {
                add(&mut offset, 0x4010_F000, 0x5F0);
                add(&mut offset, 0x3FFF_DA00, 0x40);
                checksum_offset = checksum_offset_after(offset);
                offset = ARDUINO_APP_OFFSET + ESP8266_HEADER_LEN;
                second_header_offset = Some(ARDUINO_APP_OFFSET);
                add(&mut offset, 0x4020_1010, big);
                add(&mut offset, 0x4010_0000, self.small_len(0));
                for i in 1..self.segments {
                    let (addr, len) = small(i);
                    add(&mut offset, addr, len);
                }
            }
        }
        let last_checksum = checksum_offset_after(offset);
        let (checksum_offset, crc_offset, image_end) = match self.layout {
            Esp8266Layout::V1 => (last_checksum, None, last_checksum + 1),
            Esp8266Layout::V2 => (last_checksum, Some(last_checksum + 1), last_checksum + 1 + V2_CRC_LEN),
            Esp8266Layout::Arduino => (checksum_offset, Some(ARDUINO_CRC_OFFSET), last_checksum + 1),
        };
        let marker_segment = match self.layout {
            Esp8266Layout::V1 | Esp8266Layout::V2 => 0,
            Esp8266Layout::Arduino => EBOOT_SEGMENTS,
        };
        let tasmota_marker_offset =
            self.tasmota_version.and(segments.get(marker_segment)).map(|s| s.data_offset() + MARKER_IN_SEGMENT);
        Layout {
            segments,
            checksum_offset,
            digest_offset: None,
            app_desc_offset: None,
            second_header_offset,
            crc_offset,
            tasmota_marker_offset,
            image_end,
            file_len: image_end.max(self.size) + self.pad_ff,
        }
    }

    fn header(&self, out: &mut Vec<u8>, magic: u8, segments: usize, entry: u32) {
        out.push(magic);
        out.push(segments as u8);
        out.push(self.flash_mode);
        out.push((self.flash_size << 4) | (self.flash_freq & 0x0F));
        out.extend_from_slice(&entry.to_le_bytes());
    }

    /// All bytes but checksums and CRCs.
    fn render(&self) -> (Vec<u8>, Layout) {
        let big = fit_big_segment(self.size, self.min_big(), self.big_step(), |big| self.plan(big).image_end);
        let layout = self.plan(big);
        let mut rng = Prng::new(self.seed);
        let mut out = Vec::with_capacity(layout.file_len);
        let total = layout.segments.len();
        let segment = |out: &mut Vec<u8>, span: &SegmentSpan, rng: &mut Prng| {
            let mut data = payload(rng, span.len);
            if let (Some(marker), Some(version)) = (layout.tasmota_marker_offset, self.tasmota_version)
                && let Some(rel) = marker.checked_sub(span.data_offset()).filter(|r| *r < span.len)
            {
                put(&mut data, rel, &TASMOTA_MARKER_HEAD);
                put(&mut data, rel + 4, &version.to_le_bytes());
                put(&mut data, rel + 8, &TASMOTA_MARKER_TAIL);
            }
            push_segment(out, span.load_addr, &data);
        };
        match self.layout {
            Esp8266Layout::V1 => {
                self.header(&mut out, IMAGE_MAGIC, total, self.entry_addr);
                for span in &layout.segments {
                    segment(&mut out, span, &mut rng);
                }
                push_checksum(&mut out, 0);
            }
            Esp8266Layout::V2 => {
                self.header(&mut out, IMAGE_V2_MAGIC, 4, self.entry_addr);
                let (irom, rest) = layout.segments.split_first().unzip();
                if let Some(irom) = irom {
                    segment(&mut out, irom, &mut rng);
                }
                self.header(&mut out, IMAGE_MAGIC, total - 1, self.entry_addr);
                for span in rest.unwrap_or(&[]) {
                    segment(&mut out, span, &mut rng);
                }
                push_checksum(&mut out, 0);
                out.extend_from_slice(&[0; V2_CRC_LEN]);
            }
            Esp8266Layout::Arduino => {
                let (eboot, app) = layout.segments.split_at(EBOOT_SEGMENTS.min(total));
                self.header(&mut out, IMAGE_MAGIC, eboot.len(), 0x4010_F000);
                for span in eboot {
                    segment(&mut out, span, &mut rng);
                }
                push_checksum(&mut out, 0);
                out.resize(ARDUINO_APP_OFFSET, 0xAA);
                self.header(&mut out, IMAGE_MAGIC, app.len(), self.entry_addr);
                for span in app {
                    segment(&mut out, span, &mut rng);
                }
                // The sketch reserves the two CRC words at the start of its IROM data.
                put(&mut out, ARDUINO_LEN_OFFSET, &[0; 8]);
                push_checksum(&mut out, 0);
            }
        }
        out.resize(layout.file_len, 0xFF);
        (out, layout)
    }

    /// Fills in checksums, then CRCs, the way the real tools do.
    fn seal(&self, bytes: &mut [u8], layout: &Layout) {
        let data = |s: &SegmentSpan| bytes.get(s.data_offset()..s.end()).unwrap_or(&[]);
        let mut sums = Vec::new();
        match self.layout {
            Esp8266Layout::V1 => {
                sums.push((layout.checksum_offset, xor_checksum(layout.segments.iter().map(data))));
            }
            Esp8266Layout::V2 => {
                let normal = layout.segments.iter().skip(1).map(data);
                sums.push((layout.checksum_offset, xor_checksum(normal)));
            }
            Esp8266Layout::Arduino => {
                // The app checksum is taken with the CRC words still zero, as elf2bin.py does.
                put(bytes, ARDUINO_LEN_OFFSET, &[0; 8]);
                let data = |s: &SegmentSpan| bytes.get(s.data_offset()..s.end()).unwrap_or(&[]);
                let eboot = layout.segments.iter().take(EBOOT_SEGMENTS).map(data);
                sums.push((layout.checksum_offset, xor_checksum(eboot)));
                let app: Vec<&SegmentSpan> = layout.segments.iter().skip(EBOOT_SEGMENTS).collect();
                let app_end = app.last().map_or(0, |s| s.end());
                let sum = xor_checksum(app.iter().map(|s| data(s)));
                sums.push((checksum_offset_after(app_end), sum));
            }
        }
        for (offset, sum) in sums {
            put(bytes, offset, &[sum]);
        }
        self.write_crc(bytes, layout);
    }

    fn write_crc(&self, bytes: &mut [u8], layout: &Layout) {
        match self.layout {
            Esp8266Layout::V1 => {}
            Esp8266Layout::V2 => {
                if let Some(off) = layout.crc_offset {
                    let crc = esptool_crc32(bytes.get(..off).unwrap_or(&[]));
                    put(bytes, off, &crc.to_le_bytes());
                }
            }
            Esp8266Layout::Arduino => {
                // elf2bin.py: zero both words, CRC the whole file, then store length and CRC.
                let end = layout.image_end;
                put(bytes, ARDUINO_LEN_OFFSET, &[0; 8]);
                let crc = eboot_crc(bytes.get(..end).unwrap_or(&[]));
                put(bytes, ARDUINO_LEN_OFFSET, &(end as u32).to_le_bytes());
                put(bytes, ARDUINO_CRC_OFFSET, &crc.to_le_bytes());
            }
        }
    }
}

/// esptool's `esp8266_crc32`: zlib CRC-32, then a sign-dependent tweak the SDK bootloader expects.
fn esptool_crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let crc = crc.sum();
    if crc & 0x8000_0000 != 0 { crc ^ 0xFFFF_FFFF } else { crc.wrapping_add(1) }
}

/// eboot's CRC (CRC-32/MPEG-2: polynomial 0x04C11DB7, MSB first, init all ones, no final XOR),
/// bit by bit as `elf2bin.py` does it.
fn eboot_crc(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for byte in data {
        crc ^= u32::from(*byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le32(b: &[u8], off: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[off..off + 4]);
        u32::from_le_bytes(w)
    }

    #[test]
    fn eboot_crc_matches_the_reference_check_value() {
        // CRC-32/MPEG-2 of "123456789".
        assert_eq!(eboot_crc(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn v1_layout() {
        let (bytes, layout) = Esp8266Image::new().size(20_000).build_with_layout();
        assert_eq!(bytes.len(), 20_000);
        assert_eq!(bytes[0], 0xE9);
        assert_eq!(bytes[1], 3);
        assert_eq!(bytes[3] >> 4, 4);
        assert_eq!(layout.checksum_offset % 16, 15);
        let data = layout.segments.iter().map(|s| &bytes[s.data_offset()..s.end()]);
        assert_eq!(bytes[layout.checksum_offset], xor_checksum(data));
        assert!(bytes[layout.image_end..].iter().all(|b| *b == 0xFF));
    }

    #[test]
    fn v2_layout_excludes_irom_from_checksum_and_ends_with_crc() {
        let (bytes, layout) = Esp8266Image::new().layout(Esp8266Layout::V2).build_with_layout();
        assert_eq!(bytes.len(), 32 * 1024);
        assert_eq!(bytes[0], 0xEA);
        assert_eq!(bytes[1], 4);
        let second = layout.second_header_offset.unwrap_or(0);
        assert_eq!(bytes[second], 0xE9);
        assert_eq!(bytes[second + 1] as usize, layout.segments.len() - 1);
        assert_eq!(layout.segments[0].len % 16, 0);
        let data = layout.segments[1..].iter().map(|s| &bytes[s.data_offset()..s.end()]);
        assert_eq!(bytes[layout.checksum_offset], xor_checksum(data));
        let crc_at = layout.crc_offset.unwrap_or(0);
        assert_eq!(crc_at, layout.checksum_offset + 1);
        assert_eq!(le32(&bytes, crc_at), esptool_crc32(&bytes[..crc_at]));
    }

    #[test]
    fn arduino_layout_has_eboot_padding_app_and_crc() {
        let (bytes, layout) = Esp8266Image::new()
            .layout(Esp8266Layout::Arduino)
            .tasmota_version(tasmota_version(14, 3, 0, 0))
            .size(200_000)
            .build_with_layout();
        assert_eq!(bytes.len(), 200_000);
        assert_eq!(bytes[0], 0xE9);
        assert_eq!(bytes[1], 2);
        assert_eq!(bytes[layout.checksum_offset + 1], 0xAA);
        assert_eq!(bytes[ARDUINO_APP_OFFSET], 0xE9);
        assert_eq!(le32(&bytes, ARDUINO_LEN_OFFSET) as usize, layout.image_end);
        let mut zeroed = bytes[..layout.image_end].to_vec();
        zeroed[ARDUINO_LEN_OFFSET..ARDUINO_LEN_OFFSET + 8].fill(0);
        assert_eq!(le32(&bytes, ARDUINO_CRC_OFFSET), eboot_crc(&zeroed));
        let marker = layout.tasmota_marker_offset.unwrap_or(0);
        assert_eq!(&bytes[marker..marker + 4], &TASMOTA_MARKER_HEAD);
        assert_eq!(le32(&bytes, marker + 4), 0x0E03_0000);
        assert_eq!(&bytes[marker + 8..marker + 12], &TASMOTA_MARKER_TAIL);
    }

    #[test]
    fn tasmota_version_word() {
        assert_eq!(tasmota_version(14, 3, 0, 2), 0x0E03_0002);
    }

    #[test]
    fn bad_checksum_keeps_the_crc_valid() {
        let image = Esp8266Image::new().layout(Esp8266Layout::V2);
        let (good, layout) = image.build_with_layout();
        let bad = image.build_corrupted(&Corruption::BadChecksum);
        assert_ne!(good[layout.checksum_offset], bad[layout.checksum_offset]);
        let crc_at = layout.crc_offset.unwrap_or(0);
        assert_eq!(le32(&bad, crc_at), esptool_crc32(&bad[..crc_at]));
    }
}
