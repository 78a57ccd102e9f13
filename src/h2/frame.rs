//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, and the frames the
//! server writes. Parsing a frame's payload is done where it is acted on
//! (`H2Conn`); this file only knows the layout.

use bytes::{BufMut, BytesMut};

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame header length.
pub const HEADER_LEN: usize = 9;
/// The largest frame payload we accept (our SETTINGS_MAX_FRAME_SIZE, the
/// protocol's default: we never announce more).
pub const MAX_FRAME: usize = 16_384;
/// The flow-control window both sides start with (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;
/// The largest window (2^31 - 1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    Compression = 0x9,
    Connect = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

/// A frame header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// The header at the start of `b` (at least `HEADER_LEN` bytes).
    pub fn parse(b: &[u8]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// A frame header.
pub fn head_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(len < 1 << 24);
    let s = (stream & 0x7fff_ffff).to_be_bytes();
    [
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        s[0],
        s[1],
        s[2],
        s[3],
    ]
}

/// Append a frame header.
pub fn head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.reserve(HEADER_LEN + len);
    out.put_slice(&head_bytes(len, kind, flags, stream));
}

/// Our SETTINGS (the server preface).
pub fn settings(out: &mut BytesMut, values: &[(u16, u32)]) {
    head(out, values.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, v) in values {
        out.put_u16(id);
        out.put_u32(v);
    }
}

pub fn settings_ack(out: &mut BytesMut) {
    head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn ping(out: &mut BytesMut, ack: bool, data: [u8; 8]) {
    head(out, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    out.put_slice(&data);
}

pub fn window_update(out: &mut BytesMut, stream: u32, inc: u32) {
    head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.put_u32(inc & 0x7fff_ffff);
}

pub fn rst_stream(out: &mut BytesMut, stream: u32, code: Code) {
    head(out, 4, kind::RST_STREAM, 0, stream);
    out.put_u32(code as u32);
}

pub fn goaway(out: &mut BytesMut, last: u32, code: Code) {
    head(out, 8, kind::GOAWAY, 0, 0);
    out.put_u32(last & 0x7fff_ffff);
    out.put_u32(code as u32);
}

/// A header block as HEADERS and as many CONTINUATION frames as `max`
/// (the peer's SETTINGS_MAX_FRAME_SIZE) needs.
pub fn headers(out: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool, max: usize) {
    let mut chunks = block.chunks(max.max(1)).peekable();
    let mut first = true;
    if block.is_empty() {
        let f = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        return head(out, 0, kind::HEADERS, f, stream);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        let mut f = if last { flag::END_HEADERS } else { 0 };
        let k = if first {
            if end_stream {
                f |= flag::END_STREAM;
            }
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        head(out, c.len(), k, f, stream);
        out.put_slice(c);
        first = false;
    }
}

/// The payload of a frame with the PADDED flag, without its padding:
/// None if the padding is longer than the payload (PROTOCOL_ERROR).
pub fn unpad<'p>(h: &Head, p: &'p [u8]) -> Option<&'p [u8]> {
    if !h.has(flag::PADDED) {
        return Some(p);
    }
    let (&pad, rest) = p.split_first()?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
}
