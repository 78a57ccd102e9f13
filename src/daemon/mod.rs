//! Daemon life: `run` takes the start's steps (`start`), then the main loop
//! waits on signals and dispatches them: a stop (`stop`), a reload or a log
//! reopen (`reload`), and supervises the workers (`workers`). The `-s`
//! client is `client`; listeners, the hold-off, the pidfile, privileges and
//! sd_notify each have a file.
//!
//! Signal handlers only set flags and write a byte to a pipe; the main thread
//! waits on that pipe and does the work. Listeners are shared by all workers
//! and outlive worker generations, so a reload never closes a socket that has
//! connections waiting in its accept queue. An address a reload drops stops
//! listening once the old workers have taken its queue, while they drain.

pub mod check;
mod client;
mod error;
mod holdoff;
pub mod listen;
pub mod metrics;
pub mod notify;
mod opener;
mod options;
pub mod pidfile;
pub mod privs;
mod reload;
mod signals;
mod start;
pub mod status;
mod stop;
mod workers;

pub use check::{CheckError, Checked, Origin, Origins, Stage, preflight};
pub use client::{RELOAD_WAIT, STOP_WAIT, send_signal};
pub use error::{SignalError, StartError};
use holdoff::HoldOff;
pub use options::Options;
pub use pidfile::PidfileError;
use signals::{Signals, install_signals};
use stop::Stop;
use workers::{Generation, HANDOVER_TIMEOUT, install_panic_hook};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::engine::{self, Engine, Listener, ProbeError};
use crate::http::Limits;
use crate::log::AccessLog;
use crate::metrics::Registry;

struct Daemon {
    opts: Options,
    cfg: Config,
    /// Where `tandem -s reload` reads the verdict of each reload (with a pidfile).
    status: Option<status::StatusFile>,
    /// Listeners by configured address (kept across reloads).
    listeners: HashMap<SocketAddr, Arc<Listener>>,
    /// The `tls_listen` ones, alike (apart: `listen` and `tls_listen` may
    /// both say port 0).
    tls_listeners: HashMap<SocketAddr, Arc<Listener>>,
    /// The TLS settings the current generation serves (`tls_certificates`).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Listeners handed over by systemd; when present they replace `listen`.
    inherited: Option<Vec<Arc<Listener>>>,
    /// Measurement mode: one SO_REUSEPORT socket per worker instead of shared
    /// listeners (TANDEM_BENCH_REUSEPORT; not reload-safe, see docs/architecture.md).
    reuseport: bool,
    current: Generation,
    old: Vec<Generation>,
    /// Handed to workers: they write to it when they end.
    waker: UnixStream,
    /// Every worker's counters, reloads, health (`/metrics`, `/healthz`).
    registry: Arc<Registry>,
    /// The metrics and health listener (serving nothing while
    /// `metrics_listen` is empty).
    metrics: metrics::Server,
    /// Its sockets by configured address (kept across reloads).
    metrics_listeners: HashMap<SocketAddr, Arc<Listener>>,
    /// How a listener that is about to stop takes no new connection
    /// (prepared before privileges are dropped).
    holdoff: HoldOff,
    stop: Stop,
}

/// Run the server until it is stopped. `checked` is what `preflight`
/// (`Stage::Start`) found for `cfg`: the caller runs it first, before it
/// opens the error log, so that a config that cannot run exits 2 like
/// `tandem -t` says. Each step is a function named for what it does; the
/// order matters where a comment says so.
///
/// # Safety
///
/// The process must have one thread when this is called, and nothing in it
/// may own the descriptors systemd passed (LISTEN_FDS): the start reads
/// and removes environment variables, takes those descriptors, and forks
/// helpers that run ordinary code (`start::bind_listeners`,
/// `start::drop_privileges`).
pub unsafe fn run(opts: Options, cfg: Config, checked: Checked) -> Result<(), StartError> {
    let mut pidfile = start::lock_pidfile(&cfg)?;
    let status = start::open_status(&cfg)?;
    // SAFETY: one thread, systemd's descriptors unowned (the contract).
    let bound = unsafe { start::bind_listeners(&cfg) }?;
    let (engine, note) = engine::select(cfg.engine)?;
    start::daemonize(&cfg)?;
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }
    let access = start::open_logs(&cfg, &checked)?;
    // Loaded while the process may (see `holdoff`): before the drop.
    let holdoff = HoldOff::prepare();
    // CAP_BPF (the unit grants it for the line above) is not needed again.
    if let Err(e) = privs::drop_bpf_capability() {
        crate::warn!("cannot drop CAP_BPF after loading the hold-off filter: {e}");
    }
    // SAFETY: still one thread (the contract): no thread is started above;
    // the workers and the metrics server start below.
    let pidfile_remover = unsafe { start::drop_privileges(&cfg, &checked) }?;
    let (signals, waker) = install_signals().map_err(StartError::Signals)?;
    install_panic_hook();
    let registry = Registry::new(engine.name());
    let limits = Limits::from_config(&cfg);
    let mut d = Daemon {
        metrics: metrics::Server::new(registry.clone(), limits, cfg.shutdown_timeout.0),
        opts,
        cfg,
        status,
        listeners: bound.listeners,
        tls_listeners: bound.tls,
        tls: checked.tls,
        inherited: bound.inherited,
        reuseport: bound.reuseport,
        current: Generation {
            engine,
            workers: Vec::new(),
            access: access.clone(),
        },
        old: Vec::new(),
        waker,
        registry,
        metrics_listeners: bound.metrics,
        holdoff,
        stop: Stop::Running,
    };
    d.start_metrics()?;
    d.start_workers(engine, access, note)?;
    d.notify_ready();
    d.main_loop(&signals);
    // The metrics listener closes last (the site has drained).
    d.metrics.stop();
    drop(d);
    // The log opener ends when its socket closes; reap it here.
    crate::log::clear_opener();
    drop(pidfile);
    drop(pidfile_remover);
    Ok(())
}

impl Daemon {
    /// The metrics listener first, so that `/healthz` says "starting"
    /// while the workers start.
    fn start_metrics(&mut self) -> Result<(), StartError> {
        let set = reload::in_order(&self.cfg.metrics_listen, &self.metrics_listeners);
        let limits = Limits::from_config(&self.cfg);
        (self.metrics)
            .reload(set, limits, self.cfg.shutdown_timeout.0, &self.holdoff)
            .map_err(StartError::Metrics)
    }

    /// The first generation, accepting before the start is announced.
    fn start_workers(
        &mut self,
        engine: Engine,
        access: Arc<AccessLog>,
        note: Option<ProbeError>,
    ) -> Result<(), StartError> {
        if let Some(why) = note {
            crate::info!("io_uring unavailable ({why}); engine auto falls back to epoll");
        }
        self.current =
            (self.start_generation(engine, Some(access))).map_err(StartError::Workers)?;
        self.current.wait_accepting(true, HANDOVER_TIMEOUT);
        Ok(())
    }

    /// Say where it serves, `/healthz` turns 200, and systemd is told.
    fn notify_ready(&self) {
        for l in self.active_listeners() {
            crate::info!("listening on {}{}", l.addr, tls_note(&l));
        }
        self.registry.set_serving();
        for l in reload::in_order(&self.cfg.metrics_listen, &self.metrics_listeners) {
            crate::info!("metrics and health on {} (GET /metrics, /healthz)", l.addr);
        }
        crate::info!(
            "tandem {} serving {} with engine {}, {} worker(s)",
            env!("CARGO_PKG_VERSION"),
            check::absolute(&self.cfg.root).display(),
            self.current.engine.name(),
            self.current.workers.len()
        );
        notify::notify("READY=1");
    }

    /// Wait for signals and act on them, and watch the workers, until the
    /// stop has drained (or no worker is left).
    fn main_loop(&mut self, sig: &Signals) {
        loop {
            sig.wait(self.stop.wait());
            if sig.term.swap(false, Ordering::AcqRel) {
                self.on_stop_signal();
            }
            self.end_delay_if_due();
            if sig.hup.swap(false, Ordering::AcqRel) {
                match self.stop {
                    Stop::Running => self.reload(),
                    _ => self.refuse_reload_while_stopping(),
                }
            }
            if sig.usr1.swap(false, Ordering::AcqRel) {
                self.reopen_logs();
            }
            let serving = self.stop.serving();
            self.supervise(serving);
            if !serving && self.current.workers.is_empty() && self.old.is_empty() {
                break;
            }
            if serving && self.current.workers.is_empty() {
                crate::error!("no workers left; exiting");
                break;
            }
        }
        crate::info!("stopped");
        notify::notify("STATUS=stopped");
    }

    fn active_listeners(&self) -> Vec<Arc<Listener>> {
        match &self.inherited {
            Some(v) => v.clone(),
            None => {
                let mut all = reload::in_order(&self.cfg.listen, &self.listeners);
                all.extend(reload::in_order(&self.cfg.tls_listen, &self.tls_listeners));
                all
            }
        }
    }

    /// Our own sockets (not systemd's): `listen` and `tls_listen`.
    fn own_listeners(&self) -> impl Iterator<Item = &Arc<Listener>> {
        self.listeners.values().chain(self.tls_listeners.values())
    }
}

/// " (TLS)" after a TLS listener's address in the log.
fn tls_note(l: &Listener) -> &'static str {
    if l.tls { " (TLS)" } else { "" }
}
