//! `flotilla devices add HOST:PORT` against the real engine and devices played by small HTTP
//! servers on loopback that answer as Shelly Gen1/Gen2+ and Tasmota firmware do — and as broken
//! or hostile devices do: hanging, closing mid-answer, answering HTML or endless JSON. Each ends
//! in a clear per-device state within the probe's timeout, and the engine keeps answering.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{Server, family_kind, flotilla_bin};

#[derive(Clone, Copy)]
enum Plays {
    ShellyGen1Locked,
    ShellyGen2,
    Tasmota,
    TasmotaLocked,
    Hangs,
    ClosesMidAnswer,
    Html,
    EndlessJson,
}

const GEN1: &str = r#"{"type":"SHSW-25","mac":"A8032AB20001","auth":true,"fw":"20230913-112234/v1.14.0-gcb84623","discoverable":true,"num_outputs":2}"#;
const GEN2: &str = r#"{"name":null,"id":"shellyplus1pm-a8032ab20002","mac":"A8032AB20002","slot":0,"model":"SNSW-001P16EU","gen":2,"fw_id":"20231219-133934/1.1.0-g34b5d4f","ver":"1.1.0","app":"Plus1PM","auth_en":false,"auth_domain":null}"#;
const STATUS0: &str = r#"{"Status":{"Module":1,"DeviceName":"Kitchen","FriendlyName":["Kitchen"],"Topic":"kitchen","Power":0},"StatusFWR":{"Version":"14.3.0(release-tasmota)","BuildDateTime":"2024-10-15T10:11:12","Boot":31,"Core":"2_7_7","SDK":"2.2.2-dev(38a443e)","CpuFrequency":80,"Hardware":"ESP8266EX"},"StatusNET":{"Hostname":"kitchen-0003","IPAddress":"192.168.1.51","Gateway":"192.168.1.1","Mac":"A8:03:2A:B2:00:03"}}"#;
const NEED_PASSWORD: &str = r#"{"WARNING":"Need user=<username>&password=<password>"}"#;

fn reply(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The path of the one request a fake device reads (empty when the request is not HTTP).
async fn request_path(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    request.split_whitespace().nth(1).unwrap_or_default().to_owned()
}

/// Serves as `plays` on a loopback port until the test ends; returns `127.0.0.1:port`.
async fn device(plays: Plays) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let path = request_path(&mut s).await;
                let shelly = path == "/shelly";
                let tasmota = path.starts_with("/cm?cmnd=Status%200");
                let answer = match plays {
                    Plays::ShellyGen1Locked if shelly => reply("200 OK", GEN1),
                    Plays::ShellyGen2 if shelly => reply("200 OK", GEN2),
                    Plays::Tasmota if tasmota => reply("200 OK", STATUS0),
                    Plays::TasmotaLocked if tasmota => reply("401 Unauthorized", NEED_PASSWORD),
                    Plays::Hangs => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    Plays::ClosesMidAnswer => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"mac\":\"A8").await;
                        return;
                    }
                    Plays::Html => {
                        let body = "<html><body>Router login</body></html>";
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes()
                    }
                    Plays::EndlessJson => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[").await;
                        let chunk = "1,".repeat(32 * 1024);
                        for _ in 0..2048 {
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    _ => reply("404 Not Found", "<html>404</html>"),
                };
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// `flotilla ARGS` in a process of its own, off the runtime (the devices this test plays answer
/// from this test's runtime): its output and how long it took.
async fn cli(server: &Server, args: &[&str]) -> (std::process::Output, Duration) {
    let mut cmd = std::process::Command::new(flotilla_bin());
    cmd.args(args).arg("--data-dir").arg(server.data_dir());
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = cmd.output().unwrap();
        (out, started.elapsed())
    })
    .await
    .unwrap()
}

/// `flotilla devices add ADDRESS --json` (with `extra`), run in a process of its own: exit code,
/// answer and how long it took.
async fn add(server: &Server, address: &str, extra: &[&str]) -> (i32, Value, Duration) {
    let mut args = vec!["devices", "add", address, "--json"];
    args.extend_from_slice(extra);
    let (out, took) = cli(server, &args).await;
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{address}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), answer, took)
}

#[tokio::test]
async fn devices_add_probes_vendor_devices_and_survives_broken_ones() {
    let server = Server::start().await;
    let plays = [
        Plays::ShellyGen1Locked,
        Plays::ShellyGen2,
        Plays::Tasmota,
        Plays::TasmotaLocked,
        Plays::Hangs,
        Plays::ClosesMidAnswer,
        Plays::Html,
        Plays::EndlessJson,
    ];
    let mut addrs = Vec::new();
    for p in plays {
        addrs.push(device(p).await);
    }
    // Every probe at once: the hanging and endless ones must not hold up the others.
    let probes = addrs.iter().map(|a| add(&server, a, &[]));
    let results = futures_util::future::join_all(probes).await;
    let [gen1, gen2, tasmota, locked, hangs, closes, html, endless] = results.try_into().unwrap();

    for good in [&gen1, &gen2, &tasmota] {
        assert!(good.2 < hangs.2, "probed beside the hanging device, not after it: {:?} vs {:?}", good.2, hangs.2);
    }
    assert_eq!(gen1.0, 0, "{:?}", gen1.1);
    let d = &gen1.1["device"];
    assert_eq!(
        (family_kind(d).as_str(), d["version"].as_str(), d["model"].as_str()),
        ("shelly-gen1", Some("1.14.0"), Some("SHSW-25")),
        "{d}"
    );
    assert_eq!(gen1.1["auth_required"], true, "the Gen1 device said auth: true");
    let d = &gen2.1["device"];
    assert_eq!((family_kind(d).as_str(), d["mac"].as_str()), ("shelly-gen2", Some("a8:03:2a:b2:00:02")), "{d}");
    assert_eq!(d["ip"], "127.0.0.1", "the address probed, not one the device claims");
    let d = &tasmota.1["device"];
    assert_eq!(
        (d["family"].as_str(), d["version"].as_str(), d["device_id"].as_str()),
        (Some("tasmota"), Some("14.3.0"), Some("kitchen")),
        "{d}"
    );
    assert_eq!(d["ip"], "127.0.0.1", "not the 192.168.1.51 its status claims: {d}");
    assert!(d["sources"].as_array().unwrap().iter().any(|s| s == "probe"), "{d}");

    assert_eq!((locked.0, locked.1["state"].as_str()), (1, Some("authentication_required")), "{:?}", locked.1);
    assert_eq!(locked.1["family"], "tasmota");
    assert_eq!(hangs.1["state"], "unreachable", "{:?}", hangs.1);
    assert!(hangs.2 < Duration::from_secs(15), "a hanging device is given up within the timeout: {:?}", hangs.2);
    assert_eq!(closes.1["state"], "unreachable", "{:?}", closes.1);
    assert_eq!(html.1["state"], "unrecognised", "{:?}", html.1);
    assert!(html.1["detail"].as_str().unwrap().contains("HTML"), "{:?}", html.1);
    assert_eq!(endless.1["state"], "unrecognised", "{:?}", endless.1);
    assert!(endless.1["detail"].as_str().unwrap().contains("KiB"), "{:?}", endless.1);
    for r in [&hangs, &closes, &html, &endless, &locked] {
        assert_eq!(r.0, 1, "not found is a failure exit: {:?}", r.1);
        assert!(r.1["device"].is_null(), "{:?}", r.1);
    }
    // Three devices, nothing else; the engine answers.
    let all: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(all.len(), 3, "{all:?}");

    // A family hint tries that family first; a bad address is refused with a reason.
    let (code, hinted, _) = add(&server, &addrs[2], &["--family", "tasmota"]).await;
    assert_eq!((code, hinted["state"].as_str()), (0, Some("found")));
    let (out, _) = cli(&server, &["devices", "add", "not a host", "--json"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not HOST or HOST:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A device of `kind` (0 Shelly Gen2+, 1 Gen1, 2 Tasmota) numbered `n`, on `ip:port`.
async fn fleet_device(ip: &str, port: u16, kind: usize, n: usize) {
    let listener = TcpListener::bind((ip, port)).await.unwrap();
    let mac = format!("A8032AB3{n:04X}");
    let answer = match kind {
        0 => reply("200 OK", &GEN2.replace("A8032AB20002", &mac).replace("a8032ab20002", &mac.to_lowercase())),
        1 => reply("200 OK", &GEN1.replace("A8032AB20001", &mac)),
        _ => {
            let colons: Vec<String> =
                mac.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            reply("200 OK", &STATUS0.replace("A8:03:2A:B2:00:03", &colons.join(":")))
        }
    };
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let path = request_path(&mut s).await;
                let mine = (kind < 2 && path == "/shelly") || (kind == 2 && path.starts_with("/cm?"));
                let _ = s.write_all(&if mine { answer } else { reply("404 Not Found", "<html>404</html>") }).await;
                let _ = s.shutdown().await;
            });
        }
    });
}

#[tokio::test]
async fn devices_scan_finds_a_whole_subnet_at_a_bounded_rate() {
    let server = Server::start().await;
    // 100 devices on 127.0.2.1–100 (loopback), one port for all; .101–.126 answer nothing.
    let port = TcpListener::bind("127.0.2.1:0").await.unwrap().local_addr().unwrap().port();
    for n in 1..=100usize {
        fleet_device(&format!("127.0.2.{n}"), port, n % 3, n).await;
    }
    let rate = 250u32;
    let subnet = "127.0.2.0/25";
    let port_arg = port.to_string();
    let rate_arg = rate.to_string();
    let (out, _) =
        cli(&server, &["devices", "scan", "--subnet", subnet, "--port", &port_arg, "--rate", &rate_arg, "--json"])
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["addresses"], 126, "{r}");
    assert_eq!(r["mdns"], false, "this engine runs with --no-mdns: no query was sent, none claimed: {r}");
    assert_eq!(r["found"].as_array().unwrap().len(), 100, "every device found: {r}");
    assert_eq!(r["unreachable"], 26, "{r}");
    let took = r["took_ms"].as_u64().unwrap();
    assert!(took >= 125 * 1000 / u64::from(rate), "126 addresses at {rate}/s cannot take {took} ms");
    let all: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(all.len(), 100, "one row per device");
    let families = |f: &str| all.iter().filter(|d| family_kind(d) == f).count();
    assert_eq!((families("shelly-gen2"), families("shelly-gen1"), families("tasmota")), (33, 34, 33));
    assert!(all.iter().all(|d| d["sources"] == serde_json::json!(["probe"])));
    // A scan is in the audit log; a subnet too wide is refused with the widest allowed.
    let events: Value = server.get_json("/api/v1/events?kind=discovery.scan").await;
    assert!(events.to_string().contains("\"found\":100"), "{events}");
    let (out, _) = cli(&server, &["devices", "scan"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("mDNS browsing is off") && !said.contains("queried again"), "{said}");
    let (out, _) = cli(&server, &["devices", "scan", "--subnet", "10.0.0.0/8"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/20"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A Tasmota whose web password is `password` (HTTP Basic, user admin), on `ip:port`.
async fn locked_tasmota(ip: &str, port: u16, n: usize, password: &'static str) {
    use base64::Engine as _;
    let listener = TcpListener::bind((ip, port)).await.unwrap();
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")));
    let mac = format!("A8:03:2A:B5:00:{n:02X}");
    let answer = reply("200 OK", &STATUS0.replace("A8:03:2A:B2:00:03", &mac));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (want, answer) = (want.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let authorised = request.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.trim() == want)
                });
                let out = if !request.contains("/cm?") {
                    reply("404 Not Found", "<html>404</html>")
                } else if authorised {
                    answer
                } else {
                    reply("401 Unauthorized", NEED_PASSWORD)
                };
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
}

#[tokio::test]
async fn tasmota_credentials_open_the_right_device_and_are_never_shown() {
    const RIGHT: &str = "Kx7-right-web-password";
    const WRONG: &str = "Qp2-other-web-password";
    let (server, log) = crate::limits::serve_with_env(&[], &["--http", "127.0.0.1:0"], &[("RUST_LOG", "debug")]).await;
    let port = TcpListener::bind("127.0.3.1:0").await.unwrap().local_addr().unwrap().port();
    locked_tasmota("127.0.3.1", port, 1, RIGHT).await;
    locked_tasmota("127.0.3.2", port, 2, WRONG).await;

    // Without a credential: it wants a password.
    let (_, r, _) = add(&server, &format!("127.0.3.1:{port}"), &[]).await;
    assert_eq!(r["state"], "authentication_required", "{r}");

    // The family's password, from standard input.
    let mut cmd = std::process::Command::new(flotilla_bin());
    cmd.args(["credentials", "set", "tasmota", "--username", "admin", "--data-dir"]).arg(server.data_dir());
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{RIGHT}\n").as_bytes()).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(RIGHT));

    let (code, r, _) = add(&server, &format!("127.0.3.1:{port}"), &["--family", "tasmota"]).await;
    assert_eq!((code, r["state"].as_str()), (0, Some("found")), "{r}");
    assert_eq!(r["device"]["mac"], "a8:03:2a:b5:00:01");
    // The other device has another password: authentication failed, on that device only.
    let (code, r, _) = add(&server, &format!("127.0.3.2:{port}"), &["--family", "tasmota"]).await;
    assert_eq!((code, r["state"].as_str()), (1, Some("authentication_failed")), "{r}");
    let all: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(all.len(), 1, "{all:?}");

    // Listed without the password; nowhere else either: API answers, events, the database, logs.
    let (out, _) = cli(&server, &["credentials", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([{ "scope": "tasmota", "username": "admin", "password_set": true }]));
    for path in
        ["/api/v1/credentials", "/api/v1/devices", "/api/v1/events?limit=500", "/api/v1/settings", "/api/v1/status"]
    {
        let body = server.api(reqwest::Method::GET, path).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains(RIGHT), "{path} shows the password");
    }
    let events = server.api(reqwest::Method::GET, "/api/v1/events?kind=credentials.set").send().await.unwrap();
    assert!(events.text().await.unwrap().contains("\"scope\":\"tasmota\""), "the change is audited");
    let (out, _) = cli(&server, &["credentials", "remove", "tasmota"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, r, _) = add(&server, &format!("127.0.3.1:{port}"), &[]).await;
    assert_eq!(r["state"], "authentication_required", "removed: {r}");
    let dir = server.data_dir().to_owned();
    let (_, stdout, _keep) = server.stop();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!String::from_utf8_lossy(&bytes).contains(RIGHT), "{name} holds the removed password");
    }
    assert!(!stdout.contains(RIGHT));
    let log = crate::limits::whole_log(&log).await;
    assert!(log.contains("DEBUG"), "debug lines were logged, so they were read: {log}");
    assert!(!log.contains(RIGHT), "the log shows the password");
}

/// A Shelly Gen1 with a web password (`auth: true`; `/settings` wants HTTP Basic `admin:password`)
/// on `ip:port`. `settings_breaks`: its `/settings` closes mid-answer even to the right password.
async fn locked_gen1(
    ip: &str,
    port: u16,
    n: usize,
    password: &'static str,
    settings_breaks: bool,
) -> Arc<Mutex<Vec<String>>> {
    use base64::Engine as _;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    let listener = TcpListener::bind((ip, port)).await.unwrap();
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")));
    let mac = format!("A8032AB6{n:04X}");
    let info = reply("200 OK", &GEN1.replace("A8032AB20001", &mac));
    let settings = reply(
        "200 OK",
        &format!(
            r#"{{"device":{{"type":"SHSW-25","mac":"{mac}","hostname":"shellyswitch25-{mac}","num_outputs":2}},"name":"Hall {n}","fw":"20230913-112234/v1.14.0-gcb84623","login":{{"enabled":true,"unprotected":false,"username":"admin"}}}}"#
        ),
    );
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (want, info, settings, log) = (want.clone(), info.clone(), settings.clone(), Arc::clone(&log));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or_default().to_owned();
                log.lock().unwrap().push(path.clone());
                let authorised = request.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.trim() == want)
                });
                let out = match path.as_str() {
                    "/shelly" => info,
                    "/settings" if !authorised => {
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                    }
                    "/settings" if settings_breaks => settings[..settings.len() / 2].to_vec(),
                    "/settings" => settings,
                    _ => reply("404 Not Found", "<html>404</html>"),
                };
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    asked
}

/// `flotilla credentials set SCOPE --username admin` with `password` on standard input.
async fn set_credential(server: &Server, scope: &str, password: &str) {
    let mut cmd = std::process::Command::new(flotilla_bin());
    cmd.args(["credentials", "set", scope, "--username", "admin", "--data-dir"]).arg(server.data_dir());
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{password}\n").as_bytes()).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_locked_shelly_gen1_gives_its_name_from_settings_with_the_right_credential_only() {
    const RIGHT: &str = "Hs4-family-password";
    const OWN: &str = "Zt8-own-password";
    let server = Server::start().await;
    let port = TcpListener::bind("127.0.4.1:0").await.unwrap().local_addr().unwrap().port();
    let asked = locked_gen1("127.0.4.1", port, 1, RIGHT, false).await;
    locked_gen1("127.0.4.2", port, 2, OWN, false).await;
    locked_gen1("127.0.4.3", port, 3, RIGHT, true).await;
    let at = |n: u8| format!("127.0.4.{n}:{port}");

    // No credential: what /shelly says, and that it has a password; /settings is not asked.
    let (code, r, _) = add(&server, &at(1), &[]).await;
    assert_eq!((code, r["state"].as_str(), r["auth_required"].as_bool()), (0, Some("found"), Some(true)), "{r}");
    assert!(r["device"]["name"].is_null(), "{r}");
    let paths = asked.lock().unwrap().clone();
    assert!(paths.iter().any(|p| p == "/shelly"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/settings")), "/settings asked without a credential: {paths:?}");

    set_credential(&server, "shelly", RIGHT).await;
    let (code, r, _) = add(&server, &at(1), &[]).await;
    assert_eq!((code, r["state"].as_str()), (0, Some("found")), "{r}");
    let d = &r["device"];
    assert_eq!(
        (d["name"].as_str(), d["device_id"].as_str(), d["model"].as_str(), d["version"].as_str()),
        (Some("Hall 1"), Some("shellyswitch25-A8032AB60001"), Some("SHSW-25"), Some("1.14.0")),
        "name and host name from /settings: {d}"
    );
    // Another password on this one: authentication failed, on it only.
    let (code, r, _) = add(&server, &at(2), &[]).await;
    assert_eq!((code, r["state"].as_str(), r["family"].as_str()), (1, Some("authentication_failed"), Some("shelly")));
    assert!(r["detail"].as_str().unwrap().contains("authentication failed"), "{r}");
    let (code, r, _) = add(&server, &at(1), &[]).await;
    assert_eq!((code, r["device"]["name"].as_str()), (0, Some("Hall 1")), "the first is still read: {r}");
    // Its own credential (by the MAC /shelly gave) wins over the family's.
    set_credential(&server, "A8:03:2A:B6:00:02", OWN).await;
    let (code, r, _) = add(&server, &at(2), &[]).await;
    assert_eq!((code, r["device"]["name"].as_str()), (0, Some("Hall 2")), "{r}");
    // A /settings that breaks off keeps what /shelly gave.
    let (code, r, _) = add(&server, &at(3), &[]).await;
    let d = &r["device"];
    assert_eq!(
        (code, d["mac"].as_str(), d["model"].as_str(), d["name"].as_str()),
        (0, Some("a8:03:2a:b6:00:03"), Some("SHSW-25"), None),
        "{r}"
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Web {
    /// ESPHome's `web_server`: its page and its stream's greeting, as the firmware writes them.
    Esphome,
    /// An event stream that never sends an event.
    Silent,
    /// An event stream whose first event is not ESPHome's greeting.
    Garbage,
    /// An event that never ends.
    Endless,
}

/// A web server playing `web` on a loopback port; returns `127.0.0.1:port`.
async fn web_server(web: Web) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let path = request_path(&mut s).await;
                if path != "/events" {
                    let _ = s.write_all(&reply("404 Not Found", "<html>404</html>")).await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let first: Vec<u8> = match web {
                    Web::Esphome => b"retry: 30000\r\nid: 2291\r\nevent: ping\r\ndata: {\"title\":\"Porch light\",\"comment\":\"\",\"ota\":true,\"log\":true,\"lang\":\"en\"}\r\n\r\n".to_vec(),
                    Web::Silent => Vec::new(),
                    Web::Garbage => b"\xff\xfe\x00garbage\r\ndata: {\"title\":\"x\r\n\r\n".to_vec(),
                    Web::Endless => {
                        let _ = s.write_all(b"event: ping\r\ndata: ").await;
                        let chunk = "a".repeat(16 * 1024);
                        for _ in 0..4096 {
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                };
                let _ = s.write_all(&first).await;
                // Then the stream stays open, as the firmware's does.
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn esphome_web_servers_are_recognised_by_their_stream_and_broken_streams_end_in_time() {
    let server = Server::start().await;
    let esphome = web_server(Web::Esphome).await;
    let (code, r, took) = add(&server, &esphome, &[]).await;
    assert_eq!((code, r["state"].as_str(), r["family"].as_str()), (0, Some("found"), Some("esphome")), "{r}");
    assert!(r["detail"].as_str().unwrap().contains("Porch light"), "its name is told: {r}");
    assert!(took < Duration::from_secs(4), "the first event is enough; the open stream is closed: {took:?}");
    let (code, r, _) = add(&server, &esphome, &["--family", "esphome"]).await;
    assert_eq!((code, r["family"].as_str()), (0, Some("esphome")), "{r}");
    // Human output says what it found.
    let (out, _) = cli(&server, &["devices", "add", &esphome]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("Porch light"), "{}", String::from_utf8_lossy(&out.stdout));

    let broken = [Web::Silent, Web::Garbage, Web::Endless];
    let mut addrs = Vec::new();
    for w in broken {
        addrs.push(web_server(w).await);
    }
    let probes = addrs.iter().map(|a| add(&server, a, &["--family", "esphome"]));
    let results = futures_util::future::join_all(probes).await;
    for ((code, r, took), w) in results.iter().zip(broken) {
        assert_eq!((*code, r["state"].as_str()), (1, Some("unrecognised")), "{r}");
        assert!(r["device"].is_null(), "{r}");
        assert!(*took < Duration::from_secs(15), "within the probe's timeout: {took:?}");
        let detail = r["detail"].as_str().unwrap();
        let want = match w {
            Web::Silent => "timed out before its first event",
            Web::Garbage => "is not ESPHome's greeting",
            _ => "KiB without a whole event",
        };
        assert!(detail.contains(want), "{detail}");
    }
    // Without the hint the stream's answer still says most.
    let (_, r, _) = add(&server, &addrs[1], &[]).await;
    assert!(r["detail"].as_str().unwrap().contains("event stream"), "{r}");
    let all: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert!(all.is_empty(), "no MAC, no inventory row: {all:?}");
}
