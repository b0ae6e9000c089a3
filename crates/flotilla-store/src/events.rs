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

/// A page of at most `limit` events, newest first, with ids below `before` and kinds starting with
/// `kind_prefix` (e.g. `firmware.`).
pub fn page(conn: &Connection, before: Option<i64>, kind_prefix: Option<&str>, limit: u32) -> Result<EventPage> {
    let limit = limit.clamp(1, 1000);
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, kind, actor, subject, data FROM events
         WHERE id < ?1 AND (?2 IS NULL OR substr(kind, 1, length(?2)) = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![before.unwrap_or(i64::MAX), kind_prefix, i64::from(limit) + 1], from_row)?;
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
        let first = page(store.conn(), None, None, 10).unwrap();
        assert_eq!(first.events.len(), 10);
        assert_eq!(first.events[0].data["i"], 24);
        let second = page(store.conn(), first.next_before, None, 10).unwrap();
        assert_eq!(second.events[0].data["i"], 14);
        let third = page(store.conn(), second.next_before, None, 10).unwrap();
        assert_eq!(third.events.len(), 5);
        assert_eq!(third.next_before, None);

        let fw = page(store.conn(), None, Some("firmware."), 100).unwrap();
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
}
