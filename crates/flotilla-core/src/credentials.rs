//! Vendor device credentials: Tasmota web passwords, Shelly logins, ArduinoOTA and ESPHome OTA
//! passwords — per family and per device (by MAC), in `<data>/credentials.json` (0600, written
//! atomically). They leave this module only to authenticate to the device they are for: the API
//! lists scopes and usernames, never a password, and nothing here is logged ([`Secret`]'s `Debug`
//! says `<redacted>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flotilla_proto::Family;
use flotilla_proto::device::{CredentialInfo, normalize_mac};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::secrets;

/// Longest username and password kept.
const MAX_LEN: usize = 128;

/// A login: the username (where the family has one) and the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub username: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// The families a credential may be set for.
pub const FAMILIES: [Family; 4] = [Family::Tasmota, Family::Shelly, Family::Arduino, Family::Esphome];

/// Every credential, by scope: a family name (`tasmota`) or a MAC (`aa:bb:cc:dd:ee:ff`).
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    by_scope: Mutex<BTreeMap<String, Secret>>,
}

/// A scope as given (family name or MAC in any spelling), normalised; `None` when it is neither.
pub fn scope(s: &str) -> Option<String> {
    if let Some(f) = Family::parse(s.trim())
        && FAMILIES.contains(&f)
    {
        return Some(f.as_str().to_owned());
    }
    normalize_mac(s.trim())
}

impl Credentials {
    /// Reads `path` (none yet: no credentials).
    pub fn load(path: &Path) -> Result<Credentials> {
        let by_scope = match std::fs::read(path) {
            Ok(bytes) => {
                secrets::tighten_secret(path);
                serde_json::from_slice(&bytes).map_err(|e| {
                    CoreError::Refused(format!(
                        "{} is not a credentials file ({e}); fix it or move it away",
                        path.display()
                    ))
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(CoreError::io(format!("cannot read {}", path.display()), e)),
        };
        // Scopes as this release names them (`shelly-gen1` of earlier files is `shelly`).
        let by_scope: BTreeMap<String, Secret> =
            by_scope.into_iter().map(|(k, v): (String, Secret)| (scope(&k).unwrap_or(k), v)).collect();
        Ok(Credentials { path: path.to_owned(), by_scope: Mutex::new(by_scope) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Secret>>> {
        self.by_scope.lock().map_err(|_| CoreError::ShuttingDown)
    }

    fn save(&self, all: &BTreeMap<String, Secret>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(all).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        secrets::write_private(&self.path, &bytes)
    }

    /// Sets the credential of `scope` (a family or a MAC); saved before it answers.
    pub fn set(&self, scope_text: &str, username: Option<String>, password: String) -> Result<CredentialInfo> {
        let scope = scope(scope_text).ok_or_else(|| {
            let families: Vec<&str> = FAMILIES.iter().map(|f| f.as_str()).collect();
            CoreError::BadRequest(format!("{scope_text:?} is neither a family ({}) nor a MAC", families.join(", ")))
        })?;
        let username = username.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        for (what, v) in [("username", username.as_deref().unwrap_or_default()), ("password", password.as_str())] {
            if v.len() > MAX_LEN || v.chars().any(char::is_control) {
                return Err(CoreError::BadRequest(format!("{what}: at most {MAX_LEN} bytes, no control characters")));
            }
        }
        if password.is_empty() {
            return Err(CoreError::BadRequest("password: empty (remove the credential instead)".into()));
        }
        let mut all = self.lock()?;
        let mut next = all.clone();
        next.insert(scope.clone(), Secret { username: username.clone(), password });
        self.save(&next)?;
        *all = next;
        Ok(CredentialInfo { scope, username, password_set: true })
    }

    /// Removes the credential of `scope`; false when there was none.
    pub fn remove(&self, scope_text: &str) -> Result<bool> {
        let Some(scope) = scope(scope_text) else { return Ok(false) };
        let mut all = self.lock()?;
        if !all.contains_key(&scope) {
            return Ok(false);
        }
        let mut next = all.clone();
        next.remove(&scope);
        self.save(&next)?;
        *all = next;
        Ok(true)
    }

    /// Every credential, without its password.
    pub fn list(&self) -> Result<Vec<CredentialInfo>> {
        Ok(self
            .lock()?
            .iter()
            .map(|(scope, s)| CredentialInfo { scope: scope.clone(), username: s.username.clone(), password_set: true })
            .collect())
    }

    /// The login for a device: its own (by MAC), else its family's.
    pub fn for_device(&self, mac: Option<&str>, family: Family) -> Option<Secret> {
        let all = self.lock().ok()?;
        mac.and_then(|m| all.get(m)).or_else(|| all.get(family.as_str())).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn credentials_are_kept_private_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let c = Credentials::load(&path).unwrap();
        c.set("Tasmota", Some("admin".into()), "s3cret-family".into()).unwrap();
        c.set("A4-CF-12-34-56-78", None, "s3cret-device".into()).unwrap();
        assert!(c.set("native", None, "x".into()).is_err(), "native devices have their own credential");
        assert!(c.set("kitchen", None, "x".into()).is_err());
        assert!(c.set("tasmota", None, String::new()).is_err());
        assert!(c.set("tasmota", None, "a\nb".into()).is_err());
        let listed = format!("{:?}", c.list().unwrap());
        assert!(!listed.contains("s3cret"), "{listed}");
        assert!(listed.contains("a4:cf:12:34:56:78") && listed.contains("tasmota"), "{listed}");
        let own = c.for_device(Some("a4:cf:12:34:56:78"), Family::Tasmota).unwrap();
        assert_eq!(own.password, "s3cret-device");
        assert!(!format!("{own:?}").contains("s3cret"), "Debug redacts");
        assert_eq!(c.for_device(Some("00:00:00:00:00:01"), Family::Tasmota).unwrap().password, "s3cret-family");
        assert!(c.for_device(None, Family::Esphome).is_none());
        // Saved, private, and read back.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let again = Credentials::load(&path).unwrap();
        assert_eq!(again.list().unwrap().len(), 2);
        assert!(again.remove("a4:cf:12:34:56:78").unwrap());
        assert!(!again.remove("a4:cf:12:34:56:78").unwrap());
        assert_eq!(Credentials::load(&path).unwrap().list().unwrap().len(), 1);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Credentials::load(&path).unwrap_err().to_string().contains("not a credentials file"));
    }
}
