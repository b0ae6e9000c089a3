//! The audit log: every change the engine made, who made it, newest first; and its retention
//! (the log is pruned in the background, a small batch at a time, so the store writer never
//! waits long behind it).

use flotilla_proto::{Event, EventPage};
use flotilla_store::clock;
use flotilla_store::events::{self, Filter};

use super::EngineHandle;
use crate::error::Result;

/// Days the audit log keeps events unless the settings say otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Events the audit log keeps at most unless the settings say otherwise.
pub const DEFAULT_RETENTION_MAX: u64 = 1_000_000;
/// Events deleted per transaction while pruning.
const PRUNE_BATCH: u32 = 5_000;

/// Which events a page of the audit log holds.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Ids below this one (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Kinds starting with this (`job.`, `rollout.paused`).
    pub kind: Option<String>,
    /// Events at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// At most this many (1-1000).
    pub limit: u32,
}

impl EngineHandle {
    pub async fn events_page(&self, q: EventQuery) -> Result<EventPage> {
        // Events are written behind: what happened before this call is in the log once flushed.
        self.shared.writer.flush().await?;
        self.shared
            .db
            .call(move |s| {
                let filter = Filter { before: q.before, kind_prefix: q.kind.as_deref(), since_ms: q.since_ms };
                Ok(events::page(s.conn(), filter, q.limit)?)
            })
            .await
    }

    /// Events after `after` (to replay what a reconnecting stream missed).
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.shared.db.call(move |s| Ok(events::since(s.conn(), after, limit)?)).await
    }

    /// The retention the saved settings ask for: (days, most events).
    fn retention(&self) -> (u32, u64) {
        let saved = crate::settings::load(self.data_dir()).unwrap_or_default();
        (
            saved.event_retention_days.unwrap_or(DEFAULT_RETENTION_DAYS).max(1),
            saved.event_retention_max.unwrap_or(DEFAULT_RETENTION_MAX).max(1),
        )
    }

    /// Deletes the events past the retention (older than its days, or beyond its count), a
    /// batch per transaction, and the version history older than its days; returns how many
    /// events. Settings changes apply at the next run.
    pub async fn apply_retention(&self) -> Result<u64> {
        let (days, max) = self.retention();
        let cutoff = clock::now_ms() - i64::from(days) * 86_400_000;
        self.prune_samples(cutoff).await?;
        let mut total = 0u64;
        loop {
            let n = self
                .shared
                .db
                .call(move |s| Ok(s.write(|tx| events::prune_batch(tx, cutoff, max, PRUNE_BATCH))?))
                .await?;
            total += n as u64;
            if n < PRUNE_BATCH as usize {
                break;
            }
            // Let the writer and the readers in between batches.
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(deleted = total, days, max, "audit log pruned to its retention");
        }
        Ok(total)
    }
}
