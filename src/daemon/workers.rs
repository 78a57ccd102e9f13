//! Worker threads and generations: start, supervise, respawn, join.
//! A generation is started from the daemon's config (`start_generation`)
//! and watched by the daemon's loop (`supervise`).

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::{self, Control, Engine, Listener, WorkerSpec};
use crate::files::{Responder, Settings};
use crate::http::Limits;
use crate::log::AccessLog;
use crate::metrics::{Registry, WorkerCounters};

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
    pub(super) access: Arc<AccessLog>,
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
        // With RUST_BACKTRACE=1 (or full), the stack too: the release
        // binary keeps its symbols, so each frame is named.
        let trace = std::backtrace::Backtrace::capture();
        let trace = match trace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("; backtrace:\n{trace}"),
            _ => String::new(),
        };
        crate::error!(
            "thread {name} panicked{place}: {}{trace}",
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

    pub(super) fn signal(&self, state: engine::Command) {
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

impl super::Daemon {
    /// Start a generation of workers from the current config, sharing
    /// `access` (a reload that keeps the path) or opening it anew.
    pub(super) fn start_generation(
        &self,
        engine: Engine,
        access: Option<Arc<AccessLog>>,
    ) -> io::Result<Generation> {
        let cfg = &self.cfg;
        let files = Responder::new(&cfg.root, Settings::from_config(cfg))?;
        // Test hook, in debug builds only (the test suite's): a request for
        // this target panics its worker. A release build has no such hook.
        #[cfg(debug_assertions)]
        let files = files.with_panic_target(std::env::var("TANDEM_TEST_PANIC_TARGET").ok());
        let files = Arc::new(files);
        // redirect_to_https: the plaintext listeners' own responder, to the
        // first TLS listener's bound port (443 without one).
        let redirect = cfg.redirect_to_https.then(|| {
            let tls = self.active_listeners().into_iter().find(|l| l.tls);
            let port = tls.map_or(443, |l| l.addr.port());
            Arc::new(crate::tls::Redirect::new(files.clone(), port)) as engine::SharedRespond
        });
        let access = match access {
            Some(a) => a,
            None => AccessLog::open(&cfg.access_log)?,
        };
        let limits = Limits::from_config(cfg);
        let mut listeners = self.active_listeners();
        let n = cfg.workers.resolve();
        // Against RLIMIT_NOFILE: the default comes down to what fits.
        let explicit = cfg.max_connections != crate::config::Config::default().max_connections;
        let max_connections = engine::policy::max_connections(cfg.max_connections, explicit, n);
        let fd_budget = engine::policy::fd_budget(n);
        engine::policy::grow_table(max_connections, n);
        let mut workers = Vec::with_capacity(n);
        for id in 0..n {
            if let Err(e) = self.start_worker(
                engine,
                id,
                &mut listeners,
                &mut workers,
                |control, counters| WorkerSpec {
                    id,
                    listeners: Vec::new(),
                    responder: files.clone(),
                    limits: limits.clone(),
                    access: Some(access.clone()),
                    control,
                    max_connections,
                    fd_budget,
                    when_full: engine::WhenFull::Pause,
                    shutdown_timeout: cfg.shutdown_timeout.0,
                    counters,
                    tls: self.tls.clone(),
                    redirect: redirect.clone(),
                },
            ) {
                // Not a generation: the workers already started must not
                // serve the refused config beside the current one.
                abandon(workers, &self.registry);
                return Err(e);
            }
        }
        Ok(Generation {
            engine,
            workers,
            access,
        })
    }

    /// Start worker `id` of a generation into `workers`; `spec` makes its
    /// spec from fresh control flags and counters (its listeners are set
    /// here). Counters of a worker that did not start are retired.
    fn start_worker(
        &self,
        engine: Engine,
        id: usize,
        listeners: &mut Vec<Arc<Listener>>,
        workers: &mut Vec<Worker>,
        spec: impl FnOnce(Arc<Control>, Arc<WorkerCounters>) -> WorkerSpec,
    ) -> io::Result<()> {
        if self.reuseport {
            *listeners = self.reuseport_listeners(listeners)?;
        }
        let counters = self.registry.worker();
        let started = Control::new().and_then(|control| {
            let mut spec = spec(control, counters.clone());
            spec.listeners = listeners.clone();
            fail_start_for_tests(id)?;
            Worker::start(engine, spec, &self.waker)
        });
        match started {
            Ok(w) => {
                workers.push(w);
                Ok(())
            }
            Err(e) => {
                self.registry.retire(&counters);
                Err(e)
            }
        }
    }

    /// One SO_REUSEPORT socket per configured address; `prev` (the previous
    /// worker's) fixes the port when the config says port 0.
    fn reuseport_listeners(&self, prev: &[Arc<Listener>]) -> io::Result<Vec<Arc<Listener>>> {
        let mut out = Vec::new();
        for (i, &addr) in self.cfg.listen.iter().enumerate() {
            let addr = prev.get(i).map_or(addr, |l| l.addr);
            let l = super::listen::bind_reuseport(addr)?;
            if prev.is_empty() {
                crate::info!("listening on {} (SO_REUSEPORT per worker)", l.addr);
            }
            out.push(Arc::new(l));
        }
        Ok(out)
    }

    /// One turn of supervision: join the workers that ended; a worker that
    /// dies while serving (a bug, but a bug must not take the site down) is
    /// replaced, like nginx's master does, unless the daemon is draining
    /// (`replace` false); the listeners are shared, so the others keep
    /// serving meanwhile. A dead metrics worker is replaced too, and the
    /// old generations that have finished are dropped.
    pub(super) fn supervise(&mut self, replace: bool) {
        for (id, end) in self.current.reap(replace, &self.registry) {
            match (&end, replace) {
                (WorkerEnd::Done, false) => {}
                (_, false) => crate::error!("worker {id} {}", end.describe()),
                (_, true) => crate::error!("worker {id} {}; starting a new one", end.describe()),
            }
        }
        if replace {
            self.current.respawn_due(&self.waker, &self.registry);
        }
        self.metrics.replace_if_dead();
        for g in &mut self.old {
            for (id, end) in g.reap(false, &self.registry) {
                if !matches!(end, WorkerEnd::Done) {
                    crate::error!("old worker {id} {}", end.describe());
                }
            }
        }
        self.old.retain(|g| !g.workers.is_empty());
    }
}

/// Stop workers started for a generation that could not be completed:
/// told to abort (they have served nothing that must finish: their
/// listeners are shared with the current generation, which keeps serving),
/// joined, their counters retired.
fn abandon(workers: Vec<Worker>, registry: &Registry) {
    for w in &workers {
        w.spec.control.set(engine::Command::Abort);
    }
    for mut w in workers {
        if let Some(t) = w.thread.take() {
            // How it ended does not matter: the generation is refused.
            let _ = t.join();
        }
        registry.retire(&w.spec.counters);
    }
}

/// Test hook, in debug builds only (the test suite's):
/// `TANDEM_TEST_FAIL_WORKER_START=N` makes the N-th start of a worker
/// (counted from 1 over the process's life) fail, as a thread that cannot
/// be spawned would. A release build has no such hook.
fn fail_start_for_tests(id: usize) -> io::Result<()> {
    #[cfg(debug_assertions)]
    {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = std::env::var("TANDEM_TEST_FAIL_WORKER_START").ok();
        if fail.and_then(|f| f.parse::<usize>().ok()) == Some(n) {
            return Err(io::Error::other(format!(
                "worker {id}: test hook: TANDEM_TEST_FAIL_WORKER_START={n}"
            )));
        }
    }
    let _ = id;
    Ok(())
}
