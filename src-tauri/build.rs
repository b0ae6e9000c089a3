//! Build script of the desktop app: resolves its capabilities (`src-tauri/capabilities/`) and the
//! permissions of its own commands, and lets `tauri::generate_context!` embed them with the
//! config and icons.

fn main() {
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    println!("cargo:rerun-if-changed=src-tauri/boot");
    println!("cargo:rerun-if-changed=src-tauri/icons");
    let attributes = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/**/*")
        .app_manifest(tauri_build::AppManifest::new().commands(&["write_text_file", "restart_app"]));
    if let Err(e) = tauri_build::try_build(attributes) {
        // A build script reports failure by exiting non-zero with the cause on stderr.
        eprintln!("tauri-build failed: {e:#}");
        std::process::exit(1);
    }
}
