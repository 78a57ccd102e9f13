//! Representation metadata is the server's: `[[rules]]` cannot set the
//! fields it owns (`-t`, a start and a reload refuse such a rule, naming its
//! line), a rule's `Vary` is merged with the server's, a rule's
//! `Content-Type` is the representation's (each part of a multipart answer
//! names it), the cached and uncached paths give the same bytes; and several
//! ranges of a precompressed variant are answered with the whole variant,
//! which a client that decodes gets back intact.

#[macro_use]
mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mailparse::MailHeaderMap;

/// How long a refused config may take to make tandem exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rules every config here has: a good one before the bad one, so the line
/// named must be the bad field's, not the first `[[rules]]`.
const GOOD_RULES: &str =
    "[[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=60\" }\n";

/// Each field a rule may not set (as a `headers` entry), and what the
/// refusal says.
const REFUSED: &[(&str, &str)] = &[
    ("ETag = '\"fixed\"'", "\"ETag\": set by the server"),
    (
        "\"Last-Modified\" = \"Thu, 01 Jan 1970 00:00:00 GMT\"",
        "\"Last-Modified\": set by the server",
    ),
    ("Server = \"x\"", "\"Server\": set by the server"),
    ("Date = \"x\"", "\"Date\": set by the server"),
    (
        "\"Content-Encoding\" = \"gzip\"",
        "\"Content-Encoding\": set by the server",
    ),
    (
        "\"Content-Length\" = \"1\"",
        "\"Content-Length\": set by the server",
    ),
    (
        "\"Content-Range\" = \"bytes 0-0/1\"",
        "\"Content-Range\": set by the server",
    ),
    (
        "\"Transfer-Encoding\" = \"chunked\"",
        "\"Transfer-Encoding\": set by the server",
    ),
    (
        "Connection = \"close\"",
        "\"Connection\": set by the server",
    ),
    (
        "\"Accept-Ranges\" = \"none\"",
        "\"Accept-Ranges\": set by the server",
    ),
    ("Location = \"/x\"", "\"Location\": set by the server"),
    (
        "\"content-type\" = \"multipart/byteranges; boundary=x\"",
        "\"content-type\": a multipart type",
    ),
];

/// A config body with the good rule and then `[[rules]]` setting `field`;
/// the 1-based line of `field` within it (counting from `first_line`).
fn bad_rules(field: &str, first_line: usize) -> (String, usize) {
    let text = format!(
        "{GOOD_RULES}[[rules]]\nmatch = \"/**\"\n[rules.headers]\n\"X-Fine\" = \"1\"\n{field}\n"
    );
    (text, first_line + 7)
}

/// Wait for `child` to exit, killing it (and failing) if it is still
/// running after `EXIT_TIMEOUT`: a server that accepted the config.
fn wait_exit(mut child: std::process::Child, ctx: &str) -> (Option<i32>, String) {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!(
                "{ctx}: tandem is still running after {EXIT_TIMEOUT:?}: it accepted the rule\n{err}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// A request (method, path, fields), the status and the `Vary` it gets.
type Ask<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// Raw GET/HEAD on a fresh connection with extra fields.
fn ask(srv: &Server, method: &str, path: &str, fields: &[(&str, &str)]) -> Response {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: tandem.test\r\n");
    for (n, v) in fields {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("Connection: close\r\n\r\n");
    request(srv.addr(), s.as_bytes())
}

/// The response as bytes, `Date` left out (it is the only field that may
/// differ between two servers answering the same request).
fn without_date(r: &Response) -> String {
    let head: Vec<&str> = r
        .head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    format!("{}\n\n{}", head.join("\n"), show(&r.body))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8], ctx: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{ctx}: the body does not gunzip: {e}"));
    out
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::open(p)
        .and_then(|f| f.set_modified(t))
        .unwrap();
}

/// `x.css` (identity) and a real `x.css.gz`, fresh; `plain.txt` without
/// a sibling. Returns the site and the CSS bytes.
fn variant_site() -> (Site, Vec<u8>) {
    let site = Site::new();
    let css = b"/* metadata */ body { margin: 0; padding: 1px }\n".repeat(40);
    site.write("x.css", &css);
    site.write("x.css.gz", &gzip(&css));
    site.write("plain.txt", &css);
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    set_mtime(&site.path("x.css"), t0);
    set_mtime(&site.path("x.css.gz"), t0 + Duration::from_secs(1));
    (site, css)
}

/// The parts of a multipart/byteranges 206, by a MIME parser: (Content-Type,
/// Content-Range, body) each.
fn parts(r: &Response, ctx: &str) -> Vec<(String, String, Vec<u8>)> {
    assert_status(r, 206, ctx);
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("multipart/byteranges; boundary="),
        "{ctx}: Content-Type {ct:?}\n{}",
        r.describe()
    );
    assert!(
        r.header("content-encoding").is_none(),
        "{ctx}: a multipart body has no coding\n{}",
        r.describe()
    );
    let mut msg = format!("Content-Type: {ct}\r\n\r\n").into_bytes();
    msg.extend_from_slice(&r.body);
    let m = mailparse::parse_mail(&msg).unwrap_or_else(|e| panic!("{ctx}: mailparse: {e}"));
    m.subparts
        .iter()
        .map(|p| {
            let h = |n| p.headers.get_first_value(n).unwrap_or_default();
            (
                h("Content-Type"),
                h("Content-Range"),
                p.get_body_raw().unwrap(),
            )
        })
        .collect()
}

engine_tests! {
    /// `tandem -t` and a start refuse a rule setting a field the server
    /// owns, with exit 2 and `FILE:LINE` of that very field.
    fn rules_owned_fields_refused_by_check_and_start(e) {
        let site = Site::new();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bad.toml");
        let head = format!("listen = [\"127.0.0.1:0\"]\nroot = {}\naccess_log = \"off\"\n", toml_str(&site.root.display().to_string()));
        for (i, (field, why)) in REFUSED.iter().enumerate() {
            let (rules, line) = bad_rules(field, 4);
            std::fs::write(&cfg, format!("{head}{rules}")).unwrap();
            let want = format!("{}:{line}: rules: match = \"/**\": header {why}", cfg.display());
            let out = Command::new(tandem_bin()).args(["-t", "--engine", e, "-c"]).arg(&cfg).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "tandem -t with a rule {field}: {}\n{err}", out.status);
            assert!(err.contains(&want), "tandem -t with a rule {field}: want {want:?} in\n{err}");
            // A start: every third field (each start is a process).
            if i % 3 == 0 {
                let child = Command::new(tandem_bin())
                    .args(["--engine", e, "-c"])
                    .arg(&cfg)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let ctx = format!("start with a rule {field}");
                let (code, err) = wait_exit(child, &ctx);
                assert_eq!(code, Some(2), "{ctx}\n{err}");
                assert!(err.contains(&want), "{ctx}: want {want:?} in\n{err}");
            }
        }
    }

    /// A reload with a rule setting `ETag` is refused, naming the line, and
    /// the old config goes on serving: its rule's field, the real ETag.
    fn rules_owned_field_refused_by_reload_and_old_config_serves(e) {
        let site = Site::new();
        let mut srv = start_or_skip!(e, GOOD_RULES, &site.root);
        let before = get(srv.addr(), "/style.css");
        assert_status(&before, 200, "GET /style.css");
        assert_eq!(before.header("cache-control"), Some("max-age=60"));
        let tag = before.header("etag").unwrap().to_string();
        let (rules, _) = bad_rules("ETag = '\"fixed\"'", 0);
        srv.write_config(&rules, &site.root);
        let text = std::fs::read_to_string(srv.config_path()).unwrap();
        let line = text.lines().position(|l| l.starts_with("ETag")).unwrap() + 1;
        let failed = srv.reload(Duration::from_secs(10)).expect_err("a reload with a rule setting ETag succeeded");
        let want = format!("{}:{line}: rules: match = \"/**\": header \"ETag\": set by the server", srv.config_path().display());
        assert!(failed.contains(&want), "want {want:?} in {failed:?}");
        for k in 0..2 {
            let r = get(srv.addr(), "/style.css");
            let ctx = format!("GET /style.css #{k} after the refused reload");
            check_common(&r, &ctx);
            assert_status(&r, 200, &ctx);
            assert_eq!(r.headers_all("etag"), [tag.as_str()], "{ctx}\n{}", r.describe());
            assert_eq!(r.header("cache-control"), Some("max-age=60"), "{ctx}\n{}", r.describe());
            assert!(r.header("x-fine").is_none(), "{ctx}: the refused config's rule\n{}", r.describe());
        }
        srv.assert_healthy("after a refused reload");
    }

    /// A rule's `Vary` is merged with the server's `Vary: Accept-Encoding`
    /// (and with another rule's), without duplicates, on every answer for
    /// the path; a rule's `Content-Type` is the representation's, so a
    /// multipart answer keeps its own and names the rule's in each part.
    /// The cache (default) and no cache give the same bytes, Date aside.
    fn rules_vary_merged_and_type_per_part_cached_or_not(e) {
        let (site, css) = variant_site();
        let rules = "[[rules]]\nmatch = \"*.css\"\nheaders = { Vary = \"Origin\", \"Cache-Control\" = \"max-age=60\" }\n\
                     [[rules]]\nmatch = \"/x.*\"\nheaders = { vary = \"origin, Accept-Language , accept-encoding\" }\n\
                     [[rules]]\nmatch = \"*.txt\"\nheaders = { \"Content-Type\" = \"text/x-mine; charset=utf-8\", Vary = \"Origin\" }\n";
        // Without on-the-fly compression, which only a cached file gets
        // (tests/compression.rs): here cache and no cache answer alike.
        let rules = &format!("compression = []\n{rules}");
        let cached = start_or_skip!(e, rules, &site.root);
        let uncached = start_or_skip!(e, &format!("cache_size = 0\n{rules}"), &site.root);
        let plain_tag = get(uncached.addr(), "/x.css").header("etag").unwrap().to_string();
        let ae = ("Accept-Encoding", "gzip");
        let asks: Vec<Ask> = vec![
            ("GET", "/x.css", vec![], 200, "Accept-Encoding, Origin, Accept-Language"),
            ("GET", "/x.css", vec![ae], 200, "Accept-Encoding, Origin, Accept-Language"),
            ("HEAD", "/x.css", vec![ae], 200, "Accept-Encoding, Origin, Accept-Language"),
            ("GET", "/x.css", vec![("If-None-Match", &plain_tag)], 304, "Accept-Encoding, Origin, Accept-Language"),
            ("GET", "/x.css", vec![ae, ("Range", "bytes=0-9")], 206, "Accept-Encoding, Origin, Accept-Language"),
            ("GET", "/x.css", vec![("Range", "bytes=0-1,5-6")], 206, "Accept-Encoding, Origin, Accept-Language"),
            ("GET", "/plain.txt", vec![], 200, "Origin"),
            ("GET", "/plain.txt", vec![("Range", "bytes=0-1,5-6")], 206, "Origin"),
        ];
        for (method, path, fields, status, vary) in &asks {
            let ctx = format!("{method} {path} {fields:?}");
            // Twice on the cached server: the answer that fills the cache,
            // then the one from it.
            let a = ask(&uncached, method, path, fields);
            for k in 0..2 {
                let b = ask(&cached, method, path, fields);
                assert_status(&b, *status, &ctx);
                assert_eq!(without_date(&a), without_date(&b), "{ctx} #{k}: no cache, then cache");
            }
            assert_eq!(a.headers_all("vary"), [*vary], "{ctx}: Vary\n{}", a.describe());
            if *status != 304 {
                assert_eq!(a.headers_all("server").len(), 1, "{ctx}\n{}", a.describe());
            }
        }
        // The multipart answers: their own type, the file's type per part.
        for (path, ctype) in [("/x.css", "text/css; charset=utf-8"), ("/plain.txt", "text/x-mine; charset=utf-8")] {
            let r = ask(&cached, "GET", path, &[("Range", "bytes=0-1,5-6")]);
            let ps = parts(&r, &format!("GET {path} two ranges"));
            let want = [("bytes 0-1/", &css[0..2]), ("bytes 5-6/", &css[5..7])];
            assert_eq!(ps.len(), 2, "{path}");
            for ((t, cr, body), (range, bytes)) in ps.iter().zip(want) {
                assert_eq!(t, ctype, "GET {path}: part Content-Type");
                assert_eq!(cr, &format!("{range}{}", css.len()));
                assert_eq!(body, bytes);
            }
        }
        let r = get(cached.addr(), "/plain.txt");
        assert_eq!(r.header("content-type"), Some("text/x-mine; charset=utf-8"), "{}", r.describe());
    }

    /// Several ranges of a precompressed variant: the whole variant with
    /// 200 (Content-Encoding: gzip, no multipart), which gunzips to the
    /// file, and which a real client that decodes (ureq) reads intact. One
    /// range of it stays a 206 of the gzip bytes; several ranges of the
    /// identity stay multipart.
    fn multipart_of_an_encoded_variant_is_the_whole_variant(e) {
        let (site, css) = variant_site();
        let gz = site.read("x.css.gz");
        for extra in ["", "cache_size = 0"] {
            let srv = start_or_skip!(e, extra, &site.root);
            let ctx = |what: &str| format!("{what} [{extra:?}]");
            for _ in 0..2 {
                let c = ctx("GET /x.css gzip bytes=0-1,4-5");
                let r = ask(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-1,4-5")]);
                check_common(&r, &c);
                assert_status(&r, 200, &c);
                assert_eq!(r.header("content-encoding"), Some("gzip"), "{c}\n{}", r.describe());
                assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"), "{c}");
                assert!(r.header("content-range").is_none(), "{c}\n{}", r.describe());
                assert_eq!(gunzip(&r.body, &c), css, "{c}");
                let url = format!("http://{}/x.css", srv.addr());
                let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).http_status_as_error(false).build().into();
                let mut got = agent
                    .get(&url)
                    .header("Range", "bytes=0-1,4-5")
                    .call()
                    .unwrap_or_else(|err| panic!("{}: {err}", ctx("ureq")));
                assert_eq!(got.status().as_u16(), 200, "{}", ctx("ureq"));
                let body = got.body_mut().read_to_vec().unwrap_or_else(|err| panic!("{}: decoding: {err}", ctx("ureq")));
                assert_eq!(body, css, "{}: the decoded body", ctx("ureq"));
            }
            let r = ask(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip"), ("Range", "bytes=2-9")]);
            assert_status(&r, 206, &ctx("gzip bytes=2-9"));
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            assert_eq!(r.body, &gz[2..10]);
            let r = ask(&srv, "GET", "/x.css", &[("Range", "bytes=0-1,4-5")]);
            assert_eq!(parts(&r, &ctx("identity bytes=0-1,4-5")).len(), 2);
        }
    }
}
