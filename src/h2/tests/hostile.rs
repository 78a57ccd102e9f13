//! `H2Conn` against a hostile or broken peer: connection errors and
//! their codes, floods, HPACK bombs, drains, random frames, a head split
//! into CONTINUATIONs, streams waiting for descriptor slots.

use super::*;

/// A frame after the preface that is not SETTINGS, a frame past our
/// MAX_FRAME_SIZE, PUSH_PROMISE, a frame between HEADERS and its
/// CONTINUATION, WINDOW_UPDATE 0 or past 2^31-1 on the connection: each a
/// connection error with its code.
#[test]
fn connection_errors_have_their_codes() {
    let wu = |inc: u32| client_frame(kind::WINDOW_UPDATE, 0, 0, &inc.to_be_bytes());
    let half = client_frame(kind::HEADERS, flag::END_STREAM, 1, &block("GET", "/", &[]));
    let cases: [(Vec<u8>, Code); 6] = [
        (vec![0, 0x40, 1, kind::DATA, 0, 0, 0, 0, 1], Code::FrameSize),
        (
            client_frame(kind::PUSH_PROMISE, 4, 1, &[0, 0, 0, 2]),
            Code::Protocol,
        ),
        (
            [half, client_frame(kind::PING, 0, 0, &[0; 8])].concat(),
            Code::Protocol,
        ),
        (wu(0), Code::Protocol),
        (
            [wu(0x7fff_0000), wu(0x7fff_0000)].concat(),
            Code::FlowControl,
        ),
        (
            client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            Code::FlowControl,
        ),
    ];
    for (bytes, code) in cases {
        let mut env = Env::new();
        let mut c = env.conn();
        env.input(&mut c, &bytes);
        assert_eq!(
            goaway_code(&env.frames(&mut c)),
            Some(code as u32),
            "{bytes:x?}"
        );
    }
    // Not SETTINGS first.
    let mut env = Env::new();
    let mut c = H2Conn::new(
        "127.0.0.1:1".parse().unwrap(),
        env.now.instant(),
        &env.limits,
    );
    env.input(
        &mut c,
        &[
            &frame::PREFACE[..],
            &client_frame(kind::PING, 0, 0, &[0; 8]),
        ]
        .concat(),
    );
    assert_eq!(
        goaway_code(&env.frames(&mut c)),
        Some(Code::Protocol as u32)
    );
}

/// Unknown frame types and PRIORITY are ignored; PING is answered; a
/// request body on a GET is read, thrown away, and its window given back.
#[test]
fn extensions_ignored_pings_answered_bodies_discarded() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut b = client_frame(0xfa, 0, 0, b"whatever");
    b.extend(client_frame(kind::PRIORITY, 0, 9, &[0, 0, 0, 0, 16]));
    b.extend(client_frame(kind::PING, 0, 0, b"12345678"));
    b.extend(client_frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block("GET", "/small", &[]),
    ));
    for _ in 0..3 {
        b.extend(client_frame(kind::DATA, 0, 1, &[0; 16_000]));
    }
    b.extend(client_frame(kind::DATA, flag::END_STREAM, 1, &[0; 10]));
    env.limits.max_body_size = 1 << 20;
    env.input(&mut c, &b);
    let f = env.frames(&mut c);
    assert!(
        f.iter()
            .any(|(h, p)| h.kind == kind::PING && h.flags == flag::ACK && p == b"12345678")
    );
    assert!(f.iter().any(|(h, p)| h.kind == kind::DATA && p == b"small"));
    let conn_wu: u32 = f
        .iter()
        .filter(|(h, _)| h.kind == kind::WINDOW_UPDATE && h.stream == 0)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .sum();
    assert!(conn_wu >= 32_000, "{conn_wu}");
    assert!(goaway_code(&f).is_none());
    assert!(c.is_idle());
}

/// Floods: PINGs, empty DATA frames, SETTINGS, CONTINUATION without end:
/// each ends in GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn floods_end_in_enhance_your_calm() {
    let ping = client_frame(kind::PING, 0, 0, &[0; 8]);
    let settings = client_frame(kind::SETTINGS, 0, 0, &[]);
    let empty = client_frame(kind::DATA, 0, 1, &[]);
    let cont = client_frame(kind::CONTINUATION, 0, 1, &[0x82]);
    let open = client_frame(kind::HEADERS, flag::END_HEADERS, 1, &block("GET", "/", &[]));
    let start = client_frame(kind::HEADERS, 0, 1, &block("GET", "/", &[]));
    for (first, each) in [
        (vec![], ping),
        (vec![], settings),
        (open, empty),
        (start, cont),
    ] {
        let mut env = Env::new();
        let mut c = env.conn();
        env.input(&mut c, &first);
        let mut n = 0;
        let mut out = Vec::new();
        while c.state == State::Open && n < 5000 {
            env.input(&mut c, &each);
            out.extend(env.output(&mut c, usize::MAX));
            n += 1;
        }
        let f = parse_frames(&out);
        assert_eq!(
            goaway_code(&f),
            Some(Code::EnhanceYourCalm as u32),
            "{each:x?}"
        );
        assert!(n <= 1001, "{n}");
    }
}

/// A tiny block that expands past max_header_size gets 431 on its stream.
#[test]
fn an_hpack_bomb_gets_431() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut blk = BytesMut::new();
    blk.put_slice(&block("GET", "/small", &[]));
    blk.put_slice(&[0x40, 6]);
    blk.put_slice(b"x-bomb");
    blk.put_slice(&[0x7f, 0xe9, 0x06]); // 127 + 105 + 6 * 128 = 1000 bytes
    blk.put_slice(&[b'b'; 1000]);
    for _ in 0..1000 {
        blk.put_u8(0x80 | 62);
    }
    let f = flag::END_HEADERS | flag::END_STREAM;
    env.input(&mut c, &client_frame(kind::HEADERS, f, 1, &blk));
    assert!(blk.len() < 3000);
    let f = env.frames(&mut c);
    let (_, h) = f.iter().find(|(h, _)| h.kind == kind::HEADERS).unwrap();
    assert_eq!(fields(h)[0], (":status".into(), "431".into()));
    assert!(goaway_code(&f).is_none());
}

/// A drain with a grace: GOAWAY(2^31-1) and a PING first; a stream the
/// client opens before the PING's ACK is still answered; the ACK brings
/// the final GOAWAY (the last stream id); a later stream is ignored.
#[test]
fn a_drain_takes_streams_until_the_ping_ack() {
    let mut env = Env::new();
    env.grace = Duration::from_secs(1);
    let mut c = env.conn();
    env.frames(&mut c);
    c.begin_shutdown(&mut env.ctx());
    let f = env.frames(&mut c);
    let (_, p) = f.iter().find(|(h, _)| h.kind == kind::GOAWAY).unwrap();
    assert_eq!(&p[..4], &MAX_STREAM_ID.to_be_bytes());
    let (_, ping) = f.iter().find(|(h, _)| h.kind == kind::PING).unwrap();
    let mut b = get(1, "/small");
    b.extend(client_frame(kind::PING, flag::ACK, 0, ping));
    b.extend(get(3, "/small"));
    env.input(&mut c, &b);
    let f = env.frames(&mut c);
    assert!(f.iter().any(|(h, _)| h.kind == kind::DATA && h.stream == 1));
    assert!(!f.iter().any(|(h, _)| h.stream == 3));
    let (_, p) = f.iter().rfind(|(h, _)| h.kind == kind::GOAWAY).unwrap();
    assert_eq!(&p[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
}

/// A client that gives back each DATA frame's bytes at once (a
/// connection WINDOW_UPDATE per response, nothing waiting) is no flood,
/// however many requests it makes; raising the window again and again
/// with tiny increments is.
#[test]
fn giving_window_back_is_no_flood() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut out = Vec::new();
    for i in 0..3000u32 {
        let id = 2 * i + 1;
        env.input(&mut c, &get(id, "/small"));
        out.extend(env.output(&mut c, usize::MAX));
        env.input(
            &mut c,
            &client_frame(kind::WINDOW_UPDATE, 0, 0, &5u32.to_be_bytes()),
        );
    }
    assert_eq!(goaway_code(&parse_frames(&out)), None);
    for _ in 0..1001 {
        env.input(
            &mut c,
            &client_frame(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
        );
    }
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::EnhanceYourCalm as u32));
}

/// A client that reads (PINGs are answered) but never opens its window
/// is still closed at send_timeout.
#[test]
fn pings_do_not_keep_a_stalled_stream() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/big"));
    env.frames(&mut c);
    let t0 = env.now.instant();
    for _ in 0..10 {
        env.now = Now::new(
            env.now.instant() + Duration::from_secs(10),
            SystemTime::now(),
        );
        env.input(&mut c, &client_frame(kind::PING, 0, 0, &[7; 8]));
        env.frames(&mut c);
        c.handle_timeout(&mut env.ctx());
        if c.is_closed() {
            break;
        }
    }
    assert!(c.is_closed());
    assert!(env.now.instant() - t0 <= env.limits.send_timeout + Duration::from_secs(10));
}

/// A response head larger than the peer's SETTINGS_MAX_FRAME_SIZE goes
/// out as HEADERS and CONTINUATION frames, each within it.
#[test]
fn a_large_head_is_split_into_continuations() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/bighead"));
    let f = env.frames(&mut c);
    let heads: Vec<&(Head, Vec<u8>)> = f
        .iter()
        .filter(|(h, _)| h.stream == 1 && h.kind != kind::DATA)
        .collect();
    assert_eq!(heads[0].0.kind, kind::HEADERS);
    assert!(heads[1..].iter().all(|(h, _)| h.kind == kind::CONTINUATION));
    assert!(heads.iter().all(|(h, _)| h.len <= frame::MAX_FRAME));
    assert_eq!(heads.last().unwrap().0.flags, flag::END_HEADERS);
    let block: Vec<u8> = heads.iter().flat_map(|(_, p)| p.clone()).collect();
    assert!(fields(&block).contains(&("x-big".into(), "b".repeat(40_000))));
    assert!(f.iter().any(|(h, p)| h.kind == kind::DATA && p == b"x"));
}

/// Random frames (valid headers of every type with random flags, ids
/// and payloads, cut at random places): no panic, and a connection that
/// is not ended holds at most `IN_CAP` bytes of input.
#[test]
fn random_frames_do_not_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut env = Env::new();
        env.limits.max_body_size = 1 << 20;
        let mut c = env.conn();
        let mut bytes = Vec::new();
        for _ in 0..40 {
            let r = next();
            let kind = (r % 11) as u8;
            let flags = (r >> 8) as u8;
            let stream = ((r >> 16) % 8) as u32;
            let len = ((r >> 24) % 40) as usize;
            let payload: Vec<u8> = match kind {
                kind::HEADERS => get(stream | 1, "/small")[9..].to_vec(),
                _ => (0..len).map(|_| next() as u8).collect(),
            };
            bytes.extend(client_frame(kind, flags, stream, &payload));
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let k = (next() as usize % 64 + 1).min(rest.len());
            env.input(&mut c, &rest[..k]);
            rest = &rest[k..];
            env.output(&mut c, usize::MAX);
            assert!(c.inbuf.len() <= IN_CAP);
        }
        c.handle_eof(&mut env.ctx());
        if c.poll_timeout().is_some() {
            env.expire(&mut c);
        }
    }
}

/// A bad PRIORITY frame is a stream error on a stream that was opened
/// (RST_STREAM), and a connection error on an idle one (no RST_STREAM
/// may name an idle stream).
#[test]
fn bad_priority_frames() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &get(1, "/small"));
    env.input(
        &mut c,
        &client_frame(kind::PRIORITY, 0, 1, &[0, 0, 0, 1, 9]),
    );
    let f = env.frames(&mut c);
    let rst = f.iter().find(|(h, _)| h.kind == kind::RST_STREAM);
    assert_eq!(
        rst.map(|(h, p)| (h.stream, p[3])),
        Some((1, Code::Protocol as u8))
    );
    assert_eq!(goaway_code(&f), None);
    env.input(&mut c, &client_frame(kind::PRIORITY, 0, 9, &[0, 0, 0]));
    let f = env.frames(&mut c);
    assert!(!f.iter().any(|(h, _)| h.kind == kind::RST_STREAM));
    assert_eq!(goaway_code(&f), Some(Code::FrameSize as u32));
}

/// EOF in the middle of a header block: GOAWAY(PROTOCOL_ERROR), then,
/// once the write side is shut, the connection closes without lingering.
#[test]
fn eof_inside_a_header_block() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(
        &mut c,
        &client_frame(kind::HEADERS, flag::END_STREAM, 1, &block("GET", "/", &[])),
    );
    c.handle_eof(&mut env.ctx());
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::Protocol as u32));
    assert!(matches!(c.poll_transmit(), Transmit::Shutdown));
    c.handle_shutdown();
    assert!(c.poll_timeout().is_some_and(|d| d <= env.now.instant()));
    c.handle_timeout(&mut env.ctx());
    assert!(c.is_closed());
}

/// SETTINGS_INITIAL_WINDOW_SIZE 2^20 and the connection's window 2^24 up.
fn open_windows(env: &mut Env, c: &mut H2Conn) {
    let big_window = [0, 4, 0, 0x10, 0, 0];
    env.input(c, &client_frame(kind::SETTINGS, 0, 0, &big_window));
    let inc = (1u32 << 24).to_be_bytes();
    env.input(c, &client_frame(kind::WINDOW_UPDATE, 0, 0, &inc));
}

/// Each of `ids` got all of `/big` in DATA frames.
fn all_big<const N: usize>(f: &[(Head, Vec<u8>)], ids: [u32; N]) {
    for id in ids {
        let body: usize = f
            .iter()
            .filter(|(h, _)| h.kind == kind::DATA && h.stream == id)
            .map(|(h, _)| h.len)
            .sum();
        assert_eq!(body, BIG, "stream {id}");
    }
}

/// Streams past the worker's descriptor slots wait, and are answered in
/// turn as slots free; reset ones give theirs back; a closed connection
/// gives back all it held.
#[test]
fn streams_past_the_descriptor_slots_wait() {
    let mut env = Env::two_slots();
    let mut c = env.conn();
    let zero_window = [0, 4, 0, 0, 0, 0];
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    let mut reqs = Vec::new();
    for id in [1, 3, 5, 7, 9, 11] {
        reqs.extend(get(id, "/big"));
    }
    env.input(&mut c, &reqs);
    let heads = |f: &[(Head, Vec<u8>)]| -> Vec<u32> {
        f.iter()
            .filter(|(h, _)| h.kind == kind::HEADERS)
            .map(|(h, _)| h.stream)
            .collect()
    };
    // The connection's own slot and the worker's 2.
    assert_eq!(heads(&env.frames(&mut c)), [1, 3, 5]);
    assert_eq!(env.fds.extra(), 2);
    // A reset answered stream gives its slot to the first that waits; a
    // reset waiting one leaves the queue.
    let cancel = 8u32.to_be_bytes();
    env.input(&mut c, &client_frame(kind::RST_STREAM, 0, 3, &cancel));
    assert_eq!(heads(&env.frames(&mut c)), [7]);
    env.input(&mut c, &client_frame(kind::RST_STREAM, 0, 9, &cancel));
    assert!(heads(&env.frames(&mut c)).is_empty());
    assert_eq!(env.fds.extra(), 2);
    // The windows open: the rest is answered as slots free, whole.
    open_windows(&mut env, &mut c);
    let f = env.frames(&mut c);
    assert_eq!(heads(&f), [11]);
    all_big(&f, [1, 5, 7, 11]);
    assert!(c.is_idle());
    assert_eq!(env.fds.extra(), 0);
    // A connection that closes with slots held gives them back.
    let mut c = env.conn();
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    env.input(
        &mut c,
        &[get(1, "/big"), get(3, "/big"), get(5, "/big")].concat(),
    );
    assert_eq!(env.fds.extra(), 2);
    c.handle_error(&mut env.ctx());
    assert_eq!(env.fds.extra(), 0);
}

/// Streams waiting for a slot are still answered, whole, after the
/// client's GOAWAY and a drain; after the client's EOF, streams no window
/// can ever open for are dropped at once, so the slots come back and the
/// connection closes (not after send_timeout).
#[test]
fn waiting_streams_across_goaway_drain_and_eof() {
    let mut env = Env::two_slots();
    let zero_window = [0, 4, 0, 0, 0, 0];
    let reqs: Vec<u8> = [1, 3, 5, 7, 9, 11]
        .iter()
        .flat_map(|&id| get(id, "/big"))
        .collect();
    let mut c = env.conn();
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    env.input(&mut c, &reqs);
    let mut f = env.frames(&mut c);
    assert_eq!(env.fds.extra(), 2);
    env.input(&mut c, &client_frame(kind::GOAWAY, 0, 0, &[0; 8]));
    c.begin_shutdown(&mut env.ctx());
    open_windows(&mut env, &mut c);
    f.extend(env.frames(&mut c));
    all_big(&f, [1, 3, 5, 7, 9, 11]);
    assert_eq!(env.fds.extra(), 0);
    assert!(!c.is_idle(), "a connection after GOAWAY ends");
    // EOF with streams shut by their windows and others waiting.
    let mut c = env.conn();
    env.input(&mut c, &client_frame(kind::SETTINGS, 0, 0, &zero_window));
    env.input(&mut c, &reqs);
    env.frames(&mut c);
    assert_eq!(env.fds.extra(), 2);
    c.handle_eof(&mut env.ctx());
    assert_eq!(env.fds.extra(), 0, "slots held after EOF");
    // The heads already queued go out, then the close.
    env.frames(&mut c);
    assert!(c.is_closed(), "open after EOF with nothing it can send");
}
