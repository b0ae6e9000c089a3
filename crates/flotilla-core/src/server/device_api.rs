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
use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_proto::native::{CheckRequest, CheckResponse, DeviceOtaState, ReportAck, ReportRequest};
use flotilla_proto::{ErrorBody, ErrorDetail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::CoreError;
use crate::handle::{Caller, EngineHandle};

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
        let bytes = Bytes::from_request(req, state).await.map_err(|e| DeviceError(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            DeviceError(StatusCode::BAD_REQUEST, format!("the request body is not what this route takes: {e}"))
        })
    }
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

/// Who is asking: the bearer secret of `Authorization` and the address; `native` for the
/// native routes (whose check-in may enrol a device).
fn caller(addr: SocketAddr, headers: &HeaderMap, native: bool) -> Caller {
    Caller {
        secret: crate::auth::bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())).map(str::to_owned),
        native,
        ip: ip(addr),
        mqtt_device: None,
        site_broker: false,
    }
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

async fn check(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<CheckRequest>,
) -> DeviceResult<CheckResponse> {
    answer(&engine, req, caller(addr, &headers, true)).await
}

async fn report(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<ReportRequest>,
) -> DeviceResult<ReportAck> {
    acknowledge(&engine, req, caller(addr, &headers, true)).await
}

async fn site_key(State(engine): State<EngineHandle>) -> Json<flotilla_proto::PublicKey> {
    Json(engine.public_key())
}

/// `POST /api/v1/check-update` body.
#[derive(Debug, Deserialize)]
struct CheckUpdate {
    mac: String,
    current_version: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    chip: Option<String>,
}

async fn check_update(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
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
    answer(&engine, req, caller(addr, &headers, false)).await
}

/// `GET /api/firmware/check` query.
#[derive(Debug, Deserialize)]
struct FirmwareCheck {
    device_id: String,
    #[serde(default)]
    device_model: Option<String>,
    current_version: String,
    #[serde(default)]
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

async fn firmware_check(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
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
    answer(&engine, req, caller(addr, &headers, false)).await
}

/// Status body of the compatibility profiles: the native report with common spellings accepted.
#[derive(Debug, Deserialize)]
struct CompatStatus {
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(alias = "job_id")]
    job: String,
    #[serde(alias = "status")]
    state: DeviceOtaState,
    #[serde(default)]
    progress: Option<u8>,
    #[serde(default, alias = "message")]
    error: Option<String>,
    #[serde(default, alias = "current_version")]
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

async fn update_status(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<CompatStatus>,
) -> DeviceResult<ReportAck> {
    acknowledge(&engine, b.into_report(id), caller(addr, &headers, false)).await
}

/// `POST /api/ota/check` body: the native check-in with common spellings accepted.
#[derive(Debug, Deserialize)]
struct OtaCheck {
    device_id: String,
    mac: String,
    #[serde(default, alias = "device_model")]
    model: Option<String>,
    #[serde(default)]
    chip: Option<String>,
    #[serde(alias = "current_version")]
    version: String,
}

async fn ota_check(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
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
    answer(&engine, req, caller(addr, &headers, false)).await
}

async fn ota_status(
    State(engine): State<EngineHandle>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(b): Body<CompatStatus>,
) -> DeviceResult<ReportAck> {
    let device_id = b
        .device_id
        .clone()
        .or_else(|| b.mac.clone())
        .ok_or_else(|| DeviceError(StatusCode::BAD_REQUEST, "device_id or mac is required".into()))?;
    acknowledge(&engine, b.into_report(device_id), caller(addr, &headers, false)).await
}
