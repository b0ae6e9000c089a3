//! `flotilla-desktop`: Flotilla's desktop app. Everything is in the library (`run`), so the
//! binary stays one line.

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    flotilla_desktop::run()
}
