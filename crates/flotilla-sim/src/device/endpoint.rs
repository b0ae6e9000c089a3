//! The device's own HTTP endpoint on its loopback address: `GET /` answers a JSON
//! [`DeviceSnapshot`](super::DeviceSnapshot). It is up only while the device is running: a
//! rebooting or vanished device refuses connections like a powered-off one. Vendor
//! personalities (Shelly, Tasmota…) will add their routes here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Device, DeviceSnapshot};

/// The running endpoint; dropping it closes the listening socket.
#[derive(Debug)]
pub(crate) struct Endpoint(JoinHandle<()>);

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn router(device: Arc<Device>) -> Router {
    Router::new().route("/", get(snapshot)).with_state(device)
}

async fn snapshot(State(device): State<Arc<Device>>) -> Json<DeviceSnapshot> {
    Json(device.snapshot())
}

/// Opens the endpoint on the device's address: on the port it had before a reboot, else on
/// `port` (0: any). A device whose endpoint cannot bind goes on without one (logged).
pub(crate) async fn open(device: &Arc<Device>, port: u16) -> Option<Endpoint> {
    let ip = IpAddr::V4(device.ident.ip);
    let previous = device.port();
    let wanted = if previous != 0 { previous } else { port };
    let listener = match TcpListener::bind(SocketAddr::new(ip, wanted)).await {
        Ok(l) => l,
        Err(first) if wanted != 0 && previous != 0 => match TcpListener::bind(SocketAddr::new(ip, 0)).await {
            Ok(l) => l,
            Err(e) => return unbound(device, &format!("{first}; then {e}")),
        },
        Err(e) => return unbound(device, &e.to_string()),
    };
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    device.set_port(bound);
    let app = router(Arc::clone(device));
    let id = device.ident.id.clone();
    Some(Endpoint(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(device = %id, "endpoint stopped: {e}");
        }
    })))
}

fn unbound(device: &Device, why: &str) -> Option<Endpoint> {
    tracing::warn!(device = %device.ident.id, ip = %device.ident.ip, "endpoint cannot listen: {why}");
    device.set_port(0);
    None
}
