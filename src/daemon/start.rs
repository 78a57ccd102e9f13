//! The steps of a start, in the order `run` takes them: each says in its
//! name what it does, and what must come before it says why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::check::{self, Checked};
use super::error::StartError;
use super::{listen, opener, pidfile, privs, status};
use crate::config::Config;
use crate::engine::Listener;
use crate::log::{AccessLog, LogTarget};

/// The pidfile lock first: a second instance is told so before it tries to
/// bind.
pub(super) fn lock_pidfile(cfg: &Config) -> Result<Option<pidfile::Pidfile>, StartError> {
    Ok(match &cfg.pidfile {
        Some(p) => Some(pidfile::Pidfile::lock(p)?),
        None => None,
    })
}

/// Where the reload verdicts go (next to the pidfile), opened now, before
/// privileges are dropped, like the pidfile.
pub(super) fn open_status(cfg: &Config) -> Result<Option<status::StatusFile>, StartError> {
    match &cfg.pidfile {
        Some(p) => status::StatusFile::create(&status::path_for(p))
            .map(Some)
            .map_err(StartError::Status),
        None => Ok(None),
    }
}

/// Every socket the config asks for, bound now (a busy port is reported
/// before anything else happens), or handed over by systemd.
pub(super) struct Bound {
    /// Our own `listen` sockets, by configured address.
    pub(super) listeners: HashMap<SocketAddr, Arc<Listener>>,
    /// Our own `tls_listen` sockets, alike.
    pub(super) tls: HashMap<SocketAddr, Arc<Listener>>,
    /// Sockets from systemd; when present they replace `listen`.
    pub(super) inherited: Option<Vec<Arc<Listener>>>,
    /// Measurement mode: one SO_REUSEPORT socket per worker instead of
    /// shared listeners (TANDEM_BENCH_REUSEPORT; not reload-safe).
    pub(super) reuseport: bool,
    /// The `metrics_listen` sockets, by configured address.
    pub(super) metrics: HashMap<SocketAddr, Arc<Listener>>,
}

/// The listeners: systemd's sockets, or `listen` bound here.
///
/// # Safety
///
/// As `listen::from_systemd`: the process has one thread, and nothing else
/// in it owns the descriptors systemd passed.
pub(super) unsafe fn bind_listeners(cfg: &Config) -> Result<Bound, StartError> {
    // SAFETY: forwarded from this function's contract.
    let inherited = unsafe { listen::from_systemd() }
        .map_err(StartError::Listen)?
        .map(|v| {
            // systemd's sockets serve TLS when `tls_listen` lists their address.
            v.into_iter()
                .map(|mut l| {
                    l.tls = cfg.tls_listen.contains(&l.addr);
                    Arc::new(l)
                })
                .collect::<Vec<_>>()
        });
    let reuseport = std::env::var_os("TANDEM_BENCH_REUSEPORT").is_some_and(|v| v == "1");
    let mut listeners = HashMap::new();
    let mut tls = HashMap::new();
    if inherited.is_none() && !reuseport {
        for &addr in &cfg.listen {
            listeners.insert(addr, Arc::new(listen::bind(addr)?));
        }
        for &addr in &cfg.tls_listen {
            tls.insert(addr, Arc::new(listen::bind_tls(addr)?));
        }
    }
    let mut metrics = HashMap::new();
    for &addr in &cfg.metrics_listen {
        metrics.insert(addr, Arc::new(listen::bind_metrics(addr)?));
    }
    Ok(Bound {
        listeners,
        tls,
        inherited,
        reuseport,
        metrics,
    })
}

/// `daemon = true`: fork into the background (after the binds, so that
/// their errors reach the terminal).
pub(super) fn daemonize(cfg: &Config) -> Result<(), StartError> {
    if cfg.daemon {
        daemonize::Daemonize::new()
            .working_directory(std::env::current_dir().map_err(StartError::WorkingDir)?)
            .umask(0o022)
            .start()
            .map_err(StartError::Daemonize)?;
    }
    Ok(())
}

/// The access log, opened before privileges are dropped (like the
/// listeners); log files just created (as root) become the user's, so that
/// a reload and a reopen, which open them again as that user, can.
pub(super) fn open_logs(cfg: &Config, checked: &Checked) -> Result<Arc<AccessLog>, StartError> {
    let access = AccessLog::open(&cfg.access_log).map_err(StartError::AccessLog)?;
    check::chown_new_logs(checked).map_err(StartError::LogOwner)?;
    Ok(access)
}

/// Become `user` when started as root (`preflight` resolved the ids it
/// checked). Before that, what needs root later gets a helper that keeps it:
/// the pidfile's removal at exit, and the logs' reopening. The helper that
/// removes the pidfile lives as long as the returned value.
///
/// # Safety
///
/// The process must have one thread: the helpers are forked (see
/// `pidfile::spawn_remover`), and the new ids must hold for every thread.
pub(super) unsafe fn drop_privileges(
    cfg: &Config,
    checked: &Checked,
) -> Result<Option<pidfile::Remover>, StartError> {
    if !privs::is_root() {
        if let Some(u) = &cfg.user {
            crate::info!("not started as root: `user = {u:?}` has nothing to drop");
        }
        return Ok(None);
    }
    let (Some(user), Some(ids)) = (&cfg.user, &checked.drop_to) else {
        match &cfg.group {
            // `group` is the group `user` runs with: alone it changes nothing.
            Some(g) => crate::warn!(
                "running as root: `group = {g:?}` takes effect with `user` only; set `user` to drop privileges after binding"
            ),
            None => crate::warn!("running as root: set `user` to drop privileges after binding"),
        }
        return Ok(None);
    };
    let remover = match &cfg.pidfile {
        Some(p) => {
            let st = status::path_for(p);
            // SAFETY: one thread (this function's contract).
            let r = unsafe { pidfile::spawn_remover(&[p.as_path(), st.as_path()]) };
            Some(r.map_err(StartError::PidfileKeeper)?)
        }
        None => None,
    };
    // SAFETY: one thread (this function's contract).
    unsafe { keep_opener(cfg)? };
    privs::drop_to(ids).map_err(|source| StartError::DropPrivileges {
        user: user.clone(),
        source,
    })?;
    crate::info!("running as user {user}");
    Ok(remover)
}

/// The logs are reopened (SIGUSR1, SIGHUP), and the certificate files
/// read again on reload, with root's rights, which the process is about
/// to give up: by a helper that keeps them (`opener`).
///
/// # Safety
///
/// The process must have one thread (see `opener::spawn`).
unsafe fn keep_opener(cfg: &Config) -> Result<(), StartError> {
    let logs: Vec<_> = [&cfg.error_log, &cfg.access_log]
        .into_iter()
        .filter_map(|t| match t {
            LogTarget::File(p) => Some(check::absolute(p)),
            _ => None,
        })
        .collect();
    let certs: Vec<_> = (cfg.tls_certificates.iter())
        .filter(|_| !cfg.tls_listen.is_empty())
        .flat_map(|c| [check::absolute(&c.cert), check::absolute(&c.key)])
        .collect();
    if !logs.is_empty() || !certs.is_empty() {
        // SAFETY: one thread (this function's contract).
        let o = unsafe { opener::spawn(logs, certs) }.map_err(StartError::LogOpener)?;
        crate::log::set_opener(Arc::new(o));
    }
    Ok(())
}
