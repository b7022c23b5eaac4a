//! Persistent queues: a storage trait, an in-memory store and SQLite.
//!
//! A persistent message is stored before
//! [`send_message`](crate::Messaging::send_message) returns, loaded again
//! when messaging starts, and deleted once it was delivered (acknowledged
//! by a weft peer, written to a snakeMQ peer's socket), expired or dropped.
//! Stores run on a worker thread that commits everything waiting in one
//! transaction (group commit), so many concurrent senders share each
//! commit.
//!
//! A store is read whole when messaging starts. A row that cannot be read
//! back (damaged, or written by something else) or a message that can
//! never be sent (its packet is over the packet limit) does not stop the
//! others: it is set aside (kept, out of every queue), logged with its row
//! and counted in
//! [`MessagingStats::store_rows_skipped`](crate::MessagingStats::store_rows_skipped).
//!
//! A store also remembers the ids of the messages received from weft
//! peers ([`Storage::record_seen`]), the window that duplicate detection
//! checks resent messages against, and a message is acknowledged only once
//! its id is recorded. So a receiver killed at any moment (SIGKILL
//! included) and restarted on its store still drops what its senders send
//! again, and delivery stays exactly once; the ids are written in groups,
//! as messages are, one commit for each batch of packets.

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod worker;

use std::time::SystemTime;

pub use memory::MemoryStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStorage;

use crate::error::StorageError;
use crate::frame::MESSAGE_HEAD_LEN;
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
    /// Every stored message that can be read back, in the order it was
    /// stored, and the rows that cannot: those are set aside (kept, out of
    /// the queue, never silently deleted) and reported, so that one bad row
    /// never strands the others. Fails only when the store as a whole
    /// cannot be read.
    fn load(&mut self) -> Result<Loaded, StorageError>;
    /// Sets aside stored messages that can never be sent (larger than the
    /// packet limit, say): they leave the queue for good, are kept for
    /// inspection, and are not loaded again. `reason` says why. Unknown
    /// ids are ignored.
    fn set_aside(&mut self, ids: &[MessageId], reason: &StorageError) -> Result<(), StorageError>;
    /// Remembers the ids of messages received from weft peers, all or
    /// none, so that their resends are still recognised as duplicates
    /// after a restart or a crash; only the last `keep` need be kept.
    /// Messaging acknowledges a message only once its id is recorded.
    ///
    /// The default keeps nothing: with such a store a receiver killed
    /// before its acks left may deliver those messages again after it
    /// restarts. [`SqliteStorage`] and [`MemoryStorage`] keep them.
    fn record_seen(&mut self, seen: &[SeenId], keep: usize) -> Result<(), StorageError> {
        let _ = (seen, keep);
        Ok(())
    }
    /// The last `keep` ids [recorded](Storage::record_seen), oldest
    /// first. The default has none.
    fn load_seen(&mut self, keep: usize) -> Result<Vec<SeenId>, StorageError> {
        let _ = keep;
        Ok(Vec::new())
    }
}

/// A received message's id with its sender: what duplicate detection
/// remembers (the same id from two senders is two messages).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeenId {
    /// Who sent it.
    pub from: Identity,
    /// The message's id.
    pub id: MessageId,
}

/// What [`Storage::load`] found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Loaded {
    /// The messages read back, in the order they were stored.
    pub messages: Vec<StoredMessage>,
    /// The rows that could not be read back, now set aside.
    pub set_aside: Vec<SetAside>,
}

/// A stored row that was set aside instead of queued.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SetAside {
    /// The row, as its store numbers rows (SQLite's `seq` column).
    pub row: u64,
    /// What is wrong with it.
    pub error: StorageError,
}

impl SetAside {
    /// Row `row`, set aside because of `error`.
    pub fn new(row: u64, error: StorageError) -> SetAside {
        SetAside { row, error }
    }
}

/// What a start takes from its store.
pub(crate) struct ForStart {
    /// The messages to queue again.
    pub(crate) messages: Vec<StoredMessage>,
    /// Rows set aside, each logged with its row and reason.
    pub(crate) skipped: u64,
    /// The received ids to remember, oldest first.
    pub(crate) seen: Vec<SeenId>,
}

/// Loads `storage` for a start with packets of at most `max_packet` bytes
/// and a dedupe window of `keep_seen` ids: unreadable rows are set aside
/// by the store's own load, unsendable ones here.
pub(crate) fn load_for_start(
    storage: &mut dyn Storage,
    max_packet: usize,
    keep_seen: usize,
) -> Result<ForStart, StorageError> {
    let Loaded {
        mut messages,
        set_aside,
    } = storage.load()?;
    for s in &set_aside {
        tracing::warn!(row = s.row, error = %s.error, "a stored row was set aside");
    }
    let mut skipped = set_aside.len() as u64;
    let too_large =
        |m: &StoredMessage| MESSAGE_HEAD_LEN.saturating_add(m.message.data.len()) > max_packet;
    if messages.iter().any(too_large) {
        let mut sendable = Vec::with_capacity(messages.len());
        for m in messages {
            if !too_large(&m) {
                sendable.push(m);
                continue;
            }
            let error = StorageError::TooLarge {
                packet: MESSAGE_HEAD_LEN.saturating_add(m.message.data.len()),
                max: max_packet,
            };
            tracing::warn!(id = %m.message.id, to = %m.to, %error, "a stored message was set aside");
            storage.set_aside(&[m.message.id], &error)?;
            skipped += 1;
        }
        messages = sendable;
    }
    Ok(ForStart {
        messages,
        skipped,
        seen: storage.load_seen(keep_seen)?,
    })
}
