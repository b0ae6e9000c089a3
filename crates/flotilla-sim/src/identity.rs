//! Who each simulated device is: id, MAC and loopback address, all derived from the fleet seed
//! and the device's index so the same command line gives the same fleet on every run.
//!
//! Also the seeded generator ([`Prng`]) behind every random choice of the simulator (poll
//! jitter, failure assignment): nothing here may read the clock or the OS's randomness.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// How a simulated device talks to Flotilla.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// Firmware with Flotilla's client that polls `POST /api/v1/check` (HTTP pull).
    NativePull,
    /// Firmware with Flotilla's client driven over MQTT (push).
    NativeMqtt,
    /// Tasmota (ESP8266): MQTT discovery + LWT, `/cm?cmnd=Status%200`.
    Tasmota,
    /// Shelly Gen1 (ESP8266): `_http._tcp` `shelly…` instance, `shellies/announce`, `/shelly`.
    Shelly1,
    /// Shelly Gen2+ (ESP32): `_shelly._tcp` + `_http._tcp`, `<id>/online`, `/rpc/…`.
    Shelly2,
    /// ESPHome: `_esphomelib._tcp` with version/mac/platform/board, `esphome/discover/<name>`.
    Esphome,
    /// An Arduino sketch with ArduinoOTA: `_arduino._tcp` with board/auth_upload.
    Arduino,
}

impl DeviceKind {
    /// Every kind, in a stable order.
    pub const ALL: [DeviceKind; 7] = [
        DeviceKind::NativePull,
        DeviceKind::NativeMqtt,
        DeviceKind::Tasmota,
        DeviceKind::Shelly1,
        DeviceKind::Shelly2,
        DeviceKind::Esphome,
        DeviceKind::Arduino,
    ];

    /// The name used on the command line and in device ids (`native-pull`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::NativePull => "native-pull",
            DeviceKind::NativeMqtt => "native-mqtt",
            DeviceKind::Tasmota => "tasmota",
            DeviceKind::Shelly1 => "shelly1",
            DeviceKind::Shelly2 => "shelly2",
            DeviceKind::Esphome => "esphome",
            DeviceKind::Arduino => "arduino",
        }
    }

    /// Flotilla's own client (pull or MQTT), as opposed to a vendor personality.
    pub fn is_native(self) -> bool {
        matches!(self, DeviceKind::NativePull | DeviceKind::NativeMqtt)
    }

    /// Parses [`DeviceKind::as_str`] output.
    pub fn parse(s: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most devices one fleet can address: 250 hosts per /24 times 256 third octets.
pub const MAX_DEVICES: usize = 250 * 256;

/// The fixed facts of one simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Position in the whole fleet (0-based, across kinds).
    pub index: usize,
    pub kind: DeviceKind,
    /// `<prefix>-<kind>-<n>`, `n` counting within the kind.
    pub id: String,
    /// Locally administered, upper case, colon separated.
    pub mac: String,
    /// The device's own loopback address.
    pub ip: Ipv4Addr,
}

impl Identity {
    /// The identity of the device at fleet position `index`, the `n`th of its kind.
    /// `None` when `index` is past [`MAX_DEVICES`].
    pub fn derive(seed: u64, prefix: &str, block: u8, kind: DeviceKind, n: usize, index: usize) -> Option<Identity> {
        Some(Identity {
            index,
            kind,
            id: format!("{prefix}-{}-{n}", kind.as_str()),
            mac: mac(seed, index)?,
            ip: address(block, index)?,
        })
    }
}

/// `127.<block>.<index / 250>.<index % 250 + 1>`: 250 hosts per /24 so no address ends in 0 or 255.
pub fn address(block: u8, index: usize) -> Option<Ipv4Addr> {
    let third = u8::try_from(index / 250).ok()?;
    let fourth = u8::try_from(index % 250 + 1).ok()?;
    Some(Ipv4Addr::new(127, block, third, fourth))
}

/// `02:` (locally administered, unicast), two bytes from the seed, three from the index: unique
/// within a fleet, and two fleets with different seeds almost never collide.
fn mac(seed: u64, index: usize) -> Option<String> {
    let index = u32::try_from(index).ok().filter(|i| *i < 1 << 24)?;
    let salt = Prng::new(seed ^ 0x6d61_635f_7361_6c74).next_u64();
    let bytes = [0x02, (salt >> 8) as u8, salt as u8, (index >> 16) as u8, (index >> 8) as u8, index as u8];
    Some(bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

/// SplitMix64: tiny, fast, and good enough to spread poll times and pick failing devices.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn identities_are_deterministic_unique_and_locally_administered() {
        let fleet = |seed| -> Vec<Identity> {
            (0..2000).map(|i| Identity::derive(seed, "sim", 20, DeviceKind::NativePull, i, i).unwrap()).collect()
        };
        let a = fleet(7);
        assert_eq!(a, fleet(7));
        assert_ne!(a[0].mac, fleet(8)[0].mac);
        let macs: HashSet<_> = a.iter().map(|d| d.mac.clone()).collect();
        let ips: HashSet<_> = a.iter().map(|d| d.ip).collect();
        assert_eq!(macs.len(), 2000);
        assert_eq!(ips.len(), 2000);
        assert!(a.iter().all(|d| d.mac.starts_with("02:") && d.mac.len() == 17));
        assert_eq!(a[0].ip, Ipv4Addr::new(127, 20, 0, 1));
        assert_eq!(a[249].ip, Ipv4Addr::new(127, 20, 0, 250));
        assert_eq!(a[250].ip, Ipv4Addr::new(127, 20, 1, 1));
        assert_eq!(a[3].id, "sim-native-pull-3");
    }

    #[test]
    fn addresses_stop_at_the_limit() {
        assert!(address(20, MAX_DEVICES - 1).is_some());
        assert!(address(20, MAX_DEVICES).is_none());
    }

    #[test]
    fn prng_is_uniform_enough() {
        let mut p = Prng::new(1);
        let xs: Vec<f64> = (0..10_000).map(|_| p.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }
}
