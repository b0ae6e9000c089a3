//! A load generator for the device API's check-in (`POST /api/v1/check`): the engine of
//! `flotilla-load` and of `bench/checkin.sh`.
//!
//! A run has two phases. It first registers a fleet by checking every device in once (distinct
//! locally administered MACs from the seed, ids `<prefix>-<n>`; the check-in enrols each device,
//! whose secret then goes on its every check-in: authentication is on, as in the field). Then, for a fixed time, each of
//! `connections` keep-alive connections sends the check-in of a random registered device as soon
//! as the previous answer is in — a closed loop: latency is the time from sending a request to
//! having its whole answer, throughput is what the engine sustains at that concurrency.
//!
//! It shares the machine with the engine it measures, so it must stay cheap: request bodies are
//! serialised once, before measuring; answers are counted by status and dropped, never parsed;
//! one HTTP/1.1 connection per worker, no pool. It is bounded: device count, connections and
//! duration have ceilings, every request has a timeout, and a run stops by itself.
//!
//! # Layout
//! - this file: [`LoadConfig`] (checked by `LoadConfig::validate`) and [`run`].
//! - `conn`: one keep-alive HTTP/1.1 connection (hyper's client connection, without a pool).
//! - [`report`]: the [`Report`], latency percentiles from the histogram, `/proc` readings.

mod conn;
pub mod report;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::firmware::Chip;
use flotilla_proto::native::{CheckRequest, CheckResponse};
use hdrhistogram::Histogram;
use hyper::Uri;
use hyper::header::HeaderValue;
use reqwest::Url;
use tokio::time::Instant;

use self::conn::{Conn, Target};
pub use self::report::Report;
use self::report::{Latency, Measured, Registration, Sample};
use crate::device::pull::api_url;
use crate::error::{Result, SimError};
use crate::identity::{DeviceKind, Identity, MAX_DEVICES, Prng};

/// Most concurrent connections a run may open.
pub const MAX_CONNECTIONS: usize = 4096;
/// Longest measured phase.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Tries per device while registering (a refused or dropped check-in is tried again).
const REGISTER_TRIES: u32 = 3;
/// Pause before reconnecting after a connection failed, so a dead engine is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What to load and how hard. `LoadConfig::default()` is the benchmark's shape: 10,000 devices,
/// 64 connections, 10 s.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the engine's device server, `http://127.0.0.1:8070`.
    pub url: String,
    /// Devices registered, then checked in at random.
    pub devices: usize,
    /// Concurrent keep-alive connections (one request in flight on each).
    pub connections: usize,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Pause between registering and measuring, so the engine's write-behind of the new devices
    /// is not charged to the steady state.
    pub settle: Duration,
    /// Longest wait for one answer; a request past it counts as failed.
    pub request_timeout: Duration,
    /// Seeds the MACs and the choice of devices.
    pub seed: u64,
    /// Device ids are `<id_prefix>-<n>`.
    pub id_prefix: String,
    pub model: String,
    pub chip: Chip,
    /// Version every device reports.
    pub version: String,
    /// The engine's process, for its CPU time and resident memory in the report.
    pub engine_pid: Option<u32>,
    /// Where to write the registered devices once enrolled, one per line:
    /// `Bearer <secret>` TAB `<check-in body>` — for an independent load tool (wrk) to replay
    /// the same check-ins against the same engine.
    pub save_devices: Option<std::path::PathBuf>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            url: "http://127.0.0.1:8070".into(),
            devices: 10_000,
            connections: 64,
            duration: Duration::from_secs(10),
            settle: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            seed: 1,
            id_prefix: "load".into(),
            model: "load".into(),
            chip: Chip::Esp32,
            version: "1.0.0".into(),
            engine_pid: None,
            save_devices: None,
        }
    }
}

/// The parts of a [`LoadConfig`] that validation had to parse.
#[derive(Debug)]
struct Validated {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: HeaderValue,
    path: Uri,
}

impl LoadConfig {
    /// Checks everything that can be checked before a socket is opened.
    fn validate(&self) -> Result<Validated> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.devices == 0 || self.devices > MAX_DEVICES {
            return bad(format!("devices must be 1-{MAX_DEVICES}, got {}", self.devices));
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!("connections must be 1-{MAX_CONNECTIONS}, got {}", self.connections));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!("the duration must be more than zero and at most an hour, got {:?}", self.duration));
        }
        if self.settle > Duration::from_secs(600) {
            return bad(format!("the settle pause must be at most 10 minutes, got {:?}", self.settle));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(60) {
            return bad(format!(
                "the request timeout must be more than zero and at most 60 s, got {:?}",
                self.request_timeout
            ));
        }
        if self.id_prefix.trim().is_empty() || self.model.trim().is_empty() || self.version.trim().is_empty() {
            return bad("id prefix, model and version must not be empty".into());
        }
        let url = Url::parse(&self.url).map_err(|e| SimError::Config(format!("`{}` is not a URL: {e}", self.url)))?;
        if url.scheme() != "http" {
            return bad(format!("`{}` must be an http:// URL (the device server speaks plain HTTP)", self.url));
        }
        let host = url.host_str().filter(|h| !h.is_empty());
        let (Some(host), Some(port)) = (host, url.port_or_known_default()) else {
            return bad(format!("`{}` has no host", self.url));
        };
        let authority = HeaderValue::from_str(&format!("{host}:{port}"))
            .map_err(|e| SimError::Config(format!("`{}` has an unusable host: {e}", self.url)))?;
        let path = api_url(&url, "api/v1/check")
            .and_then(|u| u.path().parse::<Uri>().ok())
            .ok_or_else(|| SimError::Config(format!("`{}` cannot take the check-in path", self.url)))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(Validated { host, port, authority, path })
    }

    /// The check-in body of device `n`, serialised once.
    fn body(&self, n: usize) -> Result<Bytes> {
        let ident = Identity::derive(self.seed, &self.id_prefix, 0, DeviceKind::NativePull, n, n)
            .ok_or_else(|| SimError::Config(format!("device {n} has no MAC left")))?;
        let request = CheckRequest {
            device_id: format!("{}-{n}", self.id_prefix),
            mac: ident.mac,
            model: Some(self.model.clone()),
            chip: Some(self.chip.as_str().to_owned()),
            version: self.version.clone(),
            labels: None,
            secure_version: None,
            interval_secs: None,
            tls: None,
        };
        serde_json::to_vec(&request).map(Bytes::from).map_err(|e| SimError::Config(e.to_string()))
    }
}

/// Registers the fleet, measures, and reports. Fails when the engine cannot be reached or a
/// device could not be registered.
pub async fn run(config: LoadConfig) -> Result<Report> {
    let v = config.validate()?;
    let addr: SocketAddr = tokio::net::lookup_host((v.host.as_str(), v.port))
        .await
        .map_err(|e| SimError::io(format!("cannot resolve {}", v.host), e))?
        .next()
        .ok_or_else(|| SimError::Config(format!("{} has no address", v.host)))?;
    let target = Arc::new(Target { addr, host: v.authority, path: v.path });
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..config.devices).map(|n| config.body(n)).collect::<Result<_>>()?);
    // Each device's `Authorization: Bearer <secret>`, from its enrolment in phase 1.
    let auths: Arc<Vec<OnceLock<HeaderValue>>> = Arc::new((0..config.devices).map(|_| OnceLock::new()).collect());

    let mut conns = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let c = Conn::open(&target)
            .await
            .map_err(|e| SimError::Engine(format!("cannot connect to the device server at {addr}: {e}")))?;
        conns.push(c);
    }

    // Phase 1: every device checks in once.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|c| {
            let (target, bodies, next) = (Arc::clone(&target), Arc::clone(&bodies), Arc::clone(&next));
            tokio::spawn(register(c, target, bodies, Arc::clone(&auths), next, config.request_timeout))
        })
        .collect();
    let mut conns = Vec::with_capacity(config.connections);
    let mut reg_errors = 0u64;
    for w in workers {
        let (c, errors) = w.await.map_err(|e| SimError::Engine(format!("a registering worker died: {e}")))?;
        conns.extend(c);
        reg_errors += errors;
    }
    let registration = Registration { seconds: started.elapsed().as_secs_f64(), errors: reg_errors };
    if reg_errors > 0 {
        return Err(SimError::Engine(format!(
            "{reg_errors} of {} devices could not be registered (check-in not answered 200 after {REGISTER_TRIES} tries)",
            config.devices
        )));
    }
    if let Some(path) = &config.save_devices {
        let mut out = String::with_capacity(config.devices * 200);
        for (body, auth) in bodies.iter().zip(auths.iter()) {
            let auth = auth.get().and_then(|a| a.to_str().ok()).unwrap_or_default();
            out.push_str(auth);
            out.push('\t');
            out.push_str(&String::from_utf8_lossy(body));
            out.push('\n');
        }
        std::fs::write(path, out).map_err(|e| SimError::io(format!("cannot write {}", path.display()), e))?;
    }
    tokio::time::sleep(config.settle).await;

    // Phase 2: random check-ins for the duration.
    let me = std::process::id();
    let engine_before = config.engine_pid.and_then(Sample::read);
    let me_before = Sample::read(me);
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut workers = Vec::with_capacity(config.connections);
    for i in 0..config.connections {
        let conn = if conns.is_empty() { None } else { Some(conns.swap_remove(0)) };
        let (target, bodies, auths) = (Arc::clone(&target), Arc::clone(&bodies), Arc::clone(&auths));
        let seed = config.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let tally = Tally::new()?;
        let timeout = config.request_timeout;
        workers.push(tokio::spawn(measure(tally, conn, target, (bodies, auths), seed, deadline, timeout)));
    }
    let mut total = Tally::new()?;
    for w in workers {
        let t = w.await.map_err(|e| SimError::Engine(format!("a measuring worker died: {e}")))?;
        total.add(&t)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let engine = config.engine_pid.zip(engine_before).and_then(|(pid, b)| Sample::read(pid).map(|e| b.until(pid, &e)));
    let generator = me_before.and_then(|b| Sample::read(me).map(|e| b.until(me, &e)));

    let errors = total.non_200 + total.failed;
    let measured = Measured {
        seconds,
        requests: total.requests,
        errors,
        non_200: total.non_200,
        failed: total.failed,
        throughput: (total.requests - errors) as f64 / seconds.max(1e-9),
        latency_ms: Latency::from_micros(&total.latency),
    };
    Ok(Report {
        url: config.url,
        devices: config.devices,
        connections: config.connections,
        registration,
        measured,
        engine,
        generator,
    })
}

/// A worker of phase 1: takes device numbers until none are left. Returns its connection (if
/// still open) and how many devices it could not register.
async fn register(
    conn: Conn,
    target: Arc<Target>,
    bodies: Arc<Vec<Bytes>>,
    auths: Arc<Vec<OnceLock<HeaderValue>>>,
    next: Arc<AtomicUsize>,
    timeout: Duration,
) -> (Option<Conn>, u64) {
    let mut conn = Some(conn);
    let mut errors = 0;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = bodies.get(n) else { break };
        let mut ok = false;
        for _ in 0..REGISTER_TRIES {
            if conn.is_none() {
                conn = Conn::open(&target).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                let auth = auths.get(n).and_then(OnceLock::get);
                match tokio::time::timeout(timeout, c.post_json(&target, body.clone(), auth)).await {
                    Ok(Ok((200, answer))) => {
                        // The first check-in enrols the device: its secret goes on every later one.
                        if let Ok(CheckResponse::NoUpdate { credential: Some(cred), .. }) =
                            serde_json::from_slice::<CheckResponse>(&answer)
                            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", cred.secret))
                            && let Some(slot) = auths.get(n)
                        {
                            let _ = slot.set(v);
                        }
                        ok = true;
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => conn = None,
                }
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
        if !ok {
            errors += 1;
        }
    }
    (conn, errors)
}

/// What one measuring worker counted.
#[derive(Debug)]
struct Tally {
    requests: u64,
    non_200: u64,
    failed: u64,
    /// Answered requests, microseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Tally> {
        // 1 µs to 60 s at three significant digits: ~200 KiB per worker.
        let latency = Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| SimError::Config(format!("latency histogram: {e}")))?;
        Ok(Tally { requests: 0, non_200: 0, failed: 0, latency })
    }

    fn add(&mut self, other: &Tally) -> Result<()> {
        self.requests += other.requests;
        self.non_200 += other.non_200;
        self.failed += other.failed;
        self.latency.add(&other.latency).map_err(|e| SimError::Config(format!("latency histogram: {e}")))
    }
}

/// A worker of phase 2: check-ins of random devices, one after another, until the deadline.
async fn measure(
    mut tally: Tally,
    conn: Option<Conn>,
    target: Arc<Target>,
    (bodies, auths): (Arc<Vec<Bytes>>, Arc<Vec<OnceLock<HeaderValue>>>),
    seed: u64,
    deadline: Instant,
    timeout: Duration,
) -> Tally {
    let mut rng = Prng::new(seed);
    let mut conn = conn;
    while Instant::now() < deadline {
        let Some(c) = conn.as_mut() else {
            conn = Conn::open(&target).await.ok();
            if conn.is_none() {
                tally.requests += 1;
                tally.failed += 1;
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
            continue;
        };
        let n = rng.below(bodies.len());
        let body = bodies[n].clone();
        let auth = auths.get(n).and_then(OnceLock::get);
        let sent = Instant::now();
        let answer = tokio::time::timeout(timeout, c.post_json(&target, body, auth)).await;
        tally.requests += 1;
        match answer {
            Ok(Ok((status, _))) => {
                tally.latency.saturating_record(sent.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
                if status != 200 {
                    tally.non_200 += 1;
                }
            }
            Ok(Err(_)) | Err(_) => {
                tally.failed += 1;
                conn = None;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validation_names_the_setting_at_fault() {
        let ok = LoadConfig::default();
        let v = ok.validate().unwrap();
        assert_eq!((v.host.as_str(), v.port, v.path.path()), ("127.0.0.1", 8070, "/api/v1/check"));
        assert_eq!(v.authority, "127.0.0.1:8070");
        let err = |c: LoadConfig| c.validate().unwrap_err().to_string();
        assert!(err(LoadConfig { devices: 0, ..ok.clone() }).contains("devices"));
        assert!(err(LoadConfig { devices: MAX_DEVICES + 1, ..ok.clone() }).contains("devices"));
        assert!(err(LoadConfig { connections: 0, ..ok.clone() }).contains("connections"));
        assert!(err(LoadConfig { duration: Duration::ZERO, ..ok.clone() }).contains("duration"));
        assert!(err(LoadConfig { duration: Duration::from_secs(3601), ..ok.clone() }).contains("duration"));
        assert!(err(LoadConfig { url: "https://127.0.0.1:1".into(), ..ok.clone() }).contains("http://"));
        assert!(err(LoadConfig { url: "nonsense".into(), ..ok.clone() }).contains("not a URL"));
        let based = LoadConfig { url: "http://[::1]:9000/flotilla/".into(), ..ok }.validate().unwrap();
        assert_eq!((based.host.as_str(), based.path.path()), ("::1", "/flotilla/api/v1/check"));
    }

    #[test]
    fn every_device_has_its_own_mac_and_id() {
        let c = LoadConfig { devices: 500, ..LoadConfig::default() };
        let requests: Vec<CheckRequest> =
            (0..c.devices).map(|n| serde_json::from_slice(&c.body(n).unwrap()).unwrap()).collect();
        let macs: std::collections::HashSet<_> = requests.iter().map(|r| r.mac.as_str()).collect();
        assert_eq!(macs.len(), 500);
        assert!(requests.iter().all(|r| r.mac.starts_with("02:") && r.version == "1.0.0"));
        assert_eq!(requests[7].device_id, "load-7");
        assert_eq!(requests[7].chip.as_deref(), Some("esp32"));
    }
}
