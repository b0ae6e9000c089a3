//! The same engine behind every device convention: the compatibility check-in profiles of fleets
//! already in the field, the MQTT topic profiles, and an external broker (Debian's mosquitto).

use std::time::{Duration, Instant};

use flotilla_proto::Chip;
use flotilla_proto::native::TopicProfile;
use flotilla_sim::{DeviceKind, Fleet, FleetConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Mosquitto, Server, image};

async fn start_rollout(server: &Server, version: &str) -> i64 {
    let resp = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": version, "target": "all", "waves": [{"percent": 100.0}], "start": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["rollout"]["id"].as_i64().unwrap()
}

async fn wait_completed(server: &Server, id: i64, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r: Value = server.get_json(&format!("/api/v1/rollouts/{id}")).await;
        if r["rollout"]["state"] == "completed" && r["rollout"]["counts"]["in_flight"] == 0 {
            assert_eq!(r["rollout"]["counts"]["succeeded"], n, "{:#}", r["rollout"]);
            return r;
        }
        assert!(Instant::now() < deadline, "not completed: {:#}", r["rollout"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a check-in until it carries an offer.
async fn until_offer(mut check: impl AsyncFnMut() -> Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = check().await;
        if a["update_available"] == true {
            return a;
        }
        assert_eq!(a, json!({ "update_available": false }));
        assert!(Instant::now() < deadline, "no offer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn compatibility_check_in_profiles_update_their_devices() {
    let server = Server::start().await;
    server.upload(image("2.0.0", 50_000), &[]).await;
    let http = &server.http;
    let post = |path: &str, body: Value| http.post(server.device(path)).json(&body).send();

    // Profile 1: POST /api/v1/check-update {mac, current_version, labels[]}.
    let p1 = json!({ "mac": "02:00:00:00:0a:01", "current_version": "1.0.0", "labels": ["line-1"], "model": "demo", "chip": "esp32" });
    // Profile 2: GET /api/firmware/check?device_id&device_model&current_version (MAC from the header ESP HTTPUpdate sends).
    let p2_url =
        |v: &str| server.device(&format!("/api/firmware/check?device_id=dev-b&device_model=demo&current_version={v}"));
    // Profile 3: POST /api/ota/check.
    let p3 = |v: &str| json!({ "device_id": "dev-c", "mac": "02:00:00:00:0a:03", "device_model": "demo", "chip": "esp32", "current_version": v });

    assert_eq!(
        post("/api/v1/check-update", p1.clone()).await.unwrap().json::<Value>().await.unwrap()["update_available"],
        false
    );
    let resp = http.get(p2_url("1.0.0")).header("x-ESP32-STA-MAC", "02:00:00:00:0A:02").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(post("/api/ota/check", p3("1.0.0")).await.unwrap().status(), 200);
    // The query-string profile without a MAC: nothing, for an unknown id as for a known one
    // (ids cannot be probed, and an id alone never gets an offer).
    for id in ["ghost", "dev-b"] {
        let url = server.device(&format!("/api/firmware/check?device_id={id}&current_version=1.0.0"));
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "update_available": false }));
    }
    // dev-b registered without a chip: give the inventory what the planner needs.
    server
        .api(Method::POST, "/api/v1/devices")
        .json(&json!({ "mac": "02:00:00:00:0a:02", "chip": "esp32" }))
        .send()
        .await
        .unwrap();

    let id = start_rollout(&server, "2.0.0").await;

    let offer =
        until_offer(async || post("/api/v1/check-update", p1.clone()).await.unwrap().json().await.unwrap()).await;
    let job = offer["job"].as_str().unwrap().to_owned();
    // Each device downloads its image (the evidence its success needs), then reports.
    assert_eq!(http.get(offer["url"].as_str().unwrap()).send().await.unwrap().status(), 200);
    let r = post(
        "/api/v1/report",
        json!({ "device_id": "02:00:00:00:0a:01", "mac": "02:00:00:00:0a:01", "job": job, "state": "rebooting" }),
    );
    assert_eq!(r.await.unwrap().status(), 200);
    let mut p1_new = p1.clone();
    p1_new["current_version"] = json!("2.0.0");
    post("/api/v1/check-update", p1_new).await.unwrap();

    let p2 = |v: &str| http.get(p2_url(v)).header("x-ESP32-STA-MAC", "02:00:00:00:0A:02").send();
    let offer = until_offer(async || p2("1.0.0").await.unwrap().json().await.unwrap()).await;
    let job = offer["job"].as_str().unwrap().to_owned();
    // dev-b has an offer waiting now: its id alone still gets nothing (anyone can send an id),
    // while the same query with its MAC still gets the offer.
    let url = server.device("/api/firmware/check?device_id=dev-b&device_model=demo&current_version=1.0.0");
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "update_available": false }));
    let again: Value = p2("1.0.0").await.unwrap().json().await.unwrap();
    assert_eq!(again["job"], offer["job"], "{again:#}");
    assert_eq!(http.get(offer["url"].as_str().unwrap()).send().await.unwrap().status(), 200);
    let r = post("/api/device/dev-b/update-status", json!({ "job": job, "status": "installing", "progress": 100 }));
    assert_eq!(r.await.unwrap().status(), 200);
    let r = post("/api/device/dev-b/update-status", json!({ "job": job, "status": "rebooting" }));
    assert_eq!(r.await.unwrap().status(), 200);
    p2("2.0.0").await.unwrap();

    let offer = until_offer(async || post("/api/ota/check", p3("1.0.0")).await.unwrap().json().await.unwrap()).await;
    let job = offer["job"].as_str().unwrap().to_owned();
    assert_eq!(http.get(offer["url"].as_str().unwrap()).send().await.unwrap().status(), 200);
    let r = post("/api/ota/status", json!({ "device_id": "dev-c", "job_id": job, "status": "rebooting" }));
    assert_eq!(r.await.unwrap().status(), 200);
    post("/api/ota/check", p3("2.0.0")).await.unwrap();

    let r = wait_completed(&server, id, 3).await;
    assert!(r["jobs"].as_array().unwrap().iter().all(|j| j["current_version"] == "2.0.0"));
    // Devices of the compatibility profiles cannot prove who they are: the inventory and the
    // report say so, and say what each success rests on.
    assert!(r["jobs"].as_array().unwrap().iter().all(|j| j["evidence"] == "unauthenticated+download"), "{r:#}");
    let devices: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert!(devices.iter().all(|d| d["authenticated"] == false && d["auth"] == "none"), "{devices:#?}");
}

fn mqtt_fleet(server_api: &str, mqtt: &str, profile: TopicProfile, n: usize, block: u8) -> FleetConfig {
    FleetConfig {
        api: Some(server_api.to_owned()),
        mqtt: Some(mqtt.to_owned()),
        profile,
        fleet: vec![(DeviceKind::NativeMqtt, n)],
        chip: Chip::Esp32,
        model: "demo".into(),
        version: "1.0.0".into(),
        seed: u64::from(block),
        id_prefix: format!("sim{block}"),
        address_block: block,
        poll_interval: Duration::from_millis(300),
        reboot_delay: Duration::from_millis(200),
        ..FleetConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_topic_profiles_of_existing_fleets_work_unchanged() {
    const ACME: &str = "name=acme;command=acme/{id}/ota/do;status=acme/{id}/ota/state;presence=acme/{id}/alive";
    let server = Server::start_with_args(&["--topic-profile", ACME]).await;
    server.upload(image("2.0.0", 80_000), &[]).await;
    let mqtt = server.mqtt_url();
    let api = server.info.device_url.clone();
    let paku = Fleet::start(mqtt_fleet(&api, &mqtt, TopicProfile::paku(), 5, 40)).await.unwrap();
    let cc = Fleet::start(mqtt_fleet(&api, &mqtt, TopicProfile::cercollettiva(), 5, 41)).await.unwrap();
    let custom = Fleet::start(mqtt_fleet(&api, &mqtt, TopicProfile::parse(ACME).unwrap(), 3, 44)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n =
            server.api(Method::GET, "/api/v1/devices").send().await.unwrap().json::<Vec<Value>>().await.unwrap().len();
        if n == 13 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of 13 devices");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = start_rollout(&server, "2.0.0").await;
    wait_completed(&server, id, 13).await;
    for d in paku.devices().into_iter().chain(cc.devices()).chain(custom.devices()) {
        assert_eq!(d.version, "2.0.0", "{}", d.id);
        assert_eq!(d.commands_received, 1);
    }
    paku.stop().await;
    cc.stop().await;
    custom.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_broker_debian_mosquitto_carries_the_rollout() {
    let broker = Mosquitto::start();
    let server = Server::start_with_mqtt(&broker.url()).await;
    assert_eq!(server.info.mqtt_url.as_deref(), Some(broker.url().as_str()));
    server.upload(image("2.0.0", 80_000), &[]).await;
    let fleet = Fleet::start(mqtt_fleet(&server.info.device_url, &broker.url(), TopicProfile::flotilla(), 20, 42))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.api(Method::GET, "/api/v1/devices").send().await.unwrap().json::<Vec<Value>>().await.unwrap().len()
        < 20
    {
        assert!(Instant::now() < deadline, "devices did not register over mosquitto");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = start_rollout(&server, "2.0.0").await;
    wait_completed(&server, id, 20).await;
    assert!(fleet.devices().iter().all(|d| d.version == "2.0.0"));
    fleet.stop().await;
}
