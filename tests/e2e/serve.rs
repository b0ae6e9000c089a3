//! `flotilla serve`: starts, says where it listens, stops cleanly, keeps its data across restarts.

use reqwest::Method;

use crate::support::{Server, image};

#[tokio::test]
async fn serve_starts_reports_and_stops_cleanly_on_sigterm() {
    let server = Server::start().await;
    let health: serde_json::Value = reqwest::get(server.admin("/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let dev_health = reqwest::get(server.device("/health")).await.unwrap();
    assert_eq!(dev_health.status(), 200);
    assert!(server.info.admin_url.starts_with("http://127.0.0.1:"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["admin-token", "keys/site.ed25519", "keys/download.key"] {
            let mode = std::fs::metadata(server.data_dir().join(secret)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{secret} must be private");
        }
    }

    let (status, stdout, dir) = server.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(stdout.contains("admin API:"), "{stdout}");
    assert!(stdout.contains("device server:"), "{stdout}");
    assert!(stdout.contains("Flotilla stopped."), "{stdout}");
    assert!(!dir.path().join("runtime.json").exists(), "runtime.json is removed on shutdown");
}

#[tokio::test]
async fn data_survives_a_restart() {
    let server = Server::start().await;
    let (status, body) = server.upload(image("1.0.0", 64 * 1024), &[]).await;
    assert_eq!(status, 201, "{body}");
    let key_before: serde_json::Value = server.get_json("/api/v1/keys/public").await;
    let (_, _, dir) = server.stop();

    let server = Server::start_in(dir).await;
    let list: Vec<serde_json::Value> = server.get_json("/api/v1/firmware").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["version"], "1.0.0");
    let key_after: serde_json::Value = server.get_json("/api/v1/keys/public").await;
    assert_eq!(key_before, key_after, "the site key is created once and kept");
    let kinds: Vec<String> = server
        .api(Method::GET, "/api/v1/events?kind=engine.")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, vec!["engine.started", "engine.stopped", "engine.started"]);
}

#[tokio::test]
async fn a_busy_port_is_reported_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::flotilla_bin())
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--https",
            "off",
            "--mqtt-tls-listen",
            "off",
            "--admin",
            &addr,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr) && stderr.contains("admin API"), "{stderr}");
}
