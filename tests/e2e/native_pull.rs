//! The native pull protocol end to end, spoken by hand (no simulator): check-in registers the
//! device, a rollout offers the firmware, reports move the job, and only the check-in on the new
//! version makes it a success. Compatibility checks skip what cannot work.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, image};

async fn check_in(server: &Server, mac: &str, version: &str, chip: &str) -> Value {
    let body = json!({ "device_id": format!("dev-{}", mac[9..].replace(':', "")), "mac": mac, "model": "demo", "chip": chip, "version": version });
    let (status, answer) = server.device_check_in(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn report(server: &Server, mac: &str, job: &str, state: &str) {
    let body = json!({ "device_id": format!("dev-{}", mac[9..].replace(':', "")), "mac": mac, "job": job, "state": state, "progress": 50 });
    let resp = server.device_post("/api/v1/report", mac).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
}

async fn rollout(server: &Server, id: i64) -> Value {
    server.get_json(&format!("/api/v1/rollouts/{id}")).await
}

/// Polls the rollout until `pred` holds (bounded).
async fn wait_for(server: &Server, id: i64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = rollout(server, id).await;
        if pred(&r) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {r:#}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_pull_device_is_updated_and_verified_by_its_next_check_in() {
    let server = Server::start().await;
    let bytes = image("2.0.0", 120_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");

    // Devices register by checking in; nothing to do yet.
    let mac = "02:00:00:00:00:01";
    assert_eq!(check_in(&server, mac, "1.0.0", "esp32").await, json!({ "update_available": false }));
    check_in(&server, "02:00:00:00:00:02", "1.0.0", "esp32s3").await; // wrong chip
    check_in(&server, "02:00:00:00:00:03", "2.1.0", "esp32").await; // would downgrade
    check_in(&server, "02:00:00:00:00:04", "2.0.0", "esp32").await; // already there

    let resp = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 30 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    let id = created["rollout"]["id"].as_i64().unwrap();
    let skipped: Vec<(String, String)> = created["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "skipped")
        .map(|j| (j["mac"].as_str().unwrap().to_owned(), j["error"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped.iter().any(|(m, e)| m.ends_with(":02") && e.contains("chip esp32s3")), "{skipped:?}");
    assert!(skipped.iter().any(|(m, e)| m.ends_with(":03") && e.contains("downgrade")), "{skipped:?}");
    assert!(skipped.iter().any(|(m, e)| m.ends_with(":04") && e.contains("already on 2.0.0")), "{skipped:?}");

    // The device's next check-in carries the offer (once the command is durable).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let offer = loop {
        let answer = check_in(&server, mac, "1.0.0", "esp32").await;
        if answer["update_available"] == true {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "no offer");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(offer["version"], "2.0.0");
    assert_eq!(offer["sha256"], fw["firmware"]["sha256"]);
    let job = offer["job"].as_str().unwrap().to_owned();
    // The signature covers manifest_json, with the key devices bake in.
    let key: Value = server.http.get(server.device("/api/v1/site-key")).send().await.unwrap().json().await.unwrap();
    assert_eq!(offer["key_id"], key["key_id"]);
    let manifest: Value = serde_json::from_str(offer["manifest_json"].as_str().unwrap()).unwrap();
    assert_eq!(manifest["version"], "2.0.0");
    // The download needs the device's credential; served to the end, it is the job's evidence.
    let anonymous = server.http.get(offer["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let got = server.device_get(offer["url"].as_str().unwrap(), mac).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());

    report(&server, mac, &job, "downloading").await;
    report(&server, mac, &job, "installing").await;
    report(&server, mac, &job, "rebooting").await;
    let r = rollout(&server, id).await;
    let j = r["jobs"].as_array().unwrap().iter().find(|j| j["mac"] == mac).unwrap().clone();
    assert_eq!(j["state"], "rebooting", "reports alone never make a success");

    // Back on the new version: verified.
    assert_eq!(check_in(&server, mac, "2.0.0", "esp32").await, json!({ "update_available": false }));
    let r = wait_for(&server, id, "completion", |r| r["rollout"]["state"] == "completed").await;
    let j = r["jobs"].as_array().unwrap().iter().find(|j| j["mac"] == mac).unwrap().clone();
    assert_eq!(j["state"], "succeeded");
    let states: Vec<&str> = j["history"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["queued", "commanded", "downloading", "installing", "rebooting", "verifying", "succeeded"]);
    assert_eq!(j["evidence"], "authenticated+download", "{j}");

    // The report names every device, with versions before and after.
    let csv = server
        .api(Method::GET, &format!("/api/v1/rollouts/{id}/report?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("mac,device_id,wave,state,from_version,to_version"));
    assert!(lines.iter().any(|l| l.starts_with(mac) && l.contains(",succeeded,1.0.0,2.0.0,")), "{csv}");

    // A stale or foreign report is refused, garbage is a clear 400.
    let resp = server
        .http
        .post(server.device("/api/v1/report"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("line 1 column"), "{err}");
    // A body of the wrong shape names the field.
    let resp = server.http.post(server.device("/api/v1/check")).body(r#"{"device_id":"d"}"#).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("missing field `mac`"), "{err}");
    // ESP HTTP clients often send no Content-Type: the JSON body is enough.
    let body = json!({ "device_id": "dev-plain", "mac": "02:00:00:00:00:77", "version": "1.0.0" }).to_string();
    let resp = server.http.post(server.device("/api/v1/check")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["update_available"], false);
    let body = json!({ "device_id": "dev-99", "mac": "02:00:00:00:00:99", "job": job, "state": "failed" });
    let resp = server.http.post(server.device("/api/v1/report")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "the job's device is enrolled: its credential is needed");
}

#[tokio::test]
async fn a_device_that_comes_back_on_the_old_version_fails_and_the_canary_gate_pauses() {
    let server = Server::start().await;
    server.upload(image("3.0.0", 60_000), &[]).await;
    for i in 1..=5 {
        check_in(&server, &format!("02:00:00:00:01:{i:02}"), "2.0.0", "esp32").await;
    }
    let created: Value = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": "3.0.0", "target": "all", "start": true, "waves": [{"count": 1}, {"percent": 100.0}] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["rollout"]["id"].as_i64().unwrap();
    let canary = created["jobs"].as_array().unwrap().iter().find(|j| j["wave"] == 1).unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let job = loop {
        let a = check_in(&server, &canary, "2.0.0", "esp32").await;
        if let Some(j) = a["job"].as_str() {
            break j.to_owned();
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    report(&server, &canary, &job, "rebooting").await;
    check_in(&server, &canary, "2.0.0", "esp32").await; // rolled back
    let r = wait_for(&server, id, "pause", |r| r["rollout"]["state"] == "paused").await;
    assert!(r["rollout"]["pause_reason"].as_str().unwrap().contains("1 of 1 devices failed"), "{r:#}");
    let j = r["jobs"].as_array().unwrap().iter().find(|j| j["mac"] == canary.as_str()).unwrap().clone();
    assert_eq!(j["state"], "failed");
    assert!(j["error"].as_str().unwrap().contains("came back on 2.0.0"), "{j}");
    // Nobody in the next wave was commanded.
    let wave2: Vec<&Value> = r["jobs"].as_array().unwrap().iter().filter(|j| j["wave"] == 2).collect();
    assert_eq!(wave2.len(), 4, "{r:#}");
    assert!(wave2.iter().all(|j| j["state"] == "queued"), "{wave2:#?}");
    for other in (1..=5).map(|i| format!("02:00:00:00:01:{i:02}")).filter(|m| *m != canary) {
        assert_eq!(check_in(&server, &other, "2.0.0", "esp32").await["update_available"], false);
    }
}
