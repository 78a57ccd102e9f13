//! I/O engines. Each engine is one module with one entry point,
//! `run(spec: WorkerSpec) -> io::Result<()>`, driving `http::Conn` for every
//! connection of one worker thread. What they share lives beside them, one
//! job a file: engine selection (`select`), the daemon's commands
//! (`control`), the clock, the worker's own state (`state`), the connection
//! slab, the accept policy and the descriptor limit (`nofile`). This file
//! holds what a worker is given.

mod clock;
mod control;
pub mod epoll;
mod nofile;
pub mod policy;
mod select;
mod slab;
mod state;
pub mod uring;

pub use clock::Clock;
pub use control::{Command, Control, DRAIN_GRACE};
pub use policy::{ACCEPT_PAUSE, AcceptFailed, AcceptGate, EngineConn, STRANDED_MAX, WhenFull};
pub use select::{Engine, EngineError, ProbeError, select};
pub use slab::Slab;
pub use state::{Step, WorkerState};

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::http::{Limits, Respond};
use crate::log::AccessLog;
use crate::metrics::WorkerCounters;

/// A response's leading byte segments (a head and a small cached body)
/// adding up to at most this much go out as one copied send on both
/// engines, not a sendmsg over several pieces: one copy of a few KiB costs
/// less than the iovec import and an skb built from several fragments
/// (measured with benches/wrk.sh, 1 KiB and 16 KiB files).
pub const COPY_SEND_MAX: usize = 16 * 1024;

/// A listening socket shared by all workers (and kept across reloads).
#[derive(Debug)]
pub struct Listener {
    pub fd: OwnedFd,
    pub addr: SocketAddr,
    /// A `tls_listen` socket: its connections speak TLS.
    pub tls: bool,
}

impl Listener {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What answers a worker's requests: the file responder on the `listen`
/// sockets, the metrics responder on `metrics_listen`. `Conn` already calls
/// it through `&dyn Respond` (`Ctx::responder`), so this costs the hot path
/// nothing, and an engine never names a concrete responder.
pub type SharedRespond = Arc<dyn Respond + Send + Sync>;

/// Everything a worker needs to run.
#[derive(Clone)]
pub struct WorkerSpec {
    pub id: usize,
    pub listeners: Vec<Arc<Listener>>,
    pub responder: SharedRespond,
    pub limits: Limits,
    /// None: requests are not logged (the metrics listener's).
    pub access: Option<Arc<AccessLog>>,
    pub control: Arc<Control>,
    pub max_connections: usize,
    /// The descriptors this worker's connections may hold (`policy::fd_budget`).
    pub fd_budget: usize,
    /// At max_connections: wait for room, or make it (see `WhenFull`).
    pub when_full: WhenFull,
    pub shutdown_timeout: Duration,
    /// This worker's `/metrics` counters (a replacement gets a new block).
    pub counters: Arc<WorkerCounters>,
    /// The TLS settings (certificates) for connections from `tls`
    /// listeners: those of the generation that started the worker, so a
    /// reload's new certificates serve its new workers' handshakes.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What answers on plaintext listeners instead of `responder`
    /// (`redirect_to_https`), if anything.
    pub redirect: Option<SharedRespond>,
}

/// Run a worker on the given engine until it is told to stop.
pub fn run(engine: Engine, spec: WorkerSpec) -> io::Result<()> {
    match engine {
        Engine::Epoll => epoll::run(spec),
        // Making room is epoll's (the metrics worker's): refused, not ignored.
        Engine::IoUring if spec.when_full == WhenFull::Evict => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the io_uring engine does not make room at a full table (WhenFull::Evict)",
        )),
        Engine::IoUring => uring::run(spec),
    }
}
