//! HTTP/1.1 protocol behaviour: methods, persistence, pipelining, errors and limits.

#[macro_use]
mod common;

use common::*;

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Send `req` on a fresh connection, expect `status`, a `Connection: close`
/// header and the server closing the connection afterwards.
fn expect_error_and_close(srv: &Server, req: &[u8], status: u16) -> Response {
    let mut c = srv.connect();
    // The server may answer and close before it has read everything we send.
    let _ = c.try_send(req);
    let r = c
        .try_read_response(&request_method(req))
        .unwrap_or_else(|e| panic!("request {}: expected {status}, but: {e}", show(req)));
    let ctx = format!("request {}", show(req));
    check_common(&r, &ctx);
    assert_eq!(
        r.status,
        status,
        "{ctx}: expected {status}, got:\n{}",
        r.describe()
    );
    assert!(
        r.connection_has("close"),
        "{ctx}: {status} response lacks `Connection: close`\n{}",
        r.describe()
    );
    match c.read_to_close(CLOSE_TIMEOUT) {
        Ok(rest) => assert!(
            rest.is_empty(),
            "{ctx}: bytes after the {status} response: {}",
            show(&rest)
        ),
        Err(rest) => panic!(
            "{ctx}: server did not close after {status} (received: {})",
            show(&rest)
        ),
    }
    r
}

/// Fresh connection, one request, expect `status` (connection state not checked).
fn expect_status(srv: &Server, req: &[u8], status: u16) -> Response {
    let r = srv.connect().roundtrip(req);
    let ctx = format!("request {}", show(req));
    check_common(&r, &ctx);
    assert_eq!(
        r.status,
        status,
        "{ctx}: expected {status}, got:\n{}",
        r.describe()
    );
    r
}

/// After error tests: the server still serves normally.
fn still_serving(srv: &Server) {
    let r = get(srv.addr(), "/");
    assert_status(&r, 200, "GET / (server still healthy afterwards)");
    assert_eq!(r.body_str(), INDEX_HTML);
}

engine_tests! {
    // ---------------------------------------------------------------- methods

    fn options_is_204_with_allow(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for req in [
            &b"OPTIONS /index.html HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"OPTIONS /does-not-exist HTTP/1.1\r\nHost: t\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        ] {
            let mut c = srv.connect();
            let r = c.roundtrip(req);
            let ctx = format!("request {}", show(req));
            check_common(&r, &ctx);
            assert_eq!(r.status, 204, "{ctx}\n{}", r.describe());
            assert_eq!(r.header("allow"), Some(ALLOW), "{ctx}: Allow\n{}", r.describe());
            assert!(r.body.is_empty());
            // Nothing follows the 204 and the connection stays usable.
            let r2 = c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_status(&r2, 200, "GET after OPTIONS on the same connection");
            assert_bytes_eq(&r2.body, STYLE_CSS.as_bytes(), "GET after OPTIONS");
        }
    }

    fn other_known_methods_are_405(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for req in [
            &b"POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
            b"PUT /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b"DELETE /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            b"PATCH /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b"TRACE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            b"CONNECT tandem.test:443 HTTP/1.1\r\nHost: tandem.test:443\r\nConnection: close\r\n\r\n",
        ] {
            let r = expect_status(&srv, req, 405);
            assert_eq!(r.header("allow"), Some(ALLOW), "request {}: Allow\n{}", show(req), r.describe());
            assert!(!r.body_str().contains("ROOT-INDEX-PAGE"));
        }
        // A 405 with a small body on a persistent connection: the next request works.
        let mut c = srv.connect();
        c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response("POST");
        assert_status(&r, 405, "POST /x with 5-byte body");
        if !r.connection_has("close") {
            let r2 = c.read_response("GET");
            assert_status(&r2, 200, "GET /app.js pipelined after POST with body");
            assert_bytes_eq(&r2.body, APP_JS.as_bytes(), "GET /app.js after POST");
        }
        still_serving(&srv);
    }

    fn unknown_method_is_501(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for req in [
            &b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"get / HTTP/1.1\r\nHost: t\r\n\r\n", // methods are case-sensitive
        ] {
            expect_status(&srv, req, 501);
        }
        still_serving(&srv);
    }

    // ------------------------------------------------------------ persistence

    fn http11_keeps_connection_alive(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        for i in 0..5 {
            let r = c.roundtrip(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
            check_common(&r, "GET /style.css keep-alive");
            assert_status(&r, 200, &format!("keep-alive request #{i}"));
            assert!(!r.connection_has("close"), "HTTP/1.1 keep-alive response #{i} says close\n{}", r.describe());
            assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), "keep-alive body");
        }
        c.expect_open("HTTP/1.1 connection after 5 requests");
    }

    fn http11_connection_close(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_status(&r, 200, "GET / Connection: close");
        assert!(r.connection_has("close"), "response to Connection: close lacks it\n{}", r.describe());
        c.expect_closed("HTTP/1.1 request with Connection: close");
    }

    fn http10_closes_by_default(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        let r = c.roundtrip(b"GET /app.js HTTP/1.0\r\n\r\n");
        check_common(&r, "GET /app.js HTTP/1.0");
        assert_status(&r, 200, "GET /app.js HTTP/1.0 (no Host)");
        assert_bytes_eq(&r.body, APP_JS.as_bytes(), "HTTP/1.0 body");
        assert!(!r.connection_has("keep-alive"), "HTTP/1.0 response without request keep-alive says keep-alive");
        c.expect_closed("HTTP/1.0 request without keep-alive");
    }

    fn http10_keep_alive(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        for i in 0..3 {
            let r = c.roundtrip(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            assert_status(&r, 200, &format!("HTTP/1.0 keep-alive #{i}"));
            assert!(r.connection_has("keep-alive"), "HTTP/1.0 keep-alive response lacks `Connection: keep-alive`\n{}", r.describe());
            assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), "HTTP/1.0 keep-alive body");
        }
        c.expect_open("HTTP/1.0 keep-alive connection");
        let r = c.roundtrip(b"GET / HTTP/1.0\r\n\r\n");
        assert_status(&r, 200, "final HTTP/1.0 request without keep-alive");
        c.expect_closed("HTTP/1.0 request without keep-alive at the end");
    }

    fn pipelined_requests_answered_in_order(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        c.send(
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n\
              HEAD /app.js HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
              OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        let r = c.read_response("GET");
        assert_eq!((r.status, r.body_str()), (200, INDEX_HTML.to_string()), "pipelined #1 GET /");
        let r = c.read_response("GET");
        assert_eq!((r.status, r.body_str()), (200, STYLE_CSS.to_string()), "pipelined #2 GET /style.css");
        let r = c.read_response("HEAD");
        assert_eq!(r.status, 200, "pipelined #3 HEAD /app.js");
        assert_eq!(r.header("content-length"), Some(APP_JS.len().to_string().as_str()));
        let r = c.read_response("GET");
        assert_eq!((r.status, r.body_str()), (404, NOT_FOUND_HTML.to_string()), "pipelined #4 GET /missing");
        let r = c.read_response("OPTIONS");
        assert_eq!(r.status, 204, "pipelined #5 OPTIONS *");
        let r = c.read_response("GET");
        assert_eq!((r.status, r.body_str()), (200, APP_JS.to_string()), "pipelined #6 GET /app.js");
        c.expect_closed("pipeline ending with Connection: close");
    }

    fn many_pipelined_requests(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        let paths = ["/", "/style.css", "/app.js", "/logo.png", "/sub/"];
        let mut req = Vec::new();
        for i in 0..100 {
            req.extend_from_slice(format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", paths[i % paths.len()]).as_bytes());
        }
        c.send(&req);
        for i in 0..100 {
            let r = c.read_response("GET");
            assert_status(&r, 200, &format!("pipelined request #{i}"));
            let want = site.read(match paths[i % paths.len()] { "/" => "index.html", "/sub/" => "sub/index.html", p => &p[1..] });
            assert_bytes_eq(&r.body, &want, &format!("pipelined request #{i} {}", paths[i % paths.len()]));
        }
        c.expect_open("after 100 pipelined requests");
    }

    fn request_split_across_writes(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        let req = b"GET /style.css HTTP/1.1\r\nHost: t\r\nUser-Agent: split\r\n\r\n";
        for piece in req.chunks(7) {
            c.send(piece);
        }
        let r = c.read_response("GET");
        assert_status(&r, 200, "request written in 7-byte pieces");
        assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), "split request body");
    }

    // -------------------------------------------------------- malformed input

    fn malformed_requests_are_400_and_close(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for req in [
            &b"GARBAGE\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Without Colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Space-Before-Colon : v\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\n: no-name\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-\x01Ctl: v\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Bad-Value: a\x00b\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
            b"GET / FTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/x.y\r\nHost: t\r\n\r\n",
        ] {
            expect_error_and_close(&srv, req, 400);
        }
        still_serving(&srv);
    }

    fn unsupported_versions_are_505(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for v in ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/9.9"] {
            let req = format!("GET / {v}\r\nHost: t\r\n\r\n");
            let r = srv.connect().roundtrip(req.as_bytes());
            check_common(&r, &req);
            assert_status(&r, 505, &req);
        }
        still_serving(&srv);
    }

    /// RFC 9110 §2.5: a later minor version of HTTP/1 is processed as the
    /// highest we speak, HTTP/1.1 ("SHOULD"; nginx serves it): the answer
    /// says HTTP/1.1, the connection persists, Host is required, a chunked
    /// body and a pipelined request work as in 1.1. It used to be 505.
    fn later_http_1_minor_is_served_as_1_1(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for v in ["HTTP/1.2", "HTTP/1.9"] {
            let mut c = srv.connect();
            let req = format!("GET / {v}\r\nHost: t\r\n\r\n");
            let r = c.roundtrip(req.as_bytes());
            check_common(&r, &req);
            assert_status(&r, 200, &req);
            assert_eq!(r.version, "HTTP/1.1", "{req}");
            assert_eq!(r.body, INDEX_HTML.as_bytes(), "{req}");
            // Persistent, a chunked body read, then two pipelined requests.
            let chunked = format!(
                "GET /sub/ {v}\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            );
            let r = c.roundtrip(chunked.as_bytes());
            assert_status(&r, 200, &chunked);
            assert_eq!(r.body, SUB_INDEX_HTML.as_bytes(), "{chunked}");
            let two = format!("HEAD / {v}\r\nHost: t\r\n\r\nGET /sub/ {v}\r\nHost: t\r\nConnection: close\r\n\r\n");
            c.send(two.as_bytes());
            let r = c.read_response("HEAD");
            assert_status(&r, 200, &two);
            let r = c.read_response("GET");
            assert_status(&r, 200, &two);
            assert_eq!(r.body, SUB_INDEX_HTML.as_bytes(), "{two}");
            c.expect_closed(&two);
            // Host is required, as in 1.1.
            expect_error_and_close(&srv, format!("GET / {v}\r\n\r\n").as_bytes(), 400);
        }
        still_serving(&srv);
    }

    fn host_header_rules(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\n\r\n", 400);
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400);
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
        let r = expect_status(&srv, b"GET / HTTP/1.0\r\n\r\n", 200);
        assert_eq!(r.body_str(), INDEX_HTML);
        let r = expect_status(&srv, b"GET / HTTP/1.1\r\nhOsT: lower.case\r\n\r\n", 200);
        assert_eq!(r.body_str(), INDEX_HTML);
        still_serving(&srv);
    }

    // ------------------------------------------------------------------ limits

    fn oversized_head_is_431(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut req = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
        for i in 0..40 {
            req.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(240)).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert!(req.len() > 8192 + 1000);
        expect_error_and_close(&srv, &req, 431);
        // One single huge header line too.
        let req = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(9000));
        expect_error_and_close(&srv, req.as_bytes(), 431);
        // Just under the limit is fine.
        let pad = 8192 - 200;
        let req = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "p".repeat(pad));
        expect_status(&srv, req.as_bytes(), 200);
        still_serving(&srv);
    }

    fn configured_max_header_size(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "max_header_size = 1024\nmax_target_size = 512", &site.root);
        let ok = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "p".repeat(700));
        expect_status(&srv, ok.as_bytes(), 200);
        let big = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "p".repeat(1500));
        expect_error_and_close(&srv, big.as_bytes(), 431);
        let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(600));
        expect_error_and_close(&srv, long.as_bytes(), 414);
        still_serving(&srv);
    }

    fn answers_do_not_depend_on_packet_boundaries(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        // The request line is too long (414) wherever the excess is and
        // however it arrives: one write, or split where an 8 KiB receive
        // buffer would cut it.
        let cases = [
            (format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20 * 1024)), 414),
            (format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(10_000)), 414),
            (format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(8_000)), 414),
            (format!("G(T /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9_000)), 400),
            ("GET /sp ace.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), 400),
        ];
        for (req, status) in &cases {
            let req = req.as_bytes();
            expect_error_and_close(&srv, req, *status);
            for at in [3, 4200, 8192, req.len() - 3] {
                let at = at.min(req.len() - 1);
                let mut c = srv.connect();
                let _ = c.try_send(&req[..at]);
                let _ = c.try_send(&req[at..]);
                let r = c
                    .try_read_response(&request_method(req))
                    .unwrap_or_else(|err| panic!("{} split at {at}: {err}", show(&req[..40])));
                assert_eq!(r.status, *status, "{} split at {at}:\n{}", show(&req[..40]), r.describe());
                assert!(r.connection_has("close"), "split at {at}: {}", r.describe());
            }
        }
        still_serving(&srv);
    }

    fn long_target_is_414(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let req = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000));
        expect_error_and_close(&srv, req.as_bytes(), 414);
        let req = format!("GET /index.html?{} HTTP/1.1\r\nHost: t\r\n\r\n", "q=1&".repeat(1100));
        expect_error_and_close(&srv, req.as_bytes(), 414);
        // A long but allowed target (3000+ bytes in 200-byte segments) just gets 404.
        let req = format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", format!("/{}", "a".repeat(200)).repeat(15));
        expect_status(&srv, req.as_bytes(), 404);
        still_serving(&srv);
    }

    // ------------------------------------------------------------ request body

    fn small_body_on_get_is_discarded(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET / with a 5-byte body");
        assert_eq!(r.body_str(), INDEX_HTML);
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET /style.css pipelined after a GET with a body");
        assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), "GET /style.css after body");

        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response("HEAD");
        assert_status(&r, 200, "HEAD / with a 5-byte body");
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET /app.js pipelined after a HEAD with a body");
        assert_bytes_eq(&r.body, APP_JS.as_bytes(), "GET /app.js after HEAD body");

        // Body arriving in a separate write, after the head.
        c.send(b"GET /app.js HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
        c.send(b"56789GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET /app.js with a body split over two writes");
        let r = c.read_response("GET");
        assert_status(&r, 200, "GET /style.css after a split body");
        assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), "GET /style.css after split body");
        c.expect_open("after requests with bodies");
    }

    fn too_large_body_is_413(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413);
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\nabc", 413);
        still_serving(&srv);
    }

    fn configured_max_body_size(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "max_body_size = 100", &site.root);
        let mut c = srv.connect();
        let mut req = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n".to_vec();
        req.extend_from_slice(&[b'x'; 100]);
        req.extend_from_slice(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
        c.send(&req);
        assert_status(&c.read_response("GET"), 200, "GET with a 100-byte body (limit 100)");
        assert_status(&c.read_response("GET"), 200, "GET after a 100-byte body");
        expect_error_and_close(&srv, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", 413);
    }

    fn bad_framing_is_400_and_close(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for req in [
            &b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5 5\r\n\r\nhello",
        ] {
            expect_error_and_close(&srv, req, 400);
        }
        // A Content-Length too big for any integer type: invalid (400) or too large (413), and close.
        let req = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        let mut c = srv.connect();
        c.send(req);
        let r = c.read_response("GET");
        assert!(r.status == 400 || r.status == 413, "request {}: expected 400 or 413, got\n{}", show(req), r.describe());
        assert!(r.connection_has("close"), "request {}: no Connection: close", show(req));
        c.expect_closed("huge Content-Length");
        still_serving(&srv);
    }

    // ------------------------------------------------------------- concurrency

    fn many_concurrent_connections(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut conns: Vec<Conn> = (0..64).map(|_| srv.connect()).collect();
        for c in conns.iter_mut() {
            c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let r = c.read_response("GET");
            assert_status(&r, 200, &format!("concurrent connection #{i}"));
            assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), "concurrent body");
        }
        // Close half of them abruptly, the rest keep working.
        let keep: Vec<Conn> = conns.into_iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, c)| c).collect();
        for (i, mut c) in keep.into_iter().enumerate() {
            let r = c.roundtrip(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_status(&r, 200, &format!("second request on surviving connection #{i}"));
        }
    }

    fn client_disconnect_mid_response_does_not_hurt(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for _ in 0..5 {
            let mut c = srv.connect();
            c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut b = [0u8; 100];
            use std::io::Read;
            c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let _ = c.stream.read(&mut b);
            drop(c); // close with unread data: the server sees a reset
        }
        // Half-request then disconnect.
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHo");
        drop(c);
        still_serving(&srv);
        let r = get(srv.addr(), "/big.bin");
        assert_bytes_eq(&r.body, &big_bytes(), "GET /big.bin after aborted downloads");
    }
}
