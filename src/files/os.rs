//! The one place the responder reaches the filesystem: open a path beneath the
//! root without ever leaving it, and stat the result.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::syscall;

/// What an opened path turned out to be.
#[derive(Debug)]
pub enum Opened {
    File {
        file: File,
        len: u64,
        mtime: SystemTime,
    },
    Dir,
    /// A socket, FIFO or device: never served.
    Other,
}

/// The root directory, held open so that every lookup is relative to it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// openat2(2) with RESOLVE_BENEATH is available (Linux >= 5.6).
    beneath: AtomicBool,
    canonical: std::path::PathBuf,
}

impl RootDir {
    pub fn open(root: &Path) -> io::Result<RootDir> {
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "root contains NUL"))?;
        // SAFETY: `c` is a valid NUL-terminated string; open returns a new fd or -1.
        let fd = syscall!(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RootDir {
            fd,
            beneath: AtomicBool::new(true),
            canonical: std::fs::canonicalize(root)?,
        })
    }

    /// Open `rel` (no leading '/', no dot-segments) beneath the root. Symlinks
    /// are followed only while they stay beneath the root; an escape is
    /// reported as NotFound.
    pub fn open_beneath(&self, rel: &str) -> io::Result<Opened> {
        let rel = if rel.is_empty() { "." } else { rel };
        let c = CString::new(rel)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = if self.beneath.load(Ordering::Relaxed) {
            // SAFETY: open_how is plain data; all-zero is its documented default.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
            // SAFETY: openat2 reads `how` (size passed) and the NUL-terminated path;
            // both outlive the call. It returns a new fd or -1.
            let opened = syscall!(unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            });
            if matches!(&opened, Err(e) if e.raw_os_error() == Some(libc::ENOSYS)) {
                self.beneath.store(false, Ordering::Relaxed);
                return self.open_beneath(rel);
            }
            opened.map_err(open_error)? as RawFd
        } else {
            self.open_checked(&c, flags)?
        };
        // SAFETY: fd was just returned by openat2/openat and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        let ft = meta.file_type();
        Ok(if ft.is_file() {
            let mtime = UNIX_EPOCH
                + Duration::from_secs(meta.mtime().max(0) as u64)
                + Duration::from_nanos(meta.mtime_nsec().max(0) as u64);
            Opened::File {
                len: meta.len(),
                mtime,
                file,
            }
        } else if ft.is_dir() {
            Opened::Dir
        } else {
            Opened::Other
        })
    }

    /// Fallback without openat2: resolve the real path and check it is under
    /// the root before opening (racy against a concurrent symlink swap, which
    /// is why openat2 is preferred).
    fn open_checked(&self, rel: &std::ffi::CStr, flags: i32) -> io::Result<RawFd> {
        let p = self
            .canonical
            .join(std::ffi::OsStr::from_bytes(rel.to_bytes()));
        let real = std::fs::canonicalize(&p)?;
        if !real.starts_with(&self.canonical) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let c = CString::new(real.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is a valid NUL-terminated path; open returns a new fd or -1.
        syscall!(unsafe { libc::open(c.as_ptr(), flags) }).map_err(open_error)
    }
}

/// Open errors that mean "not beneath the root" are reported as NotFound.
fn open_error(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        // EXDEV: the path (through a symlink) leaves the root.
        Some(libc::EXDEV) | Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            io::Error::from(io::ErrorKind::NotFound)
        }
        _ => e,
    }
}
