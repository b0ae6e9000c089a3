//! `flotilla-sim`: runs a simulated fleet against a Flotilla engine until SIGINT/SIGTERM.
//!
//! Prints one line describing the fleet at start and one line with the versions it ended on.
//! Exit codes: 0 stopped by a signal; 1 the engine could not be reached or a socket failed;
//! 2 bad arguments.

use std::process::ExitCode;

use clap::Parser;
use flotilla_proto::firmware::Chip;
use flotilla_proto::native::TopicProfile;
use flotilla_sim::config::{parse_duration, parse_fleet, parse_site_key};
use flotilla_sim::{DeviceKind, FailureRates, Fleet, FleetConfig, SimError, format_tally};
use tracing_subscriber::EnvFilter;

/// A simulated fleet of ESP32/ESP8266 devices: Flotilla's native client, and Tasmota, Shelly Gen1/Gen2+,
/// ESPHome and ArduinoOTA as discovery sees them.
#[derive(Debug, Parser)]
#[command(name = "flotilla-sim", about, after_help = EXAMPLE)]
struct Cli {
    /// The engine's device server, e.g. http://127.0.0.1:8070 (pull devices; the site key).
    #[arg(long, env = "FLOTILLA_SIM_API")]
    api: Option<String>,
    /// MQTT broker for MQTT devices: mqtt://[user:pass@]host:port.
    #[arg(long, env = "FLOTILLA_SIM_MQTT")]
    mqtt: Option<String>,
    /// Devices per kind: native-pull=N,native-mqtt=N,tasmota=N,shelly1=N,shelly2=N,esphome=N,arduino=N
    /// (default native-pull=10 when no kind is given here or by the flags below).
    #[arg(long)]
    fleet: Option<String>,
    /// Simulated Tasmota plugs (added to --fleet).
    #[arg(long, default_value_t = 0)]
    tasmota: usize,
    /// Simulated Shelly Gen1 relays (added to --fleet).
    #[arg(long, default_value_t = 0)]
    shelly1: usize,
    /// Simulated Shelly Gen2+ relays (added to --fleet).
    #[arg(long, default_value_t = 0)]
    shelly2: usize,
    /// Simulated ESPHome nodes (added to --fleet).
    #[arg(long, default_value_t = 0)]
    esphome: usize,
    /// Simulated ArduinoOTA sketches (added to --fleet).
    #[arg(long, default_value_t = 0)]
    arduino: usize,
    /// Vendor devices do not advertise over mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Tasmota devices also advertise `_http._tcp devicetype=tasmota` (builds with USE_DISCOVERY).
    #[arg(long)]
    tasmota_mdns: bool,
    /// Tasmota web password (user admin): /cm answers 401 without it.
    #[arg(long, env = "FLOTILLA_SIM_TASMOTA_PASSWORD")]
    tasmota_password: Option<String>,
    /// ESPHome devices do not publish esphome/discover/<name>.
    #[arg(long)]
    no_esphome_discovery: bool,
    /// Chip every device has (esp32, esp32s3, esp8266, …).
    #[arg(long, default_value = "esp32")]
    chip: String,
    /// Model every device reports.
    #[arg(long, default_value = "flotilla-sim")]
    model: String,
    /// Firmware version every device runs at start.
    #[arg(long = "version", default_value = "1.0.0")]
    firmware_version: String,
    /// Failure rates over the fleet: boot=5%,hash=2%,vanish=1%,drop=10%,slow=5%,refuse=1%.
    #[arg(long)]
    fail: Option<String>,
    /// Seed of MACs, poll jitter and failure assignment.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time between check-ins of pull devices (±20 % jitter): 5s, 500ms, 1m.
    #[arg(long, default_value = "5s")]
    poll_interval: String,
    /// Time a device is offline while rebooting.
    #[arg(long, default_value = "2s")]
    reboot_delay: String,
    /// MQTT topic profile: flotilla, cercollettiva or paku.
    #[arg(long, default_value = "flotilla")]
    profile: String,
    /// `{owner}` in the profile's topics (cercollettiva).
    #[arg(long, default_value = "sim")]
    owner: String,
    /// Download rate of `slow` devices, bytes per second.
    #[arg(long, default_value_t = 16 * 1024)]
    slow_bps: u64,
    /// The site's public key (64 hex digits) instead of fetching it from --api.
    #[arg(long)]
    site_key: Option<String>,
    /// Port of each device's HTTP endpoint on its own address (0: any free port; vendor devices
    /// then all share the port the first one got, so `flotilla devices scan --port` finds them).
    #[arg(long, default_value_t = 0)]
    device_port: u16,
    /// Second octet of the devices' addresses (127.<block>.x.y).
    #[arg(long, default_value_t = 20)]
    address_block: u8,
    /// Labels the pull devices send with each check-in (comma separated).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Device ids are <prefix>-<kind>-<n>.
    #[arg(long, default_value = "sim")]
    id_prefix: String,
    /// How long to keep trying to fetch the site key from --api at start.
    #[arg(long, default_value = "10s")]
    startup_timeout: String,
}

const EXAMPLE: &str = "Example:\n  flotilla-sim --api http://127.0.0.1:8070 --mqtt mqtt://127.0.0.1:1883 \\\n    --fleet native-pull=50,native-mqtt=50 --chip esp32 --model demo --version 1.0.0 \\\n    --fail boot=5%,hash=2%,vanish=1% --seed 7\n\nA mixed vendor site (discovery side: mDNS, MQTT discovery, HTTP probe endpoints):\n  flotilla-sim --mqtt mqtt://127.0.0.1:1883 --tasmota 20 --shelly1 20 --shelly2 20 --esphome 20 \\\n    --arduino 20 --address-block 30 --device-port 8080";

impl Cli {
    /// `--fleet` plus the per-family counts.
    fn fleet_spec(&self) -> Result<Vec<(DeviceKind, usize)>, String> {
        let extra = [
            (DeviceKind::Tasmota, self.tasmota),
            (DeviceKind::Shelly1, self.shelly1),
            (DeviceKind::Shelly2, self.shelly2),
            (DeviceKind::Esphome, self.esphome),
            (DeviceKind::Arduino, self.arduino),
        ];
        let any_extra = extra.iter().any(|(_, n)| *n > 0);
        let mut fleet = match (&self.fleet, any_extra) {
            (Some(spec), _) => parse_fleet(spec).map_err(|e| format!("--fleet: {e}"))?,
            (None, true) => Vec::new(),
            (None, false) => vec![(DeviceKind::NativePull, 10)],
        };
        for (kind, n) in extra.into_iter().filter(|(_, n)| *n > 0) {
            if fleet.iter().any(|(k, _)| *k == kind) {
                return Err(format!("--{kind}: `{kind}` is also given in --fleet"));
            }
            fleet.push((kind, n));
        }
        Ok(fleet)
    }

    /// Turns the arguments into a fleet configuration; every message names the flag at fault.
    fn config(self) -> Result<FleetConfig, String> {
        let flag = |name: &'static str| move |e: String| format!("--{name}: {e}");
        let fleet = self.fleet_spec()?;
        let profile = TopicProfile::named(&self.profile)
            .ok_or_else(|| format!("--profile: unknown profile `{}` (flotilla, cercollettiva, paku)", self.profile))?;
        Ok(FleetConfig {
            api: self.api,
            mqtt: self.mqtt,
            profile,
            owner: self.owner,
            fleet,
            chip: Chip::parse(&self.chip).ok_or_else(|| format!("--chip: unknown chip `{}`", self.chip))?,
            model: self.model,
            version: self.firmware_version,
            labels: self.labels.into_iter().filter(|l| !l.trim().is_empty()).collect(),
            seed: self.seed,
            id_prefix: self.id_prefix,
            address_block: self.address_block,
            device_port: self.device_port,
            poll_interval: parse_duration(&self.poll_interval).map_err(flag("poll-interval"))?,
            reboot_delay: parse_duration(&self.reboot_delay).map_err(flag("reboot-delay"))?,
            failure_rates: FailureRates::parse(self.fail.as_deref().unwrap_or_default()).map_err(flag("fail"))?,
            slow_bps: self.slow_bps,
            site_key: self.site_key.as_deref().map(parse_site_key).transpose().map_err(flag("site-key"))?,
            startup_timeout: parse_duration(&self.startup_timeout).map_err(flag("startup-timeout"))?,
            mdns: !self.no_mdns,
            tasmota_mdns: self.tasmota_mdns,
            tasmota_password: self.tasmota_password,
            esphome_mqtt: !self.no_esphome_discovery,
            ..FleetConfig::default()
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("flotilla_sim=info")))
        .with_writer(std::io::stderr)
        .init();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let fleet = match Fleet::start(config).await {
        Ok(f) => f,
        Err(e @ (SimError::Config(_) | SimError::NoSuchDevice(_))) => return fail(2, &e.to_string()),
        Err(e) => return fail(1, &e.to_string()),
    };
    println!("flotilla-sim: {}", fleet.summary());
    shutdown_signal().await;
    let tally = fleet.tally();
    let vanished = fleet.vanished();
    fleet.stop().await;
    println!("flotilla-sim: stopped; versions: {}; vanished: {vanished}", format_tally(&tally));
    ExitCode::SUCCESS
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("flotilla-sim: error: {message}");
    ExitCode::from(code)
}

async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
