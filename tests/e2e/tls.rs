//! HTTPS and MQTT over TLS, with the site certificate pinned (issue 12 §1): a rustls client that
//! offers only what ESP-IDF's mbedTLS enables by default, pinned to the fingerprint
//! `flotilla keys tls --json` prints, fetches /health and a firmware download; another pin is
//! refused; curl `--pinnedpubkey` and Python's `ssl` with the PEM as the only CA do the same;
//! offers carry `https://` only for devices that declared TLS; the certificate survives restarts
//! in private files; MQTT over TLS reaches the embedded broker; and the engine's MQTT client
//! really connects to Debian's mosquitto over TLS with a CA file, with a pin, with a client
//! certificate, and refuses a wrong pin.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, free_port, image, require_program};

/// Trusts exactly the certificate whose DER has SHA-256 `pin` (and checks the handshake signature).
#[derive(Debug)]
struct PinnedCert {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if hex::encode(Sha256::digest(end_entity)) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("certificate does not match the pin".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client pinned to `pin` (certificate SHA-256, hex) that offers only what ESP-IDF's mbedTLS
/// enables by default: TLS 1.2 ECDHE-ECDSA with AES-GCM on P-256 (or TLS 1.3 AES-128-GCM).
fn esp_like_client(pin: &str, tls13: bool) -> tokio_rustls::TlsConnector {
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    let provider = Arc::new(CryptoProvider {
        cipher_suites: if tls13 {
            vec![cs::TLS13_AES_128_GCM_SHA256]
        } else {
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        },
        kx_groups: vec![kx_group::SECP256R1],
        ..rustls::crypto::ring::default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls13 { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS12] };
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCert { pin: pin.to_owned(), provider }))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET url` (`https://host:port/path`) over `tls`: the status and the body, or why not.
/// `GET url` over `tls`, with `Authorization: Bearer <secret>` when a device secret is given.
async fn https_get(
    url: &str,
    tls: &tokio_rustls::TlsConnector,
    secret: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("not https: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let host = authority.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let mut s = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let auth = secret.map(|s| format!("Authorization: Bearer {s}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no response head")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// `flotilla keys tls --json` of `server`.
fn keys_tls(server: &Server) -> Value {
    let out = server.cli(&["keys", "tls", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn check_in(server: &Server, mac: &str, tls: Option<bool>) -> Value {
    let mut body = json!({ "device_id": format!("dev-{}", mac.replace(':', "")), "mac": mac, "model": "demo", "chip": "esp32", "version": "1.0.0" });
    if let Some(t) = tls {
        body["tls"] = json!(t);
    }
    // Enrols on first contact; later check-ins carry the device's secret.
    let (status, answer) = server.device_check_in(&body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Checks in until an offer comes (bounded).
async fn offer(server: &Server, mac: &str, tls: Option<bool>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = check_in(server, mac, tls).await;
        if answer["update_available"] == true {
            return answer;
        }
        assert!(Instant::now() < deadline, "no offer for {mac}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn https_download_pinned_by_fingerprint_and_refused_for_another_pin() {
    let server = Server::start().await;
    let tls = keys_tls(&server);
    assert_eq!(tls["enabled"], true, "{tls:#}");
    let pin = tls["cert_sha256"].as_str().unwrap().to_owned();
    let https = tls["https_url"].as_str().unwrap().to_owned();
    assert!(https.starts_with("https://127.0.0.1:"), "{https}");
    assert_eq!(server.info.device_https_url.as_deref(), Some(https.as_str()));
    // The same in the admin API's status, and in the PEM the CLI prints.
    let status: Value = server.get_json("/api/v1/status").await;
    assert_eq!(status["tls"]["spki_sha256"], tls["spki_sha256"]);
    let pem = server.cli(&["keys", "tls", "--pem"]);
    assert!(pem.status.success());
    let pem = String::from_utf8(pem.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----") && pem.trim_end().ends_with("-----END CERTIFICATE-----"));

    for tls13 in [false, true] {
        let client = esp_like_client(&pin, tls13);
        let (status, body) = https_get(&format!("{https}/health"), &client, None).await.unwrap();
        assert_eq!(status, 200, "TLS 1.3: {tls13}");
        assert!(String::from_utf8_lossy(&body).contains("\"ok\""));
    }
    let other = esp_like_client(&"ab".repeat(32), false);
    let refused = https_get(&format!("{https}/health"), &other, None).await.unwrap_err();
    assert!(refused.contains("pin"), "{refused}");

    // A rollout: the device that declared TLS is offered https://, the others http://.
    let bytes = image("2.0.0", 150_000);
    let (status, fw) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{fw}");
    let (with_tls, without, said_no) = ("02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03");
    check_in(&server, with_tls, Some(true)).await;
    check_in(&server, without, None).await;
    check_in(&server, said_no, Some(false)).await;
    let resp = server
        .api(reqwest::Method::POST, "/api/v1/rollouts")
        .json(&json!({ "firmware": "2.0.0", "target": "all", "waves": [{"percent": 100.0}], "concurrency": 10, "start": true, "step_timeout_secs": 30 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let secure = offer(&server, with_tls, Some(true)).await;
    let url = secure["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{https}/fw/")), "{url}");
    for (mac, declared) in [(without, None), (said_no, Some(false))] {
        let plain = offer(&server, mac, declared).await;
        assert!(plain["url"].as_str().unwrap().starts_with(&format!("{}/fw/", server.info.device_url)), "{plain}");
    }
    let secret = server.device_secret(with_tls).expect("the device enrolled");
    // The download is the device's: without its secret it is refused.
    let (status, _) = https_get(url, &esp_like_client(&pin, false), None).await.unwrap();
    assert_eq!(status, 401, "a download of an enrolled device's job without its credential");
    let (status, got) = https_get(url, &esp_like_client(&pin, false), Some(&secret)).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(Sha256::digest(&got), Sha256::digest(&bytes), "the firmware over HTTPS is the image");
    assert!(https_get(url, &other, Some(&secret)).await.is_err(), "another pin gets no firmware");

    // curl pinned by public key (the form `spki_sha256_base64` is for), with the PEM as its CA
    // and only ESP-IDF's TLS 1.2 suite; and Python's ssl with the PEM as the only CA.
    require_program("curl", "--version", "curl");
    let pem_file = server.data_dir().join("server.pem");
    std::fs::write(&pem_file, &pem).unwrap();
    let pinned = format!("sha256//{}", tls["spki_sha256_base64"].as_str().unwrap());
    let curl = |pin: &str| {
        Command::new("curl")
            .args(["-sS", "--fail", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", "--cacert"])
            .arg(&pem_file)
            .args(["--pinnedpubkey", pin, "-H", &format!("Authorization: Bearer {secret}"), "-o", "-", url])
            .output()
            .unwrap()
    };
    let ok = curl(&pinned);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(Sha256::digest(&ok.stdout), Sha256::digest(&bytes));
    let wrong = curl("sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert!(!wrong.status.success(), "curl with another pinned key must fail");
    require_program("python3", "--version", "python3");
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            "import ssl,sys,urllib.request\n\
             c=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
             c.load_verify_locations(cafile=sys.argv[1])\n\
             c.maximum_version=ssl.TLSVersion.TLSv1_2\n\
             c.set_ciphers('ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384')\n\
             r=urllib.request.Request(sys.argv[2],headers={'Authorization':'Bearer '+sys.argv[3]})\n\
             sys.stdout.buffer.write(urllib.request.urlopen(r,context=c).read())",
        )
        .arg(&pem_file)
        .arg(url)
        .arg(&secret)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    assert_eq!(Sha256::digest(&py.stdout), Sha256::digest(&bytes));
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn tls_certificate_is_kept_across_restarts_in_private_files() {
    let server = Server::start().await;
    let before = keys_tls(&server);
    let (_, _, dir) = server.stop();
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.path().join("tls")), 0o700);
        assert_eq!(mode(&dir.path().join("tls/key.pem")), 0o600);
        assert_eq!(mode(&dir.path().join("tls/cert.pem")), 0o600);
    }
    let again = Server::start_in(dir).await;
    let after = keys_tls(&again);
    assert_eq!(after["cert_sha256"], before["cert_sha256"], "same certificate after a restart");
    assert_eq!(after["spki_sha256"], before["spki_sha256"]);
    let (status, _) = https_get(
        &format!("{}/health", after["https_url"].as_str().unwrap()),
        &esp_like_client(before["cert_sha256"].as_str().unwrap(), false),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
}

// ---- MQTT over TLS ---------------------------------------------------------------------------

/// An MQTT 3.1.1 CONNECT with a login.
fn connect_packet(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 30];
    for s in [client_id, user, password] {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let mut p = vec![0x10];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        p.push(b);
        if len == 0 {
            break;
        }
    }
    p.extend(body);
    p
}

#[tokio::test]
async fn mqtt_over_tls_to_the_embedded_broker_with_the_pinned_certificate() {
    let server = Server::start().await;
    let tls = keys_tls(&server);
    let url = tls["mqtt_tls_url"].as_str().unwrap();
    let addr = url.strip_prefix("mqtts://").unwrap();
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(server.data_dir().join("mqtt-credentials")).unwrap()).unwrap();
    let (user, password) = (creds["username"].as_str().unwrap(), creds["password"].as_str().unwrap());
    let pin = tls["cert_sha256"].as_str().unwrap();
    for tls13 in [false, true] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = esp_like_client(pin, tls13)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .expect("TLS to the embedded broker with the pinned certificate");
        s.write_all(&connect_packet("tls-test", user, password)).await.unwrap();
        let mut connack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut connack)).await.unwrap().unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted over TLS");
        s.write_all(&[0xc0, 0]).await.unwrap(); // PINGREQ
        let mut pong = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut pong)).await.unwrap().unwrap();
        assert_eq!(pong, [0xd0, 0]);
    }
    // Another pin: no session.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused =
        esp_like_client(&"cd".repeat(32), false).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await;
    assert!(refused.is_err());
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in `dir`.
fn make_pki(dir: &Path) {
    require_program("openssl", "version", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=flotilla test CA"],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem, ext) =
            (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
        run(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={who}")]].concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "3650",
            "-extfile",
            &ext,
        ]);
    }
}

/// Debian's mosquitto listening for MQTT over TLS only, requiring a client certificate from the
/// test CA; stopped when dropped.
struct TlsMosquitto {
    port: u16,
    log: std::path::PathBuf,
    child: std::process::Child,
}

impl TlsMosquitto {
    fn start(dir: &Path) -> TlsMosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists());
        let bin = bin.expect("mosquitto is not installed: apt-get install mosquitto (scripts/test.sh does)");
        let port = free_port();
        let log = dir.join("mosquitto.log");
        let d = dir.display();
        let conf = format!(
            "user root\npersistence false\nlog_dest file {}\nlog_type all\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
             cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
            log.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsMosquitto { port, log, child }
    }

    /// Connections it has seen so far: mosquitto 2.0 logs `New connection from` once the TLS
    /// handshake is done, and `Client connection from … failed` when it is not.
    fn attempts(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains("New connection from") || l.contains("Client connection from")).count()
    }
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn mqtt_connected(server: &Server) -> bool {
    let s: Value = server.get_json("/api/v1/status").await;
    s["mqtt"]["connected"].as_bool().unwrap()
}

/// Waits until the engine's MQTT client is connected (bounded).
async fn wait_connected(server: &Server, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mqtt_connected(server).await {
        assert!(Instant::now() < deadline, "the engine did not connect to mosquitto over TLS {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn external_broker_mosquitto_over_tls_with_ca_file_with_pin_and_refused_for_a_wrong_pin() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let broker = TlsMosquitto::start(pki.path());
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let p = |f: &str| pki.path().join(f).display().to_string();
    let client = ["--mqtt-cert".to_owned(), p("client.pem"), "--mqtt-key".to_owned(), p("client.key")];

    // Trusted by the CA file, with a client certificate (the broker requires one).
    let mut args = vec!["--mqtt".to_owned(), url.clone(), "--mqtt-ca".to_owned(), p("ca.pem")];
    args.extend(client.iter().cloned());
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    wait_connected(&server, "with --mqtt-ca").await;
    drop(server);

    // Trusted by the pinned fingerprint of the server certificate (no CA given).
    let der = {
        let pem = std::fs::read_to_string(pki.path().join("server.pem")).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let out = Command::new("openssl").args(["x509", "-in", &p("server.pem"), "-outform", "DER"]).output().unwrap();
        assert!(out.status.success() && !b64.is_empty());
        out.stdout
    };
    let pin = hex::encode(Sha256::digest(&der));
    let mut args = vec!["--mqtt".to_owned(), url.clone(), "--mqtt-pin".to_owned(), pin];
    args.extend(client.iter().cloned());
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    wait_connected(&server, "with --mqtt-pin").await;
    drop(server);

    // Another pin: the engine tries (mosquitto sees the attempts) and never connects.
    let seen = broker.attempts();
    let mut args = vec!["--mqtt".to_owned(), url, "--mqtt-pin".to_owned(), "ef".repeat(32)];
    args.extend(client.iter().cloned());
    let server = Server::start_with_args(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Two attempts: the first one ended (refused) and the client tried again.
    while broker.attempts() < seen + 2 {
        assert!(
            Instant::now() < deadline,
            "the engine did not try to connect to mosquitto twice; its log:\n{}",
            std::fs::read_to_string(&broker.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!mqtt_connected(&server).await, "a wrong pin must not connect");
}

#[tokio::test]
async fn a_silent_connection_to_the_https_port_is_closed_after_the_header_timeout() {
    let server = Server::start_with_args(&["--device-header-timeout", "1"]).await;
    let https = server.info.device_https_url.clone().expect("HTTPS is on");
    let mut tcp = tokio::net::TcpStream::connect(https.strip_prefix("https://").unwrap()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    // No ClientHello: the handshake never starts, and the header timeout ends it.
    let read = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf)).await;
    let n = read.expect("closed well within 15 s").unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the header timeout");
}

#[tokio::test]
async fn an_https_address_given_but_taken_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::support::flotilla_bin())
        .args(["serve", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--mqtt", "off", "--no-mdns"])
        .args(["--https", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr) && stderr.contains("HTTPS"), "{stderr}");
}
