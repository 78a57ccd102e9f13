//! Dropping root privileges after the listeners are bound.

use std::ffi::CString;
use std::io;

use crate::syscall;

pub(super) fn lookup_user(name: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let c = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
    // SAFETY: getpwnam returns a pointer to static storage or NULL; we copy the
    // two ids out before any other call could overwrite it (single-threaded here).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::other(format!("unknown user {name:?}")));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

pub(super) fn lookup_group(name: &str) -> io::Result<libc::gid_t> {
    let c = CString::new(name).map_err(|_| io::Error::other("group name contains NUL"))?;
    // SAFETY: as for getpwnam: static storage, copied out immediately.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(io::Error::other(format!("unknown group {name:?}")));
    }
    // SAFETY: gr is non-null and points to a valid group record.
    Ok(unsafe { (*gr).gr_gid })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Switch to `uid` and `gid` (the ids `preflight` resolved and checked
/// for `user` and `group`). Must run before worker threads start, so every
/// thread has the new ids.
pub fn drop_to(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    let call =
        |name: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{name}: {e}"));
    // SAFETY: setgroups reads one gid from a live local.
    syscall!(unsafe { libc::setgroups(1, &gid) }).map_err(call("setgroups"))?;
    // SAFETY: setgid takes a plain id; no memory is involved.
    syscall!(unsafe { libc::setgid(gid) }).map_err(call("setgid"))?;
    // SAFETY: setuid takes a plain id; no memory is involved.
    syscall!(unsafe { libc::setuid(uid) }).map_err(call("setuid"))?;
    // Make sure there is no way back: this setuid(0) must fail.
    // SAFETY: setuid takes a plain id; no memory is involved.
    if uid != 0 && syscall!(unsafe { libc::setuid(0) }).is_ok() {
        return Err(io::Error::other(
            "privileges could be regained after setuid",
        ));
    }
    Ok(())
}
