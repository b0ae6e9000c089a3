//! One keep-alive HTTP/1.1 connection to the device server: hyper's client connection without a
//! pool, so a worker's requests go one after another on the same socket, as a device's would.
//!
//! Answers are drained and dropped, never parsed: the status is all the load generator counts,
//! and parsing would spend CPU the engine under test needs.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Where requests go: the socket address, the `Host` header and the path of the check-in.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub path: Uri,
}

/// An open connection. Dropping it closes the socket.
#[derive(Debug)]
pub(crate) struct Conn {
    send: SendRequest<Full<Bytes>>,
    /// Drives the socket (hyper's connection future).
    io: JoinHandle<()>,
}

impl Conn {
    /// Connects (with `TCP_NODELAY`, as small request/answer exchanges need).
    pub async fn open(target: &Target) -> io::Result<Conn> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let (send, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(io::Error::other)?;
        let io = tokio::spawn(async move {
            // Ends when the server closes or the `SendRequest` is dropped; either way the next
            // request on this connection fails and the worker reconnects.
            let _ = connection.await;
        });
        Ok(Conn { send, io })
    }

    /// `POST`s a JSON body (with the device's `Authorization`, once it enrolled); returns the
    /// status and the answer once it is all read.
    pub async fn post_json(
        &mut self,
        target: &Target,
        body: Bytes,
        auth: Option<&HeaderValue>,
    ) -> io::Result<(u16, Bytes)> {
        self.send.ready().await.map_err(io::Error::other)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.path.clone())
            .header(HOST, target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(auth) = auth {
            request = request.header(hyper::header::AUTHORIZATION, auth.clone());
        }
        let request = request.body(Full::new(body)).map_err(io::Error::other)?;
        let answer = self.send.send_request(request).await.map_err(io::Error::other)?;
        let status = answer.status().as_u16();
        let bytes = answer.into_body().collect().await.map_err(io::Error::other)?.to_bytes();
        Ok((status, bytes))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.io.abort();
    }
}
