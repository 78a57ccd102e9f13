//! Ring construction (with graceful flag fallback) and the startup probe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, types};

use super::bufring::BufRing;

/// Build a ring with SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN + SUBMIT_ALL,
/// dropping flags the kernel refuses (EINVAL) one step at a time.
pub fn build_ring(sq: u32, cq: u32) -> io::Result<IoUring> {
    // (single_issuer, defer_taskrun, coop_taskrun, submit_all)
    const STEPS: [(bool, bool, bool, bool); 5] = [
        (true, true, true, true),
        (true, false, true, true),
        (false, false, true, true),
        (false, false, false, true),
        (false, false, false, false),
    ];
    let mut last = None;
    for (single, defer, coop, all) in STEPS {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        if single {
            b.setup_single_issuer();
        }
        if defer {
            b.setup_defer_taskrun();
        }
        if coop {
            b.setup_coop_taskrun();
        }
        if all {
            b.setup_submit_all();
        }
        match b.build(sq) {
            Ok(r) => return Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// "Operation not permitted" rather than "Operation not permitted (os error 1)".
fn bare(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn setup_error(e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (kernel.io_uring_disabled or seccomp)",
        Some(libc::ENOSYS) => " (kernel built without io_uring, or seccomp)",
        Some(libc::ENOMEM) => " (RLIMIT_MEMLOCK too low?)",
        _ => "",
    };
    format!("io_uring_setup: {}{hint}", bare(e))
}

/// Can this machine run the io_uring engine? `Err` says what is missing.
pub fn probe() -> Result<(), String> {
    if let Ok(v) = std::env::var("TANDEM_IO_URING_PROBE_FAIL")
        && !v.is_empty()
    {
        return Err(format!("forced by TANDEM_IO_URING_PROBE_FAIL: {v}"));
    }
    let mut ring = build_ring(8, 32).map_err(|e| setup_error(&e))?;
    let p = ring.params();
    if !p.is_feature_ext_arg() {
        return Err("kernel lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)".into());
    }
    if !p.is_feature_nodrop() {
        return Err("kernel lacks IORING_FEAT_NODROP (needs Linux 5.5+)".into());
    }
    let mut pr = Probe::new();
    ring.submitter()
        .register_probe(&mut pr)
        .map_err(|e| format!("io_uring_register(PROBE): {}", bare(&e)))?;
    let ops = [
        ("ACCEPT", opcode::AcceptMulti::CODE),
        ("RECV", opcode::RecvMulti::CODE),
        ("SEND", opcode::Send::CODE),
        ("SPLICE", opcode::Splice::CODE),
        ("READ", opcode::Read::CODE),
        ("POLL_ADD", opcode::PollAdd::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
        ("CLOSE", opcode::Close::CODE),
    ];
    let missing: Vec<&str> = ops
        .iter()
        .filter(|(_, code)| !pr.is_supported(*code))
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "kernel io_uring lacks opcode(s) {}",
            missing.join(", ")
        ));
    }
    multishot_recv_works(&mut ring)
}

/// Register a buffer ring and run one multishot receive on a socketpair: this
/// proves provided buffer rings (5.19) and multishot receive (6.0; multishot
/// accept is older, 5.19).
fn multishot_recv_works(ring: &mut IoUring) -> Result<(), String> {
    let mut bufs = BufRing::new(4, 64).map_err(|e| format!("buffer ring memory: {}", bare(&e)))?;
    // SAFETY: the ring memory stays mapped until after it is unregistered
    // below (or leaked if a receive might still be in flight).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), 0, 0)
    }
    .map_err(|e| {
        format!(
            "io_uring_register(PBUF_RING): {} (needs Linux 5.19+)",
            bare(&e)
        )
    })?;
    let r = recv_once(ring);
    if r.is_err() {
        // A receive may still be armed: keep its buffers mapped.
        bufs.leak();
    }
    let _ = ring.submitter().unregister_buf_ring(0);
    r
}

fn recv_once(ring: &mut IoUring) -> Result<(), String> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fds into the live 2-element array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(format!("socketpair: {}", bare(&io::Error::last_os_error())));
    }
    // SAFETY: socketpair returned two new fds owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let sqe = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), 0)
        .build()
        .user_data(1);
    // SAFETY: the receive writes only into buffers of the registered buffer
    // ring, which outlives it (see multishot_recv_works).
    unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_string())?;
    // SAFETY: writes one byte from a live array to our own socket.
    unsafe { libc::write(b.as_raw_fd(), b"x".as_ptr() as *const libc::c_void, 1) };
    let done = (|| {
        let first = wait_one(ring)?;
        // EOF ends the multishot receive: afterwards nothing is in flight.
        drop(b);
        let mut last = first;
        while cqueue::more(last.1) {
            last = wait_one(ring)?;
        }
        Ok(first)
    })();
    let first = match done {
        Ok(f) => f,
        Err(e) => {
            // The receive may still be armed: never close its socket under it
            // (dropping the ring cancels it).
            std::mem::forget(a);
            return Err(e);
        }
    };
    if first.0 == 1 && cqueue::more(first.1) && cqueue::buffer_select(first.1).is_some() {
        Ok(())
    } else if first.0 == -libc::EINVAL {
        Err("multishot receive not supported (needs Linux 6.0+)".into())
    } else {
        Err(format!(
            "multishot receive test failed (result {}, flags {:#x})",
            first.0, first.1
        ))
    }
}

fn wait_one(ring: &mut IoUring) -> Result<(i32, u32), String> {
    for _ in 0..2 {
        if let Some(e) = ring.completion().next() {
            return Ok((e.result(), e.flags()));
        }
        let ts = types::Timespec::from(Duration::from_millis(500));
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {}
            Err(e) => return Err(format!("io_uring_enter: {}", bare(&e))),
        }
    }
    Err("multishot receive test: no completion within 1s".into())
}
