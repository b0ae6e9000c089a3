//! HTTP probes: ask an address what it is, with the endpoints vendor firmware answers without a
//! session — Shelly's `GET /shelly` (both generations, never behind auth) and Tasmota's
//! `GET /cm?cmnd=Status%200` — and classify the answer ([`classify::shelly_info`],
//! [`classify::tasmota_status`]).
//!
//! A LAN device may hang, close mid-answer, answer HTML or a gigabyte of JSON: every request
//! has a connect and a total timeout, bodies are read up to [`MAX_BODY`], and whatever goes wrong
//! ends as one [`Outcome`] for that address, never as an error of the engine. Probes of one
//! address never overlap ([`Prober`] keeps one in flight per address) and the whole prober runs
//! at most [`Prober::CONCURRENCY`] at once.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::Family;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::classify::{self, Observation};

/// Largest answer read from a device.
pub const MAX_BODY: usize = 64 * 1024;
/// Connecting to a device.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// What probing an address found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// A device of a family we know.
    #[serde(rename = "found")]
    Found {
        #[serde(skip)]
        observation: Box<Observation>,
        family: Family,
        /// Its API beyond identification wants a password (Shelly `auth`, Tasmota 401).
        auth_required: bool,
    },
    /// It wants a password even to say what it is (Tasmota with a web password).
    AuthenticationRequired { family: Family },
    /// It answered, but like no device we know.
    Unrecognised { detail: String },
    /// Nothing answered (refused, timed out, closed).
    Unreachable { detail: String },
    /// A probe of this address is already running.
    Busy,
}

/// Probes addresses; cheap to clone.
#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
    limit: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<SocketAddr>>>,
}

/// Removes an address from the in-flight set when its probe ends, however it ends.
struct InFlight(Arc<Mutex<HashSet<SocketAddr>>>, SocketAddr);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&self.1);
        }
    }
}

enum Answer {
    Body(u16, Vec<u8>),
    Failed(String),
}

impl Prober {
    /// Probes running at once, across all addresses.
    pub const CONCURRENCY: usize = 32;

    pub fn new() -> crate::error::Result<Prober> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::error::CoreError::io("HTTP probe client", std::io::Error::other(e.to_string())))?;
        Ok(Prober {
            http,
            limit: Arc::new(Semaphore::new(Self::CONCURRENCY)),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Probes `addr` (port 80 for both families by default); `hint` tries that family first.
    pub async fn probe(&self, addr: SocketAddr, hint: Option<Family>) -> Outcome {
        let guard = {
            let Ok(mut set) = self.in_flight.lock() else { return Outcome::Busy };
            if !set.insert(addr) {
                return Outcome::Busy;
            }
            InFlight(Arc::clone(&self.in_flight), addr)
        };
        let Ok(_permit) = self.limit.acquire().await else { return Outcome::Busy };
        let tasmota_first = hint == Some(Family::Tasmota);
        let mut last = Outcome::Unreachable { detail: "no answer".into() };
        for tasmota in if tasmota_first { [true, false] } else { [false, true] } {
            let outcome = if tasmota { self.tasmota(addr).await } else { self.shelly(addr).await };
            match outcome {
                Outcome::Unreachable { .. } => return outcome,
                Outcome::Unrecognised { .. } => last = outcome,
                found => return found,
            }
        }
        drop(guard);
        last
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Answer {
        let url = match addr.ip() {
            IpAddr::V4(ip) => format!("http://{ip}:{}{path}", addr.port()),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}{path}", addr.port()),
        };
        let mut resp = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => return Answer::Failed(describe(&e)),
        };
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Answer::Body(status, b"\0too large".to_vec());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Answer::Body(status, body),
                Err(e) => return Answer::Failed(describe(&e)),
            }
        }
    }

    async fn shelly(&self, addr: SocketAddr) -> Outcome {
        match self.get(addr, "/shelly").await {
            Answer::Failed(detail) => Outcome::Unreachable { detail },
            Answer::Body(200, body) => match classify::shelly_info(&body, Some(addr.ip())) {
                Some((o, auth)) => found(o, auth),
                None => unrecognised("/shelly", 200, &body),
            },
            Answer::Body(status, body) => unrecognised("/shelly", status, &body),
        }
    }

    async fn tasmota(&self, addr: SocketAddr) -> Outcome {
        match self.get(addr, "/cm?cmnd=Status%200").await {
            Answer::Failed(detail) => Outcome::Unreachable { detail },
            Answer::Body(200, body) => match classify::tasmota_status(&body) {
                Some(o) => found(o, false),
                None if is_tasmota_auth(&body) => Outcome::AuthenticationRequired { family: Family::Tasmota },
                None => unrecognised("/cm", 200, &body),
            },
            // Tasmota answers 401 with its WARNING when a web password is set (older releases: 200).
            Answer::Body(401, body) if is_tasmota_auth(&body) => {
                Outcome::AuthenticationRequired { family: Family::Tasmota }
            }
            Answer::Body(status, body) => unrecognised("/cm", status, &body),
        }
    }
}

fn found(mut o: Observation, auth_required: bool) -> Outcome {
    o.key = o.mac.as_deref().map_or(o.key.clone(), |m| format!("probe:{m}"));
    let family = o.family.unwrap_or(Family::Unknown);
    Outcome::Found { observation: Box::new(o), family, auth_required }
}

fn is_tasmota_auth(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("WARNING").and_then(|w| w.as_str().map(|w| w.starts_with("Need user="))))
        .unwrap_or(false)
}

fn unrecognised(path: &str, status: u16, body: &[u8]) -> Outcome {
    let kind = if body.starts_with(b"\0too large") {
        format!("more than {} KiB", MAX_BODY / 1024)
    } else if body.trim_ascii_start().starts_with(b"<") {
        "HTML".to_owned()
    } else if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        "JSON of another shape".to_owned()
    } else {
        format!("{} bytes that are not JSON", body.len())
    };
    Outcome::Unrecognised { detail: format!("{path} answered {status} with {kind}") }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_body() || e.is_decode() || e.is_request() {
        "the connection broke off".into()
    } else {
        "no valid HTTP answer".into()
    }
}
