//! Flotilla's desktop shell (Tauri 2): starts the engine in-process, opens its UI — served by the
//! engine's admin server, the same UI `flotilla serve` gives a browser — in a native window, and
//! adds only what a browser cannot do: native file drops and dialogs, writing an exported report
//! where the user chose, desktop notifications, asking before quitting in the middle of a rollout.
//!
//! The shell never does engine work itself: every operation goes through the UI and the admin
//! API, or through [`EngineHandle`] methods.
//!
//! # Layout
//! - [`cli`]: the command line (the engine's flags, shared with `flotilla serve`, plus `--demo`).
//! - [`commands`]: commands the UI may invoke (`write_text_file`; `restart_app` is here, with the
//!   quitting it belongs to).
//! - [`notify`]: notifications when a rollout completes or pauses itself.
//! - [`window_state`]: the window's size and position across restarts.
//! - this file: start-up, the window, closing and quitting.

pub mod cli;
pub mod commands;
pub mod notify;
pub mod window_state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use flotilla_core::{Engine, EngineHandle};
use flotilla_proto::rollout::RolloutState;
use tauri::{AppHandle, Manager, RunEvent, Runtime, WebviewUrl, WebviewWindow, WebviewWindowBuilder, WindowEvent};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::window_state::{MIN_SIZE, WindowState};

/// Label of the one window.
const MAIN: &str = "main";

/// What the shell keeps while it runs.
#[derive(Debug)]
struct Shell {
    data_dir: PathBuf,
    engine: Mutex<Option<EngineHandle>>,
    /// Set once quitting is decided, so a close is no longer questioned.
    quitting: AtomicBool,
    /// A close question is on screen.
    asking: AtomicBool,
    /// Start again once the engine has stopped (the UI's "Restart now" after a settings change).
    restart: AtomicBool,
}

impl Shell {
    fn engine(&self) -> Option<EngineHandle> {
        self.engine.lock().ok().and_then(|e| e.clone())
    }
    fn take_engine(&self) -> Option<EngineHandle> {
        self.engine.lock().ok().and_then(|mut e| e.take())
    }
}

/// Runs the desktop app until it quits; the exit code is 0, 1 when the engine could not start,
/// 2 for a bad command line or no display.
pub fn run() -> ExitCode {
    let launched = Instant::now();
    let cli = Cli::parse();
    init_logging(&cli.log);
    if let Some(why) = no_display() {
        eprintln!("flotilla-desktop: {why}");
        return ExitCode::from(2);
    }
    let mut config = match cli.engine.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flotilla-desktop: {e}");
            return ExitCode::from(2);
        }
    };
    config.demo = Some(flotilla_sim::demo::launcher(cli.demo_options()));
    let data_dir = config.data_dir.clone();
    // The engine's runtime (one worker, as for `flotilla serve`) is Tauri's too; it lives until
    // this function returns.
    let runtime = match flotilla_core::runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flotilla-desktop: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());

    // The engine starts while GTK and WebKit come up.
    let starting = tauri::async_runtime::spawn(Engine::start(config));
    let shell = Arc::new(Shell {
        data_dir,
        engine: Mutex::new(None),
        quitting: AtomicBool::new(false),
        asking: AtomicBool::new(false),
        restart: AtomicBool::new(false),
    });
    let demo = cli.demo.demo;
    let setup_shell = Arc::clone(&shell);
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .manage(Arc::clone(&shell))
        .invoke_handler(tauri::generate_handler![commands::write_text_file, restart_app])
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event
                && window.label() == MAIN
            {
                let shell = window.state::<Arc<Shell>>();
                if !shell.quitting.load(Ordering::SeqCst) {
                    api.prevent_close();
                    close_requested(window.app_handle().clone(), Arc::clone(&shell));
                }
            }
        })
        .setup(move |app| {
            let engine = match tauri::async_runtime::block_on(starting) {
                Ok(Ok(engine)) => engine,
                Ok(Err(e)) => {
                    cannot_start(app.handle(), &e.to_string());
                    return Ok(());
                }
                Err(e) => {
                    cannot_start(app.handle(), &format!("the engine's start-up task failed: {e}"));
                    return Ok(());
                }
            };
            tracing::info!(admin = engine.admin_url(), devices = engine.device_url(), "engine ready");
            if let Ok(mut slot) = setup_shell.engine.lock() {
                *slot = Some(engine.clone());
            }
            match open_window(app.handle(), &engine, &setup_shell.data_dir) {
                Ok(_) => tracing::info!(ms = launched.elapsed().as_millis() as u64, "window open"),
                Err(e) => {
                    cannot_start(app.handle(), &format!("cannot open the window: {e}"));
                    return Ok(());
                }
            }
            tauri::async_runtime::spawn(notify::follow(app.handle().clone(), engine.clone()));
            tauri::async_runtime::spawn(quit_on_signal(app.handle().clone()));
            if demo {
                tauri::async_runtime::spawn(start_demo(app.handle().clone(), engine));
            }
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("flotilla-desktop: cannot start the window system: {e}");
            if let Some(engine) = shell.take_engine() {
                tauri::async_runtime::block_on(engine.shutdown());
            }
            return ExitCode::FAILURE;
        }
    };
    let code = app.run_return(|_, event| {
        if let RunEvent::Exit = event {
            tracing::debug!("event loop ends");
        }
    });
    if let Some(engine) = shell.take_engine() {
        tracing::info!("stopping the engine");
        tauri::async_runtime::block_on(engine.shutdown());
    }
    if shell.restart.load(Ordering::SeqCst) {
        // Only now, with the engine's ports and database released, may the next one start.
        return relaunch();
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Starts this program again with the same arguments, and exits.
fn relaunch() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("flotilla-desktop: cannot restart: where is this program? {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::process::Command::new(&exe).args(std::env::args_os().skip(1)).spawn() {
        Ok(child) => {
            tracing::info!(pid = child.id(), "restarted");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flotilla-desktop: cannot restart {}: {e}", exe.display());
            ExitCode::FAILURE
        }
    }
}

/// The UI's "Restart now" (settings that apply at start-up changed): quits without asking — the
/// user asked — and starts again once the engine has stopped.
#[tauri::command]
#[allow(clippy::needless_pass_by_value)] // Tauri hands command arguments over by value.
fn restart_app<R: Runtime>(app: AppHandle<R>, shell: tauri::State<'_, Arc<Shell>>) {
    tracing::info!("restart requested by the UI");
    shell.restart.store(true, Ordering::SeqCst);
    quit(&app, &shell);
}

fn init_logging(flag: &str) {
    // `RUST_LOG`, when set, wins over `--log` (as for `flotilla serve`).
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let (filter, from) = match rust_log.as_deref() {
        Some(v) => (v, "RUST_LOG"),
        None => (flag, "--log"),
    };
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("flotilla-desktop: {from} {filter:?}: {e}; logging at info");
        EnvFilter::new("info")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Why no window can be shown here, if so.
fn no_display() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    (!set("DISPLAY") && !set("WAYLAND_DISPLAY")).then(|| {
        "no display (neither DISPLAY nor WAYLAND_DISPLAY is set). Without a desktop, run the engine \
         headless with `flotilla serve` and open its UI in a browser."
            .to_owned()
    })
}

/// The UI's address: the engine's admin server, with the admin token in the fragment (never sent
/// over the wire; the page reads it and uses it as its bearer token).
fn ui_url(engine: &EngineHandle) -> Result<tauri::Url, String> {
    let url = format!("{}/#token={}", engine.admin_url().trim_end_matches('/'), engine.admin_token());
    url.parse().map_err(|e| format!("the UI address {} is not a URL: {e}", engine.admin_url()))
}

fn open_window<R: Runtime>(
    app: &AppHandle<R>,
    engine: &EngineHandle,
    data_dir: &std::path::Path,
) -> Result<WebviewWindow<R>, String> {
    let saved = WindowState::load(data_dir);
    let mut builder = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::External(ui_url(engine)?))
        .title("Flotilla")
        .inner_size(saved.width, saved.height)
        .min_inner_size(MIN_SIZE.0, MIN_SIZE.1)
        .maximized(saved.maximized);
    builder = match (saved.x, saved.y) {
        (Some(x), Some(y)) => builder.position(x, y),
        _ => builder.center(),
    };
    builder.build().map_err(|e| e.to_string())
}

/// Saves the window's place (not its maximized size: un-maximizing after a restart should give
/// back the size it had before).
fn save_window_state<R: Runtime>(app: &AppHandle<R>, data_dir: &std::path::Path) {
    let Some(window) = app.get_webview_window(MAIN) else { return };
    let mut state = WindowState::load(data_dir);
    state.maximized = window.is_maximized().unwrap_or(false);
    if !state.maximized {
        let scale = window.scale_factor().unwrap_or(1.0);
        if let Ok(size) = window.inner_size() {
            let size = size.to_logical::<f64>(scale);
            state.width = size.width;
            state.height = size.height;
        }
        if let Ok(pos) = window.outer_position() {
            let pos = pos.to_logical::<f64>(scale);
            state.x = Some(pos.x);
            state.y = Some(pos.y);
        }
    }
    if let Err(e) = state.save(data_dir) {
        tracing::warn!(error = %e, "cannot save the window's size and position");
    }
}

/// The question to ask before closing while `running` rollouts run; `None`: just close.
pub fn close_question(running: usize) -> Option<String> {
    match running {
        0 => None,
        1 => Some("1 rollout is running; devices in flight will finish or time out. Quit anyway?".into()),
        n => Some(format!("{n} rollouts are running; devices in flight will finish or time out. Quit anyway?")),
    }
}

/// The window's close button: quits, after asking when rollouts are running. A rollout is
/// persisted and resumes at the next start, but nothing commands devices while the app is closed.
fn close_requested<R: Runtime>(app: AppHandle<R>, shell: Arc<Shell>) {
    if shell.asking.swap(true, Ordering::SeqCst) {
        return;
    }
    tauri::async_runtime::spawn(async move {
        let running = match shell.engine() {
            Some(engine) => engine
                .list_rollouts()
                .await
                .map(|rs| rs.iter().filter(|r| r.state == RolloutState::Running).count())
                .unwrap_or(0),
            None => 0,
        };
        let Some(question) = close_question(running) else {
            quit(&app, &shell);
            return;
        };
        let handle = app.clone();
        app.dialog()
            .message(question)
            .title("Quit Flotilla?")
            .kind(MessageDialogKind::Warning)
            .buttons(MessageDialogButtons::OkCancelCustom("Quit".into(), "Keep running".into()))
            .show(move |quit_anyway| {
                shell.asking.store(false, Ordering::SeqCst);
                if quit_anyway {
                    quit(&handle, &shell);
                }
            });
    });
}

/// Quits: the window's place is saved; the engine is stopped once the event loop ends (`run`).
fn quit<R: Runtime>(app: &AppHandle<R>, shell: &Shell) {
    shell.quitting.store(true, Ordering::SeqCst);
    save_window_state(app, &shell.data_dir);
    app.exit(0);
}

/// SIGINT/SIGTERM quit like the menu would, without asking (whoever sent it decided).
async fn quit_on_signal<R: Runtime>(app: AppHandle<R>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received; quitting");
        let shell = Arc::clone(&*app.state::<Arc<Shell>>());
        quit(&app, &shell);
    }
    #[cfg(not(unix))]
    drop(app);
}

async fn start_demo<R: Runtime>(app: AppHandle<R>, engine: EngineHandle) {
    match engine.start_demo("desktop").await {
        Ok(info) => tracing::info!(summary = %info.summary, "demo fleet running"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the demo fleet");
            app.dialog()
                .message(format!("The demo fleet could not start: {e}"))
                .title("Flotilla demo")
                .kind(MessageDialogKind::Warning)
                .show(|_| {});
        }
    }
}

/// The engine did not start: say why in a dialog (and on stderr), then exit 1.
fn cannot_start<R: Runtime>(app: &AppHandle<R>, why: &str) {
    eprintln!("flotilla-desktop: cannot start: {why}");
    let handle = app.clone();
    app.dialog()
        .message(format!("Flotilla cannot start:\n\n{why}"))
        .title("Flotilla cannot start")
        .kind(MessageDialogKind::Error)
        .show(move |_| handle.exit(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_asks_only_while_rollouts_run() {
        assert_eq!(close_question(0), None);
        assert_eq!(
            close_question(1).as_deref(),
            Some("1 rollout is running; devices in flight will finish or time out. Quit anyway?")
        );
        assert!(close_question(3).is_some_and(|q| q.starts_with("3 rollouts are running")));
    }
}
