//! Log targets that cannot be logs: the error names the real cause.

#[macro_use]
mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// `tandem -t -c FILE`: (exit code, stderr).
fn check(config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(tandem_bin())
        .arg("-t")
        .arg("-c")
        .arg(config)
        .output()
        .expect("run tandem -t");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

engine_tests! {
    /// `access_log` (or `error_log`) naming a directory: `-t` and a reload
    /// say "is a directory", never a permissions problem, whoever tandem
    /// serves as; the running config keeps serving and logging.
    fn a_log_that_is_a_directory_is_called_one(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let dir = srv.tmp_dir().join("logs");
        std::fs::create_dir(&dir).unwrap();
        let mut cases = vec![
            format!("access_log = {}", toml_str(&dir.display().to_string())),
            format!("error_log = {}", toml_str(&dir.display().to_string())),
        ];
        if running_as_root() {
            // The case: as root, with `user`, the directory is not
            // writable by that user, which is not why it cannot be a log.
            let user = "user = \"nobody\"";
            cases.push(format!("{user}\naccess_log = {}", toml_str(&dir.display().to_string())));
        }
        for extra in &cases {
            srv.write_config(extra, &site.root);
            let (code, err) = check(srv.config_path());
            assert_eq!(code, Some(2), "-t with {extra:?}: exit code\n{err}");
            let want = format!("{} is a directory", dir.display());
            assert!(err.contains(&want), "-t with {extra:?}: no {want:?}\n{err}");
            assert!(!err.contains("Permission denied") && !err.contains("cannot be written"),
                "-t with {extra:?}: blames permissions\n{err}");
            let line = srv.reload(Duration::from_secs(10)).expect_err("a reload to a directory log");
            assert!(line.contains(&want), "reload with {extra:?}: {line}");
            assert!(!line.contains("Permission denied") && !line.contains("cannot be written"),
                "reload with {extra:?}: blames permissions: {line}");
            // Still serving, and still logging where it did.
            let r = get(srv.addr(), "/style.css?after-a-refused-reload");
            assert_status(&r, 200, "GET /style.css after the refused reload");
            assert!(srv.wait_access_log(CLOSE_TIMEOUT, |l| l.contains("after-a-refused-reload")).is_some(),
                "the request after the refused reload was not logged\n{}", srv.access_log());
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "something was written in the directory");
    }
}
