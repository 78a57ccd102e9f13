//! The privileged opener: how a server that dropped its privileges
//! reopens its logs with the rights it opened them with, and reads its
//! certificate files on reload with the rights it read them with at start.
//!
//! `privs::drop_to` changes the ids of the whole process, every thread, so
//! after it nothing in the server can open a log that only root may write
//! (logrotate's `create 0640 root adm`). Like nginx's master, which keeps
//! root and reopens the logs for its workers, a tiny process forked before
//! the drop keeps root's rights and opens, on request, the log files the
//! server was started with, and only those: the server asks by index over a
//! socket pair and gets the descriptor back (SCM_RIGHTS) or the errno. It
//! holds nothing else (every other descriptor is closed) and ends when the
//! server's end of the socket closes.
//!
//! A log path that is a symlink at start is resolved then, once: the opener
//! opens the file it led to, by that path. Every open follows no symlink
//! anywhere in the path (`openat2` `RESOLVE_NO_SYMLINKS`; `O_NOFOLLOW` for
//! the last component where openat2 is missing), and only a regular file is
//! handed over, so a user that can write the log directory (or one above
//! it) cannot point a log name at a file only root may write; it opens
//! without blocking, so a FIFO in a log's place cannot hang it. A log path a reload brings in that
//! the server was not started with is opened by the server itself, with its
//! own rights, and checked for them like any reload (`check::preflight`).
//!
//! Certificate and key files (`tls_certificates`, as nginx's master, which
//! keeps root, reads them again on reload) are opened for reading only, by
//! the paths the config named at start, following symlinks (certbot's
//! `live/` names point at a renewal's new files); only a regular file is
//! handed over. A user that could write a directory on such a path could
//! point it elsewhere: keep them root's, as certbot does. Files a reload
//! names that the server did not start with are read with its own rights.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::syscall;

/// How long the server waits for the opener's answer (the main loop waits
/// meanwhile).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The server's end.
#[derive(Debug)]
pub struct Opener {
    paths: Vec<PathBuf>,
    sock: Mutex<Option<OwnedFd>>,
    pid: libc::pid_t,
}

/// How the opener opens one of its files.
struct Plan {
    path: std::ffi::CString,
    flags: libc::c_int,
    /// Certificate files follow symlinks (certbot's `live/` names are
    /// symlinks a renewal points at new files); logs follow none.
    follow: bool,
    /// The file status flags once open (O_NONBLOCK cleared).
    status: libc::c_int,
}

/// Fork the opener for the logs `logs` and the certificate files `reads`
/// (absolute), before privileges are dropped.
///
/// # Safety
///
/// The process must have one thread: the opener runs ordinary code
/// (allocation) after `fork`, as `pidfile::spawn_remover`'s keeper does.
pub unsafe fn spawn(logs: Vec<PathBuf>, reads: Vec<PathBuf>) -> io::Result<Opener> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::other(format!("{}: path contains NUL", p.display())))
    };
    // O_NONBLOCK: a FIFO put in a file's place must not hang the opener
    // (and the server waiting for it); cleared after the open.
    let common = libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let mut plans = Vec::new();
    for p in &logs {
        plans.push(Plan {
            path: c(&resolved(p))?,
            flags: common | libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW,
            follow: false,
            status: libc::O_APPEND,
        });
    }
    for p in &reads {
        plans.push(Plan {
            path: c(p)?,
            flags: common | libc::O_RDONLY,
            follow: true,
            status: 0,
        });
    }
    let paths = logs.into_iter().chain(reads).collect();
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two fds into a live array of two.
    syscall!(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two new fds owned by nobody else.
    let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (this function's contract), so the
    // child may run ordinary code after fork.
    let pid = syscall!(unsafe { libc::fork() })?;
    if pid == 0 {
        serve(theirs.as_raw_fd(), &plans);
    }
    drop(theirs);
    let tv = libc::timeval {
        tv_sec: ANSWER_WITHIN.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads a live timeval of the size passed.
    syscall!(unsafe {
        libc::setsockopt(
            mine.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(Opener {
        paths,
        sock: Mutex::new(Some(mine)),
        pid,
    })
}

/// The child: answer requests until the server's end closes, then exit.
fn serve(sock: RawFd, plans: &[Plan]) -> ! {
    // SAFETY: this is the child just forked, with one thread; it never
    // returns to the server's code, which owns the descriptors it closes.
    unsafe { crate::sys::become_helper(sock) };
    loop {
        let mut idx = [0u8; 4];
        // SAFETY: reads at most 4 bytes into a live array.
        let n = unsafe { libc::recv(sock, idx.as_mut_ptr().cast(), idx.len(), 0) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n != 4 {
            // EOF (the server is gone or done), or not a request.
            // SAFETY: _exit ends this process without running anything else.
            unsafe { libc::_exit(0) };
        }
        let plan = plans.get(u32::from_ne_bytes(idx) as usize);
        let (fd, errno) = match plan {
            Some(p) => match open_plan(p) {
                -1 => (
                    -1,
                    io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO),
                ),
                fd => (fd, 0),
            },
            None => (-1, libc::EINVAL),
        };
        // A regular file (or whatever the configured symlink named) only:
        // never a FIFO or device a name was swapped for.
        let status = plan.map_or(0, |p| p.status);
        // SAFETY: fcntl on the descriptor just opened; plain flag values.
        if fd >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFL, status) } != 0 {
            // Cannot happen for a descriptor we just opened; if it does, a
            // non-blocking log would drop lines on EAGAIN: refuse it.
            // SAFETY: closes the descriptor just opened.
            unsafe { libc::close(fd) };
            let _ = send_reply(sock, libc::EIO, -1);
            continue;
        }
        let errno = if fd >= 0 && !is_regular(fd) {
            // SAFETY: closes the descriptor just opened.
            unsafe { libc::close(fd) };
            libc::EPERM
        } else {
            errno
        };
        let fd = if errno == 0 { fd } else { -1 };
        let _ = send_reply(sock, errno, fd);
        if fd >= 0 {
            // SAFETY: the descriptor is ours and was handed over (a copy).
            unsafe { libc::close(fd) };
        }
    }
}

/// The path a log is opened by: a symlink at start is replaced by the file
/// it leads to, and the directory by its canonical path, so that the
/// opener's later opens need to follow no symlink.
fn resolved(p: &Path) -> PathBuf {
    let target = match std::fs::read_link(p) {
        Ok(t) if t.is_absolute() => t,
        Ok(t) => p.parent().unwrap_or(Path::new("/")).join(t),
        Err(_) => p.to_path_buf(),
    };
    match (
        target.parent().map(std::fs::canonicalize),
        target.file_name(),
    ) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => target,
    }
}

/// Open one of the opener's files as its plan says: the descriptor, or
/// -1 with errno set.
fn open_plan(p: &Plan) -> RawFd {
    if p.follow {
        // SAFETY: open reads a NUL-terminated path made before the fork.
        unsafe { libc::open(p.path.as_ptr(), p.flags) }
    } else {
        open_no_symlinks(&p.path, p.flags)
    }
}

/// open(2) of `c` following no symlink in any component: openat2 with
/// RESOLVE_NO_SYMLINKS, or, where the kernel has no openat2, open with the
/// O_NOFOLLOW in `flags` (the last component only). The descriptor, or -1
/// with errno set.
fn open_no_symlinks(c: &std::ffi::CStr, flags: libc::c_int) -> RawFd {
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = 0o644;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: openat2 reads `how` (size passed) and the NUL-terminated path;
    // both outlive the call. It returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    } as RawFd;
    if fd >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
        return fd;
    }
    // SAFETY: open reads a NUL-terminated path made before the fork.
    unsafe { libc::open(c.as_ptr(), flags, 0o644) }
}

/// Only a regular file is handed over: never a FIFO, device or directory a
/// log's name was swapped for.
fn is_regular(fd: RawFd) -> bool {
    // SAFETY: libc::stat is plain data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we own, into a live stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// One reply: the errno (0 for success) and, on success, the descriptor.
fn send_reply(sock: RawFd, errno: i32, fd: RawFd) -> io::Result<()> {
    let mut data = errno.to_ne_bytes();
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one descriptor, aligned for cmsghdr.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fd >= 0 {
        // SAFETY: CMSG_SPACE is arithmetic on a constant size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points to `space` bytes (cbuf is 32, space
        // is 24 for one fd), so the first header and its data fit.
        unsafe {
            let cm = libc::CMSG_FIRSTHDR(&msg);
            (*cm).cmsg_level = libc::SOL_SOCKET;
            (*cm).cmsg_type = libc::SCM_RIGHTS;
            (*cm).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: msg points to live iovec and control buffers.
        match syscall!(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(drop),
        }
    }
}

impl Opener {
    /// The index of `p` in the opener's list.
    fn index(&self, p: &Path) -> Option<u32> {
        let p = super::check::absolute(p);
        self.paths.iter().position(|q| *q == p).map(|i| i as u32)
    }

    fn request(&self, idx: u32) -> io::Result<File> {
        let mut guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let sock = guard
            .as_ref()
            .ok_or_else(|| io::Error::other("the log opener is gone"))?
            .as_raw_fd();
        let req = idx.to_ne_bytes();
        // SAFETY: sends 4 bytes from a live array.
        syscall!(unsafe { libc::send(sock, req.as_ptr().cast(), req.len(), libc::MSG_NOSIGNAL) })
            .map_err(|e| io::Error::new(e.kind(), format!("log opener: {e}")))?;
        let mut data = [0u8; 4];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut cbuf = [0u64; 4];
        // SAFETY: msghdr is plain data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = loop {
            // SAFETY: msg points to live iovec and control buffers;
            // MSG_CMSG_CLOEXEC marks a received descriptor close-on-exec.
            match syscall!(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // SO_RCVTIMEO passed (an open stuck on a dead network
                    // file system?). A late answer would be taken for the
                    // next request's: give the opener up (it ends when it
                    // sees its socket closed); later opens fail at once.
                    *guard = None;
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the log opener did not answer within {ANSWER_WITHIN:?}"),
                    ));
                }
                r => break r.map_err(|e| io::Error::new(e.kind(), format!("log opener: {e}")))?,
            }
        };
        // SAFETY: recvmsg filled msg's control buffer (or left it empty);
        // CMSG_FIRSTHDR returns null when there is no header.
        let fd = unsafe {
            let cm = libc::CMSG_FIRSTHDR(&msg);
            if cm.is_null()
                || (*cm).cmsg_level != libc::SOL_SOCKET
                || (*cm).cmsg_type != libc::SCM_RIGHTS
            {
                None
            } else {
                Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cm).cast::<RawFd>(),
                ))
            }
        };
        // SAFETY: a descriptor the kernel just installed for us; nobody
        // else owns it.
        let file = fd.map(|fd| unsafe { File::from_raw_fd(fd) });
        if n != 4 {
            return Err(io::Error::other("the log opener is gone"));
        }
        match (i32::from_ne_bytes(data), file) {
            (0, Some(f)) => Ok(f),
            (0, None) => Err(io::Error::other("log opener: no descriptor in its reply")),
            (errno, _) => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

impl crate::log::PrivilegedOpen for Opener {
    fn serves(&self, p: &Path) -> bool {
        self.index(p).is_some()
    }

    fn open(&self, p: &Path) -> io::Result<File> {
        match self.index(p) {
            Some(i) => self.request(i),
            None => Err(io::Error::other("not a log the opener was started with")),
        }
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        // Closing our end ends it; then reap it.
        drop(self.sock.lock().unwrap_or_else(|e| e.into_inner()).take());
        // Ignored on purpose: the only error is that it is reaped already.
        let _ = crate::sys::reap(self.pid);
    }
}
