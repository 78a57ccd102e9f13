//! Listeners are what the config says: `[::]:P` is IPv6 only (so
//! `0.0.0.0:P` beside it gives both families), `-t` refuses addresses that
//! cannot all be bound, and an address a reload removes stops accepting at
//! once while the old workers' connections drain, and can be added back.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A port free on both families: std's `[::]:0` socket is dual-stack where
/// the host's bindv6only is 0 (the default), so the port it gets is free
/// for IPv4 too. `None`, after a SKIP, when the host has no IPv6 loopback.
fn port_free_in_both_families() -> Option<u16> {
    if TcpListener::bind("[::1]:0").is_err() {
        skip("no IPv6 loopback ([::1]) on this host");
        return None;
    }
    let l = TcpListener::bind("[::]:0").unwrap();
    Some(l.local_addr().unwrap().port())
}

/// `net.ipv6.bindv6only`, when readable.
fn bindv6only() -> Option<bool> {
    let t = fs::read_to_string("/proc/sys/net/ipv6/bindv6only").ok()?;
    Some(t.trim() == "1")
}

/// Connect, expecting a refusal (RST) at once, not a connection that waits
/// in an accept queue nobody serves.
fn assert_refused(addr: SocketAddr, ctx: &str) {
    let t = Instant::now();
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!(
            "{ctx}: connect {addr}: {e} after {:?}, want refused",
            t.elapsed()
        ),
        Ok(mut s) => {
            // Accepted by the kernel: see whether anyone answers.
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut b = [0u8; 64];
            let got = s.read(&mut b);
            panic!("{ctx}: connect {addr} succeeded (then read: {got:?}), want refused")
        }
    }
}

/// `tandem ARGS -c CFG` with `--engine e`: exit 2 with `want` in its message.
fn refused(e: &str, args: &[&str], cfg: &std::path::Path, want: &str) {
    let mut cmd = Command::new(tandem_bin());
    cmd.args(["--engine", e]).args(args).arg("-c").arg(cfg);
    let out = run_with_timeout(cmd, EXIT_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(2),
        "tandem {args:?}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(want),
        "tandem {args:?}: want {want:?} in:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
}

/// Two distinct free ports on 127.0.0.1.
fn two_ports() -> (u16, u16) {
    loop {
        let (a, b) = (free_port(), free_port());
        if a != b {
            return (a, b);
        }
    }
}

/// A download read slowly: a small receive buffer, and reads only when
/// asked, so the server's side stays in flight for as long as the test
/// wants.
struct SlowDownload {
    s: TcpStream,
    got: Vec<u8>,
}

impl SlowDownload {
    fn start(addr: SocketAddr, path: &str) -> SlowDownload {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        set_sockopt(
            &s,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &(16 * 1024 as libc::c_int),
        );
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut d = SlowDownload { s, got: Vec::new() };
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        d.s.write_all(req.as_bytes()).unwrap();
        d.read_at_least(64 * 1024);
        d
    }

    fn read_at_least(&mut self, n: usize) {
        let want = self.got.len() + n;
        let mut buf = [0u8; 8192];
        while self.got.len() < want {
            match self.s.read(&mut buf) {
                Ok(0) => panic!("the download ended after {} bytes", self.got.len()),
                Ok(k) => self.got.extend_from_slice(&buf[..k]),
                Err(e) => panic!("the download failed after {} bytes: {e}", self.got.len()),
            }
        }
    }

    /// Read to the end; the body, checked against its Content-Length.
    fn finish(mut self) -> Vec<u8> {
        self.s
            .read_to_end(&mut self.got)
            .unwrap_or_else(|e| panic!("after {} bytes: {e}", self.got.len()));
        let r = frame::split_response(&self.got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200, "{}", r.describe());
        let len = frame::content_length(&r.head);
        assert_eq!(r.body.len(), len, "body length against Content-Length");
        r.body
    }
}

engine_tests! {
    // A reload that drops an address: new clients to it are refused at
    // once (not left in a queue nobody serves) while the old workers'
    // slow download goes on, a reload back to it succeeds while that
    // download still runs, and the download completes byte-exact.
    fn a_listen_address_dropped_by_a_reload_is_refused_at_once(e) {
        let site = Site::new();
        let huge = pseudo_random(32 << 20, 25);
        site.write("huge.bin", &huge);
        let (pa, pb) = two_ports();
        let a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
        let b: SocketAddr = format!("127.0.0.1:{pb}").parse().unwrap();
        // The old generation may take as long as the download needs.
        let cfg = |listen: &str| format!("listen = {listen}\nshutdown_timeout = \"120s\"");
        let mut srv = start_or_skip!(e, &cfg(&format!("[\"{a}\", \"{b}\"]")), &site.root);
        let mut slow = SlowDownload::start(b, "/huge.bin");

        srv.write_config(&cfg(&format!("[\"{a}\"]")), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload without {b}: {l}"));
        assert!(line.contains("reloaded: "), "{line}");
        assert_refused(b, "the dropped address, right after the reload");
        assert!(srv.stderr_text().contains(&format!("stopped listening on {b}")), "{}", srv.stderr_text());
        assert_eq!(get(a, "/").status, 200, "the kept address");
        slow.read_at_least(64 * 1024);

        // Back again, while the old generation still holds the old socket.
        srv.write_config(&cfg(&format!("[\"{a}\", \"{b}\"]")), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).unwrap_or_else(|l| panic!("reload back to {b}: {l}"));
        assert!(line.contains("reloaded: "), "{line}");
        let r = get(b, "/");
        assert_eq!(r.status, 200, "{b} after the reload back: {}", r.describe());
        assert!(r.body_str().contains("ROOT-INDEX-PAGE"));
        assert!(slow.got.len() < huge.len() / 2, "the download was no longer in flight ({} bytes read)", slow.got.len());

        let body = slow.finish();
        assert_bytes_eq(&body, &huge, "the slow download across both reloads");
        srv.assert_healthy("after both reloads");
    }

    // tandem holds the port itself (a wildcard the same reload drops): the
    // refusal says so, and never blames another server.
    fn address_in_use_by_tandem_itself_is_said_so(e) {
        let site = Site::new();
        let port = free_port();
        let mut srv = start_or_skip!(e, &format!("listen = [\"0.0.0.0:{port}\"]"), &site.root);
        srv.write_config(&format!("listen = [\"127.0.0.1:{port}\"]"), &site.root);
        let line = srv.reload(RELOAD_TIMEOUT).expect_err("both could be bound at once");
        let want = format!(
            "listen 127.0.0.1:{port}: address already in use by this server's own listener on 0.0.0.0:{port}"
        );
        assert!(line.contains(&want), "want {want:?} in {line:?}");
        assert!(!line.contains("another server"), "{line}");
        assert_eq!(get(format!("127.0.0.1:{port}").parse().unwrap(), "/").status, 200, "still serving");
        srv.assert_healthy("after the refused reload");
    }

    // The shipped example, `listen = ["0.0.0.0:P", "[::]:P"]`, starts on a
    // host with net.ipv6.bindv6only = 0 (the Linux default) and serves
    // both families; `[::]:P` alone does not take IPv4's port.
    fn ipv4_and_ipv6_wildcards_share_a_port(e) {
        let Some(port) = port_free_in_both_families() else { return };
        if bindv6only() == Some(true) {
            note("net.ipv6.bindv6only = 1 here: [::] is IPv6 only by the host's default too");
        }
        let site = Site::new();
        let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        {
            let extra = format!("listen = [\"0.0.0.0:{port}\", \"[::]:{port}\"]");
            let srv = start_or_skip!(e, &extra, &site.root);
            assert!(srv.wait_stderr(" serving ", START_TIMEOUT), "{}", srv.stderr_text());
            let addrs = listening_addrs(&srv.stderr_text());
            assert_eq!(addrs.len(), 2, "{}", srv.stderr_text());
            for a in [v4, v6] {
                let r = get(a, "/");
                assert_eq!(r.status, 200, "{a}: {}", r.describe());
                assert!(r.body_str().contains("ROOT-INDEX-PAGE"), "{a}");
            }
        }
        // [::]:P on its own: IPv6 only, IPv4's port stays free. (A killed
        // io_uring process's ring, and the sockets it holds, are torn
        // down after the exit: wait until the port is free again.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(("::", port)).is_err() {
            assert!(Instant::now() < deadline, "[::]:{port} still in use after the first server exited");
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
        let extra = format!("listen = [\"[::]:{port}\"]");
        let srv = start_or_skip!(e, &extra, &site.root);
        assert_eq!(get(v6, "/").status, 200);
        assert_refused(v4, "IPv4 to a [::] listener");
        let other = TcpListener::bind(v4).unwrap_or_else(|e| panic!("bind {v4} beside tandem's [::]:{port}: {e}"));
        drop(other);
        drop(srv);
    }

    // What can be checked without binding is checked by -t, and by a
    // start alike: an address twice, a wildcard beside an address it
    // covers, an IPv4-mapped IPv6 address; each names the key and line.
    fn test_flag_refuses_listen_addresses_that_cannot_all_be_bound(e) {
        let site = Site::new();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("t.toml");
        let root = toml_str(&site.root.display().to_string());
        let port = free_port();
        for (listen, want) in [
            (format!("[\"0.0.0.0:{port}\", \"127.0.0.1:{port}\"]"),
             format!("t.toml:3: listen: 0.0.0.0:{port} and 127.0.0.1:{port} take the same port")),
            (format!("[\"127.0.0.1:{port}\", \"127.0.0.1:{port}\"]"),
             format!("t.toml:3: listen: 127.0.0.1:{port} is listed twice")),
            (format!("[\"[::1]:{port}\", \"[::]:{port}\"]"),
             format!("t.toml:3: listen: [::1]:{port} and [::]:{port} take the same port")),
            (format!("[\"[::ffff:127.0.0.1]:{port}\"]"),
             format!("t.toml:3: listen: [::ffff:127.0.0.1]:{port} is an IPv4-mapped address")),
        ] {
            fs::write(&cfg, format!("root = {root}\naccess_log = \"off\"\nlisten = {listen}\n")).unwrap();
            refused(e, &["-t"], &cfg, &want);
            refused(e, &[], &cfg, &want);
        }
        // --listen is checked the same way.
        fs::write(&cfg, format!("root = {root}\naccess_log = \"off\"\n")).unwrap();
        let (a, b) = (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}"));
        refused(e, &["-t", "--listen", &a, "--listen", &b], &cfg, &format!("--listen: listen: {a} and {b} take the same port"));
        // Both wildcards of one port are fine.
        fs::write(&cfg, format!("root = {root}\naccess_log = \"off\"\nlisten = [\"0.0.0.0:{port}\", \"[::]:{port}\"]\n")).unwrap();
        let mut cmd = Command::new(tandem_bin());
        cmd.args(["--engine", e, "-t", "-c"]).arg(&cfg);
        let out = run_with_timeout(cmd, EXIT_TIMEOUT);
        assert!(out.stderr.contains("is ok"), "{}", out.stderr);
    }
}
