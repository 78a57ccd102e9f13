//! The reload and reopen verdicts: how `tandem -s reload` learns whether
//! the reload it asked for took effect, and `tandem -s reopen` whether
//! every log was reopened, and if not, why.
//!
//! The server keeps a small status file next to its pidfile
//! (`tandem.pid.reload`), opened when the pidfile is taken (before
//! privileges are dropped, so it works in a root-owned directory; the
//! pidfile keeper removes it with the pidfile). It holds one record:
//!
//! ```text
//! generation 3
//! state refused
//! exit 1
//! message listen 127.0.0.1:8081: address already in use (...)
//! reopen 5
//! reopen_state failed
//! reopen_message access_log /var/log/tandem/access.log: Permission denied
//! ```
//!
//! The server numbers its reloads. It writes `reloading` with the next
//! number *before* it reads the config, and `reloaded` or `refused` with
//! the same number when it is done. A client reads the record, sends
//! SIGHUP, and waits for a finished record with a higher number. That
//! record's reload read the config after the client read the record
//! (whatever the client wrote before is in it), even when reloads overlap:
//! if one was under way at the client's first read, its number is not
//! higher, and the client's signal (arriving after that reload took its
//! flag) starts another.
//!
//! Log reopens (SIGUSR1, and the one every SIGHUP does) are numbered the
//! same way in their own count (`reopen`, `pending` then `ok` or `failed`),
//! so `-s reopen` waits for a reopen that began after it sent its signal,
//! whatever reloads happen meanwhile.
//!
//! Writers and readers take an open-file-description lock on the status
//! file (write and read lock) around each write and read, so a reader never
//! sees half a record. Why not the alternatives: the error log may be
//! stderr or off, and its lines are for people; a control socket is more
//! machinery than one verdict needs; signals carry no answer back.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `PIDFILE.reload`, next to the pidfile.
pub fn path_for(pidfile: &Path) -> PathBuf {
    let mut s = pidfile.as_os_str().to_os_string();
    s.push(".reload");
    PathBuf::from(s)
}

/// What the server is doing, as far as reloads go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Started; no reload yet (generation 0).
    Running,
    /// A reload is under way.
    Reloading,
    /// The reload took effect; the summary the server logged.
    Reloaded(String),
    /// The reload was refused and the running config stays: the exit code
    /// it means (2 for a config error, 1 for anything else) and why.
    Refused { exit: i32, message: String },
}

impl State {
    /// Finished: `Reloaded` or `Refused`.
    #[cfg(test)]
    pub fn is_verdict(&self) -> bool {
        matches!(self, State::Reloaded(_) | State::Refused { .. })
    }
}

/// Where the logs are, as far as reopening goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reopen {
    /// No reopen yet (count 0).
    #[default]
    None,
    /// A reopen is under way.
    Pending,
    /// Every log was reopened.
    Ok,
    /// These logs were not (each keeps the file it had): why.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub state: State,
    /// The number of the last log reopen, and how it went.
    pub reopen: u64,
    pub reopen_state: Reopen,
}

impl Record {
    fn render(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        let (state, exit, message) = match &self.state {
            State::Running => ("running", 0, String::new()),
            State::Reloading => ("reloading", 0, String::new()),
            State::Reloaded(m) => ("reloaded", 0, one_line(m)),
            State::Refused { exit, message } => ("refused", *exit, one_line(message)),
        };
        let (reopen, reopen_message) = match &self.reopen_state {
            Reopen::None => ("none", String::new()),
            Reopen::Pending => ("pending", String::new()),
            Reopen::Ok => ("ok", String::new()),
            Reopen::Failed(m) => ("failed", one_line(m)),
        };
        format!(
            "generation {}\nstate {state}\nexit {exit}\nmessage {message}\n\
             reopen {}\nreopen_state {reopen}\nreopen_message {reopen_message}\n",
            self.generation, self.reopen
        )
    }

    fn parse(text: &str) -> Option<Record> {
        let mut generation = None;
        let mut state = None;
        let mut exit = 0;
        let mut message = String::new();
        let (mut reopen, mut reopen_state, mut reopen_message) = (0, "none", "");
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "generation" => generation = v.parse().ok(),
                "state" => state = Some(v.to_string()),
                "exit" => exit = v.parse().ok()?,
                "message" => message = v.to_string(),
                "reopen" => reopen = v.parse().ok()?,
                "reopen_state" => reopen_state = v,
                "reopen_message" => reopen_message = v,
                _ => {}
            }
        }
        let state = match state?.as_str() {
            "running" => State::Running,
            "reloading" => State::Reloading,
            "reloaded" => State::Reloaded(message),
            "refused" => State::Refused { exit, message },
            _ => return None,
        };
        let reopen_state = match reopen_state {
            "none" => Reopen::None,
            "pending" => Reopen::Pending,
            "ok" => Reopen::Ok,
            "failed" => Reopen::Failed(reopen_message.to_string()),
            _ => return None,
        };
        Some(Record {
            generation: generation?,
            state,
            reopen,
            reopen_state,
        })
    }
}

/// Take (`F_RDLCK`, waiting: the client) or drop (`F_UNLCK`) an
/// open-file-description lock on the whole file.
fn ofd_lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    let cmd = if kind == libc::F_UNLCK {
        libc::F_OFD_SETLK
    } else {
        libc::F_OFD_SETLKW
    };
    loop {
        match super::pidfile::ofd(file, cmd, kind) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How long the server waits for readers to let go before it writes.
const WRITE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Take the write lock without blocking, trying again for up to `wait`.
/// `false`: a reader kept its lock that long.
fn write_lock_within(file: &File, wait: std::time::Duration) -> io::Result<bool> {
    let until = std::time::Instant::now() + wait;
    loop {
        match super::pidfile::ofd(file, libc::F_OFD_SETLK, libc::F_WRLCK) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                crate::warn!("status file: a reader held its lock for {wait:?}; written unlocked");
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The server's side: the open status file and its reload count.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    file: File,
    /// The record as last written.
    record: Record,
}

impl StatusFile {
    /// Create (or take over) the status file and record `running`.
    pub fn create(path: &Path) -> io::Result<StatusFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut s = StatusFile {
            path: path.to_path_buf(),
            file,
            record: Record {
                generation: 0,
                state: State::Running,
                reopen: 0,
                reopen_state: Reopen::None,
            },
        };
        s.write()?;
        Ok(s)
    }

    fn write(&mut self) -> io::Result<()> {
        let text = self.record.render();
        // A reader holds its lock for one read. The file is world-readable,
        // so any local user could hold a read lock for ever: the server
        // waits a moment, never longer, and then writes unlocked (a reader
        // that sees a torn record reads again).
        let locked = write_lock_within(&self.file, WRITE_LOCK_WAIT)?;
        let res = self
            .file
            .set_len(0)
            .and_then(|()| self.file.write_all_at(text.as_bytes(), 0));
        let unlocked = match locked {
            true => ofd_lock(&self.file, libc::F_UNLCK),
            false => Ok(()),
        };
        res.and(unlocked)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }

    /// A reload begins (before the config is read).
    pub fn begin(&mut self) {
        self.record.generation += 1;
        self.set(|r| r.state = State::Reloading);
    }

    /// The reload begun last is done.
    pub fn finish(&mut self, state: State) {
        self.set(|r| r.state = state);
    }

    /// A log reopen begins (before any log is opened).
    pub fn begin_reopen(&mut self) {
        self.record.reopen += 1;
        self.set(|r| r.reopen_state = Reopen::Pending);
    }

    /// The reopen begun last is done: `Err` names the logs that failed.
    pub fn finish_reopen(&mut self, verdict: Result<(), String>) {
        self.set(|r| {
            r.reopen_state = match verdict {
                Ok(()) => Reopen::Ok,
                Err(m) => Reopen::Failed(m),
            }
        });
    }

    fn set(&mut self, change: impl FnOnce(&mut Record)) {
        change(&mut self.record);
        if let Err(e) = self.write() {
            crate::warn!("reload status: {e}");
        }
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        // After dropping privileges the directory may not be ours: the
        // pidfile keeper removes it then. Nothing to say if it fails here.
        if std::fs::remove_file(&self.path).is_err() {
            let _ = self.file.set_len(0);
        }
    }
}

/// The client's side: the record as it is now (`Ok(None)` if the file is
/// empty or not a record, e.g. a server that is just starting).
pub fn read(path: &Path) -> io::Result<Option<Record>> {
    let mut f = File::open(path)?;
    ofd_lock(&f, libc::F_RDLCK)?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(Record::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_numbers_grow() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("t.pid"));
        assert!(path.ends_with("t.pid.reload"));
        let mut s = StatusFile::create(&path).unwrap();
        let r = read(&path).unwrap().unwrap();
        assert_eq!((r.generation, r.state), (0, State::Running));
        s.begin();
        let r = read(&path).unwrap().unwrap();
        assert_eq!((r.generation, &r.state), (1, &State::Reloading));
        assert!(!r.state.is_verdict());
        s.finish(State::Refused {
            exit: 1,
            message: "listen 127.0.0.1:1: address\nalready in use".into(),
        });
        let r = read(&path).unwrap().unwrap();
        assert_eq!(r.generation, 1);
        assert_eq!(
            r.state,
            State::Refused {
                exit: 1,
                message: "listen 127.0.0.1:1: address already in use".into()
            }
        );
        s.begin();
        s.finish(State::Reloaded("engine epoll".into()));
        let r = read(&path).unwrap().unwrap();
        assert_eq!(
            (r.generation, &r.state, r.reopen),
            (2, &State::Reloaded("engine epoll".into()), 0)
        );
        // Reopens count on their own and leave the reload verdict alone.
        s.begin_reopen();
        let r = read(&path).unwrap().unwrap();
        assert_eq!((r.reopen, &r.reopen_state), (1, &Reopen::Pending));
        s.finish_reopen(Err("access_log /x: Permission\ndenied".into()));
        s.begin();
        let r = read(&path).unwrap().unwrap();
        assert_eq!((r.generation, &r.state), (3, &State::Reloading));
        assert_eq!(
            (r.reopen, &r.reopen_state),
            (
                1,
                &Reopen::Failed("access_log /x: Permission denied".into())
            )
        );
        drop(s);
        assert!(!path.exists());
    }
}
