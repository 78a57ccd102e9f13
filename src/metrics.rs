//! Counters for `/metrics`, and their rendering in the Prometheus text
//! exposition format (version 0.0.4). No I/O here: the daemon serves the
//! text on its own listener (`daemon::metrics`).
//!
//! Each worker owns one [`WorkerCounters`] block, aligned to 128 bytes so
//! that no two workers' counters share a cache line (128 covers the
//! adjacent-line prefetch of x86 and the 128-byte lines of some arm64
//! cores). Only that worker writes it, with plain Relaxed loads and stores
//! (no read-modify-write, no lock prefix): the request path costs a few
//! ordinary memory operations. A scrape reads every live block and adds
//! the totals of the blocks already retired, under the registry's mutex,
//! which the request path never takes.
//!
//! Counters never go backwards: a worker that ends (its generation retired
//! by a reload, or a worker that died and was replaced) has its totals
//! folded into `retired` by the daemon in the same critical section that
//! removes it from the live list.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Status classes counted: 1xx to 5xx (index `status / 100 - 1`).
pub const CLASSES: usize = 5;
const CLASS_LABELS: [&str; CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The codings `tandem_compressions_total` counts, in the order of
/// `config::Encoding`'s variants (which index them).
pub const CODINGS: [&str; 3] = ["br", "zstd", "gzip"];

/// One worker's counters. Written by that worker's thread only.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    requests: [AtomicU64; CLASSES],
    response_bytes: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    /// Completed TLS handshakes: [TLS 1.2, TLS 1.3].
    tls_handshakes: [AtomicU64; 2],
    tls_failures: [AtomicU64; TLS_FAILURES],
    /// Open connections whose handshake completed: [TLS 1.2, TLS 1.3] (a gauge).
    tls_open: [AtomicU64; 2],
    /// HTTP/2 connections (by ALPN or preface) and streams opened.
    h2_connections: AtomicU64,
    h2_streams: AtomicU64,
    cache_entries: AtomicU64,
    cache_bytes: AtomicU64,
    /// Descriptors the open-file cache holds (a gauge).
    open_files: AtomicU64,
    /// Files compressed on the fly, by coding (`Encoding as usize`).
    compressions: [AtomicU64; 3],
}

/// Why a TLS handshake failed (the `reason` label of
/// `tandem_tls_handshake_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// A plaintext HTTP request on a TLS port (answered 400).
    PlainHttp = 0,
    /// Bytes that are no TLS, or a malformed or unexpected message.
    Protocol = 1,
    /// No protocol version, cipher suite or ALPN protocol in common (TLS 1.0/1.1 clients).
    NoCommon = 2,
    /// The client closed the connection (or sent an alert) mid-handshake.
    Closed = 3,
    /// The handshake (and first request) did not complete within header_timeout.
    Timeout = 4,
}

pub const TLS_FAILURES: usize = 5;
const TLS_FAILURE_LABELS: [&str; TLS_FAILURES] =
    ["plain_http", "protocol", "no_common", "closed", "timeout"];
const TLS_VERSION_LABELS: [&str; 2] = ["TLSv1.2", "TLSv1.3"];

/// `a += n` for a counter only one thread writes: a load and a store, no
/// atomic read-modify-write. Readers see either value, never a torn one.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerCounters {
    /// A response ended (whole or cut short): its status and the bytes of
    /// it (head and body) that reached the socket.
    #[inline]
    pub fn response(&self, status: u16, bytes: u64) {
        let class = (status / 100).clamp(1, CLASSES as u16) as usize - 1;
        bump(&self.requests[class], 1);
        bump(&self.response_bytes, bytes);
    }

    /// A connection was accepted.
    #[inline]
    pub fn accepted(&self) {
        bump(&self.accepted, 1);
    }

    /// The worker's open connections now.
    #[inline]
    pub fn set_open(&self, n: usize) {
        self.open.store(n as u64, Relaxed);
    }

    /// A TLS handshake completed (`v13`: TLS 1.3, else 1.2).
    #[inline]
    pub fn tls_handshake(&self, v13: bool) {
        bump(&self.tls_handshakes[v13 as usize], 1);
    }

    /// A connection began to speak HTTP/2.
    #[inline]
    pub fn h2_connection(&self) {
        bump(&self.h2_connections, 1);
    }

    /// An HTTP/2 stream was opened (and not refused).
    #[inline]
    pub fn h2_stream(&self) {
        bump(&self.h2_streams, 1);
    }

    /// A TLS handshake failed.
    #[inline]
    pub fn tls_failure(&self, why: TlsFailure) {
        bump(&self.tls_failures[why as usize], 1);
    }

    /// A TLS connection of this version (`v13`) opened (its handshake
    /// completed, `open`) or closed (`!open`).
    #[inline]
    fn tls_open(&self, v13: bool, open: bool) {
        let a = &self.tls_open[v13 as usize];
        let n = a.load(Relaxed);
        a.store(if open { n + 1 } else { n.saturating_sub(1) }, Relaxed);
    }

    /// What the worker's small-file cache holds now (its entries, and the
    /// bytes they count against `cache_size`). Set by the cache itself when
    /// it changes (a fill or an eviction), never on a hit.
    #[inline]
    pub fn set_cache(&self, entries: usize, bytes: usize) {
        self.cache_entries.store(entries as u64, Relaxed);
        self.cache_bytes.store(bytes as u64, Relaxed);
    }

    /// How many files the worker's open-file cache holds open now. Set by
    /// the cache itself when that count changes (a file taken in, dropped
    /// past its interval or taken in as bytes, or all closed), never on a
    /// hit.
    #[inline]
    pub fn set_open_files(&self, n: usize) {
        self.open_files.store(n as u64, Relaxed);
    }

    /// A cached file was compressed on the fly with the coding of index
    /// `coding` in `CODINGS` (out of range: not counted).
    #[inline]
    pub fn compressed(&self, coding: usize) {
        if let Some(c) = self.compressions.get(coding) {
            bump(c, 1);
        }
    }

    fn read(&self) -> Totals {
        Totals {
            requests: std::array::from_fn(|i| self.requests[i].load(Relaxed)),
            response_bytes: self.response_bytes.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            open: self.open.load(Relaxed),
            tls_handshakes: std::array::from_fn(|i| self.tls_handshakes[i].load(Relaxed)),
            tls_failures: std::array::from_fn(|i| self.tls_failures[i].load(Relaxed)),
            tls_open: std::array::from_fn(|i| self.tls_open[i].load(Relaxed)),
            h2_connections: self.h2_connections.load(Relaxed),
            h2_streams: self.h2_streams.load(Relaxed),
            cache_entries: self.cache_entries.load(Relaxed),
            cache_bytes: self.cache_bytes.load(Relaxed),
            open_files: self.open_files.load(Relaxed),
            compressions: std::array::from_fn(|i| self.compressions[i].load(Relaxed)),
        }
    }
}

/// One TLS connection counted in `tandem_tls_connections` while it lives:
/// counted once its handshake completes (`count`), uncounted when dropped,
/// whichever way the engine lets go of the connection. Lives and drops on
/// its worker's thread, the only one that writes that worker's counters.
#[derive(Debug)]
pub struct TlsGauge {
    counters: Arc<WorkerCounters>,
    /// The version counted (`true`: TLS 1.3), once the handshake is done.
    counted: Option<bool>,
}

impl TlsGauge {
    pub fn new(counters: Arc<WorkerCounters>) -> TlsGauge {
        TlsGauge {
            counters,
            counted: None,
        }
    }

    /// The handshake completed with TLS 1.3 (`v13`) or 1.2 (once only).
    pub fn count(&mut self, v13: bool) {
        if self.counted.is_none() {
            self.counters.tls_open(v13, true);
            self.counted = Some(v13);
        }
    }
}

impl Drop for TlsGauge {
    fn drop(&mut self) {
        if let Some(v13) = self.counted {
            self.counters.tls_open(v13, false);
        }
    }
}

/// Sums over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub requests: [u64; CLASSES],
    pub response_bytes: u64,
    pub accepted: u64,
    /// A gauge: only live workers' connections count.
    pub open: u64,
    pub tls_handshakes: [u64; 2],
    pub tls_failures: [u64; TLS_FAILURES],
    /// A gauge, as `open`: TLS connections by version (1.2, 1.3).
    pub tls_open: [u64; 2],
    pub h2_connections: u64,
    pub h2_streams: u64,
    /// Gauges, as `open`: what live workers' caches hold.
    pub cache_entries: u64,
    pub cache_bytes: u64,
    /// A gauge, as `open`: files live workers' open-file caches hold open.
    pub open_files: u64,
    /// Files compressed on the fly: br, zstd, gzip.
    pub compressions: [u64; 3],
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        for (a, b) in self.requests.iter_mut().zip(o.requests) {
            *a = a.wrapping_add(b);
        }
        self.response_bytes = self.response_bytes.wrapping_add(o.response_bytes);
        self.accepted = self.accepted.wrapping_add(o.accepted);
        self.open += o.open;
        for (a, b) in self.tls_handshakes.iter_mut().zip(o.tls_handshakes) {
            *a = a.wrapping_add(b);
        }
        for (a, b) in self.tls_failures.iter_mut().zip(o.tls_failures) {
            *a = a.wrapping_add(b);
        }
        for (a, b) in self.tls_open.iter_mut().zip(o.tls_open) {
            *a += b;
        }
        self.h2_connections = self.h2_connections.wrapping_add(o.h2_connections);
        self.h2_streams = self.h2_streams.wrapping_add(o.h2_streams);
        self.cache_entries += o.cache_entries;
        self.cache_bytes += o.cache_bytes;
        self.open_files += o.open_files;
        for (a, b) in self.compressions.iter_mut().zip(o.compressions) {
            *a = a.wrapping_add(b);
        }
    }
}

#[derive(Debug, Default)]
struct Blocks {
    live: Vec<Arc<WorkerCounters>>,
    /// What ended workers counted (their gauges are not kept).
    retired: Totals,
}

/// Every worker's counters, the daemon's own, and the health state.
#[derive(Debug)]
pub struct Registry {
    blocks: Mutex<Blocks>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    health: AtomicU8,
    engine: Mutex<&'static str>,
}

/// What `/healthz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not accepting yet: 503.
    Starting = 0,
    /// 200.
    Serving = 1,
    /// A graceful stop began (the instance drains): 503.
    Stopping = 2,
}

/// What a scrape shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub totals: Totals,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub engine: &'static str,
}

impl Registry {
    pub fn new(engine: &'static str) -> Arc<Registry> {
        Arc::new(Registry {
            blocks: Mutex::new(Blocks::default()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            health: AtomicU8::new(Health::Starting as u8),
            engine: Mutex::new(engine),
        })
    }

    /// A new worker's block, counted from now on.
    pub fn worker(&self) -> Arc<WorkerCounters> {
        let w = Arc::new(WorkerCounters::default());
        self.lock().live.push(w.clone());
        w
    }

    /// A worker ended: keep its totals, drop its block from the live list.
    pub fn retire(&self, w: &Arc<WorkerCounters>) {
        let mut b = self.lock();
        if let Some(i) = b.live.iter().position(|x| Arc::ptr_eq(x, w)) {
            let gone = b.live.swap_remove(i);
            let t = gone.read();
            // Counters only: an ended worker has no connections or cache.
            b.retired.add(&Totals {
                open: 0,
                tls_open: [0; 2],
                cache_entries: 0,
                cache_bytes: 0,
                open_files: 0,
                ..t
            });
        }
    }

    pub fn reloaded(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// The engine the current workers run (for `tandem_info`).
    pub fn set_engine(&self, name: &'static str) {
        *self.engine.lock().unwrap_or_else(|e| e.into_inner()) = name;
    }

    /// The first workers accept: `/healthz` says 200.
    pub fn set_serving(&self) {
        let _ = self.health.compare_exchange(
            Health::Starting as u8,
            Health::Serving as u8,
            Relaxed,
            Relaxed,
        );
    }

    /// A graceful stop began: `/healthz` says 503 from now on.
    pub fn set_stopping(&self) {
        self.health.store(Health::Stopping as u8, Relaxed);
    }

    pub fn health(&self) -> Health {
        match self.health.load(Relaxed) {
            0 => Health::Starting,
            1 => Health::Serving,
            _ => Health::Stopping,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        let totals = {
            let b = self.lock();
            let mut t = b.retired;
            for w in &b.live {
                t.add(&w.read());
            }
            t
        };
        Snapshot {
            totals,
            reloads_ok: self.reloads_ok.load(Relaxed),
            reloads_failed: self.reloads_failed.load(Relaxed),
            engine: *self.engine.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The exposition text for a scrape.
    pub fn render(&self) -> String {
        self.snapshot().render(env!("CARGO_PKG_VERSION"))
    }
}

impl Snapshot {
    /// Prometheus text format 0.0.4: `# HELP`, `# TYPE`, then the samples.
    pub fn render(&self, version: &str) -> String {
        let t = &self.totals;
        let mut out = String::with_capacity(2048);
        let s = &mut out;
        metric(
            s,
            "tandem_requests_total",
            "counter",
            "Responses finished (whole or cut short), by status class.",
            by("code", &CLASS_LABELS, t.requests),
        );
        metric(
            s,
            "tandem_response_bytes_total",
            "counter",
            "Response bytes (status line, header and body) that reached the socket.",
            one(t.response_bytes),
        );
        metric(
            s,
            "tandem_connections_open",
            "gauge",
            "Client connections open now (all workers, draining ones included).",
            one(t.open),
        );
        metric(
            s,
            "tandem_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            one(t.accepted),
        );
        render_tls_h2(s, t);
        metric(
            s,
            "tandem_cache_entries",
            "gauge",
            "Paths the small-file caches hold now (all workers).",
            one(t.cache_entries),
        );
        metric(
            s,
            "tandem_cache_bytes",
            "gauge",
            "Bytes the small-file caches hold now, as counted against cache_size (all workers).",
            one(t.cache_bytes),
        );
        metric(
            s,
            "tandem_open_file_cache_entries",
            "gauge",
            "Open files the open-file caches hold now (all workers).",
            one(t.open_files),
        );
        metric(
            s,
            "tandem_compressions_total",
            "counter",
            "Cached files compressed on the fly (each once per coding while cached), by coding.",
            by("coding", &CODINGS, t.compressions),
        );
        metric(
            s,
            "tandem_reloads_total",
            "counter",
            "Reloads (SIGHUP), by result.",
            by(
                "result",
                &["ok", "failed"],
                [self.reloads_ok, self.reloads_failed],
            ),
        );
        let info = format!("{{engine=\"{}\",version=\"{version}\"}}", self.engine);
        metric(
            s,
            "tandem_info",
            "gauge",
            "The running engine and version (always 1).",
            [(info, 1)],
        );
        out
    }
}

/// The TLS and HTTP/2 metrics: handshakes, failures and open TLS
/// connections by version or reason; HTTP/2 connections and streams.
fn render_tls_h2(s: &mut String, t: &Totals) {
    metric(
        s,
        "tandem_tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by protocol version.",
        by("version", &TLS_VERSION_LABELS, t.tls_handshakes),
    );
    metric(
        s,
        "tandem_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by reason.",
        by("reason", &TLS_FAILURE_LABELS, t.tls_failures),
    );
    metric(
        s,
        "tandem_tls_connections",
        "gauge",
        "TLS connections open now (handshake done), by protocol version.",
        by("version", &TLS_VERSION_LABELS, t.tls_open),
    );
    metric(
        s,
        "tandem_h2_connections_total",
        "counter",
        "Connections that spoke HTTP/2 (ALPN h2, or the preface in cleartext).",
        one(t.h2_connections),
    );
    metric(
        s,
        "tandem_h2_streams_total",
        "counter",
        "HTTP/2 streams opened (requests; refused ones not counted).",
        one(t.h2_streams),
    );
}

/// One metric: `# HELP`, `# TYPE`, then a sample per (label set, value);
/// the label set is `{key="label"}`, or empty.
fn metric<V: std::fmt::Display>(
    s: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, V)>,
) {
    let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    for (labels, v) in samples {
        let _ = writeln!(s, "{name}{labels} {v}");
    }
}

/// The one unlabelled sample of a metric.
fn one<V>(v: V) -> [(String, V); 1] {
    [(String::new(), v)]
}

/// A sample per label of `key`, with the values in the labels' order.
fn by<'a, V>(
    key: &'a str,
    labels: &'a [&str],
    values: impl IntoIterator<Item = V> + 'a,
) -> impl Iterator<Item = (String, V)> + 'a {
    labels
        .iter()
        .zip(values)
        .map(move |(l, v)| (format!("{{{key}=\"{l}\"}}"), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_gauge_counts_while_the_connection_lives() {
        let r = Registry::new("epoll");
        let w = r.worker();
        let sample = |v: &str| {
            let text = r.render();
            let name = format!("tandem_tls_connections{{version=\"{v}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&name)).unwrap();
            line[name.len()..].parse::<u64>().unwrap()
        };
        let mut a = TlsGauge::new(w.clone());
        let mut b = TlsGauge::new(w.clone());
        let mut c = TlsGauge::new(w.clone());
        let handshaking = TlsGauge::new(w.clone());
        a.count(true);
        a.count(true); // once per connection
        b.count(true);
        c.count(false);
        assert_eq!((sample("TLSv1.3"), sample("TLSv1.2")), (2, 1));
        drop(a);
        drop(handshaking);
        assert_eq!((sample("TLSv1.3"), sample("TLSv1.2")), (1, 1));
        drop(c);
        assert_eq!((sample("TLSv1.3"), sample("TLSv1.2")), (1, 0));
        r.retire(&w);
        assert_eq!(
            sample("TLSv1.3"),
            0,
            "a retired worker's connections are gone"
        );
        drop(b);
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerCounters>(), 128);
        assert_eq!(std::mem::size_of::<WorkerCounters>() % 128, 0);
    }

    /// The open-file caches' gauge: the sum over live workers of what
    /// each last set; an ended worker's files are gone with it.
    #[test]
    fn open_file_cache_gauge_sums_live_workers() {
        let r = Registry::new("epoll");
        let sample = || {
            let text = r.render();
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("tandem_open_file_cache_entries "))
                .unwrap_or_else(|| panic!("no sample in\n{text}"));
            assert!(
                text.contains("# TYPE tandem_open_file_cache_entries gauge\n"),
                "{text}"
            );
            line.parse::<u64>().unwrap()
        };
        assert_eq!(sample(), 0);
        let a = r.worker();
        let b = r.worker();
        a.set_open_files(3);
        b.set_open_files(5);
        assert_eq!(r.snapshot().totals.open_files, 8);
        assert_eq!(sample(), 8, "summed over workers");
        a.set_open_files(2);
        assert_eq!(sample(), 7, "a gauge: set, not added");
        r.retire(&a);
        assert_eq!(sample(), 5, "a retired worker's files are gone");
        let c = r.worker();
        c.set_open_files(1);
        assert_eq!(sample(), 6);
        b.set_open_files(0);
        c.set_open_files(0);
        assert_eq!(sample(), 0, "all closed");
    }

    #[test]
    fn totals_survive_retirement_and_open_does_not() {
        let r = Registry::new("epoll");
        let a = r.worker();
        let b = r.worker();
        a.response(200, 100);
        a.response(404, 50);
        b.response(206, 10);
        b.response(599, 1);
        b.response(101, 1);
        a.accepted();
        b.accepted();
        a.set_open(3);
        b.set_open(1);
        a.set_cache(2, 700);
        b.set_cache(1, 300);
        let s = r.snapshot();
        assert_eq!(s.totals.requests, [1, 2, 0, 1, 1]);
        assert_eq!(s.totals.response_bytes, 162);
        assert_eq!(s.totals.open, 4);
        assert_eq!((s.totals.cache_entries, s.totals.cache_bytes), (3, 1000));
        r.retire(&a);
        r.retire(&a); // twice is harmless
        let c = r.worker();
        c.response(304, 5);
        let s2 = r.snapshot();
        assert_eq!(s2.totals.requests, [1, 2, 1, 1, 1]);
        assert_eq!(s2.totals.response_bytes, 167);
        assert_eq!(s2.totals.accepted, 2);
        assert_eq!(s2.totals.open, 1, "a retired worker's connections are gone");
        assert_eq!(
            (s2.totals.cache_entries, s2.totals.cache_bytes),
            (1, 300),
            "and so is its cache"
        );
        r.reloaded(true);
        r.reloaded(false);
        r.reloaded(true);
        r.set_engine("io_uring");
        let text = r.render();
        assert!(
            text.contains("tandem_reloads_total{result=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tandem_reloads_total{result=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tandem_requests_total{code=\"3xx\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tandem_cache_bytes 300\n"), "{text}");
        assert!(text.contains("tandem_cache_entries 1\n"), "{text}");
        assert!(
            text.contains("tandem_info{engine=\"io_uring\",version=\""),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
