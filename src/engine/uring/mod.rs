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
//! * Accept (`accept.rs`): one multishot accept per (shared) listener.
//! * Receive: one multishot receive per connection into the worker's provided
//!   buffer ring; a buffer goes back to the ring as soon as `handle_input`
//!   returned. ENOBUFS or any final completion re-arms it if the `Conn` still
//!   wants input. Backpressure: when the `Conn` does not want input the
//!   receive is cancelled, and re-armed when it does.
//! * Write (`send.rs`): at most one write chain per connection, built from
//!   the owned segments `Conn::poll_transmit` offers; the chain's ops own
//!   what they read (segment clones, buffer, pipe) until the last of them is
//!   over (`out.rs`).
//!   Every completion goes to the `Conn` as it comes (bytes sent, input,
//!   EOF, errors): nothing is deferred (`TANDEM_URING_BODY=splice|read`
//!   picks how file bodies go, default splice).
//! * Timeouts: each tick scans `poll_timeout()`; a `Conn` that gives up on
//!   a write in flight says `Close`, which cancels the write.
//! * Close: the `Conn` says `Close` (or the socket failed): every op of the
//!   connection is cancelled, and once `pending == 0` the fd is closed with
//!   IORING_OP_CLOSE and the slot freed. Teardown cancels everything and
//!   drains all completions before the ring and the buffer memory go.

mod accept;
mod bufring;
mod conn;
mod out;
mod pipe;
mod pool;
mod ring;
mod send;
mod setup;

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

use super::policy::{GIVE_BACK_QUIET, GiveBack};
use super::{AcceptGate, EngineConn, Slab, Step, WorkerSpec, WorkerState};
use accept::{Acceptor, close_fd};
use bufring::BufRing;
use conn::UConn;
use pool::Pool;
use ring::{ACCEPT, CANCEL, CLOSE, Io, POLL_OUT, RECV, WAKE, errno_str, parse_ud, ud};
use send::BodyMode;

pub use setup::probe;

const SQ_ENTRIES: u32 = 512;
/// 2x the SQ (liburing's default). The kernel maps the whole ring at
/// setup, so its size is resident from the start: 8192 entries were 128
/// KiB of a fresh worker's RSS, 1024 are 16 KiB. Multishot receives and
/// accepts post many completions per SQE; one that finds the queue full
/// ends and is armed again, other completions wait in the kernel
/// (IORING_FEAT_NODROP, `reap`). 10,000 clients connecting and sending
/// a request at once overflowed nothing.
const CQ_ENTRIES: u32 = 1024;
/// Provided receive buffers per worker (power of two) and their size. The
/// kernel takes them in ring order; used incrementally (bufring.rs), the
/// pages they touch follow the bytes received, so under any traffic every
/// one of them is touched in the end: up to 128 KiB of RSS per worker
/// while receives come in (13 bytes per connection of 10,000; 128 x 4 KiB
/// was 512 KiB, 512 x 8 KiB 2-4 MiB), handed back at a tick without any
/// (`BufRing::release`). Incremental, 32 hold 128 KiB of input per loop
/// turn, some 2,800 small requests. A burst beyond it gets ENOBUFS, and
/// those receives are armed again a turn later.
const BUF_COUNT: u16 = 32;
/// Without incremental use: 128 receives a turn (512 KiB).
const BUF_COUNT_WHOLE: u16 = 128;
const BUF_SIZE: usize = 4096;
const BGID: u16 = 0;
/// IOU_PBUF_RING_INC (not exported by the io-uring crate): see bufring.rs.
const PBUF_RING_INC: u16 = 2;
/// Cancellations that did not take (e.g. an op still waiting in a link) are repeated.
const RECANCEL: Duration = Duration::from_secs(1);
/// How long teardown waits for the kernel to finish cancelled operations.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Run one worker's io_uring loop until it is told to stop and has drained.
pub fn run(spec: WorkerSpec) -> io::Result<()> {
    let mode = BodyMode::from_env();
    let (ring, deferred) = setup::build_ring(SQ_ENTRIES, CQ_ENTRIES)?;
    // Incremental where the kernel has it (6.12), whole buffers elsewhere.
    let mut incremental = true;
    let mut registered = None;
    for (flags, count) in [(PBUF_RING_INC, BUF_COUNT), (0, BUF_COUNT_WHOLE)] {
        let bufs = BufRing::new(count, BUF_SIZE)?;
        // SAFETY: the buffer ring memory is owned by the Worker below, which
        // unregisters it in `teardown` after every receive has completed (or
        // leaks it if some did not), and drops the ring before it. A ring
        // the kernel refused is not registered and may go.
        let r = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.ring_addr(),
                bufs.entries(),
                BGID,
                flags,
            )
        };
        match r {
            Ok(()) => {
                registered = Some(bufs);
                break;
            }
            Err(e) if flags != 0 && e.raw_os_error() == Some(libc::EINVAL) => incremental = false,
            Err(e) => return Err(e),
        }
    }
    let Some(bufs) = registered else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    crate::debug!(
        "worker {}: io_uring ring {}/{} entries, {} x {} byte receive buffers{}, body by {:?}",
        spec.id,
        SQ_ENTRIES,
        CQ_ENTRIES,
        bufs.entries(),
        bufs.buf_size(),
        if incremental { " (incremental)" } else { "" },
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
    let gate = AcceptGate::new(spec.max_connections);
    let mut io = Io::new(ring);
    io.fix_files(spec.max_connections);
    let mut w = Worker {
        io,
        bufs,
        deferred,
        conns: Slab::new(),
        give_back: GiveBack::default(),
        pool: Pool::default(),
        sh: WorkerState::new(&spec),
        spec,
        mode,
        listeners,
        accepting: true,
        gate,
        parked: VecDeque::new(),
        wake_armed: false,
        stopping: false,
        disarm_reported: false,
        next_gen: 0,
        give_back_at: None,
        cqes: Vec::with_capacity(CQ_ENTRIES as usize),
        overflow_logged: false,
        lost_seen: 0,
        stray_logged: false,
        recv_limit: true,
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

impl EngineConn for UConn {
    fn conn(&mut self) -> Option<&mut crate::tls::Session> {
        (!self.closing).then_some(&mut self.conn)
    }
    fn fd(&self) -> RawFd {
        self.fd
    }
    fn held(&self) -> usize {
        UConn::held(self)
    }
}

/// Field order matters: `io` (the ring) is dropped before `bufs`.
struct Worker {
    io: Io,
    bufs: BufRing,
    /// The ring runs with DEFER_TASKRUN (`setup::build_ring`): the buffers
    /// may be released between two enters.
    deferred: bool,
    conns: Slab<UConn>,
    give_back: GiveBack,
    pool: Pool,
    sh: WorkerState,
    spec: WorkerSpec,
    mode: BodyMode,
    listeners: Vec<Acceptor>,
    accepting: bool,
    gate: AcceptGate,
    /// Accepted beyond max_connections (a multishot accept overshoots a
    /// little): served when a slot frees up, like an accept backlog.
    /// Connections accepted beyond the limit, with their listener's index.
    parked: VecDeque<(RawFd, usize)>,
    wake_armed: bool,
    stopping: bool,
    /// `Control::set_accepting(false)` was said (after DRAIN).
    disarm_reported: bool,
    next_gen: u16,
    /// `GIVE_BACK_QUIET` after the last completion: look at what to give
    /// back then (`give_back`), if nothing happened meanwhile.
    give_back_at: Option<Instant>,
    cqes: Vec<(u64, i32, u32)>,
    overflow_logged: bool,
    lost_seen: u32,
    stray_logged: bool,
    /// The kernel takes a byte limit on a multishot receive (`recv_multi`);
    /// cleared at its first EINVAL.
    recv_limit: bool,
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
            let mut wait = self.sh.wait_timeout();
            if let Some(at) = self.give_back_at {
                wait = wait.min(at.saturating_duration_since(self.sh.clock.now().instant()));
            }
            let ts = types::Timespec::from(wait);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.io.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if benign_enter_error(&e) => {}
                Err(e) => return Err(e),
            }
            self.sh.clock.update();
            let now = self.sh.clock.now().instant();
            if self.reap() {
                self.give_back_at = Some(now + GIVE_BACK_QUIET);
            } else if self.give_back_at.is_some_and(|at| now >= at) {
                // Quiet since: what a burst left goes now, not 1-2 ticks
                // later; once more if this look found things still in use.
                self.give_back_at = (!self.give_back()).then_some(now + GIVE_BACK_QUIET);
            }
            // Descriptors ran out (an accept or an open): close the
            // longest-idle keep-alive connections; the accept pauses.
            if self.gate.short_of_fds() {
                for slot in self.sh.relieve(&mut self.gate, &mut self.conns) {
                    self.settle(slot);
                }
                self.sync_accept();
            }
            if self.sh.tick_due() {
                self.on_tick();
            }
            self.sh.publish_open(self.conns.len());
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
    /// Returns whether there was any.
    fn reap(&mut self) -> bool {
        let mut any = false;
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
                    if let Err(e) = self.io.ring.submit()
                        && !benign_enter_error(&e)
                    {
                        crate::error!("worker {}: io_uring_enter: {e}", self.spec.id);
                        break;
                    }
                    continue;
                }
                break;
            }
            any = true;
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
        any
    }

    fn complete(&mut self, u: u64, res: i32, flags: u32) {
        let (kind, idx, generation) = parse_ud(u);
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
            RECV..=POLL_OUT => {
                let peer = self.conns.get_mut(idx).map(|c| c.conn.peer());
                self.on_conn(kind, idx, generation, res, flags, last);
                if let Some(peer) = peer {
                    let now = self.sh.clock.now().instant();
                    super::policy::check_opens(&mut self.gate, peer, now);
                }
            }
            _ => self.stray(kind, res, flags),
        }
    }

    fn stray(&mut self, kind: u8, res: i32, flags: u32) {
        if let Some(b) = cqueue::buffer_select(flags) {
            self.bufs.skip(b, res.max(0) as usize);
            self.bufs.finish(b, cqueue::buffer_more(flags));
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

    fn on_tick(&mut self) {
        let now = self.sh.clock.now().instant();
        super::policy::flush_throttled(now);
        self.give_back();
        if self.gate.resume(now) {
            self.unpark();
            self.sync_accept();
        }
        for slot in self.conns.tokens() {
            self.recancel(slot, now);
            self.owned_progress(slot, now);
        }
        for slot in self.sh.expire_due(&mut self.conns) {
            self.settle(slot);
        }
    }

    /// What a burst left goes back once it is over: the pools' idle items
    /// and the allocator's free memory after a look during which nothing
    /// was taken from the pools, the receive buffers' pages after one
    /// without input. Called each tick and `GIVE_BACK_QUIET` after the last
    /// completion. Returns false if something was in use since the last
    /// call (worth another look).
    fn give_back(&mut self) -> bool {
        let pools = match (self.pool.trim(), self.sh.trim_buffers()) {
            (Some(a), Some(b)) => {
                self.give_back.quiet_tick(self.conns.len(), a || b);
                true
            }
            _ => false,
        };
        if self.bufs.quiet()
            && self.deferred
            && self.io.ring.completion().is_empty()
            && !self.io.ring.submission().cq_overflow()
        {
            // SAFETY: with DEFER_TASKRUN the kernel fills the buffers only
            // inside this thread's io_uring_enter, and we are between two;
            // the completion queue is empty and none waits in the kernel's
            // overflow list (`reap` stops after 8 rounds, and may leave
            // some there), so every completion that named a buffer was
            // handled (its bytes fed to its `Conn`).
            unsafe { self.bufs.release() };
        }
        pools && !(self.deferred && self.bufs.resident())
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
        for slot in self.sh.shutdown_all(&mut self.conns) {
            self.settle(slot);
        }
        // Connections accepted beyond the limit: answer their first request.
        while let Some((fd, li)) = self.parked.pop_front() {
            self.start_conn(fd, None, li);
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
        while let Some((fd, _)) = self.parked.pop_front() {
            // SAFETY: a parked fd is owned by `parked` alone, with no op on it.
            unsafe { close_fd(fd) };
        }
        let now = self.sh.clock.now().instant();
        for slot in self.conns.keys() {
            if let Some(c) = self.conns.get_mut(slot) {
                c.start_close(slot, &mut self.io, now);
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
            let now = self.sh.clock.now().instant();
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
                    // flight can see it reused. ENOTCONN: already ended.
                    let _ = crate::syscall!(unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) });
                }
            }
            std::mem::forget(std::mem::take(&mut self.conns));
        } else {
            // The ring goes right after; a failure only means it was gone.
            if let Err(e) = self.io.ring.submitter().unregister_buf_ring(BGID) {
                crate::debug!("worker {}: unregister buffer ring: {e}", self.spec.id);
            }
        }
        self.spec.control.set_accepting(false);
        self.sh.flush_log();
    }
}
