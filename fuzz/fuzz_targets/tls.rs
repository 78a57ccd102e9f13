//! Drive a TLS connection as an engine holds one (`Session::Tls`: tandem's
//! `TlsConn`, rustls inside, the HTTP/1.1 `Conn` or, by ALPN, HTTP/2 behind
//! it) with the `conn` target's script of engine events, a real rustls
//! client on the other side.
//!
//! Input layout: `[n] control[n] request-bytes...`, as `conn`'s: a limits
//! selector, a responder selector, a mode (0: ALPN http/1.1, the request
//! bytes the plaintext the client sends; 1: ALPN h2, the client's frames
//! made from the request bytes by `h2::client_stream`), a tamper byte (0:
//! none; else the ciphertext byte at offset `tamper * 7` has a bit flipped
//! on its way), a close byte (odd: the client sends close_notify once its
//! handshake is done and it has handed rustls all its plaintext), then the
//! script's ops. `Feed`
//! moves the client's ciphertext to the server; what the server writes
//! (acknowledged by the script's sends) goes to the client as it is sent,
//! and the client's answers (its handshake, its requests) follow.
//!
//! Checks: every invariant of the script (`common::run_script`); a TLS
//! session never offers a file range (records are made of bytes); unless a
//! byte was tampered with, the client never fails (what the server wrote is
//! TLS the client takes) and the plaintext it received is HTTP: responses
//! that begin `HTTP/1.1 ` (mode 0), or frames that `h2::check_output` takes
//! (mode 1).
#![no_main]

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use tandem::http::{Conn, Limits};
use tandem::tls::{CertFiles, Session, TlsConn, server_config};

mod common;

use common::*;

struct Keys {
    server: Arc<rustls::ServerConfig>,
    /// ALPN http/1.1, and h2.
    clients: [Arc<rustls::ClientConfig>; 2],
}

/// A certificate for `t.test`, made once per process.
fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("tandem-fuzz-tls.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = CertFiles {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let (server, _) =
            server_config(&[files], SystemTime::now(), &|p| std::fs::read(p), true).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = |alpn: &[u8]| {
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(c)
        };
        Keys {
            server,
            clients: [client(b"http/1.1"), client(b"h2")],
        }
    })
}

/// The client: rustls, the plaintext it sends, the ciphertext it wrote and
/// the server has not had yet, the plaintext it received.
struct Client {
    tls: rustls::ClientConnection,
    req: Vec<u8>,
    given: usize,
    out: Vec<u8>,
    /// Bytes of what the server wrote fed to the client so far.
    seen: usize,
    got: Vec<u8>,
    /// Its TLS failed (what the server wrote did not decrypt or parse).
    failed: Option<String>,
    /// Flip a bit of the ciphertext byte at this offset.
    tamper: Option<usize>,
    sent: usize,
    close_notify: bool,
}

impl Client {
    /// Take what the server wrote since the last call, hand rustls more
    /// plaintext, collect the ciphertext it has.
    fn pump(&mut self, wire: &[u8]) {
        if self.failed.is_none() {
            let mut rd = &wire[self.seen..];
            while !rd.is_empty() {
                if let Err(e) = self.tls.read_tls(&mut rd) {
                    self.failed = Some(format!("read_tls: {e}"));
                    break;
                }
                if let Err(e) = self.tls.process_new_packets() {
                    self.failed = Some(format!("{e}"));
                    break;
                }
                let mut buf = [0u8; 16384];
                loop {
                    match self.tls.reader().read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => self.got.extend_from_slice(&buf[..n]),
                    }
                }
            }
        }
        self.seen = wire.len();
        if self.failed.is_some() {
            return;
        }
        while self.given < self.req.len() {
            match self.tls.writer().write(&self.req[self.given..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.given += n,
            }
        }
        // Once the handshake is done: rustls would still flush the
        // plaintext it buffered before it, behind the alert.
        if self.close_notify && self.given == self.req.len() && !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            self.close_notify = false;
        }
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.out).is_err() {
                break;
            }
        }
    }
}

impl Peer for Client {
    fn next(&mut self, len: usize, wire: &[u8]) -> Vec<u8> {
        self.pump(wire);
        let n = len.min(self.out.len());
        let mut b: Vec<u8> = self.out.drain(..n).collect();
        if let Some(at) = self.tamper
            && (self.sent..self.sent + n).contains(&at)
        {
            b[at - self.sent] ^= 0x10;
        }
        self.sent += n;
        b
    }

    fn done(&self, wire: &[u8]) -> bool {
        self.out.is_empty()
            && (self.failed.is_some()
                || (self.seen == wire.len()
                    && self.given == self.req.len()
                    // A close_notify waits for the handshake, which may
                    // never end (a tampered byte the server waits behind).
                    && (!self.close_notify || self.tls.is_handshaking())
                    && !self.tls.wants_write()))
    }
}

struct Case {
    limits: Limits,
    responder: &'static Fuzz,
    ops: Vec<Op>,
    client: Client,
    /// HTTP/2: the largest frame the client allows.
    h2: Option<u32>,
}

fn decode(data: &[u8]) -> Option<Case> {
    let Input {
        mut u,
        req,
        limits,
        responder,
    } = input(data)?;
    let h2 = u.arbitrary::<u8>().unwrap_or(0) % 2 == 1;
    let tamper = match u.arbitrary::<u8>().unwrap_or(0) {
        0 => None,
        t => Some(t as usize * 7),
    };
    let close_notify = u.arbitrary::<u8>().unwrap_or(0) % 2 == 1;
    let (req, max_frame) = if h2 {
        let (stream, max) = h2::client_stream(req);
        (stream, Some(max))
    } else {
        (req.to_vec(), None)
    };
    let ops = ops(&mut u);
    let name = ServerName::try_from("t.test").unwrap();
    let tls = rustls::ClientConnection::new(keys().clients[usize::from(h2)].clone(), name).ok()?;
    Some(Case {
        limits,
        responder,
        ops,
        client: Client {
            tls,
            req,
            given: 0,
            out: Vec::new(),
            seen: 0,
            got: Vec::new(),
            failed: None,
            tamper,
            sent: 0,
            close_notify,
        },
        h2: max_frame,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(mut case) = decode(data) else { return };
    CHECKED.with_borrow_mut(Vec::clear);
    let mut env = Env::new(case.responder, case.limits.clone());
    let conn = Conn::new(
        "192.0.2.7:40000".parse().unwrap(),
        env.now.instant(),
        &env.limits,
    );
    let tls = TlsConn::new(keys().server.clone(), conn, Arc::default());
    let session = Session::Tls(Box::new(tls));
    if debug() {
        eprintln!(
            "limits: {:?}\nops: {:?}\nrequest: \"{}\"\ntamper at: {:?}",
            case.limits,
            case.ops,
            case.client.req.escape_ascii(),
            case.client.tamper
        );
    }
    let wire = run_script(&mut env, session, &case.ops, &mut case.client);
    let c = &mut case.client;
    c.pump(&wire);
    if debug() {
        eprintln!(
            "client failed: {:?}\nplaintext received: \"{}\"",
            c.failed,
            c.got.escape_ascii()
        );
    }
    if c.tamper.is_some_and(|at| at < c.sent) {
        return;
    }
    if let Some(e) = &c.failed {
        panic!("the client's TLS failed on what the server wrote: {e}");
    }
    match case.h2 {
        Some(max_frame) => h2::check_output(&c.got, max_frame),
        None => assert!(
            c.got.is_empty() || c.got.starts_with(b"HTTP/1.1 "),
            "plaintext that is not an HTTP/1.1 response: \"{}\"",
            c.got[..c.got.len().min(200)].escape_ascii()
        ),
    }
});
