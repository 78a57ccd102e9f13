//! The response model: what a responder answers (`Reply`: status, an ordered
//! header list, a `Body`) and what `Conn` hands an engine to send (`Segment`s).
//!
//! Both are owned and cheap to clone: bytes are `Bytes` (a refcount), files
//! are `Arc<File>`. An engine keeps the clones it sends from until the kernel
//! is done with them, so nothing it sends borrows from the `Conn`.

use std::borrow::Cow;
use std::fs::File;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Status;

/// The media type of the built-in pages.
pub const HTML: &str = "text/html; charset=utf-8";

/// `len` bytes of `file` from `offset`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// One piece of a response on the wire, owned.
#[derive(Debug, Clone)]
pub enum Segment {
    Bytes(Bytes),
    File(FileRange),
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop the first `n` bytes (at most `len()`).
    pub fn advance(&mut self, n: u64) {
        match self {
            Segment::Bytes(b) => {
                let n = (n as usize).min(b.len());
                let _ = b.split_to(n);
            }
            Segment::File(f) => {
                let n = n.min(f.len);
                f.offset += n;
                f.len -= n;
            }
        }
    }
}

/// A response body.
#[derive(Debug, Clone, Default)]
pub enum Body {
    #[default]
    Empty,
    /// Shared bytes: built-in pages, listings, cached small files.
    Bytes(Bytes),
    File(FileRange),
    /// Bytes and file ranges, in order (multipart/byteranges).
    Parts(Vec<Segment>),
}

impl Body {
    /// A whole file of `len` bytes (an empty file is an empty body).
    pub fn file(file: File, len: u64) -> Body {
        if len == 0 {
            return Body::Empty;
        }
        Body::File(FileRange {
            file: Arc::new(file),
            offset: 0,
            len,
        })
    }

    /// `len` bytes of a shared file from `offset` (empty -> Empty).
    pub fn range(file: Arc<File>, offset: u64, len: u64) -> Body {
        if len == 0 {
            return Body::Empty;
        }
        Body::File(FileRange { file, offset, len })
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len,
            Body::Parts(p) => p.iter().map(Segment::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append the body's non-empty segments to `out`.
    pub fn into_segments(self, out: &mut impl Extend<Segment>) {
        let seg = match self {
            Body::Empty => return,
            Body::Bytes(b) => Segment::Bytes(b),
            Body::File(f) => Segment::File(f),
            Body::Parts(p) => {
                out.extend(p.into_iter().filter(|s| !s.is_empty()));
                return;
            }
        };
        if !seg.is_empty() {
            out.extend(std::iter::once(seg));
        }
    }
}

/// A header field value or name: static text, or built for this response.
pub type Text = Cow<'static, str>;

/// Response header fields, in the order they go out. `Conn` adds the ones it
/// owns (`Server`, `Date`, `Content-Length`, `Connection`); a responder adds
/// the rest.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    list: Vec<(Text, Text)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Append a field (a name may repeat).
    pub fn push(&mut self, name: impl Into<Text>, value: impl Into<Text>) {
        let (name, value) = (name.into(), value.into());
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
            "header name {name:?}"
        );
        debug_assert!(
            value.bytes().all(|b| b == b'\t' || b >= b' ' && b != 0x7f),
            "header value {value:?}"
        );
        self.list.push((name, value));
    }

    /// Replace every field called `name` (case-insensitive) with one, in
    /// the place of the first; append it if there was none.
    pub fn set(&mut self, name: impl Into<Text>, value: impl Into<Text>) {
        let name = name.into();
        let mut value = Some(value.into());
        self.list.retain_mut(|(n, v)| {
            if !n.eq_ignore_ascii_case(&name) {
                return true;
            }
            match value.take() {
                Some(new) => {
                    *v = new;
                    true
                }
                None => false,
            }
        });
        if let Some(v) = value {
            self.push(name, v);
        }
    }

    /// Add the members of the list `value` to the field `name`: every
    /// line of it becomes one, with the members of `value` it lacks after
    /// its own (`merge_list`); appended when there was none. How `Vary` is
    /// set where the server has its own.
    pub fn merge(&mut self, name: impl Into<Text>, value: &str) {
        let name = name.into();
        let mut merged = String::new();
        for (n, v) in &self.list {
            if n.eq_ignore_ascii_case(&name) {
                merged = merge_list(&merged, v);
            }
        }
        merged = merge_list(&merged, value);
        self.set(name, merged);
    }

    /// The fields as they go out: `Name: value\r\n` each.
    pub fn render(&self) -> Bytes {
        let mut out =
            BytesMut::with_capacity(self.list.iter().map(|(n, v)| n.len() + v.len() + 4).sum());
        self.write_into(&mut out);
        out.freeze()
    }

    /// Append the fields as they go out to `out`.
    pub fn write_into(&self, out: &mut BytesMut) {
        for (name, value) in &self.list {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(n, v)| (&**n, &**v))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The comma-separated list `a`, then the members of `b` it lacks
/// (compared without regard to case), joined with ", ". `*` stands for
/// every member: a list with it is `*`.
pub fn merge_list(a: &str, b: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for m in a.split(',').chain(b.split(',')).map(str::trim) {
        if m == "*" {
            return "*".to_string();
        }
        if !m.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(m)) {
            out.push(m);
        }
    }
    out.join(", ")
}

/// What a responder answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: Status,
    /// Header lines rendered ahead of time (`Name: value\r\n` each), sent
    /// before `headers`: a cached answer's fields, shared, not rebuilt.
    pub rendered: Bytes,
    pub headers: Headers,
    pub body: Body,
}

impl Reply {
    pub fn new(status: Status, body: Body) -> Reply {
        Reply {
            status,
            rendered: Bytes::new(),
            headers: Headers::new(),
            body,
        }
    }

    /// A reply whose header fields were rendered ahead of time.
    pub fn rendered(status: Status, rendered: Bytes, body: Body) -> Reply {
        Reply {
            rendered,
            ..Reply::new(status, body)
        }
    }

    /// A built-in status reply: the status's small HTML page (none for
    /// statuses that have no body, or none built in).
    pub fn status(status: Status) -> Reply {
        let page = status.default_page();
        let mut r = Reply::new(status, Body::Empty);
        if !page.is_empty() {
            r.headers.push("Content-Type", HTML);
            r.body = Body::Bytes(Bytes::from_static(page));
        }
        r
    }

    /// Builder form of `headers.push`.
    pub fn with_header(mut self, name: impl Into<Text>, value: impl Into<Text>) -> Reply {
        self.headers.push(name, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_advance_and_bodies_flatten() {
        let mut s = Segment::Bytes(Bytes::from_static(b"hello"));
        s.advance(2);
        assert_eq!(s.len(), 3);
        s.advance(10);
        assert!(s.is_empty());
        let mut out = Vec::new();
        Body::Parts(vec![
            Segment::Bytes(Bytes::from_static(b"a")),
            Segment::Bytes(Bytes::new()),
            Segment::Bytes(Bytes::from_static(b"bc")),
        ])
        .into_segments(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(Body::Parts(out).len(), 3);
    }

    #[test]
    fn lists_merge_without_duplicates() {
        assert_eq!(
            merge_list("Accept-Encoding", "Origin"),
            "Accept-Encoding, Origin"
        );
        assert_eq!(
            merge_list("", " Origin ,, accept-encoding"),
            "Origin, accept-encoding"
        );
        assert_eq!(
            merge_list("Accept-Encoding, Origin", "origin, ACCEPT-ENCODING,Cookie"),
            "Accept-Encoding, Origin, Cookie"
        );
        assert_eq!(merge_list("Accept-Encoding", "*"), "*");
        let mut h = Headers::new();
        h.push("ETag", "\"x\"");
        h.merge("Vary", "Origin");
        h.push("Vary", "Accept");
        h.push("X", "y");
        h.merge("vary", "accept, Accept-Encoding");
        let fields: Vec<(&str, &str)> = h.iter().collect();
        assert_eq!(
            fields,
            [
                ("ETag", "\"x\""),
                ("Vary", "Origin, Accept, Accept-Encoding"),
                ("X", "y")
            ]
        );
    }

    #[test]
    fn status_replies_carry_their_page() {
        let r = Reply::status(Status::NOT_FOUND);
        assert_eq!(r.headers.get("content-type"), Some(HTML));
        assert!(!r.body.is_empty());
        let r = Reply::status(Status::NO_CONTENT);
        assert!(r.headers.is_empty());
        assert!(r.body.is_empty());
    }
}
