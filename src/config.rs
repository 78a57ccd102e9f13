//! The TOML configuration: schema, defaults and validation.
//!
//! Every key has a default, so no config file at all runs on the defaults;
//! but a file that sets nothing (empty, or only comments) is an error, as it
//! is for nginx: it is what an editor or a config tool caught mid-write
//! leaves behind, and reloading it would move the server to 127.0.0.1:8080.
//! Unknown keys are errors that name their line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod de;
mod error;
pub use de::parse_address;
use de::*;
pub use error::*;

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
    /// field replaces an earlier one's of the same name, except `Vary`,
    /// whose members add up (and to the server's own).
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

/// Header fields a rule may not set (lower case): the connection's framing,
/// the fields the server owns (`Date`, `Server`, a redirect's `Location`),
/// and the representation metadata it computes from the file (its
/// validators, coding, ranges). A rule's `Content-Type` is allowed unless it
/// names a multipart type, and its `Vary` is merged with the server's; see
/// [`rule_header_problem`].
pub const RULE_FORBIDDEN_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "date",
    "server",
    "location",
    "etag",
    "last-modified",
    "content-encoding",
    "content-range",
    "accept-ranges",
];

/// Why a rule may not set `name: value`, or None when it may.
pub fn rule_header_problem(name: &str, value: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    Some(if name.is_empty() || !name.bytes().all(is_tchar) {
        "not a header field name"
    } else if RULE_FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        "set by the server, a rule cannot set it"
    } else if !is_field_value(value) {
        "the value has a control character (CR, LF, NUL...)"
    } else if lower == "content-type" && !is_media_type(value) {
        "not a media type (like \"text/plain; charset=utf-8\")"
    } else if lower == "content-type"
        && value
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/")
    {
        "a multipart type is the server's to set (multipart/byteranges), a rule cannot set it"
    } else if lower == "vary"
        && !value
            .split(',')
            .map(str::trim)
            .all(|t| !t.is_empty() && (t == "*" || t.bytes().all(is_tchar)))
    {
        "not a list of header field names (like \"Origin, Accept-Language\")"
    } else {
        return None;
    })
}

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
    /// Graceful stop: how long tandem keeps accepting after SIGTERM, with
    /// /healthz already 503, so a balancer moves away before the listeners
    /// close (the drain, and shutdown_timeout, come after it).
    #[serde(deserialize_with = "de_shutdown_delay")]
    pub shutdown_delay: Dur,
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
            shutdown_delay: Dur(Duration::ZERO),
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
        if doc.get_ref().is_empty() {
            return Err(ConfigError::Empty {
                path: name.to_string(),
            });
        }
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
            line: source
                .rule_key()
                .and_then(|(rule, header)| rule_key_at(doc.get_ref(), rule, header))
                .map(line_of)
                .or_else(|| key_line(text, source.key())),
            source,
        })?;
        Ok(cfg)
    }

    /// The `listen` addresses, on their own and beside `metrics_listen`:
    /// what can be checked without binding. Checked again after `--listen`
    /// replaces `listen`.
    pub fn check_listen(&self) -> Result<(), Invalid> {
        listen_overlap("listen", &self.listen)?;
        self.metrics_clash()
    }

    /// A `metrics_listen` address that a `listen` address also takes (the
    /// same port on the same or a wildcard address): both cannot be bound.
    fn metrics_clash(&self) -> Result<(), Invalid> {
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
        listen_overlap("metrics_listen", &self.metrics_listen)?;
        self.check_listen()?;
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
            ("shutdown_delay", self.shutdown_delay.0, true),
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
        for (i, rule) in self.rules.iter().enumerate() {
            if let Err(e) = rule.glob() {
                return Err(Invalid::RuleMatch {
                    rule: i,
                    pattern: rule.pattern.clone(),
                    why: e.kind().to_string(),
                });
            }
            for (name, value) in &rule.headers {
                if let Some(why) = rule_header_problem(name, value) {
                    return Err(Invalid::RuleHeader {
                        rule: i,
                        pattern: rule.pattern.clone(),
                        name: name.clone(),
                        why,
                    });
                }
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
/// other: `0.0.0.0` covers IPv4, `[::]` IPv6 (tandem's IPv6 sockets are
/// IPv6 only, see `daemon::listen`), so `0.0.0.0:80` and `[::]:80` do not.
pub fn same_socket(a: &SocketAddr, b: &SocketAddr) -> bool {
    let covers =
        |w: &SocketAddr, x: &SocketAddr| w.ip().is_unspecified() && w.is_ipv6() == x.is_ipv6();
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// The binds of one list of addresses that can be checked without binding:
/// an address listed twice, two that take the same port (a wildcard and an
/// address it covers), and an IPv4-mapped IPv6 address (an IPv6-only socket
/// cannot bind one: write it as IPv4).
fn listen_overlap(key: &'static str, addrs: &[SocketAddr]) -> Result<(), Invalid> {
    for (i, a) in addrs.iter().enumerate() {
        if let SocketAddr::V6(v6) = a
            && v6.ip().to_ipv4_mapped().is_some()
        {
            return Err(Invalid::ListenMapped { key, addr: *a });
        }
        if addrs[..i].contains(a) {
            return Err(match key {
                "listen" => Invalid::ListenTwice(*a),
                _ => Invalid::MetricsListenTwice(*a),
            });
        }
        if let Some(b) = addrs[..i].iter().find(|b| same_socket(a, b)) {
            return Err(Invalid::ListenOverlap {
                metrics: key == "metrics_listen",
                a: *b,
                b: *a,
            });
        }
    }
    Ok(())
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
mod tests;
