//! HTTP/2 wiring, smoke-tested with curl on both engines: prior knowledge
//! over cleartext (`http2_cleartext = true`), ALPN `h2` over TLS, and the
//! preface on a plaintext listener without `http2_cleartext` (a clear
//! HTTP/1.1 error and a close, no hang). The protocol itself is checked
//! in tests/rfc9113.rs and tests/h2_*.rs.

#[macro_use]
mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn have_curl_http2() -> bool {
    Command::new("curl")
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"))
}

/// curl `args`: (http version, status, body).
fn curl(args: &[&str]) -> (String, u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&body)
        .args(["-w", "%{http_version} %{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let (v, code) = w.split_once(' ').unwrap();
    (
        v.to_string(),
        code.parse().unwrap(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

/// A self-signed certificate for `name`, as config lines for a TLS listener.
fn tls_lines(dir: &Path, name: &str) -> (String, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let lines = format!(
        "metrics_listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\n[[tls_certificates]]\ncert = {}\nkey = {}\n",
        toml_str(&c.display().to_string()),
        toml_str(&k.display().to_string())
    );
    (lines, c)
}

fn tls_addr(srv: &Server) -> SocketAddr {
    assert!(
        srv.wait_stderr("(TLS)", START_TIMEOUT),
        "{}",
        srv.stderr_text()
    );
    let text = srv.stderr_text();
    let line = text.lines().find(|l| l.contains("(TLS)")).unwrap();
    listening_addrs(line)[0]
}

engine_tests! {
    /// h2c with prior knowledge: a page, a 404 with its error page, a
    /// large file byte-exact; the access log says HTTP/2.0; HTTP/1.1 still
    /// answers on the same listener.
    fn curl_prior_knowledge(e) {
        if !have_curl_http2() {
            return skip("curl without HTTP/2");
        }
        let site = Site::new();
        let srv = start_or_skip!(e, "http2_cleartext = true", &site.root);
        let url = format!("http://{}", srv.addr());
        let h2 = |path: &str| curl(&["--http2-prior-knowledge", &format!("{url}{path}")]);
        let (v, code, body) = h2("/");
        assert_eq!((v.as_str(), code), ("2", 200));
        assert_eq!(body, site.read("index.html"));
        let (v, code, body) = h2("/nope");
        assert_eq!((v.as_str(), code), ("2", 404));
        assert_eq!(body, site.read("404.html"));
        let (_, code, body) = h2("/big.bin");
        assert_eq!(code, 200);
        assert_bytes_eq(&body, &site.read("big.bin"), "big.bin over h2c");
        let (v, code, _) = curl(&["--http1.1", &format!("{url}/")]);
        assert_eq!((v.as_str(), code), ("1.1", 200));
        let log = srv.wait_access_log(IO_TIMEOUT, |l| l.contains("GET /big.bin HTTP/2.0"));
        assert!(log.is_some(), "{}", srv.access_log());
        assert!(srv.access_log().contains("\"GET /nope HTTP/2.0\" 404"));
    }

    /// TLS: curl --http2 negotiates h2 by ALPN; --http1.1 still gets 1.1.
    fn curl_over_tls_negotiates_h2(e) {
        if !have_curl_http2() {
            return skip("curl without HTTP/2");
        }
        let site = Site::new();
        let certs = tempfile::tempdir().unwrap();
        let (lines, cert) = tls_lines(certs.path(), "h2.test");
        let srv = start_or_skip!(e, &lines, &site.root);
        let port = tls_addr(&srv).port();
        let resolve = format!("h2.test:{port}:127.0.0.1");
        let cacert = cert.display().to_string();
        let url = format!("https://h2.test:{port}");
        let tls = |ver: &str, path: &str| {
            curl(&[ver, "--cacert", &cacert, "--resolve", &resolve, &format!("{url}{path}")])
        };
        let (v, code, body) = tls("--http2", "/");
        assert_eq!((v.as_str(), code), ("2", 200));
        assert_eq!(body, site.read("index.html"));
        let (v, code, body) = tls("--http2", "/big.bin");
        assert_eq!((v.as_str(), code), ("2", 200));
        assert_bytes_eq(&body, &site.read("big.bin"), "big.bin over h2");
        let (v, code, _) = tls("--http1.1", "/");
        assert_eq!((v.as_str(), code), ("1.1", 200));
        assert!(srv.metric("tandem_h2_connections_total") >= 2);
        assert!(srv.metric("tandem_h2_streams_total") >= 2);
    }

    /// Without `http2_cleartext`, the preface is an HTTP/1.1 request with
    /// a version we do not speak: a clear 505, then the connection closes.
    fn preface_without_cleartext_is_refused_clearly(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut s, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 505 "), "{text}");
    }

    /// h2c with the preface split byte by byte still becomes HTTP/2; a
    /// plain request that starts like the preface ("P...") stays HTTP/1.1.
    fn cleartext_preface_split_and_lookalikes(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "http2_cleartext = true", &site.root);
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for b in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
            std::io::Write::write_all(&mut s, &[*b]).unwrap();
        }
        // Our SETTINGS come first: a frame header of type 4 on stream 0.
        let mut head = [0u8; 9];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[3], 4, "{head:?}");
        assert_eq!(&head[5..], &[0, 0, 0, 0]);
        let r = request(srv.addr(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.status, 405);
        let r = request(srv.addr(), b"PRI / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 501);
    }
}
