//! One HTTP/2 stream: the request its header block carries (checked as
//! RFC 9113 §8.2-8.3 asks, then made an `http::Request` for the same
//! `Respond` as HTTP/1.1), and the response's send side (its body still to
//! frame, its window, its access-log record).

use std::collections::VecDeque;

use crate::config::is_tchar;
use crate::http::parse::{MAX_HEADERS, valid_host};
use crate::http::{Ctx, Method, Request, Segment};
use crate::log::access::{HeldRequest, RequestLine};

use super::hpack::Fields;

/// A stream's response under way, and its request's record.
#[derive(Debug)]
pub struct Stream {
    /// Our send window (RFC 9113 §6.9): what the peer lets us send.
    pub window: i64,
    /// The highest `window` has been: WINDOW_UPDATEs past it are budgeted.
    pub window_top: i64,
    /// What the peer may still send us before we give it more room.
    pub recv: i64,
    /// The response body still to frame as DATA.
    pub segs: VecDeque<Segment>,
    /// The client sent END_STREAM (half-closed remote).
    pub remote_closed: bool,
    /// Our END_STREAM is queued: nothing more to send.
    pub local_done: bool,
    /// Request body bytes received (read and thrown away).
    pub body_in: u64,
    /// The request's content-length: its DATA must add up to it.
    pub declared: Option<u64>,
    /// The descriptor slot its answer holds until its END_STREAM is queued.
    pub slot: Slot,
    /// A request waiting for a slot (`H2Conn::waiting`): its fields.
    pub wait: Option<Box<Fields>>,
    /// Its response's priority (RFC 9218), from the request's `priority`.
    pub prio: Priority,
    pub x: Exch,
}

/// RFC 9218 §4: a response's urgency (0 most urgent, 7 least) and whether
/// it is useful in pieces (incremental) or only whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub urgency: u8,
    pub incremental: bool,
}

impl Priority {
    /// What a request without a `priority` field gets (§4.1, §4.2).
    pub const DEFAULT: Priority = Priority {
        urgency: 3,
        incremental: false,
    };

    /// The request's `priority` field (a Structured Fields Dictionary,
    /// RFC 8941), read leniently as §4 asks: members other than `u` and
    /// `i`, parameters, and values out of range or of the wrong type are
    /// ignored; a later member overrides an earlier one; several field
    /// lines are one list.
    pub fn of(f: &Fields) -> Priority {
        let mut p = Priority::DEFAULT;
        for (_, v) in f.iter().filter(|(n, _)| *n == b"priority") {
            for member in v.split(|&b| b == b',') {
                // Parameters (`;k=v`) of a member are ignored.
                let item = member.split(|&b| b == b';').next().unwrap_or(b"");
                let item = item.trim_ascii();
                let (key, value) = match item.iter().position(|&b| b == b'=') {
                    Some(eq) => (&item[..eq], Some(&item[eq + 1..])),
                    None => (item, None),
                };
                match (key, value) {
                    (b"u", Some([d @ b'0'..=b'7'])) => p.urgency = d - b'0',
                    (b"i", None | Some(b"?1")) => p.incremental = true,
                    (b"i", Some(b"?0")) => p.incremental = false,
                    _ => {}
                }
            }
        }
        p
    }
}

/// The descriptor slot a stream's answer (a file it may open) holds
/// (`http::FdBudget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Not answered yet, or its END_STREAM is queued.
    None,
    /// The connection's own (`FDS_PER_CONNECTION`): one stream at a time.
    Own,
    /// One of the worker's, beyond the connection's own.
    Pool,
}

/// What a stream's access-log record needs.
#[derive(Debug, Default)]
pub struct Exch {
    pub held: HeldRequest,
    pub status: u16,
    /// Bytes of HEADERS frames, and the body length announced.
    pub head_len: u64,
    pub body_len: u64,
    /// Body bytes framed as DATA so far.
    pub body_queued: u64,
}

/// The status logged for a request that ended before it was answered (it
/// waited for a descriptor slot): nginx's "client closed request".
pub const NEVER_ANSWERED: u16 = 499;

impl Exch {
    /// Keep what the access log needs of `req`.
    pub fn hold(&mut self, ctx: &Ctx<'_>, req: &Request<'_>) {
        let logs = ctx.logs();
        let field = |name| logs.then(|| req.header(name)).flatten();
        let line = logs.then_some(RequestLine::Parsed {
            method: req.method_str.as_bytes(),
            target: req.target.as_bytes(),
            protocol: "HTTP/2.0",
        });
        self.held.hold(
            ctx.now.instant(),
            ctx.now.wall,
            line,
            field("referer"),
            field("user-agent"),
        );
    }
}

impl Stream {
    pub fn new(window: i64, recv: i64, remote_closed: bool, declared: Option<u64>) -> Stream {
        Stream {
            window,
            window_top: window,
            recv,
            segs: VecDeque::new(),
            remote_closed,
            local_done: false,
            body_in: 0,
            declared,
            slot: Slot::None,
            wait: None,
            prio: Priority::DEFAULT,
            x: Exch::default(),
        }
    }

    /// RFC 9113 §8.1.1: a request's DATA add up to its content-length:
    /// never more, and exactly that once the client ends the stream.
    pub fn length_ok(&self) -> bool {
        self.declared
            .is_none_or(|n| self.body_in <= n && (!self.remote_closed || self.body_in == n))
    }

    /// Whether it has DATA to send and the window to send some.
    pub fn ready(&self) -> bool {
        !self.segs.is_empty() && self.window > 0
    }
}

/// Why a header block is not a request: malformed (RFC 9113 §8.1.1), a
/// stream error of type PROTOCOL_ERROR; or, for what HTTP/1.1 answers
/// with 400 (a bad Host or Content-Length), `bad_request`: the same 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl Malformed {
    pub fn bad_request(self) -> bool {
        self.0.starts_with("a bad :authority") || self.0.starts_with("content-length")
    }
}

/// A request's pieces, borrowed from its decoded fields.
#[derive(Debug)]
pub struct Head<'f> {
    pub method: &'f str,
    pub target: &'f str,
    pub content_length: Option<u64>,
    /// Regular fields, `:authority` first (as `host`).
    pub fields: Vec<httparse::Header<'f>>,
}

impl<'f> Head<'f> {
    /// The request as `Respond` sees it (HTTP/1.1 semantics).
    pub fn request(&'f self) -> Request<'f> {
        Request {
            method: Method::from_token(self.method),
            method_str: self.method,
            target: self.target,
            minor: 1,
            keep_alive: true,
            content_length: self.content_length.unwrap_or(0),
            chunked: false,
            headers: &self.fields,
        }
    }
}

/// Fields an HTTP/2 message must not carry (RFC 9113 §8.2.2): refused in
/// requests, dropped from replies.
pub(super) const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// A field value has no NUL, CR or LF, and no whitespace at its ends.
fn check_value(value: &[u8]) -> Result<(), Malformed> {
    let edge = |b: Option<&u8>| b.is_some_and(|&b| b == b' ' || b == b'\t');
    if has_nul_cr_lf(value) || edge(value.first()) || edge(value.last()) {
        return Err(Malformed(
            "a field value with NUL, CR, LF or edge whitespace",
        ));
    }
    Ok(())
}

/// A regular field's name is a lower-case token, not connection-specific;
/// `te` is only "trailers" (RFC 9113 §8.2, §8.2.2).
fn check_regular(name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b) && !b.is_ascii_uppercase()) {
        return Err(Malformed("a field name not a lower-case token"));
    }
    if CONNECTION_SPECIFIC.contains(&name) {
        return Err(Malformed("a connection-specific field"));
    }
    if name == b"te" && value != b"trailers" {
        return Err(Malformed("te other than trailers"));
    }
    Ok(())
}

/// More fields than HTTP/1.1 takes (`MAX_HEADERS` lines, Host among
/// them; 431 there). Cookie crumbs (RFC 9113 §8.2.3) count as the one
/// line they stand for.
pub fn too_many_fields(h: &Head<'_>) -> bool {
    let crumbs = h.fields.iter().filter(|f| f.name == "cookie").count();
    h.fields.len() - crumbs.saturating_sub(1) > MAX_HEADERS
}

/// A trailer section is held to the request's field rules, and has no
/// pseudo-field (RFC 9113 §8.1).
pub fn check_trailers(f: &Fields) -> Result<(), Malformed> {
    for (name, value) in f.iter() {
        check_value(value)?;
        if name.starts_with(b":") {
            return Err(Malformed("a pseudo-header field in trailers"));
        }
        check_regular(name, value)?;
    }
    Ok(())
}

/// The streams the server reset last. Frames the client sent on one
/// before it saw the RST_STREAM are dropped (RFC 9113 §5.1), not answered
/// with another RST_STREAM or taken for a reused stream id.
#[derive(Debug, Default)]
pub struct Resets {
    ids: [u32; 16],
    at: usize,
}

impl Resets {
    pub fn add(&mut self, id: u32) {
        self.ids[self.at] = id;
        self.at = (self.at + 1) % self.ids.len();
    }

    pub fn has(&self, id: u32) -> bool {
        id != 0 && self.ids.contains(&id)
    }
}

/// Whether `v` has a NUL, CR or LF: eight bytes at a time (a word has a
/// zero byte iff `(x - 0x01..) & !x & 0x80..` is not 0; XOR with CR or LF
/// in every byte turns those into zeros), the tail padded with spaces.
fn has_nul_cr_lf(v: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let word = |x: u64| zero(x) | zero(x ^ (ONES * 0x0d)) | zero(x ^ (ONES * 0x0a));
    let mut chunks = v.chunks_exact(8);
    let mut found = false;
    for c in &mut chunks {
        let mut w = [0; 8];
        w.copy_from_slice(c);
        found |= word(u64::from_ne_bytes(w));
    }
    let mut tail = [b' '; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    found | word(u64::from_ne_bytes(tail))
}

/// A content-length value: digits only (RFC 9110 §8.6).
fn length_value(value: &[u8]) -> Result<u64, Malformed> {
    std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or(Malformed("content-length not a number"))
}

/// The body length a request's fields declare, known as its header block
/// ends (its answer may wait for a slot while its DATA comes). None
/// without a content-length, or with a bad one (`request_head` answers
/// that with 400).
pub fn declared_length(f: &Fields) -> Option<u64> {
    let mut declared = None;
    for (_, v) in f.iter().filter(|(n, _)| *n == b"content-length") {
        let v = length_value(v).ok()?;
        if declared.replace(v).is_some_and(|p| p != v) {
            return None;
        }
    }
    declared
}

/// Check a request's decoded fields (pseudo-fields first, each once, the
/// four a request may have; names in lower case; no connection-specific
/// field; `te` only "trailers"; values without NUL, CR, LF or surrounding
/// whitespace) and take its pieces.
pub fn request_head(f: &Fields) -> Result<Head<'_>, Malformed> {
    let (mut method, mut scheme, mut path, mut authority) = (None, None, None, None);
    let mut regular = false;
    let mut fields = Vec::with_capacity(f.len() + 1);
    let mut content_length = None;
    let mut host = None;
    for (name, value) in f.iter() {
        check_value(value)?;
        if let Some(p) = name.strip_prefix(b":") {
            if regular {
                return Err(Malformed("a pseudo-header field after a regular one"));
            }
            let slot = match p {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"path" => &mut path,
                b"authority" => &mut authority,
                _ => return Err(Malformed("an unknown pseudo-header field")),
            };
            if slot.replace(value).is_some() {
                return Err(Malformed("a pseudo-header field twice"));
            }
            continue;
        }
        regular = true;
        check_regular(name, value)?;
        if name == b"content-length" {
            let v = length_value(value)?;
            if content_length.replace(v).is_some_and(|p| p != v) {
                return Err(Malformed("content-length twice, different"));
            }
        }
        // A token is ASCII: the name is a str.
        let name = std::str::from_utf8(name).map_err(|_| Malformed("a bad name"))?;
        if name == "host" {
            // One Host (RFC 9110 §7.2), as HTTP/1.1 has it: 400.
            if host.replace(value).is_some() {
                return Err(Malformed("a bad :authority: a second host field"));
            }
            continue;
        }
        fields.push(httparse::Header { name, value });
    }
    let method = method
        .and_then(|m| std::str::from_utf8(m).ok())
        .filter(|m| !m.is_empty() && m.bytes().all(is_tchar))
        .ok_or(Malformed("no valid :method"))?;
    let target = if method == "CONNECT" {
        if scheme.is_some() || path.is_some() {
            return Err(Malformed("CONNECT with :scheme or :path"));
        }
        authority.ok_or(Malformed("CONNECT without :authority"))?
    } else {
        if scheme.is_none_or(<[u8]>::is_empty) {
            return Err(Malformed("no :scheme"));
        }
        let p = path.ok_or(Malformed("no :path"))?;
        let ok = p.first() == Some(&b'/') || (p == b"*" && method == "OPTIONS");
        // As httparse takes it: visible ASCII, or UTF-8 beyond it.
        if !ok || !p.iter().all(|&b| (0x21..0x7f).contains(&b) || b >= 0x80) {
            return Err(Malformed("a bad :path"));
        }
        p
    };
    // `:authority` stands for Host; without it, a Host field does. One
    // that names another host makes the request malformed (RFC 9113
    // §8.3.1): 400, as two Host lines over HTTP/1.1.
    if let (Some(a), Some(h)) = (authority, host)
        && !a.eq_ignore_ascii_case(h)
    {
        return Err(Malformed("a bad :authority: a host field that differs"));
    }
    if let Some(h) = authority.or(host) {
        if !valid_host(h) {
            return Err(Malformed("a bad :authority"));
        }
        fields.insert(
            0,
            httparse::Header {
                name: "host",
                value: h,
            },
        );
    }
    Ok(Head {
        method,
        target: std::str::from_utf8(target).map_err(|_| Malformed("a bad :path"))?,
        content_length,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time check finds NUL, CR and LF wherever they are,
    /// and nothing else.
    #[test]
    fn nul_cr_lf_found_at_every_place() {
        for len in 1..20 {
            let clean: Vec<u8> = (0..len).map(|i| b'!' + (i * 7 % 90) as u8).collect();
            assert!(!has_nul_cr_lf(&clean), "{clean:?}");
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = clean.clone();
                    v[at] = b;
                    assert_eq!(has_nul_cr_lf(&v), matches!(b, 0 | b'\r' | b'\n'), "{v:?}");
                }
            }
        }
        assert!(!has_nul_cr_lf(b""));
    }
}
