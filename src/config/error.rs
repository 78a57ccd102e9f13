//! Config errors: what is wrong, in which file and on which line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::keys::key_line;
use super::limits::{MAX_CACHE_FILE, MAX_CONNECTIONS, MAX_HEADER_SIZE, MAX_RANGES, MAX_TIMEOUT};
use super::schema::key;

/// At most this many problems are reported from one file (and from one
/// run of the start checks): past a screenful, the rest are most likely
/// echoes of the first ones, and a fix is read again anyway.
pub const MAX_ERRORS: usize = 20;

/// A config error, with the file and, where one is known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {}", read_problem(source))]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A key set twice in the same table; `first` is the line of the first
    /// one, when it is a top-level key.
    #[error(
        "{path}:{line}: {key} is set twice{}",
        first.map_or(String::new(), |l| format!(" (first on line {l}): keep one of them"))
    )]
    DuplicateKey {
        path: String,
        line: usize,
        key: String,
        first: Option<usize>,
    },
    /// More than one problem, each with its line: shown one a line.
    #[error("{}", several_lines(errors, *more))]
    Several {
        errors: Vec<ConfigError>,
        /// Problems past [`MAX_ERRORS`], not shown.
        more: usize,
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
    /// One error for the problems found: `None` for none, the problem
    /// itself for one, `Several` (cut at [`MAX_ERRORS`]) for more.
    pub fn several(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            n => {
                errors.truncate(MAX_ERRORS);
                Some(ConfigError::Several {
                    more: n - errors.len(),
                    errors,
                })
            }
        }
    }

    /// Each problem (one, unless `Several`), to show one a line.
    pub fn each(&self) -> Vec<String> {
        match self {
            ConfigError::Several { errors, more } => {
                let mut v: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                v.extend(more_line(*more));
                v
            }
            e => vec![e.to_string()],
        }
    }

    /// The line the error is about, if known (the first one's, for several).
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Several { errors, .. } => errors.first().and_then(|e| e.line()),
            ConfigError::DuplicateKey { line, .. } => Some(*line),
            ConfigError::Read { .. } | ConfigError::Empty { .. } => None,
            ConfigError::Parse { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::Shape { line, .. }
            | ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// A file that cannot be read, in words: no OS error number.
fn read_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: the user running tandem cannot read it".to_string()
        }
        std::io::ErrorKind::IsADirectory => "a directory, not a config file".to_string(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text: a TOML file is UTF-8".to_string(),
        _ => crate::sys::bare(e),
    }
}

/// `Several` on one line for a log or a reload's verdict: `; ` between
/// problems (`each` gives them one a line).
fn several_lines(errors: &[ConfigError], more: usize) -> String {
    let mut v: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    v.extend(more_line(more));
    v.join("; ")
}

/// `and N more problems`, when some were not shown.
pub fn more_line(more: usize) -> Option<String> {
    (more > 0).then(|| {
        format!(
            "... and {more} more problem{} (only the first {MAX_ERRORS} are shown)",
            if more == 1 { "" } else { "s" }
        )
    })
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
        .find(|(k, _)| k.get_ref() == key::pidfile)
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

/// A value that parses but is not allowed. Its message starts with the key
/// it is about (`key()`), written here once for every variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    NoListen,
    ListenTwice(SocketAddr),
    /// Two addresses of `listen` (or of `metrics_listen`, with `metrics`)
    /// that take the same port: a wildcard and an address it covers.
    ListenOverlap {
        metrics: bool,
        a: SocketAddr,
        b: SocketAddr,
    },
    ListenMapped {
        key: &'static str,
        addr: SocketAddr,
    },
    Index(String),
    TimeoutTooLong {
        key: &'static str,
        secs: u64,
    },
    TimeoutZero {
        key: &'static str,
    },
    /// A count that must be at least 1 (the `h2_` limits).
    Zero {
        key: &'static str,
    },
    MaxHeaderSize(usize),
    MaxTargetSize {
        value: usize,
        max_header_size: usize,
    },
    MaxConnections(usize),
    ErrorPage404(String),
    ErrorPage404Twice,
    ErrorPageStatus(String),
    ErrorPage {
        status: String,
        page: String,
    },
    Fallback(String),
    DefaultType(String),
    MimeType {
        ext: String,
        value: String,
        why: &'static str,
    },
    PrecompressedTwice(&'static str),
    CacheMaxFile(u64),
    MaxRanges(usize),
    RuleMatch {
        /// Which `[[rules]]` entry, from 0.
        rule: usize,
        pattern: String,
        why: String,
    },
    MetricsListenTwice(SocketAddr),
    MetricsListenClash {
        metrics: SocketAddr,
        listen: SocketAddr,
    },
    RuleHeader {
        /// Which `[[rules]]` entry, from 0.
        rule: usize,
        pattern: String,
        name: String,
        why: &'static str,
    },
    /// `tls_listen` without a certificate.
    TlsNoCertificate,
    /// A `[[tls_certificates]]` entry (from 0) without `cert` or `key`.
    TlsCertificateIncomplete {
        entry: usize,
        missing: &'static str,
    },
    /// A `tls_listen` address that a `listen` address also takes.
    TlsListenClash {
        tls: SocketAddr,
        listen: SocketAddr,
    },
}

impl Invalid {
    /// The config key the value belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            Invalid::NoListen | Invalid::ListenTwice(_) => key::listen,
            Invalid::ListenOverlap { metrics: false, .. } => key::listen,
            Invalid::ListenOverlap { metrics: true, .. } => key::metrics_listen,
            Invalid::ListenMapped { key, .. } => key,
            Invalid::Index(_) => key::index,
            Invalid::TimeoutTooLong { key, .. }
            | Invalid::TimeoutZero { key }
            | Invalid::Zero { key } => key,
            Invalid::MaxHeaderSize(_) => key::max_header_size,
            Invalid::MaxTargetSize { .. } => key::max_target_size,
            Invalid::MaxConnections(_) => key::max_connections,
            Invalid::ErrorPage404(_) | Invalid::ErrorPage404Twice => key::error_page_404,
            Invalid::ErrorPageStatus(_) | Invalid::ErrorPage { .. } => key::error_pages,
            Invalid::Fallback(_) => key::fallback,
            Invalid::DefaultType(_) => key::default_type,
            Invalid::MimeType { .. } => key::mime_types,
            Invalid::PrecompressedTwice(_) => key::precompressed,
            Invalid::MaxRanges(_) => key::max_ranges,
            Invalid::CacheMaxFile(_) => key::cache_max_file,
            Invalid::RuleMatch { .. } | Invalid::RuleHeader { .. } => key::rules,
            Invalid::MetricsListenTwice(_) | Invalid::MetricsListenClash { .. } => {
                key::metrics_listen
            }
            Invalid::TlsCertificateIncomplete { .. } => key::tls_certificates,
            Invalid::TlsNoCertificate | Invalid::TlsListenClash { .. } => key::tls_listen,
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

impl std::error::Error for Invalid {}

/// `KEY: what is wrong`.
impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.key())?;
        match self {
            Invalid::NoListen => write!(f, "at least one address is needed"),
            Invalid::TlsNoCertificate => write!(
                f,
                "needs at least one [[tls_certificates]] entry with cert and key"
            ),
            Invalid::TlsCertificateIncomplete { entry, missing } => write!(
                f,
                "entry {} has no `{missing}` (each needs cert = \"...\" and key = \"...\")",
                entry + 1
            ),
            Invalid::TlsListenClash { tls, listen } => {
                write!(f, "{tls} takes the port of listen address {listen}")
            }
            Invalid::ListenTwice(a) | Invalid::MetricsListenTwice(a) => {
                write!(f, "{a} is listed twice")
            }
            Invalid::ListenOverlap { a, b, .. } => write!(
                f,
                "{a} and {b} take the same port ({} covers the other): list one of them \
                 ([::]:P is IPv6 only, so 0.0.0.0:P beside it is how to get both families)",
                if a.ip().is_unspecified() { a } else { b }
            ),
            Invalid::ListenMapped { addr, .. } => write!(
                f,
                "{addr} is an IPv4-mapped address; write it as {}",
                unmapped(addr)
            ),
            Invalid::Index(name) => write!(f, "must be one or more plain file names, not {name:?}"),
            Invalid::TimeoutTooLong { secs, .. } => {
                write!(f, "at most {}h, not {secs}s", MAX_TIMEOUT.as_secs() / 3600)
            }
            Invalid::TimeoutZero { .. } => write!(f, "must be more than 0"),
            Invalid::Zero { .. } => write!(f, "must be at least 1"),
            Invalid::MaxHeaderSize(n) => {
                write!(f, "must be between 256 and {MAX_HEADER_SIZE}, not {n}")
            }
            Invalid::MaxTargetSize {
                value,
                max_header_size,
            } => write!(
                f,
                "must be between 16 and max_header_size ({max_header_size}), not {value}"
            ),
            Invalid::MaxConnections(n) => {
                write!(f, "must be between 1 and {MAX_CONNECTIONS}, not {n}")
            }
            Invalid::ErrorPage404(p) => write!(f, "must be a path under the root, not {p:?}"),
            Invalid::ErrorPage404Twice => write!(
                f,
                "replaced by error_pages = {{ 404 = ... }}; set one of them, not both"
            ),
            Invalid::ErrorPageStatus(s) => {
                write!(f, "{s:?} is not an error status from 400 to 599")
            }
            Invalid::ErrorPage { status, page } => {
                write!(f, "{status} must be a path under the root, not {page:?}")
            }
            Invalid::Fallback(p) => write!(f, "must be a path under the root, not {p:?}"),
            Invalid::DefaultType(t) => write!(
                f,
                "{t:?} is not a media type (like \"application/octet-stream\")"
            ),
            Invalid::MimeType { ext, value, why } => write!(f, "{ext:?} = {value:?}: {why}"),
            Invalid::PrecompressedTwice(e) => write!(f, "{e:?} is listed twice"),
            Invalid::CacheMaxFile(n) => {
                write!(f, "must be at most {MAX_CACHE_FILE} bytes, not {n}")
            }
            Invalid::MaxRanges(n) => write!(f, "must be between 0 and {MAX_RANGES}, not {n}"),
            Invalid::RuleMatch { pattern, why, .. } => write!(f, "match = {pattern:?}: {why}"),
            Invalid::MetricsListenClash { metrics, listen } => write!(
                f,
                "{metrics} is also served by listen ({listen}); give metrics its own port"
            ),
            Invalid::RuleHeader {
                pattern, name, why, ..
            } => write!(f, "match = {pattern:?}: header {name:?}: {why}"),
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
