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
    #![allow(clippy::expect_used)]
    #[test]
    fn lookups_agree_with_the_table() {
        assert!(super::ASSETS.windows(2).all(|w| w[0].0 < w[1].0), "the table is sorted");
        for (path, _, bytes) in super::ASSETS {
            let a = super::get(path).expect("every embedded file is found");
            assert_eq!(a.bytes.len(), bytes.len());
        }
        assert!(super::get("/no/such/file.js").is_none());
        assert_eq!(super::is_built(), super::get("/").is_some());
    }
}
