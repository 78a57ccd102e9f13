//! The budgets that bound what a client can make an HTTP/2 connection do
//! without asking for anything (RFC 9113 §10.5). Past one, the connection
//! ends with GOAWAY(ENHANCE_YOUR_CALM).
//!
//! - Resets: streams the client cancels (RST_STREAM) or that we refuse
//!   (over `h2_max_concurrent_streams`), per second: Rapid Reset
//!   (CVE-2023-44487) opens and cancels streams in a loop, so each costs a
//!   request's work and no stream slot.
//! - Control frames that ask for nothing useful (SETTINGS, PING, PRIORITY,
//!   a WINDOW_UPDATE raising a window past its highest yet, or on a closed
//!   stream beyond one per DATA frame sent, an empty DATA frame
//!   without END_STREAM, an unknown frame type, an empty CONTINUATION), per
//!   second: each costs a little CPU and, for SETTINGS and PING, an answer.
//!
//! Two more bounds live where they apply (`H2Conn`): a header block's size
//! and its CONTINUATION frames (`block_cap`), and the answers queued for a
//! peer that does not read (`backlog`: `ACT_HIGH` of output, `DONE_CAP`
//! answered streams, `CTRL_CAP` of control frames; past one, no more
//! frames are acted on until it reads).
//!
//! nginx counts similar things (its `flood` checks; a stream budget per
//! connection read), h2o a reset budget; a per-second window is the
//! simplest shape that lets a busy, honest client through.

use std::time::{Duration, Instant};

use crate::http::H2Limits as FloodLimits;

/// Counts within the current one-second window.
#[derive(Debug, Clone)]
pub struct Budget {
    since: Instant,
    resets: u32,
    control: u32,
}

const WINDOW: Duration = Duration::from_secs(1);

impl Budget {
    pub fn new(now: Instant) -> Budget {
        Budget {
            since: now,
            resets: 0,
            control: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        if now.saturating_duration_since(self.since) >= WINDOW {
            self.since = now;
            self.resets = 0;
            self.control = 0;
        }
    }

    /// A stream reset or refused; false once past the budget.
    pub fn reset(&mut self, now: Instant, lim: &FloodLimits) -> bool {
        self.roll(now);
        self.resets += 1;
        self.resets <= lim.max_resets_per_second
    }

    /// A frame that asked for nothing useful; false once past the budget.
    pub fn control(&mut self, now: Instant, lim: &FloodLimits) -> bool {
        self.roll(now);
        self.control += 1;
        self.control <= lim.max_control_frames_per_second
    }
}

#[test]
fn budgets_refill_each_second() {
    let t = Instant::now();
    let lim = FloodLimits {
        max_resets_per_second: 2,
        max_control_frames_per_second: 3,
        ..FloodLimits::default()
    };
    let mut b = Budget::new(t);
    assert!(b.reset(t, &lim) && b.reset(t, &lim) && !b.reset(t, &lim));
    assert!(b.control(t, &lim) && b.control(t, &lim) && b.control(t, &lim));
    assert!(!b.control(t, &lim));
    let t = t + WINDOW;
    assert!(b.reset(t, &lim) && b.control(t, &lim));
}
