//! Daemon life: listeners, worker generations, signals, reload, graceful stop,
//! pidfile, privileges, sd_notify.
//!
//! Signal handlers only set flags and write a byte to a pipe; the main thread
//! waits on that pipe and does the work. Listeners are shared by all workers
//! and outlive worker generations, so a reload never closes a socket that has
//! connections waiting in its accept queue. An address a reload drops stops
//! listening once the old workers have taken its queue, while they drain.

pub mod check;
mod client;
mod error;
pub mod listen;
pub mod metrics;
pub mod notify;
mod opener;
mod options;
pub mod pidfile;
pub mod privs;
mod signals;
pub mod status;
mod workers;

pub use check::{CheckError, Checked, Origin, Origins, Stage, preflight};
pub use client::{RELOAD_WAIT, STOP_WAIT, send_signal};
pub use error::{SignalError, StartError};
pub use options::Options;
pub use pidfile::PidfileError;
use signals::{Signals, install_signals};
use workers::{Generation, HANDOVER_TIMEOUT, Worker, WorkerEnd, install_panic_hook};

use error::ReloadError;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::{self, Control, Engine, Listener, WorkerSpec};
use crate::files::{Responder, Settings};
use crate::http::Limits;
use crate::log::AccessLog;
use crate::metrics::Registry;

struct Daemon {
    opts: Options,
    cfg: Config,
    /// Where `tandem -s reload` reads the verdict of each reload (with a pidfile).
    status: Option<status::StatusFile>,
    /// Listeners by configured address and whether it is a `tls_listen`
    /// one (kept across reloads).
    listeners: HashMap<(SocketAddr, bool), Arc<Listener>>,
    /// The TLS settings of the current generation (`tls_certificates`).
    tls: Option<Arc<rustls::ServerConfig>>,
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
    /// Where it listens (bound addresses), to tell a reload whose new
    /// address it holds that the holder is this server.
    metrics_addrs: Vec<SocketAddr>,
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
    // Sockets from systemd serve TLS when their address is in `tls_listen`.
    let inherited = listen::from_systemd()
        .map_err(StartError::Listen)?
        .map(|v| {
            v.into_iter()
                .map(|mut l| {
                    l.tls = cfg.tls_listen.contains(&l.addr);
                    Arc::new(l)
                })
                .collect::<Vec<_>>()
        });
    let reuseport = std::env::var_os("TANDEM_BENCH_REUSEPORT").is_some_and(|v| v == "1");
    let mut listeners = HashMap::new();
    if inherited.is_none() && !reuseport {
        for &addr in &cfg.listen {
            listeners.insert((addr, false), Arc::new(listen::bind(addr)?));
        }
        for &addr in &cfg.tls_listen {
            listeners.insert((addr, true), Arc::new(listen::bind_tls(addr)?));
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
                // The logs are reopened (SIGUSR1, SIGHUP) with root's
                // rights, which the process is about to give up: by a
                // helper that keeps them (see `opener`).
                let logs: Vec<_> = [&cfg.error_log, &cfg.access_log]
                    .into_iter()
                    .filter_map(|t| match t {
                        crate::log::LogTarget::File(p) => Some(check::absolute(p)),
                        _ => None,
                    })
                    .collect();
                if !logs.is_empty() {
                    let o = opener::spawn(logs).map_err(StartError::LogOpener)?;
                    crate::log::set_opener(Arc::new(o));
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
            metrics::Server::start(
                metrics_listeners,
                registry.clone(),
                Limits::from_config(&cfg),
                cfg.shutdown_timeout.0,
            )
            .map_err(|e| {
                StartError::Listen(io::Error::new(e.kind(), format!("metrics listener: {e}")))
            })?,
        )
    };
    let mut d = Daemon {
        opts,
        cfg,
        status,
        listeners,
        tls: checked.tls,
        inherited,
        reuseport,
        current: Generation {
            engine,
            workers: Vec::new(),
            access: first_access.clone(),
        },
        old: Vec::new(),
        waker,
        registry,
        metrics,
        metrics_addrs: metrics_addrs.clone(),
    };
    if let Some(why) = note {
        crate::info!("io_uring unavailable ({why}); engine auto falls back to epoll");
    }
    d.current = d
        .start_generation(engine, Some(first_access))
        .map_err(StartError::Workers)?;
    d.current.wait_accepting(true, HANDOVER_TIMEOUT);
    for l in d.active_listeners() {
        crate::info!(
            "listening on {}{}",
            l.addr,
            if l.tls { " (TLS)" } else { "" }
        );
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
    // The log opener ends when its socket closes; reap it here.
    crate::log::clear_opener();
    drop(pidfile);
    drop(_pidfile_remover);
    Ok(())
}

/// Whether `cfg` lists the listener of this key: its address in `listen`,
/// or in `tls_listen` for a TLS one.
fn configured(cfg: &Config, &(addr, tls): &(SocketAddr, bool)) -> bool {
    match tls {
        false => cfg.listen.contains(&addr),
        true => cfg.tls_listen.contains(&addr),
    }
}

impl Daemon {
    fn active_listeners(&self) -> Vec<Arc<Listener>> {
        match &self.inherited {
            Some(v) => v.clone(),
            None => self
                .cfg
                .listen
                .iter()
                .map(|&a| (a, false))
                .chain(self.cfg.tls_listen.iter().map(|&a| (a, true)))
                .filter_map(|k| self.listeners.get(&k).cloned())
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
        // redirect_to_https: the plaintext listeners' own responder.
        let redirect = cfg.redirect_to_https.then(|| {
            // The first TLS listener's bound port (443 without one).
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
        let explicit = cfg.max_connections != Config::default().max_connections;
        let max_connections = engine::policy::max_connections(cfg.max_connections, explicit, n);
        let mut workers = Vec::with_capacity(n);
        for id in 0..n {
            if self.reuseport {
                listeners = self.reuseport_listeners(&listeners)?;
            }
            let spec = WorkerSpec {
                id,
                listeners: listeners.clone(),
                responder: files.clone(),
                limits: limits.clone(),
                access: Some(access.clone()),
                control: Control::new()?,
                max_connections,
                when_full: engine::WhenFull::Pause,
                shutdown_timeout: cfg.shutdown_timeout.0,
                counters: self.registry.worker(),
                tls: self.tls.clone(),
                redirect: redirect.clone(),
            };
            workers.push(Worker::start(engine, spec, &self.waker)?);
        }
        Ok(Generation {
            engine,
            workers,
            access,
        })
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
        // Draining since. Before it, `delay_until`: a stop signal came, and
        // new connections are still served until then (shutdown_delay).
        let mut stopping: Option<Instant> = None;
        let mut delay_until: Option<Instant> = None;
        loop {
            let wait = match (stopping, delay_until) {
                (Some(_), _) => Duration::from_millis(50),
                (None, Some(t)) => t
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500)),
                (None, None) => Duration::from_millis(500),
            };
            sig.wait(wait);
            if sig.term.swap(false, Ordering::AcqRel) {
                if stopping.is_some() {
                    crate::info!("second stop signal: closing all connections now");
                    self.current.signal(engine::ABORT);
                    for g in &self.old {
                        g.signal(engine::ABORT);
                    }
                } else if delay_until.is_some() {
                    crate::info!("second stop signal: ending shutdown_delay now");
                    delay_until = None;
                    stopping = Some(self.begin_drain());
                } else {
                    // First, so that a balancer polling /healthz takes the
                    // instance out while it drains (or before, with a delay).
                    self.registry.set_stopping();
                    notify::notify("STOPPING=1");
                    let delay = self.cfg.shutdown_delay.0;
                    if delay.is_zero() {
                        stopping = Some(self.begin_drain());
                    } else {
                        crate::info!(
                            "stopping: /healthz says 503; still accepting for {delay:?} \
                             (shutdown_delay), then finishing responses in flight"
                        );
                        delay_until = Some(Instant::now() + delay);
                    }
                }
            }
            if delay_until.is_some_and(|t| Instant::now() >= t) {
                delay_until = None;
                stopping = Some(self.begin_drain());
            }
            if sig.hup.swap(false, Ordering::AcqRel) && stopping.is_none() && delay_until.is_none()
            {
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
            if let Some(m) = self.metrics.as_mut() {
                m.replace_if_dead();
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

    /// The stop proper: no new connection from now on, the workers finish
    /// what is in flight (bounded by shutdown_timeout). Returns its start.
    fn begin_drain(&mut self) -> Instant {
        crate::info!("stopping: finishing responses in flight");
        let started = Instant::now();
        self.refuse_new_connections();
        self.current.signal(engine::DRAIN);
        for g in &self.old {
            g.signal(engine::DRAIN);
        }
        self.current.wait_accepting(false, HANDOVER_TIMEOUT);
        self.close_own_listeners();
        crate::info!("stopping: workers no longer accept; draining");
        started
    }

    fn reload(&mut self) {
        // Every SIGHUP reopens both logs first, as SIGUSR1 does (nginx's
        // reload does too), whether the new config takes or not: what the
        // reload says goes to the new files.
        self.reopen_logs();
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
        let checked = preflight(&new, &origins, Stage::Reload)?;
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
            for (&addr, tls) in new
                .listen
                .iter()
                .map(|a| (a, false))
                .chain(new.tls_listen.iter().map(|a| (a, true)))
            {
                if !self.listeners.contains_key(&(addr, tls)) {
                    let l = if tls {
                        listen::bind_tls(addr)
                    } else {
                        listen::bind(addr)
                    };
                    let l = l.map_err(|e| e.held_by(self.holder_of(addr)))?;
                    added.push(((addr, tls), Arc::new(l)));
                }
            }
        }
        let level = new.level();
        let old_cfg = std::mem::replace(&mut self.cfg, new);
        // New handshakes use the new certificates; those under way, and
        // the old workers' connections, keep the config they began with.
        let old_tls = std::mem::replace(&mut self.tls, checked.tls);
        for (a, l) in added {
            crate::info!(
                "listening on {}{}",
                l.addr,
                if l.tls { " (TLS)" } else { "" }
            );
            self.listeners.insert(a, l);
        }
        // Addresses the new config drops (our own sockets: systemd's stay).
        let removed: Vec<Arc<Listener>> = self
            .listeners
            .iter()
            .filter(|(k, _)| !configured(&self.cfg, k))
            .map(|(_, l)| l.clone())
            .collect();
        // The same access log file: the new generation shares the old one's
        // (just reopened with the error log, as every SIGHUP does), so a
        // reopen reaches the draining workers too.
        let access =
            (self.cfg.access_log == old_cfg.access_log).then(|| self.current.access.clone());
        match self.start_generation(engine, access) {
            Ok(g) => {
                // Hand over: the new workers accept before the old ones stop,
                // and "reloaded" is said only once the old ones have stopped.
                g.wait_accepting(true, HANDOVER_TIMEOUT);
                self.registry.set_engine(engine.name());
                // A dropped address takes no new connection from now on (as
                // on a stop): the old workers take what its queue holds as
                // they stop accepting, then it stops listening, so new
                // clients are refused at once rather than left in a queue
                // nobody serves while the old workers drain (which has no
                // end while a slow download lasts), and the address is free
                // for a later reload to bind again.
                for l in &removed {
                    if let Err(e) = listen::refuse_new(l.raw()) {
                        crate::warn!("{}: cannot hold off new connections: {e}", l.addr);
                    }
                }
                let prev = std::mem::replace(&mut self.current, g);
                prev.signal(engine::RETIRE);
                prev.wait_accepting(false, HANDOVER_TIMEOUT);
                for l in &removed {
                    listen::stop_listening(l);
                    crate::info!("stopped listening on {}", l.addr);
                }
                self.old.push(prev);
                // The metrics listener takes the new limits and timeouts too.
                if let Some(m) = self.metrics.as_mut()
                    && let Err(e) =
                        m.reload(Limits::from_config(&self.cfg), self.cfg.shutdown_timeout.0)
                {
                    crate::error!(
                        "metrics listener: cannot start its new worker, keeping the old: {e}"
                    );
                }
            }
            Err(e) => {
                self.cfg = old_cfg;
                self.tls = old_tls;
                let cfg = &self.cfg;
                self.listeners.retain(|k, _| configured(cfg, k));
                return Err(ReloadError::Workers(e));
            }
        }
        // The old workers still hold the dropped sockets (no longer
        // listening); each closes when the last of them exits.
        let cfg = &self.cfg;
        self.listeners.retain(|k, _| configured(cfg, k));
        crate::log::set_level(level);
        if self.cfg.error_log != old_cfg.error_log
            && let Err(e) = crate::log::init_error_log(&self.cfg.error_log, level)
        {
            crate::alert!("error_log: {e}; still writing to the one opened before");
        }
        Ok(format!(
            "engine {}, {} worker(s), root {}",
            engine.name(),
            self.current.workers.len(),
            check::absolute(&self.cfg.root).display()
        ))
    }

    /// Which of this server's own sockets takes `addr`'s port, said for a
    /// reload's "address already in use": a listener the new config drops
    /// (a reload binds new addresses before it lets old ones go) or the
    /// metrics listener. `None` when none does: then it is someone else.
    fn holder_of(&self, addr: SocketAddr) -> Option<String> {
        if let Some(l) = self
            .listeners
            .values()
            .find(|l| crate::config::same_socket(&l.addr, &addr))
        {
            return Some(format!(
                "this server's own listener on {} (a reload binds new addresses before it \
                 lets old ones go: drop {} in one reload and add {addr} in the next)",
                l.addr, l.addr
            ));
        }
        self.metrics_addrs
            .iter()
            .find(|m| crate::config::same_socket(m, &addr))
            .map(|m| {
                format!(
                    "this server's own metrics listener on {m} (metrics_listen changes on \
                     restart only)"
                )
            })
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
            listen::stop_listening(l);
        }
    }

    /// Reopen the error log and the access log of every generation still
    /// running (the draining ones too). Each log that fails keeps the file
    /// it had and is tried again at the next SIGUSR1 or SIGHUP; the failure
    /// is said on stderr too (the old file may be unlinked), and "reopened"
    /// is said only of the logs that were. The verdict goes to the status
    /// file, for `tandem -s reopen`.
    fn reopen_logs(&mut self) {
        if let Some(s) = self.status.as_mut() {
            s.begin_reopen();
        }
        let mut failed = Vec::new();
        if let Err(e) = crate::log::reopen_error_log() {
            failed.push(format!("error_log {e}"));
        }
        let error_ok = failed.is_empty();
        let mut seen: Vec<&Arc<AccessLog>> = Vec::new();
        for g in std::iter::once(&self.current).chain(&self.old) {
            if seen.iter().any(|a| Arc::ptr_eq(a, &g.access)) {
                continue;
            }
            seen.push(&g.access);
            if let Err(e) = g.access.reopen() {
                failed.push(format!("access_log {e}"));
            }
        }
        let access_ok = failed.len() == usize::from(!error_ok);
        let verdict = if failed.is_empty() {
            crate::info!("logs reopened");
            Ok(())
        } else {
            for f in &failed {
                crate::alert!(
                    "cannot reopen {f}; its lines go on to the file opened before \
                     (tried again at the next SIGUSR1 or reload)"
                );
            }
            if error_ok {
                crate::info!("error_log reopened");
            } else if access_ok {
                crate::info!("access_log reopened");
            }
            Err(failed.join("; "))
        };
        if let Some(s) = self.status.as_mut() {
            s.finish_reopen(verdict);
        }
    }
}
