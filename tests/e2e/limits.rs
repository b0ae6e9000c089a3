//! No LAN client can starve the engine (issue 10, §2): every device-supplied field is bounded,
//! bodies are capped, new devices from the LAN are capped, and the device server has timeouts
//! and a connection cap, so the admin API and the device API keep answering under a flood.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, flotilla_bin};

fn checkin(mac: &str) -> Value {
    json!({ "device_id": format!("dev-{}", mac.replace(':', "")), "mac": mac, "model": "demo", "chip": "esp32", "version": "1.0.0" })
}

/// Appended to a collected log once the process's standard error has closed: everything it
/// wrote is in the buffer.
pub(crate) const STDERR_CLOSED: &str = "[stderr closed]\n";

/// The whole log of a process that has exited (or is exiting): waits until its standard error
/// has been read to the end. "Never in the log" is asserted on this, not on a buffer the reader
/// may still be filling.
pub(crate) async fn whole_log(log: &Arc<Mutex<String>>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log.lock().unwrap().clone();
        if text.ends_with(STDERR_CLOSED) {
            return text;
        }
        assert!(Instant::now() < deadline, "standard error still open 10 s after the stop:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `flotilla serve` on a fresh data dir with `args`, behind `prefix` (e.g. `prlimit …`),
/// with its standard error collected into the returned buffer ([`STDERR_CLOSED`] ends it).
pub(crate) async fn serve_with(prefix: &[&str], args: &[&str]) -> (Server, Arc<Mutex<String>>) {
    serve_with_env(prefix, args, &[]).await
}

/// [`serve_with`], with environment variables.
pub(crate) async fn serve_with_env(
    prefix: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Server, Arc<Mutex<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let bin = flotilla_bin();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let mut child = cmd
        .args(["serve", "--admin", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--no-mdns", "--log", "warn"])
        .args(["--https", "127.0.0.1:0", "--mqtt-tls-listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla serve starts");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[serve] {line}");
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
        sink.lock().unwrap().push_str(STDERR_CLOSED);
    });
    (Server::adopt(child, dir).await, log)
}

async fn devices(server: &Server) -> Vec<Value> {
    server.get_json::<Vec<Value>>("/api/v1/devices").await
}

async fn post(server: &Server, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = server.http.post(server.device(path)).json(body).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn oversized_fields_are_refused_by_name_and_nothing_is_stored() {
    let (server, log) = serve_with(&[], &["--http", "127.0.0.1:0"]).await;
    let mut big_model = checkin("02:00:00:00:10:01");
    big_model["model"] = json!("m".repeat(10_000));
    let mut many_labels = checkin("02:00:00:00:10:02");
    many_labels["labels"] = json!((0..33).map(|i| format!("l{i}")).collect::<Vec<_>>());
    let mut control = checkin("02:00:00:00:10:03");
    control["version"] = json!("1.0\u{1b}[2J");
    let cases = [
        ("/api/v1/check", big_model, "model"),
        ("/api/v1/check", many_labels, "labels"),
        ("/api/v1/check", control, "version"),
        (
            "/api/ota/check",
            json!({ "device_id": "d".repeat(200), "mac": "02:00:00:00:10:04", "current_version": "1.0.0" }),
            "device_id",
        ),
        (
            "/api/v1/check-update",
            json!({ "mac": "02:00:00:00:10:05", "current_version": "1.0.0", "model": "x".repeat(100) }),
            "model",
        ),
        (
            "/api/v1/report",
            json!({ "device_id": "dev-1", "job": "1.x", "state": "failed", "error": "e".repeat(2_000) }),
            "error",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = post(&server, path, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{path}: the field is named: {message}");
        assert!(message.len() < 300, "{path}: the value is not echoed back");
    }
    assert!(devices(&server).await.is_empty(), "nothing was stored");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stderr = loop {
        let text = log.lock().unwrap().clone();
        if text.contains("device request refused") && text.contains("model: at most") {
            break text;
        }
        assert!(Instant::now() < deadline, "the refusals are logged:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stderr.len() < 20_000, "the huge values are not logged");
    // Within the bounds, the same device checks in.
    assert_eq!(post(&server, "/api/v1/check", &checkin("02:00:00:00:10:01")).await.0, StatusCode::OK);
    assert_eq!(devices(&server).await.len(), 1);
}

/// Sends `head` and then as much of `body` as the server takes (it may answer and close before
/// all of it is read), and returns the server's answer.
fn raw_exchange(addr: &str, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(4096) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).unwrap_or(0);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_with_413() {
    let server = Server::start().await;
    let addr = server.info.device_url.trim_start_matches("http://").to_owned();
    // 200,000 labels, and a 1.9 MB model: refused before they are read, nothing stored.
    let mut labels = checkin("02:00:00:00:11:01");
    labels["labels"] = json!(vec!["l"; 200_000]);
    let mut model = checkin("02:00:00:00:11:02");
    model["model"] = json!("m".repeat(1_900_000));
    for body in [labels, model] {
        let body = serde_json::to_vec(&body).unwrap();
        let head = format!("POST /api/v1/check HTTP/1.1\r\nHost: big\r\nContent-Length: {}\r\n\r\n", body.len());
        let a = addr.clone();
        let answer = tokio::task::spawn_blocking(move || raw_exchange(&a, &head, &body)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // A body without a length (chunked) is cut off at the cap too.
    let head = "POST /api/v1/check HTTP/1.1\r\nHost: big\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    let body = format!("400\r\n{}\r\n", " ".repeat(1024)).repeat(64).into_bytes();
    let a = addr.clone();
    let answer = tokio::task::spawn_blocking(move || raw_exchange(&a, &head, &body)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A request head is bounded too: a 100 KB URL, 100 header fields.
    let head = format!(
        "GET /api/firmware/check?device_id={}&current_version=1 HTTP/1.1\r\nHost: big\r\n\r\n",
        "d".repeat(100_000)
    );
    let a = addr.clone();
    let answer = tokio::task::spawn_blocking(move || raw_exchange(&a, &head, &[])).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    let fields: String = (0..100).map(|i| format!("X-Field-{i}: y\r\n")).collect();
    let head = format!("GET /health HTTP/1.1\r\nHost: big\r\n{fields}\r\n");
    let answer = tokio::task::spawn_blocking(move || raw_exchange(&addr, &head, &[])).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(devices(&server).await.is_empty(), "nothing was stored");
}

/// Status and JSON error of a raw answer (`raw_exchange`).
fn status_and_error(answer: &str) -> (u16, Value) {
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The native check-in and report are served by the device server's connections themselves,
/// not through the router (`device_api::serve_native`): bad and oversized bodies, and other
/// methods, are answered as on a route the router serves (`/api/v1/check-update`).
#[tokio::test]
async fn the_native_routes_refuse_what_the_routed_ones_refuse() {
    let server = Server::start().await;
    let addr = server.info.device_url.trim_start_matches("http://").to_owned();
    let send = |head: String, body: Vec<u8>| {
        let addr = addr.clone();
        async move { tokio::task::spawn_blocking(move || raw_exchange(&addr, &head, &body)).await.unwrap() }
    };
    let exchange = |method: &str, path: &str, body: Vec<u8>| {
        send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()), body)
    };
    let message = |error: &Value| error["error"]["message"].as_str().unwrap_or_default().to_owned();
    let mut answers = Vec::new();
    for path in ["/api/v1/check", "/api/v1/report", "/api/v1/check-update"] {
        // Whole, but JSON that stops half-way.
        let half = exchange("POST", path, br#"{"device_id":"#.to_vec()).await;
        let (status, error) = status_and_error(&half);
        assert_eq!(status, 400, "{path}: {half}");
        assert_eq!(error["error"]["code"], "bad_request", "{path}: {half}");
        let not_json = message(&error);
        assert!(not_json.starts_with("the request body is not what this route takes: EOF"), "{path}: {not_json}");
        // A chunked body whose framing breaks: the body itself cannot be read.
        let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        let broken = send(head, b"zz\r\n{}\r\n0\r\n\r\n".to_vec()).await;
        let (status, error) = status_and_error(&broken);
        assert_eq!(status, 400, "{path}: {broken}");
        assert_eq!(message(&error), "the request body could not be read", "{path}: {broken}");
        // 20 KB against the 16 KiB cap.
        let big = exchange("POST", path, vec![b' '; 20_000]).await;
        let (status, error) = status_and_error(&big);
        assert_eq!(status, 413, "{path}: {big}");
        let too_big = message(&error);
        assert_eq!(too_big, "the request body is larger than the device server takes", "{path}");
        // A method the route does not take: the router's 405, which names the one it does.
        let get = exchange("GET", path, Vec::new()).await;
        assert!(get.starts_with("HTTP/1.1 405"), "{path}: {get}");
        assert!(get.to_ascii_lowercase().contains("allow: post"), "{path}: {get}");
        answers.push((not_json, too_big));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every route words its refusals alike: {answers:?}");
    assert!(devices(&server).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn new_devices_from_the_lan_are_capped_per_minute_and_in_all() {
    let (server, log) = serve_with(&[], &["--http", "0.0.0.0:0"]).await;
    let lan = server.info.device_url.clone();
    // Loopback is exempt from the caps, so the check-ins must come from a LAN address. A host
    // without one cannot run this test: it fails saying so rather than passing having checked
    // nothing.
    assert!(
        !lan.contains("127.0.0.1"),
        "this test checks in from the host's LAN address, and the engine found none (device URL {lan}): \
         run it on a host with a non-loopback IPv4 address (CI has one)"
    );
    let port = lan.rsplit(':').next().unwrap().to_owned();
    let loopback = format!("http://127.0.0.1:{port}");
    let resp = server
        .api(Method::PUT, "/api/v1/settings")
        .json(&json!({ "new_devices_per_minute": 3, "max_devices": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["effective"]["new_devices_per_minute"], 3, "applies at once: {view}");
    assert_eq!(view["restart_required"], false);

    let check_as = |base: &str, mac: &str, secret: Option<String>| {
        let url = format!("{base}/api/v1/check");
        let body = checkin(mac);
        let http = server.http.clone();
        async move {
            let mut req = http.post(url).json(&body);
            if let Some(secret) = secret {
                req = req.bearer_auth(secret);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let check = |base: &str, mac: &str| check_as(base, mac, None);
    let mut first_secret = None;
    for i in 1..=3 {
        let (status, answer) = check(&lan, &format!("02:00:00:00:12:0{i}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if i == 1 {
            first_secret = answer["credential"]["secret"].as_str().map(str::to_owned);
        }
    }
    let (status, answer) = check(&lan, "02:00:00:00:12:04").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("new_devices_per_minute"), "{answer}");
    // A known device still checks in; loopback is exempt.
    assert!(first_secret.is_some(), "the first check-in enrolled the device");
    assert_eq!(check_as(&lan, "02:00:00:00:12:01", first_secret.clone()).await.0, StatusCode::OK);
    assert_eq!(check(&loopback, "02:00:00:00:12:05").await.0, StatusCode::OK);
    assert_eq!(devices(&server).await.len(), 4);

    // In all: 5 devices, then no more from the LAN.
    server
        .api(Method::PUT, "/api/v1/settings")
        .json(&json!({ "new_devices_per_minute": 100, "max_devices": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(check(&lan, "02:00:00:00:12:06").await.0, StatusCode::OK);
    let (status, answer) = check(&lan, "02:00:00:00:12:07").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("max_devices 5"), "{answer}");
    assert_eq!(devices(&server).await.len(), 5, "the refused devices were not created");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("new device refused") {
        assert!(Instant::now() < deadline, "the refusals are logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens `n` connections to `addr` that send half a request and wait.
fn half_open(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /api/v1/check HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n").unwrap();
            s
        })
        .collect()
}

/// Waits until the server closed `s` (EOF or reset), at most `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn a_connection_flood_under_a_low_open_files_limit_starves_nothing() {
    // 256 open files: 192 device connections at most, the rest kept for the admin API & co.
    let (server, log) =
        serve_with(&["prlimit", "--nofile=256:256", "--"], &["--http", "127.0.0.1:0", "--device-header-timeout", "2"])
            .await;
    let addr = server.info.device_url.trim_start_matches("http://").to_owned();
    let flood_addr = addr.clone();
    let started = Instant::now();
    let mut flood: Vec<TcpStream> = tokio::task::spawn_blocking(move || half_open(&flood_addr, 260)).await.unwrap();

    // The admin API answers at once, not after the flood times out.
    let t = Instant::now();
    let info = server.api(Method::GET, "/api/v1/info").timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(2), "the admin API answered in {:?}", t.elapsed());
    let status = server.api(Method::GET, "/api/v1/status").timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    // So does the broker: a device's presence goes through while the flood is held.
    let t = Instant::now();
    let presence = json!({ "online": true, "mac": "02:00:00:00:13:02", "model": "demo", "version": "1.0.0" });
    let mqtt_url = server.mqtt_url();
    tokio::task::spawn_blocking(move || publish_presence_to(&mqtt_url, "flood-mqtt", &presence)).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "the broker answered in {:?}", t.elapsed());

    // A device's check-in is answered once the half-sent requests time out (2 s each).
    let resp = server
        .http
        .post(server.device("/api/v1/check"))
        .json(&checkin("02:00:00:00:13:01"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Every half-sent request is closed by the header timeout.
    let closed = tokio::task::spawn_blocking(move || {
        flood.iter_mut().map(|s| closed_within(s, Duration::from_secs(20))).filter(|c| *c).count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 260, "every half-open connection was closed");
    assert!(started.elapsed() < Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let text = log.lock().unwrap().clone();
        if text.contains("connection limit reached") && text.contains("no complete request headers in time") {
            break text;
        }
        assert!(Instant::now() < deadline, "the cap and the timeouts are logged:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(log.contains("connection limit reached"), "the cap being hit is logged:\n{log}");
    assert!(log.contains("no complete request headers in time"), "the timeouts are logged:\n{log}");
    // Rate-limited: 260 timeouts do not make 260 lines.
    assert!(log.lines().filter(|l| l.contains("no complete request headers")).count() <= 40, "{log}");
    // And the engine still serves as before: the check-in's device and the MQTT one.
    assert_eq!(devices(&server).await.len(), 2);
}

#[tokio::test]
async fn a_body_that_never_completes_is_answered_408() {
    let (server, _log) = serve_with(&[], &["--http", "127.0.0.1:0", "--device-request-timeout", "1"]).await;
    let addr = server.info.device_url.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /api/v1/check HTTP/1.1\r\nHost: slow\r\nContent-Length: 100\r\n\r\n{\"device_id\":")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// Publishes one retained presence of device `id` with `mosquitto_pub` (QoS 1: the broker has it
/// when this returns).
fn publish_presence(server: &Server, id: &str, payload: &Value) {
    publish_presence_to(&server.mqtt_url(), id, payload);
}

/// [`publish_presence`] to the broker at `url` (`mqtt://user:password@host:port`).
fn publish_presence_to(url: &str, id: &str, payload: &Value) {
    let rest = url.strip_prefix("mqtt://").unwrap();
    let (creds, host) = rest.split_once('@').unwrap();
    let (user, pass) = creds.split_once(':').unwrap();
    let port = host.rsplit(':').next().unwrap();
    let topic = format!("flotilla/{id}/status");
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", port, "-u", user, "-P", pass, "-i", id, "-t", &topic, "-q", "1"])
        .args(["-m", &payload.to_string()])
        .status()
        .expect("mosquitto_pub (Debian's mosquitto-clients) runs");
    assert!(status.success());
}

#[tokio::test]
async fn an_mqtt_presence_out_of_bounds_is_dropped_and_logged() {
    let (server, log) = serve_with(&[], &["--http", "127.0.0.1:0"]).await;
    let big = json!({ "online": true, "mac": "02:00:00:00:14:01", "model": "m".repeat(5_000), "version": "1.0.0" });
    publish_presence(&server, "big-1", &big);
    let fine = json!({ "online": true, "mac": "02:00:00:00:14:02", "model": "demo", "version": "1.0.0" });
    publish_presence(&server, "fine-1", &fine);
    // Presences are handled in order: once the second is in, the first was looked at.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = devices(&server).await;
        if !list.is_empty() {
            let macs: Vec<&str> = list.iter().map(|d| d["mac"].as_str().unwrap()).collect();
            assert_eq!(macs, ["02:00:00:00:14:02"], "the presence out of bounds created nothing");
            break;
        }
        assert!(Instant::now() < deadline, "the valid presence never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.lock().unwrap().contains("presence refused") {
        assert!(Instant::now() < deadline, "the refusal is logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.lock().unwrap().contains("model: at most 64 characters"));
}
