//! The one place the responder reaches the filesystem: open a path beneath the
//! root without ever leaving it, and stat the result.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::path;
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
    /// Which file this is, and its last change (`Stamp`).
    pub stamp: Stamp,
}

/// A file's device, inode and status-change time: what tells a cached copy
/// from what is on disk where size and mtime (its entity tag) do not. A
/// file renamed over it is another inode; a rewrite in place moves ctime,
/// which no tool sets back (`cp -p`, `rsync -t`, tar and `touch -r` set the
/// mtime of a new version to the old one's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl RootDir {
    /// Whether `rel` beneath the root names now the file a descriptor was
    /// opened on (`stamp`, `len`, `mtime`), unchanged: the same device,
    /// inode and ctime, size and mtime, by one fstatat(2) from the root,
    /// the last component not followed. The open-file cache keeps a held
    /// descriptor on that, as nginx's open_file_cache does: a symlink put
    /// into the path since can lead only to that same file, unchanged, so
    /// nothing is served that was not served from the path already; any
    /// other change (renamed over, rewritten, truncated, chmod'ed, deleted,
    /// swapped for a symlink) fails it, and the path is opened again under
    /// every rule.
    pub fn still_names(&self, rel: &OsStr, stamp: &Stamp, len: u64, mtime: SystemTime) -> bool {
        let Ok(c) = c_path(rel.as_bytes()) else {
            return false;
        };
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the root fd is open for as long as `self`; `c` is
        // NUL-terminated and `st` writable for one `stat`, both outlive the call.
        let r = syscall!(unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        });
        if r.is_err() {
            return false;
        }
        // SAFETY: fstatat succeeded, so it filled `st`.
        let st = unsafe { st.assume_init() };
        let now = Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec),
        };
        now == *stamp
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_size as u64 == len
            && time_of(st.st_mtime, st.st_mtime_nsec) == mtime
    }
}

/// A stat(2) time as a `SystemTime`, before 1970 too.
fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = Duration::from_nanos(nsecs.clamp(0, 999_999_999) as u64);
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nsecs
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nsecs
    }
}

/// The root directory, held open so that every lookup is relative to it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// openat2(2) with RESOLVE_BENEATH is available (Linux >= 5.6).
    beneath: AtomicBool,
    canonical: std::path::PathBuf,
    /// The held directory's device and inode: which release this is, when
    /// the root path is a symlink swapped to another (`FileId::of`).
    id: FileId,
    /// Whether symlinks beneath the root are followed at all. The root path
    /// itself may be a symlink (`/srv/site -> /srv/releases/42`) either way:
    /// a `RootDir` holds what it named when opened, and the responder opens
    /// another when it is swapped (`files::release`).
    symlinks: Symlinks,
    /// `serve_dotfiles`: when false, a path that reaches a hidden name
    /// (`path::is_hidden`) through a symlink is not found, and a listing
    /// leaves such a link out.
    dotfiles: bool,
}

impl RootDir {
    /// Open the directory `root` names now (following any symlink in it,
    /// the root's own included): what requests are resolved beneath until
    /// it is dropped, whatever the path names later.
    pub fn open(root: &Path, symlinks: Symlinks, dotfiles: bool) -> io::Result<RootDir> {
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "root contains NUL"))?;
        // A symlink swapped between the open and the canonical name would
        // name another release in messages (and in the fallback without
        // openat2): tried again until both name the same directory.
        let mut tries = 0;
        loop {
            // SAFETY: `c` is a valid NUL-terminated string; open returns a new fd or -1.
            let fd = syscall!(unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })?;
            // SAFETY: fd was just returned by open and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let id = FileId::of_fd(&fd)?;
            let canonical = std::fs::canonicalize(root)?;
            tries += 1;
            if tries < 8 && FileId::of(&canonical).ok() != Some(id) {
                continue;
            }
            return Ok(RootDir {
                fd,
                beneath: AtomicBool::new(true),
                canonical,
                id,
                symlinks,
                dotfiles,
            });
        }
    }

    /// Which directory this is (its device and inode).
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The root's path joined with `rel`, for messages (never opened): on
    /// one line whatever the name's bytes, a control character escaped
    /// (`\n`, `\u{1}`), a byte that is not UTF-8 shown as U+FFFD.
    pub fn path_of(&self, rel: impl AsRef<OsStr>) -> String {
        one_line(self.canonical.join(rel.as_ref()).as_os_str().as_bytes())
    }

    /// Open `rel` (no leading '/', no dot-segments) beneath the root. Symlinks
    /// are followed only while they stay beneath the root, and not at all
    /// with `symlinks = "deny"`; an escape or a refused symlink is reported
    /// as NotFound. With dotfiles hidden, so is a path whose symlinks lead
    /// to a hidden name (`gitlink -> .git`, `env -> .env`, chains of links):
    /// where a path leads is checked, not only how it is spelled. A path
    /// with no symlink in it is the one asked for; its caller checked it
    /// (`path::resolve` for a request; the operator's own pages are theirs).
    pub fn open_beneath(&self, rel: impl AsRef<OsStr>) -> io::Result<Opened> {
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        let file = File::from(self.open_resolved(rel.as_ref().as_bytes(), flags)?);
        let meta = file.metadata()?;
        let ft = meta.file_type();
        Ok(if ft.is_file() {
            // Before 1970 too: a negative mtime is a time like any other
            // (ETags must tell two such files apart).
            let mtime = meta.modified()?;
            Opened::File(Found {
                len: meta.len(),
                mtime,
                stamp: Stamp::of(&meta),
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
    fn open_nofollow(&self, rel: &[u8], flags: i32) -> io::Result<RawFd> {
        let (dirs, last) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (Some(&rel[..i]), &rel[i + 1..]),
            None => (None, rel),
        };
        if rel.split(|&b| b == b'/').any(|name| name == b"..") {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut dir: Option<OwnedFd> = None;
        for name in dirs.into_iter().flat_map(|d| d.split(|&b| b == b'/')) {
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
        let real = std::fs::canonicalize(&p).map_err(open_error)?;
        let Ok(below) = real.strip_prefix(&self.canonical) else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let through_links = real != p;
        let names = below.iter().map(|n| n.as_bytes());
        if through_links && !self.dotfiles && path::hidden_path(names) {
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
    pub fn read_dir(&self, rel: impl AsRef<OsStr>, opts: &ReadDirOpts) -> io::Result<DirListing> {
        let rel = rel.as_ref().as_bytes();
        let dir = self.open_resolved(rel, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)?;
        let mut out = DirListing::default();
        let mut buf = vec![0u8; 32 * 1024];
        let mut scanned = 0usize;
        // The index of the listed names' segment in a path below the root.
        let depth = if rel.is_empty() {
            0
        } else {
            rel.split(|&b| b == b'/').count()
        };
        'read: loop {
            let n = getdents(&dir, &mut buf)?;
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
                let shown = opts.dotfiles || !path::is_hidden(depth, name);
                let Some(name) = listable_name(name, shown) else {
                    continue;
                };
                if let Some(entry) = self.dir_entry(&dir, rel, name) {
                    out.entries.push(entry);
                }
            }
        }
        out.mtime = std::fs::File::from(dir)
            .metadata()
            .and_then(|m| m.modified())
            .ok();
        Ok(out)
    }

    /// Whether the directory `rel` beneath the root (opened the way
    /// `open_beneath` opens) holds a name `wanted` accepts, looking at no
    /// more than `max` names: None when it has more and none of those was
    /// one. Names only: nothing is stat'ed or opened.
    pub fn holds_name(
        &self,
        rel: &[u8],
        max: usize,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Option<bool>> {
        let dir = self.open_resolved(rel, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)?;
        let mut buf = [0u8; 8192];
        let mut seen = 0usize;
        loop {
            let n = getdents(&dir, &mut buf)?;
            if n == 0 {
                return Ok(Some(false));
            }
            for name in dirent_names(&buf[..n.min(buf.len())]) {
                if wanted(name) {
                    return Ok(Some(true));
                }
                seen += 1;
                if seen >= max {
                    return Ok(None);
                }
            }
        }
    }

    /// One entry of an open directory, or None when a listing leaves it out
    /// (gone, not a file or directory, a symlink out of the root or refused).
    fn dir_entry(&self, dir: &OwnedFd, rel: &[u8], name: &[u8]) -> Option<DirEntry> {
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
                name.to_vec()
            } else {
                [rel, b"/", name].concat()
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
        // A listing shows a time before 1970 as 1970.
        let mtime = time_of(st.st_mtime.max(0), st.st_mtime_nsec);
        Some(DirEntry {
            name: OsString::from_vec(name.to_vec()),
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
    fn open_resolved(&self, rel: &[u8], flags: i32) -> io::Result<OwnedFd> {
        #[cfg(test)]
        OPENS.with(|n| n.set(n.get() + 1));
        let opened = self.open_resolved_inner(rel, flags);
        if let Err(e) = &opened
            && out_of_descriptors(e)
        {
            record_shortage(rel, e);
        }
        opened
    }

    ///
    /// With dotfiles hidden, symlinks followed and openat2: first opened
    /// with no symlink followed (the common case, one call as before); a
    /// path that has one (ELOOP) is resolved by hand (`real_path`), refused
    /// when that reaches a hidden name, else opened as the symlink-free
    /// path it names, still RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: a link
    /// swapped in meanwhile fails the open, so what is opened is the path
    /// that was checked.
    fn open_resolved_inner(&self, rel: &[u8], flags: i32) -> io::Result<OwnedFd> {
        let rel = if rel.is_empty() { b"." } else { rel };
        let c = c_path(rel)?;
        let deny = self.symlinks == Symlinks::Deny;
        let check = !deny && !self.dotfiles;
        let fd = if self.beneath.load(Ordering::Relaxed) {
            match self.openat2(&c, flags, deny || check) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    self.beneath.store(false, Ordering::Relaxed);
                    return self.open_resolved_inner(rel, flags);
                }
                Err(e) if check && e.raw_os_error() == Some(libc::ELOOP) => {
                    let real = self.real_path(rel)?;
                    if path::hidden_path(real.iter().map(Vec::as_slice)) {
                        return Err(io::Error::from(io::ErrorKind::NotFound));
                    }
                    let real = if real.is_empty() {
                        b".".to_vec()
                    } else {
                        real.join(&b'/')
                    };
                    self.openat2(&c_path(real)?, flags, true)
                        .map_err(open_error)?
                }
                opened => opened.map_err(open_error)?,
            }
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

impl RootDir {
    /// openat2(2) of `rel` from the root's fd, RESOLVE_BENEATH (never
    /// above the root, no absolute symlink, no magic link); with
    /// `no_symlinks`, RESOLVE_NO_SYMLINKS too (any symlink: ELOOP). A raw
    /// fd, owned by the caller.
    fn openat2(&self, rel: &std::ffi::CStr, flags: i32, no_symlinks: bool) -> io::Result<RawFd> {
        // SAFETY: open_how is plain data; all-zero is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        if no_symlinks {
            how.resolve |= libc::RESOLVE_NO_SYMLINKS;
        }
        // SAFETY: openat2 reads `how` (size passed) and the NUL-terminated
        // path; both outlive the call. It returns a new fd or -1.
        syscall!(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd.as_raw_fd(),
                rel.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        })
        .map(|fd| fd as RawFd)
    }

    /// The segments below the root of the path `rel` names once every
    /// symlink in it is resolved, the way RESOLVE_BENEATH resolves them: a
    /// relative target is read from the link's directory, `..` goes up
    /// from where a link led (not from the link), and an absolute target, a
    /// step above the root, a loop or more than 40 links (the kernel's
    /// MAXSYMLINKS) is NotFound. Each readlinkat is of a prefix already
    /// resolved; a link swapped in meanwhile only changes the answer, and
    /// the caller opens that answer with no symlink followed.
    fn real_path(&self, rel: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        const MAX_LINKS: usize = 40;
        let not_found = || io::Error::from(io::ErrorKind::NotFound);
        // Segments still to walk, the next one last.
        let mut todo: Vec<Vec<u8>> = rel.rsplit(|&b| b == b'/').map(<[u8]>::to_vec).collect();
        let mut real: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        let mut target = vec![0u8; libc::PATH_MAX as usize];
        while let Some(seg) = todo.pop() {
            match &seg[..] {
                b"" | b"." => continue,
                b".." => {
                    real.pop().ok_or_else(not_found)?;
                    continue;
                }
                _ => real.push(seg),
            }
            let c = c_path(real.join(&b'/'))?;
            // SAFETY: `c` is NUL-terminated and `target` writable for its
            // length, both outlive the call; the root's fd is open (an
            // O_PATH directory fd is a valid dirfd). readlinkat writes at
            // most `target.len()` bytes and returns their count or -1.
            let n = unsafe {
                libc::readlinkat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    target.as_mut_ptr().cast(),
                    target.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINVAL) {
                    continue; // not a symlink: a real name
                }
                return Err(open_error(e));
            }
            let n = n as usize;
            links += 1;
            if links > MAX_LINKS || n == 0 || n >= target.len() || target[0] == b'/' {
                return Err(not_found());
            }
            real.pop();
            todo.extend(target[..n].rsplit(|&b| b == b'/').map(<[u8]>::to_vec));
        }
        Ok(real)
    }
}

/// A file's identity: its device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// What `path` names now, following symlinks (stat(2)): one call,
    /// nothing allocated (the path is already a C string).
    pub fn of_c(path: &std::ffi::CStr) -> io::Result<FileId> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `path` is NUL-terminated and `st` writable for one `stat`,
        // both outlive the call.
        syscall!(unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) })?;
        // SAFETY: stat succeeded, so it filled `st`.
        Ok(FileId::from_stat(&unsafe { st.assume_init() }))
    }

    /// What `path` names now, following symlinks.
    pub fn of(path: &Path) -> io::Result<FileId> {
        FileId::of_c(&c_path(path.as_os_str().as_bytes())?)
    }

    fn of_fd(fd: &OwnedFd) -> io::Result<FileId> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fd` is open (an O_PATH fd can be fstat'ed) and `st`
        // writable for one `stat`; both outlive the call.
        syscall!(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
        // SAFETY: fstat succeeded, so it filled `st`.
        Ok(FileId::from_stat(&unsafe { st.assume_init() }))
    }

    fn from_stat(st: &libc::stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
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

#[cfg(test)]
thread_local! {
    /// Paths opened beneath a root on this thread (`open_resolved`), so a
    /// test can count what a request costs.
    static OPENS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Paths opened beneath a root on this thread so far.
#[cfg(test)]
pub fn opens() -> u64 {
    OPENS.with(|n| n.get())
}

fn record_shortage(rel: &[u8], e: &io::Error) {
    SHORTAGE.with(|s| match &mut *s.borrow_mut() {
        Some(s) => s.count += 1,
        none => {
            *none = Some(Shortage {
                path: one_line(rel),
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

/// A name's bytes as text for a log line: on one line whatever they are, a
/// control character escaped (`\n`, `\u{1}`), a byte that is not UTF-8
/// shown as U+FFFD.
fn one_line(name: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(name).chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
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
    /// Bytes, as on disk: not necessarily UTF-8.
    pub name: OsString,
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
    /// The directory's own modification time (an entry added or removed).
    pub mtime: Option<SystemTime>,
}

/// One getdents64 call on the open directory `dir` into `buf`: how many
/// bytes of records it wrote (0 at the end of the directory).
fn getdents(dir: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`,
    // which is ours and outlives the call; `dir` is an open directory fd.
    let n = syscall!(unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    })?;
    Ok(n as usize)
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

/// `name` as a listing may show it: not "." or "..", no dot first unless
/// `dotfiles`. Any other name is requestable (percent-encoded), whatever
/// its bytes, so it is listed.
fn listable_name(name: &[u8], dotfiles: bool) -> Option<&[u8]> {
    if name.is_empty() || name == b"." || name == b".." || (!dotfiles && name.starts_with(b".")) {
        return None;
    }
    Some(name)
}

/// A path or name for a libc call; one with a NUL byte is InvalidInput.
fn c_path(b: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

#[cfg(test)]
mod tests;
