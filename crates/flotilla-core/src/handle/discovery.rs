//! What discovery ([`crate::discovery`]) tells the inventory. Discovery is unauthenticated
//! hearsay: it may create and describe devices of vendor families, but it never marks a job
//! done (only check-ins and presence do, through `seen_locked`), never turns a native device into
//! another family, and never overrides the version a native device reports itself.

use flotilla_proto::{Device, Family};

use super::EngineHandle;
use super::devices::offline_locked;
use crate::discovery::classify::Observation;
use crate::error::Result;
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
    /// Merges what `source` (`mdns`, `mqtt`, `probe`) observed of a device.
    pub async fn observe(&self, o: &Observation, source: &str) -> Result<Observed> {
        let Some(mac) = o.mac.clone() else { return Ok(Observed::Provisional) };
        if !o.online {
            self.discovery_offline(&mac, source, "it said goodbye")?;
            return Ok(Observed::Provisional);
        }
        let known_native = self
            .fleet()?
            .inventory
            .get(&mac)
            .is_some_and(|e| e.device.family == Family::Native && e.device.sources.iter().any(|s| s != source));
        if known_native && o.family != Some(Family::Native) {
            return Ok(Observed::Ignored("a native device cannot be re-classified by discovery"));
        }
        let native = o.family == Some(Family::Native);
        let s = Sighting {
            mac,
            device_id: o.device_id.clone(),
            name: o.name.clone(),
            family: o.family,
            model: o.model.clone(),
            chip: o.chip.clone(),
            // A native device's version counts only from its own check-ins and presence.
            version: if native { None } else { o.version.clone() },
            ip: o.ip.map(|ip| ip.to_string()),
            source: source.to_owned(),
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
            offline_locked(&mut fleet, mac, &format!("{source}:{mac}"), why, &mut ops);
            true
        };
        self.queue(ops);
        Ok(changed)
    }
}
