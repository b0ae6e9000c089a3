//! Update protocols, one module per device family, behind one trait.
//!
//! An [`Adapter`] says how a family is updated: whether the engine pushes the command or the
//! device pulls it ([`Delivery`]), how a command is sent, and where progress and the version used
//! for verification come from ([`ProgressSource`], [`VersionSource`]). The rollout engine only
//! speaks to adapters; vendor families (Tasmota, Shelly, ArduinoOTA, ESPHome) add adapters without
//! touching it.

pub mod native;

use std::future::Future;
use std::pin::Pin;

use flotilla_proto::native::Offer;
use flotilla_proto::{Device, Family};

use crate::error::Result;
use crate::inventory::Transport;

/// A boxed future, for object-safe async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The families this engine can update today (the others are found, not yet updated). The
/// planner skips devices of any other family, and `GET /api/v1/status` says so.
pub const UPDATABLE: [Family; 1] = [Family::Native];

/// Can this engine update devices of `family`?
pub fn can_update(family: Family) -> bool {
    UPDATABLE.contains(&family)
}

/// Who starts an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The device asks (HTTP check-in) and receives the offer in the answer.
    Pull,
    /// The engine sends the command (MQTT, vendor HTTP/RPC, espota…).
    Push,
}

/// Where progress reports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressSource {
    /// The device reports states and percentages itself (native HTTP reports, MQTT status).
    DeviceReports,
    /// The engine streams the bytes and knows the progress (espota, ESPHome).
    Transfer,
    /// The engine polls the device (Shelly `Shelly.GetStatus`…).
    Polling,
}

/// How the engine learns the version a device runs after the reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The device's next check-in carries it.
    CheckIn,
    /// A retained presence / status message carries it.
    Presence,
    /// The engine asks the device (HTTP probe, mDNS TXT).
    Probe,
}

/// One family's way of updating devices.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    fn family(&self) -> Family;
    fn delivery(&self, transport: &Transport) -> Delivery;
    fn progress_source(&self) -> ProgressSource;
    fn version_source(&self, transport: &Transport) -> VersionSource;
    /// Sends `offer` to a push device. Pull adapters return `Ok(())`: the device takes the offer
    /// at its next check-in.
    fn command<'a>(
        &'a self,
        device: &'a Device,
        transport: &'a Transport,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Something that publishes MQTT messages (the engine's MQTT client; a recorder in tests).
pub trait Publish: Send + Sync + std::fmt::Debug {
    fn publish<'a>(&'a self, topic: &'a str, payload: Vec<u8>, retain: bool) -> BoxFuture<'a, Result<()>>;
}
