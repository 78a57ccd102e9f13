//! Directory listings (`autoindex = true`): off by default, HTML and JSON
//! forms, ordering, escaping, what is hidden (dotfiles, FIFOs, symlinks out
//! of the root), HEAD, and an index file winning over the listing.

#[macro_use]
mod common;

use common::*;

const ON: &str = "autoindex = true";

/// GET with extra header lines (each ending in CRLF).
fn get_with(srv: &Server, path: &str, headers: &str) -> Response {
    request(
        srv.addr(),
        format!("GET {path} HTTP/1.1\r\nHost: tandem.test\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// A 200 HTML listing of `path` (its title: the path, decoded, escaped);
/// its body.
fn html_listing(srv: &Server, path: &str) -> String {
    html_listing_titled(srv, path, path)
}

fn html_listing_titled(srv: &Server, path: &str, title: &str) -> String {
    let r = get(srv.addr(), path);
    let ctx = format!("GET {path} (autoindex)");
    check_common(&r, &ctx);
    assert_status(&r, 200, &ctx);
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{ctx}: Content-Type\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("vary"),
        Some("Accept"),
        "{ctx}: Vary\n{}",
        r.describe()
    );
    let body = r.body_str();
    assert!(
        body.starts_with("<!DOCTYPE html>"),
        "{ctx}: not an HTML page\n{body}"
    );
    assert!(
        body.contains(&format!("<title>Index of {title}</title>")),
        "{ctx}: title\n{body}"
    );
    body
}

/// A 200 JSON listing from `r`, parsed: (name, type, size) per entry.
fn json_entries(r: &Response, ctx: &str) -> Vec<(String, String, u64)> {
    check_common(r, ctx);
    assert_status(r, 200, ctx);
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{ctx}: Content-Type\n{}",
        r.describe()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{ctx}: body is not JSON ({e})\n{}", r.describe()));
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("{ctx}: not an array: {v}"));
    arr.iter()
        .map(|o| {
            let mtime = o["mtime"]
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: mtime in {o}"));
            // RFC 3339, UTC: 2024-01-02T03:04:05Z
            assert!(
                mtime.len() == 20 && mtime.ends_with('Z') && mtime.as_bytes()[10] == b'T',
                "{ctx}: mtime {mtime:?}"
            );
            (
                o["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}: name in {o}"))
                    .to_string(),
                o["type"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}: type in {o}"))
                    .to_string(),
                o["size"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{ctx}: size in {o}")),
            )
        })
        .collect()
}

/// Where `needle` is in `hay`, or a failure naming both.
fn pos(hay: &str, needle: &str) -> usize {
    hay.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in listing\n{hay}"))
}

/// A root whose `/list/` has no index: files of 1, 2 and 3 bytes, two
/// subdirectories and a dotfile.
fn list_site() -> Site {
    let site = Site::empty();
    site.write("list/b.txt", b"1");
    site.write("list/a.txt", b"22");
    site.write("list/Z.txt", b"333");
    site.write("list/zdir/x", b"x");
    site.write("list/adir/y", b"y");
    site.write("list/.env", b"DOTFILE");
    site
}

/// A request with extra fields on a fresh connection.
fn ask(srv: &Server, method: &str, path: &str, fields: &[(&str, &str)]) -> Response {
    let mut h = String::new();
    for (n, v) in fields {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    request(
        srv.addr(),
        format!("{method} {path} HTTP/1.1\r\nHost: tandem.test\r\n{h}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// `ask`, checked for `status`; a 304 has the listing's ETag and no body.
#[track_caller]
fn expect(srv: &Server, path: &str, fields: &[(&str, &str)], status: u16) -> Response {
    let r = ask(srv, "GET", path, fields);
    let ctx = format!("GET {path} {fields:?}");
    assert_status(&r, status, &ctx);
    if status != 304 {
        check_common(&r, &ctx);
    } else {
        assert!(
            r.body.is_empty() && r.header("etag").is_some(),
            "{ctx}\n{}",
            r.describe()
        );
    }
    r
}

/// The ETag and Last-Modified of a 200 listing.
fn validators(srv: &Server, path: &str) -> (String, String) {
    let r = expect(srv, path, &[], 200);
    let tag = r
        .header("etag")
        .unwrap_or_else(|| panic!("GET {path}: no ETag\n{}", r.describe()));
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2,
        "GET {path}: a strong tag, not {tag:?}"
    );
    let lm = r
        .header("last-modified")
        .unwrap_or_else(|| panic!("GET {path}: no Last-Modified\n{}", r.describe()));
    let (lm_s, date_s) = (
        parse_imf_fixdate(lm).unwrap(),
        parse_imf_fixdate(r.header("date").unwrap()).unwrap(),
    );
    assert!(lm_s <= date_s, "GET {path}: Last-Modified {lm} after Date");
    (tag.to_string(), lm.to_string())
}

fn set_mtime(p: &std::path::Path, t: std::time::SystemTime) {
    std::fs::File::open(p)
        .and_then(|f| f.set_modified(t))
        .unwrap();
}

fn mkfifo(p: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

engine_tests! {
    fn off_by_default_is_404(e) {
        let site = list_site();
        let srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/list/");
        check_common(&r, "GET /list/ (autoindex off)");
        assert_status(&r, 404, "GET /list/ (autoindex off)");
        assert!(!r.body_str().contains("a.txt"), "autoindex off must not list\n{}", r.describe());
        drop(srv);
        let srv = start_or_skip!(e, "autoindex = false", &site.root);
        assert_status(&get(srv.addr(), "/list/"), 404, "GET /list/ (autoindex = false)");
        assert_status(&get(srv.addr(), "/list/?format=json"), 404, "GET /list/?format=json (autoindex = false)");
    }

    fn html_lists_directories_first_then_by_name(e) {
        let site = list_site();
        let srv = start_or_skip!(e, ON, &site.root);
        let body = html_listing(&srv, "/list/");
        let order = [
            "href=\"../\"",
            "href=\"adir/\">adir/</a>",
            "href=\"zdir/\">zdir/</a>",
            "href=\"Z.txt\">Z.txt</a>",
            "href=\"a.txt\">a.txt</a>",
            "href=\"b.txt\">b.txt</a>",
        ];
        let at: Vec<usize> = order.iter().map(|n| pos(&body, n)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "order {order:?} at {at:?}\n{body}");
        // Sizes in bytes, "-" for directories, dates as YYYY-MM-DD HH:MM.
        for (name, size) in [("Z.txt", "3"), ("a.txt", "2"), ("b.txt", "1"), ("adir/", "-")] {
            let row = &body[pos(&body, &format!(">{name}</a>"))..];
            let row = &row[..row.find("</tr>").unwrap()];
            assert!(row.contains(&format!(">{size}</td>")), "{name}: size {size}\n{row}");
            let date = row.split("\">").last().unwrap();
            let date = &date[..date.find('<').unwrap()];
            assert!(
                date.len() == 16 && date.as_bytes()[4] == b'-' && date.as_bytes()[10] == b' ' && date.as_bytes()[13] == b':',
                "{name}: date {date:?}\n{row}"
            );
        }
        // The links work: each entry, and `../`.
        for (path, want) in [("/list/a.txt", 200), ("/list/Z.txt", 200), ("/list/adir/", 200), ("/list/../", 200)] {
            assert_status(&get(srv.addr(), path), want, &format!("GET {path} (a link of the listing)"));
        }
        assert!(html_listing(&srv, "/list/adir/").contains("href=\"y\">y</a>"));
    }

    fn names_are_escaped_and_links_percent_encoded(e) {
        let site = Site::empty();
        let name = "<script>&\"'.txt";
        site.write(&format!("list/{name}"), b"ESCAPED");
        site.write("list/a b:c?#%.txt", b"ODD");
        site.write("list/dir <b>/inner", b"x");
        let srv = start_or_skip!(e, ON, &site.root);
        let body = html_listing(&srv, "/list/");
        assert!(!body.contains("<script>"), "raw <script> in the listing\n{body}");
        assert!(!body.contains("<b>"), "raw <b> in the listing\n{body}");
        pos(&body, "href=\"%3Cscript%3E%26%22%27.txt\">&lt;script&gt;&amp;&quot;&#39;.txt</a>");
        pos(&body, "href=\"a%20b%3Ac%3F%23%25.txt\">a b:c?#%.txt</a>");
        pos(&body, "href=\"dir%20%3Cb%3E/\">dir &lt;b&gt;/</a>");
        // Each href, requested under the listing's path, reaches its entry.
        for (href, want) in [
            ("%3Cscript%3E%26%22%27.txt", "ESCAPED"),
            ("a%20b%3Ac%3F%23%25.txt", "ODD"),
        ] {
            let r = get(srv.addr(), &format!("/list/{href}"));
            assert_status(&r, 200, &format!("GET /list/{href}"));
            assert_eq!(r.body_str(), want, "GET /list/{href}");
        }
        html_listing_titled(&srv, "/list/dir%20%3Cb%3E/", "/list/dir &lt;b&gt;/");
        let got = json_entries(&get(srv.addr(), "/list/?format=json"), "GET /list/?format=json");
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["dir <b>", name, "a b:c?#%.txt"]);
    }

    /// Names with a tab, a newline, a backslash or bytes that are not
    /// UTF-8 are listed: the link is the name's bytes percent-encoded (and
    /// following it serves that file), the text is HTML-escaped with what
    /// is not printable text shown as U+FFFD; the JSON name the same but
    /// with control characters escaped exactly.
    fn names_with_any_bytes_are_listed_with_working_links(e) {
        use std::os::unix::ffi::OsStrExt;
        let site = Site::empty();
        site.write("list/plain.txt", b"PLAIN");
        let dir = site.root.join("list");
        for (name, body) in [
            (&b"a\tb.txt"[..], "TAB"),
            (b"a\nb<i>.txt", "NEWLINE"),
            (b"caf\xe9.txt", "LATIN-1"),
            (b"back\\slash.txt", "BACKSLASH"),
        ] {
            std::fs::write(dir.join(std::ffi::OsStr::from_bytes(name)), body).unwrap();
        }
        std::fs::create_dir(dir.join(std::ffi::OsStr::from_bytes(b"d\xe9"))).unwrap();
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"d\xe9/in.txt")), "IN").unwrap();
        let srv = start_or_skip!(e, ON, &site.root);
        let body = html_listing(&srv, "/list/");
        assert!(!body.contains("<i>"), "raw <i> in the listing\n{body}");
        for (href, text, want) in [
            ("a%09b.txt", "a\u{fffd}b.txt", "TAB"),
            ("a%0Ab%3Ci%3E.txt", "a\u{fffd}b&lt;i&gt;.txt", "NEWLINE"),
            ("caf%E9.txt", "caf\u{fffd}.txt", "LATIN-1"),
            ("back%5Cslash.txt", "back\\slash.txt", "BACKSLASH"),
            ("plain.txt", "plain.txt", "PLAIN"),
        ] {
            pos(&body, &format!("href=\"{href}\">{text}</a>"));
            let r = get(srv.addr(), &format!("/list/{href}"));
            assert_status(&r, 200, &format!("GET /list/{href} (a link of the listing)"));
            assert_eq!(r.body_str(), want, "GET /list/{href}");
        }
        pos(&body, "href=\"d%E9/\">d\u{fffd}/</a>");
        let sub = html_listing_titled(&srv, "/list/d%E9/", "/list/d\u{fffd}/");
        pos(&sub, "href=\"in.txt\">in.txt</a>");
        assert_eq!(get(srv.addr(), "/list/d%E9/in.txt").body_str(), "IN");
        let got = json_entries(&get(srv.addr(), "/list/?format=json"), "GET /list/?format=json");
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["d\u{fffd}", "a\tb.txt", "a\nb<i>.txt", "back\\slash.txt", "caf\u{fffd}.txt", "plain.txt"]);
    }

    fn dotfiles_hidden_unless_served(e) {
        let site = list_site();
        let srv = start_or_skip!(e, ON, &site.root);
        let body = html_listing(&srv, "/list/");
        assert!(!body.contains(".env"), "dotfile listed by default\n{body}");
        drop(srv);
        // /.well-known/ is served, so the root's listing names it; other
        // dot names there stay hidden, and so does a .well-known below the root.
        site.write(".well-known/security.txt", b"Contact: x");
        site.write(".hidden-at-root", b"x");
        site.write("list/.well-known/x", b"x");
        let srv = start_or_skip!(e, ON, &site.root);
        let root = html_listing(&srv, "/");
        pos(&root, "href=\".well-known/\"");
        assert!(!root.contains(".hidden-at-root"), "{root}");
        let body = html_listing(&srv, "/list/");
        assert!(!body.contains(".well-known"), "{body}");
        let got = json_entries(&get(srv.addr(), "/list/?format=json"), "GET /list/?format=json");
        assert!(got.iter().all(|(n, _, _)| !n.starts_with('.')), "{got:?}");
        drop(srv);
        let srv = start_or_skip!(e, "autoindex = true\nserve_dotfiles = true", &site.root);
        let body = html_listing(&srv, "/list/");
        pos(&body, "href=\".env\">.env</a>");
        let r = get(srv.addr(), "/list/.env");
        assert_status(&r, 200, "GET /list/.env (serve_dotfiles)");
    }

    fn symlinks_out_of_the_root_are_never_named(e) {
        use std::os::unix::fs::symlink;
        let site = Site::empty();
        std::fs::write(site.base.join("secret.txt"), SECRET_MARKER).unwrap();
        site.write("list/inside.txt", b"12345");
        symlink(site.base.join("secret.txt"), site.path("list/out-abs")).unwrap();
        symlink("../../secret.txt", site.path("list/out-rel")).unwrap();
        symlink("/etc", site.path("list/out-etc")).unwrap();
        symlink(&site.base, site.path("list/out-base")).unwrap();
        symlink("inside.txt", site.path("list/link-in")).unwrap();
        symlink("..", site.path("list/link-up")).unwrap();
        symlink("missing", site.path("list/dangling")).unwrap();
        let srv = start_or_skip!(e, ON, &site.root);
        let body = html_listing(&srv, "/list/");
        for out in ["out-abs", "out-rel", "out-etc", "out-base", "dangling", "secret", "passwd"] {
            assert!(!body.contains(out), "{out} named in the listing\n{body}");
        }
        pos(&body, "href=\"link-in\">link-in</a>");
        pos(&body, "href=\"link-up/\">link-up/</a>");
        let got = json_entries(&get(srv.addr(), "/list/?format=json"), "GET /list/?format=json");
        assert_eq!(
            got,
            [
                ("link-up".to_string(), "directory".to_string(), 0),
                ("inside.txt".to_string(), "file".to_string(), 5),
                ("link-in".to_string(), "file".to_string(), 5),
            ]
        );
        // A symlinked directory that leaves the root is not listed either.
        assert_status(&get(srv.addr(), "/list/out-etc/"), 404, "GET /list/out-etc/");
        drop(srv);
        // symlinks = "deny": no symlink is named at all.
        let srv = start_or_skip!(e, "autoindex = true\nsymlinks = \"deny\"", &site.root);
        let got = json_entries(&get(srv.addr(), "/list/?format=json"), "GET /list/?format=json (symlinks deny)");
        assert_eq!(got, [("inside.txt".to_string(), "file".to_string(), 5)]);
        assert_status(&get(srv.addr(), "/list/link-up/"), 404, "GET /list/link-up/ (symlinks deny)");
    }

    fn fifos_are_hidden(e) {
        let site = Site::empty();
        site.write("list/regular.txt", b"R");
        mkfifo(&site.path("list/a-fifo"));
        let srv = start_or_skip!(e, ON, &site.root);
        let body = html_listing(&srv, "/list/");
        assert!(!body.contains("a-fifo"), "FIFO listed\n{body}");
        pos(&body, "href=\"regular.txt\"");
        let got = json_entries(&get(srv.addr(), "/list/?format=json"), "GET /list/?format=json");
        assert_eq!(got, [("regular.txt".to_string(), "file".to_string(), 1)]);
    }

    fn json_by_query_or_accept(e) {
        let site = list_site();
        let srv = start_or_skip!(e, ON, &site.root);
        let want: Vec<(String, String, u64)> = [
            ("adir", "directory", 0),
            ("zdir", "directory", 0),
            ("Z.txt", "file", 3),
            ("a.txt", "file", 2),
            ("b.txt", "file", 1),
        ]
        .iter()
        .map(|&(n, t, s)| (n.to_string(), t.to_string(), s))
        .collect();
        for path in ["/list/?format=json", "/list/?sort=x&format=json&y"] {
            let r = get_with(&srv, path, "Accept: text/html\r\n");
            assert_eq!(json_entries(&r, &format!("GET {path}")), want);
            assert_eq!(r.header("vary"), None, "GET {path}: the query decided, no Vary\n{}", r.describe());
        }
        for accept in ["application/json", "application/json, */*;q=0.1"] {
            let ctx = format!("GET /list/ with Accept: {accept}");
            let r = get_with(&srv, "/list/", &format!("Accept: {accept}\r\n"));
            assert_eq!(json_entries(&r, &ctx), want);
            assert_eq!(r.header("vary"), Some("Accept"), "{ctx}: Vary\n{}", r.describe());
        }
        // A browser's Accept (text/html and more) gets HTML.
        let r = get_with(&srv, "/list/", "Accept: text/html,application/json;q=0.9,*/*;q=0.8\r\n");
        assert_status(&r, 200, "GET /list/ (browser Accept)");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{}", r.describe());
        // The root's JSON listing: one directory.
        let got = json_entries(&get(srv.addr(), "/?format=json"), "GET /?format=json");
        assert_eq!(got, [("list".to_string(), "directory".to_string(), 0)]);
    }

    fn head_has_get_headers_and_no_body(e) {
        let site = list_site();
        let srv = start_or_skip!(e, ON, &site.root);
        for path in ["/list/", "/list/?format=json"] {
            let g = get(srv.addr(), path);
            assert_status(&g, 200, &format!("GET {path}"));
            // HEAD then GET pipelined on one connection: a HEAD body would
            // break the GET's response.
            let mut c = srv.connect();
            c.send(format!(
                "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            ).as_bytes());
            let h = c.read_response("HEAD");
            let ctx = format!("HEAD {path}");
            check_common(&h, &ctx);
            assert_status(&h, 200, &ctx);
            assert!(h.body.is_empty(), "{ctx}: a body\n{}", h.describe());
            for name in ["content-length", "content-type", "vary"] {
                assert_eq!(h.header(name), g.header(name), "{ctx}: {name} differs from GET");
            }
            let g2 = c.read_response("GET");
            assert_status(&g2, 200, &format!("GET {path} after HEAD"));
            assert_bytes_eq(&g2.body, &g.body, &format!("GET {path} after HEAD"));
        }
    }

    fn parent_link_except_at_the_root(e) {
        let site = list_site();
        let srv = start_or_skip!(e, ON, &site.root);
        let root = html_listing(&srv, "/");
        assert!(!root.contains("../"), "the root's listing links above the root\n{root}");
        pos(&root, "href=\"list/\">list/</a>");
        pos(&html_listing(&srv, "/list/"), "href=\"../\"");
        pos(&html_listing(&srv, "/list/zdir/"), "href=\"../\"");
        // Without the slash: still the redirect, not a listing.
        let r = get(srv.addr(), "/list");
        assert_status(&r, 301, "GET /list (autoindex)");
        assert_eq!(r.header("location"), Some("/list/"));
    }

    fn index_file_wins_over_the_listing(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, ON, &site.root);
        let r = get(srv.addr(), "/");
        assert_status(&r, 200, "GET / (autoindex, index.html present)");
        assert_eq!(r.body_str(), INDEX_HTML, "GET /: the index, not a listing");
        let r = get(srv.addr(), "/sub/?format=json");
        assert_status(&r, 200, "GET /sub/?format=json (index present)");
        assert_eq!(r.body_str(), SUB_INDEX_HTML, "GET /sub/?format=json: the index, not a listing");
        // The standard site's directory without an index is listed; its
        // symlinks out of the root are not, anywhere.
        pos(&html_listing(&srv, "/noindex/"), "href=\"file.txt\">file.txt</a>");
        let got = json_entries(&get(srv.addr(), "/dir/?format=json"), "GET /dir/?format=json");
        assert_eq!(got, [("visible.txt".to_string(), "file".to_string(), 7)]);
    }

    /// A listing is a representation: a strong ETag and a Last-Modified,
    /// and RFC 9110 §13.2.2 preconditions on them, as on a file.
    fn preconditions_are_evaluated_on_a_listing(e) {
        let site = list_site();
        std::fs::create_dir(site.path("empty")).unwrap();
        let srv = start_or_skip!(e, ON, &site.root);
        let (tag, lm) = validators(&srv, "/empty/");
        let r = expect(&srv, "/empty/", &[("If-None-Match", "*")], 304);
        assert_eq!(r.header("etag"), Some(tag.as_str()));
        assert_eq!(r.header("last-modified"), Some(lm.as_str()));
        assert_eq!(r.header("vary"), Some("Accept"), "304: the 200's Vary\n{}", r.describe());
        expect(&srv, "/empty/", &[("If-Match", "\"nope\"")], 412);
        expect(&srv, "/empty/", &[("If-Match", &tag)], 200);
        expect(&srv, "/empty/", &[("If-None-Match", &tag)], 304);
        expect(&srv, "/empty/", &[("If-None-Match", &format!("\"x\", W/{tag}"))], 304);
        let r = ask(&srv, "HEAD", "/empty/", &[("If-None-Match", &tag)]);
        assert_status(&r, 304, "HEAD /empty/ If-None-Match");
        // Dates: If-Modified-Since only without If-None-Match.
        expect(&srv, "/empty/", &[("If-Modified-Since", &lm)], 304);
        expect(&srv, "/empty/", &[("If-None-Match", "\"other\""), ("If-Modified-Since", &lm)], 200);
        let day_before = imf_fixdate(parse_imf_fixdate(&lm).unwrap() - 86_400);
        expect(&srv, "/empty/", &[("If-Modified-Since", &day_before)], 200);
        expect(&srv, "/empty/", &[("If-Unmodified-Since", &day_before)], 412);
        expect(&srv, "/empty/", &[("If-Unmodified-Since", &lm)], 200);
        // Pipelined on one connection, split inside a field: 304 (no body),
        // 412, HEAD 304 and a 200, each in its place.
        let mut c = srv.connect();
        let reqs = format!(
            "GET /empty/ HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n\
             GET /empty/ HTTP/1.1\r\nHost: t\r\nIf-Match: \"nope\"\r\n\r\n\
             HEAD /empty/ HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n\
             GET /empty/ HTTP/1.1\r\nHost: t\r\nIf-Match: {tag}\r\n\r\n"
        );
        let cut = reqs.find("None-Match: *").unwrap() + 6;
        c.send(&reqs.as_bytes()[..cut]);
        c.send(&reqs.as_bytes()[cut..]);
        for (i, (method, status)) in [("GET", 304), ("GET", 412), ("HEAD", 304), ("GET", 200)].into_iter().enumerate() {
            let r = c.read_response(method);
            assert_status(&r, status, &format!("pipelined #{i}"));
            if status != 412 {
                assert_eq!(r.header("etag"), Some(tag.as_str()), "pipelined #{i}\n{}", r.describe());
            }
        }
        // The JSON form is another representation, with its own tag.
        let (jtag, _) = validators(&srv, "/list/?format=json");
        let (htag, _) = validators(&srv, "/list/");
        assert_ne!(jtag, htag);
        expect(&srv, "/list/?format=json", &[("If-None-Match", &htag)], 200);
        expect(&srv, "/list/?format=json", &[("If-None-Match", &jtag)], 304);
        let r = expect(&srv, "/list/", &[("Accept", "application/json"), ("If-None-Match", &jtag)], 304);
        assert_eq!(r.header("vary"), Some("Accept"));
        // A rule's fields go on its 304 too, not on its 412.
        drop(srv);
        let srv = start_or_skip!(e, &format!("{ON}\n[[rules]]\nmatch = \"/empty/\"\nheaders = {{ \"Cache-Control\" = \"no-cache\" }}\n"), &site.root);
        let r = expect(&srv, "/empty/", &[("If-None-Match", "*")], 304);
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{}", r.describe());
        let r = expect(&srv, "/empty/", &[("If-Match", "\"nope\"")], 412);
        assert!(r.header("cache-control").is_none(), "{}", r.describe());
    }

    /// The ETag follows the listing's content: an entry added, resized,
    /// touched or removed gives a new tag, and the old one no longer gives
    /// 304; Last-Modified moves with an entry added.
    fn listing_validators_follow_its_content(e) {
        let site = list_site();
        let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        for p in ["list/b.txt", "list/a.txt", "list/Z.txt", "list/zdir", "list/adir", "list"] {
            set_mtime(&site.path(p), t0);
        }
        let srv = start_or_skip!(e, ON, &site.root);
        let (mut tag, lm) = validators(&srv, "/list/");
        assert_eq!(lm, imf_fixdate(1_600_000_000), "the newest of the directory and its entries");
        expect(&srv, "/list/", &[("If-Modified-Since", &lm)], 304);
        let steps: [(&str, &dyn Fn()); 4] = [
            ("a file added", &|| site.write("list/new.txt", b"new")),
            ("a file resized", &|| site.write("list/a.txt", b"2222")),
            ("a file touched", &|| set_mtime(&site.path("list/b.txt"), t0 + std::time::Duration::from_secs(61))),
            ("a file removed", &|| std::fs::remove_file(site.path("list/new.txt")).unwrap()),
        ];
        for (what, change) in steps {
            change();
            let (new, new_lm) = validators(&srv, "/list/");
            assert_ne!(new, tag, "{what}: the listing's ETag did not change");
            expect(&srv, "/list/", &[("If-None-Match", &tag)], 200);
            expect(&srv, "/list/", &[("If-None-Match", &new)], 304);
            if what == "a file added" {
                assert!(parse_imf_fixdate(&new_lm) > parse_imf_fixdate(&lm), "{what}: Last-Modified {new_lm}");
                expect(&srv, "/list/", &[("If-Modified-Since", &lm)], 200);
            }
            tag = new;
        }
    }
}
