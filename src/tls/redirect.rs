//! `redirect_to_https`: what the plaintext listeners answer instead of
//! files. Every GET and HEAD gets 308 to the same path on https://, except
//! ACME HTTP-01 challenges (`/.well-known/acme-challenge/`), which the
//! file responder serves so certificates can be renewed over plain HTTP.

use std::sync::Arc;

use std::any::Any;

use crate::http::{Notes, Now, Reply, Request, Respond, Status};
use crate::metrics::WorkerCounters;

/// Requests under this path are served as usual.
pub const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

pub struct Redirect {
    inner: Arc<dyn Respond + Send + Sync>,
    /// `:PORT` when the TLS port is not 443, else empty.
    port: String,
}

impl Redirect {
    /// Redirect to `https_port` (the first `tls_listen` port); ACME
    /// challenges go to `inner`.
    pub fn new(inner: Arc<dyn Respond + Send + Sync>, https_port: u16) -> Redirect {
        let port = match https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        Redirect { inner, port }
    }

    /// `https://host[:port]/path?query` for `req`, or None when its Host
    /// cannot be put in a URL.
    fn location(&self, req: &Request<'_>) -> Option<String> {
        let host = req.header_str("host")?;
        // The host without the plaintext port ("[::1]:8080", "a.org:80").
        let name = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => host,
        };
        let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b);
        if name.is_empty() || !name.bytes().all(ok) {
            return None;
        }
        // An absolute-form target: keep its path and query.
        let path = match req.target.find("://") {
            Some(i) => req.target[i + 3..]
                .find('/')
                .map_or("/", |j| &req.target[i + 3 + j..]),
            None => req.target,
        };
        if !path.starts_with('/') {
            return None;
        }
        Some(format!("https://{name}{}{path}", self.port))
    }
}

impl Respond for Redirect {
    /// `local` is the inner responder's (the worker's `Ctx::local`).
    fn respond(
        &self,
        req: &Request<'_>,
        now: &Now,
        local: &mut dyn Any,
        notes: &mut Notes,
    ) -> Reply {
        if req.target.starts_with(ACME_PREFIX) {
            return self.inner.respond(req, now, local, notes);
        }
        match self.location(req) {
            Some(to) => Reply::status(Status::PERMANENT_REDIRECT).with_header("Location", to),
            None => Reply::status(Status::BAD_REQUEST),
        }
    }

    fn local(&self, stats: &Arc<WorkerCounters>, fd_budget: usize) -> Box<dyn Any> {
        self.inner.local(stats, fd_budget)
    }

    fn shed(&self, local: &mut dyn Any) {
        self.inner.shed(local)
    }

    fn error(&self, status: Status) -> Reply {
        self.inner.error(status)
    }
}
