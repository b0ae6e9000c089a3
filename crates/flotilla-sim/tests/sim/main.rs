//! Integration tests of the simulator over real loopback sockets: a fake engine (`engine`), a
//! real Mosquitto broker (`broker`), the library (`pull`, `mqtt`) and the binaries (`cli`, `load`).
//!
//! Tests wait on conditions with bounded deadlines ([`wait_for`]); they never sleep and hope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broker;
mod cli;
mod engine;
mod load;
mod mqtt;
mod pull;
mod scale;

use std::time::Duration;

use flotilla_imagegen::Esp32Image;
use flotilla_sim::{DeviceKind, FleetConfig};

/// How long any single condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `probe` every 10 ms until it yields a value; fails the test after [`DEADLINE`].
pub async fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    wait_within(what, DEADLINE, Duration::from_millis(10), probe).await
}

/// Polls `probe` every `every` until it yields a value; fails the test after `limit`.
pub async fn wait_within<T>(what: &str, limit: Duration, every: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// A fast fleet of `n` devices of `kind` on version 1.0.0.
pub fn fast_fleet(api: &str, kind: DeviceKind, n: usize) -> FleetConfig {
    FleetConfig {
        api: Some(api.into()),
        fleet: vec![(kind, n)],
        poll_interval: Duration::from_millis(100),
        reboot_delay: Duration::from_millis(150),
        ..FleetConfig::default()
    }
}

/// An ESP32 image carrying `version` in its app descriptor.
pub fn image(version: &str, size: usize) -> Vec<u8> {
    Esp32Image::new().version(version).size(size).build()
}
