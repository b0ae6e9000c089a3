//! Starting a fleet and the handle to it: identities from the seed, failures from the rates and
//! overrides, the site key from the engine, one task per device.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::config::{FleetConfig, parse_site_key};
use crate::device::vendor::{self, Responder};
use crate::device::{Ctx, Device, DeviceSnapshot, DeviceState, TrustedKey, mqtt, pull};
use crate::error::{Result, SimError};
use crate::failures::{FailureKind, Failures};
use crate::identity::{DeviceKind, Identity};

/// Starts simulated fleets.
#[derive(Debug)]
#[non_exhaustive]
pub struct Fleet;

impl Fleet {
    /// Checks the configuration, fetches the site key (unless given), and starts every device.
    /// Devices start at once; pull devices spread their first check-in over one poll interval.
    pub async fn start(config: FleetConfig) -> Result<FleetHandle> {
        let validated = config.validate()?;
        let natives = config.fleet.iter().any(|(k, n)| k.is_native() && *n > 0);
        let key = match config.site_key {
            Some(public) => TrustedKey::new(public),
            // Vendor devices trust no site key: nothing to fetch.
            None if !natives => TrustedKey::new([0; 32]),
            None => match &validated.api {
                Some(api) => fetch_site_key(api, config.startup_timeout).await?,
                None => return Err(SimError::Config("no site key and no engine to fetch it from".into())),
            },
        };

        let mut failures = config.failure_rates.assign(config.device_count(), config.seed, config.slow_bps);
        let mut identities = Vec::with_capacity(config.device_count());
        for (kind, count) in &config.fleet {
            for n in 0..*count {
                let index = identities.len();
                let ident = Identity::derive(config.seed, &config.id_prefix, config.address_block, *kind, n, index)
                    .ok_or_else(|| SimError::Config(format!("device {index} has no address left")))?;
                identities.push(ident);
            }
        }
        for (who, f) in &config.failures {
            let i =
                identities.iter().position(|d| matches(d, who)).ok_or_else(|| SimError::NoSuchDevice(who.clone()))?;
            failures[i] = *f;
        }

        let devices: Vec<Arc<Device>> = identities
            .into_iter()
            .zip(failures)
            .map(|(ident, f)| {
                let version = vendor::version_of(ident.kind).map_or_else(|| config.version.clone(), str::to_owned);
                Arc::new(Device::new(ident, version, f))
            })
            .collect();
        // Vendor web servers: one port for all where it is free (a subnet scan asks one port),
        // the first one chosen by the OS when `device_port` is 0.
        let mut servers = Vec::new();
        let mut shared_port = config.device_port;
        for d in devices.iter().filter(|d| vendor::has_http(d.ident.kind)) {
            let Some(listener) = vendor::bind(d.ident.ip, shared_port).await else { continue };
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            d.set_port(port);
            if shared_port == 0 {
                shared_port = port;
            }
            let router = vendor::router(Arc::clone(d), config.tasmota_password.clone());
            servers.push(tokio::spawn(vendor::serve(listener, router, d.ident.id.clone())));
        }
        let responder = if config.mdns && devices.iter().any(|d| !d.ident.kind.is_native()) {
            let mut r = Responder::start().map_err(|e| SimError::io("mDNS responder", std::io::Error::other(e)))?;
            for d in devices.iter().filter(|d| !d.ident.kind.is_native()) {
                for s in vendor::services(d, d.port(), config.tasmota_mdns) {
                    r.register(d.ident.ip, &s);
                }
            }
            Some(r)
        } else {
            None
        };
        // An impostor pretends to be the first honest pull device of the fleet.
        let victim = devices.iter().find(|d| d.ident.kind == DeviceKind::NativePull && !d.failures().impostor);
        for d in devices.iter().filter(|d| d.failures().impostor) {
            if let Some(v) = victim {
                let _ = d.victim.set(Arc::clone(v));
            }
        }
        let summary = FleetSummary::new(&config, &devices, &key.key_id);
        let ctx = Arc::new(Ctx { config, api: validated.api, mqtt: validated.mqtt, key });
        let mut tasks: Vec<JoinHandle<()>> = devices
            .iter()
            .filter_map(|d| {
                let (d, ctx) = (Arc::clone(d), Arc::clone(&ctx));
                match d.ident.kind {
                    DeviceKind::NativePull => Some(tokio::spawn(pull::run(d, ctx))),
                    DeviceKind::NativeMqtt => Some(tokio::spawn(mqtt::run(d, ctx))),
                    _ if ctx.mqtt.is_some() => Some(tokio::spawn(vendor::run(d, ctx))),
                    _ => None,
                }
            })
            .collect();
        tasks.extend(servers);
        Ok(FleetHandle { devices, tasks, summary, responder })
    }
}

fn matches(ident: &Identity, mac_or_id: &str) -> bool {
    ident.id == mac_or_id || ident.mac.eq_ignore_ascii_case(mac_or_id)
}

/// The engine's answer on `GET /api/v1/site-key` (other fields are ignored).
#[derive(Debug, Deserialize)]
struct SiteKeyAnswer {
    public_key_hex: String,
    #[serde(default)]
    key_id: Option<String>,
}

/// Fetches the site's public key, retrying until `timeout` so the simulator can start before
/// the engine is up.
async fn fetch_site_key(api: &reqwest::Url, timeout: Duration) -> Result<TrustedKey> {
    let url = pull::api_url(api, "api/v1/site-key")
        .ok_or_else(|| SimError::Config(format!("cannot build the site-key URL from `{api}`")))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| SimError::Engine(format!("cannot build an HTTP client: {e}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_error = match client.get(url.clone()).send().await {
            Ok(r) if r.status().is_success() => {
                let answer: SiteKeyAnswer =
                    r.json().await.map_err(|e| SimError::Engine(format!("{url} answered no site key: {e}")))?;
                return parse_key(&answer);
            }
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(SimError::Engine(format!("cannot fetch the site key from {url}: {last_error}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn parse_key(answer: &SiteKeyAnswer) -> Result<TrustedKey> {
    let key = TrustedKey::new(parse_site_key(&answer.public_key_hex).map_err(SimError::Engine)?);
    if let Some(id) = answer.key_id.as_deref().filter(|id| *id != key.key_id) {
        tracing::warn!("the engine names its site key {id}, the simulator computes {}", key.key_id);
    }
    Ok(key)
}

/// A running fleet. Dropping it stops every device (like [`FleetHandle::stop`] without waiting).
#[derive(Debug)]
pub struct FleetHandle {
    devices: Vec<Arc<Device>>,
    tasks: Vec<JoinHandle<()>>,
    summary: FleetSummary,
    /// The vendor devices' mDNS records; dropped (goodbyes sent) when the fleet stops.
    responder: Option<Responder>,
}

impl FleetHandle {
    /// Every device, in fleet order.
    pub fn devices(&self) -> Vec<DeviceSnapshot> {
        self.devices.iter().map(|d| d.snapshot()).collect()
    }

    /// One device by MAC (any case) or id.
    pub fn device(&self, mac_or_id: &str) -> Option<DeviceSnapshot> {
        self.find(mac_or_id).map(|d| d.snapshot())
    }

    fn find(&self, mac_or_id: &str) -> Option<&Arc<Device>> {
        self.devices.iter().find(|d| matches(&d.ident, mac_or_id))
    }

    /// Sets a device's failure flags; they apply from the next step that consults them.
    pub fn set_failures(&self, mac_or_id: &str, failures: Failures) -> Result<()> {
        let device = self.find(mac_or_id).ok_or_else(|| SimError::NoSuchDevice(mac_or_id.to_owned()))?;
        device.set_failures(failures);
        Ok(())
    }

    /// Clears every device's failure flags, so the next attempt works; vanished devices come
    /// back (on the version they ran before the update that made them vanish).
    pub fn repair_all(&self) {
        for d in &self.devices {
            d.repair();
        }
    }

    /// What was started.
    pub fn summary(&self) -> &FleetSummary {
        &self.summary
    }

    /// How many devices run each version.
    pub fn tally(&self) -> BTreeMap<String, usize> {
        let mut tally = BTreeMap::new();
        for d in &self.devices {
            *tally.entry(d.version()).or_insert(0) += 1;
        }
        tally
    }

    /// How many devices are vanished now.
    pub fn vanished(&self) -> usize {
        self.devices.iter().filter(|d| d.state() == DeviceState::Vanished).count()
    }

    /// Stops every device and waits until all are gone. MQTT devices drop their connections
    /// without DISCONNECT, so the broker publishes their LWT, as for a power cut.
    pub async fn stop(mut self) {
        drop(self.responder.take());
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            // Every task was aborted: the only error is the cancellation itself.
            let _ = t.await;
        }
    }
}

impl Drop for FleetHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a fleet is, for the one-line summary the binary prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSummary {
    pub counts: Vec<(DeviceKind, usize)>,
    pub chip: String,
    pub model: String,
    pub version: String,
    pub seed: u64,
    /// Lowest and highest device address.
    pub addresses: (Ipv4Addr, Ipv4Addr),
    /// For each failure kind set on some device, the ids of those devices, in fleet order.
    pub failures: Vec<(&'static str, Vec<String>)>,
    /// Id of the site key the devices trust.
    pub key_id: String,
}

impl FleetSummary {
    fn new(config: &FleetConfig, devices: &[Arc<Device>], key_id: &str) -> FleetSummary {
        let first = devices.first().map_or(Ipv4Addr::LOCALHOST, |d| d.ident.ip);
        let last = devices.last().map_or(Ipv4Addr::LOCALHOST, |d| d.ident.ip);
        let failures = FailureKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let ids: Vec<String> = devices
                    .iter()
                    .filter(|d| d.failures().names().contains(&kind.as_str()))
                    .map(|d| d.ident.id.clone())
                    .collect();
                (!ids.is_empty()).then_some((kind.as_str(), ids))
            })
            .collect();
        FleetSummary {
            counts: config.fleet.iter().filter(|(_, n)| *n > 0).copied().collect(),
            chip: config.chip.to_string(),
            model: config.model.clone(),
            version: config.version.clone(),
            seed: config.seed,
            addresses: (first, last),
            failures,
            key_id: key_id.to_owned(),
        }
    }
}

impl std::fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.counts.iter().map(|(_, n)| n).sum();
        let counts: Vec<String> = self.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        write!(
            f,
            "{total} devices ({}), {} {} on {}, addresses {}–{}, seed {}, site key {}, failures: ",
            counts.join(", "),
            self.chip,
            self.model,
            self.version,
            self.addresses.0,
            self.addresses.1,
            self.seed,
            self.key_id
        )?;
        if self.failures.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|(kind, ids)| {
                let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
                let more = if ids.len() > 5 { format!(" +{} more", ids.len() - 5) } else { String::new() };
                format!("{kind}={} [{}{more}]", ids.len(), shown.join(" "))
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// `1.0.0=3, 2.0.0=97`.
pub fn format_tally(tally: &BTreeMap<String, usize>) -> String {
    tally.iter().map(|(v, n)| format!("{v}={n}")).collect::<Vec<_>>().join(", ")
}
