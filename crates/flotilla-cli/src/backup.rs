//! `flotilla backup DEST` and `flotilla restore SRC`: a whole data dir into a folder and back.
//!
//! `backup` asks the running engine (`POST /api/v1/backup`), which writes a consistent snapshot
//! while it keeps working; with no engine running on the data dir it writes the backup itself.
//! `restore` refuses while an engine uses the data dir, and verifies the backup completely
//! before writing anything. Both name the data dir as every command does (`--data-dir`).

use std::path::{Path, PathBuf};

use clap::Args;
use flotilla_core::config::default_data_dir;
use flotilla_core::{CoreError, DataDir};
use flotilla_proto::RuntimeInfo;
use flotilla_proto::api::{BackupRequest, BackupSummary};
use reqwest::Method;

use crate::client::{Api, print_json};
use crate::output::outln;
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The folder to write the backup into: new (its parent must exist) or empty, outside the data dir.
    dest: PathBuf,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A folder written by `flotilla backup`.
    src: PathBuf,
    /// Overwrite a data dir that already holds a database (its firmware files not in the backup
    /// are then removed as orphans at the next start).
    #[arg(long)]
    replace: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Whether an engine uses the data dir.
enum Engine {
    Running(Api),
    Stopped,
}

/// A running engine answers its admin API; a `runtime.json` left by a crash names a process that
/// is gone. One that exists but does not answer is neither: the caller refuses to guess.
async fn engine_of(api: &ApiArgs, data: &DataDir) -> CliResult<Engine> {
    if api.api.is_some() {
        return Ok(Engine::Running(Api::resolve(api)?));
    }
    let Ok(text) = std::fs::read_to_string(data.runtime_json()) else { return Ok(Engine::Stopped) };
    let pid = serde_json::from_str::<RuntimeInfo>(&text).map(|i| i.pid).ok();
    if let Ok(client) = Api::resolve(api)
        && client.get::<serde_json::Value>("/api/v1/status").await.is_ok()
    {
        return Ok(Engine::Running(client));
    }
    match pid {
        Some(pid) if Path::new(&format!("/proc/{pid}")).exists() || !Path::new("/proc/self").exists() => {
            Err(CliError::refused(format!(
                "an engine (pid {pid}) seems to use {} but its admin API does not answer; stop it, or wait until it has started",
                data.root().display()
            )))
        }
        _ => Ok(Engine::Stopped),
    }
}

fn absolute(path: &Path) -> CliResult<PathBuf> {
    std::path::absolute(path).map_err(|e| CliError::refused(format!("{}: {e}", path.display())))
}

fn cli_error(e: CoreError) -> CliError {
    match e {
        CoreError::Refused(_)
        | CoreError::Conflict(_)
        | CoreError::BadRequest(_)
        | CoreError::NotFound(_)
        | CoreError::InvalidImage(_) => CliError::refused(e.to_string()),
        other => CliError::failure(other.to_string()),
    }
}

fn print(summary: &BackupSummary, json: bool, what: &str) -> CliResult {
    if json {
        return print_json(summary);
    }
    outln!(
        "{what} {}: {} firmware, {} devices, {} rollouts ({} files)",
        summary.path,
        summary.firmware,
        summary.devices,
        summary.rollouts,
        summary.files
    );
    Ok(())
}

pub async fn backup(args: BackupArgs) -> CliResult {
    let dest = absolute(&args.dest)?;
    let data = DataDir::new(args.api.data_dir.clone().unwrap_or_else(default_data_dir));
    let summary: BackupSummary = match engine_of(&args.api, &data).await? {
        Engine::Running(api) => {
            let req = BackupRequest { path: dest.display().to_string() };
            api.send(api.request(Method::POST, "/api/v1/backup").json(&req)).await?
        }
        Engine::Stopped => tokio::task::spawn_blocking(move || flotilla_core::storage::create_backup(&data, &dest))
            .await
            .map_err(|e| CliError::failure(e.to_string()))?
            .map_err(cli_error)?,
    };
    print(&summary, args.json, "Backup written to")
}

pub async fn restore(args: RestoreArgs) -> CliResult {
    let src = absolute(&args.src)?;
    let data = DataDir::new(args.api.data_dir.clone().unwrap_or_else(default_data_dir));
    if let Engine::Running(_) = engine_of(&args.api, &data).await? {
        return Err(CliError::refused(format!(
            "an engine is running on {}; stop it before restoring (a backup of it is `flotilla backup DEST`)",
            data.root().display()
        )));
    }
    let replace = args.replace;
    let summary = tokio::task::spawn_blocking(move || flotilla_core::storage::restore_backup(&src, &data, replace))
        .await
        .map_err(|e| CliError::failure(e.to_string()))?
        .map_err(cli_error)?;
    print(&summary, args.json, "Restored into")
}
