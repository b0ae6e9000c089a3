//! MQTT: the engine's one broker connection ([`MqttClient`]) and the broker it runs itself when the
//! site has none ([`EmbeddedBroker`]).
//!
//! Devices that are updated over MQTT (Tasmota, ESPHome, Flotilla's own client in push mode) and
//! MQTT discovery all go through one client: the [`MqttClient`] of a site's broker, or, with the
//! embedded broker, an in-process [`LocalClient`] and [`LocalInbox`] (no socket at all). The engine
//! never opens a second connection. The client passes payloads through as bytes: parsing them (and refusing malformed
//! ones) is the job of the protocol adapters, never of this module.
//!
//! This module must never panic on network input or I/O, never log a password, and never block
//! the engine: the event loop runs in its own task and the broker in tasks of its own.
//!
//! # Layout
//! - [`url`]: parsing `mqtt://` / `mqtts://` broker URLs ([`parse_url`]).
//! - [`client`]: [`MqttClient`], the reconnecting client (rumqttc).
//! - [`broker`]: [`EmbeddedBroker`], a small MQTT 3.1.1 broker of our own (tokio tasks, topic
//!   trees for subscriptions and retained messages), and its in-process client.

use std::net::SocketAddr;

pub mod broker;
pub mod client;
pub mod url;

#[cfg(test)]
mod tests;

pub use broker::{BrokerConfig, Delivery, DeviceAccess, DeviceLogins, EmbeddedBroker, LocalClient, LocalInbox};
pub use client::{Incoming, MqttClient, MqttConfig};
pub use url::{BrokerUrl, parse_url};

/// Largest payload the engine publishes and the embedded broker accepts: 256 KiB. Manifests and
/// commands are far smaller; firmware itself always travels over HTTP.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Room for the topic and the packet header on top of [`MAX_PAYLOAD`] (an MQTT string is at most
/// 65,535 bytes).
const PACKET_OVERHEAD: usize = 64 * 1024 + 16;

/// Why an MQTT operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The broker URL cannot be used; the message names the part and never contains the password.
    #[error("invalid MQTT broker URL: {0}")]
    InvalidUrl(String),
    /// A subscription filter breaks MQTT's wildcard rules (`#` only last, `+` a whole level).
    #[error("invalid MQTT topic filter {0:?}")]
    InvalidFilter(String),
    /// A topic to publish to is empty, contains a wildcard or a NUL, or is longer than 65,535 bytes.
    #[error("invalid MQTT topic {0:?}")]
    InvalidTopic(String),
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("MQTT payload of {size} bytes is larger than the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    /// Settings that cannot work (empty broker username, password without a username…).
    #[error("invalid MQTT settings: {0}")]
    InvalidConfig(String),
    /// The embedded broker cannot listen on `addr` (in use, no permission, no such address).
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The embedded broker's thread or runtime could not be started.
    #[error("cannot start the embedded MQTT broker: {0}")]
    BrokerStart(String),
    /// TLS for an `mqtts://` broker cannot be set up (no trusted root certificates, …).
    #[error("MQTT over TLS: {0}")]
    Tls(String),
    /// The client is between connections; nothing was queued.
    #[error("not connected to the MQTT broker")]
    NotConnected,
    /// The client's event loop has ended (the stop token was cancelled).
    #[error("the MQTT client has stopped")]
    Stopped,
}
