//! Observability: the metrics and health listener (`metrics_listen`:
//! `/metrics` read back with a Prometheus text-format parser, `/healthz`
//! during a graceful stop) and the JSON access log (`access_log_format =
//! "json"`, every line parsed back with serde_json), on both engines.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const METRICS: &str = "metrics_listen = [\"127.0.0.1:0\"]";
const WAIT: Duration = Duration::from_secs(10);

/// A hostile request: target, Referer and User-Agent (None: no such header).
type Case = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The metrics listener's address, from its `metrics and health on ADDR` line.
fn metrics_addr(srv: &Server) -> SocketAddr {
    const TAG: &str = "metrics and health on ";
    assert!(
        srv.wait_stderr(TAG, WAIT),
        "no `{TAG}` line\n{}",
        srv.stderr_text()
    );
    let text = srv.stderr_text();
    let line = text.lines().find(|l| l.contains(TAG)).unwrap();
    let at = line.find(TAG).unwrap() + TAG.len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// One request to the metrics listener: (status, content type, body).
fn fetch(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let r = frame::split_response(&raw).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let len = frame::content_length(&r.head);
    assert_eq!(len, r.body.len(), "Content-Length of {path}");
    let ct = r.header("content-type").unwrap_or("").to_string();
    let body = String::from_utf8(r.body).expect("UTF-8 response");
    (r.status, ct, body)
}

/// A parsed scrape.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    fn get(addr: SocketAddr) -> Scrape {
        let (status, ct, body) = fetch(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let s = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .expect("parse the exposition text");
        // The parser skips lines it does not understand: every sample line
        // must have become a sample.
        let lines = body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(s.samples.len(), lines, "unparsed sample lines in\n{body}");
        for name in [
            "tandem_requests_total",
            "tandem_response_bytes_total",
            "tandem_connections_open",
            "tandem_connections_accepted_total",
            "tandem_cache_entries",
            "tandem_cache_bytes",
            "tandem_open_file_cache_entries",
            "tandem_reloads_total",
            "tandem_info",
        ] {
            assert!(s.docs.contains_key(name), "no HELP for {name}\n{body}");
            assert!(
                body.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}"
            );
        }
        Scrape(s)
    }

    /// The value of `name` with `label` (`("code", "2xx")`), or without labels.
    fn value(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let mut found =
            self.0.samples.iter().filter(|s| {
                s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
            });
        let s = found
            .next()
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        assert!(found.next().is_none(), "{name} {label:?} twice");
        use prometheus_parse::Value;
        match (&s.value, name.ends_with("_total")) {
            (Value::Counter(v), true) => *v,
            (Value::Gauge(v), false) => *v,
            (v, _) => panic!("{name}: unexpected type {v:?}"),
        }
    }

    fn requests(&self, class: &str) -> u64 {
        self.value("tandem_requests_total", Some(("code", class))) as u64
    }
    fn bytes(&self) -> u64 {
        self.value("tandem_response_bytes_total", None) as u64
    }
    fn open(&self) -> u64 {
        self.value("tandem_connections_open", None) as u64
    }
    fn accepted(&self) -> u64 {
        self.value("tandem_connections_accepted_total", None) as u64
    }
    fn reloads(&self, result: &str) -> u64 {
        self.value("tandem_reloads_total", Some(("result", result))) as u64
    }
    /// What the small-file caches hold: (entries, bytes).
    fn cache(&self) -> (u64, u64) {
        (
            self.value("tandem_cache_entries", None) as u64,
            self.value("tandem_cache_bytes", None) as u64,
        )
    }
}

/// Scrape until `pred` holds (or panic after `WAIT`); returns that scrape.
fn scrape_until(addr: SocketAddr, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = Scrape::get(addr);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}: {:#?}",
            s.0.samples
                .iter()
                .map(|x| format!("{} {:?} {:?}", x.metric, x.labels, x.value))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// GET `path` on a connection of its own, read to the close: every byte the
/// server sent for it (head and body).
fn get_raw(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut c = Conn::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_to_close(IO_TIMEOUT)
        .unwrap_or_else(|b| panic!("GET {path}: not closed; got {}", show(&b)))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

engine_tests! {
    fn metrics_count_requests_bytes_and_connections(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, &format!("{METRICS}\nworkers = 2"), &site.root);
        let m = metrics_addr(&srv);
        let s0 = Scrape::get(m);
        let info = s0.0.samples.iter().find(|s| s.metric == "tandem_info").expect("tandem_info");
        assert_eq!(info.labels.get("engine"), Some(e));
        assert_eq!(info.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(s0.value("tandem_info", None), 1.0);
        assert_eq!(s0.open(), 0);

        const N: u64 = 7;
        let mut sent = 0u64;
        for i in 0..N {
            let path = if i % 2 == 0 { "/" } else { "/style.css" };
            let raw = get_raw(srv.addr(), path);
            assert!(raw.starts_with(b"HTTP/1.1 200 "), "{}", show(&raw));
            sent += raw.len() as u64;
        }
        for _ in 0..3 {
            let raw = get_raw(srv.addr(), "/no-such-file");
            assert!(raw.starts_with(b"HTTP/1.1 404 "), "{}", show(&raw));
            sent += raw.len() as u64;
        }
        // A response is counted when its last byte has been handed to the
        // kernel, which may be just after the client has it: wait for it.
        let s1 = scrape_until(m, "N 2xx and 3 4xx", |s| {
            s.requests("2xx") >= s0.requests("2xx") + N && s.requests("4xx") >= s0.requests("4xx") + 3
        });
        assert_eq!(s1.requests("2xx"), s0.requests("2xx") + N);
        assert_eq!(s1.requests("4xx"), s0.requests("4xx") + 3);
        for class in ["1xx", "3xx", "5xx"] {
            assert_eq!(s1.requests(class), s0.requests(class), "{class}");
        }
        assert_eq!(s1.bytes() - s0.bytes(), sent, "response bytes: every byte the clients got");
        assert_eq!(s1.accepted() - s0.accepted(), N + 3);

        // Idle keep-alive connections are open connections, until they close.
        let mut idle: Vec<Conn> = (0..3).map(|_| srv.connect()).collect();
        for c in &mut idle {
            assert_status(&c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET / (then idle)");
        }
        let s2 = scrape_until(m, "3 open connections", |s| s.open() == 3);
        assert_eq!(s2.accepted() - s1.accepted(), 3);
        drop(idle);
        scrape_until(m, "0 open connections", |s| s.open() == 0);
    }

    fn metrics_survive_reloads_and_count_them(e) {
        let site = Site::new();
        let extra = format!("{METRICS}\nworkers = 1");
        let srv = start_or_skip!(e, &extra, &site.root);
        let m = metrics_addr(&srv);
        let threads = thread_count(srv.pid());
        for _ in 0..5 {
            assert_status(&get(srv.addr(), "/"), 200, "GET /");
        }
        let s0 = scrape_until(m, "5 requests", |s| s.requests("2xx") == 5);
        assert_eq!(s0.reloads("ok"), 0);
        assert_eq!(s0.reloads("failed"), 0);

        srv.reload(WAIT).expect("reload");
        let s1 = scrape_until(m, "a reload", |s| s.reloads("ok") == 1);
        // The old worker has gone (its thread with it): what it counted is kept.
        wait_until("the old generation's worker to exit", || thread_count(srv.pid()) <= threads);
        let s2 = Scrape::get(m);
        assert_eq!(s2.requests("2xx"), 5, "totals went backwards after a reload");
        assert_eq!(s2.accepted(), s0.accepted());
        assert_eq!(s2.bytes(), s0.bytes());
        assert_eq!(s1.reloads("failed"), 0);
        for _ in 0..2 {
            assert_status(&get(srv.addr(), "/"), 200, "GET / after the reload");
        }
        scrape_until(m, "7 requests", |s| s.requests("2xx") == 7);

        // A config that does not load: counted as failed, nothing else changes.
        srv.write_config(&format!("{extra}\nbogus_key = 1"), &site.root);
        srv.reload(WAIT).expect_err("a reload with an unknown key");
        let s3 = scrape_until(m, "a failed reload", |s| s.reloads("failed") == 1);
        assert_eq!(s3.reloads("ok"), 1);
        assert_eq!(s3.requests("2xx"), 7);
    }

    fn metrics_show_what_the_cache_holds(e) {
        let site = Site::new();
        let extra = format!("{METRICS}\nworkers = 1");
        let srv = start_or_skip!(e, &extra, &site.root);
        let m = metrics_addr(&srv);
        let threads = thread_count(srv.pid());
        assert_eq!(Scrape::get(m).cache(), (0, 0), "nothing cached yet");
        // Each path is cached before its answer is sent: the gauges have
        // moved by the time the client has it.
        let mut sizes = Vec::new();
        let mut held = 0;
        for (n, path) in ["/style.css", "/app.js", "/sub/page.html"].into_iter().enumerate() {
            let r = get(srv.addr(), path);
            assert_status(&r, 200, path);
            let (entries, bytes) = Scrape::get(m).cache();
            assert_eq!(entries, n as u64 + 1, "after GET {path}");
            // Its body, its head and an entry's fixed cost (256 bytes).
            let size = bytes - held;
            assert!(size > r.body.len() as u64 + 256 + 100, "{path}: {size} bytes");
            assert!(size < r.body.len() as u64 + 256 + 1024, "{path}: {size} bytes");
            sizes.push(size);
            held = bytes;
        }
        // Hits, other spellings of a cached path, a file too large for the
        // cache and a missing one change nothing.
        for path in ["/style.css", "//app.js", "/sub/./page.html?v=2", "/big.bin", "/nope.txt"] {
            let r = get(srv.addr(), path);
            assert!(r.status == 200 || r.status == 404, "{path}: {}", r.status);
            assert_eq!(Scrape::get(m).cache(), (3, held), "after GET {path}");
        }

        // A reload: the old worker's cache goes with it (once its clients
        // are done: they are), and the new one starts empty.
        srv.reload(WAIT).expect("reload");
        scrape_until(m, "a reload", |s| s.reloads("ok") == 1);
        wait_until("the old generation's worker to exit", || thread_count(srv.pid()) <= threads);
        assert_eq!(Scrape::get(m).cache(), (0, 0), "the old worker's cache is gone");
        assert_status(&get(srv.addr(), "/style.css"), 200, "GET /style.css after the reload");
        assert_eq!(Scrape::get(m).cache(), (1, sizes[0]), "filled again, from empty");
    }

    fn metrics_listener_takes_new_limits_on_reload(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let m = metrics_addr(&srv);
        // A scraper's keep-alive connection, open across the reload.
        let mut scraper = Conn::connect(m);
        assert_eq!(scraper.roundtrip(b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n").status, 200);
        srv.write_config(&format!("{METRICS}\nheader_timeout = \"1s\""), &site.root);
        srv.reload(WAIT).expect("reload");
        // The old worker answers the scraper's next request, then closes
        // (like a site worker retired by a reload).
        let r = scraper.roundtrip(b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(r.connection_has("close"), "{}", r.describe());
        // New connections get the new header_timeout: an unfinished head
        // is answered 408 after about a second (the default is 15 s).
        let mut slow = Conn::connect(m);
        let t0 = Instant::now();
        slow.send(b"GET /heal");
        let rest = slow.read_to_close(WAIT).unwrap_or_else(|b| panic!("not closed: {}", show(&b)));
        assert!(rest.starts_with(b"HTTP/1.1 408 "), "{}", show(&rest));
        assert!(t0.elapsed() < Duration::from_secs(5), "408 after {:?}", t0.elapsed());
        assert_eq!(fetch(m, "/healthz").0, 200);
    }

    fn panicking_metrics_worker_is_replaced(e) {
        if !cfg!(debug_assertions) {
            // The metrics worker's panic hook is compiled into debug builds
            // only (src/daemon/metrics.rs); this binary is of the same build.
            eprintln!("skipped: the metrics panic hook exists in debug builds only");
            return;
        }
        let site = Site::new();
        let opts = Launch {
            env: vec![("TANDEM_TEST_PANIC_TARGET".into(), "/__panic".into())],
            ..Launch::default()
        };
        let Some(srv) = Server::launch(e, METRICS, &site.root, opts) else { return };
        let m = metrics_addr(&srv);
        assert_eq!(fetch(m, "/healthz").0, 200);
        // The metrics worker dies in the middle of a request (a bug, forced by the test hook).
        let mut c = Conn::connect(m);
        c.send(b"GET /__panic HTTP/1.1\r\nHost: m\r\n\r\n");
        let _ = c.read_to_close(CLOSE_TIMEOUT);
        assert!(srv.wait_stderr("thread tandem-metrics panicked at src/daemon/metrics.rs", WAIT),
            "no line about the dead worker:\n{}", srv.stderr_text());
        assert!(srv.wait_stderr("metrics listener: replacement started", WAIT),
            "no replacement:\n{}", srv.stderr_text());
        // The listener kept its place; the site never noticed.
        assert_eq!(fetch(m, "/healthz"), (200, "text/plain; charset=utf-8".into(), "ok\n".into()));
        Scrape::get(m);
        assert_status(&get(srv.addr(), "/"), 200, "GET / on the site");
    }

    fn healthz_turns_503_while_draining(e) {
        let site = Site::new();
        // More than loopback's socket buffers hold, less than what
        // `read_to_close` takes.
        let huge = stamped_blocks(32);
        site.write("huge.bin", &huge);
        let mut srv = start_or_skip!(
            e,
            &format!("{METRICS}\nworkers = 1\nshutdown_timeout = \"30s\"\nsend_timeout = \"60s\""),
            &site.root
        );
        let m = metrics_addr(&srv);
        assert_eq!(fetch(m, "/healthz"), (200, "text/plain; charset=utf-8".into(), "ok\n".into()));
        assert_eq!(fetch(m, "/nope").0, 404);
        // A download held in flight: the client reads nothing for now, so
        // the drain lasts until it does.
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut first = [0u8; 64];
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let n = s.read(&mut first).unwrap();
        assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", show(&first[..n]));

        srv.signal(libc::SIGTERM);
        wait_until("/healthz to say 503", || fetch(m, "/healthz").0 == 503);
        assert_eq!(fetch(m, "/healthz").2, "stopping\n");
        assert!(srv.is_running(), "exited with a download in flight");
        // Metrics are still served while draining. The gauge is published
        // once per worker loop turn, so the turn that wrote the first bytes
        // may not have published it yet: wait for it (it must get there).
        wait_until("the open gauge to count the download", || {
            Scrape::get(m).open() == 1
        });

        // Let the download finish: the drain ends, and so does the listener.
        let mut c = Conn::from_stream(s);
        let rest = c.read_to_close(Duration::from_secs(30)).expect("the download finishes");
        assert!(rest.len() + n > huge.len(), "got {} of {}", rest.len() + n, huge.len());
        let st = srv.wait_exit(WAIT).expect("exit after the drain");
        assert_eq!(st.code(), Some(0), "{}", srv.stderr_text());
        assert!(TcpStream::connect(m).is_err(), "the metrics listener outlived the daemon");
    }

    fn metrics_listener_is_not_held_by_silent_clients(e) {
        let site = Site::new();
        // The site's header_timeout holds on the metrics port too.
        let srv = start_or_skip!(e, &format!("{METRICS}\nheader_timeout = \"2s\""), &site.root);
        let m = metrics_addr(&srv);
        let t0 = Instant::now();
        let mut silent: Vec<Conn> = (0..4).map(|_| Conn::connect(m)).collect();
        // A partial request head, never finished.
        silent[0].send(b"GET /metr");
        // Answered while the silent clients are still connected (a server
        // that took one client at a time would close them first).
        assert_eq!(fetch(m, "/healthz").0, 200);
        Scrape::get(m);
        for c in &mut silent {
            c.expect_open("a silent client, while others are answered");
        }
        // After header_timeout, as on the main port: the unfinished head
        // gets its 408, the clients that sent nothing a quiet close.
        let rest = silent[0].read_to_close(WAIT).expect("an unfinished head is closed");
        assert!(rest.starts_with(b"HTTP/1.1 408 "), "{}", show(&rest));
        for c in &mut silent[1..] {
            let rest = c.read_to_close(WAIT).expect("a silent client is closed");
            assert!(rest.is_empty(), "{}", show(&rest));
        }
        assert!(t0.elapsed() >= Duration::from_millis(1500), "closed before header_timeout: {:?}", t0.elapsed());
    }

    fn metrics_listener_makes_room_for_probes_past_its_client_limit(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let m = metrics_addr(&srv);
        // More silent clients than the listener's table holds (256: `MAX_CLIENTS`
        // in src/daemon/metrics.rs). Renewed every few seconds, they would
        // fail every health probe if each new client were refused.
        const TABLE: usize = 256;
        let mut silent: Vec<Conn> = (0..TABLE + 16).map(|_| Conn::connect(m)).collect();
        for _ in 0..3 {
            assert_eq!(fetch(m, "/healthz").0, 200);
        }
        Scrape::get(m);
        // Room was made by closing the oldest silent clients (the first 16,
        // for the 16 that came after them), quietly...
        for (i, c) in silent[..16].iter_mut().enumerate() {
            let rest = c.read_to_close(WAIT).unwrap_or_else(|_| panic!("silent client {i} was not dropped"));
            assert!(rest.is_empty(), "{}", show(&rest));
        }
        // ... and at most one more for each client after them: the newest
        // are kept (a sample: each check waits 100 ms for nothing to come).
        let n = silent.len();
        for i in (24..n).step_by(16).chain(n - 4..n) {
            silent[i].expect_open(&format!("newer silent client {i}"));
        }
    }

    fn metrics_listener_closes_one_client_per_newcomer(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let m = metrics_addr(&srv);
        // A full table (`MAX_CLIENTS`) of keep-alive clients, each idle
        // after one answer: the first is the closest to its deadline.
        const TABLE: usize = 256;
        const REQ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n";
        let mut kept: Vec<Conn> = (0..TABLE)
            .map(|_| {
                let mut c = Conn::connect(m);
                assert_eq!(c.roundtrip(REQ).status, 200);
                c
            })
            .collect();
        // Each newcomer (answered, then kept open too) closes the oldest
        // client, and that one only: a worker that takes several
        // connections a turn must not make room for one that is not there.
        let mut newcomers = Vec::new();
        for i in 0..3 {
            let mut c = Conn::connect(m);
            assert_eq!(c.roundtrip(REQ).status, 200, "newcomer {i}");
            newcomers.push(c);
            let rest = kept[i]
                .read_to_close(WAIT)
                .unwrap_or_else(|_| panic!("client {i} was not closed for newcomer {i}"));
            assert!(rest.is_empty(), "{}", show(&rest));
            kept[i + 1].expect_open(&format!("client {} after newcomer {i}", i + 1));
        }
        for (i, c) in newcomers.iter_mut().enumerate() {
            c.expect_open(&format!("newcomer {i}"));
        }
        kept[TABLE - 1].expect_open("the newest client");
    }

    fn metrics_listener_accepts_and_rejects_like_the_main_listener(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, &format!("{METRICS}\nmax_header_size = 1024\nmax_target_size = 512"), &site.root);
        let m = metrics_addr(&srv);
        // Each case is sent whole to both ports, then (where it is longer
        // than a byte) split at every third byte: what each port answers,
        // as status codes in order, must be the same. /nope is 404 on both.
        let long = format!("GET /nope HTTP/1.1\r\nHost: t\r\nX-Long: {}\r\n\r\n", "a".repeat(1100));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bare LF", b"GET /nope HTTP/1.1\nHost: t\nConnection: close\n\n".to_vec()),
            ("pipelined", b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec()),
            ("no Host", b"GET /nope HTTP/1.1\r\n\r\n".to_vec()),
            ("space in a field name", b"GET /nope HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n".to_vec()),
            ("unknown method", b"BREW /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
            ("POST", b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()),
            ("HTTP/2.0", b"GET /nope HTTP/2.0\r\nHost: t\r\n\r\n".to_vec()),
            ("head over max_header_size", long.into_bytes()),
            ("HTTP/1.0", b"GET /nope HTTP/1.0\r\n\r\n".to_vec()),
        ];
        let statuses = |addr: SocketAddr, req: &[u8], split: bool| -> Vec<String> {
            let mut c = Conn::connect(addr);
            if split {
                for chunk in req.chunks(3) {
                    if c.try_send(chunk).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1)); // apart on the wire
                }
            } else {
                let _ = c.try_send(req);
            }
            c.shutdown_write();
            let raw = c.read_to_close(IO_TIMEOUT).unwrap_or_else(|b| panic!("not closed: {}", show(&b)));
            let text = String::from_utf8_lossy(&raw).into_owned();
            text.match_indices("HTTP/1.1 ").map(|(i, _)| text[i + 9..i + 12].to_string()).collect()
        };
        for (what, req) in &cases {
            for split in [false, true] {
                let main = statuses(srv.addr(), req, split);
                assert!(!main.is_empty(), "{what}: the main listener did not answer");
                let metrics = statuses(m, req, split);
                assert_eq!(metrics, main, "{what} (split: {split}): metrics port vs main port");
            }
        }
        // And the endpoints themselves, asked with bare LFs.
        let mut c = Conn::connect(m);
        let r = c.roundtrip(b"GET /healthz HTTP/1.1\nHost: m\n\n");
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok\n"));
        // Keep-alive, like the main listener: a second request on the same connection.
        let r = c.roundtrip(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(r.body_str().contains("# TYPE tandem_info gauge"), "{}", r.body_str());
    }

    fn healthz_survives_a_flood_of_silent_connections(e) {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let m = metrics_addr(&srv);
        const FLOODERS: usize = 3;
        /// Connections each flooder holds open (the oldest is let go for each new one).
        const HELD: usize = 1000;
        const PROBES: usize = 200;
        const PROBE_INTERVAL: Duration = Duration::from_millis(10);
        const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
        const PROBING_LIMIT: Duration = Duration::from_secs(40);
        /// The flood's bound in time, whatever happens to the probes.
        const FLOOD_LIMIT: Duration = Duration::from_secs(60);
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let flood: Vec<_> = (0..FLOODERS)
            .map(|_| {
                let (stop, opened) = (stop.clone(), opened.clone());
                std::thread::spawn(move || {
                    // The attacker's CPU is not the server's (it would be
                    // another machine): on this one, the flood takes what
                    // the server and the probes leave, as fast as it can.
                    // SAFETY: plain calls on this thread's own id; no pointers.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
                    let end = Instant::now() + FLOOD_LIMIT;
                    let mut held = std::collections::VecDeque::with_capacity(HELD);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        // Silent; a connect that fails is the flood's loss.
                        if let Some(s) = start_connect(m) {
                            opened.fetch_add(1, Ordering::Relaxed);
                            if held.len() == HELD {
                                held.pop_front();
                            }
                            held.push_back(s);
                        }
                    }
                    held.len()
                })
            })
            .collect();
        wait_until("the flood to hold a thousand connections", || opened.load(Ordering::Relaxed) >= 1000);
        let mut failed = Vec::new();
        let mut slowest = Duration::ZERO;
        let before = opened.load(Ordering::Relaxed);
        let t0 = Instant::now();
        for i in 0..PROBES {
            if t0.elapsed() > PROBING_LIMIT {
                failed.extend((i..PROBES).map(|j| format!("probe {j}: not made, {PROBING_LIMIT:?} are up")));
                break;
            }
            let probe = || -> Result<(), String> {
                // A liveness probe's timeout (conf/kubernetes.yaml) for each step.
                let mut s = TcpStream::connect_timeout(&m, PROBE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
                s.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(PROBE_TIMEOUT)).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").map_err(|e| format!("write: {e}"))?;
                let mut raw = Vec::new();
                s.read_to_end(&mut raw).map_err(|e| format!("read: {e} after {}", show(&raw)))?;
                if raw.starts_with(b"HTTP/1.1 200 ") && raw.ends_with(b"\r\n\r\nok\n") {
                    Ok(())
                } else {
                    Err(format!("got {}", show(&raw)))
                }
            };
            let t = Instant::now();
            if let Err(why) = probe() {
                failed.push(format!("probe {i}: {why}"));
            }
            slowest = slowest.max(t.elapsed());
            // A health checker's interval (a short one): the flood has the
            // machine in between.
            std::thread::sleep(PROBE_INTERVAL);
        }
        let probing = t0.elapsed();
        let during = opened.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        let held: usize = flood.into_iter().map(|t| t.join().unwrap()).sum();
        eprintln!(
            "{e}: {PROBES} probes in {probing:?} (slowest {slowest:?}), {} failed; \
             the flood opened {during} connections meanwhile, held {held}",
            failed.len()
        );
        assert!(held >= 1000, "the flood held only {held} connections");
        assert!(
            failed.is_empty(),
            "{} of {PROBES} /healthz probes failed under the flood: {:#?}",
            failed.len(),
            &failed[..failed.len().min(10)]
        );
        // The listener is still itself afterwards.
        assert_eq!(fetch(m, "/healthz").0, 200);
    }

    fn json_access_log_survives_hostile_requests(e) {
        let site = Site::new();
        let srv = start_or_skip!(
            e,
            "access_log_format = \"json\"\nmax_header_size = 65536\nmax_target_size = 8192",
            &site.root
        );
        let long: Vec<u8> = b"\"\\\xff\xc3\xa9a\x7e".iter().copied().cycle().take(20_000).collect();
        let cases: Vec<Case> = vec![
            (b"/index.html?q=%22".to_vec(), Some(b"\"quoted\" and \\back\\slash\\".to_vec()), Some(b"ua \"x\" \\\\".to_vec())),
            (b"/style.css".to_vec(), Some(b"\xff\xfe\xc3( then \xc3\xa9\xe6\x97\xa5\xe6\x9c\xac".to_vec()), Some(b"\xe2\x80\xa8sep\xe2\x80\xa9".to_vec())),
            (b"/missing".to_vec(), Some(long.clone()), Some(b"a\tb".to_vec())),
            (b"/caf\xc3\xa9/\xff\"x\"\\y".to_vec(), None, None),
            (b"/ctl\x01\x1b[31m\x7f".to_vec(), Some(b"-".to_vec()), None),
            (format!("/{}", "%41\\".repeat(1500)).into_bytes(), None, Some(long)),
            (b"/nul".to_vec(), Some(b"a\x00b".to_vec()), None),
        ];
        let mut want = Vec::new();
        for (i, (target, referer, ua)) in cases.iter().enumerate() {
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(target);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
            for (name, v) in [("Referer", referer), ("User-Agent", ua)] {
                if let Some(v) = v {
                    req.extend_from_slice(format!("{name}: ").as_bytes());
                    req.extend_from_slice(v);
                    req.extend_from_slice(b"\r\n");
                }
            }
            req.extend_from_slice(b"\r\n");
            let mut c = srv.connect();
            c.send(&req);
            let r = c.read_response("GET");
            want.push((i, r.status, r.body.len() as u64));
        }
        let n = cases.len();
        wait_until("every request in the access log", || srv.access_log().lines().count() >= n);
        let text = srv.access_log();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), n, "{text}");
        let now = now_secs();
        let short = |l: &str| l.chars().take(300).collect::<String>();
        let mut seen = vec![false; n];
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", short(line)));
            // Workers flush their lines independently: find the case by its target.
            let got_target = unescape(v["target"].as_str().unwrap_or_else(|| panic!("target in {}", short(line))));
            let i = cases
                .iter()
                .position(|c| c.0 == got_target)
                .unwrap_or_else(|| panic!("a target no request had: {}", short(line)));
            assert!(!seen[i], "case {i} logged twice");
            seen[i] = true;
            let (_, status, bytes) = want[i];
            let (target, referer, ua) = &cases[i];
            let o = v.as_object().unwrap();
            let mut keys: Vec<&str> = o.keys().map(|k| k.as_str()).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["bytes", "duration", "method", "protocol", "referer", "remote", "status", "target", "time", "user_agent"],
                "case {i}"
            );
            assert_eq!(v["status"], status, "case {i}: {}", short(line));
            assert_eq!(v["bytes"], bytes, "case {i}: {}", short(line));
            assert_eq!(v["remote"], "127.0.0.1");
            assert_eq!(v["method"], "GET");
            assert_eq!(v["protocol"], "HTTP/1.1", "case {i}");
            let t = parse_rfc3339(v["time"].as_str().unwrap()).unwrap_or_else(|| panic!("time in {}", short(line)));
            assert!(t.abs_diff(now) < 60, "time {t} vs now {now}");
            let d = v["duration"].as_f64().unwrap_or_else(|| panic!("duration in {}", short(line)));
            assert!((0.0..60.0).contains(&d), "duration {d}");
            assert_eq!(&got_target, target);
            // A request the parser refused (400) has no header fields;
            // which ones must parse and which must not is known.
            let unparsed = status == 400 && v["referer"].is_null() && v["user_agent"].is_null();
            match i {
                0 | 1 | 2 | 5 => assert!(!unparsed, "case {i} was refused"),
                4 | 6 => assert!(unparsed, "case {i} (control bytes) was parsed: status {status}"),
                _ => {}
            }
            if unparsed {
                continue;
            }
            for (field, sent) in [("referer", referer), ("user_agent", ua)] {
                match sent {
                    Some(b) => assert_eq!(unescape(v[field].as_str().unwrap()), *b, "case {i}: {field} in {}", short(line)),
                    None => assert!(v[field].is_null(), "case {i}: {field} in {}", short(line)),
                }
            }
        }
        // The plain ones were served, the control bytes refused.
        assert_eq!((want[0].1, want[1].1, want[2].1, want[4].1), (200, 200, 404, 400));
    }
}

/// A connection to `addr` begun and not waited for (a non-blocking
/// connect: the kernel completes the handshake on its own), so that a
/// thread opens them as fast as it can make the calls.
fn start_connect(addr: SocketAddr) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let SocketAddr::V4(v4) = addr else {
        panic!("{addr}: IPv4 only")
    };
    // SAFETY: socket(2) takes no pointers; it returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is new and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: passes a live sockaddr_in and its size; the kernel only reads it.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let pending = std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS);
    (r == 0 || pending).then_some(fd)
}

/// The JSON log's mapping undone: `\xHH` is the byte HH (invalid UTF-8 and
/// the backslash itself are written so); everything else is its UTF-8.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        assert_eq!(
            &rest[i + 1..i + 2],
            "x",
            "a backslash that is not \\xHH in {s:?}"
        );
        out.push(u8::from_str_radix(&rest[i + 2..i + 4], 16).unwrap());
        rest = &rest[i + 4..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// `2026-11-22T19:21:37Z` as Unix seconds.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se) as u64)
}
