//! What Flotilla knows about a firmware image: what the parser read from its bytes
//! ([`ImageInfo`]) and what the store keeps about an imported one ([`Firmware`]).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    /// SHA-256 of the image (lower-case hex), of the inflated bytes for a gzip file: the
    /// firmware's one identity and content address, whichever form it came in.
    pub sha256: String,
    /// The gzip form: for a gzip file, the file as given; for an imported firmware, the `.bin.gz`
    /// form stored beside the image (served at `/fw/<sha256>.gz`), if one was ever imported.
    /// `None` for an uncompressed file, or a firmware only ever imported uncompressed.
    #[serde(default)]
    pub gzip: Option<GzipForm>,
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

/// The gzip (`.bin.gz`) form of a firmware image: Tasmota on ESP8266 takes it, ESP-IDF's
/// `esp_https_ota` and Flotilla's own client take the raw image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GzipForm {
    /// Size of the gzip file in bytes.
    pub size: u64,
    /// SHA-256 of the gzip file (lower-case hex).
    pub sha256: String,
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
    /// SHA-256 of the image (lower-case hex; of the inflated image when it was imported as gzip):
    /// the image lives at `<data>/firmware/<sha256>`, its gzip form (if any, see
    /// `image.gzip`) at `<data>/firmware/<sha256>.gz`.
    pub sha256: String,
    /// SemVer version (from the image, or given at import).
    pub version: String,
    /// Device model the firmware is for; defaults to the project name, else the chip.
    pub model: String,
    pub chip: Chip,
    /// Format of the image (`esp32` or `esp8266`; `gzip` only for a firmware imported as gzip
    /// by an older version whose image another firmware already has).
    pub format: ImageFormat,
    pub project: Option<String>,
    pub idf_version: Option<String>,
    pub secure_version: Option<u32>,
    /// Size of the image in bytes (what `/fw/<sha256>` serves; the gzip form's size is in
    /// `image.gzip`).
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
    /// Everything the parser read from the image, and its gzip form (`image.gzip`).
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

/// Options of a firmware import; every field optional. Also the query of
/// `POST /api/v1/firmware/inspect`, which answers for an import with these options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default)]
#[into_params(parameter_in = Query)]
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
    /// False when this image was already imported (the import is idempotent; a `.bin.gz` whose
    /// inflated image is already there counts as the same firmware).
    pub created: bool,
    /// True when the firmware was already there and this import added its gzip form.
    #[serde(default)]
    pub gzip_added: bool,
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
    /// Job the link is for: 1-64 characters of `A-Z a-z 0-9 - _` (default `manual`).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub job: Option<String>,
    /// Lifetime in seconds (default 3600).
    pub ttl_secs: Option<u64>,
    /// A link to the gzip form (`/fw/<sha256>.gz`) instead of the raw image; 404 when the
    /// firmware has none.
    pub gzip: Option<bool>,
}

/// What an import would record: the version, model and flags, and the manifest it would sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImportPlan {
    /// SemVer version (the given one, else the image's).
    pub version: String,
    /// Model (the given one, else the image's project name, else the chip).
    pub model: String,
    pub channel: Channel,
    pub notes: Option<String>,
    pub min_version: Option<String>,
    pub public: bool,
    /// The manifest devices would be told (unsigned here; signed at import).
    pub manifest: Manifest,
}

/// What an import of a file with given options would do. Import, the admin API's inspect and
/// `flotilla firmware inspect` decide it with the same function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// A new firmware would be recorded (the report's `would_record`).
    Ready,
    /// This image is already imported as `firmware`: importing answers with it and changes
    /// nothing, except that a gzip file adds the gzip form the firmware lacks (`adds_gzip`).
    Duplicate { firmware: i64, version: String, model: String, adds_gzip: bool },
    /// Import would refuse: `code` and `message` are the error it would answer with
    /// (`refused`: a rule such as the OTA slot or the flash size; `conflict`: this version of
    /// this model exists with other bytes; `bad_request`: an option is malformed).
    Refused { code: String, message: String },
}

impl Verdict {
    /// Can the image be imported (or is it already)? False only when import would refuse.
    pub fn can_work(&self) -> bool {
        !matches!(self, Verdict::Refused { .. })
    }
}

/// What `POST /api/v1/firmware/inspect` and `flotilla firmware inspect --json` answer for a
/// file that parses: the image facts ([`ImageInfo`]'s fields, at the top level) and the verdict
/// of an import. A file that does not parse is an error (`invalid_image`), not a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct InspectReport {
    #[serde(flatten)]
    pub image: ImageInfo,
    pub verdict: Verdict,
    /// What import would record, when the verdict is `ready`.
    pub would_record: Option<ImportPlan>,
    /// True when the library was consulted (duplicates, same version with other bytes): always
    /// through the admin API; `flotilla firmware inspect` only with `--check`.
    pub library_checked: bool,
}
