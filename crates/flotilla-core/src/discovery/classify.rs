//! What a device announces about itself, turned into one [`Observation`]: from mDNS records
//! ([`mdns`]), vendor MQTT discovery messages ([`tasmota_config`], [`shelly_announce`],
//! [`shelly_online`]). Pure functions of what arrived, so every rule is tested against the
//! records real firmware publishes (`shared/reference/protocols.md` §1.8, §2.5, §3.7, §6, §7.6).
//!
//! Everything here comes from an unauthenticated LAN: every value is bounded and checked
//! ([`clean`]); a record that does not look like a device of a known family is `None`, never
//! an error that reaches the engine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use flotilla_proto::Family;
use flotilla_proto::device::normalize_mac;
use serde::Deserialize;

/// Longest value taken from a TXT record or a discovery message; longer ones are dropped.
pub const MAX_VALUE: usize = 64;

/// One source's view of one device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// `aa:bb:cc:dd:ee:ff` when the record carries it (or the device id embeds it).
    pub mac: Option<String>,
    /// What identifies the record until its MAC is known: the mDNS instance, the MQTT topic id.
    pub key: String,
    pub family: Option<Family>,
    /// Shelly's generation: 1 for Gen1, 2, 3, 4 for the RPC generations.
    pub generation: Option<u8>,
    /// The device's own id (Shelly id, Tasmota topic, ESPHome/ArduinoOTA host name).
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub chip: Option<String>,
    /// The firmware version the device runs, as the family spells it.
    pub version: Option<String>,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    /// False for a goodbye / offline announcement.
    pub online: bool,
}

/// An mDNS service instance as resolved: what [`mdns`] needs, free of the mDNS library's types.
#[derive(Debug, Clone, Default)]
pub struct MdnsRecord {
    /// `_esphomelib._tcp.local.`
    pub service: String,
    /// `living-room._esphomelib._tcp.local.`
    pub fullname: String,
    /// `living-room.local.`
    pub host: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    pub txt: BTreeMap<String, String>,
}

impl MdnsRecord {
    /// The instance label (the part of the full name before the service type).
    pub fn instance(&self) -> &str {
        self.fullname.strip_suffix(&self.service).map_or(&self.fullname, |s| s.trim_end_matches('.'))
    }

    fn get(&self, key: &str) -> Option<String> {
        self.txt.get(key).and_then(|v| clean(v))
    }

    /// The first IPv4 address (devices of these families are IPv4), else any.
    fn ip(&self) -> Option<IpAddr> {
        let mut v: Vec<IpAddr> = self.addresses.clone();
        v.sort_by_key(|a| (!a.is_ipv4(), *a));
        v.into_iter().next()
    }
}

/// The service types browsed for devices.
pub const BROWSED: [&str; 5] =
    ["_esphomelib._tcp.local.", "_arduino._tcp.local.", "_shelly._tcp.local.", "_http._tcp.local.", FLOTILLA];
/// Flotilla itself and Flotilla-client devices share this type; devices carry TXT `id`.
const FLOTILLA: &str = "_flotilla._tcp.local.";

/// A value fit to keep: trimmed, 1..=[`MAX_VALUE`] bytes, printable, no control characters.
pub fn clean(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v.len() <= MAX_VALUE && v.chars().all(|c| !c.is_control())).then(|| v.to_owned())
}

/// A MAC embedded as the last 12 hex digits of an id (`shellyplus1pm-a8032ab12345`,
/// `shellyswitch25-349454793BA5`). Older Gen1 ids carry only 6 digits: `None`.
pub fn mac_in_id(id: &str) -> Option<String> {
    let tail = id.rsplit('-').next()?;
    (tail.len() == 12).then(|| normalize_mac(tail)).flatten()
}

/// The version inside a Shelly `fw_id` / `fw` (`20230913-112234/v1.14.0-gcb84623` → `1.14.0`,
/// `20231219-133934/1.1.0-g34b5d4f` → `1.1.0`, `20191127-095418/v1.5.6@0d769d69` → `1.5.6`).
pub fn shelly_version(fw_id: &str) -> Option<String> {
    let after = fw_id.split_once('/').map_or(fw_id, |(_, v)| v);
    let v = after.strip_prefix('v').unwrap_or(after);
    let end = v.find(['-', '@', '/', ' ']).unwrap_or(v.len());
    let v = &v[..end];
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') && v.contains('.')).then(|| v.to_owned())
}

/// Classifies a resolved mDNS record; `None` when it is not a device of a family we know.
pub fn mdns(r: &MdnsRecord) -> Option<Observation> {
    let instance = clean(r.instance()).unwrap_or_default();
    let host = r.host.trim_end_matches('.').trim_end_matches(".local");
    let mut o = Observation {
        key: format!("mdns:{}", r.fullname.to_ascii_lowercase()),
        ip: r.ip(),
        port: Some(r.port),
        online: true,
        ..Observation::default()
    };
    let service = r.service.to_ascii_lowercase();
    match service.as_str() {
        "_esphomelib._tcp.local." => {
            o.family = Some(Family::Esphome);
            o.mac = r.get("mac").and_then(|m| normalize_mac(&m));
            o.device_id = clean(host).or_else(|| Some(instance.clone()));
            o.name = r.get("friendly_name").or_else(|| Some(instance.clone()));
            // The user's firmware version when the project declares one, else ESPHome's.
            o.version = r.get("project_version").or_else(|| r.get("version"));
            o.model = r.get("project_name").or_else(|| r.get("board"));
            o.chip = r.get("platform").map(|p| p.to_ascii_lowercase());
        }
        "_arduino._tcp.local." => {
            o.family = Some(Family::Arduino);
            o.device_id = Some(instance.clone());
            o.name = Some(instance.clone());
            o.model = r.get("board");
            // The OTA port hints the core (§1.1): 8266 ESP8266, 3232 ESP32.
            o.chip = match r.port {
                8266 => Some("esp8266".into()),
                3232 => Some("esp32".into()),
                _ => None,
            };
        }
        "_shelly._tcp.local." => shelly(r, &instance, &mut o),
        "_http._tcp.local." => {
            if instance.to_ascii_lowercase().starts_with("shelly") {
                shelly(r, &instance, &mut o);
            } else if r.get("devicetype").is_some_and(|t| t.eq_ignore_ascii_case("tasmota")) {
                o.family = Some(Family::Tasmota);
                o.device_id = clean(host).or_else(|| Some(instance.clone()));
                o.name = Some(instance.clone());
            } else {
                return None;
            }
        }
        FLOTILLA => {
            // Other Flotilla engines advertise `api`; devices advertise their `id`.
            let id = r.get("id")?;
            o.family = Some(Family::Native);
            o.mac = r.get("mac").and_then(|m| normalize_mac(&m));
            o.device_id = Some(id);
            o.name = Some(instance.clone());
            o.model = r.get("model");
            o.chip = r.get("chip");
            o.version = r.get("version");
        }
        _ => return None,
    }
    Some(o)
}

/// A Shelly's records: Gen2+ publish `_shelly._tcp` (and `_http._tcp`) with TXT `gen`; Gen1
/// publishes `_http._tcp` without it.
fn shelly(r: &MdnsRecord, instance: &str, o: &mut Observation) {
    o.family = Some(Family::Shelly);
    o.generation = match r.get("gen") {
        Some(g) => g.parse().ok().filter(|g| (2..=9).contains(g)),
        None if r.service.eq_ignore_ascii_case("_http._tcp.local.") => Some(1),
        None => None,
    };
    let id = r.get("id").unwrap_or_else(|| instance.to_owned());
    o.mac = mac_in_id(&id).or_else(|| mac_in_id(instance));
    o.device_id = Some(id);
    o.name = Some(instance.to_owned());
    o.model = r.get("app");
    o.chip = r.get("arch");
    o.version = r.get("ver").or_else(|| r.get("fw_id").and_then(|f| shelly_version(&f)));
}

/// Tasmota's retained `tasmota/discovery/<MAC>/config` (§3.7). An empty payload (discovery
/// switched off) is `None`.
pub fn tasmota_config(topic_mac: &str, payload: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Config {
        ip: Option<String>,
        dn: Option<String>,
        hn: Option<String>,
        mac: Option<String>,
        md: Option<String>,
        sw: Option<String>,
        t: Option<String>,
    }
    let c: Config = serde_json::from_slice(payload).ok()?;
    let mac = c.mac.as_deref().and_then(normalize_mac).or_else(|| normalize_mac(topic_mac))?;
    Some(Observation {
        key: format!("mqtt:tasmota:{mac}"),
        mac: Some(mac),
        family: Some(Family::Tasmota),
        device_id: c.t.as_deref().and_then(clean),
        name: c.dn.as_deref().and_then(clean).or_else(|| c.hn.as_deref().and_then(clean)),
        model: c.md.as_deref().and_then(clean),
        version: c.sw.as_deref().and_then(clean),
        ip: c.ip.as_deref().and_then(|ip| ip.parse().ok()),
        online: true,
        ..Observation::default()
    })
}

/// Tasmota's `tele/<topic>/INFO1` (`{"Info1":{"Module","Version":"14.3.0(release-tasmota)",…}}`)
/// and `INFO2` (`{"Info2":{"WebServerMode","Hostname","IPAddress"}}`), published on each MQTT
/// connect (§3.1). They name the device by its topic only: `mac` is the one the inventory knows
/// for that topic. `None` for anything else.
pub fn tasmota_info(mac: &str, payload: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "Info1")]
        info1: Option<Info1>,
        #[serde(rename = "Info2")]
        info2: Option<Info2>,
    }
    #[derive(Deserialize)]
    struct Info1 {
        #[serde(rename = "Version")]
        version: Option<String>,
    }
    #[derive(Deserialize)]
    struct Info2 {
        #[serde(rename = "IPAddress")]
        ip: Option<String>,
    }
    let i: Info = serde_json::from_slice(payload).ok()?;
    let version = i.info1.as_ref().and_then(|i| i.version.as_deref()).map(|v| v.split('(').next().unwrap_or(v));
    let ip = i.info2.as_ref().and_then(|i| i.ip.as_deref()).and_then(|ip| ip.parse().ok());
    if version.is_none() && ip.is_none() {
        return None;
    }
    let mac = normalize_mac(mac)?;
    Some(Observation {
        key: format!("mqtt:tasmota:{mac}"),
        mac: Some(mac),
        family: Some(Family::Tasmota),
        version: version.and_then(clean),
        ip,
        online: true,
        ..Observation::default()
    })
}

/// Shelly Gen1's `shellies/announce`:
/// `{"id":"shellyplug-s-7A3F1B","model":"SHPLG-S","mac":"…","ip":"…","fw_ver":"…"}`.
pub fn shelly_announce(payload: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Announce {
        id: String,
        model: Option<String>,
        mac: Option<String>,
        ip: Option<String>,
        fw_ver: Option<String>,
    }
    let a: Announce = serde_json::from_slice(payload).ok()?;
    let id = clean(&a.id)?;
    let mac = a.mac.as_deref().and_then(normalize_mac).or_else(|| mac_in_id(&id))?;
    Some(Observation {
        key: format!("mqtt:shelly:{mac}"),
        mac: Some(mac),
        family: Some(Family::Shelly),
        generation: Some(1),
        name: Some(id.clone()),
        device_id: Some(id),
        model: a.model.as_deref().and_then(clean),
        version: a.fw_ver.as_deref().and_then(shelly_version),
        ip: a.ip.as_deref().and_then(|ip| ip.parse().ok()),
        online: true,
        ..Observation::default()
    })
}

/// A Shelly's `<id>/online` (Gen2+: the topic prefix defaults to the device id) or Gen1's
/// `shellies/<id>/online`: `true` / `false`. Only ids that are Shelly ids with a MAC count.
pub fn shelly_online(id: &str, payload: &[u8], gen1: bool) -> Option<Observation> {
    let id = clean(id)?;
    if !id.to_ascii_lowercase().starts_with("shelly") {
        return None;
    }
    let mac = mac_in_id(&id)?;
    let online = match payload.trim_ascii() {
        b"true" => true,
        b"false" => false,
        _ => return None,
    };
    Some(Observation {
        key: format!("mqtt:shelly:{mac}"),
        mac: Some(mac),
        family: Some(Family::Shelly),
        // Gen2+'s `<id>/online` does not say which of the RPC generations.
        generation: gen1.then_some(1),
        name: Some(id.clone()),
        device_id: Some(id),
        online,
        ..Observation::default()
    })
}

/// A Shelly Gen2+ notification on `<prefix>/events/rpc` (§7.2): an RPC frame
/// `{"src":"shellyplus1pm-a8032ab12345","dst":"…/events","method":"NotifyStatus"|"NotifyFullStatus"|"NotifyEvent","params":{…}}`.
/// `src` is the device id (with its MAC) whatever the topic prefix; a full status also carries
/// `sys.mac` and `wifi.sta_ip`. The device is online: it is talking.
pub fn shelly_rpc_event(payload: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Frame {
        src: String,
        method: String,
        #[serde(default)]
        params: Option<serde_json::Value>,
    }
    let f: Frame = serde_json::from_slice(payload).ok()?;
    if !f.method.starts_with("Notify") {
        return None;
    }
    let id = clean(&f.src)?;
    if !id.to_ascii_lowercase().starts_with("shelly") {
        return None;
    }
    let params = f.params.unwrap_or_default();
    let mac = params["sys"]["mac"].as_str().and_then(normalize_mac).or_else(|| mac_in_id(&id))?;
    Some(Observation {
        key: format!("mqtt:shelly:{mac}"),
        mac: Some(mac),
        family: Some(Family::Shelly),
        name: Some(id.clone()),
        device_id: Some(id),
        ip: params["wifi"]["sta_ip"].as_str().and_then(|ip| ip.parse().ok()),
        online: true,
        ..Observation::default()
    })
}

/// ESPHome's MQTT discovery (`esphome/discover/<name>`, when `discovery` is on):
/// `{"ip","name","port","version","mac","platform","board","network","project_name","project_version"}`.
pub fn esphome_discover(payload: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Discover {
        ip: Option<String>,
        name: Option<String>,
        version: Option<String>,
        mac: String,
        platform: Option<String>,
        board: Option<String>,
        project_name: Option<String>,
        project_version: Option<String>,
    }
    let d: Discover = serde_json::from_slice(payload).ok()?;
    let mac = normalize_mac(&d.mac)?;
    let name = d.name.as_deref().and_then(clean);
    Some(Observation {
        key: format!("mqtt:esphome:{mac}"),
        mac: Some(mac),
        family: Some(Family::Esphome),
        device_id: name.clone(),
        name,
        model: d.project_name.as_deref().and_then(clean).or_else(|| d.board.as_deref().and_then(clean)),
        chip: d.platform.as_deref().and_then(clean).map(|p| p.to_ascii_lowercase()),
        version: d.project_version.as_deref().and_then(clean).or_else(|| d.version.as_deref().and_then(clean)),
        ip: d.ip.as_deref().and_then(|ip| ip.parse().ok()),
        online: true,
        ..Observation::default()
    })
}

/// A Shelly's `GET /shelly` (the same as Gen2+'s `Shelly.GetDeviceInfo`; never needs auth):
/// Gen1 `{"type","mac","auth","fw"}`, Gen2+ `{"id","mac","model","gen","fw_id","ver","app","auth_en"}`.
/// Returns the observation and whether the device protects the rest of its API with a password.
pub fn shelly_info(body: &[u8], ip: Option<IpAddr>) -> Option<(Observation, bool)> {
    #[derive(Deserialize)]
    struct Info {
        mac: String,
        // Gen1
        #[serde(rename = "type")]
        kind: Option<String>,
        auth: Option<bool>,
        fw: Option<String>,
        // Gen2+
        id: Option<String>,
        model: Option<String>,
        #[serde(rename = "gen")]
        generation: Option<u8>,
        ver: Option<String>,
        fw_id: Option<String>,
        app: Option<String>,
        auth_en: Option<bool>,
        name: Option<String>,
    }
    let i: Info = serde_json::from_slice(body).ok()?;
    let mac = normalize_mac(&i.mac)?;
    let generation = i.generation.filter(|g| (2..=9).contains(g));
    let gen2 = generation.is_some();
    if !gen2 && i.kind.is_none() {
        return None;
    }
    let o = Observation {
        key: format!("probe:shelly:{mac}"),
        family: Some(Family::Shelly),
        generation: Some(generation.unwrap_or(1)),
        device_id: i.id.as_deref().and_then(clean),
        name: i.name.as_deref().and_then(clean).or_else(|| i.id.as_deref().and_then(clean)),
        model: if gen2 { i.model.as_deref().or(i.app.as_deref()) } else { i.kind.as_deref() }.and_then(clean),
        version: i
            .ver
            .as_deref()
            .and_then(clean)
            .or_else(|| i.fw_id.as_deref().or(i.fw.as_deref()).and_then(shelly_version)),
        mac: Some(mac),
        ip,
        online: true,
        ..Observation::default()
    };
    Some((o, i.auth.or(i.auth_en).unwrap_or(false)))
}

/// A Shelly Gen1's `GET /settings` (behind HTTP Basic when `login.enabled`): what `/shelly` lacks —
/// `name` (null until set), `device.hostname` (`shelly1-AABBCCDDEEFF`), and again `fw`,
/// `device.type`, `device.mac`. `None` unless it has a `device` object with a MAC.
pub fn shelly_settings(body: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Settings {
        device: SettingsDevice,
        name: Option<String>,
        fw: Option<String>,
    }
    #[derive(Deserialize)]
    struct SettingsDevice {
        #[serde(rename = "type")]
        kind: Option<String>,
        mac: String,
        hostname: Option<String>,
    }
    let s: Settings = serde_json::from_slice(body).ok()?;
    let mac = normalize_mac(&s.device.mac)?;
    Some(Observation {
        key: format!("probe:shelly:{mac}"),
        family: Some(Family::Shelly),
        generation: Some(1),
        device_id: s.device.hostname.as_deref().and_then(clean),
        name: s.name.as_deref().and_then(clean),
        model: s.device.kind.as_deref().and_then(clean),
        version: s.fw.as_deref().and_then(shelly_version),
        mac: Some(mac),
        online: true,
        ..Observation::default()
    })
}

/// Completes `o` (from `/shelly`) with what a Gen1's `/settings` said: its name and host name
/// win; model, version and MAC only fill gaps. A `/settings` of another device changes nothing.
pub fn with_shelly_settings(mut o: Observation, s: &Observation) -> Observation {
    if o.mac.is_some() && o.mac != s.mac {
        return o;
    }
    o.name = s.name.clone().or(o.name);
    o.device_id = s.device_id.clone().or(o.device_id);
    o.model = o.model.or_else(|| s.model.clone());
    o.version = o.version.or_else(|| s.version.clone());
    o.mac = o.mac.or_else(|| s.mac.clone());
    o
}

/// The first complete event of a `text/event-stream` (lines end in CRLF, LF or CR; an event ends
/// at a blank line; blocks without `data`, like the lone CRLF ESP-IDF's server opens with, are
/// skipped): its type (`message` when unnamed) and data. `None` while no event is complete.
pub fn sse_first_event(stream: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(stream);
    let (mut event, mut data): (Option<String>, Option<String>) = (None, None);
    let mut rest: &str = &text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if let Some(d) = data.take() {
                return Some((event.take().unwrap_or_else(|| "message".into()), d));
            }
            event = None;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => {
                let d = data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(value);
            }
            _ => {}
        }
    }
    None
}

/// ESPHome's `web_server` greets each `/events` client with a `ping` event whose data is the
/// node's configuration (`web_server.cpp` `get_config_json`): `{"title","comment","ota","log",
/// "lang"}` — `title` the friendly name, else the node name. Those keys together, with their
/// types, are what tells ESPHome apart from any other event stream. It carries no MAC, no
/// version; `comment` is free text of the user's, not kept.
pub fn esphome_ping(event: &str, data: &str, ip: Option<IpAddr>) -> Option<Observation> {
    #[derive(Deserialize)]
    struct Ping {
        title: String,
        #[allow(dead_code)]
        ota: bool,
        #[allow(dead_code)]
        log: bool,
        #[allow(dead_code)]
        lang: String,
    }
    if event != "ping" {
        return None;
    }
    let p: Ping = serde_json::from_str(data).ok()?;
    let name = clean(&p.title)?;
    Some(Observation {
        key: format!("probe:esphome:{name}"),
        family: Some(Family::Esphome),
        name: Some(name),
        ip,
        online: true,
        ..Observation::default()
    })
}

/// Tasmota's `GET /cm?cmnd=Status%200`: `Status.Topic`, `Status.DeviceName`,
/// `StatusFWR.Version` (`14.3.0(release-tasmota)`), `StatusFWR.Hardware`, `StatusNET.{Mac,IPAddress,Hostname}`.
pub fn tasmota_status(body: &[u8]) -> Option<Observation> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Status {
        topic: Option<String>,
        device_name: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Fwr {
        version: Option<String>,
        hardware: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Net {
        mac: String,
        #[serde(rename = "IPAddress")]
        ip_address: Option<String>,
    }
    #[derive(Deserialize)]
    struct Status0 {
        #[serde(rename = "Status")]
        status: Option<Status>,
        #[serde(rename = "StatusFWR")]
        fwr: Option<Fwr>,
        #[serde(rename = "StatusNET")]
        net: Net,
    }
    let s: Status0 = serde_json::from_slice(body).ok()?;
    let mac = normalize_mac(&s.net.mac)?;
    let version = s.fwr.as_ref().and_then(|f| f.version.as_deref()).map(|v| v.split('(').next().unwrap_or(v));
    let chip = s.fwr.as_ref().and_then(|f| f.hardware.as_deref()).map(|h| {
        let h = h.to_ascii_lowercase();
        if h.starts_with("esp8266") || h.starts_with("esp8285") {
            "esp8266".to_owned()
        } else {
            h.split_whitespace().next().unwrap_or_default().to_owned()
        }
    });
    Some(Observation {
        key: format!("probe:tasmota:{mac}"),
        mac: Some(mac),
        family: Some(Family::Tasmota),
        device_id: s.status.as_ref().and_then(|s| s.topic.as_deref()).and_then(clean),
        name: s.status.as_ref().and_then(|s| s.device_name.as_deref()).and_then(clean),
        version: version.and_then(clean),
        chip: chip.as_deref().and_then(clean),
        ip: s.net.ip_address.as_deref().and_then(|ip| ip.parse().ok()),
        online: true,
        ..Observation::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(service: &str, instance: &str, port: u16, txt: &[(&str, &str)]) -> MdnsRecord {
        MdnsRecord {
            service: service.into(),
            fullname: format!("{instance}.{service}"),
            host: format!("{}.local.", instance.to_ascii_lowercase()),
            port,
            addresses: vec!["fe80::1".parse().unwrap(), "192.168.1.40".parse().unwrap()],
            txt: txt.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn esphome_records_give_mac_version_and_board() {
        // As `mdns_component.cpp` publishes them (§2.5).
        let r = record(
            "_esphomelib._tcp.local.",
            "living-room",
            6053,
            &[
                ("friendly_name", "Living room"),
                ("version", "2025.10.0"),
                ("mac", "a8032ab12345"),
                ("platform", "ESP32"),
                ("board", "esp32dev"),
                ("network", "wifi"),
            ],
        );
        let o = mdns(&r).unwrap();
        assert_eq!(o.family, Some(Family::Esphome));
        assert_eq!(o.mac.as_deref(), Some("a8:03:2a:b1:23:45"));
        assert_eq!(o.version.as_deref(), Some("2025.10.0"));
        assert_eq!(o.model.as_deref(), Some("esp32dev"));
        assert_eq!(o.chip.as_deref(), Some("esp32"));
        assert_eq!(o.name.as_deref(), Some("Living room"));
        assert_eq!(o.device_id.as_deref(), Some("living-room"));
        assert_eq!(o.ip, Some("192.168.1.40".parse().unwrap()), "IPv4 first");
        // A project version is the user's firmware version.
        let mut r = r;
        r.txt.insert("project_name".into(), "acme.sensor".into());
        r.txt.insert("project_version".into(), "1.4.2".into());
        let o = mdns(&r).unwrap();
        assert_eq!((o.version.as_deref(), o.model.as_deref()), (Some("1.4.2"), Some("acme.sensor")));
    }

    #[test]
    fn arduino_ota_records_say_board_and_core_but_no_mac() {
        let r = record(
            "_arduino._tcp.local.",
            "esp-pump",
            8266,
            &[("board", "nodemcuv2"), ("tcp_check", "no"), ("ssh_upload", "no"), ("auth_upload", "yes")],
        );
        let o = mdns(&r).unwrap();
        assert_eq!(o.family, Some(Family::Arduino));
        assert_eq!(o.mac, None);
        assert_eq!(o.model.as_deref(), Some("nodemcuv2"));
        assert_eq!(o.chip.as_deref(), Some("esp8266"));
        assert_eq!(o.device_id.as_deref(), Some("esp-pump"));
        assert_eq!(o.key, "mdns:esp-pump._arduino._tcp.local.");
    }

    #[test]
    fn shelly_gen1_and_gen2_are_told_apart_by_gen() {
        // A real Gen1 capture (§7.6).
        let r = record(
            "_http._tcp.local.",
            "shellyswitch25-349454793BA5",
            80,
            &[
                ("discoverable", "false"),
                ("fw_id", "20230913-112234/v1.14.0-gcb84623"),
                ("fw_version", "1.0"),
                ("app", "switch25"),
                ("arch", "esp8266"),
                ("id", "shellyswitch25-349454793BA5"),
            ],
        );
        let o = mdns(&r).unwrap();
        assert_eq!((o.family, o.generation), (Some(Family::Shelly), Some(1)));
        assert_eq!(o.mac.as_deref(), Some("34:94:54:79:3b:a5"));
        assert_eq!(o.version.as_deref(), Some("1.14.0"));
        assert_eq!(o.model.as_deref(), Some("switch25"));
        let r = record(
            "_shelly._tcp.local.",
            "ShellyPlus1PM-A8032AB12345",
            80,
            &[("gen", "2"), ("app", "Plus1PM"), ("ver", "1.1.0"), ("id", "shellyplus1pm-a8032ab12345")],
        );
        let o = mdns(&r).unwrap();
        assert_eq!((o.family, o.generation), (Some(Family::Shelly), Some(2)));
        assert_eq!(o.mac.as_deref(), Some("a8:03:2a:b1:23:45"));
        assert_eq!(o.version.as_deref(), Some("1.1.0"));
        // Gen2+ on `_http._tcp` carries gen too; Gen3 is Gen3.
        let r = record("_http._tcp.local.", "ShellyPro3EM-A8032AB12345", 80, &[("gen", "3")]);
        let o = mdns(&r).unwrap();
        assert_eq!((o.family, o.generation), (Some(Family::Shelly), Some(3)));
        // A generation that is not one: unknown, not Gen1.
        let r = record("_shelly._tcp.local.", "ShellyPro3EM-A8032AB12345", 80, &[("gen", "x")]);
        assert_eq!(mdns(&r).unwrap().generation, None);
    }

    #[test]
    fn tasmota_http_and_flotilla_clients_are_recognised_and_the_rest_is_not() {
        let r = record("_http._tcp.local.", "tasmota-1A2B3C-1234", 80, &[("devicetype", "tasmota")]);
        assert_eq!(mdns(&r).unwrap().family, Some(Family::Tasmota));
        let r = record(
            "_flotilla._tcp.local.",
            "pump-7",
            80,
            &[("id", "pump-7"), ("mac", "24:0a:c4:00:00:07"), ("model", "pump"), ("version", "1.2.0")],
        );
        let o = mdns(&r).unwrap();
        assert_eq!((o.family, o.mac.as_deref()), (Some(Family::Native), Some("24:0a:c4:00:00:07")));
        // Another Flotilla engine, a printer, an unknown service: not devices.
        assert_eq!(mdns(&record("_flotilla._tcp.local.", "Flotilla on x", 8080, &[("api", "/api/v1")])), None);
        assert_eq!(mdns(&record("_http._tcp.local.", "Office printer", 80, &[("note", "x")])), None);
        assert_eq!(mdns(&record("_ipp._tcp.local.", "shelly", 631, &[])), None);
    }

    #[test]
    fn hostile_values_are_dropped_not_kept() {
        let long = "9".repeat(MAX_VALUE + 1);
        let r = record(
            "_esphomelib._tcp.local.",
            "n",
            6053,
            &[("version", &long), ("mac", "not-a-mac"), ("board", "a\u{7}b"), ("platform", "ESP32")],
        );
        let o = mdns(&r).unwrap();
        assert_eq!((o.version, o.mac, o.model), (None, None, None));
        assert_eq!(shelly_version("garbage"), None);
        assert_eq!(shelly_version("20191127-095418/v1.5.6@0d769d69").as_deref(), Some("1.5.6"));
        assert_eq!(mac_in_id("shelly1-B929CC"), None, "six digits are not a MAC");
    }

    #[test]
    fn tasmota_discovery_config_gives_mac_version_and_topic() {
        let payload = br#"{"ip":"192.168.1.51","dn":"Kitchen plug","fn":["Plug",null],"hn":"kitchen-1234",
            "mac":"A4CF12345678","md":"Sonoff Basic","ty":0,"if":0,"ofln":"Offline","onln":"Online",
            "state":["OFF","ON","TOGGLE","HOLD"],"sw":"14.3.0","t":"kitchen","ft":"%prefix%/%topic%/",
            "tp":["cmnd","stat","tele"],"rl":[1,0],"ver":1}"#;
        let o = tasmota_config("A4CF12345678", payload).unwrap();
        assert_eq!(o.mac.as_deref(), Some("a4:cf:12:34:56:78"));
        assert_eq!((o.version.as_deref(), o.model.as_deref()), (Some("14.3.0"), Some("Sonoff Basic")));
        assert_eq!((o.device_id.as_deref(), o.name.as_deref()), (Some("kitchen"), Some("Kitchen plug")));
        assert_eq!(o.ip, Some("192.168.1.51".parse().unwrap()));
        assert_eq!(tasmota_config("A4CF12345678", b""), None);
        assert_eq!(tasmota_config("A4CF12345678", b"{not json"), None);
    }

    #[test]
    fn tasmota_info_messages_say_version_and_address() {
        let mac = "a4:cf:12:34:56:78";
        let o = tasmota_info(mac, br#"{"Info1":{"Module":"Sonoff Basic","Version":"14.3.0(release-tasmota)","FallbackTopic":"cmnd/DVES_345678_fb/","GroupTopic":"cmnd/tasmotas/"}}"#).unwrap();
        assert_eq!((o.family, o.version.as_deref(), o.ip), (Some(Family::Tasmota), Some("14.3.0"), None));
        let o = tasmota_info(
            mac,
            br#"{"Info2":{"WebServerMode":"Admin","Hostname":"kitchen-5678","IPAddress":"192.168.1.51"}}"#,
        )
        .unwrap();
        assert_eq!((o.version, o.ip), (None, Some("192.168.1.51".parse().unwrap())));
        assert_eq!(o.mac.as_deref(), Some(mac));
        assert!(
            tasmota_info(mac, br#"{"Info3":{"RestartReason":"Software/System restart","BootCount":12}}"#).is_none()
        );
        assert!(tasmota_info(mac, br#"{"Info2":{"IPAddress":"not an address"}}"#).is_none());
        assert!(tasmota_info(mac, b"garbage").is_none());
    }

    #[test]
    fn shelly_notifications_say_who_talks_and_where() {
        let full = br#"{"src":"shellyplus1pm-a8032ab12345","dst":"shellyplus1pm-a8032ab12345/events","method":"NotifyFullStatus",
            "params":{"ts":1733400000.12,"sys":{"mac":"A8032AB12345","restart_required":false,"available_updates":{}},
                      "wifi":{"sta_ip":"192.168.1.70","status":"got ip","ssid":"site","rssi":-60},"switch:0":{"id":0,"output":false}}}"#;
        let o = shelly_rpc_event(full).unwrap();
        assert_eq!(
            (o.family, o.mac.as_deref(), o.ip),
            (Some(Family::Shelly), Some("a8:03:2a:b1:23:45"), Some("192.168.1.70".parse().unwrap()))
        );
        assert_eq!(o.device_id.as_deref(), Some("shellyplus1pm-a8032ab12345"));
        let status = br#"{"src":"shellyplus1pm-a8032ab12345","dst":"custom/events","method":"NotifyStatus","params":{"ts":1.0,"switch:0":{"output":true}}}"#;
        let o = shelly_rpc_event(status).unwrap();
        assert_eq!((o.mac.as_deref(), o.ip, o.online), (Some("a8:03:2a:b1:23:45"), None, true));
        // A reply, another device's id, garbage: not a notification of a Shelly.
        assert!(
            shelly_rpc_event(br#"{"src":"shellyplus1pm-a8032ab12345","id":1,"method":"Switch.Set","params":{}}"#)
                .is_none()
        );
        assert!(shelly_rpc_event(br#"{"src":"kitchen-a8032ab12345","method":"NotifyStatus","params":{}}"#).is_none());
        assert!(shelly_rpc_event(b"{not json").is_none());
    }

    #[test]
    fn shelly_announce_and_online() {
        let o = shelly_announce(
            br#"{"id":"shellyplug-s-7A3F1B","model":"SHPLG-S","mac":"C45BBE7A3F1B","ip":"192.168.1.60",
                 "new_fw":false,"fw_ver":"20230913-113421/v1.14.0-gcb84623"}"#,
        )
        .unwrap();
        assert_eq!(o.mac.as_deref(), Some("c4:5b:be:7a:3f:1b"));
        assert_eq!((o.family, o.version.as_deref()), (Some(Family::Shelly), Some("1.14.0")));
        assert_eq!(o.generation, Some(1));
        let o = shelly_online("shellyplus1pm-a8032ab12345", b"false", false).unwrap();
        assert_eq!((o.family, o.generation, o.online), (Some(Family::Shelly), None, false));
        assert_eq!(shelly_online("kitchen", b"true", false), None, "not a Shelly id");
        assert_eq!(shelly_online("shellyplus1pm-a8032ab12345", b"maybe", false), None);
    }

    #[test]
    fn probe_answers_of_shelly_and_tasmota() {
        let (o, auth) = shelly_info(
            br#"{"type":"SHPLG-S","mac":"C45BBE7A3F1B","auth":true,"fw":"20230913-113421/v1.14.0-gcb84623",
                 "discoverable":true,"num_outputs":1}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            (o.family, o.generation, o.model.as_deref(), o.version.as_deref(), auth),
            (Some(Family::Shelly), Some(1), Some("SHPLG-S"), Some("1.14.0"), true)
        );
        let (o, auth) = shelly_info(
            br#"{"name":null,"id":"shellyplus1pm-a8032ab12345","mac":"A8032AB12345","slot":0,"model":"SNSW-001P16EU",
                 "gen":2,"fw_id":"20231219-133934/1.1.0-g34b5d4f","ver":"1.1.0","app":"Plus1PM","auth_en":false,"auth_domain":null}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            (o.family, o.generation, o.model.as_deref(), o.version.as_deref(), auth),
            (Some(Family::Shelly), Some(2), Some("SNSW-001P16EU"), Some("1.1.0"), false)
        );
        assert_eq!(o.mac.as_deref(), Some("a8:03:2a:b1:23:45"));
        assert!(shelly_info(b"<html>hello</html>", None).is_none());
        assert!(shelly_info(br#"{"mac":"A8032AB12345"}"#, None).is_none(), "neither generation's shape");
        let o = tasmota_status(
            br#"{"Status":{"Module":1,"DeviceName":"Kitchen","FriendlyName":["Kitchen"],"Topic":"kitchen","Power":0},
                 "StatusFWR":{"Version":"14.3.0(release-tasmota)","BuildDateTime":"2024-10-15T10:11:12","Boot":31,
                              "Core":"2_7_7","SDK":"2.2.2-dev(38a443e)","CpuFrequency":80,"Hardware":"ESP8266EX"},
                 "StatusNET":{"Hostname":"kitchen-5678","IPAddress":"192.168.1.51","Mac":"A4:CF:12:34:56:78"}}"#,
        )
        .unwrap();
        assert_eq!(
            (o.version.as_deref(), o.chip.as_deref(), o.device_id.as_deref()),
            (Some("14.3.0"), Some("esp8266"), Some("kitchen"))
        );
        assert!(tasmota_status(br#"{"WARNING":"Need user=<username>&password=<password>"}"#).is_none());
        let o = esphome_discover(
            br#"{"ip":"192.168.1.70","name":"garage","port":6053,"version":"2025.10.0","mac":"a8032ab10009",
                 "platform":"ESP32","board":"esp32dev","network":"wifi"}"#,
        )
        .unwrap();
        assert_eq!(
            (o.family, o.mac.as_deref(), o.version.as_deref()),
            (Some(Family::Esphome), Some("a8:03:2a:b1:00:09"), Some("2025.10.0"))
        );
    }

    #[test]
    fn shelly_gen1_settings_give_name_and_host_name_and_fill_gaps() {
        let s = shelly_settings(
            br#"{"device":{"type":"SHSW-25","mac":"A8032AB20001","hostname":"shellyswitch25-A8032AB20001","num_outputs":2},
                 "name":"Hall lights","fw":"20230913-112234/v1.14.0-gcb84623","login":{"enabled":true,"unprotected":false,"username":"admin"}}"#,
        )
        .unwrap();
        assert_eq!(
            (s.name.as_deref(), s.device_id.as_deref(), s.model.as_deref(), s.version.as_deref(), s.mac.as_deref()),
            (
                Some("Hall lights"),
                Some("shellyswitch25-A8032AB20001"),
                Some("SHSW-25"),
                Some("1.14.0"),
                Some("a8:03:2a:b2:00:01")
            )
        );
        let (info, _) = shelly_info(br#"{"type":"SHSW-25","mac":"A8032AB20001","auth":true}"#, None).unwrap();
        let o = with_shelly_settings(info.clone(), &s);
        assert_eq!((o.name.as_deref(), o.version.as_deref()), (Some("Hall lights"), Some("1.14.0")));
        let unnamed = shelly_settings(br#"{"device":{"mac":"A8032AB20001"},"name":null}"#).unwrap();
        assert_eq!(with_shelly_settings(info.clone(), &unnamed), info, "nothing new, nothing lost");
        let other = shelly_settings(br#"{"device":{"mac":"A8032AB29999"},"name":"Other"}"#).unwrap();
        assert_eq!(with_shelly_settings(info.clone(), &other), info, "another device's settings are not this one's");
        for bad in [&b"<html>"[..], br#"{"name":"x"}"#, br#"{"device":{"mac":"nope"}}"#, b"\xff\x00"] {
            assert!(shelly_settings(bad).is_none());
        }
    }

    #[test]
    fn the_first_server_sent_event_is_read_whatever_the_line_ends() {
        let esp_idf =
            b"\r\nretry: 30000\r\nid: 5123\r\nevent: ping\r\ndata: {\"title\":\"Porch\"}\r\n\r\nevent: state\r\n";
        assert_eq!(sse_first_event(esp_idf), Some(("ping".into(), r#"{"title":"Porch"}"#.into())));
        assert_eq!(sse_first_event(b"data: a\ndata: b\n\n"), Some(("message".into(), "a\nb".into())));
        assert_eq!(sse_first_event(b": comment\revent: x\rdata:y\r\r"), Some(("x".into(), "y".into())));
        assert_eq!(sse_first_event(b"event: ping\r\ndata: {\"title\""), None, "not complete yet");
        assert_eq!(sse_first_event(b"retry: 1000\r\n\r\n"), None, "no data, no event");
        assert_eq!(sse_first_event(b""), None);
    }

    #[test]
    fn esphome_is_told_by_its_ping_and_nothing_else() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let o = esphome_ping(
            "ping",
            r#"{"title":"Porch light","comment":"by the door","ota":true,"log":true,"lang":"en"}"#,
            Some(ip),
        )
        .unwrap();
        assert_eq!(
            (o.family, o.name.as_deref(), o.ip, o.mac.as_deref()),
            (Some(Family::Esphome), Some("Porch light"), Some(ip), None)
        );
        let data = r#"{"title":"x","ota":false,"log":false,"lang":"en"}"#;
        assert!(esphome_ping("ping", data, None).is_some());
        assert!(esphome_ping("state", data, None).is_none(), "only the greeting");
        assert!(esphome_ping("ping", "", None).is_none(), "the periodic empty ping is no greeting");
        assert!(esphome_ping("ping", r#"{"title":"x"}"#, None).is_none(), "some other server's ping");
        assert!(esphome_ping("ping", r#"{"title":"","ota":true,"log":true,"lang":"en"}"#, None).is_none());
        assert!(esphome_ping("ping", "<html>", None).is_none());
    }
}
