//! Daemon life: SIGHUP reload (also under load), SIGTERM/SIGINT graceful stop,
//! SIGUSR1 log reopening, `-s reload|stop|reopen` and the pidfile, `--daemon`,
//! privilege dropping, sd_notify, socket activation and the systemd units.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A directory (under `site.base`) holding one "version" of a site.
fn version_root(site: &Site, k: usize, big: &[u8]) -> PathBuf {
    let r = site.base.join(format!("v{k}"));
    std::fs::create_dir_all(&r).unwrap();
    set_mode(&r, 0o755);
    std::fs::write(r.join("version.txt"), format!("v{k}\n")).unwrap();
    std::fs::write(r.join("big.bin"), big).unwrap();
    r
}

/// The 1 MiB-ish file of version `k` (lengths differ per version).
fn version_big(k: usize) -> Vec<u8> {
    pseudo_random((1 << 20) + 7 * k, 0xb16_0000 + k as u64)
}

fn body_of(addr: SocketAddr, path: &str) -> String {
    let r = get(addr, path);
    assert_status(&r, 200, &format!("GET {path} on {addr}"));
    r.body_str()
}

/// Read a response head from a raw stream; returns (head, body bytes already read).
fn read_head(s: &mut TcpStream, timeout: Duration) -> (String, Vec<u8>) {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    let mut scanned = 0;
    loop {
        if let Some(p) = frame::head_end(&buf, &mut scanned) {
            let head = String::from_utf8_lossy(&buf[..p]).into_owned();
            return (head, buf[p + 4..].to_vec());
        }
        let n = s
            .read(&mut tmp)
            .unwrap_or_else(|e| panic!("reading response head: {e}; got {}", show(&buf)));
        assert!(n > 0, "EOF inside response head; got {}", show(&buf));
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Read body bytes from `s` and compare them with `want[*pos..]` until `*pos == upto`.
fn read_body_until(
    s: &mut TcpStream,
    want: &[u8],
    pos: &mut usize,
    upto: usize,
    timeout: Duration,
) -> Result<(), String> {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut tmp = vec![0u8; 256 * 1024];
    while *pos < upto {
        let max = (upto - *pos).min(tmp.len());
        match s.read(&mut tmp[..max]) {
            Ok(0) => return Err(format!("EOF after {} of {} body bytes", *pos, want.len())),
            Ok(n) => {
                if tmp[..n] != want[*pos..*pos + n] {
                    let off = tmp[..n]
                        .iter()
                        .zip(&want[*pos..])
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    return Err(format!("body differs at offset {}", *pos + off));
                }
                *pos += n;
            }
            Err(e) => return Err(format!("after {} of {} body bytes: {e}", *pos, want.len())),
        }
    }
    Ok(())
}

/// The site plus a 64 MiB file `huge.bin`; returns its contents.
fn site_with_huge(site: &Site) -> Arc<Vec<u8>> {
    let huge = stamped_blocks(64);
    site.write("huge.bin", &huge);
    Arc::new(huge)
}

// ------------------------------------------------------------ load client

#[derive(Default)]
struct LoadStats {
    ok: AtomicUsize,
    /// Requests retried once on a fresh connection after a reused keep-alive
    /// connection gave EOF/reset before any response byte (RFC 9112 §9.3.1).
    retries: AtomicUsize,
    /// Responses carrying `Connection: close`.
    close_marked: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// One load thread: keep-alive connections alternating GET /version.txt and
/// GET /big.bin, every response checked against the version roots, until `stop`.
fn load_thread(
    addr: SocketAddr,
    tid: usize,
    bigs: Arc<Vec<Vec<u8>>>,
    confirmed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) {
    let fail = |msg: String| {
        let mut f = stats.failures.lock().unwrap();
        if f.len() < 20 {
            f.push(format!("thread {tid}: {msg}"));
        }
    };
    // Validate one response; returns the version it came from.
    let check = |path: &str, r: &Response| -> Result<usize, String> {
        if r.status != 200 {
            return Err(format!("GET {path}: status {}\n{}", r.status, r.describe()));
        }
        let cl: usize = r
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("GET {path}: no Content-Length\n{}", r.describe()))?;
        if cl != r.body.len() {
            return Err(format!(
                "GET {path}: Content-Length {cl} but {} body bytes",
                r.body.len()
            ));
        }
        if path == "/version.txt" {
            let s = r.body_str();
            let k = s
                .strip_prefix('v')
                .and_then(|v| v.strip_suffix('\n'))
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&k| k < bigs.len())
                .ok_or_else(|| format!("GET /version.txt: body {s:?}"))?;
            Ok(k)
        } else {
            let k = bigs
                .iter()
                .position(|b| b.len() == r.body.len())
                .ok_or_else(|| {
                    format!(
                        "GET /big.bin: {} bytes, no version has that length",
                        r.body.len()
                    )
                })?;
            if r.body != bigs[k] {
                return Err(format!(
                    "GET /big.bin: {} bytes with the length of v{k} but other content",
                    r.body.len()
                ));
            }
            Ok(k)
        }
    };
    // (connection, requests answered on it, its version, version confirmed when it was opened)
    let mut conn: Option<(Conn, usize, Option<usize>)> = None;
    let mut i = tid;
    while !stop.load(Ordering::Acquire) {
        i += 1;
        let path = if i.is_multiple_of(2) {
            "/version.txt"
        } else {
            "/big.bin"
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let (mut c, served, ver, min_ver) = match conn.take() {
            Some((c, n, v)) => (c, n, v, 0),
            None => {
                let min = confirmed.load(Ordering::Acquire);
                (Conn::connect(addr), 0, None, min)
            }
        };
        let reused = served > 0;
        let outcome = match c.try_send(req.as_bytes()) {
            Ok(()) => c.read_response_classified("GET", IO_TIMEOUT),
            Err(e) => ReadOutcome::Nothing(format!("send: {e}")),
        };
        let (r, mut c, served, ver, min_ver) = match outcome {
            ReadOutcome::Ok(r) => (r, c, served, ver, min_ver),
            ReadOutcome::Nothing(e) if reused => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                let min = confirmed.load(Ordering::Acquire);
                let mut c2 = Conn::connect(addr);
                c2.send(req.as_bytes());
                match c2.read_response_classified("GET", IO_TIMEOUT) {
                    ReadOutcome::Ok(r) => (r, c2, 0, None, min),
                    ReadOutcome::Nothing(e2) | ReadOutcome::Failed(e2) => {
                        fail(format!(
                            "GET {path}: retry after `{e}` on a fresh connection failed: {e2}"
                        ));
                        continue;
                    }
                }
            }
            ReadOutcome::Nothing(e) => {
                fail(format!("GET {path} on a FRESH connection: {e}"));
                continue;
            }
            ReadOutcome::Failed(e) => {
                fail(format!(
                    "GET {path} (request #{} on its connection): {e}",
                    served + 1
                ));
                continue;
            }
        };
        match check(path, &r) {
            Ok(k) => {
                if let Some(v) = ver
                    && v != k
                {
                    fail(format!("GET {path}: one connection served v{v} then v{k}"));
                    continue;
                }
                if served == 0 && k < min_ver {
                    fail(format!(
                        "GET {path}: a connection opened after reload #{min_ver} was reported got old content v{k}"
                    ));
                    continue;
                }
                stats.ok.fetch_add(1, Ordering::Relaxed);
                if r.connection_has("close") {
                    stats.close_marked.fetch_add(1, Ordering::Relaxed);
                    let _ = c.read_to_close(CLOSE_TIMEOUT);
                } else {
                    conn = Some((c, served + 1, Some(k)));
                }
            }
            Err(e) => fail(e),
        }
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5)); // poll interval
    }
}

/// Run `tandem ARGS` to completion.
fn tandem_cmd(args: &[&str], cfg: &Path) -> RunOutput {
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("-c").arg(cfg).args(args);
    run_with_timeout(cmd, EXIT_TIMEOUT)
}

/// Receive sd_notify datagrams until one satisfies `pred` or `timeout` passes.
fn recv_notify_until(
    sock: &std::os::unix::net::UnixDatagram,
    got: &mut Vec<String>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        sock.set_read_timeout(Some(deadline - now)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = pred(&m);
                got.push(m);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

fn monotonic_usec_now() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Kills a daemonized server (by the pid in its pidfile) if a test fails midway.
struct PidGuard {
    pidfile: Option<PathBuf>,
}
impl PidGuard {
    fn disarm(&mut self) {
        self.pidfile = None;
    }
}
impl Drop for PidGuard {
    fn drop(&mut self) {
        let pid: Option<u32> = self
            .pidfile
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok());
        if let Some(pid) = pid
            && pid_alive(pid)
        {
            // SAFETY: kill takes plain integers; pid is the daemon this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

engine_tests! {
    // ------------------------------------------------------------------ reload

    fn reload_under_load_switches_root(e) {
        const RELOADS: usize = 10;
        const THREADS: usize = 4;
        let site = Site::empty();
        let bigs: Arc<Vec<Vec<u8>>> = Arc::new((0..=RELOADS).map(version_big).collect());
        let roots: Vec<PathBuf> = (0..=RELOADS).map(|k| version_root(&site, k, &bigs[k])).collect();
        let extra = "workers = 2\nkeepalive_timeout = \"30s\"\nshutdown_timeout = \"10s\"";
        let mut srv = start_or_skip!(e, extra, &roots[0]);
        let addr = srv.addr();
        assert_eq!(body_of(addr, "/version.txt"), "v0\n");
        let _ = get(addr, "/big.bin");
        // Descriptor and thread counts of one generation at rest. Files of
        // the current root are left out: each worker's open-file cache may
        // hold the ones it served (which worker served what is the
        // kernel's choice); a file of an old root would be a leak.
        let fds0 = fds_beside_root(srv.pid(), &roots[0]).len();
        let threads0 = thread_count(srv.pid());

        let stop = Arc::new(AtomicBool::new(false));
        let confirmed = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(LoadStats::default());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (b, c, s, st) = (bigs.clone(), confirmed.clone(), stop.clone(), stats.clone());
                std::thread::spawn(move || load_thread(addr, t, b, c, s, st))
            })
            .collect();
        // Bounded: the load stops when the reloads are done, or at this deadline.
        let load_deadline = Instant::now() + Duration::from_secs(40);
        let flowing = wait_until(Duration::from_secs(10), || stats.ok.load(Ordering::Relaxed) >= 20);
        let mut problems = Vec::new();
        if !flowing {
            problems.push("load did not get 20 responses within 10s".to_string());
        }
        for (k, root) in roots.iter().enumerate().skip(1) {
            if Instant::now() > load_deadline {
                break;
            }
            srv.write_config(extra, root);
            match srv.reload(RELOAD_TIMEOUT) {
                Ok(line) => {
                    let want_root = format!("root {}", root.display());
                    let want_engine = format!("engine {e}");
                    if !line.contains(&want_root) || !line.contains(&want_engine) || !line.contains("2 worker(s)") {
                        problems.push(format!("reload #{k}: line {line:?} lacks `{want_engine}`, `2 worker(s)` or `{want_root}`"));
                    }
                }
                Err(line) => problems.push(format!("reload #{k} failed: {line}")),
            }
            confirmed.store(k, Ordering::Release);
            // New connections after the `reloaded` line get the new content.
            for probe in 0..6 {
                let mut c = Conn::connect(addr);
                c.send(b"GET /version.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                match c.read_response_classified("GET", IO_TIMEOUT) {
                    ReadOutcome::Ok(r) if r.status == 200 && r.body_str() == format!("v{k}\n") => {}
                    ReadOutcome::Ok(r) => problems.push(format!(
                        "after the `reloaded` line of reload #{k}: new connection #{probe} got {} {:?} (want v{k})",
                        r.status,
                        r.body_str()
                    )),
                    ReadOutcome::Nothing(e) | ReadOutcome::Failed(e) => problems.push(format!(
                        "after the `reloaded` line of reload #{k}: new connection #{probe}: {e}"
                    )),
                }
            }
            // Let the load run through the switch.
            let base = stats.ok.load(Ordering::Relaxed);
            if !wait_until(Duration::from_secs(10), || stats.ok.load(Ordering::Relaxed) >= base + 12) {
                problems.push(format!("after reload #{k}: load made no progress for 10s"));
            }
        }
        stop.store(true, Ordering::Release);
        for h in handles {
            h.join().expect("load thread panicked");
        }
        let ok = stats.ok.load(Ordering::Relaxed);
        let retries = stats.retries.load(Ordering::Relaxed);
        let closes = stats.close_marked.load(Ordering::Relaxed);
        note(&format!(
            "engine {e}: {ok} responses through {RELOADS} reloads, {retries} retried after EOF/reset on a reused keep-alive connection, {closes} with `Connection: close`"
        ));
        let failures = stats.failures.lock().unwrap().clone();
        assert!(problems.is_empty(), "reload problems:\n{}", problems.join("\n"));
        assert!(failures.is_empty(), "{} failed request(s) under reload ({ok} ok, {retries} retried):\n{}", failures.len(), failures.join("\n"));
        srv.assert_healthy("after reloads under load");
        assert_eq!(body_of(addr, "/version.txt"), format!("v{RELOADS}\n"));
        // Old generations exit: threads and descriptors come back to one generation's worth.
        let pid = srv.pid();
        assert!(
            wait_until(Duration::from_secs(10), || thread_count(pid) <= threads0),
            "old workers did not exit: {} threads, {threads0} after start",
            thread_count(pid)
        );
        let old_roots = &roots[..RELOADS];
        let settled = || {
            let fds = fds_beside_root(pid, &roots[RELOADS]);
            fds.len() <= fds0 && !fds.iter().any(|t| old_roots.iter().any(|r| t.starts_with(r)))
        };
        if !wait_until(Duration::from_secs(10), settled) {
            panic!(
                "{} descriptors (the current root's files aside) after {RELOADS} reloads, {fds0} after start:\n{}",
                fds_beside_root(pid, &roots[RELOADS]).len(),
                fd_listing(pid)
            );
        }
    }

    fn reload_closes_idle_and_finishes_inflight(e) {
        let site = Site::new();
        let huge = site_with_huge(&site);
        let srv = start_or_skip!(e, "workers = 1\nkeepalive_timeout = \"30s\"", &site.root);
        let mut idle = srv.connect();
        assert_status(&idle.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET /style.css");
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, first) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "GET /huge.bin:\n{head}");
        assert_eq!(frame::content_length(&head), huge.len());
        let mut pos = 0;
        assert!(first.len() <= huge.len());
        assert_bytes_eq(&first, &huge[..first.len()], "start of /huge.bin");
        pos += first.len();
        read_body_until(&mut s, &huge, &mut pos, 1 << 20, IO_TIMEOUT).unwrap();

        srv.reload(RELOAD_TIMEOUT).expect("reload with an unchanged config");
        // The idle keep-alive connection is closed by its draining worker.
        idle.expect_closed("idle keep-alive connection after SIGHUP");
        // The response in flight completes byte-exact, then the connection closes.
        read_body_until(&mut s, &huge, &mut pos, huge.len(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("/huge.bin in flight across a reload: {e}"));
        let mut c = Conn::from_stream(s);
        match c.read_to_close(CLOSE_TIMEOUT) {
            Ok(rest) => assert!(rest.is_empty(), "bytes after /huge.bin: {}", show(&rest)),
            Err(rest) => panic!("connection of the drained worker still open after the response ({})", show(&rest)),
        }
        assert_status(&get(srv.addr(), "/style.css"), 200, "GET after reload");
    }

    fn reload_answers_next_request_on_idle_connection_with_close(e) {
        // A busy keep-alive client that sends its next request right after a
        // reload is answered (by the retiring worker, within its grace), and
        // learns of the close from that response, not from a reset.
        let site = Site::new();
        let srv = start_or_skip!(e, "workers = 1\nkeepalive_timeout = \"30s\"", &site.root);
        let mut c = srv.connect();
        assert_status(&c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET /style.css");
        srv.reload(RELOAD_TIMEOUT).expect("reload with an unchanged config");
        let r = c.roundtrip(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 200, "GET /app.js on the kept-alive connection after SIGHUP");
        assert!(r.connection_has("close"), "the retiring worker's last response must say Connection: close:\n{}", r.describe());
        c.expect_closed("connection after its Connection: close response");
        assert_status(&get(srv.addr(), "/app.js"), 200, "GET on a new connection after reload");
    }

    fn reload_grace_waits_for_a_slow_reader_to_get_its_response(e) {
        // A keep-alive response begun before the reload is still on its way
        // to a slow reader (its bytes sit in the socket buffers) when the
        // grace would run out: the grace counts from when the client has it,
        // so its next request is still answered, with Connection: close.
        let site = Site::new();
        let body = stamped_blocks(6);
        site.write("eight.bin", &body);
        let srv = start_or_skip!(e, "workers = 1\nkeepalive_timeout = \"30s\"", &site.root);
        let s = TcpStream::connect(srv.addr()).unwrap();
        // A small receive window, set before the response comes: a slow reader.
        common::load::set_rcvbuf(&s, 32 * 1024);
        let mut s = s;
        s.write_all(b"GET /eight.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, first) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200") && !head.to_ascii_lowercase().contains("connection: close"), "{head}");
        srv.reload(RELOAD_TIMEOUT).expect("reload with an unchanged config");
        // Read the rest slowly (16 KiB every 20 ms): what the socket buffers
        // hold when the server's last write returns takes longer to read
        // than the 2 s grace.
        let mut got = first;
        let mut buf = vec![0u8; 16 * 1024];
        let t0 = Instant::now();
        while got.len() < body.len() {
            let n = s.read(&mut buf).expect("reading the response in flight across the reload");
            assert!(n > 0, "closed after {} of {} bytes", got.len(), body.len());
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_millis(20)); // the slow reader's pace
        }
        assert_bytes_eq(&got, &body, "/eight.bin across the reload");
        let took = t0.elapsed();
        let mut c = Conn::from_stream(s);
        let r = c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 200, &format!("the next request after a {took:?} slow read"));
        assert!(r.connection_has("close"), "{}", r.describe());
        c.expect_closed("after its Connection: close response");
    }

    fn reload_during_response_closes_after_pipelined_request(e) {
        // A response is in flight (the client has stopped reading) and the
        // next request is already pipelined behind it when the reload comes:
        // both are answered, the second with `Connection: close`.
        let site = Site::new();
        let huge = site_with_huge(&site);
        let srv = start_or_skip!(e, "workers = 1", &site.root);
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, first) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "GET /huge.bin:\n{head}");
        assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
        let mut pos = first.len();
        assert_bytes_eq(&first, &huge[..pos], "start of /huge.bin");
        read_body_until(&mut s, &huge, &mut pos, 1 << 20, IO_TIMEOUT).unwrap();
        // The next request arrives while the response is being sent.
        s.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        srv.reload(RELOAD_TIMEOUT).expect("reload with an unchanged config");
        read_body_until(&mut s, &huge, &mut pos, huge.len(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("/huge.bin across the reload: {e}"));
        let mut c = Conn::from_stream(s);
        let r = c.read_response("GET");
        assert_status(&r, 200, "pipelined GET /style.css after the reload");
        assert!(r.connection_has("close"), "the draining worker's last response must say Connection: close:\n{}", r.describe());
        c.expect_closed("connection after its Connection: close response");
    }

    fn reload_invalid_config_keeps_serving(e) {
        let site = Site::new();
        let other = site.base.join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("index.html"), "OTHER-ROOT\n").unwrap();
        let mut srv = start_or_skip!(e, "", &site.root);
        let cfg_path = srv.config_path().display().to_string();
        for (bad, what) in [
            ("bogus_key = 1", "an unknown key"),
            ("workers = \"many\"", "a bad value"),
            ("index = \"unterminated", "a syntax error"),
        ] {
            // The bad line comes after a root change, which must not take effect.
            let text = compose_config(&format!("workers = 1\n{bad}"), &other, srv.access_log_path());
            let line_no = text.lines().position(|l| l == bad).unwrap() + 1;
            std::fs::write(srv.config_path(), &text).unwrap();
            let line = srv.reload(RELOAD_TIMEOUT).expect_err(&format!("reload with {what} succeeded"));
            let want = format!("reload failed, keeping the running config: {cfg_path}:{line_no}: ");
            assert!(line.contains(&want), "reload with {what} (`{bad}` on line {line_no}): log line {line:?} lacks {want:?}");
            let r = get(srv.addr(), "/");
            assert_status(&r, 200, &format!("GET / after a reload with {what}"));
            assert_eq!(r.body_str(), INDEX_HTML, "after a failed reload ({what}) the old root must be served");
        }
        // A root that does not exist: also refused, old config kept.
        srv.write_config("", &site.base.join("no-such-dir"));
        let line = srv.reload(RELOAD_TIMEOUT).expect_err("reload with a missing root succeeded");
        assert!(line.contains("reload failed, keeping the running config:"), "{line:?}");
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML, "after a failed reload (missing root)");
        // A valid config afterwards does take effect.
        srv.write_config("", &other);
        srv.reload(RELOAD_TIMEOUT).expect("valid reload after failed ones");
        let got = body_of(srv.addr(), "/");
        assert_eq!(got, "OTHER-ROOT\n", "a new connection after the `reloaded` line must get the new root");
        srv.assert_healthy("after failed reloads");
    }

    fn reload_invalid_value_names_its_line(e) {
        // Values the schema accepts but validation rejects are also invalid
        // configs: the message must name FILE:LINE like parse errors do.
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let cfg_path = srv.config_path().display().to_string();
        let mut missing = Vec::new();
        for bad in ["max_connections = 0", "listen = []", "index = \"a/b.html\"", "log_level = \"loud\""] {
            let text = compose_config(bad, &site.root, srv.access_log_path());
            let line_no = text.lines().position(|l| l == bad).unwrap() + 1;
            std::fs::write(srv.config_path(), &text).unwrap();
            let line = srv.reload(RELOAD_TIMEOUT).expect_err(&format!("reload with `{bad}` succeeded"));
            assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML, "after failed reload with `{bad}`");
            let want = format!("reload failed, keeping the running config: {cfg_path}:{line_no}: ");
            if !line.contains(&want) {
                missing.push(format!("`{bad}` (line {line_no}): {line:?}"));
            }
        }
        assert!(missing.is_empty(), "reload errors without FILE:LINE:\n{}", missing.join("\n"));
    }

    fn reload_adds_and_removes_listen_addresses(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let first = srv.addr();
        let port = free_port();
        let second: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        srv.write_config(&format!("listen = [\"127.0.0.1:0\", \"{second}\"]"), &site.root);
        srv.reload(RELOAD_TIMEOUT).expect("reload adding a listen address");
        assert!(
            srv.wait_stderr(&format!("listening on {second}"), START_TIMEOUT),
            "no `listening on {second}` after the reload"
        );
        assert_eq!(body_of(second, "/"), INDEX_HTML, "new address");
        assert_eq!(body_of(first, "/"), INDEX_HTML, "old address after adding one");
        // Now drop the first address: it stops accepting once its old workers are gone.
        srv.write_config(&format!("listen = [\"{second}\"]"), &site.root);
        srv.reload(RELOAD_TIMEOUT).expect("reload removing a listen address");
        assert_eq!(body_of(second, "/"), INDEX_HTML, "remaining address");
        let gone = wait_until(Duration::from_secs(5), || TcpStream::connect(first).is_err());
        assert!(gone, "{first} still accepts connections 5s after a reload removed it from `listen`");
    }

    fn reload_switches_engine(e) {
        let other = if e == "epoll" { "io_uring" } else { "epoll" };
        let site = Site::new();
        let opts = Launch { engine_in_config: true, ..Default::default() };
        let Some(mut srv) = Server::launch(e, "workers = 1", &site.root, opts) else { return };
        assert!(srv.wait_stderr(&format!("with engine {e}"), START_TIMEOUT), "no `with engine {e}` line:\n{}", srv.stderr_text());
        srv.write_config(&format!("engine = \"{other}\"\nworkers = 1"), &site.root);
        if !io_uring_available() {
            // epoll -> io_uring where io_uring cannot run: refused, epoll keeps serving.
            let line = srv.reload(RELOAD_TIMEOUT).expect_err("reload to an unavailable io_uring succeeded");
            assert!(line.contains("io_uring"), "{line:?}");
            assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML);
            skip("io_uring unavailable: checked only that switching to it is refused");
            return;
        }
        let line = srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload {e} -> {other} failed: {l}"));
        assert!(line.contains(&format!("engine {other}")), "reload {e} -> {other}: {line:?}");
        let r = get(srv.addr(), "/big.bin");
        assert_bytes_eq(&r.body, &big_bytes(), &format!("GET /big.bin after switching to {other}"));
        srv.write_config(&format!("engine = \"{e}\"\nworkers = 1"), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload {other} -> {e} failed: {l}"));
        assert!(line.contains(&format!("engine {e}")), "reload back to {e}: {line:?}");
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML);
        srv.assert_healthy("after switching engines");
    }

    // ------------------------------------------------------------------- stop

    fn sigterm_finishes_inflight_download(e) {
        let site = Site::new();
        let huge = site_with_huge(&site);
        let mut srv = start_or_skip!(e, "workers = 1\nshutdown_timeout = \"30s\"\nkeepalive_timeout = \"30s\"", &site.root);
        let addr = srv.addr();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, first) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(frame::content_length(&head), huge.len());
        assert_bytes_eq(&first, &huge[..first.len()], "start of /huge.bin");
        let mut pos = first.len();
        read_body_until(&mut s, &huge, &mut pos, 1 << 20, IO_TIMEOUT).unwrap();
        let mut idle = srv.connect();
        assert_status(&idle.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET / (then idle)");

        // The download is paused at 1 MiB of 64: it is mid-transfer.
        srv.signal(libc::SIGTERM);
        assert!(srv.wait_stderr("stopping", Duration::from_secs(5)), "no `stopping` line after SIGTERM");
        idle.expect_closed("idle keep-alive connection during a graceful stop");
        assert!(srv.is_running(), "tandem exited with a 64 MiB response in flight:\n{}", srv.stderr_text());
        // A connection made now must not be served (accepting stopped).
        let mut late = TcpStream::connect(addr).ok();
        if let Some(l) = late.as_mut() {
            let _ = l.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        read_body_until(&mut s, &huge, &mut pos, huge.len(), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("64 MiB download in flight at SIGTERM: {e}"));
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("tandem did not exit after the last response finished");
        assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}\n{}", srv.stderr_text());
        if let Some(l) = late {
            let mut c = Conn::from_stream(l);
            let rest = c.read_to_close(CLOSE_TIMEOUT).unwrap_or_else(|r| r);
            assert!(rest.is_empty(), "a connection made after SIGTERM was served: {}", show(&rest));
        }
    }

    fn sigterm_cuts_response_after_shutdown_timeout(e) {
        let site = Site::new();
        let huge = site_with_huge(&site);
        let mut srv = start_or_skip!(e, "workers = 1\nshutdown_timeout = \"1s\"\nsend_timeout = \"60s\"", &site.root);
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, _) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // The client never reads on: the response cannot finish.
        let t0 = Instant::now();
        srv.signal(libc::SIGTERM);
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("tandem did not exit within 10s of SIGTERM (shutdown_timeout 1s)");
        let took = t0.elapsed();
        assert_eq!(st.code(), Some(0), "exit status: {st}\n{}", srv.stderr_text());
        assert!(took >= Duration::from_millis(800), "exited after {took:?}: the stuck response did not get its shutdown_timeout of 1s");
        assert!(took < Duration::from_secs(4), "exit took {took:?} with shutdown_timeout 1s");
        let mut c = Conn::from_stream(s);
        match c.read_to_close(Duration::from_secs(10)) {
            Ok(rest) => assert!(rest.len() < huge.len(), "the cut response was complete?"),
            Err(_) => panic!("the cut connection is still open after the server exited"),
        }
    }

    fn second_sigterm_exits_at_once(e) {
        let site = Site::new();
        site_with_huge(&site);
        let mut srv = start_or_skip!(e, "workers = 1\nshutdown_timeout = \"30s\"\nsend_timeout = \"60s\"", &site.root);
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, _) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        srv.signal(libc::SIGTERM);
        assert!(srv.wait_stderr("stopping", Duration::from_secs(5)), "no `stopping` line after SIGTERM");
        assert!(srv.is_running(), "exited at the first SIGTERM with a response in flight (shutdown_timeout 30s)");
        let t0 = Instant::now();
        srv.signal(libc::SIGTERM);
        let st = srv.wait_exit(Duration::from_secs(5)).expect("no exit within 5s of the second SIGTERM (shutdown_timeout 30s)");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(3), "second SIGTERM: exit took {took:?}");
        assert_eq!(st.code(), Some(0), "exit status after a second SIGTERM: {st}");
    }

    fn sigquit_finishes_inflight_download(e) {
        // SIGQUIT is a graceful stop like SIGTERM (nginx's "graceful
        // shutdown" signal), not a core dump: a download in flight finishes.
        let site = Site::new();
        let huge = site_with_huge(&site);
        let mut srv = start_or_skip!(e, "workers = 1\nshutdown_timeout = \"30s\"", &site.root);
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, first) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut pos = first.len();
        read_body_until(&mut s, &huge, &mut pos, 1 << 20, IO_TIMEOUT).unwrap();
        srv.signal(libc::SIGQUIT);
        assert!(srv.wait_stderr("stopping", Duration::from_secs(5)), "no `stopping` line after SIGQUIT");
        assert!(srv.is_running(), "tandem exited at SIGQUIT with a 64 MiB response in flight:\n{}", srv.stderr_text());
        read_body_until(&mut s, &huge, &mut pos, huge.len(), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("64 MiB download in flight at SIGQUIT: {e}"));
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("no exit after the last response finished");
        assert_eq!(st.code(), Some(0), "exit status after SIGQUIT: {st}\n{}", srv.stderr_text());
    }

    fn sigint_stops_gracefully(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, "shutdown_timeout = \"10s\"", &site.root);
        let mut idle = srv.connect();
        assert_status(&idle.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET /");
        let t0 = Instant::now();
        srv.signal(libc::SIGINT);
        // A silent keep-alive connection gets the grace (2 s) for one more
        // request, then is half-closed; the client closes its side on the FIN.
        idle.expect_closed("idle connection after SIGINT");
        let closed = t0.elapsed();
        drop(idle);
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("no exit within 10s of SIGINT");
        assert_eq!(st.code(), Some(0), "exit status after SIGINT: {st}");
        assert!(closed >= Duration::from_millis(1500), "the idle connection was closed after {closed:?}, before its grace");
        assert!(t0.elapsed() < Duration::from_secs(4), "SIGINT with only an idle connection took {:?}", t0.elapsed());
        assert!(TcpStream::connect(srv.addr()).is_err(), "port still accepts after exit");
    }

    fn sigterm_answers_next_request_on_idle_connection_with_close(e) {
        // A busy keep-alive client whose next request comes right after the
        // stop signal is answered, and learns of the close from the response.
        let site = Site::new();
        let mut srv = start_or_skip!(e, "workers = 1\nkeepalive_timeout = \"30s\"", &site.root);
        let mut c = srv.connect();
        assert_status(&c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n"), 200, "GET /style.css");
        srv.signal(libc::SIGTERM);
        // Once this is said, every worker has begun its drain.
        assert!(srv.wait_stderr("stopping: workers no longer accept", Duration::from_secs(5)),
            "no drain line after SIGTERM:\n{}", srv.stderr_text());
        let r = c.roundtrip(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 200, "GET /app.js on the kept-alive connection after SIGTERM");
        assert!(r.connection_has("close"), "the stopping worker's last response must say Connection: close:\n{}", r.describe());
        c.expect_closed("connection after its Connection: close response");
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("no exit after the last connection closed");
        assert_eq!(st.code(), Some(0), "exit status: {st}");
    }

    fn reload_whose_worker_fails_to_start_leaves_no_worker_behind(e) {
        // The second worker of the new generation cannot start (a thread
        // that cannot be spawned, forced by the test hook): the reload is
        // refused, the one new worker that did start is stopped, and the
        // current generation alone keeps serving.
        let site = Site::new();
        let opts = Launch {
            env: vec![("TANDEM_TEST_FAIL_WORKER_START".into(), "4".into())],
            ..Launch::default()
        };
        let Some(srv) = Server::launch(e, "workers = 2", &site.root, opts) else { return };
        let err = srv.reload(RELOAD_TIMEOUT).expect_err("a reload whose worker cannot start");
        assert!(err.contains("TANDEM_TEST_FAIL_WORKER_START"), "{err}");
        let threads = |name: &str| {
            std::fs::read_dir(format!("/proc/{}/task", srv.pid()))
                .unwrap()
                .flatten()
                .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
                .count()
        };
        assert_eq!((threads("tandem-w0"), threads("tandem-w1")), (1, 1), "worker threads after the refused reload");
        for _ in 0..8 {
            assert_status(&get(srv.addr(), "/"), 200, "GET / after the refused reload");
        }
        // A later reload (the hook fires once) starts a whole generation.
        srv.reload(RELOAD_TIMEOUT).expect("the next reload");
        assert_status(&get(srv.addr(), "/"), 200, "GET / after the next reload");
    }

    fn panicking_worker_is_replaced(e) {
        let site = Site::new();
        let opts = Launch {
            env: vec![
                ("TANDEM_TEST_PANIC_TARGET".into(), "/__panic".into()),
                ("RUST_BACKTRACE".into(), "1".into()),
            ],
            ..Launch::default()
        };
        let Some(mut srv) = Server::launch(e, "workers = 1", &site.root, opts) else { return };
        assert_status(&get(srv.addr(), "/"), 200, "GET / before the panic");
        // The only worker dies in the middle of a request (a bug, forced by the test hook).
        let mut c = srv.connect();
        c.send(b"GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n");
        let _ = c.read_to_close(CLOSE_TIMEOUT);
        assert!(srv.wait_stderr("worker 0 panicked: test hook", Duration::from_secs(5)),
            "no line about the dead worker:\n{}", srv.stderr_text());
        assert!(srv.stderr_text().contains("thread tandem-w0 panicked at src/files/mod.rs"),
            "the panic's place is not in the error log:\n{}", srv.stderr_text());
        // With RUST_BACKTRACE=1 the stack follows, its frames named.
        assert!(srv.stderr_text().contains("; backtrace:") && srv.stderr_text().contains("tandem::files::"),
            "no named backtrace in the error log:\n{}", srv.stderr_text());
        assert!(srv.wait_stderr("worker 0: replacement started", Duration::from_secs(5)),
            "no replacement:\n{}", srv.stderr_text());
        // The listener kept its place: the replacement serves, again and again.
        for i in 0..20 {
            let r = get(srv.addr(), "/style.css");
            assert_status(&r, 200, &format!("GET /style.css #{i} after the replacement"));
            assert_eq!(r.body_str(), STYLE_CSS);
        }
        // A second death is replaced too (after a back-off if it came quickly).
        let mut c = srv.connect();
        c.send(b"GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n");
        let _ = c.read_to_close(CLOSE_TIMEOUT);
        assert_status(&get(srv.addr(), "/"), 200, "GET / after the second panic");
        assert!(srv.wait_stderr_until(Duration::from_secs(5), |t| t.matches("replacement started").count() == 2),
            "{}", srv.stderr_text());
        // A third death right after the replacement started: the next one
        // waits out a back-off, and a stop during that wait still ends.
        let mut c = srv.connect();
        c.send(b"GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n");
        let _ = c.read_to_close(CLOSE_TIMEOUT);
        assert!(srv.wait_stderr_until(Duration::from_secs(5), |t| t.matches("worker 0 panicked").count() == 3),
            "{}", srv.stderr_text());
        let st = srv.terminate(EXIT_TIMEOUT);
        assert_eq!(st.code(), Some(0), "exit status: {st}\n{}", srv.stderr_text());
    }

    // ---------------------------------------------------------------- reopen

    fn sigusr1_reopens_logs(e) {
        let site = Site::new();
        let logdir = tempfile::tempdir().unwrap();
        let errlog = logdir.path().join("error.log");
        let extra = format!("error_log = {}\nworkers = 2", toml_str(&errlog.display().to_string()));
        let opts = Launch { tail: Some(errlog.clone()), ..Default::default() };
        let Some(mut srv) = Server::launch(e, &extra, &site.root, opts) else { return };
        let addr = srv.addr();
        let access = srv.access_log_path().to_path_buf();

        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut c = Conn::connect(addr);
                    let mut n = 0;
                    while !stop.load(Ordering::Acquire) {
                        let req = format!("GET /style.css?t={t}&n={n} HTTP/1.1\r\nHost: t\r\n\r\n");
                        let r = c.roundtrip(req.as_bytes());
                        assert_status(&r, 200, &req);
                        done.fetch_add(1, Ordering::AcqRel);
                        n += 1;
                    }
                })
            })
            .collect();
        let lines = |p: &Path| std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0);
        assert!(wait_until(Duration::from_secs(10), || lines(&access) >= 20), "access log got no 20 lines");
        let old_access = logdir.path().join("access.log.1");
        let old_err = logdir.path().join("error.log.1");
        std::fs::rename(&access, &old_access).unwrap();
        std::fs::rename(&errlog, &old_err).unwrap();
        srv.signal(libc::SIGUSR1);
        let new_err = wait_file(&errlog, Duration::from_secs(5), |t| t.contains("logs reopened"));
        let new_access = wait_until(Duration::from_secs(5), || lines(&access) >= 20);
        stop.store(true, Ordering::Release);
        for h in handles {
            h.join().expect("load thread");
        }
        let total = done.load(Ordering::Acquire);
        let st = srv.terminate(EXIT_TIMEOUT);
        assert!(st.success(), "exit after SIGTERM: {st}");
        assert!(new_err.is_some(), "no new error log with `logs reopened` at {} after SIGUSR1", errlog.display());
        assert!(new_access, "the new access log at {} got no 20 lines after SIGUSR1", access.display());

        let mut count = 0;
        for p in [&old_access, &access] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "{} ends inside a line", p.display());
            for l in text.lines() {
                let parsed = parse_combined(l).unwrap_or_else(|| panic!("{}: not a combined-format line: {l:?}", p.display()));
                assert_eq!(parsed.status, 200, "{l:?}");
                assert!(parsed.request.starts_with("GET /style.css?t="), "{l:?}");
                count += 1;
            }
        }
        assert!(lines(&old_access) >= 20, "renamed access log lost lines");
        assert_eq!(count, total, "access log lines across both files vs requests completed");
        let old_err_text = std::fs::read_to_string(&old_err).unwrap();
        assert!(old_err_text.contains("listening on"), "renamed error log:\n{old_err_text}");
        let new_err_text = std::fs::read_to_string(&errlog).unwrap();
        assert!(new_err_text.contains("stopped"), "later error-log lines went elsewhere:\n{new_err_text}");
    }

    // ------------------------------------------------------ -s and the pidfile

    fn signal_flag_reload_reopen_stop(e) {
        let site = Site::new();
        let other = site.base.join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("index.html"), "OTHER-ROOT\n").unwrap();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("pidfile = {}", toml_str(&pidfile.display().to_string()));
        let mut srv = start_or_skip!(e, &extra, &site.root);
        let pid = srv.pid();
        let text = wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n'))
            .unwrap_or_else(|| panic!("no pidfile at {}", pidfile.display()));
        assert_eq!(text.trim(), pid.to_string(), "pidfile contents");
        let cfg = srv.config_path().to_path_buf();

        // -s reload
        srv.write_config(&extra, &other);
        let out = tandem_cmd(&["-s", "reload"], &cfg);
        assert!(out.status.success(), "-s reload: {}\n{}", out.status, out.stderr);
        assert!(srv.wait_stderr("reloaded: ", RELOAD_TIMEOUT), "no `reloaded:` after -s reload");
        assert_eq!(body_of(srv.addr(), "/"), "OTHER-ROOT\n");

        // -s reopen
        let access = srv.access_log_path().to_path_buf();
        assert!(wait_file(&access, Duration::from_secs(5), |t| !t.is_empty()).is_some(), "no access log lines");
        std::fs::rename(&access, srv.tmp_dir().join("access.log.1")).unwrap();
        let out = tandem_cmd(&["-s", "reopen"], &cfg);
        assert!(out.status.success(), "-s reopen: {}\n{}", out.status, out.stderr);
        assert!(srv.wait_stderr("logs reopened", Duration::from_secs(5)), "no `logs reopened` after -s reopen");
        get(srv.addr(), "/index.html?after-reopen");
        assert!(
            wait_file(&access, Duration::from_secs(5), |t| t.contains("after-reopen")).is_some(),
            "the request after -s reopen is not in a new {}",
            access.display()
        );

        // -s stop
        let out = tandem_cmd(&["-s", "stop"], &cfg);
        assert!(out.status.success(), "-s stop: {}\n{}", out.status, out.stderr);
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("no exit after -s stop");
        assert_eq!(st.code(), Some(0), "exit status after -s stop");
        assert!(!pidfile.exists(), "pidfile {} still there after -s stop", pidfile.display());
        assert!(!piddir.path().join("tandem.pid.reload").exists(), "reload status file still there after -s stop");
    }

    fn signal_reload_reports_the_verdict(e) {
        let site = Site::new();
        let other = site.base.join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("index.html"), "OTHER-ROOT\n").unwrap();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("pidfile = {}", toml_str(&pidfile.display().to_string()));
        let srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n')).expect("pidfile");
        let cfg = srv.config_path().to_path_buf();

        // Took effect: exit 0, and the summary the server logged.
        srv.write_config(&extra, &other);
        let out = tandem_cmd(&["-s", "reload"], &cfg);
        assert_eq!(out.status.code(), Some(0), "-s reload: {}", out.stderr);
        let want = format!("reloaded: engine {e}, ");
        assert!(out.stdout.contains(&want) && out.stdout.contains(&format!("root {}", other.display())), "-s reload said:\n{}{}", out.stdout, out.stderr);
        assert_eq!(body_of(srv.addr(), "/"), "OTHER-ROOT\n", "served after -s reload returned");

        // Refused by the server, a runtime reason (a busy port): exit 1 with it.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_addr = busy.local_addr().unwrap();
        srv.write_config(&format!("{extra}\nlisten = [\"127.0.0.1:0\", \"{busy_addr}\"]"), &site.root);
        let out = tandem_cmd(&["-s", "reload"], &cfg);
        assert_eq!(out.status.code(), Some(1), "-s reload onto a busy port: {}", out.stderr);
        assert!(out.stderr.contains(&format!("listen {busy_addr}: address already in use")), "{}", out.stderr);
        assert!(out.stderr.contains("keeps its running config"), "{}", out.stderr);
        assert_eq!(body_of(srv.addr(), "/"), "OTHER-ROOT\n", "the refused reload changed the root");

        // Refused by the server over the config (a root that is not there): exit 2.
        let gone = site.base.join("gone");
        srv.write_config(&extra, &gone);
        let out = tandem_cmd(&["-s", "reload"], &cfg);
        assert_eq!(out.status.code(), Some(2), "-s reload with a missing root: {}", out.stderr);
        assert!(out.stderr.contains(&format!("root: {} does not exist", gone.display())), "{}", out.stderr);

        // A file that does not parse: refused before anything is signalled.
        let reloads = count_occurrences(&srv.stderr_text(), "reload");
        std::fs::write(&cfg, format!("{extra}\nworkers = true\n")).unwrap();
        let out = tandem_cmd(&["-s", "reload"], &cfg);
        assert_eq!(out.status.code(), Some(2), "-s reload with a broken file: {}", out.stderr);
        assert!(out.stderr.contains(&format!("{}:2: workers: expected", cfg.display())), "{}", out.stderr);
        assert_eq!(count_occurrences(&srv.stderr_text(), "reload"), reloads, "the server was signalled:\n{}", srv.stderr_text());
        drop(busy);
    }

    fn signal_stop_waits_for_the_exit(e) {
        // A response that cannot finish holds the stop for shutdown_timeout:
        // `-s stop` returns only once the server is gone.
        let site = Site::new();
        site_with_huge(&site);
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("pidfile = {}\nworkers = 1\nshutdown_timeout = \"1s\"\nsend_timeout = \"60s\"", toml_str(&pidfile.display().to_string()));
        let mut srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n')).expect("pidfile");
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, _) = read_head(&mut s, IO_TIMEOUT);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let t0 = Instant::now();
        let out = tandem_cmd(&["-s", "stop"], srv.config_path());
        let took = t0.elapsed();
        assert_eq!(out.status.code(), Some(0), "-s stop: {}", out.stderr);
        assert!(out.stdout.contains(&format!("tandem (pid {}) stopped", srv.pid())), "{}{}", out.stdout, out.stderr);
        assert!(took >= Duration::from_millis(800), "-s stop returned after {took:?}, before the server's shutdown_timeout of 1s ran out");
        // Gone (a zombie until we reap it) the moment -s stop returned.
        assert!(!pid_alive(srv.pid()), "tandem still running after -s stop returned");
        assert_eq!(srv.wait_exit(EXIT_TIMEOUT).and_then(|st| st.code()), Some(0));
        assert!(!pidfile.exists());
    }

    fn signal_stop_and_reopen_work_with_a_broken_config(e) {
        let site = Site::new();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("pidfile = {}", toml_str(&pidfile.display().to_string()));
        let mut srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n')).expect("pidfile");
        let cfg = srv.config_path().to_path_buf();
        // Broken since the start: a syntax error below the pidfile key.
        std::fs::write(&cfg, format!("{extra}\nroot = \n")).unwrap();
        let out = tandem_cmd(&["-s", "reload"], &cfg);
        assert_eq!(out.status.code(), Some(2), "-s reload with a broken config: {}", out.stderr);
        assert!(out.stderr.contains(&format!("{}:2:", cfg.display())), "{}", out.stderr);
        let out = tandem_cmd(&["-s", "reopen"], &cfg);
        assert_eq!(out.status.code(), Some(0), "-s reopen with a broken config: {}", out.stderr);
        assert!(out.stderr.contains(&format!("{}:2:", cfg.display())), "the config's error is still said: {}", out.stderr);
        assert!(srv.wait_stderr("logs reopened", Duration::from_secs(5)), "no `logs reopened`");
        // --pidfile alone, no config at all.
        let mut cmd = Command::new(tandem_bin());
        cmd.args(["-s", "stop", "--pidfile"]).arg(&pidfile);
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert_eq!(out.status.code(), Some(0), "--pidfile FILE -s stop: {}", out.stderr);
        assert_eq!(srv.wait_exit(EXIT_TIMEOUT).and_then(|st| st.code()), Some(0));
    }

    fn second_instance_with_same_pidfile_refuses(e) {
        let site = Site::new();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("pidfile = {}", toml_str(&pidfile.display().to_string()));
        let mut srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.trim() == srv.pid().to_string())
            .unwrap_or_else(|| panic!("pidfile does not hold pid {}", srv.pid()));
        // Same pidfile, another port (127.0.0.1:0 binds a fresh one).
        let cfg2 = piddir.path().join("second.toml");
        std::fs::write(&cfg2, compose_config(&format!("{extra}\naccess_log = \"off\""), &site.root, Path::new("/dev/null"))).unwrap();
        let mut cmd = Command::new(tandem_bin());
        cmd.args(["--engine", e, "-c"]).arg(&cfg2);
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert!(!out.status.success(), "a second instance with the same pidfile started (exit {})\n{}", out.status, out.stderr);
        let lower = out.stderr.to_lowercase();
        assert!(
            lower.contains("pidfile") || lower.contains("another tandem"),
            "the refusal does not mention the pidfile / another instance:\n{}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap_or_default().trim(), srv.pid().to_string(), "pidfile changed by the refused instance");
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML, "first instance after the second was refused");
        srv.assert_healthy("first instance");
        let st = srv.terminate(EXIT_TIMEOUT);
        assert!(st.success());
        assert!(!pidfile.exists(), "pidfile left behind after SIGTERM");
    }

    // ------------------------------------------------------------ daemon mode

    fn daemon_mode_detaches(e) {
        for how in ["--daemon", "daemon = true"] {
            let site = Site::new();
            let dir = tempfile::tempdir().unwrap();
            set_mode(dir.path(), 0o755);
            let port = free_port();
            let errlog = dir.path().join("error.log");
            let pidfile = dir.path().join("tandem.pid");
            let cfg = dir.path().join("tandem.toml");
            let mut text = format!(
                "listen = [\"127.0.0.1:{port}\"]\nroot = {}\npidfile = {}\nerror_log = {}\naccess_log = {}\nworkers = 1\n",
                toml_str(&site.root.display().to_string()),
                toml_str(&pidfile.display().to_string()),
                toml_str(&errlog.display().to_string()),
                toml_str(&dir.path().join("access.log").display().to_string()),
            );
            if how != "--daemon" {
                text.push_str(&format!("{how}\n"));
            }
            std::fs::write(&cfg, &text).unwrap();
            let mut cmd = Command::new(tandem_bin());
            cmd.args(["--engine", e, "-c"]).arg(&cfg);
            if how == "--daemon" {
                cmd.arg("--daemon");
            }
            let mut guard = PidGuard { pidfile: Some(pidfile.clone()) };
            let t0 = Instant::now();
            let out = run_with_timeout(cmd, EXIT_TIMEOUT);
            if out.status.code() == Some(2) && out.stderr.contains("io_uring") && out.stderr.contains("unavailable") && e == "io_uring" && !require_io_uring() {
                skip(&format!("io_uring unavailable: {}", out.stderr.trim()));
                return;
            }
            assert_eq!(out.status.code(), Some(0), "{how}: the launching command exit status\n{}", out.stderr);
            assert!(t0.elapsed() < Duration::from_secs(5), "{how}: the command took {:?} to return", t0.elapsed());
            let pidtext = wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n'))
                .unwrap_or_else(|| panic!("{how}: no pidfile; error log:\n{}", std::fs::read_to_string(&errlog).unwrap_or_default()));
            let dpid: u32 = pidtext.trim().parse().unwrap_or_else(|_| panic!("pidfile {pidtext:?}"));
            assert!(pid_alive(dpid), "{how}: pid {dpid} from the pidfile is not running");
            // Detached: another session than ours (and not the launched process).
            // SAFETY: getsid takes a plain pid.
            let (sid_daemon, sid_us) = unsafe { (libc::getsid(dpid as libc::pid_t), libc::getsid(0)) };
            assert!(sid_daemon > 0 && sid_daemon != sid_us, "{how}: daemon session {sid_daemon}, ours {sid_us}");
            let listen = format!("listening on 127.0.0.1:{port}");
            assert!(
                wait_file(&errlog, START_TIMEOUT, |t| t.contains(&listen)).is_some(),
                "{how}: no `{listen}` in the error log:\n{}",
                std::fs::read_to_string(&errlog).unwrap_or_default()
            );
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            assert_eq!(body_of(addr, "/"), INDEX_HTML, "{how}: GET / from the daemon");

            let out = tandem_cmd(&["-s", "stop"], &cfg);
            assert!(out.status.success(), "{how}: -s stop: {}\n{}", out.status, out.stderr);
            assert!(wait_pid_gone(dpid, EXIT_TIMEOUT), "{how}: daemon {dpid} still running 10s after -s stop");
            guard.disarm();
            assert!(!pidfile.exists(), "{how}: pidfile left after -s stop");
            assert!(TcpStream::connect(addr).is_err(), "{how}: port still accepts after -s stop");
            let log = std::fs::read_to_string(&errlog).unwrap_or_default();
            assert!(log.contains("stopped"), "{how}: error log lacks `stopped`:\n{log}");
            assert!(!log.contains("panicked"), "{how}: {log}");
        }
    }

    // ------------------------------------------------------------- privileges

    fn user_nobody_drops_privileges(e) {
        if !running_as_root() {
            skip("not running as root: no privileges to drop");
            return;
        }
        let Some(nobody) = uid_of_user("nobody") else {
            skip("no `nobody` user");
            return;
        };
        let site = Site::new();
        let srv = start_or_skip!(e, "user = \"nobody\"\naccess_log = \"off\"\nworkers = 2", &site.root);
        let pid = srv.pid();
        assert_eq!(uid_of_pid(&pid.to_string()), Some(nobody), "uid of tandem with user = nobody");
        // Every thread (the workers included).
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let tid = t.file_name().to_string_lossy().into_owned();
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let uids: Vec<&str> = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("").split_whitespace().skip(1).collect();
            assert!(uids.iter().all(|u| *u == nobody.to_string()), "thread {tid}: Uid {uids:?}, want all {nobody}");
        }
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML);
        assert!(!srv.stderr_text().contains("running as root"), "warning about root with user set:\n{}", srv.stderr_text());
    }

    fn user_keeps_its_supplementary_groups(e) {
        // A root only a supplementary group of `user` may read (a key in
        // `ssl-cert`, say) is served: tandem takes the user's groups as
        // initgroups does (nginx's way), not its primary group alone.
        if !running_as_root() {
            skip("not running as root: no privileges to drop");
            return;
        }
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        // (user, group id) of a membership listed in the group database.
        let member = groups.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let user = f.get(3)?.split(',').find(|u| !u.is_empty())?;
            uid_of_user(user)?;
            Some((user.to_string(), f[2].parse::<u32>().ok()?))
        });
        let Some((user, gid)) = member else {
            skip("no user with a supplementary group on this machine");
            return;
        };
        let site = Site::new();
        std::os::unix::fs::chown(&site.root, Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(&site.root, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
        let config = format!("user = {}\naccess_log = \"off\"", toml_str(&user));
        let srv = start_or_skip!(e, &config, &site.root);
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML, "as {user}, through group {gid}");
    }

    fn root_without_user_warns(e) {
        if !running_as_root() {
            skip("not running as root");
            return;
        }
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let text = srv.stderr_text();
        let warned = text.lines().any(|l| l.contains("warn") && l.contains("user"));
        assert!(warned, "running as root without `user`: no warning mentioning `user`:\n{text}");
        assert_eq!(uid_of_pid(&srv.pid().to_string()), Some(0));
        // `group` alone changes nothing: the warning says so.
        let srv = start_or_skip!(e, "group = \"nogroup\"", &site.root);
        let text = srv.stderr_text();
        assert!(
            text.lines().any(|l| l.contains("warn") && l.contains("`group = \"nogroup\"` takes effect with `user` only")),
            "`group` without `user`: no warning naming it:\n{text}"
        );
        assert_eq!(uid_of_pid(&srv.pid().to_string()), Some(0));
    }

    fn user_logs_only_root_can_write_are_reopened(e) {
        // Started as root with `user`: the logs are opened as root at start,
        // and reopened (a reload, SIGUSR1) by the helper that keeps root's
        // rights, so a log directory only root can write is fine: -t and the
        // start accept it, and a reload and a reopen after a rotation land
        // the later lines in the new file. (This used to be refused, exit 2,
        // because the reopen ran as the user and failed.)
        let Some(nobody) = uid_of_user("nobody").filter(|_| running_as_root()) else {
            skip("needs root and a `nobody` user");
            return;
        };
        let site = Site::new();
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let log = dir.path().join("access.log");
        let extra = format!("user = \"nobody\"\naccess_log = {}", toml_str(&log.display().to_string()));
        let cfg = dir.path().join("t.toml");
        std::fs::write(&cfg, compose_config(&extra, &site.root, &log)).unwrap();
        let out = tandem_cmd(&["-t"], &cfg);
        assert_eq!(out.status.code(), Some(0), "-t: {}", out.stderr);
        let srv = start_or_skip!(e, &extra, &site.root);
        assert_eq!(uid_of_pid(&srv.pid().to_string()), Some(nobody));
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML);
        assert!(wait_file(&log, Duration::from_secs(5), |t| t.contains("\"GET / HTTP/1.1\" 200")).is_some(), "no access log line with user = nobody");
        srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload with user = nobody: {l}"));
        std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
        // (The reload said `logs reopened` too: wait for one more.)
        let n = count_occurrences(&srv.stderr_text(), "logs reopened");
        srv.signal(libc::SIGUSR1);
        assert!(srv.wait_stderr_until(Duration::from_secs(5), |t| count_occurrences(t, "logs reopened") > n), "no `logs reopened`");
        get(srv.addr(), "/index.html?after-reopen");
        assert!(
            wait_file(&log, Duration::from_secs(5), |t| t.contains("after-reopen")).is_some(),
            "the request after a reload and a reopen is not in a new access log:\n{}",
            srv.stderr_text()
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&log).unwrap().uid(), 0, "the reopened log was created by root");
        assert!(!srv.stderr_text().contains(" error "), "{}", srv.stderr_text());
    }

    fn user_pidfile_removed_on_stop(e) {
        if !running_as_root() || uid_of_user("nobody").is_none() {
            skip("needs root and a `nobody` user");
            return;
        }
        let site = Site::new();
        let piddir = tempfile::tempdir().unwrap();
        set_mode(piddir.path(), 0o755);
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("user = \"nobody\"\naccess_log = \"off\"\npidfile = {}", toml_str(&pidfile.display().to_string()));
        let mut srv = start_or_skip!(e, &extra, &site.root);
        assert!(wait_file(&pidfile, Duration::from_secs(5), |t| t.trim() == srv.pid().to_string()).is_some(), "pidfile");
        let out = tandem_cmd(&["-s", "stop"], srv.config_path());
        assert!(out.status.success(), "-s stop: {}", out.stderr);
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("no exit after -s stop");
        assert_eq!(st.code(), Some(0));
        assert!(!pidfile.exists(), "pidfile {} (in a root-owned directory) left behind after -s stop with user = nobody", pidfile.display());
        assert!(!piddir.path().join("tandem.pid.reload").exists(), "reload status file left behind after -s stop with user = nobody");
    }

    // ---------------------------------------------------------------- systemd

    fn sd_notify_ready_reloading_stopping(e) {
        use std::os::unix::net::UnixDatagram;
        let site = Site::new();
        let dir = tempfile::tempdir().unwrap();
        let sock_path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let opts = Launch {
            env: vec![("NOTIFY_SOCKET".into(), sock_path.display().to_string())],
            ..Default::default()
        };
        let Some(mut srv) = Server::launch(e, "", &site.root, opts) else { return };
        let mut got = Vec::new();
        let ready = |m: &str| m.lines().any(|l| l == "READY=1");
        assert!(recv_notify_until(&sock, &mut got, Duration::from_secs(5), ready), "no READY=1; got {got:?}");
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML, "serving at READY=1");

        // A good reload, then a failed one: each RELOADING=1 + MONOTONIC_USEC, then READY=1.
        for good in [true, false] {
            if !good {
                std::fs::write(srv.config_path(), "bogus = 1\n").unwrap();
            }
            let before = monotonic_usec_now();
            srv.signal(libc::SIGHUP);
            assert!(recv_notify_until(&sock, &mut got, Duration::from_secs(5), ready), "no READY=1 after SIGHUP (good = {good}); got {got:?}");
            let after = monotonic_usec_now();
            let reloading = got.iter().rev().find(|m| m.lines().any(|l| l == "RELOADING=1"))
                .unwrap_or_else(|| panic!("no RELOADING=1 before READY=1; got {got:?}"));
            let usec: u64 = reloading
                .lines()
                .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
                .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
                .parse()
                .unwrap_or_else(|_| panic!("MONOTONIC_USEC not a number: {reloading:?}"));
            assert!(usec >= before && usec <= after, "MONOTONIC_USEC={usec} outside [{before}, {after}] (CLOCK_MONOTONIC around the SIGHUP)");
        }
        assert_eq!(body_of(srv.addr(), "/"), INDEX_HTML);
        srv.signal(libc::SIGTERM);
        let stopping = |m: &str| m.lines().any(|l| l == "STOPPING=1");
        assert!(recv_notify_until(&sock, &mut got, Duration::from_secs(5), stopping), "no STOPPING=1 after SIGTERM; got {got:?}");
        let st = srv.wait_exit(EXIT_TIMEOUT).expect("exit after SIGTERM");
        assert_eq!(st.code(), Some(0));
        let kinds: Vec<&str> = got
            .iter()
            .flat_map(|m| m.lines())
            .filter(|l| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(l))
            .collect();
        assert_eq!(
            kinds,
            ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
            "sd_notify sequence; all messages: {got:?}"
        );
    }

    fn sd_notify_abstract_socket(e) {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
        let name = format!("tandem-test-{}-{}", std::process::id(), e);
        let sock = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let site = Site::new();
        let opts = Launch { env: vec![("NOTIFY_SOCKET".into(), format!("@{name}"))], ..Default::default() };
        let Some(_srv) = Server::launch(e, "", &site.root, opts) else { return };
        let mut got = Vec::new();
        assert!(
            recv_notify_until(&sock, &mut got, Duration::from_secs(5), |m| m.lines().any(|l| l == "READY=1")),
            "no READY=1 on abstract socket @{name}; got {got:?}"
        );
    }

    fn socket_activation_serves_passed_socket(e) {
        use std::os::fd::AsRawFd;
        let site = Site::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let passed = listener.local_addr().unwrap();
        let configured = free_port();
        let opts = Launch { listen_fd: Some(listener.as_raw_fd()), ..Default::default() };
        let extra = format!("listen = [\"127.0.0.1:{configured}\"]");
        let Some(srv) = Server::launch(e, &extra, &site.root, opts) else { return };
        drop(listener); // from now on only the server holds it
        assert_eq!(srv.addr(), passed, "announced address vs the passed socket:\n{}", srv.stderr_text());
        assert_eq!(body_of(passed, "/"), INDEX_HTML, "GET / on the passed socket");
        assert!(
            TcpStream::connect(("127.0.0.1", configured)).is_err(),
            "the configured address 127.0.0.1:{configured} was bound although a socket was passed"
        );
        // The passed socket survives a reload.
        srv.reload(RELOAD_TIMEOUT).expect("reload with a passed socket");
        assert_eq!(body_of(passed, "/"), INDEX_HTML, "GET / on the passed socket after a reload");
    }
}

// ------------------------------------------------------- engine-independent

#[test]
fn signal_flag_without_pidfile_is_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nopid.toml");
    std::fs::write(&cfg, "listen = [\"127.0.0.1:0\"]\nroot = \"/tmp\"\n").unwrap();
    for what in ["stop", "reload", "reopen"] {
        let out = tandem_cmd(&["-s", what], &cfg);
        assert_eq!(
            out.status.code(),
            Some(2),
            "-s {what} without a pidfile: {}\n{}",
            out.status,
            out.stderr
        );
        assert!(
            out.stderr.contains("pidfile"),
            "-s {what} without a pidfile: message should mention `pidfile`:\n{}",
            out.stderr
        );
    }
    let out = tandem_cmd(&["-s", "explode"], &cfg);
    assert_eq!(
        out.status.code(),
        Some(2),
        "-s explode: {}\n{}",
        out.status,
        out.stderr
    );
}

/// A config in `dir` whose pidfile (nobody holds its lock) names `pid`.
fn stale_pidfile_config(dir: &Path, pid: u32) -> PathBuf {
    let pidfile = dir.join("stale.pid");
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let cfg = dir.join("stale.toml");
    std::fs::write(
        &cfg,
        format!("pidfile = {}\n", toml_str(&pidfile.display().to_string())),
    )
    .unwrap();
    cfg
}

#[test]
fn signal_flag_with_stale_pidfile_fails() {
    let dir = tempfile::tempdir().unwrap();
    // A pid that is not running: spawn and reap a short-lived process.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let cfg = stale_pidfile_config(dir.path(), dead);
    let out = tandem_cmd(&["-s", "stop"], &cfg);
    assert!(
        !out.status.success(),
        "-s stop with a pidfile naming a dead pid {dead} succeeded"
    );
    assert!(
        out.stderr.contains(&dead.to_string()) || out.stderr.contains("pidfile"),
        "{}",
        out.stderr
    );
}

#[test]
fn signal_flag_never_signals_a_stranger_named_by_a_stale_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    // A live process that is not tandem, named by a pidfile nobody holds.
    let mut stranger = Command::new("sleep").arg("30").spawn().unwrap();
    let cfg = stale_pidfile_config(dir.path(), stranger.id());
    for what in ["stop", "reload", "reopen"] {
        let out = tandem_cmd(&["-s", what], &cfg);
        assert_eq!(
            out.status.code(),
            Some(1),
            "-s {what} with a stale pidfile: {}\n{}",
            out.status,
            out.stderr
        );
        assert!(
            out.stderr.contains("no tandem is running")
                && out
                    .stderr
                    .contains(&format!("stale.pid names pid {}", stranger.id()))
                && out.stderr.contains("nothing was signalled"),
            "-s {what}: {}",
            out.stderr
        );
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "-s {what} signalled the unrelated pid {}",
            stranger.id()
        );
    }
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn systemd_units_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        skip("systemd-analyze not installed (Debian package `systemd`)");
        return;
    };
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(units.join("tandem.service")).unwrap();
    assert!(
        service.lines().any(|l| l.starts_with("ExecStart=")),
        "tandem.service has no ExecStart="
    );
    let service: String = service
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!("ExecStart={} -c /etc/tandem/tandem.toml\n", tandem_bin())
            } else if l.starts_with("Exec") {
                format!("{}\n", l.replace("/usr/local/bin/tandem", tandem_bin()))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(dir.path().join("tandem.service"), service).unwrap();
    std::fs::copy(
        units.join("tandem.socket"),
        dir.path().join("tandem.socket"),
    )
    .unwrap();
    let mut cmd = Command::new(analyze);
    cmd.arg("verify")
        .arg(dir.path().join("tandem.service"))
        .arg(dir.path().join("tandem.socket"));
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("tandem.service") || l.contains("tandem.socket"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// What the process's descriptors name, those naming a file under `root`
/// left out.
fn fds_beside_root(pid: u32, root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| !t.starts_with(root))
                .collect()
        })
        .unwrap_or_default()
}
