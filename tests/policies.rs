//! Responder policies: MIME overrides and the default type, the symlink
//! policy, and `/.well-known/` with dotfiles hidden.

#[macro_use]
mod common;

use common::*;

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
}
