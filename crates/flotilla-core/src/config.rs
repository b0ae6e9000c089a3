//! Engine configuration, and the layout of the data dir.
//!
//! Raw settings (flags, environment) are turned into an [`EngineConfig`] by the binaries; this
//! module owns the defaults and the one place that knows where each file of the data dir lives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest image accepted by default: 3.9 MiB, the usual OTA slot of a 4 MB ESP32 layout with room
/// to spare.
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 4_089_446;

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Device HTTP server (LAN): firmware downloads, device API.
    pub device_listen: SocketAddr,
    /// Admin API (loopback by default).
    pub admin_listen: SocketAddr,
    /// URL devices use to reach the device server. `None`: derived from the bound address (the
    /// first LAN IPv4 address when bound to `0.0.0.0`).
    pub device_public_url: Option<String>,
    /// Advertise `_flotilla._tcp` over mDNS.
    pub mdns: bool,
    /// Largest image (inflated size) accepted for a model without its own limit.
    pub max_image_size: u64,
    /// Per-model image size limits.
    pub model_max_image_size: HashMap<String, u64>,
    /// Firmware bytes kept in memory for serving (least recently used dropped first).
    pub serve_cache_bytes: u64,
    /// Free disk space an import must leave (so the database can still record changes).
    pub disk_reserve: u64,
    /// Where MQTT comes from (default: the embedded broker on `0.0.0.0:1883`).
    pub mqtt: MqttMode,
    /// MQTT topic conventions the engine listens to and commands with.
    pub topic_profiles: Vec<flotilla_proto::native::TopicProfile>,
    /// How to start a simulated demo fleet (`POST /api/v1/demo`); `None`: no demo.
    pub demo: Option<crate::demo::DemoLauncher>,
    /// What `<data>/settings.json` said when this configuration was made (to tell whether a
    /// saved change needs a restart).
    pub settings: flotilla_proto::api::SiteSettings,
    /// Timeouts and the connection cap of the device server.
    pub device_limits: DeviceServerLimits,
    /// HTTPS on the device server (the site certificate, `<data>/tls/`); `None`: off.
    pub https_listen: Option<SocketAddr>,
    /// MQTT over TLS on the embedded broker (the same certificate); `None`: off.
    pub mqtt_tls_listen: Option<SocketAddr>,
    /// `https_listen` is a default nobody asked for: when it cannot be bound (the port is
    /// taken), HTTPS is off with a warning instead of failing start-up.
    pub https_optional: bool,
    /// The same for `mqtt_tls_listen`.
    pub mqtt_tls_optional: bool,
    /// How the MQTT client trusts an external `mqtts://` broker, and its client certificate.
    pub mqtt_client_tls: crate::tls::ClientTls,
}

/// Timeouts and caps of the device server, so no LAN client can starve the engine (see
/// `docs/device-api.md`, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceServerLimits {
    /// Time a client has to send a request's headers; also how long a kept-alive connection
    /// may wait for its next request.
    pub header_timeout: Duration,
    /// Time a request has to be answered once its headers are in, body included (then 408).
    pub request_timeout: Duration,
    /// A connection on which no byte moved either way for this long is closed (a download the
    /// client stopped reading, a body that stopped coming).
    pub idle_timeout: Duration,
    /// Most connections open at once; `None`: the open-files limit minus a reserve for the
    /// admin API, the broker, the database and firmware files
    /// ([`crate::server::device_conn::default_max_connections`]).
    pub max_connections: Option<usize>,
    /// Largest request body (then 413).
    pub max_body: usize,
}

impl Default for DeviceServerLimits {
    fn default() -> DeviceServerLimits {
        DeviceServerLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            max_body: 16 * 1024,
        }
    }
}

impl EngineConfig {
    /// Defaults from `ARCHITECTURE.md`: devices on `0.0.0.0:8070`, admin on `127.0.0.1:8071`.
    pub fn new(data_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            data_dir,
            device_listen: SocketAddr::from(([0, 0, 0, 0], 8070)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8071)),
            device_public_url: None,
            mdns: true,
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
            model_max_image_size: HashMap::new(),
            serve_cache_bytes: 64 * 1024 * 1024,
            disk_reserve: crate::firmware::blobs::DEFAULT_DISK_RESERVE,
            mqtt: MqttMode::Embedded { listen: SocketAddr::from(([0, 0, 0, 0], 1883)) },
            topic_profiles: flotilla_proto::native::TopicProfile::builtin(),
            demo: None,
            settings: flotilla_proto::api::SiteSettings::default(),
            device_limits: DeviceServerLimits::default(),
            https_listen: None,
            mqtt_tls_listen: None,
            https_optional: false,
            mqtt_tls_optional: false,
            mqtt_client_tls: crate::tls::ClientTls::default(),
        }
    }

    /// The size limit for `model`.
    pub fn max_image_size_for(&self, model: &str) -> u64 {
        self.model_max_image_size.get(model).copied().unwrap_or(self.max_image_size)
    }
}

/// The default data dir: `$XDG_DATA_HOME/flotilla`, else `~/.local/share/flotilla`, else `./flotilla-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("flotilla");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/flotilla");
    }
    PathBuf::from("flotilla-data")
}

/// Where each file of a data dir lives.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("flotilla.db")
    }
    pub fn firmware_dir(&self) -> PathBuf {
        self.root.join("firmware")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }
    pub fn runtime_json(&self) -> PathBuf {
        self.root.join("runtime.json")
    }
    /// The site's TLS key and certificate ([`crate::tls`]).
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
}

/// Where the engine's MQTT comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttMode {
    /// Run a broker in the engine, listening here (devices connect to it).
    Embedded { listen: SocketAddr },
    /// Use the site's broker.
    External { url: String, username: Option<String>, password: Option<String> },
    /// No MQTT at all (pull devices only).
    Off,
}
