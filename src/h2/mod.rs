//! HTTP/2 (RFC 9113), sans-IO, beside HTTP/1.1's `Conn` and with the same
//! engine-facing API: bytes in (`handle_input`), owned `Segment`s out
//! (`poll_transmit`, acknowledged with `handle_sent`), time as an argument
//! (`poll_timeout`, `handle_timeout`). Each stream's request is answered by
//! the same `Respond` as over HTTP/1.1 (`http::answer`), and each stream
//! leaves one `Exchange` for the access log and `/metrics`.
//!
//! Output: control frames and response heads are encoded into `ctrl`, in
//! the order they must go out; `pump` moves them, then DATA frames, into
//! `out`, which is what the engine sends. A DATA frame is a 9-byte header
//! (`Segment::Bytes`) followed by a piece of the body's own segment (bytes,
//! or a file range the engine sends by its own means: sendfile, or pread
//! under TLS), within the peer's SETTINGS_MAX_FRAME_SIZE and both flow
//! control windows, in RFC 9218's order: the most urgent streams first;
//! of one urgency, responses not marked incremental one after another by
//! stream id (so the first finish early, as a browser wants a script or
//! style sheet whole), incremental ones taking turns, one frame each. A
//! stream whose window is shut is passed over. At most `OUT_HIGH` bytes are
//! queued ahead of the socket, so a slow reader holds that much.
//!
//! Files: `frame` (the codec), `hpack` (HPACK, with `table`), `stream`
//! (a request's checks; a stream's send side), `slots` (the descriptor
//! slots streams' answers hold; the requests that wait for one), `recv`
//! (the frames a client sends), `flood` (the budgets against floods),
//! `http` (`Http`: which of the two protocols a connection speaks).

mod flood;
pub mod frame;
mod hpack;
mod http;
mod recv;
mod send;
mod slots;
mod stream;
mod table;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;

use crate::http::{Ctx, Limits, OutQueue, Transmit, later};
use crate::log::access::TlsFacts;

use frame::{Code, DEFAULT_WINDOW, setting};
use stream::{Exch, Slot, Stream};

pub use http::Http;

/// Bytes queued ahead of the socket (DATA and control frames) before
/// `pump` waits for the engine to send some.
const OUT_HIGH: usize = 64 * 1024;
/// Control frames and heads waiting behind a full `out`: past this, no
/// more frames are acted on (they wait in `inbuf`, the rest in the socket)
/// until the peer reads, input too (`ACT_HIGH`, lower, stops them first),
/// and an answer queued past it is GOAWAY(ENHANCE_YOUR_CALM).
const CTRL_CAP: usize = 64 * 1024;
/// Streams whose last frame is queued but not yet sent (`done`, each
/// with its access-log record): past this, no more frames are acted on
/// until the peer reads, as past `CTRL_CAP`, so a client that asks for
/// many small answers and does not read holds this many records, not one
/// per answer that fits in `OUT_HIGH` and `CTRL_CAP` (nginx keeps a
/// stream, and counts it against its 128, until its output is sent).
const DONE_CAP: usize = 128;
/// Output queued (in `out` and `ctrl`) past which no more frames are
/// acted on until the peer reads (`backlog`): each answer is made once
/// there is room for it, not ahead of a socket that takes nothing (under
/// TLS, whose own queue of ciphertext is the one ahead of the socket).
const ACT_HIGH: usize = 16 * 1024;
/// DATA pieces of at most this many bytes are copied behind their frame
/// header (see `pump`); larger ones, and file ranges, are sent from
/// where they are.
const COALESCE: usize = 4096;
/// Input held: a whole frame (header and largest payload). While answers
/// wait for the peer to read (`backlog`), what a read brought beyond the
/// frames acted on waits here: at most this much a connection.
const IN_CAP: usize = frame::HEADER_LEN + frame::MAX_FRAME;
/// The receive window we keep open for each stream and the connection:
/// request bodies are read and thrown away, so the default is plenty.
const RECV_WINDOW: i64 = DEFAULT_WINDOW;
/// The opaque data of the PING that follows the first GOAWAY of a drain.
const DRAIN_PING: [u8; 8] = *b"tandem-d";
/// The largest stream id: the first GOAWAY of a drain names it.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// GOAWAY is queued: send what is queued, shut the write side, then
    /// discard input until EOF or `until`.
    Ending {
        shut: bool,
        until: Instant,
    },
    Closed,
}

/// A graceful stop in progress (RFC 9113 §6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    No,
    /// GOAWAY(2^31-1) and a PING are out: streams the client opened before
    /// it saw them are still taken, until the PING's ACK (or `until`).
    Pinged {
        until: Instant,
    },
    /// The final GOAWAY (the last stream id) is out: no stream above it.
    Final {
        last: u32,
    },
}

/// A header block being received (HEADERS, then CONTINUATION frames).
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    what: BlockFor,
    bytes: Vec<u8>,
    frames: u32,
    started: Instant,
}

/// What a header block is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockFor {
    /// A new stream's request (`bad`: its HEADERS already made it a
    /// stream error, once decoded).
    Request { bad: Option<Code> },
    /// Trailers of a request body: decoded, then dropped.
    Trailers,
    /// A block on a stream the server reset, sent before the client saw
    /// the RST_STREAM: decoded (HPACK state is the connection's), dropped.
    Late,
}

pub struct H2Conn {
    peer: SocketAddr,
    tls: Option<Box<TlsFacts>>,
    state: State,
    /// Bytes of the client's preface seen.
    preface: usize,
    /// The client's first SETTINGS came (the first frame must be one).
    settings_in: bool,
    inbuf: Vec<u8>,
    dec: hpack::Decoder,
    /// Room for the next header block's fields (`end_block`).
    fields: hpack::Fields,
    block: Option<Block>,
    /// Boxed: a `Stream` is ~260 bytes (its access-log record inline),
    /// which the map's nodes would shift on every insert and remove, and
    /// whose emptied root node an idle connection would keep (~2.9 KiB).
    streams: BTreeMap<u32, Box<Stream>>,
    /// The highest stream id the client has used.
    last_id: u32,
    /// Streams the server reset lately: their late frames are dropped.
    resets: stream::Resets,
    /// The peer's SETTINGS_MAX_FRAME_SIZE and SETTINGS_INITIAL_WINDOW_SIZE.
    peer_frame: usize,
    peer_window: i64,
    /// The connection's send and receive windows, and the highest the
    /// send window has been.
    window: i64,
    window_top: i64,
    recv: i64,
    ctrl: BytesMut,
    out: OutQueue,
    /// Bytes ever put in `out`, and ever sent.
    queued: u64,
    sent: u64,
    /// Streams whose last frame is queued: reported once `sent` reaches it.
    done: VecDeque<(u64, Exch)>,
    /// The stream that sent the last DATA frame (incremental streams take
    /// turns after it).
    rr: u32,
    /// A stream asked for a priority other than the default (RFC 9218).
    prioritized: bool,
    /// WINDOW_UPDATEs on closed streams the client may send for free: one
    /// per DATA frame sent (giving back what frames in flight took).
    returns: u32,
    /// A stream holds the connection's own descriptor slot (`Slot::Own`).
    own_slot: bool,
    /// The worker's slots (`Slot::Pool`) freed, to give back (`settle`).
    freed: usize,
    /// Streams whose requests wait for a slot, in the order they came,
    /// and the heap bytes their fields hold (at most `wait_cap`).
    waiting: VecDeque<u32>,
    wait_bytes: usize,
    drain: Drain,
    /// The client sent GOAWAY, or EOF: finish, then close.
    peer_goaway: bool,
    peer_eof: bool,
    budget: flood::Budget,
    started: Instant,
    last_activity: Instant,
    /// When output last made progress (or began after a pause), and when
    /// a DATA frame was last queued (or a body began to wait for one): a
    /// peer that reads but never opens its window is timed by the latter.
    last_sent: Instant,
    last_data: Instant,
    /// While idle: bytes the engine found still in the socket's queue.
    unsent: Option<(usize, Instant)>,
    deadline: Option<Instant>,
}

impl H2Conn {
    /// A connection whose client is about to send the preface; the server
    /// preface (our SETTINGS) is queued at once.
    pub fn new(peer: SocketAddr, now: Instant, limits: &Limits) -> H2Conn {
        let mut c = H2Conn {
            peer,
            tls: None,
            state: State::Open,
            preface: 0,
            settings_in: false,
            inbuf: Vec::new(),
            dec: hpack::Decoder::new(),
            fields: hpack::Fields::default(),
            block: None,
            streams: BTreeMap::new(),
            last_id: 0,
            resets: stream::Resets::default(),
            peer_frame: frame::MAX_FRAME,
            peer_window: DEFAULT_WINDOW,
            window: DEFAULT_WINDOW,
            window_top: DEFAULT_WINDOW,
            recv: RECV_WINDOW,
            ctrl: BytesMut::new(),
            out: OutQueue::default(),
            queued: 0,
            sent: 0,
            done: VecDeque::new(),
            rr: 0,
            prioritized: false,
            returns: 0,
            own_slot: false,
            freed: 0,
            waiting: VecDeque::new(),
            wait_bytes: 0,
            drain: Drain::No,
            peer_goaway: false,
            peer_eof: false,
            budget: flood::Budget::new(now),
            started: now,
            last_activity: now,
            last_sent: now,
            last_data: now,
            unsent: None,
            deadline: None,
        };
        let max_list = u32::try_from(limits.parse.max_header_size).unwrap_or(u32::MAX);
        frame::settings(
            &mut c.ctrl,
            &[
                (
                    setting::MAX_CONCURRENT_STREAMS,
                    limits.h2.max_concurrent_streams,
                ),
                (setting::INITIAL_WINDOW_SIZE, RECV_WINDOW as u32),
                (setting::MAX_HEADER_LIST_SIZE, max_list),
            ],
        );
        c.pump(now);
        c.update_deadline(limits);
        c
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Streams the client opened (client stream ids are odd, from 1).
    pub fn requests(&self) -> u64 {
        u64::from(self.last_id).div_ceil(2)
    }

    /// The connection's TLS session: its exchanges carry these facts.
    pub fn set_tls(&mut self, facts: TlsFacts) {
        self.tls = Some(Box::new(facts));
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// No stream, nothing to send, nothing half-received: between requests.
    pub fn is_idle(&self) -> bool {
        self.state == State::Open
            && self.settings_in
            && self.streams.is_empty()
            && self.block.is_none()
            && self.out.pending() == 0
            && self.ctrl.is_empty()
    }

    pub fn input_room(&self, _limits: &Limits) -> usize {
        match self.state {
            State::Closed => 0,
            State::Ending { .. } => 16 * 1024,
            // Answers wait for the peer: its requests wait in the socket.
            // (Not for queued DATA alone: a download's window updates.)
            State::Open if self.ctrl.len() >= CTRL_CAP || self.done.len() >= DONE_CAP => 0,
            State::Open => IN_CAP.saturating_sub(self.inbuf.len()),
        }
    }

    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        if self.state != State::Open || data.is_empty() {
            return;
        }
        self.last_activity = ctx.now.instant();
        if self.inbuf.is_empty() {
            let used = self.process(ctx, data);
            if self.state == State::Open && used < data.len() {
                self.inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            // Exact: doubling would hold twice what waits.
            self.inbuf.reserve_exact(data.len());
            self.inbuf.extend_from_slice(data);
        }
        self.take_input(ctx);
        self.settle(ctx);
    }

    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        self.peer_eof = true;
        match self.state {
            State::Ending { .. } => self.close(ctx),
            State::Open if !self.settings_in => self.close(ctx),
            // Frames held back are acted on first (`take_input`).
            State::Open => {
                self.take_input(ctx);
                self.settle(ctx);
            }
            State::Closed => {}
        }
    }

    pub fn handle_error(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx);
    }

    /// `n` more bytes of `Transmit::Send` reached the socket.
    pub fn handle_sent(&mut self, ctx: &mut Ctx<'_>, n: usize) {
        let now = ctx.now.instant();
        if n > 0 {
            self.last_sent = now;
            if let State::Ending { shut, until } = self.state {
                let until = until.max(later(now, ctx.limits.linger_timeout));
                self.state = State::Ending { shut, until };
            }
        }
        self.sent += self.out.advance(n) as u64;
        if !self.inbuf.is_empty() || self.peer_eof {
            self.take_input(ctx);
        }
        self.settle(ctx);
    }

    /// Graceful stop (reload, SIGTERM): GOAWAY, open streams finish, then
    /// close. Streams the client opens before it sees the GOAWAY are still
    /// answered: first GOAWAY(2^31-1) and a PING, then, at the PING's ACK
    /// (or after `drain_grace`), GOAWAY with the last stream id.
    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        if self.state != State::Open || self.drain != Drain::No {
            return;
        }
        if ctx.drain_grace.is_zero() {
            self.final_goaway();
        } else {
            frame::goaway(&mut self.ctrl, MAX_STREAM_ID, Code::NoError);
            frame::ping(&mut self.ctrl, false, DRAIN_PING);
            self.drain = Drain::Pinged {
                until: later(ctx.now.instant(), ctx.drain_grace),
            };
        }
        self.settle(ctx);
    }

    /// The idle deadline came but `unsent` bytes are still in the socket's
    /// queue (see `Conn::handle_unsent`): wait while it keeps shrinking.
    pub fn handle_unsent(&mut self, ctx: &mut Ctx<'_>, unsent: usize) {
        let now = ctx.now.instant();
        if !self.is_idle() || unsent == 0 {
            return self.handle_timeout(ctx);
        }
        let since = match self.unsent {
            Some((before, since)) if unsent >= before => since,
            _ => now,
        };
        if now.saturating_duration_since(since) >= ctx.limits.send_timeout {
            return self.handle_timeout(ctx);
        }
        self.unsent = Some((unsent, since));
        self.last_activity = now;
        self.update_deadline(ctx.limits);
    }

    pub fn handle_shutdown(&mut self) {
        if let State::Ending { until, .. } = self.state {
            // After the peer's EOF there is nothing to linger for: the
            // deadline is due at once (its `handle_timeout` closes).
            let until = if self.peer_eof {
                until.min(self.last_activity)
            } else {
                until
            };
            self.state = State::Ending { shut: true, until };
            self.deadline = Some(until);
        }
    }

    /// Time passed: act on the deadline if it came.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now.instant();
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        match self.state {
            State::Closed => {}
            State::Ending { .. } => self.close(ctx),
            State::Open => {
                if let Drain::Pinged { until } = self.drain
                    && until <= now
                {
                    self.final_goaway();
                    return self.settle(ctx);
                }
                if self.sending() {
                    // The peer does not read, or never opens its window.
                    crate::note!(
                        ctx.notes,
                        crate::log::Level::Debug,
                        "{}: HTTP/2: send timeout",
                        self.peer
                    );
                    self.close(ctx);
                } else {
                    // Idle (keep-alive), or a preface, header block or
                    // request body that did not come in time.
                    self.fail(ctx, Code::NoError);
                    self.settle(ctx);
                }
            }
        }
    }

    pub fn poll_transmit(&self) -> Transmit<'_> {
        if self.state == State::Closed {
            return Transmit::Close;
        }
        if !self.out.is_empty() {
            return Transmit::Send(self.out.offered());
        }
        match self.state {
            State::Ending { shut: false, .. } => Transmit::Shutdown,
            _ => Transmit::Idle,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ---- internals ----

    /// Something waits to go out (queued, or DATA behind a window).
    fn sending(&self) -> bool {
        self.out.pending() > 0
            || !self.ctrl.is_empty()
            || self.streams.values().any(|s| !s.segs.is_empty())
    }

    /// After every event: queue what can go, report exchanges whose last
    /// byte left, end the connection when it is done, set the deadline.
    fn settle(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now.instant();
        self.give_back(ctx);
        loop {
            self.start_waiting(ctx);
            self.pump(now);
            if !(self.peer_eof && self.drop_stalled(ctx)) {
                break;
            }
        }
        self.give_back(ctx);
        self.report_sent(ctx);
        if self.is_idle() && self.out.holds_memory() {
            // Between requests: hold no output buffers (an idle
            // connection costs its struct and the HPACK table).
            self.out.release();
            self.ctrl = BytesMut::new();
            self.done = VecDeque::new();
            self.fields = hpack::Fields::default();
        } else if self.out.pending() == 0
            && self.ctrl.is_empty()
            && self.ctrl.capacity() > 4096
            && self.streams.values().any(|s| !s.segs.is_empty())
        {
            // Every body left waits for the peer's window (`pump` queued
            // all it could, and all went): hold no room for DATA
            // meanwhile (a burst of small bodies grew it past OUT_HIGH).
            self.ctrl = BytesMut::new();
        }
        let finished = self.streams.is_empty() && self.block.is_none() && !self.sending();
        if self.state == State::Open && finished {
            if self.peer_eof {
                self.close(ctx);
            } else if self.peer_goaway || matches!(self.drain, Drain::Final { .. }) {
                self.end(ctx);
            }
        }
        self.update_deadline(ctx.limits);
    }

    /// Report the exchanges whose last byte reached the socket.
    fn report_sent(&mut self, ctx: &mut Ctx<'_>) {
        while self.done.front().is_some_and(|(end, _)| *end <= self.sent) {
            if let Some((_, x)) = self.done.pop_front() {
                let (body, sent) = (x.body_queued, x.head_len + x.body_queued);
                self.report(ctx, &x, body, sent);
            }
        }
    }

    /// Answers wait for the peer to read: `ACT_HIGH` queued, `CTRL_CAP`
    /// of control frames and heads, or `DONE_CAP` streams whose last
    /// frame is queued. No more frames are acted on meanwhile (they wait
    /// in `inbuf`, the rest in the socket). Each of these drains only as
    /// the socket takes bytes, never by a frame the peer sends, so holding
    /// the frames back cannot stall the connection; and while one waits,
    /// `pump` queues DATA only up to `ACT_HIGH`, so a body whose window is
    /// open drains below it too rather than keep them back to its end.
    fn backlog(&self) -> bool {
        self.out.pending() + self.ctrl.len() >= ACT_HIGH
            || self.ctrl.len() >= CTRL_CAP
            || self.done.len() >= DONE_CAP
    }

    /// Stream `id` has queued its END_STREAM: its exchange is reported
    /// when that reaches the socket; the stream is gone once the client's
    /// side is closed too.
    fn local_done(&mut self, id: u32) {
        let open = self.streams.len();
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.local_done = true;
        let slot = std::mem::replace(&mut s.slot, Slot::None);
        let x = std::mem::take(&mut s.x);
        let end = self.queued + self.ctrl.len() as u64;
        if self.done.capacity() == 0 {
            // Room for the records of the streams open now, at once.
            self.done.reserve(open.min(16));
        }
        self.done.push_back((end, x));
        if s.remote_closed {
            self.streams.remove(&id);
        }
        self.release(slot);
    }

    /// After the peer's EOF no WINDOW_UPDATE can come: drop the streams
    /// a window holds (their slots go to the ones that wait, or back to
    /// the worker, not after send_timeout). True if any was.
    fn drop_stalled(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let conn_shut = self.window <= 0;
        let ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.segs.is_empty() && (conn_shut || s.window <= 0))
            .map(|(&id, _)| id)
            .collect();
        for &id in &ids {
            self.drop_stream(ctx, id);
        }
        !ids.is_empty()
    }

    /// Stream `id` ends before its response did (reset by either side, or
    /// the connection ends): report what went out of it.
    fn drop_stream(&mut self, ctx: &mut Ctx<'_>, id: u32) {
        if let Some(s) = self.streams.remove(&id) {
            self.release(s.slot);
            if let Some(f) = &s.wait {
                // Reset while it waited: out of the queue now, so resets
                // behind a request that still waits cannot pile up there.
                self.wait_bytes -= f.heap();
                self.waiting.retain(|&w| w != id);
                // Never answered, but a request all the same: logged.
                if let Ok(head) = stream::request_head(f) {
                    let mut x = Exch::default();
                    x.hold(ctx, &head.request());
                    x.status = stream::NEVER_ANSWERED;
                    self.report(ctx, &x, 0, 0);
                }
            } else if !s.local_done {
                let x = &s.x;
                self.report(ctx, x, x.body_queued, x.head_len + x.body_queued);
            }
        }
    }

    fn report(&self, ctx: &mut Ctx<'_>, x: &Exch, body: u64, sent: u64) {
        if x.status < 200 {
            return;
        }
        let mut e = x
            .held
            .exchange(self.peer, x.status, body, sent, ctx.now.instant());
        e.tls = self.tls.as_deref().map(TlsFacts::as_tls);
        ctx.exchange(&e);
    }

    /// The final GOAWAY of a drain: streams above the last one are ignored.
    fn final_goaway(&mut self) {
        frame::goaway(&mut self.ctrl, self.last_id, Code::NoError);
        self.drain = Drain::Final { last: self.last_id };
    }

    /// A connection error (or a timeout): GOAWAY with `code`, every stream
    /// dropped, then the write side shut.
    fn fail(&mut self, ctx: &mut Ctx<'_>, code: Code) {
        if self.state != State::Open {
            return;
        }
        if code != Code::NoError {
            crate::note!(
                ctx.notes,
                crate::log::Level::Debug,
                "{}: HTTP/2: connection error {code:?}",
                self.peer
            );
        }
        frame::goaway(&mut self.ctrl, self.last_id, code);
        self.end(ctx);
    }

    /// Send what is queued (control frames; DATA frames already in `out`),
    /// then shut the write side and linger.
    fn end(&mut self, ctx: &mut Ctx<'_>) {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.drop_stream(ctx, id);
        }
        self.waiting.clear();
        self.give_back(ctx);
        self.block = None;
        self.inbuf = Vec::new();
        self.state = State::Ending {
            shut: false,
            until: later(ctx.now.instant(), ctx.limits.linger_timeout),
        };
        self.pump(ctx.now.instant());
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == State::Closed {
            return;
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.drop_stream(ctx, id);
        }
        self.waiting = VecDeque::new();
        self.give_back(ctx);
        // Streams whose last bytes did not all go out.
        while let Some((_, x)) = self.done.pop_front() {
            let sent = x.head_len + x.body_queued;
            self.report(ctx, &x, x.body_queued, sent);
        }
        self.state = State::Closed;
        self.inbuf = Vec::new();
        self.out.release();
        self.ctrl = BytesMut::new();
        self.block = None;
        self.deadline = None;
    }

    /// The deadline of where the connection is.
    fn update_deadline(&mut self, lim: &Limits) {
        let d = match self.state {
            State::Closed => None,
            State::Ending { until, .. } => Some(until),
            State::Open => {
                let d = if !self.settings_in {
                    later(self.started, lim.header_timeout)
                } else if self.sending() {
                    let window_wait = self.streams.values().any(|s| !s.segs.is_empty());
                    let since = if window_wait {
                        self.last_sent.min(self.last_data)
                    } else {
                        self.last_sent
                    };
                    later(since, lim.send_timeout)
                } else if let Some(b) = &self.block {
                    later(b.started, lim.header_timeout)
                } else if !self.streams.is_empty() {
                    // Request bodies (or trailers) still to come.
                    later(self.last_activity, lim.header_timeout)
                } else {
                    later(self.last_activity, lim.keepalive_timeout)
                };
                match self.drain {
                    Drain::Pinged { until } => Some(d.min(until)),
                    _ => Some(d),
                }
            }
        };
        self.deadline = d;
    }

    /// Hold what the access log needs of stream `id`'s request.
    fn hold(&mut self, ctx: &mut Ctx<'_>, id: u32, req: &crate::http::Request<'_>) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.x.hold(ctx, req);
        }
    }
}

/// Engines end every connection with `handle_error` (or see it closed)
/// before they drop it, which gives its streams' slots back to the
/// worker; a connection dropped holding any would shrink the worker's
/// budget for good. Debug builds check it.
impl Drop for H2Conn {
    fn drop(&mut self) {
        let held = self.freed
            + self
                .streams
                .values()
                .filter(|s| s.slot == Slot::Pool)
                .count();
        if !std::thread::panicking() {
            debug_assert_eq!(
                held, 0,
                "{}: HTTP/2 connection dropped holding descriptor slots",
                self.peer
            );
        }
    }
}

#[cfg(test)]
mod tests;
