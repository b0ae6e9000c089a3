//! The main window's size and position, kept in `<data>/window.json` so the window comes back
//! where the technician left it. Everything else that must survive a restart is the engine's.
//!
//! A missing or unreadable file means "defaults"; it is never an error the user sees.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Logical pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub width: f64,
    pub height: f64,
    /// Top-left corner of the outer window; `None`: let the window manager place it.
    pub x: Option<f64>,
    pub y: Option<f64>,
    #[serde(default)]
    pub maximized: bool,
}

/// Smallest window the UI is usable in.
pub const MIN_SIZE: (f64, f64) = (900.0, 600.0);

impl Default for WindowState {
    fn default() -> Self {
        WindowState { width: 1280.0, height: 800.0, x: None, y: None, maximized: false }
    }
}

impl WindowState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("window.json")
    }

    /// The saved state, made sane (sizes within limits, positions finite), or the defaults.
    pub fn load(data_dir: &Path) -> WindowState {
        let saved = std::fs::read(Self::path(data_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<WindowState>(&bytes).ok())
            .unwrap_or_default();
        saved.sane()
    }

    fn sane(self) -> WindowState {
        let size =
            |v: f64, min: f64, default: f64| if v.is_finite() && v >= min && v <= 16_384.0 { v } else { default };
        let d = WindowState::default();
        let pos = |v: Option<f64>| v.filter(|p| p.is_finite() && p.abs() <= 32_768.0);
        WindowState {
            width: size(self.width, MIN_SIZE.0, d.width),
            height: size(self.height, MIN_SIZE.1, d.height),
            x: pos(self.x),
            y: pos(self.y),
            maximized: self.maximized,
        }
    }

    /// Writes the state (a temporary file renamed over the old one, so a crash leaves either).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_repairs_nonsense() {
        let dir = std::env::temp_dir().join(format!("flotilla-window-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(WindowState::load(&dir), WindowState::default());
        let s = WindowState { width: 1000.0, height: 700.0, x: Some(40.0), y: Some(-10.0), maximized: true };
        s.save(&dir).unwrap();
        assert_eq!(WindowState::load(&dir), s);
        std::fs::write(WindowState::path(&dir), br#"{"width": 10, "height": 1e9, "x": null, "y": 5}"#).unwrap();
        let repaired = WindowState::load(&dir);
        assert_eq!((repaired.width, repaired.height, repaired.x, repaired.y), (1280.0, 800.0, None, Some(5.0)));
        std::fs::write(WindowState::path(&dir), b"not json").unwrap();
        assert_eq!(WindowState::load(&dir), WindowState::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
