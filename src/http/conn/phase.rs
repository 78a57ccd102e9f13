//! A connection's timeout policy, in one place: `Conn::phase` says where the
//! connection is, and its deadline (`update_deadline`), what that deadline
//! does when it comes (`handle_timeout`) and whether it is idle between
//! requests (`is_idle`) are all read off that one phase.

use super::*;

/// Where a connection is in its life. Derived from its fields, never stored
/// beside them, so it cannot go stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; no byte of the first request yet.
    Fresh,
    /// Part of a request head is in (the first request, or a later one).
    Head,
    /// A chunked request body is being read, before its request is answered.
    ChunkedBody,
    /// A response (or a 100 Continue) is being handed to the socket.
    Sending,
    /// A Content-Length body is being read and thrown away, after its
    /// response was handed over.
    Discarding,
    /// Between requests: the last response was handed over whole, and
    /// nothing of the next request has come (keep-alive, or the drain grace).
    Idle,
    /// All responses sent: the write side is (to be) shut and input thrown
    /// away until `until`.
    Linger {
        until: Instant,
    },
    Closed,
}

/// What an expired deadline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// A request that never completed: answer 408, then close after it.
    Reject,
    /// Shut the write side after what was sent and throw input away for
    /// `linger_timeout`: a request may be on its way this very moment, and
    /// a plain close would reset the connection under it (and lose a
    /// response still in the socket). The client sees a clean end.
    Linger,
    /// Close now.
    Close,
}

impl Phase {
    /// What happens when this phase's deadline comes (`None`: it has none).
    pub(super) fn expiry(self) -> Option<Expiry> {
        match self {
            // A head, or a chunked body, that never completed: say so.
            Phase::Head | Phase::ChunkedBody => Some(Expiry::Reject),
            // Idle (keep-alive timeout, or the drain grace is over), or
            // never asked anything.
            Phase::Fresh | Phase::Idle => Some(Expiry::Linger),
            // A body that did not come in time, after its response was
            // handed over: shut after that response, as on keep-alive expiry.
            Phase::Discarding => Some(Expiry::Linger),
            // The client does not read (send timeout), or the linger is over.
            Phase::Sending | Phase::Linger { .. } => Some(Expiry::Close),
            Phase::Closed => None,
        }
    }
}

impl Conn {
    /// The one reading of the connection's fields that the timeout policy
    /// goes by. The order matters where two hold at once: a response in
    /// flight comes before a body still to read (the 100 Continue of a
    /// chunked body, or a Content-Length body read after its response).
    pub(super) fn phase(&self) -> Phase {
        match self.state {
            State::Closed => Phase::Closed,
            State::Linger { .. } => Phase::Linger {
                until: self
                    .rare
                    .as_ref()
                    .and_then(|r| r.linger_until)
                    .unwrap_or(self.last_activity.instant()),
            },
            State::Open if self.sending() => Phase::Sending,
            State::Open if self.discard() > 0 => Phase::Discarding,
            State::Open if self.has_chunked() => Phase::ChunkedBody,
            State::Open if self.has_input() => Phase::Head,
            State::Open if self.requests == 0 => Phase::Fresh,
            State::Open => Phase::Idle,
        }
    }

    /// Between requests: the last response was handed over whole, and
    /// nothing of the next request has come.
    pub fn is_idle(&self) -> bool {
        self.phase() == Phase::Idle
    }

    /// When the current phase's deadline comes. A head, and a request body,
    /// must be whole within `header_timeout` of when it began (the head's
    /// first byte; the end of the body's head, and again when its response
    /// is out), however the client paces it.
    /// Kept as a `Stamp`: the first microsecond not before it.
    pub(super) fn update_deadline(&mut self, lim: &Limits) {
        let last = self.last_activity;
        self.deadline = match self.phase() {
            Phase::Closed => None,
            Phase::Linger { until } => Some(Stamp::of(until)),
            Phase::Sending => Some(last.after(lim.send_timeout)),
            Phase::Head | Phase::ChunkedBody | Phase::Discarding => {
                let begun = self.head_started().map_or(last, Stamp::of);
                Some(begun.after(lim.header_timeout))
            }
            Phase::Fresh => Some(last.after(lim.header_timeout)),
            Phase::Idle => {
                let idle_end = last.after(lim.keepalive_timeout);
                Some(
                    self.drain_until()
                        .map_or(idle_end, |d| Stamp::of(d).min(idle_end)),
                )
            }
        };
    }

    /// Time passed; act on a deadline that has expired.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        match self.deadline {
            Some(d) if d.instant() <= ctx.now.instant() => {}
            _ => return,
        }
        let phase = self.phase();
        match phase.expiry() {
            None => {}
            Some(Expiry::Reject) => {
                self.drop_input();
                let head = self.take_chunked_head();
                self.reject(ctx, Status::REQUEST_TIMEOUT, &head);
                self.update_deadline(ctx.limits);
            }
            Some(Expiry::Linger) => self.linger(ctx),
            Some(Expiry::Close) => {
                if phase == Phase::Sending {
                    crate::note!(ctx.notes, Level::Debug, "{}: send timeout", self.peer);
                }
                self.close(ctx);
            }
        }
    }
}
