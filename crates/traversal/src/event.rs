//! What a [`RendezvousCore`](crate::RendezvousCore) gives out: frames to
//! write, events for the operator, counters.

use std::net::SocketAddr;

use weft_link::ConnectionId;
use weft_messaging::Identity;

use crate::wire::{ChannelId, CloseReason, Frame, RefuseReason};

/// What the core wants written: a frame on a connection, or the connection
/// closed (after what was sent to it before).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// Send `frame` on `conn`.
    Frame {
        /// The connection.
        conn: ConnectionId,
        /// The frame.
        frame: Frame,
    },
    /// Close `conn` once what was queued for it is written.
    Close {
        /// The connection.
        conn: ConnectionId,
    },
}

/// What happened at the rendezvous, for its operator.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RendezvousEvent {
    /// An identity registered.
    Registered {
        /// The identity.
        identity: Identity,
        /// Its connection.
        conn: ConnectionId,
        /// The address the connection comes from.
        observed: Option<SocketAddr>,
    },
    /// A registration was refused (the connection is closed).
    Refused {
        /// The identity claimed, when the refusal is about one.
        identity: Option<Identity>,
        /// The connection.
        conn: ConnectionId,
        /// Why.
        reason: RefuseReason,
    },
    /// A registration ended (its connection closed, or a newer one
    /// replaced it).
    Unregistered {
        /// The identity.
        identity: Identity,
        /// Its connection.
        conn: ConnectionId,
    },
    /// A relay channel opened.
    RelayStarted {
        /// The channel.
        channel: ChannelId,
        /// The identity that asked for it.
        from: Identity,
        /// The identity it reaches.
        to: Identity,
    },
    /// A relay channel ended.
    RelayEnded {
        /// The channel.
        channel: ChannelId,
        /// Its two identities, in the order of `RelayStarted`.
        between: (Identity, Identity),
        /// Why.
        reason: CloseReason,
        /// Bytes it relayed, both directions.
        bytes: u64,
    },
}

/// Counters of a rendezvous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RendezvousStats {
    /// Identities registered now.
    pub registrations: usize,
    /// Registrations accepted in all.
    pub registered: u64,
    /// Registrations refused because the identity was held.
    pub refused_duplicate: u64,
    /// Registrations refused because the table was full.
    pub refused_full: u64,
    /// Registrations refused because the connection's certificate does not
    /// name the identity (with `bind_identity`).
    pub refused_unbound: u64,
    /// Registrations replaced by a newer one.
    pub replaced: u64,
    /// Connections closed for not registering in time.
    pub register_timeouts: u64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: u64,
    /// Relay channels open now.
    pub channels: usize,
    /// Relay channels opened in all.
    pub channels_opened: u64,
    /// Relay channels closed at their pair's byte cap.
    pub channels_capped: u64,
    /// Relay channels closed because a side overran its window.
    pub flow_violations: u64,
    /// Bytes relayed in all.
    pub relayed_bytes: u64,
    /// Times forwarding on a channel stopped at the rate limit.
    pub rate_waits: u64,
    /// Candidates and start signals passed on.
    pub signals: u64,
    /// Candidates and start signals refused (rate, or no such identity).
    pub signals_refused: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
}
