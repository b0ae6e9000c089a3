//! MQTT devices against a real Mosquitto and the fake engine's firmware server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::firmware::Chip;
use flotilla_proto::native::{DeviceOtaState, OtaStatus, Presence, TopicProfile};
use flotilla_sim::{DeviceKind, Failures, Fleet, FleetConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::broker::Mosquitto;
use crate::engine::{FakeEngine, Signing};
use crate::{fast_fleet, image, wait_for};

const DEV0: &str = "sim-native-mqtt-0";

/// Every message seen: `(topic, payload)`.
type Log = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A test client that records every message on the given filters, in order.
struct Observer {
    client: AsyncClient,
    seen: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Observer {
    async fn start(broker: &Mosquitto, filters: &[&str]) -> Observer {
        let mut opts = MqttOptions::new("observer", "127.0.0.1", broker.port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(opts, 32);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        }
        let seen: Log = Arc::default();
        let subscribed = Arc::new(Mutex::new(0usize));
        let (sink, count) = (Arc::clone(&seen), Arc::clone(&subscribed));
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push((p.topic, p.payload.to_vec())),
                    Ok(Event::Incoming(Packet::SubAck(_))) => *count.lock().unwrap() += 1,
                    Ok(_) => {}
                    Err(e) => panic!("observer lost the broker: {e}"),
                }
            }
        });
        let n = filters.len();
        wait_for("the observer's subscriptions", || (*subscribed.lock().unwrap() == n).then_some(())).await;
        Observer { client, seen, task }
    }

    fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().iter().filter(|(t, _)| t == topic).map(|(_, p)| p.clone()).collect()
    }

    fn presences(&self, topic: &str) -> Vec<Presence> {
        self.on(topic).iter().map(|p| serde_json::from_slice(p).unwrap()).collect()
    }

    fn statuses(&self, topic: &str) -> Vec<OtaStatus> {
        self.on(topic).iter().map(|p| serde_json::from_slice(p).unwrap()).collect()
    }
}

fn mqtt_fleet(engine: &FakeEngine, broker: &Mosquitto, profile: TopicProfile) -> FleetConfig {
    FleetConfig {
        mqtt: Some(broker.url()),
        profile,
        owner: "acme".into(),
        ..fast_fleet(&engine.url, DeviceKind::NativeMqtt, 1)
    }
}

#[tokio::test]
async fn mqtt_device_updates_on_command_and_announces_the_new_version() {
    let (engine, broker) = (FakeEngine::start().await, Mosquitto::start());
    let sha = engine.add_firmware(image("2.0.0", 48 * 1024));
    let observer = Observer::start(&broker, &["flotilla/+/status", "flotilla/+/status/ota"]).await;
    let fleet = Fleet::start(mqtt_fleet(&engine, &broker, TopicProfile::flotilla())).await.unwrap();
    let presence = "flotilla/sim-native-mqtt-0/status";
    let first = wait_for("a retained presence", || observer.presences(presence).into_iter().next()).await;
    let me = fleet.device(DEV0).unwrap();
    assert_eq!(first.version.as_deref(), Some("1.0.0"));
    assert_eq!((first.mac, first.ip), (Some(me.mac.clone()), Some(me.ip.to_string())));
    assert!(first.online);

    let offer = engine.make_offer("job-7", &sha, "7.7.7", Chip::Esp32, Signing::Good);
    let payload = serde_json::to_vec(&offer).unwrap();
    observer
        .client
        .publish("flotilla/sim-native-mqtt-0/cmd/ota", QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    let back = wait_for("a presence on 2.0.0", || {
        observer.presences(presence).into_iter().find(|p| p.version.as_deref() == Some("2.0.0"))
    })
    .await;
    assert!(back.online);

    let statuses = observer.statuses("flotilla/sim-native-mqtt-0/status/ota");
    let states: Vec<DeviceOtaState> = statuses.iter().map(|s| s.state).collect();
    assert_eq!(states.first(), Some(&DeviceOtaState::Accepted));
    assert_eq!(&states[states.len() - 2..], &[DeviceOtaState::Installing, DeviceOtaState::Rebooting]);
    assert!(statuses.iter().any(|s| s.state == DeviceOtaState::Downloading && s.progress == Some(100)));
    assert!(statuses.iter().all(|s| s.job == "job-7"));
    let presences = observer.presences(presence);
    assert!(presences.iter().any(|p| !p.online), "the reboot dropped the connection, so the LWT fired");
    assert_eq!(engine.downloads(), vec![(200, None)]);

    // The same command again (a QoS 1 redelivery, or an engine retrying) is ignored. Sent twice:
    // by the time the device has taken the second, a status it had sent for the first would
    // have reached the observer (mosquitto delivers one client's messages in order).
    for _ in 0..2 {
        let cmd = payload.clone();
        observer.client.publish("flotilla/sim-native-mqtt-0/cmd/ota", QoS::AtLeastOnce, false, cmd).await.unwrap();
    }
    let d = wait_for("both duplicates", || fleet.device(DEV0).filter(|d| d.duplicate_offers == 2)).await;
    assert_eq!((d.version.as_str(), d.commands_received, d.reboots), ("2.0.0", 1, 1));
    assert_eq!(observer.statuses("flotilla/sim-native-mqtt-0/status/ota").len(), statuses.len());
    fleet.stop().await;
}

#[tokio::test]
async fn paku_device_reports_its_failure_on_the_result_topic() {
    let (engine, broker) = (FakeEngine::start().await, Mosquitto::start());
    let sha = engine.add_firmware(image("2.0.0", 32 * 1024));
    let observer = Observer::start(&broker, &["paku/#"]).await;
    let config = FleetConfig {
        failures: vec![(DEV0.into(), Failures { corrupt: true, ..Failures::none() })],
        ..mqtt_fleet(&engine, &broker, TopicProfile::paku())
    };
    let fleet = Fleet::start(config).await.unwrap();
    wait_for("a presence", || observer.presences("paku/edge/sim-native-mqtt-0/status").into_iter().next()).await;
    let offer = engine.make_offer("job-p", &sha, "2.0.0", Chip::Esp32, Signing::Good);
    observer
        .client
        .publish("paku/devices/sim-native-mqtt-0/cmd/ota", QoS::AtLeastOnce, false, serde_json::to_vec(&offer).unwrap())
        .await
        .unwrap();
    let result =
        wait_for("a result", || observer.statuses("paku/devices/sim-native-mqtt-0/ota/result").into_iter().next())
            .await;
    assert_eq!(result.state, DeviceOtaState::Failed);
    assert!(result.error.unwrap().starts_with("sha256 mismatch"));
    let progress = observer.statuses("paku/devices/sim-native-mqtt-0/ota/progress");
    assert_eq!(progress.first().map(|s| s.state), Some(DeviceOtaState::Accepted));
    assert!(progress.iter().all(|s| s.state != DeviceOtaState::Failed), "final states go to the result topic only");
    assert_eq!(fleet.device(DEV0).unwrap().version, "1.0.0");
    fleet.stop().await;
}
