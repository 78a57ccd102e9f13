//! The access log's record and its line formats.
//!
//! A protocol connection (HTTP/1.1's `Conn`; later the HTTP/2 connection,
//! once per stream) reports each finished exchange as an `Exchange`, and
//! `write_line` renders it in the configured format: the combined log
//! format or one JSON object per line. Every piece of the request is
//! escaped here, as it is written; nothing here knows a connection.
//!
//! A connection usually answers a request after its input buffer has moved
//! on, so the request's pieces are kept in a `HeldRequest` meanwhile: a
//! copy into an allocation that is reused from request to request.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::LogFormat;

/// A finished exchange: one request and the response that answered it
/// (whole, or cut short).
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    pub request: RequestLine<'a>,
    /// The `Referer` and `User-Agent` fields, as sent.
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub peer: SocketAddr,
    pub status: u16,
    /// Body bytes that reached the client (none for a HEAD; part of the
    /// body for a response cut short).
    pub body_bytes: u64,
    /// Bytes of the response that reached the client, head included.
    pub sent: u64,
    /// When the request was read, and when its response was over.
    pub start: Instant,
    pub end: Instant,
    /// The wall-clock time at `start`: the time a line shows.
    pub start_wall: SystemTime,
    /// The TLS session's protocol and cipher suite; `None` on a plain
    /// connection (all of them, until TLS comes).
    pub tls: Option<Tls<'a>>,
}

/// What a TLS connection adds to its exchanges (the JSON format shows it
/// as `tls_version`, `tls_cipher` and `sni`; combined stays as it is).
#[derive(Debug, Clone, Copy)]
pub struct Tls<'a> {
    pub protocol: &'a str,
    pub cipher: &'a str,
    /// The name the client asked for (SNI), if it sent one.
    pub sni: Option<&'a str>,
}

/// `Tls`, owned: what a connection keeps once its handshake is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    pub protocol: &'static str,
    pub cipher: &'static str,
    pub sni: Option<Box<str>>,
}

impl TlsFacts {
    pub fn as_tls(&self) -> Tls<'_> {
        Tls {
            protocol: self.protocol,
            cipher: self.cipher,
            sni: self.sni.as_deref(),
        }
    }
}

/// The request as the access log shows it.
#[derive(Debug, Clone, Copy)]
pub enum RequestLine<'a> {
    /// A parsed request line.
    Parsed {
        method: &'a [u8],
        target: &'a [u8],
        protocol: &'static str,
    },
    /// The first line of input that could not be parsed, as it came.
    Raw(&'a [u8]),
}

impl<'a> RequestLine<'a> {
    /// Method, target and protocol; a raw line is split at its first two
    /// spaces (missing pieces are empty).
    fn split(self) -> (&'a [u8], &'a [u8], &'a [u8]) {
        match self {
            RequestLine::Parsed {
                method,
                target,
                protocol,
            } => (method, target, protocol.as_bytes()),
            RequestLine::Raw(line) => {
                let mut it = line.splitn(3, |&b| b == b' ');
                (
                    it.next().unwrap_or(b""),
                    it.next().unwrap_or(b""),
                    it.next().unwrap_or(b""),
                )
            }
        }
    }
}

/// The request side of an exchange, held while its response goes out.
/// `hold` copies the pieces into one buffer whose allocation is kept, so
/// a warm connection (or a pooled buffer set) copies without allocating.
#[derive(Debug)]
pub struct HeldRequest {
    bytes: Vec<u8>,
    line: HeldLine,
    /// Ranges of `bytes`.
    referer: Option<(usize, usize)>,
    user_agent: Option<(usize, usize)>,
    /// Not yet held: none (an exchange of it starts when it ends).
    start: Option<Instant>,
    start_wall: SystemTime,
}

/// Where the request line's pieces end in `HeldRequest::bytes`.
#[derive(Debug, Clone, Copy)]
enum HeldLine {
    Parsed {
        method_end: usize,
        target_end: usize,
        protocol: &'static str,
    },
    Raw(usize),
}

impl Default for HeldRequest {
    fn default() -> HeldRequest {
        HeldRequest::new()
    }
}

impl HeldRequest {
    /// Nothing held yet (no allocation).
    pub const fn new() -> HeldRequest {
        HeldRequest {
            bytes: Vec::new(),
            line: HeldLine::Raw(0),
            referer: None,
            user_agent: None,
            start: None,
            start_wall: SystemTime::UNIX_EPOCH,
        }
    }

    /// Hold a request read at `start` (`start_wall` on the wall clock):
    /// its request line and `Referer` and `User-Agent` fields are copied.
    /// Without a `line` (no log will show them) only the times are kept,
    /// and the exchange shows an empty request.
    pub fn hold(
        &mut self,
        start: Instant,
        start_wall: SystemTime,
        line: Option<RequestLine<'_>>,
        referer: Option<&[u8]>,
        user_agent: Option<&[u8]>,
    ) {
        self.start = Some(start);
        self.start_wall = start_wall;
        self.bytes.clear();
        let Some(line) = line else {
            self.line = HeldLine::Raw(0);
            self.referer = None;
            self.user_agent = None;
            return;
        };
        let b = &mut self.bytes;
        self.line = match line {
            RequestLine::Parsed {
                method,
                target,
                protocol,
            } => {
                b.extend_from_slice(method);
                let method_end = b.len();
                b.extend_from_slice(target);
                HeldLine::Parsed {
                    method_end,
                    target_end: b.len(),
                    protocol,
                }
            }
            RequestLine::Raw(raw) => {
                b.extend_from_slice(raw);
                HeldLine::Raw(b.len())
            }
        };
        let mut copy = |v: Option<&[u8]>| {
            v.map(|v| {
                let at = b.len();
                b.extend_from_slice(v);
                (at, b.len())
            })
        };
        self.referer = copy(referer);
        self.user_agent = copy(user_agent);
    }

    /// Bytes held for the copy (kept across requests).
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// The exchange of the held request, with its response's facts.
    pub fn exchange(
        &self,
        peer: SocketAddr,
        status: u16,
        body_bytes: u64,
        sent: u64,
        end: Instant,
    ) -> Exchange<'_> {
        let b = &self.bytes[..];
        let request = match self.line {
            HeldLine::Parsed {
                method_end,
                target_end,
                protocol,
            } => RequestLine::Parsed {
                method: &b[..method_end],
                target: &b[method_end..target_end],
                protocol,
            },
            HeldLine::Raw(end) => RequestLine::Raw(&b[..end]),
        };
        Exchange {
            request,
            referer: self.referer.map(|(s, e)| &b[s..e]),
            user_agent: self.user_agent.map(|(s, e)| &b[s..e]),
            peer,
            status,
            body_bytes,
            sent,
            start: self.start.unwrap_or(end),
            end,
            start_wall: self.start_wall,
            tls: None,
        }
    }
}

/// Append `x`'s line, in `format`, to `out`.
pub fn write_line(format: LogFormat, x: &Exchange<'_>, out: &mut Vec<u8>) {
    match format {
        LogFormat::Combined => combined(x, out),
        LogFormat::Json => json(x, out),
    }
}

/// `192.0.2.7 - - [22/Nov/2026:19:21:37 +0000] "GET / HTTP/1.1" 200 12 "referer" "user agent"`
/// (nginx's and Apache's `combined`), each request piece escaped with
/// `escape_into`; an absent header is `-`.
fn combined(x: &Exchange<'_>, out: &mut Vec<u8>) {
    let _ = write!(Writer(out), "{}", x.peer.ip());
    out.extend_from_slice(b" - - [");
    super::write_clf_time(out, x.start_wall);
    out.extend_from_slice(b"] \"");
    match x.request {
        RequestLine::Parsed {
            method,
            target,
            protocol,
        } => {
            escape_into(out, method);
            out.push(b' ');
            escape_into(out, target);
            out.push(b' ');
            out.extend_from_slice(protocol.as_bytes());
        }
        RequestLine::Raw(line) => escape_into(out, line),
    }
    out.extend_from_slice(b"\" ");
    push_decimal(out, u64::from(x.status), 1);
    out.push(b' ');
    push_decimal(out, x.body_bytes, 1);
    out.extend_from_slice(b" \"");
    escape_into(out, x.referer.unwrap_or(b"-"));
    out.extend_from_slice(b"\" \"");
    escape_into(out, x.user_agent.unwrap_or(b"-"));
    out.extend_from_slice(b"\"\n");
}

/// One JSON object: time, remote, method, target, protocol, status, bytes,
/// duration (seconds, to the microsecond), referer, user_agent (`null`
/// when absent). A raw line is split at spaces into method, target and
/// protocol. Strings are escaped with `json_escape_into`.
fn json(x: &Exchange<'_>, out: &mut Vec<u8>) {
    let (method, target, protocol) = x.request.split();
    out.extend_from_slice(b"{\"time\":\"");
    super::write_rfc3339(out, x.start_wall);
    let _ = write!(Writer(out), "\",\"remote\":\"{}", x.peer.ip());
    out.extend_from_slice(b"\",\"method\":\"");
    json_escape_into(out, method);
    out.extend_from_slice(b"\",\"target\":\"");
    json_escape_into(out, target);
    out.extend_from_slice(b"\",\"protocol\":\"");
    json_escape_into(out, protocol);
    out.extend_from_slice(b"\",\"status\":");
    push_decimal(out, u64::from(x.status), 1);
    out.extend_from_slice(b",\"bytes\":");
    push_decimal(out, x.body_bytes, 1);
    let d = x.end.saturating_duration_since(x.start);
    out.extend_from_slice(b",\"duration\":");
    push_decimal(out, d.as_secs(), 1);
    out.push(b'.');
    push_decimal(out, u64::from(d.subsec_micros()), 6);
    out.extend_from_slice(b",\"referer\":");
    json_opt_into(out, x.referer);
    out.extend_from_slice(b",\"user_agent\":");
    json_opt_into(out, x.user_agent);
    // Only on TLS connections.
    if let Some(t) = &x.tls {
        out.extend_from_slice(b",\"tls_version\":");
        json_opt_into(out, Some(t.protocol.as_bytes()));
        out.extend_from_slice(b",\"tls_cipher\":");
        json_opt_into(out, Some(t.cipher.as_bytes()));
        out.extend_from_slice(b",\"sni\":");
        json_opt_into(out, t.sni.map(str::as_bytes));
    }
    out.extend_from_slice(b"}\n");
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `\xHH`, upper-case.
fn hex_escape(c: u8) -> [u8; 4] {
    [b'\\', b'x', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]
}

/// Log-safe copy: quotes, backslashes and non-printables as `\xHH` (as
/// nginx does).
fn escape_into(out: &mut Vec<u8>, b: &[u8]) {
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            out.extend_from_slice(&b[run..i]);
            out.extend_from_slice(&hex_escape(c));
            run = i + 1;
        }
    }
    out.extend_from_slice(&b[run..]);
}

/// The inside of a JSON string for bytes that may be anything. Valid UTF-8
/// is kept as text: `"` becomes `\"`, control characters (and DEL)
/// `\u00XX`. Each byte that is not part of valid UTF-8, and the backslash
/// itself, becomes the four characters `\xHH` (written `\\xHH` in the
/// JSON), as in the combined log: so the decoded string maps back to the
/// exact bytes (every `\` in it starts an `\xHH`), and the line is always
/// valid JSON.
pub fn json_escape_into(out: &mut Vec<u8>, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut run = 0;
        for (i, &c) in valid.iter().enumerate() {
            if c >= 0x20 && c != b'"' && c != b'\\' && c != 0x7f {
                continue;
            }
            out.extend_from_slice(&valid[run..i]);
            run = i + 1;
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\x5C"),
                _ => {
                    let [.., hi, lo] = hex_escape(c);
                    out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
                }
            }
        }
        out.extend_from_slice(&valid[run..]);
        for &c in chunk.invalid() {
            out.push(b'\\');
            out.extend_from_slice(&hex_escape(c));
        }
    }
}

/// A JSON string for a header that may be absent (`null`).
fn json_opt_into(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            out.push(b'"');
            json_escape_into(out, v);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// `n` in decimal, zero-padded to at least `width` digits (at most 20).
pub(super) fn push_decimal(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let digits = decimal(n, &mut buf).len();
    out.extend_from_slice(&buf[buf.len() - digits.max(width)..]);
}

/// `n` in decimal, written at the end of `buf` (20 digits hold any u64):
/// the digits. `Conn` writes the status code and Content-Length with it.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `fmt::Write` into a byte vector.
struct Writer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
