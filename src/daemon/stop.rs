//! A graceful stop (SIGTERM, SIGINT, SIGQUIT): `/healthz` says 503 at once,
//! new connections are still served for `shutdown_delay`, then the
//! listeners are let go (no new connection, none reset) while the workers
//! finish what is in flight. A second stop signal cuts each phase short.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Daemon;
use super::notify;
use super::workers::HANDOVER_TIMEOUT;
use crate::engine::{self, Listener};

/// Where the daemon is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Running,
    /// A stop signal came: still accepting until then (`shutdown_delay`).
    Delaying(Instant),
    /// Draining since then: no new connection, responses in flight finish.
    Draining(Instant),
}

impl Stop {
    /// How long the main loop may sleep before it looks again.
    pub(super) fn wait(self) -> Duration {
        match self {
            Stop::Running => Duration::from_millis(500),
            Stop::Delaying(t) => t
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500)),
            Stop::Draining(_) => Duration::from_millis(50),
        }
    }

    /// Not draining: workers that die are replaced.
    pub(super) fn serving(self) -> bool {
        !matches!(self, Stop::Draining(_))
    }
}

impl Daemon {
    /// A stop signal: begin the stop, or cut its current phase short.
    pub(super) fn on_stop_signal(&mut self) {
        self.stop = match self.stop {
            Stop::Draining(since) => {
                crate::info!("second stop signal: closing all connections now");
                self.current.signal(engine::Command::Abort);
                for g in &self.old {
                    g.signal(engine::Command::Abort);
                }
                Stop::Draining(since)
            }
            Stop::Delaying(_) => {
                crate::info!("second stop signal: ending shutdown_delay now");
                Stop::Draining(self.begin_drain())
            }
            Stop::Running => self.begin_stop(),
        };
    }

    /// First, so that a balancer polling /healthz takes the instance out
    /// while it drains (or before, with a delay).
    fn begin_stop(&mut self) -> Stop {
        self.registry.set_stopping();
        notify::notify("STOPPING=1");
        let delay = self.cfg.shutdown_delay.0;
        if delay.is_zero() {
            return Stop::Draining(self.begin_drain());
        }
        crate::info!(
            "stopping: /healthz says 503; still accepting for {delay:?} \
             (shutdown_delay), then finishing responses in flight"
        );
        Stop::Delaying(Instant::now() + delay)
    }

    /// `shutdown_delay` is over: drain.
    pub(super) fn end_delay_if_due(&mut self) {
        if let Stop::Delaying(t) = self.stop
            && Instant::now() >= t
        {
            self.stop = Stop::Draining(self.begin_drain());
        }
    }

    /// The stop proper: the sockets we bound take no new connection from
    /// now on (the workers empty their queues as they stop accepting, then
    /// the sockets stop listening, so clients arriving later are refused
    /// rather than left in a queue nobody serves); the workers finish what
    /// is in flight, bounded by shutdown_timeout. Sockets from systemd are
    /// left alone: they are systemd's to keep listening while we are gone.
    /// Returns its start.
    fn begin_drain(&mut self) -> Instant {
        crate::info!("stopping: finishing responses in flight");
        let started = Instant::now();
        let own: Vec<Arc<Listener>> = self.own_listeners().cloned().collect();
        self.holdoff.let_go(&own, || {
            self.current.signal(engine::Command::Drain);
            for g in &self.old {
                g.signal(engine::Command::Drain);
            }
            self.current.wait_accepting(false, HANDOVER_TIMEOUT);
        });
        crate::info!("stopping: workers no longer accept; draining");
        started
    }
}
