//! The one place the responder reaches the filesystem: open a path beneath the
//! root without ever leaving it, and stat the result.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Symlinks;
use crate::syscall;

/// What an opened path turned out to be.
#[derive(Debug)]
pub enum Opened {
    File(Found),
    Dir,
    /// A socket, FIFO or device: never served.
    Other,
}

/// A regular file as opened: its handle, size and modification time.
#[derive(Debug)]
pub struct Found {
    pub file: File,
    pub len: u64,
    pub mtime: SystemTime,
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
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        let file = File::from(self.open_resolved(rel, flags)?);
        let meta = file.metadata()?;
        let ft = meta.file_type();
        Ok(if ft.is_file() {
            // Before 1970 too: a negative mtime is a time like any other
            // (ETags must tell two such files apart).
            let mtime = meta.modified()?;
            Opened::File(Found {
                len: meta.len(),
                mtime,
                file,
            })
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
            let c = c_path(name)?;
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
        let c = c_path(last)?;
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
        let c = c_path(real.as_os_str().as_bytes())?;
        // SAFETY: `c` is a valid NUL-terminated path; open returns a new fd or -1.
        syscall!(unsafe { libc::open(c.as_ptr(), flags) }).map_err(open_error)
    }

    /// The entries of the directory `rel` (no leading '/', no dot-segments)
    /// beneath the root, for a listing: regular files and directories only,
    /// never a name outside the root. The directory is opened beneath the root
    /// like `open_beneath` and read with getdents64; each name is stat'ed
    /// relative to that directory's fd (`fstatat`, no follow), and a symlink
    /// is resolved again from the root with RESOLVE_BENEATH, so one that
    /// leaves the root (or, with `symlinks = "deny"`, any symlink) is left
    /// out. No path is built from the root's name, so a symlink swapped in
    /// meanwhile cannot lead outside. Bounded by `opts.max_entries` kept and
    /// `opts.max_scanned` looked at; past either, `truncated` is set.
    pub fn read_dir(&self, rel: &str, opts: &ReadDirOpts) -> io::Result<DirListing> {
        let dir = self.open_resolved(rel, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)?;
        let mut out = DirListing::default();
        let mut buf = vec![0u8; 32 * 1024];
        let mut scanned = 0usize;
        'read: loop {
            // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`,
            // which is ours and outlives the call; `dir` is an open directory fd.
            let n = syscall!(unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            })? as usize;
            if n == 0 {
                break;
            }
            for name in dirent_names(&buf[..n.min(buf.len())]) {
                if scanned == opts.max_scanned || out.entries.len() == opts.max_entries {
                    out.truncated = true;
                    break 'read;
                }
                scanned += 1;
                // /.well-known/ is served with dotfiles hidden: list it too.
                let served_dot = rel.is_empty() && name == b".well-known";
                let Some(name) = listable_name(name, opts.dotfiles || served_dot) else {
                    continue;
                };
                if let Some(entry) = self.dir_entry(&dir, rel, name) {
                    out.entries.push(entry);
                }
            }
        }
        Ok(out)
    }

    /// One entry of an open directory, or None when a listing leaves it out
    /// (gone, not a file or directory, a symlink out of the root or refused).
    fn dir_entry(&self, dir: &OwnedFd, rel: &str, name: &str) -> Option<DirEntry> {
        let c = CString::new(name).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `c` is NUL-terminated, `st` is writable for one `stat`, both
        // outlive the call; `dir` is an open directory fd. fstatat never follows
        // the last component here (AT_SYMLINK_NOFOLLOW) and `name` has no '/'.
        syscall!(unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .ok()?;
        // SAFETY: fstatat succeeded, so it filled `st`.
        let mut st = unsafe { st.assume_init() };
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if self.symlinks == Symlinks::Deny {
                return None;
            }
            // Resolve it the way a request for it would be: from the root,
            // beneath it. O_PATH opens nothing (no device is touched).
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let fd = self
                .open_resolved(&path, libc::O_PATH | libc::O_CLOEXEC)
                .ok()?;
            // SAFETY: `fd` is open (O_PATH fds can be fstat'ed), `st` is a
            // valid, writable `stat` that outlives the call.
            syscall!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).ok()?;
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => EntryKind::File,
            libc::S_IFDIR => EntryKind::Dir,
            _ => return None,
        };
        let mtime = UNIX_EPOCH
            + Duration::from_secs(st.st_mtime.max(0) as u64)
            + Duration::from_nanos(st.st_mtime_nsec.clamp(0, 999_999_999) as u64);
        Some(DirEntry {
            name: name.to_string(),
            kind,
            size: if kind == EntryKind::File {
                st.st_size.max(0) as u64
            } else {
                0
            },
            mtime,
        })
    }

    /// Open `rel` beneath the root with `flags` (the one resolution both
    /// `open_beneath` and the listing use): openat2 RESOLVE_BENEATH, plus
    /// RESOLVE_NO_SYMLINKS with `symlinks = "deny"`; without openat2, the
    /// checked or no-follow fallbacks. An owned fd of whatever it names.
    fn open_resolved(&self, rel: &str, flags: i32) -> io::Result<OwnedFd> {
        let opened = self.open_resolved_inner(rel, flags);
        if let Err(e) = &opened
            && out_of_descriptors(e)
        {
            record_shortage(rel, e);
        }
        opened
    }

    fn open_resolved_inner(&self, rel: &str, flags: i32) -> io::Result<OwnedFd> {
        let rel = if rel.is_empty() { "." } else { rel };
        let c = c_path(rel)?;
        let deny = self.symlinks == Symlinks::Deny;
        let fd = if self.beneath.load(Ordering::Relaxed) {
            // SAFETY: open_how is plain data; all-zero is its documented default.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
            if deny {
                how.resolve |= libc::RESOLVE_NO_SYMLINKS;
            }
            // SAFETY: openat2 reads `how` (size passed) and the NUL-terminated
            // path; both outlive the call. It returns a new fd or -1.
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
                return self.open_resolved_inner(rel, flags);
            }
            opened.map_err(open_error)? as RawFd
        } else if deny {
            self.open_nofollow(rel, flags)?
        } else {
            self.open_checked(&c, flags)?
        };
        // SAFETY: fd was just returned by openat2/openat/open and is owned by
        // nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The process (EMFILE) or the system (ENFILE) is out of file descriptors:
/// the responder answers 503 (`Retry-After`, `Connection: close`), the
/// engine frees descriptors by closing idle keep-alive connections.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Opens on this thread that failed for want of a descriptor since the
/// engine last asked (`take_shortage`): the first one's path and error, and
/// how many in all.
#[derive(Debug)]
pub struct Shortage {
    /// Beneath the root, as opened ("" for the root itself).
    pub path: String,
    pub error: io::Error,
    pub count: u64,
}

thread_local! {
    /// Each worker thread's own record: the responder runs on the engine's
    /// thread, inside the `Conn` call the engine makes for one connection,
    /// so the engine that takes it after that call knows the client too.
    static SHORTAGE: std::cell::RefCell<Option<Shortage>> = const { std::cell::RefCell::new(None) };
}

fn record_shortage(rel: &str, e: &io::Error) {
    SHORTAGE.with(|s| match &mut *s.borrow_mut() {
        Some(s) => s.count += 1,
        none => {
            *none = Some(Shortage {
                path: rel.to_string(),
                error: io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EMFILE)),
                count: 1,
            })
        }
    });
}

/// The opens that ran out of descriptors on this thread since the last call.
pub fn take_shortage() -> Option<Shortage> {
    SHORTAGE.with(|s| s.borrow_mut().take())
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

/// What a listed entry is (after following a symlink beneath the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: EntryKind,
    /// Bytes; 0 for a directory.
    pub size: u64,
    pub mtime: SystemTime,
}

/// What `RootDir::read_dir` keeps, and how much work it may do.
#[derive(Debug, Clone, Copy)]
pub struct ReadDirOpts {
    /// Keep names that start with '.'.
    pub dotfiles: bool,
    /// Most entries kept.
    pub max_entries: usize,
    /// Most directory entries looked at, hidden ones included.
    pub max_scanned: usize,
}

/// What `RootDir::read_dir` found, in directory order.
#[derive(Debug, Default)]
pub struct DirListing {
    pub entries: Vec<DirEntry>,
    /// A bound was hit: there may be more entries than `entries`.
    pub truncated: bool,
}

/// The names in a getdents64 buffer (`struct linux_dirent64`: d_ino u64,
/// d_off i64, d_reclen u16, d_type u8, then the NUL-terminated name).
fn dirent_names(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rec = buf.get(at..)?;
        let reclen = u16::from_ne_bytes([*rec.get(16)?, *rec.get(17)?]) as usize;
        if reclen < 20 || reclen > rec.len() {
            return None;
        }
        at += reclen;
        let name = &rec[19..reclen];
        Some(&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())])
    })
}

/// `name` as a listing may show it: not "." or "..", valid UTF-8, no dot
/// first unless `dotfiles`, and requestable at all (no control bytes, no
/// backslash: the path rules refuse those, so a link could not work).
fn listable_name(name: &[u8], dotfiles: bool) -> Option<&str> {
    let name = std::str::from_utf8(name).ok()?;
    if name.is_empty() || name == "." || name == ".." || (!dotfiles && name.starts_with('.')) {
        return None;
    }
    if name.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
        return None;
    }
    Some(name)
}

/// A path or name for a libc call; one with a NUL byte is InvalidInput.
fn c_path(b: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
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
            Ok(Opened::File(f)) => format!("file {}", f.len),
            Ok(Opened::Dir) => "dir".into(),
            Ok(Opened::Other) => "other".into(),
            Err(e) => format!("{:?}", e.kind()),
        }
    }

    /// Both resolution paths, named: openat2 (when the kernel has it) and
    /// the fallback without it.
    fn roots(root: &Path, symlinks: Symlinks) -> Vec<(&'static str, RootDir)> {
        let with = RootDir::open(root, symlinks).unwrap();
        let without = RootDir::open(root, symlinks).unwrap();
        without.beneath.store(false, Ordering::Relaxed);
        let via = if with.beneath.load(Ordering::Relaxed) {
            "openat2"
        } else {
            "fallback"
        };
        vec![(via, with), ("fallback", without)]
    }

    #[test]
    fn within_root_follows_symlinks_that_stay_inside() {
        let t = site();
        for root in [t.path().join("www"), t.path().join("www-link")] {
            for (via, r) in roots(&root, Symlinks::WithinRoot) {
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
            for (via, r) in roots(&root, Symlinks::Deny) {
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

    /// `read_dir`'s entries as (name, kind, size), by name.
    fn listed(r: &RootDir, rel: &str, dotfiles: bool) -> Vec<(String, EntryKind, u64)> {
        let opts = ReadDirOpts {
            dotfiles,
            max_entries: 10_000,
            max_scanned: 100_000,
        };
        let l = r.read_dir(rel, &opts).unwrap();
        assert!(!l.truncated);
        let mut v: Vec<_> = l
            .entries
            .into_iter()
            .map(|e| (e.name, e.kind, e.size))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn entries(list: &[(&str, EntryKind, u64)]) -> Vec<(String, EntryKind, u64)> {
        list.iter()
            .map(|&(n, k, s)| (n.to_string(), k, s))
            .collect()
    }

    #[test]
    fn read_dir_keeps_files_and_dirs_beneath_the_root_only() {
        use std::os::unix::ffi::OsStrExt;
        let t = site();
        let d = t.path().join("www/d");
        std::fs::create_dir(d.join("inner")).unwrap();
        std::fs::write(d.join(".hidden"), b"x").unwrap();
        std::fs::write(d.join("ctl\x01name"), b"x").unwrap();
        std::fs::write(d.join("back\\slash"), b"x").unwrap();
        std::fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xffutf8")), b"x").unwrap();
        let fifo = CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        syscall!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }).unwrap();
        symlink(t.path().join("secret.txt"), d.join("abs-out")).unwrap();
        symlink("../../secret.txt", d.join("rel-out")).unwrap();
        symlink("/etc", d.join("etc-out")).unwrap();
        symlink("..", d.join("up")).unwrap();
        symlink("g.txt", d.join("link-in")).unwrap();
        symlink("fifo", d.join("link-fifo")).unwrap();
        symlink("missing", d.join("dangling")).unwrap();
        use EntryKind::{Dir, File};
        for root in [t.path().join("www"), t.path().join("www-link")] {
            for (via, r) in roots(&root, Symlinks::WithinRoot) {
                let want = [
                    ("g.txt", File, 1),
                    ("inner", Dir, 0),
                    ("link-in", File, 1),
                    ("up", Dir, 0),
                ];
                assert_eq!(listed(&r, "d", false), entries(&want), "{via}");
                let want = [
                    (".hidden", File, 1),
                    ("g.txt", File, 1),
                    ("inner", Dir, 0),
                    ("link-in", File, 1),
                    ("up", Dir, 0),
                ];
                assert_eq!(listed(&r, "d", true), entries(&want), "{via}");
                let want = [
                    ("d", Dir, 0),
                    ("f.txt", File, 1),
                    ("link.txt", File, 1),
                    ("linkdir", Dir, 0),
                ];
                assert_eq!(listed(&r, "", false), entries(&want), "{via}");
                assert_eq!(
                    listed(&r, "linkdir", false),
                    listed(&r, "d", false),
                    "{via}"
                );
                for rel in ["d/etc-out", "d/f.txt", "nope", "d/fifo", "d/up/../.."] {
                    let e = r.read_dir(
                        rel,
                        &ReadDirOpts {
                            dotfiles: false,
                            max_entries: 10,
                            max_scanned: 10,
                        },
                    );
                    assert_eq!(
                        e.map(|_| ()).unwrap_err().kind(),
                        io::ErrorKind::NotFound,
                        "{via}: {rel}"
                    );
                }
            }
            for (via, r) in roots(&root, Symlinks::Deny) {
                let want = [("g.txt", File, 1), ("inner", Dir, 0)];
                assert_eq!(listed(&r, "d", false), entries(&want), "{via}");
                let want = [("d", Dir, 0), ("f.txt", File, 1)];
                assert_eq!(listed(&r, "", false), entries(&want), "{via}");
                let e = r.read_dir(
                    "linkdir",
                    &ReadDirOpts {
                        dotfiles: false,
                        max_entries: 10,
                        max_scanned: 10,
                    },
                );
                assert_eq!(
                    e.map(|_| ()).unwrap_err().kind(),
                    io::ErrorKind::NotFound,
                    "{via}"
                );
            }
        }
    }

    #[test]
    fn read_dir_is_bounded_and_reads_past_one_buffer() {
        let t = tempfile::tempdir().unwrap();
        // Long names: more than one 32 KiB getdents64 buffer.
        let n = 1500;
        for i in 0..n {
            std::fs::write(t.path().join(format!("{i:0>60}")), b"").unwrap();
        }
        for i in 0..50 {
            std::fs::write(t.path().join(format!(".{i}")), b"").unwrap();
        }
        let r = RootDir::open(t.path(), Symlinks::WithinRoot).unwrap();
        let opts = |max_entries, max_scanned| ReadDirOpts {
            dotfiles: false,
            max_entries,
            max_scanned,
        };
        let l = r.read_dir("", &opts(10_000, 100_000)).unwrap();
        assert!(!l.truncated);
        assert_eq!(l.entries.len(), n);
        let l = r.read_dir("", &opts(100, 100_000)).unwrap();
        assert!(l.truncated);
        assert_eq!(l.entries.len(), 100);
        let l = r.read_dir("", &opts(10_000, 10)).unwrap();
        assert!(l.truncated);
        assert!(l.entries.len() <= 10);
        let l = r.read_dir("", &opts(10_000, n + 52)).unwrap();
        assert!(!l.truncated, "exactly every entry (with . and ..) scanned");
    }
}
