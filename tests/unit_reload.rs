//! `systemctl reload tandem` as `systemd/tandem.service` runs it: its
//! `ExecReload=` lines, in order, each one after the last succeeded (as
//! systemd runs them), with the unit's paths aimed at the test's binary,
//! config and server. A config error must fail the reload (so `systemctl
//! reload` says so) and leave the server untouched.

#[macro_use]
mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Run the unit's `ExecReload=` lines for `srv` until one fails: `Ok` if
/// all succeeded, else the failing line and what it printed.
fn systemctl_reload(srv: &Server) -> Result<(), String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/tandem.service");
    let unit = std::fs::read_to_string(unit).unwrap();
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecReload="))
        .collect();
    assert!(!lines.is_empty(), "tandem.service has no ExecReload=");
    let cfg = srv.config_path().display().to_string();
    for line in lines {
        let line = line
            .replace("/usr/local/bin/tandem", tandem_bin())
            .replace("/etc/tandem/tandem.toml", &cfg)
            .replace("$MAINPID", &srv.pid().to_string());
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut cmd = Command::new(words[0]);
        cmd.args(&words[1..]);
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        if !out.status.success() {
            return Err(format!(
                "{line}: {}\n{}{}",
                out.status, out.stdout, out.stderr
            ));
        }
    }
    Ok(())
}

engine_tests! {
    fn systemctl_reload_fails_on_a_config_error(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let gone = site.base.join("no-such-root");
        srv.write_config("", &gone);
        let err = systemctl_reload(&srv).expect_err("the unit's reload succeeded with a root that is not there");
        assert!(err.contains("no-such-root") && err.contains("does not exist"), "the failure does not say why: {err}");
        // Nothing was signalled: the server did not even try.
        assert!(!srv.stderr_text().contains("reload"), "the server was signalled: {}", srv.stderr_text());
        assert_status(&get(srv.addr(), "/"), 200, "GET / after the refused reload");

        // The config put right: the reload goes through.
        srv.write_config("", &site.root);
        systemctl_reload(&srv).expect("the unit's reload of a good config");
        assert!(srv.wait_stderr("reloaded: ", Duration::from_secs(10)), "no `reloaded:` line");
        assert_status(&get(srv.addr(), "/"), 200, "GET / after the reload");
    }
}
