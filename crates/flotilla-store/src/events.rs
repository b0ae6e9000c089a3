//! The audit log: append-only, newest id last.

use flotilla_proto::{Event, EventPage};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Result, StoreError, clock};

/// An event to append; the store gives it its id and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub actor: String,
    pub subject: Option<String>,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: &str, actor: &str, subject: Option<String>, data: serde_json::Value) -> NewEvent {
        NewEvent { kind: kind.to_owned(), actor: actor.to_owned(), subject, data }
    }
}

/// Appends `ev`; returns its id and time (Unix ms). [`append`] also builds the stored event.
pub fn insert(conn: &Connection, ev: &NewEvent) -> Result<(i64, i64)> {
    let at = clock::now_ms();
    // Cached: the store writer appends thousands of these a second during a rollout.
    conn.prepare_cached("INSERT INTO events (at, kind, actor, subject, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![at, ev.kind, ev.actor, ev.subject, ev.data.to_string()])?;
    Ok((conn.last_insert_rowid(), at))
}

/// Appends `ev`, returning it as stored.
pub fn append(conn: &Connection, ev: &NewEvent) -> Result<Event> {
    let (id, at) = insert(conn, ev)?;
    Ok(Event {
        id,
        at: clock::rfc3339(at),
        kind: ev.kind.clone(),
        actor: ev.actor.clone(),
        subject: ev.subject.clone(),
        data: ev.data.clone(),
    })
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, i64, String, String, Option<String>, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn to_event(raw: (i64, i64, String, String, Option<String>, String)) -> Result<Event> {
    let (id, at, kind, actor, subject, data) = raw;
    let data = serde_json::from_str(&data)
        .map_err(|e| StoreError::Corrupt { what: format!("event {id}"), detail: e.to_string() })?;
    Ok(Event { id, at: clock::rfc3339(at), kind, actor, subject, data })
}

/// What a page of the audit log holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Ids below this one (the cursor of the previous page).
    pub before: Option<i64>,
    /// Kinds starting with this (e.g. `firmware.`).
    pub kind_prefix: Option<&'a str>,
    /// Events recorded at or after this time (Unix ms).
    pub since_ms: Option<i64>,
}

/// A page of at most `limit` events, newest first, as `filter` says.
pub fn page(conn: &Connection, filter: Filter<'_>, limit: u32) -> Result<EventPage> {
    let limit = limit.clamp(1, 1000);
    // Ids grow with time: "since" is an id bound, found without scanning the log.
    let from_id = match filter.since_ms {
        Some(ms) => first_id_at_or_after(conn, ms)?,
        None => 0,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, kind, actor, subject, data FROM events
         WHERE id < ?1 AND id >= ?4 AND (?2 IS NULL OR substr(kind, 1, length(?2)) = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![filter.before.unwrap_or(i64::MAX), filter.kind_prefix, i64::from(limit) + 1, from_id],
        from_row,
    )?;
    let mut events = Vec::new();
    for raw in rows {
        events.push(to_event(raw?)?);
    }
    let next_before = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(EventPage { events, next_before })
}

/// Events with ids above `after`, oldest first (to replay what a reconnecting stream missed).
pub fn since(conn: &Connection, after: i64, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, at, kind, actor, subject, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let rows = stmt.query_map(params![after, i64::from(limit)], from_row)?;
    rows.map(|r| to_event(r?)).collect()
}

/// The newest `limit` events about `subject` (e.g. `device:aa:bb:…`), newest first.
pub fn of_subject(conn: &Connection, subject: &str, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, kind, actor, subject, data FROM events WHERE subject = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![subject, i64::from(limit.clamp(1, 1000))], from_row)?;
    rows.map(|r| to_event(r?)).collect()
}

/// The id of the first event recorded at or after `ms` (one past the newest when there is none).
/// Events are recorded in time order by one writer, so `at` grows with `id`: a binary search over
/// ids finds the bound in a few point reads (were the clock set back, the bound is approximate
/// around that moment, never wrong by more than the jump).
pub fn first_id_at_or_after(conn: &Connection, ms: i64) -> Result<i64> {
    // One aggregate a query: SQLite answers a lone min() or max() of the rowid from the b-tree's
    // edge, but both in one query scan the table.
    let Some(mut lo) = conn.query_row("SELECT min(id) FROM events", [], |r| r.get::<_, Option<i64>>(0))? else {
        return Ok(0);
    };
    let max: i64 = conn.query_row("SELECT max(id) FROM events", [], |r| r.get(0))?;
    let mut hi = max + 1;
    let mut first_from = conn.prepare_cached("SELECT id, at FROM events WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    // Lower bound: the smallest x whose first event at or after it is not older than `ms`.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match first_from.query_row([mid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()? {
            Some((id, at)) if at < ms => lo = id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Deletes at most `batch` events older than `older_than_ms` or beyond the newest `keep`, oldest
/// first; returns how many. The caller loops, one transaction per batch, so the log is pruned
/// without holding the store for long. Ids are contiguous (AUTOINCREMENT, and the log is only
/// ever pruned from its oldest end), so the newest `keep` are the ids above `max - keep`.
pub fn prune_batch(conn: &Connection, older_than_ms: i64, keep: u64, batch: u32) -> Result<usize> {
    let Some(min) = conn.query_row("SELECT min(id) FROM events", [], |r| r.get::<_, Option<i64>>(0))? else {
        return Ok(0);
    };
    let max: i64 = conn.query_row("SELECT max(id) FROM events", [], |r| r.get(0))?;
    let by_age = first_id_at_or_after(conn, older_than_ms)?;
    let by_count = max.saturating_sub(i64::try_from(keep.max(1)).unwrap_or(i64::MAX)) + 1;
    let below = by_age.max(by_count).min(min.saturating_add(i64::from(batch)));
    Ok(conn.prepare_cached("DELETE FROM events WHERE id < ?1")?.execute([below])?)
}

/// How many events the log holds.
pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?)
}

/// The newest event id, 0 when the log is empty.
pub fn last_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .query_row("SELECT max(id) FROM events", [], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Store;
    use serde_json::json;

    #[test]
    fn pages_newest_first_and_filters_by_kind() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .write(|tx| {
                for i in 0..25 {
                    let kind = if i % 2 == 0 { "firmware.imported" } else { "device.seen" };
                    append(tx, &NewEvent::new(kind, "test", Some(format!("n:{i}")), json!({ "i": i })))?;
                }
                Ok(())
            })
            .unwrap();
        let first = page(store.conn(), Filter::default(), 10).unwrap();
        assert_eq!(first.events.len(), 10);
        assert_eq!(first.events[0].data["i"], 24);
        let second = page(store.conn(), Filter { before: first.next_before, ..Filter::default() }, 10).unwrap();
        assert_eq!(second.events[0].data["i"], 14);
        let third = page(store.conn(), Filter { before: second.next_before, ..Filter::default() }, 10).unwrap();
        assert_eq!(third.events.len(), 5);
        assert_eq!(third.next_before, None);

        let fw = page(store.conn(), Filter { kind_prefix: Some("firmware."), ..Filter::default() }, 100).unwrap();
        assert_eq!(fw.events.len(), 13);
        assert!(fw.events.iter().all(|e| e.kind == "firmware.imported"));

        let about = of_subject(store.conn(), "n:3", 10).unwrap();
        assert_eq!(about.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4]);
        let plan: String = store
            .conn()
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM events WHERE subject = 'x' ORDER BY id DESC LIMIT 5",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("events_subject"), "a device's events are found by index: {plan}");

        let after = since(store.conn(), 20, 100).unwrap();
        assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![21, 22, 23, 24, 25]);
        assert_eq!(last_id(store.conn()).unwrap(), 25);
    }

    /// 100 events, event i recorded at i × 1000 ms.
    fn log_of_100() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        store
            .write(|tx| {
                for i in 0..100 {
                    append(tx, &NewEvent::new("device.seen", "test", None, json!({ "i": i })))?;
                }
                tx.execute("UPDATE events SET at = (id - 1) * 1000", [])?;
                Ok(())
            })
            .unwrap();
        store
    }

    #[test]
    fn since_finds_its_bound_by_time() {
        let store = log_of_100();
        assert_eq!(first_id_at_or_after(store.conn(), 0).unwrap(), 1);
        assert_eq!(first_id_at_or_after(store.conn(), 41_500).unwrap(), 43, "event 43 was at 42 000 ms");
        assert_eq!(first_id_at_or_after(store.conn(), 99_000).unwrap(), 100);
        assert_eq!(first_id_at_or_after(store.conn(), 99_001).unwrap(), 101, "none: one past the newest");
        let p = page(store.conn(), Filter { since_ms: Some(95_000), ..Filter::default() }, 50).unwrap();
        assert_eq!(p.events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![100, 99, 98, 97, 96]);
        assert_eq!(p.next_before, None);
        assert_eq!(first_id_at_or_after(Store::open_in_memory().unwrap().conn(), 5).unwrap(), 0, "empty log");
    }

    #[test]
    fn pruning_drops_the_oldest_by_age_and_by_count_in_batches() {
        let mut store = log_of_100();
        // Older than 30 s: events 1..=30 (at 0..29 000), ten at a time.
        let mut batches = Vec::new();
        loop {
            let n = store.write(|tx| prune_batch(tx, 30_000, 1_000_000, 10)).unwrap();
            if n == 0 {
                break;
            }
            batches.push(n);
        }
        assert_eq!(batches, vec![10, 10, 10]);
        assert_eq!(count(store.conn()).unwrap(), 70);
        // At most 25 kept, newest first.
        while store.write(|tx| prune_batch(tx, 0, 25, 1000)).unwrap() > 0 {}
        assert_eq!(count(store.conn()).unwrap(), 25);
        assert_eq!(page(store.conn(), Filter::default(), 1000).unwrap().events.last().map(|e| e.id), Some(76));
    }
}
