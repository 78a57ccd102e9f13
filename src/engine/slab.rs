//! A slab of connections indexed by a small integer token.
//!
//! Stored in chunks of `CHUNK` slots, each allocated when a slot in it is
//! first needed and freed as soon as its last entry goes, and a new entry
//! takes the lowest free slot: live entries stay packed at the low end, so
//! the table grows in small steps and, once clients leave, its memory goes
//! with them (a single `Vec` kept its peak size, 1.2 MiB after 10,000
//! connections on the epoll engine, for the life of the worker).

/// Slots per chunk: one bit each in `Chunk::used`.
const CHUNK: usize = 64;

struct Chunk<T> {
    /// Bit `i` set: `items[i]` is `Some`.
    used: u64,
    items: Box<[Option<T>]>,
}

/// A slab of connections indexed by a small integer token.
pub struct Slab<T> {
    chunks: Vec<Option<Chunk<T>>>,
    len: usize,
    /// No chunk below this one has a free slot.
    low: usize,
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab {
            chunks: Vec::new(),
            len: 0,
            low: 0,
        }
    }

    pub fn insert(&mut self, v: T) -> usize {
        self.len += 1;
        while self
            .chunks
            .get(self.low)
            .is_some_and(|c| c.as_ref().is_some_and(|c| c.used == !0))
        {
            self.low += 1;
        }
        let ci = self.low;
        if ci == self.chunks.len() {
            self.chunks.push(None);
        }
        let c = self.chunks[ci].get_or_insert_with(|| Chunk {
            used: 0,
            items: (0..CHUNK).map(|_| None).collect(),
        });
        let i = (!c.used).trailing_zeros() as usize;
        c.used |= 1 << i;
        c.items[i] = Some(v);
        ci * CHUNK + i
    }

    pub fn remove(&mut self, i: usize) -> Option<T> {
        let (ci, si) = (i / CHUNK, i % CHUNK);
        let c = self.chunks.get_mut(ci)?.as_mut()?;
        let v = c.items[si].take()?;
        c.used &= !(1 << si);
        self.len -= 1;
        self.low = self.low.min(ci);
        if c.used == 0 {
            self.chunks[ci] = None;
            while self.chunks.last().is_some_and(|c| c.is_none()) {
                self.chunks.pop();
            }
            if self.chunks.capacity() > 2 * self.chunks.len() {
                self.chunks.shrink_to_fit();
            }
        }
        Some(v)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK)?.as_mut()?.items[i % CHUNK].as_mut()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every token that may name an entry (`get_mut` says which do): a walk
    /// that adds no entry needs no snapshot, and allocates nothing (a
    /// snapshot of 10,000 tokens, once a tick, kept 80 KB of heap busy).
    pub fn tokens(&self) -> std::ops::Range<usize> {
        0..self.chunks.len() * CHUNK
    }

    /// Tokens of all live entries (a snapshot, so entries may be removed while walking it).
    pub fn keys(&self) -> Vec<usize> {
        let mut keys = Vec::with_capacity(self.len);
        for (ci, c) in self.chunks.iter().enumerate() {
            let Some(c) = c else { continue };
            let mut used = c.used;
            while used != 0 {
                let i = used.trailing_zeros() as usize;
                used &= used - 1;
                keys.push(ci * CHUNK + i);
            }
        }
        keys
    }
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_lowest_free_slot_and_frees_empty_chunks() {
        let mut s = Slab::new();
        let toks: Vec<usize> = (0..3 * CHUNK + 5).map(|i| s.insert(i)).collect();
        assert_eq!(toks, (0..3 * CHUNK + 5).collect::<Vec<_>>());
        assert_eq!(s.chunks.len(), 4);
        // A whole middle chunk leaves: it is freed, and its slots are the
        // first taken again.
        for t in CHUNK..2 * CHUNK {
            assert_eq!(s.remove(t), Some(t));
        }
        assert!(s.chunks[1].is_none());
        assert_eq!(s.remove(CHUNK), None, "removed twice");
        assert_eq!(s.insert(1000), CHUNK);
        assert_eq!(s.get_mut(CHUNK), Some(&mut 1000));
        assert_eq!(s.get_mut(CHUNK + 1), None);
        assert_eq!(s.remove(7), Some(7));
        assert_eq!(s.insert(7000), 7, "lowest first");
        assert_eq!(s.len(), 2 * CHUNK + 6);
        let keys = s.keys();
        assert_eq!(keys.len(), s.len());
        let live: Vec<usize> = s.tokens().filter(|&t| s.get_mut(t).is_some()).collect();
        assert_eq!(live, keys);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // Everybody leaves: nothing is kept.
        for t in keys {
            assert!(s.remove(t).is_some());
        }
        assert!(s.is_empty());
        assert!(s.chunks.is_empty() && s.chunks.capacity() <= 1);
        assert_eq!(s.get_mut(0), None);
        assert_eq!(s.insert(1), 0);
    }
}
