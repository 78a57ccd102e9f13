//! A request body in the chunked coding: read (and thrown away) before its
//! request is answered, since its size, and so a 413, is known only once it
//! is in. Its head is kept meanwhile and parsed again to be answered; the
//! body is on the same clock as a Content-Length one (`update_deadline`).

use super::*;
use crate::http::chunked::Decoder;
use crate::http::parse::ParseLimits;

/// A request whose chunked body is being read.
#[derive(Debug)]
pub(super) struct Chunked {
    /// The request's head, at most `max_header_size` bytes.
    head: Vec<u8>,
    decoder: Decoder,
}

impl Conn {
    /// A request body is still to be read: by length, or chunked.
    pub(super) fn body_pending(&self) -> bool {
        self.discard > 0 || self.chunked.is_some()
    }

    /// `head` (a whole request head) says a chunked body follows: read it first.
    pub(super) fn start_chunked(&mut self, lim: &Limits, head: &[u8]) {
        // A chunk line and the trailer section are held to the head's limit.
        let ParseLimits {
            max_header_size, ..
        } = lim.parse;
        self.chunked = Some(Box::new(Chunked {
            head: head.to_vec(),
            decoder: Decoder::new(lim.max_body_size, max_header_size, max_header_size),
        }));
    }

    /// Read the chunked body from `buf`; returns the bytes used. Once the
    /// body is in, its request is answered; a malformed one gets 400, a too
    /// large one 413, and a close.
    pub(super) fn read_chunked(&mut self, ctx: &mut Ctx<'_>, buf: &[u8]) -> usize {
        let Some(mut ch) = self.chunked.take() else {
            return 0;
        };
        match ch.decoder.feed(buf) {
            Ok(None) => {
                self.chunked = Some(ch);
                buf.len()
            }
            Ok(Some(n)) => {
                // The body is in; the next head's clock starts with it.
                self.head_started = None;
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
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
        self.chunked.take().map(|c| c.head).unwrap_or_default()
    }
}
