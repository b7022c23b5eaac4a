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
    Identity(#[from] weft_messaging::IdentityError),
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A topic longer than 255 bytes.
    #[error("topic of {0} bytes; the limit is 255")]
    TopicTooLong(usize),
    /// No participant we know of can reach this identity.
    #[error("no route to `{0}`")]
    NoRoute(String),
    /// A wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The participant (or the local participant we were attached to) is
    /// closed.
    #[error("closed")]
    Closed,
    /// The local participant answered something this client does not
    /// understand, or refused a request.
    #[error("local participant: {0}")]
    Local(String),
}
