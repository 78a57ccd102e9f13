//! No heap allocation per request in steady state, for a cached file:
//! `Conn` and the responder driven in-process (no sockets) under a counting
//! global allocator. The engines add none of their own per request (their
//! buffers and segment lists are reused); this covers the sans-IO core and
//! the file layer, where the per-request work is.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tandem::config::Config;
use tandem::files::{Responder, Settings};
use tandem::http::{Conn, Ctx, Limits, Notes, Now, Respond, Segment, Transmit};
use tandem::log::{Level, LogFormat};
use tandem::metrics::WorkerCounters;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread that drives the requests: only its allocations
    /// count, not those of the test harness's other threads (which made the
    /// count flaky under load). A const-initialised Cell: reading it never
    /// allocates, so the allocator may ask.
    static DRIVER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this allocation is one to count.
fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed) && DRIVER.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above, that is from System.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as for dealloc; `n` is the caller's new size.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `n` requests after `warm` requests, all answered.
fn allocations(req: &[u8], n: u64, cfg: &str, log_format: LogFormat) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1k.bin"), vec![b'x'; 1024]).unwrap();
    std::fs::write(dir.path().join("x.css"), vec![b'c'; 1024]).unwrap();
    std::fs::write(dir.path().join("x.css.gz"), vec![b'z'; 300]).unwrap();
    let cfg = Config::parse(
        &format!("workers = 1\ncache_revalidate = \"1h\"\n{cfg}"),
        "t",
    )
    .unwrap();
    let files = Responder::new(dir.path(), Settings::from_config(&cfg)).unwrap();
    let limits = Limits {
        log_format,
        ..Limits::from_config(&cfg)
    };
    let now = Now::new(Instant::now(), SystemTime::now());
    let mut conn = Conn::new("127.0.0.1:1".parse().unwrap(), now.instant(), &limits);
    let mut log = Vec::with_capacity(1 << 20);
    let mut notes = Notes::new(Level::Info);
    let stats = std::sync::Arc::new(WorkerCounters::default());
    // The worker's own state for the responder: its cache.
    let mut local = files.local(&stats, usize::MAX);
    let mut pool = tandem::http::BufferPool::default();
    let fds = tandem::http::FdBudget::unlimited();
    let mut one = || {
        let mut ctx = Ctx {
            now: &now,
            responder: &files,
            local: &mut *local,
            limits: &limits,
            log: Some(&mut log),
            notes: &mut notes,
            stats: &stats,
            pool: &mut pool,
            fds: &fds,
            drain_grace: Duration::ZERO,
        };
        conn.handle_input(&mut ctx, req);
        let mut sent = 0;
        while let Transmit::Send(segs) = conn.poll_transmit() {
            if sent == 0 {
                let Segment::Bytes(head) = &segs[0] else {
                    panic!("no head")
                };
                assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"), "{head:?}");
            }
            let k = segs.iter().map(|s| s.len() as usize).sum();
            sent += k;
            conn.handle_sent(&mut ctx, k);
        }
        assert!(sent > 300, "answered");
        log.clear();
    };
    for _ in 0..100 {
        one();
    }
    ALLOCS.store(0, Ordering::Relaxed);
    DRIVER.with(|d| d.set(true));
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..n {
        one();
    }
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCS.load(Ordering::Relaxed)
}

#[test]
fn a_cached_file_costs_no_allocation_per_request() {
    let wrk = b"GET /1k.bin HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";
    let browser = b"GET /x.css?v=3 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\nAccept: text/css,*/*;q=0.1\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: http://localhost:8080/\r\nConnection: keep-alive\r\n\r\n";
    let rules = "[[rules]]\nmatch = \"*\"\nheaders = { \"Cache-Control\" = \"max-age=60\" }\n";
    for (name, req, cfg, format) in [
        ("wrk-style GET", &wrk[..], "", LogFormat::Combined),
        (
            "browser GET of a variant",
            &browser[..],
            "",
            LogFormat::Combined,
        ),
        (
            "wrk-style GET with a rule",
            &wrk[..],
            rules,
            LogFormat::Combined,
        ),
        (
            "browser GET, JSON access log",
            &browser[..],
            "",
            LogFormat::Json,
        ),
    ] {
        let n = allocations(req, 1000, cfg, format);
        assert_eq!(n, 0, "{name}: {n} allocations in 1000 requests");
    }
}
