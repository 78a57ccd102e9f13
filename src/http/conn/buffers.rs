//! A connection's response buffers, and the worker's pool of spare ones.

use bytes::BytesMut;

use super::Out;
use crate::http::reply::Segment;
use crate::log::access::HeldRequest;

/// What a connection needs only while it answers: the head being encoded,
/// the response's segments and how far they are sent, and the request side
/// of its exchange record.
/// Taken from the worker's `BufferPool` when a request arrives and given back
/// when the connection falls idle, so an idle keep-alive connection holds
/// no response buffer, and a busy worker allocates none per request.
#[derive(Debug, Default)]
pub struct Buffers {
    /// Where response heads are encoded: each head is split off as shared
    /// bytes, and the allocation is reused once nobody holds them any more.
    pub(super) head: BytesMut,
    /// The current response: head, then body segments.
    pub(super) segs: Vec<Segment>,
    /// The first of `segs` not wholly sent.
    pub(super) seg_pos: usize,
    /// The response being sent (a `Conn` has one only with its buffers).
    pub(super) out: Option<Out>,
    /// The request being answered, for its `Exchange` record.
    pub(super) request: HeldRequest,
}

/// A worker's spare `Buffers`, bounded.
#[derive(Debug, Default)]
pub struct BufferPool {
    // Boxed on purpose: a connection holds its buffers as one pointer (an
    // idle one holds a None), and taking one from here moves only that.
    #[allow(clippy::vec_box)]
    pub(super) free: Vec<Box<Buffers>>,
    /// Something was taken since the last `trim`.
    used: bool,
}

/// Spare buffers a pool keeps; more are freed.
const POOL_KEEP: usize = 1024;
/// A head buffer, or a held request, grown past this (a huge header set)
/// is not kept.
const HEAD_KEEP: usize = 8 * 1024;

impl BufferPool {
    pub(super) fn take(&mut self) -> Box<Buffers> {
        self.used = true;
        self.free.pop().unwrap_or_default()
    }

    /// Once per timer tick: a pool unused for a whole tick lets its spare
    /// buffers go (those a burst of responses in flight at once left, up
    /// to `POOL_KEEP`), so the worker can give their memory back. `None`
    /// if it was used, else whether it let anything go.
    pub fn trim(&mut self) -> Option<bool> {
        if std::mem::take(&mut self.used) {
            return None;
        }
        let idle = !self.free.is_empty();
        self.free = Vec::new();
        Some(idle)
    }

    pub(super) fn put(&mut self, mut b: Box<Buffers>) {
        if self.free.len() >= POOL_KEEP {
            return;
        }
        b.segs.clear();
        b.seg_pos = 0;
        b.out = None;
        if b.head.capacity() > HEAD_KEEP {
            b.head = BytesMut::new();
        }
        if b.request.capacity() > HEAD_KEEP {
            b.request = HeldRequest::new();
        }
        self.free.push(b);
    }
}
