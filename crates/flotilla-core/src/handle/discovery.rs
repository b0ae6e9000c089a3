//! What discovery ([`crate::discovery`]) tells the inventory. Discovery is unauthenticated
//! hearsay: it may create and describe devices of vendor families, but it never marks a job
//! done (only check-ins and presence do, through `seen_locked`) and never changes a native
//! device (a Flotilla client advertising itself over mDNS is listed until it checks in; its
//! version counts only from its own reports).

use std::net::SocketAddr;
use std::sync::OnceLock;

use flotilla_proto::device::{ProbeResult, ScanRequest, ScanResult};
use flotilla_proto::{Device, Family};

use super::EngineHandle;
use super::devices::offline_locked;
use crate::discovery::classify::Observation;
use crate::discovery::probe::{Outcome, Prober, subnet_hosts};
use crate::error::{CoreError, Result};
use crate::inventory::Sighting;

/// What became of an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Merged into this device.
    Device(Box<Device>),
    /// No MAC yet: kept by discovery under its provisional key.
    Provisional,
    /// It contradicts what the device proved itself (a native device claimed by another family).
    Ignored(&'static str),
}

impl EngineHandle {
    /// Merges what `source` (`mdns`, `mqtt`, `probe`) observed of a device; what mDNS or MQTT
    /// left out (a Tasmota's version and MAC, a Shelly's generation) is then asked of the device
    /// itself over HTTP, in the background ([`Prober::probe_auto`]: backed off per address).
    pub async fn observe(&self, o: &Observation, source: &str) -> Result<Observed> {
        let observed = self.merge_observation(o, source).await?;
        if let Observed::Device(d) = &observed
            && o.online
            && matches!(source, "mdns" | "mqtt")
            && let Some(addr) = enrichment(d)
        {
            let engine = self.clone();
            let hint = Some(d.family);
            tokio::spawn(async move { engine.enrich(addr, hint).await });
        }
        Ok(observed)
    }

    /// Probes a device mDNS or MQTT told of, and merges what it answers as the `probe` source.
    async fn enrich(&self, addr: SocketAddr, hint: Option<Family>) {
        let Ok(prober) = prober() else { return };
        let login = |mac: Option<&str>, family: Family| self.login_for(addr, mac, family);
        match prober.probe_auto(addr, hint, &login).await {
            Some(Outcome::Found { observation, .. }) if observation.mac.is_none() => {
                tracing::debug!(%addr, "enrichment probe found a device that does not say its MAC");
            }
            Some(Outcome::Found { observation, .. }) => {
                let mut o = *observation;
                o.ip = Some(addr.ip());
                if let Err(e) = self.merge_observation(&o, "probe").await {
                    tracing::debug!(%addr, error = %e, "an enrichment probe's answer was not merged");
                }
            }
            Some(other) => tracing::debug!(%addr, outcome = ?other, "enrichment probe found nothing new"),
            None => {}
        }
    }

    /// The login to offer `addr` as a device of `family`: the device's own (by the MAC it
    /// gave, else by a known device with this address), else the family's.
    fn login_for(&self, addr: SocketAddr, mac: Option<&str>, family: Family) -> Option<crate::credentials::Secret> {
        let known = match mac {
            Some(m) => Some(m.to_owned()),
            None => self.known_mac_at(addr),
        };
        self.shared.vendor_credentials.for_device(known.as_deref(), family)
    }

    /// The MAC of the inventory's device at `addr`'s IP, if any.
    fn known_mac_at(&self, addr: SocketAddr) -> Option<String> {
        self.fleet().ok().and_then(|f| {
            let ip = addr.ip().to_string();
            f.inventory.iter().find(|e| e.device.ip.as_deref() == Some(ip.as_str())).map(|e| e.device.mac.clone())
        })
    }

    async fn merge_observation(&self, o: &Observation, source: &str) -> Result<Observed> {
        let Some(mac) = o.mac.clone() else { return Ok(Observed::Provisional) };
        if !o.online {
            self.discovery_offline(&mac, source, "it said goodbye")?;
            return Ok(Observed::Provisional);
        }
        // A native device speaks for itself (check-ins, presence, with its credential): what
        // others say about it changes nothing, whatever family they claim.
        let known_native = self.fleet()?.inventory.get(&mac).is_some_and(|e| e.device.family == Family::Native);
        if known_native {
            return Ok(Observed::Ignored("a native device is described only by itself"));
        }
        // mDNS is anyone on the LAN: new devices from it count against the site's caps.
        if source == "mdns"
            && let Err(refusal) = self.admit_mac(&mac, "mdns")
        {
            return Err(CoreError::Refused(refusal.message));
        }
        let native = o.family == Some(Family::Native);
        let s = Sighting {
            mac,
            device_id: o.device_id.clone(),
            name: o.name.clone(),
            family: o.family,
            generation: o.generation,
            model: o.model.clone(),
            chip: o.chip.clone(),
            // A native device's version counts only from its own check-ins and presence.
            version: if native { None } else { o.version.clone() },
            ip: o.ip.map(|ip| ip.to_string()),
            source: source.to_owned().into(),
            ..Sighting::default()
        };
        Ok(Observed::Device(Box::new(self.record_sighting(s).await?)))
    }

    /// `source` says the device `mac` left (an mDNS goodbye or expiry, an MQTT offline). A
    /// device that checks in or holds an MQTT session keeps the state those give it.
    pub fn discovery_offline(&self, mac: &str, source: &str, why: &str) -> Result<bool> {
        let mut ops = Vec::new();
        let changed = {
            let mut fleet = self.fleet()?;
            let Some(e) = fleet.inventory.get(mac) else { return Ok(false) };
            if e.transport.is_some() || !e.device.online {
                return Ok(false);
            }
            offline_locked(&mut fleet, mac, Some(source), &format!("{source}:{mac}"), why, &mut ops);
            true
        };
        self.queue(ops);
        Ok(changed)
    }
}

/// Where to ask a device what discovery has not told (a Tasmota found by mDNS: its version and
/// model; a Shelly Gen2+ known from `<id>/online` and mDNS: its generation), if anywhere. Both
/// families answer on port 80. Native devices speak for themselves.
fn enrichment(d: &flotilla_proto::Device) -> Option<SocketAddr> {
    let missing = match d.family {
        Family::Tasmota => d.version.is_none() || d.model.is_none(),
        Family::Shelly => d.generation.is_none() || d.version.is_none() || d.model.is_none(),
        _ => false,
    };
    let ip: std::net::IpAddr = d.ip.as_deref()?.parse().ok()?;
    missing.then_some(SocketAddr::new(ip, 80))
}

/// Addresses one scan may probe (a /20).
pub const MAX_SCAN: usize = 4094;
/// Addresses a scan starts per second, by default and at most.
pub const DEFAULT_SCAN_RATE: u32 = 100;
pub const MAX_SCAN_RATE: u32 = 1000;

/// The engine's prober (one per process: its limits are the LAN's, not an engine's).
fn prober() -> Result<&'static Prober> {
    static PROBER: OnceLock<Prober> = OnceLock::new();
    if let Some(p) = PROBER.get() {
        return Ok(p);
    }
    let p = Prober::new()?;
    Ok(PROBER.get_or_init(|| p))
}

/// `HOST` or `HOST:PORT` (80 by default), resolved.
async fn resolve(address: &str) -> Result<SocketAddr> {
    let address = address.trim();
    let bad = || CoreError::BadRequest(format!("{address:?} is not HOST or HOST:PORT"));
    if address.is_empty() || address.len() > 253 || address.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = address.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 80));
    }
    let with_port = if address.contains(':') { address.to_owned() } else { format!("{address}:80") };
    let mut found = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host(with_port))
        .await
        .map_err(|_| CoreError::BadRequest(format!("{address}: name lookup timed out")))?
        .map_err(|e| CoreError::BadRequest(format!("{address}: {e}")))?;
    found.next().ok_or_else(bad)
}

impl EngineHandle {
    /// Probes `address` over HTTP and merges what answers (source `probe`).
    pub async fn probe_address(&self, address: &str, hint: Option<Family>) -> Result<ProbeResult> {
        let addr = resolve(address).await?;
        self.probe_socket(addr, hint).await
    }

    /// Scan now: queries mDNS again and probes every address of `req.subnet` (if any) at a
    /// bounded rate, merging what answers.
    pub async fn scan_subnet(&self, req: &ScanRequest) -> Result<ScanResult> {
        let hosts = match &req.subnet {
            Some(subnet) => subnet_hosts(subnet, MAX_SCAN).map_err(CoreError::BadRequest)?,
            None => Vec::new(),
        };
        let mdns = self.shared.mdns_browsing.load(std::sync::atomic::Ordering::Relaxed);
        if mdns {
            crate::discovery::browse::requery_all();
        }
        let port = req.port.unwrap_or(80);
        if port == 0 {
            return Err(CoreError::BadRequest("port 0 cannot be probed".into()));
        }
        let rate = req.rate.unwrap_or(DEFAULT_SCAN_RATE);
        if !(1..=MAX_SCAN_RATE).contains(&rate) {
            return Err(CoreError::BadRequest(format!(
                "rate {rate}: between 1 and {MAX_SCAN_RATE} addresses a second"
            )));
        }
        let started = std::time::Instant::now();
        let mut pace = tokio::time::interval(std::time::Duration::from_secs(1) / rate);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = tokio::task::JoinSet::new();
        for ip in &hosts {
            pace.tick().await;
            let engine = self.clone();
            let addr = SocketAddr::new((*ip).into(), port);
            let hint = req.family;
            running.spawn(async move { engine.probe_socket(addr, hint).await });
        }
        let mut out = ScanResult {
            subnet: req.subnet.clone(),
            mdns,
            addresses: u32::try_from(hosts.len()).unwrap_or(u32::MAX),
            found: Vec::new(),
            authentication_required: Vec::new(),
            unrecognised: 0,
            unreachable: 0,
            took_ms: 0,
        };
        while let Some(done) = running.join_next().await {
            match done {
                Ok(Ok(r)) => match r.state.as_str() {
                    "found" => out.found.push(r),
                    "authentication_required" | "authentication_failed" => out.authentication_required.push(r),
                    "unrecognised" => out.unrecognised += 1,
                    _ => out.unreachable += 1,
                },
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "scan probe not merged");
                    out.unrecognised += 1;
                }
                Err(_) => out.unreachable += 1,
            }
        }
        out.found.sort_by(|a, b| a.address.cmp(&b.address));
        out.authentication_required.sort_by(|a, b| a.address.cmp(&b.address));
        out.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.record(
            "discovery.scan",
            "admin",
            None,
            serde_json::json!({
                "subnet": out.subnet, "addresses": out.addresses, "found": out.found.len(),
                "authentication_required": out.authentication_required.len(),
                "unrecognised": out.unrecognised, "unreachable": out.unreachable, "took_ms": out.took_ms,
            }),
        )
        .await?;
        Ok(out)
    }

    async fn probe_socket(&self, addr: SocketAddr, hint: Option<Family>) -> Result<ProbeResult> {
        let login = |mac: Option<&str>, family: Family| self.login_for(addr, mac, family);
        let outcome = prober()?.probe(addr, hint, &login).await;
        let mut result = ProbeResult {
            address: addr.to_string(),
            state: String::new(),
            family: None,
            auth_required: false,
            detail: None,
            device: None,
        };
        match outcome {
            Outcome::Found { observation, family, auth_required } => {
                let mut o = *observation;
                // The address we talked to, not the one the answer claims.
                o.ip = Some(addr.ip());
                result.state = "found".into();
                result.family = Some(family);
                result.auth_required = auth_required;
                if o.mac.is_none() {
                    // ESPHome's web server says its name, not its MAC: it describes the device
                    // already known at this address, else it is only reported.
                    o.mac = self.known_mac_at(addr).filter(|m| {
                        self.fleet().ok().and_then(|f| f.inventory.get(m).map(|e| e.device.family)) == Some(family)
                    });
                    if o.mac.is_none() {
                        result.detail = Some(format!(
                            "{} says it is {:?} but not its MAC: it joins the inventory when mDNS, MQTT or its native API tell it",
                            family.as_str(),
                            o.name.as_deref().unwrap_or("unnamed")
                        ));
                    }
                }
                match self.observe(&o, "probe").await? {
                    Observed::Device(d) => result.device = Some(*d),
                    Observed::Ignored(why) => {
                        result.state = "unrecognised".into();
                        result.detail = Some(why.into());
                    }
                    Observed::Provisional => {}
                }
            }
            Outcome::AuthenticationFailed { family } => {
                result.state = "authentication_failed".into();
                result.family = Some(family);
                result.auth_required = true;
                result.detail = Some("authentication failed: it refused the credential Flotilla has for it".into());
            }
            Outcome::AuthenticationRequired { family } => {
                result.state = "authentication_required".into();
                result.family = Some(family);
                result.auth_required = true;
                result.detail = Some("it wants a password to say what it is".into());
            }
            Outcome::Unrecognised { detail } => {
                result.state = "unrecognised".into();
                result.detail = Some(detail);
            }
            Outcome::Unreachable { detail } => {
                result.state = "unreachable".into();
                result.detail = Some(detail);
            }
            Outcome::Busy => {
                result.state = "busy".into();
                result.detail = Some("a probe of this address is already running".into());
            }
        }
        Ok(result)
    }
}

impl EngineHandle {
    /// Vendor device credentials, without their passwords.
    pub fn list_credentials(&self) -> Result<Vec<flotilla_proto::device::CredentialInfo>> {
        self.shared.vendor_credentials.list()
    }

    /// Sets the credential of a family or a device (by MAC); recorded (never the password).
    pub async fn set_credential(
        &self,
        scope: &str,
        req: flotilla_proto::device::CredentialRequest,
        actor: &str,
    ) -> Result<flotilla_proto::device::CredentialInfo> {
        let info = self.shared.vendor_credentials.set(scope, req.username, req.password)?;
        self.record(
            "credentials.set",
            actor,
            None,
            serde_json::json!({ "scope": info.scope, "username": info.username }),
        )
        .await?;
        Ok(info)
    }

    /// Removes the credential of a family or a device.
    pub async fn remove_credential(&self, scope: &str, actor: &str) -> Result<()> {
        if !self.shared.vendor_credentials.remove(scope)? {
            return Err(CoreError::NotFound(format!("credential {scope}")));
        }
        self.record("credentials.removed", actor, None, serde_json::json!({ "scope": scope })).await?;
        Ok(())
    }
}
