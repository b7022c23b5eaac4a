//! Persistent queues: a storage trait, an in-memory store and SQLite.
//!
//! A persistent message is stored before
//! [`send_message`](crate::Messaging::send_message) returns, loaded again
//! when messaging starts, and deleted once it was delivered (acknowledged
//! by a weft peer, written to a snakeMQ peer's socket), expired or dropped.
//! Stores run on a worker thread that commits everything waiting in one
//! transaction (group commit), so many concurrent senders share each
//! commit.

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod worker;

use std::time::SystemTime;

pub use memory::MemoryStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStorage;

use crate::error::StorageError;
use crate::{Identity, Message, MessageId};

/// A message kept in storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The destination.
    pub to: Identity,
    /// The message (its `ttl` is the TTL it was sent with).
    pub message: Message,
    /// When its TTL runs out, on the wall clock (it keeps running while the
    /// process is down); `None` for no TTL.
    pub expires_at: Option<SystemTime>,
}

/// Where persistent messages live. Called from one worker thread, so
/// implementations may block.
pub trait Storage: Send + 'static {
    /// Stores messages durably, all or none.
    fn store(&mut self, messages: &[StoredMessage]) -> Result<(), StorageError>;
    /// Forgets messages (unknown ids are ignored).
    fn delete(&mut self, ids: &[MessageId]) -> Result<(), StorageError>;
    /// Every stored message, in the order it was stored.
    fn load(&mut self) -> Result<Vec<StoredMessage>, StorageError>;
}
