//! The `flotilla-sim` binary: argument errors, and a run from start to SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::engine::FakeEngine;
use crate::wait_for;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla-sim"))
}

#[test]
fn bad_arguments_exit_2_naming_the_flag() {
    let key = "00".repeat(32);
    let cases: [(&[&str], &str); 6] = [
        (&["--fleet", "tasmotta=3"], "--fleet: unknown device kind `tasmotta`"),
        (&["--fail", "boot=lots"], "--fail: rate of `boot`"),
        (&["--chip", "z80"], "--chip: unknown chip `z80`"),
        (&["--poll-interval", "soon"], "--poll-interval"),
        (&["--fleet", "native-mqtt=2", "--site-key", &key], "--mqtt"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, expected) in cases {
        let out = sim().args(args).env_remove("FLOTILLA_SIM_API").env_remove("FLOTILLA_SIM_MQTT").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

// Multi-threaded: the test blocks on the child's output while the fake engine serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_until_sigterm_and_prints_summary_and_tally() {
    let engine = FakeEngine::start().await;
    let mut child = sim()
        .args(["--api", &engine.url, "--fleet", "native-pull=3", "--poll-interval", "100ms", "--seed", "7"])
        .args(["--fail", "boot=34%", "--address-block", "22"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let summary = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(summary.starts_with("flotilla-sim: 3 devices (native-pull=3)"), "{summary}");
    assert!(summary.contains("127.22.0.1–127.22.0.3") && summary.contains("boot=1 ["), "{summary}");
    for n in 0..3 {
        let id = format!("sim-native-pull-{n}");
        wait_for("every device checking in", || (!engine.checkins(&id).is_empty()).then_some(())).await;
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let tally = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(tally, "flotilla-sim: stopped; versions: 1.0.0=3; vanished: 0");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
