//! Times a connection keeps, in 8 bytes instead of an `Instant`'s 16:
//! whole microseconds since a process-wide epoch, as a `u64` (nothing
//! wraps: 584,000 years). The one conversion between the two; every
//! idle connection keeps two (`Conn`'s last activity and deadline), and
//! the io_uring engine a cancel time (32 bits of its milliseconds).
//!
//! An instant becomes the first microsecond not before it (rounded up),
//! so a deadline kept as a stamp never comes early, and at most 1 µs late
//! (the engines' timer is a far coarser tick). Microseconds, not
//! milliseconds, because the order of two stamps is the order of what
//! they stand for: the longest-idle connection, closed to admit a new one
//! at a full table, is the one with the earliest idle deadline, and
//! connections that went idle within one millisecond must not tie. `Option<Stamp>` is 8 bytes too:
//! a stamp is never 0, and `None` (no deadline) is the 0.
//!
//! The epoch is not read from the clock (time is an argument here): it is
//! a week before the first instant converted, so the instants the workers
//! hold (each its own, read once per loop turn) all come after it, even
//! when that first instant is a deadline (at most a day away: the longest
//! timeout a config may set). An instant before it (none in practice)
//! counts as the epoch's first microsecond: later, so still never early.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::later;

/// How long before the first instant converted the epoch lies: more than
/// the longest timeout (`config::limits::MAX_TIMEOUT`, a day), so a
/// deadline converted first still leaves every worker's "now" after it.
const MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// An instant, as whole microseconds since the epoch (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

const _: () = assert!(size_of::<Option<Stamp>>() == 8);

static EPOCH: OnceLock<Instant> = OnceLock::new();

impl Stamp {
    /// The first microsecond not before `t`.
    pub fn of(t: Instant) -> Stamp {
        let epoch = *EPOCH.get_or_init(|| t.checked_sub(MARGIN).unwrap_or(t));
        let d = t.saturating_duration_since(epoch);
        let us = d.as_micros() + u128::from(!d.subsec_nanos().is_multiple_of(1_000));
        let us = u64::try_from(us).unwrap_or(u64::MAX);
        Stamp(NonZeroU64::new(us).unwrap_or(NonZeroU64::MIN))
    }

    /// The instant this stamp stands for: never before the one it was
    /// made of, and less than 1 µs after it (an instant more than 584,000
    /// years away, which no config allows, is kept as that far).
    pub fn instant(self) -> Instant {
        let epoch = EPOCH
            .get()
            .expect("set by the Stamp::of that made this stamp");
        later(*epoch, Duration::from_micros(self.0.get()))
    }

    /// `d` after this stamp: the stamp of `later(self.instant(), d)`
    /// (rounded up to the microsecond as `of` rounds), worked out in
    /// whole microseconds, without the two conversions. After a stamp made
    /// of an instant off the microsecond grid, a `d` with a fraction of a
    /// microsecond may come out 1 µs later than `Stamp::of(t + d)` (never
    /// earlier); the timeouts a config sets are whole milliseconds.
    pub fn after(self, d: Duration) -> Stamp {
        let us = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000)));
        Stamp(self.0.saturating_add(us))
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> u64 {
        self.0.get()
    }

    /// Whole milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0.get() / 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_never_before_its_instant_and_less_than_a_microsecond_after() {
        let base = Instant::now();
        let mut last = Stamp::of(base);
        for k in 0..5000u64 {
            // Steps that fall on, between and across microsecond edges.
            let t = base + Duration::from_nanos(k * 137_129 + k % 3 * 1_000);
            let s = Stamp::of(t);
            let back = s.instant();
            assert!(back >= t, "early by {:?}", t - back);
            assert!(
                back - t < Duration::from_micros(1),
                "late by {:?}",
                back - t
            );
            // The round trip is exact once on the grid, and keeps order:
            // instants 2 µs apart or more never tie (the longest-idle
            // connection is told by its stamp).
            assert_eq!(Stamp::of(back), s);
            assert!(s >= last);
            assert!(Stamp::of(t + Duration::from_micros(2)) > s);
            last = s;
            // A deadline a whole number of microseconds after a stamp is
            // exact: a kept last-activity time plus a timeout.
            let d = Stamp::of(later(back, Duration::from_secs(15)));
            assert_eq!(d.instant(), back + Duration::from_secs(15));
            assert_eq!(d.micros(), s.micros() + 15_000_000);
            assert_eq!(d.millis(), d.micros() / 1_000);
            // `after` is that conversion worked out in microseconds, for
            // whole and fractional microseconds alike.
            for gap in [
                Duration::from_secs(15),
                Duration::from_nanos(k * 7_919 + 1),
                Duration::from_millis(k),
                Duration::ZERO,
            ] {
                assert_eq!(s.after(gap), Stamp::of(later(back, gap)), "{gap:?}");
            }
        }
    }

    #[test]
    fn no_deadline_is_the_zero_and_the_ends_saturate_the_safe_way() {
        let now = Instant::now();
        let s = Stamp::of(now);
        assert_eq!(size_of::<Option<Stamp>>(), 8);
        assert_ne!(Some(s), None);
        assert!(s.micros() > 0);
        // Long before the epoch: counts as the epoch, later than it was.
        if let Some(old) = now.checked_sub(3 * MARGIN) {
            let s = Stamp::of(old);
            assert!(s.micros() >= 1 && s.instant() >= old);
        }
        // A deadline too far away for microseconds in a u64: the last
        // stamp, 584,000 years away, and no panic either way.
        let s = Stamp::of(later(now, Duration::MAX));
        assert_eq!(s.micros(), u64::MAX);
        assert!(s.instant() >= now + Duration::from_secs(500_000 * 365 * 86_400));
        assert_eq!(Stamp::of(s.instant()), s);
    }
}
