//! What the fuzz targets that drive a connection share: the served tree
//! and its responders, the engine's side of a connection (`Env`), what a
//! connection offers as plain data (`Offer`) and the checks on it
//! (`Tracker`), and the script of engine events (`Op`, `run_script`), with
//! the connection's input from a `Peer`. `h2` makes HTTP/2 clients' streams
//! and checks what a server wrote to one.

// Each target uses its part of it.
#![allow(dead_code)]

pub mod h2;

use std::any::Any;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arbitrary::Unstructured;
use bytes::Bytes;
use tandem::files::{Responder, Settings};
use tandem::http::{
    Body, Ctx, FileRange, Limits, Notes, Now, ParseLimits, Reply, Request, Respond, Segment,
    Transmit,
};
use tandem::log::Level;
use tandem::metrics::WorkerCounters;
use tandem::tls::Session;

// ---- the responder: the file responder, bodies cut into parts on request ----

pub struct Fuzz(pub Responder);

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
pub fn into_parts(body: Body) -> Body {
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
pub const TREE: &str = "tandem-fuzz-root-v2";
pub const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-ROOT\n";

pub struct World {
    pub base: Instant,
    pub responders: Vec<Fuzz>,
    /// (dev, ino) of the file outside the root that must never be served.
    pub secret: (u64, u64),
}

pub fn world() -> &'static World {
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

pub fn tree_files() -> Vec<(&'static str, Vec<u8>)> {
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
pub fn make_tree() -> PathBuf {
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

pub fn tree_ok(top: &Path) -> bool {
    tree_files()
        .iter()
        .all(|(name, body)| std::fs::read(top.join(name)).is_ok_and(|b| &b == body))
        && std::fs::read_link(top.join("www/leakdir")).is_ok()
}

pub fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TANDEM_FUZZ_DEBUG").is_ok_and(|v| v == "1"))
}

pub fn split_check() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TANDEM_FUZZ_SPLIT_CHECK").map_or(true, |v| v != "0"))
}

// ---- the clock and the context ----

/// Fixed wall-clock origin, so Date headers and log times are deterministic.
pub const WALL0: u64 = 1_795_375_297; // Sun, 22 Nov 2026 19:21:37 GMT

pub struct Env {
    pub responder: &'static Fuzz,
    pub limits: Limits,
    pub now: Now,
    pub offset: Duration,
    pub log: Vec<u8>,
    pub notes: Notes,
    pub drain_grace: Duration,
    pub stats: WorkerCounters,
    pub pool: tandem::http::BufferPool,
    /// The responder's per-worker state (its cache).
    pub local: Box<dyn Any>,
    pub fds: tandem::http::FdBudget,
}

impl Env {
    pub fn new(responder: &'static Fuzz, limits: Limits) -> Env {
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

    pub fn set_offset(&mut self, d: Duration) {
        self.offset = d;
        self.now = Now::new(
            world().base + d,
            SystemTime::UNIX_EPOCH + Duration::from_secs(WALL0) + d,
        );
    }

    pub fn advance(&mut self, d: Duration) {
        self.set_offset(self.offset + d);
    }

    /// Move the clock to `t` if that is later than now.
    pub fn advance_to(&mut self, t: Instant) {
        let now = self.now.instant();
        if t > now {
            self.advance(t - now);
        }
    }

    pub fn ctx(&mut self) -> Ctx<'_> {
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
    pub fn conn(&self) -> Session {
        Session::Plain(tandem::h2::Http::plain(
            "192.0.2.7:40000".parse().unwrap(),
            self.now.instant(),
            &self.limits,
        ))
    }
}

/// Limits a config file could give (Config::validate: 256 <= max_header_size,
/// 16 <= max_target_size <= max_header_size; linger is fixed at 2 s), kept small.
pub fn limits(u: &mut Unstructured<'_>) -> arbitrary::Result<Limits> {
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
pub enum Seg {
    Bytes { ptr: usize, len: usize },
    File { fd: i32, offset: u64, len: u64 },
}

impl Seg {
    pub fn of(s: &Segment) -> Seg {
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

    pub fn len(&self) -> u64 {
        match *self {
            Seg::Bytes { len, .. } => len as u64,
            Seg::File { len, .. } => len,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    Idle,
    Send(Vec<Seg>),
    Shutdown,
    Close,
}

impl Offer {
    pub fn of(t: &Transmit<'_>) -> Offer {
        match *t {
            Transmit::Idle => Offer::Idle,
            Transmit::Send(segs) => Offer::Send(segs.iter().map(Seg::of).collect()),
            Transmit::Shutdown => Offer::Shutdown,
            Transmit::Close => Offer::Close,
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Offer::Send(v) => v.iter().map(Seg::len).sum(),
            _ => 0,
        }
    }

    /// The offer once its first `n` bytes are sent (`n` short of all of it).
    pub fn advanced(&self, mut n: u64) -> Offer {
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
    pub static CHECKED: std::cell::RefCell<Vec<(Arc<File>, u64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A file range must lie inside its file, and the file inside the root. One
/// fstat per range end: partial sends move the offset, not the end.
pub fn check_file(f: &FileRange) {
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
pub fn poll(c: &Session) -> Offer {
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
        if c.tls().is_some() {
            assert!(
                segs.iter().all(|s| matches!(s, Segment::Bytes(_))),
                "a file range offered by a TLS session"
            );
        }
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
pub fn take_bytes(segs: &mut Vec<Segment>, n: u64, out: &mut Vec<u8>) {
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
pub fn bytes_after(c: &Session, n: u64) -> Vec<u8> {
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
pub struct Hold {
    /// The clones, advanced past the bytes reported so far.
    pub segs: Vec<Segment>,
    /// What the write sends, read when it started; `done` of it is reported.
    pub data: Vec<u8>,
    pub done: usize,
}

/// Checks that span calls: Close is sticky, acknowledgements line up, an
/// asynchronous write sees its segments stay put.
pub struct Tracker {
    /// Every byte acknowledged, in order (kept for HTTP/2 cases only).
    pub wire: Option<Vec<u8>>,
    pub closed: bool,
    pub offered_total: u64,
    pub acked_total: u64,
    pub hold: Option<Hold>,
}

impl Tracker {
    pub fn wire(&self) -> &[u8] {
        self.wire.as_deref().unwrap_or_default()
    }

    pub fn new() -> Tracker {
        Tracker {
            wire: None,
            closed: false,
            offered_total: 0,
            acked_total: 0,
            hold: None,
        }
    }

    pub fn after(&mut self, c: &Session, what: &dyn std::fmt::Debug) -> Offer {
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
    pub fn send(&mut self, env: &mut Env, c: &mut Session, n: u64) -> Offer {
        let before = poll(c);
        let total = before.len();
        let n = n.min(total);
        // On a short send, the rest must come next, unchanged; more may be
        // queued behind it (HTTP/2 acts on frames it held back, a PING's
        // ACK, as output drains).
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
            let resumed = match (&after, &want) {
                (Offer::Send(now), Offer::Send(left)) => now.starts_with(left),
                _ => after == want,
            };
            assert!(
                resumed,
                "short send of {n} of {total} bytes did not resume where it stopped: \
                 {after:?} after {want:?}"
            );
            assert!(
                bytes_after(c, 0).starts_with(&rest),
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
    pub fn start_write(&mut self, c: &Session, n: u64) {
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
    pub fn report(&mut self, env: &mut Env, c: &mut Session, k: u64) {
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
    pub fn finish_write(&mut self, env: &mut Env, c: &mut Session, chunk: u64) {
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
    pub fn drain(&mut self, env: &mut Env, c: &mut Session, chunk: u64) {
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
pub enum Op {
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

pub fn op(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
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

/// The first part of an input: `[n] control[n] request-bytes`, the
/// control section's limits selector and responder selector read.
pub struct Input<'a> {
    /// The rest of the control section (a target's own bytes, then ops).
    pub u: Unstructured<'a>,
    pub req: &'a [u8],
    pub limits: Limits,
    pub responder: &'static Fuzz,
}

pub fn input(data: &[u8]) -> Option<Input<'_>> {
    let (&n, rest) = data.split_first()?;
    let n = (n as usize).min(rest.len());
    let (ctl, req) = rest.split_at(n);
    let mut u = Unstructured::new(ctl);
    let limits = limits(&mut u).unwrap_or_else(|_| Limits::small());
    let w = world();
    let responder = &w.responders[u.arbitrary::<u8>().unwrap_or(0) as usize % w.responders.len()];
    Some(Input {
        u,
        req,
        limits,
        responder,
    })
}

/// The script: ops until the control bytes run out.
pub fn ops(u: &mut Unstructured<'_>) -> Vec<Op> {
    let mut ops = Vec::new();
    while !u.is_empty() {
        match op(u) {
            Ok(o) => ops.push(o),
            Err(_) => break,
        }
    }
    ops
}

/// Where a connection's input comes from: the next bytes for the server
/// (at most `len`), given all it has sent so far (`wire`, what the engine
/// wrote and the connection acknowledged).
pub trait Peer {
    fn next(&mut self, len: usize, wire: &[u8]) -> Vec<u8>;
    /// Nothing more to send, whatever the server sends.
    fn done(&self, wire: &[u8]) -> bool;
}

/// A client that sends `req` as it is.
pub struct Plain<'a> {
    pub req: &'a [u8],
    pub pos: usize,
}

impl Peer for Plain<'_> {
    fn next(&mut self, len: usize, _: &[u8]) -> Vec<u8> {
        let end = (self.pos + len).min(self.req.len());
        let b = self.req[self.pos..end].to_vec();
        self.pos = end;
        b
    }

    fn done(&self, _: &[u8]) -> bool {
        self.pos == self.req.len()
    }
}

/// Run `ops` on `c`, with `peer`'s bytes as the input, then the epilogue;
/// check every invariant on the way. Returns every byte acknowledged.
pub fn run_script(env: &mut Env, mut c: Session, ops: &[Op], peer: &mut dyn Peer) -> Vec<u8> {
    let env = &mut *env;
    let mut t = Tracker::new();
    t.wire = Some(Vec::new());
    let mut eof = false;
    t.after(&c, &"new");
    for op in ops {
        match *op {
            Op::Feed(len) => {
                if !eof && !t.closed && c.wants_input(&env.limits) {
                    let b = peer.next(len as usize, t.wire());
                    c.handle_input(&mut env.ctx(), &b);
                }
            }
            Op::Send(n) => {
                if t.hold.is_some() {
                    t.report(env, &mut c, n as u64);
                } else {
                    t.send(env, &mut c, n as u64);
                }
            }
            Op::Write(n) => t.start_write(&c, n as u64),
            Op::Drain(chunk) => t.drain(env, &mut c, chunk as u64),
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
    t.finish_write(env, &mut c, u64::MAX);
    let mut rounds = 0;
    while !eof && !t.closed && !peer.done(t.wire()) {
        rounds += 1;
        assert!(rounds < 10_000, "epilogue makes no progress");
        let mut fed = false;
        if c.wants_input(&env.limits) {
            let b = peer.next(4096, t.wire());
            fed = !b.is_empty();
            c.handle_input(&mut env.ctx(), &b);
            t.after(&c, &"epilogue input");
        }
        let wrote = t.wire().len();
        t.drain(env, &mut c, u64::MAX);
        let waiting = !fed && t.wire().len() == wrote;
        if !t.closed && (!c.wants_input(&env.limits) || waiting) {
            // The engine stopped reading, or the peer waits for an answer
            // that does not come (a TLS client whose server shut its side
            // on a failed handshake), and everything is sent: only time helps.
            let d = c.poll_timeout().expect("open without a deadline");
            env.advance_to(d);
            c.handle_timeout(&mut env.ctx());
            t.after(&c, &"epilogue timeout");
        }
    }
    t.drain(env, &mut c, u64::MAX);
    if !eof {
        c.handle_eof(&mut env.ctx());
        t.after(&c, &"epilogue eof");
    }
    t.drain(env, &mut c, u64::MAX);
    for _ in 0..4 {
        if t.closed {
            break;
        }
        let d = c.poll_timeout().expect("open without a deadline");
        env.advance_to(d);
        c.handle_timeout(&mut env.ctx());
        t.after(&c, &"epilogue deadline");
        t.drain(env, &mut c, u64::MAX);
    }
    assert!(
        t.closed,
        "still open after EOF, a full drain and its deadlines"
    );
    t.wire.take().unwrap_or_default()
}
