//! On-the-fly compression (issue 23), against the real server on both
//! engines: the representations' fields (Content-Encoding, Vary, their own
//! strong ETags, the source's Last-Modified), 304/412/If-Range and Range on
//! a compressed answer, HEAD, Accept-Encoding negotiation with the
//! precompressed siblings, the bounds (min size, types, cache_max_file,
//! off), "compressed once" counted by `tandem_compressions_total`, and
//! real clients decoding it (curl --compressed; Python's gzip, brotli and
//! zstandard).

#[macro_use]
mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const METRICS: &str = "metrics_listen = [\"127.0.0.1:0\"]";
const CODINGS: [&str; 3] = ["br", "zstd", "gzip"];

/// HTML of `n` bytes that compresses like a real page (not one byte
/// repeated).
fn page(n: usize, seed: u32) -> Vec<u8> {
    let mut t: Vec<u8> = (0..)
        .flat_map(|i| {
            format!(
                "<li class=\"c{}\"><a href=\"/p/{seed}/{i}\">item {i}</a></li>\n",
                i % 5
            )
            .into_bytes()
        })
        .take(n)
        .collect();
    t.truncate(n);
    t
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        "zstd" => out = zstd::stream::decode_all(bytes).expect("zstd"),
        "identity" => out = bytes.to_vec(),
        other => panic!("coding {other}"),
    }
    out
}

fn ask(srv: &Server, method: &str, path: &str, fields: &str) -> Response {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
    let mut c = srv.connect();
    c.send(raw.as_bytes());
    c.read_response(method)
}

fn site() -> Site {
    let s = Site::empty();
    s.write("page.html", &page(20 << 10, 1));
    s.write("data.json", &page(4000, 2));
    s.write("small.html", &page(500, 3));
    s.write("photo.png", &page(8000, 4));
    s.write("big.html", &page(100 << 10, 5));
    for (name, seed) in [("feed.rss", 6), ("feed.atom", 7), ("page.xhtml", 8)] {
        s.write(name, &page(4000, seed));
    }
    s
}

/// A Date fixed at one instant, put before the default site's script, so
/// its clock shows the same time in every screenshot.
const FIXED_DATE_JS: &str = "(function () { var D = Date, T = 1700000000000; \
    Date = function (...a) { return a.length ? new D(...a) : new D(T); }; \
    Date.prototype = D.prototype; Date.now = function () { return T; }; })();\n";

/// The default site (`html/`) in a temp root, its clock fixed.
fn default_site() -> Site {
    let s = Site::empty();
    let html = Path::new(env!("CARGO_MANIFEST_DIR")).join("html");
    for rel in ["index.html", "404.html", "css/style.css", "img/logo.png"] {
        s.write(rel, &std::fs::read(html.join(rel)).unwrap());
    }
    let js = std::fs::read_to_string(html.join("js/app.js")).unwrap();
    s.write("js/app.js", format!("{FIXED_DATE_JS}{js}").as_bytes());
    s
}

/// Headless Chromium's screenshot of `url` into `png`, or None when there is
/// no Chromium.
fn screenshot(url: &str, png: &Path) -> Option<()> {
    let browser = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=800,700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success() && png.exists(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

engine_tests! {
    /// Each coding: its own fields and strong tag, the source's
    /// Last-Modified, the original bytes back; HEAD says the same.
    fn representations_have_their_own_fields(e) {
        let s = site();
        let srv = start_or_skip!(e, "workers = 1", &s.root);
        let other = start_or_skip!(e, "workers = 2", &s.root);
        let src = page(20 << 10, 1);
        let plain = ask(&srv, "GET", "/page.html", "");
        assert_status(&plain, 200, "GET /page.html");
        assert_eq!(plain.body, src);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "identity varies too");
        let mut tags = vec![plain.header("etag").unwrap().to_string()];
        for c in CODINGS {
            let ae = format!("Accept-Encoding: {c}\r\n");
            let r = ask(&srv, "GET", "/page.html", &ae);
            assert_status(&r, 200, c);
            assert_eq!(r.header("content-encoding"), Some(c));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert_eq!(r.header("last-modified"), plain.header("last-modified"), "{c}");
            assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
            assert!(r.body.len() < src.len() / 3, "{c}: {} bytes", r.body.len());
            assert_eq!(decode(c, &r.body), src, "{c}");
            let tag = r.header("etag").unwrap().to_string();
            assert!(tag.starts_with('"') && !tag.starts_with("W/"), "{c}: {tag}");
            assert!(!tags.contains(&tag), "{c}: {tag} is not its own");
            tags.push(tag.clone());
            // Another server (a restart, a replica) on the same files: the
            // same tag for the same bytes.
            let again = ask(&other, "GET", "/page.html", &ae);
            assert_eq!(again.header("etag"), Some(&*tag), "{c}: another server's tag");
            assert_eq!(again.body, r.body, "{c}: another server's bytes");
            let h = ask(&srv, "HEAD", "/page.html", &ae);
            assert_status(&h, 200, &format!("HEAD {c}"));
            assert!(h.body.is_empty());
            for f in ["content-encoding", "content-length", "etag", "last-modified", "vary",
                      "content-type"] {
                assert_eq!(h.header(f), r.header(f), "HEAD {c}: {f}");
            }
        }
    }

    /// 304, 412 and If-Range on a compressed answer; a Range on it is
    /// answered from the compressed bytes; several ranges: the whole 200.
    fn validators_and_ranges_on_the_compressed_bytes(e) {
        let s = site();
        let srv = start_or_skip!(e, "workers = 1", &s.root);
        let ae = "Accept-Encoding: br\r\n";
        let full = ask(&srv, "GET", "/page.html", ae);
        let tag = full.header("etag").unwrap().to_string();
        let plain_tag = ask(&srv, "GET", "/page.html", "").header("etag").unwrap().to_string();
        let nm = ask(&srv, "GET", "/page.html", &format!("{ae}If-None-Match: {tag}\r\n"));
        assert_status(&nm, 304, "If-None-Match: br tag");
        assert_eq!(nm.header("etag"), Some(&*tag));
        assert_eq!(nm.header("vary"), Some("Accept-Encoding"));
        // The identity's tag does not match the br answer.
        let other = ask(&srv, "GET", "/page.html", &format!("{ae}If-None-Match: {plain_tag}\r\n"));
        assert_status(&other, 200, "If-None-Match: identity tag, br asked");
        let ims = format!("{ae}If-Modified-Since: {}\r\n", full.header("last-modified").unwrap());
        assert_status(&ask(&srv, "GET", "/page.html", &ims), 304, "If-Modified-Since");
        let im = ask(&srv, "GET", "/page.html", &format!("{ae}If-Match: {plain_tag}\r\n"));
        assert_status(&im, 412, "If-Match: identity tag, br asked");
        let im = ask(&srv, "GET", "/page.html", &format!("{ae}If-Match: {tag}\r\n"));
        assert_status(&im, 200, "If-Match: br tag");
        let part = ask(&srv, "GET", "/page.html", &format!("{ae}Range: bytes=10-109\r\n"));
        assert_status(&part, 206, "Range on br");
        assert_eq!(part.header("content-encoding"), Some("br"));
        let want = format!("bytes 10-109/{}", full.body.len());
        assert_eq!(part.header("content-range"), Some(&*want));
        assert_eq!(part.body, full.body[10..110]);
        // If-Range with the br tag: the range; with the identity's: all.
        let ir = format!("{ae}Range: bytes=0-9\r\nIf-Range: {tag}\r\n");
        assert_status(&ask(&srv, "GET", "/page.html", &ir), 206, "If-Range: br tag");
        let ir = format!("{ae}Range: bytes=0-9\r\nIf-Range: {plain_tag}\r\n");
        let whole = ask(&srv, "GET", "/page.html", &ir);
        assert_status(&whole, 200, "If-Range: identity tag");
        assert_eq!(whole.body, full.body);
        let multi = ask(&srv, "GET", "/page.html", &format!("{ae}Range: bytes=0-9, 20-29\r\n"));
        assert_status(&multi, 200, "several ranges of a coded variant");
        assert_eq!(multi.body, full.body);
    }

    /// Accept-Encoding as for the siblings: q-values, `*`, identity;q=0;
    /// a fresh sibling wins over compressing on equal q.
    fn negotiation_and_siblings(e) {
        let s = site();
        s.write("sib.css", &page(8000, 6));
        s.write("sib.css.gz", b"SIBLING-GZ");
        let srv = start_or_skip!(e, "workers = 1", &s.root);
        let cases = [
            ("", None),
            ("Accept-Encoding: gzip;q=0.5, br;q=0.1\r\n", Some("gzip")),
            ("Accept-Encoding: gzip, deflate, br, zstd\r\n", Some("br")),
            ("Accept-Encoding: br;q=0, *\r\n", Some("zstd")),
            ("Accept-Encoding: *;q=0\r\n", None),
            ("Accept-Encoding: identity\r\n", None),
            ("Accept-Encoding: deflate\r\n", None),
            ("Accept-Encoding: gzip;q=0.2, identity;q=0.5\r\n", None),
            ("Accept-Encoding: gzip, identity;q=0\r\n", Some("gzip")),
            ("Accept-Encoding: x-gzip\r\n", Some("gzip")),
            // Invalid members: an unreadable q refuses its coding, empty
            // members are skipped, a split field is one list.
            ("Accept-Encoding: br;q=2, zstd;q=\r\n", None),
            ("Accept-Encoding: ,, ;q=1, gzip;q=0.9,\r\n", Some("gzip")),
            ("Accept-Encoding: gzip;q=0.1\r\nAccept-Encoding: zstd;q=0.2\r\n", Some("zstd")),
            ("Accept-Encoding: \r\n", None),
        ];
        for (ae, want) in cases {
            let r = ask(&srv, "GET", "/page.html", ae);
            assert_status(&r, 200, ae);
            assert_eq!(r.header("content-encoding"), want, "{ae:?}");
            assert_eq!(decode(want.unwrap_or("identity"), &r.body), page(20 << 10, 1), "{ae:?}");
        }
        // Equal q: the sibling; br better or only br: made on the fly.
        let r = ask(&srv, "GET", "/sib.css", "Accept-Encoding: br, gzip\r\n");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.body, b"SIBLING-GZ");
        let r = ask(&srv, "GET", "/sib.css", "Accept-Encoding: br\r\n");
        assert_eq!(r.header("content-encoding"), Some("br"));
        assert_eq!(decode("br", &r.body), page(8000, 6));
        let sib_tag = ask(&srv, "GET", "/sib.css", "Accept-Encoding: gzip\r\n");
        assert_ne!(sib_tag.header("etag"), r.header("etag"));
    }

    /// Not compressed: small files, types not listed, files over
    /// cache_max_file; and nothing at all with `compression = []`.
    fn bounds_and_off(e) {
        let s = site();
        let srv = start_or_skip!(e, "workers = 1\ncache_max_file = 65536", &s.root);
        let ae = "Accept-Encoding: gzip, br, zstd\r\n";
        for path in ["/small.html", "/photo.png", "/big.html"] {
            let r = ask(&srv, "GET", path, ae);
            assert_status(&r, 200, path);
            assert_eq!(r.header("content-encoding"), None, "{path}");
            assert_eq!(r.header("vary"), None, "{path}");
        }
        assert_eq!(ask(&srv, "GET", "/data.json", ae).header("content-encoding"), Some("br"));
        // Feeds and XHTML are text: compressed by default too.
        for path in ["/feed.rss", "/feed.atom", "/page.xhtml"] {
            let r = ask(&srv, "GET", path, ae);
            assert_eq!(r.header("content-encoding"), Some("br"), "{path}: {}", r.describe());
        }
        drop(srv);
        let off = start_or_skip!(e, "compression = []", &s.root);
        let r = ask(&off, "GET", "/page.html", ae);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("vary"), None);
        let gz = start_or_skip!(e, "compression = [\"gzip\"]", &s.root);
        let r = ask(&gz, "GET", "/page.html", ae);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
    }

    /// 1,000 requests (at least) for one file, the codings in turn, on a
    /// keep-alive connection (pipelined), over several cache_revalidate
    /// intervals (the file is looked up again, found unchanged): one
    /// compression per coding. A change of the file makes it again.
    fn compressed_once_per_coding(e) {
        let s = site();
        let cfg = format!("workers = 1\ncache_revalidate = \"50ms\"\n{METRICS}");
        let srv = start_or_skip!(e, &cfg, &s.root);
        let count = |c: &str| srv.metric(&format!("tandem_compressions_total{{coding=\"{c}\"}}"));
        let mut conn = srv.connect();
        let fields = ["Accept-Encoding: br", "Accept-Encoding: zstd", "Accept-Encoding: gzip",
                      "Accept-Encoding: gzip, br"];
        let mut tags = std::collections::HashSet::new();
        let (t0, mut n) = (Instant::now(), 0);
        while n < 1000 || t0.elapsed() < Duration::from_millis(300) {
            let mut raw = String::new();
            for i in 0..20 {
                let f = fields[(n + i) % fields.len()];
                raw.push_str(&format!("GET /page.html HTTP/1.1\r\nHost: t\r\n{f}\r\n\r\n"));
            }
            conn.send(raw.as_bytes());
            for _ in 0..20 {
                let r = conn.read_response("GET");
                assert_status(&r, 200, "pipelined");
                tags.insert(r.header("etag").unwrap().to_string());
            }
            n += 20;
        }
        assert_eq!(tags.len(), 3, "{tags:?}");
        for c in CODINGS {
            assert_eq!(count(c), 1, "{c}");
        }
        // A new version: compressed again once it is looked up again.
        s.write("page.html", &page(21 << 10, 9));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = ask(&srv, "GET", "/page.html", "Accept-Encoding: br\r\n");
            if decode("br", &r.body) == page(21 << 10, 9) {
                break;
            }
            assert!(Instant::now() < deadline, "the change was never served");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(count("br"), 2);
        assert_eq!(count("gzip"), 1);
    }

    /// A text file no coding makes smaller (random bytes) is tried once
    /// per coding and then served as itself: revalidations that find it
    /// unchanged do not try again.
    fn incompressible_text_is_tried_once(e) {
        let s = site();
        s.write("noise.txt", &pseudo_random(8 << 10, 7));
        let cfg = format!("workers = 1\ncache_revalidate = \"50ms\"\n{METRICS}");
        let srv = start_or_skip!(e, &cfg, &s.root);
        let count = |c: &str| srv.metric(&format!("tandem_compressions_total{{coding=\"{c}\"}}"));
        let mut conn = srv.connect();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(600) {
            for f in ["br", "zstd", "gzip"] {
                conn.send(format!("GET /noise.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {f}\r\n\r\n").as_bytes());
                let r = conn.read_response("GET");
                assert_status(&r, 200, "noise.txt");
                assert_eq!(r.header("content-encoding"), None, "{f}: not smaller, sent as itself");
            }
        }
        for c in CODINGS {
            assert_eq!(count(c), 1, "{c}: tried again after an unchanged revalidation");
        }
    }

    /// curl --compressed decodes each coding back to the file's bytes.
    fn curl_decodes_each_coding(e) {
        let s = site();
        let srv = start_or_skip!(e, "", &s.root);
        if Command::new("curl").arg("--version").output().is_err() {
            return skip("curl is not installed");
        }
        let url = format!("http://{}/page.html", srv.addr());
        for c in CODINGS {
            let dir = tempfile::tempdir().unwrap();
            let (body, head) = (dir.path().join("body"), dir.path().join("head"));
            let ok = Command::new("curl")
                .args(["-sS", "--compressed", "-H", &format!("Accept-Encoding: {c}"), "-o"])
                .arg(&body)
                .arg("-D")
                .arg(&head)
                .arg(&url)
                .status()
                .unwrap();
            assert!(ok.success(), "curl {c}");
            let head = std::fs::read_to_string(&head).unwrap().to_ascii_lowercase();
            assert!(head.contains(&format!("content-encoding: {c}\r\n")), "{c}: {head}");
            assert_eq!(std::fs::read(&body).unwrap(), page(20 << 10, 1), "curl {c}");
        }
    }

    /// Python's gzip, brotli and zstandard decode each coding (brotli and
    /// zstandard from the venv at target/pyvenv, made by
    /// `python3 -m venv target/pyvenv && target/pyvenv/bin/pip install
    /// brotli zstandard`; skipped with the reason when it is missing).
    fn python_decodes_each_coding(e) {
        let s = site();
        let srv = start_or_skip!(e, "", &s.root);
        let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
        let check = Command::new(&py).args(["-c", "import brotli, zstandard"]).status();
        if !check.is_ok_and(|s| s.success()) {
            return skip("no target/pyvenv with brotli and zstandard (see this test's doc)");
        }
        let script = r#"
import sys, gzip, brotli, zstandard, urllib.request
url, coding, want = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
req = urllib.request.Request(url, headers={"Accept-Encoding": coding})
with urllib.request.urlopen(req) as r:
    got = r.headers["Content-Encoding"]
    body = r.read()
assert got == coding, (got, coding)
dec = {"gzip": gzip.decompress, "br": brotli.decompress,
       "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)}[coding]
assert dec(body) == want, coding
print("ok", coding, len(body))
"#;
        let want = s.root.join("page.html");
        for c in CODINGS {
            let out = Command::new(&py)
                .args(["-c", script, &format!("http://{}/page.html", srv.addr()), c])
                .arg(&want)
                .output()
                .unwrap();
            assert!(out.status.success(), "python {c}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// A browser: headless Chromium loads the default site (its HTML, CSS
    /// and JS compressed: min size lowered so each is) and renders exactly
    /// the page it renders with compression off: the screenshots are the
    /// same bytes. Skipped when Chromium is not installed (Debian: `apt-get
    /// install chromium`).
    fn chromium_renders_the_same_page(e) {
        let s = default_site();
        let cfg = format!("workers = 1\ncompression_min_size = 256\n{METRICS}");
        let on = start_or_skip!(e, &cfg, &s.root);
        let off = start_or_skip!(e, "compression = []", &s.root);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("on.png"), dir.path().join("off.png"));
        if screenshot(&format!("http://{}/", on.addr()), &a).is_none() {
            return skip("no chromium (Debian: apt-get install chromium)");
        }
        screenshot(&format!("http://{}/", off.addr()), &b).unwrap();
        let br = on.metric("tandem_compressions_total{coding=\"br\"}");
        assert!(br >= 3, "index.html, style.css and app.js compressed: {br}");
        let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(a.len() > 10_000, "a page was drawn: {} bytes of PNG", a.len());
        assert!(a == b, "the page renders differently with compression on");
    }
}
