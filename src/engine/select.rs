//! Which engine a worker runs: the configured choice resolved against what
//! this kernel offers, and why io_uring cannot run when it cannot.

use std::io;

use super::uring;
use crate::config::EngineChoice;

/// The engine a worker actually runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Epoll,
    IoUring,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Epoll => "epoll",
            Engine::IoUring => "io_uring",
        }
    }
}

/// Resolve the configured choice to an engine. `Ok((engine, note))`: `note`
/// says why auto fell back. `Err`: an explicit io_uring is unavailable.
pub fn select(choice: EngineChoice) -> Result<(Engine, Option<ProbeError>), EngineError> {
    match choice {
        EngineChoice::Epoll => Ok((Engine::Epoll, None)),
        EngineChoice::IoUring => match uring::probe() {
            Ok(()) => Ok((Engine::IoUring, None)),
            Err(why) => Err(EngineError::IoUringUnavailable(why)),
        },
        EngineChoice::Auto => match uring::probe() {
            Ok(()) => Ok((Engine::IoUring, None)),
            Err(why) => Ok((Engine::Epoll, Some(why))),
        },
    }
}

/// The configured engine cannot run here (a config error: exit 2 at start).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine io_uring unavailable: {0}")]
    IoUringUnavailable(#[source] ProbeError),
}

/// Why the io_uring engine cannot run on this machine: what `uring::probe`
/// found missing. OS errors are shown without their "(os error N)" tail,
/// with a hint where the usual cause is known.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TANDEM_IO_URING_PROBE_FAIL is set (tests use it).
    #[error("forced by TANDEM_IO_URING_PROBE_FAIL: {0}")]
    Forced(String),
    #[error("io_uring_setup: {}{}", crate::sys::bare(.0), ProbeError::setup_hint(.0))]
    Setup(#[source] io::Error),
    #[error("kernel lacks {feature} (needs Linux {since}+)")]
    MissingFeature {
        feature: &'static str,
        since: &'static str,
    },
    #[error("io_uring_register(PROBE): {}", crate::sys::bare(.0))]
    RegisterProbe(#[source] io::Error),
    #[error("kernel io_uring lacks opcode(s) {}", .0.join(", "))]
    MissingOpcodes(Vec<&'static str>),
    #[error("buffer ring memory: {}", crate::sys::bare(.0))]
    BufRingMemory(#[source] io::Error),
    #[error("io_uring_register(PBUF_RING): {} (needs Linux 5.19+)", crate::sys::bare(.0))]
    RegisterBufRing(#[source] io::Error),
    /// The test socket pair, or the byte written to it.
    #[error("{call}: {}", crate::sys::bare(source))]
    TestSocket {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("submission queue full")]
    SubmissionQueueFull,
    #[error("io_uring_enter: {}", crate::sys::bare(.0))]
    Enter(#[source] io::Error),
    #[error("multishot receive not supported (needs Linux 6.0+)")]
    MultishotUnsupported,
    #[error("multishot receive test failed (result {result}, flags {flags:#x})")]
    MultishotFailed { result: i32, flags: u32 },
    #[error("multishot receive test: no completion within 1s")]
    NoCompletion,
}

impl ProbeError {
    fn setup_hint(e: &io::Error) -> &'static str {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => " (kernel.io_uring_disabled or seccomp)",
            Some(libc::ENOSYS) => " (kernel built without io_uring, or seccomp)",
            Some(libc::ENOMEM) => " (RLIMIT_MEMLOCK too low?)",
            _ => "",
        }
    }
}
