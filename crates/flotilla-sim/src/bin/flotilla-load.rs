//! `flotilla-load`: load on the device API's check-in. Registers a fleet by checking every device
//! in once, then sends check-ins of random registered devices over keep-alive connections for a
//! fixed time, and prints one report: requests, errors, throughput, latency percentiles, and the
//! engine's CPU time and memory when given its pid. See [`flotilla_sim::load`].
//!
//! Exit codes: 0 the run completed without errors; 1 the engine could not be reached, a device
//! could not be registered, or some measured requests failed (the report is printed all the
//! same); 2 bad arguments.

use std::process::ExitCode;

use clap::Parser;
use flotilla_proto::firmware::Chip;
use flotilla_sim::SimError;
use flotilla_sim::config::parse_duration;
use flotilla_sim::load::{self, LoadConfig, MAX_CONNECTIONS, MAX_DURATION};

/// Load on Flotilla's check-in API (`POST /api/v1/check`) from many simulated devices.
#[derive(Debug, Parser)]
#[command(name = "flotilla-load", after_help = EXAMPLE)]
struct Cli {
    /// The engine's device server, e.g. http://127.0.0.1:8070 (`device_url` in runtime.json).
    #[arg(long)]
    url: String,
    /// Devices to register, then check in at random (at most 64,000).
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// How long to measure: 10s, 500ms, 1m (at most 1h).
    #[arg(long, short = 'd', default_value = "10s")]
    duration: String,
    /// Pause between registering and measuring (lets the engine write the new devices behind).
    #[arg(long, default_value = "2s")]
    settle: String,
    /// Longest wait for one answer before the request counts as failed.
    #[arg(long, default_value = "5s")]
    timeout: String,
    /// The engine's pid: report its CPU time over the measured phase and its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Worker threads of the generator (it shares the machine with the engine it measures).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the MACs and of the choice of devices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Device ids are <prefix>-<n>.
    #[arg(long, default_value = "load")]
    id_prefix: String,
    /// Model every device reports.
    #[arg(long, default_value = "load")]
    model: String,
    /// Chip every device reports (esp32, esp32s3, esp8266, …).
    #[arg(long, default_value = "esp32")]
    chip: String,
    /// Firmware version every device reports.
    #[arg(long = "version", default_value = "1.0.0")]
    firmware_version: String,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write the enrolled devices to FILE (`Bearer <secret>` TAB `<check-in body>` per line), for
    /// an independent load tool to replay the same check-ins (bench/checkin.sh drives wrk with it).
    #[arg(long, value_name = "FILE")]
    save_devices: Option<std::path::PathBuf>,
}

const EXAMPLE: &str = "Example:\n  flotilla-load --url http://127.0.0.1:8070 --devices 10000 --connections 64 --duration 10s \\\n    --pid \"$(pidof flotilla)\"";

impl Cli {
    /// Turns the arguments into a load configuration; every message names the flag at fault.
    fn config(&self) -> Result<LoadConfig, String> {
        let flag = |name: &'static str| move |e: String| format!("--{name}: {e}");
        if !(1..=64).contains(&self.threads) {
            return Err(format!("--threads: must be 1-64, got {}", self.threads));
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(format!("--connections: must be 1-{MAX_CONNECTIONS}, got {}", self.connections));
        }
        let duration = parse_duration(&self.duration).map_err(flag("duration"))?;
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(format!("--duration: must be more than zero and at most 1h, got {}", self.duration));
        }
        Ok(LoadConfig {
            url: self.url.clone(),
            devices: self.devices,
            connections: self.connections,
            duration,
            settle: parse_duration(&self.settle).map_err(flag("settle"))?,
            request_timeout: parse_duration(&self.timeout).map_err(flag("timeout"))?,
            seed: self.seed,
            id_prefix: self.id_prefix.clone(),
            model: self.model.clone(),
            chip: Chip::parse(&self.chip).ok_or_else(|| format!("--chip: unknown chip `{}`", self.chip))?,
            version: self.firmware_version.clone(),
            engine_pid: self.pid,
            save_devices: self.save_devices.clone(),
        })
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
    };
    let report = match runtime.block_on(load::run(config)) {
        Ok(r) => r,
        Err(e @ SimError::Config(_)) => return fail(2, &e.to_string()),
        Err(e) => return fail(1, &e.to_string()),
    };
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => return fail(1, &format!("cannot write the report: {e}")),
        }
    } else {
        println!("{report}");
    }
    if report.measured.errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("flotilla-load: error: {message}");
    ExitCode::from(code)
}
