//! Config errors: what is wrong, in which file and on which line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{MAX_CACHE_FILE, MAX_CONNECTIONS, MAX_HEADER_SIZE, MAX_RANGES, MAX_TIMEOUT, key_line};

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
    /// The file sets no key at all: empty, or only comments and blank
    /// lines (a file caught mid-write). Refused rather than read as "all
    /// defaults"; no file at all (no `-c`) is how to run on the defaults.
    #[error(
        "{path}: the file sets nothing (it is empty, or only comments): refusing it rather than \
         running on built-in defaults; set at least `listen` and `root` (or start without -c \
         for the defaults)"
    )]
    Empty { path: String },
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
            ConfigError::Read { .. } | ConfigError::Empty { .. } => None,
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
    pub(super) text: String,
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
    /// Two addresses of `listen` (or of `metrics_listen`, with `metrics`)
    /// that take the same port: a wildcard and an address it covers.
    #[error(
        "{}: {a} and {b} take the same port ({} covers the other): list one of them \
         ([::]:P is IPv6 only, so 0.0.0.0:P beside it is how to get both families)",
        if *metrics { "metrics_listen" } else { "listen" },
        if a.ip().is_unspecified() { a } else { b }
    )]
    ListenOverlap {
        metrics: bool,
        a: SocketAddr,
        b: SocketAddr,
    },
    #[error(
        "{key}: {addr} is an IPv4-mapped address; write it as {}",
        unmapped(addr)
    )]
    ListenMapped { key: &'static str, addr: SocketAddr },
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
    RuleMatch {
        /// Which `[[rules]]` entry, from 0.
        rule: usize,
        pattern: String,
        why: String,
    },
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
        /// Which `[[rules]]` entry, from 0.
        rule: usize,
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
            Invalid::ListenOverlap { metrics: false, .. } => "listen",
            Invalid::ListenOverlap { metrics: true, .. } => "metrics_listen",
            Invalid::ListenMapped { key, .. } => key,
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

    /// For a bad rule: which entry (from 0), and the header field name the
    /// problem is with (None: its `match`). Its line is that key's.
    pub fn rule_key(&self) -> Option<(usize, Option<&str>)> {
        match self {
            Invalid::RuleMatch { rule, .. } => Some((*rule, None)),
            Invalid::RuleHeader { rule, name, .. } => Some((*rule, Some(name))),
            _ => None,
        }
    }
}

/// An IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]:80`) as IPv4.
fn unmapped(a: &SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), a.port()),
            None => *a,
        },
        SocketAddr::V4(_) => *a,
    }
}
