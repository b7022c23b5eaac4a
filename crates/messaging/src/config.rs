//! Plain configuration with documented defaults.

use std::time::Duration;

use weft_link::LinkConfig;
use weft_packeter::PacketerConfig;

/// What happens when an identity's outgoing queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueuePolicy {
    /// `send_message` fails with [`MessagingError::QueueFull`](crate::MessagingError::QueueFull);
    /// nothing queued is dropped. The default.
    #[default]
    Error,
    /// The oldest waiting message is dropped (and counted) to make room.
    DropOldest,
    /// The new message is dropped (and counted); `send_message` succeeds.
    DropNewest,
}

/// What happens when a second connection claims an identity that is
/// already connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateIdentity {
    /// The new connection is closed; the established one stays (snakeMQ's
    /// behaviour). The default.
    #[default]
    RejectNew,
    /// The established connection is closed and the new one takes over
    /// (useful when a peer restarts faster than its old connection times out).
    ReplaceOld,
}

/// How a [`Messaging`](crate::Messaging) behaves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MessagingConfig {
    /// Messages one identity's queue holds (waiting, and sent but not yet
    /// acknowledged). Default: 1 000 000.
    pub max_queue_messages: usize,
    /// Payload bytes one identity's queue holds. Default: 1 GiB.
    pub max_queue_bytes: usize,
    /// Payload bytes the queues of all identities hold together. When a
    /// message would go past it, the queue policy decides as for a full
    /// queue, but only the destination's own waiting messages are ever
    /// dropped for it: [`QueuePolicy::Error`] fails with
    /// [`MessagingError::AllQueuesFull`](crate::MessagingError::AllQueuesFull),
    /// `DropNewest` drops the new message, `DropOldest` drops the
    /// destination's oldest waiting messages (failing when it has none).
    /// Counted in
    /// [`MessagingStats::all_queues_full`](crate::MessagingStats::all_queues_full).
    /// Default: 2 GiB.
    pub max_total_queue_bytes: usize,
    /// Identities remembered at once: connected, or with messages queued
    /// for them (an identity with neither is forgotten when it
    /// disconnects). A peer announcing a new identity past it is
    /// disconnected
    /// ([`ProtocolError::TooManyIdentities`](crate::error::ProtocolError::TooManyIdentities),
    /// counted in
    /// [`MessagingStats::identities_refused`](crate::MessagingStats::identities_refused));
    /// our own sends are not limited by it. Default: 65 536.
    pub max_identities: usize,
    /// What a full queue does. Default: [`QueuePolicy::Error`].
    pub queue_policy: QueuePolicy,
    /// What a duplicate identity does. Default: [`DuplicateIdentity::RejectNew`].
    ///
    /// Without [`bind_identity`](Self::bind_identity) an identity is only
    /// a claim: an unauthenticated peer can take any identity that no live
    /// connection holds, and receives what is queued for it; it cannot take
    /// over an identity a live connection holds while this is
    /// `RejectNew` (with `ReplaceOld` it can, by connecting again).
    pub duplicate_identity: DuplicateIdentity,
    /// Bind identities to certificates: the identity a peer announces
    /// (IDENT) must be one of the DNS names (subjectAltName) of the
    /// certificate it presented and the TLS handshake verified, or its
    /// subject's common name when it has no DNS names, matched byte for
    /// byte (see [`CertificateNames::binds`](crate::certificate::CertificateNames::binds)).
    /// Otherwise, and when the connection has no verified certificate (a
    /// plain `tcp://` connection, or a TLS client that presented none), the
    /// connection is closed before anything is sent to that identity
    /// ([`ProtocolError::IdentityNotInCertificate`](crate::error::ProtocolError::IdentityNotInCertificate),
    /// [`ProtocolError::NoCertificate`](crate::error::ProtocolError::NoCertificate),
    /// counted in
    /// [`MessagingStats::identities_unbound`](crate::MessagingStats::identities_unbound)),
    /// and it neither receives nor displaces anything. On a connection a
    /// listener accepted, our own handshake (and so our identity) goes out
    /// only once the peer's is proved: a peer that cannot prove one sees no
    /// connection at all, not even for a moment. Connections must
    /// then be TLS (`tls://`, `unix+tls://`, `quic://`) with certificates
    /// on both sides: a listener requires client certificates
    /// (weft-link's `ClientAuth::Required`).
    /// Default: false.
    pub bind_identity: bool,
    /// Send PING after this long without hearing from a peer; `None` turns
    /// keep-alive off. Default: 30 s.
    pub keepalive_interval: Option<Duration>,
    /// Disconnect a peer that has not answered a PING after this long.
    /// Default: 10 s.
    pub keepalive_wait: Duration,
    /// Offer weft's delivery acks to weft peers (resend after reconnects,
    /// no loss and no duplicates). snakeMQ peers never see them. Default: true.
    pub acks: bool,
    /// How long a receiver may hold back an ACK so that it leaves with the
    /// next message it sends that peer (a reply, say) instead of on its own.
    /// An ACK also leaves at once when many messages (256) are
    /// unacknowledged. Zero acknowledges after every batch of packets.
    /// Default: 1 ms.
    pub ack_delay: Duration,
    /// Message ids remembered (from all weft peers together, each with its
    /// sender: one peer's id never hides another's message) to drop
    /// duplicates of resent messages; a duplicate older than the window is
    /// not recognised. Default: 65 536.
    pub dedupe_window: usize,
    /// How long a connection may take to identify itself (IDENT) after it
    /// came up; past it the connection is closed
    /// ([`ProtocolError::HandshakeTimeout`](crate::error::ProtocolError::HandshakeTimeout),
    /// counted in [`MessagingStats::handshake_timeouts`](crate::MessagingStats::handshake_timeouts)),
    /// whatever else it sends (PONGs included). Default: 10 s.
    pub handshake_timeout: Duration,
    /// Connections open at once that have not identified themselves yet.
    /// One more closes the oldest of them
    /// ([`ProtocolError::TooManyUnidentified`](crate::error::ProtocolError::TooManyUnidentified),
    /// counted in [`MessagingStats::unidentified_evicted`](crate::MessagingStats::unidentified_evicted)):
    /// a real peer identifies within a round trip, so a flood of
    /// connections that never do cannot keep it out, and identified
    /// connections are never closed for it. Default: 1024.
    pub max_unidentified: usize,
    /// How often queues are swept for messages whose TTL ran out while
    /// waiting. Default: 1 s.
    pub ttl_sweep: Duration,
    /// Topic filters (SUBSCRIBE, prefix and regex together) one peer may
    /// have; more are refused and counted in
    /// [`MessagingStats::filters_refused`](crate::MessagingStats::filters_refused).
    /// Default: 1024.
    pub max_peer_filters: usize,
    /// Regex topic filters one peer may have (each costs a compiled
    /// program and its caches); more are refused and counted in
    /// [`MessagingStats::filters_refused`](crate::MessagingStats::filters_refused).
    /// Default: 16.
    pub max_peer_regex_filters: usize,
    /// Bytes of filter text one peer may have, both kinds together; a
    /// filter beyond it is refused and counted in
    /// [`MessagingStats::filters_refused`](crate::MessagingStats::filters_refused).
    /// A single filter is at most 1 024 bytes. Default: 64 KiB.
    pub max_peer_filter_bytes: usize,
    /// The compiled size a peer's regex filter may reach
    /// (`regex::RegexBuilder::size_limit`); one that needs more is refused
    /// and counted in
    /// [`MessagingStats::regexes_refused`](crate::MessagingStats::regexes_refused).
    /// Default: 256 KiB.
    pub regex_size_limit: usize,
    /// The cache a peer's regex filter may use while matching
    /// (`regex::RegexBuilder::dfa_size_limit`). Default: 256 KiB.
    pub regex_dfa_size_limit: usize,
    /// Messages a subscription queue holds; beyond it the oldest is dropped
    /// and counted. Default: 65 536.
    pub subscription_capacity: usize,
    /// When the default queue ([`Messaging::recv`](crate::Messaging::recv))
    /// takes received messages. Default: [`DefaultQueue::Auto`].
    pub default_queue: DefaultQueue,
    /// The link underneath.
    pub link: LinkConfig,
    /// The packeter underneath.
    pub packeter: PacketerConfig,
}

impl Default for MessagingConfig {
    fn default() -> MessagingConfig {
        MessagingConfig {
            max_queue_messages: 1_000_000,
            max_queue_bytes: 1 << 30,
            max_total_queue_bytes: 2 << 30,
            max_identities: 65_536,
            queue_policy: QueuePolicy::Error,
            duplicate_identity: DuplicateIdentity::RejectNew,
            bind_identity: false,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_wait: Duration::from_secs(10),
            acks: true,
            ack_delay: Duration::from_millis(1),
            dedupe_window: 65_536,
            handshake_timeout: Duration::from_secs(10),
            max_unidentified: 1024,
            ttl_sweep: Duration::from_secs(1),
            max_peer_filters: 1024,
            max_peer_regex_filters: 16,
            max_peer_filter_bytes: 64 << 10,
            regex_size_limit: 256 << 10,
            regex_dfa_size_limit: 256 << 10,
            subscription_capacity: 65_536,
            default_queue: DefaultQueue::Auto,
            link: LinkConfig::default(),
            packeter: PacketerConfig::default(),
        }
    }
}

/// When the default queue takes received messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DefaultQueue {
    /// Every message, until a message handler
    /// ([`Messaging::on_message`](crate::Messaging::on_message)) or a
    /// subscription is installed: from then on the handlers and
    /// subscriptions say where messages go, and the default queue takes
    /// none (so it never fills up with copies nobody reads).
    #[default]
    Auto,
    /// Every message, whatever else takes it too.
    Always,
}
