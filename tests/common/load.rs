//! A multi-threaded keep-alive HTTP/1.1 load client over raw TCP (std only).
//!
//! Every connection runs on its own thread and checks every response fully
//! (status, `Content-Length`, every body byte) against its [`Target`]. Each
//! request sent ends in exactly one bucket of the [`Summary`], so the counts
//! add up and "every request sent was answered" can be asserted exactly.
//!
//! ```ignore
//! let load = Load::start(LoadConfig::new(addr, vec![Group::new("ka", 40, Mode::KeepAlive, targets)]));
//! load.wait_for(Duration::from_secs(10), |s| s.complete >= 1000);
//! let summary = load.finish();
//! assert!(summary.failed() == 0, "{summary}");
//! ```
//!
//! What counts as a failure: a reset (ECONNRESET/EPIPE), a response cut
//! short (EOF or reset mid-response, except on a path whose file is being
//! truncated, see [`Target::cut_ok`]), a wrong status or body, a malformed
//! response, a timeout, a connect refused while the server is meant to be up,
//! and any request sent and never answered on a connection the server had not
//! announced as closing (`Connection: close`). Not failures: requests
//! pipelined behind a `Connection: close` response, responses the client cuts
//! itself ([`Mode::Disconnect`]), and a refused connect once the test said the
//! server is stopping ([`Load::server_stopping`]).
//!
//! The load is bounded: threads stop by themselves at `duration`, after
//! `max_requests` requests in all, or when [`Load::stop`] is called, and
//! every read and write has a timeout.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::frame::{self, Framing};

/// A response (or the part of one that arrived) as a [`Check`] sees it.
pub struct Reply<'a> {
    pub status: u16,
    /// Status line and headers, without the final CRLFCRLF.
    pub head: &'a str,
    pub content_length: usize,
    /// The body, or the part of it that arrived when `complete` is false.
    pub body: &'a [u8],
    /// False when the body was cut short (by the server or by the client).
    pub complete: bool,
}

impl Reply<'_> {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Validates one reply; `Err` says what is wrong.
pub type Check = Arc<dyn Fn(&Reply<'_>) -> Result<(), String> + Send + Sync>;

/// A path to request and how to check what comes back.
#[derive(Clone)]
pub struct Target {
    pub path: String,
    pub check: Check,
    /// A response cut short by the server (EOF/reset mid-body) is tolerated
    /// when the part that arrived passes `check` (a file truncated while it
    /// was being sent), and so is a close before the head (a server that
    /// reads the body before sending the head finds the file short and has
    /// nothing right to send). Everywhere else both are failures.
    pub cut_ok: bool,
    /// Extra request header lines, each ending in CRLF (`Range: ...\r\n`).
    pub fields: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({}, cut_ok={})", self.path, self.cut_ok)
    }
}

fn first_diff(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

impl Target {
    /// Status 200 and exactly `body`.
    pub fn exact(path: &str, body: Arc<Vec<u8>>) -> Target {
        Self::status(path, 200, body)
    }

    /// Exactly this status and body.
    pub fn status(path: &str, status: u16, body: Arc<Vec<u8>>) -> Target {
        let check: Check = Arc::new(move |r: &Reply<'_>| {
            if r.status != status {
                return Err(format!("status {} (want {status})", r.status));
            }
            if r.content_length != body.len() {
                return Err(format!(
                    "Content-Length {} (want {})",
                    r.content_length,
                    body.len()
                ));
            }
            // Content-Length is right, so for a whole body this is equality.
            if !body.starts_with(r.body) {
                return Err(format!(
                    "body differs at offset {} ({} bytes received, {} expected)",
                    first_diff(r.body, &body),
                    r.body.len(),
                    body.len()
                ));
            }
            Ok(())
        });
        Target {
            path: path.to_string(),
            check,
            cut_ok: false,
            fields: String::new(),
        }
    }

    /// Status 200 and a body equal to one of `versions` (a file replaced by
    /// rename while the load runs: every response is one whole version).
    pub fn one_of(path: &str, versions: Arc<Vec<Arc<Vec<u8>>>>) -> Target {
        let check: Check = Arc::new(move |r: &Reply<'_>| {
            if r.status != 200 {
                return Err(format!("status {} (want 200)", r.status));
            }
            let hit = versions
                .iter()
                .any(|v| v.len() == r.content_length && v.starts_with(r.body));
            if hit {
                Ok(())
            } else {
                Err(format!(
                    "Content-Length {} with {} body bytes: matches none of the {} versions",
                    r.content_length,
                    r.body.len(),
                    versions.len()
                ))
            }
        });
        Target {
            path: path.to_string(),
            check,
            cut_ok: false,
            fields: String::new(),
        }
    }

    /// Status 200 and a body equal to `master[..len]` for its length: a file
    /// rewritten in place (truncated, then written again from offset 0) whose
    /// every version is a prefix of `master`, so any state it passes through
    /// is one too. A cut mid-body is tolerated (the file shrank mid-send).
    pub fn prefix_of(path: &str, master: Arc<Vec<u8>>) -> Target {
        let check: Check = Arc::new(move |r: &Reply<'_>| {
            if r.status != 200 {
                return Err(format!("status {} (want 200)", r.status));
            }
            if r.content_length > master.len() {
                return Err(format!(
                    "Content-Length {} is longer than any version ({})",
                    r.content_length,
                    master.len()
                ));
            }
            if !master.starts_with(r.body) {
                let at = first_diff(r.body, &master);
                let zeros = r.body[at..].iter().take_while(|&&b| b == 0).count();
                return Err(format!(
                    "body ({} bytes) is not a prefix of the master content: differs at offset {at} \
                     ({zeros} zero bytes from there)",
                    r.body.len(),
                ));
            }
            Ok(())
        });
        Target {
            path: path.to_string(),
            check,
            cut_ok: true,
            fields: String::new(),
        }
    }

    /// Any validator.
    pub fn custom(
        path: &str,
        cut_ok: bool,
        f: impl Fn(&Reply<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Target {
        Target {
            path: path.to_string(),
            check: Arc::new(f),
            cut_ok,
            fields: String::new(),
        }
    }

    /// Send these header lines too (each ending in CRLF).
    pub fn with_fields(mut self, fields: &str) -> Target {
        self.fields = fields.to_string();
        self
    }
}

/// How one connection behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One request at a time on a keep-alive connection.
    KeepAlive,
    /// Send `k` requests in one write, then read the `k` responses.
    Pipeline(usize),
    /// One request at a time, reading the response `chunk` bytes per read
    /// with `pause` after each read, through a receive buffer of `rcvbuf`
    /// bytes (SO_RCVBUF; 0 = the system's). A small one keeps a big response
    /// in flight on the server for as long as the client takes to read it,
    /// instead of it landing in loopback's multi-MiB socket buffers at once.
    SlowReader {
        chunk: usize,
        pause: Duration,
        rcvbuf: usize,
    },
    /// Sometimes one complete request first (a target other than the first),
    /// then a request for the group's FIRST target whose response is read only
    /// partly (a random part of the body, the part read is checked) before the
    /// client closes the connection: with RST (SO_LINGER 0) when `rst`.
    Disconnect { rst: bool },
}

/// `conns` connections (threads) of one mode over a set of targets.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub conns: usize,
    pub mode: Mode,
    /// Requested round-robin (each connection starts at a different one).
    pub targets: Vec<Target>,
    /// Think time between rounds (a round = one request, or `k` pipelined).
    pub pause: Duration,
}

impl Group {
    pub fn new(name: &str, conns: usize, mode: Mode, targets: Vec<Target>) -> Group {
        assert!(!targets.is_empty(), "group {name}: no targets");
        Group {
            name: name.to_string(),
            conns,
            mode,
            targets,
            pause: Duration::ZERO,
        }
    }

    pub fn with_pause(mut self, pause: Duration) -> Group {
        self.pause = pause;
        self
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub groups: Vec<Group>,
    /// Threads stop by themselves this long after the start.
    pub duration: Duration,
    /// Total requests over all threads; threads stop once it is used up.
    pub max_requests: u64,
    /// Longest wait for one read or write (a response making no progress
    /// this long is a timeout failure).
    pub io_timeout: Duration,
    /// How many failure descriptions to keep.
    pub max_examples: usize,
    /// After [`Load::server_stopping`], keep opening new connections (each
    /// may be refused, or be served with `Connection: close`) instead of
    /// ending a thread when its connection ends: this races new connects
    /// against the server's stop, which must not reset anyone it accepted.
    pub reconnect_during_stop: bool,
}

impl LoadConfig {
    /// 60 s, at most 10 million requests, 10 s I/O timeout.
    pub fn new(addr: SocketAddr, groups: Vec<Group>) -> LoadConfig {
        assert!(
            addr.ip().is_loopback(),
            "load targets loopback only, not {addr}"
        );
        LoadConfig {
            addr,
            groups,
            duration: Duration::from_secs(60),
            max_requests: 10_000_000,
            io_timeout: Duration::from_secs(10),
            max_examples: 30,
            reconnect_during_stop: false,
        }
    }
}

#[derive(Default)]
struct Counters {
    connects: AtomicU64,
    refused: AtomicU64,
    refused_during_stop: AtomicU64,
    connect_errors: AtomicU64,
    sent: AtomicU64,
    complete: AtomicU64,
    ok: AtomicU64,
    wrong: AtomicU64,
    close_announced: AtomicU64,
    resets: AtomicU64,
    eof_no_response: AtomicU64,
    reset_no_response: AtomicU64,
    truncated: AtomicU64,
    cut_tolerated: AtomicU64,
    cut_tolerated_no_head: AtomicU64,
    malformed: AtomicU64,
    timeouts: AtomicU64,
    write_errors: AtomicU64,
    dropped_after_close: AtomicU64,
    dropped_after_cut: AtomicU64,
    client_aborts: AtomicU64,
    abandoned: AtomicU64,
    body_bytes: AtomicU64,
}

struct Shared {
    cfg: LoadConfig,
    deadline: Instant,
    stop: AtomicBool,
    server_stopping: AtomicBool,
    /// Threads between deciding to connect and having connected (see
    /// `Load::wait_no_new_connections`).
    connecting: AtomicUsize,
    reserved: AtomicU64,
    c: Counters,
    started: Instant,
    /// The first and the latest failure descriptions.
    examples: Mutex<(Vec<String>, std::collections::VecDeque<String>)>,
    example_count: AtomicU64,
    /// Whole responses per group.
    group_complete: Vec<AtomicU64>,
    /// Failure events per group.
    group_failed: Vec<AtomicU64>,
}

impl Shared {
    fn example(&self, msg: String) {
        self.example_count.fetch_add(1, Ordering::Relaxed);
        let msg = format!("[{:.3}s] {msg}", self.started.elapsed().as_secs_f64());
        let mut ex = self.examples.lock().unwrap_or_else(|e| e.into_inner());
        let keep_first = self.cfg.max_examples / 2;
        let keep_last = self.cfg.max_examples - keep_first;
        if ex.0.len() < keep_first {
            ex.0.push(msg);
        } else if keep_last > 0 {
            if ex.1.len() == keep_last {
                ex.1.pop_front();
            }
            ex.1.push_back(msg);
        }
    }

    fn examples(&self) -> Vec<String> {
        let ex = self.examples.lock().unwrap_or_else(|e| e.into_inner());
        let total = self.example_count.load(Ordering::Relaxed) as usize;
        let mut v = ex.0.clone();
        let shown = ex.0.len() + ex.1.len();
        if total > shown {
            v.push(format!("... {} more not shown ...", total - shown));
        }
        v.extend(ex.1.iter().cloned());
        v
    }
    fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts over the whole run (a snapshot while it runs).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub elapsed: Duration,
    pub threads: usize,
    /// Connections opened.
    pub connects: u64,
    /// Connects refused while the server was meant to be up (failure).
    pub refused: u64,
    /// Connects refused after `server_stopping` (not a failure).
    pub refused_during_stop: u64,
    /// Other connect errors (failure).
    pub connect_errors: u64,
    /// Requests written (or attempted: a failed write counts too).
    pub sent: u64,
    /// Whole responses received (`ok + wrong`).
    pub complete: u64,
    pub ok: u64,
    /// Whole responses that failed their check (failure).
    pub wrong: u64,
    /// Responses that said `Connection: close` (the client then reconnects).
    pub close_announced: u64,
    /// ECONNRESET / EPIPE seen on a read or write (failure).
    pub resets: u64,
    /// EOF before any byte of an owed response, on a connection not
    /// announced as closing (failure).
    pub eof_no_response: u64,
    /// Reset before any byte of an owed response (failure; also in `resets`).
    pub reset_no_response: u64,
    /// EOF/reset mid-response (failure).
    pub truncated: u64,
    /// Cut mid-response on a `cut_ok` target, the received part checked, or
    /// closed before its head (not a failure).
    pub cut_tolerated: u64,
    /// The part of `cut_tolerated` closed before any byte of the response.
    pub cut_tolerated_no_head: u64,
    /// Unparsable response (failure).
    pub malformed: u64,
    /// No progress within `io_timeout` (failure).
    pub timeouts: u64,
    /// Writes that failed other than by reset (failure).
    pub write_errors: u64,
    /// Pipelined requests behind a `Connection: close` response (not a failure).
    pub dropped_after_close: u64,
    /// Pipelined requests behind a tolerated cut (not a failure; behind a
    /// failed response they count as unanswered).
    pub dropped_after_cut: u64,
    /// Responses the client cut itself in `Mode::Disconnect` (not a failure).
    pub client_aborts: u64,
    /// Responses (and what was pipelined behind them) left unread because
    /// the load was stopped mid-body (not a failure; the part read is checked).
    pub abandoned: u64,
    pub body_bytes: u64,
    /// Failure events in all (`examples` keeps the first and the latest few,
    /// each stamped with the time since the load started).
    pub failure_events: u64,
    pub examples: Vec<String>,
    /// Threads still running when `join` gave up on them.
    pub stuck_threads: usize,
    /// (group name, whole responses, failure events) per group.
    pub per_group: Vec<(String, u64, u64)>,
}

impl Summary {
    /// The non-zero failure counts, e.g. "3 resets, 2 EOF with no response"
    /// ("no failures" when there are none). Unlike [`Summary::unanswered`]
    /// this means something while requests are still in flight.
    pub fn failures_line(&self) -> String {
        let v: Vec<String> = [
            ("resets", self.resets),
            ("EOF with no response", self.eof_no_response),
            ("reset with no response", self.reset_no_response),
            ("truncated", self.truncated),
            ("wrong", self.wrong),
            ("malformed", self.malformed),
            ("timeouts", self.timeouts),
            ("write errors", self.write_errors),
            ("refused", self.refused),
            ("connect errors", self.connect_errors),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
        if v.is_empty() {
            "no failures".into()
        } else {
            v.join(", ")
        }
    }

    /// Failures of every kind (a reset that left a request unanswered counts
    /// once as a reset and once as `reset_no_response`; this counts it once).
    pub fn failed(&self) -> u64 {
        self.refused
            + self.connect_errors
            + self.wrong
            + self.eof_no_response
            + self.reset_no_response
            + self.truncated
            + self.malformed
            + self.timeouts
            + self.write_errors
            + self.stuck_threads as u64
            + self.resets_elsewhere()
    }

    /// Resets not already counted as a request left without its response
    /// or as a truncated response.
    pub fn resets_elsewhere(&self) -> u64 {
        self.resets
            .saturating_sub(self.reset_no_response + self.truncated + self.cut_tolerated)
    }

    /// Requests sent that got neither a whole response nor a legitimate end
    /// (pipelined behind `Connection: close`, a tolerated cut or what was
    /// pipelined behind it, a client abort). Includes truncated responses.
    pub fn unanswered(&self) -> u64 {
        self.sent.saturating_sub(
            self.complete
                + self.dropped_after_close
                + self.cut_tolerated
                + self.dropped_after_cut
                + self.client_aborts
                + self.abandoned,
        )
    }

    /// Responses per second over the run.
    pub fn rate(&self) -> f64 {
        self.complete as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// One line of the main numbers.
    pub fn line(&self) -> String {
        format!(
            "{} sent, {} complete ({} ok, {} wrong) in {:.1?} ({:.0}/s), {} with Connection: close, \
             {} resets, {} EOF with no response, {} reset with no response, {} truncated, \
             {} cut tolerated, {} malformed, {} timeouts, {} write errors, {} refused \
             (+{} during stop), {} connects, {} unanswered",
            self.sent,
            self.complete,
            self.ok,
            self.wrong,
            self.elapsed,
            self.rate(),
            self.close_announced,
            self.resets,
            self.eof_no_response,
            self.reset_no_response,
            self.truncated,
            self.cut_tolerated,
            self.malformed,
            self.timeouts,
            self.write_errors,
            self.refused,
            self.refused_during_stop,
            self.connects,
            self.unanswered()
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load over {:.1?} on {} connection threads:",
            self.elapsed, self.threads
        )?;
        let rows: [(&str, u64); 26] = [
            ("connects", self.connects),
            ("requests sent", self.sent),
            ("responses complete", self.complete),
            ("  ok", self.ok),
            ("  wrong (status/length/body)", self.wrong),
            ("responses with Connection: close", self.close_announced),
            ("resets (ECONNRESET/EPIPE)", self.resets),
            ("EOF with no response", self.eof_no_response),
            ("reset with no response", self.reset_no_response),
            ("truncated (EOF/reset mid-response)", self.truncated),
            ("cut mid-response, tolerated", self.cut_tolerated),
            ("  of which before the head", self.cut_tolerated_no_head),
            ("malformed responses", self.malformed),
            ("timeouts", self.timeouts),
            ("write errors (not reset)", self.write_errors),
            ("connect refused", self.refused),
            ("connect refused during stop", self.refused_during_stop),
            ("other connect errors", self.connect_errors),
            (
                "pipelined behind Connection: close",
                self.dropped_after_close,
            ),
            ("pipelined behind a tolerated cut", self.dropped_after_cut),
            ("client aborts (Mode::Disconnect)", self.client_aborts),
            ("abandoned mid-body at the load's stop", self.abandoned),
            ("body bytes", self.body_bytes),
            ("UNANSWERED requests", self.unanswered()),
            ("stuck threads", self.stuck_threads as u64),
            ("FAILED (all kinds)", self.failed()),
        ];
        for (k, v) in rows {
            writeln!(f, "  {k:<40} {v}")?;
        }
        if self.per_group.len() > 1 {
            let groups: Vec<String> = self
                .per_group
                .iter()
                .map(|(g, n, x)| format!("{g}: {n} responses, {x} failures"))
                .collect();
            writeln!(f, "  responses per group: {}", groups.join(", "))?;
        }
        if !self.examples.is_empty() {
            writeln!(
                f,
                "{} failure events (seconds since the load started):",
                self.failure_events
            )?;
            for e in &self.examples {
                writeln!(f, "  - {e}")?;
            }
        }
        Ok(())
    }
}

/// A running load.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// Start every connection thread.
    pub fn start(cfg: LoadConfig) -> Load {
        let started = Instant::now();
        let cfg_groups = cfg.groups.len();
        let shared = Arc::new(Shared {
            deadline: started + cfg.duration,
            cfg,
            stop: AtomicBool::new(false),
            server_stopping: AtomicBool::new(false),
            connecting: AtomicUsize::new(0),
            reserved: AtomicU64::new(0),
            c: Counters::default(),
            started,
            examples: Mutex::new(Default::default()),
            example_count: AtomicU64::new(0),
            group_complete: (0..cfg_groups).map(|_| AtomicU64::new(0)).collect(),
            group_failed: (0..cfg_groups).map(|_| AtomicU64::new(0)).collect(),
        });
        let mut threads = Vec::new();
        let mut n = 0;
        for (gi, g) in shared.cfg.groups.iter().enumerate() {
            for i in 0..g.conns {
                let sh = shared.clone();
                let id = n;
                n += 1;
                let h = std::thread::Builder::new()
                    .name(format!("load-{}-{i}", g.name))
                    .spawn(move || {
                        let mut c = Client::new(sh, gi, i, id);
                        c.run();
                    })
                    .expect("spawn load thread");
                threads.push(h);
            }
        }
        Load {
            shared,
            threads,
            started,
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Summary {
        let c = &self.shared.c;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            elapsed: self.started.elapsed(),
            threads: self.threads.len(),
            connects: g(&c.connects),
            refused: g(&c.refused),
            refused_during_stop: g(&c.refused_during_stop),
            connect_errors: g(&c.connect_errors),
            sent: g(&c.sent),
            complete: g(&c.complete),
            ok: g(&c.ok),
            wrong: g(&c.wrong),
            close_announced: g(&c.close_announced),
            resets: g(&c.resets),
            eof_no_response: g(&c.eof_no_response),
            reset_no_response: g(&c.reset_no_response),
            truncated: g(&c.truncated),
            cut_tolerated: g(&c.cut_tolerated),
            cut_tolerated_no_head: g(&c.cut_tolerated_no_head),
            malformed: g(&c.malformed),
            timeouts: g(&c.timeouts),
            write_errors: g(&c.write_errors),
            dropped_after_close: g(&c.dropped_after_close),
            dropped_after_cut: g(&c.dropped_after_cut),
            client_aborts: g(&c.client_aborts),
            abandoned: g(&c.abandoned),
            body_bytes: g(&c.body_bytes),
            failure_events: self.shared.example_count.load(Ordering::Relaxed),
            examples: self.shared.examples(),
            stuck_threads: 0,
            per_group: self
                .shared
                .cfg
                .groups
                .iter()
                .zip(
                    self.shared
                        .group_complete
                        .iter()
                        .zip(&self.shared.group_failed),
                )
                .map(|(g, (n, f))| {
                    (
                        g.name.clone(),
                        n.load(Ordering::Relaxed),
                        f.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }

    /// Responses completed so far.
    pub fn complete(&self) -> u64 {
        self.shared.c.complete.load(Ordering::Relaxed)
    }

    /// Wait (polling every 10 ms) until `pred` holds for the counts, or
    /// `timeout` passes, or every thread has ended. Returns whether it held.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Summary) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.snapshot()) {
                return true;
            }
            if Instant::now() >= deadline || self.running() == 0 {
                return pred(&self.snapshot());
            }
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
    }

    /// Threads still running.
    pub fn running(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Ask every thread to finish its current round and end.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }

    /// The server is about to stop: threads keep sending on the connections
    /// they have, but once one ends (after `Connection: close`) they end too
    /// instead of opening another, and a refused connect is no failure.
    pub fn server_stopping(&self) {
        self.shared.server_stopping.store(true, Ordering::SeqCst);
    }

    /// After [`Load::server_stopping`]: wait until no thread is opening a
    /// connection, so that none will from now on (a connect racing the
    /// server's stop could land in the listen queue and be reset with its
    /// request unanswered). Threads in the middle of a request carry on.
    pub fn wait_no_new_connections(&self, timeout: Duration) -> bool {
        assert!(
            self.shared.server_stopping.load(Ordering::SeqCst),
            "call server_stopping() first"
        );
        let deadline = Instant::now() + timeout;
        loop {
            // Pairs with the thread side in Client::run: a thread counts
            // itself in, then reads the flag; we set the flag, then read the
            // count. Seeing 0 here means every later count-in sees the flag.
            if self.shared.connecting.load(Ordering::SeqCst) == 0 || self.running() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2)); // poll interval
        }
    }

    /// Wait for the threads to end by themselves (server closing, duration,
    /// request budget), at most `timeout`; then stop them and wait up to the
    /// I/O timeout more. Threads still running after that, or that panicked,
    /// are `stuck_threads`.
    pub fn join(mut self, timeout: Duration) -> Summary {
        let deadline = Instant::now() + timeout;
        while self.running() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5)); // poll interval
        }
        self.stop();
        let deadline = Instant::now() + self.shared.cfg.io_timeout + Duration::from_secs(2);
        while self.running() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5)); // poll interval
        }
        let mut stuck = 0;
        for t in std::mem::take(&mut self.threads) {
            if t.is_finished() {
                if t.join().is_err() {
                    self.shared.example("a load thread panicked".into());
                    stuck += 1;
                }
            } else {
                stuck += 1;
            }
        }
        let mut s = self.snapshot();
        s.threads = self.shared.cfg.groups.iter().map(|g| g.conns).sum();
        s.stuck_threads = stuck;
        s
    }

    /// Stop now and join.
    pub fn finish(self) -> Summary {
        self.stop();
        self.join(Duration::ZERO)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that panics midway: let the threads end on their own.
        self.shared.stop.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// One connection thread
// ---------------------------------------------------------------------------

/// SO_RCVBUF (the kernel doubles it for its bookkeeping).
pub fn set_rcvbuf(s: &TcpStream, bytes: usize) {
    super::set_sockopt(
        s,
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        &(bytes as libc::c_int),
    );
}

/// An open connection and its read buffer.
struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
    /// Responses completed on this connection.
    served: u64,
}

/// How reading one response ended.
enum Got {
    /// Whole response; the body is in the caller's buffer.
    Resp {
        status: u16,
        head: String,
        cl: usize,
        close: bool,
    },
    /// The client stopped reading at `stop_after` body bytes (Disconnect mode).
    Stopped {
        status: u16,
        head: String,
        cl: usize,
    },
    /// The load was stopped mid-body; the part read is in the body buffer.
    Abandoned {
        status: u16,
        head: String,
        cl: usize,
    },
    /// EOF or reset before any byte of the response.
    Nothing {
        reset: bool,
        why: String,
    },
    /// EOF or reset after part of the response. `head` is set when the head
    /// was complete (the part of the body is in the caller's buffer).
    Cut {
        reset: bool,
        head: Option<(u16, String, usize)>,
        got: usize,
        why: String,
    },
    TimedOut {
        got: usize,
    },
    Bad(String),
}

struct Client {
    sh: Arc<Shared>,
    group: usize,
    idx: usize,
    rr: usize,
    rng: u64,
    body: Vec<u8>,
    tmp: Vec<u8>,
}

impl Client {
    fn new(sh: Arc<Shared>, group: usize, idx: usize, id: usize) -> Client {
        Client {
            sh,
            group,
            idx,
            rr: idx,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            body: Vec::new(),
            tmp: vec![0u8; 64 * 1024],
        }
    }

    fn group(&self) -> &Group {
        &self.sh.cfg.groups[self.group]
    }

    fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Count a failure event of this connection's group and describe it.
    fn fail(&self, msg: String) {
        self.sh.group_failed[self.group].fetch_add(1, Ordering::Relaxed);
        self.sh.example(msg);
    }

    fn who(&self) -> String {
        format!("{}#{}", self.group().name, self.idx)
    }

    fn run(&mut self) {
        let mut conn: Option<Wire> = None;
        loop {
            if self.sh.stop.load(Ordering::Acquire) || Instant::now() >= self.sh.deadline {
                break;
            }
            if conn.is_none() {
                // Count in, then look at the flag (see wait_no_new_connections).
                self.sh.connecting.fetch_add(1, Ordering::SeqCst);
                if self.sh.server_stopping.load(Ordering::SeqCst)
                    && !self.sh.cfg.reconnect_during_stop
                {
                    // The server is stopping: no new connections.
                    self.sh.connecting.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                let c = self.connect();
                self.sh.connecting.fetch_sub(1, Ordering::SeqCst);
                match c {
                    Some(w) => conn = Some(w),
                    None => {
                        if self.sh.server_stopping.load(Ordering::Acquire) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20)); // back-off before retrying a failed connect
                        continue;
                    }
                }
            }
            let mode = self.group().mode;
            let k = match mode {
                Mode::Pipeline(k) => k.max(1),
                _ => 1,
            };
            let prev = self.sh.reserved.fetch_add(k as u64, Ordering::Relaxed);
            if prev + k as u64 > self.sh.cfg.max_requests {
                break;
            }
            let w = conn.as_mut().unwrap();
            let keep = match mode {
                Mode::KeepAlive => self.round(w, 1, usize::MAX, Duration::ZERO),
                Mode::Pipeline(k) => self.round(w, k.max(1), usize::MAX, Duration::ZERO),
                Mode::SlowReader { chunk, pause, .. } => self.round(w, 1, chunk.max(1), pause),
                Mode::Disconnect { rst } => self.abort_round(w, rst),
            };
            if !keep {
                conn = None;
            }
            let pause = self.group().pause;
            if !pause.is_zero() {
                std::thread::sleep(pause); // think time between requests (pacing)
            }
        }
    }

    fn connect(&mut self) -> Option<Wire> {
        let addr = self.sh.cfg.addr;
        match TcpStream::connect_timeout(&addr, self.sh.cfg.io_timeout) {
            Ok(s) => {
                s.set_nodelay(true).ok();
                s.set_read_timeout(Some(self.sh.cfg.io_timeout)).ok();
                s.set_write_timeout(Some(self.sh.cfg.io_timeout)).ok();
                if let Mode::SlowReader { rcvbuf, .. } = self.group().mode
                    && rcvbuf > 0
                {
                    set_rcvbuf(&s, rcvbuf);
                }
                self.sh.add(&self.sh.c.connects, 1);
                Some(Wire {
                    s,
                    buf: Vec::with_capacity(16 * 1024),
                    served: 0,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if self.sh.server_stopping.load(Ordering::Acquire) {
                    self.sh.add(&self.sh.c.refused_during_stop, 1);
                } else {
                    self.sh.add(&self.sh.c.refused, 1);
                    self.fail(format!(
                        "{}: connect refused while the server should be up",
                        self.who()
                    ));
                }
                None
            }
            Err(e) => {
                self.sh.add(&self.sh.c.connect_errors, 1);
                self.fail(format!("{}: connect: {e}", self.who()));
                None
            }
        }
    }

    fn next_target(&mut self) -> Target {
        let g = self.group();
        let t = g.targets[self.rr % g.targets.len()].clone();
        self.rr = self.rr.wrapping_add(1);
        t
    }

    fn request_bytes(out: &mut Vec<u8>, t: &Target) {
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(t.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: tandem.test\r\nUser-Agent: tandem-load\r\n");
        out.extend_from_slice(t.fields.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Write the requests for `targets`; false (after counting) when the write failed.
    fn send(&mut self, w: &mut Wire, req: &[u8], targets: &[Target]) -> bool {
        let n = targets.len();
        self.sh.add(&self.sh.c.sent, n as u64);
        match w.s.write_all(req) {
            Ok(()) => true,
            Err(e) => {
                let c = &self.sh.c;
                if super::is_reset(&e) {
                    self.sh.add(&c.resets, 1);
                    self.sh.add(&c.reset_no_response, n as u64);
                } else if super::is_timeout(&e) {
                    self.sh.add(&c.timeouts, n as u64);
                } else {
                    self.sh.add(&c.write_errors, n as u64);
                }
                let paths: Vec<&str> = targets.iter().map(|t| t.path.as_str()).collect();
                self.fail(format!(
                    "{}: writing GET {} (connection had {} responses, server stopping: {}): {e}",
                    self.who(),
                    paths.join(" "),
                    w.served,
                    self.sh.server_stopping.load(Ordering::Relaxed)
                ));
                false
            }
        }
    }

    /// Send `k` requests at once (round-robin targets), read the `k`
    /// responses. Returns whether the connection can be used again.
    fn round(&mut self, w: &mut Wire, k: usize, chunk: usize, pause: Duration) -> bool {
        let targets: Vec<Target> = (0..k).map(|_| self.next_target()).collect();
        let mut req = Vec::with_capacity(k * 80);
        for t in &targets {
            Self::request_bytes(&mut req, t);
        }
        if !self.send(w, &req, &targets) {
            return false;
        }
        for (j, t) in targets.iter().enumerate() {
            let rest = (k - j - 1) as u64;
            let got = self.read_response(w, chunk, pause, None);
            if !self.account(w, t, got, rest) {
                return false;
            }
        }
        true
    }

    /// Disconnect mode: maybe one whole request on another target, then
    /// request the first target and cut its response short.
    fn abort_round(&mut self, w: &mut Wire, rst: bool) -> bool {
        let n = self.group().targets.len();
        if n > 1 && self.rand().is_multiple_of(2) {
            let pick = 1 + (self.rand() as usize % (n - 1));
            let t = self.group().targets[pick].clone();
            let mut req = Vec::new();
            Self::request_bytes(&mut req, &t);
            if !self.send(w, &req, std::slice::from_ref(&t)) {
                return false;
            }
            let got = self.read_response(w, usize::MAX, Duration::ZERO, None);
            if !self.account(w, &t, got, 0) {
                return false;
            }
        }
        let t = self.group().targets[0].clone();
        let mut req = Vec::new();
        Self::request_bytes(&mut req, &t);
        if !self.send(w, &req, std::slice::from_ref(&t)) {
            return false;
        }
        // Somewhere in the first 3/4 of the body.
        let permille = (self.rand() % 750) as usize;
        let got = self.read_response(w, usize::MAX, Duration::ZERO, Some(permille));
        match got {
            Got::Stopped { status, head, cl } => {
                if let Err(e) = self.check_cut(&t, status, &head, cl) {
                    self.sh.add(&self.sh.c.wrong, 1);
                    self.fail(format!(
                        "{}: GET {} (read {} of {cl} bytes, then cut by the client): {e}\n{head}",
                        self.who(),
                        t.path,
                        self.body.len()
                    ));
                }
                self.sh.add(&self.sh.c.client_aborts, 1);
                self.sh.add(&self.sh.c.body_bytes, self.body.len() as u64);
                if rst {
                    super::set_linger_zero(&w.s);
                }
                false
            }
            other => self.account(w, &t, other, 0),
        }
    }

    /// Count one outcome; `rest` = requests pipelined behind this one.
    /// Returns whether the connection can be used again.
    /// `t`'s check of a response whose body was cut short: `self.body`
    /// holds the part that came.
    fn check_cut(&self, t: &Target, status: u16, head: &str, cl: usize) -> Result<(), String> {
        (t.check)(&Reply {
            status,
            head,
            content_length: cl,
            body: &self.body,
            complete: false,
        })
    }

    fn account(&mut self, w: &mut Wire, t: &Target, got: Got, rest: u64) -> bool {
        let sh = self.sh.clone();
        let c = &sh.c;
        let stopping = sh.server_stopping.load(Ordering::Relaxed);
        let ctx = |w: &Wire| {
            format!(
                "{}: GET {} (response #{} on its connection, server stopping: {stopping})",
                self.who(),
                t.path,
                w.served + 1
            )
        };
        match got {
            Got::Resp {
                status,
                head,
                cl,
                close,
            } => {
                sh.add(&c.complete, 1);
                sh.add(&sh.group_complete[self.group], 1);
                sh.add(&c.body_bytes, cl as u64);
                let r = Reply {
                    status,
                    head: &head,
                    content_length: cl,
                    body: &self.body,
                    complete: true,
                };
                match (t.check)(&r) {
                    Ok(()) => sh.add(&c.ok, 1),
                    Err(e) => {
                        sh.add(&c.wrong, 1);
                        self.fail(format!("{}: {e}\n{head}", ctx(w)));
                    }
                }
                w.served += 1;
                if close {
                    sh.add(&c.close_announced, 1);
                    sh.add(&c.dropped_after_close, rest);
                    return false;
                }
                true
            }
            Got::Stopped { .. } => unreachable!("only abort_round stops reading early"),
            Got::Abandoned { status, head, cl } => {
                sh.add(&c.abandoned, 1 + rest);
                if let Err(e) = self.check_cut(t, status, &head, cl) {
                    sh.add(&c.wrong, 1);
                    self.fail(format!(
                        "{}: (left after {} bytes at the load's stop) {e}\n{head}",
                        ctx(w),
                        self.body.len()
                    ));
                }
                false
            }
            Got::Nothing { reset, .. } if t.cut_ok => {
                if reset {
                    sh.add(&c.resets, 1);
                }
                sh.add(&c.cut_tolerated, 1);
                sh.add(&c.cut_tolerated_no_head, 1);
                sh.add(&c.dropped_after_cut, rest);
                false
            }
            Got::Nothing { reset, why } => {
                if reset {
                    sh.add(&c.resets, 1);
                    sh.add(&c.reset_no_response, 1 + rest);
                } else {
                    sh.add(&c.eof_no_response, 1 + rest);
                }
                let fresh = if w.served == 0 {
                    "fresh"
                } else {
                    "reused keep-alive"
                };
                self.fail(format!(
                    "{}: {why} on a {fresh} connection never announced as closing ({rest} more pipelined behind it)",
                    ctx(w)
                ));
                false
            }
            Got::Cut {
                reset,
                head,
                got,
                why,
            } => {
                if reset {
                    sh.add(&c.resets, 1);
                }
                if let (true, Some((status, head, cl))) = (t.cut_ok, head.as_ref()) {
                    let r = Reply {
                        status: *status,
                        head,
                        content_length: *cl,
                        body: &self.body,
                        complete: false,
                    };
                    match (t.check)(&r) {
                        Ok(()) => {
                            sh.add(&c.cut_tolerated, 1);
                            sh.add(&c.dropped_after_cut, rest);
                            sh.add(&c.body_bytes, self.body.len() as u64);
                            return false;
                        }
                        Err(e) => {
                            sh.add(&c.truncated, 1);
                            self.fail(format!(
                                "{}: cut after {got} bytes ({why}), and the part received is wrong: {e}",
                                ctx(w)
                            ));
                            return false;
                        }
                    }
                }
                sh.add(&c.truncated, 1);
                let head = head.map(|h| h.1).unwrap_or_default();
                self.fail(format!(
                    "{}: truncated: {why} after {got} bytes of the response\n{head}",
                    ctx(w)
                ));
                false
            }
            Got::TimedOut { got } => {
                sh.add(&c.timeouts, 1);
                self.fail(format!(
                    "{}: no progress for {:?} after {got} bytes of the response",
                    ctx(w),
                    sh.cfg.io_timeout
                ));
                false
            }
            Got::Bad(msg) => {
                sh.add(&c.malformed, 1);
                self.fail(format!("{}: malformed response: {msg}", ctx(w)));
                false
            }
        }
    }

    /// One read into `w.buf` (at most `max` bytes). Ok(0) = EOF.
    fn fill(&mut self, w: &mut Wire, max: usize) -> io::Result<usize> {
        let max = max.min(self.tmp.len());
        loop {
            match w.s.read(&mut self.tmp[..max]) {
                Ok(n) => {
                    w.buf.extend_from_slice(&self.tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Read one response. The body goes to `self.body`. `chunk`/`pause`:
    /// slow reading. `cut_permille`: stop reading once that many thousandths
    /// of the body arrived (Disconnect mode; `Got::Stopped`).
    fn read_response(
        &mut self,
        w: &mut Wire,
        chunk: usize,
        pause: Duration,
        cut_permille: Option<usize>,
    ) -> Got {
        self.body.clear();
        // Head.
        let mut scanned = 0;
        let head_end = loop {
            if let Some(p) = frame::head_end(&w.buf, &mut scanned) {
                break p;
            }
            if w.buf.len() > 64 * 1024 {
                return Got::Bad(format!("no end of head in {} bytes", w.buf.len()));
            }
            match self.fill(w, chunk) {
                Ok(0) if w.buf.is_empty() => {
                    return Got::Nothing {
                        reset: false,
                        why: "EOF before any byte of the response".into(),
                    };
                }
                Ok(0) => {
                    return Got::Cut {
                        reset: false,
                        head: None,
                        got: w.buf.len(),
                        why: format!("EOF inside the head {:?}", String::from_utf8_lossy(&w.buf)),
                    };
                }
                Ok(_) => {}
                Err(e) if super::is_timeout(&e) => {
                    return Got::TimedOut { got: w.buf.len() };
                }
                Err(e) => {
                    let reset = super::is_reset(&e);
                    if w.buf.is_empty() {
                        return Got::Nothing {
                            reset,
                            why: format!("{e} before any byte of the response"),
                        };
                    }
                    return Got::Cut {
                        reset,
                        head: None,
                        got: w.buf.len(),
                        why: format!("{e} inside the head"),
                    };
                }
            }
            if !pause.is_zero() {
                std::thread::sleep(pause); // slow reader
            }
        };
        let head = match std::str::from_utf8(&w.buf[..head_end]) {
            Ok(h) => h.to_string(),
            Err(_) => return Got::Bad("head is not UTF-8".into()),
        };
        let (status, cl, close) = match parse_head(&head) {
            Ok(x) => x,
            Err(e) => return Got::Bad(format!("{e}\n{head}")),
        };
        let body_start = head_end + 4;
        let stop_at = match cut_permille {
            Some(pm) => ((cl as u128 * pm as u128) / 1000) as usize,
            None => usize::MAX,
        };
        let have = (w.buf.len() - body_start).min(cl);
        self.body
            .extend_from_slice(&w.buf[body_start..body_start + have]);
        w.buf.drain(..body_start + have);
        if self.body.len() < cl {
            // Read the rest straight into the body buffer.
            let mut got = self.body.len();
            self.body.resize(cl, 0);
            while got < cl {
                if got >= stop_at {
                    self.body.truncate(got);
                    return Got::Stopped { status, head, cl };
                }
                if self.sh.stop.load(Ordering::Relaxed) {
                    self.body.truncate(got);
                    return Got::Abandoned { status, head, cl };
                }
                let max = chunk.min(cl - got).min(stop_at.max(got + 1) - got);
                let r = loop {
                    match w.s.read(&mut self.body[got..got + max]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r,
                    }
                };
                match r {
                    Ok(0) => {
                        self.body.truncate(got);
                        return Got::Cut {
                            reset: false,
                            head: Some((status, head, cl)),
                            got: body_start + got,
                            why: format!("EOF after {got} of {cl} body bytes"),
                        };
                    }
                    Ok(n) => got += n,
                    Err(e) if super::is_timeout(&e) => {
                        self.body.truncate(got);
                        return Got::TimedOut {
                            got: body_start + got,
                        };
                    }
                    Err(e) => {
                        self.body.truncate(got);
                        return Got::Cut {
                            reset: super::is_reset(&e),
                            head: Some((status, head, cl)),
                            got: body_start + got,
                            why: format!("{e} after {got} of {cl} body bytes"),
                        };
                    }
                }
                if !pause.is_zero() {
                    std::thread::sleep(pause); // slow reader
                }
            }
        }
        Got::Resp {
            status,
            head,
            cl,
            close,
        }
    }
}

/// Status, Content-Length and whether `Connection: close` was said. The
/// load client keeps its connections, so a close-delimited body is an error.
fn parse_head(head: &str) -> Result<(u16, usize, bool), String> {
    let r = super::parse_response_head(head)?;
    if r.version != "HTTP/1.1" {
        return Err(format!(
            "status line {:?}",
            head.lines().next().unwrap_or("")
        ));
    }
    // Its requests are all GETs.
    let cl = match frame::framing(&r, "GET")? {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::ToClose => return Err("no Content-Length".into()),
    };
    Ok((r.status, cl, r.connection_has("close")))
}
