//! mDNS advertising, checked with real multicast packets: `flotilla serve` runs in one network
//! namespace and a browser in another, the two joined by a veth pair, so a device on the LAN is
//! played by a second network stack rather than by a loopback shortcut.
//!
//! The browser is this test binary run again (`browse_helper`, ignored unless the env var
//! [`BROWSE_ENV`] asks it to browse) under `ip netns exec`, because a namespace is entered by a
//! whole process. It prints what it resolved as one JSON line.
//!
//! These tests must never send anything outside the two namespaces they create (only
//! `10.213.x.0/24` and mDNS's own 5353 inside them). They need root and the `ip` tool (Debian
//! package `iproute2`); CI runs as root. Without root they fail; built with `FLOTILLA_SKIP_NETNS=1` they are
//! reported as ignored ([`crate::support::require_namespaces`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flotilla_proto::RuntimeInfo;
use mdns_sd::{ServiceDaemon, ServiceEvent};
use serde_json::{Value, json};

use crate::support::{family_kind, flotilla_bin, require_namespaces, require_program, wait_for_runtime_of};

/// The service type `flotilla serve` advertises.
const SERVICE_TYPE: &str = "_flotilla._tcp.local.";
/// Set (to a JSON browse request) only for the re-executed browser.
const BROWSE_ENV: &str = "FLOTILLA_E2E_MDNS_BROWSE";
/// Marks the browser's answer among libtest's own output (which may precede it on the line).
const RESULT_PREFIX: &str = "FLOTILLA_E2E_MDNS_RESULT ";

// ---- the tests --------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn the_device_server_is_advertised_to_the_lan() {
    require_namespaces("mdns::the_device_server_is_advertised_to_the_lan");
    let link = Link::create("adv", 1);
    let data = tempfile::tempdir().unwrap();
    let (server, info) = serve_in(&link.a, data.path(), &[]).await;
    let port = device_port(&info);
    assert_eq!(info.device_url, format!("http://{}:{port}", link.a_addr), "the device URL names A's LAN address");

    let request = json!({ "service_type": SERVICE_TYPE, "wait_ms": 15_000, "first_only": true });
    let report = browse_from(&link.b, &request, Duration::from_secs(30));
    let services = report["services"].as_object().unwrap();
    assert_eq!(services.len(), 1, "exactly one Flotilla is seen from B within 15 s: {report}");
    let (fullname, service) = services.iter().next().unwrap();
    assert!(fullname.starts_with("Flotilla on ") && fullname.ends_with(SERVICE_TYPE), "{fullname}");
    assert_eq!(service["port"], port, "the advertised port is the device server's: {report}");
    let v4: Vec<&str> = service["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| !a.contains(':'))
        .collect();
    assert_eq!(v4, [link.a_addr.to_string()], "the advertised IPv4 address is A's veth address: {report}");
    assert_eq!(service["txt"]["api"], "/api/v1", "{report}");
    assert_eq!(service["txt"]["v"], info.version, "{report}");
    assert_eq!(service["txt"]["fp"], site_key_id(&link.a, data.path()), "fp pins the site key: {report}");
    // The site TLS certificate: its HTTPS port and the SHA-256 of its public key, to pin.
    let https_port = info.device_https_url.as_deref().and_then(|u| u.rsplit(':').next()).expect("HTTPS is on");
    assert_eq!(service["txt"]["tls"], https_port, "{report}");
    let fps = service["txt"]["fps"].as_str().unwrap_or_default();
    assert!(fps.len() == 64 && fps.bytes().all(|b| b.is_ascii_hexdigit()), "fps is a SHA-256: {report}");
    // A device that found the server this way can reach it there.
    let health = &report["health"][format!("{}:{port}", link.a_addr)];
    assert!(health.as_str().is_some_and(|s| s.contains(" 200 ")), "GET /health from B: {report}");
    assert!(has_udp_socket_on(server.0.id(), 5353), "the check the --no-mdns test relies on sees mDNS's socket");
}

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn no_mdns_advertises_nothing() {
    require_namespaces("mdns::no_mdns_advertises_nothing");
    let link = Link::create("quiet", 2);
    let data = tempfile::tempdir().unwrap();
    let (server, info) = serve_in(&link.a, data.path(), &["--no-mdns"]).await;
    let port = device_port(&info);

    // A responder answers within a fraction of a second (RFC 6762 §6: 20-120 ms), so 2.5 s of
    // silence while the path between the namespaces demonstrably works means nobody is there.
    let device = SocketAddr::new(IpAddr::V4(link.a_addr), port);
    let request = json!({ "service_type": SERVICE_TYPE, "wait_ms": 2_500, "first_only": false, "probe": device });
    let report = browse_from(&link.b, &request, Duration::from_secs(20));
    assert_eq!(report["search_started"], true, "the browser did query: {report}");
    assert_eq!(report["services"], json!({}), "nothing is advertised with --no-mdns: {report}");
    let health = &report["health"][device.to_string()];
    assert!(health.as_str().is_some_and(|s| s.contains(" 200 ")), "B reaches A's device server: {report}");
    assert!(!has_udp_socket_on(server.0.id(), 5353), "--no-mdns opens no mDNS socket in A");
}

/// The browser, run by the tests above inside namespace B; does nothing unless [`BROWSE_ENV`] is set.
#[test]
#[ignore = "a helper: the mDNS tests run it inside a network namespace"]
fn browse_helper() {
    let Ok(request) = std::env::var(BROWSE_ENV) else { return };
    let request: Value = serde_json::from_str(&request).expect("the browse request is JSON");
    println!("{RESULT_PREFIX}{}", browse(&request));
}

// ---- the browser --------------------------------------------------------------------------------

/// What was resolved of one service instance (mdns-sd may resolve it in several steps).
#[derive(Debug, Default)]
struct Resolved {
    host: String,
    port: u16,
    addresses: BTreeSet<IpAddr>,
    txt: BTreeMap<String, String>,
}

/// Browses for `request.service_type` for at most `request.wait_ms` (or until the first instance
/// with an IPv4 address when `first_only`), then sends `GET /health` to every resolved IPv4
/// address and to `request.probe`. Returns
/// `{search_started, services: {fullname: {host, port, addresses, txt}}, health: {addr: status line}}`.
fn browse(request: &Value) -> Value {
    let service_type = request["service_type"].as_str().expect("service_type");
    let wait = Duration::from_millis(request["wait_ms"].as_u64().expect("wait_ms"));
    let first_only = request["first_only"].as_bool().unwrap_or(false);

    let daemon = ServiceDaemon::new().expect("the mDNS daemon starts");
    let events = daemon.browse(service_type).expect("browsing starts");
    let deadline = Instant::now() + wait;
    let mut search_started = false;
    let mut found: BTreeMap<String, Resolved> = BTreeMap::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = events.recv_timeout(left) else { break };
        match event {
            ServiceEvent::SearchStarted(_) => search_started = true,
            ServiceEvent::ServiceResolved(s) => {
                let r = found.entry(s.fullname.clone()).or_default();
                r.host.clone_from(&s.host);
                r.port = s.port;
                r.addresses.extend(s.addresses.iter().map(|a| a.to_ip_addr()));
                r.txt.extend(s.txt_properties.iter().map(|p| (p.key().to_owned(), p.val_str().to_owned())));
                if first_only && r.addresses.iter().any(IpAddr::is_ipv4) {
                    break;
                }
            }
            _ => {}
        }
    }
    let _ = daemon.shutdown();

    let mut targets: Vec<SocketAddr> = found
        .values()
        .flat_map(|r| r.addresses.iter().filter(|a| a.is_ipv4()).map(|a| SocketAddr::new(*a, r.port)))
        .collect();
    if let Some(probe) = request["probe"].as_str() {
        targets.push(probe.parse().expect("probe is ip:port"));
    }
    let health: BTreeMap<String, String> = targets.iter().map(|t| (t.to_string(), http_status_line(*t))).collect();
    let services: BTreeMap<&String, Value> = found
        .iter()
        .map(|(name, r)| {
            let addresses: Vec<String> = r.addresses.iter().map(IpAddr::to_string).collect();
            (name, json!({ "host": r.host, "port": r.port, "addresses": addresses, "txt": r.txt }))
        })
        .collect();
    json!({ "search_started": search_started, "services": services, "health": health })
}

/// The status line of `GET /health` at `addr`, or the error; bounded by short timeouts.
fn http_status_line(addr: SocketAddr) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.set_write_timeout(Some(Duration::from_secs(3)))?;
        write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.lines().next().unwrap_or_default().to_owned())
    };
    attempt().unwrap_or_else(|e| format!("error: {e}"))
}

// ---- namespaces and processes -------------------------------------------------------------------

/// A network namespace this test created; deleted when dropped.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name`, first deleting a leftover of that name (a killed run whose pid came back).
    fn create(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("ip runs");
        assert!(
            out.status.success(),
            "`ip netns add {name}` failed: {}the mDNS tests need root (CAP_SYS_ADMIN) to create network \
             namespaces; build and run the tests with FLOTILLA_SKIP_NETNS=1 to have them ignored",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    /// Deletes the namespaces of runs that were killed before their guards ran: names this module
    /// gives (`flo-a-<pid>-…`, `flo-b-<pid>-…`) whose pid is gone. Never touches other namespaces.
    fn sweep_leftovers() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let pid =
                name.strip_prefix("flo-a-").or_else(|| name.strip_prefix("flo-b-")).and_then(|r| r.split_once('-'));
            if let Some((pid, _)) = pid
                && pid.parse::<u32>().is_ok()
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }

    /// Runs `ip -n <this> <args>`, which must succeed.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").arg("-n").arg(&self.name).args(args).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command that runs `program` inside this namespace (`ip netns exec` execs it: same pid).
    pub(crate) fn exec(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Namespaces `a` (`10.213.<subnet>.1`) and `b` (`.2`) joined by a veth pair, multicast on.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) a: Netns,
    pub(crate) b: Netns,
    pub(crate) a_addr: Ipv4Addr,
}

impl Link {
    /// `tag` keeps the names of tests running in parallel in this process apart.
    pub(crate) fn create(tag: &str, subnet: u8) -> Link {
        require_program("ip", "-V", "iproute2");
        Netns::sweep_leftovers();
        let pid = std::process::id();
        let a = Netns::create(format!("flo-a-{pid}-{tag}"));
        let b = Netns::create(format!("flo-b-{pid}-{tag}"));
        let a_addr = Ipv4Addr::new(10, 213, subnet, 1);
        let b_addr = Ipv4Addr::new(10, 213, subnet, 2);
        // Both ends are created directly inside the namespaces: nothing appears on the host.
        a.ip(&["link", "add", "flo-a", "type", "veth", "peer", "name", "flo-b", "netns", &b.name]);
        for (ns, dev, addr) in [(&a, "flo-a", a_addr), (&b, "flo-b", b_addr)] {
            ns.ip(&["link", "set", "dev", "lo", "multicast", "on", "up"]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
            ns.ip(&["link", "set", "dev", dev, "multicast", "on", "up"]);
            ns.ip(&["route", "add", "224.0.0.0/4", "dev", dev]);
        }
        for (ns, dev) in [(&a, "flo-a"), (&b, "flo-b")] {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ns.ip(&["-o", "link", "show", "dev", dev]).contains("LOWER_UP") {
                assert!(Instant::now() < deadline, "{dev} in {} has no carrier after 10 s", ns.name);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Link { a, b, a_addr }
    }
}

/// A child process, killed when dropped (before the namespaces it runs in are deleted, when it is
/// declared after them).
#[derive(Debug)]
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `flotilla serve` inside `ns`: device server on every address, admin API and MQTT broker
/// on its loopback, all on port 0.
pub(crate) async fn serve_in(ns: &Netns, dir: &Path, extra: &[&str]) -> (Running, RuntimeInfo) {
    let child = ns
        .exec(&flotilla_bin())
        .args(["serve", "--http", "0.0.0.0:0", "--admin", "127.0.0.1:0", "--log", "warn"])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ip netns exec … flotilla serve starts");
    let mut server = Running(child);
    let info = wait_for_runtime_of(&mut server.0, dir).await;
    (server, info)
}

pub(crate) fn device_port(info: &RuntimeInfo) -> u16 {
    info.device_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the device URL ends with a port")
}

/// `key_id` of `GET /api/v1/keys/public`, asked through the CLI inside `ns` (where the admin API
/// listens on loopback).
fn site_key_id(ns: &Netns, dir: &Path) -> String {
    let mut cmd = ns.exec(&flotilla_bin());
    cmd.args(["keys", "export", "--format", "json", "--data-dir"]).arg(dir);
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "flotilla keys export: {}", String::from_utf8_lossy(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    key["key_id"].as_str().expect("key_id").to_owned()
}

/// Runs the browser inside `ns` and returns its report.
fn browse_from(ns: &Netns, request: &Value, limit: Duration) -> Value {
    let mut cmd = ns.exec(&std::env::current_exe().unwrap());
    cmd.args(["mdns::browse_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    cmd.env(BROWSE_ENV, request.to_string());
    let out = run_bounded(cmd, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT_PREFIX).map(|(_, json)| json))
        .unwrap_or_else(|| panic!("the browser printed no result:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// Runs `cmd` to the end; kills it and fails if it takes longer than `limit`.
pub(crate) fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = Running(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}")),
    );
    let stdout = drain(child.0.stdout.take().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{what} did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Whether the network namespace of process `pid` has a UDP socket bound to `port`.
fn has_udp_socket_on(pid: u32, port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    ["udp", "udp6"].iter().any(|table| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|local| local.ends_with(&suffix))
    })
}

// ---- discovery: Flotilla browsing what devices advertise ---------------------------------------

/// The Python with the test tools (`scripts/lib.sh ensure_py_venv`, which the test command runs
/// first and names in `FLOTILLA_PYTHON`).
fn test_python() -> std::path::PathBuf {
    let python = std::env::var_os("FLOTILLA_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python"),
        std::path::PathBuf::from,
    );
    assert!(
        python.exists(),
        "{} is missing: run `bash -c 'source scripts/lib.sh && ensure_py_venv'` (scripts/test.sh does)",
        python.display()
    );
    python
}

/// What real firmware of each family advertises (`shared/reference/protocols.md` §1.8, §2.5, §6,
/// §7.6), from B's address.
/// `flotilla devices list --json` of the engine in `ns` (data dir `data`), by MAC.
fn devices_in(ns: &Netns, data: &Path) -> BTreeMap<String, Value> {
    let mut cmd = ns.exec(&flotilla_bin());
    cmd.args(["devices", "list", "--json", "--data-dir"]).arg(data);
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "devices list: {}", String::from_utf8_lossy(&out.stderr));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter().map(|d| (d["mac"].as_str().unwrap_or_default().to_owned(), d)).collect()
}

/// The devices once `ok` holds for them (polled), failing with `what` after `limit`.
fn devices_until(
    ns: &Netns,
    data: &Path,
    what: &str,
    limit: Duration,
    ok: &dyn Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + limit;
    loop {
        let devices = devices_in(ns, data);
        if ok(&devices) {
            return devices;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}: {devices:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// python-zeroconf advertising `services` from `address` in `ns`, once it said "advertised".
fn advertiser(ns: &Netns, address: &str, ttl: u32, services: &Value) -> Running {
    let mut cmd = ns.exec(&test_python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("mdns/advertise.py"));
    cmd.arg(json!({ "address": address, "ttl": ttl, "services": services }).to_string());
    let mut running =
        Running(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    assert_eq!(tell(&mut running, None), "advertised", "zeroconf registered every service");
    running
}

/// Sends `command` (if any) to an advertiser and returns its next line.
fn tell(advertiser: &mut Running, command: Option<&str>) -> String {
    if let Some(c) = command {
        let stdin = advertiser.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{c}").unwrap();
        stdin.flush().unwrap();
    }
    let mut said = String::new();
    let stdout = advertiser.0.stdout.as_mut().unwrap();
    // One byte at a time: a buffered reader dropped here would lose what follows the line.
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        said.push(byte[0] as char);
    }
    said.trim().to_owned()
}

/// The address each device of [`device_records`] answers at in namespace B (a LAN gives every
/// device its own; the Arduino sketch answers at B's own address).
fn device_address(mac_or_name: &str) -> &'static str {
    match mac_or_name {
        "a8:03:2a:b1:00:01" | "living-room" => "10.213.3.11",
        "a8:03:2a:b1:00:02" | "ShellyPlus1PM-A8032AB10002" => "10.213.3.12",
        "a8:03:2a:b1:00:03" | "shellyswitch25-A8032AB10003" => "10.213.3.13",
        "a8:03:2a:b1:00:04" | "pump-4" => "10.213.3.14",
        _ => "10.213.3.2",
    }
}

fn device_records() -> Value {
    let mut records = device_records_at_b();
    for r in records.as_array_mut().unwrap() {
        r["address"] = json!(device_address(r["name"].as_str().unwrap()));
    }
    records
}

fn device_records_at_b() -> Value {
    json!([
        { "type": "_esphomelib._tcp.local.", "name": "living-room", "host": "living-room", "port": 6053,
          "txt": { "friendly_name": "Living room", "version": "2025.10.0", "mac": "a8032ab10001",
                   "platform": "ESP32", "board": "esp32dev", "network": "wifi" } },
        { "type": "_shelly._tcp.local.", "name": "ShellyPlus1PM-A8032AB10002", "host": "shellyplus1pm-a8032ab10002",
          "port": 80, "txt": { "gen": "2", "app": "Plus1PM", "ver": "1.1.0", "id": "shellyplus1pm-a8032ab10002" } },
        { "type": "_http._tcp.local.", "name": "shellyswitch25-A8032AB10003", "host": "shellyswitch25-A8032AB10003",
          "port": 80, "txt": { "fw_id": "20230913-112234/v1.14.0-gcb84623", "fw_version": "1.0", "app": "switch25",
                               "arch": "esp8266", "id": "shellyswitch25-A8032AB10003" } },
        { "type": "_flotilla._tcp.local.", "name": "pump-4", "host": "pump-4", "port": 80,
          "txt": { "id": "pump-4", "mac": "a8:03:2a:b1:00:04", "model": "pump", "version": "2.0.0" } },
        { "type": "_arduino._tcp.local.", "name": "esp-sketch", "host": "esp-sketch", "port": 3232,
          "txt": { "board": "esp32", "tcp_check": "no", "ssh_upload": "no", "auth_upload": "no" } },
        { "type": "_http._tcp.local.", "name": "Office printer", "host": "printer", "port": 80, "txt": { "note": "x" } }
    ])
}

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn devices_advertised_on_the_lan_are_discovered_and_go_offline_on_goodbye() {
    require_namespaces("mdns::devices_advertised_on_the_lan_are_discovered_and_go_offline_on_goodbye");
    let link = Link::create("disc", 3);
    let data = tempfile::tempdir().unwrap();
    let (_server, _info) = serve_in(&link.a, data.path(), &[]).await;
    let b_addr = Ipv4Addr::new(10, 213, 3, 2).to_string();

    // python-zeroconf in B plays the devices: an mDNS implementation that is not Flotilla's.
    for n in 11..=14 {
        link.b.ip(&["addr", "add", &format!("10.213.3.{n}/24"), "dev", "flo-b"]);
    }
    let mut advertiser = advertiser(&link.b, &b_addr, 120, &device_records());
    let until = |what: &str, ok: &dyn Fn(&BTreeMap<String, Value>) -> bool| {
        devices_until(&link.a, data.path(), what, Duration::from_secs(30), ok)
    };
    // The sketch's records carry no MAC: the engine learns it from its neighbour table (B's veth).
    let link_b = link.b.ip(&["-o", "link", "show", "dev", "flo-b"]);
    let b_mac = link_b.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
    let macs = ["a8:03:2a:b1:00:01", "a8:03:2a:b1:00:02", "a8:03:2a:b1:00:03", "a8:03:2a:b1:00:04", b_mac.as_str()];
    let devices = until("every advertised device listed", &|d| macs.iter().all(|m| d.contains_key(*m)));
    let want = [
        ("a8:03:2a:b1:00:01", "esphome", Some("2025.10.0"), "esp32dev"),
        ("a8:03:2a:b1:00:02", "shelly-gen2", Some("1.1.0"), "Plus1PM"),
        ("a8:03:2a:b1:00:03", "shelly-gen1", Some("1.14.0"), "switch25"),
        // A native device's version counts only from its own authenticated reports.
        ("a8:03:2a:b1:00:04", "native", None, "pump"),
        (b_mac.as_str(), "arduino", None, "esp32"),
    ];
    for (mac, family, version, model) in want {
        let d = &devices[mac];
        assert_eq!(family_kind(d), family, "{d}");
        assert_eq!(d["version"].as_str(), version, "{d}");
        assert_eq!(d["model"], model, "{d}");
        assert_eq!(d["ip"], device_address(mac), "{d}");
        assert_eq!(d["online"], true, "{d}");
        assert_eq!(d["sources"], json!(["mdns"]), "{d}");
    }
    assert_eq!(devices[b_mac.as_str()]["chip"], "esp32", "port 3232 is the ESP32 core's");
    assert_eq!(devices.len(), 5, "the printer is not a device: {devices:#?}");
    // "Scan now" asks the running browser again, and says so.
    let mut cmd = link.a.exec(&flotilla_bin());
    cmd.args(["devices", "scan", "--data-dir"]).arg(data.path());
    cmd.env_remove("FLOTILLA_API").env_remove("FLOTILLA_TOKEN");
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "devices scan: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("mDNS queried again"), "{said}");

    // Goodbye packets take them offline.
    let stdin = advertiser.0.stdin.as_mut().unwrap();
    writeln!(stdin, "bye").unwrap();
    stdin.flush().unwrap();
    until("every device offline after the goodbye", &|d| macs.iter().all(|m| d[*m]["online"] == false));
    let _ = advertiser.0.wait();
}

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn a_device_that_moves_stays_one_row_and_goes_offline_when_its_records_expire() {
    require_namespaces("mdns::a_device_that_moves_stays_one_row_and_goes_offline_when_its_records_expire");
    let link = Link::create("move", 6);
    let data = tempfile::tempdir().unwrap();
    let (_server, _info) = serve_in(&link.a, data.path(), &[]).await;
    let (first, second) = ("10.213.6.2", "10.213.6.9");
    // DHCP will hand the node a second address on the same network.
    link.b.ip(&["addr", "add", &format!("{second}/24"), "dev", "flo-b"]);
    let node = json!([{ "type": "_esphomelib._tcp.local.", "name": "boiler", "host": "boiler", "port": 6053,
        "txt": { "version": "2025.10.0", "mac": "a8032ab10042", "platform": "ESP32", "board": "esp32dev" } }]);
    // Records that live 8 s (real firmware says 120): their expiry is what this test waits for.
    let mut node_b = advertiser(&link.b, first, 8, &node);
    let mac = "a8:03:2a:b1:00:42";
    let until = |what: &str, ok: &dyn Fn(&Value) -> bool| {
        devices_until(&link.a, data.path(), what, Duration::from_secs(30), &|d| d.get(mac).is_some_and(ok))
    };
    until("the node listed at its first address", &|d| d["ip"] == first && d["online"] == true);

    // It moves: the same row follows it.
    assert_eq!(tell(&mut node_b, Some(&format!("move {second}"))), "moved");
    let devices = until("the node listed at its new address", &|d| d["ip"] == second);
    assert_eq!(devices.len(), 1, "one row per device, whatever its address: {devices:#?}");
    assert_eq!(devices[mac]["online"], true);

    // It loses power: no goodbye, so only the expiry of its records takes it offline.
    assert_eq!(tell(&mut node_b, Some("vanish")), "vanished");
    let gone = Instant::now();
    let d = until("the node offline once its records expired", &|d| d["online"] == false);
    let after = gone.elapsed();
    assert!(after >= Duration::from_secs(4), "offline after {after:?}: before its records could expire");
    let mdns = d[mac]["seen"].as_array().unwrap().iter().find(|s| s["source"] == "mdns").cloned().unwrap();
    assert_eq!(mdns["online"], false, "mDNS said it left: {mdns}");
    assert_eq!(devices_in(&link.a, data.path()).len(), 1);
}

#[tokio::test]
#[cfg_attr(skip_netns, ignore = "FLOTILLA_SKIP_NETNS=1: needs root to create namespaces")]
async fn what_mdns_leaves_out_is_asked_of_the_device_over_http() {
    require_namespaces("mdns::what_mdns_leaves_out_is_asked_of_the_device_over_http");
    let link = Link::create("tasm", 5);
    let data = tempfile::tempdir().unwrap();
    let (_server, _info) = serve_in(&link.a, data.path(), &[]).await;
    let b_addr = "10.213.5.2";
    let link_b = link.b.ip(&["-o", "link", "show", "dev", "flo-b"]);
    let b_mac = link_b.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
    // A Tasmota: its web API on port 80, its mDNS record saying only that it is one.
    let mut web = link.b.exec(&test_python());
    web.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("mdns/tasmota_http.py")).args([b_addr, &b_mac]);
    let mut web = Running(web.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    assert_eq!(tell(&mut web, None), "listening");
    let record = json!([{ "type": "_http._tcp.local.", "name": "kitchen-5678", "host": "kitchen-5678", "port": 80,
                          "txt": { "devicetype": "tasmota" } }]);
    let _node = advertiser(&link.b, b_addr, 120, &record);
    let devices =
        devices_until(&link.a, data.path(), "the Tasmota enriched by its own answer", Duration::from_secs(30), &|d| {
            d.get(b_mac.as_str()).is_some_and(|t| t["version"] == "14.3.0")
        });
    let t = &devices[b_mac.as_str()];
    assert_eq!(
        (t["family"].as_str(), t["device_id"].as_str(), t["chip"].as_str()),
        (Some("tasmota"), Some("kitchen"), Some("esp8266")),
        "{t}"
    );
    assert_eq!(t["ip"], b_addr, "{t}");
    assert_eq!(t["sources"], json!(["mdns", "probe"]), "mDNS found it, the probe said what it runs: {t}");
    assert_eq!(devices.len(), 1, "one row: {devices:#?}");
}
