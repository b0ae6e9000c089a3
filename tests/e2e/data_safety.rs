//! No data lost: concurrent imports of one file, a database file copied alone after a clean stop,
//! an empty database next to firmware files, file modes, and backup / restore of a running engine.
//! Each against the real `flotilla serve`.

use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Server, flotilla_bin, image, stored_files};

/// An import through the admin API with a client of its own (for parallel uploads).
async fn upload(http: reqwest::Client, url: String, token: String, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name("fw.bin"));
    let resp = http.post(url).bearer_auth(token).multipart(form).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// Downloads a firmware from the device server through a fresh download link.
async fn download(server: &Server, id: &Value) -> (StatusCode, Vec<u8>) {
    let resp = server
        .api(Method::POST, &format!("/api/v1/firmware/{id}/download-link"))
        .json(&json!({ "job": "data-safety" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let url = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let resp = server.http.get(url).send().await.unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

async fn check_in(server: &Server, mac: &str) {
    let body = json!({ "device_id": format!("dev-{}", &mac[12..]).replace(':', ""), "mac": mac, "model": "demo",
                       "chip": "esp32", "version": "1.0.0" });
    let resp = server.http.post(server.device("/api/v1/check")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
}

async fn macs(server: &Server) -> Vec<String> {
    let devices: Vec<Value> = server.get_json("/api/v1/devices").await;
    let mut macs: Vec<String> = devices.iter().map(|d| d["mac"].as_str().unwrap().to_owned()).collect();
    macs.sort();
    macs
}

async fn storage(server: &Server) -> Value {
    let status: Value = server.get_json("/api/v1/status").await;
    status["storage"].clone()
}

/// `flotilla serve` on `dir` with its standard error kept (to read its warnings after it stops).
async fn serve_logging(dir: tempfile::TempDir) -> Server {
    let child = Command::new(flotilla_bin())
        .args(["serve", "--admin", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "off", "--no-mdns"])
        .args(["--https", "127.0.0.1:0", "--mqtt-tls-listen", "off"])
        .args(["--log", "warn"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla serve starts");
    Server::adopt(child, dir).await
}

/// Stops the server cleanly; returns its data dir and what it wrote on standard error.
fn stop_logging(mut server: Server) -> (tempfile::TempDir, String) {
    let stderr = server.child.stderr.take();
    let (status, _, dir) = server.stop();
    assert!(status.success(), "flotilla serve stops cleanly: {status:?}");
    let mut text = String::new();
    if let Some(mut e) = stderr {
        use std::io::Read;
        e.read_to_string(&mut text).unwrap();
    }
    (dir, text)
}

#[tokio::test]
async fn concurrent_imports_of_one_file_all_get_that_firmware_and_its_file_stays() {
    let server = Server::start().await;
    let url = server.admin("/api/v1/firmware");
    let mut imported = Vec::new();
    for round in 0..5 {
        let bytes = image(&format!("3.0.{round}"), 256 * 1024 + round * 4096);
        let mut uploads = tokio::task::JoinSet::new();
        for _ in 0..8 {
            uploads.spawn(upload(server.http.clone(), url.clone(), server.token.clone(), bytes.clone()));
        }
        let answers = uploads.join_all().await;
        let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
        assert_eq!(created, 1, "round {round}: exactly one import creates the firmware: {answers:?}");
        let ids: Vec<&Value> = answers.iter().map(|(_, b)| &b["firmware"]["id"]).collect();
        for (status, body) in &answers {
            assert!(
                *status == StatusCode::CREATED || (*status == StatusCode::OK && body["created"] == false),
                "round {round}: every other import answers 200 already imported, not {status}: {body}"
            );
            assert_eq!(&body["firmware"]["id"], ids[0], "round {round}: the same firmware for everyone: {body}");
        }
        imported.push((ids[0].clone(), bytes));
    }
    // Every row has its file, whole, and no temporary file is left.
    let listed: Vec<Value> = server.get_json("/api/v1/firmware").await;
    assert_eq!(listed.len(), imported.len());
    let files = stored_files(server.data_dir());
    let mut shas: Vec<String> = listed.iter().map(|f| f["sha256"].as_str().unwrap().to_owned()).collect();
    shas.sort();
    assert_eq!(files, shas, "files on disk = firmware rows, no temp file");
    for (id, bytes) in &imported {
        assert_eq!(download(&server, id).await, (StatusCode::OK, bytes.clone()), "firmware {id} downloads");
    }
    assert_eq!(storage(&server).await["missing_firmware_files"], json!([]));

    // A file that went missing is named at start-up, and re-importing the firmware puts it back.
    let (_, _, dir) = server.stop();
    let (lost_id, lost_bytes) = imported[2].clone();
    let lost_sha = hex::encode(Sha256::digest(&lost_bytes));
    std::fs::remove_file(dir.path().join("firmware").join(&lost_sha)).unwrap();
    let server = Server::start_in(dir).await;
    assert_eq!(storage(&server).await["missing_firmware_files"], json!([lost_sha]));
    assert_eq!(download(&server, &lost_id).await.0, StatusCode::NOT_FOUND);
    let (status, body) = server.upload(lost_bytes.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["firmware"]["id"], lost_id);
    assert_eq!(download(&server, &lost_id).await, (StatusCode::OK, lost_bytes));
    assert_eq!(storage(&server).await["missing_firmware_files"], json!([]));
}

#[tokio::test]
async fn after_a_clean_stop_the_database_file_alone_holds_the_fleet() {
    let server = serve_logging(tempfile::tempdir().unwrap()).await;
    let bytes = image("4.0.0", 100 * 1024);
    let (status, body) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["firmware"]["id"].clone();
    for n in 0..20 {
        check_in(&server, &format!("02:00:00:00:0c:{n:02x}")).await;
    }
    let before = macs(&server).await;
    assert_eq!(before.len(), 20);
    let (status, _, dir) = server.stop();
    assert!(status.success());
    let wal = dir.path().join("flotilla.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "the WAL is checkpointed away at a clean stop"
    );

    // A backup by hand that copies the database file (and the firmware folder), not the WAL.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("flotilla.db"), copy.path().join("flotilla.db")).unwrap();
    std::fs::create_dir(copy.path().join("firmware")).unwrap();
    for name in stored_files(dir.path()) {
        std::fs::copy(dir.path().join("firmware").join(&name), copy.path().join("firmware").join(&name)).unwrap();
    }
    let server = serve_logging(copy).await;
    assert_eq!(macs(&server).await, before, "every device is in the copied database file");
    assert_eq!(download(&server, &id).await, (StatusCode::OK, bytes));
}

#[tokio::test]
async fn an_empty_database_next_to_firmware_files_keeps_them_and_says_so() {
    // The database is lost, or something brought back an empty file: both ways, nothing is swept.
    lost_database_keeps_firmware("missing", false).await;
    lost_database_keeps_firmware("empty", true).await;
}

async fn lost_database_keeps_firmware(case: &str, empty_file: bool) {
    let server = serve_logging(tempfile::tempdir().unwrap()).await;
    let bytes = image("5.0.0", 64 * 1024);
    let (status, body) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sha = body["firmware"]["sha256"].as_str().unwrap().to_owned();
    let (dir, _) = stop_logging(server);
    for name in ["flotilla.db", "flotilla.db-wal", "flotilla.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    if empty_file {
        std::fs::write(dir.path().join("flotilla.db"), b"").unwrap();
    }
    let server = serve_logging(dir).await;
    let listed: Vec<Value> = server.get_json("/api/v1/firmware").await;
    assert!(listed.is_empty(), "{case}: the new database knows no firmware");
    let (dir, log) = stop_logging(server);
    assert_eq!(stored_files(dir.path()), vec![sha.clone()], "{case}: the firmware file is kept");
    assert!(log.contains("kept, not") && log.contains(&sha), "{case}: a warning names the kept file: {log}");
    // The next start (the database exists now, still without firmware) keeps it too.
    let server = serve_logging(dir).await;
    let (dir, _) = stop_logging(server);
    assert_eq!(stored_files(dir.path()), vec![sha.clone()], "{case}: kept on every start");
    // Re-importing it makes it known again, and it downloads.
    let server = serve_logging(dir).await;
    let (status, body) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(download(&server, &body["firmware"]["id"]).await, (StatusCode::OK, bytes));
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_is_private_and_an_open_admin_token_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("admin-token"), "an-admin-token-readable-by-all\n").unwrap();
    std::fs::set_permissions(dir.path().join("admin-token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = serve_logging(dir).await;
    assert_eq!(server.token, "an-admin-token-readable-by-all", "the token itself is kept");
    let (status, body) = server.upload(image("6.0.0", 32 * 1024), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sha = body["firmware"]["sha256"].as_str().unwrap().to_owned();
    let data = server.data_dir().to_path_buf();
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("firmware")), 0o700, "firmware dir");
    assert_eq!(mode(&data.join("firmware").join(&sha)), 0o600, "firmware file");
    for name in ["flotilla.db", "flotilla.db-wal", "flotilla.db-shm", "admin-token"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    let (_, log) = stop_logging(server);
    assert!(log.contains("admin-token") && log.contains("0600"), "a warning says the token was open: {log}");
}

#[tokio::test]
async fn a_backup_of_a_running_engine_restores_whole() {
    let server = serve_logging(tempfile::tempdir().unwrap()).await;
    let bytes = image("7.0.0", 128 * 1024);
    let (status, body) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["firmware"]["id"].clone();
    for n in 0..10 {
        check_in(&server, &format!("02:00:00:00:0d:{n:02x}")).await;
    }
    let before = macs(&server).await;
    assert_eq!(before.len(), 10, "{before:?}");
    let key: Value = server.get_json("/api/v1/keys/public").await;

    let place = tempfile::tempdir().unwrap();
    let backup = place.path().join("site-backup");
    let out = server.cli(&["backup", backup.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["firmware"].as_u64(), summary["devices"].as_u64()), (Some(1), Some(10)), "{summary}");
    // The engine goes on; what happens after the backup is not in it.
    check_in(&server, "02:00:00:00:0d:ff").await;
    // Not into the running engine's data dir, and not over a backup.
    let out = server.cli(&["restore", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "restore refuses a data dir in use");
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.cli(&["backup", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a second backup into the same folder is refused");

    let target = tempfile::tempdir().unwrap();
    let out = Command::new(flotilla_bin())
        .args(["restore", backup.to_str().unwrap(), "--data-dir"])
        .arg(target.path())
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = serve_logging(target).await;
    assert_eq!(macs(&restored).await, before, "the devices of the backup");
    assert_eq!(download(&restored, &id).await, (StatusCode::OK, bytes), "the firmware downloads");
    let restored_key: Value = restored.get_json("/api/v1/keys/public").await;
    assert_eq!(restored_key, key, "the same site key");
    assert_eq!(restored.token, server.token, "the same admin token");

    // With no engine on the data dir, the CLI writes the backup itself.
    let (status, _, dir) = server.stop();
    assert!(status.success());
    let offline = place.path().join("offline");
    let out = Command::new(flotilla_bin())
        .args(["backup", offline.to_str().unwrap(), "--data-dir"])
        .arg(dir.path())
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("11 devices"), "{}", String::from_utf8_lossy(&out.stdout));
}
