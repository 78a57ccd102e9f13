//! TLS and HTTP/2 under a mixed soak, both engines. Well-behaved clients
//! (h2load over TLS with ALPN h2, h2load over h2c, wrk over https) must see
//! no failed request while hostile ones come and go: handshakes cut by a
//! reset at three points, TLS downloads cut by a reset or ended with
//! close_notify, HTTP/2 streams reset after their first DATA and the
//! connection used again, clients that never read (HTTP/1.1 over TLS and
//! h2c), plain HTTP and garbage sent to the TLS port, a broken h2c preface.
//! Meanwhile the server reloads every 3 s with a new certificate and key,
//! on 1 worker and then on 2. Afterwards the descriptors, threads and
//! connections come back to where they were, memory does not grow, and an
//! HTTP/2 request over TLS is still answered.
//!
//! The plaintext soak (tests/soak.rs) has the same checks for HTTP/1.1;
//! this one is for the TLS and HTTP/2 layers' ends of connections, which
//! the hostile clients make happen at every point they can. Needs h2load
//! (nghttp2-client) and wrk; skips without them.

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::h2::{
    CANCEL, END_HEADERS, END_STREAM, H2, H2C, H2load, HEADERS, PREFACE, RST_STREAM, SETTINGS,
    TlsCert, encode_fields, frame_bytes, parse_h2load, settings_payload,
};
use common::tls::any_cert_client;
use common::*;

/// How long the soak runs (after a warm-up of 2 s).
const SECS: u64 = 15;
/// h2load per run: connections and streams per connection.
const H2_CONNS: u64 = 6;
const H2_STREAMS: u64 = 8;

/// h2load runs of `-n 2000` against `urls`, one after the other, until
/// `stop`: each run's figures and its output.
fn h2load_loop(urls: Vec<String>, stop: Arc<AtomicBool>) -> JoinHandle<Vec<(H2load, String)>> {
    std::thread::spawn(move || {
        let mut runs = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let o = Command::new("h2load")
                .args([
                    "-n",
                    "2000",
                    "-c",
                    &H2_CONNS.to_string(),
                    "-m",
                    &H2_STREAMS.to_string(),
                ])
                .args(&urls)
                .stdin(Stdio::null())
                .output()
                .expect("run h2load");
            let out = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            let run = parse_h2load(&out).unwrap_or_else(|| panic!("h2load output:\n{out}"));
            runs.push((run, out));
        }
        runs
    })
}

/// A rustls client that takes any certificate (it is renewed under the
/// load) and offers `alpn`.
fn client(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut c = (*any_cert_client()).clone();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(c)
}

fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection whose handshake is done.
fn tls(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> io::Result<TlsStream> {
    let name = rustls::pki_types::ServerName::try_from("soak.test").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp(addr)?);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Read and drop what arrives until `n` bytes came, EOF, an error or
/// `limit` passed.
fn drain(r: &mut impl Read, n: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    let mut buf = [0u8; 16384];
    while got < n && Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(_) => break,
        }
    }
    got
}

/// Keep a connection open (unread) for `d`, or until `stop`: a stimulus
/// (a client that holds its connection), not a wait for a condition.
fn hold(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50)); // the hold's granularity
    }
}

/// What a hostile client does on turn `i`; errors are the point, not failures.
fn hostile(
    kind: &str,
    i: u64,
    tls_at: SocketAddr,
    h2c_at: SocketAddr,
    stop: &AtomicBool,
) -> io::Result<()> {
    let h1 = client(&[b"http/1.1"]);
    let h2 = client(&[b"h2"]);
    match kind {
        // A handshake cut by a reset: after half a ClientHello, after the
        // whole one (the server's flight on its way), or once complete.
        "rst-handshake" => {
            let name = rustls::pki_types::ServerName::try_from("soak.test").unwrap();
            let mut conn =
                rustls::ClientConnection::new(h2.clone(), name).map_err(io::Error::other)?;
            let mut hello = Vec::new();
            conn.write_tls(&mut hello)?;
            let mut s = tcp(tls_at)?;
            match i % 3 {
                0 => s.write_all(&hello[..hello.len() / 2])?,
                1 => {
                    s.write_all(&hello)?;
                    drain(&mut s, 1, Duration::from_millis(500));
                }
                _ => {
                    drop(s);
                    let t = tls(tls_at, &h2)?;
                    set_linger_zero(&t.sock);
                    return Ok(());
                }
            }
            set_linger_zero(&s);
        }
        // A large download over TLS, cut after 64 KiB by a reset, or by
        // close_notify and a FIN (then read what the server still sends).
        "tls-cut" => {
            let mut t = tls(tls_at, &h1)?;
            t.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")?;
            t.flush()?;
            drain(&mut t, 64 * 1024, Duration::from_secs(2));
            if i.is_multiple_of(2) {
                set_linger_zero(&t.sock);
            } else {
                t.conn.send_close_notify();
                t.conn.write_tls(&mut t.sock)?;
                t.sock.shutdown(Shutdown::Write)?;
                drain(&mut t.sock, usize::MAX, Duration::from_secs(3));
            }
        }
        // HTTP/2 over TLS: eight streams for big.bin, each reset once the
        // first DATA arrived, then one more request on the same connection.
        "h2-reset" => {
            let mut t = tls(tls_at, &h2)?;
            let mut out = PREFACE.to_vec();
            out.extend(frame_bytes(SETTINGS, 0, 0, &settings_payload(&[(0x2, 0)])));
            for k in 0..8u32 {
                out.extend(request(2 * k + 1, "https", "/big.bin"));
            }
            t.write_all(&out)?;
            t.flush()?;
            drain(&mut t, 16 * 1024, Duration::from_secs(2));
            let mut rst = Vec::new();
            for k in 0..8u32 {
                rst.extend(frame_bytes(RST_STREAM, 0, 2 * k + 1, &CANCEL.to_be_bytes()));
            }
            rst.extend(request(17, "https", "/"));
            t.write_all(&rst)?;
            t.flush()?;
            drain(&mut t, 1 << 20, Duration::from_millis(300 + 100 * (i % 5)));
        }
        // Clients that ask for a lot and never read: HTTP/1.1 over TLS
        // (four pipelined big.bin) or h2c (eight streams), held 1-2 s, then
        // closed with a FIN or a reset.
        "never-read" => {
            let hold_for = Duration::from_millis(1000 + 250 * (i % 5));
            if i.is_multiple_of(2) {
                let mut t = tls(tls_at, &h1)?;
                t.write_all(&b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4))?;
                t.flush()?;
                hold(hold_for, stop);
                if i.is_multiple_of(4) {
                    set_linger_zero(&t.sock);
                }
            } else {
                let mut s = tcp(h2c_at)?;
                let mut out = PREFACE.to_vec();
                out.extend(frame_bytes(
                    SETTINGS,
                    0,
                    0,
                    &settings_payload(&[(0x4, 1 << 24)]),
                ));
                for k in 0..8u32 {
                    out.extend(request(2 * k + 1, "http", "/big.bin"));
                }
                s.write_all(&out)?;
                hold(hold_for, stop);
                if i % 4 == 1 {
                    set_linger_zero(&s);
                }
            }
        }
        // Plain HTTP or garbage to the TLS port; a broken preface to h2c.
        "garbage" => {
            let (at, bytes): (SocketAddr, Vec<u8>) = match i % 3 {
                0 => (tls_at, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
                1 => (tls_at, pseudo_random(700, 0x6a4b + i)),
                _ => (
                    h2c_at,
                    [
                        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".as_slice(),
                        &pseudo_random(64, i),
                    ]
                    .concat(),
                ),
            };
            let mut s = tcp(at)?;
            s.write_all(&bytes)?;
            drain(&mut s, usize::MAX, Duration::from_secs(3));
        }
        other => unreachable!("{other}"),
    }
    Ok(())
}

/// A GET of `scheme` `path` on stream `id` (HEADERS with END_STREAM).
fn request(id: u32, scheme: &str, path: &str) -> Vec<u8> {
    let block = encode_fields(&[
        (":method", "GET"),
        (":scheme", scheme),
        (":authority", "t"),
        (":path", path),
    ]);
    frame_bytes(HEADERS, END_HEADERS | END_STREAM, id, &block)
}

/// The hostile clients, each kind on its own thread until `stop`: turns done per kind.
fn hostiles(
    tls_at: SocketAddr,
    h2c_at: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Vec<(&'static str, JoinHandle<u64>)> {
    [
        "rst-handshake",
        "tls-cut",
        "h2-reset",
        "never-read",
        "never-read",
        "garbage",
    ]
    .into_iter()
    .map(|kind| {
        let stop = stop.clone();
        let h = std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = hostile(kind, i, tls_at, h2c_at, &stop);
                i += 1;
            }
            i
        });
        (kind, h)
    })
    .collect()
}

/// One soak at a time: each wants the whole 2-core machine.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn soak(e: &str) {
    let _turn = heavy();
    for tool in ["h2load", "wrk"] {
        if !on_path(tool) {
            return skip(&format!("{tool} not installed"));
        }
    }
    let site = Site::new();
    site.write("mid.bin", &pseudo_random(32 * 1024 + 17, 0x5eed_0001));
    let certs = tempfile::tempdir().unwrap();
    let cert = Mutex::new(TlsCert::new(certs.path()));
    let cfg_for = |workers: usize| {
        format!(
            "workers = {workers}\n{H2C}\naccess_log = \"off\"\nmetrics_listen = [\"127.0.0.1:0\"]\n\
             shutdown_timeout = \"30s\"\nkeepalive_timeout = \"30s\"\nsend_timeout = \"3s\"\n\
             header_timeout = \"3s\"\n{}",
            cert.lock().unwrap().config()
        )
    };
    let Some(mut srv) = Server::start(e, &cfg_for(2), &site.root) else {
        return;
    };
    let tls_at = common::h2::tls_addr(&srv);
    let h2c_at = srv.addr();
    let pid = srv.pid();
    let fd_start = fd_count(pid);
    let open = |srv: &Server| srv.metric("tandem_connections_open");
    let open_start = open(&srv);
    let mut problems: Vec<String> = Vec::new();

    // Warm-up: every hostile kind for 2 s, then the baseline.
    let stop = Arc::new(AtomicBool::new(false));
    let warm = hostiles(tls_at, h2c_at, stop.clone());
    let t_warm = Instant::now();
    while t_warm.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50)); // warm-up length, not a wait
    }
    stop.store(true, Ordering::Relaxed);
    for (_, h) in warm {
        h.join().expect("hostile client thread");
    }
    let fd_base = match wait_fd_count_at_most(pid, fd_start, Duration::from_secs(10)) {
        Ok(n) | Err(n) => n,
    };
    if fd_base > fd_start + 4 {
        problems.push(format!(
            "{fd_base} descriptors after the warm-up, {fd_start} at the start:\n{}",
            fd_listing(pid)
        ));
    }
    let rss_base = rss_kib(pid);
    let threads_base = thread_count(pid);

    // The soak.
    let stop = Arc::new(AtomicBool::new(false));
    let https = format!("https://127.0.0.1:{}", tls_at.port());
    let plain = format!("http://127.0.0.1:{}", h2c_at.port());
    let urls = |base: &str| {
        ["/", "/style.css", "/mid.bin", "/app.js"]
            .map(|p| format!("{base}{p}"))
            .to_vec()
    };
    let h2_tls = h2load_loop(urls(&https), stop.clone());
    let h2_clear = h2load_loop(urls(&plain), stop.clone());
    let wrk = Command::new("wrk")
        .args([
            "-t1",
            "-c8",
            "-d",
            &format!("{SECS}s"),
            "--timeout",
            "5s",
            &format!("{https}/mid.bin"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wrk");
    let bad = hostiles(tls_at, h2c_at, stop.clone());
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(SECS);
    let mut reloads = 0u64;
    let (mut peak_fds, mut peak_rss) = (0, 0);
    let ok = |srv: &Server| srv.metric("tandem_requests_total{code=\"2xx\"}");
    while Instant::now() < end {
        // A reload once 500 more requests were answered, at least 3 s apart.
        let (before, next) = (ok(&srv), Instant::now() + Duration::from_secs(3));
        while Instant::now() < next.min(end) || (ok(&srv) < before + 500 && Instant::now() < end) {
            peak_fds = peak_fds.max(fd_count(pid));
            peak_rss = peak_rss.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100)); // sampling interval
        }
        if Instant::now() >= end {
            break;
        }
        let workers = if t0.elapsed() < Duration::from_secs(SECS / 2) {
            1
        } else {
            2
        };
        *cert.lock().unwrap() = TlsCert::new(certs.path());
        srv.write_config(&cfg_for(workers), &site.root);
        reloads += 1;
        if let Err(err) = srv.reload(Duration::from_secs(10)) {
            problems.push(format!("reload #{reloads}: {err}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut turns = Vec::new();
    for (kind, h) in bad {
        turns.push((kind, h.join().expect("hostile client thread")));
    }
    let wrk = wrk.wait_with_output().expect("wrk");
    let wrk_report =
        String::from_utf8_lossy(&wrk.stdout).into_owned() + &String::from_utf8_lossy(&wrk.stderr);
    let runs = [
        ("TLS h2", h2_tls.join().expect("h2load")),
        ("h2c", h2_clear.join().expect("h2load")),
    ];
    let soak_time = t0.elapsed();

    // The well-behaved clients: no failed request. A run may leave out
    // only what a GOAWAY at a reload left unstarted on its connections.
    let mut answered = 0;
    for (what, list) in &runs {
        if list.is_empty() {
            problems.push(format!("{what}: no h2load run finished"));
        }
        for (r, out) in list {
            answered += r.succeeded;
            if r.non_2xx > 0 || r.succeeded > r.done || r.done > r.started {
                problems.push(format!("{what}: a run with failed requests:\n{out}"));
            } else if r.started - r.succeeded > H2_CONNS * H2_STREAMS {
                problems.push(format!(
                    "{what}: a run lost {} started requests:\n{out}",
                    r.started - r.succeeded
                ));
            }
        }
    }
    let wrk_requests: u64 = wrk_report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    if !wrk.status.success()
        || wrk_requests < 100
        || wrk_report.contains("Socket errors")
        || wrk_report.contains("Non-2xx")
    {
        problems.push(format!("wrk over https:\n{wrk_report}"));
    }
    if answered < 2000 {
        problems.push(format!(
            "only {answered} HTTP/2 requests answered: the load did not run"
        ));
    }
    if reloads < 2 {
        problems.push(format!("only {reloads} reloads under the load"));
    }
    for (kind, n) in &turns {
        if *n < 3 {
            problems.push(format!("the {kind} client made only {n} turns"));
        }
    }

    // Everything closed: connections, descriptors, threads back; memory flat.
    let t_settle = Instant::now();
    let open_ok = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = open(&srv);
            if n <= open_start {
                break Ok(n);
            }
            if Instant::now() >= deadline {
                break Err(n);
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval
        }
    };
    let settled = Settled::wait(pid, fd_base, threads_base);
    let rss_after = settled.rss_kib;
    note(&format!(
        "engine {e}: {answered} h2load requests and {wrk_requests} wrk requests in {soak_time:.1?}, {reloads} reloads; \
         hostile turns {turns:?}; fds {fd_start} at start, {fd_base} warm, peak {peak_fds}, {:?} after; \
         RSS {rss_base} KiB warm, peak {peak_rss} KiB, {rss_after} KiB after; connections open {open_ok:?} \
         ({open_start} at start); settled in {:.1?}",
        settled.fds,
        t_settle.elapsed()
    ));
    if let Err(n) = open_ok {
        problems.push(format!(
            "{n} connections still open 15 s after the load ({open_start} at the start)"
        ));
    }
    problems.extend(settled.problems(pid, fd_base, threads_base, rss_base, 24));

    // Still serving HTTP/2 over TLS with the last certificate, then a clean stop.
    if srv.is_running() {
        let cfg = cert.lock().unwrap().client(&[b"h2"]);
        let mut c = H2::connect_tls(tls_at, cfg);
        let r = c.get("/", &[]);
        if r.status != 200 || r.body != INDEX_HTML.as_bytes() {
            problems.push(format!("final GET / over TLS h2:\n{}", r.describe()));
        }
        drop(c);
    }
    if srv.stderr_text().contains("panicked") {
        problems.push("the server printed a panic".into());
    }
    let st = srv.terminate(Duration::from_secs(20));
    if !st.success() {
        problems.push(format!("exit {st:?}"));
    }
    assert!(
        problems.is_empty(),
        "engine {e}:\n{}\n--- stderr (tail) ---\n{}",
        problems.join("\n"),
        {
            let t = srv.stderr_text();
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
    );
}

engine_tests! {
    fn tls_and_h2_soak_with_hostile_clients_and_reloads(e) {
        soak(e);
    }
}
