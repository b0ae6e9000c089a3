//! Vendor MQTT discovery against the real engine, through the embedded broker and through
//! Debian's mosquitto: the retained messages Tasmota and Shelly firmware publish make devices
//! appear with their family, MAC, model and version; their Last Will / `online` takes them
//! offline; garbage and claims against a device that proved itself change nothing.

use std::time::{Duration, Instant};

use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::support::{Mosquitto, Server, family_kind};

const TASMOTA_CONFIG: &str = r#"{"ip":"192.168.1.51","dn":"Kitchen plug","fn":["Plug",null],"hn":"kitchen-5678",
 "mac":"A4CF12345678","md":"Sonoff Basic","ty":0,"if":0,"ofln":"Offline","onln":"Online",
 "state":["OFF","ON","TOGGLE","HOLD"],"sw":"14.3.0","t":"kitchen","ft":"%prefix%/%topic%/",
 "tp":["cmnd","stat","tele"],"rl":[1,0],"ver":1}"#;
const SHELLY_ANNOUNCE: &str = r#"{"id":"shellyplug-s-C45BBE7A3F1B","model":"SHPLG-S","mac":"C45BBE7A3F1B",
 "ip":"192.168.1.60","new_fw":false,"fw_ver":"20230913-113421/v1.14.0-gcb84623"}"#;

/// Connects a client (the site's login, as vendor firmware uses) and waits for CONNACK.
async fn connect(url: &str) -> AsyncClient {
    let rest = url.strip_prefix("mqtt://").unwrap();
    let (login, addr) = rest.rsplit_once('@').map_or((None, rest), |(l, a)| (Some(l), a));
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut opts = MqttOptions::new(format!("e2e-vendor-{}", std::process::id()), host, port.parse().unwrap());
    if let Some((user, pass)) = login.and_then(|l| l.split_once(':')) {
        opts.set_credentials(user, pass);
    }
    let (client, mut events) = AsyncClient::new(opts, 64);
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(e) = events.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = e
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), rx).await.unwrap().unwrap();
    client
}

async fn device(server: &Server, mac: &str) -> Option<Value> {
    let resp = server.api(Method::GET, &format!("/api/v1/devices/{mac}")).send().await.unwrap();
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    Some(resp.json().await.unwrap())
}

/// Polls until the device satisfies `ok` (10 s at most).
async fn until(server: &Server, mac: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = device(server, mac).await;
        if let Some(d) = &d
            && ok(d)
        {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "device {mac} never got there: {d:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn vendor_discovery(server: &Server, url: &str) {
    let c = connect(url).await;
    // A native device that proved itself with a check-in.
    let check = json!({ "device_id": "pump-1", "mac": "24:0a:c4:00:00:01", "model": "pump", "version": "1.0.0" });
    let resp = reqwest::Client::new().post(server.device("/api/v1/check")).json(&check).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    c.publish("tasmota/discovery/A4CF12345678/config", QoS::AtLeastOnce, true, TASMOTA_CONFIG).await.unwrap();
    c.publish("shellies/announce", QoS::AtLeastOnce, false, SHELLY_ANNOUNCE).await.unwrap();
    c.publish("shellyplus1pm-a8032ab12345/online", QoS::AtLeastOnce, true, "true").await.unwrap();
    // Garbage on the same topics, and a discovery message claiming the native device's MAC.
    c.publish("tasmota/discovery/0000000000AA/config", QoS::AtLeastOnce, false, "{not json").await.unwrap();
    c.publish("shellies/announce", QoS::AtLeastOnce, false, vec![0xff, 0xfe, 0x00]).await.unwrap();
    let forged = r#"{"mac":"240AC4000001","sw":"9.9.9","md":"Forged","t":"pump"}"#;
    c.publish("tasmota/discovery/240AC4000001/config", QoS::AtLeastOnce, false, forged).await.unwrap();

    let t = until(server, "a4:cf:12:34:56:78", |d| d["online"] == true).await;
    assert_eq!(t["family"], "tasmota", "{t}");
    assert_eq!(t["version"], "14.3.0", "{t}");
    assert_eq!(t["model"], "Sonoff Basic", "{t}");
    assert_eq!(t["ip"], "192.168.1.51", "{t}");
    assert_eq!(t["device_id"], "kitchen", "{t}");
    assert!(t["sources"].as_array().unwrap().iter().any(|s| s == "mqtt"), "{t}");
    let s = until(server, "c4:5b:be:7a:3f:1b", |_| true).await;
    assert_eq!((family_kind(&s).as_str(), s["version"].as_str()), ("shelly-gen1", Some("1.14.0")), "{s}");
    let g2 = until(server, "a8:03:2a:b1:23:45", |_| true).await;
    // Gen2+'s `<id>/online` does not say which generation: a Shelly, generation unknown.
    assert_eq!(family_kind(&g2), "shelly", "{g2}");
    // Its notifications (`<prefix>/events/rpc`, here a custom prefix) say where it is.
    let full = r#"{"src":"shellyplus1pm-a8032ab12345","dst":"garage/events","method":"NotifyFullStatus",
        "params":{"sys":{"mac":"A8032AB12345"},"wifi":{"sta_ip":"127.0.0.70","status":"got ip"}}}"#;
    c.publish("garage/events/rpc", QoS::AtLeastOnce, false, full).await.unwrap();
    until(server, "a8:03:2a:b1:23:45", |d| d["ip"] == "127.0.0.70").await;

    // Offline from the Last Will and from `online false`.
    c.publish("tele/kitchen/LWT", QoS::AtLeastOnce, true, "Offline").await.unwrap();
    c.publish("shellyplus1pm-a8032ab12345/online", QoS::AtLeastOnce, true, "false").await.unwrap();
    until(server, "a4:cf:12:34:56:78", |d| d["online"] == false).await;
    until(server, "a8:03:2a:b1:23:45", |d| d["online"] == false).await;

    // The Tasmota reconnects after an upgrade and a new DHCP lease: its Last Will says Online,
    // INFO1 its version, INFO2 its address — by topic, which its discovery config tied to its MAC.
    let info1 = r#"{"Info1":{"Module":"Sonoff Basic","Version":"14.4.0(release-tasmota)","FallbackTopic":"cmnd/DVES_345678_fb/","GroupTopic":"cmnd/tasmotas/"}}"#;
    let info2 = r#"{"Info2":{"WebServerMode":"Admin","Hostname":"kitchen-5678","IPAddress":"192.168.1.77"}}"#;
    // INFO messages on the native device's id, and on a topic nobody announced, change nothing
    // (sent first: once the engine has the Tasmota's, which come after on the same connection,
    // it has handled these).
    c.publish("tele/pump-1/INFO1", QoS::AtLeastOnce, false, info1).await.unwrap();
    c.publish("tele/nobody/INFO2", QoS::AtLeastOnce, false, info2).await.unwrap();
    c.publish("tele/kitchen/LWT", QoS::AtLeastOnce, true, "Online").await.unwrap();
    c.publish("tele/kitchen/INFO1", QoS::AtLeastOnce, false, info1).await.unwrap();
    c.publish("tele/kitchen/INFO2", QoS::AtLeastOnce, false, info2).await.unwrap();
    let t = until(server, "a4:cf:12:34:56:78", |d| d["version"] == "14.4.0" && d["ip"] == "192.168.1.77").await;
    assert_eq!(t["online"], true, "{t}");

    // The forged claim and the garbage changed nothing.
    let pump = device(server, "24:0a:c4:00:00:01").await.unwrap();
    assert_eq!((pump["family"].as_str(), pump["version"].as_str()), (Some("native"), Some("1.0.0")), "{pump}");
    assert_eq!(pump["model"], "pump", "{pump}");
    assert!(device(server, "00:00:00:00:00:aa").await.is_none(), "garbage made no device");
    let all: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(all.len(), 4, "pump, Tasmota, two Shellys: {all:?}");
}

#[tokio::test]
async fn tasmota_and_shelly_appear_through_the_embedded_broker() {
    let server = Server::start().await;
    let url = server.mqtt_url();
    vendor_discovery(&server, &url).await;
}

#[tokio::test]
async fn tasmota_and_shelly_appear_through_debian_mosquitto() {
    let broker = Mosquitto::start();
    let server = Server::start_with_mqtt(&broker.url()).await;
    vendor_discovery(&server, &broker.url()).await;
}
