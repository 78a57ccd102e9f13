//! The TOML configuration: schema, defaults and validation.
//!
//! Every key has a default, so an empty file (or no file) is a valid config.
//! Unknown keys are errors that name their line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

// The log targets are the log's own type: config depends on log, never the
// reverse. Re-exported so `config::LogTarget` keeps naming it.
pub use crate::log::LogTarget;

/// Which I/O engine drives the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    Auto,
    Epoll,
    #[serde(rename = "io_uring")]
    IoUring,
}

impl EngineChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "epoll" => Some(Self::Epoll),
            "io_uring" | "uring" => Some(Self::IoUring),
            _ => None,
        }
    }
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Epoll => "epoll",
            Self::IoUring => "io_uring",
        })
    }
}

/// `workers = "auto"` or a positive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    Count(usize),
}

impl Workers {
    pub fn resolve(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if (1..=1024).contains(&n) => Ok(Workers::Count(n as usize)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "workers must be between 1 and 1024, not {n}"
            ))),
            Raw::S(s) if s == "auto" => Ok(Workers::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "workers must be \"auto\" or a number, not {s:?}"
            ))),
        }
    }
}

/// Longest timeout a config may set: far beyond any real use, and far from
/// where deadline arithmetic could overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Largest `max_header_size` (1 MiB).
pub const MAX_HEADER_SIZE: usize = 1 << 20;
/// Largest `max_connections` per worker.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// A duration written as `"500ms"`, `"15s"`, `"2m"`, `"1h"` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dur(Duration::from_secs(n))),
            Raw::S(s) => parse_duration(&s).map(Dur).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} (use e.g. \"500ms\", \"15s\", \"2m\")"
                ))
            }),
        }
    }
}

/// The whole configuration. Field docs mirror `conf/tandem.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Directory served as the site root.
    pub root: PathBuf,
    /// File served for a directory request.
    pub index: String,
    /// I/O engine.
    pub engine: EngineChoice,
    /// Worker threads.
    pub workers: Workers,
    /// Detach into the background.
    pub daemon: bool,
    /// Pidfile path (none when absent).
    pub pidfile: Option<PathBuf>,
    /// User and group to switch to after binding when started as root.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Access log target.
    pub access_log: LogTarget,
    /// Error log target.
    pub error_log: LogTarget,
    /// Minimum level of error log lines: "error", "warn", "info" or "debug".
    pub log_level: String,
    /// Idle time allowed between keep-alive requests.
    pub keepalive_timeout: Dur,
    /// Time allowed to receive a whole request head.
    pub header_timeout: Dur,
    /// Time a response may make no progress before the connection is dropped.
    pub send_timeout: Dur,
    /// Graceful stop: how long in-flight responses may take before they are cut.
    pub shutdown_timeout: Dur,
    /// Largest request head (request line + headers), bytes; larger -> 431.
    pub max_header_size: usize,
    /// Longest request target, bytes; longer -> 414.
    pub max_target_size: usize,
    /// Largest request body read and discarded on GET/HEAD; larger -> 413.
    pub max_body_size: u64,
    /// Most connections a worker keeps open; past it, accepting pauses.
    pub max_connections: usize,
    /// Serve names that start with a dot (except "." and "..", never served).
    pub serve_dotfiles: bool,
    /// Page under the root served with 404 responses ("" for none).
    pub error_page_404: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["127.0.0.1:8080".parse().unwrap()],
            root: PathBuf::from("html"),
            index: "index.html".into(),
            engine: EngineChoice::Auto,
            workers: Workers::Auto,
            daemon: false,
            pidfile: None,
            user: None,
            group: None,
            access_log: LogTarget::Stderr,
            error_log: LogTarget::Stderr,
            log_level: "info".into(),
            keepalive_timeout: Dur(Duration::from_secs(60)),
            header_timeout: Dur(Duration::from_secs(15)),
            send_timeout: Dur(Duration::from_secs(60)),
            shutdown_timeout: Dur(Duration::from_secs(10)),
            max_header_size: 8192,
            max_target_size: 4096,
            max_body_size: 1024 * 1024,
            max_connections: 16384,
            serve_dotfiles: false,
            error_page_404: "404.html".into(),
        }
    }
}

/// A config error, with the file and line where one is known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: String,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

impl Config {
    /// Load and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate TOML text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            ConfigError::Parse {
                path: name.to_string(),
                line,
                msg: e.message().to_string(),
            }
        })?;
        cfg.validate().map_err(|msg| {
            // Messages start with the key they are about: name its line.
            let key = msg.split(':').next().unwrap_or("");
            match key_line(text, key) {
                Some(line) => ConfigError::Parse {
                    path: name.to_string(),
                    line,
                    msg,
                },
                None => ConfigError::Invalid {
                    path: name.to_string(),
                    msg,
                },
            }
        })?;
        Ok(cfg)
    }

    /// Check values serde cannot. Each message starts with `key:`.
    fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            return Err("listen: at least one address is needed".into());
        }
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(a) {
                return Err(format!("listen: {a} is listed twice"));
            }
        }
        if self.index.is_empty() || self.index.contains('/') {
            return Err("index: must be a plain file name".into());
        }
        for (key, d, zero_ok) in [
            ("keepalive_timeout", self.keepalive_timeout.0, true),
            ("header_timeout", self.header_timeout.0, false),
            ("send_timeout", self.send_timeout.0, false),
            ("shutdown_timeout", self.shutdown_timeout.0, true),
        ] {
            if d > MAX_TIMEOUT {
                return Err(format!(
                    "{key}: at most {}h, not {}s",
                    MAX_TIMEOUT.as_secs() / 3600,
                    d.as_secs()
                ));
            }
            if d.is_zero() && !zero_ok {
                return Err(format!("{key}: must be more than 0"));
            }
        }
        if !(256..=MAX_HEADER_SIZE).contains(&self.max_header_size) {
            return Err(format!(
                "max_header_size: must be between 256 and {MAX_HEADER_SIZE}, not {}",
                self.max_header_size
            ));
        }
        if self.max_target_size < 16 || self.max_target_size > self.max_header_size {
            return Err("max_target_size: must be between 16 and max_header_size".into());
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(format!(
                "max_connections: must be between 1 and {MAX_CONNECTIONS}, not {}",
                self.max_connections
            ));
        }
        if crate::log::Level::parse(&self.log_level).is_none() {
            return Err(format!(
                "log_level: {:?} is not one of error, warn, info, debug",
                self.log_level
            ));
        }
        if self.error_page_404.contains("..") {
            return Err("error_page_404: must be a path under the root".into());
        }
        Ok(())
    }
}

/// The 1-based line where top-level `key` is assigned, if it is.
fn key_line(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")));
            l.is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_defaults() {
        let c = Config::parse("", "t").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.root, PathBuf::from("html"));
        assert_eq!(c.keepalive_timeout.0, Duration::from_secs(60));
        assert_eq!(c.header_timeout.0, Duration::from_secs(15));
        assert_eq!(c.max_header_size, 8192);
    }

    #[test]
    fn shipped_config_is_the_defaults() {
        let shipped =
            Config::parse(include_str!("../conf/tandem.toml"), "conf/tandem.toml").unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_key_names_line() {
        let e = Config::parse("root = \"x\"\n\nbogus = 1\n", "t.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("t.toml:3:"), "{s}");
        assert!(s.contains("bogus"), "{s}");
    }

    #[test]
    fn values() {
        let c = Config::parse(
            "engine = \"io_uring\"\nworkers = 3\nkeepalive_timeout = \"500ms\"\naccess_log = \"off\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.engine, EngineChoice::IoUring);
        assert_eq!(c.workers, Workers::Count(3));
        assert_eq!(c.keepalive_timeout.0, Duration::from_millis(500));
        assert_eq!(c.access_log, LogTarget::Off);
        assert!(Config::parse("workers = 0", "t").is_err());
        assert!(Config::parse("engine = \"kqueue\"", "t").is_err());
        assert!(Config::parse("header_timeout = \"5 fortnights\"", "t").is_err());
        let e = Config::parse("root = \"x\"\n\nmax_connections = 0\n", "t.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("t.toml:3: max_connections"),
            "{e}"
        );
        // Values whose deadline arithmetic would overflow are refused by name and line.
        for (text, key) in [
            (
                "keepalive_timeout = 9223372036854775807",
                "keepalive_timeout",
            ),
            ("shutdown_timeout = 9223372036854775807", "shutdown_timeout"),
            ("header_timeout = \"25h\"", "header_timeout"),
            ("send_timeout = 0", "send_timeout"),
            ("max_header_size = 18446744073709551615", "max_header_size"),
            ("max_connections = 18446744073709551615", "max_connections"),
        ] {
            let e = Config::parse(&format!("\n{text}\n"), "t.toml").unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("t.toml:2: {key}")),
                "{text}: {e}"
            );
        }
        assert!(Config::parse("keepalive_timeout = \"24h\"\nshutdown_timeout = 0", "t").is_ok());
        let e = Config::parse("# c\nlog_level = \"loud\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2: log_level"), "{e}");
    }
}
