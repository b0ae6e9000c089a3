//! The embedded broker against raw bytes on a TCP socket (malformed packets, keep-alive, slow
//! consumers, take-over) and against Debian's mosquitto clients (`mosquitto_pub`, `mosquitto_sub`
//! from the `mosquitto-clients` package) run as separate processes. The client of our own
//! (rumqttc) is tested against it in `mqtt::tests`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const USER: &str = "fleet";
const PASS: &str = "pa ss";
const WAIT: Duration = Duration::from_secs(15);

async fn broker() -> EmbeddedBroker {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    EmbeddedBroker::start(BrokerConfig { listen, username: USER.into(), password: PASS.into() }).await.unwrap()
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn connect_packet(client_id: &str, keep_alive: u16, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4);
    body.push(0x02 | if login.is_some() { 0xc0 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    if let Some((u, p)) = login {
        string(&mut body, u.as_bytes());
        string(&mut body, p.as_bytes());
    }
    frame(0x10, &body)
}

fn subscribe_packet(id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    string(&mut body, filter.as_bytes());
    body.push(qos);
    frame(0x82, &body)
}

fn publish_packet(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    frame(0x30 | u8::from(retain), &body)
}

/// A raw connection that has logged in (CONNACK read).
async fn logged_in(addr: SocketAddr, id: &str, keep_alive: u16) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&connect_packet(id, keep_alive, Some((USER, PASS)))).await.unwrap();
    let mut ack = [0; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut ack)).await.unwrap().unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
    s
}

/// Reads until the broker closes the connection; panics if it does not.
async fn closed(s: &mut TcpStream) {
    let mut sink = vec![0; 64 * 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut sink)).await.expect("the broker kept the connection open") {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads `n` bytes.
async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await.expect("nothing more came").unwrap();
    buf
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn malformed_bytes_close_only_their_connection() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut watcher = logged_in(addr, "watcher", 0).await;
    watcher.write_all(&subscribe_packet(1, "t/#", 0)).await.unwrap();
    assert_eq!(read_n(&mut watcher, 5).await, [0x90, 3, 0, 1, 0]);

    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),       // not MQTT at all
        vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x7f], // a five-byte remaining length
        frame(0x10, b"\x00\x04MQTT\x04\x02\x00"), // CONNECT cut short
        vec![0x30, 0xff, 0xff, 0xff, 0x7f],       // announces 256 MiB
        frame(0x82, b"\x00\x01\x00\x03a/b\x00"),  // SUBSCRIBE before CONNECT
    ];
    for bytes in garbage {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        closed(&mut s).await;
    }
    // After CONNECT: a publish to a wildcard topic, bad flags, a second CONNECT, bad UTF-8.
    let after_login: Vec<Vec<u8>> = vec![
        publish_packet("t/+", b"x", false),
        frame(0x80, b"\x00\x01\x00\x01a\x00"),
        connect_packet("again", 0, Some((USER, PASS))),
        frame(0x30, b"\x00\x02\xc3\x28x"),
        frame(0x82, b"\x00\x01\x00\x05a/b"), // filter without its QoS byte
    ];
    for bytes in after_login {
        let mut s = logged_in(addr, "bad", 0).await;
        s.write_all(&bytes).await.unwrap();
        closed(&mut s).await;
    }
    // The broker still serves the others.
    let mut publisher = logged_in(addr, "publisher", 0).await;
    publisher.write_all(&publish_packet("t/1", b"ok", false)).await.unwrap();
    assert_eq!(read_n(&mut watcher, 9).await, publish_packet("t/1", b"ok", false));
    wait_for("bad connections gone", || broker.connections() == 2).await;
    broker.stop().await;
}

#[tokio::test]
async fn wrong_login_gets_a_refusal_and_the_connection_closes() {
    let broker = broker().await;
    for login in [Some((USER, "nope")), Some(("root", PASS)), None] {
        let mut s = TcpStream::connect(broker.local_addr()).await.unwrap();
        s.write_all(&connect_packet("x", 0, login)).await.unwrap();
        assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 4], "{login:?}");
        closed(&mut s).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_client_silent_past_one_and_a_half_keep_alives_is_closed_and_its_will_published() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut watcher = logged_in(addr, "watcher", 0).await;
    watcher.write_all(&subscribe_packet(1, "will/#", 1)).await.unwrap();
    read_n(&mut watcher, 5).await;

    // CONNECT with a will on will/quiet and a 1 s keep-alive (the shortest there is; tokio's
    // paused clock is not enabled in this crate, so this test waits 2.4 s for real).
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4);
    body.push(0xc0 | 0x04 | 0x02);
    body.extend_from_slice(&1u16.to_be_bytes());
    string(&mut body, b"quiet");
    string(&mut body, b"will/quiet");
    string(&mut body, b"gone");
    string(&mut body, USER.as_bytes());
    string(&mut body, PASS.as_bytes());
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    quiet.write_all(&frame(0x10, &body)).await.unwrap();
    assert_eq!(read_n(&mut quiet, 4).await, [0x20, 2, 0, 0]);
    let connected = tokio::time::Instant::now();
    // A ping keeps it alive: the answer comes, the clock restarts.
    tokio::time::sleep(Duration::from_millis(900)).await;
    quiet.write_all(&[0xc0, 0]).await.unwrap();
    assert_eq!(read_n(&mut quiet, 2).await, [0xd0, 0]);
    closed(&mut quiet).await;
    let silent_for = connected.elapsed();
    assert!(silent_for >= Duration::from_millis(2350) && silent_for < Duration::from_secs(5), "{silent_for:?}");
    // The will, QoS 0 (as published), not retained.
    assert_eq!(read_n(&mut watcher, 18).await, publish_packet("will/quiet", b"gone", false));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_does_not_read_is_disconnected_and_costs_bounded_memory() {
    let broker = broker().await;
    let addr = broker.local_addr();
    // A small receive buffer (no autotuning, which may grow to tens of MiB on loopback), so what
    // the kernel holds for it is small next to what the broker queues.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(&connect_packet("slow", 0, Some((USER, PASS)))).await.unwrap();
    assert_eq!(read_n(&mut slow, 4).await, [0x20, 2, 0, 0]);
    slow.write_all(&subscribe_packet(1, "big/#", 0)).await.unwrap();
    read_n(&mut slow, 5).await;
    let mut fast = logged_in(addr, "fast", 0).await;
    fast.write_all(&subscribe_packet(1, "big/#", 0)).await.unwrap();
    read_n(&mut fast, 5).await;
    let mut publisher = logged_in(addr, "publisher", 0).await;
    // 128 × 256 KiB = 32 MiB: more than the socket buffers and the slow one's queue hold. Sent in
    // steps the fast reader keeps up with, so only the one that never reads falls behind.
    let payload = vec![0x5a; 256 * 1024];
    let packet = publish_packet("big/x", &payload, false);
    let got = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&got);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0; 1 << 20];
        while counter.load(Ordering::Relaxed) < 128 * packet_len(256 * 1024) {
            let n = fast.read(&mut buf).await.unwrap();
            assert!(n > 0, "the fast reader was closed");
            counter.fetch_add(n, Ordering::Relaxed);
        }
        fast // still connected
    });
    for step in 1..=16 {
        for _ in 0..8 {
            publisher.write_all(&packet).await.unwrap();
        }
        let want = step * 8 * packet.len();
        wait_for("the fast reader keeps up", || got.load(Ordering::Relaxed) >= want).await;
    }
    let _fast = tokio::time::timeout(WAIT, reader).await.expect("the fast reader got everything").unwrap();
    // The slow one was cut off; the others are still connected.
    wait_for("the slow consumer disconnected", || broker.connections() == 2).await;
    publisher.write_all(&[0xc0, 0]).await.unwrap();
    assert_eq!(read_n(&mut publisher, 2).await, [0xd0, 0]);
    drop(slow);
    broker.stop().await;
}

fn packet_len(payload: usize) -> usize {
    publish_packet("big/x", &vec![0; payload], false).len()
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut first = logged_in(addr, "dev-1", 0).await;
    let _second = logged_in(addr, "dev-1", 0).await;
    closed(&mut first).await;
    wait_for("one connection left", || broker.connections() == 1).await;
    broker.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_stop_closes_everything() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut sub = logged_in(addr, "sub", 0).await;
    sub.write_all(&subscribe_packet(7, "a/+", 1)).await.unwrap();
    assert_eq!(read_n(&mut sub, 5).await, [0x90, 3, 0, 7, 1]);
    let mut body = 8u16.to_be_bytes().to_vec();
    string(&mut body, b"a/+");
    sub.write_all(&frame(0xa2, &body)).await.unwrap();
    assert_eq!(read_n(&mut sub, 4).await, [0xb0, 2, 0, 8]);
    let mut publisher = logged_in(addr, "pub", 0).await;
    publisher.write_all(&publish_packet("a/b", b"1", false)).await.unwrap();
    sub.write_all(&[0xc0, 0]).await.unwrap();
    assert_eq!(read_n(&mut sub, 2).await, [0xd0, 0], "no publish before the ping answer");

    broker.stop().await;
    closed(&mut sub).await;
    closed(&mut publisher).await;
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens after stop");
}

// ---- Debian's mosquitto clients ---------------------------------------------------------------

fn tool(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "`{name}` is not installed; these tests need Debian's mosquitto clients: apt-get install mosquitto-clients"
    );
    path
}

fn mosquitto(name: &str, addr: SocketAddr, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(tool(name));
    c.args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-u", USER, "-P", PASS, "-V", "mqttv311"]);
    if name == "mosquitto_sub" {
        c.args(["-W", "15"]); // it gives up by itself, so a test never hangs on it
    }
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Runs a client to its end (off the async threads).
async fn output(mut c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.output()).await.unwrap().unwrap()
}

#[tokio::test]
async fn mosquitto_clients_publish_subscribe_and_get_retained_messages() {
    let broker = broker().await;
    let addr = broker.local_addr();
    // Retained first (QoS 1 and QoS 2 publishes), then a late wildcard subscriber gets both.
    for (topic, qos) in [("site/dev1/presence", "1"), ("site/dev2/presence", "2")] {
        let out = output(mosquitto("mosquitto_pub", addr, &["-t", topic, "-m", topic, "-q", qos, "-r"])).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for("both retained", || broker.retained() == 2).await;
    let out = output(mosquitto("mosquitto_sub", addr, &["-t", "site/+/presence", "-q", "2", "-C", "2", "-v"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["site/dev1/presence site/dev1/presence", "site/dev2/presence site/dev2/presence"]);

    // A live message to a running mosquitto_sub (it subscribes before we publish).
    let sub = mosquitto("mosquitto_sub", addr, &["-t", "live/#", "-C", "1", "-v", "-i", "watcher"]).spawn().unwrap();
    let sub = tokio::task::spawn_blocking(move || sub.wait_with_output());
    wait_for("mosquitto_sub connected", || broker.connections() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // its SUBSCRIBE follows the CONNACK
    let out = output(mosquitto("mosquitto_pub", addr, &["-t", "live/x", "-m", "hello", "-q", "1"])).await;
    assert!(out.status.success());
    let got = tokio::time::timeout(WAIT, sub).await.unwrap().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "live/x hello");

    // Clearing a retained message with an empty payload.
    let out = output(mosquitto("mosquitto_pub", addr, &["-t", "site/dev1/presence", "-n", "-r"])).await;
    assert!(out.status.success());
    wait_for("one retained left", || broker.retained() == 1).await;
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_with_a_wrong_password_are_refused() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut c = std::process::Command::new(tool("mosquitto_pub"));
    c.args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-u", USER, "-P", "wrong", "-t", "a", "-m", "x"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = output(c).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("not authori") || err.contains("bad user") || err.contains("refused"), "{err}");
    broker.stop().await;
}

// ---- the engine's in-process client ------------------------------------------------------------

async fn next(inbox: &mut LocalInbox) -> crate::mqtt::Incoming {
    match next_delivery(inbox).await {
        Delivery::Message(m) => m,
        Delivery::SessionEnded(c) => panic!("a session end ({c}) where a message was expected"),
    }
}

async fn next_delivery(inbox: &mut LocalInbox) -> Delivery {
    tokio::time::timeout(WAIT, inbox.recv()).await.expect("nothing arrived").expect("the inbox ended")
}

#[tokio::test]
async fn a_local_client_gets_retained_then_live_messages_and_publishes_to_network_clients() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut device = logged_in(addr, "dev1", 0).await;
    device.write_all(&publish_packet("site/dev1/presence", b"{\"v\":1}", true)).await.unwrap();
    device.write_all(&subscribe_packet(3, "site/dev1/cmd", 1)).await.unwrap();
    assert_eq!(read_n(&mut device, 5).await, [0x90, 3, 0, 3, 1]);
    wait_for("the retained presence", || broker.retained() == 1).await;

    let (client, mut inbox) =
        broker.connect_local(&["site/+/presence".to_owned(), "site/+/status".to_owned()]).unwrap();
    assert_eq!(broker.connections(), 1, "a local client is no network connection");
    let first = next(&mut inbox).await;
    assert_eq!(
        (first.topic.as_str(), &first.payload[..], first.retained),
        ("site/dev1/presence", &b"{\"v\":1}"[..], true)
    );

    device.write_all(&publish_packet("site/dev1/status", b"50", false)).await.unwrap();
    device.write_all(&publish_packet("elsewhere/x", b"no", false)).await.unwrap();
    device.write_all(&publish_packet("site/dev1/status", b"100", false)).await.unwrap();
    for expected in [&b"50"[..], b"100"] {
        let m = next(&mut inbox).await;
        assert_eq!((m.topic.as_str(), &m.payload[..], m.retained), ("site/dev1/status", expected, false));
    }

    // The engine's command reaches the device as a QoS 1 publish.
    client.publish("site/dev1/cmd", b"go".to_vec(), false).unwrap();
    let mut expected = vec![0x32, 2 + 13 + 2 + 2, 0, 13];
    expected.extend_from_slice(b"site/dev1/cmd");
    expected.extend_from_slice(&[0, 1]);
    expected.extend_from_slice(b"go");
    assert_eq!(read_n(&mut device, expected.len()).await, expected);

    // What a network client could not send is refused.
    assert!(matches!(client.publish("site/+/cmd", b"x".to_vec(), false), Err(MqttError::InvalidTopic(_))));
    assert!(matches!(
        client.publish("site/dev1/cmd", vec![0; MAX_PAYLOAD + 1], false),
        Err(MqttError::PayloadTooLarge { .. })
    ));
    assert!(matches!(broker.connect_local(&["a/#/b".to_owned()]), Err(MqttError::InvalidFilter(_))));

    // Stopping the broker ends the inbox and the client refuses to publish.
    broker.stop().await;
    assert!(tokio::time::timeout(WAIT, inbox.recv()).await.unwrap().is_none());
    assert!(matches!(client.publish("site/dev1/cmd", b"go".to_vec(), false), Err(MqttError::Stopped)));
}

#[tokio::test]
async fn the_engine_learns_who_published_and_when_a_session_ends_after_its_messages() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let (_client, mut inbox) = broker.connect_local(&["site/+/presence".to_owned()]).unwrap();
    let mut dev = logged_in(addr, "dev-a", 0).await;
    dev.write_all(&publish_packet("site/a/presence", b"{}", false)).await.unwrap();
    // A clean DISCONNECT sends no will, but the session's end is still announced — after the
    // message it sent, never before.
    dev.write_all(&[0xE0, 0]).await.unwrap();
    let m = next(&mut inbox).await;
    assert_eq!(m.client_id.as_deref(), Some("dev-a"), "the publishing session is named");
    assert!(matches!(next_delivery(&mut inbox).await, Delivery::SessionEnded(c) if c == "dev-a"));
    // A client id taken over by a newer connection is no session end.
    let first = logged_in(addr, "dev-b", 0).await;
    let _second = logged_in(addr, "dev-b", 0).await;
    drop(first);
    let mut other = logged_in(addr, "dev-c", 0).await;
    other.write_all(&[0xE0, 0]).await.unwrap();
    assert!(
        matches!(next_delivery(&mut inbox).await, Delivery::SessionEnded(c) if c == "dev-c"),
        "dev-b's first connection ending announced nothing"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_local_client_too_slow_for_its_queue_is_subscribed_again_and_keeps_receiving() {
    let broker = broker().await;
    let (client, mut inbox) = broker.connect_local(&["load/#".to_owned()]).unwrap();
    // More than the queue holds, while the inbox is not read.
    for i in 0..QUEUE_PACKETS + 10 {
        client.publish("load/x", i.to_string().into_bytes(), false).unwrap();
    }
    let mut got = 0;
    while got < QUEUE_PACKETS {
        next(&mut inbox).await;
        got += 1;
    }
    // The overflow closed the old session; the inbox subscribes again and live messages flow.
    client.publish("load/live", b"after".to_vec(), false).unwrap();
    let m = loop {
        let m = next(&mut inbox).await;
        if m.topic == "load/live" {
            break m;
        }
    };
    assert_eq!(&m.payload[..], b"after");
    // The old session is gone from the router: one subscriber, one copy of each message.
    assert_eq!(broker.state.router().sessions.len(), 1);
    client.publish("load/live", b"once".to_vec(), false).unwrap();
    assert_eq!(&next(&mut inbox).await.payload[..], b"once");
    drop(inbox);
    let r = broker.state.router();
    assert!(r.sessions.is_empty(), "a dropped inbox leaves no session behind");
}
