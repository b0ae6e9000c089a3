//! The engine: starts every part under one cancellation token and task tracker, and offers every
//! operation as a method of [`EngineHandle`] — the admin API, the desktop shell and tests all go
//! through these methods, so there is one way to do each thing.
//!
//! Resources are injected ([`Engine::start_with_listeners`]) so tests bind port 0. Every change is
//! committed to the store together with its audit event, and only then announced on the live
//! event stream.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flotilla_proto::{
    DownloadLink, Event, EventPage, Firmware, FirmwarePatch, ImageInfo, ImportOptions, ImportResponse, PublicKey,
    RuntimeInfo,
};
use flotilla_store::events::{self, NewEvent};
use flotilla_store::{Store, firmware as fw_table};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DataDir, EngineConfig};
use crate::discovery::mdns::Advertiser;
use crate::error::{CoreError, Result};
use crate::firmware::blobs::{Blobs, valid_sha256};
use crate::firmware::signing::SiteKey;
use crate::firmware::token::{DownloadTokens, valid_job};
use crate::firmware::{image, import};
use crate::fleet::{Fleet, OFFLINE_AFTER, TICK};
use crate::inventory::Inventory;
use crate::protocols::native::Native;
use crate::server::metrics::Metrics;
use crate::writer::Writer;
use crate::{secrets, server};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Default lifetime of a download token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Capacity of the live event channel; a subscriber that falls this far behind is told it lagged.
const EVENT_BUFFER: usize = 4096;

/// The store behind a mutex, used from blocking threads (rusqlite is blocking).
#[derive(Debug, Clone)]
pub(crate) struct Db(Arc<Mutex<Store>>);

impl Db {
    /// Runs `f` on the store in a blocking thread.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut store = db.lock().map_err(|_| CoreError::ShuttingDown)?;
            f(&mut store)
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)?
    }
}

/// What the device server needs to know about a firmware to decide whether to serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServeRule {
    pub public: bool,
    pub blocked: bool,
}

/// sha256 → serve rule of every imported firmware, kept in memory so a download never waits for
/// the store.
#[derive(Debug, Default)]
pub(crate) struct Catalog(RwLock<HashMap<String, ServeRule>>);

impl Catalog {
    pub(crate) fn rule(&self, sha256: &str) -> Option<ServeRule> {
        self.0.read().ok()?.get(sha256).copied()
    }
    fn set(&self, fw: &Firmware) {
        if let Ok(mut m) = self.0.write() {
            m.insert(fw.sha256.clone(), ServeRule { public: fw.public, blocked: fw.blocked });
        }
    }
    fn remove(&self, sha256: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(sha256);
        }
    }
}

/// Everything the engine's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: EngineConfig,
    pub data: DataDir,
    pub db: Db,
    pub blobs: Blobs,
    pub catalog: Catalog,
    pub key: SiteKey,
    pub tokens: DownloadTokens,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<Event>,
    pub admin_token: String,
    pub device_url: String,
    pub admin_url: String,
    pub device_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub fleet: Mutex<Fleet>,
    pub writer: Writer,
    /// Wakes the scheduler early (a report, a check-in, a rollout action).
    pub kick: Notify,
    pub native: Native,
    /// Connection state of the MQTT client, once it runs.
    pub mqtt_connected: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>>,
    /// How devices reach the broker, once MQTT runs.
    pub mqtt_devices: std::sync::OnceLock<crate::mqtt_link::DeviceBroker>,
    /// When the engine started (for its uptime).
    pub started: std::time::Instant,
}

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
        std::fs::create_dir_all(data.root())
            .map_err(|e| CoreError::io(format!("cannot create data dir {}", data.root().display()), e))?;
        let device_addr = device.local_addr().map_err(|e| CoreError::io("device listener has no address", e))?;
        let admin_addr = admin.local_addr().map_err(|e| CoreError::io("admin listener has no address", e))?;

        let db_path = data.database();
        let store =
            tokio::task::spawn_blocking(move || Store::open(&db_path)).await.map_err(|_| CoreError::ShuttingDown)??;
        let blobs = Blobs::open(&data.firmware_dir(), config.serve_cache_bytes)?.with_disk_reserve(config.disk_reserve);
        let key = SiteKey::load_or_create(&data.keys_dir())?;
        let tokens = DownloadTokens::load_or_create(&data.keys_dir())?;
        let admin_token = load_admin_token(&data.admin_token())?;

        let catalog = Catalog::default();
        let firmware = fw_table::list(store.conn())?;
        let known: HashSet<String> = firmware.iter().map(|f| f.sha256.clone()).collect();
        for f in &firmware {
            catalog.set(f);
        }
        let inventory = Inventory::load(flotilla_store::devices::list_with_transport(store.conn())?);
        let runs = Fleet::load_runs(store.conn(), &firmware)?;
        let swept = blobs.sweep_orphans(&known)?;
        if swept > 0 {
            tracing::warn!(swept, "removed firmware files no row refers to (left by an interrupted import)");
        }

        let device_url = match &config.device_public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(device_addr)),
        };
        let admin_url = format!("http://{}", reachable(admin_addr));
        let (events_tx, _) = broadcast::channel(EVENT_BUFFER);
        let store = Arc::new(Mutex::new(store));
        let writer = Writer::start(Arc::clone(&store), events_tx.clone())?;
        let profiles = config.topic_profiles.clone();
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
            fleet: Mutex::new(Fleet { inventory, runs, ..Fleet::default() }),
            writer,
            kick: Notify::new(),
            native: Native::new(profiles.clone()),
            mqtt_connected: std::sync::OnceLock::new(),
            mqtt_devices: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
        });

        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();

        let advertiser = if shared.config.mdns {
            match Advertiser::start(device_addr.port(), shared.key.key_id()) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS advertising is off");
                    None
                }
            }
        } else {
            None
        };

        let handle = EngineHandle {
            shared,
            stop,
            tracker,
            advertiser: Arc::new(Mutex::new(advertiser)),
            mqtt: Arc::new(tokio::sync::Mutex::new(None)),
        };
        let mode = handle.shared.config.mqtt.clone();
        match crate::mqtt_link::start(&handle, &mode, &profiles).await {
            Ok(Some(link)) => {
                let _ = handle.shared.mqtt_devices.set(link.devices.clone());
                *handle.mqtt.lock().await = Some(link);
            }
            Ok(None) => {}
            Err(e) => {
                handle.stop.cancel();
                handle.tracker.close();
                handle.tracker.wait().await;
                return Err(e);
            }
        }
        let router =
            server::device::router(Arc::clone(&handle.shared)).merge(server::device_api::router(handle.clone()));
        handle.tracker.spawn(server::serve("device", device, router, handle.stop.clone()));
        let router = server::admin::router(handle.clone());
        handle.tracker.spawn(server::serve("admin", admin, router, handle.stop.clone()));
        handle.tracker.spawn(scheduler(handle.clone()));
        handle.tracker.spawn(progress(handle.clone()));
        let runtime = RuntimeInfo {
            admin_url: handle.shared.admin_url.clone(),
            device_url: handle.shared.device_url.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            mqtt_url: handle.mqtt_url().map(str::to_owned),
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

/// An address others can use: the unspecified address becomes a LAN (or loopback) address.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    if !addr.ip().is_unspecified() {
        return addr;
    }
    let lan = if_addrs::get_if_addrs().ok().and_then(|ifs| {
        ifs.into_iter()
            .filter(|i| !i.is_loopback())
            .map(|i| i.ip())
            .find(|ip| matches!(ip, IpAddr::V4(v4) if !v4.is_link_local()))
    });
    SocketAddr::new(lan.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), addr.port())
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

/// A running engine. Cheap to clone; [`EngineHandle::shutdown`] stops it.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    pub(crate) shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
    pub(crate) advertiser: Arc<Mutex<Option<Advertiser>>>,
    mqtt: Arc<tokio::sync::Mutex<Option<crate::mqtt_link::MqttLink>>>,
}

impl EngineHandle {
    /// Where the admin API listens (`http://127.0.0.1:8071`).
    pub fn admin_url(&self) -> &str {
        &self.shared.admin_url
    }
    /// The URL devices use for the device server.
    pub fn device_url(&self) -> &str {
        &self.shared.device_url
    }
    pub fn device_addr(&self) -> SocketAddr {
        self.shared.device_addr
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.shared.admin_addr
    }
    /// The admin API bearer token.
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }
    pub fn data_dir(&self) -> &Path {
        self.shared.data.root()
    }

    /// Stops every task: servers drain for at most [`server::GRACE`]; `runtime.json` is removed.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        if let Ok(mut a) = self.advertiser.lock()
            && let Some(a) = a.take()
        {
            a.stop();
        }
        self.tracker.wait().await;
        if let Some(link) = self.mqtt.lock().await.take()
            && let Some(broker) = link.broker
        {
            broker.stop().await;
        }
        let _ = self.shared.writer.flush().await;
        let _ = self.record("engine.stopped", "engine", None, json!({})).await;
        let _ = std::fs::remove_file(self.shared.data.runtime_json());
    }

    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// URL devices use for MQTT (`None` when MQTT is off).
    pub fn mqtt_url(&self) -> Option<&str> {
        self.shared.mqtt_devices.get().map(|d| d.url.as_str())
    }

    /// Is the MQTT client connected to its broker?
    pub fn mqtt_connected(&self) -> bool {
        self.shared.mqtt_connected.get().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when shutdown has been requested.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// Live events (what the SSE stream carries).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Runs `f` in a write transaction together with the event it returns, then announces the
    /// event: a change and its audit entry commit together or not at all.
    async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&flotilla_store::rusqlite::Connection) -> flotilla_store::Result<(T, NewEvent)> + Send + 'static,
    ) -> Result<T> {
        let (out, event) = self
            .shared
            .db
            .call(move |s| {
                Ok(s.write(|tx| {
                    let (out, new) = f(tx)?;
                    Ok((out, events::append(tx, &new)?))
                })?)
            })
            .await?;
        let _ = self.shared.events.send(event);
        Ok(out)
    }

    pub(crate) async fn record(
        &self,
        kind: &str,
        actor: &str,
        subject: Option<String>,
        data: serde_json::Value,
    ) -> Result<Event> {
        let ev = NewEvent::new(kind, actor, subject, data);
        let event = self.shared.db.call(move |s| Ok(s.write(|tx| events::append(tx, &ev))?)).await?;
        let _ = self.shared.events.send(event.clone());
        Ok(event)
    }

    // ---- firmware -------------------------------------------------------------------------

    /// Parses `bytes` without importing them.
    pub async fn inspect_firmware(&self, bytes: Bytes) -> Result<ImageInfo> {
        tokio::task::spawn_blocking(move || image::inspect(&bytes).map_err(CoreError::from))
            .await
            .map_err(|_| CoreError::ShuttingDown)?
    }

    /// Imports a firmware: parse, apply the import rules, store the file, sign the manifest,
    /// record the row and its event. Idempotent for identical bytes. Nothing is left behind
    /// when any step fails.
    pub async fn import_firmware(&self, bytes: Bytes, opts: ImportOptions, actor: &str) -> Result<ImportResponse> {
        let info = self.inspect_firmware(bytes.clone()).await?;
        let sha = info.sha256.clone();
        if let Some(existing) = self.shared.db.call(move |s| Ok(fw_table::by_sha256(s.conn(), &sha)?)).await? {
            return Ok(ImportResponse { firmware: existing, created: false });
        }
        let config = &self.shared.config;
        let plan = import::plan(&info, &opts, |m| config.max_image_size_for(m))?;
        let manifest = self.shared.key.sign(plan.manifest.clone())?;
        let new = fw_table::NewFirmware {
            version: plan.version,
            model: plan.model,
            channel: plan.channel,
            notes: plan.notes,
            min_version: plan.min_version,
            public: plan.public,
            image: info,
            manifest,
        };
        let shared = Arc::clone(&self.shared);
        let actor = actor.to_owned();
        let (firmware, event) = tokio::task::spawn_blocking(move || -> Result<(Firmware, Event)> {
            let sha = new.image.sha256.clone();
            let wrote = shared.blobs.write(&sha, &bytes)?;
            let committed = shared.db.0.lock().map_err(|_| CoreError::ShuttingDown).and_then(|mut s| {
                s.write(|tx| {
                    let fw = fw_table::insert(tx, &new)?;
                    let ev = events::append(
                        tx,
                        &NewEvent::new(
                            "firmware.imported",
                            &actor,
                            Some(format!("firmware:{}", fw.id)),
                            json!({ "id": fw.id, "sha256": fw.sha256, "version": fw.version, "model": fw.model, "chip": fw.chip, "size": fw.size }),
                        ),
                    )?;
                    Ok((fw, ev))
                })
                .map_err(CoreError::from)
            });
            if committed.is_err() && wrote {
                let _ = shared.blobs.remove(&sha);
            }
            committed
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)??;
        self.shared.catalog.set(&firmware);
        let _ = self.shared.events.send(event);
        Ok(ImportResponse { firmware, created: true })
    }

    /// Imports a file from the engine's own disk.
    pub async fn import_firmware_path(&self, path: &Path, opts: ImportOptions, actor: &str) -> Result<ImportResponse> {
        let bytes = self.read_firmware_file(path).await?;
        self.import_firmware(bytes, opts, actor).await
    }

    /// Parses a file on the engine's own disk without importing it (the desktop app's drops).
    pub async fn inspect_firmware_path(&self, path: &Path) -> Result<ImageInfo> {
        let bytes = self.read_firmware_file(path).await?;
        self.inspect_firmware(bytes).await
    }

    /// Reads a firmware file from disk, refusing what cannot be a firmware before reading it.
    async fn read_firmware_file(&self, path: &Path) -> Result<Bytes> {
        let limit = self.shared.config.max_image_size.saturating_mul(4).max(64 << 20);
        let meta = tokio::fs::metadata(path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CoreError::NotFound(format!("file {}", path.display())),
            _ => CoreError::io(format!("cannot read {}", path.display()), e),
        })?;
        if !meta.is_file() {
            return Err(CoreError::BadRequest(format!("{} is not a file", path.display())));
        }
        if meta.len() > limit {
            return Err(CoreError::Refused(format!(
                "{} is {} bytes; no firmware is that large",
                path.display(),
                meta.len()
            )));
        }
        let bytes =
            tokio::fs::read(path).await.map_err(|e| CoreError::io(format!("cannot read {}", path.display()), e))?;
        Ok(Bytes::from(bytes))
    }

    pub async fn list_firmware(&self) -> Result<Vec<Firmware>> {
        self.shared.db.call(|s| Ok(fw_table::list(s.conn())?)).await
    }

    /// A firmware by id, full sha256, sha256 prefix (≥ 6 hex digits) or version (newest match).
    pub async fn find_firmware(&self, reference: &str) -> Result<Firmware> {
        let r = reference.trim().to_ascii_lowercase();
        self.shared
            .db
            .call(move |s| {
                let conn = s.conn();
                if let Ok(id) = r.parse::<i64>()
                    && let Some(f) = fw_table::get(conn, id)?
                {
                    return Ok(f);
                }
                if r.len() >= 6 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let found = fw_table::by_sha256_prefix(conn, &r, 2)?;
                    match found.len() {
                        1 => return found.into_iter().next().ok_or_else(|| CoreError::NotFound(r.clone())),
                        2 => return Err(CoreError::BadRequest(format!("sha256 prefix {r} matches several firmware"))),
                        _ => {}
                    }
                }
                let bare = r.strip_prefix('v').unwrap_or(&r).to_owned();
                fw_table::list(conn)?
                    .into_iter()
                    .find(|f| f.version == bare)
                    .ok_or_else(|| CoreError::NotFound(format!("firmware {r}")))
            })
            .await
    }

    pub async fn get_firmware(&self, id: i64) -> Result<Firmware> {
        self.shared
            .db
            .call(move |s| fw_table::get(s.conn(), id)?.ok_or_else(|| CoreError::NotFound(format!("firmware {id}"))))
            .await
    }

    /// Blocks/unblocks, makes public/private, changes channel or notes.
    pub async fn patch_firmware(&self, id: i64, patch: FirmwarePatch, actor: &str) -> Result<Firmware> {
        if let Some(n) = &patch.notes
            && n.len() > 4096
        {
            return Err(CoreError::BadRequest("notes are limited to 4096 bytes".into()));
        }
        let actor = actor.to_owned();
        let fw = self
            .change(move |tx| {
                let fw = fw_table::patch(tx, id, &patch)?;
                let data = json!({ "id": id, "change": patch });
                Ok((fw, NewEvent::new("firmware.changed", &actor, Some(format!("firmware:{id}")), data)))
            })
            .await?;
        self.shared.catalog.set(&fw);
        Ok(fw)
    }

    /// Deletes a firmware no rollout uses, and its file.
    pub async fn delete_firmware(&self, id: i64, actor: &str) -> Result<Firmware> {
        let actor = actor.to_owned();
        let fw = self
            .change(move |tx| {
                let fw = fw_table::delete_unused(tx, id)?;
                let data = json!({ "id": id, "sha256": fw.sha256, "version": fw.version });
                Ok((fw, NewEvent::new("firmware.deleted", &actor, Some(format!("firmware:{id}")), data)))
            })
            .await?;
        self.shared.catalog.remove(&fw.sha256);
        self.shared.blobs.remove(&fw.sha256)?;
        Ok(fw)
    }

    /// A download URL with a token for `job`, valid for `ttl`.
    pub async fn download_link(&self, id: i64, job: Option<&str>, ttl: Option<Duration>) -> Result<DownloadLink> {
        let fw = self.get_firmware(id).await?;
        let job = job.unwrap_or("manual");
        if !valid_job(job) {
            return Err(CoreError::BadRequest(format!("job {job:?} must be 1-64 characters of A-Z a-z 0-9 - _")));
        }
        let ttl = ttl.unwrap_or(DEFAULT_TOKEN_TTL).min(Duration::from_secs(7 * 24 * 3600));
        let expires = unix_now() + ttl.as_secs();
        Ok(DownloadLink { url: self.firmware_url(&fw.sha256, job, expires), expires })
    }

    /// URL of a firmware on the device server, with a token for `job` until `expires`.
    pub fn firmware_url(&self, sha256: &str, job: &str, expires: u64) -> String {
        debug_assert!(valid_sha256(sha256));
        let token = self.shared.tokens.issue(sha256, job, expires);
        format!("{}/fw/{sha256}?t={token}", self.shared.device_url)
    }

    pub fn public_key(&self) -> PublicKey {
        self.shared.key.public()
    }

    // ---- events ---------------------------------------------------------------------------

    pub async fn events_page(&self, before: Option<i64>, kind: Option<String>, limit: u32) -> Result<EventPage> {
        self.shared.db.call(move |s| Ok(events::page(s.conn(), before, kind.as_deref(), limit)?)).await
    }

    /// Events after `after` (to replay what a reconnecting stream missed).
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.shared.db.call(move |s| Ok(events::since(s.conn(), after, limit)?)).await
    }
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
        if last_sweep.elapsed() >= OFFLINE_AFTER / 60 {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = engine.sweep_offline() {
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
