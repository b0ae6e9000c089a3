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
//! - [`engine`]: start/shutdown, task wiring, every operation.
//! - [`config`]: settings, defaults and the data dir layout.
//! - [`error`]: the error type, [`CoreError`].

pub mod config;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod firmware;
mod secrets;
pub mod server;

pub use config::{DataDir, EngineConfig};
pub use engine::{Engine, EngineHandle};
pub use error::{CoreError, Result};
pub use flotilla_store::devices::Sighting;
