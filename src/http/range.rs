//! Byte ranges (RFC 9110 §14): parse a `Range` against a length, and build
//! the `multipart/byteranges` body of several ranges. Pure: the file is an
//! `Arc<File>` the body refers to, never read here.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use super::parse::Request;
use super::reply::{Body, FileRange, Segment};

/// A satisfiable range: `len` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub len: u64,
}

impl ByteRange {
    /// `Content-Range: bytes FIRST-LAST/COMPLETE`.
    pub fn content_range(self, complete: u64) -> String {
        format!(
            "bytes {}-{}/{complete}",
            self.start,
            self.start + self.len - 1
        )
    }
}

/// What a `Range` field asks of a representation of some length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Send the whole representation with 200: the field is not a valid
    /// `bytes` range set, or asks for more than is worth serving in parts
    /// (more than `max_ranges` ranges, or more bytes than the whole).
    Whole,
    /// 206, with these ranges in the order asked.
    Partial(Vec<ByteRange>),
    /// 416: valid, but no range overlaps the representation.
    Unsatisfiable,
}

/// The request's `Range` value, if it has exactly one: `Range` is not a
/// list, so two of them are ambiguous and both are ignored (the whole
/// representation is sent), as two `If-Modified-Since` are.
pub fn field<'a>(req: &Request<'a>) -> Option<&'a [u8]> {
    let mut values = req.headers_all("range");
    let value = values.next()?;
    values.next().is_none().then_some(value)
}

/// Ranges of a representation that has a content coding (a precompressed
/// variant): several are answered with the whole variant (200), not with a
/// `multipart/byteranges` body. That body is not in the coding, so an outer
/// `Content-Encoding` would be false, and a coding is representation
/// metadata: the parts of one compressed stream cannot be decoded apart.
/// One range stays a 206 with the coding: its bytes are a range of the
/// encoded representation (§14.1.2), as a client resuming a download asks.
pub fn of_coded(ranges: Ranges, coded: bool) -> Ranges {
    match ranges {
        Ranges::Partial(rs) if coded && rs.len() > 1 => Ranges::Whole,
        other => other,
    }
}

/// Evaluate a `Range` value against a representation of `len` bytes.
pub fn evaluate(value: &[u8], len: u64, max_ranges: usize) -> Ranges {
    let Some(specs) = parse(value) else {
        return Ranges::Whole;
    };
    // An empty file has no bytes to range over: any range would be 416,
    // which helps no one; send it whole (RFC 9110 §14.2 lets a server
    // ignore Range).
    if specs.len() > max_ranges || len == 0 {
        return Ranges::Whole;
    }
    let mut out = Vec::with_capacity(specs.len());
    let mut total: u64 = 0;
    for spec in specs {
        let r = match spec {
            Spec::From { first, last } if first < len => ByteRange {
                start: first,
                len: last.map_or(len - 1, |l| l.min(len - 1)) - first + 1,
            },
            Spec::Suffix(n) if n > 0 => {
                let n = n.min(len);
                ByteRange {
                    start: len - n,
                    len: n,
                }
            }
            _ => continue,
        };
        total = total.saturating_add(r.len);
        out.push(r);
    }
    if out.is_empty() {
        Ranges::Unsatisfiable
    } else if total > len {
        // Overlapping ranges that add up to more than the file: a way to
        // make a small request cost a large response. Send it once.
        Ranges::Whole
    } else {
        Ranges::Partial(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    From { first: u64, last: Option<u64> },
    Suffix(u64),
}

/// `bytes=` range-set; None when it is not one (an unknown unit included).
fn parse(value: &[u8]) -> Option<Vec<Spec>> {
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (&value[..eq], &value[eq + 1..]);
    if !unit.trim_ascii().eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        let dash = item.iter().position(|&b| b == b'-')?;
        let (a, b) = (&item[..dash], &item[dash + 1..]);
        specs.push(if a.is_empty() {
            Spec::Suffix(number(b)?)
        } else {
            let first = number(a)?;
            let last = if b.is_empty() { None } else { Some(number(b)?) };
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From { first, last }
        });
    }
    (!specs.is_empty()).then_some(specs)
}

/// 1*DIGIT; values past u64 saturate (they are past any file's end anyway).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The body of a `multipart/byteranges` response: for each range, a part
/// head (boundary, Content-Type, Content-Range) as bytes and the range as
/// `part` makes it (a file segment, or a slice of cached bytes), then the closing boundary. Returns the body and the value
/// of the response's own Content-Type.
pub fn multipart(
    ranges: &[ByteRange],
    complete: u64,
    content_type: &str,
    boundary: &str,
    part: impl Fn(ByteRange) -> Segment,
) -> (Body, String) {
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    for &r in ranges {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
            r.content_range(complete)
        );
        parts.push(Segment::Bytes(Bytes::from(head)));
        parts.push(part(r));
    }
    parts.push(Segment::Bytes(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    (
        Body::Parts(parts),
        format!("multipart/byteranges; boundary={boundary}"),
    )
}

/// A range of a shared file as a segment (the zero-copy kind).
pub fn file_part(file: &Arc<File>) -> impl Fn(ByteRange) -> Segment + '_ {
    move |r| {
        Segment::File(FileRange {
            file: file.clone(),
            offset: r.start,
            len: r.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, len: u64) -> ByteRange {
        ByteRange { start, len }
    }

    fn eval(v: &str, len: u64) -> Ranges {
        evaluate(v.as_bytes(), len, 4)
    }

    #[test]
    fn several_ranges_of_a_coded_representation_are_whole() {
        let two = eval("bytes=0-1,4-5", 590);
        assert_eq!(of_coded(two.clone(), true), Ranges::Whole);
        assert_eq!(of_coded(two.clone(), false), two);
        let one = eval("bytes=4-5", 590);
        assert_eq!(of_coded(one.clone(), true), one);
        assert_eq!(of_coded(Ranges::Unsatisfiable, true), Ranges::Unsatisfiable);
    }

    #[test]
    fn single() {
        assert_eq!(eval("bytes=0-99", 590), Ranges::Partial(vec![r(0, 100)]));
        assert_eq!(eval("bytes=500-", 590), Ranges::Partial(vec![r(500, 90)]));
        assert_eq!(eval("bytes=-90", 590), Ranges::Partial(vec![r(500, 90)]));
        assert_eq!(eval("bytes=-1000", 590), Ranges::Partial(vec![r(0, 590)]));
        assert_eq!(
            eval("bytes=580-9999", 590),
            Ranges::Partial(vec![r(580, 10)])
        );
        assert_eq!(eval("bytes=589-589", 590), Ranges::Partial(vec![r(589, 1)]));
        assert_eq!(eval("Bytes = 0-0", 590), Ranges::Partial(vec![r(0, 1)]));
        assert_eq!(
            eval("bytes=0-99999999999999999999999", 590),
            Ranges::Partial(vec![r(0, 590)])
        );
        assert_eq!(r(0, 100).content_range(590), "bytes 0-99/590");
    }

    #[test]
    fn several_in_the_order_asked() {
        assert_eq!(
            eval("bytes=10-19, 0-4,,-5", 100),
            Ranges::Partial(vec![r(10, 10), r(0, 5), r(95, 5)])
        );
        // Unsatisfiable members are dropped when others remain.
        assert_eq!(
            eval("bytes=0-4,200-300", 100),
            Ranges::Partial(vec![r(0, 5)])
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(eval("bytes=590-", 590), Ranges::Unsatisfiable);
        assert_eq!(eval("bytes=600-700", 590), Ranges::Unsatisfiable);
        assert_eq!(eval("bytes=-0", 590), Ranges::Unsatisfiable);
        assert_eq!(eval("bytes=600-,700-800", 590), Ranges::Unsatisfiable);
    }

    #[test]
    fn invalid_is_ignored() {
        for v in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=",
            "bytes",
            "items=0-1",
            "0-1",
            "bytes=--1",
            "bytes=1",
            "bytes=0x1-2",
            "bytes=,",
            "bytes=-",
        ] {
            assert_eq!(eval(v, 590), Ranges::Whole, "{v}");
        }
    }

    #[test]
    fn too_much_is_whole() {
        // More ranges than max_ranges (4 here).
        assert_eq!(eval("bytes=0-0,2-2,4-4,6-6,8-8", 590), Ranges::Whole);
        // Overlapping ranges adding up to more than the file.
        assert_eq!(eval("bytes=0-400,100-500", 590), Ranges::Whole);
        assert_eq!(eval("bytes=0-,0-", 590), Ranges::Whole);
        // max_ranges 0 turns ranges off; an empty file has none.
        assert_eq!(evaluate(b"bytes=0-1", 590, 0), Ranges::Whole);
        assert_eq!(eval("bytes=0-1", 0), Ranges::Whole);
    }

    #[test]
    fn multipart_body() {
        let f = Arc::new(File::open("/dev/null").unwrap());
        let (body, ct) = multipart(&[r(0, 5), r(10, 3)], 100, "text/plain", "B", file_part(&f));
        assert_eq!(ct, "multipart/byteranges; boundary=B");
        let Body::Parts(parts) = &body else {
            panic!("{body:?}")
        };
        let shape: Vec<String> = parts
            .iter()
            .map(|s| match s {
                Segment::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                Segment::File(f) => format!("<{}+{}>", f.offset, f.len),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/100\r\n\r\n",
                "<0+5>",
                "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-12/100\r\n\r\n",
                "<10+3>",
                "\r\n--B--\r\n",
            ]
        );
    }

    /// Whatever the bytes, ranges stay inside the file, are never empty and
    /// add up to at most its length; nothing panics.
    #[test]
    fn any_input_gives_ranges_inside_the_file() {
        let alphabet = b"bytes=0123456789-, ;\t=xB";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let n = (next() % 24) as usize;
            let mut v: Vec<u8> = b"bytes=".to_vec();
            v.truncate((next() % 7) as usize);
            v.extend((0..n).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            let len = next() % 2000;
            let max = (next() % 6) as usize;
            if let Ranges::Partial(rs) = evaluate(&v, len, max) {
                assert!(!rs.is_empty() && rs.len() <= max, "{v:?}");
                let mut total = 0;
                for r in &rs {
                    assert!(
                        r.len > 0 && r.start + r.len <= len,
                        "{:?} {rs:?}",
                        String::from_utf8_lossy(&v)
                    );
                    total += r.len;
                }
                assert!(total <= len);
            }
        }
    }
}
