//! Dropping root privileges after the listeners are bound.

use std::ffi::CString;
use std::io;

use crate::syscall;

/// The uid and primary gid of user `name`. Thread-safe (getpwnam_r, into a
/// buffer of our own), so `preflight` can run anywhere, tests included.
pub(super) fn lookup_user(name: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let c = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
    let found = lookup(|buf| {
        // SAFETY: passwd is plain C data; all-zero is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out = std::ptr::null_mut();
        // SAFETY: getpwnam_r reads the NUL-terminated `c` and writes only
        // into `pw` and `buf` (its strings), both live for the call, and the
        // pointer `out`; nothing static is involved.
        let r =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        (r, (!out.is_null()).then_some((pw.pw_uid, pw.pw_gid)))
    })?;
    found.ok_or_else(|| io::Error::other(format!("unknown user {name:?}")))
}

/// The gid of group `name` (getgrnam_r, thread-safe as `lookup_user`).
pub(super) fn lookup_group(name: &str) -> io::Result<libc::gid_t> {
    let c = CString::new(name).map_err(|_| io::Error::other("group name contains NUL"))?;
    let found = lookup(|buf| {
        // SAFETY: group is plain C data; all-zero is a valid value.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out = std::ptr::null_mut();
        // SAFETY: as for getpwnam_r: writes only into `gr`, `buf` and `out`.
        let r =
            unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
        (r, (!out.is_null()).then_some(gr.gr_gid))
    })?;
    found.ok_or_else(|| io::Error::other(format!("unknown group {name:?}")))
}

/// Run a `get*nam_r` call with a buffer for the record's strings, larger
/// while it says ERANGE. `call` returns the call's result and the ids it
/// found (`None`: no such name).
fn lookup<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (e, _) => return Err(io::Error::from_raw_os_error(e)),
        }
    }
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
