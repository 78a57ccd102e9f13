//! sd_notify(3): tell systemd about readiness, reloads and stopping.

use std::os::unix::net::UnixDatagram;

/// Send `msg` to $NOTIFY_SOCKET, if set. Errors are logged, never fatal.
pub fn notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let res = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        crate::warn!("sd_notify: {e}");
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants with RELOADING=1.
pub fn monotonic_usec() -> std::io::Result<u64> {
    // SAFETY: timespec is plain data; clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is a live timespec.
    crate::syscall!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) })?;
    Ok(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000)
}
