//! `H2Conn`'s flow: windows given back, priorities, answers that wait
//! for a peer that reads, partial sends.

use super::*;

/// SETTINGS_INITIAL_WINDOW_SIZE and the connection's window at 2^30:
/// nothing waits for a window.
fn wide_windows() -> Vec<u8> {
    let mut s = client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0x40, 0, 0, 0]);
    s.extend(window_updates(1, 0, 1 << 30));
    s
}

/// `n` WINDOW_UPDATE frames of `inc` on `stream`.
fn window_updates(n: usize, stream: u32, inc: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| client_frame(kind::WINDOW_UPDATE, 0, stream, &inc.to_be_bytes()))
        .collect()
}

/// The order DATA frames go out in: the stream ids of consecutive runs
/// of frames (1, 1, 3 → [1, 3]), for streams opened with `prio` (a
/// `priority` field, or none) on four `/big` requests with wide windows.
fn data_runs(prio: [Option<&str>; 4]) -> Vec<u32> {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut s = wide_windows();
    for (i, p) in prio.iter().enumerate() {
        let extra: Vec<(&str, &str)> = p.iter().map(|v| ("priority", *v)).collect();
        let f = flag::END_HEADERS | flag::END_STREAM;
        let id = 1 + 2 * i as u32;
        s.extend(client_frame(
            kind::HEADERS,
            f,
            id,
            &block("GET", "/big", &extra),
        ));
    }
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    let mut runs: Vec<u32> = Vec::new();
    let mut bytes = std::collections::HashMap::new();
    for (h, p) in f.iter().filter(|(h, _)| h.kind == kind::DATA) {
        *bytes.entry(h.stream).or_insert(0) += p.len();
        if runs.last() != Some(&h.stream) {
            runs.push(h.stream);
        }
    }
    assert!(bytes.values().all(|&n| n == BIG), "{bytes:?}");
    runs
}

/// RFC 9218 §10: without priorities, responses go whole, one after
/// another by stream id; a more urgent one first; incremental ones of an
/// urgency take turns, after the non-incremental ones of that urgency.
#[test]
fn data_goes_in_priority_order() {
    assert_eq!(data_runs([None; 4]), [1, 3, 5, 7]);
    assert_eq!(
        data_runs([None, Some("u=1"), Some("u=5"), Some("u=0, i=?0")]),
        [7, 3, 1, 5]
    );
    let runs = data_runs([Some("i"), Some("u=3;x, i"), None, Some("u=4")]);
    assert_eq!(runs[0], 5);
    assert_eq!(*runs.last().unwrap(), 7);
    // 1 and 3 alternate, a frame each.
    let turns = &runs[1..runs.len() - 1];
    assert!(turns.len() > 4, "{runs:?}");
    assert!(
        turns.windows(2).all(|w| w[0] != w[1]) && turns[0] == 1,
        "{runs:?}"
    );
}

/// A more urgent stream whose window is shut does not hold back a less
/// urgent one.
#[test]
fn an_urgent_stream_with_a_shut_window_is_passed_over() {
    let mut env = Env::new();
    let mut c = env.conn();
    let mut s = client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]);
    let f = flag::END_HEADERS | flag::END_STREAM;
    s.extend(client_frame(
        kind::HEADERS,
        f,
        1,
        &block("GET", "/big", &[("priority", "u=0")]),
    ));
    s.extend(get(3, "/small"));
    s.extend(client_frame(
        kind::WINDOW_UPDATE,
        0,
        3,
        &100u32.to_be_bytes(),
    ));
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    assert!(!f.iter().any(|(h, _)| h.kind == kind::DATA && h.stream == 1));
    assert!(
        f.iter()
            .any(|(h, p)| h.kind == kind::DATA && h.stream == 3 && p == b"small")
    );
}

/// The `priority` field read as RFC 9218 §4 asks: unknown members,
/// parameters and bad values ignored, the last member winning, several
/// field lines read as one.
#[test]
fn priority_fields_are_read_leniently() {
    let of = |lines: &[&str]| {
        let extra: Vec<(&str, &str)> = lines.iter().map(|v| ("priority", *v)).collect();
        let f = hpack::Decoder::new()
            .decode(&block("GET", "/", &extra), 8192)
            .unwrap();
        let p = stream::Priority::of(&f);
        (p.urgency, p.incremental)
    };
    assert_eq!(of(&[]), (3, false));
    assert_eq!(of(&["u=1"]), (1, false));
    assert_eq!(of(&["u=0, i"]), (0, true));
    assert_eq!(of(&["i=?1;a=b,u=6"]), (6, true));
    assert_eq!(of(&["u=8"]), (3, false));
    assert_eq!(of(&["u=-1, u=1x, u=\"2\", i=1, i=?2"]), (3, false));
    assert_eq!(of(&["u=2, u=5"]), (5, false));
    assert_eq!(of(&["u=2", "i"]), (2, true));
    assert_eq!(of(&["i, i=?0"]), (3, false));
    assert_eq!(of(&["foo=bar, u=4;q"]), (4, false));
}

/// RFC 9113 §6.9: a client may give back the window of DATA frames that
/// were in flight when their stream ended. Up to one WINDOW_UPDATE per
/// DATA frame sent is that, not a flood; beyond it, the budget counts.
#[test]
fn window_given_back_on_ended_streams_is_no_flood() {
    let mut env = Env::new();
    env.limits.h2.max_control_frames_per_second = 5;
    let mut c = env.conn();
    let mut s = wide_windows();
    s.extend(get(1, "/big"));
    env.input(&mut c, &s);
    let f = env.frames(&mut c);
    let data = f.iter().filter(|(h, _)| h.kind == kind::DATA).count();
    assert!(data > 5, "{data} DATA frames");
    env.input(&mut c, &window_updates(data, 1, 16_384));
    assert_eq!(goaway_code(&env.frames(&mut c)), None);
    env.input(&mut c, &window_updates(6, 1, 1));
    assert_eq!(
        goaway_code(&env.frames(&mut c)),
        Some(Code::EnhanceYourCalm as u32)
    );
}

/// A request reset (or left by a closed connection) while it waited for
/// a descriptor slot is still a request: one access-log line, status 499
/// and no bytes, as nginx logs a request its client gave up on.
#[test]
fn requests_ended_while_waiting_are_logged() {
    let mut env = Env::two_slots();
    let mut c = env.conn();
    env.input(
        &mut c,
        &client_frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]),
    );
    let reqs: Vec<u8> = [1, 3, 5, 7, 9]
        .iter()
        .flat_map(|&id| get(id, &format!("/big?{id}")))
        .collect();
    env.input(&mut c, &reqs);
    env.frames(&mut c);
    let cancel = 8u32.to_be_bytes();
    env.input(&mut c, &client_frame(kind::RST_STREAM, 0, 7, &cancel));
    let log = String::from_utf8(std::mem::take(&mut env.log)).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("\"GET /big?7 HTTP/2.0\" 499 0"), "{log}");
    c.handle_error(&mut env.ctx());
    let log = String::from_utf8(std::mem::take(&mut env.log)).unwrap();
    assert!(log.contains("\"GET /big?9 HTTP/2.0\" 499 0"), "{log}");
    assert!(!log.contains("/big?7"), "{log}");
}

/// h2c: a plaintext connection opening with the preface (split anywhere)
/// becomes HTTP/2, one opening otherwise HTTP/1.1 with the bytes held back
/// first; a drain begun while it was undecided holds either way.
#[test]
fn an_undecided_cleartext_connection_keeps_its_bytes_and_a_drain() {
    let mut env = Env::new();
    env.limits.h2.cleartext = true;
    let peer = "127.0.0.1:1".parse().unwrap();

    let mut c = Http::plain(peer, env.now.instant(), &env.limits);
    let (a, b) = frame::PREFACE.split_at(5);
    c.handle_input(&mut env.ctx(), a);
    assert!(!c.is_h2() && !c.is_closed());
    c.begin_shutdown(&mut env.ctx());
    c.handle_input(&mut env.ctx(), b);
    let Http::H2(h) = &mut c else {
        panic!("the preface did not make it HTTP/2")
    };
    let f = env.frames(h);
    assert_eq!(f.first().map(|(h, _)| h.kind), Some(kind::SETTINGS));
    assert!(f.iter().any(|(h, _)| h.kind == kind::GOAWAY), "no GOAWAY");

    // A lookalike ("PRI /..."), split where it still matched the preface.
    let mut c = Http::plain(peer, env.now.instant(), &env.limits);
    c.handle_input(&mut env.ctx(), b"PR");
    c.begin_shutdown(&mut env.ctx());
    c.handle_input(&mut env.ctx(), b"I / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!c.is_h2());
    let mut out = Vec::new();
    while let Transmit::Send(segs) = c.poll_transmit() {
        let mut n = 0;
        for s in segs {
            if let Segment::Bytes(b) = s {
                out.extend_from_slice(b);
            }
            n += s.len() as usize;
        }
        c.handle_sent(&mut env.ctx(), n);
    }
    let s = String::from_utf8_lossy(&out);
    assert!(s.starts_with("HTTP/1.1 501 "), "{s}");
    assert!(s.contains("\r\nConnection: close\r\n"), "{s}");
}

/// A burst of requests whose answers wait for a peer that does not read:
/// past `ACT_HIGH` of answers queued, or `DONE_CAP` streams answered and
/// not yet sent, no more frames are acted on (they wait in `inbuf`, and
/// no more input is taken), so what the connection holds is bounded, not
/// a head and a log record per request read. As the peer reads, the rest
/// are answered, in order, also after its EOF; then the connection closes.
#[test]
fn answers_wait_for_a_peer_that_reads() {
    let mut env = Env::new();
    let mut c = env.conn();
    env.frames(&mut c);
    let f = flag::END_HEADERS | flag::END_STREAM;
    let n = 3000;
    let burst: Vec<u8> = (0..n)
        .flat_map(|k| client_frame(kind::HEADERS, f, 1 + 2 * k, &block("HEAD", "/small", &[])))
        .collect();
    env.input(&mut c, &burst);
    c.handle_eof(&mut env.ctx());
    let queued = c.out.pending() + c.ctrl.len();
    assert!(
        queued <= ACT_HIGH + 1024,
        "{queued} bytes of answers queued"
    );
    assert!(c.done.len() <= DONE_CAP, "{} answers wait", c.done.len());
    assert_eq!(c.input_room(&env.limits), 0);
    assert!(c.last_id < 2 * n - 1, "every request acted on at once");
    assert!(!c.is_closed());
    let f = env.frames(&mut c);
    let ended: Vec<u32> = f
        .iter()
        .filter(|(h, _)| h.kind == kind::HEADERS && h.flags & flag::END_STREAM != 0)
        .map(|(h, _)| h.stream)
        .collect();
    assert_eq!(ended, (0..n).map(|k| 1 + 2 * k).collect::<Vec<u32>>());
    assert!(c.is_closed(), "{:?}", c.poll_transmit());
}

/// SETTINGS_INITIAL_WINDOW_SIZE values are applied once a frame (their
/// net change), yet a stream window past 2^31-1 at any of them in turn is
/// still FLOW_CONTROL_ERROR (RFC 9113 §6.9.2).
#[test]
fn window_overflow_inside_one_settings_frame() {
    let setting = |pairs: &[(u16, u32)]| {
        let p: Vec<u8> = pairs
            .iter()
            .flat_map(|(k, v)| k.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        client_frame(kind::SETTINGS, 0, 0, &p)
    };
    let iws = frame::setting::INITIAL_WINDOW_SIZE;
    let mut env = Env::new();
    let mut c = env.conn();
    env.input(&mut c, &setting(&[(iws, 0)]));
    env.input(&mut c, &get(1, "/big"));
    let top = (frame::MAX_WINDOW as u32).to_be_bytes();
    env.input(&mut c, &client_frame(kind::WINDOW_UPDATE, 0, 1, &top));
    env.frames(&mut c);
    let w = c.streams[&1].window;
    // Up to the maximum and back: within it.
    let room = (frame::MAX_WINDOW - w) as u32;
    env.input(&mut c, &setting(&[(iws, room), (iws, 0)]));
    assert_eq!(c.streams[&1].window, w);
    // Up by one past the maximum and back: the error all the same.
    env.input(&mut c, &setting(&[(iws, room + 1), (iws, 0)]));
    let f = env.frames(&mut c);
    assert_eq!(goaway_code(&f), Some(Code::FlowControl as u32));
}

/// What the socket takes, in pieces of any size (none, mid-frame, at
/// segment boundaries, or reported larger than offered): the same bytes
/// go out as when it takes all at once, and a stream is logged only once
/// its END_STREAM frame has wholly gone (`done`, `report_sent`).
#[test]
fn partial_sends_change_neither_the_bytes_nor_when_streams_are_logged() {
    let mut input = Vec::new();
    // As many streams as the test limits let open at once.
    for id in [1, 3, 5] {
        input.extend(get(id, "/small"));
    }
    input.extend(get(7, "/big"));
    let mut more = client_frame(kind::WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
    more.extend(client_frame(
        kind::WINDOW_UPDATE,
        0,
        7,
        &(1u32 << 30).to_be_bytes(),
    ));
    let lines = |log: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(log)
            .lines()
            .map(|l| l[l.find('"').unwrap()..].to_owned())
            .collect()
    };
    // One clock for every run: a Date header is in the bytes compared.
    let (instant, wall) = (Instant::now(), SystemTime::now());
    let mut env = Env::new();
    env.now = Now::new(instant, wall);
    let mut c = env.conn();
    env.input(&mut c, &input);
    let mut want = env.output(&mut c, usize::MAX);
    env.input(&mut c, &more);
    want.extend(env.output(&mut c, usize::MAX));
    let want_log = lines(&env.log);
    assert_eq!(want_log.len(), 4, "{want_log:?}");

    let mut rng: u64 = 0x9e37_79b9;
    for round in 0..40 {
        let mut env = Env::new();
        env.now = Now::new(instant, wall);
        let mut c = env.conn();
        env.input(&mut c, &input);
        let mut got = Vec::new();
        let mut fed = false;
        for _ in 0..100_000 {
            let offered: Vec<u8> = match c.poll_transmit() {
                Transmit::Send(segs) => segs
                    .iter()
                    .flat_map(|s| match s {
                        Segment::Bytes(b) => b.to_vec(),
                        Segment::File(f) => {
                            let mut buf = vec![0; f.len as usize];
                            f.file.read_exact_at(&mut buf, f.offset).unwrap();
                            buf
                        }
                    })
                    .collect(),
                _ if !fed => {
                    fed = true;
                    env.input(&mut c, &more);
                    continue;
                }
                _ => break,
            };
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = match rng % 8 {
                0 => 0,
                1 => offered.len(),
                2 => offered.len() + 100,
                3 => 1,
                _ => (rng >> 8) as usize % (offered.len() + 1),
            };
            got.extend_from_slice(&offered[..n.min(offered.len())]);
            c.handle_sent(&mut env.ctx(), n);
            // END_STREAM frames wholly sent.
            let (mut ended, mut rest) = (0, &got[..]);
            while rest.len() >= 9 && rest.len() >= 9 + Head::parse(rest).len {
                let h = Head::parse(rest);
                let data = h.kind == kind::DATA || h.kind == kind::HEADERS;
                ended += usize::from(data && h.flags & flag::END_STREAM != 0);
                rest = &rest[9 + h.len..];
            }
            let logged = lines(&env.log).len();
            assert!(
                logged <= ended,
                "round {round}: {logged} streams logged, {ended} ended"
            );
        }
        assert!(got == want, "round {round}: other bytes went out");
        assert_eq!(lines(&env.log), want_log, "round {round}");
    }
}
