//! Vendor MQTT discovery on whichever broker the engine uses: Tasmota's retained
//! `tasmota/discovery/<MAC>/config`, its Last Will (`tele/<topic>/LWT`) and the `INFO1`/`INFO2`
//! it publishes on connect (version, address), Shelly Gen1's
//! `shellies/announce` and `shellies/<id>/online`, Shelly Gen2+'s `<id>/online` and
//! `<prefix>/events/rpc` notifications, and ESPHome's
//! `esphome/discover/<name>`
//! (`shared/reference/protocols.md` §3.7, §4.2, §7.2). Native devices' presence is handled by the
//! topic profiles before anything reaches this module.

use crate::discovery::classify::{self, Observation};
use crate::handle::{EngineHandle, Observed};
use crate::mqtt::Incoming;

/// The topic filters the engine subscribes to for vendor discovery.
pub const SUBSCRIPTIONS: [&str; 9] = [
    "tasmota/discovery/+/config",
    "tele/+/LWT",
    "tele/+/INFO1",
    "tele/+/INFO2",
    "shellies/announce",
    "shellies/+/online",
    "+/online",
    "+/events/rpc",
    "esphome/discover/+",
];

/// Classifies a message on one of [`SUBSCRIPTIONS`]; `None` for anything else.
pub fn classify(topic: &str, payload: &[u8]) -> Option<Observation> {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["tasmota", "discovery", mac, "config"] => classify::tasmota_config(mac, payload),
        ["shellies", "announce"] => classify::shelly_announce(payload),
        ["esphome", "discover", _] => classify::esphome_discover(payload),
        ["shellies", id, "online"] => classify::shelly_online(id, payload, true),
        [id, "online"] => classify::shelly_online(id, payload, false),
        [_, "events", "rpc"] => classify::shelly_rpc_event(payload),
        _ => None,
    }
}

/// Handles a vendor discovery message; false when the topic is not one of ours.
pub async fn dispatch(engine: &EngineHandle, msg: &Incoming) -> bool {
    // A device on its own login speaks only for itself, through its topic profile.
    if msg.device.is_some() {
        return false;
    }
    // Tasmota's Last Will and INFO messages name its topic, not its MAC: the topic is the
    // device id its discovery config gave. Topics no Tasmota announced are not ours to guess.
    let o = match msg.topic.split('/').collect::<Vec<_>>().as_slice() {
        ["tele", topic, what @ ("LWT" | "INFO1" | "INFO2")] => {
            let Some(mac) = engine.find_device_mac(topic) else { return true };
            if engine.family_of(&mac) != Some(flotilla_proto::Family::Tasmota) {
                return true;
            }
            match (*what, &msg.payload[..]) {
                ("LWT", b"Offline") => {
                    if let Err(e) = engine.discovery_offline(&mac, "mqtt", "its Tasmota Last Will") {
                        tracing::debug!(topic = %msg.topic, error = %e, "Tasmota LWT not applied");
                    }
                    return true;
                }
                ("LWT", b"Online") => Observation {
                    key: format!("mqtt:tasmota:{mac}"),
                    mac: Some(mac),
                    family: Some(flotilla_proto::Family::Tasmota),
                    online: true,
                    ..Observation::default()
                },
                ("LWT", _) => return true,
                (_, payload) => match classify::tasmota_info(&mac, payload) {
                    Some(o) => o,
                    None => return true,
                },
            }
        }
        _ => match classify(&msg.topic, &msg.payload) {
            Some(o) => o,
            None => return false,
        },
    };
    match engine.observe(&o, "mqtt").await {
        Ok(Observed::Ignored(why)) => tracing::debug!(topic = %msg.topic, why, "MQTT discovery ignored"),
        Ok(_) => {}
        Err(e) => tracing::debug!(topic = %msg.topic, error = %e, "MQTT discovery not merged"),
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use flotilla_proto::Family;

    use super::*;

    #[test]
    fn topics_route_to_their_family() {
        let o = classify("tasmota/discovery/A4CF12345678/config", br#"{"sw":"14.3.0","t":"plug"}"#).unwrap();
        assert_eq!((o.family, o.mac.as_deref()), (Some(Family::Tasmota), Some("a4:cf:12:34:56:78")));
        let o = classify("shellies/shelly1-C45BBE7A3F1B/online", b"true").unwrap();
        assert_eq!((o.family, o.generation), (Some(Family::Shelly), Some(1)));
        let o = classify("shellyplus1-a8032ab12345/online", b"true").unwrap();
        assert_eq!((o.family, o.generation), (Some(Family::Shelly), None));
        let o =
            classify("garage/events/rpc", br#"{"src":"shellyplus1-a8032ab12345","method":"NotifyStatus","params":{}}"#);
        assert_eq!(o.map(|o| o.family), Some(Some(Family::Shelly)));
        assert_eq!(classify("kitchen/online", b"true"), None);
        assert_eq!(classify("tasmota/discovery/A4CF12345678/sensors", b"{}"), None);
    }
}
