//! The send side of an HTTP/2 connection: replies encoded as HEADERS,
//! bodies framed as DATA within the windows, and the queue of owned
//! segments the engine writes.

use std::cell::RefCell;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::http::{Ctx, Reply, Segment, Status};

use super::stream::CONNECTION_SPECIFIC;
use super::{ACT_HIGH, COALESCE, H2Conn, OUT_HIGH, State, frame, hpack};

/// Bytes `ctrl` is given at once when a response head does not fit: about
/// ten heads.
const HEADS_CHUNK: usize = 4096;

impl H2Conn {
    /// Move `ctrl`, then DATA frames, into `out`, up to `OUT_HIGH`. Small
    /// byte pieces (`COALESCE`) are copied into `ctrl` behind their frame
    /// headers, so the heads and small bodies of many streams go out as one
    /// segment (one iovec) rather than three each.
    ///
    /// While a frame of the peer's waits (`frame_waits`: held back by
    /// `backlog`), DATA fills `out` only up to `ACT_HIGH`, below which
    /// frames are acted on again: refilled up to `OUT_HIGH` each time the
    /// socket took some, a body whose window is open would keep them
    /// back until all of it was sent (a PING, a reset, the next request).
    pub(super) fn pump(&mut self, now: Instant) {
        if self.state != State::Open || self.out.pending() >= OUT_HIGH {
            // Ending: what is queued goes (GOAWAY last). A full `out`:
            // control frames wait, and no DATA passes them.
            if self.state != State::Open {
                self.flush_ctrl(now);
            }
            return;
        }
        let high = if self.frame_waits() {
            ACT_HIGH
        } else {
            OUT_HIGH
        };
        self.reserve_coalesced(high);
        while self.out.pending() + self.ctrl.len() < high && self.window > 0 {
            let Some(id) = self.next_stream() else { break };
            let Some(s) = self.streams.get_mut(&id) else {
                break;
            };
            let only = s.segs.len() == 1;
            let Some(seg) = s.segs.front_mut() else { break };
            let n = data_len(seg.len(), s.window, self.window, self.peer_frame);
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
            self.returns = self.returns.saturating_add(1);
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

    /// Room in `ctrl` for the small DATA frames `pump` is about to copy
    /// in (up to `high`), taken at once rather than by doubling as they
    /// come, which would copy the frames already in again and again.
    fn reserve_coalesced(&mut self, high: usize) {
        if self.window <= 0 {
            // Nothing goes before the peer opens its window.
            return;
        }
        let room = high.saturating_sub(self.out.pending() + self.ctrl.len());
        let mut want = 0;
        for s in self.streams.values().filter(|s| s.ready()) {
            if let Some(Segment::Bytes(b)) = s.segs.front() {
                let n = data_len(b.len() as u64, s.window, self.window, self.peer_frame);
                if n <= COALESCE {
                    want += frame::HEADER_LEN + n;
                }
                if want >= room {
                    break;
                }
            }
        }
        self.ctrl.reserve(want.min(room));
    }

    /// The stream to send the next DATA frame of, in RFC 9218 §10's order:
    /// of the ready streams, the most urgent; among those, the lowest id
    /// not marked incremental, or else the incremental one after the last
    /// served (they take turns). Without priorities (no stream asked for
    /// any), that is the lowest ready id.
    fn next_stream(&self) -> Option<u32> {
        let mut ready = self.streams.iter().filter(|(_, s)| s.ready());
        if !self.prioritized {
            return ready.next().map(|(&id, _)| id);
        }
        let top = ready.clone().map(|(_, s)| s.prio.urgency).min()?;
        let mut ready = ready.filter(|(_, s)| s.prio.urgency == top);
        let (mut first, mut after) = (None, None);
        for (&id, s) in ready.by_ref() {
            if !s.prio.incremental {
                return Some(id);
            }
            first.get_or_insert(id);
            if after.is_none() && id > self.rr {
                after = Some(id);
            }
        }
        after.or(first)
    }

    /// `ctrl` (control frames, heads, small DATA frames) into `out`.
    pub(super) fn flush_ctrl(&mut self, now: Instant) {
        if !self.ctrl.is_empty() {
            let b = self.ctrl.split().freeze();
            self.push(now, Segment::Bytes(b));
        }
    }

    pub(super) fn push(&mut self, now: Instant, seg: Segment) {
        if self.out.pending() == 0 {
            self.last_sent = now;
        }
        let n = seg.len() as usize;
        self.queued += n as u64;
        self.out.push(seg);
    }

    /// Answer stream `id`'s request: the reply's head as HEADERS (and
    /// CONTINUATION) frames, its body left for `pump` to frame as DATA.
    pub(super) fn send_reply(&mut self, ctx: &mut Ctx<'_>, id: u32, reply: Reply, head_only: bool) {
        // Room for a typical head: in the buffer's room, or in the whole
        // buffer once its earlier bytes are sent (`try_reclaim`); else,
        // when a new buffer is needed, room for several, so that a burst
        // of answers does not grow it by doubling (a copy of the heads
        // before at each step). While output waits for the peer, a new
        // buffer rather than a larger one: `reserve` doubles a buffer it
        // owns alone, which a peer that does not read would then hold
        // whole; otherwise the one buffer grows once to what a burst of
        // answers and small bodies takes, and is reused (a new one each
        // time costs its pages again, by the thousand a second).
        let head_room = frame::HEADER_LEN + 320;
        if !self.ctrl.try_reclaim(head_room) {
            if self.out.pending() == 0 {
                self.ctrl.reserve(head_room.max(HEADS_CHUNK));
            } else {
                self.flush_ctrl(ctx.now.instant());
                self.ctrl = BytesMut::with_capacity(HEADS_CHUNK);
            }
        }
        // The block is encoded in place, after room for its frame header.
        let start = self.ctrl.len();
        self.ctrl.extend_from_slice(&[0; frame::HEADER_LEN]);
        let blk = &mut self.ctrl;
        let status = reply.status;
        hpack::status(blk, status.0);
        hpack::field_at(blk, hpack::name::SERVER, b"tandem");
        hpack::field_at(blk, hpack::name::DATE, ctx.now.date.as_bytes());
        encode_rendered(blk, &reply.rendered);
        for (n, v) in reply.headers.iter() {
            encode_field(blk, n.as_bytes(), v.as_bytes());
        }
        let body_len = reply.body.len();
        if status != Status::NO_CONTENT && status != Status::NOT_MODIFIED {
            let mut d = [0; 20];
            let len = crate::log::access::decimal(body_len, &mut d);
            hpack::field_at(&mut self.ctrl, hpack::name::CONTENT_LENGTH, len);
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
            if !self.streams.values().any(|s| !s.segs.is_empty()) {
                // The first body to wait for a window starts the clock.
                self.last_data = ctx.now.instant();
            }
            if let Some(s) = self.streams.get_mut(&id) {
                reply.body.into_segments(&mut s.segs);
            }
        }
    }
}

/// The length of the next DATA frame of a segment of `seg_len` bytes: as
/// much as the stream's and the connection's windows and the peer's frame
/// size allow (`pump` frames it; `reserve_coalesced` makes room for it).
fn data_len(seg_len: u64, stream_window: i64, conn_window: i64, peer_frame: usize) -> usize {
    (seg_len as i64)
        .min(stream_window)
        .min(conn_window)
        .min(peer_frame as i64) as usize
}

/// One field of a reply as HPACK: its name in lower case, unless it is
/// connection-specific (dropped).
fn encode_field(blk: &mut BytesMut, name: &[u8], value: &[u8]) {
    let mut buf = [0u8; 64];
    let mut long = Vec::new();
    let lower: &[u8] = if name.len() <= buf.len() {
        let b = &mut buf[..name.len()];
        b.copy_from_slice(name);
        b.make_ascii_lowercase();
        b
    } else {
        long.extend(name.iter().map(u8::to_ascii_lowercase));
        &long
    };
    if !CONNECTION_SPECIFIC.contains(&lower) {
        hpack::field(blk, lower, value);
    }
}

/// Rendered HTTP/1.1 header lines (`Name: value\r\n`) as HPACK fields.
fn encode_lines(blk: &mut BytesMut, rendered: &[u8]) {
    for line in rendered.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let v = &line[colon + 1..];
            let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
            encode_field(blk, line[..colon].trim_ascii(), &v[start..]);
        }
    }
}

/// Rendered heads recently encoded, each with its HPACK block: a cached
/// file's head is the same `Bytes` for every request of it, so it is
/// re-encoded only when its entry is rendered anew. Per worker thread;
/// direct-mapped by address.
const MEMO_SLOTS: usize = 16;

struct Memo {
    /// Held, so its bytes cannot be freed and their address reused while
    /// the memo names them: an equal address and length is the same bytes.
    src: Bytes,
    block: Bytes,
}

thread_local! {
    static MEMO: RefCell<[Option<Memo>; MEMO_SLOTS]> = const { RefCell::new([const { None }; MEMO_SLOTS]) };
}

/// `rendered` as HPACK fields, from the memo when it was encoded before.
fn encode_rendered(blk: &mut BytesMut, rendered: &Bytes) {
    if rendered.is_empty() {
        return;
    }
    let slot = (rendered.as_ptr() as usize >> 4) % MEMO_SLOTS;
    MEMO.with_borrow_mut(|memo| {
        if let Some(m) = &memo[slot]
            && m.src.as_ptr() == rendered.as_ptr()
            && m.src.len() == rendered.len()
        {
            blk.extend_from_slice(&m.block);
            return;
        }
        let start = blk.len();
        encode_lines(blk, rendered);
        memo[slot] = Some(Memo {
            src: rendered.clone(),
            block: Bytes::copy_from_slice(&blk[start..]),
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo gives what encoding the lines gives: for a head seen
    /// before, for a different head (even one in the same slot), and for a
    /// shorter slice at the same address.
    #[test]
    fn memoized_heads_encode_as_their_lines() {
        let a =
            Bytes::from_static(b"Content-Type: text/html\r\nETag: \"1\"\r\nConnection: close\r\n");
        let b = Bytes::from(b"Content-Type: text/css\r\nX-Long-Name: v\r\n".to_vec());
        let short = a.slice(..25);
        let mut heads = vec![a.clone(), b.clone(), a.clone(), short.clone(), a, b, short];
        // Heads at many addresses: some share a slot with the ones above.
        heads.extend((0..40).map(|i| Bytes::from(format!("Vary: x{i}\r\n").into_bytes())));
        for h in heads.iter().chain(heads.iter()) {
            let (mut memo, mut plain) = (BytesMut::new(), BytesMut::new());
            encode_rendered(&mut memo, h);
            encode_lines(&mut plain, h);
            assert_eq!(memo, plain, "{h:?}");
        }
        let mut plain = BytesMut::new();
        encode_lines(&mut plain, &heads[0]);
        let mut dec = hpack::Decoder::new();
        let f = dec.decode(&plain, 8192).unwrap();
        let names: Vec<&[u8]> = f.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"content-type"[..], b"etag"]);
    }
}
