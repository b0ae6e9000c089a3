//! Device identity: a device is believed only when it proves who it is (`docs/device-api.md`,
//! "Enrolment and credentials").
//!
//! - A native device enrols on its first `POST /api/v1/check` and receives a per-device secret
//!   once (trust on first use; with `approve_new_devices` it then waits for a person's approval).
//!   Every later check-in, report and download of an enrolled device carries
//!   `Authorization: Bearer <secret>`; only the SHA-256 of the secret is kept, compared in
//!   constant time. A request for an enrolled device without it is refused, changes nothing, and
//!   is recorded as a security event (rate-limited, never with the secret).
//! - Job ids devices see are `<job>-<command>-<nonce>`: the nonce is an HMAC of the job id under
//!   the site's device-auth key, so ids cannot be guessed and survive a restart.
//! - Enrolled devices get their own login on the embedded MQTT broker: user name = device id,
//!   password = HMAC(key, MAC ‖ generation); the broker confines such a login to its own topics.
//!
//! Credentials live in the fleet (one lock with the inventory and the rollouts): a check-in
//! checks its credential under the lock it takes anyway.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use flotilla_proto::device::DeviceAuth;
use flotilla_store::auth::CredentialRow;
use flotilla_store::events::NewEvent;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{CoreError, Result};
use crate::secrets;
use crate::{DeviceKey, DeviceMap};

type HmacSha256 = Hmac<Sha256>;

/// The site's device-auth key (`<data>/keys/device-auth.key`): job nonces and MQTT passwords.
#[derive(Clone)]
pub(crate) struct AuthKey([u8; 32]);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey { .. }")
    }
}

impl AuthKey {
    pub fn load_or_create(keys_dir: &Path) -> Result<AuthKey> {
        secrets::private_dir(keys_dir)?;
        let key = secrets::load_or_create(
            &keys_dir.join("device-auth.key"),
            || Ok(secrets::random_bytes::<32>()?.to_vec()),
            |b| b.len() == 32,
        )?;
        let key: [u8; 32] =
            key.try_into().map_err(|_| CoreError::Refused("device-auth key has the wrong length".into()))?;
        Ok(AuthKey(key))
    }

    #[cfg(test)]
    pub fn from_key(key: [u8; 32]) -> AuthKey {
        AuthKey(key)
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        // A 32-byte key zero-padded to the 64-byte block is the same HMAC key; `new` on a full
        // block cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
        for p in parts {
            mac.update(p);
            mac.update(b"\n");
        }
        mac.finalize().into_bytes().into()
    }

    /// The unguessable part of job `id`'s ids (24 hex digits).
    pub fn job_nonce(&self, id: i64) -> String {
        hex::encode(&self.tag(&[b"job", id.to_string().as_bytes()])[..12])
    }

    /// The MQTT password of the device `mac` at credential `generation`.
    pub fn mqtt_password(&self, mac: &str, generation: u32) -> String {
        B64URL.encode(self.tag(&[b"mqtt", mac.as_bytes(), generation.to_string().as_bytes()]))
    }
}

/// Where a credential stands (the store's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredState {
    Pending,
    Approved,
    Revoked,
    Rekey,
}

impl CredState {
    fn as_str(self) -> &'static str {
        match self {
            CredState::Pending => "pending",
            CredState::Approved => "approved",
            CredState::Revoked => "revoked",
            CredState::Rekey => "rekey",
        }
    }
    fn parse(s: &str) -> Option<CredState> {
        [CredState::Pending, CredState::Approved, CredState::Revoked, CredState::Rekey]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
    pub fn device_auth(self) -> DeviceAuth {
        match self {
            CredState::Pending => DeviceAuth::Pending,
            CredState::Approved => DeviceAuth::Enrolled,
            CredState::Revoked => DeviceAuth::Revoked,
            CredState::Rekey => DeviceAuth::Rekey,
        }
    }
}

/// One device's credential.
#[derive(Debug, Clone)]
pub(crate) struct Cred {
    /// Inline: every check-in compares it.
    pub device_id: Option<DeviceKey>,
    /// SHA-256 of the secret.
    hash: Option<[u8; 32]>,
    pub generation: u32,
    pub state: CredState,
    pub enrolled_at: i64,
}

impl Cred {
    /// Does `secret` prove to be this credential's device (approved or waiting for approval)?
    /// Constant time in the secret.
    fn proven_by(&self, secret: Option<&str>) -> bool {
        let (Some(hash), Some(secret)) = (&self.hash, secret) else { return false };
        matches!(self.state, CredState::Approved | CredState::Pending) && bool::from(digest(secret).ct_eq(hash))
    }
}

/// What the engine does with a request that names a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on. `authenticated`: the device proved who it is and is approved; `pending`: it proved
    /// who it is but waits for approval.
    Pass { authenticated: bool, pending: bool },
    /// Enrol the device (a native check-in of a new or re-keyed device).
    Enrol,
    /// Refuse, changing nothing; the reason is recorded (never the secret).
    Refuse(String),
}

/// A new credential: the secret for the device (once) and the row to keep.
#[derive(Debug)]
pub(crate) struct Issued {
    pub secret: String,
    pub generation: u32,
    pub state: CredState,
}

/// Every credential, by MAC, with an index by device id; the policy; the security-event limit.
#[derive(Debug)]
pub(crate) struct Credentials {
    by_mac: DeviceMap<DeviceKey, Cred>,
    by_id: DeviceMap<String, String>,
    /// New devices wait for approval.
    pub approve_new: bool,
    /// Compatibility check-ins (unauthenticated) are refused.
    pub refuse_unauthenticated: bool,
    limit: RateLimit,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            by_mac: DeviceMap::default(),
            by_id: DeviceMap::default(),
            approve_new: false,
            refuse_unauthenticated: false,
            limit: RateLimit::new(),
        }
    }
}

/// SHA-256 of a secret.
fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The bearer secret of an `Authorization` header value.
pub(crate) fn bearer(value: Option<&str>) -> Option<&str> {
    let v = value?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|s| !s.is_empty())
}

impl Credentials {
    pub fn load(rows: Vec<CredentialRow>) -> Credentials {
        let mut c = Credentials::default();
        for r in rows {
            let hash = r.secret_hash.as_deref().and_then(|h| hex::decode(h).ok()).and_then(|h| h.try_into().ok());
            let Some(state) = CredState::parse(&r.state) else { continue };
            c.by_mac.insert(
                DeviceKey::from(r.mac),
                Cred {
                    device_id: r.device_id.map(DeviceKey::from),
                    hash,
                    generation: r.generation,
                    state,
                    enrolled_at: r.enrolled_at,
                },
            );
        }
        // One device id may be on several rows: a re-keyed or revoked device's, and the device
        // that took the id since. The id is that one's, whatever order the rows came in.
        let holds = |c: &Cred| (matches!(c.state, CredState::Approved | CredState::Pending), c.enrolled_at);
        for (mac, cred) in &c.by_mac {
            let Some(id) = &cred.device_id else { continue };
            let better = match c.by_id.get(id.as_str()).and_then(|m| c.by_mac.get(m.as_str())) {
                Some(held) => holds(cred) > holds(held),
                None => true,
            };
            if better {
                c.by_id.insert(id.as_str().to_owned(), mac.as_str().to_owned());
            }
        }
        c
    }

    pub fn get(&self, mac: &str) -> Option<&Cred> {
        self.by_mac.get(mac)
    }

    /// The MAC of the enrolled device whose id is `device_id`.
    pub fn mac_of_id(&self, device_id: &str) -> Option<&str> {
        self.by_id.get(device_id).map(String::as_str)
    }

    /// Does the device `mac` hold a credential that must be shown (any state but none)?
    pub fn is_enrolled(&self, mac: &str) -> bool {
        self.by_mac.contains_key(mac)
    }

    /// Does `secret` prove to be the device `mac`? Constant time in the secret.
    pub fn proves(&self, mac: &str, secret: Option<&str>) -> bool {
        self.by_mac.get(mac).is_some_and(|c| c.proven_by(secret))
    }

    /// Decides a check-in of `device_id` at `mac`. `native`: the native check-in (which may
    /// enrol); otherwise a compatibility profile (which never does).
    pub fn check_in(&self, mac: &str, device_id: &str, secret: Option<&str>, native: bool) -> Verdict {
        let cred = self.by_mac.get(mac);
        // A device that holds its id (enrolled with it, not being re-keyed) is the one the id
        // index names, or one the index does not refuse: enrolment never hands an id held that
        // way to another device. Only other check-ins need the index.
        let holds_id =
            cred.is_some_and(|c| c.state != CredState::Rekey && c.device_id.as_ref().is_some_and(|d| d.is(device_id)));
        if !holds_id
            && let Some(other) = self.by_id.get(device_id)
            && other != mac
            && self.by_mac.get(other.as_str()).is_some_and(|c| c.state != CredState::Rekey)
        {
            return Verdict::Refuse(format!("device id {device_id:?} belongs to another enrolled device"));
        }
        match cred {
            None if native => Verdict::Enrol,
            None if self.refuse_unauthenticated => {
                Verdict::Refuse("unauthenticated check-ins are refused on this site".into())
            }
            None => Verdict::Pass { authenticated: false, pending: false },
            Some(c) if c.state == CredState::Rekey => {
                if native {
                    Verdict::Enrol
                } else {
                    Verdict::Refuse("an enrolled device must use the native check-in".into())
                }
            }
            Some(c) if c.state == CredState::Revoked => Verdict::Refuse("the device's credential is revoked".into()),
            Some(c) => {
                if c.proven_by(secret) {
                    Verdict::Pass {
                        authenticated: c.state == CredState::Approved,
                        pending: c.state == CredState::Pending,
                    }
                } else if secret.is_some() {
                    Verdict::Refuse("wrong credential".into())
                } else {
                    Verdict::Refuse("the device is enrolled: its credential is required".into())
                }
            }
        }
    }

    /// Enrols (or re-enrols) `mac` as `device_id`: a new secret, kept as its hash.
    pub fn enrol(&mut self, mac: &str, device_id: &str, now: i64) -> Result<(Issued, CredentialRow)> {
        let secret = B64URL.encode(secrets::random_bytes::<32>()?);
        let generation = self.by_mac.get(mac).map_or(1, |c| c.generation.saturating_add(1));
        let state = if self.approve_new { CredState::Pending } else { CredState::Approved };
        let cred = Cred {
            device_id: Some(DeviceKey::from(device_id)),
            hash: Some(digest(&secret)),
            generation,
            state,
            enrolled_at: now,
        };
        if let Some(old) = self.by_mac.get(mac).and_then(|c| c.device_id.clone())
            && self.by_id.get(old.as_str()).is_some_and(|m| m == mac)
        {
            self.by_id.remove(old.as_str());
        }
        self.by_id.insert(device_id.to_owned(), mac.to_owned());
        let row = row(mac, &cred, now);
        self.by_mac.insert(DeviceKey::from(mac), cred);
        Ok((Issued { secret, generation, state }, row))
    }

    /// Sets the state of an existing credential (approve, revoke, re-key); the row to write.
    pub fn set_state(&mut self, mac: &str, state: CredState, now: i64) -> Option<CredentialRow> {
        let cred = self.by_mac.get_mut(mac)?;
        cred.state = state;
        if state == CredState::Rekey {
            cred.hash = None;
        }
        Some(row(mac, cred, now))
    }

    /// Forgets the credential of a forgotten device.
    pub fn forget(&mut self, mac: &str) -> bool {
        let Some(c) = self.by_mac.remove(mac) else { return false };
        if let Some(id) = c.device_id
            && self.by_id.get(id.as_str()).is_some_and(|m| m == mac)
        {
            self.by_id.remove(id.as_str());
        }
        true
    }

    /// A refused request, as a security event (`None` while the rate limit holds them back;
    /// a later one says how many were held back). Logged the same way.
    pub fn refusal(
        &mut self,
        what: &str,
        mac: Option<&str>,
        device_id: Option<&str>,
        ip: Option<&str>,
        why: &str,
    ) -> Option<NewEvent> {
        let suppressed = self.limit.admit()?;
        tracing::warn!(what, mac, device_id, ip, why, suppressed, "refused a device request");
        let subject = mac.map(|m| format!("device:{m}"));
        Some(NewEvent::new(
            "security.refused",
            &format!("ip:{}", ip.unwrap_or("unknown")),
            subject,
            json!({ "what": what, "mac": mac, "device_id": device_id, "ip": ip, "reason": why,
                    "suppressed_before": suppressed }),
        ))
    }
}

/// Identity state at start: merges the labels devices report into the devices, marks each
/// device's credential state, and gives every job its nonce and its evidence.
pub(crate) fn load(
    conn: &flotilla_store::rusqlite::Connection,
    key: &AuthKey,
    settings: &flotilla_proto::api::SiteSettings,
    devices: &mut [(flotilla_proto::Device, Option<String>)],
    runs: &mut std::collections::BTreeMap<i64, crate::rollout::run::Run>,
) -> Result<Credentials> {
    let mut creds = Credentials::load(flotilla_store::auth::credentials(conn)?);
    creds.approve_new = settings.approve_new_devices.unwrap_or(false);
    creds.refuse_unauthenticated = settings.refuse_unauthenticated.unwrap_or(false);
    let mut reported = flotilla_store::auth::reported_labels(conn)?;
    for (d, _) in devices.iter_mut() {
        d.device_labels = reported.remove(&d.mac).unwrap_or_default();
        crate::inventory::union_labels(d);
        if let Some(c) = creds.get(&d.mac) {
            d.auth = c.state.device_auth();
            d.authenticated = c.state == CredState::Approved;
        }
    }
    let evidence: HashMap<i64, flotilla_store::auth::EvidenceRow> =
        flotilla_store::auth::evidence(conn)?.into_iter().map(|e| (e.job_id, e)).collect();
    for run in runs.values_mut() {
        for j in &mut run.jobs {
            j.nonce = key.job_nonce(j.id);
            if let Some(e) = evidence.get(&j.id) {
                j.downloaded = e.downloaded_command;
                j.evidence.clone_from(&e.evidence);
            }
        }
    }
    Ok(creds)
}

fn row(mac: &str, c: &Cred, now: i64) -> CredentialRow {
    CredentialRow {
        mac: mac.to_owned(),
        device_id: c.device_id.as_ref().map(|d| d.as_str().to_owned()),
        secret_hash: c.hash.map(hex::encode),
        generation: c.generation,
        state: c.state.as_str().to_owned(),
        enrolled_at: c.enrolled_at,
        updated_at: now,
    }
}

/// At most [`RateLimit::PER_WINDOW`] security events (and log lines) per
/// [`RateLimit::WINDOW`]: a flood of forged requests must not flood the log or the store.
#[derive(Debug)]
struct RateLimit {
    start: std::time::Instant,
    count: u32,
    suppressed: u64,
}

impl RateLimit {
    const PER_WINDOW: u32 = 20;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

    fn new() -> RateLimit {
        RateLimit { start: std::time::Instant::now(), count: 0, suppressed: 0 }
    }

    /// `Some(held back before)` when one more may go out now.
    fn admit(&mut self) -> Option<u64> {
        if self.start.elapsed() >= RateLimit::WINDOW {
            self.start = std::time::Instant::now();
            self.count = 0;
        }
        if self.count >= RateLimit::PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.count += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: &str = "aa:bb:cc:00:00:01";

    #[test]
    fn first_native_contact_enrols_then_the_secret_is_required() {
        let mut c = Credentials::default();
        assert_eq!(c.check_in(MAC, "pump-1", None, true), Verdict::Enrol);
        assert_eq!(c.check_in(MAC, "pump-1", None, false), Verdict::Pass { authenticated: false, pending: false });
        let (issued, row) = c.enrol(MAC, "pump-1", 5).unwrap();
        assert_eq!(row.state, "approved");
        assert_eq!(row.secret_hash.as_deref(), Some(hex::encode(digest(&issued.secret)).as_str()));
        assert!(!row.secret_hash.unwrap().contains(&issued.secret));
        let ok = Verdict::Pass { authenticated: true, pending: false };
        assert_eq!(c.check_in(MAC, "pump-1", Some(&issued.secret), true), ok);
        assert!(matches!(c.check_in(MAC, "pump-1", None, true), Verdict::Refuse(_)));
        assert!(matches!(c.check_in(MAC, "pump-1", Some("guess"), true), Verdict::Refuse(_)));
        assert!(matches!(c.check_in(MAC, "pump-1", None, false), Verdict::Refuse(_)), "compat without it");
        // Another MAC claiming the enrolled id.
        assert!(matches!(c.check_in("aa:bb:cc:00:00:02", "pump-1", None, true), Verdict::Refuse(_)));
        // Re-key: the next native check-in enrols again, generation 2; revoke refuses.
        c.set_state(MAC, CredState::Rekey, 6).unwrap();
        assert!(!c.proves(MAC, Some(&issued.secret)));
        assert_eq!(c.check_in(MAC, "pump-1", Some(&issued.secret), true), Verdict::Enrol);
        let (again, _) = c.enrol(MAC, "pump-1", 7).unwrap();
        assert_eq!(again.generation, 2);
        c.set_state(MAC, CredState::Revoked, 8).unwrap();
        assert!(matches!(c.check_in(MAC, "pump-1", Some(&again.secret), true), Verdict::Refuse(_)));
    }

    #[test]
    fn a_re_keyed_device_cannot_take_back_an_id_another_device_took() {
        let mut c = Credentials::default();
        let other = "aa:bb:cc:00:00:02";
        c.enrol(MAC, "pump-1", 1).unwrap();
        c.set_state(MAC, CredState::Rekey, 2).unwrap();
        // While MAC is being re-keyed, a replacement board enrols under the same id.
        assert_eq!(c.check_in(other, "pump-1", None, true), Verdict::Enrol);
        let (issued, _) = c.enrol(other, "pump-1", 3).unwrap();
        assert!(matches!(c.check_in(MAC, "pump-1", None, true), Verdict::Refuse(r) if r.contains("another")));
        assert_eq!(
            c.check_in(other, "pump-1", Some(&issued.secret), true),
            Verdict::Pass { authenticated: true, pending: false }
        );
    }

    #[test]
    fn after_a_restart_an_id_belongs_to_the_device_that_holds_it_whatever_the_row_order() {
        let cred = |mac: &str, state: &str, secret: Option<&str>, enrolled_at: i64| CredentialRow {
            mac: mac.into(),
            device_id: Some("pump-1".into()),
            secret_hash: secret.map(|s| hex::encode(digest(s))),
            generation: 1,
            state: state.into(),
            enrolled_at,
            updated_at: enrolled_at,
        };
        let holder = "aa:bb:cc:00:00:02";
        let ok = Verdict::Pass { authenticated: true, pending: false };
        for old_state in ["rekey", "revoked"] {
            let rows = [cred(holder, "approved", Some("s2"), 10), cred(MAC, old_state, None, 5)];
            for order in [rows.to_vec(), rows.iter().rev().cloned().collect()] {
                let c = Credentials::load(order);
                assert_eq!(c.check_in(holder, "pump-1", Some("s2"), true), ok, "{old_state}");
                assert!(matches!(c.check_in(MAC, "pump-1", None, true), Verdict::Refuse(_)), "{old_state}");
            }
        }
    }

    #[test]
    fn approval_and_unauthenticated_policies() {
        let mut c = Credentials { approve_new: true, ..Credentials::default() };
        let (issued, _) = c.enrol(MAC, "pump-1", 1).unwrap();
        assert_eq!(issued.state, CredState::Pending);
        assert_eq!(
            c.check_in(MAC, "pump-1", Some(&issued.secret), true),
            Verdict::Pass { authenticated: false, pending: true }
        );
        c.set_state(MAC, CredState::Approved, 2);
        assert_eq!(
            c.check_in(MAC, "pump-1", Some(&issued.secret), true),
            Verdict::Pass { authenticated: true, pending: false }
        );
        c.refuse_unauthenticated = true;
        assert!(matches!(c.check_in("aa:bb:cc:00:00:09", "x", None, false), Verdict::Refuse(_)));
    }

    #[test]
    fn keys_make_stable_unguessable_nonces_and_passwords() {
        let k = AuthKey::from_key([7; 32]);
        assert_eq!(k.job_nonce(42), k.job_nonce(42));
        assert_ne!(k.job_nonce(42), k.job_nonce(43));
        assert_eq!(k.job_nonce(42).len(), 24);
        assert_ne!(k.job_nonce(42), AuthKey::from_key([8; 32]).job_nonce(42));
        assert_ne!(k.mqtt_password(MAC, 1), k.mqtt_password(MAC, 2));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn security_events_are_rate_limited() {
        let mut c = Credentials::default();
        let n = (0..100).filter_map(|_| c.refusal("check", Some(MAC), None, None, "x")).count();
        assert_eq!(n, RateLimit::PER_WINDOW as usize);
    }
}
