//! The send side of an HTTP/2 connection: replies encoded as HEADERS,
//! bodies framed as DATA within the windows, and the queue of owned
//! segments the engine writes.

use std::time::Instant;

use crate::http::{Ctx, Reply, Segment, Status};

use super::{COALESCE, H2Conn, OUT_HIGH, State, frame, hpack};

impl H2Conn {
    /// Move `ctrl`, then DATA frames, into `out`, up to `OUT_HIGH`. Small
    /// byte pieces (`COALESCE`) are copied into `ctrl` behind their frame
    /// headers, so the heads and small bodies of many streams go out as one
    /// segment (one iovec) rather than three each.
    pub(super) fn pump(&mut self, now: Instant) {
        if self.state != State::Open || self.pending >= OUT_HIGH {
            // Ending: what is queued goes (GOAWAY last). A full `out`:
            // control frames wait, and no DATA passes them.
            if self.state != State::Open {
                self.flush_ctrl(now);
            }
            return;
        }
        while self.pending + self.ctrl.len() < OUT_HIGH && self.window > 0 {
            let next = self
                .streams
                .range(self.rr + 1..)
                .chain(self.streams.range(..=self.rr))
                .find(|(_, s)| s.ready())
                .map(|(&id, _)| id);
            let Some(id) = next else { break };
            let Some(s) = self.streams.get_mut(&id) else {
                break;
            };
            let only = s.segs.len() == 1;
            let Some(seg) = s.segs.front_mut() else { break };
            let n = (seg.len() as i64)
                .min(s.window)
                .min(self.window)
                .min(self.peer_frame as i64) as usize;
            let last = n as u64 == seg.len() && only;
            let flags = if last { frame::flag::END_STREAM } else { 0 };
            frame::head(&mut self.ctrl, n, frame::kind::DATA, flags, id);
            let piece = match &*seg {
                Segment::Bytes(b) if n <= COALESCE => {
                    self.ctrl.extend_from_slice(&b[..n]);
                    None
                }
                Segment::Bytes(b) => Some(Segment::Bytes(b.slice(..n))),
                Segment::File(f) => Some(Segment::File(crate::http::FileRange {
                    file: f.file.clone(),
                    offset: f.offset,
                    len: n as u64,
                })),
            };
            seg.advance(n as u64);
            if seg.is_empty() {
                s.segs.pop_front();
            }
            s.window -= n as i64;
            s.x.body_queued += n as u64;
            self.window -= n as i64;
            self.rr = id;
            self.last_data = now;
            if let Some(piece) = piece {
                self.flush_ctrl(now);
                self.push(now, piece);
            }
            if last {
                self.local_done(id);
            }
        }
        self.flush_ctrl(now);
    }

    /// `ctrl` (control frames, heads, small DATA frames) into `out`.
    pub(super) fn flush_ctrl(&mut self, now: Instant) {
        if !self.ctrl.is_empty() {
            let b = self.ctrl.split().freeze();
            self.push(now, Segment::Bytes(b));
        }
    }

    pub(super) fn push(&mut self, now: Instant, seg: Segment) {
        if self.pending == 0 {
            self.last_sent = now;
        }
        let n = seg.len() as usize;
        self.pending += n;
        self.queued += n as u64;
        self.out.push(seg);
    }

    /// Answer stream `id`'s request: the reply's head as HEADERS (and
    /// CONTINUATION) frames, its body left for `pump` to frame as DATA.
    pub(super) fn send_reply(&mut self, ctx: &mut Ctx<'_>, id: u32, reply: Reply, head_only: bool) {
        // The block is encoded in place, after room for its frame header.
        let start = self.ctrl.len();
        self.ctrl.reserve(frame::HEADER_LEN + 320);
        self.ctrl.extend_from_slice(&[0; frame::HEADER_LEN]);
        let blk = &mut self.ctrl;
        let status = reply.status;
        hpack::status(blk, status.0);
        hpack::field(blk, "server", b"tandem");
        hpack::field(blk, "date", ctx.now.date.as_bytes());
        let mut lower = String::with_capacity(32);
        let mut add = |name: &str, value: &[u8]| {
            lower.clear();
            lower.extend(name.chars().map(|c| c.to_ascii_lowercase()));
            if !matches!(
                &*lower,
                "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "proxy-connection"
            ) {
                hpack::field(blk, &lower, value);
            }
        };
        for line in reply.rendered.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(colon) = line.iter().position(|&b| b == b':')
                && let Ok(name) = std::str::from_utf8(&line[..colon])
            {
                let v = &line[colon + 1..];
                let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
                add(name.trim(), &v[start..]);
            }
        }
        for (n, v) in reply.headers.iter() {
            add(n, v.as_bytes());
        }
        let body_len = reply.body.len();
        if status != Status::NO_CONTENT && status != Status::NOT_MODIFIED {
            let mut d = [0; 20];
            let len = crate::log::access::decimal(body_len, &mut d);
            hpack::field(&mut self.ctrl, "content-length", len);
        }
        let end = head_only || reply.body.is_empty();
        let len = self.ctrl.len() - start - frame::HEADER_LEN;
        if len <= self.peer_frame {
            let flags = frame::flag::END_HEADERS | if end { frame::flag::END_STREAM } else { 0 };
            let h = frame::head_bytes(len, frame::kind::HEADERS, flags, id);
            self.ctrl[start..start + frame::HEADER_LEN].copy_from_slice(&h);
        } else {
            // Larger than a frame: HEADERS and CONTINUATION frames.
            let blk = self.ctrl.split_off(start + frame::HEADER_LEN);
            self.ctrl.truncate(start);
            frame::headers(&mut self.ctrl, id, &blk, end, self.peer_frame);
        }
        let head_len = (self.ctrl.len() - start) as u64;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.x.status = status.0;
        s.x.head_len = head_len;
        s.x.body_len = if head_only { 0 } else { body_len };
        if end {
            self.local_done(id);
        } else {
            let mut segs = Vec::new();
            reply.body.into_segments(&mut segs);
            if !self.streams.values().any(|s| !s.segs.is_empty()) {
                // The first body to wait for a window starts the clock.
                self.last_data = ctx.now.instant;
            }
            if let Some(s) = self.streams.get_mut(&id) {
                s.segs.extend(segs);
            }
        }
    }
}
