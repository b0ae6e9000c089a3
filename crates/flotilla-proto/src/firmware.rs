//! What Flotilla knows about a firmware image: what the parser read from its bytes
//! ([`ImageInfo`]) and what the store keeps about an imported one ([`Firmware`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Container format of a firmware file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// ESP32-family app image (`esp_image_header_t`, magic 0xE9, extended header).
    Esp32,
    /// ESP8266 image, v1 (magic 0xE9) or v2 (magic 0xEA).
    Esp8266,
    /// gzip-compressed image (`.bin.gz`); [`ImageInfo::inner_format`] tells what is inside.
    Gzip,
}

/// Chip family an image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum Chip {
    Esp8266,
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

impl Chip {
    /// Every chip, in a stable order.
    pub const ALL: [Chip; 11] = [
        Chip::Esp8266,
        Chip::Esp32,
        Chip::Esp32s2,
        Chip::Esp32s3,
        Chip::Esp32c2,
        Chip::Esp32c3,
        Chip::Esp32c5,
        Chip::Esp32c6,
        Chip::Esp32c61,
        Chip::Esp32h2,
        Chip::Esp32p4,
    ];

    /// The name used on the wire and in the CLI (`esp32`, `esp32-s3`, ...): Espressif's spelling, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Chip::Esp8266 => "esp8266",
            Chip::Esp32 => "esp32",
            Chip::Esp32s2 => "esp32s2",
            Chip::Esp32s3 => "esp32s3",
            Chip::Esp32c2 => "esp32c2",
            Chip::Esp32c3 => "esp32c3",
            Chip::Esp32c5 => "esp32c5",
            Chip::Esp32c6 => "esp32c6",
            Chip::Esp32c61 => "esp32c61",
            Chip::Esp32h2 => "esp32h2",
            Chip::Esp32p4 => "esp32p4",
        }
    }

    /// Parses [`Chip::as_str`] output; also accepts `esp32-s3` style spellings and any case.
    pub fn parse(s: &str) -> Option<Chip> {
        let norm: String = s.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect();
        Chip::ALL.into_iter().find(|c| c.as_str() == norm)
    }
}

impl std::fmt::Display for Chip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One segment of an image, as found while walking it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SegmentInfo {
    /// File offset of the segment header (of the decompressed image for gzip).
    pub offset: u64,
    /// Address the bootloader loads the segment to.
    pub load_addr: u32,
    /// Length of the segment data in bytes.
    pub len: u32,
}

/// Everything the parser read from a firmware file. Produced by
/// `flotilla_core::firmware::image::inspect`; stable JSON (documented in `docs/cli.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImageInfo {
    /// Container format of the file as given.
    pub format: ImageFormat,
    /// For gzip files, the format of the inflated image; `None` otherwise.
    pub inner_format: Option<ImageFormat>,
    /// ESP8266 image version (1 for magic 0xE9, 2 for 0xEA); `None` for ESP32-family images.
    pub esp8266_image_version: Option<u8>,
    /// Chip the image is built for.
    pub chip: Chip,
    /// Application version from `esp_app_desc_t` (or the Tasmota version marker on ESP8266), if any.
    pub version: Option<String>,
    /// Project name from `esp_app_desc_t`.
    pub project: Option<String>,
    /// ESP-IDF version the image was built with.
    pub idf_version: Option<String>,
    /// Compile time (`__TIME__`) from `esp_app_desc_t`.
    pub compile_time: Option<String>,
    /// Compile date (`__DATE__`) from `esp_app_desc_t`.
    pub compile_date: Option<String>,
    /// Anti-rollback `secure_version` from `esp_app_desc_t`.
    pub secure_version: Option<u32>,
    /// SHA-256 of the app ELF (lower-case hex) from `esp_app_desc_t`.
    pub app_elf_sha256: Option<String>,
    /// Size of the file in bytes (compressed size for gzip).
    pub size: u64,
    /// Size of the image in bytes after inflating (equals `size` when not compressed).
    pub image_size: u64,
    /// SHA-256 of the file bytes as given (lower-case hex): the content address.
    pub sha256: String,
    /// Flash size declared in the header, e.g. `4MB`, `1MB`, `512KB`.
    pub flash_size: Option<String>,
    /// SPI flash mode declared in the header: `qio`, `qout`, `dio`, `dout`, `fast-read`, `slow-read`.
    pub flash_mode: Option<String>,
    /// SPI flash frequency declared in the header, e.g. `40m`, `80m`.
    pub flash_freq: Option<String>,
    /// Minimum chip revision (major*100+minor) from the ESP32 extended header.
    pub min_chip_rev: Option<u16>,
    /// Maximum chip revision (major*100+minor) from the ESP32 extended header.
    pub max_chip_rev: Option<u16>,
    /// Entry point address.
    pub entry_addr: u32,
    /// Whether a SHA-256 digest is appended (and was verified).
    pub hash_appended: bool,
    /// Every segment, in file order.
    pub segments: Vec<SegmentInfo>,
}

/// Release channel of an imported firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Stable,
    Beta,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s.to_ascii_lowercase().as_str() {
            "stable" => Some(Channel::Stable),
            "beta" => Some(Channel::Beta),
            _ => None,
        }
    }

    /// Does a device following `self` take firmware released on `firmware`? Beta devices take
    /// stable releases too (they are the newer of the two more often than not); stable devices
    /// take only stable ones.
    pub fn accepts(self, firmware: Channel) -> bool {
        self == Channel::Beta || firmware == Channel::Stable
    }
}

/// An imported firmware: the image's facts plus what the technician said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Firmware {
    /// Store id.
    pub id: i64,
    /// SHA-256 of the file (lower-case hex); the file lives at `<data>/firmware/<sha256>`.
    pub sha256: String,
    /// SemVer version (from the image, or given at import).
    pub version: String,
    /// Device model the firmware is for; defaults to the project name, else the chip.
    pub model: String,
    pub chip: Chip,
    pub format: ImageFormat,
    pub project: Option<String>,
    pub idf_version: Option<String>,
    pub secure_version: Option<u32>,
    /// File size in bytes.
    pub size: u64,
    pub channel: Channel,
    pub notes: Option<String>,
    /// Devices must already run at least this version to take this firmware (stepping stone).
    pub min_version: Option<String>,
    /// A blocked firmware is never offered to a device.
    pub blocked: bool,
    /// Served without a per-job download token (for vendor devices that cannot carry one).
    pub public: bool,
    /// Archived: hidden from the library and from new rollouts, kept (file and row) for the
    /// reports of the rollouts that used it.
    pub archived: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Everything the parser read from the image.
    pub image: ImageInfo,
    /// The signed manifest devices receive.
    pub manifest: SignedManifest,
}

/// What a device is told about a firmware; signed by the site key.
///
/// The signature covers the canonical JSON of this struct (fields in this order, no whitespace),
/// which is exactly what `serde_json::to_vec(&manifest)` produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Manifest {
    pub version: String,
    pub size: u64,
    pub sha256: String,
    pub chip: Chip,
    pub model: String,
    pub min_version: Option<String>,
    pub secure_version: Option<u32>,
}

/// A [`Manifest`] with its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SignedManifest {
    pub manifest: Manifest,
    /// Ed25519 signature over the manifest's canonical JSON, base64 (standard alphabet).
    pub signature: String,
    /// Id of the signing key: first 16 hex digits of SHA-256 of the public key.
    pub key_id: String,
}

/// Options of a firmware import; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default)]
pub struct ImportOptions {
    /// Version to record, overriding (or supplying) the image's own; must be SemVer.
    pub version: Option<String>,
    /// Model the firmware is for; defaults to the image's project name, else the chip.
    pub model: Option<String>,
    pub channel: Option<Channel>,
    pub notes: Option<String>,
    pub min_version: Option<String>,
    /// Serve without per-job tokens.
    pub public: Option<bool>,
}

/// Import firmware from a file on the server's own disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImportPathRequest {
    /// Absolute path of the file, on the machine running the engine.
    pub path: String,
    #[serde(flatten)]
    pub options: ImportOptions,
}

/// Result of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImportResponse {
    pub firmware: Firmware,
    /// False when exactly these bytes were already imported (the import is idempotent).
    pub created: bool,
}

/// Change the flags of a firmware.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default)]
pub struct FirmwarePatch {
    pub blocked: Option<bool>,
    pub public: Option<bool>,
    pub channel: Option<Channel>,
    pub notes: Option<String>,
    pub archived: Option<bool>,
    /// Stepping stone: devices must run at least this version first (SemVer); `""` removes it.
    pub min_version: Option<String>,
}

/// A download link for one job: the URL carries the job token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DownloadLink {
    pub url: String,
    /// Unix seconds after which the token is refused.
    pub expires: u64,
}

/// Ask for a download link (mostly for tests and tools: rollouts make their own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default)]
pub struct DownloadLinkRequest {
    /// Job the link is for; any string without `/`.
    pub job: Option<String>,
    /// Lifetime in seconds (default 3600).
    pub ttl_secs: Option<u64>,
}
