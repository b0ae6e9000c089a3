//! The engine's MQTT wiring: runs the embedded broker (or uses the site's), connects the one
//! client, subscribes to every topic profile's status, result and presence topics, and hands what
//! arrives to the engine. Push commands leave through [`ClientPublisher`] (a site's broker) or
//! [`LocalPublisher`] (the embedded one).
//!
//! With the embedded broker the engine is a local client of it
//! ([`EmbeddedBroker::connect_local`]): a device's message reaches the engine through a channel,
//! not through a second socket, its encoding and its acknowledgements.
//!
//! Bad payloads (not JSON, wrong shape, unknown job) are logged and dropped: a device that lies
//! or a stranger on the broker never stops the engine or touches a job that is not its own.

use std::sync::Arc;

use flotilla_proto::native::{OtaStatus, Presence, ReportRequest, TopicProfile, match_topic, topic_filter};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::handle::{Caller, EngineHandle};
use crate::log_limit::{WarnLimit, warn_limited};
use crate::mqtt::{BrokerConfig, Delivery, EmbeddedBroker, Incoming, LocalClient, LocalInbox, MqttClient, MqttConfig};
use crate::protocols::{BoxFuture, Publish};
use crate::secrets;

pub use crate::config::MqttMode;

/// Credentials of the embedded broker, created once per data dir (`mqtt-credentials`, 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerCredentials {
    pub username: String,
    pub password: String,
}

/// A running MQTT link.
#[derive(Debug)]
pub(crate) struct MqttLink {
    pub broker: Option<EmbeddedBroker>,
    pub devices: DeviceBroker,
}

/// How devices reach the broker: its URL (with the LAN address when the broker listens on all
/// interfaces) and the login they need (the embedded broker's, or the site broker's).
#[derive(Clone)]
pub(crate) struct DeviceBroker {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Devices get logins of their own (the embedded broker), handed out at enrolment.
    pub device_logins: bool,
}

/// The engine's credentials as the embedded broker's per-device logins.
struct EngineLogins(std::sync::Weak<crate::handle::Shared>);

impl crate::mqtt::DeviceLogins for EngineLogins {
    fn device(&self, user: &str, pass: &[u8]) -> Option<String> {
        self.0.upgrade()?.mqtt_login(user, pass)
    }
}

/// What a device's own login may do: publish its status, results and presence (and Last Will),
/// subscribe to its commands — in every topic profile.
fn device_access(engine: &EngineHandle, profiles: &[TopicProfile]) -> crate::mqtt::DeviceAccess {
    let mut publish = Vec::new();
    let mut subscribe = Vec::new();
    for p in profiles {
        publish.extend([Some(&p.status), p.result.as_ref(), Some(&p.presence)].into_iter().flatten().cloned());
        subscribe.push(p.command.clone());
    }
    crate::mqtt::DeviceAccess { logins: Arc::new(EngineLogins(Arc::downgrade(&engine.shared))), publish, subscribe }
}

impl std::fmt::Debug for DeviceBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBroker").field("url", &self.url).field("username", &self.username).finish_non_exhaustive()
    }
}

/// Publishes through the engine's client.
#[derive(Debug)]
struct ClientPublisher(MqttClient);

impl Publish for ClientPublisher {
    fn publish<'a>(&'a self, topic: &'a str, payload: Vec<u8>, retain: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.0
                .publish(topic, payload, retain)
                .await
                .map_err(|e| CoreError::Refused(format!("MQTT publish failed: {e}")))
        })
    }
}

/// Publishes into the embedded broker, in-process.
#[derive(Debug)]
struct LocalPublisher(LocalClient);

impl Publish for LocalPublisher {
    fn publish<'a>(&'a self, topic: &'a str, payload: Vec<u8>, retain: bool) -> BoxFuture<'a, Result<()>> {
        let sent = self.0.publish(topic, payload, retain);
        Box::pin(async move { sent.map_err(|e| CoreError::Refused(format!("MQTT publish failed: {e}"))) })
    }
}

/// Where the engine's messages come from.
enum Inbox {
    /// The client of a site's broker.
    Client(tokio::sync::mpsc::Receiver<Incoming>),
    /// The embedded broker, in-process.
    Local(LocalInbox),
}

impl Inbox {
    async fn recv(&mut self) -> Option<Delivery> {
        match self {
            Inbox::Client(rx) => rx.recv().await.map(Delivery::Message),
            Inbox::Local(inbox) => inbox.recv().await,
        }
    }
}

fn load_credentials(path: &std::path::Path) -> Result<BrokerCredentials> {
    use base64::Engine as _;
    let bytes = secrets::load_or_create(
        path,
        || {
            let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secrets::random_bytes::<24>()?);
            serde_json::to_vec_pretty(&BrokerCredentials { username: "flotilla".into(), password })
                .map_err(|e| CoreError::BadRequest(e.to_string()))
        },
        |b| serde_json::from_slice::<BrokerCredentials>(b).is_ok(),
    )?;
    serde_json::from_slice(&bytes).map_err(|e| CoreError::BadRequest(format!("{}: {e}", path.display())))
}

/// Starts the broker (if embedded) and the client, and the task that dispatches what arrives.
pub(crate) async fn start(
    engine: &EngineHandle,
    mode: &MqttMode,
    profiles: &[TopicProfile],
) -> Result<Option<MqttLink>> {
    // `url` is where devices reach the broker; the engine's own client uses it only for a
    // site's broker (with the embedded one the engine is an in-process client).
    let (url, username, password, broker) = match mode {
        MqttMode::Off => return Ok(None),
        MqttMode::Embedded { listen } => {
            let creds = load_credentials(&engine.shared.data.root().join("mqtt-credentials"))?;
            let broker = EmbeddedBroker::start(BrokerConfig {
                listen: *listen,
                username: creds.username.clone(),
                password: creds.password.clone(),
                devices: Some(device_access(engine, profiles)),
            })
            .await
            .map_err(|e| {
                CoreError::io(
                    format!("cannot start the embedded MQTT broker on {listen}"),
                    std::io::Error::other(e.to_string()),
                )
            })?;
            let device_url = format!("mqtt://{}", crate::handle::reachable(broker.local_addr()));
            (device_url, Some(creds.username), Some(creds.password), Some(broker))
        }
        MqttMode::External { url, username, password } => (url.clone(), username.clone(), password.clone(), None),
    };
    // What devices, people and files are shown: the URL without its password (`Display`); a
    // login given in the URL travels apart, as a configured one does.
    let (shown, username, password) = match crate::mqtt::parse_url(&url) {
        Ok(u) => (u.to_string(), username.or_else(|| u.username.clone()), password.or_else(|| u.password.clone())),
        Err(_) => ("<invalid broker URL>".to_owned(), username, password),
    };
    let mut subscriptions: Vec<String> = Vec::new();
    for p in profiles {
        for t in [Some(&p.status), p.result.as_ref(), Some(&p.presence)].into_iter().flatten() {
            let f = topic_filter(t);
            if !subscriptions.contains(&f) {
                subscriptions.push(f);
            }
        }
    }
    subscriptions.extend(crate::discovery::vendor_mqtt::SUBSCRIPTIONS.iter().map(|s| (*s).to_owned()));
    let devices = DeviceBroker {
        url: shown,
        username: username.clone(),
        password: password.clone(),
        device_logins: broker.is_some(),
    };
    // Known before the first message is dispatched (whether device logins exist decides how an
    // enrolled device's MQTT messages are judged).
    let _ = engine.shared.mqtt_devices.set(devices.clone());
    let mut inbox = match &broker {
        Some(broker) => {
            let (client, inbox) =
                broker.connect_local(&subscriptions).map_err(|e| CoreError::BadRequest(format!("MQTT: {e}")))?;
            engine.shared.native.set_publisher(Arc::new(LocalPublisher(client)));
            // In-process: connected for as long as the broker runs.
            let _ = engine.shared.mqtt_connected.set(tokio::sync::watch::channel(true).1);
            Inbox::Local(inbox)
        }
        None => {
            let config = MqttConfig {
                url,
                username,
                password,
                client_id: format!("flotilla-{}", engine.shared.key.key_id()),
                subscriptions,
                tls: engine.shared.config.mqtt_client_tls.clone(),
            };
            let (client, rx) = MqttClient::start(config, engine.stop_token(), engine.tracker())
                .map_err(|e| CoreError::BadRequest(format!("MQTT: {e}")))?;
            engine.shared.native.set_publisher(Arc::new(ClientPublisher(client.clone())));
            let _ = engine.shared.mqtt_connected.set(client.connected());
            Inbox::Client(rx)
        }
    };
    let dispatcher = engine.clone();
    let profiles = profiles.to_vec();
    let stop = engine.stop_token();
    engine.tracker().spawn(async move {
        loop {
            // The engine stops before its broker does.
            let msg = tokio::select! {
                () = stop.cancelled() => break,
                msg = inbox.recv() => msg,
            };
            match msg {
                None => break,
                Some(Delivery::Message(msg)) => dispatch(&dispatcher, &profiles, msg).await,
                // A device's session ending takes it offline, Last Will or not.
                Some(Delivery::SessionEnded(client)) => {
                    if let Err(e) = dispatcher.mqtt_session_ended(&client) {
                        tracing::debug!(%client, error = %e, "session end not applied");
                    }
                }
            }
        }
    });
    Ok(Some(MqttLink { broker, devices }))
}

/// Rate limit of the warnings about what devices publish (a flood of garbage must not flood the log).
static REFUSED: std::sync::LazyLock<WarnLimit> = std::sync::LazyLock::new(WarnLimit::new);

async fn dispatch(engine: &EngineHandle, profiles: &[TopicProfile], msg: Incoming) {
    for p in profiles {
        if let Some((id, owner)) = match_topic(&p.presence, &msg.topic) {
            match serde_json::from_slice::<Presence>(&msg.payload) {
                Ok(presence) => {
                    if let Err(e) = crate::limits::presence(&id, &presence) {
                        warn_limited!(limit = REFUSED, topic = %msg.topic, reason = %e, "presence refused");
                        return;
                    }
                    let (client, login) = (msg.client_id.clone(), msg.device.clone());
                    if let Err(e) = engine.presence(&p.name, &id, owner, presence, msg.retained, client, login).await {
                        tracing::debug!(topic = %msg.topic, error = %e, "presence ignored");
                    }
                }
                Err(e) => {
                    warn_limited!(limit = REFUSED, topic = %msg.topic, error = %e, "presence is not valid JSON; ignored");
                }
            }
            return;
        }
        let is_status =
            match_topic(&p.status, &msg.topic).or_else(|| p.result.as_ref().and_then(|r| match_topic(r, &msg.topic)));
        if let Some((id, _owner)) = is_status {
            if msg.retained {
                // A retained status is history, not news.
                return;
            }
            match serde_json::from_slice::<OtaStatus>(&msg.payload) {
                Ok(s) => {
                    if let Err(e) = crate::limits::status(&id, &s) {
                        warn_limited!(limit = REFUSED, topic = %msg.topic, reason = %e, "status refused");
                        return;
                    }
                    let report = ReportRequest {
                        device_id: id,
                        mac: None,
                        job: s.job,
                        state: s.state,
                        progress: s.progress,
                        error: s.error,
                        version: None,
                    };
                    let site_broker = engine.shared.mqtt_devices.get().is_none_or(|d| !d.device_logins);
                    let caller = Caller { mqtt_device: msg.device.clone(), site_broker, ..Caller::default() };
                    if let Err(e) = engine.device_report(report, caller).await {
                        tracing::debug!(topic = %msg.topic, error = %e, "status ignored");
                    }
                }
                Err(e) => {
                    warn_limited!(limit = REFUSED, topic = %msg.topic, error = %e, "status is not valid JSON; ignored");
                }
            }
            return;
        }
    }
    crate::discovery::vendor_mqtt::dispatch(engine, &msg).await;
}
