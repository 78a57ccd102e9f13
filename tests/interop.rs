//! A real client against the real server: `ureq` (its own response parser,
//! connection pool and gzip decoder) on both engines. Keep-alive reuse
//! counted on the server side, ranges, a precompressed gzip variant decoded,
//! and 304s through conditional requests that the client makes itself (ureq
//! has no cache: the validators are sent as plain fields).

#[macro_use]
mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;

const METRICS: &str = "metrics_listen = [\"127.0.0.1:0\"]";
const ACCEPTED: &str = "tandem_connections_accepted_total";
const WAIT: Duration = Duration::from_secs(10);

/// An agent that talks to 127.0.0.1 directly and returns 4xx/5xx as
/// responses. It keeps idle connections, and asks for gzip (and decodes it).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .into()
}

/// A path, the fields to send, and the status and body that come back.
type Ask<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a [u8]);

fn url(srv: &Server, path: &str) -> String {
    format!("http://{}{path}", srv.addr())
}

/// GET `path` with `fields`: status, headers, the (decoded) body read whole
/// (which gives the connection back to the agent's pool).
fn fetch(
    a: &ureq::Agent,
    srv: &Server,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
    let ctx = format!("GET {path} {fields:?}");
    let mut req = a.get(url(srv, path));
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let mut r = req.call().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let body = r
        .body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{ctx}: body: {e}"));
    (r.status().as_u16(), r.headers().clone(), body)
}

fn field<'a>(h: &'a ureq::http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Connections accepted so far, once at least `min`: a connection is
/// counted when accepted, which may be just after the client sent on it.
fn accepted_at_least(srv: &Server, min: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = srv.metric(ACCEPTED);
        if n >= min || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

engine_tests! {
    /// Six requests (200s, a 404, a 304) through one agent go over one
    /// connection; the same requests through a new agent each take one
    /// connection apiece, so the count does see connections.
    fn keep_alive_reuses_one_connection(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let before = srv.metric(ACCEPTED);
        let a = agent();
        let (_, h, _) = fetch(&a, &srv, "/style.css", &[]);
        let tag = field(&h, "etag").expect("ETag").to_string();
        let asks: [Ask; 5] = [
            ("/", vec![], 200, INDEX_HTML.as_bytes()),
            ("/no-such-file", vec![], 404, NOT_FOUND_HTML.as_bytes()),
            ("/style.css", vec![("If-None-Match", tag.as_str())], 304, b""),
            ("/app.js", vec![], 200, APP_JS.as_bytes()),
            ("/sub/page.html", vec![], 200, b"<p>SUB-PAGE</p>"),
        ];
        for (path, fields, status, body) in &asks {
            let (got, _, b) = fetch(&a, &srv, path, fields);
            assert_eq!(got, *status, "GET {path}");
            assert_eq!(b, *body, "GET {path}");
        }
        let after = accepted_at_least(&srv, before + 1);
        assert_eq!(after - before, 1, "six requests on one agent: connections accepted");

        for (path, fields, status, _) in &asks {
            let (got, _, _) = fetch(&agent(), &srv, path, fields);
            assert_eq!(got, *status, "GET {path} (new agent)");
        }
        let n = asks.len() as u64;
        let last = accepted_at_least(&srv, after + n);
        assert_eq!(last - after, n, "an agent per request: connections accepted");
    }

    /// One range, a suffix range and an unsatisfiable one, as ureq reads
    /// them: 206 with the exact bytes and Content-Range, then 416.
    fn ranges_through_a_real_client(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let big = big_bytes();
        let a = agent();
        let (status, h, body) = fetch(&a, &srv, "/big.bin", &[("Range", "bytes=100-199")]);
        assert_eq!(status, 206);
        assert_eq!(field(&h, "content-range"), Some(format!("bytes 100-199/{BIG_SIZE}").as_str()));
        assert_bytes_eq(&body, &big[100..200], "bytes=100-199");
        let (status, h, body) = fetch(&a, &srv, "/big.bin", &[("Range", "bytes=-10")]);
        assert_eq!(status, 206);
        let from = BIG_SIZE - 10;
        let want = format!("bytes {from}-{}/{BIG_SIZE}", BIG_SIZE - 1);
        assert_eq!(field(&h, "content-range"), Some(want.as_str()));
        assert_bytes_eq(&body, &big[from..], "bytes=-10");
        let past = format!("bytes={BIG_SIZE}-");
        let (status, h, _) = fetch(&a, &srv, "/big.bin", &[("Range", past.as_str())]);
        assert_eq!(status, 416, "{past}");
        assert_eq!(field(&h, "content-range"), Some(format!("bytes */{BIG_SIZE}").as_str()));
        // A range that starts inside the file and runs past its end: cut.
        let tail = format!("bytes={}-{}", BIG_SIZE - 5, BIG_SIZE + 100);
        let (status, _, body) = fetch(&a, &srv, "/big.bin", &[("Range", tail.as_str())]);
        assert_eq!(status, 206, "{tail}");
        assert_bytes_eq(&body, &big[BIG_SIZE - 5..], &tail);
    }

    /// ureq asks for gzip by itself and decodes it: the precompressed
    /// sibling is what went over the wire (the access log counts its
    /// bytes), and the client reads the file's own bytes.
    fn gzip_variant_is_decoded(e) {
        let site = Site::new();
        let css = b"/* interop */ body { margin: 0; padding: 1px }\n".repeat(50);
        let gz = gzip(&css);
        site.write("x.css", &css);
        site.write("x.css.gz", &gz);
        let srv = start_or_skip!(e, "", &site.root);
        let (status, h, body) = fetch(&agent(), &srv, "/x.css", &[]);
        assert_eq!(status, 200);
        assert_bytes_eq(&body, &css, "decoded /x.css");
        let vary = field(&h, "vary").unwrap_or("");
        assert!(vary.contains("Accept-Encoding"), "Vary {vary:?}");
        let sent = format!("\"GET /x.css HTTP/1.1\" 200 {} ", gz.len());
        let line = srv.wait_access_log(WAIT, |l| l.contains("GET /x.css "));
        let line = line.expect("an access log line for /x.css");
        assert!(line.contains(&sent), "want {sent:?} (the gzip bytes) in {line}");
    }

    /// The validators of a 200, sent back: 304 with no body and the same
    /// ETag, by If-None-Match and by If-Modified-Since; a tag that does not
    /// match gets the 200 again, all on the one connection.
    fn conditional_get_gives_304(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, METRICS, &site.root);
        let before = srv.metric(ACCEPTED);
        let a = agent();
        let (status, h, body) = fetch(&a, &srv, "/style.css", &[]);
        assert_eq!((status, body.as_slice()), (200, STYLE_CSS.as_bytes()));
        let tag = field(&h, "etag").expect("ETag").to_string();
        let lm = field(&h, "last-modified").expect("Last-Modified").to_string();
        for cond in [("If-None-Match", tag.as_str()), ("If-Modified-Since", lm.as_str())] {
            let (status, h, body) = fetch(&a, &srv, "/style.css", &[cond]);
            assert_eq!(status, 304, "{cond:?}");
            assert!(body.is_empty(), "{cond:?}: a 304 has no body");
            assert_eq!(field(&h, "etag"), Some(tag.as_str()), "{cond:?}");
        }
        let (status, _, body) = fetch(&a, &srv, "/style.css", &[("If-None-Match", "\"other\"")]);
        assert_eq!((status, body.as_slice()), (200, STYLE_CSS.as_bytes()));
        assert_eq!(accepted_at_least(&srv, before + 1) - before, 1, "connections accepted");
    }
}
