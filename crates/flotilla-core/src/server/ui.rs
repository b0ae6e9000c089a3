//! The web UI on the admin server: every path outside `/api/` is a file of the embedded UI, or
//! its `index.html` (the UI routes in the URL fragment, so any other path is a typo or a stale
//! bookmark and gets the app, which shows its own start page).
//!
//! The UI needs no token to load: it holds none of the site's data until the user gives it the
//! admin token (the `#token=` fragment the engine prints, which never reaches the server).

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What the browser may do with the UI's pages: only this origin's scripts and styles, and (in
/// the desktop app) the Tauri IPC channel.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
connect-src 'self' ipc: http://ipc.localhost; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Serves `uri`'s file of the UI (GET and HEAD only).
pub(crate) async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path();
    let (asset, status) = match flotilla_webui::get(path) {
        Some(a) => (Some(a), StatusCode::OK),
        // A hashed asset that is gone (an old page after an upgrade) is a real 404; anything
        // else is a route of the app.
        None if path.starts_with("/assets/") => return StatusCode::NOT_FOUND.into_response(),
        None => (flotilla_webui::get("/index.html"), StatusCode::OK),
    };
    let mut response = match asset {
        Some(a) => {
            let mut r = (status, a.bytes).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
            let cache = if a.immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            r
        }
        None => {
            let mut r = (StatusCode::OK, flotilla_webui::NOT_BUILT_PAGE).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if method == Method::HEAD {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    response
}
