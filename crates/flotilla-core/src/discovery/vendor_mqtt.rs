//! Vendor MQTT discovery on whichever broker the engine uses: Tasmota's retained
//! `tasmota/discovery/<MAC>/config` and its Last Will (`tele/<topic>/LWT`), Shelly Gen1's
//! `shellies/announce` and `shellies/<id>/online`, Shelly Gen2+'s `<id>/online`, and ESPHome's
//! `esphome/discover/<name>`
//! (`shared/reference/protocols.md` §3.7, §4.2, §7.2). Native devices' presence is handled by the
//! topic profiles before anything reaches this module.

use crate::discovery::classify::{self, Observation};
use crate::handle::{EngineHandle, Observed};
use crate::mqtt::Incoming;

/// The topic filters the engine subscribes to for vendor discovery.
pub const SUBSCRIPTIONS: [&str; 6] = [
    "tasmota/discovery/+/config",
    "tele/+/LWT",
    "shellies/announce",
    "shellies/+/online",
    "+/online",
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
        _ => None,
    }
}

/// Handles a vendor discovery message; false when the topic is not one of ours.
pub async fn dispatch(engine: &EngineHandle, msg: &Incoming) -> bool {
    // A device on its own login speaks only for itself, through its topic profile.
    if msg.device.is_some() {
        return false;
    }
    // Tasmota's Last Will names its topic, not its MAC: the topic is the device id its
    // discovery config gave.
    if let ["tele", topic, "LWT"] = msg.topic.split('/').collect::<Vec<_>>().as_slice() {
        if &msg.payload[..] == b"Offline"
            && let Some(mac) = engine.find_device_mac(topic)
            && let Err(e) = engine.discovery_offline(&mac, "mqtt", "its Tasmota Last Will")
        {
            tracing::debug!(topic = %msg.topic, error = %e, "Tasmota LWT not applied");
        }
        return true;
    }
    let Some(o) = classify(&msg.topic, &msg.payload) else { return false };
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
        assert_eq!(classify("kitchen/online", b"true"), None);
        assert_eq!(classify("tasmota/discovery/A4CF12345678/sensors", b"{}"), None);
    }
}
