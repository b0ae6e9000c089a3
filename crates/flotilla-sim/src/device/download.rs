//! The firmware download: one GET, and after a dropped connection `Range: bytes=N-` from where
//! it stopped, a few times. A `206` must start exactly at `N`; a `200` to a ranged request means
//! the server ignored the range, so the device starts over. Never more bytes than the signed
//! manifest says.
//!
//! Failure injection lives here too: `drop` cuts the connection once at half the bytes, `slow`
//! paces reading so the TCP window throttles the server.

use std::time::Duration;

use flotilla_proto::native::DeviceOtaState;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use super::update::Uplink;
use super::{Ctx, Device, DeviceState};
use crate::failures::Failures;

/// Reports download progress at 0 %, at each 10 % step and at 100 %.
#[derive(Debug)]
pub(crate) struct Progress<'a> {
    device: &'a Device,
    uplink: &'a Uplink<'a>,
    job: &'a str,
    last_step: Option<u8>,
}

impl<'a> Progress<'a> {
    pub fn new(device: &'a Device, uplink: &'a Uplink<'a>, job: &'a str) -> Progress<'a> {
        Progress { device, uplink, job, last_step: None }
    }

    async fn update(&mut self, received: u64, total: u64) {
        let percent = (received.min(total) * 100).checked_div(total).map_or(100, |p| p as u8);
        let step = percent / 10;
        self.device.set_state(DeviceState::Downloading, Some(percent));
        if self.last_step.is_none_or(|last| step > last) {
            self.last_step = Some(step);
            self.uplink.report(self.device, self.job, DeviceOtaState::Downloading, Some(percent), None).await;
        }
    }
}

/// Downloads exactly `size` bytes from `url`.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &Url,
    size: u64,
    failures: &Failures,
    ctx: &Ctx,
    progress: &mut Progress<'_>,
) -> Result<Vec<u8>, String> {
    let device = progress.device;
    // Capacity is a hint only; the signed size is trusted but capped so a lie cannot reserve memory.
    let mut buf: Vec<u8> = Vec::with_capacity(size.min(4 * 1024 * 1024) as usize);
    let mut drop_pending = failures.drop && size >= 2;
    let mut last_error = String::new();
    progress.update(0, size).await;
    for attempt in 1..=ctx.config.download_attempts {
        if attempt > 1 {
            // A device backs off a little before reconnecting.
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(10)))).await;
        }
        let resume_from = buf.len() as u64;
        let mut request = http.get(url.clone());
        if let Some(secret) = device.secret() {
            request = request.bearer_auth(secret);
        }
        if resume_from > 0 {
            request = request.header(RANGE, format!("bytes={resume_from}-"));
            device.count_resume();
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = format!("connection failed: {e}");
                continue;
            }
        };
        match response.status() {
            StatusCode::PARTIAL_CONTENT if resume_from > 0 => {
                let start =
                    response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(content_range_start);
                if start != Some(resume_from) {
                    return Err(format!("server resumed at {start:?}, not at byte {resume_from}"));
                }
            }
            StatusCode::OK => buf.clear(),
            StatusCode::RANGE_NOT_SATISFIABLE if resume_from == size => return Ok(buf),
            status => {
                let body = response.text().await.unwrap_or_default();
                let line = body.lines().next().unwrap_or_default().trim();
                let sep = if line.is_empty() { "" } else { ": " };
                return Err(format!("download refused: HTTP {}{sep}{line}", status.as_u16()));
            }
        }
        let started = Instant::now();
        let mut received_now: u64 = 0;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    last_error = format!("connection lost at byte {}: {e}", buf.len());
                    break;
                }
            };
            let mut chunk = &chunk[..];
            let half = (size / 2) as usize;
            let cut_here = drop_pending && buf.len() + chunk.len() >= half;
            if cut_here {
                chunk = &chunk[..half.saturating_sub(buf.len()).min(chunk.len())];
            }
            if buf.len() as u64 + chunk.len() as u64 > size {
                return Err(format!("server sent more than the {size} bytes the manifest says"));
            }
            buf.extend_from_slice(chunk);
            received_now += chunk.len() as u64;
            progress.update(buf.len() as u64, size).await;
            if let Some(bps) = failures.slow_bps.filter(|b| *b > 0) {
                let due = Duration::try_from_secs_f64(received_now as f64 / bps as f64)
                    .ok()
                    .and_then(|d| started.checked_add(d));
                if let Some(due) = due {
                    tokio::time::sleep_until(due).await;
                }
            }
            if cut_here {
                // Dropping the response mid-body closes the connection, as a Wi-Fi drop would.
                drop_pending = false;
                last_error = format!("connection dropped at byte {} (simulated drop)", buf.len());
                tracing::debug!(device = %device.ident.id, "{last_error}");
                break;
            }
        }
        if buf.len() as u64 == size {
            return Ok(buf);
        }
        if last_error.is_empty() {
            last_error = format!("connection closed at byte {} of {size}", buf.len());
        }
    }
    Err(format!("download incomplete after {} attempts: {last_error}", ctx.config.download_attempts))
}

/// First byte of `bytes N-M/T`.
fn content_range_start(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_reads_the_first_byte() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
