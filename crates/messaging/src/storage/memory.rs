//! Storage in memory: survives a [`Messaging`](crate::Messaging) restart
//! within one process (clones share the same store), not the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::collections::VecDeque;

use super::{Loaded, SeenId, Storage, StoredMessage};
use crate::MessageId;
use crate::error::StorageError;

/// An in-memory [`Storage`]. Clones share one store.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    by_id: HashMap<MessageId, (u64, StoredMessage)>,
    /// Messages set aside, with why.
    set_aside: Vec<(StoredMessage, StorageError)>,
    /// Received ids, oldest first.
    seen: VecDeque<SeenId>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// How many messages are stored.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The messages [set aside](Storage::set_aside), with why.
    pub fn set_aside_messages(&self) -> Vec<(StoredMessage, StorageError)> {
        self.lock().set_aside.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn store(&mut self, messages: &[StoredMessage]) -> Result<(), StorageError> {
        let mut inner = self.lock();
        for m in messages {
            let seq = inner.next;
            inner.next += 1;
            inner.by_id.insert(m.message.id, (seq, m.clone()));
        }
        Ok(())
    }

    fn delete(&mut self, ids: &[MessageId]) -> Result<(), StorageError> {
        let mut inner = self.lock();
        for id in ids {
            inner.by_id.remove(id);
        }
        Ok(())
    }

    fn load(&mut self) -> Result<Loaded, StorageError> {
        let inner = self.lock();
        let mut all: Vec<_> = inner.by_id.values().cloned().collect();
        all.sort_by_key(|(seq, _)| *seq);
        // Nothing in memory can be damaged: nothing is set aside here.
        Ok(Loaded {
            messages: all.into_iter().map(|(_, m)| m).collect(),
            set_aside: Vec::new(),
        })
    }

    fn set_aside(&mut self, ids: &[MessageId], reason: &StorageError) -> Result<(), StorageError> {
        let mut inner = self.lock();
        for id in ids {
            if let Some((_, m)) = inner.by_id.remove(id) {
                inner.set_aside.push((m, reason.clone()));
            }
        }
        Ok(())
    }

    fn record_seen(&mut self, seen: &[SeenId], keep: usize) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.seen.extend(seen.iter().cloned());
        let over = inner.seen.len().saturating_sub(keep);
        inner.seen.drain(..over);
        Ok(())
    }

    fn load_seen(&mut self, keep: usize) -> Result<Vec<SeenId>, StorageError> {
        let inner = self.lock();
        let skip = inner.seen.len().saturating_sub(keep);
        Ok(inner.seen.iter().skip(skip).cloned().collect())
    }
}
