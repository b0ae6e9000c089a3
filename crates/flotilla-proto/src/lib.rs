//! Types shared by every Flotilla component — the engine, the CLI, the simulator and (through
//! generated TypeScript) the UI.
//!
//! This crate must never do I/O: it is plain data with serde and OpenAPI schemas, so that every
//! side of every wire agrees on one definition.
//!
//! # Layout
//! - [`firmware`]: what the image parser reads, imported firmware, signed manifests.
//! - [`device`]: the inventory, keyed by MAC.
//! - [`event`]: audit log entries and live events.
//! - [`native`]: the native device protocol (HTTP pull, MQTT push, topic profiles).
//! - [`rollout`]: rollout specs, rollout and job states.
//! - [`api`]: admin API envelopes (errors, health, runtime info).

pub mod api;
pub mod device;
pub mod event;
pub mod firmware;
pub mod native;
pub mod rollout;
#[cfg(test)]
mod ts;

pub use api::{ErrorBody, ErrorDetail, Health, PublicKey, RuntimeInfo};
pub use device::{Device, Family, LabelRequest};
pub use event::{Event, EventPage};
pub use firmware::{
    Channel, Chip, DownloadLink, DownloadLinkRequest, Firmware, FirmwarePatch, GzipForm, ImageFormat, ImageInfo,
    ImportOptions, ImportPathRequest, ImportPlan, ImportResponse, InspectReport, Manifest, SegmentInfo, SignedManifest,
    Verdict,
};
