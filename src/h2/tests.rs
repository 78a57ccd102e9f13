//! `H2Conn` driven in memory by a scripted client: frames in, frames out,
//! no socket and no clock.

use std::any::Any;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes};

use crate::http::Segment;

use super::frame::{Head, flag, kind};
use super::*;
use crate::http::{Body, BufferPool, FileRange, Notes, Now, Reply, Request, Respond, Status};
use crate::log::Level;
use crate::metrics::WorkerCounters;

const BIG: usize = 200_000;

/// `/big`: a file body; `/small`: bytes; anything else 404.
struct Mem {
    big: Arc<File>,
}

impl Respond for Mem {
    fn respond(&self, req: &Request<'_>, _: &Now, _: &mut dyn Any, _: &mut Notes) -> Reply {
        match req.target {
            "/big" => Reply::new(
                Status::OK,
                Body::File(FileRange {
                    file: self.big.clone(),
                    offset: 0,
                    len: BIG as u64,
                }),
            ),
            "/small" => Reply::new(Status::OK, Body::Bytes(Bytes::from_static(b"small")))
                .with_header("Content-Type", "text/plain"),
            "/bighead" => Reply::new(Status::OK, Body::Bytes(Bytes::from_static(b"x")))
                .with_header("X-Big", "b".repeat(40_000)),
            _ => Reply::status(Status::NOT_FOUND),
        }
    }
}

fn pattern(i: usize) -> u8 {
    (i * 13 % 251) as u8
}

struct Env {
    mem: Mem,
    local: (),
    limits: Limits,
    now: Now,
    log: Vec<u8>,
    notes: Notes,
    stats: WorkerCounters,
    pool: BufferPool,
    fds: crate::http::FdBudget,
    grace: Duration,
}

impl Env {
    fn new() -> Env {
        let data: Vec<u8> = (0..BIG).map(pattern).collect();
        Env {
            mem: Mem {
                big: crate::http::memfd(c"tandem-h2-test", &data),
            },
            local: (),
            limits: Limits {
                h2: crate::http::H2Limits {
                    max_concurrent_streams: 4,
                    max_resets_per_second: 10,
                    ..Default::default()
                },
                ..Limits::small()
            },
            now: Now::new(Instant::now(), SystemTime::now()),
            log: Vec::new(),
            notes: Notes::new(Level::Debug),
            stats: WorkerCounters::default(),
            pool: BufferPool::default(),
            fds: crate::http::FdBudget::unlimited(),
            grace: Duration::ZERO,
        }
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            now: &self.now,
            responder: &self.mem,
            local: &mut self.local,
            limits: &self.limits,
            log: Some(&mut self.log),
            notes: &mut self.notes,
            stats: &self.stats,
            pool: &mut self.pool,
            fds: &self.fds,
            drain_grace: self.grace,
        }
    }

    fn conn(&mut self) -> H2Conn {
        let c = H2Conn::new(
            "127.0.0.1:1".parse().unwrap(),
            self.now.instant(),
            &self.limits,
        );
        let mut c = c;
        let mut hello = frame::PREFACE.to_vec();
        hello.extend(client_frame(kind::SETTINGS, 0, 0, &[]));
        c.handle_input(&mut self.ctx(), &hello);
        c
    }

    fn input(&mut self, c: &mut H2Conn, bytes: &[u8]) {
        c.handle_input(&mut self.ctx(), bytes);
    }

    /// Everything the connection has to send (up to `max` bytes), as sent.
    fn output(&mut self, c: &mut H2Conn, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < max {
            let n = match c.poll_transmit() {
                Transmit::Send(segs) => {
                    let mut n = 0;
                    for s in segs {
                        match s {
                            Segment::Bytes(b) => out.extend_from_slice(b),
                            Segment::File(f) => {
                                let mut buf = vec![0; f.len as usize];
                                f.file.read_exact_at(&mut buf, f.offset).unwrap();
                                out.extend_from_slice(&buf);
                            }
                        }
                        n += s.len() as usize;
                    }
                    n
                }
                _ => break,
            };
            c.handle_sent(&mut self.ctx(), n);
        }
        out
    }

    fn frames(&mut self, c: &mut H2Conn) -> Vec<(Head, Vec<u8>)> {
        parse_frames(&self.output(c, usize::MAX))
    }
}

fn client_frame(k: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    frame::head(&mut b, payload.len(), k, flags, stream);
    b.put_slice(payload);
    b.to_vec()
}

/// A request's header block (literals without indexing, no Huffman).
fn block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for (n, v) in [
        (":method", method),
        (":scheme", "https"),
        (":path", path),
        (":authority", "t.test"),
    ]
    .iter()
    .chain(extra)
    {
        b.put_u8(0);
        b.put_u8(n.len() as u8);
        b.put_slice(n.as_bytes());
        b.put_u8(v.len() as u8);
        b.put_slice(v.as_bytes());
    }
    b.to_vec()
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    let f = flag::END_HEADERS | flag::END_STREAM;
    client_frame(kind::HEADERS, f, stream, &block("GET", path, &[]))
}

fn parse_frames(mut b: &[u8]) -> Vec<(Head, Vec<u8>)> {
    let mut v = Vec::new();
    while b.len() >= 9 {
        let h = Head::parse(b);
        v.push((h, b[9..9 + h.len].to_vec()));
        b = &b[9 + h.len..];
    }
    v
}

/// The fields of a response header block.
fn fields(block: &[u8]) -> Vec<(String, String)> {
    let mut d = hpack::Decoder::new();
    let f = d.decode(block, 1 << 20).unwrap();
    f.iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn goaway_code(frames: &[(Head, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .rfind(|(h, _)| h.kind == kind::GOAWAY)
        .map(|(_, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

#[test]
fn frame_heads_round_trip_and_blocks_split() {
    let mut b = BytesMut::new();
    frame::head(&mut b, 70_000, kind::DATA, flag::END_STREAM, 0x8000_0007);
    let h = Head::parse(&b);
    assert_eq!((h.len, h.kind, h.flags, h.stream), (70_000, 0, 1, 7));
    let mut b = BytesMut::new();
    frame::headers(&mut b, 3, &[7u8; 40], true, 16);
    let f = parse_frames(&b);
    let kinds: Vec<(u8, u8)> = f.iter().map(|(h, _)| (h.kind, h.flags)).collect();
    assert_eq!(
        kinds,
        [
            (kind::HEADERS, flag::END_STREAM),
            (kind::CONTINUATION, 0),
            (kind::CONTINUATION, flag::END_HEADERS)
        ]
    );
    let h = Head {
        len: 4,
        kind: 0,
        flags: flag::PADDED,
        stream: 1,
    };
    assert_eq!(frame::unpad(&h, &[2, b'a', 0, 0]), Some(&b"a"[..]));
    assert_eq!(frame::unpad(&h, &[9, b'a']), None);
}

/// Preface, SETTINGS exchange, one GET: SETTINGS, its ACK, HEADERS with
/// lower-case fields and no connection-specific ones, DATA with
/// END_STREAM; the access log says HTTP/2.0.
#[test]
fn a_get_is_answered_and_logged() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/small"));
    let f = env.frames(&mut c);
    assert_eq!(f[0].0.kind, kind::SETTINGS);
    assert_eq!((f[1].0.kind, f[1].0.flags), (kind::SETTINGS, flag::ACK));
    let (h, blk) = &f[2];
    assert_eq!((h.kind, h.stream), (kind::HEADERS, 1));
    let fl = fields(blk);
    assert_eq!(fl[0], (":status".into(), "200".into()));
    assert!(fl.contains(&("content-type".into(), "text/plain".into())));
    assert!(fl.contains(&("content-length".into(), "5".into())));
    assert!(
        fl.iter()
            .all(|(n, _)| n != "connection" && *n == n.to_lowercase())
    );
    let (h, body) = &f[3];
    assert_eq!(
        (h.kind, h.flags, h.stream),
        (kind::DATA, flag::END_STREAM, 1)
    );
    assert_eq!(body, b"small");
    assert!(c.is_idle());
    let log = String::from_utf8_lossy(&env.log).into_owned();
    assert!(log.contains("\"GET /small HTTP/2.0\" 200 5"), "{log}");
}

/// A HEAD: the length announced, HEADERS with END_STREAM, no DATA.
#[test]
fn head_has_no_data() {
    let mut env = Env::new();
    let mut c = env.conn();
    let f = flag::END_HEADERS | flag::END_STREAM;
    env.input(
        &mut c,
        &client_frame(kind::HEADERS, f, 1, &block("HEAD", "/big", &[])),
    );
    let f = env.frames(&mut c);
    let (h, blk) = &f[2];
    assert_eq!(h.flags & flag::END_STREAM, flag::END_STREAM);
    assert!(fields(blk).contains(&("content-length".into(), BIG.to_string())));
    assert_eq!(f.len(), 3);
}

/// A file body goes out as DATA frames of at most 16384 bytes within the
/// peer's windows: 65535 bytes, then a pause until WINDOW_UPDATE; another
/// stream's body is not blocked by a stream whose window is shut.
#[test]
fn file_bodies_flow_within_the_windows() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/big"));
    let f = env.frames(&mut c);
    let data: Vec<&(Head, Vec<u8>)> = f.iter().filter(|(h, _)| h.kind == kind::DATA).collect();
    assert!(data.iter().all(|(h, _)| h.len <= frame::MAX_FRAME));
    let sent: usize = data.iter().map(|(h, _)| h.len).sum();
    assert_eq!(sent, 65_535);
    // The stream's window opens, and the connection's: the rest comes.
    let mut wu = client_frame(kind::WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
    wu.extend(client_frame(
        kind::WINDOW_UPDATE,
        0,
        1,
        &(1u32 << 30).to_be_bytes(),
    ));
    env.input(&mut c, &wu);
    let f = env.frames(&mut c);
    let body: Vec<u8> = f
        .iter()
        .filter(|(h, _)| h.kind == kind::DATA)
        .flat_map(|(_, p)| p.clone())
        .collect();
    assert_eq!(sent + body.len(), BIG);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(sent + i))
    );
    assert_eq!(f.last().unwrap().0.flags, flag::END_STREAM);

    // Stream 3's window is shut (SETTINGS_INITIAL_WINDOW_SIZE 0): stream 5
    // (once the window is given back) is still answered.
    let mut s = client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]);
    s.extend(get(3, "/big"));
    s.extend(get(5, "/small"));
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    assert!(!f.iter().any(|(h, _)| h.kind == kind::DATA && h.stream == 3));
    let mut w = client_frame(kind::WINDOW_UPDATE, 0, 5, &100u32.to_be_bytes());
    w.extend(client_frame(kind::PING, 0, 0, &[1; 8]));
    env.input(&mut c, &w);
    let f = env.frames(&mut c);
    assert!(
        f.iter()
            .any(|(h, p)| h.kind == kind::DATA && h.stream == 5 && p == b"small")
    );
}

/// Stream ids must be odd and increasing: an even one, or one reused, is
/// a connection error (GOAWAY PROTOCOL_ERROR with the last stream id).
#[test]
fn bad_stream_ids_end_the_connection() {
    for ids in [[2u32, 0], [3, 1]] {
        let mut env = Env::new();
        let mut c = env.conn();
        env.input(&mut c, &get(ids[0], "/small"));
        if ids[1] != 0 {
            env.input(&mut c, &get(ids[1], "/small"));
        }
        let f = env.frames(&mut c);
        assert_eq!(goaway_code(&f), Some(Code::Protocol as u32), "{ids:?}");
        assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
    }
}

/// Even stream ids are the server's, and tandem opens none: they are idle
/// (RFC 9113 §5.1) below the highest id the client used too. DATA,
/// WINDOW_UPDATE or RST_STREAM on one is a connection error, and no
/// RST_STREAM may name it (§6.4): a PRIORITY of the wrong size on one
/// ends the connection with FRAME_SIZE_ERROR instead of resetting it.
#[test]
fn frames_on_even_stream_ids_end_the_connection() {
    let cases = [
        (kind::DATA, b"x".to_vec(), Code::Protocol),
        (
            kind::WINDOW_UPDATE,
            1u32.to_be_bytes().to_vec(),
            Code::Protocol,
        ),
        (
            kind::RST_STREAM,
            8u32.to_be_bytes().to_vec(),
            Code::Protocol,
        ),
        (kind::PRIORITY, vec![0; 4], Code::FrameSize),
    ];
    for (k, payload, code) in cases {
        let mut env = Env::new();
        let mut c = env.conn();
        env.input(&mut c, &get(5, "/small"));
        env.input(&mut c, &client_frame(k, 0, 2, &payload));
        let f = env.frames(&mut c);
        assert_eq!(goaway_code(&f), Some(code as u32), "frame type {k}");
        assert!(
            !f.iter()
                .any(|(h, _)| h.kind == kind::RST_STREAM && h.stream == 2),
            "RST_STREAM names stream 2 (frame type {k})"
        );
    }
    // A well-formed PRIORITY on one is allowed (§5.1: idle streams take it).
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(5, "/small"));
    env.input(
        &mut c,
        &client_frame(kind::PRIORITY, 0, 2, &[0, 0, 0, 5, 16]),
    );
    env.input(&mut c, &get(7, "/small"));
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), None);
    assert!(f.iter().any(|(h, _)| h.kind == kind::DATA && h.stream == 7));
}

/// Malformed requests are stream errors (RST_STREAM PROTOCOL_ERROR); the
/// connection goes on.
#[test]
fn malformed_requests_are_reset() {
    let cases: [Vec<u8>; 4] = [
        block("GET", "/small", &[("Upper", "x")]),
        block("GET", "/small", &[("connection", "close")]),
        block("GET", "/small", &[("te", "gzip")]),
        {
            let mut b = block("GET", "/small", &[]);
            b.extend(block("GET", "/small", &[]));
            b
        },
    ];
    let mut env = Env::new();
    let mut c = env.conn();
    let mut id = 1;
    for blk in &cases {
        let f = flag::END_HEADERS | flag::END_STREAM;
        env.input(&mut c, &client_frame(kind::HEADERS, f, id, blk));
        let f = env.frames(&mut c);
        let rst = f.iter().find(|(h, _)| h.kind == kind::RST_STREAM);
        assert_eq!(
            rst.map(|(h, p)| (h.stream, p[3])),
            Some((id, Code::Protocol as u8))
        );
        id += 2;
    }
    env.input(&mut c, &get(id, "/small"));
    let f = env.frames(&mut c);
    assert!(f.iter().any(|(h, _)| h.kind == kind::DATA));
}

/// Rapid Reset: HEADERS then RST_STREAM, again and again, ends in
/// GOAWAY(ENHANCE_YOUR_CALM) once past the per-second budget.
#[test]
fn rapid_reset_ends_in_goaway() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut id = 1;
    while id < 200 && !c.is_closed() && c.state == State::Open {
        let mut b = get(id, "/big");
        b.extend(client_frame(kind::RST_STREAM, 0, id, &8u32.to_be_bytes()));
        env.input(&mut c, &b);
        id += 2;
    }
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::EnhanceYourCalm as u32));
    assert!(id < 40, "{id}");
}

/// More streams than the limit: the extra ones are refused.
#[test]
fn streams_past_the_limit_are_refused() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut b = Vec::new();
    for id in (1..=11).step_by(2) {
        b.extend(get(id, "/big"));
    }
    env.input(&mut c, &b);
    let f = env.frames(&mut c);
    let refused: Vec<u32> = f
        .iter()
        .filter(|(h, p)| h.kind == kind::RST_STREAM && p[3] == Code::RefusedStream as u8)
        .map(|(h, _)| h.stream)
        .collect();
    assert_eq!(refused, [9, 11]);
    // As an engine does, before it drops the connection.
    c.handle_error(&mut env.ctx());
}

/// A graceful stop: GOAWAY(NO_ERROR), the open stream finishes, then the
/// write side is shut.
#[test]
fn shutdown_lets_streams_finish() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/big"));
    c.begin_shutdown(&mut env.ctx());
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(0));
    assert!(matches!(c.poll_transmit(), Transmit::Idle));
    let mut wu = client_frame(kind::WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
    wu.extend(client_frame(
        kind::WINDOW_UPDATE,
        0,
        1,
        &(1u32 << 30).to_be_bytes(),
    ));
    env.input(&mut c, &wu);
    let f = env.frames(&mut c);
    assert_eq!(
        f.iter()
            .rfind(|(h, _)| h.kind == kind::DATA)
            .unwrap()
            .0
            .flags,
        1
    );
    assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
}

impl Env {
    /// Time passes to the connection's deadline, which it acts on.
    fn expire(&mut self, c: &mut H2Conn) {
        let d = c.poll_timeout().expect("a deadline");
        self.now = Now::new(d, SystemTime::now());
        c.handle_timeout(&mut self.ctx());
    }
}

/// An idle connection (no stream) is closed at keepalive_timeout with
/// GOAWAY(NO_ERROR), not before.
#[test]
fn idle_connections_get_goaway_at_keepalive_timeout() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/small"));
    env.frames(&mut c);
    let t0 = env.now.instant();
    env.expire(&mut c);
    assert_eq!(env.now.instant() - t0, env.limits.keepalive_timeout);
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(0));
    let (_, p) = f.iter().rfind(|(h, _)| h.kind == kind::GOAWAY).unwrap();
    assert_eq!(&p[..4], &1u32.to_be_bytes(), "last stream id");
    assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
}

/// A client that never opens its window: closed at send_timeout.
#[test]
fn a_zero_window_stall_ends_at_send_timeout() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/big"));
    env.frames(&mut c);
    let t0 = env.now.instant();
    env.expire(&mut c);
    assert_eq!(env.now.instant() - t0, env.limits.send_timeout);
    assert!(c.is_closed());
    let log = String::from_utf8_lossy(&env.log).into_owned();
    assert!(log.contains("\"GET /big HTTP/2.0\" 200 65535"), "{log}");
}

/// No preface (or no SETTINGS after it) within header_timeout: GOAWAY.
#[test]
fn a_missing_preface_times_out() {
    let mut env = Env::new();
    let mut c = H2Conn::new(
        "127.0.0.1:1".parse().unwrap(),
        env.now.instant(),
        &env.limits,
    );
    env.input(&mut c, &frame::PREFACE[..10]);
    env.frames(&mut c);
    let t0 = env.now.instant();
    env.expire(&mut c);
    assert_eq!(env.now.instant() - t0, env.limits.header_timeout);
    assert!(goaway_code(&env.frames(&mut c)).is_some());
}

/// A frame after the preface that is not SETTINGS, a frame past our
/// MAX_FRAME_SIZE, PUSH_PROMISE, a frame between HEADERS and its
/// CONTINUATION, WINDOW_UPDATE 0 or past 2^31-1 on the connection: each a
/// connection error with its code.
#[test]
fn connection_errors_have_their_codes() {
    let wu = |inc: u32| client_frame(kind::WINDOW_UPDATE, 0, 0, &inc.to_be_bytes());
    let half = client_frame(kind::HEADERS, flag::END_STREAM, 1, &block("GET", "/", &[]));
    let cases: [(Vec<u8>, Code); 6] = [
        (vec![0, 0x40, 1, kind::DATA, 0, 0, 0, 0, 1], Code::FrameSize),
        (
            client_frame(kind::PUSH_PROMISE, 4, 1, &[0, 0, 0, 2]),
            Code::Protocol,
        ),
        (
            [half, client_frame(kind::PING, 0, 0, &[0; 8])].concat(),
            Code::Protocol,
        ),
        (wu(0), Code::Protocol),
        (
            [wu(0x7fff_0000), wu(0x7fff_0000)].concat(),
            Code::FlowControl,
        ),
        (
            client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            Code::FlowControl,
        ),
    ];
    for (bytes, code) in cases {
        let mut env = Env::new();
        let mut c = env.conn();
        env.input(&mut c, &bytes);
        assert_eq!(
            goaway_code(&env.frames(&mut c)),
            Some(code as u32),
            "{bytes:x?}"
        );
    }
    // Not SETTINGS first.
    let mut env = Env::new();
    let mut c = H2Conn::new(
        "127.0.0.1:1".parse().unwrap(),
        env.now.instant(),
        &env.limits,
    );
    env.input(
        &mut c,
        &[
            &frame::PREFACE[..],
            &client_frame(kind::PING, 0, 0, &[0; 8]),
        ]
        .concat(),
    );
    assert_eq!(
        goaway_code(&env.frames(&mut c)),
        Some(Code::Protocol as u32)
    );
}

/// Unknown frame types and PRIORITY are ignored; PING is answered; a
/// request body on a GET is read, thrown away, and its window given back.
#[test]
fn extensions_ignored_pings_answered_bodies_discarded() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut b = client_frame(0xfa, 0, 0, b"whatever");
    b.extend(client_frame(kind::PRIORITY, 0, 9, &[0, 0, 0, 0, 16]));
    b.extend(client_frame(kind::PING, 0, 0, b"12345678"));
    b.extend(client_frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block("GET", "/small", &[]),
    ));
    for _ in 0..3 {
        b.extend(client_frame(kind::DATA, 0, 1, &[0; 16_000]));
    }
    b.extend(client_frame(kind::DATA, flag::END_STREAM, 1, &[0; 10]));
    env.limits.max_body_size = 1 << 20;
    env.input(&mut c, &b);
    let f = env.frames(&mut c);
    assert!(
        f.iter()
            .any(|(h, p)| h.kind == kind::PING && h.flags == flag::ACK && p == b"12345678")
    );
    assert!(f.iter().any(|(h, p)| h.kind == kind::DATA && p == b"small"));
    let conn_wu: u32 = f
        .iter()
        .filter(|(h, _)| h.kind == kind::WINDOW_UPDATE && h.stream == 0)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .sum();
    assert!(conn_wu >= 32_000, "{conn_wu}");
    assert!(goaway_code(&f).is_none());
    assert!(c.is_idle());
}

/// Floods: PINGs, empty DATA frames, SETTINGS, CONTINUATION without end:
/// each ends in GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn floods_end_in_enhance_your_calm() {
    let ping = client_frame(kind::PING, 0, 0, &[0; 8]);
    let settings = client_frame(kind::SETTINGS, 0, 0, &[]);
    let empty = client_frame(kind::DATA, 0, 1, &[]);
    let cont = client_frame(kind::CONTINUATION, 0, 1, &[0x82]);
    let open = client_frame(kind::HEADERS, flag::END_HEADERS, 1, &block("GET", "/", &[]));
    let start = client_frame(kind::HEADERS, 0, 1, &block("GET", "/", &[]));
    for (first, each) in [
        (vec![], ping),
        (vec![], settings),
        (open, empty),
        (start, cont),
    ] {
        let mut env = Env::new();
        let mut c = env.conn();
        env.input(&mut c, &first);
        let mut n = 0;
        let mut out = Vec::new();
        while c.state == State::Open && n < 5000 {
            env.input(&mut c, &each);
            out.extend(env.output(&mut c, usize::MAX));
            n += 1;
        }
        let f = parse_frames(&out);
        assert_eq!(
            goaway_code(&f),
            Some(Code::EnhanceYourCalm as u32),
            "{each:x?}"
        );
        assert!(n <= 1001, "{n}");
    }
}

/// A tiny block that expands past max_header_size gets 431 on its stream.
#[test]
fn an_hpack_bomb_gets_431() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut blk = BytesMut::new();
    blk.put_slice(&block("GET", "/small", &[]));
    blk.put_slice(&[0x40, 6]);
    blk.put_slice(b"x-bomb");
    blk.put_slice(&[0x7f, 0xe9, 0x06]); // 127 + 105 + 6 * 128 = 1000 bytes
    blk.put_slice(&[b'b'; 1000]);
    for _ in 0..1000 {
        blk.put_u8(0x80 | 62);
    }
    let f = flag::END_HEADERS | flag::END_STREAM;
    env.input(&mut c, &client_frame(kind::HEADERS, f, 1, &blk));
    assert!(blk.len() < 3000);
    let f = env.frames(&mut c);
    let (_, h) = f.iter().find(|(h, _)| h.kind == kind::HEADERS).unwrap();
    assert_eq!(fields(h)[0], (":status".into(), "431".into()));
    assert!(goaway_code(&f).is_none());
}

/// A drain with a grace: GOAWAY(2^31-1) and a PING first; a stream the
/// client opens before the PING's ACK is still answered; the ACK brings
/// the final GOAWAY (the last stream id); a later stream is ignored.
#[test]
fn a_drain_takes_streams_until_the_ping_ack() {
    let mut env = Env::new();
    env.grace = Duration::from_secs(1);
    let mut c = env.conn();
    env.frames(&mut c);
    c.begin_shutdown(&mut env.ctx());
    let f = env.frames(&mut c);
    let (_, p) = f.iter().find(|(h, _)| h.kind == kind::GOAWAY).unwrap();
    assert_eq!(&p[..4], &MAX_STREAM_ID.to_be_bytes());
    let (_, ping) = f.iter().find(|(h, _)| h.kind == kind::PING).unwrap();
    let mut b = get(1, "/small");
    b.extend(client_frame(kind::PING, flag::ACK, 0, ping));
    b.extend(get(3, "/small"));
    env.input(&mut c, &b);
    let f = env.frames(&mut c);
    assert!(f.iter().any(|(h, _)| h.kind == kind::DATA && h.stream == 1));
    assert!(!f.iter().any(|(h, _)| h.stream == 3));
    let (_, p) = f.iter().rfind(|(h, _)| h.kind == kind::GOAWAY).unwrap();
    assert_eq!(&p[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
}

/// A client that gives back each DATA frame's bytes at once (a
/// connection WINDOW_UPDATE per response, nothing waiting) is no flood,
/// however many requests it makes; raising the window again and again
/// with tiny increments is.
#[test]
fn giving_window_back_is_no_flood() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Vec::new();
    for i in 0..3000u32 {
        let id = 2 * i + 1;
        env.input(&mut c, &get(id, "/small"));
        out.extend(env.output(&mut c, usize::MAX));
        env.input(
            &mut c,
            &client_frame(kind::WINDOW_UPDATE, 0, 0, &5u32.to_be_bytes()),
        );
    }
    assert_eq!(goaway_code(&parse_frames(&out)), None);
    for _ in 0..1001 {
        env.input(
            &mut c,
            &client_frame(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
        );
    }
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::EnhanceYourCalm as u32));
}

/// A client that reads (PINGs are answered) but never opens its window
/// is still closed at send_timeout.
#[test]
fn pings_do_not_keep_a_stalled_stream() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/big"));
    env.frames(&mut c);
    let t0 = env.now.instant();
    for _ in 0..10 {
        env.now = Now::new(
            env.now.instant() + Duration::from_secs(10),
            SystemTime::now(),
        );
        env.input(&mut c, &client_frame(kind::PING, 0, 0, &[7; 8]));
        env.frames(&mut c);
        c.handle_timeout(&mut env.ctx());
        if c.is_closed() {
            break;
        }
    }
    assert!(c.is_closed());
    assert!(env.now.instant() - t0 <= env.limits.send_timeout + Duration::from_secs(10));
}

/// A response head larger than the peer's SETTINGS_MAX_FRAME_SIZE goes
/// out as HEADERS and CONTINUATION frames, each within it.
#[test]
fn a_large_head_is_split_into_continuations() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/bighead"));
    let f = env.frames(&mut c);
    let heads: Vec<&(Head, Vec<u8>)> = f
        .iter()
        .filter(|(h, _)| h.stream == 1 && h.kind != kind::DATA)
        .collect();
    assert_eq!(heads[0].0.kind, kind::HEADERS);
    assert!(heads[1..].iter().all(|(h, _)| h.kind == kind::CONTINUATION));
    assert!(heads.iter().all(|(h, _)| h.len <= frame::MAX_FRAME));
    assert_eq!(heads.last().unwrap().0.flags, flag::END_HEADERS);
    let block: Vec<u8> = heads.iter().flat_map(|(_, p)| p.clone()).collect();
    assert!(fields(&block).contains(&("x-big".into(), "b".repeat(40_000))));
    assert!(f.iter().any(|(h, p)| h.kind == kind::DATA && p == b"x"));
}

/// Random frames (valid headers of every type with random flags, ids
/// and payloads, cut at random places): no panic, and a connection that
/// is not ended holds at most `IN_CAP` bytes of input.
#[test]
fn random_frames_do_not_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut env = Env::new();
        env.limits.max_body_size = 1 << 20;
        let mut c = env.conn();
        let mut bytes = Vec::new();
        for _ in 0..40 {
            let r = next();
            let kind = (r % 11) as u8;
            let flags = (r >> 8) as u8;
            let stream = ((r >> 16) % 8) as u32;
            let len = ((r >> 24) % 40) as usize;
            let payload: Vec<u8> = match kind {
                kind::HEADERS => get(stream | 1, "/small")[9..].to_vec(),
                _ => (0..len).map(|_| next() as u8).collect(),
            };
            bytes.extend(client_frame(kind, flags, stream, &payload));
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let k = (next() as usize % 64 + 1).min(rest.len());
            env.input(&mut c, &rest[..k]);
            rest = &rest[k..];
            env.output(&mut c, usize::MAX);
            assert!(c.inbuf.len() <= IN_CAP);
        }
        c.handle_eof(&mut env.ctx());
        if c.poll_timeout().is_some() {
            env.expire(&mut c);
        }
    }
}

/// A bad PRIORITY frame is a stream error on a stream that was opened
/// (RST_STREAM), and a connection error on an idle one (no RST_STREAM
/// may name an idle stream).
#[test]
fn bad_priority_frames() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/small"));
    env.input(
        &mut c,
        &client_frame(kind::PRIORITY, 0, 1, &[0, 0, 0, 1, 9]),
    );
    let f = env.frames(&mut c);
    let rst = f.iter().find(|(h, _)| h.kind == kind::RST_STREAM);
    assert_eq!(
        rst.map(|(h, p)| (h.stream, p[3])),
        Some((1, Code::Protocol as u8))
    );
    assert_eq!(goaway_code(&f), None);
    env.input(&mut c, &client_frame(kind::PRIORITY, 0, 9, &[0, 0, 0]));
    let f = env.frames(&mut c);
    assert!(!f.iter().any(|(h, _)| h.kind == kind::RST_STREAM));
    assert_eq!(goaway_code(&f), Some(Code::FrameSize as u32));
}

/// EOF in the middle of a header block: GOAWAY(PROTOCOL_ERROR), then,
/// once the write side is shut, the connection closes without lingering.
#[test]
fn eof_inside_a_header_block() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(
        &mut c,
        &client_frame(kind::HEADERS, flag::END_STREAM, 1, &block("GET", "/", &[])),
    );
    c.handle_eof(&mut env.ctx());
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::Protocol as u32));
    assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
    c.handle_shutdown();
    assert!(c.poll_timeout().is_some_and(|d| d <= env.now.instant()));
    c.handle_timeout(&mut env.ctx());
    assert!(c.is_closed());
}

impl Env {
    /// 6 descriptors, 1 connection (2 of them): 2 slots to share, and
    /// room for 8 streams.
    fn two_slots() -> Env {
        let mut env = Env::new();
        env.fds = crate::http::FdBudget::new(6, 3);
        env.fds.set_live(1);
        env.limits.h2.max_concurrent_streams = 8;
        env
    }
}

/// Streams past the worker's descriptor slots wait, and are answered in
/// turn as slots free; reset ones give theirs back; a closed connection
/// gives back all it held.
#[test]
fn streams_past_the_descriptor_slots_wait() {
    let mut env = Env::two_slots();
    let mut c = env.conn();
    let zero_window = [0, 4, 0, 0, 0, 0];
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    let mut reqs = Vec::new();
    for id in [1, 3, 5, 7, 9, 11] {
        reqs.extend(get(id, "/big"));
    }
    env.input(&mut c, &reqs);
    let heads = |f: &[(Head, Vec<u8>)]| -> Vec<u32> {
        f.iter()
            .filter(|(h, _)| h.kind == kind::HEADERS)
            .map(|(h, _)| h.stream)
            .collect()
    };
    // The connection's own slot and the worker's 2.
    assert_eq!(heads(&env.frames(&mut c)), [1, 3, 5]);
    assert_eq!(env.fds.extra(), 2);
    // A reset answered stream gives its slot to the first that waits; a
    // reset waiting one leaves the queue.
    let cancel = 8u32.to_be_bytes();
    env.input(&mut c, &client_frame(kind::RST_STREAM, 0, 3, &cancel));
    assert_eq!(heads(&env.frames(&mut c)), [7]);
    env.input(&mut c, &client_frame(kind::RST_STREAM, 0, 9, &cancel));
    assert!(heads(&env.frames(&mut c)).is_empty());
    assert_eq!(env.fds.extra(), 2);
    // The windows open: the rest is answered as slots free, whole.
    let big_window = [0, 4, 0, 0x10, 0, 0];
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &big_window));
    let inc = (1u32 << 24).to_be_bytes();
    env.input(&mut c, &client_frame(kind::WINDOW_UPDATE, 0, 0, &inc));
    let f = env.frames(&mut c);
    assert_eq!(heads(&f), [11]);
    for id in [1, 5, 7, 11] {
        let body: usize = f
            .iter()
            .filter(|(h, _)| h.kind == kind::DATA && h.stream == id)
            .map(|(h, _)| h.len)
            .sum();
        assert_eq!(body, BIG, "stream {id}");
    }
    assert!(c.is_idle());
    assert_eq!(env.fds.extra(), 0);
    // A connection that closes with slots held gives them back.
    let mut c = env.conn();
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    env.input(
        &mut c,
        &[get(1, "/big"), get(3, "/big"), get(5, "/big")].concat(),
    );
    assert_eq!(env.fds.extra(), 2);
    c.handle_error(&mut env.ctx());
    assert_eq!(env.fds.extra(), 0);
}

/// Streams waiting for a slot are still answered, whole, after the
/// client's GOAWAY and a drain; after the client's EOF, streams no window
/// can ever open for are dropped at once, so the slots come back and the
/// connection closes (not after send_timeout).
#[test]
fn waiting_streams_across_goaway_drain_and_eof() {
    let mut env = Env::two_slots();
    let zero_window = [0, 4, 0, 0, 0, 0];
    let reqs: Vec<u8> = [1, 3, 5, 7, 9, 11]
        .iter()
        .flat_map(|&id| get(id, "/big"))
        .collect();
    let mut c = env.conn();
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    env.input(&mut c, &reqs);
    let mut f = env.frames(&mut c);
    assert_eq!(env.fds.extra(), 2);
    env.input(&mut c, &client_frame(kind::GOAWAY, 0, 0, &[0; 8]));
    c.begin_shutdown(&mut env.ctx());
    let big_window = [0, 4, 0, 0x10, 0, 0];
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &big_window));
    let inc = (1u32 << 24).to_be_bytes();
    env.input(&mut c, &client_frame(kind::WINDOW_UPDATE, 0, 0, &inc));
    f.extend(env.frames(&mut c));
    for id in [1, 3, 5, 7, 9, 11] {
        let body: usize = f
            .iter()
            .filter(|(h, _)| h.kind == kind::DATA && h.stream == id)
            .map(|(h, _)| h.len)
            .sum();
        assert_eq!(body, BIG, "stream {id}");
    }
    assert_eq!(env.fds.extra(), 0);
    assert!(!c.is_idle(), "a connection after GOAWAY ends");
    // EOF with streams shut by their windows and others waiting.
    let mut c = env.conn();
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    env.input(&mut c, &reqs);
    env.frames(&mut c);
    assert_eq!(env.fds.extra(), 2);
    c.handle_eof(&mut env.ctx());
    assert_eq!(env.fds.extra(), 0, "slots held after EOF");
    // The heads already queued go out, then the close.
    env.frames(&mut c);
    assert!(c.is_closed(), "open after EOF with nothing it can send");
}

/// SETTINGS_INITIAL_WINDOW_SIZE and the connection's window at 2^30:
/// nothing waits for a window.
fn wide_windows() -> Vec<u8> {
    let mut s = client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0x40, 0, 0, 0]);
    s.extend(window_updates(1, 0, 1 << 30));
    s
}

/// `n` WINDOW_UPDATE frames of `inc` on `stream`.
fn window_updates(n: usize, stream: u32, inc: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| client_frame(kind::WINDOW_UPDATE, 0, stream, &inc.to_be_bytes()))
        .collect()
}

/// The order DATA frames go out in: the stream ids of consecutive runs
/// of frames (1, 1, 3 → [1, 3]), for streams opened with `prio` (a
/// `priority` field, or none) on four `/big` requests with wide windows.
fn data_runs(prio: [Option<&str>; 4]) -> Vec<u32> {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut s = wide_windows();
    for (i, p) in prio.iter().enumerate() {
        let extra: Vec<(&str, &str)> = p.iter().map(|v| ("priority", *v)).collect();
        let f = flag::END_HEADERS | flag::END_STREAM;
        let id = 1 + 2 * i as u32;
        s.extend(client_frame(
            kind::HEADERS,
            f,
            id,
            &block("GET", "/big", &extra),
        ));
    }
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    let mut runs: Vec<u32> = Vec::new();
    let mut bytes = std::collections::HashMap::new();
    for (h, p) in f.iter().filter(|(h, _)| h.kind == kind::DATA) {
        *bytes.entry(h.stream).or_insert(0) += p.len();
        if runs.last() != Some(&h.stream) {
            runs.push(h.stream);
        }
    }
    assert!(bytes.values().all(|&n| n == BIG), "{bytes:?}");
    runs
}

/// RFC 9218 §10: without priorities, responses go whole, one after
/// another by stream id; a more urgent one first; incremental ones of an
/// urgency take turns, after the non-incremental ones of that urgency.
#[test]
fn data_goes_in_priority_order() {
    assert_eq!(data_runs([None; 4]), [1, 3, 5, 7]);
    assert_eq!(
        data_runs([None, Some("u=1"), Some("u=5"), Some("u=0, i=?0")]),
        [7, 3, 1, 5]
    );
    let runs = data_runs([Some("i"), Some("u=3;x, i"), None, Some("u=4")]);
    assert_eq!(runs[0], 5);
    assert_eq!(*runs.last().unwrap(), 7);
    // 1 and 3 alternate, a frame each.
    let turns = &runs[1..runs.len() - 1];
    assert!(turns.len() > 4, "{runs:?}");
    assert!(
        turns.windows(2).all(|w| w[0] != w[1]) && turns[0] == 1,
        "{runs:?}"
    );
}

/// A more urgent stream whose window is shut does not hold back a less
/// urgent one.
#[test]
fn an_urgent_stream_with_a_shut_window_is_passed_over() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut s = client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]);
    let f = flag::END_HEADERS | flag::END_STREAM;
    s.extend(client_frame(
        kind::HEADERS,
        f,
        1,
        &block("GET", "/big", &[("priority", "u=0")]),
    ));
    s.extend(get(3, "/small"));
    s.extend(client_frame(
        kind::WINDOW_UPDATE,
        0,
        3,
        &100u32.to_be_bytes(),
    ));
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    assert!(!f.iter().any(|(h, _)| h.kind == kind::DATA && h.stream == 1));
    assert!(
        f.iter()
            .any(|(h, p)| h.kind == kind::DATA && h.stream == 3 && p == b"small")
    );
}

/// The `priority` field read as RFC 9218 §4 asks: unknown members,
/// parameters and bad values ignored, the last member winning, several
/// field lines read as one.
#[test]
fn priority_fields_are_read_leniently() {
    let of = |lines: &[&str]| {
        let extra: Vec<(&str, &str)> = lines.iter().map(|v| ("priority", *v)).collect();
        let f = hpack::Decoder::new()
            .decode(&block("GET", "/", &extra), 8192)
            .unwrap();
        let p = stream::Priority::of(&f);
        (p.urgency, p.incremental)
    };
    assert_eq!(of(&[]), (3, false));
    assert_eq!(of(&["u=1"]), (1, false));
    assert_eq!(of(&["u=0, i"]), (0, true));
    assert_eq!(of(&["i=?1;a=b,u=6"]), (6, true));
    assert_eq!(of(&["u=8"]), (3, false));
    assert_eq!(of(&["u=-1, u=1x, u=\"2\", i=1, i=?2"]), (3, false));
    assert_eq!(of(&["u=2, u=5"]), (5, false));
    assert_eq!(of(&["u=2", "i"]), (2, true));
    assert_eq!(of(&["i, i=?0"]), (3, false));
    assert_eq!(of(&["foo=bar, u=4;q"]), (4, false));
}

/// RFC 9113 §6.9: a client may give back the window of DATA frames that
/// were in flight when their stream ended. Up to one WINDOW_UPDATE per
/// DATA frame sent is that, not a flood; beyond it, the budget counts.
#[test]
fn window_given_back_on_ended_streams_is_no_flood() {
    let mut env = Env::new();
    env.limits.h2.max_control_frames_per_second = 5;
    let mut c = env.conn();
    let mut s = wide_windows();
    s.extend(get(1, "/big"));
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    let data = f.iter().filter(|(h, _)| h.kind == kind::DATA).count();
    assert!(data > 5, "{data} DATA frames");
    env.input(&mut c, &window_updates(data, 1, 16_384));
    assert_eq!(goaway_code(&env.frames(&mut c)), None);
    env.input(&mut c, &window_updates(6, 1, 1));
    assert_eq!(
        goaway_code(&env.frames(&mut c)),
        Some(Code::EnhanceYourCalm as u32)
    );
}

/// A request reset (or left by a closed connection) while it waited for
/// a descriptor slot is still a request: one access-log line, status 499
/// and no bytes, as nginx logs a request its client gave up on.
#[test]
fn requests_ended_while_waiting_are_logged() {
    let mut env = Env::two_slots();
    let mut c = env.conn();
    env.input(
        &mut c,
        &client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]),
    );
    let reqs: Vec<u8> = [1, 3, 5, 7, 9]
        .iter()
        .flat_map(|&id| get(id, &format!("/big?{id}")))
        .collect();
    env.input(&mut c, &reqs);
    env.frames(&mut c);
    let cancel = 8u32.to_be_bytes();
    env.input(&mut c, &client_frame(kind::RST_STREAM, 0, 7, &cancel));
    let log = String::from_utf8(std::mem::take(&mut env.log)).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("\"GET /big?7 HTTP/2.0\" 499 0"), "{log}");
    c.handle_error(&mut env.ctx());
    let log = String::from_utf8(std::mem::take(&mut env.log)).unwrap();
    assert!(log.contains("\"GET /big?9 HTTP/2.0\" 499 0"), "{log}");
    assert!(!log.contains("/big?7"), "{log}");
}

/// h2c: a plaintext connection opening with the preface (split anywhere)
/// becomes HTTP/2, one opening otherwise HTTP/1.1 with the bytes held back
/// first; a drain begun while it was undecided holds either way.
#[test]
fn an_undecided_cleartext_connection_keeps_its_bytes_and_a_drain() {
    let mut env = Env::new();
    env.limits.h2.cleartext = true;
    let peer = "127.0.0.1:1".parse().unwrap();

    let mut c = Http::plain(peer, env.now.instant(), &env.limits);
    let (a, b) = frame::PREFACE.split_at(5);
    c.handle_input(&mut env.ctx(), a);
    assert!(!c.is_h2() && !c.is_closed());
    c.begin_shutdown(&mut env.ctx());
    c.handle_input(&mut env.ctx(), b);
    let Http::H2(h) = &mut c else {
        panic!("the preface did not make it HTTP/2")
    };
    let f = env.frames(h);
    assert_eq!(f.first().map(|(h, _)| h.kind), Some(kind::SETTINGS));
    assert!(f.iter().any(|(h, _)| h.kind == kind::GOAWAY), "no GOAWAY");

    // A lookalike ("PRI /..."), split where it still matched the preface.
    let mut c = Http::plain(peer, env.now.instant(), &env.limits);
    c.handle_input(&mut env.ctx(), b"PR");
    c.begin_shutdown(&mut env.ctx());
    c.handle_input(&mut env.ctx(), b"I / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!c.is_h2());
    let mut out = Vec::new();
    while let Transmit::Send(segs) = c.poll_transmit() {
        let mut n = 0;
        for s in segs {
            if let Segment::Bytes(b) = s {
                out.extend_from_slice(b);
            }
            n += s.len() as usize;
        }
        c.handle_sent(&mut env.ctx(), n);
    }
    let s = String::from_utf8_lossy(&out);
    assert!(s.starts_with("HTTP/1.1 501 "), "{s}");
    assert!(s.contains("\r\nConnection: close\r\n"), "{s}");
}

/// A burst of requests whose answers wait for a peer that does not read:
/// past `ACT_HIGH` of answers queued, or `DONE_CAP` streams answered and
/// not yet sent, no more frames are acted on (they wait in `inbuf`, and
/// no more input is taken), so what the connection holds is bounded, not
/// a head and a log record per request read. As the peer reads, the rest
/// are answered, in order, also after its EOF; then the connection closes.
#[test]
fn answers_wait_for_a_peer_that_reads() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.frames(&mut c);
    let f = flag::END_HEADERS | flag::END_STREAM;
    let n = 3000;
    let burst: Vec<u8> = (0..n)
        .flat_map(|k| client_frame(kind::HEADERS, f, 1 + 2 * k, &block("HEAD", "/small", &[])))
        .collect();
    env.input(&mut c, &burst);
    c.handle_eof(&mut env.ctx());
    let queued = c.out.pending() + c.ctrl.len();
    assert!(
        queued <= ACT_HIGH + 1024,
        "{queued} bytes of answers queued"
    );
    assert!(c.done.len() <= DONE_CAP, "{} answers wait", c.done.len());
    assert_eq!(c.input_room(&env.limits), 0);
    assert!(c.last_id < 2 * n - 1, "every request acted on at once");
    assert!(!c.is_closed());
    let f = env.frames(&mut c);
    let ended: Vec<u32> = f
        .iter()
        .filter(|(h, _)| h.kind == kind::HEADERS && h.flags & flag::END_STREAM != 0)
        .map(|(h, _)| h.stream)
        .collect();
    assert_eq!(ended, (0..n).map(|k| 1 + 2 * k).collect::<Vec<u32>>());
    assert!(c.is_closed(), "{:?}", c.poll_transmit());
}

/// SETTINGS_INITIAL_WINDOW_SIZE values are applied once a frame (their
/// net change), yet a stream window past 2^31-1 at any of them in turn is
/// still FLOW_CONTROL_ERROR (RFC 9113 §6.9.2).
#[test]
fn window_overflow_inside_one_settings_frame() {
    let setting = |pairs: &[(u16, u32)]| {
        let p: Vec<u8> = pairs
            .iter()
            .flat_map(|(k, v)| k.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        client_frame(kind::SETTINGS, 0, 0, &p)
    };
    let iws = frame::setting::INITIAL_WINDOW_SIZE;
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &setting(&[(iws, 0)]));
    env.input(&mut c, &get(1, "/big"));
    let top = (frame::MAX_WINDOW as u32).to_be_bytes();
    env.input(&mut c, &client_frame(kind::WINDOW_UPDATE, 0, 1, &top));
    env.frames(&mut c);
    let w = c.streams[&1].window;
    // Up to the maximum and back: within it.
    let room = (frame::MAX_WINDOW - w) as u32;
    env.input(&mut c, &setting(&[(iws, room), (iws, 0)]));
    assert_eq!(c.streams[&1].window, w);
    // Up by one past the maximum and back: the error all the same.
    env.input(&mut c, &setting(&[(iws, room + 1), (iws, 0)]));
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::FlowControl as u32));
}

/// What the socket takes, in pieces of any size (none, mid-frame, at
/// segment boundaries, or reported larger than offered): the same bytes
/// go out as when it takes all at once, and a stream is logged only once
/// its END_STREAM frame has wholly gone (`done`, `report_sent`).
#[test]
fn partial_sends_change_neither_the_bytes_nor_when_streams_are_logged() {
    let mut input = Vec::new();
    // As many streams as the test limits let open at once.
    for id in [1, 3, 5] {
        input.extend(get(id, "/small"));
    }
    input.extend(get(7, "/big"));
    let mut more = client_frame(kind::WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
    more.extend(client_frame(
        kind::WINDOW_UPDATE,
        0,
        7,
        &(1u32 << 30).to_be_bytes(),
    ));
    let lines = |log: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(log)
            .lines()
            .map(|l| l[l.find('"').unwrap()..].to_owned())
            .collect()
    };
    // One clock for every run: a Date header is in the bytes compared.
    let (instant, wall) = (Instant::now(), SystemTime::now());
    let mut env = Env::new();
    env.now = Now::new(instant, wall);
    let mut c = env.conn();
    env.input(&mut c, &input);
    let mut want = env.output(&mut c, usize::MAX);
    env.input(&mut c, &more);
    want.extend(env.output(&mut c, usize::MAX));
    let want_log = lines(&env.log);
    assert_eq!(want_log.len(), 4, "{want_log:?}");

    let mut rng: u64 = 0x9e37_79b9;
    for round in 0..40 {
        let mut env = Env::new();
        env.now = Now::new(instant, wall);
        let mut c = env.conn();
        env.input(&mut c, &input);
        let mut got = Vec::new();
        let mut fed = false;
        for _ in 0..100_000 {
            let offered: Vec<u8> = match c.poll_transmit() {
                Transmit::Send(segs) => segs
                    .iter()
                    .flat_map(|s| match s {
                        Segment::Bytes(b) => b.to_vec(),
                        Segment::File(f) => {
                            let mut buf = vec![0; f.len as usize];
                            f.file.read_exact_at(&mut buf, f.offset).unwrap();
                            buf
                        }
                    })
                    .collect(),
                _ if !fed => {
                    fed = true;
                    env.input(&mut c, &more);
                    continue;
                }
                _ => break,
            };
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = match rng % 8 {
                0 => 0,
                1 => offered.len(),
                2 => offered.len() + 100,
                3 => 1,
                _ => (rng >> 8) as usize % (offered.len() + 1),
            };
            got.extend_from_slice(&offered[..n.min(offered.len())]);
            c.handle_sent(&mut env.ctx(), n);
            // END_STREAM frames wholly sent.
            let (mut ended, mut rest) = (0, &got[..]);
            while rest.len() >= 9 && rest.len() >= 9 + Head::parse(rest).len {
                let h = Head::parse(rest);
                let data = h.kind == kind::DATA || h.kind == kind::HEADERS;
                ended += usize::from(data && h.flags & flag::END_STREAM != 0);
                rest = &rest[9 + h.len..];
            }
            let logged = lines(&env.log).len();
            assert!(
                logged <= ended,
                "round {round}: {logged} streams logged, {ended} ended"
            );
        }
        assert!(got == want, "round {round}: other bytes went out");
        assert_eq!(lines(&env.log), want_log, "round {round}");
    }
}
