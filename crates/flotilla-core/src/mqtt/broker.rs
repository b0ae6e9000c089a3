//! The embedded MQTT broker (rumqttd), run when the site has no broker of its own.
//!
//! rumqttd's `Broker::start` blocks forever, spawns threads it never joins and reports a bind
//! error only in a log line, so it is not used. The broker is put together from rumqttd's parts:
//!
//! - **Listener**: `rumqttd::Server` runs on a current-thread tokio runtime on a thread of ours
//!   (`mqtt-broker`). [`EmbeddedBroker::stop`] ends that runtime — the listener and every client
//!   connection are closed — and joins the thread, so when `stop` returns the port is free.
//! - **Bind errors**: the address is bound here first (which also picks the port when port 0 is
//!   asked for), so the usual errors come back as [`MqttError::Bind`] before anything starts.
//!   `Server` then binds the address itself on its first poll; that first poll is observed
//!   (`Ready(Err)` means it could not bind, `Pending` means it is accepting), so a bind that fails
//!   there — another process took a port-0 port in between — is returned too, and retried.
//! - **Router**: `rumqttd::Router` runs on a thread rumqttd spawns and **cannot be stopped**: it
//!   waits on a channel of which it holds a sender itself, and rumqttd 0.20 has no shutdown
//!   (rumqtt issue #771). After `stop` it stays parked — no CPU, no socket — holding the state of
//!   the old connections until the process exits. That is one idle thread per broker started;
//!   the engine starts one per run.
//!
//! Only MQTT 3.1.1 is served (what ESP firmware speaks). Every client must log in with the one
//! configured user name and password; rumqttd closes the connection of a client that does not,
//! without a CONNACK.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::task::Poll;
use std::thread::JoinHandle;

use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::sync::oneshot;

use super::{MAX_PAYLOAD, MqttError, PACKET_OVERHEAD};

/// Most clients connected at once (each costs a file descriptor: raise `ulimit -n` above it).
pub const MAX_CONNECTIONS: usize = 10_000;

/// Each subscription filter keeps the messages that matched it in memory, in segments of this
/// size; when the newest is full and there are [`SEGMENT_COUNT`], the oldest is dropped. A
/// subscriber that falls further behind loses the oldest messages, so this bounds both the memory
/// of a filter (about 2 MiB once it has seen that much traffic; the engine subscribes to a few
/// wildcard filters, each device to its own command topic, which sees little) and how far the
/// engine may lag behind a burst (over 5,000 reports of 300 bytes).
const SEGMENT_SIZE: usize = 512 * 1024;
const SEGMENT_COUNT: usize = 4;

/// Time a client has between opening the TCP connection and sending CONNECT.
const CONNECT_TIMEOUT_MS: u16 = 10_000;

/// Packets read from one connection per batch, and QoS 1 messages in flight per connection.
const MAX_INFLIGHT: usize = 100;

/// Pause between two accepted connections (rumqttd's throttle). None: after a broker restart the
/// whole fleet reconnects at once, and any pause here only lets the listen backlog overflow.
const ACCEPT_DELAY_MS: u64 = 0;

/// How often a port-0 bind is retried when another process takes the port first.
const BIND_RETRIES: usize = 3;

/// Settings of the embedded broker.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Where to listen; port 0 picks a free port (see [`EmbeddedBroker::local_addr`]).
    pub listen: SocketAddr,
    /// The one user name every client must log in with.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A running embedded broker. [`EmbeddedBroker::stop`] stops it and waits until it has stopped;
/// dropping it stops it without waiting.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Binds `config.listen` (port 0 allowed) and starts accepting. A bind error is returned as
    /// [`MqttError::Bind`] naming the address.
    pub async fn start(config: BrokerConfig) -> Result<EmbeddedBroker, MqttError> {
        if config.username.is_empty() || config.password.is_empty() {
            return Err(MqttError::InvalidConfig("the embedded broker needs a user name and a password".into()));
        }
        let mut addr = reserve(config.listen)?;
        let make_server = spawn_router()?;
        let mut retries = 0;
        loop {
            match serve(addr, make_server(server_settings(addr, &config))).await {
                Err(MqttError::Bind { source, .. })
                    if config.listen.port() == 0
                        && source.kind() == std::io::ErrorKind::AddrInUse
                        && retries < BIND_RETRIES =>
                {
                    retries += 1;
                    addr = reserve(config.listen)?;
                }
                result => return result,
            }
        }
    }

    /// The address the broker listens on (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every client connection and ends the listener thread. When this
    /// returns the port is free. The router thread stays parked (see the module doc).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            join(thread).await;
        }
        tracing::info!(addr = %self.addr, "embedded MQTT broker stopped");
    }
}

/// Binds `listen` once to check that it can be bound and to learn the port, then frees it.
fn reserve(listen: SocketAddr) -> Result<SocketAddr, MqttError> {
    let bind_error = |source| MqttError::Bind { addr: listen, source };
    let probe = std::net::TcpListener::bind(listen).map_err(bind_error)?;
    probe.local_addr().map_err(bind_error)
}

fn router_config() -> RouterConfig {
    RouterConfig {
        max_connections: MAX_CONNECTIONS,
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_SIZE,
        max_segment_count: SEGMENT_COUNT,
        ..RouterConfig::default()
    }
}

/// Starts rumqttd's router thread. Returns a maker of listeners connected to it (the router's
/// channel type is not exported by rumqttd, so it stays inside the closure).
fn spawn_router() -> Result<impl Fn(ServerSettings) -> Server<V4> + Send + 'static, MqttError> {
    let router = Router::new(0, router_config());
    // `Router::spawn` unwraps the thread spawn; failing to start a thread must be an error here.
    let router_tx = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| router.spawn()))
        .map_err(|_| MqttError::BrokerStart("cannot start the router thread".into()))?;
    Ok(move |settings| Server::new(settings, router_tx.clone(), V4))
}

fn server_settings(addr: SocketAddr, config: &BrokerConfig) -> ServerSettings {
    ServerSettings {
        name: "flotilla-mqtt".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: ACCEPT_DELAY_MS,
        connections: ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT_MS,
            max_payload_size: MAX_PAYLOAD + PACKET_OVERHEAD,
            max_inflight_count: MAX_INFLIGHT,
            auth: Some(HashMap::from([(config.username.clone(), config.password.clone())])),
            external_auth: None,
            // With `false`, rumqttd may disconnect a client that publishes to a topic nobody
            // has subscribed to yet (a device announcing itself before the engine subscribed).
            dynamic_filters: true,
        },
    }
}

/// Starts `server` on its own thread and runtime; returns once it accepts connections, or with
/// the reason it cannot.
async fn serve(addr: SocketAddr, server: Server<V4>) -> Result<EmbeddedBroker, MqttError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || run_server(addr, server, ready_tx, stop_rx))
        .map_err(|e| MqttError::BrokerStart(format!("cannot start its thread: {e}")))?;
    match ready_rx.await {
        Ok(Ok(())) => {
            tracing::info!(%addr, "embedded MQTT broker listening");
            Ok(EmbeddedBroker { addr, stop: Some(stop_tx), thread: Some(thread) })
        }
        Ok(Err(e)) => {
            join(thread).await;
            Err(e)
        }
        Err(_) => {
            join(thread).await;
            Err(MqttError::BrokerStart("its thread ended before listening".into()))
        }
    }
}

/// The body of the `mqtt-broker` thread.
fn run_server(
    addr: SocketAddr,
    mut server: Server<V4>,
    ready: oneshot::Sender<Result<(), MqttError>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(MqttError::BrokerStart(format!("cannot build its runtime: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        let mut serving = std::pin::pin!(server.start(LinkType::Remote));
        // `Server::start` binds before its first await that can wait, so the first poll tells
        // whether it listens (Pending: waiting for a connection) or could not bind (Ready(Err)).
        let first = std::future::poll_fn(|cx| Poll::Ready(serving.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            let source = match &result {
                Err(e) => io_error_of(e),
                Ok(()) => std::io::Error::other("the listener ended at once"),
            };
            let _ = ready.send(Err(MqttError::Bind { addr, source }));
            return;
        }
        if ready.send(Ok(())).is_err() {
            return; // `start` was abandoned; nobody can stop us later
        }
        let mut stop = stop;
        let ended = tokio::select! {
            result = &mut serving => Some(result),
            _ = &mut stop => None,
        };
        if let Some(result) = ended {
            if let Err(e) = result {
                tracing::error!(%addr, error = %e, "embedded MQTT broker stopped accepting connections");
            }
            // Keep serving the connections already open until told to stop.
            let _ = stop.await;
        }
    });
    // Dropping the runtime drops every connection task: their sockets close now, not later.
    drop(runtime);
}

/// The I/O error inside a rumqttd server error (its error type is not exported; its `Io` variant
/// is the error's source), or the error's text.
fn io_error_of(e: &(dyn std::error::Error + 'static)) -> std::io::Error {
    match e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        Some(io) => std::io::Error::new(io.kind(), io.to_string()),
        None => std::io::Error::other(e.to_string()),
    }
}

/// Waits (off the async threads) until `thread` has ended.
async fn join(thread: JoinHandle<()>) {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(())) => {}
        _ => tracing::warn!("the embedded MQTT broker thread panicked"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Guards the readiness check against a rumqttd upgrade: when `Server` itself cannot bind,
    /// its first poll must say so (and not log it and leave `start` waiting).
    #[tokio::test]
    async fn a_bind_error_of_the_listener_itself_is_returned() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let config = BrokerConfig { listen: addr, username: "u".into(), password: "p".into() };
        let make_server = spawn_router().unwrap();
        let err = serve(addr, make_server(server_settings(addr, &config))).await.unwrap_err();
        assert!(
            matches!(&err, MqttError::Bind { addr: a, source } if *a == addr && source.kind() == std::io::ErrorKind::AddrInUse),
            "{err:?}"
        );
    }
}
