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
/// tries again next interval.
async fn check(device: &Device, ctx: &Ctx, http: &reqwest::Client, url: &Url) -> Option<Box<Offer>> {
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
    let response = match http.post(url.clone()).timeout(ctx.config.http_timeout).json(&body).send().await {
        Ok(r) if r.status().is_success() => r,
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
        Ok(CheckResponse::Offer(offer)) if offer.update_available => Some(offer),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(device = %device.ident.id, "check-in answer unreadable: {e}");
            None
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
