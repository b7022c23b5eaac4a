//! What a participant reports: its events, what it knows of the others,
//! the messages routed to it, and its counters.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::broadcast;
use weft_discovery::{DiscoveryStats, GoneReason, ParticipantId};
use weft_messaging::{Identity, MessagingStats};

use crate::FilterSpec;

/// What a participant reports to [`ParticipantEvents`] readers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParticipantEvent {
    /// Discovery found a participant.
    Found {
        /// Its id.
        id: ParticipantId,
        /// Its identity.
        identity: String,
        /// Where it accepts streams.
        addresses: Vec<SocketAddr>,
    },
    /// A participant started again (a new incarnation).
    Restarted {
        /// Its id.
        id: ParticipantId,
        /// Its identity.
        identity: String,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// A participant that discovery [found](Self::Found) is gone. One
    /// whose stream reached us before any of its beacons did, and that
    /// died before one did, was never found: its end shows only as
    /// [`Disconnected`](Self::Disconnected).
    Gone {
        /// Its id.
        id: ParticipantId,
        /// Its identity.
        identity: String,
        /// Why.
        reason: GoneReason,
    },
    /// A stream to a participant is up and we told it what we host.
    Connected(Identity),
    /// A stream to a participant ended; its publishers and subscribers
    /// are forgotten.
    Disconnected(Identity),
    /// A participant hosts a publisher of a topic (it told us).
    PublisherAdded {
        /// The participant.
        participant: Identity,
        /// The topic.
        topic: String,
    },
    /// A participant no longer hosts a publisher of a topic.
    PublisherRemoved {
        /// The participant.
        participant: Identity,
        /// The topic.
        topic: String,
    },
    /// A participant hosts a subscriber with this filter.
    SubscriberAdded {
        /// The participant.
        participant: Identity,
        /// The filter.
        filter: FilterSpec,
    },
    /// A participant no longer hosts a subscriber with this filter.
    SubscriberRemoved {
        /// The participant.
        participant: Identity,
        /// The filter.
        filter: FilterSpec,
    },
}

/// A reader of a participant's events (from
/// [`Participant::events`](crate::Participant::events)). Bounded: a reader that falls behind by
/// [`event_capacity`](crate::ParticipantConfig::event_capacity) loses the oldest.
#[derive(Debug)]
pub struct ParticipantEvents {
    pub(crate) rx: broadcast::Receiver<ParticipantEvent>,
}

impl ParticipantEvents {
    /// The next event; `None` once the participant stopped. Events lost
    /// because this reader fell behind are skipped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<ParticipantEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Another participant, as we know it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantInfo {
    /// Its id.
    pub id: ParticipantId,
    /// Its identity.
    pub identity: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Where it accepts streams.
    pub addresses: Vec<SocketAddr>,
    /// Whether a stream to it is up.
    pub connected: bool,
    /// The topics it publishes.
    pub publishers: Vec<String>,
    /// The filters of its subscribers.
    pub subscribers: Vec<FilterSpec>,
}

/// A message sent to our identity with [`Participant::send_to`](crate::Participant::send_to).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Direct {
    /// The identity of the participant that sent it.
    pub from: String,
    /// The payload.
    pub data: Bytes,
    /// Participants it passed through on its way (0: it came directly).
    pub hops: u8,
}

/// Counters of a participant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantStats {
    /// Discovery's counters (beacons sent, received, rejected, ...).
    pub discovery: DiscoveryStats,
    /// Messaging's counters.
    pub messaging: MessagingStats,
    /// Routed messages delivered to us.
    pub routed_delivered: u64,
    /// Routed messages we passed on.
    pub routed_forwarded: u64,
    /// Routed messages dropped: their hop limit ran out.
    pub routed_hop_limit: u64,
    /// Routed messages dropped: they came back to us.
    pub routed_loops: u64,
    /// Routed messages dropped: no route.
    pub routed_no_route: u64,
    /// Direct messages dropped because nobody took them.
    pub direct_dropped: u64,
    /// Control messages that did not decode.
    pub control_errors: u64,
    /// Streams refused because they did not prove they hold the group key
    /// (a wrong proof, or none in time).
    pub streams_refused: u64,
    /// Control messages dropped because their stream had not proved it
    /// holds the group key.
    pub unproved_controls: u64,
    /// Subscriber filters other participants announced that were refused
    /// for a limit: past the [`ParticipantConfig::messaging`](crate::ParticipantConfig::messaging)
    /// limits on one peer's filters (`max_peer_filters`,
    /// `max_peer_regex_filters`, `max_peer_filter_bytes`) or longer than
    /// 1 024 bytes. A refused filter is never compiled, and matches
    /// nothing.
    pub filters_refused: u64,
    /// Regex filters other participants announced that were refused
    /// because they do not compile within `regex_size_limit` and
    /// `regex_dfa_size_limit` of [`ParticipantConfig::messaging`](crate::ParticipantConfig::messaging).
    pub regexes_refused: u64,
    /// Publications routed to us through other participants and handed to
    /// our subscribers.
    pub publications_routed_in: u64,
    /// Copies of publications we routed to a neighbour, ours and others'.
    pub publications_routed_on: u64,
    /// Second copies of a routed publication we had already handed to our
    /// subscribers, dropped (possible only while routes change).
    pub publications_duplicate: u64,
    /// Routed publications dropped for a subscriber: no route to it, its
    /// hop limit ran out, or (for us) no subscriber of ours wants it any
    /// more.
    pub publications_unrouted: u64,
}
