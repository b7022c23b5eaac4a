//! The paths a [`Traversal`](crate::Traversal) finds to a peer, and what it
//! reports about them.

use std::net::SocketAddr;
use std::time::Duration;

use weft_link::address::Scheme;
use weft_messaging::Identity;

use crate::wire::{Candidate, CloseReason, RefuseReason, UnreachableReason};

/// How packets travel to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Via {
    /// Through the rendezvous's relay.
    Relay,
    /// Straight to the peer.
    Direct,
}

impl Via {
    /// `relay` or `direct`, as the `weft peer` path event writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Relay => "relay",
            Via::Direct => "direct",
        }
    }
}

/// The transport the packets of a path ride on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// TCP (`tcp://`, and `tls://` over it).
    Tcp,
    /// QUIC over UDP.
    Quic,
    /// A Unix socket.
    Unix,
}

impl Transport {
    /// The transport of a URL scheme.
    pub fn of(scheme: Scheme) -> Transport {
        match scheme {
            Scheme::Quic | Scheme::Udp => Transport::Quic,
            Scheme::Unix | Scheme::UnixTls => Transport::Unix,
            _ => Transport::Tcp,
        }
    }

    /// `tcp`, `quic` or `unix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Unix => "unix",
        }
    }
}

/// A path to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// The peer.
    pub peer: Identity,
    /// Relay or direct.
    pub via: Via,
    /// The transport the packets ride on.
    pub transport: Transport,
    /// The address the packets go to: for the relay, the rendezvous's.
    pub remote: Option<SocketAddr>,
}

/// What a [`Traversal`](crate::Traversal) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraversalEvent {
    /// Registered at the rendezvous, which sees us at `observed`.
    Registered {
        /// Our address as the rendezvous sees it.
        observed: Option<SocketAddr>,
    },
    /// The rendezvous refused or ended our registration.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// A new path to a peer carries its messaging connection: a relay
    /// channel opened, or messaging connected directly to a peer named to
    /// [`reach`](crate::Traversal::reach) (which then replaces the relay).
    Path(Path),
    /// A path ended (messaging resends what it did not see acknowledged
    /// on the next one).
    PathEnded {
        /// The path.
        path: Path,
        /// Why.
        reason: CloseReason,
    },
    /// A peer's candidate addresses, through the rendezvous (for direct
    /// paths; the addresses are the peer's word, unchecked).
    Candidates {
        /// The peer that sent them.
        peer: Identity,
        /// Its addresses.
        addrs: Vec<Candidate>,
    },
    /// A peer's start signal for a direct attempt.
    Start {
        /// The peer that sent it.
        peer: Identity,
        /// The attempt it names.
        attempt: u32,
        /// What to try.
        strategy: u8,
        /// When to start, from now.
        delay: Duration,
    },
    /// The rendezvous could not serve a reach or a signal.
    Unreachable {
        /// The peer.
        peer: Identity,
        /// Why.
        reason: UnreachableReason,
    },
}
