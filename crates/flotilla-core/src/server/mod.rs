//! The engine's two HTTP servers.
//!
//! - [`device`]: the LAN-facing server devices talk to (firmware downloads, health, metrics). It
//!   must never expose an admin operation.
//!   [`device_conn`] serves it with timeouts and a connection cap.
//! - [`admin`]: the loopback admin API (bearer token) used by the UI, the CLI and automation, and
//!   the web UI itself (`ui`) on every path outside `/api/`.
//!
//! Both are plain `fn router(state) -> Router` so tests drive them with `oneshot` or on a port-0
//! listener; [`serve`] runs one until the engine's cancellation token fires.

pub mod admin;
pub(crate) mod corked;
pub mod device;
pub(crate) mod device_api;
pub mod device_conn;
pub(crate) mod ui;

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests get to finish once shutdown starts.
pub const GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stop` is cancelled, then drains for at most [`GRACE`].
pub async fn serve(name: &'static str, listener: TcpListener, router: Router, stop: CancellationToken) {
    let drained = stop.clone();
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move { drained.cancelled().await });
    tokio::select! {
        res = server => {
            if let Err(e) = res {
                tracing::error!(server = name, error = %e, "server stopped with an error");
            }
        }
        () = async { stop.cancelled().await; tokio::time::sleep(GRACE).await } => {
            tracing::warn!(server = name, "connections still open after the grace period; closing them");
        }
    }
}
