//! The async runtime the engine runs on, the same for `flotilla serve`, the CLI and the desktop
//! app.
//!
//! One worker thread unless `TOKIO_WORKER_THREADS` asks for more. The engine's async work is
//! small messages (check-ins, reports, MQTT packets, firmware bytes); what is heavy runs on
//! threads of its own (the store writer, `spawn_blocking` for image parsing, hashing and store
//! reads). With a second worker, most wake-ups also wake the other worker to look for work, and
//! on this project's 2-core machine that cost more than it gave: one rollout through 2,000
//! simulated devices took about 15 % less engine CPU with one worker (`bench/orchestrate.sh`),
//! and check-ins were served faster and with a shorter tail under both load tools
//! (`bench/checkin.sh`; the numbers, with their rounds and load average, in
//! `docs/performance.md`).

use std::io;

/// The variable that sets the number of worker threads (tokio's own name for it).
pub const WORKERS_VAR: &str = "TOKIO_WORKER_THREADS";

/// Worker threads for a value of [`WORKERS_VAR`]: one when unset.
pub fn workers_from(value: Option<&str>) -> Result<usize, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(1),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(format!("{WORKERS_VAR} must be a whole number from 1 to 1024, not {v:?}")),
        },
    }
}

/// Builds the engine's runtime: [`workers_from`] the environment, every driver enabled, threads
/// named `flotilla-rt`.
pub fn build() -> io::Result<tokio::runtime::Runtime> {
    let value = std::env::var(WORKERS_VAR).ok();
    let workers = workers_from(value.as_deref()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("flotilla-rt")
        // Device responses a worker made wait for it to run out of work (`server::corked`).
        .on_thread_park(crate::server::corked::flush_queued)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_unless_asked() {
        assert_eq!(workers_from(None), Ok(1));
        assert_eq!(workers_from(Some("")), Ok(1));
        assert_eq!(workers_from(Some(" 4 ")), Ok(4));
        for bad in ["0", "-1", "two", "1.5", "100000"] {
            let err = workers_from(Some(bad)).err().unwrap_or_default();
            assert!(err.contains(WORKERS_VAR) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn the_runtime_has_the_workers_the_environment_asks_for() {
        let expected = workers_from(std::env::var(WORKERS_VAR).ok().as_deref());
        let rt = build();
        assert_eq!(expected.is_ok(), rt.is_ok(), "expected {expected:?}");
        if let (Ok(n), Ok(rt)) = (expected, rt) {
            assert_eq!(rt.metrics().num_workers(), n);
        }
    }
}
