//! `TlsConn`: one TLS session (rustls `ServerConnection`, over buffers) in
//! front of one `Conn`. Ciphertext comes in from the engine; the plaintext
//! goes to the `Conn`; what the `Conn` offers to send is encrypted here and
//! handed to the engine as owned ciphertext `Segment::Bytes`, so engines
//! send it as they send any bytes, and never see a file under TLS.
//!
//! Why `ServerConnection` over in-memory buffers rather than the unbuffered
//! API: the engines already hand us received bytes as slices (epoll's
//! scratch, io_uring's provided buffers, both given back at once), so a
//! record that arrives split must be kept somewhere anyway, which is what
//! `read_tls` does; and `write_tls` drains whole records into one buffer we
//! own and hand out as shared bytes. The unbuffered API saves one copy of
//! the ciphertext at the price of managing partial records, handshake
//! messages and alerts ourselves.
//!
//! Memory per connection is bounded: at most `OUT_HIGH` bytes of plaintext
//! are encrypted ahead of the socket (a slow reader holds that much
//! ciphertext plus record overhead, and rustls's buffers of at most one
//! record each way); file bodies are read `CHUNK` bytes at a time with
//! pread into one buffer per worker thread, never whole.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use rustls::ServerConnection;

use crate::h2::Http;
use crate::http::{Conn, Ctx, OutQueue, Segment, Transmit, later};
use crate::log::Level;
use crate::metrics::{TlsFailure, TlsGauge, WorkerCounters};

/// Plaintext encrypted ahead of what the socket took (per connection).
pub const OUT_HIGH: usize = 64 * 1024;
/// One pread of a file body: one full TLS record of plaintext.
pub const CHUNK: usize = 16 * 1024;
/// Room in `wbuf` for one whole record: `CHUNK` of plaintext and what a
/// record adds (TLS 1.3: 22 bytes; 1.2 AEAD: 29).
const RECORD_ROOM: usize = CHUNK + 64;
/// Ciphertext read per call while discarding after a failure.
const DISCARD_ROOM: usize = 16 * 1024;

/// What a plaintext HTTP request sent to a TLS port is told (as nginx does).
const PLAIN_HTTP_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\n\
Content-Length: 46\r\n\
Connection: close\r\n\r\n\
The plain HTTP request was sent to HTTPS port\n";
/// `PLAIN_HTTP_REPLY`'s body bytes (its Content-Length).
const PLAIN_HTTP_BODY: u64 = 46;
/// The most of a plaintext request's first line the access log shows.
const PLAIN_LINE_MAX: usize = 2048;

thread_local! {
    /// The worker's buffer for decrypted input and file chunks. Used only
    /// within one call, never across a call into `Conn` that could reach it.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// The negotiated parameters, once the handshake is done.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: &'static str,
    pub cipher: &'static str,
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Running: the `Conn` decides.
    No,
    /// The session failed (or the client spoke plain HTTP): send what is
    /// queued (an alert, or the 400), shut the write side, discard input
    /// until EOF or `until`.
    Failing {
        shut: bool,
        until: Instant,
    },
    /// The `Conn` ended on its own (the client ended its side, or a drain)
    /// while ciphertext of its last answers was still queued: send that
    /// and close_notify, then close; input is discarded, and EOF changes
    /// nothing. At most until `until`.
    Flushing {
        until: Instant,
    },
    Closed,
}

/// rustls's session, made when the first byte comes: until then a
/// connection holds the settings it will start from, not a session (one is
/// about 2 KiB: connections that never speak cost no more than plain ones).
enum Rustls {
    Waiting(Arc<rustls::ServerConfig>),
    Live(Box<ServerConnection>),
}

impl Rustls {
    /// The session, once there is one.
    fn live(&mut self) -> Option<&mut ServerConnection> {
        match self {
            Rustls::Live(t) => Some(t),
            Rustls::Waiting(_) => None,
        }
    }

    /// The handshake has not completed (or not begun).
    fn handshaking(&self) -> bool {
        match self {
            Rustls::Live(t) => t.is_handshaking(),
            Rustls::Waiting(_) => true,
        }
    }

    fn wants_write(&self) -> bool {
        matches!(self, Rustls::Live(t) if t.wants_write())
    }
}

pub struct TlsConn {
    tls: Rustls,
    /// HTTP/1.1 until the handshake picks `h2` by ALPN.
    conn: Http,
    /// Ciphertext not yet wholly sent.
    out: OutQueue,
    /// Where ciphertext is written; split off as shared bytes.
    wbuf: BytesMut,
    ending: Ending,
    /// The close_notify alert is queued.
    notified: bool,
    /// No byte has come yet.
    fresh: bool,
    info: Option<TlsInfo>,
    /// Counts the connection by version in `/metrics` while it lives.
    gauge: TlsGauge,
}

impl TlsConn {
    /// A session for `conn`, started from `config` when the first byte
    /// comes. `counters`: the worker's, for the open-connections gauge.
    pub fn new(
        config: Arc<rustls::ServerConfig>,
        conn: Conn,
        counters: Arc<WorkerCounters>,
    ) -> TlsConn {
        TlsConn {
            tls: Rustls::Waiting(config),
            conn: Http::H1(conn),
            out: OutQueue::default(),
            wbuf: BytesMut::new(),
            ending: Ending::No,
            notified: false,
            fresh: true,
            info: None,
            gauge: TlsGauge::new(counters),
        }
    }

    /// rustls's session has been made (the first byte came).
    #[cfg(test)]
    pub(super) fn has_session(&self) -> bool {
        matches!(self.tls, Rustls::Live(_))
    }

    pub fn conn(&self) -> &Http {
        &self.conn
    }

    /// The negotiated version, suite and SNI (None during the handshake).
    pub fn info(&self) -> Option<&TlsInfo> {
        self.info.as_ref()
    }

    /// The session's keys are reachable for kTLS through
    /// `ServerConnection::dangerous_extract_secrets` (see docs/architecture.md, kTLS); unused.
    pub fn is_closed(&self) -> bool {
        match self.ending {
            Ending::Closed => true,
            Ending::Failing { .. } => false,
            Ending::Flushing { .. } => self.out.is_empty(),
            Ending::No => self.conn.is_closed(),
        }
    }

    pub fn input_room(&self, limits: &crate::http::Limits) -> usize {
        match self.ending {
            Ending::Closed => 0,
            Ending::Failing { .. } | Ending::Flushing { .. } => DISCARD_ROOM,
            // The plaintext is never larger than the ciphertext it came in.
            Ending::No => self.conn.input_room(limits),
        }
    }

    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        // After our close_notify (the `Conn` is done: it lingers for the
        // peer's EOF) what comes is discarded, not decrypted: a bad record
        // would have rustls send a fatal alert behind the close_notify.
        if self.ending != Ending::No || self.notified || data.is_empty() {
            return;
        }
        if std::mem::take(&mut self.fresh) && data[0].is_ascii_uppercase() {
            // A TLS record starts with 0x16; "GET /" is a plaintext client.
            self.queue(bytes::Bytes::from_static(PLAIN_HTTP_REPLY));
            self.log_plain_http(ctx, data);
            return self.fail(
                ctx,
                TlsFailure::PlainHttp,
                format_args!("plain HTTP request"),
            );
        }
        if let Rustls::Waiting(config) = &self.tls {
            match ServerConnection::new(config.clone()) {
                Ok(t) => self.tls = Rustls::Live(Box::new(t)),
                // `server_config` builds settings rustls takes.
                Err(e) => return self.fail(ctx, TlsFailure::Protocol, format_args!("{e}")),
            }
        }
        let mut rd = data;
        while !rd.is_empty() {
            let Some(tls) = self.tls.live() else { break };
            match tls.read_tls(&mut rd) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    return self.fail(ctx, TlsFailure::Protocol, format_args!("read_tls: {e}"));
                }
            }
            let was_handshaking = tls.is_handshaking();
            if let Err(e) = tls.process_new_packets() {
                let why = failure_of(&e, self.info.is_none());
                self.flush();
                return self.fail(ctx, why, format_args!("{e}"));
            }
            if was_handshaking && !self.tls.handshaking() {
                self.handshake_done(ctx);
            }
            if !self.plaintext_in(ctx) {
                break;
            }
        }
        self.pump(ctx);
    }

    /// Hand the decrypted bytes to the `Conn`. False once the peer sent
    /// close_notify (an EOF for the `Conn`).
    fn plaintext_in(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(tls) = self.tls.live() else {
            return false;
        };
        SCRATCH.with_borrow_mut(|buf| {
            loop {
                match tls.reader().read(buf) {
                    Ok(0) => {
                        self.conn.handle_eof(ctx);
                        return false;
                    }
                    Ok(n) => self.conn.handle_input(ctx, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => {
                        self.conn.handle_eof(ctx);
                        return false;
                    }
                }
            }
        })
    }

    fn handshake_done(&mut self, ctx: &mut Ctx<'_>) {
        let Rustls::Live(tls) = &self.tls else {
            return;
        };
        let version = match tls.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let cipher = tls
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        ctx.stats.tls_handshake(version == "TLSv1.3");
        self.gauge.count(version == "TLSv1.3");
        let h2 = tls.alpn_protocol() == Some(b"h2");
        let sni = tls.server_name().map(str::to_owned);
        if h2 {
            self.conn.h2(ctx);
        }
        self.conn.set_tls(crate::log::access::TlsFacts {
            protocol: version,
            cipher,
            sni: sni.as_deref().map(Into::into),
        });
        self.info = Some(TlsInfo {
            version,
            cipher,
            sni,
        });
    }

    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        match self.ending {
            Ending::No => {
                if self.info.is_none() {
                    ctx.stats.tls_failure(TlsFailure::Closed);
                }
                self.conn.handle_eof(ctx);
                self.pump(ctx);
            }
            Ending::Failing { .. } => self.ending = Ending::Closed,
            Ending::Flushing { .. } | Ending::Closed => {}
        }
    }

    pub fn handle_error(&mut self, ctx: &mut Ctx<'_>) {
        self.conn.handle_error(ctx);
        self.ending = Ending::Closed;
    }

    /// `n` bytes of `Transmit::Send` reached the socket.
    pub fn handle_sent(&mut self, ctx: &mut Ctx<'_>, n: usize) {
        self.out.advance(n);
        if self.ending == Ending::No {
            self.pump(ctx);
        }
        if self.out.pending() == 0 && self.conn.is_idle() {
            // Idle between requests: hold no ciphertext buffer (its last
            // allocation would otherwise stay with the connection).
            self.wbuf = BytesMut::new();
        }
    }

    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        if self.ending == Ending::No {
            self.conn.begin_shutdown(ctx);
            self.pump(ctx);
        }
    }

    pub fn handle_unsent(&mut self, ctx: &mut Ctx<'_>, unsent: usize) {
        // Ciphertext still here counts as unsent, like the socket's queue.
        self.conn.handle_unsent(ctx, unsent + self.out.pending());
        if self.conn.is_closed() {
            self.ending = Ending::Closed;
            return;
        }
        self.pump(ctx);
    }

    pub fn handle_shutdown(&mut self) {
        match &mut self.ending {
            Ending::Failing { shut, .. } => *shut = true,
            Ending::No => self.conn.handle_shutdown(),
            Ending::Flushing { .. } | Ending::Closed => {}
        }
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        match self.ending {
            Ending::Failing { until, .. } | Ending::Flushing { until }
                if until <= ctx.now.instant() =>
            {
                self.ending = Ending::Closed
            }
            Ending::No => {
                if self.info.is_none()
                    && self
                        .conn
                        .poll_timeout()
                        .is_some_and(|d| d <= ctx.now.instant())
                {
                    // The handshake did not finish within header_timeout:
                    // the session failed. Shut now (the peer sees a FIN,
                    // as a plaintext client that sent half a head or
                    // nothing does) and discard until EOF or the linger
                    // ends; the `Conn`'s own linger would hold the socket
                    // open and silent for as long again.
                    return self.fail(
                        ctx,
                        TlsFailure::Timeout,
                        format_args!("handshake timed out"),
                    );
                }
                self.conn.handle_timeout(ctx);
                if self.conn.is_closed() {
                    // Timed out (a client that does not read): what is
                    // queued goes with it.
                    self.ending = Ending::Closed;
                    return;
                }
                self.pump(ctx);
            }
            _ => {}
        }
    }

    pub fn is_idle(&self) -> bool {
        self.ending == Ending::No && self.conn.is_idle()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.ending {
            Ending::No => self.conn.poll_timeout(),
            Ending::Failing { until, .. } | Ending::Flushing { until } => Some(until),
            Ending::Closed => None,
        }
    }

    pub fn poll_transmit(&self) -> Transmit<'_> {
        // Over (a socket error, a timeout): what is queued is dropped.
        if self.ending == Ending::Closed {
            return Transmit::Close;
        }
        if !self.out.is_empty() {
            return Transmit::Send(self.out.offered());
        }
        match self.ending {
            Ending::Closed | Ending::Flushing { .. } => Transmit::Close,
            Ending::Failing { shut: false, .. } => Transmit::Shutdown,
            Ending::Failing { shut: true, .. } => Transmit::Idle,
            Ending::No => match self.conn.poll_transmit() {
                Transmit::Close => Transmit::Close,
                // close_notify went out first (pump queued it).
                Transmit::Shutdown if self.notified => Transmit::Shutdown,
                // Encrypted by pump when there is room; the handshake is
                // done before the Conn can have anything to send.
                _ => Transmit::Idle,
            },
        }
    }

    // ---- internals ----

    /// After the `Conn` acted: if it closed of itself (the client ended its
    /// side and every answer was handed over, or a drain), the ciphertext
    /// of those answers may still be queued here, and the `Conn` being
    /// closed would have the engine close the socket under it. Send it,
    /// and close_notify after it (RFC 8446, 6.1), then close.
    fn settle(&mut self, ctx: &mut Ctx<'_>) {
        if self.ending != Ending::No || !self.conn.is_closed() {
            return;
        }
        if !self.notified
            && let Some(tls) = self.tls.live().filter(|t| !t.is_handshaking())
        {
            tls.send_close_notify();
            self.notified = true;
            self.flush();
        }
        self.ending = if self.out.is_empty() {
            Ending::Closed
        } else {
            Ending::Flushing {
                until: later(ctx.now.instant(), ctx.limits.send_timeout),
            }
        };
    }

    /// A plaintext request on the TLS port is an exchange as nginx logs it:
    /// its first line (as far as the first read brought it) and the 400.
    fn log_plain_http(&self, ctx: &mut Ctx<'_>, data: &[u8]) {
        let line = data
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(b"");
        let line = &line[..line.len().min(PLAIN_LINE_MAX)];
        let now = ctx.now.instant();
        ctx.exchange(&crate::log::access::Exchange {
            request: crate::log::access::RequestLine::Raw(line),
            referer: None,
            user_agent: None,
            peer: self.conn.peer(),
            status: 400,
            body_bytes: PLAIN_HTTP_BODY,
            sent: PLAIN_HTTP_REPLY.len() as u64,
            start: now,
            end: now,
            start_wall: ctx.now.wall,
            tls: None,
        });
    }

    /// The session cannot go on: send what is queued, then shut and linger.
    fn fail(&mut self, ctx: &mut Ctx<'_>, why: TlsFailure, what: std::fmt::Arguments<'_>) {
        if self.info.is_none() {
            ctx.stats.tls_failure(why);
        }
        crate::note!(ctx.notes, Level::Debug, "{}: TLS: {what}", self.conn.peer());
        self.end_after_queued(ctx);
    }

    /// The connection cannot go on: its `Conn` is ended, but what is
    /// already encrypted (earlier responses, and this one's head and the
    /// bytes read) is sent before the socket is shut; then it lingers.
    fn end_after_queued(&mut self, ctx: &mut Ctx<'_>) {
        if !self.conn.is_closed() {
            self.conn.handle_error(ctx);
        }
        self.ending = Ending::Failing {
            shut: false,
            until: later(ctx.now.instant(), ctx.limits.linger_timeout),
        };
    }

    fn queue(&mut self, b: bytes::Bytes) {
        if !b.is_empty() {
            self.out.push(Segment::Bytes(b));
        }
    }

    /// Move what rustls has to send (records, alerts) into `wbuf`, each
    /// record whole in the buffer's room: when a record may not fit, the
    /// records before are queued and a buffer of `RECORD_ROOM` taken (the
    /// same one again once its bytes are sent). Never a larger one: a
    /// buffer grown by doubling would be held whole by a peer that does
    /// not read (128 KiB for `OUT_HIGH` of ciphertext).
    fn drain(&mut self) {
        while self.tls.wants_write() {
            if self.wbuf.capacity() - self.wbuf.len() < RECORD_ROOM {
                let b = self.wbuf.split().freeze();
                self.queue(b);
                self.wbuf.reserve(RECORD_ROOM);
            }
            let Some(tls) = self.tls.live() else { break };
            let mut w = (&mut self.wbuf).writer();
            match tls.write_tls(&mut w) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Move what rustls has to send into `out`, as one segment.
    fn flush(&mut self) {
        self.drain();
        let b = self.wbuf.split().freeze();
        self.queue(b);
    }

    /// Encrypt what the `Conn` offers, up to `OUT_HIGH` ahead of the socket.
    /// The `Conn` is told its plaintext was sent as rustls takes it; then
    /// `settle`, should the `Conn` have closed.
    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        let mut budget = OUT_HIGH.saturating_sub(self.out.pending());
        while budget > 0 && !self.tls.handshaking() {
            let Some(tls) = self.tls.live() else { break };
            let n = match self.conn.poll_transmit() {
                Transmit::Send(segs) => match &segs[0] {
                    // Large bytes go to rustls as they are (whole records).
                    Segment::Bytes(b) if b.len() >= CHUNK || segs.len() == 1 => {
                        let k = b.len().min(budget);
                        tls.writer().write(&b[..k]).unwrap_or(0)
                    }
                    _ => {
                        let room = budget.min(CHUNK);
                        let r = SCRATCH.with_borrow_mut(|buf| {
                            let got = gather(segs, &mut buf[..room]);
                            // rustls takes it whole: its buffer is drained
                            // after every write, and `got` is at most a record.
                            let n = tls.writer().write(&buf[..got]).unwrap_or(0);
                            (got, n)
                        });
                        match r {
                            (0, _) => {
                                // As engine::policy::short_file: the promised
                                // length cannot be met, the connection ends,
                                // after what was encrypted before it.
                                let peer = self.conn.peer();
                                crate::note!(
                                    ctx.notes,
                                    Level::Warn,
                                    "{peer}: file shorter than announced"
                                );
                                self.end_after_queued(ctx);
                                break;
                            }
                            (_, n) => n,
                        }
                    }
                },
                Transmit::Shutdown if !self.notified => {
                    tls.send_close_notify();
                    self.notified = true;
                    break;
                }
                _ => break,
            };
            if n == 0 {
                break;
            }
            budget -= n.min(budget);
            self.conn.handle_sent(ctx, n);
            self.drain();
        }
        self.flush();
        self.settle(ctx);
    }
}

/// Copy the plaintext of `segs` (bytes, and file ranges read with pread)
/// into `buf`, in order, until it is full: the pieces of a response (a
/// head and its body; HTTP/2 frame headers and their payloads) go out as
/// full records rather than a record each, which spares both ends a
/// record's overhead and decryption per piece. Stops at a file that reads
/// short; 0 when the first piece is a file that cannot be read.
fn gather(segs: &[Segment], buf: &mut [u8]) -> usize {
    let mut got = 0;
    for seg in segs {
        let rest = &mut buf[got..];
        match seg {
            Segment::Bytes(b) => {
                let k = b.len().min(rest.len());
                rest[..k].copy_from_slice(&b[..k]);
                got += k;
            }
            Segment::File(f) => {
                let k = (f.len as usize).min(rest.len());
                let n = f.file.read_at(&mut rest[..k], f.offset).unwrap_or(0);
                got += n;
                if n < k {
                    break;
                }
            }
        }
        if got == buf.len() {
            break;
        }
    }
    got
}

/// The `/metrics` reason for a rustls error (`handshaking`: before it completed).
fn failure_of(e: &rustls::Error, handshaking: bool) -> TlsFailure {
    use rustls::{AlertDescription as A, Error as E};
    match e {
        E::PeerIncompatible(_) | E::NoApplicationProtocol => TlsFailure::NoCommon,
        E::AlertReceived(A::ProtocolVersion | A::HandshakeFailure) => TlsFailure::NoCommon,
        E::AlertReceived(_) if handshaking => TlsFailure::Closed,
        _ => TlsFailure::Protocol,
    }
}
