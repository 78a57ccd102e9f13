//! One log destination: whole lines in, whole lines on disk.
//!
//! A write that fails part way (ENOSPC, EIO) leaves the start of a line in
//! the file. The rest of that line is kept and written first the next time,
//! so the next line never starts glued to a fragment (a JSON line stays one
//! JSON object); the whole lines after it in the failed write are dropped
//! and counted. While writes fail, one report a second says why and how
//! many lines were dropped; the first write that works again says so with
//! the last count.
//!
//! Files are opened by `open_append`: directly, or through the privileged
//! opener the daemon installs when it drops privileges (`set_opener`), so a
//! reopen has the rights the first open had.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::LogTarget;

/// Opens the log files it was given (and the certificate files, to read)
/// with rights this process may no longer have (see `daemon::opener`).
pub trait PrivilegedOpen: Send + Sync {
    /// Is `p` one of the files it opens?
    fn serves(&self, p: &Path) -> bool;
    /// Open `p`: a log for appending (creating it if need be), a
    /// certificate file for reading.
    fn open(&self, p: &Path) -> io::Result<File>;
}

static OPENER: Mutex<Option<Arc<dyn PrivilegedOpen>>> = Mutex::new(None);

fn opener() -> Option<Arc<dyn PrivilegedOpen>> {
    OPENER.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Install the privileged opener (when privileges are dropped).
pub fn set_opener(o: Arc<dyn PrivilegedOpen>) {
    *OPENER.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
}

/// Let go of the privileged opener (at exit): dropping the last reference
/// ends the helper process.
pub fn clear_opener() {
    let o = OPENER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(o);
}

/// Is `p` opened (and reopened) by the privileged opener?
pub fn opened_privileged(p: &Path) -> bool {
    opener().is_some_and(|o| o.serves(p))
}

/// Read `p` whole: through the privileged opener when it serves `p`
/// (certificate files it was started with), else directly.
pub fn read_privileged(p: &Path) -> io::Result<Vec<u8>> {
    match opener() {
        Some(o) if o.serves(p) => {
            let mut data = Vec::new();
            io::Read::read_to_end(&mut o.open(p)?, &mut data)?;
            Ok(data)
        }
        _ => std::fs::read(p),
    }
}

/// Open `p` for appending, creating it: through the privileged opener when
/// it serves `p`, else directly. Errors name the path.
pub fn open_append(p: &Path) -> io::Result<File> {
    let res = match opener() {
        Some(o) if o.serves(p) => o.open(p),
        _ => OpenOptions::new().create(true).append(true).open(p),
    };
    res.map_err(|e| match e.raw_os_error() {
        Some(libc::EISDIR) => io::Error::new(
            e.kind(),
            format!("{} is a directory, not a file", p.display()),
        ),
        _ => io::Error::new(
            e.kind(),
            format!("{}: {}", p.display(), crate::sys::bare(&e)),
        ),
    })
}

/// How often a failing log says so.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// An open log destination that can be reopened.
#[derive(Debug)]
pub struct Sink {
    /// The config key, for reports (`access_log`, `error_log`).
    key: &'static str,
    target: LogTarget,
    file: Option<File>,
    /// The rest of a line a failed write cut short, written first next time.
    torn: Vec<u8>,
    /// Whole lines dropped since the last report.
    dropped: u64,
    /// Writes are failing (since the last report of it, with this error).
    failing: Option<String>,
    last_report: Option<Instant>,
}

impl Sink {
    pub fn open(key: &'static str, target: &LogTarget) -> io::Result<Sink> {
        let file = match target {
            LogTarget::File(p) => Some(open_append(p)?),
            _ => None,
        };
        Ok(Sink {
            key,
            target: target.clone(),
            file,
            torn: Vec::new(),
            dropped: 0,
            failing: None,
            last_report: None,
        })
    }

    pub fn is_off(&self) -> bool {
        self.target == LogTarget::Off
    }

    pub fn target(&self) -> &LogTarget {
        &self.target
    }

    /// Write `buf`, whole lines. `Some(report)` when there is something to
    /// tell the operator: writes fail (at most once per `REPORT_EVERY`), or
    /// work again after failing.
    pub fn write_lines(&mut self, buf: &[u8]) -> Option<String> {
        let res = match (&self.target, self.file.as_mut()) {
            (LogTarget::Off, _) | (LogTarget::File(_), None) => return None,
            (LogTarget::Stderr, _) => write_whole(&mut io::stderr().lock(), &mut self.torn, buf),
            (LogTarget::File(_), Some(f)) => write_whole(f, &mut self.torn, buf),
        };
        match res {
            Ok(()) => self.failing.take().map(|e| {
                let dropped = std::mem::take(&mut self.dropped);
                self.last_report = Some(Instant::now());
                format!(
                    "{}: writing again after \"{e}\"; {dropped} line(s) dropped since the last report",
                    self.describe()
                )
            }),
            Err((dropped, e)) => {
                self.dropped += dropped;
                self.failing = Some(crate::sys::bare(&e));
                let now = Instant::now();
                if self
                    .last_report
                    .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
                {
                    return None;
                }
                self.last_report = Some(now);
                let dropped = std::mem::take(&mut self.dropped);
                Some(format!(
                    "{}: write failed: {}; {dropped} line(s) dropped since the last report",
                    self.describe(),
                    crate::sys::bare(&e)
                ))
            }
        }
    }

    fn describe(&self) -> String {
        match &self.target {
            LogTarget::File(p) => format!("{} {}", self.key, p.display()),
            _ => self.key.to_string(),
        }
    }

    /// Open the file again by its name (after a rotation). On failure the
    /// file opened before stays, so lines still go somewhere, and the next
    /// reopen tries again.
    pub fn reopen(&mut self) -> io::Result<()> {
        let LogTarget::File(p) = &self.target else {
            return Ok(());
        };
        let new = open_append(p)?;
        if !self.torn.is_empty()
            && let Some(old) = self.file.as_mut()
        {
            // Finish the torn line where it began; if that still fails, the
            // rest may follow it into the new file only if that is the same
            // file, else the new file would begin with a fragment.
            let mut rest = std::mem::take(&mut self.torn);
            if write_whole(old, &mut rest, b"").is_err() && !same_file(old, &new) {
                rest.clear();
                self.dropped += 1;
            }
            self.torn = rest;
        }
        self.file = Some(new);
        Ok(())
    }
}

fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Write the rest of a torn line (`torn`), then `buf`. On an error: the
/// number of whole lines of `buf` dropped, and `torn` holds what is left of
/// the line being written when it failed (if it failed inside one).
fn write_whole(w: &mut impl Write, torn: &mut Vec<u8>, buf: &[u8]) -> Result<(), (u64, io::Error)> {
    if !torn.is_empty() {
        match write_some(w, torn) {
            Ok(()) => torn.clear(),
            Err((n, e)) => {
                torn.drain(..n);
                return Err((lines(buf), e));
            }
        }
    }
    match write_some(w, buf) {
        Ok(()) => Ok(()),
        Err((n, e)) => {
            let rest = &buf[n..];
            let cut = if n > 0 && buf[n - 1] != b'\n' {
                let end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1);
                torn.extend_from_slice(&rest[..end]);
                end
            } else {
                0
            };
            Err((lines(&rest[cut..]), e))
        }
    }
}

fn lines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Write all of `buf`; on an error, how much was written before it.
fn write_some(w: &mut impl Write, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match w.write(&buf[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes, then fails with ENOSPC, like a full disk.
    struct Full {
        out: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_torn_line_is_completed_before_the_next_and_the_rest_counted() {
        let batch = b"{\"a\":1}\n{\"b\":22}\n{\"c\":333}\n";
        // Every place the disk can fill up, including none and all.
        for room in 0..=batch.len() {
            let mut w = Full {
                out: Vec::new(),
                room,
            };
            let mut torn = Vec::new();
            let res = write_whole(&mut w, &mut torn, batch);
            let written = room.min(batch.len());
            let whole = lines(&batch[..written]);
            match res {
                Ok(()) => assert_eq!(room, batch.len()),
                Err((dropped, e)) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
                    let torn_lines = u64::from(!torn.is_empty());
                    assert_eq!(whole + torn_lines + dropped, 3, "room {room}");
                }
            }
            // Space again: the fragment is finished first, then new lines.
            w.room = usize::MAX;
            write_whole(&mut w, &mut torn, b"{\"d\":4}\n").unwrap();
            assert!(torn.is_empty());
            let text = String::from_utf8(w.out).unwrap();
            for l in text.lines() {
                assert!(
                    l.starts_with('{') && l.ends_with('}') && l.matches('{').count() == 1,
                    "room {room}: {l:?} in {text:?}"
                );
            }
            assert!(text.ends_with("{\"d\":4}\n"), "{text:?}");
        }
    }

    #[test]
    fn failures_are_reported_once_a_second_with_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut s = Sink::open("access_log", &LogTarget::File(path.clone())).unwrap();
        // A read-only descriptor stands in for a failing disk: EBADF.
        s.file = Some(File::open(&path).unwrap());
        let first = s
            .write_lines(b"one\ntwo\n")
            .expect("the first failure is reported");
        assert!(first.contains("2 line(s) dropped"), "{first}");
        assert!(first.starts_with(&format!("access_log {}", path.display())));
        assert_eq!(
            s.write_lines(b"three\n"),
            None,
            "a second report within a second"
        );
        s.reopen().unwrap();
        let back = s.write_lines(b"four\n").expect("recovery is reported");
        assert!(
            back.contains("writing again") && back.contains("1 line(s) dropped"),
            "{back}"
        );
        assert_eq!(s.write_lines(b"five\n"), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "four\nfive\n");
    }
}
