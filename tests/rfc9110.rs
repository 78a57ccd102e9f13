//! RFC 9110 checklist: one test per requirement, named after the section
//! that states it (`rfc9110_13_2_2_...`), each run on both engines, in
//! plaintext and over TLS (`mod epoll_tls`, `mod io_uring_tls`: the same
//! requests and checks, the clients speaking TLS, see
//! `engine_and_tls_tests!`).
//!
//! Validators (§8.8), conditional requests (§13), range requests (§14),
//! content negotiation of precompressed siblings (§12.5.3), the status codes
//! that go with them (§15), and the site features that decide which file a
//! request gets (index list, error pages, SPA fallback, `[[rules]]`).
//! Raw TCP for exact bytes and headers; `ureq` (a real client) and
//! `mailparse` (a real MIME parser) where a client's view is the point.

#[macro_use]
mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use mailparse::MailHeaderMap;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// For tests that change a file between requests and expect the next answer
/// to see it at once: no small-file cache (which sees a change only within
/// `cache_revalidate`; tests/files.rs covers that).
const NO_CACHE: &str = "cache_size = 0";

/// Length of `r.bin`, the file most range and condition tests use.
const R_LEN: usize = 1000;

fn r_bytes() -> Vec<u8> {
    pseudo_random(R_LEN, 0x5246_4339_3131_3001)
}

/// The standard site plus `r.bin`.
fn site_r() -> Site {
    let s = Site::new();
    s.write("r.bin", &r_bytes());
    s
}

/// Extra header fields of a request, in order.
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// A request with extra fields, as bytes; `close` adds `Connection: close`.
fn raw(method: &str, path: &str, fields: &[(&str, &str)], close: bool) -> String {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: tandem.test\r\n");
    for (n, v) in fields {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    s
}

/// How a request is named in failure messages.
fn what(method: &str, path: &str, fields: &[(&str, &str)]) -> String {
    let f: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    format!("{method} {path} [{}]", f.join(" | "))
}

/// One request on a fresh connection.
fn ask(srv: &Server, method: &str, path: &str, fields: &[(&str, &str)]) -> Response {
    request(srv.addr(), raw(method, path, fields, true).as_bytes())
}

/// One request on a fresh connection, checked for `status` and the fields
/// every response has.
#[track_caller]
fn expect(
    srv: &Server,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    status: u16,
) -> Response {
    let r = ask(srv, method, path, fields);
    let ctx = what(method, path, fields);
    assert_status(&r, status, &ctx);
    check_any(&r, &ctx);
    r
}

/// `check_common`, except that a 304 has no content and so no need of a
/// Content-Length (RFC 9110 §8.6: a 304 MAY carry the 200's length, nothing
/// else); tandem sends none.
#[track_caller]
fn check_any(r: &Response, ctx: &str) {
    if r.status != 304 {
        check_common(r, ctx);
        return;
    }
    assert_eq!(r.version, "HTTP/1.1", "{ctx}\n{}", r.describe());
    assert_eq!(
        r.header("server"),
        Some("tandem"),
        "{ctx}\n{}",
        r.describe()
    );
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("{ctx}: 304 without Date (§15.4.5)\n{}", r.describe()));
    let t = parse_imf_fixdate(date)
        .unwrap_or_else(|| panic!("{ctx}: Date {date:?} is not an IMF-fixdate"));
    assert!(
        t.abs_diff(now_secs()) < 120,
        "{ctx}: Date {date:?} is far from now"
    );
    assert!(
        r.header("transfer-encoding").is_none(),
        "{ctx}: 304 with Transfer-Encoding\n{}",
        r.describe()
    );
    assert!(
        r.headers_all("content-length").len() <= 1,
        "{ctx}: 304 with several Content-Length\n{}",
        r.describe()
    );
}

#[track_caller]
fn hdr<'a>(r: &'a Response, name: &str, ctx: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("{ctx}: no {name}\n{}", r.describe()))
}

/// Does some `Vary` line list `Accept-Encoding`?
fn varies_by_ae(r: &Response) -> bool {
    r.headers_all("vary")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
}

#[track_caller]
fn assert_vary(r: &Response, ctx: &str) {
    assert!(
        varies_by_ae(r),
        "{ctx}: no Vary: Accept-Encoding (the path has a precompressed sibling)\n{}",
        r.describe()
    );
}

#[track_caller]
fn assert_no_vary(r: &Response, ctx: &str) {
    assert!(
        !varies_by_ae(r),
        "{ctx}: Vary: Accept-Encoding on a path without a sibling\n{}",
        r.describe()
    );
}

/// A strong entity tag: `"` etagc* `"` (RFC 9110 §8.8.3).
#[track_caller]
fn assert_strong_etag(tag: &str, ctx: &str) {
    let b = tag.as_bytes();
    assert!(
        b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"',
        "{ctx}: ETag {tag:?} is not a strong entity-tag"
    );
    assert!(
        b[1..b.len() - 1]
            .iter()
            .all(|&c| c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80),
        "{ctx}: ETag {tag:?} has a character etagc does not allow"
    );
}

/// The ETag and Last-Modified a plain GET gets.
fn validators(srv: &Server, path: &str, fields: &[(&str, &str)]) -> (String, String) {
    let r = expect(srv, "GET", path, fields, 200);
    let ctx = what("GET", path, fields);
    (
        hdr(&r, "etag", &ctx).to_string(),
        hdr(&r, "last-modified", &ctx).to_string(),
    )
}

fn set_mtime(p: &Path, t: SystemTime) {
    fs::File::open(p)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", p.display()));
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

/// 2023-11-14 22:13:20.123456789 UTC: a time with nanoseconds.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
}

fn date(secs: u64) -> String {
    imf_fixdate(secs)
}

/// Check a single-part 206: status, Content-Range, Content-Length, body.
#[track_caller]
fn assert_206(r: &Response, first: usize, last: usize, whole: &[u8], ctx: &str) {
    assert_status(r, 206, ctx);
    check_common(r, ctx);
    let cr = format!("bytes {first}-{last}/{}", whole.len());
    assert_eq!(
        r.header("content-range"),
        Some(cr.as_str()),
        "{ctx}: Content-Range\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("content-length"),
        Some((last - first + 1).to_string().as_str()),
        "{ctx}: Content-Length"
    );
    assert_bytes_eq(&r.body, &whole[first..=last], ctx);
}

/// A 200 with the whole file: the Range was ignored.
#[track_caller]
fn assert_whole(r: &Response, whole: &[u8], ctx: &str) {
    assert_status(r, 200, ctx);
    check_common(r, ctx);
    assert!(
        r.header("content-range").is_none(),
        "{ctx}: Content-Range on a 200\n{}",
        r.describe()
    );
    assert_bytes_eq(&r.body, whole, ctx);
}

/// One part of a `multipart/byteranges` body as a MIME parser sees it.
#[derive(Debug)]
struct Part {
    content_type: Option<String>,
    content_range: Option<String>,
    body: Vec<u8>,
}

/// Parse a 206 `multipart/byteranges` response with `mailparse`: the
/// response's Content-Type as a message header, then its body.
#[track_caller]
fn parts(r: &Response, ctx: &str) -> Vec<Part> {
    assert_status(r, 206, ctx);
    let ct = hdr(r, "content-type", ctx);
    assert!(
        ct.to_ascii_lowercase().starts_with("multipart/byteranges"),
        "{ctx}: Content-Type {ct:?} of a several-range 206\n{}",
        r.describe()
    );
    assert!(
        r.header("content-range").is_none(),
        "{ctx}: Content-Range in the header section of a multipart response (§15.3.7.2 MUST NOT)\n{}",
        r.describe()
    );
    let mut msg = format!("Content-Type: {ct}\r\n\r\n").into_bytes();
    msg.extend_from_slice(&r.body);
    let m = mailparse::parse_mail(&msg).unwrap_or_else(|e| panic!("{ctx}: mailparse: {e}"));
    assert_eq!(m.ctype.mimetype, "multipart/byteranges", "{ctx}");
    let boundary = m
        .ctype
        .params
        .get("boundary")
        .unwrap_or_else(|| panic!("{ctx}: no boundary parameter in {ct:?}"))
        .clone();
    assert!(
        (1..=70).contains(&boundary.len()),
        "{ctx}: boundary {boundary:?} (RFC 2046: 1 to 70 characters)"
    );
    let close = format!("\r\n--{boundary}--\r\n");
    assert!(
        r.body.ends_with(close.as_bytes()),
        "{ctx}: body does not end with the close delimiter {close:?}: ...{}",
        show(&r.body[r.body.len().saturating_sub(80)..])
    );
    m.subparts
        .iter()
        .map(|p| Part {
            content_type: p.headers.get_first_value("Content-Type"),
            content_range: p.headers.get_first_value("Content-Range"),
            body: p
                .get_body_raw()
                .unwrap_or_else(|e| panic!("{ctx}: part body: {e}")),
        })
        .collect()
}

/// Check parts against (first, last) ranges of `whole`, in order.
#[track_caller]
fn assert_parts(ps: &[Part], want: &[(usize, usize)], whole: &[u8], ctype: &str, ctx: &str) {
    assert_eq!(
        ps.len(),
        want.len(),
        "{ctx}: {} parts, want {}",
        ps.len(),
        want.len()
    );
    for (i, (p, &(first, last))) in ps.iter().zip(want).enumerate() {
        let cr = format!("bytes {first}-{last}/{}", whole.len());
        assert_eq!(
            p.content_range.as_deref(),
            Some(cr.as_str()),
            "{ctx}: part {i} Content-Range"
        );
        assert_eq!(
            p.content_type.as_deref(),
            Some(ctype),
            "{ctx}: part {i} Content-Type (§15.3.7.2: the 200's Content-Type)"
        );
        assert_bytes_eq(&p.body, &whole[first..=last], &format!("{ctx}: part {i}"));
    }
}

/// A site with `x.css`, its `.br`, `.zst` and `.gz` siblings (each with
/// distinct bytes, all fresh), and `plain.css` without any.
struct Variants {
    site: Site,
    css: Vec<u8>,
    br: Vec<u8>,
    zst: Vec<u8>,
    gz: Vec<u8>,
}

const CSS_TYPE: &str = "text/css; charset=utf-8";

fn variants() -> Variants {
    let site = Site::new();
    let css = b"/* X-CSS identity */ body { margin: 0 }\n".repeat(20);
    // The bytes need not be real encodings for raw-TCP tests: the point is
    // which file is sent. (The ureq test uses a real gzip file.)
    let br = b"BROTLI-VARIANT-BYTES-".repeat(5);
    let zst = b"ZSTD-VARIANT-BYTES-".repeat(7);
    let gz = gzip(&css);
    site.write("x.css", &css);
    site.write("x.css.br", &br);
    site.write("x.css.zst", &zst);
    site.write("x.css.gz", &gz);
    site.write("plain.css", &css);
    // Siblings strictly newer than the source.
    set_mtime(&site.path("x.css"), t0());
    for s in ["x.css.br", "x.css.zst", "x.css.gz"] {
        set_mtime(&site.path(s), t0() + Duration::from_secs(1));
    }
    Variants {
        site,
        css,
        br,
        zst,
        gz,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Which variant a response carries, by its Content-Encoding and bytes.
#[track_caller]
fn assert_variant(r: &Response, v: &Variants, coding: Option<&str>, ctx: &str) {
    assert_eq!(
        r.header("content-encoding"),
        coding,
        "{ctx}: Content-Encoding\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("content-type"),
        Some(CSS_TYPE),
        "{ctx}: Content-Type must be the original's\n{}",
        r.describe()
    );
    let want = match coding {
        None => &v.css,
        Some("br") => &v.br,
        Some("zstd") => &v.zst,
        Some("gzip") => &v.gz,
        Some(c) => panic!("unknown coding {c}"),
    };
    assert_bytes_eq(&r.body, want, ctx);
}

/// An agent that talks to 127.0.0.1 directly and returns 4xx as
/// responses; over TLS, trusting `srv`'s certificate only.
fn ureq_agent(srv: &Server) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut b = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false);
    if let Some(p) = srv.tls_pair() {
        let roots = vec![Certificate::from_der(&p.der).to_owned()];
        let tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(roots)));
        b = b.tls_config(tls.build());
    }
    b.build().into()
}

/// `srv`'s URL for `path`: `https://127.0.0.1:PORT/...` over TLS (the
/// certificate names the address).
fn url(srv: &Server, path: &str) -> String {
    let scheme = if srv.tls_pair().is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}{path}", srv.addr())
}

/// Read a response byte stream to its end in small reads, and parse it.
fn read_slowly(c: &mut Conn, ctx: &str) -> Response {
    c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match c.read_some(&mut chunk) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("{ctx}: slow read after {} bytes: {e}", all.len()),
        }
    }
    let r = frame::split_response(&all).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "{ctx}: Content-Length vs bytes received before close\n{}",
        r.describe()
    );
    r
}

/// `bytes=a-b,c-d,...`
fn range_value(rs: &[(usize, usize)]) -> String {
    let v: Vec<String> = rs.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!("bytes={}", v.join(","))
}

engine_and_tls_tests! {
    // -----------------------------------------------------------------------
    // §8.8 Validators
    // -----------------------------------------------------------------------

    /// §8.8.3, §8.8.2, §14.3: every file response has a strong ETag, a
    /// Last-Modified that is the file's mtime, and Accept-Ranges: bytes;
    /// HEAD has the same validators as GET.
    fn rfc9110_8_8_3_strong_etag_last_modified_and_accept_ranges_on_file_responses(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        for (path, file) in [
            ("/r.bin", "r.bin"),
            ("/style.css", "style.css"),
            ("/", "index.html"),
            ("/sub/", "sub/index.html"),
            ("/logo.png", "logo.png"),
            ("/big.bin", "big.bin"),
        ] {
            let g = expect(&srv, "GET", path, &[], 200);
            let ctx = format!("GET {path}");
            let tag = hdr(&g, "etag", &ctx);
            assert_strong_etag(tag, &ctx);
            assert_eq!(
                hdr(&g, "last-modified", &ctx),
                imf_fixdate(mtime_secs(&site.path(file))),
                "{ctx}: Last-Modified is not the file's mtime"
            );
            assert_eq!(g.header("accept-ranges"), Some("bytes"), "{ctx}: Accept-Ranges\n{}", g.describe());
            let h = expect(&srv, "HEAD", path, &[], 200);
            for name in ["etag", "last-modified", "accept-ranges", "content-length"] {
                assert_eq!(h.header(name), g.header(name), "HEAD {path}: {name} differs from GET");
            }
        }
    }

    /// §8.8.3: the ETag is built from what the file is (size, mtime to the
    /// nanosecond), not where it is: a copy elsewhere with the same mtime has
    /// the same tag; the same bytes with another mtime, even 1 ns apart, do
    /// not.
    fn rfc9110_8_8_3_etag_from_size_and_mtime_not_the_inode(e) {
        let site = Site::new();
        let data = b"SAME-BYTES-IN-EVERY-COPY\n".repeat(10);
        for f in ["a.txt", "copy/a.txt", "other/dir/b.txt", "ns.txt", "sec.txt"] {
            site.write(f, &data);
        }
        for f in ["a.txt", "copy/a.txt", "other/dir/b.txt"] {
            set_mtime(&site.path(f), t0());
        }
        set_mtime(&site.path("ns.txt"), t0() + Duration::from_nanos(1));
        set_mtime(&site.path("sec.txt"), t0() + Duration::from_secs(1));
        assert_eq!(
            mtime(&site.path("ns.txt")),
            t0() + Duration::from_nanos(1),
            "the filesystem under the test site does not keep nanoseconds"
        );
        let srv = start_or_skip!(e, "", &site.root);
        let (a, a_lm) = validators(&srv, "/a.txt", &[]);
        let (copy, copy_lm) = validators(&srv, "/copy/a.txt", &[]);
        let (b, _) = validators(&srv, "/other/dir/b.txt", &[]);
        assert_eq!(a, copy, "same size and mtime in another directory (another inode): same ETag");
        assert_eq!(a, b, "same size and mtime under another name: same ETag");
        assert_eq!(a_lm, copy_lm);
        assert_eq!(a_lm, "Tue, 14 Nov 2023 22:13:20 GMT");
        let (ns, ns_lm) = validators(&srv, "/ns.txt", &[]);
        assert_ne!(a, ns, "mtimes 1 ns apart must give different ETags");
        assert_eq!(a_lm, ns_lm, "1 ns apart is the same second for Last-Modified");
        let (sec, _) = validators(&srv, "/sec.txt", &[]);
        assert_ne!(a, sec, "mtimes 1 s apart must give different ETags");
        assert_ne!(ns, sec);
    }

    /// §8.8.3: mtimes before 1970 are mtimes too (`touch -d 1965-06-01`,
    /// archives with bad dates): two versions of a file of the same size
    /// with different mtimes before the epoch are different versions.
    fn rfc9110_8_8_3_etag_distinct_for_mtimes_before_1970(e) {
        let site = Site::new();
        for f in ["old1.txt", "old2.txt", "old3.txt"] {
            site.write(f, b"SAME-SIZE");
        }
        set_mtime(&site.path("old1.txt"), UNIX_EPOCH - Duration::from_secs(315_619_200));
        set_mtime(&site.path("old2.txt"), UNIX_EPOCH - Duration::from_secs(144_000_000));
        set_mtime(&site.path("old3.txt"), UNIX_EPOCH - Duration::from_secs(1));
        let srv = start_or_skip!(e, "", &site.root);
        // (No Last-Modified before 1970: the ETag is the only validator.)
        let tag = |p: &str| hdr(&expect(&srv, "GET", p, &[], 200), "etag", p).to_string();
        let (t1, t2, t3) = (tag("/old1.txt"), tag("/old2.txt"), tag("/old3.txt"));
        assert_ne!(t1, t2, "mtimes 1960-01-01 and 1965-06-09: same size, same ETag");
        assert_ne!(t2, t3, "mtimes 1965-06-09 and 1969-12-31T23:59:59: same size, same ETag");
        // And a client holding the 1960 version's tag does not get a 304
        // for the 1965 one.
        expect(&srv, "GET", "/old2.txt", &[("If-None-Match", &t1)], 200);
    }

    /// §8.8.3: a new version of the file is a new representation: its ETag
    /// changes and an If-None-Match with the old one gets the new bytes.
    fn rfc9110_8_8_3_etag_changes_when_the_file_changes(e) {
        let site = Site::new();
        site.write("v.txt", b"VERSION-ONE");
        set_mtime(&site.path("v.txt"), t0());
        let srv = start_or_skip!(e, NO_CACHE, &site.root);
        let (old, _) = validators(&srv, "/v.txt", &[]);
        site.write("v.txt", b"VERSION-TWO");
        set_mtime(&site.path("v.txt"), t0() + Duration::from_millis(10));
        let r = expect(&srv, "GET", "/v.txt", &[("If-None-Match", &old)], 200);
        assert_eq!(r.body_str(), "VERSION-TWO");
        assert_ne!(r.header("etag"), Some(old.as_str()), "same size, new mtime: new ETag");
    }

    /// §8.8.2.1: "An origin server with a clock MUST NOT generate a
    /// Last-Modified date that is later than the server's time of message
    /// origination (Date). If the last modification time ... evaluates to
    /// some time in the future ... the origin server MUST replace that value
    /// with the message origination date."
    fn rfc9110_8_8_2_1_last_modified_never_later_than_date(e) {
        let site = Site::new();
        site.write("future.txt", b"FROM-THE-FUTURE");
        set_mtime(&site.path("future.txt"), SystemTime::now() + Duration::from_secs(86_400));
        let srv = start_or_skip!(e, "", &site.root);
        for m in ["GET", "HEAD"] {
            let r = expect(&srv, m, "/future.txt", &[], 200);
            let ctx = format!("{m} /future.txt (mtime one day ahead)");
            let lm = parse_imf_fixdate(hdr(&r, "last-modified", &ctx)).expect("IMF-fixdate");
            let d = parse_imf_fixdate(hdr(&r, "date", &ctx)).expect("IMF-fixdate");
            assert!(lm <= d, "{ctx}: Last-Modified is later than Date\n{}", r.describe());
        }
    }

    /// §8.8.2.1 with a future mtime, as nginx users expect: Last-Modified
    /// is when the file was first seen, the same on every request (a later
    /// second, another connection, the cache or the disk, a range), so
    /// If-Modified-Since with it gives 304; the ETag is stable too. A new
    /// version of the file is seen anew: a later date, a new ETag, a 200.
    fn rfc9110_8_8_2_1_future_mtime_last_modified_is_stable_and_validates(e) {
        for cfg in ["workers = 4", "workers = 4\ncache_size = 0"] {
            let site = Site::new();
            site.write("future.txt", b"FROM-THE-FUTURE");
            set_mtime(&site.path("future.txt"), SystemTime::now() + Duration::from_secs(86_400));
            let srv = start_or_skip!(e, cfg, &site.root);
            let ctx = format!("GET /future.txt ({cfg:?})");
            let first = expect(&srv, "GET", "/future.txt", &[], 200);
            let lm = hdr(&first, "last-modified", &ctx).to_string();
            let tag = hdr(&first, "etag", &ctx).to_string();
            let date = hdr(&first, "date", &ctx).to_string();
            assert!(parse_imf_fixdate(&lm) <= parse_imf_fixdate(&date), "{ctx}: Last-Modified later than Date\n{}", first.describe());
            // Wait for the Date to move on (a condition, polled), then ask
            // again, on fresh connections (so other workers), every way.
            let mut later = None;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while later.is_none() && std::time::Instant::now() < deadline {
                let r = expect(&srv, "HEAD", "/future.txt", &[], 200);
                if r.header("date") != Some(date.as_str()) {
                    later = Some(r);
                }
            }
            assert!(later.is_some(), "{ctx}: the Date did not change within 5 s");
            for _ in 0..8 {
                for (m, fields, status) in [
                    ("GET", vec![], 200),
                    ("HEAD", vec![], 200),
                    ("GET", vec![("Range", "bytes=0-3")], 206),
                    ("GET", vec![("If-Modified-Since", lm.as_str())], 304),
                    ("HEAD", vec![("If-Modified-Since", lm.as_str())], 304),
                    ("GET", vec![("If-None-Match", tag.as_str())], 304),
                ] {
                    let c = format!("{} ({cfg:?}, first answered {lm})", what(m, "/future.txt", &fields));
                    let r = expect(&srv, m, "/future.txt", &fields, status);
                    assert_eq!(r.header("last-modified"), Some(lm.as_str()), "{c}: Last-Modified moved\n{}", r.describe());
                    assert_eq!(r.header("etag"), Some(tag.as_str()), "{c}: ETag moved\n{}", r.describe());
                }
            }
            // A new version, still in the future: new validators, a 200.
            site.write("future.txt", b"FROM-THE-FUTURE-2");
            set_mtime(&site.path("future.txt"), SystemTime::now() + Duration::from_secs(2 * 86_400));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            // (Until the cache looks again, the old version's 304.)
            let fresh = loop {
                let r = ask(&srv, "GET", "/future.txt", &[("If-Modified-Since", lm.as_str())]);
                if r.status == 200 && r.body_str() == "FROM-THE-FUTURE-2" {
                    break r;
                }
                assert!(r.status == 304 && std::time::Instant::now() < deadline,
                    "{ctx}: the new version with If-Modified-Since {lm}: not served within 10 s\n{}", r.describe());
            };
            let lm2 = hdr(&fresh, "last-modified", &ctx).to_string();
            assert!(parse_imf_fixdate(&lm2) > parse_imf_fixdate(&lm), "{ctx}: new version dated {lm2}, not after {lm}");
            assert!(parse_imf_fixdate(&lm2) <= parse_imf_fixdate(hdr(&fresh, "date", &ctx)), "{ctx}: later than Date");
            assert_ne!(fresh.header("etag"), Some(tag.as_str()), "{ctx}: same ETag for a new version");
            expect(&srv, "GET", "/future.txt", &[("If-Modified-Since", lm2.as_str())], 304);
        }
    }

    // -----------------------------------------------------------------------
    // §13.1 Preconditions, one field at a time
    // -----------------------------------------------------------------------

    /// §13.1.1: If-Match with the current tag (alone, in a list, on several
    /// lines) or `*` proceeds.
    fn rfc9110_13_1_1_if_match_current_etag_or_star_proceeds(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (tag, _) = validators(&srv, "/r.bin", &[]);
        let list = format!("\"nope\", {tag}");
        for fields in [
            vec![("If-Match", tag.as_str())],
            vec![("If-Match", list.as_str())],
            vec![("If-Match", "\"nope\""), ("If-Match", tag.as_str())],
            vec![("If-Match", "*")],
        ] {
            let r = expect(&srv, "GET", "/r.bin", &fields, 200);
            assert_bytes_eq(&r.body, &r_bytes(), &what("GET", "/r.bin", &fields));
        }
    }

    /// §13.1.1: If-Match that names no current tag is 412, for GET and
    /// HEAD; the comparison is strong, so W/"current" fails too.
    fn rfc9110_13_1_1_if_match_mismatch_or_weak_is_412(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (tag, _) = validators(&srv, "/r.bin", &[]);
        let weak = format!("W/{tag}");
        for m in ["GET", "HEAD"] {
            for v in ["\"nope\"", "\"a\", \"b\"", weak.as_str()] {
                expect(&srv, m, "/r.bin", &[("If-Match", v)], 412);
            }
        }
    }

    /// §13.1.2: If-None-Match naming the current tag (alone, listed, weak,
    /// or `*`) is 304 for GET and HEAD.
    fn rfc9110_13_1_2_if_none_match_is_304_for_get_and_head(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (tag, lm) = validators(&srv, "/r.bin", &[]);
        let weak = format!("W/{tag}");
        let list = format!("\"a\" , {tag},\"b\"");
        for m in ["GET", "HEAD"] {
            for v in [tag.as_str(), weak.as_str(), list.as_str(), "*"] {
                let r = expect(&srv, m, "/r.bin", &[("If-None-Match", v)], 304);
                let ctx = what(m, "/r.bin", &[("If-None-Match", v)]);
                assert_eq!(r.header("etag"), Some(tag.as_str()), "{ctx}: ETag");
                assert_eq!(r.header("last-modified"), Some(lm.as_str()), "{ctx}: Last-Modified");
            }
            // The tag on a second field line.
            expect(&srv, m, "/r.bin", &[("If-None-Match", "\"a\""), ("If-None-Match", &tag)], 304);
        }
    }

    /// §13.1.2: If-None-Match that names no current tag: the full 200.
    fn rfc9110_13_1_2_if_none_match_mismatch_is_200(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        for v in ["\"nope\"", "W/\"nope\", \"other\""] {
            let r = expect(&srv, "GET", "/r.bin", &[("If-None-Match", v)], 200);
            assert_bytes_eq(&r.body, &r_bytes(), v);
        }
    }

    /// §13.1.3: If-Modified-Since at or after Last-Modified is 304 (GET and
    /// HEAD); before it, 200; an invalid date or two of them are ignored.
    fn rfc9110_13_1_3_if_modified_since(e) {
        let site = site_r();
        set_mtime(&site.path("r.bin"), t0());
        let srv = start_or_skip!(e, "", &site.root);
        let (_, lm) = validators(&srv, "/r.bin", &[]);
        let secs = parse_imf_fixdate(&lm).unwrap();
        let later = date(secs + 3600);
        let earlier = date(secs - 1);
        for m in ["GET", "HEAD"] {
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", &lm)], 304);
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", &later)], 304);
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", &earlier)], 200);
            // Obsolete date forms are HTTP-dates too (§5.6.7).
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT")], 304);
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", "Tue Nov 14 22:13:20 2023")], 304);
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", "yesterday")], 200);
            expect(&srv, m, "/r.bin", &[("If-Modified-Since", &lm), ("If-Modified-Since", &lm)], 200);
        }
    }

    /// §13.1.4: If-Unmodified-Since before Last-Modified is 412; at or after
    /// it, 200; an invalid date is ignored.
    fn rfc9110_13_1_4_if_unmodified_since(e) {
        let site = site_r();
        set_mtime(&site.path("r.bin"), t0());
        let srv = start_or_skip!(e, "", &site.root);
        let (_, lm) = validators(&srv, "/r.bin", &[]);
        let secs = parse_imf_fixdate(&lm).unwrap();
        for m in ["GET", "HEAD"] {
            expect(&srv, m, "/r.bin", &[("If-Unmodified-Since", &lm)], 200);
            expect(&srv, m, "/r.bin", &[("If-Unmodified-Since", &date(secs + 60))], 200);
            expect(&srv, m, "/r.bin", &[("If-Unmodified-Since", &date(secs - 1))], 412);
            expect(&srv, m, "/r.bin", &[("If-Unmodified-Since", "not a date")], 200);
        }
    }

    /// §13.1.5: If-Range with the current strong ETag: the range (206); with
    /// another tag or a weak one: the whole representation (200).
    fn rfc9110_13_1_5_if_range_with_an_etag(e) {
        let site = site_r();
        let srv = start_or_skip!(e, NO_CACHE, &site.root);
        let whole = r_bytes();
        let (tag, _) = validators(&srv, "/r.bin", &[]);
        let f = [("Range", "bytes=10-19"), ("If-Range", tag.as_str())];
        let r = ask(&srv, "GET", "/r.bin", &f);
        assert_206(&r, 10, 19, &whole, &what("GET", "/r.bin", &f));
        let weak = format!("W/{tag}");
        for other in ["\"nope\"", weak.as_str()] {
            let f = [("Range", "bytes=10-19"), ("If-Range", other)];
            assert_whole(&ask(&srv, "GET", "/r.bin", &f), &whole, &what("GET", "/r.bin", &f));
        }
        // The file changes: the old tag no longer matches.
        let new = pseudo_random(R_LEN, 99);
        site.write("r.bin", &new);
        set_mtime(&site.path("r.bin"), t0());
        let r = ask(&srv, "GET", "/r.bin", &f);
        assert_whole(&r, &new, "If-Range with the ETag of an older version");
        // "A server MUST ignore an If-Range header field received in a
        // request that does not contain a Range header field."
        let r = expect(&srv, "GET", "/r.bin", &[("If-Range", "\"nope\"")], 200);
        assert_bytes_eq(&r.body, &new, "If-Range without Range");
    }

    /// §13.1.5: If-Range with a date: the range only when it is exactly the
    /// Last-Modified, the whole file for any other date.
    fn rfc9110_13_1_5_if_range_with_a_date(e) {
        let site = site_r();
        set_mtime(&site.path("r.bin"), t0());
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        let (_, lm) = validators(&srv, "/r.bin", &[]);
        let secs = parse_imf_fixdate(&lm).unwrap();
        let f = [("Range", "bytes=-100"), ("If-Range", lm.as_str())];
        assert_206(&ask(&srv, "GET", "/r.bin", &f), 900, 999, &whole, &what("GET", "/r.bin", &f));
        for d in [date(secs + 1), date(secs - 1), date(secs + 86_400)] {
            let f = [("Range", "bytes=-100"), ("If-Range", d.as_str())];
            assert_whole(&ask(&srv, "GET", "/r.bin", &f), &whole, &what("GET", "/r.bin", &f));
        }
    }

    /// §13.1.5: If-Range holds one validator (it is not a list, §5.3). Two
    /// If-Range lines, each of which would hold alone, are together neither
    /// an entity-tag nor an HTTP-date: "Otherwise, the condition is false",
    /// so the whole representation, whichever line comes first (it used to
    /// be the first line's verdict: a range against a validator the client
    /// also contradicted).
    fn rfc9110_13_1_5_if_range_twice_sends_the_whole(e) {
        let site = site_r();
        set_mtime(&site.path("r.bin"), t0());
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        let (tag, lm) = validators(&srv, "/r.bin", &[]);
        for (a, b) in [
            (tag.as_str(), lm.as_str()),
            (lm.as_str(), tag.as_str()),
            (tag.as_str(), tag.as_str()),
            (lm.as_str(), "\"nope\""),
            (tag.as_str(), "\"nope\""),
        ] {
            let f = [("Range", "bytes=10-19"), ("If-Range", a), ("If-Range", b)];
            assert_whole(&ask(&srv, "GET", "/r.bin", &f), &whole, &what("GET", "/r.bin", &f));
        }
        // One line still gets its range.
        let f = [("Range", "bytes=10-19"), ("If-Range", tag.as_str())];
        assert_206(&ask(&srv, "GET", "/r.bin", &f), 10, 19, &whole, &what("GET", "/r.bin", &f));
    }

    /// §13.1.5 with §8.8.2.2 (issue 18, point 6): a Last-Modified in the
    /// same second as the response's Date is a weak validator (the file may
    /// change again within that second, under the same date), and If-Range
    /// needs a strong one: such a date gets the whole 200, never a range
    /// that could splice two versions. Seen two ways: a file written just
    /// now (the range once a response's Date is a later second), and a
    /// file whose mtime is ahead of the clock (Last-Modified is then the
    /// Date itself). An older file's date still gets its range (the test
    /// above).
    fn rfc9110_13_1_5_if_range_date_in_the_second_of_the_response_is_weak(e) {
        let site = site_r();
        let whole = r_bytes();
        let srv = start_or_skip!(e, NO_CACHE, &site.root);
        let mut same_second = 0;
        for attempt in 0..20 {
            let now = SystemTime::now();
            set_mtime(&site.path("r.bin"), now);
            let lm = date(now.duration_since(UNIX_EPOCH).unwrap().as_secs());
            let f = [("Range", "bytes=-100"), ("If-Range", lm.as_str())];
            let r = ask(&srv, "GET", "/r.bin", &f);
            let ctx = format!("{} (file written just now, attempt {attempt})", what("GET", "/r.bin", &f));
            let d = hdr(&r, "date", &ctx).to_string();
            if d == lm {
                same_second += 1;
                assert_whole(&r, &whole, &format!("{ctx}: Date is the Last-Modified's second"));
            } else {
                assert_206(&r, 900, 999, &whole, &format!("{ctx}: Date {d} is a later second"));
            }
            if same_second >= 3 {
                break;
            }
        }
        assert!(same_second > 0, "never a response in the second of the file's mtime in 20 tries");
        // Last-Modified is the Date of the first response that saw the
        // mtime (and stays so, §8.8.2.1 test above): weak in that second,
        // strong from the next, so the GET is checked against its own Date
        // (each attempt a new mtime, seen anew).
        let mut same_second = 0;
        for attempt in 0..20 {
            set_mtime(&site.path("r.bin"), SystemTime::now() + Duration::from_secs(86_400 + attempt));
            let h = expect(&srv, "HEAD", "/r.bin", &[], 200);
            let lm = hdr(&h, "last-modified", "HEAD /r.bin (mtime a day ahead)").to_string();
            let f = [("Range", "bytes=-100"), ("If-Range", lm.as_str())];
            let ctx = format!("{} (mtime a day ahead, attempt {attempt})", what("GET", "/r.bin", &f));
            let r = ask(&srv, "GET", "/r.bin", &f);
            let d = hdr(&r, "date", &ctx).to_string();
            if d == lm {
                same_second += 1;
                assert_whole(&r, &whole, &format!("{ctx}: Date is the Last-Modified's second"));
            } else {
                assert_206(&r, 900, 999, &whole, &format!("{ctx}: Date {d} is a later second"));
            }
            if same_second >= 3 {
                break;
            }
        }
        assert!(same_second > 0, "mtime ahead: never HEAD and GET in one second in 20 tries");
    }

    /// §8.8.2 and §13.1.3-5 (issue 18, point 6): an mtime before 1970 has
    /// no HTTP-date (it used to read as 01 Jan 1970 for every such file):
    /// no Last-Modified, only the ETag, and the date preconditions do not
    /// apply to it, from disk and from the cache alike.
    fn rfc9110_8_8_2_no_last_modified_before_1970(e) {
        let site = site_r();
        let whole = r_bytes();
        set_mtime(&site.path("r.bin"), UNIX_EPOCH - Duration::from_secs(144_000_000));
        let epoch = date(0);
        let later = date(1_700_000_000);
        for cfg in [NO_CACHE, ""] {
            let srv = start_or_skip!(e, cfg, &site.root);
            let how = if cfg.is_empty() { "cached" } else { "from disk" };
            for m in ["GET", "HEAD", "GET"] {
                let r = expect(&srv, m, "/r.bin", &[], 200);
                let ctx = format!("{m} /r.bin (mtime 1965, {how})");
                assert_eq!(r.header("last-modified"), None, "{ctx}\n{}", r.describe());
                let tag = hdr(&r, "etag", &ctx).to_string();
                let nm = expect(&srv, m, "/r.bin", &[("If-None-Match", &tag)], 304);
                assert_eq!(nm.header("last-modified"), None, "{ctx}: the 304\n{}", nm.describe());
            }
            for d in [&epoch, &later] {
                let f = [("If-Modified-Since", d.as_str())];
                assert_whole(&ask(&srv, "GET", "/r.bin", &f), &whole, &format!("{} ({how})", what("GET", "/r.bin", &f)));
                let f = [("If-Unmodified-Since", d.as_str())];
                assert_whole(&ask(&srv, "GET", "/r.bin", &f), &whole, &format!("{} ({how})", what("GET", "/r.bin", &f)));
                let f = [("Range", "bytes=-100"), ("If-Range", d.as_str())];
                assert_whole(&ask(&srv, "GET", "/r.bin", &f), &whole, &format!("{} ({how})", what("GET", "/r.bin", &f)));
            }
        }
    }

    // -----------------------------------------------------------------------
    // §13.2 Evaluation
    // -----------------------------------------------------------------------

    /// §13.2.1: "A server MUST ignore all received preconditions if its
    /// response to the same request without those conditions ... would have
    /// been a status code other than a 2xx (Successful) or 412".
    fn rfc9110_13_2_1_preconditions_ignored_when_the_answer_would_be_404_or_301(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let old = date(784_111_777);
        for fields in [
            vec![("If-Match", "\"x\"")],
            vec![("If-Unmodified-Since", old.as_str())],
            vec![("If-None-Match", "*")],
            vec![("If-Match", "\"x\""), ("Range", "bytes=0-0")],
        ] {
            let r = expect(&srv, "GET", "/missing.txt", &fields, 404);
            assert_eq!(r.body_str(), NOT_FOUND_HTML, "{}", what("GET", "/missing.txt", &fields));
            expect(&srv, "HEAD", "/missing.txt", &fields, 404);
            let r = expect(&srv, "GET", "/sub", &fields, 301);
            assert_eq!(r.header("location"), Some("/sub/"));
        }
    }

    /// §13.2.2 steps 1 and 3: If-Match is evaluated before If-None-Match;
    /// its failure (412) wins over a matching If-None-Match (304).
    fn rfc9110_13_2_2_if_match_before_if_none_match(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (tag, _) = validators(&srv, "/r.bin", &[]);
        for m in ["GET", "HEAD"] {
            expect(&srv, m, "/r.bin", &[("If-None-Match", &tag), ("If-Match", "\"x\"")], 412);
            expect(&srv, m, "/r.bin", &[("If-Match", &tag), ("If-None-Match", &tag)], 304);
        }
    }

    /// §13.2.2 step 2: If-Unmodified-Since is looked at only when there is
    /// no If-Match.
    fn rfc9110_13_2_2_if_match_present_skips_if_unmodified_since(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (tag, _) = validators(&srv, "/r.bin", &[]);
        let old = date(784_111_777);
        expect(&srv, "GET", "/r.bin", &[("If-Match", &tag), ("If-Unmodified-Since", &old)], 200);
        expect(&srv, "GET", "/r.bin", &[("If-Match", "*"), ("If-Unmodified-Since", &old)], 200);
        expect(&srv, "GET", "/r.bin", &[("If-Unmodified-Since", &old)], 412);
    }

    /// §13.2.2 step 4: If-Modified-Since is looked at only when there is no
    /// If-None-Match.
    fn rfc9110_13_2_2_if_none_match_present_skips_if_modified_since(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (_, lm) = validators(&srv, "/r.bin", &[]);
        let r = expect(&srv, "GET", "/r.bin", &[("If-None-Match", "\"other\""), ("If-Modified-Since", &lm)], 200);
        assert_bytes_eq(&r.body, &r_bytes(), "If-None-Match mismatch + If-Modified-Since match");
        expect(&srv, "GET", "/r.bin", &[("If-Modified-Since", &lm)], 304);
    }

    /// §13.2.2 step 5: Range is considered only after the preconditions: a
    /// matching If-None-Match is 304, a failing If-Match 412, a holding one
    /// lets the range through.
    fn rfc9110_13_2_2_preconditions_before_range(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let (tag, lm) = validators(&srv, "/r.bin", &[]);
        expect(&srv, "GET", "/r.bin", &[("Range", "bytes=0-9"), ("If-None-Match", &tag)], 304);
        expect(&srv, "GET", "/r.bin", &[("Range", "bytes=0-9"), ("If-Modified-Since", &lm)], 304);
        expect(&srv, "GET", "/r.bin", &[("Range", "bytes=0-9"), ("If-Match", "\"x\"")], 412);
        expect(&srv, "GET", "/r.bin", &[("Range", "bytes=5000-"), ("If-Match", "\"x\"")], 412);
        expect(&srv, "GET", "/r.bin", &[("Range", "bytes=5000-"), ("If-None-Match", &tag)], 304);
        let f = [("Range", "bytes=0-9"), ("If-Match", tag.as_str())];
        assert_206(&ask(&srv, "GET", "/r.bin", &f), 0, 9, &r_bytes(), &what("GET", "/r.bin", &f));
    }

    // -----------------------------------------------------------------------
    // §15.4.5 304 Not Modified
    // -----------------------------------------------------------------------

    /// §15.4.5: "The server generating a 304 response MUST generate any of
    /// the following header fields that would have been sent in a 200 (OK)
    /// response to the same request: Content-Location, Date, ETag, and Vary;
    /// Cache-Control and Expires". No content; the connection goes on.
    fn rfc9110_15_4_5_304_carries_etag_last_modified_cache_control_vary_and_date(e) {
        let v = variants();
        let extra = "[[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=60\" }\n";
        let srv = start_or_skip!(e, extra, &v.site.root);
        for ae in [None, Some("gzip")] {
            let f: Vec<(&str, &str)> = ae.map(|a| ("Accept-Encoding", a)).into_iter().collect();
            let ok = expect(&srv, "GET", "/x.css", &f, 200);
            let ctx = what("GET", "/x.css", &f);
            let tag = hdr(&ok, "etag", &ctx).to_string();
            assert_eq!(ok.header("cache-control"), Some("max-age=60"), "{ctx}: the rule's Cache-Control\n{}", ok.describe());
            let mut f2 = f.clone();
            f2.push(("If-None-Match", &tag));
            for m in ["GET", "HEAD"] {
                let r = expect(&srv, m, "/x.css", &f2, 304);
                let ctx = what(m, "/x.css", &f2);
                assert_eq!(r.header("etag"), ok.header("etag"), "{ctx}: ETag\n{}", r.describe());
                assert_eq!(r.header("last-modified"), ok.header("last-modified"), "{ctx}: Last-Modified\n{}", r.describe());
                assert_eq!(r.header("cache-control"), Some("max-age=60"), "{ctx}: Cache-Control\n{}", r.describe());
                assert_vary(&r, &ctx);
                assert!(r.header("content-encoding").is_none() || ae.is_some(), "{ctx}");
            }
            // The next request on the same connection gets its full answer:
            // the 304 had no content.
            let mut c = srv.connect();
            let r = c.roundtrip(raw("GET", "/x.css", &f2, false).as_bytes());
            check_any(&r, &ctx);
            assert_status(&r, 304, &ctx);
            let r = c.roundtrip(raw("GET", "/x.css", &f, false).as_bytes());
            assert_status(&r, 200, "GET /x.css right after a 304 on the same connection");
            assert_variant(&r, &v, ae, "GET /x.css right after a 304 on the same connection");
            let r = c.roundtrip(raw("GET", "/big.bin", &[], true).as_bytes());
            assert_bytes_eq(&r.body, &big_bytes(), "GET /big.bin after a 304 and a 200");
            c.expect_closed("after Connection: close");
        }
    }

    // -----------------------------------------------------------------------
    // §14 Range requests
    // -----------------------------------------------------------------------

    /// §14.1.2 int-range `first-last`: 206 with Content-Range, exactly those
    /// bytes, and the 200's validators and type.
    fn rfc9110_14_1_2_first_last_range(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        let ok = expect(&srv, "GET", "/r.bin", &[], 200);
        for (v, a, b) in [("bytes=10-19", 10, 19), ("bytes=0-0", 0, 0), ("bytes=999-999", 999, 999), ("bytes=0-999", 0, 999)] {
            let r = ask(&srv, "GET", "/r.bin", &[("Range", v)]);
            let ctx = what("GET", "/r.bin", &[("Range", v)]);
            assert_206(&r, a, b, &whole, &ctx);
            for name in ["etag", "last-modified", "content-type", "accept-ranges"] {
                assert_eq!(r.header(name), ok.header(name), "{ctx}: {name} differs from the 200's");
            }
        }
    }

    /// §14.1.2: a last-pos absent or past the end means "to the end".
    fn rfc9110_14_1_2_open_ended_range(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        for (v, a) in [("bytes=990-", 990), ("bytes=0-", 0), ("bytes=500-1000", 500), ("bytes=500-99999999999999999999999", 500)] {
            assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", v)]), a, 999, &whole, v);
        }
    }

    /// §14.1.2 suffix-range: the last N bytes; a suffix longer than the file
    /// is the whole file (as a 206).
    fn rfc9110_14_2_suffix_range(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", "bytes=-7")]), 993, 999, &whole, "bytes=-7");
        assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", "bytes=-1")]), 999, 999, &whole, "bytes=-1");
        assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", "bytes=-1000")]), 0, 999, &whole, "bytes=-1000");
        assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", "bytes=-5000")]), 0, 999, &whole, "bytes=-5000");
    }

    /// §14.1: "range-unit ... case-insensitive", and OWS around list members.
    fn rfc9110_14_1_range_unit_is_case_insensitive(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        for v in ["Bytes=0-9", "BYTES=0-9", "bytes=0-9 ,", "bytes= ,0-9"] {
            assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", v)]), 0, 9, &whole, v);
        }
    }

    /// §14.2: "A server MAY ignore the Range header field" when it is not a
    /// valid ranges-specifier (or an unknown unit): the whole file, 200.
    fn rfc9110_14_2_invalid_range_is_ignored(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        for v in ["bytes=5-1", "bytes=abc", "bytes=", "bytes", "items=0-1", "0-5", "bytes=1", "bytes=--1", "bytes=0-1;x", "bytes=0x1-2", "bytes=-"] {
            let f = [("Range", v)];
            let r = ask(&srv, "GET", "/r.bin", &f);
            assert_whole(&r, &whole, &what("GET", "/r.bin", &f));
            assert_eq!(r.header("accept-ranges"), Some("bytes"));
        }
    }

    /// §5.3: Range is not a list field, so two Range lines cannot be
    /// combined; which one was meant is unknown, and both are ignored.
    fn rfc9110_5_3_two_range_fields_are_ignored(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let f = [("Range", "bytes=0-1"), ("Range", "bytes=5-6")];
        let r = ask(&srv, "GET", "/r.bin", &f);
        assert_whole(&r, &r_bytes(), &what("GET", "/r.bin", &f));
    }

    /// §14.2: "A server MUST ignore a Range header field received with a
    /// request method that is unrecognized or for which range handling is
    /// not defined" -- Range is defined for GET only; HEAD gets the 200's
    /// headers.
    fn rfc9110_14_2_head_with_range_is_200(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        for v in ["bytes=0-9", "bytes=0-1,5-6", "bytes=5000-"] {
            let r = expect(&srv, "HEAD", "/r.bin", &[("Range", v)], 200);
            let ctx = what("HEAD", "/r.bin", &[("Range", v)]);
            assert_eq!(r.header("content-length"), Some("1000"), "{ctx}");
            assert!(r.header("content-range").is_none(), "{ctx}: Content-Range\n{}", r.describe());
            assert_eq!(r.header("content-type"), Some("application/octet-stream"), "{ctx}");
        }
    }

    /// §15.5.17: a valid range set that no byte satisfies is 416 with
    /// `Content-Range: bytes */LEN`; the connection goes on.
    fn rfc9110_15_5_17_unsatisfiable_is_416_with_content_range(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        for v in ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=1000-1000,2000-", "bytes=99999999999999999999999-"] {
            let r = c.roundtrip(raw("GET", "/r.bin", &[("Range", v)], false).as_bytes());
            let ctx = what("GET", "/r.bin", &[("Range", v)]);
            check_common(&r, &ctx);
            assert_status(&r, 416, &ctx);
            assert_eq!(r.header("content-range"), Some("bytes */1000"), "{ctx}\n{}", r.describe());
        }
        let r = c.roundtrip(raw("GET", "/r.bin", &[], true).as_bytes());
        assert_whole(&r, &r_bytes(), "GET after several 416s on one connection");
    }

    /// §14.2: members that cannot be satisfied are dropped when others can;
    /// one satisfiable range left is a single-part 206.
    fn rfc9110_14_1_1_unsatisfiable_members_are_dropped(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        assert_206(&ask(&srv, "GET", "/r.bin", &[("Range", "bytes=5000-6000,0-4")]), 0, 4, &whole, "bytes=5000-6000,0-4");
        let r = ask(&srv, "GET", "/r.bin", &[("Range", "bytes=0-4,2000-,-3")]);
        assert_parts(&parts(&r, "bytes=0-4,2000-,-3"), &[(0, 4), (997, 999)], &whole, "application/octet-stream", "bytes=0-4,2000-,-3");
    }

    /// §14.6: several ranges are one `multipart/byteranges` body, whose
    /// parts a MIME parser reads back with their Content-Type, Content-Range
    /// and exactly the bytes asked, in the order asked.
    fn rfc9110_14_6_multipart_byteranges_parses_with_a_mime_parser(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        for (v, want) in [
            ("bytes=0-9,100-199,-5", vec![(0, 9), (100, 199), (995, 999)]),
            ("bytes=500-509, 0-0", vec![(500, 509), (0, 0)]),
            ("bytes=0-10,5-15", vec![(0, 10), (5, 15)]),
            ("bytes=998-,0-1", vec![(998, 999), (0, 1)]),
        ] {
            let r = ask(&srv, "GET", "/r.bin", &[("Range", v)]);
            check_common(&r, v);
            assert_parts(&parts(&r, v), &want, &whole, "application/octet-stream", v);
            assert!(r.header("etag").is_some(), "{v}: 206 without the 200's ETag (§15.3.7)");
        }
        // A text file: each part carries the file's own Content-Type.
        let css = STYLE_CSS.as_bytes();
        let r = ask(&srv, "GET", "/style.css", &[("Range", "bytes=0-3,-4")]);
        let n = css.len();
        assert_parts(&parts(&r, "style.css"), &[(0, 3), (n - 4, n - 1)], css, CSS_TYPE, "GET /style.css bytes=0-3,-4");
    }

    /// §14.2: "a server MAY ignore ... a ranges-specifier with more than two
    /// overlapping ranges"; tandem (like nginx) sends the whole file when the
    /// ranges add up to more than the file.
    fn rfc9110_14_2_ranges_adding_up_to_more_than_the_file_are_whole(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        for v in ["bytes=0-,0-", "bytes=0-600,400-999", "bytes=-1000,0-0", "bytes=0-499,0-499,0-499"] {
            assert_whole(&ask(&srv, "GET", "/r.bin", &[("Range", v)]), &whole, v);
        }
    }

    /// `max_ranges` (default 32): exactly that many ranges is a 206 with that
    /// many parts; one more is the whole file.
    fn rfc9110_14_2_max_ranges_exactly_is_206_one_more_is_200(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        let rs: Vec<(usize, usize)> = (0..33).map(|i| (i * 30, i * 30 + 9)).collect();
        let v32 = range_value(&rs[..32]);
        let r = ask(&srv, "GET", "/r.bin", &[("Range", &v32)]);
        assert_parts(&parts(&r, "32 ranges"), &rs[..32], &whole, "application/octet-stream", "32 ranges");
        let v33 = range_value(&rs);
        assert_whole(&ask(&srv, "GET", "/r.bin", &[("Range", &v33)]), &whole, "33 ranges (max_ranges 32)");
        drop(srv);
        let srv = start_or_skip!(e, "max_ranges = 3", &site.root);
        let r = ask(&srv, "GET", "/r.bin", &[("Range", &range_value(&rs[..3]))]);
        assert_parts(&parts(&r, "3 ranges, max 3"), &rs[..3], &whole, "application/octet-stream", "3 ranges, max 3");
        assert_whole(&ask(&srv, "GET", "/r.bin", &[("Range", &range_value(&rs[..4]))]), &whole, "4 ranges (max_ranges 3)");
    }

    /// `max_ranges = 0` turns ranges off: no Accept-Ranges: bytes, and a
    /// Range gets the whole file (§14.3: a server that does not support
    /// ranges ignores the field).
    fn rfc9110_14_3_max_ranges_0_turns_ranges_off(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "max_ranges = 0", &site.root);
        let r = ask(&srv, "GET", "/r.bin", &[("Range", "bytes=0-9")]);
        assert_whole(&r, &r_bytes(), "Range with max_ranges = 0");
        assert_ne!(r.header("accept-ranges"), Some("bytes"), "Accept-Ranges: bytes with ranges off\n{}", r.describe());
        expect(&srv, "GET", "/r.bin", &[("Range", "bytes=5000-")], 200);
    }

    /// §14.1.1: an empty file has no byte to range over; tandem ignores the
    /// Range (a 206 of nothing or a 416 helps no one).
    fn rfc9110_14_1_1_range_on_an_empty_file_is_200(e) {
        let site = Site::new();
        site.write("empty.txt", b"");
        let srv = start_or_skip!(e, "", &site.root);
        for v in ["bytes=0-0", "bytes=-1", "bytes=0-"] {
            let r = expect(&srv, "GET", "/empty.txt", &[("Range", v)], 200);
            assert_eq!(r.header("content-length"), Some("0"), "{v}");
        }
    }

    /// A range in the middle of a file of several MiB, byte for byte, and
    /// a multipart response over it.
    fn rfc9110_14_1_2_range_in_the_middle_of_a_large_file(e) {
        let site = Site::new();
        let len = 6 * 1024 * 1024 + 777;
        let whole = pseudo_random(len, 0x6c61_7267_6500_0001);
        site.write("large.bin", &whole);
        let srv = start_or_skip!(e, "", &site.root);
        let (a, b) = (2_500_001, 4_600_000);
        let v = format!("bytes={a}-{b}");
        assert_206(&ask(&srv, "GET", "/large.bin", &[("Range", &v)]), a, b, &whole, &v);
        let rs = [(1, 1_000_000), (3_000_000, 3_000_000), (len - 2_000_000, len - 1)];
        let r = ask(&srv, "GET", "/large.bin", &[("Range", &range_value(&rs))]);
        assert_parts(&parts(&r, "large multipart"), &rs, &whole, "application/octet-stream", "large multipart");
    }

    /// Offsets past 4 GiB (a sparse file of 5 GiB): single and multipart
    /// ranges there, Content-Range with 64-bit numbers, the right bytes.
    fn rfc9110_14_1_2_ranges_past_4_gib_of_a_sparse_file(e) {
        let site = Site::new();
        let len: u64 = 5 << 30;
        let at: u64 = (9 << 29) + 3;
        let marker = b"MARKER-PAST-4GIB";
        {
            use std::io::{Seek, SeekFrom};
            let mut f = fs::File::create(site.path("sparse.bin")).unwrap();
            f.set_len(len).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(marker).unwrap();
            f.seek(SeekFrom::Start(len - 4)).unwrap();
            f.write_all(b"TAIL").unwrap();
        }
        let srv = start_or_skip!(e, "", &site.root);
        let h = expect(&srv, "HEAD", "/sparse.bin", &[], 200);
        assert_eq!(h.header("content-length"), Some(len.to_string().as_str()));
        // Bytes from `at - 3` to `at + 20`, as the file holds them.
        let mut want = vec![0u8; 24];
        want[3..3 + marker.len()].copy_from_slice(marker);
        let v = format!("bytes={}-{}", at - 3, at + 20);
        let r = ask(&srv, "GET", "/sparse.bin", &[("Range", &v)]);
        assert_status(&r, 206, &v);
        assert_eq!(r.header("content-range").map(str::to_string), Some(format!("bytes {}-{}/{len}", at - 3, at + 20)), "{}", r.describe());
        assert_bytes_eq(&r.body, &want, &v);
        let v = format!("bytes={at}-{},-4", at + marker.len() as u64 - 1);
        let r = ask(&srv, "GET", "/sparse.bin", &[("Range", &v)]);
        let ps = parts(&r, &v);
        assert_eq!(ps.len(), 2, "{v}");
        assert_eq!(ps[0].content_range.as_deref().map(str::to_string), Some(format!("bytes {at}-{}/{len}", at + marker.len() as u64 - 1)));
        assert_eq!(ps[0].body, marker, "{v}: part 0");
        assert_eq!(ps[1].content_range.as_deref().map(str::to_string), Some(format!("bytes {}-{}/{len}", len - 4, len - 1)));
        assert_eq!(ps[1].body, b"TAIL", "{v}: part 1");
    }

    /// `max_ranges = 1024` (the most allowed): 1024 parts over a large file,
    /// 2049 pieces of body for the engine to send, every one in place.
    fn rfc9110_14_6_1024_parts_at_max_ranges_1024(e) {
        let site = Site::new();
        let len = 6 * 1024 * 1024;
        let whole = pseudo_random(len, 0x3130_3234_0000_0001);
        site.write("large.bin", &whole);
        let srv = start_or_skip!(e, "max_ranges = 1024\nmax_header_size = 65536", &site.root);
        let rs: Vec<(usize, usize)> = (0..1024).map(|i| (i * 6000 + i % 7, i * 6000 + 99 + i % 7)).collect();
        let v = range_value(&rs);
        let r = ask(&srv, "GET", "/large.bin", &[("Range", &v)]);
        check_common(&r, "1024 ranges");
        assert_parts(&parts(&r, "1024 ranges"), &rs, &whole, "application/octet-stream", "1024 ranges");
        let rs2: Vec<(usize, usize)> = (0..1025).map(|i| (i * 10, i * 10 + 1)).collect();
        assert_whole(&ask(&srv, "GET", "/large.bin", &[("Range", &range_value(&rs2))]), &whole, "1025 ranges (max 1024)");
    }

    // -----------------------------------------------------------------------
    // The way clients hit it
    // -----------------------------------------------------------------------

    /// RFC 9112 §9.3.2: conditional and range requests pipelined in one
    /// write are answered in order, each one right.
    fn rfc9112_9_3_2_pipelined_conditional_and_range_requests(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        let (tag, lm) = validators(&srv, "/r.bin", &[]);
        let reqs: Vec<(&str, Fields)> = vec![
            ("GET", vec![("If-None-Match", &tag)]),
            ("GET", vec![("Range", "bytes=0-9")]),
            ("GET", vec![("Range", "bytes=0-1,5-6")]),
            ("GET", vec![("If-Match", "\"nope\"")]),
            ("GET", vec![("Range", "bytes=5000-")]),
            ("HEAD", vec![("Range", "bytes=0-9")]),
            ("GET", vec![("Range", "bytes=0-9"), ("If-Range", "\"nope\"")]),
            ("GET", vec![("If-Modified-Since", &lm)]),
            ("HEAD", vec![("If-None-Match", &tag)]),
            ("GET", vec![("Range", "bytes=-3"), ("If-Range", &tag)]),
            ("GET", vec![]),
        ];
        let mut all = String::new();
        for (i, (m, f)) in reqs.iter().enumerate() {
            all.push_str(&raw(m, "/r.bin", f, i == reqs.len() - 1));
        }
        let mut c = srv.connect();
        c.send(all.as_bytes());
        let mut got = Vec::new();
        for (m, f) in &reqs {
            let r = c.read_response(m);
            check_any(&r, &what(m, "/r.bin", f));
            got.push(r);
        }
        c.expect_closed("after the last pipelined request (Connection: close)");
        let ctx = |i: usize| format!("pipelined #{i}: {}", what(reqs[i].0, "/r.bin", &reqs[i].1));
        assert_status(&got[0], 304, &ctx(0));
        assert_206(&got[1], 0, 9, &whole, &ctx(1));
        assert_parts(&parts(&got[2], &ctx(2)), &[(0, 1), (5, 6)], &whole, "application/octet-stream", &ctx(2));
        assert_status(&got[3], 412, &ctx(3));
        assert_status(&got[4], 416, &ctx(4));
        assert_eq!(got[4].header("content-range"), Some("bytes */1000"), "{}", ctx(4));
        assert_status(&got[5], 200, &ctx(5));
        assert_eq!(got[5].header("content-length"), Some("1000"), "{}", ctx(5));
        assert_whole(&got[6], &whole, &ctx(6));
        assert_status(&got[7], 304, &ctx(7));
        assert_status(&got[8], 304, &ctx(8));
        assert_206(&got[9], 997, 999, &whole, &ctx(9));
        assert_whole(&got[10], &whole, &ctx(10));
    }

    /// A Range request that arrives one byte per write.
    fn rfc9110_14_2_range_request_split_into_one_byte_writes(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let whole = r_bytes();
        let (tag, _) = validators(&srv, "/r.bin", &[]);
        let mut c = srv.connect();
        let one = raw("GET", "/r.bin", &[("If-Range", &tag), ("Range", "bytes=100-199")], false);
        for b in one.as_bytes() {
            c.send(std::slice::from_ref(b));
        }
        assert_206(&c.read_response("GET"), 100, 199, &whole, "Range request in 1-byte writes");
        let two = raw("GET", "/r.bin", &[("Range", "bytes=100-199,-10")], true);
        for b in two.as_bytes() {
            c.send(std::slice::from_ref(b));
        }
        let r = c.read_response("GET");
        assert_parts(&parts(&r, "multi-range in 1-byte writes"), &[(100, 199), (990, 999)], &whole, "application/octet-stream", "multi-range in 1-byte writes");
        c.expect_closed("after Connection: close");
    }

    /// A multipart response of several MiB to a client with a small receive
    /// buffer that reads a little at a time: every part arrives whole.
    fn rfc9110_14_6_multipart_to_a_slow_reader(e) {
        let site = Site::new();
        let len = 5 * 1024 * 1024 + 3;
        let whole = pseudo_random(len, 0x736c_6f77_0000_0001);
        site.write("large.bin", &whole);
        let srv = start_or_skip!(e, "max_ranges = 512", &site.root);
        let rs = [(7, 1_200_006), (2_000_000, 2_000_009), (2_500_000, 3_700_000), (len - 900_000, len - 1)];
        let mut c = connect_with_rcvbuf(srv.addr(), 4096);
        c.send(raw("GET", "/large.bin", &[("Range", &range_value(&rs))], true).as_bytes());
        let r = read_slowly(&mut c, "slow multipart");
        check_common(&r, "slow multipart");
        assert_parts(&parts(&r, "slow multipart"), &rs, &whole, "application/octet-stream", "slow multipart");
        // 300 small parts, then the same again pipelined behind it, on a
        // slow connection: many short pieces per send, and a response that
        // starts while the previous one is still queued.
        let many: Vec<(usize, usize)> = (0..300).map(|i| (i * 17_000 + i, i * 17_000 + 2_999 + i)).collect();
        let v = range_value(&many);
        let mut c = connect_with_rcvbuf(srv.addr(), 4096);
        let two = raw("GET", "/large.bin", &[("Range", &v)], false) + &raw("GET", "/large.bin", &[("Range", &v)], true);
        c.send(two.as_bytes());
        for i in 0..2 {
            let ctx = format!("slow pipelined multipart #{i}");
            let r = c.read_response("GET");
            check_common(&r, &ctx);
            assert_parts(&parts(&r, &ctx), &many, &whole, "application/octet-stream", &ctx);
        }
        c.expect_closed("after Connection: close");
    }

    // -----------------------------------------------------------------------
    // §12.5.3 Accept-Encoding and precompressed siblings
    // -----------------------------------------------------------------------

    /// §12.5.3, §8.4: a client that accepts gzip gets `x.css.gz` with
    /// Content-Encoding: gzip, the original's Content-Type, and Vary.
    fn rfc9110_12_5_3_gzip_sibling_served_when_accepted(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        for ae in ["gzip", "x-gzip", "GZIP", "gzip;q=1.0", "deflate, gzip"] {
            let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", ae)], 200);
            let ctx = format!("GET /x.css Accept-Encoding: {ae}");
            assert_variant(&r, &v, Some("gzip"), &ctx);
            assert_vary(&r, &ctx);
            assert_eq!(r.header("content-length"), Some(v.gz.len().to_string().as_str()), "{ctx}");
            let h = expect(&srv, "HEAD", "/x.css", &[("Accept-Encoding", ae)], 200);
            for name in ["content-length", "content-encoding", "content-type", "etag", "vary"] {
                assert_eq!(h.header(name), r.header(name), "HEAD {ctx}: {name}");
            }
        }
    }

    /// §12.5.3: the coding with the highest q wins.
    fn rfc9110_12_5_3_q_values_choose_the_coding(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        for (ae, want) in [
            ("br;q=0.5, gzip;q=0.9", "gzip"),
            ("br, gzip;q=0.9", "br"),
            ("gzip;q=0.2, zstd;q=0.3, br;q=0.1", "zstd"),
            ("zstd", "zstd"),
            ("br ; q=0.4 , gzip ; q=0.41", "gzip"),
            ("gzip, deflate, br, zstd", "br"),
        ] {
            let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", ae)], 200);
            let ctx = format!("Accept-Encoding: {ae}");
            assert_variant(&r, &v, Some(want), &ctx);
            assert_vary(&r, &ctx);
        }
    }

    /// §12.5.3: "q=0" means "not acceptable".
    fn rfc9110_12_5_3_q_0_refuses_a_coding(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        for (ae, want) in [
            ("gzip;q=0", None),
            ("br;q=0, zstd;q=0, gzip;q=0", None),
            ("br;q=0, gzip", Some("gzip")),
            ("*, br;q=0", Some("zstd")),
            ("*;q=0, gzip", Some("gzip")),
            ("gzip;q=0.000", None),
        ] {
            let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", ae)], 200);
            let ctx = format!("Accept-Encoding: {ae}");
            assert_variant(&r, &v, want, &ctx);
            assert_vary(&r, &ctx);
        }
    }

    /// §12.5.3: `identity` and `*`: identity preferred over a coding with a
    /// lower q, `*` names every coding not listed, no field means no coding.
    fn rfc9110_12_5_3_identity_and_star(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        for (ae, want) in [
            (Some("identity"), None),
            (Some("*"), Some("br")),
            (Some("gzip;q=0.5, identity"), None),
            (Some("identity;q=0.1, gzip;q=0.5"), Some("gzip")),
            (Some("identity;q=0, gzip;q=0.1"), Some("gzip")),
            (Some(""), None),
            (None, None),
        ] {
            let f: Vec<(&str, &str)> = ae.map(|a| ("Accept-Encoding", a)).into_iter().collect();
            let r = expect(&srv, "GET", "/x.css", &f, 200);
            let ctx = what("GET", "/x.css", &f);
            assert_variant(&r, &v, want, &ctx);
            assert_vary(&r, &ctx);
        }
    }

    /// §12.5.5: every response for a path that has a sibling varies by
    /// Accept-Encoding -- the identity 200, the coded 200, 206, 304, 412,
    /// 416 and HEAD; a path without one does not.
    fn rfc9110_12_5_5_vary_on_every_response_for_a_path_with_a_sibling(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        let (tag, _) = validators(&srv, "/x.css", &[]);
        let (gtag, _) = validators(&srv, "/x.css", &[("Accept-Encoding", "gzip")]);
        let cases: Vec<(&str, Fields, u16)> = vec![
            ("GET", vec![], 200),
            ("GET", vec![("Accept-Encoding", "gzip")], 200),
            ("GET", vec![("Accept-Encoding", "identity")], 200),
            ("HEAD", vec![], 200),
            ("GET", vec![("Range", "bytes=0-9")], 206),
            ("GET", vec![("Range", "bytes=0-9"), ("Accept-Encoding", "gzip")], 206),
            ("GET", vec![("Range", "bytes=0-1,3-4")], 206),
            ("GET", vec![("If-None-Match", &tag)], 304),
            ("GET", vec![("If-None-Match", &gtag), ("Accept-Encoding", "gzip")], 304),
            ("GET", vec![("If-Match", "\"x\"")], 412),
            ("GET", vec![("Range", "bytes=99999-")], 416),
        ];
        for (m, f, status) in &cases {
            let r = expect(&srv, m, "/x.css", f, *status);
            assert_vary(&r, &what(m, "/x.css", f));
        }
        for (m, f, status) in &cases {
            let f: Vec<(&str, &str)> = f.iter().filter(|(n, _)| !n.starts_with("If-")).cloned().collect();
            let status = if *status == 304 || *status == 412 { 200 } else { *status };
            let r = expect(&srv, m, "/plain.css", &f, status);
            assert_no_vary(&r, &what(m, "/plain.css", &f));
        }
    }

    /// §8.8.3: each variant has its own ETag; If-None-Match compares with
    /// the variant the request would get.
    fn rfc9110_8_8_3_etag_distinct_per_variant(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        let mut tags = Vec::new();
        for ae in ["identity", "br", "zstd", "gzip"] {
            let (t, _) = validators(&srv, "/x.css", &[("Accept-Encoding", ae)]);
            assert_strong_etag(&t, ae);
            assert!(!tags.contains(&t), "Accept-Encoding: {ae}: ETag {t} already used by another variant {tags:?}");
            tags.push(t);
        }
        let (id, gz) = (&tags[0], &tags[3]);
        expect(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip"), ("If-None-Match", gz)], 304);
        let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip"), ("If-None-Match", id)], 200);
        assert_variant(&r, &v, Some("gzip"), "gzip with the identity's tag in If-None-Match");
        let r = expect(&srv, "GET", "/x.css", &[("If-None-Match", gz)], 200);
        assert_variant(&r, &v, None, "identity with the gzip's tag in If-None-Match");
        expect(&srv, "GET", "/x.css", &[("If-None-Match", id)], 304);
        expect(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip"), ("If-Match", id)], 412);
    }

    /// §14.1: a range is over the selected representation, the variant's
    /// bytes; If-Range compares with the variant's tag.
    fn rfc9110_14_1_range_applies_to_the_variants_bytes(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        let ae = ("Accept-Encoding", "gzip");
        let r = ask(&srv, "GET", "/x.css", &[ae, ("Range", "bytes=0-9")]);
        assert_206(&r, 0, 9, &v.gz, "gzip variant bytes=0-9");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{}", r.describe());
        assert_eq!(r.header("content-type"), Some(CSS_TYPE));
        let n = v.gz.len();
        let r = ask(&srv, "GET", "/x.css", &[ae, ("Range", "bytes=-8")]);
        assert_206(&r, n - 8, n - 1, &v.gz, "gzip variant bytes=-8");
        let (gtag, _) = validators(&srv, "/x.css", &[ae]);
        let (itag, _) = validators(&srv, "/x.css", &[]);
        let r = ask(&srv, "GET", "/x.css", &[ae, ("Range", "bytes=5-6"), ("If-Range", &gtag)]);
        assert_206(&r, 5, 6, &v.gz, "gzip variant If-Range with its own tag");
        let r = ask(&srv, "GET", "/x.css", &[ae, ("Range", "bytes=5-6"), ("If-Range", &itag)]);
        assert_status(&r, 200, "gzip variant If-Range with the identity's tag");
        assert_variant(&r, &v, Some("gzip"), "gzip variant If-Range with the identity's tag");
        let r = ask(&srv, "GET", "/x.css", &[ae, ("Range", &format!("bytes={n}-"))]);
        assert_status(&r, 416, "gzip variant past its end");
        assert_eq!(r.header("content-range").map(str::to_string), Some(format!("bytes */{n}")));
        // Several ranges of a variant: the whole variant (tests/metadata.rs).
        let r = ask(&srv, "GET", "/x.css", &[ae, ("Range", "bytes=0-1,4-5")]);
        assert_status(&r, 200, "gzip variant two ranges");
        assert_variant(&r, &v, Some("gzip"), "gzip variant two ranges");
    }

    /// A sibling older than its source is from an earlier deploy: never
    /// sent, and (being absent) no reason for Vary; a fresh one next to it
    /// still is.
    fn rfc9110_12_5_3_sibling_older_than_its_source_is_ignored(e) {
        let v = variants();
        let site = &v.site;
        // All siblings stale: 1 s older than x.css.
        for s in ["x.css.br", "x.css.zst", "x.css.gz"] {
            set_mtime(&site.path(s), t0() - Duration::from_secs(1));
        }
        // y.css: a stale .br and a fresh .gz.
        site.write("y.css", &v.css);
        site.write("y.css.br", &v.br);
        site.write("y.css.gz", &v.gz);
        set_mtime(&site.path("y.css"), t0());
        // The last nanosecond of the second before: stale (whole seconds
        // are compared; the same second would be fresh).
        set_mtime(&site.path("y.css.br"), UNIX_EPOCH + Duration::new(1_699_999_999, 999_999_999));
        set_mtime(&site.path("y.css.gz"), t0());
        let srv = start_or_skip!(e, "", &site.root);
        for ae in ["br", "gzip", "zstd", "*", "br, zstd, gzip"] {
            let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", ae)], 200);
            let ctx = format!("GET /x.css (stale siblings) Accept-Encoding: {ae}");
            assert_variant(&r, &v, None, &ctx);
            assert_no_vary(&r, &ctx);
        }
        let r = expect(&srv, "GET", "/y.css", &[("Accept-Encoding", "br, gzip")], 200);
        let ctx = "GET /y.css (stale .br, fresh .gz) Accept-Encoding: br, gzip";
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{ctx}\n{}", r.describe());
        assert_bytes_eq(&r.body, &v.gz, ctx);
        assert_vary(&r, ctx);
        let r = expect(&srv, "GET", "/y.css", &[("Accept-Encoding", "br")], 200);
        assert_eq!(r.header("content-encoding"), None, "GET /y.css br only: the stale .br\n{}", r.describe());
        assert_vary(&r, "GET /y.css br only");
    }

    /// Siblings made by the ordinary tools are served (issue 18, point 7):
    /// the real `brotli -k`, `gzip -k` and `zstd -k` (Debian's packages;
    /// `.ci/run` installs them), run on a source whose mtime has a
    /// fraction of a second. Debian's brotli copies the mtime to whole
    /// seconds only, so its `.br` is 0.123 s "older" than the source; the
    /// stale check compares whole seconds and serves it. A sibling from an
    /// earlier second is stale: not served, and logged once at info with
    /// both paths (not once per request). A missing CLI skips its part,
    /// with the reason printed.
    fn rfc9110_12_5_3_siblings_made_by_brotli_gzip_and_zstd_are_served(e) {
        use std::process::{Command, Stdio};
        let tools = [
            ("brotli", "br", ".br", &["-k"][..], &["-d", "-c"][..]),
            ("gzip", "gzip", ".gz", &["-k"][..], &["-d", "-c"][..]),
            ("zstd", "zstd", ".zst", &["-q", "-k"][..], &["-q", "-d", "-c"][..]),
        ];
        let have = |tool: &str| {
            Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        };
        let run = |tool: &str, args: &[&str], file: &Path| {
            let st = Command::new(tool).args(args).arg(file).status().unwrap();
            assert!(st.success(), "{tool} {args:?} {}: {st}", file.display());
        };
        let site = Site::new();
        let css = b"/* made by the ordinary tools */ body { margin: 0; padding: 0 }\n".repeat(40);
        site.write("t.css", &css);
        site.write("old.css", &css);
        site.write("old2.css", &css);
        set_mtime(&site.path("t.css"), t0());
        let mut present = vec![];
        for (tool, coding, suffix, args, _) in tools {
            if !have(tool) {
                skip(&format!("the {tool} CLI is not installed (Debian package {tool}): its sibling is not checked"));
                continue;
            }
            run(tool, args, &site.path("t.css"));
            let sib = site.path(&format!("t.css{suffix}"));
            assert_eq!(
                mtime(&sib).duration_since(UNIX_EPOCH).unwrap().as_secs(),
                1_700_000_000,
                "{tool} -k copies the source's mtime at least to the second"
            );
            present.push((tool, coding, suffix));
        }
        let Some(&(gz_tool, _, gz_suffix)) = present.iter().find(|p| p.0 == "gzip").or(present.first()) else {
            return;
        };
        // Stale: compressed, then the source changed a second later.
        for f in ["old.css", "old2.css"] {
            set_mtime(&site.path(f), t0());
            let args = tools.iter().find(|t| t.0 == gz_tool).unwrap().3;
            run(gz_tool, args, &site.path(f));
            set_mtime(&site.path(f), t0() + Duration::from_secs(1));
        }
        let srv = start_or_skip!(e, "workers = 1\ncache_size = 0\nlog_level = \"info\"", &site.root);
        for &(tool, coding, suffix) in &present {
            let ctx = format!("GET /t.css Accept-Encoding: {coding} (the sibling {tool} -k made)");
            let r = expect(&srv, "GET", "/t.css", &[("Accept-Encoding", coding)], 200);
            assert_eq!(r.header("content-encoding"), Some(coding), "{ctx}\n{}", r.describe());
            assert_bytes_eq(&r.body, &site.read(&format!("t.css{suffix}")), &ctx);
            // And the client's decoder (the same CLI) gets the source back.
            let dargs = tools.iter().find(|t| t.0 == tool).unwrap().4;
            let mut child = Command::new(tool).args(dargs).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(&r.body).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{ctx}: {tool} could not decode it");
            assert_bytes_eq(&out.stdout, &css, &format!("{ctx}, decoded by {tool}"));
        }
        let coding = present.iter().find(|p| p.0 == gz_tool).unwrap().1;
        for _ in 0..3 {
            let r = expect(&srv, "GET", "/old.css", &[("Accept-Encoding", coding)], 200);
            assert_eq!(r.header("content-encoding"), None, "GET /old.css: a stale sibling was sent\n{}", r.describe());
            assert_bytes_eq(&r.body, &css, "GET /old.css (stale sibling)");
        }
        let line = |f: &str| {
            let root = fs::canonicalize(&site.root).unwrap();
            let (sib, src) = (root.join(format!("{f}{gz_suffix}")), root.join(f));
            move |l: &str| l.contains(&format!("{} not served", sib.display())) && l.contains(&format!("than {}'s", src.display()))
        };
        // old2.css after the three requests for old.css: once its line is
        // there (one worker logs in order), every line old.css's requests
        // would make is there too.
        expect(&srv, "GET", "/old2.css", &[("Accept-Encoding", coding)], 200);
        let old2 = line("old2.css");
        assert!(
            srv.wait_stderr_until(IO_TIMEOUT, |t| t.lines().any(&old2)),
            "no info line for the stale old2.css{gz_suffix}:\n{}",
            srv.stderr_text()
        );
        let old = line("old.css");
        let n = srv.stderr_text().lines().filter(|l| old(l)).count();
        assert_eq!(n, 1, "old.css{gz_suffix} stale: logged {n} times in 3 requests, once expected:\n{}", srv.stderr_text());
        assert!(srv.stderr_text().lines().any(|l| old(l) && l.contains(" info ")), "not at info:\n{}", srv.stderr_text());
    }

    /// `precompressed = ["gzip", "br"]`: at equal q the configured order
    /// decides, and zstd (not listed) is never sent.
    fn rfc9110_12_5_3_equal_q_follows_the_precompressed_order(e) {
        let v = variants();
        let srv = start_or_skip!(e, "precompressed = [\"gzip\", \"br\"]", &v.site.root);
        for (ae, want) in [
            ("br, gzip", Some("gzip")),
            ("*", Some("gzip")),
            ("br, gzip;q=0.9", Some("br")),
            ("zstd", None),
            ("zstd, br", Some("br")),
        ] {
            let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", ae)], 200);
            assert_variant(&r, &v, want, &format!("precompressed = [gzip, br], Accept-Encoding: {ae}"));
        }
        drop(srv);
        // Default order: br, zstd, gzip.
        let srv = start_or_skip!(e, "", &v.site.root);
        let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip, zstd, br")], 200);
        assert_variant(&r, &v, Some("br"), "default order, Accept-Encoding: gzip, zstd, br");
        let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", "gzip, zstd")], 200);
        assert_variant(&r, &v, Some("zstd"), "default order, Accept-Encoding: gzip, zstd");
    }

    /// `precompressed = []`: no sibling is ever sent, and no Vary.
    fn rfc9110_12_5_3_precompressed_empty_turns_variants_off(e) {
        let v = variants();
        let srv = start_or_skip!(e, "precompressed = []", &v.site.root);
        for ae in ["gzip", "br", "*", "br, gzip, zstd"] {
            let r = expect(&srv, "GET", "/x.css", &[("Accept-Encoding", ae)], 200);
            let ctx = format!("precompressed = [], Accept-Encoding: {ae}");
            assert_variant(&r, &v, None, &ctx);
            assert_no_vary(&r, &ctx);
        }
    }

    /// A sibling asked for by its own name is a file like any other: its
    /// bytes as they are, no Content-Encoding (a client would decode them).
    fn rfc9110_8_4_sibling_requested_by_name_has_no_content_encoding(e) {
        let v = variants();
        let srv = start_or_skip!(e, "", &v.site.root);
        for (path, bytes) in [("/x.css.gz", &v.gz), ("/x.css.br", &v.br)] {
            let r = expect(&srv, "GET", path, &[("Accept-Encoding", "gzip, br")], 200);
            assert_eq!(r.header("content-encoding"), None, "GET {path}\n{}", r.describe());
            assert_bytes_eq(&r.body, bytes, path);
        }
    }

    /// The index file of a directory, and the SPA fallback, have siblings
    /// too, typed as the original.
    fn rfc9110_12_5_3_index_and_fallback_files_have_siblings_too(e) {
        let site = Site::new();
        let gz = gzip(INDEX_HTML.as_bytes());
        site.write("index.html.gz", &gz);
        set_mtime(&site.path("index.html"), t0());
        set_mtime(&site.path("index.html.gz"), t0());
        let srv = start_or_skip!(e, "fallback = \"index.html\"", &site.root);
        for path in ["/", "/index.html", "/app/route"] {
            let r = expect(&srv, "GET", path, &[("Accept-Encoding", "gzip")], 200);
            let ctx = format!("GET {path} Accept-Encoding: gzip");
            assert_eq!(r.header("content-encoding"), Some("gzip"), "{ctx}\n{}", r.describe());
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{ctx}");
            assert_bytes_eq(&r.body, &gz, &ctx);
            assert_vary(&r, &ctx);
            let r = expect(&srv, "GET", path, &[], 200);
            assert_eq!(r.body_str(), INDEX_HTML, "GET {path}");
            assert_vary(&r, &format!("GET {path}"));
        }
    }

    /// A real client: ureq asks for gzip on its own, gets the real gzip
    /// sibling, and decodes it to exactly the original bytes.
    fn rfc9110_8_4_gzip_sibling_decoded_by_ureq_is_the_original(e) {
        let site = Site::new();
        let text: Vec<u8> = (0..4000).flat_map(|i| format!("line {i}: the quick brown fox\n").into_bytes()).collect();
        site.write("doc.txt", &text);
        site.write("doc.txt.gz", &gzip(&text));
        set_mtime(&site.path("doc.txt"), t0());
        set_mtime(&site.path("doc.txt.gz"), t0() + Duration::from_secs(5));
        let srv = start_or_skip!(e, "", &site.root);
        let url = url(&srv, "/doc.txt");
        let mut resp = ureq_agent(&srv).get(&url).call().unwrap_or_else(|e| panic!("ureq GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.body_mut().with_config().limit(64 << 20).read_to_vec().expect("ureq body");
        assert_bytes_eq(&body, &text, "ureq GET /doc.txt, decoded");
        // And it was the gzip file that went over the wire.
        let r = expect(&srv, "GET", "/doc.txt", &[("Accept-Encoding", "gzip")], 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.body.len() < text.len() / 4, "the .gz sent is {} bytes for {} of text", r.body.len(), text.len());
    }

    /// A real client's conditional GET: the ETag and Last-Modified it got
    /// back as If-None-Match / If-Modified-Since give 304, and no body.
    fn rfc9110_13_1_2_conditional_get_through_ureq(e) {
        let site = site_r();
        let srv = start_or_skip!(e, "", &site.root);
        let agent = ureq_agent(&srv);
        let url = url(&srv, "/r.bin");
        let mut first = agent.get(&url).call().unwrap_or_else(|e| panic!("ureq GET {url}: {e}"));
        assert_eq!(first.status().as_u16(), 200);
        let tag = first.headers().get("etag").expect("ETag").to_str().unwrap().to_string();
        let lm = first.headers().get("last-modified").expect("Last-Modified").to_str().unwrap().to_string();
        assert_bytes_eq(&first.body_mut().read_to_vec().unwrap(), &r_bytes(), "ureq first GET");
        for (name, value) in [("If-None-Match", &tag), ("If-Modified-Since", &lm)] {
            let mut r = agent.get(&url).header(name, value).call().unwrap_or_else(|e| panic!("ureq {name}: {e}"));
            assert_eq!(r.status().as_u16(), 304, "ureq GET with {name}: {value}");
            assert_eq!(r.headers().get("etag").and_then(|v| v.to_str().ok()), Some(tag.as_str()));
            assert!(r.body_mut().read_to_vec().unwrap().is_empty(), "304 with a body");
        }
        // The agent's pooled connection still works after the 304s.
        let mut r = agent.get(&url).header("Range", "bytes=1-2").call().unwrap();
        assert_eq!(r.status().as_u16(), 206);
        assert_eq!(r.body_mut().read_to_vec().unwrap(), &r_bytes()[1..=2]);
    }

    // -----------------------------------------------------------------------
    // Which file: index list, error pages, SPA fallback, rules
    // -----------------------------------------------------------------------

    /// `index = ["index.htm", "index.html"]`: the first that exists.
    fn site_index_list_picks_the_first_that_exists(e) {
        let site = Site::new();
        site.write("both/index.htm", b"BOTH-HTM");
        site.write("both/index.html", b"BOTH-HTML");
        site.write("htmlonly/index.html", b"HTML-ONLY");
        site.write("neither/other.html", b"OTHER");
        let srv = start_or_skip!(e, "index = [\"index.htm\", \"index.html\"]", &site.root);
        assert_eq!(expect(&srv, "GET", "/both/", &[], 200).body_str(), "BOTH-HTM");
        assert_eq!(expect(&srv, "GET", "/htmlonly/", &[], 200).body_str(), "HTML-ONLY");
        assert_eq!(expect(&srv, "GET", "/", &[], 200).body_str(), INDEX_HTML);
        expect(&srv, "GET", "/neither/", &[], 404);
        let r = expect(&srv, "GET", "/both/", &[], 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "index.htm is HTML\n{}", r.describe());
        // Its validators are the index file's: a conditional GET works.
        let tag = hdr(&r, "etag", "GET /both/").to_string();
        expect(&srv, "GET", "/both/", &[("If-None-Match", &tag)], 304);
    }

    /// §15.5.5 / §15.5.4: `error_pages` sets the body of each status; the
    /// 403 of a file the server cannot read gets its page.
    /// Errors the connection answers itself (a method it does not serve, a
    /// malformed request) take their configured page too.
    fn rfc9110_15_5_6_error_pages_for_errors_the_connection_answers(e) {
        let site = Site::new();
        site.write("mna.html", b"<p>MNA-PAGE</p>");
        site.write("bad.html", b"<p>BAD-PAGE</p>");
        let srv = start_or_skip!(e, "error_pages = { 405 = \"mna.html\", 400 = \"bad.html\" }", &site.root);
        let r = expect(&srv, "POST", "/index.html", &[], 405);
        assert_eq!(r.body_str(), "<p>MNA-PAGE</p>", "405 body\n{}", r.describe());
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
        let r = request(srv.addr(), b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert_status(&r, 400, "two Host fields");
        assert_eq!(r.body_str(), "<p>BAD-PAGE</p>", "400 body\n{}", r.describe());
        // A status without a page keeps the built-in one.
        let r = request(srv.addr(), b"BREW /index.html HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_status(&r, 501, "BREW");
        assert!(r.body_str().contains("501 Not Implemented"), "{}", r.describe());
    }

    fn rfc9110_15_5_4_error_pages_per_status(e) {
        let site = Site::new();
        site.write("nf.html", b"<p>NF-PAGE</p>");
        site.write("denied.html", b"<p>DENIED-PAGE</p>");
        site.write("locked.txt", b"LOCKED-CONTENT");
        set_mode(&site.path("locked.txt"), 0o000);
        let mut extra = String::from("error_pages = { 404 = \"nf.html\", 403 = \"denied.html\" }");
        if running_as_root() {
            // Root reads mode-000 files: run the workers as nobody.
            if uid_of_user("nobody").is_none() {
                skip("running as root without a `nobody` user: the 403 cannot be provoked");
                return;
            }
            extra.push_str("\nuser = \"nobody\"\naccess_log = \"off\"");
        }
        let srv = start_or_skip!(e, &extra, &site.root);
        for m in ["GET", "HEAD"] {
            let r = expect(&srv, m, "/missing.html", &[], 404);
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
            assert_eq!(r.header("content-length"), Some("14"), "{m} /missing.html: nf.html's length");
            if m == "GET" {
                assert_eq!(r.body_str(), "<p>NF-PAGE</p>");
            }
        }
        if running_as_root() && uid_of_pid(&srv.pid().to_string()) != uid_of_user("nobody") {
            skip("running as root and the server did not switch to nobody: no 403 check");
            return;
        }
        let r = expect(&srv, "GET", "/locked.txt", &[], 403);
        assert_eq!(r.body_str(), "<p>DENIED-PAGE</p>", "403 body\n{}", r.describe());
        assert!(!r.body_str().contains("LOCKED"));
    }

    /// §15.5.13, §15.5.17: the 412 and 416 this module answers get their
    /// configured error page like any other status, and the 416 keeps its
    /// Content-Range.
    fn rfc9110_15_5_17_412_and_416_bodies_from_error_pages(e) {
        let site = site_r();
        site.write("pf.html", b"<p>PRECONDITION-PAGE</p>");
        site.write("rn.html", b"<p>RANGE-PAGE</p>");
        let srv = start_or_skip!(e, "error_pages = { 412 = \"pf.html\", 416 = \"rn.html\" }", &site.root);
        let r = expect(&srv, "GET", "/r.bin", &[("If-Match", "\"x\"")], 412);
        assert_eq!(r.body_str(), "<p>PRECONDITION-PAGE</p>", "412 body\n{}", r.describe());
        let r = expect(&srv, "GET", "/r.bin", &[("Range", "bytes=5000-")], 416);
        assert_eq!(r.header("content-range"), Some("bytes */1000"), "{}", r.describe());
        assert_eq!(r.body_str(), "<p>RANGE-PAGE</p>", "416 body: error_pages has 416 = \"rn.html\"\n{}", r.describe());
    }

    /// The old key `error_page_404` still sets the 404 body.
    fn rfc9110_15_5_5_error_page_404_old_key(e) {
        let site = Site::new();
        site.write("old-nf.html", b"<p>OLD-KEY-404</p>");
        let srv = start_or_skip!(e, "error_page_404 = \"old-nf.html\"", &site.root);
        let r = expect(&srv, "GET", "/nope", &[], 404);
        assert_eq!(r.body_str(), "<p>OLD-KEY-404</p>");
    }

    /// `fallback = "index.html"`: a missing path without an extension gets
    /// index.html with 200 (and its validators); one with an extension is
    /// still 404.
    fn site_spa_fallback(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "fallback = \"index.html\"", &site.root);
        for path in ["/app/route", "/app", "/deep/a/b/c", "/app/route?x=1"] {
            for m in ["GET", "HEAD"] {
                let r = expect(&srv, m, path, &[], 200);
                assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{m} {path}");
                assert_eq!(r.header("content-length"), Some(INDEX_HTML.len().to_string().as_str()), "{m} {path}");
                if m == "GET" {
                    assert_eq!(r.body_str(), INDEX_HTML, "{m} {path}");
                }
            }
        }
        for path in ["/missing.js", "/app/missing.css", "/img/x.png"] {
            let r = expect(&srv, "GET", path, &[], 404);
            assert_eq!(r.body_str(), NOT_FOUND_HTML, "GET {path}");
        }
        // Real files are still themselves.
        assert_eq!(expect(&srv, "GET", "/style.css", &[], 200).body_str(), STYLE_CSS);
        // The fallback is a representation like any other.
        let (tag, _) = validators(&srv, "/", &[]);
        expect(&srv, "GET", "/app/route", &[("If-None-Match", &tag)], 304);
        let f = [("Range", "bytes=0-4")];
        assert_206(&ask(&srv, "GET", "/app/route", &f), 0, 4, INDEX_HTML.as_bytes(), "GET /app/route bytes=0-4");
    }

    /// `[[rules]]`: every matching rule adds its headers, a later rule's
    /// field replaces an earlier one's; rules are applied to 200, 206 and
    /// 304, never to a 404.
    fn site_rules_later_rule_wins_and_not_on_404(e) {
        let site = Site::new();
        site.write("sub/s.css", STYLE_CSS.as_bytes());
        let extra = "[[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=60\", \"X-First\" = \"one\" }\n\
                     [[rules]]\nmatch = \"/sub/**\"\nheaders = { \"Cache-Control\" = \"no-store\" }\n";
        let srv = start_or_skip!(e, extra, &site.root);
        let r = expect(&srv, "GET", "/style.css", &[], 200);
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "GET /style.css\n{}", r.describe());
        assert_eq!(r.header("x-first"), Some("one"));
        let r = expect(&srv, "GET", "/sub/s.css", &[], 200);
        assert_eq!(r.headers_all("cache-control"), ["no-store"], "GET /sub/s.css: the later rule wins\n{}", r.describe());
        assert_eq!(r.header("x-first"), Some("one"), "GET /sub/s.css: the earlier rule's other field stays");
        let r = ask(&srv, "GET", "/style.css", &[("Range", "bytes=0-3")]);
        assert_status(&r, 206, "GET /style.css bytes=0-3");
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "206: §15.3.7 the 200's Cache-Control\n{}", r.describe());
        let tag = r.header("etag").unwrap().to_string();
        let r = expect(&srv, "GET", "/sub/s.css", &[("If-None-Match", &validators(&srv, "/sub/s.css", &[]).0)], 304);
        assert_eq!(r.header("cache-control"), Some("no-store"), "304 of /sub/s.css\n{}", r.describe());
        expect(&srv, "GET", "/style.css", &[("If-None-Match", &tag)], 304);
        for path in ["/missing.css", "/sub/missing.css"] {
            let r = expect(&srv, "GET", path, &[], 404);
            assert!(r.header("cache-control").is_none() && r.header("x-first").is_none(), "GET {path}: a rule on a 404\n{}", r.describe());
        }
    }
}
