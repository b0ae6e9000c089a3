//! Keeping the data dir whole: per-file import locks, the firmware files the database names but
//! the disk lacks, and backups (`flotilla backup` / `flotilla restore`).
//!
//! # Backups
//! A backup is a folder: `flotilla.db` (a consistent snapshot made with SQLite's online backup
//! API, as a single file with no WAL), `firmware/` (the files of every firmware row in that
//! snapshot), `keys/`, the `admin-token`, `mqtt-credentials` and `settings.json` when present, and
//! `backup.json`, which lists every file with its SHA-256. [`create_backup`] runs against a live
//! engine (which holds its firmware library lock meanwhile, so no file of the snapshot goes away)
//! or against a data dir no engine uses. [`restore_backup`] verifies everything (each file's
//! SHA-256, SQLite's integrity check, every firmware row's file) before it writes anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use flotilla_proto::api::BackupSummary;
use sha2::{Digest, Sha256};

use crate::config::DataDir;
use crate::error::{CoreError, Result};
use crate::firmware::blobs::file_names;

/// What the engine tracks about its storage besides the store itself.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    /// One lock per firmware SHA-256 being imported: imports of the same file run one at a time.
    imports: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Store files a firmware row names that are not on disk (found at start-up).
    missing: Mutex<BTreeSet<String>>,
}

impl Storage {
    /// The lock of imports of the firmware whose image has SHA-256 `sha256`.
    pub(crate) fn import_lock(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut locks) = self.imports.lock() else { return Arc::new(tokio::sync::Mutex::new(())) };
        locks.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = locks.get(sha256).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(sha256.to_owned(), Arc::downgrade(&lock));
        lock
    }

    pub(crate) fn set_missing(&self, names: impl IntoIterator<Item = String>) {
        if let Ok(mut m) = self.missing.lock() {
            *m = names.into_iter().collect();
        }
    }

    /// A missing file is there again (restored by a re-import), or no longer named (deleted).
    pub(crate) fn found(&self, name: &str) {
        if let Ok(mut m) = self.missing.lock() {
            m.remove(name);
        }
    }

    pub(crate) fn missing(&self) -> Vec<String> {
        self.missing.lock().map(|m| m.iter().cloned().collect()).unwrap_or_default()
    }
}

/// The name of a backup's index of files.
pub const BACKUP_INDEX: &str = "backup.json";
/// Files of the data dir a backup carries besides the database, firmware and keys.
const SECRETS: [&str; 3] = ["admin-token", "mqtt-credentials", "settings.json"];

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Index {
    format: u32,
    flotilla: String,
    created_at: String,
    /// Path relative to the backup folder → SHA-256.
    files: BTreeMap<String, String>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CoreError {
    let context = context.into();
    move |e| CoreError::io(context, e)
}

/// SHA-256 of a file, read in pieces.
fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(io(format!("cannot read {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(format!("cannot read {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Copies `from` to `to` (a new file, mode 0600, synced) and returns the SHA-256 of what it copied.
fn copy_private(from: &Path, to: &Path) -> Result<String> {
    let mut src = fs::File::open(from).map_err(io(format!("cannot read {}", from.display())))?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut dst = opts.open(to).map_err(io(format!("cannot create {}", to.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io(format!("cannot read {}", from.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io(format!("cannot write {}", to.display())))?;
    }
    dst.sync_all().map_err(io(format!("cannot write {}", to.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Writes a backup of the data dir `data` to `dest`, a folder that must not exist yet (its
/// parent must) or be empty, outside the data dir. Works on the data dir of a running engine (the
/// caller keeps firmware files from being deleted meanwhile: the engine holds its library lock)
/// or of none.
pub fn create_backup(data: &DataDir, dest: &Path) -> Result<BackupSummary> {
    if !dest.is_absolute() {
        return Err(CoreError::BadRequest(format!("backup destination {} must be an absolute path", dest.display())));
    }
    if dest.starts_with(data.root()) {
        return Err(CoreError::BadRequest(format!(
            "backup destination {} is inside the data dir {}; choose a place outside it",
            dest.display(),
            data.root().display()
        )));
    }
    if fs::read_dir(dest).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(CoreError::Conflict(format!(
            "backup destination {} exists and is not empty; choose a new folder",
            dest.display()
        )));
    }
    if !data.database().is_file() {
        return Err(CoreError::NotFound(format!("database {}", data.database().display())));
    }
    // The folder itself, not its parents: a mistyped path is an error, not a new tree.
    match fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CoreError::NotFound(format!("the folder that would hold {}", dest.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            return Err(CoreError::io(format!("cannot create {}", dest.display()), e));
        }
        Err(e) => return Err(CoreError::Refused(format!("cannot create backup folder {}: {e}", dest.display()))),
    }
    crate::secrets::restrict(dest, 0o700);
    let done = (|| -> Result<BackupSummary> {
        let mut files = BTreeMap::new();
        let db = dest.join("flotilla.db");
        // A connection of its own: the snapshot is one read transaction, and the engine's writer
        // goes on meanwhile (WAL).
        let conn = flotilla_store::open_existing(&data.database())?;
        flotilla_store::backup_file(&conn, &db)?;
        drop(conn);
        crate::secrets::restrict(&db, 0o600);
        let snapshot = flotilla_store::open_existing(&db)?;
        let firmware = flotilla_store::firmware::list(&snapshot)?;
        let devices: i64 = snapshot.query_row("SELECT count(*) FROM devices", [], |r| r.get(0)).map_err(store)?;
        let rollouts: i64 = snapshot.query_row("SELECT count(*) FROM rollouts", [], |r| r.get(0)).map_err(store)?;
        drop(snapshot);
        files.insert("flotilla.db".to_owned(), sha256_file(&db)?);

        crate::secrets::private_dir(&dest.join("firmware"))?;
        for name in firmware.iter().flat_map(file_names) {
            let from = data.firmware_dir().join(&name);
            if !from.is_file() {
                return Err(CoreError::NotFound(format!(
                    "firmware file {name}, which the database names, (re-import it, or delete that firmware, before a backup)"
                )));
            }
            let rel = format!("firmware/{name}");
            files.insert(rel.clone(), copy_private(&from, &dest.join(&rel))?);
        }
        let keys = data.keys_dir();
        if keys.is_dir() {
            crate::secrets::private_dir(&dest.join("keys"))?;
            let entries = fs::read_dir(&keys).map_err(io(format!("cannot list {}", keys.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_file() && !name.ends_with(".tmp") {
                    let rel = format!("keys/{name}");
                    files.insert(rel.clone(), copy_private(&entry.path(), &dest.join(&rel))?);
                }
            }
        }
        for name in SECRETS {
            let from = data.root().join(name);
            if from.is_file() {
                files.insert(name.to_owned(), copy_private(&from, &dest.join(name))?);
            }
        }
        let index = Index {
            format: 1,
            flotilla: env!("CARGO_PKG_VERSION").into(),
            created_at: flotilla_store::clock::rfc3339(flotilla_store::clock::now_ms()),
            files,
        };
        let json = serde_json::to_vec_pretty(&index).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        crate::secrets::write_private(&dest.join(BACKUP_INDEX), &json)?;
        Ok(BackupSummary {
            path: dest.display().to_string(),
            firmware: firmware.len() as u64,
            devices: devices.max(0) as u64,
            rollouts: rollouts.max(0) as u64,
            files: index.files.len() as u64 + 1,
        })
    })();
    if done.is_err() {
        // Nothing half-written is left looking like a backup.
        let _ = fs::remove_dir_all(dest);
    }
    done
}

fn store(e: flotilla_store::rusqlite::Error) -> CoreError {
    CoreError::from(flotilla_store::StoreError::from(e))
}

/// Checks a backup folder: its index, every file's SHA-256, SQLite's integrity check, and that
/// every firmware row's file is in it. Returns the index's files.
fn verify_backup(src: &Path) -> Result<(Index, BackupSummary)> {
    let index_path = src.join(BACKUP_INDEX);
    let text = fs::read(&index_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            CoreError::NotFound(format!("{} (is {} a Flotilla backup?)", index_path.display(), src.display()))
        }
        _ => CoreError::io(format!("cannot read {}", index_path.display()), e),
    })?;
    let index: Index = serde_json::from_slice(&text)
        .map_err(|e| CoreError::Refused(format!("{} is not a Flotilla backup index: {e}", index_path.display())))?;
    if index.format != 1 {
        return Err(CoreError::Refused(format!("backup format {} is not one this version reads", index.format)));
    }
    for (rel, sha) in &index.files {
        let ok = !rel.contains("..") && !rel.starts_with('/') && !rel.contains('\\');
        if !ok {
            return Err(CoreError::Refused(format!("backup names a file outside itself: {rel:?}")));
        }
        let path = src.join(rel);
        let actual = sha256_file(&path).map_err(|_| CoreError::Refused(format!("backup file {rel} is missing")))?;
        if &actual != sha {
            return Err(CoreError::Refused(format!("backup file {rel} is damaged (its SHA-256 does not match)")));
        }
    }
    if !index.files.contains_key("flotilla.db") {
        return Err(CoreError::Refused("the backup has no flotilla.db".into()));
    }
    let conn = flotilla_store::open_existing(&src.join("flotilla.db"))?;
    flotilla_store::integrity_check(&conn)
        .map_err(|e| CoreError::Refused(format!("the backup's database fails SQLite's integrity check: {e}")))?;
    let firmware = flotilla_store::firmware::list(&conn)?;
    for name in firmware.iter().flat_map(file_names) {
        if !index.files.contains_key(&format!("firmware/{name}")) {
            return Err(CoreError::Refused(format!("the backup lacks firmware file {name} its database names")));
        }
    }
    let devices: i64 = conn.query_row("SELECT count(*) FROM devices", [], |r| r.get(0)).map_err(store)?;
    let rollouts: i64 = conn.query_row("SELECT count(*) FROM rollouts", [], |r| r.get(0)).map_err(store)?;
    let summary = BackupSummary {
        path: src.display().to_string(),
        firmware: firmware.len() as u64,
        devices: devices.max(0) as u64,
        rollouts: rollouts.max(0) as u64,
        files: index.files.len() as u64 + 1,
    };
    Ok((index, summary))
}

/// Restores the backup at `src` into the data dir `data`, which no engine may be using (the
/// caller checks). A data dir that already holds a database is refused unless `replace`. The
/// backup is verified completely before anything is written.
pub fn restore_backup(src: &Path, data: &DataDir, replace: bool) -> Result<BackupSummary> {
    let (index, summary) = verify_backup(src)?;
    if data.database().exists() && !replace {
        return Err(CoreError::Conflict(format!(
            "{} already holds a database; restore into an empty data dir, or pass --replace to overwrite it",
            data.root().display()
        )));
    }
    crate::secrets::private_dir(data.root())?;
    let staging = data.root().join(format!(".restore-{}", hex::encode(crate::secrets::random_bytes::<4>()?)));
    let _ = fs::remove_dir_all(&staging);
    crate::secrets::private_dir(&staging)?;
    let staged = (|| -> Result<()> {
        for rel in index.files.keys() {
            let to = staging.join(rel);
            if let Some(parent) = to.parent() {
                crate::secrets::private_dir(parent)?;
            }
            copy_private(&src.join(rel), &to)?;
        }
        Ok(())
    })();
    if let Err(e) = staged {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Move into place: a WAL or shared-memory file of the old database must not meet the new one.
    let moved = || -> Result<()> {
        for suffix in ["-wal", "-shm"] {
            let mut name = data.database().into_os_string();
            name.push(suffix);
            match fs::remove_file(PathBuf::from(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io("cannot remove the old database's WAL", e)),
            }
        }
        for rel in index.files.keys() {
            let to = data.root().join(rel);
            if let Some(parent) = to.parent() {
                crate::secrets::private_dir(parent)?;
            }
            fs::rename(staging.join(rel), &to).map_err(io(format!("cannot move {rel} into place")))?;
        }
        Ok(())
    };
    let result = moved();
    let _ = fs::remove_dir_all(&staging);
    result?;
    Ok(BackupSummary { path: data.root().display().to_string(), ..summary })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn data_dir_with_a_database() -> (tempfile::TempDir, DataDir) {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        fs::create_dir_all(data.keys_dir()).unwrap();
        let mut store = flotilla_store::Store::open(&data.database()).unwrap();
        store
            .write(|tx| {
                flotilla_store::events::append(
                    tx,
                    &flotilla_store::events::NewEvent::new("test.x", "test", None, serde_json::json!({})),
                )
            })
            .unwrap();
        fs::write(data.keys_dir().join("site.ed25519"), [7u8; 32]).unwrap();
        fs::write(data.admin_token(), "a-token-of-sixteen-chars").unwrap();
        (dir, data)
    }

    #[test]
    fn a_backup_restores_into_an_empty_data_dir_and_is_verified() {
        let (dir, data) = data_dir_with_a_database();
        let dest = dir.path().join("backup");
        let made = create_backup(&data, &dest).unwrap();
        assert_eq!(made.firmware, 0);
        assert!(dest.join(BACKUP_INDEX).is_file() && dest.join("keys/site.ed25519").is_file());
        // A second backup into the same folder is refused; so is one inside the data dir.
        assert!(matches!(create_backup(&data, &dest), Err(CoreError::Conflict(_))));
        assert!(matches!(create_backup(&data, &data.root().join("b")), Err(CoreError::BadRequest(_))));

        let target = DataDir::new(dir.path().join("restored"));
        restore_backup(&dest, &target, false).unwrap();
        assert_eq!(fs::read(target.keys_dir().join("site.ed25519")).unwrap(), [7u8; 32]);
        let conn = flotilla_store::open_existing(&target.database()).unwrap();
        let page = flotilla_store::events::page(&conn, flotilla_store::events::Filter::default(), 10).unwrap();
        assert_eq!(page.events.len(), 1);
        // Not over an existing database unless asked.
        assert!(matches!(restore_backup(&dest, &target, false), Err(CoreError::Conflict(_))));
        restore_backup(&dest, &target, true).unwrap();

        // A damaged backup is refused before anything is written.
        fs::write(dest.join("keys/site.ed25519"), [8u8; 32]).unwrap();
        let elsewhere = DataDir::new(dir.path().join("other"));
        let err = restore_backup(&dest, &elsewhere, false).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(!elsewhere.root().exists());
    }
}
