//! Ceiling loop, io_uring: the least work an io_uring server can do per
//! keep-alive request on this machine, with the same kernel features tandem's
//! engine uses (multishot accept, multishot receive into a provided-buffer
//! ring, a single-issuer ring with deferred task work). It answers every
//! `\r\n\r\n` it sees with one fixed, pre-built 1 KiB response (one Send each)
//! and parses nothing else. Single-threaded; uses none of tandem's code.
//!
//!     ceiling_uring 127.0.0.1:8080
//!
//! `benches/wrk.sh` builds it (`cargo build --release --benches`) and runs it
//! as the target `ceiling-io_uring`. Without an address (as under
//! `cargo bench`) it prints this usage and exits.

mod ceiling;

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

const BGID: u16 = 0;
const BUFS: u16 = 1024; // a power of two
const BUF_SIZE: usize = 2048;

// user_data: slot index << 2 | op
const ACCEPT: u64 = u64::MAX;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;

/// The provided-buffer ring: BUFS entries the kernel picks receive buffers
/// from, and the buffers themselves.
struct BufRing {
    ring: *mut types::BufRingEntry,
    bufs: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let len = usize::from(BUFS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, no address hint; the result
        // is checked before use. It is page-aligned, as the kernel requires.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = BufRing {
            ring: p.cast(),
            bufs: vec![0; usize::from(BUFS) * BUF_SIZE],
            tail: 0,
        };
        for bid in 0..BUFS {
            r.put(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Hands buffer `bid` back to the kernel (visible after `publish`).
    fn put(&mut self, bid: u16) {
        let i = usize::from(self.tail & (BUFS - 1));
        // SAFETY: `i < BUFS`, so the entry is inside the mapping made in
        // `new`, which lives as long as the program. The kernel only reads
        // entries between its head and our published tail, and this one is
        // past the published tail.
        let e = unsafe { &mut *self.ring.add(i) };
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * BUF_SIZE as u64;
        e.set_addr(addr);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: `ring` is the page-aligned base of the mapping, so the tail
        // field overlays the first entry's reserved field, which we never
        // write otherwise. The kernel reads it concurrently, so it is written
        // with a release store through an atomic of the same size and
        // alignment.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * BUF_SIZE;
        &self.bufs[start..start + len]
    }
}

struct Conn {
    fd: OwnedFd,
    ends: ceiling::Ends,
    owed: u64,
    off: usize,
    recv_armed: bool,
    sending: bool,
}

impl Conn {
    fn scan(&mut self, buf: &[u8]) {
        self.owed += self.ends.scan(buf);
    }
}

struct Loop {
    ring: IoUring,
    resp: &'static [u8],
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
}

impl Loop {
    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every SQE pushed here refers to a descriptor that stays
            // open until its completion arrives (a slot is closed only with no
            // operation in flight) and to memory that outlives the ring (the
            // leaked response, the buffer ring).
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_recv(&mut self, i: usize, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data((i as u64) << 2 | OP_RECV);
        self.push(sqe)
    }

    fn send(&mut self, i: usize) -> io::Result<()> {
        let c = self.conns[i].as_mut().expect("live slot");
        if c.sending || c.owed == 0 {
            return Ok(());
        }
        c.sending = true;
        let rest = &self.resp[c.off..];
        let sqe = opcode::Send::new(
            types::Fd(c.fd.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .build()
        .user_data((i as u64) << 2 | OP_SEND);
        self.push(sqe)
    }

    /// Closes slot `i` once nothing is in flight on it; until then a
    /// shutdown makes the armed receive finish.
    fn close(&mut self, i: usize) {
        let c = self.conns[i].as_ref().expect("live slot");
        if c.recv_armed || c.sending {
            // SAFETY: plain syscall on a descriptor this slot owns.
            unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR) };
            return;
        }
        self.conns[i] = None; // drops (closes) the fd
        self.free.push(i);
    }

    fn accepted(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a successful accept completion's result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live c_int and the length matches it.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let raw = fd.as_raw_fd();
        let conn = Conn {
            fd,
            ends: ceiling::Ends::default(),
            owed: 0,
            off: 0,
            recv_armed: true,
            sending: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.conns[i] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.arm_recv(i, raw)
    }
}

fn main() -> io::Result<()> {
    let Some(addr) = ceiling::address("ceiling_uring") else {
        return Ok(());
    };
    let resp = ceiling::response();
    let resp: &'static [u8] = resp.leak();

    let listener = TcpListener::bind(&addr)?;
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(8192)
        .build(1024)
        .or_else(|_| IoUring::new(1024))?;
    let mut bufs = BufRing::new()?;
    // SAFETY: the ring memory is a live mapping of BUFS entries that is never
    // unmapped while the ring exists (the program ends with both).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring as u64, BUFS, BGID, 0)?;
    }
    let mut lp = Loop {
        ring,
        resp,
        conns: Vec::new(),
        free: Vec::new(),
    };
    let lfd = listener.as_raw_fd();
    let accept = || {
        opcode::AcceptMulti::new(types::Fd(lfd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT)
    };
    lp.push(accept())?;
    eprintln!("ceiling_uring listening on {addr}");

    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(8192);
    loop {
        match lp.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        cqes.clear();
        cqes.extend(
            lp.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut recycled = false;
        for &(ud, res, flags) in &cqes {
            if ud == ACCEPT {
                if res >= 0 {
                    lp.accepted(res)?;
                }
                if !cqueue::more(flags) {
                    lp.push(accept())?;
                }
                continue;
            }
            let i = (ud >> 2) as usize;
            match ud & 3 {
                OP_RECV => {
                    let more = cqueue::more(flags);
                    if res > 0 {
                        let bid = cqueue::buffer_select(flags).expect("provided buffer");
                        let c = lp.conns[i].as_mut().expect("live slot");
                        c.scan(bufs.buf(bid, res as usize));
                        bufs.put(bid);
                        recycled = true;
                        lp.send(i)?;
                        if !more {
                            let fd = lp.conns[i].as_ref().expect("live slot").fd.as_raw_fd();
                            lp.arm_recv(i, fd)?;
                        }
                    } else if res == -libc::ENOBUFS && !more {
                        // Out of buffers for a moment: they come back as this
                        // batch is processed.
                        let fd = lp.conns[i].as_ref().expect("live slot").fd.as_raw_fd();
                        lp.arm_recv(i, fd)?;
                    } else if !more {
                        // EOF or an error: the multishot receive is over.
                        lp.conns[i].as_mut().expect("live slot").recv_armed = false;
                        lp.close(i);
                    }
                }
                OP_SEND => {
                    let c = lp.conns[i].as_mut().expect("live slot");
                    c.sending = false;
                    if res <= 0 {
                        lp.close(i);
                        continue;
                    }
                    c.off += res as usize;
                    if c.off == lp.resp.len() {
                        c.off = 0;
                        c.owed -= 1;
                    }
                    if c.recv_armed {
                        lp.send(i)?;
                    } else {
                        lp.close(i);
                    }
                }
                _ => unreachable!("unknown op in user_data {ud:#x}"),
            }
        }
        if recycled {
            bufs.publish();
        }
    }
}
