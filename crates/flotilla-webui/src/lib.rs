//! The web UI, embedded: [`get`] answers a URL path with the file Vite built for it.
//!
//! `ui/dist` is read when this crate is built (see `build.rs`); rebuild after `npm run build`.
//! When the UI was not built, [`is_built`] is false and [`get`] finds nothing: the server then
//! shows [`NOT_BUILT_PAGE`].

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// A file of the UI.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// Vite puts a content hash in the names under `/assets/`: those never change.
    pub immutable: bool,
}

/// The file at `path` (`/`, `/index.html`, `/assets/index-1a2b3c.js`…).
pub fn get(path: &str) -> Option<Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    let i = ASSETS.binary_search_by(|(p, _, _)| (*p).cmp(path)).ok()?;
    let (path, content_type, bytes) = ASSETS[i];
    Some(Asset { path, content_type, bytes, immutable: path.starts_with("/assets/") })
}

/// Was a built UI embedded?
pub fn is_built() -> bool {
    get("/index.html").is_some()
}

/// How many files are embedded.
pub fn len() -> usize {
    ASSETS.len()
}

/// Shown instead of the UI when this binary was built without it.
pub const NOT_BUILT_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Flotilla</title>\
<body style=\"font:16px system-ui;margin:3em;max-width:40em\"><h1>Flotilla</h1>\
<p>This build of the engine has no web UI embedded. Build it with \
<code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>, then rebuild the engine \
(<code>scripts/run.sh</code> does both). The admin API works without it: \
<a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>";

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::panic)]
    use std::path::{Path, PathBuf};

    /// The `ui/dist` this crate embedded (as `build.rs` chose it).
    fn dist() -> PathBuf {
        option_env!("FLOTILLA_UI_DIST")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist"))
    }

    fn files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read ui/dist") {
            let path = entry.expect("read ui/dist").path();
            if path.is_dir() {
                files(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under ui/dist").to_string_lossy().replace('\\', "/");
                out.push((format!("/{rel}"), std::fs::read(&path).expect("read a built file")));
            }
        }
    }

    /// Every file Vite built is found by its URL path with the same bytes, and nothing else is.
    /// Fails when the UI is not built: there would be nothing to compare (the README's test
    /// command builds it first; by hand: `npm ci && npm run build` in `ui/`).
    #[test]
    fn every_built_file_is_served_with_its_bytes() {
        let dist = dist();
        assert!(
            dist.join("index.html").is_file(),
            "{} holds no built UI: run `npm ci && npm run build` in ui/ (scripts/test.sh does) and test again",
            dist.display()
        );
        let mut built = Vec::new();
        files(&dist, &dist, &mut built);
        built.sort();
        assert!(built.len() >= 2, "index.html and its assets");
        assert_eq!(super::len(), built.len(), "as many files embedded as built (rebuild after `npm run build`)");
        for (path, bytes) in &built {
            let a = super::get(path).unwrap_or_else(|| panic!("{path} is built but not served"));
            assert!(a.bytes == bytes.as_slice(), "{path}: the embedded bytes differ from the built file");
            assert_eq!(a.immutable, path.starts_with("/assets/"), "{path}");
        }
        assert_eq!(super::get("/").map(|a| a.path), Some("/index.html"));
        assert!(super::get("/no/such/file.js").is_none());
        assert!(super::is_built());
    }
}
