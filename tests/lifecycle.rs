//! Timeouts, access log, shutdown and server-level settings.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Check one combined-log-format line; returns the parsed time.
fn check_log_line(line: &str, request: &str, status: u16, bytes: usize, referer: &str, ua: &str) {
    let prefix = "127.0.0.1 - - [";
    assert!(
        line.starts_with(prefix),
        "access log line does not start with {prefix:?}: {line:?}"
    );
    let rest = &line[prefix.len()..];
    let close = rest
        .find(']')
        .unwrap_or_else(|| panic!("no ] in access log line {line:?}"));
    let t = parse_clf_time(&rest[..close])
        .unwrap_or_else(|| panic!("bad time {:?} in access log line {line:?}", &rest[..close]));
    let now = now_secs();
    assert!(
        t + 120 >= now && t <= now + 120,
        "access log time far from now: {line:?}"
    );
    let want = format!("] \"{request}\" {status} {bytes} \"{referer}\" \"{ua}\"");
    assert_eq!(&rest[close..], want, "access log line {line:?}");
}

/// Send one byte every 50 ms (paced by a read timeout that also notices
/// the close) until the server closes or CLOSE_TIMEOUT passes: (closed,
/// what was received, how long it took).
fn drip_until_closed(c: &mut Conn) -> (bool, Vec<u8>, Duration) {
    c.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let closed = loop {
        if t0.elapsed() > CLOSE_TIMEOUT {
            break false;
        }
        if c.stream.write_all(b"a").is_err() {
            break true;
        }
        let mut b = [0u8; 4096];
        match c.stream.read(&mut b) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break true,
        }
    };
    (closed, got, t0.elapsed())
}

fn log_has(request: &'static str) -> impl Fn(&str) -> bool {
    move |l: &str| l.contains(&format!("\"{request}\""))
}

engine_tests! {
    // ---------------------------------------------------------------- timeouts

    fn idle_keepalive_connection_is_closed(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "keepalive_timeout = \"300ms\"\nheader_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 200, "GET / before idling");
        let t0 = Instant::now();
        match c.read_to_close(CLOSE_TIMEOUT) {
            Ok(rest) => assert!(rest.is_empty(), "idle keep-alive close: unexpected bytes {}", show(&rest)),
            Err(rest) => panic!("idle keep-alive connection (keepalive_timeout 300ms) still open after {CLOSE_TIMEOUT:?}; received {}", show(&rest)),
        }
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(100), "keep-alive connection closed after only {took:?} (timeout 300ms)");
    }

    // keepalive_timeout = 0 allows no idle time between requests: the
    // response says `Connection: close` (as nginx's keepalive_timeout 0
    // does) and the connection ends, so no client sends a second request
    // into a connection that is going away.
    fn zero_keepalive_timeout_says_close(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "keepalive_timeout = 0", &site.root);
        let mut c = srv.connect();
        let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 200, "GET / with keepalive_timeout = 0");
        assert!(r.connection_has("close"), "keepalive_timeout = 0: the response does not say Connection: close:\n{}", r.describe());
        match c.read_to_close(CLOSE_TIMEOUT) {
            Ok(rest) => assert!(rest.is_empty(), "unexpected bytes after the response: {}", show(&rest)),
            Err(rest) => panic!("keepalive_timeout = 0: connection still open after {CLOSE_TIMEOUT:?}; received {}", show(&rest)),
        }
    }

    fn keepalive_timer_restarts_per_request(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "keepalive_timeout = \"1s\"\nheader_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        // Keep the connection busy for well over 1s with back-to-back requests.
        let t0 = Instant::now();
        let mut n = 0;
        while t0.elapsed() < Duration::from_millis(1400) {
            let r = c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_status(&r, 200, &format!("busy keep-alive request #{n} at {:?}", t0.elapsed()));
            n += 1;
        }
        c.expect_open("busy connection after >1s of activity");
    }

    fn stalled_request_head_is_closed(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"300ms\"\nkeepalive_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
        match c.read_to_close(CLOSE_TIMEOUT) {
            Ok(rest) => assert!(
                rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
                "stalled head: server sent something other than 408 before closing: {}",
                show(&rest)
            ),
            Err(rest) => panic!("stalled request head (header_timeout 300ms) still open after {CLOSE_TIMEOUT:?}; received {}", show(&rest)),
        }
    }

    fn trickled_request_head_is_closed(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"300ms\"\nkeepalive_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
        let (closed, got, _) = drip_until_closed(&mut c);
        assert!(closed, "slowloris: a head trickled byte by byte was not cut off within {CLOSE_TIMEOUT:?} (header_timeout 300ms)");
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"), "trickled head: unexpected bytes {}", show(&got));
    }

    /// A request body dripped byte by byte is cut off like a dripped head:
    /// the whole body must come within header_timeout of its response's end.
    fn trickled_request_body_is_closed(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"300ms\"\nkeepalive_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
        let (closed, got, took) = drip_until_closed(&mut c);
        assert!(closed, "a body trickled byte by byte was not cut off within {CLOSE_TIMEOUT:?} (header_timeout 300ms)");
        assert!(took < Duration::from_secs(2), "a trickled body kept the connection {took:?} (header_timeout 300ms)");
        assert!(got.starts_with(b"HTTP/1.1 200"), "the request was answered before its body: {}", show(&got));
    }

    /// A client that uploads its body slowly and reads the response late
    /// still gets the whole response: when the body's time is up, the
    /// connection is shut after the response (FIN), not reset under it.
    fn late_body_does_not_cut_the_response(e) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"300ms\"\nkeepalive_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
        // 8 KiB every 20 ms, about 400 KB/s: the body would take 2.5 s.
        let mut up = c.stream.try_clone().unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let uploaded = sent.clone();
        let uploader = std::thread::spawn(move || {
            let chunk = [b'x'; 8192];
            while uploaded.load(Ordering::Relaxed) < 1_000_000 {
                if up.write_all(&chunk).is_err() {
                    break;
                }
                uploaded.fetch_add(chunk.len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20)); // the client's pace
            }
        });
        // Read nothing until 200 KB went up (about 0.5 s, past header_timeout).
        let t0 = Instant::now();
        while sent.load(Ordering::Relaxed) < 200_000 {
            assert!(t0.elapsed() < CLOSE_TIMEOUT, "the upload stalled at {} bytes", sent.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(5)); // poll interval
        }
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET /big.bin with a late body");
        assert_bytes_eq(&r.body, &big_bytes(), "GET /big.bin with a late body");
        c.stream.set_read_timeout(Some(CLOSE_TIMEOUT)).unwrap();
        let mut rest = [0u8; 64];
        assert!(matches!(c.stream.read(&mut rest), Ok(0)), "after the response: a FIN, not more bytes or a reset");
        uploader.join().unwrap();
    }

    /// A body that comes at once (in pieces) leaves the connection usable.
    fn request_body_in_pieces_keeps_the_connection(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"2s\"\nkeepalive_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET with a body, first half");
        c.send(b"56789GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET after a body sent in two pieces");
        assert_bytes_eq(&r.body, APP_JS.as_bytes(), "GET /app.js after the body");
        c.expect_open("after a body in pieces");
    }

    fn silent_connection_is_closed(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"300ms\"\nkeepalive_timeout = \"300ms\"", &site.root);
        let mut c = srv.connect();
        match c.read_to_close(CLOSE_TIMEOUT) {
            Ok(rest) => assert!(rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"), "silent connection: unexpected bytes {}", show(&rest)),
            Err(_) => panic!("a connection that never sends anything is still open after {CLOSE_TIMEOUT:?} (timeouts 300ms)"),
        }
    }

    // -------------------------------------------------------------- access log

    fn access_log_combined_format(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        c.roundtrip(b"GET /index.html HTTP/1.1\r\nHost: t\r\nReferer: http://ref.example/page\r\nUser-Agent: tandem-test/1.0\r\n\r\n");
        c.roundtrip(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
        c.roundtrip(b"HEAD /style.css HTTP/1.1\r\nHost: t\r\nUser-Agent: curl/8\r\n\r\n");
        c.roundtrip(b"GET /style.css?v=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        c.roundtrip(b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut c10 = srv.connect();
        c10.roundtrip(b"GET /app.js HTTP/1.0\r\n\r\n");

        let wait = Duration::from_secs(5);
        let l = srv.wait_access_log(wait, log_has("GET /index.html HTTP/1.1"))
            .unwrap_or_else(|| panic!("no access log line for GET /index.html within {wait:?}; log:\n{}", srv.access_log()));
        check_log_line(&l, "GET /index.html HTTP/1.1", 200, INDEX_HTML.len(), "http://ref.example/page", "tandem-test/1.0");
        let l = srv.wait_access_log(wait, log_has("GET /missing HTTP/1.1")).expect("log line for /missing");
        check_log_line(&l, "GET /missing HTTP/1.1", 404, NOT_FOUND_HTML.len(), "-", "-");
        let l = srv.wait_access_log(wait, log_has("HEAD /style.css HTTP/1.1")).expect("log line for HEAD");
        check_log_line(&l, "HEAD /style.css HTTP/1.1", 200, 0, "-", "curl/8");
        let l = srv.wait_access_log(wait, log_has("GET /style.css?v=1 HTTP/1.1")).expect("log line with query");
        check_log_line(&l, "GET /style.css?v=1 HTTP/1.1", 200, STYLE_CSS.len(), "-", "-");
        let l = srv.wait_access_log(wait, log_has("GET /app.js HTTP/1.0")).expect("log line for HTTP/1.0");
        check_log_line(&l, "GET /app.js HTTP/1.0", 200, APP_JS.len(), "-", "-");
        let l = srv.wait_access_log(wait, log_has("GET /sub HTTP/1.1")).expect("log line for the redirect");
        assert!(l.contains("\" 301 "), "redirect log line {l:?}");
        // One line per request.
        let log = srv.access_log();
        assert_eq!(log.lines().filter(|l| l.contains("\"GET /index.html HTTP/1.1\"")).count(), 1, "log:\n{log}");
    }

    fn access_log_logs_errors(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        srv.connect().roundtrip(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n");
        srv.connect().roundtrip(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let l = srv.wait_access_log(Duration::from_secs(5), log_has("BREW /pot HTTP/1.1"))
            .unwrap_or_else(|| panic!("no log line for BREW; log:\n{}", srv.access_log()));
        assert!(l.contains("\" 501 "), "{l:?}");
        let l = srv.wait_access_log(Duration::from_secs(5), log_has("POST /x HTTP/1.1")).expect("log line for POST");
        assert!(l.contains("\" 405 "), "{l:?}");
    }

    fn access_log_big_file_byte_count(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/big.bin");
        assert_eq!(r.body.len(), BIG_SIZE);
        let l = srv.wait_access_log(Duration::from_secs(5), log_has("GET /big.bin HTTP/1.1"))
            .unwrap_or_else(|| panic!("no log line for /big.bin; log:\n{}", srv.access_log()));
        check_log_line(&l, "GET /big.bin HTTP/1.1", 200, BIG_SIZE, "-", "-");
    }

    fn access_log_flushed_on_exit(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/style.css");
        assert_status(&r, 200, "GET /style.css");
        let st = srv.terminate(Duration::from_secs(10));
        assert!(st.success(), "tandem exited with {st} on SIGTERM");
        let log = srv.access_log();
        assert!(log.contains("\"GET /style.css HTTP/1.1\" 200"), "access log after exit lacks the request:\n{log}");
    }

    fn access_log_off(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, "access_log = \"off\"", &site.root);
        assert_status(&get(srv.addr(), "/"), 200, "GET /");
        srv.terminate(Duration::from_secs(10));
        assert!(!srv.access_log_path().exists(), "access_log = off still wrote {}", srv.access_log_path().display());
        assert!(!srv.stderr_text().contains("\"GET / HTTP/1.1\""), "access_log = off but the request was logged to stderr");
    }

    // ---------------------------------------------------------------- shutdown

    fn sigterm_exits_cleanly(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, "shutdown_timeout = \"1s\"", &site.root);
        // An idle keep-alive connection must not hold the shutdown up.
        let mut c = srv.connect();
        assert_status(&c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET /");
        let t0 = Instant::now();
        let st = srv.terminate(Duration::from_secs(10));
        assert!(st.success(), "tandem exited with {st} on SIGTERM\n{}", srv.stderr_text());
        assert!(t0.elapsed() < Duration::from_secs(5), "SIGTERM took {:?}", t0.elapsed());
        // The idle connection was closed.
        match c.read_to_close(CLOSE_TIMEOUT) {
            Ok(_) => {}
            Err(rest) => panic!("idle connection open after server exit ({})", show(&rest)),
        }
        // Nothing listens any more.
        assert!(std::net::TcpStream::connect(srv.addr()).is_err(), "port still accepts after exit");
    }

    fn sigterm_cuts_stuck_response_after_shutdown_timeout(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, "shutdown_timeout = \"500ms\"\nsend_timeout = \"60s\"", &site.root);
        let mut c = srv.connect();
        c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut b = [0u8; 16];
        c.stream.read_exact(&mut b).expect("first bytes of /big.bin");
        // We never read the rest: the response cannot finish.
        let t0 = Instant::now();
        let st = srv.terminate(Duration::from_secs(10));
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "shutdown with a stuck response took {took:?} (shutdown_timeout 500ms)");
        assert!(st.code().is_some(), "tandem died from a signal on SIGTERM: {st}");
        drop(c);
    }

    // ---------------------------------------------------------------- settings

    fn workers_one_and_four(e) {
        for w in ["1", "4"] {
            let site = Site::new();
            let srv = start_or_skip!(e, &format!("workers = {w}"), &site.root);
            let mut conns: Vec<Conn> = (0..16).map(|_| srv.connect()).collect();
            for c in conns.iter_mut() {
                c.send(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
            }
            for c in conns.iter_mut() {
                let r = c.read_response("GET");
                assert_status(&r, 200, &format!("workers = {w}"));
                assert_eq!(r.body_str(), APP_JS);
            }
        }
    }

    fn two_listeners(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]", &site.root);
        srv.wait_stderr_until(START_TIMEOUT, |t| listening_addrs(t).len() >= 2);
        let addrs = listening_addrs(&srv.stderr_text());
        assert_eq!(addrs.len(), 2, "expected two `listening on` lines:\n{}", srv.stderr_text());
        assert_ne!(addrs[0], addrs[1]);
        for a in addrs {
            let r = get(a, "/");
            assert_status(&r, 200, &format!("GET / on listener {a}"));
        }
    }

    fn duplicate_listen_entries(e) {
        // Rejecting the config (exit 2) is fine; accepting it and then failing is not.
        let site = Site::new();
        let extra = "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]";
        let cfg = site.tempdir().join("dup.toml");
        std::fs::write(&cfg, format!("{extra}\nroot = {}\n", toml_str(&site.root.display().to_string()))).unwrap();
        let out = std::process::Command::new(tandem_bin()).arg("-t").arg("-c").arg(&cfg).output().unwrap();
        if out.status.code() == Some(2) {
            return;
        }
        let srv = start_or_skip!(e, extra, &site.root);
        srv.wait_stderr("serving", START_TIMEOUT);
        for a in listening_addrs(&srv.stderr_text()) {
            let r = Conn::connect(a).roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_status(&r, 200, &format!("GET / on {a} with `{extra}`"));
        }
        assert!(!srv.stderr_text().contains(" error "), "errors with `{extra}`:\n{}", srv.stderr_text());
    }

    fn custom_index_and_error_page(e) {
        let site = Site::new();
        site.write("home.htm", b"<p>HOME-PAGE</p>");
        site.write("errors/nf.html", b"<p>OTHER-404</p>");
        let srv = start_or_skip!(e, "index = \"home.htm\"\nerror_page_404 = \"errors/nf.html\"", &site.root);
        let r = get(srv.addr(), "/");
        assert_status(&r, 200, "GET / with index = home.htm");
        assert_eq!(r.body_str(), "<p>HOME-PAGE</p>");
        let r = get(srv.addr(), "/sub/");
        assert_status(&r, 404, "GET /sub/ (has index.html but not home.htm)");
        assert_eq!(r.body_str(), "<p>OTHER-404</p>");
    }

    fn max_connections_pauses_accepting(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "workers = 1\nmax_connections = 2", &site.root);
        let mut c1 = srv.connect();
        assert_status(&c1.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "conn 1");
        let mut c2 = srv.connect();
        assert_status(&c2.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "conn 2");
        // Both busy (mid-request): an idle one would be closed to make room
        // (tests/faults.rs), a busy one never is.
        c1.send(b"GET / HTTP/1.1\r\n");
        c2.send(b"GET / HTTP/1.1\r\n");
        let mut c3 = srv.connect();
        c3.send(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        match c3.try_read_response_within("GET", Duration::from_millis(300)) {
            Err(_) => {}
            Ok(r) => panic!("a third connection was served with max_connections = 2 busy, workers = 1:\n{}", r.describe()),
        }
        drop(c1);
        let r = c3.try_read_response_within("GET", CLOSE_TIMEOUT)
            .unwrap_or_else(|e| panic!("third connection not served after one of two closed: {e}"));
        assert_status(&r, 200, "conn 3 after conn 1 closed");
        assert_status(&c2.roundtrip(b"Host: t\r\n\r\n"), 200, "conn 2 again");
    }
}

// ------------------------------------------------------- engine-independent

#[test]
fn engine_flag_overrides_config() {
    let site = Site::new();
    // The config asks for io_uring; --engine epoll must win (and so start even
    // where io_uring is unavailable).
    let srv =
        Server::start("epoll", "engine = \"io_uring\"", &site.root).expect("epoll never skips");
    assert_status(
        &get(srv.addr(), "/"),
        200,
        "GET / with --engine epoll over engine = io_uring",
    );
}

#[test]
fn engine_auto_serves() {
    let site = Site::new();
    let srv = Server::start("auto", "", &site.root).expect("auto never skips");
    let r = get(srv.addr(), "/big.bin");
    assert_status(&r, 200, "GET /big.bin with --engine auto");
    assert_bytes_eq(&r.body, &big_bytes(), "GET /big.bin with --engine auto");
}
