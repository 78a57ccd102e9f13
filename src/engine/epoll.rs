//! The edge-triggered epoll engine: readiness events, accept4 and recv until
//! EAGAIN, send/sendfile until EAGAIN, partial writes resumed on EPOLLOUT.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::policy::{Admit, GiveBack};
use super::{
    AcceptFailed, AcceptGate, COPY_SEND_MAX, EngineConn, STRANDED_MAX, Slab, Step, WhenFull,
    WorkerSpec, WorkerState,
};
use crate::http::{Segment, Transmit};
use crate::tls::Session;

const WAKE: u64 = u64::MAX;
const LISTENER_TAG: u64 = 1 << 62;
const SCRATCH: usize = 64 * 1024;
/// Largest single sendfile call (keeps one connection from hogging the loop).
const SENDFILE_CHUNK: usize = 1 << 20;
/// Bytes (received plus sent) one connection may move in one loop turn.
/// A connection with work left when it is spent goes to the back of the
/// ready queue, so a client that pipelines without end and reads as fast as
/// we write cannot hold the worker: everyone else runs in between.
/// (Each recv/send counts at least `OP_COST`, so at most 16 calls a turn.)
/// A turn of the loop is about this much per busy connection: at 2 MiB,
/// 400 clients that pipelined requests for a 60 KiB file and never read
/// (their responses filling 1.4 GiB of send buffers, near tcp_mem's
/// pressure line) kept a new client's answer waiting 3.9 s; at 256 KiB
/// (with `PLAIN_ACCEPTS_PER_TURN`), 0.1-0.2 s, nginx's 0.2 s. A 1 MiB
/// response takes four turns, each one more epoll_wait for the whole loop.
const TURN_BUDGET: usize = 256 << 10;

const OP_COST: usize = 16 * 1024;

/// New connections a listener's readiness takes per loop turn: one, as
/// nginx without `multi_accept`. The listener is level-triggered: the next
/// is reported again at once, and is taken after the connections already
/// open had their turn. Unbounded, a flood of new TLS connections (each
/// served at once: its first handshake step runs in the accept loop) held
/// the loop for seconds while an established client's request waited;
/// at 16 its requests waited up to 300 ms, at 4 up to 120 ms, at 1 under
/// 15 ms, the flood's rate alike (tests/tls_ops.rs, handshake_flood...).
/// io_uring's accepts complete among its other completions.
const ACCEPTS_PER_TURN: usize = 1;
/// The same for a plain-HTTP listener, whose new connection's first step
/// is a read and an answer within `TURN_BUDGET`, not a handshake. At one a
/// turn, a new client queued behind 400 others waited for 400 turns, each
/// as long as the work of the connections already open (3.9 s, above):
/// io_uring takes them all at once (32 ms), nginx 200 ms.
const PLAIN_ACCEPTS_PER_TURN: usize = 64;

struct EConn {
    fd: OwnedFd,
    conn: Session,
    /// The socket's receive side is known to be drained: recv saw EAGAIN,
    /// or took less than it asked for (see `hup`).
    rd_drained: bool,
    /// Epoll reported the peer's FIN (or an error): from then on only
    /// EAGAIN or EOF says drained, since no new edge reports what remains.
    hup: bool,
    /// The socket's send buffer is full (send saw EAGAIN): wait for EPOLLOUT.
    wr_blocked: bool,
    /// Has a turn coming without an event: just accepted (`fresh`), or it
    /// spent its turn's budget with work left (the ready queue).
    queued: bool,
}

// Every idle connection is one slab slot: its `Session` and 8 bytes.
const _: () = assert!(size_of::<EConn>() <= 80);

impl EngineConn for EConn {
    fn conn(&mut self) -> Option<&mut Session> {
        Some(&mut self.conn)
    }
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; returns a new fd or -1.
        let fd = crate::syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: fd is new and owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event for the duration of the call.
        crate::syscall!(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // Round up so we do not spin on a sub-millisecond remainder.
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        // SAFETY: the kernel writes at most events.len() entries into the slice.
        let n = crate::syscall!(unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        });
        match n {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Run one worker's epoll loop until it is told to stop and has drained.
pub fn run(spec: WorkerSpec) -> io::Result<()> {
    let ep = Epoll::new()?;
    ep.ctl(
        libc::EPOLL_CTL_ADD,
        spec.control.wake_fd(),
        libc::EPOLLIN as u32 | libc::EPOLLET as u32,
        WAKE,
    )?;
    let gate = AcceptGate::new(spec.max_connections);
    let mut w = Worker {
        sh: WorkerState::new(&spec),
        conns: Slab::new(),
        scratch: vec![0u8; SCRATCH],
        ep,
        spec,
        accepting: true,
        armed: false,
        gate,
        ready: VecDeque::new(),
        fresh: Vec::new(),
        give_back: GiveBack::default(),
    };
    w.arm_listeners(true)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // Connections with work left from the last turn: do not sleep.
        let timeout = if w.ready.is_empty() && w.fresh.is_empty() {
            w.sh.wait_timeout()
        } else {
            Duration::ZERO
        };
        let n = w.ep.wait(&mut events, timeout)?;
        w.sh.clock.update();
        for ev in &events[..n] {
            let token = ev.u64;
            let flags = ev.events;
            if token == WAKE {
                w.spec.control.drain_wake();
            } else if token & LISTENER_TAG != 0 {
                w.accept((token & !LISTENER_TAG) as usize);
            } else {
                w.conn_event(token as usize, flags);
            }
        }
        w.run_ready();
        w.relieve();
        if w.sh.tick_due() {
            w.on_tick();
        }
        w.sh.publish_open(w.conns.len());
        match w.sh.step(&w.spec.control, w.conns.is_empty()) {
            Step::Exit => break,
            Step::BeginDrain => {
                w.begin_drain();
                if w.conns.is_empty() {
                    break;
                }
            }
            Step::Run => {}
        }
    }
    w.close_all();
    Ok(())
}

struct Worker {
    sh: WorkerState,
    conns: Slab<EConn>,
    scratch: Vec<u8>,
    ep: Epoll,
    spec: WorkerSpec,
    accepting: bool,
    /// The listeners are in the epoll set.
    armed: bool,
    gate: AcceptGate,
    /// Connections that spent their budget with work left, in turn order.
    ready: VecDeque<usize>,
    /// Connections accepted this turn, in order, not yet read: their first
    /// turn comes after the turn's events and before `ready`'s.
    fresh: Vec<usize>,
    give_back: GiveBack,
}

impl Worker {
    /// Give each connection queued last turn one more budgeted turn (those
    /// that still have work queue themselves again, behind this turn's events).
    fn run_ready(&mut self) {
        // New connections first: a request that came with its connection
        // waits for the turn's events, not for a round of bulk transfers
        // (each of those may move `TURN_BUDGET`; 400 of them kept a new
        // client 0.2-0.9 s).
        let mut fresh = std::mem::take(&mut self.fresh);
        for tok in fresh.drain(..) {
            self.take_turn(tok);
        }
        self.fresh = fresh;
        for _ in 0..self.ready.len() {
            let Some(tok) = self.ready.pop_front() else {
                break;
            };
            self.take_turn(tok);
        }
    }

    /// The turn `tok` was promised (in `fresh` or `ready`), if it is
    /// still open.
    fn take_turn(&mut self, tok: usize) {
        if let Some(c) = self.conns.get_mut(tok) {
            c.queued = false;
            self.drive(tok);
        }
    }

    fn accept(&mut self, li: usize) {
        if !self.accepting || self.gate.paused() {
            return;
        }
        let max = if self.spec.listeners[li].tls {
            ACCEPTS_PER_TURN
        } else {
            PLAIN_ACCEPTS_PER_TURN
        };
        self.accept_some(li, max);
    }

    /// Accept up to `max` connections from listener `li` (fewer at EAGAIN,
    /// an error or max_connections) and start serving them.
    fn accept_some(&mut self, li: usize, max: usize) {
        let lfd = self.spec.listeners[li].raw();
        let evict = self.spec.when_full == WhenFull::Evict;
        // Making room, a turn takes at most a table's worth: the loop comes
        // back to its events however fast connections arrive (the listener
        // is level-triggered: the rest are reported again).
        let max = if evict {
            max.min(self.spec.max_connections)
        } else {
            max
        };
        for _ in 0..max {
            // Read per connection: a client may connect, be served and
            // connect again within one loop of accepts, and which one has
            // been idle longest (`idlest`) is told by these times; with
            // `WhenFull::Evict`, "closest to its deadline" is also "came
            // first" among those of one turn.
            let now = self.sh.clock.update();
            if evict && self.conns.len() >= self.spec.max_connections {
                // Room only for a connection that is there: a batch ends at
                // EAGAIN, and an eviction before it would close a client for
                // nobody (often this turn's newest, its request still on
                // the way: header_timeout is the shortest deadline).
                if !pending(lfd) {
                    break;
                }
                self.evict_for_new();
            }
            // At max_connections: the idle connection that makes room,
            // closed once a new one is really there.
            let victim = match self.gate.admit(self.sh.load(self.conns.len())) {
                Admit::Yes => None,
                Admit::No => break,
                Admit::Full => match self.sh.idlest(&mut self.conns) {
                    Some(tok) if !evict => Some(tok),
                    _ => {
                        self.gate.pause(now);
                        break;
                    }
                },
            };
            let (fd, peer) = match super::policy::accept(lfd) {
                Ok(x) => x,
                Err(e) => match self.gate.failed(&e, now) {
                    AcceptFailed::Next => continue,
                    AcceptFailed::Stop => break,
                },
            };
            if let Some(tok) = victim
                && self.sh.make_room(&mut self.conns, tok)
            {
                self.close_now(tok);
            }
            let tls = self.spec.listeners[li].tls;
            let conn = self
                .sh
                .open_conn(fd.as_raw_fd(), peer, !self.accepting, tls);
            let raw = fd.as_raw_fd();
            let tok = self.conns.insert(EConn {
                fd,
                conn,
                rd_drained: false,
                hup: false,
                wr_blocked: false,
                // Its first turn is in `fresh` (below).
                queued: true,
            });
            self.give_back.opened(self.conns.len());
            let evs = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if let Err(e) = self.ep.ctl(libc::EPOLL_CTL_ADD, raw, evs, tok as u64) {
                crate::error!("epoll_ctl: {e}");
                self.conns.remove(tok);
                continue;
            }
            // Data often arrives with the connection: it is tried this
            // loop turn, after the events of the connections already open
            // (a batch of new ones, each read and answered, does not go
            // ahead of them): `run_ready`.
            self.fresh.push(tok);
        }
        // Paused accepting leaves the (level-triggered) listeners out of the
        // epoll set, so a full backlog does not wake the loop over and over.
        if self.gate.paused()
            && let Err(e) = self.arm_listeners(false)
        {
            crate::error!("epoll_ctl: {e}");
        }
    }

    /// `WhenFull::Evict` at max_connections: close the policy's
    /// `eviction_candidate`. Its socket is read once more first: a request
    /// that came since its last event is answered (the answer is in the
    /// socket ahead of the close), and a candidate that now has a response
    /// under way is kept. A few tries; if none frees a place, accepting
    /// pauses as at any full table.
    fn evict_for_new(&mut self) {
        for _ in 0..4 {
            let Some(tok) = self.sh.eviction_candidate(&mut self.conns) else {
                return;
            };
            if let Some(c) = self.conns.get_mut(tok) {
                c.rd_drained = false;
            }
            self.drive(tok);
            let Some(c) = self.conns.get_mut(tok) else {
                return; // it closed (the client had gone)
            };
            if super::policy::evictable(&c.conn).is_some() {
                self.sh.evict(&mut c.conn);
                // Dropping it closes the fd (and takes it out of epoll); a
                // stale turn of it in the ready queue finds the slot empty
                // or a new connection, which it merely drives.
                self.conns.remove(tok);
                return;
            }
        }
    }

    /// Put the listeners in the epoll set, or take them out.
    fn arm_listeners(&mut self, on: bool) -> io::Result<()> {
        if on == self.armed {
            return Ok(());
        }
        let events = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
        for (i, l) in self.spec.listeners.iter().enumerate() {
            if on {
                self.ep.ctl(
                    libc::EPOLL_CTL_ADD,
                    l.raw(),
                    events,
                    LISTENER_TAG | i as u64,
                )?;
            } else if let Err(e) = self.ep.ctl(libc::EPOLL_CTL_DEL, l.raw(), 0, 0) {
                // Not in the set is what we want; anything else would
                // leave a listener waking a worker that ignores it.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(e);
                }
            }
        }
        self.armed = on;
        if on {
            self.spec.control.set_accepting(true);
        }
        Ok(())
    }

    fn conn_event(&mut self, tok: usize, flags: u32) {
        let Some(c) = self.conns.get_mut(tok) else {
            return;
        };
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
        {
            c.rd_drained = false;
        }
        if flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            c.hup = true;
        }
        if flags & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            c.wr_blocked = false;
        }
        self.drive(tok);
    }

    /// Move a connection forward as far as the socket allows.
    fn drive(&mut self, tok: usize) {
        let Some(c) = self.conns.get_mut(tok) else {
            return;
        };
        if c.queued {
            // It has a turn coming in the ready queue.
            return;
        }
        let sh = &mut self.sh;
        let fd = c.fd.as_raw_fd();
        let mut spent = 0usize;
        loop {
            // Read, then write, each until the socket or the budget says stop.
            let mut progressed = read_some(c, sh, &mut self.scratch, fd, &mut spent);
            progressed |= write_some(c, sh, &mut self.scratch, fd, &mut spent);
            if c.conn.is_closed() || !progressed {
                break;
            }
            let can_read = !c.rd_drained && c.conn.wants_input(&sh.limits);
            let can_write = !c.wr_blocked && !matches!(c.conn.poll_transmit(), Transmit::Idle);
            if !can_read && !can_write {
                break;
            }
            if spent >= TURN_BUDGET {
                // Its turn is over; edge-triggered epoll will not say it is
                // ready again, so the ready queue gives it the next one.
                c.queued = true;
                self.ready.push_back(tok);
                break;
            }
        }
        super::policy::check_opens(&mut self.gate, c.conn.peer(), sh.clock.now().instant());
        if c.conn.is_closed() {
            self.conns.remove(tok);
            // Dropping the EConn closes the fd, which also removes it from epoll.
        }
    }

    /// A connection the shared policy closed (its `Conn` is closed): drop it
    /// now, its turn in the ready queue or not.
    fn close_now(&mut self, tok: usize) {
        if let Some(c) = self.conns.get_mut(tok) {
            c.queued = false;
        }
        self.drive(tok);
    }

    /// End of a turn: if descriptors ran out (an accept or an open), close
    /// the longest-idle keep-alive connections; accepting is paused.
    fn relieve(&mut self) {
        if !self.gate.short_of_fds() {
            return;
        }
        for tok in self.sh.relieve(&mut self.gate, &mut self.conns) {
            self.close_now(tok);
        }
        if self.gate.paused()
            && let Err(e) = self.arm_listeners(false)
        {
            crate::error!("epoll_ctl: {e}");
        }
    }

    fn on_tick(&mut self) {
        let now = self.sh.clock.now().instant();
        super::policy::flush_throttled(now);
        if self.gate.resume(now) && self.accepting {
            if let Err(e) = self.arm_listeners(true) {
                crate::error!("epoll_ctl: {e}");
            }
            for i in 0..self.spec.listeners.len() {
                self.accept(i);
            }
        }
        for tok in self.sh.expire_due(&mut self.conns) {
            self.drive(tok);
        }
        // Its one pool is the response buffers' (a response is written as
        // it is made, so it rarely holds more than a few); the allocator's
        // free memory also goes back after many connections left.
        let freed = self.sh.trim_buffers() == Some(true);
        self.give_back.quiet_tick(self.conns.len(), freed);
    }

    fn begin_drain(&mut self) {
        self.accepting = false;
        if let Err(e) = self.arm_listeners(false) {
            crate::error!("epoll_ctl: {e}");
        }
        // Connections already in the accept queue have been told they are
        // connected (and have often sent a request): take them now, before
        // the daemon shuts the listeners, which would reset them. The
        // exclusive wake-up for some of them may have come to us.
        for li in 0..self.spec.listeners.len() {
            self.accept_some(li, STRANDED_MAX);
        }
        self.spec.control.set_accepting(false);
        for tok in self.sh.shutdown_all(&mut self.conns) {
            self.drive(tok);
        }
    }

    fn close_all(&mut self) {
        for tok in self.conns.keys() {
            if let Some(mut c) = self.conns.remove(tok) {
                c.conn.handle_error(&mut self.sh.ctx());
            }
        }
        self.sh.flush_log();
    }
}

/// Whether listener `lfd` has a connection waiting to be accepted.
fn pending(lfd: RawFd) -> bool {
    matches!(crate::sys::poll_one(lfd, libc::POLLIN, 0), Ok(r) if r & libc::POLLIN != 0)
}

/// The reads of one pass of `drive`. True if it got anywhere.
fn read_some(
    c: &mut EConn,
    sh: &mut WorkerState,
    scratch: &mut [u8],
    fd: RawFd,
    spent: &mut usize,
) -> bool {
    let mut progressed = false;
    // Read until the socket is drained, or until the Conn has enough
    // buffered. A read shorter than asked for emptied the receive queue:
    // bytes that arrive later raise a new edge, so no recv is spent on the
    // EAGAIN (one syscall per request saved). Not after the peer's FIN:
    // the EOF behind the bytes raises no new edge, so it is read now.
    while !c.rd_drained && *spent < TURN_BUDGET {
        // At most what the Conn may keep: a flood of pipelined
        // requests stays in the socket, not in our memory.
        let want = scratch.len().min(c.conn.input_room(&sh.limits));
        if want == 0 {
            break;
        }
        // SAFETY: recv writes at most want <= scratch.len() bytes into scratch.
        let r = crate::syscall!(unsafe {
            libc::recv(fd, scratch.as_mut_ptr() as *mut libc::c_void, want, 0)
        });
        match r {
            Ok(0) => {
                c.rd_drained = true;
                c.conn.handle_eof(&mut sh.ctx());
                progressed = true;
                break;
            }
            Ok(n) => {
                let n = n as usize;
                if n < want && !c.hup {
                    c.rd_drained = true;
                }
                c.conn.handle_input(&mut sh.ctx(), &scratch[..n]);
                progressed = true;
                *spent += n.max(OP_COST);
                // Send what is ready before reading more (pipelining).
                if !c.wr_blocked && !matches!(c.conn.poll_transmit(), Transmit::Idle) {
                    break;
                }
            }
            Err(e) => {
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => c.rd_drained = true,
                    Some(libc::EINTR) => continue,
                    _ => {
                        c.rd_drained = true;
                        c.conn.handle_error(&mut sh.ctx());
                    }
                }
                break;
            }
        }
    }
    progressed
}

/// The writes of one pass of `drive`. True if it got anywhere.
fn write_some(
    c: &mut EConn,
    sh: &mut WorkerState,
    scratch: &mut [u8],
    fd: RawFd,
    spent: &mut usize,
) -> bool {
    let mut progressed = false;
    // Write until EAGAIN or nothing to send, or until the budget is
    // spent by writes the socket took whole. After a short write the
    // socket is all but full: one more call gets its EAGAIN now,
    // instead of a wasted turn in the ready queue first.
    while !c.wr_blocked {
        let mut took_all = true;
        match c.conn.poll_transmit() {
            Transmit::Idle => break,
            Transmit::Close => break,
            Transmit::Shutdown => {
                super::policy::half_close(fd, &mut c.conn);
                progressed = true;
            }
            Transmit::Send(segs) => {
                let (r, want) = send_segments(fd, segs, scratch);
                let n = match r {
                    Ok(0) if matches!(segs[0], Segment::File(_)) => {
                        super::policy::short_file(&mut c.conn, &mut sh.ctx());
                        break;
                    }
                    Ok(n) => n as usize,
                    Err(e) => match e.raw_os_error() {
                        Some(libc::EINTR) => continue,
                        Some(libc::EAGAIN) => {
                            c.wr_blocked = true;
                            break;
                        }
                        _ => {
                            c.conn.handle_error(&mut sh.ctx());
                            break;
                        }
                    },
                };
                c.conn.handle_sent(&mut sh.ctx(), n);
                progressed = true;
                *spent += n.max(OP_COST);
                took_all = n == want;
            }
        }
        if *spent >= TURN_BUDGET && took_all {
            break;
        }
    }
    progressed
}

/// Most byte segments gathered into one sendmsg.
const IOV_MAX: usize = 8;
const _: () = assert!(COPY_SEND_MAX <= SCRATCH);

/// One send of what `segs` starts with: the leading byte segments in one
/// send (copied into `scratch` when small) or sendmsg, with MSG_MORE if more
/// follows; or a sendfile chunk of a file segment. Returns the syscall's
/// result and the bytes it was asked for.
fn send_segments(fd: RawFd, segs: &[Segment], scratch: &mut [u8]) -> (io::Result<isize>, usize) {
    if let Segment::File(f) = &segs[0] {
        let mut off = f.offset as libc::off_t;
        let count = (f.len as usize).min(SENDFILE_CHUNK);
        // SAFETY: sendfile reads from our open file (kept open by the Arc
        // we borrow) and writes to our socket; `off` is a live off_t the
        // kernel updates.
        let n = crate::syscall!(unsafe { libc::sendfile(fd, f.file.as_raw_fd(), &mut off, count) });
        return (n, count);
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; IOV_MAX];
    let mut k = 0;
    let mut want = 0;
    for s in segs.iter().take(IOV_MAX) {
        let Segment::Bytes(b) = s else { break };
        iov[k] = libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
        want += b.len();
        k += 1;
    }
    let flags = libc::MSG_NOSIGNAL | if k < segs.len() { libc::MSG_MORE } else { 0 };
    if k > 1 && want <= COPY_SEND_MAX {
        // A small response (head + cached body): one copy into the scratch
        // buffer and a plain send cost less than sendmsg's iovec import and
        // a skb built from several fragments. The scratch holds nothing
        // between calls: received bytes are consumed before anything is sent.
        let mut at = 0;
        for s in &segs[..k] {
            if let Segment::Bytes(b) = s {
                scratch[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
        }
        // SAFETY: send reads `want` bytes of our scratch buffer, filled above.
        let n = crate::syscall!(unsafe {
            libc::send(fd, scratch.as_ptr() as *const libc::c_void, want, flags)
        });
        return (n, want);
    }
    // SAFETY: msghdr is a plain C struct; all-zero (no name, no control) is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = k;
    // SAFETY: the iovecs point into byte segments borrowed from `segs` for
    // the duration of the call; the kernel only reads them.
    let n = crate::syscall!(unsafe { libc::sendmsg(fd, &msg, flags) });
    (n, want)
}
