//! The `flotilla-load` binary: argument errors, an engine that is not there, and a short run
//! against the fake engine whose JSON report must add up.

use std::process::Command;

use crate::engine::FakeEngine;

fn load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla-load"))
}

#[test]
fn bad_arguments_exit_2_naming_the_flag() {
    let cases: [(&[&str], &str); 6] = [
        (&[], "--url"),
        (&["--url", "http://127.0.0.1:1", "--connections", "0"], "--connections"),
        (&["--url", "http://127.0.0.1:1", "--duration", "soon"], "--duration"),
        (&["--url", "http://127.0.0.1:1", "--duration", "2h"], "--duration"),
        (&["--url", "https://127.0.0.1:1"], "http://"),
        (&["--url", "http://127.0.0.1:1", "--devices", "0"], "devices"),
    ];
    for (args, expected) in cases {
        let out = load().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn an_engine_that_is_not_there_exits_1() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = load().args(["--url", &format!("http://127.0.0.1:{port}"), "--devices", "3"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

// Multi-threaded: the test blocks on the child while the fake engine serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_every_device_then_reports_what_it_measured() {
    let engine = FakeEngine::start().await;
    let out = load()
        .args(["--url", &engine.url, "--devices", "40", "--connections", "4", "--duration", "300ms"])
        .args(["--settle", "0s", "--pid", &std::process::id().to_string(), "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["devices"], 40);
    assert_eq!(report["registration"]["errors"], 0);
    let m = &report["measured"];
    let requests = m["requests"].as_u64().unwrap();
    assert!(requests > 0 && m["errors"] == 0, "{m}");
    assert!(m["throughput"].as_f64().unwrap() > 0.0, "{m}");
    let l = &m["latency_ms"];
    let p = |k: &str| l[k].as_f64().unwrap();
    assert!(p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p99_9") && p("p99_9") <= p("max"), "{l}");
    assert!(report["engine"]["rss_kib"].as_u64().unwrap() > 0);

    // Every device checked in once to register, then at random; all from the same version.
    let latest = engine.latest_versions();
    assert_eq!(latest.len(), 40, "{latest:?}");
    assert!(latest.iter().all(|(id, v)| id.starts_with("load-") && v == "1.0.0"));
    let checkins: usize = (0..40).map(|n| engine.checkins(&format!("load-{n}")).len()).sum();
    assert_eq!(checkins as u64, 40 + requests);
}
