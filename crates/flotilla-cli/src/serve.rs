//! `flotilla serve`: the engine, headless, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use flotilla_core::config::default_data_dir;
use flotilla_core::mqtt_link::MqttMode;
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
    /// MQTT: `embedded` (a broker in the engine), `off`, or the site's broker `mqtt://host:port`
    /// (`mqtts://` for TLS).
    #[arg(long, default_value = "embedded", env = "FLOTILLA_MQTT")]
    mqtt: String,
    /// Where the embedded broker listens.
    #[arg(long, default_value = "0.0.0.0:1883", env = "FLOTILLA_MQTT_LISTEN")]
    mqtt_listen: SocketAddr,
    /// User name for an external broker.
    #[arg(long, env = "FLOTILLA_MQTT_USER")]
    mqtt_user: Option<String>,
    /// Password for an external broker.
    #[arg(long, env = "FLOTILLA_MQTT_PASSWORD", hide_env_values = true)]
    mqtt_password: Option<String>,
    /// An MQTT topic profile of an existing fleet, besides the built-in flotilla, cercollettiva and
    /// paku (repeatable): `name=acme;command=acme/{id}/ota;status=acme/{id}/ota/state;presence=acme/{id}/online[;result=…]`.
    #[arg(long = "topic-profile")]
    topic_profiles: Vec<String>,
    /// Do not advertise _flotilla._tcp over mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Free disk space an import must leave, in bytes (so the database can still record changes
    /// when firmware fills the disk).
    #[arg(long, default_value_t = flotilla_core::firmware::blobs::DEFAULT_DISK_RESERVE)]
    disk_reserve: u64,
    /// Largest firmware image accepted, in bytes.
    #[arg(long, default_value_t = flotilla_core::config::DEFAULT_MAX_IMAGE_SIZE)]
    max_image_size: u64,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `flotilla_core=debug`.
    #[arg(long, env = "FLOTILLA_LOG", default_value = "info")]
    log: String,
}

pub async fn run(args: ServeArgs) -> CliResult {
    // rumqttd logs every client disconnect (and its own shutdown) as an error; the engine reports
    // what matters about its broker (bind errors, connection state) itself.
    let directives = format!("{},rumqttd=off", args.log);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
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
    config.disk_reserve = args.disk_reserve;
    for spec in &args.topic_profiles {
        let profile = flotilla_proto::native::TopicProfile::parse(spec)
            .map_err(|e| CliError::refused(format!("--topic-profile: {e}")))?;
        config.topic_profiles.retain(|p| p.name != profile.name);
        config.topic_profiles.push(profile);
    }
    config.mqtt = match args.mqtt.as_str() {
        "embedded" => MqttMode::Embedded { listen: args.mqtt_listen },
        "off" | "none" => MqttMode::Off,
        url if url.starts_with("mqtt://") || url.starts_with("mqtts://") => {
            flotilla_core::mqtt::parse_url(url).map_err(|e| CliError::refused(format!("--mqtt: {e}")))?;
            MqttMode::External { url: url.to_owned(), username: args.mqtt_user, password: args.mqtt_password }
        }
        other => return Err(CliError::refused(format!("--mqtt {other:?}: use embedded, off or mqtt://host:port"))),
    };

    let config_mqtt_embedded = matches!(config.mqtt, MqttMode::Embedded { .. });
    // Listen for signals before anything else exists: a SIGTERM that arrives while the engine
    // starts must stop it cleanly, not kill the process.
    let signals = Signals::install()?;
    let engine = Engine::start(config).await.map_err(|e| CliError::failure(e.to_string()))?;
    let dir = DataDir::new(&data_dir);
    println!("Flotilla {} ready in {} ms", env!("CARGO_PKG_VERSION"), started.elapsed().as_millis());
    println!("  admin API:     {} (token in {})", engine.admin_url(), dir.admin_token().display());
    println!("  device server: {} (bound to {})", engine.device_url(), engine.device_addr());
    match engine.mqtt_url() {
        Some(url) if config_mqtt_embedded => {
            println!(
                "  MQTT broker:   {url} (embedded; credentials in {})",
                data_dir.join("mqtt-credentials").display()
            );
        }
        Some(url) => println!("  MQTT broker:   {url}"),
        None => println!("  MQTT:          off"),
    }
    println!("  data dir:      {}", data_dir.display());
    println!("Press Ctrl-C to stop.");

    signals.wait().await;
    tracing::info!("stopping");
    engine.shutdown().await;
    println!("Flotilla stopped.");
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
