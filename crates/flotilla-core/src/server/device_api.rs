//! The device API on the device server: check-ins and reports of the native protocol, and the
//! compatibility profiles of fleets already in the field (same engine behind them).
//! Documented with curl examples in `docs/device-api.md`.
//!
//! | route | profile |
//! |---|---|
//! | `POST /api/v1/check`, `POST /api/v1/report` | native |
//! | `GET /api/v1/site-key` | native: the site's public key |
//! | `POST /api/v1/check-update` | `{mac, current_version, labels[]}` fleets |
//! | `GET /api/firmware/check`, `POST /api/device/{id}/update-status` | query-string fleets |
//! | `POST /api/ota/check`, `POST /api/ota/status` | `/api/ota` fleets |

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_proto::native::{CheckRequest, CheckResponse, DeviceOtaState, ReportAck, ReportRequest};
use flotilla_proto::{ErrorBody, ErrorDetail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::CoreError;
use crate::handle::{Caller, EngineHandle};

/// The device server's OpenAPI description: the device API and the firmware downloads
/// (`docs/device-openapi.json`, kept current by a test).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Flotilla device API", description = "What devices on the LAN call: check-ins and reports (native, and the compatibility profiles of fleets in the field), the site key, firmware downloads. See docs/device-api.md."),
    modifiers(&DeviceSecret),
    paths(check, report, site_key, check_update, firmware_check, update_status, ota_check, ota_status, openapi_json,
          super::device::firmware, super::device::health, super::device::metrics),
    tags((name = "native"), (name = "compatibility"), (name = "downloads"), (name = "server"))
)]
struct DeviceApiDoc;

/// The device's own secret, `Authorization: Bearer <secret>`.
struct DeviceSecret;

impl utoipa::Modify for DeviceSecret {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("device_secret", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The device server's OpenAPI description.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <DeviceApiDoc as utoipa::OpenApi>::openapi()
}

/// This description, for firmware teams and API tools.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "server",
    responses((status = 200, description = "The device server's OpenAPI description", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// The device API routes (merged into the device server).
pub(crate) fn router(engine: EngineHandle) -> Router {
    Router::new()
        .route("/api/v1/check", post(check))
        .route("/api/v1/report", post(report))
        .route("/api/v1/site-key", get(site_key))
        .route("/api/v1/check-update", post(check_update))
        .route("/api/firmware/check", get(firmware_check))
        .route("/api/device/{id}/update-status", post(update_status))
        .route("/api/ota/check", post(ota_check))
        .route("/api/ota/status", post(ota_status))
        .route("/api/v1/openapi.json", get(openapi_json))
        .with_state(engine)
}

/// A device API error: JSON, and a status an ESP HTTP client understands.
struct DeviceError(StatusCode, String);

impl From<CoreError> for DeviceError {
    fn from(e: CoreError) -> DeviceError {
        let status = match &e {
            e if e.is_disk_full() => StatusCode::INSUFFICIENT_STORAGE,
            CoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CoreError::NotFound(_) => StatusCode::NOT_FOUND,
            CoreError::Refused(_) => StatusCode::FORBIDDEN,
            CoreError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CoreError::Conflict(_) => StatusCode::CONFLICT,
            CoreError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        DeviceError(status, e.to_string())
    }
}

/// A JSON request body. Unlike axum's `Json`, any `Content-Type` (or none) is accepted: ESP
/// HTTP clients often send none, and the body is all that matters.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = DeviceError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| unreadable(e.status() == StatusCode::PAYLOAD_TOO_LARGE))?;
        parse(&bytes).map(Body)
    }
}

/// A request body that could not be read: over the body cap (413), or broken off or malformed in
/// its framing (400). Worded the same whether the router or [`serve_native`] read it.
fn unreadable(too_large: bool) -> DeviceError {
    if too_large {
        DeviceError(StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than the device server takes".into())
    } else {
        DeviceError(StatusCode::BAD_REQUEST, "the request body could not be read".into())
    }
}

/// A route's JSON request body.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DeviceError> {
    serde_json::from_slice(bytes).map_err(|e| {
        DeviceError(StatusCode::BAD_REQUEST, format!("the request body is not what this route takes: {e}"))
    })
}

impl From<crate::limits::Refusal> for DeviceError {
    fn from(r: crate::limits::Refusal) -> DeviceError {
        if r.status == 400 {
            crate::log_limit::warn_limited!(limit = crate::limits::REFUSED, reason = %r.message, "device request refused");
        }
        DeviceError(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), r.message)
    }
}

impl From<QueryRejection> for DeviceError {
    fn from(e: QueryRejection) -> DeviceError {
        DeviceError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            _ => "refused",
        };
        (self.0, Json(ErrorBody { error: ErrorDetail { code: code.into(), message: self.1 } })).into_response()
    }
}

type DeviceResult<T> = Result<Json<T>, DeviceError>;

fn ip(addr: SocketAddr) -> Option<String> {
    Some(addr.ip().to_canonical().to_string())
}

/// Who is asking: the peer's address and the bearer secret of `Authorization`, read from the
/// request's parts without copying its header map.
struct Who {
    addr: SocketAddr,
    secret: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = DeviceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The device server's connections always set it (`device_conn`).
        let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied() else {
            return Err(DeviceError(StatusCode::INTERNAL_SERVER_ERROR, "the peer's address is unknown".into()));
        };
        Ok(Who::of(addr, &parts.headers))
    }
}

impl Who {
    fn of(addr: SocketAddr, headers: &HeaderMap) -> Who {
        let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        Who { addr, secret: crate::auth::bearer(header).map(str::to_owned) }
    }
}

/// The engine's caller for `who`; `native` for the native routes (whose check-in may enrol a
/// device).
fn caller(who: Who, native: bool) -> Caller {
    Caller { secret: who.secret, native, ip: ip(who.addr), mqtt_device: None, site_broker: false }
}

/// Every check-in profile ends here: the native check-in, answered as JSON.
async fn answer(engine: &EngineHandle, req: CheckRequest, caller: Caller) -> DeviceResult<CheckResponse> {
    crate::limits::check_in(&req)?;
    if let Some(ip) = caller.ip.as_deref().and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        engine.admit_device(&req, ip)?;
    }
    Ok(Json(engine.check_in(req, caller).await?))
}

/// Every report profile ends here: the native report, acknowledged.
async fn acknowledge(engine: &EngineHandle, req: ReportRequest, caller: Caller) -> DeviceResult<ReportAck> {
    crate::limits::report(&req)?;
    engine.device_report(req, caller).await?;
    Ok(Json(ReportAck { ok: true }))
}

/// Check in: the device says what it runs and is answered with an offer or none. The first
/// check-in of a new device enrols it (the answer carries its credential); every later one
/// carries `Authorization: Bearer <secret>`.
#[utoipa::path(post, path = "/api/v1/check", tag = "native", request_body = CheckRequest,
    security((), ("device_secret" = [])),
    responses(
        (status = 200, description = "An offer or none (with the credential on enrolment)", body = CheckResponse),
        (status = 400, description = "A field out of bounds, named", body = ErrorBody),
        (status = 401, description = "The device is enrolled and this request is not its", body = ErrorBody),
        (status = 403, description = "Refused (revoked, unauthenticated devices refused by a setting)", body = ErrorBody),
        (status = 429, description = "Too many new devices from the LAN", body = ErrorBody),
        (status = 507, description = "The disk is full", body = ErrorBody),
    ))]
async fn check(
    State(engine): State<EngineHandle>,
    who: Who,
    Body(req): Body<CheckRequest>,
) -> DeviceResult<CheckResponse> {
    answer(&engine, req, caller(who, true)).await
}

/// The native routes every device calls all day, which a device server connection serves itself
/// ([`serve_native`]); the router keeps them too (it answers their other methods with 405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Native {
    /// `POST /api/v1/check`: [`check`].
    Check,
    /// `POST /api/v1/report`: [`report`].
    Report,
}

impl Native {
    /// The native route a request is for, if it is one.
    pub(crate) fn of(method: &Method, path: &str) -> Option<Native> {
        if method != Method::POST {
            return None;
        }
        match path {
            "/api/v1/check" => Some(Native::Check),
            "/api/v1/report" => Some(Native::Report),
            _ => None,
        }
    }
}

/// Serves a native check-in or report as its handler behind the router does ([`check`],
/// [`report`]), without the router's per-request work: its matching, extension map, boxed
/// services, futures and bodies were an eighth of the engine's CPU per check-in
/// (`docs/performance.md`). `max_body` is the device server's body cap, as the router's.
pub(crate) async fn serve_native(
    route: Native,
    engine: &EngineHandle,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
    max_body: usize,
) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let who = Who::of(peer, &parts.headers);
    drop(parts);
    let bytes = match http_body_util::Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return unreadable(e.is::<http_body_util::LengthLimitError>()).into_response(),
    };
    let caller = caller(who, true);
    match route {
        Native::Check => async { answer(engine, parse(&bytes)?, caller).await }.await.into_response(),
        Native::Report => async { acknowledge(engine, parse(&bytes)?, caller).await }.await.into_response(),
    }
}

/// Report the progress or outcome of a job.
#[utoipa::path(post, path = "/api/v1/report", tag = "native", request_body = ReportRequest,
    security((), ("device_secret" = [])),
    responses(
        (status = 200, description = "Recorded (or ignored: a job that is not this device's)", body = ReportAck),
        (status = 400, description = "A field out of bounds, named", body = ErrorBody),
        (status = 401, description = "The device is enrolled and this request is not its", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 507, description = "The disk is full", body = ErrorBody),
    ))]
async fn report(
    State(engine): State<EngineHandle>,
    who: Who,
    Body(req): Body<ReportRequest>,
) -> DeviceResult<ReportAck> {
    acknowledge(&engine, req, caller(who, true)).await
}

/// The site's Ed25519 public key (what signs the manifests).
#[utoipa::path(get, path = "/api/v1/site-key", tag = "native",
    responses((status = 200, description = "The site key", body = flotilla_proto::PublicKey)))]
async fn site_key(State(engine): State<EngineHandle>) -> Json<flotilla_proto::PublicKey> {
    Json(engine.public_key())
}

/// `POST /api/v1/check-update` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CheckUpdate {
    #[schema(max_length = 32, pattern = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")]
    mac: String,
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    current_version: String,
    #[serde(default)]
    #[schema(schema_with = flotilla_proto::native::labels_schema)]
    labels: Vec<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    device_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    model: Option<String>,
    #[serde(default)]
    #[schema(max_length = 32, pattern = "^[!-~]*$")]
    chip: Option<String>,
}

/// Check in, `{mac, current_version, labels[]}` fleets.
#[utoipa::path(post, path = "/api/v1/check-update", tag = "compatibility", request_body = CheckUpdate,
    responses(
        (status = 200, description = "An offer or none", body = CheckResponse),
        (status = 400, description = "A field out of bounds, named", body = ErrorBody),
        (status = 401, description = "The device is enrolled: use the native check-in", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 429, description = "Too many new devices from the LAN", body = ErrorBody),
    ))]
async fn check_update(
    State(engine): State<EngineHandle>,
    who: Who,
    Body(b): Body<CheckUpdate>,
) -> DeviceResult<CheckResponse> {
    let req = CheckRequest {
        device_id: b.device_id.unwrap_or_else(|| b.mac.clone()),
        mac: b.mac,
        model: b.model,
        chip: b.chip,
        version: b.current_version,
        labels: (!b.labels.is_empty()).then_some(b.labels),
        secure_version: None,
        interval_secs: None,
        tls: None,
    };
    answer(&engine, req, caller(who, false)).await
}

/// `GET /api/firmware/check` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FirmwareCheck {
    #[param(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    device_id: String,
    #[serde(default)]
    #[param(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    device_model: Option<String>,
    #[param(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    current_version: String,
    #[serde(default)]
    #[param(max_length = 32, pattern = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")]
    mac: Option<String>,
}

/// The MAC of a device: the query, else the `x-ESP32-STA-MAC`/`x-ESP8266-STA-MAC` header the
/// Arduino HTTP updaters send. Never taken from the inventory: a device id alone proves nothing.
fn mac_of(given: Option<String>, headers: &HeaderMap) -> Option<String> {
    let header = ["x-esp32-sta-mac", "x-esp8266-sta-mac"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(str::to_owned));
    given.or(header)
}

/// Check in, query-string fleets (the MAC from `mac` or the Arduino updaters' `x-ESP32-STA-MAC`).
#[utoipa::path(get, path = "/api/firmware/check", tag = "compatibility", params(FirmwareCheck),
    responses(
        (status = 200, description = "An offer or none (none without a MAC)", body = CheckResponse),
        (status = 400, description = "A field out of bounds, named", body = ErrorBody),
        (status = 401, description = "The device is enrolled: use the native check-in", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 429, description = "Too many new devices from the LAN", body = ErrorBody),
    ))]
async fn firmware_check(
    State(engine): State<EngineHandle>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<FirmwareCheck>, QueryRejection>,
) -> DeviceResult<CheckResponse> {
    let Query(q) = query?;
    // Without a MAC nothing is offered and nothing recorded, to a known id as to an unknown one
    // (ids cannot be probed).
    let Some(mac) = mac_of(q.mac, &headers) else { return Ok(Json(CheckResponse::none())) };
    let req = CheckRequest {
        device_id: q.device_id,
        mac,
        model: q.device_model,
        chip: None,
        version: q.current_version,
        labels: None,
        secure_version: None,
        interval_secs: None,
        tls: None,
    };
    answer(&engine, req, caller(who, false)).await
}

/// Status body of the compatibility profiles: the native report with common spellings accepted
/// (`job_id`, `status`, `message`, `current_version`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CompatStatus {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    device_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 32, pattern = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")]
    mac: Option<String>,
    #[serde(alias = "job_id")]
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    job: String,
    #[serde(alias = "status")]
    state: DeviceOtaState,
    #[serde(default)]
    #[schema(maximum = 100)]
    progress: Option<u8>,
    #[serde(default, alias = "message")]
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$")]
    error: Option<String>,
    #[serde(default, alias = "current_version")]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    version: Option<String>,
}

impl CompatStatus {
    fn into_report(self, device_id: String) -> ReportRequest {
        ReportRequest {
            device_id,
            mac: self.mac,
            job: self.job,
            state: self.state,
            progress: self.progress,
            error: self.error,
            version: self.version,
        }
    }
}

/// Report, query-string fleets.
#[utoipa::path(post, path = "/api/device/{id}/update-status", tag = "compatibility", request_body = CompatStatus,
    params(("id" = String, Path, description = "The device id", min_length = 1, max_length = 128, pattern = "^[!-~]*$")),
    responses(
        (status = 200, description = "Recorded (or ignored)", body = ReportAck),
        (status = 400, description = "A field out of bounds, named", body = ErrorBody),
        (status = 401, description = "Not this device's", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
    ))]
async fn update_status(
    State(engine): State<EngineHandle>,
    who: Who,
    Path(id): Path<String>,
    Body(b): Body<CompatStatus>,
) -> DeviceResult<ReportAck> {
    acknowledge(&engine, b.into_report(id), caller(who, false)).await
}

/// `POST /api/ota/check` body: the native check-in with common spellings accepted
/// (`device_model`, `current_version`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct OtaCheck {
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]*$")]
    device_id: String,
    #[schema(max_length = 32, pattern = "^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")]
    mac: String,
    #[serde(default, alias = "device_model")]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    model: Option<String>,
    #[serde(default)]
    #[schema(max_length = 32, pattern = "^[!-~]*$")]
    chip: Option<String>,
    #[serde(alias = "current_version")]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    version: String,
}

/// Check in, `/api/ota` fleets.
#[utoipa::path(post, path = "/api/ota/check", tag = "compatibility", request_body = OtaCheck,
    responses(
        (status = 200, description = "An offer or none", body = CheckResponse),
        (status = 400, description = "A field out of bounds, named", body = ErrorBody),
        (status = 401, description = "The device is enrolled: use the native check-in", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 429, description = "Too many new devices from the LAN", body = ErrorBody),
    ))]
async fn ota_check(
    State(engine): State<EngineHandle>,
    who: Who,
    Body(b): Body<OtaCheck>,
) -> DeviceResult<CheckResponse> {
    let req = CheckRequest {
        device_id: b.device_id,
        mac: b.mac,
        model: b.model,
        chip: b.chip,
        version: b.version,
        labels: None,
        secure_version: None,
        interval_secs: None,
        tls: None,
    };
    answer(&engine, req, caller(who, false)).await
}

/// Report, `/api/ota` fleets.
#[utoipa::path(post, path = "/api/ota/status", tag = "compatibility", request_body = CompatStatus,
    responses(
        (status = 200, description = "Recorded (or ignored)", body = ReportAck),
        (status = 400, description = "A field out of bounds, or neither device_id nor mac", body = ErrorBody),
        (status = 401, description = "Not this device's", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
    ))]
async fn ota_status(
    State(engine): State<EngineHandle>,
    who: Who,
    Body(b): Body<CompatStatus>,
) -> DeviceResult<ReportAck> {
    let device_id = b
        .device_id
        .clone()
        .or_else(|| b.mac.clone())
        .ok_or_else(|| DeviceError(StatusCode::BAD_REQUEST, "device_id or mac is required".into()))?;
    acknowledge(&engine, b.into_report(device_id), caller(who, false)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    #[test]
    fn only_the_exact_native_post_routes_are_served_without_the_router() {
        use super::{Method, Native};
        assert_eq!(Native::of(&Method::POST, "/api/v1/check"), Some(Native::Check));
        assert_eq!(Native::of(&Method::POST, "/api/v1/report"), Some(Native::Report));
        // Other methods get the router's 405; other paths its 404 or their own route.
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT] {
            assert_eq!(Native::of(&method, "/api/v1/check"), None, "{method}");
            assert_eq!(Native::of(&method, "/api/v1/report"), None, "{method}");
        }
        for path in ["/api/v1/check/", "/api/v1//check", "/API/v1/check", "/api/v1/%63heck", "/api/v1/check-update"] {
            assert_eq!(Native::of(&Method::POST, path), None, "{path}");
        }
    }

    /// Every bounded field of every device-API body and query has the bounds the engine enforces
    /// (`limits`) in the description, and each pattern accepts exactly what the engine accepts on
    /// strings of every kind of character: a generated client (or schemathesis) that follows the
    /// description is never refused for a field, and one that breaks it always is.
    #[test]
    fn device_openapi_states_the_limits_the_engine_enforces() {
        use crate::limits::*;
        use flotilla_proto::native::{LINES_PATTERN, MAC_PATTERN, TEXT_PATTERN, VISIBLE_PATTERN};
        let doc: serde_json::Value = serde_json::from_str(&super::openapi().to_json().unwrap()).unwrap();
        let expected = |name: &str| -> Option<(u64, &str)> {
            Some(match name {
                "device_id" | "id" => (MAX_DEVICE_ID as u64, VISIBLE_PATTERN),
                "mac" => (MAX_MAC as u64, MAC_PATTERN),
                "model" | "device_model" | "version" | "current_version" => (MAX_TEXT as u64, TEXT_PATTERN),
                "chip" => (MAX_CHIP as u64, VISIBLE_PATTERN),
                "job" => (MAX_JOB as u64, VISIBLE_PATTERN),
                "error" => (MAX_ERROR as u64, LINES_PATTERN),
                _ => return None,
            })
        };
        let mut checked = 0;
        let mut check = |where_: &str, name: &str, schema: &serde_json::Value| {
            let Some((max, pattern)) = expected(name) else { return };
            assert_eq!(schema["maxLength"].as_u64(), Some(max), "{where_}.{name}: {schema}");
            assert_eq!(schema["pattern"].as_str(), Some(pattern), "{where_}.{name}: {schema}");
            checked += 1;
        };
        for (schema_name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            if ["CheckResponse", "Offer", "DeviceCredential", "Health", "PublicKey", "ErrorBody", "ErrorDetail"]
                .contains(&schema_name.as_str())
            {
                continue; // answers, not input
            }
            for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                check(schema_name, name, prop);
            }
            if let Some(labels) = schema["properties"].get("labels") {
                assert_eq!(labels["maxItems"].as_u64(), Some(MAX_LABELS as u64), "{schema_name}.labels");
                assert_eq!(labels["items"]["maxLength"].as_u64(), Some(64), "{schema_name}.labels");
            }
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for op in item.as_object().unwrap().values() {
                for param in op["parameters"].as_array().into_iter().flatten() {
                    check(path, param["name"].as_str().unwrap(), &param["schema"]);
                }
            }
        }
        // CheckRequest 5, ReportRequest 5, CheckUpdate 5, CompatStatus 5, OtaCheck 5, the query 4, the path id.
        assert_eq!(checked, 5 + 5 + 5 + 5 + 5 + 4 + 1);

        // Each pattern against the engine's own check, on characters of every kind.
        let samples = [
            "",
            "a",
            "dev-1",
            "with space",
            "tab\there",
            "line\nbreak",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
            "caf\u{e9}",
            "\u{1f600}",
            "24:6F:28:AA:BB:01",
            "246f28aabb01",
            "24-6f-28-aa-bb-01",
            "24:6F:28:AA:BB",
        ];
        let matches = |pattern: &str, s: &str| regex::Regex::new(pattern).unwrap().is_match(s);
        for s in samples {
            let mut r = flotilla_proto::native::CheckRequest {
                device_id: "d".into(),
                mac: "24:6F:28:AA:BB:01".into(),
                model: Some(s.into()),
                chip: Some(s.into()),
                version: s.into(),
                labels: None,
                secure_version: None,
                interval_secs: None,
                tls: None,
            };
            let engine_says = |r: &flotilla_proto::native::CheckRequest| check_in(r).is_ok();
            assert_eq!(
                matches(TEXT_PATTERN, s),
                engine_says(&flotilla_proto::native::CheckRequest { chip: None, ..r.clone() }),
                "text {s:?}"
            );
            r.version = "1".into();
            r.model = None;
            assert_eq!(matches(VISIBLE_PATTERN, s), engine_says(&r), "visible {s:?}");
            r.chip = None;
            let non_empty = !s.is_empty();
            assert_eq!(
                matches(VISIBLE_PATTERN, s) && non_empty,
                engine_says(&flotilla_proto::native::CheckRequest { device_id: s.into(), ..r.clone() }),
                "id {s:?}"
            );
            // Every MAC the pattern admits is one the engine reads.
            if matches(MAC_PATTERN, s) {
                assert!(flotilla_proto::device::normalize_mac(s).is_some(), "mac {s:?}");
            }
            let rep = flotilla_proto::native::ReportRequest {
                device_id: "d".into(),
                mac: None,
                job: "1-1".into(),
                state: flotilla_proto::native::DeviceOtaState::Failed,
                progress: None,
                error: Some(s.into()),
                version: None,
            };
            assert_eq!(matches(LINES_PATTERN, s), report(&rep).is_ok(), "lines {s:?}");
        }
    }

    /// `docs/device-openapi.json` is the committed description; it must match the code.
    /// Regenerate with `FLOTILLA_BLESS=1 cargo test -p flotilla-core device_openapi`.
    #[test]
    fn committed_device_openapi_is_current_and_covers_every_route() {
        let doc = super::openapi();
        let mut paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "/api/device/{id}/update-status",
                "/api/firmware/check",
                "/api/ota/check",
                "/api/ota/status",
                "/api/v1/check",
                "/api/v1/check-update",
                "/api/v1/openapi.json",
                "/api/v1/report",
                "/api/v1/site-key",
                "/fw/{file}",
                "/health",
                "/metrics",
            ],
            "every route of the device server, documented"
        );
        let generated = doc.to_pretty_json().unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/device-openapi.json");
        if std::env::var_os("FLOTILLA_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed != generated {
            panic!(
                "docs/device-openapi.json is stale: run `FLOTILLA_BLESS=1 cargo test -p flotilla-core device_openapi`"
            );
        }
    }
}
