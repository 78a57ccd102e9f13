//! A small raw HTTP/2 client (RFC 9113) for the integration tests, over a
//! plain `TcpStream` (prior knowledge, h2c) or rustls (ALPN `h2`).
//!
//! * [`H2::connect`] writes the connection preface and our SETTINGS; the
//!   server's SETTINGS are ACKed as they arrive (and its PINGs answered).
//! * Frames are written whole, byte by byte, or cut at pseudo-random
//!   points ([`Split`]): the server must not care where its input is cut.
//! * Requests are HPACK-encoded as literals without indexing and without
//!   Huffman (RFC 7541 §6.2.2); responses are decoded with `loona-hpack`.
//! * [`H2::read_response`] collects one stream's HEADERS, DATA and
//!   trailers (or its RST_STREAM); frames of other streams are kept for
//!   their own reads. A GOAWAY is remembered in [`H2::goaway`].
//!
//! Every read has a deadline; nothing sleeps for a fixed time.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{IO_TIMEOUT, START_TIMEOUT, Server, listening_addrs, toml_str};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
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

// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

// SETTINGS identifiers (RFC 9113 §6.5.2).
pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// The config line that turns on HTTP/2 with prior knowledge on the
/// plaintext listeners.
pub const H2C: &str = "http2_cleartext = true";

/// How our writes are cut before they reach the socket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Split {
    /// Each frame (or raw write) in one write.
    Whole,
    /// One byte per write.
    Bytewise,
    /// Cut at pseudo-random points (1..=13 bytes apart) from this seed.
    Random(u64),
}

/// One frame as read off the wire.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> u32 {
        let p = &self.payload;
        match self.ty {
            RST_STREAM if p.len() >= 4 => u32::from_be_bytes(p[0..4].try_into().unwrap()),
            GOAWAY if p.len() >= 8 => u32::from_be_bytes(p[4..8].try_into().unwrap()),
            _ => panic!("error_code of {self:?}"),
        }
    }
}

/// A GOAWAY the server sent.
#[derive(Clone, Debug, PartialEq)]
pub struct GoAway {
    pub last_stream: u32,
    pub code: u32,
    pub debug: String,
}

/// How a read ended when no frame came.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// EOF.
    Closed,
    /// ECONNRESET, EPIPE or a TLS error.
    Reset,
    /// The deadline passed with the connection still open.
    Timeout,
}

/// One stream's response.
#[derive(Clone, Debug, Default)]
pub struct H2Response {
    pub status: u16,
    /// Response fields in order, pseudo-fields left out.
    pub fields: Vec<(String, String)>,
    /// Every field of every header block as received (pseudo-fields too).
    pub raw_fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// The RST_STREAM error code, when the stream was reset.
    pub reset: Option<u32>,
    /// True once a frame with END_STREAM arrived.
    pub complete: bool,
    /// Number of DATA frames and the largest DATA payload seen.
    pub data_frames: usize,
    pub max_data: usize,
}

impl H2Response {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn fields_all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn describe(&self) -> String {
        let mut s = format!(
            "status {} reset {:?} complete {}\n",
            self.status, self.reset, self.complete
        );
        for (k, v) in &self.fields {
            s.push_str(&format!("{k}: {v}\n"));
        }
        let n = self.body.len().min(300);
        s.push_str(&format!(
            "[{} body bytes] {:?}",
            self.body.len(),
            String::from_utf8_lossy(&self.body[..n])
        ));
        s
    }
}

#[derive(Default)]
struct StreamState {
    resp: H2Response,
    /// DATA bytes not yet given back by a WINDOW_UPDATE.
    unacked: u64,
    headers_seen: bool,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &s.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(b),
            Transport::Tls(s) => s.read(b),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(b),
            Transport::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// Connection options.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Our SETTINGS (sent right after the preface).
    pub settings: Vec<(u16, u32)>,
    /// A connection WINDOW_UPDATE sent after SETTINGS (0: none).
    pub conn_window: u32,
    /// Give DATA bytes back (WINDOW_UPDATE) once half a window is used,
    /// as nghttp2 and browsers do: the connection's, and the stream's
    /// while it is open.
    pub auto_window: bool,
    /// ACK the server's SETTINGS and answer its PINGs.
    pub auto_ack: bool,
    pub split: Split,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            settings: vec![(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 1 << 24)],
            conn_window: (1 << 30) - 65535,
            auto_window: true,
            auto_ack: true,
            split: Split::Whole,
        }
    }
}

/// A raw HTTP/2 client connection.
pub struct H2 {
    t: Transport,
    buf: Vec<u8>,
    dec: loona_hpack::Decoder<'static>,
    pub opts: Opts,
    rng: u64,
    /// The next client stream id [`H2::get`] uses.
    pub next_id: u32,
    streams: HashMap<u32, StreamState>,
    /// A header block being received: stream, bytes, END_STREAM.
    block: Option<(u32, Vec<u8>, bool)>,
    pub goaway: Option<GoAway>,
    /// DATA bytes on the connection not yet given back.
    conn_unacked: u64,
    /// The server's SETTINGS, latest value per identifier.
    pub peer_settings: HashMap<u16, u32>,
    /// How many SETTINGS frames (not ACKs) the server sent.
    pub peer_settings_frames: usize,
    /// How many of our SETTINGS the server ACKed.
    pub settings_acks: usize,
    /// Every frame read, in order (for tests that look at the sequence).
    pub seen: Vec<Frame>,
    pub scheme: &'static str,
    pub authority: String,
}

/// `[(name, value)]` from `&str` pairs.
pub fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` carries the
/// representation's pattern bits above the prefix.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
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

/// A string literal, no Huffman (RFC 7541 §5.2).
pub fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A header block of literals without indexing with a new name
/// (RFC 7541 §6.2.2): no state changes in the server's table.
pub fn encode_fields<K: AsRef<[u8]>, V: AsRef<[u8]>>(list: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in list {
        out.push(0x00);
        hpack_str(&mut out, k.as_ref());
        hpack_str(&mut out, v.as_ref());
    }
    out
}

/// The 9-octet frame header and the payload.
pub fn frame_bytes(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(
        len < 1 << 24,
        "frame payload {len} too long for the length field"
    );
    let mut v = Vec::with_capacity(9 + len);
    v.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    v.push(ty);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn settings_payload(list: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in list {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    p
}

impl H2 {
    /// Cleartext HTTP/2 with prior knowledge: preface, SETTINGS.
    pub fn connect(addr: SocketAddr) -> H2 {
        H2::connect_with(addr, Opts::default())
    }

    pub fn connect_with(addr: SocketAddr, opts: Opts) -> H2 {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let mut c = H2::over(Transport::Plain(tcp), opts, "http");
        c.start();
        c
    }

    /// TLS with ALPN `h2` (panics when the server picks another protocol).
    pub fn connect_tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> H2 {
        H2::connect_tls_with(addr, cfg, Opts::default())
    }

    pub fn connect_tls_with(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, opts: Opts) -> H2 {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let name = rustls::pki_types::ServerName::try_from(TLS_NAME.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
        }
        assert_eq!(
            s.conn.alpn_protocol(),
            Some(&b"h2"[..]),
            "the server did not pick h2 by ALPN"
        );
        let mut c = H2::over(Transport::Tls(Box::new(s)), opts, "https");
        c.start();
        c
    }

    fn over(t: Transport, opts: Opts, scheme: &'static str) -> H2 {
        t.tcp().set_nodelay(true).ok();
        t.tcp().set_write_timeout(Some(IO_TIMEOUT)).ok();
        let rng = match opts.split {
            Split::Random(seed) => seed | 1,
            _ => 0x9e37_79b9_7f4a_7c15,
        };
        H2 {
            t,
            buf: Vec::new(),
            dec: loona_hpack::Decoder::new(),
            opts,
            rng,
            next_id: 1,
            streams: HashMap::new(),
            block: None,
            goaway: None,
            conn_unacked: 0,
            peer_settings: HashMap::new(),
            peer_settings_frames: 0,
            settings_acks: 0,
            seen: Vec::new(),
            scheme,
            authority: "t".to_string(),
        }
    }

    fn start(&mut self) {
        let mut first = PREFACE.to_vec();
        first.extend(frame_bytes(
            SETTINGS,
            0,
            0,
            &settings_payload(&self.opts.settings),
        ));
        if self.opts.conn_window > 0 {
            first.extend(frame_bytes(
                WINDOW_UPDATE,
                0,
                0,
                &self.opts.conn_window.to_be_bytes(),
            ));
        }
        self.send_raw(&first);
    }

    /// Connect and wait for the server's SETTINGS (ACKed) and its ACK of ours.
    pub fn handshake(addr: SocketAddr) -> H2 {
        let mut c = H2::connect(addr);
        c.wait_ready();
        c
    }

    /// Wait for the server's SETTINGS and its ACK of ours.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while self.peer_settings_frames == 0 || self.settings_acks == 0 {
            if let Err(end) = self.pump(deadline) {
                panic!(
                    "no SETTINGS exchange: {end:?}, goaway {:?}, frames {:?}",
                    self.goaway,
                    self.seen_summary()
                );
            }
        }
    }

    /// The plain socket, for a test that goes on writing raw bytes (after
    /// [`H2::wait_ready`]); bytes already read and not processed are lost.
    pub fn into_tcp(self) -> TcpStream {
        match self.t {
            Transport::Plain(s) => s,
            Transport::Tls(_) => panic!("into_tcp on a TLS connection"),
        }
    }

    /// The TLS stream, for a test that goes on writing raw bytes through
    /// it (after [`H2::wait_ready`]); plaintext already read and not
    /// processed is lost.
    pub fn into_tls(self) -> Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        match self.t {
            Transport::Tls(s) => s,
            Transport::Plain(_) => panic!("into_tls on a plain connection"),
        }
    }

    /// The client's socket (for timeouts, linger, shutdown).
    pub fn tcp(&self) -> &TcpStream {
        self.t.tcp()
    }

    fn next_cut(&mut self) -> usize {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        1 + (x % 13) as usize
    }

    /// Write bytes, cut as `opts.split` says.
    pub fn try_send_raw(&mut self, b: &[u8]) -> io::Result<()> {
        match self.opts.split {
            Split::Whole => self.t.write_all(b)?,
            Split::Bytewise => {
                for byte in b {
                    self.t.write_all(std::slice::from_ref(byte))?;
                    self.t.flush()?;
                }
            }
            Split::Random(_) => {
                let mut at = 0;
                while at < b.len() {
                    let n = self.next_cut().min(b.len() - at);
                    self.t.write_all(&b[at..at + n])?;
                    self.t.flush()?;
                    at += n;
                }
            }
        }
        self.t.flush()
    }

    pub fn send_raw(&mut self, b: &[u8]) {
        self.try_send_raw(b)
            .unwrap_or_else(|e| panic!("write {} bytes: {e}", b.len()));
    }

    pub fn try_send_frame(
        &mut self,
        ty: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        self.try_send_raw(&frame_bytes(ty, flags, stream, payload))
    }

    pub fn send_frame(&mut self, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.send_raw(&frame_bytes(ty, flags, stream, payload));
    }

    /// The request pseudo-fields for `method` and `path`, then `extra`.
    pub fn request_fields(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut f = fields(&[
            (":method", method),
            (":scheme", self.scheme),
            (":authority", &self.authority),
            (":path", path),
        ]);
        f.extend(fields(extra));
        f
    }

    /// HEADERS (and CONTINUATION) with `list` encoded on `stream`.
    pub fn send_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stream: u32,
        list: &[(K, V)],
        end_stream: bool,
    ) {
        let block = encode_fields(list);
        let end = if end_stream { END_STREAM } else { 0 };
        // Past 16384 bytes (the default SETTINGS_MAX_FRAME_SIZE) the rest
        // goes in CONTINUATION frames, in the same write.
        let pieces: Vec<&[u8]> = if block.is_empty() {
            vec![&[]]
        } else {
            block.chunks(16384).collect()
        };
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let last = if i + 1 == pieces.len() {
                END_HEADERS
            } else {
                0
            };
            let (ty, flags) = if i == 0 {
                (HEADERS, end | last)
            } else {
                (CONTINUATION, last)
            };
            out.extend(frame_bytes(ty, flags, stream, piece));
        }
        self.send_raw(&out);
    }

    /// Send a request without a body on a new stream; returns its id.
    pub fn send_request(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let f = self.request_fields(method, path, extra);
        self.send_headers(id, &f, true);
        id
    }

    /// A request with its answer.
    pub fn request(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> H2Response {
        let id = self.send_request(method, path, extra);
        self.read_response(id)
    }

    pub fn get(&mut self, path: &str, extra: &[(&str, &str)]) -> H2Response {
        self.request("GET", path, extra)
    }

    /// Read and process one frame. Err when none came before `deadline`.
    pub fn pump(&mut self, deadline: Instant) -> Result<Frame, End> {
        let f = self.read_frame(deadline)?;
        self.process(&f);
        self.seen.push(Frame {
            payload: f.payload[..f.payload.len().min(64)].to_vec(),
            ..f.clone()
        });
        Ok(f)
    }

    /// The frames read so far, short: `TYPE/flags/stream`.
    pub fn seen_summary(&self) -> String {
        let names = [
            "DATA", "HEADERS", "PRIORITY", "RST", "SETTINGS", "PUSH", "PING", "GOAWAY", "WU",
            "CONT",
        ];
        let list: Vec<String> = self
            .seen
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(|f| {
                let n = names.get(f.ty as usize).copied().unwrap_or("?");
                format!("{n}/{:#x}/{}", f.flags, f.stream)
            })
            .collect();
        format!("{} frames: {}", self.seen.len(), list.join(" "))
    }

    fn process(&mut self, f: &Frame) {
        match f.ty {
            SETTINGS if f.has(ACK) => self.settings_acks += 1,
            SETTINGS => {
                self.peer_settings_frames += 1;
                for kv in f.payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([kv[0], kv[1]]);
                    let v = u32::from_be_bytes(kv[2..6].try_into().unwrap());
                    self.peer_settings.insert(id, v);
                }
                if self.opts.auto_ack {
                    let _ = self.try_send_frame(SETTINGS, ACK, 0, &[]);
                }
            }
            PING if !f.has(ACK) && self.opts.auto_ack => {
                let _ = self.try_send_frame(PING, ACK, 0, &f.payload);
            }
            GOAWAY if f.payload.len() >= 8 => {
                self.goaway = Some(GoAway {
                    last_stream: u32::from_be_bytes(f.payload[0..4].try_into().unwrap())
                        & 0x7fff_ffff,
                    code: f.error_code(),
                    debug: String::from_utf8_lossy(&f.payload[8..]).into_owned(),
                });
            }
            RST_STREAM if f.payload.len() == 4 => {
                let st = self.streams.entry(f.stream).or_default();
                st.resp.reset = Some(f.error_code());
            }
            HEADERS | CONTINUATION => self.header_fragment(f),
            DATA => self.data(f),
            _ => {}
        }
    }

    fn header_fragment(&mut self, f: &Frame) {
        let mut p = &f.payload[..];
        if f.ty == HEADERS {
            let mut pad = 0;
            if f.has(PADDED) {
                pad = p[0] as usize;
                p = &p[1..];
            }
            if f.has(PRIORITY_FLAG) {
                p = &p[5..];
            }
            p = &p[..p.len() - pad];
            assert!(
                self.block.is_none(),
                "HEADERS on stream {} while a header block of stream {} is open",
                f.stream,
                self.block.as_ref().unwrap().0
            );
            self.block = Some((f.stream, p.to_vec(), f.has(END_STREAM)));
        } else {
            let b = self
                .block
                .as_mut()
                .unwrap_or_else(|| panic!("CONTINUATION without HEADERS on {}", f.stream));
            assert_eq!(b.0, f.stream, "CONTINUATION on another stream");
            b.1.extend_from_slice(p);
        }
        if f.has(END_HEADERS) {
            let (id, bytes, end) = self.block.take().unwrap();
            let list = self
                .dec
                .decode(&bytes)
                .unwrap_or_else(|e| panic!("HPACK decode of the server's block on {id}: {e:?}"));
            let st = self.streams.entry(id).or_default();
            let first = !st.headers_seen;
            st.headers_seen = true;
            for (k, v) in &list {
                let (ks, vs) = (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                );
                if ks == ":status" {
                    let code: u16 = vs.parse().unwrap();
                    if (100..200).contains(&code) {
                        st.headers_seen = false;
                    } else {
                        st.resp.status = code;
                    }
                } else if !ks.starts_with(':') {
                    if first {
                        st.resp.fields.push((ks, vs));
                    } else {
                        st.resp.trailers.push((ks, vs));
                    }
                }
            }
            st.resp.raw_fields.extend(list);
            if end {
                st.resp.complete = true;
            }
        }
    }

    fn data(&mut self, f: &Frame) {
        let mut p = &f.payload[..];
        if f.has(PADDED) {
            let pad = p[0] as usize;
            p = &p[1..p.len() - pad];
        }
        let st = self.streams.entry(f.stream).or_default();
        st.resp.body.extend_from_slice(p);
        st.resp.data_frames += 1;
        st.resp.max_data = st.resp.max_data.max(f.payload.len());
        if f.has(END_STREAM) {
            st.resp.complete = true;
        }
        let n = f.payload.len() as u64;
        st.unacked += n;
        self.conn_unacked += n;
        if !self.opts.auto_window || n == 0 {
            return;
        }
        let mut out = Vec::new();
        let conn_window = 65535 + u64::from(self.opts.conn_window);
        if self.conn_unacked >= conn_window / 2 {
            out.extend(frame_bytes(
                WINDOW_UPDATE,
                0,
                0,
                &(self.conn_unacked as u32).to_be_bytes(),
            ));
            self.conn_unacked = 0;
        }
        let stream_window = self
            .opts
            .settings
            .iter()
            .rev()
            .find(|(id, _)| *id == INITIAL_WINDOW_SIZE)
            .map_or(65535, |(_, v)| u64::from(*v));
        let st = self.streams.get_mut(&f.stream).unwrap();
        if !f.has(END_STREAM) && st.unacked >= stream_window / 2 {
            out.extend(frame_bytes(
                WINDOW_UPDATE,
                0,
                f.stream,
                &(st.unacked as u32).to_be_bytes(),
            ));
            st.unacked = 0;
        }
        if !out.is_empty() {
            let _ = self.t.write_all(&out);
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<usize, End> {
        let now = Instant::now();
        if now >= deadline {
            return Err(End::Timeout);
        }
        let left = (deadline - now).max(Duration::from_millis(1));
        self.t.tcp().set_read_timeout(Some(left)).ok();
        let mut tmp = vec![0u8; 256 * 1024];
        loop {
            match self.t.read(&mut tmp) {
                Ok(0) => return Err(End::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if super::is_timeout(&e) => return Err(End::Timeout),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(End::Closed),
                Err(_) => return Err(End::Reset),
            }
        }
    }

    /// One frame off the wire, unprocessed.
    pub fn read_frame(&mut self, deadline: Instant) -> Result<Frame, End> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        ty: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Ok(f);
                }
            }
            self.fill(deadline)?;
        }
    }

    /// Is `id`'s response finished (END_STREAM or reset)?
    pub fn stream_done(&self, id: u32) -> bool {
        self.streams
            .get(&id)
            .is_some_and(|s| s.resp.complete || s.resp.reset.is_some())
    }

    /// Body bytes received so far on stream `id` (not yet read out).
    pub fn received(&self, id: u32) -> usize {
        self.streams.get(&id).map_or(0, |s| s.resp.body.len())
    }

    /// Read until stream `id` ends (END_STREAM or RST_STREAM); panics on a
    /// GOAWAY that leaves it out, a close or the deadline.
    pub fn read_response(&mut self, id: u32) -> H2Response {
        self.try_read_response(id, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("stream {id}: {e}"))
    }

    pub fn try_read_response(&mut self, id: u32, timeout: Duration) -> Result<H2Response, String> {
        let deadline = Instant::now() + timeout;
        while !self.stream_done(id) {
            if let Some(g) = &self.goaway
                && g.last_stream < id
            {
                return Err(format!(
                    "GOAWAY {g:?} leaves it out ({})",
                    self.seen_summary()
                ));
            }
            if let Err(end) = self.pump(deadline) {
                let partial = self.streams.get(&id).map(|s| s.resp.describe());
                return Err(format!(
                    "{end:?} before its end; goaway {:?}; {}; so far {partial:?}",
                    self.goaway,
                    self.seen_summary()
                ));
            }
        }
        Ok(self.streams.remove(&id).unwrap().resp)
    }

    /// Read until a GOAWAY arrives; then until the close (bounded by
    /// `timeout`). Returns the GOAWAY (None if the connection ended or the
    /// deadline passed without one) and how the connection ended.
    pub fn read_until_goaway(&mut self, timeout: Duration) -> (Option<GoAway>, End) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.pump(deadline) {
                Ok(f) if f.ty == GOAWAY => break,
                Ok(_) => {}
                Err(end) => return (self.goaway.clone(), end),
            }
        }
        let end = self.read_to_end(deadline);
        (self.goaway.clone(), end)
    }

    /// Read (and process) frames until the connection ends or the deadline.
    pub fn read_to_end(&mut self, deadline: Instant) -> End {
        loop {
            if let Err(end) = self.pump(deadline) {
                return end;
            }
        }
    }

    /// The connection error the server must answer with: a GOAWAY with
    /// `code`, then the close.
    #[track_caller]
    pub fn expect_goaway(&mut self, code: u32, ctx: &str) -> GoAway {
        let (g, end) = self.read_until_goaway(IO_TIMEOUT);
        let Some(g) = g else {
            panic!(
                "{ctx}: no GOAWAY (want code {code:#x}), connection {end:?}; {}",
                self.seen_summary()
            );
        };
        assert_eq!(
            g.code,
            code,
            "{ctx}: GOAWAY {g:?}, want code {code:#x}; {}",
            self.seen_summary()
        );
        assert_ne!(end, End::Timeout, "{ctx}: still open after GOAWAY {g:?}");
        g
    }

    /// A stream error: RST_STREAM with `code` on `id`, connection still usable.
    #[track_caller]
    pub fn expect_rst(&mut self, id: u32, code: u32, ctx: &str) {
        let r = self
            .try_read_response(id, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("{ctx}: stream {id}: {e}"));
        assert_eq!(
            r.reset,
            Some(code),
            "{ctx}: want RST_STREAM {code:#x} on {id}, got {}",
            r.describe()
        );
    }

    /// A PING round trip: the connection is alive and the server reads.
    #[track_caller]
    pub fn ping_roundtrip(&mut self, ctx: &str) {
        let data = *b"alive?!!";
        self.send_frame(PING, 0, 0, &data);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.pump(deadline) {
                Ok(f) if f.ty == PING && f.has(ACK) && f.payload == data => return,
                Ok(_) => {}
                Err(end) => panic!(
                    "{ctx}: no PING ACK: {end:?}, goaway {:?}; {}",
                    self.goaway,
                    self.seen_summary()
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// TLS: a certificate for `TLS_NAME`, a config, a client trusting it
// ---------------------------------------------------------------------------

/// The name the test certificate is for.
pub const TLS_NAME: &str = "h2.test";

/// A self-signed ECDSA certificate for [`TLS_NAME`] in `dir`.
pub struct TlsCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

impl TlsCert {
    pub fn new(dir: &Path) -> TlsCert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec![TLS_NAME.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let t = TlsCert {
            cert: dir.join("h2.crt"),
            key: dir.join("h2.key"),
            der: cert.der().clone(),
        };
        std::fs::write(&t.cert, cert.pem()).unwrap();
        std::fs::write(&t.key, key.serialize_pem()).unwrap();
        t
    }

    /// Config lines: a TLS listener on an ephemeral port with this certificate.
    pub fn config(&self) -> String {
        format!(
            "tls_listen = [\"127.0.0.1:0\"]\n[[tls_certificates]]\ncert = {}\nkey = {}\n",
            toml_str(&self.cert.display().to_string()),
            toml_str(&self.key.display().to_string())
        )
    }

    /// A rustls client that trusts this certificate and offers `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut store = rustls::RootCertStore::empty();
        store.add(self.der.clone()).unwrap();
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(c)
    }
}

/// The TLS listener's address (its `listening on ADDR (TLS)` line).
pub fn tls_addr(srv: &Server) -> SocketAddr {
    assert!(
        srv.wait_stderr("(TLS)", START_TIMEOUT),
        "{}",
        srv.stderr_text()
    );
    let text = srv.stderr_text();
    let line = text.lines().find(|l| l.contains("(TLS)")).unwrap();
    listening_addrs(line)[0]
}

/// Field names a HTTP/2 response must not carry (RFC 9113 §8.2.2).
pub const CONNECTION_FIELDS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Every field name lower-case, no connection-specific field, no
/// pseudo-field but `:status`.
#[track_caller]
pub fn check_h2_fields(r: &H2Response, ctx: &str) {
    for (k, _) in &r.raw_fields {
        let name = String::from_utf8_lossy(k);
        assert!(
            !k.iter().any(|b| b.is_ascii_uppercase()),
            "{ctx}: field name {name:?} has upper case"
        );
        assert!(
            !CONNECTION_FIELDS.contains(&name.as_ref()),
            "{ctx}: connection-specific field {name:?}"
        );
        assert!(
            !name.starts_with(':') || name == ":status",
            "{ctx}: pseudo-field {name:?} in a response"
        );
    }
}

// ---------------------------------------------------------------------------
// Comparing answers across protocols and clients
// ---------------------------------------------------------------------------

/// A response as any client saw it: status, fields (names lower-cased),
/// body.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn describe(&self) -> String {
        let mut s = format!("{}\n", self.status);
        for (k, v) in &self.fields {
            s.push_str(&format!("{k}: {v}\n"));
        }
        let n = self.body.len().min(200);
        s.push_str(&format!(
            "[{} body bytes] {:?}",
            self.body.len(),
            String::from_utf8_lossy(&self.body[..n])
        ));
        s
    }
}

impl From<&super::Response> for Answer {
    fn from(r: &super::Response) -> Answer {
        Answer {
            status: r.status,
            fields: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: r.body.clone(),
        }
    }
}

impl From<&H2Response> for Answer {
    fn from(r: &H2Response) -> Answer {
        Answer {
            status: r.status,
            fields: r.fields.clone(),
            body: r.body.clone(),
        }
    }
}

/// Fields that frame a message rather than describe it (RFC 9110 §7.6.1,
/// RFC 9113 §8.2.2), and `date`, which changes by the second.
const FRAMING: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "date",
];

/// The fields that must match across protocols, sorted by name (the
/// order of values of one name kept).
pub fn representation(a: &Answer) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = a
        .fields
        .iter()
        .filter(|(k, _)| !FRAMING.contains(&k.as_str()))
        .cloned()
        .collect();
    f.sort_by(|x, y| x.0.cmp(&y.0));
    f
}

/// An HTTP/2 answer against the HTTP/1.1 one to the same request: same
/// status, representation fields and body; content-length, where the
/// HTTP/2 answer has one, the same; no connection-specific field.
pub fn same_answer(h1: &Answer, h2: &Answer) -> Result<(), String> {
    let mut why = Vec::new();
    if h1.status != h2.status {
        why.push(format!("status {} vs {}", h1.status, h2.status));
    }
    let (r1, r2) = (representation(h1), representation(h2));
    if r1 != r2 {
        why.push(format!("fields differ:\n  1.1: {r1:?}\n  h2:  {r2:?}"));
    }
    if h1.body != h2.body {
        why.push(format!(
            "bodies differ: {} vs {} bytes",
            h1.body.len(),
            h2.body.len()
        ));
    }
    if let Some(l) = h2.field("content-length")
        && Some(l) != h1.field("content-length")
    {
        why.push(format!(
            "content-length {l} vs 1.1's {:?}",
            h1.field("content-length")
        ));
    }
    for (k, _) in &h2.fields {
        if CONNECTION_FIELDS.contains(&k.as_str()) {
            why.push(format!("connection-specific field {k} over HTTP/2"));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("\n"))
    }
}

// ---------------------------------------------------------------------------
// h2load's report
// ---------------------------------------------------------------------------

/// The numbers of one h2load run's `requests:` line, and its requests
/// answered with a status other than 2xx.
#[derive(Debug, Default, Clone, Copy)]
pub struct H2load {
    pub total: u64,
    pub started: u64,
    pub done: u64,
    pub succeeded: u64,
    pub non_2xx: u64,
}

/// `None` when `out` has no `requests:` or `status codes:` line.
pub fn parse_h2load(out: &str) -> Option<H2load> {
    let line = out.lines().find(|l| l.starts_with("requests: "))?;
    let num = |word: &str| -> Option<u64> {
        let at = line.find(&format!(" {word}"))?;
        line[..at]
            .rsplit([' ', ','])
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    let codes = out.lines().find(|l| l.starts_with("status codes: "))?;
    let mut non_2xx = 0;
    for part in codes["status codes: ".len()..].split(", ") {
        let (n, class) = part.split_once(' ')?;
        if class != "2xx" {
            non_2xx += n.parse::<u64>().ok()?;
        }
    }
    Some(H2load {
        total: num("total")?,
        started: num("started")?,
        done: num("done")?,
        succeeded: num("succeeded")?,
        non_2xx,
    })
}
