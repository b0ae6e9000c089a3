//! A check-in's work inside the engine, without HTTP: parse the device's JSON, `check_in` (the
//! credential check, the inventory merge, the rollout lookup), serialise the answer — for random
//! enrolled devices of a fleet of 1,000 and of 10,000. The difference between the two sizes is
//! what a device's state costs once it is no longer in the CPU's caches (`docs/performance.md`,
//! the device-entry layout). The HTTP side is `bench/checkin.sh` and `bench/checkin-ceiling.sh`.
//!
//! Run: `cargo bench -p flotilla-core --bench checkin -- --warm-up-time 2 --measurement-time 5`
#![allow(clippy::expect_used, clippy::panic)] // a benchmark's set-up either works or stops it

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::config::{EngineConfig, MqttMode};
use flotilla_core::handle::Caller;
use flotilla_core::{Engine, EngineHandle};
use flotilla_proto::native::{CheckRequest, CheckResponse};
use tokio::net::TcpListener;

/// One enrolled device: its secret and the body it checks in with.
struct Device {
    secret: String,
    body: Vec<u8>,
}

fn request(n: u32) -> CheckRequest {
    let [_, a, b, c] = n.to_be_bytes();
    CheckRequest {
        device_id: format!("bench-{n}"),
        mac: format!("02:00:00:{a:02x}:{b:02x}:{c:02x}"),
        model: Some("demo".into()),
        chip: Some("esp32".into()),
        version: "1.0.0".into(),
        labels: None,
        secure_version: None,
        interval_secs: None,
        tls: None,
    }
}

fn caller(secret: Option<String>) -> Caller {
    Caller { secret, native: true, ip: Some("127.0.0.1".into()), mqtt_device: None, site_broker: false }
}

/// An engine on a fresh data dir (loopback port 0, no MQTT, no mDNS) with `n` enrolled devices.
async fn fleet(dir: &std::path::Path, n: u32) -> (EngineHandle, Vec<Device>) {
    let mut config = EngineConfig::new(dir.to_path_buf());
    config.mdns = false;
    config.mqtt = MqttMode::Off;
    let device = TcpListener::bind("127.0.0.1:0").await.expect("bind the device listener");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind the admin listener");
    let engine = Engine::start_with_listeners(config, device, admin).await.expect("start the engine");
    let mut devices = Vec::with_capacity(n as usize);
    for i in 0..n {
        let req = request(i);
        let body = serde_json::to_vec(&req).expect("serialise a check-in");
        let answer = engine.check_in(req, caller(None)).await.expect("enrol");
        let CheckResponse::NoUpdate { credential: Some(c), .. } = answer else { panic!("no credential: {answer:?}") };
        devices.push(Device { secret: c.secret, body });
    }
    (engine, devices)
}

fn checkins(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let mut group = c.benchmark_group("checkin");
    // `cargo test` runs each benchmark once (without `--bench`): a small fleet does for that.
    let sizes = if std::env::args().any(|a| a == "--bench") { [1_000u32, 10_000] } else { [10, 100] };
    for n in sizes {
        let dir = tempfile::tempdir().expect("a data dir");
        let (engine, devices) = rt.block_on(fleet(dir.path(), n));
        group.bench_function(format!("{n}_devices"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    // A random device each time (xorshift): which one a request is for is as
                    // unpredictable to the caches as under wrk.
                    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ iters;
                    let start = Instant::now();
                    for _ in 0..iters {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let d = &devices[(x % u64::from(n)) as usize];
                        let req: CheckRequest = serde_json::from_slice(&d.body).expect("parse");
                        let answer = engine.check_in(req, caller(Some(d.secret.clone()))).await.expect("check in");
                        black_box(serde_json::to_vec(&answer).expect("serialise"));
                    }
                    start.elapsed()
                })
            });
        });
        // Flushes the writer and checkpoints the store before the next fleet's engine starts.
        rt.block_on(engine.shutdown());
    }
    group.finish();
}

criterion_group!(benches, checkins);
criterion_main!(benches);
