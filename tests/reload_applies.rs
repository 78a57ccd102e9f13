//! A reload applies what a reload can: `metrics_listen` moves on SIGHUP like
//! `listen` does (the new address serves before the old one goes, clients
//! of the old one finish with `Connection: close`, none is reset, and the
//! old address is refused afterwards); a reload refused over a busy port
//! suggests a port that is free at that moment.

#[macro_use]
mod common;

use common::load::{Group, Load, LoadConfig, Mode, Target};
use common::*;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A free port on 127.0.0.1 other than those in `not`.
fn port_besides(not: &[u16]) -> SocketAddr {
    loop {
        let p = free_port();
        if !not.contains(&p) {
            return format!("127.0.0.1:{p}").parse().unwrap();
        }
    }
}

fn healthz(addr: SocketAddr) -> Response {
    get(addr, "/healthz")
}

fn metrics_cfg(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("workers = 1\nmetrics_listen = [{}]", list.join(", "))
}

/// The address in "--listen ADDR)" of a refusal.
fn suggested(line: &str) -> Option<SocketAddr> {
    let at = line.find("--listen ")? + "--listen ".len();
    line[at..].split([')', ' ', ';']).next()?.parse().ok()
}

engine_tests! {
    // Keep-alive clients of the metrics port hammer /healthz while a reload
    // moves `metrics_listen` from m1 to m2: not one request fails, m2
    // serves as soon as the reload is over, m1 refuses, and no line says
    // the change waits for a restart. Then back to both, then to none.
    fn metrics_listen_moves_on_reload_under_load(e) {
        let site = Site::new();
        let m1 = port_besides(&[]);
        let m2 = port_besides(&[m1.port()]);
        let mut srv = start_or_skip!(e, &metrics_cfg(&[m1]), &site.root);
        // /healthz says 200 from the `serving` line on.
        assert!(srv.wait_stderr(" serving ", RELOAD_TIMEOUT), "{}", srv.stderr_text());
        assert_eq!(healthz(m1).status, 200);
        assert!(TcpStream::connect(m2).is_err(), "{m2} serves before the reload");

        let ok = Target::exact("/healthz", Arc::new(b"ok\n".to_vec()));
        let mut cfg = LoadConfig::new(m1, vec![Group::new("healthz", 8, Mode::KeepAlive, vec![ok])]);
        cfg.duration = Duration::from_secs(30);
        cfg.reconnect_during_stop = true;
        let load = Load::start(cfg);
        assert!(load.wait_for(Duration::from_secs(10), |s| s.complete >= 500), "the load did not run: {}", load.snapshot());
        // m1 is going away: from here a refused connect is what we want.
        load.server_stopping();
        srv.write_config(&metrics_cfg(&[m2]), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload to {m2}: {l}"));
        assert!(line.contains("reloaded: "), "{line}");
        assert_eq!(healthz(m2).status, 200, "{m2} right after the reload");
        let s = load.join(Duration::from_secs(10));
        note(&format!("engine {e}: on {m1}: {}", s.line()));
        assert_eq!(s.failed(), 0, "engine {e}: requests to {m1} failed across the reload: {s}\n{}", srv.stderr_text());
        assert!(s.close_announced > 0, "no client of {m1} was told `Connection: close`: {s}");
        assert!(TcpStream::connect(m1).is_err(), "{m1} still accepts after the reload dropped it");
        let text = srv.stderr_text();
        assert!(!text.contains("restart only"), "{text}");
        assert!(text.contains(&format!("metrics: stopped listening on {m1}")), "{text}");
        assert!(text.contains(&format!("metrics and health on {m2}")), "{text}");

        // Both again (m1 can be bound again), then none.
        srv.write_config(&metrics_cfg(&[m1, m2]), &site.root);
        srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload to both: {l}"));
        assert_eq!(healthz(m1).status, 200, "{m1} back");
        assert_eq!(healthz(m2).status, 200, "{m2} kept");
        srv.write_config("workers = 1", &site.root);
        srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload to none: {l}"));
        assert!(TcpStream::connect(m1).is_err() && TcpStream::connect(m2).is_err(), "metrics still served with metrics_listen empty");
        assert_eq!(get(srv.addr(), "/").status, 200);
        srv.assert_healthy("after moving metrics_listen");
    }

    // A server started without metrics gets them on a reload.
    fn metrics_listen_added_by_a_reload(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "workers = 1", &site.root);
        let m = port_besides(&[srv.addr().port()]);
        srv.write_config(&metrics_cfg(&[m]), &site.root);
        srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload adding {m}: {l}"));
        let r = healthz(m);
        assert_eq!((r.status, r.body_str()), (200, "ok\n".to_string()), "{m} after the reload");
        assert!(!srv.stderr_text().contains("restart only"), "{}", srv.stderr_text());
    }

    // The reload asks for a port another program holds, and the port after
    // it is busy too: the refusal suggests a port that can be bound right
    // then (not merely the next one), and the server keeps serving.
    fn refused_reload_suggests_a_free_port(e) {
        let site = Site::new();
        let a = port_besides(&[]);
        let srv = start_or_skip!(e, &format!("workers = 1\nlisten = [\"{a}\"]"), &site.root);
        let (busy, next) = loop {
            let b = TcpListener::bind("127.0.0.1:0").unwrap();
            let p = b.local_addr().unwrap().port();
            if p < u16::MAX
                && let Ok(n) = TcpListener::bind(("127.0.0.1", p + 1))
            {
                break (b, n);
            }
        };
        let b = busy.local_addr().unwrap();
        srv.write_config(&format!("workers = 1\nlisten = [\"{a}\", \"{b}\"]"), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).expect_err("a reload onto a busy port");
        assert!(line.contains(&format!("listen {b}: address already in use (another server is on it? pick another with --listen")), "{line}");
        let s = suggested(&line).unwrap_or_else(|| panic!("no address suggested in {line:?}"));
        assert_ne!(s, next.local_addr().unwrap(), "suggested the next port, which is busy: {line}");
        TcpListener::bind(s).unwrap_or_else(|err| panic!("the suggested {s} cannot be bound: {err}; {line}"));
        assert_eq!(get(a, "/").status, 200, "still serving");
    }
}
