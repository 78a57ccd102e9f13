//! What the daemon tells a worker (`Command`) and how: `Control`, an atomic
//! command plus an eventfd that wakes the worker's loop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// What a worker is told to do, by the daemon. Commands only go up: the
/// order is the order of severity (`Control::set` keeps the highest), and a
/// worker drains for any command from `Retire` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Command {
    Run = 0,
    /// Reload: stop accepting, finish responses in flight; idle keep-alive
    /// connections get `DRAIN_GRACE` to send one more request, answered with
    /// `Connection: close`; exit once every connection is gone.
    Retire = 1,
    /// Stop: the same as Retire for the worker (the daemon also shuts the
    /// listeners it bound); both are bounded by shutdown_timeout.
    Drain = 2,
    /// Close everything now and exit.
    Abort = 3,
}

impl Command {
    /// The command stored as `u8` in `Control`'s atomic.
    fn from_u8(v: u8) -> Command {
        match v {
            0 => Command::Run,
            1 => Command::Retire,
            2 => Command::Drain,
            _ => Command::Abort,
        }
    }
}

/// How long a retiring or stopping worker keeps an idle keep-alive
/// connection open for one more request (at most shutdown_timeout). A
/// client that sends its next request in that time gets an answer with
/// `Connection: close` instead of racing a close; only connections silent
/// for the whole grace are closed.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Control flags plus an eventfd that wakes the worker's loop.
#[derive(Debug)]
pub struct Control {
    state: AtomicU8,
    wake: OwnedFd,
    /// Set by the worker: its listeners are armed (true) or fully disarmed
    /// (false, after Drain). The daemon waits on it so that a reload hands
    /// the listeners over without a moment where old workers still accept.
    accepting: AtomicBool,
}

impl Control {
    pub fn new() -> io::Result<Arc<Control>> {
        // SAFETY: eventfd takes no pointers and returns a new fd or -1.
        let fd =
            crate::syscall!(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(Arc::new(Control {
            state: AtomicU8::new(Command::Run as u8),
            // SAFETY: fd is new and owned by nobody else.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            accepting: AtomicBool::new(false),
        }))
    }

    /// Worker side: say whether this worker can accept connections now.
    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Release);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    pub fn state(&self) -> Command {
        Command::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Raise the command (never lowers it) and wake the loop.
    pub fn set(&self, c: Command) {
        self.state.fetch_max(c as u8, Ordering::AcqRel);
        self.wake();
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let r = crate::syscall!(unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        });
        // EAGAIN: the counter is at its maximum, so the loop is woken anyway.
        if let Err(e) = r
            && e.raw_os_error() != Some(libc::EAGAIN)
        {
            crate::error!("waking a worker: {e}");
        }
    }

    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Clear the eventfd counter after a wake-up.
    pub fn drain_wake(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; the fd is non-blocking.
        let r = crate::syscall!(unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        });
        // EAGAIN: already cleared (several wake-ups, one read).
        if let Err(e) = r
            && e.raw_os_error() != Some(libc::EAGAIN)
        {
            crate::error!("clearing a worker's wake-up: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Control::set` keeps the highest command and `WorkerState::step`
    /// drains from `Retire` on: the order is severity.
    #[test]
    fn commands_only_go_up() {
        use Command::*;
        assert!(Run < Retire && Retire < Drain && Drain < Abort);
        for c in [Run, Retire, Drain, Abort] {
            assert_eq!(Command::from_u8(c as u8), c);
        }
        let control = Control::new().unwrap();
        assert_eq!(control.state(), Run);
        control.set(Drain);
        control.set(Retire);
        assert_eq!(control.state(), Drain);
        control.set(Abort);
        assert_eq!(control.state(), Abort);
    }
}
