//! Staged rollouts against a simulated fleet: real `flotilla serve`, real embedded MQTT broker,
//! 200 simulated devices on loopback that really download, verify, flash and reboot, and report
//! the version they read from the bytes they received.

use std::time::{Duration, Instant};

use flotilla_proto::Chip;
use flotilla_sim::{DeviceKind, FailureRates, Fleet, FleetConfig, FleetHandle};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, free_port, image};

const NEW: &str = "2.0.0";

fn sim_config(server: &Server, pull: usize, mqtt: usize, block: u8) -> FleetConfig {
    FleetConfig {
        api: Some(server.info.device_url.clone()),
        mqtt: Some(server.mqtt_url()),
        fleet: vec![(DeviceKind::NativePull, pull), (DeviceKind::NativeMqtt, mqtt)],
        chip: Chip::Esp32,
        model: "demo".into(),
        version: "1.0.0".into(),
        seed: 7,
        address_block: block,
        poll_interval: Duration::from_millis(300),
        reboot_delay: Duration::from_millis(200),
        download_attempts: 40,
        ..FleetConfig::default()
    }
}

async fn wait_devices(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: Vec<Value> = server.get_json("/api/v1/devices").await;
        if list.len() >= n && list.iter().all(|d| d["version"].is_string()) {
            return;
        }
        assert!(Instant::now() < deadline, "only {} of {n} devices registered", list.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create(server: &Server, body: Value) -> i64 {
    let resp = server.api(Method::POST, "/api/v1/rollouts").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["rollout"]["id"].as_i64().unwrap()
}

async fn status(server: &Server, id: i64) -> Value {
    server.get_json(&format!("/api/v1/rollouts/{id}")).await
}

async fn wait_state(server: &Server, id: i64, state: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = status(server, id).await;
        if r["rollout"]["state"] == state && r["rollout"]["counts"]["in_flight"] == 0 {
            return r;
        }
        if Instant::now() >= deadline {
            let errors: Vec<String> = r["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["error"].is_string() && j["state"] != "skipped")
                .map(|j| format!("{} {}: {}", j["mac"], j["state"], j["error"]))
                .collect();
            panic!("rollout never became {state}: {:#}\nerrors: {errors:#?}", r["rollout"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_all_on_new_version(fleet: &FleetHandle, n: usize) {
    let devices = fleet.devices();
    assert_eq!(devices.len(), n);
    for d in &devices {
        assert_eq!(d.version, NEW, "{} runs {}", d.id, d.version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_update_in_waves_and_every_one_is_verified() {
    let server = Server::start().await;
    let (status_code, fw) = server.upload(image(NEW, 200_000), &[]).await;
    assert_eq!(status_code, 201, "{fw}");
    let fleet = Fleet::start(sim_config(&server, 100, 100, 30)).await.unwrap();
    wait_devices(&server, 200).await;

    let id = create(
        &server,
        json!({ "firmware": NEW, "target": "outdated and online", "waves": [{"count": 1}, {"percent": 10.0}, {"percent": 50.0}, {"percent": 100.0}],
                "concurrency": 50, "step_timeout_secs": 60, "start": true }),
    )
    .await;
    let r = wait_state(&server, id, "completed", 180).await;
    let counts = &r["rollout"]["counts"];
    assert_eq!(counts["succeeded"], 200, "{counts}");
    let waves: Vec<u64> =
        r["rollout"]["waves"].as_array().unwrap().iter().map(|w| w["counts"]["total"].as_u64().unwrap()).collect();
    assert_eq!(waves, vec![1, 19, 80, 100]);
    assert_all_on_new_version(&fleet, 200);
    // The engine's inventory agrees with the devices themselves.
    let devices: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(devices.len(), 200, "every device in the inventory");
    assert!(devices.iter().all(|d| d["version"] == NEW));
    for d in fleet.devices() {
        assert_eq!(d.commands_received, 1, "{} was commanded {} times", d.id, d.commands_received);
    }
    let csv = server
        .api(Method::GET, &format!("/api/v1/rollouts/{id}/report?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|l| l.contains(",succeeded,1.0.0,2.0.0,2.0.0,")), "{csv}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_pause_the_rollout_and_it_completes_once_devices_are_repaired() {
    let server = Server::start().await;
    server.upload(image(NEW, 100_000), &[]).await;
    let mut config = sim_config(&server, 100, 100, 31);
    config.failure_rates = FailureRates::parse("boot=20%").unwrap();
    let fleet = Fleet::start(config).await.unwrap();
    wait_devices(&server, 200).await;

    let id = create(
        &server,
        json!({ "firmware": NEW, "target": "all", "max_failures": {"percent": 10.0}, "concurrency": 50, "step_timeout_secs": 60, "start": true }),
    )
    .await;
    let r = wait_state(&server, id, "paused", 120).await;
    let wave = r["rollout"]["current_wave"].as_u64().unwrap();
    let reason = r["rollout"]["pause_reason"].as_str().unwrap();
    assert!(reason.contains("devices failed"), "{reason}");
    let jobs = r["jobs"].as_array().unwrap();
    // Devices in later waves were never commanded — by the engine's record and by their own.
    let later: Vec<&Value> = jobs.iter().filter(|j| j["wave"].as_u64().is_some_and(|w| w > wave)).collect();
    assert!(!later.is_empty());
    for j in &later {
        assert_eq!(j["state"], "queued");
        let d = fleet.device(j["mac"].as_str().unwrap()).unwrap();
        assert_eq!(d.commands_received, 0, "{} in a later wave was commanded", d.id);
        assert_eq!(d.version, "1.0.0");
    }
    let failed: Vec<&Value> = jobs.iter().filter(|j| j["state"] == "failed").collect();
    assert!(!failed.is_empty(), "a pause for failures with no failed job: {reason}");
    assert!(failed.iter().all(|j| j["error"].as_str().unwrap().contains("came back on 1.0.0")), "{failed:?}");

    // Repair the devices and retry those that failed: a retry resumes the paused rollout in the
    // same action, and it completes.
    fleet.repair_all();
    let resp = server.api(Method::POST, &format!("/api/v1/rollouts/{id}/retry-failed")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "retry-failed: {}", resp.text().await.unwrap());
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["state"], "running", "a retry while paused resumes: {r:#}");
    let r = wait_state(&server, id, "completed", 180).await;
    assert_eq!(r["rollout"]["counts"]["succeeded"], 200, "{:#}", r["rollout"]);
    assert_all_on_new_version(&fleet, 200);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_then_restart_completes_and_nobody_is_commanded_twice() {
    let (http, mqtt) = (free_port(), free_port());
    let server = Server::start_on(tempfile::tempdir().unwrap(), http, mqtt).await;
    server.upload(image(NEW, 150_000), &[]).await;
    let mut config = sim_config(&server, 60, 60, 32);
    config.reboot_delay = Duration::from_millis(400);
    let fleet = Fleet::start(config).await.unwrap();
    wait_devices(&server, 120).await;
    let id = create(
        &server,
        json!({ "firmware": NEW, "target": "all", "waves": [{"count": 1}, {"percent": 100.0}], "concurrency": 10, "step_timeout_secs": 60, "start": true }),
    )
    .await;
    // Mid-rollout: some devices done, most not.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = status(&server, id).await["rollout"]["counts"]["succeeded"].as_u64().unwrap();
        if done >= 20 {
            assert!(done < 120, "the rollout finished before the crash");
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.child.wait().unwrap();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    drop(server);

    let server = Server::start_on(dir, http, mqtt).await;
    let r = wait_state(&server, id, "completed", 240).await;

    assert_eq!(r["rollout"]["counts"]["succeeded"], 120, "{:#}", r["rollout"]);
    assert_all_on_new_version(&fleet, 120);
    for d in fleet.devices() {
        assert_eq!(d.commands_received, 1, "{} was commanded {} times", d.id, d.commands_received);
    }
    fleet.stop().await;
}

/// The site of the finding: 30 devices (half pull, half MQTT), 20 % fail to boot the new
/// firmware, 5 % vanish after the reboot. The technician resumes every self-pause and skips the
/// devices the rollout says it waits on once they are known gone; the rollout ends, every device
/// it calls updated really runs 2.0.0, none it calls failed does, and nothing stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_with_boot_failures_and_vanishing_devices_is_steered_to_the_end() {
    let server = Server::start().await;
    server.upload(image(NEW, 80_000), &[]).await;
    let mut config = sim_config(&server, 15, 15, 33);
    config.failure_rates = FailureRates::parse("boot=20%,vanish=5%").unwrap();
    let fleet = Fleet::start(config).await.unwrap();
    wait_devices(&server, 30).await;
    // The engine spells MACs in lower case.
    let macs_with = |f: fn(&flotilla_sim::Failures) -> bool| -> Vec<String> {
        fleet.devices().iter().filter(|d| f(&d.failures)).map(|d| d.mac.to_ascii_lowercase()).collect()
    };
    let (vanishing, failing) = (macs_with(|f| f.vanish), macs_with(|f| f.boot));
    assert!(!vanishing.is_empty() && failing.len() >= 4, "the seed gives both kinds: {vanishing:?} {failing:?}");

    // Long steps: a vanished device holds its wave until someone skips it.
    let id = create(
        &server,
        json!({ "firmware": NEW, "target": "outdated and online", "start": true, "step_timeout_secs": 600 }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut resumes = 0;
    let mut skipped: Vec<String> = Vec::new();
    let r = loop {
        let r = status(&server, id).await;
        let rollout = &r["rollout"];
        if rollout["state"] == "completed" && rollout["counts"]["in_flight"] == 0 {
            break r;
        }
        if Instant::now() >= deadline {
            let waited: Vec<String> = rollout["waiting"]["devices"]
                .as_array()
                .map(|a| a.iter().map(|d| format!("{:?}", fleet.device(d["mac"].as_str().unwrap()))).collect())
                .unwrap_or_default();
            panic!(
                "the rollout never ended: {rollout:#}\nwaited on (the sim's view): {waited:#?}\nvanishing: {vanishing:?}"
            );
        }
        if rollout["state"] == "paused" {
            let said = rollout["on_resume"].as_str().unwrap();
            assert!(said.starts_with("Resume acknowledges"), "{said}");
            let resp = server.api(Method::POST, &format!("/api/v1/rollouts/{id}/resume")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resumes += 1;
        } else if rollout["waiting"]["reason"] == "devices" {
            // Devices the technician knows are gone (their sim says so) and the rollout waits on.
            for d in rollout["waiting"]["devices"].as_array().unwrap() {
                let mac = d["mac"].as_str().unwrap();
                if vanishing.iter().any(|v| v == mac)
                    && fleet.device(mac).is_some_and(|s| s.state == flotilla_sim::DeviceState::Vanished)
                    && !skipped.iter().any(|s| s == mac)
                {
                    let job = d["job"].as_i64().unwrap();
                    let path = format!("/api/v1/rollouts/{id}/jobs/{job}/skip");
                    let resp = server.api(Method::POST, &path).send().await.unwrap();
                    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
                    skipped.push(mac.to_owned());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(resumes >= 1, "20 % boot failures pause a wave at least once");
    let rollout = &r["rollout"];
    assert_eq!(rollout["outcome"], "some_failed");
    assert_eq!(rollout["counts"]["queued"], 0, "nothing stays queued: {rollout:#}");
    let mut vanished_seen = 0;
    for j in r["jobs"].as_array().unwrap() {
        let mac = j["mac"].as_str().unwrap();
        let truth = fleet.device(mac).unwrap();
        match j["state"].as_str().unwrap() {
            "succeeded" => assert_eq!(truth.version, NEW, "{mac} is called updated but runs {}", truth.version),
            "failed" | "timed_out" => {
                assert_ne!(truth.version, NEW, "{mac} is called failed but runs the new version");
                assert!(failing.iter().any(|f| f == mac), "{mac} failed without a reason to: {j}");
            }
            "skipped" => {
                vanished_seen += 1;
                assert!(skipped.iter().any(|s| s == mac) || j["wave"].is_null(), "{j}");
            }
            other => panic!("{mac} ended {other}"),
        }
    }
    assert_eq!(vanished_seen, skipped.len(), "every device skipped by hand is reported skipped");
    fleet.stop().await;
}
