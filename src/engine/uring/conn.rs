//! One connection's ops and how their completions reach its `Conn`: the
//! multishot receive, and the write chain whose ops own the response's
//! write state while they are in flight (`out.rs`); `send.rs` builds the
//! chains.
//!
//! The `Conn` is never frozen: input, EOF, errors, timeouts and drain go to
//! it as they happen, also while a write is in flight. What a write reads
//! from (held segment clones, the message's iovecs, the read buffer, the
//! pipe) is in its `Out`, which the chain's ops own (`Write::InFlight`)
//! until the final completion of the last of them: only then can it be
//! reused for the next write or given back to the pool.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

use super::Worker;
use super::out::{Stop, Write};
use super::pool::Pool;
use super::ring::{
    CANCEL, CLOSE, Io, READ, RECV, SEND_BUF, SEND_BYTES, SPLICE_IN, Sock, bit, errno_str,
    recv_multi, ud,
};
use super::send::{self, BodyMode};
use crate::http::{Ctx, Transmit};
use crate::tls::Session;

/// Most direct chunks (up to 1 MiB each) `settle` sends for one connection
/// before the rest waits its turn behind a POLLOUT. With the chunk a write
/// completion may send just before (a head or a POLLOUT completed), at most
/// 2 MiB per completion (epoll's `TURN_BUDGET` is 256 KiB).
const DIRECT_ROUNDS: usize = 1;

/// One connection, inline in the worker's slab: no op in flight points
/// into it (what a write reads is in its boxed `Out`, receives land in the
/// buffer ring), so slab growth may move it.
pub struct UConn {
    pub fd: RawFd,
    /// Told apart from earlier connections in its slot (`GEN_MASK` bits).
    /// Its slot, the slab index, is not kept here but passed in (with it
    /// and wider fields the slot was 144 bytes; it is 104 now).
    pub generation: u16,
    pub conn: Session,
    /// The multishot receive is in flight.
    recv: bool,
    /// The response being written, and who has its write state.
    write: Write,
    /// Kinds whose cancellation was requested and that are still in flight.
    cancelled: u16,
    /// When they were asked (`stamp`), to ask again after `RECANCEL`.
    cancel_at: u32,
    /// The receive side is finished (EOF or error): never re-arm.
    recv_done: bool,
    /// Closing: ops are being cancelled; the fd is closed once nothing is
    /// in flight.
    pub closing: bool,
    /// The socket is the ring's fixed file `slot` (`Io::fix`).
    pub fixed: bool,
}

// Every idle connection is one slab slot: keep the engine's part of it
// small (32 bytes here, 8 on epoll), and the whole of it no larger.
const _: () = assert!(size_of::<UConn>() <= size_of::<Session>() + 32);
const _: () = assert!(size_of::<UConn>() <= 104);

/// The low 32 bits of `now`'s `Stamp` in milliseconds, which wrap (every
/// 49 days): a connection keeps a cancel time in 4 bytes, not 16, and
/// compares by `wrapping_sub`.
fn stamp(now: Instant) -> u32 {
    crate::http::Stamp::of(now).millis() as u32
}

impl UConn {
    pub fn new(fd: RawFd, generation: u16, conn: Session, now: Instant) -> UConn {
        UConn {
            fd,
            generation,
            conn,
            recv: false,
            write: Write::Idle,
            cancelled: 0,
            cancel_at: stamp(now),
            recv_done: false,
            closing: false,
            fixed: false,
        }
    }

    fn sock(&self, slot: usize) -> Sock {
        Sock {
            fd: self.fd,
            slot,
            generation: self.generation.into(),
            fixed: self.fixed,
        }
    }

    /// One bit per op kind in flight: nothing is when it is 0.
    fn pending(&self) -> u16 {
        let recv = if self.recv { bit(RECV) } else { 0 };
        recv | self.write.ops()
    }

    /// Ask the kernel to cancel the ops of `kinds` that are in flight.
    fn cancel(&mut self, slot: usize, io: &mut Io, kinds: u16, now: Instant) {
        let todo = self.pending() & kinds & !self.cancelled;
        for kind in 0..16u8 {
            if todo & bit(kind) != 0 {
                io.push_plain(
                    opcode::AsyncCancel::new(self.sock(slot).ud(kind))
                        .build()
                        .user_data(ud(CANCEL, slot, self.generation.into())),
                );
            }
        }
        if todo != 0 {
            self.cancelled |= todo;
            self.cancel_at = stamp(now);
        }
    }

    pub fn start_close(&mut self, slot: usize, io: &mut Io, now: Instant) {
        if !self.closing {
            self.closing = true;
            self.cancel(slot, io, u16::MAX, now);
        }
    }

    /// Give back what the last write used (the response is over, or the
    /// connection is). A write state that ops in flight own stays theirs.
    fn release(&mut self, pool: &mut Pool) {
        match std::mem::take(&mut self.write) {
            Write::Ready(o) => pool.put_out(o),
            w => {
                debug_assert!(!w.in_flight());
                self.write = w;
            }
        }
    }

    /// Start the next write, or act on Idle/Close/Shutdown. Does nothing
    /// while a write is in flight or the connection is closing.
    ///
    /// Bytes copied for their Send (`send::copy_send`) are the ring's from
    /// then on: the `Conn` is told at once that they were sent, as epoll's
    /// `send(2)` into the socket buffer does, so its exchange, head and
    /// segments go now, not when the Send completes (with a burst of
    /// responses in flight, those would be hundreds of small allocations
    /// alive at once, whose freed chunks then pin pages of the heap). What
    /// the bytes still need is counted as the socket's unsent bytes
    /// (`EngineConn::held`), and a close waits for them (`settle`).
    fn pump(
        &mut self,
        slot: usize,
        io: &mut Io,
        pool: &mut Pool,
        mode: BodyMode,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        let sock = self.sock(slot);
        loop {
            if self.closing || self.write.in_flight() {
                return;
            }
            if self.conn.is_closed() {
                self.start_close(slot, io, now);
                return;
            }
            if let Write::Ready(mut o) = std::mem::take(&mut self.write) {
                // Bytes the engine already holds go first.
                if o.fstart < o.fend {
                    self.write = send::send_buf(o, sock, io);
                    return;
                }
                if o.queued() {
                    self.write = send::wait_room(o, sock, io);
                    return;
                }
                // The last write is over: its clones can go, and its buffer
                // (all sent): a connection holds one only while it sends
                // from it.
                o.held.clear();
                if let Some(b) = o.fbuf.take() {
                    pool.put_buf(b);
                }
                o.owned = false;
                self.write = Write::Ready(o);
            }
            match self.conn.poll_transmit() {
                Transmit::Idle => break self.release(pool),
                Transmit::Close => break self.start_close(slot, io, now),
                Transmit::Shutdown => crate::engine::policy::half_close(self.fd, &mut self.conn),
                Transmit::Send(segs) => {
                    let mut o = match std::mem::take(&mut self.write) {
                        Write::Ready(o) => o,
                        _ => pool.take_out(),
                    };
                    o.hold(segs);
                    o.moved = stamp(now);
                    o.acked = 0;
                    self.write = send::start(o, sock, io, pool, mode);
                    if let Some((n, _)) = self.write.owned() {
                        self.conn.handle_sent(ctx, n);
                    }
                    return;
                }
            }
        }
    }

    /// Bytes the `Conn` counts as sent that are not in the socket yet.
    pub fn held(&self) -> usize {
        self.write.owned().map_or(0, |(n, _)| n)
    }

    /// The `Conn` has ended but owned bytes of its last response are still
    /// on their way to the socket (a close now would cancel their Send and
    /// cut the response short): wait for them, as epoll's close leaves
    /// queued bytes to the kernel. True while waiting; false once they are
    /// out, or when they have not moved for `send_timeout` (the client is
    /// not reading: then they go with the connection), as epoll's
    /// send_timeout ends a response without progress, not a slow one.
    fn waits_for_owned(&self, now: Instant, send_timeout: Duration) -> bool {
        match self.write.owned() {
            Some((_, moved)) if self.write.in_flight() => {
                u128::from(stamp(now).wrapping_sub(moved)) < send_timeout.as_millis()
            }
            _ => false,
        }
    }

    /// Something is queued and the socket is full: wait for room.
    fn wait_room(&mut self, slot: usize, io: &mut Io) {
        let sock = self.sock(slot);
        self.write = match std::mem::take(&mut self.write) {
            Write::Ready(o) => send::wait_room(o, sock, io),
            w => w,
        };
    }

    /// Send what is queued (`send::send_queued`) and tell the `Conn`: what
    /// was sent (`sent` bytes before it included), or what stopped it.
    fn flush_queued(&mut self, ctx: &mut Ctx<'_>, mut sent: usize) {
        let (n, stop) = match &mut self.write {
            Write::Ready(o) => send::send_queued(o, self.fd),
            _ => (0, None),
        };
        sent += n;
        if sent > 0 && !self.closing {
            self.conn.handle_sent(ctx, sent);
        }
        let Some(stop) = stop else {
            return;
        };
        self.write.dirty();
        match stop {
            Stop::FileEnded if !self.closing => {
                crate::engine::policy::short_file(&mut self.conn, ctx)
            }
            Stop::FileEnded => {}
            Stop::Failed(errno) => self.write_failed(ctx, errno, format_args!("send to socket")),
        }
    }

    /// A write (`what`) failed with `errno`: say so, unless the peer just
    /// went away, and end the `Conn` (unless it is closing already).
    fn write_failed(&mut self, ctx: &mut Ctx<'_>, errno: i32, what: std::fmt::Arguments<'_>) {
        if errno != libc::EPIPE && errno != libc::ECONNRESET {
            crate::debug!("{}: {what}: {}", self.conn.peer(), errno_str(-errno));
        }
        if !self.closing {
            self.conn.handle_error(ctx);
        }
    }

    /// Count what a write op of `kind` moved (`n > 0` bytes). Returns the
    /// bytes that reached the socket.
    fn account(&mut self, ctx: &mut Ctx<'_>, kind: u8, n: usize) -> usize {
        let Write::InFlight(f) = &mut self.write else {
            return 0;
        };
        match f.account(kind, n) {
            Ok(sent) => sent,
            Err(len) => {
                crate::error!(
                    "{}: io_uring sent {n} bytes of a {len} byte buffer",
                    self.conn.peer()
                );
                self.conn.handle_error(ctx);
                0
            }
        }
    }

    /// A write op of `kind` failed with `errno`.
    fn op_failed(&mut self, ctx: &mut Ctx<'_>, kind: u8, errno: i32) {
        match errno {
            // Our own cancel, or a link broken by a short result before.
            libc::ECANCELED | libc::EINTR => {}
            errno => {
                if kind == SPLICE_IN {
                    self.write.dirty();
                }
                self.write_failed(ctx, errno, format_args!("io_uring op {kind}"));
            }
        }
    }

    /// After a write op's completion was accounted: the op is over if
    /// `last` (the write state comes back once its chain is), `sent` bytes
    /// go to the `Conn`, and what is queued moves on.
    fn landed(&mut self, ctx: &mut Ctx<'_>, kind: u8, last: bool, sent: usize, moved: bool) {
        self.write = match std::mem::take(&mut self.write) {
            Write::InFlight(f) if last => f.complete(kind),
            w => w,
        };
        let ahead = self.write.ahead();
        let flying = self.write.in_flight();
        // The pipe got the file's pages, the bytes before them are out, or
        // the socket has room again: move them on now (see send.rs for why
        // this is not a ring op).
        if self.write.queued() && ahead == 0 && moved && !self.closing && !flying {
            self.flush_queued(ctx, sent);
        } else if sent > 0 && !self.closing {
            self.conn.handle_sent(ctx, sent);
        }
        if ahead > 0 && !flying && !self.closing && !self.conn.is_closed() {
            // A short send (MSG_WAITALL: the socket failed) of the bytes
            // before a direct chunk: the chunk must not follow part of them.
            self.write.dirty();
            self.conn.handle_error(ctx);
        }
    }
}

impl Worker {
    /// A completion for one of a connection's ops: to the handler of its
    /// kind, then the connection is brought up to date.
    pub(super) fn on_conn(
        &mut self,
        kind: u8,
        idx: usize,
        generation: u32,
        res: i32,
        flags: u32,
        last: bool,
    ) {
        let Some(c) = self.conns.get_mut(idx) else {
            return self.stray(kind, res, flags);
        };
        let ours = match kind {
            RECV => c.recv,
            _ => c.write.ops() & bit(kind) != 0,
        };
        if u32::from(c.generation) != generation || !ours {
            return self.stray(kind, res, flags);
        }
        if last {
            c.cancelled &= !bit(kind);
            if kind == RECV {
                c.recv = false;
            }
        }
        match kind {
            RECV => self.on_recv(idx, res, cqueue::buffer_select(flags), flags),
            SEND_BYTES | SEND_BUF => self.on_send(idx, kind, res, last),
            READ | SPLICE_IN => self.on_fill(idx, kind, res, last),
            _ => self.on_poll(idx, kind, res, last),
        }
        self.settle(idx);
    }

    /// The multishot receive delivered bytes (in buffer `bid`), EOF, or an
    /// error; an ended receive is armed again by `settle` if wanted.
    fn on_recv(&mut self, idx: usize, res: i32, bid: Option<u16>, flags: u32) {
        let more = cqueue::buffer_more(flags);
        let Some(c) = self.conns.get_mut(idx) else {
            if let Some(b) = bid {
                self.bufs.skip(b, res.max(0) as usize);
                self.bufs.finish(b, more);
            }
            return;
        };
        let ctx = &mut self.sh.ctx();
        if res > 0 {
            let Some(b) = bid else {
                crate::error!("io_uring receive completed without a buffer");
                c.recv_done = true;
                return c.conn.handle_error(ctx);
            };
            // SAFETY: `b` was handed to us by this completion and is
            // given back only after the data has been used below.
            let data = unsafe { self.bufs.get(b, res as usize) };
            if !c.closing {
                c.conn.handle_input(ctx, data);
            }
            return self.bufs.finish(b, more);
        }
        // No bytes: a buffer named here (none is expected) holds none.
        if let Some(b) = bid {
            self.bufs.finish(b, more);
        }
        if res == 0 {
            c.recv_done = true;
            if !c.closing {
                c.conn.handle_eof(ctx);
            }
            return;
        }
        match -res {
            // Out of buffers, or cancelled by us: re-armed by settle if wanted.
            libc::ENOBUFS | libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
            // This kernel takes no byte limit on a multishot receive:
            // armed again without one by settle.
            libc::EINVAL if self.recv_limit => {
                self.recv_limit = false;
                crate::info!(
                    "io_uring: this kernel has no byte limit for multishot receives; \
                     pipelined input is cut off a little later"
                );
            }
            _ => {
                crate::debug!("{}: recv: {}", c.conn.peer(), errno_str(res));
                c.recv_done = true;
                if !c.closing {
                    c.conn.handle_error(ctx);
                }
            }
        }
    }

    /// A Send or SendMsg completed (`SEND_BYTES`, `SEND_BUF`): the bytes
    /// that reached the socket are acknowledged at once, in order (linked
    /// ops complete in order).
    fn on_send(&mut self, idx: usize, kind: u8, res: i32, last: bool) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let ctx = &mut self.sh.ctx();
        let sent = match res {
            1.. => c.account(ctx, kind, res as usize),
            0 => 0,
            _ => {
                c.op_failed(ctx, kind, -res);
                0
            }
        };
        c.landed(ctx, kind, last, sent, res > 0);
    }

    /// A Read into the buffer or a Splice into the pipe completed (`READ`,
    /// `SPLICE_IN`): nothing from the file means it is shorter than
    /// announced.
    fn on_fill(&mut self, idx: usize, kind: u8, res: i32, last: bool) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let ctx = &mut self.sh.ctx();
        match res {
            1.. => {
                c.account(ctx, kind, res as usize);
            }
            0 => crate::engine::policy::short_file(&mut c.conn, ctx),
            _ => c.op_failed(ctx, kind, -res),
        }
        c.landed(ctx, kind, last, 0, res > 0);
    }

    /// The socket has room again (`POLL_OUT`), or the poll failed.
    fn on_poll(&mut self, idx: usize, kind: u8, res: i32, last: bool) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let ctx = &mut self.sh.ctx();
        if res < 0 {
            c.op_failed(ctx, kind, -res);
        }
        c.landed(ctx, kind, last, 0, res > 0);
    }

    /// Bring a connection up to date after something happened to it: start
    /// the next write (or act on Close/Shutdown), close it, and arm or cancel
    /// the receive.
    pub(super) fn settle(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let now = self.sh.clock.now().instant();
        if !c.closing {
            if c.conn.is_closed() {
                if !c.waits_for_owned(now, self.sh.limits.send_timeout) {
                    c.start_close(slot, &mut self.io, now);
                }
            } else if !c.write.in_flight() {
                for round in 0.. {
                    c.pump(
                        slot,
                        &mut self.io,
                        &mut self.pool,
                        self.mode,
                        now,
                        &mut self.sh.ctx(),
                    );
                    // A direct chunk (cached pages) with nothing to send
                    // before it: send it now.
                    if c.closing || c.write.in_flight() || !c.write.queued() {
                        break;
                    }
                    if round == DIRECT_ROUNDS {
                        c.wait_room(slot, &mut self.io);
                        break;
                    }
                    c.flush_queued(&mut self.sh.ctx(), 0);
                }
            }
        }
        if c.closing {
            if c.pending() == 0 {
                self.finish_close(slot);
            }
            return;
        }
        let room = if c.recv_done {
            0
        } else {
            c.conn.input_room(&self.sh.limits)
        };
        let want = room > 0;
        let armed = c.recv;
        if want && !armed {
            // The receive ends by itself after what the Conn may keep (it is
            // armed again then): a flood of pipelined requests stays in the
            // socket, not in our memory. Without the limit (older kernels),
            // the cancel below comes a burst of buffers late.
            let limit = self
                .recv_limit
                .then_some(room.min(u32::MAX as usize) as u32);
            self.io
                .push_plain(recv_multi(c.fd, super::BGID, limit).user_data(c.sock(slot).ud(RECV)));
            c.recv = true;
        } else if !want && armed {
            // Backpressure (or the Conn is done reading): stop receiving.
            c.cancel(slot, &mut self.io, bit(RECV), now);
        }
    }

    /// Nothing is in flight on this connection any more: close it.
    pub(super) fn finish_close(&mut self, slot: usize) {
        let Some(mut c) = self.conns.remove(slot) else {
            return;
        };
        debug_assert_eq!(c.pending(), 0);
        if !c.conn.is_closed() {
            // Log the response that was cut short.
            c.conn.handle_error(&mut self.sh.ctx());
        }
        c.release(&mut self.pool);
        if c.fixed {
            self.io.unfix(slot);
        }
        self.io
            .push_plain(opcode::Close::new(types::Fd(c.fd)).build().user_data(ud(
                CLOSE,
                slot,
                c.generation.into(),
            )));
        drop(c);
        self.unpark();
        self.sync_accept();
    }

    /// A timer tick for a connection with owned bytes in flight: their
    /// Send says nothing until it is done, so that the peer acknowledged
    /// more bytes since the last tick (TCP_INFO) is their progress (noted
    /// while the `Conn` goes on too, so that the wait after it ended counts
    /// from the last progress). One that waits for them after its `Conn`
    /// ended (`UConn::waits_for_owned`) is closed once they have not moved
    /// for `send_timeout`.
    pub(super) fn owned_progress(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.closing || !c.write.in_flight() || c.write.owned().is_none() {
            return;
        }
        if let Some(acked) = crate::sys::bytes_acked(c.fd) {
            c.write.progress(acked, stamp(now));
        }
        if c.conn.is_closed() && !c.waits_for_owned(now, self.sh.limits.send_timeout) {
            self.settle(slot);
        }
    }

    /// Repeat cancellations that have not taken effect after a while (an op
    /// still waiting behind a link is not found by AsyncCancel).
    pub(super) fn recancel(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let stuck = c.pending() & c.cancelled;
        let waited = stamp(now).wrapping_sub(c.cancel_at);
        if stuck != 0 && waited >= super::RECANCEL.as_millis() as u32 {
            c.cancelled &= !stuck;
            c.cancel(slot, &mut self.io, stuck, now);
        }
    }
}
