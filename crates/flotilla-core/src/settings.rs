//! The site's saved settings, `<data>/settings.json` (0600: it may hold a broker password).
//!
//! The binaries read it at start and let flags override it ([`flotilla_cli::EngineArgs`]); the
//! UI edits it through `GET`/`PUT /api/v1/settings`. A change applies at the next start: the
//! engine never rebinds its sockets under running rollouts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flotilla_proto::api::SiteSettings;

use crate::error::{CoreError, Result};

/// Where the settings of `data_dir` live.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("settings.json")
}

/// The saved settings; none saved yet is the empty set (every default). A file that cannot be
/// read as settings is an error naming it, never silently ignored.
pub fn load(data_dir: &Path) -> Result<SiteSettings> {
    let path = path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| CoreError::BadRequest(format!("{} is not valid settings: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SiteSettings::default()),
        Err(e) => Err(CoreError::io(format!("cannot read {}", path.display()), e)),
    }
}

/// Checks every field; the error names the first that is wrong.
pub fn validate(s: &SiteSettings) -> Result<()> {
    let addr = |name: &str, v: &Option<String>| -> Result<()> {
        match v {
            Some(v) => v
                .trim()
                .parse::<SocketAddr>()
                .map(|_| ())
                .map_err(|_| CoreError::BadRequest(format!("{name} {v:?} is not an address like 0.0.0.0:8070"))),
            None => Ok(()),
        }
    };
    addr("device_listen", &s.device_listen)?;
    addr("admin_listen", &s.admin_listen)?;
    addr("mqtt_listen", &s.mqtt_listen)?;
    if let Some(u) = &s.public_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(CoreError::BadRequest(format!("public_url {u:?} must start with http:// or https://")));
    }
    if let Some(d) = s.event_retention_days
        && !(1..=36_500).contains(&d)
    {
        return Err(CoreError::BadRequest(format!("event_retention_days {d}: between 1 and 36500 days")));
    }
    if let Some(n) = s.event_retention_max
        && !(100..=100_000_000).contains(&n)
    {
        return Err(CoreError::BadRequest(format!("event_retention_max {n}: between 100 and 100000000 events")));
    }
    crate::limits::validate_settings(s).map_err(CoreError::BadRequest)?;
    match s.mqtt.as_deref() {
        None | Some("embedded" | "off") => {}
        Some(url) => {
            crate::mqtt::parse_url(url).map_err(|e| CoreError::BadRequest(format!("mqtt: {e}")))?;
        }
    }
    Ok(())
}

/// Saves `new` over the saved settings (a `None` password keeps the saved one; `""` removes it).
pub fn save(data_dir: &Path, mut new: SiteSettings) -> Result<SiteSettings> {
    validate(&new)?;
    let old = load(data_dir)?;
    new.mqtt_password = match new.mqtt_password {
        None => old.mqtt_password,
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p),
    };
    let json = serde_json::to_vec_pretty(&new).map_err(|e| CoreError::BadRequest(e.to_string()))?;
    crate::secrets::write_private(&path(data_dir), &json)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_file_is_every_default_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), SiteSettings::default());
        std::fs::write(path(dir.path()), b"{\"device_listen\": 8070}").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("settings.json") && e.contains("not valid settings"), "{e}");
        std::fs::write(path(dir.path()), b"{\"colour\": \"blue\"}").unwrap();
        assert!(load(dir.path()).is_err(), "unknown keys are refused, not dropped");
    }

    #[test]
    fn bad_values_are_refused_by_name_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (SiteSettings { device_listen: Some("8070".into()), ..Default::default() }, "device_listen"),
            (SiteSettings { admin_listen: Some("localhost".into()), ..Default::default() }, "admin_listen"),
            (SiteSettings { mqtt: Some("tcp://broker".into()), ..Default::default() }, "mqtt"),
            (SiteSettings { public_url: Some("192.168.1.2:8070".into()), ..Default::default() }, "public_url"),
            (SiteSettings { event_retention_days: Some(0), ..Default::default() }, "event_retention_days"),
            (SiteSettings { event_retention_max: Some(10), ..Default::default() }, "event_retention_max"),
        ];
        for (s, field) in cases {
            let e = save(dir.path(), s).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        assert!(!path(dir.path()).exists());
    }

    #[test]
    fn the_password_is_kept_replaced_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ext = |pw: Option<&str>| SiteSettings {
            mqtt: Some("mqtts://broker.site:8883".into()),
            mqtt_user: Some("flo".into()),
            mqtt_password: pw.map(str::to_owned),
            ..Default::default()
        };
        save(dir.path(), ext(Some("s3cret"))).unwrap();
        assert_eq!(load(dir.path()).unwrap().mqtt_password.as_deref(), Some("s3cret"));
        save(dir.path(), ext(None)).unwrap();
        assert_eq!(load(dir.path()).unwrap().mqtt_password.as_deref(), Some("s3cret"), "None keeps it");
        save(dir.path(), ext(Some(""))).unwrap();
        assert_eq!(load(dir.path()).unwrap().mqtt_password, None, "empty removes it");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
