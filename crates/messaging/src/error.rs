//! The messaging layer's errors.

use std::time::Duration;

use weft_link::LinkError;

use crate::Identity;
pub use crate::frame::FrameError;
use crate::identity::IdentityError;

/// Everything that can go wrong in weft-messaging. Match on the variant;
/// the enum grows, so keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// The link underneath failed (listen, connect).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// An identity is invalid.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The destination's queue is full and the policy is
    /// [`QueuePolicy::Error`](crate::config::QueuePolicy::Error).
    #[error("the queue for `{0}` is full")]
    QueueFull(Identity),
    /// Persistent storage failed; the message was not accepted.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The messaging instance is closed.
    #[error("messaging is closed")]
    Closed,
    /// No puller is connected to take pushed work.
    #[error("no peer is connected")]
    NoPeer,
    /// `reply` was given a message that is not a request.
    #[error("the message is not a request")]
    NotARequest,
    /// A topic longer than 255 bytes.
    #[error("topic of {0} bytes; the limit is 255")]
    TopicTooLong(usize),
    /// No Tokio runtime is running.
    #[error("weft-messaging needs a Tokio runtime")]
    NoRuntime,
}

/// A peer broke the messaging protocol; its connection was closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame did not parse (truncated, bad identity, ...).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A MESSAGE arrived before the peer identified itself.
    #[error("MESSAGE before IDENT")]
    MessageBeforeIdent,
    /// The peer speaks another protocol version; it was sent INCOMPATIBLE.
    #[error("peer speaks protocol version {0}; weft speaks 1")]
    IncompatibleVersion(u32),
    /// The peer rejected our protocol version.
    #[error("peer rejected our protocol version")]
    PeerRejectedVersion,
    /// Another connection already has this identity (see
    /// [`DuplicateIdentity`](crate::config::DuplicateIdentity)).
    #[error("identity `{0}` is already connected")]
    DuplicateIdentity(Identity),
    /// The peer did not answer a PING in time.
    #[error("no answer to keep-alive")]
    KeepaliveTimeout,
}

/// Persistent storage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// SQLite reported an error.
    #[cfg(feature = "sqlite")]
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be read back.
    #[error("corrupt stored message: {0}")]
    Corrupt(String),
    /// Storing failed (the message was not accepted).
    #[error("storage failed: {0}")]
    Failed(String),
    /// The storage worker is gone.
    #[error("storage is closed")]
    Closed,
}
