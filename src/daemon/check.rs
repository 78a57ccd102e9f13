//! What a start checks before it binds, shared by `tandem -t`, the start
//! itself and every reload, so that `-t` and a start always agree.
//!
//! - `root` exists, is a directory, and the user tandem serves as can read
//!   and search it.
//! - `user` and `group` exist.
//! - The directories of `access_log` and `error_log` exist, and whoever
//!   opens the logs can write them: the starting user (root, when it drops
//!   privileges: the logs it starts with are opened, and reopened after a
//!   rotation or a reload, by a helper that keeps root's rights, see
//!   `opener`), or at a reload, for a log path it was not started with,
//!   the user it runs as.
//! - The `pidfile`'s directory exists and the starting user can write it
//!   (the pidfile is written before privileges are dropped, and removed by a
//!   helper that keeps root's rights, so root's rights are what count).
//! - `daemon = true` has somewhere to log: not stderr, which it loses.
//!
//! Checking as another user: when tandem starts as root with `user`, the
//! files are checked as that user with the exact credentials the server
//! will have after `privs::drop_to` (its uid, its gid, its groups), by a
//! forked child that takes them and asks `faccessat(AT_EACCESS)`. The
//! kernel then applies every rule it will apply to the server (ACLs, a
//! read-only mount, search permission on each directory of the path), which
//! reading mode bits and owners by hand would get wrong in the corners.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, LogTarget, MAX_ERRORS, Source, more_line};
use crate::syscall;

use super::privs;

/// Where a value came from, to point at it in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (`--root`).
    Flag(&'static str),
    /// A config file: `FILE:LINE`, or `FILE` when it leaves the key out.
    File(String),
    /// Built-in default, no config file.
    Default,
}

/// Where each key's value came from: the config file (and its lines), or
/// the command-line flags that override it.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub(super) source: Option<Source>,
    /// (key, flag) for each key a flag sets.
    pub(super) flags: Vec<(&'static str, &'static str)>,
}

impl Origins {
    pub fn of(&self, key: &str) -> Origin {
        if let Some((_, flag)) = self.flags.iter().find(|(k, _)| *k == key) {
            return Origin::Flag(flag);
        }
        match &self.source {
            Some(s) => Origin::File(s.at(key)),
            None => Origin::Default,
        }
    }

    /// The config file's name, or "built-in defaults".
    pub fn name(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "built-in defaults".to_string(), |s| s.path.clone())
    }
}

/// One reason a config cannot run, shown as `ORIGIN: key: problem`, e.g.
/// `t.toml:3: root: /nope does not exist`.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{problem}")]
pub struct Found {
    pub origin: Origin,
    pub problem: Problem,
}

/// Why a config cannot run: exit 2 at `-t` and at start, a refused reload.
/// Every problem the checks found (at most `MAX_ERRORS`), in the order of
/// the checks; shown `; `-separated on one line (a log line, a reload's
/// verdict), or one a line with `each`.
#[derive(Debug)]
pub struct CheckError {
    pub found: Vec<Found>,
}

impl CheckError {
    /// Each problem, one a line.
    pub fn each(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .found
            .iter()
            .take(MAX_ERRORS)
            .map(|f| f.to_string())
            .collect();
        v.extend(more_line(self.found.len().saturating_sub(MAX_ERRORS)));
        v
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.each().join("; "))
    }
}

impl std::error::Error for CheckError {}

/// `ORIGIN: ` to put before a message about the key, or nothing for a
/// built-in default.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag}: "),
            Origin::File(at) => write!(f, "{at}: "),
            Origin::Default => Ok(()),
        }
    }
}

/// Who a path is checked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// This process, as it is.
    Me,
    /// The user tandem drops to (started as root with `user`).
    User { name: String, ids: privs::Ids },
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Me => {
                // SAFETY: geteuid has no preconditions.
                let uid = unsafe { libc::geteuid() };
                write!(f, "uid {uid} (the user running tandem)")
            }
            Who::User { name, .. } => write!(f, "user {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("root: {} does not exist", .0.display())]
    RootMissing(PathBuf),
    #[error("root: {} is not a directory", .0.display())]
    RootNotDirectory(PathBuf),
    #[error("root: {}: {}", path.display(), crate::sys::bare(source))]
    RootUnusable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("root: {} cannot be read by {who} ({})", path.display(), crate::sys::bare(source))]
    RootUnreadable {
        path: PathBuf,
        who: Who,
        #[source]
        source: io::Error,
    },
    #[error("user: there is no user {0:?} on this system")]
    UnknownUser(String),
    #[error("user: cannot list the groups of user {0:?}: {1}")]
    UserGroups(String, String),
    #[error("group: there is no group {0:?} on this system")]
    UnknownGroup(String),
    #[error("{key}: directory {} does not exist", dir.display())]
    NoDirectory { key: &'static str, dir: PathBuf },
    #[error("{key}: {} is a directory, not a file: name a file in it (like {})", path.display(), path.join(file).display())]
    IsDirectory {
        key: &'static str,
        path: PathBuf,
        file: &'static str,
    },
    /// Logs and the pidfile are opened by whoever starts tandem (a log
    /// reopened later, by the helper that keeps its rights).
    #[error("{key}: {} cannot be written by {} ({})", path.display(), Who::Me, crate::sys::bare(source))]
    NotWritable {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tls_certificates: {0}")]
    Tls(#[source] crate::tls::CertError),
    #[error(
        "daemon: {log} is \"stderr\", which a daemon does not have: set {log} to a file \
         (--{} FILE, or {log} = \"/var/log/tandem/{file}\" in the config) or \"off\", or run \
         in the foreground", log.replace('_', "-")
    )]
    DaemonStderr {
        log: &'static str,
        file: &'static str,
    },
}

/// What is checked: a start (and `-t`) checks everything; a reload what a
/// reload can change (the pidfile, `user`, `group` and `daemon` take effect
/// on restart only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Start,
    Reload,
}

/// What the checks found that a start needs.
#[derive(Debug, Default)]
pub struct Checked {
    /// The user to drop to, when started as root with `user`.
    pub drop_to: Option<privs::Ids>,
    /// Log files that do not exist yet: created at start (as root, when
    /// started as root) and then given to the user tandem drops to.
    pub new_logs: Vec<PathBuf>,
    /// The TLS settings built from `tls_certificates` (when `tls_listen` is set).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Run the checks. `Err` has every problem found, each naming its key and
/// where it was set: a problem does not hide the next (a missing root and
/// three missing log and pidfile directories are four lines, not one).
pub fn preflight(cfg: &Config, origins: &Origins, stage: Stage) -> Result<Checked, CheckError> {
    let mut found = Vec::new();
    let out = checks(cfg, stage, &mut |key: &str, problem: Problem| {
        found.push(Found {
            origin: origins.of(key),
            problem,
        })
    });
    if found.is_empty() {
        Ok(out)
    } else {
        Err(CheckError { found })
    }
}

/// How a check reports a problem: with the key it is about.
type Fail<'a> = dyn FnMut(&str, Problem) + 'a;

/// The checks of `preflight`, each problem told to `fail` (with its key).
fn checks(cfg: &Config, stage: Stage, fail: &mut Fail) -> Checked {
    let mut out = Checked::default();
    if stage == Stage::Start && cfg.daemon {
        check_daemon_logs(cfg, fail);
    }
    // Who serves: the user dropped to, or whoever runs this.
    let mut who = Who::Me;
    if stage == Stage::Start
        && let Some((user, ids)) = check_user_group(cfg, fail)
    {
        who = Who::User {
            name: user.clone(),
            ids: ids.clone(),
        };
        out.drop_to = Some(ids);
    }
    check_root(cfg, &who, fail);
    check_logs(cfg, stage, &mut out, fail);
    check_tls(cfg, &mut out, fail);
    if stage == Stage::Start
        && let Some(p) = &cfg.pidfile
    {
        check_pidfile(p, fail);
    }
    out
}

/// A daemon has no stderr: neither log may be "stderr".
fn check_daemon_logs(cfg: &Config, fail: &mut Fail) {
    for (log, target, file) in [
        ("error_log", &cfg.error_log, "error.log"),
        ("access_log", &cfg.access_log, "access.log"),
    ] {
        if *target == LogTarget::Stderr {
            fail("daemon", Problem::DaemonStderr { log, file });
        }
    }
}

/// `user` and `group` exist. `Some((user, uid, gid))`: the user tandem
/// drops to, when started as root with `user`.
fn check_user_group<'c>(cfg: &'c Config, fail: &mut Fail) -> Option<(&'c String, privs::Ids)> {
    let group = |g: &String, fail: &mut Fail| {
        privs::lookup_group(g)
            .map_err(|_| fail("group", Problem::UnknownGroup(g.clone())))
            .ok()
    };
    if let Some(user) = &cfg.user {
        let ids = privs::lookup_user(user)
            .map_err(|_| fail("user", Problem::UnknownUser(user.clone())))
            .ok();
        let gid = match &cfg.group {
            Some(g) => group(g, fail),
            None => ids.map(|(_, gid)| gid),
        };
        if let (Some((uid, _)), Some(gid)) = (ids, gid)
            && privs::is_root()
        {
            match privs::Ids::of(user, uid, gid) {
                Ok(ids) => return Some((user, ids)),
                Err(e) => fail("user", Problem::UserGroups(user.clone(), e.to_string())),
            }
        }
    } else if let Some(g) = &cfg.group {
        group(g, fail);
    }
    None
}

/// root: there, a directory, readable and searchable by who serves.
fn check_root(cfg: &Config, who: &Who, fail: &mut Fail) {
    let root = absolute(&cfg.root);
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => {
            if let Some(Err(source)) = access(who, &[(&root, libc::R_OK | libc::X_OK)])
                .into_iter()
                .next()
            {
                let who = who.clone();
                fail(
                    "root",
                    Problem::RootUnreadable {
                        path: root,
                        who,
                        source,
                    },
                );
            }
        }
        Ok(_) => fail("root", Problem::RootNotDirectory(root)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fail("root", Problem::RootMissing(root)),
        Err(source) => fail("root", Problem::RootUnusable { path: root, source }),
    }
}

/// Logs: writable by who serves (and, first, by whoever opens them now).
/// The ones that will be created are added to `out.new_logs`.
fn check_logs(cfg: &Config, stage: Stage, out: &mut Checked, fail: &mut Fail) {
    for (key, target) in [
        ("error_log", &cfg.error_log),
        ("access_log", &cfg.access_log),
    ] {
        let LogTarget::File(p) = target else { continue };
        let p = absolute(p);
        let (path, mode, created) = match writable_target(key, &p) {
            Ok(t) => t,
            Err(problem) => {
                fail(key, problem);
                continue;
            }
        };
        // Logs tandem starts with are opened as the starting user, and
        // reopened by the helper that keeps its rights: `who` does not
        // matter for them, nor at a reload for the ones the helper opens.
        if stage == Stage::Reload && crate::log::opened_privileged(&p) {
            continue;
        }
        if let Some(Err(source)) = access(&Who::Me, &[(&path, mode)]).into_iter().next() {
            fail(key, Problem::NotWritable { key, path, source });
        } else if created && !out.new_logs.contains(&p) {
            out.new_logs.push(p);
        }
    }
}

/// Certificates: readable, each key matching its certificate, within
/// their validity (a warning when one ends within 14 days). The TLS
/// settings they make go to `out.tls`.
fn check_tls(cfg: &Config, out: &mut Checked, fail: &mut Fail) {
    if cfg.tls_listen.is_empty() {
        return;
    }
    let pairs: Vec<_> = cfg
        .tls_certificates
        .iter()
        .map(|c| crate::tls::CertFiles {
            cert: absolute(&c.cert),
            key: absolute(&c.key),
        })
        .collect();
    // After privileges were dropped, the files the server started with are
    // read through the privileged opener (as root, as at start).
    let read = |p: &Path| crate::log::read_privileged(p);
    match crate::tls::server_config(&pairs, std::time::SystemTime::now(), &read, cfg.http2) {
        Ok((tls, warnings)) => {
            for w in warnings {
                crate::warn!("tls_certificates: {w}");
            }
            out.tls = Some(tls);
        }
        Err(e) => fail("tls_certificates", Problem::Tls(e)),
    }
}

/// The pidfile: written now, by whoever starts tandem.
fn check_pidfile(p: &Path, fail: &mut Fail) {
    let p = absolute(p);
    // The pidfile, and the reload status file next to it, are created
    // in its directory: the directory itself must be writable.
    let dir = parent_dir(&p);
    match writable_target("pidfile", &p) {
        Err(problem) => fail("pidfile", problem),
        Ok((path, mode, _)) => {
            let mut checks = vec![(path.as_path(), mode)];
            if path != dir {
                checks.push((dir.as_path(), libc::W_OK | libc::X_OK));
            }
            // The first refusal: the directory's follows from the file's.
            if let Some((Err(source), (path, _))) = access(&Who::Me, &checks)
                .into_iter()
                .zip(&checks)
                .find(|(r, _)| r.is_err())
            {
                let (key, path) = ("pidfile", path.to_path_buf());
                fail(key, Problem::NotWritable { key, path, source });
            }
        }
    }
}

/// The path relative to the working directory made absolute (not
/// resolved: a `root` that is a symlink stays one, and is followed again on
/// every reload).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What must be writable to open `p` for writing: the file if it exists,
/// else its directory (to create it). `(path, access mode, will be created)`.
/// A directory is no file to write, whoever may write in it: said so, not
/// blamed on permissions.
fn writable_target(key: &'static str, p: &Path) -> Result<(PathBuf, i32, bool), Problem> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            let file = match key {
                "error_log" => "error.log",
                "access_log" => "access.log",
                _ => "tandem.pid",
            };
            let path = p.to_path_buf();
            Err(Problem::IsDirectory { key, path, file })
        }
        Ok(_) => Ok((p.to_path_buf(), libc::W_OK, false)),
        Err(_) => {
            let dir = parent_dir(p);
            if !dir.is_dir() {
                return Err(Problem::NoDirectory { key, dir });
            }
            Ok((dir, libc::W_OK | libc::X_OK, true))
        }
    }
}

/// `faccessat(AT_EACCESS)` for each (path, mode), as `who`.
fn access(who: &Who, checks: &[(&Path, i32)]) -> Vec<io::Result<()>> {
    let paths: Vec<CString> = checks
        .iter()
        .map(|(p, _)| CString::new(p.as_os_str().as_bytes()).unwrap_or_default())
        .collect();
    let one = |c: &CString, mode: i32| -> io::Result<()> {
        // SAFETY: faccessat reads a NUL-terminated path that outlives the call.
        syscall!(unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) })
            .map(drop)
    };
    match who {
        Who::Me => paths
            .iter()
            .zip(checks)
            .map(|(c, (_, mode))| one(c, *mode))
            .collect(),
        Who::User { ids, .. } => match access_as(ids, &paths, checks) {
            Ok(v) => v,
            // No child to check with (fork failed): say so on each check
            // rather than pass a check that did not happen.
            Err(e) => checks
                .iter()
                .map(|_| Err(io::Error::new(e.kind(), format!("cannot check: {e}"))))
                .collect(),
        },
    }
}

/// The checks of `access`, in a forked child that has taken the ids the
/// server will have after `privs::drop_to`. The child writes one byte per
/// check to a pipe: 0 for allowed, else the errno.
fn access_as(
    ids: &privs::Ids,
    paths: &[CString],
    checks: &[(&Path, i32)],
) -> io::Result<Vec<io::Result<()>>> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into a live array of two.
    syscall!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child only makes raw system calls (no allocation, no
    // locks) and leaves with _exit, so forking is sound even if other
    // threads exist.
    let pid = match syscall!(unsafe { libc::fork() }) {
        Ok(p) => p,
        Err(e) => {
            // SAFETY: both fds are ours and closed once.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
            return Err(e);
        }
    };
    if pid == 0 {
        check_in_child(ids, paths, checks, wr);
    }
    // SAFETY: the write end is ours; the child has its own copy.
    unsafe { libc::close(wr) };
    let (got, n) = read_answers(rd, checks.len());
    // SAFETY: rd is ours, closed once.
    unsafe { libc::close(rd) };
    reap(pid);
    if n < got.len() {
        return Err(io::Error::other("the checking process ended early"));
    }
    Ok(got
        .into_iter()
        .map(|b| match b {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e.into())),
        })
        .collect())
}

/// The child of `access_as`: take the ids, run each check, write its byte
/// to `wr`, and `_exit`. Only raw system calls: no allocation, no locks.
fn check_in_child(ids: &privs::Ids, paths: &[CString], checks: &[(&Path, i32)], wr: RawFd) -> ! {
    // Raw system calls: they change only this (single) thread's
    // credentials, with no libc bookkeeping behind them.
    let (uid, gid) = (ids.uid, ids.gid);
    // SAFETY: plain ids; setgroups reads `groups.len()` gids from a vector
    // made before the fork (nothing is allocated here).
    let ok = unsafe {
        libc::syscall(libc::SYS_setgroups, ids.groups.len(), ids.groups.as_ptr()) == 0
            && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
            && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
    };
    for (c, (_, mode)) in paths.iter().zip(checks) {
        let b: u8 = if !ok {
            libc::EPERM as u8
        } else {
            // SAFETY: faccessat reads a NUL-terminated path prepared
            // before the fork.
            match unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), *mode, libc::AT_EACCESS) } {
                0 => 0,
                // errno, read right after the call (no allocation).
                _ => io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EACCES)
                    .clamp(1, 255) as u8,
            }
        };
        // SAFETY: writes one byte from a live u8 to our pipe.
        unsafe { libc::write(wr, &b as *const u8 as *const libc::c_void, 1) };
    }
    // SAFETY: _exit ends the child without running anything else.
    unsafe { libc::_exit(0) }
}

/// The child's answers: up to `len` bytes from `rd`, until it closes its
/// end. `(bytes, how many were read)`.
fn read_answers(rd: RawFd, len: usize) -> (Vec<u8>, usize) {
    let mut got = vec![0u8; len];
    let mut n = 0;
    while n < got.len() {
        // SAFETY: reads into the unfilled tail of a live buffer.
        let r = unsafe {
            libc::read(
                rd,
                got[n..].as_mut_ptr() as *mut libc::c_void,
                got.len() - n,
            )
        };
        match syscall!(r) {
            Ok(0) => break,
            Ok(k) => n += k as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (got, n)
}

/// Wait for the checking child to end.
fn reap(pid: libc::pid_t) {
    // Ignored on purpose: the answers are read already; only ECHILD can come.
    let _ = crate::sys::reap(pid);
}

/// After the logs were opened as root: give the ones just created to the
/// user tandem drops to, so that a reload or a reopen (as that user) can
/// open them again.
pub fn chown_new_logs(checked: &Checked) -> io::Result<()> {
    let Some(privs::Ids { uid, gid, .. }) = checked.drop_to else {
        return Ok(());
    };
    for p in &checked.new_logs {
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("log path contains NUL"))?;
        // SAFETY: chown reads a NUL-terminated path that outlives the call.
        syscall!(unsafe { libc::chown(c.as_ptr(), uid, gid) })
            .map_err(|e| io::Error::new(e.kind(), format!("{}: chown: {e}", p.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn root_problems_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let o = Origins::default();
        let missing = dir.path().join("nope");
        let c = cfg(&format!("root = {:?}", missing.display().to_string()));
        let e = preflight(&c, &o, Stage::Start).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("root: {} does not exist", missing.display())
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let c = cfg(&format!("root = {:?}", file.display().to_string()));
        let e = preflight(&c, &o, Stage::Start).unwrap_err();
        assert!(
            matches!(e.found[0].problem, Problem::RootNotDirectory(_)),
            "{e}"
        );
        let c = cfg(&format!(
            "root = {:?}\naccess_log = {:?}",
            dir.path().display().to_string(),
            missing.join("a.log").display().to_string()
        ));
        let e = preflight(&c, &o, Stage::Start).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("access_log: directory {} does not exist", missing.display())
        );
        // Flags are blamed by name.
        let o = Origins {
            source: None,
            flags: vec![("access_log", "--access-log-test")],
        };
        let e = preflight(&c, &o, Stage::Start).unwrap_err();
        assert!(
            e.to_string().starts_with("--access-log-test: access_log: "),
            "{e}"
        );
    }

    #[test]
    fn daemon_needs_logs_that_are_not_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&format!(
            "daemon = true\nroot = {:?}\nerror_log = \"off\"",
            dir.path().display().to_string()
        ));
        let e = preflight(&c, &Origins::default(), Stage::Start).unwrap_err();
        assert!(
            matches!(
                e.found[0].problem,
                Problem::DaemonStderr {
                    log: "access_log",
                    ..
                }
            ),
            "{e}"
        );
        // A reload never checks it (daemon takes effect on restart only).
        assert!(preflight(&c, &Origins::default(), Stage::Reload).is_ok());
    }
}
