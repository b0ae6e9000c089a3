//! The audit log: every change the engine made, who made it, newest first.

use flotilla_proto::{Event, EventPage};
use flotilla_store::events::{self};

use super::EngineHandle;
use crate::error::Result;

impl EngineHandle {
    pub async fn events_page(&self, before: Option<i64>, kind: Option<String>, limit: u32) -> Result<EventPage> {
        self.shared.db.call(move |s| Ok(events::page(s.conn(), before, kind.as_deref(), limit)?)).await
    }

    /// Events after `after` (to replay what a reconnecting stream missed).
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.shared.db.call(move |s| Ok(events::since(s.conn(), after, limit)?)).await
    }
}
