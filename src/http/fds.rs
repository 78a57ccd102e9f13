//! The descriptors one worker's connections may hold, and the share of
//! them HTTP/2 streams may take. A connection counts for
//! `FDS_PER_CONNECTION` (its socket and the one file it sends); an HTTP/2
//! connection's first stream sending a file fits in that, and every further
//! stream takes a slot of its own from what the worker's connections leave.
//! Those slots are at most half of what is left, so a new connection (or a
//! new client's stream) always finds a descriptor: one client's many
//! streams can never run the worker out of descriptors (EMFILE, 503,
//! accepting paused) while other clients wait. A stream that finds no
//! slot waits for one (its connection's own slot, or the worker's), as
//! nginx's worker_connections bounds what its streams may hold.

use std::cell::Cell;

/// Descriptors a connection may hold at once: its socket and the file it
/// sends (cached files are bytes in memory and hold none).
pub const FDS_PER_CONNECTION: usize = 2;

/// One worker's descriptor budget (only that worker touches it).
#[derive(Debug)]
pub struct FdBudget {
    /// Descriptors this worker's connections and their files may hold.
    total: usize,
    /// Connections open (the engine's table).
    live: Cell<usize>,
    /// Slots held by HTTP/2 streams beyond their connection's own.
    extra: Cell<usize>,
    /// Connections' worth of descriptors beyond max_connections: slots
    /// the accept gate need not count.
    spare: usize,
}

impl FdBudget {
    /// `total` descriptors for at most `max_connections` connections.
    pub fn new(total: usize, max_connections: usize) -> FdBudget {
        FdBudget {
            total,
            live: Cell::new(0),
            extra: Cell::new(0),
            spare: (total / FDS_PER_CONNECTION).saturating_sub(max_connections),
        }
    }

    /// No limit known (RLIMIT_NOFILE unlimited; tests).
    pub fn unlimited() -> FdBudget {
        FdBudget::new(usize::MAX, usize::MAX)
    }

    /// The engine's table holds `n` connections.
    pub fn set_live(&self, n: usize) {
        self.live.set(n);
    }

    /// A slot for one more stream beyond its connection's own, if the
    /// worker's connections leave one: at most half of what they leave.
    pub fn take(&self) -> bool {
        let left = self
            .total
            .saturating_sub(FDS_PER_CONNECTION.saturating_mul(self.live.get()));
        let extra = self.extra.get();
        if extra < left / 2 {
            self.extra.set(extra + 1);
            true
        } else {
            false
        }
    }

    /// `n` slots from `take` are free again.
    pub fn give(&self, n: usize) {
        self.extra.set(self.extra.get().saturating_sub(n));
    }

    /// Slots held by streams beyond their connections' own.
    pub fn extra(&self) -> usize {
        self.extra.get()
    }

    /// What the accept gate counts with `live` connections in the table:
    /// them, and the connections the streams' slots stand for, past what
    /// max_connections leaves spare. So accepting never spends the
    /// descriptors the streams hold, and a max_connections well within
    /// the descriptors stays a count of connections.
    pub fn load(&self, live: usize) -> usize {
        self.live.set(live);
        let held = self.extra.get().div_ceil(FDS_PER_CONNECTION);
        live + held.saturating_sub(self.spare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_take_at_most_half_of_what_connections_leave() {
        let b = FdBudget::new(100, 50);
        b.set_live(10);
        // 100 - 2 x 10 = 80 left: 40 slots.
        assert!((0..40).all(|_| b.take()));
        assert!(!b.take());
        assert_eq!(b.load(10), 30);
        b.give(1);
        assert!(b.take());
        b.set_live(40);
        // 20 left: 10 slots, and 40 are held.
        b.give(30);
        assert!(!b.take());
        b.give(1);
        assert!(b.take());
        assert!(FdBudget::unlimited().take());
    }

    #[test]
    fn slots_count_as_connections_past_what_max_connections_spares() {
        // Descriptors for 50 connections, at most 20 of them: 30 spare.
        let b = FdBudget::new(100, 20);
        b.set_live(10);
        assert!((0..40).all(|_| b.take()));
        // 40 slots stand for 20 connections, all within the spare 30.
        assert_eq!(b.load(10), 10);
        let b = FdBudget::new(100, 45);
        b.set_live(10);
        assert!((0..40).all(|_| b.take()));
        // 5 spare: 15 of the 20 count.
        assert_eq!(b.load(10), 25);
    }
}
