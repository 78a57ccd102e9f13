//! I/O engines. Each engine is one module with one entry point,
//! `run(spec: WorkerSpec) -> io::Result<()>`, driving `http::Conn` for every
//! connection of one worker thread. They share the clock, the access-log
//! buffering, the timer tick and the control flags defined here.

pub mod epoll;
pub mod policy;
pub mod uring;

pub use policy::{ACCEPT_PAUSE, AcceptFailed, AcceptGate, EngineConn, STRANDED_MAX, WhenFull};

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::config::EngineChoice;
use crate::http::{BufferPool, Ctx, Limits, Notes, Now, Respond};
use crate::log::AccessLog;
use crate::metrics::WorkerCounters;

/// The engine a worker actually runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Epoll,
    IoUring,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Epoll => "epoll",
            Engine::IoUring => "io_uring",
        }
    }
}

/// Resolve the configured choice to an engine. `Ok((engine, note))`: `note`
/// says why auto fell back. `Err`: an explicit io_uring is unavailable.
pub fn select(choice: EngineChoice) -> Result<(Engine, Option<ProbeError>), EngineError> {
    match choice {
        EngineChoice::Epoll => Ok((Engine::Epoll, None)),
        EngineChoice::IoUring => match uring::probe() {
            Ok(()) => Ok((Engine::IoUring, None)),
            Err(why) => Err(EngineError::IoUringUnavailable(why)),
        },
        EngineChoice::Auto => match uring::probe() {
            Ok(()) => Ok((Engine::IoUring, None)),
            Err(why) => Ok((Engine::Epoll, Some(why))),
        },
    }
}

/// The configured engine cannot run here (a config error: exit 2 at start).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine io_uring unavailable: {0}")]
    IoUringUnavailable(#[source] ProbeError),
}

/// Why the io_uring engine cannot run on this machine: what `uring::probe`
/// found missing. OS errors are shown without their "(os error N)" tail,
/// with a hint where the usual cause is known.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TANDEM_IO_URING_PROBE_FAIL is set (tests use it).
    #[error("forced by TANDEM_IO_URING_PROBE_FAIL: {0}")]
    Forced(String),
    #[error("io_uring_setup: {}{}", crate::sys::bare(.0), ProbeError::setup_hint(.0))]
    Setup(#[source] io::Error),
    #[error("kernel lacks {feature} (needs Linux {since}+)")]
    MissingFeature {
        feature: &'static str,
        since: &'static str,
    },
    #[error("io_uring_register(PROBE): {}", crate::sys::bare(.0))]
    RegisterProbe(#[source] io::Error),
    #[error("kernel io_uring lacks opcode(s) {}", .0.join(", "))]
    MissingOpcodes(Vec<&'static str>),
    #[error("buffer ring memory: {}", crate::sys::bare(.0))]
    BufRingMemory(#[source] io::Error),
    #[error("io_uring_register(PBUF_RING): {} (needs Linux 5.19+)", crate::sys::bare(.0))]
    RegisterBufRing(#[source] io::Error),
    /// The test socket pair, or the byte written to it.
    #[error("{call}: {}", crate::sys::bare(source))]
    TestSocket {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("submission queue full")]
    SubmissionQueueFull,
    #[error("io_uring_enter: {}", crate::sys::bare(.0))]
    Enter(#[source] io::Error),
    #[error("multishot receive not supported (needs Linux 6.0+)")]
    MultishotUnsupported,
    #[error("multishot receive test failed (result {result}, flags {flags:#x})")]
    MultishotFailed { result: i32, flags: u32 },
    #[error("multishot receive test: no completion within 1s")]
    NoCompletion,
}

impl ProbeError {
    fn setup_hint(e: &io::Error) -> &'static str {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => " (kernel.io_uring_disabled or seccomp)",
            Some(libc::ENOSYS) => " (kernel built without io_uring, or seccomp)",
            Some(libc::ENOMEM) => " (RLIMIT_MEMLOCK too low?)",
            _ => "",
        }
    }
}

/// A listening socket shared by all workers (and kept across reloads).
#[derive(Debug)]
pub struct Listener {
    pub fd: OwnedFd,
    pub addr: SocketAddr,
    /// A `tls_listen` socket: its connections speak TLS.
    pub tls: bool,
}

impl Listener {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What a worker is told to do, by the daemon.
pub const RUN: u8 = 0;
/// Reload: stop accepting, finish responses in flight; idle keep-alive
/// connections get `DRAIN_GRACE` to send one more request, answered with
/// `Connection: close`; exit once every connection is gone.
pub const RETIRE: u8 = 1;
/// Stop: the same as RETIRE for the worker (the daemon also shuts the
/// listeners it bound); both are bounded by shutdown_timeout.
pub const DRAIN: u8 = 2;
/// Close everything now and exit.
pub const ABORT: u8 = 3;

/// How long a retiring or stopping worker keeps an idle keep-alive
/// connection open for one more request (at most shutdown_timeout). A
/// client that sends its next request in that time gets an answer with
/// `Connection: close` instead of racing a close; only connections silent
/// for the whole grace are closed.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Control flags plus an eventfd that wakes the worker's loop.
#[derive(Debug)]
pub struct Control {
    state: AtomicU8,
    wake: OwnedFd,
    /// Set by the worker: its listeners are armed (true) or fully disarmed
    /// (false, after DRAIN). The daemon waits on it so that a reload hands
    /// the listeners over without a moment where old workers still accept.
    accepting: std::sync::atomic::AtomicBool,
}

impl Control {
    pub fn new() -> io::Result<Arc<Control>> {
        // SAFETY: eventfd takes no pointers and returns a new fd or -1.
        let fd =
            crate::syscall!(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(Arc::new(Control {
            state: AtomicU8::new(RUN),
            // SAFETY: fd is new and owned by nobody else.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            accepting: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Worker side: say whether this worker can accept connections now.
    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Release);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Raise the state (never lowers it) and wake the loop.
    pub fn set(&self, s: u8) {
        self.state.fetch_max(s, Ordering::AcqRel);
        self.wake();
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let r = crate::syscall!(unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        });
        // EAGAIN: the counter is at its maximum, so the loop is woken anyway.
        if let Err(e) = r
            && e.raw_os_error() != Some(libc::EAGAIN)
        {
            crate::error!("waking a worker: {e}");
        }
    }

    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Clear the eventfd counter after a wake-up.
    pub fn drain_wake(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; the fd is non-blocking.
        let r = crate::syscall!(unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        });
        // EAGAIN: already cleared (several wake-ups, one read).
        if let Err(e) = r
            && e.raw_os_error() != Some(libc::EAGAIN)
        {
            crate::error!("clearing a worker's wake-up: {e}");
        }
    }
}

/// What answers a worker's requests: the file responder on the `listen`
/// sockets, the metrics responder on `metrics_listen`. `Conn` already calls
/// it through `&dyn Respond` (`Ctx::responder`), so this costs the hot path
/// nothing, and an engine never names a concrete responder.
pub type SharedRespond = Arc<dyn Respond + Send + Sync>;

/// Everything a worker needs to run.
#[derive(Clone)]
pub struct WorkerSpec {
    pub id: usize,
    pub listeners: Vec<Arc<Listener>>,
    pub responder: SharedRespond,
    pub limits: Limits,
    /// None: requests are not logged (the metrics listener's).
    pub access: Option<Arc<AccessLog>>,
    pub control: Arc<Control>,
    pub max_connections: usize,
    /// At max_connections: wait for room, or make it (see `WhenFull`).
    pub when_full: WhenFull,
    pub shutdown_timeout: Duration,
    /// This worker's `/metrics` counters (a replacement gets a new block).
    pub counters: Arc<WorkerCounters>,
    /// The TLS settings (certificates) for connections from `tls`
    /// listeners: those of the generation that started the worker, so a
    /// reload's new certificates serve its new workers' handshakes.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What answers on plaintext listeners instead of `responder`
    /// (`redirect_to_https`), if anything.
    pub redirect: Option<SharedRespond>,
}

/// Run a worker on the given engine until it is told to stop.
pub fn run(engine: Engine, spec: WorkerSpec) -> io::Result<()> {
    match engine {
        Engine::Epoll => epoll::run(spec),
        // Making room is epoll's (the metrics worker's): refused, not ignored.
        Engine::IoUring if spec.when_full == WhenFull::Evict => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the io_uring engine does not make room at a full table (WhenFull::Evict)",
        )),
        Engine::IoUring => uring::run(spec),
    }
}

/// The time, read once per loop turn; strings re-rendered once a second.
pub struct Clock {
    now: Now,
    wall_sec: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let wall = SystemTime::now();
        Clock {
            now: Now::new(Instant::now(), wall),
            wall_sec: secs(wall),
        }
    }

    pub fn update(&mut self) -> Instant {
        self.now.instant = Instant::now();
        let wall = SystemTime::now();
        let s = secs(wall);
        if s != self.wall_sec {
            self.wall_sec = s;
            self.now = Now::new(self.now.instant, wall);
        }
        self.now.instant
    }

    pub fn now(&self) -> &Now {
        &self.now
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether requests are written to an access log.
fn logs(access: &Option<Arc<AccessLog>>) -> bool {
    access.as_ref().is_some_and(|a| !a.is_off())
}

/// The access-log buffer is written out once it holds this much.
const LOG_FLUSH_AT: usize = 32 * 1024;
/// Its capacity: room for the flush point plus a line or two.
const LOG_BUF_CAP: usize = LOG_FLUSH_AT + 4096;

/// One worker's own state, the part both engines have in common: responder,
/// limits, clock, the access-log and error-log buffers, the timer tick and
/// the drain deadline. Nothing in it is shared between workers.
pub struct WorkerState {
    pub responder: SharedRespond,
    /// The responder's state for this worker (its cache): `Respond::local`.
    local: Box<dyn std::any::Any>,
    pub limits: Limits,
    pub clock: Clock,
    access: Option<Arc<AccessLog>>,
    logbuf: Vec<u8>,
    /// Error-log lines from `Conn` and the responder, written out after each call.
    notes: Notes,
    last_flush: Instant,
    /// Coarse timer: connections' deadlines are checked at most once a tick.
    tick: Duration,
    next_tick: Instant,
    /// Handed to `Conn::begin_shutdown` through the context.
    drain_grace: Duration,
    /// Set once the worker starts draining: when it gives up on what is left.
    drain_deadline: Option<Instant>,
    shutdown_timeout: Duration,
    worker_id: usize,
    counters: Arc<WorkerCounters>,
    /// Spare response buffers for this worker's connections.
    pool: BufferPool,
    /// `WorkerSpec::tls`.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `WorkerSpec::redirect`.
    redirect: Option<SharedRespond>,
}

/// What the daemon's control flags ask of a worker loop this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Run,
    /// Stop accepting and call `Conn::begin_shutdown` on every connection.
    BeginDrain,
    /// Leave the loop (ABORT, or the drain is over).
    Exit,
}

impl WorkerState {
    /// Once per loop turn: read the control state. `drained` says the worker
    /// has nothing left (no connections, no accept in flight).
    pub fn step(&mut self, control: &Control, drained: bool) -> Step {
        let state = control.state();
        if state == ABORT {
            return Step::Exit;
        }
        let now = self.clock.now().instant;
        match self.drain_deadline {
            None if state >= RETIRE => {
                self.drain_grace = DRAIN_GRACE.min(self.shutdown_timeout);
                self.drain_deadline = Some(crate::http::later(now, self.shutdown_timeout));
                Step::BeginDrain
            }
            None => Step::Run,
            Some(_) if drained => Step::Exit,
            Some(d) if now >= d => {
                crate::info!(
                    "worker {}: shutdown_timeout passed, closing what is left",
                    self.worker_id
                );
                Step::Exit
            }
            Some(_) => Step::Run,
        }
    }

    pub fn new(spec: &WorkerSpec) -> WorkerState {
        let l = &spec.limits;
        let shortest = [
            l.keepalive_timeout,
            l.header_timeout,
            l.send_timeout,
            l.linger_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let clock = Clock::new();
        let now = clock.now().instant;
        WorkerState {
            responder: spec.responder.clone(),
            local: spec.responder.local(&spec.counters),
            limits: spec.limits.clone(),
            clock,
            access: spec.access.clone(),
            logbuf: Vec::with_capacity(if logs(&spec.access) { LOG_BUF_CAP } else { 0 }),
            notes: Notes::new(crate::log::level()),
            last_flush: now,
            tick,
            next_tick: now + tick,
            drain_grace: Duration::ZERO,
            drain_deadline: None,
            shutdown_timeout: spec.shutdown_timeout,
            worker_id: spec.id,
            counters: spec.counters.clone(),
            pool: BufferPool::default(),
            tls: spec.tls.clone(),
            redirect: spec.redirect.clone(),
        }
    }

    /// The context a `Conn` call needs. The access-log buffer is flushed
    /// here once it holds `LOG_FLUSH_AT` bytes, so it stays bounded however
    /// long the loop is kept busy; error-log lines the last call left are
    /// written out.
    pub fn ctx(&mut self) -> Ctx<'_> {
        if self.logbuf.len() >= LOG_FLUSH_AT {
            self.flush_log();
        }
        self.write_notes();
        Ctx {
            now: self.clock.now(),
            responder: &*self.responder,
            local: &mut *self.local,
            limits: &self.limits,
            log: if logs(&self.access) {
                Some(&mut self.logbuf)
            } else {
                None
            },
            notes: &mut self.notes,
            stats: &self.counters,
            pool: &mut self.pool,
            drain_grace: self.drain_grace,
        }
    }

    /// Once per loop turn: the connections this worker has open, for the
    /// `tandem_connections_open` gauge (one store to its own counters).
    pub fn publish_open(&self, open: usize) {
        self.counters.set_open(open);
    }

    fn write_notes(&mut self) {
        if !self.notes.is_empty() {
            for (level, line) in self.notes.take() {
                crate::log::write(level, format_args!("{line}"));
            }
        }
    }

    /// How long the loop may sleep before the next timer tick.
    pub fn wait_timeout(&self) -> Duration {
        self.next_tick
            .saturating_duration_since(self.clock.now().instant)
    }

    /// True once per tick: time to check connection deadlines and flush logs.
    pub fn tick_due(&mut self) -> bool {
        let now = self.clock.now().instant;
        if now < self.next_tick {
            return false;
        }
        self.next_tick = now + self.tick;
        self.write_notes();
        if now.duration_since(self.last_flush) >= Duration::from_millis(500) {
            self.flush_log();
        }
        true
    }

    pub fn flush_log(&mut self) {
        self.write_notes();
        self.last_flush = self.clock.now().instant;
        if !self.logbuf.is_empty() {
            if let Some(a) = &self.access {
                a.write(&self.logbuf);
            }
            self.logbuf.clear();
            if self.logbuf.capacity() > 2 * LOG_BUF_CAP {
                self.logbuf.shrink_to(LOG_BUF_CAP);
            }
        }
    }
}

impl Drop for WorkerState {
    fn drop(&mut self) {
        self.flush_log();
        self.counters.set_open(0);
    }
}

/// A slab of connections indexed by a small integer token.
pub struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
    pub fn insert(&mut self, v: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(v);
                i
            }
            None => {
                self.items.push(Some(v));
                self.items.len() - 1
            }
        }
    }
    pub fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.items.get_mut(i)?.take();
        if v.is_some() {
            self.len -= 1;
            self.free.push(i);
        }
        v
    }
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i)?.as_mut()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Tokens of all live entries (a snapshot, so entries may be removed while walking it).
    pub fn keys(&self) -> Vec<usize> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|_| i))
            .collect()
    }
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Convert a kernel sockaddr_storage to a SocketAddr.
pub fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which fits in it.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6, which fits in it.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

/// The peer address of a connected socket, even one the peer has already
/// reset: getpeername(2) says ENOTCONN once a TCP socket is closed, but the
/// SO_PEERNAME option still reads the address the socket was connected to.
/// (A multishot accept gives no addresses, so the io_uring engine asks here,
/// possibly after a client sent its request and reset at once.)
pub fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len are live and sized for any address family.
    let r = crate::syscall!(unsafe {
        libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len)
    });
    if r.is_ok() {
        return sockaddr_to_std(&ss);
    }
    // SO_PEERNAME wants a buffer no larger than the address itself, so ask
    // for the family first (getsockname works on a closed socket too).
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    crate::syscall!(unsafe {
        libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len)
    })
    .ok()?;
    let mut len = match ss.ss_family as i32 {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        _ => return None,
    } as libc::socklen_t;
    // SAFETY: as above; the kernel writes at most `len` bytes into ss.
    crate::syscall!(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERNAME,
            &mut ss as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })
    .ok()?;
    sockaddr_to_std(&ss)
}

/// TCP_NODELAY on an accepted socket: responses go out as soon as they are written.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &(1 as libc::c_int),
    )
}

/// setsockopt(2) with `value` as the option's bytes.
pub fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live T and its size; the kernel only
    // reads that many bytes (and checks any address inside them itself).
    crate::syscall!(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}
