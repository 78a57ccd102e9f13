//! HTTP/1.1: parsing, the sans-IO connection state machine, response heads.
//! Nothing here touches a socket, a file descriptor or the clock: bytes come in,
//! `Transmit`s go out, and time is an argument.

pub mod conn;
pub mod parse;

use std::time::{Duration, Instant, SystemTime};

pub use conn::{Conn, Transmit};
pub use parse::ParseLimits;

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const NO_CONTENT: Status = Status(204);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    pub fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            304 => "Not Modified",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            414 => "URI Too Long",
            416 => "Range Not Satisfiable",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        }
    }

    /// A small built-in HTML page for this status.
    pub fn default_page(self) -> &'static [u8] {
        macro_rules! page {
            ($code:literal, $reason:literal) => {
                concat!(
                    "<!DOCTYPE html>\n<html><head><title>",
                    $code,
                    " ",
                    $reason,
                    "</title></head>\n<body><h1>",
                    $code,
                    " ",
                    $reason,
                    "</h1><hr><p>tandem</p></body></html>\n"
                )
                .as_bytes()
            };
        }
        match self.0 {
            301 => page!("301", "Moved Permanently"),
            400 => page!("400", "Bad Request"),
            403 => page!("403", "Forbidden"),
            404 => page!("404", "Not Found"),
            405 => page!("405", "Method Not Allowed"),
            408 => page!("408", "Request Timeout"),
            413 => page!("413", "Content Too Large"),
            414 => page!("414", "URI Too Long"),
            431 => page!("431", "Request Header Fields Too Large"),
            500 => page!("500", "Internal Server Error"),
            501 => page!("501", "Not Implemented"),
            503 => page!("503", "Service Unavailable"),
            505 => page!("505", "HTTP Version Not Supported"),
            _ => b"",
        }
    }
}

/// `t + d`, saturating instead of panicking: a deadline too far away to be
/// represented becomes the farthest one that is (config bounds keep real
/// values far from this; it is the last line of defence, not the limit).
pub fn later(t: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(x) = t.checked_add(d) {
            return x;
        }
        d /= 2;
    }
}

/// The time, as the engine read it once for this batch of events.
#[derive(Debug, Clone)]
pub struct Now {
    pub instant: Instant,
    /// IMF-fixdate for the Date header.
    pub date: String,
    /// Combined-log-format time (`22/Nov/2026:19:21:37 +0000`).
    pub log_time: String,
}

impl Now {
    pub fn new(instant: Instant, wall: SystemTime) -> Now {
        Now {
            instant,
            date: httpdate::fmt_http_date(wall),
            log_time: crate::log::clf_time(wall),
        }
    }
}

/// Per-connection limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub parse: ParseLimits,
    pub max_body_size: u64,
    pub keepalive_timeout: Duration,
    pub header_timeout: Duration,
    pub send_timeout: Duration,
    /// How long a closing connection keeps reading (and discarding) after its
    /// last response, so unread request bytes do not turn the close into a reset.
    pub linger_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Limits {
        Limits {
            parse: ParseLimits {
                max_header_size: c.max_header_size,
                max_target_size: c.max_target_size,
            },
            max_body_size: c.max_body_size,
            keepalive_timeout: c.keepalive_timeout.0,
            header_timeout: c.header_timeout.0,
            send_timeout: c.send_timeout.0,
            linger_timeout: Duration::from_secs(2),
        }
    }

    /// Input a connection may hold unprocessed before its engine stops reading.
    pub fn max_buffered(&self) -> usize {
        self.parse.max_header_size + 16 * 1024
    }
}

/// What a `Conn` needs from its worker for one call.
pub struct Ctx<'a> {
    pub now: &'a Now,
    pub files: &'a crate::files::Responder,
    pub limits: &'a Limits,
    /// The worker's access-log buffer; `None` when the access log is off.
    pub log: Option<&'a mut Vec<u8>>,
    /// On `begin_shutdown`, how long an idle keep-alive connection stays open
    /// for one more request (answered with `Connection: close`), so that
    /// busy clients learn of the close from a response instead of a race.
    /// Zero closes idle connections at once.
    pub drain_grace: Duration,
}
