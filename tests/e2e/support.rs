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
        let child = Command::new(flotilla_bin())
            .args(["serve", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--no-mdns", "--log", "warn"])
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
