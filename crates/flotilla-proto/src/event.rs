//! Events: every change the engine makes is an audit entry and a live event on the SSE stream.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A recorded event (audit log entry). The live stream carries the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Event {
    /// Monotonic id in the audit log (SSE `id:`), usable as a paging cursor. 0 for a live-only
    /// event (`rollout.progress`): not stored, sent without an SSE `id:`, never replayed.
    pub id: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// Dotted kind, e.g. `firmware.imported`, `device.labelled`.
    pub kind: String,
    /// Who or what caused it: `admin-api`, `engine`, `device:<mac>`.
    pub actor: String,
    /// What it is about, e.g. `firmware:12`, `device:aa:bb:..`.
    pub subject: Option<String>,
    /// Kind-specific details.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `before` to get the next (older) page; `None` at the end.
    pub next_before: Option<i64>,
}
