//! The worker's clock: read once per loop turn.

use std::time::{Instant, SystemTime};

use crate::http::Now;

/// The time, read once per loop turn; strings re-rendered once a second.
pub struct Clock {
    now: Now,
    wall_sec: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let wall = SystemTime::now();
        Clock {
            now: Now::new(Instant::now(), wall),
            wall_sec: secs(wall),
        }
    }

    pub fn update(&mut self) -> Instant {
        let instant = Instant::now();
        let wall = SystemTime::now();
        let s = secs(wall);
        if s != self.wall_sec {
            self.wall_sec = s;
            self.now = Now::new(instant, wall);
        } else {
            self.now.set_instant(instant);
        }
        instant
    }

    pub fn now(&self) -> &Now {
        &self.now
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
