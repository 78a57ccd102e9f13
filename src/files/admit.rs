//! How often each path was asked for lately: the small-file cache's
//! admission rule (`Cache::admits`). A TinyLFU-style frequency sketch, as
//! production caches keep one (Caffeine, Ristretto): a count-min sketch of
//! small saturating counters, four per key, halved every `10 x width`
//! requests so that what counts is recent popularity. Bounded: one byte per
//! counter, `width` fixed when the cache is made (from its budget).
//!
//! Why: a cache that takes every miss in (reading the file into memory) and
//! evicts the least recently used entry for it thrashes when the paths
//! asked for are spread wider than the budget: every miss costs a read and
//! a copy, and evicts an entry about as likely to be asked for next as the
//! newcomer. So a file that would evict others enters only when it was
//! asked for clearly more often than each entry it would evict; else it is
//! served from disk (sendfile), and what is cached stays.

/// Counters of the sketch per key (its depth).
const DEPTH: usize = 4;

/// A count-min sketch of recent requests per key hash.
#[derive(Debug)]
pub struct Sketch {
    /// `width` counters, a power of two.
    counters: Vec<u8>,
    /// Requests counted since the counters were last halved.
    samples: usize,
}

impl Sketch {
    /// A sketch for a cache of `budget` bytes: a counter per 4 KiB of it
    /// (entries are seldom smaller; the fixed cost of an entry is 256
    /// bytes), between 256 and 1 Mi counters.
    pub fn for_budget(budget: usize) -> Sketch {
        let width = (budget / 4096).clamp(256, 1 << 20).next_power_of_two();
        Sketch {
            counters: vec![0; width],
            samples: 0,
        }
    }

    /// The counters of `hash`: four of them, from four slices of the hash.
    fn slots(&self, hash: u64) -> [usize; DEPTH] {
        let mask = self.counters.len() - 1;
        // Each slot from another 16 bits, mixed with the next 16 so that a
        // width past 64 Ki still gets every counter.
        std::array::from_fn(|i| {
            let s = (i * 16) as u32;
            ((hash.rotate_right(s) ^ hash.rotate_right(s + 24).wrapping_mul(0x9e37_79b9)) as usize)
                & mask
        })
    }

    /// One more request for `hash`: the lowest of its counters go up by
    /// one (a conservative update: counters that others' requests raised
    /// higher stay as they are, so a key is overestimated less). Every
    /// `10 x width` requests, all counters are halved.
    pub fn record(&mut self, hash: u64) {
        let slots = self.slots(hash);
        let min = slots.iter().map(|&i| self.counters[i]).min().unwrap_or(0);
        if min < u8::MAX {
            for i in slots {
                if self.counters[i] == min {
                    self.counters[i] += 1;
                }
            }
        }
        self.samples += 1;
        if self.samples >= 10 * self.counters.len() {
            self.samples = 0;
            for c in &mut self.counters {
                *c /= 2;
            }
        }
    }

    /// How often `hash` was asked for lately (never less than the truth,
    /// sometimes more: a collision).
    pub fn estimate(&self, hash: u64) -> u8 {
        let slots = self.slots(hash);
        slots.iter().map(|&i| self.counters[i]).min().unwrap_or(0)
    }
}

/// Whether a path asked for `candidate` times lately may take the place of
/// entries asked for `victims` times in all: when it is asked for more
/// than twice as often. The hits kept are weighed against the hits lost,
/// so a large file, which would evict several entries, must be that much
/// more popular than a small one (the cache holds more small files, and
/// answers them for less). The margin keeps paths of the same popularity
/// (a uniform spread wider than the cache) from displacing each other on
/// the chance of a count; a popular path still wins over a cold entry at
/// once.
pub fn beats(candidate: u8, victims: u32) -> bool {
    u32::from(candidate) > victims.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> u64 {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(i)
    }

    /// Counts follow requests; they saturate instead of wrapping.
    #[test]
    fn counts_requests_and_saturates() {
        let mut s = Sketch::for_budget(1 << 20);
        let (a, b) = (hash(1), hash(2));
        assert_eq!(s.estimate(a), 0);
        for _ in 0..5 {
            s.record(a);
        }
        s.record(b);
        assert_eq!(s.estimate(a), 5);
        assert_eq!(s.estimate(b), 1);
        for _ in 0..300 {
            s.record(a);
        }
        assert_eq!(s.estimate(a), u8::MAX);
    }

    /// What counts is recent: every 10 x width requests, counts halve.
    #[test]
    fn old_counts_fade() {
        let mut s = Sketch::for_budget(0);
        let width = s.counters.len();
        assert_eq!(width, 256);
        let hot = hash(7);
        for _ in 0..40 {
            s.record(hot);
        }
        // Other keys' requests up to the window: the counts are halved.
        for i in 0..(10 * width - 40) as u64 {
            s.record(hash(1000 + i % 50_000));
        }
        assert!(s.estimate(hot) <= 21, "{}", s.estimate(hot));
        assert!(s.estimate(hot) >= 20, "{}", s.estimate(hot));
    }

    /// Paths of like popularity do not displace each other; a clearly more
    /// popular one does.
    #[test]
    fn the_margin() {
        assert!(!beats(1, 1));
        assert!(!beats(10, 6));
        assert!(!beats(2, 1));
        assert!(beats(3, 1));
        assert!(beats(1, 0));
        assert!(beats(255, 126));
        assert!(!beats(255, 128));
        assert!(!beats(255, u32::MAX));
    }
}
