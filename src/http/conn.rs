//! The sans-IO HTTP/1.1 connection: bytes in, `Transmit` out, time passed in.
//!
//! Requests are answered one at a time, in order. While a response is being
//! sent, further (pipelined) input is kept in `Rare::inbuf`; the engine reads at
//! most `input_room` bytes at a time and stops once it is 0, so a connection
//! never holds more than `Limits::max_buffered` bytes of input, however fast
//! a client pipelines. An idle connection holds no buffered input.
//!
//! What a response sends is a list of owned `Segment`s (the encoded head,
//! then the body's bytes and file ranges). An engine clones what it hands to
//! the kernel and keeps the clones until the kernel is done, so every
//! `handle_*` call stays allowed while a send is in flight.

use std::net::SocketAddr;
use std::time::Instant;

use super::parse::{Method, Parsed, Request, header_slots, parse_request_head};
use super::reply::{Body, Reply, Segment};
use super::{Ctx, Limits, Stamp, Status, later};
use crate::log::Level;
use crate::log::access::{RequestLine, decimal};

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// The answer to a request, by its method: GET and HEAD from the
/// responder, OPTIONS with `Allow`, any other method 405 (one we know) or
/// 501 (one we do not), with `Allow`. The one method policy of both
/// protocols (HTTP/1.1's `Conn` and HTTP/2's streams). True: a HEAD, whose
/// body is not sent.
pub fn answer(ctx: &mut Ctx<'_>, req: &Request<'_>) -> (Reply, bool) {
    match req.method {
        Method::Get | Method::Head => (
            ctx.responder.respond(req, ctx.now, ctx.local, ctx.notes),
            req.method == Method::Head,
        ),
        Method::Options => (
            Reply::new(Status::NO_CONTENT, Body::Empty).with_header("Allow", ALLOW),
            false,
        ),
        Method::Unknown => (
            ctx.responder
                .error(Status::NOT_IMPLEMENTED)
                .with_header("Allow", ALLOW),
            false,
        ),
        _ => (
            ctx.responder
                .error(Status::METHOD_NOT_ALLOWED)
                .with_header("Allow", ALLOW),
            false,
        ),
    }
}

/// What the engine should do next for this connection.
#[derive(Debug)]
pub enum Transmit<'a> {
    /// Nothing to send: wait for input or the timeout.
    Idle,
    /// Send these segments, in order: what is left of the current response
    /// (never empty). The engine may send any prefix, and reports the bytes
    /// that reached the socket with `handle_sent`. To keep a segment past
    /// this call (an asynchronous send), clone it: clones are refcounts.
    Send(&'a [Segment]),
    /// Half-close the write side (shutdown(SHUT_WR)), then call
    /// `Conn::handle_shutdown` and keep reading until EOF or the timeout.
    Shutdown,
    /// Close the connection now.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading requests (or sending the response to one).
    Open,
    /// All responses sent; write side to be shut, input discarded (until
    /// `Rare::linger_until`).
    Linger {
        shut: bool,
    },
    Closed,
}

/// The response being sent (its bytes are `Buffers::segs[seg_pos..]`).
#[derive(Debug)]
struct Out {
    close: bool,
    status: u16,
    /// Bytes of the encoded head, and of the body that follows it.
    head_len: u64,
    body_len: u64,
    /// Bytes of head and body that reached the socket.
    sent: u64,
}

/// What only some connections need, most for a while, boxed so that an
/// idle keep-alive connection does not carry it (72 bytes less each):
/// made when one of them is set, dropped when the connection falls idle
/// with none of them set.
#[derive(Debug, Default)]
struct Rare {
    /// Unprocessed input: a request head that arrived split, or pipelined
    /// requests.
    inbuf: Vec<u8>,
    /// What its exchanges say of the TLS session, if there is one (`set_tls`).
    tls: Option<Box<crate::log::access::TlsFacts>>,
    /// Request body bytes still to read and throw away (Content-Length).
    discard: u64,
    /// A chunked request body being read, before its request is answered.
    chunked: Option<Box<Chunked>>,
    /// While draining: an idle keep-alive connection closes at this time.
    drain_until: Option<Instant>,
    /// When the unfinished head began to arrive, or the head of the body
    /// being read and thrown away ended (and again when its response is
    /// out): each must be whole within `header_timeout` of that, however
    /// the client paces it.
    head_started: Option<Instant>,
    /// While idle: bytes of the last response the engine last found still in
    /// the socket's send queue, and since when that amount has not shrunk.
    unsent: Option<(usize, Instant)>,
    /// Lingering (`State::Linger`): when it closes.
    linger_until: Option<Instant>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.inbuf.capacity() == 0
            && self.tls.is_none()
            && self.discard == 0
            && self.chunked.is_none()
            && self.drain_until.is_none()
            && self.head_started.is_none()
            && self.unsent.is_none()
            && self.linger_until.is_none()
    }
}

#[derive(Debug)]
pub struct Conn {
    peer: SocketAddr,
    state: State,
    /// The buffers of a response under way, with that response (`out`);
    /// none while idle (see `Buffers`).
    bufs: Option<Box<Buffers>>,
    /// The peer sent FIN: finish what was asked, then close.
    peer_eof: bool,
    /// Graceful stop: the next response closes the connection.
    draining: bool,
    /// Four bytes: with them the state and the flags fit in one word (an
    /// idle connection is this struct; 8 bytes less each). Saturates.
    requests: u32,
    /// What few connections need (`Rare`): none while it is idle.
    rare: Option<Box<Rare>>,
    /// When a byte last came in or went out, and when `handle_timeout` wants to be
    /// called: `Stamp`s (8 bytes; an `Instant` is 16), rounded up: never early.
    last_activity: Stamp,
    deadline: Option<Stamp>,
}

// An idle connection is this, in its engine's slab slot: no growing back.
const _: () = assert!(size_of::<Conn>() <= 72);

impl Conn {
    pub fn new(peer: SocketAddr, now: Instant, limits: &Limits) -> Conn {
        let mut c = Conn {
            peer,
            state: State::Open,
            bufs: None,
            peer_eof: false,
            draining: false,
            requests: 0,
            rare: None,
            last_activity: Stamp::of(now),
            deadline: None,
        };
        c.update_deadline(limits); // Phase::Fresh: header_timeout from now
        c
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Requests answered (or being answered) on this connection.
    pub fn requests(&self) -> u64 {
        u64::from(self.requests)
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the engine should keep reading from the socket.
    pub fn wants_input(&self, limits: &Limits) -> bool {
        self.input_room(limits) > 0
    }

    /// The most bytes the engine should read before handing them over: what
    /// is left of `max_buffered` (a read that size may be kept whole when a
    /// response is in flight). 0 when it should not read.
    pub fn input_room(&self, limits: &Limits) -> usize {
        if self.state == State::Closed {
            return 0;
        }
        limits.max_buffered().saturating_sub(self.inbuf_len())
    }

    /// Feed bytes the engine received; the engine keeps nothing once this returns.
    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        let now = ctx.now.instant();
        match self.state {
            State::Closed | State::Linger { .. } => return,
            State::Open => {}
        }
        if data.is_empty() {
            return;
        }
        self.last_activity = ctx.now.stamp();
        if !self.has_input() {
            let used = self.process(ctx, data);
            if used < data.len() && self.state == State::Open {
                self.inbuf_mut().extend_from_slice(&data[used..]);
                self.rare().head_started.get_or_insert(now);
            }
        } else {
            self.inbuf_mut().extend_from_slice(data);
            self.advance(ctx);
        }
        // The end of a body read after its response leaves it idle.
        self.shed(ctx);
        self.update_deadline(ctx.limits);
    }

    /// The peer closed its write side.
    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        self.peer_eof = true;
        match self.state {
            State::Linger { .. } => {
                self.state = State::Closed;
                self.update_deadline(ctx.limits);
            }
            State::Open if !self.sending() => self.close(ctx),
            _ => {}
        }
    }

    /// The connection broke (reset, error): log what was in flight and close.
    pub fn handle_error(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx);
    }

    /// `n` more bytes of the current `Transmit::Send` reached the socket.
    pub fn handle_sent(&mut self, ctx: &mut Ctx<'_>, n: usize) {
        let Some(b) = self.bufs.as_deref_mut() else {
            return;
        };
        let Some(out) = b.out.as_mut() else {
            return;
        };
        if n > 0 {
            self.last_activity = ctx.now.stamp();
        }
        let mut n = n as u64;
        let segs = &mut b.segs;
        while n > 0 && b.seg_pos < segs.len() {
            let seg = &mut segs[b.seg_pos];
            let k = n.min(seg.len());
            seg.advance(k);
            out.sent += k;
            n -= k;
            if seg.is_empty() {
                b.seg_pos += 1;
            }
        }
        if b.seg_pos == segs.len() {
            self.finish_response(ctx);
        }
        self.update_deadline(ctx.limits);
    }

    /// Finish the response in progress, then close (graceful stop, reload drain).
    /// An idle keep-alive connection closes now, or after `ctx.drain_grace`
    /// if no request comes before then. A connection that has not sent its
    /// first request yet is waiting to: it gets that request answered (with
    /// `Connection: close`), bounded by the header timeout.
    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.draining = true;
        if self.is_idle() {
            self.grace(ctx);
        }
    }

    /// Draining, and idle after a response: the client may send one more
    /// request within `ctx.drain_grace` (answered with `Connection: close`);
    /// it has not been told to stop, so closing now would race that request.
    fn grace(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.drain_grace.is_zero() {
            self.close(ctx);
        } else {
            let until = later(ctx.now.instant(), ctx.drain_grace);
            let r = self.rare();
            r.drain_until = Some(r.drain_until.map_or(until, |d| d.min(until)));
            self.update_deadline(ctx.limits);
        }
    }

    /// The idle deadline (keep-alive, or the drain grace) came, but the
    /// engine found `unsent` bytes of the last response still in the socket's
    /// send queue: the client is still receiving it (a slow reader), so its
    /// next request cannot have come yet. The idle time starts over, as if
    /// the last byte left now, for as long as the queue keeps shrinking
    /// (at most `send_timeout` without progress); otherwise the deadline is
    /// acted on as usual.
    pub fn handle_unsent(&mut self, ctx: &mut Ctx<'_>, unsent: usize) {
        let now = ctx.now.instant();
        if !self.is_idle() || unsent == 0 {
            return self.handle_timeout(ctx);
        }
        let since = match self.rare.as_ref().and_then(|r| r.unsent) {
            Some((before, since)) if unsent >= before => since,
            _ => now,
        };
        if now.saturating_duration_since(since) >= ctx.limits.send_timeout {
            return self.handle_timeout(ctx);
        }
        let r = self.rare();
        r.unsent = Some((unsent, since));
        if r.drain_until.is_some() {
            r.drain_until = Some(later(now, ctx.drain_grace));
        }
        self.last_activity = ctx.now.stamp();
        self.update_deadline(ctx.limits);
    }

    /// The engine shut the write side as `Transmit::Shutdown` asked.
    pub fn handle_shutdown(&mut self) {
        if let State::Linger { .. } = self.state {
            self.state = State::Linger { shut: true };
        }
    }

    /// What to do next. Calling it has no effect on the Conn: the same answer
    /// comes back until a `handle_*` call acknowledges progress.
    pub fn poll_transmit(&self) -> Transmit<'_> {
        match self.state {
            State::Closed => return Transmit::Close,
            State::Linger { shut: false, .. } => return Transmit::Shutdown,
            State::Linger { .. } => return Transmit::Idle,
            State::Open => {}
        }
        match &self.bufs {
            Some(b) if b.out.is_some() && b.seg_pos < b.segs.len() => {
                Transmit::Send(&b.segs[b.seg_pos..])
            }
            _ => Transmit::Idle,
        }
    }

    /// When `handle_timeout` wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.map(Stamp::instant)
    }

    // ---- internals ----

    /// Process buffered input (after a response finished, or more bytes came).
    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        if !self.has_input() {
            return;
        }
        let buf = std::mem::take(self.inbuf_mut());
        let used = self.process(ctx, &buf);
        if self.state != State::Open {
            return self.drop_input();
        }
        let inbuf = self.inbuf_mut();
        *inbuf = buf;
        if used >= inbuf.len() {
            inbuf.clear();
            if inbuf.capacity() > 16 * 1024 {
                *inbuf = Vec::new();
            }
        } else if used > 0 {
            inbuf.drain(..used);
            self.rare().head_started = Some(ctx.now.instant());
        }
    }

    /// Consume what the current state allows from `buf`; returns bytes used.
    fn process(&mut self, ctx: &mut Ctx<'_>, buf: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            if self.state != State::Open || self.sending() {
                return pos;
            }
            let discard = self.discard();
            if discard > 0 {
                let k = discard.min((buf.len() - pos) as u64);
                self.set_discard(discard - k);
                pos += k as usize;
                if k < discard {
                    return pos;
                }
                // The body is in; the next head's clock starts with it.
                self.set_head_started(None);
            }
            if self.has_chunked() {
                pos += self.read_chunked(ctx, &buf[pos..]);
                if self.has_chunked() {
                    return pos;
                }
                continue;
            }
            if pos == buf.len() {
                return pos;
            }
            let (mut headers, mut again, mut copy) = (header_slots(), header_slots(), None);
            let (src, parsed) = parse_request_head(
                &buf[pos..],
                &mut headers,
                &mut again,
                &mut copy,
                &ctx.limits.parse,
            );
            match parsed {
                Ok(Parsed::Partial) => return pos,
                Ok(Parsed::Complete(head, n)) => {
                    // A body's clock starts at the end of its head; without
                    // one, the next head's starts with its first byte.
                    let body = head.content_length > 0 || head.chunked;
                    self.set_head_started(body.then_some(ctx.now.instant()));
                    if head.chunked {
                        self.start_chunked(ctx, &head, &src[..n]);
                    } else {
                        self.respond(ctx, &head);
                    }
                    pos += n;
                }
                Err(r) => {
                    self.reject(ctx, r.status, &buf[pos..]);
                    return buf.len();
                }
            }
        }
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, req: &Request<'_>) {
        self.requests = self.requests.saturating_add(1);
        if req.content_length > ctx.limits.max_body_size {
            self.begin_exchange(ctx, request_line(req), None, None);
            self.send_reply(
                ctx,
                ctx.responder.error(Status::PAYLOAD_TOO_LARGE),
                req.method == Method::Head,
                ConnHeader::Close,
            );
            return;
        }
        // Read after the response, on the clock that began at the head's
        // end and starts again when the response is out: a body dripped
        // byte by byte cannot keep the connection (nginx caps discarding a
        // body at lingering_time).
        self.set_discard(req.content_length);
        // keepalive_timeout = 0 allows no idle time: say so (nginx's
        // keepalive_timeout 0) rather than close after a keep-alive reply.
        let keep = req.keep_alive && !self.draining && !ctx.limits.keepalive_timeout.is_zero();
        // Looked up only when there is a log line to put them in.
        let logs = ctx.logs();
        let field = |name| logs.then(|| req.header(name)).flatten();
        self.begin_exchange(
            ctx,
            request_line(req),
            field("referer"),
            field("user-agent"),
        );
        let (reply, head_only) = answer(ctx, req);
        // A 503 (out of descriptors, say) frees this connection's too: the
        // client retries on a new one, after `Retry-After`.
        let keep = keep && reply.status != Status::SERVICE_UNAVAILABLE;
        let conn = match (keep, req.minor) {
            (false, _) => ConnHeader::Close,
            (true, 0) => ConnHeader::KeepAlive,
            (true, _) => ConnHeader::None,
        };
        self.send_reply(ctx, reply, head_only, conn);
    }

    /// Answer a request we could not parse (or that timed out), then close.
    fn reject(&mut self, ctx: &mut Ctx<'_>, status: Status, raw: &[u8]) {
        self.requests = self.requests.saturating_add(1);
        // Log the first line as it came, whatever it was.
        let line_end = raw
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(raw.len())
            .min(1024);
        self.begin_exchange(ctx, RequestLine::Raw(&raw[..line_end]), None, None);
        self.set_discard(0);
        self.take_chunked();
        let reply = ctx.responder.error(status);
        // A refused HEAD gets no content either (RFC 9110 §9.3.2).
        let head_only = raw.starts_with(b"HEAD ");
        self.send_reply(ctx, reply, head_only, ConnHeader::Close);
    }

    /// Encode the head and queue head and body as this response's segments.
    /// `Conn` owns `Server`, `Date`, `Content-Length` and `Connection`; the
    /// reply's own fields go out in its order between them.
    fn send_reply(&mut self, ctx: &mut Ctx<'_>, reply: Reply, head_only: bool, conn: ConnHeader) {
        if let Some(r) = &mut self.rare {
            r.unsent = None;
        }
        let body_len = reply.body.len();
        let b = &mut **self.bufs.get_or_insert_with(|| ctx.pool.take());
        let h = &mut b.head;
        h.reserve(512);
        // Copied, not formatted: this is every response's work.
        reply.status.h1_opening_into(h);
        h.extend_from_slice(ctx.now.date.as_bytes());
        h.extend_from_slice(b"\r\n");
        h.extend_from_slice(&reply.rendered);
        reply.headers.write_into(h);
        if reply.status != Status::NO_CONTENT && reply.status != Status::NOT_MODIFIED {
            h.extend_from_slice(b"Content-Length: ");
            h.extend_from_slice(decimal(body_len, &mut [0; 20]));
            h.extend_from_slice(b"\r\n");
        }
        match conn {
            ConnHeader::Close => h.extend_from_slice(b"Connection: close\r\n"),
            ConnHeader::KeepAlive => h.extend_from_slice(b"Connection: keep-alive\r\n"),
            ConnHeader::None => {}
        }
        h.extend_from_slice(b"\r\n");
        let head = h.split().freeze();
        let head_len = head.len() as u64;
        b.segs.clear();
        b.seg_pos = 0;
        b.segs.push(Segment::Bytes(head));
        if !head_only {
            reply.body.into_segments(&mut b.segs);
        }
        b.out = Some(Out {
            close: conn == ConnHeader::Close,
            status: reply.status.0,
            head_len,
            body_len: if head_only { 0 } else { body_len },
            sent: 0,
        });
    }

    fn finish_response(&mut self, ctx: &mut Ctx<'_>) {
        let Some(out) = self.take_out() else {
            return;
        };
        self.end_exchange(ctx, &out, out.body_len);
        if let Some(b) = self.bufs.as_mut() {
            b.segs.clear();
            b.seg_pos = 0;
        }
        if out.close {
            self.linger(ctx);
            return;
        }
        if self.discard() > 0 {
            // The body's clock starts again: while the response went out,
            // at most `max_buffered` of it was read.
            self.rare().head_started = Some(ctx.now.instant());
        }
        self.advance(ctx);
        if self.state == State::Open && !self.sending() {
            let idle = self.is_idle();
            self.shed(ctx);
            if self.peer_eof {
                // Nothing more will come.
                self.close(ctx);
            } else if self.draining && idle {
                // Stopping, and this response (begun before the drain) did
                // not say `Connection: close`: the client's next request may
                // be on its way, so it gets the grace like any idle one.
                self.grace(ctx);
            }
        }
    }

    /// Idle (nothing buffered, nothing to send): hold no buffer at all,
    /// and no `Rare` part with nothing in it.
    fn shed(&mut self, ctx: &mut Ctx<'_>) {
        if !self.is_idle() {
            return;
        }
        self.give_back(ctx);
        self.drop_input();
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
    }

    /// Give the response buffers back to the worker's pool.
    fn give_back(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(b) = self.bufs.take() {
            ctx.pool.put(b);
        }
    }

    fn linger(&mut self, ctx: &mut Ctx<'_>) {
        self.give_back(ctx);
        self.drop_input();
        self.set_discard(0);
        self.take_chunked();
        if self.peer_eof {
            self.state = State::Closed;
        } else {
            self.state = State::Linger { shut: false };
            self.rare().linger_until = Some(later(ctx.now.instant(), ctx.limits.linger_timeout));
        }
        self.update_deadline(ctx.limits);
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(out) = self.take_out() {
            // Cut short: log the body bytes that did go out.
            let sent = out.sent.saturating_sub(out.head_len).min(out.body_len);
            self.end_exchange(ctx, &out, sent);
        }
        self.state = State::Closed;
        self.drop_input();
        self.take_chunked();
        self.give_back(ctx);
        self.update_deadline(ctx.limits);
    }

    /// The connection's `Rare` part, made if it has none.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Set (or clear, which makes no `Rare`) when the head or body began.
    fn set_head_started(&mut self, at: Option<Instant>) {
        match (at, &mut self.rare) {
            (None, None) => {}
            (None, Some(r)) => r.head_started = None,
            (Some(t), _) => self.rare().head_started = Some(t),
        }
    }

    fn inbuf_len(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.inbuf.len())
    }

    /// Some input is buffered (a split head, pipelined requests).
    fn has_input(&self) -> bool {
        self.inbuf_len() > 0
    }

    fn inbuf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.rare().inbuf
    }

    /// Let the buffered input go, and its allocation.
    fn drop_input(&mut self) {
        if let Some(r) = &mut self.rare {
            r.inbuf = Vec::new();
        }
    }

    fn discard(&self) -> u64 {
        self.rare.as_ref().map_or(0, |r| r.discard)
    }

    /// Set (or clear, which makes no `Rare`) the body bytes to throw away.
    fn set_discard(&mut self, n: u64) {
        match (n, &mut self.rare) {
            (0, None) => {}
            (0, Some(r)) => r.discard = 0,
            (n, _) => self.rare().discard = n,
        }
    }

    fn has_chunked(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.chunked.is_some())
    }

    fn take_chunked(&mut self) -> Option<Box<Chunked>> {
        self.rare.as_mut()?.chunked.take()
    }

    fn head_started(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.head_started)
    }

    fn drain_until(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.drain_until)
    }

    /// A response is being sent.
    fn sending(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| b.out.is_some())
    }

    /// The response being sent, taken as it ends.
    fn take_out(&mut self) -> Option<Out> {
        self.bufs.as_mut()?.out.take()
    }
}

#[test]
fn decimal_writes_any_u64() {
    for n in [0u64, 7, 10, 1024, 4_294_967_296, u64::MAX] {
        assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
    }
}

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnHeader {
    /// HTTP/1.1 persistence is the default: nothing to say.
    None,
    /// The connection closes after this response.
    Close,
    /// An HTTP/1.0 client asked to keep the connection.
    KeepAlive,
}

mod body;
mod buffers;
mod exchange;
mod phase;
use body::Chunked;
pub use buffers::{BufferPool, Buffers};
use exchange::request_line;

#[cfg(test)]
mod tests;
