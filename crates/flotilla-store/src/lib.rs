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
    ///
    /// A new database file is created with mode 0600 (SQLite gives its WAL and shared-memory files
    /// the mode of the database), and an existing one, with its WAL and shared-memory files, is
    /// made private if it was not.
    pub fn open(path: &Path) -> Result<Store> {
        private_files(path).map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
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

    /// Copies the whole WAL into the database file and truncates the WAL to nothing, so that the
    /// database file alone holds everything (a clean shutdown does this: a copy of `flotilla.db`
    /// then is the whole store). Returns false when readers kept part of the WAL in use.
    pub fn checkpoint(&self) -> Result<bool> {
        let busy: i64 = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// True when the store holds nothing a site made: no firmware, device or rollout rows.
    pub fn is_empty(&self) -> Result<bool> {
        let rows: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM firmware) + (SELECT count(*) FROM devices) + (SELECT count(*) FROM rollouts)",
            [],
            |r| r.get(0),
        )?;
        Ok(rows == 0)
    }

    /// Writes a consistent copy of the database to `dest` (a new file) with SQLite's online backup
    /// API, while this store keeps being written: the copy is one snapshot of committed data.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        backup_file(&self.conn, dest)
    }

    /// Runs `f` in an immediate write transaction: commits when `f` returns `Ok`, rolls back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Creates the database file with mode 0600 when it does not exist, and makes it, its WAL and its
/// shared-memory file 0600 when they are open to others.
fn private_files(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.as_os_str() != ":memory:" && !path.exists() {
            std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            if let Ok(meta) = std::fs::metadata(file)
                && meta.is_file()
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Copies the database behind `from` to a new file `dest` with the online backup API, in one step
/// (one snapshot), retrying while a writer holds a lock it needs.
pub fn backup_file(from: &Connection, dest: &Path) -> Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let mut to = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open { path: dest.display().to_string(), source })?;
    {
        let backup = Backup::new(from, &mut to)?;
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    return Err(StoreError::Conflict("the database stayed locked; the backup did not complete".into()));
                }
            }
        }
    }
    // The copy is a plain single file: no WAL of its own next to it.
    to.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Opens an existing database file for reading (a backup being verified or copied).
pub fn open_existing(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// SQLite's `PRAGMA integrity_check` of `conn`: `Ok` when it answers `ok`, else what it found.
pub fn integrity_check(conn: &Connection) -> Result<()> {
    let found: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if found == "ok" { Ok(()) } else { Err(StoreError::Corrupt { what: "database".into(), detail: found }) }
}

/// Rows other tables refer to, for the tests of those tables.
#[cfg(test)]
pub(crate) mod test_rows {
    /// A firmware (id 1 in a fresh store: `demo` 1.0.0 for esp32) and the device `mac`.
    pub fn firmware_and_device(conn: &rusqlite::Connection, mac: &str) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO firmware (sha256, version, model, chip, format, size, image_json, manifest_json, created_at)
             VALUES (?1, '1.0.0', 'm', 'esp32', 'esp32', 1, '{}', '{}', 0)",
            ["a".repeat(64)],
        )?;
        conn.execute("INSERT INTO devices (mac, first_seen, last_seen) VALUES (?1, 0, 0)", [mac])?;
        Ok(())
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

    #[test]
    fn a_checkpoint_leaves_everything_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flotilla.db");
        let mut store = Store::open(&path).unwrap();
        assert!(store.is_empty().unwrap());
        for n in 0..50 {
            store
                .write(|tx| {
                    events::append(tx, &events::NewEvent::new("test.n", "test", None, serde_json::json!({"n": n})))
                })
                .unwrap();
        }
        assert!(store.checkpoint().unwrap());
        assert_eq!(std::fs::metadata(dir.path().join("flotilla.db-wal")).map(|m| m.len()).unwrap_or(0), 0);
        // The database file alone, copied while the store is still open, has every event.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let copied = Store::open(&copy).unwrap();
        assert_eq!(events::page(copied.conn(), events::Filter::default(), 100).unwrap().events.len(), 50);
    }

    #[test]
    fn an_online_backup_is_a_whole_verified_single_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("flotilla.db")).unwrap();
        store
            .write(|tx| events::append(tx, &events::NewEvent::new("test.b", "test", None, serde_json::json!({}))))
            .unwrap();
        let dest = dir.path().join("backup.db");
        store.backup_to(&dest).unwrap();
        assert!(!dir.path().join("backup.db-wal").exists());
        let conn = open_existing(&dest).unwrap();
        integrity_check(&conn).unwrap();
        assert_eq!(events::page(&conn, events::Filter::default(), 10).unwrap().events.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flotilla.db");
        let mut store = Store::open(&path).unwrap();
        store
            .write(|tx| events::append(tx, &events::NewEvent::new("test.m", "test", None, serde_json::json!({}))))
            .unwrap();
        for name in ["flotilla.db", "flotilla.db-wal", "flotilla.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = Store::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
