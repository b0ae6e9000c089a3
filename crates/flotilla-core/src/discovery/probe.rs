//! HTTP probes: ask an address what it is, with the endpoints vendor firmware answers without a
//! session — Shelly's `GET /shelly` (both generations, never behind auth; a Gen1's `/settings`
//! after it, with its credential when it has a password), Tasmota's `GET /cm?cmnd=Status%200`
//! and the first event of ESPHome's `web_server` stream `GET /events` — and classify the answer
//! ([`classify::shelly_info`], [`classify::shelly_settings`], [`classify::tasmota_status`],
//! [`classify::esphome_ping`]).
//!
//! A LAN device may hang, close mid-answer, answer HTML or a gigabyte of JSON: every request
//! has a connect and a total timeout, bodies are read up to [`MAX_BODY`], and whatever goes wrong
//! ends as one [`Outcome`] for that address, never as an error of the engine. Probes of one
//! address never overlap ([`Prober`] keeps one in flight per address) and the whole prober runs
//! at most [`Prober::CONCURRENCY`] at once.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_proto::Family;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::classify::{self, Observation};
use crate::credentials::Secret;

/// Largest answer read from a device.
pub const MAX_BODY: usize = 64 * 1024;
/// Connecting to a device.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest part of an event stream read while waiting for its first event (ESPHome's greeting
/// is well under 1 KiB).
pub const MAX_EVENT: usize = 4 * 1024;

/// The login to offer a device of `family` (HTTP Basic): the device's own when its MAC is
/// known (the argument, else whatever the caller knows of the address), else its family's.
pub type LoginFor<'a> = &'a (dyn Fn(Option<&str>, Family) -> Option<Secret> + Sync);

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
    /// It refused the credential Flotilla has for it (Tasmota; a Shelly Gen1's `/settings`).
    AuthenticationFailed { family: Family },
    /// It answered, but like no device we know.
    Unrecognised { detail: String },
    /// Nothing answered (refused, timed out, closed).
    Unreachable { detail: String },
    /// A probe of this address is already running.
    Busy,
}

/// First wait before an address that did not answer an automatic probe is probed again; it
/// doubles with each failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Probes addresses; cheap to clone.
#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
    limit: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<SocketAddr>>>,
    /// Automatic probes: per address, when it may be probed again and the wait after the next
    /// failure.
    backoff: Arc<Mutex<HashMap<IpAddr, (Instant, Duration)>>>,
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
            backoff: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// An automatic probe (to confirm and enrich what mDNS or MQTT said): `None` while the
    /// address is backed off after failures (30 s, doubling to an hour); a success clears it.
    /// Probes people ask for ([`Prober::probe`]) are never held back.
    pub async fn probe_auto(&self, addr: SocketAddr, hint: Option<Family>, login: LoginFor<'_>) -> Option<Outcome> {
        if !self.may_probe(addr.ip(), Instant::now()) {
            return None;
        }
        let outcome = self.probe(addr, hint, login).await;
        self.note(addr.ip(), matches!(outcome, Outcome::Found { .. }), Instant::now());
        Some(outcome)
    }

    fn may_probe(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(map) = self.backoff.lock() else { return false };
        map.get(&ip).is_none_or(|(next, _)| now >= *next)
    }

    /// Records how an automatic probe of `ip` went: a success forgets it, a failure backs off.
    fn note(&self, ip: IpAddr, success: bool, now: Instant) {
        let Ok(mut map) = self.backoff.lock() else { return };
        if success {
            map.remove(&ip);
            return;
        }
        let wait = map.get(&ip).map_or(FIRST_BACKOFF, |(_, w)| *w);
        map.insert(ip, (now + wait, (wait * 2).min(MAX_BACKOFF)));
        // Bounded: a LAN of addresses that never answer cannot grow it without end.
        if map.len() > 4096 {
            map.retain(|_, (next, _)| *next > now);
        }
    }

    /// Probes `addr` (port 80 for every family by default): Shelly, then Tasmota, then ESPHome's
    /// web server; `hint` tries that family first; `login` gives the credential to offer.
    pub async fn probe(&self, addr: SocketAddr, hint: Option<Family>, login: LoginFor<'_>) -> Outcome {
        let guard = {
            let Ok(mut set) = self.in_flight.lock() else { return Outcome::Busy };
            if !set.insert(addr) {
                return Outcome::Busy;
            }
            InFlight(Arc::clone(&self.in_flight), addr)
        };
        let Ok(_permit) = self.limit.acquire().await else { return Outcome::Busy };
        let order = match hint {
            Some(Family::Tasmota) => [Family::Tasmota, Family::Shelly, Family::Esphome],
            Some(Family::Esphome) => [Family::Esphome, Family::Shelly, Family::Tasmota],
            _ => [Family::Shelly, Family::Tasmota, Family::Esphome],
        };
        let mut last = Outcome::Unreachable { detail: "no answer".into() };
        for (i, family) in order.into_iter().enumerate() {
            // Whether this answer says more than the ones before: the first family's does, and
            // an event stream that is not ESPHome's says more than any 404.
            let mut telling = i == 0;
            let outcome = match family {
                Family::Tasmota => self.tasmota(addr, login(None, Family::Tasmota).as_ref()).await,
                Family::Esphome => {
                    let (outcome, streamed) = self.esphome(addr).await;
                    telling |= streamed;
                    outcome
                }
                _ => self.shelly(addr, login).await,
            };
            match outcome {
                // Nothing answers there: no use asking again. (After an answer, a failure of a
                // later request says less than the answer did.)
                Outcome::Unreachable { .. } if i == 0 => return outcome,
                Outcome::Unreachable { .. } => {}
                Outcome::Unrecognised { .. } if telling || !matches!(last, Outcome::Unrecognised { .. }) => {
                    last = outcome;
                }
                Outcome::Unrecognised { .. } => {}
                found => return found,
            }
        }
        drop(guard);
        last
    }

    async fn get(&self, addr: SocketAddr, path: &str, login: Option<&Secret>) -> Answer {
        let mut req = self.http.get(url(addr, path));
        if let Some(l) = login {
            // Tasmota's and Shelly Gen1's web user is `admin` unless set.
            req = req.basic_auth(l.username.as_deref().unwrap_or("admin"), Some(&l.password));
        }
        let mut resp = match req.send().await {
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

    async fn shelly(&self, addr: SocketAddr, login: LoginFor<'_>) -> Outcome {
        match self.get(addr, "/shelly", None).await {
            Answer::Failed(detail) => Outcome::Unreachable { detail },
            Answer::Body(200, body) => match classify::shelly_info(&body, Some(addr.ip())) {
                Some((o, auth)) if o.generation == Some(1) => self.shelly_gen1(addr, o, auth, login).await,
                Some((o, auth)) => found(o, auth),
                None => unrecognised("/shelly", 200, &body),
            },
            Answer::Body(status, body) => unrecognised("/shelly", status, &body),
        }
    }

    /// A Gen1's `/settings` completes what `/shelly` said (its name, host name). Behind a
    /// password it is read with the device's or the family's credential (user `admin` unless
    /// set); without one it is not asked. Whatever else goes wrong keeps what `/shelly` gave.
    async fn shelly_gen1(&self, addr: SocketAddr, info: Observation, auth: bool, login: LoginFor<'_>) -> Outcome {
        let secret = login(info.mac.as_deref(), Family::Shelly);
        if auth && secret.is_none() {
            return found(info, auth);
        }
        let offered = if auth { secret.as_ref() } else { None };
        match self.get(addr, "/settings", offered).await {
            Answer::Body(200, body) => match classify::shelly_settings(&body) {
                Some(s) => found(classify::with_shelly_settings(info, &s), auth),
                None => found(info, auth),
            },
            Answer::Body(401, _) if offered.is_some() => Outcome::AuthenticationFailed { family: Family::Shelly },
            _ => found(info, auth),
        }
    }

    /// ESPHome's `web_server`: `GET /events` must be an event stream whose first event is the
    /// node's greeting ([`classify::esphome_ping`]). At most [`MAX_EVENT`] bytes are read, then
    /// the connection is closed; a stream that stays silent ends with the request's timeout.
    /// Also says whether `/events` was an event stream at all.
    async fn esphome(&self, addr: SocketAddr) -> (Outcome, bool) {
        let mut resp = match self.http.get(url(addr, "/events")).header("Accept", "text/event-stream").send().await {
            Ok(r) => r,
            Err(e) => return (Outcome::Unreachable { detail: describe(&e) }, false),
        };
        let status = resp.status().as_u16();
        let stream = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        if status != 200 || !stream {
            // Read a little, to say what it was; never the whole of it.
            let body = match resp.chunk().await {
                Ok(Some(c)) => c.slice(..c.len().min(MAX_EVENT)).to_vec(),
                _ => Vec::new(),
            };
            return (unrecognised("/events", status, &body), false);
        }
        (Self::first_event(addr, resp).await, true)
    }

    async fn first_event(addr: SocketAddr, mut resp: reqwest::Response) -> Outcome {
        let mut seen = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    seen.extend_from_slice(&chunk[..chunk.len().min(MAX_EVENT + 1 - seen.len())]);
                    if let Some((event, data)) = classify::sse_first_event(&seen) {
                        return match classify::esphome_ping(&event, &data, Some(addr.ip())) {
                            Some(o) => found(o, false),
                            None => Outcome::Unrecognised {
                                detail: format!(
                                    "/events is an event stream, but its first event ({event:?}) is not ESPHome's greeting"
                                ),
                            },
                        };
                    }
                    if seen.len() > MAX_EVENT {
                        return Outcome::Unrecognised {
                            detail: format!("/events sent more than {} KiB without a whole event", MAX_EVENT / 1024),
                        };
                    }
                }
                Ok(None) => {
                    return Outcome::Unrecognised { detail: "/events ended before its first event".into() };
                }
                Err(e) => {
                    return Outcome::Unrecognised {
                        detail: format!("/events is an event stream, but {} before its first event", describe(&e)),
                    };
                }
            }
        }
    }

    async fn tasmota(&self, addr: SocketAddr, login: Option<&Secret>) -> Outcome {
        let refused = if login.is_some() {
            Outcome::AuthenticationFailed { family: Family::Tasmota }
        } else {
            Outcome::AuthenticationRequired { family: Family::Tasmota }
        };
        match self.get(addr, "/cm?cmnd=Status%200", login).await {
            Answer::Failed(detail) => Outcome::Unreachable { detail },
            Answer::Body(200, body) => match classify::tasmota_status(&body) {
                Some(o) => found(o, false),
                None if is_tasmota_auth(&body) => refused,
                None => unrecognised("/cm", 200, &body),
            },
            // Tasmota answers 401 with its WARNING when a web password is set (older releases: 200).
            Answer::Body(401, body) if is_tasmota_auth(&body) => refused,
            Answer::Body(status, body) => unrecognised("/cm", status, &body),
        }
    }
}

fn url(addr: SocketAddr, path: &str) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("http://{ip}:{}{path}", addr.port()),
        IpAddr::V6(ip) => format!("http://[{ip}]:{}{path}", addr.port()),
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

/// The IPv4 host addresses of `cidr` (`10.0.0.0/24`: .1 to .254), at most `max` of them.
pub fn subnet_hosts(cidr: &str, max: usize) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let (net, bits) = cidr.trim().split_once('/').ok_or_else(|| format!("{cidr:?} is not ADDRESS/BITS"))?;
    let net: std::net::Ipv4Addr = net.parse().map_err(|_| format!("{net:?} is not an IPv4 address"))?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(|| format!("/{bits} is not 0–32"))?;
    let size = 1u64 << (32 - bits);
    // Network and broadcast addresses are left out, except in /31 and /32.
    let hosts = if size > 2 { size - 2 } else { size };
    if hosts > max as u64 {
        // The widest prefix whose hosts fit.
        let widest = (0..=32u32).find(|b| (1u64 << (32 - b)).saturating_sub(2) <= max as u64).unwrap_or(32);
        return Err(format!("{cidr} has {hosts} addresses; at most {max} are scanned (a /{widest} or smaller)"));
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    let first = u32::from(net) & mask;
    let range = if size > 2 { (first + 1)..(first + size as u32 - 1) } else { first..first + size as u32 };
    Ok(range.map(std::net::Ipv4Addr::from).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn automatic_probes_back_off_exponentially_per_address_and_a_success_resets() {
        let p = Prober::new().unwrap();
        let (ip, other): (IpAddr, IpAddr) = ("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap());
        let t0 = Instant::now();
        assert!(p.may_probe(ip, t0));
        p.note(ip, false, t0);
        assert!(!p.may_probe(ip, t0 + FIRST_BACKOFF - Duration::from_secs(1)));
        assert!(p.may_probe(ip, t0 + FIRST_BACKOFF));
        assert!(p.may_probe(other, t0), "per address");
        let t1 = t0 + FIRST_BACKOFF;
        p.note(ip, false, t1);
        assert!(!p.may_probe(ip, t1 + FIRST_BACKOFF), "the wait doubled");
        assert!(p.may_probe(ip, t1 + 2 * FIRST_BACKOFF));
        let mut t = t1;
        for _ in 0..20 {
            p.note(ip, false, t);
        }
        assert!(p.may_probe(ip, t + MAX_BACKOFF), "never more than an hour");
        t += MAX_BACKOFF;
        p.note(ip, true, t);
        assert!(p.may_probe(ip, t), "an answer clears the back-off");
    }

    #[test]
    fn subnets_give_their_host_addresses_within_the_cap() {
        let h = subnet_hosts("192.168.1.77/24", 4096).unwrap();
        assert_eq!(
            (h.len(), h[0].to_string(), h[253].to_string()),
            (254, "192.168.1.1".into(), "192.168.1.254".into())
        );
        assert_eq!(subnet_hosts("10.0.0.5/32", 4096).unwrap(), ["10.0.0.5".parse::<std::net::Ipv4Addr>().unwrap()]);
        assert_eq!(subnet_hosts("10.0.0.4/31", 4096).unwrap().len(), 2);
        let e = subnet_hosts("10.0.0.0/16", 4096).unwrap_err();
        assert!(e.contains("65534 addresses") && e.contains("/20"), "{e}");
        for bad in ["10.0.0.0", "10.0.0.0/33", "host/24", "10.0.0.0/x"] {
            assert!(subnet_hosts(bad, 4096).is_err(), "{bad}");
        }
    }
}
