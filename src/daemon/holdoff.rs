//! Holding off new connections on a listener that is about to stop (a
//! graceful stop, or an address a reload drops), without privilege.
//!
//! A socket filter on the listener drops every new SYN, so no new handshake
//! starts: clients retry their SYN and are refused once the socket is shut,
//! before any handshake completes. Everything else passes: handshakes
//! already under way complete into the accept queue, which the stopping
//! workers empty before the socket is shut, so nobody is left in it to be
//! reset.
//!
//! Attaching a classic BPF filter (`SO_ATTACH_FILTER`) is refused without
//! CAP_NET_ADMIN on some kernels (this project's CI host among them), so a
//! server that dropped to `user` could not do it at stop time. Attaching an
//! eBPF program that is already loaded (`SO_ATTACH_BPF` with its fd) needs
//! no capability; loading one does (CAP_BPF, or root). So [`HoldOff`] loads
//! the program at start, before privileges are dropped, and keeps its fd;
//! the stop only attaches it. A server that cannot load it (started without
//! privilege, or without the bpf syscall) falls back to the classic filter,
//! which stock kernels let anyone attach.
//!
//! Other ways weighed: an `SO_REUSEPORT` group steered to a drop-all
//! sibling socket changes what a second bind of the port means (another
//! process of the same user would join the group instead of failing with
//! "address in use"); closing the listener and draining its queue leaves a
//! window between the last accept and the close in which a new connection
//! completes its handshake and is then reset; an eBPF filter attached at
//! start that reads a flag would run on every packet of every connection
//! (accepted sockets inherit their listener's filter).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::engine::Listener;
use crate::syscall;

/// The TCP header's flags byte, from the start of the TCP header (where a
/// socket filter's packet data begins on a TCP socket).
const TCP_FLAGS: u32 = 13;
const SYN: u32 = 0x02;
const ACK: u32 = 0x10;

/// The hold-off, prepared at start (see the module's header).
pub struct HoldOff {
    /// The loaded eBPF program, when it could be loaded.
    prog: Option<OwnedFd>,
}

impl HoldOff {
    /// Load the eBPF program now, while the process may (before the
    /// privilege drop). Failing is not an error: the stop then tries the
    /// classic filter, which is said in the debug log.
    pub fn prepare() -> HoldOff {
        match load_ebpf() {
            Ok(fd) => HoldOff { prog: Some(fd) },
            Err(e) => {
                crate::debug!(
                    "hold-off filter: cannot load eBPF ({e}); a stop attaches a classic one"
                );
                HoldOff { prog: None }
            }
        }
    }

    /// From now on the listener `fd` starts no new handshake (new SYNs are
    /// dropped); connections in its accept queue and handshakes under way
    /// are left alone.
    pub fn refuse_new(&self, fd: RawFd) -> io::Result<()> {
        if let Some(prog) = &self.prog {
            let pfd: u32 = prog.as_raw_fd() as u32;
            match crate::sys::setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_BPF, &pfd) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    crate::debug!("hold-off filter: SO_ATTACH_BPF: {e}; trying a classic one")
                }
            }
        }
        attach_classic(fd)
    }

    /// Let `listeners` go without resetting anyone: hold off their new
    /// connections, then `retire` (which returns once the workers that
    /// accept on them have stopped, taking what their queues held), then
    /// stop listening. The one way a listener goes: on a stop, and for
    /// the addresses a reload drops (`listen` and `metrics_listen` alike).
    pub fn let_go(&self, listeners: &[Arc<Listener>], retire: impl FnOnce()) {
        for l in listeners {
            if let Err(e) = self.refuse_new(l.raw()) {
                crate::warn!("{}: cannot hold off new connections: {e}", l.addr);
            }
        }
        retire();
        for l in listeners {
            super::listen::stop_listening(l);
        }
    }
}

const SO_ATTACH_BPF: i32 = 50;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program: pass everything but a SYN without ACK (a new handshake).
/// A socket filter returns how many bytes of the packet to keep: 0 drops
/// it, u32::MAX keeps it whole (however large a GRO packet is).
const PROGRAM: [Insn; 8] = [
    insn(0xbf, 6, 1, 0, 0),                  // r6 = r1 (the skb, for ld_abs)
    insn(0x30, 0, 0, 0, TCP_FLAGS as i32),   // r0 = skb->data[13] (ld_abs, byte)
    insn(0x57, 0, 0, 0, (SYN | ACK) as i32), // r0 &= SYN|ACK
    insn(0x15, 0, 0, 2, SYN as i32),         // if r0 == SYN goto drop
    insn(0xb4, 0, 0, 0, -1),                 // w0 = u32::MAX (keep)
    insn(0x95, 0, 0, 0, 0),                  // exit
    insn(0xb4, 0, 0, 0, 0),                  // drop: w0 = 0
    insn(0x95, 0, 0, 0, 0),                  // exit
];

/// The head of `union bpf_attr` as BPF_PROG_LOAD reads it (the kernel
/// takes a shorter attr as zero beyond its size).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

fn load_ebpf() -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"tandem_holdoff");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: PROGRAM.len() as u32,
        insns: PROGRAM.as_ptr() as u64,
        // Uses no helper, so no license requirement applies.
        license: c"MIT".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` (size given) and, through it,
    // PROGRAM and the license string, all alive for the call; it returns a
    // new close-on-exec fd or -1.
    let fd = syscall!(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The same filter in classic BPF, copied by the kernel at attach time.
fn attach_classic(fd: RawFd) -> io::Result<()> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let prog = [
        op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, TCP_FLAGS),
        op(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, SYN | ACK),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 1, 0, SYN),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program (`prog`, alive here) during the call.
    crate::sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// Whether a non-blocking connect to `addr` completes its handshake
    /// within `wait` (false: no SYN-ACK came, the SYN was dropped).
    fn handshake_completes(addr: std::net::SocketAddr, wait: Duration) -> bool {
        let s = socket2_connect(addr);
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: pfd is a live pollfd array of length 1.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        n == 1 && pfd.revents & libc::POLLOUT != 0
    }

    /// A socket with a non-blocking connect to `addr` under way.
    fn socket2_connect(addr: std::net::SocketAddr) -> OwnedFd {
        let std::net::SocketAddr::V4(a) = addr else {
            panic!("IPv4 only here")
        };
        // SAFETY: socket takes no pointers and returns a new fd or -1.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: fd is new and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sin is a valid sockaddr_in that outlives the call.
        let r = unsafe {
            libc::connect(
                fd,
                &sin as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        let e = io::Error::last_os_error();
        assert!(
            r == 0 || e.raw_os_error() == Some(libc::EINPROGRESS),
            "connect: {e}"
        );
        owned
    }

    /// With the hold-off on, a new client gets no SYN-ACK, while a client
    /// already in the accept queue is accepted and served as if nothing
    /// happened; `hold` is the eBPF hold-off or the classic fallback.
    fn holds_off_new_and_keeps_queued(hold: &HoldOff) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut queued = TcpStream::connect(addr).unwrap();
        queued.write_all(b"ping").unwrap();
        assert!(
            handshake_completes(addr, Duration::from_secs(1)),
            "before the hold-off"
        );
        hold.refuse_new(l.as_raw_fd()).unwrap();
        assert!(
            !handshake_completes(addr, Duration::from_millis(300)),
            "a handshake completed after the hold-off"
        );
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        s.write_all(b"pong").unwrap();
        queued.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"pong", "the queued client after the hold-off");
    }

    #[test]
    fn ebpf_hold_off_drops_new_handshakes_only() {
        let hold = HoldOff::prepare();
        if hold.prog.is_none() {
            eprintln!("SKIP: cannot load eBPF here (not root?)");
            return;
        }
        holds_off_new_and_keeps_queued(&hold);
    }

    #[test]
    fn classic_hold_off_drops_new_handshakes_only() {
        let hold = HoldOff { prog: None };
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Err(e) = hold.refuse_new(probe.as_raw_fd()) {
            eprintln!("SKIP: SO_ATTACH_FILTER refused here: {e}");
            return;
        }
        holds_off_new_and_keeps_queued(&hold);
    }
}
