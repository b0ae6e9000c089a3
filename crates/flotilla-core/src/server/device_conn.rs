//! The device server's own accept loop, so that no LAN client can starve the engine.
//!
//! `axum::serve` has no timeouts and no connection cap: 1,100 half-sent requests used every file
//! descriptor of the process, and the loopback admin API stopped answering with them. Here each
//! connection is served by hyper's HTTP/1 connection with axum's router as the service (the native
//! check-in and report, which devices call all day, it serves itself with the router's limits:
//! [`device_api::serve_native`]), and:
//!
//! - **header timeout**: a client has [`DeviceServerLimits::header_timeout`] to send a request's
//!   headers, and a kept-alive connection waits that long for its next request;
//! - **request timeout**: a request is answered within
//!   [`DeviceServerLimits::request_timeout`] once its headers are in, body included, else 408;
//! - **idle timeout**: a connection on which no byte moved for
//!   [`DeviceServerLimits::idle_timeout`] is closed (a client that stopped reading a download);
//! - **body cap**: a request body above [`DeviceServerLimits::max_body`] is answered 413, a
//!   request head above [`MAX_READ_BUFFER`] or with more than [`MAX_HEADERS`] fields 431;
//! - **connection cap**: at most [`DeviceServerLimits::max_connections`] connections at once;
//!   beyond, new ones wait in the listen queue (they cost no descriptor of ours) until one
//!   closes. By default the cap is the open-files limit minus a reserve
//!   ([`default_max_connections`]), so the admin API, the broker, the database and firmware
//!   files always have descriptors; [`raise_open_files`] first raises the soft limit to the hard
//!   one.
//!
//! - **HTTPS**: the same loop serves the HTTPS listener ([`serve_tls`], the site certificate of
//!   [`crate::tls`]); a TLS handshake must end within the header timeout, and both listeners
//!   share one connection cap.
//!
//! Every limit hit is logged, rate-limited ([`crate::log_limit`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_proto::{ErrorBody, ErrorDetail};
use futures_util::future::Either;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use super::GRACE;
use super::corked::Corked;
use super::device_api;
use crate::config::DeviceServerLimits;
use crate::handle::EngineHandle;
use crate::log_limit::{WarnLimit, warn_limited};

/// Descriptors kept for everything but device connections, at least (the admin API and the web
/// UI, the broker, the database and its WAL, firmware files, mDNS, the runtime itself).
pub const MIN_RESERVE: u64 = 64;
/// Largest read buffer of a connection: a request head must fit (ESP clients send a few hundred
/// bytes); a larger one is answered 431.
pub const MAX_READ_BUFFER: usize = 64 * 1024;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 64;
/// Most device connections by default, however high the open-files limit.
pub const MAX_DEFAULT_CONNECTIONS: u64 = 65_536;

/// Raises the soft open-files limit to the hard one; returns the soft limit now in force
/// (`None` where there is none to know).
pub fn raise_open_files() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let now = getrlimit(Resource::Nofile);
        if now.current != now.maximum {
            let raised = Rlimit { current: now.maximum, maximum: now.maximum };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => tracing::debug!(from = ?now.current, to = ?now.maximum, "open-files limit raised"),
                // macOS refuses an unlimited soft limit: keep what there is.
                Err(e) => tracing::debug!(error = %e, "open-files limit not raised"),
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    None
}

/// The default connection cap under an open-files limit of `nofile`: the limit minus a quarter
/// of it (at least [`MIN_RESERVE`]) for everything else, at least 16, at most
/// [`MAX_DEFAULT_CONNECTIONS`]. With the usual 1024: 768.
pub fn default_max_connections(nofile: Option<u64>) -> usize {
    let n = nofile.unwrap_or(MAX_DEFAULT_CONNECTIONS);
    let reserve = (n / 4).max(MIN_RESERVE);
    let cap = n.saturating_sub(reserve).clamp(16, MAX_DEFAULT_CONNECTIONS);
    usize::try_from(cap).unwrap_or(16)
}

/// A 408 in the device API's JSON error shape; the connection is closed after it.
fn timed_out(after: Duration) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "request_timeout".into(),
            message: format!("the request was not complete within {} s", after.as_secs_f64()),
        },
    };
    let mut resp = (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Warnings of the device server: the cap reached, accept errors, timeouts.
static WARNINGS: std::sync::LazyLock<WarnLimit> = std::sync::LazyLock::new(WarnLimit::new);
static TIMEOUTS: std::sync::LazyLock<WarnLimit> = std::sync::LazyLock::new(WarnLimit::new);
static TLS_FAILURES: std::sync::LazyLock<WarnLimit> = std::sync::LazyLock::new(WarnLimit::new);

/// The device router with the body cap (the request timeout is applied per connection, in
/// [`http`], where it costs no allocation).
pub(crate) fn with_limits(router: Router, limits: &DeviceServerLimits) -> Router {
    router.layer(DefaultBodyLimit::max(limits.max_body))
}

/// [`serve_with`] over TLS: each accepted connection's handshake must end within the header timeout,
/// then it is served like a plain one. `permits` is the connection cap, shared with the plain
/// listener (one cap for the device server).
pub(crate) async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: App,
    limits: DeviceServerLimits,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
) {
    serve_with(listener, Some(acceptor), app, limits, permits, stop).await;
}

/// What a device server connection serves: the device server's router, and the engine whose
/// native check-ins and reports it serves itself ([`device_api::serve_native`]).
#[derive(Clone)]
pub(crate) struct App {
    pub router: Router,
    pub engine: EngineHandle,
}

/// Serves `app` on `listener` with `limits` and the connection cap `permits` until `stop`, then
/// drains for at most [`GRACE`]; plain HTTP when `tls` is `None`.
pub(crate) async fn serve_with(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: App,
    limits: DeviceServerLimits,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let app = App { router: with_limits(app.router, &limits), engine: app.engine };
    let max_connections = permits.available_permits();
    let connections = TaskTracker::new();
    let limits = Arc::new(limits);
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                warn_limited!(
                    limit = WARNINGS,
                    max = max_connections,
                    "device server connection limit reached: new connections wait until one closes"
                );
                tokio::select! {
                    () = stop.cancelled() => break,
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(
                    stream,
                    peer,
                    app.clone(),
                    Arc::clone(&limits),
                    stop.clone(),
                    permit,
                    tls.clone(),
                ));
            }
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                warn_limited!(limit = WARNINGS, error = %e, "device server cannot accept a connection");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(GRACE + Duration::from_secs(1), connections.wait()).await.is_err() {
        tracing::warn!(server = "device", "connections still open after the grace period; closing them");
    }
}

/// When bytes last moved on a connection, each way: milliseconds since `start` (0: never).
#[derive(Debug)]
struct Activity {
    start: tokio::time::Instant,
    read_ms: AtomicU64,
    written_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: tokio::time::Instant::now(), read_ms: AtomicU64::new(0), written_ms: AtomicU64::new(0) }
    }
    fn now_ms(&self) -> u64 {
        // At least 1: 0 means "never".
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }
    fn read(&self) {
        self.read_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn written(&self) {
        self.written_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    /// When a byte last moved either way (the connection's start if none did).
    fn last(&self) -> tokio::time::Instant {
        let ms = self.read_ms.load(Ordering::Relaxed).max(self.written_ms.load(Ordering::Relaxed));
        self.start + Duration::from_millis(ms)
    }
    /// Was an answer sent and nothing read since (a kept-alive connection waiting, not a client
    /// stuck half-way through its headers)?
    fn idle_after_answer(&self) -> bool {
        let written = self.written_ms.load(Ordering::Relaxed);
        written > 0 && self.read_ms.load(Ordering::Relaxed) <= written
    }
}

/// A TCP stream that records when a byte last moved (its small writes [`Corked`]).
struct Tracked {
    stream: Corked,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.written();
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.written();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, times out or the engine stops; holds its `_permit`.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: App,
    limits: Arc<DeviceServerLimits>,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let activity = Arc::new(Activity::new());
    let tracked = Tracked { stream: Corked::new(stream), activity: Arc::clone(&activity) };
    let Some(acceptor) = tls else {
        return http(TokioIo::new(tracked), activity, peer, app, limits, stop).await;
    };
    // The handshake counts as the first request's head: it must end within the header timeout.
    let handshake = tokio::select! {
        () = stop.cancelled() => return,
        r = tokio::time::timeout(limits.header_timeout, acceptor.accept(tracked)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => http(TokioIo::new(stream), activity, peer, app, limits, stop).await,
        Ok(Err(e)) => {
            warn_limited!(limit = TLS_FAILURES, %peer, error = %e, "device TLS handshake failed");
        }
        Err(_) => {
            warn_limited!(
                limit = TIMEOUTS,
                %peer,
                after_s = limits.header_timeout.as_secs_f64(),
                "device connection closed: TLS handshake not complete in time"
            );
        }
    }
}

/// Serves HTTP/1 on one connection (plain or TLS) until it ends, times out or the engine stops.
async fn http<I>(
    io: I,
    activity: Arc<Activity>,
    peer: SocketAddr,
    app: App,
    limits: Arc<DeviceServerLimits>,
    stop: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (after, max_body) = (limits.request_timeout, limits.max_body);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        // The native check-ins and reports are served here; everything else by the router.
        let native = device_api::Native::of(req.method(), req.uri().path());
        let serve = match native {
            Some(route) => Either::Left((route, app.engine.clone())),
            None => {
                req.extensions_mut().insert(ConnectInfo(peer));
                Either::Right(app.router.clone())
            }
        };
        // A request (its body included) is answered within the request timeout, else 408.
        async move {
            let answer = async move {
                match serve {
                    Either::Left((route, engine)) => {
                        Ok(device_api::serve_native(route, &engine, peer, req, max_body).await)
                    }
                    Either::Right(mut router) => router.call(req).await,
                }
            };
            match tokio::time::timeout(after, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    warn_limited!(limit = TIMEOUTS, after_s = after.as_secs_f64(), "device request timed out (408)");
                    Ok(timed_out(after))
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // A request head fits in this (hyper's default is about 400 KiB a connection).
        .max_buf_size(MAX_READ_BUFFER)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        let idle_at = activity.last() + limits.idle_timeout;
        let grace_at = grace.unwrap_or(idle_at);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    if e.is_timeout() && activity.idle_after_answer() {
                        tracing::debug!(%peer, "kept-alive device connection closed: no next request in time");
                    } else if e.is_timeout() {
                        warn_limited!(
                            limit = TIMEOUTS,
                            %peer,
                            after_s = limits.header_timeout.as_secs_f64(),
                            "device connection closed: no complete request headers in time"
                        );
                    } else {
                        tracing::debug!(%peer, error = %e, "device connection ended with an error");
                    }
                }
                break;
            }
            () = stop.cancelled(), if grace.is_none() => {
                conn.as_mut().graceful_shutdown();
                grace = Some(tokio::time::Instant::now() + GRACE);
            }
            () = tokio::time::sleep_until(idle_at.min(grace_at)) => {
                if grace.is_some_and(|g| tokio::time::Instant::now() >= g) {
                    break;
                }
                if activity.last() + limits.idle_timeout <= tokio::time::Instant::now() {
                    warn_limited!(
                        limit = TIMEOUTS,
                        %peer,
                        after_s = limits.idle_timeout.as_secs_f64(),
                        "device connection closed: idle"
                    );
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve() {
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(256)), 192);
        assert_eq!(default_max_connections(Some(100)), 36);
        assert_eq!(default_max_connections(Some(10)), 16);
        assert_eq!(default_max_connections(Some(1 << 20)), 65_536);
        assert_eq!(default_max_connections(None), 49_152);
    }
}
