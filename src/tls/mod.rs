//! TLS: a sans-IO layer between an engine and `http::Conn` (ciphertext in,
//! plaintext to the `Conn`, its segments out as records), certificates
//! picked by SNI, and the settings rebuilt on reload. `http` and `files`
//! know nothing of it; engines hold a `Session` and move only bytes.

pub mod certs;
mod conn;
pub mod redirect;
#[cfg(test)]
mod tests;

pub use certs::{CertError, CertFiles, server_config};
pub use conn::{CHUNK, OUT_HIGH, TlsConn, TlsInfo};
pub use redirect::Redirect;

use std::net::SocketAddr;
use std::time::Instant;

use std::sync::Arc;

use crate::h2::Http;
use crate::http::{Conn, Ctx, Limits, Respond, Transmit};

/// A responder shared by a worker's connections.
pub type SharedRespond = Arc<dyn Respond + Send + Sync>;

/// One connection as an engine sees it: plaintext HTTP, or HTTP over TLS.
/// All have the same engine-facing API (`Conn`'s): bytes in, owned
/// segments out, `handle_sent`, `poll_timeout`...
pub enum Session {
    /// Plaintext: HTTP/1.1, or HTTP/2 with prior knowledge (`Http`).
    Plain(Http),
    /// Plaintext, answered by another responder than the worker's
    /// (`redirect_to_https`: a `Redirect`). Boxed: these are few and short,
    /// and unboxed they made every connection 16 bytes larger.
    Redirect(Box<(Conn, SharedRespond)>),
    Tls(Box<TlsConn>),
}

// Every idle connection is one of these (in its engine's slab slot): a
// plaintext one is its `Http`, an HTTP/1.1 `Conn` and nothing more.
const _: () = assert!(size_of::<Session>() <= 72);

macro_rules! each {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            Session::Plain($c) => $e,
            Session::Redirect(r) => {
                let $c = &r.0;
                $e
            }
            Session::Tls($c) => $e,
        }
    };
    // A call with a context: a `Redirect` one gets its own responder.
    ($self:expr, $ctx:ident, $c:ident => $e:expr) => {
        match $self {
            Session::Plain($c) => $e,
            Session::Redirect(r) => {
                let (c, by) = &mut **r;
                let $c = c;
                let $ctx = &mut answered_by($ctx, &**by);
                $e
            }
            Session::Tls($c) => $e,
        }
    };
}

/// `ctx` with `responder` answering.
fn answered_by<'b>(ctx: &'b mut Ctx<'_>, responder: &'b dyn Respond) -> Ctx<'b> {
    Ctx {
        now: ctx.now,
        responder,
        // The worker's responder's state: a `Redirect` hands it on to the
        // responder it wraps, the worker's own.
        local: &mut *ctx.local,
        limits: ctx.limits,
        log: ctx.log.as_deref_mut(),
        notes: ctx.notes,
        stats: ctx.stats,
        pool: ctx.pool,
        drain_grace: ctx.drain_grace,
        fds: ctx.fds,
    }
}

impl Session {
    pub fn tls(&self) -> Option<&TlsConn> {
        match self {
            Session::Tls(t) => Some(t),
            _ => None,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        match self {
            Session::Plain(c) => c.peer(),
            Session::Redirect(r) => r.0.peer(),
            Session::Tls(t) => t.conn().peer(),
        }
    }

    pub fn is_closed(&self) -> bool {
        each!(self, c => c.is_closed())
    }

    pub fn is_idle(&self) -> bool {
        each!(self, c => c.is_idle())
    }

    pub fn wants_input(&self, limits: &Limits) -> bool {
        self.input_room(limits) > 0
    }

    pub fn input_room(&self, limits: &Limits) -> usize {
        each!(self, c => c.input_room(limits))
    }

    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) {
        each!(self, ctx, c => c.handle_input(ctx, data))
    }

    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        each!(self, ctx, c => c.handle_eof(ctx))
    }

    pub fn handle_error(&mut self, ctx: &mut Ctx<'_>) {
        each!(self, ctx, c => c.handle_error(ctx))
    }

    pub fn handle_sent(&mut self, ctx: &mut Ctx<'_>, n: usize) {
        each!(self, ctx, c => c.handle_sent(ctx, n))
    }

    pub fn begin_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        each!(self, ctx, c => c.begin_shutdown(ctx))
    }

    pub fn handle_unsent(&mut self, ctx: &mut Ctx<'_>, unsent: usize) {
        each!(self, ctx, c => c.handle_unsent(ctx, unsent))
    }

    pub fn handle_shutdown(&mut self) {
        match self {
            Session::Plain(c) => c.handle_shutdown(),
            Session::Redirect(r) => r.0.handle_shutdown(),
            Session::Tls(c) => c.handle_shutdown(),
        }
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        each!(self, ctx, c => c.handle_timeout(ctx))
    }

    pub fn poll_transmit(&self) -> Transmit<'_> {
        each!(self, c => c.poll_transmit())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        each!(self, c => c.poll_timeout())
    }
}
