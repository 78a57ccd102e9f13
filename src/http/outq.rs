//! A queue of owned segments on their way out, as the layers that frame
//! or encrypt (`h2`, `tls`) hold them for an engine: what `poll_transmit`
//! offers, and what `handle_sent` takes off its front.

use super::Segment;

/// Sent segments are dropped from the front once this many have gone
/// (or at once when the queue empties), so a long response neither grows
/// the list without bound nor shifts it at every send.
const COMPACT_AT: usize = 32;

#[derive(Debug, Default)]
pub struct OutQueue {
    segs: Vec<Segment>,
    /// The first segment not wholly sent.
    pos: usize,
    /// Bytes in `segs[pos..]`.
    pending: usize,
}

impl OutQueue {
    pub fn push(&mut self, seg: Segment) {
        self.pending += seg.len() as usize;
        self.segs.push(seg);
    }

    /// What waits to be sent, in order.
    pub fn offered(&self) -> &[Segment] {
        &self.segs[self.pos..]
    }

    /// No segment waits (a zero-length one would still be offered).
    pub fn is_empty(&self) -> bool {
        self.pos == self.segs.len()
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// `n` bytes from the front were sent; returns how many of them this
    /// queue held (at most `pending`).
    pub fn advance(&mut self, n: usize) -> usize {
        let took = n.min(self.pending);
        self.pending -= took;
        let mut left = took;
        while left > 0 && self.pos < self.segs.len() {
            let seg = &mut self.segs[self.pos];
            let k = left.min(seg.len() as usize);
            seg.advance(k as u64);
            left -= k;
            if seg.is_empty() {
                self.pos += 1;
            }
        }
        if self.pos == self.segs.len() {
            self.segs.clear();
            self.pos = 0;
        } else if self.pos >= COMPACT_AT {
            self.segs.drain(..self.pos);
            self.pos = 0;
        }
        took
    }

    /// Whether the list holds memory of its own (an idle connection's
    /// should not).
    pub fn holds_memory(&self) -> bool {
        self.segs.capacity() > 0
    }

    /// Drop everything, the list's memory too.
    pub fn release(&mut self) {
        *self = OutQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bytes(s: &'static str) -> Segment {
        Segment::Bytes(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn sends_take_bytes_off_the_front_across_segments() {
        let mut q = OutQueue::default();
        q.push(bytes("head"));
        q.push(bytes("body"));
        assert_eq!((q.pending(), q.offered().len()), (8, 2));
        assert_eq!(q.advance(6), 6);
        let Segment::Bytes(b) = &q.offered()[0] else {
            panic!("a byte segment");
        };
        assert_eq!(&b[..], b"dy");
        assert_eq!(q.advance(100), 2, "only what it held");
        assert!(q.is_empty() && q.pending() == 0);
        assert!(q.holds_memory(), "the list keeps its capacity");
        q.release();
        assert!(!q.holds_memory());
    }

    #[test]
    fn a_long_queue_is_compacted_as_it_goes() {
        let mut q = OutQueue::default();
        for _ in 0..100 {
            q.push(bytes("x"));
        }
        for sent in 1..=99 {
            q.advance(1);
            assert_eq!(q.pending(), 100 - sent);
            assert!(q.pos < COMPACT_AT, "sent segments pile up");
        }
        assert_eq!(q.offered().len(), 1);
    }
}
