//! A request body in the chunked coding: read (and thrown away) before its
//! request is answered, since its size, and so a 413, is known only once it
//! is in. Its head is kept meanwhile and parsed again to be answered; the
//! body is on the same clock as a Content-Length one (`phase.rs`).
//! (A Content-Length body is read after its response: nothing in it can
//! change the answer, so nothing asks for a 100 Continue either.)

use super::*;
use bytes::Bytes;

use crate::http::chunked::Decoder;
use crate::http::parse::parse_head;

/// The interim response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request whose chunked body is being read.
#[derive(Debug)]
pub(super) struct Chunked {
    /// The request's head, at most `max_header_size` bytes.
    head: Vec<u8>,
    decoder: Decoder,
}

impl Conn {
    /// `req` (whose head is `raw`) says a chunked body follows: read it
    /// first. A client that waits for leave to send it (`Expect:
    /// 100-continue`) gets a 100 (Continue) first, whether or not the body
    /// has begun to come (RFC 9110 10.1.1): the answer waits for the body.
    pub(super) fn start_chunked(&mut self, ctx: &mut Ctx<'_>, req: &Request<'_>, raw: &[u8]) {
        // A chunk line and the trailer section are held to the head's limit.
        let lim = ctx.limits;
        let max_line = lim.parse.max_header_size;
        self.rare().chunked = Some(Box::new(Chunked {
            head: raw.to_vec(),
            decoder: Decoder::new(lim.max_body_size, max_line, max_line),
        }));
        let expect = req.header("expect");
        if expect.is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue")) {
            let b = &mut **self.bufs.get_or_insert_with(|| ctx.pool.take());
            b.segs.clear();
            b.segs.push(Segment::Bytes(Bytes::from_static(CONTINUE)));
            b.seg_pos = 0;
            b.out = Some(Out {
                close: false,
                status: 100,
                head_len: CONTINUE.len() as u64,
                body_len: 0,
                sent: 0,
            });
        }
    }

    /// Read the chunked body from `buf`; returns the bytes used. Once the
    /// body is in, its request is answered; a malformed one gets 400, a too
    /// large one 413, and a close.
    pub(super) fn read_chunked(&mut self, ctx: &mut Ctx<'_>, buf: &[u8]) -> usize {
        let Some(mut ch) = self.take_chunked() else {
            return 0;
        };
        match ch.decoder.feed(buf) {
            Ok(None) => {
                self.rare().chunked = Some(ch);
                buf.len()
            }
            Ok(Some(n)) => {
                // The body is in; the next head's clock starts with it.
                self.set_head_started(None);
                let mut headers = header_slots();
                match parse_head(&ch.head, &mut headers, &ctx.limits.parse) {
                    Ok(Parsed::Complete(req, _)) => self.respond(ctx, &req),
                    // It parsed before: only smaller limits (a reload) refuse it now.
                    other => {
                        let status = other.err().map_or(Status::BAD_REQUEST, |r| r.status);
                        self.reject(ctx, status, &ch.head);
                    }
                }
                n
            }
            Err(e) => {
                self.reject(ctx, e.status(), &ch.head);
                buf.len()
            }
        }
    }

    /// The held head of an unfinished chunked body (empty if none), for
    /// its 408 to log.
    pub(super) fn take_chunked_head(&mut self) -> Vec<u8> {
        self.take_chunked().map(|c| c.head).unwrap_or_default()
    }
}
