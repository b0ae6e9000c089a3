//! What the UI needs beyond the plain rollout API: live `rollout.progress` events on the stream
//! (coalesced, live only), a rollout preview that stores nothing, and a device's history.

use std::time::{Duration, Instant};

use flotilla_proto::Chip;
use flotilla_sim::{DeviceKind, Fleet, FleetConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, image};

const NEW: &str = "2.0.0";

/// One SSE frame: its `event:`, `id:` (if any) and parsed `data:`.
#[derive(Debug)]
struct Frame {
    kind: String,
    id: Option<String>,
    data: Value,
    received: Instant,
}

/// Reads the next SSE frame (comments and keep-alives skipped).
async fn next_frame(resp: &mut reqwest::Response, buf: &mut String, deadline: tokio::time::Instant) -> Frame {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let text: String = buf.drain(..end + 2).collect();
            let (mut kind, mut id, mut data) = (None, None, None);
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let (Some(kind), Some(data)) = (kind, data) {
                return Frame { kind, id, data, received: Instant::now() };
            }
        }
        let chunk =
            tokio::time::timeout_at(deadline, resp.chunk()).await.expect("the stream went quiet").unwrap().unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_streams_coalesced_progress_and_leaves_a_device_history() {
    let server = Server::start().await;
    let (code, fw) = server.upload(image(NEW, 100_000), &[]).await;
    assert_eq!(code, 201, "{fw}");
    let config = FleetConfig {
        api: Some(server.info.device_url.clone()),
        mqtt: Some(server.mqtt_url()),
        fleet: vec![(DeviceKind::NativePull, 4), (DeviceKind::NativeMqtt, 4)],
        chip: Chip::Esp32,
        model: "demo".into(),
        version: "1.0.0".into(),
        seed: 9,
        address_block: 40,
        poll_interval: Duration::from_millis(200),
        reboot_delay: Duration::from_millis(200),
        ..FleetConfig::default()
    };
    let fleet = Fleet::start(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.api(Method::GET, "/api/v1/devices").send().await.unwrap().json::<Vec<Value>>().await.unwrap().len() < 8
    {
        assert!(Instant::now() < deadline, "devices never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut stream = server.api(Method::GET, "/api/v1/events/stream").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let started = Instant::now();
    let resp = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": NEW, "target": "all", "waves": [{"percent": 100.0}], "concurrency": 8, "step_timeout_secs": 60, "start": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["rollout"]["id"].as_i64().unwrap();

    // Follow the stream until a progress event says every job succeeded.
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut progress: Vec<Frame> = Vec::new();
    let mut stored_job_events = 0;
    loop {
        let f = next_frame(&mut stream, &mut buf, deadline).await;
        if f.kind.starts_with("job.") {
            assert!(f.id.is_some(), "stored events keep their id");
            stored_job_events += 1;
        }
        if f.kind != "rollout.progress" {
            continue;
        }
        assert_eq!(f.id, None, "a live-only event has no SSE id");
        assert_eq!(f.data["id"], 0);
        assert_eq!(f.data["subject"], format!("rollout:{id}"));
        let done = f.data["data"]["counts"]["succeeded"] == 8;
        progress.push(f);
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    // Coalesced: at most one event per 250 ms (plus the edges), far fewer than the job changes.
    let allowed = elapsed.as_millis() / 250 + 2;
    assert!((progress.len() as u128) <= allowed, "{} progress events in {elapsed:?}", progress.len());
    assert!(
        progress.len() < stored_job_events,
        "{} progress events for {stored_job_events} job events",
        progress.len()
    );
    let close = progress.windows(3).filter(|w| w[2].received - w[0].received < Duration::from_millis(400)).count();
    assert!(close <= progress.len() / 4, "events come faster than every 250 ms: {close}");
    // Every job shows up, with the fields the UI needs; counts and waves come with each event.
    let mut seen: Vec<String> = Vec::new();
    for f in &progress {
        let d = &f.data["data"];
        assert_eq!(d["rollout"], id);
        assert_eq!(d["counts"]["total"], 8);
        assert_eq!(d["waves"].as_array().unwrap().len(), 1);
        for j in d["jobs"].as_array().unwrap() {
            assert!(
                j["job"].is_i64() && j["state"].is_string() && j.get("progress").is_some() && j.get("error").is_some()
            );
            seen.push(j["mac"].as_str().unwrap().to_owned());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);

    // Live only: nothing of it in the audit log.
    let page: Value = server.get_json("/api/v1/events?limit=1000").await;
    assert!(page["events"].as_array().unwrap().iter().all(|e| e["kind"] != "rollout.progress"));

    // The history of one device: its job in this rollout and its events, newest first.
    let mac = fleet.devices()[0].mac.to_lowercase();
    let resp =
        server.api(Method::GET, &format!("/api/v1/devices/{}/history", mac.to_uppercase())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h: Value = resp.json().await.unwrap();
    assert_eq!(h["mac"], mac);
    let jobs = h["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{h:#}");
    assert_eq!((jobs[0]["rollout_id"].as_i64(), jobs[0]["firmware_version"].as_str()), (Some(id), Some(NEW)));
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["from_version"], "1.0.0");
    let events = h["events"].as_array().unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(events.iter().all(|e| e["subject"] == format!("device:{mac}")));
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"job.succeeded"), "{kinds:?}");
    for k in ["job.commanded", "job.verifying", "device.discovered"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let missing = server.api(Method::GET, "/api/v1/devices/02:00:00:00:00:99/history").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    fleet.stop().await;
}

#[tokio::test]
async fn a_preview_lists_waves_and_skipped_devices_and_stores_nothing() {
    let server = Server::start().await;
    server.upload(image(NEW, 50_000), &[]).await;
    let devices = [
        ("02:00:00:00:01:01", "esp32", "1.0.0"),
        ("02:00:00:00:01:02", "esp32", "1.0.0"),
        ("02:00:00:00:01:03", "esp32", "1.5.0"),
        ("02:00:00:00:01:04", "esp32", "2.0.0"),
        ("02:00:00:00:01:05", "esp32", "3.0.0"),
        ("02:00:00:00:01:06", "esp8266", "1.0.0"),
    ];
    for (mac, chip, version) in devices {
        let body = json!({ "mac": mac, "name": format!("dev {mac}"), "family": "native", "model": "demo", "chip": chip, "version": version });
        let resp = server.api(Method::POST, "/api/v1/devices").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let events_before: Value = server.get_json("/api/v1/events?limit=1000").await;

    let body = json!({ "firmware": NEW, "target": "all", "waves": [{"count": 1}, {"percent": 100.0}], "start": true });
    let resp = server.api(Method::POST, "/api/v1/rollouts/preview").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["firmware_version"], NEW);
    assert_eq!(p["targeted"], 6);
    assert_eq!(p["wave_sizes"], json!([1, 2]));
    let updated: Vec<(&str, &str)> = p["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["mac"].as_str().unwrap(), d["current_version"].as_str().unwrap()))
        .collect();
    let mut macs: Vec<&str> = updated.iter().map(|d| d.0).collect();
    macs.sort_unstable();
    assert_eq!(macs, ["02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:01:03"]);
    assert!(p["devices"].as_array().unwrap().iter().all(|d| d["name"].as_str().unwrap().starts_with("dev ")));
    let skipped: Vec<(&str, &str)> = p["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["mac"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, "02:00:00:00:01:04");
    assert!(skipped[0].1.contains("already on 2.0.0"), "{skipped:?}");
    assert!(skipped[1].1.contains("downgrade"), "{skipped:?}");
    assert!(skipped[2].1.contains("chip esp8266"), "{skipped:?}");

    // Nothing stored: no rollout, no event. Events are written behind, in order: a device added
    // after the preview (answered once its own events are stored) shows that anything the
    // preview had queued would be stored by now too.
    let rollouts: Vec<Value> = server.get_json("/api/v1/rollouts").await;
    assert!(rollouts.is_empty());
    let sentinel = json!({ "mac": "02:00:00:00:01:99", "family": "native", "chip": "esp32", "version": "1.0.0" });
    let resp = server.api(Method::POST, "/api/v1/devices").json(&sentinel).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let events_after: Value = server.get_json("/api/v1/events?limit=1000").await;
    let before: Vec<&Value> = events_before["events"].as_array().unwrap().iter().collect();
    let new: Vec<&Value> = events_after["events"].as_array().unwrap().iter().filter(|e| !before.contains(e)).collect();
    assert!(!new.is_empty(), "the sentinel's events are stored");
    assert!(new.iter().all(|e| e["subject"] == "device:02:00:00:00:01:99"), "only the sentinel's: {new:#?}");

    // The same checks as create: a bad spec is refused the same way.
    let bad = json!({ "firmware": NEW, "target": "all", "concurrency": 0 });
    let resp = server.api(Method::POST, "/api/v1/rollouts/preview").json(&bad).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let none = json!({ "firmware": "9.9.9", "target": "all" });
    let resp = server.api(Method::POST, "/api/v1/rollouts/preview").json(&none).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
