//! The TOML configuration: schema, defaults and validation.
//!
//! Every key has a default, so an empty file (or no file) is a valid config.
//! Unknown keys are errors that name their line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod de;
pub use de::parse_address;
use de::*;

// The log targets are the log's own type: config depends on log, never the
// reverse. Re-exported so `config::LogTarget` keeps naming it.
pub use crate::log::{LogFormat, LogTarget};

/// Which I/O engine drives the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Epoll,
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

/// Longest timeout a config may set: far beyond any real use, and far from
/// where deadline arithmetic could overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Largest `max_header_size` (1 MiB).
pub const MAX_HEADER_SIZE: usize = 1 << 20;
/// Largest `cache_max_file` (64 MiB): past that, sendfile and splice win.
pub const MAX_CACHE_FILE: u64 = 64 << 20;
/// Largest `max_ranges`.
pub const MAX_RANGES: usize = 1024;
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

/// `index = "index.html"` or `index = ["index.html", "index.htm"]`: the
/// names tried, in order, for a directory request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNames(pub Vec<String>);

/// A precompressed sibling's content coding, and the suffix of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    /// The content-coding token (`Content-Encoding`, `Accept-Encoding`).
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }
    /// The suffix of the sibling file: `x.css` + `.br`.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }
}

/// How symlinks under the root are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Followed while the target stays beneath the root.
    WithinRoot,
    /// Never followed: a path through a symlink is 404.
    Deny,
}

/// One `[[rules]]` entry: response headers for the paths a glob matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A glob over the request path (`/assets/**`, `*.css`). Without a `/`
    /// it matches the last path segment in any directory.
    #[serde(rename = "match", deserialize_with = "de_rule_match")]
    pub pattern: String,
    /// Header fields set on responses for matching paths; a later rule's
    /// field replaces an earlier one's of the same name.
    #[serde(default, deserialize_with = "de_rule_headers")]
    pub headers: BTreeMap<String, String>,
}

impl Rule {
    /// The compiled glob: `*` stays within one segment, `**` crosses them; a
    /// pattern without `/` matches the last segment anywhere.
    pub fn glob(&self) -> Result<globset::GlobMatcher, globset::Error> {
        let p = if self.pattern.contains('/') {
            self.pattern.clone()
        } else {
            format!("/**/{}", self.pattern)
        };
        Ok(globset::GlobBuilder::new(&p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?
            .compile_matcher())
    }
}

/// Header fields a rule may not set: the connection's framing and the
/// fields the server owns.
pub const RULE_FORBIDDEN_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "date",
    "content-range",
    "content-encoding",
];

/// The whole configuration. Field docs mirror `conf/tandem.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to listen on.
    #[serde(deserialize_with = "de_listen")]
    pub listen: Vec<SocketAddr>,
    /// Directory served as the site root.
    #[serde(deserialize_with = "de_root")]
    pub root: PathBuf,
    /// Files tried, in order, for a directory request.
    #[serde(deserialize_with = "de_index")]
    pub index: IndexNames,
    /// I/O engine.
    #[serde(deserialize_with = "de_engine")]
    pub engine: EngineChoice,
    /// Worker threads.
    #[serde(deserialize_with = "de_workers")]
    pub workers: Workers,
    /// Detach into the background.
    #[serde(deserialize_with = "de_daemon")]
    pub daemon: bool,
    /// Pidfile path (none when absent).
    #[serde(deserialize_with = "de_pidfile")]
    pub pidfile: Option<PathBuf>,
    /// User and group to switch to after binding when started as root.
    #[serde(deserialize_with = "de_user")]
    pub user: Option<String>,
    #[serde(deserialize_with = "de_group")]
    pub group: Option<String>,
    /// Access log target.
    #[serde(deserialize_with = "de_access_log")]
    pub access_log: LogTarget,
    /// Access log line format: "combined" or "json".
    #[serde(deserialize_with = "de_access_log_format")]
    pub access_log_format: LogFormat,
    /// Error log target.
    #[serde(deserialize_with = "de_error_log")]
    pub error_log: LogTarget,
    /// Minimum level of error log lines: "error", "warn", "info" or "debug".
    #[serde(deserialize_with = "de_log_level")]
    pub log_level: String,
    /// Idle time allowed between keep-alive requests.
    #[serde(deserialize_with = "de_keepalive_timeout")]
    pub keepalive_timeout: Dur,
    /// Time allowed to receive a whole request head.
    #[serde(deserialize_with = "de_header_timeout")]
    pub header_timeout: Dur,
    /// Time a response may make no progress before the connection is dropped.
    #[serde(deserialize_with = "de_send_timeout")]
    pub send_timeout: Dur,
    /// Graceful stop: how long in-flight responses may take before they are cut.
    #[serde(deserialize_with = "de_shutdown_timeout")]
    pub shutdown_timeout: Dur,
    /// Largest request head (request line + headers), bytes; larger -> 431.
    #[serde(deserialize_with = "de_max_header_size")]
    pub max_header_size: usize,
    /// Longest request target, bytes; longer -> 414.
    #[serde(deserialize_with = "de_max_target_size")]
    pub max_target_size: usize,
    /// Largest request body read and discarded on GET/HEAD; larger -> 413.
    #[serde(deserialize_with = "de_max_body_size")]
    pub max_body_size: u64,
    /// Most connections a worker keeps open; past it, accepting pauses.
    #[serde(deserialize_with = "de_max_connections")]
    pub max_connections: usize,
    /// Serve names that start with a dot (except "." and "..", never served).
    #[serde(deserialize_with = "de_serve_dotfiles")]
    pub serve_dotfiles: bool,
    /// Old spelling of `error_pages = { 404 = ... }`, still understood.
    #[serde(deserialize_with = "de_error_page_404")]
    pub error_page_404: Option<String>,
    /// Pages under the root served as the body of error responses, by status.
    #[serde(deserialize_with = "de_error_pages")]
    pub error_pages: BTreeMap<String, String>,
    /// List directories that have no index file.
    #[serde(deserialize_with = "de_autoindex")]
    pub autoindex: bool,
    /// Served with 200 for a GET/HEAD of a missing path without an extension
    /// (single-page apps); "" for none.
    #[serde(deserialize_with = "de_fallback")]
    pub fallback: String,
    /// Content-Type for extensions the built-in table and `mime_types` lack.
    #[serde(deserialize_with = "de_default_type")]
    pub default_type: String,
    /// Extension -> Content-Type, over the built-in table.
    #[serde(deserialize_with = "de_mime_types")]
    pub mime_types: BTreeMap<String, String>,
    /// Precompressed siblings looked for, in order of preference.
    #[serde(deserialize_with = "de_precompressed")]
    pub precompressed: Vec<Encoding>,
    /// Most ranges one request may ask for; more -> the whole file.
    #[serde(deserialize_with = "de_max_ranges")]
    pub max_ranges: usize,
    /// Bytes of small files (bodies, variants included) kept in memory, in
    /// all; each worker gets its share. 0 turns the cache off.
    #[serde(deserialize_with = "de_cache_size")]
    pub cache_size: u64,
    /// Largest file kept in the cache; larger ones are sent from disk.
    #[serde(deserialize_with = "de_cache_max_file")]
    pub cache_max_file: u64,
    /// How long a cached file is served before it is looked up again.
    #[serde(deserialize_with = "de_cache_revalidate")]
    pub cache_revalidate: Dur,
    /// How symlinks under the root are followed.
    #[serde(deserialize_with = "de_symlinks")]
    pub symlinks: Symlinks,
    /// Per-path response headers, applied in order.
    pub rules: Vec<Rule>,
    /// Addresses of the metrics and health listener (`/metrics`, `/healthz`); none by default.
    #[serde(deserialize_with = "de_metrics_listen")]
    pub metrics_listen: Vec<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["127.0.0.1:8080".parse().unwrap()],
            root: PathBuf::from("html"),
            index: IndexNames(vec!["index.html".into()]),
            engine: EngineChoice::Auto,
            workers: Workers::Auto,
            daemon: false,
            pidfile: None,
            user: None,
            group: None,
            access_log: LogTarget::Stderr,
            access_log_format: LogFormat::Combined,
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
            error_page_404: None,
            error_pages: BTreeMap::from([("404".into(), "404.html".into())]),
            autoindex: false,
            fallback: String::new(),
            default_type: "application/octet-stream".into(),
            mime_types: BTreeMap::new(),
            precompressed: vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip],
            max_ranges: 32,
            cache_size: 64 << 20,
            cache_max_file: 64 << 10,
            cache_revalidate: Dur(Duration::from_secs(1)),
            symlinks: Symlinks::WithinRoot,
            rules: Vec::new(),
            metrics_listen: Vec::new(),
        }
    }
}

/// A config error, with the file and, where one is known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not the schema: a syntax error, an unknown key, a value
    /// of the wrong type or out of the range serde checks. The message is
    /// the TOML parser's; `line` is where its span starts.
    #[error("{}: {}", at(path, *line), source.message())]
    Parse {
        path: String,
        line: Option<usize>,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A key the schema does not have (at the top, or in a `[[rules]]`
    /// entry), with the key probably meant when one is close.
    #[error("{}: {}", at(path, *line), unknown_key_message(*table, key, *suggestion, *misplaced))]
    UnknownKey {
        path: String,
        line: Option<usize>,
        /// The table the key is in: `Some("rules")` for a rule's key.
        table: Option<&'static str>,
        key: String,
        suggestion: Option<&'static str>,
        /// A top-level key written below a `[[rules]]` header.
        misplaced: bool,
    },
    /// A table-shaped key (`rules`) whose shape is wrong.
    #[error("{}: {key}: {message}", at(path, *line))]
    Shape {
        path: String,
        line: Option<usize>,
        key: &'static str,
        message: String,
    },
    /// Parsed, but a value is not allowed; `line` is where its key is set,
    /// if the file sets it (a default can be invalid next to another value).
    #[error("{}: {source}", at(path, *line))]
    Invalid {
        path: String,
        line: Option<usize>,
        #[source]
        source: Invalid,
    },
}

impl ConfigError {
    /// The line the error is about, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::Shape { line, .. }
            | ConfigError::Invalid { line, .. } => *line,
        }
    }
}

fn unknown_key_message(
    table: Option<&str>,
    key: &str,
    suggestion: Option<&str>,
    misplaced: bool,
) -> String {
    let mut m = match table {
        Some(t) => format!("{t}: unknown key `{key}`"),
        None => format!("unknown key `{key}`"),
    };
    if misplaced {
        m.push_str(&format!(
            " (`{key}` is a top-level key: keys below a [[{t}]] header belong to that entry, so put it above the first one)",
            t = table.unwrap_or("")
        ));
    } else if let Some(s) = suggestion {
        m.push_str(&format!("; did you mean `{s}`?"));
    }
    m
}

/// The text a config was read from, kept to point at the line of a key
/// when a later check (a root that does not exist, a user that is not
/// there) finds a problem with its value.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as named on the command line.
    pub path: String,
    text: String,
}

impl Source {
    /// The 1-based line where top-level `key` is set, if the file sets it.
    pub fn line(&self, key: &str) -> Option<usize> {
        key_line(&self.text, key)
    }

    /// `FILE:LINE` where `key` is set, or `FILE` when the file leaves it out.
    pub fn at(&self, key: &str) -> String {
        at(&self.path, self.line(key))
    }
}

/// The `pidfile` key of a config file, read on its own: found even when the
/// rest of the file does not parse or validate, so that `-s stop` and
/// `-s reopen` can reach a running server whose config file has since
/// been broken. `None` when the file cannot be read or sets no such string.
pub fn pidfile_key(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let (doc, _errors) = toml::de::DeTable::parse_recoverable(&text);
    doc.get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "pidfile")
        .and_then(|(_, v)| v.get_ref().as_str().map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
}

/// `FILE:LINE` or `FILE`.
fn at(path: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{path}:{l}"),
        None => path.to_string(),
    }
}

/// A value that parses but is not allowed. Each message starts with the key
/// it is about (`key()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("listen: at least one address is needed")]
    NoListen,
    #[error("listen: {0} is listed twice")]
    ListenTwice(SocketAddr),
    #[error("index: must be one or more plain file names, not {0:?}")]
    Index(String),
    #[error("{key}: at most {}h, not {secs}s", MAX_TIMEOUT.as_secs() / 3600)]
    TimeoutTooLong { key: &'static str, secs: u64 },
    #[error("{key}: must be more than 0")]
    TimeoutZero { key: &'static str },
    #[error("max_header_size: must be between 256 and {MAX_HEADER_SIZE}, not {0}")]
    MaxHeaderSize(usize),
    #[error(
        "max_target_size: must be between 16 and max_header_size ({max_header_size}), not {value}"
    )]
    MaxTargetSize {
        value: usize,
        max_header_size: usize,
    },
    #[error("max_connections: must be between 1 and {MAX_CONNECTIONS}, not {0}")]
    MaxConnections(usize),
    #[error("log_level: {0:?} is not one of error, warn, info, debug")]
    LogLevel(String),
    #[error("error_page_404: must be a path under the root, not {0:?}")]
    ErrorPage404(String),
    #[error("error_page_404: replaced by error_pages = {{ 404 = ... }}; set one of them, not both")]
    ErrorPage404Twice,
    #[error("error_pages: {0:?} is not an error status from 400 to 599")]
    ErrorPageStatus(String),
    #[error("error_pages: {status} must be a path under the root, not {page:?}")]
    ErrorPage { status: String, page: String },
    #[error("fallback: must be a path under the root, not {0:?}")]
    Fallback(String),
    #[error("default_type: {0:?} is not a media type (like \"application/octet-stream\")")]
    DefaultType(String),
    #[error("mime_types: {ext:?} = {value:?}: {why}")]
    MimeType {
        ext: String,
        value: String,
        why: &'static str,
    },
    #[error("precompressed: {0:?} is listed twice")]
    PrecompressedTwice(&'static str),
    #[error("cache_max_file: must be at most {MAX_CACHE_FILE} bytes, not {0}")]
    CacheMaxFile(u64),
    #[error("max_ranges: must be between 0 and {MAX_RANGES}, not {0}")]
    MaxRanges(usize),
    #[error("rules: match = {pattern:?}: {why}")]
    RuleMatch { pattern: String, why: String },
    #[error("metrics_listen: {0} is listed twice")]
    MetricsListenTwice(SocketAddr),
    #[error(
        "metrics_listen: {metrics} is also served by listen ({listen}); give metrics its own port"
    )]
    MetricsListenClash {
        metrics: SocketAddr,
        listen: SocketAddr,
    },
    #[error("rules: match = {pattern:?}: header {name:?}: {why}")]
    RuleHeader {
        pattern: String,
        name: String,
        why: &'static str,
    },
}

impl Invalid {
    /// The config key the value belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            Invalid::NoListen | Invalid::ListenTwice(_) => "listen",
            Invalid::Index(_) => "index",
            Invalid::TimeoutTooLong { key, .. } | Invalid::TimeoutZero { key } => key,
            Invalid::MaxHeaderSize(_) => "max_header_size",
            Invalid::MaxTargetSize { .. } => "max_target_size",
            Invalid::MaxConnections(_) => "max_connections",
            Invalid::LogLevel(_) => "log_level",
            Invalid::ErrorPage404(_) | Invalid::ErrorPage404Twice => "error_page_404",
            Invalid::ErrorPageStatus(_) | Invalid::ErrorPage { .. } => "error_pages",
            Invalid::Fallback(_) => "fallback",
            Invalid::DefaultType(_) => "default_type",
            Invalid::MimeType { .. } => "mime_types",
            Invalid::PrecompressedTwice(_) => "precompressed",
            Invalid::MaxRanges(_) => "max_ranges",
            Invalid::CacheMaxFile(_) => "cache_max_file",
            Invalid::RuleMatch { .. } | Invalid::RuleHeader { .. } => "rules",
            Invalid::MetricsListenTwice(_) | Invalid::MetricsListenClash { .. } => "metrics_listen",
        }
    }
}

impl Config {
    /// Load and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_source(path).map(|(c, _)| c)
    }

    /// Load and validate a file, and keep its text to point at lines later.
    pub fn load_with_source(path: &Path) -> Result<(Config, Source), ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: name.clone(),
            source: e,
        })?;
        let cfg = Self::parse(&text, &name)?;
        Ok((cfg, Source { path: name, text }))
    }

    /// Every top-level key, as the schema knows it.
    pub fn keys() -> &'static [&'static str] {
        struct_fields::<Config>()
    }

    /// Parse and validate TOML text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let parse_error = |source: toml::de::Error| ConfigError::Parse {
            path: name.to_string(),
            line: source.span().map(|s| line_of(s.start)),
            source: Box::new(source),
        };
        // Syntax first, then the keys (so a typo is named as one, with the
        // key it was probably meant to be), then the values.
        let doc = toml::de::DeTable::parse(text).map_err(parse_error)?;
        match unknown_keys(doc.get_ref(), Self::keys(), struct_fields::<Rule>()) {
            Ok(()) => {}
            Err(KeyProblem::Unknown(u)) => {
                return Err(ConfigError::UnknownKey {
                    path: name.to_string(),
                    line: Some(line_of(u.at)),
                    table: u.table,
                    key: u.key,
                    suggestion: u.suggestion,
                    misplaced: u.misplaced,
                });
            }
            Err(KeyProblem::Rules(r)) => {
                return Err(ConfigError::Shape {
                    path: name.to_string(),
                    line: Some(line_of(r.at)),
                    key: "rules",
                    message: r.message,
                });
            }
        }
        let cfg: Config = toml::from_str(text).map_err(parse_error)?;
        cfg.validate().map_err(|source| ConfigError::Invalid {
            path: name.to_string(),
            line: key_line(text, source.key()),
            source,
        })?;
        Ok(cfg)
    }

    /// A `metrics_listen` address that a `listen` address also takes (the
    /// same port on the same or a wildcard address): both cannot be bound.
    /// Checked again after `--listen` replaces `listen`.
    pub fn metrics_clash(&self) -> Result<(), Invalid> {
        for m in &self.metrics_listen {
            if let Some(l) = self.listen.iter().find(|l| same_socket(l, m)) {
                return Err(Invalid::MetricsListenClash {
                    metrics: *m,
                    listen: *l,
                });
            }
        }
        Ok(())
    }

    /// Check values serde cannot.
    fn validate(&self) -> Result<(), Invalid> {
        if self.listen.is_empty() {
            return Err(Invalid::NoListen);
        }
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(a) {
                return Err(Invalid::ListenTwice(*a));
            }
        }
        for (i, m) in self.metrics_listen.iter().enumerate() {
            if self.metrics_listen[..i].contains(m) {
                return Err(Invalid::MetricsListenTwice(*m));
            }
        }
        self.metrics_clash()?;
        if self.index.0.is_empty() {
            return Err(Invalid::Index(String::new()));
        }
        for name in &self.index.0 {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Invalid::Index(name.clone()));
            }
        }
        for (key, d, zero_ok) in [
            ("keepalive_timeout", self.keepalive_timeout.0, true),
            ("header_timeout", self.header_timeout.0, false),
            ("send_timeout", self.send_timeout.0, false),
            ("shutdown_timeout", self.shutdown_timeout.0, true),
        ] {
            if d > MAX_TIMEOUT {
                return Err(Invalid::TimeoutTooLong {
                    key,
                    secs: d.as_secs(),
                });
            }
            if d.is_zero() && !zero_ok {
                return Err(Invalid::TimeoutZero { key });
            }
        }
        if !(256..=MAX_HEADER_SIZE).contains(&self.max_header_size) {
            return Err(Invalid::MaxHeaderSize(self.max_header_size));
        }
        if self.max_target_size < 16 || self.max_target_size > self.max_header_size {
            return Err(Invalid::MaxTargetSize {
                value: self.max_target_size,
                max_header_size: self.max_header_size,
            });
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(Invalid::MaxConnections(self.max_connections));
        }
        if crate::log::Level::parse(&self.log_level).is_none() {
            return Err(Invalid::LogLevel(self.log_level.clone()));
        }
        if let Some(p) = &self.error_page_404 {
            if !under_root(p) && !p.is_empty() {
                return Err(Invalid::ErrorPage404(p.clone()));
            }
            // Both keys name a 404 page, unless error_pages is its default.
            let default_pages = self.error_pages.len() == 1
                && self.error_pages.get("404").is_some_and(|p| p == "404.html");
            if self.error_pages.contains_key("404") && !default_pages {
                return Err(Invalid::ErrorPage404Twice);
            }
        }
        for (status, page) in &self.error_pages {
            if !matches!(status.parse::<u16>(), Ok(400..=599)) || status.len() != 3 {
                return Err(Invalid::ErrorPageStatus(status.clone()));
            }
            if !under_root(page) {
                return Err(Invalid::ErrorPage {
                    status: status.clone(),
                    page: page.clone(),
                });
            }
        }
        if !self.fallback.is_empty() && !under_root(&self.fallback) {
            return Err(Invalid::Fallback(self.fallback.clone()));
        }
        if !is_media_type(&self.default_type) {
            return Err(Invalid::DefaultType(self.default_type.clone()));
        }
        for (ext, value) in &self.mime_types {
            let why = if ext.is_empty() || ext.contains(['.', '/']) {
                "the extension must be given without its dot"
            } else if !is_media_type(value) {
                "not a media type (like \"application/wasm\")"
            } else {
                continue;
            };
            return Err(Invalid::MimeType {
                ext: ext.clone(),
                value: value.clone(),
                why,
            });
        }
        for (i, e) in self.precompressed.iter().enumerate() {
            if self.precompressed[..i].contains(e) {
                return Err(Invalid::PrecompressedTwice(e.token()));
            }
        }
        if self.cache_max_file > MAX_CACHE_FILE {
            return Err(Invalid::CacheMaxFile(self.cache_max_file));
        }
        if self.max_ranges > MAX_RANGES {
            return Err(Invalid::MaxRanges(self.max_ranges));
        }
        for rule in &self.rules {
            if let Err(e) = rule.glob() {
                return Err(Invalid::RuleMatch {
                    pattern: rule.pattern.clone(),
                    why: e.kind().to_string(),
                });
            }
            for (name, value) in &rule.headers {
                let why = if name.is_empty() || !name.bytes().all(is_tchar) {
                    "not a header field name"
                } else if RULE_FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    "set by the server, a rule cannot set it"
                } else if !is_field_value(value) {
                    "the value has a control character (CR, LF, NUL...)"
                } else {
                    continue;
                };
                return Err(Invalid::RuleHeader {
                    pattern: rule.pattern.clone(),
                    name: name.clone(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// `log_level` as a level (validated, so it always parses).
    pub fn level(&self) -> crate::log::Level {
        crate::log::Level::parse(&self.log_level).unwrap_or(crate::log::Level::Info)
    }

    /// The error pages by status, the old `error_page_404` included.
    pub fn error_pages(&self) -> Vec<(u16, String)> {
        let mut pages: BTreeMap<u16, String> = self
            .error_pages
            .iter()
            .filter_map(|(s, p)| Some((s.parse().ok()?, p.clone())))
            .collect();
        if let Some(p) = &self.error_page_404 {
            pages.insert(404, p.clone());
        }
        pages.retain(|_, p| !p.is_empty());
        pages.into_iter().collect()
    }
}

/// Would binding both addresses clash? The same port (not 0, which picks a
/// free one) on the same address, or where one is a wildcard covering the
/// other: `0.0.0.0` covers IPv4, `[::]` (dual-stack by default) both families.
fn same_socket(a: &SocketAddr, b: &SocketAddr) -> bool {
    let covers =
        |w: &SocketAddr, x: &SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || x.is_ipv4());
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// A path that stays under the root: relative, no `..` segment, no NUL.
fn under_root(p: &str) -> bool {
    !p.is_empty() && !p.contains('\0') && !p.split('/').any(|s| s == "..")
}

/// RFC 9110 `tchar`: what a header field name is made of.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field value without control characters other than tab.
pub fn is_field_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `type/subtype` with optional parameters, all of it a valid field value.
fn is_media_type(v: &str) -> bool {
    let essence = v.split(';').next().unwrap_or("").trim();
    is_field_value(v)
        && essence.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty() && !s.is_empty() && (t.bytes().chain(s.bytes())).all(is_tchar)
        })
}

/// The 1-based line where top-level `key` is assigned, if it is.
fn key_line(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let table = format!("[{key}]");
    let array = format!("[[{key}]]");
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            if l.starts_with(&table) || l.starts_with(&array) {
                return true;
            }
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

    #[test]
    fn errors_are_typed_with_file_and_line() {
        // A value validation rejects: its variant, its key's line.
        let e = Config::parse("root = \"x\"\n\nmax_connections = 0\n", "t.toml").unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigError::Invalid { path, line: Some(3), source: Invalid::MaxConnections(0) }
                    if path == "t.toml"
            ),
            "{e:?}"
        );
        assert_eq!(e.line(), Some(3));
        let e = Config::parse("listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n", "t").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { source: Invalid::ListenTwice(a), .. } if a.port() == 1),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "t:1: listen: 127.0.0.1:1 is listed twice");
        // Invalid only next to another value: the key is not in the file, so
        // the message names the file alone (no made-up line).
        let e = Config::parse("max_header_size = 256\n", "t.toml").unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigError::Invalid {
                    line: None,
                    source: Invalid::MaxTargetSize {
                        value: 4096,
                        max_header_size: 256
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "t.toml: max_target_size: must be between 16 and max_header_size (256), not 4096"
        );
        // Every validation error names the key it is about, first.
        for text in [
            "listen = []",
            "index = \"a/b\"",
            "header_timeout = 0",
            "send_timeout = \"25h\"",
            "max_header_size = 100",
            "max_target_size = 1",
            "max_connections = 0",
            "log_level = \"loud\"",
            "error_page_404 = \"../x\"",
        ] {
            let key = text.split(' ').next().unwrap();
            match Config::parse(&format!("\n{text}\n"), "t.toml") {
                Err(ConfigError::Invalid { line, source, .. }) => {
                    assert_eq!(source.key(), key, "{text}");
                    assert!(
                        source.to_string().starts_with(&format!("{key}: ")),
                        "{source}"
                    );
                    assert_eq!(line, Some(2), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Syntax and schema errors are Parse errors with the parser's line.
        let e = Config::parse("root = \"x\"\nthis is not toml\n", "t.toml").unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { line: Some(2), .. }),
            "{e:?}"
        );
        let e = Config::load(Path::new("/nonexistent/tandem.toml")).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert_eq!(e.line(), None);
    }

    /// `key = VALUE` on line 2 of t.toml: the whole message.
    fn message(text: &str) -> String {
        Config::parse(&format!("# tandem\n{text}\n"), "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn wrong_types_say_what_the_key_accepts() {
        for (text, want) in [
            (
                "workers = true",
                "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got true",
            ),
            (
                "workers = \"many\"",
                "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got \"many\"",
            ),
            (
                "workers = 0",
                "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got 0",
            ),
            (
                "workers = 2000",
                "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got 2000",
            ),
            (
                "listen = [\"127.0.0.1:99999\"]",
                "t.toml:2: listen: \"127.0.0.1:99999\" is not an address like \"127.0.0.1:8080\" or \"[::]:80\"",
            ),
            (
                "listen = [\"localhost:80\"]",
                "t.toml:2: listen: \"localhost:80\" is not an address like \"127.0.0.1:8080\" or \"[::]:80\"",
            ),
            (
                "listen = [8080]",
                "t.toml:2: listen: 8080 is not an address like \"127.0.0.1:8080\" or \"[::]:80\"",
            ),
            (
                "listen = \"127.0.0.1:8080\"",
                "t.toml:2: listen: expected a list of addresses like [\"127.0.0.1:8080\", \"[::]:80\"], got \"127.0.0.1:8080\"",
            ),
            (
                "root = 3",
                "t.toml:2: root: expected a directory path, got 3",
            ),
            (
                "root = \"\"",
                "t.toml:2: root: expected a directory path, got \"\"",
            ),
            (
                "index = 3",
                "t.toml:2: index: expected a file name or a list of file names, like [\"index.html\", \"index.htm\"], got 3",
            ),
            (
                "index = [\"a\", 1]",
                "t.toml:2: index: expected a file name or a list of file names, like [\"index.html\", \"index.htm\"], got [\"a\", 1]",
            ),
            (
                "engine = \"kqueue\"",
                "t.toml:2: engine: expected \"auto\", \"epoll\" or \"io_uring\", got \"kqueue\"",
            ),
            (
                "daemon = \"yes\"",
                "t.toml:2: daemon: expected true or false, got \"yes\"",
            ),
            (
                "pidfile = 1",
                "t.toml:2: pidfile: expected a file path, got 1",
            ),
            ("user = 33", "t.toml:2: user: expected a user name, got 33"),
            (
                "group = []",
                "t.toml:2: group: expected a group name, got []",
            ),
            (
                "access_log = 1",
                "t.toml:2: access_log: expected a file path, \"stderr\" or \"off\", got 1",
            ),
            (
                "error_log = \"\"",
                "t.toml:2: error_log: expected a file path, \"stderr\" or \"off\", got \"\"",
            ),
            (
                "log_level = 3",
                "t.toml:2: log_level: expected \"error\", \"warn\", \"info\" or \"debug\", got 3",
            ),
            (
                "keepalive_timeout = true",
                "t.toml:2: keepalive_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got true",
            ),
            (
                "header_timeout = \"5 fortnights\"",
                "t.toml:2: header_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got \"5 fortnights\"",
            ),
            (
                "send_timeout = -1",
                "t.toml:2: send_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got -1",
            ),
            (
                "shutdown_timeout = 1.5",
                "t.toml:2: shutdown_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got 1.5",
            ),
            (
                "max_header_size = \"big\"",
                "t.toml:2: max_header_size: expected a number of bytes, got \"big\"",
            ),
            (
                "max_target_size = -5",
                "t.toml:2: max_target_size: expected a number of bytes, got -5",
            ),
            (
                "max_body_size = \"1M\"",
                "t.toml:2: max_body_size: expected a number of bytes, got \"1M\"",
            ),
            (
                "max_connections = false",
                "t.toml:2: max_connections: expected a number of connections, got false",
            ),
            (
                "serve_dotfiles = 1",
                "t.toml:2: serve_dotfiles: expected true or false, got 1",
            ),
            (
                "error_page_404 = 404",
                "t.toml:2: error_page_404: expected a page path under the root, got 404",
            ),
            (
                "error_pages = \"404.html\"",
                "t.toml:2: error_pages: expected a table of pages by status, like { 404 = \"404.html\", 500 = \"50x.html\" }, got \"404.html\"",
            ),
            (
                "error_pages = { 404 = 1 }",
                "t.toml:2: error_pages: 404: expected a page path under the root, got 1",
            ),
            (
                "autoindex = \"on\"",
                "t.toml:2: autoindex: expected true or false, got \"on\"",
            ),
            (
                "fallback = false",
                "t.toml:2: fallback: expected a page path under the root, or \"\" for none, got false",
            ),
            (
                "default_type = []",
                "t.toml:2: default_type: expected a media type like \"application/octet-stream\", got []",
            ),
            (
                "mime_types = [\"wasm\"]",
                "t.toml:2: mime_types: expected a table of media types by extension, like { wasm = \"application/wasm\" }, got [\"wasm\"]",
            ),
            (
                "mime_types = { wasm = true }",
                "t.toml:2: mime_types: wasm: expected a media type like \"application/wasm\", got true",
            ),
            (
                "precompressed = \"br\"",
                "t.toml:2: precompressed: expected a list of \"br\", \"zstd\" and \"gzip\" (or [] for none), got \"br\"",
            ),
            (
                "precompressed = [\"lzma\"]",
                "t.toml:2: precompressed: \"lzma\" is not one of \"br\", \"zstd\", \"gzip\"",
            ),
            (
                "max_ranges = \"all\"",
                "t.toml:2: max_ranges: expected a number of ranges from 0 to 1024, got \"all\"",
            ),
            (
                "symlinks = \"follow\"",
                "t.toml:2: symlinks: expected \"within_root\" or \"deny\", got \"follow\"",
            ),
            (
                "rules = \"x\"",
                "t.toml:2: rules: expected [[rules]] entries with match = \"<glob>\" and headers = { ... }, got string",
            ),
            (
                "rules = [1]",
                "t.toml:2: rules: each rule is a table with match = \"<glob>\" and headers = { ... }, got integer",
            ),
            (
                "[rules]\nmatch = \"*\"",
                "t.toml:2: rules: write each rule as a [[rules]] entry (two brackets), not [rules]",
            ),
            (
                "[[rules]]\nheaders = {}",
                "t.toml:2: rules: a rule needs match = \"<glob>\" (like \"/assets/**\" or \"*.css\")",
            ),
            (
                "[[rules]]\nmatch = 3",
                "t.toml:3: rules: match: expected a glob like \"/assets/**\" or \"*.css\", got 3",
            ),
            (
                "[[rules]]\nmatch = \"*\"\nheaders = \"x\"",
                "t.toml:4: rules: headers: expected a table of header fields, like { \"Cache-Control\" = \"max-age=3600\" }, got \"x\"",
            ),
            (
                "[[rules]]\nmatch = \"*\"\nheaders = { \"X-A\" = 1 }",
                "t.toml:4: rules: headers: X-A: expected a header value (a string), got 1",
            ),
            // Unknown keys: their line, and the key meant when it is close.
            (
                "lisen = [\"127.0.0.1:80\"]",
                "t.toml:2: unknown key `lisen`; did you mean `listen`?",
            ),
            (
                "keepalive = \"5s\"",
                "t.toml:2: unknown key `keepalive`; did you mean `keepalive_timeout`?",
            ),
            ("bogus_key = 1", "t.toml:2: unknown key `bogus_key`"),
            (
                "[[rules]]\nmatch = \"*\"\nheader = {}",
                "t.toml:4: rules: unknown key `header`; did you mean `headers`?",
            ),
            (
                "[[rules]]\nmatch = \"*\"\nroot = \"x\"",
                "t.toml:4: rules: unknown key `root` (`root` is a top-level key: keys below a [[rules]] header belong to that entry, so put it above the first one)",
            ),
        ] {
            assert_eq!(message(text), want, "{text}");
        }
    }

    /// Every key, given a value no key takes: the message starts with the
    /// key (after FILE:LINE) and has none of serde's own words.
    #[test]
    fn every_key_has_a_message_in_config_terms() {
        assert!(Config::keys().len() >= 31, "{:?}", Config::keys());
        for key in Config::keys() {
            for bad in ["1979-05-27T07:32:00Z", "{ x = [1] }", "[[1]]"] {
                let m = message(&format!("{key} = {bad}"));
                assert!(
                    m.starts_with(&format!("t.toml:2: {key}: ")),
                    "{key} = {bad}: {m}"
                );
                for serde_word in [
                    "invalid type",
                    "untagged",
                    "sequence",
                    "usize",
                    "u64",
                    "variant",
                    "struct",
                    "map",
                ] {
                    assert!(!m.contains(serde_word), "{key} = {bad}: {m}");
                }
            }
        }
    }

    #[test]
    fn observability_keys() {
        let c = Config::parse(
            "listen = [\"0.0.0.0:8080\"]\nmetrics_listen = [\"0.0.0.0:9145\", \"[::1]:9145\"]\naccess_log_format = \"json\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.metrics_listen.len(), 2);
        assert_eq!(c.access_log_format, LogFormat::Json);
        let d = Config::default();
        assert!(d.metrics_listen.is_empty());
        assert_eq!(d.access_log_format, LogFormat::Combined);
        // Port 0 picks a free port for each: no clash.
        assert!(
            Config::parse(
                "listen = [\"127.0.0.1:0\"]\nmetrics_listen = [\"127.0.0.1:0\"]",
                "t"
            )
            .is_ok()
        );
        for (listen, metrics) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "0.0.0.0:8080"),
            ("[::]:8080", "127.0.0.1:8080"),
        ] {
            let text = format!("listen = [\"{listen}\"]\n\nmetrics_listen = [\"{metrics}\"]\n");
            match Config::parse(&text, "t.toml") {
                Err(
                    e @ ConfigError::Invalid {
                        line: Some(3),
                        source: Invalid::MetricsListenClash { .. },
                        ..
                    },
                ) => {
                    assert!(
                        e.to_string().starts_with("t.toml:3: metrics_listen: "),
                        "{e}"
                    );
                }
                other => panic!("{listen} / {metrics}: {other:?}"),
            }
        }
        for (listen, metrics) in [
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("0.0.0.0:8080", "[::1]:8080"),
            ("127.0.0.1:8080", "127.0.0.1:9145"),
        ] {
            let text = format!("listen = [\"{listen}\"]\nmetrics_listen = [\"{metrics}\"]\n");
            assert!(Config::parse(&text, "t").is_ok(), "{listen} / {metrics}");
        }
        let e =
            Config::parse("metrics_listen = [\"127.0.0.1:9\", \"127.0.0.1:9\"]", "t").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    source: Invalid::MetricsListenTwice(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(matches!(
            Config::parse("\naccess_log_format = \"xml\"\n", "t"),
            Err(ConfigError::Parse { line: Some(2), .. })
        ));
    }

    #[test]
    fn content_keys() {
        let c = Config::parse(
            "index = [\"index.htm\", \"default.html\"]\nerror_pages = { 404 = \"nf.html\", 503 = \"busy.html\" }\n\
             mime_types = { WASM = \"application/wasm\" }\nprecompressed = [\"gzip\"]\nsymlinks = \"deny\"\n\
             [[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=60\" }\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.index.0, ["index.htm", "default.html"]);
        assert_eq!(
            c.error_pages(),
            [(404, "nf.html".to_string()), (503, "busy.html".to_string())]
        );
        assert_eq!(c.precompressed, [Encoding::Gzip]);
        assert_eq!(c.symlinks, Symlinks::Deny);
        let g = c.rules[0].glob().unwrap();
        assert!(g.is_match("/a/b/x.css") && g.is_match("/x.css") && !g.is_match("/x.css/y"));
        let g = Rule {
            pattern: "/assets/*".into(),
            headers: BTreeMap::new(),
        }
        .glob()
        .unwrap();
        assert!(g.is_match("/assets/a.js") && !g.is_match("/assets/a/b.js"));
        assert_eq!(
            Config::parse("index = \"home.htm\"", "t").unwrap().index.0,
            ["home.htm"]
        );
        // The old key still works, alone; "" turns the page off.
        let c = Config::parse("error_page_404 = \"e/nf.html\"", "t").unwrap();
        assert_eq!(c.error_pages(), [(404, "e/nf.html".to_string())]);
        assert!(
            Config::parse("error_page_404 = \"\"", "t")
                .unwrap()
                .error_pages()
                .is_empty()
        );
        assert!(
            Config::parse("precompressed = []", "t")
                .unwrap()
                .precompressed
                .is_empty()
        );
        // Each bad value names its key and line.
        for (text, key) in [
            ("index = []", "index"),
            ("index = [\"a\", \"..\"]", "index"),
            ("error_pages = { 200 = \"x.html\" }", "error_pages"),
            ("error_pages = { 4040 = \"x.html\" }", "error_pages"),
            ("error_pages = { 404 = \"../x.html\" }", "error_pages"),
            (
                "error_page_404 = \"x\"\nerror_pages = { 404 = \"y\" }",
                "error_page_404",
            ),
            ("fallback = \"../index.html\"", "fallback"),
            ("default_type = \"nonsense\"", "default_type"),
            (
                "mime_types = { \".wasm\" = \"application/wasm\" }",
                "mime_types",
            ),
            ("mime_types = { wasm = \"a/b\\r\\nX: y\" }", "mime_types"),
            ("precompressed = [\"br\", \"br\"]", "precompressed"),
            ("max_ranges = 5000", "max_ranges"),
            ("[[rules]]\nmatch = \"/a/[\"\n", "rules"),
            (
                "[[rules]]\nmatch = \"*\"\nheaders = { \"Content-Length\" = \"1\" }\n",
                "rules",
            ),
            (
                "[[rules]]\nmatch = \"*\"\nheaders = { \"X-A\" = \"a\\nb\" }\n",
                "rules",
            ),
            (
                "[[rules]]\nmatch = \"*\"\nheaders = { \"X A\" = \"a\" }\n",
                "rules",
            ),
        ] {
            match Config::parse(&format!("\n{text}\n"), "t.toml") {
                Err(ConfigError::Invalid { line, source, .. }) => {
                    assert_eq!(source.key(), key, "{text}: {source}");
                    assert!(
                        source.to_string().starts_with(&format!("{key}: ")),
                        "{source}"
                    );
                    assert_eq!(line, Some(2), "{text}: {source}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Wrong types and unknown values are parse errors with a line.
        for text in [
            "precompressed = [\"lzma\"]",
            "symlinks = \"follow\"",
            "index = 3",
        ] {
            let e = Config::parse(&format!("\n{text}\n"), "t.toml").unwrap_err();
            assert!(
                matches!(e, ConfigError::Parse { line: Some(2), .. }),
                "{text}: {e:?}"
            );
        }
    }
}
