//! Certificates: loading a `[[tls_certificates]]` pair (PEM chain and key),
//! checking it (readable, key matches, within its validity), picking one by
//! SNI, and the rustls `ServerConfig` built from them. Used at start, by
//! `-t` and on reload (a pair that fails keeps the old config serving).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::SignatureScheme;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions,
};
use rustls::sign::CertifiedKey;

/// A certificate within this long of its end draws a warning (`-t`, start, reload).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// One `[[tls_certificates]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate pair cannot serve. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: cannot read: {}", .path.display(), crate::sys::bare(.source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it", .0.display())]
    NoCert(PathBuf),
    #[error("{}: no PEM private key in it ({})", .0.display(), .1)]
    NoKey(PathBuf, String),
    #[error("{}: private key not usable: {}", .0.display(), .1)]
    BadKey(PathBuf, String),
    #[error("{}: not a valid X.509 certificate: {}", .0.display(), .1)]
    BadCert(PathBuf, String),
    #[error("{}: private key does not match the certificate in {}", .key.display(), .cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: certificate expired at {when} (UTC)", .path.display())]
    Expired { path: PathBuf, when: String },
    #[error("{}: certificate not valid before {when} (UTC)", .path.display())]
    NotYetValid { path: PathBuf, when: String },
    #[error("{}: certificate has no DNS name (subjectAltName)", .0.display())]
    NoNames(PathBuf),
    #[error("TLS setup: {0}")]
    Rustls(String),
}

/// A checked certificate pair.
pub struct Loaded {
    pub files: CertFiles,
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf's subjectAltName, lowercase (`*.example.org` kept as is).
    pub names: Vec<String>,
    pub not_after: SystemTime,
}

impl Loaded {
    /// A warning if the certificate ends within `EXPIRY_WARNING` of `now`.
    pub fn expiry_warning(&self, now: SystemTime) -> Option<String> {
        let left = self.not_after.duration_since(now).ok()?;
        (left < EXPIRY_WARNING).then(|| {
            format!(
                "{}: certificate expires in {} days ({} UTC)",
                self.files.cert.display(),
                left.as_secs() / 86400,
                utc(self.not_after)
            )
        })
    }
}

/// How the files are read: `std::fs::read`, or, on a reload after
/// privileges were dropped, through the daemon's privileged opener.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

fn read(path: &Path, with: ReadFile<'_>) -> Result<Vec<u8>, CertError> {
    with(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Load and check one pair, as of `now`.
pub fn load(files: &CertFiles, now: SystemTime, with: ReadFile<'_>) -> Result<Loaded, CertError> {
    let cert_pem = read(&files.cert, with)?;
    let key_pem = read(&files.key, with)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::BadCert(files.cert.clone(), e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCert(files.cert.clone()));
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| CertError::NoKey(files.key.clone(), e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::BadKey(files.key.clone(), e.to_string()))?;
    let (names, not_before, not_after) = inspect(&files.cert, leaf)?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|_| CertError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    if now > not_after {
        return Err(CertError::Expired {
            path: files.cert.clone(),
            when: utc(not_after),
        });
    }
    if now < not_before {
        return Err(CertError::NotYetValid {
            path: files.cert.clone(),
            when: utc(not_before),
        });
    }
    if names.is_empty() {
        return Err(CertError::NoNames(files.cert.clone()));
    }
    Ok(Loaded {
        files: files.clone(),
        key: Arc::new(ck),
        names,
        not_after,
    })
}

/// The leaf's DNS names and validity.
fn inspect(
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<(Vec<String>, SystemTime, SystemTime), CertError> {
    let bad = |e: String| CertError::BadCert(path.to_path_buf(), e);
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let t = |ts: i64| UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64);
    let v = x.validity();
    Ok((
        names,
        t(v.not_before.timestamp()),
        t(v.not_after.timestamp()),
    ))
}

/// `2026-12-06 10:00:00`
fn utc(t: SystemTime) -> String {
    let s = crate::log::rfc3339(t);
    s.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Picks a certificate by the client's SNI: the pairs that name it
/// exactly, else by a wildcard (`*.example.org` for `a.example.org`), else
/// all pairs (also for clients that send no SNI); of those, the first,
/// in config order, whose key can sign with a scheme the client offers
/// (so one name may have an ECDSA and an RSA pair, as nginx's two
/// `ssl_certificate`s: a client without ECDSA gets the RSA one); if none
/// can, the first (the handshake then fails as it must).
#[derive(Debug)]
pub struct BySni {
    all: Vec<Arc<CertifiedKey>>,
    names: HashMap<String, Vec<Arc<CertifiedKey>>>,
}

impl BySni {
    pub fn new(loaded: &[Loaded]) -> Option<BySni> {
        loaded.first()?;
        let all = loaded.iter().map(|l| l.key.clone()).collect();
        let mut names: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        for l in loaded {
            for n in &l.names {
                let keys = names.entry(n.clone()).or_default();
                // A name twice in one certificate is one candidate.
                if !keys.iter().any(|k| Arc::ptr_eq(k, &l.key)) {
                    keys.push(l.key.clone());
                }
            }
        }
        Some(BySni { all, names })
    }

    /// The candidates for `sni`, in config order (never empty).
    fn candidates(&self, sni: Option<&str>) -> &[Arc<CertifiedKey>] {
        let Some(host) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return &self.all;
        };
        if let Some(k) = self.names.get(&host) {
            return k;
        }
        if let Some((_, parent)) = host.split_once('.')
            && let Some(k) = self.names.get(&format!("*.{parent}"))
        {
            return k;
        }
        &self.all
    }

    /// The pair for `sni` and a client offering `schemes` (for TLS 1.2
    /// rustls has already kept only those its offered suites allow).
    pub fn pick(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Arc<CertifiedKey> {
        let keys = self.candidates(sni);
        keys.iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .unwrap_or(&keys[0])
            .clone()
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name(), hello.signature_schemes()))
    }
}

/// How long one session-ticket key encrypts new tickets (rustls's own
/// period); tickets it made are accepted for twice this, then the key is
/// gone and they are refused (the client does a full handshake).
const TICKET_KEY_PERIOD: u32 = 6 * 3600;

/// One ticketer for the life of the process: a reload keeps resumption
/// working; its keys rotate every `TICKET_KEY_PERIOD`.
fn ticketer() -> Result<Arc<dyn ProducesTickets>, CertError> {
    static T: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = T.get() {
        return Ok(t.clone());
    }
    let t = rotating_ticketer(TICKET_KEY_PERIOD)?;
    Ok(T.get_or_init(|| t).clone())
}

/// How many TLS 1.2 sessions the session-ID cache keeps (clients without
/// tickets): rustls's own default size.
const SESSION_CACHE: usize = 256;

/// One session-ID cache for the life of the process, as the ticketer: a
/// reload keeps TLS 1.2 clients without tickets resuming (as nginx's
/// shared `ssl_session_cache` survives a reload).
fn session_cache() -> Arc<dyn StoresServerSessions> {
    static C: OnceLock<Arc<dyn StoresServerSessions>> = OnceLock::new();
    C.get_or_init(|| ServerSessionMemoryCache::new(SESSION_CACHE))
        .clone()
}

/// Ticket keys made anew every `period` seconds, the one before still
/// decrypting (rustls's `TicketRotator`).
pub(crate) fn rotating_ticketer(period: u32) -> Result<Arc<dyn ProducesTickets>, CertError> {
    let t = rustls::ticketer::TicketRotator::new(period, one_key)
        .map_err(|e| CertError::Rustls(e.to_string()))?;
    Ok(Arc::new(t))
}

/// A fresh random key: ring's ticketer (ChaCha20-Poly1305), which has no
/// public constructor but its own rotating one; that rotation (6 hours)
/// never comes first when `period` is at most as long.
fn one_key() -> Result<Box<dyn ProducesTickets>, rustls::crypto::GetRandomFailed> {
    let t = rustls::crypto::ring::Ticketer::new().map_err(|_| rustls::crypto::GetRandomFailed)?;
    Ok(Box::new(Key(t)))
}

#[derive(Debug)]
struct Key(Arc<dyn ProducesTickets>);

impl ProducesTickets for Key {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// The server's TLS settings for `pairs` (at least one, read `with`),
/// checked as of `now`: TLS 1.3 and 1.2 (AEAD suites only: ring's TLS 1.2 suites are all
/// ECDHE with AES-GCM or ChaCha20-Poly1305, no CBC), ALPN `h2` (when
/// `http2`) then `http/1.1`,
/// session tickets and a session cache for resumption. Also returns
/// warnings (certificates close to their end).
pub fn server_config(
    pairs: &[CertFiles],
    now: SystemTime,
    with: ReadFile<'_>,
    http2: bool,
) -> Result<(Arc<rustls::ServerConfig>, Vec<String>), CertError> {
    let loaded = pairs
        .iter()
        .map(|p| load(p, now, with))
        .collect::<Result<Vec<_>, _>>()?;
    let warnings = loaded
        .iter()
        .filter_map(|l| l.expiry_warning(now))
        .collect();
    let resolver = BySni::new(&loaded).ok_or_else(|| CertError::Rustls("no certificate".into()))?;
    // ring: builds with a C compiler alone (aws-lc-rs would add cmake and
    // more). Deprecated only because ring has no post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CertError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    cfg.ticketer = ticketer()?;
    cfg.session_storage = session_cache();
    Ok((Arc::new(cfg), warnings))
}
