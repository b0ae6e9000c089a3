//! The engine's one MQTT connection: rumqttc's event loop polled in a task of its own, which
//! reconnects with backoff (0.5 s doubling to 10 s) and subscribes again after every connect.
//!
//! # Delivery
//! - **Incoming** (QoS 1): rumqttc acknowledges a message to the broker as soon as it has read it,
//!   before the engine has seen it, so dropping a message afterwards would lose it for good. When
//!   the incoming channel is full the event loop therefore *waits* for room instead. While it
//!   waits it neither reads nor pings; a broker closes a connection silent for 1.5 × keep-alive
//!   (here 22 s), and the client then reconnects. An engine that stalls costs a reconnect, never a
//!   message dropped here. The session is clean: what devices publish while the client is
//!   disconnected is not queued for it, except retained messages, which come again with every
//!   subscribe.
//! - **Outgoing** (QoS 1): [`MqttClient::publish`] refuses with [`MqttError::NotConnected`]
//!   between connections, so nothing piles up and the caller decides when to try again. A message
//!   it accepted is delivered at least once: if the connection drops before the broker
//!   acknowledged it, it is sent again after the reconnect (rumqttc alone would drop it, since a
//!   clean session starts empty).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Disconnect, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request, Subscribe,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::url::{BrokerUrl, parse_url};
use super::{MAX_PAYLOAD, MqttError, PACKET_OVERHEAD};

/// Messages the engine has not taken yet before the event loop waits (see the module doc).
pub const INCOMING_CAPACITY: usize = 4096;

/// Publishes queued for the event loop before [`MqttClient::publish`] waits.
const REQUEST_CAPACITY: usize = 1024;

/// QoS 1 publishes sent and not yet acknowledged.
const INFLIGHT: u16 = 100;

/// Ping interval when idle; a dead broker is noticed within two of these.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Largest packet accepted from the broker. Bigger than anything the engine publishes, so a
/// device's oversized retained message does not get the engine disconnected on every subscribe.
const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// First and longest wait between two connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A connection that lasted this long starts the backoff over when it drops; one that drops
/// sooner (a broker that accepts and then closes) keeps backing off.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How long the client tries to say goodbye (DISCONNECT) when stopped.
const GOODBYE: Duration = Duration::from_secs(1);

/// Where and how to connect.
#[derive(Clone)]
pub struct MqttConfig {
    /// `mqtt://[user:pass@]host[:port]` or `mqtts://…` (see [`parse_url`]).
    pub url: String,
    /// User name; overrides one given in the URL.
    pub username: Option<String>,
    /// Password; overrides one given in the URL.
    pub password: Option<String>,
    /// The client id; unique per broker (a second client with the same id disconnects the first).
    pub client_id: String,
    /// Topic filters subscribed with QoS 1 after every connect.
    pub subscriptions: Vec<String>,
    /// How an `mqtts://` broker is trusted (CA file, pinned fingerprint, system roots) and the
    /// client's own certificate.
    pub tls: crate::tls::ClientTls,
}

impl MqttConfig {
    /// A config without credentials or subscriptions.
    pub fn new(url: impl Into<String>, client_id: impl Into<String>) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            username: None,
            password: None,
            client_id: client_id.into(),
            tls: crate::tls::ClientTls::default(),
            subscriptions: Vec::new(),
        }
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = parse_url(&self.url).map(|u| u.to_string()).unwrap_or_else(|_| "<invalid>".into());
        f.debug_struct("MqttConfig")
            .field("url", &url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_id", &self.client_id)
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

/// A message received on one of the subscriptions. The payload is passed through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub topic: String,
    pub payload: Bytes,
    /// Sent because it was retained (on subscribing), not published just now.
    pub retained: bool,
    /// Who published it, when the broker can tell (the embedded broker: the client id of the
    /// publishing session; a site's broker does not say).
    pub client_id: Option<String>,
    /// The device the publisher proved to be with its own login (the embedded broker with
    /// per-device logins); `None` for the site's login and for a site's broker.
    pub device: Option<String>,
}

/// A handle to the connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct MqttClient {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl MqttClient {
    /// Checks `config` and spawns the event loop on `tracker`; it connects in the background and
    /// ends when `stop` is cancelled or the returned receiver is dropped. Must be called inside a
    /// tokio runtime.
    pub fn start(
        config: MqttConfig,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(MqttClient, mpsc::Receiver<Incoming>), MqttError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| MqttError::InvalidConfig("the MQTT client must be started inside a tokio runtime".into()))?;
        let url = parse_url(&config.url)?;
        if config.client_id.is_empty() {
            return Err(MqttError::InvalidConfig("the MQTT client id is empty".into()));
        }
        for filter in &config.subscriptions {
            if !rumqttc::valid_filter(filter) || filter.contains('\0') || filter.len() > usize::from(u16::MAX) {
                return Err(MqttError::InvalidFilter(filter.clone()));
            }
        }
        let options = options(&url, &config)?;
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_CAPACITY);
        let (connected_tx, connected_rx) = watch::channel(false);
        let subscribe = (!config.subscriptions.is_empty()).then(|| {
            Subscribe::new_many(config.subscriptions.into_iter().map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce)))
        });
        let link = Link {
            eventloop,
            subscribe,
            incoming: incoming_tx,
            connected: connected_tx,
            stop: stop.clone(),
            broker: url.to_string(),
        };
        tracker.spawn_on(link.run(), &runtime);
        Ok((MqttClient { client, connected: connected_rx, stop }, incoming_rx))
    }

    /// Publishes with QoS 1. Returns once the message is queued for sending (waiting while the
    /// queue is full); delivery is at least once from then on (see the module doc).
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>, retain: bool) -> Result<(), MqttError> {
        let payload: Bytes = payload.into();
        if topic.is_empty()
            || !rumqttc::valid_topic(topic)
            || topic.contains('\0')
            || topic.len() > usize::from(u16::MAX)
        {
            return Err(MqttError::InvalidTopic(topic.to_owned()));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(MqttError::PayloadTooLarge { size: payload.len(), limit: MAX_PAYLOAD });
        }
        // The event loop holds the sender of `connected`: an error means it has ended.
        if self.stop.is_cancelled() || self.connected.has_changed().is_err() {
            return Err(MqttError::Stopped);
        }
        if !*self.connected.borrow() {
            return Err(MqttError::NotConnected);
        }
        tokio::select! {
            sent = self.client.publish(topic, QoS::AtLeastOnce, retain, payload) => sent.map_err(|_| MqttError::Stopped),
            () = self.stop.cancelled() => Err(MqttError::Stopped),
        }
    }

    /// Whether the client is connected — and, when it has subscriptions, subscribed: what is
    /// published from then on reaches it — now and at every change (the UI's "broker connected").
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }
}

/// rumqttc options for `url`, with the credentials of `config` winning over those of the URL.
fn options(url: &BrokerUrl, config: &MqttConfig) -> Result<MqttOptions, MqttError> {
    let username = config.username.clone().or_else(|| url.username.clone());
    let password = config.password.clone().or_else(|| url.password.clone());
    // rumqttc joins host and port with a `:` to resolve them, so an IPv6 address needs brackets.
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let mut options = MqttOptions::new(config.client_id.clone(), host, url.port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_inflight(INFLIGHT)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_PAYLOAD + PACKET_OVERHEAD);
    match (username, password) {
        (Some(user), password) if !user.is_empty() => {
            options.set_credentials(user, password.unwrap_or_default());
        }
        (_, Some(_)) => return Err(MqttError::InvalidConfig("an MQTT password needs a user name".into())),
        _ => {}
    }
    if url.tls {
        options.set_transport(tls_transport(&config.tls)?);
    } else if config.tls.is_set() {
        return Err(MqttError::InvalidConfig(
            "a CA file, pin or client certificate was given for a broker that is not mqtts://".into(),
        ));
    }
    Ok(options)
}

/// TLS with rustls and ring (the workspace's one TLS stack): the broker is trusted by its pinned
/// fingerprint, else by the CA file, else by the system's root certificates
/// ([`crate::tls::ClientTls::client_config`]).
fn tls_transport(tls: &crate::tls::ClientTls) -> Result<Transport, MqttError> {
    let config = tls.client_config().map_err(MqttError::Tls)?;
    Ok(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))))
}

/// Wait before the next connection attempt: doubles from [`BACKOFF_MIN`] up to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

/// A request worth sending again on a new connection: publishes, with a fresh packet id.
fn for_replay(request: Request) -> Option<Request> {
    match request {
        Request::Publish(mut publish) => {
            publish.pkid = 0;
            publish.dup = false;
            Some(Request::Publish(publish))
        }
        // Subscriptions are made again on every connect; acks and pings belong to the old one.
        _ => None,
    }
}

/// A short, password-free description of a connection error.
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        ConnectionError::NetworkTimeout => "no answer from the broker".into(),
        ConnectionError::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The event loop task's state.
struct Link {
    eventloop: EventLoop,
    subscribe: Option<Subscribe>,
    incoming: mpsc::Sender<Incoming>,
    connected: watch::Sender<bool>,
    stop: CancellationToken,
    /// The broker URL without password, for logs.
    broker: String,
}

impl Link {
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        let mut replay: VecDeque<Request> = VecDeque::new();
        let mut connected_at: Option<Instant> = None;
        let mut last_error: Option<String> = None;
        loop {
            let polled = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = self.incoming.closed() => break,
                polled = self.eventloop.poll() => polled,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected_at = Some(Instant::now());
                    last_error = None;
                    // Subscribe first, then send what the last connection left unacknowledged.
                    if let Some(subscribe) = &self.subscribe {
                        self.eventloop.pending.push_front(Request::Subscribe(subscribe.clone()));
                    }
                    self.eventloop.pending.extend(replay.drain(..));
                    if self.subscribe.is_none() {
                        self.connected.send_replace(true);
                    }
                    tracing::info!(broker = %self.broker, "connected to the MQTT broker");
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let message = Incoming {
                        topic: publish.topic,
                        payload: publish.payload,
                        retained: publish.retain,
                        client_id: None,
                        device: None,
                    };
                    let delivered = tokio::select! {
                        biased;
                        () = self.stop.cancelled() => false,
                        sent = self.incoming.send(message) => sent.is_ok(),
                    };
                    if !delivered {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    self.check_suback(&ack.return_codes);
                    // Ready once subscribed: what is published from now on reaches us.
                    self.connected.send_replace(true);
                }
                Ok(_) => {}
                Err(e) => {
                    // rumqttc has moved what was unacknowledged or still queued to `pending`, and
                    // would drop it on the next connect (a clean session starts empty).
                    replay.extend(self.eventloop.pending.drain(..).filter_map(for_replay));
                    let was_connected = self.connected.send_replace(false);
                    if connected_at.take().is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                        backoff.reset();
                    }
                    let error = describe(&e);
                    if was_connected {
                        tracing::warn!(broker = %self.broker, %error, "lost the MQTT connection; reconnecting");
                    } else if last_error.as_ref() != Some(&error) {
                        tracing::warn!(broker = %self.broker, %error, "cannot connect to the MQTT broker; retrying");
                    } else {
                        tracing::debug!(broker = %self.broker, %error, "cannot connect to the MQTT broker; retrying");
                    }
                    last_error = Some(error);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        biased;
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if connected_at.is_some() {
            self.goodbye().await;
        }
        self.connected.send_replace(false);
        tracing::debug!(broker = %self.broker, "MQTT client stopped");
    }

    /// Sends DISCONNECT so the broker knows the client left on purpose; bounded by [`GOODBYE`].
    async fn goodbye(&mut self) {
        self.eventloop.pending.push_front(Request::Disconnect(Disconnect));
        let _ = tokio::time::timeout(GOODBYE, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }

    fn check_suback(&self, codes: &[SubscribeReasonCode]) {
        let Some(subscribe) = &self.subscribe else { return };
        for (filter, code) in subscribe.filters.iter().zip(codes) {
            if matches!(code, SubscribeReasonCode::Failure) {
                tracing::warn!(broker = %self.broker, filter = %filter.path, "the MQTT broker refused a subscription");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }

    #[test]
    fn only_publishes_are_replayed_with_a_fresh_packet_id() {
        let mut publish = rumqttc::Publish::new("a/b", QoS::AtLeastOnce, b"x".to_vec());
        publish.pkid = 7;
        publish.dup = true;
        let Some(Request::Publish(p)) = for_replay(Request::Publish(publish)) else { panic!("publish dropped") };
        assert_eq!((p.pkid, p.dup, p.topic.as_str()), (0, false, "a/b"));
        assert!(for_replay(Request::PingReq(rumqttc::PingReq)).is_none());
        assert!(for_replay(Request::PubAck(rumqttc::PubAck::new(3))).is_none());
    }

    #[test]
    fn credentials_from_the_config_win_and_a_lone_password_is_refused() {
        let url = parse_url("mqtt://urluser:urlpass@host").unwrap();
        let mut config = MqttConfig::new("mqtt://host", "c");
        let o = options(&url, &config).unwrap();
        assert_eq!(o.credentials().map(|l| (l.username, l.password)), Some(("urluser".into(), "urlpass".into())));
        config.username = Some("u".into());
        config.password = Some("p".into());
        let o = options(&url, &config).unwrap();
        assert_eq!(o.credentials().map(|l| (l.username, l.password)), Some(("u".into(), "p".into())));
        let url = parse_url("mqtt://host").unwrap();
        config.username = None;
        assert!(matches!(options(&url, &config), Err(MqttError::InvalidConfig(_))));
        assert!(!format!("{config:?}").contains("\"p\""));
    }

    #[tokio::test]
    async fn bad_settings_are_refused_before_anything_starts() {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let start = |f: fn(&mut MqttConfig)| {
            let mut c = MqttConfig::new("mqtt://127.0.0.1:1", "c");
            f(&mut c);
            MqttClient::start(c, stop.clone(), &tracker).map(|_| ()).unwrap_err()
        };
        assert!(matches!(start(|c| c.url = "http://x".into()), MqttError::InvalidUrl(_)));
        assert!(matches!(start(|c| c.client_id.clear()), MqttError::InvalidConfig(_)));
        assert!(matches!(start(|c| c.subscriptions = vec!["a/#/b".into()]), MqttError::InvalidFilter(_)));
        assert!(matches!(start(|c| c.subscriptions = vec!["a+".into()]), MqttError::InvalidFilter(_)));
        assert!(tracker.is_empty());
    }

    /// Configuration only, no connection (not a TLS test): `mqtts://` picks rustls, and TLS
    /// settings for a plain `mqtt://` broker are refused. The real TLS connections (mosquitto with
    /// a CA, pinned, a wrong pin refused) are the e2e test
    /// `tls::external_broker_mosquitto_over_tls_with_ca_file_with_pin_and_refused_for_a_wrong_pin`.
    #[test]
    fn mqtts_url_selects_the_rustls_transport_config_only() {
        let tls = options(&parse_url("mqtts://host").unwrap(), &MqttConfig::new("mqtts://host", "c")).unwrap();
        assert!(matches!(tls.transport(), Transport::Tls(TlsConfiguration::Rustls(_))), "mqtts:// is TLS (rustls)");
        let plain = options(&parse_url("mqtt://host").unwrap(), &MqttConfig::new("mqtt://host", "c")).unwrap();
        assert!(matches!(plain.transport(), Transport::Tcp), "mqtt:// is plain TCP");
        let mut c = MqttConfig::new("mqtt://host", "c");
        c.tls.pin = Some("ab".repeat(32).parse().unwrap());
        let url = parse_url("mqtt://host").unwrap();
        assert!(matches!(options(&url, &c), Err(MqttError::InvalidConfig(_))));
    }
}
