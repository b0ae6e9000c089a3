//! The engine's handle: what every server, worker and front end shares (`Shared`) and the one
//! operation surface over it ([`EngineHandle`]). The admin API, the device server, the MQTT
//! dispatcher, the desktop shell and tests all call these methods, so there is one way to do each
//! thing.
//!
//! This module sits below everything that serves or drives the engine: it never imports the
//! servers, the MQTT wiring or the start-up code ([`crate::engine`]), which sit above it.
//!
//! # Layout
//! - this file: [`EngineHandle`], `Shared`, the store handle, the firmware serve catalog.
//! - `firmware`: import, inspect, list, edit and delete firmware; download links.
//! - `devices`: the inventory and the native device protocol (check-ins, reports, presence).
//! - `rollouts`: plan, create, steer and drive rollouts (the scheduler pass).
//! - `audit`: the audit log (events).
//! - `metrics`: fleet metrics (Prometheus text, the dashboard's panels, versions over time).
//! - `status`, `settings`, `demo`: what the engine runs, its saved settings, the demo fleet.

mod audit;
pub use audit::{DEFAULT_RETENTION_DAYS, DEFAULT_RETENTION_MAX, EventQuery};
pub use discovery::Observed;
mod backup;
mod demo;
mod devices;
mod discovery;
pub use devices::{Caller, CredentialAction};
mod firmware;
mod metrics;
mod rollouts;
mod settings;
mod status;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_proto::{Event, Firmware};
use flotilla_store::Store;
use flotilla_store::events::{self, NewEvent};
use serde_json::json;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DataDir, EngineConfig};
use crate::discovery::mdns::Advertiser;
use crate::error::{CoreError, Result};
use crate::firmware::blobs::Blobs;
use crate::firmware::signing::SiteKey;
use crate::firmware::token::DownloadTokens;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::protocols::native::Native;
use crate::writer::{Op, Writer};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Default lifetime of a download token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The store behind a mutex, used from blocking threads (rusqlite is blocking).
#[derive(Debug, Clone)]
pub(crate) struct Db(pub(crate) Arc<Mutex<Store>>);

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServeRule {
    pub public: bool,
    pub blocked: bool,
    /// SHA-256 of the gzip form, when the firmware has one (its file is checked against it).
    pub gzip_sha256: Option<String>,
}

/// sha256 → serve rule of every imported firmware, kept in memory so a download never waits for
/// the store.
#[derive(Debug, Default)]
pub(crate) struct Catalog(RwLock<HashMap<String, ServeRule>>);

impl Catalog {
    pub(crate) fn rule(&self, sha256: &str) -> Option<ServeRule> {
        self.0.read().ok()?.get(sha256).cloned()
    }
    pub(crate) fn set(&self, fw: &Firmware) {
        if let Ok(mut m) = self.0.write() {
            let gzip_sha256 = fw.image.gzip.as_ref().map(|g| g.sha256.clone());
            m.insert(fw.sha256.clone(), ServeRule { public: fw.public, blocked: fw.blocked, gzip_sha256 });
        }
    }
    pub(crate) fn remove(&self, sha256: &str) {
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
    /// The device-auth key: job nonces and per-device MQTT passwords.
    pub auth_key: crate::auth::AuthKey,
    /// Held by every change of the firmware library (import, adding a gzip form, delete), so
    /// the check of an import and its write see the same library.
    pub library: tokio::sync::Mutex<()>,
    pub writer: Writer,
    /// Wakes the scheduler early (a report, a check-in, a rollout action).
    pub kick: Notify,
    pub native: Native,
    /// Connection state of the MQTT client, once it runs.
    pub mqtt_connected: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>>,
    /// How devices reach the broker, once MQTT runs.
    pub mqtt_devices: std::sync::OnceLock<crate::mqtt_link::DeviceBroker>,
    /// mDNS browsing runs (not `--no-mdns`, and its sockets opened): "Scan now" asks it again.
    pub mdns_browsing: std::sync::atomic::AtomicBool,
    /// When the engine started (for its uptime).
    pub started: std::time::Instant,
    /// Caps on the devices unauthenticated sources may create ([`crate::limits`]).
    pub admission: crate::limits::Admission,
    /// Import locks per firmware file and the firmware files found missing.
    pub storage: crate::storage::Storage,
    /// Vendor device credentials (never shown, never logged).
    pub vendor_credentials: crate::credentials::Credentials,
    /// The site certificate and where it is served (`None`: no certificate could be made).
    pub tls: Option<crate::tls::TlsRuntime>,
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

/// A running engine. Cheap to clone (one reference count: axum clones it for every request);
/// [`EngineHandle::shutdown`] stops it. Its parts are reached through `Deref`.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    parts: Arc<HandleParts>,
}

impl std::ops::Deref for EngineHandle {
    type Target = HandleParts;
    fn deref(&self) -> &HandleParts {
        &self.parts
    }
}

impl EngineHandle {
    pub(crate) fn new(parts: HandleParts) -> EngineHandle {
        EngineHandle { parts: Arc::new(parts) }
    }
}

/// What an [`EngineHandle`] holds.
#[derive(Debug)]
pub struct HandleParts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: Arc<CancellationToken>,
    pub(crate) tracker: TaskTracker,
    pub(crate) advertiser: Arc<Mutex<Option<Advertiser>>>,
    /// The embedded broker, when the engine runs one (stopped last, after every client task).
    pub(crate) broker: Arc<tokio::sync::Mutex<Option<crate::mqtt::EmbeddedBroker>>>,
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

    /// Stops every task: servers drain for at most [`crate::server::GRACE`]; `runtime.json` is removed.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        if let Ok(mut a) = self.advertiser.lock()
            && let Some(a) = a.take()
        {
            a.stop();
        }
        self.tracker.wait().await;
        if let Some(broker) = self.broker.lock().await.take() {
            broker.stop().await;
        }
        // last_seen of the devices seen since the last periodic write.
        let seen = self.fleet().ok().and_then(|mut f| f.take_seen());
        self.queue(seen.into_iter().collect());
        let _ = self.shared.writer.flush().await;
        let _ = self.record("engine.stopped", "engine", None, json!({})).await;
        // Everything into the database file, the WAL cut to nothing: a copy of `flotilla.db`
        // alone then holds the whole store.
        match self.shared.db.call(|s| Ok(s.checkpoint()?)).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the database's WAL could not be checkpointed completely at shutdown"),
            Err(e) => tracing::warn!(error = %e, "the database's WAL was not checkpointed at shutdown"),
        }
        let _ = std::fs::remove_file(self.shared.data.runtime_json());
    }

    pub(crate) fn stop_token(&self) -> CancellationToken {
        CancellationToken::clone(&self.stop)
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

    pub(crate) fn fleet(&self) -> Result<std::sync::MutexGuard<'_, Fleet>> {
        self.shared.fleet.lock().map_err(|_| CoreError::ShuttingDown)
    }

    pub(crate) fn queue(&self, ops: Vec<Op>) {
        self.shared.writer.send_all(ops);
    }

    /// Wakes the scheduler now rather than at its next tick.
    pub(crate) fn kick(&self) {
        self.shared.kick.notify_one();
    }
}
