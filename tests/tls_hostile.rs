//! Hostile and careless TLS clients on both engines, beyond tests/tls.rs:
//! clients that end their side (close_notify, or a TCP half-close) right
//! after asking for a large file, over HTTP/1.1 and HTTP/2.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::Shutdown;

use common::h2::{
    DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS, WINDOW_UPDATE, encode_fields, frame_bytes,
    settings_payload,
};
use common::tls::*;
use common::*;

/// How a TLS connection ended for the client.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server's close_notify, then EOF.
    CloseNotify,
    /// EOF (or a reset) without close_notify.
    Abrupt(String),
}

/// Everything `c` receives until the connection ends, and how it ended.
fn read_to_end(c: &mut Tls) -> (Vec<u8>, End) {
    let mut got = std::mem::take(&mut c.buf);
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        match c.s.read(&mut tmp) {
            Ok(0) => return (got, End::CloseNotify),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if is_timeout(&e) => panic!("still open after {} bytes", got.len()),
            Err(e) => return (got, End::Abrupt(e.to_string())),
        }
    }
}

/// The length a response in `got` announces, and where its body starts.
fn framing(got: &[u8]) -> (usize, usize) {
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {}", show(got)))
        + 4;
    let head = parse_response_head(&String::from_utf8_lossy(&got[..end - 4])).unwrap();
    assert_eq!(head.status, 200, "{}", show(&got[..end]));
    let len = head.header("content-length").unwrap().parse().unwrap();
    (end, len)
}

/// The DATA payload of stream 1 in the HTTP/2 frames `got` (from the
/// server's first frame on), and whether its last DATA ended the stream.
fn h2_body(got: &[u8]) -> (Vec<u8>, bool) {
    let (mut body, mut ended, mut i) = (Vec::new(), false, 0);
    while i + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[i], got[i + 1], got[i + 2]]) as usize;
        let (ty, flags) = (got[i + 3], got[i + 4]);
        let sid = u32::from_be_bytes(got[i + 5..i + 9].try_into().unwrap()) & 0x7fff_ffff;
        let end = (i + 9 + len).min(got.len());
        if ty == DATA && sid == 1 {
            body.extend_from_slice(&got[i + 9..end]);
            ended = flags & END_STREAM != 0;
        }
        i += 9 + len;
    }
    (body, ended)
}

engine_tests! {
    /// A client that asks for a 3 MiB file and at once ends its side (its
    /// close_notify, a TCP half-close, or both; also behind a pipelined
    /// page) gets the whole body, then the server's close_notify, as a
    /// half-closed plaintext client gets its whole answer.
    fn a_client_that_ends_its_side_gets_the_whole_answer(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let big = std::fs::read(site.root.join("big.bin")).unwrap();
        let index = std::fs::read(site.root.join("index.html")).unwrap();
        let get_big = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n".as_slice();
        let two = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n";
        for (case, req, notify, fin) in [
            ("close_notify", get_big, true, false),
            ("half-close", get_big, false, true),
            ("close_notify and half-close", get_big, true, true),
            ("pipelined, close_notify", two.as_slice(), true, false),
        ] {
            let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
            c.send(req);
            if notify {
                c.s.conn.send_close_notify();
                c.s.conn.complete_io(&mut c.s.sock).unwrap();
            }
            if fin {
                c.s.sock.shutdown(Shutdown::Write).unwrap();
            }
            let (mut got, end) = read_to_end(&mut c);
            if req == two {
                let (at, len) = framing(&got);
                assert!(got.len() >= at + len && got[at..at + len] == index[..], "{case}: the first page");
                got.drain(..at + len);
            }
            let (at, len) = framing(&got);
            assert_eq!(len, big.len(), "{case}");
            assert_eq!(got.len() - at, big.len(), "{case}: the body cut short ({end:?})");
            assert!(got[at..] == big[..], "{case}: the body differs");
            assert_eq!(end, End::CloseNotify, "{case}: how it ended");
        }
    }

    /// A handshake that stalls (half a ClientHello; or nothing at all) is
    /// ended at header_timeout with a FIN, as a plaintext client that sent
    /// half a head or nothing is, not left open for the linger after it.
    fn a_stalled_handshake_is_shut_at_header_timeout(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (_srv, addr) = start_tls_or_skip!(e, "header_timeout = \"3s\"", site, &[&ec]);
        for (case, sent) in [("half a hello", &[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00][..]), ("silent", &[][..])] {
            let started = std::time::Instant::now();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(sent).unwrap();
            wait_closed(&mut s, std::time::Duration::from_secs(10)).unwrap();
            let took = started.elapsed();
            // header_timeout is 3 s; the linger after it 2 s more.
            assert!(took >= std::time::Duration::from_millis(2900), "{case}: closed early: {took:?}");
            assert!(took < std::time::Duration::from_millis(4500), "{case}: closed only after {took:?}");
        }
    }

    /// TLS 1.3 KeyUpdate: one, and 32 in a row, between requests leave
    /// the connection serving; a flood of them with no application data
    /// between ends it (rustls allows 32 in a row, as BoringSSL), so a
    /// client cannot make the server derive keys without bound.
    fn key_updates_are_served_and_a_flood_is_cut(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let mut c = Tls::connect(addr, "ec.test", client(&[&ec], None));
        assert_eq!(c.get("/", "").status, 200);
        for n in [1, 32] {
            for _ in 0..n {
                c.s.conn.refresh_traffic_keys().unwrap();
            }
            assert_eq!(c.get("/sub/page.html", "").status, 200, "after {n} key updates");
        }
        for _ in 0..200 {
            c.s.conn.refresh_traffic_keys().unwrap();
            if c.s.conn.complete_io(&mut c.s.sock).is_err() {
                break;
            }
        }
        let (got, end) = read_to_end(&mut c);
        assert!(got.is_empty(), "answered after a flood: {}", show(&got));
        assert!(matches!(end, End::Abrupt(_)), "{end:?}");
    }

    /// The same over HTTP/2 (ALPN h2): a client opens its windows wide,
    /// asks for big.bin and sends close_notify at once; the whole body
    /// comes, its stream ended, then the server's close_notify.
    fn an_h2_client_that_ends_its_side_gets_the_whole_answer(e) {
        let TlsSite { site, certs: _certs, ec } = TlsSite::new();
        let (_srv, addr) = start_tls_or_skip!(e, "", site, &[&ec]);
        let big = std::fs::read(site.root.join("big.bin")).unwrap();
        let mut cfg = (*client(&[&ec], None)).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let mut c = Tls::connect(addr, "ec.test", std::sync::Arc::new(cfg));
        assert_eq!(c.s.conn.alpn_protocol(), Some(&b"h2"[..]));
        let mut req = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        req.extend(frame_bytes(SETTINGS, 0, 0, &settings_payload(&[(4, (1 << 31) - 1)])));
        req.extend(frame_bytes(WINDOW_UPDATE, 0, 0, &((1u32 << 31) - 1 - 65535).to_be_bytes()));
        let head = [(":method", "GET"), (":scheme", "https"), (":path", "/big.bin"), (":authority", "x")];
        req.extend(frame_bytes(HEADERS, END_HEADERS | END_STREAM, 1, &encode_fields(&head)));
        c.send(&req);
        c.s.conn.send_close_notify();
        c.s.conn.complete_io(&mut c.s.sock).unwrap();
        let (got, end) = read_to_end(&mut c);
        let (body, ended) = h2_body(&got);
        assert_eq!(body.len(), big.len(), "the body cut short ({end:?})");
        assert!(body == big, "the body differs");
        assert!(ended, "the stream did not end");
        assert_eq!(end, End::CloseNotify, "how it ended");
    }
}
