//! What `flotilla serve` and the desktop app share: the engine's command-line settings.
//!
//! Both binaries flatten [`EngineArgs`] into their own arguments and turn it into an
//! [`EngineConfig`] the same way, so a flag means the same thing in either.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use flotilla_core::EngineConfig;
use flotilla_core::config::default_data_dir;
use flotilla_core::mqtt_link::MqttMode;

/// The engine's settings, as flags (each also from a `FLOTILLA_*` environment variable).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Data dir: database, firmware store, keys (default: ~/.local/share/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Device HTTP server address (LAN).
    #[arg(long, default_value = "0.0.0.0:8070", env = "FLOTILLA_HTTP")]
    pub http: SocketAddr,
    /// Admin API address (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8071", env = "FLOTILLA_ADMIN")]
    pub admin: SocketAddr,
    /// URL devices use to reach the device server (default: derived from --http).
    #[arg(long, env = "FLOTILLA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// MQTT: `embedded` (a broker in the engine), `off`, or the site's broker `mqtt://host:port`
    /// (`mqtts://` for TLS).
    #[arg(long, default_value = "embedded", env = "FLOTILLA_MQTT")]
    pub mqtt: String,
    /// Where the embedded broker listens.
    #[arg(long, default_value = "0.0.0.0:1883", env = "FLOTILLA_MQTT_LISTEN")]
    pub mqtt_listen: SocketAddr,
    /// User name for an external broker.
    #[arg(long, env = "FLOTILLA_MQTT_USER")]
    pub mqtt_user: Option<String>,
    /// Password for an external broker.
    #[arg(long, env = "FLOTILLA_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// An MQTT topic profile of an existing fleet, besides the built-in flotilla, cercollettiva and
    /// paku (repeatable): `name=acme;command=acme/{id}/ota;status=acme/{id}/ota/state;presence=acme/{id}/online[;result=…]`.
    #[arg(long = "topic-profile")]
    pub topic_profiles: Vec<String>,
    /// Do not advertise _flotilla._tcp over mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Free disk space an import must leave, in bytes (so the database can still record changes
    /// when firmware fills the disk).
    #[arg(long, default_value_t = flotilla_core::firmware::blobs::DEFAULT_DISK_RESERVE)]
    pub disk_reserve: u64,
    /// Largest firmware image accepted, in bytes.
    #[arg(long, default_value_t = flotilla_core::config::DEFAULT_MAX_IMAGE_SIZE)]
    pub max_image_size: u64,
}

impl EngineArgs {
    /// The data dir these settings name (the default when none is given).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The engine configuration; the error names the flag that is wrong.
    pub fn to_config(&self) -> Result<EngineConfig, String> {
        let mut config = EngineConfig::new(self.data_dir());
        config.device_listen = self.http;
        config.admin_listen = self.admin;
        config.device_public_url = self.public_url.clone();
        config.mdns = !self.no_mdns;
        config.max_image_size = self.max_image_size;
        config.disk_reserve = self.disk_reserve;
        for spec in &self.topic_profiles {
            let profile =
                flotilla_proto::native::TopicProfile::parse(spec).map_err(|e| format!("--topic-profile: {e}"))?;
            config.topic_profiles.retain(|p| p.name != profile.name);
            config.topic_profiles.push(profile);
        }
        config.mqtt = match self.mqtt.as_str() {
            "embedded" => MqttMode::Embedded { listen: self.mqtt_listen },
            "off" | "none" => MqttMode::Off,
            url if url.starts_with("mqtt://") || url.starts_with("mqtts://") => {
                flotilla_core::mqtt::parse_url(url).map_err(|e| format!("--mqtt: {e}"))?;
                MqttMode::External {
                    url: url.to_owned(),
                    username: self.mqtt_user.clone(),
                    password: self.mqtt_password.clone(),
                }
            }
            other => return Err(format!("--mqtt {other:?}: use embedded, off or mqtt://host:port")),
        };
        Ok(config)
    }
}
