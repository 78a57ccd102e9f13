//! The descriptor slots a connection's streams hold while they answer
//! (`http::FdBudget`): the connection's own one, else the worker's; a
//! request that finds none waits, first come first, until one frees.

use super::stream::Slot;
use super::{H2Conn, State};
use crate::http::Ctx;

impl H2Conn {
    /// A stream's slot is free: the connection's own at once, the
    /// worker's at the next `give_back`.
    pub(super) fn release(&mut self, slot: Slot) {
        match slot {
            Slot::None => {}
            Slot::Own => self.own_slot = false,
            Slot::Pool => self.freed += 1,
        }
    }

    pub(super) fn give_back(&mut self, ctx: &Ctx<'_>) {
        ctx.fds.give(std::mem::take(&mut self.freed));
    }

    /// A descriptor slot for a new stream's answer: the connection's own,
    /// else one of the worker's (`http::FdBudget`); none while others
    /// wait before it.
    pub(super) fn take_slot(&mut self, ctx: &Ctx<'_>) -> Option<Slot> {
        if !self.own_slot {
            self.own_slot = true;
            Some(Slot::Own)
        } else if ctx.fds.take() {
            Some(Slot::Pool)
        } else {
            None
        }
    }

    /// Answer the requests waiting for a slot, first come first, while
    /// slots are free. One always frees: the stream holding the
    /// connection's own slot is sending (or waits for the peer's window,
    /// under `send_timeout`).
    pub(super) fn start_waiting(&mut self, ctx: &mut Ctx<'_>) {
        while self.state == State::Open
            && let Some(&id) = self.waiting.front()
        {
            if !self.streams.contains_key(&id) {
                // Reset while it waited.
                self.waiting.pop_front();
                continue;
            }
            let Some(slot) = self.take_slot(ctx) else {
                break;
            };
            self.waiting.pop_front();
            let fields = self.streams.get_mut(&id).and_then(|s| {
                s.slot = slot;
                s.wait.take()
            });
            if let Some(f) = &fields {
                self.wait_bytes -= f.heap();
            }
            if let Some(f) = fields
                && let Err(code) = self.answer(ctx, id, &f)
            {
                self.fail(ctx, code);
            }
        }
    }
}
