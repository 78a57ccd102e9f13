//! Validation: the checks on values that reading them cannot make (a
//! value against another, lists without repeats, paths under the root,
//! header fields a rule may set). Each failure is an [`Invalid`], which
//! names its key.

use std::net::SocketAddr;

use super::error::Invalid;
use super::limits::{MAX_CACHE_FILE, MAX_CONNECTIONS, MAX_HEADER_SIZE, MAX_RANGES, MAX_TIMEOUT};
use super::schema::{Config, key};

impl Config {
    /// The `listen` addresses, on their own and beside `metrics_listen`:
    /// what can be checked without binding. Checked again after `--listen`
    /// replaces `listen`.
    pub fn check_listen(&self) -> Result<(), Invalid> {
        listen_overlap(key::listen, &self.listen)?;
        self.metrics_clash()?;
        self.tls_clash()
    }

    /// A `tls_listen` address that a `listen` or `metrics_listen` address
    /// also takes.
    fn tls_clash(&self) -> Result<(), Invalid> {
        listen_overlap(key::tls_listen, &self.tls_listen)?;
        for t in &self.tls_listen {
            let other = self.listen.iter().chain(&self.metrics_listen);
            if let Some(l) = other.clone().find(|l| same_socket(l, t)) {
                return Err(Invalid::TlsListenClash {
                    tls: *t,
                    listen: *l,
                });
            }
        }
        Ok(())
    }

    /// `tls_listen` has certificates, each with both files named. (That
    /// the files can serve is checked at start, by `-t` and on reload.)
    fn check_tls(&self) -> Result<(), Invalid> {
        if !self.tls_listen.is_empty() && self.tls_certificates.is_empty() {
            return Err(Invalid::TlsNoCertificate);
        }
        for (entry, c) in self.tls_certificates.iter().enumerate() {
            for (missing, p) in [("cert", &c.cert), ("key", &c.key)] {
                if p.as_os_str().is_empty() {
                    return Err(Invalid::TlsCertificateIncomplete { entry, missing });
                }
            }
        }
        Ok(())
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

    /// Check values serde cannot: every problem found, in this order (one
    /// a check: the first bad `index` name, the first clashing address...).
    pub(super) fn validate(&self) -> Vec<Invalid> {
        let mut found = Vec::new();
        if self.listen.is_empty() {
            found.push(Invalid::NoListen);
        }
        for check in [
            listen_overlap(key::metrics_listen, &self.metrics_listen),
            self.check_listen(),
            self.check_index(),
            self.check_limits(),
            self.check_pages(),
            self.check_types(),
            self.check_tls(),
            self.check_rules(),
        ] {
            if let Err(e) = check
                && !found.contains(&e)
            {
                found.push(e);
            }
        }
        found
    }

    fn check_index(&self) -> Result<(), Invalid> {
        if self.index.0.is_empty() {
            return Err(Invalid::Index(String::new()));
        }
        for name in &self.index.0 {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Invalid::Index(name.clone()));
            }
        }
        Ok(())
    }

    /// Timeouts and sizes: in range, and the target within the head.
    fn check_limits(&self) -> Result<(), Invalid> {
        for (name, d, zero_ok) in [
            (key::keepalive_timeout, self.keepalive_timeout.0, true),
            (key::header_timeout, self.header_timeout.0, false),
            (key::send_timeout, self.send_timeout.0, false),
            (key::shutdown_timeout, self.shutdown_timeout.0, true),
            (key::shutdown_delay, self.shutdown_delay.0, true),
        ] {
            if d > MAX_TIMEOUT {
                return Err(Invalid::TimeoutTooLong {
                    key: name,
                    secs: d.as_secs(),
                });
            }
            if d.is_zero() && !zero_ok {
                return Err(Invalid::TimeoutZero { key: name });
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
        for (key, v) in [
            (
                key::h2_max_concurrent_streams,
                self.h2_max_concurrent_streams,
            ),
            (key::h2_max_resets_per_second, self.h2_max_resets_per_second),
            (
                key::h2_max_control_frames_per_second,
                self.h2_max_control_frames_per_second,
            ),
        ] {
            if v == 0 {
                return Err(Invalid::Zero { key });
            }
        }
        Ok(())
    }

    /// Error pages and the fallback: paths under the root, real statuses.
    fn check_pages(&self) -> Result<(), Invalid> {
        if let Some(p) = &self.error_page_404 {
            if !under_root(p) && !p.is_empty() {
                return Err(Invalid::ErrorPage404(p.clone()));
            }
            // Both keys name a 404 page, unless error_pages is its default.
            let default_pages = self.error_pages == Config::default().error_pages;
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
        Ok(())
    }

    /// Media types, variants, the cache and ranges.
    fn check_types(&self) -> Result<(), Invalid> {
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
        Ok(())
    }

    fn check_rules(&self) -> Result<(), Invalid> {
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
fn listen_overlap(list: &'static str, addrs: &[SocketAddr]) -> Result<(), Invalid> {
    let metrics = list == key::metrics_listen;
    for (i, a) in addrs.iter().enumerate() {
        if let SocketAddr::V6(v6) = a
            && v6.ip().to_ipv4_mapped().is_some()
        {
            return Err(Invalid::ListenMapped {
                key: list,
                addr: *a,
            });
        }
        if addrs[..i].contains(a) {
            return Err(match metrics {
                false => Invalid::ListenTwice(*a),
                true => Invalid::MetricsListenTwice(*a),
            });
        }
        if let Some(b) = addrs[..i].iter().find(|b| same_socket(a, b)) {
            return Err(Invalid::ListenOverlap {
                metrics,
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

/// RFC 9110 `tchar`: what a header field name (and a method, a coding,
/// a trailer name) is made of. The one rule for every parser of them; a
/// table, as HTTP/2 checks every request's field names by it.
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    t
};

/// A field value without control characters other than tab.
pub fn is_field_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `type/subtype` with optional parameters, all of it a valid field value.
pub(super) fn is_media_type(v: &str) -> bool {
    let essence = v.split(';').next().unwrap_or("").trim();
    is_field_value(v)
        && essence.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty() && !s.is_empty() && (t.bytes().chain(s.bytes())).all(is_tchar)
        })
}
