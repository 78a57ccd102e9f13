//! A graceful stop needs no privilege: with `user = "nobody"` (started as
//! root, as a service is), a stop under 40 busy keep-alive connections whose
//! clients reconnect as soon as they are told `Connection: close` cuts no
//! request, and the server logs no warning. New connections during the stop
//! are served or refused before their handshake completes, never reset.
//! A reload that drops an address uses the same hold-off, and says nothing
//! either.

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

engine_tests! {
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
