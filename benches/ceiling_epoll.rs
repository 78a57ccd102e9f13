//! Ceiling loop, epoll: the least work an edge-triggered epoll server can do
//! per keep-alive request on this machine. It answers every `\r\n\r\n` it sees
//! with one fixed, pre-built 1 KiB response (one `send` each) and parses
//! nothing else. Single-threaded; uses none of tandem's code.
//!
//!     ceiling_epoll 127.0.0.1:8080
//!
//! `benches/wrk.sh` builds it (`cargo build --release --benches`) and runs it
//! as the target `ceiling-epoll`. Without an address (as under `cargo bench`)
//! it prints this usage and exits.

mod ceiling;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

const LISTENER: u64 = u64::MAX;

struct Conn {
    stream: TcpStream,
    ends: ceiling::Ends,
    /// Responses owed and not yet fully written.
    owed: u64,
    /// Bytes of the current response already written.
    off: usize,
}

impl Conn {
    fn scan(&mut self, buf: &[u8]) {
        self.owed += self.ends.scan(buf);
    }

    /// Writes what is owed until done or the socket is full. Err: close.
    fn flush(&mut self, resp: &[u8]) -> io::Result<()> {
        while self.owed > 0 {
            match self.stream.write(&resp[self.off..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.off += n;
                    if self.off == resp.len() {
                        self.off = 0;
                        self.owed -= 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ep` and `fd` are open descriptors this program owns; `ev` is a
    // valid epoll_event the kernel only reads during the call.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let Some(addr) = ceiling::address("ceiling_epoll") else {
        return Ok(());
    };
    let resp = ceiling::response();

    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    // SAFETY: plain syscall with no pointer arguments.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    let et = libc::EPOLLET as u32;
    epoll_add(
        ep,
        listener.as_raw_fd(),
        libc::EPOLLIN as u32 | et,
        LISTENER,
    )?;
    eprintln!("ceiling_epoll listening on {addr}");

    // Connections indexed by their fd, which is also their epoll token.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: `events` is a live buffer of `events.len()` epoll_event
        // entries, which the kernel fills and we read back only up to `n`.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true)?;
                            stream.set_nodelay(true)?;
                            let fd = stream.as_raw_fd();
                            let flags = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
                            epoll_add(ep, fd, flags | et, fd as u64)?;
                            let i = fd as usize;
                            if conns.len() <= i {
                                conns.resize_with(i + 1, || None);
                            }
                            conns[i] = Some(Conn {
                                stream,
                                ends: ceiling::Ends::default(),
                                owed: 0,
                                off: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // Out of descriptors or an aborted handshake: try
                        // again on the next event rather than spin.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let slot = &mut conns[token as usize];
            let Some(c) = slot.as_mut() else { continue };
            let mut close = false;
            // Edge-triggered: read until the socket is empty.
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        close = true;
                        break;
                    }
                    Ok(k) => c.scan(&buf[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            if close || c.flush(&resp).is_err() {
                // Dropping the stream closes the fd, which also removes it
                // from the epoll set.
                *slot = None;
            }
        }
    }
}
