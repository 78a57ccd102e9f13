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

mod flow;
mod hostile;
