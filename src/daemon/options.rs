//! Command-line settings that override or locate the config.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Origins;
use crate::config::{Config, ConfigError, EngineChoice, LogTarget};

/// Command-line settings that override or locate the config. They are
/// applied on every load, the reloads' included: a flag wins over the file
/// for the life of the process (`--engine epoll` stays epoll whatever a
/// reloaded file says, and so does every other flag here).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config_path: Option<PathBuf>,
    pub engine: Option<EngineChoice>,
    pub daemon: bool,
    /// `--listen ADDR`, repeatable: replaces the config's `listen` list.
    pub listen: Vec<SocketAddr>,
    /// `--root DIR`.
    pub root: Option<PathBuf>,
    /// `--pidfile FILE`.
    pub pidfile: Option<PathBuf>,
    /// `--error-log FILE|stderr|off`.
    pub error_log: Option<LogTarget>,
    /// `--access-log FILE|stderr|off`.
    pub access_log: Option<LogTarget>,
}

impl Options {
    /// Read the config file (or the defaults) and apply command-line
    /// overrides; `Origins` says where each value came from.
    pub fn load(&self) -> Result<(Config, Origins), ConfigError> {
        let (mut cfg, source) = match &self.config_path {
            Some(p) => {
                let (c, s) = Config::load_with_source(p)?;
                (c, Some(s))
            }
            None => (Config::default(), None),
        };
        let mut flags = Vec::new();
        if let Some(e) = self.engine {
            cfg.engine = e;
            flags.push(("engine", "--engine"));
        }
        if self.daemon {
            cfg.daemon = true;
            flags.push(("daemon", "--daemon"));
        }
        if !self.listen.is_empty() {
            cfg.listen = self.listen.clone();
            flags.push(("listen", "--listen"));
            // The file's check saw its own listen; this one is new.
            cfg.check_listen().map_err(|source| ConfigError::Invalid {
                path: "--listen".into(),
                line: None,
                source,
            })?;
        }
        if let Some(r) = &self.root {
            cfg.root = r.clone();
            flags.push(("root", "--root"));
        }
        if let Some(p) = &self.pidfile {
            cfg.pidfile = Some(p.clone());
            flags.push(("pidfile", "--pidfile"));
        }
        if let Some(t) = &self.error_log {
            cfg.error_log = t.clone();
            flags.push(("error_log", "--error-log"));
        }
        if let Some(t) = &self.access_log {
            cfg.access_log = t.clone();
            flags.push(("access_log", "--access-log"));
        }
        Ok((cfg, Origins { source, flags }))
    }
}
