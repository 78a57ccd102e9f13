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
        let _ = std::fs::remove_file(&self.path);
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
