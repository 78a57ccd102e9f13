//! Static file serving: content, types, headers, directories, 404/403, big files.

#[macro_use]
mod common;

use common::*;

/// GET a path and check common headers plus status/body/content-type.
fn expect_file(srv: &Server, path: &str, body: &[u8], ctype: &str) -> Response {
    let r = get(srv.addr(), path);
    let ctx = format!("GET {path}");
    check_common(&r, &ctx);
    assert_status(&r, 200, &ctx);
    assert_bytes_eq(&r.body, body, &ctx);
    assert_eq!(
        r.header("content-type"),
        Some(ctype),
        "{ctx}: Content-Type\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str()),
        "{ctx}: Content-Length"
    );
    r
}

engine_tests! {
    fn get_root_serves_index(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let r = expect_file(&srv, "/", INDEX_HTML.as_bytes(), "text/html; charset=utf-8");
        let lm = r.header("last-modified").unwrap_or_else(|| panic!("GET /: no Last-Modified\n{}", r.describe()));
        assert!(parse_imf_fixdate(lm).is_some(), "GET /: Last-Modified {lm:?} is not an IMF-fixdate");
        assert_eq!(lm, imf_fixdate(mtime_secs(&site.path("index.html"))), "GET /: Last-Modified is not index.html's mtime");
    }

    fn get_index_html_explicitly(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let r = expect_file(&srv, "/index.html", INDEX_HTML.as_bytes(), "text/html; charset=utf-8");
        assert_eq!(r.header("last-modified").map(str::to_string), Some(imf_fixdate(mtime_secs(&site.path("index.html")))));
    }

    fn content_types(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        expect_file(&srv, "/style.css", STYLE_CSS.as_bytes(), "text/css; charset=utf-8");
        expect_file(&srv, "/app.js", APP_JS.as_bytes(), "text/javascript; charset=utf-8");
        expect_file(&srv, "/logo.png", &png_bytes(), "image/png");
        expect_file(&srv, "/data.xyz", &site.read("data.xyz"), "application/octet-stream");
        expect_file(&srv, "/sub/page.html", &site.read("sub/page.html"), "text/html; charset=utf-8");
        for p in ["/style.css", "/app.js", "/logo.png", "/data.xyz"] {
            let r = get(srv.addr(), p);
            let lm = r.header("last-modified").unwrap_or_else(|| panic!("GET {p}: no Last-Modified"));
            assert_eq!(lm, imf_fixdate(mtime_secs(&site.path(&p[1..]))), "GET {p}: Last-Modified");
        }
    }

    /// Extensions longer than most: `webmanifest` (11 bytes) was once past
    /// the lookup's reach and served as application/octet-stream.
    fn long_extensions_get_their_type(e) {
        let site = Site::new();
        let manifest = br#"{"name": "tandem"}"#;
        site.write("site.webmanifest", manifest);
        site.write("UPPER.WEBMANIFEST", manifest);
        let srv = start_or_skip!(e, "", &site.root);
        expect_file(&srv, "/site.webmanifest", manifest, "application/manifest+json");
        expect_file(&srv, "/UPPER.WEBMANIFEST", manifest, "application/manifest+json");
    }

    /// Types a site moved from nginx (its stock mime.types) relies on: an
    /// HLS playlist and its segments, feeds, XHTML, office documents,
    /// TIFF, QuickTime. They were application/octet-stream, which players
    /// refuse and browsers download instead of showing.
    fn types_from_nginx_mime_types(e) {
        let site = Site::new();
        let cases = [
            ("live.m3u8", "application/vnd.apple.mpegurl"),
            ("seg0.ts", "video/mp2t"),
            ("feed.rss", "application/rss+xml"),
            ("feed.atom", "application/atom+xml"),
            ("page.xhtml", "application/xhtml+xml"),
            ("report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ("sheet.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ("old.doc", "application/msword"),
            ("scan.TIFF", "image/tiff"),
            ("clip.mov", "video/quicktime"),
            ("font.eot", "application/vnd.ms-fontobject"),
            ("a.7z", "application/x-7z-compressed"),
        ];
        for (name, _) in cases {
            site.write(name, name.as_bytes());
        }
        let srv = start_or_skip!(e, "", &site.root);
        for (name, ty) in cases {
            expect_file(&srv, &format!("/{name}"), name.as_bytes(), ty);
        }
    }

    fn query_string_is_ignored_for_files(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        expect_file(&srv, "/style.css?v=123&x=y", STYLE_CSS.as_bytes(), "text/css; charset=utf-8");
    }

    fn head_has_get_headers_and_no_body(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for path in ["/", "/style.css", "/logo.png", "/nope-missing.html"] {
            let g = get(srv.addr(), path);
            // HEAD then GET pipelined on one connection: if HEAD carried a
            // body, the GET's response would not parse / would be wrong.
            let mut c = srv.connect();
            let req = format!(
                "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            );
            c.send(req.as_bytes());
            let h = c.read_response("HEAD");
            let ctx = format!("HEAD {path}");
            check_common(&h, &ctx);
            assert_eq!(h.status, g.status, "{ctx}: status differs from GET\n{}", h.describe());
            for name in ["content-length", "content-type", "last-modified"] {
                assert_eq!(h.header(name), g.header(name), "{ctx}: {name} differs from GET");
            }
            let g2 = c.read_response("GET");
            assert_eq!(g2.status, g.status, "GET {path} after HEAD (HEAD must not send a body)\n{}", g2.describe());
            assert_bytes_eq(&g2.body, &g.body, &format!("GET {path} after HEAD"));
            c.expect_closed(&format!("GET {path} with Connection: close after HEAD"));
        }
    }

    fn subdirectory_with_slash_serves_its_index(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        expect_file(&srv, "/sub/", SUB_INDEX_HTML.as_bytes(), "text/html; charset=utf-8");
        expect_file(&srv, "/sub/index.html", SUB_INDEX_HTML.as_bytes(), "text/html; charset=utf-8");
    }

    fn directory_without_slash_redirects(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for (path, loc) in [
            ("/sub", "/sub/"),
            ("/sub?a=1", "/sub/?a=1"),
            ("/sub?a=1&b=two", "/sub/?a=1&b=two"),
            ("/noindex", "/noindex/"),
            ("/dir", "/dir/"),
        ] {
            let r = get(srv.addr(), path);
            let ctx = format!("GET {path}");
            check_common(&r, &ctx);
            assert_status(&r, 301, &ctx);
            assert_eq!(r.header("location"), Some(loc), "{ctx}: Location\n{}", r.describe());
            let h = head(srv.addr(), path);
            assert_status(&h, 301, &format!("HEAD {path}"));
            assert_eq!(h.header("location"), Some(loc), "HEAD {path}: Location");
        }
    }

    fn directory_without_index_is_404(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/noindex/");
        check_common(&r, "GET /noindex/");
        assert_status(&r, 404, "GET /noindex/");
        assert!(!r.body_str().contains("file.txt"), "GET /noindex/ must not list the directory\n{}", r.describe());
        // The file inside is still served.
        let r = get(srv.addr(), "/noindex/file.txt");
        assert_status(&r, 200, "GET /noindex/file.txt");
        assert_eq!(r.body_str(), "NOINDEX-FILE");
    }

    fn custom_404_page(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for path in ["/missing.html", "/no/such/dir/file.css", "/sub/missing"] {
            let r = get(srv.addr(), path);
            let ctx = format!("GET {path}");
            check_common(&r, &ctx);
            assert_status(&r, 404, &ctx);
            assert_eq!(r.body_str(), NOT_FOUND_HTML, "{ctx}: body should be 404.html");
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{ctx}: Content-Type");
            let h = head(srv.addr(), path);
            assert_status(&h, 404, &format!("HEAD {path}"));
            assert_eq!(h.header("content-length"), Some(NOT_FOUND_HTML.len().to_string().as_str()), "HEAD {path}: Content-Length");
        }
    }

    fn plain_404_without_404_page(e) {
        let site = Site::empty();
        site.write("index.html", INDEX_HTML.as_bytes());
        let srv = start_or_skip!(e, "", &site.root);
        let r = get(srv.addr(), "/missing.html");
        check_common(&r, "GET /missing.html (no 404.html)");
        assert_status(&r, 404, "GET /missing.html (no 404.html)");
        // The connection stays usable after a 404.
        let mut c = srv.connect();
        let r1 = c.roundtrip(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r1, 404, "GET /missing (keep-alive)");
        let r2 = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_status(&r2, 200, "GET / after a 404 on the same connection");
    }

    fn unreadable_file_is_403(e) {
        let site = Site::new();
        site.write("locked.txt", b"LOCKED-CONTENT");
        set_mode(&site.path("locked.txt"), 0o000);
        site.write("noexec/inner.txt", b"NOEXEC-CONTENT");
        set_mode(&site.path("noexec"), 0o644);
        let mut extra = "";
        if running_as_root() {
            // Root reads mode-000 files anyway: run the workers as `nobody`.
            if uid_of_user("nobody").is_none() {
                skip("running as root and there is no `nobody` user, so a mode-000 file is readable");
                return;
            }
            extra = "user = \"nobody\"\naccess_log = \"off\"";
        }
        let srv = start_or_skip!(e, extra, &site.root);
        let r0 = get(srv.addr(), "/style.css");
        assert_status(&r0, 200, "GET /style.css");
        if running_as_root() {
            let uid = uid_of_pid(&srv.pid().to_string());
            if uid != uid_of_user("nobody") {
                skip(&format!(
                    "running as root and the server did not switch to user nobody (uid {uid:?}), so a mode-000 file is readable"
                ));
                return;
            }
        }
        let r = get(srv.addr(), "/locked.txt");
        check_common(&r, "GET /locked.txt (mode 000)");
        assert_status(&r, 403, "GET /locked.txt (mode 000)");
        assert!(!r.body_str().contains("LOCKED-CONTENT"));
        let r = get(srv.addr(), "/noexec/inner.txt");
        check_common(&r, "GET /noexec/inner.txt (directory mode 644)");
        assert_status(&r, 403, "GET /noexec/inner.txt (directory without search permission)");
        assert!(!r.body_str().contains("NOEXEC-CONTENT"));
    }

    fn big_file_get_is_exact(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let want = big_bytes();
        let r = get(srv.addr(), "/big.bin");
        check_common(&r, "GET /big.bin");
        assert_status(&r, 200, "GET /big.bin");
        assert_eq!(r.header("content-length"), Some(BIG_SIZE.to_string().as_str()));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_bytes_eq(&r.body, &want, "GET /big.bin");
    }

    fn big_file_head(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        // HEAD followed by a small GET on the same connection: no body bytes
        // of big.bin may leak after the HEAD response.
        c.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let h = c.read_response("HEAD");
        check_common(&h, "HEAD /big.bin");
        assert_status(&h, 200, "HEAD /big.bin");
        assert_eq!(h.header("content-length"), Some(BIG_SIZE.to_string().as_str()));
        let g = c.read_response("GET");
        assert_status(&g, 200, "GET /style.css after HEAD /big.bin");
        assert_bytes_eq(&g.body, STYLE_CSS.as_bytes(), "GET /style.css after HEAD /big.bin");
        c.expect_open("after HEAD /big.bin + GET");
    }

    fn big_files_back_to_back_on_one_connection(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let want = big_bytes();
        let mut c = srv.connect();
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        for i in 0..2 {
            let r = c.read_response("GET");
            assert_status(&r, 200, &format!("pipelined GET /big.bin #{i}"));
            assert_bytes_eq(&r.body, &want, &format!("pipelined GET /big.bin #{i}"));
        }
        let r = c.read_response("GET");
        assert_bytes_eq(&r.body, APP_JS.as_bytes(), "GET /app.js after two big bodies");
        c.expect_closed("pipelined big GETs ending with Connection: close");
    }

    fn big_file_parallel_downloads(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let want = std::sync::Arc::new(big_bytes());
        let addr = srv.addr();
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let want = want.clone();
                std::thread::spawn(move || {
                    let r = get(addr, "/big.bin");
                    assert_status(&r, 200, &format!("parallel GET /big.bin #{i}"));
                    assert_bytes_eq(&r.body, &want, &format!("parallel GET /big.bin #{i}"));
                })
            })
            .collect();
        for h in handles {
            h.join().expect("download thread panicked");
        }
    }

    fn slow_reader_gets_whole_big_file(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        // Read in small pieces so the server sees a full socket buffer many times.
        use std::io::Read;
        c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut all = Vec::new();
        let mut chunk = [0u8; 1500];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("slow read of /big.bin after {} bytes: {e}", all.len()),
            }
        }
        let r = frame::split_response(&all).unwrap_or_else(|e| panic!("slow GET /big.bin: {e}"));
        assert!(r.head.starts_with("HTTP/1.1 200"), "slow GET /big.bin: {}", r.head);
        assert_bytes_eq(&r.body, &big_bytes(), "slow GET /big.bin");
    }

    /// A body read from the disk and the same body from the page cache take
    /// different paths on io_uring (a ring splice that may wait for the
    /// disk, or direct `sendfile` calls): both must give the same bytes, for
    /// the whole file, a range at an odd offset, and two pipelined.
    fn big_file_cold_then_warm(e) {
        let site = Site::new();
        let want: Vec<u8> = (0..3 * 1024 * 1024 + 4321u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        site.write("cold.bin", &want);
        let path = site.root.join("cold.bin");
        let srv = start_or_skip!(e, "", &site.root);
        let (a, b) = (123_457usize, 2_500_001usize);
        let range = format!("GET /cold.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={a}-{b}\r\n\r\n");
        for round in ["cold", "warm"] {
            if round == "cold" {
                evict(&path);
            }
            let r = get(srv.addr(), "/cold.bin");
            assert_status(&r, 200, &format!("{round} GET /cold.bin"));
            assert_bytes_eq(&r.body, &want, &format!("{round} GET /cold.bin"));
            if round == "cold" {
                evict(&path);
            }
            let mut c = srv.connect();
            c.send(format!("{range}{range}GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            for i in 0..2 {
                let r = c.read_response("GET");
                assert_status(&r, 206, &format!("{round} range #{i}"));
                assert_bytes_eq(&r.body, &want[a..=b], &format!("{round} range #{i}"));
            }
            let r = c.read_response("GET");
            assert_bytes_eq(&r.body, APP_JS.as_bytes(), &format!("{round}: GET /app.js after two ranges"));
            c.expect_open(&format!("{round}: after the ranges"));
        }
    }

    /// Without the cache a change is served at once; with it, within
    /// `cache_revalidate` (and never a mix of versions).
    fn file_changed_between_requests_is_served_fresh(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "cache_size = 0", &site.root);
        site.write("changing.txt", b"VERSION-ONE");
        let r = get(srv.addr(), "/changing.txt");
        assert_eq!(r.body, b"VERSION-ONE");
        site.write("changing.txt", b"VERSION-TWO-LONGER");
        let r = get(srv.addr(), "/changing.txt");
        assert_eq!(r.body_str(), "VERSION-TWO-LONGER", "GET /changing.txt after rewrite\n{}", r.describe());
        drop(srv);

        let srv = start_or_skip!(e, "workers = 1\ncache_revalidate = \"300ms\"", &site.root);
        site.write("changing.txt", b"VERSION-ONE");
        assert_eq!(get(srv.addr(), "/changing.txt").body, b"VERSION-ONE");
        site.write("changing.txt", b"VERSION-TWO-LONGER");
        let t0 = std::time::Instant::now();
        loop {
            let r = get(srv.addr(), "/changing.txt");
            let body = r.body_str();
            assert!(body == "VERSION-ONE" || body == "VERSION-TWO-LONGER", "a mix: {}", r.describe());
            if body == "VERSION-TWO-LONGER" {
                break;
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "the change was not seen in 5 s (cache_revalidate 300ms)");
        }
    }

    /// A file replaced by another of the same size and mtime (a deploy
    /// that keeps mtimes: `cp -p`, `rsync -t`, tar, reproducible builds),
    /// by rename or rewritten in place, is a change: within
    /// `cache_revalidate` the new bytes are served, as nginx (which holds
    /// no bytes) would, not the entry read from the old file.
    fn same_size_and_mtime_replacement_is_served_within_revalidate(e) {
        let site = Site::new();
        site.write("same.txt", b"VERSION-AAA");
        let srv = start_or_skip!(e, "workers = 1\ncache_revalidate = \"300ms\"", &site.root);
        let path = site.root.join("same.txt");
        let mut want = "VERSION-AAA";
        for (how, next) in [("renamed over", "VERSION-BBB"), ("rewritten in place", "VERSION-CCC")] {
            for _ in 0..3 {
                assert_eq!(get(srv.addr(), "/same.txt").body_str(), want, "{how}: before");
            }
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            if how == "renamed over" {
                let tmp = site.root.join(".same.txt.new");
                std::fs::write(&tmp, next).unwrap();
                std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            } else {
                std::fs::write(&path, next).unwrap();
                std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
            }
            assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
            let t0 = std::time::Instant::now();
            loop {
                let r = get(srv.addr(), "/same.txt");
                let body = r.body_str();
                assert!(body == want || body == next, "{how}: {}", r.describe());
                if body == next {
                    break;
                }
                assert!(
                    t0.elapsed() < std::time::Duration::from_secs(5),
                    "{how}: still the old bytes after 5 s (cache_revalidate 300ms)"
                );
            }
            want = next;
        }
    }

    /// A directory with no precompressed file is known as such for
    /// `cache_revalidate`, the cache on or off: a sibling added to it is
    /// served within that interval, with its `Vary`, and meanwhile every
    /// answer is the identity or the sibling, never a mix of fields.
    fn sibling_added_to_a_plain_directory_is_served_within_revalidate(e) {
        let site = Site::new();
        site.write("d/a.css", b"body{color:red}");
        for conf in ["cache_size = 0", ""] {
            let srv = start_or_skip!(e, &format!("workers = 1\ncache_revalidate = \"300ms\"\n{conf}"), &site.root);
            let ask = |ae: &str| {
                request(srv.addr(), format!("GET /d/a.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {ae}\r\nConnection: close\r\n\r\n").as_bytes())
            };
            let r = ask("gzip");
            assert_status(&r, 200, &format!("{conf}: before the sibling"));
            assert_eq!(r.header("content-encoding"), None, "{conf}: {}", r.describe());
            assert_eq!(r.header("vary"), None, "{conf}: {}", r.describe());
            site.write("d/a.css.gz", b"GZIP-SIBLING");
            let t0 = std::time::Instant::now();
            loop {
                let r = ask("gzip");
                assert_status(&r, 200, conf);
                match r.header("content-encoding") {
                    Some("gzip") => {
                        assert_eq!(r.body, b"GZIP-SIBLING", "{conf}: {}", r.describe());
                        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{conf}: {}", r.describe());
                        break;
                    }
                    None => assert_eq!(r.body, b"body{color:red}", "{conf}: {}", r.describe()),
                    other => panic!("{conf}: {other:?}"),
                }
                assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{conf}: the sibling was not served in 5 s");
            }
            // The identity now says it varies too.
            let r = ask("identity");
            assert_eq!(r.body, b"body{color:red}", "{conf}: {}", r.describe());
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{conf}: {}", r.describe());
            drop(srv);
            std::fs::remove_file(site.root.join("d/a.css.gz")).unwrap();
        }
    }

    /// One cache entry per file (issue 18, point 11): every spelling of a
    /// path is answered from the entry the first one made. Seen from outside
    /// by changing the file after the first request: within
    /// `cache_revalidate`, the aliases get the cached version (one entry),
    /// not the new one (an entry each, read from disk).
    fn path_aliases_share_one_cache_entry(e) {
        let site = Site::new();
        site.write("a.css", b"CACHED-VERSION");
        let srv = start_or_skip!(e, "workers = 1\ncache_revalidate = \"60s\"", &site.root);
        assert_eq!(get(srv.addr(), "/a.css").body_str(), "CACHED-VERSION");
        site.write("a.css", b"NEW-ON-DISK-VERSION");
        for alias in ["//a.css", "/%61.css", "/./a.css", "/x/../a.css", "/a.css?v=2"] {
            let r = get(srv.addr(), alias);
            assert_status(&r, 200, &format!("GET {alias}"));
            assert_eq!(r.body_str(), "CACHED-VERSION", "GET {alias}: not the entry /a.css made\n{}", r.describe());
        }
    }
}

/// Drop a file's pages from the page cache (it was written and synced, so
/// they are clean), and check that it worked where the kernel can say. Pages
/// still referenced (a socket buffer that has not let go of them yet, a
/// per-CPU LRU batch) are skipped by the kernel: ask again until they are
/// gone.
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open to evict");
    f.sync_all().expect("fsync");
    let t0 = std::time::Instant::now();
    loop {
        // SAFETY: advice on an open file; no memory is passed.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0, "posix_fadvise(DONTNEED)");
        let Some(cached) = cached_pages(&f) else {
            return;
        };
        if cached < 16 {
            return;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{} still has {cached} pages in the page cache after DONTNEED for 5 s",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Pages of the file in the page cache (`cachestat(2)`), when the kernel says.
fn cached_pages(f: &std::fs::File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    if !cfg!(target_arch = "x86_64") && !cfg!(target_arch = "aarch64") {
        return None;
    }
    let range = [0u64, 0];
    let mut st = [0u64; 5];
    // SAFETY: cachestat(fd, range, stat, 0) reads two u64s and writes five,
    // both live arrays of that size.
    let r = unsafe { libc::syscall(451, f.as_raw_fd(), range.as_ptr(), st.as_mut_ptr(), 0) };
    (r == 0).then_some(st[0])
}
