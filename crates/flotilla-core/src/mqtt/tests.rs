//! The client against the embedded broker and against Debian's mosquitto, all on loopback with
//! ports picked by the OS. Every wait is on a condition, bounded by [`WAIT`].
//!
//! The mosquitto tests need the `mosquitto` package (`/usr/sbin/mosquitto`, `mosquitto_passwd`)
//! and fail, saying so, when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::INCOMING_CAPACITY;
use super::*;

const USER: &str = "fleet";
const PASS: &str = "s3cret pass";
/// Upper bound of every wait; a test that needs it has failed.
const WAIT: Duration = Duration::from_secs(15);

fn loopback0() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

async fn embedded(listen: SocketAddr) -> EmbeddedBroker {
    EmbeddedBroker::start(BrokerConfig { listen, username: USER.into(), password: PASS.into(), devices: None })
        .await
        .unwrap()
}

fn url_of(addr: SocketAddr) -> String {
    format!("mqtt://{addr}")
}

/// An [`MqttClient`] with its receiver and the means to stop it.
struct Peer {
    client: MqttClient,
    rx: mpsc::Receiver<Incoming>,
    connected: watch::Receiver<bool>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Peer {
    fn start(url: &str, id: &str, subscriptions: &[&str]) -> Peer {
        let mut config = MqttConfig::new(url, id);
        config.username = Some(USER.into());
        config.password = Some(PASS.into());
        config.subscriptions = subscriptions.iter().map(|s| s.to_string()).collect();
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (client, rx) = MqttClient::start(config, stop.clone(), &tracker).unwrap();
        let connected = client.connected();
        Peer { client, rx, connected, stop, tracker }
    }

    /// Starts and waits until connected (and subscribed).
    async fn ready(url: &str, id: &str, subscriptions: &[&str]) -> Peer {
        let mut peer = Peer::start(url, id, subscriptions);
        peer.wait_connected(true).await;
        peer
    }

    async fn wait_connected(&mut self, want: bool) {
        tokio::time::timeout(WAIT, self.connected.wait_for(|c| *c == want))
            .await
            .unwrap_or_else(|_| panic!("client never became connected={want}"))
            .unwrap();
    }

    /// The next message on `topic` (others are skipped).
    async fn next_on(&mut self, topic: &str) -> Incoming {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("nothing received on {topic}"))
                .expect("client stopped");
            if msg.topic == topic {
                return msg;
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &'static [u8], retain: bool) {
        self.client.publish(topic, payload, retain).await.unwrap();
    }

    /// Cancels the client and waits until its task has ended.
    async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(WAIT, self.tracker.wait()).await.expect("client task did not end");
    }
}

/// A bare rumqttc connection (for a last will, or credentials `MqttClient` would not send).
fn raw(addr: SocketAddr, id: &str, login: Option<(&str, &str)>) -> rumqttc::EventLoop {
    let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    if let Some((user, pass)) = login {
        options.set_credentials(user, pass);
    }
    options.set_last_will(rumqttc::LastWill::new(format!("will/{id}"), "gone", rumqttc::QoS::AtLeastOnce, false));
    rumqttc::AsyncClient::new(options, 10).1
}

/// Polls `eventloop` until its first answer: `Ok` for a CONNACK that accepts, `Err` otherwise.
async fn first_answer(eventloop: &mut rumqttc::EventLoop) -> Result<(), String> {
    match tokio::time::timeout(WAIT, eventloop.poll()).await.expect("no answer from the broker") {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))
            if ack.code == rumqttc::ConnectReturnCode::Success =>
        {
            Ok(())
        }
        other => Err(format!("{other:?}")),
    }
}

// ---- embedded broker ------------------------------------------------------------------------

#[tokio::test]
async fn embedded_broker_round_trip_and_retained_message_for_a_late_subscriber() {
    let broker = embedded(loopback0()).await;
    let url = url_of(broker.local_addr());
    assert_ne!(broker.local_addr().port(), 0);

    let mut watcher = Peer::ready(&url, "watcher", &["fleet/#"]).await;
    let publisher = Peer::ready(&url, "publisher", &[]).await;

    publisher.publish("fleet/dev1/status", b"online", false).await;
    let msg = watcher.next_on("fleet/dev1/status").await;
    assert_eq!((&msg.payload[..], msg.retained), (&b"online"[..], false));

    // A topic nobody subscribed to is fine (and does not cost the publisher its connection).
    publisher.publish("elsewhere/x", b"1", true).await;
    publisher.publish("fleet/dev2/presence", b"{\"online\":true}", true).await;
    watcher.next_on("fleet/dev2/presence").await; // the broker has it now

    let mut late = Peer::ready(&url, "late", &["fleet/+/presence"]).await;
    let msg = late.next_on("fleet/dev2/presence").await;
    assert_eq!((&msg.payload[..], msg.retained), (&b"{\"online\":true}"[..], true));

    // The largest payload goes through; one byte more is refused before it is sent.
    let big = bytes::Bytes::from(vec![0xA5; MAX_PAYLOAD]);
    publisher.client.publish("fleet/big", big.clone(), false).await.unwrap();
    assert_eq!(watcher.next_on("fleet/big").await.payload, big);
    let too_big = publisher.client.publish("fleet/big", vec![0; MAX_PAYLOAD + 1], false).await;
    assert!(matches!(too_big, Err(MqttError::PayloadTooLarge { .. })), "{too_big:?}");
    assert!(matches!(publisher.client.publish("fleet/#", "x", false).await, Err(MqttError::InvalidTopic(_))));
    assert!(*publisher.connected.borrow(), "a refused publish must not cost the connection");

    for peer in [watcher, publisher, late] {
        peer.shutdown().await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn embedded_broker_publishes_the_will_of_a_client_that_dies() {
    let broker = embedded(loopback0()).await;
    let mut watcher = Peer::ready(&url_of(broker.local_addr()), "watcher", &["will/#"]).await;

    let mut doomed = raw(broker.local_addr(), "doomed", Some((USER, PASS)));
    first_answer(&mut doomed).await.unwrap();
    drop(doomed); // the socket closes without a DISCONNECT

    let will = watcher.next_on("will/doomed").await;
    assert_eq!(&will.payload[..], b"gone");
    watcher.shutdown().await;
    broker.stop().await;
}

#[tokio::test]
async fn embedded_broker_refuses_wrong_or_missing_credentials() {
    let broker = embedded(loopback0()).await;
    let addr = broker.local_addr();
    // Listening as soon as `start` returns: one attempt, no retry.
    first_answer(&mut raw(addr, "first", Some((USER, PASS)))).await.unwrap();
    assert!(first_answer(&mut raw(addr, "wrong-pass", Some((USER, "nope")))).await.is_err());
    assert!(first_answer(&mut raw(addr, "wrong-user", Some(("root", PASS)))).await.is_err());
    assert!(first_answer(&mut raw(addr, "anonymous", None)).await.is_err());
    first_answer(&mut raw(addr, "right", Some((USER, PASS)))).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn embedded_broker_bind_error_names_the_address() {
    let taken = TcpListener::bind(loopback0()).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = EmbeddedBroker::start(BrokerConfig {
        listen: addr,
        username: USER.into(),
        password: PASS.into(),
        devices: None,
    })
    .await
    .unwrap_err();
    assert!(matches!(&err, MqttError::Bind { addr: a, .. } if *a == addr), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let no_password =
        BrokerConfig { listen: loopback0(), username: USER.into(), password: String::new(), devices: None };
    assert!(matches!(EmbeddedBroker::start(no_password).await, Err(MqttError::InvalidConfig(_))));
}

#[tokio::test]
async fn embedded_broker_stop_frees_the_port_and_the_client_comes_back_after_a_restart() {
    let broker = embedded(loopback0()).await;
    let addr = broker.local_addr();
    let url = url_of(addr);
    let mut watcher = Peer::ready(&url, "watcher", &["fleet/#"]).await;
    let mut publisher = Peer::ready(&url, "publisher", &[]).await;

    broker.stop().await;
    // The port is free at once, and every connection was closed.
    drop(TcpListener::bind(addr).expect("port still taken after stop"));
    watcher.wait_connected(false).await;
    publisher.wait_connected(false).await;
    assert!(matches!(publisher.client.publish("fleet/x", "1", false).await, Err(MqttError::NotConnected)));

    // Same port again: both clients reconnect by themselves and the watcher subscribes again.
    let broker = embedded(addr).await;
    watcher.wait_connected(true).await;
    publisher.wait_connected(true).await;
    publisher.publish("fleet/dev1/status", b"back", false).await;
    assert_eq!(&watcher.next_on("fleet/dev1/status").await.payload[..], b"back");

    // A stopped client says so.
    let client = publisher.client.clone();
    publisher.shutdown().await;
    assert!(matches!(client.publish("fleet/x", "1", false).await, Err(MqttError::Stopped)));
    assert!(!*client.connected().borrow());
    watcher.shutdown().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_slow_reader_loses_nothing() {
    // More messages than the incoming channel holds, none read until all are sent: the event
    // loop waits for room instead of dropping what it has already acknowledged.
    const N: usize = INCOMING_CAPACITY + 2000;
    let broker = embedded(loopback0()).await;
    let url = url_of(broker.local_addr());
    let mut reader = Peer::ready(&url, "reader", &["burst/#"]).await;
    let publisher = Peer::ready(&url, "publisher", &[]).await;
    for i in 0..N {
        publisher.client.publish("burst/n", i.to_string(), false).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while reader.rx.len() < INCOMING_CAPACITY {
        assert!(tokio::time::Instant::now() < deadline, "the incoming channel never filled up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..N {
        let msg = tokio::time::timeout(WAIT, reader.rx.recv()).await.expect("message lost").unwrap();
        assert_eq!(msg.payload, i.to_string().as_bytes(), "out of order or lost at {i}");
    }
    reader.shutdown().await;
    publisher.shutdown().await;
    broker.stop().await;
}

#[tokio::test]
async fn client_keeps_trying_while_nothing_listens_and_stops_when_told() {
    let addr = TcpListener::bind(loopback0()).unwrap().local_addr().unwrap(); // now free
    let peer = Peer::start(&url_of(addr), "lonely", &["a/#"]);
    assert!(matches!(peer.client.publish("a/b", "1", false).await, Err(MqttError::NotConnected)));
    // Dropping the receiver ends the event loop as well.
    let Peer { client, rx, tracker, .. } = peer;
    drop(rx);
    tracker.close();
    tokio::time::timeout(WAIT, tracker.wait()).await.expect("client task did not end");
    assert!(matches!(client.publish("a/b", "1", false).await, Err(MqttError::Stopped)));
}

// ---- mosquitto ------------------------------------------------------------------------------

/// A mosquitto process on a loopback port, with a password file; killed on drop.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto on a free port (one retry if another process takes the port first).
    async fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let status = Command::new(find("mosquitto_passwd"))
            .arg("-b")
            .arg("-c")
            .arg(&passwd)
            .args([USER, PASS])
            .status()
            .expect("cannot run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd failed: {status}");
        let mut broker = Mosquitto { child: None, port: 0, dir };
        for attempt in 0..2 {
            let port = TcpListener::bind(loopback0()).unwrap().local_addr().unwrap().port();
            match broker.run_on(port).await {
                Ok(()) => return broker,
                Err(log) if attempt == 0 && log.contains("in use") => continue,
                Err(log) => panic!("mosquitto did not start on port {port}:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Starts (again) on `port`; `Err(log)` when mosquitto exits instead of listening.
    async fn run_on(&mut self, port: u16) -> Result<(), String> {
        let conf = self.dir.path().join("mosquitto.conf");
        let log = self.dir.path().join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n\
                 # when run as root, stay root: the files above are readable by root only\nuser root\n",
                self.dir.path().join("passwd").display()
            ),
        )
        .unwrap();
        let child = Command::new(find("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot run mosquitto");
        self.child = Some(child);
        self.port = port;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(());
            }
            assert!(tokio::time::Instant::now() < deadline, "mosquitto never listened on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `name` on the PATH or in the sbin folders (mosquitto lives in /usr/sbin, often not on the
/// PATH of a normal user).
fn find(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| Path::is_file(p))
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed. These tests need Debian's mosquitto broker: \
                 `apt-get install mosquitto` (it provides mosquitto and mosquitto_passwd)"
            )
        })
}

#[tokio::test]
async fn mosquitto_round_trip_retained_message_and_wrong_password() {
    let broker = Mosquitto::start().await;
    let url = broker.url();
    let mut watcher = Peer::ready(&url, "watcher", &["fleet/#"]).await;
    let publisher = Peer::ready(&url, "publisher", &[]).await;

    publisher.publish("fleet/dev1/status", b"online", false).await;
    let msg = watcher.next_on("fleet/dev1/status").await;
    assert_eq!((&msg.payload[..], msg.retained), (&b"online"[..], false));

    publisher.publish("fleet/dev2/presence", b"{\"online\":true}", true).await;
    watcher.next_on("fleet/dev2/presence").await;
    let mut late = Peer::ready(&url, "late", &["fleet/+/presence"]).await;
    let msg = late.next_on("fleet/dev2/presence").await;
    assert_eq!((&msg.payload[..], msg.retained), (&b"{\"online\":true}"[..], true));

    let big = bytes::Bytes::from(vec![0x5A; MAX_PAYLOAD]);
    publisher.client.publish("fleet/big", big.clone(), false).await.unwrap();
    assert_eq!(watcher.next_on("fleet/big").await.payload, big);

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, broker.port));
    assert!(first_answer(&mut raw(addr, "wrong-pass", Some((USER, "nope")))).await.is_err());
    assert!(first_answer(&mut raw(addr, "anonymous", None)).await.is_err());

    for peer in [watcher, publisher, late] {
        peer.shutdown().await;
    }
}

#[tokio::test]
async fn mosquitto_restart_client_reconnects_and_subscribes_again() {
    let mut broker = Mosquitto::start().await;
    let url = broker.url();
    let mut watcher = Peer::ready(&url, "watcher", &["fleet/#"]).await;
    let mut publisher = Peer::ready(&url, "publisher", &[]).await;

    broker.kill();
    watcher.wait_connected(false).await;
    publisher.wait_connected(false).await;

    let port = broker.port;
    broker.run_on(port).await.unwrap_or_else(|log| panic!("mosquitto did not restart on {port}: {log}"));
    watcher.wait_connected(true).await;
    publisher.wait_connected(true).await;
    publisher.publish("fleet/dev1/status", b"after restart", false).await;
    assert_eq!(&watcher.next_on("fleet/dev1/status").await.payload[..], b"after restart");

    watcher.shutdown().await;
    publisher.shutdown().await;
}

/// Capacity check, ignored by a plain `cargo test` (4,000 sockets in one process: needs `ulimit -n`
/// > 4,100); the test command (`scripts/test.sh`) runs it with the limit raised:
/// `cargo test -p flotilla-core mqtt::tests::embedded_broker_carries -- --ignored --nocapture`.
/// 2,000 devices come online over two seconds (as a fleet does after a broker restart), each
/// subscribes to its command topic and publishes a retained status; the engine sees every status
/// and then commands every device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: 2,000 simulated devices"]
async fn embedded_broker_carries_2000_devices() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const DEVICES: usize = 2000;
    const RAMP: Duration = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let broker = embedded(loopback0()).await;
    let addr = broker.local_addr();
    let mut engine = Peer::ready(&url_of(addr), "engine", &["dev/+/status"]).await;

    let stop = CancellationToken::new();
    let retries = Arc::new(AtomicUsize::new(0));
    let (got_command, mut commands) = mpsc::channel::<usize>(DEVICES);
    for i in 0..DEVICES {
        let (stop, got_command, retries) = (stop.clone(), got_command.clone(), Arc::clone(&retries));
        tokio::spawn(async move {
            tokio::time::sleep(RAMP * i as u32 / DEVICES as u32).await;
            let mut options = rumqttc::MqttOptions::new(format!("dev{i}"), "127.0.0.1", addr.port());
            options.set_credentials(USER, PASS).set_keep_alive(Duration::from_secs(30));
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        client.subscribe(format!("dev/{i}/cmd"), rumqttc::QoS::AtLeastOnce).await.unwrap();
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let status = format!("{{\"id\":{i},\"version\":\"1.0.0\",\"online\":true}}");
                        client
                            .publish(format!("dev/{i}/status"), rumqttc::QoS::AtLeastOnce, true, status)
                            .await
                            .unwrap();
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                        let _ = got_command.send(i).await;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // A real device tries again too.
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < DEVICES {
        match tokio::time::timeout(Duration::from_secs(60), engine.rx.recv()).await {
            Ok(Some(msg)) => seen.insert(msg.topic),
            _ => panic!("{} of {DEVICES} statuses after {:?}", seen.len(), started.elapsed()),
        };
    }
    let reported = started.elapsed();
    for i in 0..DEVICES {
        engine.client.publish(&format!("dev/{i}/cmd"), "{\"offer\":\"2.0.0\"}", false).await.unwrap();
    }
    let mut commanded = std::collections::HashSet::new();
    while commanded.len() < DEVICES {
        match tokio::time::timeout(Duration::from_secs(60), commands.recv()).await {
            Ok(Some(i)) => commanded.insert(i),
            _ => panic!("{} of {DEVICES} commands arrived", commanded.len()),
        };
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS")).map(str::to_owned))
        .unwrap_or_default();
    println!(
        "{DEVICES} devices reported in {reported:?} ({} connection retries), all commanded after {:?}; {rss}",
        retries.load(Ordering::Relaxed),
        started.elapsed()
    );
    stop.cancel();
    engine.shutdown().await;
    broker.stop().await;
}
