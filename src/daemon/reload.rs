//! SIGHUP: reload the config (a new generation of workers takes the
//! listeners over, addresses the config adds are bound first and those it
//! drops let go, `metrics_listen` alike), and SIGUSR1: reopen the logs.
//! The verdict of each goes to the status file for `tandem -s`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::error::ReloadError;
use super::workers::{Generation, HANDOVER_TIMEOUT};
use super::{Daemon, Stage, check, listen, notify, preflight, status};
use crate::config::Config;
use crate::engine::{self, Engine, Listener};
use crate::http::Limits;
use crate::log::AccessLog;

/// Sockets a reload bound for addresses its config adds, by address.
struct Added {
    listen: Vec<(SocketAddr, Arc<Listener>)>,
    tls: Vec<(SocketAddr, Arc<Listener>)>,
    metrics: Vec<(SocketAddr, Arc<Listener>)>,
}

impl Daemon {
    pub(super) fn reload(&mut self) {
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

    /// A SIGHUP after a stop signal: nothing is reloaded (as nginx's
    /// master ignores it while it quits), but the logs are reopened as by
    /// any SIGHUP, and `tandem -s reload` is told at once rather than left
    /// waiting for the drain to end.
    pub(super) fn refuse_reload_while_stopping(&mut self) {
        self.reopen_logs();
        let message = "it is stopping (a stop signal came first): nothing was reloaded";
        crate::warn!("reload ignored: {message}");
        if let Some(s) = self.status.as_mut() {
            s.begin();
            s.finish(status::State::Refused {
                exit: 1,
                message: message.to_string(),
            });
        }
    }

    /// Reload; `Ok` with the summary of what runs now. Nothing that runs is
    /// touched until the new config is checked, its new addresses bound and
    /// its workers started.
    fn try_reload(&mut self) -> Result<String, ReloadError> {
        let (new, engine, tls) = self.load_new_config()?;
        let added = self.bind_new_addresses(&new)?;
        let old_cfg = std::mem::replace(&mut self.cfg, new);
        // New handshakes use the new certificates; those under way, and the
        // old workers' connections, keep the settings they began with.
        let old_tls = std::mem::replace(&mut self.tls, tls);
        for (a, l) in added.listen {
            crate::info!("listening on {}", l.addr);
            self.listeners.insert(a, l);
        }
        for (a, l) in added.tls {
            crate::info!("listening on {} (TLS)", l.addr);
            self.tls_listeners.insert(a, l);
        }
        // The same access log file: the new generation shares the old one's
        // (just reopened with the error log, as every SIGHUP does), so a
        // reopen reaches the draining workers too.
        let access =
            (self.cfg.access_log == old_cfg.access_log).then(|| self.current.access.clone());
        match self.start_generation(engine, access) {
            Ok(g) => self.hand_over(g),
            Err(e) => {
                self.cfg = old_cfg;
                self.tls = old_tls;
                let (keep, tls) = (&self.cfg.listen, &self.cfg.tls_listen);
                self.listeners.retain(|a, _| keep.contains(a));
                self.tls_listeners.retain(|a, _| tls.contains(a));
                return Err(ReloadError::Workers(e));
            }
        }
        self.reload_metrics(added.metrics);
        self.apply_log_settings(&old_cfg);
        Ok(format!(
            "engine {}, {} worker(s), root {}",
            engine.name(),
            self.current.workers.len(),
            check::absolute(&self.cfg.root).display()
        ))
    }

    /// The config file again, with the command line's overrides, checked as
    /// a reload checks it, the engine it asks for, and its TLS settings
    /// (the certificates, read and checked again).
    #[allow(clippy::type_complexity)]
    fn load_new_config(
        &self,
    ) -> Result<(Config, Engine, Option<Arc<rustls::ServerConfig>>), ReloadError> {
        let (new, origins) = self.opts.load()?;
        let checked = preflight(&new, &origins, Stage::Reload)?;
        for (changed, key) in [
            (new.daemon != self.cfg.daemon, "daemon"),
            (new.pidfile != self.cfg.pidfile, "pidfile"),
            (new.user != self.cfg.user, "user"),
            (new.group != self.cfg.group, "group"),
        ] {
            if changed {
                crate::warn!("reload: a change of `{key}` takes effect on restart only");
            }
        }
        let (engine, note) = engine::select(new.engine)?;
        if let Some(why) = note {
            crate::info!("io_uring unavailable ({why}); engine auto falls back to epoll");
        }
        Ok((new, engine, checked.tls))
    }

    /// Bind what `new` adds (`listen` unless systemd's sockets replace it,
    /// and `metrics_listen`), before anything that runs is touched.
    fn bind_new_addresses(&self, new: &Config) -> Result<Added, ReloadError> {
        let mut added = Added {
            listen: Vec::new(),
            tls: Vec::new(),
            metrics: Vec::new(),
        };
        if self.inherited.is_none() {
            self.refuse_moves(new)?;
            for &addr in &new.listen {
                if !self.listeners.contains_key(&addr)
                    && !added.listen.iter().any(|(a, _)| *a == addr)
                {
                    let l = listen::bind(addr).map_err(|e| e.held_by(self.holder_of(addr)))?;
                    added.listen.push((addr, Arc::new(l)));
                }
            }
            for &addr in &new.tls_listen {
                if !self.tls_listeners.contains_key(&addr)
                    && !added.tls.iter().any(|(a, _)| *a == addr)
                {
                    let l = listen::bind_tls(addr).map_err(|e| e.held_by(self.holder_of(addr)))?;
                    added.tls.push((addr, Arc::new(l)));
                }
            }
        }
        for &addr in &new.metrics_listen {
            if !self.metrics_listeners.contains_key(&addr)
                && !added.metrics.iter().any(|(a, _)| *a == addr)
            {
                let l = listen::bind_metrics(addr).map_err(|e| e.held_by(self.holder_of(addr)))?;
                added.metrics.push((addr, Arc::new(l)));
            }
        }
        Ok(added)
    }

    /// An address that moves between `listen` and `tls_listen` is refused
    /// (exit 2, the old config keeps serving): its socket stays the same,
    /// and while both generations accept from its one queue, a client could
    /// be answered in the protocol it did not speak. Two reloads (drop it,
    /// then add it) or a restart move it; nginx would switch it in place.
    fn refuse_moves(&self, new: &Config) -> Result<(), ReloadError> {
        let moved = |addrs: &[SocketAddr], now: &HashMap<SocketAddr, Arc<Listener>>| {
            // Port 0 names no socket in particular: a new one is bound.
            (addrs.iter())
                .find(|a| a.port() != 0 && now.contains_key(a))
                .copied()
        };
        if let Some(addr) = moved(&new.tls_listen, &self.listeners) {
            return Err(ReloadError::Moved {
                addr,
                from: "listen",
                to: "tls_listen",
            });
        }
        if let Some(addr) = moved(&new.listen, &self.tls_listeners) {
            return Err(ReloadError::Moved {
                addr,
                from: "tls_listen",
                to: "listen",
            });
        }
        Ok(())
    }

    /// The new generation takes over: it accepts before the old one stops,
    /// and "reloaded" is said only once the old one has stopped accepting.
    /// An address the new config drops takes no new connection from then
    /// on (as on a stop): the old workers take what its queue holds as they
    /// stop accepting, then it stops listening, so new clients are refused
    /// at once rather than left in a queue nobody serves while the old
    /// workers drain (which has no end while a slow download lasts), and
    /// the address is free for a later reload to bind again. The old
    /// workers still hold its socket; it closes when the last of them exits.
    fn hand_over(&mut self, g: Generation) {
        g.wait_accepting(true, HANDOVER_TIMEOUT);
        self.registry.set_engine(g.engine.name());
        let (keep, tls) = (&self.cfg.listen, &self.cfg.tls_listen);
        let removed: Vec<Arc<Listener>> = (self.listeners.iter())
            .filter(|(a, _)| !keep.contains(a))
            .chain(self.tls_listeners.iter().filter(|(a, _)| !tls.contains(a)))
            .map(|(_, l)| l.clone())
            .collect();
        let prev = std::mem::replace(&mut self.current, g);
        self.holdoff.let_go(&removed, || {
            prev.signal(engine::Command::Retire);
            prev.wait_accepting(false, HANDOVER_TIMEOUT);
        });
        for l in &removed {
            crate::info!("stopped listening on {}", l.addr);
        }
        self.old.push(prev);
        self.listeners.retain(|a, _| keep.contains(a));
        self.tls_listeners.retain(|a, _| tls.contains(a));
    }

    /// The metrics listener takes the new limits and timeouts, and the new
    /// `metrics_listen` (with `added`, bound for it), the way the site's
    /// workers do. If its new worker cannot start, the old one keeps
    /// serving what it served.
    fn reload_metrics(&mut self, added: Vec<(SocketAddr, Arc<Listener>)>) {
        let want = &self.cfg.metrics_listen;
        let next: HashMap<SocketAddr, Arc<Listener>> = (self.metrics_listeners.iter())
            .filter(|(a, _)| want.contains(a))
            .map(|(a, l)| (*a, l.clone()))
            .chain(added.iter().cloned())
            .collect();
        let set = in_order(want, &next);
        let limits = Limits::from_config(&self.cfg);
        match (self.metrics).reload(set, limits, self.cfg.shutdown_timeout.0, &self.holdoff) {
            Ok(()) => {
                for (_, l) in &added {
                    crate::info!("metrics and health on {} (GET /metrics, /healthz)", l.addr);
                }
                self.metrics_listeners = next;
            }
            Err(e) => {
                crate::error!("metrics listener: cannot start its new worker, keeping the old: {e}")
            }
        }
    }

    /// The log level, and the error log when the config names another.
    fn apply_log_settings(&self, old_cfg: &Config) {
        let level = self.cfg.level();
        crate::log::set_level(level);
        if self.cfg.error_log != old_cfg.error_log
            && let Err(e) = crate::log::init_error_log(&self.cfg.error_log, level)
        {
            crate::alert!("error_log: {e}; still writing to the one opened before");
        }
    }

    /// Which of this server's own sockets takes `addr`'s port, said for a
    /// reload's "address already in use": a listener (or metrics listener)
    /// the new config drops, since a reload binds new addresses before it
    /// lets old ones go. `None` when none does: then it is someone else.
    pub(super) fn holder_of(&self, addr: SocketAddr) -> Option<String> {
        let site = self.own_listeners().map(|l| ("listener", l));
        let metrics = self
            .metrics_listeners
            .values()
            .map(|l| ("metrics listener", l));
        let (what, l) = site
            .chain(metrics)
            .find(|(_, l)| crate::config::same_socket(&l.addr, &addr))?;
        Some(format!(
            "this server's own {what} on {} (a reload binds new addresses before it \
             lets old ones go: drop {} in one reload and add {addr} in the next)",
            l.addr, l.addr
        ))
    }

    /// Reopen the error log and the access log of every generation still
    /// running (the draining ones too). Each log that fails keeps the file
    /// it had and is tried again at the next SIGUSR1 or SIGHUP; the failure
    /// is said on stderr too (the old file may be unlinked), and "reopened"
    /// is said only of the logs that were. The verdict goes to the status
    /// file, for `tandem -s reopen`.
    pub(super) fn reopen_logs(&mut self) {
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

/// The sockets for `addrs`, in their order, each once.
pub(super) fn in_order(
    addrs: &[SocketAddr],
    by_addr: &HashMap<SocketAddr, Arc<Listener>>,
) -> Vec<Arc<Listener>> {
    let mut out: Vec<Arc<Listener>> = Vec::new();
    for a in addrs {
        if let Some(l) = by_addr.get(a)
            && !out.iter().any(|o| Arc::ptr_eq(o, l))
        {
            out.push(l.clone());
        }
    }
    out
}
