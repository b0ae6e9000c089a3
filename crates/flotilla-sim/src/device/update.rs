//! The update itself, the same for pull and MQTT devices; only where reports go differs
//! ([`Uplink`]).
//!
//! The order is what real client firmware must do, and the simulator must never shortcut it:
//! verify the Ed25519 signature over the exact `manifest_json` bytes with the trusted key, check
//! the manifest is for this chip, download, check the SHA-256 against the signed manifest, parse
//! the image and take the version from its bytes — never from the offer — then reboot into it.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use flotilla_core::firmware::image;
use flotilla_proto::firmware::Manifest;
use flotilla_proto::native::{DeviceOtaState, Offer, OtaStatus, ReportRequest};
use reqwest::Url;
use rumqttc::{AsyncClient, QoS};
use sha2::{Digest, Sha256};

use super::download::{self, Progress};
use super::{Ctx, Device, DeviceState, TrustedKey};

/// Where a device's progress reports go.
#[derive(Debug)]
pub(crate) enum Uplink<'a> {
    /// `POST <api>/api/v1/report`.
    Http { client: &'a reqwest::Client, report_url: &'a Url },
    /// [`OtaStatus`] on the status topic; final states on the result topic when the profile has one.
    Mqtt { client: &'a AsyncClient, status: &'a str, result: Option<&'a str>, queued: &'a AtomicUsize },
}

impl Uplink<'_> {
    /// Sends one report. A report that cannot be sent is logged and the update goes on: the
    /// engine decides from what it sees, and a real device does not stall on a lost report.
    pub async fn report(
        &self,
        device: &Device,
        job: &str,
        state: DeviceOtaState,
        progress: Option<u8>,
        error: Option<&str>,
    ) {
        let error = error.map(str::to_owned);
        match self {
            Uplink::Http { client, report_url } => {
                let body = ReportRequest {
                    device_id: device.ident.id.clone(),
                    mac: Some(device.ident.mac.clone()),
                    job: job.to_owned(),
                    state,
                    progress,
                    error,
                    version: Some(device.version()),
                };
                let mut request = client.post((*report_url).clone()).json(&body);
                if let Some(secret) = device.secret() {
                    request = request.bearer_auth(secret);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::debug!(device = %device.ident.id, "report refused: HTTP {}", r.status()),
                    Err(e) => tracing::debug!(device = %device.ident.id, "report not sent: {e}"),
                }
            }
            Uplink::Mqtt { client, status, result, queued } => {
                let body = OtaStatus { job: job.to_owned(), state, progress, error };
                let payload = serde_json::to_vec(&body).unwrap_or_default();
                let is_final =
                    matches!(state, DeviceOtaState::Rebooting | DeviceOtaState::Failed | DeviceOtaState::Rejected);
                let topic = if is_final { result.unwrap_or(status) } else { status };
                queued.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = client.publish(topic.to_owned(), QoS::AtLeastOnce, false, payload).await {
                    tracing::debug!(device = %device.ident.id, "status not published: {e}");
                }
            }
        }
    }
}

/// How an update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Installed; the device now reboots into `version` (read from the image bytes).
    Reboot { version: String },
    /// Reported `failed`; the device runs on.
    Failed,
    /// Reported `rejected`; the device runs on.
    Rejected,
}

/// Checks an offer as device firmware does: the signature over the exact `manifest_json` bytes,
/// then that the signed manifest is for this chip and agrees with the offer's unsigned fields.
pub(crate) fn verify_offer(
    offer: &Offer,
    key: &TrustedKey,
    chip: flotilla_proto::firmware::Chip,
) -> Result<Manifest, String> {
    let bad = |why: &str| {
        let by = if offer.key_id == key.key_id {
            String::new()
        } else {
            format!(" (signed by key {}, device trusts {})", offer.key_id, key.key_id)
        };
        format!("signature invalid: {why}{by}")
    };
    let verifying = VerifyingKey::from_bytes(&key.public).map_err(|_| bad("trusted key is not an Ed25519 key"))?;
    let sig = B64.decode(offer.signature.trim()).map_err(|_| bad("signature is not base64"))?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| bad("signature is not 64 bytes"))?;
    verifying
        .verify_strict(offer.manifest_json.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| bad("does not match the manifest"))?;
    let manifest: Manifest =
        serde_json::from_str(&offer.manifest_json).map_err(|e| format!("signed manifest is not a manifest: {e}"))?;
    if manifest.chip != chip {
        return Err(format!("firmware is for {}, this device is {chip}", manifest.chip));
    }
    if !manifest.sha256.eq_ignore_ascii_case(&offer.sha256) || manifest.size != offer.size {
        return Err("offer disagrees with its signed manifest (sha256 or size)".into());
    }
    Ok(manifest)
}

/// Runs one update from an admitted offer to the moment the device would reboot.
pub(crate) async fn install(
    device: &Device,
    ctx: &Ctx,
    offer: &Offer,
    uplink: &Uplink<'_>,
    http: &reqwest::Client,
) -> Outcome {
    let job = offer.job.as_str();
    let failures = device.failures();
    let reject = |why: String| async move {
        tracing::info!(device = %device.ident.id, job, "rejected: {why}");
        device.record_error(&why);
        uplink.report(device, job, DeviceOtaState::Rejected, None, Some(&why)).await;
        Outcome::Rejected
    };
    if failures.refuse {
        return reject("device policy refuses updates (simulated refuse)".into()).await;
    }
    let manifest = match verify_offer(offer, &ctx.key, ctx.config.chip) {
        Ok(m) => m,
        Err(why) => return reject(why).await,
    };
    let url = match resolve(ctx.api.as_ref(), &offer.url) {
        Ok(u) => u,
        Err(why) => return reject(why).await,
    };
    tracing::info!(device = %device.ident.id, job, "accepted {} ({} bytes)", manifest.version, manifest.size);
    device.set_state(DeviceState::Accepted, None);
    uplink.report(device, job, DeviceOtaState::Accepted, None, None).await;

    let fail = |why: String| async move {
        tracing::info!(device = %device.ident.id, job, "failed: {why}");
        device.record_error(&why);
        device.set_state(DeviceState::Idle, None);
        uplink.report(device, job, DeviceOtaState::Failed, None, Some(&why)).await;
        Outcome::Failed
    };
    let mut progress = Progress::new(device, uplink, job);
    let mut bytes = match download::fetch(http, &url, manifest.size, &failures, ctx, &mut progress).await {
        Ok(b) => b,
        Err(why) => return fail(why).await,
    };
    if failures.corrupt {
        let middle = bytes.len() / 2;
        if let Some(b) = bytes.get_mut(middle) {
            *b ^= 0xFF;
        }
    }
    let sha = hex::encode(Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(&manifest.sha256) {
        return fail(format!("sha256 mismatch: manifest says {}, downloaded {sha}", manifest.sha256)).await;
    }
    let info = match image::inspect(&bytes) {
        Ok(info) => info,
        Err(e) => return fail(format!("not a valid image: {e}")).await,
    };
    drop(bytes);
    if info.chip != ctx.config.chip {
        return fail(format!("image is for {}, this device is {}", info.chip, ctx.config.chip)).await;
    }
    let Some(version) = info.version.filter(|v| !v.is_empty()) else {
        return fail("image carries no app version".into()).await;
    };
    device.set_state(DeviceState::Installing, None);
    uplink.report(device, job, DeviceOtaState::Installing, Some(100), None).await;
    device.set_state(DeviceState::Rebooting, None);
    uplink.report(device, job, DeviceOtaState::Rebooting, Some(100), None).await;
    tracing::info!(device = %device.ident.id, job, "installed {version}, rebooting");
    Outcome::Reboot { version }
}

/// The download URL of an offer: absolute as the engine sends it, or relative to the engine.
fn resolve(api: Option<&Url>, url: &str) -> Result<Url, String> {
    match Url::parse(url) {
        Ok(u) if u.scheme() == "http" => Ok(u),
        Ok(u) => Err(format!("download URL scheme `{}` is not supported (plain http only)", u.scheme())),
        Err(_) => api.and_then(|base| base.join(url).ok()).ok_or_else(|| format!("download URL `{url}` is not a URL")),
    }
}

/// Offline for the reboot delay, then up again: on `new_version`, on the old one when the image
/// fails to boot (`boot`), or not at all until repaired (`vanish`; a repaired device comes back on
/// the old version, as ESP-IDF's rollback does when the new app never marked itself valid).
pub(crate) async fn reboot(device: &Device, ctx: &Ctx, new_version: String) {
    device.set_state(DeviceState::Rebooting, None);
    tokio::time::sleep(ctx.config.reboot_delay).await;
    let failures = device.failures();
    let old = device.version();
    if failures.vanish {
        device.set_state(DeviceState::Vanished, None);
        tracing::info!(device = %device.ident.id, "vanished after reboot");
        device.revived().await;
        tracing::info!(device = %device.ident.id, "repaired, back on {old}");
        device.booted(old);
    } else if failures.boot {
        tracing::info!(device = %device.ident.id, "{new_version} failed to boot, rolled back to {old}");
        device.booted(old);
    } else {
        device.booted(new_version);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use flotilla_proto::firmware::Chip;

    fn offer(key: &SigningKey, manifest: &Manifest) -> Offer {
        let manifest_json = serde_json::to_string(manifest).unwrap();
        let signature = B64.encode(key.sign(manifest_json.as_bytes()).to_bytes());
        Offer {
            update_available: true,
            job: "j1".into(),
            url: "/fw/x.bin".into(),
            version: manifest.version.clone(),
            size: manifest.size,
            sha256: manifest.sha256.clone(),
            chip: manifest.chip,
            model: manifest.model.clone(),
            min_version: None,
            secure_version: None,
            manifest_json,
            signature,
            key_id: TrustedKey::new(key.verifying_key().to_bytes()).key_id,
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            version: "2.0.0".into(),
            size: 10,
            sha256: "ab".repeat(32),
            chip: Chip::Esp32,
            model: "m".into(),
            min_version: None,
            secure_version: None,
        }
    }

    #[test]
    fn offers_are_verified_over_the_exact_manifest_bytes() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let trusted = TrustedKey::new(key.verifying_key().to_bytes());
        let good = offer(&key, &manifest());
        assert_eq!(verify_offer(&good, &trusted, Chip::Esp32).unwrap(), manifest());

        // Same JSON value, different bytes: a device must refuse it.
        let mut spaced = good.clone();
        spaced.manifest_json = spaced.manifest_json.replace(",", ", ");
        assert!(verify_offer(&spaced, &trusted, Chip::Esp32).unwrap_err().contains("signature invalid"));

        let other = SigningKey::from_bytes(&[4; 32]);
        let foreign = offer(&other, &manifest());
        let err = verify_offer(&foreign, &trusted, Chip::Esp32).unwrap_err();
        assert!(err.contains("device trusts"), "{err}");

        assert!(verify_offer(&good, &trusted, Chip::Esp32s3).unwrap_err().contains("firmware is for esp32"));

        let mut lying = good;
        lying.sha256 = "cd".repeat(32);
        assert!(verify_offer(&lying, &trusted, Chip::Esp32).unwrap_err().contains("disagrees"));
    }

    #[test]
    fn download_urls_resolve_against_the_engine() {
        let api = Url::parse("http://127.0.0.1:8070").unwrap();
        assert_eq!(resolve(Some(&api), "/fw/a.bin?t=x").unwrap().as_str(), "http://127.0.0.1:8070/fw/a.bin?t=x");
        assert_eq!(resolve(None, "http://h:1/fw").unwrap().as_str(), "http://h:1/fw");
        assert!(resolve(None, "/fw").is_err());
        assert!(resolve(None, "https://h/fw").unwrap_err().contains("plain http"));
    }
}
