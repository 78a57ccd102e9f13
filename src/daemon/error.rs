//! The daemon's errors: starting, reloading and `-s`, each wrapping the
//! lower layers' typed errors, with the exit code each one means.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::PidfileError;
use super::check::CheckError;
use super::listen::BindError;
use crate::config::ConfigError;
use crate::engine::EngineError;

/// A startup failure. Bad usage or configuration (the config file itself
/// is checked before, by `Options::load`) exits 2, anything else 1: see
/// `exit_code`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config cannot run here (a missing root, an unknown user, a log
    /// directory that is not there...): exit 2, as from `-t`.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The configured engine cannot run here: exit 2.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Another instance holds the pidfile, or it cannot be written.
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    /// A configured address cannot be bound; the message names it.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The sockets systemd passed cannot be used (`listen::from_systemd`):
    /// LISTEN_FDS is not a number, or a descriptor it names is not an open
    /// socket; the message starts with `LISTEN_FDS`.
    #[error(transparent)]
    Listen(io::Error),
    #[error("working directory: {0}")]
    WorkingDir(#[source] io::Error),
    #[error("daemonize: {0}")]
    Daemonize(#[source] daemonize::Error),
    #[error("access_log: {0}")]
    AccessLog(#[source] io::Error),
    /// Handing the log files created at start to `user`.
    #[error("logs: {0}")]
    LogOwner(#[source] io::Error),
    /// The process that reopens the logs with root's rights (`opener`).
    #[error("log opener: {0}")]
    LogOpener(#[source] io::Error),
    /// The reload status file next to the pidfile.
    #[error("pidfile: reload status: {0}")]
    Status(#[source] io::Error),
    /// The process that removes the pidfile after privileges are dropped.
    #[error("pidfile keeper: {0}")]
    PidfileKeeper(#[source] io::Error),
    #[error("user {user}: {source}")]
    DropPrivileges {
        user: String,
        #[source]
        source: io::Error,
    },
    #[error("signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("starting workers: {0}")]
    Workers(#[source] io::Error),
    /// The metrics listener's worker could not start.
    #[error("metrics listener: {0}")]
    Metrics(#[source] io::Error),
}

impl StartError {
    /// 2 for usage or configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Check(_) | StartError::Engine(_) => 2,
            StartError::Pidfile(_)
            | StartError::Bind(_)
            | StartError::Listen(_)
            | StartError::WorkingDir(_)
            | StartError::LogOpener(_)
            | StartError::Daemonize(_)
            | StartError::AccessLog(_)
            | StartError::LogOwner(_)
            | StartError::Status(_)
            | StartError::PidfileKeeper(_)
            | StartError::DropPrivileges { .. }
            | StartError::Signals(_)
            | StartError::Workers(_)
            | StartError::Metrics(_) => 1,
        }
    }
}

/// Why a reload was refused; the running config stays.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A newly configured address cannot be bound; the message names it.
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("starting workers: {0}")]
    Workers(#[source] io::Error),
    /// An address moves between `listen` and `tls_listen` (`to`): refused,
    /// see `Daemon::bind_new_addresses`.
    #[error(
        "{to} {addr}: this server listens on it under {from} now, and a reload cannot \
         change what a listening socket speaks (connections queued on it would be \
         answered in the other protocol): drop it from {from} in one reload and add \
         it to {to} in the next, or restart"
    )]
    Moved {
        addr: SocketAddr,
        from: &'static str,
        to: &'static str,
    },
}

impl ReloadError {
    /// What `tandem -s reload` exits with when told of it: 2 for the
    /// config's fault, 1 for anything else (a busy port).
    pub(super) fn exit_code(&self) -> i32 {
        match self {
            ReloadError::Config(_)
            | ReloadError::Check(_)
            | ReloadError::Engine(_)
            | ReloadError::Moved { .. } => 2,
            ReloadError::Bind(_) | ReloadError::Workers(_) => 1,
        }
    }
}

/// `-s` failed. Bad usage or config (exit 2), or no running instance to
/// signal, or it did not do what was asked (exit 1, or 2 for a reload
/// refused over its config).
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("-s takes reload, stop or reopen, not {0:?}")]
    UnknownSignal(String),
    #[error("-s needs a `pidfile` in the config (or --pidfile FILE) to find the running instance")]
    NoPidfile,
    /// The config file is broken: for reload, it is what would be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    #[error("signal pid {pid} from {}: {source}", path.display())]
    Kill {
        pid: libc::pid_t,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reload status {}: {source}", path.display())]
    Status {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reload refused, tandem (pid {pid}) keeps its running config: {message}")]
    ReloadRefused {
        pid: libc::pid_t,
        exit: i32,
        message: String,
    },
    #[error("tandem (pid {pid}) could not reopen its logs: {message}")]
    ReopenFailed { pid: libc::pid_t, message: String },
    #[error(
        "tandem (pid {pid}) gave no {what} verdict within {}s; see its error log",
        waited.as_secs()
    )]
    NoVerdict {
        pid: libc::pid_t,
        what: &'static str,
        waited: Duration,
    },
    #[error("tandem (pid {pid}) exited before the {what} finished")]
    ExitedDuringReload {
        pid: libc::pid_t,
        what: &'static str,
    },
    #[error(
        "tandem (pid {pid}) is still stopping after {}s (finishing responses in flight?)",
        waited.as_secs()
    )]
    StillStopping { pid: libc::pid_t, waited: Duration },
}

impl SignalError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SignalError::UnknownSignal(_) | SignalError::NoPidfile | SignalError::Config(_) => 2,
            SignalError::ReloadRefused { exit, .. } => *exit,
            SignalError::Pidfile(_)
            | SignalError::Kill { .. }
            | SignalError::Status { .. }
            | SignalError::ReopenFailed { .. }
            | SignalError::NoVerdict { .. }
            | SignalError::ExitedDuringReload { .. }
            | SignalError::StillStopping { .. } => 1,
        }
    }
}
