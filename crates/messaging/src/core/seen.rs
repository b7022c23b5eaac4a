//! Received ids recorded in a store before they are acknowledged.
//!
//! With a store, the core logs the id (and sender) of every message from
//! a peer with acks; the shell takes the log after each turn
//! ([`poll_seen`](Core::poll_seen)), commits it, and then calls
//! [`handle_recorded`](Core::handle_recorded). Until then a connection's
//! acks go no further than what was recorded, so a sender never holds an
//! ack for a message its receiver could forget in a crash. A restart puts
//! the recorded ids back in the window ([`record_seen`](Core::record_seen)).

use std::time::Instant;

use super::{Core, Transmit};
use crate::storage::SeenId;

impl<T: Transmit> Core<T> {
    /// Remembers `seen` (ids recorded by earlier runs, oldest first) and
    /// logs every id received from now on. Called before any connection.
    pub(crate) fn record_seen(&mut self, seen: Vec<SeenId>) {
        for s in seen {
            // Keyed as `handle_packet` keys a message from that sender.
            let id = self.sender_salt(&s.from).apply(s.id);
            self.dedupe.record(id);
        }
        self.seen_log = Some(Vec::new());
    }

    /// The ids logged since the last call, swapped for `into` (which must
    /// be empty). Nothing without [`record_seen`](Self::record_seen).
    pub(crate) fn poll_seen(&mut self, into: &mut Vec<SeenId>) {
        debug_assert!(into.is_empty());
        if let Some(log) = &mut self.seen_log {
            std::mem::swap(log, into);
        }
    }

    /// Everything received so far is recorded: it may be acknowledged,
    /// as at the end of a batch.
    pub(crate) fn handle_recorded(&mut self, now: Instant) {
        for conn in self.conns.values_mut() {
            if conn.recorded.is_some() {
                conn.recorded = Some(conn.received);
            }
        }
        self.handle_batch_end(now);
    }
}
