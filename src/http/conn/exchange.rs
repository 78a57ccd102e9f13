//! Each request's `Exchange` record (`log::access`): its request side held
//! when the request is read, reported with the response's facts once that
//! response is over (whole, or cut short). Formatting is not done here.

use super::*;
use crate::log::access::{HeldRequest, RequestLine, TlsFacts};

impl Conn {
    /// The connection's TLS session is established: its exchanges carry
    /// these facts (the transport sets them; HTTP only passes them on).
    pub fn set_tls(&mut self, facts: TlsFacts) {
        self.rare().tls = Some(Box::new(facts));
    }

    /// A request was read: hold what its record needs. The request line and
    /// the `referer` and `ua` fields are copied only if a log will show them.
    pub(super) fn begin_exchange(
        &mut self,
        ctx: &mut Ctx<'_>,
        line: RequestLine<'_>,
        referer: Option<&[u8]>,
        ua: Option<&[u8]>,
    ) {
        let line = ctx.logs().then_some(line);
        let b = self.bufs.get_or_insert_with(|| ctx.pool.take());
        b.request
            .hold(ctx.now.instant(), ctx.now.wall, line, referer, ua);
    }

    /// A response is over, `body_sent` of its body bytes out: report its
    /// exchange. An interim (1xx) response is not the request's answer.
    pub(super) fn end_exchange(&mut self, ctx: &mut Ctx<'_>, out: &Out, body_sent: u64) {
        if out.status < 200 {
            return;
        }
        let sent = out.sent.min(out.head_len + out.body_len);
        let end = ctx.now.instant();
        // A response always has its buffers (`send_reply` took them).
        let none = HeldRequest::new();
        let held = self.bufs.as_deref().map_or(&none, |b| &b.request);
        let mut x = held.exchange(self.peer, out.status, body_sent, sent, end);
        x.tls = self
            .rare
            .as_ref()
            .and_then(|r| r.tls.as_deref())
            .map(TlsFacts::as_tls);
        ctx.exchange(&x);
    }
}

/// The request line of a parsed request, as a record shows it.
pub(super) fn request_line<'a>(req: &Request<'a>) -> RequestLine<'a> {
    RequestLine::Parsed {
        method: req.method_str.as_bytes(),
        target: req.target.as_bytes(),
        protocol: if req.minor == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        },
    }
}

/// A held request grown by a huge header set is not kept in the pool; an
/// ordinary one keeps its allocation for the next request.
#[test]
fn the_pool_drops_a_huge_held_request() {
    let t = std::time::Instant::now();
    let mut pool = BufferPool::default();
    for (ua_len, kept) in [(100, true), (64 * 1024, false)] {
        let mut b = pool.take();
        let ua = vec![b'u'; ua_len];
        let line = RequestLine::Raw(b"GET / HTTP/1.1");
        b.request
            .hold(t, std::time::UNIX_EPOCH, Some(line), None, Some(&ua));
        pool.put(b);
        let b = pool.take();
        assert_eq!(b.request.capacity() >= ua_len, kept, "{ua_len}");
        pool.put(b);
    }
}

/// Spare buffers a burst of responses left go once a whole tick passed
/// without one being taken; a tick with one taken keeps them.
#[test]
fn spare_buffers_go_at_a_quiet_tick() {
    let mut pool = BufferPool::default();
    let taken: Vec<_> = (0..500).map(|_| pool.take()).collect();
    taken.into_iter().for_each(|b| pool.put(b));
    assert_eq!(pool.free.len(), 500);
    assert_eq!(pool.trim(), None, "used during this tick: kept");
    assert_eq!(pool.free.len(), 500);
    assert_eq!(pool.trim(), Some(true), "a quiet tick lets them go");
    assert_eq!(pool.free.capacity(), 0);
    assert_eq!(pool.trim(), Some(false));
}
