//! `TlsConn` driven in memory against a rustls client: no socket, no clock.

use std::any::Any;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rustls::pki_types::ServerName;

use super::*;
use crate::http::reply::FileRange;
use crate::http::{Body, BufferPool, Notes, Now, Reply, Request, Segment, Status};
use crate::log::Level;
use crate::metrics::WorkerCounters;

const BIG: usize = 1 << 20;

/// `/big`: a 1 MiB file body (a memfd); anything else: a few bytes.
struct Mem {
    big: Arc<File>,
}

impl Respond for Mem {
    fn respond(&self, req: &Request<'_>, _: &Now, _: &mut dyn Any, _: &mut Notes) -> Reply {
        let body = match req.target {
            "/big" => Body::File(FileRange {
                file: self.big.clone(),
                offset: 0,
                len: BIG as u64,
            }),
            _ => Body::Bytes(Bytes::from_static(b"small")),
        };
        Reply::new(Status::OK, body)
    }
}

fn pattern(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

struct Env {
    mem: Mem,
    local: (),
    limits: Limits,
    now: Now,
    notes: Notes,
    stats: WorkerCounters,
    pool: BufferPool,
    fds: crate::http::FdBudget,
    _dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl Env {
    fn new() -> Env {
        let data: Vec<u8> = (0..BIG).map(pattern).collect();
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = CertFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let (server, _) =
            server_config(&[files], SystemTime::now(), &|p| std::fs::read(p), true).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Env {
            mem: Mem {
                big: crate::http::memfd(c"tandem-tls-test", &data),
            },
            local: (),
            limits: Limits::small(),
            now: Now::new(Instant::now(), SystemTime::now()),
            notes: Notes::new(Level::Debug),
            stats: WorkerCounters::default(),
            pool: BufferPool::default(),
            fds: crate::http::FdBudget::unlimited(),
            _dir: dir,
            server,
            client: Arc::new(client),
        }
    }

    fn ctx(&mut self) -> Ctx<'_> {
        self.ctx_counting(None)
    }

    /// A context counting into `stats` (a registry's worker) rather than
    /// the env's own counters.
    fn ctx_counting<'a>(&'a mut self, stats: Option<&'a WorkerCounters>) -> Ctx<'a> {
        Ctx {
            now: &self.now,
            responder: &self.mem,
            local: &mut self.local,
            limits: &self.limits,
            log: None,
            notes: &mut self.notes,
            stats: stats.unwrap_or(&self.stats),
            pool: &mut self.pool,
            fds: &self.fds,
            drain_grace: Duration::ZERO,
        }
    }

    fn pair(&self) -> (TlsConn, rustls::ClientConnection) {
        let conn = Conn::new(
            "127.0.0.1:1".parse().unwrap(),
            self.now.instant(),
            &self.limits,
        );
        let server = TlsConn::new(self.server.clone(), conn, Arc::default());
        let name = ServerName::try_from("t.test").unwrap();
        let client = rustls::ClientConnection::new(self.client.clone(), name).unwrap();
        (server, client)
    }

    /// A pair whose client has `request` written (not yet encrypted).
    fn asking(&self, request: &str) -> (TlsConn, rustls::ClientConnection) {
        let (server, mut client) = self.pair();
        client.writer().write_all(request.as_bytes()).unwrap();
        (server, client)
    }
}

/// Bytes the server offers to send now (all of `Transmit::Send`).
fn offered(s: &TlsConn) -> Vec<u8> {
    match s.poll_transmit() {
        Transmit::Send(segs) => segs
            .iter()
            .flat_map(|seg| match seg {
                Segment::Bytes(b) => b.to_vec(),
                Segment::File(_) => panic!("a file segment under TLS"),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Move bytes both ways until neither side has any: the client's to the
/// server `step` bytes at a time, the server's to the client `step` bytes
/// at a time (each acknowledged with `handle_sent`). Returns the plaintext
/// the client received.
fn shuttle(
    env: &mut Env,
    s: &mut TlsConn,
    c: &mut rustls::ClientConnection,
    step: usize,
) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let mut moved = false;
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        for chunk in to_server.chunks(step) {
            s.handle_input(&mut env.ctx(), chunk);
            moved = true;
        }
        let out = offered(s);
        for chunk in out.chunks(step) {
            let mut rd = chunk;
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
                got.extend(read_all(c));
            }
            s.handle_sent(&mut env.ctx(), chunk.len());
            moved = true;
        }
        if !moved {
            return got;
        }
    }
}

fn read_all(c: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.reader().read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Move bytes both ways until the handshake is done and the server has
/// read the client's first request: its answer is queued, not taken.
fn until_request(env: &mut Env, s: &mut TlsConn, c: &mut rustls::ClientConnection) {
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        s.handle_input(&mut env.ctx(), &to_server);
        if s.info().is_some() && s.conn().requests() > 0 {
            break;
        }
        let out = offered(s);
        let mut rd = &out[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
        s.handle_sent(&mut env.ctx(), out.len());
    }
}

/// A connection that has sent nothing holds no rustls session (about
/// 2 KiB with its allocations), only the settings it will start from; the
/// first byte makes one, and plaintext HTTP on the port never does.
#[test]
fn the_session_waits_for_the_first_byte() {
    let mut env = Env::new();
    let (mut s, mut c) = env.asking("GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(!s.has_session(), "a session before any byte");
    assert!(
        size_of::<TlsConn>() <= 320,
        "{} bytes",
        size_of::<TlsConn>()
    );
    assert!(matches!(s.poll_transmit(), Transmit::Idle));
    let got = shuttle(&mut env, &mut s, &mut c, 1 << 16);
    assert!(s.has_session());
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    let (mut plain, _) = env.pair();
    plain.handle_input(&mut env.ctx(), b"GET / HTTP/1.1\r\n\r\n");
    assert!(!plain.has_session(), "plain HTTP made a session");
    assert!(
        matches!(plain.poll_transmit(), Transmit::Send(_)),
        "the 400"
    );
}

/// The handshake and a request with every record split at every byte
/// (ciphertext fed to the server one byte at a time, and taken from it one
/// byte at a time), then pipelined requests in one record.
#[test]
fn works_with_ciphertext_split_at_every_byte() {
    let mut env = Env::new();
    let (mut s, mut c) = env.asking("GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    let got = shuttle(&mut env, &mut s, &mut c, 1);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    assert!(got.ends_with(b"\r\n\r\nsmall"));
    let info = s.info().expect("the handshake is done");
    assert_eq!(info.version, "TLSv1.3");
    assert_eq!(info.sni.as_deref(), Some("t.test"));
    c.writer()
        .write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let got = String::from_utf8(shuttle(&mut env, &mut s, &mut c, 7)).unwrap();
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
    assert!(!s.is_closed());
}

/// A client that does not read: the server encrypts at most `OUT_HIGH` of
/// a file body ahead (plus record overhead), and the body arrives whole
/// once it reads.
#[test]
fn a_slow_reader_holds_a_bounded_amount() {
    let mut env = Env::new();
    let (mut s, mut c) = env.asking("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    // Handshake and request only: stop once the response begins.
    until_request(&mut env, &mut s, &mut c);
    assert!(s.conn().requests() > 0, "the request was read");
    let held = offered(&s).len();
    // 16 KiB records: 22 bytes of header and tag each, and a head.
    assert!(held >= 32 * 1024, "only {held} bytes ready");
    assert!(
        held <= OUT_HIGH + 8 * 64 + 1024,
        "{held} bytes held for a slow reader"
    );
    let got = shuttle(&mut env, &mut s, &mut c, 64 * 1024);
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &got[head_end..];
    assert_eq!(body.len(), BIG);
    assert!(body.iter().enumerate().all(|(i, &b)| b == pattern(i)));
}

/// A session the engine was told is over (a socket error, a timeout with
/// the `Conn` closed) is closed at once: `poll_transmit` says Close, as
/// `is_closed` does, though ciphertext of a response is still queued
/// (it is dropped, not offered).
#[test]
fn a_closed_session_offers_nothing_of_what_was_queued() {
    let mut env = Env::new();
    let (mut s, mut c) = env.asking("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    until_request(&mut env, &mut s, &mut c);
    assert!(!offered(&s).is_empty(), "a response is queued");
    s.handle_error(&mut env.ctx());
    assert!(s.is_closed());
    assert!(
        matches!(s.poll_transmit(), Transmit::Close),
        "closed, yet offering queued ciphertext"
    );
}

/// Once the server sent close_notify (a `Connection: close` answer), what
/// the client still sends is discarded, not decrypted: a corrupt record
/// then would have rustls send a fatal alert after the close_notify
/// (which its debug builds refuse with a panic), and nothing after the
/// close_notify can matter. The session ends at the client's EOF.
#[test]
fn input_after_our_close_notify_is_discarded() {
    let mut env = Env::new();
    let (mut s, mut c) = env.asking("GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let got = shuttle(&mut env, &mut s, &mut c, 1 << 16);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    assert!(
        matches!(s.poll_transmit(), Transmit::Shutdown),
        "close_notify sent, the write side to be shut"
    );
    s.handle_shutdown();
    // An application-data record whose bytes do not decrypt.
    let mut bad = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    bad.extend((0..0x40).map(|i| i as u8));
    s.handle_input(&mut env.ctx(), &bad);
    assert!(
        !matches!(s.poll_transmit(), Transmit::Send(_)),
        "an alert after close_notify"
    );
    s.handle_eof(&mut env.ctx());
    assert!(s.is_closed());
}

/// Ticket keys rotate: a ticket made now decrypts until two periods have
/// passed (its key current, then previous), then never again; a new
/// ticket decrypts with the new key. (The server's period is
/// `TICKET_KEY_PERIOD`; 1 second here.)
#[test]
fn ticket_keys_rotate() {
    let t = certs::rotating_ticketer(1).unwrap();
    assert_eq!(t.lifetime(), 2, "tickets last two periods");
    let made = Instant::now();
    let ticket = t.encrypt(b"session state").unwrap();
    assert_eq!(t.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
    // The rotator reads the wall clock (whole seconds): wait for the
    // condition, checking every 50 ms, for at most 10 s.
    while t.decrypt(&ticket).is_some() {
        assert!(
            made.elapsed() < Duration::from_secs(10),
            "the key never rotated out"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = made.elapsed();
    assert!(
        gone >= Duration::from_secs(1),
        "refused after {gone:?}, within one period"
    );
    let fresh = t.encrypt(b"later").unwrap();
    assert_eq!(t.decrypt(&fresh).as_deref(), Some(&b"later"[..]));
    assert_ne!(ticket, fresh);
}

/// What a worker holds per idle connection is mostly its `Session`: a
/// plaintext one is its `Conn` and a word (HTTP/2 sniffing state, the
/// enum's tag); the rare kinds (TLS, redirect) are boxed.
#[test]
fn a_session_is_its_conn_and_a_word() {
    let (s, c) = (std::mem::size_of::<Session>(), std::mem::size_of::<Conn>());
    assert!(s <= c + 8, "Session is {s} bytes, Conn {c}");
}

/// The TLS records in `ciphertext`: (content type, length) of each.
fn records(mut ciphertext: &[u8]) -> Vec<(u8, usize)> {
    let mut v = Vec::new();
    while ciphertext.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([ciphertext[3], ciphertext[4]]));
        v.push((ciphertext[0], len));
        ciphertext = &ciphertext[(5 + len).min(ciphertext.len())..];
    }
    v
}

/// A response's pieces (its head and its body; a file body's pieces)
/// leave in full records, not a record each: a small answer is one
/// record, a 1 MiB file with its head as few as 16 KiB records allow.
#[test]
fn responses_fill_their_records() {
    let mut env = Env::new();
    let (mut s, mut c) = env.asking("GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    shuttle(&mut env, &mut s, &mut c, 1 << 20);
    for (path, most) in [("/a", 1), ("/big", BIG.div_ceil(16 * 1024) + 1)] {
        c.writer()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        s.handle_input(&mut env.ctx(), &to_server);
        let mut all = Vec::new();
        let mut got = Vec::new();
        loop {
            let out = offered(&s);
            if out.is_empty() {
                break;
            }
            let mut rd = &out[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
                got.extend(read_all(&mut c));
            }
            s.handle_sent(&mut env.ctx(), out.len());
            all.extend(out);
        }
        let recs = records(&all);
        assert!(recs.iter().all(|&(t, _)| t == 23), "{recs:?}");
        assert!(
            recs.len() <= most,
            "{path}: {} records: {recs:?}",
            recs.len()
        );
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = &got[head_end..];
        if path == "/big" {
            assert_eq!(body.len(), BIG);
            assert!(body.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        } else {
            assert_eq!(body, b"small");
        }
    }
}

/// The TLS counters of a registry's render: (handshakes, failures), all
/// versions and reasons summed.
fn tls_counts(r: &crate::metrics::Registry) -> (u64, u64) {
    let text = r.render();
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    (
        sum("tandem_tls_handshakes_total{"),
        sum("tandem_tls_handshake_failures_total{"),
    )
}

/// Whatever the engine does to a session (from before its first byte, in
/// the handshake, or after it), and in any order: `is_closed` holds
/// exactly when `poll_transmit` says Close, a send reported larger than
/// what was offered breaks nothing, and a connection counts one handshake
/// or at most one failure, never both.
#[test]
fn any_order_of_events_keeps_the_invariants() {
    let mut env = Env::new();
    let registry = crate::metrics::Registry::new("epoll");
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let start = env.now.instant();
    for round in 0..600u64 {
        let stats = registry.worker();
        env.now = Now::new(start, SystemTime::now());
        let before = tls_counts(&registry);
        let (mut s, mut c) = env.asking("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut wire = Vec::new();
        // Some rounds get part of the handshake in first.
        let warm = next(3);
        for step in 0..120 {
            let ev = if step < warm {
                0
            } else {
                // Mostly traffic; now and then what ends or cuts it.
                match next(60) {
                    0..=24 => 0,
                    50 => 3,
                    51 => 4,
                    52 => 5,
                    53 => 6,
                    54..=56 => 7,
                    57 => 8,
                    _ => 2,
                }
            };
            if ev == 4 {
                // The clock moves on: not at all, a little, or past every deadline.
                let d = [0, 1, 3600][next(3) as usize];
                let to = env.now.instant() + Duration::from_secs(d);
                env.now = Now::new(to, SystemTime::now());
            }
            let mut ctx = env.ctx_counting(Some(&stats));
            let shown = matches!(s.poll_transmit(), Transmit::Shutdown);
            match ev {
                0 => {
                    while c.wants_write() {
                        c.write_tls(&mut wire).unwrap();
                    }
                    if !wire.is_empty() {
                        let k = 1 + next(wire.len() as u64) as usize;
                        let chunk: Vec<u8> = wire.drain(..k).collect();
                        s.handle_input(&mut ctx, &chunk);
                    } else if round % 7 == 0 {
                        s.handle_input(&mut ctx, &[0x16, 3, 1, 0, 200]);
                    }
                }
                2 => {
                    // The socket took some (or, adversarially, more).
                    let out = offered(&s);
                    let n = next(out.len() as u64 + 64) as usize;
                    let mut rd = &out[..n.min(out.len())];
                    while !rd.is_empty() && c.read_tls(&mut rd).is_ok() {
                        if c.process_new_packets().is_err() {
                            break;
                        }
                    }
                    s.handle_sent(&mut ctx, n);
                }
                3 => s.handle_eof(&mut ctx),
                4 => s.handle_timeout(&mut ctx),
                5 => s.begin_shutdown(&mut ctx),
                6 => s.handle_unsent(&mut ctx, next(100) as usize),
                7 if shown => s.handle_shutdown(),
                8 if next(4) == 0 => s.handle_error(&mut ctx),
                _ => {}
            }
            let close = matches!(s.poll_transmit(), Transmit::Close);
            assert_eq!(
                s.is_closed(),
                close,
                "round {round} step {step} event {ev}: is_closed but not Close, or Close and not closed"
            );
            if close {
                break;
            }
        }
        drop(s);
        let (h, f) = tls_counts(&registry);
        let (h, f) = (h - before.0, f - before.1);
        assert!(h + f <= 1, "round {round}: {h} handshakes and {f} failures");
        registry.retire(&stats);
    }
}
