//! Counters of the device server, rendered as Prometheus text on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Device-server counters. All are monotonic except `active_transfers`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub downloads: AtomicU64,
    pub downloads_completed: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub active_transfers: AtomicU64,
    pub errors_forbidden: AtomicU64,
    pub errors_not_found: AtomicU64,
    pub errors_range: AtomicU64,
    pub errors_internal: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric(
            "flotilla_http_requests_total",
            "counter",
            "Requests to the device server.",
            self.requests.load(Relaxed),
        );
        metric(
            "flotilla_downloads_total",
            "counter",
            "Firmware downloads started (200 and 206).",
            self.downloads.load(Relaxed),
        );
        metric(
            "flotilla_downloads_completed_total",
            "counter",
            "Firmware downloads whose body was sent in full.",
            self.downloads_completed.load(Relaxed),
        );
        metric("flotilla_download_bytes_total", "counter", "Firmware bytes sent.", self.bytes_sent.load(Relaxed));
        metric(
            "flotilla_active_transfers",
            "gauge",
            "Firmware downloads in progress.",
            self.active_transfers.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_download_errors_total Refused or failed downloads, by HTTP status.\n\
             # TYPE flotilla_download_errors_total counter"
        );
        for (status, c) in [
            (403, &self.errors_forbidden),
            (404, &self.errors_not_found),
            (416, &self.errors_range),
            (500, &self.errors_internal),
        ] {
            let _ = writeln!(out, "flotilla_download_errors_total{{status=\"{status}\"}} {}", c.load(Relaxed));
        }
        out
    }
}
