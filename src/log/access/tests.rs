use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// The JSON log's string mapping, undone: `\xHH` is the byte HH, anything
/// else is the character's UTF-8.
fn unescape_log(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        assert_eq!(
            &rest[i + 1..i + 2],
            "x",
            "a backslash not starting \\xHH in {s:?}"
        );
        out.push(u8::from_str_radix(&rest[i + 2..i + 4], 16).unwrap());
        rest = &rest[i + 4..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

#[test]
fn json_escape_round_trips_any_bytes() {
    let mut cases: Vec<Vec<u8>> = vec![
        (0..=255u8).collect(),
        "plain ascii".into(),
        "é ü 日本 😀 \u{2028}".into(),
        b"\"quoted\" back\\slash \\x41 \x00\x1f\x7f".to_vec(),
        b"\xe6\x97\xa5\xe6\x97 cut \xf0\x9f\x98 \xc3\x28 \xff\xfe".to_vec(),
        vec![b'\\'; 10_000],
        Vec::new(),
    ];
    cases.push(cases[0].repeat(40));
    for b in cases {
        let mut s = b"\"".to_vec();
        json_escape_into(&mut s, &b);
        s.push(b'"');
        let s = String::from_utf8(s).expect("escaped JSON is UTF-8");
        let v: String = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s:?}"));
        assert_eq!(unescape_log(&v), b, "{s:?}");
        assert!(
            !s.bytes().any(|c| c < 0x20 || c == 0x7f),
            "raw control byte in {s:?}"
        );
        // Valid UTF-8 other than `\` stays itself.
        if let Ok(t) = std::str::from_utf8(&b)
            && !t.contains('\\')
        {
            assert_eq!(v, t);
        }
    }
}

#[test]
fn combined_escape_leaves_only_printable_ascii() {
    let all: Vec<u8> = (0..=255u8).collect();
    let mut out = Vec::new();
    escape_into(&mut out, &all);
    assert!(out.iter().all(|c| (0x20..0x7f).contains(c)));
    assert!(!out.contains(&b'"'));
    let mut out = Vec::new();
    escape_into(&mut out, b"a\"b\\c\x01\xff ~");
    assert_eq!(out, b"a\\x22b\\x5Cc\\x01\\xFF ~");
}

#[test]
fn decimals() {
    for (n, w, s) in [
        (0u64, 1, "0"),
        (7, 2, "07"),
        (123, 2, "123"),
        (0, 6, "000000"),
        (250_000, 6, "250000"),
        (u64::MAX, 1, "18446744073709551615"),
    ] {
        let mut out = b"x".to_vec();
        push_decimal(&mut out, n, w);
        assert_eq!(out, format!("x{s}").as_bytes());
    }
}

/// What `hold` copies comes back whole in the exchange, whatever the
/// request held before it; no pieces means an empty request.
#[test]
fn held_request_round_trips() {
    let peer: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
    let start = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_795_375_297);
    let mut h = HeldRequest::default();
    let raw = RequestLine::Raw(b"a long first request line");
    h.hold(start, wall, Some(raw), Some(b"r"), None);
    let line = RequestLine::Parsed {
        method: b"GET",
        target: b"/x?y",
        protocol: "HTTP/1.0",
    };
    h.hold(start, wall, Some(line), None, Some(b"ua"));
    let end = start + Duration::from_millis(3);
    let x = h.exchange(peer, 200, 5, 99, end);
    assert_eq!(
        x.request.split(),
        (&b"GET"[..], &b"/x?y"[..], &b"HTTP/1.0"[..])
    );
    assert_eq!((x.referer, x.user_agent), (None, Some(&b"ua"[..])));
    assert_eq!((x.status, x.body_bytes, x.sent), (200, 5, 99));
    assert_eq!((x.start, x.end, x.start_wall), (start, end, wall));
    let mut out = Vec::new();
    write_line(LogFormat::Combined, &x, &mut out);
    assert_eq!(
        out,
        b"2001:db8::1 - - [22/Nov/2026:19:21:37 +0000] \"GET /x?y HTTP/1.0\" 200 5 \"-\" \"ua\"\n"
    );
    h.hold(start, wall, None, Some(b"r"), Some(b"ua"));
    let x = h.exchange(peer, 404, 0, 0, end);
    assert_eq!(x.request.split(), (&b""[..], &b""[..], &b""[..]));
    assert_eq!((x.referer, x.user_agent), (None, None));
}
