//! `flotilla`: the headless engine (`serve`) and a client for its admin API.
//!
//! Exit codes: 0 success; 1 failure (I/O, server error); 2 refused input (an image that cannot
//! work or that an import would refuse, bad arguments, a request the server refused); 3 the
//! server could not be reached.
//!
//! # Layout
//! - [`serve`]: `flotilla serve`, the engine headless.
//! - [`client`]: the connection to a running engine's admin API, shared by every client command.
//! - [`firmware`], [`devices`], [`rollout`], [`events`], [`status`], [`settings`], [`keys`]: one module per
//!   command group; each command is one or a few admin API calls, printed for people or as the
//!   API's own JSON (`--json`). They never read the engine's files but `runtime.json` and
//!   `admin-token` (to find it), so they work against a remote engine the same way.
//! - [`backup`]: `flotilla backup` / `flotilla restore` (through the engine when it runs, else on
//!   the data dir itself: the only commands that read more of it).
//! - [`output`]: tables and key/value blocks for people.

mod backup;
mod client;
mod credentials;
mod devices;
mod events;
mod firmware;
mod keys;
mod output;
mod rollout;
mod serve;
mod settings;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Desktop fleet manager for over-the-air updates of ESP32 / ESP8266 devices.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about = "Fleet manager for over-the-air updates of ESP32 / ESP8266 devices.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the admin API is. Found from these flags, then FLOTILLA_API / FLOTILLA_TOKEN, then the
/// `runtime.json` and `admin-token` a running `flotilla serve` keeps in its data dir.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Admin API URL, e.g. http://127.0.0.1:8071.
    #[arg(long, env = "FLOTILLA_API", global = true)]
    pub api: Option<String>,
    /// Admin API token.
    #[arg(long, env = "FLOTILLA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Data dir of the engine (default: ~/.local/share/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine headless: device server, admin API, mDNS.
    Serve(serve::ServeArgs),
    /// Inspect, import and manage firmware; suggest what to roll out.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCmd),
    /// The device inventory: list, show, history, labels, channel, forget.
    #[command(subcommand)]
    Devices(devices::DevicesCmd),
    /// The firmware channels labels carry.
    #[command(subcommand)]
    Channels(devices::ChannelsCmd),
    /// Logins for vendor devices (Tasmota, Shelly, ArduinoOTA, ESPHome), per family or device.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCmd),
    /// Staged rollouts: plan, start, pause, resume, cancel, watch, report.
    #[command(subcommand)]
    Rollout(rollout::RolloutCmd),
    /// The audit log: list or export what happened.
    #[command(subcommand)]
    Events(events::EventsCmd),
    /// What the engine runs: version, uptime, addresses, broker, mDNS, TLS, demo.
    Status(status::StatusArgs),
    /// The engine's Prometheus metrics (or, with --fleet, the dashboard's numbers).
    Metrics(status::MetricsArgs),
    /// The site's saved settings: show, or change some (as the UI's Settings view).
    #[command(subcommand)]
    Settings(settings::SettingsCmd),
    /// The simulated demo fleet (as the UI's first-run button).
    #[command(subcommand)]
    Demo(settings::DemoCmd),
    /// The site signing key.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Write a backup of the data dir (database, firmware, keys) into a new folder; works while the
    /// engine runs.
    Backup(backup::BackupArgs),
    /// Put a backup back into a data dir no engine is using (verified first).
    Restore(backup::RestoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match flotilla_core::runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Firmware(cmd) => firmware::run(cmd).await,
            Command::Devices(cmd) => devices::run(cmd).await,
            Command::Channels(cmd) => devices::channels(cmd).await,
            Command::Credentials(cmd) => credentials::run(cmd).await,
            Command::Rollout(cmd) => rollout::run(cmd).await,
            Command::Events(cmd) => events::run(cmd).await,
            Command::Status(args) => status::status(args).await,
            Command::Metrics(args) => status::metrics(args).await,
            Command::Settings(cmd) => settings::settings(cmd).await,
            Command::Demo(cmd) => settings::demo(cmd).await,
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Backup(args) => backup::backup(args).await,
            Command::Restore(args) => backup::restore(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.exit_code)
        }
    }
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit_code: u8,
}

impl CliError {
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), exit_code: 1 }
    }
    pub fn refused(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), exit_code: 2 }
    }
    pub fn unreachable(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), exit_code: 3 }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::failure(format!("{e:#}"))
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
