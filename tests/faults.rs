//! The machine's faults: a connection table full of idle keep-alive
//! connections, and a process out of file descriptors (a small
//! RLIMIT_NOFILE, set for the child as `ulimit -n` would). Each test runs
//! on both engines with one worker unless it says otherwise, so which
//! worker a connection lands on is never a question.

#[macro_use]
mod common;

use common::load::{Group, Load, LoadConfig, Mode, Target};
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQ: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
const BODY: &[u8] = b"A-TXT-BODY\n";

fn site() -> Site {
    let site = Site::new();
    site.write("a.txt", BODY);
    site
}

fn launch(e: &str, cfg: &str, site: &Site, nofile: Option<u64>) -> Option<Server> {
    let opts = Launch {
        nofile,
        ..Default::default()
    };
    Server::launch(e, cfg, &site.root, opts)
}

/// A keep-alive connection that made one request and now sits idle.
fn idle_conn(srv: &Server) -> Conn {
    let mut c = srv.connect();
    let r = c.roundtrip(REQ);
    assert_status(&r, 200, "GET /a.txt");
    assert!(!r.connection_has("close"), "{}", r.describe());
    c
}

/// Lines of the error log (stderr) that contain `needle`.
fn lines_with(srv: &Server, needle: &str) -> Vec<String> {
    srv.stderr_text()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The occurrences a throttled line stands for: 1, or the count it names
/// ("(N times since the last such line)", "N more since the last such line").
fn throttled_count(line: &str) -> u64 {
    if let Some(i) = line.find(" times since the last such line") {
        let head = &line[..i];
        let n = head.rsplit(['(', ' ']).next().unwrap_or("");
        return n.parse().unwrap_or(0);
    }
    if let Some(i) = line.find(" more since the last such line") {
        let head = &line[..i];
        let n = head.rsplit(' ').next().unwrap_or("");
        return n.parse().unwrap_or(0);
    }
    1
}

/// Total occurrences the throttled lines of `text` containing `needle` (or
/// the count-only line of `kind`) report.
fn throttled_total(text: &str, needle: &str, kind: &str) -> u64 {
    let count_only = format!("{kind}: ");
    text.lines()
        .filter(|l| l.contains(needle) || l.contains(&count_only))
        .map(throttled_count)
        .sum()
}

/// Lines at least a second apart never share a timestamp (whole seconds).
fn assert_once_a_second(lines: &[String]) {
    let stamps: Vec<&str> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    for w in stamps.windows(2) {
        assert!(w[0] < w[1], "two lines in one second: {lines:#?}");
    }
}

engine_tests! {
    /// Issue 25, point 3: at max_connections, with every connection idle
    /// between requests, a new client is admitted at once by closing the
    /// longest-idle one (not after keepalive_timeout), with one `info` line
    /// a second, whose count adds up.
    fn full_table_of_idle_connections_admits_a_new_client(e) {
        let site = site();
        let cfg = "workers = 1\nmax_connections = 10\nkeepalive_timeout = \"60s\"\nheader_timeout = \"60s\"";
        let Some(srv) = launch(e, cfg, &site, None) else { return };
        let mut idle: Vec<Conn> = (0..10).map(|_| idle_conn(&srv)).collect();

        let t0 = Instant::now();
        let mut fresh = srv.connect();
        fresh.send(REQ);
        let r = fresh
            .try_read_response_within("GET", Duration::from_secs(5))
            .unwrap_or_else(|err| panic!("new client at a full table of idle connections: {err}"));
        let took = t0.elapsed();
        assert_status(&r, 200, "GET /a.txt (new client)");
        note(&format!("{e}: new client answered {took:?} after connecting to a full table"));
        // 100 ms is the mark; 1 s leaves room for a loaded 2-core machine
        // while staying far below keepalive_timeout (60 s), the old wait.
        assert!(took < Duration::from_secs(1), "new client answered only after {took:?}");

        // The longest-idle one made room; the others are untouched.
        idle[0].expect_closed("the longest-idle connection");
        for (i, c) in idle.iter_mut().enumerate().skip(1) {
            c.expect_open(&format!("idle connection #{i}"));
        }
        assert!(
            srv.wait_stderr("connection table full", Duration::from_secs(2)),
            "no info line about the full table:\n{}",
            srv.stderr_text()
        );
        let first = lines_with(&srv, "connection table full");
        assert!(first[0].contains("info"), "{first:?}");

        // Four more at once: each closes the next longest-idle connection;
        // they are counted, not logged one by one.
        let mut more = Vec::new();
        for i in 0..4 {
            let mut c = srv.connect();
            let r = c.roundtrip(REQ);
            assert_status(&r, 200, &format!("GET /a.txt (new client {i})"));
            more.push(c);
        }
        for (i, c) in idle.iter_mut().enumerate().skip(1).take(4) {
            c.expect_closed(&format!("idle connection #{i} (next longest idle)"));
        }
        assert!(
            srv.wait_stderr_until(Duration::from_secs(4), |t| {
                throttled_total(t, "connection table full", "connection table full") == 5
            }),
            "the full-table lines do not add up to 5 evictions:\n{}",
            srv.stderr_text()
        );
        assert_once_a_second(&lines_with(&srv, "connection table full"));
    }

    /// Issue 25, point 3: a client mid-request is never cut to make room;
    /// the new client waits until one of them is idle again.
    fn full_table_never_cuts_a_client_mid_request(e) {
        let site = site();
        let cfg = "workers = 1\nmax_connections = 10\nkeepalive_timeout = \"60s\"\nheader_timeout = \"60s\"";
        let Some(srv) = launch(e, cfg, &site, None) else { return };
        // Each made one request and sent half of its next one.
        let mut busy: Vec<Conn> = (0..10)
            .map(|_| {
                let mut c = idle_conn(&srv);
                c.send(b"GET /a.txt HTTP/1.1\r\n");
                c
            })
            .collect();
        let mut fresh = srv.connect();
        fresh.send(REQ);
        assert!(
            fresh.try_read_response_within("GET", Duration::from_millis(500)).is_err(),
            "a new client was answered while every connection was mid-request"
        );
        for (i, c) in busy.iter_mut().enumerate() {
            c.expect_open(&format!("connection #{i}, mid-request"));
        }
        // #0 finishes its request: it is answered, then idle, and closed to
        // admit the waiting client.
        busy[0].send(b"Host: t\r\n\r\n");
        let r = busy[0].read_response("GET");
        assert_status(&r, 200, "GET /a.txt (finished mid-request)");
        let r = fresh
            .try_read_response_within("GET", Duration::from_secs(3))
            .unwrap_or_else(|err| panic!("waiting client once a slot is idle: {err}"));
        assert_status(&r, 200, "GET /a.txt (new client)");
        busy[0].expect_closed("the connection that became idle");
        for (i, c) in busy.iter_mut().enumerate().skip(1) {
            c.send(b"Host: t\r\n\r\n");
            let r = c.read_response("GET");
            assert_status(&r, 200, &format!("GET /a.txt (connection #{i}, finished)"));
        }
    }

    /// An explicit max_connections over RLIMIT_NOFILE (warned about) still
    /// gets io_uring's fixed-file table, sized to what can be open (the
    /// kernel refuses a table larger than RLIMIT_NOFILE, and every send
    /// then took a file reference again); connections are served and,
    /// closed, really closed (their slot emptied). Epoll has no table: the
    /// same clients are checked.
    fn fixed_files_fit_a_low_descriptor_limit(e) {
        let site = site();
        let cfg = "workers = 1\nmax_connections = 1000\nlog_level = \"debug\"";
        let Some(srv) = launch(e, cfg, &site, Some(256)) else { return };
        for round in 0..20 {
            let mut c = srv.connect();
            let r = c.roundtrip(REQ);
            assert_status(&r, 200, &format!("{round}: GET /a.txt"));
            c.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let r = c.read_response("GET");
            assert_status(&r, 200, &format!("{round}: GET /a.txt, Connection: close"));
            c.expect_closed(&format!("{round}: after Connection: close"));
        }
        if e != "io_uring" {
            return;
        }
        assert!(
            srv.wait_stderr_until(Duration::from_secs(5), |t| t.contains("io_uring fixed files")),
            "no word on the fixed-file table:\n{}",
            srv.stderr_text()
        );
        let said = lines_with(&srv, "io_uring fixed files");
        assert!(
            said.iter().all(|l| l.contains("slots")) && said.iter().any(|l| l.contains("256 slots")),
            "the table was refused, or not sized to RLIMIT_NOFILE 256: {said:?}"
        );
    }

    /// Issue 25, point 2: an open that fails with EMFILE is a 503 with
    /// `Retry-After` and `Connection: close`, logged once a second with the
    /// path and the client in the first line and a count that adds up;
    /// and an explicit max_connections over the limit is warned about.
    fn out_of_descriptors_open_is_503_and_close(e) {
        let site = site();
        let cfg = "workers = 1\nmax_connections = 1000\ncache_size = 0\nheader_timeout = \"60s\"";
        let Some(srv) = launch(e, cfg, &site, Some(64)) else { return };
        let warn = lines_with(&srv, "RLIMIT_NOFILE");
        assert!(
            warn.iter().any(|l| l.contains("warn") && l.contains("max_connections 1000")),
            "no start warning about max_connections over RLIMIT_NOFILE:\n{}",
            srv.stderr_text()
        );
        // Probes mid-request (never closed to make room); then silent
        // connections take every descriptor left.
        let mut probes: Vec<Conn> = (0..5)
            .map(|_| {
                let mut c = srv.connect();
                c.send(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n");
                c
            })
            .collect();
        let fill: Vec<Conn> = (0..80).map(|_| srv.connect()).collect();
        assert!(
            srv.wait_stderr_until(Duration::from_secs(5), |t| {
                t.lines().any(|l| l.contains("accept: ") && l.contains("Too many open files"))
            }),
            "the server never ran out of descriptors accepting:\n{}",
            srv.stderr_text()
        );
        let before = srv.stderr_text().len();
        for p in probes.iter_mut() {
            p.send(b"\r\n");
        }
        for (i, p) in probes.iter_mut().enumerate() {
            let r = p.read_response("GET");
            assert_status(&r, 503, &format!("GET /a.txt out of descriptors (probe {i})"));
            assert!(r.connection_has("close"), "503 without Connection: close: {}", r.describe());
            assert_eq!(r.header("retry-after"), Some("1"), "{}", r.describe());
            p.expect_closed(&format!("probe {i} after its 503"));
        }
        // The first failure's line names the path and its client (which of
        // the five probes was read first is the kernel's order); the error
        // log is written from the worker's buffer, so wait for it.
        let ports: Vec<u16> = probes.iter().map(|p| p.stream.local_addr().unwrap().port()).collect();
        let names_a_probe = |t: &str| {
            t.lines().any(|l| {
                l.contains("open /a.txt for ")
                    && l.contains("Too many open files")
                    && l.contains("error")
                    && ports.iter().any(|p| l.contains(&format!("127.0.0.1:{p}")))
            })
        };
        assert!(
            srv.wait_stderr_until(Duration::from_secs(5), |t| names_a_probe(&t[before.min(t.len())..])),
            "no error line naming the path and a probe's client (ports {ports:?}):\n{}",
            &srv.stderr_text()[before..]
        );
        // Five failures, one line now (the rest counted, said within a second or two).
        assert!(
            srv.wait_stderr_until(Duration::from_secs(4), |t| {
                throttled_total(t, "open /a.txt for ", "out of file descriptors opening files") == 5
            }),
            "the open failures' lines do not count 5:\n{}",
            srv.stderr_text()
        );
        let throttled: Vec<String> = srv
            .stderr_text()
            .lines()
            .filter(|l| l.contains("open /a.txt for ") || l.contains("out of file descriptors opening files"))
            .map(str::to_string)
            .collect();
        assert_once_a_second(&throttled);
        drop(fill);
    }

    /// Issue 25, point 2: a server out of descriptors because of idle
    /// keep-alive clients closes the longest-idle ones and keeps serving
    /// new clients, while every client stays connected as long as the
    /// server lets it. (The old behaviour: accepting paused for good, the
    /// 56th client hung.)
    fn out_of_descriptors_idle_clients_make_room(e) {
        let site = site();
        let cfg = "workers = 1\nmax_connections = 1000\nkeepalive_timeout = \"60s\"";
        let Some(srv) = launch(e, cfg, &site, Some(64)) else { return };
        let mut kept = Vec::new();
        let t0 = Instant::now();
        for i in 0..120 {
            let mut answered = None;
            for _attempt in 0..3 {
                let mut c = srv.connect();
                c.send(REQ);
                match c.try_read_response_within("GET", Duration::from_secs(3)) {
                    Ok(r) if r.status == 200 => {
                        answered = Some(c);
                        break;
                    }
                    Ok(r) if r.status == 503 => continue,
                    Ok(r) => panic!("client {i}: {}", r.describe()),
                    Err(err) => panic!(
                        "client {i} not answered within 3 s with {} earlier clients connected: {err}\n{}",
                        kept.len(),
                        srv.stderr_text()
                    ),
                }
            }
            kept.push(answered.unwrap_or_else(|| panic!("client {i}: 503 three times")));
        }
        note(&format!("{e}: 120 clients served under RLIMIT_NOFILE 64 in {:?}", t0.elapsed()));
        assert!(srv.fd_count() <= 64);
        // The latest clients are still connected and served.
        for c in kept.iter_mut().rev().take(3) {
            let r = c.roundtrip(REQ);
            assert_status(&r, 200, "GET /a.txt (a recent client, again)");
        }
    }

    /// Issue 25, point 2: under `ulimit -n 256` and 1000 keep-alive clients
    /// for 3 s, with every request opening its file (no cache), at least 90%
    /// of the answers are 200 (nginx: 99%); max_connections came down from
    /// its default to what the limit holds, said at start.
    fn thousand_clients_under_256_descriptors(e) {
        let site = site();
        let Some(srv) = launch(e, "cache_size = 0\nkeepalive_timeout = \"60s\"", &site, Some(256)) else {
            return;
        };
        assert!(
            lines_with(&srv, "RLIMIT_NOFILE is 256").iter().any(|l| l.contains("max_connections")),
            "no start line about max_connections from RLIMIT_NOFILE:\n{}",
            srv.stderr_text()
        );
        thousand_clients(e, &srv);
    }

    /// The same with an explicit max_connections far over the limit (kept,
    /// with a warning): descriptors do run out, opens fail, and still at
    /// least 90% of the answers are 200 (the rest 503), on both engines.
    fn thousand_clients_under_256_descriptors_explicit_max(e) {
        let site = site();
        let cfg = "cache_size = 0\nkeepalive_timeout = \"60s\"\nmax_connections = 20000";
        let Some(srv) = launch(e, cfg, &site, Some(256)) else { return };
        thousand_clients(e, &srv);
    }

    /// The descriptor table is made large enough for max_connections at
    /// start, not grown while the workers serve: a growth in a process of
    /// several threads waits for an RCU grace period (5-10 ms measured),
    /// during which the worker that needed the slot answers nobody. Within
    /// RLIMIT_NOFILE: 3,000 connections x 2 descriptors + 64 reserved under
    /// a limit of 20,000 make a table of at least 6,064 slots; under 1,024,
    /// at most 1,024.
    fn the_descriptor_table_is_grown_before_the_workers_need_it(e) {
        let site = site();
        let slots = |srv: &Server| -> u64 {
            let status = std::fs::read_to_string(format!("/proc/{}/status", srv.pid())).unwrap();
            let line = status.lines().find(|l| l.starts_with("FDSize:")).expect("FDSize in /proc/PID/status");
            line["FDSize:".len()..].trim().parse().unwrap()
        };
        let cfg = "workers = 1\nmax_connections = 3000";
        let Some(srv) = launch(e, cfg, &site, Some(20_000)) else { return };
        assert_status(&get(srv.addr(), "/a.txt"), 200, "GET /a.txt");
        let n = slots(&srv);
        assert!(n >= 6_064, "{e}: a table of {n} slots for 3,000 connections");
        let cfg = "workers = 1\nmax_connections = 3000\nkeepalive_timeout = \"60s\"";
        let Some(small) = launch(e, cfg, &site, Some(1_024)) else { return };
        assert_status(&get(small.addr(), "/a.txt"), 200, "GET /a.txt (RLIMIT_NOFILE 1,024)");
        let n = slots(&small);
        assert!((256..=1_024).contains(&n), "{e}: a table of {n} slots under RLIMIT_NOFILE 1,024");
    }
}

/// 1000 keep-alive clients for 3 s: at least 90% of the answers are 200
/// (the rest are counted `wrong`); afterwards the server answers as ever.
fn thousand_clients(e: &str, srv: &Server) {
    let body = Arc::new(BODY.to_vec());
    let a = Target::exact("/a.txt", body);
    let mut lc = LoadConfig::new(
        srv.addr(),
        vec![Group::new("c1000", 1000, Mode::KeepAlive, vec![a])],
    );
    lc.duration = Duration::from_secs(3);
    lc.io_timeout = Duration::from_secs(2);
    let s = Load::start(lc).join(Duration::from_secs(10));
    note(&format!("{e}: {}", s.line()));
    let rate = s.ok as f64 / s.complete.max(1) as f64;
    assert!(s.ok >= 1000, "too few requests served: {}", s.line());
    assert!(
        rate >= 0.9,
        "only {:.1}% of answers were 200: {}",
        rate * 100.0,
        s.line()
    );
    let r = get(srv.addr(), "/a.txt");
    assert_status(&r, 200, "GET /a.txt after the load");
}
