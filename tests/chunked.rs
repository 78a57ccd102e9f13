//! Request bodies in the chunked coding (RFC 9112 §7.1): read and thrown
//! away, then the request is answered and the connection kept; malformed
//! ones get 400, too large ones 413, and a close.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

const HEAD: &[u8] = b"GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
const BODY: &[u8] =
    b"5;name=\"v; w\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n";
const NEXT: &[u8] = b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n";

/// Pause between the writes of a split request, so the parts reach the
/// server apart (a stimulus, not a wait for anything).
const SPLIT_PAUSE: Duration = Duration::from_millis(5);

/// The chunked GET and the GET behind it, both answered on one connection
/// that stays open.
fn expect_both_answered(c: &mut Conn, ctx: &str) {
    let r = c.read_response("GET");
    check_common(&r, ctx);
    assert_status(
        &r,
        200,
        &format!("{ctx}: GET /style.css with a chunked body"),
    );
    assert_bytes_eq(&r.body, STYLE_CSS.as_bytes(), ctx);
    assert!(
        !r.connection_has("close"),
        "{ctx}: the chunked request closed the connection\n{}",
        r.describe()
    );
    let r = c.read_response("GET");
    assert_status(&r, 200, &format!("{ctx}: GET /app.js pipelined behind it"));
    assert_bytes_eq(&r.body, APP_JS.as_bytes(), ctx);
    c.expect_open(ctx);
}

/// `req` on a fresh connection: `status`, `Connection: close`, then the close.
fn expect_refused(srv: &Server, req: &[u8], status: u16) {
    let ctx = format!("request {}", show(req));
    let mut c = srv.connect();
    let _ = c.try_send(req); // the server may close before reading it all
    let r = c
        .try_read_response("GET")
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    check_common(&r, &ctx);
    assert_eq!(
        r.status,
        status,
        "{ctx}: expected {status}, got\n{}",
        r.describe()
    );
    assert!(
        r.connection_has("close"),
        "{ctx}: no Connection: close\n{}",
        r.describe()
    );
    c.expect_closed(&ctx);
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

engine_tests! {
    fn chunked_get_then_pipelined_get_on_one_connection(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        c.send(&cat(&[HEAD, BODY, NEXT]));
        expect_both_answered(&mut c, "one write");
        // Again on the same connection, and with the smallest body.
        c.send(&cat(&[HEAD, b"0\r\n\r\n", NEXT]));
        expect_both_answered(&mut c, "an empty chunked body");
        // A HEAD and a POST with chunked bodies keep the connection too.
        c.send(b"HEAD /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_status(&c.read_response("HEAD"), 200, "HEAD with a chunked body");
        c.send(b"POST /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        let r = c.read_response("POST");
        assert_status(&r, 405, "POST with a chunked body");
        assert!(!r.connection_has("close"), "POST with a chunked body: closed\n{}", r.describe());
        c.send(NEXT);
        assert_status(&c.read_response("GET"), 200, "GET after the POST's chunked body");
    }

    fn chunked_body_split_at_odd_places(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let req = cat(&[HEAD, BODY, NEXT]);
        let at = |needle: &[u8], off: usize| {
            req.windows(needle.len()).position(|w| w == needle).unwrap() + off
        };
        let cuts = [
            vec![HEAD.len()],                                    // head | body
            vec![HEAD.len() + 1, at(b"\r\nhello", 1)],           // inside "5;", between CR and LF
            vec![at(b"hello", 2), at(b"1A", 1)],                 // inside data, inside the size
            vec![at(b"\r\n1A", 1), at(b"Trailer", 3)],           // CR | LF after data, inside a trailer
            vec![at(b"yes\r\n\r\n", 5), at(b"yes\r\n\r\n", 6), req.len() - NEXT.len()],
        ];
        let mut c = srv.connect();
        for cut in &cuts {
            let mut last = 0;
            for &p in cut.iter().chain([req.len()].iter()) {
                c.send(&req[last..p]);
                last = p;
                std::thread::sleep(SPLIT_PAUSE);
            }
            expect_both_answered(&mut c, &format!("split at {cut:?}"));
        }
        // A byte at a time.
        for b in &req {
            c.send(std::slice::from_ref(b));
        }
        expect_both_answered(&mut c, "a byte at a time");
    }

    /// A client that waits for leave to send its body gets a 100 (Continue)
    /// (RFC 9110 10.1.1), then the answer once the body is in.
    fn expect_100_continue_gets_a_continue(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        let mut c = srv.connect();
        c.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        let r = c.read_response("GET");
        assert_eq!(r.status, 100, "Expect: 100-continue before the body: expected 100\n{}", r.describe());
        c.send(&cat(&[BODY, NEXT]));
        expect_both_answered(&mut c, "after the 100 (Continue)");
    }

    fn malformed_chunked_body_is_400_and_close(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "", &site.root);
        for body in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],          // not hex
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXY0\r\n\r\n",                   // no CRLF after the data
            b"5\nhello\r\n0\r\n\r\n",                   // bare LF after the size
            b"5\r\nhello\n0\r\n\r\n",                   // bare LF after the data
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n",          // a control byte in an extension
            b"0\r\nNo colon\r\n\r\n",                   // a trailer that is no field
        ] {
            expect_refused(&srv, &cat(&[HEAD, body, NEXT]), 400);
        }
        // Over-long: a chunk line, or the trailer section, past max_header_size (8192).
        let ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(9000));
        expect_refused(&srv, &cat(&[HEAD, ext.as_bytes()]), 400);
        let trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(9000));
        expect_refused(&srv, &cat(&[HEAD, trailer.as_bytes()]), 400);
        // Transfer codings other than a lone final chunked (RFC 9112 6.1, 6.3).
        let te = |v: &str| format!("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {v}\r\n\r\n0\r\n\r\n").into_bytes();
        expect_refused(&srv, &te("gzip"), 400);
        expect_refused(&srv, &te("chunked, gzip"), 400);
        expect_refused(&srv, &te("chunked, chunked"), 400);
        expect_refused(&srv, &te("gzip, chunked"), 501);
        expect_refused(&srv, b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
        expect_refused(&srv, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
        let r = get(srv.addr(), "/");
        assert_status(&r, 200, "GET / after the refusals");
    }

    fn oversized_chunked_body_is_413(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "max_body_size = 100", &site.root);
        let x = "x".repeat(100);
        // 100 decoded bytes in two chunks: within the limit.
        let mut c = srv.connect();
        c.send(&cat(&[HEAD, format!("32\r\n{}\r\n32\r\n{}\r\n0\r\n\r\n", &x[..50], &x[..50]).as_bytes(), NEXT]));
        expect_both_answered(&mut c, "a 100-byte chunked body (max_body_size 100)");
        // 101: in one chunk, over two, or a size no integer holds.
        expect_refused(&srv, &cat(&[HEAD, format!("65\r\n{x}x\r\n0\r\n\r\n").as_bytes()]), 413);
        expect_refused(&srv, &cat(&[HEAD, format!("64\r\n{x}\r\n1\r\nx\r\n0\r\n\r\n").as_bytes()]), 413);
        expect_refused(&srv, &cat(&[HEAD, b"ffffffffffffffffffffffffffff\r\n"]), 413);
        // The 413 comes as soon as the size says so, before any data.
        let mut c = srv.connect();
        c.send(&cat(&[HEAD, b"100000\r\n"]));
        let r = c.read_response("GET");
        assert_status(&r, 413, "a chunk of 1 MiB announced (max_body_size 100)");
    }

    /// A chunked body dripped byte by byte is cut off like a dripped head or
    /// a Content-Length body: whole within header_timeout of its head's end,
    /// else 408 (the request was not answered yet) and a close.
    fn trickled_chunked_body_is_408(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "header_timeout = \"300ms\"\nkeepalive_timeout = \"10s\"", &site.root);
        let mut c = srv.connect();
        c.send(HEAD);
        c.send(b"1000\r\n");
        let t0 = Instant::now();
        let mut closed = false;
        while t0.elapsed() < CLOSE_TIMEOUT {
            if c.try_send(b"x").is_err() {
                closed = true;
                break;
            }
            // Paced by the read: 50 ms without a byte, or what came.
            match c.try_read_response_within("GET", Duration::from_millis(50)) {
                Ok(r) => {
                    assert_status(&r, 408, "a trickled chunked body");
                    assert!(r.connection_has("close"), "408 without Connection: close\n{}", r.describe());
                    c.expect_closed("after the 408");
                    closed = true;
                    break;
                }
                Err(e) if e.contains("timed out") || e.contains("deadline passed") => {}
                Err(e) => panic!("a trickled chunked body: {e}"),
            }
        }
        let took = t0.elapsed();
        assert!(closed, "a chunked body trickled byte by byte was not cut off within {CLOSE_TIMEOUT:?} (header_timeout 300ms)");
        assert!(took < Duration::from_secs(2), "a trickled chunked body kept the connection {took:?} (header_timeout 300ms)");
    }
}
