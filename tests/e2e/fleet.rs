//! The fleet as a technician sees it, end to end: online state that follows each transport
//! (an MQTT device is online while its broker session lives), targets that say what they leave
//! out, channels and firmware suggestions, anti-rollback, forgetting a device, archived firmware,
//! the audit log's retention, and the metrics.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, image};

/// The longest any device that is not on MQTT may stay silent before the engine shows it offline
/// (the inventory's `MAX_OFFLINE_MS`).
const LONGEST_SILENCE_SECS: i64 = 2 * 3600;

async fn check_in(server: &Server, body: Value) -> Value {
    let (status, answer) = server.device_check_in(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn pull(mac: &str, version: &str) -> Value {
    json!({ "device_id": format!("pull-{}", mac[9..].replace(':', "")), "mac": mac, "model": "demo", "chip": "esp32", "version": version })
}

async fn device(server: &Server, mac: &str) -> Value {
    server.get_json(&format!("/api/v1/devices/{mac}")).await
}

async fn wait_device(server: &Server, mac: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d = device(server, mac).await;
        if pred(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "{mac} never {what}: {d:#}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// An MQTT device as `mosquitto_pub -l` is one: connected as `id`, publishing each line written to
/// it as a retained presence, with an optional Last Will.
fn mqtt_device(server: &Server, id: &str, will: bool) -> Child {
    let url = server.mqtt_url();
    let rest = url.strip_prefix("mqtt://").unwrap();
    let (creds, host) = rest.split_once('@').unwrap();
    let (user, pass) = creds.split_once(':').unwrap();
    let port = host.rsplit(':').next().unwrap();
    let topic = format!("flotilla/{id}/status");
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", port, "-u", user, "-P", pass, "-i", id, "-t", &topic, "-r", "-q", "1", "-l"]);
    if will {
        cmd.args(["--will-topic", &topic, "--will-payload", r#"{"online":false}"#, "--will-retain", "--will-qos", "1"]);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub (Debian's mosquitto-clients) runs")
}

fn presence(child: &mut Child, mac: &str, version: &str) {
    let line = json!({ "online": true, "mac": mac, "model": "demo", "chip": "esp32", "version": version }).to_string();
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
}

#[tokio::test]
async fn mqtt_devices_are_online_while_their_session_lives_and_the_preview_says_who_is_left_out() {
    let (server, clock) = Server::start_with_fake_clock().await;
    let (status, _) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(status, 201);
    let (a, b) = ("02:00:00:00:0a:01", "02:00:00:00:0a:02");
    // Device A sets no Last Will (as many do); device B does.
    let mut dev_a = mqtt_device(&server, "dev-a", false);
    let mut dev_b = mqtt_device(&server, "dev-b", true);
    presence(&mut dev_a, a, "1.0.0");
    presence(&mut dev_b, b, "1.0.0");
    wait_device(&server, a, "came online", |d| d["online"] == true).await;
    wait_device(&server, b, "came online", |d| d["online"] == true).await;
    // Quiet but connected while the engine's clock moves past the longest silence it allows: a
    // pull device quiet as long is shown offline by the next liveness sweep (every 5 s), the
    // connected MQTT devices are not.
    let quiet = "02:00:00:00:0a:03";
    check_in(&server, json!({ "device_id": "quiet-pull", "mac": quiet, "model": "other", "version": "1.0.0" })).await;
    clock.set(LONGEST_SILENCE_SECS + 60);
    wait_device(&server, quiet, "timed out (no liveness sweep saw the new time?)", |d| d["online"] == false).await;
    for m in [a, b] {
        assert_eq!(device(&server, m).await["online"], true, "a connected MQTT device is not timed out: {m}");
    }

    // A closes its connection cleanly (no will is sent): its session's end takes it offline.
    drop(dev_a.stdin.take());
    assert!(dev_a.wait().unwrap().success());
    wait_device(&server, a, "went offline", |d| d["online"] == false).await;
    // B's connection is lost: its will says so.
    dev_b.kill().unwrap();
    dev_b.wait().unwrap();
    wait_device(&server, b, "went offline", |d| d["online"] == false).await;
    let events: Value = server.get_json("/api/v1/events?kind=device.offline").await;
    let reasons: Vec<(&str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["data"]["mac"].as_str().unwrap(), e["data"]["reason"].as_str().unwrap()))
        .collect();
    assert!(reasons.contains(&(a, "its MQTT session ended")), "{reasons:?}");
    assert!(reasons.iter().any(|(m, r)| *m == b && r.contains("Last Will")), "{reasons:?}");

    // The wizard's default target leaves both out, and says so (by name, with the reason).
    check_in(&server, pull("02:00:00:00:0b:01", "1.0.0")).await;
    check_in(&server, pull("02:00:00:00:0b:02", "2.0.0")).await;
    let preview: Value = server
        .post_json(
            "/api/v1/rollouts/preview",
            &json!({ "firmware": "2.0.0", "target": "model:demo and outdated and online" }),
        )
        .await;
    assert_eq!(preview["devices"].as_array().unwrap().len(), 1, "{preview:#}");
    let left_out: Vec<(&str, &str)> = preview["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["mac"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(left_out.len(), 3, "{left_out:?}");
    assert!(left_out.iter().any(|(m, r)| *m == a && r.starts_with("offline (last seen")), "{left_out:?}");
    assert!(left_out.iter().any(|(m, r)| *m == "02:00:00:00:0b:02" && *r == "already on 2.0.0"), "{left_out:?}");
}

#[tokio::test]
async fn channels_suggestions_anti_rollback_and_archived_firmware() {
    let server = Server::start().await;
    let (status, stable) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(status, 201, "{stable}");
    let (status, beta) = server.upload(image("2.1.0", 61_000), &[("channel", "beta")]).await;
    assert_eq!(status, 201, "{beta}");
    let (s1, s2, b1, b2) = ("02:00:00:00:0c:01", "02:00:00:00:0c:02", "02:00:00:00:0c:03", "02:00:00:00:0c:04");
    for m in [s1, s2, b1, b2] {
        check_in(&server, pull(m, "1.0.0")).await;
    }
    // b1 follows beta itself; b2 through a label.
    let resp = server
        .api(Method::PUT, &format!("/api/v1/devices/{b1}/channel"))
        .json(&json!({ "channel": "beta" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = server
        .api(Method::POST, &format!("/api/v1/devices/{b2}/labels"))
        .json(&json!({ "add": ["lab"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        server.api(Method::PUT, "/api/v1/channels/lab").json(&json!({ "channel": "beta" })).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(device(&server, b2).await["channel_from"], "label:lab");

    // Each channel is offered the newest firmware it follows, with a target for exactly those.
    let suggestions: Value = server.get_json("/api/v1/firmware/suggestions").await;
    let got: Vec<(&str, &str, u64)> = suggestions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (s["firmware_version"].as_str().unwrap(), s["target"].as_str().unwrap(), s["outdated"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2.0.0", "model:demo and channel:stable and outdated", 2),
            ("2.1.0", "model:demo and channel:beta and outdated", 2)
        ]
    );
    // Beta firmware is refused for stable devices, with the reason.
    let preview: Value =
        server.post_json("/api/v1/rollouts/preview", &json!({ "firmware": "2.1.0", "target": "all" })).await;
    let skipped: Vec<&str> =
        preview["skipped"].as_array().unwrap().iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(skipped, vec!["follows the stable channel; firmware 2.1.0 is on beta"; 2]);

    // Anti-rollback: a device at secure_version 3 does not take an image at 2.
    let mut body = pull(s2, "1.0.0");
    body["secure_version"] = json!(3);
    check_in(&server, body).await;
    assert_eq!(device(&server, s2).await["secure_version"], 3);
    let preview: Value =
        server.post_json("/api/v1/rollouts/preview", &json!({ "firmware": "2.0.0", "target": "channel:stable" })).await;
    let reason = preview["skipped"][0]["reason"].as_str().unwrap();
    assert_eq!(preview["skipped"][0]["mac"], s2);
    assert!(reason.contains("secure_version 0 is below the device's 3"), "{reason}");

    // A stepping stone is checked like an import's and signed into the manifest devices get.
    let sid = stable["firmware"]["id"].as_i64().unwrap();
    let patch =
        |v: &str| server.api(Method::PATCH, &format!("/api/v1/firmware/{sid}")).json(&json!({ "min_version": v }));
    let bad = patch("banana").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text().await.unwrap());
    let above = patch("3.0.0").send().await.unwrap();
    assert_eq!(above.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fw: Value = patch("v1.5.0").send().await.unwrap().json().await.unwrap();
    assert_eq!(fw["min_version"], "1.5.0");
    assert_eq!(fw["manifest"]["manifest"]["min_version"], "1.5.0", "devices are told the new stepping stone");
    let key: Value = server.get_json("/api/v1/keys/public").await;
    assert_eq!(fw["manifest"]["key_id"], key["key_id"]);
    assert_ne!(fw["manifest"]["signature"], stable["firmware"]["manifest"]["signature"], "signed again");
    let fw: Value = patch("").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (fw["min_version"].clone(), fw["manifest"]["manifest"]["min_version"].clone()),
        (Value::Null, Value::Null)
    );

    // Archived firmware stays in the library for reports but cannot start a rollout.
    let id = beta["firmware"]["id"].as_i64().unwrap();
    let resp = server
        .api(Method::PATCH, &format!("/api/v1/firmware/{id}"))
        .json(&json!({ "archived": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": "2.1.0", "target": "channel:beta" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap().contains("archived"));
    let suggestions: Value = server.get_json("/api/v1/firmware/suggestions?target=channel:beta").await;
    assert_eq!(suggestions[0]["firmware_version"], "2.0.0", "archived firmware is never suggested");
}

#[tokio::test]
async fn a_forgotten_device_leaves_the_inventory_and_comes_back_as_new() {
    let server = Server::start().await;
    let (status, _) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(status, 201);
    let (gone, busy) = ("02:00:00:00:0d:01", "02:00:00:00:0d:02");
    check_in(&server, pull(gone, "1.0.0")).await;
    check_in(&server, pull(busy, "1.0.0")).await;
    let first_seen = device(&server, gone).await["first_seen"].clone();
    let resp = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": "2.0.0", "target": format!("device:{busy}"), "start": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // A device a rollout still works on cannot be forgotten.
    let resp = server.api(Method::DELETE, &format!("/api/v1/devices/{busy}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(resp.text().await.unwrap().contains("unfinished rollout 1"));
    let resp = server.api(Method::DELETE, &format!("/api/v1/devices/{gone}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The firmware a rollout used cannot be deleted; the refusal names it and the way out.
    let resp = server.api(Method::DELETE, "/api/v1/firmware/1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let text = resp.text().await.unwrap();
    assert!(text.contains("firmware 2.0.0 (demo) is used by rollout 1 \\\"demo 2.0.0"), "{text}");
    assert!(text.contains("archive it"), "{text}");
    assert_eq!(server.api(Method::GET, &format!("/api/v1/devices/{gone}")).send().await.unwrap().status(), 404);
    // It stays forgotten across a restart, and a check-in brings it back as new.
    let (stopped, _, dir) = server.stop();
    assert!(stopped.success());
    let server = Server::start_in(dir).await;
    let list: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert!(list.iter().any(|d| d["mac"] == busy), "the inventory is read back: {list:?}");
    assert!(list.iter().all(|d| d["mac"] != gone), "forgotten across the restart");
    tokio::time::sleep(Duration::from_millis(20)).await;
    check_in(&server, pull(gone, "1.0.0")).await;
    let back = device(&server, gone).await;
    assert_ne!(back["first_seen"], first_seen, "{back:#}");
}

#[tokio::test]
async fn last_seen_written_behind_survives_a_stop() {
    // A check-in that changes nothing moves last_seen in memory only; it is written every
    // 30 s, and at shutdown whatever is left.
    let server = Server::start().await;
    let mac = "02:00:00:00:0e:01";
    check_in(&server, pull(mac, "1.0.0")).await;
    let first = device(&server, mac).await["last_seen"].as_str().unwrap_or_default().to_owned();
    let mut latest = first.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while latest == first {
        assert!(Instant::now() < deadline, "last_seen never moved from {first}");
        check_in(&server, pull(mac, "1.0.0")).await;
        latest = device(&server, mac).await["last_seen"].as_str().unwrap_or_default().to_owned();
    }
    let (stopped, _, dir) = server.stop();
    assert!(stopped.success());
    let server = Server::start_in(dir).await;
    let after = device(&server, mac).await;
    assert_eq!(after["last_seen"], latest.as_str(), "the last check-in before the stop: {after:#}");
}

#[tokio::test]
async fn metrics_and_the_audit_logs_retention() {
    let server = Server::start().await;
    let (status, _) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(status, 201);
    for i in 0..150u32 {
        check_in(&server, pull(&format!("02:00:00:00:{:02x}:{:02x}", 0x10 + i / 256, i % 256), "1.0.0")).await;
    }
    check_in(&server, pull("02:00:00:00:0e:01", "2.0.0")).await;
    // Prometheus text on the admin API, behind the token like everything there.
    let resp = server.http.get(server.admin("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let text = server.api(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(text.contains("flotilla_devices{family=\"native\",version=\"1.0.0\",online=\"true\"} 150"), "{text}");
    assert!(text.contains("flotilla_devices{family=\"native\",version=\"2.0.0\",online=\"true\"} 1"), "{text}");
    assert!(text.contains("flotilla_rollouts{state=\"running\"} 0"), "{text}");
    assert!(text.contains("# TYPE flotilla_download_bytes_total counter"), "{text}");
    let fleet: Value = server.get_json("/api/v1/metrics/fleet").await;
    let now = fleet["versions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(now["versions"], json!({ "1.0.0": 150, "2.0.0": 1 }));

    // 150+ events now; a retention of 100 events, saved in the settings, applies shortly after a
    // start (and hourly), without a restart being asked for.
    let events: Value = server.get_json("/api/v1/events?limit=1000").await;
    assert!(events["events"].as_array().unwrap().len() > 150);
    let newest_before = events["events"].as_array().unwrap().iter().filter_map(|e| e["id"].as_i64()).max().unwrap();
    let resp =
        server.api(Method::PUT, "/api/v1/settings").json(&json!({ "event_retention_max": 100 })).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["restart_required"], false, "retention applies without a restart");
    assert_eq!(view["effective"]["event_retention_max"], 100);
    let (_, _, dir) = server.stop();
    let server = Server::start_in(dir).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events: Value = server.get_json("/api/v1/events?limit=1000").await;
        let n = events["events"].as_array().unwrap().len();
        if n <= 100 {
            // Exactly the newest 100 are kept (ids are contiguous): this start's own event and
            // the newest from before the restart among them.
            assert_eq!(n, 100, "pruned to the retention, not below it");
            let ids: Vec<i64> =
                events["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
            let (newest, oldest) = (ids.iter().max().copied().unwrap(), ids.iter().min().copied().unwrap());
            assert_eq!(newest - oldest, 99, "the newest 100, none lost between them: {ids:?}");
            assert!(ids.contains(&newest_before), "{newest_before} (before the restart) kept: {ids:?}");
            assert!(events["events"].as_array().unwrap().iter().take(5).any(|e| e["kind"] == "engine.started"));
            break;
        }
        assert!(Instant::now() < deadline, "still {n} events after the retention of 100");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bad =
        server.api(Method::PUT, "/api/v1/settings").json(&json!({ "event_retention_days": 0 })).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
