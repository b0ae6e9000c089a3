//! What a load run found, and the `/proc` readings behind its process figures.
//!
//! Latency percentiles come from a histogram of every answered request (HdrHistogram, µs, three
//! significant digits), never from averages. Process figures are read from `/proc/<pid>/stat`
//! and `/proc/<pid>/status`; on a system without `/proc` they are simply absent.

use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which Linux fixes at 100 for
/// user space on every architecture it exports `/proc` times for.
const TICKS_PER_SEC: f64 = 100.0;

/// The whole report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub devices: usize,
    pub connections: usize,
    pub registration: Registration,
    pub measured: Measured,
    /// The engine process (`--pid`), if given.
    pub engine: Option<ProcessUse>,
    /// The load generator itself over the measured phase.
    pub generator: Option<ProcessUse>,
}

/// Checking every device in once, before measuring.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub seconds: f64,
    /// Check-ins that were not answered `200` (after retries).
    pub errors: u64,
}

/// The measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// From the first request to the last answer.
    pub seconds: f64,
    /// Requests sent (answered or not).
    pub requests: u64,
    /// Requests not answered `200`: `non_200` + `failed`.
    pub errors: u64,
    /// Answered with another status.
    pub non_200: u64,
    /// Not answered: connection refused or reset, or timed out.
    pub failed: u64,
    /// Requests answered `200` per second.
    pub throughput: f64,
    /// `None` (JSON `null`) when nothing was answered: no percentile to give, rather than zeros
    /// that read as a fast server.
    pub latency_ms: Option<Latency>,
}

/// Latency of answered requests, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram recorded in microseconds; `None` when it is empty.
    pub fn from_micros(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// A process's memory now and its CPU time over the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUse {
    pub pid: u32,
    pub rss_kib: u64,
    /// Peak resident memory since the process started (`VmHWM`).
    pub peak_rss_kib: u64,
    /// User + system CPU seconds spent during the measured phase.
    pub cpu_seconds: f64,
}

/// A process's CPU and memory at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl Sample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if the process is gone.
    pub fn read(pid: u32) -> Option<Sample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Sample {
            cpu_seconds: cpu_ticks(&stat)? as f64 / TICKS_PER_SEC,
            rss_kib: status_kib(&status, "VmRSS:")?,
            peak_rss_kib: status_kib(&status, "VmHWM:")?,
        })
    }

    /// Use between `self` (the start) and `end`.
    pub fn until(&self, pid: u32, end: &Sample) -> ProcessUse {
        ProcessUse {
            pid,
            rss_kib: end.rss_kib,
            peak_rss_kib: end.peak_rss_kib,
            cpu_seconds: (end.cpu_seconds - self.cpu_seconds).max(0.0),
        }
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmRSS:   12345 kB`.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// `12345678` → `12,345,678`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.registration;
        let m = &self.measured;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "registered {} devices in {:.2} s ({} check-ins/s), {} errors",
            thousands(self.devices as u64),
            r.seconds,
            thousands((self.devices as f64 / r.seconds.max(1e-9)) as u64),
            r.errors
        );
        let _ = writeln!(
            out,
            "check-ins of random registered devices for {:.1} s over {} keep-alive connections to {}:",
            m.seconds, self.connections, self.url
        );
        let _ = writeln!(
            out,
            "  requests    {} ({} errors: {} non-200, {} failed)",
            thousands(m.requests),
            thousands(m.errors),
            thousands(m.non_200),
            thousands(m.failed)
        );
        let _ = writeln!(out, "  throughput  {} req/s (answered 200)", thousands(m.throughput.round() as u64));
        let _ = match &m.latency_ms {
            Some(l) => writeln!(
                out,
                "  latency     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                l.p50, l.p90, l.p99, l.p99_9, l.max
            ),
            None => writeln!(out, "  latency     none: no request was answered"),
        };
        for (name, p) in [("engine", &self.engine), ("generator", &self.generator)] {
            if let Some(p) = p {
                let per_request = if m.requests > 0 { p.cpu_seconds * 1e6 / m.requests as f64 } else { 0.0 };
                let _ = writeln!(
                    out,
                    "  {name:<10}  pid {}: CPU {:.2} s ({:.0} % of one core, {:.1} µs per request), RSS {:.1} MiB (peak {:.1} MiB)",
                    p.pid,
                    p.cpu_seconds,
                    100.0 * p.cpu_seconds / m.seconds.max(1e-9),
                    per_request,
                    mib(p.rss_kib),
                    mib(p.peak_rss_kib)
                );
            }
        }
        f.write_str(out.trim_end())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system_ticks() {
        // Field 2 with a space and a parenthesis; utime 1500, stime 250.
        let stat = "4242 (tokio (main) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1500 250 0 0 20 0 5 0 123 1000 50";
        assert_eq!(cpu_ticks(stat), Some(1750));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_give_kib() {
        let status = "Name:\tflotilla\nVmHWM:\t   48000 kB\nVmRSS:\t   45000 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(45_000));
        assert_eq!(status_kib(status, "VmHWM:"), Some(48_000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn own_process_can_be_read() {
        let s = Sample::read(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.peak_rss_kib >= s.rss_kib);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        h.record(250_000).unwrap();
        let l = Latency::from_micros(&h).unwrap();
        assert!((l.p50 - 0.5).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 0.99).abs() < 0.01, "{l:?}");
        assert!((l.max - 250.0).abs() < 0.5, "{l:?}");
        // Nothing answered: no percentiles, not zeros.
        let empty = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        assert_eq!(Latency::from_micros(&empty), None);
    }

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
