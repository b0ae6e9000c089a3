//! The `flotilla` client commands: offline inspect, import, listing, keys; exit codes and JSON.

use serde_json::Value;

use crate::support::{Server, flotilla_bin, image, write};

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `flotilla ARGS` against `server`; it must succeed. Its standard output.
pub fn ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(out.status.success(), "flotilla {args:?} failed ({}): {}", out.status, stderr(&out));
    stdout(&out)
}

/// Runs `flotilla ARGS` (with `--json` among them); it must succeed and print JSON.
pub fn json(server: &Server, args: &[&str]) -> Value {
    let text = ok(server, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("flotilla {args:?} printed no JSON ({e}): {text}"))
}

/// Runs `flotilla ARGS`; it must exit with `code`. Its standard error.
pub fn fails(server: &Server, args: &[&str], code: i32) -> String {
    let out = server.cli(args);
    assert_eq!(out.status.code(), Some(code), "flotilla {args:?}: {}{}", stdout(&out), stderr(&out));
    stderr(&out)
}

#[test]
fn inspect_works_offline_and_refuses_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.bin", &image("4.5.6", 123_456));
    let out =
        std::process::Command::new(flotilla_bin()).args(["firmware", "inspect", "--json"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let info: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for key in [
        "format",
        "chip",
        "version",
        "project",
        "idf_version",
        "secure_version",
        "size",
        "sha256",
        "flash_size",
        "segments",
    ] {
        assert!(info.get(key).is_some(), "JSON carries {key}: {info}");
    }
    assert_eq!(info["format"], "esp32");
    assert_eq!(info["version"], "4.5.6");
    assert_eq!(info["project"], "demo");
    assert_eq!(info["size"], 123_456);

    let human = std::process::Command::new(flotilla_bin()).args(["firmware", "inspect"]).arg(&good).output().unwrap();
    assert!(stdout(&human).contains("4.5.6") && stdout(&human).contains("sha256:"), "{}", stdout(&human));

    let mut bad_bytes = image("4.5.6", 10_000);
    let last = bad_bytes.len() - 40;
    bad_bytes[last] ^= 0xFF;
    let bad = write(dir.path(), "bad.bin", &bad_bytes);
    let out = std::process::Command::new(flotilla_bin()).args(["firmware", "inspect"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.bin"), "{}", stderr(&out));

    let missing =
        std::process::Command::new(flotilla_bin()).args(["firmware", "inspect", "/nonexistent.bin"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("cannot read /nonexistent.bin"));
}

#[tokio::test]
async fn import_list_show_and_keys_through_the_cli() {
    let server = Server::start().await;
    let file = write(server.data_dir(), "pump.bin", &image("1.4.2", 200_000));
    let out = server.cli(&["firmware", "import", file.to_str().unwrap(), "--channel", "beta", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let res: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(res["created"], true);
    assert_eq!(res["firmware"]["version"], "1.4.2");
    assert_eq!(res["firmware"]["channel"], "beta");

    let again = server.cli(&["firmware", "import", file.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("Already imported"), "{}", stdout(&again));

    let other = write(server.data_dir(), "other.bin", &image("1.4.2", 200_001));
    let conflict = server.cli(&["firmware", "import", other.to_str().unwrap()]);
    assert_eq!(conflict.status.code(), Some(2));
    assert!(stderr(&conflict).contains("already imported"), "{}", stderr(&conflict));

    let list = server.cli(&["firmware", "list"]);
    assert!(list.status.success());
    let text = stdout(&list);
    assert!(text.lines().next().unwrap().starts_with("ID"), "{text}");
    assert!(text.contains("1.4.2") && text.contains("demo") && text.contains("beta"), "{text}");
    let json: Vec<Value> = serde_json::from_str(&stdout(&server.cli(&["firmware", "list", "--json"]))).unwrap();
    assert_eq!(json.len(), 1);

    let show = server.cli(&["firmware", "show", "1.4.2", "--json"]);
    let fw: Value = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(fw["id"], json[0]["id"]);
    let block = server.cli(&["firmware", "block", "1.4.2"]);
    assert!(stdout(&block).contains("is blocked"), "{}", stdout(&block));

    let devices = server.cli(&["devices", "list"]);
    assert!(devices.status.success());
    assert!(stdout(&devices).contains("No devices"));
    let devices: Vec<Value> = serde_json::from_str(&stdout(&server.cli(&["devices", "list", "--json"]))).unwrap();
    assert!(devices.is_empty());

    let pem = server.cli(&["keys", "export"]);
    assert!(stdout(&pem).starts_with("-----BEGIN PUBLIC KEY-----"), "{}", stdout(&pem));
    let key: Value = serde_json::from_str(&stdout(&server.cli(&["keys", "export", "--format", "json"]))).unwrap();
    assert_eq!(key["key_id"], fw["manifest"]["key_id"]);
}

#[test]
fn client_commands_say_how_to_reach_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(flotilla_bin())
        .args(["firmware", "list", "--data-dir"])
        .arg(dir.path())
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("flotilla serve"), "{}", stderr(&out));
    let out = std::process::Command::new(flotilla_bin())
        .args(["firmware", "list", "--api", "http://127.0.0.1:9", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_driven_from_the_cli() {
    use flotilla_sim::{DeviceKind, Fleet, FleetConfig};
    let server = Server::start().await;
    let file = write(server.data_dir(), "fw.bin", &image("2.0.0", 90_000));
    assert!(server.cli(&["firmware", "import", file.to_str().unwrap()]).status.success());
    let fleet = Fleet::start(FleetConfig {
        api: Some(server.info.device_url.clone()),
        fleet: vec![(DeviceKind::NativePull, 6)],
        chip: flotilla_proto::Chip::Esp32,
        model: "demo".into(),
        version: "1.0.0".into(),
        address_block: 43,
        poll_interval: std::time::Duration::from_millis(200),
        reboot_delay: std::time::Duration::from_millis(100),
        ..FleetConfig::default()
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while serde_json::from_str::<Vec<Value>>(&stdout(&server.cli(&["devices", "list", "--json"]))).unwrap().len() < 6 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let bad = server.cli(&["rollout", "create", "--firmware", "2.0.0", "--target", "colour:red"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown term"), "{}", stderr(&bad));
    let bad = server.cli(&["rollout", "create", "--firmware", "2.0.0", "--target", "all", "--waves", "0"]);
    assert_eq!(bad.status.code(), Some(2));

    let out = server.cli(&[
        "rollout",
        "create",
        "--firmware",
        "2.0.0",
        "--target",
        "all and outdated",
        "--waves",
        "1,100%",
        "--timeout",
        "30s",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(created["rollout"]["state"], "draft");
    let id = created["rollout"]["id"].to_string();
    assert!(stdout(&server.cli(&["rollout", "start", &id])).contains("is running"));

    // --watch follows until the rollout ends, then exits 0.
    let out = tokio::task::spawn_blocking({
        let args: Vec<String> = ["rollout", "status", &id, "--watch"].iter().map(|s| s.to_string()).collect();
        let dir = server.data_dir().to_path_buf();
        move || std::process::Command::new(flotilla_bin()).args(&args).arg("--data-dir").arg(dir).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("COMPLETED") && text.contains("6 of 6 succeeded"), "{text}");

    let list = stdout(&server.cli(&["rollout", "list"]));
    assert!(list.contains("completed"), "{list}");
    let report = server.data_dir().join("report.csv");
    let out = server.cli(&["rollout", "report", &id, "--format", "csv", "--output", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(&report).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.lines().skip(1).all(|l| l.contains(",succeeded,1.0.0,2.0.0,")), "{csv}");
    let json: Value =
        serde_json::from_str(&stdout(&server.cli(&["rollout", "report", &id, "--format", "json"]))).unwrap();
    assert_eq!(json["jobs"].as_array().unwrap().len(), 6);

    let again = server.cli(&["rollout", "pause", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("not running"), "{}", stderr(&again));
    assert!(fleet.devices().iter().all(|d| d.version == "2.0.0"));
    fleet.stop().await;
}
