//! What the web UI needs of the admin server: the UI itself on every path outside `/api/` (no
//! token, strict headers), `/api/v1/status`, inspecting a file on the engine's disk (desktop
//! drops), and the demo hook's answer when the engine has none.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, image, write};

#[tokio::test]
async fn the_ui_loads_without_the_token_and_the_api_still_needs_it() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    for path in ["/", "/index.html", "/devices/aa:bb", "/some/app/route"] {
        let resp = http.get(server.admin(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers().clone();
        assert!(h[reqwest::header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{path}");
        let csp = h[reqwest::header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = resp.text().await.unwrap();
        assert!(body.contains("<html") || body.contains("<!doctype html"), "{path}: {body:.200}");
    }
    // A hashed asset that does not exist is a 404, not the app.
    let gone = http.get(server.admin("/assets/index-00000000.js")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    // Unknown API paths stay JSON 404s behind the token (admin_api.rs checks those); a write to
    // a UI path is refused.
    let post = http.post(server.admin("/")).body("x").send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The token is never in anything the server sends for the UI.
    let page = http.get(server.admin("/")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains(&server.token));
}

#[tokio::test]
async fn status_reports_each_connection_without_secrets() {
    let server = Server::start().await;
    let status: Value = server.get_json("/api/v1/status").await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["data_dir"], server.data_dir().display().to_string());
    assert_eq!(status["admin"]["url"], server.info.admin_url);
    assert_eq!(status["device_server"]["url"], server.info.device_url);
    assert_eq!(status["mqtt"]["mode"], "embedded");
    assert_eq!(status["mqtt"]["url"], server.info.mqtt_url.clone().unwrap());
    assert_eq!(status["mqtt"]["username"], "flotilla");
    assert_eq!(status["mdns"]["enabled"], false, "started with --no-mdns");
    assert_eq!(status["tls"]["enabled"], true, "HTTPS on the device server");
    assert_eq!(status["tls"]["https_url"], server.info.device_https_url.clone().unwrap());
    assert!(!status.to_string().contains("PRIVATE KEY"), "the certificate, never its key");
    assert_eq!(status["demo"], json!({"available": true, "running": null}), "the first-run button can start one");
    let key: Value = server.get_json("/api/v1/keys/public").await;
    assert_eq!(status["signing_key_id"], key["key_id"]);
    // The broker's password is in the data dir, never in the status.
    let creds: Value =
        serde_json::from_slice(&std::fs::read(server.data_dir().join("mqtt-credentials")).unwrap()).unwrap();
    let text = status.to_string();
    assert!(!text.contains(creds["password"].as_str().unwrap()));
    // The engine's MQTT client connects to its own broker soon after start.
    let mut connected = status["mqtt"]["connected"].as_bool().unwrap();
    for _ in 0..100 {
        if connected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let s: Value = server.get_json("/api/v1/status").await;
        connected = s["mqtt"]["connected"].as_bool().unwrap();
    }
    assert!(connected, "the engine's client connects to the embedded broker");
}

#[tokio::test]
async fn the_first_run_button_starts_the_demo_fleet() {
    let server = Server::start().await;
    let resp = server.api(Method::POST, "/api/v1/demo").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["devices"], 48);
    assert_eq!(info["firmware"], "2.0.0");
    let status: Value = server.get_json("/api/v1/status").await;
    assert_eq!(status["demo"]["running"], info);
    let events: Value = server.get_json("/api/v1/events?kind=demo.started").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn inspect_by_path_reads_the_engines_disk_and_imports_nothing() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "app.bin", &image("3.1.4", 120_000));
    let by_path = server
        .api(Method::POST, "/api/v1/firmware/inspect")
        .json(&json!({ "path": good.display().to_string() }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_path.status(), StatusCode::OK);
    let by_path: Value = by_path.json().await.unwrap();
    let by_bytes: Value = server
        .api(Method::POST, "/api/v1/firmware/inspect")
        .body(std::fs::read(&good).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_path, by_bytes, "both forms read the same image");
    assert_eq!(by_path["version"], "3.1.4");

    let mut broken = std::fs::read(&good).unwrap();
    broken[0] = 0x00;
    let broken = write(dir.path(), "broken.bin", &broken);
    let cases = [
        (json!({ "path": broken.display().to_string() }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_image"),
        (json!({ "path": "relative/app.bin" }), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({ "path": dir.path().join("missing.bin").display().to_string() }), StatusCode::NOT_FOUND, "not_found"),
        (json!({ "path": dir.path().display().to_string() }), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({ "file": "x" }), StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (body, status, code) in cases {
        let resp = server.api(Method::POST, "/api/v1/firmware/inspect").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }
    let list: Value = server.get_json("/api/v1/firmware").await;
    assert_eq!(list, json!([]), "inspecting imports nothing");
}

#[tokio::test]
async fn serve_demo_starts_a_simulated_fleet_once() {
    let server = Server::start_with_args(&["--demo"]).await;
    // `runtime.json` appears when the engine is up; the demo fleet starts right after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let status: Value = server.get_json("/api/v1/status").await;
        if !status["demo"]["running"].is_null() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status["demo"]["available"], true);
    assert_eq!(status["demo"]["running"]["devices"], 48, "{status}");
    assert_eq!(status["demo"]["running"]["firmware"], "2.0.0");
    let firmware: Value = server.get_json("/api/v1/firmware/2.0.0").await;
    assert_eq!(firmware["chip"], "esp32", "{firmware}");
    // Every simulated device checks in or announces itself within a few poll intervals.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let devices = loop {
        let devices: Vec<Value> = server.get_json("/api/v1/devices").await;
        if devices.len() >= 48 || std::time::Instant::now() > deadline {
            break devices;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(devices.len(), 48, "the whole demo fleet registers");
    assert!(devices.iter().all(|d| d["version"] == "1.0.0" && d["model"] == "demo"));
    let again = server.api(Method::POST, "/api/v1/demo").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn saved_settings_apply_at_the_next_start_and_never_leak_the_password() {
    let server = Server::start().await;
    let view: Value = server.get_json("/api/v1/settings").await;
    assert_eq!(view["restart_required"], false);
    assert_eq!(view["mqtt_password_set"], false);

    // A wrong value is named and nothing is saved.
    let bad = server
        .api(Method::PUT, "/api/v1/settings")
        .json(&json!({ "device_listen": "0.0.0.0", "public_url": "http://10.0.0.5:8070" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let err: Value = bad.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("device_listen"), "{err}");
    assert!(!server.data_dir().join("settings.json").exists());
    let unknown = server.api(Method::PUT, "/api/v1/settings").json(&json!({ "colour": "blue" })).send().await.unwrap();
    assert!(unknown.status().is_client_error());
    let err: Value = unknown.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("colour"), "{err}");
    assert!(!server.data_dir().join("settings.json").exists());

    let saved = server
        .api(Method::PUT, "/api/v1/settings")
        .json(&json!({
            "public_url": "http://10.0.0.5:8070",
            "mqtt_user": "site",
            "mqtt_password": "pa55word",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    let saved: Value = saved.json().await.unwrap();
    assert_eq!(saved["restart_required"], true);
    assert_eq!(saved["mqtt_password_set"], true);
    assert_eq!(saved["saved"]["public_url"], "http://10.0.0.5:8070");
    assert!(!saved.to_string().contains("pa55word"), "the password is never sent back: {saved}");
    let get: Value = server.get_json("/api/v1/settings").await;
    assert_eq!(get, saved);

    // The next start uses what was saved (no --public-url flag is given).
    let (status, _, dir) = server.stop();
    assert!(status.success());
    let server = Server::start_in(dir).await;
    assert_eq!(server.info.device_url, "http://10.0.0.5:8070");
    let view: Value = server.get_json("/api/v1/settings").await;
    assert_eq!(view["restart_required"], false, "{view}");
}
