//! Per-worker pools of what a response being written needs: the write
//! state (`Out`: segment clones, iovecs), buffers for read + send, and pipes
//! for splice (file -> pipe -> socket). A connection takes them when a
//! response starts and gives them back when it is done (a pipe only when it
//! is empty), so an idle connection holds none.
//!
//! Capped and trimmed: each free list keeps a bounded number (buffers: a
//! bounded number of bytes), and a tick during which nothing was taken lets
//! every idle item go (and the worker then hands the allocator's free
//! memory back to the OS: `policy::GiveBack`), so a burst leaves no lasting
//! footprint.

use super::out::Out;
use super::pipe::Pipe;

/// Largest read buffer (read mode): one Read + one Send per chunk.
pub const READ_BUF: usize = 256 * 1024;
/// Smallest read buffer; buffers come in powers of two from here to
/// `READ_BUF`, so one is less than twice what it holds (or 512 bytes).
const READ_BUF_MIN: usize = 512;
/// Size classes: 512 bytes .. 256 KiB.
const CLASSES: usize = (READ_BUF / READ_BUF_MIN).trailing_zeros() as usize + 1;
/// Bytes of idle buffers kept per size class.
const KEEP_BUF_BYTES: usize = 1 << 20;
/// Pipes smaller than this are not worth splicing through.
const PIPE_MIN: usize = 64 << 10;
/// Most pipes one worker keeps open (in use plus idle).
const MAX_PIPES: usize = 256;
/// Most idle pipes kept for reuse.
const KEEP_PIPES: usize = 64;
/// Spare write states kept (each about 400 bytes with its segment list).
const KEEP_OUTS: usize = 256;

#[derive(Default)]
pub struct Pool {
    /// Idle read buffers by size class (`READ_BUF_MIN << class`).
    bufs: [Vec<Box<[u8]>>; CLASSES],
    /// Boxed: a connection takes the box itself, whose address (that of
    /// the message a SendMsg names) stays put while it is in flight.
    #[allow(clippy::vec_box)]
    outs: Vec<Box<Out>>,
    pipes: Vec<Pipe>,
    pipes_open: usize,
    pipe_warned: bool,
    /// Something was taken since the last `trim`.
    used: bool,
}

/// The size class of a buffer for `need` bytes (at most `READ_BUF`).
fn class(need: usize) -> usize {
    let size = need.clamp(READ_BUF_MIN, READ_BUF).next_power_of_two();
    (size / READ_BUF_MIN).trailing_zeros() as usize
}

impl Pool {
    /// A buffer of at least `need` bytes (at most `READ_BUF`), less than
    /// twice that (or 512 bytes).
    pub fn take_buf(&mut self, need: usize) -> Box<[u8]> {
        self.used = true;
        let c = class(need);
        self.bufs[c]
            .pop()
            .unwrap_or_else(|| vec![0u8; READ_BUF_MIN << c].into_boxed_slice())
    }

    pub fn put_buf(&mut self, b: Box<[u8]>) {
        let c = class(b.len());
        if b.len() == READ_BUF_MIN << c && (self.bufs[c].len() + 1) * b.len() <= KEEP_BUF_BYTES {
            self.bufs[c].push(b);
        }
    }

    /// A write state with no segments.
    pub fn take_out(&mut self) -> Box<Out> {
        self.used = true;
        self.outs.pop().unwrap_or_default()
    }

    /// Give back a write state whose ops are all over (a `Ready` one: a
    /// `Flight` keeps its own until then), with its buffer and pipe. Its
    /// clones go now.
    pub fn put_out(&mut self, mut o: Box<Out>) {
        if let Some(b) = o.fbuf.take() {
            self.put_buf(b);
        }
        if let Some(p) = o.pipe.take() {
            self.put_pipe(p, o.pipe_pending == 0 && !o.pipe_dirty);
        }
        o.reset();
        if self.outs.len() < KEEP_OUTS {
            self.outs.push(o);
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
    /// idle pipes, buffers and write states go, so an idle worker holds no
    /// extra fds or memory. Returns `None` if it was used, else whether it
    /// let anything go.
    pub fn trim(&mut self) -> Option<bool> {
        if std::mem::take(&mut self.used) {
            return None;
        }
        let idle = !self.pipes.is_empty()
            || !self.outs.is_empty()
            || self.bufs.iter().any(|b| !b.is_empty());
        self.pipes_open -= self.pipes.len();
        self.pipes = Vec::new();
        self.outs = Vec::new();
        self.bufs = Default::default();
        Some(idle)
    }

    /// Give back a pipe. `empty`: nothing is left in it (else it is closed).
    pub fn put_pipe(&mut self, p: Pipe, empty: bool) {
        if empty && self.pipes.len() < KEEP_PIPES {
            self.pipes.push(p);
        } else {
            self.pipes_open -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_less_than_twice_what_it_holds() {
        let mut pool = Pool::default();
        for need in [
            1,
            4096,
            4097,
            5000,
            16 * 1024 + 300,
            100_000,
            READ_BUF - 1,
            READ_BUF,
        ] {
            let b = pool.take_buf(need);
            assert!(b.len() >= need, "{need}: {}", b.len());
            assert!(
                b.len() < 2 * need || b.len() == READ_BUF_MIN,
                "{need}: {}",
                b.len()
            );
            pool.put_buf(b);
        }
    }

    #[test]
    fn idle_items_are_capped_and_go_at_a_quiet_tick() {
        let mut pool = Pool::default();
        let bufs: Vec<_> = (0..16).map(|_| pool.take_buf(READ_BUF)).collect();
        let outs: Vec<_> = (0..KEEP_OUTS + 10).map(|_| pool.take_out()).collect();
        bufs.into_iter().for_each(|b| pool.put_buf(b));
        outs.into_iter().for_each(|o| pool.put_out(o));
        assert_eq!(pool.bufs[CLASSES - 1].len(), KEEP_BUF_BYTES / READ_BUF);
        assert_eq!(pool.outs.len(), KEEP_OUTS);
        // Used during this tick: kept; quiet for the next: let go.
        assert_eq!(pool.trim(), None);
        assert_eq!(pool.trim(), Some(true));
        assert!(pool.outs.is_empty() && pool.bufs.iter().all(|b| b.is_empty()));
        assert_eq!(pool.trim(), Some(false));
    }
}
