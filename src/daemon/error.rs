//! The daemon's errors: starting, reloading and `-s`, each wrapping the
//! lower layers' typed errors, with the exit code each one means.

use std::io;
use std::path::{Path, PathBuf};

use super::PidfileError;
use crate::config::ConfigError;
use crate::engine::EngineError;

/// A startup failure. Bad usage or configuration (the config file itself
/// is checked before, by `Options::load`) exits 2, anything else 1: see
/// `exit_code`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `root` is missing or not a directory: exit 2.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The configured engine cannot run here: exit 2.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Another instance holds the pidfile, or it cannot be written.
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    /// A listening socket (bound, or from systemd); the message names its
    /// address or descriptor.
    #[error(transparent)]
    Listen(io::Error),
    #[error("working directory: {0}")]
    WorkingDir(#[source] io::Error),
    #[error("daemonize: {0}")]
    Daemonize(#[source] daemonize::Error),
    #[error("access_log: {0}")]
    AccessLog(#[source] io::Error),
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
}

impl StartError {
    /// 2 for usage or configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Root(_) | StartError::Engine(_) => 2,
            StartError::Pidfile(_)
            | StartError::Listen(_)
            | StartError::WorkingDir(_)
            | StartError::Daemonize(_)
            | StartError::AccessLog(_)
            | StartError::PidfileKeeper(_)
            | StartError::DropPrivileges { .. }
            | StartError::Signals(_)
            | StartError::Workers(_) => 1,
        }
    }
}

/// `root` cannot be served: checked at start and on every reload.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("root {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("root {}: {source}", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(super) fn check_root(root: &Path) -> Result<(), RootError> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(RootError::NotADirectory(root.to_path_buf())),
        Err(source) => Err(RootError::Unusable {
            path: root.to_path_buf(),
            source,
        }),
    }
}

/// Why a reload was refused; the running config stays.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A newly configured address cannot be bound; the message names it.
    #[error(transparent)]
    Listen(io::Error),
    #[error("starting workers: {0}")]
    Workers(#[source] io::Error),
}

/// `-s` failed. Bad usage (exit 2) or no running instance to signal (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("-s takes reload, stop or reopen, not {0:?}")]
    UnknownSignal(String),
    #[error("-s needs a `pidfile` in the config to find the running instance")]
    NoPidfile,
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    #[error("signal pid {pid} from {}: {source}", path.display())]
    Kill {
        pid: libc::pid_t,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SignalError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SignalError::UnknownSignal(_) | SignalError::NoPidfile => 2,
            SignalError::Pidfile(_) | SignalError::Kill { .. } => 1,
        }
    }
}
