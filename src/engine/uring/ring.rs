//! The ring and what is queued on it: the `user_data` encoding, the
//! operation kinds, and `Io`, which queues entries (and linked chains) in
//! order, holding back what does not fit in the submission queue.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, squeue, types};

// Per-connection operation kinds (bit positions in `UConn::pending`). What
// a write op reads from or writes into is owned by the op while it is in
// flight: the `Out` its `Flight` holds (see out.rs).
pub const RECV: u8 = 0;
/// Send straight from byte segments whose clones the op's `Out` holds: a
/// Send for one, a SendMsg for several.
pub const SEND_BYTES: u8 = 1;
/// Send from the pooled read buffer of the op's `Out` (the leading bytes
/// copied, then the file bytes a linked Read put there).
pub const SEND_BUF: u8 = 2;
pub const READ: u8 = 3;
/// Splice file -> pipe. The pipe -> socket half is a direct `splice(2)`
/// (see send.rs).
pub const SPLICE_IN: u8 = 4;
/// Wait for room in the socket before sending what is queued (the rest of
/// a pipe, or of a direct `sendfile` chunk).
pub const POLL_OUT: u8 = 5;
// Worker-level kinds.
pub const ACCEPT: u8 = 8;
pub const WAKE: u8 = 9;
pub const CANCEL: u8 = 10;
pub const CLOSE: u8 = 11;

/// Generations wrap at 16 bits (`UConn::generation`); `user_data` has
/// room for 24.
pub const GEN_MASK: u32 = 0xffff;

/// `user_data` = kind (8 bits) | connection generation (24 bits) | slot or
/// listener index (32 bits).
pub fn ud(kind: u8, idx: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (((generation & GEN_MASK) as u64) << 32) | (idx as u64 & 0xffff_ffff)
}

/// The parts of a `user_data`: (kind, index, generation).
pub fn parse_ud(u: u64) -> (u8, usize, u32) {
    (
        (u >> 56) as u8,
        (u & 0xffff_ffff) as usize,
        ((u >> 32) as u32) & GEN_MASK,
    )
}

/// A connection's socket and the slot and generation its ops' `user_data`
/// name.
#[derive(Debug, Clone, Copy)]
pub struct Sock {
    pub fd: RawFd,
    pub slot: usize,
    pub generation: u32,
    /// The socket is also the ring's fixed file `slot` (`Io::fix`).
    pub fixed: bool,
}

impl Sock {
    pub fn ud(&self, kind: u8) -> u64 {
        ud(kind, self.slot, self.generation)
    }
}

pub const fn bit(kind: u8) -> u16 {
    1 << kind
}

/// A multishot receive into buffers of group `bgid` that, with `limit`,
/// receives at most that many bytes and then ends by itself (the SQE's
/// `len` and `optlen` fields, which the kernel reads as the per-receive and
/// the total byte limit since Linux 6.17; older kernels refuse them with
/// EINVAL). The io-uring crate has no setter for `optlen` yet.
pub fn recv_multi(fd: RawFd, bgid: u16, limit: Option<u32>) -> squeue::Entry {
    let Some(limit) = limit else {
        return opcode::RecvMulti::new(types::Fd(fd), bgid).build();
    };
    // `len` caps each receive (else the last one may fill a whole buffer
    // past the limit), `optlen` the total.
    let e = opcode::RecvMulti::new(types::Fd(fd), bgid)
        .len(limit)
        .build();
    /// Offset of `optlen` (a union with `file_index` and `splice_fd_in`)
    /// in `struct io_uring_sqe`.
    const OPTLEN_AT: usize = 44;
    // SAFETY: squeue::Entry is a #[repr(C)] wrapper around the kernel's
    // 64-byte `io_uring_sqe`, made only of integers and unions of integers,
    // so its bytes can be read as an array and any bytes are a valid value
    // (transmute checks the sizes match).
    let mut raw: [u8; 64] = unsafe { std::mem::transmute::<squeue::Entry, [u8; 64]>(e) };
    raw[OPTLEN_AT..OPTLEN_AT + 4].copy_from_slice(&limit.to_ne_bytes());
    // SAFETY: as above; only the u32 at `optlen` changed.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

pub fn errno_str(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

/// The ring plus everything queued on it.
pub struct Io {
    pub ring: IoUring,
    /// Operations queued and not yet finally completed.
    pub inflight: usize,
    /// Chains that did not fit in the SQ; pushed (in order) at the next turn.
    pub backlog: VecDeque<Vec<squeue::Entry>>,
    /// Slots of the sparse fixed-file table (0: none registered).
    fixed: u32,
}

/// Most fixed-file slots a worker registers (8 bytes of kernel memory
/// each); connections in slots past them use their plain fd.
const FIXED_MAX: usize = 65536;

impl Io {
    pub fn new(ring: IoUring) -> Io {
        Io {
            ring,
            inflight: 0,
            backlog: VecDeque::new(),
            fixed: 0,
        }
    }

    /// Register an empty (sparse) fixed-file table of one slot per
    /// connection, so the per-request ops (Send, SendMsg) name the socket
    /// by slot: the kernel then takes no file reference per op (an fget and
    /// fput on every send otherwise). Without it (an old kernel, or a
    /// refusal) every op uses the plain fd.
    ///
    /// At most RLIMIT_NOFILE slots (the kernel refuses a larger table with
    /// EMFILE, as with an explicit max_connections over the limit): that
    /// loses none, as connections take the lowest free slot and each holds
    /// a descriptor, so no slot past the limit is ever in use.
    pub fn fix_files(&mut self, slots: usize) {
        let nofile = crate::engine::nofile::nofile_limit().unwrap_or(u64::MAX);
        let n = slots
            .min(FIXED_MAX)
            .min(usize::try_from(nofile).unwrap_or(usize::MAX)) as u32;
        match self.ring.submitter().register_files_sparse(n) {
            Ok(()) => {
                self.fixed = n;
                crate::debug!("io_uring fixed files: {n} slots");
            }
            Err(e) => crate::debug!("io_uring fixed files: {e}; sockets go by fd"),
        }
    }

    /// Make `fd` fixed file `slot`. True if it is: its ops may then name
    /// `types::Fixed(slot)`, until `unfix(slot)`.
    pub fn fix(&mut self, slot: usize, fd: RawFd) -> bool {
        slot < self.fixed as usize
            && matches!(
                self.ring
                    .submitter()
                    .register_files_update(slot as u32, &[fd]),
                Ok(1)
            )
    }

    /// Empty fixed-file `slot` (its connection is being closed and nothing
    /// of it is in flight): the table's reference to the socket goes, so
    /// closing the fd closes the socket. Done at once (a syscall, not an
    /// SQE), so it cannot land after the next connection's `fix` of the slot.
    pub fn unfix(&mut self, slot: usize) {
        if let Err(e) = self
            .ring
            .submitter()
            .register_files_update(slot as u32, &[-1])
        {
            crate::warn!("io_uring: emptying fixed file {slot}: {e}");
        }
    }

    /// Queue one entry or a linked chain (kept contiguous in the SQ).
    ///
    /// # Safety
    ///
    /// Every buffer and fd the entries name must stay valid (not freed, moved,
    /// reused or closed) until the final completion of each entry is reaped.
    pub unsafe fn push(&mut self, chain: &[squeue::Entry]) {
        self.inflight += chain.len();
        // SAFETY: forwarded from this function's contract.
        if self.backlog.is_empty() && unsafe { self.try_push(chain) } {
            return;
        }
        self.backlog.push_back(chain.to_vec());
    }

    /// Queue an entry that names no memory of ours (accept, poll, cancel,
    /// close, a receive into the registered buffer ring).
    pub fn push_plain(&mut self, e: squeue::Entry) {
        // SAFETY: the entry points at no user memory; any fd it names is kept
        // open by the caller until its completion (listeners are never closed
        // here, sockets only after their last op, the wake fd outlives us).
        unsafe { self.push(std::slice::from_ref(&e)) }
    }

    /// # Safety
    ///
    /// As for `push`.
    unsafe fn try_push(&mut self, chain: &[squeue::Entry]) -> bool {
        for attempt in 0..2 {
            {
                let mut sq = self.ring.submission();
                if sq.capacity() - sq.len() >= chain.len() {
                    // SAFETY: forwarded from this function's contract.
                    return unsafe { sq.push_multiple(chain) }.is_ok();
                }
            }
            // Full: hand what is queued to the kernel and try once more.
            if attempt == 0 && self.ring.submit().is_err() {
                return false;
            }
        }
        false
    }

    pub fn flush_backlog(&mut self) {
        while let Some(chain) = self.backlog.pop_front() {
            // SAFETY: these entries came through `push`, whose callers
            // guarantee their buffers and fds.
            if !unsafe { self.try_push(&chain) } {
                self.backlog.push_front(chain);
                break;
            }
        }
    }
}
