//! A minimal fake of the engine's device side, honest about the protocol: check-in, report,
//! site key, and firmware downloads with single `Range: bytes=N-` support. It signs manifests
//! with flotilla-core's `SiteKey` exactly as the engine does, and records everything it sees in
//! one ordered log so tests can ask "did X happen after Y".

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_core::firmware::signing::{SiteKey, canonical};
use flotilla_proto::PublicKey;
use flotilla_proto::firmware::{Chip, Manifest};
use flotilla_proto::native::{CheckRequest, CheckResponse, Offer, ReportAck, ReportRequest};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// One thing the fake engine saw, in order.
#[derive(Debug, Clone)]
pub enum Seen {
    Checkin { device: String, version: String, ip: IpAddr },
    Report(ReportRequest),
    Download { status: u16, range: Option<String> },
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Instant,
    pub seen: Seen,
}

#[derive(Default)]
struct Inner {
    firmware: HashMap<String, Arc<Vec<u8>>>,
    offers: HashMap<String, Offer>,
    log: Vec<Entry>,
}

struct Shared {
    key: SiteKey,
    inner: Mutex<Inner>,
}

/// How to spoil an offer's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Good,
    /// Signed by a key the devices do not trust.
    ForeignKey,
}

pub struct FakeEngine {
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEngine {
    pub async fn start() -> FakeEngine {
        let shared = Arc::new(Shared { key: SiteKey::from_seed(&[42; 32]), inner: Mutex::default() });
        let app = Router::new()
            .route("/api/v1/check", post(check))
            .route("/api/v1/report", post(report))
            .route("/api/v1/site-key", get(site_key))
            .route("/fw/{file}", get(firmware))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        FakeEngine { url, shared, task }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn public_key(&self) -> PublicKey {
        self.shared.key.public()
    }

    /// Stores firmware bytes; returns their SHA-256.
    pub fn add_firmware(&self, bytes: Vec<u8>) -> String {
        let sha = hex::encode(Sha256::digest(&bytes));
        self.inner().firmware.insert(sha.clone(), Arc::new(bytes));
        sha
    }

    /// An offer for stored firmware, claiming `version` (which need not be the image's).
    pub fn make_offer(&self, job: &str, sha: &str, version: &str, chip: Chip, signing: Signing) -> Offer {
        let size = self.inner().firmware[sha].len() as u64;
        let manifest = Manifest {
            version: version.into(),
            size,
            sha256: sha.into(),
            chip,
            model: "flotilla-sim".into(),
            min_version: None,
            secure_version: None,
        };
        let key = match signing {
            Signing::Good => &self.shared.key,
            Signing::ForeignKey => &SiteKey::from_seed(&[7; 32]),
        };
        let signed = key.sign(manifest.clone()).unwrap();
        Offer {
            update_available: true,
            job: job.into(),
            url: format!("{}/fw/{sha}.bin?t=token-{job}", self.url),
            version: version.into(),
            size,
            sha256: sha.into(),
            chip,
            model: manifest.model.clone(),
            min_version: None,
            secure_version: None,
            manifest_json: String::from_utf8(canonical(&manifest).unwrap()).unwrap(),
            signature: signed.signature,
            key_id: signed.key_id,
        }
    }

    /// Offers to a pull device on every check-in from now on (a naive engine: re-offers even
    /// after the device finished, which the device must ignore).
    pub fn offer_to(&self, device: &str, offer: Offer) {
        self.inner().offers.insert(device.into(), offer);
    }

    pub fn log(&self) -> Vec<Entry> {
        self.inner().log.clone()
    }

    pub fn reports(&self, device: &str) -> Vec<(usize, ReportRequest)> {
        self.log()
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| match e.seen {
                Seen::Report(r) if r.device_id == device => Some((i, r)),
                _ => None,
            })
            .collect()
    }

    /// `(log position, version, source ip)` of every check-in of `device`.
    pub fn checkins(&self, device: &str) -> Vec<(usize, String, IpAddr)> {
        self.log()
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| match e.seen {
                Seen::Checkin { device: d, version, ip } if d == device => Some((i, version, ip)),
                _ => None,
            })
            .collect()
    }

    /// The version of each device's latest check-in (cheap enough to poll for big fleets).
    pub fn latest_versions(&self) -> HashMap<String, String> {
        let inner = self.inner();
        let mut latest = HashMap::new();
        for e in &inner.log {
            if let Seen::Checkin { device, version, .. } = &e.seen {
                latest.insert(device.clone(), version.clone());
            }
        }
        latest
    }

    /// `(status, range header)` of every download request.
    pub fn downloads(&self) -> Vec<(u16, Option<String>)> {
        self.log()
            .into_iter()
            .filter_map(|e| match e.seen {
                Seen::Download { status, range } => Some((status, range)),
                _ => None,
            })
            .collect()
    }
}

fn record(shared: &Shared, seen: Seen) {
    shared.inner.lock().unwrap().log.push(Entry { at: Instant::now(), seen });
}

async fn check(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<CheckRequest>,
) -> Json<CheckResponse> {
    record(&shared, Seen::Checkin { device: req.device_id.clone(), version: req.version.clone(), ip: peer.ip() });
    let offer = shared.inner.lock().unwrap().offers.get(&req.device_id).cloned();
    Json(match offer {
        Some(o) => CheckResponse::Offer(Box::new(o)),
        None => CheckResponse::none(),
    })
}

async fn report(State(shared): State<Arc<Shared>>, Json(req): Json<ReportRequest>) -> Json<ReportAck> {
    record(&shared, Seen::Report(req));
    Json(ReportAck { ok: true })
}

async fn site_key(State(shared): State<Arc<Shared>>) -> Json<PublicKey> {
    Json(shared.key.public())
}

async fn firmware(State(shared): State<Arc<Shared>>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let sha = file.trim_end_matches(".bin");
    let bytes = shared.inner.lock().unwrap().firmware.get(sha).cloned();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(bytes) = bytes else {
        record(&shared, Seen::Download { status: 404, range });
        return (StatusCode::NOT_FOUND, "no such firmware").into_response();
    };
    let len = bytes.len();
    let start = match range.as_deref() {
        None => None,
        Some(r) => match r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse().ok()) {
            Some(n) if n < len => Some(n),
            _ => {
                record(&shared, Seen::Download { status: 416, range });
                return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{len}"))])
                    .into_response();
            }
        },
    };
    let (status, from) = match start {
        Some(n) => (StatusCode::PARTIAL_CONTENT, n),
        None => (StatusCode::OK, 0),
    };
    record(&shared, Seen::Download { status: status.as_u16(), range });
    let body = bytes[from..].to_vec();
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if start.is_some() {
        response = response.header(header::CONTENT_RANGE, format!("bytes {from}-{}/{len}", len - 1));
    }
    response.body(Body::from(body)).unwrap()
}
