//! Start-up and wiring: [`Engine::start`] opens the store, loads the fleet, and starts every part
//! (device server, admin API, MQTT, mDNS, scheduler, live progress) under one cancellation token
//! and task tracker, handing each the same [`EngineHandle`]. The operations themselves live in
//! [`crate::handle`], below the servers that call them.
//!
//! Resources are injected ([`Engine::start_with_listeners`]) so tests bind port 0. Every change is
//! committed to the store together with its audit event, and only then announced on the live
//! event stream.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::RuntimeInfo;
use flotilla_store::{Store, firmware as fw_table};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DataDir, EngineConfig};
use crate::discovery::mdns::Advertiser;
use crate::error::{CoreError, Result};
use crate::firmware::blobs::Blobs;
use crate::firmware::signing::SiteKey;
use crate::firmware::token::DownloadTokens;
use crate::fleet::{Fleet, LIVENESS_SWEEP, TICK};
use crate::handle::{Catalog, Db, EngineHandle, Shared, reachable};
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::protocols::native::Native;
use crate::writer::Writer;
use crate::{secrets, server};

/// Capacity of the live event channel; a subscriber that falls this far behind is told it lagged.
const EVENT_BUFFER: usize = 4096;

/// Starts engines.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Binds the configured addresses and starts. A bind error names the address and the cause.
    pub async fn start(config: EngineConfig) -> Result<EngineHandle> {
        let device = TcpListener::bind(config.device_listen)
            .await
            .map_err(|e| CoreError::io(format!("cannot listen for devices on {}", config.device_listen), e))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|e| CoreError::io(format!("cannot listen for the admin API on {}", config.admin_listen), e))?;
        Engine::start_with_listeners(config, device, admin).await
    }

    /// Starts on listeners the caller bound (tests bind `127.0.0.1:0`).
    pub async fn start_with_listeners(
        config: EngineConfig,
        device: TcpListener,
        admin: TcpListener,
    ) -> Result<EngineHandle> {
        let data = DataDir::new(config.data_dir.clone());
        // The data dir holds the database, the firmware and the keys: its owner's alone (0700).
        secrets::private_dir(data.root())?;
        let device_addr = device.local_addr().map_err(|e| CoreError::io("device listener has no address", e))?;
        let admin_addr = admin.local_addr().map_err(|e| CoreError::io("admin listener has no address", e))?;

        let db_path = data.database();
        // A database that is missing or empty (0 bytes) is new: it cannot say which firmware
        // files are orphans.
        let db_existed = std::fs::metadata(&db_path).map(|m| m.len() > 0).unwrap_or(false);
        let mut store =
            tokio::task::spawn_blocking(move || Store::open(&db_path)).await.map_err(|_| CoreError::ShuttingDown)??;
        let blobs = Blobs::open(&data.firmware_dir(), config.serve_cache_bytes)?.with_disk_reserve(config.disk_reserve);
        let key = SiteKey::load_or_create(&data.keys_dir())?;
        let tokens = DownloadTokens::load_or_create(&data.keys_dir())?;
        for secret in [data.admin_token(), data.root().join("mqtt-credentials")] {
            secrets::tighten_secret(&secret);
        }
        if let Ok(keys) = std::fs::read_dir(data.keys_dir()) {
            for key in keys.flatten() {
                secrets::tighten_secret(&key.path());
            }
        }
        let admin_token = load_admin_token(&data.admin_token())?;

        let converted = crate::firmware::upgrade::gzip_identities(&mut store, &blobs, &key)?;
        if converted > 0 {
            tracing::info!(converted, "firmware imported as gzip by an older version now go by their image's SHA-256");
        }
        let catalog = Catalog::default();
        let firmware = fw_table::list(store.conn())?;
        let known: HashSet<String> = firmware.iter().flat_map(crate::firmware::blobs::file_names).collect();
        for f in &firmware {
            catalog.set(f);
        }
        let vendor_credentials = crate::credentials::Credentials::load(&data.root().join("credentials.json"))?;
        let auth_key = crate::auth::AuthKey::load_or_create(&data.keys_dir())?;
        let mut devices = flotilla_store::devices::list_with_transport(store.conn())?;
        let mut runs = Fleet::load_runs(store.conn(), &firmware)?;
        let credentials = crate::auth::load(store.conn(), &auth_key, &config.settings, &mut devices, &mut runs)?;
        let inventory = Inventory::load(devices, flotilla_store::devices::label_channels(store.conn())?);
        let missing = blobs.missing(&firmware);
        if !missing.is_empty() {
            tracing::error!(
                count = missing.len(),
                files = missing.join(", "),
                "firmware files the database names are missing from {}; downloads of them fail until each is re-imported",
                data.firmware_dir().display()
            );
        }
        if !db_existed || firmware.is_empty() {
            // A new or empty database (a lost or half-copied `flotilla.db`) knows no firmware:
            // every file would look orphaned. Keep them.
            let kept = blobs.orphans(&known)?;
            if !kept.is_empty() {
                tracing::warn!(
                    count = kept.len(),
                    files = kept.join(", "),
                    "the database is new or has no firmware, but the firmware folder has files: they are kept, not \
                     swept (restore the database from a backup, or re-import them; delete them by hand if unwanted)"
                );
            }
        } else {
            let swept = blobs.sweep_orphans(&known)?;
            if swept > 0 {
                tracing::warn!(
                    swept,
                    "removed firmware files no row refers to (left by an interrupted import or a conversion)"
                );
            }
        }

        let device_url = match &config.device_public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(device_addr)),
        };
        let admin_url = format!("http://{}", reachable(admin_addr));
        let tls = start_tls(&config, &data, &device_url).await?;
        let tls_runtime = match &tls {
            Some((t, _)) => {
                Some(crate::tls::TlsRuntime::new(t.site.clone(), data.tls_dir(), t.https_addr, t.https_url.clone())?)
            }
            None => None,
        };
        let (events_tx, _) = broadcast::channel(EVENT_BUFFER);
        let store = Arc::new(Mutex::new(store));
        let writer = Writer::start(Arc::clone(&store), events_tx.clone())?;
        let profiles = config.topic_profiles.clone();
        let admission = crate::limits::Admission::new(&config.settings);
        let shared = Arc::new(Shared {
            config,
            data,
            db: Db(store),
            blobs,
            catalog,
            key,
            tokens,
            metrics: Arc::new(Metrics::default()),
            events: events_tx,
            admin_token,
            device_url,
            admin_url,
            device_addr,
            admin_addr,
            fleet: Mutex::new(Fleet { inventory, runs, auth: credentials, ..Fleet::default() }),
            auth_key,
            library: tokio::sync::Mutex::new(()),
            writer,
            kick: Notify::new(),
            native: Native::new(profiles.clone()),
            mqtt_connected: std::sync::OnceLock::new(),
            mqtt_devices: std::sync::OnceLock::new(),
            mdns_browsing: std::sync::atomic::AtomicBool::new(false),
            started: std::time::Instant::now(),
            admission,
            storage: crate::storage::Storage::default(),
            vendor_credentials,
            tls: tls_runtime,
        });
        let https = tls.and_then(|(_, l)| l);
        shared.storage.set_missing(missing);

        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();

        let advertiser = if shared.config.mdns {
            let tls_txt: Vec<(&str, String)> = match &shared.tls {
                Some(t) => t
                    .https_addr
                    .map(|a| ("tls", a.port().to_string()))
                    .into_iter()
                    .chain(t.site().map(|site| ("fps", site.spki_sha256().to_owned())))
                    .collect(),
                None => Vec::new(),
            };
            match Advertiser::start_with(device_addr.port(), shared.key.key_id(), &tls_txt) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS advertising is off");
                    None
                }
            }
        } else {
            None
        };

        let handle = EngineHandle::new(crate::handle::HandleParts {
            shared,
            stop: Arc::new(stop),
            tracker,
            advertiser: Arc::new(Mutex::new(advertiser)),
            broker: Arc::new(tokio::sync::Mutex::new(None)),
        });
        let mode = handle.shared.config.mqtt.clone();
        match crate::mqtt_link::start(&handle, &mode, &profiles).await {
            Ok(Some(link)) => {
                let _ = handle.shared.mqtt_devices.set(link.devices.clone());
                *handle.broker.lock().await = link.broker;
            }
            Ok(None) => {}
            Err(e) => {
                handle.stop.cancel();
                handle.tracker.close();
                handle.tracker.wait().await;
                return Err(e);
            }
        }
        if let Err(e) = handle.start_broker_tls().await {
            handle.shutdown().await;
            return Err(e);
        }
        let app = server::device_conn::App {
            router: server::device::router(Arc::clone(&handle.shared))
                .merge(server::device_api::router(handle.clone())),
            engine: handle.clone(),
        };
        let limits = handle.shared.config.device_limits.clone();
        let open_files = server::device_conn::raise_open_files();
        let max_connections =
            limits.max_connections.unwrap_or_else(|| server::device_conn::default_max_connections(open_files));
        tracing::info!(max_connections, open_files, "device server connection limit");
        // One connection cap for the device server, plain and HTTPS together.
        let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
        if let (Some(listener), Some(t)) = (https, &handle.shared.tls) {
            let acceptor = tokio_rustls::TlsAcceptor::from(t.server_config(&[b"http/1.1"])?);
            let (app, limits, permits) = (app.clone(), limits.clone(), Arc::clone(&permits));
            handle.tracker.spawn(server::device_conn::serve_tls(
                listener,
                acceptor,
                app,
                limits,
                permits,
                handle.stop_token(),
            ));
        }
        handle.tracker.spawn(server::device_conn::serve_with(device, None, app, limits, permits, handle.stop_token()));
        let router = server::admin::router(handle.clone());
        handle.tracker.spawn(server::serve("admin", admin, router, handle.stop_token()));
        if handle.shared.config.mdns {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            match crate::discovery::browse::Browser::start(&tx) {
                Ok(browser) => {
                    handle.shared.mdns_browsing.store(true, std::sync::atomic::Ordering::Relaxed);
                    handle.tracker.spawn(crate::discovery::browse::run(handle.clone(), browser, rx));
                }
                Err(e) => tracing::warn!(error = %e, "mDNS browsing is off: devices are found by check-ins and MQTT"),
            }
        }
        handle.tracker.spawn(scheduler(handle.clone()));
        handle.tracker.spawn(progress(handle.clone()));
        handle.tracker.spawn(housekeeping(handle.clone()));
        let runtime = RuntimeInfo {
            admin_url: handle.shared.admin_url.clone(),
            device_url: handle.shared.device_url.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            mqtt_url: handle.mqtt_url().map(str::to_owned),
            device_https_url: handle.device_https_url().map(str::to_owned),
        };
        let runtime_json = serde_json::to_vec_pretty(&runtime).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        secrets::write_private(&handle.shared.data.runtime_json(), &runtime_json)?;
        handle
            .record(
                "engine.started",
                "engine",
                None,
                json!({ "admin_url": runtime.admin_url, "device_url": runtime.device_url }),
            )
            .await?;
        Ok(handle)
    }
}

/// What [`start_tls`] made: the certificate, and where HTTPS is served.
struct TlsStart {
    site: crate::tls::SiteTls,
    https_addr: Option<std::net::SocketAddr>,
    https_url: Option<String>,
}

/// Loads (or makes) the site certificate and binds the HTTPS listener when configured. Without
/// TLS listeners asked for, a certificate that cannot be made is a warning, not a failure.
async fn start_tls(
    config: &EngineConfig,
    data: &DataDir,
    device_url: &str,
) -> Result<Option<(TlsStart, Option<TcpListener>)>> {
    let wanted = config.https_listen.is_some()
        || (config.mqtt_tls_listen.is_some() && matches!(config.mqtt, crate::config::MqttMode::Embedded { .. }));
    let dir = data.tls_dir();
    let site = match tokio::task::spawn_blocking(move || crate::tls::SiteTls::load_or_create(&dir))
        .await
        .map_err(|_| CoreError::ShuttingDown)?
    {
        Ok(site) => site,
        Err(e) if !wanted => {
            tracing::warn!(error = %e, "no TLS certificate: HTTPS and MQTT over TLS are off");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let listener = match config.https_listen {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) if config.https_optional => {
                tracing::warn!(%addr, error = %e, "HTTPS is off: cannot listen (give --https ADDR to choose another address)");
                None
            }
            Err(e) => return Err(CoreError::io(format!("cannot listen for HTTPS on {addr}"), e)),
        },
    };
    let https_addr = match &listener {
        Some(l) => Some(l.local_addr().map_err(|e| CoreError::io("HTTPS listener has no address", e))?),
        None => None,
    };
    let https_url = https_addr.map(|a| crate::tls::same_host(device_url, "https", a.port()));
    if let Some(url) = &https_url {
        tracing::info!(%url, spki_sha256 = site.spki_sha256(), "device server speaks HTTPS");
    }
    Ok(Some((TlsStart { site, https_addr, https_url }, listener)))
}

fn load_admin_token(path: &Path) -> Result<String> {
    use base64::Engine as _;
    let bytes = secrets::load_or_create(
        path,
        || Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secrets::random_bytes::<32>()?).into_bytes()),
        |b| std::str::from_utf8(b).map(|s| s.trim().len() >= 16).unwrap_or(false),
    )?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// Shortest time between two scheduler passes. Each pass that commands devices waits for a
/// commit (durable before sent), so this also bounds those commits to ten a second; a device
/// waits at most this long more for its command. A kick during the wait is kept for the next pass.
const MIN_PASS: Duration = Duration::from_millis(100);

/// The scheduler task: a pass every [`TICK`], or at once when something happened.
async fn scheduler(engine: EngineHandle) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = engine.stop.cancelled() => break,
            _ = interval.tick() => {}
            () = engine.shared.kick.notified() => {}
        }
        let started = tokio::time::Instant::now();
        if let Err(e) = engine.tick().await {
            tracing::error!(error = %e, "scheduler pass failed");
        }
        // At most one pass per MIN_PASS: a burst of reports costs one pass, not one each.
        tokio::time::sleep_until(started + MIN_PASS).await;
        if last_sweep.elapsed() >= LIVENESS_SWEEP {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = engine.sweep_liveness() {
                tracing::error!(error = %e, "offline sweep failed");
            }
        }
    }
}

/// How often live rollout progress is sent (at most; only when something changed).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The live progress task: every [`PROGRESS_EVERY`], one coalesced `rollout.progress` event per
/// rollout whose jobs changed, so a fleet reporting thousands of times a second costs the event
/// stream four events a second per rollout.
async fn progress(engine: EngineHandle) {
    let mut interval = tokio::time::interval(PROGRESS_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = engine.stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        if let Err(e) = engine.publish_progress() {
            tracing::error!(error = %e, "live rollout progress failed");
        }
    }
}

/// How often the version distribution is looked at (it is written when it changed).
const SAMPLE_CHECK: Duration = Duration::from_secs(60);
/// How often the audit log and the version history are pruned to their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The first pruning, after start-up has settled.
const PRUNE_FIRST: Duration = Duration::from_secs(5);

/// Background upkeep that never blocks the engine: the version history for the dashboard, and
/// the audit log's retention (pruned a batch per transaction, shortly after start and hourly).
async fn housekeeping(engine: EngineHandle) {
    let mut sample = tokio::time::interval(SAMPLE_CHECK);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_FIRST, PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = engine.stop.cancelled() => break,
            _ = sample.tick() => {
                if let Err(e) = engine.sample_versions().await {
                    tracing::warn!(error = %e, "version sample not written");
                }
                engine.refresh_tls().await;
            }
            _ = prune.tick() => {
                if let Err(e) = engine.apply_retention().await {
                    tracing::warn!(error = %e, "audit log not pruned to its retention");
                }
            }
        }
    }
}
