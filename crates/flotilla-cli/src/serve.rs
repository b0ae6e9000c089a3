//! `flotilla serve`: the engine, headless, until SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use clap::Args;
use flotilla_cli::{DemoArgs, EngineArgs};
use flotilla_core::mqtt_link::MqttMode;
use flotilla_core::{DataDir, Engine};

use crate::{CliError, CliResult};

/// `println!` that never panics: an engine whose standard output was closed keeps running (and
/// stops cleanly on a signal), it just has no one to tell where it listens.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    demo: DemoArgs,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `flotilla_core=debug`. `RUST_LOG`,
    /// when set, wins.
    #[arg(long, env = "FLOTILLA_LOG", default_value = "info")]
    log: String,
}

/// The log filter: `RUST_LOG` when set (the Rust convention), else `--log`; and where it came from.
fn log_directives(rust_log: Option<String>, flag: &str) -> (String, &'static str) {
    match rust_log.filter(|v| !v.trim().is_empty()) {
        Some(v) => (v, "RUST_LOG"),
        None => (flag.to_owned(), "--log"),
    }
}

pub async fn run(args: ServeArgs) -> CliResult {
    let (directives, from) = log_directives(std::env::var("RUST_LOG").ok(), &args.log);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .map_err(|e| CliError::refused(format!("{from} {directives:?}: {e}")))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let started = Instant::now();
    let data_dir = args.engine.data_dir();
    let mut config = args.engine.to_config().map_err(CliError::refused)?;
    if !config.admin_listen.ip().is_loopback() {
        tracing::warn!(admin = %config.admin_listen, "the admin API listens beyond loopback; anyone on that network who has the token can manage this site");
    }
    config.demo = Some(flotilla_sim::demo::launcher(args.demo.options()));

    let config_mqtt_embedded = matches!(config.mqtt, MqttMode::Embedded { .. });
    // Listen for signals before anything else exists: a SIGTERM that arrives while the engine
    // starts must stop it cleanly, not kill the process.
    let signals = Signals::install()?;
    let engine = Engine::start(config).await.map_err(|e| CliError::failure(e.to_string()))?;
    let dir = DataDir::new(&data_dir);
    say!("Flotilla {} ready in {} ms", env!("CARGO_PKG_VERSION"), started.elapsed().as_millis());
    say!("  admin API:     {} (token in {})", engine.admin_url(), dir.admin_token().display());
    if flotilla_webui::is_built() {
        // The token only to a person at a terminal: piped or logged output (a service manager's
        // journal, CI) gets where it is instead.
        if std::io::stdout().is_terminal() {
            say!("  web UI:        {}/#token={}", engine.admin_url(), engine.admin_token());
        } else {
            say!("  web UI:        {} (open it with the token in {})", engine.admin_url(), dir.admin_token().display());
        }
    } else {
        say!("  web UI:        not built into this binary (npm ci && npm run build in ui/, then rebuild)");
    }
    say!("  device server: {} (bound to {})", engine.device_url(), engine.device_addr());
    let tls = engine.tls_status();
    match (&tls.https_url, &tls.spki_sha256) {
        (Some(url), Some(fp)) => say!("  HTTPS:         {url} (public key SHA-256 {fp})"),
        _ => say!("  HTTPS:         off"),
    }
    if let Some(url) = &tls.mqtt_tls_url {
        say!("  MQTT over TLS: {url}");
    }
    match engine.mqtt_url() {
        Some(url) if config_mqtt_embedded => {
            say!("  MQTT broker:   {url} (embedded; credentials in {})", data_dir.join("mqtt-credentials").display());
        }
        Some(url) => say!("  MQTT broker:   {url}"),
        None => say!("  MQTT:          off"),
    }
    say!("  data dir:      {}", data_dir.display());
    if args.demo.demo {
        match engine.start_demo("cli").await {
            Ok(info) => say!("  demo fleet:    {}", info.summary),
            Err(e) => {
                engine.shutdown().await;
                return Err(CliError::failure(format!("cannot start the demo fleet: {e}")));
            }
        }
    }
    say!("Press Ctrl-C to stop.");

    signals.wait().await;
    tracing::info!("stopping");
    engine.shutdown().await;
    say!("Flotilla stopped.");
    Ok(())
}

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> CliResult<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let err = |e: std::io::Error| CliError::failure(format!("cannot listen for signals: {e}"));
            Ok(Signals {
                term: signal(SignalKind::terminate()).map_err(err)?,
                int: signal(SignalKind::interrupt()).map_err(err)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn rust_log_wins_over_the_flag_when_set() {
        assert_eq!(log_directives(Some("debug".into()), "info"), ("debug".to_owned(), "RUST_LOG"));
        assert_eq!(log_directives(Some(" ".into()), "warn"), ("warn".to_owned(), "--log"));
        assert_eq!(log_directives(None, "warn"), ("warn".to_owned(), "--log"));
    }
}
