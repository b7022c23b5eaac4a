//! The messaging layer's errors.

use std::sync::Arc;
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
    /// The queues of all identities together hold
    /// [`max_total_queue_bytes`](crate::MessagingConfig::max_total_queue_bytes)
    /// and the policy is [`QueuePolicy::Error`](crate::config::QueuePolicy::Error)
    /// (or nothing of the destination's waits to be dropped).
    #[error("the queues of all identities are full")]
    AllQueuesFull,
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
    /// The call itself was wrong (see [`Misuse`]): nothing was sent, and
    /// the same call fails the same way again.
    #[error(transparent)]
    Misuse(#[from] Misuse),
    /// No Tokio runtime is running.
    #[error("weft-messaging needs a Tokio runtime")]
    NoRuntime,
}

/// A caller's mistake: a call that weft-messaging refuses because of how it
/// was made, whatever the peers and the network do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// [`reply`](crate::Messaging::reply) was given a message that is not a
    /// request.
    #[error("the message is not a request")]
    NotARequest,
    /// A topic longer than [`MAX_TOPIC`](crate::patterns::MAX_TOPIC) bytes.
    #[error("topic of {0} bytes; the limit is 255")]
    TopicTooLong(usize),
    /// [`try_send_message`](crate::Messaging::try_send_message) was given a
    /// persistent message while storage is configured: storing waits for a
    /// commit, so such a message goes through
    /// [`send_message`](crate::Messaging::send_message).
    #[error("a persistent message must go through send_message")]
    PersistentTrySend,
    /// A message whose MESSAGE frame would be larger than the packet limit
    /// ([`PacketerConfig::max_packet`](weft_packeter::PacketerConfig::max_packet)),
    /// so it could never be sent: `size` bytes of data where at most `max`
    /// fit. It was not queued (nor stored).
    #[error("message data of {size} bytes can never be sent; at most {max} fit in a packet")]
    MessageTooLarge {
        /// The message's data, in bytes.
        size: usize,
        /// The most data a MESSAGE frame carries within the packet limit.
        max: usize,
    },
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
    /// A lane of a connection (see [`Lane`](crate::Lane)) introduced
    /// itself with another identity than the connection it rides beside.
    #[error("a lane of `{connection}`'s connection claimed to be `{claimed}`")]
    LaneIdentity {
        /// The identity of the connection the lane rides beside.
        connection: Identity,
        /// The identity the lane announced.
        claimed: Identity,
    },
    /// The peer did not answer a PING in time.
    #[error("no answer to keep-alive")]
    KeepaliveTimeout,
    /// The peer did not identify itself (IDENT) within
    /// [`handshake_timeout`](crate::MessagingConfig::handshake_timeout).
    #[error("no IDENT within {0:?}")]
    HandshakeTimeout(Duration),
    /// More connections than
    /// [`max_unidentified`](crate::MessagingConfig::max_unidentified) were
    /// waiting to identify themselves; this one, the oldest, was closed.
    #[error("too many connections not yet identified; the oldest was closed")]
    TooManyUnidentified,
    /// The peer announced an identity we do not know while
    /// [`max_identities`](crate::MessagingConfig::max_identities) are
    /// remembered (connected, or with messages queued).
    #[error("too many identities remembered")]
    TooManyIdentities,
    /// With [`bind_identity`](crate::MessagingConfig::bind_identity), the
    /// identity the peer claimed is not a name of its certificate.
    #[error("identity `{claimed}` is not a name of the peer's certificate ({names:?})")]
    IdentityNotInCertificate {
        /// The identity the peer announced.
        claimed: Identity,
        /// The names the certificate binds (its DNS names, or its common
        /// name when it has none).
        names: Vec<String>,
    },
    /// With [`bind_identity`](crate::MessagingConfig::bind_identity), the
    /// peer claimed an identity on a connection without a verified
    /// certificate.
    #[error("identity `{0}` claimed without a verified certificate")]
    NoCertificate(Identity),
}

/// Persistent storage failed.
///
/// Cheap to clone: the storage worker commits the messages of many senders
/// at once, and when that commit fails each of them gets the same error.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// SQLite reported an error.
    #[cfg(feature = "sqlite")]
    #[error("SQLite: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// A stored message's id is not 16 bytes long (the store was written by
    /// something else, or damaged).
    #[error("corrupt stored message: its id is {0} bytes, not 16")]
    CorruptId(usize),
    /// A stored message's destination is not a valid identity.
    #[error("corrupt stored message: {0}")]
    CorruptIdentity(#[source] IdentityError),
    /// A stored message's flags are not a 32-bit value.
    #[error("corrupt stored message: its flags are {0}, not a 32-bit value")]
    CorruptFlags(i64),
    /// A stored message's TTL or expiry time is negative.
    #[error("corrupt stored message: a negative time ({0} ms)")]
    CorruptTime(i64),
    /// A stored message can never be sent: its packet would be larger than
    /// the packet limit
    /// ([`PacketerConfig::max_packet`](weft_packeter::PacketerConfig::max_packet)).
    #[error("stored message of {packet} bytes on the wire; the packet limit is {max}")]
    TooLarge {
        /// The MESSAGE frame's size, head and data.
        packet: usize,
        /// The packet limit.
        max: usize,
    },
    /// The store's file exists but is empty (0 bytes): it is not a store
    /// (a new store is made only where no file exists).
    #[error("the store file is empty (0 bytes), not a store")]
    EmptyFile,
    /// The store's file is not a readable SQLite database: truncated,
    /// damaged, or another kind of file. Carries SQLite's words.
    #[error("the store file is damaged or not an SQLite database: {0}")]
    Damaged(String),
    /// The store's file is an SQLite database without weft's tables (or
    /// with other columns in them): another program's database.
    #[error("the store file is an SQLite database of another schema: {0}")]
    ForeignSchema(String),
    /// Another [`Storage`](crate::storage::Storage) implementation's own
    /// error; make one with [`StorageError::other`].
    #[error(transparent)]
    Other(Arc<dyn std::error::Error + Send + Sync>),
    /// The storage worker is gone.
    #[error("storage is closed")]
    Closed,
}

impl StorageError {
    /// Wraps the error of a [`Storage`](crate::storage::Storage)
    /// implementation other than the ones in this crate.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
        StorageError::Other(Arc::new(error))
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StorageError {
    fn from(error: rusqlite::Error) -> StorageError {
        StorageError::Sqlite(Arc::new(error))
    }
}
