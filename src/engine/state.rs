//! One worker's own state, the part both engines have in common, and the
//! `Step` its control command asks for each loop turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Clock, Command, Control, DRAIN_GRACE, SharedRespond, WorkerSpec};
use crate::http::{BufferPool, Ctx, FdBudget, Limits, Notes};
use crate::log::AccessLog;
use crate::metrics::WorkerCounters;

/// Whether requests are written to an access log.
fn logs(access: &Option<Arc<AccessLog>>) -> bool {
    access.as_ref().is_some_and(|a| !a.is_off())
}

/// The access-log buffer is written out once it holds this much.
const LOG_FLUSH_AT: usize = 32 * 1024;
/// Its capacity: room for the flush point plus a line or two.
const LOG_BUF_CAP: usize = LOG_FLUSH_AT + 4096;

/// One worker's own state, the part both engines have in common: responder,
/// limits, clock, the access-log and error-log buffers, the timer tick and
/// the drain deadline. Nothing in it is shared between workers.
pub struct WorkerState {
    pub responder: SharedRespond,
    /// The responder's state for this worker (its cache): `Respond::local`.
    pub(super) local: Box<dyn std::any::Any>,
    pub limits: Limits,
    pub clock: Clock,
    access: Option<Arc<AccessLog>>,
    logbuf: Vec<u8>,
    /// Error-log lines from `Conn` and the responder, written out after each call.
    notes: Notes,
    last_flush: Instant,
    /// Coarse timer: connections' deadlines are checked at most once a tick.
    tick: Duration,
    next_tick: Instant,
    /// Handed to `Conn::begin_shutdown` through the context.
    drain_grace: Duration,
    /// Set once the worker starts draining: when it gives up on what is left.
    drain_deadline: Option<Instant>,
    shutdown_timeout: Duration,
    worker_id: usize,
    pub(super) counters: Arc<WorkerCounters>,
    /// Spare response buffers for this worker's connections.
    pool: BufferPool,
    /// `WorkerSpec::tls`: the settings of this worker's TLS handshakes.
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    /// `WorkerSpec::redirect`: what answers on plaintext listeners instead.
    pub(super) redirect: Option<super::SharedRespond>,
    /// The descriptors this worker's connections may hold, and the slots
    /// HTTP/2 streams take of them.
    fds: FdBudget,
}

/// What the daemon's control flags ask of a worker loop this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Run,
    /// Stop accepting and call `Conn::begin_shutdown` on every connection.
    BeginDrain,
    /// Leave the loop (Abort, or the drain is over).
    Exit,
}

impl WorkerState {
    /// Once per loop turn: read the control state. `drained` says the worker
    /// has nothing left (no connections, no accept in flight).
    pub fn step(&mut self, control: &Control, drained: bool) -> Step {
        let state = control.state();
        if state == Command::Abort {
            return Step::Exit;
        }
        let now = self.clock.now().instant();
        match self.drain_deadline {
            None if state >= Command::Retire => {
                self.drain_grace = DRAIN_GRACE.min(self.shutdown_timeout);
                self.drain_deadline = Some(crate::http::later(now, self.shutdown_timeout));
                Step::BeginDrain
            }
            None => Step::Run,
            Some(_) if drained => Step::Exit,
            Some(d) if now >= d => {
                crate::info!(
                    "worker {}: shutdown_timeout passed, closing what is left",
                    self.worker_id
                );
                Step::Exit
            }
            Some(_) => Step::Run,
        }
    }

    pub fn new(spec: &WorkerSpec) -> WorkerState {
        let l = &spec.limits;
        let shortest = [
            l.keepalive_timeout,
            l.header_timeout,
            l.send_timeout,
            l.linger_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let clock = Clock::new();
        let now = clock.now().instant();
        WorkerState {
            responder: spec.responder.clone(),
            local: spec.responder.local(&spec.counters, spec.fd_budget),
            limits: spec.limits.clone(),
            clock,
            access: spec.access.clone(),
            logbuf: Vec::with_capacity(if logs(&spec.access) { LOG_BUF_CAP } else { 0 }),
            notes: Notes::new(crate::log::level()),
            last_flush: now,
            tick,
            next_tick: now + tick,
            drain_grace: Duration::ZERO,
            drain_deadline: None,
            shutdown_timeout: spec.shutdown_timeout,
            worker_id: spec.id,
            counters: spec.counters.clone(),
            pool: BufferPool::default(),
            tls: spec.tls.clone(),
            redirect: spec.redirect.clone(),
            fds: FdBudget::new(spec.fd_budget, spec.max_connections),
        }
    }

    /// The context a `Conn` call needs. The access-log buffer is flushed
    /// here once it holds `LOG_FLUSH_AT` bytes, so it stays bounded however
    /// long the loop is kept busy; error-log lines the last call left are
    /// written out.
    pub fn ctx(&mut self) -> Ctx<'_> {
        if self.logbuf.len() >= LOG_FLUSH_AT {
            self.flush_log();
        }
        self.write_notes();
        Ctx {
            now: self.clock.now(),
            responder: &*self.responder,
            local: &mut *self.local,
            limits: &self.limits,
            log: if logs(&self.access) {
                Some(&mut self.logbuf)
            } else {
                None
            },
            notes: &mut self.notes,
            stats: &self.counters,
            pool: &mut self.pool,
            drain_grace: self.drain_grace,
            fds: &self.fds,
        }
    }

    /// What the accept gate counts with `live` connections in the table
    /// (`FdBudget::load`).
    pub fn load(&self, live: usize) -> usize {
        self.fds.load(live)
    }

    /// Once per loop turn: the connections this worker has open, for the
    /// `tandem_connections_open` gauge (one store to its own counters).
    pub fn publish_open(&self, open: usize) {
        self.fds.set_live(open);
        self.counters.set_open(open);
    }

    fn write_notes(&mut self) {
        if !self.notes.is_empty() {
            for (level, line) in self.notes.take() {
                crate::log::write(level, format_args!("{line}"));
            }
        }
    }

    /// How long the loop may sleep before the next timer tick.
    pub fn wait_timeout(&self) -> Duration {
        self.next_tick
            .saturating_duration_since(self.clock.now().instant())
    }

    /// True once per tick: time to check connection deadlines and flush logs.
    pub fn tick_due(&mut self) -> bool {
        let now = self.clock.now().instant();
        if now < self.next_tick {
            return false;
        }
        self.next_tick = now + self.tick;
        self.write_notes();
        if now.duration_since(self.last_flush) >= Duration::from_millis(500) {
            self.flush_log();
        }
        true
    }

    /// Once per tick: the spare response buffers go if unused for a tick
    /// (`BufferPool::trim`).
    pub fn trim_buffers(&mut self) -> Option<bool> {
        self.pool.trim()
    }

    pub fn flush_log(&mut self) {
        self.write_notes();
        self.last_flush = self.clock.now().instant();
        if !self.logbuf.is_empty() {
            if let Some(a) = &self.access {
                a.write(&self.logbuf);
            }
            self.logbuf.clear();
            if self.logbuf.capacity() > 2 * LOG_BUF_CAP {
                self.logbuf.shrink_to(LOG_BUF_CAP);
            }
        }
    }
}

impl Drop for WorkerState {
    fn drop(&mut self) {
        self.flush_log();
        self.counters.set_open(0);
    }
}
