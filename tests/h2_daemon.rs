//! HTTP/2 through the daemon's life and in what it reports (issue 21,
//! points 5 and 6), both engines: h2load across three SIGHUP reloads and a
//! SIGTERM stop with no request lost; a stream under way when a reload or
//! stop begins gets GOAWAY and still finishes; an idle connection gets
//! GOAWAY(NO_ERROR) at keepalive_timeout; one access-log line per stream
//! saying HTTP/2.0; /metrics counting HTTP/2 connections and streams.

#[macro_use]
mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::h2::*;
use common::*;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn log_lines_for(srv: &Server, request: &str) -> Vec<LogLine> {
    srv.access_log()
        .lines()
        .filter_map(parse_combined)
        .filter(|l| l.request == request)
        .collect()
}

engine_tests! {
    /// h2load -c40 -m10, run after run, while the server reloads three
    /// times and then stops. A stream the server took (it logs it) must
    /// reach the client whole: every run's succeeded requests add up to
    /// the log's lines, each 200 with the whole file; what a run started
    /// and did not finish is only what a GOAWAY's last stream id left
    /// out (at most 40 x 10 a run).
    fn h2load_across_three_reloads_and_a_stop(e) {
        if !have("h2load") {
            return skip("h2load not installed (Debian: nghttp2-client)");
        }
        let site = Site::new();
        let srv = start_or_skip!(e, &format!("{H2C}\nworkers = 2"), &site.root);
        let url = format!("http://{}/style.css", srv.addr());
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(Mutex::new(Vec::<(H2load, String)>::new()));
        let loader = {
            let (stop, runs, url) = (stop.clone(), runs.clone(), url.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let o = Command::new("h2load")
                        .args(["-n", "20000", "-c", "40", "-m", "10", &url])
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    let out = String::from_utf8_lossy(&o.stdout).into_owned();
                    let Some(run) = parse_h2load(&out) else {
                        panic!("h2load output:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
                    };
                    let refused = run.started == 0;
                    runs.lock().unwrap().push((run, out));
                    if refused {
                        return; // the listener is gone: the server stopped
                    }
                }
            })
        };
        let logged = |srv: &Server| count_occurrences(&srv.access_log(), "\"GET /style.css HTTP/2.0\"");
        let wait_more = |srv: &Server, n: usize| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while logged(srv) < n {
                assert!(Instant::now() < deadline, "h2load made no progress: {} lines", logged(srv));
                std::thread::sleep(Duration::from_millis(20)); // poll interval
            }
        };
        wait_more(&srv, 2000);
        for _ in 0..3 {
            srv.reload(START_TIMEOUT).expect("reload");
            let n = logged(&srv);
            wait_more(&srv, n + 2000);
        }
        stop.store(true, Ordering::Relaxed);
        let mut srv = srv;
        let st = srv.terminate(Duration::from_secs(30));
        assert!(st.success(), "exit {st:?}");
        loader.join().expect("loader");
        let runs = runs.lock().unwrap().clone();
        let size = STYLE_CSS.len() as u64;
        let lines = log_lines_for(&srv, "GET /style.css HTTP/2.0");
        let bad: Vec<&LogLine> = lines.iter().filter(|l| l.status != 200 || l.bytes != size).collect();
        assert!(bad.is_empty(), "{} log lines not 200 with {size} bytes: {:?}", bad.len(), &bad[..bad.len().min(5)]);
        let succeeded: u64 = runs.iter().map(|r| r.0.succeeded).sum();
        let mut report = String::new();
        for (r, _) in &runs {
            report.push_str(&format!("{r:?}\n"));
        }
        note(&format!("{} h2load runs, {succeeded} succeeded, {} logged\n{report}", runs.len(), lines.len()));
        for (r, out) in &runs {
            assert_eq!(r.non_2xx, 0, "{out}");
            assert!(r.succeeded <= r.done && r.done <= r.started && r.started <= r.total, "{out}");
            assert!(r.started - r.succeeded <= 400, "a run lost {} started requests:\n{out}", r.started - r.succeeded);
        }
        assert_eq!(succeeded, lines.len() as u64, "requests the server logged (took) and clients got whole differ");
    }

    /// A download under way when a reload (SIGHUP) or stop (SIGTERM)
    /// begins: GOAWAY(NO_ERROR) naming its stream as processed, then the
    /// rest of the file, byte-exact; then the connection closes.
    fn open_stream_finishes_across_reload_and_stop(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, &format!("{H2C}\nworkers = 1"), &site.root);
        for sig in [libc::SIGHUP, libc::SIGTERM] {
            let opts = Opts { settings: vec![(INITIAL_WINDOW_SIZE, 16384)], auto_window: false, ..Opts::default() };
            let mut c = H2::connect_with(srv.addr(), opts);
            c.wait_ready();
            let id = c.send_request("GET", "/big.bin", &[]);
            let deadline = Instant::now() + IO_TIMEOUT;
            while c.received(id) < 16384 {
                c.pump(deadline).unwrap_or_else(|e| panic!("the first 16 KiB: {e:?}"));
            }
            if sig == libc::SIGHUP {
                srv.reload(START_TIMEOUT).expect("reload");
            } else {
                srv.signal(sig);
            }
            let deadline = Instant::now() + IO_TIMEOUT;
            while c.goaway.is_none() {
                c.pump(deadline).unwrap_or_else(|e| panic!("signal {sig}: no GOAWAY: {e:?}; {}", c.seen_summary()));
            }
            let g = c.goaway.clone().unwrap();
            assert_eq!(g.code, NO_ERROR, "{g:?}");
            assert!(g.last_stream >= id, "GOAWAY {g:?} leaves out stream {id} under way");
            c.opts.auto_window = true;
            c.send_frame(WINDOW_UPDATE, 0, id, &(BIG_SIZE as u32).to_be_bytes());
            let r = c.read_response(id);
            assert_eq!(r.status, 200);
            assert_bytes_eq(&r.body, &big_bytes(), &format!("big.bin across signal {sig}"));
            let end = c.read_to_end(Instant::now() + IO_TIMEOUT);
            assert_ne!(end, End::Timeout, "signal {sig}: still open after its last stream");
        }
        let st = srv.wait_exit(Duration::from_secs(10)).expect("exit after SIGTERM");
        assert!(st.success(), "{st:?}");
    }

    /// keepalive_timeout: an idle HTTP/2 connection gets GOAWAY(NO_ERROR)
    /// with the last stream it served, then the close; not before.
    fn idle_connection_gets_goaway_at_keepalive_timeout(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, &format!("{H2C}\nkeepalive_timeout = \"1s\""), &site.root);
        let mut c = H2::handshake(srv.addr());
        assert_eq!(c.get("/", &[]).status, 200);
        assert_eq!(c.get("/app.js", &[]).status, 200);
        let t0 = Instant::now();
        let (g, end) = c.read_until_goaway(Duration::from_secs(10));
        let took = t0.elapsed();
        let g = g.unwrap_or_else(|| panic!("no GOAWAY within 10 s of idling ({end:?}); {}", c.seen_summary()));
        assert_eq!((g.code, g.last_stream), (NO_ERROR, 3), "{g:?}");
        assert_ne!(end, End::Timeout, "still open after GOAWAY");
        assert!(took >= Duration::from_millis(800), "GOAWAY after {took:?}, keepalive_timeout is 1s");
        note(&format!("GOAWAY after {took:?} idle"));
    }

    /// One access-log line per stream, with the protocol HTTP/2.0, the
    /// status and body bytes; HTTP/1.1 lines still say HTTP/1.1.
    fn access_log_line_per_stream(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, H2C, &site.root);
        let mut c = H2::handshake(srv.addr());
        let ids: Vec<u32> = ["/", "/style.css", "/missing"].iter().map(|p| c.send_request("GET", p, &[("user-agent", "h2-log-test")])).collect();
        for id in ids {
            c.read_response(id);
        }
        assert_eq!(get(srv.addr(), "/app.js").status, 200);
        srv.wait_access_log(IO_TIMEOUT, |l| l.contains("GET /app.js HTTP/1.1")).expect("the HTTP/1.1 line");
        let want = [("GET / HTTP/2.0", 200, INDEX_HTML.len()), ("GET /style.css HTTP/2.0", 200, STYLE_CSS.len()), ("GET /missing HTTP/2.0", 404, NOT_FOUND_HTML.len())];
        for (req, status, bytes) in want {
            srv.wait_access_log(IO_TIMEOUT, |l| l.contains(req)).unwrap_or_else(|| panic!("no line for {req}:\n{}", srv.access_log()));
            let lines = log_lines_for(&srv, req);
            assert_eq!(lines.len(), 1, "{req}: {} lines\n{}", lines.len(), srv.access_log());
            assert_eq!((lines[0].status, lines[0].bytes), (status, bytes as u64), "{req}: {:?}", lines[0]);
            assert_eq!(lines[0].user_agent, "h2-log-test");
        }
    }

    /// /metrics: tandem_h2_connections_total and tandem_h2_streams_total
    /// count HTTP/2 connections and their streams (HTTP/1.1 ones not).
    fn metrics_count_h2_connections_and_streams(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, &format!("{H2C}\nmetrics_listen = [\"127.0.0.1:0\"]"), &site.root);
        assert_eq!(srv.metric("tandem_h2_connections_total"), 0);
        assert_eq!(srv.metric("tandem_h2_streams_total"), 0);
        for _ in 0..2 {
            let mut c = H2::handshake(srv.addr());
            for _ in 0..3 {
                assert_eq!(c.get("/style.css", &[]).status, 200);
            }
        }
        assert_eq!(get(srv.addr(), "/").status, 200);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let (conns, streams) = (srv.metric("tandem_h2_connections_total"), srv.metric("tandem_h2_streams_total"));
            if (conns, streams) == (2, 6) {
                break;
            }
            assert!(Instant::now() < deadline, "h2 connections {conns}, streams {streams}; want 2 and 6");
            std::thread::sleep(Duration::from_millis(20)); // poll interval
        }
    }
}
