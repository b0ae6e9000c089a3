//! The content-addressed firmware store: `<data>/firmware/<sha256>` (the image) and, for a
//! firmware that has one, `<data>/firmware/<sha256>.gz` (its gzip form), immutable once written.
//! `<sha256>` is always the image's SHA-256: one firmware, one name, whichever form came first.
//!
//! A file is written to a private temporary name of its own (`<name>.<random>.tmp`, created with
//! mode 0600 and never shared by two imports), synced, then renamed, so a crash or a full disk never
//! leaves a half-written firmware under its final name, and two imports of the same file never
//! step on each other's temporary file. The folder is 0700 and every firmware file 0600. Bytes served to devices come from a bounded
//! in-memory cache; a file is re-hashed when it is loaded (the gzip form against the SHA-256
//! recorded for it), so a corrupted disk is caught instead of being flashed onto a device.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

/// True for 64 lower-case hex digits: the only names the store ever opens.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The form a firmware is stored and served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// The raw image, `<sha256>`: what ESP-IDF's `esp_https_ota` and Flotilla's client flash.
    Image,
    /// The gzip file as imported, `<sha256>.gz`: what Tasmota on ESP8266 takes.
    Gzip,
}

impl Form {
    /// The file name of this form of the firmware whose image has SHA-256 `sha256`.
    pub fn file_name(self, sha256: &str) -> String {
        match self {
            Form::Image => sha256.to_owned(),
            Form::Gzip => format!("{sha256}.gz"),
        }
    }

    /// The firmware and form a store file name stands for (`None` for any other name).
    pub fn of_file_name(name: &str) -> Option<(&str, Form)> {
        match name.strip_suffix(".gz") {
            Some(sha) if valid_sha256(sha) => Some((sha, Form::Gzip)),
            None if valid_sha256(name) => Some((name, Form::Image)),
            _ => None,
        }
    }
}

/// The store files of a firmware: its image, and its gzip form when it has one.
pub fn file_names(fw: &flotilla_proto::Firmware) -> Vec<String> {
    let mut names = vec![Form::Image.file_name(&fw.sha256)];
    if fw.image.gzip.is_some() {
        names.push(Form::Gzip.file_name(&fw.sha256));
    }
    names
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<String, (Bytes, u64)>,
    bytes: u64,
    tick: u64,
}

/// Free space an import always leaves on the disk (by default), so the database can still record
/// deletes and devices when firmware fills the disk.
pub const DEFAULT_DISK_RESERVE: u64 = 8 * 1024 * 1024;

/// The firmware files of one data dir.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
    cache: Mutex<Cache>,
    cache_limit: u64,
    disk_reserve: u64,
}

impl Blobs {
    /// Opens (creating, mode 0700) the folder, removes temp files a crash may have left and makes
    /// every firmware file private (0600).
    pub fn open(dir: &Path, cache_limit: u64) -> Result<Blobs> {
        crate::secrets::private_dir(dir)?;
        let entries = fs::read_dir(dir).map_err(|e| CoreError::io(format!("cannot list {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            } else if Form::of_file_name(&name).is_some() {
                crate::secrets::restrict(&entry.path(), 0o600);
            }
        }
        Ok(Blobs { dir: dir.to_path_buf(), cache: Mutex::new(Cache::default()), cache_limit, disk_reserve: 0 })
    }

    /// Keeps `bytes` free on the disk: a write that would leave less is refused.
    pub fn with_disk_reserve(mut self, bytes: u64) -> Blobs {
        self.disk_reserve = bytes;
        self
    }

    /// Refuses a write of `len` bytes that would leave less than the reserve free.
    fn check_space(&self, len: u64) -> Result<()> {
        let Ok(st) = rustix::fs::statvfs(&self.dir) else { return Ok(()) };
        let available = st.f_bavail.saturating_mul(st.f_frsize);
        let needed = len.saturating_add(self.disk_reserve);
        if available < needed {
            return Err(CoreError::io(
                format!(
                    "cannot store firmware in {}: {len} bytes plus a {}-byte reserve are needed, {available} are free \
                     (No space left on device); delete unused firmware or free disk space",
                    self.dir.display(),
                    self.disk_reserve
                ),
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ));
        }
        Ok(())
    }

    fn path(&self, sha256: &str, form: Form) -> Result<PathBuf> {
        if !valid_sha256(sha256) {
            return Err(CoreError::BadRequest(format!("not a sha256: {sha256:?}")));
        }
        Ok(self.dir.join(form.file_name(sha256)))
    }

    /// True when that form of the firmware is present.
    pub fn contains(&self, sha256: &str, form: Form) -> bool {
        self.path(sha256, form).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Stores `bytes` as `form` of the firmware whose image has SHA-256 `sha256` (which the caller
    /// computed). Returns false when the file was already there (content addressing makes a
    /// second write pointless).
    pub fn write(&self, sha256: &str, form: Form, bytes: &[u8]) -> Result<bool> {
        let path = self.path(sha256, form)?;
        if path.is_file() {
            return Ok(false);
        }
        self.check_space(bytes.len() as u64)?;
        // A name no other import uses, created here and nowhere else (create_new).
        let suffix = hex::encode(crate::secrets::random_bytes::<8>()?);
        let tmp = self.dir.join(format!("{}.{suffix}.tmp", form.file_name(sha256)));
        let write = || -> std::io::Result<()> {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            if let Ok(d) = fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CoreError::io(format!("cannot store firmware in {}", self.dir.display()), e)
        })?;
        Ok(true)
    }

    /// Removes one form of a firmware (and its cached bytes). Missing files are fine.
    pub fn remove(&self, sha256: &str, form: Form) -> Result<()> {
        let path = self.path(sha256, form)?;
        let name = form.file_name(sha256);
        if let Ok(mut c) = self.cache.lock()
            && let Some((b, _)) = c.entries.remove(&name)
        {
            c.bytes = c.bytes.saturating_sub(b.len() as u64);
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CoreError::io(format!("cannot remove {}", path.display()), e)),
        }
    }

    /// Removes every form of a firmware.
    pub fn remove_all(&self, sha256: &str) -> Result<()> {
        self.remove(sha256, Form::Gzip)?;
        self.remove(sha256, Form::Image)
    }

    /// The bytes of one form of a firmware, from the cache or from disk, verified against
    /// `expected`: the SHA-256 those bytes must have (`sha256` itself for the image, the recorded
    /// SHA-256 of the gzip file for the gzip form).
    pub async fn read(&self, sha256: &str, form: Form, expected: &str) -> Result<Bytes> {
        let path = self.path(sha256, form)?;
        let name = form.file_name(sha256);
        if let Ok(mut c) = self.cache.lock() {
            c.tick += 1;
            let tick = c.tick;
            if let Some((bytes, used)) = c.entries.get_mut(&name) {
                *used = tick;
                return Ok(bytes.clone());
            }
        }
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CoreError::NotFound(format!("firmware file {name}")));
            }
            Err(e) => return Err(CoreError::io(format!("cannot read {}", path.display()), e)),
        };
        let data = tokio::task::spawn_blocking(move || {
            let sha = hex::encode(Sha256::digest(&data));
            (data, sha)
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)?;
        let (data, sha) = data;
        if sha != expected {
            return Err(CoreError::Conflict(format!(
                "stored firmware file {name} is corrupt on disk (its SHA-256 no longer matches); re-import it"
            )));
        }
        let bytes = Bytes::from(data);
        self.remember(&name, &bytes);
        Ok(bytes)
    }

    /// [`Blobs::read`] for start-up work: straight from disk on the calling thread, not cached.
    pub fn load(&self, sha256: &str, form: Form, expected: &str) -> Result<Vec<u8>> {
        let path = self.path(sha256, form)?;
        let name = form.file_name(sha256);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CoreError::NotFound(format!("firmware file {name}")));
            }
            Err(e) => return Err(CoreError::io(format!("cannot read {}", path.display()), e)),
        };
        if hex::encode(Sha256::digest(&data)) != expected {
            return Err(CoreError::Conflict(format!(
                "stored firmware file {name} is corrupt on disk (its SHA-256 no longer matches); re-import it"
            )));
        }
        Ok(data)
    }

    fn remember(&self, name: &str, bytes: &Bytes) {
        let len = bytes.len() as u64;
        if len > self.cache_limit {
            return;
        }
        let Ok(mut c) = self.cache.lock() else { return };
        while c.bytes + len > self.cache_limit {
            let Some(oldest) = c.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some((b, _)) = c.entries.remove(&oldest) {
                c.bytes = c.bytes.saturating_sub(b.len() as u64);
            }
        }
        c.tick += 1;
        let tick = c.tick;
        if c.entries.insert(name.to_owned(), (bytes.clone(), tick)).is_none() {
            c.bytes += len;
        }
    }

    /// The store files (either form) a firmware row names that are not on disk, sorted.
    pub fn missing<'a>(&self, firmware: impl IntoIterator<Item = &'a flotilla_proto::Firmware>) -> Vec<String> {
        let mut missing: Vec<String> =
            firmware.into_iter().flat_map(file_names).filter(|name| !self.dir.join(name).is_file()).collect();
        missing.sort();
        missing
    }

    /// Firmware files (either form) whose file name is not in `known`, sorted.
    pub fn orphans(&self, known: &std::collections::HashSet<String>) -> Result<Vec<String>> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| CoreError::io(format!("cannot list {}", self.dir.display()), e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| Form::of_file_name(name).is_some() && !known.contains(name))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Removes firmware files (either form) whose file name is not in `known` (left by a crash
    /// between writing a file and committing its row, or by a firmware that changed its name).
    /// Files of other names are left alone. Returns how many were removed. The caller decides
    /// whether the database can be trusted to say what is known (see the engine's start-up: an
    /// empty or new database never sweeps).
    pub fn sweep_orphans(&self, known: &std::collections::HashSet<String>) -> Result<usize> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| CoreError::io(format!("cannot list {}", self.dir.display()), e))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if Form::of_file_name(&name).is_some() && !known.contains(&name) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[tokio::test]
    async fn writes_reads_and_refuses_paths_that_leave_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 1 << 20).unwrap();
        let data = b"hello firmware".to_vec();
        let s = sha(&data);
        assert!(blobs.write(&s, Form::Image, &data).unwrap());
        assert!(!blobs.write(&s, Form::Image, &data).unwrap());
        assert_eq!(&blobs.read(&s, Form::Image, &s).await.unwrap()[..], &data[..]);
        for bad in ["../etc/passwd", "ABCDEF", &s.to_uppercase(), ""] {
            assert!(matches!(blobs.read(bad, Form::Image, bad).await, Err(CoreError::BadRequest(_))), "{bad}");
        }
        let zero = "0".repeat(64);
        assert!(matches!(blobs.read(&zero, Form::Image, &zero).await, Err(CoreError::NotFound(_))));
        assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
    }

    #[tokio::test]
    async fn corruption_on_disk_is_caught_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 1 << 20).unwrap();
        let data = vec![0xE9u8; 4096];
        let s = sha(&data);
        blobs.write(&s, Form::Image, &data).unwrap();
        fs::write(dir.path().join(&s), vec![0u8; 4096]).unwrap();
        assert!(matches!(blobs.read(&s, Form::Image, &s).await, Err(CoreError::Conflict(_))));
    }

    #[tokio::test]
    async fn cache_stays_within_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 10_000).unwrap();
        let mut shas = Vec::new();
        for i in 0..5u8 {
            let data = vec![i; 4000];
            let s = sha(&data);
            blobs.write(&s, Form::Image, &data).unwrap();
            blobs.read(&s, Form::Image, &s).await.unwrap();
            shas.push(s);
        }
        let c = blobs.cache.lock().unwrap();
        assert!(c.bytes <= 10_000);
        assert_eq!(c.entries.len(), 2);
        assert!(c.entries.contains_key(&shas[4]));
    }

    #[test]
    fn crash_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{}.tmp", "a".repeat(64))), b"half").unwrap();
        let blobs = Blobs::open(dir.path(), 0).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let (b, c) = ("b".repeat(64), "c".repeat(64));
        blobs.write(&b, Form::Image, b"x").unwrap();
        blobs.write(&b, Form::Gzip, b"xz").unwrap();
        blobs.write(&c, Form::Image, b"y").unwrap();
        blobs.write(&c, Form::Gzip, b"yz").unwrap();
        fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        let known = [b.clone(), format!("{b}.gz")].into_iter().collect();
        assert_eq!(blobs.sweep_orphans(&known).unwrap(), 2);
        assert!(blobs.contains(&b, Form::Image) && blobs.contains(&b, Form::Gzip));
        assert!(!blobs.contains(&c, Form::Image) && !blobs.contains(&c, Form::Gzip));
        assert!(dir.path().join("notes.txt").is_file(), "only firmware names are swept");
    }

    #[tokio::test]
    async fn both_forms_live_side_by_side_and_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path(), 1 << 20).unwrap();
        let (image, gz) = (vec![0xE9u8; 3000], vec![0x1Fu8; 1000]);
        let s = sha(&image);
        blobs.write(&s, Form::Image, &image).unwrap();
        blobs.write(&s, Form::Gzip, &gz).unwrap();
        assert!(dir.path().join(format!("{s}.gz")).is_file());
        assert_eq!(&blobs.read(&s, Form::Gzip, &sha(&gz)).await.unwrap()[..], &gz[..]);
        assert_eq!(&blobs.read(&s, Form::Image, &s).await.unwrap()[..], &image[..]);
        // The gzip form is checked against its own SHA-256, not the image's.
        blobs.remove(&s, Form::Gzip).unwrap();
        blobs.write(&s, Form::Gzip, &gz).unwrap();
        assert!(matches!(blobs.read(&s, Form::Gzip, &s).await, Err(CoreError::Conflict(_))));
        blobs.remove_all(&s).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(blobs.cache.lock().unwrap().bytes, 0, "cached bytes go with the files");
    }

    #[test]
    fn file_names_say_firmware_and_form() {
        let s = "a".repeat(64);
        assert_eq!(Form::of_file_name(&s), Some((s.as_str(), Form::Image)));
        assert_eq!(Form::of_file_name(&format!("{s}.gz")), Some((s.as_str(), Form::Gzip)));
        for other in [format!("{s}.tmp"), format!("{s}.gz.tmp"), "x.gz".into(), format!("{}.gz", s.to_uppercase())] {
            assert_eq!(Form::of_file_name(&other), None, "{other}");
        }
        assert_eq!(Form::Gzip.file_name(&s), format!("{s}.gz"));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_temp_names_never_shared() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("firmware");
        let blobs = Blobs::open(&store, 0).unwrap();
        assert_eq!(fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o700);
        let s = "d".repeat(64);
        // Another import's temp file under the old shared name is not touched by this one.
        fs::write(store.join(format!("{s}.tmp")), b"someone else's").unwrap();
        assert!(blobs.write(&s, Form::Image, b"image").unwrap());
        assert_eq!(fs::read(store.join(format!("{s}.tmp"))).unwrap(), b"someone else's");
        assert_eq!(fs::metadata(store.join(&s)).unwrap().permissions().mode() & 0o777, 0o600);
        // A file opened to others before is made private when the store opens.
        fs::set_permissions(store.join(&s), fs::Permissions::from_mode(0o644)).unwrap();
        let blobs = Blobs::open(&store, 0).unwrap();
        assert_eq!(fs::metadata(store.join(&s)).unwrap().permissions().mode() & 0o777, 0o600);
        let e = "e".repeat(64);
        let known: std::collections::HashSet<String> = [e].into_iter().collect();
        assert_eq!(blobs.orphans(&known).unwrap(), vec![s.clone()]);
        assert!(blobs.contains(&s, Form::Image), "listing orphans removes nothing");
    }
}
