//! The policy both engines share, written once: the accept gate
//! (max_connections, the pause after resource errors), accepting a socket,
//! setting up a new connection, the timeout scan, the drain fan-out, the
//! half-close, a file that comes up short, and when memory goes back to the
//! OS after a burst. The engines differ only in how they reach the kernel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::{Slab, WorkerState};
use crate::http::{Conn, Ctx, Transmit};
use crate::tls::{Session, TlsConn};

/// How long accepting pauses when the process is out of descriptors or
/// memory, at max_connections, or after an unexpected accept error (nginx
/// does the same instead of spinning on a listener it cannot serve).
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Most connections taken from a listener's backlog when the drain begins
/// (they were told they are connected, and often sent a request already).
pub const STRANDED_MAX: usize = 64;

/// What a worker does when its connection table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Accepting pauses (`ACCEPT_PAUSE` at a time); new clients wait in the
    /// listen backlog. The `listen` sockets' policy: a client in the
    /// table is never dropped for a newer one.
    Pause,
    /// Room is made: the connection with nothing to send that is closest to
    /// its deadline (`evictable`) is closed for the new one, after one last
    /// read of what it may have sent meanwhile. A bounded table that
    /// silent connections cannot hold: the `metrics_listen` socket's
    /// policy, so that a flood of them cannot fail a health probe (which
    /// sends its request as it connects). Implemented by the epoll engine,
    /// the one the metrics worker runs.
    Evict,
}

/// Whether `conn` may be closed to make room (`WhenFull::Evict`): it has
/// nothing to send, so no response is cut. That is a connection waiting for
/// its first request, or for the rest of a head, or idle between requests,
/// or lingering after its last response (which has left for the socket).
/// Of these, the one whose deadline comes first has waited longest for its
/// head (or is closing anyway): it goes first, as it would soonest anyway.
pub fn evictable(conn: &Session) -> Option<Instant> {
    if conn.is_closed() || !matches!(conn.poll_transmit(), Transmit::Idle) {
        return None;
    }
    conn.poll_timeout()
}

/// What an engine does after an accept error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailed {
    /// That connection is gone, or the call was interrupted: accept the next.
    Next,
    /// Nothing is waiting (EAGAIN), or accepting is paused now.
    Stop,
}

/// Whether a worker may accept: max_connections and the accept pause.
#[derive(Debug)]
pub struct AcceptGate {
    max: usize,
    pause_until: Option<Instant>,
}

impl AcceptGate {
    pub fn new(max_connections: usize) -> AcceptGate {
        AcceptGate {
            max: max_connections,
            pause_until: None,
        }
    }

    pub fn paused(&self) -> bool {
        self.pause_until.is_some()
    }

    /// May one more connection be taken, with `live` open (or waiting)?
    /// At the limit, accepting pauses: a slot freeing up is noticed at the
    /// end of the pause, not by polling the listener in between.
    pub fn admit(&mut self, live: usize, now: Instant) -> bool {
        if self.paused() {
            return false;
        }
        if live >= self.max {
            self.pause(now);
            return false;
        }
        true
    }

    /// Connections that may still be taken with `live` open.
    pub fn room(&self, live: usize) -> usize {
        self.max.saturating_sub(live)
    }

    pub fn pause(&mut self, now: Instant) {
        if self.pause_until.is_none() {
            self.pause_until = Some(crate::http::later(now, ACCEPT_PAUSE));
        }
    }

    /// True once, when a pause is over and accepting may resume.
    pub fn resume(&mut self, now: Instant) -> bool {
        match self.pause_until {
            Some(t) if now >= t => {
                self.pause_until = None;
                true
            }
            _ => false,
        }
    }

    /// An accept failed with `e` (at `now`). Running out of descriptors or
    /// memory, or anything unexpected, is logged and pauses accepting.
    pub fn failed(&mut self, e: &io::Error, now: Instant) -> AcceptFailed {
        match e.raw_os_error() {
            Some(libc::EAGAIN) => AcceptFailed::Stop,
            // Interrupted or cancelled (io_uring), or the client gave up
            // before we took it (ECONNABORTED, EPROTO).
            Some(libc::EINTR | libc::ECANCELED | libc::ECONNABORTED | libc::EPROTO) => {
                AcceptFailed::Next
            }
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                crate::warn!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                self.pause(now);
                AcceptFailed::Stop
            }
            _ => {
                crate::error!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                self.pause(now);
                AcceptFailed::Stop
            }
        }
    }
}

/// accept4(2) on a listener: a non-blocking, close-on-exec socket and the
/// peer's address (when the kernel gave one).
pub fn accept(listener: RawFd) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len are live and sized for any address family.
    let fd = crate::syscall!(unsafe {
        libc::accept4(
            listener,
            &mut ss as *mut _ as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a new fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, super::sockaddr_to_std(&ss)))
}

/// What the shared scans need of an engine's connection.
pub trait EngineConn {
    /// The `Session`, unless the engine is already closing this connection.
    fn conn(&mut self) -> Option<&mut Session>;
    fn fd(&self) -> RawFd;
}

impl WorkerState {
    /// A new connection on `fd`: TCP_NODELAY, its peer (asked of the socket
    /// when the accept gave none; `0.0.0.0:0` if even that fails), and its
    /// `Session` (over TLS when it came from a `tls_listen` socket: `tls`).
    /// One taken while draining gets its first request answered (with
    /// `Connection: close`), then closes.
    pub fn open_conn(
        &mut self,
        fd: RawFd,
        peer: Option<SocketAddr>,
        draining: bool,
        tls: bool,
    ) -> Session {
        if let Err(e) = super::set_nodelay(fd) {
            // Responses still go out, a little later.
            crate::debug!("TCP_NODELAY: {e}");
        }
        let peer = peer
            .or_else(|| super::peer_addr(fd))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.counters.accepted();
        let conn = Conn::new(peer, self.clock.now().instant, &self.limits);
        let mut conn = match (tls, &self.tls) {
            (false, _) => match &self.redirect {
                Some(r) => Session::Redirect(conn, r.clone()),
                None => Session::Plain(conn),
            },
            (true, Some(cfg)) => match TlsConn::new(cfg.clone(), conn) {
                Ok(t) => Session::Tls(Box::new(t)),
                Err(conn) => {
                    let mut s = Session::Plain(*conn);
                    s.handle_error(&mut self.ctx());
                    return s;
                }
            },
            (true, None) => {
                // The daemon gives every worker with a TLS listener its config.
                crate::error!("TLS listener without certificates");
                let mut s = Session::Plain(conn);
                s.handle_error(&mut self.ctx());
                return s;
            }
        };
        if draining {
            conn.begin_shutdown(&mut self.ctx());
        }
        conn
    }

    /// The timeout scan: `expire` every connection whose deadline has
    /// passed. Returns their tokens, for the engine to move them forward.
    pub fn expire_due<T: EngineConn>(&mut self, conns: &mut Slab<T>) -> Vec<usize> {
        let now = self.clock.now().instant;
        let mut due = Vec::new();
        for tok in conns.keys() {
            let Some(c) = conns.get_mut(tok) else {
                continue;
            };
            let fd = c.fd();
            let Some(conn) = c.conn() else {
                continue;
            };
            if conn.poll_timeout().is_some_and(|d| d <= now) {
                expire(conn, fd, &mut self.ctx());
                due.push(tok);
            }
        }
        due
    }

    /// The connection to close to make room (`WhenFull::Evict`): of those
    /// `evictable`, the one whose deadline comes first. None: every
    /// connection has a response under way.
    pub fn eviction_candidate<T: EngineConn>(&self, conns: &mut Slab<T>) -> Option<usize> {
        let mut best: Option<(Instant, usize)> = None;
        for tok in conns.keys() {
            let Some(conn) = conns.get_mut(tok).and_then(|c| c.conn()) else {
                continue;
            };
            if let Some(d) = evictable(conn)
                && best.is_none_or(|(b, _)| d < b)
            {
                best = Some((d, tok));
            }
        }
        best.map(|(_, tok)| tok)
    }

    /// Close `conn` to make room for a new connection. Nothing is sent: it
    /// has no response under way (`evictable`), and a client that has not
    /// finished its head gets the same quiet close as one that never sent.
    pub fn evict(&mut self, conn: &mut Session) {
        crate::debug!(
            "{}: connection table full, closed for a newer one",
            conn.peer()
        );
        conn.handle_error(&mut self.ctx());
    }

    /// The drain fan-out: `begin_shutdown` on every connection. Returns
    /// their tokens, for the engine to move them forward.
    pub fn shutdown_all<T: EngineConn>(&mut self, conns: &mut Slab<T>) -> Vec<usize> {
        let mut all = Vec::with_capacity(conns.len());
        for tok in conns.keys() {
            if let Some(conn) = conns.get_mut(tok).and_then(|c| c.conn()) {
                conn.begin_shutdown(&mut self.ctx());
                all.push(tok);
            }
        }
        all
    }
}

/// A connection's deadline has passed: the one timeout policy of both
/// engines. An idle connection is only idle once the last response has left
/// the socket: a slow reader still receiving it cannot have sent its next
/// request yet (see `Conn::handle_unsent`).
fn expire(conn: &mut Session, fd: RawFd, ctx: &mut Ctx<'_>) {
    if conn.is_idle() {
        conn.handle_unsent(ctx, unsent_bytes(fd));
    } else {
        conn.handle_timeout(ctx);
    }
}

/// Bytes in a socket's send queue (not yet acknowledged by the peer): on
/// loopback, what the peer has not found room for yet. 0 if unknown.
fn unsent_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one c_int into a live c_int.
    match crate::syscall!(unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) }) {
        Ok(_) => n.max(0) as usize,
        Err(_) => 0,
    }
}

/// `Transmit::Shutdown`: shut the write side, then tell the `Conn`.
pub fn half_close(fd: RawFd, conn: &mut Session) {
    // SAFETY: shutdown on our own open socket; no pointers.
    if let Err(e) = crate::syscall!(unsafe { libc::shutdown(fd, libc::SHUT_WR) }) {
        // ENOTCONN: the peer is already gone; the linger ends at its EOF
        // or the timeout either way.
        crate::debug!("{}: shutdown: {e}", conn.peer());
    }
    conn.handle_shutdown();
}

/// A file body came up short: the file shrank after its length went out,
/// so the promised length cannot be met. The connection ends.
pub fn short_file(conn: &mut Session, ctx: &mut Ctx<'_>) {
    crate::warn!("{}: file shorter than announced", conn.peer());
    conn.handle_error(ctx);
}

/// A worker that has this many fewer connections than at its peak since it
/// last gave memory back gives it back at its next quiet tick.
const GIVE_BACK_CONNS: usize = 256;

/// When a worker hands the allocator's free memory back to the OS: after a
/// burst of connections has gone, or when the engine's pools let idle items
/// go. glibc keeps freed chunks mapped and returns only the top of a heap by
/// itself, so a burst's worth of connection state would stay resident in
/// its arenas; `malloc_trim` also releases the free pages in their middle.
#[derive(Debug, Default)]
pub struct GiveBack {
    /// Most connections open since memory was last given back.
    peak: usize,
}

impl GiveBack {
    /// A connection was opened; `open` are open now.
    pub fn opened(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// A quiet timer tick (the engine's pools, if it has any, were not
    /// used during it); `freed`: they let idle items go.
    pub fn quiet_tick(&mut self, open: usize, freed: bool) {
        if freed || self.peak >= open + GIVE_BACK_CONNS {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim takes no pointers; it only walks the
            // allocator's own free lists under their locks.
            unsafe {
                libc::malloc_trim(0);
            }
            self.peak = open;
        }
    }
}
