//! The edge-triggered epoll engine: readiness events, accept4 and recv until
//! EAGAIN, send/sendfile until EAGAIN, partial writes resumed on EPOLLOUT.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::{Shared, Slab, Step, WorkerSpec};
use crate::http::{Conn, Transmit};

const WAKE: u64 = u64::MAX;
const LISTENER_TAG: u64 = 1 << 62;
const SCRATCH: usize = 64 * 1024;
/// Largest single sendfile call (keeps one connection from hogging the loop).
const SENDFILE_CHUNK: usize = 1 << 20;
/// Bytes (received plus sent) one connection may move in one loop turn.
/// A connection with work left when it is spent goes to the back of the
/// ready queue, so a client that pipelines without end and reads as fast as
/// we write cannot hold the worker: everyone else runs in between.
/// (Each recv/send counts at least `OP_COST`, so at most 128 calls a turn.)
const TURN_BUDGET: usize = 2 << 20;
const OP_COST: usize = 16 * 1024;
/// Most connections taken from a listener's backlog when the drain begins.
const STRANDED_MAX: usize = 64;

struct EConn {
    fd: OwnedFd,
    conn: Conn,
    /// The socket's receive side is known to be drained (recv saw EAGAIN).
    rd_drained: bool,
    /// The socket's send buffer is full (send saw EAGAIN): wait for EPOLLOUT.
    wr_blocked: bool,
    /// In the ready queue: it spent its turn's budget with work left.
    queued: bool,
}

struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; returns a new fd or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // Round up so we do not spin on a sub-millisecond remainder.
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        // SAFETY: the kernel writes at most events.len() entries into the slice.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
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
    let mut w = Worker {
        sh: Shared::new(&spec),
        conns: Slab::new(),
        scratch: vec![0u8; SCRATCH],
        ep,
        spec,
        accepting: true,
        accept_pause_until: None,
        ready: VecDeque::new(),
    };
    w.arm_listeners(true)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // Connections with work left from the last turn: do not sleep.
        let timeout = if w.ready.is_empty() {
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
        if w.sh.tick_due() {
            w.on_tick();
        }
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
    sh: Shared,
    conns: Slab<EConn>,
    scratch: Vec<u8>,
    ep: Epoll,
    spec: WorkerSpec,
    accepting: bool,
    /// Accepting paused (EMFILE, or at max_connections) until then.
    accept_pause_until: Option<Instant>,
    /// Connections that spent their budget with work left, in turn order.
    ready: VecDeque<usize>,
}

impl Worker {
    /// Give each connection queued last turn one more budgeted turn (those
    /// that still have work queue themselves again, behind this turn's events).
    fn run_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(tok) = self.ready.pop_front() else {
                break;
            };
            if let Some(c) = self.conns.get_mut(tok) {
                c.queued = false;
                self.drive(tok);
            }
        }
    }

    fn accept(&mut self, li: usize) {
        if !self.accepting || self.accept_pause_until.is_some() {
            return;
        }
        self.accept_some(li, usize::MAX);
    }

    /// Accept up to `max` connections from listener `li` (fewer at EAGAIN,
    /// an error or max_connections) and start serving them.
    fn accept_some(&mut self, li: usize, max: usize) {
        let lfd = self.spec.listeners[li].raw();
        for _ in 0..max {
            if self.conns.len() >= self.spec.max_connections {
                self.pause_accept(Duration::from_millis(100));
                return;
            }
            // SAFETY: sockaddr_storage is a plain C struct; all-zero is a valid value.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: ss/len are live and sized for any address family.
            let fd = unsafe {
                libc::accept4(
                    lfd,
                    &mut ss as *mut _ as *mut libc::sockaddr,
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) | Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
                    _ if super::is_resource_error(&e) => {
                        crate::warn!("accept: {e}; pausing accepts for 100ms");
                        self.pause_accept(Duration::from_millis(100));
                        return;
                    }
                    _ => {
                        crate::error!("accept: {e}");
                        return;
                    }
                }
            }
            // SAFETY: accept4 returned a new fd owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let peer = super::sockaddr_to_std(&ss)
                .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            super::set_nodelay(fd.as_raw_fd());
            let mut conn = Conn::new(peer, self.sh.clock.now().instant, &self.sh.limits);
            if !self.accepting {
                // Taken from the backlog while draining: its first request
                // is answered (with `Connection: close`), then it closes.
                conn.begin_shutdown(&mut self.sh.ctx());
            }
            let raw = fd.as_raw_fd();
            let tok = self.conns.insert(EConn {
                fd,
                conn,
                rd_drained: false,
                wr_blocked: false,
                queued: false,
            });
            let evs = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if let Err(e) = self.ep.ctl(libc::EPOLL_CTL_ADD, raw, evs, tok as u64) {
                crate::error!("epoll_ctl: {e}");
                self.conns.remove(tok);
                continue;
            }
            // Data often arrives with the connection: try it now.
            self.drive(tok);
        }
    }

    /// Paused accepting leaves the (level-triggered) listeners out of the
    /// epoll set, so a full backlog does not wake the loop over and over.
    fn pause_accept(&mut self, d: Duration) {
        if self.accept_pause_until.is_none() {
            let _ = self.arm_listeners(false);
        }
        self.accept_pause_until = Some(self.sh.clock.now().instant + d);
    }

    fn arm_listeners(&mut self, on: bool) -> io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
        for (i, l) in self.spec.listeners.iter().enumerate() {
            if on {
                self.ep.ctl(
                    libc::EPOLL_CTL_ADD,
                    l.raw(),
                    events,
                    LISTENER_TAG | i as u64,
                )?;
            } else {
                // ENOENT (already out) is fine.
                let _ = self.ep.ctl(libc::EPOLL_CTL_DEL, l.raw(), 0, 0);
            }
        }
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
            let mut progressed = false;
            // Read until EAGAIN, or until the Conn has enough buffered.
            while !c.rd_drained && c.conn.wants_input(&sh.limits) && spent < TURN_BUDGET {
                // SAFETY: recv writes at most scratch.len() bytes into scratch.
                let n = unsafe {
                    libc::recv(
                        fd,
                        self.scratch.as_mut_ptr() as *mut libc::c_void,
                        self.scratch.len(),
                        0,
                    )
                };
                if n > 0 {
                    c.conn
                        .handle_input(&mut sh.ctx(), &self.scratch[..n as usize]);
                    progressed = true;
                    spent += (n as usize).max(OP_COST);
                    // Send what is ready before reading more (pipelining).
                    if !c.wr_blocked && !matches!(c.conn.poll_transmit(), Transmit::Idle) {
                        break;
                    }
                } else if n == 0 {
                    c.rd_drained = true;
                    c.conn.handle_eof(&mut sh.ctx());
                    progressed = true;
                    break;
                } else {
                    let e = io::Error::last_os_error();
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
                        // SAFETY: shutdown on our own socket fd.
                        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                        c.conn.handle_shutdown();
                        progressed = true;
                    }
                    Transmit::Bytes { data, more } => {
                        let want = data.len();
                        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
                        // SAFETY: data is a live slice for the duration of the call.
                        let n = unsafe {
                            libc::send(fd, data.as_ptr() as *const libc::c_void, data.len(), flags)
                        };
                        if !after_write(c, sh, n) {
                            break;
                        }
                        progressed = true;
                        spent += (n as usize).max(OP_COST);
                        took_all = n as usize == want;
                    }
                    Transmit::File { file, offset, len } => {
                        let mut off = offset as libc::off_t;
                        let count = (len as usize).min(SENDFILE_CHUNK);
                        // SAFETY: sendfile reads from our open file and writes to our
                        // socket; `off` is a live off_t the kernel updates.
                        let n = unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut off, count) };
                        if n == 0 {
                            // The file shrank under us: the promised length cannot be met.
                            crate::warn!("{}: file shorter than announced", c.conn.peer());
                            c.conn.handle_error(&mut sh.ctx());
                            break;
                        }
                        if !after_write(c, sh, n) {
                            break;
                        }
                        progressed = true;
                        spent += (n as usize).max(OP_COST);
                        took_all = n as usize == count;
                    }
                }
                if spent >= TURN_BUDGET && took_all {
                    break;
                }
            }
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
        if c.conn.is_closed() {
            self.conns.remove(tok);
            // Dropping the EConn closes the fd, which also removes it from epoll.
        }
    }

    fn on_tick(&mut self) {
        let now = self.sh.clock.now().instant;
        if let Some(t) = self.accept_pause_until
            && now >= t
        {
            self.accept_pause_until = None;
            if self.accepting {
                if let Err(e) = self.arm_listeners(true) {
                    crate::error!("epoll_ctl: {e}");
                }
                for i in 0..self.spec.listeners.len() {
                    self.accept(i);
                }
            }
        }
        for tok in self.conns.keys() {
            let Some(c) = self.conns.get_mut(tok) else {
                continue;
            };
            if c.conn.poll_timeout().is_some_and(|d| d <= now) {
                super::expire(&mut c.conn, c.fd.as_raw_fd(), &mut self.sh.ctx());
                self.drive(tok);
            }
        }
    }

    fn begin_drain(&mut self) {
        self.accepting = false;
        let _ = self.arm_listeners(false);
        // Connections already in the accept queue have been told they are
        // connected (and have often sent a request): take them now, before
        // the daemon shuts the listeners, which would reset them. The
        // exclusive wake-up for some of them may have come to us.
        for li in 0..self.spec.listeners.len() {
            self.accept_some(li, STRANDED_MAX);
        }
        self.spec.control.set_accepting(false);
        for tok in self.conns.keys() {
            if let Some(c) = self.conns.get_mut(tok) {
                c.conn.begin_shutdown(&mut self.sh.ctx());
            }
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

/// Account for a send/sendfile result. Returns false when writing must stop.
fn after_write(c: &mut EConn, sh: &mut Shared, n: isize) -> bool {
    if n >= 0 {
        c.conn.handle_sent(&mut sh.ctx(), n as usize);
        return true;
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => c.wr_blocked = true,
        Some(libc::EINTR) => return true,
        _ => c.conn.handle_error(&mut sh.ctx()),
    }
    false
}
