//! `flotilla serve`: the engine, headless, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use flotilla_core::config::default_data_dir;
use flotilla_core::{DataDir, Engine, EngineConfig};

use crate::{CliError, CliResult};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data dir: database, firmware store, keys (default: ~/.local/share/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Device HTTP server address (LAN).
    #[arg(long, default_value = "0.0.0.0:8070", env = "FLOTILLA_HTTP")]
    http: SocketAddr,
    /// Admin API address (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8071", env = "FLOTILLA_ADMIN")]
    admin: SocketAddr,
    /// URL devices use to reach the device server (default: derived from --http).
    #[arg(long, env = "FLOTILLA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Do not advertise _flotilla._tcp over mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Largest firmware image accepted, in bytes.
    #[arg(long, default_value_t = flotilla_core::config::DEFAULT_MAX_IMAGE_SIZE)]
    max_image_size: u64,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `flotilla_core=debug`.
    #[arg(long, env = "FLOTILLA_LOG", default_value = "info")]
    log: String,
}

pub async fn run(args: ServeArgs) -> CliResult {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|e| CliError::refused(format!("--log {:?}: {e}", args.log)))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if !args.admin.ip().is_loopback() {
        tracing::warn!(admin = %args.admin, "the admin API listens beyond loopback; anyone on that network who has the token can manage this site");
    }

    let started = Instant::now();
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = EngineConfig::new(data_dir.clone());
    config.device_listen = args.http;
    config.admin_listen = args.admin;
    config.device_public_url = args.public_url;
    config.mdns = !args.no_mdns;
    config.max_image_size = args.max_image_size;

    let engine = Engine::start(config).await.map_err(|e| CliError::failure(e.to_string()))?;
    let dir = DataDir::new(&data_dir);
    println!("Flotilla {} ready in {} ms", env!("CARGO_PKG_VERSION"), started.elapsed().as_millis());
    println!("  admin API:     {} (token in {})", engine.admin_url(), dir.admin_token().display());
    println!("  device server: {} (bound to {})", engine.device_url(), engine.device_addr());
    println!("  data dir:      {}", data_dir.display());
    println!("Press Ctrl-C to stop.");

    wait_for_signal().await;
    tracing::info!("stopping");
    engine.shutdown().await;
    println!("Flotilla stopped.");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
