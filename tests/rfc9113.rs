//! RFC 9113 (HTTP/2) checklist, one test per rule, named after its section,
//! on both engines, over cleartext HTTP/2 with prior knowledge
//! (`http2_cleartext = true`) spoken by the raw client in common/h2.rs.
//!
//! Connection errors must end in GOAWAY with the section's code, then the
//! close; stream errors in RST_STREAM with the connection still serving.
//! A malformed request (§8.1.1) may be answered 400 or reset with
//! PROTOCOL_ERROR; never served as if it were well-formed.

#[macro_use]
mod common;

use std::time::Instant;

use common::h2::*;
use common::*;

fn start(e: &str, extra: &str) -> Option<(Site, Server)> {
    let site = Site::new();
    let cfg = format!("{H2C}\nworkers = 1\n{extra}");
    let srv = Server::start(e, &cfg, &site.root)?;
    Some((site, srv))
}

/// GET /app.js on the next stream with its block ending in a reference to
/// dynamic table entry 62 (0xbe), the field the trailers before added: the
/// server decoded them, though it reset, dropped or refused their stream.
/// `window`: open the stream's window too (the connection's is shut).
fn app_js_by_the_trailers_entry(c: &mut H2, window: bool) {
    let next = c.next_id;
    c.next_id += 2;
    let mut block = encode_fields(&c.request_fields("GET", "/app.js", &[]));
    block.push(0xbe);
    c.send_frame(HEADERS, END_HEADERS | END_STREAM, next, &block);
    if window {
        c.send_frame(WINDOW_UPDATE, 0, next, &100_000u32.to_be_bytes());
    }
    let r = c.read_response(next);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, APP_JS.as_bytes()),
        "{}",
        r.describe()
    );
}

macro_rules! h2_server {
    ($e:expr) => {
        h2_server!($e, "")
    };
    ($e:expr, $extra:expr) => {
        match start($e, $extra) {
            Some(x) => x,
            None => return,
        }
    };
}

/// A malformed request (§8.1.1): RST_STREAM PROTOCOL_ERROR or a 400,
/// then the connection still answers.
#[track_caller]
fn expect_malformed(c: &mut H2, id: u32, ctx: &str) {
    let r = c
        .try_read_response(id, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("{ctx}: stream {id}: {e}"));
    assert!(
        r.reset == Some(PROTOCOL_ERROR) || r.status == 400,
        "{ctx}: want RST_STREAM PROTOCOL_ERROR or 400, got {}",
        r.describe()
    );
    assert_ne!(r.status, 200, "{ctx}: served");
    let ok = c.get("/style.css", &[]);
    assert_eq!(ok.status, 200, "{ctx}: the next request: {}", ok.describe());
    assert_eq!(ok.body, STYLE_CSS.as_bytes());
}

/// A stream error with `code` on `id`: RST_STREAM, or (RFC 9113 §5.4.1
/// allows it) a GOAWAY with the same code. True when the connection is
/// still open (RST_STREAM).
#[track_caller]
fn expect_stream_error(c: &mut H2, id: u32, code: u32, ctx: &str) -> bool {
    match c.try_read_response(id, IO_TIMEOUT) {
        Ok(r) => {
            assert_eq!(
                r.reset,
                Some(code),
                "{ctx}: want RST_STREAM {code:#x} on {id}, got {}",
                r.describe()
            );
            true
        }
        Err(e) => {
            let g = c
                .goaway
                .clone()
                .unwrap_or_else(|| panic!("{ctx}: neither RST_STREAM nor GOAWAY: {e}"));
            assert_eq!(g.code, code, "{ctx}: {g:?}");
            false
        }
    }
}

/// A request with exactly `list` as its field block on a new stream.
fn send_block(c: &mut H2, list: &[(&str, &str)]) -> u32 {
    let id = c.next_id;
    c.next_id += 2;
    c.send_headers(id, list, true);
    id
}

fn base(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "http".into()),
        (":authority", "t".into()),
        (":path", path.into()),
    ]
}

/// A GET of big.bin on a connection whose stream windows start at
/// `window` and are never given back: the stream stays open.
fn open_stalled_stream(addr: std::net::SocketAddr, window: u32) -> (H2, u32) {
    let mut c = H2::connect_with(
        addr,
        Opts {
            settings: vec![(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, window)],
            auto_window: false,
            ..Opts::default()
        },
    );
    c.wait_ready();
    let id = c.send_request("GET", "/big.bin", &[]);
    // The response head arrives: the stream is open on the server.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let f = c.pump(deadline).expect("the head of big.bin");
        if f.ty == HEADERS && f.stream == id {
            break;
        }
    }
    (c, id)
}

/// Read until the server resets stream `id`; the RST_STREAM's code.
#[track_caller]
fn wait_reset(c: &mut H2, id: u32, ctx: &str) -> u32 {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(f) = c.seen.iter().find(|f| f.ty == RST_STREAM && f.stream == id) {
            return f.error_code();
        }
        if let Err(end) = c.pump(deadline) {
            panic!(
                "{ctx}: no RST_STREAM on {id}: {end:?}; {}",
                c.seen_summary()
            );
        }
    }
}

engine_tests! {
    /// §3.4: the server's preface is a SETTINGS frame, the first it sends;
    /// it ACKs ours.
    fn s3_4_preface_then_settings_first(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::connect(srv.addr());
        let f = c.pump(Instant::now() + IO_TIMEOUT).expect("a first frame");
        assert_eq!((f.ty, f.flags & ACK, f.stream), (SETTINGS, 0, 0), "first frame {f:?}");
        c.wait_ready();
        let r = c.get("/", &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body, INDEX_HTML.as_bytes());
        check_h2_fields(&r, "GET /");
    }

    /// §3.4: a preface that is not the connection preface is a connection
    /// error: the server closes (GOAWAY PROTOCOL_ERROR if it sends one)
    /// and serves nothing.
    fn s3_4_bad_preface_closes(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = srv.connect();
        c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let got = c.read_to_close(CLOSE_TIMEOUT).unwrap_or_else(|b| panic!("still open after a bad preface; got {}", show(&b)));
        assert!(!show(&got).contains("ROOT-INDEX"), "{}", show(&got));
        // If it is read as HTTP/2 at all, the answer is a GOAWAY PROTOCOL_ERROR.
        if got.len() >= 9 && got[3] == SETTINGS {
            let tail = &got[got.len().saturating_sub(17)..];
            assert!(tail.len() == 17 && tail[3] == GOAWAY && tail[16] == PROTOCOL_ERROR as u8, "{}", show(&got));
        }
    }

    /// §3.4, §4.1: the preface and every frame written one byte at a time,
    /// then cut at random points: the same answers.
    fn s4_1_input_split_anywhere(e) {
        let (_site, srv) = h2_server!(e);
        for split in [Split::Bytewise, Split::Random(3), Split::Random(0xdead_beef)] {
            let mut c = H2::connect_with(srv.addr(), Opts { split, ..Opts::default() });
            c.wait_ready();
            let a = c.send_request("GET", "/style.css", &[("accept-encoding", "identity")]);
            let b = c.send_request("GET", "/big.bin", &[("range", "bytes=10-99")]);
            let rb = c.read_response(b);
            let ra = c.read_response(a);
            assert_eq!((ra.status, ra.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{split:?}");
            assert_eq!((rb.status, rb.body.as_slice()), (206, &big_bytes()[10..100]), "{split:?}");
            c.ping_roundtrip(&format!("{split:?}"));
        }
        // Invalid input split too: a HEADERS on stream 2, byte by byte.
        let mut c = H2::connect_with(srv.addr(), Opts { split: Split::Bytewise, ..Opts::default() });
        c.wait_ready();
        c.send_headers(2, &c.request_fields("GET", "/", &[]), true);
        c.expect_goaway(PROTOCOL_ERROR, "even stream id, bytewise");
    }

    /// §4.2: DATA frames stay within the default SETTINGS_MAX_FRAME_SIZE
    /// (16384), and within a larger one we announce.
    fn s4_2_data_frames_within_max_frame_size(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let r = c.get("/big.bin", &[]);
        assert_bytes_eq(&r.body, &big_bytes(), "big.bin");
        assert!(r.max_data <= 16384, "a DATA frame of {} bytes", r.max_data);
        let mut c = H2::connect_with(srv.addr(), Opts {
            settings: vec![(INITIAL_WINDOW_SIZE, 1 << 24), (MAX_FRAME_SIZE, 100_000)],
            ..Opts::default()
        });
        c.wait_ready();
        let r = c.get("/big.bin", &[]);
        assert_bytes_eq(&r.body, &big_bytes(), "big.bin, max frame 100000");
        assert!(r.max_data <= 100_000, "a DATA frame of {} bytes", r.max_data);
    }

    /// §4.2: a frame larger than the server's SETTINGS_MAX_FRAME_SIZE
    /// that carries a field block is a connection error FRAME_SIZE_ERROR.
    fn s4_2_frame_too_large_is_frame_size_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let max = c.peer_settings.get(&MAX_FRAME_SIZE).copied().unwrap_or(16384) as usize;
        assert!(max < (1 << 24) - 1, "the server takes frames of any size ({max})");
        let mut block = encode_fields(&c.request_fields("GET", "/", &[]));
        let head = 1 + 1 + 5 + 3; // representation, name length, "x-pad", a 3-octet value length
        block.extend(encode_fields(&[("x-pad", "p".repeat(max + 1 - block.len() - head))]));
        assert_eq!(block.len(), max + 1);
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
        c.expect_goaway(FRAME_SIZE_ERROR, "HEADERS over max frame size");
        // A PING of 9 octets (§6.7): FRAME_SIZE_ERROR too.
        let mut c = H2::handshake(srv.addr());
        c.send_frame(PING, 0, 0, b"123456789");
        c.expect_goaway(FRAME_SIZE_ERROR, "PING of 9 octets");
    }

    /// §4.3: a field block that does not decode is a connection error
    /// COMPRESSION_ERROR.
    fn s4_3_bad_field_block_is_compression_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        // Indexed field 126: past the static table, the dynamic one empty.
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82, 0x86, 0xfe]);
        c.expect_goaway(COMPRESSION_ERROR, "index out of range");
    }

    /// §4.3: the server's HPACK decoder keeps its dynamic table across
    /// blocks: a path indexed in one request is referenced in the next.
    fn s4_3_dynamic_table_spans_requests(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http (static)
        block.push(0x41); // :authority, incremental indexing, static name 1
        hpack_str(&mut block, b"t");
        block.push(0x44); // :path, incremental indexing, static name 4
        hpack_str(&mut block, b"/style.css");
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
        let r = c.read_response(1);
        assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{}", r.describe());
        // Dynamic 62 is now :path /style.css, 63 :authority t.
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82, 0x86, 0xbf, 0xbe]);
        let r = c.read_response(3);
        assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{}", r.describe());
    }

    /// §5.1.1: a client stream id must be odd.
    fn s5_1_1_even_stream_id_is_protocol_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_headers(2, &c.request_fields("GET", "/", &[]), true);
        c.expect_goaway(PROTOCOL_ERROR, "HEADERS on stream 2");
    }

    /// §5.1, §6.4: even stream ids are the server's and it opens none, so
    /// they stay idle below the client's highest id too: DATA,
    /// WINDOW_UPDATE or RST_STREAM on one is a connection error
    /// PROTOCOL_ERROR, and no RST_STREAM may name it.
    fn s5_1_even_stream_ids_stay_idle(e) {
        let (_site, srv) = h2_server!(e);
        for (ty, payload, what) in [
            (DATA, b"x".to_vec(), "DATA on 2"),
            (WINDOW_UPDATE, 1u32.to_be_bytes().to_vec(), "WINDOW_UPDATE on 2"),
            (RST_STREAM, CANCEL.to_be_bytes().to_vec(), "RST_STREAM on 2"),
        ] {
            let mut c = H2::handshake(srv.addr());
            c.next_id = 5;
            assert_eq!(c.get("/", &[]).status, 200);
            c.send_frame(ty, 0, 2, &payload);
            c.expect_goaway(PROTOCOL_ERROR, what);
            assert!(
                !c.seen.iter().any(|f| f.ty == RST_STREAM && f.stream == 2),
                "{what}: RST_STREAM names idle stream 2; {}",
                c.seen_summary()
            );
        }
    }

    /// §5.1.1: stream ids only grow.
    fn s5_1_1_decreasing_stream_id_is_protocol_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.next_id = 5;
        assert_eq!(c.get("/", &[]).status, 200);
        c.send_headers(3, &c.request_fields("GET", "/", &[]), true);
        c.expect_goaway(PROTOCOL_ERROR, "HEADERS on 3 after 5");
    }

    /// §5.1, §5.1.1: HEADERS again on a stream that has closed is a
    /// connection error (PROTOCOL_ERROR or STREAM_CLOSED).
    fn s5_1_1_reused_stream_id_is_connection_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        assert_eq!(c.get("/", &[]).status, 200);
        c.send_headers(1, &c.request_fields("GET", "/", &[]), true);
        let (g, end) = c.read_until_goaway(IO_TIMEOUT);
        let g = g.unwrap_or_else(|| panic!("no GOAWAY: {end:?}; {}", c.seen_summary()));
        assert!(g.code == PROTOCOL_ERROR || g.code == STREAM_CLOSED, "{g:?}");
        assert_ne!(end, End::Timeout);
    }

    /// §5.1.2: the server announces SETTINGS_MAX_CONCURRENT_STREAMS from
    /// `h2_max_concurrent_streams`.
    fn s5_1_2_max_concurrent_streams_announced(e) {
        let (_site, srv) = h2_server!(e, "h2_max_concurrent_streams = 7");
        let c = H2::handshake(srv.addr());
        assert_eq!(c.peer_settings.get(&MAX_CONCURRENT_STREAMS), Some(&7), "{:?}", c.peer_settings);
    }

    /// §5.5: frames of unknown type, unknown flags and unknown SETTINGS are
    /// ignored.
    fn s5_5_unknown_frame_type_ignored(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_frame(0xfa, 0xff, 0, b"extension on stream 0");
        c.send_frame(0xfb, 0, 1, b"extension on an idle stream");
        c.send_frame(SETTINGS, 0, 0, &settings_payload(&[(0x7777, 42)]));
        // Unknown flags on PING and on HEADERS.
        c.send_frame(PING, 0xf0, 0, b"unknown!");
        let f = c.request_fields("GET", "/app.js", &[]);
        c.send_frame(HEADERS, END_HEADERS | END_STREAM | 0x10 | 0x40, 1, &encode_fields(&f));
        let r = c.read_response(1);
        assert_eq!((r.status, r.body.as_slice()), (200, APP_JS.as_bytes()), "{}", r.describe());
        c.ping_roundtrip("after unknown frames");
        assert!(c.goaway.is_none(), "{:?}", c.goaway);
    }

    /// §6.1: DATA on stream 0 is a connection error PROTOCOL_ERROR.
    fn s6_1_data_on_stream_0_is_protocol_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_frame(DATA, 0, 0, b"abc");
        c.expect_goaway(PROTOCOL_ERROR, "DATA on stream 0");
    }

    /// §6.2: HEADERS with padding and a priority block are read right;
    /// HEADERS on stream 0 is PROTOCOL_ERROR.
    fn s6_2_headers_padded_with_priority(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let block = encode_fields(&c.request_fields("GET", "/sub/page.html", &[]));
        let mut p = vec![5u8]; // pad length
        p.extend_from_slice(&[0, 0, 0, 0, 16]); // depends on 0, weight 17
        p.extend_from_slice(&block);
        p.extend_from_slice(&[0; 5]);
        c.send_frame(HEADERS, END_HEADERS | END_STREAM | PADDED | PRIORITY_FLAG, 1, &p);
        let r = c.read_response(1);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>SUB-PAGE</p>"[..]), "{}", r.describe());
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 0, &block);
        c.expect_goaway(PROTOCOL_ERROR, "HEADERS on stream 0");
    }

    /// §6.3: PRIORITY frames (deprecated) are accepted and change nothing;
    /// one of the wrong length is a stream error FRAME_SIZE_ERROR.
    fn s6_3_priority_ignored(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_frame(PRIORITY, 0, 9, &[0, 0, 0, 0, 200]);
        c.send_frame(PRIORITY, 0, 1, &[0, 0, 0, 9, 1]);
        assert_eq!(c.get("/", &[]).status, 200);
        c.send_frame(PRIORITY, 0, 11, &[0, 0, 0, 0]);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match c.pump(deadline) {
                Ok(f) if f.ty == RST_STREAM && f.stream == 11 => {
                    assert_eq!(f.error_code(), FRAME_SIZE_ERROR);
                    break;
                }
                Ok(f) if f.ty == GOAWAY => {
                    // A connection error is allowed as well (§4.2).
                    assert_eq!(f.error_code(), FRAME_SIZE_ERROR);
                    return;
                }
                Ok(_) => {}
                Err(end) => panic!("no error for a 4-octet PRIORITY: {end:?}; {}", c.seen_summary()),
            }
        }
        c.next_id = 13;
        assert_eq!(c.get("/", &[]).status, 200);
    }

    /// §6.4: RST_STREAM cancels a response being sent; the connection
    /// and its other streams go on.
    fn s6_4_rst_stream_cancels_the_response(e) {
        let (_site, srv) = h2_server!(e);
        let (mut c, id) = open_stalled_stream(srv.addr(), 16384);
        c.send_frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes());
        // Its window opened after the reset must not bring more DATA.
        c.send_frame(WINDOW_UPDATE, 0, id, &1_000_000u32.to_be_bytes());
        c.opts.auto_window = true;
        let r = c.get("/style.css", &[]);
        assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()));
        c.ping_roundtrip("after RST_STREAM");
        assert!(c.received(id) <= 16384, "{} bytes on the cancelled stream, window 16384", c.received(id));
        assert!(c.goaway.is_none(), "{:?}", c.goaway);
    }

    /// §6.4: RST_STREAM on an idle stream or on stream 0 is a connection
    /// error PROTOCOL_ERROR; one of the wrong length FRAME_SIZE_ERROR.
    fn s6_4_rst_stream_on_idle_stream_is_protocol_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_frame(RST_STREAM, 0, 7, &CANCEL.to_be_bytes());
        c.expect_goaway(PROTOCOL_ERROR, "RST_STREAM on idle 7");
        let mut c = H2::handshake(srv.addr());
        c.send_frame(RST_STREAM, 0, 0, &CANCEL.to_be_bytes());
        c.expect_goaway(PROTOCOL_ERROR, "RST_STREAM on stream 0");
        let (mut c, id) = open_stalled_stream(srv.addr(), 100);
        c.send_frame(RST_STREAM, 0, id, &[0, 0, 8]);
        c.expect_goaway(FRAME_SIZE_ERROR, "RST_STREAM of 3 octets");
    }

    /// §6.5: every SETTINGS is ACKed (an empty frame); a SETTINGS ACK with
    /// a payload, one whose length is not a multiple of 6 and one on a
    /// stream are connection errors.
    fn s6_5_settings_ack(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_frame(SETTINGS, 0, 0, &settings_payload(&[(MAX_HEADER_LIST_SIZE, 1 << 16)]));
        let deadline = Instant::now() + IO_TIMEOUT;
        while c.settings_acks < 2 {
            c.pump(deadline).unwrap_or_else(|e| panic!("no second ACK: {e:?}"));
        }
        let ack = c.seen.iter().find(|f| f.ty == SETTINGS && f.has(ACK)).unwrap();
        assert!(ack.payload.is_empty(), "{ack:?}");
        c.send_frame(SETTINGS, ACK, 0, &settings_payload(&[(1, 1)]));
        c.expect_goaway(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
        let mut c = H2::handshake(srv.addr());
        c.send_frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 1]);
        c.expect_goaway(FRAME_SIZE_ERROR, "SETTINGS of 5 octets");
        let mut c = H2::handshake(srv.addr());
        c.send_frame(SETTINGS, 0, 1, &[]);
        c.expect_goaway(PROTOCOL_ERROR, "SETTINGS on stream 1");
    }

    /// §6.5.2: out-of-range SETTINGS values are connection errors.
    fn s6_5_2_settings_values_out_of_range(e) {
        let (_site, srv) = h2_server!(e);
        for (id, v, code) in [
            (ENABLE_PUSH, 2, PROTOCOL_ERROR),
            (INITIAL_WINDOW_SIZE, 1u32 << 31, FLOW_CONTROL_ERROR),
            (MAX_FRAME_SIZE, 16383, PROTOCOL_ERROR),
            (MAX_FRAME_SIZE, 1 << 24, PROTOCOL_ERROR),
        ] {
            let mut c = H2::handshake(srv.addr());
            c.send_frame(SETTINGS, 0, 0, &settings_payload(&[(id, v)]));
            c.expect_goaway(code, &format!("SETTINGS {id}={v}"));
        }
    }

    /// §6.5.3, §6.9.2: SETTINGS_INITIAL_WINDOW_SIZE bounds what the server
    /// sends on a stream until a WINDOW_UPDATE opens it.
    fn s6_9_2_initial_window_bounds_data(e) {
        let (_site, srv) = h2_server!(e);
        let (mut c, id) = open_stalled_stream(srv.addr(), 1000);
        // Another stream's answer shows the server is past sending what it may.
        let other = c.send_request("GET", "/app.js", &[]);
        let r = c.read_response(other);
        assert_eq!(r.body, APP_JS.as_bytes());
        assert!(c.received(id) <= 1000, "{} bytes sent into a window of 1000", c.received(id));
        // Open it: the rest arrives byte-exact.
        c.opts.auto_window = true;
        c.send_frame(WINDOW_UPDATE, 0, id, &(BIG_SIZE as u32).to_be_bytes());
        let r = c.read_response(id);
        assert_bytes_eq(&r.body, &big_bytes(), "big.bin after WINDOW_UPDATE");
    }

    /// §6.7: a PING is answered with a PING ACK with the same payload; a
    /// PING on a stream is a connection error; an unasked-for ACK is ignored.
    fn s6_7_ping_ack(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        c.send_frame(PING, ACK, 0, b"unasked!");
        c.ping_roundtrip("PING");
        c.send_frame(PING, 0, 1, b"12345678");
        c.expect_goaway(PROTOCOL_ERROR, "PING on stream 1");
    }

    /// §6.8: a GOAWAY for a connection error names the last stream the
    /// server processed.
    fn s6_8_goaway_last_stream_id(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        for _ in 0..3 {
            assert_eq!(c.get("/", &[]).status, 200);
        }
        c.send_frame(DATA, 0, 0, b"x");
        let g = c.expect_goaway(PROTOCOL_ERROR, "DATA on 0");
        assert_eq!(g.last_stream, 5, "{g:?}");
    }

    /// §6.9: a WINDOW_UPDATE of 0 is a PROTOCOL_ERROR: connection error on
    /// stream 0, stream error on a stream.
    fn s6_9_window_update_zero_increment(e) {
        let (_site, srv) = h2_server!(e);
        let (mut c, id) = open_stalled_stream(srv.addr(), 100);
        c.send_frame(WINDOW_UPDATE, 0, id, &0u32.to_be_bytes());
        if !expect_stream_error(&mut c, id, PROTOCOL_ERROR, "WINDOW_UPDATE 0 on a stream") {
            return;
        }
        c.opts.auto_window = true;
        assert_eq!(c.get("/app.js", &[]).body, APP_JS.as_bytes());
        c.send_frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes());
        c.expect_goaway(PROTOCOL_ERROR, "WINDOW_UPDATE 0 on the connection");
    }

    /// §6.9.1: a window past 2^31-1 is a FLOW_CONTROL_ERROR: a stream
    /// error on a stream, a connection error on the connection.
    fn s6_9_window_update_overflow_is_flow_control_error(e) {
        let (_site, srv) = h2_server!(e);
        let (mut c, id) = open_stalled_stream(srv.addr(), 100);
        // Once the 100 bytes are in, the window is 0: 2^31-1 and 1 more in
        // one write go past the limit before the file can finish.
        let deadline = Instant::now() + IO_TIMEOUT;
        while c.received(id) < 100 {
            c.pump(deadline).expect("the first 100 bytes");
        }
        let mut two = frame_bytes(WINDOW_UPDATE, 0, id, &0x7fff_ffffu32.to_be_bytes());
        two.extend(frame_bytes(WINDOW_UPDATE, 0, id, &1u32.to_be_bytes()));
        c.send_raw(&two);
        if !expect_stream_error(&mut c, id, FLOW_CONTROL_ERROR, "stream window overflow") {
            return;
        }
        c.opts.auto_window = true;
        assert_eq!(c.get("/app.js", &[]).body, APP_JS.as_bytes());
        c.send_frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes());
        c.send_frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes());
        c.expect_goaway(FLOW_CONTROL_ERROR, "connection window overflow");
    }

    /// §6.9.1: a stream whose window is shut does not hold up the others.
    fn s6_9_1_closed_window_blocks_only_its_stream(e) {
        let (_site, srv) = h2_server!(e);
        let (mut c, _id) = open_stalled_stream(srv.addr(), 0);
        for path in ["/", "/style.css", "/app.js"] {
            let id = c.send_request("GET", path, &[]);
            // Their windows are 0 too: open each one's.
            c.send_frame(WINDOW_UPDATE, 0, id, &100_000u32.to_be_bytes());
            let r = c.read_response(id);
            assert_eq!(r.status, 200, "{path}: {}", r.describe());
            assert!(!r.body.is_empty(), "{path}");
        }
    }

    /// §6.10: a field block in HEADERS and CONTINUATION frames, cut inside
    /// a field, is one block.
    fn s6_10_continuation_carries_the_block(e) {
        let (_site, srv) = h2_server!(e);
        for split in [Split::Whole, Split::Bytewise] {
            let mut c = H2::connect_with(srv.addr(), Opts { split, ..Opts::default() });
            c.wait_ready();
            let block = encode_fields(&c.request_fields("GET", "/style.css", &[("user-agent", "continuation/1")]));
            let (a, rest) = block.split_at(7);
            let (b, d) = rest.split_at(rest.len() / 2);
            c.send_frame(HEADERS, END_STREAM, 1, a);
            c.send_frame(CONTINUATION, 0, 1, b);
            c.send_frame(CONTINUATION, 0, 1, &[]);
            c.send_frame(CONTINUATION, END_HEADERS, 1, d);
            let r = c.read_response(1);
            assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{split:?}: {}", r.describe());
        }
    }

    /// `h2_max_continuations` bounds the CONTINUATION frames of one field
    /// block: at the bound the request is served; one more is a flood
    /// (GOAWAY ENHANCE_YOUR_CALM), as is any with the key at 0.
    fn continuations_past_the_configured_bound_end_the_connection(e) {
        for (max, sent, served) in [(2, 2, true), (2, 3, false), (0, 0, true), (0, 1, false)] {
            let (_site, srv) = h2_server!(e, &format!("h2_max_continuations = {max}\n"));
            let mut c = H2::handshake(srv.addr());
            let block = encode_fields(&c.request_fields("GET", "/style.css", &[]));
            let (first, rest) = block.split_at(4);
            let pieces: Vec<&[u8]> = if sent == 0 { vec![] } else { rest.chunks(rest.len().div_ceil(sent)).collect() };
            assert_eq!(pieces.len(), sent, "the block splits into {sent}");
            let head = if sent == 0 { block.as_slice() } else { first };
            c.send_frame(HEADERS, END_STREAM | if sent == 0 { END_HEADERS } else { 0 }, 1, head);
            for (i, p) in pieces.iter().enumerate() {
                c.send_frame(CONTINUATION, if i + 1 == sent { END_HEADERS } else { 0 }, 1, p);
            }
            let what = format!("{sent} CONTINUATION frames with h2_max_continuations = {max}");
            if served {
                let r = c.read_response(1);
                assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{what}: {}", r.describe());
            } else {
                c.expect_goaway(ENHANCE_YOUR_CALM, &what);
            }
        }
    }

    /// §6.10: between HEADERS without END_HEADERS and its last
    /// CONTINUATION no other frame may come; a CONTINUATION with no
    /// HEADERS before it, or on another stream, is PROTOCOL_ERROR.
    fn s6_10_continuation_interrupted_is_protocol_error(e) {
        let (_site, srv) = h2_server!(e);
        let block = encode_fields(&base("/").iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
        let mut c = H2::handshake(srv.addr());
        c.send_frame(HEADERS, END_STREAM, 1, &block[..5]);
        c.send_frame(PING, 0, 0, b"12345678");
        c.expect_goaway(PROTOCOL_ERROR, "PING inside a field block");
        let mut c = H2::handshake(srv.addr());
        c.send_frame(HEADERS, END_STREAM, 1, &block[..5]);
        c.send_frame(CONTINUATION, END_HEADERS, 3, &block[5..]);
        c.expect_goaway(PROTOCOL_ERROR, "CONTINUATION on another stream");
        let mut c = H2::handshake(srv.addr());
        c.send_frame(CONTINUATION, END_HEADERS, 1, &block);
        c.expect_goaway(PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    }

    /// §6.6, §8.4: a client may not push: PUSH_PROMISE is PROTOCOL_ERROR.
    fn s8_4_push_promise_from_client_is_protocol_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        assert_eq!(c.peer_settings.get(&ENABLE_PUSH).copied().unwrap_or(0), 0, "a server announces no push");
        let mut p = 2u32.to_be_bytes().to_vec();
        p.extend(encode_fields(&c.request_fields("GET", "/", &[])));
        c.send_frame(PUSH_PROMISE, END_HEADERS, 1, &p);
        c.expect_goaway(PROTOCOL_ERROR, "PUSH_PROMISE from a client");
    }

    /// §8.1: a body on a GET is read and discarded; the answer is the page.
    fn s8_1_request_body_on_get_read_and_discarded(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let f = c.request_fields("GET", "/style.css", &[]);
        c.send_headers(1, &f, false);
        c.send_frame(DATA, 0, 1, &[b'x'; 3000]);
        c.send_frame(DATA, END_STREAM, 1, b"tail");
        let r = c.read_response(1);
        assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{}", r.describe());
        // Trailers end a body too.
        c.send_headers(3, &c.request_fields("GET", "/app.js", &[]), false);
        c.send_frame(DATA, 0, 3, b"abc");
        c.send_headers(3, &[("x-trailer", "1")], true);
        let r = c.read_response(3);
        assert_eq!((r.status, r.body.as_slice()), (200, APP_JS.as_bytes()), "{}", r.describe());
        c.ping_roundtrip("after bodies");
    }

    /// §8.1.1: a request whose DATA do not add up to its content-length
    /// is malformed: RST_STREAM PROTOCOL_ERROR, whether the client ends
    /// the stream early (END_STREAM on the HEADERS, on a short DATA, or
    /// trailers after too few bytes) or sends more than it declared (in
    /// one frame, or across several, split byte by byte). Padding does not
    /// count; a body that adds up is answered as before, and the
    /// connection keeps serving.
    fn s8_1_1_content_length_must_match_data(e) {
        let (_site, srv) = h2_server!(e);
        for split in [Split::Whole, Split::Bytewise] {
            let mut c = H2::connect_with(srv.addr(), Opts { split, ..Opts::default() });
            c.wait_ready();
            let get = |c: &H2, cl: &str| c.request_fields("GET", "/style.css", &[("content-length", cl)]);
            // END_STREAM on the HEADERS of a request that declares 5 bytes.
            let f = get(&c, "5");
            c.send_headers(1, &f, true);
            assert_eq!(wait_reset(&mut c, 1, "no DATA, 5 declared"), PROTOCOL_ERROR);
            assert!(
                !c.seen.iter().any(|f| f.ty == HEADERS && f.stream == 1),
                "{split:?}: a malformed request was answered: {}",
                c.seen_summary()
            );
            // Too few bytes by END_STREAM.
            c.send_headers(3, &get(&c, "10"), false);
            c.send_frame(DATA, 0, 3, b"abc");
            c.send_frame(DATA, END_STREAM, 3, b"de");
            assert_eq!(wait_reset(&mut c, 3, "5 of 10"), PROTOCOL_ERROR, "{split:?}");
            // Too few bytes by the trailers.
            c.send_headers(5, &get(&c, "4"), false);
            c.send_frame(DATA, 0, 5, b"abc");
            c.send_headers(5, &[("x-trailer", "1")], true);
            assert_eq!(wait_reset(&mut c, 5, "3 of 4, then trailers"), PROTOCOL_ERROR, "{split:?}");
            // More than declared, in one frame.
            c.send_headers(7, &get(&c, "3"), false);
            c.send_frame(DATA, END_STREAM, 7, b"abcdef");
            assert_eq!(wait_reset(&mut c, 7, "6 of 3"), PROTOCOL_ERROR, "{split:?}");
            // More than declared across frames, before any END_STREAM.
            c.send_headers(9, &get(&c, "3"), false);
            c.send_frame(DATA, 0, 9, b"ab");
            c.send_frame(DATA, 0, 9, b"cd");
            assert_eq!(wait_reset(&mut c, 9, "4 of 3, open"), PROTOCOL_ERROR, "{split:?}");
            // Bodies that add up, padding aside (with trailers too): no reset.
            c.send_headers(11, &get(&c, "3"), false);
            c.send_frame(DATA, PADDED, 11, b"\x04ab\0\0\0\0");
            c.send_frame(DATA, END_STREAM, 11, b"c");
            let r = c.read_response(11);
            assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "{split:?}: {}", r.describe());
            c.send_headers(13, &get(&c, "0"), true);
            let r = c.read_response(13);
            assert_eq!(r.status, 200, "{split:?}: content-length 0: {}", r.describe());
            c.send_headers(15, &get(&c, "3"), false);
            c.send_frame(DATA, 0, 15, b"abc");
            c.send_headers(15, &[("x-trailer", "1")], true);
            let r = c.read_response(15);
            assert_eq!(r.status, 200, "{split:?}: 3 of 3, then trailers: {}", r.describe());
            c.ping_roundtrip(&format!("{split:?}: after the bodies"));
            for id in [11, 13, 15] {
                assert!(
                    !c.seen.iter().any(|f| f.ty == RST_STREAM && f.stream == id),
                    "{split:?}: stream {id} reset: {}",
                    c.seen_summary()
                );
            }
            c.next_id = 17;
            let r = c.get("/app.js", &[]);
            assert_eq!((r.status, r.body.as_slice()), (200, APP_JS.as_bytes()), "{split:?}");
        }
    }

    /// §8.1: HEAD gets the GET's fields and no DATA.
    fn s8_1_head_has_no_body(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let r = c.request("HEAD", "/big.bin", &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(r.body.is_empty(), "{}", r.describe());
        if let Some(l) = r.field("content-length") {
            assert_eq!(l, BIG_SIZE.to_string());
        }
    }

    /// §8.2: field names are lower case; an upper-case one is malformed.
    fn s8_2_uppercase_field_name_is_malformed(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let mut f: Vec<(&str, String)> = base("/");
        f.push(("User-Agent", "x".into()));
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let id = send_block(&mut c, &f);
        expect_malformed(&mut c, id, "User-Agent");
        let r = c.get("/", &[]);
        check_h2_fields(&r, "GET /");
    }

    /// §8.2.1: CR, LF or NUL in a field value is malformed.
    fn s8_2_1_field_value_with_cr_lf_nul_is_malformed(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        for v in ["a\r\nx-injected: 1", "a\nb", "a\0b"] {
            let mut f: Vec<(&str, &str)> = vec![(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")];
            f.push(("x-v", v));
            let id = send_block(&mut c, &f);
            expect_malformed(&mut c, id, &format!("value {v:?}"));
        }
    }

    /// §8.2.2: connection-specific fields make a request malformed
    /// (`te` other than "trailers" too); `te: trailers` is fine.
    fn s8_2_2_connection_field_is_malformed(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        for (k, v) in [
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
        ] {
            let mut f: Vec<(&str, &str)> = vec![(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")];
            f.push((k, v));
            let id = send_block(&mut c, &f);
            expect_malformed(&mut c, id, &format!("{k}: {v}"));
        }
        let r = c.get("/", &[("te", "trailers")]);
        assert_eq!(r.status, 200, "te: trailers: {}", r.describe());
    }

    /// §8.3: pseudo-fields missing, repeated, unknown, response-only, or
    /// after a regular field: malformed.
    fn s8_3_missing_pseudo_header_is_malformed(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("no :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "t")]),
            ("no :method", vec![(":scheme", "http"), (":authority", "t"), (":path", "/")]),
            ("no :scheme", vec![(":method", "GET"), (":authority", "t"), (":path", "/")]),
            ("empty :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "")]),
            ("two :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/"), (":path", "/app.js")]),
            ("two :method", vec![(":method", "GET"), (":method", "HEAD"), (":scheme", "http"), (":authority", "t"), (":path", "/")]),
            ("unknown :foo", vec![(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/"), (":foo", "x")]),
            (":status in a request", vec![(":status", "200"), (":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")]),
            ("pseudo after regular", vec![(":method", "GET"), (":scheme", "http"), ("accept", "*/*"), (":authority", "t"), (":path", "/")]),
        ];
        for (name, f) in cases {
            let id = send_block(&mut c, &f);
            expect_malformed(&mut c, id, name);
        }
    }

    /// §8.1: a trailer section with a pseudo-field is malformed.
    fn s8_1_pseudo_field_in_trailers_is_malformed(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        // Pseudo-fields in trailers, in the same write as the head. A GET
        // may be answered before its trailers arrive; then the stream
        // error comes after the answer, as RST_STREAM.
        let id = c.next_id;
        c.next_id += 2;
        let mut both = frame_bytes(HEADERS, END_HEADERS, id, &encode_fields(&c.request_fields("GET", "/", &[])));
        both.extend(frame_bytes(HEADERS, END_HEADERS | END_STREAM, id, &encode_fields(&[(":path", "/app.js")])));
        c.send_raw(&both);
        let r = c.read_response(id);
        if r.reset.is_none() && r.status == 200 {
            c.ping_roundtrip("after trailers with :path");
            let rst = c.seen.iter().find(|f| f.ty == RST_STREAM && f.stream == id).map(|f| f.error_code());
            assert_eq!(rst, Some(PROTOCOL_ERROR), "pseudo-field in trailers: answered 200, then no RST_STREAM PROTOCOL_ERROR; {}", c.seen_summary());
        } else {
            assert!(r.reset == Some(PROTOCOL_ERROR) || r.status == 400, "pseudo-field in trailers: {}", r.describe());
        }
    }

    /// §8.3.1: without :authority, `host` names the target; responses
    /// carry only :status as a pseudo-field and no connection fields.
    fn s8_3_1_host_instead_of_authority(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let id = send_block(&mut c, &[(":method", "GET"), (":scheme", "http"), (":path", "/app.js"), ("host", "t")]);
        let r = c.read_response(id);
        assert_eq!((r.status, r.body.as_slice()), (200, APP_JS.as_bytes()), "{}", r.describe());
        check_h2_fields(&r, "GET /app.js with host");
    }

    /// §5.1 ("closed"): frames the client sent before it saw the
    /// server's RST_STREAM are processed minimally (a field block still
    /// decoded: HPACK state is the connection's) and dropped: DATA and
    /// trailers on a stream the server reset (a body past its
    /// content-length; a stream refused past h2_max_concurrent_streams)
    /// draw no second RST_STREAM and no GOAWAY, and the connection
    /// serves on, its dynamic table in step.
    fn s5_1_frames_after_our_reset_are_discarded(e) {
        let (_site, srv) = h2_server!(e, "h2_max_concurrent_streams = 1");
        // The trailers index "x-trailer: 1" (dynamic 62) as they go.
        let mut trailers = vec![0x40];
        hpack_str(&mut trailers, b"x-trailer");
        hpack_str(&mut trailers, b"1");
        let burst = |c: &H2, id: u32, f: &[(String, String)]| {
            let mut b = frame_bytes(HEADERS, END_HEADERS, id, &encode_fields(f));
            b.extend(frame_bytes(DATA, 0, id, b"abc"));
            b.extend(frame_bytes(DATA, 0, id, b"late"));
            b.extend(frame_bytes(HEADERS, END_HEADERS | END_STREAM, id, &trailers));
            let _ = c;
            b
        };
        let resets = |c: &H2, id: u32| -> Vec<u32> {
            c.seen.iter().filter(|f| f.ty == RST_STREAM && f.stream == id).map(|f| f.error_code()).collect()
        };
        // A body past its content-length: one write, read whole by the
        // server before its RST_STREAM can reach us.
        let mut c = H2::handshake(srv.addr());
        let id = c.next_id;
        c.next_id += 2;
        let f = c.request_fields("GET", "/style.css", &[("content-length", "2")]);
        let b = burst(&c, id, &f);
        c.send_raw(&b);
        c.ping_roundtrip("after DATA and trailers on a stream reset as malformed");
        assert_eq!(resets(&c, id), vec![PROTOCOL_ERROR], "{}", c.seen_summary());
        assert!(c.goaway.is_none(), "{:?}", c.goaway);
        // The next request refers to the trailers' table entry.
        app_js_by_the_trailers_entry(&mut c, false);
        // Refused: the one stream allowed is open (its window shut).
        let (mut c, open) = open_stalled_stream(srv.addr(), 0);
        let id = c.next_id;
        c.next_id += 2;
        let f = c.request_fields("GET", "/style.css", &[("content-length", "7")]);
        let b = burst(&c, id, &f);
        c.send_raw(&b);
        c.ping_roundtrip("after DATA and trailers on a refused stream");
        assert_eq!(resets(&c, id), vec![REFUSED_STREAM], "{}", c.seen_summary());
        assert!(c.goaway.is_none(), "{:?}", c.goaway);
        c.send_frame(RST_STREAM, 0, open, &CANCEL.to_be_bytes());
        app_js_by_the_trailers_entry(&mut c, true);
    }

    /// §8.1: a HEADERS frame without END_STREAM after the one that opened
    /// the request (trailers must end the stream) makes the request
    /// malformed: a stream error, RST_STREAM PROTOCOL_ERROR, its block
    /// still decoded; the connection serves on.
    fn s8_1_second_headers_without_end_stream_is_stream_error(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        let id = c.next_id;
        c.next_id += 2;
        let f = c.request_fields("GET", "/style.css", &[]);
        c.send_headers(id, &f, false);
        c.send_frame(DATA, 0, id, b"ab");
        let mut second = vec![0x40];
        hpack_str(&mut second, b"x-trailer");
        hpack_str(&mut second, b"1");
        c.send_frame(HEADERS, END_HEADERS, id, &second);
        assert_eq!(wait_reset(&mut c, id, "HEADERS without END_STREAM"), PROTOCOL_ERROR);
        c.ping_roundtrip("after the stream error");
        assert!(c.goaway.is_none(), "{:?}", c.goaway);
        app_js_by_the_trailers_entry(&mut c, false);
    }

    /// §8.1, §8.2, §8.2.1, §8.2.2: trailers follow the request's field
    /// rules: an upper-case name, a connection-specific field, `te` other
    /// than "trailers", CR, LF or NUL in a value make the request
    /// malformed: RST_STREAM PROTOCOL_ERROR (after the answer, when the
    /// answer went first); the connection serves on.
    fn s8_2_malformed_trailers_are_stream_errors(e) {
        let (_site, srv) = h2_server!(e);
        let mut c = H2::handshake(srv.addr());
        for (k, v) in [
            ("X-Trailer", "1"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("x-trailer", "a\r\nb"),
            ("x-trailer", "a\0b"),
            ("x trailer", "1"),
        ] {
            let id = c.next_id;
            c.next_id += 2;
            let mut both = frame_bytes(HEADERS, END_HEADERS, id, &encode_fields(&c.request_fields("GET", "/", &[])));
            both.extend(frame_bytes(DATA, 0, id, b"ab"));
            both.extend(frame_bytes(HEADERS, END_HEADERS | END_STREAM, id, &encode_fields(&[(k, v)])));
            c.send_raw(&both);
            assert_eq!(wait_reset(&mut c, id, &format!("trailer {k:?}: {v:?}")), PROTOCOL_ERROR, "trailer {k:?}: {v:?}");
        }
        c.ping_roundtrip("after malformed trailers");
        assert!(c.goaway.is_none(), "{:?}", c.goaway);
        // Well-formed trailers (te: trailers too) end a body quietly.
        let id = c.next_id;
        c.next_id += 2;
        c.send_headers(id, &c.request_fields("GET", "/app.js", &[]), false);
        c.send_frame(DATA, 0, id, b"ab");
        c.send_headers(id, &[("x-trailer", "1"), ("te", "trailers")], true);
        let r = c.read_response(id);
        assert_eq!((r.status, r.body.as_slice()), (200, APP_JS.as_bytes()), "{}", r.describe());
        c.ping_roundtrip("after good trailers");
        assert!(!c.seen.iter().any(|f| f.ty == RST_STREAM && f.stream == id), "{}", c.seen_summary());
    }

    /// §4.3, RFC 7541 §4.2, §6.3: dynamic table size updates. Shrinking
    /// the table to 0 and back at a block's start empties it (a reference
    /// to an entry it held is COMPRESSION_ERROR); a smaller size evicts
    /// the oldest entries only; an update past SETTINGS_HEADER_TABLE_SIZE
    /// (4096) or after a field is COMPRESSION_ERROR.
    fn s4_3_dynamic_table_size_updates(e) {
        let (_site, srv) = h2_server!(e);
        // :authority t (incremental indexing), then :path /style.css.
        let mut first = vec![0x82, 0x86, 0x41];
        hpack_str(&mut first, b"t");
        first.push(0x44);
        hpack_str(&mut first, b"/style.css");
        let ok = |c: &mut H2, id: u32| {
            let r = c.read_response(id);
            assert_eq!((r.status, r.body.as_slice()), (200, STYLE_CSS.as_bytes()), "stream {id}: {}", r.describe());
        };
        // 0 then 4096 (0x3f 0xe1 0x1f): the entries are gone.
        let mut c = H2::handshake(srv.addr());
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, &first);
        ok(&mut c, 1);
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x20, 0x3f, 0xe1, 0x1f, 0x82, 0x86, 0xbf, 0xbe]);
        c.expect_goaway(COMPRESSION_ERROR, "a reference to an entry a size update emptied");
        // Down to 60 bytes: :path /style.css (47) stays as 62, :authority
        // (42, older) goes.
        let mut c = H2::handshake(srv.addr());
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, &first);
        ok(&mut c, 1);
        let mut b = vec![0x3f, 0x1d, 0x82, 0x86];
        b.extend(encode_fields(&[(":authority", "t")]));
        b.push(0xbe);
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 3, &b);
        ok(&mut c, 3);
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x82, 0x86, 0xbf, 0xbe]);
        c.expect_goaway(COMPRESSION_ERROR, "entry 63 evicted by a size update to 60");
        // Past 4096, and after a field.
        for (what, block) in [
            ("size update 4097", [&[0x3f, 0xe2, 0x1f][..], &first].concat()),
            ("size update after a field", [&[0x82, 0x20][..], &first[1..]].concat()),
        ] {
            let mut c = H2::handshake(srv.addr());
            c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
            c.expect_goaway(COMPRESSION_ERROR, what);
        }
    }
}
