//! Every control a technician has over a rollout, end to end against a real `flotilla serve`:
//! resume after a self-pause, retry while paused, skipping a device that vanished, manual pause,
//! cancel, manual approval between waves, a scheduled start, the command rate, and maintenance
//! windows (under libfaketime, so the engine's own clock crosses the window's edges).
//!
//! Devices are spoken by hand over the native pull protocol, so each test decides exactly when a
//! device checks in, what it reports and which version it comes back on.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use flotilla_store::clock;

use crate::support::{Server, image};

fn device_id(mac: &str) -> String {
    format!("dev-{}", mac[9..].replace(':', ""))
}

fn mac(n: u8) -> String {
    format!("02:00:00:00:00:{n:02x}")
}

async fn check_in(server: &Server, mac: &str, version: &str) -> Value {
    let body = json!({ "device_id": device_id(mac), "mac": mac, "model": "demo", "chip": "esp32", "version": version });
    let (status, answer) = server.device_check_in(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn report(server: &Server, mac: &str, job: &str, state: &str) {
    let body = json!({ "device_id": device_id(mac), "mac": mac, "job": job, "state": state });
    let resp = server.device_post("/api/v1/report", mac).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
}

/// Checks in on 1.0.0 until the engine offers the update (bounded); the offer.
async fn wait_offer(server: &Server, mac: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = check_in(server, mac, "1.0.0").await;
        if a["update_available"] == true {
            return a;
        }
        assert!(Instant::now() < deadline, "{mac} was never offered the update");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The device installs and reboots, then checks in on `version` (2.0.0: success; the old one: a
/// rollback, which fails the job).
async fn come_back(server: &Server, mac: &str, offer: &Value, version: &str) {
    // The download, with the device's credential: the evidence a success needs.
    let got = server.device_get(offer["url"].as_str().unwrap(), mac).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    got.bytes().await.unwrap();
    report(server, mac, offer["job"].as_str().unwrap(), "rebooting").await;
    check_in(server, mac, version).await;
}

/// Several check-ins, none of which is offered anything (a device that must not be commanded).
async fn never_offered(server: &Server, mac: &str, what: &str) {
    for _ in 0..6 {
        assert_eq!(check_in(server, mac, "1.0.0").await["update_available"], false, "{mac} was commanded {what}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

async fn rollout(server: &Server, id: i64) -> Value {
    server.get_json(&format!("/api/v1/rollouts/{id}")).await
}

async fn wait_for(server: &Server, id: i64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = rollout(server, id).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#}", r["rollout"]);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

async fn act(server: &Server, id: i64, action: &str) -> Value {
    let resp = server.api(Method::POST, &format!("/api/v1/rollouts/{id}/{action}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{action}: {}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

/// A server with firmware 2.0.0 and `n` devices on 1.0.0.
async fn site(n: u8) -> Server {
    let server = Server::start().await;
    let (status, fw) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(status, 201, "{fw}");
    for i in 1..=n {
        check_in(&server, &mac(i), "1.0.0").await;
    }
    server
}

async fn create(server: &Server, body: Value) -> Value {
    let resp = server.api(Method::POST, "/api/v1/rollouts").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

fn macs_in_wave(detail: &Value, wave: u64) -> Vec<String> {
    detail["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["wave"] == wave)
        .map(|j| j["mac"].as_str().unwrap().to_owned())
        .collect()
}

fn job_of<'a>(detail: &'a Value, mac: &str) -> &'a Value {
    detail["jobs"].as_array().unwrap().iter().find(|j| j["mac"] == mac).unwrap()
}

#[tokio::test]
async fn resume_acknowledges_failures_and_the_success_gate_and_the_rollout_completes() {
    // The finding: wave 2 paused on "1 of 4 devices failed"; a second device failed while it was
    // paused; Resume was followed ~100 ms later by "2 of 4 devices succeeded, below the 90 %
    // success gate" and the rest stayed queued for good.
    let server = site(10).await;
    let created = create(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "retries": 0, "step_timeout_secs": 60,
                "waves": [{"count": 1}, {"count": 5}, {"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    assert_eq!(created["rollout"]["wave_count"], 3);
    let (canary, wave2, wave3) = (macs_in_wave(&created, 1), macs_in_wave(&created, 2), macs_in_wave(&created, 3));
    assert_eq!((canary.len(), wave2.len(), wave3.len()), (1, 4, 5));

    let offer = wait_offer(&server, &canary[0]).await;
    come_back(&server, &canary[0], &offer, "2.0.0").await;
    wait_for(&server, id, "wave 2", |r| r["rollout"]["current_wave"] == 2).await;
    let mut offers = Vec::new();
    for m in &wave2 {
        offers.push(wait_offer(&server, m).await);
    }
    // One device of wave 2 comes back on the old version: 1 of 4 is over 10 %.
    come_back(&server, &wave2[0], &offers[0], "1.0.0").await;
    let r = wait_for(&server, id, "the pause", |r| r["rollout"]["state"] == "paused").await;
    let paused_reason = r["rollout"]["pause_reason"].as_str().unwrap().to_owned();
    assert_eq!(paused_reason, "wave 2 of 3: 1 of 4 devices failed (threshold 10%)");
    assert!(r["rollout"]["paused_at"].is_string());
    // While paused, a second device fails and two succeed (they were already updating).
    come_back(&server, &wave2[1], &offers[1], "1.0.0").await;
    come_back(&server, &wave2[2], &offers[2], "2.0.0").await;
    come_back(&server, &wave2[3], &offers[3], "2.0.0").await;
    let r = wait_for(&server, id, "the second failure", |r| r["rollout"]["counts"]["failed"] == 2).await;
    assert_eq!(r["rollout"]["pause_reason"], paused_reason.as_str(), "the reason stays as recorded");
    assert_eq!(r["rollout"]["waves"][1]["counts"]["failed"], 2, "the numbers of now are beside it");
    // What Resume will do is said before it is pressed — by the API and the CLI.
    let said = r["rollout"]["on_resume"].as_str().unwrap();
    assert!(said.starts_with("Resume acknowledges 2 failed devices (wave 2)"), "{said}");
    assert!(said.contains("90% success gate"), "{said}");
    let status = server.cli(&["rollout", "status", &id.to_string()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("Resume acknowledges 2 failed devices"), "{status:?}");
    for m in &wave3 {
        never_offered(&server, m, "while paused").await;
    }

    let out = server.cli(&["rollout", "resume", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    // No new pause: wave 3 starts and every one of its devices is updated.
    let r = wait_for(&server, id, "wave 3", |r| r["rollout"]["current_wave"] == 3).await;
    assert_eq!(r["rollout"]["state"], "running", "{:#}", r["rollout"]);
    for m in &wave3 {
        let offer = wait_offer(&server, m).await;
        come_back(&server, m, &offer, "2.0.0").await;
    }
    let r = wait_for(&server, id, "completion", |r| r["rollout"]["state"] == "completed").await;
    assert_eq!(r["rollout"]["counts"]["succeeded"], 8);
    assert_eq!(r["rollout"]["outcome"], "some_failed", "two devices were not updated");
    let events: Value = server.get_json("/api/v1/events?kind=rollout.acknowledged").await;
    assert_eq!(events["events"][0]["data"]["failures"], 2);
}

#[tokio::test]
async fn retry_while_paused_resumes_and_attempts_are_counted_truly() {
    let server = site(1).await;
    let m = mac(1);
    let created = create(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "retries": 0, "waves": [{"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    let offer = wait_offer(&server, &m).await;
    assert_eq!(offer["job"].as_str().unwrap().split('-').nth(1), Some("1"));
    come_back(&server, &m, &offer, "1.0.0").await;
    wait_for(&server, id, "the pause", |r| r["rollout"]["state"] == "paused").await;

    // Retry failed while paused: queued again and running, in the same action.
    let r = act(&server, id, "retry-failed").await;
    assert_eq!(r["state"], "running", "{r:#}");
    let offer = wait_offer(&server, &m).await;
    come_back(&server, &m, &offer, "2.0.0").await;
    let r = wait_for(&server, id, "completion", |r| r["rollout"]["state"] == "completed").await;
    let job = job_of(&r, &m);
    assert_eq!(job["attempts"], 2);
    let attempts: Vec<&str> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "commanded")
        .map(|t| t["detail"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, vec!["attempt 1", "attempt 2"]);
    assert_eq!(r["rollout"]["outcome"], "all_succeeded");
    let csv = server.api(Method::GET, &format!("/api/v1/rollouts/{id}/report?format=csv")).send().await.unwrap();
    let csv = csv.text().await.unwrap();
    let row = csv.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split(',').collect();
    assert_eq!(
        (cols[2], cols[3], cols[5], cols[7]),
        ("1", "succeeded", "2.0.0", "2"),
        "wave, state, to, attempts: {row}"
    );
}

#[tokio::test]
async fn a_vanished_device_is_explained_and_can_be_skipped() {
    let server = site(3).await;
    let created = create(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 300, "retries": 1,
                "waves": [{"count": 2}, {"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    let first = macs_in_wave(&created, 1);
    let (ok, gone) = (&first[0], &first[1]);
    let offer = wait_offer(&server, ok).await;
    come_back(&server, ok, &offer, "2.0.0").await;
    wait_offer(&server, gone).await; // it took the command, then vanished
    let r = wait_for(&server, id, "the wait", |r| r["rollout"]["counts"]["succeeded"] == 1).await;
    let wait = &r["rollout"]["waiting"];
    assert_eq!(wait["reason"], "devices", "{wait:#}");
    assert_eq!(wait["device_count"], 1);
    assert_eq!(wait["devices"][0]["mac"], gone.as_str());
    assert_eq!(wait["devices"][0]["retries_left"], 1);
    assert!(wait["devices"][0]["deadline"].is_string() && wait["until"].is_string(), "{wait:#}");
    let summary = wait["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("wave 1 of 2 waits for 1 device: dev-") && summary.contains("times out in 5 min"),
        "{summary}"
    );
    assert!(summary.contains("then 1 retry left"), "{summary}");

    // The technician skips it; the wave no longer waits, and the rest is updated.
    let job = job_of(&r, gone)["id"].as_i64().unwrap();
    let resp = server.api(Method::POST, &format!("/api/v1/rollouts/{id}/jobs/{job}/skip")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let last = macs_in_wave(&created, 2);
    let offer = wait_offer(&server, &last[0]).await;
    come_back(&server, &last[0], &offer, "2.0.0").await;
    let r = wait_for(&server, id, "completion", |r| r["rollout"]["state"] == "completed").await;
    let skipped = job_of(&r, gone);
    assert_eq!(skipped["state"], "skipped");
    assert_eq!(skipped["wave"], 1, "a device a person skipped stays in its wave");
    assert!(skipped["error"].as_str().unwrap().starts_with("skipped by admin-api while commanded"), "{skipped}");
    assert_eq!(skipped["current_version"], Value::Null, "it never came back: no version is claimed for it");
    assert_eq!(r["rollout"]["outcome"], "some_failed");
    assert_eq!(r["rollout"]["waiting"], Value::Null);
    // Skipping a finished job is refused with a reason.
    let resp = server.api(Method::POST, &format!("/api/v1/rollouts/{id}/jobs/{job}/skip")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_manual_pause_holds_every_device_and_cancel_stops_what_has_not_begun() {
    let server = site(4).await;
    let created = create(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "concurrency": 1, "waves": [{"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    // Exactly one device is commanded (concurrency 1); find it.
    let r = wait_for(&server, id, "a command", |r| r["rollout"]["counts"]["in_flight"] == 1).await;
    let first = r["jobs"].as_array().unwrap().iter().find(|j| j["state"] == "commanded").unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = act(&server, id, "pause").await;
    assert_eq!((r["state"].as_str(), r["pause_reason"].as_str()), (Some("paused"), Some("paused by admin-api")));
    assert!(
        r["on_resume"].as_str().unwrap().starts_with("Resume continues wave 1 of 1 (1 updating, 3 queued)"),
        "{r:#}"
    );
    assert_eq!(r["waiting"]["reason"], "paused");
    // The device already commanded finishes; nobody else is commanded while paused.
    let offer = wait_offer(&server, &first).await;
    come_back(&server, &first, &offer, "2.0.0").await;
    let others: Vec<String> = (1..=4).map(mac).filter(|m| *m != first).collect();
    for m in &others {
        never_offered(&server, m, "while paused").await;
    }
    let r = act(&server, id, "resume").await;
    assert_eq!(r["state"], "running");
    // One more is commanded; then cancel: it may finish, the other two never begin.
    let r = wait_for(&server, id, "the next command", |r| r["rollout"]["counts"]["in_flight"] == 1).await;
    let busy = r["jobs"].as_array().unwrap().iter().find(|j| j["state"] == "commanded").unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = act(&server, id, "cancel").await;
    assert_eq!(r["state"], "cancelled");
    let offer = wait_offer(&server, &busy).await;
    come_back(&server, &busy, &offer, "2.0.0").await;
    let r = wait_for(&server, id, "the in-flight device", |r| r["rollout"]["counts"]["in_flight"] == 0).await;
    assert_eq!(r["rollout"]["counts"]["succeeded"], 2);
    assert_eq!(r["rollout"]["counts"]["cancelled"], 2);
    assert_eq!(r["rollout"]["outcome"], "cancelled");
    for m in others.iter().filter(|m| **m != busy) {
        never_offered(&server, m, "after the cancel").await;
        assert_eq!(job_of(&r, m)["state"], "cancelled");
    }
}

#[tokio::test]
async fn manual_approval_waits_between_waves() {
    let server = site(3).await;
    let created = create(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "manual_approval": true,
                "waves": [{"count": 1}, {"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    let canary = &macs_in_wave(&created, 1)[0];
    let offer = wait_offer(&server, canary).await;
    come_back(&server, canary, &offer, "2.0.0").await;
    let r = wait_for(&server, id, "the approval wait", |r| r["rollout"]["state"] == "paused").await;
    assert_eq!(r["rollout"]["waiting"]["reason"], "approval");
    assert_eq!(r["rollout"]["on_resume"], "Resume starts wave 2 of 2 (2 devices).");
    let rest = macs_in_wave(&created, 2);
    for m in &rest {
        never_offered(&server, m, "before the approval").await;
    }
    act(&server, id, "resume").await;
    for m in &rest {
        let offer = wait_offer(&server, m).await;
        come_back(&server, m, &offer, "2.0.0").await;
    }
    let r = wait_for(&server, id, "completion", |r| r["rollout"]["state"] == "completed").await;
    assert_eq!(r["rollout"]["outcome"], "all_succeeded");
}

#[tokio::test]
async fn a_scheduled_start_waits_and_the_command_rate_spaces_commands() {
    let server = site(4).await;
    let start_ms = clock::now_ms() + 2_000;
    let created = create(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "start_at": clock::rfc3339(start_ms),
                "command_rate": 1.0, "waves": [{"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    assert_eq!(created["rollout"]["state"], "scheduled");
    assert_eq!(created["rollout"]["waiting"]["reason"], "scheduled");
    never_offered(&server, &mac(1), "before its start").await;
    let r = wait_for(&server, id, "four commands", |r| {
        r["jobs"].as_array().unwrap().iter().filter(|j| j["state"] == "commanded").count() == 4
    })
    .await;
    let mut at: Vec<i64> = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let t = j["history"].as_array().unwrap().iter().find(|t| t["state"] == "commanded").unwrap();
            clock::parse_rfc3339(t["at"].as_str().unwrap()).unwrap()
        })
        .collect();
    at.sort_unstable();
    assert!(at[0] >= start_ms, "nothing was commanded before the scheduled start: {at:?} vs {start_ms}");
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= 700, "1 command a second: {at:?}");
    }
    assert!(at[3] - at[0] >= 2_400, "four commands at 1/s span about 3 s: {at:?}");
}

#[tokio::test]
async fn admission_stops_outside_the_maintenance_window_and_resumes_inside_it() {
    let (server, clock) = Server::start_with_fake_clock().await;
    let (status, fw) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(status, 201, "{fw}");
    for i in 1..=3 {
        check_in(&server, &mac(i), "1.0.0").await;
    }
    // A window that opens two hours from now (UTC, whole minutes: 120 to 121 min away) and lasts
    // one hour.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let open = (now / 60 + 121) * 60;
    let hhmm = |t: i64| format!("{:02}:{:02}", (t / 3600) % 24, (t / 60) % 60);
    let window = format!("daily {}-{}", hhmm(open), hhmm(open + 3600));
    let created = create(
        &server,
        // Steps may take days here: the clock jumps hours at a time, which no step should time out on.
        json!({ "firmware": "2.0.0", "target": "all", "start": true, "concurrency": 1, "window": window,
                "step_timeout_secs": 259_200, "waves": [{"percent": 100.0}] }),
    )
    .await;
    let id = created["rollout"]["id"].as_i64().unwrap();
    let r = rollout(&server, id).await;
    assert_eq!(r["rollout"]["state"], "running");
    assert_eq!(r["rollout"]["waiting"]["reason"], "window", "{:#}", r["rollout"]);
    assert!(r["rollout"]["waiting"]["summary"].as_str().unwrap().contains("opens in 2 h"), "{:#}", r["rollout"]);
    for i in 1..=3 {
        never_offered(&server, &mac(i), "outside the window").await;
    }
    // The clock moves into the window: one device is commanded (concurrency 1) and updated.
    clock.set(open - now + 5);
    let r = wait_for(&server, id, "a command inside the window", |r| r["rollout"]["counts"]["in_flight"] == 1).await;
    let first = r["jobs"].as_array().unwrap().iter().find(|j| j["state"] == "commanded").unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    // Out of the window again before the next command: the device in flight finishes, the rest wait.
    clock.set(open + 3600 - now + 5);
    // The engine's clock is past the window (its view of the rollout says so) before the first
    // device finishes: nothing else may be commanded after that.
    wait_for(&server, id, "the window to close", |r| r["rollout"]["waiting"]["reason"] == "window").await;
    let offer = wait_offer(&server, &first).await;
    come_back(&server, &first, &offer, "2.0.0").await;
    let r = wait_for(&server, id, "the first success", |r| r["rollout"]["counts"]["succeeded"] == 1).await;
    assert_eq!(r["rollout"]["waiting"]["reason"], "window", "{:#}", r["rollout"]);
    for m in (1..=3).map(mac).filter(|m| *m != first) {
        never_offered(&server, &m, "after the window closed").await;
    }
    // The next day's window: the rest are updated.
    clock.set(open + 86_400 - now + 5);
    let mut left: Vec<String> = (1..=3).map(mac).filter(|m| *m != first).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !left.is_empty() {
        // One at a time (concurrency 1): whichever is commanded takes its offer and updates.
        for m in left.clone() {
            let a = check_in(&server, &m, "1.0.0").await;
            if a["update_available"] == true {
                come_back(&server, &m, &a, "2.0.0").await;
                left.retain(|x| *x != m);
            }
        }
        assert!(Instant::now() < deadline, "{left:?} were never updated in the next window");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = wait_for(&server, id, "completion", |r| r["rollout"]["state"] == "completed").await;
    assert_eq!(r["rollout"]["counts"]["succeeded"], 3);
}
