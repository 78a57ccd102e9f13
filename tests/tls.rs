//! HTTPS on both engines: real TLS clients (rustls over a TcpStream, curl
//! and `openssl s_client` where installed) against `tls_listen`, with
//! certificates made at test time (rcgen for ECDSA P-256, the openssl CLI
//! for RSA 2048).

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use rustls::ClientConfig;

/// Deterministic bytes for a large file (xorshift), `len` long.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

engine_tests! {
    /// Pages, a range, a 304 and a precompressed variant over one
    /// keep-alive TLS connection, then three pipelined requests in one
    /// write; the session says TLS 1.3 and ALPN http/1.1.
    fn pages_ranges_304_and_variants_over_tls(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let css = b"body { color: red; }\n".repeat(50);
        site.write("x.css", &css);
        let gz = gzip(&css);
        site.write("x.css.gz", &gz);
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        assert_eq!(c.s.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(c.s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let index = std::fs::read(site.root.join("index.html")).unwrap();
        let r = c.get("/", "");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body, index);
        let r = c.get("/index.html", "Range: bytes=5-14\r\n");
        assert_eq!(r.status, 206, "{}", r.describe());
        assert_eq!(r.body, &index[5..15]);
        let etag = r.header("etag").expect("an ETag").to_string();
        let r = c.get("/index.html", &format!("If-None-Match: {etag}\r\n"));
        assert_eq!(r.status, 304, "{}", r.describe());
        let r = c.get("/x.css", "Accept-Encoding: gzip\r\n");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.body, gz);
        // Pipelined: three requests in one record, answered in order.
        c.send(b"GET /x.css HTTP/1.1\r\nHost: x\r\n\r\nHEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        let a = c.response("GET");
        let b = c.response("HEAD");
        let big = c.response("GET");
        assert_eq!(a.body, css);
        assert_eq!(b.status, 200);
        assert_eq!(b.header("content-length"), Some(index.len().to_string().as_str()));
        assert_eq!(big.body, std::fs::read(site.root.join("big.bin")).unwrap());
        // Still open for more.
        assert_eq!(c.get("/sub/page.html", "").body, b"<p>SUB-PAGE</p>");
    }

    /// A 100 MiB file and the site's big.bin arrive byte-exact over TLS
    /// (file bodies are read in chunks and encrypted), with TLS 1.2 too,
    /// and a range from the middle of the big one.
    fn large_files_byte_exact(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let huge = pattern(100 << 20, 7);
        site.write("huge.bin", &huge);
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        let r = c.get("/huge.bin", "");
        assert_eq!(r.status, 200);
        assert!(r.body == huge, "100 MiB body differs ({} bytes came)", r.body.len());
        let r = c.get("/huge.bin", "Range: bytes=50000000-50999999\r\n");
        assert_eq!(r.status, 206);
        assert!(r.body == huge[50_000_000..51_000_000]);
        let mut c12 = Tls::connect(addr, "ec.test", client(&[&ec], Some(&rustls::version::TLS12)));
        assert_eq!(c12.s.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        let big = std::fs::read(site.root.join("big.bin")).unwrap();
        assert!(c12.get("/big.bin", "").body == big);
    }

    /// Two certificates (ECDSA P-256 first, RSA 2048): SNI picks by name;
    /// an unknown name and no SNI get the first.
    fn sni_picks_the_certificate(e) {
        let TlsSite { site, certs, ec } = TlsSite::new();
        let Some(rsa) = rsa_pair(certs.path(), "rsa", "rsa.test") else { return };
        let srv = start_or_skip!(e, &tls_config("", &[&ec, &rsa]), &site.root);
        let addr = tls_addr(&srv);
        // A new client config each time: a resumed session would show
        // the certificate of the session it resumes.
        let both = || client(&[&ec, &rsa], None);
        let c = Tls::connect(addr, "ec.test", both());
        assert!(c.peer_cert() == ec.der, "ec.test got another certificate");
        let mut c = Tls::connect(addr, "rsa.test", both());
        assert!(c.peer_cert() == rsa.der, "rsa.test got another certificate");
        assert_eq!(c.get("/sub/page.html", "").status, 200);
        let c = Tls::connect(addr, "RSA.Test", both());
        assert!(c.peer_cert() == rsa.der, "names match without regard to case");
        let c = Tls::connect(addr, "unknown.test", any_cert_client());
        assert!(c.peer_cert() == ec.der, "an unknown name gets the default");
        let c = Tls::connect(addr, "127.0.0.1", any_cert_client());
        assert!(c.peer_cert() == ec.der, "no SNI gets the default");
    }

    /// A reload keeps every kind of resumption: TLS 1.3 tickets, TLS 1.2
    /// tickets, and TLS 1.2 session IDs (a client without tickets), as
    /// nginx's shared session cache does. Session IDs used to be lost: the
    /// reload made a new, empty, session cache.
    fn resumption_survives_a_reload(e) {
        use rustls::client::{Resumption, Tls12Resumption};
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let id_only = {
            let mut c = (*client(&[&ec], Some(&rustls::version::TLS12))).clone();
            c.resumption =
                Resumption::in_memory_sessions(8).tls12_resumption(Tls12Resumption::SessionIdOnly);
            Arc::new(c)
        };
        let kinds = [
            ("TLS 1.3 ticket", client(&[&ec], None)),
            ("TLS 1.2 ticket", client(&[&ec], Some(&rustls::version::TLS12))),
            ("TLS 1.2 session ID", id_only),
        ];
        for (what, cc) in &kinds {
            let mut c = Tls::connect(addr, "ec.test", cc.clone());
            assert_eq!(c.get("/", "").status, 200, "{what}");
            let c = Tls::connect(addr, "ec.test", cc.clone());
            let kind = c.s.conn.handshake_kind();
            assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "{what}, before a reload");
        }
        srv.reload(START_TIMEOUT).expect("reload");
        for (what, cc) in &kinds {
            let mut c = Tls::connect(addr, "ec.test", cc.clone());
            let kind = c.s.conn.handshake_kind();
            assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "{what}, after a reload");
            assert_eq!(c.get("/", "").status, 200, "{what}");
        }
    }

    /// Two certificates for one name, ECDSA P-256 then RSA 2048 (nginx's
    /// two `ssl_certificate`s): a client that can use ECDSA gets the first;
    /// one that can use only RSA (TLS 1.3 with RSA signature schemes alone,
    /// TLS 1.2 with ECDHE-RSA suites alone) gets the RSA one, with SNI and
    /// without. The second used to be ignored: such a client failed.
    fn one_name_with_ecdsa_and_rsa_certificates(e) {
        let TlsSite { site, certs, ec } = TlsSite::new();
        // 127.0.0.1 too (an IP subjectAltName): the client without SNI checks it.
        let Some(rsa) = rsa_pair_for(certs.path(), "rsa", &["ec.test", "127.0.0.1"]) else {
            return;
        };
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec, &rsa]);
        let c = Tls::connect(addr, "ec.test", client(&[&ec, &rsa], None));
        assert!(c.peer_cert() == ec.der, "a client with ECDSA gets the first");
        for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for sni in ["ec.test", "127.0.0.1"] {
                let mut c = Tls::try_connect(addr, sni, rsa_only_client(&[&rsa], v))
                    .unwrap_or_else(|err| panic!("{v:?}, SNI {sni}, RSA only: {err}"));
                assert!(c.peer_cert() == rsa.der, "{v:?} {sni}: not the RSA certificate");
                assert_eq!(c.get("/sub/page.html", "").body, b"<p>SUB-PAGE</p>");
            }
        }
    }

    /// Plain HTTP on the TLS port: a 400 with a one-line body, then the
    /// connection closes, and the access log has its line (as nginx
    /// answers and logs it).
    fn plain_http_to_the_tls_port_gets_400(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /plain-probe HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let got = wait_closed(&mut s, CLOSE_TIMEOUT).unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body, "The plain HTTP request was sent to HTTPS port\n");
        let line = srv
            .wait_access_log(IO_TIMEOUT, |l| l.contains("/plain-probe"))
            .unwrap_or_else(|| panic!("no access-log line for the plain request: {}", srv.access_log()));
        assert!(line.contains("\"GET /plain-probe HTTP/1.1\" 400 46 "), "{line}");
        // One byte at a time works the same.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"G").unwrap();
        s.write_all(b"ET / HTTP/1.1\r\n").unwrap();
        let got = wait_closed(&mut s, CLOSE_TIMEOUT).unwrap();
        assert!(got.starts_with(b"HTTP/1.1 400 "), "{}", show(&got));
    }

    /// Garbage and truncated ClientHellos end their own connection only;
    /// a handshake that stalls is closed by header_timeout, 1,000 of them
    /// at once too (this process's RLIMIT_NOFILE raised to hold them); a
    /// client in the middle of all that is served throughout.
    fn hostile_handshakes_close_without_harm(e) {
        assert!(ensure_nofile(1000 + 256), "RLIMIT_NOFILE cannot hold 1,000 connections");
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (_srv, addr) = start_tls_or_skip!(e, "header_timeout = \"1s\"", site, &[&ec]);
        let mut good = Tls::connect(addr, "ec.test", client(&[&ec], None));
        assert_eq!(good.get("/", "").status, 200);
        // A TLS record header announcing a handshake, then garbage.
        let mut g = TcpStream::connect(addr).unwrap();
        g.write_all(&[0x16, 0x03, 0x01, 0x00, 0x10]).unwrap();
        g.write_all(&[0xff; 16]).unwrap();
        wait_closed(&mut g, CLOSE_TIMEOUT).expect("garbage ClientHello closed");
        // Binary garbage that is not even a record.
        let mut g = TcpStream::connect(addr).unwrap();
        g.write_all(&[0x00, 0x01, 0x02, 0x03, 0x99, 0x42, 0x13, 0x37]).unwrap();
        wait_closed(&mut g, CLOSE_TIMEOUT).expect("binary garbage closed");
        // Truncated: half a record, then nothing.
        let started = Instant::now();
        let mut t = TcpStream::connect(addr).unwrap();
        t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
        // Silent from the start.
        let mut silent = TcpStream::connect(addr).unwrap();
        // A crowd stalled mid-handshake (a valid record header, half a hello).
        let mut crowd: Vec<TcpStream> = (0..1000)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00]).unwrap();
                s
            })
            .collect();
        assert_eq!(good.get("/index.html", "").status, 200, "served meanwhile");
        let other = Tls::connect(addr, "ec.test", client(&[&ec], None));
        drop(other);
        wait_closed(&mut t, Duration::from_secs(6)).expect("truncated hello closed");
        wait_closed(&mut silent, Duration::from_secs(6)).expect("silent handshake closed");
        for (i, s) in crowd.iter_mut().enumerate() {
            wait_closed(s, Duration::from_secs(6))
                .unwrap_or_else(|e| panic!("stalled handshake {i}: {e}"));
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "closed before header_timeout: {took:?}");
        assert_eq!(good.get("/sub/page.html", "").status, 200, "still served");
        let fresh = Tls::connect(addr, "ec.test", client(&[&ec], None));
        drop(fresh);
    }

    /// redirect_to_https: the plaintext port answers 308 to the same path
    /// on the TLS port, for the Host the client named; ACME challenges are
    /// served as files; the TLS port serves pages.
    fn redirect_to_https_except_acme(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        site.write(".well-known/acme-challenge/tok123", b"TOKEN-BODY");
        let cfg = tls_config("redirect_to_https = true", &[&ec]);
        let srv = start_or_skip!(e, &cfg, &site.root);
        let tls = tls_addr(&srv);
        let r = request(srv.addr(), b"GET /sub/page.html?x=1 HTTP/1.1\r\nHost: example.org:8080\r\n\r\n");
        assert_eq!(r.status, 308, "{}", r.describe());
        assert_eq!(
            r.header("location"),
            Some(format!("https://example.org:{}/sub/page.html?x=1", tls.port()).as_str())
        );
        let r = request(srv.addr(), b"HEAD / HTTP/1.1\r\nHost: [::1]\r\n\r\n");
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location"), Some(format!("https://[::1]:{}/", tls.port()).as_str()));
        let r = request(srv.addr(), b"GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: example.org\r\n\r\n");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body, b"TOKEN-BODY");
        let r = request(srv.addr(), b"GET / HTTP/1.1\r\nHost: bad\"host\r\n\r\n");
        assert_eq!(r.status, 400, "a Host that cannot be put in a URL");
        let mut c = Tls::connect(tls, "ec.test", client(&[&ec], None));
        assert_eq!(c.get("/sub/page.html", "").status, 200, "TLS is not redirected");
    }

    /// The JSON access log says tls_version, tls_cipher and sni for a
    /// request over TLS, and has none of them for a plaintext one.
    fn json_access_log_has_tls_fields(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (srv, addr) = start_tls_or_skip!(e, "access_log_format = \"json\"", site, &[&ec]);
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        assert_eq!(c.get("/sub/page.html?tls", "").status, 200);
        assert_eq!(get(srv.addr(), "/sub/page.html?plain").status, 200);
        let json = |needle: &str| -> serde_json::Value {
            let line = srv
                .wait_access_log(IO_TIMEOUT, |l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle}: {}", srv.access_log()));
            serde_json::from_str(&line).unwrap()
        };
        let t = json("?tls");
        assert_eq!(t["tls_version"], "TLSv1.3", "{t}");
        assert_eq!(t["tls_cipher"], "TLS13_AES_256_GCM_SHA384", "{t}");
        assert_eq!(t["sni"], "ec.test", "{t}");
        let p = json("?plain");
        for k in ["tls_version", "tls_cipher", "sni"] {
            assert!(p.get(k).is_none(), "{k} on a plaintext line: {p}");
        }
        // No SNI: null.
        let mut n = Tls::connect(addr, "127.0.0.1", any_cert_client());
        assert_eq!(n.get("/sub/page.html?nosni", "").status, 200);
        assert!(json("?nosni")["sni"].is_null());
    }

    /// Socket activation: a socket systemd passes serves TLS when
    /// `tls_listen` lists its address (and plaintext otherwise).
    fn socket_activation_passes_a_tls_listener(e) {
        use std::os::fd::AsRawFd;
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let passed = listener.local_addr().unwrap();
        let opts = Launch {
            listen_fd: Some(listener.as_raw_fd()),
            ..Default::default()
        };
        let mut cfg = format!("tls_listen = [\"{passed}\"]\n");
        cfg.push_str(&cert_entry(&ec));
        let Some(srv) = Server::launch(e, &cfg, &site.root, opts) else {
            return;
        };
        drop(listener);
        assert_eq!(tls_addr(&srv), passed, "{}", srv.stderr_text());
        let mut c = Tls::connect(passed, "ec.test", client(&[&ec], None));
        assert_eq!(c.get("/sub/page.html", "").body, b"<p>SUB-PAGE</p>");
    }

    /// Three reloads, each with renewed certificates, while clients make
    /// new TLS connections without pause: not one request fails.
    fn no_request_fails_across_reloads(e) {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let site = Site::new();
        let certs = tempfile::tempdir().unwrap();
        let live = ec_pair(certs.path(), "live", &["ec.test"], 90);
        let srv = start_or_skip!(e, &tls_config("", &[&live]), &site.root);
        let addr = tls_addr(&srv);
        let index = std::fs::read(site.root.join("index.html")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (stop, done, index) = (stop.clone(), done.clone(), index.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = std::panic::catch_unwind(|| {
                            let mut c = Tls::connect(addr, "ec.test", any_cert_client());
                            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                            c.response("GET")
                        });
                        match r {
                            Ok(r) if r.status == 200 && r.body == index => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures.push(r.describe()),
                            Err(_) => failures.push("connection failed".to_string()),
                        }
                    }
                    failures
                })
            })
            .collect();
        for round in 0..3 {
            let before = done.load(Ordering::Relaxed);
            while done.load(Ordering::Relaxed) < before + 20 {
                std::thread::yield_now();
            }
            ec_pair(certs.path(), "live", &["ec.test"], 100 + round);
            srv.reload(START_TIMEOUT).expect("reload");
        }
        let before = done.load(Ordering::Relaxed);
        while done.load(Ordering::Relaxed) < before + 20 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        let failures: Vec<String> = clients.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert!(failures.is_empty(), "{} failed of {}: {failures:#?}", failures.len(), done.load(Ordering::Relaxed));
    }

    /// A second connection resumes the session (a TLS 1.3 ticket); the
    /// metrics count handshakes by version and failures by reason.
    fn resumption_and_metrics(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (srv, addr) = start_tls_or_skip!(e, "metrics_listen = [\"127.0.0.1:0\"]", site, &[&ec]);
        let cc = client(&[&ec], None);
        let mut a = Tls::connect(addr, "ec.test", cc.clone());
        assert_eq!(a.get("/", "").status, 200); // the ticket came before this answer
        assert_eq!(a.s.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
        let mut b = Tls::connect(addr, "ec.test", cc);
        assert_eq!(b.s.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        assert_eq!(b.get("/", "").status, 200);
        let _c12 = Tls::connect(addr, "ec.test", client(&[&ec], Some(&rustls::version::TLS12)));
        let mut p = TcpStream::connect(addr).unwrap();
        p.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        wait_closed(&mut p, CLOSE_TIMEOUT).unwrap();
        let mut g = TcpStream::connect(addr).unwrap();
        g.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 1, 2, 3, 4]).unwrap();
        wait_closed(&mut g, CLOSE_TIMEOUT).unwrap();
        assert_eq!(srv.metric("tandem_tls_handshakes_total{version=\"TLSv1.3\"}"), 2);
        assert_eq!(srv.metric("tandem_tls_handshakes_total{version=\"TLSv1.2\"}"), 1);
        assert_eq!(srv.metric("tandem_tls_handshake_failures_total{reason=\"plain_http\"}"), 1);
        assert_eq!(srv.metric("tandem_tls_handshake_failures_total{reason=\"protocol\"}"), 1);
    }

    /// curl and openssl s_client: pages and a range with curl; TLS 1.2
    /// works, TLS 1.1 and a CBC suite are refused; a session is reused.
    fn curl_and_openssl_clients(e) {
        if !have("curl") || !have("openssl") {
            return skip("curl or openssl not installed");
        }
        let TlsSite { site, certs, ec } = TlsSite::new();
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let port = addr.port();
        let curl = |args: &[&str]| {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "20", "--cacert"])
                .arg(&ec.cert)
                .args(["--resolve", &format!("ec.test:{port}:127.0.0.1")])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let url = format!("https://ec.test:{port}");
        let index = std::fs::read(site.root.join("index.html")).unwrap();
        assert_eq!(curl(&[&format!("{url}/")]), index);
        assert_eq!(curl(&["-r", "3-12", &format!("{url}/index.html")]), &index[3..13]);
        let big = std::fs::read(site.root.join("big.bin")).unwrap();
        assert!(curl(&[&format!("{url}/big.bin")]) == big);
        let s_client = |args: &[&str], input: &str| {
            let mut child = Command::new("openssl")
                .args(["s_client", "-connect", &addr.to_string(), "-servername", "ec.test"])
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let req = "GET / HTTP/1.1\r\nHost: ec.test\r\nConnection: close\r\n\r\n";
        let (_, out) = s_client(&["-tls1_2", "-ign_eof"], req);
        assert!(out.contains("TLSv1.2"), "{out}");
        assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
        // Offered by the client (security level 0 lets it), refused by us.
        let (_, out) = s_client(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], "");
        assert!(!out.contains("HTTP/1.1") && (out.contains("alert") || out.contains("no protocols")), "{out}");
        assert!(out.contains("Cipher is (NONE)") || out.contains("alert protocol version"), "TLS 1.1: {out}");
        let (_, out) = s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"], "");
        assert!(out.contains("Cipher is (NONE)") || out.contains("handshake failure"), "CBC: {out}");
        let sess = certs.path().join("sess.pem");
        let sess = sess.to_str().unwrap();
        let (_, out) = s_client(&["-ign_eof", "-sess_out", sess], req);
        assert!(out.contains("New, TLSv1.3"), "{out}");
        let (_, out) = s_client(&["-ign_eof", "-sess_in", sess], req);
        assert!(out.contains("Reused, TLSv1.3"), "no resumption: {out}");
    }

    /// SIGHUP with renewed files: new handshakes get the new certificate, a
    /// download under way on the old one finishes untouched; a renewal
    /// whose key does not match is refused naming the file, and the
    /// certificate before it keeps serving.
    fn reload_swaps_certificates(e) {
        let site = Site::new();
        let huge = pattern(24 << 20, 3);
        site.write("huge.bin", &huge);
        let certs = tempfile::tempdir().unwrap();
        let live = ec_pair(certs.path(), "live", &["ec.test"], 90);
        let first = live.der.clone();
        let srv = start_or_skip!(e, &tls_config("", &[&live]), &site.root);
        let addr = tls_addr(&srv);
        // A new client config each time: a resumed session would show
        // the certificate of the session it resumes.
        let any = any_cert_client;
        // A download under way (its first bytes read) across the reload.
        let mut old = Tls::connect(addr, "ec.test", any());
        old.send(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        old.fill();
        // Renewed in place, as certbot does (a new key, a new certificate).
        let renewed = ec_pair(certs.path(), "live", &["ec.test"], 120);
        assert!(renewed.der != first);
        srv.reload(START_TIMEOUT).expect("reload with renewed certificates");
        let c = Tls::connect(addr, "ec.test", any());
        assert!(c.peer_cert() == renewed.der, "a new handshake got the old certificate");
        let r = old.response("GET");
        assert!(r.body == huge, "the download across the reload differs");
        assert!(old.peer_cert() == first);
        // A key from another pair: refused, naming the key file.
        let other = ec_pair(certs.path(), "other", &["other.test"], 90);
        std::fs::copy(&other.key, &renewed.key).unwrap();
        let err = srv.reload(START_TIMEOUT).expect_err("a mismatched key reloaded");
        assert!(err.contains(&format!("{}: private key does not match", renewed.key.display())), "{err}");
        let mut c = Tls::connect(addr, "ec.test", any());
        assert!(c.peer_cert() == renewed.der, "the last good certificate keeps serving");
        assert_eq!(c.get("/", "").status, 200);
    }


    /// A held file (open-file cache) truncated in place while its entry
    /// is fresh, asked for pipelined behind another page: that page
    /// arrives whole, then the 200 head announcing the old length and
    /// what the file still has, and the connection then ends (no hang, no
    /// stray bytes, nothing queued before it lost); the server says why,
    /// and a new connection is answered.
    fn held_file_truncated_in_place_ends_the_tls_connection(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let body = pattern(40_000, 11);
        site.write("t.bin", &body);
        let (srv, addr) = start_tls_or_skip!(e, "cache_max_file = 1024\ncache_revalidate = \"60s\"", site, &[&ec]);
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        assert_eq!(c.get("/t.bin", "").body, body);
        std::fs::File::options().write(true).open(site.root.join("t.bin")).unwrap().set_len(5000).unwrap();
        let index = std::fs::read(site.root.join("index.html")).unwrap();
        c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\nGET /t.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut got = Vec::new();
        let mut tmp = [0u8; 65536];
        loop {
            match c.s.read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
                Err(e) if is_timeout(&e) => panic!("still open after {} bytes", got.len()),
                Err(_) => break,
            }
        }
        let first = format!("Content-Length: {}\r\n", index.len());
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no head in {} bytes:\n{}", got.len(), srv.stderr_text())) + 4;
        let head = String::from_utf8_lossy(&got[..at]).to_string();
        assert!(head.contains(" 200 ") && head.contains(&first), "{head}");
        assert!(got.len() >= at + index.len(), "the first page cut short: {} bytes", got.len());
        assert_eq!(&got[at..at + index.len()], &index[..], "the first page");
        got.drain(..at + index.len());
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no head in {} bytes:\n{}", got.len(), srv.stderr_text())) + 4;
        let head = String::from_utf8_lossy(&got[..end]).to_string();
        assert!(head.contains("200") && head.contains("ontent-Length: 40000"), "{head}");
        assert_eq!(&got[end..], &body[..5000], "the bytes the file still has");
        assert!(srv.wait_stderr("file shorter than announced", Duration::from_secs(5)), "{}", srv.stderr_text());
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        c.send(b"HEAD /t.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.response("HEAD").status, 200);
    }

    /// With TLS listeners a 40 KiB file sent as it is stays in the byte
    /// cache (TLS copies every body into records: no sendfile to win, and
    /// a read per record to lose), where a plain-only server holds its
    /// descriptor (tests/fdcache.rs).
    fn large_files_stay_bytes_with_tls_listeners(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let body = pattern(40_000, 12);
        site.write("b.bin", &body);
        let (srv, addr) = start_tls_or_skip!(e, "workers = 1\nprecompressed = []", site, &[&ec]);
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        for _ in 0..3 {
            assert!(c.get("/b.bin", "").body == body, "b.bin differs");
        }
        let open = fd_listing(srv.pid());
        assert!(!open.lines().any(|l| l.ends_with("/b.bin")), "b.bin held open, not as bytes:\n{open}");
    }
}

/// `tandem -t` with this config (its TLS lines at the end).
fn check_t(site: &Site, tls_lines: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    let text = compose_config(
        &format!("tls_listen = [\"127.0.0.1:0\"]\n{tls_lines}"),
        &site.root,
        &dir.path().join("access.log"),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(tandem_bin())
        .arg("-t")
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), err)
}

/// `-t` checks the certificates: a key that does not match, an expired
/// certificate and a missing file are errors naming the file; one that
/// ends within 14 days is a warning.
#[test]
fn t_checks_certificates() {
    let site = Site::new();
    let d = tempfile::tempdir().unwrap();
    let a = ec_pair(d.path(), "a", &["a.test"], 90);
    let b = ec_pair(d.path(), "b", &["b.test"], 90);
    let (ok, err) = check_t(&site, &cert_entry(&a));
    assert!(ok, "{err}");
    let mismatched = Pair {
        cert: a.cert.clone(),
        key: b.key.clone(),
        der: a.der.clone(),
    };
    let (ok, err) = check_t(&site, &cert_entry(&mismatched));
    assert!(!ok, "a mismatched key passed -t: {err}");
    assert!(
        err.contains(&format!("{}: private key does not match", b.key.display())),
        "{err}"
    );
    let old = ec_pair(d.path(), "old", &["old.test"], -1);
    let (ok, err) = check_t(&site, &cert_entry(&old));
    assert!(!ok, "an expired certificate passed -t: {err}");
    assert!(
        err.contains(&format!("{}: certificate expired at", old.cert.display())),
        "{err}"
    );
    let soon = ec_pair(d.path(), "soon", &["soon.test"], 5);
    let (ok, err) = check_t(&site, &cert_entry(&soon));
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "{}: certificate expires in 4 days",
            soon.cert.display()
        )) || err.contains(&format!(
            "{}: certificate expires in 5 days",
            soon.cert.display()
        )),
        "no warning for a certificate ending in 5 days: {err}"
    );
    let gone = Pair {
        cert: a.cert.clone(),
        key: d.path().join("missing.key"),
        der: a.der.clone(),
    };
    let (ok, err) = check_t(&site, &cert_entry(&gone));
    assert!(!ok);
    assert!(err.contains("missing.key: cannot read"), "{err}");
}

/// Everything a TLS connection receives until the server ends it
/// (close_notify or a close), with `Date` values blanked.
fn tls_exchange(addr: SocketAddr, cfg: Arc<ClientConfig>, parts: &[&[u8]]) -> Vec<u8> {
    let mut c = Tls::connect(addr, "ec.test", cfg);
    for p in parts {
        c.send(p);
    }
    let mut got = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        match c.s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("TLS read: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("date: ") {
            out.push_str("Date: -\r\n");
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// The differential test over TLS: the same exchanges (pages, ranges,
/// conditionals, variants, errors, pipelined and split requests) sent to
/// an epoll and an io_uring server get the same bytes back, Date aside.
#[test]
fn engines_answer_alike_over_tls() {
    let TlsSite {
        site,
        certs: _certs,
        ec,
    } = TlsSite::new();
    let css = b"p { margin: 0 }\n".repeat(100);
    site.write("v.css", &css);
    site.write("v.css.gz", &gzip(&css));
    let cfg = tls_config("workers = 1\naccess_log = \"off\"", &[&ec]);
    let Some(a) = Server::start("epoll", &cfg, &site.root) else {
        return;
    };
    let Some(b) = Server::start("io_uring", &cfg, &site.root) else {
        return;
    };
    let (aa, ba) = (tls_addr(&a), tls_addr(&b));
    let close = b"GET /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".as_slice();
    let etag = {
        let mut c = Tls::connect(aa, "ec.test", client(&[&ec], None));
        c.get("/style.css", "").header("etag").unwrap().to_string()
    };
    let inm = format!("GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n");
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", close],
        vec![b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-200,5000-5999\r\n\r\n", close],
        vec![inm.as_bytes(), close],
        vec![b"GET /v.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n", close],
        vec![b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", close],
        vec![b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", close],
        vec![b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n", close],
        vec![b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", close],
        vec![b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
        vec![b"GET /sty", b"le.css HTTP/1.1\r\nHo", b"st: t\r\n\r\n", close],
        vec![b"GET /../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", close],
        vec![b"BROKEN\r\n\r\n"],
        vec![b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
    ];
    for (i, parts) in cases.iter().enumerate() {
        let x = tls_exchange(aa, client(&[&ec], None), parts);
        let y = tls_exchange(ba, client(&[&ec], None), parts);
        assert!(!x.is_empty(), "case {i}: no answer");
        assert!(
            x == y,
            "case {i} differs:\nepoll:\n{}\nio_uring:\n{}",
            show(&x),
            show(&y)
        );
    }
}
