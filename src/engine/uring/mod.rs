//! The io_uring engine: one ring per worker thread and a completion loop that
//! submits and waits in a single `io_uring_enter` per turn. It drives the same
//! `http::Conn` as the epoll engine and holds no HTTP logic of its own.
//!
//! Operations and their lifecycle:
//!
//! * `user_data` = kind (8 bits) | connection generation (24 bits) | slot or
//!   listener index (32 bits). A connection has at most one operation of each
//!   kind in flight; `UConn::pending` has one bit per kind, so "nothing in
//!   flight" is `pending == 0`. The worker also counts every operation it
//!   queued (`Io::inflight`) until its final completion (a completion without
//!   `F_MORE`), so teardown knows when the ring is quiet.
//! * Accept: one multishot accept per (shared) listener, accepted sockets
//!   non-blocking. Stopping (drain, max_connections, EMFILE pause) cancels it
//!   with AsyncCancel and waits for its final completion; listeners are never
//!   closed here. On DRAIN, once every accept has ended, connections left in
//!   the backlog whose (exclusive) wake-up our cancelled accept consumed are
//!   taken and answered, then `Control::set_accepting(false)` is reported.
//! * Receive: one multishot receive per connection into the worker's provided
//!   buffer ring; a buffer goes back to the ring as soon as `handle_input`
//!   returned. ENOBUFS or any final completion re-arms it if the `Conn` still
//!   wants input. Backpressure: when the `Conn` does not want input the
//!   receive is cancelled, and re-armed when it does.
//! * Write: at most one write chain per connection. While it is in flight the
//!   `Conn` is frozen (only `&self` calls): the chain may point into it
//!   (`Transmit::Bytes`) and at its file. Input, EOF, errors, timeouts and
//!   drain that arrive meanwhile are deferred (input is copied to a bounded
//!   stash) and applied once the chain is over, after `handle_sent` for what
//!   it sent.
//!   Chains: `Bytes` -> Send; a response head followed by a file body is
//!   copied and acknowledged early, then sent linked with the body:
//!   read mode `Read -> Send` through a pooled buffer, splice mode
//!   `Send(head) -> Splice(file->pipe) -> Splice(pipe->socket)` through a
//!   pooled pipe (`TANDEM_URING_BODY=splice|read`, default splice). Sends use
//!   MSG_WAITALL, so a short send breaks the link like a short read or splice
//!   does; leftovers are sent first (a pipe left non-empty by a full socket is
//!   drained by `PollAdd(POLLOUT) -> Splice`).
//! * Timeouts: each tick scans `poll_timeout()`; a frozen connection past its
//!   deadline has its write ops cancelled and gets `handle_timeout` when they
//!   complete.
//! * Close: the `Conn` says `Close` (or the socket failed): every op of the
//!   connection is cancelled, and once `pending == 0` the fd is closed with
//!   IORING_OP_CLOSE and the slot freed. Teardown cancels everything and
//!   drains all completions before the ring and the buffer memory go.

mod bufring;
mod pool;
mod setup;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{Shared, Slab, Step, WorkerSpec};
use crate::http::{Conn, Transmit};
use bufring::BufRing;
use pool::{Pipe, Pool, READ_BUF};

pub use setup::probe;

const SQ_ENTRIES: u32 = 512;
/// 16x the SQ: multishot receives and accepts post many completions per SQE.
const CQ_ENTRIES: u32 = 8192;
/// Provided receive buffers per worker (power of two) and their size.
const BUF_COUNT: u16 = 512;
const BUF_SIZE: usize = 8192;
const BGID: u16 = 0;
/// A response head up to this size is copied so it can be linked with its body.
const HEAD_COPY_MAX: usize = 16 * 1024;
/// Cancellations that did not take (e.g. an op still waiting in a link) are repeated.
const RECANCEL: Duration = Duration::from_secs(1);
/// How long teardown waits for the kernel to finish cancelled operations.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(10);
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Most connections taken from a listener's backlog when our accept stops.
const STRANDED_MAX: usize = 64;
/// With fewer free connection slots than this, accept with single accepts.
const SINGLE_ACCEPT_BELOW: usize = 64;

// Per-connection operation kinds (bit positions in `UConn::pending`).
const RECV: u8 = 0;
/// Send of bytes borrowed from the `Conn` (`Transmit::Bytes`).
const SEND_CONN: u8 = 1;
/// Send of the copied (already acknowledged) response head.
const SEND_HEAD: u8 = 2;
/// Send from the read buffer (head copy + file bytes).
const SEND_BUF: u8 = 3;
const READ: u8 = 4;
const SPLICE_IN: u8 = 5;
const SPLICE_OUT: u8 = 6;
/// Wait for room in the socket before splicing the rest of a pipe into it.
const POLL_OUT: u8 = 7;
const WRITE_OPS: u16 = 0b1111_1110;
// Worker-level kinds.
const ACCEPT: u8 = 8;
const WAKE: u8 = 9;
const CANCEL: u8 = 10;
const CLOSE: u8 = 11;

const GEN_MASK: u32 = 0xff_ffff;

fn ud(kind: u8, idx: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (((generation & GEN_MASK) as u64) << 32) | (idx as u64 & 0xffff_ffff)
}

const fn bit(kind: u8) -> u16 {
    1 << kind
}

/// How `Transmit::File` bodies reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    /// Splice file -> pipe -> socket.
    Splice,
    /// Read into a buffer, then Send.
    Read,
}

/// In splice mode, bodies up to this size still go by read+send.
const SPLICE_MIN: u64 = 16 * 1024;

/// Default body method. Measured with wrk (-t2 -c64, 1 and 2 workers, loopback):
/// splice is ~25-40% faster for 100 KiB bodies and ~60% faster for 10 MiB
/// (no copy through user space); read + send is ~10% faster for 4 KiB.
const DEFAULT_BODY: BodyMode = BodyMode::Splice;

impl BodyMode {
    /// `TANDEM_URING_BODY=splice|read`, read once per worker.
    fn from_env() -> BodyMode {
        match std::env::var("TANDEM_URING_BODY").as_deref() {
            Ok("splice") => BodyMode::Splice,
            Ok("read") => BodyMode::Read,
            Ok("") | Err(_) => DEFAULT_BODY,
            Ok(other) => {
                static WARN: std::sync::Once = std::sync::Once::new();
                WARN.call_once(|| {
                    crate::warn!(
                        "TANDEM_URING_BODY={other:?} is not \"splice\" or \"read\"; using {:?}",
                        DEFAULT_BODY
                    )
                });
                DEFAULT_BODY
            }
        }
    }
}

fn errno_str(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

/// The ring plus everything queued on it.
struct Io {
    ring: IoUring,
    /// Operations queued and not yet finally completed.
    inflight: usize,
    /// Chains that did not fit in the SQ; pushed (in order) at the next turn.
    backlog: VecDeque<Vec<squeue::Entry>>,
}

impl Io {
    /// Queue one entry or a linked chain (kept contiguous in the SQ).
    ///
    /// # Safety
    ///
    /// Every buffer and fd the entries name must stay valid (not freed, moved,
    /// reused or closed) until the final completion of each entry is reaped.
    unsafe fn push(&mut self, chain: &[squeue::Entry]) {
        self.inflight += chain.len();
        // SAFETY: forwarded from this function's contract.
        if self.backlog.is_empty() && unsafe { self.try_push(chain) } {
            return;
        }
        self.backlog.push_back(chain.to_vec());
    }

    /// Queue an entry that names no memory of ours (accept, poll, cancel,
    /// close, a receive into the registered buffer ring).
    fn push_plain(&mut self, e: squeue::Entry) {
        // SAFETY: the entry points at no user memory; any fd it names is kept
        // open by the caller until its completion (listeners are never closed
        // here, sockets only after their last op, the wake fd outlives us).
        unsafe { self.push(std::slice::from_ref(&e)) }
    }

    /// # Safety
    ///
    /// As for `push`.
    unsafe fn try_push(&mut self, chain: &[squeue::Entry]) -> bool {
        for attempt in 0..2 {
            {
                let mut sq = self.ring.submission();
                if sq.capacity() - sq.len() >= chain.len() {
                    // SAFETY: forwarded from this function's contract.
                    return unsafe { sq.push_multiple(chain) }.is_ok();
                }
            }
            // Full: hand what is queued to the kernel and try once more.
            if attempt == 0 && self.ring.submit().is_err() {
                return false;
            }
        }
        false
    }

    fn flush_backlog(&mut self) {
        while let Some(chain) = self.backlog.pop_front() {
            // SAFETY: these entries came through `push`, whose callers
            // guarantee their buffers and fds.
            if !unsafe { self.try_push(&chain) } {
                self.backlog.push_front(chain);
                break;
            }
        }
    }
}

struct Acceptor {
    /// The accept is in flight (until its final completion).
    armed: bool,
    /// It is a multishot accept (else a single accept, used near the limit).
    multi: bool,
    cancelled: bool,
}

/// One connection. Boxed in the slab so nothing it owns moves on slab growth.
struct UConn {
    fd: RawFd,
    slot: usize,
    generation: u32,
    conn: Conn,
    /// One bit per op kind in flight.
    pending: u16,
    /// Kinds whose cancellation was requested and that are still in flight.
    cancelled: u16,
    cancel_at: Instant,
    /// The receive side is finished (EOF or error): never re-arm.
    recv_done: bool,
    /// Closing: ops are being cancelled; the fd is closed once `pending == 0`.
    closing: bool,
    // Deferred while a write chain is in flight (the Conn is frozen then).
    stash: Vec<u8>,
    st_eof: bool,
    st_err: bool,
    st_timeout: bool,
    st_shutdown: bool,
    // Results of the write chain, applied when it is over.
    /// Bytes of the Conn's current Transmit that reached the socket.
    ack: usize,
    wr_err: bool,
    short_file: bool,
    /// Response head copied out of the Conn (already acknowledged), `hpos` sent.
    hbuf: Vec<u8>,
    hpos: usize,
    /// Read mode: `fbuf[fstart..fend]` is still to be sent; its first
    /// `head_ahead` bytes are head bytes already acknowledged.
    fbuf: Option<Box<[u8]>>,
    fstart: usize,
    fend: usize,
    head_ahead: usize,
    /// Splice mode: `pipe_pending` bytes sit in the pipe.
    pipe: Option<Pipe>,
    pipe_pending: usize,
    pipe_dirty: bool,
}

impl UConn {
    fn new(fd: RawFd, generation: u32, conn: Conn, now: Instant) -> UConn {
        UConn {
            fd,
            slot: 0,
            generation,
            conn,
            pending: 0,
            cancelled: 0,
            cancel_at: now,
            recv_done: false,
            closing: false,
            stash: Vec::new(),
            st_eof: false,
            st_err: false,
            st_timeout: false,
            st_shutdown: false,
            ack: 0,
            wr_err: false,
            short_file: false,
            hbuf: Vec::new(),
            hpos: 0,
            fbuf: None,
            fstart: 0,
            fend: 0,
            head_ahead: 0,
            pipe: None,
            pipe_pending: 0,
            pipe_dirty: false,
        }
    }

    fn ud(&self, kind: u8) -> u64 {
        ud(kind, self.slot, self.generation)
    }

    /// A write chain is in flight: the Conn must not be mutated.
    fn frozen(&self) -> bool {
        self.pending & WRITE_OPS != 0
    }

    /// Ask the kernel to cancel the ops of `kinds` that are in flight.
    fn cancel(&mut self, io: &mut Io, kinds: u16, now: Instant) {
        let todo = self.pending & kinds & !self.cancelled;
        for kind in 0..16u8 {
            if todo & bit(kind) != 0 {
                io.push_plain(
                    opcode::AsyncCancel::new(self.ud(kind))
                        .build()
                        .user_data(ud(CANCEL, self.slot, self.generation)),
                );
            }
        }
        if todo != 0 {
            self.cancelled |= todo;
            self.cancel_at = now;
        }
    }

    fn start_close(&mut self, io: &mut Io, now: Instant) {
        if !self.closing {
            self.closing = true;
            self.cancel(io, u16::MAX, now);
        }
    }

    /// Apply what happened while the Conn was frozen (call only when not frozen).
    ///
    /// The order replays events as the epoll engine sees them: drain and
    /// input arrive while the response is still in flight (so a pipelined
    /// request is buffered, and answered with `Connection: close` when
    /// draining), and only then does the response's completion count.
    fn apply_deferred(&mut self, sh: &mut Shared) {
        if std::mem::take(&mut self.st_shutdown) {
            self.conn.begin_shutdown(&mut sh.ctx());
        }
        if !self.stash.is_empty() {
            let mut data = std::mem::take(&mut self.stash);
            self.conn.handle_input(&mut sh.ctx(), &data);
            data.clear();
            if data.capacity() <= 64 * 1024 {
                self.stash = data;
            }
        }
        if std::mem::take(&mut self.st_eof) {
            self.conn.handle_eof(&mut sh.ctx());
        }
        if self.ack > 0 {
            let n = std::mem::take(&mut self.ack);
            self.conn.handle_sent(&mut sh.ctx(), n);
        }
        if std::mem::take(&mut self.short_file) {
            crate::warn!("{}: file shorter than announced", self.conn.peer());
            self.conn.handle_error(&mut sh.ctx());
        }
        if std::mem::take(&mut self.wr_err) {
            self.conn.handle_error(&mut sh.ctx());
        }
        if std::mem::take(&mut self.st_err) {
            self.conn.handle_error(&mut sh.ctx());
        }
        if std::mem::take(&mut self.st_timeout) {
            self.conn.handle_timeout(&mut sh.ctx());
        }
    }

    /// Return pooled body resources (the response is over, or the conn is).
    fn release(&mut self, pool: &mut Pool) {
        if let Some(b) = self.fbuf.take() {
            pool.put_buf(b);
        }
        self.fstart = 0;
        self.fend = 0;
        self.head_ahead = 0;
        if let Some(p) = self.pipe.take() {
            pool.put_pipe(p, self.pipe_pending == 0 && !self.pipe_dirty);
        }
        self.pipe_pending = 0;
        self.pipe_dirty = false;
        self.hbuf.clear();
        self.hpos = 0;
        if self.hbuf.capacity() > 4096 {
            self.hbuf = Vec::new();
        }
    }

    /// Start the next write, or act on Idle/Close/Shutdown. Call only when not
    /// frozen and not closing.
    fn pump(&mut self, io: &mut Io, pool: &mut Pool, sh: &mut Shared, mode: BodyMode) {
        enum Raw {
            Idle,
            Close,
            Shutdown,
            Bytes(*const u8, usize, bool),
            File(RawFd, u64, u64),
        }
        loop {
            if self.closing || self.frozen() {
                return;
            }
            let now = sh.clock.now().instant;
            if self.conn.is_closed() {
                self.start_close(io, now);
                return;
            }
            // Bytes the engine already holds go first.
            if self.fstart < self.fend {
                self.send_fbuf_rest(io);
                return;
            }
            if self.pipe_pending > 0 {
                self.splice_rest(io);
                return;
            }
            let raw = match self.conn.poll_transmit() {
                Transmit::Idle => Raw::Idle,
                Transmit::Close => Raw::Close,
                Transmit::Shutdown => Raw::Shutdown,
                Transmit::Bytes { data, more } => Raw::Bytes(data.as_ptr(), data.len(), more),
                Transmit::File { file, offset, len } => {
                    Raw::File(std::os::fd::AsRawFd::as_raw_fd(file), offset, len)
                }
            };
            match raw {
                Raw::Idle => {
                    if self.hpos < self.hbuf.len() {
                        self.send_head_alone(io);
                    } else {
                        self.release(pool);
                    }
                    return;
                }
                Raw::Close => {
                    self.start_close(io, now);
                    return;
                }
                Raw::Shutdown => {
                    // SAFETY: shutdown on our own open socket; no pointers.
                    unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
                    self.conn.handle_shutdown();
                }
                Raw::Bytes(p, n, more) => {
                    if self.hpos < self.hbuf.len() {
                        self.send_head_alone(io);
                        return;
                    }
                    if more && n <= HEAD_COPY_MAX {
                        // A head with a file body behind it: copy it, so it can
                        // go out linked with the first body chunk.
                        // SAFETY: p/n come from poll_transmit just above and
                        // the Conn has not been touched since.
                        let head = unsafe { std::slice::from_raw_parts(p, n) };
                        self.hbuf.clear();
                        self.hbuf.extend_from_slice(head);
                        self.hpos = 0;
                        self.conn.handle_sent(&mut sh.ctx(), n);
                        continue;
                    }
                    let e = opcode::Send::new(types::Fd(self.fd), p, clamp32(n))
                        .flags(send_flags(more))
                        .build()
                        .user_data(self.ud(SEND_CONN));
                    self.pending |= bit(SEND_CONN);
                    // SAFETY: p points into the Conn (or static data). The Conn
                    // is boxed and frozen while SEND_CONN is pending (no &mut
                    // call until the completion), so the bytes stay put; the
                    // socket is closed only once `pending == 0`.
                    unsafe { io.push(&[e]) };
                    return;
                }
                Raw::File(ffd, off, len) => {
                    // Small bodies go by read+send even in splice mode: one
                    // copy of a few KiB costs less than two splices (measured).
                    if mode == BodyMode::Splice && self.pipe.is_none() && len > SPLICE_MIN {
                        self.pipe = pool.take_pipe();
                    }
                    if self.pipe.is_some() {
                        self.splice_chain(io, ffd, off, len);
                    } else {
                        self.read_chain(io, pool, ffd, off, len);
                    }
                    return;
                }
            }
        }
    }

    fn send_head_alone(&mut self, io: &mut Io) {
        let rest = &self.hbuf[self.hpos..];
        let e = opcode::Send::new(types::Fd(self.fd), rest.as_ptr(), clamp32(rest.len()))
            .flags(send_flags(true))
            .build()
            .user_data(self.ud(SEND_HEAD));
        self.pending |= bit(SEND_HEAD);
        // SAFETY: hbuf is only modified by `pump`/`release`, which do not run
        // while SEND_HEAD is pending; the socket stays open until pending == 0.
        unsafe { io.push(&[e]) };
    }

    fn send_fbuf_rest(&mut self, io: &mut Io) {
        let Some(buf) = self.fbuf.as_ref() else {
            self.fstart = 0;
            self.fend = 0;
            return;
        };
        let rest = &buf[self.fstart..self.fend];
        let e = opcode::Send::new(types::Fd(self.fd), rest.as_ptr(), clamp32(rest.len()))
            .flags(send_flags(false))
            .build()
            .user_data(self.ud(SEND_BUF));
        self.pending |= bit(SEND_BUF);
        // SAFETY: fbuf (a heap buffer that does not move with the Box) is only
        // released or rewritten by `pump`/`release`, which do not run while
        // SEND_BUF is pending; the socket stays open until pending == 0.
        unsafe { io.push(&[e]) };
    }

    /// The pipe still holds bytes: the socket was full. Wait for room, then
    /// splice them.
    fn splice_rest(&mut self, io: &mut Io) {
        let Some(pipe) = self.pipe.as_ref() else {
            self.pipe_pending = 0;
            return;
        };
        let poll = opcode::PollAdd::new(types::Fd(self.fd), libc::POLLOUT as u32)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(self.ud(POLL_OUT));
        let e = opcode::Splice::new(
            types::Fd(pipe.rfd()),
            -1,
            types::Fd(self.fd),
            -1,
            clamp32(self.pipe_pending),
        )
        .build()
        .user_data(self.ud(SPLICE_OUT));
        self.pending |= bit(POLL_OUT) | bit(SPLICE_OUT);
        // SAFETY: no user memory; the pipe stays with this conn and the socket
        // stays open until pending == 0.
        unsafe { io.push(&[poll, e]) };
    }

    /// Read mode: [head copy +] Read(file) -> Send(buffer).
    fn read_chain(&mut self, io: &mut Io, pool: &mut Pool, ffd: RawFd, off: u64, len: u64) {
        let h = self.hbuf.len() - self.hpos;
        let buf = self.fbuf.get_or_insert_with(|| pool.take_buf());
        buf[..h].copy_from_slice(&self.hbuf[self.hpos..]);
        self.hbuf.clear();
        self.hpos = 0;
        self.fstart = 0;
        self.fend = h;
        self.head_ahead = h;
        let want = len.min((READ_BUF - h) as u64) as usize;
        let base = buf.as_mut_ptr();
        // SAFETY: h + want <= READ_BUF = buf.len(), so the pointer stays inside buf.
        let dst = unsafe { base.add(h) };
        let read = opcode::Read::new(types::Fd(ffd), dst, want as u32)
            .offset(off)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(self.ud(READ));
        let send = opcode::Send::new(types::Fd(self.fd), base, (h + want) as u32)
            .flags(send_flags(len > want as u64))
            .build()
            .user_data(self.ud(SEND_BUF));
        self.pending |= bit(READ) | bit(SEND_BUF);
        // SAFETY: fbuf is a heap buffer owned by this conn and not touched by
        // us while READ/SEND_BUF are pending (pump/release do not run then).
        // The file is the Conn's current body: the Conn is frozen, so it keeps
        // its Arc<File> open until both ops completed. The Send covers bytes
        // the Read fills; a short Read breaks the link (the Send is cancelled).
        unsafe { io.push(&[read, send]) };
    }

    /// Splice mode: [Send(head) ->] Splice(file -> pipe) -> Splice(pipe -> socket).
    fn splice_chain(&mut self, io: &mut Io, ffd: RawFd, off: u64, len: u64) {
        let Some(pipe) = self.pipe.as_ref() else {
            return;
        };
        // A pipe holds size/PAGE_SIZE page references: keep an unaligned
        // chunk within that many pages so the pipe never fills up mid-splice.
        let room = pipe.size - (off as usize & 4095);
        let n = len.min(room as u64) as u32;
        let more = len > n as u64;
        let sin = opcode::Splice::new(types::Fd(ffd), off as i64, types::Fd(pipe.wfd()), -1, n)
            .flags(libc::SPLICE_F_NONBLOCK)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(self.ud(SPLICE_IN));
        let sout = opcode::Splice::new(types::Fd(pipe.rfd()), -1, types::Fd(self.fd), -1, n)
            .flags(if more { libc::SPLICE_F_MORE } else { 0 })
            .build()
            .user_data(self.ud(SPLICE_OUT));
        self.pending |= bit(SPLICE_IN) | bit(SPLICE_OUT);
        if self.hpos < self.hbuf.len() {
            let rest = &self.hbuf[self.hpos..];
            let head = opcode::Send::new(types::Fd(self.fd), rest.as_ptr(), clamp32(rest.len()))
                .flags(send_flags(true))
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(self.ud(SEND_HEAD));
            self.pending |= bit(SEND_HEAD);
            // SAFETY: hbuf is not touched while SEND_HEAD is pending; the file
            // stays open because the Conn (holding it) is frozen until the
            // chain is over; the pipe stays with this conn; the socket is
            // closed only once pending == 0.
            unsafe { io.push(&[head, sin, sout]) };
        } else {
            // SAFETY: as above, without the head buffer.
            unsafe { io.push(&[sin, sout]) };
        }
    }
}

fn send_flags(more: bool) -> i32 {
    // WAITALL: the kernel retries partial sends itself, and a short send breaks a link.
    libc::MSG_NOSIGNAL | libc::MSG_WAITALL | if more { libc::MSG_MORE } else { 0 }
}

fn clamp32(n: usize) -> u32 {
    n.min(1 << 30) as u32
}

fn peer_of(fd: RawFd) -> SocketAddr {
    super::peer_addr(fd).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn close_fd(fd: RawFd) {
    // SAFETY: closes an fd we own on which no operation is in flight.
    unsafe { libc::close(fd) };
}

/// Run one worker's io_uring loop until it is told to stop and has drained.
pub fn run(spec: WorkerSpec) -> io::Result<()> {
    let mode = BodyMode::from_env();
    let ring = setup::build_ring(SQ_ENTRIES, CQ_ENTRIES)?;
    let bufs = BufRing::new(BUF_COUNT, BUF_SIZE)?;
    // SAFETY: the buffer ring memory is owned by the Worker below, which
    // unregisters it in `teardown` after every receive has completed (or
    // leaks it if some did not), and drops the ring before it.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), BGID, 0)?
    };
    crate::debug!(
        "worker {}: io_uring ring {}/{} entries, {} x {} byte receive buffers, body by {:?}",
        spec.id,
        SQ_ENTRIES,
        CQ_ENTRIES,
        bufs.entries(),
        bufs.buf_size(),
        mode
    );
    let listeners = spec
        .listeners
        .iter()
        .map(|_| Acceptor {
            armed: false,
            multi: false,
            cancelled: false,
        })
        .collect();
    let mut w = Worker {
        io: Io {
            ring,
            inflight: 0,
            backlog: VecDeque::new(),
        },
        bufs,
        conns: Slab::new(),
        pool: Pool::default(),
        sh: Shared::new(&spec),
        spec,
        mode,
        listeners,
        accepting: true,
        accept_pause_until: None,
        parked: VecDeque::new(),
        wake_armed: false,
        stopping: false,
        disarm_reported: false,
        next_gen: 0,
        cqes: Vec::with_capacity(CQ_ENTRIES as usize),
        overflow_logged: false,
        lost_seen: 0,
        stray_logged: false,
    };
    // A panic in the loop must not free memory the kernel may still write:
    // tear down (cancel and drain every op) before unwinding further.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run_loop()));
    w.teardown();
    match r {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Field order matters: `io` (the ring) is dropped before `bufs`.
struct Worker {
    io: Io,
    bufs: BufRing,
    conns: Slab<Box<UConn>>,
    pool: Pool,
    sh: Shared,
    spec: WorkerSpec,
    mode: BodyMode,
    listeners: Vec<Acceptor>,
    accepting: bool,
    /// Accepting paused (EMFILE, or at max_connections) until then.
    accept_pause_until: Option<Instant>,
    /// Accepted beyond max_connections (a multishot accept overshoots a
    /// little): served when a slot frees up, like an accept backlog.
    parked: VecDeque<RawFd>,
    wake_armed: bool,
    stopping: bool,
    /// `Control::set_accepting(false)` was said (after DRAIN).
    disarm_reported: bool,
    next_gen: u32,
    cqes: Vec<(u64, i32, u32)>,
    overflow_logged: bool,
    lost_seen: u32,
    stray_logged: bool,
}

fn benign_enter_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
    )
}

impl Worker {
    fn run_loop(&mut self) -> io::Result<()> {
        self.arm_wake();
        self.sync_accept();
        // Hand the accepts to the kernel now, then tell the daemon we accept.
        self.io.flush_backlog();
        match self.io.ring.submit() {
            Ok(_) => {}
            Err(e) if benign_enter_error(&e) => {}
            Err(e) => return Err(e),
        }
        self.spec.control.set_accepting(true);
        loop {
            self.io.flush_backlog();
            let ts = types::Timespec::from(self.sh.wait_timeout());
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.io.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if benign_enter_error(&e) => {}
                Err(e) => return Err(e),
            }
            self.sh.clock.update();
            self.reap();
            if self.sh.tick_due() {
                self.on_tick();
            }
            // Drained also waits for the accepts' final completions:
            // connections they bring in until then are served.
            let drained = self.conns.is_empty() && !self.listeners.iter().any(|a| a.armed);
            match self.sh.step(&self.spec.control, drained) {
                Step::Exit => break,
                Step::BeginDrain => self.begin_drain(),
                Step::Run => {}
            }
        }
        Ok(())
    }

    /// Handle every completion available (a bounded number of rounds).
    fn reap(&mut self) {
        for _ in 0..8 {
            let mut batch = std::mem::take(&mut self.cqes);
            batch.clear();
            batch.extend(
                self.io
                    .ring
                    .completion()
                    .map(|e| (e.user_data(), e.result(), e.flags())),
            );
            if batch.is_empty() {
                self.cqes = batch;
                if self.io.ring.submission().cq_overflow() {
                    if !self.overflow_logged {
                        self.overflow_logged = true;
                        crate::warn!(
                            "worker {}: io_uring completion queue overflowed; draining the kernel's backlog",
                            self.spec.id
                        );
                    }
                    // An enter with GETEVENTS (the crate adds it when the
                    // overflow flag is set) moves overflowed CQEs into the CQ.
                    let _ = self.io.ring.submit();
                    continue;
                }
                break;
            }
            for &(u, res, flags) in &batch {
                self.complete(u, res, flags);
            }
            self.cqes = batch;
        }
        let lost = self.io.ring.completion().overflow();
        if lost != self.lost_seen {
            self.lost_seen = lost;
            crate::error!(
                "worker {}: io_uring dropped {} completion(s); operations may be unaccounted for",
                self.spec.id,
                lost
            );
        }
    }

    fn complete(&mut self, u: u64, res: i32, flags: u32) {
        let kind = (u >> 56) as u8;
        let idx = (u & 0xffff_ffff) as usize;
        let generation = ((u >> 32) as u32) & GEN_MASK;
        let last = !cqueue::more(flags);
        if last {
            self.io.inflight = self.io.inflight.saturating_sub(1);
        }
        match kind {
            ACCEPT => self.on_accept(idx, res, last),
            WAKE => self.on_wake(res, last),
            CANCEL => {
                if res < 0 && res != -libc::ENOENT && res != -libc::EALREADY {
                    crate::debug!("io_uring cancel: {}", errno_str(res));
                }
            }
            CLOSE => {
                if res < 0 {
                    crate::debug!("io_uring close: {}", errno_str(res));
                }
            }
            RECV..=POLL_OUT => self.on_conn(kind, idx, generation, res, flags, last),
            _ => self.stray(kind, res, flags),
        }
    }

    fn stray(&mut self, kind: u8, res: i32, flags: u32) {
        if let Some(b) = cqueue::buffer_select(flags) {
            self.bufs.recycle(b);
        }
        if !self.stray_logged {
            self.stray_logged = true;
            crate::error!(
                "worker {}: io_uring completion for nothing we track (kind {kind}, result {res})",
                self.spec.id
            );
        }
    }

    fn on_wake(&mut self, res: i32, last: bool) {
        if last {
            self.wake_armed = false;
        }
        if res >= 0 {
            // The state itself is read at the end of the turn.
            self.spec.control.drain_wake();
        } else if res != -libc::ECANCELED {
            crate::warn!("worker {}: wake poll: {}", self.spec.id, errno_str(res));
        }
        if !self.wake_armed && !self.stopping {
            self.arm_wake();
        }
    }

    fn arm_wake(&mut self) {
        let e = opcode::PollAdd::new(types::Fd(self.spec.control.wake_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(ud(WAKE, 0, 0));
        self.io.push_plain(e);
        self.wake_armed = true;
    }

    fn on_accept(&mut self, li: usize, res: i32, last: bool) {
        if let Some(a) = self.listeners.get_mut(li)
            && last
        {
            a.armed = false;
            a.cancelled = false;
        }
        if res >= 0 {
            if self.stopping {
                close_fd(res);
            } else if self.accepting && self.conns.len() >= self.spec.max_connections {
                self.parked.push_back(res);
            } else {
                self.start_conn(res);
            }
        } else {
            let e = errno_str(res);
            match -res {
                libc::ECANCELED
                | libc::EINTR
                | libc::EAGAIN
                | libc::ECONNABORTED
                | libc::EPROTO => {}
                _ if super::is_resource_error(&e) => {
                    crate::warn!("accept: {e}; pausing accepts for 100ms");
                    self.pause_accept();
                }
                _ => {
                    crate::error!("accept: {e}");
                    self.pause_accept();
                }
            }
        }
        if last && !self.accepting && !self.stopping {
            self.take_stranded(li);
        }
        self.sync_accept();
        self.report_disarmed();
    }

    /// After DRAIN: tell the daemon once every accept of ours is gone, so a
    /// reload hands the listeners over with no moment where we still accept.
    fn report_disarmed(&mut self) {
        if !self.accepting && !self.disarm_reported && !self.listeners.iter().any(|a| a.armed) {
            self.disarm_reported = true;
            self.spec.control.set_accepting(false);
        }
    }

    /// Our multishot accept ended while draining. Waiters on a listener are
    /// woken one at a time (exclusive wake-ups): a connection whose wake-up
    /// went to our accept just before it was cancelled would sit in the
    /// backlog with nobody woken for it (a reload's new workers, say). Take
    /// such connections and serve them (one request each, then close).
    fn take_stranded(&mut self, li: usize) {
        let lfd = self.spec.listeners[li].raw();
        for _ in 0..STRANDED_MAX {
            // SAFETY: accept4 on our listener with null address pointers.
            let fd = unsafe {
                libc::accept4(
                    lfd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                break;
            }
            self.start_conn(fd);
        }
    }

    fn pause_accept(&mut self) {
        self.accept_pause_until = Some(self.sh.clock.now().instant + ACCEPT_PAUSE);
    }

    /// Arm or cancel the multishot accepts to match what we want now.
    fn sync_accept(&mut self) {
        let mut want = !self.stopping && self.accepting && self.accept_pause_until.is_none();
        if want && self.conns.len() + self.parked.len() >= self.spec.max_connections {
            self.pause_accept();
            want = false;
        }
        // Near max_connections, accept one at a time: a multishot accept
        // keeps taking connections until its cancel lands, which would
        // overshoot the limit by a loop turn's worth of arrivals.
        let room = self
            .spec
            .max_connections
            .saturating_sub(self.conns.len() + self.parked.len());
        let multi = room >= SINGLE_ACCEPT_BELOW;
        for (i, a) in self.listeners.iter_mut().enumerate() {
            if want && !a.armed {
                let lfd = self.spec.listeners[i].raw();
                // Non-blocking sockets: a splice into a full socket returns
                // (short or EAGAIN) instead of parking an io-wq thread.
                let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
                let e = if multi {
                    opcode::AcceptMulti::new(types::Fd(lfd))
                        .flags(flags)
                        .build()
                } else {
                    opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
                        .flags(flags)
                        .build()
                };
                self.io.push_plain(e.user_data(ud(ACCEPT, i, 0)));
                a.armed = true;
                a.multi = multi;
            } else if a.armed && !a.cancelled && (!want || a.multi && !multi) {
                self.io.push_plain(
                    opcode::AsyncCancel::new(ud(ACCEPT, i, 0))
                        .build()
                        .user_data(ud(CANCEL, i, 0)),
                );
                a.cancelled = true;
            }
        }
    }

    fn start_conn(&mut self, fd: RawFd) {
        let peer = peer_of(fd);
        super::set_nodelay(fd);
        let now = self.sh.clock.now().instant;
        let generation = self.next_gen;
        self.next_gen = (generation + 1) & GEN_MASK;
        let mut conn = Conn::new(peer, now, &self.sh.limits);
        if !self.accepting {
            // Accepted while draining: its first request is answered, then it closes.
            conn.begin_shutdown(&mut self.sh.ctx());
        }
        let slot = self
            .conns
            .insert(Box::new(UConn::new(fd, generation, conn, now)));
        if let Some(c) = self.conns.get_mut(slot) {
            c.slot = slot;
        }
        // Arms the receive; data that came with the connection is read at once.
        self.settle(slot);
    }

    /// Serve parked connections while there is room.
    fn unpark(&mut self) {
        while !self.stopping && self.conns.len() < self.spec.max_connections {
            let Some(fd) = self.parked.pop_front() else {
                break;
            };
            self.start_conn(fd);
        }
    }

    fn on_conn(&mut self, kind: u8, idx: usize, generation: u32, res: i32, flags: u32, last: bool) {
        let bid = cqueue::buffer_select(flags);
        let Some(c) = self.conns.get_mut(idx) else {
            return self.stray(kind, res, flags);
        };
        if c.generation != generation {
            return self.stray(kind, res, flags);
        }
        let c: &mut UConn = c;
        if last {
            c.pending &= !bit(kind);
            c.cancelled &= !bit(kind);
        }
        match kind {
            RECV => {
                if res > 0 {
                    let Some(b) = bid else {
                        crate::error!("io_uring receive completed without a buffer");
                        c.recv_done = true;
                        c.st_err = true;
                        return self.settle(idx);
                    };
                    // SAFETY: `b` was handed to us by this completion and is
                    // recycled only after the data has been used below.
                    let data = unsafe { self.bufs.get(b, res as usize) };
                    if c.closing {
                        // Discard.
                    } else if c.frozen() {
                        c.stash.extend_from_slice(data);
                    } else {
                        c.conn.handle_input(&mut self.sh.ctx(), data);
                    }
                    self.bufs.recycle(b);
                } else if res == 0 {
                    c.recv_done = true;
                    if c.closing {
                    } else if c.frozen() {
                        c.st_eof = true;
                    } else {
                        c.conn.handle_eof(&mut self.sh.ctx());
                    }
                } else {
                    if let Some(b) = bid {
                        self.bufs.recycle(b);
                    }
                    match -res {
                        // Out of buffers, or cancelled by us: re-armed by settle if wanted.
                        libc::ENOBUFS | libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                        _ => {
                            crate::debug!("{}: recv: {}", c.conn.peer(), errno_str(res));
                            c.recv_done = true;
                            if c.closing {
                            } else if c.frozen() {
                                c.st_err = true;
                            } else {
                                c.conn.handle_error(&mut self.sh.ctx());
                            }
                        }
                    }
                }
            }
            _ if res > 0 => {
                let n = res as usize;
                match kind {
                    SEND_CONN => c.ack += n,
                    SEND_HEAD => c.hpos = (c.hpos + n).min(c.hbuf.len()),
                    SEND_BUF => {
                        if n > c.fend - c.fstart {
                            crate::error!(
                                "{}: io_uring sent {n} bytes of a {} byte buffer",
                                c.conn.peer(),
                                c.fend - c.fstart
                            );
                            c.wr_err = true;
                        } else {
                            let h = n.min(c.head_ahead);
                            c.head_ahead -= h;
                            c.ack += n - h;
                            c.fstart += n;
                            if c.fstart == c.fend {
                                c.fstart = 0;
                                c.fend = 0;
                            }
                        }
                    }
                    READ => c.fend += n,
                    POLL_OUT => {}
                    SPLICE_IN => c.pipe_pending += n,
                    SPLICE_OUT => {
                        let n = n.min(c.pipe_pending);
                        c.pipe_pending -= n;
                        c.ack += n;
                    }
                    _ => {}
                }
            }
            READ | SPLICE_IN if res == 0 => c.short_file = true,
            _ => match -res {
                // Our own cancel, or a link broken by a short result before.
                libc::ECANCELED | libc::EINTR => {}
                // The (non-blocking) socket is full: the pipe keeps the bytes,
                // and the next splice waits for POLLOUT first.
                libc::EAGAIN if kind == SPLICE_OUT => {}
                _ => {
                    if res != -libc::EPIPE && res != -libc::ECONNRESET {
                        crate::debug!("{}: io_uring op {kind}: {}", c.conn.peer(), errno_str(res));
                    }
                    c.wr_err = true;
                    if kind == SPLICE_IN || kind == SPLICE_OUT {
                        c.pipe_dirty = true;
                    }
                }
            },
        }
        self.settle(idx);
    }

    /// Bring a connection up to date after something happened to it: apply
    /// deferred events, start the next write, close it, and arm or cancel the
    /// receive.
    fn settle(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let c: &mut UConn = c;
        if !c.closing && !c.frozen() {
            c.apply_deferred(&mut self.sh);
            c.pump(&mut self.io, &mut self.pool, &mut self.sh, self.mode);
        }
        if c.closing {
            if c.pending == 0 {
                self.finish_close(slot);
            }
            return;
        }
        let lim = &self.sh.limits;
        let want = !c.recv_done && c.conn.wants_input(lim) && c.stash.len() < lim.max_buffered();
        let armed = c.pending & bit(RECV) != 0;
        if want && !armed {
            self.io.push_plain(
                opcode::RecvMulti::new(types::Fd(c.fd), BGID)
                    .build()
                    .user_data(c.ud(RECV)),
            );
            c.pending |= bit(RECV);
        } else if !want && armed {
            // Backpressure (or the Conn is done reading): stop receiving.
            let now = self.sh.clock.now().instant;
            c.cancel(&mut self.io, bit(RECV), now);
        }
    }

    /// Nothing is in flight on this connection any more: close it.
    fn finish_close(&mut self, slot: usize) {
        let Some(mut c) = self.conns.remove(slot) else {
            return;
        };
        debug_assert_eq!(c.pending, 0);
        if !c.conn.is_closed() {
            // Log the response that was cut short.
            c.conn.handle_error(&mut self.sh.ctx());
        }
        c.release(&mut self.pool);
        self.io
            .push_plain(opcode::Close::new(types::Fd(c.fd)).build().user_data(ud(
                CLOSE,
                slot,
                c.generation,
            )));
        drop(c);
        self.unpark();
        self.sync_accept();
    }

    fn on_tick(&mut self) {
        let now = self.sh.clock.now().instant;
        self.pool.trim();
        if let Some(t) = self.accept_pause_until
            && now >= t
        {
            self.accept_pause_until = None;
            self.unpark();
            self.sync_accept();
        }
        for slot in self.conns.keys() {
            self.recancel(slot, now);
            let Some(c) = self.conns.get_mut(slot) else {
                continue;
            };
            if c.closing || c.conn.poll_timeout().is_none_or(|d| d > now) {
                continue;
            }
            if c.frozen() {
                // A write is stuck (or slow): cancel it; the timeout is
                // applied when its completion arrives.
                c.st_timeout = true;
                c.cancel(&mut self.io, WRITE_OPS, now);
            } else {
                super::expire(&mut c.conn, c.fd, &mut self.sh.ctx());
                self.settle(slot);
            }
        }
    }

    /// Repeat cancellations that have not taken effect after a while (an op
    /// still waiting behind a link is not found by AsyncCancel).
    fn recancel(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let stuck = c.pending & c.cancelled;
        if stuck != 0 && now >= c.cancel_at + RECANCEL {
            c.cancelled &= !stuck;
            c.cancel(&mut self.io, stuck, now);
        }
    }

    fn begin_drain(&mut self) {
        self.accepting = false;
        self.sync_accept();
        // A listener whose accept was already off (paused) may hold a
        // connection whose wake-up we consumed when we cancelled it.
        for li in 0..self.listeners.len() {
            if !self.listeners[li].armed {
                self.take_stranded(li);
            }
        }
        self.report_disarmed();
        for slot in self.conns.keys() {
            let Some(c) = self.conns.get_mut(slot) else {
                continue;
            };
            if c.closing {
                continue;
            }
            if c.frozen() {
                c.st_shutdown = true;
            } else {
                c.conn.begin_shutdown(&mut self.sh.ctx());
                self.settle(slot);
            }
        }
        // Connections accepted beyond the limit: answer their first request.
        while let Some(fd) = self.parked.pop_front() {
            self.start_conn(fd);
        }
    }

    /// Cancel everything, wait for every completion, then let go of the ring
    /// and the memory it may write to.
    fn teardown(&mut self) {
        self.stopping = true;
        if self.wake_armed {
            self.io.push_plain(
                opcode::AsyncCancel::new(ud(WAKE, 0, 0))
                    .build()
                    .user_data(ud(CANCEL, 0, 0)),
            );
        }
        self.sync_accept();
        while let Some(fd) = self.parked.pop_front() {
            close_fd(fd);
        }
        let now = self.sh.clock.now().instant;
        for slot in self.conns.keys() {
            if let Some(c) = self.conns.get_mut(slot) {
                c.start_close(&mut self.io, now);
            }
            self.settle(slot);
        }
        let limit = now + TEARDOWN_LIMIT;
        while self.io.inflight > 0 {
            self.io.flush_backlog();
            let ts = types::Timespec::from(Duration::from_millis(100));
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.io.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if benign_enter_error(&e) => {}
                Err(e) => {
                    crate::error!("worker {}: io_uring_enter: {e}", self.spec.id);
                    break;
                }
            }
            self.sh.clock.update();
            self.reap();
            let now = self.sh.clock.now().instant;
            for slot in self.conns.keys() {
                self.recancel(slot, now);
            }
            if now >= limit {
                break;
            }
        }
        if self.io.inflight > 0 {
            crate::error!(
                "worker {}: {} io_uring operation(s) did not finish; leaking their memory",
                self.spec.id,
                self.io.inflight
            );
            self.bufs.leak();
            // The fds must stay allocated (ops may still name them), but the
            // clients should not wait forever: end both directions now.
            for slot in self.conns.keys() {
                if let Some(c) = self.conns.get_mut(slot) {
                    // SAFETY: shutdown does not release the fd, so no op in
                    // flight can see it reused.
                    unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
                }
            }
            std::mem::forget(std::mem::take(&mut self.conns));
        } else {
            let _ = self.io.ring.submitter().unregister_buf_ring(BGID);
        }
        self.spec.control.set_accepting(false);
        self.sh.flush_log();
    }
}
