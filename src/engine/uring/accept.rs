//! Accepting: one multishot accept per (shared) listener, accepted sockets
//! non-blocking. At max_connections a new connection is taken only to
//! replace an idle keep-alive one (`WorkerState::make_room`). Stopping
//! (drain, a table full of busy connections, EMFILE pause) cancels it
//! with AsyncCancel and waits for its final completion; listeners are never
//! closed here. On DRAIN, once every accept has ended, connections left in
//! the backlog whose (exclusive) wake-up our cancelled accept consumed are
//! taken and answered, then `Control::set_accepting(false)` is reported.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use io_uring::{opcode, types};

use super::Worker;
use super::conn::UConn;
use super::ring::{ACCEPT, CANCEL, errno_str, ud};
use crate::engine::STRANDED_MAX;
use crate::engine::policy::Admit;

/// With fewer free connection slots than this, accept with single accepts.
const SINGLE_ACCEPT_BELOW: usize = 64;

pub struct Acceptor {
    /// The accept is in flight (until its final completion).
    pub armed: bool,
    /// It is a multishot accept (else a single accept, used near the limit).
    pub multi: bool,
    pub cancelled: bool,
}

impl Worker {
    pub(super) fn on_accept(&mut self, li: usize, res: i32, last: bool) {
        if let Some(a) = self.listeners.get_mut(li)
            && last
        {
            a.armed = false;
            a.cancelled = false;
        }
        if res >= 0 {
            if self.stopping {
                // SAFETY: `res` was just accepted for us and no op names it.
                unsafe { close_fd(res) };
            } else if self.accepting && self.gate.full(self.sh.load(self.conns.len())) {
                // Served once a slot frees up: the idle connection closed
                // for it now, or (every one busy) any, after the pause.
                self.parked.push_back((res, li));
                let now = self.sh.clock.now().instant();
                match self.sh.idlest(&mut self.conns) {
                    Some(slot) if self.sh.make_room(&mut self.conns, slot) => self.settle(slot),
                    _ => self.gate.pause(now),
                }
            } else {
                self.start_conn(res, None, li);
            }
        } else {
            // Next or Stop alike: the multishot accept goes on, or ends with
            // a final completion and `sync_accept` re-arms it (unless paused).
            let now = self.sh.clock.now().instant();
            let _ = self.gate.failed(&errno_str(res), now);
        }
        if last && !self.accepting && !self.stopping {
            self.take_stranded(li);
        }
        self.sync_accept();
        self.report_disarmed();
    }

    /// After DRAIN: tell the daemon once every accept of ours is gone, so a
    /// reload hands the listeners over with no moment where we still accept.
    pub(super) fn report_disarmed(&mut self) {
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
    pub(super) fn take_stranded(&mut self, li: usize) {
        let lfd = self.spec.listeners[li].raw();
        for _ in 0..STRANDED_MAX {
            let Ok((fd, peer)) = crate::engine::policy::accept(lfd) else {
                break;
            };
            // The fd is closed by the ring (IORING_OP_CLOSE) once no op of
            // the connection is in flight.
            self.start_conn(fd.into_raw_fd(), peer, li);
        }
    }

    /// Arm or cancel the multishot accepts to match what we want now.
    pub(super) fn sync_accept(&mut self) {
        // The streams' descriptor slots count as connections (`load`).
        let live = self.sh.load(self.conns.len() + self.parked.len());
        let now = self.sh.clock.now().instant();
        let want = !self.stopping
            && self.accepting
            && match self.gate.admit(live) {
                Admit::Yes => true,
                Admit::No => false,
                // At the limit, a new connection is taken only when an idle
                // one can be closed for it (`on_accept`).
                Admit::Full if self.sh.idlest(&mut self.conns).is_some() => true,
                Admit::Full => {
                    self.gate.pause(now);
                    false
                }
            };
        // Near max_connections, accept one at a time: a multishot accept
        // keeps taking connections until its cancel lands, which would
        // overshoot the limit by a loop turn's worth of arrivals.
        let multi = self.gate.room(live) >= SINGLE_ACCEPT_BELOW;
        for (i, a) in self.listeners.iter_mut().enumerate() {
            if want && !a.armed {
                let lfd = self.spec.listeners[i].raw();
                // Non-blocking sockets: the direct sendfile and splice(pipe
                // -> socket) calls of `send.rs` run on this thread, and on a
                // full socket must return (short or EAGAIN) instead of
                // blocking the worker (SPLICE_F_NONBLOCK covers the pipe only).
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

    /// Serve a new connection from listener `li` (`peer`: its address, if
    /// the accept said).
    pub(super) fn start_conn(&mut self, fd: RawFd, peer: Option<SocketAddr>, li: usize) {
        let now = self.sh.clock.now().instant();
        let generation = self.next_gen;
        self.next_gen = generation.wrapping_add(1);
        let tls = self.spec.listeners[li].tls;
        let conn = self.sh.open_conn(fd, peer, !self.accepting, tls);
        let slot = self.conns.insert(UConn::new(fd, generation, conn, now));
        let fixed = self.io.fix(slot, fd);
        if let Some(c) = self.conns.get_mut(slot) {
            c.fixed = fixed;
        }
        self.give_back.opened(self.conns.len());
        // Arms the receive; data that came with the connection is read at once.
        self.settle(slot);
    }

    /// Serve parked connections while there is room.
    pub(super) fn unpark(&mut self) {
        while !self.stopping && !self.gate.full(self.sh.load(self.conns.len())) {
            let Some((fd, li)) = self.parked.pop_front() else {
                break;
            };
            self.start_conn(fd, None, li);
        }
    }
}

/// Close a descriptor by number (an accepted one not yet given to a `UConn`).
///
/// # Safety
///
/// The caller owns `fd` (nothing else closes or uses it afterwards), and no
/// io_uring operation on it is in flight.
pub unsafe fn close_fd(fd: RawFd) {
    // SAFETY: the fd is ours and idle (this function's contract).
    if let Err(e) = crate::syscall!(unsafe { libc::close(fd) }) {
        // The fd is released whatever close says (EINTR/EIO included).
        crate::debug!("close: {e}");
    }
}
