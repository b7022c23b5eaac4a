//! The storage worker: one thread that applies stores, deletes and
//! received ids, in groups, so that waiting senders (and the receiving
//! task) share one commit.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{SeenId, Storage, StoredMessage};
use crate::MessageId;
use crate::error::StorageError;

type Reply = oneshot::Sender<Result<(), StorageError>>;

enum Op {
    Store(StoredMessage, Reply),
    Delete(MessageId),
    /// Ids received in one batch of packets.
    Seen(Vec<SeenId>, Reply),
    Stop,
}

/// Operations waiting for the worker (the channel's bound): senders of
/// persistent messages wait when it is full.
const PENDING: usize = 65_536;

/// Most operations applied in one group.
const GROUP: usize = 8_192;

/// A handle to the worker thread.
pub(crate) struct StorageWorker {
    tx: mpsc::SyncSender<Op>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StorageWorker {
    /// Starts the worker on `storage`, which keeps the last `keep_seen`
    /// received ids.
    pub(crate) fn start(mut storage: Box<dyn Storage>, keep_seen: usize) -> StorageWorker {
        let (tx, rx) = mpsc::sync_channel::<Op>(PENDING);
        let thread = std::thread::Builder::new()
            .name("weft-storage".into())
            .spawn(move || {
                let mut stores = Vec::new();
                let mut replies = Vec::new();
                let mut deletes = Vec::new();
                let mut seen = Vec::new();
                let mut seen_replies = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut stop = false;
                    let mut next = Some(first);
                    while let Some(op) = next.take() {
                        match op {
                            Op::Store(m, reply) => {
                                stores.push(m);
                                replies.push(reply);
                            }
                            Op::Delete(id) => deletes.push(id),
                            Op::Seen(ids, reply) => {
                                seen.extend(ids);
                                seen_replies.push(reply);
                            }
                            Op::Stop => stop = true,
                        }
                        if stores.len() + deletes.len() + seen.len() < GROUP {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !stores.is_empty() {
                        let result = storage.store(&stores);
                        if let Err(e) = &result {
                            tracing::error!("storing {} messages failed: {e}", stores.len());
                        }
                        for reply in replies.drain(..) {
                            let _ = reply.send(result.clone());
                        }
                        stores.clear();
                    }
                    if !seen_replies.is_empty() {
                        let result = storage.record_seen(&seen, keep_seen);
                        if let Err(e) = &result {
                            tracing::error!("recording {} received ids failed: {e}", seen.len());
                        }
                        for reply in seen_replies.drain(..) {
                            let _ = reply.send(result.clone());
                        }
                        seen.clear();
                    }
                    if !deletes.is_empty() {
                        if let Err(e) = storage.delete(&deletes) {
                            tracing::error!("deleting {} messages failed: {e}", deletes.len());
                        }
                        deletes.clear();
                    }
                    if stop {
                        break;
                    }
                }
            })
            .expect("spawning the storage thread");
        StorageWorker {
            tx,
            thread: Some(thread),
        }
    }

    /// Stores one message; completes once it is committed. Cancel-safe in
    /// the sense that dropping the future does not undo the store.
    pub(crate) async fn store(&self, message: StoredMessage) -> Result<(), StorageError> {
        let (reply, done) = oneshot::channel();
        self.send(Op::Store(message, reply)).await?;
        done.await.map_err(|_| StorageError::Closed)?
    }

    /// Records the ids received in one batch; completes once they are
    /// committed. Waits off the runtime's threads when the worker is far
    /// behind.
    pub(crate) async fn record_seen(&self, seen: Vec<SeenId>) -> Result<(), StorageError> {
        let (reply, done) = oneshot::channel();
        self.send(Op::Seen(seen, reply)).await?;
        done.await.map_err(|_| StorageError::Closed)?
    }

    /// Hands `op` to the worker; when its channel is full, waits off the
    /// runtime's threads.
    async fn send(&self, op: Op) -> Result<(), StorageError> {
        match self.tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(op)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(op))
                    .await
                    .map_err(|_| StorageError::Closed)?
                    .map_err(|_| StorageError::Closed)
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(StorageError::Closed),
        }
    }

    /// Deletes a message, without waiting.
    pub(crate) fn delete(&self, id: MessageId) {
        if let Err(mpsc::TrySendError::Full(op)) = self.tx.try_send(Op::Delete(id)) {
            // Rare: the worker is far behind. Block briefly rather than lose
            // the delete (which would only resend a delivered message).
            let _ = self.tx.send(op);
        }
    }
}

impl Drop for StorageWorker {
    fn drop(&mut self) {
        let _ = self.tx.send(Op::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
