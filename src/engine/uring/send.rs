//! Writes: turning what `Conn::poll_transmit` offers into a chain of ops.
//!
//! * Bytes only: one Send straight from a held clone of the segment, or the
//!   leading byte segments gathered into a pooled buffer and sent at once.
//! * Bytes then a file (the usual response head + body): read mode copies
//!   the bytes into a pooled buffer and links `Read(file) -> Send(buffer)`.
//!   Splice mode (bodies over `SPLICE_MIN`) asks `cachestat(2)` whether the
//!   chunk's pages are all in the page cache:
//!   - if they are, `Send(bytes)` goes on the ring and the file follows with
//!     direct, non-blocking `sendfile(2)` calls (`direct_chain`), as on
//!     epoll: reading cached pages never waits for the disk;
//!   - if not (or the kernel cannot say), it links `Send(bytes) ->
//!     Splice(file -> pipe)` through a pooled pipe, and when the file's
//!     pages are in the pipe, moves them on with a direct, non-blocking
//!     `splice(pipe -> socket)`.
//! * Why not ring splices all the way: io_uring runs every splice on an
//!   io-wq thread (it has no non-blocking splice), two context switches per
//!   op. File -> pipe may wait for the disk, so it belongs there when the
//!   pages are not cached; pipe -> socket, or sendfile from cached pages,
//!   never waits. As ring ops they made 1 MiB and 100 MiB bodies cost 1.06x
//!   and 1.22x epoll's CPU per byte (pipe -> socket inline: 0.98x and
//!   0.93x), and 256 KiB bodies 1.10x (sendfile for cached pages: 1.00x;
//!   benches/wrk.sh).
//! * Sends use MSG_WAITALL, so a short send breaks the link like a short read
//!   or splice does. What the engine already holds goes first on the next
//!   write: the rest of the buffer, or what is queued (a pipe left non-empty
//!   or a direct chunk left unsent by a full socket: `PollAdd(POLLOUT)`, then
//!   `send_queued` again).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use io_uring::{opcode, squeue, types};

use super::conn::UConn;
use super::pool::{Pool, READ_BUF};
use super::ring::{Io, POLL_OUT, READ, SEND_BUF, SEND_BYTES, SPLICE_IN, bit};
use crate::http::{Segment, Transmit};

/// How file segments reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Splice file -> pipe -> socket.
    Splice,
    /// Read into a buffer, then Send.
    Read,
}

/// In splice mode, bodies up to this size still go by read+send.
const SPLICE_MIN: u64 = 16 * 1024;

/// Default body method. Measured with wrk (-t2 -c64, 1 and 2 workers, loopback):
/// splice is ~25-40% faster for 100 KiB bodies and ~60% faster for 10 MiB
/// (no copy through user space); read + send is ~10% faster for 4 KiB.
const DEFAULT_BODY: BodyMode = BodyMode::Splice;

impl BodyMode {
    /// `TANDEM_URING_BODY=splice|read`, read once per worker.
    pub fn from_env() -> BodyMode {
        match std::env::var("TANDEM_URING_BODY").as_deref() {
            Ok("splice") => BodyMode::Splice,
            Ok("read") => BodyMode::Read,
            Ok("") | Err(_) => DEFAULT_BODY,
            Ok(other) => {
                static WARN: std::sync::Once = std::sync::Once::new();
                WARN.call_once(|| {
                    crate::warn!(
                        "TANDEM_URING_BODY={other:?} is not \"splice\" or \"read\"; using {:?}",
                        DEFAULT_BODY
                    )
                });
                DEFAULT_BODY
            }
        }
    }
}

/// Bytes before a file segment up to this size go out linked with it.
const LEAD_MAX: usize = 16 * 1024;
/// A file segment as the kernel sees it: (fd, offset, length).
type FileAt = (RawFd, u64, u64);

/// Most byte segments one write gathers.
const GATHER_MAX: usize = 8;

impl UConn {
    /// Start the next write, or act on Idle/Close/Shutdown. Does nothing
    /// while a write is in flight or the connection is closing.
    pub fn pump(&mut self, io: &mut Io, pool: &mut Pool, mode: BodyMode, now: Instant) {
        enum Next {
            Idle,
            Close,
            Shutdown,
            Send,
        }
        loop {
            if self.closing || self.writing() {
                return;
            }
            if self.conn.is_closed() {
                self.start_close(io, now);
                return;
            }
            // Bytes the engine already holds go first.
            if self.fstart < self.fend {
                self.send_buf(io, false);
                return;
            }
            if self.queued() {
                self.wait_room(io);
                return;
            }
            // No write is in flight: the last one's clones can go.
            self.held.clear();
            let next = match self.conn.poll_transmit() {
                Transmit::Idle => Next::Idle,
                Transmit::Close => Next::Close,
                Transmit::Shutdown => Next::Shutdown,
                Transmit::Send(segs) => {
                    if self.held.capacity() == 0 {
                        self.held = pool.take_held();
                    }
                    // Clone what this write reads: the leading byte
                    // segments, and the file segment after them.
                    for s in segs {
                        let file = matches!(s, Segment::File(_));
                        if !file && self.held.len() == GATHER_MAX {
                            break;
                        }
                        self.held.push(s.clone());
                        if file {
                            break;
                        }
                    }
                    self.more_after = segs.len() > self.held.len();
                    Next::Send
                }
            };
            match next {
                Next::Idle => {
                    self.release(pool);
                    return;
                }
                Next::Close => {
                    self.start_close(io, now);
                    return;
                }
                Next::Shutdown => crate::engine::policy::half_close(self.fd, &mut self.conn),
                Next::Send => {
                    self.start_send(io, pool, mode);
                    return;
                }
            }
        }
    }

    /// Queue the write for `held` (byte segments, then maybe a file).
    fn start_send(&mut self, io: &mut Io, pool: &mut Pool, mode: BodyMode) {
        let (nbytes, file) = match self.held.last() {
            Some(Segment::File(f)) => (
                self.held.len() - 1,
                Some((f.file.as_raw_fd(), f.offset, f.len)),
            ),
            _ => (self.held.len(), None),
        };
        let lead: usize = self.held[..nbytes].iter().map(|s| s.len() as usize).sum();
        if let Some((ffd, off, len)) = file
            && lead <= LEAD_MAX
        {
            // Small bodies go by read+send even in splice mode: one copy of
            // a few KiB costs less than two splices (measured).
            let big = mode == BodyMode::Splice && len > SPLICE_MIN;
            if big && resident(ffd, off, len.min(DIRECT_MAX)) {
                self.direct_chain(io, pool, nbytes, (ffd, off, len));
            } else if big && self.take_pipe(pool) {
                self.splice_chain(io, pool, nbytes, (ffd, off, len));
            } else {
                self.read_chain(io, pool, nbytes, (ffd, off, len));
            }
            return;
        }
        // Bytes only; a file after them waits for the next write.
        let more = self.more_after || file.is_some();
        if nbytes > 1 && lead <= READ_BUF {
            self.gather(pool, nbytes);
            self.send_buf(io, more);
        } else {
            let more = more || nbytes > 1;
            self.held.truncate(1);
            self.send_held(io, more);
        }
    }

    fn take_pipe(&mut self, pool: &mut Pool) -> bool {
        if self.pipe.is_none() {
            self.pipe = pool.take_pipe();
        }
        self.pipe.is_some()
    }

    /// Copy the first `n` held byte segments into the pooled buffer (empty
    /// before this): `fbuf[0..fend]`. Returns `fend`.
    fn gather(&mut self, pool: &mut Pool, n: usize) -> usize {
        let buf = self.fbuf.get_or_insert_with(|| pool.take_buf());
        let mut at = 0;
        for s in &self.held[..n] {
            if let Segment::Bytes(b) = s {
                buf[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
        }
        self.fstart = 0;
        self.fend = at;
        at
    }

    /// Send `fbuf[fstart..fend]`.
    fn send_buf(&mut self, io: &mut Io, more: bool) {
        let Some(buf) = self.fbuf.as_ref() else {
            self.fstart = 0;
            self.fend = 0;
            return;
        };
        let rest = &buf[self.fstart..self.fend];
        let e = self.send_entry(rest.as_ptr(), rest.len(), more, false, SEND_BUF);
        // SAFETY: fbuf is a heap buffer owned by this connection; it is given
        // back or rewritten only when no write is in flight (`pump`,
        // `gather` from `pump`, `release`), and the socket stays open until
        // `pending == 0`.
        unsafe { io.push(&[e]) };
    }

    /// Send the first held segment, which is bytes.
    fn send_held(&mut self, io: &mut Io, more: bool) {
        let Some(Segment::Bytes(b)) = self.held.first() else {
            return;
        };
        let (p, n) = (b.as_ptr(), b.len());
        let e = self.send_entry(p, n, more, false, SEND_BYTES);
        // SAFETY: the bytes belong to a clone in `held`, which is cleared
        // only when no write is in flight; shared bytes never move or change
        // while a clone lives. The socket stays open until `pending == 0`.
        unsafe { io.push(&[e]) };
    }

    fn send_entry(
        &mut self,
        p: *const u8,
        n: usize,
        more: bool,
        link: bool,
        kind: u8,
    ) -> squeue::Entry {
        self.pending |= bit(kind);
        let e = opcode::Send::new(types::Fd(self.fd), p, clamp32(n))
            .flags(send_flags(more))
            .build()
            .user_data(self.ud(kind));
        if link {
            e.flags(squeue::Flags::IO_LINK)
        } else {
            e
        }
    }

    /// Something is queued (the rest of a pipe or of a direct chunk) and the
    /// socket was full: wait for room (the completion calls `send_queued`
    /// again).
    pub fn wait_room(&mut self, io: &mut Io) {
        let poll = opcode::PollAdd::new(types::Fd(self.fd), libc::POLLOUT as u32)
            .build()
            .user_data(self.ud(POLL_OUT));
        self.pending |= bit(POLL_OUT);
        // SAFETY: no user memory; the socket stays open until pending == 0.
        unsafe { io.push(&[poll]) };
    }

    /// Move what is queued into the socket with direct, non-blocking calls
    /// until it is all sent or the socket is full: the `direct` chunk with
    /// `sendfile`, or what the pipe holds with `splice`. Returns the bytes
    /// sent, and the errno that stopped it (not EAGAIN). Only when no write
    /// op is in flight (nothing else touches the pipe).
    pub fn send_queued(&mut self) -> (usize, Option<i32>) {
        if let Some(mut d) = self.direct {
            let r = d.send(self.fd);
            self.direct = (d.left > 0 && r.1.is_none()).then_some(d);
            return r;
        }
        let Some(pipe) = self.pipe.as_ref() else {
            self.pipe_pending = 0;
            return (0, None);
        };
        let mut flags = libc::SPLICE_F_NONBLOCK;
        if self.pipe_more {
            flags |= libc::SPLICE_F_MORE;
        }
        let (rfd, sock) = (pipe.rfd(), self.fd);
        let mut left = self.pipe_pending;
        let r = until_full(&mut left, libc::EIO, |n| {
            // SAFETY: splice between two fds this connection owns (its pipe's
            // read end and its socket), with null offsets: no user memory.
            crate::syscall!(unsafe {
                libc::splice(
                    rfd,
                    std::ptr::null_mut(),
                    sock,
                    std::ptr::null_mut(),
                    n,
                    flags,
                )
            })
        });
        self.pipe_pending = left;
        r
    }

    /// Read mode: [the leading bytes, copied] + Read(file) -> one Send.
    fn read_chain(&mut self, io: &mut Io, pool: &mut Pool, nbytes: usize, file: FileAt) {
        let (ffd, off, len) = file;
        let h = self.gather(pool, nbytes);
        let want = len.min((READ_BUF - h) as u64) as usize;
        let more = len > want as u64 || self.more_after;
        let Some(buf) = self.fbuf.as_mut() else {
            return;
        };
        let base = buf.as_mut_ptr();
        // SAFETY: h + want <= READ_BUF = buf.len(), so the pointer stays inside buf.
        let dst = unsafe { base.add(h) };
        let read = opcode::Read::new(types::Fd(ffd), dst, want as u32)
            .offset(off)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(self.ud(READ));
        self.pending |= bit(READ);
        let send = self.send_entry(base, h + want, more, false, SEND_BUF);
        // SAFETY: fbuf is a heap buffer owned by this connection and not
        // touched while a write is in flight. The file is a clone in `held`
        // (kept until no write is in flight), so `ffd` stays open. The Send
        // covers bytes the Read fills; a short Read breaks the link (the
        // Send is cancelled). The socket stays open until pending == 0.
        unsafe { io.push(&[read, send]) };
    }

    /// Splice mode: [Send(leading bytes) ->] Splice(file -> pipe); its
    /// completion calls `send_queued`.
    fn splice_chain(&mut self, io: &mut Io, pool: &mut Pool, nbytes: usize, file: FileAt) {
        let (ffd, off, len) = file;
        let Some((size, wfd)) = self.pipe.as_ref().map(|p| (p.size, p.wfd())) else {
            return;
        };
        // A pipe holds size/PAGE_SIZE page references: keep an unaligned
        // chunk within that many pages so the pipe never fills up mid-splice.
        let room = size - (off as usize & 4095);
        let n = len.min(room as u64) as u32;
        self.pipe_more = len > n as u64 || self.more_after;
        let lead = self.lead_entry(pool, nbytes, true);
        let sin = opcode::Splice::new(types::Fd(ffd), off as i64, types::Fd(wfd), -1, n)
            .flags(libc::SPLICE_F_NONBLOCK)
            .build()
            .user_data(self.ud(SPLICE_IN));
        self.pending |= bit(SPLICE_IN);
        // SAFETY: the leading bytes are a clone in `held` or the pooled
        // buffer, the file a clone in `held`, and the pipe this connection's:
        // none is let go of while a write is in flight. The socket is closed
        // only once pending == 0.
        unsafe {
            match lead {
                Some((send, _)) => io.push(&[send, sin]),
                None => io.push(&[sin]),
            }
        };
    }

    /// A chunk whose pages are all in the page cache: [Send(leading
    /// bytes)], then the file goes by direct, non-blocking `sendfile(2)`
    /// calls (`send_queued`), once the leading bytes are out (their
    /// completion) or at once (`settle`). It cannot wait for the disk, and
    /// skips the io-wq hop a ring splice costs.
    fn direct_chain(&mut self, io: &mut Io, pool: &mut Pool, nbytes: usize, file: FileAt) {
        let (ffd, off, len) = file;
        let n = len.min(DIRECT_MAX);
        self.direct = Some(Direct {
            fd: ffd,
            off,
            left: n as usize,
        });
        if let Some((send, h)) = self.lead_entry(pool, nbytes, false) {
            self.ahead = h;
            // SAFETY: the leading bytes are a clone in `held` or the pooled
            // buffer, neither let go of while a write is in flight; the
            // socket is closed only once pending == 0.
            unsafe { io.push(&[send]) };
        }
    }

    /// A Send for the `nbytes` leading byte segments (gathered when more
    /// than one), and its length.
    fn lead_entry(
        &mut self,
        pool: &mut Pool,
        nbytes: usize,
        link: bool,
    ) -> Option<(squeue::Entry, usize)> {
        match nbytes {
            0 => None,
            1 => match self.held.first() {
                Some(Segment::Bytes(b)) => {
                    let (p, k) = (b.as_ptr(), b.len());
                    Some((self.send_entry(p, k, true, link, SEND_BYTES), k))
                }
                _ => None,
            },
            _ => {
                let h = self.gather(pool, nbytes);
                let p = self.fbuf.as_ref().map(|b| b.as_ptr());
                p.map(|p| (self.send_entry(p, h, true, link, SEND_BUF), h))
            }
        }
    }
}

/// In place of an errno: the file ended before the bytes announced.
pub const SHORT: i32 = 0;

/// Largest chunk of a file checked for residence and sent directly.
const DIRECT_MAX: u64 = 1 << 20;

/// A file chunk being sent with direct `sendfile(2)` calls.
#[derive(Debug, Clone, Copy)]
pub struct Direct {
    fd: RawFd,
    off: u64,
    left: usize,
}

impl Direct {
    /// `sendfile(2)` into the non-blocking socket until the chunk is sent or
    /// the socket is full. Returns the bytes sent, and the errno that
    /// stopped it (not EAGAIN); `SHORT` when the file ended early.
    fn send(&mut self, sock: RawFd) -> (usize, Option<i32>) {
        let (file, mut off) = (self.fd, self.off as libc::off_t);
        let r = until_full(&mut self.left, SHORT, |n| {
            // SAFETY: sendfile from the open file of a segment `held` keeps a
            // clone of (kept while `direct` is set: `pump` clears `held` only
            // when nothing is queued) into this connection's socket; `off`
            // is a live local the kernel advances.
            crate::syscall!(unsafe { libc::sendfile(sock, file, &mut off, n) })
        });
        self.off = off as u64;
        r
    }
}

/// Call `send(n)` (a non-blocking splice or sendfile of up to `n` bytes into
/// the socket) until `left` is 0 or the socket is full (EAGAIN). Returns the
/// bytes sent, and the errno that stopped it: `at_eof` when a call moved
/// nothing (its source ran dry).
fn until_full(
    left: &mut usize,
    at_eof: i32,
    mut send: impl FnMut(usize) -> std::io::Result<isize>,
) -> (usize, Option<i32>) {
    let mut sent = 0;
    while *left > 0 {
        match send(*left) {
            Ok(0) => return (sent, Some(at_eof)),
            Ok(n) => {
                let n = (n as usize).min(*left);
                *left -= n;
                sent += n;
            }
            Err(e) => match e.raw_os_error().unwrap_or(libc::EIO) {
                libc::EINTR => {}
                libc::EAGAIN => break,
                errno => return (sent, Some(errno)),
            },
        }
    }
    (sent, None)
}

/// `cachestat(2)` (Linux 6.5), where its number is known (451 on every
/// architecture that numbers new calls alike).
const SYS_CACHESTAT: Option<libc::c_long> = if cfg!(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "powerpc64",
    target_arch = "s390x"
)) {
    Some(451)
} else {
    None
};

/// The kernel has no cachestat: stop asking.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Every page of `fd`'s `[off, off + len)` is in the page cache, so a
/// `sendfile` from it will not wait for the disk. False when the kernel
/// cannot say: before Linux 6.5, or (Linux 6.14+, EPERM) for a file this
/// process neither owns nor may write; then the body goes by the ring's
/// splice.
fn resident(fd: RawFd, off: u64, len: u64) -> bool {
    let Some(nr) = SYS_CACHESTAT else {
        return false;
    };
    if len == 0 || NO_CACHESTAT.load(Ordering::Relaxed) {
        return false;
    }
    let page = page_size();
    let pages = (off + len - 1) / page - off / page + 1;
    let range = CachestatRange { off, len };
    let mut st = Cachestat::default();
    // SAFETY: cachestat reads `range` and writes `st`, both live locals of
    // the kernel's layout (two and five u64s); `fd` is the open file of a
    // segment the caller holds a clone of.
    let r = crate::syscall!(unsafe {
        libc::syscall(
            nr,
            fd,
            &range as *const CachestatRange,
            &mut st as *mut Cachestat,
            0,
        )
    });
    match r {
        Ok(_) => st.nr_cache >= pages,
        Err(e) => {
            if e.raw_os_error() == Some(libc::ENOSYS) {
                NO_CACHESTAT.store(true, Ordering::Relaxed);
            }
            false
        }
    }
}

fn page_size() -> u64 {
    static PAGE: AtomicU64 = AtomicU64::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf takes no pointers.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = if p > 0 { p as u64 } else { 4096 };
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

fn send_flags(more: bool) -> i32 {
    // WAITALL: the kernel retries partial sends itself, and a short send breaks a link.
    libc::MSG_NOSIGNAL | libc::MSG_WAITALL | if more { libc::MSG_MORE } else { 0 }
}

fn clamp32(n: usize) -> u32 {
    n.min(1 << 30) as u32
}
