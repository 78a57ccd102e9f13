//! Differential test: the same corpus of raw exchanges (valid, malformed,
//! pipelined, split across writes, odd methods and versions, traversal
//! attempts, big headers, bodies) sent to an epoll server and an io_uring
//! server with the same config and root must get byte-identical responses,
//! apart from `Date` headers.
//!
//! `TANDEM_DIFF_ENGINES=epoll,epoll` runs the harness against two epoll
//! servers (a check of the test's own determinism); `TANDEM_DIFF_DUMP=FILE`
//! writes every exchange (as answered by the first server) to FILE.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = "workers = 1\naccess_log = \"off\"\nheader_timeout = \"1s\"\nkeepalive_timeout = \"1s\"\nsend_timeout = \"5s\"\nmax_body_size = 65536";
/// How long an exchange may stay open before we stop reading.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(3);
/// Concurrent exchanges.
const THREADS: usize = 32;
/// Stop early after this many differences (keeps a broken engine from taking minutes).
const MAX_DIFFS: usize = 20;
/// Pause between the writes of a split request (a stimulus, not a wait).
/// 21 parts x 10 ms stays well inside the 1 s header_timeout.
const SPLIT_PAUSE: Duration = Duration::from_millis(10);
const CLOSER: &[u8] = b"GET /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

struct Case {
    name: String,
    parts: Vec<Vec<u8>>,
}

fn case(name: impl Into<String>, parts: Vec<Vec<u8>>) -> Case {
    Case {
        name: name.into(),
        parts,
    }
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

fn get_req(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// Requests that the split cases cut at several offsets.
fn split_sources() -> Vec<(String, Vec<u8>)> {
    vec![
        ("GET /style.css".into(), get_req("/style.css")),
        ("GET /sub".into(), get_req("/sub")),
        ("HEAD /app.js".into(), b"HEAD /app.js HTTP/1.1\r\nHost: t\r\nUser-Agent: split/1\r\n\r\n".to_vec()),
        ("GET CL body".into(), b"GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789".to_vec()),
        ("GET chunked".into(), b"GET /app.js HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("OPTIONS".into(), b"OPTIONS /style.css HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        ("1.0".into(), b"GET /app.js HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec()),
        ("bad version".into(), b"GET / HTTP/7.7\r\nHost: t\r\n\r\n".to_vec()),
        ("no host".into(), b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n".to_vec()),
        ("traversal".into(), get_req("/%2e%2e/secret.txt")),
        ("bare LF".into(), b"GET /style.css HTTP/1.1\nHost: t\n\n".to_vec()),
        ("pipelined pair".into(), [get_req("/style.css"), get_req("/app.js")].concat()),
    ]
}

/// The corpus. Each case is one connection: its parts are written in order
/// (with a short pause between parts), then everything is read until the
/// server closes or the deadline passes.
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();

    // --- paths: plain, encoded, traversal, dotfiles, symlinks, odd forms ---
    let targets = [
        "/",
        "/index.html",
        "/style.css",
        "/app.js",
        "/logo.png",
        "/404.html",
        "/data.xyz",
        "/big.bin",
        "/hello%20world.txt",
        "/hello world.txt",
        "/a%2520b.txt",
        "/a%20b.txt",
        "/sub",
        "/sub/",
        "/sub/page.html",
        "/sub?q=1",
        "/sub/index.html",
        "/noindex/",
        "/noindex",
        "/noindex/file.txt",
        "/missing",
        "/missing/",
        "/.secret",
        "/dir/.git/config",
        "/dir/visible.txt",
        "/dir/",
        "/link-to-secret",
        "/rel-link-to-secret",
        "/link-dir-out/secret.txt",
        "/link-inside.css",
        "/style.css?x=1&y=2",
        "/style.css#frag",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/.%2e/secret.txt",
        "/sub/../style.css",
        "/sub/./page.html",
        "/sub/%2e%2e/style.css",
        "//style.css",
        "/style.css/",
        "/%00",
        "/index.html%00.css",
        "/%zz",
        "/%",
        "/%4",
        "/sub%2fpage.html",
        "/STYLE.CSS",
        "/style.css;param",
        "/~root",
        "http://t/style.css",
        "*",
        "style.css",
        "/\u{e9}t\u{e9}.html",
        "/%C3%A9t%C3%A9.html",
        "/.",
        "/..",
        "/sub/..",
        "/sub/.",
    ];
    for t in targets {
        cases.push(case(format!("GET {t}"), vec![cat(&get_req(t), CLOSER)]));
    }
    let long_target = format!("/{}", "a".repeat(5000));
    cases.push(case(
        "GET long target",
        vec![cat(&get_req(&long_target), CLOSER)],
    ));
    let long_ok = format!("/style.css?{}", "q".repeat(3000));
    cases.push(case(
        "GET long query",
        vec![cat(&get_req(&long_ok), CLOSER)],
    ));

    // --- methods ---
    for m in [
        "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "BREW", "get",
        "Get", "PRI", "M-SEARCH", "GETS",
    ] {
        for t in ["/", "/style.css", "/missing"] {
            let r = format!("{m} {t} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
            cases.push(case(format!("{m} {t}"), vec![cat(r.as_bytes(), CLOSER)]));
        }
    }
    cases.push(case(
        "OPTIONS *",
        vec![cat(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", CLOSER)],
    ));
    cases.push(case(
        "HEAD big",
        vec![cat(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", CLOSER)],
    ));
    cases.push(case(
        "POST with body",
        vec![cat(
            b"POST /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            CLOSER,
        )],
    ));
    cases.push(case(
        "CONNECT authority",
        vec![cat(b"CONNECT t:443 HTTP/1.1\r\nHost: t\r\n\r\n", CLOSER)],
    ));

    // --- versions and request-line shapes ---
    for line in [
        "GET / HTTP/1.0",
        "GET / HTTP/1.2",
        "GET / HTTP/1.9",
        "GET / HTTP/2.0",
        "GET / HTTP/3",
        "GET / HTTP/0.9",
        "GET / http/1.1",
        "GET / HTTP/1",
        "GET / HTTP/1.1x",
        "GET / HTTP/01.1",
        "GET /",
        "GET",
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 ",
        " GET / HTTP/1.1",
        "GET\t/\tHTTP/1.1",
        "GET / FOO/1.1",
        "GET / HTTP/1.1 extra",
        "/ HTTP/1.1",
        "",
    ] {
        let r = format!("{line}\r\nHost: t\r\n\r\n");
        cases.push(case(
            format!("line {line:?}"),
            vec![cat(r.as_bytes(), CLOSER)],
        ));
    }
    cases.push(case(
        "HTTP/0.9 simple request",
        vec![b"GET /style.css\r\n".to_vec()],
    ));
    cases.push(case(
        "leading empty lines",
        vec![cat(
            b"\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n",
            CLOSER,
        )],
    ));

    // --- headers ---
    for (name, head) in [
        ("no Host", "GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n"),
        ("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        ("Host with port", "GET / HTTP/1.1\r\nHost: t:8080\r\n\r\n"),
        ("Host with space", "GET / HTTP/1.1\r\nHost: t u\r\n\r\n"),
        ("Host with slash", "GET / HTTP/1.1\r\nHost: t/x\r\n\r\n"),
        ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n"),
        (
            "no colon",
            "GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "leading whitespace header",
            "GET / HTTP/1.1\r\n Host: t\r\n\r\n",
        ),
        (
            "bad header name",
            "GET / HTTP/1.1\r\nHost: t\r\nX(A): 1\r\n\r\n",
        ),
        (
            "empty header name",
            "GET / HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n",
        ),
        (
            "NUL in value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "CR in value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
        ),
        ("bare LF lines", "GET /style.css HTTP/1.1\nHost: t\n\n"),
        (
            "mixed line ends",
            "GET /style.css HTTP/1.1\r\nHost: t\n\r\n",
        ),
        ("HTTP/1.0 no Host", "GET /style.css HTTP/1.0\r\n\r\n"),
        (
            "HTTP/1.0 keep-alive",
            "GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ),
        (
            "Connection: close",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        (
            "Connection: keep-alive, close",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n",
        ),
        (
            "Connection: CLOSE",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: CLOSE\r\n\r\n",
        ),
        (
            "Connection: Upgrade",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            "Upgrade h2c",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        ),
        (
            "Expect 100-continue",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
        ),
        (
            "Expect unknown",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n",
        ),
        (
            "If-Modified-Since future",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n",
        ),
        (
            "If-Modified-Since past",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
        ),
        (
            "If-Modified-Since garbage",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: yesterday\r\n\r\n",
        ),
        (
            "If-None-Match *",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n",
        ),
        (
            "If-None-Match other",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\"\r\n\r\n",
        ),
        (
            "Range",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n",
        ),
        (
            "Range multi",
            "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9,100-109\r\n\r\n",
        ),
        (
            "Range bad",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nRange: bytes=9-0\r\n\r\n",
        ),
        (
            "Accept-Encoding",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, br, zstd\r\n\r\n",
        ),
        (
            "Accept-Encoding gzip refused",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br, gzip;q=0\r\n\r\n",
        ),
        (
            "Accept-Encoding identity refused",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip;q=0.5, identity;q=0\r\n\r\n",
        ),
        (
            "Accept-Encoding with a range",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nRange: bytes=0-3\r\n\r\n",
        ),
        (
            "Range suffix",
            "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-7\r\n\r\n",
        ),
        (
            "Range unsatisfiable",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nRange: bytes=99999-\r\n\r\n",
        ),
        (
            "Range overlapping",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nRange: bytes=0-,0-\r\n\r\n",
        ),
        (
            "Range on HEAD",
            "HEAD /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n",
        ),
        (
            "If-Range stale",
            "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nIf-Range: \"old\"\r\n\r\n",
        ),
        (
            "If-Match fails",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Match: \"nope\"\r\n\r\n",
        ),
        (
            "If-Match on a missing path",
            "GET /nope.css HTTP/1.1\r\nHost: t\r\nIf-Match: \"nope\"\r\n\r\n",
        ),
        (
            "If-Unmodified-Since past",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
        ),
    ] {
        cases.push(case(name, vec![cat(head.as_bytes(), CLOSER)]));
    }
    // Big heads: just under and over max_header_size (8192), many headers.
    for (name, n) in [
        ("header 7000", 7000usize),
        ("header 8300", 8300),
        ("header 20000", 20000),
    ] {
        let r = format!(
            "GET /style.css HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "b".repeat(n)
        );
        cases.push(case(name, vec![cat(r.as_bytes(), CLOSER)]));
    }
    for n in [50usize, 300] {
        let mut r = String::from("GET /style.css HTTP/1.1\r\nHost: t\r\n");
        for i in 0..n {
            r.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        r.push_str("\r\n");
        cases.push(case(
            format!("{n} headers"),
            vec![cat(r.as_bytes(), CLOSER)],
        ));
    }

    // --- bodies on GET/HEAD and framing errors ---
    for (name, head) in [
        (
            "GET CL 5",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "HEAD CL 3",
            "HEAD /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        ),
        (
            "GET CL 0",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "GET CL big",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        ),
        (
            "GET CL -1",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "GET CL abc",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        ),
        (
            "GET CL +5",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "GET CL 5,5",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello",
        ),
        (
            "GET two CL same",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "GET two CL differ",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "GET CL huge number",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ),
        (
            "GET chunked",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "GET chunked ext+trailer",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        ),
        (
            "GET chunked bad size",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "GET TE gzip",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        ),
        (
            "GET TE gzip, chunked",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "GET CL and TE",
            "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "HTTP/1.0 chunked",
            "GET /style.css HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "GET body 60000",
            &format!(
                "GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n{}",
                "x".repeat(60000)
            ),
        ),
    ] {
        cases.push(case(name, vec![cat(head.as_bytes(), CLOSER)]));
    }

    // --- pipelining ---
    let reqs: Vec<Vec<u8>> = ["/", "/style.css", "/missing", "/sub", "/app.js"]
        .iter()
        .map(|t| get_req(t))
        .collect();
    let all: Vec<u8> = reqs.concat();
    cases.push(case("pipelined 5", vec![cat(&all, CLOSER)]));
    cases.push(case(
        "pipelined 5 + HEAD + OPTIONS",
        vec![
            [
                all.clone(),
                b"HEAD /app.js HTTP/1.1\r\nHost: t\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"
                    .to_vec(),
                CLOSER.to_vec(),
            ]
            .concat(),
        ],
    ));
    cases.push(case(
        "pipelined 30",
        vec![cat(&get_req("/style.css").repeat(30), CLOSER)],
    ));
    cases.push(case("pipelined with bodies", vec![cat(&b"GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /app.js HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".repeat(3), CLOSER)]));
    cases.push(case(
        "pipelined then garbage",
        vec![cat(
            &get_req("/style.css"),
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        )],
    ));
    cases.push(case(
        "pipelined after close",
        vec![[get_req("/style.css"), CLOSER.to_vec(), get_req("/app.js")].concat()],
    ));
    cases.push(case("pipelined 1.0", vec![b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /app.js HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n".to_vec()]));
    cases.push(case(
        "pipelined big + small",
        vec![[get_req("/big.bin"), get_req("/style.css"), CLOSER.to_vec()].concat()],
    ));
    cases.push(case(
        "pipelined error in middle",
        vec![
            [
                get_req("/style.css"),
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                get_req("/app.js"),
            ]
            .concat(),
        ],
    ));
    cases.push(case(
        "TLS hello",
        vec![b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()],
    ));
    cases.push(case("binary junk", vec![pseudo_random(300, 99)]));
    cases.push(case(
        "HTTP/2 preface",
        vec![b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()],
    ));

    // --- split across writes at several offsets ---
    let split_sources = split_sources();
    for (name, src) in &split_sources {
        let full = cat(src, CLOSER);
        let n = src.len();
        let head_end = frame::head_end(src, &mut 0).map(|p| p + 2).unwrap_or(n / 2);
        let mut offsets = vec![1, 3, n / 2, head_end, head_end + 1, n - 1, n];
        offsets.sort_unstable();
        offsets.dedup();
        for off in offsets {
            if off == 0 || off >= full.len() {
                continue;
            }
            cases.push(case(
                format!("split {name} at {off}"),
                vec![full[..off].to_vec(), full[off..].to_vec()],
            ));
        }
        // Byte by byte for the first 20 bytes, then the rest.
        let mut parts: Vec<Vec<u8>> = full[..20.min(n)].iter().map(|b| vec![*b]).collect();
        parts.push(full[20.min(n)..].to_vec());
        cases.push(case(format!("split {name} bytewise"), parts));
    }
    // A few that never finish: the server's header_timeout decides.
    cases.push(case(
        "incomplete head",
        vec![b"GET /style.css HTTP/1.1\r\nHost: t\r\n".to_vec()],
    ));
    cases.push(case(
        "incomplete body",
        vec![b"GET /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc".to_vec()],
    ));
    cases.push(case("nothing sent", vec![Vec::new()]));
    cases.push(case("keep-alive then idle", vec![get_req("/style.css")]));
    cases
}

/// Run one exchange: write the parts, read until close or the deadline.
fn exchange(addr: SocketAddr, c: &Case) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s.set_write_timeout(Some(EXCHANGE_DEADLINE)).unwrap();
    for (i, p) in c.parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(SPLIT_PAUSE); // stimulus: make the split a separate segment
        }
        if !p.is_empty() && s.write_all(p).is_err() {
            break; // the server closed early; read what it sent
        }
    }
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        let now = Instant::now();
        if now >= deadline {
            break "[still open at the deadline]";
        }
        s.set_read_timeout(Some(deadline - now)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break "[closed]",
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break "[still open at the deadline]";
            }
            Err(_) => break "[closed]",
        }
    };
    let mut v = normalize(&out);
    v.extend_from_slice(b"\n");
    v.extend_from_slice(end.as_bytes());
    v
}

/// Replace the value of every `Date:` header line.
fn normalize(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let at_line_start = i == 0 || b[i - 1] == b'\n';
        if at_line_start && b[i..].len() >= 6 && b[i..i + 6].eq_ignore_ascii_case(b"date: ") {
            let end = b[i..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| i + p)
                .unwrap_or(b.len());
            out.extend_from_slice(b"Date: <normalized>");
            i = end;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn excerpt(b: &[u8]) -> String {
    if b.len() <= 1500 {
        return show_all(b);
    }
    format!(
        "{} ... [{} bytes] ... {}",
        show_all(&b[..1000]),
        b.len(),
        show_all(&b[b.len() - 300..])
    )
}

fn show_all(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

#[test]
fn epoll_and_io_uring_answer_alike() {
    let engines = std::env::var("TANDEM_DIFF_ENGINES").unwrap_or_else(|_| "epoll,io_uring".into());
    let (ea, eb) = engines.split_once(',').expect("TANDEM_DIFF_ENGINES=A,B");
    let (ea, eb) = (ea.trim().to_string(), eb.trim().to_string());
    if (ea == "io_uring" || eb == "io_uring") && !io_uring_available() && !require_io_uring() {
        skip("io_uring unavailable: nothing to compare epoll with");
        return;
    }
    let site = Site::new();
    site.write("\u{e9}t\u{e9}.html", b"<p>UTF8-NAME</p>");
    // A precompressed sibling, written after its source (so not stale).
    site.write("style.css.gz", b"GZIP-BYTES-OF-STYLE");
    let Some(a) = Server::start(&ea, CONFIG, &site.root) else {
        return;
    };
    let Some(b) = Server::start(&eb, CONFIG, &site.root) else {
        return;
    };
    let cases = Arc::new(corpus());
    assert!(cases.len() >= 200, "corpus has only {} cases", cases.len());

    let next = Arc::new(AtomicUsize::new(0));
    let diffs = Arc::new(Mutex::new(Vec::new()));
    let (aa, ba) = (a.addr(), b.addr());
    let t0 = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cases, next, diffs) = (cases.clone(), next.clone(), diffs.clone());
            std::thread::spawn(move || {
                loop {
                    if diffs.lock().unwrap().len() >= MAX_DIFFS {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = cases.get(i) else { return };
                    let ra = exchange(aa, c);
                    let rb = exchange(ba, c);
                    if ra != rb {
                        diffs.lock().unwrap().push((i, ra, rb));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("exchange thread panicked");
    }
    let took = t0.elapsed();
    if let Some(dump) = std::env::var_os("TANDEM_DIFF_DUMP") {
        // Every exchange as seen from server A, for reading the corpus's answers.
        let mut text = String::new();
        for c in cases.iter() {
            text.push_str(&format!(
                "=== {}\n{}\n",
                c.name,
                String::from_utf8_lossy(&exchange(aa, c))
            ));
        }
        std::fs::write(dump, text).unwrap();
    }
    let mut diffs = diffs.lock().unwrap().clone();
    diffs.sort_by_key(|d| d.0);
    let ran = next.load(Ordering::Relaxed).min(cases.len());
    note(&format!(
        "{ran} of {} exchanges run on {ea} and {eb} in {took:?}; {} differ",
        cases.len(),
        diffs.len()
    ));
    let mut a = a;
    let mut b = b;
    a.assert_healthy(&format!("{ea} server after the corpus"));
    b.assert_healthy(&format!("{eb} server after the corpus"));
    if !diffs.is_empty() {
        let mut msg = format!(
            "{} of {ran} exchanges run differ between {ea} and {eb} (stopping at {MAX_DIFFS}):\n",
            diffs.len()
        );
        for (i, ra, rb) in diffs.iter().take(15) {
            let c = &cases[*i];
            let sent: Vec<String> = c.parts.iter().map(|p| excerpt(p)).collect();
            msg.push_str(&format!(
                "\n=== case #{i} {:?}\n--- sent ({} write(s)): {}\n--- {ea}: {}\n--- {eb}: {}\n",
                c.name,
                c.parts.len(),
                sent.join(" | "),
                excerpt(ra),
                excerpt(rb)
            ));
        }
        panic!("{msg}");
    }
}

/// Run `cases` against `addr` on [`THREADS`] threads; returns the answers in order.
fn run_all(addr: SocketAddr, cases: &Arc<Vec<Case>>) -> Vec<Vec<u8>> {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(vec![Vec::new(); cases.len()]));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cases, next, out) = (cases.clone(), next.clone(), out.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = cases.get(i) else { return };
                    let r = exchange(addr, c);
                    out.lock().unwrap()[i] = r;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("exchange thread panicked");
    }
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

// ---------------------------------------------------------------------------
// HTTP/2 against HTTP/1.1 (issue 21, point 2)
// ---------------------------------------------------------------------------

/// One HTTP/1.1 request of a corpus case, and the same request for HTTP/2.
struct Both {
    /// The request's own bytes (head and body), sent alone over HTTP/1.1.
    raw: Vec<u8>,
    method: String,
    /// Pseudo-fields first, then the request's fields (names lower-cased;
    /// `host` becomes `:authority`; connection-specific fields dropped).
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The requests in `bytes` that HTTP/2 can say too: complete HTTP/1.1
/// requests in origin form with one Host, no chunked body, no Expect, no
/// Upgrade, no TE but `trailers`, field values without control bytes, not
/// CONNECT. Stops at the first request that is not.
fn translate(bytes: &[u8]) -> Vec<Both> {
    const DROP: [&str; 3] = ["connection", "keep-alive", "proxy-connection"];
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = req.parse(rest) else {
            return out;
        };
        let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
            return out;
        };
        if !path.starts_with('/') || method == "CONNECT" {
            return out;
        }
        let hs: &[httparse::Header<'_>] = req.headers;
        let named =
            |name: &'static str| hs.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
        let hosts: Vec<_> = named("host").collect();
        let lengths: Vec<_> = named("content-length").collect();
        let te_ok = named("te").all(|h| h.value.eq_ignore_ascii_case(b"trailers"));
        if hosts.len() != 1
            || lengths.len() > 1
            || !te_ok
            || named("transfer-encoding").next().is_some()
            || named("expect").next().is_some()
            || named("upgrade").next().is_some()
        {
            return out;
        }
        let text = |v: &[u8]| {
            std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f))
                .map(str::to_string)
        };
        let Some(authority) = text(hosts[0].value) else {
            return out;
        };
        let len = match lengths.first() {
            None => 0,
            Some(h) => match text(h.value).and_then(|v| v.trim().parse::<usize>().ok()) {
                Some(l) => l,
                None => return out,
            },
        };
        if rest.len() < n + len {
            return out;
        }
        let mut fields = vec![
            (":method".to_string(), method.to_string()),
            (":scheme".to_string(), "http".to_string()),
            (":authority".to_string(), authority),
            (":path".to_string(), path.to_string()),
        ];
        for h in req.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            if name == "host" || DROP.contains(&name.as_str()) {
                continue;
            }
            let Some(v) = text(h.value) else { return out };
            fields.push((name, v.trim().to_string()));
        }
        out.push(Both {
            raw: rest[..n + len].to_vec(),
            method: method.to_string(),
            fields,
            body: rest[n..n + len].to_vec(),
        });
        rest = &rest[n + len..];
    }
}

/// The request on a new stream of `c` (a new connection when the last one
/// was ended); the answer, or why there is none.
fn ask_h2(
    c: &mut Option<common::h2::H2>,
    addr: SocketAddr,
    b: &Both,
) -> Result<common::h2::Answer, String> {
    use common::h2::*;
    if c.as_ref().is_none_or(|c| c.goaway.is_some()) {
        *c = Some(H2::handshake(addr));
    }
    let c = c.as_mut().unwrap();
    let id = c.next_id;
    c.next_id += 2;
    send_both(c, id, &b.fields, &b.body);
    let r = c.try_read_response(id, Duration::from_secs(5))?;
    match r.reset {
        Some(code) if !r.complete => Err(format!("RST_STREAM {code:#x} after {}", r.describe())),
        _ => Ok(Answer::from(&r)),
    }
}

/// HEADERS, then the body in DATA frames of at most 16384 bytes (the
/// default SETTINGS_MAX_FRAME_SIZE; the corpus's bodies fit the default
/// 65535-byte windows).
fn send_both(c: &mut common::h2::H2, id: u32, list: &[(String, String)], body: &[u8]) {
    use common::h2::*;
    c.send_headers(id, list, body.is_empty());
    let chunks: Vec<&[u8]> = body.chunks(16384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() { END_STREAM } else { 0 };
        c.send_frame(DATA, flags, id, chunk);
    }
}

/// An HTTP/1.1 400 or 431 and an HTTP/2 RST_STREAM PROTOCOL_ERROR are the
/// same refusal: RFC 9113 §8.1.1 makes a malformed request a stream error.
fn same_refusal(h1: &common::h2::Answer, h2: &Result<common::h2::Answer, String>) -> bool {
    matches!(h1.status, 400 | 431) && h2.as_ref().is_err_and(|e| e.starts_with("RST_STREAM 0x1 "))
}

engine_tests! {
    /// Where a request is cut between two writes must not change the answer:
    /// every offset of each split source, compared with the unsplit request.
    fn split_anywhere_answers_like_whole(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, CONFIG, &site.root);
        let mut cases = Vec::new();
        for (name, src) in split_sources() {
            let full = cat(&src, CLOSER);
            cases.push(case(format!("{name} whole"), vec![full.clone()]));
            for off in 1..src.len() {
                cases.push(case(format!("{name} split at {off}"), vec![full[..off].to_vec(), full[off..].to_vec()]));
            }
        }
        let cases = Arc::new(cases);
        let answers = run_all(srv.addr(), &cases);
        let mut bad = Vec::new();
        let mut whole = 0;
        for (i, c) in cases.iter().enumerate() {
            if c.name.ends_with(" whole") {
                whole = i;
                continue;
            }
            if answers[i] != answers[whole] {
                bad.push(format!(
                    "{:?}: first write {}\n  split: {}\n  whole: {}",
                    c.name,
                    show_all(&c.parts[0]),
                    excerpt(&answers[i]),
                    excerpt(&answers[whole])
                ));
            }
        }
        assert!(bad.is_empty(), "{} of {} split requests answered differently from the whole request:\n{}", bad.len(), cases.len(), bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n"));
    }

    /// Every request of the corpus (and of tests/tls.rs's differential)
    /// that HTTP/2 can carry gets the same status, representation fields
    /// and body over HTTP/2 (h2c) as over HTTP/1.1, on the same server;
    /// the TLS ones over HTTP/2 on TLS too (ALPN h2).
    fn h2_answers_like_http1(e) {
        use common::h2::*;
        let site = Site::new();
        site.write("\u{e9}t\u{e9}.html", b"<p>UTF8-NAME</p>");
        site.write("style.css.gz", b"GZIP-BYTES-OF-STYLE");
        site.write("v.css", &b"p { margin: 0 }\n".repeat(100));
        site.write("v.css.gz", b"GZIP-BYTES-OF-V");
        let certs = tempfile::tempdir().unwrap();
        let cert = TlsCert::new(certs.path());
        let cfg = format!("{CONFIG}\n{H2C}\n{}", cert.config());
        let srv = start_or_skip!(e, &cfg, &site.root);
        let addr = srv.addr();
        let etag = get(addr, "/style.css").header("etag").unwrap().to_string();
        // tests/tls.rs's differential, as plain HTTP/1.1 requests.
        let tls_cases: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-200,5000-5999\r\n\r\n".to_vec(),
            format!("GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").into_bytes(),
            b"GET /v.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n".to_vec(),
            b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            b"GET /../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
        ];
        let mut seen = std::collections::HashSet::new();
        let mut all: Vec<Both> = Vec::new();
        let sources = corpus().into_iter().map(|c| c.parts.concat()).chain(tls_cases.iter().cloned());
        for bytes in sources {
            // Raw non-ASCII targets: their own test below.
            for b in translate(&bytes).into_iter().filter(|b| b.fields[3].1.is_ascii()) {
                if seen.insert(b.raw.clone()) {
                    all.push(b);
                }
            }
        }
        let tls_list: Vec<Both> = tls_cases.iter().flat_map(|b| translate(b)).collect();
        assert_eq!(tls_list.len(), tls_cases.len(), "every tls.rs case translates");
        assert!(all.len() >= 140, "only {} requests of the corpus translate", all.len());
        let mut diffs = Vec::new();
        let mut refused = 0;
        let mut h2c = None;
        for b in &all {
            let h1 = Answer::from(&request(addr, &b.raw));
            let h2 = ask_h2(&mut h2c, addr, b);
            if same_refusal(&h1, &h2) {
                refused += 1;
                continue;
            }
            let verdict = h2.and_then(|h2| same_answer(&h1, &h2).map_err(|e| format!("{e}\n  h2: {}", h2.describe())));
            if let Err(why) = verdict {
                diffs.push(format!("h2c {} {}: {why}\n  1.1: {}", b.method, show(&b.raw), h1.describe()));
            }
        }
        // Over TLS: ALPN h2 against HTTP/1.1 on the plain port.
        let tls = tls_addr(&srv);
        let mut c = H2::connect_tls(tls, cert.client(&[b"h2"]));
        for b in &tls_list {
            let h1 = Answer::from(&request(addr, &b.raw));
            let mut f = b.fields.clone();
            f[1].1 = "https".to_string();
            let id = c.next_id;
            c.next_id += 2;
            send_both(&mut c, id, &f, &b.body);
            let verdict = c.try_read_response(id, Duration::from_secs(5)).and_then(|r| same_answer(&h1, &Answer::from(&r)));
            if let Err(why) = verdict {
                diffs.push(format!("TLS h2 {} {}: {why}", b.method, show(&b.raw)));
            }
        }
        note(&format!("{} corpus requests and {} TLS ones compared ({refused} refused alike: 400/431 and RST_STREAM); {} differ", all.len(), tls_list.len(), diffs.len()));
        assert!(diffs.is_empty(), "{} of {} differ between HTTP/1.1 and HTTP/2:\n{}", diffs.len(), all.len() + tls_list.len(), diffs.iter().take(15).cloned().collect::<Vec<_>>().join("\n\n"));
    }

    /// A target with raw UTF-8 bytes (the corpus's `GET /été.html`):
    /// HTTP/1.1 serves the file; HTTP/2 must give the same answer.
    fn h2_raw_utf8_path_answers_like_http1(e) {
        use common::h2::*;
        let site = Site::new();
        site.write("\u{e9}t\u{e9}.html", b"<p>UTF8-NAME</p>");
        let srv = start_or_skip!(e, &format!("{CONFIG}\n{H2C}"), &site.root);
        let raw = "GET /\u{e9}t\u{e9}.html HTTP/1.1\r\nHost: t\r\n\r\n".as_bytes().to_vec();
        let both = translate(&raw).pop().expect("translates");
        let h1 = Answer::from(&request(srv.addr(), &raw));
        assert_eq!(h1.status, 200, "{}", h1.describe());
        let h2 = ask_h2(&mut None, srv.addr(), &both).unwrap_or_else(|e| panic!("HTTP/2: {e}\n  1.1: {}", h1.describe()));
        same_answer(&h1, &h2).unwrap_or_else(|e| panic!("{e}"));
    }
}
