//! A Shelly Gen2+ device's WebSocket RPC channel, `ws://<ip>/rpc` (`shared/reference/protocols.md`
//! §4.2; Shelly's "RPC channels" documentation; aioshelly's `rpc_device/wsrpc.py` is the client
//! this is checked against). Each text frame is one request frame, answered by one response frame
//! through the same dispatcher as `POST /rpc`. Once a request has carried `src`, the channel also
//! receives the device's `NotifyStatus` frames addressed to that `src`, as firmware sends them.
//!
//! Bounded as a small device is: frames of at most [`MAX_FRAME`] bytes, [`MAX_SOCKETS`] channels
//! at once (more are refused with 503), and a channel with no frame, ping included, for
//! [`IDLE`] is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::broadcast;

use super::vendor::{Web, parse_error, shelly2_frame};

/// The largest frame (and message) a channel accepts.
pub(crate) const MAX_FRAME: usize = 16 * 1024;
/// Channels served at once per device.
pub(crate) const MAX_SOCKETS: usize = 4;
/// A channel silent this long is closed (aioshelly pings every 55 s).
pub(crate) const IDLE: Duration = Duration::from_secs(120);

/// `GET /rpc` with `Upgrade: websocket`.
pub(super) async fn upgrade(State(web): State<Arc<Web>>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = Arc::clone(&web.sockets).try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket channels").into_response();
    };
    ws.max_frame_size(MAX_FRAME).max_message_size(MAX_FRAME).on_upgrade(move |socket| async move {
        channel(&web, socket).await;
        drop(permit);
    })
}

/// Serves one channel until the client closes it, it goes silent, or a send fails.
async fn channel(web: &Web, mut socket: WebSocket) {
    // Notifications for this channel, once a request has said who is listening (`src`).
    let mut listener: Option<(Value, broadcast::Receiver<Value>)> = None;
    loop {
        let notification = async {
            match listener.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = tokio::time::timeout(IDLE, socket.recv()) => {
                let Ok(Some(Ok(message))) = incoming else { return };
                let reply = match message {
                    Message::Text(text) => Some(answer(web, text.as_str(), &mut listener)),
                    Message::Binary(bytes) => Some(match std::str::from_utf8(&bytes) {
                        Ok(text) => answer(web, text, &mut listener),
                        Err(_) => parse_error(),
                    }),
                    Message::Close(_) => return,
                    // Pings are answered by the WebSocket layer; they only keep the channel alive.
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && socket.send(Message::Text(reply.to_string().into())).await.is_err()
                {
                    return;
                }
            }
            note = notification => match note {
                Ok(mut frame) => {
                    if let Some((dst, _)) = &listener {
                        frame["dst"] = dst.clone();
                    }
                    if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                        return;
                    }
                }
                // A slow reader misses notifications, as on a device; it can ask for the status.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The answer to one text frame; a request carrying `src` subscribes the channel to notifications.
fn answer(web: &Web, text: &str, listener: &mut Option<(Value, broadcast::Receiver<Value>)>) -> Value {
    let Ok(frame) = serde_json::from_str::<Value>(text) else { return parse_error() };
    if let Some(src) = frame.get("src").filter(|s| s.as_str().is_some_and(|s| !s.is_empty())) {
        match listener {
            Some((dst, _)) => *dst = src.clone(),
            None => *listener = Some((src.clone(), web.notify.subscribe())),
        }
    }
    shelly2_frame(web, &frame)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::device::Device;
    use crate::device::vendor::router;
    use crate::failures::Failures;
    use crate::identity::{DeviceKind, Identity};

    fn shelly2() -> Arc<Device> {
        Arc::new(Device::new(
            Identity::derive(3, "sim", 30, DeviceKind::Shelly2, 0, 0).unwrap(),
            "1.0.0".into(),
            Failures::default(),
        ))
    }

    #[tokio::test]
    async fn frames_are_answered_and_a_src_subscribes_the_channel_to_notifications() {
        let web = Web::new(shelly2(), None);
        let mut listener = None;
        let garbage = answer(&web, "{not json", &mut listener);
        assert_eq!(garbage["error"]["code"], -32700);
        assert!(listener.is_none(), "no src, no notifications");

        let info = answer(&web, r#"{"id":1,"src":"ha-1","method":"Shelly.GetDeviceInfo"}"#, &mut listener);
        assert_eq!((info["id"].clone(), info["dst"].clone()), (json!(1), json!("ha-1")));
        assert_eq!(info["result"]["gen"], 2);
        let (dst, rx) = listener.as_mut().unwrap();
        assert_eq!(*dst, json!("ha-1"));

        let set = answer(&web, r#"{"id":2,"src":"ha-1","method":"Switch.Set","params":{"id":0,"on":true}}"#, &mut None);
        assert_eq!(set["result"], json!({ "was_on": false }));
        let note = rx.try_recv().unwrap();
        assert_eq!(
            (note["method"].clone(), note["params"]["switch:0"]["output"].clone()),
            (json!("NotifyStatus"), json!(true))
        );
        let status = answer(&web, r#"{"id":3,"method":"Shelly.GetStatus"}"#, &mut None);
        assert_eq!(status["result"]["switch:0"]["output"], true);

        let bad = answer(&web, r#"{"id":4,"src":"x","method":"Switch.Set","params":{"id":1,"on":true}}"#, &mut None);
        assert_eq!(bad["error"]["code"], -105);
        let unknown = answer(&web, r#"{"id":5,"src":"x","method":"Nope.Nope"}"#, &mut None);
        assert_eq!(unknown["error"], json!({ "code": 404, "message": "No handler for Nope.Nope" }));
    }

    /// Opens a WebSocket handshake on a real socket and returns the status line's code.
    async fn handshake(addr: std::net::SocketAddr) -> (TcpStream, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /rpc HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        (s, String::from_utf8_lossy(&buf[9..12]).into_owned())
    }

    #[tokio::test]
    async fn a_device_serves_a_bounded_number_of_channels_and_frees_a_closed_ones_slot() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router(shelly2(), None)).await });
        let mut open = Vec::new();
        for _ in 0..MAX_SOCKETS {
            let (s, code) = handshake(addr).await;
            assert_eq!(code, "101");
            open.push(s);
        }
        let (_, code) = handshake(addr).await;
        assert_eq!(code, "503", "one channel more than a device serves is refused");
        drop(open.pop());
        // The server notices the close and frees the slot; within a bounded time, a new channel opens.
        let reopened = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if handshake(addr).await.1 == "101" {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(reopened.is_ok(), "the closed channel's slot was never freed");
        server.abort();
    }
}
