//! Rate-limited warnings: what a misbehaving or hostile client causes (garbage on the broker, a
//! flood of connections or check-ins on the device server) is logged, but a flood of it never
//! floods the log. At most [`WARNINGS_PER_WINDOW`] warnings per [`WARNING_WINDOW`] go through one
//! [`WarnLimit`]; the rest are counted, and the count is logged with the next one (`suppressed`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings logged per [`WARNING_WINDOW`] through one [`WarnLimit`], at most.
pub const WARNINGS_PER_WINDOW: u32 = 20;
pub const WARNING_WINDOW: Duration = Duration::from_secs(10);

/// The rate limit of one kind of warning: [`WARNINGS_PER_WINDOW`] per [`WARNING_WINDOW`].
pub(crate) struct WarnLimit(pub(crate) Mutex<(Instant, u32, u64)>);

impl WarnLimit {
    pub(crate) fn new() -> WarnLimit {
        WarnLimit(Mutex::new((Instant::now(), 0, 0)))
    }

    /// `Some(suppressed since the last one logged)` when a warning may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, logged, suppressed) = &mut *g;
        if start.elapsed() >= WARNING_WINDOW {
            (*start, *logged) = (Instant::now(), 0);
        }
        if *logged < WARNINGS_PER_WINDOW {
            *logged += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

impl Default for WarnLimit {
    fn default() -> WarnLimit {
        WarnLimit::new()
    }
}

impl std::fmt::Debug for WarnLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarnLimit").finish_non_exhaustive()
    }
}

/// `tracing::warn!` through a [`WarnLimit`]: `warn_limited!(limit = L, …)` through `L`, or
/// `warn_limited!(state, …)` through `state.warnings`.
macro_rules! warn_limited {
    (limit = $limit:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $limit.allow() {
            tracing::warn!(suppressed, $($arg)+);
        }
    };
    ($state:expr, $($arg:tt)+) => {
        $crate::log_limit::warn_limited!(limit = $state.warnings, $($arg)+)
    };
}
pub(crate) use warn_limited;
