//! Writes: turning what `Conn::poll_transmit` offers into a chain of ops.
//!
//! * Bytes (a head, a cached body, an error page) go out from the held
//!   clones of their segments: one Send for one segment, one SendMsg
//!   (iovecs in the write's `Out`) for several. So a send that waits for a
//!   slow reader holds no buffer, only references to shared bytes. Except
//!   small ones: several segments of at most `COPY_SEND_MAX` in all (a head
//!   and a small cached body) are copied into one pooled buffer and go as
//!   one Send, as on epoll; such a send holds at most that much, and the
//!   `Conn` is told they were sent once they are copied (`UConn::pump`).
//! * Bytes then a file (the usual response head + body): read mode copies
//!   the bytes into a pooled buffer sized for the chunk (a power of two,
//!   4 KiB to 256 KiB) and links `Read(file) -> Send(buffer)`.
//!   Splice mode (bodies over `DIRECT_MIN`) asks `cachestat(2)` whether the
//!   chunk's pages are all in the page cache:
//!   - if they are, `Send(bytes)` goes on the ring and the file follows with
//!     direct, non-blocking `sendfile(2)` calls (`direct_chain`), as on
//!     epoll: reading cached pages never waits for the disk;
//!   - if not (or the kernel cannot say), a body over `SPLICE_MIN` links
//!     `Send(bytes) -> Splice(file -> pipe)` through a pooled pipe, and when
//!     the file's pages are in the pipe, moves them on with a direct,
//!     non-blocking `splice(pipe -> socket)`; a smaller one is read as in
//!     read mode.
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

use io_uring::{opcode, squeue, types};

use super::out::{Direct, Flight, Out, Stop, Write};
use super::pool::{Pool, READ_BUF};
use super::ring::{Io, POLL_OUT, READ, SEND_BUF, SEND_BYTES, SPLICE_IN, Sock, bit};
use crate::engine::COPY_SEND_MAX;
use crate::http::Segment;

/// `opcode::$op::new(socket, args...)`, the socket named by its fixed-file
/// slot when it has one (no file reference taken per op), else by its fd.
macro_rules! on_sock {
    ($sock:expr, $op:ident::new($($arg:expr),*)) => {
        if $sock.fixed {
            opcode::$op::new(types::Fixed($sock.slot as u32), $($arg),*)
        } else {
            opcode::$op::new(types::Fd($sock.fd), $($arg),*)
        }
    };
}

/// How file segments reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Splice file -> pipe -> socket.
    Splice,
    /// Read into a buffer, then Send.
    Read,
}

/// In splice mode, bodies up to this size whose pages are not all in the
/// page cache still go by read+send.
const SPLICE_MIN: u64 = 16 * 1024;

/// In splice mode, bodies over this size whose pages are all in the page
/// cache go by direct `sendfile`, as on epoll: no copy of theirs in the
/// server (read+send copies twice). Measured against read+send, hot file
/// (CPU per request, `wrk -c100`): 4 KiB 0.98x, 8 KiB 0.96x, 16 KiB
/// 0.86x; many files of 1-64 KiB 0.89x (uniform), 0.86x (Zipf-like).
const DIRECT_MIN: u64 = 4 * 1024;

/// Default body method: splice mode, which sends cached pages over
/// `DIRECT_MIN` with direct `sendfile`, and still reads other bodies up to
/// `SPLICE_MIN` (two splices cost more than one small copy; see the module
/// header). The split
/// was set by wrk runs of the two methods alone, before `cachestat` and the
/// direct paths (docs/architecture.md, with the figures); measure again with
/// `TANDEM_URING_BODY=read|splice` and `benches/wrk.sh` before changing it.
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

/// Largest chunk of a file checked for residence and sent directly.
const DIRECT_MAX: u64 = 1 << 20;

/// Queue the write for what `o` holds (byte segments, then maybe a file).
/// Returns who has `o` now: the chain's ops, or the engine when nothing
/// went on the ring (a direct chunk with no bytes before it: `send_queued`).
pub fn start(mut o: Box<Out>, sock: Sock, io: &mut Io, pool: &mut Pool, mode: BodyMode) -> Write {
    let (nbytes, file) = match o.held.last() {
        Some(Segment::File(f)) => (
            o.held.len() - 1,
            Some((f.file.as_raw_fd(), f.offset, f.len)),
        ),
        _ => (o.held.len(), None),
    };
    let lead: usize = o.held[..nbytes].iter().map(|s| s.len() as usize).sum();
    let more = o.more_after || file.is_some();
    if let Some((ffd, off, len)) = file
        && lead <= LEAD_MAX
    {
        // Small bodies not in the page cache go by read+send even in
        // splice mode: one copy of a few KiB costs less than two splices
        // (measured).
        let splice = mode == BodyMode::Splice;
        if splice && len > DIRECT_MIN && resident(ffd, off, len.min(DIRECT_MAX)) {
            return direct_chain(o, sock, io, nbytes, (ffd, off, len));
        }
        let big = splice && len > SPLICE_MIN;
        if big && o.pipe.is_none() {
            o.pipe = pool.take_pipe();
        }
        if big && o.pipe.is_some() {
            return splice_chain(o, sock, io, nbytes, (ffd, off, len));
        }
        return read_chain(o, sock, io, pool, nbytes, (ffd, off, len));
    }
    if nbytes > 1 && lead <= COPY_SEND_MAX {
        return copy_send(o, sock, io, pool, nbytes, lead, more);
    }
    // Bytes only (a file after them waits for the next write): sent from
    // the held clones themselves, never copied.
    match lead_entry(&mut o, sock, nbytes, more, false) {
        // SAFETY: the Send names bytes of clones in `o.held` (a SendMsg
        // the message and iovecs in `o`, pointing into them): shared
        // bytes never move or change while a clone lives.
        Some((e, _)) => Write::InFlight(unsafe { Flight::submit(io, o, &[e], bit(SEND_BYTES)) }),
        None => Write::Ready(o),
    }
}

/// Several small byte segments (a head and a cached body): copied into one
/// pooled buffer and sent with one Send, as epoll does (`COPY_SEND_MAX`).
/// The buffer is held only while the send is in flight; the clones go at
/// once, and the bytes are `owned`: the `Conn` may count them as sent.
fn copy_send(
    mut o: Box<Out>,
    sock: Sock,
    io: &mut Io,
    pool: &mut Pool,
    nbytes: usize,
    lead: usize,
    more: bool,
) -> Write {
    let e = {
        let o = &mut *o;
        // None is held here (`pump` gave the last one back).
        let buf = o.fbuf.get_or_insert_with(|| pool.take_buf(lead));
        let at = copy_held(&o.held[..nbytes], buf);
        o.fstart = 0;
        o.fend = at;
        o.owned = true;
        o.held.clear();
        send_entry(sock, buf.as_ptr(), at, more, false, SEND_BUF)
    };
    // SAFETY: the Send names `o.fbuf[..fend]`, a heap buffer of `o`.
    Write::InFlight(unsafe { Flight::submit(io, o, &[e], bit(SEND_BUF)) })
}

/// Send the rest of the read buffer, `fbuf[fstart..fend]`.
pub fn send_buf(mut o: Box<Out>, sock: Sock, io: &mut Io) -> Write {
    let Some(buf) = o.fbuf.as_ref() else {
        o.fstart = 0;
        o.fend = 0;
        return Write::Ready(o);
    };
    let rest = &buf[o.fstart..o.fend];
    let e = send_entry(sock, rest.as_ptr(), rest.len(), false, false, SEND_BUF);
    // SAFETY: the Send names part of `o.fbuf`, a heap buffer of `o`.
    Write::InFlight(unsafe { Flight::submit(io, o, &[e], bit(SEND_BUF)) })
}

/// Something is queued (the rest of a pipe or of a direct chunk) and the
/// socket was full: wait for room (the completion calls `send_queued`
/// again). The poll holds `o` like any write: nothing else is sent first.
pub fn wait_room(o: Box<Out>, sock: Sock, io: &mut Io) -> Write {
    let poll = opcode::PollAdd::new(types::Fd(sock.fd), libc::POLLOUT as u32)
        .build()
        .user_data(sock.ud(POLL_OUT));
    // SAFETY: the poll names no memory, only the socket.
    Write::InFlight(unsafe { Flight::submit(io, o, &[poll], bit(POLL_OUT)) })
}

fn send_entry(
    sock: Sock,
    p: *const u8,
    n: usize,
    more: bool,
    link: bool,
    kind: u8,
) -> squeue::Entry {
    let e = on_sock!(sock, Send::new(p, clamp32(n)))
        .flags(send_flags(more))
        .build()
        .user_data(sock.ud(kind));
    if link {
        e.flags(squeue::Flags::IO_LINK)
    } else {
        e
    }
}

/// Move what is queued into the socket with direct, non-blocking calls
/// until it is all sent or the socket is full: the `direct` chunk with
/// `sendfile`, or what the pipe holds with `splice`. Returns the bytes
/// sent, and what stopped it (a full socket does not). Only on a `Ready`
/// state: no op is in flight, nothing else touches the pipe.
pub fn send_queued(o: &mut Out, sock: RawFd) -> (usize, Option<Stop>) {
    if let Some(mut d) = o.direct {
        let r = d.send(sock);
        o.direct = (d.left > 0 && r.1.is_none()).then_some(d);
        return r;
    }
    let Some(pipe) = o.pipe.as_ref() else {
        o.pipe_pending = 0;
        return (0, None);
    };
    let mut flags = libc::SPLICE_F_NONBLOCK;
    if o.pipe_more {
        flags |= libc::SPLICE_F_MORE;
    }
    let rfd = pipe.rfd();
    let mut left = o.pipe_pending;
    let r = until_full(&mut left, Stop::Failed(libc::EIO), |n| {
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
    o.pipe_pending = left;
    r
}

/// Read mode: [the leading bytes, copied] + Read(file) -> one Send, in a
/// pooled buffer sized for this chunk.
fn read_chain(
    mut o: Box<Out>,
    sock: Sock,
    io: &mut Io,
    pool: &mut Pool,
    nbytes: usize,
    file: FileAt,
) -> Write {
    let (ffd, off, len) = file;
    let h: usize = o.held[..nbytes].iter().map(|s| s.len() as usize).sum();
    let want = len.min((READ_BUF - h) as u64) as usize;
    let more = len > want as u64 || o.more_after;
    let chain = {
        let o = &mut *o;
        // None is held here (`pump` gave the last one back).
        let buf = o.fbuf.get_or_insert_with(|| pool.take_buf(h + want));
        let want = want.min(buf.len().saturating_sub(h));
        copy_held(&o.held[..nbytes], buf);
        o.fstart = 0;
        o.fend = h;
        let base = buf.as_mut_ptr();
        // SAFETY: h + want <= buf.len(), so the pointer stays inside buf.
        let dst = unsafe { base.add(h) };
        let read = opcode::Read::new(types::Fd(ffd), dst, want as u32)
            .offset(off)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(sock.ud(READ));
        [
            read,
            send_entry(sock, base, h + want, more, false, SEND_BUF),
        ]
    };
    // SAFETY: both name `o.fbuf`, a heap buffer of `o`; the Read the file
    // of a clone in `o.held`. The Send covers bytes the Read fills; a short
    // Read breaks the link (the Send is cancelled).
    Write::InFlight(unsafe { Flight::submit(io, o, &chain, bit(READ) | bit(SEND_BUF)) })
}

/// Splice mode: [Send(leading bytes) ->] Splice(file -> pipe) into the
/// pipe `o` holds; its completion calls `send_queued`.
fn splice_chain(mut o: Box<Out>, sock: Sock, io: &mut Io, nbytes: usize, file: FileAt) -> Write {
    let (ffd, off, len) = file;
    let Some((size, wfd)) = o.pipe.as_ref().map(|p| (p.size, p.wfd())) else {
        return Write::Ready(o);
    };
    // A pipe holds size/PAGE_SIZE page references: keep an unaligned
    // chunk within that many pages so the pipe never fills up mid-splice.
    let room = size - (off as usize & 4095);
    let n = len.min(room as u64) as u32;
    o.pipe_more = len > n as u64 || o.more_after;
    let lead = lead_entry(&mut o, sock, nbytes, true, true);
    let sin = opcode::Splice::new(types::Fd(ffd), off as i64, types::Fd(wfd), -1, n)
        .flags(libc::SPLICE_F_NONBLOCK)
        .build()
        .user_data(sock.ud(SPLICE_IN));
    // SAFETY: the leading bytes are clones in `o.held` (a SendMsg's message
    // and iovecs are in `o`, pointing into them), the file a clone in
    // `o.held`, and the pipe `o`'s.
    unsafe {
        Write::InFlight(match lead {
            Some((send, _)) => {
                Flight::submit(io, o, &[send, sin], bit(SEND_BYTES) | bit(SPLICE_IN))
            }
            None => Flight::submit(io, o, &[sin], bit(SPLICE_IN)),
        })
    }
}

/// A chunk whose pages are all in the page cache: [Send(leading bytes)],
/// then the file goes by direct, non-blocking `sendfile(2)` calls
/// (`send_queued`), once the leading bytes are out (their completion) or
/// at once (`settle`). It cannot wait for the disk, and skips the io-wq
/// hop a ring splice costs.
fn direct_chain(mut o: Box<Out>, sock: Sock, io: &mut Io, nbytes: usize, file: FileAt) -> Write {
    let (ffd, off, len) = file;
    let n = len.min(DIRECT_MAX);
    let lead = lead_entry(&mut o, sock, nbytes, true, false);
    o.direct = Some(Direct {
        fd: ffd,
        off,
        left: n as usize,
    });
    let Some((send, h)) = lead else {
        return Write::Ready(o);
    };
    o.ahead = h;
    // SAFETY: the leading bytes are clones in `o.held` (a SendMsg's message
    // and iovecs are in `o`, pointing into them).
    Write::InFlight(unsafe { Flight::submit(io, o, &[send], bit(SEND_BYTES)) })
}

/// A Send for the `nbytes` leading byte segments straight from their held
/// clones (a SendMsg over `o`'s message when there are several), and its
/// length.
fn lead_entry(
    o: &mut Out,
    sock: Sock,
    nbytes: usize,
    more: bool,
    link: bool,
) -> Option<(squeue::Entry, usize)> {
    match nbytes {
        0 => None,
        1 => match o.held.first() {
            Some(Segment::Bytes(b)) => {
                let (p, k) = (b.as_ptr(), b.len());
                Some((send_entry(sock, p, k, more, link, SEND_BYTES), k))
            }
            _ => None,
        },
        _ => {
            let (msg, total) = o.message(nbytes);
            let e = on_sock!(sock, SendMsg::new(msg))
                .flags(send_flags(more) as u32)
                .build()
                .user_data(sock.ud(SEND_BYTES));
            let e = if link {
                e.flags(squeue::Flags::IO_LINK)
            } else {
                e
            };
            Some((e, total))
        }
    }
}

impl Direct {
    /// `sendfile(2)` into the non-blocking socket until the chunk is sent or
    /// the socket is full. Returns the bytes sent, and what stopped it.
    fn send(&mut self, sock: RawFd) -> (usize, Option<Stop>) {
        let (file, mut off) = (self.fd, self.off as libc::off_t);
        let r = until_full(&mut self.left, Stop::FileEnded, |n| {
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
/// bytes sent, and what stopped it: `at_eof` when a call moved nothing (its
/// source ran dry), or the errno of a failed call.
fn until_full(
    left: &mut usize,
    at_eof: Stop,
    mut send: impl FnMut(usize) -> std::io::Result<isize>,
) -> (usize, Option<Stop>) {
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
                errno => return (sent, Some(Stop::Failed(errno))),
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

/// Copy the byte pieces of `held` to the front of `buf` (which the
/// caller sized for them): how many bytes that was.
fn copy_held(held: &[Segment], buf: &mut [u8]) -> usize {
    let mut at = 0;
    for s in held {
        if let Segment::Bytes(b) = s {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
    }
    at
}
