//! `tandem -s reload|stop|reopen`: the client side of the signals.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Options, SignalError, pidfile, status};
use crate::syscall;

/// How long `-s reload` and `-s reopen` wait for the server's verdict.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);
/// How long `-s stop` waits for the server to exit, at least (a config
/// with a longer `shutdown_delay` + `shutdown_timeout` waits that long and
/// 10 s more).
pub const STOP_WAIT: Duration = Duration::from_secs(30);

/// `-s reload|stop|reopen`: signal the instance that holds the pidfile's
/// lock, and wait for the outcome. `Ok` is what to tell
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
            // A stop accepts for shutdown_delay, then drains for up to
            // shutdown_timeout: the wait covers both.
            STOP_WAIT.max(cfg.shutdown_delay.0 + cfg.shutdown_timeout.0 + Duration::from_secs(10)),
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
        libc::SIGTERM => {
            kill(sig)?;
            wait_stopped(pid, &held, stop_wait)?;
            Ok(format!("tandem (pid {pid}) stopped"))
        }
        _ => signal_and_wait(sig, pid, &path, &held, kill),
    }
}

fn io_status(path: &Path) -> impl Fn(io::Error) -> SignalError + '_ {
    move |source| SignalError::Status {
        path: path.to_path_buf(),
        source,
    }
}

/// SIGHUP or SIGUSR1, then the server's verdict on the reload or the log
/// reopen that signal started (see `status`).
fn signal_and_wait(
    sig: libc::c_int,
    pid: libc::pid_t,
    pidfile: &Path,
    held: &std::fs::File,
    kill: impl Fn(libc::c_int) -> Result<i32, SignalError>,
) -> Result<String, SignalError> {
    let reload = sig == libc::SIGHUP;
    let what = if reload { "reload" } else { "reopen" };
    // The count the verdict must pass: reloads and reopens each have theirs.
    let count = |r: &status::Record| if reload { r.generation } else { r.reopen };
    let path = status::path_for(pidfile);
    let before = match status::read(&path) {
        Ok(r) => r.as_ref().map_or(0, count),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            kill(sig)?;
            return Ok(format!(
                "sent {} to tandem (pid {pid}); it keeps no status ({} is missing), \
                 so see its error log for the result",
                if reload { "SIGHUP" } else { "SIGUSR1" },
                path.display()
            ));
        }
        Err(e) => return Err(io_status(&path)(e)),
    };
    kill(sig)?;
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let record = match status::read(&path) {
            Ok(r) => r,
            // The server removes it as it exits: said just below.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_status(&path)(e)),
        };
        if let Some(r) = record
            && count(&r) > before
        {
            match (reload, r.state, r.reopen_state) {
                (true, status::State::Reloaded(summary), _) => {
                    return Ok(format!("tandem (pid {pid}) reloaded: {summary}"));
                }
                (true, status::State::Refused { exit, message }, _) => {
                    return Err(SignalError::ReloadRefused { pid, exit, message });
                }
                (false, _, status::Reopen::Ok) => {
                    return Ok(format!("tandem (pid {pid}) reopened its logs"));
                }
                (false, _, status::Reopen::Failed(message)) => {
                    return Err(SignalError::ReopenFailed { pid, message });
                }
                _ => {}
            }
        }
        if !pidfile::is_held(held).map_err(io_status(pidfile))? {
            return Err(SignalError::ExitedDuringReload { pid, what });
        }
        if Instant::now() >= deadline {
            return Err(SignalError::NoVerdict {
                pid,
                what,
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
