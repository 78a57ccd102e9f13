//! The one place the responder reaches the filesystem: open a path beneath the
//! root without ever leaving it, and stat the result.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::config::Symlinks;
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
    /// Whether symlinks beneath the root are followed at all. The root path
    /// itself may be a symlink (`/srv/site -> /srv/releases/42`) either way:
    /// it is resolved once, when the root is opened.
    symlinks: Symlinks,
}

impl RootDir {
    pub fn open(root: &Path, symlinks: Symlinks) -> io::Result<RootDir> {
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
            symlinks,
        })
    }

    /// Open `rel` (no leading '/', no dot-segments) beneath the root. Symlinks
    /// are followed only while they stay beneath the root, and not at all
    /// with `symlinks = "deny"`; an escape or a refused symlink is reported
    /// as NotFound.
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
            if self.symlinks == Symlinks::Deny {
                // Any symlink in the path (not the root's own fd): ELOOP.
                how.resolve |= libc::RESOLVE_NO_SYMLINKS;
            }
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
        } else if self.symlinks == Symlinks::Deny {
            self.open_nofollow(rel, flags)?
        } else {
            self.open_checked(&c, flags)?
        };
        // SAFETY: fd was just returned by openat2/openat and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        let ft = meta.file_type();
        Ok(if ft.is_file() {
            // Before 1970 too: a negative mtime is a time like any other
            // (ETags must tell two such files apart).
            let mtime = meta.modified()?;
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

    /// Fallback without openat2 for `symlinks = "deny"`: walk `rel` one
    /// component at a time from the root's fd, each `openat` with
    /// O_NOFOLLOW, so a symlink anywhere beneath the root fails (ELOOP, or
    /// ENOTDIR for a directory component opened with O_DIRECTORY). Unlike
    /// comparing a canonical path with the joined one, nothing is looked up
    /// twice, so a symlink swapped in concurrently cannot slip through; and
    /// with no symlink followed and no ".." taken (path::resolve removes
    /// them from request paths; refused here too, for any other caller), the
    /// walk cannot leave the root.
    fn open_nofollow(&self, rel: &str, flags: i32) -> io::Result<RawFd> {
        let (dirs, last) = match rel.rsplit_once('/') {
            Some((dirs, last)) => (Some(dirs), last),
            None => (None, rel),
        };
        if rel.split('/').any(|name| name == "..") {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut dir: Option<OwnedFd> = None;
        for name in dirs.into_iter().flat_map(|d| d.split('/')) {
            let at = dir.as_ref().unwrap_or(&self.fd).as_raw_fd();
            let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: `at` is an open directory fd (the root's or the previous
            // component's, both alive here) and `c` a NUL-terminated name that
            // outlives the call; openat returns a new fd or -1.
            let fd = syscall!(unsafe {
                libc::openat(
                    at,
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })
            .map_err(open_error)?;
            // SAFETY: fd was just returned by openat and is owned by nobody else.
            dir = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let at = dir.as_ref().unwrap_or(&self.fd).as_raw_fd();
        let c = CString::new(last).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: as above; `dir` (if any) stays open until after this call.
        syscall!(unsafe { libc::openat(at, c.as_ptr(), flags | libc::O_NOFOLLOW) })
            .map_err(open_error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// base/www: f.txt, d/g.txt, link.txt -> f.txt, linkdir -> d,
    /// out.txt -> ../secret.txt; base/secret.txt; base/www-link -> www.
    fn site() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::create_dir_all(b.join("www/d")).unwrap();
        std::fs::write(b.join("www/f.txt"), b"F").unwrap();
        std::fs::write(b.join("www/d/g.txt"), b"G").unwrap();
        std::fs::write(b.join("secret.txt"), b"SECRET").unwrap();
        symlink("f.txt", b.join("www/link.txt")).unwrap();
        symlink("d", b.join("www/linkdir")).unwrap();
        symlink("../secret.txt", b.join("www/out.txt")).unwrap();
        symlink("www", b.join("www-link")).unwrap();
        t
    }

    fn kind(r: io::Result<Opened>) -> String {
        match r {
            Ok(Opened::File { len, .. }) => format!("file {len}"),
            Ok(Opened::Dir) => "dir".into(),
            Ok(Opened::Other) => "other".into(),
            Err(e) => format!("{:?}", e.kind()),
        }
    }

    /// Both resolution paths: openat2 (when the kernel has it) and the
    /// fallback without it.
    fn roots(root: &Path, symlinks: Symlinks) -> Vec<RootDir> {
        let with = RootDir::open(root, symlinks).unwrap();
        let without = RootDir::open(root, symlinks).unwrap();
        without.beneath.store(false, Ordering::Relaxed);
        vec![with, without]
    }

    #[test]
    fn within_root_follows_symlinks_that_stay_inside() {
        let t = site();
        for root in [t.path().join("www"), t.path().join("www-link")] {
            for r in roots(&root, Symlinks::WithinRoot) {
                let via = if r.beneath.load(Ordering::Relaxed) {
                    "openat2"
                } else {
                    "fallback"
                };
                assert_eq!(kind(r.open_beneath("f.txt")), "file 1", "{via}");
                assert_eq!(kind(r.open_beneath("")), "dir", "{via}");
                assert_eq!(kind(r.open_beneath("link.txt")), "file 1", "{via}");
                assert_eq!(kind(r.open_beneath("linkdir")), "dir", "{via}");
                assert_eq!(kind(r.open_beneath("linkdir/g.txt")), "file 1", "{via}");
                assert_eq!(kind(r.open_beneath("out.txt")), "NotFound", "{via}");
            }
        }
    }

    #[test]
    fn deny_refuses_every_symlink_beneath_the_root_but_not_the_root() {
        let t = site();
        // The root path itself may be a symlink.
        for root in [t.path().join("www"), t.path().join("www-link")] {
            for r in roots(&root, Symlinks::Deny) {
                let via = if r.beneath.load(Ordering::Relaxed) {
                    "openat2"
                } else {
                    "fallback"
                };
                assert_eq!(kind(r.open_beneath("f.txt")), "file 1", "{via}");
                assert_eq!(kind(r.open_beneath("d/g.txt")), "file 1", "{via}");
                assert_eq!(kind(r.open_beneath("d")), "dir", "{via}");
                assert_eq!(kind(r.open_beneath("")), "dir", "{via}");
                for rel in [
                    "link.txt",
                    "linkdir",
                    "linkdir/g.txt",
                    "out.txt",
                    "d/missing",
                    "nope/x",
                ] {
                    assert_eq!(kind(r.open_beneath(rel)), "NotFound", "{via}: {rel}");
                }
                // A file used as a directory is not found either.
                assert_eq!(kind(r.open_beneath("f.txt/x")), "NotFound", "{via}");
            }
        }
    }
}
