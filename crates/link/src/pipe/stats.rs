//! A pipe's counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a pipe, read with [`Pipe::stats`](super::Pipe::stats). The link's own counters
/// (bytes, connections) are in [`Pipe::link_stats`](super::Pipe::link_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeStats {
    /// Messages received (before deduplication).
    pub messages_received: u64,
    /// Messages sent through this pipe (by `send`, `try_send`, `reply`, and
    /// relays from other pipes into this one).
    pub messages_sent: u64,
    /// Sends that failed.
    pub send_failures: u64,
    /// Messages lost to full subscription queues, summed over queues.
    pub queue_dropped: u64,
    /// Messages dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Messages this pipe relayed into other pipes.
    pub relayed: u64,
    /// Relays that failed (the other pipe was closed, had no destination,
    /// or its send failed).
    pub relay_failures: u64,
    /// Datagrams dropped by a UDP server pipe because it tracked
    /// [`LinkConfig::max_udp_peers`](crate::LinkConfig::max_udp_peers) peers already (its link's
    /// [`LinkStats::datagrams_dropped`](crate::LinkStats::datagrams_dropped)).
    pub datagrams_dropped: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) messages_received: AtomicU64,
    pub(super) messages_sent: AtomicU64,
    pub(super) send_failures: AtomicU64,
    pub(super) queue_dropped: AtomicU64,
    pub(super) duplicates_dropped: AtomicU64,
    pub(super) relayed: AtomicU64,
    pub(super) relay_failures: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
