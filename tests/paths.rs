//! Request-target handling: traversal, decoding, dot-segments, dotfiles, symlinks.

#[macro_use]
mod common;

use common::*;

/// Markers of content that must never be served.
fn leaks(body: &[u8]) -> Option<&'static str> {
    let s = String::from_utf8_lossy(body);
    if s.contains(SECRET_MARKER) {
        Some("secret.txt (outside the root)")
    } else if s.contains("root:x:0:0") || s.contains("root:*:0:0") {
        Some("/etc/passwd")
    } else {
        None
    }
}

/// Send `GET target` (raw) and return the response, or None if the server
/// closed/reset the connection without a response (acceptable for garbage,
/// but reported by the caller because the contract asks for 400/404).
fn raw_get(srv: &Server, target: &[u8]) -> Result<Response, String> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut c = srv.connect();
    c.send(&req);
    let r = c.try_read_response("GET");
    // Whatever else arrives must not leak either.
    let rest = c.read_to_close(CLOSE_TIMEOUT).unwrap_or_else(|b| b);
    if let Some(what) = leaks(&rest) {
        panic!("request {}: LEAKED {what} after the response", show(&req));
    }
    r
}

engine_tests! {
    fn traversal_attempts_never_escape_root(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        // (target, allowed statuses)
        let nf: &[u16] = &[400, 404];
        let link: &[u16] = &[403, 404];
        let attempts: Vec<(&[u8], &[u16])> = vec![
            (b"/../secret.txt", nf),
            (b"/../../secret.txt", nf),
            (b"/../../../../../../../../secret.txt", nf),
            (b"/%2e%2e/secret.txt", nf),
            (b"/%2E%2E/secret.txt", nf),
            (b"/%2e%2E/secret.txt", nf),
            (b"/.%2e/secret.txt", nf),
            (b"/%2e./secret.txt", nf),
            (b"/..%2fsecret.txt", nf),
            (b"/..%2Fsecret.txt", nf),
            (b"/%2e%2e%2fsecret.txt", nf),
            (b"/%2E%2E%2Fsecret.txt", nf),
            (b"/%2f%2e%2e%2fsecret.txt", nf),
            (b"/%252e%252e/secret.txt", nf),
            (b"/%252e%252e%252fsecret.txt", nf),
            (b"/..%5csecret.txt", nf),
            (b"/..%5Csecret.txt", nf),
            (b"/%2e%2e%5csecret.txt", nf),
            (b"/..\\secret.txt", nf),
            (b"/sub\\..\\..\\secret.txt", nf),
            (b"/a/../../secret.txt", nf),
            (b"/sub/../../secret.txt", nf),
            (b"/sub/./../../secret.txt", nf),
            (b"/sub/..%2f..%2fsecret.txt", nf),
            (b"/sub/%2e%2e/%2e%2e/secret.txt", nf),
            (b"//..//secret.txt", nf),
            (b"/./../secret.txt", nf),
            (b"/%00/../secret.txt", nf),
            (b"/../secret.txt%00.html", nf),
            (b"/%c0%ae%c0%ae/secret.txt", nf),
            (b"/%c0%ae%c0%ae%c0%afsecret.txt", nf),
            (b"/..%c0%afsecret.txt", nf),
            (b"/%e0%80%ae%e0%80%ae/secret.txt", nf),
            (b"/..%u2216secret.txt", nf),
            (b"/..;/secret.txt", nf),
            (b"/.../secret.txt", nf),
            (b"/....//secret.txt", nf),
            (b"../secret.txt", nf),
            (b"http://x/../secret.txt", nf),
            (b"http://x/%2e%2e/secret.txt", nf),
            (b"http://x/..%2fsecret.txt", nf),
            (b"/../../../../../../../../etc/passwd", nf),
            (b"/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", nf),
            (b"//etc/passwd", nf),
            (b"/%2fetc%2fpasswd", nf),
            (b"http://x//etc/passwd", nf),
            (b"file:///etc/passwd", nf),
            (b"/link-to-secret", link),
            (b"/rel-link-to-secret", link),
            (b"/link-dir-out/secret.txt", link),
            (b"/link-dir-out/", link),
            (b"/link-dir-out", &[301, 403, 404]),
            (b"/sub/../link-to-secret", link),
            (b"/%6cink-to-secret", link),
        ];
        assert!(attempts.len() >= 30);
        let mut failures = Vec::new();
        for (target, allowed) in &attempts {
            let shown = String::from_utf8_lossy(target).into_owned();
            match raw_get(&srv, target) {
                Ok(r) => {
                    if let Some(what) = leaks(&r.body) {
                        panic!("GET {shown}: LEAKED {what}:\n{}", r.describe());
                    }
                    if !allowed.contains(&r.status) {
                        failures.push(format!("GET {shown} -> {} (allowed {:?})\n{}", r.status, allowed, r.head));
                    }
                    if r.status == 301 {
                        let loc = r.header("location").unwrap_or("");
                        assert!(!loc.contains(".."), "GET {shown}: redirect to {loc:?}");
                    }
                }
                Err(err) => failures.push(format!("GET {shown}: no response ({err})")),
            }
        }
        // The server must still answer normally.
        let r = get(srv.addr(), "/");
        assert_status(&r, 200, "GET / after the traversal attempts");
        assert_eq!(r.body_str(), INDEX_HTML);
        assert!(failures.is_empty(), "{} of {} traversal attempts got an unexpected answer (none leaked):\n{}",
            failures.len(), attempts.len(), failures.join("\n"));
    }

    /// A NUL is 400; a backslash is a byte of a name, never a separator,
    /// so `sub\\page.html` is not `sub/page.html`.
    fn nul_never_serves_and_backslash_is_no_separator(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for target in [&b"/style.css%00"[..], b"/style.css%00.png", b"/%00", b"/sub%00/index.html", b"/sub%5cpage.html", b"/sub\\page.html"] {
            let shown = String::from_utf8_lossy(target).into_owned();
            let r = raw_get(&srv, target).unwrap_or_else(|e| panic!("GET {shown}: {e}"));
            assert!(r.status == 400 || r.status == 404, "GET {shown}: expected 400 or 404, got\n{}", r.describe());
            assert!(!r.body_str().contains("STYLE-CSS") && !r.body_str().contains("SUB-PAGE"), "GET {shown}: served a file\n{}", r.describe());
        }
    }

    fn percent_decoding_happens_once(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/hello%20world.txt");
        assert_status(&r, 200, "GET /hello%20world.txt");
        assert_eq!(r.body_str(), "HELLO-SPACE");
        let r = get(srv.addr(), "/a%2520b.txt");
        assert_status(&r, 200, "GET /a%2520b.txt (file literally named a%20b.txt)");
        assert_eq!(r.body_str(), "LITERAL-PERCENT");
        let r = get(srv.addr(), "/%73tyle.css");
        assert_status(&r, 200, "GET /%73tyle.css");
        assert_eq!(r.body_str(), STYLE_CSS);
        let r = get(srv.addr(), "/%73%74%79%6C%65.css");
        assert_status(&r, 200, "GET /%73%74%79%6C%65.css");
        assert_eq!(r.body_str(), STYLE_CSS);
        let r = get(srv.addr(), "/a%20b.txt");
        assert_status(&r, 404, "GET /a%20b.txt (decodes to `a b.txt`, which does not exist)");
    }

    /// A `%` not followed by two hex digits is 400, as in nginx: never a
    /// lookup of the literal name, even when a file has that name.
    fn invalid_percent_encoding_is_400(e) {
        let site = Site::new();
        for name in ["100%.txt", "%zz", "%4", "%", "style.css%", "style.css%2", "%g0style.css", "a%%41"] {
            site.write(name, b"LITERAL-NAME");
        }
        let srv = start_or_skip!(e, "", &site.root);
        for target in [
            "/100%.txt", "/%zz", "/%4", "/%", "/style.css%", "/style.css%2", "/%g0style.css",
            "/a%%41", "/sub/%zz/../page.html", "/100%.txt?x=1",
        ] {
            let r = raw_get(&srv, target.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"));
            assert_status(&r, 400, &format!("GET {target} (an invalid percent escape)"));
            assert!(!r.body_str().contains("LITERAL-NAME"), "GET {target}: served the literal name\n{}", r.describe());
        }
        // Spelled right, the same names are served.
        for target in ["/100%25.txt", "/%25zz", "/%254"] {
            let r = raw_get(&srv, target.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"));
            assert_status(&r, 200, target);
            assert_eq!(r.body_str(), "LITERAL-NAME", "GET {target}");
        }
        // The server answers on: a bad target costs nothing but its 400.
        let mut c = srv.connect();
        let r = c.roundtrip(b"GET /100%.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 400, "GET /100%.txt (keep-alive)");
        let r = c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r, 200, "GET /style.css after a 400");
        // Pipelined behind a valid request, the bad one sent a byte at a
        // time (split inside its escape): the same answers, in order.
        let mut c = srv.connect();
        c.send(b"GET /%25zz HTTP/1.1\r\nHost: t\r\n\r\n");
        for b in b"GET /100%.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n" {
            c.send(&[*b]);
        }
        for (want, what) in [(200, "/%25zz"), (400, "/100%.txt (split)"), (200, "/style.css (pipelined)")] {
            let r = c.read_response("GET");
            assert_status(&r, want, &format!("GET {what}"));
        }
    }

    /// Any byte but NUL and `/` may be in a name: a tab, a newline, a
    /// backslash, bytes that are not UTF-8 (Latin-1 `é` is 0xE9). Each is
    /// served when asked for percent-encoded, from disk and from the
    /// cache alike, and logged as sent: escaped, one line per request.
    fn names_with_any_bytes_are_served_percent_encoded(e) {
        use std::os::unix::ffi::OsStrExt;
        let site = Site::new();
        let files: [(&[u8], &str, &str); 5] = [
            (b"a\tb.txt", "/a%09b.txt", "TAB"),
            (b"a\nb.txt", "/a%0Ab.txt", "NEWLINE"),
            (b"caf\xe9.txt", "/caf%E9.txt", "LATIN-1"),
            (b"back\\slash.txt", "/back%5Cslash.txt", "BACKSLASH"),
            (b"d\xff\x01/in.txt", "/d%FF%01/in.txt", "IN-DIR"),
        ];
        std::fs::create_dir(site.root.join(std::ffi::OsStr::from_bytes(b"d\xff\x01"))).unwrap();
        for (name, _, body) in files {
            std::fs::write(site.root.join(std::ffi::OsStr::from_bytes(name)), body).unwrap();
        }
        for cfg in ["", "cache_size = 0"] {
            let srv = start_or_skip!(e, cfg, &site.root);
            let mut sent = 0;
            for (_, target, body) in files {
                for _ in 0..2 {
                    let r = raw_get(&srv, target.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"));
                    assert_status(&r, 200, &format!("GET {target} ({cfg:?})"));
                    assert_eq!(r.body_str(), body, "GET {target} ({cfg:?})");
                    sent += 1;
                }
            }
            // The lower-case spelling is the same name.
            let r = raw_get(&srv, b"/caf%e9.txt").unwrap();
            assert_eq!(r.body_str(), "LATIN-1", "GET /caf%e9.txt");
            sent += 1;
            // A raw backslash too (no separator on Linux).
            let r = raw_get(&srv, b"/back\\slash.txt").unwrap();
            assert_eq!(r.body_str(), "BACKSLASH", "GET /back\\slash.txt");
            sent += 1;
            // Not the other Latin-1 name, nor the UTF-8 one.
            assert_status(&raw_get(&srv, b"/caf%E8.txt").unwrap(), 404, "GET /caf%E8.txt");
            assert_status(&raw_get(&srv, b"/caf%C3%A9.txt").unwrap(), 404, "GET /caf%C3%A9.txt");
            sent += 2;
            let log = srv.wait_access_lines(sent, CLOSE_TIMEOUT);
            assert_eq!(log.lines().count(), sent, "one line per request\n{log}");
            for (_, target, _) in files {
                let want = format!("\"GET {target} HTTP/1.1\" 200 ");
                assert_eq!(log.matches(&want).count(), 2, "{target}: logged as sent\n{log}");
            }
            assert!(log.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)), "a raw byte in the log\n{log}");
        }
    }

    /// A name with a newline cannot split an error log line: the stale
    /// sibling's message names it escaped (`a\nb.txt.gz`), on one line.
    fn a_newline_in_a_name_stays_on_one_error_log_line(e) {
        use std::os::unix::ffi::OsStrExt;
        let site = Site::new();
        let src = site.root.join(std::ffi::OsStr::from_bytes(b"a\nb\xe9.txt"));
        let gz = site.root.join(std::ffi::OsStr::from_bytes(b"a\nb\xe9.txt.gz"));
        std::fs::write(&src, b"PLAIN").unwrap();
        std::fs::write(&gz, b"GZIPPED").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&gz).unwrap().set_modified(old).unwrap();
        let srv = start_or_skip!(e, "", &site.root);
        let req = b"GET /a%0Ab%E9.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
        let r = request(srv.addr(), req);
        assert_status(&r, 200, "GET /a%0Ab%E9.txt");
        assert_eq!(r.body_str(), "PLAIN", "the stale sibling was sent\n{}", r.describe());
        let found = srv.wait_stderr_until(CLOSE_TIMEOUT, |t| t.contains("not served: stale"));
        let text = srv.stderr_text();
        assert!(found, "no stale-sibling line\n{text}");
        let line = text.lines().find(|l| l.contains("not served: stale")).unwrap();
        assert!(line.contains("a\\nb\u{fffd}.txt.gz not served") && line.contains("a\\nb\u{fffd}.txt's"), "{line}");
        assert!(!text.lines().any(|l| l.starts_with("b\u{fffd}.txt") || l.starts_with("b\\xe9")), "a line was split\n{text}");
    }

    fn dot_segments_inside_root_are_resolved(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for (path, body) in [
            ("/sub/../style.css", STYLE_CSS),
            ("/./style.css", STYLE_CSS),
            ("/sub/./index.html", SUB_INDEX_HTML),
            ("/sub/page.html/../index.html", SUB_INDEX_HTML),
            ("/noindex/../app.js", APP_JS),
        ] {
            let r = raw_get(&srv, path.as_bytes()).unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert_status(&r, 200, path);
            assert_eq!(r.body_str(), body, "GET {path}");
        }
    }

    /// Absolute-form targets (RFC 9112 3.2.2) are served by their path;
    /// one with userinfo is refused, as a Host with it is (RFC 9110 4.2.4).
    fn absolute_form_targets_and_userinfo(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for (target, status) in [
            ("http://t/style.css", 200),
            ("HTTP://t/style.css?x=1", 200),
            ("http://t:80/style.css", 200),
            ("http://u@t/style.css", 400),
            ("http://u:secret@t/style.css", 400),
            ("https://@t/style.css", 400),
        ] {
            let r = raw_get(&srv, target.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"));
            assert_status(&r, status, target);
            if status == 200 {
                assert_eq!(r.body_str(), STYLE_CSS, "GET {target}");
            }
        }
    }

    fn dotfiles_are_hidden_by_default(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for path in [
            "/.secret", "/%2esecret", "/%2Esecret", "/dir/.git/config", "/dir/%2egit/config",
            "/dir/.git/", "/dir/.git", "/sub/../.secret", "/./.secret", "/.secret?x=1",
        ] {
            let r = raw_get(&srv, path.as_bytes()).unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert!(!r.body_str().contains(DOTFILE_MARKER), "GET {path}: served a dotfile\n{}", r.describe());
            assert_status(&r, 404, path);
        }
        let r = get(srv.addr(), "/dir/visible.txt");
        assert_status(&r, 200, "GET /dir/visible.txt");
        assert_eq!(r.body_str(), "VISIBLE");
    }

    fn dotfiles_served_when_enabled(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "serve_dotfiles = true", &site.root);
        let r = get(srv.addr(), "/.secret");
        assert_status(&r, 200, "GET /.secret with serve_dotfiles = true");
        assert_eq!(r.body_str(), DOTFILE_MARKER);
        let r = get(srv.addr(), "/dir/.git/config");
        assert_status(&r, 200, "GET /dir/.git/config with serve_dotfiles = true");
        // Still never outside the root.
        for t in [&b"/../secret.txt"[..], b"/%2e%2e/secret.txt", b"/.%2e/secret.txt", b"/link-to-secret"] {
            let r = raw_get(&srv, t).unwrap_or_else(|e| panic!("GET {}: {e}", show(t)));
            assert!(leaks(&r.body).is_none(), "GET {} with serve_dotfiles: LEAK\n{}", show(t), r.describe());
            assert!([400, 403, 404].contains(&r.status), "GET {} with serve_dotfiles: {}", show(t), r.describe());
        }
    }

    fn symlink_inside_root(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/link-inside.css");
        // Allowed to be served (then with the target's content) or refused.
        match r.status {
            200 => assert_eq!(r.body_str(), STYLE_CSS, "GET /link-inside.css"),
            403 | 404 => eprintln!("note: /link-inside.css (symlink inside root) -> {}", r.status),
            s => panic!("GET /link-inside.css: unexpected {s}\n{}", r.describe()),
        }
    }

    fn symlink_created_after_start_is_checked(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "cache_revalidate = \"300ms\"", &site.root);
        // Warm up the cache with a regular file, then swap it for a symlink
        // out of root: the cached original may be served until the cache
        // looks again (within cache_revalidate), the secret never.
        site.write("swap.txt", b"SWAP-ORIGINAL");
        let r = get(srv.addr(), "/swap.txt");
        assert_eq!(r.body_str(), "SWAP-ORIGINAL");
        std::fs::remove_file(site.path("swap.txt")).unwrap();
        std::os::unix::fs::symlink(site.base.join("secret.txt"), site.path("swap.txt")).unwrap();
        let t0 = std::time::Instant::now();
        loop {
            let r = get(srv.addr(), "/swap.txt");
            assert!(leaks(&r.body).is_none(), "GET /swap.txt (now a symlink out of root): LEAK\n{}", r.describe());
            if r.status == 403 || r.status == 404 {
                break;
            }
            assert_eq!(r.body_str(), "SWAP-ORIGINAL", "GET /swap.txt\n{}", r.describe());
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "still served 5 s after the swap (cache_revalidate 300ms)");
        }
    }

    fn directory_redirect_is_never_an_open_redirect(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        // A Location built from the raw target would be `//evil.example/../sub/`,
        // which a browser follows to evil.example.
        for target in [
            &b"//evil.example/../sub"[..],
            b"///evil.example/../sub",
            b"//evil.example/%2e%2e/sub",
            b"http://x//evil.example/../sub",
            b"/%2fevil.example/../sub",
            b"//evil.example/..//sub?q=1",
        ] {
            let shown = String::from_utf8_lossy(target).into_owned();
            let r = raw_get(&srv, target).unwrap_or_else(|err| panic!("GET {shown}: {err}"));
            assert_status(&r, 301, &format!("GET {shown}"));
            let loc = r.header("location").unwrap_or("");
            let want = if shown.ends_with("?q=1") { "/sub/?q=1" } else { "/sub/" };
            assert_eq!(loc, want, "GET {shown}: Location\n{}", r.describe());
            assert!(!loc.starts_with("//") && !loc.contains("evil"), "GET {shown}: Location {loc:?}");
        }
        // Names that need escaping come back escaped, still local.
        std::fs::create_dir(site.path("a b")).unwrap();
        let r = raw_get(&srv, b"//a%20b").unwrap();
        assert_status(&r, 301, "GET //a%20b");
        assert_eq!(r.header("location"), Some("/a%20b/"), "{}", r.describe());
    }

    /// Hidden stays hidden wherever a link points (issue 18, point 2): a
    /// path that reaches a dot-name through symlinks is 404 and listings
    /// never name such a link; `.well-known` keeps its exception; a root
    /// that itself lives under a dot-directory (`.sites/www`) keeps working.
    /// With serve_dotfiles = true the same links are followed.
    fn hidden_names_behind_links_are_404_and_never_listed(e) {
        use std::os::unix::fs::symlink;
        let site = Site::empty();
        let w = site.base.join(".sites/www");
        let write = |rel: &str, data: &[u8]| {
            let p = w.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        write(".git/config", DOTFILE_MARKER.as_bytes());
        write(".env", DOTFILE_MARKER.as_bytes());
        write("d/g.txt", b"VISIBLE-G");
        write(".well-known/acme-challenge/tok", b"ACME-TOKEN");
        for (target, link) in [
            (".git", "gitlink"),
            (".env", "envlink"),
            ("chain2", "chain1"),
            ("d/../.git", "chain2"),
            ("../.env", "d/up-env"),
            ("../chain1/config", "d/deep"),
            (".well-known/acme-challenge", "acme"),
            ("d", "ok"),
            ("ok/g.txt", "okchain"),
        ] {
            symlink(target, w.join(link)).unwrap();
        }
        let hidden = [
            "/gitlink/config", "/gitlink/", "/gitlink", "/envlink", "/chain1/config", "/chain1/",
            "/chain2/config", "/d/up-env", "/d/deep", "/ok/up-env", "/%67itlink/config",
        ];
        let srv = start_or_skip!(e, "autoindex = true", &w);
        for path in hidden {
            let r = raw_get(&srv, path.as_bytes()).unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert!(!r.body_str().contains(DOTFILE_MARKER), "GET {path}: served a dotfile through a link\n{}", r.describe());
            assert_status(&r, 404, &format!("GET {path} (a link to a hidden name)"));
        }
        for (path, body) in [("/okchain", "VISIBLE-G"), ("/ok/g.txt", "VISIBLE-G"), ("/acme/tok", "ACME-TOKEN"),
                             ("/.well-known/acme-challenge/tok", "ACME-TOKEN")] {
            let r = get(srv.addr(), path);
            assert_status(&r, 200, &format!("GET {path} (root under .sites)"));
            assert_eq!(r.body_str(), body, "GET {path}");
        }
        for (path, want, never) in [
            ("/", &["acme/", "ok/", "okchain", "d/"][..], &["gitlink", "envlink", "chain1", "chain2"][..]),
            ("/d/", &["g.txt"][..], &["up-env", "deep"][..]),
            ("/ok/", &["g.txt"][..], &["up-env", "deep"][..]),
        ] {
            let r = get(srv.addr(), path);
            assert_status(&r, 200, &format!("GET {path} (listing)"));
            let body = r.body_str();
            for name in want {
                assert!(body.contains(&format!("href=\"{name}\"")), "GET {path}: {name} not listed\n{body}");
            }
            for name in never {
                assert!(!body.contains(name), "GET {path}: lists {name}, a link to a hidden name\n{body}");
            }
        }
        drop(srv);
        let srv = start_or_skip!(e, "autoindex = true\nserve_dotfiles = true", &w);
        for path in ["/gitlink/config", "/chain1/config", "/envlink", "/d/up-env", "/d/deep"] {
            let r = get(srv.addr(), path);
            assert_status(&r, 200, &format!("GET {path} with serve_dotfiles = true"));
            assert_eq!(r.body_str(), DOTFILE_MARKER, "GET {path}");
        }
        let body = get(srv.addr(), "/").body_str();
        assert!(body.contains("href=\"gitlink/\""), "GET / with serve_dotfiles = true: gitlink not listed\n{body}");
    }
}
