//! The admin API (loopback by default): JSON over HTTP with a bearer token, plus a Server-Sent
//! Events stream of live events. The UI, the CLI and automation all use it; every route calls one
//! [`EngineHandle`] method.
//!
//! Routes are declared with `utoipa` so the router and its OpenAPI description come from the same
//! code ([`openapi`]). Every route except `GET /health` answers 401 without the token. Errors are
//! `{"error":{"code","message"}}` with the status that fits.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use flotilla_proto::api::{
    BackupRequest, BackupSummary, DemoInfo, EngineStatus, FleetMetrics, SettingsView, SiteSettings,
};
use flotilla_proto::device::{
    ChannelRequest, CredentialInfo, CredentialRequest, LabelChannel, ProbeRequest, ProbeResult, ScanRequest, ScanResult,
};
use flotilla_proto::rollout::{
    CreateRollout, DeviceHistory, FirmwareSuggestion, Rollout, RolloutDetail, RolloutPreview,
};
use flotilla_proto::{
    Channel, Device, DownloadLink, DownloadLinkRequest, ErrorBody, ErrorDetail, EventPage, Family, Firmware,
    FirmwarePatch, Health, ImportOptions, ImportPathRequest, ImportResponse, InspectReport, LabelRequest, PublicKey,
    RuntimeInfo,
};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::CoreError;
use crate::firmware::blobs::Form;
use crate::fleet::RolloutAction;
use crate::handle::{CredentialAction, EngineHandle};
use crate::inventory::Sighting;
use crate::log_limit::warn_limited;

/// Who the audit log names for changes made through this API.
const ACTOR: &str = "admin-api";

// ---- errors -----------------------------------------------------------------------------------

/// An error as the admin API answers it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let status = match &e {
            e if e.is_disk_full() => StatusCode::INSUFFICIENT_STORAGE,
            CoreError::InvalidImage(_) | CoreError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CoreError::NotFound(_) => StatusCode::NOT_FOUND,
            CoreError::Conflict(_) => StatusCode::CONFLICT,
            CoreError::Unavailable(_) => StatusCode::NOT_IMPLEMENTED,
            CoreError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CoreError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            tracing::error!(error = %e, "admin API request failed");
        }
        ApiError { status, code: e.code(), message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json` whose rejections (bad JSON, wrong content type) answer in the API's error shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e: JsonRejection| ApiError::new(e.status(), "bad_request", e.body_text()))
    }
}

/// `Query` with the API's error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

/// `Path` with the API's error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::bad_request(e.body_text()))
    }
}

// ---- router -----------------------------------------------------------------------------------

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token in `<data>/admin-token`."))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Flotilla admin API", description = "Loopback admin API of the Flotilla engine. Every route but /health needs `Authorization: Bearer <token>`."),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
    tags((name = "firmware"), (name = "devices"), (name = "rollouts"), (name = "events"), (name = "engine"))
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<EngineHandle> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .routes(routes!(info))
        .routes(routes!(status))
        .routes(routes!(backup))
        .routes(routes!(start_demo))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(public_key))
        .routes(routes!(list_firmware, upload_firmware))
        .routes(routes!(import_firmware_path))
        .routes(routes!(inspect_firmware))
        .routes(routes!(get_firmware, patch_firmware, delete_firmware))
        .routes(routes!(download_link))
        .routes(routes!(list_devices, add_device))
        .routes(routes!(probe_device))
        .routes(routes!(scan_devices))
        .routes(routes!(list_credentials))
        .routes(routes!(set_credential, remove_credential))
        .routes(routes!(get_device, forget_device))
        .routes(routes!(device_history))
        .routes(routes!(label_device))
        .routes(routes!(set_device_channel))
        .routes(routes!(approve_device))
        .routes(routes!(revoke_device))
        .routes(routes!(rekey_device))
        .routes(routes!(list_label_channels))
        .routes(routes!(set_label_channel))
        .routes(routes!(suggest_firmware))
        .routes(routes!(list_rollouts, create_rollout))
        .routes(routes!(preview_rollout))
        .routes(routes!(get_rollout))
        .routes(routes!(rollout_action))
        .routes(routes!(skip_job))
        .routes(routes!(rollout_report))
        .routes(routes!(list_events))
        .routes(routes!(fleet_metrics))
        .routes(routes!(prometheus_metrics))
        .routes(routes!(event_stream))
}

/// The OpenAPI description of the admin API, generated from the route declarations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The admin API router for `engine`.
pub fn router(engine: EngineHandle) -> Router {
    let body_limit =
        usize::try_from(engine.shared.config.max_image_size.saturating_mul(4).max(64 << 20)).unwrap_or(64 << 20);
    let (router, _) = routes().split_for_parts();
    router
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(engine.clone(), require_token))
        .with_state(engine)
}

/// `/api/…` paths nothing answers get a JSON 404; every other path is the web UI.
async fn fallback(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if is_api(uri.path()) {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response();
    }
    super::ui::serve(method, uri).await
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

/// API paths reachable without the token (the UI's files, outside `/api` and `/metrics`, need none).
const OPEN_PATHS: &[&str] = &["/health"];

/// Rate limit of the warnings about refused admin tokens.
static REFUSED_TOKENS: std::sync::LazyLock<crate::log_limit::WarnLimit> =
    std::sync::LazyLock::new(crate::log_limit::WarnLimit::new);

async fn require_token(State(engine): State<EngineHandle>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) || !is_api(req.uri().path()) {
        return next.run(req).await;
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // EventSource cannot send headers: the event stream alone also takes `?token=`.
    let from_query = (req.uri().path() == "/api/v1/events/stream")
        .then(|| req.uri().query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    let expected = engine.admin_token().as_bytes();
    // Who was refused is logged (rate-limited), never what they sent.
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    match from_header.or(from_query) {
        Some(t) if bool::from(t.as_bytes().ct_eq(expected)) => next.run(req).await,
        Some(_) => {
            warn_limited!(limit = REFUSED_TOKENS, peer = ?peer, path = %req.uri().path(), "admin API request refused: wrong token");
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "admin token is wrong").into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>` (the token is in <data>/admin-token)",
        )
        .into_response(),
    }
}

// ---- engine -----------------------------------------------------------------------------------

/// Liveness; needs no token.
#[utoipa::path(get, path = "/health", tag = "engine", security(()), responses((status = OK, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// This OpenAPI description.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "engine", responses((status = OK, description = "OpenAPI 3.1 JSON")))]
async fn openapi_json() -> Response {
    static SPEC: OnceLock<String> = OnceLock::new();
    let spec = SPEC.get_or_init(|| openapi().to_json().unwrap_or_else(|_| "{}".into()));
    ([(header::CONTENT_TYPE, "application/json")], spec.clone()).into_response()
}

/// Writes a consistent backup of the data dir (database snapshot, firmware files, keys, admin
/// token, settings) into a new folder on the engine's machine, while the engine runs. The folder's
/// parent must exist; the folder must not (or be empty) and must be outside the data dir.
/// `flotilla restore` puts it back.
#[utoipa::path(
    post, path = "/api/v1/backup", tag = "engine", request_body = BackupRequest,
    responses(
        (status = CREATED, body = BackupSummary),
        (status = BAD_REQUEST, body = ErrorBody, description = "the path is not absolute or is inside the data dir"),
        (status = NOT_FOUND, body = ErrorBody, description = "the folder's parent does not exist"),
        (status = CONFLICT, body = ErrorBody, description = "the folder exists and is not empty"),
        (status = UNPROCESSABLE_ENTITY, body = ErrorBody, description = "the folder cannot be created"),
        (status = INSUFFICIENT_STORAGE, body = ErrorBody, description = "the disk is full"),
    )
)]
async fn backup(
    State(engine): State<EngineHandle>,
    ApiJson(req): ApiJson<BackupRequest>,
) -> ApiResult<(StatusCode, Json<BackupSummary>)> {
    let summary = engine.backup(&absolute(&req.path)?, ACTOR).await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

/// What the engine runs and the state of each connection (broker, servers, mDNS, TLS, demo).
#[utoipa::path(get, path = "/api/v1/status", tag = "engine", responses((status = OK, body = EngineStatus)))]
async fn status(State(engine): State<EngineHandle>) -> Json<EngineStatus> {
    Json(engine.status().await)
}

/// Starts the simulated demo fleet (and imports its demo firmware): 409 when it already runs, 501
/// when this engine was started without one (`flotilla serve --demo-available`, the desktop app).
#[utoipa::path(
    post, path = "/api/v1/demo", tag = "engine",
    responses((status = CREATED, body = DemoInfo), (status = CONFLICT, body = ErrorBody), (status = NOT_IMPLEMENTED, body = ErrorBody))
)]
async fn start_demo(State(engine): State<EngineHandle>) -> ApiResult<(StatusCode, Json<DemoInfo>)> {
    Ok((StatusCode::CREATED, Json(engine.start_demo(ACTOR).await?)))
}

/// The site's saved settings (used at the next start; flags given at start win), without the
/// broker password.
#[utoipa::path(get, path = "/api/v1/settings", tag = "engine", responses((status = OK, body = SettingsView)))]
async fn get_settings(State(engine): State<EngineHandle>) -> ApiResult<Json<SettingsView>> {
    Ok(Json(engine.settings()?))
}

/// Saves the site's settings for the next start: every field is checked first, and a wrong one
/// is named in a 400 with nothing saved. `restart_required` says whether the running engine
/// differs.
#[utoipa::path(
    put, path = "/api/v1/settings", tag = "engine", request_body = SiteSettings,
    responses((status = OK, body = SettingsView), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn put_settings(
    State(engine): State<EngineHandle>,
    ApiJson(settings): ApiJson<SiteSettings>,
) -> ApiResult<Json<SettingsView>> {
    Ok(Json(engine.save_settings(settings, ACTOR).await?))
}

/// Where the engine listens.
#[utoipa::path(get, path = "/api/v1/info", tag = "engine", responses((status = OK, body = RuntimeInfo)))]
async fn info(State(engine): State<EngineHandle>) -> Json<RuntimeInfo> {
    Json(RuntimeInfo {
        admin_url: engine.admin_url().into(),
        device_url: engine.device_url().into(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        mqtt_url: engine.mqtt_url().map(str::to_owned),
        device_https_url: engine.device_https_url().map(str::to_owned),
    })
}

/// The site signing key's public half, for baking into device firmware.
#[utoipa::path(get, path = "/api/v1/keys/public", tag = "engine", responses((status = OK, body = PublicKey)))]
async fn public_key(State(engine): State<EngineHandle>) -> Json<PublicKey> {
    Json(engine.public_key())
}

// ---- firmware ---------------------------------------------------------------------------------

/// Every imported firmware, newest first.
#[utoipa::path(get, path = "/api/v1/firmware", tag = "firmware", responses((status = OK, body = Vec<Firmware>)))]
async fn list_firmware(State(engine): State<EngineHandle>) -> ApiResult<Json<Vec<Firmware>>> {
    Ok(Json(engine.list_firmware().await?))
}

/// Multipart form of a firmware upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The firmware file (`.bin` or `.bin.gz`).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    version: Option<String>,
    model: Option<String>,
    channel: Option<Channel>,
    notes: Option<String>,
    min_version: Option<String>,
    public: Option<bool>,
}

/// Uploads and imports a firmware file (multipart field `file`, options as text fields).
/// 201 when imported, 200 when exactly these bytes were already imported.
#[utoipa::path(
    post, path = "/api/v1/firmware", tag = "firmware",
    request_body(content_type = "multipart/form-data", content = UploadForm),
    responses(
        (status = CREATED, body = ImportResponse), (status = OK, body = ImportResponse),
        (status = UNPROCESSABLE_ENTITY, body = ErrorBody, description = "not an image that can work; the message says why"),
        (status = CONFLICT, body = ErrorBody, description = "this version of this model exists with other bytes"),
    )
)]
async fn upload_firmware(State(engine): State<EngineHandle>, mut form: Multipart) -> ApiResult<Response> {
    let mut file: Option<Bytes> = None;
    let mut opts = ImportOptions::default();
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), "bad_request", e.body_text());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            file = Some(field.bytes().await.map_err(bad)?);
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        let text = text.trim().to_owned();
        let value = (!text.is_empty()).then_some(text);
        match name.as_str() {
            "version" => opts.version = value,
            "model" => opts.model = value,
            "notes" => opts.notes = value,
            "min_version" => opts.min_version = value,
            "channel" => {
                opts.channel = value
                    .map(|v| {
                        Channel::parse(&v)
                            .ok_or_else(|| ApiError::bad_request(format!("channel {v:?} is not stable or beta")))
                    })
                    .transpose()?;
            }
            "public" => opts.public = value.map(|v| matches!(v.as_str(), "true" | "1" | "yes" | "on")),
            other => return Err(ApiError::bad_request(format!("unknown form field {other:?}"))),
        }
    }
    let file = file.ok_or_else(|| ApiError::bad_request("multipart field `file` is missing"))?;
    if file.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_image", "the uploaded file is empty"));
    }
    let res = engine.import_firmware(file, opts, ACTOR).await?;
    Ok(imported(res))
}

/// 201 for a new firmware, 200 when these bytes were already imported.
fn imported(res: ImportResponse) -> Response {
    let status = if res.created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(res)).into_response()
}

/// Imports a firmware file from the engine machine's own disk.
#[utoipa::path(
    post, path = "/api/v1/firmware/import", tag = "firmware", request_body = ImportPathRequest,
    responses((status = CREATED, body = ImportResponse), (status = OK, body = ImportResponse),
              (status = UNPROCESSABLE_ENTITY, body = ErrorBody), (status = CONFLICT, body = ErrorBody))
)]
async fn import_firmware_path(
    State(engine): State<EngineHandle>,
    ApiJson(req): ApiJson<ImportPathRequest>,
) -> ApiResult<Response> {
    let res = engine.import_firmware_path(&absolute(&req.path)?, req.options, ACTOR).await?;
    Ok(imported(res))
}

fn absolute(path: &str) -> Result<std::path::PathBuf, ApiError> {
    let p = std::path::PathBuf::from(path);
    if p.is_absolute() { Ok(p) } else { Err(ApiError::bad_request(format!("path {path:?} must be absolute"))) }
}

/// Answers what importing a firmware file with these options would do, importing nothing: the
/// image facts and the verdict (`ready` with what it would record, `duplicate` naming the
/// firmware that already has this image, or `refused` with the exact error import would answer).
/// The file is the request body's raw bytes with the import options in the query, or, with
/// `Content-Type: application/json`, `{"path": "/abs/file.bin", …options}` on the engine
/// machine's own disk (what the desktop app's drops give). A file that is no valid image is a 422.
#[utoipa::path(
    post, path = "/api/v1/firmware/inspect", tag = "firmware",
    params(ImportOptions),
    request_body(content(
        (Vec<u8> = "application/octet-stream"),
        (ImportPathRequest = "application/json"),
    )),
    responses(
        (status = OK, body = InspectReport, description = "the image facts and the verdict of an import"),
        (status = UNPROCESSABLE_ENTITY, body = ErrorBody, description = "not a valid image (the message names the offset or field)"),
        (status = NOT_FOUND, body = ErrorBody),
    )
)]
async fn inspect_firmware(
    State(engine): State<EngineHandle>,
    ApiQuery(opts): ApiQuery<ImportOptions>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<InspectReport>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if json {
        let req: ImportPathRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"path\": \"/abs/file.bin\", …options}}: {e}")))?;
        return Ok(Json(engine.inspect_firmware_path(&absolute(&req.path)?, req.options).await?));
    }
    if body.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_image", "the request body is empty"));
    }
    Ok(Json(engine.inspect_firmware(body, opts).await?))
}

/// A firmware by id, sha256 (prefix of at least 6 hex digits) or version.
#[utoipa::path(
    get, path = "/api/v1/firmware/{ref}", tag = "firmware",
    params(("ref" = String, Path, description = "id, sha256 prefix or version", example = "2.0.0")),
    responses((status = OK, body = Firmware), (status = NOT_FOUND, body = ErrorBody))
)]
async fn get_firmware(
    State(engine): State<EngineHandle>,
    ApiPath(reference): ApiPath<String>,
) -> ApiResult<Json<Firmware>> {
    Ok(Json(engine.find_firmware(&reference).await?))
}

/// Blocks or unblocks a firmware, makes it public or private, changes its channel or notes.
#[utoipa::path(
    patch, path = "/api/v1/firmware/{ref}", tag = "firmware", request_body = FirmwarePatch,
    params(("ref" = String, Path, description = "id, sha256 prefix or version", example = "2.0.0")),
    responses((status = OK, body = Firmware), (status = NOT_FOUND, body = ErrorBody))
)]
async fn patch_firmware(
    State(engine): State<EngineHandle>,
    ApiPath(reference): ApiPath<String>,
    ApiJson(patch): ApiJson<FirmwarePatch>,
) -> ApiResult<Json<Firmware>> {
    let fw = engine.find_firmware(&reference).await?;
    Ok(Json(engine.patch_firmware(fw.id, patch, ACTOR).await?))
}

/// Deletes a firmware that no rollout uses, and its file.
#[utoipa::path(
    delete, path = "/api/v1/firmware/{ref}", tag = "firmware",
    params(("ref" = String, Path, description = "id, sha256 prefix or version", example = "2.0.0")),
    responses((status = OK, body = Firmware), (status = NOT_FOUND, body = ErrorBody), (status = CONFLICT, body = ErrorBody))
)]
async fn delete_firmware(
    State(engine): State<EngineHandle>,
    ApiPath(reference): ApiPath<String>,
) -> ApiResult<Json<Firmware>> {
    let fw = engine.find_firmware(&reference).await?;
    Ok(Json(engine.delete_firmware(fw.id, ACTOR).await?))
}

/// A download URL on the device server with a per-job token: of the raw image, or with
/// `"gzip": true` of the gzip form (404 when the firmware has none).
#[utoipa::path(
    post, path = "/api/v1/firmware/{ref}/download-link", tag = "firmware", request_body = DownloadLinkRequest,
    params(("ref" = String, Path, description = "id, sha256 prefix or version", example = "2.0.0")),
    responses((status = OK, body = DownloadLink), (status = NOT_FOUND, body = ErrorBody))
)]
async fn download_link(
    State(engine): State<EngineHandle>,
    ApiPath(reference): ApiPath<String>,
    ApiJson(req): ApiJson<DownloadLinkRequest>,
) -> ApiResult<Json<DownloadLink>> {
    let fw = engine.find_firmware(&reference).await?;
    let ttl = req.ttl_secs.map(Duration::from_secs);
    let form = if req.gzip.unwrap_or(false) { Form::Gzip } else { Form::Image };
    Ok(Json(engine.download_link(fw.id, req.job.as_deref(), ttl, form).await?))
}

// ---- devices ----------------------------------------------------------------------------------

/// Every device in the inventory.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", responses((status = OK, body = Vec<Device>)))]
async fn list_devices(State(engine): State<EngineHandle>) -> ApiResult<Json<Vec<Device>>> {
    Ok(Json(engine.list_devices().await?))
}

/// A device added by hand (known MAC, not yet discovered).
#[derive(Debug, Deserialize, ToSchema)]
struct NewDevice {
    /// Any common spelling: 12 hex digits, `:`, `-` or `.` anywhere.
    #[schema(pattern = "^[:.-]*([0-9A-Fa-f][:.-]*){12}$")]
    mac: String,
    /// An IPv4 or IPv6 address.
    #[schema(schema_with = ip_schema)]
    ip: Option<String>,
    name: Option<String>,
    family: Option<Family>,
    model: Option<String>,
    chip: Option<String>,
    version: Option<String>,
}

/// An IPv4 or IPv6 address, or null.
fn ip_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type};
    let address = |format| {
        ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).format(Some(SchemaFormat::KnownFormat(format)))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(address(KnownFormat::Ipv4))
            .item(address(KnownFormat::Ipv6))
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
            .build(),
    )
}

/// Adds a device by hand, or merges what is given into the device with that MAC.
#[utoipa::path(
    post, path = "/api/v1/devices", tag = "devices", request_body = NewDevice,
    responses((status = OK, body = Device), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn add_device(State(engine): State<EngineHandle>, ApiJson(d): ApiJson<NewDevice>) -> ApiResult<Json<Device>> {
    if let Some(ip) = &d.ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(ApiError::bad_request(format!("ip {ip:?} is not an IP address")));
    }
    let sighting = Sighting {
        mac: d.mac,
        ip: d.ip,
        name: d.name,
        family: d.family,
        model: d.model,
        chip: d.chip,
        version: d.version,
        source: "manual".into(),
        ..Sighting::default()
    };
    Ok(Json(engine.record_sighting(sighting).await?))
}

/// Asks an address over HTTP what it is (Shelly `/shelly`, Tasmota `Status 0`) and adds what
/// answers. The probe ran whatever it found: `state` says what that was.
#[utoipa::path(
    post, path = "/api/v1/devices/probe", tag = "devices", request_body = ProbeRequest,
    responses((status = OK, body = ProbeResult), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn probe_device(
    State(engine): State<EngineHandle>,
    ApiJson(r): ApiJson<ProbeRequest>,
) -> ApiResult<Json<ProbeResult>> {
    Ok(Json(engine.probe_address(&r.address, r.family).await?))
}

/// Probes every address of a subnet (at most a /20) at a bounded rate, as `probe` does one, and
/// adds what answers: for networks where multicast is blocked.
#[utoipa::path(
    post, path = "/api/v1/devices/scan", tag = "devices", request_body = ScanRequest,
    responses((status = OK, body = ScanResult), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn scan_devices(
    State(engine): State<EngineHandle>,
    ApiJson(r): ApiJson<ScanRequest>,
) -> ApiResult<Json<ScanResult>> {
    Ok(Json(engine.scan_subnet(&r).await?))
}

/// Vendor device credentials (Tasmota, Shelly, ArduinoOTA, ESPHome), per family and per device:
/// scopes and usernames, never a password.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "devices", responses((status = OK, body = Vec<CredentialInfo>)))]
async fn list_credentials(State(engine): State<EngineHandle>) -> ApiResult<Json<Vec<CredentialInfo>>> {
    Ok(Json(engine.list_credentials()?))
}

/// Sets the credential of a family (`tasmota`, `shelly`, `arduino`,
/// `esphome`) or of one device (its MAC); a device's own wins over its family's.
#[utoipa::path(
    put, path = "/api/v1/credentials/{scope}", tag = "devices", request_body = CredentialRequest,
    params(("scope" = String, Path, description = "a family or a MAC")),
    responses((status = OK, body = CredentialInfo), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn set_credential(
    State(engine): State<EngineHandle>,
    ApiPath(scope): ApiPath<String>,
    ApiJson(r): ApiJson<CredentialRequest>,
) -> ApiResult<Json<CredentialInfo>> {
    Ok(Json(engine.set_credential(&scope, r, ACTOR).await?))
}

/// Removes a credential.
#[utoipa::path(
    delete, path = "/api/v1/credentials/{scope}", tag = "devices",
    params(("scope" = String, Path, description = "a family or a MAC")),
    responses((status = NO_CONTENT), (status = NOT_FOUND, body = ErrorBody))
)]
async fn remove_credential(
    State(engine): State<EngineHandle>,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<StatusCode> {
    engine.remove_credential(&scope, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One device by MAC.
#[utoipa::path(
    get, path = "/api/v1/devices/{mac}", tag = "devices",
    params(("mac" = String, Path, description = "MAC address, any common spelling (12 hex digits; `:`, `-`, `.` anywhere)", pattern = "^[:.-]*([0-9A-Fa-f][:.-]*){12}$")),
    responses((status = OK, body = Device), (status = NOT_FOUND, body = ErrorBody))
)]
async fn get_device(State(engine): State<EngineHandle>, ApiPath(mac): ApiPath<String>) -> ApiResult<Json<Device>> {
    Ok(Json(engine.get_device(&mac).await?))
}

/// Forgets a device: it leaves the inventory (with its labels and channel) and is found anew if it
/// shows up again. Refused (409) while a rollout still works on it.
#[utoipa::path(
    delete, path = "/api/v1/devices/{mac}", tag = "devices",
    params(("mac" = String, Path, description = "MAC address, any common spelling (12 hex digits; `:`, `-`, `.` anywhere)", pattern = "^[:.-]*([0-9A-Fa-f][:.-]*){12}$")),
    responses((status = OK, body = Device, description = "the device as it was"), (status = NOT_FOUND, body = ErrorBody),
              (status = CONFLICT, body = ErrorBody))
)]
async fn forget_device(State(engine): State<EngineHandle>, ApiPath(mac): ApiPath<String>) -> ApiResult<Json<Device>> {
    Ok(Json(engine.forget_device(&mac, ACTOR).await?))
}

/// Approves a device waiting for approval (`approve_new_devices`): from now on it gets offers
/// and its check-ins verify updates.
#[utoipa::path(
    post, path = "/api/v1/devices/{mac}/approve", tag = "devices",
    params(("mac" = String, Path, description = "MAC address or device id")),
    responses((status = OK, body = Device), (status = NOT_FOUND, body = ErrorBody),
              (status = CONFLICT, body = ErrorBody, description = "no credential, or revoked (re-key first)"))
)]
async fn approve_device(State(engine): State<EngineHandle>, ApiPath(mac): ApiPath<String>) -> ApiResult<Json<Device>> {
    Ok(Json(engine.device_credential(&mac, CredentialAction::Approve, ACTOR).await?))
}

/// Revokes a device's credential: every request of the device is refused (401) until it is
/// re-keyed.
#[utoipa::path(
    post, path = "/api/v1/devices/{mac}/revoke", tag = "devices",
    params(("mac" = String, Path, description = "MAC address or device id")),
    responses((status = OK, body = Device), (status = NOT_FOUND, body = ErrorBody),
              (status = CONFLICT, body = ErrorBody, description = "the device holds no credential"))
)]
async fn revoke_device(State(engine): State<EngineHandle>, ApiPath(mac): ApiPath<String>) -> ApiResult<Json<Device>> {
    Ok(Json(engine.device_credential(&mac, CredentialAction::Revoke, ACTOR).await?))
}

/// Re-keys a device: its secret stops working at once, and its next native check-in enrols it
/// again with a new one (handed out once; with `approve_new_devices` it then waits for approval).
#[utoipa::path(
    post, path = "/api/v1/devices/{mac}/rekey", tag = "devices",
    params(("mac" = String, Path, description = "MAC address or device id")),
    responses((status = OK, body = Device), (status = NOT_FOUND, body = ErrorBody),
              (status = CONFLICT, body = ErrorBody, description = "the device holds no credential"))
)]
async fn rekey_device(State(engine): State<EngineHandle>, ApiPath(mac): ApiPath<String>) -> ApiResult<Json<Device>> {
    Ok(Json(engine.device_credential(&mac, CredentialAction::Rekey, ACTOR).await?))
}

/// Sets the firmware channel a device follows itself (`{"channel": null}` clears it: the device
/// then follows its labels' channel, else stable).
#[utoipa::path(
    put, path = "/api/v1/devices/{mac}/channel", tag = "devices", request_body = ChannelRequest,
    params(("mac" = String, Path, description = "MAC address, any common spelling", pattern = "^[:.-]*([0-9A-Fa-f][:.-]*){12}$")),
    responses((status = OK, body = Device), (status = NOT_FOUND, body = ErrorBody), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn set_device_channel(
    State(engine): State<EngineHandle>,
    ApiPath(mac): ApiPath<String>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> ApiResult<Json<Device>> {
    Ok(Json(engine.set_device_channel(&mac, req.channel, ACTOR).await?))
}

/// The labels that carry a firmware channel (devices with the label follow it, unless set
/// themselves; beta wins when labels disagree).
#[utoipa::path(get, path = "/api/v1/channels", tag = "devices", responses((status = OK, body = Vec<LabelChannel>)))]
async fn list_label_channels(State(engine): State<EngineHandle>) -> ApiResult<Json<Vec<LabelChannel>>> {
    Ok(Json(engine.label_channels().await?))
}

/// Sets (or, with `{"channel": null}`, clears) the channel of a label; answers every label channel.
#[utoipa::path(
    put, path = "/api/v1/channels/{label}", tag = "devices", request_body = ChannelRequest,
    params(("label" = String, Path, description = "label: 1-64 characters of A-Z a-z 0-9 . _ : / -", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:/-]+$")),
    responses((status = OK, body = Vec<LabelChannel>), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn set_label_channel(
    State(engine): State<EngineHandle>,
    ApiPath(label): ApiPath<String>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> ApiResult<Json<Vec<LabelChannel>>> {
    Ok(Json(engine.set_label_channel(&label, req.channel, ACTOR).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SuggestQuery {
    /// Target expression the suggestion is for (default `all`).
    target: Option<String>,
}

/// What to roll out: for each model among the targeted devices, the newest firmware on the channel
/// they follow, with how many run an older version and a target expression for exactly those.
#[utoipa::path(
    get, path = "/api/v1/firmware/suggestions", tag = "firmware", params(SuggestQuery),
    responses((status = OK, body = Vec<FirmwareSuggestion>), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn suggest_firmware(
    State(engine): State<EngineHandle>,
    ApiQuery(q): ApiQuery<SuggestQuery>,
) -> ApiResult<Json<Vec<FirmwareSuggestion>>> {
    Ok(Json(engine.suggest_firmware(q.target.as_deref().unwrap_or("all")).await?))
}

/// A device's jobs across all rollouts and its recent events (newest first, at most 200).
#[utoipa::path(
    get, path = "/api/v1/devices/{mac}/history", tag = "devices",
    params(("mac" = String, Path, description = "MAC address, any common spelling (12 hex digits; `:`, `-`, `.` anywhere)", pattern = "^[:.-]*([0-9A-Fa-f][:.-]*){12}$")),
    responses((status = OK, body = DeviceHistory), (status = NOT_FOUND, body = ErrorBody))
)]
async fn device_history(
    State(engine): State<EngineHandle>,
    ApiPath(mac): ApiPath<String>,
) -> ApiResult<Json<DeviceHistory>> {
    Ok(Json(engine.device_history(&mac).await?))
}

/// Adds and removes labels of a device.
#[utoipa::path(
    post, path = "/api/v1/devices/{mac}/labels", tag = "devices", request_body = LabelRequest,
    params(("mac" = String, Path, description = "MAC address, any common spelling", pattern = "^[:.-]*([0-9A-Fa-f][:.-]*){12}$")),
    responses((status = OK, body = Device), (status = NOT_FOUND, body = ErrorBody), (status = BAD_REQUEST, body = ErrorBody))
)]
async fn label_device(
    State(engine): State<EngineHandle>,
    ApiPath(mac): ApiPath<String>,
    ApiJson(req): ApiJson<LabelRequest>,
) -> ApiResult<Json<Device>> {
    Ok(Json(engine.label_device(&mac, req.add, req.remove, ACTOR).await?))
}

// ---- rollouts ---------------------------------------------------------------------------------

/// Every rollout, newest first.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts", responses((status = OK, body = Vec<Rollout>)))]
async fn list_rollouts(State(engine): State<EngineHandle>) -> ApiResult<Json<Vec<Rollout>>> {
    Ok(Json(engine.list_rollouts().await?))
}

/// Plans a rollout (and starts it with `"start": true`). Devices that cannot take the firmware are
/// listed as skipped with the reason.
#[utoipa::path(
    post, path = "/api/v1/rollouts", tag = "rollouts", request_body = CreateRollout,
    responses((status = CREATED, body = RolloutDetail), (status = BAD_REQUEST, body = ErrorBody),
              (status = UNPROCESSABLE_ENTITY, body = ErrorBody), (status = NOT_FOUND, body = ErrorBody))
)]
async fn create_rollout(
    State(engine): State<EngineHandle>,
    ApiJson(req): ApiJson<CreateRollout>,
) -> ApiResult<Response> {
    let detail = engine.create_rollout(req, ACTOR).await?;
    Ok((StatusCode::CREATED, Json(detail)).into_response())
}

/// What creating this rollout would do, without storing anything: the devices it would update
/// (with their wave) and those it would skip (with the reason). Same body as creating one.
#[utoipa::path(
    post, path = "/api/v1/rollouts/preview", tag = "rollouts", request_body = CreateRollout,
    responses((status = OK, body = RolloutPreview), (status = BAD_REQUEST, body = ErrorBody),
              (status = UNPROCESSABLE_ENTITY, body = ErrorBody), (status = NOT_FOUND, body = ErrorBody))
)]
async fn preview_rollout(
    State(engine): State<EngineHandle>,
    ApiJson(req): ApiJson<CreateRollout>,
) -> ApiResult<Json<RolloutPreview>> {
    Ok(Json(engine.preview_rollout(req).await?))
}

/// A rollout with every job (device) and its history.
#[utoipa::path(
    get, path = "/api/v1/rollouts/{id}", tag = "rollouts", params(("id" = i64, Path, description = "rollout id")),
    responses((status = OK, body = RolloutDetail), (status = NOT_FOUND, body = ErrorBody))
)]
async fn get_rollout(State(engine): State<EngineHandle>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<RolloutDetail>> {
    Ok(Json(engine.get_rollout(id).await?))
}

/// `start` (a draft; or a scheduled rollout, now), `pause`, `resume` (failures so far are
/// acknowledged: they no longer count against the failure threshold nor the success gate — the
/// rollout's `on_resume` says what it will do), `cancel` (in-flight devices finish or time out) or
/// `retry-failed` (failed devices are queued again with a fresh retry budget; a paused rollout
/// resumes).
#[utoipa::path(
    post, path = "/api/v1/rollouts/{id}/{action}", tag = "rollouts",
    params(("id" = i64, Path, description = "rollout id"),
           ("action" = String, Path, description = "start | pause | resume | cancel | retry-failed")),
    responses((status = OK, body = Rollout), (status = NOT_FOUND, body = ErrorBody), (status = CONFLICT, body = ErrorBody))
)]
async fn rollout_action(
    State(engine): State<EngineHandle>,
    ApiPath((id, action)): ApiPath<(i64, String)>,
) -> ApiResult<Json<Rollout>> {
    let action = match action.as_str() {
        "start" => RolloutAction::Start,
        "pause" => RolloutAction::Pause,
        "resume" => RolloutAction::Resume,
        "cancel" => RolloutAction::Cancel,
        "retry-failed" => RolloutAction::RetryFailed,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no rollout action {other:?}; use start, pause, resume, cancel or retry-failed"),
            ));
        }
    };
    Ok(Json(engine.rollout_action(id, action, ACTOR).await?))
}

/// Skips one device of a rollout: it is no longer commanded or waited on (a device that is
/// updating may still finish on its own; the rollout stops counting it). For a device that will
/// not come back.
#[utoipa::path(
    post, path = "/api/v1/rollouts/{id}/jobs/{job}/skip", tag = "rollouts",
    params(("id" = i64, Path, description = "rollout id"), ("job" = i64, Path, description = "job id")),
    responses((status = OK, body = Rollout), (status = NOT_FOUND, body = ErrorBody), (status = CONFLICT, body = ErrorBody))
)]
async fn skip_job(
    State(engine): State<EngineHandle>,
    ApiPath((id, job)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Rollout>> {
    Ok(Json(engine.rollout_action(id, RolloutAction::Skip { job }, ACTOR).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// `csv` or `json` (default).
    format: Option<String>,
}

/// The per-device report: versions before and after, states with timestamps, errors.
#[utoipa::path(
    get, path = "/api/v1/rollouts/{id}/report", tag = "rollouts",
    params(("id" = i64, Path, description = "rollout id"), ReportQuery),
    responses(
        (status = OK, description = "JSON, or with `?format=csv` CSV (one row per device)",
         content((RolloutDetail = "application/json"), (String = "text/csv"))),
        (status = BAD_REQUEST, body = ErrorBody, description = "a format other than csv or json"),
        (status = NOT_FOUND, body = ErrorBody),
    )
)]
async fn rollout_report(
    State(engine): State<EngineHandle>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let detail = engine.get_rollout(id).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(detail).into_response()),
        "csv" => {
            let disposition = format!("attachment; filename=\"rollout-{id}.csv\"");
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                crate::rollout::report::csv(&detail),
            )
                .into_response())
        }
        other => Err(ApiError::bad_request(format!("format {other:?}: use csv or json"))),
    }
}

// ---- metrics ----------------------------------------------------------------------------------

/// What the dashboard panels show: versions over time (30 days), how finished rollouts went,
/// failures of the last 30 days by reason.
#[utoipa::path(get, path = "/api/v1/metrics/fleet", tag = "engine", responses((status = OK, body = FleetMetrics)))]
async fn fleet_metrics(State(engine): State<EngineHandle>) -> ApiResult<Json<FleetMetrics>> {
    Ok(Json(engine.fleet_metrics().await?))
}

/// Prometheus text (format 0.0.4): devices by family, version and online state; jobs and
/// rollouts by state; the device server's downloads and bytes. Scrape with the admin token
/// (`authorization: credentials: <token>` in Prometheus).
#[utoipa::path(get, path = "/metrics", tag = "engine", responses((status = OK, body = String, content_type = "text/plain")))]
async fn prometheus_metrics(State(engine): State<EngineHandle>) -> ApiResult<Response> {
    let text = engine.prometheus()?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

// ---- events -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Only events with ids below this (the previous page's `next_before`).
    before: Option<i64>,
    /// Only kinds starting with this, e.g. `firmware.`.
    kind: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. `2026-12-01T00:00:00Z`).
    since: Option<String>,
    /// Page size, 1-1000 (default 100).
    limit: Option<u32>,
}

/// The audit log, newest first, paged.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery), responses((status = OK, body = EventPage)))]
async fn list_events(
    State(engine): State<EngineHandle>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let since_ms = match q.since.as_deref() {
        Some(t) => Some(flotilla_store::clock::parse_rfc3339(t).ok_or_else(|| {
            ApiError::bad_request(format!("since {t:?} is not an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))
        })?),
        None => None,
    };
    let query = crate::handle::EventQuery { before: q.before, kind: q.kind, since_ms, limit: q.limit.unwrap_or(100) };
    Ok(Json(engine.events_page(query).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Replay events after this id first (same as the `Last-Event-ID` header).
    after: Option<i64>,
    /// The admin token, for clients that cannot send headers (EventSource).
    #[allow(dead_code)]
    token: Option<String>,
}

/// Live events as Server-Sent Events (`event: <kind>`, `id: <event id>`, `data: <Event JSON>`).
/// With `Last-Event-ID` or `?after=`, missed events are replayed first. A `lagged` event means
/// the client fell behind and should reload.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(StreamQuery),
    responses((status = OK, content_type = "text/event-stream", description = "event stream")))]
async fn event_stream(
    State(engine): State<EngineHandle>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after);
    // Subscribe before reading the backlog so nothing falls between the two.
    let live = BroadcastStream::new(engine.subscribe());
    let backlog = match after {
        Some(after) => engine.events_since(after, 10_000).await?,
        None => Vec::new(),
    };
    let last_replayed = backlog.last().map(|e| e.id).or(after).unwrap_or(0);
    let replay = futures_util::stream::iter(backlog.into_iter().map(|e| Ok(to_sse(&e))));
    let live = live.filter_map(move |item| async move {
        match item {
            // Live-only events (id 0, e.g. `rollout.progress`) are never replayed nor skipped.
            Ok(e) if e.id == 0 || e.id > last_replayed => Some(Ok(to_sse(&e))),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}"))))
            }
        }
    });
    let stop = engine.clone();
    let stream = replay.chain(live).take_until(async move { stop.stopped().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(e: &flotilla_proto::Event) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    let sse = SseEvent::default().event(e.kind.clone()).data(data);
    // No `id:` for a live-only event, so a reconnecting client's Last-Event-ID stays a log id.
    if e.id == 0 { sse } else { sse.id(e.id.to_string()) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    /// `docs/openapi.json` is the committed description; it must match the code. Regenerate with
    /// `FLOTILLA_BLESS=1 cargo test -p flotilla-core openapi`.
    #[test]
    fn committed_openapi_description_is_current() {
        let generated = super::openapi().to_pretty_json().unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        if std::env::var_os("FLOTILLA_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed != generated {
            panic!("docs/openapi.json is stale: run `FLOTILLA_BLESS=1 cargo test -p flotilla-core openapi`");
        }
    }

    #[test]
    fn every_documented_route_but_health_requires_the_token() {
        let api = super::openapi();
        for (path, item) in &api.paths.paths {
            let ops = [&item.get, &item.post, &item.put, &item.patch, &item.delete];
            for op in ops.into_iter().flatten() {
                let open = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| serde_json::to_value(r).unwrap() == serde_json::json!({})));
                assert_eq!(
                    open,
                    super::OPEN_PATHS.contains(&path.as_str()),
                    "{path}: documented security must match the middleware"
                );
            }
        }
    }
}
