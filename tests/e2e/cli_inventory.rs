//! `flotilla devices …` and `flotilla channels …` against a real engine: a device named by MAC
//! (any spelling), device id or name, a shared name refused with the candidates; show, history,
//! labels, channels, and forgetting a device, refused while a rollout works on it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{fails, json, ok};
use crate::support::{Server, image};

const PUMP_A: &str = "02:00:00:00:0c:01";
const PUMP_B: &str = "02:00:00:00:0c:02";
const VALVE: &str = "02:00:00:00:0c:03";

/// Two devices added by hand under one name, and one that checked in with its own id.
async fn inventory() -> Server {
    let server = Server::start().await;
    for (mac, ip) in [(PUMP_A, "10.0.0.5"), (PUMP_B, "10.0.0.6")] {
        let body = json!({ "mac": mac, "name": "pump", "ip": ip, "family": "native", "model": "demo", "chip": "esp32", "version": "1.0.0" });
        let resp = server.api(Method::POST, "/api/v1/devices").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let check_in =
        json!({ "device_id": "valve-7", "mac": VALVE, "model": "demo", "chip": "esp32", "version": "1.0.0" });
    let (status, _) = server.device_check_in(&check_in).await;
    assert_eq!(status, 200);
    server
}

#[tokio::test]
async fn a_device_is_named_by_mac_id_or_name_and_a_shared_name_is_refused() {
    let server = inventory().await;

    let d = json(&server, &["devices", "show", "02-00-00-00-0C-01", "--json"]);
    assert_eq!(d["mac"], PUMP_A);
    assert_eq!(d["ip"], "10.0.0.5");
    for key in ["device_id", "name", "family", "model", "chip", "version", "secure_version", "online", "channel"] {
        assert!(d.get(key).is_some(), "devices show --json carries {key}: {d}");
    }
    for key in ["channel_from", "labels", "sources", "first_seen", "last_seen"] {
        assert!(d.get(key).is_some(), "devices show --json carries {key}: {d}");
    }
    assert_eq!(d, server.get_json::<Value>(&format!("/api/v1/devices/{PUMP_A}")).await, "the API's own object");

    let text = ok(&server, &["devices", "show", "valve-7"]);
    for line in [
        format!("mac:            {VALVE}"),
        "device_id:      valve-7".into(),
        "chip:           esp32".into(),
        "version:        1.0.0".into(),
        "channel:        stable (default)".into(),
        "sources:        checkin".into(),
    ] {
        assert!(text.contains(&line), "{line:?} missing from:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("state:") && l.contains("online since")), "{text}");

    let err = fails(&server, &["devices", "show", "pump"], 2);
    assert!(err.contains("names 2 devices"), "{err}");
    assert!(err.contains(&format!("pump ({PUMP_A})")) && err.contains(&format!("pump ({PUMP_B})")), "{err}");
    let err = fails(&server, &["devices", "show", "nobody"], 2);
    assert!(err.contains("no device") && err.contains("nobody"), "{err}");
    let err = fails(&server, &["devices", "show", "02:00:00:00:0c:99"], 2);
    assert!(err.contains("02:00:00:00:0c:99 not found"), "{err}");
}

#[tokio::test]
async fn labels_carry_channels_and_a_device_can_set_its_own() {
    let server = inventory().await;
    let text = ok(&server, &["channels", "list"]);
    assert!(text.contains("No label carries a channel"), "{text}");

    let d = json(&server, &["devices", "label", "valve-7", "--add", "line-3", "--json"]);
    assert_eq!(d["labels"], json!(["line-3"]));
    let list = json(&server, &["channels", "set", "line-3", "beta", "--json"]);
    assert_eq!(list, json!([{ "label": "line-3", "channel": "beta" }]));
    let text = ok(&server, &["channels", "list"]);
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["line-3", "beta"]), "{text}");
    let d = json(&server, &["devices", "show", "valve-7", "--json"]);
    assert_eq!((&d["channel"], &d["channel_from"]), (&json!("beta"), &json!("label:line-3")));
    let text = ok(&server, &["devices", "show", "valve-7"]);
    assert!(text.contains("channel:        beta (from label line-3)"), "{text}");

    let text = ok(&server, &["devices", "channel", "valve-7", "stable"]);
    assert_eq!(text.trim(), format!("valve-7 ({VALVE}) now follows stable (set on the device)."));
    let d = json(&server, &["devices", "channel", VALVE, "none", "--json"]);
    assert_eq!((&d["channel"], &d["channel_from"]), (&json!("beta"), &json!("label:line-3")), "the label's again");
    fails(&server, &["devices", "channel", "valve-7", "gamma"], 2);

    let text = ok(&server, &["channels", "set", "line-3", "none"]);
    assert!(text.contains("Label line-3 carries no channel now."), "{text}");
    assert_eq!(json(&server, &["channels", "list", "--json"]), json!([]));
    let err = fails(&server, &["channels", "set", "has space", "beta"], 2);
    assert!(err.contains("label"), "{err}");
}

#[tokio::test]
async fn history_lists_the_rollouts_and_forgetting_waits_for_them() {
    let server = inventory().await;
    let (code, _) = server.upload(image("2.0.0", 60_000), &[]).await;
    assert_eq!(code, 201);
    let created =
        json(&server, &["rollout", "create", "--firmware", "2.0.0", "--target", &format!("device:{PUMP_A}"), "--json"]);
    let id = created["rollout"]["id"].as_i64().unwrap();

    let err = fails(&server, &["devices", "forget", PUMP_A], 2);
    assert!(err.contains(&format!("is in unfinished rollout {id}")), "the engine's own words: {err}");
    assert_eq!(json(&server, &["devices", "list", "--json"]).as_array().unwrap().len(), 3, "nothing forgotten");

    // "pump" names two devices, but only one of them is in the rollout.
    let text = ok(&server, &["rollout", "skip", &id.to_string(), "pump"]);
    assert!(text.starts_with("Skipped pump (job "), "{text}");
    ok(&server, &["rollout", "cancel", &id.to_string()]);
    let h = json(&server, &["devices", "history", PUMP_A, "--json"]);
    assert_eq!(h["mac"], PUMP_A);
    let jobs = h["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{h}");
    assert_eq!((&jobs[0]["rollout_id"], &jobs[0]["firmware_version"]), (&json!(id), &json!("2.0.0")));
    assert_eq!(jobs[0]["state"], "skipped");
    assert!(h["events"].as_array().unwrap().iter().any(|e| e["kind"] == "device.discovered"), "{h}");
    let text = ok(&server, &["devices", "history", PUMP_A]);
    assert!(text.contains(&format!("{PUMP_A}: in 1 rollout")), "{text}");
    let row = text.lines().find(|l| l.starts_with(&id.to_string())).unwrap_or_else(|| panic!("no job row:\n{text}"));
    assert!(row.contains("1.0.0 → 2.0.0") && row.contains("skipped"), "{row}");
    assert!(text.contains("Events (newest first):") && text.contains("device.discovered"), "{text}");
    let text = ok(&server, &["devices", "history", "valve-7"]);
    assert!(text.contains("in no rollout yet"), "{text}");

    let gone = json(&server, &["devices", "forget", PUMP_A, "--json"]);
    assert_eq!((&gone["mac"], &gone["name"]), (&json!(PUMP_A), &json!("pump")), "the device as it was");
    let left = json(&server, &["devices", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().len(), 2);
    // Its name is no longer shared: it names the other pump now.
    let text = ok(&server, &["devices", "forget", "pump"]);
    assert_eq!(text.trim(), format!("Forgot pump ({PUMP_B}); it is found anew if it shows up again."));
    let err = fails(&server, &["devices", "forget", PUMP_B], 2);
    assert!(err.contains("not found"), "{err}");
}
