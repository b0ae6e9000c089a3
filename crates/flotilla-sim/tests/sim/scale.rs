//! The simulator's memory with a fleet from the binary: resident memory idle and its peak while
//! every device downloads and installs an update, printed and held to a budget
//! ([`IDLE_PER_DEVICE_KIB`], [`PEAK_PER_DEVICE_KIB`] on top of [`BASE_KIB`]). The normal run uses
//! 150 + 150 devices (seconds); for the documented measurement:
//! `SIM_SCALE_PULL=1000 SIM_SCALE_MQTT=1000 cargo test --release -p flotilla-sim --test sim -- --nocapture scale`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_proto::firmware::Chip;
use flotilla_proto::native::{Presence, TopicProfile};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::broker::Mosquitto;
use crate::engine::{FakeEngine, Seen, Signing};
use crate::{image, wait_within};

/// Resident memory of the simulator with no device (runtime, buffers, the binary), KiB.
const BASE_KIB: u64 = 24 * 1024;
/// Budget per idle device (its state, its connection), KiB. Measured: 40 KiB/device (debug build,
/// 500 + 500 devices).
const IDLE_PER_DEVICE_KIB: u64 = 64;
/// Budget per device while updating, on top of the image it holds (a download buffer), KiB.
const PEAK_PER_DEVICE_KIB: u64 = 96;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `(VmRSS, VmHWM)` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_fleet_memory() {
    let (pulls, mqtts) = (env_count("SIM_SCALE_PULL", 150), env_count("SIM_SCALE_MQTT", 150));
    let image_size = env_count("SIM_SCALE_IMAGE", 256 * 1024);
    let (engine, broker) = (FakeEngine::start().await, Mosquitto::start());
    let sha = engine.add_firmware(image("2.0.0", image_size));

    // Presence of every MQTT device, latest first wins.
    let mut opts = MqttOptions::new("scale-observer", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(60)).set_max_packet_size(1 << 20, 1 << 20);
    let (observer, mut events) = AsyncClient::new(opts, 64);
    observer.subscribe("flotilla/+/status", QoS::AtLeastOnce).await.unwrap();
    let online = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, String>::new()));
    let sink = std::sync::Arc::clone(&online);
    let profile = TopicProfile::flotilla();
    let listener = tokio::spawn(async move {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await
                && let Some((id, _)) = flotilla_proto::native::match_topic(&profile.presence, &p.topic)
                && let Ok(presence) = serde_json::from_slice::<Presence>(&p.payload)
                && let Some(v) = presence.version.filter(|_| presence.online)
            {
                sink.lock().unwrap().insert(id, v);
            }
        }
    });

    let fleet = format!("native-pull={pulls},native-mqtt={mqtts}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla-sim"))
        .args(["--api", &engine.url, "--mqtt", &broker.url(), "--fleet", &fleet, "--seed", "3"])
        .args(["--poll-interval", "5s", "--reboot-delay", "2s", "--address-block", "30"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let on = |version: &str| {
        // MQTT devices check in once too (their enrolment): count the pull devices' check-ins.
        let checkins = engine.latest_versions();
        let pull = checkins.iter().filter(|(id, v)| id.contains("native-pull") && *v == version).count();
        let mqtt = online.lock().unwrap().values().filter(|v| *v == version).count();
        (pull, mqtt)
    };
    let limit = Duration::from_secs(180);
    let every = Duration::from_millis(250);
    wait_within("every device up", limit, every, || (on("1.0.0") == (pulls, mqtts)).then_some(())).await;
    let up = started.elapsed();
    // Steady state, observed rather than slept for: every pull device has polled again since it
    // came up (a full poll interval each), so what is measured is the idle fleet, not its start.
    wait_within("every pull device polling for the second time", limit, every, || {
        let mut polls = std::collections::HashMap::<String, usize>::new();
        for e in engine.log() {
            if let Seen::Checkin { device, .. } = e.seen
                && device.contains("native-pull")
            {
                *polls.entry(device).or_default() += 1;
            }
        }
        (polls.len() == pulls && polls.values().all(|&n| n >= 2)).then_some(())
    })
    .await;
    let (idle_rss, _) = memory(pid);

    let offer = engine.make_offer("job-scale", &sha, "2.0.0", Chip::Esp32, Signing::Good);
    for n in 0..pulls {
        engine.offer_to(&format!("sim-native-pull-{n}"), offer.clone());
    }
    let payload = serde_json::to_vec(&offer).unwrap();
    for n in 0..mqtts {
        let topic = format!("flotilla/sim-native-mqtt-{n}/cmd/ota");
        observer.publish(topic, QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
    }
    let update_started = Instant::now();
    let mut peak = 0;
    wait_within("every device on 2.0.0", limit, every, || {
        peak = peak.max(memory(pid).0);
        (on("2.0.0") == (pulls, mqtts)).then_some(())
    })
    .await;
    let updated = update_started.elapsed();
    let (after_rss, hwm) = memory(pid);
    let downloads: HashSet<_> = engine.downloads().into_iter().collect();

    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let summary: Vec<String> = lines.by_ref().map_while(Result::ok).collect();
    listener.abort();
    println!(
        "scale: {pulls} pull + {mqtts} MQTT devices, {} KiB image: up in {up:.1?}, all updated in {updated:.1?}; \
         RSS idle {} MiB ({} KiB/device), peak while updating {} MiB (VmHWM {} MiB), after {} MiB; \
         download statuses {downloads:?}; exit {status}; {summary:?}",
        image_size / 1024,
        idle_rss / 1024,
        idle_rss / (pulls + mqtts) as u64,
        peak / 1024,
        hwm / 1024,
        after_rss / 1024,
    );
    assert!(status.success());
    let n = (pulls + mqtts) as u64;
    let idle_budget = BASE_KIB + n * IDLE_PER_DEVICE_KIB;
    assert!(idle_rss > 0 && peak > 0, "the simulator's memory was read from /proc/{pid}/status");
    assert!(idle_rss <= idle_budget, "idle: {idle_rss} KiB for {n} devices, budget {idle_budget} KiB");
    let peak_budget = BASE_KIB + n * (PEAK_PER_DEVICE_KIB + image_size as u64 / 1024);
    assert!(hwm <= peak_budget, "peak while updating: {hwm} KiB for {n} devices, budget {peak_budget} KiB");
    assert_eq!(on("2.0.0"), (pulls, mqtts), "every device runs the update");
}
