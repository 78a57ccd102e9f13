//! Ring construction (with graceful flag fallback) and the startup probe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, types};

use super::bufring::BufRing;
use crate::engine::ProbeError;
use crate::syscall;

/// Build a ring with SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN + SUBMIT_ALL,
/// dropping flags the kernel refuses (EINVAL) one step at a time. The bool
/// says whether DEFER_TASKRUN took: then the kernel completes this ring's
/// operations (a receive copying into a provided buffer) only inside this
/// thread's `io_uring_enter`, never while the worker runs its own code.
pub fn build_ring(sq: u32, cq: u32) -> io::Result<(IoUring, bool)> {
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
            Ok(r) => return Ok((r, defer)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Can this machine run the io_uring engine? `Err` says what is missing.
pub fn probe() -> Result<(), ProbeError> {
    if let Ok(v) = std::env::var("TANDEM_IO_URING_PROBE_FAIL")
        && !v.is_empty()
    {
        return Err(ProbeError::Forced(v));
    }
    let (mut ring, _) = build_ring(8, 32).map_err(ProbeError::Setup)?;
    let p = ring.params();
    if !p.is_feature_ext_arg() {
        return Err(ProbeError::MissingFeature {
            feature: "IORING_FEAT_EXT_ARG",
            since: "5.11",
        });
    }
    if !p.is_feature_nodrop() {
        return Err(ProbeError::MissingFeature {
            feature: "IORING_FEAT_NODROP",
            since: "5.5",
        });
    }
    let mut pr = Probe::new();
    ring.submitter()
        .register_probe(&mut pr)
        .map_err(ProbeError::RegisterProbe)?;
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
    let missing: Vec<&'static str> = ops
        .iter()
        .filter(|(_, code)| !pr.is_supported(*code))
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(ProbeError::MissingOpcodes(missing));
    }
    multishot_recv_works(&mut ring)
}

/// Register a buffer ring and run one multishot receive on a socketpair: this
/// proves provided buffer rings (5.19) and multishot receive (6.0; multishot
/// accept is older, 5.19).
fn multishot_recv_works(ring: &mut IoUring) -> Result<(), ProbeError> {
    let mut bufs = BufRing::new(4, 64).map_err(ProbeError::BufRingMemory)?;
    // SAFETY: the ring memory stays mapped until after it is unregistered
    // below (or leaked if a receive might still be in flight).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), 0, 0)
    }
    .map_err(ProbeError::RegisterBufRing)?;
    let r = recv_once(ring);
    if r.is_err() {
        // A receive may still be armed: keep its buffers mapped.
        bufs.leak();
    }
    if let Err(e) = ring.submitter().unregister_buf_ring(0) {
        // Harmless for the verdict: the probe's ring is dropped right after,
        // which releases the registration with it.
        crate::debug!("io_uring probe: unregister buffer ring: {e}");
    }
    r
}

fn recv_once(ring: &mut IoUring) -> Result<(), ProbeError> {
    let test_socket = |call| move |source| ProbeError::TestSocket { call, source };
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fds into the live 2-element array.
    syscall!(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })
    .map_err(test_socket("socketpair"))?;
    // SAFETY: socketpair returned two new fds owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The byte is written before the receive is queued: it waits in the
    // socket, and a failed write leaves nothing queued.
    // SAFETY: writes one byte from a live array to our own socket.
    syscall!(unsafe { libc::write(b.as_raw_fd(), b"x".as_ptr() as *const libc::c_void, 1) })
        .map_err(test_socket("write"))?;
    let sqe = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), 0)
        .build()
        .user_data(1);
    // SAFETY: the receive writes only into buffers of the registered buffer
    // ring, which outlives it (see multishot_recv_works).
    unsafe { ring.submission().push(&sqe) }.map_err(|_| ProbeError::SubmissionQueueFull)?;
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
        Err(ProbeError::MultishotUnsupported)
    } else {
        Err(ProbeError::MultishotFailed {
            result: first.0,
            flags: first.1,
        })
    }
}

fn wait_one(ring: &mut IoUring) -> Result<(i32, u32), ProbeError> {
    for _ in 0..2 {
        if let Some(e) = ring.completion().next() {
            return Ok((e.result(), e.flags()));
        }
        let ts = types::Timespec::from(Duration::from_millis(500));
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {}
            Err(e) => return Err(ProbeError::Enter(e)),
        }
    }
    Err(ProbeError::NoCompletion)
}
