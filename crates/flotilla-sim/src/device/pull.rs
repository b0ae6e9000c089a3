//! A pull device: checks in every poll interval (seeded jitter, first check-in spread over one
//! interval so a big fleet does not stampede), acts on an offer, and after a reboot checks in
//! at once with the version it booted — which is how the engine learns the outcome.

use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::native::{CheckRequest, CheckResponse, Offer};
use reqwest::Url;

use super::update::{self, Outcome, Uplink};
use super::{Ctx, Device, endpoint};
use crate::identity::Prng;

/// `<base>/<path>`, keeping any path the base URL has.
pub(crate) fn api_url(base: &Url, path: &str) -> Option<Url> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path).ok()
}

/// Runs the device until the task is aborted.
pub(crate) async fn run(device: Arc<Device>, ctx: Arc<Ctx>) {
    let (Some(check_url), Some(report_url)) = (
        ctx.api.as_ref().and_then(|a| api_url(a, "api/v1/check")),
        ctx.api.as_ref().and_then(|a| api_url(a, "api/v1/report")),
    ) else {
        device.record_error("no engine URL");
        return;
    };
    if let Some(victim) = device.victim.get().cloned() {
        return impostor(&device, &victim, &ctx, &check_url, &report_url).await;
    }
    let mut rng = Prng::new(ctx.config.seed ^ (device.ident.index as u64).wrapping_mul(0x9E37_79B9));
    let poll = ctx.config.poll_interval;
    tokio::time::sleep(Duration::try_from_secs_f64(poll.as_secs_f64() * rng.next_f64()).unwrap_or_default()).await;
    loop {
        // One boot: a fresh client (no connection survives a reboot) and the endpoint up.
        let endpoint_guard = endpoint::open(&device, ctx.config.device_port).await;
        let http = match ctx.http_client(&device) {
            Ok(c) => c,
            Err(e) => {
                device.record_error(&format!("HTTP client: {e}"));
                tracing::warn!(device = %device.ident.id, "cannot build an HTTP client: {e}");
                return;
            }
        };
        let new_version = loop {
            if let Some(offer) = check(&device, &ctx, &http, &check_url).await
                && device.admit(&offer.job)
            {
                let uplink = Uplink::Http { client: &http, report_url: &report_url };
                if let Outcome::Reboot { version } = update::install(&device, &ctx, &offer, &uplink, &http).await {
                    break version;
                }
            }
            let jitter = 1.0 + ctx.config.poll_jitter * (2.0 * rng.next_f64() - 1.0);
            let next = Duration::try_from_secs_f64(poll.as_secs_f64() * jitter).unwrap_or(poll);
            tokio::time::sleep(next.max(Duration::from_millis(1))).await;
        };
        drop(endpoint_guard);
        update::reboot(&device, &ctx, new_version).await;
    }
}

/// One check-in; `Some` when the engine offers an update. Errors are logged: the device simply
/// tries again next interval. As `docs/device-api.md` says: the first check-in enrols the device
/// and hands out its secret (kept in memory here, in flash on a real device), and every request
/// after it carries `Authorization: Bearer <secret>`; the device checks in again at once with it.
async fn check(device: &Device, ctx: &Ctx, http: &reqwest::Client, url: &Url) -> Option<Box<Offer>> {
    for _ in 0..2 {
        match check_once(device, ctx, http, url).await? {
            CheckResponse::Offer(offer) if offer.update_available => return Some(offer),
            CheckResponse::NoUpdate { credential: Some(c), .. } => {
                tracing::debug!(device = %device.ident.id, generation = c.generation, "enrolled");
                device.set_secret(c.secret);
            }
            _ => return None,
        }
    }
    None
}

async fn check_once(device: &Device, ctx: &Ctx, http: &reqwest::Client, url: &Url) -> Option<CheckResponse> {
    let labels = &ctx.config.labels;
    let body = CheckRequest {
        device_id: device.ident.id.clone(),
        mac: device.ident.mac.clone(),
        model: Some(ctx.config.model.clone()),
        chip: Some(ctx.config.chip.as_str().to_owned()),
        version: device.version(),
        labels: if labels.is_empty() { None } else { Some(labels.clone()) },
        secure_version: None,
        // As Flotilla's device client does: the engine shows it offline after ~3 missed check-ins.
        interval_secs: u32::try_from(ctx.config.poll_interval.as_secs().max(1)).ok(),
        tls: None,
    };
    let mut request = http.post(url.clone()).timeout(ctx.config.http_timeout).json(&body);
    if let Some(secret) = device.secret() {
        request = request.bearer_auth(secret);
    }
    let response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
            device.count_refused();
            tracing::debug!(device = %device.ident.id, "check-in refused: not authenticated");
            return None;
        }
        Ok(r) => {
            tracing::debug!(device = %device.ident.id, "check-in refused: HTTP {}", r.status());
            return None;
        }
        Err(e) => {
            tracing::debug!(device = %device.ident.id, "check-in failed: {e}");
            return None;
        }
    };
    match response.json::<CheckResponse>().await {
        Ok(answer) => Some(answer),
        Err(e) => {
            tracing::debug!(device = %device.ident.id, "check-in answer unreadable: {e}");
            None
        }
    }
}

/// An `impostor`: once its victim has enrolled, replays the victim's id and MAC every poll
/// interval without its secret — a check-in claiming the victim's version and a report failing
/// the victim's latest job. Every refusal (401/403) is counted; anything else is an error.
async fn impostor(device: &Device, victim: &Device, ctx: &Ctx, check_url: &Url, report_url: &Url) {
    let http = match ctx.http_client(device) {
        Ok(c) => c,
        Err(e) => {
            device.record_error(&format!("HTTP client: {e}"));
            return;
        }
    };
    let poll = ctx.config.poll_interval.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(poll).await;
        if victim.secret().is_none() {
            continue;
        }
        let body = CheckRequest {
            device_id: victim.ident.id.clone(),
            mac: victim.ident.mac.clone(),
            model: Some(ctx.config.model.clone()),
            chip: Some(ctx.config.chip.as_str().to_owned()),
            version: victim.version(),
            labels: None,
            secure_version: None,
            interval_secs: None,
            tls: None,
        };
        let check = http.post(check_url.clone()).timeout(ctx.config.http_timeout).json(&body).send().await;
        let job = victim.snapshot().jobs_seen.last().cloned();
        let report = match job {
            Some(job) => {
                let body = flotilla_proto::native::ReportRequest {
                    device_id: victim.ident.id.clone(),
                    mac: Some(victim.ident.mac.clone()),
                    job,
                    state: flotilla_proto::native::DeviceOtaState::Failed,
                    progress: None,
                    error: Some("forged by an impostor".into()),
                    version: None,
                };
                Some(http.post(report_url.clone()).timeout(ctx.config.http_timeout).json(&body).send().await)
            }
            None => None,
        };
        for answer in std::iter::once(check).chain(report) {
            match answer {
                Ok(r) if matches!(r.status().as_u16(), 401 | 403) => device.count_refused(),
                Ok(r) => device.record_error(&format!("a forged request was answered HTTP {}", r.status())),
                Err(e) => tracing::debug!(device = %device.ident.id, "impostor request failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn api_urls_keep_the_base_path() {
        let u = |b: &str| api_url(&Url::parse(b).unwrap(), "api/v1/check").unwrap().to_string();
        assert_eq!(u("http://127.0.0.1:8070"), "http://127.0.0.1:8070/api/v1/check");
        assert_eq!(u("http://h/flotilla"), "http://h/flotilla/api/v1/check");
        assert_eq!(u("http://h/flotilla/"), "http://h/flotilla/api/v1/check");
    }
}
