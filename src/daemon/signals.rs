//! Signal flags and the wake-up pipe the main thread sleeps on.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub(super) struct Signals {
    pub(super) hup: Arc<AtomicBool>,
    pub(super) term: Arc<AtomicBool>,
    pub(super) usr1: Arc<AtomicBool>,
    pub(super) wake: UnixStream,
}

/// The signal flags, and a writer of the same wake-up pipe for the workers.
pub(super) fn install_signals() -> io::Result<(Signals, UnixStream)> {
    use signal_hook::consts::*;
    let (rd, wr) = UnixStream::pair()?;
    rd.set_nonblocking(true)?;
    wr.set_nonblocking(true)?;
    let s = Signals {
        hup: Arc::new(AtomicBool::new(false)),
        term: Arc::new(AtomicBool::new(false)),
        usr1: Arc::new(AtomicBool::new(false)),
        wake: rd,
    };
    signal_hook::flag::register(SIGHUP, s.hup.clone())?;
    signal_hook::flag::register(SIGTERM, s.term.clone())?;
    signal_hook::flag::register(SIGINT, s.term.clone())?;
    // SIGQUIT is a graceful stop too (as nginx's is), never a core dump.
    signal_hook::flag::register(SIGQUIT, s.term.clone())?;
    signal_hook::flag::register(SIGUSR1, s.usr1.clone())?;
    for sig in [SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1] {
        signal_hook::low_level::pipe::register(sig, wr.try_clone()?)?;
    }
    // We use MSG_NOSIGNAL everywhere; this also covers sendfile/splice.
    // (signal reports failure as SIG_ERR, not -1: no `syscall!`.)
    // SAFETY: setting SIGPIPE to ignored has no memory-safety preconditions.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok((s, wr))
}

impl Signals {
    /// Sleep until a signal arrives or `timeout` passes.
    pub(super) fn wait(&self, timeout: Duration) {
        let wait = timeout.as_millis() as i32;
        match crate::sys::poll_one(self.wake.as_raw_fd(), libc::POLLIN, wait) {
            Ok(_) => {}
            // A signal arrived while we slept: just what we wait for.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Cannot happen with one live pollfd short of ENOMEM; sleep
            // instead, so that the main loop does not spin.
            Err(e) => {
                crate::warn!("poll on the signal pipe: {e}");
                std::thread::sleep(timeout);
            }
        }
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }
}
