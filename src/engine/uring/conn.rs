//! Per-connection operation state: what is in flight on a socket, what the
//! engine holds for it (segment clones, a pooled buffer or pipe), and how
//! completions reach the `Conn`.
//!
//! The `Conn` is never frozen: input, EOF, errors, timeouts and drain go to
//! it as they happen, also while a write is in flight. What a write reads
//! from is owned by the `UConn`'s write state (`Out`: `held` clones, the
//! message's iovecs, `fbuf`, `pipe`) and is only let go of when no write op
//! is pending (`writing()` false), which `pump` and `release` check: that
//! is the one rule the `unsafe` pushes rest on.

use std::os::fd::RawFd;
use std::time::Instant;

use io_uring::{cqueue, opcode, types};

use super::Worker;
use super::pool::Pool;
use super::ring::{
    CANCEL, CLOSE, Io, READ, RECV, SEND_BUF, SEND_BYTES, SPLICE_IN, WRITE_OPS, bit, errno_str,
    recv_multi, ud,
};
use super::send::{Out, SHORT};
use crate::http::{Conn, Ctx};

/// Most direct chunks (up to 1 MiB each) `settle` sends for one connection
/// before the rest waits its turn behind a POLLOUT. With the chunk `on_conn`
/// may send just before (a head or a POLLOUT completed), at most 2 MiB per
/// completion, like epoll's turn budget.
const DIRECT_ROUNDS: usize = 1;

/// One connection. Boxed in the slab: slab growth moves only the box pointer.
pub struct UConn {
    pub fd: RawFd,
    pub slot: usize,
    pub generation: u32,
    pub conn: Conn,
    /// One bit per op kind in flight.
    pub pending: u16,
    /// Kinds whose cancellation was requested and that are still in flight.
    pub cancelled: u16,
    pub cancel_at: Instant,
    /// The receive side is finished (EOF or error): never re-arm.
    pub recv_done: bool,
    /// Closing: ops are being cancelled; the fd is closed once `pending == 0`.
    pub closing: bool,
    /// The write state of the response being written (from the pool);
    /// none while the connection is idle.
    pub out: Option<Box<Out>>,
}

impl UConn {
    pub fn new(fd: RawFd, generation: u32, conn: Conn, now: Instant) -> UConn {
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
            out: None,
        }
    }

    pub fn ud(&self, kind: u8) -> u64 {
        ud(kind, self.slot, self.generation)
    }

    /// Bytes wait in the pipe, or a direct chunk is not all sent.
    pub fn queued(&self) -> bool {
        self.out.as_ref().is_some_and(|o| o.queued())
    }

    /// A write chain is in flight: what it reads from must stay put.
    pub fn writing(&self) -> bool {
        self.pending & WRITE_OPS != 0
    }

    /// Ask the kernel to cancel the ops of `kinds` that are in flight.
    pub fn cancel(&mut self, io: &mut Io, kinds: u16, now: Instant) {
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

    pub fn start_close(&mut self, io: &mut Io, now: Instant) {
        if !self.closing {
            self.closing = true;
            self.cancel(io, u16::MAX, now);
        }
    }

    /// Give back what the last write used (the response is over, or the
    /// connection is). Only when no write is in flight.
    pub fn release(&mut self, pool: &mut Pool) {
        debug_assert!(!self.writing());
        if self.writing() {
            return;
        }
        let Some(mut o) = self.out.take() else {
            return;
        };
        if let Some(b) = o.fbuf.take() {
            pool.put_buf(b);
        }
        if let Some(p) = o.pipe.take() {
            pool.put_pipe(p, o.pipe_pending == 0 && !o.pipe_dirty);
        }
        pool.put_out(o);
    }

    /// Send what is queued (`send_queued`) and tell the `Conn`: what was
    /// sent (`sent` bytes before it included), or what stopped it.
    fn flush_queued(&mut self, ctx: &mut Ctx<'_>, mut sent: usize) {
        let (n, err) = self.send_queued();
        sent += n;
        if sent > 0 && !self.closing {
            self.conn.handle_sent(ctx, sent);
        }
        let Some(errno) = err else {
            return;
        };
        self.dirty();
        if errno == SHORT {
            if !self.closing {
                crate::engine::policy::short_file(&mut self.conn, ctx);
            }
            return;
        }
        self.write_failed(ctx, errno, format_args!("send to socket"));
    }

    /// The pipe may hold bytes that will never be sent: it is not reused.
    fn dirty(&mut self) {
        if let Some(o) = self.out.as_mut() {
            o.pipe_dirty = true;
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
}

impl Worker {
    /// A completion for one of a connection's ops.
    pub(super) fn on_conn(
        &mut self,
        kind: u8,
        idx: usize,
        generation: u32,
        res: i32,
        flags: u32,
        last: bool,
    ) {
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
        if kind == RECV {
            if res > 0 {
                let Some(b) = bid else {
                    crate::error!("io_uring receive completed without a buffer");
                    c.recv_done = true;
                    c.conn.handle_error(&mut self.sh.ctx());
                    return self.settle(idx);
                };
                // SAFETY: `b` was handed to us by this completion and is
                // recycled only after the data has been used below.
                let data = unsafe { self.bufs.get(b, res as usize) };
                if !c.closing {
                    c.conn.handle_input(&mut self.sh.ctx(), data);
                }
                self.bufs.recycle(b);
            } else if res == 0 {
                c.recv_done = true;
                if !c.closing {
                    c.conn.handle_eof(&mut self.sh.ctx());
                }
            } else {
                if let Some(b) = bid {
                    self.bufs.recycle(b);
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
                            c.conn.handle_error(&mut self.sh.ctx());
                        }
                    }
                }
            }
            return self.settle(idx);
        }
        // A write op. Bytes that reached the socket are acknowledged at
        // once, in order (linked ops complete in order).
        let mut sent = 0;
        if res > 0 {
            let n = res as usize;
            match (kind, c.out.as_mut()) {
                (SEND_BYTES, _) => sent = n,
                (SEND_BUF, Some(o)) => {
                    if n > o.fend - o.fstart {
                        crate::error!(
                            "{}: io_uring sent {n} bytes of a {} byte buffer",
                            c.conn.peer(),
                            o.fend - o.fstart
                        );
                        c.conn.handle_error(&mut self.sh.ctx());
                    } else {
                        sent = n;
                        o.fstart += n;
                        if o.fstart == o.fend {
                            o.fstart = 0;
                            o.fend = 0;
                        }
                    }
                }
                (READ, Some(o)) => o.fend += n,
                (SPLICE_IN, Some(o)) => o.pipe_pending += n,
                _ => {}
            }
        } else if res == 0 && (kind == READ || kind == SPLICE_IN) {
            crate::engine::policy::short_file(&mut c.conn, &mut self.sh.ctx());
        } else if res < 0 {
            match -res {
                // Our own cancel, or a link broken by a short result before.
                libc::ECANCELED | libc::EINTR => {}
                errno => {
                    if kind == SPLICE_IN {
                        c.dirty();
                    }
                    c.write_failed(
                        &mut self.sh.ctx(),
                        errno,
                        format_args!("io_uring op {kind}"),
                    );
                }
            }
        }
        let ahead = match c.out.as_mut() {
            Some(o) if kind == SEND_BYTES || kind == SEND_BUF => {
                o.ahead = o.ahead.saturating_sub(sent);
                o.ahead
            }
            Some(o) => o.ahead,
            None => 0,
        };
        // The pipe got the file's pages, the bytes before them are out, or
        // the socket has room again: move them on now (see send.rs for why
        // this is not a ring op).
        if c.queued() && ahead == 0 && res > 0 && !c.closing && !c.writing() {
            c.flush_queued(&mut self.sh.ctx(), sent);
        } else if sent > 0 && !c.closing {
            c.conn.handle_sent(&mut self.sh.ctx(), sent);
        }
        if ahead > 0 && !c.writing() && !c.closing && !c.conn.is_closed() {
            // A short send (MSG_WAITALL: the socket failed) of the bytes
            // before a direct chunk: the chunk must not follow part of them.
            c.dirty();
            c.conn.handle_error(&mut self.sh.ctx());
        }
        self.settle(idx);
    }

    /// Bring a connection up to date after something happened to it: start
    /// the next write (or act on Close/Shutdown), close it, and arm or cancel
    /// the receive.
    pub(super) fn settle(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let c: &mut UConn = c;
        let now = self.sh.clock.now().instant;
        if !c.closing {
            if c.conn.is_closed() {
                c.start_close(&mut self.io, now);
            } else if !c.writing() {
                for round in 0.. {
                    c.pump(&mut self.io, &mut self.pool, self.mode, now);
                    // A direct chunk (cached pages) with nothing to send
                    // before it: send it now.
                    if c.closing || c.writing() || !c.queued() {
                        break;
                    }
                    if round == DIRECT_ROUNDS {
                        c.wait_room(&mut self.io);
                        break;
                    }
                    c.flush_queued(&mut self.sh.ctx(), 0);
                }
            }
        }
        if c.closing {
            if c.pending == 0 {
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
        let armed = c.pending & bit(RECV) != 0;
        if want && !armed {
            // The receive ends by itself after what the Conn may keep (it is
            // armed again then): a flood of pipelined requests stays in the
            // socket, not in our memory. Without the limit (older kernels),
            // the cancel below comes a burst of buffers late.
            let limit = self
                .recv_limit
                .then_some(room.min(u32::MAX as usize) as u32);
            self.io
                .push_plain(recv_multi(c.fd, super::BGID, limit).user_data(c.ud(RECV)));
            c.pending |= bit(RECV);
        } else if !want && armed {
            // Backpressure (or the Conn is done reading): stop receiving.
            c.cancel(&mut self.io, bit(RECV), now);
        }
    }

    /// Nothing is in flight on this connection any more: close it.
    pub(super) fn finish_close(&mut self, slot: usize) {
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

    /// Repeat cancellations that have not taken effect after a while (an op
    /// still waiting behind a link is not found by AsyncCancel).
    pub(super) fn recancel(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let stuck = c.pending & c.cancelled;
        if stuck != 0 && now >= c.cancel_at + super::RECANCEL {
            c.cancelled &= !stuck;
            c.cancel(&mut self.io, stuck, now);
        }
    }
}
