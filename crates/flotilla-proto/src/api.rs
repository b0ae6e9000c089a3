//! Admin API envelopes shared by the server and its clients.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every admin API error: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `unauthorized`, `not_found`, `invalid_image`.
    pub code: String,
    /// One line for a human.
    pub message: String,
}

/// `runtime.json` in the data dir: where a running engine listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RuntimeInfo {
    pub admin_url: String,
    pub device_url: String,
    pub pid: u32,
    pub version: String,
    /// MQTT broker URL devices use (`None` when MQTT is off). The embedded broker's credentials
    /// are in `<data>/mqtt-credentials`.
    #[serde(default)]
    pub mqtt_url: Option<String>,
    /// `https://…` of the device server, when HTTPS is on.
    #[serde(default)]
    pub device_https_url: Option<String>,
}

/// `GET /health` on either server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /api/v1/keys/public`: the site signing key, for baking into device firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PublicKey {
    /// Algorithm; always `ed25519`.
    pub algorithm: String,
    /// Raw 32-byte public key, lower-case hex.
    pub public_key_hex: String,
    /// The same key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
    /// First 16 hex digits of SHA-256 of the raw key.
    pub key_id: String,
}

/// A simulated demo fleet the engine started (`POST /api/v1/demo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DemoInfo {
    /// How many simulated devices run.
    pub devices: u32,
    /// The demo firmware imported for it (a version), if any.
    pub firmware: Option<String>,
    /// One line: the fleet's mix, addresses and failure rates.
    pub summary: String,
}

/// `GET /api/v1/status`: what the engine runs and the state of each of its connections, for the
/// overview and settings views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EngineStatus {
    pub version: String,
    pub pid: u32,
    pub data_dir: String,
    /// Seconds since the engine started.
    pub uptime_s: u64,
    pub admin: ListenerStatus,
    pub device_server: ListenerStatus,
    pub mqtt: MqttStatus,
    pub mdns: MdnsStatus,
    pub tls: TlsStatus,
    pub demo: DemoStatus,
    /// The site signing key's id (first 16 hex digits of SHA-256 of the public key).
    pub signing_key_id: String,
    /// The device families this engine can update (others are found but not updated yet).
    pub updatable_families: Vec<crate::device::Family>,
    /// The state of the data dir: a full disk, firmware files that are missing.
    #[serde(default)]
    pub storage: StorageStatus,
}

/// The data dir's health (`storage` of `GET /api/v1/status`; `disk_full` also comes live as a
/// `storage.changed` event on the SSE stream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct StorageStatus {
    /// The disk is full: changes are kept in memory and retried, but are not being saved. Cleared
    /// by itself once they land.
    pub disk_full: bool,
    /// Firmware store files (`<sha256>`, `<sha256>.gz`) a firmware row names but the disk lacks,
    /// found at start-up; re-importing that firmware restores its file.
    pub missing_firmware_files: Vec<String>,
}

/// `POST /api/v1/backup`: where to write a backup of the running engine's data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackupRequest {
    /// An absolute path on the engine's machine, outside the data dir, that does not exist yet
    /// (or is an empty folder).
    pub path: String,
}

/// What a backup (or a restore) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackupSummary {
    /// The backup folder (for a restore: the data dir restored into).
    pub path: String,
    pub firmware: u64,
    pub devices: u64,
    pub rollouts: u64,
    /// Files in the backup, its index included.
    pub files: u64,
}

/// A server the engine runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ListenerStatus {
    /// The address it is bound to (`0.0.0.0:8070`).
    pub listen: String,
    /// The URL others use.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MqttStatus {
    /// `embedded`, `external` or `off`.
    pub mode: String,
    /// Broker URL devices use, without credentials.
    pub url: Option<String>,
    /// Where the embedded broker listens.
    pub listen: Option<String>,
    /// Is the engine's client connected to the broker?
    pub connected: bool,
    /// The user name devices use (the password stays in the data dir).
    pub username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MdnsStatus {
    /// Is `_flotilla._tcp` advertised?
    pub enabled: bool,
    pub service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TlsStatus {
    /// Does the device server speak HTTPS (`--https`)? Plain HTTP stays on beside it for devices
    /// that cannot fetch over TLS; signed manifests are the guarantee either way.
    pub enabled: bool,
    /// SHA-256 of the certificate (DER), lowercase hex, when the site has one (the same as
    /// `cert_sha256`; kept for older clients).
    pub fingerprint: Option<String>,
    /// SHA-256 of the certificate (DER), lowercase hex. Changes when the certificate is made
    /// again for new local names.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// SHA-256 of the certificate's public key (SubjectPublicKeyInfo DER), lowercase hex. Stays
    /// the same when the certificate is made again (same key): the better pin.
    #[serde(default)]
    pub spki_sha256: Option<String>,
    /// The same as `spki_sha256`, base64 (curl `--pinnedpubkey sha256//<this>`).
    #[serde(default)]
    pub spki_sha256_base64: Option<String>,
    /// The certificate in PEM (`esp_https_ota`'s `cert_pem`).
    #[serde(default)]
    pub cert_pem: Option<String>,
    /// The host names and addresses the certificate covers.
    #[serde(default)]
    pub names: Vec<String>,
    /// `https://…` of the device server, when HTTPS is on.
    #[serde(default)]
    pub https_url: Option<String>,
    /// `mqtts://…` of the embedded broker, when it listens for MQTT over TLS.
    #[serde(default)]
    pub mqtt_tls_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DemoStatus {
    /// Can this engine start a demo fleet (`POST /api/v1/demo`)?
    pub available: bool,
    /// The running demo fleet.
    pub running: Option<DemoInfo>,
}

/// The site's saved engine settings (`<data>/settings.json`), edited in the UI's settings view.
/// Each is used at the next start of the engine; a command-line flag or `FLOTILLA_*` variable
/// given at start wins over the file. `None`: the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SiteSettings {
    /// Device HTTP server address (`0.0.0.0:8070`).
    #[serde(default)]
    pub device_listen: Option<String>,
    /// URL devices use to reach the device server (default: derived from the address).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Admin API address (`127.0.0.1:8071`; keep it on loopback).
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// `embedded`, `off`, or the site's broker `mqtt://host:port` / `mqtts://host:port`.
    #[serde(default)]
    pub mqtt: Option<String>,
    /// Where the embedded broker listens (`0.0.0.0:1883`).
    #[serde(default)]
    pub mqtt_listen: Option<String>,
    /// User name for an external broker.
    #[serde(default)]
    pub mqtt_user: Option<String>,
    /// Password for an external broker. The API never sends it back (reads say only whether
    /// one is set); on write, `None` keeps the saved password and `""` removes it.
    #[serde(default)]
    pub mqtt_password: Option<String>,
    /// Advertise `_flotilla._tcp` over mDNS.
    #[serde(default)]
    pub mdns: Option<bool>,
    /// Days the audit log keeps events (default 90). Applies without a restart.
    #[serde(default)]
    pub event_retention_days: Option<u32>,
    /// Most events the audit log keeps, oldest pruned first (default 1,000,000). Applies without
    /// a restart.
    #[serde(default)]
    pub event_retention_max: Option<u64>,
    /// Most new devices a minute that sources on the LAN may add to the inventory (default
    /// 120; 0: none). Beyond, a new device's check-in is answered 429; loopback is exempt.
    /// Applies without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub new_devices_per_minute: Option<u32>,
    /// Most devices the inventory holds before sources on the LAN may add no more (default
    /// 5000). Applies without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub max_devices: Option<u32>,
    /// New devices wait for a person's approval (`flotilla devices approve`) before they get
    /// offers (default: trust on first use).
    #[serde(default)]
    pub approve_new_devices: Option<bool>,
    /// Refuse check-ins of the compatibility profiles (devices that cannot prove who they are).
    #[serde(default)]
    pub refuse_unauthenticated: Option<bool>,
}

/// `GET`/`PUT /api/v1/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingsView {
    /// What is saved for the next start.
    pub saved: SiteSettings,
    /// What the running engine uses, every field filled in (flags given at start override what
    /// is saved: `--no-mdns` shows here as `mdns: false`).
    pub effective: SiteSettings,
    /// Is an external broker password saved?
    pub mqtt_password_set: bool,
    /// Does the running engine differ from what is saved (a restart applies it)?
    pub restart_required: bool,
    /// Where the file is.
    pub path: String,
}

/// How many devices ran each version at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct VersionSample {
    /// RFC 3339 UTC.
    pub at: String,
    /// Version → devices (`unknown` for devices that report none).
    pub versions: std::collections::BTreeMap<String, u32>,
}

/// How one finished rollout went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutResult {
    pub id: i64,
    pub name: String,
    pub firmware_version: String,
    /// When it finished (RFC 3339 UTC).
    pub finished_at: String,
    pub succeeded: u32,
    /// Failed or timed out.
    pub failed: u32,
    /// Devices it meant to update (all but the skipped).
    pub planned: u32,
}

/// Failed jobs that share a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ReasonCount {
    /// The reason with device-specific numbers blanked (`came back on …, not …`).
    pub reason: String,
    pub devices: u32,
    /// One full example of it.
    pub example: String,
}

/// What the dashboard panels show (`GET /api/v1/metrics/fleet`): versions over time, the
/// success of recent rollouts, and failures by reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FleetMetrics {
    /// Oldest first: a sample an hour (and one whenever a version count changed since).
    pub versions: Vec<VersionSample>,
    /// Finished rollouts, oldest first (at most the last 50).
    pub rollouts: Vec<RolloutResult>,
    /// Failures of the last 30 days' rollouts by reason, most devices first.
    pub failures: Vec<ReasonCount>,
}
