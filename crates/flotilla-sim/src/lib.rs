//! `flotilla-sim`: a simulated fleet of ESP32/ESP8266 devices that speak Flotilla's protocols for
//! real — real sockets, real signatures, real firmware images — for end-to-end tests, demos and
//! benchmarks.
//!
//! Each device has its own identity (MAC, id, loopback address `127.<block>.x.y`), talks to the
//! engine from that address, verifies offers with the site key as client firmware must, downloads
//! with `Range` resume, reads the new version from the image bytes, reboots, and comes back —
//! unless a [`Failures`] flag says otherwise. Nothing here ever decides whether an update
//! succeeded: that is the engine's job, from what the devices report when they come back.
//!
//! ```no_run
//! # async fn demo() -> flotilla_sim::Result<()> {
//! use std::time::Duration;
//! use flotilla_sim::{DeviceKind, Fleet, FleetConfig};
//!
//! let fleet = Fleet::start(FleetConfig {
//!     api: Some("http://127.0.0.1:8070".into()),
//!     fleet: vec![(DeviceKind::NativePull, 10)],
//!     poll_interval: Duration::from_millis(200),
//!     ..FleetConfig::default()
//! })
//! .await?;
//! println!("{}", fleet.summary());
//! fleet.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`FleetConfig`] and the parsers of the command line's compact forms.
//! - [`demo`]: the demo fleet the desktop app and `flotilla serve --demo` start (firmware + fleet).
//! - [`failures`]: [`Failures`] per device, [`FailureRates`] over the fleet.
//! - [`identity`]: ids, MACs and addresses from the seed; the seeded generator.
//! - `fleet`: [`Fleet::start`] and the [`FleetHandle`].
//! - `device`: one device: shared state, the pull and MQTT loops, the update, the download, the
//!   device's own HTTP endpoint.
//! - `error`: [`SimError`].
//! - [`load`]: the check-in load generator behind the `flotilla-load` binary (not a fleet: many
//!   devices' check-ins on a few keep-alive connections, as fast as the engine answers).

#![recursion_limit = "256"]

pub mod config;
pub mod demo;
mod device;
mod error;
pub mod failures;
mod fleet;
pub mod identity;
pub mod load;

pub use config::FleetConfig;
pub use device::{DeviceSnapshot, DeviceState};
pub use error::{Result, SimError};
pub use failures::{FailureRates, Failures};
pub use fleet::{Fleet, FleetHandle, FleetSummary, format_tally};
pub use identity::DeviceKind;
