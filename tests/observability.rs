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
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head end in {text:?}"));
    let r = parse_response_head(head).unwrap();
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, body.len(), "Content-Length of {path}");
    let ct = r.header("content-type").unwrap_or("").to_string();
    (r.status, ct, body.to_string())
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
        // Metrics are still served while draining.
        assert_eq!(Scrape::get(m).open(), 1);

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
        let srv = start_or_skip!(e, METRICS, &site.root);
        let m = metrics_addr(&srv);
        let mut silent: Vec<Conn> = (0..4).map(|_| Conn::connect(m)).collect();
        // Partial request heads, never finished.
        silent[0].send(b"GET /metr");
        // Answered while the silent clients are still connected (a server
        // that took one client at a time would close them first).
        assert_eq!(fetch(m, "/healthz").0, 200);
        Scrape::get(m);
        for c in &mut silent {
            c.expect_open("a silent client, while others are answered");
        }
        // The silent ones are dropped after the client timeout.
        for c in &mut silent {
            let rest = c.read_to_close(Duration::from_secs(15)).expect("a silent client is closed");
            assert!(rest.is_empty(), "{}", show(&rest));
        }
        // A request head that never ends is refused, not buffered forever.
        let mut big = Conn::connect(m);
        let _ = big.try_send(&vec![b'a'; 8192]);
        let got = big.read_to_close(WAIT).unwrap_or_else(|b| panic!("not closed: {}", show(&b)));
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 431"), "{}", show(&got));
    }

    fn metrics_listener_makes_room_for_probes_past_its_client_limit(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let m = metrics_addr(&srv);
        // More silent clients than the listener serves at once (16), half
        // of them with a partial head. Renewed every few seconds, they
        // used to fail every health probe: each new client was closed.
        let mut silent: Vec<Conn> = (0..20).map(|_| Conn::connect(m)).collect();
        for c in silent.iter_mut().step_by(2) {
            c.send(b"GET /heal");
        }
        for _ in 0..3 {
            assert_eq!(fetch(m, "/healthz").0, 200);
        }
        Scrape::get(m);
        // Room was made by dropping the oldest silent clients (the first
        // four at least, for the four that came after them), cleanly...
        for c in &mut silent[..4] {
            let rest = c.read_to_close(WAIT).expect("the oldest silent clients are dropped");
            assert!(rest.is_empty(), "{}", show(&rest));
        }
        // ... and at most one per client after them: the newest are kept.
        for c in &mut silent[8..] {
            c.expect_open("a newer silent client");
        }
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
