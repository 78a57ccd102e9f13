//! The operator's side of the command line: `--listen` and `--root` without a
//! config (and over one, reloads included), a busy port, what `-t` checks
//! (and that a start agrees with it), and `-V`.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A tandem started by hand (no harness config), its stderr in a file.
struct Proc {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// `tandem ARGS` in `cwd`; waits for its `serving` line, or returns
    /// `None` after a SKIP when io_uring is unavailable.
    fn start(engine: &str, args: &[&str], cwd: &Path) -> Option<Proc> {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let child = Command::new(tandem_bin())
            .args(["--engine", engine])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proc {
            child,
            stderr,
            _dir: dir,
        };
        let up = wait_file(&p.stderr, START_TIMEOUT, |t| t.contains(" serving "));
        if up.is_none() {
            let st = p.child.try_wait().unwrap();
            let text = p.text();
            if st.is_some() && text.contains("io_uring") && text.contains("unavailable") {
                skip(&format!("io_uring unavailable: {}", text.trim()));
                return None;
            }
            panic!("tandem {args:?} did not start ({st:?}):\n{text}");
        }
        Some(p)
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_text(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_file(&self.stderr, Duration::from_secs(10), pred)
            .unwrap_or_else(|| panic!("tandem's stderr:\n{}", self.text()))
    }

    fn signal(&self, sig: i32) {
        send_signal(self.child.id(), sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- tandem stderr ---\n{}", self.text());
        }
    }
}

/// A directory with `www/index.html` saying `text`.
fn site_dir(text: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    set_mode(d.path(), 0o755);
    fs::create_dir(d.path().join("www")).unwrap();
    fs::write(d.path().join("www/index.html"), text).unwrap();
    d
}

engine_tests! {
    fn listen_and_root_flags_need_no_config(e) {
        let d = site_dir("FLAGS-ONLY\n");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        // A relative --root: the startup line shows it absolute.
        let Some(p) = Proc::start(e, &["--listen", &addr, "--root", "www"], d.path()) else { return };
        let www = d.path().join("www");
        let text = p.text();
        assert!(text.contains(&format!("listening on {addr}")), "{text}");
        assert!(text.contains(&format!("serving {} with engine {e}", www.display())), "{text}");
        assert_eq!(get(addr.parse().unwrap(), "/").body_str(), "FLAGS-ONLY\n");
    }

    fn listen_and_root_flags_win_over_the_config_on_reload_too(e) {
        let d = site_dir("FROM-FLAG\n");
        let other = d.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("index.html"), "FROM-CONFIG\n").unwrap();
        let (flag_port, cfg_port) = (free_port(), free_port());
        let cfg = d.path().join("t.toml");
        let write_cfg = |root: &Path, port: u16| {
            fs::write(&cfg, format!(
                "listen = [\"127.0.0.1:{port}\"]\nroot = {}\naccess_log = \"off\"\n",
                toml_str(&root.display().to_string())
            )).unwrap();
        };
        write_cfg(&other, cfg_port);
        let flag_addr: SocketAddr = format!("127.0.0.1:{flag_port}").parse().unwrap();
        let Some(p) = Proc::start(
            e,
            &["-c", cfg.to_str().unwrap(), "--listen", &flag_addr.to_string(), "--root", "www"],
            d.path(),
        ) else { return };
        assert_eq!(get(flag_addr, "/").body_str(), "FROM-FLAG\n");
        assert!(std::net::TcpStream::connect(("127.0.0.1", cfg_port)).is_err(), "the config's port is served too");
        // The config changes both; the flags still win after a reload.
        let other2 = d.path().join("other2");
        fs::create_dir(&other2).unwrap();
        write_cfg(&other2, free_port());
        p.signal(libc::SIGHUP);
        let text = p.wait_text(|t| t.contains("reloaded: ") || t.contains("reload failed"));
        let line = text.lines().find(|l| l.contains("reloaded: ")).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains(&format!("root {}", d.path().join("www").display())), "{line}");
        assert_eq!(get(flag_addr, "/").body_str(), "FROM-FLAG\n");
        assert_eq!(listening_addrs(&p.text()), vec![flag_addr], "{}", p.text());
    }

    // An empty file (or one of only comments) is what an editor that
    // truncates first, or a config tool caught mid-write, leaves when the
    // SIGHUP comes: `-t`, a start and a reload all refuse it, naming the
    // file; so are a reload that drops every listener and one whose root
    // is not there. The running config keeps serving through each.
    fn a_config_that_says_nothing_is_refused(e) {
        let site = Site::new();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("empty.toml", ""), ("comments.toml", "# tandem.toml\n\n   # to be written\n\t\n")] {
            let cfg = dir.path().join(name);
            fs::write(&cfg, text).unwrap();
            for args in [&["-t"][..], &[][..]] {
                let mut cmd = Command::new(tandem_bin());
                cmd.args(["--engine", e]).args(args).arg("-c").arg(&cfg).current_dir(dir.path());
                let out = run_with_timeout(cmd, EXIT_TIMEOUT);
                assert_eq!(out.status.code(), Some(2), "tandem {args:?} -c {name}: {}", out.stderr);
                let want = format!("tandem: {}: the file sets nothing", cfg.display());
                assert!(out.stderr.contains(&want), "tandem {args:?} -c {name}: want {want:?} in:\n{}", out.stderr);
                assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
            }
        }

        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!("pidfile = {}", toml_str(&pidfile.display().to_string()));
        let srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n')).expect("pidfile");
        let cfg = srv.config_path().to_path_buf();
        let serving = |ctx: &str| {
            let r = get(srv.addr(), "/");
            assert_eq!(r.status, 200, "{ctx}: {}", r.describe());
            assert!(r.body_str().contains("ROOT-INDEX-PAGE"), "{ctx}: {}", r.body_str());
            assert_eq!(listening_addrs(&srv.stderr_text()), vec![srv.addr()], "{ctx}:\n{}", srv.stderr_text());
        };
        serving("at start");
        for text in ["", "# only comments\n\n"] {
            // SIGHUP straight to the server (the file is read by the server).
            fs::write(&cfg, text).unwrap();
            let line = srv.reload(Duration::from_secs(10)).expect_err("an empty config was reloaded");
            assert!(line.contains(&format!("{}: the file sets nothing", cfg.display())), "{line}");
            serving(&format!("after reloading {text:?}"));
            // `-s reload` reads the file first and refuses before signalling.
            let mut cmd = Command::new(tandem_bin());
            cmd.args(["-s", "reload", "-c"]).arg(&cfg);
            let out = run_with_timeout(cmd, EXIT_TIMEOUT);
            assert_eq!(out.status.code(), Some(2), "-s reload of {text:?}: {}", out.stderr);
            assert!(out.stderr.contains("the file sets nothing"), "{}", out.stderr);
        }
        // No listener left: refused, by the server and through -s reload.
        srv.write_config(&format!("{extra}\nlisten = []"), &site.root);
        let line = srv.reload(Duration::from_secs(10)).expect_err("a reload dropped every listener");
        assert!(line.contains("listen: at least one address is needed"), "{line}");
        serving("after a reload with listen = []");
        // A root that is not there: refused, and `-s reload` exits 2 with it.
        let gone = site.base.join("gone");
        srv.write_config(&extra, &gone);
        let mut cmd = Command::new(tandem_bin());
        cmd.args(["-s", "reload", "-c"]).arg(&cfg);
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "-s reload with a missing root: {}", out.stderr);
        assert!(out.stderr.contains(&format!("root: {} does not exist", gone.display())), "{}", out.stderr);
        serving("after a reload to a missing root");
    }

    // shutdown_delay: after SIGTERM, /healthz says 503 at once while new
    // connections are still served for the delay, so a balancer (a
    // Kubernetes Service) moves away before the listeners close; then the
    // normal drain, and new clients are refused.
    fn shutdown_delay_keeps_accepting_while_healthz_says_503(e) {
        const DELAY: Duration = Duration::from_secs(3);
        let site = Site::new();
        let extra = "shutdown_delay = \"3s\"\nshutdown_timeout = \"5s\"\nmetrics_listen = [\"127.0.0.1:0\"]";
        let mut srv = start_or_skip!(e, extra, &site.root);
        const TAG: &str = "metrics and health on ";
        assert!(srv.wait_stderr(TAG, START_TIMEOUT), "{}", srv.stderr_text());
        let text = srv.stderr_text();
        let line = text.lines().find(|l| l.contains(TAG)).unwrap();
        let m: SocketAddr = line[line.find(TAG).unwrap() + TAG.len()..].split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(get(m, "/healthz").status, 200, "before the stop");
        // A keep-alive connection from before the signal.
        let mut before = srv.connect();
        let r = before.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200);

        let t0 = Instant::now();
        srv.signal(libc::SIGTERM);
        assert!(srv.wait_stderr("(shutdown_delay)", Duration::from_secs(5)), "{}", srv.stderr_text());
        assert_eq!(get(m, "/healthz").status, 503, "/healthz during shutdown_delay");
        for i in 0..5 {
            let r = get(srv.addr(), "/");
            assert_eq!(r.status, 200, "new connection {i} during shutdown_delay: {}", r.describe());
            assert!(r.body_str().contains("ROOT-INDEX-PAGE"));
        }
        let r = before.roundtrip(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200, "the old keep-alive connection during shutdown_delay");
        assert!(!r.connection_has("close"), "closed during the delay: {}", r.describe());
        assert!(t0.elapsed() < DELAY, "the checks took longer than the delay ({:?}): they prove nothing", t0.elapsed());
        assert!(!srv.stderr_text().contains("no longer accept"), "{}", srv.stderr_text());

        // Then the drain: new clients are refused, the process exits 0.
        assert!(srv.wait_stderr("workers no longer accept", Duration::from_secs(10)), "{}", srv.stderr_text());
        assert!(t0.elapsed() >= DELAY, "the drain began after {:?}, before shutdown_delay", t0.elapsed());
        match std::net::TcpStream::connect_timeout(&srv.addr(), Duration::from_secs(2)) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
            Ok(_) => panic!("a new connection was taken after the drain began"),
        }
        let st = srv.wait_exit(Duration::from_secs(15)).expect("no exit after the drain");
        assert!(st.success(), "{st}");
    }
}

#[test]
fn busy_port_names_the_address_and_suggests_listen() {
    let d = site_dir("x");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = busy.local_addr().unwrap();
    for engine in ENGINES {
        let mut cmd = Command::new(tandem_bin());
        cmd.args([
            "--engine",
            engine,
            "--root",
            "www",
            "--listen",
            &a.to_string(),
        ])
        .current_dir(d.path());
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert_eq!(out.status.code(), Some(1), "{engine}: {}", out.stderr);
        let want = format!(
            "listen {a}: address already in use (another server is on it? pick another with --listen 127.0.0.1:"
        );
        assert!(
            out.stderr.contains(&want),
            "{engine}: want {want:?} in:\n{}",
            out.stderr
        );
        // The port suggested was free when the start failed (it is the
        // next one, unless that one is busy too).
        let at = out.stderr.find("--listen ").unwrap() + "--listen ".len();
        let next: SocketAddr = out.stderr[at..].split(')').next().unwrap().parse().unwrap();
        assert!(next.port() > a.port(), "{engine}: {}", out.stderr);
        if let Err(e) = TcpListener::bind(next) {
            panic!("{engine}: the suggested {next} cannot be bound: {e}");
        }
    }
    // A bad --listen is a usage error that says what an address looks like.
    let out = run_with_timeout(
        {
            let mut c = Command::new(tandem_bin());
            c.args(["-t", "--listen", "127.0.0.1:99999"]);
            c
        },
        EXIT_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("\"127.0.0.1:99999\" is not an address like \"127.0.0.1:8080\""),
        "{}",
        out.stderr
    );
}

/// The engines a start is tried with.
const ENGINES: [&str; 2] = ["epoll", "io_uring"];

/// `tandem -t -c CFG` and `tandem -c CFG` (start, on each engine): all exit 2 with
/// `want` in their message, and nothing is served.
fn refused_alike(cfg: &Path, want: &str) {
    refused_alike_with(cfg, &[], want)
}

/// `refused_alike`, with `extra` arguments on every command line.
fn refused_alike_with(cfg: &Path, extra: &[&str], want: &str) {
    for args in [
        &["-t"][..],
        &["--engine", "epoll"][..],
        &["--engine", "io_uring"][..],
    ] {
        let mut cmd = Command::new(tandem_bin());
        cmd.args(args).args(extra).arg("-c").arg(cfg);
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(2),
            "tandem {args:?} -c {}: {}\nconfig:\n{}",
            cfg.display(),
            out.stderr,
            fs::read_to_string(cfg).unwrap()
        );
        assert!(
            out.stderr.contains(want),
            "tandem {args:?}: want {want:?} in:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
    }
}

#[test]
fn test_flag_checks_what_a_start_checks() {
    let d = site_dir("x");
    let base = d.path();
    let cfg = base.join("t.toml");
    let www = toml_str(&base.join("www").display().to_string());
    let write = |body: &str| {
        fs::write(
            &cfg,
            format!("listen = [\"127.0.0.1:0\"]\naccess_log = \"off\"\n{body}\n"),
        )
        .unwrap()
    };
    let at = |line: usize| format!("{}:{line}: ", cfg.display());
    // root: missing, a file.
    let nope = base.join("nope");
    write(&format!("root = {}", toml_str(&nope.display().to_string())));
    refused_alike(
        &cfg,
        &format!("{}root: {} does not exist", at(3), nope.display()),
    );
    let file = base.join("www/index.html");
    write(&format!("root = {}", toml_str(&file.display().to_string())));
    refused_alike(
        &cfg,
        &format!("{}root: {} is not a directory", at(3), file.display()),
    );
    // user and group that do not exist (an unknown user used to exit 1 at start).
    write(&format!("root = {www}\nuser = \"no-such-user-tandem\""));
    refused_alike(
        &cfg,
        &format!(
            "{}user: there is no user \"no-such-user-tandem\" on this system",
            at(4)
        ),
    );
    write(&format!("root = {www}\ngroup = \"no-such-group-tandem\""));
    refused_alike(
        &cfg,
        &format!(
            "{}group: there is no group \"no-such-group-tandem\" on this system",
            at(4)
        ),
    );
    // Log and pidfile directories that do not exist.
    let gone = base.join("gone");
    for key in ["error_log", "pidfile"] {
        write(&format!(
            "root = {www}\n{key} = {}",
            toml_str(&gone.join("x").display().to_string())
        ));
        refused_alike(
            &cfg,
            &format!(
                "{}{key}: directory {} does not exist",
                at(4),
                gone.display()
            ),
        );
    }
    write(&format!(
        "root = {www}\naccess_log = {}",
        toml_str(&gone.join("a.log").display().to_string())
    ));
    fs::write(
        &cfg,
        fs::read_to_string(&cfg)
            .unwrap()
            .replace("access_log = \"off\"\n", ""),
    )
    .unwrap();
    refused_alike(
        &cfg,
        &format!(
            "{}access_log: directory {} does not exist",
            at(3),
            gone.display()
        ),
    );
    // daemon with a log on stderr: said, never a silent loss.
    write(&format!("root = {www}\ndaemon = true"));
    refused_alike(
        &cfg,
        &format!(
            "{}daemon: error_log is \"stderr\", which a daemon does not have: set error_log to a file",
            at(4)
        ),
    );
    // Config errors in the config's words, with their line, at -t and at start.
    write(&format!("root = {www}\nworkers = true"));
    refused_alike(
        &cfg,
        &format!(
            "{}workers: expected \"auto\" or a number from 1 to 1024, got true",
            at(4)
        ),
    );
    write(&format!("root = {www}\nlisen = [\"127.0.0.1:0\"]"));
    refused_alike(
        &cfg,
        &format!("{}unknown key `lisen`; did you mean `listen`?", at(4)),
    );
    // A good one: ok, with the root absolute.
    write("root = \"www\"");
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("-t").arg("-c").arg(&cfg).current_dir(base);
    let out = run_with_timeout(cmd, EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("is ok: root {}, ", base.join("www").display())),
        "{}",
        out.stderr
    );
    // A flag is blamed by its name.
    let mut cmd = Command::new(tandem_bin());
    cmd.args(["-t", "--root"]).arg(&nope);
    let out = run_with_timeout(cmd, EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("--root: root: {} does not exist", nope.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn test_flag_checks_the_root_as_the_user_tandem_runs_as() {
    if !running_as_root() || uid_of_user("nobody").is_none() {
        skip("needs root and a `nobody` user");
        return;
    }
    let d = site_dir("x");
    let www = d.path().join("www");
    set_mode(&www, 0o700); // root's alone
    let cfg = d.path().join("t.toml");
    fs::write(
        &cfg,
        format!(
            "listen = [\"127.0.0.1:0\"]\naccess_log = \"off\"\nroot = {}\nuser = \"nobody\"\n",
            toml_str(&www.display().to_string())
        ),
    )
    .unwrap();
    refused_alike(
        &cfg,
        &format!(
            "{}:3: root: {} cannot be read by user nobody (Permission denied)",
            cfg.display(),
            www.display()
        ),
    );
    set_mode(&www, 0o755);
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("-t").arg("-c").arg(&cfg);
    let out = run_with_timeout(cmd, EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

#[test]
fn version_says_revision_and_engine() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(tandem_bin());
        cmd.arg("-V").envs(env.iter().copied());
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        out.stdout
    };
    let out = run(&[]);
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let first = out.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("tandem {} (git ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    if let Some(rev) = rev {
        // Built from a commit before the current one if HEAD moved since
        // the build; then the build is stale, not -V wrong. Cargo rebuilds on
        // a HEAD change, so in a normal `cargo test` they agree.
        assert_eq!(
            first,
            format!("tandem {} (git {rev})", env!("CARGO_PKG_VERSION")),
            "{out}"
        );
    }
    let auto = out
        .lines()
        .find_map(|l| l.strip_prefix("engine auto: "))
        .unwrap_or_else(|| panic!("{out}"));
    if out.contains("io_uring: usable on this kernel") {
        assert_eq!(auto, "io_uring", "{out}");
    } else {
        assert!(out.contains("io_uring: unavailable: "), "{out}");
        assert_eq!(auto, "epoll", "{out}");
    }
    let out = run(&[("TANDEM_IO_URING_PROBE_FAIL", "test says no")]);
    assert!(
        out.contains("io_uring: unavailable: forced by TANDEM_IO_URING_PROBE_FAIL: test says no\nengine auto: epoll\n"),
        "{out}"
    );
}

/// `--listen` replaces the file's `listen` after the file was checked: a
/// clash with `metrics_listen` is still refused by name, by `-t` and by a
/// start alike, not met as "address in use" when binding.
#[test]
fn listen_flag_clashing_with_metrics_listen_is_refused() {
    let d = site_dir("x");
    let cfg = d.path().join("t.toml");
    fs::write(
        &cfg,
        "listen = [\"127.0.0.1:0\"]\naccess_log = \"off\"\nmetrics_listen = [\"127.0.0.1:19\"]\n",
    )
    .unwrap();
    for clash in ["127.0.0.1:19", "0.0.0.0:19"] {
        refused_alike_with(
            &cfg,
            &["--listen", clash],
            &format!("--listen: metrics_listen: 127.0.0.1:19 is also served by listen ({clash})"),
        );
    }
}
