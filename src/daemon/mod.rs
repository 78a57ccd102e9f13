//! Daemon life: listeners, worker generations, signals, reload, graceful stop,
//! pidfile, privileges, sd_notify.
//!
//! Signal handlers only set flags and write a byte to a pipe; the main thread
//! waits on that pipe and does the work. Listeners are shared by all workers
//! and outlive worker generations, so a reload never closes a socket that has
//! connections waiting in its accept queue.

pub mod check;
mod error;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod pidfile;
pub mod privs;
pub mod status;

pub use check::{CheckError, Checked, Origin, Origins, Stage, preflight};
pub use error::{SignalError, StartError};
pub use pidfile::PidfileError;

use error::ReloadError;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError, EngineChoice};
use crate::engine::{self, Control, Engine, Listener, WorkerSpec};
use crate::files::{Responder, Settings};
use crate::http::Limits;
use crate::log::AccessLog;
use crate::metrics::Registry;
use crate::syscall;

/// Command-line settings that override or locate the config. They are
/// applied on every load, the reloads' included: a flag wins over the file
/// for the life of the process (`--engine epoll` stays epoll whatever a
/// reloaded file says, and so do `--listen` and `--root`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config_path: Option<PathBuf>,
    pub engine: Option<EngineChoice>,
    pub daemon: bool,
    /// `--listen ADDR`, repeatable: replaces the config's `listen` list.
    pub listen: Vec<SocketAddr>,
    /// `--root DIR`.
    pub root: Option<PathBuf>,
    /// `--pidfile FILE`.
    pub pidfile: Option<PathBuf>,
}

impl Options {
    /// Read the config file (or the defaults) and apply command-line
    /// overrides; `Origins` says where each value came from.
    pub fn load(&self) -> Result<(Config, Origins), ConfigError> {
        let (mut cfg, source) = match &self.config_path {
            Some(p) => {
                let (c, s) = Config::load_with_source(p)?;
                (c, Some(s))
            }
            None => (Config::default(), None),
        };
        let mut flags = Vec::new();
        if let Some(e) = self.engine {
            cfg.engine = e;
            flags.push(("engine", "--engine"));
        }
        if self.daemon {
            cfg.daemon = true;
            flags.push(("daemon", "--daemon"));
        }
        if !self.listen.is_empty() {
            cfg.listen = self.listen.clone();
            flags.push(("listen", "--listen"));
            // The file's check saw its own listen; this one is new.
            cfg.metrics_clash().map_err(|source| ConfigError::Invalid {
                path: "--listen".into(),
                line: None,
                source,
            })?;
        }
        if let Some(r) = &self.root {
            cfg.root = r.clone();
            flags.push(("root", "--root"));
        }
        if let Some(p) = &self.pidfile {
            cfg.pidfile = Some(p.clone());
            flags.push(("pidfile", "--pidfile"));
        }
        Ok((cfg, Origins { source, flags }))
    }
}

/// How long a reload waits for workers to arm or disarm their listeners.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker that died sooner than this after its start, twice in a row, is
/// replaced only after `RESPAWN_BACKOFF`, so a worker that cannot start
/// does not spin.
const RESPAWN_QUICK_DEATH: Duration = Duration::from_secs(1);
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);

struct Worker {
    /// What it runs with (its control flags included); a replacement gets
    /// the same with new flags.
    spec: WorkerSpec,
    /// None once joined, until a replacement starts.
    thread: Option<JoinHandle<io::Result<()>>>,
    started: Instant,
    /// Set by the thread as its last act (on return and on unwinding): a
    /// join does not wait.
    ended: Arc<AtomicBool>,
    /// Dead, and to be replaced at this time.
    respawn_at: Option<Instant>,
    /// Deaths in a row, each soon after its start.
    quick_deaths: u32,
}

/// How a worker thread ended.
enum WorkerEnd {
    /// It returned `Ok`: it was told to stop.
    Done,
    Failed(io::Error),
    Panicked(String),
}

impl WorkerEnd {
    fn describe(&self) -> String {
        match self {
            WorkerEnd::Done => "exited".to_string(),
            WorkerEnd::Failed(e) => format!("failed: {e}"),
            WorkerEnd::Panicked(m) => format!("panicked: {m}"),
        }
    }
}

/// One set of workers started from one config.
struct Generation {
    engine: Engine,
    workers: Vec<Worker>,
}

impl Worker {
    fn start(engine: Engine, spec: WorkerSpec, waker: &UnixStream) -> io::Result<Worker> {
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
    fn launch(&mut self, engine: Engine, waker: &UnixStream) -> io::Result<()> {
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
    fn relaunch(
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

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
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
fn install_panic_hook() {
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
    fn wait_accepting(&self, on: bool, timeout: Duration) -> bool {
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

    fn signal(&self, state: u8) {
        for w in &self.workers {
            w.spec.control.set(state);
        }
    }

    /// Join finished workers: (worker id, how it ended). Unless `replace`,
    /// their slots go; with it, each is marked to be started again. Their
    /// counters' totals are kept by `registry`.
    fn reap(&mut self, replace: bool, registry: &Registry) -> Vec<(usize, WorkerEnd)> {
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
    fn respawn_due(&mut self, waker: &UnixStream, registry: &Registry) {
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

struct Daemon {
    opts: Options,
    cfg: Config,
    /// Where `tandem -s reload` reads the verdict of each reload (with a pidfile).
    status: Option<status::StatusFile>,
    /// Listeners by configured address (kept across reloads).
    listeners: HashMap<SocketAddr, Arc<Listener>>,
    /// Listeners handed over by systemd; when present they replace `listen`.
    inherited: Option<Vec<Arc<Listener>>>,
    /// Measurement mode: one SO_REUSEPORT socket per worker instead of shared
    /// listeners (TANDEM_BENCH_REUSEPORT; not reload-safe, see README).
    reuseport: bool,
    current: Generation,
    old: Vec<Generation>,
    /// Handed to workers: they write to it when they end.
    waker: UnixStream,
    /// Every worker's counters, reloads, health (`/metrics`, `/healthz`).
    registry: Arc<Registry>,
    /// The metrics and health listener, when `metrics_listen` is set.
    metrics: Option<metrics::Server>,
}

struct Signals {
    hup: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    wake: UnixStream,
}

/// The signal flags, and a writer of the same wake-up pipe for the workers.
fn install_signals() -> io::Result<(Signals, UnixStream)> {
    use signal_hook::consts::*;
    let (rd, wr) = UnixStream::pair()?;
    rd.set_nonblocking(true)?;
    wr.set_nonblocking(true)?;
    let s = Signals {
        hup: Arc::new(AtomicBool::new(false)),
        term: Arc::new(AtomicBool::new(false)),
        usr1: Arc::new(AtomicBool::new(false)),
        wake: rd,
    };
    signal_hook::flag::register(SIGHUP, s.hup.clone())?;
    signal_hook::flag::register(SIGTERM, s.term.clone())?;
    signal_hook::flag::register(SIGINT, s.term.clone())?;
    // SIGQUIT is a graceful stop too (as nginx's is), never a core dump.
    signal_hook::flag::register(SIGQUIT, s.term.clone())?;
    signal_hook::flag::register(SIGUSR1, s.usr1.clone())?;
    for sig in [SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1] {
        signal_hook::low_level::pipe::register(sig, wr.try_clone()?)?;
    }
    // We use MSG_NOSIGNAL everywhere; this also covers sendfile/splice.
    // (signal reports failure as SIG_ERR, not -1: no `syscall!`.)
    // SAFETY: setting SIGPIPE to ignored has no memory-safety preconditions.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok((s, wr))
}

impl Signals {
    /// Sleep until a signal arrives or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a live pollfd array of length 1.
        match syscall!(unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) }) {
            Ok(_) => {}
            // A signal arrived while we slept: just what we wait for.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Cannot happen with one live pollfd short of ENOMEM; sleep
            // instead, so that the main loop does not spin.
            Err(e) => {
                crate::warn!("poll on the signal pipe: {e}");
                std::thread::sleep(timeout);
            }
        }
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Run the server until it is stopped. `checked` is what `preflight`
/// (`Stage::Start`) found for `cfg`: the caller runs it first, before it
/// opens the error log, so that a config that cannot run exits 2 like
/// `tandem -t` says.
pub fn run(opts: Options, cfg: Config, checked: Checked) -> Result<(), StartError> {
    // The pidfile lock first: a second instance is told so before it tries to bind.
    let mut pidfile = match &cfg.pidfile {
        Some(p) => Some(pidfile::Pidfile::lock(p)?),
        None => None,
    };
    // The reload verdicts go next to it, in a file opened now (before
    // privileges are dropped, like the pidfile).
    let status = match &cfg.pidfile {
        Some(p) => {
            Some(status::StatusFile::create(&status::path_for(p)).map_err(StartError::Status)?)
        }
        None => None,
    };
    // Then the listeners, so a busy port is reported before anything else happens.
    let inherited = listen::from_systemd()
        .map_err(StartError::Listen)?
        .map(|v| v.into_iter().map(Arc::new).collect::<Vec<_>>());
    let reuseport = std::env::var_os("TANDEM_BENCH_REUSEPORT").is_some_and(|v| v == "1");
    let mut listeners = HashMap::new();
    if inherited.is_none() && !reuseport {
        for &addr in &cfg.listen {
            listeners.insert(addr, Arc::new(listen::bind(addr)?));
        }
    }
    let mut metrics_listeners = Vec::new();
    for &addr in &cfg.metrics_listen {
        let l = listen::bind(addr).map_err(|e| {
            StartError::Listen(io::Error::new(
                e.source.kind(),
                format!("metrics_listen {}: {}", e.addr, e.source),
            ))
        })?;
        metrics_listeners.push(l);
    }
    let (engine, note) = engine::select(cfg.engine)?;
    if cfg.daemon {
        daemonize::Daemonize::new()
            .working_directory(std::env::current_dir().map_err(StartError::WorkingDir)?)
            .umask(0o022)
            .start()
            .map_err(StartError::Daemonize)?;
    }
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }
    // Log files are opened before privileges are dropped (like the listeners).
    let first_access = AccessLog::open(&cfg.access_log).map_err(StartError::AccessLog)?;
    // Log files just created (as root) become the user's, so that a reload
    // and a reopen, which open them again as that user, can.
    check::chown_new_logs(&checked).map_err(StartError::LogOwner)?;
    let mut _pidfile_remover = None;
    if privs::is_root() {
        // `preflight` resolved the user (and group) when started as root:
        // drop to exactly the ids it checked.
        match (&cfg.user, checked.drop_to) {
            (Some(u), Some((uid, gid))) => {
                if let Some(p) = &cfg.pidfile {
                    let st = status::path_for(p);
                    _pidfile_remover = Some(
                        pidfile::spawn_remover(&[p.as_path(), st.as_path()])
                            .map_err(StartError::PidfileKeeper)?,
                    );
                }
                privs::drop_to(uid, gid).map_err(|source| StartError::DropPrivileges {
                    user: u.clone(),
                    source,
                })?;
                crate::info!("running as user {u}");
            }
            _ => crate::warn!("running as root: set `user` to drop privileges after binding"),
        }
    } else if let Some(u) = &cfg.user {
        crate::info!("not started as root: `user = {u:?}` has nothing to drop");
    }
    let (signals, waker) = install_signals().map_err(StartError::Signals)?;
    install_panic_hook();
    let registry = Registry::new(engine.name());
    let metrics_addrs: Vec<SocketAddr> = metrics_listeners.iter().map(|l| l.addr).collect();
    let metrics = if metrics_listeners.is_empty() {
        None
    } else {
        Some(
            metrics::Server::start(metrics_listeners, registry.clone()).map_err(|e| {
                StartError::Listen(io::Error::new(e.kind(), format!("metrics listener: {e}")))
            })?,
        )
    };
    let mut d = Daemon {
        opts,
        cfg,
        status,
        listeners,
        inherited,
        reuseport,
        current: Generation {
            engine,
            workers: Vec::new(),
        },
        old: Vec::new(),
        waker,
        registry,
        metrics,
    };
    if let Some(why) = note {
        crate::info!("io_uring unavailable ({why}); engine auto falls back to epoll");
    }
    d.current = d
        .start_generation(engine, Some(first_access))
        .map_err(StartError::Workers)?;
    d.current.wait_accepting(true, HANDOVER_TIMEOUT);
    for l in d.active_listeners() {
        crate::info!("listening on {}", l.addr);
    }
    d.registry.set_serving();
    for a in metrics_addrs {
        crate::info!("metrics and health on {a} (GET /metrics, /healthz)");
    }
    crate::info!(
        "tandem {} serving {} with engine {}, {} worker(s)",
        env!("CARGO_PKG_VERSION"),
        check::absolute(&d.cfg.root).display(),
        engine.name(),
        d.current.workers.len()
    );
    notify::notify("READY=1");
    d.main_loop(&signals);
    if let Some(m) = d.metrics.take() {
        m.stop();
    }
    drop(d);
    drop(pidfile);
    drop(_pidfile_remover);
    Ok(())
}

impl Daemon {
    fn active_listeners(&self) -> Vec<Arc<Listener>> {
        match &self.inherited {
            Some(v) => v.clone(),
            None => self
                .cfg
                .listen
                .iter()
                .filter_map(|a| self.listeners.get(a).cloned())
                .collect(),
        }
    }

    fn start_generation(
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
        let access = match access {
            Some(a) => a,
            None => AccessLog::open(&cfg.access_log)?,
        };
        let limits = Limits::from_config(cfg);
        let mut listeners = self.active_listeners();
        let n = cfg.workers.resolve();
        let mut workers = Vec::with_capacity(n);
        for id in 0..n {
            if self.reuseport {
                listeners = self.reuseport_listeners(&listeners)?;
            }
            let spec = WorkerSpec {
                id,
                listeners: listeners.clone(),
                files: files.clone(),
                limits: limits.clone(),
                access: access.clone(),
                control: Control::new()?,
                max_connections: cfg.max_connections,
                shutdown_timeout: cfg.shutdown_timeout.0,
                counters: self.registry.worker(),
            };
            workers.push(Worker::start(engine, spec, &self.waker)?);
        }
        Ok(Generation { engine, workers })
    }

    /// One SO_REUSEPORT socket per configured address; `prev` (the previous
    /// worker's) fixes the port when the config says port 0.
    fn reuseport_listeners(&self, prev: &[Arc<Listener>]) -> io::Result<Vec<Arc<Listener>>> {
        let mut out = Vec::new();
        for (i, &addr) in self.cfg.listen.iter().enumerate() {
            let addr = prev.get(i).map_or(addr, |l| l.addr);
            let l = listen::bind_reuseport(addr)?;
            if prev.is_empty() {
                crate::info!("listening on {} (SO_REUSEPORT per worker)", l.addr);
            }
            out.push(Arc::new(l));
        }
        Ok(out)
    }

    fn main_loop(&mut self, sig: &Signals) {
        let mut stopping: Option<Instant> = None;
        loop {
            sig.wait(Duration::from_millis(if stopping.is_some() {
                50
            } else {
                500
            }));
            if sig.term.swap(false, Ordering::AcqRel) {
                if stopping.is_some() {
                    crate::info!("second stop signal: closing all connections now");
                    self.current.signal(engine::ABORT);
                    for g in &self.old {
                        g.signal(engine::ABORT);
                    }
                } else {
                    crate::info!("stopping: finishing responses in flight");
                    // First, so that a balancer polling /healthz takes the
                    // instance out while it drains.
                    self.registry.set_stopping();
                    notify::notify("STOPPING=1");
                    stopping = Some(Instant::now());
                    self.refuse_new_connections();
                    self.current.signal(engine::DRAIN);
                    for g in &self.old {
                        g.signal(engine::DRAIN);
                    }
                    self.current.wait_accepting(false, HANDOVER_TIMEOUT);
                    self.close_own_listeners();
                    crate::info!("stopping: workers no longer accept; draining");
                }
            }
            if sig.hup.swap(false, Ordering::AcqRel) && stopping.is_none() {
                self.reload();
            }
            if sig.usr1.swap(false, Ordering::AcqRel) {
                self.reopen_logs();
            }
            // A worker that dies while serving (a bug, but a bug must not
            // take the site down) is replaced, like nginx's master does; the
            // listeners are shared, so the others keep serving meanwhile.
            let running = stopping.is_none();
            for (id, end) in self.current.reap(running, &self.registry) {
                match (&end, running) {
                    (WorkerEnd::Done, false) => {}
                    (_, false) => crate::error!("worker {id} {}", end.describe()),
                    (_, true) => {
                        crate::error!("worker {id} {}; starting a new one", end.describe())
                    }
                }
            }
            if running {
                self.current.respawn_due(&self.waker, &self.registry);
            }
            for g in &mut self.old {
                for (id, end) in g.reap(false, &self.registry) {
                    if !matches!(end, WorkerEnd::Done) {
                        crate::error!("old worker {id} {}", end.describe());
                    }
                }
            }
            self.old.retain(|g| !g.workers.is_empty());
            if stopping.is_some() && self.current.workers.is_empty() && self.old.is_empty() {
                break;
            }
            if self.current.workers.is_empty() && stopping.is_none() {
                crate::error!("no workers left; exiting");
                break;
            }
        }
        crate::info!("stopped");
        notify::notify("STATUS=stopped");
    }

    fn reload(&mut self) {
        match notify::monotonic_usec() {
            Ok(usec) => notify::notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}")),
            // Cannot happen (CLOCK_MONOTONIC always exists); say so and send
            // what we can rather than a made-up time.
            Err(e) => {
                crate::warn!("clock_gettime(CLOCK_MONOTONIC): {e}");
                notify::notify("RELOADING=1");
            }
        }
        if let Some(s) = self.status.as_mut() {
            s.begin();
        }
        let verdict = match self.try_reload() {
            Ok(summary) => {
                self.registry.reloaded(true);
                crate::info!("reloaded: {summary}");
                status::State::Reloaded(summary)
            }
            Err(e) => {
                self.registry.reloaded(false);
                crate::error!("reload failed, keeping the running config: {e}");
                status::State::Refused {
                    exit: e.exit_code(),
                    message: e.to_string(),
                }
            }
        };
        if let Some(s) = self.status.as_mut() {
            s.finish(verdict);
        }
        notify::notify("READY=1");
    }

    /// Reload; `Ok` with the summary of what runs now.
    fn try_reload(&mut self) -> Result<String, ReloadError> {
        let (new, origins) = self.opts.load()?;
        preflight(&new, &origins, Stage::Reload)?;
        for (key, what) in [
            (new.daemon != self.cfg.daemon, "daemon"),
            (new.pidfile != self.cfg.pidfile, "pidfile"),
            (new.user != self.cfg.user, "user"),
            (new.group != self.cfg.group, "group"),
            (
                new.metrics_listen != self.cfg.metrics_listen,
                "metrics_listen",
            ),
        ] {
            if key {
                crate::warn!("reload: a change of `{what}` takes effect on restart only");
            }
        }
        let (engine, note) = engine::select(new.engine)?;
        if let Some(why) = note {
            crate::info!("io_uring unavailable ({why}); engine auto falls back to epoll");
        }
        // Bind new addresses before touching anything that runs.
        let mut added = Vec::new();
        if self.inherited.is_none() {
            for &addr in &new.listen {
                if !self.listeners.contains_key(&addr) {
                    let l = listen::bind(addr)?;
                    added.push((addr, Arc::new(l)));
                }
            }
        }
        let level = new.level();
        let old_cfg = std::mem::replace(&mut self.cfg, new);
        for (a, l) in added {
            crate::info!("listening on {}", l.addr);
            self.listeners.insert(a, l);
        }
        match self.start_generation(engine, None) {
            Ok(g) => {
                // Hand over: the new workers accept before the old ones stop,
                // and "reloaded" is said only once the old ones have stopped.
                g.wait_accepting(true, HANDOVER_TIMEOUT);
                self.registry.set_engine(engine.name());
                let prev = std::mem::replace(&mut self.current, g);
                prev.signal(engine::RETIRE);
                prev.wait_accepting(false, HANDOVER_TIMEOUT);
                self.old.push(prev);
            }
            Err(e) => {
                self.cfg = old_cfg;
                return Err(ReloadError::Workers(e));
            }
        }
        // Addresses no longer configured: the old workers hold their own
        // references and drain; the socket closes when the last one exits.
        let keep: Vec<SocketAddr> = self.cfg.listen.clone();
        self.listeners.retain(|a, _| keep.contains(a));
        if (self.cfg.error_log != old_cfg.error_log || level != old_cfg.level())
            && let Err(e) = crate::log::init_error_log(&self.cfg.error_log, level)
        {
            crate::error!("error_log: {e}");
        }
        Ok(format!(
            "engine {}, {} worker(s), root {}",
            engine.name(),
            self.current.workers.len(),
            check::absolute(&self.cfg.root).display()
        ))
    }

    /// First step of a stop, on the sockets we bound: no new connection
    /// enters their accept queues from now on, so the draining workers can
    /// empty the queues and nobody is left in them to be reset when
    /// `close_own_listeners` shuts the sockets.
    fn refuse_new_connections(&self) {
        for l in self.listeners.values() {
            if let Err(e) = listen::refuse_new(l.raw()) {
                crate::warn!(
                    "{}: cannot hold off new connections during the stop: {e}",
                    l.addr
                );
            }
        }
    }

    /// Stop listening on the sockets we bound, so that clients arriving
    /// during a graceful stop are refused at once instead of waiting in an
    /// accept queue nobody serves. Sockets from systemd are left alone: they
    /// are systemd's to keep listening while we are gone.
    fn close_own_listeners(&self) {
        for l in self.listeners.values() {
            // SAFETY: shutdown on a listening socket we own; no worker accepts
            // on it any more (they reported so), and it stays open until dropped.
            if let Err(e) = syscall!(unsafe { libc::shutdown(l.raw(), libc::SHUT_RD) }) {
                // Not fatal: the socket closes when its last worker is gone.
                crate::warn!("{}: cannot stop listening: {e}", l.addr);
            }
        }
    }

    fn reopen_logs(&self) {
        if let Err(e) = crate::log::reopen_error_log() {
            crate::error!("reopen error_log: {e}");
        }
        if let Err(e) = AccessLog::reopen_current() {
            crate::error!("reopen access_log: {e}");
        }
        crate::info!("logs reopened");
    }
}

/// How long `-s reload` waits for the server's verdict.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);
/// How long `-s stop` waits for the server to exit, at least (a config
/// with a longer `shutdown_timeout` waits that long and 10 s more).
pub const STOP_WAIT: Duration = Duration::from_secs(30);

/// `-s reload|stop|reopen`: signal the instance that holds the pidfile's
/// lock, and for reload and stop wait for the outcome. `Ok` is what to tell
/// the user.
///
/// The pidfile comes from `--pidfile`, else the config. For stop and
/// reopen a config that does not load is no obstacle as long as its
/// `pidfile` key can be read (a broken file must not keep anyone from
/// stopping the server it no longer describes); a reload with a broken
/// config is refused here, with the config's error, before anything is
/// signalled.
pub fn send_signal(opts: &Options, what: &str) -> Result<String, SignalError> {
    let sig = match what {
        "reload" => libc::SIGHUP,
        "stop" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        _ => return Err(SignalError::UnknownSignal(what.to_string())),
    };
    let (path, stop_wait) = match opts.load() {
        Ok((cfg, _)) => (
            cfg.pidfile,
            STOP_WAIT.max(cfg.shutdown_timeout.0 + Duration::from_secs(10)),
        ),
        Err(e) if sig == libc::SIGHUP => return Err(e.into()),
        Err(e) => match opts
            .config_path
            .as_deref()
            .and_then(crate::config::pidfile_key)
        {
            Some(p) => {
                crate::warn!("{e}; using pidfile {} from it all the same", p.display());
                (Some(p), STOP_WAIT)
            }
            None => return Err(e.into()),
        },
    };
    let Some(path) = path else {
        return Err(SignalError::NoPidfile);
    };
    let (pid, held) = pidfile::open_running(&path)?;
    let kill = |sig| {
        // SAFETY: kill takes plain integers.
        syscall!(unsafe { libc::kill(pid, sig) }).map_err(|source| SignalError::Kill {
            pid,
            path: path.clone(),
            source,
        })
    };
    match sig {
        libc::SIGUSR1 => {
            kill(sig)?;
            Ok(format!("asked tandem (pid {pid}) to reopen its logs"))
        }
        libc::SIGTERM => {
            kill(sig)?;
            wait_stopped(pid, &held, stop_wait)?;
            Ok(format!("tandem (pid {pid}) stopped"))
        }
        _ => reload_and_wait(pid, &path, &held, kill),
    }
}

fn io_status(path: &Path) -> impl Fn(io::Error) -> SignalError + '_ {
    move |source| SignalError::Status {
        path: path.to_path_buf(),
        source,
    }
}

/// SIGHUP, then the server's verdict on that reload (see `status`).
fn reload_and_wait(
    pid: libc::pid_t,
    pidfile: &Path,
    held: &std::fs::File,
    kill: impl Fn(libc::c_int) -> Result<i32, SignalError>,
) -> Result<String, SignalError> {
    let path = status::path_for(pidfile);
    let before = match status::read(&path) {
        Ok(r) => r.map_or(0, |r| r.generation),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            kill(libc::SIGHUP)?;
            return Ok(format!(
                "sent SIGHUP to tandem (pid {pid}); it keeps no reload status ({} is missing), \
                 so see its error log for the result",
                path.display()
            ));
        }
        Err(e) => return Err(io_status(&path)(e)),
    };
    kill(libc::SIGHUP)?;
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        if let Some(r) = status::read(&path).map_err(io_status(&path))?
            && r.generation > before
        {
            match r.state {
                status::State::Reloaded(summary) => {
                    return Ok(format!("tandem (pid {pid}) reloaded: {summary}"));
                }
                status::State::Refused { exit, message } => {
                    return Err(SignalError::ReloadRefused { pid, exit, message });
                }
                _ => {}
            }
        }
        if !pidfile::is_held(held).map_err(io_status(pidfile))? {
            return Err(SignalError::ExitedDuringReload { pid });
        }
        if Instant::now() >= deadline {
            return Err(SignalError::NoVerdict {
                pid,
                waited: RELOAD_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// Wait until the server has let go of the pidfile's lock (its last act)
/// and the process is gone (or a zombie its parent has yet to reap).
fn wait_stopped(pid: libc::pid_t, held: &std::fs::File, wait: Duration) -> Result<(), SignalError> {
    let deadline = Instant::now() + wait;
    let still = || SignalError::StillStopping { pid, waited: wait };
    while pidfile::is_held(held).unwrap_or(false) {
        if Instant::now() >= deadline {
            return Err(still());
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return Err(still());
        }
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    }
    Ok(())
}

/// Is `pid` a live process (not gone, not a zombie)?
fn process_alive(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}
