//! Listening sockets: bound from the config, or inherited from systemd
//! (LISTEN_FDS / LISTEN_PID socket activation).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::engine::Listener;
use crate::syscall;

const BACKLOG: i32 = 4096;

/// A configured address cannot be listened on. The message names the key
/// and the address and, for the usual causes, what to do about it:
/// `listen 127.0.0.1:8080: address already in use (another server is on it?
/// pick another with --listen 127.0.0.1:8081)`, where the port suggested
/// was free when the bind failed (or no port is suggested).
#[derive(Debug, thiserror::Error)]
#[error("{key} {addr}: {}", self.describe())]
pub struct BindError {
    /// `listen`, `tls_listen` or `metrics_listen`.
    pub key: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
    /// When the address is in use by one of this server's own sockets: which,
    /// and what to do (set by the daemon, which knows its sockets).
    pub ours: Option<String>,
    /// An address like `addr` on a port that could be bound when the bind
    /// failed, to suggest (for EADDRINUSE and EACCES).
    pub free: Option<SocketAddr>,
}

/// How many ports after the busy one (or from 8080, for a privileged one)
/// are tried for a free one to suggest.
const SUGGEST_TRIES: u16 = 16;

impl BindError {
    fn new(key: &'static str, addr: SocketAddr, source: io::Error) -> BindError {
        let first = match source.raw_os_error() {
            Some(libc::EADDRINUSE) => Some(addr.port().checked_add(1).unwrap_or(8080)),
            Some(libc::EACCES) if addr.port() < 1024 => Some(8080),
            _ => None,
        };
        BindError {
            key,
            addr,
            source,
            ours: None,
            free: first.and_then(|p| free_port_from(addr, p)),
        }
    }

    /// Say the address is held by this server's own socket, `ours`, when
    /// the bind failed because it is in use.
    pub fn held_by(mut self, ours: Option<String>) -> BindError {
        if self.source.raw_os_error() == Some(libc::EADDRINUSE) {
            self.ours = ours;
        }
        self
    }

    /// "pick another with --listen ADDR" (`what`: "another"), for the key
    /// this error is about; `None` without a free port to name.
    fn pick(&self, what: &str) -> Option<String> {
        let a = self.free?;
        Some(match self.key {
            "listen" => format!("pick {what} with --listen {a}"),
            key => format!("pick {what} in {key}, such as {a}"),
        })
    }

    fn describe(&self) -> String {
        let addr = self.addr;
        match self.source.raw_os_error() {
            Some(libc::EADDRINUSE) if let Some(ours) = &self.ours => {
                format!("address already in use by {ours}")
            }
            Some(libc::EADDRINUSE) => match self.pick("another") {
                Some(p) => format!("address already in use (another server is on it? {p})"),
                None => "address already in use (another server is on it?)".to_string(),
            },
            Some(libc::EACCES) if addr.port() < 1024 => format!(
                "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE{})",
                self.pick("a higher one")
                    .map(|p| format!("; or {p}"))
                    .unwrap_or_default()
            ),
            Some(libc::EADDRNOTAVAIL) => format!(
                "cannot assign requested address (no interface of this machine has {})",
                addr.ip()
            ),
            _ => crate::sys::bare(&self.source).to_lowercase(),
        }
    }
}

/// The first of `SUGGEST_TRIES` ports from `first` on `addr`'s IP that can
/// be bound now (the socket is closed again at once).
fn free_port_from(addr: SocketAddr, first: u16) -> Option<SocketAddr> {
    (0..SUGGEST_TRIES)
        .filter_map(|i| first.checked_add(i))
        .map(|p| SocketAddr::new(addr.ip(), p))
        .find(|a| open(*a, false).is_ok())
}

/// Bind a `listen` socket (SO_REUSEADDR, non-blocking, close-on-exec; an
/// IPv6 one IPv6 only, see `open`).
pub fn bind(addr: SocketAddr) -> Result<Listener, BindError> {
    bind_as("listen", addr)
}

/// Bind a `metrics_listen` socket, the same way.
pub fn bind_metrics(addr: SocketAddr) -> Result<Listener, BindError> {
    bind_as("metrics_listen", addr)
}

fn bind_as(key: &'static str, addr: SocketAddr) -> Result<Listener, BindError> {
    let err = |source| BindError::new(key, addr, source);
    let l = TcpListener::from(open(addr, false).map_err(err)?);
    let bound = l.local_addr().map_err(err)?;
    Ok(Listener {
        fd: OwnedFd::from(l),
        addr: bound,
        tls: false,
    })
}

/// `bind` for a `tls_listen` address: its connections speak TLS.
pub fn bind_tls(addr: SocketAddr) -> Result<Listener, BindError> {
    let mut l = bind_as("tls_listen", addr)?;
    l.tls = true;
    Ok(l)
}

/// Stop listening: the socket leaves LISTEN (new clients are refused at
/// once, and its address can be bound again) while it stays open for
/// whoever still holds it. Connections still in its accept queue are reset,
/// so take them first (the workers do as they stop accepting).
pub fn stop_listening(l: &Listener) {
    // SAFETY: shutdown on a listening socket we hold open for the whole call.
    if let Err(e) = syscall!(unsafe { libc::shutdown(l.raw(), libc::SHUT_RD) }) {
        // Not fatal: the socket closes when its last worker is gone.
        crate::warn!("{}: cannot stop listening: {e}", l.addr);
    }
}

/// Sockets passed by systemd, if LISTEN_PID names us. The variables are
/// removed so that nothing we start inherits them (and a second call finds
/// none).
///
/// # Safety
///
/// The process must have one thread (removing an environment variable
/// races with any other thread reading the environment), and nothing else
/// in it may own descriptors 3..3+LISTEN_FDS: they become the listeners'.
pub unsafe fn from_systemd() -> io::Result<Option<Vec<Listener>>> {
    let (Ok(pid), Ok(n)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    // SAFETY: the process has one thread (this function's contract), so
    // nothing reads the environment meanwhile.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let n: RawFd = n
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("LISTEN_FDS={n:?} is not a number")))?;
    let mut out = Vec::new();
    for fd in 3..3 + n {
        // SAFETY: systemd passed us fds 3..3+n, and nothing else owns them
        // (this function's contract); each is the listener's from now on.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let l = TcpListener::from(owned);
        let context = |e: io::Error| io::Error::new(e.kind(), format!("LISTEN_FDS fd {fd}: {e}"));
        l.set_nonblocking(true).map_err(context)?;
        // SAFETY: fcntl F_SETFD on a descriptor we own; no pointers.
        syscall!(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map_err(context)?;
        let addr = l.local_addr().map_err(context)?;
        out.push(Listener {
            fd: OwnedFd::from(l),
            addr,
            tls: false,
        });
    }
    Ok(Some(out))
}

/// Bind a socket with SO_REUSEPORT, so that every worker can own one for the
/// same address and the kernel spreads connections between them. Used only by
/// the `TANDEM_BENCH_REUSEPORT` measurement mode (see docs/architecture.md, "Workers").
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<Listener> {
    let fd = open(addr, true).map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    let l = TcpListener::from(fd);
    let bound = l.local_addr()?;
    Ok(Listener {
        fd: OwnedFd::from(l),
        addr: bound,
        tls: false,
    })
}

/// A non-blocking, close-on-exec socket bound to `addr` and listening, with
/// SO_REUSEADDR (and SO_REUSEPORT when asked). An IPv6 socket is IPv6 only
/// (IPV6_V6ONLY), whatever `net.ipv6.bindv6only` says, like nginx's
/// `ipv6only=on`: `[::]:80` takes the port for IPv6 alone, so `0.0.0.0:80`
/// beside it can be bound too, and each address listed means what it says.
/// The errors are the system's own (`BindError` reads their errno).
fn open(addr: SocketAddr, reuseport: bool) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket takes no pointers and returns a new fd or -1.
    let fd = syscall!(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd is new and owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    crate::sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
    if reuseport {
        crate::sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, &on)?;
    }
    if addr.is_ipv6() {
        crate::sys::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &on)?;
    }
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: ss holds a valid address of `len` bytes and outlives the call.
    syscall!(unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len as u32) })?;
    // SAFETY: listen on a socket we own, open for the whole call.
    syscall!(unsafe { libc::listen(fd, BACKLOG) })?;
    Ok(owned)
}
