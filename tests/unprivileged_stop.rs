//! A graceful stop needs no privilege: with `user = "nobody"` (started as
//! root, as a service is), a stop under 40 busy keep-alive connections whose
//! clients reconnect as soon as they are told `Connection: close` cuts no
//! request, and the server logs no warning. New connections during the stop
//! are served or refused before their handshake completes, never reset.
//! A reload that drops an address uses the same hold-off, and says nothing
//! either. Started the way `systemd/tandem.service` starts it (never root:
//! its `User=` with its ambient capabilities), a stop says nothing either,
//! and the server keeps only `CAP_NET_BIND_SERVICE` once it serves.

#[macro_use]
mod common;

use common::load::{Group, Load, LoadConfig, Mode, Target};
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

fn bytes(s: &str) -> Arc<Vec<u8>> {
    Arc::new(s.as_bytes().to_vec())
}

fn nobody_or_skip() -> bool {
    if !running_as_root() || uid_of_user("nobody").is_none() {
        skip("needs root (to drop to `nobody`) and a `nobody` user");
        return false;
    }
    true
}

/// Warnings and worse in the server's stderr.
fn complaints(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            [" warn ", " error ", " alert ", "panicked"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

/// The values of the unit's `key=` lines, in order, split into words.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .flat_map(|v| v.split_whitespace())
        .map(String::from)
        .collect()
}

/// `CAP_NET_BIND_SERVICE CAP_BPF` as setpriv wants it: `+net_bind_service,+bpf`.
fn setpriv_caps(caps: &[String]) -> String {
    caps.iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A capability set line (`CapEff:` ...) of `/proc/PID/status`.
fn cap_set(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

engine_tests! {
    // As the unit runs it (setpriv stands in for systemd: the unit's User=,
    // Group=, AmbientCapabilities=, CapabilityBoundingSet= and
    // NoNewPrivileges=): it serves holding CAP_NET_BIND_SERVICE and nothing
    // else, and a graceful stop holds off new connections without a word.
    fn stop_as_the_unit_runs_it_says_nothing(e) {
        let found = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| std::path::Path::new(p).exists());
        let Some(setpriv) = found else {
            skip("setpriv not installed (Debian package util-linux)");
            return;
        };
        let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/tandem.service")).unwrap();
        let one = |key: &str| unit_values(&unit, key).pop().unwrap_or_else(|| panic!("tandem.service: no {key}="));
        let (user, group) = (one("User"), one("Group"));
        if !running_as_root() || uid_of_user(&user).is_none() {
            skip(&format!("needs root (to become the unit's user) and a `{user}` user"));
            return;
        }
        let ambient = setpriv_caps(&unit_values(&unit, "AmbientCapabilities"));
        let bounding = setpriv_caps(&unit_values(&unit, "CapabilityBoundingSet"));
        let site = Site::new();
        let conf = site.base.join("unit.toml");
        let root = site.root.display();
        std::fs::write(&conf, format!("listen = [\"127.0.0.1:0\"]\nroot = \"{root}\"\naccess_log = \"off\"\nengine = \"{e}\"\n")).unwrap();
        let stderr = site.base.join("stderr");
        let mut cmd = std::process::Command::new(setpriv);
        cmd.args([format!("--reuid={user}"), format!("--regid={group}"), "--init-groups".into()])
            .args([format!("--inh-caps={ambient}"), format!("--ambient-caps={ambient}"), format!("--bounding-set=-all,{bounding}")]);
        if one("NoNewPrivileges") == "yes" {
            cmd.arg("--no-new-privs");
        }
        let mut child = KillOnDrop(cmd.arg(tandem_bin()).arg("-c").arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("setpriv"));
        let started = wait_file(&stderr, Duration::from_secs(20), |t| t.contains(" serving ") || t.contains("tandem: "));
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if started.is_none() || !text.contains(" serving ") {
            if text.contains("unavailable") {
                skip(&format!("{e}: {text}"));
                return;
            }
            panic!("engine {e}: tandem did not start as the unit runs it:\n{text}");
        }
        let pid = child.0.id();
        const NET_BIND_SERVICE: u64 = 1 << 10;
        for set in ["CapEff", "CapPrm", "CapAmb", "CapInh"] {
            assert_eq!(cap_set(pid, set), NET_BIND_SERVICE, "engine {e}: {set} of the serving tandem (only CAP_NET_BIND_SERVICE, bit 10)");
        }
        let addr = *listening_addrs(&text).first().expect("a `listening on` line");
        assert_status(&get(addr, "/"), 200, "GET / from tandem run as the unit runs it");
        send_signal(pid, libc::SIGTERM);
        let status = child.0.wait().unwrap();
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(status.success(), "engine {e}: exit {status}\n{text}");
        assert!(complaints(&text).is_empty(), "engine {e}: the stop complained:\n{}", complaints(&text).join("\n"));
    }

    // 40 keep-alive connections as fast as they go, SIGTERM under the load:
    // every request sent is answered, clients that reconnect after their
    // `Connection: close` are served or refused (never reset), and no line
    // says the stop could not hold off new connections.
    fn stop_as_nobody_under_load_cuts_nothing(e) {
        if !nobody_or_skip() {
            return;
        }
        let site = Site::new();
        let extra = "user = \"nobody\"\naccess_log = \"off\"\nworkers = 2\nshutdown_timeout = \"10s\"";
        let mut srv = start_or_skip!(e, extra, &site.root);
        assert_eq!(uid_of_pid(&srv.pid().to_string()), uid_of_user("nobody"));
        let targets = vec![
            Target::exact("/", bytes(INDEX_HTML)),
            Target::exact("/style.css", bytes(STYLE_CSS)),
            Target::exact("/logo.png", Arc::new(png_bytes())),
        ];
        let mut cfg = LoadConfig::new(srv.addr(), vec![Group::new("keepalive", 40, Mode::KeepAlive, targets)]);
        cfg.duration = Duration::from_secs(60);
        cfg.reconnect_during_stop = true;
        let load = Load::start(cfg);
        assert!(load.wait_for(Duration::from_secs(20), |s| s.complete >= 3000), "the load did not run: {}", load.snapshot());
        load.server_stopping();
        srv.signal(libc::SIGTERM);
        let exit = srv.wait_exit(Duration::from_secs(20));
        let s = load.join(Duration::from_secs(5));
        let text = srv.stderr_text();
        note(&format!("engine {e}: {}", s.line()));
        assert!(exit.is_some_and(|st| st.success()), "exit {exit:?}\n{text}");
        assert_eq!(s.failed(), 0, "engine {e}: requests cut by a stop as nobody: {s}\n{text}");
        assert!(s.close_announced > 0, "no connection was told `Connection: close`: the stop did not come under load: {s}");
        assert!(complaints(&text).is_empty(), "engine {e}: the stop complained:\n{}", complaints(&text).join("\n"));
    }

    // A reload that drops an address holds off its new connections the same
    // way, as `nobody`: no warning, and the address is refused at once.
    fn reload_dropping_an_address_as_nobody_says_nothing(e) {
        if !nobody_or_skip() {
            return;
        }
        let site = Site::new();
        let (pa, pb) = loop {
            let (a, b) = (free_port(), free_port());
            if a != b {
                break (a, b);
            }
        };
        let a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
        let b: SocketAddr = format!("127.0.0.1:{pb}").parse().unwrap();
        let cfg = |listen: &str| format!("user = \"nobody\"\naccess_log = \"off\"\nlisten = {listen}");
        let srv = start_or_skip!(e, &cfg(&format!("[\"{a}\", \"{b}\"]")), &site.root);
        assert_eq!(get(b, "/").status, 200);
        srv.write_config(&cfg(&format!("[\"{a}\"]")), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload without {b}: {l}"));
        assert!(line.contains("reloaded: "), "{line}");
        assert!(std::net::TcpStream::connect(b).is_err(), "{b} still accepts after the reload dropped it");
        assert_eq!(get(a, "/").status, 200, "the kept address");
        let text = srv.stderr_text();
        assert!(complaints(&text).is_empty(), "engine {e}: the reload complained:\n{}", complaints(&text).join("\n"));
    }
}
