//! The reference device client (`firmware/`, C) against a real `flotilla serve`: the host build
//! `flotilla-ota-host` checks in, downloads a genuine image through a proxy that cuts the first
//! download mid-body, resumes with `Range`, verifies, "flashes" into its state dir, re-executes
//! itself on the new version and is a success in a staged rollout beside simulated devices. A
//! tampered image, a key that is not the site's, a downgrade and a wrong chip are each refused
//! with the right report and nothing flashed. It finds the server by mDNS (in network
//! namespaces), declares `tls` over HTTPS and downloads only from the pinned server, re-enrols
//! after a revoke only as the admin and the approval setting allow, and keeps a retained
//! presence with a Last Will through its own broker login.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use flotilla_proto::Chip;
use flotilla_sim::{DeviceKind, Fleet, FleetConfig};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::mdns::{Link, Netns, device_port, run_bounded, serve_in};
use crate::support::{Server, flotilla_bin, image, require_namespaces};

/// `make -C firmware host`, once per run: the binary under test is always fresh.
fn host_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let firmware = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware");
        let out = Command::new("make").arg("-C").arg(&firmware).arg("host").output().expect("make runs");
        assert!(
            out.status.success(),
            "make -C firmware host failed (needs gcc, pkg-config, libcjson-dev, libsodium-dev, libcurl4-openssl-dev; \
             scripts/test.sh installs them):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = firmware.join("build/flotilla-ota-host");
        assert!(bin.is_file());
        bin
    })
    .clone()
}

/// What the proxy does to the traffic it relays.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Cuts the first firmware download after this many bytes of the response.
    CutFirstDownload(usize),
    /// Sends firmware bodies slowly (4 KiB every 10 ms), so a test can stop the device mid-way.
    Throttle,
    /// Flips one byte of every firmware body.
    Tamper,
    /// Rewrites the check-in body so the engine believes the device runs 1.0.0 on an esp32
    /// (a stale inventory): the offer it then makes is one the device must refuse.
    Misreport,
}

struct Proxy {
    url: String,
    /// Request heads of firmware downloads, in order.
    downloads: Arc<Mutex<Vec<String>>>,
    /// Firmware body bytes relayed so far (headers included).
    relayed: Arc<AtomicUsize>,
}

/// A TCP relay in front of the device server; one upstream connection per client connection.
async fn proxy(upstream: String, mode: Mode) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Offers name the firmware by the engine's own address; the proxy puts its own in its place
    // (same length: both are loopback with a five-digit ephemeral port).
    assert_eq!(url.len(), upstream.len(), "{url} / {upstream}");
    let downloads = Arc::new(Mutex::new(Vec::new()));
    let seen = downloads.clone();
    let cuts = Arc::new(AtomicUsize::new(0));
    let relayed = Arc::new(AtomicUsize::new(0));
    let counted = relayed.clone();
    let own_url = url.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let (upstream, seen, cuts, own) = (upstream.clone(), seen.clone(), cuts.clone(), own_url.clone());
            let counted = counted.clone();
            tokio::spawn(async move {
                let _ = relay(client, &upstream, &own, mode, &seen, &cuts, &counted).await;
            });
        }
    });
    Proxy { url, downloads, relayed }
}

/// Reads one whole HTTP request (head and Content-Length body).
async fn read_request(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
            if buf.len() >= end + 4 + len {
                return Ok(buf);
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: &str,
    own: &str,
    mode: Mode,
    seen: &Mutex<Vec<String>>,
    cuts: &AtomicUsize,
    relayed: &AtomicUsize,
) -> std::io::Result<()> {
    let mut req = read_request(&mut client).await?;
    let text = String::from_utf8_lossy(&req).into_owned();
    let is_download = text.starts_with("GET /fw/");
    if is_download {
        seen.lock().unwrap().push(text.split("\r\n\r\n").next().unwrap_or("").to_owned());
    }
    if mode == Mode::Misreport && text.starts_with("POST /api/v1/check") {
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut v: Value = serde_json::from_str(body).unwrap();
        v["version"] = json!("1.0.0");
        v["chip"] = json!("esp32");
        let body = v.to_string();
        let head: Vec<String> = head
            .split("\r\n")
            .map(|l| {
                if l.to_ascii_lowercase().starts_with("content-length:") {
                    format!("Content-Length: {}", body.len())
                } else {
                    l.to_owned()
                }
            })
            .collect();
        req = format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes();
    }
    let mut up = TcpStream::connect(upstream.trim_start_matches("http://")).await?;
    up.write_all(&req).await?;
    let limit = match mode {
        Mode::CutFirstDownload(n) if is_download && cuts.fetch_add(1, Ordering::SeqCst) == 0 => Some(n),
        _ => None,
    };
    let mut sent = 0usize;
    let mut flipped = false;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = up.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let mut out = buf[..n].to_vec();
        if text.starts_with("POST /api/v1/check") {
            out = replace(&out, upstream.as_bytes(), own.as_bytes());
        }
        if mode == Mode::Tamper && is_download && !flipped && sent + n > 30_000 {
            let i = 30_000usize.saturating_sub(sent).min(n - 1);
            out[i] ^= 0x01;
            flipped = true;
        }
        if let Some(limit) = limit
            && sent + out.len() >= limit
        {
            client.write_all(&out[..limit - sent]).await?;
            client.flush().await?;
            return Ok(()); // dropped: both sockets close mid-body
        }
        if mode == Mode::Throttle && is_download {
            for piece in out.chunks(4096) {
                client.write_all(piece).await?;
                relayed.fetch_add(piece.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            client.write_all(&out).await?;
            if is_download {
                relayed.fetch_add(out.len(), Ordering::SeqCst);
            }
        }
        sent += out.len();
    }
    client.shutdown().await
}

/// `hay` with every `from` replaced by `to` (of the same length). A check-in answer is small
/// enough to arrive in one read on loopback.
fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = hay.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

/// The site key as the device bakes it in (hex, as `flotilla keys export --format hex` prints).
async fn site_key(server: &Server) -> String {
    site_key_as(server, "public_key_hex").await
}

/// The site key in the given field of `GET /api/v1/site-key` (`public_key_hex`, `public_key_pem`).
async fn site_key_as(server: &Server, field: &str) -> String {
    let key: Value = server.http.get(server.device("/api/v1/site-key")).send().await.unwrap().json().await.unwrap();
    key[field].as_str().unwrap().to_owned()
}

struct Device {
    child: Child,
    state: tempfile::TempDir,
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_device(server_url: &str, id: &str, chip: &str, version: &str, pubkey: &str) -> Device {
    start_device_env(server_url, id, chip, version, pubkey, &[])
}

fn start_device_env(
    server_url: &str,
    id: &str,
    chip: &str,
    version: &str,
    pubkey: &str,
    env: &[(&str, &str)],
) -> Device {
    let state = tempfile::tempdir().unwrap();
    let child = spawn_host(server_url, id, chip, version, pubkey, env, state.path());
    Device { child, state }
}

/// Starts the host device on the state kept in `dir` (a fresh one, or what a killed one left).
fn spawn_host(
    server_url: &str,
    id: &str,
    chip: &str,
    version: &str,
    pubkey: &str,
    env: &[(&str, &str)],
    dir: &Path,
) -> Child {
    let key = dir.join("site.pub");
    std::fs::write(&key, pubkey).unwrap();
    Command::new(host_bin())
        .args(["--server", server_url, "--device-id", id, "--model", "demo", "--chip", chip, "--version", version])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--pubkey")
        .arg(key)
        .args(["--interval", "1"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("flotilla-ota-host starts")
}

fn state_file(d: &Device, name: &str) -> Option<String> {
    std::fs::read_to_string(d.state.path().join("state").join(name)).ok()
}

fn flashed(d: &Device) -> Vec<String> {
    std::fs::read_dir(d.state.path().join("state"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("app-") || n == "slot.bin")
                .collect()
        })
        .unwrap_or_default()
}

async fn devices(server: &Server) -> Vec<Value> {
    server.get_json("/api/v1/devices").await
}

async fn wait_registered(server: &Server, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !devices(server).await.iter().any(|d| d["device_id"] == id) {
        assert!(Instant::now() < deadline, "{id} never checked in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rollout(server: &Server, body: Value) -> i64 {
    let resp = server.api(Method::POST, "/api/v1/rollouts").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["rollout"]["id"].as_i64().unwrap()
}

/// Waits until the job of `mac` in rollout `id` is in a final state; returns it.
async fn final_job(server: &Server, id: i64, device_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r: Value = server.get_json(&format!("/api/v1/rollouts/{id}")).await;
        if let Some(j) = r["jobs"].as_array().unwrap().iter().find(|j| j["device_id"] == device_id)
            && ["succeeded", "failed", "skipped", "timed_out", "cancelled"].contains(&j["state"].as_str().unwrap_or(""))
        {
            return j.clone();
        }
        assert!(Instant::now() < deadline, "the job of {device_id} never finished: {r:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_updates_with_a_resumed_download_in_a_staged_rollout() {
    let _ = host_bin();
    let server = Server::start().await;
    let bytes = image("2.0.0", 300_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let proxy = proxy(server.info.device_url.clone(), Mode::CutFirstDownload(100_000)).await;
    // The key as `flotilla keys export` prints it by default (PEM).
    let key = site_key_as(&server, "public_key_pem").await;
    assert!(key.starts_with("-----BEGIN PUBLIC KEY-----"), "{key}");

    let fleet = Fleet::start(FleetConfig {
        api: Some(server.info.device_url.clone()),
        fleet: vec![(DeviceKind::NativePull, 3)],
        chip: Chip::Esp32,
        model: "demo".into(),
        version: "1.0.0".into(),
        seed: 13,
        address_block: 61,
        poll_interval: Duration::from_millis(300),
        reboot_delay: Duration::from_millis(200),
        ..FleetConfig::default()
    })
    .await
    .unwrap();
    let dev = start_device(&proxy.url, "c-client-1", "esp32", "1.0.0", &key);
    wait_registered(&server, "c-client-1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while devices(&server).await.len() < 4 {
        assert!(Instant::now() < deadline, "the simulated devices never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let id = rollout(
        &server,
        json!({ "firmware": "2.0.0", "target": "all", "waves": [{"count": 1}, {"percent": 100.0}],
                "step_timeout_secs": 60, "start": true }),
    )
    .await;
    let job = final_job(&server, id, "c-client-1").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let states: Vec<&str> = job["history"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert!(states.ends_with(&["downloading", "installing", "rebooting", "verifying", "succeeded"]), "{states:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r: Value = server.get_json(&format!("/api/v1/rollouts/{id}")).await;
        if r["rollout"]["state"] == "completed" {
            let jobs = r["jobs"].as_array().unwrap();
            assert_eq!(jobs.iter().filter(|j| j["state"] == "succeeded").count(), 4, "{r:#}");
            break;
        }
        assert!(Instant::now() < deadline, "rollout never completed: {r:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The first download broke off mid-body; the second asked for the rest.
    let downloads = proxy.downloads.lock().unwrap().clone();
    assert!(downloads.len() >= 2, "{downloads:#?}");
    assert!(!downloads[0].to_ascii_lowercase().contains("range:"), "{}", downloads[0]);
    let range = downloads[1]
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_owned))
        .unwrap_or_else(|| panic!("no Range on the retry: {}", downloads[1]));
    let from: usize = range.trim_end_matches('-').parse().unwrap();
    assert!(from > 0 && from <= 100_000, "resumed from {from}");
    // What it "flashed" is the image, byte for byte, and it runs it after the "reboot".
    assert_eq!(std::fs::read(dev.state.path().join("state/app-2.0.0.bin")).unwrap(), bytes);
    assert_eq!(state_file(&dev, "running-version").as_deref(), Some("2.0.0"));
    let d = devices(&server).await.into_iter().find(|d| d["device_id"] == "c-client-1").unwrap();
    assert_eq!(d["version"], "2.0.0", "{d:#}");
    fleet.stop().await;
}

/// Runs one refusal: the device (behind a proxy in `mode`, with `key`) is offered 2.0.0 and
/// must refuse it with `reason`, flashing nothing.
async fn refused(mode: Mode, chip: &str, version: &str, other_key: bool, reason: &str) {
    let _ = host_bin();
    let server = Server::start().await;
    let (status, fw) = server.upload(image("2.0.0", 120_000), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let proxy = proxy(server.info.device_url.clone(), mode).await;
    // A key that is not the site's: a valid Ed25519 public key (RFC 8032 test 1).
    let key = if other_key {
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".to_owned()
    } else {
        site_key(&server).await
    };
    let dev = start_device(&proxy.url, "c-refuser", chip, version, &key);
    wait_registered(&server, "c-refuser").await;
    let id =
        rollout(&server, json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 60 })).await;
    let job = final_job(&server, id, "c-refuser").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains(reason), "{error}");
    // Nothing was "flashed", and the device still runs what it ran — also once it is back in its
    // check-in loop (a check-in after the refusal: the client is sequential, its update attempt
    // is over).
    let failed_at = job["updated_at"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = devices(&server).await.into_iter().find(|d| d["device_id"] == "c-refuser").unwrap();
        if seen["last_seen"].as_str().unwrap() > failed_at.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "c-refuser never checked in after refusing: {seen:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(flashed(&dev), Vec::<String>::new());
    assert_eq!(state_file(&dev, "running-version"), None);
    assert_eq!(state_file(&dev, "pending-version"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_refuses_a_tampered_image() {
    refused(Mode::Tamper, "esp32", "1.0.0", false, "device: sha256_mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_refuses_a_manifest_signed_by_another_key() {
    refused(Mode::CutFirstDownload(usize::MAX), "esp32", "1.0.0", true, "device rejected the update: bad_signature")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_refuses_a_downgrade() {
    refused(Mode::Misreport, "esp32", "3.0.0", false, "device rejected the update: not_newer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_refuses_another_chip() {
    refused(Mode::Misreport, "esp32s3", "1.0.0", false, "device rejected the update: wrong_chip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_rolls_back_when_the_new_image_fails_its_health_check() {
    let _ = host_bin();
    let server = Server::start().await;
    let bytes = image("2.0.0", 80_000);
    let (status, fw) = server.upload(bytes, &[]).await;
    assert_eq!(status, 201, "{fw}");
    let key = site_key(&server).await;
    let dev = start_device_env(
        &server.info.device_url,
        "c-unhealthy",
        "esp32",
        "1.0.0",
        &key,
        &[("FLOTILLA_OTA_HOST_UNHEALTHY", "1")],
    );
    wait_registered(&server, "c-unhealthy").await;
    let id =
        rollout(&server, json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 60 })).await;
    let job = final_job(&server, id, "c-unhealthy").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("rollback"), "{job:#}");
    // It wrote the image, booted it on trial, then went back to the old one.
    assert!(dev.state.path().join("state/app-2.0.0.bin").is_file());
    assert_eq!(state_file(&dev, "pending-version"), None);
    assert_eq!(state_file(&dev, "running-version"), None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = devices(&server).await.into_iter().find(|d| d["device_id"] == "c-unhealthy").unwrap();
        if d["version"] == "1.0.0" {
            break;
        }
        assert!(Instant::now() < deadline, "never back on 1.0.0: {d:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_host_device_refuses_bad_arguments_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "not a key").unwrap();
    let state = dir.path().join("s");
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = ["--server", "http://127.0.0.1:9", "--device-id", "d", "--model", "m", "--chip"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["esp32", "--version", "1.0.0", "--state-dir"].iter().map(|s| s.to_string()));
        args.push(state.display().to_string());
        args.push("--pubkey".into());
        args.push(key.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bogus".into()], "unknown argument: --bogus"),
        (vec!["--server".into()], "missing value for: --server"),
        (base(&[]), "--pubkey is not an Ed25519 key"),
        (base(&["--interval", "0"]), "--interval wants 1..86400 seconds"),
        (base(&["--version", "one"]), "--version is not SemVer"),
        (base(&["--mqtt", "tcp://127.0.0.1"]), "--mqtt must be mqtt://[user:pass@]host[:port]"),
    ];
    for (args, message) in cases {
        let out = Command::new(host_bin()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(err.contains("usage: flotilla-ota-host"), "{err}");
    }
    assert!(!state.exists(), "nothing is created on bad arguments");
}

/// The message retained on `topic` of the embedded broker, as a new subscriber with the site's
/// login gets it: (its retain flag, its JSON), or `None` if none comes within 3 s.
async fn retained(server: &Server, topic: &str) -> Option<(bool, Value)> {
    static CLIENTS: AtomicUsize = AtomicUsize::new(0);
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(server.data_dir().join("mqtt-credentials")).unwrap()).unwrap();
    let url = server.info.mqtt_url.clone().expect("MQTT is on");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let id = format!("e2e-retained-{}", CLIENTS.fetch_add(1, Ordering::SeqCst));
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    opts.set_credentials(creds["username"].as_str().unwrap(), creds["password"].as_str().unwrap());
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 16);
    client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) if p.topic == topic => {
                    return Some((p.retain, serde_json::from_slice(&p.payload).unwrap_or(Value::Null)));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Waits (at most 30 s) until what is retained on `topic` satisfies `ok`; returns it.
async fn wait_retained(server: &Server, topic: &str, what: &str, ok: impl Fn(&Value) -> bool) -> (bool, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = retained(server, topic).await;
        if let Some((retain, v)) = &got
            && ok(v)
        {
            return (*retain, v.clone());
        }
        assert!(Instant::now() < deadline, "{what} never retained on {topic}: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_takes_an_offer_pushed_over_mqtt() {
    let _ = host_bin();
    let server = Server::start().await;
    let bytes = image("2.0.0", 90_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let key = site_key(&server).await;
    let state = tempfile::tempdir().unwrap();
    let key_file = state.path().join("site.pub");
    std::fs::write(&key_file, key).unwrap();
    let log = state.path().join("log");
    // The broker's address without any login: the embedded broker refuses anonymous clients, so
    // the device can connect only with the broker login its enrolment gave it.
    let broker = server.info.mqtt_url.clone().expect("MQTT is on");
    assert!(broker.starts_with("mqtt://127.0.0.1:") && !broker.contains('@'), "{broker}");
    // Pull once at boot (enrolment), then only MQTT: an hour between check-ins.
    let child = Command::new(host_bin())
        .args(["--server", &server.info.device_url, "--device-id", "c-mqtt", "--model", "demo", "--chip", "esp32"])
        .args(["--version", "1.0.0", "--interval", "3600", "--mqtt", &broker])
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .arg("--pubkey")
        .arg(key_file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("flotilla-ota-host starts");
    let mut dev = Device { child, state };
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read_log().contains("mqtt: connected, presence published") {
        assert!(Instant::now() < deadline, "never connected: {}", read_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dev.state.path().join("state/kv/fl_mqtt_user").is_file(), "the enrolment's broker login");
    // Its presence is retained on its status topic, and the engine believes it (its own login).
    let (retain, presence) = wait_retained(&server, "flotilla/c-mqtt/status", "online presence", |v| {
        v["online"] == true && v["version"] == "1.0.0"
    })
    .await;
    assert!(retain, "{presence}");
    assert_eq!((presence["model"].as_str(), presence["chip"].as_str()), (Some("demo"), Some("esp32")), "{presence}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = devices(&server).await.into_iter().find(|d| d["device_id"] == "c-mqtt");
        if let Some(d) = &d
            && d["sources"].as_array().is_some_and(|s| s.iter().any(|s| s == "mqtt"))
        {
            assert_eq!(d["authenticated"], true, "{d:#}");
            break;
        }
        assert!(Instant::now() < deadline, "its presence was never believed: {d:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let id =
        rollout(&server, json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 60 })).await;
    let job = final_job(&server, id, "c-mqtt").await;
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", read_log());
    let log_text = read_log();
    assert!(log_text.contains("mqtt: offer received"), "{log_text}");
    assert!(log_text.contains("mqtt offer: update applied"), "{log_text}");
    let states: Vec<&str> = job["history"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"installing") && states.contains(&"rebooting"), "reported over MQTT: {states:?}");
    assert_eq!(std::fs::read(dev.state.path().join("state/app-2.0.0.bin")).unwrap(), bytes);
    assert_eq!(state_file(&dev, "running-version").as_deref(), Some("2.0.0"));
    // After the "reboot" it publishes presence again, on its new version.
    wait_retained(&server, "flotilla/c-mqtt/status", "presence on 2.0.0", |v| {
        v["online"] == true && v["version"] == "2.0.0"
    })
    .await;

    // Power cut: the broker publishes its Last Will, retained, and the engine marks it offline.
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    let (retain, will) =
        wait_retained(&server, "flotilla/c-mqtt/status", "the Last Will", |v| v["online"] == false).await;
    assert!(retain, "{will}");
    assert_eq!(will, json!({ "online": false }));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = devices(&server).await.into_iter().find(|d| d["device_id"] == "c-mqtt").unwrap();
        if d["online"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "still online after its will: {d:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A self-signed certificate for 127.0.0.1 made with the openssl CLI: (cert DER, key PKCS#8 DER,
/// cert PEM file, libcurl pin `sha256//…` of its public key).
fn certificate(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>, PathBuf, String) {
    let pem = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key \
         -out {name}.pem -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null"
    ));
    let cert_der = sh(&format!("openssl x509 -in {name}.pem -outform DER"));
    let key_der = sh(&format!("openssl pkcs8 -topk8 -nocrypt -in {name}.key -outform DER"));
    let pin = sh(&format!(
        "openssl x509 -in {name}.pem -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary \
         | openssl base64 -A"
    ));
    assert!(key.is_file());
    (cert_der, key_der, pem, format!("sha256//{}", String::from_utf8(pin).unwrap().trim()))
}

/// A TLS terminator presenting `cert` in front of the device server (plain HTTP behind it).
async fn tls_front(upstream: String, cert: Vec<u8>, key: Vec<u8>) -> String {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert)], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut up) = TcpStream::connect(upstream.trim_start_matches("http://")).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_port_pins_the_server_key_over_tls() {
    // A TLS terminator in front of the device server, then Flotilla's own HTTPS: the host port
    // checks in with the pinned key and refuses a server presenting another one.
    let _ = host_bin();
    let server = Server::start().await;
    let key = site_key(&server).await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, cert_key, pem, pin) = certificate(certs.path(), "right");
    let (_, _, _, other_pin) = certificate(certs.path(), "other");
    let front = tls_front(server.info.device_url.clone(), cert, cert_key).await;

    let run = |id: &str, pin: &str| {
        let state = tempfile::tempdir().unwrap();
        let key_file = state.path().join("site.pub");
        std::fs::write(&key_file, &key).unwrap();
        let out = Command::new(host_bin())
            .args(["--server", &front, "--device-id", id, "--model", "demo", "--chip", "esp32", "--version", "1.0.0"])
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .arg("--pubkey")
            .arg(key_file)
            .arg("--cacert")
            .arg(pem.as_path())
            .args(["--pin", pin, "--once"])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, log) = run("c-tls-pinned", &pin);
    assert!(ok, "{log}");
    assert!(log.contains("check-in: no update"), "{log}");
    assert!(devices(&server).await.iter().any(|d| d["device_id"] == "c-tls-pinned"));

    // The same trusted certificate, but another key pinned: refused before a byte is sent.
    let (ok, log) = run("c-tls-other", &other_pin);
    assert!(!ok, "{log}");
    assert!(log.contains("pinned public key"), "{log}");
    assert!(!devices(&server).await.iter().any(|d| d["device_id"] == "c-tls-other"));

    // Flotilla's own HTTPS, pinned as a firmware team would: the PEM and the public-key pin that
    // `flotilla keys tls` prints.
    let tls: Value = serde_json::from_slice(&server.cli(&["keys", "tls", "--json"]).stdout).unwrap();
    let https = tls["https_url"].as_str().unwrap().to_owned();
    let site_pem = certs.path().join("site.pem");
    std::fs::write(&site_pem, server.cli(&["keys", "tls", "--pem"]).stdout).unwrap();
    let site_pin = format!("sha256//{}", tls["spki_sha256_base64"].as_str().unwrap());
    let own = |id: &str, pin: &str| {
        let state = tempfile::tempdir().unwrap();
        let key_file = state.path().join("site.pub");
        std::fs::write(&key_file, &key).unwrap();
        let out = Command::new(host_bin())
            .args(["--server", &https, "--device-id", id, "--model", "demo", "--chip", "esp32", "--version", "1.0.0"])
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .arg("--pubkey")
            .arg(key_file)
            .arg("--cacert")
            .arg(site_pem.as_path())
            .args(["--pin", pin, "--once"])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, log) = own("c-https-own", &site_pin);
    assert!(ok, "{log}");
    assert!(devices(&server).await.iter().any(|d| d["device_id"] == "c-https-own"), "enrolled over Flotilla's HTTPS");
    let (ok, log) = own("c-https-wrong-pin", &other_pin);
    assert!(!ok && log.contains("pinned public key"), "{log}");
    assert!(!devices(&server).await.iter().any(|d| d["device_id"] == "c-https-wrong-pin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_resumes_a_download_after_a_power_cut() {
    let _ = host_bin();
    let server = Server::start().await;
    let bytes = image("2.0.0", 400_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let proxy = proxy(server.info.device_url.clone(), Mode::Throttle).await;
    let key = site_key(&server).await;
    let mut dev = start_device(&proxy.url, "c-power-cut", "esp32", "1.0.0", &key);
    wait_registered(&server, "c-power-cut").await;
    let id = rollout(&server, json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 120 }))
        .await;

    // Pull the plug (SIGKILL) a third of the way in, then power up on the same state.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.relayed.load(Ordering::SeqCst) < 130_000 {
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    let before = proxy.downloads.lock().unwrap().len();
    assert!(
        std::fs::metadata(dev.state.path().join("state/slot.bin")).unwrap().len() >= 16_384,
        "part of the image was written before the cut"
    );
    dev.child = spawn_host(&proxy.url, "c-power-cut", "esp32", "1.0.0", &key, &[], dev.state.path());

    let job = final_job(&server, id, "c-power-cut").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let downloads = proxy.downloads.lock().unwrap().clone();
    let resumed = downloads[before..]
        .iter()
        .find_map(|h| h.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_owned)))
        .unwrap_or_else(|| panic!("no Range after the power cut: {downloads:#?}"));
    let from: usize = resumed.trim_end_matches('-').parse().unwrap();
    assert!((16_384..400_000).contains(&from), "resumed from {from}");
    assert!(!downloads[before].to_ascii_lowercase().contains("range: bytes=0-"), "{downloads:#?}");
    assert_eq!(std::fs::read(dev.state.path().join("state/app-2.0.0.bin")).unwrap(), bytes);
    assert_eq!(state_file(&dev, "running-version").as_deref(), Some("2.0.0"));
}

// ---- mDNS: the device finds the server -------------------------------------------------------

/// `flotilla <args> --data-dir <dir>` inside `ns` (where the admin API listens on loopback); its
/// stdout.
fn cli_in(ns: &Netns, dir: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = ns.exec(&flotilla_bin());
    cmd.args(args).arg("--data-dir").arg(dir);
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "flotilla {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn the_c_client_finds_the_server_by_mdns() {
    // `flotilla serve` in namespace A advertises `_flotilla._tcp`; the host device in namespace B,
    // joined to A by a veth pair, is given no server: it asks by multicast DNS and checks in
    // where the answer points — over plain HTTP, or over HTTPS when it holds a pin, and not at
    // all when the advertised key is not the pinned one.
    require_namespaces("firmware_client::the_c_client_finds_the_server_by_mdns");
    let host = host_bin();
    let link = Link::create("fwmdns", 4);
    let data = tempfile::tempdir().unwrap();
    let (_server, info) = serve_in(&link.a, data.path(), &["--https", "0.0.0.0:0", "--mqtt-tls-listen", "off"]).await;
    let port = device_port(&info);
    let https_port = info.device_https_url.as_deref().and_then(|u| u.rsplit(':').next()).expect("HTTPS is on");
    let key: Value = serde_json::from_slice(&cli_in(&link.a, data.path(), &["keys", "export", "--format", "json"]))
        .expect("keys export --format json");
    let tls: Value = serde_json::from_slice(&cli_in(&link.a, data.path(), &["keys", "tls", "--json"])).unwrap();
    let files = tempfile::tempdir().unwrap();
    let pubkey = files.path().join("site.pub");
    std::fs::write(&pubkey, key["public_key_hex"].as_str().expect("public_key_hex")).unwrap();
    let pem = files.path().join("site.pem");
    std::fs::write(&pem, cli_in(&link.a, data.path(), &["keys", "tls", "--pem"])).unwrap();
    let pin = format!("sha256//{}", tls["spki_sha256_base64"].as_str().unwrap());

    let run = |id: &str, extra: &[&str]| {
        let mut cmd = link.b.exec(&host);
        cmd.args(["--device-id", id, "--model", "demo", "--chip", "esp32", "--version", "1.0.0", "--once"])
            .arg("--state-dir")
            .arg(files.path().join(id))
            .arg("--pubkey")
            .arg(&pubkey)
            .args(extra);
        let out = run_bounded(cmd, Duration::from_secs(30));
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // No server given, no pin: plain HTTP on the advertised port.
    let (ok, log) = run("c-mdns-http", &[]);
    assert!(ok, "{log}");
    assert!(log.contains(&format!("server found by mDNS: http://{}:{port}\n", link.a_addr)), "{log}");
    assert!(log.contains("check-in: no update"), "{log}");
    // With a pin: HTTPS on the advertised TLS port, the key checked against the pin.
    let pem_arg = pem.display().to_string();
    let (ok, log) = run("c-mdns-https", &["--server", "mdns", "--pin", &pin, "--cacert", &pem_arg]);
    assert!(ok, "{log}");
    assert!(log.contains(&format!("server found by mDNS: https://{}:{https_port}\n", link.a_addr)), "{log}");
    // Pinned to another key: the advertised one is not taken in its place, nothing is sent.
    let other = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (ok, log) = run("c-mdns-other", &["--pin", other, "--cacert", &pem_arg]);
    assert!(!ok, "{log}");
    assert!(log.contains("mdns: 1 instance(s) of _flotilla._tcp.local"), "{log}");
    assert!(!log.contains("server found") && log.contains("check-in: check-in failed"), "{log}");

    let list: Vec<Value> =
        serde_json::from_slice(&cli_in(&link.a, data.path(), &["devices", "list", "--json"])).unwrap();
    for id in ["c-mdns-http", "c-mdns-https"] {
        let d = list.iter().find(|d| d["device_id"] == id).unwrap_or_else(|| panic!("{id} checked in: {list:#?}"));
        assert_eq!(d["ip"], "10.213.4.2", "{d}");
        assert_eq!(d["authenticated"], true, "{d}");
        let secret = std::fs::read_to_string(files.path().join(id).join("kv/fl_secret")).unwrap_or_default();
        assert!(secret.len() >= 32, "{id} keeps its secret: {secret:?}");
    }
    assert!(!list.iter().any(|d| d["device_id"] == "c-mdns-other"), "{list:#?}");
}

// ---- TLS declared, revocation, MQTT presence ---------------------------------------------------

/// Starts the host device (interval 1 s) with `extra` arguments, its stderr in a log file.
fn spawn_logged(server_url: &str, id: &str, key: &str, extra: &[&str]) -> (Device, PathBuf) {
    let state = tempfile::tempdir().unwrap();
    let key_file = state.path().join("site.pub");
    std::fs::write(&key_file, key).unwrap();
    let log = state.path().join("log");
    let child = Command::new(host_bin())
        .args(["--server", server_url, "--device-id", id, "--model", "demo", "--chip", "esp32", "--version", "1.0.0"])
        .args(["--interval", "1"])
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .arg("--pubkey")
        .arg(key_file)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("flotilla-ota-host starts");
    (Device { child, state }, log)
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits (at most 30 s) until the log, from byte `from` on, contains `what`; returns its length.
async fn wait_log(log: &Path, from: usize, what: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read_log(log);
        if text.get(from..).is_some_and(|t| t.contains(what)) {
            return text.len();
        }
        assert!(Instant::now() < deadline, "no {what:?} in the device's log after byte {from}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `kv/<key>` the device keeps in its state dir ("flash").
fn kv(d: &Device, key: &str) -> Option<String> {
    state_file(d, &format!("kv/{key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_client_declares_tls_and_downloads_over_https_from_the_pinned_server_only() {
    let _ = host_bin();
    let server = Server::start().await;
    let bytes = image("2.0.0", 150_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let key = site_key(&server).await;
    let tls: Value = serde_json::from_slice(&server.cli(&["keys", "tls", "--json"]).stdout).unwrap();
    let https = tls["https_url"].as_str().unwrap().to_owned();
    let certs = tempfile::tempdir().unwrap();
    let site_pem = certs.path().join("site.pem");
    std::fs::write(&site_pem, server.cli(&["keys", "tls", "--pem"]).stdout).unwrap();
    let site_pin = format!("sha256//{}", tls["spki_sha256_base64"].as_str().unwrap());
    let pem_arg = site_pem.display().to_string();

    // Over Flotilla's own HTTPS, pinned: the check-ins say `tls`, so the offer names the firmware
    // by https:// on the HTTPS port, and the update completes over it.
    let (dev, log) = spawn_logged(&https, "c-https", &key, &["--pin", &site_pin, "--cacert", &pem_arg]);
    wait_registered(&server, "c-https").await;
    let id = rollout(
        &server,
        json!({ "firmware": "2.0.0", "target": "device:c-https", "start": true, "step_timeout_secs": 60 }),
    )
    .await;
    let job = final_job(&server, id, "c-https").await;
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", read_log(&log));
    let text = read_log(&log);
    assert!(text.contains(&format!("GET {https}/fw/")), "downloaded over HTTPS from {https}: {text}");
    assert!(!text.contains("GET http://"), "{text}");
    assert_eq!(std::fs::read(dev.state.path().join("state/app-2.0.0.bin")).unwrap(), bytes);
    assert_eq!(state_file(&dev, "running-version").as_deref(), Some("2.0.0"));

    // A device pinned to another server (a TLS front with a certificate of its own, in front of
    // the same engine) checks in there, declaring `tls`; the offer points at Flotilla's own
    // HTTPS, whose key is not the pinned one: refused at the handshake, reported, nothing flashed.
    let (cert, cert_key, front_pem, front_pin) = certificate(certs.path(), "front");
    let front = tls_front(server.info.device_url.clone(), cert, cert_key).await;
    let front_pem = front_pem.display().to_string();
    let (dev, log) = spawn_logged(&front, "c-other-cert", &key, &["--pin", &front_pin, "--cacert", &front_pem]);
    wait_registered(&server, "c-other-cert").await;
    let id = rollout(
        &server,
        json!({ "firmware": "2.0.0", "target": "device:c-other-cert", "start": true, "step_timeout_secs": 60 }),
    )
    .await;
    let job = final_job(&server, id, "c-other-cert").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap_or_default().contains("tls"), "{job:#}");
    let text = read_log(&log);
    assert!(text.contains(&format!("GET {https}/fw/")), "{text}");
    // curl refuses it at the certificate (not signed by the pinned PEM) or at the pinned key
    assert!(text.contains("SSL peer certificate") || text.contains("pinned public key"), "{text}");
    // One attempt per offer (the engine may command it again: its own retries), never a retry
    // from the device, which is for dropped connections.
    let mut gets = 0;
    for line in text.lines() {
        if line.contains("check-in:") {
            gets = 0;
        } else if line.contains("GET https://") {
            gets += 1;
            assert!(gets == 1, "the download was retried: {text}");
        }
    }
    assert_eq!(flashed(&dev), Vec::<String>::new());
    assert_eq!(state_file(&dev, "pending-version"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_c_client_re_enrols_only_as_the_settings_allow() {
    let _ = host_bin();
    let server = Server::start().await;
    let bytes = image("2.0.0", 60_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let key = site_key(&server).await;
    let (dev, log) = spawn_logged(&server.info.device_url, "c-revoked", &key, &[]);
    let mut at = wait_log(&log, 0, "check-in: no update").await;
    let first = kv(&dev, "fl_secret").expect("enrolled: the secret is in its storage");
    assert_eq!(kv(&dev, "fl_gen").as_deref(), Some("1"));

    // Revoked: its check-ins are refused; it keeps its secret, reports nothing, gets no offers.
    let out = server.cli(&["devices", "revoke", "c-revoked"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    at = wait_log(&log, at, "check-in: unauthorized").await;
    let id = rollout(&server, json!({ "firmware": "2.0.0", "target": "all", "start": true })).await;
    let job = final_job(&server, id, "c-revoked").await;
    assert_eq!((job["state"].as_str(), job["error"].as_str()), (Some("skipped"), Some("its credential is revoked")));
    at = wait_log(&log, at, "check-in: unauthorized").await;
    assert_eq!(kv(&dev, "fl_secret").as_deref(), Some(first.as_str()));
    assert_eq!(flashed(&dev), Vec::<String>::new());

    // With new devices waiting for approval, a re-key lets it enrol again, with a new secret it
    // keeps, and then wait.
    let resp =
        server.api(Method::PUT, "/api/v1/settings").json(&json!({ "approve_new_devices": true })).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let out = server.cli(&["devices", "rekey", "c-revoked"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    at = wait_log(&log, at, "check-in: waiting for approval").await;
    let second = kv(&dev, "fl_secret").unwrap();
    assert_ne!(second, first, "the new secret replaced the old one in its storage");
    assert_eq!(kv(&dev, "fl_gen").as_deref(), Some("2"));
    let d = devices(&server).await.into_iter().find(|d| d["device_id"] == "c-revoked").unwrap();
    assert_eq!(d["auth"], "pending", "{d:#}");
    let preview: Value =
        server.post_json("/api/v1/rollouts/preview", &json!({ "firmware": "2.0.0", "target": "all" })).await;
    assert_eq!(preview["skipped"][0]["reason"], "waiting for approval (devices approve)", "{preview:#}");

    // Approved: it checks in with the new secret and takes an update.
    let out = server.cli(&["devices", "approve", "c-revoked"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_log(&log, at, "check-in: no update").await;
    let id =
        rollout(&server, json!({ "firmware": "2.0.0", "target": "all", "start": true, "step_timeout_secs": 60 })).await;
    let job = final_job(&server, id, "c-revoked").await;
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", read_log(&log));
    assert_eq!(std::fs::read(dev.state.path().join("state/app-2.0.0.bin")).unwrap(), bytes);
    assert_eq!(kv(&dev, "fl_secret").as_deref(), Some(second.as_str()));
}
