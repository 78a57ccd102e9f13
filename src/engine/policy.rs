//! The policy both engines share, written once: the accept gate
//! (max_connections, the pause after resource errors), accepting a socket,
//! setting up a new connection, making room in a full table (closing the
//! longest-idle keep-alive connection, or on the metrics listener the
//! connection closest to its deadline) and freeing descriptors, the timeout
//! scan, the drain fan-out, the half-close, a file that comes up short, when
//! memory goes back to the OS after a burst. (max_connections against the
//! descriptor limit is `nofile`'s.) The engines differ only in how they
//! reach the kernel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use super::nofile::{
    FDS_PER_CONNECTION, FDS_RESERVED, fd_budget, fitting_connections, grow_table, max_connections,
};
use super::{Slab, WorkerState};
use crate::h2::Http;
use crate::http::{Conn, Ctx, Transmit};
use crate::log::Level;
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

/// Whether one more connection may be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// At max_connections (or the lower cap while descriptors are short):
    /// take it only if `WorkerState::make_room` closes an idle keep-alive
    /// connection for it; else pause (`AcceptGate::pause`).
    Full,
    /// Accepting is paused.
    No,
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
    /// The connections the descriptors allow (at most `max`): cut to seven
    /// eighths of those open whenever descriptors run out, so the ones that
    /// free up are left for the files requests open (a multishot accept
    /// would otherwise take each the moment it is free); grown back by a
    /// sixteenth a tick while they do not.
    cap: usize,
    pause_until: Option<Instant>,
    /// An accept or an open ran out of descriptors this turn: idle
    /// keep-alive connections are closed at its end (`WorkerState::relieve`).
    short_of_fds: bool,
}

impl AcceptGate {
    pub fn new(max_connections: usize) -> AcceptGate {
        AcceptGate {
            max: max_connections,
            cap: max_connections,
            pause_until: None,
            short_of_fds: false,
        }
    }

    pub fn paused(&self) -> bool {
        self.pause_until.is_some()
    }

    /// An accept or an open ran out of descriptors this turn.
    pub fn short_of_fds(&self) -> bool {
        self.short_of_fds
    }

    /// May one more connection be taken, with `live` open (or waiting)?
    /// At the limit the engine makes room or pauses: when every connection
    /// is busy, a slot freeing up is noticed at the end of the pause, not by
    /// polling the listener in between.
    pub fn admit(&self, live: usize) -> Admit {
        if self.paused() {
            Admit::No
        } else if self.full(live) {
            Admit::Full
        } else {
            Admit::Yes
        }
    }

    /// If descriptors ran out this turn (with `live` connections open): the
    /// cap comes down to seven eighths of them.
    fn shrink(&mut self, live: usize) -> bool {
        if !std::mem::take(&mut self.short_of_fds) {
            return false;
        }
        self.cap = self.cap.min(live - live / 8).max(1);
        true
    }

    /// `live` connections fill the table (max_connections, or fewer while
    /// descriptors are short).
    pub fn full(&self, live: usize) -> bool {
        live >= self.cap
    }

    /// Connections that may still be taken with `live` open.
    pub fn room(&self, live: usize) -> usize {
        self.cap.saturating_sub(live)
    }

    pub fn pause(&mut self, now: Instant) {
        if self.pause_until.is_none() {
            self.pause_until = Some(crate::http::later(now, ACCEPT_PAUSE));
        }
    }

    /// Once a tick: true once, when a pause is over and accepting may
    /// resume. Outside a pause, the descriptor cap grows back.
    pub fn resume(&mut self, now: Instant) -> bool {
        if self.pause_until.is_none() && self.cap < self.max {
            self.cap = (self.cap + (self.cap / 16).max(1)).min(self.max);
        }
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
            Some(libc::EMFILE | libc::ENFILE) => {
                ACCEPT_SHORT.hit(now, || {
                    format!(
                        "accept: {}; pausing accepts for {ACCEPT_PAUSE:?}, \
                         closing idle keep-alive connections",
                        crate::sys::bare(e)
                    )
                });
                self.short_of_fds = true;
                self.pause(now);
                AcceptFailed::Stop
            }
            Some(libc::ENOBUFS | libc::ENOMEM) => {
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

/// At most one error-log line a second about one kind of trouble, shared by
/// all workers: the first occurrence is written at once, later ones are
/// counted, and the next line (another occurrence a second later, or the
/// timer tick's `flush`) says how many there were.
pub struct Throttle {
    level: Level,
    /// What the lines are about, for the tick's count-only line.
    kind: &'static str,
    state: Mutex<Counted>,
}

struct Counted {
    last_line: Option<Instant>,
    /// Occurrences not yet in a line.
    unsaid: u64,
}

/// Throttled lines are at least this far apart.
pub const THROTTLE: Duration = Duration::from_secs(1);

impl Throttle {
    pub const fn new(level: Level, kind: &'static str) -> Throttle {
        Throttle {
            level,
            kind,
            state: Mutex::new(Counted {
                last_line: None,
                unsaid: 0,
            }),
        }
    }

    /// `n` occurrences at `now`, the first described by `what`.
    pub fn hit(&self, now: Instant, what: impl FnOnce() -> String) {
        self.hit_n(now, 1, what);
    }

    pub fn hit_n(&self, now: Instant, n: u64, what: impl FnOnce() -> String) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.unsaid += n;
        if st
            .last_line
            .is_some_and(|t| now.saturating_duration_since(t) < THROTTLE)
        {
            return;
        }
        let count = std::mem::take(&mut st.unsaid);
        st.last_line = Some(now);
        drop(st);
        let what = what();
        if count > 1 {
            crate::log::write(
                self.level,
                format_args!("{what} ({count} times since the last such line)"),
            );
        } else {
            crate::log::write(self.level, format_args!("{what}"));
        }
    }

    /// Once a tick: the occurrences counted since the last line, once it is
    /// a second old.
    pub fn flush(&self, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.unsaid == 0
            || st
                .last_line
                .is_some_and(|t| now.saturating_duration_since(t) < THROTTLE)
        {
            return;
        }
        let count = std::mem::take(&mut st.unsaid);
        st.last_line = Some(now);
        drop(st);
        crate::log::write(
            self.level,
            format_args!("{}: {count} more since the last such line", self.kind),
        );
    }
}

/// Opens that failed for want of descriptors (answered 503).
static OPEN_SHORT: Throttle = Throttle::new(Level::Error, "out of file descriptors opening files");
/// Accepts that failed for want of descriptors.
static ACCEPT_SHORT: Throttle = Throttle::new(Level::Warn, "out of file descriptors accepting");
/// A full connection table made room by closing an idle connection.
static TABLE_FULL: Throttle = Throttle::new(Level::Info, "connection table full");

/// Once a tick, from every worker: the counts the throttled lines owe.
pub fn flush_throttled(now: Instant) {
    for t in [&OPEN_SHORT, &ACCEPT_SHORT, &TABLE_FULL] {
        t.flush(now);
    }
}

/// After the engine's call into a connection's `Conn` (for `peer`): the
/// opens that ran out of descriptors in it are logged (throttled, naming
/// the path and the client), accepting pauses (the descriptors that free
/// up go to requests, not to yet more connections: an io_uring multishot
/// accept would take each one the moment it is free) and idle connections
/// are closed at the end of the turn.
pub fn check_opens(gate: &mut AcceptGate, peer: SocketAddr, now: Instant) {
    let Some(s) = crate::files::os::take_shortage() else {
        return;
    };
    gate.short_of_fds = true;
    gate.pause(now);
    OPEN_SHORT.hit_n(now, s.count, || {
        format!(
            "open /{} for {peer}: {}; answered 503, pausing accepts, closing idle \
             keep-alive connections",
            s.path,
            crate::sys::bare(&s.error)
        )
    });
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
    Ok((fd, crate::sys::sockaddr_to_std(&ss)))
}

/// What the shared scans need of an engine's connection.
pub trait EngineConn {
    /// The `Session`, unless the engine is already closing this connection.
    fn conn(&mut self) -> Option<&mut Session>;
    fn fd(&self) -> RawFd;
    /// Bytes the `Session` was told are sent that the engine still holds,
    /// not in the socket yet: they count as the socket's unsent bytes.
    fn held(&self) -> usize {
        0
    }
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
        if let Err(e) = crate::sys::set_nodelay(fd) {
            // Responses still go out, a little later.
            crate::debug!("TCP_NODELAY: {e}");
        }
        let peer = peer
            .or_else(|| crate::sys::peer_addr(fd))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.counters.accepted();
        let now = self.clock.now().instant();
        let conn = Conn::new(peer, now, &self.limits);
        let mut conn = match (tls, &self.tls) {
            (false, _) => match &self.redirect {
                Some(r) => Session::Redirect(Box::new((conn, r.clone()))),
                None => Session::Plain(Http::plain(peer, now, &self.limits)),
            },
            (true, Some(cfg)) => Session::Tls(Box::new(TlsConn::new(
                cfg.clone(),
                conn,
                self.counters.clone(),
            ))),
            (true, None) => {
                // The daemon gives every worker with a TLS listener its config.
                crate::error!("TLS listener without certificates");
                let mut s = Session::Plain(Http::H1(conn));
                s.handle_error(&mut self.ctx());
                return s;
            }
        };
        if draining {
            conn.begin_shutdown(&mut self.ctx());
        }
        conn
    }

    /// The table is full (`Admit::Full`): the longest-idle keep-alive
    /// connection, to be closed by `make_room` for a new one (as nginx
    /// reuses its idle connections). None when every connection is busy:
    /// nobody is cut mid-request or mid-response.
    pub fn idlest<T: EngineConn>(&self, conns: &mut Slab<T>) -> Option<usize> {
        idle_victims(conns, |_| 1).first().copied()
    }

    /// Close `tok` (from `idlest`) to admit a new connection; the engine
    /// then moves it forward (to its close). False if it is gone.
    pub fn make_room<T: EngineConn>(&mut self, conns: &mut Slab<T>, tok: usize) -> bool {
        let Some(peer) = self.close_idle(conns, tok) else {
            return false;
        };
        let live = conns.len();
        TABLE_FULL.hit(self.clock.now().instant(), || {
            format!(
                "connection table full ({live} connections open): closed the longest-idle \
                 keep-alive connection ({peer}) to admit a new one"
            )
        });
        true
    }

    /// At the end of a turn in which an accept or an open ran out of
    /// descriptors: close the longest-idle keep-alive connections (an
    /// eighth of them, 1 to 32, as nginx drains its reusable connections)
    /// so the descriptors go to requests. Returns their tokens, for the
    /// engine to move them forward.
    pub fn relieve<T: EngineConn>(
        &mut self,
        gate: &mut AcceptGate,
        conns: &mut Slab<T>,
    ) -> Vec<usize> {
        if !gate.shrink(conns.len()) {
            return Vec::new();
        }
        // What the responder keeps open goes first (`files::fdcache`).
        self.responder.shed(&mut *self.local);
        idle_victims(conns, |idle| (idle / 8).clamp(1, 32))
            .into_iter()
            .filter(|&tok| self.close_idle(conns, tok).is_some())
            .collect()
    }

    /// Close idle connection `tok` now; its peer.
    fn close_idle<T: EngineConn>(&mut self, conns: &mut Slab<T>, tok: usize) -> Option<SocketAddr> {
        let conn = conns.get_mut(tok)?.conn()?;
        let peer = conn.peer();
        crate::debug!("{peer}: closing idle keep-alive connection to make room");
        conn.handle_error(&mut self.ctx());
        Some(peer)
    }

    /// The timeout scan: `expire` every connection whose deadline has
    /// passed. Returns their tokens, for the engine to move them forward.
    pub fn expire_due<T: EngineConn>(&mut self, conns: &mut Slab<T>) -> Vec<usize> {
        let now = self.clock.now().instant();
        let mut due = Vec::new();
        for tok in conns.tokens() {
            let Some(c) = conns.get_mut(tok) else {
                continue;
            };
            let (fd, held) = (c.fd(), c.held());
            let Some(conn) = c.conn() else {
                continue;
            };
            if conn.poll_timeout().is_some_and(|d| d <= now) {
                expire(conn, fd, held, &mut self.ctx());
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
        for tok in conns.tokens() {
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
fn expire(conn: &mut Session, fd: RawFd, held: usize, ctx: &mut Ctx<'_>) {
    if conn.is_idle() {
        conn.handle_unsent(ctx, unsent_bytes(fd) + held);
    } else {
        conn.handle_timeout(ctx);
    }
}

/// The idle keep-alive connections to close, longest idle first: `n(idle)`
/// of the `idle` ones between requests with nothing in flight
/// (`Conn::is_idle`), their last response wholly out of the socket (a slow
/// reader still receiving it is mid-response) and nothing of a next request
/// in it (one that came this turn, not read yet, is mid-request).
fn idle_victims<T: EngineConn>(conns: &mut Slab<T>, n: impl FnOnce(usize) -> usize) -> Vec<usize> {
    // (idle deadline, token): the earliest deadline has been idle longest.
    let mut idle: Vec<(Instant, usize)> = Vec::new();
    for tok in conns.tokens() {
        let Some(conn) = conns.get_mut(tok).and_then(|c| c.conn()) else {
            continue;
        };
        if conn.is_idle()
            && let Some(d) = conn.poll_timeout()
        {
            idle.push((d, tok));
        }
    }
    let n = n(idle.len());
    let mut out = Vec::with_capacity(n);
    if n == 0 || idle.is_empty() {
        return out;
    }
    // Only the first few need ordering (a few spare for slow readers).
    let k = (n + 8).min(idle.len());
    if k < idle.len() {
        idle.select_nth_unstable(k - 1);
        idle.truncate(k);
    }
    idle.sort_unstable();
    for (_, tok) in idle {
        if out.len() == n {
            break;
        }
        if conns.get_mut(tok).is_some_and(|c| {
            c.held() == 0 && unsent_bytes(c.fd()) == 0 && unread_bytes(c.fd()) == 0
        }) {
            out.push(tok);
        }
    }
    out
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

/// Bytes in a socket's receive queue, not read yet. 0 if unknown.
fn unread_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCINQ (= FIONREAD) writes one c_int into a live c_int.
    match crate::syscall!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }) {
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

/// How long a worker goes without any event before it looks at what a
/// burst left (pools, free heap, receive buffer pages) instead of waiting
/// for timer ticks: two such looks (the first sees the pools were used)
/// give it back about 0.3 s after the burst, not 1-2 s.
pub const GIVE_BACK_QUIET: Duration = Duration::from_millis(150);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The systemd unit's LimitNOFILE keeps the default max_connections on
    /// a 16-CPU host (issue 25: 65536 allowed 262,144 connections there).
    #[test]
    fn systemd_limit_fits_the_default() {
        let unit = include_str!("../../systemd/tandem.service");
        let limit: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .expect("LimitNOFILE= in systemd/tandem.service")
            .trim()
            .parse()
            .expect("a number");
        let default = crate::config::Config::default().max_connections;
        assert!(fitting_connections(limit, 16) >= default);
        assert!(fitting_connections(limit, 31) >= default);
        assert!(default as u64 * FDS_PER_CONNECTION * 16 + FDS_RESERVED <= limit);
    }

    #[test]
    fn descriptor_cap_shrinks_and_grows_back() {
        let t0 = Instant::now();
        let mut g = AcceptGate::new(1000);
        assert_eq!(g.admit(999), Admit::Yes);
        assert!(!g.shrink(240), "no shortage, no change");
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(g.failed(&e, t0), AcceptFailed::Stop);
        assert!(g.short_of_fds());
        assert!(g.shrink(240));
        assert_eq!(g.admit(200), Admit::No, "paused");
        assert!(g.resume(t0 + ACCEPT_PAUSE));
        assert_eq!(g.admit(209), Admit::Yes);
        assert_eq!(g.admit(210), Admit::Full, "7/8 of 240");
        assert_eq!(g.room(200), 10);
        // A tick without a shortage: a sixteenth more (210 + 13).
        assert!(!g.resume(t0 + ACCEPT_PAUSE * 2));
        assert_eq!(g.admit(222), Admit::Yes);
        assert_eq!(g.admit(223), Admit::Full);
        for i in 0..200 {
            g.resume(t0 + ACCEPT_PAUSE * (3 + i));
        }
        assert_eq!(g.admit(999), Admit::Yes, "back to max_connections");
        assert_eq!(g.admit(1000), Admit::Full);
    }

    #[test]
    fn fitting_connections_formula() {
        // (256 - 64) / (2 x 2)
        assert_eq!(fitting_connections(256, 2), 48);
        assert_eq!(fitting_connections(64, 1), 1);
        assert_eq!(fitting_connections(10, 4), 1);
        assert_eq!(fitting_connections(65536, 1), 32736);
    }

    #[test]
    fn throttle_writes_once_a_second_and_counts() {
        let t = Throttle::new(Level::Debug, "test");
        let t0 = Instant::now();
        let said = std::cell::RefCell::new(Vec::new());
        let say = |what: &str| said.borrow_mut().push(what.to_string());
        t.hit(t0, || {
            say("first");
            "first".into()
        });
        for i in 1..5 {
            t.hit(t0 + Duration::from_millis(100 * i), || {
                say("suppressed");
                String::new()
            });
        }
        assert_eq!(*said.borrow(), ["first"]);
        assert_eq!(t.state.lock().unwrap().unsaid, 4);
        t.flush(t0 + Duration::from_millis(900));
        assert_eq!(
            t.state.lock().unwrap().unsaid,
            4,
            "flushed within the second"
        );
        t.flush(t0 + Duration::from_secs(1));
        assert_eq!(t.state.lock().unwrap().unsaid, 0);
        t.hit(t0 + Duration::from_millis(1500), || {
            say("too soon");
            String::new()
        });
        t.hit(t0 + Duration::from_secs(2), || {
            say("next");
            String::new()
        });
        assert_eq!(*said.borrow(), ["first", "next"]);
    }
}
