//! `flotilla devices …` and `flotilla channels …`: the inventory, one device's facts and history,
//! its labels and channel, forgetting it; the channels labels carry.
//!
//! A device is named on the command line by its MAC (any spelling), its device id or its name;
//! a name several devices share is refused with the candidates, never guessed.

use clap::{Subcommand, ValueEnum};
use flotilla_proto::device::{
    ChannelRequest, LabelChannel, ProbeRequest, ProbeResult, ScanRequest, ScanResult, normalize_mac,
};
use flotilla_proto::rollout::DeviceHistory;
use flotilla_proto::{Channel, Device, Event, Family};
use reqwest::Method;

use crate::client::{Api, encode, print_json, print_list};
use crate::events::summary;
use crate::output::{clip, fields, opt, outln, table, when};
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum DevicesCmd {
    /// List the inventory.
    List {
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Everything known about one device: identity, versions, address, state, channel, labels.
    Show {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A device's jobs in every rollout and its recent events.
    History {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add or remove labels of a device.
    Label {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Label to add (repeatable).
        #[arg(long = "add")]
        add: Vec<String>,
        /// Label to remove (repeatable).
        #[arg(long = "remove")]
        remove: Vec<String>,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set the firmware channel a device follows itself; `none` lets it follow its labels'
    /// channel again (else stable).
    Channel {
        /// MAC (any spelling), device id or name.
        device: String,
        channel: ChannelChoice,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ask an address over HTTP what it is (Shelly, Tasmota) and add the device that answers.
    Add {
        /// HOST or HOST:PORT (port 80 when absent).
        address: String,
        /// The family to try first: tasmota or shelly (all are tried).
        #[arg(long, value_parser = parse_family)]
        family: Option<Family>,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Scan now: query mDNS again and, with --subnet, probe every address of a subnet over HTTP
    /// (for networks where multicast is blocked); adds what answers.
    Scan {
        /// IPv4 ADDRESS/BITS, at most a /20 (4,094 addresses).
        #[arg(long)]
        subnet: Option<String>,
        /// The port probed on each address.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// The family to try first: tasmota or shelly (all are tried).
        #[arg(long, value_parser = parse_family)]
        family: Option<Family>,
        /// Addresses started per second (1–1000).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Forget a device: it leaves the inventory with its labels and channel, and is found anew
    /// if it shows up again. Refused while a rollout works on it.
    Forget {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Let in a device waiting for approval (the site setting `approve_new_devices`).
    Approve {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke a device's credential: every request of the device is refused until it is re-keyed.
    Revoke {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Re-key a device: its secret stops working now and its next check-in enrols it again.
    Rekey {
        /// MAC (any spelling), device id or name.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCmd {
    /// The labels that carry a firmware channel.
    List {
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set the channel devices with LABEL follow (unless set on the device); `none` clears it.
    Set {
        label: String,
        channel: ChannelChoice,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// A channel to set, or `none` to clear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelChoice {
    Stable,
    Beta,
    None,
}

impl ChannelChoice {
    fn channel(self) -> Option<Channel> {
        match self {
            ChannelChoice::Stable => Some(Channel::Stable),
            ChannelChoice::Beta => Some(Channel::Beta),
            ChannelChoice::None => None,
        }
    }
}

pub async fn run(cmd: DevicesCmd) -> CliResult {
    match cmd {
        DevicesCmd::List { json, api } => {
            let headers = ["MAC", "NAME", "FAMILY", "MODEL", "VERSION", "IP", "STATE", "LABELS", "LAST SEEN"];
            print_list(&api, "/api/v1/devices", json, "No devices yet.", &headers, |d: &Device| {
                vec![
                    d.mac.clone(),
                    opt(d.name.as_deref().or(d.device_id.as_deref())),
                    d.family_text(),
                    opt(d.model.as_deref()),
                    opt(d.version.as_deref()),
                    opt(d.ip.as_deref()),
                    if d.online { "online".into() } else { "offline".into() },
                    d.labels.join(","),
                    d.last_seen.clone(),
                ]
            })
            .await
        }
        DevicesCmd::Show { device, json, api } => {
            let api = Api::resolve(&api)?;
            let mac = resolve(&api, &device).await?;
            let d: Device = api.get(&format!("/api/v1/devices/{}", encode(&mac))).await?;
            if json {
                return print_json(&d);
            }
            // The events say since when the device is online or offline; the device alone cannot.
            let history: DeviceHistory = api.get(&format!("/api/v1/devices/{}/history", encode(&mac))).await?;
            print_device(&d, &history.events);
            Ok(())
        }
        DevicesCmd::History { device, json, api } => {
            let api = Api::resolve(&api)?;
            let mac = resolve(&api, &device).await?;
            let h: DeviceHistory = api.get(&format!("/api/v1/devices/{}/history", encode(&mac))).await?;
            if json {
                return print_json(&h);
            }
            print_history(&h);
            Ok(())
        }
        DevicesCmd::Label { device, add, remove, json, api } => {
            let api = Api::resolve(&api)?;
            let mac = resolve(&api, &device).await?;
            let body = serde_json::json!({ "add": add, "remove": remove });
            let d: Device = api
                .send(api.request(Method::POST, &format!("/api/v1/devices/{}/labels", encode(&mac))).json(&body))
                .await?;
            if json {
                return print_json(&d);
            }
            outln!("{}: {}", d.mac, if d.labels.is_empty() { "no labels".into() } else { d.labels.join(", ") });
            Ok(())
        }
        DevicesCmd::Channel { device, channel, json, api } => {
            let api = Api::resolve(&api)?;
            let mac = resolve(&api, &device).await?;
            let body = ChannelRequest { channel: channel.channel() };
            let d: Device = api
                .send(api.request(Method::PUT, &format!("/api/v1/devices/{}/channel", encode(&mac))).json(&body))
                .await?;
            if json {
                return print_json(&d);
            }
            outln!("{} now follows {}.", display_name(&d), channel_text(&d));
            Ok(())
        }
        DevicesCmd::Add { address, family, json, api } => {
            let api = Api::resolve(&api)?;
            let body = ProbeRequest { address, family };
            let r: ProbeResult = api.send(api.request(Method::POST, "/api/v1/devices/probe").json(&body)).await?;
            if json {
                print_json(&r)?;
            } else if let Some(d) = &r.device {
                let family = d.family.as_str();
                let version = d.version.as_deref().unwrap_or("unknown version");
                let model = d.model.as_deref().unwrap_or("device");
                outln!("{}: {family} {model}, {version} — added as {}.", r.address, d.mac);
                if r.auth_required {
                    outln!("It protects its API with a password: set its credentials before updating it.");
                }
            } else if let (Some(detail), "found") = (&r.detail, r.state.as_str()) {
                // Found, but it does not say its MAC (ESPHome's web server): not added.
                outln!("{}: {detail}.", r.address);
            }
            match r.state.as_str() {
                "found" => Ok(()),
                _ => Err(CliError::failure(format!(
                    "{}: {}{}",
                    r.address,
                    r.state.replace('_', " "),
                    r.detail.map(|d| format!(" ({d})")).unwrap_or_default()
                ))),
            }
        }
        DevicesCmd::Scan { subnet, port, family, rate, json, api } => {
            let api = Api::resolve(&api)?;
            if let Some(subnet) = &subnet
                && !json
            {
                eprintln!("Scanning {subnet} on port {port} at {rate} addresses a second…");
            }
            let body = ScanRequest { subnet, port: Some(port), family, rate: Some(rate) };
            let r: ScanResult = api.send(api.request(Method::POST, "/api/v1/devices/scan").json(&body)).await?;
            if json {
                return print_json(&r);
            }
            if r.mdns {
                outln!("mDNS queried again: devices that answer appear in the inventory.");
            } else if r.subnet.is_none() {
                outln!("mDNS browsing is off on this engine: give --subnet to probe addresses instead.");
            }
            if let Some(subnet) = &r.subnet {
                outln!(
                    "{subnet}: {} addresses in {:.1} s — {} found, {} want a password, {} unrecognised, {} silent.",
                    r.addresses,
                    r.took_ms as f64 / 1000.0,
                    r.found.len(),
                    r.authentication_required.len(),
                    r.unrecognised,
                    r.unreachable
                );
                for p in r.found.iter().chain(&r.authentication_required) {
                    let family = p.family.map_or("unknown", Family::as_str);
                    let what = p.device.as_ref().map_or_else(
                        || match (p.state.as_str(), &p.detail) {
                            ("found", Some(detail)) => detail.clone(),
                            (state, _) => state.replace('_', " "),
                        },
                        |d| format!("{} {}", d.mac, d.version.as_deref().unwrap_or("unknown version")),
                    );
                    outln!("  {:<21} {family:<12} {what}", p.address);
                }
            }
            Ok(())
        }
        DevicesCmd::Forget { device, json, api } => {
            let api = Api::resolve(&api)?;
            let mac = resolve(&api, &device).await?;
            let d: Device = api.send(api.request(Method::DELETE, &format!("/api/v1/devices/{}", encode(&mac)))).await?;
            if json {
                return print_json(&d);
            }
            outln!("Forgot {}; it is found anew if it shows up again.", display_name(&d));
            Ok(())
        }
        DevicesCmd::Approve { device, json, api } => credential(&device, "approve", json, &api).await,
        DevicesCmd::Revoke { device, json, api } => credential(&device, "revoke", json, &api).await,
        DevicesCmd::Rekey { device, json, api } => credential(&device, "rekey", json, &api).await,
    }
}

/// Approves, revokes or re-keys the credential of `device`.
async fn credential(device: &str, action: &str, json: bool, api: &ApiArgs) -> CliResult {
    let api = Api::resolve(api)?;
    let mac = resolve(&api, device).await?;
    let d: Device = api.send(api.request(Method::POST, &format!("/api/v1/devices/{}/{action}", encode(&mac)))).await?;
    if json {
        return print_json(&d);
    }
    let what = match action {
        "approve" => "is approved: it gets offers from now on",
        "revoke" => "is revoked: its requests are refused until it is re-keyed",
        _ => "is re-keyed: its next check-in enrols it again with a new secret",
    };
    outln!("{} {what}.", display_name(&d));
    Ok(())
}

pub async fn channels(cmd: ChannelsCmd) -> CliResult {
    match cmd {
        ChannelsCmd::List { json, api } => {
            let list: Vec<LabelChannel> = Api::resolve(&api)?.get("/api/v1/channels").await?;
            if json {
                return print_json(&list);
            }
            print_label_channels(&list);
            Ok(())
        }
        ChannelsCmd::Set { label, channel, json, api } => {
            let api = Api::resolve(&api)?;
            let body = ChannelRequest { channel: channel.channel() };
            let list: Vec<LabelChannel> =
                api.send(api.request(Method::PUT, &format!("/api/v1/channels/{}", encode(&label))).json(&body)).await?;
            if json {
                return print_json(&list);
            }
            match channel.channel() {
                Some(c) => outln!("Devices labelled {label} follow {} (unless set on the device).", c.as_str()),
                None => outln!("Label {label} carries no channel now."),
            }
            print_label_channels(&list);
            Ok(())
        }
    }
}

/// The MAC of `wanted`: a MAC in any spelling as it is, else the device whose device id or name
/// it is (exactly, else ignoring case).
pub async fn resolve(api: &Api, wanted: &str) -> CliResult<String> {
    if let Some(mac) = normalize_mac(wanted.trim()) {
        return Ok(mac);
    }
    let devices: Vec<Device> = api.get("/api/v1/devices").await?;
    pick(&devices, wanted).map(|d| d.mac.clone())
}

/// The one device of `devices` whose device id or name is `wanted`.
pub(crate) fn pick<'d>(devices: &'d [Device], wanted: &str) -> CliResult<&'d Device> {
    let wanted = wanted.trim();
    let named = |same: &dyn Fn(&str) -> bool| -> Vec<&'d Device> {
        devices
            .iter()
            .filter(|d| d.device_id.as_deref().is_some_and(same) || d.name.as_deref().is_some_and(same))
            .collect()
    };
    let mut found = named(&|s| s == wanted);
    if found.is_empty() {
        found = named(&|s| s.eq_ignore_ascii_case(wanted));
    }
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::refused(format!(
            "no device has the MAC, device id or name {wanted:?} (`flotilla devices list` shows them)"
        ))),
        many => {
            let names: Vec<String> = many.iter().map(|d| format!("{} ({})", display_label(d), d.mac)).collect();
            Err(CliError::refused(format!(
                "{wanted:?} names {} devices: {}; use the MAC",
                many.len(),
                names.join(", ")
            )))
        }
    }
}

/// A device's name, else its device id, else its MAC.
fn display_label(d: &Device) -> &str {
    d.name.as_deref().or(d.device_id.as_deref()).unwrap_or(&d.mac)
}

/// `name (mac)`, or the MAC alone for a device without a name or id.
fn display_name(d: &Device) -> String {
    match d.name.as_deref().or(d.device_id.as_deref()) {
        Some(n) => format!("{n} ({})", d.mac),
        None => d.mac.clone(),
    }
}

/// `beta (set on the device)`, `stable (from label line-3)`, `stable (default)`.
fn channel_text(d: &Device) -> String {
    let from = match d.channel_from.as_deref() {
        Some("device") => "set on the device".to_owned(),
        Some(other) => match other.strip_prefix("label:") {
            Some(label) => format!("from label {label}"),
            None => format!("from {other}"),
        },
        None => "default".to_owned(),
    };
    format!("{} ({from})", d.channel.as_str())
}

/// Since when the device is in its current state, from its events (newest first): for an
/// offline device the newest `device.offline` (and its reason); for an online one the oldest
/// sighting that found it online after that. `None` when its events do not say (they are cut to
/// the newest 200).
fn state_since(d: &Device, events: &[Event]) -> Option<(String, Option<String>)> {
    if !d.online {
        let e = events.iter().find(|e| e.kind == "device.offline")?;
        return Some((e.at.clone(), e.data.get("reason").and_then(|r| r.as_str()).map(str::to_owned)));
    }
    events
        .iter()
        .take_while(|e| e.kind != "device.offline")
        .filter(|e| {
            matches!(e.kind.as_str(), "device.discovered" | "device.changed")
                && e.data.get("online").and_then(serde_json::Value::as_bool) == Some(true)
        })
        .last()
        .map(|e| (e.at.clone(), None))
}

fn print_device(d: &Device, events: &[Event]) {
    let state = match (d.online, state_since(d, events)) {
        (true, Some((at, _))) => format!("online since {}", when(&at)),
        (true, None) => "online".to_owned(),
        (false, Some((at, reason))) => {
            format!("offline since {}{}", when(&at), reason.map(|r| format!(": {r}")).unwrap_or_default())
        }
        (false, None) => "offline".to_owned(),
    };
    fields(&[
        ("name", opt(d.name.as_deref())),
        ("device_id", opt(d.device_id.as_deref())),
        ("mac", d.mac.clone()),
        ("family", d.family_text()),
        ("model", opt(d.model.as_deref())),
        ("chip", opt(d.chip.as_deref())),
        ("version", opt(d.version.as_deref())),
        ("secure_version", opt(d.secure_version)),
        ("ip", opt(d.ip.as_deref())),
        ("state", state),
        ("last_seen", when(&d.last_seen)),
        ("first_seen", when(&d.first_seen)),
        ("channel", channel_text(d)),
        ("labels", if d.labels.is_empty() { "-".into() } else { d.labels.join(", ") }),
        ("credential", format!("{}{}", d.auth.as_str(), if d.authenticated { "" } else { " (unauthenticated)" })),
        ("sources", sources_text(d)),
    ]);
}

/// Each source with when it last spoke and what it last said:
/// `checkin (2 min ago, 1.2.0 at 10.0.0.5), mdns (gone 5 s ago)`.
fn sources_text(d: &Device) -> String {
    if d.seen.is_empty() {
        return if d.sources.is_empty() { "-".into() } else { d.sources.join(", ") };
    }
    let each: Vec<String> = d
        .seen
        .iter()
        .map(|s| {
            let said: Vec<String> =
                [s.version.clone(), s.ip.as_ref().map(|ip| format!("at {ip}"))].into_iter().flatten().collect();
            let said = if said.is_empty() { String::new() } else { format!(", {}", said.join(" ")) };
            let left = if s.online { "" } else { ", said it left" };
            format!("{} ({}{said}{left})", s.source, when(&s.last_seen))
        })
        .collect();
    each.join("; ")
}

fn print_history(h: &DeviceHistory) {
    if h.jobs.is_empty() {
        outln!("{}: in no rollout yet.", h.mac);
    } else {
        outln!("{}: in {} rollout{} (newest first)", h.mac, h.jobs.len(), if h.jobs.len() == 1 { "" } else { "s" });
        let rows: Vec<Vec<String>> = h
            .jobs
            .iter()
            .map(|j| {
                vec![
                    j.rollout_id.to_string(),
                    j.rollout_name.clone(),
                    format!("{} → {}", opt(j.from_version.as_deref()), j.firmware_version),
                    j.state.as_str().into(),
                    j.attempts.to_string(),
                    j.created_at.clone(),
                    j.updated_at.clone(),
                    opt(j.error.as_deref()),
                ]
            })
            .collect();
        table(&["ROLLOUT", "NAME", "VERSION", "STATE", "ATTEMPTS", "STARTED", "CHANGED", "ERROR"], &rows);
    }
    outln!();
    if h.events.is_empty() {
        outln!("No events recorded for it.");
        return;
    }
    outln!("Events (newest first):");
    let rows: Vec<Vec<String>> = h
        .events
        .iter()
        .map(|e| vec![e.at.clone(), e.kind.clone(), e.actor.clone(), clip(&summary(&e.data), 100)])
        .collect();
    table(&["TIME", "KIND", "ACTOR", "DETAILS"], &rows);
}

fn print_label_channels(list: &[LabelChannel]) {
    if list.is_empty() {
        outln!(
            "No label carries a channel: devices follow stable unless set on the device. \
             Set one with `flotilla channels set LABEL beta`."
        );
        return;
    }
    let rows: Vec<Vec<String>> = list.iter().map(|l| vec![l.label.clone(), l.channel.as_str().into()]).collect();
    table(&["LABEL", "CHANNEL"], &rows);
}

fn parse_family(s: &str) -> Result<Family, String> {
    Family::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
        format!("unknown family {s:?}; one of {}", all.join(", "))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use flotilla_proto::Family;
    use serde_json::json;

    use super::*;

    fn device(mac: &str, id: Option<&str>, name: Option<&str>) -> Device {
        Device {
            mac: mac.into(),
            device_id: id.map(Into::into),
            name: name.map(Into::into),
            family: Family::Native,
            generation: None,
            model: None,
            chip: None,
            version: None,
            ip: None,
            online: true,
            secure_version: None,
            channel: Channel::Stable,
            channel_from: None,
            labels: vec![],
            admin_labels: vec![],
            device_labels: vec![],
            auth: flotilla_proto::device::DeviceAuth::None,
            authenticated: false,
            sources: vec![],
            seen: vec![],
            first_seen: "2026-01-01T00:00:00Z".into(),
            last_seen: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn event(at: &str, kind: &str, data: serde_json::Value) -> Event {
        Event { id: 1, at: at.into(), kind: kind.into(), actor: "engine".into(), subject: None, data }
    }

    #[test]
    fn a_device_is_picked_by_id_or_name_and_a_shared_name_is_refused_with_the_candidates() {
        let devices = [
            device("02:00:00:00:00:01", Some("pump-1"), Some("Pump")),
            device("02:00:00:00:00:02", Some("pump-2"), Some("Pump")),
            device("02:00:00:00:00:03", Some("valve"), None),
        ];
        assert_eq!(pick(&devices, "pump-2").unwrap().mac, "02:00:00:00:00:02");
        assert_eq!(
            pick(&devices, " VALVE ").unwrap().mac,
            "02:00:00:00:00:03",
            "case is ignored when nothing is exact"
        );
        let e = pick(&devices, "Pump").unwrap_err();
        assert_eq!(e.exit_code, 2);
        assert!(e.message.contains("2 devices") && e.message.contains("02:00:00:00:00:01"), "{}", e.message);
        assert!(e.message.contains("Pump (02:00:00:00:00:02)"), "{}", e.message);
        assert_eq!(pick(&devices, "nothing").unwrap_err().exit_code, 2);
    }

    #[test]
    fn the_state_dates_from_the_events() {
        let mut d = device("02:00:00:00:00:01", None, None);
        let events = [
            event("2026-01-03T00:00:00Z", "device.changed", json!({"online": true, "version": "2.0.0"})),
            event("2026-01-02T00:00:00Z", "device.changed", json!({"online": true})),
            event("2026-01-01T12:00:00Z", "device.offline", json!({"reason": "its MQTT session ended"})),
            event("2026-01-01T00:00:00Z", "device.discovered", json!({"online": true})),
        ];
        assert_eq!(state_since(&d, &events), Some(("2026-01-02T00:00:00Z".into(), None)));
        d.online = false;
        assert_eq!(
            state_since(&d, &events),
            Some(("2026-01-01T12:00:00Z".into(), Some("its MQTT session ended".into())))
        );
        assert_eq!(state_since(&d, &events[..2]), None);
    }

    #[test]
    fn the_channel_says_where_it_comes_from() {
        let mut d = device("02:00:00:00:00:01", None, None);
        assert_eq!(channel_text(&d), "stable (default)");
        d.channel = Channel::Beta;
        d.channel_from = Some("label:line-3".into());
        assert_eq!(channel_text(&d), "beta (from label line-3)");
        d.channel_from = Some("device".into());
        assert_eq!(channel_text(&d), "beta (set on the device)");
    }
}
