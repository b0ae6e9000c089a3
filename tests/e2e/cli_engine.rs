//! `flotilla status`, `metrics`, `events list|export` and `serve --demo-failures` against a real
//! engine: the export pages through a log larger than one page and writes RFC 4180 CSV or a JSON
//! array; a demo fleet that fails to boot makes a rollout pause itself.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{fails, json, ok, stderr, stdout};
use crate::support::{Server, flotilla_bin};

#[tokio::test]
async fn status_and_metrics_say_what_the_engine_runs() {
    let server = Server::start().await;
    let s = json(&server, &["status", "--json"]);
    assert_eq!(s["admin"]["url"], server.info.admin_url.as_str());
    assert_eq!(s["device_server"]["url"], server.info.device_url.as_str());
    assert_eq!(s["data_dir"], server.data_dir().display().to_string());
    assert_eq!((&s["mqtt"]["mode"], &s["mdns"]["enabled"]), (&json!("embedded"), &json!(false)));
    for key in ["version", "uptime_s", "tls", "demo", "signing_key_id"] {
        assert!(s.get(key).is_some(), "status --json carries {key}: {s}");
    }

    let text = ok(&server, &["status"]);
    assert!(text.starts_with(&format!("Flotilla {} · up ", s["version"].as_str().unwrap())), "{text}");
    for line in [
        format!("admin API:     {} (bound to ", server.info.admin_url),
        format!("device server: {} (bound to ", server.info.device_url),
        format!("data dir:      {}", server.data_dir().display()),
        "MQTT:          embedded, mqtt://".into(),
        "mDNS:          off".into(),
        format!(
            "TLS:           {}, public key SHA-256 {}",
            s["tls"]["https_url"].as_str().unwrap(),
            s["tls"]["spki_sha256"].as_str().unwrap()
        ),
        "demo fleet:    available, not running".into(),
    ] {
        assert!(text.contains(&line), "{line:?} missing from:\n{text}");
    }

    let prometheus = ok(&server, &["metrics"]);
    let direct = server.api(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let names = |t: &str| -> Vec<String> { t.lines().filter(|l| l.starts_with("# TYPE")).map(str::to_owned).collect() };
    assert!(prometheus.starts_with("# HELP "), "{prometheus}");
    assert!(!names(&prometheus).is_empty() && names(&prometheus) == names(&direct), "printed as the engine wrote it");
    let fleet = json(&server, &["metrics", "--fleet", "--json"]);
    for key in ["versions", "rollouts", "failures"] {
        assert!(fleet[key].is_array(), "metrics --fleet --json carries {key}: {fleet}");
    }
    assert!(ok(&server, &["metrics", "--fleet"]).contains("No finished rollouts yet."));
    fails(&server, &["metrics", "--json"], 2);
}

/// The records of RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "records end with CRLF"),
            (false, '\n') => panic!("a bare LF ends a record"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(row.is_empty() && field.is_empty(), "the last record ends with CRLF");
    rows
}

#[tokio::test]
async fn events_are_listed_and_exported_page_after_page() {
    const DEVICES: usize = 1_200;
    let server = Server::start().await;
    // More device.discovered events than one page of the API holds (1,000).
    for i in 0..DEVICES {
        let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
        let body =
            json!({ "mac": mac, "name": format!("dev {i}"), "model": "demo", "chip": "esp32", "version": "1.0.0" });
        let resp = server.api(Method::POST, "/api/v1/devices").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    // The audit log is written behind the answers: wait until it holds them all.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get_json::<Value>("/api/v1/events?kind=device.discovered&limit=1").await["events"][0]["data"]["mac"]
        != "02:00:00:00:04:af"
    {
        assert!(Instant::now() < deadline, "the audit log never recorded the last device");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = ok(&server, &["events", "list", "--limit", "5"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[0].split_whitespace().eq(["TIME", "KIND", "ACTOR", "SUBJECT", "DETAILS"]), "{text}");
    assert!(lines[1].contains("device.discovered") && lines[1].contains("mac=02:00:00:00:04:af"), "{text}");
    assert!(lines[6].contains("newest 5 shown"), "{text}");
    let all = json(&server, &["events", "list", "--kind", "device.discovered", "--limit", "5000", "--json"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), DEVICES, "two pages, read to the end");
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, no event twice");
    assert_eq!(
        json(&server, &["events", "list", "--since", "1h", "--limit", "2", "--json"]).as_array().unwrap().len(),
        2
    );
    let none = ok(&server, &["events", "list", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(none.trim(), "No events match.");
    let err = fails(&server, &["events", "list", "--since", "yesterday"], 2);
    assert!(err.contains("look-back"), "{err}");

    // CSV to a file: a header, one record per event, data as compact JSON.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.csv");
    let out = ok(&server, &["events", "export", "--format", "csv", "--output", path.to_str().unwrap()]);
    let csv = std::fs::read_to_string(&path).unwrap();
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], ["id", "at", "kind", "actor", "subject", "data"]);
    let n = rows.len() - 1;
    assert!(n >= DEVICES, "{n} events");
    assert_eq!(out.trim(), format!("Wrote {n} events to {}.", path.display()));
    let discovered: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[2] == "device.discovered").collect();
    assert_eq!(discovered.len(), DEVICES);
    for r in &discovered {
        let data: Value = serde_json::from_str(&r[5]).unwrap();
        assert_eq!(r[4], format!("device:{}", data["mac"].as_str().unwrap()), "{r:?}");
    }
    let listed: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(listed, ["events.csv"], "no temporary file left behind");

    // JSON to standard output; the count goes to standard error.
    let out = server.cli(&["events", "export", "--kind", "device.discovered"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exported: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(exported.len(), DEVICES);
    assert_eq!(&exported[..], &all[..], "the API's own events");
    assert_eq!(stderr(&out).trim(), format!("Exported {DEVICES} events."));

    // A reader that stops early (`| head -1`): far more than a pipe holds is left unwritten, and
    // the command ends quietly instead of panicking.
    for args in [&["events", "export"][..], &["events", "list", "--limit", "1000"]] {
        let mut child = std::process::Command::new(flotilla_bin())
            .args(args)
            .arg("--data-dir")
            .arg(server.data_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
        assert!(!first.is_empty());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "flotilla {args:?} after its reader left: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }

    let out = server.cli(&["events", "export", "--format", "csv", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(stdout(&out), "id,at,kind,actor,subject,data\r\n");
    assert_eq!(stderr(&out).trim(), "Exported 0 events.");
}

#[tokio::test]
async fn a_demo_fleet_that_fails_to_boot_makes_a_rollout_pause_itself() {
    let refused =
        std::process::Command::new(flotilla_bin()).args(["serve", "--demo-failures", "120"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("0-100"), "{}", stderr(&refused));

    let server = Server::start_with_args(&["--demo", "--demo-failures", "100"]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary = loop {
        let s = json(&server, &["status", "--json"]);
        if let Some(summary) = s["demo"]["running"]["summary"].as_str() {
            break summary.to_owned();
        }
        assert!(Instant::now() < deadline, "the demo fleet never started: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(summary.contains("boot=48"), "every demo device fails to boot: {summary}");
    while json(&server, &["devices", "list", "--json"]).as_array().unwrap().len() < 48 {
        assert!(Instant::now() < deadline, "the demo devices never checked in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let created = json(
        &server,
        &["rollout", "create", "--firmware", "2.0.0", "--target", "all", "--waves", "1,100%", "--start", "--json"],
    );
    let id = created["rollout"]["id"].to_string();
    let paused = loop {
        let d = json(&server, &["rollout", "status", &id, "--json"]);
        if d["rollout"]["state"] == "paused" {
            break d;
        }
        assert!(Instant::now() < deadline, "the rollout did not pause itself: {}", d["rollout"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = paused["rollout"]["pause_reason"].as_str().unwrap();
    assert!(reason.contains("1 of 1 devices failed"), "{reason}");
    let text = ok(&server, &["rollout", "status", &id]);
    assert!(text.contains("PAUSED") && text.contains("did not boot"), "{text}");
}

#[tokio::test]
async fn settings_are_shown_and_changed_and_the_demo_starts_from_the_cli() {
    let server = Server::start().await;
    // What the UI's Settings view shows: saved and running values, mDNS off as started.
    let view = json(&server, &["settings", "show", "--json"]);
    assert_eq!(view["effective"]["mdns"], false, "started with --no-mdns: {view}");
    assert_eq!(view["saved"]["mdns"], Value::Null);
    let text = ok(&server, &["settings", "show"]);
    assert!(text.contains("mdns") && text.contains("false now (saved: default)"), "{text}");
    // Changed and kept: the retention applies without a restart, an address asks for one.
    let view = json(&server, &["settings", "set", "event_retention_days=30", "--json"]);
    assert_eq!(view["saved"]["event_retention_days"], 30);
    assert_eq!(view["restart_required"], false);
    let text = ok(&server, &["settings", "set", "device_listen=0.0.0.0:9000"]);
    assert!(text.contains("Restart the engine"), "{text}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(server.data_dir().join("settings.json")).unwrap()).unwrap();
    assert_eq!(
        (saved["event_retention_days"].clone(), saved["device_listen"].clone()),
        (json!(30), json!("0.0.0.0:9000"))
    );
    // A wrong value is refused by name and nothing is saved.
    let err = fails(&server, &["settings", "set", "admin_listen=localhost"], 2);
    assert!(err.contains("admin_listen"), "{err}");
    let err = fails(&server, &["settings", "set", "colour=red"], 2);
    assert!(err.contains("no setting \"colour\""), "{err}");
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(server.data_dir().join("settings.json")).unwrap()).unwrap();
    assert_eq!(after, saved);

    // The UI's first-run button, from the CLI: once, then refused while it runs.
    let started = json(&server, &["demo", "start", "--json"]);
    assert!(started["summary"].as_str().unwrap().contains("48 devices"), "{started}");
    let err = fails(&server, &["demo", "start"], 2);
    assert!(err.contains("already runs"), "{err}");
}
