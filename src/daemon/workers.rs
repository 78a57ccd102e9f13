//! Worker threads and generations: start, supervise, respawn, join.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::{self, Control, Engine, WorkerSpec};
use crate::metrics::Registry;

/// How long a reload waits for workers to arm or disarm their listeners.
pub(super) const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker that died sooner than this after its start, twice in a row, is
/// replaced only after `RESPAWN_BACKOFF`, so a worker that cannot start
/// does not spin.
const RESPAWN_QUICK_DEATH: Duration = Duration::from_secs(1);
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    /// What it runs with (its control flags included); a replacement gets
    /// the same with new flags.
    pub(super) spec: WorkerSpec,
    /// None once joined, until a replacement starts.
    pub(super) thread: Option<JoinHandle<io::Result<()>>>,
    pub(super) started: Instant,
    /// Set by the thread as its last act (on return and on unwinding): a
    /// join does not wait.
    pub(super) ended: Arc<AtomicBool>,
    /// Dead, and to be replaced at this time.
    pub(super) respawn_at: Option<Instant>,
    /// Deaths in a row, each soon after its start.
    pub(super) quick_deaths: u32,
}

/// How a worker thread ended.
pub(super) enum WorkerEnd {
    /// It returned `Ok`: it was told to stop.
    Done,
    Failed(io::Error),
    Panicked(String),
}

impl WorkerEnd {
    pub(super) fn describe(&self) -> String {
        match self {
            WorkerEnd::Done => "exited".to_string(),
            WorkerEnd::Failed(e) => format!("failed: {e}"),
            WorkerEnd::Panicked(m) => format!("panicked: {m}"),
        }
    }
}

/// One set of workers started from one config.
pub(super) struct Generation {
    pub(super) engine: Engine,
    pub(super) workers: Vec<Worker>,
    /// Its workers' access log (shared with the next generation when a
    /// reload keeps the path), for SIGUSR1 to reopen while it drains.
    pub(super) access: std::sync::Arc<crate::log::AccessLog>,
}

impl Worker {
    pub(super) fn start(
        engine: Engine,
        spec: WorkerSpec,
        waker: &UnixStream,
    ) -> io::Result<Worker> {
        let mut w = Worker {
            spec,
            thread: None,
            started: Instant::now(),
            ended: Arc::new(AtomicBool::new(false)),
            respawn_at: None,
            quick_deaths: 0,
        };
        w.launch(engine, waker)?;
        Ok(w)
    }

    /// Start the thread. It sets `ended` and writes a byte to `waker` when it
    /// ends, however it ends, so the main loop notices a dead worker at once.
    pub(super) fn launch(&mut self, engine: Engine, waker: &UnixStream) -> io::Result<()> {
        struct WakeOnExit(UnixStream, Arc<AtomicBool>);
        impl Drop for WakeOnExit {
            fn drop(&mut self) {
                self.1.store(true, Ordering::Release);
                // The result is ignored on purpose: the pipe is non-blocking,
                // and the one way this write fails in practice, a full pipe
                // (EAGAIN), means wake-ups are pending anyway; the main loop
                // also looks at `ended` every 500 ms.
                let _ = (&self.0).write(&[1]);
            }
        }
        let ended = Arc::new(AtomicBool::new(false));
        let wake = WakeOnExit(waker.try_clone()?, ended.clone());
        let spec = self.spec.clone();
        self.thread = Some(
            std::thread::Builder::new()
                .name(format!("tandem-w{}", spec.id))
                .spawn(move || {
                    let _wake = wake;
                    engine::run(engine, spec)
                })?,
        );
        self.ended = ended;
        self.started = Instant::now();
        self.respawn_at = None;
        Ok(())
    }

    /// Start a replacement of a dead worker, with new control flags and
    /// new counters (the dead one's were kept when it was reaped).
    pub(super) fn relaunch(
        &mut self,
        engine: Engine,
        waker: &UnixStream,
        registry: &Registry,
    ) -> io::Result<()> {
        self.spec.control = Control::new()?;
        self.spec.counters = registry.worker();
        let r = self.launch(engine, waker);
        if r.is_err() {
            // Not started: nothing to count (the next try gets a new block).
            registry.retire(&self.spec.counters);
        }
        r
    }
}

pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Panics go to the error log (which may be a file: a daemon has no
/// stderr), with the thread and the place.
pub(super) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        crate::error!(
            "thread {name} panicked{place}: {}",
            panic_message(info.payload())
        );
    }));
}

impl Generation {
    /// Wait until every live worker reports `accepting == on` (or `timeout`).
    pub(super) fn wait_accepting(&self, on: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let done = self.workers.iter().all(|w| {
                w.spec.control.is_accepting() == on
                    || w.thread.is_none()
                    || w.ended.load(Ordering::Acquire)
            });
            if done {
                return true;
            }
            if Instant::now() >= deadline {
                crate::warn!(
                    "workers did not {} accepting within {timeout:?}",
                    if on { "start" } else { "stop" }
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(super) fn signal(&self, state: u8) {
        for w in &self.workers {
            w.spec.control.set(state);
        }
    }

    /// Join finished workers: (worker id, how it ended). Unless `replace`,
    /// their slots go; with it, each is marked to be started again. Their
    /// counters' totals are kept by `registry`.
    pub(super) fn reap(&mut self, replace: bool, registry: &Registry) -> Vec<(usize, WorkerEnd)> {
        let mut ended = Vec::new();
        let now = Instant::now();
        for w in &mut self.workers {
            if w.thread.is_none() || !w.ended.load(Ordering::Acquire) {
                continue;
            }
            let end = match w.thread.take().map(|t| t.join()) {
                Some(Ok(Ok(()))) | None => WorkerEnd::Done,
                Some(Ok(Err(e))) => WorkerEnd::Failed(e),
                Some(Err(p)) => WorkerEnd::Panicked(panic_message(&*p)),
            };
            registry.retire(&w.spec.counters);
            if replace {
                if now.duration_since(w.started) < RESPAWN_QUICK_DEATH {
                    w.quick_deaths += 1;
                } else {
                    w.quick_deaths = 0;
                }
                let wait = if w.quick_deaths > 1 {
                    RESPAWN_BACKOFF
                } else {
                    Duration::ZERO
                };
                w.respawn_at = Some(now + wait);
            }
            ended.push((w.spec.id, end));
        }
        // Slots waiting for a replacement stay only while replacing: a
        // stopping or retired generation must empty for the daemon to exit.
        self.workers
            .retain(|w| w.thread.is_some() || replace && w.respawn_at.is_some());
        ended
    }

    /// Start the replacements that are due.
    pub(super) fn respawn_due(&mut self, waker: &UnixStream, registry: &Registry) {
        let now = Instant::now();
        for w in &mut self.workers {
            if w.respawn_at.is_none_or(|at| at > now) {
                continue;
            }
            match w.relaunch(self.engine, waker, registry) {
                Ok(()) => crate::info!("worker {}: replacement started", w.spec.id),
                Err(e) => {
                    crate::error!("worker {}: cannot start a replacement: {e}", w.spec.id);
                    w.respawn_at = Some(now + RESPAWN_BACKOFF);
                }
            }
        }
    }
}
