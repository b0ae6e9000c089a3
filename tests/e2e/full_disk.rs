//! A full disk loses nothing: an import that does not fit answers `507 Insufficient Storage`,
//! leaves no half-written file and no row behind, and the engine carries on. When the database
//! itself cannot grow, check-ins and admin changes answer `507`, the status and the live stream
//! say the disk is full, what was accepted before is kept and saved once space is freed — and a
//! rollout over those devices then works without a restart.
//!
//! `flotilla serve` runs with its data dir on a 3 MiB tmpfs mounted in a private mount namespace
//! (`unshare --mount`), so the test fills a real filesystem without touching the host's; the
//! tmpfs goes away with the process. The network namespace is shared, so the admin API is on
//! loopback as usual; this process sees the data dir through `/proc/<pid>/root`, which shows the
//! server's mount view.
//!
//! Needs root (and `unshare` and `mount`, from util-linux and mount); CI runs as root. Without
//! root the test fails; built with `FLOTILLA_SKIP_NETNS=1` it is reported as ignored
//! ([`crate::support::require_namespaces`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{
    Server, flotilla_bin, image, next_event, require_namespaces, require_program, stored_files, wait_for_runtime_of,
};

/// Room for the database, the engine's 8 MiB free-space reserve and a few [`BIG`] firmware.
const TMPFS_SIZE: &str = "24m";
const BIG: usize = 3_000_000;

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn a_full_disk_refuses_the_import_and_loses_nothing() {
    require_namespaces("full_disk::a_full_disk_refuses_the_import_and_loses_nothing");
    let (server, view) = serve_on_tmpfs().await;

    // Import distinct big firmware until the disk is full.
    let mut accepted: Vec<(Value, Vec<u8>)> = Vec::new();
    let mut refused = None;
    for patch in 0..10 {
        let bytes = image(&format!("1.0.{patch}"), BIG);
        let (status, body) = server.upload(bytes.clone(), &[]).await;
        if status == StatusCode::CREATED {
            accepted.push((body["firmware"].clone(), bytes));
            continue;
        }
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        refused = Some((body, bytes));
        break;
    }
    let (error, refused_bytes) = refused.expect("a 24 MiB disk fills up within ten 3 MB imports");
    assert!(!accepted.is_empty(), "the first 3 MB firmware fits on a fresh 24 MiB disk");
    assert_eq!(error["error"]["code"], "io_error", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("No space left") && message.contains("cannot store firmware"), "{message}");

    // Nothing half-written, nothing recorded for the refused import.
    assert_store_matches(&server, &view).await;
    let versions: Vec<String> = list(&server).await.iter().map(|f| f["version"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = accepted.iter().map(|(f, _)| f["version"].as_str().unwrap().to_owned()).collect();
    assert_eq!(sorted(versions), sorted(expected), "only the successful imports are listed");
    let refused_version = format!("1.0.{}", accepted.len());
    let resp = server.api(Method::GET, &format!("/api/v1/firmware/{refused_version}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "no row for the refused import");
    let events: Value = server.get_json("/api/v1/events?kind=firmware.imported").await;
    assert_eq!(events["events"].as_array().unwrap().len(), accepted.len(), "no event for the refused import");

    // Stored firmware still downloads intact.
    for (fw, bytes) in &accepted {
        assert_eq!(download(&server, fw).await, *bytes, "firmware {} downloads byte for byte", fw["version"]);
    }

    // Freeing space makes the refused firmware importable, and a small one fits too.
    let (gone, _) = accepted.pop().unwrap();
    let resp = server.api(Method::DELETE, &format!("/api/v1/firmware/{}", gone["id"])).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let (status, body) = server.upload(refused_bytes.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    accepted.push((body["firmware"].clone(), refused_bytes));
    let small = image("2.0.0", 64 * 1024);
    let (status, body) = server.upload(small.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    accepted.push((body["firmware"].clone(), small));

    assert_store_matches(&server, &view).await;
    assert_eq!(list(&server).await.len(), accepted.len());
    for (fw, bytes) in &accepted {
        assert_eq!(download(&server, fw).await, *bytes, "firmware {} downloads byte for byte", fw["version"]);
    }
    let (status, _, _) = server.stop();
    assert!(status.success(), "flotilla serve stops cleanly after a full disk: {status:?}");
}

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn a_full_disk_keeps_every_change_and_saves_it_once_space_is_freed() {
    require_namespaces("full_disk::a_full_disk_keeps_every_change_and_saves_it_once_space_is_freed");
    let (server, view) = serve_on_tmpfs().await;
    let (status, body) = server.upload(image("1.0.0", 64 * 1024), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server.upload(image("2.0.0", 64 * 1024), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut stream = server.api(Method::GET, "/api/v1/events/stream").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut buf = String::new();
    let mut accepted = Vec::new();
    for n in 0..5u8 {
        let mac = format!("02:00:00:00:0f:{n:02x}");
        assert_eq!(check_in(&server, &mac).await, StatusCode::OK);
        accepted.push(mac);
    }

    // Fill the disk to the last byte.
    let filler = view.join("filler");
    fill(&filler);

    // Check-ins go on until the store finds it cannot write: from then on each answers 507.
    // Those answered 200 before are kept (in memory, retried), not lost.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut n = 0u16;
    loop {
        let mac = format!("02:00:00:00:{:02x}:{:02x}", 0x10 + n / 256, n % 256);
        n += 1;
        match check_in(&server, &mac).await {
            StatusCode::OK => accepted.push(mac),
            StatusCode::INSUFFICIENT_STORAGE => break,
            other => panic!("a check-in on a full disk answers 200 or 507, not {other}"),
        }
        assert!(std::time::Instant::now() < deadline, "no check-in was refused with 507 within 30 s of a full disk");
    }
    let status: Value = server.get_json("/api/v1/status").await;
    assert_eq!(status["storage"]["disk_full"], true, "{status}");
    let ev = next_event(&mut stream, &mut buf, "storage.changed", Duration::from_secs(30)).await;
    assert_eq!(ev["data"]["disk_full"], true, "{ev}");

    // Admin changes answer 507 too: one written behind (labels), one written at once (firmware).
    let mac = &accepted[0];
    let resp = server
        .api(Method::POST, &format!("/api/v1/devices/{mac}/labels"))
        .json(&serde_json::json!({ "add": ["hall"], "remove": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE, "{}", resp.text().await.unwrap());
    let resp = server
        .api(Method::PATCH, "/api/v1/firmware/2.0.0")
        .json(&serde_json::json!({ "notes": "written while the disk is full" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE, "{}", resp.text().await.unwrap());

    // Free the space: what was kept lands by itself, the stream says so, and a rollout over every
    // device (its jobs refer to their rows) is created without a restart.
    std::fs::remove_file(&filler).unwrap();
    let ev = next_event(&mut stream, &mut buf, "storage.changed", Duration::from_secs(30)).await;
    assert_eq!(ev["data"]["disk_full"], false, "{ev}");
    let status: Value = server.get_json("/api/v1/status").await;
    assert_eq!(status["storage"]["disk_full"], false, "{status}");
    let resp = server
        .api(Method::POST, "/api/v1/rollouts")
        .json(&serde_json::json!({ "firmware": "2.0.0", "target": "all" }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let rollout: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{rollout}");
    // The labels an admin set while the disk was full: kept in memory (and written now, below).
    let labelled: Value = server.get_json(&format!("/api/v1/devices/{mac}")).await;
    assert!(labelled["labels"].as_array().unwrap().iter().any(|l| l == "hall"), "{labelled:#}");
    // The firmware edit was refused (507), not half-applied: its note is nowhere.
    const REFUSED_NOTE: &str = "written while the disk is full";
    let fw: Value = server.get_json("/api/v1/firmware/2.0.0").await;
    assert_ne!(fw["notes"], REFUSED_NOTE, "{fw:#}");

    // Every device accepted with 200 is on disk: a backup (a snapshot of the database file,
    // written outside the tmpfs where this process can open it) holds each.
    let outside = tempfile::tempdir().unwrap();
    let backup = outside.path().join("backup");
    let resp = server
        .api(Method::POST, "/api/v1/backup")
        .json(&serde_json::json!({ "path": backup.to_str().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap());
    let conn = flotilla_store::open_existing(&backup.join("flotilla.db")).unwrap();
    let on_disk: BTreeSet<String> =
        flotilla_store::devices::list_with_transport(&conn).unwrap().into_iter().map(|(d, _)| d.mac).collect();
    for mac in &accepted {
        assert!(on_disk.contains(mac), "device {mac} (answered 200 before the disk filled) is on disk");
    }
    let firmware = flotilla_store::firmware::list(&conn).unwrap();
    assert_eq!(firmware.len(), 2, "{firmware:?}");
    assert!(firmware.iter().all(|f| f.notes.as_deref() != Some(REFUSED_NOTE)), "{firmware:?}");
    let stored = flotilla_store::devices::list(&conn).unwrap().into_iter().find(|d| d.mac == *mac).unwrap();
    assert_eq!(stored.labels, vec!["hall".to_owned()], "the labels set on a full disk are on disk: {stored:?}");
    drop(conn);
    let (status, _, _) = server.stop();
    assert!(status.success(), "flotilla serve stops cleanly after a full disk: {status:?}");
}

/// Writes `path` until the disk is full (ENOSPC).
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk failed otherwise: {e}"),
        }
    }
    // The last partial page too.
    let _ = f.write_all(&[0u8; 512]);
    let _ = f.flush();
}

/// A native check-in of `mac`; its status.
async fn check_in(server: &Server, mac: &str) -> StatusCode {
    let id = format!("fd-{}", mac.replace(':', ""));
    let body = serde_json::json!({ "device_id": id, "mac": mac, "model": "demo", "chip": "esp32", "version": "1.0.0" });
    server.http.post(server.device("/api/v1/check")).json(&body).send().await.unwrap().status()
}

/// Starts `flotilla serve` with its data dir on a fresh tmpfs of [`TMPFS_SIZE`] in a private mount
/// namespace. Returns the server and the data dir as this process sees it.
async fn serve_on_tmpfs() -> (Server, PathBuf) {
    require_program("unshare", "--version", "util-linux");
    require_program("mount", "--version", "mount");
    let probe = Command::new("unshare").args(["--mount", "--propagation", "private", "true"]).output().unwrap();
    assert!(
        probe.status.success(),
        "`unshare --mount` failed: {}this test needs root (CAP_SYS_ADMIN) for a private mount namespace; \
         build and run the tests with FLOTILLA_SKIP_NETNS=1 to have it ignored",
        String::from_utf8_lossy(&probe.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 flotilla-e2e "$1" && exec "$2" serve \
           --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
           --mqtt-tls-listen 127.0.0.1:0 --no-mdns --log off \
           --data-dir "$1""#
    );
    // `unshare` and then `sh` exec: the pid is the server's.
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(dir.path())
        .arg(flotilla_bin())
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("unshare starts");
    let view = Path::new(&format!("/proc/{}/root", child.id())).join(dir.path().strip_prefix("/").unwrap());
    let info = wait_for_runtime_of(&mut child, &view).await;
    let token = std::fs::read_to_string(view.join("admin-token")).unwrap().trim().to_owned();
    (Server { child, dir, info, token, http: reqwest::Client::new() }, view)
}

/// The firmware store holds exactly the listed firmware, each file whole: no `*.tmp`, every
/// name a listed sha256, every file hashing to its name with the listed size.
async fn assert_store_matches(server: &Server, view: &Path) {
    let files = stored_files(view);
    assert!(files.iter().all(|f| !f.ends_with(".tmp")), "a temp file was left behind: {files:?}");
    let listed = list(server).await;
    let shas: BTreeSet<String> = listed.iter().map(|f| f["sha256"].as_str().unwrap().to_owned()).collect();
    assert_eq!(files.iter().cloned().collect::<BTreeSet<_>>(), shas, "files on disk = firmware rows");
    for fw in &listed {
        let sha = fw["sha256"].as_str().unwrap();
        let bytes = std::fs::read(view.join("firmware").join(sha)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha, "stored file {sha} is whole");
        assert_eq!(Some(bytes.len() as u64), fw["size"].as_u64(), "stored file {sha} has the listed size");
    }
}

async fn list(server: &Server) -> Vec<Value> {
    server.get_json("/api/v1/firmware").await
}

/// Downloads a firmware from the device server through a fresh download link.
async fn download(server: &Server, fw: &Value) -> Vec<u8> {
    let resp = server
        .api(Method::POST, &format!("/api/v1/firmware/{}/download-link", fw["id"]))
        .json(&serde_json::json!({ "job": "full-disk" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let url = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let resp = server.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
