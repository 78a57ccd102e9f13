//! Access-log lines, byte for byte: a corpus of exchanges (whole, HEAD,
//! 304, 206, 404, 4xx/5xx that `Conn` answers itself, unparsable input
//! logged as its raw first line, quotes, backslashes, control and non-ASCII
//! bytes in target, referer and user agent, a 408, a response cut short,
//! pipelining, HTTP/1.0, an IPv6 peer, a request finished in a later
//! second) driven through `Conn` in-process on a controlled clock, in both
//! formats, compared with golden lines recorded from the build in which
//! `Conn` formatted the lines itself (`tests/fixtures/access_corpus.*`).
//!
//! `TANDEM_BLESS=1 cargo test --test access_corpus` rewrites the fixtures
//! (only when a format change is meant: the diff is the review).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tandem::http::parse::ParseLimits;
use tandem::http::{
    Body, BufferPool, Conn, Ctx, Limits, Notes, Now, Reply, Request, Respond, Status, Transmit,
};
use tandem::log::{Level, LogFormat};
use tandem::metrics::WorkerCounters;

/// Answers by path, one path per kind of response.
struct Corpus;

impl Respond for Corpus {
    fn respond(
        &self,
        req: &Request<'_>,
        _now: &Now,
        _local: &mut dyn std::any::Any,
        _notes: &mut Notes,
    ) -> Reply {
        let bytes = |b: &'static [u8]| Body::Bytes(Bytes::from_static(b));
        match req.target.split('?').next().unwrap_or("") {
            "/" => Reply::new(Status::OK, bytes(b"<h1>hi</h1>\n")),
            "/304" => Reply::new(Status::NOT_MODIFIED, Body::Empty).with_header("ETag", "\"e\""),
            "/206" => Reply::new(Status::PARTIAL_CONTENT, bytes(b"llo"))
                .with_header("Content-Range", "bytes 2-4/5"),
            "/big" => Reply::new(Status::OK, Body::Bytes(Bytes::from(vec![b'x'; 100_000]))),
            "/missing" => Reply::new(Status::NOT_FOUND, bytes(b"not here\n")),
            _ => Reply::new(Status::OK, bytes(b"hello")),
        }
    }
}

/// Everything a `Ctx` borrows, on a clock the test moves.
struct World {
    now: Now,
    /// The wall-clock time `now` says.
    wall: SystemTime,
    limits: Limits,
    log: Vec<u8>,
    notes: Notes,
    stats: WorkerCounters,
    pool: BufferPool,
    fds: tandem::http::FdBudget,
    /// The responder's per-worker state (it keeps none).
    local: (),
}

impl World {
    fn new(format: LogFormat) -> World {
        let wall = UNIX_EPOCH + Duration::from_secs(1_795_375_297);
        World {
            // On a whole microsecond of the stamps a `Conn` keeps its
            // deadlines in, so a timeout fires exactly when a case has
            // advanced by it (off that grid, up to 1 µs later).
            now: Now::new(tandem::http::Stamp::of(Instant::now()).instant(), wall),
            wall,
            limits: Limits {
                parse: ParseLimits {
                    max_header_size: 4096,
                    max_target_size: 2048,
                },
                log_format: format,
                ..Limits::small()
            },
            log: Vec::new(),
            notes: Notes::new(Level::Error),
            stats: WorkerCounters::default(),
            pool: BufferPool::default(),
            fds: tandem::http::FdBudget::unlimited(),
            local: (),
        }
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            now: &self.now,
            responder: &Corpus,
            limits: &self.limits,
            log: Some(&mut self.log),
            notes: &mut self.notes,
            stats: &self.stats,
            pool: &mut self.pool,
            fds: &self.fds,
            local: &mut self.local,
            drain_grace: Duration::ZERO,
        }
    }

    /// Both clocks move on by `d`.
    fn advance(&mut self, d: Duration) {
        self.wall += d;
        self.now = Now::new(self.now.instant() + d, self.wall);
    }

    fn conn(&self, peer: &str) -> Conn {
        Conn::new(peer.parse().unwrap(), self.now.instant(), &self.limits)
    }
}

/// One thing that happens to a connection.
enum Step {
    In(&'static [u8]),
    Advance(Duration),
    /// Send what the connection offers, at most this many bytes in all.
    Send(usize),
    Timeout,
    Error,
}
use Step::*;

const ALL: usize = usize::MAX;

/// The corpus: a name and what happens, each on a new connection.
fn corpus() -> Vec<(&'static str, &'static str, Vec<Step>)> {
    let v4 = "192.0.2.7:40000";
    let long: &'static [u8] = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(3000))
        .into_bytes()
        .leak();
    vec![
        (
            "plain GET with referer and user agent",
            v4,
            vec![
                In(b"GET /a.txt?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r.example/p?x=1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n\r\n"),
                Send(ALL),
            ],
        ),
        (
            "no referer, no user agent",
            v4,
            vec![In(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "HEAD",
            v4,
            vec![In(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.5.0\r\n\r\n"), Send(ALL)],
        ),
        (
            "304",
            v4,
            vec![In(b"GET /304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"\r\n\r\n"), Send(ALL)],
        ),
        (
            "206",
            v4,
            vec![In(b"GET /206 HTTP/1.1\r\nHost: x\r\nRange: bytes=2-\r\n\r\n"), Send(ALL)],
        ),
        (
            "404",
            v4,
            vec![In(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "HTTP/1.0 keep-alive",
            v4,
            vec![In(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), Send(ALL)],
        ),
        (
            "pipelined, answered in pieces",
            v4,
            vec![
                In(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: one\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nUser-Agent: two\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n"),
                Send(7),
                Advance(Duration::from_millis(250)),
                Send(ALL),
            ],
        ),
        (
            "quotes, backslashes, control and non-ASCII bytes",
            v4,
            vec![
                In(b"GET /a.txt?q=\"x\"\\y&z=%FF HTTP/1.1\r\nHost: x\r\nReferer: http://r/\"\\\xff\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\r\nUser-Agent: M\xc3\xb6zilla\t\"tab\" \\x41 \x80\xfe\r\n\r\n"),
                Send(ALL),
            ],
        ),
        (
            "UTF-8 target",
            v4,
            vec![In(b"GET /\xc3\xa9t\xc3\xa9?\xe6\x97\xa5 HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "control bytes in the request line: 400, raw line",
            v4,
            vec![In(b"GET /\x01\x7f\"\\ HTTP/1.1 x\r\n\r\n"), Send(ALL)],
        ),
        (
            "TLS to a plain port: 400, raw bytes",
            v4,
            vec![In(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 \xff\xfe\r\n\r\n"), Send(ALL)],
        ),
        (
            "a bare LF line: 400",
            v4,
            vec![In(b"GARBAGE\nHost: x\n\n"), Send(ALL)],
        ),
        (
            "a version we do not speak",
            v4,
            vec![In(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "a target too long: raw line cut at 1024 bytes",
            v4,
            vec![In(long), Send(ALL)],
        ),
        (
            "no Host: 400 after parsing",
            v4,
            vec![In(b"GET /a.txt HTTP/1.1\r\nUser-Agent: ua\r\n\r\n"), Send(ALL)],
        ),
        (
            "POST: 405, body discarded",
            v4,
            vec![In(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nReferer: http://r/\r\n\r\nabc"), Send(ALL)],
        ),
        (
            "unknown method: 501",
            v4,
            vec![In(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "OPTIONS: 204",
            v4,
            vec![In(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "a body too large: 413, no referer or user agent",
            v4,
            vec![
                In(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nReferer: http://r/\r\nUser-Agent: ua\r\n\r\n"),
                Send(ALL),
            ],
        ),
        (
            "chunked with 100-continue: the 100 is not logged",
            v4,
            vec![
                In(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nUser-Agent: ch\r\n\r\n"),
                Send(ALL),
                In(b"3\r\nabc\r\n0\r\n\r\n"),
                Send(ALL),
            ],
        ),
        (
            "a head that never completes: 408",
            v4,
            vec![
                In(b"GET /slow HTTP/1.1\r\nHost: x\r\nUser-Agent: sl"),
                Advance(Duration::from_secs(15)),
                Timeout,
                Send(ALL),
            ],
        ),
        (
            "a chunked body that never completes: 408",
            v4,
            vec![
                In(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"),
                Advance(Duration::from_secs(15)),
                Timeout,
                Send(ALL),
            ],
        ),
        (
            "a response cut short by a reset",
            v4,
            vec![
                In(b"GET /big HTTP/1.1\r\nHost: x\r\nUser-Agent: quitter\r\n\r\n"),
                Send(5000),
                Advance(Duration::from_millis(1500)),
                Error,
            ],
        ),
        (
            "a response cut before its body",
            v4,
            vec![In(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"), Send(10), Error],
        ),
        (
            "a send timeout",
            v4,
            vec![
                In(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"),
                Send(20_000),
                Advance(Duration::from_secs(61)),
                Timeout,
            ],
        ),
        (
            "finished in a later second: logged at its start",
            v4,
            vec![
                In(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"),
                Send(1000),
                Advance(Duration::from_micros(2_345_678)),
                Send(ALL),
            ],
        ),
        (
            "an IPv6 peer",
            "[2001:db8::1]:443",
            vec![In(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
        (
            "an IPv4-mapped IPv6 peer",
            "[::ffff:192.0.2.9]:443",
            vec![In(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Send(ALL)],
        ),
    ]
}

/// Run `steps` on a new connection; stop sending once `limit` bytes went.
fn run(w: &mut World, peer: &str, steps: &[Step]) {
    let mut c = w.conn(peer);
    for step in steps {
        match step {
            In(b) => c.handle_input(&mut w.ctx(), b),
            Advance(d) => w.advance(*d),
            Timeout => c.handle_timeout(&mut w.ctx()),
            Error => c.handle_error(&mut w.ctx()),
            Send(limit) => {
                let mut left = *limit;
                while left > 0 {
                    match c.poll_transmit() {
                        Transmit::Send(segs) => {
                            let n = segs.iter().map(|s| s.len() as usize).sum::<usize>();
                            let n = n.min(left);
                            left -= n;
                            c.handle_sent(&mut w.ctx(), n);
                        }
                        Transmit::Shutdown => c.handle_shutdown(),
                        Transmit::Idle | Transmit::Close => break,
                    }
                }
            }
        }
    }
}

/// The corpus's log lines in `format`, each case's after a `# name` line.
fn lines(format: LogFormat) -> String {
    let mut w = World::new(format);
    let mut all = String::new();
    for (name, peer, steps) in corpus() {
        run(&mut w, peer, &steps);
        all.push_str(&format!("# {name}\n"));
        all.push_str(std::str::from_utf8(&w.log).expect("a log line is UTF-8"));
        w.log.clear();
        w.advance(Duration::from_millis(1001));
    }
    all
}

fn check(format: LogFormat, file: &str) {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let got = lines(format);
    if std::env::var_os("TANDEM_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{file} line {}", i + 1);
    }
    assert_eq!(got, want, "{file}: lines missing or added");
}

#[test]
fn combined_lines_are_unchanged() {
    check(LogFormat::Combined, "access_corpus.combined");
}

#[test]
fn json_lines_are_unchanged() {
    check(LogFormat::Json, "access_corpus.json");
}

/// Every JSON line is one JSON object.
#[test]
fn json_lines_parse() {
    for line in lines(LogFormat::Json)
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["status"].is_u64(), "{line}");
    }
}
