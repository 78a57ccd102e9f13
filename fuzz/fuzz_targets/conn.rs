//! Drive a plaintext connection as an engine holds one (`tandem::tls::Session`:
//! an HTTP/1.1 `Conn`, or with `http2_cleartext` the preface sniffing and an
//! HTTP/2 `H2Conn`) with an arbitrary script of engine events.
//!
//! Input layout: `[n] control[n] request-bytes...`
//! - `n` (one byte) is the length of the control section; the rest of the
//!   input after it is the request bytes the "client" sends. A seed that is
//!   `\x00` followed by a plain HTTP request is a request with default limits
//!   and an empty script.
//! - control: a limits selector (0 = the unit tests' limits, otherwise
//!   config-valid limits and timeouts drawn from the next bytes), a responder
//!   selector, a mode (0: HTTP/1.1; 1: `http2_cleartext` on, the request bytes
//!   as they are; 2: HTTP/2, the client's frames made from the request bytes
//!   by `h2::client_stream`, what the server wrote checked by
//!   `h2::check_output`), then script ops until the control bytes run out
//!   (see `Op`).
//!
//! The responder is the file responder, except that a target with `?parts`
//! in it gets its body cut into several segments (`Body::Parts`: bytes, file
//! ranges, an empty segment), so responses of more than two segments go
//! through the Conn too.
//!
//! Part 1, the script: events as an engine would deliver them (input chunks
//! while `wants_input`, writes of any prefix of the offered segments reported
//! with `handle_sent(n)`, n never above the offer, EOF, errors, time passing
//! and timeouts, graceful shutdown, `handle_shutdown` when asked, unsent
//! bytes at the idle deadline), then an epilogue that sends the rest of the
//! input, acknowledges everything, delivers EOF and fires deadlines. A write
//! may be asynchronous (`Write`): the engine clones the segments it covers,
//! other events go on (input, EOF, timeouts, drain, errors), and the bytes
//! are reported later, in one or several `handle_sent`, from the clones.
//! Invariants after every step:
//! - no panic; `poll_transmit` is pure (twice gives the same answer);
//! - `is_closed()` iff `poll_transmit` is `Close`, and once closed it stays so;
//! - an open connection always has a deadline (`poll_timeout` is `Some`);
//! - `Send` lists at least one segment and never an empty one; file ranges
//!   lie inside their file;
//! - after `handle_sent(n)` with n short of the offer, the next offer is the
//!   rest of the same one: the same segments, the first n bytes dropped, the
//!   bytes left unchanged (bytes acknowledged never exceed bytes offered);
//! - while a write is in flight, the offer stays the segments the engine
//!   cloned (advanced by what was reported) until the Conn closes; the clones'
//!   bytes do not change under the engine whatever the Conn is told meanwhile;
//! - nothing outside the served root is ever offered (a symlink points out);
//! - after EOF with everything acknowledged the connection ends up closed.
//!
//! Part 2, whole versus split (on unless `TANDEM_FUZZ_SPLIT_CHECK=0`): the
//! request bytes fed in one `handle_input` versus in the chunks the script's
//! `Feed` ops cut, at a fixed time, acknowledging everything after each chunk,
//! then EOF, must give byte-identical output (all bytes of all segments, with
//! markers where `Shutdown` and `Close` came), the same access log (except
//! the request field of rejected requests, see `normalize_log`) and the same
//! error-log notes. A third run feeds each chunk while the response before it
//! is still being written (the engine holds clones of its segments and
//! reports them after the input): the same output again.
#![no_main]

use std::any::Any;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arbitrary::Unstructured;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tandem::files::{Responder, Settings};
use tandem::http::{
    Body, Ctx, FileRange, Limits, Notes, Now, ParseLimits, Reply, Request, Respond, Segment,
    Transmit,
};
use tandem::log::Level;
use tandem::metrics::WorkerCounters;
use tandem::tls::Session;

#[path = "h2_frames.rs"]
mod h2;

// ---- the responder: the file responder, bodies cut into parts on request ----

struct Fuzz(Responder);

impl Respond for Fuzz {
    fn respond(
        &self,
        req: &Request<'_>,
        now: &Now,
        local: &mut dyn Any,
        notes: &mut Notes,
    ) -> Reply {
        let mut reply = self.0.respond(req, now, local, notes);
        if req.target.contains("?parts") {
            reply.body = into_parts(std::mem::take(&mut reply.body));
        }
        reply
    }

    fn local(&self, stats: &Arc<WorkerCounters>, fd_budget: usize) -> Box<dyn Any> {
        self.0.local(stats, fd_budget)
    }
}

/// The same bytes and file ranges cut into several segments, with bytes
/// around a file body and an empty segment (which the Conn must drop).
fn into_parts(body: Body) -> Body {
    let bytes = |b: &'static [u8]| Segment::Bytes(Bytes::from_static(b));
    match body {
        Body::File(f) => {
            let h = f.len / 2;
            let part = |offset, len| {
                Segment::File(FileRange {
                    file: f.file.clone(),
                    offset,
                    len,
                })
            };
            Body::Parts(vec![
                bytes(b"<"),
                part(f.offset, h),
                bytes(b""),
                part(f.offset + h, f.len - h),
                bytes(b">"),
            ])
        }
        Body::Bytes(b) => {
            let h = b.len() / 2;
            Body::Parts(vec![
                Segment::Bytes(b.slice(..h)),
                Segment::Bytes(b.slice(h..)),
                bytes(b"."),
            ])
        }
        other => other,
    }
}

// ---- the world: a served directory, made once per process ----

/// Bumped whenever the tree below changes, so an old one is never reused.
const TREE: &str = "tandem-fuzz-root-v2";
const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-ROOT\n";

struct World {
    base: Instant,
    responders: Vec<Fuzz>,
    /// (dev, ino) of the file outside the root that must never be served.
    secret: (u64, u64),
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let top = make_tree();
        let www = top.join("www");
        // Four responders over the same tree: dotfiles, error pages,
        // listings, the SPA fallback and variants on or off.
        let settings = |dot: bool, p404: &str, more: bool| {
            let mut cfg = tandem::config::Config::default();
            cfg.serve_dotfiles = dot;
            cfg.error_page_404 = Some(p404.into());
            cfg.error_pages.clear();
            cfg.autoindex = more;
            if more {
                cfg.fallback = "index.html".into();
                cfg.max_ranges = 3;
            } else {
                cfg.precompressed.clear();
            }
            Settings::from_config(&cfg)
        };
        let responders = vec![
            Responder::new(&www, settings(false, "404.html", true)).unwrap(),
            Responder::new(&www, settings(false, "", false)).unwrap(),
            Responder::new(&www, settings(true, "/404.html", true)).unwrap(),
            Responder::new(&www, settings(true, "missing.html", false)).unwrap(),
        ];
        let responders = responders.into_iter().map(Fuzz).collect();
        let m = std::fs::metadata(top.join("secret/secret.txt")).unwrap();
        World {
            base: Instant::now(),
            responders,
            secret: (m.dev(), m.ino()),
        }
    })
}

fn tree_files() -> Vec<(&'static str, Vec<u8>)> {
    let big: Vec<u8> = (0..5000u32)
        .map(|i| b"0123456789abcdef\n"[i as usize % 17])
        .collect();
    vec![
        ("www/index.html", b"<h1>hi</h1>\n".to_vec()),
        ("www/a.txt", b"hello".to_vec()),
        ("www/empty.txt", Vec::new()),
        ("www/big.bin", big),
        ("www/404.html", b"not here\n".to_vec()),
        ("www/.hidden", b"dotfile\n".to_vec()),
        ("www/sub/index.html", b"sub\n".to_vec()),
        ("www/sub/x y.css", b"p{}\n".to_vec()),
        ("www/sub/x y.css.gz", b"GZ-OF-p{}\n".to_vec()),
        ("www/noindex/file.js", b"1\n".to_vec()),
        ("secret/secret.txt", SECRET.to_vec()),
    ]
}

/// A fixed tree under the temp dir, shared by all fuzzer processes: built in a
/// private directory and renamed into place, so a reader never sees it half made.
fn make_tree() -> PathBuf {
    let top = std::env::temp_dir().join(TREE);
    if tree_ok(&top) {
        return top;
    }
    let tmp = std::env::temp_dir().join(format!("{TREE}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_794_556_800);
    for (name, body) in tree_files() {
        let p = tmp.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &body).unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    std::fs::create_dir_all(tmp.join("www/emptydir")).unwrap();
    std::os::unix::fs::symlink("a.txt", tmp.join("www/link.txt")).unwrap();
    std::os::unix::fs::symlink("sub", tmp.join("www/linkdir")).unwrap();
    std::os::unix::fs::symlink("../secret/secret.txt", tmp.join("www/leak.txt")).unwrap();
    std::os::unix::fs::symlink("../secret", tmp.join("www/leakdir")).unwrap();
    if std::fs::rename(&tmp, &top).is_err() {
        // Another process won the race (or a stale tree is in the way).
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            tree_ok(&top),
            "{} is not the expected tree: remove it",
            top.display()
        );
    }
    top
}

fn tree_ok(top: &Path) -> bool {
    tree_files()
        .iter()
        .all(|(name, body)| std::fs::read(top.join(name)).is_ok_and(|b| &b == body))
        && std::fs::read_link(top.join("www/leakdir")).is_ok()
}

fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TANDEM_FUZZ_DEBUG").is_ok_and(|v| v == "1"))
}

fn split_check() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TANDEM_FUZZ_SPLIT_CHECK").map_or(true, |v| v != "0"))
}

// ---- the clock and the context ----

/// Fixed wall-clock origin, so Date headers and log times are deterministic.
const WALL0: u64 = 1_795_375_297; // Sun, 22 Nov 2026 19:21:37 GMT

struct Env {
    responder: &'static Fuzz,
    limits: Limits,
    now: Now,
    offset: Duration,
    log: Vec<u8>,
    notes: Notes,
    drain_grace: Duration,
    stats: WorkerCounters,
    pool: tandem::http::BufferPool,
    /// The responder's per-worker state (its cache).
    local: Box<dyn Any>,
    fds: tandem::http::FdBudget,
}

impl Env {
    fn new(responder: &'static Fuzz, limits: Limits) -> Env {
        let mut e = Env {
            responder,
            limits,
            now: Now::new(world().base, SystemTime::UNIX_EPOCH),
            offset: Duration::ZERO,
            log: Vec::new(),
            notes: Notes::new(Level::Debug),
            drain_grace: Duration::ZERO,
            stats: WorkerCounters::default(),
            pool: Default::default(),
            local: responder.local(&Arc::new(WorkerCounters::default()), usize::MAX),
            fds: tandem::http::FdBudget::unlimited(),
        };
        e.set_offset(Duration::ZERO);
        e
    }

    fn set_offset(&mut self, d: Duration) {
        self.offset = d;
        self.now = Now::new(
            world().base + d,
            SystemTime::UNIX_EPOCH + Duration::from_secs(WALL0) + d,
        );
    }

    fn advance(&mut self, d: Duration) {
        self.set_offset(self.offset + d);
    }

    /// Move the clock to `t` if that is later than now.
    fn advance_to(&mut self, t: Instant) {
        let now = self.now.instant();
        if t > now {
            self.advance(t - now);
        }
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            now: &self.now,
            responder: self.responder,
            local: &mut *self.local,
            limits: &self.limits,
            log: Some(&mut self.log),
            notes: &mut self.notes,
            stats: &self.stats,
            pool: &mut self.pool,
            drain_grace: self.drain_grace,
            fds: &self.fds,
        }
    }

    /// A plaintext connection as an engine holds one: HTTP/1.1, or with
    /// `h2.cleartext` undecided until its first bytes (the HTTP/2 preface
    /// makes it HTTP/2).
    fn conn(&self) -> Session {
        Session::Plain(tandem::h2::Http::plain(
            "192.0.2.7:40000".parse().unwrap(),
            self.now.instant(),
            &self.limits,
        ))
    }
}

/// Limits a config file could give (Config::validate: 256 <= max_header_size,
/// 16 <= max_target_size <= max_header_size; linger is fixed at 2 s), kept small.
fn limits(u: &mut Unstructured<'_>) -> arbitrary::Result<Limits> {
    let sel: u8 = u.arbitrary()?;
    if sel == 0 {
        return Ok(Limits::small());
    }
    let max_header_size = u.int_in_range(256..=2048usize)?;
    let max_target_size = u.int_in_range(16..=max_header_size.min(1024))?;
    // Config::validate: header and send timeouts more than 0; keep-alive may be 0.
    let ms = |u: &mut Unstructured<'_>, min: u64| -> arbitrary::Result<Duration> {
        Ok(Duration::from_millis(u.int_in_range(min..=30_000u64)?))
    };
    Ok(Limits {
        parse: ParseLimits {
            max_header_size,
            max_target_size,
        },
        max_body_size: u.int_in_range(0..=300u64)?,
        keepalive_timeout: ms(u, 0)?,
        header_timeout: ms(u, 1)?,
        send_timeout: ms(u, 1)?,
        ..Limits::small()
    })
}

// ---- what the Conn offers, as plain data ----

/// A segment as where it is: bytes by pointer and length (two answers are the
/// same answer when they are the same slice of the same buffer; comparing
/// contents on every poll made the target several times slower), a file
/// range by descriptor, offset and length.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Bytes { ptr: usize, len: usize },
    File { fd: i32, offset: u64, len: u64 },
}

impl Seg {
    fn of(s: &Segment) -> Seg {
        match s {
            Segment::Bytes(b) => Seg::Bytes {
                ptr: b.as_ptr() as usize,
                len: b.len(),
            },
            Segment::File(f) => Seg::File {
                fd: f.file.as_raw_fd(),
                offset: f.offset,
                len: f.len,
            },
        }
    }

    fn len(&self) -> u64 {
        match *self {
            Seg::Bytes { len, .. } => len as u64,
            Seg::File { len, .. } => len,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Offer {
    Idle,
    Send(Vec<Seg>),
    Shutdown,
    Close,
}

impl Offer {
    fn of(t: &Transmit<'_>) -> Offer {
        match *t {
            Transmit::Idle => Offer::Idle,
            Transmit::Send(segs) => Offer::Send(segs.iter().map(Seg::of).collect()),
            Transmit::Shutdown => Offer::Shutdown,
            Transmit::Close => Offer::Close,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Offer::Send(v) => v.iter().map(Seg::len).sum(),
            _ => 0,
        }
    }

    /// The offer once its first `n` bytes are sent (`n` short of all of it).
    fn advanced(&self, mut n: u64) -> Offer {
        let Offer::Send(v) = self else {
            return self.clone();
        };
        let mut out = Vec::new();
        for s in v {
            let k = n.min(s.len());
            n -= k;
            match *s {
                _ if k == s.len() => {}
                Seg::Bytes { ptr, len } => out.push(Seg::Bytes {
                    ptr: ptr + k as usize,
                    len: len - k as usize,
                }),
                Seg::File { fd, offset, len } => out.push(Seg::File {
                    fd,
                    offset: offset + k,
                    len: len - k,
                }),
            }
        }
        Offer::Send(out)
    }
}

thread_local! {
    /// File ranges already checked against their file: (the file, end of the
    /// range). Holding the `Arc` keeps the descriptor from being reused by
    /// another file while it is here. Cleared for each input.
    static CHECKED: std::cell::RefCell<Vec<(Arc<File>, u64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A file range must lie inside its file, and the file inside the root. One
/// fstat per range end: partial sends move the offset, not the end.
fn check_file(f: &FileRange) {
    let end = f.offset.checked_add(f.len);
    let seen = CHECKED.with_borrow(|v| {
        v.iter()
            .any(|(g, e)| Arc::ptr_eq(g, &f.file) && Some(*e) == end)
    });
    if seen {
        return;
    }
    let m = f.file.metadata().unwrap();
    assert!(
        end.is_some_and(|e| e <= m.len()),
        "file range {}+{} past the end of a {}-byte file",
        f.offset,
        f.len,
        m.len()
    );
    assert!(
        (m.dev(), m.ino()) != world().secret,
        "file outside the root offered"
    );
    CHECKED.with_borrow_mut(|v| {
        if v.len() >= 64 {
            v.clear();
        }
        v.push((f.file.clone(), end.unwrap()));
    });
}

/// Poll twice (it must be pure) and check what a single offer must satisfy.
fn poll(c: &Session) -> Offer {
    let t = c.poll_transmit();
    let a = Offer::of(&t);
    let b = Offer::of(&c.poll_transmit());
    assert_eq!(a, b, "poll_transmit is not pure");
    assert_eq!(
        c.is_closed(),
        a == Offer::Close,
        "is_closed vs poll_transmit: {a:?}"
    );
    if !c.is_closed() {
        assert!(
            c.poll_timeout().is_some(),
            "open connection without a deadline: {a:?}"
        );
    }
    if let Transmit::Send(segs) = t {
        assert!(!segs.is_empty(), "Send of no segments");
        for s in segs {
            assert!(!s.is_empty(), "empty segment offered: {a:?}");
            if let Segment::File(f) = s {
                check_file(f);
            }
        }
    }
    a
}

/// Take the first `n` bytes of `segs` (at most all of them) off the front,
/// reading them as the kernel would.
fn take_bytes(segs: &mut Vec<Segment>, n: u64, out: &mut Vec<u8>) {
    let mut n = n;
    while n > 0 && !segs.is_empty() {
        let s = &mut segs[0];
        let k = n.min(s.len());
        match s {
            Segment::Bytes(b) => out.extend_from_slice(&b[..k as usize]),
            Segment::File(f) => {
                let at = out.len();
                out.resize(at + k as usize, 0);
                f.file
                    .read_exact_at(&mut out[at..], f.offset)
                    .expect("file range offered but not readable");
            }
        }
        s.advance(k);
        n -= k;
        if s.is_empty() {
            segs.remove(0);
        }
    }
}

/// The contents of the byte segments of the current offer after its first
/// `n` bytes (file ranges are checked by position: files do not change).
fn bytes_after(c: &Session, n: u64) -> Vec<u8> {
    let Transmit::Send(segs) = c.poll_transmit() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut skip = n;
    for s in segs {
        let k = skip.min(s.len());
        skip -= k;
        if let Segment::Bytes(b) = s {
            out.extend_from_slice(&b[k as usize..]);
        }
    }
    out
}

/// An asynchronous write in flight: clones of the segments it reads.
struct Hold {
    /// The clones, advanced past the bytes reported so far.
    segs: Vec<Segment>,
    /// What the write sends, read when it started; `done` of it is reported.
    data: Vec<u8>,
    done: usize,
}

/// Checks that span calls: Close is sticky, acknowledgements line up, an
/// asynchronous write sees its segments stay put.
struct Tracker {
    /// Every byte acknowledged, in order (kept for HTTP/2 cases only).
    wire: Option<Vec<u8>>,
    closed: bool,
    offered_total: u64,
    acked_total: u64,
    hold: Option<Hold>,
}

impl Tracker {
    fn new() -> Tracker {
        Tracker {
            wire: None,
            closed: false,
            offered_total: 0,
            acked_total: 0,
            hold: None,
        }
    }

    fn after(&mut self, c: &Session, what: &dyn std::fmt::Debug) -> Offer {
        let o = poll(c);
        if self.closed {
            assert_eq!(o, Offer::Close, "reopened after Close by {what:?}");
        }
        self.closed = o == Offer::Close;
        if let (Some(h), false) = (&self.hold, self.closed) {
            // Whatever happened, the write in flight still reads what the
            // Conn offers: handle_sent will count from where it started.
            let held: Vec<Seg> = h.segs.iter().map(Seg::of).collect();
            assert!(
                matches!(&o, Offer::Send(v) if v.starts_with(&held)),
                "{what:?} while a write of {held:?} was in flight; now offered {o:?}"
            );
        }
        o
    }

    /// A write of `n` bytes (at most the offer), reported at once.
    fn send(&mut self, env: &mut Env, c: &mut Session, n: u64) -> Offer {
        let before = poll(c);
        let total = before.len();
        let n = n.min(total);
        // On a short send, the rest must come next, unchanged.
        let rest = (n < total).then(|| bytes_after(c, n));
        if let (Some(wire), Transmit::Send(segs)) = (self.wire.as_mut(), c.poll_transmit()) {
            take_bytes(&mut segs.to_vec(), n, wire);
        }
        self.offered_total += total;
        self.acked_total += n;
        assert!(self.acked_total <= self.offered_total);
        c.handle_sent(&mut env.ctx(), n as usize);
        let after = self.after(c, &"handle_sent");
        if let Some(rest) = rest {
            let want = before.advanced(n);
            assert_eq!(
                after, want,
                "short send of {n} of {total} bytes did not resume where it stopped"
            );
            assert!(
                bytes_after(c, 0) == rest,
                "short send of {n}: the bytes left changed"
            );
            // The part not acknowledged is offered again.
            self.offered_total -= total - n;
        }
        after
    }

    /// Start an asynchronous write of `n` bytes (at most the offer): clone
    /// the segments it covers and read what it will send. Nothing is
    /// reported yet. One write at a time, as an engine does.
    fn start_write(&mut self, c: &Session, n: u64) {
        if self.hold.is_some() {
            return;
        }
        let Transmit::Send(offered) = c.poll_transmit() else {
            return;
        };
        let mut segs = Vec::new();
        let mut covered = 0;
        for s in offered {
            if covered >= n {
                break;
            }
            covered += s.len();
            segs.push(s.clone());
        }
        let n = n.min(covered);
        if n == 0 {
            return;
        }
        let mut data = Vec::new();
        take_bytes(&mut segs.clone(), n, &mut data);
        self.hold = Some(Hold {
            segs,
            data,
            done: 0,
        });
    }

    /// The write in flight reports `k` more bytes (at least 1, at most what
    /// is left of it), read from the clones.
    fn report(&mut self, env: &mut Env, c: &mut Session, k: u64) {
        let Some(mut h) = self.hold.take() else {
            return;
        };
        let k = k.clamp(1, (h.data.len() - h.done) as u64);
        let mut got = Vec::new();
        take_bytes(&mut h.segs, k, &mut got);
        assert!(
            got[..] == h.data[h.done..h.done + k as usize],
            "the bytes of a write in flight changed under it"
        );
        h.done += k as usize;
        if h.done < h.data.len() {
            self.hold = Some(h);
        }
        if self.closed {
            // An engine finishing a write on a closed Conn: nothing to count.
            c.handle_sent(&mut env.ctx(), k as usize);
            self.after(c, &"handle_sent after Close");
        } else {
            let before = poll(c).len();
            assert!(k <= before, "write of {k} in flight, {before} offered");
            self.send(env, c, k);
        }
    }

    /// Finish the write in flight, `chunk` bytes a report.
    fn finish_write(&mut self, env: &mut Env, c: &mut Session, chunk: u64) {
        for _ in 0..100_000 {
            if self.hold.is_none() {
                return;
            }
            self.report(env, c, chunk);
        }
        panic!("write in flight does not end");
    }

    /// Finish the write in flight, then acknowledge everything offered (at
    /// most `chunk` bytes a write), answer Shutdown, until Idle or Close.
    fn drain(&mut self, env: &mut Env, c: &mut Session, chunk: u64) {
        self.finish_write(env, c, chunk);
        for _ in 0..100_000 {
            match poll(c) {
                Offer::Idle => return,
                Offer::Close => {
                    self.closed = true;
                    return;
                }
                Offer::Shutdown => {
                    c.handle_shutdown();
                    let o = self.after(c, &"handle_shutdown");
                    assert_ne!(
                        o,
                        Offer::Shutdown,
                        "Shutdown offered again after handle_shutdown"
                    );
                }
                o => {
                    let n = chunk.min(o.len()).max(1);
                    self.send(env, c, n);
                }
            }
        }
        panic!("drain does not end");
    }
}

// ---- the script ----

#[derive(Debug)]
enum Op {
    /// The next `len` request bytes arrive (a split point), if the engine
    /// would read now (`wants_input`).
    Feed(u16),
    /// One write of `n` bytes of the current offer (n clamped to it); while
    /// a write is in flight, `n` more of its bytes are reported instead.
    Send(u16),
    /// An asynchronous write of `n` bytes of the current offer starts: the
    /// engine clones the segments and reports them with later `Send`s (or
    /// `Drain`, or the epilogue). Nothing if one is in flight already.
    Write(u16),
    /// Finish the write in flight, then write everything offered, `chunk`
    /// bytes a time.
    Drain(u16),
    Eof,
    Error,
    /// Time passes; the engine calls `handle_timeout` if the deadline passed.
    Advance(u32),
    /// The engine wakes at the deadline.
    Deadline,
    /// `handle_timeout` called anyway (spurious wake-up).
    Timeout,
    /// The engine wakes at the deadline and, if the Conn is idle, reports
    /// `n` bytes of the last response still in the socket (`handle_unsent`).
    Unsent(u16),
    BeginShutdown(u16),
    HandleShutdown,
}

fn op(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
    Ok(match u.arbitrary::<u8>()? % 16 {
        0..=3 => Op::Feed(u.arbitrary()?),
        4 => Op::Send(u.arbitrary()?),
        5 => Op::Write(u.arbitrary()?),
        6..=7 => Op::Drain(u.arbitrary::<u16>()?.max(1)),
        8 => Op::Eof,
        9 => Op::Error,
        10 => Op::Advance(u.arbitrary::<u16>()? as u32 * 4),
        11..=12 => Op::Deadline,
        13 => match u.arbitrary::<bool>()? {
            true => Op::Timeout,
            false => Op::Unsent(u.arbitrary()?),
        },
        14 => Op::BeginShutdown(u.arbitrary()?),
        _ => Op::HandleShutdown,
    })
}

struct Case {
    limits: Limits,
    responder: &'static Fuzz,
    ops: Vec<Op>,
    req: Vec<u8>,
    /// An HTTP/2 case: the largest frame its client allows.
    h2: Option<u32>,
}

fn decode(data: &[u8]) -> Option<Case> {
    let (&n, rest) = data.split_first()?;
    let n = (n as usize).min(rest.len());
    let (ctl, req) = rest.split_at(n);
    let mut u = Unstructured::new(ctl);
    let mut limits = limits(&mut u).unwrap_or_else(|_| Limits::small());
    let w = world();
    let responder = &w.responders[u.arbitrary::<u8>().unwrap_or(0) as usize % w.responders.len()];
    // 0: HTTP/1.1; 1: http2_cleartext on, the bytes as they are (HTTP/1.1
    // through the preface sniffing); 2: HTTP/2, the client's frames made
    // from the bytes (`h2::client_stream`).
    let mode = u.arbitrary::<u8>().unwrap_or(0) % 3;
    limits.h2.cleartext = mode > 0;
    let (req, h2) = match mode {
        2 => {
            let (stream, max_frame) = h2::client_stream(req);
            (stream, Some(max_frame))
        }
        _ => (req.to_vec(), None),
    };
    let mut ops = Vec::new();
    while !u.is_empty() {
        match op(&mut u) {
            Ok(o) => ops.push(o),
            Err(_) => break,
        }
    }
    Some(Case {
        limits,
        responder,
        ops,
        req,
        h2,
    })
}

fn run_script(case: &Case) {
    let mut env = Env::new(case.responder, case.limits.clone());
    let mut c = env.conn();
    let mut t = Tracker::new();
    t.wire = case.h2.map(|_| Vec::new());
    let mut pos = 0usize; // request bytes delivered so far
    let mut eof = false;
    t.after(&c, &"new");
    for op in &case.ops {
        match *op {
            Op::Feed(len) => {
                if !eof && !t.closed && c.wants_input(&env.limits) {
                    let end = (pos + len as usize).min(case.req.len());
                    c.handle_input(&mut env.ctx(), &case.req[pos..end]);
                    pos = end;
                }
            }
            Op::Send(n) => {
                if t.hold.is_some() {
                    t.report(&mut env, &mut c, n as u64);
                } else {
                    t.send(&mut env, &mut c, n as u64);
                }
            }
            Op::Write(n) => t.start_write(&c, n as u64),
            Op::Drain(chunk) => t.drain(&mut env, &mut c, chunk as u64),
            Op::Eof => {
                if !eof {
                    eof = true;
                    c.handle_eof(&mut env.ctx());
                }
            }
            Op::Error => c.handle_error(&mut env.ctx()),
            Op::Advance(ms) => {
                env.advance(Duration::from_millis(ms as u64));
                if c.poll_timeout().is_some_and(|d| d <= env.now.instant()) {
                    c.handle_timeout(&mut env.ctx());
                }
            }
            Op::Deadline => {
                if let Some(d) = c.poll_timeout() {
                    env.advance_to(d);
                    c.handle_timeout(&mut env.ctx());
                }
            }
            Op::Timeout => c.handle_timeout(&mut env.ctx()),
            Op::Unsent(n) => {
                if let Some(d) = c.poll_timeout() {
                    env.advance_to(d);
                    if c.is_idle() {
                        c.handle_unsent(&mut env.ctx(), n as usize);
                    } else {
                        c.handle_timeout(&mut env.ctx());
                    }
                }
            }
            Op::BeginShutdown(g) => {
                env.drain_grace = Duration::from_millis(g as u64 % 4000);
                c.begin_shutdown(&mut env.ctx());
            }
            Op::HandleShutdown => {
                if matches!(c.poll_transmit(), Transmit::Shutdown) {
                    c.handle_shutdown();
                }
            }
        }
        t.after(&c, op);
    }

    // Epilogue: the write in flight ends, the rest of the request arrives,
    // everything is acknowledged, then EOF.
    t.finish_write(&mut env, &mut c, u64::MAX);
    let mut rounds = 0;
    while !eof && !t.closed && pos < case.req.len() {
        rounds += 1;
        assert!(rounds < 10_000, "epilogue makes no progress");
        if c.wants_input(&env.limits) {
            let end = (pos + 4096).min(case.req.len());
            c.handle_input(&mut env.ctx(), &case.req[pos..end]);
            pos = end;
            t.after(&c, &"epilogue input");
        }
        t.drain(&mut env, &mut c, u64::MAX);
        if !t.closed && !c.wants_input(&env.limits) {
            // The engine stopped reading and everything is sent: only time helps.
            let d = c.poll_timeout().expect("open without a deadline");
            env.advance_to(d);
            c.handle_timeout(&mut env.ctx());
            t.after(&c, &"epilogue timeout");
        }
    }
    t.drain(&mut env, &mut c, u64::MAX);
    if !eof {
        c.handle_eof(&mut env.ctx());
        t.after(&c, &"epilogue eof");
    }
    t.drain(&mut env, &mut c, u64::MAX);
    for _ in 0..4 {
        if t.closed {
            break;
        }
        let d = c.poll_timeout().expect("open without a deadline");
        env.advance_to(d);
        c.handle_timeout(&mut env.ctx());
        t.after(&c, &"epilogue deadline");
        t.drain(&mut env, &mut c, u64::MAX);
    }
    assert!(
        t.closed,
        "still open after EOF, a full drain and its deadlines"
    );
    if let (Some(max_frame), Some(wire)) = (case.h2, &t.wire) {
        h2::check_output(wire, max_frame);
    }
}

// ---- whole versus split ----

#[derive(Debug, PartialEq, Eq)]
enum Rec {
    Data(Vec<u8>),
    Shutdown,
    Close,
    /// The access log the connection wrote (after the output).
    Log(Vec<u8>),
    /// The error-log notes (last).
    Notes(Vec<String>),
}

fn push_data(out: &mut Vec<Rec>, b: &[u8]) {
    if let Some(Rec::Data(d)) = out.last_mut() {
        d.extend_from_slice(b);
    } else {
        out.push(Rec::Data(b.to_vec()));
    }
}

/// Record Shutdown (answering it) until something else is offered, and
/// return that.
fn answer_shutdown(c: &mut Session, out: &mut Vec<Rec>) -> Offer {
    loop {
        match c.poll_transmit() {
            Transmit::Shutdown => {
                out.push(Rec::Shutdown);
                c.handle_shutdown();
            }
            t => return Offer::of(&t),
        }
    }
}

/// Acknowledge everything, recording what went out.
fn drain_record(env: &mut Env, c: &mut Session, out: &mut Vec<Rec>) {
    for _ in 0..100_000 {
        match answer_shutdown(c, out) {
            Offer::Idle => return,
            Offer::Close => {
                if out.last() != Some(&Rec::Close) {
                    out.push(Rec::Close);
                }
                return;
            }
            _ => {
                let Transmit::Send(segs) = c.poll_transmit() else {
                    unreachable!()
                };
                let mut segs = segs.to_vec();
                let n: u64 = segs.iter().map(Segment::len).sum();
                let mut b = Vec::new();
                take_bytes(&mut segs, n, &mut b);
                push_data(out, &b);
                c.handle_sent(&mut env.ctx(), n as usize);
            }
        }
    }
    panic!("drain does not end");
}

/// The output for the request cut into `chunks`. With `overlap`, each chunk
/// arrives while the response offered before it is being written: the
/// segments are cloned, the chunk is fed, then the clones are sent and
/// reported.
fn record(case: &Case, chunks: &[&[u8]], overlap: bool) -> Vec<Rec> {
    let mut env = Env::new(case.responder, case.limits.clone());
    let mut c = env.conn();
    let mut out = Vec::new();
    for chunk in chunks {
        let held = match answer_shutdown(&mut c, &mut out) {
            Offer::Send(_) if overlap => match c.poll_transmit() {
                Transmit::Send(segs) => Some(segs.to_vec()),
                _ => unreachable!(),
            },
            _ => None,
        };
        c.handle_input(&mut env.ctx(), chunk);
        match held {
            Some(mut segs) => {
                let n: u64 = segs.iter().map(Segment::len).sum();
                let mut b = Vec::new();
                take_bytes(&mut segs, n, &mut b);
                push_data(&mut out, &b);
                c.handle_sent(&mut env.ctx(), n as usize);
            }
            None if !overlap => drain_record(&mut env, &mut c, &mut out),
            None => {}
        }
    }
    drain_record(&mut env, &mut c, &mut out);
    c.handle_eof(&mut env.ctx());
    drain_record(&mut env, &mut c, &mut out);
    out.push(Rec::Log(normalize_log(&env.log)));
    let notes = env.notes.take().map(|(l, s)| format!("{l:?}: {s}"));
    out.push(Rec::Notes(notes.collect()));
    out
}

/// The access log with the request field of rejected requests (400, 414,
/// 431, 505) blanked: a request rejected on its first bytes is logged with the
/// bytes that had arrived by then, which does depend on the split (a known,
/// cosmetic difference, not checked).
fn normalize_log(log: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.len());
    for line in log.split_inclusive(|&b| b == b'\n') {
        let open = line.windows(3).position(|w| w == b"] \"").map(|i| i + 3);
        let close = open.and_then(|o| {
            line[o..]
                .windows(2)
                .position(|w| w == b"\" ")
                .map(|i| o + i)
        });
        match (open, close) {
            (Some(o), Some(c))
                if [&b"400 "[..], b"414 ", b"431 ", b"505 "]
                    .iter()
                    .any(|st| line[c + 2..].starts_with(st)) =>
            {
                out.extend_from_slice(&line[..o]);
                out.extend_from_slice(b"(rejected)");
                out.extend_from_slice(&line[c..]);
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

fn show(recs: &[Rec]) -> String {
    let mut s = String::new();
    for r in recs {
        match r {
            Rec::Data(d) => s.push_str(&d.escape_ascii().to_string()),
            Rec::Shutdown => s.push_str("<SHUTDOWN>"),
            Rec::Close => s.push_str("<CLOSE>"),
            Rec::Log(l) => {
                s.push_str("\n<ACCESS LOG>\n");
                s.push_str(&l.escape_ascii().to_string());
            }
            Rec::Notes(n) => {
                s.push_str("\n<NOTES>\n");
                s.push_str(&n.join("\n"));
            }
        }
    }
    s
}

fn whole_vs_split(case: &Case) {
    // HTTP/2 answers may be framed differently for different cuts (frames
    // of two streams interleave as their requests came); its checks are
    // the script's and `h2::check_output`.
    if case.h2.is_some() || case.req.starts_with(h2::PREFACE) {
        return;
    }
    // The chunks the script's Feed ops cut, the rest as the last one.
    let mut chunks = Vec::new();
    let mut pos = 0;
    for op in &case.ops {
        if let Op::Feed(len) = *op {
            let end = (pos + len as usize).min(case.req.len());
            if end > pos {
                chunks.push(&case.req[pos..end]);
            }
            pos = end;
        }
    }
    if pos < case.req.len() {
        chunks.push(&case.req[pos..]);
    }
    if chunks.len() < 2 {
        return;
    }
    let whole = record(case, &[&case.req], false);
    let cuts = || -> Vec<usize> {
        let mut v: Vec<usize> = chunks
            .iter()
            .scan(0, |p, c| {
                *p += c.len();
                Some(*p)
            })
            .collect();
        v.pop();
        v
    };
    for overlap in [false, true] {
        let split = record(case, &chunks, overlap);
        if whole != split {
            panic!(
                "whole vs split{} differ\ninput: \"{}\"\nsplit after bytes {:?}\nwhole: \"{}\"\nsplit: \"{}\"",
                if overlap {
                    " (each chunk fed while a write is in flight)"
                } else {
                    ""
                },
                case.req.escape_ascii(),
                cuts(),
                show(&whole),
                show(&split)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = decode(data) else { return };
    CHECKED.with_borrow_mut(Vec::clear);
    if debug() {
        eprintln!(
            "limits: {:?}\nops: {:?}\nrequest: \"{}\"\nwhole output: \"{}\"",
            case.limits,
            case.ops,
            case.req.escape_ascii(),
            show(&record(&case, &[&case.req], false))
        );
    }
    run_script(&case);
    if split_check() {
        whole_vs_split(&case);
    }
});
