//! TLS for the tests: certificates made at test time (rcgen for ECDSA
//! P-256, the openssl CLI for RSA 2048), a rustls client over a
//! `TcpStream`, and the addresses the raw client [`super::Conn`] speaks
//! TLS to (a server started with an engine named `ENGINE+tls`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::*;

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A certificate and key in PEM files, and the certificate's DER.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

/// A self-signed certificate for `names` with `key`, valid until `days`
/// from now (negative: expired).
pub fn pair_with(dir: &Path, stem: &str, names: &[&str], days: i64, key: rcgen::KeyPair) -> Pair {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    let p = Pair {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
        der: cert.der().clone(),
    };
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

/// A self-signed ECDSA P-256 certificate for `names`.
pub fn ec_pair(dir: &Path, stem: &str, names: &[&str], days: i64) -> Pair {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    pair_with(dir, stem, names, days, key)
}

pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// A self-signed RSA 2048 certificate for `name`: the key made by the
/// openssl CLI (ring cannot generate RSA keys), the certificate by rcgen.
/// None when openssl is not installed.
pub fn rsa_pair(dir: &Path, stem: &str, name: &str) -> Option<Pair> {
    rsa_pair_for(dir, stem, &[name])
}

/// [`rsa_pair`] for several names (an IP address among them is an IP
/// subjectAltName).
pub fn rsa_pair_for(dir: &Path, stem: &str, names: &[&str]) -> Option<Pair> {
    if !have("openssl") {
        skip("openssl CLI not installed");
        return None;
    }
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl genpkey: {out:?}");
    let pem = String::from_utf8(out.stdout).unwrap();
    let key = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    Some(pair_with(dir, stem, names, 30, key))
}

pub fn cert_entry(p: &Pair) -> String {
    format!(
        "[[tls_certificates]]\ncert = {}\nkey = {}\n",
        toml_str(&p.cert.display().to_string()),
        toml_str(&p.key.display().to_string())
    )
}

/// Config lines for a TLS listener on an ephemeral port with `pairs`.
pub fn tls_config(extra: &str, pairs: &[&Pair]) -> String {
    let mut s = format!("tls_listen = [\"127.0.0.1:0\"]\n{extra}\n");
    for p in pairs {
        s.push_str(&cert_entry(p));
    }
    s
}

/// What most TLS tests start from: the standard [`Site`], a temporary
/// directory of certificates, and in it one ECDSA pair for `ec.test`
/// (stem `ec`, 90 days). Destructure it: `let TlsSite { site, certs, ec }`.
pub struct TlsSite {
    pub site: Site,
    pub certs: tempfile::TempDir,
    pub ec: Pair,
}

impl TlsSite {
    pub fn new() -> TlsSite {
        let site = Site::new();
        let certs = tempfile::tempdir().unwrap();
        let ec = ec_pair(certs.path(), "ec", &["ec.test"], 90);
        TlsSite { site, certs, ec }
    }
}

/// The TLS listener's address (its `listening on ADDR (TLS)` line).
pub fn tls_addr(srv: &Server) -> SocketAddr {
    assert!(
        srv.wait_stderr("(TLS)", START_TIMEOUT),
        "{}",
        srv.stderr_text()
    );
    let text = srv.stderr_text();
    let line = text.lines().find(|l| l.contains("(TLS)")).unwrap();
    listening_addrs(line)[0]
}

// ---------------------------------------------------------------------------
// A rustls client over a TcpStream
// ---------------------------------------------------------------------------

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trusts exactly `roots`; TLS 1.3 and 1.2, or only `version`.
pub fn client(
    roots: &[&Pair],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let versions: Vec<_> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Trusts exactly `roots` but can use RSA certificates only, as a client
/// without ECDSA does: with `TLS13`, RSA signature schemes alone in its
/// hello; with `TLS12`, ECDHE-RSA suites alone (and every scheme).
pub fn rsa_only_client(
    roots: &[&Pair],
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    use rustls::SignatureScheme as S;
    let mut p = (*provider()).clone();
    if version == &rustls::version::TLS13 {
        let rsa = |s: &S| {
            matches!(
                s,
                S::RSA_PSS_SHA256
                    | S::RSA_PSS_SHA384
                    | S::RSA_PSS_SHA512
                    | S::RSA_PKCS1_SHA256
                    | S::RSA_PKCS1_SHA384
                    | S::RSA_PKCS1_SHA512
            )
        };
        let base = p.signature_verification_algorithms;
        let mapping: Vec<_> = base
            .mapping
            .iter()
            .filter(|(s, _)| rsa(s))
            .copied()
            .collect();
        p.signature_verification_algorithms = rustls::crypto::WebPkiSupportedAlgorithms {
            all: base.all,
            mapping: Box::leak(mapping.into_boxed_slice()),
        };
    } else {
        p.cipher_suites.retain(|s| {
            matches!(
                s.suite(),
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                    | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            )
        });
    }
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let mut c = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Accepts any certificate: for looking at which one a server presents
/// to a name it has none for.
#[derive(Debug)]
pub struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn any_cert_client() -> Arc<ClientConfig> {
    let c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    Arc::new(c)
}

pub struct Tls {
    pub s: StreamOwned<ClientConnection, TcpStream>,
    pub buf: Vec<u8>,
}

impl Tls {
    /// Connect and finish the handshake (`sni`: a name, or an IP address
    /// for none).
    pub fn try_connect(addr: SocketAddr, sni: &str, cfg: Arc<ClientConfig>) -> io::Result<Tls> {
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let conn = ClientConnection::new(cfg, name).map_err(io::Error::other)?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Tls { s, buf: Vec::new() })
    }

    pub fn connect(addr: SocketAddr, sni: &str, cfg: Arc<ClientConfig>) -> Tls {
        Tls::try_connect(addr, sni, cfg).unwrap_or_else(|e| panic!("TLS to {addr} as {sni}: {e}"))
    }

    pub fn peer_cert(&self) -> CertificateDer<'static> {
        self.s.conn.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
        self.s.flush().unwrap();
    }

    pub fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 64 * 1024];
        match self.s.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) => panic!("TLS read: {e}"),
        }
    }

    /// One response (HEAD, 304, 204 without a body; else Content-Length).
    pub fn response(&mut self, method: &str) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill() > 0, "EOF before a response head");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut r = parse_response_head(&head).unwrap();
        let len: usize = match r.header("content-length") {
            _ if method == "HEAD" || r.status == 304 || r.status == 204 => 0,
            Some(l) => l.parse().unwrap(),
            None => 0,
        };
        while self.buf.len() < len {
            assert!(self.fill() > 0, "EOF in a body\n{head}");
        }
        r.body = self.buf.drain(..len).collect();
        r
    }

    pub fn get(&mut self, path: &str, extra: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes());
        self.response("GET")
    }
}

/// Read until EOF (or a reset / TLS error, also an end); Err if still open
/// after `timeout`.
pub fn wait_closed(s: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open after {timeout:?}; got {}", show(&got)));
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut tmp) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(format!("still open after {timeout:?}; got {}", show(&got)));
            }
            Err(_) => return Ok(got),
        }
    }
}

// ---------------------------------------------------------------------------
// `ENGINE+tls`: servers the raw client speaks TLS to
// ---------------------------------------------------------------------------

/// The name a `ENGINE+tls` server's certificate is for (it also names
/// 127.0.0.1, so that clients given only the address can check it).
pub const TLS_NAME: &str = "tls.test";

/// TLS listeners of running `ENGINE+tls` servers, with a client config
/// that trusts their certificate.
static TLS_PEERS: Mutex<Vec<(SocketAddr, Arc<ClientConfig>)>> = Mutex::new(Vec::new());

/// Make `Conn` speak TLS to `addr` from now on, trusting `pair`.
pub fn register(addr: SocketAddr, pair: &Pair) {
    TLS_PEERS
        .lock()
        .unwrap()
        .push((addr, client(&[pair], None)));
}

pub fn unregister(addr: SocketAddr) {
    TLS_PEERS.lock().unwrap().retain(|(a, _)| *a != addr);
}

/// The client config for `addr` when a `ENGINE+tls` server listens there.
pub fn client_for(addr: SocketAddr) -> Option<Arc<ClientConfig>> {
    let peers = TLS_PEERS.lock().unwrap();
    peers
        .iter()
        .find(|(a, _)| *a == addr)
        .map(|(_, c)| c.clone())
}

/// A finished TLS handshake as `TLS_NAME` on `stream`.
pub fn handshake(cfg: Arc<ClientConfig>, stream: &mut TcpStream) -> Box<ClientConnection> {
    let name = ServerName::try_from(TLS_NAME).unwrap();
    let mut c = Box::new(ClientConnection::new(cfg, name).unwrap());
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    while c.is_handshaking() {
        if let Err(e) = c.complete_io(stream) {
            panic!("TLS handshake with {:?}: {e}", stream.peer_addr());
        }
    }
    c
}

/// For `Server::launch` of `ENGINE+tls`: the config lines that add a TLS
/// listener with a certificate made in `dir` (`tls_listen` first, among
/// the top-level keys; the certificate's table last), and that pair.
pub fn tls_server_lines(dir: &Path, cfg_extra: &str) -> (String, Pair) {
    let pair = ec_pair(dir, "tls", &[TLS_NAME, "127.0.0.1"], 90);
    let lines = format!(
        "tls_listen = [\"127.0.0.1:0\"]\n{cfg_extra}\n{}",
        cert_entry(&pair)
    );
    (lines, pair)
}
