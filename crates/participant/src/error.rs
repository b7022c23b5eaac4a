//! The crate's error type.

use std::time::Duration;

/// What can go wrong in a participant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParticipantError {
    /// Messaging underneath failed.
    #[error(transparent)]
    Messaging(#[from] weft_messaging::MessagingError),
    /// Discovery failed to start.
    #[error(transparent)]
    Discovery(#[from] weft_discovery::DiscoveryError),
    /// The link underneath failed (listening, connecting).
    #[error(transparent)]
    Link(#[from] weft_link::LinkError),
    /// An identity is invalid (empty, or more than 50 characters).
    #[error(transparent)]
    Identity(#[from] weft_messaging::identity::IdentityError),
    /// The listen address is not an IP address, so other participants
    /// could not reach the streams announced in our beacons.
    #[error("`{0}` is not an IP address; other participants cannot reach it")]
    ListenNotIp(weft_link::Address),
    /// [`StreamTransport::Quic`](crate::StreamTransport::Quic) without
    /// [`ParticipantConfig::tls`](crate::ParticipantConfig::tls): QUIC
    /// streams between participants are always mutually authenticated,
    /// so a participant without a certificate and the group's CA does not
    /// start.
    #[error(
        "QUIC streams need a certificate, its key and the group's CA (ParticipantConfig::tls; `--cert`, `--key` and `--ca`)"
    )]
    QuicWithoutTls,
    /// A topic longer than 255 bytes.
    #[error("topic of {0} bytes; the limit is 255")]
    TopicTooLong(usize),
    /// No participant we know of can reach this identity.
    #[error("no route to `{0}`")]
    NoRoute(weft_messaging::Identity),
    /// A wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The participant (or the local participant we were attached to) is
    /// closed.
    #[error("closed")]
    Closed,
    /// The local participant refused to serve us (its reason; see
    /// [`LocalServer`](crate::local::LocalServer)).
    #[error("local participant: {0}")]
    LocalRefused(String),
    /// A file operation failed (such as making a local socket private).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A value for a typed topic that serde could not encode (see
    /// [`typed`](crate::typed)).
    #[error("could not encode the value: {0}")]
    Encode(#[source] postcard::Error),
    /// A publication of a typed topic whose payload is not an encoding of
    /// the subscriber's type (see [`typed`](crate::typed)). It was taken
    /// and counted; the subscriber goes on with the next one.
    #[error("publication on `{topic}` from `{from}` does not decode: {source}")]
    Undecodable {
        /// Its topic.
        topic: std::sync::Arc<str>,
        /// Who published it.
        from: weft_messaging::Identity,
        /// Why postcard could not decode it.
        #[source]
        source: postcard::Error,
    },
    /// The local participant broke the attach protocol.
    #[error("local participant: {0}")]
    Local(LocalProtocolError),
}

/// How a local participant broke the attach protocol (see `PROTOCOL.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalProtocolError {
    /// Its first answer was not a welcome.
    #[error("its first answer was not a welcome")]
    NoWelcome,
}
