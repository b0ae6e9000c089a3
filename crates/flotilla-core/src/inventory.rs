//! The device inventory, in memory: every device keyed by MAC, merged from every source.
//!
//! Check-ins arrive thousands of times a second, so the inventory answers from memory and the
//! store is written behind it (see [`crate::writer`]). Merging lives here and only here: the store
//! keeps the merged result.

use std::collections::HashMap;

use flotilla_proto::{Device, Family};
use flotilla_store::clock;
use serde::{Deserialize, Serialize};

/// How the engine reaches a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transport {
    /// The device checks in over HTTP and takes its offer from the answer.
    Pull,
    /// The device listens on MQTT topics of a profile.
    Mqtt { profile: String, owner: Option<String> },
}

/// What one source saw of a device; `None` fields keep what the inventory already has.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    /// Any common MAC spelling; normalised on entry.
    pub mac: String,
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub family: Option<Family>,
    pub model: Option<String>,
    pub chip: Option<String>,
    pub version: Option<String>,
    pub ip: Option<String>,
    pub labels: Option<Vec<String>>,
    /// `mdns`, `mqtt`, `checkin`, `probe`, `manual`.
    pub source: String,
    pub transport: Option<Transport>,
}

/// What a sighting changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub created: bool,
    pub version_changed: bool,
    pub ip_changed: bool,
    pub came_online: bool,
    /// Anything at all changed that the store should know (last_seen alone does not count).
    pub fields_changed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub device: Device,
    pub transport: Option<Transport>,
    /// `last_seen` in ms; the `Device` string is refreshed from it when read.
    pub last_seen_ms: i64,
}

/// Every device, by MAC, with an index by device id.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    by_mac: HashMap<String, Entry>,
    by_id: HashMap<String, String>,
}

impl Inventory {
    pub fn load(devices: Vec<(Device, Option<String>)>) -> Inventory {
        let mut inv = Inventory::default();
        for (device, transport) in devices {
            let transport = transport.and_then(|t| serde_json::from_str(&t).ok());
            let last_seen_ms = clock::parse_rfc3339(&device.last_seen).unwrap_or(0);
            if let Some(id) = &device.device_id {
                inv.by_id.insert(id.clone(), device.mac.clone());
            }
            inv.by_mac.insert(device.mac.clone(), Entry { device, transport, last_seen_ms });
        }
        inv
    }

    pub fn get(&self, mac: &str) -> Option<&Entry> {
        self.by_mac.get(mac)
    }

    /// The MAC of a device id (or a MAC given as is).
    pub fn resolve(&self, id_or_mac: &str) -> Option<&str> {
        if let Some(e) = self.by_mac.get(id_or_mac) {
            return Some(&e.device.mac);
        }
        self.by_id.get(id_or_mac).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.by_mac.values()
    }

    /// Every device as the API shows it, by MAC.
    pub fn list(&self) -> Vec<Device> {
        let mut out: Vec<Device> = self.by_mac.values().map(Entry::snapshot).collect();
        out.sort_by(|a, b| a.mac.cmp(&b.mac));
        out
    }

    /// Merges a sighting (its MAC already normalised). Returns what changed.
    pub fn sight(&mut self, s: &Sighting, now_ms: i64) -> Change {
        let mut change = Change::default();
        // A known device (nearly every sighting) is found without copying its MAC.
        if !self.by_mac.contains_key(&s.mac) {
            change.created = true;
            change.fields_changed = true;
            let entry = Entry {
                device: Device {
                    mac: s.mac.clone(),
                    device_id: None,
                    name: None,
                    family: Family::Unknown,
                    model: None,
                    chip: None,
                    version: None,
                    ip: None,
                    online: false,
                    labels: Vec::new(),
                    sources: Vec::new(),
                    first_seen: clock::rfc3339(now_ms),
                    last_seen: clock::rfc3339(now_ms),
                },
                transport: None,
                last_seen_ms: now_ms,
            };
            self.by_mac.insert(s.mac.clone(), entry);
        }
        let Some(entry) = self.by_mac.get_mut(&s.mac) else { return change };
        let d = &mut entry.device;
        fn merge<T: PartialEq + Clone>(slot: &mut Option<T>, new: &Option<T>, changed: &mut bool) {
            if let Some(v) = new
                && slot.as_ref() != Some(v)
            {
                *slot = Some(v.clone());
                *changed = true;
            }
        }
        let mut changed = false;
        let mut id_changed = false;
        let old_id = if s.device_id.is_some() && s.device_id != d.device_id { d.device_id.take() } else { None };
        merge(&mut d.device_id, &s.device_id, &mut id_changed);
        changed |= id_changed;
        merge(&mut d.name, &s.name, &mut changed);
        merge(&mut d.model, &s.model, &mut changed);
        merge(&mut d.chip, &s.chip, &mut changed);
        let mut version_changed = false;
        merge(&mut d.version, &s.version, &mut version_changed);
        let mut ip_changed = false;
        merge(&mut d.ip, &s.ip, &mut ip_changed);
        if let Some(f) = s.family
            && (d.family != f)
            && (f != Family::Unknown)
        {
            d.family = f;
            changed = true;
        }
        if let Some(labels) = &s.labels
            && labels != &d.labels
        {
            // Kept sorted and without duplicates; equal lists (the usual case) copy nothing.
            let mut l = labels.clone();
            l.sort();
            l.dedup();
            if l != d.labels {
                d.labels = l;
                changed = true;
            }
        }
        if !s.source.is_empty() && !d.sources.iter().any(|x| x == &s.source) {
            d.sources.push(s.source.clone());
            d.sources.sort();
            changed = true;
        }
        if !d.online {
            d.online = true;
            change.came_online = !change.created;
            changed = true;
        }
        if let Some(t) = &s.transport
            && entry.transport.as_ref() != Some(t)
        {
            entry.transport = Some(t.clone());
            changed = true;
        }
        entry.last_seen_ms = now_ms;
        let new_id = if id_changed { d.device_id.clone() } else { None };
        change.version_changed = version_changed && !change.created;
        change.ip_changed = ip_changed && !change.created;
        change.fields_changed |= changed || version_changed || ip_changed;
        if id_changed {
            if let Some(old) = old_id {
                self.by_id.remove(&old);
            }
            if let Some(new) = new_id {
                self.by_id.insert(new, s.mac.clone());
            }
        }
        change
    }

    /// Marks a device offline; false when unknown or already offline.
    pub fn set_offline(&mut self, mac: &str) -> bool {
        match self.by_mac.get_mut(mac) {
            Some(e) if e.device.online => {
                e.device.online = false;
                true
            }
            _ => false,
        }
    }

    /// Adds and removes labels; `None` when the device is unknown.
    pub fn edit_labels(&mut self, mac: &str, add: &[String], remove: &[String]) -> Option<Vec<String>> {
        let e = self.by_mac.get_mut(mac)?;
        e.device.labels.retain(|l| !remove.contains(l));
        for l in add {
            if !e.device.labels.contains(l) {
                e.device.labels.push(l.clone());
            }
        }
        e.device.labels.sort();
        Some(e.device.labels.clone())
    }
}

impl Entry {
    /// The device with an up-to-date `last_seen`.
    pub fn snapshot(&self) -> Device {
        let mut d = self.device.clone();
        d.last_seen = clock::rfc3339(self.last_seen_ms);
        d
    }

    pub fn transport_json(&self) -> Option<String> {
        self.transport.as_ref().and_then(|t| serde_json::to_string(t).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(mac: &str, source: &str) -> Sighting {
        Sighting { mac: mac.into(), source: source.into(), ..Sighting::default() }
    }

    #[test]
    fn sightings_merge_by_mac_and_keep_what_they_do_not_know() {
        let mut inv = Inventory::default();
        let mac = "aa:bb:cc:00:11:22";
        let c = inv.sight(
            &Sighting {
                ip: Some("10.0.0.5".into()),
                version: Some("1.0.0".into()),
                family: Some(Family::Native),
                device_id: Some("pump-1".into()),
                transport: Some(Transport::Pull),
                ..sighting(mac, "checkin")
            },
            1_000,
        );
        assert!(c.created);
        // DHCP hands out a new address; mDNS reports the device without a version.
        let c = inv.sight(&Sighting { ip: Some("10.0.0.9".into()), ..sighting(mac, "mdns") }, 2_000);
        assert!(!c.created && c.ip_changed && !c.version_changed);
        let d = inv.get(mac).map(Entry::snapshot);
        let d = d.as_ref();
        assert_eq!(d.and_then(|d| d.ip.as_deref()), Some("10.0.0.9"));
        assert_eq!(d.and_then(|d| d.version.as_deref()), Some("1.0.0"));
        assert_eq!(d.map(|d| d.family), Some(Family::Native));
        assert_eq!(d.map(|d| d.sources.clone()), Some(vec!["checkin".to_string(), "mdns".to_string()]));
        assert_eq!(inv.resolve("pump-1"), Some(mac));
        assert_eq!(inv.get(mac).and_then(|e| e.transport.clone()), Some(Transport::Pull));
        // Nothing new: only last_seen moves.
        let c = inv.sight(&sighting(mac, "mdns"), 3_000);
        assert!(!c.fields_changed);
        assert!(inv.set_offline(mac));
        assert!(inv.sight(&sighting(mac, "mdns"), 4_000).came_online);
    }
}
