//! The Flotilla engine.
//!
//! [`Engine::start`] brings up everything a site needs — the firmware library, the device HTTP
//! server (LAN), the admin API (loopback), mDNS advertising — and returns an [`EngineHandle`] whose
//! methods are the one operation surface used by the admin API, the desktop shell and tests.
//!
//! This crate must never depend on a UI toolkit: the desktop shell and `flotilla serve` both own
//! an engine the same way.
//!
//! # Layout
//! - [`firmware`]: image parsing and validation, import rules, content-addressed store, signing,
//!   download tokens.
//! - [`server`]: the device server and the admin API (with its OpenAPI description).
//! - [`discovery`]: mDNS advertising.
//! - [`mqtt`]: the engine's MQTT client and the embedded broker.
//! - [`rollout`]: staged rollouts — targets, waves, gates, the job state machine.
//! - [`protocols`]: how each device family is updated (one [`protocols::Adapter`] per family).
//! - [`inventory`]: devices in memory, keyed by MAC, merged from every source.
//! - `fleet`: the inventory and rollouts behind one lock, check-ins, reports, the scheduler pass.
//! - `writer`: the store writer thread (batched, write-behind, flush for durability, retried until it lands).
//! - [`storage`]: per-file import locks, missing firmware files, backup and restore.
//! - [`handle`]: [`EngineHandle`], every operation, and what the engine's tasks share.
//! - [`engine`]: start-up and task wiring (servers, MQTT, scheduler) above the handle.
//! - [`limits`]: bounds on what devices send, caps on the devices the LAN may create.
//! - [`metrics`]: counters rendered as Prometheus text.
//! - [`runtime`]: the async runtime every front end runs the engine on (one worker by default).
//! - `auth`: device identity — credentials, job nonces, MQTT logins, security events.
//! - [`config`]: settings, defaults and the data dir layout.
//! - [`error`]: the error type, [`CoreError`].

pub(crate) mod auth;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod firmware;
pub(crate) mod fleet;
pub mod handle;
pub mod inventory;
pub mod limits;
mod log_limit;
pub mod metrics;
pub mod mqtt;
pub mod mqtt_link;
pub mod protocols;
pub mod rollout;
pub mod runtime;
mod secrets;
pub mod server;
pub mod settings;
pub mod storage;
pub mod tls;
mod writer;

pub use config::{DataDir, EngineConfig};
pub use engine::Engine;
pub use error::{CoreError, Result};
pub use fleet::{RolloutAction, parse_token};
pub use handle::EngineHandle;
pub use inventory::{Sighting, Transport};

/// A map keyed by what devices send (MACs, device ids), read on every check-in: hashbrown (the
/// table std's map is built on, already in the tree) for `entry_ref`, which finds or inserts a
/// device by a borrowed MAC in one lookup, and its default hasher, foldhash, seeded at random for
/// each map: a few nanoseconds a key where std's SipHash takes about twenty, and keys collide only
/// for someone who knows the seed, which never leaves the process.
pub(crate) type DeviceMap<K, V> = hashbrown::HashMap<K, V>;

pub(crate) use device_key::DeviceKey;
mod device_key;
