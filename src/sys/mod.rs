//! System call results as `io::Result`.
//!
//! Most libc calls report failure as a return of -1 with the reason in
//! `errno`. `syscall!` turns a negative return into
//! `Err(io::Error::last_os_error())` and any other into `Ok(ret)`:
//!
//! ```ignore
//! // SAFETY: listen on a socket we own.
//! crate::syscall!(unsafe { libc::listen(fd, BACKLOG) })?;
//! ```
//!
//! The `unsafe` block stays at the call site, under its `// SAFETY:` comment:
//! the macro only looks at the value, so it never hides an unsafe call (nor
//! evaluates a caller's arguments inside an unsafe block of its own). It reads
//! `errno` right after the call, before anything else can change it.
//!
//! Not for calls that report errors another way: `signal` (`SIG_ERR`),
//! `mmap` (`MAP_FAILED`), the `pthread_*` family (the error number is the
//! return value), or `getpwnam` (NULL).

mod socket;

pub use socket::{bytes_acked, peer_addr, set_nodelay, setsockopt, sockaddr_to_std};

use std::io;

/// A signed integer returned by a system call: negative means failure.
pub trait SyscallRet: Copy {
    fn is_failure(self) -> bool;
}

macro_rules! impl_syscall_ret {
    ($($t:ty)*) => {$(
        impl SyscallRet for $t {
            #[inline]
            fn is_failure(self) -> bool {
                self < 0
            }
        }
    )*};
}
impl_syscall_ret!(i8 i16 i32 i64 isize);

/// `Err(last_os_error())` if `ret` is negative, else `Ok(ret)`. What
/// `syscall!` expands to.
#[inline]
pub fn check<T: SyscallRet>(ret: T) -> io::Result<T> {
    if ret.is_failure() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Waits up to `timeout_ms` (0: not at all) for `events` (POLLIN, ...) on
/// one descriptor; the events that came (`revents`), 0 if none did.
pub fn poll_one(
    fd: std::os::fd::RawFd,
    events: libc::c_short,
    timeout_ms: i32,
) -> io::Result<libc::c_short> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: poll reads and writes one live pollfd, the length it is given.
    check(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(p.revents)
}

/// `syscall!(unsafe { libc::f(args) })`: the call's return value as
/// `io::Result`, `Err(io::Error::last_os_error())` when it is negative. See
/// the module docs.
#[macro_export]
macro_rules! syscall {
    ($call:expr) => {
        $crate::sys::check($call)
    };
}

/// In a forked helper process (the pidfile keeper, the log opener): ignore
/// the signals meant for the server (they also reach its process group or
/// cgroup, and must not end the helper before the server), and close every
/// inherited descriptor but `keep`.
///
/// # Safety
///
/// Only in a child just forked, with one thread, that never returns to code
/// which could use the descriptors closed here.
pub unsafe fn become_helper(keep: std::os::fd::RawFd) {
    // SAFETY: SIG_IGN for valid signal numbers: no handler code, no memory.
    // signal can fail only for an invalid number (EINVAL): its result says
    // nothing.
    unsafe {
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGUSR1,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    for fd in 3..65536 {
        if fd != keep {
            // Ignored on purpose: most of these numbers are not open (EBADF),
            // and a close that fails still frees the number.
            // SAFETY: the caller's contract: nothing in this process uses
            // these descriptors again.
            let _ = unsafe { libc::close(fd) };
        }
    }
}

/// Wait for the child `pid` to end (EINTR retried). Its status, or the
/// error waitpid gave (ECHILD: not our child, or reaped already).
pub fn reap(pid: libc::pid_t) -> std::io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid with a live status int; it touches nothing else.
        match crate::syscall!(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// An OS error without its " (os error N)" tail, for messages that say it
/// in words: "Operation not permitted", not "Operation not permitted (os
/// error 1)".
pub fn bare(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    #[test]
    fn success_is_the_return_value() {
        // SAFETY: getpid has no preconditions.
        let pid = crate::syscall!(unsafe { libc::getpid() }).unwrap();
        assert_eq!(pid as u32, std::process::id());
        // SAFETY: dup of our stderr returns a new fd we close at once.
        let fd = crate::syscall!(unsafe { libc::dup(2) }).unwrap();
        assert!(fd > 2);
        // SAFETY: fd is ours (just duplicated) and closed only here.
        assert_eq!(crate::syscall!(unsafe { libc::close(fd) }).unwrap(), 0);
    }

    #[test]
    fn failure_is_errno() {
        // SAFETY: closing a descriptor that cannot be open touches nothing.
        let e = crate::syscall!(unsafe { libc::close(-1) }).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        // The c_long of libc::syscall works the same way.
        // SAFETY: close(-1) through syscall(2): no memory is touched.
        let e = crate::syscall!(unsafe { libc::syscall(libc::SYS_close, -1) }).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        let path = c"/nonexistent/tandem-sys-test";
        // SAFETY: a NUL-terminated path that outlives the call.
        let e = crate::syscall!(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) }).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }
}
