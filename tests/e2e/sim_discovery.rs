//! The simulated vendor fleet (flotilla-sim's Tasmota, Shelly Gen1/Gen2+, ESPHome and ArduinoOTA
//! personalities) found by the real `flotilla serve`: through MQTT discovery on the embedded
//! broker, through `devices scan --subnet` over the simulator's loopback addresses, and over mDNS
//! inside a network namespace; and the simulator read by the libraries Home Assistant reads real
//! devices with (zeroconf, hatasmota, aioshelly — `tests/sim/fidelity.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flotilla_sim::{DeviceKind, Fleet, FleetConfig};
use serde_json::Value;

use crate::support::{Server, family_kind, flotilla_bin, require_namespaces, require_program};

/// The `flotilla-sim` binary, built once per test run.
fn sim_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "flotilla-sim", "--bin", "flotilla-sim"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building flotilla-sim failed");
        let bin = flotilla_bin().with_file_name("flotilla-sim");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

fn test_python() -> PathBuf {
    let python = std::env::var_os("FLOTILLA_PYTHON")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python"), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run `bash -c 'source scripts/lib.sh && ensure_py_venv'` (scripts/test.sh does)",
        python.display()
    );
    python
}

/// A vendor-only fleet (no engine URL, no site key needed) on `127.<block>.0.x`.
fn vendor_fleet(block: u8, fleet: Vec<(DeviceKind, usize)>, mqtt: Option<String>) -> FleetConfig {
    FleetConfig {
        api: None,
        mqtt,
        fleet,
        address_block: block,
        mdns: false,
        seed: u64::from(block),
        ..FleetConfig::default()
    }
}

fn by_family(devices: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in devices {
        *m.entry(family_kind(d)).or_insert(0) += 1;
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_mixed_simulated_fleet_appears_through_mqtt_discovery() {
    let server = Server::start().await;
    let fleet = Fleet::start(vendor_fleet(
        52,
        vec![(DeviceKind::Tasmota, 4), (DeviceKind::Shelly1, 4), (DeviceKind::Shelly2, 4), (DeviceKind::Esphome, 4)],
        Some(server.mqtt_url()),
    ))
    .await
    .unwrap();
    // Gen2+'s `<id>/online` does not say which generation.
    let want = counts(&[("tasmota", 4), ("shelly-gen1", 4), ("shelly", 4), ("esphome", 4)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all: Vec<Value> = server.get_json("/api/v1/devices").await;
        if by_family(&all) == want && all.iter().all(|d| d["online"] == true) {
            break all;
        }
        assert!(Instant::now() < deadline, "not all 16 listed and online: {:?} {all:?}", by_family(&all));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sim = fleet.devices();
    for d in &all {
        let mac = d["mac"].as_str().unwrap();
        let s =
            sim.iter().find(|s| s.mac.eq_ignore_ascii_case(mac)).unwrap_or_else(|| panic!("{mac} is not simulated"));
        // Gen2's `<id>/online` names the device only; the others' messages carry the version.
        if family_kind(d) != "shelly" {
            assert_eq!(d["version"].as_str(), Some(s.version.as_str()), "{d}");
        }
        assert!(d["sources"].as_array().unwrap().iter().any(|s| s == "mqtt"), "{d}");
        if ["tasmota", "shelly-gen1", "esphome"].contains(&family_kind(d).as_str()) {
            assert_eq!(d["ip"].as_str(), Some(s.ip.to_string().as_str()), "the discovery message names its IP: {d}");
        }
    }
    // Stopping the fleet drops every connection without DISCONNECT: the Last Wills take the
    // Tasmota and Shelly devices offline.
    fleet.stop().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<Value> = server.get_json("/api/v1/devices").await;
        let offline = all.iter().filter(|d| d["family"] != "esphome" && d["online"] == false).count();
        if offline == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "Last Wills did not take 12 devices offline ({offline}): {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Multi-threaded: the simulated devices answer while the CLI blocks this test's thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_scan_finds_every_simulated_vendor_device_with_its_family() {
    let server = Server::start().await;
    let fleet = Fleet::start(vendor_fleet(
        53,
        vec![(DeviceKind::Tasmota, 30), (DeviceKind::Shelly1, 30), (DeviceKind::Shelly2, 30), (DeviceKind::Esphome, 5)],
        None,
    ))
    .await
    .unwrap();
    let sim = fleet.devices();
    let port = sim[0].port;
    assert!(port != 0 && sim.iter().all(|d| d.port == port), "vendor web servers share one port");
    let out = server.cli(&[
        "devices",
        "scan",
        "--subnet",
        "127.53.0.0/25",
        "--port",
        &port.to_string(),
        "--rate",
        "500",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = r["found"].as_array().unwrap();
    assert_eq!(found.len(), 95, "every Tasmota, Shelly and ESPHome web server found: {r}");
    // ESPHome's web server tells its family and name, not its MAC: reported, not added.
    let esphome: Vec<&Value> = found.iter().filter(|p| p["family"] == "esphome").collect();
    assert_eq!(esphome.len(), 5, "{r}");
    for p in esphome {
        let s = sim.iter().find(|s| p["address"] == format!("{}:{port}", s.ip)).unwrap();
        assert!(p["detail"].as_str().unwrap().contains(&format!("Sim {}", s.id)), "{p}");
        assert!(p["device"].is_null(), "{p}");
    }
    let all: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(by_family(&all), counts(&[("tasmota", 30), ("shelly-gen1", 30), ("shelly-gen2", 30)]), "{all:?}");
    for d in &all {
        let s = sim.iter().find(|s| s.mac.eq_ignore_ascii_case(d["mac"].as_str().unwrap())).unwrap();
        assert_eq!(
            (d["ip"].as_str(), d["version"].as_str()),
            (Some(s.ip.to_string().as_str()), Some(s.version.as_str()))
        );
        assert_eq!(d["online"], true, "{d}");
    }
    fleet.stop().await;
}

/// Runs `script` under `unshare -n` (a fresh network namespace: loopback up, multicast routed to
/// it) with a time limit; returns (success, stdout, stderr).
fn in_namespace(script: &str, limit: Duration) -> (bool, String, String) {
    require_program("unshare", "--version", "util-linux");
    require_program("ip", "-V", "iproute2");
    let setup = "ip link set dev lo multicast on up && ip route add 224.0.0.0/4 dev lo && ";
    let mut child = Command::new("unshare")
        .args(["-n", "--", "bash", "-c", &format!("{setup}{script}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
fn a_simulated_fleet_is_discovered_over_mdns() {
    require_namespaces("sim_discovery::a_simulated_fleet_is_discovered_over_mdns");
    let data = tempfile::tempdir().unwrap();
    let (flotilla, sim, dir) = (flotilla_bin(), sim_bin(), data.path());
    // No broker for the simulator: everything it is known by comes from its mDNS records.
    let script = format!(
        r#"set -e
"{f}" serve --http 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --log warn --data-dir "{d}" >/dev/null &
S=$!
"{s}" --tasmota 2 --tasmota-mdns --shelly1 2 --shelly2 2 --esphome 2 --arduino 2 --address-block 54 >/dev/null &
T=$!
trap 'kill $S $T 2>/dev/null || true' EXIT
for i in $(seq 1 150); do
  sleep 0.2
  if "{f}" devices list --json --data-dir "{d}" >"{d}/list.json" 2>/dev/null &&
     [ "$(grep -o '"admin_labels"' "{d}/list.json" | wc -l)" -ge 6 ]; then break; fi
done
cat "{d}/list.json""#,
        f = flotilla.display(),
        s = sim.display(),
        d = dir.display()
    );
    let (ok, stdout, stderr) = in_namespace(&script, Duration::from_secs(60));
    assert!(ok, "the namespace script failed: {stderr}\n{stdout}");
    let list: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let all: Vec<Value> = list.as_array().cloned().or_else(|| list["devices"].as_array().cloned()).unwrap_or_default();
    // Tasmota's `_http._tcp devicetype=tasmota` and ArduinoOTA's `_arduino._tcp` carry no MAC:
    // the engine keeps them under a provisional key, off the device list, until a MAC is learned
    // (by MQTT or a probe). The three families whose records carry a MAC are listed.
    assert_eq!(by_family(&all), counts(&[("shelly-gen1", 2), ("shelly-gen2", 2), ("esphome", 2)]), "{all:?}");
    for d in &all {
        assert_eq!(d["online"], true, "{d}");
        assert!(d["ip"].as_str().is_some_and(|ip| ip.starts_with("127.54.0.")), "{d}");
        assert_eq!(d["sources"], serde_json::json!(["mdns"]), "{d}");
    }
    let version =
        |f: &str| all.iter().filter(|d| family_kind(d) == f).filter_map(|d| d["version"].as_str()).collect::<Vec<_>>();
    assert_eq!(version("shelly-gen2"), ["1.4.4", "1.4.4"]);
    assert_eq!(version("shelly-gen1"), ["1.14.0", "1.14.0"]);
    assert_eq!(version("esphome"), ["2024.12.2", "2024.12.2"]);
    // ESPHome's TXT carries its MAC; ArduinoOTA's does not.
    assert!(all.iter().filter(|d| d["family"] == "esphome").all(|d| d["mac"].as_str().is_some_and(|m| m.len() == 17)));
}

#[test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
fn home_assistant_libraries_read_the_simulator_as_real_devices() {
    require_namespaces("sim_discovery::home_assistant_libraries_read_the_simulator_as_real_devices");
    require_program("mosquitto", "-h", "mosquitto");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/fidelity.py");
    let request = serde_json::json!({ "sim": sim_bin(), "block": 55 }).to_string();
    // Root inside the namespace: the Gen1 devices listen on port 80, where aioshelly reads them.
    let cmd = format!("exec \"{}\" \"{}\" '{request}'", test_python().display(), script.display());
    let (ok, stdout, stderr) = in_namespace(&cmd, Duration::from_secs(120));
    assert!(ok && stdout.trim_end().ends_with("ALL OK"), "fidelity.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: zeroconf found all 14 instances"), "{stdout}");
    assert!(stdout.contains("ok: hatasmota device config of"), "{stdout}");
    assert!(stdout.contains("ok: aioshelly BlockDevice /settings and /status of"), "{stdout}");
    assert!(stdout.contains("ok: aioshelly merged the device's NotifyStatus"), "{stdout}");
}
