//! What a fleet is made of and how it behaves: [`FleetConfig`] (the library's input, with
//! defaults for everything), the parsers for the command line's compact forms
//! (`native-pull=50,native-mqtt=50`, `5s`, `200ms`), and the one place where a configuration is
//! checked before anything starts (`FleetConfig::validate`, run by [`crate::Fleet::start`]).

use std::time::Duration;

use flotilla_proto::firmware::Chip;
use flotilla_proto::native::TopicProfile;
use reqwest::Url;

use crate::error::{Result, SimError};
use crate::failures::{FailureRates, Failures};
use crate::identity::{DeviceKind, MAX_DEVICES};

/// Everything a simulated fleet needs. `FleetConfig::default()` is one pull device on
/// `http://127.0.0.1:8070`; tests shorten the timings.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Base URL of the engine's device server (`http://127.0.0.1:8070`). Needed by pull devices
    /// and to fetch the site key; MQTT devices download from the offer's absolute URL.
    pub api: Option<String>,
    /// MQTT broker, `mqtt://[user:pass@]host[:port]` (port 1883 by default). Needed by MQTT devices.
    pub mqtt: Option<String>,
    /// Topic convention of the MQTT devices.
    pub profile: TopicProfile,
    /// What `{owner}` stands for in the profile's topics (CerCollettiva).
    pub owner: String,
    /// How many devices of each kind, in this order (ids count within a kind).
    pub fleet: Vec<(DeviceKind, usize)>,
    pub chip: Chip,
    pub model: String,
    /// Version every device runs at start.
    pub version: String,
    /// Labels sent with each check-in (`None` on the wire when empty).
    pub labels: Vec<String>,
    /// Seeds MACs, poll jitter and failure assignment.
    pub seed: u64,
    /// Device ids are `<id_prefix>-<kind>-<n>`.
    pub id_prefix: String,
    /// Second octet of the devices' loopback addresses: `127.<block>.x.y`.
    pub address_block: u8,
    /// Port of each device's HTTP endpoint on its own address (0: any free port).
    pub device_port: u16,
    /// Time between check-ins of a pull device.
    pub poll_interval: Duration,
    /// Each interval is stretched or shrunk by up to this share (0.2 = ±20 %).
    pub poll_jitter: f64,
    /// How long a device is offline while rebooting into new firmware.
    pub reboot_delay: Duration,
    /// Failure rates spread over the fleet from the seed.
    pub failure_rates: FailureRates,
    /// Per-device failures (by MAC or id), applied over the rates.
    pub failures: Vec<(String, Failures)>,
    /// Throttle of `slow` devices assigned by rate, bytes per second.
    pub slow_bps: u64,
    /// The site's public key (32 bytes) the devices trust; `None`: fetched from
    /// `GET <api>/api/v1/site-key` at start ("baked into the firmware").
    pub site_key: Option<[u8; 32]>,
    /// Timeout of each check-in, report and download request (reads, for downloads).
    pub http_timeout: Duration,
    /// Tries per download, counting resumes after a dropped connection.
    pub download_attempts: u32,
    /// How long [`crate::Fleet::start`] keeps trying to fetch the site key.
    pub startup_timeout: Duration,
    /// Vendor devices advertise themselves over mDNS (one responder for the whole fleet).
    pub mdns: bool,
    /// Tasmota devices also advertise `_http._tcp devicetype=tasmota` (builds with
    /// `USE_DISCOVERY`; default builds advertise nothing).
    pub tasmota_mdns: bool,
    /// Tasmota's web password (user `admin`): `/cm` then answers 401 without it.
    pub tasmota_password: Option<String>,
    /// ESPHome devices publish `esphome/discover/<name>` (their `mqtt: discovery` is on).
    pub esphome_mqtt: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            api: Some("http://127.0.0.1:8070".into()),
            mqtt: None,
            profile: TopicProfile::flotilla(),
            owner: "sim".into(),
            fleet: vec![(DeviceKind::NativePull, 1)],
            chip: Chip::Esp32,
            model: "flotilla-sim".into(),
            version: "1.0.0".into(),
            labels: Vec::new(),
            seed: 1,
            id_prefix: "sim".into(),
            address_block: 20,
            device_port: 0,
            poll_interval: Duration::from_secs(5),
            poll_jitter: 0.2,
            reboot_delay: Duration::from_secs(2),
            failure_rates: FailureRates::default(),
            failures: Vec::new(),
            slow_bps: 16 * 1024,
            site_key: None,
            http_timeout: Duration::from_secs(10),
            download_attempts: 5,
            startup_timeout: Duration::from_secs(10),
            mdns: true,
            tasmota_mdns: false,
            tasmota_password: None,
            esphome_mqtt: true,
        }
    }
}

/// Where the MQTT devices connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

/// The parts of a [`FleetConfig`] that [`FleetConfig::validate`] had to parse.
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub api: Option<Url>,
    pub mqtt: Option<MqttTarget>,
}

impl FleetConfig {
    /// Total number of devices.
    pub fn device_count(&self) -> usize {
        self.fleet.iter().map(|(_, n)| n).sum()
    }

    fn count(&self, kind: DeviceKind) -> usize {
        self.fleet.iter().filter(|(k, _)| *k == kind).map(|(_, n)| n).sum()
    }

    /// Checks everything that can be checked before a socket is opened.
    pub(crate) fn validate(&self) -> Result<Validated> {
        let bad = |m: String| Err(SimError::Config(m));
        let total = self.device_count();
        if total == 0 {
            return bad("the fleet has no devices".into());
        }
        if total > MAX_DEVICES {
            return bad(format!(
                "at most {MAX_DEVICES} devices fit in 127.{}.0.0/16, asked for {total}",
                self.address_block
            ));
        }
        if self.version.trim().is_empty() || self.model.trim().is_empty() || self.id_prefix.trim().is_empty() {
            return bad("version, model and id prefix must not be empty".into());
        }
        let day = Duration::from_secs(24 * 3600);
        for (name, d) in [
            ("poll interval", self.poll_interval),
            ("reboot delay", self.reboot_delay),
            ("HTTP timeout", self.http_timeout),
            ("startup timeout", self.startup_timeout),
        ] {
            if d > day || (d.is_zero() && name != "reboot delay") {
                return bad(format!("the {name} must be more than zero and at most a day, got {d:?}"));
            }
        }
        if !(0.0..1.0).contains(&self.poll_jitter) {
            return bad(format!("poll jitter must be in [0, 1), got {}", self.poll_jitter));
        }
        if self.download_attempts == 0 {
            return bad("download attempts must be at least 1".into());
        }
        if self.slow_bps == 0 || self.failures.iter().any(|(_, f)| f.slow_bps == Some(0)) {
            return bad("a slow download rate must be at least 1 byte/s".into());
        }
        let api = self.api.as_deref().map(parse_api).transpose()?;
        if self.count(DeviceKind::NativePull) > 0 && api.is_none() {
            return bad("pull devices need the engine's device server URL (--api)".into());
        }
        let natives = self.count(DeviceKind::NativePull) + self.count(DeviceKind::NativeMqtt);
        if natives > 0 && self.site_key.is_none() && api.is_none() {
            return bad("without --api the site key must be given (--site-key)".into());
        }
        let mqtt = self.mqtt.as_deref().map(parse_mqtt).transpose()?;
        if self.count(DeviceKind::NativeMqtt) > 0 && mqtt.is_none() {
            return bad("MQTT devices need a broker (--mqtt mqtt://host:port)".into());
        }
        Ok(Validated { api, mqtt })
    }
}

fn parse_api(s: &str) -> Result<Url> {
    let url = Url::parse(s).map_err(|e| SimError::Config(format!("engine URL `{s}` is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(SimError::Config(format!("engine URL `{s}` must be http:// (the devices speak plain HTTP)")));
    }
    Ok(url)
}

fn parse_mqtt(s: &str) -> Result<MqttTarget> {
    let bad = |why: String| SimError::Config(format!("broker URL `{s}` {why}"));
    let url = Url::parse(s).map_err(|e| bad(format!("is not a URL: {e}")))?;
    match url.scheme() {
        "mqtt" | "tcp" => {}
        "mqtts" | "ssl" | "tls" => return Err(bad("uses TLS, which the simulator does not speak; use mqtt://".into())),
        other => return Err(bad(format!("has scheme `{other}`; use mqtt://host:port"))),
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        (user, pass) => Some((user.to_owned(), pass.unwrap_or_default().to_owned())),
    };
    Ok(MqttTarget { host, port: url.port().unwrap_or(1883), credentials })
}

/// Parses a site public key: 32 bytes of Ed25519 in hex (64 digits).
pub fn parse_site_key(hex_key: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| format!("site key `{hex_key}` is not hex"))?;
    bytes.try_into().map_err(|_| format!("site key must be 32 bytes (64 hex digits), got `{hex_key}`"))
}

/// Parses `native-pull=50,native-mqtt=50` (a kind alone means one device).
pub fn parse_fleet(spec: &str) -> Result<Vec<(DeviceKind, usize)>, String> {
    let mut fleet: Vec<(DeviceKind, usize)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, count) = part.split_once('=').unwrap_or((part, "1"));
        let known = DeviceKind::ALL.map(DeviceKind::as_str).join(", ");
        let kind = DeviceKind::parse(name.trim())
            .ok_or_else(|| format!("unknown device kind `{}` (known: {known})", name.trim()))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("count of `{kind}` must be a whole number, got `{}`", count.trim()))?;
        if fleet.iter().any(|(k, _)| *k == kind) {
            return Err(format!("device kind `{kind}` is given twice"));
        }
        fleet.push((kind, count));
    }
    if fleet.iter().all(|(_, n)| *n == 0) {
        return Err("the fleet has no devices (e.g. --fleet native-pull=10)".into());
    }
    Ok(fleet)
}

/// Parses `5s`, `200ms`, `2m`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 5s, 200ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{s}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{s}` is not a usable duration"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fleet_specs_parse() {
        assert_eq!(
            parse_fleet("native-pull=50, native-mqtt=2").unwrap(),
            vec![(DeviceKind::NativePull, 50), (DeviceKind::NativeMqtt, 2)]
        );
        assert_eq!(parse_fleet("native-mqtt").unwrap(), vec![(DeviceKind::NativeMqtt, 1)]);
        assert!(parse_fleet("tasmotta=3").unwrap_err().contains("unknown device kind `tasmotta`"));
        assert_eq!(
            parse_fleet("tasmota=3,shelly1=1,shelly2=2,esphome,arduino=4").unwrap(),
            vec![
                (DeviceKind::Tasmota, 3),
                (DeviceKind::Shelly1, 1),
                (DeviceKind::Shelly2, 2),
                (DeviceKind::Esphome, 1),
                (DeviceKind::Arduino, 4)
            ]
        );
        assert!(parse_fleet("native-pull=x").unwrap_err().contains("whole number"));
        assert!(parse_fleet("native-pull=1,native-pull=2").unwrap_err().contains("twice"));
        assert!(parse_fleet("native-pull=0").unwrap_err().contains("no devices"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn broker_urls_parse() {
        let t = parse_mqtt("mqtt://user:secret@127.0.0.1:1884").unwrap();
        assert_eq!(
            t,
            MqttTarget { host: "127.0.0.1".into(), port: 1884, credentials: Some(("user".into(), "secret".into())) }
        );
        assert_eq!(parse_mqtt("tcp://broker.local").unwrap().port, 1883);
        assert!(parse_mqtt("mqtts://x:8883").unwrap_err().to_string().contains("TLS"));
        assert!(parse_mqtt("nonsense").is_err());
    }

    #[test]
    fn validation_names_what_is_missing() {
        let mut c = FleetConfig { fleet: vec![(DeviceKind::NativeMqtt, 2)], ..FleetConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("--mqtt"));
        c.mqtt = Some("mqtt://127.0.0.1:1883".into());
        assert!(c.validate().is_ok());
        c.api = None;
        assert!(c.validate().unwrap_err().to_string().contains("--site-key"));
        c.site_key = Some([0; 32]);
        assert!(c.validate().is_ok());
        c.fleet = vec![(DeviceKind::NativePull, 1)];
        assert!(c.validate().unwrap_err().to_string().contains("--api"));
    }
}
