//! ESPHome's `web_server` component as a probe meets it (`components/web_server/web_server.cpp`,
//! `web_server_v1.cpp` and `web_server_idf/web_server_idf.cpp` of esphome/esphome): the page at
//! `/` and the event stream at `/events`, whose first event greets each client with the node's
//! configuration. Only what identifies a node is played; entities, OTA upload and the log are not.
//!
//! The page is the version-1 page (plain HTML; versions 2 and 3 serve a gzip-compressed app,
//! which says no more about the node). The stream is shaped as the firmware writes it: the
//! ESP-IDF server's opening CRLF, then `retry:`/`id:`/`event:`/`data:` lines ended by CRLF, and
//! an empty `ping` every 10 s while the client stays.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The web server of an ESPHome node whose name (or friendly name) is `title`.
pub(crate) fn router(title: &str) -> Router {
    let page = index(title);
    let greeting =
        serde_json::json!({ "title": title, "comment": "", "ota": true, "log": true, "lang": "en" }).to_string();
    Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                async move { Html(page) }
            }),
        )
        .route(
            "/events",
            get(move || {
                let greeting = greeting.clone();
                async move { events(greeting) }
            }),
        )
}

/// `web_server_v1.cpp`'s page, without entities.
fn index(title: &str) -> String {
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=UTF-8><meta name=viewport \
         content=\"width=device-width, initial-scale=1,user-scalable=no\"><title>{title}</title></head><body>\
         <article class=\"markdown-body\"><h1>{title}</h1><h2>States</h2><table id=\"states\"><thead><tr>\
         <th>Name<th>State<th>Actions<tbody></tbody></table><p>See <a href=\"https://esphome.io/web-api/index.html\">\
         ESPHome Web API</a> for REST API documentation.</p></article></body></html>"
    )
}

/// One event as `AsyncEventSourceResponse::send` writes it.
fn event(data: &str, name: &str, id: u128) -> Bytes {
    let mut ev = format!("retry: 30000\r\nid: {id}\r\nevent: {name}\r\n");
    if !data.is_empty() {
        ev.push_str(&format!("data: {data}\r\n"));
    }
    ev.push_str("\r\n");
    Bytes::from(ev)
}

fn events(greeting: String) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        // `millis()` since the node booted stands in as the id.
        let boot = Instant::now();
        let millis = || boot.elapsed().as_millis().max(1);
        if tx.send(Ok(Bytes::from_static(b"\r\n"))).await.is_err()
            || tx.send(Ok(event(&greeting, "ping", millis()))).await.is_err()
        {
            return;
        }
        // Until the client goes away (the send fails).
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if tx.send(Ok(event("", "ping", millis()))).await.is_err() {
                return;
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONNECTION, "keep-alive"),
        ],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn events_are_written_as_the_firmware_writes_them() {
        assert_eq!(
            &event(r#"{"title":"x"}"#, "ping", 42)[..],
            b"retry: 30000\r\nid: 42\r\nevent: ping\r\ndata: {\"title\":\"x\"}\r\n\r\n"
        );
        assert_eq!(&event("", "ping", 7)[..], b"retry: 30000\r\nid: 7\r\nevent: ping\r\n\r\n");
        assert!(index("a<b").contains("<title>a&lt;b</title>"));
    }
}
