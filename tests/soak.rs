//! Sustained load: no request may fail across reloads and a graceful stop,
//! and a mixed soak (keep-alive, pipelining, clients cutting responses with
//! FIN or RST, slow readers, files replaced and truncated under the load,
//! reloads between 1 and 2 workers) after which descriptors and memory come
//! back to where they were.
//!
//! The tests of this file take turns (one lock): each wants the whole
//! 2-core machine for its numbers to mean something.

#[macro_use]
mod common;

use common::load::{Group, Load, LoadConfig, Mode, Summary, Target};
use common::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One heavy test at a time in this binary.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn bytes(s: &str) -> Arc<Vec<u8>> {
    Arc::new(s.as_bytes().to_vec())
}

/// The standard site's small files, checked exactly.
fn small_targets() -> Vec<Target> {
    vec![
        Target::exact("/", bytes(INDEX_HTML)),
        Target::exact("/style.css", bytes(STYLE_CSS)),
        Target::exact("/app.js", bytes(APP_JS)),
        Target::exact("/logo.png", Arc::new(png_bytes())),
        Target::exact("/sub/page.html", bytes("<p>SUB-PAGE</p>")),
        Target::exact("/hello%20world.txt", bytes("HELLO-SPACE")),
        Target::status("/no-such-file.txt", 404, bytes(NOT_FOUND_HTML)),
    ]
}

fn reload_checked(srv: &Server, workers: usize, problems: &mut Vec<String>, what: &str) {
    match srv.reload(RELOAD_TIMEOUT) {
        Ok(line) => {
            if !line.contains(&format!("{workers} worker(s)")) {
                problems.push(format!(
                    "{what}: `reloaded` line {line:?} lacks `{workers} worker(s)`"
                ));
            }
        }
        Err(line) => problems.push(format!("{what} failed: {line}")),
    }
}

// ---------------------------------------------------------------------------
// Zero failed requests across reloads and a graceful stop
// ---------------------------------------------------------------------------

/// Responses to aim for (measured: well within reach of the debug build on
/// 2 cores in a few seconds per engine).
const GOAL: u64 = 40_000;
/// Below this the run says nothing: the load did not really run.
const FLOOR: u64 = 5_000;

fn zero_failures(e: &str) {
    let _turn = heavy();
    let t_test = Instant::now();
    let site = Site::new();
    let mid = Arc::new(pseudo_random(32 * 1024 + 17, 0x5eed_0001));
    let large = Arc::new(pseudo_random(256 * 1024 + 3, 0x5eed_0002));
    let huge = Arc::new(stamped_blocks(16));
    site.write("mid.bin", &mid);
    site.write("large.bin", &large);
    site.write("huge.bin", &huge);
    let extra = "workers = 2\nshutdown_timeout = \"10s\"\nkeepalive_timeout = \"30s\"";
    let Some(mut srv) = Server::start(e, extra, &site.root) else {
        return;
    };
    let mut targets = small_targets();
    targets.push(Target::exact("/mid.bin", mid));
    targets.push(Target::exact("/large.bin", large));
    // 36 connections as fast as they go, and 4 reading a 16 MiB file
    // slowly through a small receive buffer: their responses are still
    // being sent when the reloads and the stop come.
    let slow = Mode::SlowReader {
        chunk: 16 * 1024,
        pause: Duration::from_millis(2),
        rcvbuf: 32 * 1024,
    };
    let mut cfg = LoadConfig::new(
        srv.addr(),
        vec![
            Group::new("keepalive", 36, Mode::KeepAlive, targets),
            Group::new("slow", 4, slow, vec![Target::exact("/huge.bin", huge)]),
        ],
    );
    cfg.duration = Duration::from_secs(90);
    cfg.max_requests = 400_000;
    cfg.reconnect_during_stop = true;
    let t0 = Instant::now();
    let load = Load::start(cfg);
    let mut problems: Vec<String> = Vec::new();

    // Three reloads at 1/4, 2/4 and 3/4 of the goal, the stop at the goal;
    // each step waits at most 12 s for the load to get there.
    let mut reload_at = Vec::new();
    for k in 1..=4u64 {
        let want = GOAL * k / 4;
        if !load.wait_for(Duration::from_secs(12), |s| s.complete >= want) {
            problems.push(format!(
                "the load did not reach {want} responses within 12 s of the previous step (has {})",
                load.complete()
            ));
        }
        if k < 4 {
            reload_at.push(format!(
                "{} responses/{:.2}s",
                load.complete(),
                t0.elapsed().as_secs_f64()
            ));
            reload_checked(&srv, 2, &mut problems, &format!("reload #{k}"));
        }
    }

    // Graceful stop while every connection is busy, and while clients that
    // were just told `Connection: close` reconnect: responses in flight must
    // be finished, each keep-alive connection's next request still answered
    // (with `Connection: close`), and a connection that raced the stop into
    // the accept queue served, not reset. Connects after the stop began may
    // be refused (not a failure): the clients are told of the stop just
    // before the signal, and keep reconnecting until a connect is refused.
    let at_term = load.snapshot();
    let running_at_term = load.running();
    load.server_stopping();
    srv.signal(libc::SIGTERM);
    let t_term = Instant::now();
    let term_at = t_term.duration_since(t0).as_secs_f64();
    let exit = srv.wait_exit(Duration::from_secs(20));
    let exit_after = t_term.elapsed();
    let s = load.join(Duration::from_secs(5));
    let total = t0.elapsed();

    let after_term = s.complete - at_term.complete;
    let closes_after_term = s.close_announced - at_term.close_announced;
    note(&format!(
        "engine {e}: {} responses ({:.0}/s) on 40 keep-alive connections (4 slow) in {total:.1?}; \
         reloads at {reload_at:?}; SIGTERM at {term_at:.2}s with {running_at_term} connection threads running, \
         then {after_term} responses ({closes_after_term} with Connection: close); exit {exit:?} {exit_after:.1?} after SIGTERM",
        s.complete,
        s.rate(),
    ));
    note(&format!(
        "engine {e}: before SIGTERM: {} ({} sent); after SIGTERM: {}; test took {:.1?}",
        at_term.failures_line(),
        at_term.sent,
        after_term_failures(&s, &at_term),
        t_test.elapsed()
    ));
    note(&format!(
        "engine {e}: in all: {}; per group: {:?}",
        s.line(),
        s.per_group
    ));

    match exit {
        Some(st) if st.success() => {}
        Some(st) => problems.push(format!("the server exited with {st} (want 0)")),
        None => problems.push("the server did not exit within 20 s of SIGTERM".into()),
    }
    if exit_after > Duration::from_secs(12) {
        problems.push(format!(
            "the stop took {exit_after:.1?}, more than shutdown_timeout (10 s) allows"
        ));
    }
    let mut bad = Vec::new();
    for (what, n) in [
        ("resets (ECONNRESET/EPIPE)", s.resets),
        ("truncated responses", s.truncated),
        ("wrong status/length/body", s.wrong),
        ("requests sent and never answered", s.unanswered()),
        ("EOF with no response", s.eof_no_response),
        ("timeouts", s.timeouts),
        ("malformed responses", s.malformed),
        ("refused connects while up", s.refused),
        ("failures of any kind", s.failed()),
    ] {
        if n > 0 {
            bad.push(format!("{n} {what}"));
        }
    }
    if s.complete < FLOOR {
        problems.push(format!(
            "only {} responses: the load did not run (want at least {FLOOR})",
            s.complete
        ));
    }
    let text = srv.stderr_text();
    if text.contains("panicked") {
        problems.push("the server printed a panic".into());
    }
    assert!(
        bad.is_empty() && problems.is_empty(),
        "engine {e}: {}{}\nbefore SIGTERM (reloads at {reload_at:?}, SIGTERM at {term_at:.2}s): {}; after: {}\n{s}\n\
         --- tandem stderr (last lines) ---\n{}",
        if bad.is_empty() {
            String::new()
        } else {
            format!("FAILED REQUESTS: {}\n", bad.join(", "))
        },
        problems.join("\n"),
        at_term.failures_line(),
        after_term_failures(&s, &at_term),
        tail_lines(&text, 30)
    );
}

/// The failure counts that grew after `before`.
fn after_term_failures(s: &Summary, before: &Summary) -> String {
    let mut d = s.clone();
    d.resets -= before.resets;
    d.eof_no_response -= before.eof_no_response;
    d.reset_no_response -= before.reset_no_response;
    d.truncated -= before.truncated;
    d.wrong -= before.wrong;
    d.malformed -= before.malformed;
    d.timeouts -= before.timeouts;
    d.write_errors -= before.write_errors;
    d.refused -= before.refused;
    d.connect_errors -= before.connect_errors;
    d.failures_line()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Mixed soak
// ---------------------------------------------------------------------------

/// Files under the load: replaced by rename, or truncated and rewritten in place.
struct Churn {
    rot_bin: Arc<Vec<Arc<Vec<u8>>>>,
    rot_txt: Arc<Vec<Arc<Vec<u8>>>>,
    /// Every state of `trunc/grow.bin` is a prefix of this.
    master: Arc<Vec<u8>>,
}

impl Churn {
    fn new(site: &Site) -> Churn {
        let rot_bin: Vec<Arc<Vec<u8>>> = (0..6u64)
            .map(|k| Arc::new(pseudo_random(64 * 1024 + 4099 * k as usize, 0xa000 + k)))
            .collect();
        let rot_txt: Vec<Arc<Vec<u8>>> = (0..6usize)
            .map(|k| Arc::new(format!("rot.txt version {k}\n").repeat(k + 1).into_bytes()))
            .collect();
        let master = Arc::new(pseudo_random((1 << 20) + 11, 0xb000));
        site.write("swap/rot.bin", &rot_bin[0]);
        site.write("swap/rot.txt", &rot_txt[0]);
        site.write("trunc/grow.bin", &master[..256 * 1024]);
        Churn {
            rot_bin: Arc::new(rot_bin),
            rot_txt: Arc::new(rot_txt),
            master,
        }
    }

    fn targets(&self) -> Vec<Target> {
        vec![
            Target::one_of("/swap/rot.bin", self.rot_bin.clone()),
            Target::one_of("/swap/rot.txt", self.rot_txt.clone()),
            Target::prefix_of("/trunc/grow.bin", self.master.clone()),
        ]
    }

    /// Until `stop`: every 20 ms replace the rotating files by rename, and
    /// every 60 ms truncate `grow.bin` (to 0 or to a shorter prefix) and
    /// write it again from offset 0. Returns (renames, rewrites).
    fn run(&self, root: &Path, stop: &AtomicBool, deadline: Instant) -> (u64, u64) {
        use std::io::{Seek, SeekFrom, Write};
        let (mut renames, mut rewrites) = (0u64, 0u64);
        let mut i = 0usize;
        while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
            i += 1;
            for (name, versions) in [("rot.bin", &self.rot_bin), ("rot.txt", &self.rot_txt)] {
                let tmp = root.join(format!("swap/.{name}.tmp"));
                std::fs::write(&tmp, &*versions[i % versions.len()]).expect("write temp file");
                std::fs::rename(&tmp, root.join("swap").join(name)).expect("rename over");
                renames += 1;
            }
            if i.is_multiple_of(3) {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(root.join("trunc/grow.bin"))
                    .expect("open grow.bin");
                let len = [0, 1, 4096, 100_000, 256 * 1024, 700_000, self.master.len()][i / 3 % 7];
                // Empty it, or only shrink it (still a prefix); never extend
                // it with set_len (that makes a hole of zeros). Page-aligned:
                // shrinking to the middle of a page zeroes the rest of that
                // page, and a read racing the truncation can return those
                // zeros (the kernel's doing, not the server's).
                let cur = f.metadata().expect("stat grow.bin").len();
                let cut = if i.is_multiple_of(2) {
                    0
                } else {
                    (len / 2 / 4096 * 4096) as u64
                };
                if cut < cur {
                    f.set_len(cut).expect("truncate");
                }
                f.seek(SeekFrom::Start(0)).unwrap();
                f.write_all(&self.master[..len]).expect("rewrite");
                rewrites += 1;
            }
            std::thread::sleep(Duration::from_millis(20)); // pacing of the file changes
        }
        (renames, rewrites)
    }
}

/// Files of the soak besides the standard site and the churned ones.
struct Files {
    /// `mid.bin`, 32 KiB.
    mid: Arc<Vec<u8>>,
    /// `big.bin`, 3 MiB: cut short by clients.
    big: Arc<Vec<u8>>,
    /// `huge.bin`, 16 MiB: read slowly through a small receive buffer, so
    /// that it outlasts the server's socket buffer (4 MiB at most) and is
    /// still being sent when a reload comes.
    huge: Arc<Vec<u8>>,
}

impl Files {
    fn new(site: &Site) -> Files {
        let f = Files {
            mid: Arc::new(pseudo_random(32 * 1024 + 17, 0x5eed_0001)),
            big: Arc::new(big_bytes()),
            huge: Arc::new(stamped_blocks(16)),
        };
        site.write("mid.bin", &f.mid);
        site.write("huge.bin", &f.huge);
        f
    }
}

/// The soak's connection groups; `scale` divides the connection counts (warm-up).
fn soak_groups(churn: &Churn, files: &Files, scale: usize) -> Vec<Group> {
    let (big, mid) = (&files.big, &files.mid);
    let n = |k: usize| (k / scale).max(1);
    let mut ka = small_targets();
    ka.push(Target::exact("/mid.bin", mid.clone()));
    ka.extend(churn.targets());
    let mut pipe = small_targets();
    pipe.extend(churn.targets());
    let big_t = Target::exact("/big.bin", big.clone());
    let abort_targets = vec![
        big_t.clone(),
        Target::exact("/", bytes(INDEX_HTML)),
        Target::exact("/mid.bin", mid.clone()),
    ];
    let pause = Duration::from_millis(1);
    vec![
        Group::new("keepalive", n(10), Mode::KeepAlive, ka).with_pause(pause),
        Group::new("pipeline", n(4), Mode::Pipeline(6), pipe).with_pause(pause),
        Group::new(
            "abort-rst",
            n(2),
            Mode::Disconnect { rst: true },
            abort_targets.clone(),
        )
        .with_pause(pause),
        Group::new(
            "abort-fin",
            n(2),
            Mode::Disconnect { rst: false },
            abort_targets,
        )
        .with_pause(pause),
        Group::new(
            "slow",
            n(2),
            Mode::SlowReader {
                chunk: 16 * 1024,
                pause: Duration::from_millis(2),
                rcvbuf: 32 * 1024,
            },
            vec![Target::exact("/huge.bin", files.huge.clone())],
        ),
    ]
}

fn soak(e: &str, secs: u64) {
    let _turn = heavy();
    let t_test = Instant::now();
    let site = Site::new();
    let churn = Churn::new(&site);
    let files = Files::new(&site);
    // A retired generation finishes its slow downloads (16 MiB at a slow
    // reader's pace, on a loaded machine) rather than cutting them at
    // shutdown_timeout, which would be a deliberate cut, not a failure.
    let cfg_for = |workers: usize| {
        format!("workers = {workers}\nshutdown_timeout = \"60s\"\nkeepalive_timeout = \"30s\"")
    };
    let Some(mut srv) = Server::start(e, &cfg_for(2), &site.root) else {
        return;
    };
    let pid = srv.pid();
    let fd_start = fd_count(pid);
    let mut problems: Vec<String> = Vec::new();

    // Warm-up: the same mix, fewer connections, 1.5 s; then the baseline.
    let mut warm = LoadConfig::new(srv.addr(), soak_groups(&churn, &files, 4));
    warm.duration = Duration::from_millis(1500);
    let warm = Load::start(warm).join(Duration::from_secs(10));
    if warm.failed() > 0 || warm.unanswered() > 0 {
        problems.push(format!("warm-up: {}", warm.line()));
    }
    let fd_base = match wait_fd_count_at_most(pid, fd_start, Duration::from_secs(5)) {
        Ok(n) | Err(n) => n,
    };
    let rss_base = rss_kib(pid);
    let threads_base = thread_count(pid);

    // The soak.
    let mut cfg = LoadConfig::new(srv.addr(), soak_groups(&churn, &files, 1));
    cfg.duration = Duration::from_secs(secs + 5);
    cfg.max_requests = 100_000_000;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let load = Load::start(cfg);
    let stop_churn = Arc::new(AtomicBool::new(false));
    let churned = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let churner = {
        let (stop, churned, root) = (stop_churn.clone(), churned.clone(), site.root.clone());
        let churn = Churn {
            rot_bin: churn.rot_bin.clone(),
            rot_txt: churn.rot_txt.clone(),
            master: churn.master.clone(),
        };
        std::thread::spawn(move || {
            let (r, w) = churn.run(&root, &stop, end + Duration::from_secs(5));
            churned.0.store(r, Ordering::Relaxed);
            churned.1.store(w, Ordering::Relaxed);
        })
    };
    // First half on 1 worker, second half on 2; a reload every 3 s.
    let mut workers = 1;
    srv.write_config(&cfg_for(workers), &site.root);
    reload_checked(&srv, workers, &mut problems, "reload to 1 worker");
    let mut reloads = 1;
    let mut peak_fds = 0;
    let mut peak_rss = 0;
    while Instant::now() < end {
        let next = (Instant::now() + Duration::from_secs(3)).min(end);
        while Instant::now() < next {
            peak_fds = peak_fds.max(fd_count(pid));
            peak_rss = peak_rss.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100)); // sampling interval
        }
        if Instant::now() >= end {
            break;
        }
        if workers == 1 && t0.elapsed() >= Duration::from_secs(secs) / 2 {
            workers = 2;
            srv.write_config(&cfg_for(workers), &site.root);
        }
        reloads += 1;
        reload_checked(&srv, workers, &mut problems, &format!("reload #{reloads}"));
    }
    let s = load.finish();
    stop_churn.store(true, Ordering::Release);
    churner.join().expect("file churn thread panicked");
    let soak_time = t0.elapsed();

    // Everything closed: descriptors back to the baseline, old workers gone.
    let t_settle = Instant::now();
    let settled = Settled::wait(pid, fd_base, threads_base);
    let rss_after = settled.rss_kib;
    let settle_time = t_settle.elapsed();
    let fd_now = match settled.fds {
        Ok(n) | Err(n) => n,
    };
    note(&format!(
        "engine {e}: {} responses in {soak_time:.1?} ({:.0}/s), {} client aborts, {} cuts tolerated ({} before the head), \
         {} Connection: close, {reloads} reloads, {} renames, {} in-place rewrites",
        s.complete,
        s.rate(),
        s.client_aborts,
        s.cut_tolerated,
        s.cut_tolerated_no_head,
        s.close_announced,
        churned.0.load(Ordering::Relaxed),
        churned.1.load(Ordering::Relaxed),
    ));
    note(&format!(
        "engine {e}: fds {fd_start} at start, {fd_base} after warm-up, peak {peak_fds}, {fd_now} after; \
         RSS {} KiB warm, peak {peak_rss} KiB, {rss_after} KiB after ({:+} KiB); threads {threads_base} warm, {} after",
        rss_base,
        rss_after as i64 - rss_base as i64,
        thread_count(pid)
    ));
    note(&format!("engine {e}: {}", s.line()));
    note(&format!("engine {e}: failures: {}", s.failures_line()));
    problems.extend(settled.problems(pid, fd_base, threads_base, rss_base, 16));
    check_soak_summary(&s, &mut problems);

    // Still healthy, then a clean stop.
    let text = srv.stderr_text();
    if text.contains("panicked") {
        problems.push("the server printed a panic".into());
    }
    let mut stop_time = Duration::ZERO;
    if srv.is_running() {
        let mut c = Conn::connect(srv.addr());
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        match c.read_response_classified("GET", IO_TIMEOUT) {
            ReadOutcome::Ok(r) if r.status == 200 && r.body == INDEX_HTML.as_bytes() => {}
            ReadOutcome::Ok(r) => problems.push(format!("final GET /:\n{}", r.describe())),
            ReadOutcome::Nothing(err) | ReadOutcome::Failed(err) => {
                problems.push(format!("final GET /: {err}"))
            }
        }
        // Closed before the stop, which would otherwise wait for it to linger out.
        drop(c);
        let t_stop = Instant::now();
        let st = srv.terminate(Duration::from_secs(15));
        stop_time = t_stop.elapsed();
        if !st.success() {
            problems.push(format!("exit status {st} after SIGTERM (want 0)"));
        }
    } else {
        problems.push("the server is not running after the soak".into());
    }
    note(&format!(
        "engine {e}: test took {:.1?} (load {soak_time:.1?}, fds/threads settled in {settle_time:.1?}, stop {stop_time:.1?})",
        t_test.elapsed()
    ));
    assert!(
        problems.is_empty(),
        "engine {e}:\n{}\n{s}\n--- tandem stderr (last lines but `file shorter than announced`) ---\n{}",
        problems.join("\n"),
        tail_lines(
            &srv.stderr_text()
                .lines()
                .filter(|l| !l.contains("file shorter than announced"))
                .collect::<Vec<_>>()
                .join("\n"),
            30
        )
    );
}

fn check_soak_summary(s: &Summary, problems: &mut Vec<String>) {
    if s.failed() > 0 || s.unanswered() > 0 {
        problems.push(format!(
            "{} failed, {} unanswered requests: {}",
            s.failed(),
            s.unanswered(),
            s.line()
        ));
    }
    for (g, n, _) in &s.per_group {
        if *n == 0 {
            problems.push(format!("group {g} completed no response"));
        }
    }
    if s.client_aborts == 0 {
        problems.push("no client cut a response short".into());
    }
}

fn soak_secs_from_env(default: u64) -> u64 {
    match std::env::var("TANDEM_SOAK_SECS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("TANDEM_SOAK_SECS={v:?} is not a number of seconds")),
        Err(_) => default,
    }
}

engine_tests! {
    /// 40 busy keep-alive connections, 3 reloads, then SIGTERM under the
    /// load: not one request may fail, and the server exits 0.
    fn zero_failed_requests_across_reloads_and_stop(e) {
        zero_failures(e);
    }

    /// 30 s of mixed load with reloads and file churn; fds and RSS come back.
    fn soak_30s(e) {
        soak(e, 30);
    }

    /// The same for 10 minutes (or `TANDEM_SOAK_SECS`).
    #[ignore]
    fn soak_10min(e) {
        soak(e, soak_secs_from_env(600));
    }
}
