//! `flotilla`: the headless engine (`serve`) and a client for its admin API.
//!
//! Exit codes: 0 success; 1 failure (I/O, server error); 2 refused input (an image that cannot
//! work or that an import would refuse, bad arguments, a request the server refused); 3 the
//! server could not be reached.

mod client;
mod output;
mod rollout;
mod serve;

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
    /// Inspect, import and manage firmware.
    #[command(subcommand)]
    Firmware(FirmwareCmd),
    /// The device inventory.
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Staged rollouts: plan, start, pause, resume, cancel, watch, report.
    #[command(subcommand)]
    Rollout(rollout::RolloutCmd),
    /// The site signing key.
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCmd {
    /// Parse a firmware file and say whether an import would take it: what it is, and the
    /// verdict of the import rules (exit 2 when it would be refused). Offline unless --check.
    Inspect {
        file: PathBuf,
        /// Version the import would record (SemVer), as for `import`.
        #[arg(long)]
        version: Option<String>,
        /// Model the import would record, as for `import`.
        #[arg(long)]
        model: Option<String>,
        /// Stepping stone the import would record, as for `import`.
        #[arg(long)]
        min_version: Option<String>,
        /// Ask the running engine instead: its library too (already imported, same version with
        /// other bytes) and its OTA slot limits.
        #[arg(long)]
        check: bool,
        /// OTA slot limit in bytes when checking offline (the engine's own with --check).
        #[arg(long, default_value_t = flotilla_core::config::DEFAULT_MAX_IMAGE_SIZE, conflicts_with = "check")]
        max_image_size: u64,
        /// Print JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Import a firmware file into the engine's library (uploaded to the admin API).
    Import {
        file: PathBuf,
        /// Version to record (SemVer); required when the image has none or a non-SemVer one.
        #[arg(long)]
        version: Option<String>,
        /// Device model the firmware is for (default: the image's project name).
        #[arg(long)]
        model: Option<String>,
        /// Release channel: stable or beta.
        #[arg(long)]
        channel: Option<String>,
        /// Free-text notes.
        #[arg(long)]
        notes: Option<String>,
        /// Devices must run at least this version first (stepping stone).
        #[arg(long)]
        min_version: Option<String>,
        /// Serve without per-job download tokens.
        #[arg(long)]
        public: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List imported firmware, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one firmware (by id, sha256 prefix or version).
    Show {
        reference: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Block a firmware: it is never offered or served again until unblocked.
    Block {
        reference: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Unblock a firmware.
    Unblock {
        reference: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a firmware no rollout uses.
    Delete {
        reference: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCmd {
    /// List the inventory.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add or remove labels of a device.
    Label {
        mac: String,
        /// Label to add (repeatable).
        #[arg(long = "add")]
        add: Vec<String>,
        /// Label to remove (repeatable).
        #[arg(long = "remove")]
        remove: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Print the site's public signing key, to bake into device firmware.
    Export {
        /// pem (default), hex or json.
        #[arg(long, default_value = "pem")]
        format: String,
        #[command(flatten)]
        api: ApiArgs,
    },
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
            Command::Firmware(cmd) => client::firmware(cmd).await,
            Command::Devices(cmd) => client::devices(cmd).await,
            Command::Keys(cmd) => client::keys(cmd).await,
            Command::Rollout(cmd) => rollout::run(cmd).await,
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
