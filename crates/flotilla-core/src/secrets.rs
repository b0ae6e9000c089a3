//! Secret files of the data dir: created once with mode 0600 (their folder 0700), read after.
//!
//! A secret is never logged, never sent to a device and never part of an error message.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{CoreError, Result};

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| CoreError::io("cannot read random bytes from the OS", std::io::Error::other(e.to_string())))?;
    Ok(buf)
}

/// Creates a folder (and parents) readable only by its owner.
pub fn private_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| CoreError::io(format!("cannot create {}", path.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| CoreError::io(format!("cannot restrict {}", path.display()), e))?;
    }
    Ok(())
}

/// Sets the permission bits of `path` to `mode` when they differ (best effort: a file system
/// without Unix modes keeps its own). Returns the mode it had when it was changed.
pub fn restrict(path: &Path, mode: u32) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let old = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        if old != mode && fs::set_permissions(path, fs::Permissions::from_mode(mode)).is_ok() {
            return Some(old);
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    None
}

/// Tightens a secret file that others can read or write to 0600, warning that it was open.
pub fn tighten_secret(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = fs::metadata(path) else { return };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 && fs::set_permissions(path, fs::Permissions::from_mode(0o600)).is_ok() {
            tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                "a secret file was readable by other users; its mode is now 0600 (rotate the secret if others may have read it)"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Reads the secret at `path`, or creates it with `make()` (mode 0600, written to a temp file and
/// renamed, so a crash never leaves a half-written secret). `check` validates what was read.
pub fn load_or_create(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>>,
    check: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) if check(&bytes) => return Ok(bytes),
        Ok(_) => {
            return Err(CoreError::Refused(format!(
                "{} exists but is not a valid secret; move it away to create a new one",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CoreError::io(format!("cannot read {}", path.display()), e)),
    }
    let bytes = make()?;
    write_private(path, &bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CoreError::io(format!("cannot write {}", path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let a = load_or_create(&path, || Ok(b"first".to_vec()), |b| !b.is_empty()).unwrap();
        let b = load_or_create(&path, || Ok(b"second".to_vec()), |b| !b.is_empty()).unwrap();
        assert_eq!(a, b"first");
        assert_eq!(b, b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        fs::write(&path, b"").unwrap();
        assert!(load_or_create(&path, || Ok(b"x".to_vec()), |b| !b.is_empty()).is_err());
    }
}
