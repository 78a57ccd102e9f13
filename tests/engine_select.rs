//! Engine selection: `auto` probes io_uring and falls back to epoll with one
//! line saying why; an explicit `io_uring` that is unavailable exits 2. The
//! probe failure is forced through TANDEM_IO_URING_PROBE_FAIL, which only the
//! probe reads.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Run tandem with `engine` and the forced probe failure (if any) until it
/// prints its "serving ... with engine" line or exits. Returns (exit code if it
/// exited, stderr text).
fn start(engine: &str, force_fail: Option<&str>) -> (Option<i32>, String) {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = [\"127.0.0.1:0\"]\nroot = {}\naccess_log = \"off\"\nworkers = 1\n",
            toml_str(&site.root.display().to_string())
        ),
    )
    .unwrap();
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("--engine").arg(engine).arg("-c").arg(&cfg);
    cmd.env_remove("TANDEM_IO_URING_PROBE_FAIL");
    if let Some(v) = force_fail {
        cmd.env("TANDEM_IO_URING_PROBE_FAIL", v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    let mut code = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains(" with engine ") {
                    // Serving: check it answers, then stop it.
                    let addr = listening_addrs(&text)[0];
                    assert_status(&get(addr, "/"), 200, "GET / after engine selection");
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(st) = child.try_wait().unwrap() {
                    code = st.code();
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                code = child.wait().unwrap().code();
                while let Ok(l) = rx.try_recv() {
                    text.push_str(&l);
                    text.push('\n');
                }
                break;
            }
        }
    }
    // Stop it if it is still running; reap it either way.
    let _ = child.kill();
    let _ = child.wait();
    (code, text)
}

#[test]
fn auto_falls_back_to_epoll_when_probe_fails() {
    let (code, text) = start("auto", Some("test says no"));
    assert_eq!(code, None, "auto must start on epoll, stderr:\n{text}");
    let notes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("io_uring unavailable"))
        .collect();
    assert_eq!(notes.len(), 1, "one line saying why, stderr:\n{text}");
    assert!(notes[0].contains("TANDEM_IO_URING_PROBE_FAIL") && notes[0].contains("test says no"));
    assert!(text.contains("with engine epoll"), "stderr:\n{text}");
}

#[test]
fn explicit_io_uring_refused_when_probe_fails() {
    let (code, text) = start("io_uring", Some("test says no"));
    assert_eq!(code, Some(2), "stderr:\n{text}");
    assert!(text.contains("io_uring unavailable"), "stderr:\n{text}");
    assert!(
        text.contains("test says no"),
        "the reason is given, stderr:\n{text}"
    );
    assert!(
        !text.contains("listening on"),
        "nothing served, stderr:\n{text}"
    );
}

#[test]
fn auto_picks_io_uring_where_the_kernel_has_it() {
    // The probe's own verdict on this machine: an explicit io_uring either
    // serves or says why not; auto must agree with it.
    let (code, text) = start("io_uring", None);
    if code == Some(2) {
        skip(&format!("io_uring unavailable here: {}", text.trim()));
        let (code, text) = start("auto", None);
        assert_eq!(code, None, "stderr:\n{text}");
        assert!(text.contains("with engine epoll"), "stderr:\n{text}");
        return;
    }
    assert!(text.contains("with engine io_uring"), "stderr:\n{text}");
    let (code, text) = start("auto", None);
    assert_eq!(code, None, "stderr:\n{text}");
    assert!(text.contains("with engine io_uring"), "stderr:\n{text}");
    assert!(!text.contains("unavailable"), "stderr:\n{text}");
}

#[test]
fn epoll_never_probes() {
    let (code, text) = start("epoll", Some("must not matter"));
    assert_eq!(code, None, "stderr:\n{text}");
    assert!(text.contains("with engine epoll"), "stderr:\n{text}");
    assert!(!text.contains("unavailable"), "stderr:\n{text}");
}
