//! Devices in the inventory. Identity is the MAC address, never the IP.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which update protocol family a device speaks. Shelly's generations (Gen1's HTTP API, Gen2+'s
/// RPC) are one family told apart by [`Device::generation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Custom firmware with Flotilla's client (HTTP pull or MQTT push).
    Native,
    Tasmota,
    Shelly,
    /// Arduino sketches with ArduinoOTA (espota).
    Arduino,
    Esphome,
    Unknown,
}

impl Family {
    pub const ALL: [Family; 6] =
        [Family::Native, Family::Tasmota, Family::Shelly, Family::Arduino, Family::Esphome, Family::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Native => "native",
            Family::Tasmota => "tasmota",
            Family::Shelly => "shelly",
            Family::Arduino => "arduino",
            Family::Esphome => "esphome",
            Family::Unknown => "unknown",
        }
    }

    /// A family by name, case-insensitively; the names of earlier releases (`shelly-gen1`,
    /// `shelly-gen2`, `arduino-ota`) still parse. See [`Family::parse_with_generation`] to keep
    /// the generation such a name carries.
    pub fn parse(s: &str) -> Option<Family> {
        Family::parse_with_generation(s).map(|(f, _)| f)
    }

    /// A family by name with the generation its name implies: `shelly-gen1` → Shelly, 1.
    pub fn parse_with_generation(s: &str) -> Option<(Family, Option<u8>)> {
        if let Some(f) = Family::ALL.into_iter().find(|f| f.as_str().eq_ignore_ascii_case(s)) {
            return Some((f, None));
        }
        match s.to_ascii_lowercase().as_str() {
            "shelly-gen1" | "shelly1" => Some((Family::Shelly, Some(1))),
            "shelly-gen2" | "shelly2" => Some((Family::Shelly, Some(2))),
            "arduino-ota" | "arduinoota" => Some((Family::Arduino, None)),
            _ => None,
        }
    }
}

/// Reads every name [`Family::parse`] knows (the names of earlier releases too).
impl<'de> Deserialize<'de> for Family {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Family, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Family::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown family {s:?}: native, tasmota, shelly, arduino, esphome or unknown"
            ))
        })
    }
}

/// Where a device stands with its credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum DeviceAuth {
    /// No credential: seen only through compatibility profiles, a shared MQTT login or discovery.
    #[default]
    None,
    /// Enrolled, waiting for a person's approval (`flotilla devices approve`): no offers.
    Pending,
    /// Enrolled and approved: every check-in, report and download carries its credential.
    Enrolled,
    /// Refused until re-keyed.
    Revoked,
    /// Re-keyed: its next native check-in enrols it again with a new secret.
    Rekey,
}

impl DeviceAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceAuth::None => "none",
            DeviceAuth::Pending => "pending",
            DeviceAuth::Enrolled => "enrolled",
            DeviceAuth::Revoked => "revoked",
            DeviceAuth::Rekey => "rekey",
        }
    }
}

/// A device in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Device {
    /// MAC address, lower-case, colon-separated: the identity.
    pub mac: String,
    /// The device's own id (hostname, topic id) if it has one.
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub family: Family,
    /// The family's generation where it has several: Shelly 1 (Gen1's HTTP API), 2, 3, 4 (RPC).
    #[serde(default)]
    pub generation: Option<u8>,
    pub model: Option<String>,
    pub chip: Option<String>,
    pub version: Option<String>,
    pub ip: Option<String>,
    pub online: bool,
    /// The anti-rollback version the device reports (ESP-IDF `secure_version` of the running
    /// app): an image with a lower one would be refused or brick the device.
    pub secure_version: Option<u32>,
    /// The firmware channel the device follows: its own setting, else the channel of one of its
    /// labels (beta wins over stable), else stable.
    pub channel: crate::firmware::Channel,
    /// Where `channel` comes from: `device` (set on the device), `label:<label>`, or `None` (the
    /// default).
    pub channel_from: Option<String>,
    /// Every label of the device: those people set and those it reports (rollout targets match
    /// both).
    pub labels: Vec<String>,
    /// Labels people set (`flotilla devices label`): a check-in never removes them.
    #[serde(default)]
    pub admin_labels: Vec<String>,
    /// Labels the device reports in its check-ins (each check-in carrying labels replaces them).
    #[serde(default)]
    pub device_labels: Vec<String>,
    /// How the device proves who it is (see `docs/device-api.md`).
    #[serde(default)]
    pub auth: DeviceAuth,
    /// Is what the engine hears from this device authenticated (an enrolled, approved device)?
    /// `false` for devices seen only through compatibility profiles or a shared login.
    #[serde(default)]
    pub authenticated: bool,
    /// Where the device was seen: `mdns`, `mqtt`, `checkin`, `probe`, `manual`.
    pub sources: Vec<String>,
    /// Each source's last word about the device, by source name.
    #[serde(default)]
    pub seen: Vec<SourceSeen>,
    /// RFC 3339 UTC.
    pub first_seen: String,
    /// RFC 3339 UTC.
    pub last_seen: String,
}

impl Device {
    /// The family as people read it: `shelly gen2`, `tasmota`.
    pub fn family_text(&self) -> String {
        match self.generation {
            Some(g) => format!("{} gen{g}", self.family.as_str()),
            None => self.family.as_str().to_owned(),
        }
    }
}

/// What one source last said about a device, and when it first and last did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SourceSeen {
    /// `mdns`, `mqtt`, `checkin`, `probe`, `manual`.
    pub source: String,
    /// RFC 3339 UTC.
    pub first_seen: String,
    /// RFC 3339 UTC.
    pub last_seen: String,
    /// The firmware version this source last reported, if it reports one.
    #[serde(default)]
    pub version: Option<String>,
    /// The address this source last reported.
    #[serde(default)]
    pub ip: Option<String>,
    /// False once this source said the device left (an mDNS goodbye, a Last Will).
    pub online: bool,
}

/// Replace or edit a device's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default)]
pub struct LabelRequest {
    /// Labels to add.
    #[schema(schema_with = label_list_schema)]
    pub add: Vec<String>,
    /// Labels to remove.
    #[schema(schema_with = label_list_schema)]
    pub remove: Vec<String>,
}

/// Labels: each 1-64 characters of `[A-Za-z0-9._:/-]` ([`valid_label`]).
pub fn label_list_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some("^[A-Za-z0-9._:/-]+$")),
        )
        .build()
}

/// Set (or clear, with `None`) the channel a device follows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChannelRequest {
    pub channel: Option<crate::firmware::Channel>,
}

/// The channel followed by the devices carrying a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LabelChannel {
    pub label: String,
    pub channel: crate::firmware::Channel,
}

/// Probe an address over HTTP and add what answers (`POST /api/v1/devices/probe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProbeRequest {
    /// `HOST` or `HOST:PORT` (port 80 when absent): an IP address or a name the laptop resolves.
    #[schema(min_length = 1, max_length = 253, pattern = "^[^/@ ]+$")]
    pub address: String,
    /// The family to try first (Tasmota, Shelly); all are tried.
    #[serde(default)]
    pub family: Option<Family>,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProbeResult {
    /// The address probed (`ip:port`).
    pub address: String,
    /// `found`, `authentication_required` (it has a password and Flotilla has none for it),
    /// `authentication_failed` (it refused the credential Flotilla has), `unrecognised`,
    /// `unreachable` or `busy` (a probe of this address is already running).
    pub state: String,
    pub family: Option<Family>,
    /// The device protects its API beyond identification with a password.
    pub auth_required: bool,
    /// Why it was not found, in words.
    pub detail: Option<String>,
    /// The device as the inventory now has it, when found.
    pub device: Option<Device>,
}

/// Scan now (`POST /api/v1/devices/scan`): query mDNS again and, with a subnet, probe every
/// address of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ScanRequest {
    /// IPv4 `ADDRESS/BITS`, at most 4,094 addresses (a /20); none: mDNS only.
    #[serde(default)]
    pub subnet: Option<String>,
    /// The port probed on each address (80).
    #[serde(default)]
    pub port: Option<u16>,
    /// The family to try first.
    #[serde(default)]
    pub family: Option<Family>,
    /// Addresses started per second (default 100, at most 1,000).
    #[serde(default)]
    pub rate: Option<u32>,
}

/// What a subnet scan found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ScanResult {
    pub subnet: Option<String>,
    /// mDNS browsing runs and was asked to query the LAN again (false with `--no-mdns`, or when
    /// its sockets could not be opened: then only a subnet scan finds devices).
    #[serde(default)]
    pub mdns: bool,
    /// Addresses probed.
    pub addresses: u32,
    /// Devices found (and added), and devices that want a password to say what they are.
    pub found: Vec<ProbeResult>,
    pub authentication_required: Vec<ProbeResult>,
    /// Addresses that answered like no device we know.
    pub unrecognised: u32,
    /// Addresses where nothing answered.
    pub unreachable: u32,
    pub took_ms: u64,
}

/// A vendor device credential as the API shows it: never its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CredentialInfo {
    /// A family (`tasmota`, `shelly`, `arduino`, `esphome`) or a MAC.
    pub scope: String,
    pub username: Option<String>,
    /// Always true: a credential has a password, which is never returned.
    pub password_set: bool,
}

/// Set a vendor device credential (`PUT /api/v1/credentials/{scope}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CredentialRequest {
    #[serde(default)]
    pub username: Option<String>,
    pub password: String,
}

/// Normalises a MAC address to `aa:bb:cc:dd:ee:ff`. Accepts `:`, `-`, `.` or no separators, any case.
pub fn normalize_mac(s: &str) -> Option<String> {
    // One pass, one allocation: this runs on every check-in.
    let mut out = String::with_capacity(17);
    let mut digits = 0;
    for c in s.chars() {
        if matches!(c, ':' | '-' | '.') {
            continue;
        }
        if !c.is_ascii_hexdigit() || digits == 12 {
            return None;
        }
        if digits > 0 && digits % 2 == 0 {
            out.push(':');
        }
        out.push(c.to_ascii_lowercase());
        digits += 1;
    }
    (digits == 12).then_some(out)
}

/// Checks a label: 1–64 characters of `[A-Za-z0-9._:/-]`.
pub fn valid_label(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_normalise_from_every_common_spelling() {
        for s in ["AA:BB:CC:00:11:22", "aa-bb-cc-00-11-22", "aabb.cc00.1122", "AABBCC001122"] {
            assert_eq!(normalize_mac(s).as_deref(), Some("aa:bb:cc:00:11:22"), "{s}");
        }
        for s in ["", "aa:bb", "zz:bb:cc:00:11:22", "aa:bb:cc:00:11:22:33", "aa:bb:cc:00:11:2é", "::::"] {
            assert_eq!(normalize_mac(s), None, "{s}");
        }
    }

    #[test]
    fn labels_are_checked() {
        assert!(valid_label("floor-2/line_a"));
        assert!(!valid_label(""));
        assert!(!valid_label("has space"));
        assert!(!valid_label(&"x".repeat(65)));
    }
}
