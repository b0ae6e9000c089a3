//! One simulated device: its identity, what it is doing right now, and the loops that drive it.
//!
//! A device is a task (spawned by the fleet) plus a [`Device`] value shared with the fleet handle
//! and the device's own HTTP endpoint. The task is the only writer of the device's version and
//! state; the handle only reads snapshots and sets failure flags.
//!
//! # Layout
//! - this file: [`Device`] (shared state), [`DeviceSnapshot`], [`Ctx`] (what every device of a
//!   fleet shares: settings and the trusted site key).
//! - `pull`: the HTTP pull loop (check in, update, reboot, check in again).
//! - `mqtt`: the MQTT push loop (presence with LWT, command → status, reboot, presence again).
//! - `update`: the update itself, the same for both: verify, download, check, install, reboot.
//! - `download`: the firmware download with `Range` resume and throttling.
//! - `endpoint`: the device's tiny HTTP endpoint on its own address.
//! - `vendor`: the vendor personalities (Tasmota, Shelly Gen1/Gen2+, ESPHome, ArduinoOTA): their
//!   mDNS records, MQTT discovery messages and HTTP identification endpoints.
//! - `esphome_web`: ESPHome's `web_server` (`/`, `/events`), as vendor ESPHome nodes serve it.

pub(crate) mod download;
pub(crate) mod endpoint;
pub(crate) mod esphome_web;
pub(crate) mod mqtt;
pub(crate) mod pull;
pub(crate) mod shelly_ws;
pub(crate) mod update;
pub(crate) mod vendor;

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::{FleetConfig, MqttTarget};
use crate::failures::Failures;
use crate::identity::{DeviceKind, Identity};

/// What a device is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Running its firmware, no update under way.
    Idle,
    /// Running, but not connected to its broker (MQTT devices before the first CONNACK or after
    /// losing the connection).
    Offline,
    Accepted,
    Downloading,
    Installing,
    /// Offline for the reboot delay.
    Rebooting,
    /// Gone after a reboot (`vanish`), until repaired.
    Vanished,
}

/// A device as the fleet handle (and its HTTP endpoint) sees it at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub id: String,
    pub mac: String,
    pub kind: DeviceKind,
    /// Version it runs (read from the bytes of the last image it booted).
    pub version: String,
    pub state: DeviceState,
    /// Download progress in percent while downloading.
    pub progress: Option<u8>,
    /// Its own loopback address: the source of its HTTP requests and where its endpoint listens.
    pub ip: IpAddr,
    /// Port of its HTTP endpoint (0 until bound, or if it could not bind).
    pub port: u16,
    /// Offers acted on: distinct jobs, including those it rejected.
    pub commands_received: u32,
    /// Offers ignored because their job was already seen (done, failed or under way).
    pub duplicate_offers: u32,
    /// Every job id it acted on, in order.
    pub jobs_seen: Vec<String>,
    /// Times a download went on with `Range` after a dropped connection.
    pub downloads_resumed: u32,
    /// Why its last update failed or was rejected.
    pub last_error: Option<String>,
    pub failures: Failures,
    /// Boots after the first (completed reboots).
    pub reboots: u32,
    /// Holds the secret the engine handed out when it enrolled (never shown).
    pub enrolled: bool,
    /// Requests the engine refused as unauthenticated (401): an `impostor`'s forged ones.
    pub refused: u32,
}

/// The mutable part of a device.
#[derive(Debug)]
struct Status {
    version: String,
    state: DeviceState,
    progress: Option<u8>,
    port: u16,
    commands_received: u32,
    duplicate_offers: u32,
    jobs_seen: Vec<String>,
    downloads_resumed: u32,
    last_error: Option<String>,
    failures: Failures,
    reboots: u32,
    /// The secret from its enrolment, kept in memory (`Authorization: Bearer` on every request).
    secret: Option<String>,
    refused: u32,
}

/// A device, shared between its task, its endpoint and the fleet handle.
#[derive(Debug)]
pub(crate) struct Device {
    pub ident: Identity,
    status: Mutex<Status>,
    /// Wakes a vanished device when it is repaired.
    revive: Notify,
    /// The device an `impostor` pretends to be.
    pub victim: std::sync::OnceLock<std::sync::Arc<Device>>,
}

impl Device {
    pub fn new(ident: Identity, version: String, failures: Failures) -> Device {
        let state = match ident.kind {
            DeviceKind::NativePull => DeviceState::Idle,
            DeviceKind::NativeMqtt => DeviceState::Offline,
            _ => DeviceState::Idle,
        };
        Device {
            ident,
            status: Mutex::new(Status {
                version,
                state,
                progress: None,
                port: 0,
                commands_received: 0,
                duplicate_offers: 0,
                jobs_seen: Vec::new(),
                downloads_resumed: 0,
                last_error: None,
                failures,
                reboots: 0,
                secret: None,
                refused: 0,
            }),
            revive: Notify::new(),
            victim: std::sync::OnceLock::new(),
        }
    }

    /// A poisoned lock only means another task panicked while holding it; the data is plain
    /// values that are never left half-written, so it is used as is.
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> DeviceSnapshot {
        let s = self.status();
        DeviceSnapshot {
            id: self.ident.id.clone(),
            mac: self.ident.mac.clone(),
            kind: self.ident.kind,
            version: s.version.clone(),
            state: s.state,
            progress: s.progress,
            ip: IpAddr::V4(self.ident.ip),
            port: s.port,
            commands_received: s.commands_received,
            duplicate_offers: s.duplicate_offers,
            jobs_seen: s.jobs_seen.clone(),
            downloads_resumed: s.downloads_resumed,
            last_error: s.last_error.clone(),
            failures: s.failures,
            reboots: s.reboots,
            enrolled: s.secret.is_some(),
            refused: s.refused,
        }
    }

    /// The secret the engine handed out at enrolment, if it enrolled.
    pub fn secret(&self) -> Option<String> {
        self.status().secret.clone()
    }

    /// Keeps the secret of a (re-)enrolment.
    pub fn set_secret(&self, secret: String) {
        self.status().secret = Some(secret);
    }

    /// Counts a request the engine refused as unauthenticated.
    pub fn count_refused(&self) {
        self.status().refused += 1;
    }

    pub fn version(&self) -> String {
        self.status().version.clone()
    }

    pub fn state(&self) -> DeviceState {
        self.status().state
    }

    pub fn failures(&self) -> Failures {
        self.status().failures
    }

    pub fn port(&self) -> u16 {
        self.status().port
    }

    pub fn set_port(&self, port: u16) {
        self.status().port = port;
    }

    pub fn set_failures(&self, failures: Failures) {
        self.status().failures = failures;
    }

    /// Clears the failure flags and wakes the device if it vanished.
    pub fn repair(&self) {
        let mut s = self.status();
        s.failures = Failures::none();
        if s.state == DeviceState::Vanished {
            self.revive.notify_one();
        }
    }

    pub fn set_state(&self, state: DeviceState, progress: Option<u8>) {
        let mut s = self.status();
        s.state = state;
        s.progress = progress;
    }

    /// Records an offer's job. False when the job was seen before (a duplicate, counted and to be
    /// ignored): a device never acts twice on one job.
    pub fn admit(&self, job: &str) -> bool {
        let mut s = self.status();
        if s.jobs_seen.iter().any(|j| j == job) {
            s.duplicate_offers += 1;
            return false;
        }
        s.jobs_seen.push(job.to_owned());
        s.commands_received += 1;
        true
    }

    pub fn record_error(&self, error: &str) {
        self.status().last_error = Some(error.to_owned());
    }

    pub fn count_resume(&self) {
        self.status().downloads_resumed += 1;
    }

    /// Comes back up running `version`.
    fn booted(&self, version: String) {
        let mut s = self.status();
        s.version = version;
        s.state = DeviceState::Idle;
        s.progress = None;
        s.reboots += 1;
    }

    /// Waits until [`Device::repair`] wakes the device.
    async fn revived(&self) {
        self.revive.notified().await;
    }
}

/// The site key the devices trust ("baked into their firmware").
#[derive(Debug, Clone)]
pub(crate) struct TrustedKey {
    pub public: [u8; 32],
    /// First 16 hex digits of SHA-256 of the key, as the engine names it.
    pub key_id: String,
}

impl TrustedKey {
    pub fn new(public: [u8; 32]) -> TrustedKey {
        let key_id = hex::encode(Sha256::digest(public)).chars().take(16).collect();
        TrustedKey { public, key_id }
    }
}

/// What every device of a fleet shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub config: FleetConfig,
    pub api: Option<Url>,
    pub mqtt: Option<MqttTarget>,
    pub key: TrustedKey,
}

impl Ctx {
    /// An HTTP client whose connections leave from the device's own address, so the engine sees
    /// one source IP per device. No proxy: the devices are on the engine's LAN.
    pub fn http_client(&self, device: &Device) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(device.ident.ip))
            .no_proxy()
            .connect_timeout(self.config.http_timeout)
            .read_timeout(self.config.http_timeout)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
    }
}
