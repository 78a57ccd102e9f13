//! Per-worker pools of the kernel-visible memory a response body needs:
//! pipes for splice (file -> pipe -> socket) and buffers for read + send.
//! A connection takes one when a file body starts and gives it back when the
//! response is done; a pipe goes back only when it is empty.

use crate::http::Segment;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Read buffer size (read mode): one Read + one Send per chunk.
pub const READ_BUF: usize = 256 * 1024;
/// Pipe size asked for with F_SETPIPE_SZ (falls back to smaller sizes).
const PIPE_SIZES: [libc::c_int; 3] = [1 << 20, 256 << 10, 64 << 10];
/// Pipes smaller than this are not worth splicing through.
const PIPE_MIN: usize = 64 << 10;
/// Most pipes one worker keeps open (in use plus idle).
const MAX_PIPES: usize = 256;
/// Most idle buffers / pipes kept for reuse.
const KEEP_IDLE: usize = 64;
/// Spare `held` lists kept (each a few hundred bytes at most).
const KEEP_HELD: usize = 1024;

pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Capacity in bytes (F_GETPIPE_SZ).
    pub size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
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

#[derive(Default)]
pub struct Pool {
    bufs: Vec<Box<[u8]>>,
    /// Spare segment lists for connections' `held` (an idle connection
    /// keeps none).
    helds: Vec<Vec<Segment>>,
    pipes: Vec<Pipe>,
    pipes_open: usize,
    pipe_warned: bool,
    /// Something was taken since the last `trim`.
    used: bool,
}

impl Pool {
    pub fn take_buf(&mut self) -> Box<[u8]> {
        self.used = true;
        self.bufs
            .pop()
            .unwrap_or_else(|| vec![0u8; READ_BUF].into_boxed_slice())
    }

    pub fn take_held(&mut self) -> Vec<Segment> {
        self.helds.pop().unwrap_or_default()
    }

    pub fn put_held(&mut self, mut v: Vec<Segment>) {
        v.clear();
        if v.capacity() > 0 && self.helds.len() < KEEP_HELD {
            self.helds.push(v);
        }
    }

    pub fn put_buf(&mut self, b: Box<[u8]>) {
        if self.bufs.len() < KEEP_IDLE {
            self.bufs.push(b);
        }
    }

    /// An empty pipe, or `None` (then the caller reads + sends instead).
    pub fn take_pipe(&mut self) -> Option<Pipe> {
        self.used = true;
        if let Some(p) = self.pipes.pop() {
            return Some(p);
        }
        if self.pipes_open >= MAX_PIPES {
            return None;
        }
        match Pipe::new() {
            Ok(p) if p.size >= PIPE_MIN => {
                self.pipes_open += 1;
                Some(p)
            }
            Ok(p) => {
                self.warn_once(format_args!("pipe size only {} bytes", p.size));
                None
            }
            Err(e) => {
                self.warn_once(format_args!("{e}"));
                None
            }
        }
    }

    fn warn_once(&mut self, why: std::fmt::Arguments<'_>) {
        if !self.pipe_warned {
            self.pipe_warned = true;
            crate::warn!("io_uring: cannot get a splice pipe ({why}); reading + sending instead");
        }
    }

    /// Called once per timer tick: a pool unused for a whole tick lets its
    /// idle pipes and buffers go, so an idle worker holds no extra fds or memory.
    pub fn trim(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.pipes_open -= self.pipes.len();
            self.pipes.clear();
            self.bufs.clear();
        }
    }

    /// Give back a pipe. `empty`: nothing is left in it (else it is closed).
    pub fn put_pipe(&mut self, p: Pipe, empty: bool) {
        if empty && self.pipes.len() < KEEP_IDLE {
            self.pipes.push(p);
        } else {
            self.pipes_open -= 1;
        }
    }
}
