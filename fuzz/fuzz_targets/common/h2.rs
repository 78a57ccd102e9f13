//! HTTP/2 for the `conn` target: a client byte stream built from a small
//! frame language (so that most inputs are frames the server takes apart,
//! not a failed preface), and the checks of what the server wrote.
//!
//! The stream is the client preface and an empty SETTINGS, then one frame
//! per item of the input, each item's first byte picking its kind:
//! - a request (HEADERS, HPACK with literals and static-table indexes, on
//!   a client stream id, with or without END_STREAM, possibly cut into
//!   HEADERS and CONTINUATION frames, with fields such as Range,
//!   If-None-Match, Accept-Encoding, a trailer-like field, a bad one);
//! - DATA, WINDOW_UPDATE, RST_STREAM, SETTINGS (any identifier and value),
//!   PING, GOAWAY, PRIORITY, PRIORITY_UPDATE on the ids seen;
//! - a raw frame: any type, flags, stream id and payload.
//!
//! What the server wrote must be HTTP/2 frames that a client can take:
//! its SETTINGS first; no frame longer than the largest
//! SETTINGS_MAX_FRAME_SIZE the client could have sent; no PUSH_PROMISE;
//! DATA, HEADERS and RST_STREAM only on odd (client) stream ids, SETTINGS,
//! PING and GOAWAY only on stream 0; a header block is HEADERS and its
//! CONTINUATIONs with no other frame between them, decodes with an
//! independent HPACK decoder (loona-hpack, its table carried from block to
//! block), and is a response: `:status` first (three digits), no other
//! pseudo-field, lower-case names, no connection-specific field. DATA only
//! on a stream that had its HEADERS, nothing after a stream's END_STREAM.
//! The last frame may be cut short (the connection closed under it).

use arbitrary::Unstructured;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const PRIORITY_UPDATE: u8 = 0x10;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// SETTINGS_MAX_FRAME_SIZE.
const MAX_FRAME_SIZE: u16 = 5;

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, id: u32, payload: &[u8]) {
    let n = payload.len() as u32;
    out.extend_from_slice(&n.to_be_bytes()[1..]);
    out.extend_from_slice(&[ty, flags]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK literal without indexing, new name (RFC 7541 6.2.2), or a
/// literal with incremental indexing when `index`.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], index: bool) {
    out.push(if index { 0x40 } else { 0x00 });
    for s in [name, value] {
        int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

fn int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

const PATHS: &[&str] = &[
    "/",
    "/a.txt",
    "/big.bin",
    "/empty.txt",
    "/sub/",
    "/sub/x%20y.css",
    "/noindex/",
    "/nope",
    "/.hidden",
    "/leak.txt",
    "/big.bin?parts",
    "/sub",
    "*",
    "",
    "/../secret/secret.txt",
];

const FIELDS: &[(&str, &str)] = &[
    ("range", "bytes=0-9"),
    ("range", "bytes=-3,5-,100-200"),
    ("if-none-match", "*"),
    ("if-modified-since", "Sun, 22 Nov 2026 19:21:37 GMT"),
    ("accept-encoding", "gzip, br"),
    ("if-range", "Sun, 22 Nov 2026 19:21:37 GMT"),
    ("priority", "u=0, i"),
    ("content-length", "5"),
    ("te", "trailers"),
    ("te", "gzip"),
    ("connection", "close"),
    ("cookie", "a=1"),
    ("host", "t"),
    ("Upper", "x"),
    ("x", "a\r\nb"),
    (":path", "/a.txt"),
];

/// A request's header block.
fn request_block(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mut b = Vec::new();
    let method = u.arbitrary::<u8>()?;
    match method % 6 {
        0..=2 => b.push(0x82), // :method GET (static index 2)
        3 => literal(&mut b, b":method", b"HEAD", false),
        4 => literal(&mut b, b":method", b"POST", false),
        _ => {}
    }
    match u.arbitrary::<u8>()? % 4 {
        0 => {}
        1 => literal(&mut b, b":scheme", b"https", true),
        _ => b.push(0x86), // :scheme http
    }
    let path = PATHS[u.arbitrary::<u8>()? as usize % PATHS.len()];
    if path != "" {
        literal(&mut b, b":path", path.as_bytes(), u.arbitrary()?);
    }
    if u.arbitrary::<u8>()? % 4 != 0 {
        literal(&mut b, b":authority", b"t", u.arbitrary()?);
    }
    for _ in 0..u.arbitrary::<u8>()? % 4 {
        let (n, v) = FIELDS[u.arbitrary::<u8>()? as usize % FIELDS.len()];
        literal(&mut b, n.as_bytes(), v.as_bytes(), u.arbitrary()?);
    }
    if u.arbitrary::<u8>()? % 8 == 0 {
        // A dynamic-table size update or an index into it.
        let v: u8 = u.arbitrary()?;
        if v % 2 == 0 {
            b.insert(0, 0x20 | (v >> 3));
        } else {
            b.push(0x80 | (62 + v % 4));
        }
    }
    Ok(b)
}

fn stream_id(u: &mut Unstructured<'_>) -> arbitrary::Result<u32> {
    let v: u8 = u.arbitrary()?;
    Ok(match v {
        0..=239 => (v as u32 % 24) * 2 + 1,
        240..=247 => (v as u32 - 240) * 2,
        _ => 0x7fff_fff0 | (v as u32 & 0xf),
    })
}

/// The client's bytes for `raw`, and the largest SETTINGS_MAX_FRAME_SIZE
/// they carry (16,384 if none).
pub fn client_stream(raw: &[u8]) -> (Vec<u8>, u32) {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let mut max_frame = 16_384u32;
    let mut u = Unstructured::new(raw);
    while !u.is_empty() {
        if item(&mut u, &mut out, &mut max_frame).is_err() {
            break;
        }
    }
    (out, max_frame)
}

fn item(u: &mut Unstructured<'_>, out: &mut Vec<u8>, max_frame: &mut u32) -> arbitrary::Result<()> {
    let kind: u8 = u.arbitrary()?;
    let id = stream_id(u)?;
    match kind % 12 {
        0..=2 => {
            let block = request_block(u)?;
            let end = if u.arbitrary::<u8>()? % 4 == 0 {
                0
            } else {
                END_STREAM
            };
            // Cut into HEADERS and CONTINUATIONs at up to three places.
            let cuts = u.arbitrary::<u8>()? % 4;
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut rest = &block[..];
            for _ in 0..cuts {
                let at = u.int_in_range(0..=rest.len())?;
                parts.push(&rest[..at]);
                rest = &rest[at..];
            }
            parts.push(rest);
            let last = parts.len() - 1;
            for (k, p) in parts.iter().enumerate() {
                let eh = if k == last { END_HEADERS } else { 0 };
                let (ty, flags) = if k == 0 {
                    (HEADERS, end | eh)
                } else {
                    (CONTINUATION, eh)
                };
                frame(out, ty, flags, id, p);
            }
        }
        3 => {
            let len = u.arbitrary::<u8>()? as usize * 4;
            let flags = u.arbitrary::<u8>()? & (END_STREAM | PADDED);
            let mut p = vec![b'x'; len];
            if flags & PADDED != 0 && !p.is_empty() {
                p[0] = (len as u8).wrapping_sub(1) / 2;
            }
            frame(out, DATA, flags, id, &p);
        }
        4 => {
            let inc: u32 = u.arbitrary()?;
            let inc = if inc % 3 == 0 {
                inc & 0x7fff_ffff
            } else {
                inc % 70_000
            };
            frame(out, WINDOW_UPDATE, 0, id % 4 * (id & 1), &inc.to_be_bytes());
        }
        5 => {
            let code: u8 = u.arbitrary()?;
            frame(out, RST_STREAM, 0, id, &u32::from(code % 14).to_be_bytes());
        }
        6 => {
            let mut p = Vec::new();
            for _ in 0..u.arbitrary::<u8>()? % 4 {
                let ident = u16::from(u.arbitrary::<u8>()? % 10);
                let value: u32 = match u.arbitrary::<u8>()? % 4 {
                    0 => u.arbitrary()?,
                    1 => 16_384 + u32::from(u.arbitrary::<u16>()?),
                    2 => 0,
                    _ => u32::from(u.arbitrary::<u16>()?),
                };
                if ident == MAX_FRAME_SIZE && (16_384..=16_777_215).contains(&value) {
                    *max_frame = (*max_frame).max(value);
                }
                p.extend_from_slice(&ident.to_be_bytes());
                p.extend_from_slice(&value.to_be_bytes());
            }
            let ack = u.arbitrary::<u8>()? % 8 == 0;
            if ack {
                p.clear();
            }
            frame(
                out,
                SETTINGS,
                u8::from(ack),
                if id % 16 == 3 { id } else { 0 },
                &p,
            );
        }
        7 => {
            let ack = u.arbitrary::<u8>()? % 4 == 0;
            frame(out, PING, u8::from(ack), 0, &u.arbitrary::<[u8; 8]>()?);
        }
        8 => {
            let mut p = (id & 0x7fff_ffff).to_be_bytes().to_vec();
            p.extend_from_slice(&u32::from(u.arbitrary::<u8>()? % 14).to_be_bytes());
            frame(out, GOAWAY, 0, 0, &p);
        }
        9 => {
            let mut p = stream_id(u)?.to_be_bytes().to_vec();
            p.push(u.arbitrary()?);
            frame(out, PRIORITY, 0, id, &p);
        }
        10 => {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(
                ["u=1", "u=7, i", "i", "u=9", "garbage ("][id as usize % 5].as_bytes(),
            );
            frame(out, PRIORITY_UPDATE, 0, 0, &p);
        }
        _ => {
            let ty: u8 = u.arbitrary()?;
            let flags: u8 = u.arbitrary()?;
            let len = u.arbitrary::<u8>()? as usize;
            let p = u.bytes(len.min(u.len()))?;
            frame(out, ty, flags, id, p);
        }
    }
    Ok(())
}

/// Check what the server wrote (all of it, as the client got it).
pub fn check_output(wire: &[u8], max_frame: u32) {
    let mut dec = loona_hpack::Decoder::new();
    let mut at = 0;
    let mut first = true;
    // A header block being received: its stream, END_STREAM, its bytes.
    let mut block: Option<(u32, bool, Vec<u8>)> = None;
    // Streams that had their response HEADERS, and those that ended.
    let mut headed = std::collections::BTreeSet::new();
    let mut ended = std::collections::BTreeSet::new();
    while at + 9 <= wire.len() {
        let h = &wire[at..at + 9];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let (ty, flags) = (h[3], h[4]);
        let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        assert!(
            len <= max_frame,
            "a frame of {len} bytes (type {ty}), the client allows {max_frame}"
        );
        if at + 9 + len as usize > wire.len() {
            break; // cut short by the close
        }
        let p = &wire[at + 9..at + 9 + len as usize];
        at += 9 + len as usize;
        if first {
            assert!(
                ty == SETTINGS && flags == 0,
                "the server's first frame is type {ty}, not its SETTINGS"
            );
            first = false;
        }
        if let Some((bid, _, _)) = &block {
            assert!(
                ty == CONTINUATION && id == *bid,
                "frame type {ty} on {id} inside a header block on {bid}"
            );
        }
        match ty {
            PUSH_PROMISE => panic!("PUSH_PROMISE sent"),
            DATA | HEADERS | RST_STREAM | CONTINUATION => {
                assert!(id % 2 == 1, "frame type {ty} on stream {id}")
            }
            SETTINGS | PING | GOAWAY => assert_eq!(id, 0, "frame type {ty} on stream {id}"),
            WINDOW_UPDATE => assert_eq!(len, 4),
            _ => panic!("the server sent a frame of type {ty}"),
        }
        match ty {
            HEADERS => {
                assert!(!ended.contains(&id), "HEADERS on {id} after its END_STREAM");
                assert!(
                    flags & PADDED == 0 && flags & 0x20 == 0,
                    "HEADERS flags {flags:#x}"
                );
                block = Some((id, flags & END_STREAM != 0, p.to_vec()));
            }
            CONTINUATION => {
                let (_, _, b) = block.as_mut().expect("CONTINUATION outside a header block");
                b.extend_from_slice(p);
            }
            DATA => {
                assert!(headed.contains(&id), "DATA on {id} before its HEADERS");
                assert!(!ended.contains(&id), "DATA on {id} after its END_STREAM");
                if flags & END_STREAM != 0 {
                    ended.insert(id);
                }
            }
            RST_STREAM => {
                ended.insert(id);
            }
            _ => {}
        }
        if matches!(ty, HEADERS | CONTINUATION) && flags & END_HEADERS != 0 {
            let (bid, end, b) = block.take().unwrap();
            let fields = dec
                .decode(&b)
                .unwrap_or_else(|e| panic!("HPACK of the block on {bid}: {e:?}"));
            check_response(bid, &fields);
            headed.insert(bid);
            if end {
                ended.insert(bid);
            }
        }
    }
}

fn check_response(id: u32, fields: &[(Vec<u8>, Vec<u8>)]) {
    let status = fields.first().map(|(n, v)| (n.as_slice(), v.as_slice()));
    assert!(
        matches!(status, Some((b":status", v)) if v.len() == 3 && v.iter().all(u8::is_ascii_digit)),
        "response on {id} without :status first: {fields:?}"
    );
    for (n, v) in &fields[1..] {
        assert!(
            !n.starts_with(b":"),
            "pseudo-field {:?} after :status on {id}",
            n.escape_ascii().to_string()
        );
        assert!(
            !n.is_empty() && !n.iter().any(u8::is_ascii_uppercase),
            "field name {:?} on {id}",
            n.escape_ascii().to_string()
        );
        assert!(
            !matches!(
                &n[..],
                b"connection"
                    | b"keep-alive"
                    | b"transfer-encoding"
                    | b"upgrade"
                    | b"proxy-connection"
            ),
            "connection-specific field {:?} on {id}",
            n.escape_ascii().to_string()
        );
        assert!(
            !v.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0),
            "field value {v:?} on {id}"
        );
    }
}
