//! Logs under rotation and faults, on both engines: a reopen that fails is
//! said on stderr and by `tandem -s reopen`'s exit status, and is tried again
//! until it works; the real `logrotate` with `create 0640 root adm` and
//! `user = "nobody"` loses no line; SIGHUP and SIGUSR1 reopen both logs, in
//! the draining generation too; a full disk (a small tmpfs) never tears a
//! JSON line and is reported once a second with the count of lines dropped.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    }
}

fn tandem_cmd(args: &[&str], cfg: &Path) -> RunOutput {
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("-c").arg(cfg).args(args);
    run_with_timeout(cmd, Duration::from_secs(40))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A tandem whose stderr goes to a file of its own, apart from its error
/// log, so a test can tell which of the two a line went to.
struct Raw {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    cfg: PathBuf,
    _dir: tempfile::TempDir,
}

impl Raw {
    /// Start with `cfg` (a whole config whose `error_log` is `errlog`);
    /// `None` (skipped) when io_uring is unavailable.
    fn start(engine: &str, cfg: &str, errlog: &Path) -> Option<Raw> {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("tandem.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let stderr = dir.path().join("stderr");
        let mut child = Command::new(tandem_bin())
            .args(["--engine", engine, "-c"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn tandem");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = read(errlog) + &read(&stderr);
            if let Some(&addr) = listening_addrs(&text).first() {
                return Some(Raw {
                    child,
                    addr,
                    stderr,
                    cfg: cfg_path,
                    _dir: dir,
                });
            }
            if let Some(st) = child.try_wait().unwrap() {
                if engine == "io_uring" && text.contains("io_uring") && text.contains("unavailable")
                {
                    skip(&format!("io_uring unavailable: {}", text.trim()));
                    return None;
                }
                panic!("tandem exited with {st} before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "tandem is not listening:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
    }

    fn stderr_text(&self) -> String {
        read(&self.stderr)
    }

    fn stop(&mut self) {
        send_signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "tandem did not stop");
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the file `pid` has open under a name ending in `suffix`
/// (e.g. `error.log (deleted)`), read through /proc.
fn open_file_text(pid: u32, suffix: &str) -> Option<String> {
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(t) = std::fs::read_link(e.path())
            && t.to_string_lossy().ends_with(suffix)
        {
            return std::fs::read_to_string(e.path()).ok();
        }
    }
    None
}

/// `GET /style.css?tag` on a new connection, 200.
fn hit(addr: SocketAddr, tag: &str) {
    let r = get(addr, &format!("/style.css?{tag}"));
    assert_status(&r, 200, tag);
}

/// Requests on one keep-alive connection until stopped; `done` counts the
/// answered ones, numbered from 0 in their query (`?n=N`).
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        let mut n = 0;
        while !stop.load(Ordering::Acquire) {
            let req = format!("GET /style.css?n={n} HTTP/1.1\r\nHost: t\r\n\r\n");
            let r = c.roundtrip(req.as_bytes());
            assert_status(&r, 200, &req);
            n += 1;
            done.store(n, Ordering::Release);
        }
    })
}

/// The `n` of every `?n=N` request line in `text`.
fn numbers(text: &str) -> Vec<usize> {
    text.lines()
        .filter_map(|l| {
            let i = l.find("?n=")? + 3;
            l[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tandem-test",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

engine_tests! {
    fn a_reopen_into_a_deleted_directory_fails_loudly_and_recovers(e) {
        // `rm -rf` of the log directory, then a reopen: it cannot work. It
        // must be said where an operator sees it (stderr, the journal under
        // systemd; the old error log is unlinked), `-s reopen` must fail,
        // "logs reopened" must not be said, and each later reopen must try
        // again: once the directory is back, every later line is in the
        // new files.
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        let logdir = base.path().join("logs");
        std::fs::create_dir(&logdir).unwrap();
        let (errlog, access) = (logdir.join("error.log"), logdir.join("access.log"));
        let cfg = compose_config(
            &format!(
                "error_log = {}\npidfile = {}",
                toml_str(&errlog.display().to_string()),
                toml_str(&base.path().join("tandem.pid").display().to_string())
            ),
            &site.root,
            &access,
        );
        let Some(mut srv) = Raw::start(e, &cfg, &errlog) else { return };
        hit(srv.addr, "before");
        assert!(wait_file(&access, WAIT, |t| t.contains("?before")).is_some(), "no access line");

        std::fs::remove_dir_all(&logdir).unwrap();
        for attempt in 0..2 {
            let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
            assert_eq!(out.status.code(), Some(1), "-s reopen #{attempt} into a deleted directory: {out:?}");
            for log in ["error_log", "access_log"] {
                assert!(out.stderr.contains(log) && out.stderr.contains("No such file or directory"), "-s reopen names {log}: {}", out.stderr);
                let want = format!("cannot reopen {log} {}", logdir.display());
                let n = count_occurrences(&srv.stderr_text(), &want);
                assert_eq!(n, attempt + 1, "`{want}` on tandem's stderr after attempt {attempt}:\n{}", srv.stderr_text());
            }
            hit(srv.addr, &format!("during{attempt}"));
        }
        let old = open_file_text(srv.child.id(), "error.log (deleted)").expect("the old error log is still open");
        assert!(!old.contains("logs reopened") && !stderr_has_reopened(&srv), "said `logs reopened` after failing:\n{old}");

        std::fs::create_dir(&logdir).unwrap();
        let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
        assert_eq!(out.status.code(), Some(0), "-s reopen once the directory is back: {out:?}");
        assert!(out.stdout.contains("reopened its logs"), "{out:?}");
        assert!(wait_file(&errlog, WAIT, |t| t.contains("logs reopened")).is_some(), "no `logs reopened` in the new error log");
        hit(srv.addr, "after");
        assert!(wait_file(&access, WAIT, |t| t.contains("?after")).is_some(), "the request after the reopen is not in the new access log");
        srv.stop();
        // (The lines of the requests made meanwhile went to the old file or,
        // flushed after the reopen, to the new one.)
        let new_err = read(&errlog);
        assert!(new_err.contains("stopped"), "later error-log lines went elsewhere:\n{new_err}");
    }

    fn a_reopen_that_fails_for_one_log_names_that_one(e) {
        // Only the access log's directory is gone: the error log is
        // reopened and says so by name, the access log is not, and
        // nothing says "logs reopened"; once the directory is back, a
        // reload (not only SIGUSR1) tries again and succeeds.
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        let adir = base.path().join("access");
        std::fs::create_dir(&adir).unwrap();
        let (errlog, access) = (base.path().join("error.log"), adir.join("access.log"));
        let cfg = compose_config(
            &format!(
                "error_log = {}\npidfile = {}",
                toml_str(&errlog.display().to_string()),
                toml_str(&base.path().join("tandem.pid").display().to_string())
            ),
            &site.root,
            &access,
        );
        let Some(mut srv) = Raw::start(e, &cfg, &errlog) else { return };
        std::fs::remove_dir_all(&adir).unwrap();
        let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
        assert_eq!(out.status.code(), Some(1), "-s reopen without the access log's directory: {out:?}");
        assert!(out.stderr.contains(&format!("access_log {}", access.display())) && !out.stderr.contains("error_log"), "{out:?}");
        let err = wait_file(&errlog, WAIT, |t| t.contains("error_log reopened")).unwrap_or_else(|| panic!("no `error_log reopened`:\n{}", read(&errlog)));
        assert!(err.contains("cannot reopen access_log") && !err.contains("logs reopened") && !err.contains("access_log reopened"), "{err}");
        // A reload retries too (every SIGHUP reopens both logs).
        std::fs::create_dir(&adir).unwrap();
        let out = tandem_cmd(&["-s", "reload"], &srv.cfg);
        assert_eq!(out.status.code(), Some(0), "-s reload once the directory is back: {out:?}");
        assert!(wait_file(&errlog, WAIT, |t| t.contains("logs reopened")).is_some(), "the reload did not reopen the logs:\n{}", read(&errlog));
        hit(srv.addr, "after");
        assert!(wait_file(&access, WAIT, |t| t.contains("?after")).is_some(), "the request after the reopen is not in the new access log");
        srv.stop();
    }

    fn logrotate_create_root_adm_with_user_nobody_loses_no_line(e) {
        // The setup: `user = "nobody"`, logrotate's `create 0640
        // root adm` and `-s reopen` in postrotate. The reopen needs root's
        // rights (the new files are root's), `-s reopen` must wait for it
        // (logrotate's next run deletes what the server kept writing to),
        // and the files stay root:adm 0640. Two rotations with `rotate 1`:
        // every request answered after the first one ended must be in the
        // files that are left.
        let Some(nobody) = uid_of_user("nobody").filter(|_| running_as_root()) else {
            skip("needs root and a `nobody` user");
            return;
        };
        let Some(logrotate) = ["/usr/sbin/logrotate", "/sbin/logrotate", "/usr/bin/logrotate"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            skip("logrotate is not installed (Debian package logrotate; .ci/run installs it)");
            return;
        };
        let adm = std::fs::read_to_string("/etc/group")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("adm:x:")?.split(':').next()?.parse::<u32>().ok());
        let Some(adm) = adm else {
            skip("no group adm");
            return;
        };
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        set_mode(base.path(), 0o755);
        let logdir = base.path().join("logs");
        std::fs::create_dir(&logdir).unwrap();
        // nobody's own directory, as many setups have it: the start is
        // fine either way; the files logrotate creates are not nobody's.
        std::os::unix::fs::chown(&logdir, Some(nobody), None).unwrap();
        set_mode(&logdir, 0o755);
        let (errlog, access) = (logdir.join("error.log"), logdir.join("access.log"));
        let extra = format!(
            "user = \"nobody\"\nworkers = 2\nerror_log = {}\naccess_log = {}\npidfile = {}",
            toml_str(&errlog.display().to_string()),
            toml_str(&access.display().to_string()),
            toml_str(&base.path().join("tandem.pid").display().to_string())
        );
        let opts = Launch { tail: Some(errlog.clone()), ..Default::default() };
        let Some(mut srv) = Server::launch(e, &extra, &site.root, opts) else { return };
        let conf = base.path().join("logrotate.conf");
        std::fs::write(
            &conf,
            format!(
                "{access} {errlog} {{\n  rotate 1\n  create 0640 root adm\n  sharedscripts\n  postrotate\n    {bin} -c {cfg} -s reopen\n  endscript\n}}\n",
                access = access.display(),
                errlog = errlog.display(),
                bin = tandem_bin(),
                cfg = srv.config_path().display()
            ),
        )
        .unwrap();
        let state = base.path().join("logrotate.state");
        let rotate = || {
            let mut cmd = Command::new(logrotate);
            cmd.arg("-f").arg("-s").arg(&state).arg(&conf);
            run_with_timeout(cmd, Duration::from_secs(60))
        };

        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let h = load(srv.addr(), stop.clone(), done.clone());
        let answered = |n| wait_until(WAIT, || done.load(Ordering::Acquire) >= n);
        assert!(answered(100), "load did not start");
        let out = rotate();
        assert!(out.status.success(), "logrotate #1: {out:?}");
        let mark = done.load(Ordering::Acquire);
        assert!(answered(mark + 200), "load stalled after rotation #1");
        let out = rotate();
        assert!(out.status.success(), "logrotate #2: {out:?}");
        let mark2 = done.load(Ordering::Acquire);
        assert!(answered(mark2 + 200), "load stalled after rotation #2");
        stop.store(true, Ordering::Release);
        h.join().expect("load thread");
        let total = done.load(Ordering::Acquire);
        let st = srv.terminate(WAIT);
        assert!(st.success(), "exit: {st}");

        let mut seen = vec![false; total];
        for p in [access.clone(), logdir.join("access.log.1")] {
            for n in numbers(&read(&p)) {
                assert!(n < total && !seen[n], "request {n} logged twice or never made ({})", p.display());
                seen[n] = true;
            }
        }
        let lost: Vec<usize> = (mark..total).filter(|&n| !seen[n]).collect();
        assert!(lost.is_empty(), "{} of the {} requests after rotation #1 are in no access log left (first: {:?})\n{}", lost.len(), total - mark, &lost[..lost.len().min(5)], srv.stderr_text());
        use std::os::unix::fs::MetadataExt;
        for p in [&access, &errlog] {
            let m = std::fs::metadata(p).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (0, adm, 0o640), "{} as logrotate made it", p.display());
        }
        let err = read(&errlog);
        assert!(err.contains("logs reopened") && err.contains("stopped"), "the newest error log:\n{err}");
        assert!(!srv.stderr_text().contains("cannot reopen"), "{}", srv.stderr_text());
    }

    fn a_log_name_pointed_elsewhere_is_not_opened_with_roots_rights(e) {
        // The reopen runs with root's rights (`user` drops them for the
        // server). A user that can write the log directory must not get
        // a root-only file opened for it by swapping the log's name for a
        // symlink, nor hang the server with a FIFO: each reopen fails,
        // promptly, and the root-only file is untouched.
        let Some(nobody) = uid_of_user("nobody").filter(|_| running_as_root()) else {
            skip("needs root and a `nobody` user");
            return;
        };
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        set_mode(base.path(), 0o755);
        let secret = base.path().join("root-only");
        std::fs::write(&secret, "ROOT ONLY\n").unwrap();
        set_mode(&secret, 0o600);
        let logdir = base.path().join("logs");
        std::fs::create_dir(&logdir).unwrap();
        std::os::unix::fs::chown(&logdir, Some(nobody), None).unwrap();
        let access = logdir.join("access.log");
        let errlog = base.path().join("error.log");
        let cfg = compose_config(
            &format!(
                "user = \"nobody\"\nerror_log = {}\npidfile = {}",
                toml_str(&errlog.display().to_string()),
                toml_str(&base.path().join("tandem.pid").display().to_string())
            ),
            &site.root,
            &access,
        );
        let Some(srv) = Raw::start(e, &cfg, &errlog) else { return };
        std::fs::remove_file(&access).unwrap();
        std::os::unix::fs::symlink(&secret, &access).unwrap();
        let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
        assert_eq!(out.status.code(), Some(1), "-s reopen with the log name pointed at a root-only file: {out:?}");
        hit(srv.addr, "probe");
        let old = wait_until(WAIT, || open_file_text(srv.child.id(), "access.log (deleted)").is_some_and(|t| t.contains("?probe")));
        assert!(old, "the request went nowhere");
        assert_eq!(read(&secret), "ROOT ONLY\n", "the root-only file was written to");

        std::fs::remove_file(&access).unwrap();
        let mkfifo = Command::new("mkfifo").arg(&access).status().unwrap();
        assert!(mkfifo.success());
        let t = Instant::now();
        let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
        assert_eq!(out.status.code(), Some(1), "-s reopen with a FIFO in the log's place: {out:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "the reopen took {:?}", t.elapsed());
        hit(srv.addr, "still-serving");
    }

    fn a_stuck_log_opener_does_not_hang_the_server(e) {
        // The helper that reopens with root's rights stops answering
        // (SIGSTOP stands in for an open stuck on a dead file system): the
        // reopen fails after 5 s instead of holding the main loop, later
        // ones fail at once, and the server keeps serving and reloading.
        let Some(_) = uid_of_user("nobody").filter(|_| running_as_root()) else {
            skip("needs root and a `nobody` user");
            return;
        };
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        set_mode(base.path(), 0o755);
        let errlog = base.path().join("error.log");
        let cfg = compose_config(
            &format!(
                "user = \"nobody\"\nerror_log = {}\npidfile = {}",
                toml_str(&errlog.display().to_string()),
                toml_str(&base.path().join("tandem.pid").display().to_string())
            ),
            &site.root,
            &base.path().join("access.log"),
        );
        let Some(srv) = Raw::start(e, &cfg, &errlog) else { return };
        let pid = srv.child.id();
        let kids = read(Path::new(&format!("/proc/{pid}/task/{pid}/children")));
        let opener: Vec<u32> = kids
            .split_whitespace()
            .filter_map(|k| k.parse().ok())
            .filter(|k| {
                std::fs::read_dir(format!("/proc/{k}/fd")).is_ok_and(|d| {
                    d.flatten().any(|f| std::fs::read_link(f.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                })
            })
            .collect();
        assert_eq!(opener.len(), 1, "one helper with a socket among tandem's children {kids:?}");
        send_signal(opener[0], libc::SIGSTOP);
        let t = Instant::now();
        let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
        assert_eq!(out.status.code(), Some(1), "-s reopen with the opener stopped: {out:?}");
        assert!(out.stderr.contains("did not answer"), "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
        hit(srv.addr, "still-serving");
        let t = Instant::now();
        let out = tandem_cmd(&["-s", "reopen"], &srv.cfg);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "the second reopen waited again: {:?}", t.elapsed());
        let out = tandem_cmd(&["-s", "reload"], &srv.cfg);
        assert_eq!(out.status.code(), Some(0), "-s reload: {out:?}");
        hit(srv.addr, "after-reload");
        send_signal(opener[0], libc::SIGCONT);
        assert!(wait_pid_gone(opener[0], WAIT), "the given-up opener did not end");
    }

    fn sighup_and_sigusr1_reopen_both_logs_in_every_generation(e) {
        // SIGHUP reopens the error log as well as the access log, and a
        // worker generation still draining after a reload (here: serving
        // a download the client is slow to read) gets SIGUSR1's reopen: its
        // last access line lands in the new file.
        let site = Site::new();
        let huge = site.path("huge.bin");
        // Bigger than what the socket buffers of a client that stops
        // reading can take (the send buffer grows to 4 MiB at most).
        const HUGE: usize = 64 << 20;
        std::fs::File::create(&huge).unwrap().set_len(HUGE as u64).unwrap();
        let logdir = tempfile::tempdir().unwrap();
        let errlog = logdir.path().join("error.log");
        let extra = format!(
            "error_log = {}\nworkers = 1\nshutdown_timeout = \"60s\"",
            toml_str(&errlog.display().to_string())
        );
        let opts = Launch { tail: Some(errlog.clone()), ..Default::default() };
        let Some(mut srv) = Server::launch(e, &extra, &site.root, opts) else { return };
        let access = srv.access_log_path().to_path_buf();

        let mut slow = TcpStream::connect(srv.addr()).unwrap();
        slow.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut first = [0u8; 1024];
        slow.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = slow.read(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200"), "{}", show(&first[..got]));

        std::fs::rename(&access, logdir.path().join("access.log.1")).unwrap();
        std::fs::rename(&errlog, logdir.path().join("error.log.1")).unwrap();
        srv.reload(WAIT).unwrap_or_else(|l| panic!("reload: {l}"));
        assert!(wait_file(&errlog, WAIT, |t| t.contains("reloaded: ")).is_some(), "SIGHUP did not reopen the error log: `reloaded:` went to the old one");
        hit(srv.addr(), "after-hup");
        assert!(wait_file(&access, WAIT, |t| t.contains("?after-hup")).is_some(), "SIGHUP did not reopen the access log");

        let old_access = logdir.path().join("access.log.2");
        std::fs::rename(&access, &old_access).unwrap();
        srv.signal(libc::SIGUSR1);
        // The SIGHUP's reopen said it once in this file; SIGUSR1's is the second.
        assert!(wait_file(&errlog, WAIT, |t| count_occurrences(t, "logs reopened") == 2).is_some(), "no `logs reopened` after SIGUSR1");
        // The old generation finishes its download now.
        let mut buf = vec![0u8; 1 << 20];
        while got < HUGE {
            let n = slow.read(&mut buf).unwrap();
            assert!(n > 0, "download cut at {got}");
            got += n;
        }
        assert!(
            wait_file(&access, WAIT, |t| t.contains("GET /huge.bin")).is_some(),
            "the draining generation's line is not in the reopened access log; the one renamed away has:\n{}",
            read(&old_access)
        );
        srv.assert_healthy("after the reopens");
    }

    fn a_full_disk_keeps_json_lines_whole_and_counts_what_it_dropped(e) {
        // The access log on a small tmpfs that fills up: writes fail part
        // way through a line. The torn line must be completed before the
        // next (every line valid JSON), the failure said once a second
        // with the count of lines dropped, and lines in the file plus
        // lines reported dropped must be every request.
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        let mnt = base.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let _fs = match Tmpfs::mount(&mnt, "128k") {
            Ok(t) => t,
            Err(why) => {
                skip(&format!("cannot mount a tmpfs ({why}); needs root"));
                return;
            }
        };
        let access = mnt.join("access.log");
        let extra = format!(
            "access_log = {}\naccess_log_format = \"json\"\nworkers = 1",
            toml_str(&access.display().to_string())
        );
        let mut srv = start_or_skip!(e, &extra, &site.root);
        let mut c = Conn::connect(srv.addr());
        let mut sent = 0usize;
        let req = |c: &mut Conn, sent: &mut usize, tag: &str| {
            let q = format!("GET /style.css?{tag}={sent} HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_status(&c.roundtrip(q.as_bytes()), 200, &q);
            *sent += 1;
        };
        req(&mut c, &mut sent, "n");
        assert!(wait_file(&access, WAIT, |t| !t.is_empty()).is_some(), "no access log line");
        // Fill the rest of the disk (the log's last page keeps its room).
        let filler = mnt.join("filler");
        {
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![b'x'; 512];
            while f.write_all(&chunk).is_ok() {}
            let chunk = [b'x'; 1];
            while f.write_all(&chunk).is_ok() {}
        }
        const FAILED: &str = "write failed: No space left on device";
        let t0 = Instant::now();
        while !srv.stderr_text().contains(FAILED) {
            assert!(t0.elapsed() < WAIT, "no `{FAILED}` report:\n{}", srv.stderr_text());
            req(&mut c, &mut sent, "n");
        }
        // Keep logging into the full disk for a while.
        let t1 = Instant::now();
        while t1.elapsed() < Duration::from_millis(3500) {
            req(&mut c, &mut sent, "n");
            std::thread::sleep(Duration::from_millis(5)); // request pacing, not a wait
        }
        let failing_secs = t0.elapsed().as_secs() + 1;
        std::fs::remove_file(&filler).unwrap();
        for _ in 0..20 {
            req(&mut c, &mut sent, "after");
        }
        assert!(
            srv.wait_stderr("writing again", WAIT) && wait_file(&access, WAIT, |t| t.contains(&format!("after={}", sent - 1))).is_some(),
            "the log did not recover:\n{}",
            srv.stderr_text()
        );
        let reports: Vec<String> = srv.stderr_text().lines().filter(|l| l.contains("access_log") && l.contains("line(s) dropped")).map(str::to_string).collect();
        let failures = reports.iter().filter(|l| l.contains(FAILED)).count() as u64;
        assert!(
            (1..=failing_secs + 1).contains(&failures),
            "{failures} failure reports in about {failing_secs}s, want one a second at most:\n{}",
            reports.join("\n")
        );
        let dropped: usize = reports
            .iter()
            .map(|l| {
                let i = l.find("; ").unwrap() + 2;
                l[i..].split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum();
        let text = read(&access);
        assert!(text.ends_with('\n'), "the access log ends inside a line");
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|err| panic!("not one JSON object ({err}): {l:?}"));
            assert!(v.is_object(), "{l:?}");
        }
        let lines = text.lines().count();
        assert!(dropped > 0, "nothing was dropped: the disk did not fill?");
        note(&format!("{sent} requests: {lines} lines in the file, {dropped} dropped, {failures} failure report(s) in about {failing_secs}s"));
        assert_eq!(lines + dropped, sent, "{lines} lines in the file + {dropped} reported dropped vs {sent} requests");
        drop(c);
        srv.terminate(WAIT);
    }
}

fn stderr_has_reopened(srv: &Raw) -> bool {
    srv.stderr_text().contains("logs reopened")
}
