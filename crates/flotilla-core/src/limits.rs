//! What a LAN client may send and create: bounds on every device-supplied field, and the caps on
//! the devices an unauthenticated source may add to the inventory.
//!
//! Every device entry point (the native check-in and report, the compatibility profiles, MQTT
//! presence and status) checks what it received here before the engine looks at it, so a
//! 2 MB `model` or 200,000 labels are refused with a 400 that names the field, and nothing is
//! stored. Documented in `docs/device-api.md` ("Limits").
//!
//! | field | bound |
//! |---|---|
//! | `device_id` | 1–128 visible ASCII characters (no spaces) |
//! | `mac` | at most 32 characters (and a MAC address) |
//! | `model`, `version` | at most 64 characters, no control characters |
//! | `chip` | at most 32 visible ASCII characters |
//! | `labels` | at most 32, each 1–64 of `A-Z a-z 0-9 . _ : / -` |
//! | `job` | at most 128 visible ASCII characters |
//! | `error` (a failure's reason) | at most 512 characters, no control characters but tab and newline |
//! | `ip` (presence) | at most 64 visible ASCII characters |
//! | `progress` | 0–100 |
//!
//! Devices a source on the LAN may create ([`Admission`]): at most `new_devices_per_minute` a
//! minute and `max_devices` in all (site settings, [`DEFAULT_NEW_DEVICES_PER_MINUTE`] and
//! [`DEFAULT_MAX_DEVICES`] by default); beyond, a check-in of a device the inventory does not
//! know is answered 429 and creates nothing. Loopback clients (the simulator, benchmarks, a
//! gateway on the same host) are exempt.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla_proto::api::SiteSettings;
use flotilla_proto::native::{CheckRequest, OtaStatus, Presence, ReportRequest};

use crate::handle::EngineHandle;
use crate::log_limit::{WarnLimit, warn_limited};

/// Longest `device_id`.
pub const MAX_DEVICE_ID: usize = 128;
/// Longest `mac` as sent (before it is normalised).
pub const MAX_MAC: usize = 32;
/// Longest `model` and `version`.
pub const MAX_TEXT: usize = 64;
/// Longest `chip`.
pub const MAX_CHIP: usize = 32;
/// Most labels a device may report.
pub const MAX_LABELS: usize = 32;
/// Longest job id.
pub const MAX_JOB: usize = 128;
/// Longest failure reason.
pub const MAX_ERROR: usize = 512;
/// Longest `ip` in a presence.
pub const MAX_IP: usize = 64;

/// Default of the `new_devices_per_minute` setting.
pub const DEFAULT_NEW_DEVICES_PER_MINUTE: u32 = 120;
/// Default of the `max_devices` setting.
pub const DEFAULT_MAX_DEVICES: u32 = 5000;
/// Bounds of the settings (`new_devices_per_minute` 0 admits no new device from the LAN).
pub const NEW_DEVICES_PER_MINUTE_RANGE: std::ops::RangeInclusive<u32> = 0..=1_000_000;
pub const MAX_DEVICES_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000_000;

/// Why a device's request is refused: the HTTP status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400 for a field out of bounds, 429 for a cap reached.
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn bad(field: &str, why: impl std::fmt::Display) -> Refusal {
    Refusal { status: 400, message: format!("{field}: {why}") }
}

/// What characters a field may hold.
#[derive(Clone, Copy)]
enum Chars {
    /// Visible ASCII: no spaces, no control characters.
    Visible,
    /// Any character but control characters.
    Text,
    /// Any character but control characters other than tab and newline.
    Lines,
}

/// Checks one field: `min..=max` characters of `chars`.
fn field(name: &str, value: &str, min: usize, max: usize, chars: Chars) -> Result<(), Refusal> {
    // Bytes bound characters from above: a huge value is refused without counting it.
    let len = if value.len() > 4 * max { max + 1 } else { value.chars().count() };
    if len > max {
        return Err(bad(name, format!("at most {max} characters (this one has {} bytes)", value.len())));
    }
    if len < min {
        return Err(bad(
            name,
            if min == 1 { "must not be empty".to_owned() } else { format!("at least {min} characters") },
        ));
    }
    let ok = |c: char| match chars {
        Chars::Visible => c.is_ascii_graphic(),
        Chars::Text => !c.is_control(),
        Chars::Lines => !c.is_control() || c == '\n' || c == '\t',
    };
    if let Some(c) = value.chars().find(|c| !ok(*c)) {
        let allowed = match chars {
            Chars::Visible => "visible ASCII characters (no spaces)",
            Chars::Text => "no control characters",
            Chars::Lines => "no control characters but tab and newline",
        };
        return Err(bad(name, format!("{c:?} is not allowed ({allowed})")));
    }
    Ok(())
}

fn optional(name: &str, value: Option<&str>, max: usize, chars: Chars) -> Result<(), Refusal> {
    value.map_or(Ok(()), |v| field(name, v, 0, max, chars))
}

fn device_id(id: &str) -> Result<(), Refusal> {
    field("device_id", id, 1, MAX_DEVICE_ID, Chars::Visible)
}

fn progress(p: Option<u8>) -> Result<(), Refusal> {
    match p {
        Some(p) if p > 100 => Err(bad("progress", format!("{p} is not a percentage (0-100)"))),
        _ => Ok(()),
    }
}

fn labels(labels: Option<&[String]>) -> Result<(), Refusal> {
    let Some(labels) = labels else { return Ok(()) };
    if labels.len() > MAX_LABELS {
        return Err(bad("labels", format!("at most {MAX_LABELS} labels (this check-in has {})", labels.len())));
    }
    for (i, l) in labels.iter().enumerate() {
        if !flotilla_proto::device::valid_label(l) {
            let shown: String = l.chars().take(MAX_TEXT).collect();
            return Err(bad(
                &format!("labels[{i}]"),
                format!("{shown:?} must be 1-64 characters of A-Z a-z 0-9 . _ : / -"),
            ));
        }
    }
    Ok(())
}

/// Checks a check-in (native, or a compatibility profile's turned into one).
pub fn check_in(r: &CheckRequest) -> Result<(), Refusal> {
    device_id(&r.device_id)?;
    field("mac", &r.mac, 1, MAX_MAC, Chars::Text)?;
    optional("model", r.model.as_deref(), MAX_TEXT, Chars::Text)?;
    optional("chip", r.chip.as_deref(), MAX_CHIP, Chars::Visible)?;
    field("version", &r.version, 0, MAX_TEXT, Chars::Text)?;
    labels(r.labels.as_deref())
}

/// Checks a progress report (native, or a compatibility profile's turned into one).
pub fn report(r: &ReportRequest) -> Result<(), Refusal> {
    device_id(&r.device_id)?;
    optional("mac", r.mac.as_deref(), MAX_MAC, Chars::Text)?;
    field("job", &r.job, 1, MAX_JOB, Chars::Visible)?;
    progress(r.progress)?;
    optional("error", r.error.as_deref(), MAX_ERROR, Chars::Lines)?;
    optional("version", r.version.as_deref(), MAX_TEXT, Chars::Text)
}

/// Checks an MQTT presence of device `id`.
pub fn presence(id: &str, p: &Presence) -> Result<(), Refusal> {
    device_id(id)?;
    optional("mac", p.mac.as_deref(), MAX_MAC, Chars::Text)?;
    optional("model", p.model.as_deref(), MAX_TEXT, Chars::Text)?;
    optional("chip", p.chip.as_deref(), MAX_CHIP, Chars::Visible)?;
    optional("version", p.version.as_deref(), MAX_TEXT, Chars::Text)?;
    optional("ip", p.ip.as_deref(), MAX_IP, Chars::Visible)
}

/// Checks an MQTT status of device `id`.
pub fn status(id: &str, s: &OtaStatus) -> Result<(), Refusal> {
    device_id(id)?;
    field("job", &s.job, 1, MAX_JOB, Chars::Visible)?;
    progress(s.progress)?;
    optional("error", s.error.as_deref(), MAX_ERROR, Chars::Lines)
}

/// Checks the two settings of [`Admission`]; the error names the one that is wrong.
pub fn validate_settings(s: &SiteSettings) -> Result<(), String> {
    if let Some(n) = s.new_devices_per_minute
        && !NEW_DEVICES_PER_MINUTE_RANGE.contains(&n)
    {
        return Err(format!("new_devices_per_minute {n}: between 0 and 1000000 (0: no new device from the LAN)"));
    }
    if let Some(n) = s.max_devices
        && !MAX_DEVICES_RANGE.contains(&n)
    {
        return Err(format!("max_devices {n}: between 1 and 10000000"));
    }
    Ok(())
}

/// Rate limit of the warnings about device requests refused for a field out of bounds.
pub(crate) static REFUSED: std::sync::LazyLock<WarnLimit> = std::sync::LazyLock::new(WarnLimit::new);

/// The window of the per-minute cap.
const WINDOW: Duration = Duration::from_secs(60);

/// The caps on devices created by unauthenticated sources on the LAN.
pub(crate) struct Admission {
    per_minute: AtomicU32,
    max_devices: AtomicU32,
    /// Start of the current window and the devices admitted in it.
    window: Mutex<(Instant, u32)>,
    warnings: WarnLimit,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("per_minute", &self.per_minute.load(Ordering::Relaxed))
            .field("max_devices", &self.max_devices.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// The caps `settings` name (defaults for what they leave out).
    pub(crate) fn new(settings: &SiteSettings) -> Admission {
        let a = Admission {
            per_minute: AtomicU32::new(DEFAULT_NEW_DEVICES_PER_MINUTE),
            max_devices: AtomicU32::new(DEFAULT_MAX_DEVICES),
            window: Mutex::new((Instant::now(), 0)),
            warnings: WarnLimit::new(),
        };
        a.apply(settings);
        a
    }

    /// Takes new values (a saved settings change applies at once).
    pub(crate) fn apply(&self, settings: &SiteSettings) {
        let per_minute = settings.new_devices_per_minute.unwrap_or(DEFAULT_NEW_DEVICES_PER_MINUTE);
        self.per_minute.store(per_minute, Ordering::Relaxed);
        self.max_devices.store(settings.max_devices.unwrap_or(DEFAULT_MAX_DEVICES), Ordering::Relaxed);
    }

    /// The caps in force: (new devices a minute, devices in all).
    pub(crate) fn caps(&self) -> (u32, u32) {
        (self.per_minute.load(Ordering::Relaxed), self.max_devices.load(Ordering::Relaxed))
    }

    /// May a source create one more device, the inventory holding `devices`? Counts it if so.
    fn admit(&self, devices: usize, now: Instant) -> Result<(), Refusal> {
        let (per_minute, max) = self.caps();
        if devices >= max as usize {
            return Err(Refusal {
                status: 429,
                message: format!(
                    "this site already has {devices} devices, its limit (setting max_devices {max}); \
                     no new device is added from the network until the limit is raised or devices are forgotten"
                ),
            });
        }
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.duration_since(w.0) >= WINDOW {
            *w = (now, 0);
        }
        if w.1 >= per_minute {
            let wait = WINDOW.saturating_sub(now.duration_since(w.0)).as_secs().max(1);
            return Err(Refusal {
                status: 429,
                message: format!(
                    "too many new devices: at most {per_minute} a minute (setting new_devices_per_minute); \
                     try again in {wait} s"
                ),
            });
        }
        w.1 += 1;
        Ok(())
    }
}

impl EngineHandle {
    /// May the device of check-in `req`, from `peer`, check in? A device the inventory knows
    /// always may; a new one only within the caps of [`Admission`] (loopback is exempt).
    pub(crate) fn admit_device(&self, req: &CheckRequest, peer: IpAddr) -> Result<(), Refusal> {
        if peer.to_canonical().is_loopback() {
            return Ok(());
        }
        // A MAC that is not one is refused later, with its own message.
        let Some(mac) = flotilla_proto::device::normalize_mac(&req.mac) else { return Ok(()) };
        self.admit_mac(&mac, &peer.to_string())
    }

    /// May an unauthenticated source (`from`: a peer address, `mdns`) create the device `mac`
    /// (normalised)? A device the inventory knows always may.
    pub(crate) fn admit_mac(&self, mac: &str, from: &str) -> Result<(), Refusal> {
        let devices = {
            let Ok(fleet) = self.fleet() else { return Ok(()) };
            if fleet.inventory.get(mac).is_some() {
                return Ok(());
            }
            fleet.inventory.len()
        };
        let admitted = self.shared.admission.admit(devices, Instant::now());
        if let Err(e) = &admitted {
            warn_limited!(self.shared.admission, %from, %mac, reason = %e, "new device refused");
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use flotilla_proto::native::DeviceOtaState;

    use super::*;

    fn checkin() -> CheckRequest {
        CheckRequest {
            device_id: "valve-7".into(),
            mac: "aa:bb:cc:00:11:22".into(),
            model: Some("ESP32-DevKitC v4".into()),
            chip: Some("esp32".into()),
            version: "1.0.0".into(),
            labels: Some(vec!["floor-2".into(), "line/a".into()]),
            secure_version: None,
            interval_secs: None,
            tls: None,
        }
    }

    fn refused(r: Result<(), Refusal>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.status, 400);
        e.message
    }

    #[test]
    fn a_normal_check_in_passes_and_each_field_out_of_bounds_is_named() {
        check_in(&checkin()).unwrap();
        let cases: Vec<(CheckRequest, &str)> = vec![
            (CheckRequest { model: Some("m".repeat(1_900_000)), ..checkin() }, "model:"),
            (CheckRequest { model: Some("m".repeat(65)), ..checkin() }, "model:"),
            (CheckRequest { model: Some("bad\u{1b}[2J".into()), ..checkin() }, "model:"),
            (CheckRequest { device_id: String::new(), ..checkin() }, "device_id:"),
            (CheckRequest { device_id: "has space".into(), ..checkin() }, "device_id:"),
            (CheckRequest { device_id: "d".repeat(129), ..checkin() }, "device_id:"),
            (CheckRequest { mac: "a".repeat(33), ..checkin() }, "mac:"),
            (CheckRequest { version: "v".repeat(65), ..checkin() }, "version:"),
            (CheckRequest { version: "1.0\n".into(), ..checkin() }, "version:"),
            (CheckRequest { chip: Some("esp 32".into()), ..checkin() }, "chip:"),
            (CheckRequest { labels: Some(vec!["l".into(); 200_000]), ..checkin() }, "labels:"),
            (CheckRequest { labels: Some(vec!["ok".into(), "not ok".into()]), ..checkin() }, "labels[1]:"),
        ];
        for (req, field) in cases {
            let msg = refused(check_in(&req));
            assert!(msg.starts_with(field), "{field}: {msg}");
            assert!(msg.len() < 300, "the message never repeats a huge value: {} bytes", msg.len());
        }
        // The bounds themselves pass; so do non-ASCII models and 32 labels.
        let edge = CheckRequest {
            device_id: "d".repeat(128),
            model: Some("é".repeat(64)),
            version: "v".repeat(64),
            labels: Some((0..32).map(|i| format!("l{i}")).collect()),
            ..checkin()
        };
        check_in(&edge).unwrap();
    }

    #[test]
    fn reports_presence_and_status_are_bounded_too() {
        let report_req = ReportRequest {
            device_id: "valve-7".into(),
            mac: None,
            job: "12.abcdef".into(),
            state: DeviceOtaState::Failed,
            progress: Some(40),
            error: Some("flash write failed\nat 0x10000".into()),
            version: Some("1.0.0".into()),
        };
        report(&report_req).unwrap();
        let long = ReportRequest { error: Some("e".repeat(513)), ..report_req.clone() };
        assert!(refused(report(&long)).starts_with("error:"));
        let pct = ReportRequest { progress: Some(101), ..report_req.clone() };
        assert!(refused(report(&pct)).starts_with("progress:"));
        let job = ReportRequest { job: "j".repeat(129), ..report_req };
        assert!(refused(report(&job)).starts_with("job:"));

        let p = Presence {
            online: true,
            mac: Some("aa:bb:cc:00:11:22".into()),
            model: Some("m".repeat(100)),
            chip: None,
            version: None,
            ip: None,
            secure_version: None,
        };
        assert!(refused(presence("valve-7", &p)).starts_with("model:"));
        let ip = Presence { model: None, ip: Some("1".repeat(65)), ..p };
        assert!(refused(presence("valve-7", &ip)).starts_with("ip:"));
        let s = OtaStatus { job: "1.a".into(), state: DeviceOtaState::Downloading, progress: Some(5), error: None };
        status("valve-7", &s).unwrap();
        assert!(refused(status("valve-7", &OtaStatus { error: Some("\u{0}".into()), ..s })).starts_with("error:"));
    }

    #[test]
    fn new_devices_are_capped_per_minute_and_in_all() {
        let a = Admission::new(&SiteSettings {
            new_devices_per_minute: Some(3),
            max_devices: Some(10),
            ..SiteSettings::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            a.admit(0, t0).unwrap();
        }
        let e = a.admit(0, t0).unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.message.contains("new_devices_per_minute"), "{}", e.message);
        a.admit(0, t0 + WINDOW).unwrap();
        let e = a.admit(10, t0 + WINDOW).unwrap_err();
        assert!(e.status == 429 && e.message.contains("max_devices 10"), "{}", e.message);
        // A settings change applies at once.
        a.apply(&SiteSettings { new_devices_per_minute: Some(0), ..SiteSettings::default() });
        assert_eq!(a.caps(), (0, DEFAULT_MAX_DEVICES));
        assert!(a.admit(0, t0 + 3 * WINDOW).is_err());
    }

    #[test]
    fn the_settings_are_checked_by_name() {
        validate_settings(&SiteSettings::default()).unwrap();
        let e = validate_settings(&SiteSettings { max_devices: Some(0), ..SiteSettings::default() }).unwrap_err();
        assert!(e.contains("max_devices"), "{e}");
        let e = validate_settings(&SiteSettings { new_devices_per_minute: Some(2_000_000), ..SiteSettings::default() })
            .unwrap_err();
        assert!(e.contains("new_devices_per_minute"), "{e}");
    }
}
