//! What an operator meets on the command line: every config problem at
//! once (from `-t` and from a start alike), messages in words (no OS error
//! numbers, no Rust type names) over a corpus of broken configs and CLI
//! misuses, and `--daemon` without a config file (`--error-log`,
//! `--access-log`, `--pidfile`), stopped with `-s stop`.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn tandem(args: &[&str], cwd: &Path) -> RunOutput {
    let mut cmd = Command::new(tandem_bin());
    cmd.args(args).current_dir(cwd);
    run_with_timeout(cmd, EXIT_TIMEOUT)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// What no message may show: an OS error number, or the shape of a Rust
/// value (`Os { code: 2, kind: NotFound, .. }`, `std::io::Error`).
fn raw_text(stderr: &str) -> Option<&'static str> {
    [
        "(os error",
        "os error ",
        "Os {",
        "kind: ",
        "Custom {",
        "Error {",
        "Error(",
        "std::",
        "toml::",
        "io::Error",
        "ErrorKind",
        "Some(",
        "None",
        "\"{",
    ]
    .into_iter()
    .find(|p| stderr.contains(p))
}

engine_tests! {
    // A config whose root, pidfile, access-log and error-log directories are
    // all missing, and whose values are wrong in four other ways: one run of
    // -t names all eight, each with FILE:LINE and its key, and a start says
    // the same (exit 2, nothing bound).
    fn every_config_problem_at_once(e) {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let cfg = dir.path().join("t.toml");
        let at = |line: usize| format!("tandem: {}:{line}: ", cfg.display());
        fs::write(
            &cfg,
            format!(
                "listen = [\"127.0.0.1:0\"]\nroot = {}\npidfile = {}\naccess_log = {}\nerror_log = {}\n",
                toml_str(&s(&gone.join("www"))),
                toml_str(&s(&gone.join("run/tandem.pid"))),
                toml_str(&s(&gone.join("log/access.log"))),
                toml_str(&s(&gone.join("elog/error.log"))),
            ),
        )
        .unwrap();
        let want_paths = vec![
            format!("{}root: {} does not exist", at(2), gone.join("www").display()),
            format!("{}pidfile: directory {} does not exist", at(3), gone.join("run").display()),
            format!("{}access_log: directory {} does not exist", at(4), gone.join("log").display()),
            format!("{}error_log: directory {} does not exist", at(5), gone.join("elog").display()),
        ];
        for test in [true, false] {
            let mut args = vec!["--engine", e, "-c", cfg.to_str().unwrap()];
            if test {
                args.insert(0, "-t");
            }
            let out = tandem(&args, dir.path());
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
            for w in &want_paths {
                assert!(out.stderr.lines().any(|l| l == w), "{args:?}: want the line {w:?} in:\n{}", out.stderr);
            }
            assert_eq!(out.stderr.lines().count(), 4, "{args:?}: one line a problem:\n{}", out.stderr);
            assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
        }

        // Problems with the file itself: every one, in the file's order.
        let www = dir.path().join("www");
        fs::create_dir(&www).unwrap();
        fs::write(
            &cfg,
            format!(
                "listen = [\"127.0.0.1:0\"]\nroot = {}\nworkers = true\nlisen = 3\nmax_header_size = 10\nindex = \"a/b\"\nkeepalive_timeout = \"soon\"\n[[rules]]\nmatch = \"*.css\"\nheaderz = {{}}\n",
                toml_str(&s(&www)),
            ),
        )
        .unwrap();
        let want = [
            format!("{}workers: expected \"auto\" or a number from 1 to 1024, got true", at(3)),
            format!("{}unknown key `lisen`; did you mean `listen`?", at(4)),
            format!("{}max_header_size: must be between 256 and 1048576, not 10", at(5)),
            format!("{}index: must be one or more plain file names, not \"a/b\"", at(6)),
            format!("{}keepalive_timeout: expected a duration like", at(7)),
            format!("{}rules: unknown key `headerz`; did you mean `headers`?", at(10)),
        ];
        for test in [true, false] {
            let mut args = vec!["--engine", e, "-c", cfg.to_str().unwrap()];
            if test {
                args.insert(0, "-t");
            }
            let out = tandem(&args, dir.path());
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(lines.len(), want.len(), "{args:?}: one line a problem, in order:\n{}", out.stderr);
            for (l, w) in lines.iter().zip(&want) {
                assert!(l.starts_with(w.as_str()), "{args:?}: want {w:?}, got {l:?}\n{}", out.stderr);
            }
        }

        // Past the cap, the rest is counted, not shown.
        let many: String = (0..30).map(|i| format!("unknown_{i} = 1\n")).collect();
        fs::write(&cfg, format!("root = {}\n{many}", toml_str(&s(&www)))).unwrap();
        let out = tandem(&["-t", "--engine", e, "-c", cfg.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 21, "{}", out.stderr);
        assert!(lines[19].starts_with(&format!("{}unknown key `unknown_19`", at(21))), "{}", out.stderr);
        assert_eq!(lines[20], "tandem: ... and 10 more problems (only the first 20 are shown)");
    }

    // `--daemon` with no config file at all: the logs and the pidfile
    // from flags. It starts, serves, and `-s stop --pidfile` stops it.
    fn daemon_without_a_config_file(e) {
        let site = Site::new();
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let errlog = dir.path().join("error.log");
        let acclog = dir.path().join("access.log");
        let pidfile = dir.path().join("tandem.pid");
        let (root, el, al, pf) = (s(&site.root), s(&errlog), s(&acclog), s(&pidfile));
        let args = [
            "--engine", e, "--daemon", "--root", &root, "--listen", "127.0.0.1:0",
            "--error-log", &el, "--access-log", &al, "--pidfile", &pf,
        ];
        // Without the log flags: refused, and told which flag sets each log.
        let out = tandem(&args[..7], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        for (key, flag) in [("error_log", "--error-log FILE"), ("access_log", "--access-log FILE")] {
            assert!(
                out.stderr.contains(&format!("--daemon: daemon: {key} is \"stderr\"")) && out.stderr.contains(flag),
                "{key}: {}", out.stderr
            );
        }
        let out = tandem(&args, dir.path());
        if out.status.code() == Some(2) && out.stderr.contains("io_uring") && e == "io_uring" && !require_io_uring() {
            skip(&format!("io_uring unavailable: {}", out.stderr.trim()));
            return;
        }
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", out.stderr);
        let pid: u32 = wait_file(&pidfile, START_TIMEOUT, |t| t.ends_with('\n'))
            .unwrap_or_else(|| panic!("no pidfile; error log:\n{}", fs::read_to_string(&errlog).unwrap_or_default()))
            .trim()
            .parse()
            .unwrap();
        let log = wait_file(&errlog, START_TIMEOUT, |t| !listening_addrs(t).is_empty())
            .unwrap_or_else(|| panic!("no `listening on` in the error log:\n{}", fs::read_to_string(&errlog).unwrap_or_default()));
        let addr = listening_addrs(&log)[0];
        let r = get(addr, "/");
        assert_status(&r, 200, "GET / from the daemon");
        assert_eq!(r.body, INDEX_HTML.as_bytes());
        assert!(wait_file(&acclog, IO_TIMEOUT, |t| t.contains("\"GET / HTTP/1.1\" 200")).is_some(), "access log");
        let out = tandem(&["-s", "stop", "--pidfile", &pf], dir.path());
        assert!(out.status.success(), "-s stop: {}", out.stderr);
        assert_eq!(out.stdout.trim(), format!("tandem: tandem (pid {pid}) stopped"));
        assert_eq!(out.stderr.trim(), "", "-s stop said something on stderr");
        assert!(wait_pid_gone(pid, EXIT_TIMEOUT), "daemon {pid} still running after -s stop");
        assert!(!pidfile.exists(), "pidfile left after -s stop");
        // Nothing running now: said in words.
        let out = tandem(&["-s", "stop", "--pidfile", &pf], dir.path());
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        assert_eq!(out.stderr.trim(), format!("tandem: no tandem is running (pidfile {pf} does not exist)"));
    }

    // The error corpus: broken configs and CLI misuses, each refused with a
    // message in words, none with an OS error number or a Rust type name.
    fn error_corpus_speaks_in_words(e) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let www = base.join("www");
        fs::create_dir(&www).unwrap();
        let root = format!("root = {}\n", toml_str(&s(&www)));
        let file = |name: &str, text: &str| -> PathBuf {
            let p = base.join(name);
            fs::write(&p, text).unwrap();
            p
        };
        let missing = base.join("missing.toml");
        let no_pid = base.join("run/none.pid");
        let mut corpus: Vec<(Vec<String>, Option<String>)> = vec![
            (vec!["-t".into(), "-c".into(), s(&missing)], Some(format!("{}: the file does not exist", missing.display()))),
            (vec!["-c".into(), s(&missing)], Some(format!("{}: the file does not exist", missing.display()))),
            (vec!["-t".into(), "-c".into(), s(&www)], Some("a directory, not a config file".into())),
            (vec!["-s".into(), "stop".into(), "--pidfile".into(), s(&no_pid)], Some(format!("no tandem is running (pidfile {} does not exist)", no_pid.display()))),
            (vec!["-s".into(), "reopen".into(), "--pidfile".into(), s(&no_pid)], Some("no tandem is running (pidfile".into())),
            (vec!["-s".into(), "reload".into(), "--pidfile".into(), s(&no_pid)], Some("no tandem is running (pidfile".into())),
            (vec!["-s".into(), "stop".into(), "-c".into(), s(&missing)], Some("the file does not exist".into())),
            (vec!["-s".into(), "restart".into(), "--pidfile".into(), s(&no_pid)], Some("-s takes reload, stop or reopen".into())),
            (vec!["-s".into(), "stop".into()], Some("-s needs a `pidfile`".into())),
            (vec!["-t".into(), "-s".into(), "stop".into()], None),
            (vec!["--listen".into(), "nowhere".into()], None),
            (vec!["--listen".into(), "127.0.0.1:0".into(), "--listen".into(), "127.0.0.1:0".into()], Some("given twice".into())),
            (vec!["--engine".into(), "turbo".into()], None),
            (vec!["--error-log".into(), "".into()], None),
            (vec!["--bogus".into()], None),
            (vec!["-t".into(), "--root".into(), s(&base.join("nope"))], Some("--root: root:".into())),
            (vec!["-t".into(), "--root".into(), s(&www), "--pidfile".into(), s(&www)], Some("is a directory, not a file".into())),
            (vec!["-t".into(), "--root".into(), s(&www), "--error-log".into(), s(&base.join("x/y/e.log"))], Some("--error-log: error_log: directory".into())),
            (vec!["-t".into(), "--daemon".into(), "--root".into(), s(&www)], Some("--error-log FILE".into())),
        ];
        let configs: Vec<(&str, String, &str)> = vec![
            ("dup.toml", format!("{root}workers = 2\nworkers = 3\n"), ":3: workers is set twice (first on line 2)"),
            ("dup_table.toml", format!("{root}mime_types = {{ a = \"text/plain\", a = \"text/html\" }}\n"), "a is set twice"),
            ("syntax.toml", format!("{root}listen = [\"127.0.0.1:0\"\n"), ":"),
            ("empty.toml", "# nothing\n".into(), "the file sets nothing"),
            ("binary.toml", "\u{0}\u{1}root\n".into(), ":"),
            ("unknown.toml", format!("{root}lisen = 1\n"), "did you mean `listen`?"),
            ("types.toml", format!("{root}workers = \"many\"\ndaemon = 1\nlisten = \"x\"\n"), "workers: expected"),
            ("rules.toml", format!("{root}[rules]\nmatch = \"x\"\n"), "rules: write each rule as a [[rules]] entry"),
            ("header.toml", format!("{root}[[rules]]\nmatch = \"*.css\"\nheaders = {{ \"Content-Length\" = \"1\" }}\n"), "rules: match = \"*.css\": header"),
            ("user.toml", format!("{root}user = \"no-such-user-tandem\"\n"), "user: there is no user"),
            ("logdir.toml", format!("{root}error_log = {}\n", toml_str(&s(&www))), "error_log: "),
            ("daemon.toml", format!("{root}daemon = true\n"), "daemon: error_log is \"stderr\""),
            ("timeout.toml", format!("{root}send_timeout = 0\nshutdown_timeout = \"3d\"\n"), "send_timeout: must be more than 0"),
            ("limits.toml", format!("{root}max_connections = 0\nmax_ranges = 100000\ncache_max_file = 99999999999\n"), "max_connections: must be between 1"),
            ("listen.toml", format!("{root}listen = [\"0.0.0.0:80\", \"127.0.0.1:80\"]\nmetrics_listen = [\"127.0.0.1:80\"]\n"), "take the same port"),
        ];
        // Not UTF-8 at all.
        fs::write(base.join("latin1.toml"), b"root = \"caf\xe9\"\n").unwrap();
        corpus.push((vec!["-t".into(), "-c".into(), s(&base.join("latin1.toml"))], Some("not UTF-8 text".into())));
        for (name, text, want) in &configs {
            let p = file(name, text);
            for t in [true, false] {
                let mut args = vec!["-c".to_string(), s(&p)];
                if t {
                    args.insert(0, "-t".into());
                }
                corpus.push((args, Some(want.to_string())));
            }
            corpus.push((vec!["-s".into(), "reload".into(), "-c".into(), s(&p)], None));
        }
        for (args, want) in corpus {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend(["--engine", e]);
            let out = tandem(&args, base);
            assert!(!out.status.success(), "{args:?} succeeded:\n{}", out.stderr);
            assert!(!out.stderr.trim().is_empty(), "{args:?}: no message");
            if let Some(p) = raw_text(&out.stderr) {
                panic!("{args:?}: {p:?} in:\n{}", out.stderr);
            }
            if let Some(w) = want {
                assert!(out.stderr.contains(&w), "{args:?}: want {w:?} in:\n{}", out.stderr);
            }
        }
    }
}
