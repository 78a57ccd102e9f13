//! Response framing, written once for every reader in the suites (the raw
//! [`Conn`](super::Conn), the load client, and the tests that read a
//! response whole or in their own pieces): where a response head ends, how
//! the body after it is delimited (RFC 9112 section 6.3), and a response
//! read to the server's close split into head and body.

use super::{Response, parse_response_head, show};

/// How the body after a response head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body, whatever the fields say: a response to HEAD, 1xx, 204, 304.
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// Everything until the server closes: no `Content-Length`.
    ToClose,
}

/// Where the response head at the start of `buf` ends: the index of its
/// blank line's CRLFCRLF, if it has come. (The same rule finds the end of
/// a request head.) `scanned` carries how far earlier
/// calls looked, so a head read in many pieces is searched once.
pub fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    let from = (*scanned).min(buf.len());
    match buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => Some(from + p),
        None => {
            *scanned = buf.len().saturating_sub(3);
            None
        }
    }
}

/// How the body of response `r` (its head parsed), to a request made with
/// `method`, is delimited. tandem knows every length before it sends, so a
/// `Transfer-Encoding` in a response is an error here, as are several
/// `Content-Length` fields or one that is not a number.
pub fn framing(r: &Response, method: &str) -> Result<Framing, String> {
    let head = &r.head;
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&r.status)
        || r.status == 204
        || r.status == 304
    {
        return Ok(Framing::Empty);
    }
    if r.header("transfer-encoding").is_some() {
        return Err(format!(
            "response uses Transfer-Encoding (not allowed):\n{head}"
        ));
    }
    match r.headers_all("content-length")[..] {
        [] => Ok(Framing::ToClose),
        [v] => v
            .parse()
            .map(Framing::Length)
            .map_err(|_| format!("bad Content-Length {v:?}:\n{head}")),
        _ => Err(format!("several Content-Length headers:\n{head}")),
    }
}

/// How many body bytes response head `head`, to a GET, says follow: its
/// `Content-Length` (panics on anything else: a tandem answer to a GET
/// always has one).
pub fn content_length(head: &str) -> usize {
    let r = parse_response_head(head).unwrap_or_else(|e| panic!("{e}"));
    match framing(&r, "GET") {
        Ok(Framing::Length(n)) => n,
        Ok(f) => panic!("no Content-Length ({f:?}) in\n{head}"),
        Err(e) => panic!("{e}"),
    }
}

/// A response read whole (to the server's close): its head parsed, and
/// every byte after the head as its body. The caller checks the body (its
/// length against `Content-Length`, or its bytes).
pub fn split_response(all: &[u8]) -> Result<Response, String> {
    let end =
        head_end(all, &mut 0).ok_or_else(|| format!("no end of response head in {}", show(all)))?;
    let head = std::str::from_utf8(&all[..end])
        .map_err(|_| format!("response head is not UTF-8: {}", show(&all[..end])))?;
    let mut r = parse_response_head(head)?;
    r.body = all[end + 4..].to_vec();
    Ok(r)
}

#[test]
fn framing_follows_rfc9112() {
    let parse = |h: &str| super::parse_response_head(h).unwrap();
    let ok = parse("HTTP/1.1 200 OK\r\nContent-Length: 5");
    assert_eq!(framing(&ok, "GET"), Ok(Framing::Length(5)));
    assert_eq!(framing(&ok, "HEAD"), Ok(Framing::Empty));
    for status in ["100 Continue", "204 No Content", "304 Not Modified"] {
        let r = parse(&format!("HTTP/1.1 {status}\r\nContent-Length: 5"));
        assert_eq!(framing(&r, "GET"), Ok(Framing::Empty), "{status}");
    }
    let close = parse("HTTP/1.1 200 OK\r\nConnection: close");
    assert_eq!(framing(&close, "GET"), Ok(Framing::ToClose));
    for bad in [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5",
        "HTTP/1.1 200 OK\r\nContent-Length: 5x",
    ] {
        assert!(framing(&parse(bad), "GET").is_err(), "{bad}");
    }
    let mut scanned = 0;
    assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r", &mut scanned), None);
    assert_eq!(scanned, 15);
    assert_eq!(
        head_end(b"HTTP/1.1 200 OK\r\n\r\nbody", &mut scanned),
        Some(15)
    );
    let r = split_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody").unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"body"[..]));
    assert_eq!(content_length(&r.head), 4);
    assert!(split_response(b"HTTP/1.1 200 OK\r\n\r").is_err());
}
