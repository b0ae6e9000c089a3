//! The site's TLS certificate (HTTPS on the device server, MQTT over TLS on the embedded broker)
//! and fingerprint pinning for the clients that talk to a self-signed peer.
//!
//! On first start a self-signed ECDSA P-256 certificate is made with rcgen and kept in
//! `<data>/tls/` (the directory 0700, `key.pem` and `cert.pem` 0600). Its subject alternative
//! names are the host name (and `<host>.local`), `localhost` and every local address; when they
//! change (a new DHCP lease, another network) the certificate is made again **with the same key**,
//! so a device that pinned the public key (SPKI) keeps trusting it, while one that pinned the
//! certificate itself must be given the new one.
//!
//! Served with rustls + ring (the workspace's one TLS stack): TLS 1.2 and 1.3, with the suites
//! mbedTLS on ESP32 enables by default — TLS 1.2 `ECDHE-ECDSA-AES128-GCM-SHA256` and
//! `ECDHE-ECDSA-AES256-GCM-SHA384`, TLS 1.3 `TLS_AES_128_GCM_SHA256` and `TLS_AES_256_GCM_SHA384`.
//!
//! Fingerprints are lowercase hex SHA-256, of the certificate's DER (`cert_sha256`) and of its
//! SubjectPublicKeyInfo DER (`spki_sha256`, also base64 for curl's `--pinnedpubkey sha256//…`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::secrets;

/// File names under `<data>/tls/`.
const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";
/// The names and addresses the certificate was made for, one a line (to tell when they changed).
const NAMES_FILE: &str = "names.txt";

/// The site certificate, its key and fingerprints, ready to serve.
#[derive(Clone)]
pub struct SiteTls {
    cert_der: CertificateDer<'static>,
    key_der: Arc<Vec<u8>>,
    cert_pem: String,
    cert_sha256: String,
    spki_sha256: String,
    spki_sha256_base64: String,
    names: Vec<String>,
}

impl std::fmt::Debug for SiteTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTls")
            .field("cert_sha256", &self.cert_sha256)
            .field("spki_sha256", &self.spki_sha256)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn tls_error(what: impl std::fmt::Display) -> CoreError {
    CoreError::Refused(format!("TLS certificate: {what}"))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The host name (as the kernel has it), when it is a usable DNS label.
fn host_name() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok())?;
    let h = h.trim().to_ascii_lowercase();
    (!h.is_empty() && h.len() <= 63 && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .then_some(h)
}

/// The names and addresses the certificate covers now: the host name and `<host>.local`,
/// `localhost`, and every address of every interface (loopback included), sorted.
pub fn local_names() -> Vec<String> {
    let mut names = BTreeSet::new();
    names.insert("localhost".to_owned());
    if let Some(h) = host_name() {
        if !h.ends_with(".local") {
            names.insert(format!("{h}.local"));
        }
        names.insert(h);
    }
    names.insert("127.0.0.1".to_owned());
    names.insert("::1".to_owned());
    match if_addrs::get_if_addrs() {
        Ok(ifs) => {
            for i in ifs {
                let ip = i.ip();
                // A link-local IPv6 address needs its zone to be used: not a name for a URL.
                if let IpAddr::V6(v6) = ip
                    && v6.segments()[0] & 0xffc0 == 0xfe80
                {
                    continue;
                }
                names.insert(ip.to_string());
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list local addresses for the TLS certificate"),
    }
    names.into_iter().collect()
}

impl SiteTls {
    /// Loads the certificate in `dir` (`<data>/tls`), making the key and certificate on first
    /// run, and the certificate again (same key) when the local names changed.
    pub fn load_or_create(dir: &Path) -> Result<SiteTls> {
        SiteTls::load_or_create_for(dir, local_names())
    }

    /// [`SiteTls::load_or_create`] for the given names (tests).
    pub fn load_or_create_for(dir: &Path, names: Vec<String>) -> Result<SiteTls> {
        secrets::private_dir(dir)?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let names_path = dir.join(NAMES_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => {
                secrets::tighten_secret(&key_path);
                KeyPair::from_pem(&pem).map_err(|e| {
                    tls_error(format!(
                        "{} is not an ECDSA P-256 key in PEM ({e}); move it away to have a new one made",
                        key_path.display()
                    ))
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(tls_error)?;
                secrets::write_private(&key_path, key.serialize_pem().as_bytes())?;
                tracing::info!(path = %key_path.display(), "made the site's TLS key");
                key
            }
            Err(e) => return Err(CoreError::io(format!("cannot read {}", key_path.display()), e)),
        };
        let wanted = names.join("\n");
        let had = std::fs::read_to_string(&names_path).ok();
        let existing = match std::fs::read_to_string(&cert_path) {
            Ok(pem) if had.as_deref().map(str::trim) == Some(wanted.as_str()) => {
                secrets::tighten_secret(&cert_path);
                match cert_der_from_pem(&pem) {
                    Some(der) if spki_of_cert(&der) == Some(key.subject_public_key_info().as_slice()) => {
                        Some((pem, der))
                    }
                    _ => {
                        tracing::warn!(path = %cert_path.display(), "the TLS certificate does not match the key: making it again");
                        None
                    }
                }
            }
            Ok(_) => {
                tracing::info!(names = %names.join(" "), "the local names changed: making the TLS certificate again (same key)");
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(CoreError::io(format!("cannot read {}", cert_path.display()), e)),
        };
        let (cert_pem, cert_der) = match existing {
            Some(c) => c,
            None => {
                let cert = make_certificate(&key, &names)?;
                let pem = cert.pem();
                secrets::write_private(&cert_path, pem.as_bytes())?;
                secrets::write_private(&names_path, wanted.as_bytes())?;
                (pem, cert.der().clone())
            }
        };
        let spki = key.subject_public_key_info();
        use base64::Engine as _;
        Ok(SiteTls {
            cert_sha256: sha256_hex(&cert_der),
            spki_sha256: sha256_hex(&spki),
            spki_sha256_base64: base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki)),
            cert_der,
            key_der: Arc::new(key.serialize_der()),
            cert_pem,
            names,
        })
    }

    /// The certificate in PEM (what `esp_https_ota`'s `cert_pem` takes).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }
    /// SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex.
    pub fn spki_sha256(&self) -> &str {
        &self.spki_sha256
    }
    /// SHA-256 of the SubjectPublicKeyInfo DER, base64 (curl `--pinnedpubkey sha256//<this>`).
    pub fn spki_sha256_base64(&self) -> &str {
        &self.spki_sha256_base64
    }
    /// The names and addresses the certificate covers.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A rustls server configuration with this certificate, offering `alpn` protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
        let resolver = Arc::new(SiteResolver { current: std::sync::RwLock::new(self.certified_key()?) });
        server_config_with(resolver, alpn)
    }

    /// The certificate and its signing key, as rustls serves them.
    fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.as_ref().clone()));
        let signer = device_provider().key_provider.load_private_key(key).map_err(tls_error)?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![self.cert_der.clone()], signer)))
    }
}

/// rustls server configuration serving what `resolver` holds now (TLS 1.2 and 1.3, the device
/// suites), offering `alpn` protocols.
fn server_config_with(resolver: Arc<SiteResolver>, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(device_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // Our order, not the client's: AES-128-GCM first. OpenSSL, curl and most desktop clients list
    // AES-256 first; AES-128 is as safe here and costs both ends about a third less per byte
    // (10 AES rounds instead of 14), which is what bounds serving firmware over TLS.
    config.ignore_client_order = true;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The certificate a server configuration hands out: replaced in place when it is made again,
/// so listeners keep running and new handshakes get the new one.
#[derive(Debug)]
struct SiteResolver {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SiteResolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// ring with only the suites ESP-IDF's mbedTLS enables by default for an ECDSA certificate, in
/// the server's order of preference (AES-128 before AES-256).
pub fn device_provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

fn make_certificate(key: &KeyPair, names: &[String]) -> Result<rcgen::Certificate> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let cn = names.iter().find(|n| n.parse::<IpAddr>().is_err() && *n != "localhost").cloned();
    dn.push(DnType::CommonName, format!("Flotilla on {}", cn.as_deref().unwrap_or("this host")));
    dn.push(DnType::OrganizationName, "Flotilla (self-signed)");
    params.distinguished_name = dn;
    for n in names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => match n.clone().try_into() {
                Ok(s) => SanType::DnsName(s),
                Err(_) => continue,
            },
        };
        params.subject_alt_names.push(san);
    }
    // A device without a clock believes it is 1970: valid from then, and with no end
    // (RFC 5280 §4.1.2.5: 99991231235959Z), so no fleet breaks on an expiry date.
    params.not_before = rcgen::date_time_ymd(1970, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.self_signed(key).map_err(tls_error)
}

/// The first CERTIFICATE block of `pem`, as DER.
pub fn cert_der_from_pem(pem: &str) -> Option<CertificateDer<'static>> {
    certs_from_pem(pem).into_iter().next()
}

/// Every CERTIFICATE block of `pem`, as DER.
pub fn certs_from_pem(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(|c| c.ok()).collect()
}

/// One DER element: (tag, whole element, contents, what follows it).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The DER element at the start of `der`.
fn der_element(der: &[u8]) -> Option<Element<'_>> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, der.get(..end)?, der.get(head..end)?, der.get(end..)?))
}

/// The SubjectPublicKeyInfo DER of an X.509 certificate's DER.
pub fn spki_of_cert(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, _, cert_body, _) = der_element(cert)? else { return None };
    let (0x30, _, tbs, _) = der_element(cert_body)? else { return None };
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject, then the SPKI.
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest)?.3;
    }
    for _ in 0..5 {
        rest = der_element(rest)?.3;
    }
    let (0x30, spki, _, _) = der_element(rest)? else { return None };
    Some(spki)
}

/// A pinned SHA-256 fingerprint: 64 hex digits (colons and case ignored), compared with both the
/// certificate's and its public key's (SPKI) fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin([u8; 32]);

impl std::str::FromStr for Pin {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Pin, String> {
        let clean: String = s.trim().chars().filter(|c| *c != ':').collect();
        let clean = clean.strip_prefix("sha256/").unwrap_or(&clean);
        let bytes = hex::decode(clean).map_err(|_| {
            format!("`{s}` is not a SHA-256 fingerprint (64 hex digits, of the certificate or of its public key)")
        })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            format!("`{s}` is not a SHA-256 fingerprint (64 hex digits, of the certificate or of its public key)")
        })?;
        Ok(Pin(arr))
    }
}

impl Pin {
    /// Does `cert` (DER) have this fingerprint, of itself or of its public key?
    pub fn matches(&self, cert: &[u8]) -> bool {
        if Sha256::digest(cert).as_slice() == self.0 {
            return true;
        }
        spki_of_cert(cert).is_some_and(|spki| Sha256::digest(spki).as_slice() == self.0)
    }
}

/// A server certificate verifier that trusts exactly the peer whose certificate or public key has
/// the pinned fingerprint (names and dates are not checked: the pin is the identity), and still
/// checks that the peer holds the key (the handshake signature).
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(pin: Pin, provider: Arc<CryptoProvider>) -> PinnedVerifier {
        PinnedVerifier { pin, provider }
    }
}

impl rustls::client::danger::ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.pin.matches(end_entity) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (SHA-256 {}) matches neither the pinned certificate nor public key fingerprint",
                sha256_hex(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Where the site certificate lives in a data dir.
pub fn dir_of(data_root: &Path) -> PathBuf {
    data_root.join("tls")
}

/// The engine's TLS: the site certificate and where it is served. The certificate is made
/// again (same key) when the local names change ([`TlsRuntime::refresh`]); every listener's
/// configuration serves the current one.
#[derive(Debug)]
pub struct TlsRuntime {
    site: std::sync::RwLock<SiteTls>,
    dir: PathBuf,
    resolver: Arc<SiteResolver>,
    /// Where the device server's HTTPS listener is bound, when it is on.
    pub https_addr: Option<SocketAddr>,
    /// `https://host:port` devices use, when HTTPS is on.
    pub https_url: Option<String>,
    /// Where the embedded broker listens for MQTT over TLS, once it does.
    pub mqtt_tls_addr: OnceLock<SocketAddr>,
}

impl TlsRuntime {
    /// `site`, loaded from `dir`, served from then on.
    pub fn new(
        site: SiteTls,
        dir: PathBuf,
        https_addr: Option<SocketAddr>,
        https_url: Option<String>,
    ) -> Result<TlsRuntime> {
        let resolver = Arc::new(SiteResolver { current: std::sync::RwLock::new(site.certified_key()?) });
        Ok(TlsRuntime {
            site: std::sync::RwLock::new(site),
            dir,
            resolver,
            https_addr,
            https_url,
            mqtt_tls_addr: OnceLock::new(),
        })
    }

    /// The certificate served now.
    pub fn site(&self) -> Option<SiteTls> {
        self.site.read().ok().map(|s| s.clone())
    }

    /// A server configuration that serves the current certificate, whatever it becomes.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
        server_config_with(Arc::clone(&self.resolver), alpn)
    }

    /// Makes the certificate again (same key) when the local names are no longer those it was
    /// made for; true when it did. Blocking (file I/O): call it from a blocking thread.
    pub fn refresh(&self) -> Result<bool> {
        self.refresh_for(local_names())
    }

    /// [`TlsRuntime::refresh`] for the given names (tests).
    pub fn refresh_for(&self, names: Vec<String>) -> Result<bool> {
        if self.site().is_some_and(|s| s.names() == names.as_slice()) {
            return Ok(false);
        }
        let site = SiteTls::load_or_create_for(&self.dir, names)?;
        let key = site.certified_key()?;
        if let Ok(mut current) = self.resolver.current.write() {
            *current = key;
        }
        if let Ok(mut s) = self.site.write() {
            *s = site;
        }
        Ok(true)
    }
}

/// `<scheme>://<host of url>:<port>`: the host devices already use for `url` (the device server's
/// or the broker's), with another scheme and port.
pub fn same_host(url: &str, scheme: &str, port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        authority.split_once(']').map_or(authority, |(h, _)| h).to_owned() + "]"
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned()
    };
    format!("{scheme}://{host}:{port}")
}

/// How the engine's MQTT client trusts an external `mqtts://` broker, and its own certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) to trust instead of the system's roots (`--mqtt-ca`).
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the broker whose certificate or public key has this SHA-256 (`--mqtt-pin`).
    pub pin: Option<Pin>,
    /// PEM certificate (chain) and key the client presents (`--mqtt-cert`, `--mqtt-key`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl ClientTls {
    /// Is anything set (then the broker URL must be `mqtts://`)?
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.pin.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }

    /// The rustls client configuration: a pin wins over a CA file, which wins over the system's
    /// roots. Errors name the file or setting.
    pub fn client_config(&self) -> std::result::Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if let Some(pin) = &self.pin {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin.clone(), provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(ca) = &self.ca_file {
                let pem = std::fs::read_to_string(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
                let certs = certs_from_pem(&pem);
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("{} holds no usable CA certificate (PEM)", ca.display()));
                }
            } else {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                    return Err(format!(
                        "no trusted root certificates found on this system{why}; give --mqtt-ca or --mqtt-pin"
                    ));
                }
            }
            builder.with_root_certificates(roots)
        };
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                use rustls::pki_types::pem::PemObject;
                let pem = std::fs::read_to_string(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
                let chain = certs_from_pem(&pem);
                if chain.is_empty() {
                    return Err(format!("{} holds no certificate (PEM)", cert.display()));
                }
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{} holds no usable private key (PEM): {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| format!("client certificate: {e}"))
            }
            _ => Err("a client certificate needs both --mqtt-cert and --mqtt-key".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn names() -> Vec<String> {
        vec!["127.0.0.1".into(), "flotilla-test".into(), "localhost".into()]
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tls_cert_is_made_once_kept_private_and_remade_with_the_same_key_when_names_change() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_of(tmp.path());
        let a = SiteTls::load_or_create_for(&dir, names()).unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
            assert_eq!(mode(&dir.join(CERT_FILE)), 0o600);
        }
        let b = SiteTls::load_or_create_for(&dir, names()).unwrap();
        assert_eq!((a.cert_sha256(), a.spki_sha256()), (b.cert_sha256(), b.spki_sha256()));
        let mut more = names();
        more.push("10.1.2.3".into());
        let c = SiteTls::load_or_create_for(&dir, more).unwrap();
        assert_ne!(c.cert_sha256(), a.cert_sha256(), "a new certificate for new names");
        assert_eq!(c.spki_sha256(), a.spki_sha256(), "with the same key");
        let der = cert_der_from_pem(c.cert_pem()).unwrap();
        assert_eq!(sha256_hex(&der), c.cert_sha256());
        assert_eq!(spki_of_cert(&der).map(sha256_hex).as_deref(), Some(c.spki_sha256()));
    }

    #[test]
    fn tls_pin_matches_the_cert_or_its_key_only() {
        let tmp = tempfile::tempdir().unwrap();
        let t = SiteTls::load_or_create_for(&dir_of(tmp.path()), names()).unwrap();
        let der = cert_der_from_pem(t.cert_pem()).unwrap();
        let by_cert: Pin = t.cert_sha256().parse().unwrap();
        let by_key: Pin = t.spki_sha256().to_uppercase().parse().unwrap();
        assert!(by_cert.matches(&der) && by_key.matches(&der));
        let other: Pin = "00".repeat(32).parse().unwrap();
        assert!(!other.matches(&der));
        assert!("abc".parse::<Pin>().is_err());
        assert!(t.server_config(&[b"http/1.1"]).is_ok());
    }

    #[test]
    fn tls_runtime_serves_the_certificate_made_again_for_new_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_of(tmp.path());
        let site = SiteTls::load_or_create_for(&dir, names()).unwrap();
        let rt = TlsRuntime::new(site.clone(), dir, None, None).unwrap();
        assert!(rt.server_config(&[]).is_ok());
        assert!(!rt.refresh_for(names()).unwrap(), "same names: nothing to do");
        let mut more = names();
        more.insert(0, "10.9.8.7".into());
        assert!(rt.refresh_for(more.clone()).unwrap());
        let now = rt.site().unwrap();
        assert_eq!(now.names(), more.as_slice());
        assert_ne!(now.cert_sha256(), site.cert_sha256());
        assert_eq!(now.spki_sha256(), site.spki_sha256(), "same key");
        let served = rt.resolver.current.read().unwrap().cert[0].clone();
        assert_eq!(sha256_hex(&served), now.cert_sha256(), "handshakes get the new certificate");
    }

    #[test]
    fn tls_urls_keep_the_host_devices_use() {
        assert_eq!(same_host("http://10.0.0.5:8070", "https", 8443), "https://10.0.0.5:8443");
        assert_eq!(same_host("http://[fd00::1]:8070/x", "https", 1), "https://[fd00::1]:1");
        assert_eq!(same_host("mqtt://u:p@host.lan:1883", "mqtts", 8883), "mqtts://host.lan:8883");
        assert_eq!(same_host("http://flotilla.lan", "https", 8443), "https://flotilla.lan:8443");
    }

    #[test]
    fn tls_client_settings_name_what_is_wrong() {
        let half = ClientTls { client_cert: Some("c.pem".into()), ..ClientTls::default() };
        assert!(half.client_config().unwrap_err().contains("--mqtt-key"));
        let ca = ClientTls { ca_file: Some("/nonexistent/ca.pem".into()), ..ClientTls::default() };
        assert!(ca.client_config().unwrap_err().contains("/nonexistent/ca.pem"));
        let pinned = ClientTls { pin: Some("ab".repeat(32).parse().unwrap()), ..ClientTls::default() };
        assert!(pinned.client_config().is_ok());
    }

    /// Runs a handshake between `client` and `server` in memory and returns the suite they chose.
    fn handshake(client: rustls::ClientConfig, server: Arc<rustls::ServerConfig>) -> rustls::SupportedCipherSuite {
        let name = ServerName::try_from("localhost").expect("a valid name");
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
        let mut s = rustls::ServerConnection::new(server).expect("server");
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("client writes");
            }
            s.read_tls(&mut buf.as_slice()).expect("server reads");
            s.process_new_packets().expect("server handshake");
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("server writes");
            }
            c.read_tls(&mut buf.as_slice()).expect("client reads");
            c.process_new_packets().expect("client handshake");
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking(), "the handshake did not finish");
        let suite = s.negotiated_cipher_suite().expect("a suite");
        assert_eq!(Some(suite), c.negotiated_cipher_suite());
        suite
    }

    #[test]
    fn tls_the_server_picks_aes_128_even_when_the_client_prefers_aes_256() {
        use rustls::crypto::ring::cipher_suite as cs;
        let dir = tempfile::tempdir().expect("tempdir");
        let site = SiteTls::load_or_create_for(dir.path(), names()).expect("cert");
        let pin: Pin = site.cert_sha256().parse().expect("pin");
        // OpenSSL's order: AES-256 first.
        for (versions, suites, expected) in [
            (
                &rustls::version::TLS13,
                vec![cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256],
                "TLS13_AES_128_GCM_SHA256",
            ),
            (
                &rustls::version::TLS12,
                vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ),
            // A client that offers only AES-256 still gets it.
            (&rustls::version::TLS13, vec![cs::TLS13_AES_256_GCM_SHA384], "TLS13_AES_256_GCM_SHA384"),
        ] {
            let provider =
                Arc::new(CryptoProvider { cipher_suites: suites, ..rustls::crypto::ring::default_provider() });
            let client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&[versions])
                .expect("versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin.clone(), provider)))
                .with_no_client_auth();
            let suite = handshake(client, site.server_config(&[]).expect("server config"));
            assert_eq!(format!("{:?}", suite.suite()), expected);
        }
    }

    #[test]
    fn tls_a_damaged_key_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_of(tmp.path());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(KEY_FILE), "not a key").unwrap();
        let e = SiteTls::load_or_create_for(&dir, names()).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
    }
}
