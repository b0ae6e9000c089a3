//! Commands the UI may invoke (each one allowed to the engine's origin in
//! `src-tauri/capabilities/ui.json`): only what a browser cannot do.

use std::path::Path;

/// Writes an exported report where the user chose in the native save dialog. The path must be
/// absolute (the dialog gives absolute paths; a relative one would land wherever the app was
/// started) and its folder must exist.
#[tauri::command]
pub async fn write_text_file(path: String, contents: String) -> Result<(), String> {
    let path = Path::new(&path);
    check_target(path)?;
    tokio::fs::write(path, contents.as_bytes()).await.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn check_target(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("no file name given".into());
    }
    if !path.is_absolute() {
        return Err(format!("refusing to write {}: the path must be absolute", path.display()));
    }
    if path.is_dir() {
        return Err(format!("cannot write {}: it is a folder", path.display()));
    }
    match path.parent() {
        Some(dir) if dir.is_dir() => Ok(()),
        _ => Err(format!("cannot write {}: its folder does not exist", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn writes_absolute_paths_and_refuses_others() {
        let dir = std::env::temp_dir().join(format!("flotilla-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("report.csv");
        write_text_file(file.display().to_string(), "mac,from,to\n".into()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mac,from,to\n");

        let relative = write_text_file("report.csv".into(), String::new()).await.unwrap_err();
        assert!(relative.contains("must be absolute"), "{relative}");
        let folder = write_text_file(dir.display().to_string(), String::new()).await.unwrap_err();
        assert!(folder.contains("is a folder"), "{folder}");
        let missing = write_text_file(dir.join("nope/report.csv").display().to_string(), String::new()).await;
        assert!(missing.unwrap_err().contains("folder does not exist"));
        assert!(write_text_file(String::new(), String::new()).await.unwrap_err().contains("no file name"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
