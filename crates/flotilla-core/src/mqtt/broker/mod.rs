//! The embedded MQTT 3.1.1 broker, run when the site has no broker of its own.
//!
//! It serves what ESP firmware and the engine need and nothing more: login with the site's user
//! name and password (compared in constant time) or with a device's own login ([`DeviceAccess`]:
//! such a client may publish and subscribe only under its own topics), keep-alive (a client silent
//! for 1.5 × its keep-alive is closed), Last Will, SUBSCRIBE/UNSUBSCRIBE with `+` and `#`,
//! QoS 0 and 1 out, with at most [`MAX_INFLIGHT`] unacknowledged QoS 1 messages per client (the
//! rest wait in its bounded queue; a packet id is never reused while unacknowledged); QoS 0, 1
//! and 2 in (a QoS 2 publish is delivered on receipt and answered PUBREC; a resend of the same
//! packet id before its PUBREL is acknowledged again, not delivered again: exactly once; a QoS 2
//! subscription is granted QoS 1), retained messages, clean sessions only (a client asking for a
//! persistent session gets a clean one, `session present` 0), and a client id taken over by a
//! newer connection closes the older one.
//!
//! A connection that breaks the protocol is closed at once with a reason in the log (rate-limited,
//! [`WARNINGS_PER_WINDOW`] per [`WARNING_WINDOW`]): bytes that do not start a CONNECT, a CONNECT
//! larger than [`MAX_CONNECT`], a payload above [`MAX_PAYLOAD`], an invalid topic filter (MQTT
//! 3.1.1 §4.7). At most [`MAX_UNAUTHENTICATED`] connections may wait for their CONNACK at once,
//! so strangers cost bounded memory.
//!
//! # Shape
//! - one tokio task per connection reads and routes; a second one writes what is queued for it;
//! - the router (subscriptions and retained messages, each a topic tree of
//!   `flotilla_parse::mqtt::topics`) sits behind one
//!   `std::sync::Mutex`, held only to match and queue, never across an `.await`;
//! - each connection's outbound queue is bounded ([`QUEUE_PACKETS`], [`QUEUE_BYTES`]): a client
//!   that does not read fast enough is disconnected, so a slow consumer never costs unbounded
//!   memory nor slows anyone else;
//! - a malformed packet closes its connection with a log line; nothing a client sends can panic
//!   the broker ([`packet`]);
//! - the engine itself is a local client ([`EmbeddedBroker::connect_local`]): a session like any
//!   other in the router, fed through a channel instead of a socket, so a device's message
//!   reaches the engine without being encoded, written, read back and acknowledged;
//! - [`EmbeddedBroker::stop`] cancels every task and waits for them: when it returns the port is
//!   free and every connection is closed. Everything runs on the caller's runtime.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A client connection's byte stream: TCP, or TLS over TCP ([`EmbeddedBroker::listen_tls`]).
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}
type OwnedReadHalf = tokio::io::ReadHalf<Box<dyn Stream>>;
type OwnedWriteHalf = tokio::io::WriteHalf<Box<dyn Stream>>;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{MAX_PAYLOAD, MqttError, PACKET_OVERHEAD};
use crate::log_limit::{WarnLimit, warn_limited};
use flotilla_parse::mqtt::packet::{self, Connect, Packet, connack};
use flotilla_parse::mqtt::topics::{ConnId, Message, Retained, Subscriptions, valid_filter, valid_topic};

/// Most clients connected at once (each costs a file descriptor: raise `ulimit -n` above it).
pub const MAX_CONNECTIONS: usize = 10_000;

/// Time a client has between opening the TCP connection and sending CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest CONNECT accepted (remaining length): a client id, a login and a small Last Will.
pub const MAX_CONNECT: usize = 16 * 1024;

/// Connections that have not been answered a CONNACK yet, at most (each holds at most
/// [`MAX_CONNECT`] bytes of buffer): 16 MiB in all.
pub const MAX_UNAUTHENTICATED: usize = 1024;

/// Unacknowledged QoS 1 messages per client, at most (mosquitto's `max_inflight_messages`).
pub const MAX_INFLIGHT: usize = 20;

/// Warnings about misbehaving connections logged per [`WARNING_WINDOW`], at most (the engine's
/// one rate limit of warnings, [`crate::log_limit`]).
pub use crate::log_limit::{WARNING_WINDOW, WARNINGS_PER_WINDOW};

/// Largest packet accepted (remaining length): the largest payload plus its topic and header.
const MAX_PACKET: usize = MAX_PAYLOAD + PACKET_OVERHEAD;

/// Packets queued for one connection before it counts as a slow consumer and is closed. The
/// engine's own connection receives every device's status: this is several seconds of a large
/// fleet's reports, and costs nothing until used.
const QUEUE_PACKETS: usize = 16_384;

/// Bytes of payload queued for one connection before it is closed as a slow consumer.
const QUEUE_BYTES: usize = 16 << 20;

/// Bytes written to the socket at once (several queued packets go out in one write).
const WRITE_CHUNK: usize = 64 * 1024;

/// Buffers grown past this by a large packet are given back once empty.
const KEEP_BUFFER: usize = 16 * 1024;

/// Settings of the embedded broker.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Where to listen; port 0 picks a free port (see [`EmbeddedBroker::local_addr`]).
    pub listen: SocketAddr,
    /// The site's user name: a client logged in with it may use every topic (the engine's tools,
    /// the technician's, vendor devices).
    pub username: String,
    /// Its password.
    pub password: String,
    /// Per-device logins and the topics such a login may use; `None`: the site login only.
    pub devices: Option<DeviceAccess>,
}

/// Checks a login that is not the site's.
pub trait DeviceLogins: Send + Sync + 'static {
    /// The id of the device `username`/`password` proves to be, or `None` (unknown, wrong
    /// password, revoked). Must compare in constant time.
    fn device(&self, username: &str, password: &[u8]) -> Option<String>;
}

/// Per-device logins and what they may do (like mosquitto's `pattern` ACLs, with `{id}` for the
/// device's id and `{owner}` for any one level).
#[derive(Clone)]
pub struct DeviceAccess {
    pub logins: Arc<dyn DeviceLogins>,
    /// Topic templates a device may publish to (its status, results, presence and Last Will).
    pub publish: Vec<String>,
    /// Topic templates a device may subscribe to (its commands). No wildcard but `+` for
    /// `{owner}`; `#` is never granted.
    pub subscribe: Vec<String>,
}

impl fmt::Debug for DeviceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAccess").field("publish", &self.publish).field("subscribe", &self.subscribe).finish()
    }
}

impl DeviceAccess {
    /// May device `id` publish to `topic`?
    fn may_publish(&self, id: &str, topic: &str) -> bool {
        self.publish.iter().any(|t| template_matches(t, id, topic, false))
    }

    /// May device `id` subscribe to `filter`?
    fn may_subscribe(&self, id: &str, filter: &str) -> bool {
        self.subscribe.iter().any(|t| template_matches(t, id, filter, true))
    }
}

/// Whether `topic` (a filter when `filter`) is `template` with `{id}` = `id` and `{owner}` any one
/// level (`+` too, in a filter). Any other wildcard does not match.
fn template_matches(template: &str, id: &str, topic: &str, filter: bool) -> bool {
    let mut t = template.split('/');
    let mut c = topic.split('/');
    loop {
        match (t.next(), c.next()) {
            (None, None) => return true,
            (Some(tp), Some(seg)) => {
                let ok = match tp {
                    "{id}" => seg == id,
                    "{owner}" => {
                        !seg.is_empty() && !seg.contains('#') && (!seg.contains('+') || (filter && seg == "+"))
                    }
                    lit => seg == lit,
                };
                if !ok {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Who a connection logged in as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// The site's login (or the engine itself): every topic.
    Site,
    /// A device's own login: its own topics only.
    Device(Arc<str>),
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("devices", &self.devices)
            .finish()
    }
}

/// A running embedded broker. [`EmbeddedBroker::stop`] stops it and waits until it has stopped;
/// dropping it stops it without waiting.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: CancellationToken,
    tracker: TaskTracker,
    state: Arc<State>,
}

impl EmbeddedBroker {
    /// Binds `config.listen` (port 0 allowed) and starts accepting on the current runtime. A bind
    /// error is returned as [`MqttError::Bind`] naming the address.
    pub async fn start(config: BrokerConfig) -> Result<EmbeddedBroker, MqttError> {
        if config.username.is_empty() || config.password.is_empty() {
            return Err(MqttError::InvalidConfig("the embedded broker needs a user name and a password".into()));
        }
        let bind_error = |source| MqttError::Bind { addr: config.listen, source };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let state = Arc::new(State {
            username: config.username,
            password: config.password,
            devices: config.devices,
            router: Mutex::new(Router::default()),
            next_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            unauthenticated: AtomicUsize::new(0),
            warnings: WarnLimit::new(),
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept(listener, Arc::clone(&state), stop.clone(), tracker.clone()));
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker { addr, stop, tracker, state })
    }

    /// The address the broker listens on (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Also listens for MQTT over TLS on `addr` (port 0 allowed) with `config` (the site
    /// certificate), until the broker stops; returns the bound address.
    pub async fn listen_tls(
        &self,
        addr: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<SocketAddr, MqttError> {
        let bind_error = |source| MqttError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        self.tracker.spawn(accept_with(
            listener,
            Some(acceptor),
            Arc::clone(&self.state),
            self.stop.clone(),
            self.tracker.clone(),
        ));
        tracing::info!(addr = %bound, "embedded MQTT broker listening for MQTT over TLS");
        Ok(bound)
    }

    /// Clients connected now.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Retained messages held now.
    pub fn retained(&self) -> usize {
        self.state.router.lock().map(|r| r.retained.len()).unwrap_or(0)
    }

    /// Connects a client inside this process: `filters` are subscribed (QoS 1) and matching
    /// messages, retained ones first, arrive through the returned [`LocalInbox`]; what the
    /// [`LocalClient`] publishes is routed as a client's publish would be. Nothing is encoded and
    /// no socket is used. The session counts as no connection and cannot be taken over by a
    /// network client with the same id. Invalid filters are refused.
    pub fn connect_local(&self, filters: &[String]) -> Result<(LocalClient, LocalInbox), MqttError> {
        if let Some(bad) = filters.iter().find(|f| !valid_filter(f)) {
            return Err(MqttError::InvalidFilter(bad.clone()));
        }
        let (id, rx, outbox) = local_session(&self.state, filters, self.stop.child_token());
        let client = LocalClient { state: Arc::clone(&self.state), stop: self.stop.clone() };
        let inbox = LocalInbox {
            state: Arc::clone(&self.state),
            stop: self.stop.clone(),
            filters: filters.to_vec(),
            id,
            rx,
            outbox,
        };
        Ok((client, inbox))
    }

    /// Stops accepting, closes every client connection and ends every task. When this returns
    /// the port is free.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!(addr = %self.addr, "embedded MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Publishes into the embedded broker from inside the process (see
/// [`EmbeddedBroker::connect_local`]). Cheap to clone.
#[derive(Clone)]
pub struct LocalClient {
    state: Arc<State>,
    stop: CancellationToken,
}

impl fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalClient").field("stopped", &self.stop.is_cancelled()).finish()
    }
}

impl LocalClient {
    /// Routes a QoS 1 message to every matching subscriber (and keeps it when `retain`), as a
    /// network client's publish would be. Refuses what a network client could not send.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>, retain: bool) -> Result<(), MqttError> {
        let payload: Bytes = payload.into();
        if !valid_topic(topic) || topic.contains('\0') {
            return Err(MqttError::InvalidTopic(topic.to_owned()));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(MqttError::PayloadTooLarge { size: payload.len(), limit: MAX_PAYLOAD });
        }
        if self.stop.is_cancelled() {
            return Err(MqttError::Stopped);
        }
        let message = Message { topic: topic.to_owned(), payload, qos: 1, from: None, device: None };
        self.state.publish(&Arc::new(message), 1, retain);
        Ok(())
    }
}

/// What a local client receives (see [`EmbeddedBroker::connect_local`]).
pub struct LocalInbox {
    state: Arc<State>,
    stop: CancellationToken,
    filters: Vec<String>,
    id: ConnId,
    rx: mpsc::Receiver<Out>,
    outbox: Outbox,
}

impl fmt::Debug for LocalInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalInbox").field("filters", &self.filters).finish_non_exhaustive()
    }
}

/// What reaches the engine's in-process session, in the order it happened.
#[derive(Debug)]
pub enum Delivery {
    /// A message on a subscribed topic.
    Message(super::Incoming),
    /// The session of this client id ended (DISCONNECT, a lost connection, a keep-alive
    /// timeout), and no newer connection took its id over: a device that set no Last Will has
    /// left all the same. Comes after the client's last messages and its will.
    SessionEnded(String),
}

impl LocalInbox {
    /// The next message or session end; `None` once the broker has stopped. A consumer too slow
    /// for its queue loses what was queued and is subscribed again (getting the retained messages
    /// anew), as a network client would after reconnecting.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            let item = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                item = self.rx.recv() => item,
                () = self.outbox.close.cancelled() => None,
            };
            match item {
                Some(Out::Publish { message, retain, .. }) => {
                    self.outbox.queued.fetch_sub(message.topic.len() + message.payload.len(), Ordering::Relaxed);
                    return Some(Delivery::Message(super::Incoming {
                        topic: message.topic.clone(),
                        payload: message.payload.clone(),
                        retained: retain,
                        client_id: message.from.as_deref().map(str::to_owned),
                        device: message.device.as_deref().map(str::to_owned),
                    }));
                }
                Some(Out::Ended(client)) => {
                    self.outbox.queued.fetch_sub(client.len(), Ordering::Relaxed);
                    return Some(Delivery::SessionEnded(client));
                }
                Some(Out::Packet(p)) => {
                    self.outbox.queued.fetch_sub(p.len(), Ordering::Relaxed);
                }
                None => {
                    if self.stop.is_cancelled() {
                        return None;
                    }
                    tracing::warn!("the engine fell behind its MQTT messages; some were dropped, subscribing again");
                    drop_session(&self.state, self.id);
                    let (id, rx, outbox) = local_session(&self.state, &self.filters, self.stop.child_token());
                    (self.id, self.rx, self.outbox) = (id, rx, outbox);
                }
            }
        }
    }
}

impl Drop for LocalInbox {
    fn drop(&mut self) {
        drop_session(&self.state, self.id);
    }
}

/// Registers a local session subscribed to `filters` (already checked) and queues the retained
/// messages they match.
fn local_session(state: &State, filters: &[String], close: CancellationToken) -> (ConnId, mpsc::Receiver<Out>, Outbox) {
    let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
    let outbox = Outbox { tx, close, queued: Arc::new(AtomicUsize::new(0)) };
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let mut r = state.router();
    let mut retained = Vec::new();
    for filter in filters {
        r.subscriptions.add(filter, id, 1);
        r.retained.matching(filter, &mut retained);
    }
    let session = Session {
        client_id: String::new(),
        principal: Principal::Site,
        outbox: outbox.clone(),
        filters: filters.iter().cloned().collect(),
    };
    r.sessions.insert(id, session);
    drop(r);
    for message in retained {
        outbox.push(Out::Publish { qos: message.qos, message, retain: true });
    }
    (id, rx, outbox)
}

/// Removes a session and its subscriptions from the router.
fn drop_session(state: &State, id: ConnId) {
    let mut r = state.router();
    if let Some(s) = r.sessions.remove(&id) {
        for f in &s.filters {
            r.subscriptions.remove(f, id);
        }
        if r.by_client.get(&s.client_id) == Some(&id) {
            r.by_client.remove(&s.client_id);
        }
        s.outbox.close.cancel();
    }
}

/// What the connections share.
struct State {
    username: String,
    password: String,
    devices: Option<DeviceAccess>,
    router: Mutex<Router>,
    next_id: AtomicU64,
    connections: AtomicUsize,
    /// Connections not answered a CONNACK yet.
    unauthenticated: AtomicUsize,
    warnings: WarnLimit,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").field("connections", &self.connections).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Router {
    subscriptions: Subscriptions,
    retained: Retained,
    sessions: HashMap<ConnId, Session>,
    by_client: HashMap<String, ConnId>,
    /// Reused by every publish (matching allocates nothing once it has grown).
    scratch: Vec<(ConnId, u8)>,
}

struct Session {
    client_id: String,
    principal: Principal,
    outbox: Outbox,
    filters: HashSet<String>,
}

/// What is queued for a connection's writer.
enum Out {
    /// A packet already encoded (acknowledgements, CONNACK, SUBACK, PINGRESP).
    Packet(Bytes),
    /// A message; its packet id is given by the writer.
    Publish { message: Arc<Message>, qos: u8, retain: bool },
    /// To local sessions only: the session of this client id ended. It is queued behind the
    /// client's last messages (and its will), so the engine learns of the end after them.
    Ended(String),
}

/// The sending side of a connection's bounded queue.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Out>,
    /// Closes the connection (both of its tasks).
    close: CancellationToken,
    /// Payload bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// Queues `out`; a connection whose queue is full is closed instead (a slow consumer).
    fn push(&self, out: Out) {
        let size = match &out {
            Out::Packet(b) => b.len(),
            Out::Publish { message, .. } => message.topic.len() + message.payload.len(),
            Out::Ended(client) => client.len(),
        };
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            self.slow();
            return;
        }
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.slow(),
            Err(mpsc::error::TrySendError::Closed(_)) => self.close.cancel(),
        }
    }

    fn slow(&self) {
        if !self.close.is_cancelled() {
            tracing::warn!("closing an MQTT connection that does not read what it is sent (slow consumer)");
            self.close.cancel();
        }
    }
}

impl State {
    fn router(&self) -> std::sync::MutexGuard<'_, Router> {
        // A panic while holding the lock cannot leave the tree half-changed in a way that
        // matters more than losing the broker: keep serving.
        self.router.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Delivers `message` to every matching subscriber, and keeps it when `retain`.
    fn publish(&self, message: &Arc<Message>, qos: u8, retain: bool) {
        let mut r = self.router();
        if retain {
            r.retained.set(Arc::clone(message));
        }
        let mut targets = std::mem::take(&mut r.scratch);
        targets.clear();
        r.subscriptions.matches(&message.topic, &mut targets);
        for (conn, granted) in targets.drain(..) {
            if let Some(s) = r.sessions.get(&conn) {
                s.outbox.push(Out::Publish { message: Arc::clone(message), qos: qos.min(granted), retain: false });
            }
        }
        r.scratch = targets;
    }
}

async fn accept(listener: TcpListener, state: Arc<State>, stop: CancellationToken, tracker: TaskTracker) {
    accept_with(listener, None, state, stop, tracker).await;
}

/// The accept loop, plain (`tls` `None`) or TLS: a TLS handshake must end within the CONNECT
/// timeout, then the connection is served as a plain one.
async fn accept_with(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                if state.connections.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    warn_limited!(state, %peer, max = MAX_CONNECTIONS, "MQTT connection refused: too many clients");
                    continue;
                }
                if state.unauthenticated.load(Ordering::Relaxed) >= MAX_UNAUTHENTICATED {
                    warn_limited!(state, %peer, max = MAX_UNAUTHENTICATED, "MQTT connection refused: too many connections waiting to log in");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let Some(acceptor) = &tls else {
                    tracker.spawn(connection(
                        Arc::clone(&state),
                        Box::new(stream),
                        peer,
                        stop.clone(),
                        tracker.clone(),
                    ));
                    continue;
                };
                let (acceptor, state, stop, inner) =
                    (acceptor.clone(), Arc::clone(&state), stop.clone(), tracker.clone());
                tracker.spawn(async move {
                    // Counted as waiting to log in while the handshake runs.
                    state.unauthenticated.fetch_add(1, Ordering::Relaxed);
                    let waiting = Counted(&state.unauthenticated);
                    let handshake = tokio::select! {
                        () = stop.cancelled() => return,
                        r = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)) => r,
                    };
                    drop(waiting);
                    match handshake {
                        Ok(Ok(tls)) => connection(state, Box::new(tls), peer, stop, inner).await,
                        Ok(Err(e)) => warn_limited!(state, %peer, error = %e, "MQTT TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "MQTT TLS connection closed: no handshake in time"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "embedded MQTT broker cannot accept a connection");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Counts a connection while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection's read loop ended.
enum End {
    /// DISCONNECT: the will is discarded.
    Graceful,
    /// Anything else (unless the broker stops): the will is published.
    Lost,
}

async fn connection(
    state: Arc<State>,
    stream: Box<dyn Stream>,
    peer: SocketAddr,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let close = stop.child_token();
    state.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(&state.connections);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::new();

    state.unauthenticated.fetch_add(1, Ordering::Relaxed);
    let unauthenticated = Counted(&state.unauthenticated);
    let first = tokio::select! {
        () = close.cancelled() => return,
        r = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut rd, &mut buf)) => r,
    };
    let connect = match first {
        Ok(Ok(Some(c))) => c,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn_limited!(state, %peer, error = %e, "MQTT connection closed before CONNECT");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "MQTT connection closed: no CONNECT in time");
            return;
        }
    };
    let admitted = admit(&state, &connect, peer, &mut wr).await;
    drop(unauthenticated);
    let Some((client_id, principal)) = admitted else { return };

    let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
    let outbox = Outbox { tx, close: close.clone(), queued: Arc::new(AtomicUsize::new(0)) };
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let admitted = {
        let mut r = state.router();
        // A device's session can be taken over only by the same device.
        let taken_by_other = r.by_client.get(&client_id).and_then(|old| r.sessions.get(old)).is_some_and(
            |s| matches!(&s.principal, Principal::Device(d) if principal != Principal::Device(Arc::clone(d))),
        );
        if !taken_by_other {
            if let Some(old) = r.by_client.insert(client_id.clone(), id)
                && let Some(s) = r.sessions.get(&old)
            {
                tracing::debug!(client = %client_id, "MQTT client id taken over by a new connection");
                s.outbox.close.cancel();
            }
            let session = Session {
                client_id: client_id.clone(),
                principal: principal.clone(),
                outbox: outbox.clone(),
                filters: HashSet::new(),
            };
            r.sessions.insert(id, session);
            outbox.push(Out::Packet(packet::connack(connack::ACCEPTED)));
        }
        !taken_by_other
    };
    if !admitted {
        warn_limited!(state, %peer, client = %client_id, "MQTT client refused: the client id is a device's, connected with its own login");
        let _ = wr.write_all(&packet::connack(connack::BAD_CLIENT_ID)).await;
        let _ = wr.shutdown().await;
        return;
    }
    let inflight = Arc::new(Inflight::default());
    tracker.spawn(writer(wr, rx, close.clone(), Arc::clone(&outbox.queued), Arc::clone(&inflight)));

    // 1.5 × keep-alive without a packet closes the connection (MQTT 3.1.1, 3.1.2.10).
    let silence = (connect.keep_alive > 0).then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let from: Arc<str> = Arc::from(client_id.as_str());
    let client = Client { id, from: Arc::clone(&from), principal, peer, inflight };
    let end = serve(&state, &client, &outbox, &mut rd, &mut buf, silence).await;

    drop_session(&state, id);
    let will = connect.will;
    close.cancel();
    if matches!(end, End::Lost)
        && !stop.is_cancelled()
        && let Some(w) = will
    {
        let message = Arc::new(Message {
            topic: w.topic,
            payload: w.payload,
            qos: w.qos.min(1),
            from: Some(Arc::clone(&from)),
            device: client.device(),
        });
        state.publish(&message, w.qos.min(1), w.retain);
    }
    // The session is over unless a newer connection took the client id over: the local
    // sessions (the engine) hear of it behind the client's messages and its will.
    if !stop.is_cancelled() {
        let r = state.router();
        if !r.by_client.contains_key(&client_id) {
            for s in r.sessions.values().filter(|s| s.client_id.is_empty()) {
                s.outbox.push(Out::Ended(client_id.clone()));
            }
        }
    }
}

/// Checks a CONNECT and answers a refusal; returns the client id to use and who logged in when
/// accepted.
async fn admit(state: &State, c: &Connect, peer: SocketAddr, wr: &mut OwnedWriteHalf) -> Option<(String, Principal)> {
    let refuse = |code: u8| async move {
        let _ = wr.write_all(&packet::connack(code)).await;
        let _ = wr.shutdown().await;
    };
    if !c.supported {
        warn_limited!(state, %peer, level = c.level, "MQTT client refused: protocol level not supported (MQTT 3.1.1, or 3.1 as MQIsdp)");
        refuse(connack::BAD_PROTOCOL).await;
        return None;
    }
    let principal = match (c.username.as_deref(), c.password.as_deref()) {
        (Some(user), Some(pass)) => {
            let site = user.as_bytes().ct_eq(state.username.as_bytes()) & pass.ct_eq(state.password.as_bytes());
            if bool::from(site) {
                Some(Principal::Site)
            } else {
                state.devices.as_ref().and_then(|d| d.logins.device(user, pass)).map(|id| Principal::Device(id.into()))
            }
        }
        _ => None,
    };
    let Some(principal) = principal else {
        warn_limited!(state, %peer, client = %c.client_id, "MQTT client refused: wrong user name or password");
        refuse(connack::BAD_LOGIN).await;
        return None;
    };
    if let Some(w) = &c.will
        && !valid_topic(&w.topic)
    {
        warn_limited!(state, %peer, "MQTT connection closed: the will's topic is not valid");
        return None;
    }
    if let (Principal::Device(device), Some(access)) = (&principal, &state.devices) {
        if let Some(w) = &c.will
            && !access.may_publish(device, &w.topic)
        {
            warn_limited!(state, %peer, device = %device, topic = %w.topic, "MQTT client refused: its Last Will is not on one of its own topics");
            refuse(connack::NOT_AUTHORIZED).await;
            return None;
        }
        // A device connects under its own id (or none, and is given it): it cannot take another
        // client's session over.
        if !c.client_id.is_empty() && c.client_id != **device {
            warn_limited!(state, %peer, device = %device, client = %c.client_id, "MQTT client refused: a device must use its own id as client id");
            refuse(connack::BAD_CLIENT_ID).await;
            return None;
        }
        return Some((device.to_string(), principal));
    }
    if c.client_id.is_empty() {
        if !c.clean_session {
            refuse(connack::BAD_CLIENT_ID).await;
            return None;
        }
        return Some((format!("auto-{}", state.next_id.fetch_add(1, Ordering::Relaxed)), principal));
    }
    Some((c.client_id.clone(), principal))
}

/// One accepted network connection, as its read loop knows it.
struct Client {
    id: ConnId,
    /// Its client id.
    from: Arc<str>,
    principal: Principal,
    peer: SocketAddr,
    /// Its unacknowledged QoS 1 messages (shared with its writer).
    inflight: Arc<Inflight>,
}

/// The packet ids of a connection's unacknowledged QoS 1 messages: the writer adds, PUBACKs
/// remove and wake the writer.
#[derive(Default)]
struct Inflight {
    ids: Mutex<HashSet<u16>>,
    acked: tokio::sync::Notify,
}

impl Inflight {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Client {
    /// The device id it proved with its login.
    fn device(&self) -> Option<Arc<str>> {
        match &self.principal {
            Principal::Site => None,
            Principal::Device(d) => Some(Arc::clone(d)),
        }
    }
}

/// Reads the first packet, which must be a CONNECT of at most [`MAX_CONNECT`] bytes: anything
/// else is refused as soon as its first byte (or its length) shows it, not after a timeout.
async fn read_connect(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Option<Box<Connect>>, String> {
    loop {
        if let Some(&first) = buf.first()
            && first != 0x10
        {
            return Err(format!("the first bytes are not an MQTT CONNECT (first byte {first:#04x})"));
        }
        match packet::decode(buf, MAX_CONNECT) {
            Ok(Some(Packet::Connect(c))) => return Ok(Some(c)),
            Ok(Some(_)) => return Err("the first packet is not CONNECT".into()),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed CONNECT: {e}")),
        }
        buf.reserve(1024);
        match rd.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads until one whole packet is buffered: `Ok(None)` when the peer closed the connection.
async fn read_packet(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Option<Packet>, String> {
    loop {
        match packet::decode(buf, MAX_PACKET) {
            Ok(Some(p)) => {
                if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
                    *buf = BytesMut::new();
                }
                return Ok(Some(p));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
        buf.reserve(1024);
        match rd.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            // A TLS client that closed its socket without close_notify (most devices losing
            // power or Wi-Fi do) has simply gone, as a plain TCP client whose socket closed.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The read loop of an accepted connection.
async fn serve(
    state: &State,
    me: &Client,
    outbox: &Outbox,
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    silence: Option<Duration>,
) -> End {
    let (id, peer, client): (ConnId, SocketAddr, &str) = (me.id, me.peer, &me.from);
    // QoS 2 packet ids received and not yet released (PUBREL): a resend is not delivered again.
    let mut qos2: HashSet<u16> = HashSet::new();
    // What a device login may do; `None` for the site's login.
    let acl = match (&me.principal, &state.devices) {
        (Principal::Device(d), Some(access)) => Some((d.as_ref(), access)),
        _ => None,
    };
    let mut denied: u64 = 0;
    loop {
        let read = async {
            match silence {
                Some(t) => tokio::time::timeout(t, read_packet(rd, buf)).await.ok(),
                None => Some(read_packet(rd, buf).await),
            }
        };
        let packet = tokio::select! {
            () = outbox.close.cancelled() => return End::Lost,
            r = read => r,
        };
        let packet = match packet {
            None => {
                tracing::debug!(%peer, client, "MQTT client silent past its keep-alive; closed");
                return End::Lost;
            }
            Some(Ok(Some(p))) => p,
            Some(Ok(None)) => return End::Lost,
            Some(Err(e)) => {
                warn_limited!(state, %peer, client, error = %e, "MQTT connection closed");
                return End::Lost;
            }
        };
        match packet {
            Packet::Publish(p) => {
                if !valid_topic(&p.topic) {
                    warn_limited!(state, %peer, client, topic = %p.topic, "MQTT connection closed: publish to an invalid topic");
                    return End::Lost;
                }
                if p.payload.len() > MAX_PAYLOAD {
                    warn_limited!(state, %peer, client, topic = %p.topic, size = p.payload.len(), limit = MAX_PAYLOAD, "MQTT connection closed: publish payload larger than the limit");
                    return End::Lost;
                }
                if p.qos == 2 && !qos2.insert(p.packet_id) {
                    // A resend before PUBREL: already delivered once.
                    outbox.push(Out::Packet(packet::ack(5, p.packet_id)));
                    continue;
                }
                let qos = p.qos.min(1);
                if let Some((device, access)) = acl
                    && !access.may_publish(device, &p.topic)
                {
                    // As mosquitto does: acknowledged (MQTT 3.1.1 cannot refuse a publish), not
                    // delivered, and logged (the first, then every 100th).
                    denied += 1;
                    if denied == 1 || denied.is_multiple_of(100) {
                        tracing::warn!(%peer, device, topic = %p.topic, denied, "MQTT publish dropped: not one of the device's own topics");
                    }
                } else {
                    let message = Message {
                        topic: p.topic,
                        payload: p.payload,
                        qos,
                        from: Some(Arc::clone(&me.from)),
                        device: me.device(),
                    };
                    state.publish(&Arc::new(message), qos, p.retain);
                }
                match p.qos {
                    1 => outbox.push(Out::Packet(packet::ack(4, p.packet_id))),
                    2 => outbox.push(Out::Packet(packet::ack(5, p.packet_id))),
                    _ => {}
                }
            }
            Packet::PubRel(pid) => {
                qos2.remove(&pid);
                outbox.push(Out::Packet(packet::ack(7, pid)));
            }
            Packet::PubAck(pid) => {
                if me.inflight.ids().remove(&pid) {
                    me.inflight.acked.notify_one();
                }
            }
            // The broker sends no QoS 2 message (QoS 2 subscriptions are granted QoS 1).
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::Subscribe { packet_id, filters } => {
                let mut r = state.router();
                let mut granted = Vec::with_capacity(filters.len());
                let mut retained = Vec::new();
                if let Some((bad, _)) = filters.iter().find(|(f, _)| !valid_filter(f)) {
                    drop(r);
                    warn_limited!(state, %peer, client, filter = %bad, "MQTT connection closed: SUBSCRIBE with an invalid topic filter");
                    return End::Lost;
                }
                for (filter, qos) in filters {
                    if let Some((device, access)) = acl
                        && !access.may_subscribe(device, &filter)
                    {
                        tracing::warn!(%peer, device, %filter, "MQTT subscription refused: not one of the device's own topics");
                        granted.push(0x80);
                        continue;
                    }
                    let qos = qos.min(1);
                    granted.push(qos);
                    r.subscriptions.add(&filter, id, qos);
                    let mut found = Vec::new();
                    r.retained.matching(&filter, &mut found);
                    retained.extend(found.into_iter().map(|m| (m, qos)));
                    if let Some(s) = r.sessions.get_mut(&id) {
                        s.filters.insert(filter);
                    }
                }
                outbox.push(Out::Packet(packet::suback(packet_id, &granted)));
                drop(r);
                for (message, qos) in retained {
                    outbox.push(Out::Publish { qos: qos.min(message.qos), message, retain: true });
                }
            }
            Packet::Unsubscribe { packet_id, filters } => {
                if let Some(bad) = filters.iter().find(|f| !valid_filter(f)) {
                    warn_limited!(state, %peer, client, filter = %bad, "MQTT connection closed: UNSUBSCRIBE with an invalid topic filter");
                    return End::Lost;
                }
                let mut r = state.router();
                for f in &filters {
                    r.subscriptions.remove(f, id);
                    if let Some(s) = r.sessions.get_mut(&id) {
                        s.filters.remove(f);
                    }
                }
                outbox.push(Out::Packet(packet::ack(11, packet_id)));
            }
            Packet::PingReq => outbox.push(Out::Packet(packet::pingresp())),
            Packet::Disconnect => return End::Graceful,
            Packet::Connect(_) => {
                warn_limited!(state, %peer, client, "MQTT connection closed: a second CONNECT");
                return End::Lost;
            }
        }
    }
}

/// The write side of a connection: encodes what is queued and writes it, several packets per
/// write when they are ready together. QoS 1 messages beyond [`MAX_INFLIGHT`] unacknowledged
/// ones wait (with every message behind them, to keep the order) until PUBACKs make room; more
/// than [`QUEUE_PACKETS`] waiting closes the connection as a slow consumer.
async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    close: CancellationToken,
    queued: Arc<AtomicUsize>,
    inflight: Arc<Inflight>,
) {
    let mut out = BytesMut::new();
    let mut last_id: u16 = 0;
    let mut held: std::collections::VecDeque<Out> = std::collections::VecDeque::new();
    // Encodes `item`, or holds it while the window is full (or others wait before it).
    let mut take = |item: Out, out: &mut BytesMut, held: &mut std::collections::VecDeque<Out>| match item {
        Out::Packet(p) => {
            queued.fetch_sub(p.len(), Ordering::Relaxed);
            out.extend_from_slice(&p);
        }
        Out::Publish { message, qos, retain } => {
            let packet_id = if qos > 0 {
                let mut ids = inflight.ids();
                if !held.is_empty() || ids.len() >= MAX_INFLIGHT {
                    drop(ids);
                    held.push_back(Out::Publish { message, qos, retain });
                    return;
                }
                // The next id not in flight (at most MAX_INFLIGHT are).
                loop {
                    last_id = last_id.checked_add(1).unwrap_or(1);
                    if ids.insert(last_id) {
                        break last_id;
                    }
                }
            } else if !held.is_empty() {
                held.push_back(Out::Publish { message, qos, retain });
                return;
            } else {
                0
            };
            packet::publish_header(out, &message.topic, qos, retain, packet_id, message.payload.len());
            out.extend_from_slice(&message.payload);
            queued.fetch_sub(message.topic.len() + message.payload.len(), Ordering::Relaxed);
        }
        // Never queued for a network connection.
        Out::Ended(client) => {
            queued.fetch_sub(client.len(), Ordering::Relaxed);
        }
    };
    loop {
        tokio::select! {
            biased;
            () = close.cancelled() => break,
            // PUBACKs made room: send what waited, in order, as far as the window allows.
            () = inflight.acked.notified(), if !held.is_empty() => {
                for item in std::mem::take(&mut held) {
                    take(item, &mut out, &mut held);
                }
            }
            item = rx.recv() => match item {
                Some(item) => take(item, &mut out, &mut held),
                None => break,
            },
        }
        while out.len() < WRITE_CHUNK {
            match rx.try_recv() {
                Ok(item) => take(item, &mut out, &mut held),
                Err(_) => break,
            }
        }
        if held.len() > QUEUE_PACKETS {
            tracing::warn!(
                held = held.len(),
                "closing an MQTT connection that does not acknowledge what it is sent (slow consumer)"
            );
            close.cancel();
            break;
        }
        if out.is_empty() {
            continue;
        }
        let written = tokio::select! {
            () = close.cancelled() => break,
            w = wr.write_all(&out) => w,
        };
        if written.is_err() {
            close.cancel();
            break;
        }
        out.clear();
        if out.capacity() > KEEP_BUFFER {
            out = BytesMut::new();
        }
    }
}
