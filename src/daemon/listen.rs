//! Listening sockets: bound from the config, or inherited from systemd
//! (LISTEN_FDS / LISTEN_PID socket activation).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use crate::engine::Listener;

const BACKLOG: i32 = 4096;

/// Bind a listening socket (SO_REUSEADDR, non-blocking, close-on-exec).
pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
    let l =
        TcpListener::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    l.set_nonblocking(true)?;
    let bound = l.local_addr()?;
    let fd = l.into_raw_fd();
    // Raise the accept backlog above std's default of 128.
    // SAFETY: listen on a socket we own.
    unsafe { libc::listen(fd, BACKLOG) };
    Ok(Listener {
        // SAFETY: into_raw_fd handed us sole ownership of fd.
        fd: unsafe { OwnedFd::from_raw_fd(fd) },
        addr: bound,
    })
}

/// Sockets passed by systemd, if LISTEN_PID names us. The variables are
/// removed so that nothing we start inherits them.
pub fn from_systemd() -> io::Result<Option<Vec<Listener>>> {
    let (Ok(pid), Ok(n)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    // SAFETY: single-threaded at this point (called before workers start).
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
        // SAFETY: systemd passed us fds 3..3+n; each is ours from now on.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let l = TcpListener::from(owned);
        l.set_nonblocking(true)?;
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let addr = l
            .local_addr()
            .map_err(|e| io::Error::new(e.kind(), format!("LISTEN_FDS fd {fd}: {e}")))?;
        out.push(Listener {
            fd: OwnedFd::from(l),
            addr,
        });
    }
    Ok(Some(out))
}
