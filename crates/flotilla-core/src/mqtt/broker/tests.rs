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
    EmbeddedBroker::start(BrokerConfig { listen, username: USER.into(), password: PASS.into(), devices: None })
        .await
        .unwrap()
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
    // The slow one was cut off; the others are still connected. Only its queue's bound cuts it
    // (it sent nothing wrong and its keep-alive is off): a queue bound above the 32 MiB sent, or
    // none, leaves it connected holding all of it, and this wait fails.
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
    // The publisher's ping is answered after its publish was routed (one connection's packets
    // are handled in order), and the subscriber's queue is first in, first out: had the publish
    // been routed to it, it would come before its own ping answer.
    publisher.write_all(&[0xc0, 0]).await.unwrap();
    assert_eq!(read_n(&mut publisher, 2).await, [0xd0, 0]);
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

// ---- per-device logins and topic ACLs ---------------------------------------------------------

/// Two devices, `dev-1` (password `pw-1`) and `dev-2` (`pw-2`); `dev-3` is known but revoked.
struct TwoDevices;

impl DeviceLogins for TwoDevices {
    fn device(&self, username: &str, password: &[u8]) -> Option<String> {
        let want: &[u8] = match username {
            "dev-1" => b"pw-1",
            "dev-2" => b"pw-2",
            _ => return None,
        };
        bool::from(password.ct_eq(want)).then(|| username.to_owned())
    }
}

/// A broker with per-device logins and the native topic profile's ACL (commands to subscribe to,
/// status and presence to publish), plus a `{owner}` profile.
async fn broker_with_devices() -> EmbeddedBroker {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let devices = DeviceAccess {
        logins: Arc::new(TwoDevices),
        publish: vec![
            "flotilla/{id}/status/ota".into(),
            "flotilla/{id}/status".into(),
            "fleet/{owner}/{id}/status".into(),
        ],
        subscribe: vec!["flotilla/{id}/cmd/ota".into(), "fleet/{owner}/{id}/cmd".into()],
    };
    EmbeddedBroker::start(BrokerConfig { listen, username: USER.into(), password: PASS.into(), devices: Some(devices) })
        .await
        .unwrap()
}

/// Sends CONNECT (`will`: topic and payload) and returns the CONNACK return code.
async fn connect_as(addr: SocketAddr, id: &str, login: (&str, &str), will: Option<(&str, &[u8])>) -> (TcpStream, u8) {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4);
    body.push(0x02 | 0xc0 | if will.is_some() { 0x04 } else { 0 });
    body.extend_from_slice(&0u16.to_be_bytes());
    string(&mut body, id.as_bytes());
    if let Some((topic, payload)) = will {
        string(&mut body, topic.as_bytes());
        string(&mut body, payload);
    }
    string(&mut body, login.0.as_bytes());
    string(&mut body, login.1.as_bytes());
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame(0x10, &body)).await.unwrap();
    let ack = read_n(&mut s, 4).await;
    assert_eq!(ack[..3], [0x20, 2, 0]);
    (s, ack[3])
}

#[test]
fn device_topic_templates_match_only_the_devices_own_topics() {
    let t = "fleet/{owner}/{id}/cmd";
    assert!(template_matches(t, "dev-1", "fleet/acme/dev-1/cmd", false));
    assert!(template_matches(t, "dev-1", "fleet/+/dev-1/cmd", true));
    assert!(!template_matches(t, "dev-1", "fleet/+/dev-1/cmd", false), "no wildcard in a topic");
    assert!(!template_matches(t, "dev-1", "fleet/acme/dev-2/cmd", true));
    assert!(!template_matches(t, "dev-1", "fleet/acme/+/cmd", true), "{{id}} is never a wildcard");
    assert!(!template_matches(t, "dev-1", "fleet/#", true));
    assert!(!template_matches(t, "dev-1", "fleet/a+/dev-1/cmd", true));
    assert!(!template_matches(t, "dev-1", "fleet/acme/dev-1/cmd/x", true));
    assert!(!template_matches(t, "dev-1", "fleet/acme/dev-1", true));
    assert!(!template_matches(t, "dev-1", "fleet//dev-1/cmd", true));
}

#[tokio::test]
async fn a_device_login_uses_only_its_own_topics_and_its_messages_say_who_sent_them() {
    let broker = broker_with_devices().await;
    let addr = broker.local_addr();
    let (_engine, mut inbox) = broker.connect_local(&["flotilla/#".into(), "other/#".into()]).unwrap();

    // Wrong password, a revoked/unknown device: refused as a bad login.
    assert_eq!(connect_as(addr, "dev-1", ("dev-1", "pw-2"), None).await.1, 4);
    assert_eq!(connect_as(addr, "dev-3", ("dev-3", "pw-3"), None).await.1, 4);
    // Another device's client id, or a Last Will on another device's topic: refused.
    assert_eq!(connect_as(addr, "dev-2", ("dev-1", "pw-1"), None).await.1, 2);
    let (_s, code) = connect_as(addr, "dev-1", ("dev-1", "pw-1"), Some(("flotilla/dev-2/status", b"offline"))).await;
    assert_eq!(code, 5);

    let (mut dev1, code) =
        connect_as(addr, "dev-1", ("dev-1", "pw-1"), Some(("flotilla/dev-1/status", b"offline"))).await;
    assert_eq!(code, 0);
    // Its own command topic is granted; `#`, another device's commands and a wildcard id are not.
    for (pid, filter, granted) in [
        (1u16, "flotilla/dev-1/cmd/ota", 1u8),
        (2, "#", 0x80),
        (3, "flotilla/dev-2/cmd/ota", 0x80),
        (4, "flotilla/+/cmd/ota", 0x80),
        (5, "fleet/+/dev-1/cmd", 1),
    ] {
        dev1.write_all(&subscribe_packet(pid, filter, 1)).await.unwrap();
        let [hi, lo] = pid.to_be_bytes();
        assert_eq!(read_n(&mut dev1, 5).await, [0x90, 3, hi, lo, granted], "{filter}");
    }
    // Publishing as another device is acknowledged but goes nowhere; its own status arrives,
    // marked as coming from device dev-1.
    for topic in ["flotilla/dev-2/status", "other/x", "flotilla/dev-1/status"] {
        let mut body = Vec::new();
        string(&mut body, topic.as_bytes());
        body.extend_from_slice(&7u16.to_be_bytes());
        body.extend_from_slice(topic.as_bytes());
        dev1.write_all(&frame(0x32, &body)).await.unwrap();
        assert_eq!(read_n(&mut dev1, 4).await, [0x40, 2, 0, 7], "PUBACK for {topic}");
    }
    let got = next(&mut inbox).await;
    assert_eq!((got.topic.as_str(), got.device.as_deref()), ("flotilla/dev-1/status", Some("dev-1")));

    // The site's login may not take a device's client id over while the device is connected.
    let (_site, code) = connect_as(addr, "dev-1", (USER, PASS), None).await;
    assert_eq!(code, 2);
    // The site's login publishes anywhere, and its messages carry no device.
    let mut site = logged_in(addr, "tool", 0).await;
    site.write_all(&publish_packet("flotilla/dev-2/status", b"x", false)).await.unwrap();
    let got = next(&mut inbox).await;
    assert_eq!((got.topic.as_str(), got.device.as_deref()), ("flotilla/dev-2/status", None));
    // The device's will, on its own topic, is published as the device's when it drops.
    drop(dev1);
    let got = next(&mut inbox).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..], got.device.as_deref()),
        ("flotilla/dev-1/status", &b"offline"[..], Some("dev-1"))
    );
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_with_a_device_login_are_confined_to_the_devices_topics() {
    let broker = broker_with_devices().await;
    let addr = broker.local_addr();
    let as_device = |name: &str, args: &[&str]| {
        let mut c = std::process::Command::new(tool(name));
        c.args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-u", "dev-1", "-P", "pw-1", "-i", "dev-1"]);
        c.args(["-V", "mqttv311"]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    // Subscribing to everything is denied: mosquitto_sub says so and gives up at once.
    let out = output(as_device("mosquitto_sub", &["-t", "#", "-W", "5"])).await;
    assert!(out.stdout.is_empty(), "nothing delivered");
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied"), "{}", String::from_utf8_lossy(&out.stderr));
    // Its own command topic works, end to end, with a command the site's login publishes.
    let sub = as_device("mosquitto_sub", &["-t", "flotilla/dev-1/cmd/ota", "-C", "1", "-W", "15"]).spawn().unwrap();
    let sub = tokio::task::spawn_blocking(move || sub.wait_with_output());
    wait_for("mosquitto_sub connected", || broker.connections() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // its SUBSCRIBE follows the CONNACK
    let out = output(mosquitto("mosquitto_pub", addr, &["-t", "flotilla/dev-1/cmd/ota", "-m", "go", "-q", "1"])).await;
    assert!(out.status.success());
    let got = tokio::time::timeout(WAIT, sub).await.unwrap().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "go");
    broker.stop().await;
}

// ---- the deviations from MQTT 3.1.1 found against the Paho tests and mosquitto ------------------

/// Reads one PUBLISH from a raw connection: `(qos, packet id, topic, payload)`.
async fn read_publish(s: &mut TcpStream) -> (u8, u16, String, Vec<u8>) {
    let first = read_n(s, 1).await[0];
    assert_eq!(first >> 4, 3, "a PUBLISH, got {first:#04x}");
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = read_n(s, 1).await[0];
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let body = read_n(s, len).await;
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8(body[2..2 + tlen].to_vec()).unwrap();
    let qos = (first >> 1) & 3;
    let (id, rest) = if qos > 0 {
        (u16::from_be_bytes([body[2 + tlen], body[3 + tlen]]), &body[4 + tlen..])
    } else {
        (0, &body[2 + tlen..])
    };
    (qos, id, topic, rest.to_vec())
}

fn publish_qos(topic: &str, payload: &[u8], qos: u8, id: u16, dup: bool) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | if dup { 0x08 } else { 0 }, &body)
}

#[tokio::test]
async fn a_subscriber_that_does_not_acknowledge_gets_at_most_the_window_and_no_id_is_reused() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let mut sub = logged_in(addr, "slow-acker", 0).await;
    sub.write_all(&subscribe_packet(1, "w/#", 1)).await.unwrap();
    assert_eq!(read_n(&mut sub, 5).await, [0x90, 3, 0, 1, 1]);
    let (local, _inbox) = broker.connect_local(&[]).unwrap();
    const N: usize = 100;
    for i in 0..N {
        local.publish(&format!("w/{i}"), format!("{i}"), false).unwrap();
    }
    // The window: MAX_INFLIGHT messages, then nothing until a PUBACK (the ping's answer, queued
    // after all N publishes, overtakes the ones held back).
    let mut outstanding = std::collections::BTreeMap::new();
    for i in 0..MAX_INFLIGHT {
        let (qos, id, topic, _) = read_publish(&mut sub).await;
        assert_eq!((qos, topic), (1, format!("w/{i}")));
        assert!(outstanding.insert(id, i).is_none(), "packet id {id} reused while unacknowledged");
    }
    sub.write_all(&[0xc0, 0]).await.unwrap();
    assert_eq!(read_n(&mut sub, 2).await, [0xd0, 0], "no publish beyond the window of {MAX_INFLIGHT}");
    // Each PUBACK lets one more through, in order, with an id not in flight.
    let mut next = MAX_INFLIGHT;
    while next < N {
        let (&oldest, _) = outstanding.iter().next().unwrap();
        outstanding.remove(&oldest);
        sub.write_all(&[0x40, 2, (oldest >> 8) as u8, oldest as u8]).await.unwrap();
        let (_, id, topic, _) = read_publish(&mut sub).await;
        assert_eq!(topic, format!("w/{next}"), "in order");
        assert!(outstanding.insert(id, next).is_none(), "packet id {id} reused while unacknowledged");
        assert!(outstanding.len() <= MAX_INFLIGHT);
        next += 1;
    }
    broker.stop().await;
}

#[tokio::test]
async fn the_payload_limit_is_the_payload_exactly_and_a_larger_one_closes_the_connection() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let (_local, mut inbox) = broker.connect_local(&["big/#".into()]).unwrap();
    let mut s = logged_in(addr, "big", 0).await;
    s.write_all(&publish_packet("big/ok", &vec![7; MAX_PAYLOAD], false)).await.unwrap();
    let got = next(&mut inbox).await;
    assert_eq!((got.topic.as_str(), got.payload.len()), ("big/ok", MAX_PAYLOAD));
    s.write_all(&publish_packet("big/no", &vec![7; MAX_PAYLOAD + 1], false)).await.unwrap();
    closed(&mut s).await;
    // Nothing of it was delivered: after the session's end, the next message is the one sent after.
    assert!(matches!(next_delivery(&mut inbox).await, Delivery::SessionEnded(c) if c == "big"));
    let mut t = logged_in(addr, "after", 0).await;
    t.write_all(&publish_packet("big/after", b"x", false)).await.unwrap();
    assert_eq!(next(&mut inbox).await.topic, "big/after");
    broker.stop().await;
}

#[tokio::test]
async fn an_invalid_filter_in_subscribe_or_unsubscribe_closes_the_connection() {
    let broker = broker().await;
    let addr = broker.local_addr();
    for filter in ["a/#/b", "a+/b", "", "#/"] {
        let mut s = logged_in(addr, "sub", 0).await;
        // A valid filter first: the whole packet is refused all the same.
        let mut body = 1u16.to_be_bytes().to_vec();
        string(&mut body, b"ok/+");
        body.push(1);
        string(&mut body, filter.as_bytes());
        body.push(1);
        s.write_all(&frame(0x82, &body)).await.unwrap();
        closed(&mut s).await;
        let mut s = logged_in(addr, "unsub", 0).await;
        let mut body = 2u16.to_be_bytes().to_vec();
        string(&mut body, filter.as_bytes());
        s.write_all(&frame(0xa2, &body)).await.unwrap();
        closed(&mut s).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn protocol_name_and_level_must_go_together() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let connect = |name: &[u8], level: u8| {
        let mut body = Vec::new();
        string(&mut body, name);
        body.push(level);
        body.push(0xc2);
        body.extend_from_slice(&0u16.to_be_bytes());
        string(&mut body, b"lvl");
        string(&mut body, USER.as_bytes());
        string(&mut body, PASS.as_bytes());
        frame(0x10, &body)
    };
    for (name, level, code) in
        [(&b"MQTT"[..], 4, 0), (b"MQIsdp", 3, 0), (b"MQTT", 3, 1), (b"MQTT", 5, 1), (b"MQIsdp", 4, 1)]
    {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&connect(name, level)).await.unwrap();
        assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, code], "{} level {level}", String::from_utf8_lossy(name));
        if code != 0 {
            closed(&mut s).await;
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_a_connect_are_dropped_at_once_not_after_the_connect_timeout() {
    let broker = broker().await;
    let addr = broker.local_addr();
    // Closed well before CONNECT_TIMEOUT: had the broker waited for more bytes, the timeout would
    // have closed it after 10 s.
    let at_once = CONNECT_TIMEOUT / 2;
    let mut big_connect = vec![0x10];
    big_connect.extend_from_slice(&[0xe0, 0xa7, 0x12]); // announces 300,000 bytes
    big_connect.extend_from_slice(&[0; 1000]);
    for bytes in [b"GET / HTTP/1.1\r\n".to_vec(), b"\x16\x03\x01\x02\x00\x01".to_vec(), vec![0x30], big_connect] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let started = tokio::time::Instant::now();
        closed(&mut s).await;
        assert!(
            started.elapsed() < at_once,
            "{:?}: closed after {:?}",
            &bytes[..4.min(bytes.len())],
            started.elapsed()
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_qos_2_publish_resent_before_its_pubrel_is_delivered_once() {
    let broker = broker().await;
    let addr = broker.local_addr();
    let (_local, mut inbox) = broker.connect_local(&["q2/#".into()]).unwrap();
    let mut s = logged_in(addr, "q2", 0).await;
    s.write_all(&publish_qos("q2/a", b"first", 2, 9, false)).await.unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x50, 2, 0, 9], "PUBREC");
    s.write_all(&publish_qos("q2/a", b"first", 2, 9, true)).await.unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x50, 2, 0, 9], "PUBREC again for the resend");
    s.write_all(&[0x62, 2, 0, 9]).await.unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x70, 2, 0, 9], "PUBCOMP");
    // After the PUBREL the id is free: the same id is a new message.
    s.write_all(&publish_qos("q2/b", b"second", 2, 9, false)).await.unwrap();
    assert_eq!(read_n(&mut s, 4).await, [0x50, 2, 0, 9]);
    let (a, b) = (next(&mut inbox).await, next(&mut inbox).await);
    assert_eq!((a.topic.as_str(), &a.payload[..]), ("q2/a", &b"first"[..]));
    assert_eq!((b.topic.as_str(), &b.payload[..]), ("q2/b", &b"second"[..]), "the resend was not delivered");
    broker.stop().await;
}

#[test]
fn warnings_about_misbehaving_clients_are_rate_limited() {
    let limit = WarnLimit::new();
    let allowed: Vec<Option<u64>> = (0..WARNINGS_PER_WINDOW + 5).map(|_| limit.allow()).collect();
    assert!(allowed[..WARNINGS_PER_WINDOW as usize].iter().all(|a| *a == Some(0)));
    assert!(allowed[WARNINGS_PER_WINDOW as usize..].iter().all(Option::is_none));
    // The next window reports how many were suppressed.
    limit.0.lock().unwrap().0 -= WARNING_WINDOW;
    assert_eq!(limit.allow(), Some(5));
    assert_eq!(limit.allow(), Some(0));
}
