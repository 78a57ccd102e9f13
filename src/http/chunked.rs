//! The chunked transfer coding of a request body (RFC 9112 §7.1), read and
//! thrown away: bytes in, how many of them belong to the body out. Sans-IO
//! and byte-driven, so the verdict depends only on the bytes, never on how
//! they are split.
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Every line ends in CRLF: a bare LF, or a CR not followed by LF, is
//! malformed. RFC 9112 §2.2 lets a recipient accept a bare LF only in the
//! start line and header fields; in the framing of a body a lenient reading
//! is what request smuggling feeds on, so none is offered. Extensions and
//! trailer fields are skipped, after a check of their characters; a chunk
//! line (size and extensions) and the whole trailer section are each
//! bounded by `max_line` and `max_trailer` bytes. A chunk size beyond what
//! the body may still hold (`max_body`, of decoded bytes) is `TooLarge` as
//! soon as its digits say so, so no size overflows.

use super::Status;
use crate::config::is_tchar;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not the chunked coding, or a line over its bound: 400.
    Malformed,
    /// The decoded body would exceed `max_body`: 413.
    TooLarge,
}

impl Error {
    pub fn status(self) -> Status {
        match self {
            Error::Malformed => Status::BAD_REQUEST,
            Error::TooLarge => Status::PAYLOAD_TOO_LARGE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The hex digits of a chunk size (`digits` so far).
    Size,
    /// Whitespace after the size: only more of it or a `;` may follow.
    SizeWs,
    /// A chunk extension, up to the line's CR.
    Ext,
    /// The CR of a chunk line came; its LF must follow.
    LineLf,
    /// `left` bytes of chunk data to skip.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line, or the final CRLF.
    Trailer,
    /// A trailer field's name, up to its colon.
    TrailerName,
    /// A trailer field's value, up to its CR.
    TrailerValue,
    /// The LF that ends a trailer line.
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
    Done,
}

/// Reads a chunked body and throws its data away.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// Size of the chunk whose line is being read; then its data left.
    left: u64,
    digits: usize,
    /// Bytes of the current chunk line so far.
    line: usize,
    /// Bytes of the trailer section so far.
    trailer: usize,
    /// Decoded bytes the body may still have.
    room: u64,
    max_line: usize,
    max_trailer: usize,
}

impl Decoder {
    pub fn new(max_body: u64, max_line: usize, max_trailer: usize) -> Decoder {
        Decoder {
            state: State::Size,
            left: 0,
            digits: 0,
            line: 0,
            trailer: 0,
            room: max_body,
            max_line,
            max_trailer,
        }
    }

    /// Read what of `input` belongs to the body: `Ok(Some(n))` when the body
    /// ended after its first `n` bytes (the rest is the next request), or
    /// `Ok(None)` when all of it was body and more is to come. Once done it
    /// reads nothing more; after an error it is not to be fed again.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<usize>, Error> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                let k = self.left.min((input.len() - i) as u64);
                self.left -= k;
                i += k as usize;
                if self.left == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.byte(input[i])?;
            i += 1;
        }
        Ok((self.state == State::Done).then_some(i))
    }

    /// One byte of framing (anything but chunk data).
    fn byte(&mut self, b: u8) -> Result<(), Error> {
        use State::*;
        let in_line = matches!(self.state, Size | SizeWs | Ext | LineLf);
        if in_line {
            self.line += 1;
            if self.line > self.max_line {
                return Err(Error::Malformed);
            }
        } else if self.state != DataCr && self.state != DataLf {
            self.trailer += 1;
            if self.trailer > self.max_trailer {
                return Err(Error::Malformed);
            }
        }
        self.state = match (self.state, b) {
            (Size, _) if b.is_ascii_hexdigit() => {
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                // Past u64, a size is past any room: too large, not wrapped.
                self.left = match self.left.checked_mul(16).and_then(|v| v.checked_add(d)) {
                    Some(v) if v <= self.room => v,
                    _ => return Err(Error::TooLarge),
                };
                self.digits += 1;
                Size
            }
            (Size, _) if self.digits == 0 => return Err(Error::Malformed),
            (Size | SizeWs, b' ' | b'\t') => SizeWs,
            (Size | SizeWs | Ext, b';') => Ext,
            (Size | Ext, b'\r') => LineLf,
            (Ext, _) if is_text(b) => Ext,
            (LineLf, b'\n') => self.end_line(),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.digits = 0;
                self.line = 0;
                Size
            }
            (Trailer, b'\r') => EndLf,
            (Trailer | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_text(b) => TrailerValue,
            (TrailerLf, b'\n') => Trailer,
            (EndLf, b'\n') => Done,
            _ => return Err(Error::Malformed),
        };
        Ok(())
    }

    /// A chunk line is over: its data follows, or the trailer if it was the last.
    fn end_line(&mut self) -> State {
        if self.left == 0 {
            return State::Trailer;
        }
        self.room -= self.left;
        State::Data
    }
}

/// A byte of a field value or an extension: visible, space, tab or obs-text.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: u64 = 100;
    const MAX_LINE: usize = 40;
    const MAX_TRAILER: usize = 60;

    fn decoder() -> Decoder {
        Decoder::new(MAX_BODY, MAX_LINE, MAX_TRAILER)
    }

    /// Feed the parts in order, as a connection would: stop at the first
    /// verdict. The body's length is counted from the start of the input.
    fn run(parts: &[&[u8]]) -> Result<Option<usize>, Error> {
        let mut d = decoder();
        let mut before = 0;
        for p in parts {
            match d.feed(p)? {
                Some(n) => return Ok(Some(before + n)),
                None => before += p.len(),
            }
        }
        Ok(None)
    }

    /// Whole, split in two at every byte, and a byte at a time: the same verdict.
    fn check(input: &[u8], want: Result<Option<usize>, Error>) {
        let show = String::from_utf8_lossy(input);
        assert_eq!(run(&[input]), want, "whole {show:?}");
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(run(&[a, b]), want, "split at {at}: {show:?}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), want, "a byte at a time: {show:?}");
    }

    /// A complete body followed by the next request: the body's length.
    fn ok(body: impl AsRef<[u8]>) {
        let body = body.as_ref();
        let input = [body, b"GET / HTTP/1.1\r\n\r\n"].concat();
        check(&input, Ok(Some(body.len())));
    }

    fn bad(input: impl AsRef<[u8]>, e: Error) {
        check(input.as_ref(), Err(e));
    }

    #[test]
    fn valid_bodies() {
        ok("0\r\n\r\n");
        ok("000\r\n\r\n");
        ok("5\r\nhello\r\n0\r\n\r\n");
        ok("5\r\nhe\r\nl\r\n0\r\n\r\n");
        ok("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n");
        ok("0005\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
        ok("5;x=y\r\nhello\r\n0;last\r\n\r\n");
        ok("5 ;x=\"a; b\"\r\nhello\r\n0\t; x\r\n\r\n");
        ok(b"5;\x80\xff\r\nhello\r\n0\r\n\r\n");
        ok("5\r\n\r\n\r\n\0\r\n0\r\n\r\n");
        ok(b"0\r\nX-T: 1\r\nEmpty:\r\nY: a\tb \x80\r\n\r\n");
        ok(format!("64\r\n{}\r\n0\r\n\r\n", "x".repeat(100)));
        ok(format!(
            "32\r\n{0}\r\n32\r\n{0}\r\n0\r\n\r\n",
            "x".repeat(50)
        ));
        // Lines exactly at their bounds.
        ok(format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_LINE - 4)));
        ok(format!("0\r\nX:{}\r\n\r\n", "v".repeat(MAX_TRAILER - 6)));
    }

    #[test]
    fn incomplete_bodies_want_more() {
        for input in [
            "",
            "5",
            "5\r",
            "5\r\nhel",
            "5\r\nhello",
            "5\r\nhello\r",
            "5\r\nhello\r\n0\r\n",
            "0\r\nX: 1\r\n",
            "0\r\n\r",
        ] {
            check(input.as_bytes(), Ok(None));
        }
    }

    #[test]
    fn malformed_bodies() {
        use Error::Malformed as M;
        bad("zz\r\nhello\r\n0\r\n\r\n", M);
        bad("\r\n", M);
        bad(";x\r\n0\r\n\r\n", M);
        bad(" 5\r\nhello\r\n0\r\n\r\n", M);
        bad("-5\r\nhello\r\n0\r\n\r\n", M);
        bad("0x5\r\nhello\r\n0\r\n\r\n", M);
        bad("5 \r\nhello\r\n0\r\n\r\n", M);
        bad("5 x\r\nhello\r\n0\r\n\r\n", M);
        bad("5\nhello\r\n0\r\n\r\n", M);
        bad("5\rhello\r\n0\r\n\r\n", M);
        bad("5\r\nhelloX\r\n0\r\n\r\n", M);
        bad("5\r\nhello\n0\r\n\r\n", M);
        bad("5\r\nhello\r0\r\n\r\n", M);
        bad("5;a\x01b\r\nhello\r\n0\r\n\r\n", M);
        bad("5;a\nb\r\nhello\r\n0\r\n\r\n", M);
        bad("0\r\n\n", M);
        bad("0\r\n\rX", M);
        bad("0\n\r\n", M);
        bad("0\r\nX: 1\n\r\n", M);
        bad("0\r\nX: 1\r\r\n", M);
        bad("0\r\nX 1\r\n\r\n", M);
        bad("0\r\n: 1\r\n\r\n", M);
        bad("0\r\n X: 1\r\n\r\n", M);
        bad("0\r\nX: a\x00b\r\n\r\n", M);
        bad("0\r\nX: 1\r\n folded\r\n\r\n", M);
        // Over the bounds: a chunk line, leading zeros, the trailer section.
        bad(
            format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_LINE - 3)),
            M,
        );
        bad(format!("{}1\r\nx\r\n0\r\n\r\n", "0".repeat(MAX_LINE)), M);
        bad(format!("0\r\nX:{}\r\n\r\n", "v".repeat(MAX_TRAILER - 5)), M);
        bad(
            format!("0\r\n{}\r\n", "X: 1\r\n".repeat(MAX_TRAILER / 6)),
            M,
        );
        // The bound is on each line, not the body: many short lines pass.
        ok(format!(
            "{}0\r\n\r\n",
            "1;abcdefghijklmnopqrstuvwxyz\r\nx\r\n".repeat(50)
        ));
    }

    #[test]
    fn decoded_size_is_bounded() {
        use Error::TooLarge as T;
        // 101 bytes of data, however they are chunked.
        bad(format!("65\r\n{}\r\n0\r\n\r\n", "x".repeat(101)), T);
        bad(
            format!("64\r\n{}\r\n1\r\nx\r\n0\r\n\r\n", "x".repeat(100)),
            T,
        );
        // Decided by the size line alone, before any data comes.
        bad("65\r\n", T);
        bad("65", T);
        bad("1000000000000000000000000000000\r\n", T);
        bad("ffffffffffffffffffffffff;x\r\n", T);
        // The size is judged before what follows it on the line.
        bad("fffff\n", T);
        let mut d = Decoder::new(u64::MAX, 100, 100);
        assert_eq!(d.feed(b"ffffffffffffffff\r\n"), Ok(None));
        let mut d = Decoder::new(u64::MAX, 100, 100);
        assert_eq!(d.feed(b"10000000000000000\r\n"), Err(T));
    }

    #[test]
    fn nothing_is_read_after_the_end() {
        let mut d = decoder();
        assert_eq!(d.feed(b"0\r\n\r\nGET"), Ok(Some(5)));
        assert_eq!(d.feed(b"anything"), Ok(Some(0)));
        assert_eq!(Error::Malformed.status(), Status::BAD_REQUEST);
        assert_eq!(Error::TooLarge.status(), Status::PAYLOAD_TOO_LARGE);
    }
}
