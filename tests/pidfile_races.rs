//! Two starts racing for one pidfile: the one refused names the other
//! only by a pid that is alive.

#[macro_use]
mod common;

use common::*;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Take a write OFD lock on the whole of `f`, as tandem takes its pidfile's.
fn ofd_write_lock(f: &std::fs::File) {
    // SAFETY: libc::flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl on an open descriptor with a pointer to a live flock.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
}

engine_tests! {
    fn a_starting_holder_is_not_named_by_a_dead_runs_pid(e) {
        let site = Site::new();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        // A dead process's pid, as a run killed with SIGKILL leaves it.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(&pidfile, format!("{dead}\n")).unwrap();
        // Another start has just locked it and not yet emptied it (two
        // starts racing): this test holds the lock as that start does.
        let held = OpenOptions::new().read(true).write(true).open(&pidfile).unwrap();
        ofd_write_lock(&held);
        let cfg = piddir.path().join("t.toml");
        let extra = format!("pidfile = {}\naccess_log = \"off\"", toml_str(&pidfile.display().to_string()));
        std::fs::write(&cfg, compose_config(&extra, &site.root, Path::new("/dev/null"))).unwrap();
        let mut cmd = Command::new(tandem_bin());
        cmd.args(["--engine", e, "-c"]).arg(&cfg);
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains("is locked: another tandem (pid unknown) is running"),
            "the refusal does not say another tandem holds it: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains(&format!("pid {dead}")),
            "the refusal names the dead run's pid {dead} as the running tandem: {}",
            out.stderr
        );
        drop(held);
    }
}
