//! The frames a client sends (RFC 9113 §6), and what each does. A
//! handler's `Err` is a connection error (GOAWAY with that code); stream
//! errors are answered with RST_STREAM here.

use super::frame::{self, Code, Head, MAX_WINDOW, flag, kind, setting};
use super::stream::{self, Stream};
use super::*;
use crate::http::{Method, Status};

type Res = Result<(), Code>;

/// The heap bytes a connection's waiting requests may hold: as much as
/// the header block being received may (`check_block`).
fn wait_cap(ctx: &Ctx<'_>) -> usize {
    4 * ctx.limits.parse.max_header_size
}

impl H2Conn {
    /// Act on the frames in `buf`; returns the bytes used (a partial frame
    /// is left for more input).
    pub(super) fn process(&mut self, ctx: &mut Ctx<'_>, buf: &[u8]) -> usize {
        let mut pos = 0;
        if self.preface < frame::PREFACE.len() {
            let k = (frame::PREFACE.len() - self.preface).min(buf.len());
            if buf[..k] != frame::PREFACE[self.preface..self.preface + k] {
                self.fail(ctx, Code::Protocol);
                return buf.len();
            }
            self.preface += k;
            pos = k;
        }
        while self.state == State::Open && !self.backlog() && buf.len() - pos >= frame::HEADER_LEN {
            let h = Head::parse(&buf[pos..]);
            if h.len > frame::MAX_FRAME {
                self.fail(ctx, Code::FrameSize);
                return buf.len();
            }
            let end = pos + frame::HEADER_LEN + h.len;
            if end > buf.len() {
                break;
            }
            let payload = &buf[pos + frame::HEADER_LEN..end];
            pos = end;
            if let Err(code) = self.frame(ctx, h, payload) {
                self.fail(ctx, code);
            }
        }
        if self.state != State::Open {
            return buf.len();
        }
        pos
    }

    /// A whole frame waits in `inbuf` to be acted on (`backlog` holds it
    /// back; one too large to be is acted on too: it ends the connection).
    pub(super) fn frame_waits(&self) -> bool {
        self.inbuf.len() >= frame::HEADER_LEN && {
            let h = Head::parse(&self.inbuf);
            h.len > frame::MAX_FRAME || self.inbuf.len() >= frame::HEADER_LEN + h.len
        }
    }

    /// Act on the frames held in `inbuf`: a partial one waits for more
    /// input; whole ones wait while answers wait for the peer to read
    /// (`backlog`: `process` stops there, so answers to a peer that does
    /// not read are not made ahead of it), and are taken as output goes.
    /// After the peer's EOF, once none is held, the input is over.
    pub(super) fn take_input(&mut self, ctx: &mut Ctx<'_>) {
        while self.state == State::Open && !self.inbuf.is_empty() {
            if self.backlog() {
                self.pump(ctx.now.instant());
                self.report_sent(ctx);
                if self.backlog() {
                    break;
                }
            }
            let buf = std::mem::take(&mut self.inbuf);
            let used = self.process(ctx, &buf);
            self.inbuf = buf;
            self.inbuf.drain(..used.min(self.inbuf.len()));
            if used == 0 || !self.backlog() {
                break;
            }
        }
        if self.state != State::Open || self.inbuf.is_empty() {
            self.inbuf = Vec::new();
        }
        if self.peer_eof && self.state == State::Open && !self.holds_frame() {
            self.input_over(ctx);
        }
    }

    /// A whole frame waits in `inbuf`.
    fn holds_frame(&self) -> bool {
        self.inbuf.len() >= frame::HEADER_LEN
            && self.inbuf.len() >= frame::HEADER_LEN + Head::parse(&self.inbuf).len
    }

    /// The peer's EOF, every frame before it acted on.
    fn input_over(&mut self, ctx: &mut Ctx<'_>) {
        if self.block.is_some() {
            // A header block cut short can never be answered.
            self.fail(ctx, Code::Protocol);
        } else {
            // Nothing more comes: streams answered that wait only for the
            // client's END_STREAM are over; responses still going out
            // finish (then `settle` closes).
            self.streams.retain(|_, s| !s.local_done);
        }
    }

    fn frame(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        if !self.settings_in && (h.kind != kind::SETTINGS || h.has(flag::ACK)) {
            return Err(Code::Protocol);
        }
        if let Some(b) = &self.block
            && (h.kind != kind::CONTINUATION || h.stream != b.stream)
        {
            return Err(Code::Protocol);
        }
        match h.kind {
            kind::DATA => self.on_data(ctx, h, p),
            kind::HEADERS => self.on_headers(ctx, h, p),
            kind::PRIORITY => self.on_priority(ctx, h, p),
            kind::RST_STREAM => self.on_rst(ctx, h, p),
            kind::SETTINGS => self.on_settings(ctx, h, p),
            kind::PUSH_PROMISE => Err(Code::Protocol),
            kind::PING => self.on_ping(ctx, h, p),
            kind::GOAWAY => {
                if h.stream != 0 {
                    return Err(Code::Protocol);
                }
                if p.len() < 8 {
                    return Err(Code::FrameSize);
                }
                self.peer_goaway = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.on_window_update(ctx, h, p),
            kind::CONTINUATION => self.on_continuation(ctx, h, p),
            // Unknown types are ignored (RFC 9113 §5.5), within the budget.
            _ => self.calm(ctx),
        }
    }

    /// One more frame that asked for nothing: within the budget?
    fn calm(&mut self, ctx: &mut Ctx<'_>) -> Res {
        if self.budget.control(ctx.now.instant(), &ctx.limits.h2) {
            Ok(())
        } else {
            Err(Code::EnhanceYourCalm)
        }
    }

    /// An answer (ACK, RST_STREAM) queued: past `CTRL_CAP` the peer is not
    /// reading what it asks for.
    fn answered(&self) -> Res {
        if self.ctrl.len() > CTRL_CAP {
            Err(Code::EnhanceYourCalm)
        } else {
            Ok(())
        }
    }

    /// A stream error: RST_STREAM, and the stream is gone.
    /// A stream in the idle state (RFC 9113 §5.1): one above the highest
    /// id the client has used, or any even id (the server's own, and
    /// tandem opens none). A frame other than HEADERS or PRIORITY on one
    /// is a connection error, and no RST_STREAM may name it (§6.4).
    fn idle(&self, id: u32) -> bool {
        id > self.last_id || id.is_multiple_of(2)
    }

    fn rst(&mut self, ctx: &mut Ctx<'_>, id: u32, code: Code) -> Res {
        self.drop_stream(ctx, id);
        self.resets.add(id);
        frame::rst_stream(&mut self.ctrl, id, code);
        self.answered()
    }

    fn on_settings(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        if h.stream != 0 {
            return Err(Code::Protocol);
        }
        if h.has(flag::ACK) {
            return if p.is_empty() {
                self.calm(ctx)
            } else {
                Err(Code::FrameSize)
            };
        }
        if !p.len().is_multiple_of(6) {
            return Err(Code::FrameSize);
        }
        if self.settings_in {
            self.calm(ctx)?;
        }
        // SETTINGS_INITIAL_WINDOW_SIZE: the last value, and the highest.
        let mut initial: Option<(i64, i64)> = None;
        for s in p.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                setting::ENABLE_PUSH if v > 1 => return Err(Code::Protocol),
                setting::INITIAL_WINDOW_SIZE => {
                    let v = i64::from(v);
                    if v > MAX_WINDOW {
                        return Err(Code::FlowControl);
                    }
                    let top = initial.map_or(v, |(_, top)| top.max(v));
                    initial = Some((v, top));
                }
                setting::MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&v) {
                        return Err(Code::Protocol);
                    }
                    self.peer_frame = v as usize;
                }
                // HEADER_TABLE_SIZE: our encoder uses no dynamic table.
                _ => {}
            }
        }
        if let Some((v, top)) = initial {
            self.new_initial_window(v, top)?;
        }
        self.settings_in = true;
        frame::settings_ack(&mut self.ctrl);
        self.answered()
    }

    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE is `v` now, and was up to
    /// `top` within the frame: every stream's window moves by the change
    /// (RFC 9113 §6.9.2), once a frame, not once a value (a frame may
    /// carry 2,730 values, each a pass over the streams); a window past
    /// the maximum at any value in turn is the error it would have been.
    fn new_initial_window(&mut self, v: i64, top: i64) -> Res {
        let rise = top - self.peer_window;
        if self.streams.values().any(|s| s.window + rise > MAX_WINDOW) {
            return Err(Code::FlowControl);
        }
        let delta = v - self.peer_window;
        for s in self.streams.values_mut() {
            s.window += delta;
            s.window_top = s.window_top.max(s.window);
        }
        self.peer_window = v;
        Ok(())
    }

    fn on_ping(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        if h.stream != 0 {
            return Err(Code::Protocol);
        }
        let Ok(data) = <[u8; 8]>::try_from(p) else {
            return Err(Code::FrameSize);
        };
        self.calm(ctx)?;
        if h.has(flag::ACK) {
            if data == DRAIN_PING && matches!(self.drain, Drain::Pinged { .. }) {
                self.final_goaway();
            }
            return Ok(());
        }
        frame::ping(&mut self.ctrl, true, data);
        self.answered()
    }

    fn on_window_update(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        if p.len() != 4 {
            return Err(Code::FrameSize);
        }
        let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
        let id = h.stream;
        if id == 0 {
            if inc == 0 {
                return Err(Code::Protocol);
            }
            // Giving back what DATA took (many clients do, frame by frame)
            // is no flood; raising the window past its highest yet is.
            self.window += inc;
            if self.window > MAX_WINDOW {
                return Err(Code::FlowControl);
            }
            if self.window > self.window_top {
                self.window_top = self.window;
                self.calm(ctx)?;
            }
            return Ok(());
        }
        if self.idle(id) {
            return Err(Code::Protocol);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            // A closed stream: the client may be giving back the window
            // our DATA frames in flight took when it ended (RFC 9113 §5.1,
            // §6.9). Up to one per DATA frame sent is that; beyond, a flood.
            if self.returns > 0 {
                self.returns -= 1;
                return Ok(());
            }
            return self.calm(ctx);
        };
        if inc == 0 {
            return self.rst(ctx, id, Code::Protocol);
        }
        s.window += inc;
        if s.window > MAX_WINDOW {
            return self.rst(ctx, id, Code::FlowControl);
        }
        if s.window > s.window_top {
            s.window_top = s.window;
            return self.calm(ctx);
        }
        Ok(())
    }

    fn on_rst(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        if h.stream == 0 {
            return Err(Code::Protocol);
        }
        if p.len() != 4 {
            return Err(Code::FrameSize);
        }
        if self.idle(h.stream) {
            return Err(Code::Protocol);
        }
        // Every reset counts, of a stream still open or of one just
        // answered whole: Rapid Reset's requests may be done before
        // their RST_STREAM is read.
        self.drop_stream(ctx, h.stream);
        if self.budget.reset(ctx.now.instant(), &ctx.limits.h2) {
            Ok(())
        } else {
            Err(Code::EnhanceYourCalm)
        }
    }

    fn on_priority(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        if h.stream == 0 {
            return Err(Code::Protocol);
        }
        // A stream error, but no RST_STREAM may name an idle stream: on
        // one, the error is the connection's.
        let idle = self.idle(h.stream);
        if p.len() != 5 {
            return if idle {
                Err(Code::FrameSize)
            } else {
                self.rst(ctx, h.stream, Code::FrameSize)
            };
        }
        self.calm(ctx)?;
        let dep = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
        if dep == h.stream {
            return if idle {
                Err(Code::Protocol)
            } else {
                self.rst(ctx, h.stream, Code::Protocol)
            };
        }
        Ok(())
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        let id = h.stream;
        if id == 0 || self.idle(id) {
            return Err(Code::Protocol);
        }
        // Flow control counts the whole payload, padding included.
        let flow = p.len() as i64;
        self.recv -= flow;
        if self.recv < 0 {
            return Err(Code::FlowControl);
        }
        if RECV_WINDOW - self.recv >= RECV_WINDOW / 2 {
            frame::window_update(&mut self.ctrl, 0, (RECV_WINDOW - self.recv) as u32);
            self.recv = RECV_WINDOW;
        }
        let data = frame::unpad(&h, p).ok_or(Code::Protocol)?;
        let max_body = ctx.limits.max_body_size;
        let Some(s) = self.streams.get_mut(&id).filter(|s| !s.remote_closed) else {
            self.calm(ctx)?;
            if self.resets.has(id) {
                // Sent before the client saw our RST_STREAM (§5.1): dropped.
                return Ok(());
            }
            return self.rst(ctx, id, Code::StreamClosed);
        };
        s.recv -= flow;
        if s.recv < 0 {
            return self.rst(ctx, id, Code::FlowControl);
        }
        s.body_in += data.len() as u64;
        let end = h.has(flag::END_STREAM);
        s.remote_closed = end;
        if !s.length_ok() {
            // More than its content-length, or less by its end: malformed.
            return self.rst(ctx, id, Code::Protocol);
        }
        if s.body_in > max_body {
            // Past max_body_size: stop it (without error if answered).
            let code = if s.local_done {
                Code::NoError
            } else {
                Code::Cancel
            };
            return self.rst(ctx, id, code);
        }
        if end {
            if s.local_done {
                self.streams.remove(&id);
            }
            return Ok(());
        }
        if RECV_WINDOW - s.recv >= RECV_WINDOW / 2 {
            let inc = (RECV_WINDOW - s.recv) as u32;
            s.recv = RECV_WINDOW;
            frame::window_update(&mut self.ctrl, id, inc);
        }
        if data.is_empty() {
            return self.calm(ctx);
        }
        Ok(())
    }

    fn on_headers(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        let id = h.stream;
        if id == 0 || id.is_multiple_of(2) {
            return Err(Code::Protocol);
        }
        let mut p = frame::unpad(&h, p).ok_or(Code::Protocol)?;
        let mut bad = None;
        if h.has(flag::PRIORITY) {
            if p.len() < 5 {
                return Err(Code::FrameSize);
            }
            let dep = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
            if dep == id {
                bad = Some(Code::Protocol);
            }
            p = &p[5..];
        }
        let what = if id <= self.last_id {
            match self.streams.get(&id) {
                // Trailers end the request body, and the stream: a HEADERS
                // frame that does not makes the request malformed (§8.1), a
                // stream error once its block is decoded.
                Some(s) if !s.remote_closed => {
                    if h.has(flag::END_STREAM) {
                        BlockFor::Trailers
                    } else {
                        BlockFor::Request {
                            bad: Some(Code::Protocol),
                        }
                    }
                }
                Some(_) => BlockFor::Request {
                    bad: Some(Code::StreamClosed),
                },
                None if self.resets.has(id) => BlockFor::Late,
                // A used stream id again (or a lower one).
                None => return Err(Code::Protocol),
            }
        } else {
            self.last_id = id;
            BlockFor::Request { bad }
        };
        let block = Block {
            stream: id,
            end_stream: h.has(flag::END_STREAM),
            what,
            bytes: Vec::new(),
            frames: 1,
            started: ctx.now.instant(),
        };
        if h.has(flag::END_HEADERS) {
            return self.end_block(ctx, block, p);
        }
        let mut block = block;
        block.bytes.extend_from_slice(p);
        self.block = Some(block);
        self.check_block(ctx)
    }

    fn on_continuation(&mut self, ctx: &mut Ctx<'_>, h: Head, p: &[u8]) -> Res {
        let Some(b) = self.block.as_mut() else {
            return Err(Code::Protocol);
        };
        b.frames += 1;
        b.bytes.extend_from_slice(p);
        if p.is_empty() {
            self.calm(ctx)?;
        }
        self.check_block(ctx)?;
        if h.has(flag::END_HEADERS)
            && let Some(mut b) = self.block.take()
        {
            let bytes = std::mem::take(&mut b.bytes);
            return self.end_block(ctx, b, &bytes);
        }
        Ok(())
    }

    /// A header block in pieces is bounded in bytes and in frames
    /// (a CONTINUATION flood never sets END_HEADERS).
    fn check_block(&self, ctx: &Ctx<'_>) -> Res {
        let cap = 4 * ctx.limits.parse.max_header_size + frame::MAX_FRAME;
        match &self.block {
            Some(b) if b.bytes.len() > cap || b.frames - 1 > ctx.limits.h2.max_continuations => {
                Err(Code::EnhanceYourCalm)
            }
            _ => Ok(()),
        }
    }

    /// A whole header block: decode it (always: HPACK state is shared by
    /// the connection), then act on it.
    fn end_block(&mut self, ctx: &mut Ctx<'_>, b: Block, bytes: &[u8]) -> Res {
        let max = ctx.limits.parse.max_header_size;
        // Decoded into the connection's spare fields, whose room the next
        // block reuses (unless this request keeps them while it waits).
        let mut fields = std::mem::take(&mut self.fields);
        self.dec
            .decode_into(bytes, max, &mut fields)
            .map_err(|_| Code::Compression)?;
        let r = self.on_block(ctx, b, &mut fields);
        self.fields = fields;
        r
    }

    fn on_block(&mut self, ctx: &mut Ctx<'_>, b: Block, fields: &mut hpack::Fields) -> Res {
        let id = b.stream;
        let bad = match b.what {
            BlockFor::Trailers => {
                // No pseudo-fields, and the request's field rules (§8.1,
                // §8.2): else malformed.
                if stream::check_trailers(fields).is_err() {
                    return self.rst(ctx, id, Code::Protocol);
                }
                if let Some(s) = self.streams.get_mut(&id) {
                    s.remote_closed = true;
                    if !s.length_ok() {
                        return self.rst(ctx, id, Code::Protocol);
                    }
                    if s.local_done {
                        self.streams.remove(&id);
                    }
                }
                return Ok(());
            }
            BlockFor::Late => return self.calm(ctx),
            BlockFor::Request { bad } => bad,
        };
        if let Some(code) = bad {
            return self.rst(ctx, id, code);
        }
        if let Drain::Final { last } = self.drain
            && id > last
        {
            // After the final GOAWAY: not processed (the client retries).
            return Ok(());
        }
        if self.streams.len() >= ctx.limits.h2.max_concurrent_streams as usize {
            return self.refuse(ctx, id);
        }
        ctx.stats.h2_stream();
        self.unsent = None;
        let declared = stream::declared_length(fields);
        let mut s = Stream::new(self.peer_window, RECV_WINDOW, b.end_stream, declared);
        s.prio = stream::Priority::of(fields);
        self.prioritized |= s.prio != stream::Priority::DEFAULT;
        if !s.length_ok() {
            // END_STREAM on a request that declared a body: malformed.
            return self.rst(ctx, id, Code::Protocol);
        }
        self.streams.insert(id, Box::new(s));
        // Its answer may hold a file open: a descriptor slot, or it waits
        // for one (`start_waiting`), behind any that wait already.
        let slot = if self.waiting.is_empty() {
            self.take_slot(ctx)
        } else {
            None
        };
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        match slot {
            Some(slot) => s.slot = slot,
            None => {
                let mut fields = std::mem::take(fields);
                fields.shrink();
                let heap = fields.heap();
                if self.wait_bytes + heap > wait_cap(ctx) {
                    // Requests that wait hold their decoded fields, which
                    // HPACK references make up to max_header_size each
                    // from a few bytes: past the cap, refused (not
                    // processed: the client may retry).
                    self.streams.remove(&id);
                    return self.refuse(ctx, id);
                }
                s.wait = Some(Box::new(fields));
                self.wait_bytes += heap;
                self.waiting.push_back(id);
                return Ok(());
            }
        }
        self.answer(ctx, id, fields)
    }

    /// RST_STREAM(REFUSED_STREAM): not processed. Counted as a reset, so
    /// a client that keeps opening what is refused meets the budget.
    fn refuse(&mut self, ctx: &mut Ctx<'_>, id: u32) -> Res {
        frame::rst_stream(&mut self.ctrl, id, Code::RefusedStream);
        self.resets.add(id);
        self.answered()?;
        if self.budget.reset(ctx.now.instant(), &ctx.limits.h2) {
            Ok(())
        } else {
            Err(Code::EnhanceYourCalm)
        }
    }

    /// Answer stream `id`'s request, now that it holds a slot.
    pub(super) fn answer(&mut self, ctx: &mut Ctx<'_>, id: u32, fields: &hpack::Fields) -> Res {
        // A refusal of a HEAD has no content either (RFC 9110 §9.3.2).
        let head_req = || fields.iter().any(|(n, v)| n == b":method" && v == b"HEAD");
        if fields.over {
            // The header list is past max_header_size: 431, as HTTP/1.1.
            let reply = ctx.responder.error(Status::HEADER_FIELDS_TOO_LARGE);
            self.send_reply(ctx, id, reply, head_req());
            return Ok(());
        }
        let head = match stream::request_head(fields) {
            Ok(h) => h,
            Err(m) => {
                crate::note!(
                    ctx.notes,
                    crate::log::Level::Debug,
                    "{}: HTTP/2 stream {id}: malformed request: {}",
                    self.peer,
                    m.0
                );
                if m.bad_request() {
                    let reply = ctx.responder.error(Status::BAD_REQUEST);
                    self.send_reply(ctx, id, reply, head_req());
                    return Ok(());
                }
                return self.rst(ctx, id, Code::Protocol);
            }
        };
        let req = head.request();
        self.hold(ctx, id, &req);
        let refused = |status| (ctx.responder.error(status), req.method == Method::Head);
        let (reply, head_only) = if stream::too_many_fields(&head) {
            refused(Status::HEADER_FIELDS_TOO_LARGE)
        } else if req.target.len() > ctx.limits.parse.max_target_size {
            refused(Status::URI_TOO_LONG)
        } else if req.content_length > ctx.limits.max_body_size {
            refused(Status::PAYLOAD_TOO_LARGE)
        } else {
            crate::http::conn::answer(ctx, &req)
        };
        self.send_reply(ctx, id, reply, head_only);
        Ok(())
    }
}
