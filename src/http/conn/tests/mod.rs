//! Conn driven in memory: exact bytes out for whole, split, pipelined and
//! partially-sent input. No sockets, no files beneath a root: an in-memory
//! responder answers.

use std::any::Any;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::http::reply::{FileRange, HTML};
use crate::http::{Ctx, Limits, Notes, Now, Respond};
use crate::log::LogFormat;
use crate::metrics::WorkerCounters;

const DATE: &str = "Sun, 22 Nov 2026 19:21:37 GMT";
const MTIME: &str = "Fri, 13 Nov 2026 08:00:00 GMT";

/// Answers from memory: a few paths, a directory redirect, a 404 page, one
/// body made of several parts and one body from an (anonymous, in-memory)
/// file, so every kind of segment goes through `Conn`.
struct Mem {
    big: Arc<File>,
}

/// The body of `/file.bin`, served from a file segment.
const BIG: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl Mem {
    fn new() -> Mem {
        Mem {
            big: crate::http::memfd(c"tandem-test", BIG),
        }
    }

    fn ok(ct: &'static str, body: Body) -> Reply {
        Reply::new(Status::OK, body)
            .with_header("Content-Type", ct)
            .with_header("Last-Modified", MTIME)
    }
}

impl Respond for Mem {
    fn respond(&self, req: &Request<'_>, _: &Now, _: &mut dyn Any, _: &mut Notes) -> Reply {
        let path = req.target.split('?').next().unwrap_or("");
        let text = |b: &'static str| Body::Bytes(Bytes::from_static(b.as_bytes()));
        match path {
            "/" => Mem::ok(HTML, text("<h1>hi</h1>\n")),
            "/a.txt" => Mem::ok("text/plain; charset=utf-8", text("hello")),
            "/sub/" => Mem::ok(HTML, text("sub\n")),
            "/sub" => Reply::status(Status::MOVED_PERMANENTLY).with_header("Location", "/sub/"),
            "/parts" => Mem::ok(
                "text/plain; charset=utf-8",
                Body::Parts(vec![
                    Segment::Bytes(Bytes::from_static(b"one ")),
                    Segment::File(FileRange {
                        file: self.big.clone(),
                        offset: 10,
                        len: 5,
                    }),
                    Segment::Bytes(Bytes::from_static(b" three")),
                ]),
            ),
            "/file.bin" => Mem::ok(
                "application/octet-stream",
                Body::File(FileRange {
                    file: self.big.clone(),
                    offset: 0,
                    len: BIG.len() as u64,
                }),
            ),
            // Echo a header the parser knows nothing about.
            "/echo" => Mem::ok(
                "text/plain; charset=utf-8",
                Body::Bytes(Bytes::copy_from_slice(
                    req.header("x-echo").unwrap_or(b"(none)"),
                )),
            ),
            _ => {
                Reply::new(Status::NOT_FOUND, text("not here\n")).with_header("Content-Type", HTML)
            }
        }
    }
}

struct Env {
    mem: Mem,
    /// `Mem` keeps nothing per worker.
    local: (),
    limits: Limits,
    now: Now,
    log: Vec<u8>,
    notes: Notes,
    drain_grace: Duration,
    stats: WorkerCounters,
    pool: crate::http::BufferPool,
    fds: crate::http::FdBudget,
}

impl Env {
    fn new() -> Env {
        let limits = Limits::small();
        // On a whole microsecond of the `Stamp`s a `Conn` keeps its times
        // in, so its deadlines are exactly those written below (off the
        // grid they may be up to 1 µs later: phase.rs).
        let now = Now::new(
            crate::http::Stamp::of(Instant::now()).instant(),
            httpdate::parse_http_date(DATE).unwrap(),
        );
        assert_eq!(now.date, DATE);
        Env {
            mem: Mem::new(),
            local: (),
            limits,
            now,
            log: Vec::new(),
            notes: Notes::new(Level::Debug),
            drain_grace: Duration::ZERO,
            stats: WorkerCounters::default(),
            pool: Default::default(),
            fds: crate::http::FdBudget::unlimited(),
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
            drain_grace: self.drain_grace,
        }
    }

    fn conn(&self) -> Conn {
        Conn::new(
            "127.0.0.1:5555".parse().unwrap(),
            self.now.instant(),
            &self.limits,
        )
    }

    fn advance(&mut self, d: Duration) {
        self.now.set_instant(self.now.instant() + d);
    }
}

mod chunked;
mod phase;
mod split;

#[derive(Debug, Default, PartialEq)]
struct Out {
    bytes: Vec<u8>,
    shutdown: bool,
    closed: bool,
}

/// Copy up to `max` bytes of what `segs` starts with into `out`, as a
/// gathering write would; returns the count.
fn take(segs: &[Segment], max: usize, out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for s in segs {
        let k = (max - n).min(s.len() as usize);
        match s {
            Segment::Bytes(b) => out.extend_from_slice(&b[..k]),
            Segment::File(f) => {
                let mut buf = vec![0u8; k];
                f.file.read_exact_at(&mut buf, f.offset).unwrap();
                out.extend_from_slice(&buf);
            }
        }
        n += k;
        if n == max {
            break;
        }
    }
    n
}

/// Send everything the Conn offers, at most `chunk` bytes per write.
fn drain(env: &mut Env, c: &mut Conn, chunk: usize, out: &mut Out) {
    loop {
        match c.poll_transmit() {
            Transmit::Idle => return,
            Transmit::Close => {
                out.closed = true;
                return;
            }
            Transmit::Shutdown => {
                out.shutdown = true;
                c.handle_shutdown();
            }
            Transmit::Send(segs) => {
                assert!(!segs.is_empty() && segs.iter().all(|s| !s.is_empty()));
                let n = take(segs, chunk, &mut out.bytes);
                c.handle_sent(&mut env.ctx(), n);
            }
        }
    }
}

/// A fresh connection that has been answered one GET of /a.txt, in full.
fn served(env: &mut Env) -> (Conn, Out) {
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    drain(env, &mut c, usize::MAX, &mut out);
    (c, out)
}

/// GET /a.txt on `c`: answered with `Connection: close`.
fn get_a_answered_with_close(env: &mut Env, c: &mut Conn) -> Out {
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    drain(env, c, usize::MAX, &mut out);
    let s = String::from_utf8_lossy(&out.bytes);
    assert!(
        s.starts_with("HTTP/1.1 200 OK\r\n") && s.contains("Connection: close\r\n"),
        "{s}"
    );
    out
}

/// Feed `input` in pieces split at `splits`, draining with `chunk`-byte sends.
fn run(input: &[u8], splits: &[usize], chunk: usize) -> Out {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    let mut start = 0;
    for &s in splits.iter().chain(std::iter::once(&input.len())) {
        c.handle_input(&mut env.ctx(), &input[start..s]);
        drain(&mut env, &mut c, chunk, &mut out);
        start = s;
    }
    out
}

fn resp(status: &str, extra: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nServer: tandem\r\nDate: {DATE}\r\n{extra}\r\n{body}")
}

fn file_resp(ct: &str, body: &str) -> String {
    resp(
        "200 OK",
        &format!(
            "Content-Type: {ct}\r\nLast-Modified: {MTIME}\r\nContent-Length: {}\r\n",
            body.len()
        ),
        body,
    )
}

const GET_A: &str = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn get_exact_bytes() {
    let out = run(GET_A.as_bytes(), &[], usize::MAX);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        file_resp("text/plain; charset=utf-8", "hello")
    );
    assert!(!out.closed && !out.shutdown);
}

#[test]
fn head_has_headers_no_body() {
    let out = run(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", &[], usize::MAX);
    let want = file_resp("text/plain; charset=utf-8", "hello");
    let want = &want[..want.len() - 5];
    assert_eq!(String::from_utf8(out.bytes).unwrap(), want);
}

#[test]
fn split_at_every_offset_gives_same_bytes() {
    let reqs = [
        GET_A.to_string(),
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n".to_string(),
        format!("{GET_A}GET /sub HTTP/1.1\r\nHost: x\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n"
            .to_string(),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
    ];
    for req in &reqs {
        let whole = run(req.as_bytes(), &[], usize::MAX);
        assert!(!whole.bytes.is_empty());
        for i in 1..req.len() {
            let split = run(req.as_bytes(), &[i], usize::MAX);
            assert_eq!(split, whole, "split at {i} of {req:?}");
        }
        // Two splits, and one byte at a time.
        for i in (1..req.len()).step_by(7) {
            for j in (i..req.len()).step_by(5) {
                assert_eq!(run(req.as_bytes(), &[i, j], usize::MAX), whole);
            }
        }
        let each: Vec<usize> = (1..req.len()).collect();
        assert_eq!(run(req.as_bytes(), &each, usize::MAX), whole);
    }
}

#[test]
fn pipelined_in_order() {
    let input = format!(
        "{GET_A}GET /missing HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    let out = run(input.as_bytes(), &[], usize::MAX);
    let want = [
        file_resp("text/plain; charset=utf-8", "hello"),
        resp(
            "404 Not Found",
            "Content-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n",
            "not here\n",
        ),
        resp("204 No Content", "Allow: GET, HEAD, OPTIONS\r\n", ""),
        file_resp("text/html; charset=utf-8", "<h1>hi</h1>\n"),
    ]
    .concat();
    assert_eq!(String::from_utf8(out.bytes).unwrap(), want);
}

#[test]
fn partial_sends_resume() {
    let input = format!("{GET_A}GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let whole = run(input.as_bytes(), &[], usize::MAX);
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(run(input.as_bytes(), &[], chunk), whole, "chunk {chunk}");
        assert_eq!(run(input.as_bytes(), &[10, 40], chunk), whole);
    }
}

#[test]
fn bad_request_closes_after_response() {
    let out = run(b"GARBAGE\r\n\r\n", &[], usize::MAX);
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{s}");
    assert!(s.contains("\r\nConnection: close\r\n"));
    assert!(out.shutdown, "write side shut after the last response");
    // Later input is discarded; EOF closes.
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(
        &mut env.ctx(),
        b"GET / HTTP/9.9\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    drain(&mut env, &mut c, usize::MAX, &mut out);
    let s = String::from_utf8(out.bytes.clone()).unwrap();
    assert!(s.starts_with("HTTP/1.1 505 "), "{s}");
    assert_eq!(s.matches("HTTP/1.1").count(), 1, "nothing after the error");
    c.handle_eof(&mut env.ctx());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(out.closed);
}

#[test]
fn methods() {
    let s = |req: &str| String::from_utf8(run(req.as_bytes(), &[], usize::MAX).bytes).unwrap();
    let r = s("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    assert!(r.contains("\r\nAllow: GET, HEAD, OPTIONS\r\n"));
    let r = s("BREW / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 501 "), "{r}");
    let r = s("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
    assert!(r.contains("Connection: close"));
}

#[test]
fn http10_keep_alive() {
    let out = run(b"GET /a.txt HTTP/1.0\r\n\r\n", &[], usize::MAX);
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(s.contains("\r\nConnection: close\r\n"), "{s}");
    assert!(out.shutdown);
    let out = run(
        b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &[],
        usize::MAX,
    );
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(s.contains("\r\nConnection: keep-alive\r\n"), "{s}");
    assert!(!out.shutdown && !out.closed);
}

#[test]
fn timeouts() {
    let mut env = Env::new();
    // Idle keep-alive connection: half-closed silently after
    // keepalive_timeout (a request racing the close is discarded, not reset),
    // then closed at the peer's EOF or after the linger time.
    let (mut c, mut out) = served(&mut env);
    let d = c.poll_timeout().unwrap();
    assert_eq!(d, env.now.instant() + env.limits.keepalive_timeout);
    env.advance(Duration::from_secs(59));
    c.handle_timeout(&mut env.ctx());
    assert!(!c.is_closed());
    env.advance(Duration::from_secs(1));
    c.handle_timeout(&mut env.ctx());
    let sent = out.bytes.len();
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(out.shutdown && !c.is_closed() && out.bytes.len() == sent);
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert_eq!(
        out.bytes.len(),
        sent,
        "a request after the half-close is not answered"
    );
    env.advance(env.limits.linger_timeout);
    c.handle_timeout(&mut env.ctx());
    assert!(c.is_closed());
    // With the peer's EOF it closes at once.
    let (mut c, mut out) = served(&mut env);
    env.advance(env.limits.keepalive_timeout);
    c.handle_timeout(&mut env.ctx());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    c.handle_eof(&mut env.ctx());
    assert!(c.is_closed());

    // A head that never completes: 408, then close.
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), b"GET / HTTP/1.1\r\nHo");
    env.advance(Duration::from_secs(10));
    c.handle_input(&mut env.ctx(), b"st: x\r\n");
    // The head deadline runs from the first byte, not the last.
    assert_eq!(
        c.poll_timeout().unwrap(),
        env.now.instant() + Duration::from_secs(5)
    );
    env.advance(Duration::from_secs(5));
    c.handle_timeout(&mut env.ctx());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(String::from_utf8_lossy(&out.bytes).starts_with("HTTP/1.1 408 "));
    assert!(out.shutdown);
}

#[test]
fn graceful_shutdown() {
    let mut env = Env::new();
    // Idle after a request: closes at once.
    let (mut c, _) = served(&mut env);
    c.begin_shutdown(&mut env.ctx());
    assert!(matches!(c.poll_transmit(), Transmit::Close));
    // Fresh (accepted, nothing received yet): its first request is answered
    // with Connection: close, then it closes.
    let mut c = env.conn();
    let mut out = Out::default();
    c.begin_shutdown(&mut env.ctx());
    assert!(!c.is_closed());
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(
        s.starts_with("HTTP/1.1 200 OK\r\n") && s.contains("Connection: close\r\n"),
        "{s}"
    );
    assert!(out.shutdown);
    // In flight: the response finishes, then the connection closes.
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    c.begin_shutdown(&mut env.ctx());
    drain(&mut env, &mut c, 3, &mut out);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        file_resp("text/plain; charset=utf-8", "hello")
    );
    assert!(out.closed);
    // A request that arrives while draining is answered with Connection: close.
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), b"GET /a.txt HTTP/1.1\r\nHost");
    c.begin_shutdown(&mut env.ctx());
    assert!(!c.is_closed(), "a partial request is in flight");
    c.handle_input(&mut env.ctx(), b": x\r\n\r\n");
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(String::from_utf8_lossy(&out.bytes).contains("Connection: close\r\n"));
}

#[test]
fn access_log_line() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(
        &mut env.ctx(),
        b"GET /a.txt?q=\"x\" HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\nUser-Agent: ua/1\r\n\r\n",
    );
    drain(&mut env, &mut c, 2, &mut out);
    assert_eq!(
        String::from_utf8(env.log.clone()).unwrap(),
        "127.0.0.1 - - [22/Nov/2026:19:21:37 +0000] \"GET /a.txt?q=\\x22x\\x22 HTTP/1.1\" 200 5 \"http://r/\" \"ua/1\"\n"
    );
}

#[test]
fn access_log_json_line() {
    let mut env = Env::new();
    env.limits.log_format = LogFormat::Json;
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(
        &mut env.ctx(),
        b"GET /a.txt?q=\"x\\y\" HTTP/1.1\r\nHost: x\r\nReferer: http://r/\"\\\xff\xc3\xa9\r\n\r\n",
    );
    env.advance(Duration::from_micros(1_500_250));
    drain(&mut env, &mut c, 2, &mut out);
    // A request that does not parse: its raw first line, split at spaces.
    let mut c = env.conn();
    c.handle_input(&mut env.ctx(), b"GET /\x01\x7f HTTP/1.1 x\r\n\r\n");
    drain(&mut env, &mut c, usize::MAX, &mut Out::default());
    let log = String::from_utf8(env.log.clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(
        lines[0],
        r#"{"time":"2026-11-22T19:21:37Z","remote":"127.0.0.1","method":"GET","target":"/a.txt?q=\"x\\x5Cy\"","protocol":"HTTP/1.1","status":200,"bytes":5,"duration":1.500250,"referer":"http://r/\"\\x5C\\xFFé","user_agent":null}"#
    );
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(v["status"], 400);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["target"], "/\u{1}\u{7f}");
    assert_eq!(v["protocol"], "HTTP/1.1 x");
    assert_eq!(v["referer"], serde_json::Value::Null);
}

#[test]
fn responses_are_counted() {
    let mut env = Env::new();
    let (mut c, out) = served(&mut env);
    c.handle_input(&mut env.ctx(), b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out2 = Out::default();
    drain(&mut env, &mut c, usize::MAX, &mut out2);
    // Each response once, by class, with every byte that went out.
    let want = crate::metrics::WorkerCounters::default();
    want.response(200, out.bytes.len() as u64);
    want.response(404, out2.bytes.len() as u64);
    assert_eq!(format!("{:?}", env.stats), format!("{want:?}"));
}

#[test]
fn buffered_input_is_bounded() {
    let env = Env::new();
    let mut env = env;
    let mut c = env.conn();
    // A client that pipelines without reading: the Conn asks the engine to stop.
    let one = GET_A.as_bytes();
    let mut fed = 0;
    while c.wants_input(&env.limits) {
        c.handle_input(&mut env.ctx(), one);
        fed += 1;
        assert!(fed < 10_000, "never pushed back");
    }
    assert!(c.inbuf_len() <= env.limits.max_buffered() + one.len());
}

/// An idle keep-alive connection is its small core alone: no response
/// buffers, no input buffer, no `Rare` part, also after a head split byte
/// by byte and a request with a body (each of which needs the `Rare` part
/// for a while). What a worker holds per idle connection is mostly this.
#[test]
fn an_idle_connection_holds_only_its_core() {
    assert!(
        std::mem::size_of::<Conn>() <= 88,
        "Conn is {} bytes",
        std::mem::size_of::<Conn>()
    );
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    for b in GET_A.as_bytes() {
        c.handle_input(&mut env.ctx(), std::slice::from_ref(b));
        drain(&mut env, &mut c, 7, &mut out);
    }
    let post = b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab";
    c.handle_input(&mut env.ctx(), post);
    drain(&mut env, &mut c, 7, &mut out);
    assert!(!c.is_idle(), "the body is not all in");
    c.handle_input(&mut env.ctx(), b"cde");
    drain(&mut env, &mut c, 7, &mut out);
    let s = String::from_utf8_lossy(&out.bytes);
    assert_eq!(s.matches("HTTP/1.1 ").count(), 2, "{s}");
    assert!(c.is_idle(), "{:?}", c.phase());
    assert!(c.bufs.is_none(), "response buffers held while idle");
    assert!(c.rare.is_none(), "Rare part held while idle: {:?}", c.rare);
}

#[test]
fn retire_grace_answers_one_more_request_with_close() {
    let mut env = Env::new();
    env.drain_grace = Duration::from_secs(2);
    let (mut c, _) = served(&mut env);
    c.begin_shutdown(&mut env.ctx());
    assert!(!c.is_closed(), "idle keep-alive stays for the grace");
    assert_eq!(
        c.poll_timeout(),
        Some(env.now.instant() + Duration::from_secs(2))
    );
    // A request within the grace: answered, with Connection: close.
    env.advance(Duration::from_secs(1));
    let out = get_a_answered_with_close(&mut env, &mut c);
    assert!(out.shutdown);
    // No request within the grace: half-closed when it runs out, closed at
    // the peer's EOF.
    let (mut c, mut out) = served(&mut env);
    c.begin_shutdown(&mut env.ctx());
    env.advance(Duration::from_secs(2));
    c.handle_timeout(&mut env.ctx());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(out.shutdown);
    c.handle_eof(&mut env.ctx());
    assert!(c.is_closed());
}

/// The drain begins while a keep-alive response is still being sent (the
/// usual case on io_uring, where sends complete later): the response did not
/// say `Connection: close`, so the connection must not be closed under the
/// client's next request. It gets the grace like an idle one.
#[test]
fn drain_during_response_keeps_the_grace() {
    let mut env = Env::new();
    env.drain_grace = Duration::from_secs(2);
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    // Nothing sent yet: the response is in flight.
    c.begin_shutdown(&mut env.ctx());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    let first = String::from_utf8(std::mem::take(&mut out.bytes)).unwrap();
    assert!(!first.contains("Connection: close"), "{first}");
    assert!(
        !c.is_closed() && !out.shutdown,
        "closed under a possible next request"
    );
    env.advance(Duration::from_millis(500));
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    let second = String::from_utf8(out.bytes).unwrap();
    assert!(
        second.starts_with("HTTP/1.1 200 OK") && second.contains("Connection: close\r\n"),
        "{second}"
    );
    assert!(out.shutdown);
}

/// A slow reader is still receiving the last response when the drain grace
/// (or keep-alive time) runs out: the engine reports the bytes still in the
/// socket, and the idle time starts over while they keep shrinking.
#[test]
fn unsent_response_bytes_defer_the_idle_close() {
    let mut env = Env::new();
    env.drain_grace = Duration::from_secs(2);
    let (mut c, _) = served(&mut env);
    c.begin_shutdown(&mut env.ctx());
    assert!(c.is_idle());
    for left in [90_000, 50_000, 10_000] {
        env.advance(Duration::from_secs(2));
        c.handle_unsent(&mut env.ctx(), left);
        assert!(
            !c.is_closed() && c.poll_timeout() == Some(env.now.instant() + Duration::from_secs(2))
        );
    }
    // The client has it all now and sends its next request in time.
    env.advance(Duration::from_secs(1));
    get_a_answered_with_close(&mut env, &mut c);

    // A client that stops reading altogether is not waited for past send_timeout.
    let (mut c, mut out) = served(&mut env);
    c.begin_shutdown(&mut env.ctx());
    let t0 = env.now.instant();
    while env.now.instant() < t0 + env.limits.send_timeout + Duration::from_secs(4) {
        env.advance(Duration::from_secs(2));
        c.handle_unsent(&mut env.ctx(), 5000);
        drain(&mut env, &mut c, usize::MAX, &mut out);
        if out.shutdown {
            break;
        }
    }
    assert!(out.shutdown, "still waiting on a client that reads nothing");
    // With nothing left in the socket, the deadline is acted on at once.
    let (mut c, mut out) = served(&mut env);
    c.begin_shutdown(&mut env.ctx());
    env.advance(Duration::from_secs(2));
    c.handle_unsent(&mut env.ctx(), 0);
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(out.shutdown);
}

/// The responder sees every header of the request, including ones the
/// parser knows nothing about.
#[test]
fn responder_sees_every_header() {
    let out = run(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Echo:  made up \r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        &[],
        usize::MAX,
    );
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(s.contains("\r\n\r\nmade upHTTP/1.1 200 OK"), "{s}");
    assert!(s.ends_with("\r\n\r\n(none)"), "{s}");
}

/// Bodies of several segments (bytes and file ranges) and file bodies come
/// out whole, in order, however the sends are cut.
#[test]
fn parts_and_file_bodies() {
    let input = "GET /parts HTTP/1.1\r\nHost: x\r\n\r\nGET /file.bin HTTP/1.1\r\nHost: x\r\n\r\nHEAD /parts HTTP/1.1\r\nHost: x\r\n\r\n";
    let whole = run(input.as_bytes(), &[], usize::MAX);
    let want = [
        file_resp("text/plain; charset=utf-8", "one abcde three"),
        file_resp(
            "application/octet-stream",
            std::str::from_utf8(BIG).unwrap(),
        ),
        file_resp("text/plain; charset=utf-8", "one abcde three")
            .trim_end_matches("one abcde three")
            .to_string(),
    ]
    .concat();
    assert_eq!(String::from_utf8(whole.bytes.clone()).unwrap(), want);
    for chunk in [1, 2, 3, 5, 7, 64] {
        assert_eq!(run(input.as_bytes(), &[], chunk), whole, "chunk {chunk}");
    }
    // The access log counts body bytes, not head bytes.
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), input.as_bytes());
    drain(&mut env, &mut c, 4, &mut out);
    let log = String::from_utf8(env.log).unwrap();
    let counts: Vec<&str> = log
        .lines()
        .map(|l| l.split("\" ").nth(1).unwrap_or("").trim_end_matches(" \"-"))
        .collect();
    assert_eq!(counts, ["200 15", "200 36", "200 0"], "{log}");
}

/// An engine that sends asynchronously keeps clones of the segments; the
/// `Conn` meanwhile takes input, EOF and a drain, and the bytes the engine
/// sends from its clones are still the response's.
#[test]
fn input_and_drain_while_a_send_is_in_flight() {
    let mut env = Env::new();
    env.drain_grace = Duration::from_secs(2);
    let mut c = env.conn();
    c.handle_input(&mut env.ctx(), b"GET /parts HTTP/1.1\r\nHost: x\r\n\r\n");
    let held: Vec<Segment> = match c.poll_transmit() {
        Transmit::Send(segs) => segs.to_vec(),
        other => panic!("{other:?}"),
    };
    // While "in flight": a pipelined request, a drain, then the peer's EOF.
    c.handle_input(&mut env.ctx(), GET_A.as_bytes());
    c.begin_shutdown(&mut env.ctx());
    c.handle_eof(&mut env.ctx());
    assert!(!c.is_closed());
    // The kernel finishes the send from the clones.
    let mut out = Out::default();
    let n = take(&held, usize::MAX, &mut out.bytes);
    drop(held);
    c.handle_sent(&mut env.ctx(), n);
    drain(&mut env, &mut c, usize::MAX, &mut out);
    let s = String::from_utf8(out.bytes).unwrap();
    let first = file_resp("text/plain; charset=utf-8", "one abcde three");
    assert!(s.starts_with(&first), "{s}");
    let second = &s[first.len()..];
    assert!(
        second.starts_with("HTTP/1.1 200 OK") && second.contains("Connection: close\r\n"),
        "{second}"
    );
    assert!(second.ends_with("hello"));
    assert!(out.closed || out.shutdown);
}
