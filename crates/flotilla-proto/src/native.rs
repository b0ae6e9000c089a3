//! The native device protocol: what firmware with Flotilla's client speaks, over HTTP (pull) or
//! MQTT (push). Documented for device authors in `docs/device-api.md`.
//!
//! - Pull: the device `POST`s a [`CheckRequest`] to `/api/v1/check` and gets a [`CheckResponse`]:
//!   an [`Offer`] when it has a job, else `{"update_available": false}`. It reports progress with
//!   [`ReportRequest`] to `/api/v1/report`.
//! - Push: Flotilla publishes an [`Offer`] on the device's command topic; the device publishes
//!   [`OtaStatus`] on its status topic and a retained [`Presence`] (with an LWT) on its presence
//!   topic.
//!
//! A device verifies an offer before flashing: the Ed25519 `signature` over the exact bytes of
//! `manifest_json` with the site key baked into its firmware, then the downloaded bytes' SHA-256
//! against the manifest's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::firmware::Chip;

// The bounds the engine enforces on every device field (`flotilla-core`'s `limits`), written into
// the device API's OpenAPI description so that a client generated from it (or schemathesis) sends
// what is accepted. A test in flotilla-core checks they agree with the limits.
/// Visible ASCII, no spaces (ids, chips, jobs).
pub const VISIBLE_PATTERN: &str = "^[!-~]*$";
/// No control characters (names, versions, models).
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// No control characters but tab and newline (error messages).
pub const LINES_PATTERN: &str = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$";
/// Six hex pairs, separated by `:` or `-` or not at all (what `normalize_mac` reads).
pub const MAC_PATTERN: &str = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$";

/// The schema of a check-in's `labels`: at most 32 of 1–64 characters of `A-Z a-z 0-9 . _ : / -`.
pub fn labels_schema() -> utoipa::openapi::schema::Array {
    let mut labels = crate::device::label_list_schema();
    labels.max_items = Some(32);
    labels
}

/// A device checking in (pull). Also registers or refreshes the device (identity = MAC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CheckRequest {
    /// The device's own id (hostname, topic id).
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    pub device_id: String,
    #[schema(max_length = 32, pattern = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")]
    pub mac: String,
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub model: Option<String>,
    #[schema(max_length = 32, pattern = "^[!-~]*$")]
    pub chip: Option<String>,
    /// Version the device runs now.
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub version: String,
    #[serde(default)]
    #[schema(schema_with = labels_schema)]
    pub labels: Option<Vec<String>>,
    /// ESP-IDF `secure_version` of the running app (anti-rollback), when the device uses it.
    #[serde(default)]
    pub secure_version: Option<u32>,
    /// Seconds between this device's check-ins (it is shown offline after about three missed
    /// ones); learnt from the check-ins themselves when not given.
    #[serde(default)]
    pub interval_secs: Option<u32>,
    /// The device can download over HTTPS (it has the site certificate or its fingerprint): its
    /// offers carry `https://` URLs when the device server speaks HTTPS. Absent or false: `http://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

/// What a device is told to install: the signed manifest plus where to get the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Offer {
    /// Always true (lets a device tell an offer from "no update" by one field).
    pub update_available: bool,
    /// Job id: echo it in every report.
    pub job: String,
    /// Download URL on the device server, with a per-job token.
    pub url: String,
    pub version: String,
    pub size: u64,
    /// SHA-256 of the file (lower-case hex).
    pub sha256: String,
    pub chip: Chip,
    pub model: String,
    pub min_version: Option<String>,
    pub secure_version: Option<u32>,
    /// The exact bytes the signature covers (the manifest's compact JSON).
    pub manifest_json: String,
    /// Ed25519 signature over `manifest_json`, base64.
    pub signature: String,
    /// Id of the site key that signed.
    pub key_id: String,
}

/// Answer to a check-in: an offer, or nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(untagged)]
pub enum CheckResponse {
    Offer(Box<Offer>),
    NoUpdate {
        update_available: bool,
        /// Handed out once, when the device enrols (its first native check-in, or the first
        /// after a re-key): keep it, and send `Authorization: Bearer <secret>` from now on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<DeviceCredential>,
        /// `pending` while the device waits for a person's approval (no offers until then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<String>,
    },
}

impl CheckResponse {
    pub fn none() -> CheckResponse {
        CheckResponse::NoUpdate { update_available: false, credential: None, approval: None }
    }
}

/// A device's credential, handed out once at enrolment (`docs/device-api.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DeviceCredential {
    /// The per-device secret: `Authorization: Bearer <secret>` on every check-in, report and
    /// download. The engine keeps only its SHA-256.
    pub secret: String,
    /// Counts enrolments of this device (a re-key makes a new generation).
    pub generation: u32,
    /// The device's own login on the embedded MQTT broker (user name: its device id); it may
    /// use only its own topics. `None` when the engine runs no embedded broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_password: Option<String>,
}

/// Where a device says it is in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum DeviceOtaState {
    /// The offer was received and accepted.
    Accepted,
    Downloading,
    /// Download complete and verified; writing / activating the new partition.
    Installing,
    /// About to reboot into the new firmware.
    Rebooting,
    /// The device gives up: `error` says why.
    Failed,
    /// The device refuses the offer (wrong chip, signature, policy): `error` says why.
    Rejected,
}

/// A progress report (pull: `POST /api/v1/report`; push: the status topic as [`OtaStatus`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ReportRequest {
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    pub device_id: String,
    #[serde(default)]
    #[schema(max_length = 32, pattern = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")]
    pub mac: Option<String>,
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    pub job: String,
    pub state: DeviceOtaState,
    /// Percent, 0–100.
    #[serde(default)]
    #[schema(maximum = 100)]
    pub progress: Option<u8>,
    #[serde(default)]
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$")]
    pub error: Option<String>,
    /// The version the device runs, if it says.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub version: Option<String>,
}

/// Progress on the MQTT status topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct OtaStatus {
    pub job: String,
    pub state: DeviceOtaState,
    #[serde(default)]
    pub progress: Option<u8>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Retained presence on the MQTT presence topic; the LWT is `{"online": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Presence {
    pub online: bool,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub chip: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    /// ESP-IDF `secure_version` of the running app (anti-rollback), when the device uses it.
    #[serde(default)]
    pub secure_version: Option<u32>,
}

/// Acknowledgement of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ReportAck {
    pub ok: bool,
}

/// MQTT topics of one fleet convention. Templates use `{id}` (the device id) and may use
/// `{owner}` (a segment Flotilla does not interpret, e.g. an installation owner); both match one
/// topic level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TopicProfile {
    pub name: String,
    /// Where Flotilla publishes an [`Offer`].
    pub command: String,
    /// Where the device publishes [`OtaStatus`] progress.
    pub status: String,
    /// Where the device publishes its final [`OtaStatus`], if apart from `status`.
    pub result: Option<String>,
    /// Where the device publishes retained [`Presence`] (and its LWT).
    pub presence: String,
}

impl TopicProfile {
    /// Flotilla's own topics: `flotilla/<id>/cmd/ota`, `flotilla/<id>/status/ota`, `flotilla/<id>/status`.
    pub fn flotilla() -> TopicProfile {
        TopicProfile {
            name: "flotilla".into(),
            command: "flotilla/{id}/cmd/ota".into(),
            status: "flotilla/{id}/status/ota".into(),
            result: None,
            presence: "flotilla/{id}/status".into(),
        }
    }

    /// CerCollettiva fleets: `cercollettiva/<owner>/<id>/cmd/ota` + `…/status/ota`.
    pub fn cercollettiva() -> TopicProfile {
        TopicProfile {
            name: "cercollettiva".into(),
            command: "cercollettiva/{owner}/{id}/cmd/ota".into(),
            status: "cercollettiva/{owner}/{id}/status/ota".into(),
            result: None,
            presence: "cercollettiva/{owner}/{id}/status".into(),
        }
    }

    /// Paku fleets: `paku/devices/<id>/cmd/ota`, progress `…/ota/progress`, result `…/ota/result`,
    /// registration on `paku/edge/<id>/status`.
    pub fn paku() -> TopicProfile {
        TopicProfile {
            name: "paku".into(),
            command: "paku/devices/{id}/cmd/ota".into(),
            status: "paku/devices/{id}/ota/progress".into(),
            result: Some("paku/devices/{id}/ota/result".into()),
            presence: "paku/edge/{id}/status".into(),
        }
    }

    /// The built-in profiles.
    pub fn builtin() -> Vec<TopicProfile> {
        vec![TopicProfile::flotilla(), TopicProfile::cercollettiva(), TopicProfile::paku()]
    }

    /// Parses a profile definition: `name=acme;command=acme/{id}/ota;status=acme/{id}/ota/state;presence=acme/{id}/online[;result=…]`.
    /// Every template must contain `{id}` once.
    pub fn parse(spec: &str) -> Result<TopicProfile, String> {
        let (mut name, mut command, mut status, mut result, mut presence) = (None, None, None, None, None);
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("{part:?} is not key=value"))?;
            let v = v.trim().to_owned();
            match k.trim() {
                "name" => name = Some(v),
                "command" => command = Some(v),
                "status" => status = Some(v),
                "result" => result = Some(v),
                "presence" => presence = Some(v),
                other => return Err(format!("unknown key {other:?} (name, command, status, result, presence)")),
            }
        }
        let need = |v: Option<String>, what: &str| v.ok_or_else(|| format!("{what}= is missing"));
        let p = TopicProfile {
            name: need(name, "name")?,
            command: need(command, "command")?,
            status: need(status, "status")?,
            result,
            presence: need(presence, "presence")?,
        };
        for t in [Some(&p.command), Some(&p.status), p.result.as_ref(), Some(&p.presence)].into_iter().flatten() {
            if t.split('/').filter(|s| *s == "{id}").count() != 1 || t.contains(['#', '+']) {
                return Err(format!("topic {t:?} must contain {{id}} as one whole level and no wildcards"));
            }
        }
        Ok(p)
    }

    /// A built-in profile by name.
    pub fn named(name: &str) -> Option<TopicProfile> {
        TopicProfile::builtin().into_iter().find(|p| p.name == name)
    }
}

/// Fills a topic template. `owner` stands in for `{owner}` (`+` when unknown is not allowed in
/// a publish, so callers pass the owner they learnt from the device's own topics).
pub fn render_topic(template: &str, id: &str, owner: Option<&str>) -> String {
    template.replace("{id}", id).replace("{owner}", owner.unwrap_or("_"))
}

/// The subscription filter of a template: every placeholder becomes `+`.
pub fn topic_filter(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') && s.ends_with('}') { "+" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Matches a concrete topic against a template; returns `(id, owner)` on a match.
pub fn match_topic(template: &str, topic: &str) -> Option<(String, Option<String>)> {
    let t: Vec<&str> = template.split('/').collect();
    let c: Vec<&str> = topic.split('/').collect();
    if t.len() != c.len() {
        return None;
    }
    let (mut id, mut owner) = (None, None);
    for (tp, seg) in t.iter().zip(&c) {
        match *tp {
            "{id}" if !seg.is_empty() => id = Some((*seg).to_owned()),
            "{owner}" if !seg.is_empty() => owner = Some((*seg).to_owned()),
            lit if lit == *seg => {}
            _ => return None,
        }
    }
    id.map(|id| (id, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_templates_render_filter_and_match() {
        let p = TopicProfile::cercollettiva();
        assert_eq!(render_topic(&p.command, "dev-1", Some("acme")), "cercollettiva/acme/dev-1/cmd/ota");
        assert_eq!(topic_filter(&p.status), "cercollettiva/+/+/status/ota");
        assert_eq!(
            match_topic(&p.status, "cercollettiva/acme/dev-1/status/ota"),
            Some(("dev-1".into(), Some("acme".into())))
        );
        assert_eq!(match_topic(&p.status, "cercollettiva/acme/dev-1/status"), None);
        let f = TopicProfile::flotilla();
        assert_eq!(match_topic(&f.presence, "flotilla/x/status"), Some(("x".into(), None)));
        assert_eq!(match_topic(&f.presence, "flotilla/x/status/ota"), None);
        assert_eq!(match_topic(&f.status, "flotilla//status/ota"), None);
    }

    #[test]
    fn custom_profiles_parse_and_are_checked() {
        let p = TopicProfile::parse(
            "name=acme; command=acme/{id}/ota; status=acme/{id}/ota/state; presence=acme/{id}/online",
        );
        assert_eq!(p.map(|p| (p.name, p.result)), Ok(("acme".into(), None)));
        assert!(TopicProfile::parse("name=x;command=x/ota;status=x/{id}/s;presence=x/{id}/p").is_err(), "needs {{id}}");
        assert!(TopicProfile::parse("name=x;command=x/{id}/#;status=x/{id}/s;presence=x/{id}/p").is_err());
        assert!(TopicProfile::parse("name=x;command=x/{id}").is_err());
        assert!(TopicProfile::parse("colour=red").is_err());
    }

    #[test]
    fn check_responses_serialise_as_devices_expect() -> Result<(), serde_json::Error> {
        // The answer is untagged: which variant a device's JSON becomes depends on the variants'
        // order and fields, so each shape a device can get is parsed back to what was sent.
        let none = serde_json::to_string(&CheckResponse::none())?;
        assert_eq!(none, r#"{"update_available":false}"#);
        assert_eq!(serde_json::from_str::<CheckResponse>(&none)?, CheckResponse::none());

        let offer = CheckResponse::Offer(Box::new(Offer {
            update_available: true,
            job: "7-1-abc".into(),
            url: "http://10.0.0.2:8080/fw/7-1-abc".into(),
            version: "1.2.0".into(),
            size: 1_048_576,
            sha256: "ab".repeat(32),
            chip: crate::Chip::Esp32,
            model: "sensor".into(),
            min_version: Some("1.0.0".into()),
            secure_version: None,
            manifest_json: "{}".into(),
            signature: "c2ln".into(),
            key_id: "k1".into(),
        }));
        let json = serde_json::to_string(&offer)?;
        assert!(json.starts_with(r#"{"update_available":true,"job":"7-1-abc""#), "{json}");
        assert_eq!(serde_json::from_str::<CheckResponse>(&json)?, offer);

        // An enrolment answer: no offer, the credential once, and the approval it waits for.
        let enrolled = CheckResponse::NoUpdate {
            update_available: false,
            credential: Some(DeviceCredential {
                secret: "s3cret".into(),
                generation: 2,
                mqtt_username: Some("dev-1".into()),
                mqtt_password: None,
            }),
            approval: Some("pending".into()),
        };
        let json = serde_json::to_string(&enrolled)?;
        assert_eq!(
            json,
            r#"{"update_available":false,"credential":{"secret":"s3cret","generation":2,"mqtt_username":"dev-1"},"approval":"pending"}"#
        );
        assert_eq!(serde_json::from_str::<CheckResponse>(&json)?, enrolled);
        Ok(())
    }
}
