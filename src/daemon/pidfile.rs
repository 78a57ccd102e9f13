//! The pidfile: written after the listeners are bound, locked for the life of
//! the process, removed on exit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    file: File,
}

impl Pidfile {
    /// Open and lock; fails if another live instance holds the lock. The pid
    /// is written later, with `write_pid`, once the listeners are bound.
    pub fn lock(path: &Path) -> io::Result<Pidfile> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("pidfile {}: {e}", path.display())))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "pidfile {} is locked: another tandem (pid {}) is running",
                    path.display(),
                    s.trim()
                ),
            ));
        }
        Ok(Pidfile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Record our pid (the daemon's, when called after daemonizing: the lock
    /// belongs to the open file, which the forked child shares).
    pub fn write_pid(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(io::SeekFrom::Start(0))?;
        writeln!(self.file, "{}", std::process::id())?;
        self.file.flush()
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            // After dropping privileges the directory may not be ours to
            // change: empty the file instead, so no stale pid is left in it.
            // (With `user`, the keeper from `spawn_remover` removes it.)
            let _ = self.file.set_len(0);
            crate::debug!(
                "could not remove pidfile {} ({e}); emptied it",
                self.path.display()
            );
        }
    }
}

/// The pid recorded in a pidfile.
pub fn read_pid(path: &Path) -> io::Result<i32> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("pidfile {}: {e}", path.display())))?;
    s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("pidfile {}: no pid in it", path.display()),
        )
    })
}

/// The pid of the running instance that holds `path`'s lock. A pidfile that
/// nobody holds locked is stale: its pid may belong to an unrelated process
/// by now, so it is never signalled.
pub fn running_pid(path: &Path) -> io::Result<i32> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("pidfile {}: {e}", path.display())))?;
    let pid = read_pid(path)?;
    // SAFETY: flock on a descriptor we own; a shared lock we get is released
    // when `file` is dropped.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no tandem is running; {} names pid {pid} but nobody holds its lock (a stale pidfile)",
                path.display()
            ),
        ));
    }
    Ok(pid)
}

/// Before dropping privileges: fork a tiny process that keeps root's right to
/// remove the pidfile from a directory the new user cannot write. It holds
/// nothing but the read end of a pipe. When the server is done it writes a
/// byte and waits for the keeper to remove the file and exit; if the server
/// dies instead, the pipe closes and the keeper removes the file all the same.
pub fn spawn_remover(path: &Path) -> io::Result<Remover> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("pidfile path contains NUL"))?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into a live array of two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: called while the process is still single-threaded (before any
    // worker starts), so the child may run ordinary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // Child: drop every descriptor but the pipe's read end (listeners,
        // the pidfile lock, logs), wait for a byte or EOF, remove the pidfile.
        // SAFETY: closing descriptors we own in this process; read into a
        // live byte; unlink a NUL-terminated path; _exit never returns.
        unsafe {
            // Signals meant for the server (also sent to its whole process
            // group or cgroup) must not end the keeper before the server.
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
                libc::signal(sig, libc::SIG_IGN);
            }
            for fd in 3..65536 {
                if fd != rd {
                    libc::close(fd);
                }
            }
            let mut b = 0u8;
            while libc::read(rd, &mut b as *mut u8 as *mut libc::c_void, 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
            libc::unlink(c.as_ptr());
            libc::_exit(0);
        }
    }
    // SAFETY: rd is ours to close; wr is a new fd we now own.
    unsafe { libc::close(rd) };
    Ok(Remover {
        // SAFETY: wr is a new fd owned by nobody else.
        fd: unsafe { OwnedFd::from_raw_fd(wr) },
        pid,
    })
}

/// The server's end of the pidfile keeper (see `spawn_remover`).
#[derive(Debug)]
pub struct Remover {
    fd: std::os::fd::OwnedFd,
    pid: libc::pid_t,
}

impl Drop for Remover {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let b = 1u8;
        let mut status = 0;
        // SAFETY: writes one byte from a live u8 to our pipe; waitpid on our
        // own child with a live status int.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &b as *const u8 as *const libc::c_void,
                1,
            );
            while libc::waitpid(self.pid, &mut status, 0) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
        }
    }
}
