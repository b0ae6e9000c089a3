//! A device is believed only when it proves who it is (issue 10 §3), against the real
//! `flotilla serve`: each impersonation a LAN client could try is refused, changes nothing, and
//! is recorded as a security event.

use std::time::{Duration, Instant};

use flotilla_proto::Chip;
use flotilla_sim::{DeviceKind, Failures, Fleet, FleetConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, image};

const VICTIM: &str = "02:00:00:00:0d:01";
const OTHER: &str = "02:00:00:00:0d:02";

fn body(device_id: &str, mac: &str, version: &str) -> Value {
    json!({ "device_id": device_id, "mac": mac, "model": "demo", "chip": "esp32", "version": version })
}

/// A server with firmware 2.0.0, `pump-1` (VICTIM) and `pump-2` (OTHER) enrolled on 1.0.0, and a
/// rollout to both started. Returns the rollout id.
async fn site() -> (Server, i64) {
    let server = Server::start().await;
    let (status, fw) = server.upload(image("2.0.0", 40_000), &[]).await;
    assert_eq!(status, 201, "{fw}");
    for (id, mac) in [("pump-1", VICTIM), ("pump-2", OTHER)] {
        let (status, answer) = server.device_check_in(&body(id, mac, "1.0.0")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(server.device_secret(mac).is_some(), "{mac} enrolled on its first check-in");
    }
    let rollout = start_rollout(&server).await;
    (server, rollout)
}

/// Starts a rollout of 2.0.0 to every device, in one wave; its id.
async fn start_rollout(server: &Server) -> i64 {
    let created: Value = server
        .post_json(
            "/api/v1/rollouts",
            &json!({ "firmware": "2.0.0", "target": "all", "start": true, "waves": [{"percent": 100.0}] }),
        )
        .await;
    created["rollout"]["id"].as_i64().unwrap()
}

/// Checks in as the device itself until the engine offers the update.
async fn offer(server: &Server, id: &str, mac: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, a) = server.device_check_in(&body(id, mac, "1.0.0")).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        if a["update_available"] == true {
            return a;
        }
        assert!(Instant::now() < deadline, "{mac} was never offered the update");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn job_of(server: &Server, rollout: i64, mac: &str) -> Value {
    let r: Value = server.get_json(&format!("/api/v1/rollouts/{rollout}")).await;
    r["jobs"].as_array().unwrap().iter().find(|j| j["mac"] == mac).cloned().unwrap()
}

async fn security_events(server: &Server) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page: Value = server.get_json("/api/v1/events?kind=security.").await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn another_devices_mac_or_id_without_its_secret_gets_401_and_no_offer() {
    let (server, _) = site().await;
    let real = offer(&server, "pump-1", VICTIM).await;
    let before: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    let post = |b: Value, secret: Option<&str>| {
        let req = server.http.post(server.device("/api/v1/check")).json(&b);
        match secret {
            Some(s) => req.bearer_auth(s.to_owned()),
            None => req,
        }
        .send()
    };
    // Its MAC (any spelling), its id on another MAC, a guessed secret, another device's secret.
    let other_secret = server.device_secret(OTHER).unwrap();
    let forged = [
        (body("pump-1", VICTIM, "1.0.0"), None),
        (body("pump-1", "02-00-00-00-0D-01", "2.0.0"), None),
        (body("pump-1", "02:00:00:00:0d:99", "1.0.0"), None),
        (body("pump-1", VICTIM, "1.0.0"), Some("guess")),
        (body("pump-1", VICTIM, "1.0.0"), Some(other_secret.as_str())),
    ];
    for (b, secret) in forged {
        let resp = post(b.clone(), secret).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{b}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");
        assert!(answer.get("job").is_none() && answer.get("url").is_none(), "no offer, no token: {answer}");
    }
    // The download of its offer needs its secret too.
    let url = real["url"].as_str().unwrap();
    assert_eq!(server.http.get(url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // Nothing changed; the refusals are security events (never with the secret).
    let after: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    assert_eq!(
        (&before["version"], &before["ip"], &before["device_id"]),
        (&after["version"], &after["ip"], &after["device_id"])
    );
    assert_eq!(after["authenticated"], true);
    assert_eq!(after["auth"], "enrolled");
    assert!(server.get_json::<Value>("/api/v1/devices/02:00:00:00:0d:99").await["error"].is_object(), "no device made");
    let events = security_events(&server).await;
    assert!(events.len() >= 5, "{events:#?}");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&server.device_secret(VICTIM).unwrap()) && !text.contains(&other_secret));
    assert!(events.iter().all(|e| e["kind"] == "security.refused"), "{events:#?}");
}

#[tokio::test]
async fn compat_check_ins_with_an_enrolled_device_are_refused() {
    let (server, rollout) = site().await;
    let http = &server.http;
    let before: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    let job_before = job_of(&server, rollout, VICTIM).await;
    // Each compatibility profile, claiming the version the rollout installs: were the claim
    // applied before the refusal, the device would show 2.0.0.
    let get = http
        .get(server.device("/api/firmware/check?device_id=pump-1&current_version=2.0.0"))
        .header("x-ESP32-STA-MAC", VICTIM)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::UNAUTHORIZED);
    let ota = json!({ "device_id": "pump-1", "mac": VICTIM, "current_version": "2.0.0" });
    let resp = http.post(server.device("/api/ota/check")).json(&ota).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let cu = json!({ "mac": VICTIM, "current_version": "2.0.0" });
    let resp = http.post(server.device("/api/v1/check-update")).json(&cu).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Nothing changed, and the refusal is a security event.
    let after: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    for field in ["version", "ip", "last_seen", "device_id", "auth"] {
        assert_eq!(after[field], before[field], "{field}: {after:#}");
    }
    assert_eq!(after["version"], "1.0.0");
    let job_after = job_of(&server, rollout, VICTIM).await;
    assert_eq!(
        (&job_after["state"], &job_after["current_version"]),
        (&job_before["state"], &job_before["current_version"])
    );
    let events = security_events(&server).await;
    assert!(
        events.iter().any(|e| e["kind"] == "security.refused"
            && e["data"]["what"] == "compat check-in"
            && e["data"]["mac"] == VICTIM),
        "{events:#?}"
    );
    // A device that never enrolled works through them, marked unauthenticated.
    let legacy = json!({ "device_id": "legacy", "mac": "02:00:00:00:0d:50", "current_version": "1.0.0" });
    let resp = http.post(server.device("/api/ota/check")).json(&legacy).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let d: Value = server.get_json("/api/v1/devices/02:00:00:00:0d:50").await;
    assert_eq!((d["authenticated"].clone(), d["auth"].clone()), (json!(false), json!("none")));
    // A site that refuses them.
    let saved: Value = server
        .api(Method::PUT, "/api/v1/settings")
        .json(&json!({ "refuse_unauthenticated": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["effective"]["refuse_unauthenticated"], true, "{saved}");
    let resp = http.post(server.device("/api/ota/check")).json(&legacy).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn claiming_the_target_version_without_the_download_succeeds_nothing() {
    let (server, rollout) = site().await;
    let o = offer(&server, "pump-1", VICTIM).await;
    let job = o["job"].as_str().unwrap();
    let report = json!({ "device_id": "pump-1", "mac": VICTIM, "job": job, "state": "rebooting" });
    let resp = server.device_post("/api/v1/report", VICTIM).json(&report).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Authenticated, on the target version, but nothing was downloaded: not a success.
    for _ in 0..3 {
        let (status, answer) = server.device_check_in(&body("pump-1", VICTIM, "2.0.0")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let j = job_of(&server, rollout, VICTIM).await;
    // The claim was heard (the job records the version), and did not count.
    assert_eq!(j["current_version"], "2.0.0", "{j:#}");
    assert_ne!(j["state"], "succeeded", "{j:#}");
    assert_eq!(j["downloaded"], false);
    assert!(j["evidence"].is_null());
    // With the bytes served on its job's token, the next check-in is evidence.
    let got = server.device_get(o["url"].as_str().unwrap(), VICTIM).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    got.bytes().await.unwrap();
    server.device_check_in(&body("pump-1", VICTIM, "2.0.0")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let j = loop {
        let j = job_of(&server, rollout, VICTIM).await;
        if j["state"] == "succeeded" || Instant::now() > deadline {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(j["evidence"], "authenticated+download");
    // The report says which evidence each success rests on.
    let csv = server
        .api(Method::GET, &format!("/api/v1/rollouts/{rollout}/report?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.lines().next().unwrap().contains("evidence"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with(VICTIM) && l.contains("authenticated+download")), "{csv}");
}

#[tokio::test]
async fn a_report_with_another_devices_job_id_is_refused() {
    let (server, rollout) = site().await;
    let victim = offer(&server, "pump-1", VICTIM).await;
    offer(&server, "pump-2", OTHER).await;
    let victim_job = victim["job"].as_str().unwrap();
    // Job ids are not guessable: `<job>-<command>-<nonce>`.
    assert_eq!(victim_job.split('-').count(), 3, "{victim_job}");
    assert!(victim_job.split('-').nth(2).unwrap().len() >= 16, "{victim_job}");
    let sequential = format!("{}-1", victim_job.split('-').next().unwrap());
    // OTHER, authenticated as itself, reports on the victim's job; a guessed id; no credential.
    let attempts = [
        (json!({ "device_id": "pump-2", "mac": OTHER, "job": victim_job, "state": "failed" }), Some(OTHER)),
        (json!({ "device_id": "pump-1", "mac": VICTIM, "job": victim_job, "state": "failed" }), Some(OTHER)),
        (json!({ "device_id": "pump-2", "mac": OTHER, "job": sequential, "state": "failed" }), Some(OTHER)),
        (json!({ "device_id": "pump-1", "mac": VICTIM, "job": victim_job, "state": "failed" }), None),
    ];
    for (b, as_device) in attempts {
        let req = match as_device {
            Some(mac) => server.device_post("/api/v1/report", mac),
            None => server.http.post(server.device("/api/v1/report")),
        };
        let resp = req.json(&b).send().await.unwrap();
        assert!(matches!(resp.status().as_u16(), 401 | 403), "{b}: {}", resp.status());
    }
    let compat = json!({ "device_id": "pump-1", "job_id": victim_job, "status": "failed" });
    let resp = server.http.post(server.device("/api/ota/status")).json(&compat).send().await.unwrap();
    assert!(matches!(resp.status().as_u16(), 401 | 403));
    let j = job_of(&server, rollout, VICTIM).await;
    assert_eq!(j["state"], "commanded", "nothing changed: {j:#}");
}

#[tokio::test]
async fn a_check_in_with_no_labels_keeps_the_labels_people_set() {
    let server = Server::start().await;
    let mut b = body("pump-1", VICTIM, "1.0.0");
    b["labels"] = json!(["reported"]);
    server.device_check_in(&b).await;
    let resp = server
        .api(Method::POST, &format!("/api/v1/devices/{VICTIM}/labels"))
        .json(&json!({ "add": ["site-a"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    b["labels"] = json!([]);
    let (status, _) = server.device_check_in(&b).await;
    assert_eq!(status, StatusCode::OK);
    let d: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    assert_eq!(d["labels"], json!(["site-a"]), "{d:#}");
    assert_eq!(d["admin_labels"], json!(["site-a"]));
    assert_eq!(d["device_labels"], json!([]));
    // Targets match both kinds.
    b["labels"] = json!(["reported"]);
    server.device_check_in(&b).await;
    server.upload(image("2.0.0", 30_000), &[]).await;
    for target in ["label:site-a", "label:reported"] {
        let preview: Value =
            server.post_json("/api/v1/rollouts/preview", &json!({ "firmware": "2.0.0", "target": target })).await;
        assert_eq!(preview["devices"].as_array().map(Vec::len), Some(1), "{target}: {preview:#}");
    }
    // And after a restart, the two kinds are still apart.
    let (_, _, dir) = server.stop();
    let server = Server::start_in(dir).await;
    let d: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    assert_eq!((d["admin_labels"].clone(), d["device_labels"].clone()), (json!(["site-a"]), json!(["reported"])));
    assert_eq!(d["auth"], "enrolled");
}

#[tokio::test]
async fn unknown_and_known_device_ids_answer_alike() {
    let server = Server::start().await;
    // Two devices known through a compatibility profile, each with an offer waiting: what a LAN
    // client learns by naming an id must not depend on whether the id exists or has work.
    let (status, fw) = server.upload(image("2.0.0", 30_000), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let check = |id: &str, mac: &str| {
        let b =
            json!({ "device_id": id, "mac": mac, "device_model": "demo", "chip": "esp32", "current_version": "1.0.0" });
        server.http.post(server.device("/api/ota/check")).json(&b).send()
    };
    for (id, mac) in [("legacy", "02:00:00:00:0d:60"), ("other", "02:00:00:00:0d:61")] {
        assert_eq!(check(id, mac).await.unwrap().status(), 200);
    }
    let rollout = start_rollout(&server).await;
    let mut jobs = Vec::new();
    for (id, mac) in [("legacy", "02:00:00:00:0d:60"), ("other", "02:00:00:00:0d:61")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let offer = loop {
            let a: Value = check(id, mac).await.unwrap().json().await.unwrap();
            if a["update_available"] == true {
                break a;
            }
            assert!(Instant::now() < deadline, "no offer for {id}: {a}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        jobs.push(offer["job"].as_str().unwrap().to_owned());
    }
    let other_job = jobs[1].clone();

    // The query-string profile with an id alone: "legacy" (an offer waiting) and "ghost" (never
    // seen) get the same answer, and neither gets the offer.
    let ask = |id: &str| {
        server.http.get(server.device(&format!("/api/firmware/check?device_id={id}&current_version=1.0.0"))).send()
    };
    let a = ask("legacy").await.unwrap();
    let b = ask("ghost").await.unwrap();
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let (a, b) = (a.text().await.unwrap(), b.text().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(serde_json::from_str::<Value>(&a).unwrap(), json!({ "update_available": false }));

    // "legacy" reporting on another device's real job, and on a job that does not exist: the
    // same refusal, word for word.
    let r = |job: &str| {
        let b = json!({ "device_id": "legacy", "job_id": job, "status": "failed" });
        server.http.post(server.device("/api/ota/status")).json(&b).send()
    };
    let ghost_job = "999-1-ffffffffffffffffffffffff";
    let (x, y) = (r(&other_job).await.unwrap(), r(ghost_job).await.unwrap());
    assert!(x.status().is_client_error(), "{}", x.status());
    assert_eq!(x.status(), y.status());
    assert_eq!(x.text().await.unwrap(), y.text().await.unwrap().replace(ghost_job, &other_job));
    // And changed nothing: "other"'s job is still waiting for it, not failed.
    let r: Value = server.get_json(&format!("/api/v1/rollouts/{rollout}")).await;
    let job = r["jobs"].as_array().unwrap().iter().find(|j| j["mac"] == "02:00:00:00:0d:61").cloned();
    assert_eq!(job.as_ref().map(|j| j["state"].clone()), Some(json!("commanded")), "{r:#}");
    assert_eq!(r["rollout"]["counts"]["failed"], 0, "{r:#}");
    // Nothing was registered for the ghost.
    let devices: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(devices.len(), 2);
}

#[tokio::test]
async fn approval_revocation_and_rekey() {
    let server = Server::start().await;
    let resp =
        server.api(Method::PUT, "/api/v1/settings").json(&json!({ "approve_new_devices": true })).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (_, a) = server.device_check_in(&body("pump-1", VICTIM, "1.0.0")).await;
    assert_eq!(a["approval"], "pending", "{a}");
    let d: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    assert_eq!((d["auth"].clone(), d["authenticated"].clone()), (json!("pending"), json!(false)));
    // A rollout leaves it out until it is approved, and says why.
    server.upload(image("2.0.0", 30_000), &[]).await;
    let preview: Value =
        server.post_json("/api/v1/rollouts/preview", &json!({ "firmware": "2.0.0", "target": "all" })).await;
    assert_eq!(preview["skipped"][0]["reason"], "waiting for approval (devices approve)", "{preview:#}");
    let d: Value = server.post_json("/api/v1/devices/pump-1/approve", &json!({})).await;
    assert_eq!(d["auth"], "enrolled", "{d}");
    let (status, a) = server.device_check_in(&body("pump-1", VICTIM, "1.0.0")).await;
    assert_eq!((status, a), (StatusCode::OK, json!({ "update_available": false })));
    // Revoked: refused, even with its secret.
    let d: Value = server.post_json(&format!("/api/v1/devices/{VICTIM}/revoke"), &json!({})).await;
    assert_eq!(d["auth"], "revoked");
    let (status, _) = server.device_check_in(&body("pump-1", VICTIM, "1.0.0")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Re-keyed: the old secret stops working and the next check-in enrols again.
    let old = server.device_secret(VICTIM).unwrap();
    let d: Value = server.post_json(&format!("/api/v1/devices/{VICTIM}/rekey"), &json!({})).await;
    assert_eq!(d["auth"], "rekey");
    let (status, a) = server.device_check_in(&body("pump-1", VICTIM, "1.0.0")).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_ne!(server.device_secret(VICTIM).unwrap(), old);
    let resp = server.http.post(server.device("/api/v1/check")).bearer_auth(old).json(&body("pump-1", VICTIM, "1.0.0"));
    assert_eq!(resp.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // The CLI does the same.
    let out = server.cli(&["devices", "revoke", "pump-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Value = server.get_json(&format!("/api/v1/devices/{VICTIM}")).await;
    assert_eq!(d["auth"], "revoked");
}

#[tokio::test]
async fn an_impostor_in_the_simulated_fleet_is_refused_and_the_rollout_is_unaffected() {
    let server = Server::start().await;
    server.upload(image("2.0.0", 50_000), &[]).await;
    let impostor = Failures { impostor: true, ..Failures::none() };
    let fleet = Fleet::start(FleetConfig {
        api: Some(server.info.device_url.clone()),
        fleet: vec![(DeviceKind::NativePull, 5)],
        chip: Chip::Esp32,
        model: "demo".into(),
        version: "1.0.0".into(),
        seed: 7,
        id_prefix: "imp".into(),
        address_block: 61,
        poll_interval: Duration::from_millis(200),
        reboot_delay: Duration::from_millis(100),
        failures: vec![("imp-native-pull-4".into(), impostor)],
        ..FleetConfig::default()
    })
    .await
    .unwrap();
    // The four honest devices enrol; the impostor never shows up as itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let devices: Vec<Value> = server.get_json("/api/v1/devices").await;
        if devices.len() == 4 && devices.iter().all(|d| d["authenticated"] == true) {
            break;
        }
        assert!(Instant::now() < deadline, "{devices:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = start_rollout(&server).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r: Value = server.get_json(&format!("/api/v1/rollouts/{id}")).await;
        if r["rollout"]["state"] == "completed" {
            break r;
        }
        assert!(Instant::now() < deadline, "{:#}", r["rollout"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r["rollout"]["counts"]["succeeded"], 4, "{:#}", r["rollout"]);
    assert!(r["jobs"].as_array().unwrap().iter().all(|j| j["evidence"] == "authenticated+download"), "{r:#}");
    // Wait until the impostor was refused a few times, then check it never got through.
    let deadline = Instant::now() + Duration::from_secs(10);
    let imp = loop {
        let imp = fleet.devices().into_iter().find(|d| d.id == "imp-native-pull-4").unwrap();
        if imp.refused >= 2 || Instant::now() > deadline {
            break imp;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(imp.refused >= 2, "{imp:?}");
    assert_eq!(imp.last_error, None, "a forged request got through: {imp:?}");
    assert!(fleet.devices().iter().filter(|d| d.id != "imp-native-pull-4").all(|d| d.version == "2.0.0"));
    let events = security_events(&server).await;
    assert!(!events.is_empty());
    fleet.stop().await;
}

/// Options of a client of the embedded broker logging in as `user`.
fn mqtt_options(server: &Server, client_id: &str, user: &str, pass: &str) -> rumqttc::MqttOptions {
    let url = server.info.mqtt_url.clone().unwrap();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_credentials(user, pass).set_keep_alive(Duration::from_secs(30));
    opts
}

/// An MQTT client of the embedded broker; its SUBACKs go to the returned channel.
fn mqtt_client(
    server: &Server,
    client_id: &str,
    user: &str,
    pass: &str,
) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::SubAck>, tokio::task::JoinHandle<()>) {
    let (client, mut events) = rumqttc::AsyncClient::new(mqtt_options(server, client_id, user, pass), 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) = ev {
                let _ = tx.send(ack);
            }
        }
    });
    (client, rx, task)
}

async fn wait_version(server: &Server, mac: &str, version: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d: Value = server.get_json(&format!("/api/v1/devices/{mac}")).await;
        if d["version"] == version {
            return d;
        }
        assert!(Instant::now() < deadline, "{mac} never on {version}: {d:#}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn an_mqtt_device_login_is_confined_to_its_own_topics() {
    let server = Server::start().await;
    // Enrolment hands out the device's own broker login with its secret.
    let enrol = server.http.post(server.device("/api/v1/check")).json(&body("pump-1", VICTIM, "1.0.0"));
    let answer: Value = enrol.send().await.unwrap().json().await.unwrap();
    let cred = &answer["credential"];
    assert_eq!(cred["mqtt_username"], "pump-1", "{answer}");
    let (user, pass) = (cred["mqtt_username"].as_str().unwrap(), cred["mqtt_password"].as_str().unwrap());
    server.device_check_in(&body("pump-2", OTHER, "1.0.0")).await;

    // A wrong password is refused at CONNECT (the broker's CONNACK says so).
    let (_bad, mut events) = rumqttc::AsyncClient::new(mqtt_options(&server, "pump-1", user, "not-it"), 16);
    let refused = tokio::time::timeout(Duration::from_secs(5), events.poll()).await.expect("an answer to CONNECT");
    assert!(
        matches!(
            refused,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::BadUserNamePassword | rumqttc::ConnectReturnCode::NotAuthorized
            ))
        ),
        "a wrong password must be refused at CONNECT: {refused:?}"
    );

    let (client, mut acks, _task) = mqtt_client(&server, "pump-1", user, pass);
    // `#` and another device's commands are refused; its own commands are granted.
    for (filter, granted) in [("#", false), ("flotilla/pump-2/cmd/ota", false), ("flotilla/pump-1/cmd/ota", true)] {
        client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(5), acks.recv()).await.unwrap().unwrap();
        let ok = !matches!(ack.return_codes[0], rumqttc::SubscribeReasonCode::Failure);
        assert_eq!(ok, granted, "{filter}: {ack:?}");
    }
    // Presence of another device through this login is dropped; its own is believed.
    let forged = json!({ "online": true, "mac": OTHER, "version": "6.6.6" }).to_string();
    client.publish("flotilla/pump-2/status", rumqttc::QoS::AtLeastOnce, false, forged).await.unwrap();
    let own =
        json!({ "online": true, "mac": VICTIM, "model": "demo", "chip": "esp32", "version": "1.1.0" }).to_string();
    client.publish("flotilla/pump-1/status", rumqttc::QoS::AtLeastOnce, false, own).await.unwrap();
    let d = wait_version(&server, VICTIM, "1.1.0").await;
    assert_eq!(d["authenticated"], true);
    let other: Value = server.get_json(&format!("/api/v1/devices/{OTHER}")).await;
    assert_eq!(other["version"], "1.0.0", "{other:#}");

    // The site's shared login sees everything, but the presence of an enrolled device through it
    // is refused by the engine (a security event), while an unenrolled device's counts, marked
    // unauthenticated.
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(server.data_dir().join("mqtt-credentials")).unwrap()).unwrap();
    let (site, mut site_acks, _site_task) =
        mqtt_client(&server, "tech", creds["username"].as_str().unwrap(), creds["password"].as_str().unwrap());
    site.subscribe("#", rumqttc::QoS::AtMostOnce).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), site_acks.recv()).await.unwrap().unwrap();
    assert!(!matches!(ack.return_codes[0], rumqttc::SubscribeReasonCode::Failure));
    let forged = json!({ "online": true, "mac": OTHER, "version": "6.6.6" }).to_string();
    site.publish("flotilla/pump-2/status", rumqttc::QoS::AtLeastOnce, false, forged).await.unwrap();
    let marker = json!({ "online": true, "mac": "02:00:00:00:0d:70", "version": "1.0.0" }).to_string();
    site.publish("flotilla/legacy-1/status", rumqttc::QoS::AtLeastOnce, false, marker).await.unwrap();
    let legacy = wait_version(&server, "02:00:00:00:0d:70", "1.0.0").await;
    assert_eq!(legacy["authenticated"], false);
    let other: Value = server.get_json(&format!("/api/v1/devices/{OTHER}")).await;
    assert_eq!(other["version"], "1.0.0", "{other:#}");
    let events = security_events(&server).await;
    assert!(events.iter().any(|e| e["data"]["what"] == "mqtt presence"), "{events:#?}");
}
