//! `tandem -t`: configuration checking.

mod common;

use common::*;
use std::process::{Command, Output};

fn check(cfg_name: &str, text: &str) -> (Output, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(cfg_name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(tandem_bin())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run tandem -t");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Keep the dir alive until here.
    drop(dir);
    (out, stderr, path)
}

fn root_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("index.html"), "x").unwrap();
    d
}

#[test]
fn good_config_passes() {
    let root = root_dir();
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nroot = {}\nindex = \"index.html\"\nengine = \"epoll\"\nworkers = 2\n\
         access_log = \"off\"\nerror_log = \"stderr\"\nlog_level = \"info\"\n\
         keepalive_timeout = \"500ms\"\nheader_timeout = \"2s\"\nsend_timeout = \"2s\"\nshutdown_timeout = \"1s\"\n\
         max_header_size = 8192\nmax_target_size = 4096\nmax_body_size = 1048576\nmax_connections = 1000\n\
         serve_dotfiles = false\nerror_page_404 = \"404.html\"\n",
        toml_str(&root.path().display().to_string())
    );
    let (out, stderr, _) = check("good.toml", &text);
    assert_eq!(
        out.status.code(),
        Some(0),
        "tandem -t on a good config: {}\nstderr:\n{stderr}\nconfig:\n{text}",
        out.status
    );
}

#[test]
fn good_config_with_auto_values_passes() {
    let root = root_dir();
    let text = format!(
        "# comment line\nroot = {}\nworkers = \"auto\"\nengine = \"auto\"\naccess_log = \"stderr\"\n",
        toml_str(&root.path().display().to_string())
    );
    let (out, stderr, _) = check("good2.toml", &text);
    assert_eq!(
        out.status.code(),
        Some(0),
        "tandem -t: {}\nstderr:\n{stderr}",
        out.status
    );
}

#[test]
fn unknown_key_fails_with_its_line() {
    let root = root_dir();
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nroot = {}\nbogus_key = 1\nindex = \"index.html\"\n",
        toml_str(&root.path().display().to_string())
    );
    let (out, stderr, path) = check("bad.toml", &text);
    assert_eq!(
        out.status.code(),
        Some(2),
        "tandem -t on bad.toml: {}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(":3:"),
        "stderr should name line 3 (FILE:LINE: message):\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:3:", path.display())) || stderr.contains("bad.toml:3:"),
        "stderr should start the message with FILE:3: :\n{stderr}"
    );
    assert!(
        stderr.contains("bogus_key"),
        "stderr should name the unknown key:\n{stderr}"
    );
}

#[test]
fn bad_value_fails_with_its_line() {
    let root = root_dir();
    for (line4, what) in [
        ("workers = \"many\"", "workers"),
        ("keepalive_timeout = \"5 fortnights\"", "keepalive_timeout"),
        ("engine = \"kqueue\"", "engine"),
        ("max_header_size = \"big\"", "max_header_size"),
        // Values that would overflow deadline arithmetic are caught by -t.
        (
            "keepalive_timeout = 9223372036854775807",
            "keepalive_timeout",
        ),
        ("shutdown_timeout = 9223372036854775807", "shutdown_timeout"),
        ("send_timeout = \"100000h\"", "send_timeout"),
        ("header_timeout = 0", "header_timeout"),
        ("max_connections = 18446744073709551615", "max_connections"),
    ] {
        let text = format!(
            "listen = [\"127.0.0.1:0\"]\nroot = {}\naccess_log = \"off\"\n{line4}\n",
            toml_str(&root.path().display().to_string())
        );
        let (out, stderr, _) = check("bad.toml", &text);
        assert_eq!(
            out.status.code(),
            Some(2),
            "tandem -t with `{line4}`: {}\nstderr:\n{stderr}",
            out.status
        );
        assert!(
            stderr.contains("bad.toml:4:"),
            "`{line4}` ({what}): stderr should name bad.toml:4:\n{stderr}"
        );
    }
}

#[test]
fn syntax_error_fails_with_its_line() {
    let (out, stderr, _) = check(
        "syntax.toml",
        "root = \"/tmp\"\nlisten = [\"127.0.0.1:0\"\nindex = \"x\"\n",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "tandem -t on a syntax error: {}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("syntax.toml:"),
        "stderr should name the file:\n{stderr}"
    );
    let (out, stderr, _) = check("syntax2.toml", "root = \"/tmp\"\nthis is not toml\n");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("syntax2.toml:2:"),
        "stderr should name line 2:\n{stderr}"
    );
}

#[test]
fn missing_config_file_fails() {
    let out = Command::new(tandem_bin())
        .args(["-t", "-c", "/nonexistent/tandem-test/nope.toml"])
        .output()
        .expect("run tandem");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "tandem -t -c <missing>: {}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("nope.toml"),
        "stderr should name the missing file:\n{stderr}"
    );
}

#[test]
fn bad_engine_flag_fails() {
    let root = root_dir();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        format!("root = {}\n", toml_str(&root.path().display().to_string())),
    )
    .unwrap();
    let out = Command::new(tandem_bin())
        .arg("-t")
        .arg("--engine")
        .arg("kqueue")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run tandem");
    assert!(
        !out.status.success(),
        "--engine kqueue accepted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn server_refuses_bad_config_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, "listen = [\"127.0.0.1:0\"]\nnot_a_key = true\n").unwrap();
    let out = Command::new(tandem_bin())
        .arg("-c")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tandem");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "starting with a bad config: {}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stderr.contains("run.toml:2:"), "{stderr}");
}

#[test]
fn missing_root_refuses_to_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    let missing = dir.path().join("no-such-root");
    std::fs::write(
        &cfg,
        format!(
            "listen = [\"127.0.0.1:0\"]\nroot = {}\naccess_log = \"off\"\n",
            toml_str(&missing.display().to_string())
        ),
    )
    .unwrap();
    let out = Command::new(tandem_bin())
        .arg("-c")
        .arg(&cfg)
        .output()
        .expect("run tandem");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("no-such-root"),
        "stderr names the root:\n{stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "nothing served:\n{stderr}"
    );
}
