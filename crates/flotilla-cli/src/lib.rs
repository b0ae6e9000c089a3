//! What `flotilla serve` and the desktop app share: the engine's command-line settings and the
//! demo fleet's.
//!
//! Both binaries flatten [`EngineArgs`] into their own arguments and turn it into an
//! [`EngineConfig`] the same way, so a flag means the same thing in either; [`DemoArgs`] is the
//! simulated fleet's `--demo` and `--demo-failures`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use flotilla_core::EngineConfig;
use flotilla_core::config::default_data_dir;
use flotilla_core::mqtt_link::MqttMode;
use flotilla_core::settings;
use flotilla_sim::FailureRates;
use flotilla_sim::demo::DemoOptions;

/// The engine's settings, as flags (each also from a `FLOTILLA_*` environment variable).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Data dir: database, firmware store, keys (default: ~/.local/share/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Device HTTP server address (LAN) [default: the data dir's settings, else 0.0.0.0:8070].
    #[arg(long, env = "FLOTILLA_HTTP")]
    pub http: Option<SocketAddr>,
    /// HTTPS on the device server, with the site's self-signed certificate (`<data>/tls/`):
    /// an address, or `off` [default: 0.0.0.0:8443; if that port is taken, HTTPS is off with a
    /// warning].
    #[arg(long, env = "FLOTILLA_HTTPS", value_name = "ADDR|off", value_parser = parse_listen)]
    pub https: Option<Listen>,
    /// Admin API address, keep it on loopback [default: the settings, else 127.0.0.1:8071].
    #[arg(long, env = "FLOTILLA_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// URL devices use to reach the device server (default: derived from --http).
    #[arg(long, env = "FLOTILLA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// MQTT: `embedded` (a broker in the engine), `off`, or the site's broker `mqtt://host:port`
    /// (`mqtts://` for TLS) [default: the settings, else embedded].
    #[arg(long, env = "FLOTILLA_MQTT")]
    pub mqtt: Option<String>,
    /// Where the embedded broker listens [default: the settings, else 0.0.0.0:1883].
    #[arg(long, env = "FLOTILLA_MQTT_LISTEN")]
    pub mqtt_listen: Option<SocketAddr>,
    /// Where the embedded broker listens for MQTT over TLS (the site certificate): an address, or
    /// `off` [default: 0.0.0.0:8883; if that port is taken, it is off with a warning].
    #[arg(long, env = "FLOTILLA_MQTT_TLS_LISTEN", value_name = "ADDR|off", value_parser = parse_listen)]
    pub mqtt_tls_listen: Option<Listen>,
    /// PEM file of the CA certificate(s) an external `mqtts://` broker is trusted by (instead of
    /// the system's root certificates).
    #[arg(long, env = "FLOTILLA_MQTT_CA", value_name = "FILE")]
    pub mqtt_ca: Option<PathBuf>,
    /// Trust exactly the external `mqtts://` broker whose certificate or public key (SPKI) has this
    /// SHA-256 fingerprint (64 hex digits; either fingerprint matches). Wins over --mqtt-ca.
    #[arg(long, env = "FLOTILLA_MQTT_PIN", value_name = "SHA256")]
    pub mqtt_pin: Option<String>,
    /// PEM certificate (chain) the engine presents to an external `mqtts://` broker (with --mqtt-key).
    #[arg(long, env = "FLOTILLA_MQTT_CERT", value_name = "FILE")]
    pub mqtt_cert: Option<PathBuf>,
    /// PEM private key of --mqtt-cert.
    #[arg(long, env = "FLOTILLA_MQTT_KEY", value_name = "FILE")]
    pub mqtt_key: Option<PathBuf>,
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
    /// Do not advertise _flotilla._tcp over mDNS (also off when the settings say so).
    #[arg(long)]
    pub no_mdns: bool,
    /// Free disk space an import must leave, in bytes (so the database can still record changes
    /// when firmware fills the disk).
    #[arg(long, default_value_t = flotilla_core::firmware::blobs::DEFAULT_DISK_RESERVE)]
    pub disk_reserve: u64,
    /// Largest firmware image accepted, in bytes.
    #[arg(long, default_value_t = flotilla_core::config::DEFAULT_MAX_IMAGE_SIZE)]
    pub max_image_size: u64,
    /// Seconds a device has to send a request's headers (and a kept-alive connection may wait
    /// for its next request) before the device server closes the connection.
    #[arg(long, env = "FLOTILLA_DEVICE_HEADER_TIMEOUT", value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub device_header_timeout: Duration,
    /// Seconds a device request has to complete, body included, once its headers are in (then 408).
    #[arg(long, env = "FLOTILLA_DEVICE_REQUEST_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub device_request_timeout: Duration,
    /// Seconds a device connection may move no byte either way before it is closed (a client
    /// that stopped reading a download).
    #[arg(long, env = "FLOTILLA_DEVICE_IDLE_TIMEOUT", value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub device_idle_timeout: Duration,
    /// Most device connections open at once; more wait until one closes [default: the
    /// open-files limit (raised to its hard limit at start) minus a quarter of it kept for the
    /// admin API, the broker, the database and firmware files].
    #[arg(long, env = "FLOTILLA_DEVICE_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub device_max_connections: Option<u32>,
}

/// A listener address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    At(SocketAddr),
    Off,
}

/// `ADDR` or `off`.
fn parse_listen(s: &str) -> Result<Listen, String> {
    match s.trim() {
        "off" | "none" => Ok(Listen::Off),
        a => a.parse().map(Listen::At).map_err(|_| format!("`{s}`: an address such as 0.0.0.0:8443, or off")),
    }
}

/// A duration in seconds (`10`, `2.5`, `10s`, `500ms`), from 1 ms to a day.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = match t.strip_suffix("ms") {
        Some(ms) => (ms, 0.001),
        None => (t.strip_suffix('s').unwrap_or(t), 1.0),
    };
    let n: f64 = number.trim().parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    let secs = n * scale;
    if (0.001..=86_400.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("`{s}`: between 1 ms and a day"))
    }
}

impl EngineArgs {
    /// The data dir these settings name (the default when none is given).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The engine configuration: each flag (or `FLOTILLA_*` variable) given, else what the data
    /// dir's `settings.json` says (the UI's settings view writes it), else the default. The error
    /// names the flag or setting that is wrong.
    pub fn to_config(&self) -> Result<EngineConfig, String> {
        let data_dir = self.data_dir();
        let saved = flotilla_core::settings::load(&data_dir).map_err(|e| e.to_string())?;
        flotilla_core::settings::validate(&saved)
            .map_err(|e| format!("{}: {e}", settings::path(&data_dir).display()))?;
        let mut config = EngineConfig::new(data_dir);
        let addr = |v: &Option<String>| v.as_deref().and_then(|a| a.trim().parse::<SocketAddr>().ok());
        if let Some(a) = self.http.or(addr(&saved.device_listen)) {
            config.device_listen = a;
        }
        if let Some(a) = self.admin.or(addr(&saved.admin_listen)) {
            config.admin_listen = a;
        }
        config.device_public_url = self.public_url.clone().or_else(|| saved.public_url.clone());
        config.mdns = !self.no_mdns && saved.mdns.unwrap_or(true);
        config.max_image_size = self.max_image_size;
        config.disk_reserve = self.disk_reserve;
        config.device_limits.header_timeout = self.device_header_timeout;
        config.device_limits.request_timeout = self.device_request_timeout;
        config.device_limits.idle_timeout = self.device_idle_timeout;
        config.device_limits.max_connections = self.device_max_connections.map(|n| n as usize);
        for spec in &self.topic_profiles {
            let profile =
                flotilla_proto::native::TopicProfile::parse(spec).map_err(|e| format!("--topic-profile: {e}"))?;
            config.topic_profiles.retain(|p| p.name != profile.name);
            config.topic_profiles.push(profile);
        }
        let listen = self.mqtt_listen.or(addr(&saved.mqtt_listen)).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 1883)));
        let mode = self.mqtt.clone().or_else(|| saved.mqtt.clone()).unwrap_or_else(|| "embedded".into());
        config.mqtt = match mode.as_str() {
            "embedded" => MqttMode::Embedded { listen },
            "off" | "none" => MqttMode::Off,
            url if url.starts_with("mqtt://") || url.starts_with("mqtts://") => {
                flotilla_core::mqtt::parse_url(url).map_err(|e| format!("--mqtt: {e}"))?;
                // Flags and settings are not mixed for one broker: its user and password come
                // from where its URL came from.
                let (username, password) = if self.mqtt.is_some() {
                    (self.mqtt_user.clone(), self.mqtt_password.clone())
                } else {
                    (
                        self.mqtt_user.clone().or_else(|| saved.mqtt_user.clone()),
                        self.mqtt_password.clone().or_else(|| saved.mqtt_password.clone()),
                    )
                };
                MqttMode::External { url: url.to_owned(), username, password }
            }
            other => return Err(format!("--mqtt {other:?}: use embedded, off or mqtt://host:port")),
        };
        // TLS listeners: a given address must be bound; the defaults step aside when taken.
        let at = |l: Option<Listen>, default: u16| match l {
            Some(Listen::At(a)) => Some(a),
            Some(Listen::Off) => None,
            None => Some(SocketAddr::from(([0, 0, 0, 0], default))),
        };
        config.https_listen = at(self.https, 8443);
        config.mqtt_tls_listen = at(self.mqtt_tls_listen, 8883);
        config.https_optional = self.https.is_none();
        config.mqtt_tls_optional = self.mqtt_tls_listen.is_none();
        config.mqtt_client_tls = flotilla_core::tls::ClientTls {
            ca_file: self.mqtt_ca.clone(),
            pin: self.mqtt_pin.as_deref().map(str::parse).transpose().map_err(|e| format!("--mqtt-pin: {e}"))?,
            client_cert: self.mqtt_cert.clone(),
            client_key: self.mqtt_key.clone(),
        };
        if config.mqtt_client_tls.is_set() {
            let tls_url = matches!(&config.mqtt, MqttMode::External { url, .. } if url.starts_with("mqtts://"));
            if !tls_url {
                return Err("--mqtt-ca, --mqtt-pin, --mqtt-cert and --mqtt-key are for an external mqtts:// broker \
                            (--mqtt mqtts://host:port)"
                    .into());
            }
        }
        config.settings = saved;
        Ok(config)
    }
}

/// The simulated demo fleet: whether to start it, and how many of its devices fail.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Also start a simulated demo fleet on loopback (48 devices on 1.0.0, a demo firmware 2.0.0
    /// imported), as the UI's first-run button does.
    #[arg(long)]
    pub demo: bool,
    /// Share of demo devices that fail to boot the new firmware, in percent (0-100): above a
    /// rollout's failure threshold, the rollout pauses itself. Applies to the fleet the UI's
    /// first-run button starts too.
    #[arg(long, default_value_t = 5.0, value_parser = parse_percent)]
    pub demo_failures: f64,
}

impl DemoArgs {
    /// The demo fleet these flags ask for.
    pub fn options(&self) -> DemoOptions {
        DemoOptions {
            failure_rates: FailureRates { boot: self.demo_failures / 100.0, ..FailureRates::default() },
            ..DemoOptions::default()
        }
    }
}

/// A percentage, 0-100, with or without `%`.
fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| format!("`{s}` is not a percentage"))?;
    if (0.0..=100.0).contains(&n) { Ok(n) } else { Err(format!("{n} is not within 0-100 %")) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Demo {
        #[command(flatten)]
        demo: DemoArgs,
    }

    #[derive(Debug, Parser)]
    struct Engine {
        #[command(flatten)]
        engine: EngineArgs,
    }

    #[test]
    fn tls_listeners_default_on_and_step_aside_unless_given_and_client_tls_needs_mqtts() {
        // A data dir that does not exist: no saved settings.
        let dir = std::env::temp_dir().join(format!("flotilla-cli-tls-test-{}", std::process::id()));
        let d = dir.to_str().unwrap();
        let config = |args: &[&str]| {
            Engine::try_parse_from(["x", "--data-dir", d].iter().chain(args.iter()).copied())
                .map_err(|e| e.to_string())
                .and_then(|e| e.engine.to_config())
        };
        let c = config(&[]).unwrap();
        assert_eq!(c.https_listen, Some(SocketAddr::from(([0, 0, 0, 0], 8443))));
        assert_eq!(c.mqtt_tls_listen, Some(SocketAddr::from(([0, 0, 0, 0], 8883))));
        assert!(c.https_optional && c.mqtt_tls_optional);
        let c = config(&["--https", "127.0.0.1:9443", "--mqtt-tls-listen", "off"]).unwrap();
        assert_eq!((c.https_listen, c.mqtt_tls_listen), (Some(SocketAddr::from(([127, 0, 0, 1], 9443))), None));
        assert!(!c.https_optional);
        assert!(config(&["--https", "nope"]).is_err());
        let pin = "ab".repeat(32);
        let e = config(&["--mqtt-pin", &pin]).unwrap_err();
        assert!(e.contains("mqtts://"), "{e}");
        assert!(config(&["--mqtt", "mqtts://b:8883", "--mqtt-pin", "xyz"]).unwrap_err().contains("--mqtt-pin"));
        let c = config(&["--mqtt", "mqtts://b:8883", "--mqtt-pin", &pin]).unwrap();
        assert!(c.mqtt_client_tls.pin.is_some());
    }

    #[test]
    fn timeouts_are_seconds() {
        assert_eq!(parse_seconds("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_seconds("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_seconds("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["0", "-1", "ten", "100000", "NaN"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn demo_failures_are_a_percentage_of_boot_failures() {
        let parse = |args: &[&str]| Demo::try_parse_from(std::iter::once("x").chain(args.iter().copied()));
        let d = parse(&["--demo", "--demo-failures", "100"]).unwrap().demo;
        assert!(d.demo);
        assert_eq!(d.options().failure_rates.boot, 1.0);
        assert_eq!(parse(&["--demo-failures", "0%"]).unwrap().demo.options().failure_rates.boot, 0.0);
        let default = parse(&[]).unwrap().demo;
        assert!(!default.demo);
        assert!((default.options().failure_rates.boot - 0.05).abs() < 1e-9, "the same default as the desktop app");
        for bad in ["120", "-1", "many", "NaN"] {
            assert!(parse(&["--demo-failures", bad]).is_err(), "{bad}");
        }
    }
}
