//! An MQTT device: one connection per boot with a retained `{"online": false}` LWT on its
//! presence topic; at every CONNACK it subscribes to its command topic (QoS 1) and publishes a
//! retained [`Presence`] with the version it runs. A command ([`Offer`]) starts an update whose
//! progress goes to the status topic; after the final report is acknowledged by the broker the
//! connection is dropped without DISCONNECT (so the broker publishes the LWT, as for a real
//! reboot) and the device comes back with a new connection and a new presence.
//!
//! The connection leaves from 127.0.0.1: rumqttc cannot bind a source address. The device's own
//! address is in its presence (`ip`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_proto::native::{DeviceOtaState, Offer, OtaStatus, Presence, render_topic};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::time::Instant;

use super::update::{self, Outcome, Uplink};
use super::{Ctx, Device, DeviceState, endpoint};
use crate::config::MqttTarget;

/// How long a rebooting device waits for the broker to acknowledge its last status.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The device's topics, rendered from the fleet's profile.
#[derive(Debug, Clone)]
struct Topics {
    command: String,
    status: String,
    result: Option<String>,
    presence: String,
}

impl Topics {
    fn new(ctx: &Ctx, id: &str) -> Topics {
        let p = &ctx.config.profile;
        let owner = Some(ctx.config.owner.as_str());
        Topics {
            command: render_topic(&p.command, id, owner),
            status: render_topic(&p.status, id, owner),
            result: p.result.as_deref().map(|t| render_topic(t, id, owner)),
            presence: render_topic(&p.presence, id, owner),
        }
    }
}

type Work = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Runs the device until the task is aborted.
pub(crate) async fn run(device: Arc<Device>, ctx: Arc<Ctx>) {
    let Some(target) = ctx.mqtt.clone() else {
        device.record_error("no broker URL");
        return;
    };
    let topics = Topics::new(&ctx, &device.ident.id);
    // As docs/device-api.md says: one native check-in enrols the device; its credential carries
    // the device's own broker login (with the embedded broker), used from then on.
    let mut target = target;
    if let Some(login) = enrol(&device, &ctx).await {
        target.credentials = Some(login);
    }
    loop {
        let endpoint_guard = endpoint::open(&device, ctx.config.device_port).await;
        let new_version = session(&device, &ctx, &target, &topics).await;
        drop(endpoint_guard);
        update::reboot(&device, &ctx, new_version).await;
    }
}

/// Enrols the device with one native check-in (when the simulator knows the engine's URL);
/// keeps its secret (for downloads) and returns its own broker login, if the engine gives one.
async fn enrol(device: &Device, ctx: &Ctx) -> Option<(String, String)> {
    let url = ctx.api.as_ref().and_then(|a| super::pull::api_url(a, "api/v1/check"))?;
    let http = ctx.http_client(device).ok()?;
    let body = flotilla_proto::native::CheckRequest {
        device_id: device.ident.id.clone(),
        mac: device.ident.mac.clone(),
        model: Some(ctx.config.model.clone()),
        chip: Some(ctx.config.chip.as_str().to_owned()),
        version: device.version(),
        labels: None,
        secure_version: None,
        interval_secs: None,
        tls: None,
    };
    let answer = http.post(url).timeout(ctx.config.http_timeout).json(&body).send().await.ok()?;
    if !answer.status().is_success() {
        tracing::debug!(device = %device.ident.id, "enrolment refused: HTTP {}", answer.status());
        return None;
    }
    match answer.json::<flotilla_proto::native::CheckResponse>().await.ok()? {
        flotilla_proto::native::CheckResponse::NoUpdate { credential: Some(c), .. } => {
            device.set_secret(c.secret);
            c.mqtt_username.zip(c.mqtt_password)
        }
        _ => None,
    }
}

fn options(device: &Device, target: &MqttTarget, topics: &Topics) -> MqttOptions {
    let mut opts = MqttOptions::new(device.ident.id.clone(), target.host.clone(), target.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(8)
        .set_max_packet_size(64 * 1024, 64 * 1024)
        .set_last_will(LastWill::new(topics.presence.clone(), br#"{"online":false}"#.to_vec(), QoS::AtLeastOnce, true));
    if let Some((user, pass)) = &target.credentials {
        opts.set_credentials(user.clone(), pass.clone());
    }
    opts
}

/// One boot's connection. Returns the version to reboot into once an update installed.
async fn session(device: &Arc<Device>, ctx: &Arc<Ctx>, target: &MqttTarget, topics: &Topics) -> String {
    let (client, mut events) = AsyncClient::new(options(device, target, topics), 16);
    let queued = Arc::new(AtomicUsize::new(0));
    let mut sent = 0usize;
    let mut work: Option<Work> = None;
    let mut rebooting: Option<(String, Instant)> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Some((version, deadline)) = &rebooting {
            let flushed = sent >= queued.load(Ordering::SeqCst) && events.state.inflight() == 0;
            if flushed || Instant::now() >= *deadline {
                return version.clone();
            }
        }
        let flush_deadline = rebooting.as_ref().map(|(_, d)| *d);
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    if work.is_none() && rebooting.is_none() {
                        device.set_state(DeviceState::Idle, None);
                    }
                    announce(device, ctx, &client, topics, &queued);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topics.command && rebooting.is_none() => {
                    if let Some(w) = command(device, ctx, &client, topics, &queued, &p.payload, work.is_some()) {
                        work = Some(w);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(_))) => sent += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(device = %device.ident.id, "broker connection: {e}");
                    if work.is_none() && rebooting.is_none() {
                        device.set_state(DeviceState::Offline, None);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
            outcome = running(&mut work) => {
                work = None;
                if let Outcome::Reboot { version } = outcome {
                    rebooting = Some((version, Instant::now() + FLUSH_TIMEOUT));
                }
            }
            () = until(flush_deadline) => {}
        }
    }
}

/// Completes with the running update's outcome; pends forever when there is none.
async fn running(work: &mut Option<Work>) -> Outcome {
    match work.as_mut() {
        Some(w) => w.await,
        None => std::future::pending().await,
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// At every CONNACK: subscribe to the command topic and publish the retained presence.
fn announce(device: &Device, ctx: &Ctx, client: &AsyncClient, topics: &Topics, queued: &AtomicUsize) {
    if let Err(e) = client.try_subscribe(topics.command.clone(), QoS::AtLeastOnce) {
        tracing::warn!(device = %device.ident.id, "cannot subscribe: {e}");
    }
    let presence = Presence {
        online: true,
        mac: Some(device.ident.mac.clone()),
        model: Some(ctx.config.model.clone()),
        chip: Some(ctx.config.chip.as_str().to_owned()),
        version: Some(device.version()),
        ip: Some(device.ident.ip.to_string()),
        secure_version: None,
    };
    let payload = serde_json::to_vec(&presence).unwrap_or_default();
    queued.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = client.try_publish(topics.presence.clone(), QoS::AtLeastOnce, true, payload) {
        queued.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(device = %device.ident.id, "cannot publish presence: {e}");
    }
}

/// A message on the command topic. Returns the update to run, if the device takes it on.
fn command(
    device: &Arc<Device>,
    ctx: &Arc<Ctx>,
    client: &AsyncClient,
    topics: &Topics,
    queued: &Arc<AtomicUsize>,
    payload: &[u8],
    busy: bool,
) -> Option<Work> {
    let offer: Offer = match serde_json::from_slice(payload) {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(device = %device.ident.id, "ignoring an unreadable command: {e}");
            return None;
        }
    };
    if !device.admit(&offer.job) {
        tracing::debug!(device = %device.ident.id, job = %offer.job, "ignoring a duplicate offer");
        return None;
    }
    if busy {
        let why = "busy with another update";
        device.record_error(why);
        let status =
            OtaStatus { job: offer.job, state: DeviceOtaState::Rejected, progress: None, error: Some(why.into()) };
        let topic = topics.result.clone().unwrap_or_else(|| topics.status.clone());
        queued.fetch_add(1, Ordering::SeqCst);
        if client.try_publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&status).unwrap_or_default()).is_err()
        {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
        return None;
    }
    let (device, ctx, client, queued, topics) =
        (Arc::clone(device), Arc::clone(ctx), client.clone(), Arc::clone(queued), topics.clone());
    Some(Box::pin(async move {
        let uplink =
            Uplink::Mqtt { client: &client, status: &topics.status, result: topics.result.as_deref(), queued: &queued };
        match ctx.http_client(&device) {
            Ok(http) => update::install(&device, &ctx, &offer, &uplink, &http).await,
            Err(e) => {
                let why = format!("HTTP client: {e}");
                device.record_error(&why);
                uplink.report(&device, &offer.job, DeviceOtaState::Failed, None, Some(&why)).await;
                Outcome::Failed
            }
        }
    }))
}
