//! Flotilla's store: one SQLite file in the data dir.
//!
//! The store owns the connection setup (WAL, foreign keys, busy timeout), the schema (SQL files in
//! `migrations/` at the workspace root, embedded at build time and applied atomically) and one module
//! per table with plain functions over a [`rusqlite::Connection`]. Functions take `&Connection` so a
//! caller can compose several of them in one transaction (a change and its audit event commit
//! together, or not at all); [`Store::write`] opens that transaction.
//!
//! This crate must never decide policy (what may be imported, what a rollout does): it stores and
//! reads what the engine decided, and refuses only what would break the schema's invariants.
//!
//! # Layout
//! - [`schema`]: the embedded migrations.
//! - [`firmware`], [`devices`], [`events`], [`rollouts`], [`samples`]: one module per table (labels live with
//!   devices, jobs and their transitions with rollouts).
//! - [`auth`]: device credentials, the labels devices report, job evidence.
//! - [`clock`]: milliseconds since the epoch and their RFC 3339 form.

pub mod auth;
pub mod clock;
pub mod devices;
pub mod error;
pub mod events;
pub mod firmware;
pub mod rollouts;
pub mod samples;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use error::{Result, StoreError};
pub use rusqlite;

/// How long a connection waits for another writer before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open store: one SQLite connection, configured and migrated.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        Store::setup(conn)
    }

    /// A private in-memory store (tests, `firmware inspect`).
    pub fn open_in_memory() -> Result<Store> {
        Store::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer; NORMAL is durable across application crashes
        // (only an OS crash can lose the last transactions) and much faster than FULL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoint every 4,000 pages (16 MiB of WAL) rather than SQLite's 1,000: a rollout rewrites
        // the same job pages in many transactions, and a checkpoint copies each page once however
        // often it changed since the last one. The WAL file is cut back to 32 MiB after a checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        conn.pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrations().to_latest(&mut conn)?;
        Ok(Store { conn })
    }

    /// The connection, for reads.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in an immediate write transaction: commits when `f` returns `Ok`, rolls back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_store_uses_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("flotilla.db")).unwrap();
        let mode: String = store.conn().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store.conn().pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        let checkpoint: i64 = store.conn().pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0)).unwrap();
        assert_eq!(checkpoint, 4000);
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let mut store = Store::open_in_memory().unwrap();
        let res: Result<()> = store.write(|tx| {
            events::append(tx, &events::NewEvent::new("test.one", "test", None, serde_json::json!({})))?;
            Err(StoreError::NotFound { what: "anything".into() })
        });
        assert!(res.is_err());
        assert!(events::page(store.conn(), events::Filter::default(), 10).unwrap().events.is_empty());
    }

    #[test]
    fn reopening_a_store_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flotilla.db");
        {
            let mut store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    events::append(tx, &events::NewEvent::new("test.kept", "test", None, serde_json::json!({"n": 1})))
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let page = events::page(store.conn(), events::Filter::default(), 10).unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].data["n"], 1);
    }
}
