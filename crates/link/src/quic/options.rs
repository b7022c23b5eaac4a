//! The QUIC settings of a link.

use std::time::Duration;

/// How a link's QUIC connections behave ([`LinkConfig::quic`](crate::LinkConfig::quic)).
/// Each field documents its default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicOptions {
    /// A connection that hears nothing from its peer for this long is dead
    /// (QUIC's idle timeout; both ends propose one and the smaller holds).
    /// A duration too long for QUIC to express means no limit.
    /// Default: 30 s.
    pub idle_timeout: Duration,
    /// How often an idle connection sends a PING, so that neither the idle
    /// timeout nor a NAT's binding ends a connection that is merely quiet
    /// (TCP connections are not ended by quiet either). `None` sends none.
    /// Default: 10 s.
    pub keep_alive: Option<Duration>,
    /// How many STUN datagrams (RFC 7983: first byte 0 to 3) that arrived
    /// on a QUIC socket wait for a [`StunChannel`](super::StunChannel) to
    /// read them; past that they are dropped (the newest) and counted in
    /// [`LinkStats::stun_datagrams_dropped`](crate::LinkStats::stun_datagrams_dropped).
    /// Each holds one datagram's bytes. Default: 64.
    pub stun_queue: usize,
    /// How many [lanes](crate::Link::open_lane) the peer may have open
    /// beside a connection at once (QUIC's stream limit); opening more
    /// waits for one to end. QUIC keeps some state for each stream a peer
    /// may open, on every connection, so the default is what messaging
    /// needs: its data lane, opened by either side. Default: 2.
    pub max_lanes: u32,
}

impl Default for QuicOptions {
    fn default() -> QuicOptions {
        QuicOptions {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            stun_queue: 64,
            max_lanes: 2,
        }
    }
}
