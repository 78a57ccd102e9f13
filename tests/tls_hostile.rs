//! Hostile and careless TLS clients on both engines, beyond tests/tls.rs:
//! clients that end their side (close_notify, or a TCP half-close) right
//! after asking for a large file.

#[macro_use]
mod common;

use std::io::Read;
use std::net::Shutdown;

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
}
