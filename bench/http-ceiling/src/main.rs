//! `http-ceiling hyper|raw`: answers every HTTP/1.1 request on 127.0.0.1 (a port the system
//! picks, printed as a URL on the first line) with the same 42-byte JSON, on a tokio runtime with
//! one worker as the engine's. `hyper` serves it through hyper configured as the device server
//! (header read timeout, keep-alive, buffer and header limits); `raw` through a bare loop on
//! `httparse`, with no timers and nothing else. The difference in CPU per request, under the same
//! load, is what the engine could save on HTTP by leaving hyper. A measuring tool, not a server:
//! a request it cannot parse (or one with a body larger than 64 KiB) closes its connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANSWER: &[u8] = br#"{"action":"none","check_in_interval_s":60}"#;
const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 32;

/// One request's head length and body length, or `None` when more bytes are needed.
fn head(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let mut body = 0;
            for h in req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
                body = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).ok_or(())?;
            }
            if body > MAX_BODY { Err(()) } else { Ok(Some((n, body))) }
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

async fn raw(mut s: TcpStream) {
    let mut buf = BytesMut::with_capacity(8192);
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ");
    out.extend_from_slice(ANSWER.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(ANSWER);
    loop {
        let (head_len, body_len) = loop {
            match head(&buf) {
                Ok(Some(sizes)) => break sizes,
                Ok(None) => match s.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                },
                Err(()) => return,
            }
        };
        while buf.len() < head_len + body_len {
            match s.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        let request = buf.split_to(head_len + body_len);
        std::hint::black_box(&request[head_len..]);
        if s.write_all(&out).await.is_err() {
            return;
        }
        buf.reserve(8192);
    }
}

async fn through_hyper(s: TcpStream) {
    let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await?.to_bytes();
        std::hint::black_box(&body);
        let mut answer = hyper::Response::new(Full::new(Bytes::from_static(ANSWER)));
        answer
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        Ok::<_, hyper::Error>(answer)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true)
        .max_buf_size(16 * 1024)
        .max_headers(MAX_HEADERS);
    let _ = builder.serve_connection(TokioIo::new(s), service).await;
}

fn main() -> std::io::Result<()> {
    let raw_loop = match std::env::args().nth(1).as_deref() {
        Some("raw") => true,
        Some("hyper") => false,
        _ => {
            eprintln!("usage: http-ceiling hyper|raw");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{}", listener.local_addr()?);
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            let _ = s.set_nodelay(true);
            if raw_loop {
                tokio::spawn(raw(s));
            } else {
                tokio::spawn(through_hyper(s));
            }
        }
    })
}
