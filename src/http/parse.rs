//! Request head parsing on top of httparse, plus the RFC 9112 framing checks
//! httparse leaves to us (Host, Content-Length, Transfer-Encoding, versions).

use std::mem::MaybeUninit;

use super::Status;

pub const MAX_HEADERS: usize = 96;

/// Room for a request's header fields, left uninitialized: httparse writes
/// only the entries it parses, so a request does not pay for clearing all
/// `MAX_HEADERS` of them first (3 KiB a request).
pub type HeaderSlots<'a> = [MaybeUninit<httparse::Header<'a>>; MAX_HEADERS];

/// Empty `HeaderSlots` for `parse_head`.
pub const fn header_slots<'a>() -> HeaderSlots<'a> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    Post,
    Put,
    Delete,
    Patch,
    Trace,
    Connect,
    /// A syntactically valid token we do not implement (-> 501).
    Unknown,
}

impl Method {
    pub(crate) fn from_token(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Unknown,
        }
    }
}

/// A parsed and checked request head, borrowing the input buffer and the
/// caller's header slice: every header field is reachable (`header`), so a
/// responder can look at whatever it needs without the parser knowing.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    pub method_str: &'a str,
    /// The raw request target as sent.
    pub target: &'a str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The connection may stay open after this request (version rules + Connection).
    pub keep_alive: bool,
    /// Body bytes that follow the head (Content-Length).
    pub content_length: u64,
    /// The body follows in the chunked coding (`Transfer-Encoding: chunked`).
    pub chunked: bool,
    /// Every header field, in the order received.
    pub headers: &'a [httparse::Header<'a>],
}

impl<'a> Request<'a> {
    /// The value of the first field called `name` (case-insensitive),
    /// without surrounding whitespace.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| trim(h.value))
    }

    /// The values of every field called `name`, in order: a list-valued
    /// field (`If-None-Match`, `Accept-Encoding`) may be split over lines.
    pub fn headers_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| trim(h.value))
    }

    /// `header`, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The outcome of looking at buffered bytes.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// Need more bytes.
    Partial,
    /// A complete head of `len` bytes.
    Complete(Request<'a>, usize),
}

/// Limits that apply while parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_header_size: usize,
    pub max_target_size: usize,
}

/// A request that must be answered with an error status and then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: Status,
}

fn reject(status: Status) -> Reject {
    Reject { status }
}

/// Parse a request head from the start of `buf`, its header fields into
/// `headers` (`MAX_HEADERS` entries hold as many as we accept).
///
/// The verdict is a function of the bytes alone, never of how they arrived:
/// whatever `buf` holds, the answer is the one the shortest deciding prefix
/// would get. A limit is crossed at a fixed byte (the request line at
/// `max_target_size + 33` bytes without a newline: 414; the head at
/// `max_header_size + 1` bytes: 431), so only the bytes before the first
/// crossing are parsed: a syntax error before it wins (400), a head that
/// completes before it is judged whole, and otherwise the limit answers.
pub fn parse_head<'a>(
    buf: &'a [u8],
    headers: &'a mut [MaybeUninit<httparse::Header<'a>>],
    lim: &ParseLimits,
) -> Result<Parsed<'a>, Reject> {
    // Leading empty lines before a request line are ignored (RFC 9112 2.2).
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if skip > lim.max_header_size {
        return Err(reject(Status::BAD_REQUEST));
    }
    let body = &buf[skip..];
    if body.is_empty() {
        return Ok(Parsed::Partial);
    }
    // The empty lines count against the head limit: the connection holds
    // (and reads) only so much before a verdict must be possible.
    let lim = &ParseLimits {
        max_header_size: lim.max_header_size - skip,
        ..*lim
    };
    let (view, limit) = match first_limit(body, lim) {
        Some((at, status)) => (&body[..at - 1], Some(status)),
        None => (body, None),
    };
    // Not complete within the view: a limit crossed later decides, else wait.
    let incomplete = || match limit {
        Some(status) => Err(reject(status)),
        None => Ok(Parsed::Partial),
    };
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(view, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(Status::HEADER_FIELDS_TOO_LARGE));
        }
        // httparse judges the version as soon as it sees its bytes; until the
        // request line is complete, "HTTP/1." may still become "HTTP/1.1".
        Err(httparse::Error::Version) if !view.contains(&b'\n') => return incomplete(),
        Err(httparse::Error::Version) => return Err(reject(version_error(view))),
        Err(_) => return Err(reject(Status::BAD_REQUEST)),
    };
    let method_str = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let minor = req.version.unwrap_or(1);
    if target.len() > lim.max_target_size {
        return Err(reject(Status::URI_TOO_LONG));
    }
    let method = Method::from_token(method_str);

    let headers: &'a [httparse::Header<'a>] = req.headers;
    let Fields {
        host_count,
        content_length,
        te,
        conn_close,
        conn_keep_alive,
    } = fields(headers)?;
    if minor == 1 && host_count != 1 || host_count > 1 {
        return Err(reject(Status::BAD_REQUEST));
    }
    let chunked = te.verdict(minor, content_length.is_some())?;
    let keep_alive = if minor == 1 {
        !conn_close
    } else {
        conn_keep_alive && !conn_close
    };
    Ok(Parsed::Complete(
        Request {
            method,
            method_str,
            target,
            minor,
            keep_alive,
            content_length: content_length.unwrap_or(0),
            chunked,
            headers,
        },
        skip + n,
    ))
}

/// What `parse_head` reads from the header fields to frame the request.
struct Fields {
    host_count: usize,
    content_length: Option<u64>,
    te: Codings,
    conn_close: bool,
    conn_keep_alive: bool,
}

/// The framing fields of `headers` (Host, Content-Length,
/// Transfer-Encoding, Connection); a bad Host or Content-Length is a 400.
#[inline]
fn fields(headers: &[httparse::Header<'_>]) -> Result<Fields, Reject> {
    let mut host_count = 0usize;
    let mut content_length: Option<u64> = None;
    let mut te = Codings::default();
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for h in headers {
        let name = h.name;
        let value = trim(h.value);
        if name.eq_ignore_ascii_case("host") {
            host_count += 1;
            if !valid_host(value) {
                return Err(reject(Status::BAD_REQUEST));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // "5" or a list of identical values "5, 5" (RFC 9110 8.6).
            for part in value.split(|&b| b == b',') {
                let v = parse_len(trim(part)).ok_or(reject(Status::BAD_REQUEST))?;
                match content_length {
                    Some(prev) if prev != v => return Err(reject(Status::BAD_REQUEST)),
                    _ => content_length = Some(v),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te.add(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in value.split(|&b| b == b',') {
                let tok = trim(tok);
                if tok.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        }
    }
    Ok(Fields {
        host_count,
        content_length,
        te,
        conn_close,
        conn_keep_alive,
    })
}

/// The transfer codings of a request, over all its Transfer-Encoding fields.
#[derive(Default)]
struct Codings {
    present: bool,
    /// Codings seen, and how many of them were `chunked`.
    count: usize,
    chunked: usize,
    last_chunked: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for c in value.split(|&b| b == b',').map(trim) {
            if c.is_empty() {
                continue; // an empty list element (RFC 9110 5.6.1)
            }
            self.count += 1;
            self.last_chunked = c.eq_ignore_ascii_case(b"chunked");
            self.chunked += usize::from(self.last_chunked);
        }
    }

    /// Whether the body is chunked, or how the request is refused
    /// (RFC 9112 6.1, 6.3): Transfer-Encoding with Content-Length, or in
    /// HTTP/1.0, is framing we cannot trust (400, as nginx); a final coding
    /// other than `chunked` leaves the body's length unknown (400), and so
    /// does `chunked` twice; a coding we do not know before the final
    /// `chunked` is 501. Each refusal closes the connection.
    fn verdict(&self, minor: u8, content_length: bool) -> Result<bool, Reject> {
        if !self.present {
            return Ok(false);
        }
        if content_length || minor == 0 || !self.last_chunked || self.chunked > 1 {
            return Err(reject(Status::BAD_REQUEST));
        }
        if self.count > 1 {
            return Err(reject(Status::NOT_IMPLEMENTED));
        }
        Ok(true)
    }
}

/// Longest request line (method, target, version and their spaces) before its
/// line feed: the target limit plus room for the rest.
fn max_line(lim: &ParseLimits) -> usize {
    lim.max_target_size + 32
}

/// The first limit `body` (a head from its request line on) crosses: the
/// length of the shortest prefix that crosses it, and the answer it gets.
fn first_limit(body: &[u8], lim: &ParseLimits) -> Option<(usize, Status)> {
    let line_at = max_line(lim) + 1;
    let line = (body.len() >= line_at && !body[..line_at].contains(&b'\n'))
        .then_some((line_at, Status::URI_TOO_LONG));
    let head_at = lim.max_header_size + 1;
    let head = (body.len() >= head_at).then_some((head_at, Status::HEADER_FIELDS_TOO_LARGE));
    match (line, head) {
        (Some(l), Some(h)) => Some(if h.0 < l.0 { h } else { l }),
        (l, h) => l.or(h),
    }
}

/// `parse_head`, and a head of a later minor version of HTTP/1 parsed
/// again as HTTP/1.1 (`as_http_1_1`) from a copy kept in `copy`, its
/// fields in `again`. Returns the bytes the verdict is about (`buf`, or
/// the copy: a chunked body's head is kept as parsed) and the verdict.
pub fn parse_request_head<'a>(
    buf: &'a [u8],
    headers: &'a mut [MaybeUninit<httparse::Header<'a>>],
    again: &'a mut [MaybeUninit<httparse::Header<'a>>],
    copy: &'a mut Option<Vec<u8>>,
    lim: &ParseLimits,
) -> (&'a [u8], Result<Parsed<'a>, Reject>) {
    match parse_head(buf, headers, lim) {
        Err(r) => match as_http_1_1(buf, r.status, lim) {
            Some(c) => {
                let src = &copy.insert(c)[..];
                (src, parse_head(src, again, lim))
            }
            None => (buf, Err(r)),
        },
        parsed => (buf, parsed),
    }
}

/// RFC 9110 §2.5: a request of a later minor version of HTTP/1
/// (`HTTP/1.2` to `HTTP/1.9`) is processed as HTTP/1.1, the highest minor
/// we speak ("SHOULD", and nginx does). httparse takes only 1.0 and 1.1 and
/// `parse_head` answers such a head 505, so given that answer (`status`)
/// and the same `buf`, this is a copy of the bytes `parse_head` looks at
/// with the version saying 1.1, to parse again; None for any other head
/// (another major version, `HTTP/1`, a malformed line: they keep their
/// answer). Only the refused head pays for the copy.
fn as_http_1_1(buf: &[u8], status: Status, lim: &ParseLimits) -> Option<Vec<u8>> {
    if status != Status::HTTP_VERSION_NOT_SUPPORTED {
        return None;
    }
    let skip = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let line_len = buf[skip..].iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = &buf[skip..skip + line_len];
    // "method SP target SP HTTP/1.d", as `version_error` found it.
    let at = line.len().checked_sub(9)?;
    let [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] = line[at..] else {
        return None;
    };
    if !(b'2'..=b'9').contains(&minor) || line.iter().filter(|&&b| b == b' ').count() != 2 {
        return None;
    }
    // `parse_head` never reads past the first limit a head can cross.
    let seen = skip + lim.max_header_size.max(max_line(lim)) + 1;
    let mut copy = buf[..buf.len().min(seen)].to_vec();
    copy[skip + line_len - 1] = b'1';
    Some(copy)
}

/// httparse reports any version but 1.0/1.1 as an error. A well-formed
/// `HTTP/d.d` (or `HTTP/d`) that we do not speak is 505; anything else is 400.
fn version_error(body: &[u8]) -> Status {
    let line_end = body
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(body.len());
    let line = &body[..line_end];
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return Status::BAD_REQUEST;
    };
    let v = &line[sp + 1..];
    let ok = match v {
        [b'H', b'T', b'T', b'P', b'/', d] => d.is_ascii_digit(),
        [b'H', b'T', b'T', b'P', b'/', a, b'.', b] => a.is_ascii_digit() && b.is_ascii_digit(),
        _ => false,
    };
    // Exactly "method SP target SP version": a space inside the target makes
    // the line malformed (400), whatever the version looks like.
    let spaces = line.iter().filter(|&&b| b == b' ').count();
    if ok && spaces == 2 {
        Status::HTTP_VERSION_NOT_SUPPORTED
    } else {
        Status::BAD_REQUEST
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(s, |i| i + 1);
    &v[s..e]
}

fn parse_len(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

pub(crate) fn valid_host(v: &[u8]) -> bool {
    // reg-name / IPv4 / [IPv6] with an optional port; empty is allowed for
    // absolute-form requests (RFC 9112 3.2) but never whitespace or controls.
    v.iter().all(|&b| HOST_BYTE[usize::from(b)])
}

/// The bytes `valid_host` allows, as a table: a lookup per byte rather than
/// a search of the list.
const HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let extra = b".-_~:[]%!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    let mut b = 0;
    while b < 256 {
        if (b as u8).is_ascii_alphanumeric() {
            t[b] = true;
        }
        b += 1;
    }
    t
};

/// For tests anywhere in the crate: parse `raw`, a whole request head,
/// and hand the request to `f`.
#[cfg(test)]
pub(crate) fn with_request<R>(raw: &str, f: impl FnOnce(&Request<'_>) -> R) -> R {
    let mut headers = header_slots();
    let lim = ParseLimits {
        max_header_size: 8192,
        max_target_size: 4096,
    };
    match parse_head(raw.as_bytes(), &mut headers, &lim) {
        Ok(Parsed::Complete(req, _)) => f(&req),
        other => panic!("{raw:?}: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: ParseLimits = ParseLimits {
        max_header_size: 8192,
        max_target_size: 4096,
    };

    /// The table allows exactly the listed bytes and the alphanumerics.
    #[test]
    fn host_table_is_the_host_list() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b".-_~:[]%!$&'()*+,;=".contains(&b);
            assert_eq!(valid_host(&[b]), want, "byte {b:#04x}");
        }
    }

    fn status(req: &[u8]) -> Status {
        let mut h = header_slots();
        match parse_head(req, &mut h, &LIM) {
            Ok(Parsed::Complete(..)) => Status::OK,
            Ok(Parsed::Partial) => Status(0),
            Err(r) => r.status,
        }
    }

    #[test]
    fn framing() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Status::OK);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n"), Status(0));
        assert_eq!(status(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), Status::OK);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Status::BAD_REQUEST);
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), Status::OK);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), Status(505));
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), Status(505));
        // ... which the caller parses again as 1.1 (RFC 9110 §2.5).
        let again = |req: &[u8]| as_http_1_1(req, status(req), &LIM);
        let copy = again(b"\r\nGET / HTTP/1.2\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(copy, b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            again(b"GET / HTTP/1.9\nHost: a\n\n").unwrap(),
            b"GET / HTTP/1.1\nHost: a\n\n"
        );
        for other in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/3\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET /a b HTTP/1.2\r\n\r\n",
            b"GET / HTTP/1.12\r\n\r\n",
        ] {
            assert_eq!(again(other), None, "{:?}", String::from_utf8_lossy(other));
        }
        assert_eq!(status(b"GET / HTTP/3\r\n\r\n"), Status(505));
        assert_eq!(status(b"GET / FOO/1.1\r\n\r\n"), Status::BAD_REQUEST);
        // Every prefix of a request line is Partial, whatever its version.
        for req in [&b"GET / HTTP/7.7\r\n"[..], b"GET / HTTP/1.1\r\n"] {
            for i in 1..req.len() - 1 {
                assert_eq!(status(&req[..i]), Status(0), "{:?}", &req[..i]);
            }
        }
        assert_eq!(status(b"GET /\r\n\r\n"), Status::BAD_REQUEST);
        assert_eq!(status(b"G(T / HTTP/1.1\r\n\r\n"), Status::BAD_REQUEST);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"),
            Status::OK
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BAD_REQUEST
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
        assert_eq!(status(long.as_bytes()), Status::URI_TOO_LONG);
        let long = format!("GET /{}", "a".repeat(5000));
        assert_eq!(status(long.as_bytes()), Status::URI_TOO_LONG);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(9000)
        );
        assert_eq!(status(big.as_bytes()), Status::HEADER_FIELDS_TOO_LARGE);
        assert_eq!(
            status(&big.as_bytes()[..8500]),
            Status::HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn verdict_does_not_depend_on_arrival() {
        // What a whole request gets, every prefix that decides gets too.
        let cases: Vec<(Vec<u8>, Status)> = vec![
            (
                format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20 * 1024)).into_bytes(),
                Status::URI_TOO_LONG,
            ),
            (
                format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "M".repeat(10_000)).into_bytes(),
                Status::URI_TOO_LONG,
            ),
            (
                format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "M".repeat(8_000)).into_bytes(),
                Status::URI_TOO_LONG,
            ),
            (
                format!("G(T /{} HTTP/1.1\r\n\r\n", "a".repeat(8_000)).into_bytes(),
                Status::BAD_REQUEST,
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
                    "b".repeat(9000)
                )
                .into_bytes(),
                Status::HEADER_FIELDS_TOO_LARGE,
            ),
            (
                b"GET /sp ace.txt HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                Status::BAD_REQUEST,
            ),
            (b"GET /a b HTTP/2.0\r\n\r\n".to_vec(), Status::BAD_REQUEST),
            (
                b"GET / HTTP/2.0\r\n\r\n".to_vec(),
                Status::HTTP_VERSION_NOT_SUPPORTED,
            ),
        ];
        for (req, want) in &cases {
            assert_eq!(
                status(req),
                *want,
                "{:?}",
                String::from_utf8_lossy(&req[..60])
            );
            for i in 1..req.len() {
                let st = status(&req[..i]);
                assert!(
                    st == Status(0) || st == *want,
                    "prefix {i}: {st:?}, whole: {want:?}"
                );
            }
        }
    }

    #[test]
    fn every_header_is_reachable() {
        let mut h = header_slots();
        let req = b"GET /x HTTP/1.1\r\nHost: a\r\nIf-None-Match:  \"v1\" \r\nX-Odd: \xff\r\n\r\n";
        let Ok(Parsed::Complete(r, n)) = parse_head(req, &mut h, &LIM) else {
            panic!("not complete");
        };
        assert_eq!(n, req.len());
        assert_eq!(r.headers.len(), 3);
        assert_eq!(r.header("if-none-match"), Some(&b"\"v1\""[..]));
        assert_eq!(r.header("X-ODD"), Some(&b"\xff"[..]));
        assert_eq!(r.header_str("x-odd"), None);
        assert_eq!(r.header_str("HOST"), Some("a"));
        assert_eq!(r.header("referer"), None);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |r: &[u8]| {
            let mut h = header_slots();
            match parse_head(r, &mut h, &LIM) {
                Ok(Parsed::Complete(h, _)) => h.keep_alive,
                other => panic!("{other:?}"),
            }
        };
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn transfer_codings() {
        let te = |fields: &str| {
            let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            let mut h = header_slots();
            match parse_head(req.as_bytes(), &mut h, &LIM) {
                Ok(Parsed::Complete(r, _)) => Ok(r.chunked),
                Ok(Parsed::Partial) => panic!("{fields:?}: partial"),
                Err(r) => Err(r.status.0),
            }
        };
        assert_eq!(te(""), Ok(false));
        assert_eq!(te("Transfer-Encoding: chunked\r\n"), Ok(true));
        assert_eq!(te("Transfer-Encoding:  CHUNKED \r\n"), Ok(true));
        assert_eq!(te("Transfer-Encoding: ,chunked,\r\n"), Ok(true));
        assert_eq!(
            te("Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n"),
            Ok(true)
        );
        assert_eq!(te("Transfer-Encoding: gzip, chunked\r\n"), Err(501));
        assert_eq!(
            te("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Err(501)
        );
        assert_eq!(te("Transfer-Encoding: gzip\r\n"), Err(400));
        assert_eq!(te("Transfer-Encoding: chunked, gzip\r\n"), Err(400));
        assert_eq!(
            te("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
            Err(400)
        );
        assert_eq!(te("Transfer-Encoding: chunked, chunked\r\n"), Err(400));
        assert_eq!(te("Transfer-Encoding: chunked;x=1\r\n"), Err(400));
        assert_eq!(te("Transfer-Encoding: xchunked\r\n"), Err(400));
        assert_eq!(te("Transfer-Encoding:\r\n"), Err(400));
        assert_eq!(
            te("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"),
            Err(400)
        );
        let mut h = header_slots();
        let req = b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse_head(req, &mut h, &LIM),
            Err(Reject {
                status: Status::BAD_REQUEST
            })
        ));
    }
}
