//! The write state of a response being written (`Out`) and who has it
//! (`Write`): nobody (an idle connection), the engine between ops, or a
//! chain of ops in flight (`Flight`).
//!
//! As in tokio-uring, an op owns what it needs: `Flight::submit` queues a
//! chain built over an `Out` and takes the `Out` (its held segment clones,
//! the SendMsg message and iovecs, the read buffer, the pipe, the file) for
//! as long as any op of the chain is in flight. The chain's completions
//! may only count what moved (`account`); the `Out` comes back to the
//! engine with the final completion of the chain's last op (`complete`),
//! and only then can it be changed, reused or given back to the pool. A
//! `Flight` dropped while its ops are in flight leaks its `Out` rather than
//! free memory the kernel may still use (the engine never does that: a
//! connection goes only once nothing of it is in flight, and teardown
//! cancels and drains every op, or leaks what did not finish).

use std::os::fd::RawFd;

use io_uring::squeue;

use super::pipe::Pipe;
use super::ring::{Io, READ, SEND_BUF, SEND_BYTES, SPLICE_IN, bit};
use crate::http::Segment;

/// Most byte segments one write sends (the iovecs of one SendMsg).
pub const IOV_MAX: usize = 8;

/// A connection's write state: what the response being written holds. A
/// connection has one from the first write of a response until the
/// response is over, then it goes back to the pool (`Pool::put_out`), so
/// an idle keep-alive connection holds none of it.
pub struct Out {
    /// Clones of the segments the write reads from (bytes it sends
    /// directly, the file it reads or splices): they keep that memory and
    /// that fd alive while the write's ops are in flight.
    pub held: Vec<Segment>,
    /// The segments after `held` still belong to this response.
    pub more_after: bool,
    /// The message of a SendMsg: iovecs over byte segments in `held`.
    iov: [libc::iovec; IOV_MAX],
    msg: libc::msghdr,
    /// Read mode: a pooled buffer sized for this chunk; `fbuf[fstart..fend]`
    /// is sent next (the leading bytes and the file bytes, in response
    /// order, none acknowledged yet).
    pub fbuf: Option<Box<[u8]>>,
    pub fstart: usize,
    pub fend: usize,
    /// Splice mode: `pipe_pending` bytes sit in the pipe.
    pub pipe: Option<Pipe>,
    pub pipe_pending: usize,
    /// The pipe may hold bytes that will never be sent: it is not reused.
    pub pipe_dirty: bool,
    /// More of the response follows what the pipe holds (SPLICE_F_MORE).
    pub pipe_more: bool,
    /// A file chunk in the page cache, sent with direct `sendfile` calls.
    pub direct: Option<Direct>,
    /// Leading bytes being sent on the ring that must be out before the
    /// `direct` chunk goes.
    pub ahead: usize,
    /// `fbuf` holds a copy of the bytes (`send::copy_send`), and the `Conn`
    /// was told they were sent when they were copied: the ring owns them
    /// now, and their Send's completion tells the `Conn` nothing more.
    pub owned: bool,
    /// When this write began, or when its owned bytes were last seen to
    /// move (`stamp`): they wait no longer than `send_timeout` without
    /// moving (`UConn::waits_for_owned`).
    pub moved: u32,
    /// The bytes of the connection its peer had acknowledged when last
    /// looked at (`Worker::owned_progress`); 0 before the first look.
    pub acked: u64,
    /// While a `Flight` has it: one bit per op kind of the chain still in
    /// flight (kept here, not in the `Flight`, so that a connection's
    /// `Write` is two words, not three).
    ops: u16,
}

impl Default for Out {
    fn default() -> Out {
        Out {
            held: Vec::new(),
            more_after: false,
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; IOV_MAX],
            // SAFETY: msghdr is a plain C struct; all-zero (no name, no
            // iovecs, no control) is a valid value.
            msg: unsafe { std::mem::zeroed() },
            fbuf: None,
            fstart: 0,
            fend: 0,
            pipe: None,
            pipe_pending: 0,
            pipe_dirty: false,
            pipe_more: false,
            direct: None,
            ahead: 0,
            owned: false,
            moved: 0,
            acked: 0,
            ops: 0,
        }
    }
}

impl Out {
    /// Bytes wait in the pipe, or a direct chunk is not all sent.
    pub fn queued(&self) -> bool {
        self.pipe_pending > 0 || self.direct.is_some()
    }

    /// Hold clones of what the next write reads: the leading byte segments
    /// of `segs` (at most `IOV_MAX`), and the file segment after them.
    pub fn hold(&mut self, segs: &[Segment]) {
        for s in segs {
            let file = matches!(s, Segment::File(_));
            if !file && self.held.len() == IOV_MAX {
                break;
            }
            self.held.push(s.clone());
            if file {
                break;
            }
        }
        self.more_after = segs.len() > self.held.len();
    }

    /// Back to empty for the next response (the buffer and the pipe were
    /// given back before), keeping the segment list's capacity.
    pub fn reset(&mut self) {
        debug_assert!(self.fbuf.is_none() && self.pipe.is_none());
        let held = std::mem::take(&mut self.held);
        *self = Out {
            held,
            ..Out::default()
        };
        self.held.clear();
    }

    /// Point the message at the first `n` held segments (bytes). Returns
    /// the message and the bytes it carries.
    pub fn message(&mut self, n: usize) -> (*const libc::msghdr, usize) {
        let mut k = 0;
        let mut total = 0;
        for s in self.held.iter().take(n.min(IOV_MAX)) {
            let Segment::Bytes(b) = s else { break };
            self.iov[k] = libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
            total += b.len();
            k += 1;
        }
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = k as _;
        (&self.msg as *const libc::msghdr, total)
    }
}

/// Why moving queued bytes into the socket stopped before they were all
/// sent (a full socket is no stop: the rest waits for room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The file ended before the bytes the response announced.
    FileEnded,
    /// The socket (or the pipe) failed with this errno.
    Failed(i32),
}

/// A file chunk being sent with direct `sendfile(2)` calls. Its file is
/// the one `held` keeps a clone of (kept while the chunk is queued).
#[derive(Debug, Clone, Copy)]
pub struct Direct {
    pub fd: RawFd,
    pub off: u64,
    pub left: usize,
}

/// A chain of ops in flight and the `Out` it reads from and writes into:
/// the ops own it until the final completion of the last of them.
pub struct Flight {
    /// Always `Some` until `complete` hands it back; its `ops` has one bit
    /// per op kind of the chain still in flight.
    out: Option<Box<Out>>,
}

impl Flight {
    /// Queue `chain` and hand `out` to its ops.
    ///
    /// # Safety
    ///
    /// Every buffer an entry of `chain` names must be part of `out` (bytes
    /// of segments in `held`, the message and its iovecs, `fbuf`), every fd
    /// one `out` holds (a file in `held`, the pipe) or the connection's
    /// socket, which the caller keeps open until no op of it is in flight.
    /// `ops` has the bit of every entry's kind, and nothing else.
    pub unsafe fn submit(
        io: &mut Io,
        mut out: Box<Out>,
        chain: &[squeue::Entry],
        ops: u16,
    ) -> Flight {
        // SAFETY: what the entries name lives in `out`'s heap (the box
        // itself for the message, the shared bytes of held clones, `fbuf`)
        // or is a held fd, by this function's contract; moving the box moves
        // none of it, and the returned Flight keeps `out` from every change
        // until the final completion of each op (`complete`), or leaks it.
        unsafe { io.push(chain) };
        out.ops = ops;
        Flight { out: Some(out) }
    }

    pub fn ops(&self) -> u16 {
        self.out.as_ref().map_or(0, |o| o.ops)
    }

    fn out(&self) -> Option<&Out> {
        self.out.as_deref()
    }

    /// An op of `kind` moved `n > 0` bytes: count them. Returns the bytes
    /// that reached the socket, or `Err(len)` when a Send says it sent more
    /// than the `len` it was given.
    pub fn account(&mut self, kind: u8, n: usize) -> Result<usize, usize> {
        let Some(o) = self.out.as_mut() else {
            return Ok(0);
        };
        let sent = match kind {
            SEND_BYTES => n,
            SEND_BUF => {
                let len = o.fend - o.fstart;
                if n > len {
                    return Err(len);
                }
                o.fstart += n;
                if o.fstart == o.fend {
                    o.fstart = 0;
                    o.fend = 0;
                }
                // Owned bytes were acknowledged when they were copied.
                if o.owned { 0 } else { n }
            }
            READ => {
                o.fend += n;
                0
            }
            SPLICE_IN => {
                o.pipe_pending += n;
                0
            }
            _ => 0,
        };
        o.ahead = o.ahead.saturating_sub(sent);
        Ok(sent)
    }

    /// The pipe may hold bytes that will never be sent (a flag, not memory
    /// the kernel uses).
    pub fn dirty(&mut self) {
        if let Some(o) = self.out.as_mut() {
            o.pipe_dirty = true;
        }
    }

    /// See `Write::progress` (counters only, no memory the kernel uses).
    fn progress(&mut self, acked: u64, at: u32) {
        if let Some(o) = self.out.as_mut().filter(|o| o.owned) {
            if o.acked != 0 && acked > o.acked {
                o.moved = at;
            }
            o.acked = acked;
        }
    }

    /// The final completion of the op of `kind`: once the chain's last op
    /// is over, its `Out` goes back to the engine.
    pub fn complete(mut self, kind: u8) -> Write {
        if let Some(o) = self.out.as_mut() {
            o.ops &= !bit(kind);
        }
        match self.out.take() {
            Some(o) if o.ops == 0 => Write::Ready(o),
            out => {
                self.out = out;
                Write::InFlight(self)
            }
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(o) = self.out.take_if(|o| o.ops != 0) {
            // The kernel may still read or write it: never free it.
            std::mem::forget(o);
        }
    }
}

/// A connection's write state and who has it.
#[derive(Default)]
pub enum Write {
    /// No response is being written: nothing is held.
    #[default]
    Idle,
    /// Between ops: the engine may read, change or give back the state.
    Ready(Box<Out>),
    /// Ops in flight own the state.
    InFlight(Flight),
}

impl Write {
    /// The kinds of the write ops in flight.
    pub fn ops(&self) -> u16 {
        match self {
            Write::InFlight(f) => f.ops(),
            _ => 0,
        }
    }

    pub fn in_flight(&self) -> bool {
        matches!(self, Write::InFlight(_))
    }

    fn out(&self) -> Option<&Out> {
        match self {
            Write::Idle => None,
            Write::Ready(o) => Some(o),
            Write::InFlight(f) => f.out(),
        }
    }

    /// Bytes wait in the pipe, or a direct chunk is not all sent.
    pub fn queued(&self) -> bool {
        self.out().is_some_and(|o| o.queued())
    }

    /// Owned bytes not sent yet (the `Conn` counts them as sent), and when
    /// they were last seen to move (or their write began).
    pub fn owned(&self) -> Option<(usize, u32)> {
        self.out()
            .filter(|o| o.owned && o.fstart < o.fend)
            .map(|o| (o.fend - o.fstart, o.moved))
    }

    /// The peer has acknowledged `acked` bytes of the connection in all:
    /// if more than at the last look (not the first one), owned bytes in
    /// flight moved (a Send with MSG_WAITALL tells nothing until it is
    /// done), at `at`.
    pub fn progress(&mut self, acked: u64, at: u32) {
        if let Write::InFlight(f) = self {
            f.progress(acked, at);
        }
    }

    /// Leading bytes still to be sent before the direct chunk.
    pub fn ahead(&self) -> usize {
        self.out().map_or(0, |o| o.ahead)
    }

    /// The pipe may hold bytes that will never be sent: it is not reused.
    pub fn dirty(&mut self) {
        match self {
            Write::Idle => {}
            Write::Ready(o) => o.pipe_dirty = true,
            Write::InFlight(f) => f.dirty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::uring::ring::POLL_OUT;

    /// A flight as `submit` leaves it, without a ring.
    fn flight(ops: u16) -> Flight {
        let mut out = Box::<Out>::default();
        out.ops = ops;
        Flight { out: Some(out) }
    }

    #[test]
    fn the_state_comes_back_only_with_the_last_ops_final_completion() {
        let f = flight(bit(READ) | bit(SEND_BUF));
        let Write::InFlight(f) = f.complete(READ) else {
            panic!("the Send still reads the buffer: the state must stay in flight");
        };
        assert_eq!(f.ops(), bit(SEND_BUF));
        assert!(matches!(f.complete(SEND_BUF), Write::Ready(_)));
        let w = flight(bit(POLL_OUT)).complete(POLL_OUT);
        assert!(matches!(w, Write::Ready(_)) && w.ops() == 0 && !w.in_flight());
    }

    /// A Send of `len` owned bytes in flight, last moved at `moved`.
    fn owned_flight(len: usize, moved: u32) -> Write {
        let mut f = flight(bit(SEND_BUF));
        if let Some(o) = f.out.as_mut() {
            o.fend = len;
            o.owned = true;
            o.moved = moved;
        }
        Write::InFlight(f)
    }

    #[test]
    fn owned_bytes_are_not_counted_again_when_they_reach_the_socket() {
        let w = owned_flight(300, 7);
        assert_eq!(w.owned(), Some((300, 7)));
        let Write::InFlight(mut f) = w else {
            unreachable!()
        };
        assert_eq!(
            f.account(SEND_BUF, 100),
            Ok(0),
            "the Conn was told when they were copied"
        );
        let w = Write::InFlight(f);
        assert_eq!(w.owned(), Some((200, 7)), "the rest is still the engine's");
        let Write::InFlight(mut f) = w else {
            unreachable!()
        };
        assert_eq!(f.account(SEND_BUF, 200), Ok(0));
        assert_eq!(f.complete(SEND_BUF).owned(), None, "all in the socket");
    }

    #[test]
    fn owned_bytes_move_when_the_peer_acknowledges_more() {
        let mut w = owned_flight(300, 7);
        w.progress(1000, 8);
        assert_eq!(w.owned(), Some((300, 7)), "the first look is the baseline");
        w.progress(1000, 9);
        assert_eq!(w.owned(), Some((300, 7)), "nothing acknowledged since");
        w.progress(1500, 10);
        assert_eq!(w.owned(), Some((300, 10)));
        let Write::InFlight(f) = w else {
            unreachable!()
        };
        assert_eq!(f.complete(SEND_BUF).owned(), Some((300, 10)));
    }

    #[test]
    fn completions_count_what_moved_in_order() {
        let mut f = flight(bit(READ) | bit(SEND_BUF));
        if let Some(o) = f.out.as_mut() {
            o.fend = 100; // leading bytes copied in
            o.ahead = 0;
        }
        assert_eq!(f.account(READ, 400), Ok(0));
        assert_eq!(f.account(SEND_BUF, 300), Ok(300));
        assert_eq!(f.account(SEND_BUF, 201), Err(200), "more than was given");
        assert_eq!(f.account(SEND_BUF, 200), Ok(200));
        let o = f.out().unwrap();
        assert_eq!((o.fstart, o.fend), (0, 0), "all sent: the buffer is empty");
        let mut f = flight(bit(SEND_BYTES) | bit(SPLICE_IN));
        f.out.as_mut().unwrap().ahead = 50;
        assert_eq!(f.account(SEND_BYTES, 30), Ok(30));
        assert_eq!(f.account(SPLICE_IN, 4096), Ok(0));
        let w = Write::InFlight(f);
        assert_eq!(w.ahead(), 20);
        assert!(w.queued(), "the pipe holds the file's bytes");
    }
}
