//! What an operator sends around a stop: a reload (SIGHUP, `tandem -s
//! reload`) that comes after the stop signal, during `shutdown_delay` or
//! while responses in flight drain; `tandem -s stop` with a long
//! `shutdown_delay`.

#[macro_use]
mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// `tandem -c CFG -s reload`, killed (and the test failed) after 10 s:
/// well under the 30 s the client waits for a verdict.
fn reload_cmd(cfg: &std::path::Path) -> (RunOutput, Duration) {
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("-c").arg(cfg).args(["-s", "reload"]);
    let t0 = Instant::now();
    let out = run_with_timeout(cmd, EXIT_TIMEOUT);
    (out, t0.elapsed())
}

/// The client's answer to a reload sent while the server stops: at once,
/// exit 1, saying why, and the server says so in its log too.
fn assert_refused_as_stopping(out: &RunOutput, took: Duration, phase: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "-s reload {phase}: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("it is stopping (a stop signal came first): nothing was reloaded"),
        "-s reload {phase} does not say the server is stopping: {}",
        out.stderr
    );
    assert!(
        took < Duration::from_secs(5),
        "-s reload {phase} took {took:?}"
    );
}

engine_tests! {
    fn reload_during_a_stop_is_refused_at_once(e) {
        // A file the client below never reads: its response holds the drain.
        let site = Site::new();
        std::fs::write(site.root.join("huge.bin"), vec![b'x'; 48 << 20]).unwrap();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!(
            "pidfile = {}\nworkers = 1\nshutdown_delay = \"30s\"\nshutdown_timeout = \"30s\"",
            toml_str(&pidfile.display().to_string())
        );
        let mut srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n')).expect("pidfile");
        let mut stuck = TcpStream::connect(srv.addr()).unwrap();
        stuck.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        // Bytes of it arrived: the response is in flight.
        let mut b = [0u8; 1];
        stuck.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(std::io::Read::read(&mut stuck, &mut b).unwrap(), 1);

        // During shutdown_delay: still serving, a reload is refused at once.
        srv.signal(libc::SIGTERM);
        assert!(srv.wait_stderr("still accepting for", EXIT_TIMEOUT), "no shutdown_delay line");
        let (out, took) = reload_cmd(srv.config_path());
        assert_refused_as_stopping(&out, took, "during shutdown_delay");
        assert_status(&get(srv.addr(), "/"), 200, "GET / during shutdown_delay");

        // While draining (the stuck response holds it): alike.
        srv.signal(libc::SIGTERM);
        assert!(srv.wait_stderr("workers no longer accept; draining", EXIT_TIMEOUT), "no drain line");
        let (out, took) = reload_cmd(srv.config_path());
        assert_refused_as_stopping(&out, took, "while draining");
        assert!(
            srv.stderr_text().matches("reload ignored: it is stopping").count() == 2,
            "the server's log does not say each reload was ignored: {}",
            srv.stderr_text()
        );
        assert!(!srv.stderr_text().contains("reloaded:"), "a reload ran during the stop");

        // The stop goes on as it would have: a third signal ends it.
        srv.signal(libc::SIGTERM);
        assert_eq!(srv.wait_exit(EXIT_TIMEOUT).and_then(|st| st.code()), Some(0));
        assert!(!pidfile.exists());
    }

    fn signal_stop_waits_out_shutdown_delay(e) {
        // A delay past the 30 s -s stop waits at least: -s stop must wait
        // for delay + timeout, not report a stop that is going as planned.
        let site = Site::new();
        let piddir = tempfile::tempdir().unwrap();
        let pidfile = piddir.path().join("tandem.pid");
        let extra = format!(
            "pidfile = {}\nworkers = 1\nshutdown_delay = \"31s\"\nshutdown_timeout = \"1s\"",
            toml_str(&pidfile.display().to_string())
        );
        let mut srv = start_or_skip!(e, &extra, &site.root);
        wait_file(&pidfile, Duration::from_secs(5), |t| t.ends_with('\n')).expect("pidfile");
        let mut cmd = Command::new(tandem_bin());
        cmd.arg("-c").arg(srv.config_path()).args(["-s", "stop"]);
        let t0 = Instant::now();
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        let took = t0.elapsed();
        assert_eq!(out.status.code(), Some(0), "-s stop after {took:?}: {}", out.stderr);
        assert!(out.stdout.contains(&format!("tandem (pid {}) stopped", srv.pid())), "{}{}", out.stdout, out.stderr);
        assert!(took >= Duration::from_secs(30), "stopped after {took:?}, before shutdown_delay ran out");
        assert_eq!(srv.wait_exit(EXIT_TIMEOUT).and_then(|st| st.code()), Some(0));
    }
}
