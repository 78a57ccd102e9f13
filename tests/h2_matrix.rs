//! HTTP/2 against HTTP/1.1, a matrix of the responder's features (ranges
//! with If-Range, validator lists, codings with q=0, listings, encoded
//! and dot-segment paths, error pages, per-path rules, odd methods), on
//! both engines, over h2c (prior knowledge) and h2 over TLS (ALPN): the
//! same request must get the same status, representation fields and body
//! bytes. tests/differential.rs compares its raw corpus the same way; the
//! requests here are the ones that corpus does not make.

#[macro_use]
mod common;

use std::time::Duration;

use common::h2::*;
use common::*;

const CONFIG: &str = r#"workers = 1
access_log = "off"
autoindex = true
max_body_size = 65536
"#;

/// Per-path rules; last in the config, being tables.
const RULES: &str = r#"
[[rules]]
match = "/assets/**"
headers = { "Cache-Control" = "public, max-age=31536000, immutable" }
[[rules]]
match = "*.html"
headers = { "Cache-Control" = "no-cache", "X-Frame-Options" = "DENY", "Vary" = "Origin" }
"#;

/// One request, said both ways.
struct Req {
    method: String,
    /// The request target (HTTP/1.1) and `:path` (HTTP/2).
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Req {
    Req {
        method: method.to_string(),
        target: target.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
    }
}

impl Req {
    fn h1(&self) -> Vec<u8> {
        let mut s = format!("{} {} HTTP/1.1\r\nHost: t\r\n", self.method, self.target);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() {
            s.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        s.push_str("\r\n");
        let mut b = s.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }

    fn h2_fields(&self, scheme: &str) -> Vec<(String, String)> {
        let mut f = vec![
            (":method".to_string(), self.method.clone()),
            (":scheme".to_string(), scheme.to_string()),
            (":authority".to_string(), "t".to_string()),
            (":path".to_string(), self.target.clone()),
        ];
        for (k, v) in &self.headers {
            f.push((k.to_ascii_lowercase(), v.clone()));
        }
        if !self.body.is_empty() {
            f.push(("content-length".to_string(), self.body.len().to_string()));
        }
        f
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.target);
        if s.len() > 120 {
            s.truncate(120);
            s.push_str("...");
        }
        for (k, v) in self.headers.iter().take(4) {
            s.push_str(&format!(" [{k}: {v}]"));
        }
        if self.headers.len() > 4 {
            s.push_str(&format!(" and {} more fields", self.headers.len() - 4));
        }
        s
    }
}

/// The site: the standard one, plus files for codings, rules and
/// listings.
fn site() -> Site {
    let site = Site::new();
    site.write("v.css", &b"p { margin: 0 }\n".repeat(100));
    site.write("v.css.gz", b"GZIP-BYTES-OF-V");
    site.write("v.css.br", b"BR-BYTES-OF-V");
    site.write("v.css.zst", b"ZSTD-BYTES-OF-V");
    site.write("fly.js", &b"function f() { return 1; }\n".repeat(100));
    site.write("assets/a.css", STYLE_CSS.as_bytes());
    site.write("assets/b.html", b"<p>ASSET</p>");
    site.write("list/one.txt", b"ONE");
    site.write("list/two.txt", b"TWO");
    site.write("list/deeper/three.txt", b"THREE");
    site.write("closed.txt", b"CLOSED");
    set_mode(&site.path("closed.txt"), 0o000);
    site
}

/// GET /style.css with `n` fields beside Host.
fn many(n: usize) -> Req {
    let mut r = req("GET", "/style.css", &[]);
    r.headers = (0..n)
        .map(|i| (format!("x-f{i}"), "v".to_string()))
        .collect();
    r
}

/// The matrix. `etag` and `lm` are style.css's validators.
fn matrix(etag: &str, lm: &str) -> Vec<Req> {
    let weak = format!("W/{etag}");
    let old = imf_fixdate(1_000_000_000);
    let future = imf_fixdate(now_secs() + 86_400 * 365);
    let list = format!("\"nope\", {etag}, \"other\"");
    let long = format!("/{}", "a".repeat(4000));
    let longer = format!("/{}", "b".repeat(5000));
    let deep = format!("/{}style.css", "sub/../".repeat(300));
    let mut m = vec![
        // Methods.
        req("GET", "/style.css", &[]),
        req("HEAD", "/style.css", &[]),
        req("OPTIONS", "/style.css", &[]),
        req("OPTIONS", "*", &[]),
        req("DELETE", "/style.css", &[]),
        req("PUT", "/style.css", &[]),
        req("PATCH", "/style.css", &[]),
        req("TRACE", "/style.css", &[]),
        req("FOO", "/style.css", &[]),
        req("get", "/style.css", &[]),
        req("HEAD", "/nope", &[]),
        req("OPTIONS", "/nope", &[]),
        req("HEAD", "/sub", &[]),
        req("HEAD", "/list/", &[]),
        // Ranges.
        req("GET", "/big.bin", &[("Range", "bytes=0-99")]),
        req("GET", "/big.bin", &[("Range", "bytes=-100")]),
        req("GET", "/big.bin", &[("Range", "bytes=100-")]),
        req("GET", "/big.bin", &[("Range", "bytes=0-0,5-9,-3")]),
        req("GET", "/style.css", &[("Range", "bytes=0-3,2-5")]),
        req("GET", "/style.css", &[("Range", "bytes=0-3, 10-12")]),
        req("GET", "/style.css", &[("Range", "bytes=99999-")]),
        req("GET", "/style.css", &[("Range", "bytes=-0")]),
        req("GET", "/style.css", &[("Range", "bytes=5-1")]),
        req("GET", "/style.css", &[("Range", "items=0-1")]),
        req(
            "GET",
            "/style.css",
            &[("Range", "bytes=0-1"), ("If-Range", etag)],
        ),
        req(
            "GET",
            "/style.css",
            &[("Range", "bytes=0-1"), ("If-Range", &weak)],
        ),
        req(
            "GET",
            "/style.css",
            &[("Range", "bytes=0-1"), ("If-Range", "\"x\"")],
        ),
        req(
            "GET",
            "/style.css",
            &[("Range", "bytes=0-1"), ("If-Range", lm)],
        ),
        req(
            "GET",
            "/style.css",
            &[("Range", "bytes=0-1"), ("If-Range", &old)],
        ),
        req(
            "GET",
            "/style.css",
            &[("Range", "bytes=0-1"), ("If-Range", "garbage")],
        ),
        req("HEAD", "/big.bin", &[("Range", "bytes=0-99")]),
        req("HEAD", "/big.bin", &[("Range", "bytes=0-1,4-5")]),
        req("GET", "/nope", &[("Range", "bytes=0-1")]),
        req("GET", "/sub/", &[("Range", "bytes=0-1")]),
        req("GET", "/list/", &[("Range", "bytes=0-1")]),
        req(
            "GET",
            "/v.css",
            &[("Range", "bytes=0-1"), ("Accept-Encoding", "gzip")],
        ),
        // Validators.
        req("GET", "/style.css", &[("If-None-Match", etag)]),
        req("GET", "/style.css", &[("If-None-Match", &weak)]),
        req("GET", "/style.css", &[("If-None-Match", &list)]),
        req("GET", "/style.css", &[("If-None-Match", "*")]),
        req("GET", "/style.css", &[("If-None-Match", "\"nope\"")]),
        req("HEAD", "/style.css", &[("If-None-Match", etag)]),
        req("POST", "/style.css", &[("If-None-Match", etag)]),
        req("GET", "/nope", &[("If-None-Match", "*")]),
        req("GET", "/style.css", &[("If-Modified-Since", lm)]),
        req("GET", "/style.css", &[("If-Modified-Since", &old)]),
        req("GET", "/style.css", &[("If-Modified-Since", &future)]),
        req("GET", "/style.css", &[("If-Modified-Since", "garbage")]),
        req(
            "GET",
            "/style.css",
            &[("If-None-Match", "\"nope\""), ("If-Modified-Since", lm)],
        ),
        req("GET", "/style.css", &[("If-Match", etag)]),
        req("GET", "/style.css", &[("If-Match", "\"nope\"")]),
        req("GET", "/style.css", &[("If-Match", &weak)]),
        req("GET", "/style.css", &[("If-Unmodified-Since", &old)]),
        req("GET", "/style.css", &[("If-Unmodified-Since", lm)]),
        req(
            "GET",
            "/style.css",
            &[("If-Match", "\"nope\""), ("Range", "bytes=0-1")],
        ),
        req(
            "GET",
            "/style.css",
            &[("If-None-Match", etag), ("Range", "bytes=0-1")],
        ),
        req("GET", "/assets/a.css", &[("If-None-Match", "*")]),
        // Codings.
        req("GET", "/v.css", &[("Accept-Encoding", "gzip")]),
        req("GET", "/v.css", &[("Accept-Encoding", "br")]),
        req("GET", "/v.css", &[("Accept-Encoding", "zstd")]),
        req("GET", "/v.css", &[("Accept-Encoding", "gzip, br, zstd")]),
        req("GET", "/v.css", &[("Accept-Encoding", "gzip;q=0")]),
        req("GET", "/v.css", &[("Accept-Encoding", "br;q=0.5, gzip")]),
        req("GET", "/v.css", &[("Accept-Encoding", "*")]),
        req("GET", "/v.css", &[("Accept-Encoding", "*;q=0")]),
        req("GET", "/v.css", &[("Accept-Encoding", "identity;q=0")]),
        req(
            "GET",
            "/v.css",
            &[("Accept-Encoding", "identity;q=0, *;q=0")],
        ),
        req("GET", "/v.css", &[("Accept-Encoding", "GZIP;Q=1.0")]),
        req("GET", "/v.css", &[("Accept-Encoding", "")]),
        req("HEAD", "/v.css", &[("Accept-Encoding", "br")]),
        req("GET", "/fly.js", &[("Accept-Encoding", "gzip")]),
        req("GET", "/fly.js", &[("Accept-Encoding", "br")]),
        req("GET", "/fly.js", &[("Accept-Encoding", "zstd")]),
        req("GET", "/fly.js", &[("Accept-Encoding", "identity;q=0")]),
        req(
            "GET",
            "/fly.js",
            &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
        ),
        req("GET", "/style.css", &[("Accept-Encoding", "gzip")]),
        req("GET", "/logo.png", &[("Accept-Encoding", "gzip")]),
        // Directories and listings.
        req("GET", "/sub", &[]),
        req("GET", "/sub?x=1&y", &[]),
        req("GET", "/sub/", &[]),
        req("GET", "/sub/index.html", &[]),
        req("GET", "/list", &[]),
        req("GET", "/list/", &[]),
        req("GET", "/list/", &[("Accept", "application/json")]),
        req("GET", "/list/?format=json", &[]),
        req("GET", "/list/?format=html", &[]),
        req("GET", "/list/deeper/", &[("Accept-Encoding", "gzip")]),
        req("GET", "/noindex/", &[]),
        req("GET", "/dir/", &[]),
        req("GET", "/assets/", &[]),
        // Paths.
        req("GET", "/%73tyle.css", &[]),
        req("GET", "/./style.css", &[]),
        req("GET", "/sub/../style.css", &[]),
        req("GET", "/sub/%2e%2e/style.css", &[]),
        req("GET", "/sub/%2E%2E/%2e%2e/style.css", &[]),
        req("GET", "/%2e%2e/secret.txt", &[]),
        req("GET", "/..%2fsecret.txt", &[]),
        req("GET", "/sub%2Fpage.html", &[]),
        req("GET", "/sub%2fpage.html", &[]),
        req("GET", "/style.css%00", &[]),
        req("GET", "/%00", &[]),
        req("GET", "/style.css%", &[]),
        req("GET", "/style.css%zz", &[]),
        req("GET", "//style.css", &[]),
        req("GET", "/sub//page.html", &[]),
        req("GET", "/hello%20world.txt", &[]),
        req("GET", "/a%2520b.txt", &[]),
        req("GET", "/style.css?", &[]),
        req("GET", "/style.css?a=%00", &[]),
        req("GET", "/%c3%a9t%c3%a9.html", &[]),
        req("GET", "/%ff", &[]),
        req("GET", &long, &[]),
        req("GET", &longer, &[]),
        req("GET", &deep, &[]),
        // Host, and how many fields HTTP/1.1 takes (96 lines, Host too).
        req("GET", "/style.css", &[("Host", "u")]),
        many(95),
        many(96),
        many(150),
        // 403 / 404.
        req("GET", "/.secret", &[]),
        req("GET", "/dir/.git/config", &[]),
        req("GET", "/link-to-secret", &[]),
        req("GET", "/link-inside.css", &[]),
        req("GET", "/closed.txt", &[]),
        req("GET", "/nope", &[]),
        req("GET", "/nope.html", &[]),
        req("GET", "/style.css/", &[]),
        req("GET", "/style.css/x", &[]),
        // Rules.
        req("GET", "/assets/a.css", &[]),
        req("GET", "/assets/b.html", &[]),
        req("GET", "/assets/a.css", &[("If-None-Match", "*")]),
        req("GET", "/assets/a.css", &[("Range", "bytes=0-3")]),
        req("GET", "/assets", &[]),
        req("GET", "/index.html", &[("Accept-Encoding", "gzip")]),
        req("GET", "/index.html", &[("If-None-Match", "*")]),
        req("GET", "/assets/nope.html", &[]),
    ];
    let mut post = req("POST", "/style.css", &[]);
    post.body = b"abc".to_vec();
    m.push(post);
    let mut put = req("PUT", "/nope", &[]);
    put.body = vec![b'x'; 20_000];
    m.push(put);
    let mut most = req("POST", "/style.css", &[]);
    most.body = vec![b'y'; 65_000];
    m.push(most);
    m
}

/// The HTTP/2 answer to `r` on `c` (bodies fit the default 65535-byte
/// windows) (a new connection first when the last
/// one was ended by a GOAWAY).
fn ask(
    c: &mut Option<H2>,
    connect: &dyn Fn() -> H2,
    scheme: &str,
    r: &Req,
) -> Result<Answer, String> {
    if c.as_ref().is_none_or(|c| c.goaway.is_some()) {
        *c = Some(connect());
    }
    let c = c.as_mut().unwrap();
    let id = c.next_id;
    c.next_id += 2;
    c.send_headers(id, &r.h2_fields(scheme), r.body.is_empty());
    let chunks: Vec<&[u8]> = r.body.chunks(16384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() { END_STREAM } else { 0 };
        if c.try_send_frame(DATA, flags, id, chunk).is_err() {
            break;
        }
    }
    let resp = c.try_read_response(id, Duration::from_secs(5))?;
    check_h2_fields(&resp, &r.describe());
    match resp.reset {
        Some(code) if !resp.complete => {
            Err(format!("RST_STREAM {code:#x} after {}", resp.describe()))
        }
        _ => Ok(Answer::from(&resp)),
    }
}

/// Every request of the matrix over HTTP/1.1 and over HTTP/2; the
/// differences.
fn compare(
    addr: std::net::SocketAddr,
    connect: &dyn Fn() -> H2,
    scheme: &str,
    label: &str,
) -> Vec<String> {
    let style = get(addr, "/style.css");
    let etag = style.header("etag").unwrap().to_string();
    let lm = style.header("last-modified").unwrap().to_string();
    let mut diffs = Vec::new();
    let mut c = None;
    let all = matrix(&etag, &lm);
    for r in &all {
        let h1 = Answer::from(&request(addr, &r.h1()));
        let h2 = ask(&mut c, connect, scheme, r);
        let verdict = h2.and_then(|h2| {
            same_answer(&h1, &h2).map_err(|e| format!("{e}\n  h2: {}", h2.describe()))
        });
        if let Err(why) = verdict {
            diffs.push(format!(
                "{label} {}: {why}\n  1.1: {}",
                r.describe(),
                h1.describe()
            ));
        }
    }
    note(&format!(
        "{label}: {} requests compared, {} differ",
        all.len(),
        diffs.len()
    ));
    diffs
}

/// HEAD requests the server refuses before it looks for a file: a target
/// past max_target_size (414), a body past max_body_size (413), a header
/// list past max_header_size (431), a bad content-length (400).
fn refused_heads() -> Vec<(&'static str, Req)> {
    let long = format!("/{}", "b".repeat(5000));
    vec![
        ("414", req("HEAD", &long, &[])),
        (
            "413",
            req("HEAD", "/style.css", &[("Content-Length", "2000000")]),
        ),
        (
            "431",
            req("HEAD", "/style.css", &[("X-Big", &"a".repeat(9000))]),
        ),
        (
            "400",
            req("HEAD", "/style.css", &[("Content-Length", "-1")]),
        ),
    ]
}

engine_tests! {
    /// The matrix over h2c and over h2 on TLS, against HTTP/1.1 on the
    /// plain port of the same server.
    fn h2_matrix_answers_like_http1(e) {
        let site = site();
        let certs = tempfile::tempdir().unwrap();
        let cert = TlsCert::new(certs.path());
        let cfg = format!("{H2C}\n{CONFIG}\n{}\n{RULES}", cert.config());
        let srv = start_or_skip!(e, &cfg, &site.root);
        let addr = srv.addr();
        let tls = tls_addr(&srv);
        let mut diffs = compare(addr, &|| H2::handshake(addr), "http", "h2c");
        let client = cert.client(&[b"h2"]);
        diffs.extend(compare(addr, &|| H2::connect_tls(tls, client.clone()), "https", "TLS h2"));
        assert!(diffs.is_empty(), "{} differ between HTTP/1.1 and HTTP/2:\n{}", diffs.len(), diffs.iter().take(15).cloned().collect::<Vec<_>>().join("\n\n"));
    }

    /// RFC 9110 §9.3.2: a response to HEAD has no content, refusals too.
    /// Over HTTP/1.1 nothing follows the head before the close; over
    /// HTTP/2 the stream ends without DATA bytes (RFC 9113 §8.1.1: a
    /// client may take content on a HEAD response for a malformed one).
    fn head_refusals_have_no_content(e) {
        let site = site();
        let srv = start_or_skip!(e, &format!("{H2C}\n{CONFIG}"), &site.root);
        let addr = srv.addr();
        let mut bad = Vec::new();
        for (want, r) in refused_heads() {
            let mut c = Conn::connect(addr);
            c.send(&r.h1());
            let raw = c.read_to_close(IO_TIMEOUT).unwrap_or_else(|b| panic!("{want}: no close: {}", show(&b)));
            let at = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or_else(|| panic!("{want}: no head: {}", show(&raw)));
            let head = String::from_utf8_lossy(&raw[..at]).to_string();
            assert!(head.starts_with(&format!("HTTP/1.1 {want} ")), "{want}: {head}");
            if at != raw.len() {
                bad.push(format!("HTTP/1.1 HEAD {want}: {} bytes of content after the head", raw.len() - at));
            }
            let mut c = H2::handshake(addr);
            let id = c.next_id;
            c.next_id += 2;
            // 413 on the declared length alone: the body is not sent, the
            // stream stays open (END_STREAM would make it malformed).
            let end = !r.headers.iter().any(|(k, v)| k == "Content-Length" && v != "-1");
            c.send_headers(id, &r.h2_fields("http"), end);
            let resp = c.try_read_response(id, IO_TIMEOUT).unwrap_or_else(|e| panic!("h2 {want}: {e}"));
            assert_eq!(resp.status.to_string(), want, "h2: {}", resp.describe());
            if !resp.body.is_empty() {
                bad.push(format!("HTTP/2 HEAD {want}: {} bytes of DATA", resp.body.len()));
            }
        }
        assert!(bad.is_empty(), "content on HEAD responses:\n{}", bad.join("\n"));
    }
}
