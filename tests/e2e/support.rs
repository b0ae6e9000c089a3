//! Test support: build and start `flotilla serve` on port 0 in a temp data dir, talk to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flotilla_imagegen::{Esp32Chip, Esp32Image};
use flotilla_proto::RuntimeInfo;

/// The `flotilla` binary, built once per test run so it is never stale.
pub fn flotilla_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "flotilla-cli", "--bin", "flotilla"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the flotilla binary failed");
        // target/<profile>/deps/e2e-… → target/<profile>/flotilla
        let exe = std::env::current_exe().expect("test exe path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let bin = profile_dir.join("flotilla");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// Device secrets handed out at enrolment, by (data dir, MAC): the devices' flash.
fn device_keys() -> &'static std::sync::Mutex<std::collections::HashMap<(PathBuf, String), String>> {
    static KEYS: OnceLock<std::sync::Mutex<std::collections::HashMap<(PathBuf, String), String>>> = OnceLock::new();
    KEYS.get_or_init(Default::default)
}

/// libfaketime, as Debian installs it (the package `faketime`; `scripts/test.sh` installs it).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The offset of a server's wall clock from this machine's, which libfaketime reads from a file
/// on every clock call ([`Server::start_with_fake_clock`]).
pub struct FakeClock {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl FakeClock {
    fn new() -> FakeClock {
        assert!(
            Path::new(FAKETIME).exists(),
            "this test runs the engine under libfaketime: install the Debian package faketime (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faketime");
        let clock = FakeClock { dir, file };
        clock.set(0);
        clock
    }

    /// The server's clock is `secs` ahead of this machine's from now on (replaced at once: a
    /// clock call never reads a half-written offset).
    pub fn set(&self, secs: i64) {
        let next = self.dir.path().join("faketime.next");
        std::fs::write(&next, format!("{secs:+}")).unwrap();
        std::fs::rename(&next, &self.file).unwrap();
    }
}

/// A running `flotilla serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub info: RuntimeInfo,
    pub token: String,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a server in a fresh data dir.
    pub async fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts a server on an existing data dir (a restart).
    pub async fn start_in(dir: tempfile::TempDir) -> Server {
        Server::start_on(dir, 0, 0).await
    }

    /// Starts a server with given device-server and MQTT ports (0: any), so a restart keeps the
    /// addresses devices know.
    pub async fn start_on(dir: tempfile::TempDir, http_port: u16, mqtt_port: u16) -> Server {
        let http = format!("127.0.0.1:{http_port}");
        let mqtt = format!("127.0.0.1:{mqtt_port}");
        Server::spawn(dir, &["--http", &http, "--mqtt-listen", &mqtt]).await
    }

    /// Starts a server in a fresh data dir whose wall clock the test moves ([`FakeClock`]); its
    /// timers stay on the real monotonic clock.
    pub async fn start_with_fake_clock() -> (Server, FakeClock) {
        let clock = FakeClock::new();
        let args = ["--http", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"];
        let server = Server::spawn_with(tempfile::tempdir().unwrap(), &args, |cmd| {
            cmd.env("LD_PRELOAD", FAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", &clock.file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        })
        .await;
        (server, clock)
    }

    /// Runs `flotilla serve` on `dir` (admin on a free loopback port, no mDNS) with `args`.
    async fn spawn(dir: tempfile::TempDir, args: &[&str]) -> Server {
        Server::spawn_with(dir, args, |_| {}).await
    }

    /// [`Server::spawn`], with `setup` changing the command first (its environment).
    async fn spawn_with(dir: tempfile::TempDir, args: &[&str], setup: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(flotilla_bin());
        setup(&mut cmd);
        let child = cmd
            .args(["serve", "--admin", "127.0.0.1:0", "--no-mdns", "--log", "warn"])
            .args(["--https", "127.0.0.1:0", "--mqtt-tls-listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("FLOTILLA_API")
            .env_remove("FLOTILLA_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("flotilla serve starts");
        let info = wait_for_runtime(dir.path(), child.id()).await;
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap().trim().to_owned();
        Server { child, dir, info, token, http: reqwest::Client::new() }
    }

    /// A `flotilla serve` the test started its own way (e.g. with an environment of its own) on
    /// `dir`, once it listens.
    pub async fn adopt(child: Child, dir: tempfile::TempDir) -> Server {
        let info = wait_for_runtime(dir.path(), child.id()).await;
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap().trim().to_owned();
        Server { child, dir, info, token, http: reqwest::Client::new() }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.info.admin_url)
    }

    pub fn device(&self, path: &str) -> String {
        format!("{}{path}", self.info.device_url)
    }

    /// An authorised admin request.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.admin(path)).bearer_auth(&self.token)
    }

    /// An authorised `GET` of `path`, as JSON (whatever the status).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.api(reqwest::Method::GET, path).send().await.unwrap().json().await.unwrap()
    }

    /// An authorised `POST` of `body` to `path`, answered as JSON (whatever the status).
    pub async fn post_json<T: serde::de::DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> T {
        self.api(reqwest::Method::POST, path).json(body).send().await.unwrap().json().await.unwrap()
    }

    /// The native check-in as Flotilla's device client does it (`docs/device-api.md`): the first
    /// one enrols the device and hands out its secret, kept here per data dir and MAC; every later
    /// request of the device carries it. An enrolment answer is followed at once by an
    /// authenticated check-in, whose status and answer are returned.
    pub async fn device_check_in(&self, body: &serde_json::Value) -> (reqwest::StatusCode, serde_json::Value) {
        let mac = body["mac"].as_str().unwrap_or_default().to_owned();
        for _ in 0..2 {
            let resp = self.device_post("/api/v1/check", &mac).json(body).send().await.unwrap();
            let status = resp.status();
            let answer: serde_json::Value = resp.json().await.unwrap_or_default();
            match answer["credential"]["secret"].as_str() {
                Some(secret) if status == reqwest::StatusCode::OK => {
                    device_keys().lock().unwrap().insert(self.key_of(&mac), secret.to_owned());
                }
                _ => return (status, answer),
            }
        }
        panic!("device {mac} enrolled twice in a row");
    }

    /// A `POST` to the device server as the device `mac` (with its secret once it enrolled).
    pub fn device_post(&self, path: &str, mac: &str) -> reqwest::RequestBuilder {
        let req = self.http.post(self.device(path));
        match self.device_secret(mac) {
            Some(secret) => req.bearer_auth(secret),
            None => req,
        }
    }

    /// A `GET` of the device server as the device `mac` (downloads: with its secret).
    pub fn device_get(&self, url: &str, mac: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(url);
        match self.device_secret(mac) {
            Some(secret) => req.bearer_auth(secret),
            None => req,
        }
    }

    /// The secret the device `mac` received when it enrolled through [`Server::device_check_in`].
    pub fn device_secret(&self, mac: &str) -> Option<String> {
        device_keys().lock().unwrap().get(&self.key_of(mac)).cloned()
    }

    fn key_of(&self, mac: &str) -> (PathBuf, String) {
        (self.dir.path().to_owned(), mac.to_ascii_lowercase().replace('-', ":"))
    }

    /// Runs a CLI client command against this server (via its data dir).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(flotilla_bin())
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("FLOTILLA_API")
            .env_remove("FLOTILLA_TOKEN")
            .output()
            .expect("flotilla runs")
    }

    /// Imports `bytes` through the admin API, returning the JSON answer and status.
    pub async fn upload(&self, bytes: Vec<u8>, fields: &[(&str, &str)]) -> (reqwest::StatusCode, serde_json::Value) {
        let mut form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name("fw.bin"));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let resp = self.api(reqwest::Method::POST, "/api/v1/firmware").multipart(form).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status and stdout.
    pub fn stop(mut self) -> (std::process::ExitStatus, String, tempfile::TempDir) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "flotilla serve did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut so) = self.child.stdout.take() {
            use std::io::Read;
            so.read_to_string(&mut out).unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, out, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `runtime.json` names the given pid (the server is listening by then).
async fn wait_for_runtime(dir: &Path, pid: u32) -> RuntimeInfo {
    let path = dir.join("runtime.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(info) = serde_json::from_str::<RuntimeInfo>(&text)
            && info.pid == pid
        {
            return info;
        }
        assert!(Instant::now() < deadline, "flotilla serve did not write {} within 30 s", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A valid ESP32 image of `version`, `size` bytes, project `demo`.
pub fn image(version: &str, size: usize) -> Vec<u8> {
    Esp32Image::new().chip(Esp32Chip::Esp32).version(version).project("demo").size(size).seed(size as u64).build()
}

/// Writes `bytes` into `dir` as `name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Files in the server's firmware store.
pub fn stored_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("firmware"))
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

// ---- namespaces (tests that need root) -----------------------------------------------------------

/// Fails the calling test unless it can create namespaces (network, mount): those need root,
/// which CI has. Such tests carry `#[cfg_attr(skip_netns, ignore = …)]`: built with
/// `FLOTILLA_SKIP_NETNS=1` they are reported as ignored by the test runner (see `tests/build.rs`),
/// never as passed. There is no way back from here but a panic, so a test can never turn green
/// having checked nothing.
pub fn require_namespaces(test: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
    assert!(
        euid == Some("0"),
        "{test} needs root to create namespaces (CI runs as root) but runs as uid {}; run it as root, \
         or build and run the tests with FLOTILLA_SKIP_NETNS=1 to have it ignored",
        euid.unwrap_or("?")
    );
}

/// Panics with the Debian package to install when `program` cannot be run.
pub fn require_program(program: &str, version_arg: &str, package: &str) {
    if let Err(e) = Command::new(program).arg(version_arg).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        panic!("this test runs `{program}`, which cannot be started ({e}); install the Debian package {package}");
    }
}

/// Waits until `<dir>/runtime.json` names `child` (it is listening by then), failing at once if it
/// exits first. For tests that start `flotilla serve` their own way (inside a namespace); `dir` is
/// where this process sees the data dir.
pub async fn wait_for_runtime_of(child: &mut Child, dir: &Path) -> RuntimeInfo {
    let path = dir.join("runtime.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(info) = serde_json::from_str::<RuntimeInfo>(&text)
            && info.pid == child.id()
        {
            return info;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("flotilla serve exited ({status}) before writing {}; its stderr is above", path.display());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flotilla serve did not write {} within 30 s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port that was free a moment ago on 127.0.0.1 (for a server that must keep its port across a
/// restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// `mqtt://user:pass@127.0.0.1:port` of the embedded broker.
    pub fn mqtt_url(&self) -> String {
        let creds: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.data_dir().join("mqtt-credentials")).unwrap()).unwrap();
        let url = self.info.mqtt_url.clone().expect("MQTT is on");
        let port = url.rsplit(':').next().unwrap();
        format!(
            "mqtt://{}:{}@127.0.0.1:{port}",
            creds["username"].as_str().unwrap(),
            creds["password"].as_str().unwrap()
        )
    }
}

/// Debian's mosquitto on a free loopback port (anonymous), stopped when dropped.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists());
        let bin = bin.expect("mosquitto is not installed: apt-get install mosquitto (scripts/test.sh does)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { port, child, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server in a fresh data dir with extra `flotilla serve` arguments.
    pub async fn start_with_args(args: &[&str]) -> Server {
        let mut all = vec!["--http", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Server::spawn(tempfile::tempdir().unwrap(), &all).await
    }

    /// Starts a server that uses an external MQTT broker.
    pub async fn start_with_mqtt(url: &str) -> Server {
        Server::spawn(tempfile::tempdir().unwrap(), &["--http", "127.0.0.1:0", "--mqtt", url]).await
    }
}

/// The next event of `kind` on a live stream (`GET /api/v1/events/stream`), reading more of it into
/// `buf` as needed; fails after `within`.
pub async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    kind: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut ev = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev = Some(v.trim().to_owned());
                }
                if let Some(v) = line.strip_prefix("data:") {
                    data = Some(v.trim().to_owned());
                }
            }
            if ev.as_deref() == Some(kind) {
                return serde_json::from_str(&data.unwrap()).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {within:?}"))
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A device's family with its generation, as tests name them: `shelly-gen1`, `shelly-gen3`,
/// `shelly` (generation unknown), `tasmota`.
pub fn family_kind(d: &serde_json::Value) -> String {
    let family = d["family"].as_str().unwrap_or("?");
    match d["generation"].as_u64() {
        Some(g) => format!("{family}-gen{g}"),
        None => family.to_owned(),
    }
}
