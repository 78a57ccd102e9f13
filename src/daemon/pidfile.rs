//! The pidfile: written after the listeners are bound, locked for the life of
//! the process, removed on exit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::syscall;

/// Why the pidfile cannot be taken, written or used to find tandem.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// `-s` found no pidfile: the server is not running (it removes the
    /// file when it stops), or was started with another pidfile.
    #[error("no tandem is running (pidfile {} does not exist)", path.display())]
    NotRunning { path: PathBuf },
    #[error("pidfile {}: {}", path.display(), crate::sys::bare(source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another instance holds the lock; `pid` is what the file says, if
    /// it could be read.
    #[error(
        "pidfile {} is locked: another tandem (pid {}) is running",
        path.display(),
        pid.as_deref().unwrap_or("unknown")
    )]
    Locked { path: PathBuf, pid: Option<String> },
    /// Nobody holds the lock: whatever pid the file names may belong to an
    /// unrelated process by now. `content` is the file's text, trimmed.
    #[error(
        "no tandem is running; {}{}, but nobody holds its lock (a stale pidfile): nothing was signalled",
        path.display(),
        stale_content(content)
    )]
    Stale { path: PathBuf, content: String },
    /// Locked by an instance that has not written its pid yet.
    #[error("pidfile {}: tandem is starting (no pid in it yet); try again", path.display())]
    Starting { path: PathBuf },
    /// Locked, but the text in it is not a pid.
    #[error("pidfile {}: it holds {content:?}, not a pid", path.display())]
    NotAPid { path: PathBuf, content: String },
}

/// Is `text` the pid of a process that exists now (or not a pid at all,
/// which the message then shows as it is)?
fn names_a_process(text: &str) -> bool {
    match text.parse::<u32>() {
        Ok(pid) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

fn stale_content(content: &str) -> String {
    match content.parse::<i32>() {
        Ok(pid) => format!(" names pid {pid}"),
        Err(_) if content.is_empty() => " is empty".to_string(),
        Err(_) => format!(" holds {content:?}, not a pid"),
    }
}

#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    file: File,
}

impl Pidfile {
    /// Open and lock; fails if another live instance holds the lock. The pid
    /// is written later, with `write_pid`, once the listeners are bound.
    pub fn lock(path: &Path) -> Result<Pidfile, PidfileError> {
        let io_err = |source| PidfileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        if !try_lock(&file).map_err(io_err)? {
            // The pid is only for the message: if it cannot be read, the
            // message says so instead. A holder that is starting has not
            // emptied the file yet: what it holds then is a dead run's pid,
            // which is not named.
            let mut s = String::new();
            let pid = match file.read_to_string(&mut s) {
                Ok(_) if !s.trim().is_empty() && names_a_process(s.trim()) => {
                    Some(s.trim().to_string())
                }
                _ => None,
            };
            return Err(PidfileError::Locked {
                path: path.to_path_buf(),
                pid,
            });
        }
        // Whatever an earlier run left in it is not our pid: until we write
        // ours, the file says nothing, so `-s` cannot signal a stranger.
        file.set_len(0).map_err(io_err)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Record our pid (the daemon's, when called after daemonizing: the lock
    /// belongs to the open file, which the forked child shares).
    pub fn write_pid(&mut self) -> Result<(), PidfileError> {
        let res = (|| {
            self.file.set_len(0)?;
            self.file.seek(io::SeekFrom::Start(0))?;
            writeln!(self.file, "{}", std::process::id())?;
            self.file.flush()
        })();
        res.map_err(|source| PidfileError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            // After dropping privileges the directory may not be ours to
            // change: empty the file instead, so no stale pid is left in it.
            // (With `user`, the keeper from `spawn_remover` removes it.)
            match self.file.set_len(0) {
                Ok(()) => crate::debug!(
                    "could not remove pidfile {} ({e}); emptied it",
                    self.path.display()
                ),
                // Harmless for `-s` (nobody holds the lock once we exit, so
                // the pid is never signalled), but worth a line.
                Err(e2) => crate::warn!(
                    "could not remove pidfile {} ({e}) nor empty it ({e2})",
                    self.path.display()
                ),
            }
        }
    }
}

/// One open-file-description lock call on the whole file: `cmd` is
/// F_OFD_SETLK (take or drop, at once), F_OFD_SETLKW (take, waiting) or
/// F_OFD_GETLK (look), `kind` F_WRLCK, F_RDLCK or F_UNLCK. OFD locks belong
/// to the open file (shared with a daemonized child, like flock), and
/// unlike flock they can be tested without being taken.
pub(super) fn ofd(file: &File, cmd: libc::c_int, kind: libc::c_int) -> io::Result<libc::flock> {
    // SAFETY: libc::flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = 0, l_len = 0: the whole file; l_pid must be 0 for OFD locks.
    // SAFETY: fcntl on a descriptor we own with a pointer to a live flock.
    syscall!(unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) })?;
    Ok(fl)
}

/// Take the pidfile's lock (a write lock on the whole file); false if
/// another open file holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    match ofd(file, libc::F_OFD_SETLK, libc::F_WRLCK) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pid of the running instance that holds `path`'s lock. A pidfile that
/// nobody holds locked is stale: its pid may belong to an unrelated process
/// by now, so it is never signalled.
#[cfg(test)]
fn running_pid(path: &Path) -> Result<i32, PidfileError> {
    open_running(path).map(|(pid, _)| pid)
}

/// Is the lock of this open pidfile held (by the server)? Looks only: never
/// takes it, so a tandem starting at this moment is not turned away. The
/// lock belongs to the file, not its name: this still answers after the
/// server removed the name, until the server has closed it (at its very end).
pub fn is_held(file: &File) -> io::Result<bool> {
    Ok(ofd(file, libc::F_OFD_GETLK, libc::F_WRLCK)?.l_type != libc::F_UNLCK as libc::c_short)
}

/// The pid of the running instance that holds `path`'s lock, and the
/// pidfile still open, to watch its lock with `is_held` (`-s stop` waits
/// for the server to let go of it). A pidfile that nobody holds locked is
/// stale: its pid may belong to an unrelated process by now, so it is never
/// signalled.
pub fn open_running(path: &Path) -> Result<(i32, File), PidfileError> {
    let io_err = |source| PidfileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PidfileError::NotRunning {
            path: path.to_path_buf(),
        },
        _ => io_err(e),
    })?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err)?;
    let text = text.trim();
    if !is_held(&file).map_err(io_err)? {
        return Err(PidfileError::Stale {
            path: path.to_path_buf(),
            content: text.to_string(),
        });
    }
    if text.is_empty() {
        return Err(PidfileError::Starting {
            path: path.to_path_buf(),
        });
    }
    let pid = text.parse().map_err(|_| PidfileError::NotAPid {
        path: path.to_path_buf(),
        content: text.to_string(),
    })?;
    Ok((pid, file))
}

/// Before dropping privileges: fork a tiny process that keeps root's right to
/// remove the pidfile from a directory the new user cannot write. It holds
/// nothing but the read end of a pipe. When the server is done it writes a
/// byte and waits for the keeper to remove the file and exit; if the server
/// dies instead, the pipe closes and the keeper removes the file all the same.
///
/// # Safety
///
/// The process must have one thread: the keeper runs ordinary code
/// (allocation, the error log) after `fork`, which is sound only when no
/// other thread could have held a lock the child then waits on forever.
pub unsafe fn spawn_remover(paths: &[&Path]) -> io::Result<Remover> {
    let cs = paths
        .iter()
        .map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| io::Error::other("pidfile path contains NUL"))?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into a live array of two.
    syscall!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new fds owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (this function's contract), so the
    // child may run ordinary code after fork.
    let pid = syscall!(unsafe { libc::fork() })?;
    if pid == 0 {
        // Child: drop every descriptor but the pipe's read end (listeners,
        // the pidfile lock, logs), wait for a byte or EOF, remove the pidfile.
        // It never returns, so no destructor runs here for the descriptors it
        // closes by number.
        let rd = rd.as_raw_fd();
        // SAFETY: this is the child just forked, with one thread; it never
        // returns to the server's code, which owns the descriptors it closes.
        unsafe { crate::sys::become_helper(rd) };
        let mut b = 0u8;
        loop {
            // SAFETY: reads at most one byte into a live u8.
            match syscall!(unsafe { libc::read(rd, &mut b as *mut u8 as *mut libc::c_void, 1) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A byte, EOF (the server is gone) or an error: remove it now.
                _ => break,
            }
        }
        for (c, path) in cs.iter().zip(paths) {
            // SAFETY: unlink reads a NUL-terminated path that outlives the call.
            if let Err(e) = syscall!(unsafe { libc::unlink(c.as_ptr()) })
                && e.kind() != io::ErrorKind::NotFound
            {
                // NotFound is the usual case: the server removed it itself. The
                // error log's file is closed here, so this goes to stderr.
                crate::error!("pidfile keeper: cannot remove {}: {e}", path.display());
            }
        }
        // SAFETY: _exit ends this process without running anything else.
        unsafe { libc::_exit(0) };
    }
    drop(rd);
    Ok(Remover { fd: Some(wr), pid })
}

/// The server's end of the pidfile keeper (see `spawn_remover`).
#[derive(Debug)]
pub struct Remover {
    /// The pipe's write end; closed (which wakes the keeper too) before the
    /// keeper is waited for.
    fd: Option<OwnedFd>,
    pid: libc::pid_t,
}

impl Drop for Remover {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            let b = 1u8;
            // SAFETY: writes one byte from a live u8 to our pipe.
            let sent = syscall!(unsafe {
                libc::write(fd.as_raw_fd(), &b as *const u8 as *const libc::c_void, 1)
            });
            if let Err(e) = sent {
                // Not fatal: closing the pipe (just below) wakes it as well;
                // EPIPE means it is gone already.
                crate::debug!("pidfile keeper (pid {}): {e}", self.pid);
            }
        }
        if let Err(e) = crate::sys::reap(self.pid) {
            crate::warn!("pidfile keeper (pid {}): {e}", self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_pid_is_never_reported_as_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pid");
        // A pid left by an earlier run (or anybody), with nobody holding the lock.
        std::fs::write(&path, "4242\n").unwrap();
        let e = running_pid(&path).unwrap_err();
        assert!(
            matches!(&e, PidfileError::Stale { content, .. } if content == "4242"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "no tandem is running; {} names pid 4242, but nobody holds its lock \
                 (a stale pidfile): nothing was signalled",
                path.display()
            )
        );
        // Locked by a starting instance that has not written its pid yet: the
        // old pid is gone at once, and `-s` is told to try again.
        let mut p = Pidfile::lock(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let e = running_pid(&path).unwrap_err();
        assert!(matches!(e, PidfileError::Starting { .. }), "{e:?}");
        // Looking did not take the lock: a second instance is still refused,
        // and the running one is found once its pid is written.
        let e = Pidfile::lock(&path).unwrap_err();
        assert!(
            matches!(&e, PidfileError::Locked { pid: None, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("another tandem (pid unknown)"),
            "{e}"
        );
        // Locked, but not a pid in it: said so, never parsed into one.
        std::fs::write(&path, "abc\n").unwrap();
        let e = running_pid(&path).unwrap_err();
        assert!(
            matches!(&e, PidfileError::NotAPid { content, .. } if content == "abc"),
            "{e:?}"
        );
        p.write_pid().unwrap();
        assert_eq!(running_pid(&path).unwrap(), std::process::id() as i32);
        let e = Pidfile::lock(&path).unwrap_err();
        let me = std::process::id().to_string();
        assert!(
            matches!(&e, PidfileError::Locked { pid: Some(p), .. } if *p == me),
            "{e:?}"
        );
        drop(p);
        let e = running_pid(&path).unwrap_err();
        assert!(matches!(e, PidfileError::NotRunning { .. }), "{e:?}");
    }
}
