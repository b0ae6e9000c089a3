//! Embeds `ui/dist` (the UI as Vite builds it): writes `$OUT_DIR/assets.rs`, a sorted table of
//! (URL path, content type, bytes) with every file `include_bytes!`-ed. Without a built UI the
//! table is empty and the engine serves a page that says how to build it: the engine, its tests
//! and the CLI never need Node to build.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist =
        std::env::var_os("FLOTILLA_UI_DIST").map(PathBuf::from).unwrap_or_else(|| manifest.join("../../ui/dist"));
    println!("cargo:rerun-if-env-changed=FLOTILLA_UI_DIST");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut out = String::from("pub(crate) static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (url, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!(
            "    ({url:?}, {:?}, include_bytes!({:?})),\n",
            content_type(url),
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out_dir.join("assets.rs"), out) {
        println!("cargo:warning=cannot write assets.rs: {e}");
        std::process::exit(1);
    }
}

/// Every file under `dir` as (`/relative/url/path`, absolute path); directories are watched too,
/// so a new file triggers a rebuild.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            let abs = std::fs::canonicalize(&path).unwrap_or(path);
            files.push((url, abs));
        }
    }
}

fn content_type(url: &str) -> &'static str {
    match url.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
