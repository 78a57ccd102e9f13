//! Request bodies in the chunked coding: read and thrown away before the
//! request is answered, on the connection's one body clock.

use super::*;

const CHUNKED_A: &str = "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

fn statuses(out: &Out) -> Vec<String> {
    let s = String::from_utf8_lossy(&out.bytes);
    s.match_indices("HTTP/1.1 ")
        .map(|(i, _)| s[i + 9..i + 12].to_string())
        .collect()
}

/// A chunked GET then a plain one, split at every byte: both answered in
/// full, the connection kept, and the bytes the same as for the two plain
/// GETs.
#[test]
fn chunked_body_is_read_and_the_next_request_answered() {
    let body =
        "5;ext=\"a b\"\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let input = format!("{CHUNKED_A}{body}{GET_A}");
    let plain = run(format!("{GET_A}{GET_A}").as_bytes(), &[], usize::MAX);
    for at in 0..=input.len() {
        let out = run(input.as_bytes(), &[at], usize::MAX);
        assert_eq!(out, plain, "split at {at}");
    }
    assert!(!plain.shutdown && !plain.closed);
}

#[test]
fn bad_chunked_bodies_are_refused_and_closed() {
    for (body, status) in [
        ("zz\r\nhello\r\n0\r\n\r\n", "400"),
        ("5\r\nhello\n0\r\n\r\n", "400"),
        ("5\nhello\r\n0\r\n\r\n", "400"),
        ("5\r\nhelloX0\r\n\r\n", "400"),
        ("0\r\nX 1\r\n\r\n", "400"),
        // Env's max_body_size is 100: 0x65 is 101, and so are 0x64 + 1.
        ("65\r\n", "413"),
        (
            &format!("64\r\n{}\r\n1\r\nx\r\n0\r\n\r\n", "x".repeat(100)),
            "413",
        ),
    ] {
        let input = format!("{CHUNKED_A}{body}{GET_A}");
        let out = run(input.as_bytes(), &[], usize::MAX);
        assert_eq!(statuses(&out), [status], "{body:?}");
        let s = String::from_utf8_lossy(&out.bytes);
        assert!(s.contains("Connection: close\r\n") && out.shutdown, "{s}");
    }
    // At the limit: answered, and the next request too.
    let input = format!("{CHUNKED_A}64\r\n{}\r\n0\r\n\r\n{GET_A}", "x".repeat(100));
    let out = run(input.as_bytes(), &[], usize::MAX);
    assert_eq!(statuses(&out), ["200", "200"]);
}

#[test]
fn the_answer_waits_for_the_body() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), format!("{CHUNKED_A}5\r\nhel").as_bytes());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert!(out.bytes.is_empty() && !c.is_idle());
    c.handle_input(&mut env.ctx(), b"lo\r\n0\r\n\r\n");
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert_eq!(statuses(&out), ["200"]);
    assert!(c.is_idle());
    assert!(
        String::from_utf8_lossy(&env.log).contains("\"GET /a.txt HTTP/1.1\" 200 5"),
        "{}",
        String::from_utf8_lossy(&env.log)
    );
}

/// The body must be whole within header_timeout of its head's end, however
/// it is paced (as a Content-Length one); unanswered then, it gets 408.
#[test]
fn a_dripped_chunked_body_times_out() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), b"GET /a.txt HTTP/1.1\r\nHo");
    env.advance(Duration::from_secs(1));
    c.handle_input(
        &mut env.ctx(),
        b"st: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let end_of_head = env.now.instant();
    for _ in 0..14 {
        env.advance(Duration::from_secs(1));
        c.handle_input(&mut env.ctx(), b"1\r\nx\r\n");
        assert_eq!(
            c.poll_timeout(),
            Some(end_of_head + env.limits.header_timeout)
        );
    }
    env.advance(Duration::from_secs(1));
    c.handle_timeout(&mut env.ctx());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert_eq!(statuses(&out), ["408"]);
    assert!(out.shutdown);
    let log = String::from_utf8_lossy(&env.log);
    assert!(log.contains("\"GET /a.txt HTTP/1.1\" 408 "), "{log}");
}

/// The body's clock stops with the body: the next head starts its own.
#[test]
fn the_clock_starts_again_after_the_body() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), format!("{CHUNKED_A}1\r\nx\r\n").as_bytes());
    env.advance(Duration::from_secs(10));
    c.handle_input(&mut env.ctx(), b"0\r\n\r\nGET / HTTP/1.1\r\n");
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert_eq!(statuses(&out), ["200"]);
    assert_eq!(
        c.poll_timeout(),
        Some(env.now.instant() + env.limits.header_timeout)
    );
}

/// `Expect: 100-continue`: a 100 (Continue) first, whether the body came
/// with the head or not, then the answer once the body is in; the 100 is
/// neither logged nor counted as a response.
#[test]
fn expect_100_continue_gets_a_continue_first() {
    let head = "GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    let input = format!("{head}3\r\nabc\r\n0\r\n\r\n{GET_A}");
    let plain = run(format!("{GET_A}{GET_A}").as_bytes(), &[], usize::MAX);
    let mut want = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    want.extend_from_slice(&plain.bytes);
    for at in [0, head.len() - 1, head.len(), head.len() + 4, input.len()] {
        let out = run(input.as_bytes(), &[at], 5);
        assert_eq!(
            String::from_utf8_lossy(&out.bytes),
            String::from_utf8_lossy(&want),
            "split at {at}"
        );
    }
    // Before the body: only the 100.
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Out::default();
    c.handle_input(&mut env.ctx(), head.as_bytes());
    drain(&mut env, &mut c, usize::MAX, &mut out);
    assert_eq!(out.bytes, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.handle_input(&mut env.ctx(), b"0\r\n\r\n");
    drain(&mut env, &mut c, usize::MAX, &mut out);
    let log = String::from_utf8_lossy(&env.log);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("\"GET /a.txt HTTP/1.1\" 200 5"), "{log}");
    let counted = crate::metrics::WorkerCounters::default();
    counted.response(200, (out.bytes.len() - 25) as u64);
    assert_eq!(format!("{:?}", env.stats), format!("{counted:?}"));
}
