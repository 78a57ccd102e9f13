//! `Http`: which protocol a connection speaks, HTTP/1.1 (`Conn`) or HTTP/2
//! (`H2Conn`), behind the one engine-facing API both have. A TLS session
//! picks by ALPN (`Http::h2`); a plaintext connection with
//! `http2_cleartext` by its first bytes: the HTTP/2 preface makes it
//! HTTP/2, anything else goes to `Conn` with the bytes seen so far.

use std::net::SocketAddr;
use std::time::Instant;

use crate::http::{Conn, Ctx, Limits, Transmit};
use crate::log::access::TlsFacts;

use super::H2Conn;
use super::frame::PREFACE;

pub enum Http {
    H1(Conn),
    H2(Box<H2Conn>),
    /// Plaintext with `http2_cleartext`, before its first bytes decide.
    /// Boxed (one allocation per such connection, freed when they do):
    /// inline, its two bytes made every connection 8 bytes larger.
    Sniff(Box<Sniff>),
}

// Every plaintext connection is one of these (in its `Session`): an
// HTTP/1.1 `Conn`, and nothing more.
const _: () = assert!(size_of::<Http>() <= size_of::<Conn>());

/// A plaintext connection whose first bytes have not decided yet.
pub struct Sniff {
    conn: Conn,
    /// Bytes of the preface matched so far (held back from the `Conn`).
    seen: u8,
    /// A drain began meanwhile.
    draining: bool,
}

/// `$e` with `$c` the connection's `Conn` or `H2Conn`; `mut` for a `&mut`.
macro_rules! each {
    (mut $self:expr, $c:ident => $e:expr) => {
        match $self {
            Http::H1($c) => $e,
            Http::Sniff(s) => {
                let $c = &mut s.conn;
                $e
            }
            Http::H2($c) => $e,
        }
    };
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            Http::H1($c) => $e,
            Http::Sniff(s) => {
                let $c = &s.conn;
                $e
            }
            Http::H2($c) => $e,
        }
    };
}

impl Http {
    /// A plaintext connection: HTTP/1.1, or undecided if HTTP/2 with
    /// prior knowledge is on.
    pub fn plain(peer: SocketAddr, now: Instant, limits: &Limits) -> Http {
        let conn = Conn::new(peer, now, limits);
        if limits.h2.cleartext {
            Http::Sniff(Box::new(Sniff {
                conn,
                seen: 0,
                draining: false,
            }))
        } else {
            Http::H1(conn)
        }
    }

    /// Become HTTP/2 (ALPN chose `h2`): nothing has been read yet.
    pub fn h2(&mut self, ctx: &mut Ctx<'_>) {
        let c = H2Conn::new(self.peer(), ctx.now.instant(), ctx.limits);
        ctx.stats.h2_connection();
        *self = Http::H2(Box::new(c));
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Http::H2(_))
    }

    /// Requests read (HTTP/2: streams the client opened).
    pub fn requests(&self) -> u64 {
        each!(self, c => c.requests())
    }

    pub fn set_tls(&mut self, facts: TlsFacts) {
        each!(mut self, c => c.set_tls(facts))
    }

    pub fn peer(&self) -> SocketAddr {
        each!(self, c => c.peer())
    }

    pub fn is_closed(&self) -> bool {
        each!(self, c => c.is_closed())
    }

    pub fn is_idle(&self) -> bool {
        each!(self, c => c.is_idle())
    }

    pub fn input_room(&self, limits: &Limits) -> usize {
        each!(self, c => c.input_room(limits))
    }

    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        if let Http::Sniff(s) = self {
            let at = s.seen as usize;
            let k = (PREFACE.len() - at).min(data.len());
            if data[..k] == PREFACE[at..at + k] {
                s.seen += k as u8;
                if at + k < PREFACE.len() {
                    return;
                }
                let drain = s.draining;
                self.h2(ctx);
                if let Http::H2(c) = self {
                    c.handle_input(ctx, PREFACE);
                    if drain {
                        c.begin_shutdown(ctx);
                    }
                    c.handle_input(ctx, &data[k..]);
                }
                return;
            }
            // Not the preface: HTTP/1.1, with the bytes held back first.
            let seen = at;
            // A stand-in while the `Conn` moves (a `Conn` allocates nothing).
            let stand_in = Http::H1(Conn::new(self.peer(), ctx.now.instant(), ctx.limits));
            if let Http::Sniff(s) = std::mem::replace(self, stand_in) {
                *self = Http::H1(s.conn);
            }
            if let Http::H1(c) = self {
                if seen > 0 {
                    c.handle_input(ctx, &PREFACE[..seen]);
                }
                c.handle_input(ctx, data);
            }
            return;
        }
        each!(mut self, c => c.handle_input(ctx, data))
    }

    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        each!(mut self, c => c.handle_eof(ctx))
    }

    pub fn handle_error(&mut self, ctx: &mut Ctx<'_>) {
        each!(mut self, c => c.handle_error(ctx))
    }

    pub fn handle_sent(&mut self, ctx: &mut Ctx<'_>, n: usize) {
        each!(mut self, c => c.handle_sent(ctx, n))
    }

    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        if let Http::Sniff(s) = self {
            s.draining = true;
        }
        each!(mut self, c => c.begin_shutdown(ctx))
    }

    pub fn handle_unsent(&mut self, ctx: &mut Ctx<'_>, unsent: usize) {
        each!(mut self, c => c.handle_unsent(ctx, unsent))
    }

    pub fn handle_shutdown(&mut self) {
        each!(mut self, c => c.handle_shutdown())
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        each!(mut self, c => c.handle_timeout(ctx))
    }

    pub fn poll_transmit(&self) -> Transmit<'_> {
        each!(self, c => c.poll_transmit())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        each!(self, c => c.poll_timeout())
    }
}
