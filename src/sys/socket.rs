//! Socket helpers: addresses and socket options, for the engines (accepted
//! sockets) and the daemon (listening sockets).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Convert a kernel sockaddr_storage to a SocketAddr.
pub fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which fits in it.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6, which fits in it.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

/// The peer address of a connected socket, even one the peer has already
/// reset: getpeername(2) says ENOTCONN once a TCP socket is closed, but the
/// SO_PEERNAME option still reads the address the socket was connected to.
/// (A multishot accept gives no addresses, so the io_uring engine asks here,
/// possibly after a client sent its request and reset at once.)
pub fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len are live and sized for any address family.
    let r = crate::syscall!(unsafe {
        libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len)
    });
    if r.is_ok() {
        return sockaddr_to_std(&ss);
    }
    // SO_PEERNAME wants a buffer no larger than the address itself, so ask
    // for the family first (getsockname works on a closed socket too).
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    crate::syscall!(unsafe {
        libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len)
    })
    .ok()?;
    let mut len = match ss.ss_family as i32 {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        _ => return None,
    } as libc::socklen_t;
    // SAFETY: as above; the kernel writes at most `len` bytes into ss.
    crate::syscall!(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERNAME,
            &mut ss as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })
    .ok()?;
    sockaddr_to_std(&ss)
}

/// TCP_NODELAY on an accepted socket: responses go out as soon as they are written.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &(1 as libc::c_int),
    )
}

/// setsockopt(2) with `value` as the option's bytes.
pub fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live T and its size; the kernel only
    // reads that many bytes (and checks any address inside them itself).
    crate::syscall!(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// The bytes of the connection on `fd` its peer has acknowledged
/// (`tcpi_bytes_acked`, Linux 4.2), at least 1; None if unknown.
pub fn bytes_acked(fd: RawFd) -> Option<u64> {
    // SAFETY: tcp_info is a plain C struct; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a live
    // local of that size, and `len` back.
    crate::syscall!(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    })
    .ok()?;
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + size_of::<u64>();
    // A kernel whose tcp_info ends before the field says nothing of it.
    (len as usize >= end).then(|| info.tcpi_bytes_acked.max(1))
}
