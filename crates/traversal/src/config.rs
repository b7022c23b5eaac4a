//! How a rendezvous and a traversal behave: plain structs with documented
//! defaults.

use std::time::Duration;

use weft_link::LinkConfig;

use crate::path_tls::PathTls;
use crate::punch::PunchConfig;
use crate::race::RaceConfig;

/// The limits and policies of a [`RendezvousCore`](crate::RendezvousCore)
/// (and of the [`Rendezvous`](crate::Rendezvous) around it).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RendezvousConfig {
    /// The most identities registered at once; more are refused
    /// (`Refused{Full}`) and their connections closed. Default: 1024.
    pub max_registrations: usize,
    /// The most connections that have not registered yet; a newer one
    /// beyond it is closed at once. Default: 256.
    pub max_unregistered: usize,
    /// A connection that does not register within this is closed
    /// (`Refused{Timeout}`). Default: 10 s.
    pub register_timeout: Duration,
    /// Bind identities to certificates, as weft-messaging's
    /// `MessagingConfig::bind_identity` does: an identity registers only
    /// on a connection whose verified TLS certificate names it (its DNS
    /// names, or its common name when it has none); otherwise, and on a
    /// connection without a verified certificate, `Refused{Unbound}`.
    /// Default: `false`.
    pub bind_identity: bool,
    /// Whether a newer registration of an identity replaces an older one
    /// (the older connection gets `Refused{Replaced}` and is closed).
    /// Otherwise the newer one is refused (`Refused{Duplicate}`) and
    /// closed. Default: `false`.
    pub replace_registration: bool,
    /// The most relay channels one registration takes part in; a reach
    /// beyond it is answered `Unreachable{TooManyChannels}`. Default: 16.
    pub max_channels: usize,
    /// The most reaches one registration has waiting for identities that
    /// have not registered; more are answered `Unreachable{TooManyPending}`.
    /// Default: 16.
    pub max_pending_reaches: usize,
    /// Bytes relayed per second between one pair, both directions
    /// together. When the pair runs out, the rendezvous stops forwarding
    /// (and stops granting the senders more window) until it refills:
    /// nothing is dropped. Default: 1 MiB/s.
    pub relay_rate: u64,
    /// The most bytes relayed between one pair of registrations in all;
    /// at the cap the channel is closed (`RelayClose{CapReached}`) and
    /// reaches between the pair are refused until one of them registers
    /// again. Default: 256 MiB.
    pub relay_total: u64,
    /// The window of each direction of a relay channel: the most bytes a
    /// side may send before it is granted more, and so the most the
    /// rendezvous holds per direction. Default: 64 KiB.
    pub relay_window: u32,
    /// The largest `RelayData` frame the rendezvous sends. Default: 16 KiB.
    pub relay_chunk: usize,
    /// `Candidates` and `Start` frames one registration may send per
    /// second (in bursts of as many); more are answered
    /// `Unreachable{RateLimited}` and counted. Default: 20.
    pub signals_per_second: u32,
    /// Events held for [`poll_event`](crate::RendezvousCore::poll_event);
    /// beyond it the oldest is dropped and counted. Default: 1024.
    pub max_events: usize,
}

impl Default for RendezvousConfig {
    fn default() -> RendezvousConfig {
        RendezvousConfig {
            max_registrations: 1024,
            max_unregistered: 256,
            register_timeout: Duration::from_secs(10),
            bind_identity: false,
            replace_registration: false,
            max_channels: 16,
            max_pending_reaches: 16,
            relay_rate: 1024 * 1024,
            relay_total: 256 * 1024 * 1024,
            relay_window: 64 * 1024,
            relay_chunk: 16 * 1024,
            signals_per_second: 20,
            max_events: 1024,
        }
    }
}

/// How a [`Traversal`](crate::Traversal) behaves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TraversalConfig {
    /// The link configuration of the connection to the rendezvous (its
    /// reconnect policy among others).
    pub link: LinkConfig,
    /// How long after a relay path to a wanted peer ended it is asked for
    /// again (when messaging has no connection to the peer by then).
    /// Default: 200 ms.
    pub reach_retry: Duration,
    /// The buffer of each direction of the in-memory pipe between a relay
    /// channel and messaging. Default: 64 KiB.
    pub pipe_buffer: usize,
    /// The largest `RelayData` frame sent (never more than the channel's
    /// window). Default: 16 KiB.
    pub chunk: usize,
    /// The most identities [`Traversal::reach`](crate::Traversal::reach) keeps wanting; beyond it
    /// `reach` fails with [`TraversalError::Busy`](crate::TraversalError::Busy). Default: 1024.
    pub max_wanted: usize,
    /// Events held for [`TraversalEvents`](crate::TraversalEvents); beyond it new ones are dropped
    /// and counted ([`Traversal::events_dropped`](crate::Traversal::events_dropped)). Default: 256.
    pub event_capacity: usize,
    /// How direct TCP paths are raced beside the relay (see
    /// [`RaceConfig`]'s defaults); `enabled: false` keeps to the relay.
    pub direct: RaceConfig,
    /// How UDP hole punching carrying QUIC runs beside the direct TCP
    /// paths (see [`PunchConfig`]'s defaults); it runs only while
    /// `direct` is enabled, and `enabled: false` keeps to TCP.
    pub punch: PunchConfig,
    /// Certificates for mutual TLS on every path (see [`PathTls`]).
    /// Default: `None`, paths without certificates.
    pub tls: Option<PathTls>,
}

impl Default for TraversalConfig {
    fn default() -> TraversalConfig {
        TraversalConfig {
            link: LinkConfig::default(),
            reach_retry: Duration::from_millis(200),
            pipe_buffer: 64 * 1024,
            chunk: 16 * 1024,
            max_wanted: 1024,
            event_capacity: 256,
            direct: RaceConfig::default(),
            punch: PunchConfig::default(),
            tls: None,
        }
    }
}
