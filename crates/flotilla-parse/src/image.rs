//! Reads a firmware file and says what it is: ESP32-family app image, ESP8266 image (v1, v2 or
//! the Arduino eboot + sketch layout), or a gzip of one of those. It walks every segment, checks
//! the XOR checksum, the appended SHA-256 and the CRCs the tools add, and reads the app
//! descriptor (ESP32) or Tasmota's version marker (ESP8266).
//!
//! This module only parses. It must never decide policy (does the image fit the OTA slot, is the
//! version SemVer, is the chip the one the device has): the store-side import does that with the
//! [`ImageInfo`] this returns. It must never panic either, whatever the bytes: every read is
//! bounds-checked and every error is a one-line reason naming the offset or field. Offsets in
//! errors about a gzip file's content are offsets in the inflated image
//! ([`ImageError::InGzip`]).
//!
//! # Layout
//! - this file: [`inspect`], [`ImageError`], format detection.
//! - `layout`: bounds-checked reads, the segment walk and the checksum shared by all formats.
//! - `esp32`: header, extended header, digest, `esp_app_desc_t`.
//! - `esp8266`: v1, v2, Arduino layout, Tasmota marker.
//! - `gzip`: inflating with a hard output limit.
//!
//! # Choices
//! - Descriptor and header strings are NUL-padded C strings; one that is not UTF-8 is an error
//!   ([`ImageError::InvalidString`]) rather than a lossy guess, and an empty one reads as `None`.
//! - An ESP32 image whose first segment does not start with the descriptor magic is valid and
//!   reports no version, project, IDF version, times, secure version or ELF hash.
//! - After the image only 0xFF padding may follow (`esptool --pad-to-size`), except a Secure
//!   Boot v2 signature sector where esptool puts it (at the 64 KiB boundary the image ends on).

use bytes::Bytes;
use flotilla_proto::firmware::{Chip, GzipForm, ImageFormat, ImageInfo, SegmentInfo};
use sha2::{Digest, Sha256};

mod esp32;
mod esp8266;
mod gzip;
mod layout;
#[cfg(test)]
mod tests;

/// Largest inflated size [`inspect`] accepts for a gzip file: 16 MiB, the largest ESP32 flash
/// an app partition realistically spans. Anything bigger is refused as a possible gzip bomb.
pub const DEFAULT_GZIP_LIMIT: u64 = 16 * 1024 * 1024;

/// Why a file is not an acceptable firmware image. Each message is one line naming the offset
/// (hex) or field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file has no bytes.
    #[error("not a firmware image: the file is empty")]
    Empty,
    /// The first byte is no image magic.
    #[error("not a firmware image: first byte is 0x{first_byte:02X} at offset 0 (expected 0xE9, 0xEA or gzip 1F 8B)")]
    NotAnImage { first_byte: u8 },
    /// The file ends inside a structure.
    #[error("truncated: {what} at offset {offset:#x} needs {needed} bytes, only {available} remain")]
    Truncated { what: String, offset: u64, needed: u64, available: u64 },
    /// A header declares more than 16 segments.
    #[error("too many segments: {count} at offset {offset:#x} (at most {max})")]
    TooManySegments { count: u8, offset: u64, max: u8 },
    /// A header declares zero segments.
    #[error("no segments: the image header's segment count at offset {offset:#x} is 0")]
    NoSegments { offset: u64 },
    /// A segment's length runs past the end of the file.
    #[error("segment {index} at offset {offset:#x} declares {len} bytes but only {remaining} remain")]
    SegmentOutOfBounds { index: usize, offset: u64, len: u32, remaining: u64 },
    /// The XOR checksum over the segment data does not match the stored byte.
    #[error("checksum mismatch at offset {offset:#x}: image says {stored:#04x}, computed {computed:#04x}")]
    ChecksumMismatch { offset: u64, stored: u8, computed: u8 },
    /// The appended SHA-256 does not match the bytes before it.
    #[error("SHA-256 digest at offset {offset:#x} does not match the image")]
    DigestMismatch { offset: u64 },
    /// A CRC word the tools add (ESP8266 v2 CRC-32, Arduino eboot CRC) does not match.
    #[error("CRC mismatch at offset {offset:#x}: image says {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { offset: u64, stored: u32, computed: u32 },
    /// The ESP32 header names a chip Flotilla does not know.
    #[error("unknown chip id {chip_id:#06x} at offset {offset:#x}")]
    UnknownChipId { chip_id: u16, offset: u64 },
    /// A header field holds a value the format does not allow.
    #[error("invalid {field} at offset {offset:#x}: {detail}")]
    InvalidField { field: &'static str, offset: u64, detail: String },
    /// A string field of the app descriptor is not UTF-8.
    #[error("app descriptor field `{field}` at offset {offset:#x} is not valid UTF-8")]
    InvalidString { field: &'static str, offset: u64 },
    /// Bytes other than 0xFF padding follow the image (or the gzip stream).
    #[error(
        "{len} bytes of unexpected data at offset {offset:#x} after the end of the {after} (only 0xFF padding may follow)"
    )]
    TrailingData { offset: u64, len: u64, after: &'static str },
    /// The gzip stream inflates to more than the limit.
    #[error("gzip image inflates past the {limit}-byte limit")]
    GzipTooLarge { limit: u64 },
    /// The gzip stream cannot be inflated.
    #[error("corrupt gzip stream: {reason}")]
    GzipCorrupt { reason: String },
    /// The gzip stream holds another gzip stream.
    #[error("gzip image contains another gzip stream (nested compression is not supported)")]
    NestedGzip,
    /// The inflated content of a gzip file is not a valid image; offsets are in the inflated
    /// image.
    #[error("in the inflated gzip image: {0}")]
    InGzip(Box<ImageError>),
}

/// A parsed firmware file: what it is, and its bytes in each form.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// What the parser read; `info.sha256` is the image's SHA-256 and `info.gzip` describes the
    /// file as given when it was gzip.
    pub info: ImageInfo,
    /// The raw image (inflated, for a gzip file).
    pub image: Bytes,
    /// The gzip file as given, for a gzip file.
    pub gzip: Option<Bytes>,
}

/// Parses, validates and hashes a firmware file, inflating gzip up to [`DEFAULT_GZIP_LIMIT`].
pub fn inspect(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    inspect_with_limit(bytes, DEFAULT_GZIP_LIMIT)
}

/// [`inspect`] with another cap on the inflated size of gzip files.
pub fn inspect_with_limit(bytes: &[u8], gzip_limit: u64) -> Result<ImageInfo, ImageError> {
    read_with_limit(Bytes::copy_from_slice(bytes), gzip_limit).map(|i| i.info)
}

/// [`inspect`], keeping the bytes: the raw image (inflated from a gzip file) and the gzip file.
pub fn read(bytes: Bytes) -> Result<Inspected, ImageError> {
    read_with_limit(bytes, DEFAULT_GZIP_LIMIT)
}

/// [`read`] with another cap on the inflated size of gzip files.
///
/// One firmware has one identity whichever form it comes in: `sha256` is always the SHA-256 of
/// the image itself, so `app.bin` and `app.bin.gz` of the same build are the same firmware.
pub fn read_with_limit(bytes: Bytes, gzip_limit: u64) -> Result<Inspected, ImageError> {
    if bytes.starts_with(&gzip::MAGIC) {
        let inflated = gzip::inflate(&bytes, gzip_limit)?;
        if inflated.starts_with(&gzip::MAGIC) {
            return Err(ImageError::NestedGzip);
        }
        let (mut info, image_sha) = inspect_image(&inflated).map_err(|e| ImageError::InGzip(Box::new(e)))?;
        info.inner_format = Some(info.format);
        info.format = ImageFormat::Gzip;
        info.size = bytes.len() as u64;
        info.image_size = inflated.len() as u64;
        info.sha256 = hex::encode(image_sha.unwrap_or_else(|| Sha256::digest(&inflated).into()));
        info.gzip = Some(GzipForm { size: bytes.len() as u64, sha256: hex::encode(Sha256::digest(&bytes)) });
        return Ok(Inspected { info, image: Bytes::from(inflated), gzip: Some(bytes) });
    }
    let (mut info, file_sha) = inspect_image(&bytes)?;
    info.sha256 = hex::encode(file_sha.unwrap_or_else(|| Sha256::digest(&bytes).into()));
    Ok(Inspected { info, image: bytes, gzip: None })
}

/// Parses an uncompressed image. Returns the SHA-256 of the whole image when the parser computed
/// it on the way (ESP32 hashes once for both digest and image hash); `None` means the caller
/// hashes. `ImageInfo::sha256` is left empty.
fn inspect_image(bytes: &[u8]) -> Result<(ImageInfo, Option<[u8; 32]>), ImageError> {
    match bytes.first() {
        None => Err(ImageError::Empty),
        Some(&esp32::MAGIC) => inspect_e9(bytes),
        Some(&esp8266::V2_MAGIC) => esp8266::parse_v2(bytes).map(|info| (info, None)),
        Some(&first_byte) => Err(ImageError::NotAnImage { first_byte }),
    }
}

/// Magic 0xE9 starts both ESP32 images and ESP8266 v1 images; esptool knows which from its
/// `--chip` argument, we have to tell from the bytes. The rule: an image is accepted as the
/// first interpretation that validates completely (header, every segment in bounds, checksum,
/// digest or CRC, nothing but padding after it), ESP32 first. A false match would need a
/// known chip id, a segment walk that lands exactly, and a matching checksum and SHA-256 under
/// the wrong layout. When neither validates, the error reported is the ESP32 one if the header
/// looks like an ESP32 extended header (see [`esp32::looks_like_esp32`]), the ESP8266 one
/// otherwise.
fn inspect_e9(bytes: &[u8]) -> Result<(ImageInfo, Option<[u8; 32]>), ImageError> {
    let as_esp32 = match esp32::parse(bytes) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e,
    };
    match esp8266::parse_v1(bytes) {
        Ok(info) => Ok((info, None)),
        Err(as_esp8266) if !esp32::looks_like_esp32(bytes) => Err(as_esp8266),
        Err(_) => Err(as_esp32),
    }
}

/// An [`ImageInfo`] with the fields every format fills; the format parsers complete it.
fn base_info(format: ImageFormat, chip: Chip, bytes: &[u8], entry_addr: u32) -> ImageInfo {
    ImageInfo {
        format,
        inner_format: None,
        esp8266_image_version: None,
        chip,
        version: None,
        project: None,
        idf_version: None,
        compile_time: None,
        compile_date: None,
        secure_version: None,
        app_elf_sha256: None,
        size: bytes.len() as u64,
        image_size: bytes.len() as u64,
        sha256: String::new(),
        gzip: None,
        flash_size: None,
        flash_mode: None,
        flash_freq: None,
        min_chip_rev: None,
        max_chip_rev: None,
        entry_addr,
        hash_appended: false,
        segments: Vec::<SegmentInfo>::new(),
    }
}
