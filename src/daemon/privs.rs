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

/// Who tandem serves as after dropping root: a user's uid, the gid it
/// runs with (its primary group, or `group`), and its supplementary groups
/// as the group database lists them, as `initgroups` (nginx's way) would
/// set them: a key made readable to group `ssl-cert` stays readable to a
/// `user` in that group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// `gid` first, then the user's other groups.
    pub groups: Vec<libc::gid_t>,
}

impl Ids {
    /// The ids of user `name` running with group `gid`.
    pub(super) fn of(name: &str, uid: libc::uid_t, gid: libc::gid_t) -> io::Result<Ids> {
        let c = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
        let mut groups: Vec<libc::gid_t> = vec![0; 32];
        loop {
            let mut n = groups.len() as libc::c_int;
            // SAFETY: getgrouplist reads the NUL-terminated `c` and writes at
            // most `n` gids into `groups` (live, of that length), then stores
            // how many there are in `n`.
            let r = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
            if r >= 0 {
                groups.truncate(n.max(0) as usize);
                break;
            }
            if groups.len() >= 65536 {
                return Err(io::Error::other(format!(
                    "user {name:?} is in too many groups"
                )));
            }
            // -1: too small; `n` says how many are needed.
            let need = (n.max(0) as usize).max(groups.len() * 2);
            groups.resize(need, 0);
        }
        groups.retain(|&g| g != gid);
        groups.insert(0, gid);
        Ok(Ids { uid, gid, groups })
    }
}

/// Switch to `ids` (which `preflight` resolved and checked for `user` and
/// `group`). Must run before worker threads start, so every thread has the
/// new ids.
pub fn drop_to(ids: &Ids) -> io::Result<()> {
    let (uid, gid) = (ids.uid, ids.gid);
    let call =
        |name: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{name}: {e}"));
    // SAFETY: setgroups reads `groups.len()` gids from the live vector.
    syscall!(unsafe { libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) })
        .map_err(call("setgroups"))?;
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

/// CAP_BPF (linux/capability.h); kernels before 5.8 do not know it.
const CAP_BPF: u32 = 39;

/// Give up CAP_BPF for good, if the process holds it: it serves only to
/// load the hold-off program at start (`holdoff`), and a server started
/// unprivileged with it as an ambient capability (`systemd/tandem.service`)
/// should not keep a capability it no longer needs. Removes it from the
/// ambient, effective, permitted and inheritable sets; the bounding set
/// needs CAP_SETPCAP to change, and without the permitted bit the process
/// cannot raise CAP_BPF again anyway (it runs with NoNewPrivileges, or
/// execs nothing). A kernel that does not know CAP_BPF has nothing to drop.
pub fn drop_bpf_capability() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let (word, bit) = ((CAP_BPF / 32) as usize, 1u32 << (CAP_BPF % 32));
    // SAFETY: prctl with integer arguments only. EINVAL means the kernel
    // knows no CAP_BPF (or no ambient set): then it is not held either.
    let lowered = syscall!(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_LOWER,
            CAP_BPF as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    });
    if let Err(e) = lowered
        && e.raw_os_error() != Some(libc::EINVAL)
    {
        return Err(io::Error::new(
            e.kind(),
            format!("PR_CAP_AMBIENT_LOWER: {e}"),
        ));
    }
    let mut head = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads `head` and writes two `Data` records (version 3
    // uses two), into the live array of two.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut head, data.as_mut_ptr()) };
    syscall!(got as libc::c_int).map_err(|e| io::Error::new(e.kind(), format!("capget: {e}")))?;
    let d = &mut data[word];
    if (d.effective | d.permitted | d.inheritable) & bit == 0 {
        return Ok(());
    }
    d.effective &= !bit;
    d.permitted &= !bit;
    d.inheritable &= !bit;
    // SAFETY: capset reads `head` and the two `Data` records of the live
    // array; lowering capabilities needs no privilege.
    let set = unsafe { libc::syscall(libc::SYS_capset, &head, data.as_ptr()) };
    syscall!(set as libc::c_int).map_err(|e| io::Error::new(e.kind(), format!("capset: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ids::of` lists what `id -G` (the group database, as `initgroups`
    /// reads it) says, with the running group first: for every user of this
    /// machine that has supplementary groups, and for root.
    #[test]
    fn ids_list_supplementary_groups_as_id_does() {
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let mut users: Vec<String> = groups
            .lines()
            .filter_map(|l| l.split(':').nth(3))
            .flat_map(|m| m.split(','))
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        users.push("root".into());
        users.sort();
        users.dedup();
        for user in users {
            let Ok((uid, gid)) = lookup_user(&user) else {
                continue;
            };
            let out = std::process::Command::new("id")
                .args(["-G", &user])
                .output();
            let Some(out) = out.ok().filter(|o| o.status.success()) else {
                continue;
            };
            let mut want: Vec<libc::gid_t> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(|g| g.parse().unwrap())
                .collect();
            let ids = Ids::of(&user, uid, gid).unwrap();
            assert_eq!(ids.groups[0], gid, "{user}: the running group first");
            let mut got = ids.groups.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{user}: groups");
        }
    }
}
