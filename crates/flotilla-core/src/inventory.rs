//! The device inventory, in memory: every device keyed by MAC, merged from every source.
//!
//! Check-ins arrive thousands of times a second, so the inventory answers from memory and the
//! store is written behind it (see [`crate::writer`]). Merging lives here and only here: the store
//! keeps the merged result.

use std::collections::HashMap;

use crate::{DeviceKey, DeviceMap};

use flotilla_proto::device::SourceSeen;
use flotilla_proto::{Channel, Device, Family};
use flotilla_store::clock;
use serde::{Deserialize, Serialize};

/// How the engine reaches a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transport {
    /// The device checks in over HTTP and takes its offer from the answer.
    Pull,
    /// The device listens on MQTT topics of a profile.
    Mqtt { profile: String, owner: Option<String> },
}

/// What one source saw of a device; `None` fields keep what the inventory already has.
#[derive(Debug, Clone, Default, Hash)]
pub struct Sighting {
    /// Any common MAC spelling; normalised on entry.
    pub mac: String,
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub family: Option<Family>,
    /// Shelly's generation.
    pub generation: Option<u8>,
    pub model: Option<String>,
    pub chip: Option<String>,
    pub version: Option<String>,
    pub ip: Option<String>,
    /// Labels the device reports (replacing those it reported before; labels people set stay).
    pub labels: Option<Vec<String>>,
    /// The anti-rollback version the device reports.
    pub secure_version: Option<u32>,
    /// Seconds between check-ins, as the device declares them.
    pub interval_secs: Option<u32>,
    /// The embedded broker's session the sighting came through (MQTT presence).
    pub broker_client: Option<String>,
    /// `mdns`, `mqtt`, `checkin`, `probe`, `manual` (a constant: no allocation a check-in).
    pub source: std::borrow::Cow<'static, str>,
    pub transport: Option<Transport>,
}

/// What a sighting changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub created: bool,
    pub version_changed: bool,
    pub ip_changed: bool,
    pub came_online: bool,
    /// The labels the device reports changed.
    pub labels_changed: bool,
    /// Anything at all changed that the store should know (last_seen alone does not count).
    pub fields_changed: bool,
    /// The device took an address another device had (a DHCP swap): that device's MAC. Its
    /// address was cleared, so nothing meant for it goes to this one.
    pub ip_taken_from: Option<String>,
}

/// Shown offline after this long without news, when nothing better is known (no check-in
/// interval yet, no broker session to follow).
pub const OFFLINE_AFTER_MS: i64 = 600_000;
/// Bounds of the offline delay of a device that checks in: three missed check-ins (plus slack),
/// never under a minute nor over two hours.
const MIN_OFFLINE_MS: i64 = 60_000;
const MAX_OFFLINE_MS: i64 = 2 * 3_600_000;
/// Gaps between check-ins longer than this are absences, not the device's interval.
const MAX_INTERVAL_MS: i64 = 6 * 3_600_000;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub device: Device,
    pub transport: Option<Transport>,
    /// `last_seen` in ms; the `Device` string is refreshed from it when read.
    pub last_seen_ms: i64,
    /// The channel set on the device itself.
    pub own_channel: Option<Channel>,
    /// Check-in interval the device declared (ms).
    pub declared_interval_ms: Option<i64>,
    /// Check-in interval learnt from its check-ins (ms, moving average).
    pub learned_interval_ms: Option<f64>,
    /// The embedded broker's session its presence came through: when that session ends, the
    /// device has left (even without a Last Will).
    pub broker_client: Option<String>,
    /// Each source's last word, by source (a handful at most).
    pub seen: Vec<SourceState>,
    /// `last_seen_ms` moved since the device's row was last written: the write-behind
    /// ([`Inventory::take_seen`]) owes the store this time.
    pub last_seen_unsaved: bool,
    /// The last check-in merged into this entry, if nothing else changed the entry since.
    repeat: Option<Repeat>,
}

/// What a device's last check-in said, to know the next one again (see [`Inventory::sight`]).
#[derive(Debug, Clone, Copy)]
struct Repeat {
    /// [`Inventory::fingerprint`] of the check-in's sighting.
    said: u64,
    /// Where the check-in source's record is in [`Entry::seen`].
    seen_at: usize,
}

/// What one source last said about a device (times in ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceState {
    pub source: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub version: Option<String>,
    pub ip: Option<String>,
    /// False once this source said the device left.
    pub online: bool,
}

/// Every device, by MAC, with an index by device id.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    by_mac: DeviceMap<DeviceKey, Entry>,
    by_id: DeviceMap<String, String>,
    /// MAC by IP address: one device per address.
    by_ip: DeviceMap<String, String>,
    /// Seeds [`Inventory::fingerprint`] (at random, per process).
    fingerprints: hashbrown::DefaultHashBuilder,
    /// Tests compare the inventory with one that merges every check-in in full.
    #[cfg(test)]
    merge_every_checkin: bool,
    /// The channel of each label that has one.
    label_channels: HashMap<String, Channel>,
}

impl Inventory {
    pub fn load(devices: Vec<(Device, Option<String>)>, label_channels: Vec<(String, Channel)>) -> Inventory {
        let mut inv = Inventory { label_channels: label_channels.into_iter().collect(), ..Inventory::default() };
        for (device, transport) in devices {
            let transport = transport.and_then(|t| serde_json::from_str(&t).ok());
            let last_seen_ms = clock::parse_rfc3339(&device.last_seen).unwrap_or(0);
            if let Some(id) = &device.device_id {
                inv.by_id.insert(id.clone(), device.mac.clone());
            }
            if let Some(ip) = &device.ip
                && !matches!(device.family, Family::Native | Family::Unknown)
            {
                inv.by_ip.insert(ip.clone(), device.mac.clone());
            }
            let own_channel = (device.channel_from.as_deref() == Some("device")).then_some(device.channel);
            let seen = device
                .seen
                .iter()
                .map(|s| SourceState {
                    source: s.source.clone(),
                    first_ms: clock::parse_rfc3339(&s.first_seen).unwrap_or(last_seen_ms),
                    last_ms: clock::parse_rfc3339(&s.last_seen).unwrap_or(last_seen_ms),
                    version: s.version.clone(),
                    ip: s.ip.clone(),
                    online: s.online,
                })
                .collect();
            let mut entry = Entry {
                device,
                transport,
                last_seen_ms,
                own_channel,
                declared_interval_ms: None,
                learned_interval_ms: None,
                broker_client: None,
                seen,
                last_seen_unsaved: false,
                repeat: None,
            };
            refresh_channel(&inv.label_channels, &mut entry);
            inv.by_mac.insert(DeviceKey::from(entry.device.mac.as_str()), entry);
        }
        inv
    }

    /// Sets (or clears) the channel of one device; `None` when the device is unknown.
    pub fn set_channel(&mut self, mac: &str, channel: Option<Channel>) -> Option<Device> {
        let e = self.by_mac.get_mut(mac)?;
        e.repeat = None;
        e.own_channel = channel;
        refresh_channel(&self.label_channels, e);
        Some(e.snapshot())
    }

    /// Sets (or clears) the channel of a label; every device carrying it follows.
    pub fn set_label_channel(&mut self, label: &str, channel: Option<Channel>) {
        match channel {
            Some(c) => self.label_channels.insert(label.to_owned(), c),
            None => self.label_channels.remove(label),
        };
        for e in self.by_mac.values_mut().filter(|e| e.device.labels.iter().any(|l| l == label)) {
            e.repeat = None;
            refresh_channel(&self.label_channels, e);
        }
    }

    /// The channel of every label that has one, by label.
    pub fn label_channels(&self) -> Vec<(String, Channel)> {
        let mut out: Vec<(String, Channel)> = self.label_channels.iter().map(|(l, c)| (l.clone(), *c)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Removes a device from the inventory; its entry as it was.
    pub fn forget(&mut self, mac: &str) -> Option<Entry> {
        let e = self.by_mac.remove(mac)?;
        if let Some(id) = &e.device.device_id
            && self.by_id.get(id).is_some_and(|m| m == mac)
        {
            self.by_id.remove(id);
        }
        if let Some(ip) = &e.device.ip
            && self.by_ip.get(ip).is_some_and(|m| m == mac)
        {
            self.by_ip.remove(ip);
        }
        Some(e)
    }

    /// Online devices whose liveness has lapsed at `now`, with why.
    pub fn lapsed(&self, now: i64) -> Vec<(String, String)> {
        self.by_mac
            .values()
            .filter(|e| e.device.online)
            .filter(|e| e.stale_at_ms().is_some_and(|at| now >= at))
            .map(|e| (e.device.mac.clone(), e.silence_reason(now)))
            .collect()
    }

    /// Online MQTT devices whose presence came through the broker session `client`.
    pub fn of_broker_client(&self, client: &str) -> Vec<String> {
        self.by_mac
            .values()
            .filter(|e| e.device.online && e.broker_client.as_deref() == Some(client))
            .map(|e| e.device.mac.clone())
            .collect()
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

    /// The `last_seen` of every device whose time moved since its row was last written, as
    /// (MAC, ms); what is returned is no longer owed.
    pub fn take_seen(&mut self) -> Vec<(String, i64)> {
        self.by_mac
            .values_mut()
            .filter(|e| e.last_seen_unsaved)
            .map(|e| {
                e.last_seen_unsaved = false;
                (e.device.mac.clone(), e.last_seen_ms)
            })
            .collect()
    }

    /// How many devices there are.
    pub fn len(&self) -> usize {
        self.by_mac.len()
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

    /// A fingerprint of everything a sighting says (seeded at random per process).
    fn fingerprint(&self, s: &Sighting) -> u64 {
        use std::hash::BuildHasher;
        self.fingerprints.hash_one(s)
    }

    /// Merges a sighting (its MAC already normalised). Returns what changed.
    ///
    /// A device checks in every few seconds saying the same thing: a check-in whose every field
    /// is what the device's last check-in said, with nothing else having changed its entry since
    /// (every other change clears [`Entry::repeat`]), changes nothing but the times, and only
    /// they are moved. It is recognised by a 64-bit fingerprint rather than by comparing the
    /// entry's fields, which among thousands of devices are a dozen separate heap strings out of
    /// the CPU's caches (`docs/performance.md`). Two different check-ins of one device taken for
    /// the same would only leave the inventory's copy of its fields stale until it says
    /// something else (2^-64 a check-in); a rollout never reads them — it verifies the version
    /// each check-in itself carries.
    pub fn sight(&mut self, s: &Sighting, now_ms: i64) -> Change {
        let mut change = Change::default();
        let said = (s.source == "checkin").then(|| self.fingerprint(s));
        #[cfg(test)]
        let said = said.filter(|_| !self.merge_every_checkin);
        // One lookup: a known device (nearly every sighting) is found without copying its MAC.
        let entry = match self.by_mac.entry_ref(s.mac.as_str()) {
            hashbrown::hash_map::EntryRef::Occupied(o) => {
                let entry = o.into_mut();
                if let (Some(said), Some(repeat)) = (said, entry.repeat)
                    && repeat.said == said
                    && entry.device.online
                    && let Some(record) = entry.seen.get_mut(repeat.seen_at)
                {
                    record.last_ms = now_ms;
                    learn_interval(entry, now_ms);
                    entry.last_seen_ms = now_ms;
                    entry.last_seen_unsaved = true;
                    return change;
                }
                entry
            }
            hashbrown::hash_map::EntryRef::Vacant(v) => {
                change.created = true;
                change.fields_changed = true;
                let entry = Entry {
                    device: Device {
                        mac: s.mac.clone(),
                        device_id: None,
                        name: None,
                        family: Family::Unknown,
                        generation: None,
                        model: None,
                        chip: None,
                        version: None,
                        ip: None,
                        online: false,
                        secure_version: None,
                        channel: Channel::Stable,
                        channel_from: None,
                        labels: Vec::new(),
                        admin_labels: Vec::new(),
                        device_labels: Vec::new(),
                        auth: flotilla_proto::device::DeviceAuth::None,
                        authenticated: false,
                        sources: Vec::new(),
                        seen: Vec::new(),
                        first_seen: clock::rfc3339(now_ms),
                        last_seen: clock::rfc3339(now_ms),
                    },
                    transport: None,
                    last_seen_ms: now_ms,
                    own_channel: None,
                    declared_interval_ms: None,
                    learned_interval_ms: None,
                    broker_client: None,
                    seen: Vec::new(),
                    last_seen_unsaved: false,
                    repeat: None,
                };
                v.insert_with_key(DeviceKey::from(s.mac.as_str()), entry)
            }
        };
        if s.source == "checkin" && entry.device.online && !change.created {
            learn_interval(entry, now_ms);
        }
        if let Some(secs) = s.interval_secs.filter(|s| *s > 0) {
            entry.declared_interval_ms = Some(i64::from(secs) * 1000);
        }
        if s.broker_client.is_some() && entry.broker_client != s.broker_client {
            entry.broker_client.clone_from(&s.broker_client);
        }
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
        let mut labels_changed = false;
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
        let old_ip = if s.ip.is_some() && s.ip != d.ip { d.ip.clone() } else { None };
        merge(&mut d.ip, &s.ip, &mut ip_changed);
        merge(&mut d.secure_version, &s.secure_version, &mut changed);
        merge(&mut d.generation, &s.generation, &mut changed);
        if let Some(f) = s.family
            && (d.family != f)
            && (f != Family::Unknown)
        {
            d.family = f;
            changed = true;
        }
        if let Some(labels) = &s.labels
            && labels != &d.device_labels
        {
            // Kept sorted and without duplicates; equal lists (the usual case) copy nothing. Only
            // the labels the device reports are replaced: those people set stay.
            let mut l = labels.clone();
            l.sort();
            l.dedup();
            if l != d.device_labels {
                d.device_labels = l;
                union_labels(d);
                changed = true;
                labels_changed = true;
            }
        }
        if !s.source.is_empty() && !d.sources.iter().any(|x| *x == s.source) {
            d.sources.push(s.source.to_string());
            d.sources.sort();
            changed = true;
        }
        let mut seen_at = None;
        if !s.source.is_empty() {
            // This source's own record: when it first and last spoke, and what it last said.
            match entry.seen.iter_mut().enumerate().find(|(_, x)| x.source == s.source) {
                Some((i, x)) => {
                    seen_at = Some(i);
                    x.last_ms = now_ms;
                    x.online = true;
                    merge(&mut x.version, &s.version, &mut changed);
                    merge(&mut x.ip, &s.ip, &mut changed);
                }
                None => {
                    entry.seen.push(SourceState {
                        source: s.source.to_string(),
                        first_ms: now_ms,
                        last_ms: now_ms,
                        version: s.version.clone(),
                        ip: s.ip.clone(),
                        online: true,
                    });
                    entry.seen.sort_by(|a, b| a.source.cmp(&b.source));
                    seen_at = entry.seen.iter().position(|x| x.source == s.source);
                    changed = true;
                }
            }
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
        let new_id = if id_changed { entry.device.device_id.clone() } else { None };
        if labels_changed || change.created {
            changed |= refresh_channel(&self.label_channels, entry);
        }
        change.labels_changed = labels_changed;
        change.version_changed = version_changed && !change.created;
        change.ip_changed = ip_changed && !change.created;
        change.fields_changed |= changed || version_changed || ip_changed;
        // A change is written with the whole row (its `last_seen` too); otherwise only the time
        // is owed, and written behind.
        entry.last_seen_unsaved = !change.fields_changed;
        // The entry now holds all this check-in said: the same again changes nothing but times.
        entry.repeat = said.zip(seen_at).map(|(said, seen_at)| Repeat { said, seen_at });
        if id_changed {
            if let Some(old) = old_id {
                self.by_id.remove(&old);
            }
            if let Some(new) = new_id {
                self.by_id.insert(new, s.mac.clone());
            }
        }
        // One vendor device per address: they are commanded at it. Native devices are not (they
        // pull, or listen on MQTT), and several may check in through one address (NAT, a proxy).
        if ip_changed
            && s.source != "checkin"
            && self.is_addressed(&s.mac)
            && let Some(ip) = &s.ip
        {
            if let Some(old) = old_ip
                && self.by_ip.get(&old).is_some_and(|m| m == &s.mac)
            {
                self.by_ip.remove(&old);
            }
            if let Some(holder) = self.by_ip.insert(ip.clone(), s.mac.clone())
                && holder != s.mac
                && let Some(other) = self.by_mac.get_mut(holder.as_str())
                && other.device.ip.as_deref() == Some(ip.as_str())
                && !matches!(other.device.family, Family::Native | Family::Unknown)
            {
                // The newest claim wins the address; the other device's is no longer known.
                other.repeat = None;
                other.device.ip = None;
                for x in other.seen.iter_mut().filter(|x| x.ip.as_deref() == Some(ip.as_str())) {
                    x.ip = None;
                }
                change.ip_taken_from = Some(holder);
            }
        }
        change
    }

    /// Is the device one the engine commands at its address (a vendor device)?
    fn is_addressed(&self, mac: &str) -> bool {
        self.by_mac.get(mac).is_some_and(|e| !matches!(e.device.family, Family::Native | Family::Unknown))
    }

    /// Marks a device offline (the freshest news says it left); with the source that said so,
    /// that source's record too. False when unknown or already offline.
    pub fn set_offline(&mut self, mac: &str, source: Option<&str>) -> bool {
        let Some(e) = self.by_mac.get_mut(mac) else { return false };
        e.repeat = None;
        if let Some(src) = source
            && let Some(x) = e.seen.iter_mut().find(|x| x.source == src)
        {
            x.online = false;
        }
        if e.device.online {
            e.device.online = false;
            return true;
        }
        false
    }

    /// Adds and removes labels; `None` when the device is unknown.
    /// Adds and removes labels people set; `None` when the device is unknown. Returns those
    /// labels (what the store keeps as the device's admin labels).
    pub fn edit_labels(&mut self, mac: &str, add: &[String], remove: &[String]) -> Option<Vec<String>> {
        let e = self.by_mac.get_mut(mac)?;
        e.repeat = None;
        e.device.admin_labels.retain(|l| !remove.contains(l));
        for l in add {
            if !e.device.admin_labels.contains(l) {
                e.device.admin_labels.push(l.clone());
            }
        }
        e.device.admin_labels.sort();
        union_labels(&mut e.device);
        refresh_channel(&self.label_channels, e);
        Some(e.device.admin_labels.clone())
    }

    /// Sets how a device proves who it is (from its credential); false when unknown or unchanged.
    pub fn set_auth(&mut self, mac: &str, auth: flotilla_proto::device::DeviceAuth) -> bool {
        let Some(e) = self.by_mac.get_mut(mac) else { return false };
        let authenticated = auth == flotilla_proto::device::DeviceAuth::Enrolled;
        if e.device.auth == auth && e.device.authenticated == authenticated {
            return false;
        }
        e.repeat = None;
        e.device.auth = auth;
        e.device.authenticated = authenticated;
        true
    }
}

/// Learns a device's check-in interval from the gap since its last check-in (it is online).
fn learn_interval(entry: &mut Entry, now_ms: i64) {
    let gap = now_ms - entry.last_seen_ms;
    if (500..MAX_INTERVAL_MS).contains(&gap) {
        let g = gap as f64;
        entry.learned_interval_ms = Some(entry.learned_interval_ms.map_or(g, |l| 0.7 * l + 0.3 * g));
    }
}

/// `labels` = the labels people set ∪ those the device reports, sorted, without duplicates.
pub(crate) fn union_labels(d: &mut Device) {
    let mut all: Vec<String> = d.admin_labels.iter().chain(&d.device_labels).cloned().collect();
    all.sort();
    all.dedup();
    if all != d.labels {
        d.labels = all;
    }
}

/// Works out the channel a device follows: its own, else its labels' (beta wins), else stable.
/// Returns whether it changed.
fn refresh_channel(label_channels: &HashMap<String, Channel>, e: &mut Entry) -> bool {
    let (channel, from) = match e.own_channel {
        Some(c) => (c, Some("device".to_owned())),
        None => {
            let mut best: Option<(Channel, &String)> = None;
            for l in &e.device.labels {
                if let Some(&c) = label_channels.get(l)
                    && best.is_none_or(|(b, _)| c == Channel::Beta && b != Channel::Beta)
                {
                    best = Some((c, l));
                }
            }
            match best {
                Some((c, l)) => (c, Some(format!("label:{l}"))),
                None => (Channel::Stable, None),
            }
        }
    };
    let changed = e.device.channel != channel || e.device.channel_from != from;
    e.device.channel = channel;
    e.device.channel_from = from;
    changed
}

impl Entry {
    /// The device with an up-to-date `last_seen` and each source's record.
    pub fn snapshot(&self) -> Device {
        let mut d = self.device.clone();
        d.last_seen = clock::rfc3339(self.last_seen_ms);
        d.seen = self
            .seen
            .iter()
            .map(|x| SourceSeen {
                source: x.source.clone(),
                first_seen: clock::rfc3339(x.first_ms),
                last_seen: clock::rfc3339(x.last_ms),
                version: x.version.clone(),
                ip: x.ip.clone(),
                online: x.online,
            })
            .collect();
        d
    }

    pub fn transport_json(&self) -> Option<String> {
        self.transport.as_ref().and_then(|t| serde_json::to_string(t).ok())
    }

    /// The check-in interval: declared, else learnt.
    fn interval_ms(&self) -> Option<i64> {
        self.declared_interval_ms.or(self.learned_interval_ms.map(|l| l as i64))
    }

    /// How long without news before the device is shown offline; `None` when its transport has a
    /// liveness of its own (an MQTT device is online while its broker session lives: its Last
    /// Will, or the embedded broker's session end, takes it offline).
    pub fn offline_after_ms(&self) -> Option<i64> {
        match &self.transport {
            Some(Transport::Mqtt { .. }) => None,
            Some(Transport::Pull) => Some(match self.interval_ms() {
                Some(i) => (3 * i + 30_000).clamp(MIN_OFFLINE_MS, MAX_OFFLINE_MS),
                None => OFFLINE_AFTER_MS,
            }),
            None => Some(OFFLINE_AFTER_MS),
        }
    }

    /// How long after a source's last word its news goes stale; `None` when that source has a
    /// liveness of its own (MQTT: a Last Will, a session's end, retained presence).
    fn window_ms(&self, source: &str) -> Option<i64> {
        match source {
            "checkin" => Some(match self.interval_ms() {
                Some(i) => (3 * i + 30_000).clamp(MIN_OFFLINE_MS, MAX_OFFLINE_MS),
                None => OFFLINE_AFTER_MS,
            }),
            "mqtt" => None,
            // mDNS records are re-read every minute (goodbyes and expiry take a device offline
            // at once); probes and manual additions are news of the moment.
            _ => Some(OFFLINE_AFTER_MS),
        }
    }

    /// When the device goes stale, from the freshest source still saying it is here (each with
    /// its own staleness rule); `None` while one of them has a liveness of its own.
    pub fn stale_at_ms(&self) -> Option<i64> {
        let mut at: Option<i64> = None;
        for x in self.seen.iter().filter(|x| x.online) {
            let t = x.last_ms + self.window_ms(&x.source)?;
            at = Some(at.map_or(t, |a| a.max(t)));
        }
        // Devices without per-source records (none yet): the device-wide rule.
        at.or_else(|| Some(self.last_seen_ms + self.offline_after_ms()?))
    }

    /// Why a device is shown offline after a silence, in words.
    fn silence_reason(&self, now: i64) -> String {
        let silent = (now - self.last_seen_ms) / 1000;
        match (&self.transport, self.interval_ms()) {
            (Some(Transport::Pull), Some(i)) => {
                format!("no check-in for {silent} s (it checks in every {} s)", (i + 500) / 1000)
            }
            (Some(Transport::Pull), None) => format!("no check-in for {silent} s"),
            _ => format!("not seen for {silent} s"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flotilla_proto::device::DeviceAuth;

    fn sighting(mac: &str, source: &str) -> Sighting {
        Sighting { mac: mac.into(), source: source.to_owned().into(), ..Sighting::default() }
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
        assert!(inv.set_offline(mac, None));
        assert!(inv.sight(&sighting(mac, "mdns"), 4_000).came_online);
    }

    #[test]
    fn only_a_time_that_moved_unwritten_is_owed_to_the_store() {
        let mut inv = Inventory::default();
        let (a, b) = ("aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02");
        // New devices are written whole (the time with them): nothing is owed.
        inv.sight(&Sighting { version: Some("1.0.0".into()), ..sighting(a, "checkin") }, 1_000);
        inv.sight(&Sighting { version: Some("1.0.0".into()), ..sighting(b, "checkin") }, 1_000);
        assert!(inv.take_seen().is_empty());
        // `a` checks in twice with nothing new: its latest time is owed, once.
        inv.sight(&Sighting { version: Some("1.0.0".into()), ..sighting(a, "checkin") }, 2_000);
        inv.sight(&Sighting { version: Some("1.0.0".into()), ..sighting(a, "checkin") }, 3_000);
        assert_eq!(inv.take_seen(), vec![(a.to_string(), 3_000)]);
        assert!(inv.take_seen().is_empty());
        // A time owed, then a change that writes the row: the row carries the time.
        inv.sight(&Sighting { version: Some("1.0.0".into()), ..sighting(b, "checkin") }, 4_000);
        let c = inv.sight(&Sighting { version: Some("1.1.0".into()), ..sighting(b, "checkin") }, 5_000);
        assert!(c.fields_changed);
        assert_eq!(inv.get(b).map(|e| e.last_seen_ms), Some(5_000));
        assert!(inv.take_seen().is_empty());
        // A forgotten device owes nothing.
        inv.sight(&Sighting { version: Some("1.0.0".into()), ..sighting(a, "checkin") }, 6_000);
        inv.forget(a);
        assert!(inv.take_seen().is_empty());
    }

    #[test]
    fn liveness_follows_each_transport() {
        let mut inv = Inventory::default();
        let (pull, mqtt, other) = ("aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02", "aa:bb:cc:00:00:03");
        // A pull device checking in every 10 s: learnt from its check-ins.
        for t in 0..5 {
            inv.sight(&Sighting { transport: Some(Transport::Pull), ..sighting(pull, "checkin") }, t * 10_000);
        }
        let mqtt_t = Transport::Mqtt { profile: "flotilla".into(), owner: None };
        inv.sight(
            &Sighting { transport: Some(mqtt_t), broker_client: Some("dev-2".into()), ..sighting(mqtt, "mqtt") },
            0,
        );
        inv.sight(&sighting(other, "mdns"), 0);
        let last = 40_000;
        // Three missed check-ins (plus slack, at least a minute) take the pull device offline.
        assert!(inv.lapsed(last + 59_000).is_empty());
        let lapsed = inv.lapsed(last + 61_000);
        assert_eq!(lapsed.len(), 1, "{lapsed:?}");
        assert_eq!(lapsed[0].0, pull);
        assert!(lapsed[0].1.contains("it checks in every 10 s"), "{}", lapsed[0].1);
        // A device declaring its interval is believed; a quiet MQTT device connected a whole day
        // is not (its broker session says when it leaves), nor is it by time at all.
        let slow = "aa:bb:cc:00:00:04";
        inv.sight(
            &Sighting { interval_secs: Some(600), transport: Some(Transport::Pull), ..sighting(slow, "checkin") },
            0,
        );
        let day = 86_400_000;
        let lapsed: Vec<String> = inv.lapsed(day).into_iter().map(|(m, _)| m).collect();
        assert!(lapsed.contains(&slow.to_owned()) && lapsed.contains(&other.to_owned()), "{lapsed:?}");
        assert!(!lapsed.contains(&mqtt.to_owned()), "an MQTT device is not timed out");
        assert!(inv.lapsed(30 * 60_000).iter().all(|(m, _)| m != slow), "600 s × 3 + 30 s not yet passed");
        assert_eq!(inv.of_broker_client("dev-2"), vec![mqtt.to_owned()]);
        assert!(inv.of_broker_client("dev-9").is_empty());
    }

    #[test]
    fn each_source_keeps_its_own_record_and_staleness() {
        let mut inv = Inventory::default();
        let mac = "a8:03:2a:b1:23:45";
        let shelly = Sighting {
            family: Some(Family::Shelly),
            generation: Some(2),
            version: Some("1.1.0".into()),
            ip: Some("10.0.0.7".into()),
            ..sighting(mac, "mdns")
        };
        inv.sight(&shelly, 1_000);
        // Gen2+'s `<id>/online` says neither generation nor version: both are kept.
        inv.sight(&Sighting { family: Some(Family::Shelly), ..sighting(mac, "mqtt") }, 5_000);
        let d = inv.get(mac).map(Entry::snapshot).unwrap();
        assert_eq!((d.family, d.generation, d.version.as_deref()), (Family::Shelly, Some(2), Some("1.1.0")));
        let seen: Vec<(&str, Option<&str>, bool)> =
            d.seen.iter().map(|s| (s.source.as_str(), s.version.as_deref(), s.online)).collect();
        assert_eq!(seen, [("mdns", Some("1.1.0"), true), ("mqtt", None, true)]);
        assert_eq!(d.seen[0].last_seen, clock::rfc3339(1_000));
        assert_eq!(d.seen[1].first_seen, clock::rfc3339(5_000));
        // MQTT presence has a liveness of its own (a Last Will): no time-out while it says here.
        assert_eq!(inv.get(mac).and_then(Entry::stale_at_ms), None);
        assert!(inv.lapsed(86_400_000).is_empty());
        // Its Last Will: that source says it left; mDNS alone then times out in ten minutes.
        assert!(inv.set_offline(mac, Some("mqtt")));
        inv.sight(&sighting(mac, "mdns"), 20_000);
        let d = inv.get(mac).map(Entry::snapshot).unwrap();
        assert!(d.online && !d.seen[1].online, "{:?}", d.seen);
        assert_eq!(inv.get(mac).and_then(Entry::stale_at_ms), Some(20_000 + OFFLINE_AFTER_MS));
        assert!(inv.lapsed(20_000 + OFFLINE_AFTER_MS - 1).is_empty());
        assert_eq!(inv.lapsed(20_000 + OFFLINE_AFTER_MS).len(), 1);
    }

    #[test]
    fn the_newest_claim_to_an_address_holds_it() {
        let mut inv = Inventory::default();
        let (a, b) = ("aa:bb:cc:00:00:0a", "aa:bb:cc:00:00:0b");
        let at = |mac: &str, ip: &str, source: &str| Sighting {
            ip: Some(ip.into()),
            family: Some(Family::Tasmota),
            ..sighting(mac, source)
        };
        inv.sight(&at(a, "10.0.0.5", "probe"), 0);
        inv.sight(&at(b, "10.0.0.6", "mdns"), 0);
        // DHCP swaps them: B now answers at A's address.
        let c = inv.sight(&at(b, "10.0.0.5", "mdns"), 1_000);
        assert_eq!(c.ip_taken_from.as_deref(), Some(a));
        fn ip(inv: &Inventory, mac: &str) -> Option<String> {
            inv.get(mac).and_then(|e| e.device.ip.clone())
        }
        assert_eq!((ip(&inv, a), ip(&inv, b)), (None, Some("10.0.0.5".into())), "nothing meant for A goes to B");
        assert_eq!(inv.get(a).map(|e| e.seen[0].ip.clone()), Some(None));
        // A says where it is now: nobody held that address.
        assert_eq!(inv.sight(&at(a, "10.0.0.6", "probe"), 2_000).ip_taken_from, None);
        assert_eq!(ip(&inv, a), Some("10.0.0.6".into()));
        // The same device again at its address takes nothing from anyone.
        assert_eq!(inv.sight(&at(b, "10.0.0.5", "mdns"), 3_000).ip_taken_from, None);
        inv.forget(b);
        assert_eq!(
            inv.sight(&at(a, "10.0.0.5", "probe"), 4_000).ip_taken_from,
            None,
            "a forgotten device holds nothing"
        );
    }

    #[test]
    fn channels_come_from_the_device_then_its_labels_then_stable() {
        let mut inv = Inventory::default();
        let mac = "aa:bb:cc:00:00:01";
        inv.sight(&Sighting { labels: Some(vec!["line-a".into(), "line-b".into()]), ..sighting(mac, "checkin") }, 0);
        let ch = |inv: &Inventory| inv.get(mac).map(|e| (e.device.channel, e.device.channel_from.clone()));
        assert_eq!(ch(&inv), Some((Channel::Stable, None)));
        inv.set_label_channel("line-a", Some(Channel::Stable));
        assert_eq!(ch(&inv), Some((Channel::Stable, Some("label:line-a".into()))));
        inv.set_label_channel("line-b", Some(Channel::Beta));
        assert_eq!(ch(&inv), Some((Channel::Beta, Some("label:line-b".into()))), "beta wins when labels disagree");
        inv.set_channel(mac, Some(Channel::Stable));
        assert_eq!(ch(&inv), Some((Channel::Stable, Some("device".into()))), "the device's own setting wins");
        inv.set_channel(mac, None);
        inv.sight(&Sighting { labels: Some(vec!["line-a".into()]), ..sighting(mac, "checkin") }, 1);
        assert_eq!(ch(&inv), Some((Channel::Stable, Some("label:line-a".into()))));
    }

    #[test]
    fn labels_people_set_survive_check_ins() {
        let mut inv = Inventory::default();
        let mac = "aa:bb:cc:00:00:01";
        inv.sight(&Sighting { labels: Some(vec!["reported".into()]), ..sighting(mac, "checkin") }, 0);
        inv.edit_labels(mac, &["site-a".into()], &[]);
        let labels = |inv: &Inventory| inv.get(mac).map(|e| e.device.labels.clone()).unwrap_or_default();
        assert_eq!(labels(&inv), vec!["reported".to_string(), "site-a".to_string()]);
        let c = inv.sight(&Sighting { labels: Some(vec![]), ..sighting(mac, "checkin") }, 1);
        assert!(c.labels_changed);
        assert_eq!(labels(&inv), vec!["site-a".to_string()], "a check-in never removes a label people set");
        assert_eq!(inv.edit_labels(mac, &[], &["reported".into()]), Some(vec!["site-a".to_string()]));
    }

    /// A device as the store and every reader see it, with the times and intervals it keeps.
    type Kept = (Device, i64, Option<i64>, Option<i64>, bool, Option<Transport>);

    /// The inventory's state, device by device.
    fn state(inv: &Inventory) -> Vec<Kept> {
        let mut out: Vec<_> = inv
            .iter()
            .map(|e| {
                (
                    e.snapshot(),
                    e.last_seen_ms,
                    e.learned_interval_ms.map(|l| (l * 1000.0) as i64),
                    e.declared_interval_ms,
                    e.last_seen_unsaved,
                    e.transport.clone(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.mac.cmp(&b.0.mac));
        out
    }

    #[test]
    fn a_repeated_check_in_is_merged_as_in_full() {
        // Two inventories take the same random mix of check-ins (often repeated, sometimes
        // changed in one field), other sources' sightings, address take-overs, going offline,
        // channel, label and auth changes; one merges every check-in in full. After every step
        // both must answer the same and hold the same, or the shortcut changed what the
        // inventory believes.
        let mut fast = Inventory::default();
        let mut full = Inventory { merge_every_checkin: true, ..Inventory::default() };
        let macs = ["02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut now = 10_000;
        let mut repeats = 0;
        for step in 0..20_000 {
            now += 200 + next(3_000) as i64;
            let mac = macs[next(3) as usize];
            let n = macs.iter().position(|m| *m == mac).unwrap_or_default();
            let (c_fast, c_full) = match next(20) {
                0..=13 => {
                    // A check-in: mostly what the device always says, now and then one field
                    // otherwise.
                    let mut s = Sighting {
                        device_id: Some(format!("dev-{n}")),
                        family: Some(Family::Native),
                        model: Some("demo".into()),
                        chip: Some("esp32".into()),
                        version: Some("1.0.0".into()),
                        ip: Some(format!("10.0.0.{n}")),
                        transport: Some(Transport::Pull),
                        ..sighting(mac, "checkin")
                    };
                    match next(12) {
                        0 => s.version = Some("2.0.0".into()),
                        1 => s.ip = Some("10.0.0.9".into()),
                        2 => s.labels = Some(vec!["b".into(), "a".into()]),
                        3 => s.interval_secs = Some(5),
                        4 => s.device_id = Some("renamed".into()),
                        5 => s.secure_version = Some(2),
                        6 => s.model = None,
                        _ => {}
                    }
                    if fast.get(mac).and_then(|e| e.repeat).is_some_and(|r| r.said == fast.fingerprint(&s)) {
                        repeats += 1;
                    }
                    (fast.sight(&s, now), full.sight(&s, now))
                }
                14 | 15 => {
                    // A vendor's view of the device (mDNS), perhaps taking another's address.
                    let s = Sighting {
                        family: Some(Family::Tasmota),
                        version: Some(format!("13.{}", next(2))),
                        ip: Some(format!("10.0.0.{}", next(4))),
                        ..sighting(mac, "mdns")
                    };
                    (fast.sight(&s, now), full.sight(&s, now))
                }
                16 => {
                    let source = ["mdns", "checkin"][next(2) as usize];
                    let (a, b) = (fast.set_offline(mac, Some(source)), full.set_offline(mac, Some(source)));
                    assert_eq!(a, b, "step {step}: set_offline");
                    (Change::default(), Change::default())
                }
                17 => {
                    let ch = [None, Some(Channel::Beta)][next(2) as usize];
                    assert_eq!(fast.set_channel(mac, ch), full.set_channel(mac, ch), "step {step}: set_channel");
                    (Change::default(), Change::default())
                }
                18 => {
                    let add = vec!["a".to_string()];
                    assert_eq!(fast.edit_labels(mac, &add, &[]), full.edit_labels(mac, &add, &[]), "step {step}");
                    fast.set_label_channel("a", Some(Channel::Beta));
                    full.set_label_channel("a", Some(Channel::Beta));
                    (Change::default(), Change::default())
                }
                _ => {
                    let auth = [DeviceAuth::Enrolled, DeviceAuth::None][next(2) as usize];
                    assert_eq!(fast.set_auth(mac, auth), full.set_auth(mac, auth), "step {step}: set_auth");
                    (Change::default(), Change::default())
                }
            };
            assert_eq!(c_fast, c_full, "step {step}: what the sighting changed");
            assert_eq!(state(&fast), state(&full), "step {step}: the inventory");
            if next(50) == 0 {
                let (mut a, mut b) = (fast.take_seen(), full.take_seen());
                a.sort();
                b.sort();
                assert_eq!(a, b, "step {step}: the times owed");
            }
        }
        // The shortcut was taken, and often (1,986 of the ~14,000 check-ins: this mix changes
        // something between two check-ins far more often than a fleet does).
        assert!(repeats > 1_500, "only {repeats} repeated check-ins");
    }

    #[test]
    fn a_repeated_check_in_moves_only_its_times() {
        let mut inv = Inventory::default();
        let mac = "02:00:00:00:00:01";
        let s = Sighting {
            device_id: Some("dev".into()),
            version: Some("1.0.0".into()),
            ip: Some("10.0.0.1".into()),
            ..sighting(mac, "checkin")
        };
        assert!(inv.sight(&s, 1_000).created);
        assert!(inv.get(mac).and_then(|e| e.repeat).is_some());
        assert_eq!(inv.sight(&s, 6_000), Change::default());
        let e = inv.get(mac).unwrap();
        assert_eq!((e.last_seen_ms, e.seen[0].last_ms, e.seen[0].first_ms), (6_000, 6_000, 1_000));
        assert_eq!(e.learned_interval_ms, Some(5_000.0));
        assert!(e.last_seen_unsaved);
        // Anything else that changes the entry makes the next check-in merge in full: here
        // mDNS says another version, and the check-in's own comes back.
        inv.sight(&Sighting { version: Some("9.9.9".into()), ..sighting(mac, "mdns") }, 7_000);
        assert!(inv.get(mac).and_then(|e| e.repeat).is_none());
        let c = inv.sight(&s, 8_000);
        assert!(c.version_changed && c.fields_changed, "{c:?}");
        assert_eq!(inv.get(mac).and_then(|e| e.device.version.clone()).as_deref(), Some("1.0.0"));
        assert!(inv.set_offline(mac, Some("checkin")));
        assert!(inv.sight(&s, 9_000).came_online);
    }
}
