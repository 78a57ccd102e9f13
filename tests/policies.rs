//! Responder policies: MIME overrides and the default type, the symlink
//! policy, and `/.well-known/` with dotfiles hidden.

#[macro_use]
mod common;

use common::*;

/// How much the server has logged so far (startup lines, such as the
/// warning about running as root, are not the requests' business).
fn log_mark(srv: &Server) -> usize {
    srv.stderr_text().len()
}

/// The error log (stderr) has no warning or error line since `mark`:
/// refusing a path is a 404, not something to report. A worker writes its
/// pending error-log lines before each access-log flush, so once a barrier
/// request shows in the access log, every earlier request's lines are out.
fn assert_quiet_error_log(srv: &Server, mark: usize, ctx: &str) {
    let barrier = "/zz-error-log-barrier";
    get(srv.addr(), barrier);
    assert!(
        srv.wait_access_log(IO_TIMEOUT, |l| l.contains(barrier))
            .is_some(),
        "{ctx}: the barrier request never reached the access log"
    );
    let text = srv.stderr_text();
    let bad: Vec<&str> = text[mark..]
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains(" error ") || l.contains(" warn ") || l.contains("open:")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{ctx}: error log lines:\n{}",
        bad.join("\n")
    );
}

/// The standard site plus `linkdir -> sub` (a directory symlink inside the
/// root) and `BASE/www-link -> www` (a symlink *to* the root).
fn symlink_site() -> Site {
    let site = Site::new();
    std::os::unix::fs::symlink("sub", site.path("linkdir")).unwrap();
    std::os::unix::fs::symlink("www", site.base.join("www-link")).unwrap();
    site
}

fn get_ok(srv: &Server, path: &str, body: &str) {
    let r = get(srv.addr(), path);
    assert_status(&r, 200, path);
    assert_eq!(r.body_str(), body, "GET {path}");
}

fn get_404(srv: &Server, path: &str) {
    let r = get(srv.addr(), path);
    assert!(
        !r.body_str().contains(SECRET_MARKER),
        "GET {path}: LEAKED\n{}",
        r.describe()
    );
    assert_status(&r, 404, path);
}

engine_tests! {
    fn mime_overrides_and_default_type(e) {
        let site = Site::new();
        site.write("a.wasm", b"\0asm\x01\0\0\0");
        site.write("b.txt", b"B-TEXT");
        site.write("c.unknownext", b"C-UNKNOWN");
        site.write("d.TXT", b"D-TEXT");
        let cfg = "mime_types = { wasm = \"application/wasm\", TXT = \"text/x-custom\" }\n\
                   default_type = \"text/plain\"";
        let srv = start_or_skip!(e, cfg, &site.root);
        for (path, want, body) in [
            ("/a.wasm", "application/wasm", &b"\0asm\x01\0\0\0"[..]),
            ("/b.txt", "text/x-custom", b"B-TEXT"),
            ("/d.TXT", "text/x-custom", b"D-TEXT"),
            ("/c.unknownext", "text/plain", b"C-UNKNOWN"),
            ("/data.xyz", "text/plain", b"UNKNOWN-EXTENSION-DATA\x00\x01\x02"),
            // Built-in types that are not overridden are unchanged.
            ("/style.css", "text/css; charset=utf-8", STYLE_CSS.as_bytes()),
            ("/", "text/html; charset=utf-8", INDEX_HTML.as_bytes()),
        ] {
            let r = get(srv.addr(), path);
            assert_status(&r, 200, path);
            assert_eq!(r.header("content-type"), Some(want), "GET {path}\n{}", r.describe());
            assert_bytes_eq(&r.body, body, path);
            let r = head(srv.addr(), path);
            assert_eq!(r.header("content-type"), Some(want), "HEAD {path}\n{}", r.describe());
        }
    }

    fn default_mime_config_is_unchanged(e) {
        let site = Site::new();
        site.write("b.txt", b"B-TEXT");
        let srv = start_or_skip!(e, "", &site.root);
        for (path, want) in [
            ("/b.txt", "text/plain; charset=utf-8"),
            ("/data.xyz", "application/octet-stream"),
            ("/logo.png", "image/png"),
        ] {
            let r = get(srv.addr(), path);
            assert_status(&r, 200, path);
            assert_eq!(r.header("content-type"), Some(want), "GET {path}\n{}", r.describe());
        }
    }

    fn symlinks_within_root_by_default(e) {
        let site = symlink_site();
        let srv = start_or_skip!(e, "", &site.root);
        let mark = log_mark(&srv);
        get_ok(&srv, "/link-inside.css", STYLE_CSS);
        get_ok(&srv, "/linkdir/page.html", "<p>SUB-PAGE</p>");
        get_ok(&srv, "/linkdir/", SUB_INDEX_HTML);
        for path in ["/link-to-secret", "/rel-link-to-secret", "/link-dir-out/secret.txt"] {
            get_404(&srv, path);
        }
        assert_quiet_error_log(&srv, mark, "symlinks = within_root");
    }

    fn symlinks_deny_refuses_every_symlink_beneath_the_root(e) {
        let site = symlink_site();
        let srv = start_or_skip!(e, "symlinks = \"deny\"", &site.root);
        let mark = log_mark(&srv);
        for path in [
            "/link-inside.css", "/link-to-secret", "/rel-link-to-secret",
            "/link-dir-out/secret.txt", "/link-dir-out/",
            "/linkdir/page.html", "/linkdir/", "/linkdir", "/linkdir/../style.css/../link-inside.css",
        ] {
            get_404(&srv, path);
        }
        // Plain files and directories are unaffected.
        get_ok(&srv, "/style.css", STYLE_CSS);
        get_ok(&srv, "/sub/page.html", "<p>SUB-PAGE</p>");
        get_ok(&srv, "/", INDEX_HTML);
        assert_quiet_error_log(&srv, mark, "symlinks = deny");
    }

    fn symlinks_deny_allows_a_root_that_is_a_symlink(e) {
        // root = BASE/www-link -> BASE/www, as in /srv/site -> /srv/releases/42.
        let site = symlink_site();
        let srv = start_or_skip!(e, "symlinks = \"deny\"", &site.base.join("www-link"));
        let mark = log_mark(&srv);
        get_ok(&srv, "/", INDEX_HTML);
        get_ok(&srv, "/style.css", STYLE_CSS);
        get_ok(&srv, "/sub/", SUB_INDEX_HTML);
        get_404(&srv, "/link-inside.css");
        get_404(&srv, "/linkdir/page.html");
        assert_quiet_error_log(&srv, mark, "symlinks = deny, root through a symlink");
    }

    fn well_known_is_served_with_dotfiles_hidden(e) {
        let site = Site::new();
        site.write(".well-known/acme-challenge/tok", b"TOK.ACME-KEY-AUTHORIZATION");
        site.write(".well-known/security.txt", b"Contact: mailto:security@example.test\n");
        site.write(".well-known/.hidden", DOTFILE_MARKER.as_bytes());
        site.write(".well-known/acme-challenge/.hidden", DOTFILE_MARKER.as_bytes());
        site.write(".git/config", DOTFILE_MARKER.as_bytes());
        site.write(".env", DOTFILE_MARKER.as_bytes());
        site.write("a/.well-known/x", DOTFILE_MARKER.as_bytes());
        let srv = start_or_skip!(e, "", &site.root);
        for path in [
            "/.well-known/acme-challenge/tok",
            "/%2ewell-known/acme-challenge/tok",
            "/%2Ewell-known/acme-challenge/%74ok",
            "/sub/../.well-known/acme-challenge/tok",
        ] {
            get_ok(&srv, path, "TOK.ACME-KEY-AUTHORIZATION");
        }
        let r = get(srv.addr(), "/.well-known/security.txt");
        assert_status(&r, 200, "/.well-known/security.txt");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"), "{}", r.describe());
        for path in [
            "/.git/config", "/.env", "/.secret",
            "/.well-known/.hidden", "/.well-known/%2ehidden", "/.well-known/acme-challenge/.hidden",
            "/.well-known/../.env", "/.well-known/%2e%2e/.env", "/.well-known/../.git/config",
            "/a/.well-known/x", "/a/%2ewell-known/x",
            // A directory without an index is not listed (autoindex is off).
            "/.well-known/", "/.well-known/acme-challenge/", "/%2ewell-known/",
        ] {
            let r = get(srv.addr(), path);
            assert!(!r.body_str().contains(DOTFILE_MARKER), "GET {path}: served a dotfile\n{}", r.describe());
            assert_status(&r, 404, path);
        }
        // The directory itself redirects to its slash form, like any other.
        let r = get(srv.addr(), "/.well-known");
        assert_status(&r, 301, "/.well-known");
        assert_eq!(r.header("location"), Some("/.well-known/"), "{}", r.describe());
    }

    fn well_known_dotfiles_are_served_when_dotfiles_are(e) {
        let site = Site::new();
        site.write(".well-known/.hidden", b"WELL-KNOWN-DOT");
        let srv = start_or_skip!(e, "serve_dotfiles = true", &site.root);
        get_ok(&srv, "/.well-known/.hidden", "WELL-KNOWN-DOT");
        get_ok(&srv, "/.secret", DOTFILE_MARKER);
    }
}
