//! A pipe for splicing a file's pages to a socket (file -> pipe -> socket),
//! with both ends owned: closed when the `Pipe` is dropped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Pipe size asked for with F_SETPIPE_SZ (falls back to smaller sizes).
const PIPE_SIZES: [libc::c_int; 3] = [1 << 20, 256 << 10, 64 << 10];

/// A pipe (read and write ends) made as large as the kernel lets us.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Capacity in bytes (F_GETPIPE_SZ).
    pub size: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two fds into the live 2-element array.
        crate::syscall!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: pipe2 returned two new fds owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for sz in PIPE_SIZES {
            // SAFETY: fcntl on our own pipe fd with an integer argument.
            if crate::syscall!(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, sz) })
                .is_ok()
            {
                break;
            }
        }
        // SAFETY: fcntl on our own pipe fd, no pointer arguments.
        let size = crate::syscall!(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) })?;
        Ok(Pipe {
            r,
            w,
            size: size as usize,
        })
    }

    pub fn rfd(&self) -> RawFd {
        self.r.as_raw_fd()
    }

    pub fn wfd(&self) -> RawFd {
        self.w.as_raw_fd()
    }
}
