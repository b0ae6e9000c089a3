//! The device server (LAN): what devices download firmware from.
//!
//! `GET`/`HEAD /fw/<sha256>[.bin]?t=<token>` serves a stored firmware's raw image (what ESP-IDF's
//! `esp_https_ota` and Flotilla's client flash); `/fw/<sha256>.gz` or `/fw/<sha256>.bin.gz` its
//! gzip form (what Tasmota on ESP8266 takes), when it has one. Both come with `Content-Length`,
//! `ETag` (the SHA-256 of the bytes served), `Accept-Ranges` and single byte ranges (ESP-IDF's
//! partial download and resumption, see `shared/reference/protocols.md` §5.4). A download needs a
//! per-job token unless the firmware is public; one token serves both forms. The token of an
//! enrolled device's job also needs the device's `Authorization: Bearer <secret>` (401 without);
//! the image served to the end on a job's token is that job's download evidence. Paths are content
//! addresses, never file names: nothing outside the firmware store can be reached. This server
//! must never expose an admin operation.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use flotilla_proto::Health;
use serde::Deserialize;

use crate::error::CoreError;
use crate::firmware::blobs::Form;
use crate::handle::Shared;
use crate::metrics::Metrics;

/// Body chunk size: big enough to be cheap, small enough that progress and aborts are prompt.
const CHUNK: usize = 256 * 1024;

/// The device server's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/fw/{file}", get(firmware))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// Is the device server up?
#[utoipa::path(get, path = "/health", tag = "server", responses((status = 200, description = "Up", body = Health)))]
pub(crate) async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Download counters in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DownloadQuery {
    /// The per-job download token (not needed for a public firmware).
    t: Option<String>,
}

/// A refusal in plain text: ESP HTTP clients show the status, people show the text.
fn refuse(metrics: &Metrics, status: StatusCode, why: &str) -> Response {
    let counter = match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => &metrics.errors_forbidden,
        StatusCode::NOT_FOUND => &metrics.errors_not_found,
        StatusCode::RANGE_NOT_SATISFIABLE => &metrics.errors_range,
        _ => &metrics.errors_internal,
    };
    counter.fetch_add(1, Relaxed);
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n")).into_response()
}

/// A firmware image (`<sha256>` or `<sha256>.bin`) or its gzip form (`<sha256>.gz`,
/// `<sha256>.bin.gz`), whole or one byte range; `HEAD` too.
#[utoipa::path(get, path = "/fw/{file}", tag = "downloads",
    params(("file" = String, Path, description = "`<sha256>`, `<sha256>.bin`, `<sha256>.gz` or `<sha256>.bin.gz`"), DownloadQuery),
    security((), ("device_secret" = [])),
    responses(
        (status = 200, description = "The bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, description = "One byte range", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, description = "The job's device is enrolled: its credential is required", body = String, content_type = "text/plain"),
        (status = 403, description = "No or a bad token, or a blocked firmware", body = String, content_type = "text/plain"),
        (status = 404, description = "No such firmware (or form)", body = String, content_type = "text/plain"),
        (status = 416, description = "A range outside the file", body = String, content_type = "text/plain"),
    ))]
pub(crate) async fn firmware(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    Query(q): Query<DownloadQuery>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let m = &shared.metrics;
    m.requests.fetch_add(1, Relaxed);
    let (sha256, form) = match file.strip_suffix(".bin.gz").or_else(|| file.strip_suffix(".gz")) {
        Some(sha) => (sha, Form::Gzip),
        None => (file.strip_suffix(".bin").unwrap_or(&file), Form::Image),
    };
    let Some(rule) = shared.catalog.rule(sha256) else {
        return refuse(m, StatusCode::NOT_FOUND, "no such firmware");
    };
    if rule.blocked {
        return refuse(m, StatusCode::FORBIDDEN, "this firmware is blocked");
    }
    // The job whose token opened the download: its image served to the end is its evidence.
    let mut served_job: Option<String> = None;
    // A public firmware needs no token, but a valid one still credits its job with the download.
    let checked = match q.t.as_deref() {
        Some(token) => Some(shared.tokens.check(token, sha256, crate::handle::unix_now())),
        None if rule.public => None,
        None => return refuse(m, StatusCode::FORBIDDEN, "a download token is required (?t=...)"),
    };
    match checked {
        Some(Err(e)) if !rule.public => return refuse(m, StatusCode::FORBIDDEN, &e.to_string()),
        Some(Ok(job)) => {
            // The job of an enrolled device: the device must prove who it is.
            let caller = crate::handle::Caller {
                secret: crate::auth::bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
                    .map(str::to_owned),
                ip: Some(addr.ip().to_canonical().to_string()),
                ..Default::default()
            };
            if let Err(e) = shared.may_download(job, &caller) {
                return refuse(m, StatusCode::UNAUTHORIZED, &e.to_string());
            }
            served_job = Some(job.to_owned());
        }
        Some(Err(_)) | None => {}
    }
    // The SHA-256 the served bytes must have: the firmware's own for the image, the recorded one
    // of its gzip file for the gzip form.
    let served_sha256 = match (form, rule.gzip_sha256) {
        (Form::Image, _) => sha256.to_owned(),
        (Form::Gzip, Some(gz)) => gz,
        (Form::Gzip, None) => {
            return refuse(m, StatusCode::NOT_FOUND, "this firmware has no .bin.gz form; download /fw/<sha256>");
        }
    };
    let bytes = match shared.blobs.read(sha256, form, &served_sha256).await {
        Ok(b) => b,
        Err(CoreError::NotFound(_)) => return refuse(m, StatusCode::NOT_FOUND, "firmware file is missing"),
        Err(e) => {
            tracing::error!(sha256, error = %e, "cannot serve firmware");
            return refuse(m, StatusCode::INTERNAL_SERVER_ERROR, "firmware cannot be read");
        }
    };
    let len = bytes.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, len));
    let (status, start, end) = match range {
        None | Some(RangeDecision::Full) => (StatusCode::OK, 0, len),
        Some(RangeDecision::Partial { start, end_inclusive }) => {
            (StatusCode::PARTIAL_CONTENT, start, end_inclusive + 1)
        }
        Some(RangeDecision::Unsatisfiable) => {
            let mut resp = refuse(m, StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{served_sha256}\""))
        .header(header::CACHE_CONTROL, "no-cache");
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1));
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end)) else {
            return refuse(m, StatusCode::INTERNAL_SERVER_ERROR, "range too large");
        };
        // Evidence only for the bytes up to the image's end (a resumed download ends there too).
        let evidence = served_job.filter(|_| end == len).map(|job| (Arc::clone(&shared), job));
        transfer_body(bytes.slice(s..e), Arc::clone(&shared.metrics), evidence)
    };
    builder.body(body).unwrap_or_else(|_| refuse(m, StatusCode::INTERNAL_SERVER_ERROR, "response failed"))
}

/// Tracks one transfer: counted active while its body lives, completed when every byte was taken.
struct Transfer {
    metrics: Arc<Metrics>,
    left: usize,
    /// The job to credit with the download once every byte was taken.
    evidence: Option<(Arc<Shared>, String)>,
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.metrics.active_transfers.fetch_sub(1, Relaxed);
        if self.left == 0 {
            self.metrics.downloads_completed.fetch_add(1, Relaxed);
        }
    }
}

fn transfer_body(bytes: Bytes, metrics: Arc<Metrics>, evidence: Option<(Arc<Shared>, String)>) -> Body {
    metrics.downloads.fetch_add(1, Relaxed);
    metrics.active_transfers.fetch_add(1, Relaxed);
    let transfer = Transfer { left: bytes.len(), metrics, evidence };
    let stream = futures_util::stream::unfold((bytes, transfer), |(mut rest, mut t)| async move {
        if rest.is_empty() {
            return None;
        }
        let chunk = rest.split_to(CHUNK.min(rest.len()));
        t.left -= chunk.len();
        t.metrics.bytes_sent.fetch_add(chunk.len() as u64, Relaxed);
        // The last bytes leave only once the download is durable evidence of the job (a crash
        // right after must not make a device that came back on the new version unprovable).
        if t.left == 0
            && let Some((shared, job)) = t.evidence.take()
            && shared.job_downloaded(&job)
        {
            let _ = shared.writer.flush().await;
        }
        Some((Ok::<_, Infallible>(chunk), (rest, t)))
    });
    Body::from_stream(stream)
}

pub use flotilla_parse::range::{RangeDecision, parse_range};
