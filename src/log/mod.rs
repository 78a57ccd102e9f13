//! Error log (leveled lines to stderr or a file) and access log (combined or
//! JSON lines). A worker buffers both and hands them over whole: its access
//! lines when the buffer fills, at a timer tick half a second or more after
//! the last hand-over, and at exit (`engine::WorkerState::flush_log`); its
//! error lines at its next `Conn` call or tick. Both logs can be reopened (SIGUSR1,
//! SIGHUP) by swapping the file under a mutex between whole writes, so no
//! line is split; `sink` keeps lines whole when the disk fails under them
//! (and counts those it drops), and reopens with root's rights after they
//! are dropped; `access` holds the record a finished exchange leaves and
//! renders its line.

pub mod access;
mod sink;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use sink::{
    PrivilegedOpen, Sink, clear_opener, opened_privileged, read_privileged, set_opener,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Where a log goes: `"off"`, `"stderr"` or a file path (the config's
/// `access_log` and `error_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stderr,
    File(PathBuf),
}

/// The access log's line format (the config's `access_log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// The combined log format (nginx's and Apache's `combined`).
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

static ERROR_LOG: Mutex<Option<Sink>> = Mutex::new(None);
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Install the error log (stderr is used until this is called). On an
/// error the log in use stays, and so does its level.
pub fn init_error_log(target: &LogTarget, level: Level) -> io::Result<()> {
    let sink = Sink::open("error_log", target)?;
    *ERROR_LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Set the most verbose level written.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn reopen_error_log() -> io::Result<()> {
    match ERROR_LOG.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(s) => s.reopen(),
        None => Ok(()),
    }
}

/// The most verbose level written now.
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Error,
        1 => Level::Warn,
        2 => Level::Info,
        _ => Level::Debug,
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Write one error-log line: `2026-11-22T19:21:37Z info message`.
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        write_line(level, args, false);
    }
}

/// An error the operator must see even when the error log cannot take it
/// (a log that failed to reopen, a disk that is full): into the error log,
/// and on stderr too (the journal, under systemd) unless that is where the
/// error log goes already.
pub fn alert(args: std::fmt::Arguments<'_>) {
    write_line(Level::Error, args, true);
}

fn write_line(level: Level, args: std::fmt::Arguments<'_>, also_stderr: bool) {
    let line = format!("{} {} {}\n", rfc3339(SystemTime::now()), level.name(), args);
    let mut guard = ERROR_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let (report, on_stderr) = match guard.as_mut() {
        Some(s) => (
            s.write_lines(line.as_bytes()),
            *s.target() == LogTarget::Stderr,
        ),
        None => (None, true),
    };
    if guard.is_none() {
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }
    drop(guard);
    if on_stderr {
        return;
    }
    // The error log itself failing is said on stderr, the last resort (if
    // that fails too there is nowhere left to say so); so is the line it
    // may have lost.
    let mut err = io::stderr().lock();
    if let Some(r) = report {
        let _ = writeln!(err, "{} error {r}", rfc3339(SystemTime::now()));
        let _ = err.write_all(line.as_bytes());
    } else if also_stderr {
        let _ = err.write_all(line.as_bytes());
    }
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Debug) { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } } }

#[macro_export]
macro_rules! alert { ($($t:tt)*) => { $crate::log::alert(format_args!($($t)*)) } }

/// The access log shared by all workers of a generation (and by the next
/// generation when a reload keeps its path). Workers buffer lines and hand
/// whole buffers over with `write`.
#[derive(Debug)]
pub struct AccessLog {
    sink: Mutex<Sink>,
    off: bool,
}

impl AccessLog {
    pub fn open(target: &LogTarget) -> io::Result<Arc<AccessLog>> {
        let sink = Sink::open("access_log", target)?;
        Ok(Arc::new(AccessLog {
            off: sink.is_off(),
            sink: Mutex::new(sink),
        }))
    }

    pub fn is_off(&self) -> bool {
        self.off
    }

    pub fn write(&self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        let mut s = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let report = s.write_lines(buf);
        drop(s);
        if let Some(r) = report {
            crate::error!("{r}");
        }
    }

    pub fn reopen(&self) -> io::Result<()> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).reopen()
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `t` in UTC as (year, month, day, hour, minute, second); times before
/// the epoch count as the epoch.
pub(crate) fn split(t: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, m, d, s / 3600, (s / 60) % 60, s % 60)
}

/// `2026-11-22T19:21:37Z`
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(20);
    write_rfc3339(&mut out, t);
    String::from_utf8(out).expect("digits and ASCII")
}

/// `rfc3339(t)`, appended to `out`.
pub fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let (y, mo, d, h, mi, s) = split(t);
    push_year(out, y);
    let ([m0, m1], [d0, d1]) = (two(mo.into()), two(d.into()));
    let ([h0, h1], [i0, i1], [s0, s1]) = (two(h), two(mi), two(s));
    out.extend_from_slice(&[
        b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', i0, i1, b':', s0, s1, b'Z',
    ]);
}

/// `22/Nov/2026:19:21:37 +0000`, the combined log format's time, appended
/// to `out`.
pub fn write_clf_time(out: &mut Vec<u8>, t: SystemTime) {
    const MON: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (y, mo, d, h, mi, s) = split(t);
    let [d0, d1] = two(d.into());
    let [a, b, c] = *MON[(mo - 1) as usize];
    out.extend_from_slice(&[d0, d1, b'/', a, b, c, b'/']);
    push_year(out, y);
    let ([h0, h1], [i0, i1], [s0, s1]) = (two(h), two(mi), two(s));
    out.extend_from_slice(&[
        b':', h0, h1, b':', i0, i1, b':', s0, s1, b' ', b'+', b'0', b'0', b'0', b'0',
    ]);
}

/// `n` (< 100) as two digits.
fn two(n: u64) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// A year as at least four digits.
fn push_year(out: &mut Vec<u8>, y: i64) {
    match u64::try_from(y) {
        Ok(y) if y < 10_000 => {
            let ([a, b], [c, d]) = (two(y / 100), two(y % 100));
            out.extend_from_slice(&[a, b, c, d]);
        }
        _ => access::push_decimal(out, y.max(0) as u64, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_375_297);
        assert_eq!(rfc3339(t), "2026-11-22T19:21:37Z");
        let mut clf = Vec::new();
        write_clf_time(&mut clf, t);
        assert_eq!(clf, b"22/Nov/2026:19:21:37 +0000");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        // Years past 9999 get their fifth digit, as `{y:04}` gave them.
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800); // 10000-01-01
        assert_eq!(rfc3339(far), "10000-01-01T00:00:00Z");
        let mut clf = Vec::new();
        write_clf_time(&mut clf, far + Duration::from_secs(3_661));
        assert_eq!(clf, b"01/Jan/10000:01:01:01 +0000");
    }
}
