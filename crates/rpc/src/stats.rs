//! Counters of an RPC instance: atomics bumped on the hot path, read as
//! one snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of an RPC instance, read with [`Rpc::stats`](crate::Rpc::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcStats {
    /// Calls sent (first sends).
    pub calls_sent: u64,
    /// Calls sent again because their peer reconnected.
    pub calls_resent: u64,
    /// Results received for a call still waiting.
    pub results_received: u64,
    /// Results for no waiting call (late, repeated, or from another peer).
    pub results_unmatched: u64,
    /// Calls that got no result within their timeout.
    pub timed_out: u64,
    /// CANCEL frames sent (for timed-out and dropped calls).
    pub cancels_sent: u64,
    /// Signals sent.
    pub signals_sent: u64,
    /// CALL frames received (repeats included).
    pub calls_received: u64,
    /// Handlers started for calls.
    pub calls_executed: u64,
    /// CALL frames handled on messaging's task as they were read, without
    /// the dispatcher: the first call of a run of messages read together,
    /// when the dispatcher had no frame waiting or being handled.
    pub calls_inline: u64,
    /// Repeated calls answered from the result cache.
    pub duplicates_cached: u64,
    /// Repeated calls that arrived while the first was still running (it
    /// answers when done).
    pub duplicates_running: u64,
    /// Running or waiting calls stopped by the caller's CANCEL.
    pub cancelled: u64,
    /// Calls stopped by their deadline.
    pub deadline_exceeded: u64,
    /// Handlers that panicked.
    pub panics: u64,
    /// Calls and signals refused because too many were running and waiting.
    pub overloaded: u64,
    /// Calls and signals for an unknown object or method.
    pub unknown: u64,
    /// SIGNAL frames received.
    pub signals_received: u64,
    /// Handlers started for signals.
    pub signals_executed: u64,
    /// Frames that did not parse or were over a size limit.
    pub bad_frames: u64,
    /// Frames dropped because the dispatcher's inbound queue was full
    /// (see [`RpcConfig::inbound_capacity`](crate::RpcConfig::inbound_capacity)).
    pub inbound_dropped: u64,
    /// Results dropped from the result cache to respect its bounds.
    pub results_evicted: u64,
    /// Frames the messaging layer refused (its queue for the peer full).
    pub send_failures: u64,
    /// Results in the result cache now.
    pub cached_results: u64,
    /// Bytes the result cache holds now (frames plus per-entry overhead).
    pub cached_bytes: u64,
    /// Calls and signals running or waiting for a turn now, in tasks of
    /// their own (a handler that finishes when first polled is never
    /// counted here).
    pub in_progress: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) calls_sent: AtomicU64,
    pub(crate) calls_resent: AtomicU64,
    pub(crate) results_received: AtomicU64,
    pub(crate) results_unmatched: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) cancels_sent: AtomicU64,
    pub(crate) signals_sent: AtomicU64,
    pub(crate) calls_received: AtomicU64,
    pub(crate) calls_executed: AtomicU64,
    pub(crate) calls_inline: AtomicU64,
    pub(crate) duplicates_cached: AtomicU64,
    pub(crate) duplicates_running: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    pub(crate) unknown: AtomicU64,
    pub(crate) signals_received: AtomicU64,
    pub(crate) signals_executed: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) inbound_dropped: AtomicU64,
    pub(crate) send_failures: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
