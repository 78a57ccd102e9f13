//! HTTP/1.1: parsing, the sans-IO connection state machine, the response
//! model and response heads. Nothing here touches a socket, a file
//! descriptor, the clock or a global lock: bytes come in, `Transmit`s go
//! out, time is an argument, error-log lines go into the caller's `Notes`,
//! and each finished exchange is handed to `Ctx::exchange` as a record.
//! (The one global is the epoch of the `Stamp`s connections keep their
//! times in: set once, from the first time given, then only read.)
//! What to answer is asked of a `Respond` (the file responder, or an
//! in-memory one in tests); this module never names it.

pub mod accept;
pub mod chunked;
pub mod cond;
pub mod conn;
pub mod fds;
pub mod outq;
pub mod parse;
pub mod range;
pub mod reply;
pub mod stamp;

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::log::access::{Exchange, write_line};
use crate::log::{Level, LogFormat};
use crate::metrics::WorkerCounters;

pub use conn::{BufferPool, Conn, Transmit};
pub use fds::FdBudget;
pub use outq::OutQueue;
pub use parse::{Method, ParseLimits, Request};
pub use reply::{Body, FileRange, Headers, Reply, Segment};
pub use stamp::Stamp;

/// What answers requests: the file responder, or an in-memory one in tests.
///
/// `respond` is called for GET and HEAD (a HEAD's body is not sent, but its
/// length is announced); `Conn` answers other methods itself.
///
/// A responder is shared by a generation's workers (`&self`); what it keeps
/// per worker (the file responder's cache) is a value it makes once for
/// each worker (`local`), which that worker owns and lends to every call
/// (`Ctx::local`). The value is opaque here (`dyn Any`: this module never
/// names the responder's types, and a generic or an associated type would
/// make `Conn`, `Ctx` and the engines' `Arc<dyn Respond>` name them too);
/// the responder gets its own type back with one `downcast_mut`.
pub trait Respond {
    fn respond(
        &self,
        req: &Request<'_>,
        now: &Now,
        local: &mut dyn Any,
        notes: &mut Notes,
    ) -> Reply;

    /// This responder's state for one worker, made on that worker's thread
    /// when it starts and dropped when it ends. `stats` is the worker's
    /// `/metrics` block, for gauges of what the state holds; `fd_budget`
    /// the descriptors the worker may hold (`FdBudget`), of which the
    /// state may keep a share open. None by default.
    fn local(&self, stats: &Arc<WorkerCounters>, fd_budget: usize) -> Box<dyn Any> {
        let _ = (stats, fd_budget);
        Box::new(())
    }

    /// Descriptors ran short in this worker (an accept or an open failed
    /// with EMFILE): close what `local` keeps open. Nothing by default.
    fn shed(&self, local: &mut dyn Any) {
        let _ = local;
    }

    /// The response for an error `Conn` finds itself (a malformed request,
    /// a method other than GET/HEAD, a timeout): the built-in page, unless
    /// the responder has its own page for the status.
    fn error(&self, status: Status) -> Reply {
        Reply::status(status)
    }
}

/// Error-log lines from the sans-IO core, kept for the worker to write out
/// (with its clock, through the log's lock) after the call.
#[derive(Debug)]
pub struct Notes {
    level: Level,
    lines: Vec<(Level, String)>,
}

impl Notes {
    /// Keep lines at `level` and more severe.
    pub fn new(level: Level) -> Notes {
        Notes {
            level,
            lines: Vec::new(),
        }
    }

    pub fn wants(&self, level: Level) -> bool {
        level <= self.level
    }

    pub fn push(&mut self, level: Level, args: std::fmt::Arguments<'_>) {
        if self.wants(level) {
            self.lines.push((level, args.to_string()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The kept lines, oldest first; the buffer is left empty.
    pub fn take(&mut self) -> std::vec::Drain<'_, (Level, String)> {
        self.lines.drain(..)
    }
}

/// `note!(notes, Level, "format", args...)`: a log line into `Notes`,
/// formatted only if its level is kept.
#[macro_export]
macro_rules! note {
    ($notes:expr, $level:expr, $($t:tt)*) => {{
        let notes: &mut $crate::http::Notes = $notes;
        if notes.wants($level) {
            notes.push($level, format_args!($($t)*));
        }
    }};
}

/// What follows the status line in every HTTP/1.1 response head, up to
/// the Date field's value.
macro_rules! after_status_line {
    () => {
        "\r\nServer: tandem\r\nDate: "
    };
}

/// `Status::reason` and `Status::h1_opening`, from one table.
macro_rules! statuses {
    ($($code:literal $reason:literal),* $(,)?) => {
        pub fn reason(self) -> &'static str {
            match self.0 {
                $($code => $reason,)*
                _ => "Unknown",
            }
        }

        /// An HTTP/1.1 response head's first bytes, up to the Date field's
        /// value (`h1_opening_into` with every piece in one literal): one
        /// copy a response for the codes listed.
        fn h1_opening(self) -> Option<&'static [u8]> {
            match self.0 {
                $($code => Some(
                    concat!("HTTP/1.1 ", $code, " ", $reason, after_status_line!()).as_bytes()
                ),)*
                _ => None,
            }
        }
    };
}

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const NO_CONTENT: Status = Status(204);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const PERMANENT_REDIRECT: Status = Status(308);
    pub const BAD_REQUEST: Status = Status(400);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const PRECONDITION_FAILED: Status = Status(412);
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    statuses! {
        200 "OK",
        204 "No Content",
        206 "Partial Content",
        301 "Moved Permanently",
        304 "Not Modified",
        308 "Permanent Redirect",
        400 "Bad Request",
        403 "Forbidden",
        404 "Not Found",
        405 "Method Not Allowed",
        408 "Request Timeout",
        412 "Precondition Failed",
        413 "Content Too Large",
        414 "URI Too Long",
        416 "Range Not Satisfiable",
        431 "Request Header Fields Too Large",
        500 "Internal Server Error",
        501 "Not Implemented",
        503 "Service Unavailable",
        505 "HTTP Version Not Supported",
    }

    /// Appends an HTTP/1.1 response head's first bytes to `h`: the status
    /// line, `Server: tandem` and the `Date: ` field name.
    pub fn h1_opening_into(self, h: &mut bytes::BytesMut) {
        match self.h1_opening() {
            Some(opening) => h.extend_from_slice(opening),
            None => {
                h.extend_from_slice(b"HTTP/1.1 ");
                h.extend_from_slice(crate::log::access::decimal(u64::from(self.0), &mut [0; 20]));
                h.extend_from_slice(b" ");
                h.extend_from_slice(self.reason().as_bytes());
                h.extend_from_slice(after_status_line!().as_bytes());
            }
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
            308 => page!("308", "Permanent Redirect"),
            400 => page!("400", "Bad Request"),
            403 => page!("403", "Forbidden"),
            404 => page!("404", "Not Found"),
            405 => page!("405", "Method Not Allowed"),
            408 => page!("408", "Request Timeout"),
            412 => page!("412", "Precondition Failed"),
            413 => page!("413", "Content Too Large"),
            414 => page!("414", "URI Too Long"),
            416 => page!("416", "Range Not Satisfiable"),
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
    /// Set with `set_instant`, which keeps `stamp` in step.
    instant: Instant,
    /// `instant` as a `Stamp`, worked out once for the batch rather than
    /// once or twice a request (a `Conn`'s last-activity time).
    stamp: Stamp,
    /// The wall-clock time the Date header says, in whole seconds.
    pub wall: SystemTime,
    /// IMF-fixdate for the Date header.
    pub date: String,
}

impl Now {
    pub fn new(instant: Instant, wall: SystemTime) -> Now {
        Now {
            instant,
            stamp: Stamp::of(instant),
            wall: cond::whole_seconds(wall),
            date: httpdate::fmt_http_date(wall),
        }
    }

    /// The monotonic time of this batch of events.
    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// `instant()` as a `Stamp`.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The clock moved on within the same wall-clock second.
    pub fn set_instant(&mut self, instant: Instant) {
        self.instant = instant;
        self.stamp = Stamp::of(instant);
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
    /// The access log's line format.
    pub log_format: LogFormat,
    /// What HTTP/2 connections may do (the `h2` module).
    pub h2: H2Limits,
}

/// HTTP/2's settings and flood budgets (config `http2*`, `h2_*`).
#[derive(Debug, Clone, Copy)]
pub struct H2Limits {
    /// Plaintext connections that open with the HTTP/2 preface speak it.
    pub cleartext: bool,
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Streams a client may cancel (or have refused), per second.
    pub max_resets_per_second: u32,
    /// Frames that ask for nothing (PING, SETTINGS, ...), per second.
    pub max_control_frames_per_second: u32,
    /// CONTINUATION frames one header block may take.
    pub max_continuations: u32,
}

impl Default for H2Limits {
    /// What a config file with no `http2*` / `h2_*` keys gives.
    fn default() -> H2Limits {
        Limits::default().h2
    }
}

impl Default for Limits {
    /// What a config file with no keys gives (one place for the defaults:
    /// the config schema).
    fn default() -> Limits {
        Limits::from_config(&crate::config::Config::default())
    }
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
            log_format: c.access_log_format,
            h2: H2Limits {
                cleartext: c.http2_cleartext,
                max_concurrent_streams: c.h2_max_concurrent_streams,
                max_resets_per_second: c.h2_max_resets_per_second,
                max_control_frames_per_second: c.h2_max_control_frames_per_second,
                max_continuations: c.h2_max_continuations,
            },
        }
    }

    /// Small limits for driving a connection in memory (the unit tests of
    /// `http`, `tls` and `h2`, the fuzz targets): a 1 KiB head, a 256-byte
    /// target and a 100-byte body, so that tests reach 431/414/413 with a
    /// few bytes; the rest as [`Limits::default`]. Callers change more with
    /// struct-update syntax (`Limits { h2, ..Limits::small() }`).
    pub fn small() -> Limits {
        Limits {
            parse: ParseLimits {
                max_header_size: 1024,
                max_target_size: 256,
            },
            max_body_size: 100,
            ..Limits::default()
        }
    }

    /// Input a connection may hold unprocessed before its engine stops reading.
    pub fn max_buffered(&self) -> usize {
        self.parse.max_header_size + 16 * 1024
    }
}

/// An anonymous in-memory file holding `data`, for in-memory responders in
/// the unit tests of `http`, `tls` and `h2` (a `Body::File` with no file
/// system beneath it).
#[cfg(test)]
pub(crate) fn memfd(name: &std::ffi::CStr, data: &[u8]) -> Arc<std::fs::File> {
    use std::io::Write as _;
    use std::os::fd::FromRawFd as _;
    // SAFETY: memfd_create takes a NUL-terminated name (a `CStr`) and flags
    // and returns a new fd (or -1, checked), owned by nobody else.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: as above: the fd is new and ours; the File closes it.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data).unwrap();
    Arc::new(f)
}

/// What a `Conn` needs from its worker for one call.
pub struct Ctx<'a> {
    pub now: &'a Now,
    pub responder: &'a dyn Respond,
    /// The responder's state in this worker (`Respond::local`), lent to
    /// its calls: only this worker touches it.
    pub local: &'a mut dyn Any,
    pub limits: &'a Limits,
    /// The worker's access-log buffer; `None` when the access log is off.
    pub log: Option<&'a mut Vec<u8>>,
    /// Error-log lines, for the worker to write out.
    pub notes: &'a mut Notes,
    /// The worker's own counters (`/metrics`): only this worker writes them.
    pub stats: &'a WorkerCounters,
    /// The worker's spare response buffers (`conn::Buffers`).
    pub pool: &'a mut conn::BufferPool,
    /// On `begin_shutdown`, how long an idle keep-alive connection stays open
    /// for one more request (answered with `Connection: close`), so that
    /// busy clients learn of the close from a response instead of a race.
    /// Zero closes idle connections at once.
    pub drain_grace: Duration,
    /// The worker's descriptor budget: HTTP/2 streams beyond a
    /// connection's first take their slots from it.
    pub fds: &'a FdBudget,
}

impl Ctx<'_> {
    /// Whether a finished exchange is logged: its request's pieces are
    /// worth keeping only then.
    pub fn logs(&self) -> bool {
        self.log.is_some()
    }

    /// A request's exchange is over: count it (`/metrics`) and append its
    /// access-log line. Every protocol reports its exchanges here.
    pub fn exchange(&mut self, x: &Exchange<'_>) {
        self.stats.response(x.status, x.sent);
        if let Some(log) = self.log.as_deref_mut() {
            write_line(self.limits.log_format, x, log);
        }
    }
}

/// The listed codes' openings (one literal each) are what the general
/// path writes for them, and every other code gets that path.
#[test]
fn h1_openings_are_the_formatted_ones() {
    for code in 100..1000 {
        let s = Status(code);
        let mut fast = bytes::BytesMut::new();
        s.h1_opening_into(&mut fast);
        let slow = format!("HTTP/1.1 {code} {}\r\nServer: tandem\r\nDate: ", s.reason());
        assert_eq!(&fast[..], slow.as_bytes(), "{code}");
        assert_eq!(s.h1_opening().is_some(), s.reason() != "Unknown", "{code}");
    }
}
