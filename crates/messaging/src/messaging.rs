//! The tokio shell around the core: one task reads packets and runs the
//! timers; senders call into the core directly under a short lock.
//!
//! The handle is here; the task in [`io_task`], its hand-over of the core's
//! events in [`dispatch`], and the core's transmit on a packeter connection
//! in [`transmit`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use weft_link::Link;
use weft_packeter::{PacketSender, Packeter};

use crate::core::{Core, Entry, Topics, check_size, later};
use crate::error::{Misuse, ProtocolError};
use crate::frame::Frame;
use crate::storage::worker::StorageWorker;
use crate::storage::{Storage, StoredMessage};
use crate::subscription::QueueShared;
use crate::{
    Identity, Message, MessageId, MessagingConfig, MessagingError, Received, Subscription,
    SubscriptionQueue,
};
use tokio::sync::oneshot;

mod dispatch;
mod io_task;
mod peer_info;
mod transmit;

use dispatch::Dispatch;
use io_task::run;
pub use peer_info::PeerInfo;

/// Stops the I/O task when the last [`Messaging`] handle is dropped.
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stopping.store(true, Ordering::Release);
        // A permit is kept when the task is not waiting: never lost.
        self.0.wake.notify_one();
    }
}

/// Counters of a messaging instance, read with [`Messaging::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessagingStats {
    /// MESSAGE frames written (first sends and resends).
    pub sent: u64,
    /// MESSAGE frames received (duplicates included).
    pub received: u64,
    /// Messages that reached their peer (acknowledged, or written to a peer
    /// without acks).
    pub delivered: u64,
    /// Messages acknowledged by weft peers.
    pub acked: u64,
    /// Messages whose TTL ran out before they were written.
    pub expired: u64,
    /// Messages dropped by a queue policy.
    pub dropped: u64,
    /// Messages sent again after a connection dropped before their ack.
    pub resent: u64,
    /// Duplicates received and suppressed.
    pub duplicates: u64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: u64,
    /// Connections closed because they did not identify themselves within
    /// [`MessagingConfig::handshake_timeout`].
    pub handshake_timeouts: u64,
    /// Unidentified connections closed because more than
    /// [`MessagingConfig::max_unidentified`] were open.
    pub unidentified_evicted: u64,
    /// Topic filters from peers refused for a limit
    /// ([`MessagingConfig::max_peer_filters`] and the limits beside it).
    pub filters_refused: u64,
    /// Regex topic filters from peers refused because they do not compile
    /// within [`MessagingConfig::regex_size_limit`].
    pub regexes_refused: u64,
    /// Peers disconnected because [`MessagingConfig::max_identities`]
    /// identities were remembered.
    pub identities_refused: u64,
    /// Peers disconnected because their certificate does not bind the
    /// identity they claimed, or they had none
    /// ([`MessagingConfig::bind_identity`]).
    pub identities_unbound: u64,
    /// Times [`MessagingConfig::max_total_queue_bytes`] bit.
    pub all_queues_full: u64,
    /// Payload bytes queued now for all identities together.
    pub queued_bytes: u64,
    /// Received messages that matched no subscription and no handler.
    pub unhandled: u64,
    /// Copies dropped by full subscription queues, and copies for a queue
    /// unsubscribed while they were being dispatched to it.
    pub subscription_drops: u64,
    /// Rows of the store that were set aside when it was loaded, instead
    /// of queued: rows that could not be read back, and messages that can
    /// never be sent (over the packet limit). Each is logged with its row
    /// and reason (see [`storage`](crate::storage)).
    pub store_rows_skipped: u64,
}

/// Identifies a registered handler, for [`Messaging::remove_handler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

struct Inner {
    me: Identity,
    config: MessagingConfig,
    link: Link,
    core: Mutex<Core<PacketSender>>,
    /// Wakes the I/O task: events to dispatch, connections to end or to
    /// wait for, timers that moved, a stop.
    wake: Notify,
    /// The last handle is gone: the I/O task stops.
    stopping: AtomicBool,
    /// Signalled whenever deliveries happen while `flush` waits.
    progress: Notify,
    /// Calls of `flush` waiting: without one, a delivery signals no one
    /// (a signal takes the `Notify`'s lock even when no one waits).
    flushing: AtomicUsize,
    /// Handlers and queues; copied on write, so a dispatch takes a cheap
    /// snapshot.
    dispatch: Mutex<Arc<Dispatch>>,
    storage: Option<StorageWorker>,
    /// Rows of the store set aside when it was loaded.
    store_rows_skipped: u64,
    next_id: AtomicU64,
    unhandled: AtomicU64,
    subscription_drops: AtomicU64,
    default_queue: SubscriptionQueue,
    /// Requests waiting for their reply.
    pending: Mutex<HashMap<MessageId, oneshot::Sender<Received>>>,
    /// Our topic subscriptions, the peers' interest and publication
    /// targets. Never held while the core's lock is taken.
    topics: Mutex<Topics>,
    /// Connectors resting because their connections crossed another to the
    /// same peer, woken when that peer's connection ends.
    resting: Mutex<HashMap<Identity, Vec<weft_link::ConnectorId>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Identity messaging over a [`Link`]: send to a peer by its identity,
/// whether or not it is connected yet; receive through subscription
/// queues and handlers. Wire-compatible with snakeMQ 1.6.
///
/// Cheap to clone; dropping the last clone stops it. Needs a Tokio runtime.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use weft_messaging::{Identity, Message, Messaging};
///
/// let bob = Messaging::new(Identity::new("bob")?, Default::default()).await?;
/// let at = bob.link().listen("tcp://127.0.0.1:0").await?.address;
///
/// let alice = Messaging::new(Identity::new("alice")?, Default::default()).await?;
/// // Queued now, sent once alice is connected to bob.
/// alice.send_message(&Identity::new("bob")?, Message::new("hello bob")).await?;
/// alice.link().connect(&at)?;
///
/// let got = bob.recv(Some(Duration::from_secs(5))).await?;
/// assert_eq!(got.from.as_str(), "alice");
/// assert_eq!(&got.message.data[..], b"hello bob");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Messaging {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

/// A [`Messaging`] handle that does not keep the instance running (from
/// [`Messaging::downgrade`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct WeakMessaging {
    inner: std::sync::Weak<Inner>,
    stop: std::sync::Weak<StopOnDrop>,
}

impl WeakMessaging {
    /// A full handle, while some other [`Messaging`] handle keeps the
    /// instance running; `None` once the last one was dropped.
    pub fn upgrade(&self) -> Option<Messaging> {
        Some(Messaging {
            _stop: self.stop.upgrade()?,
            inner: self.inner.upgrade()?,
        })
    }
}

impl fmt::Debug for Messaging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messaging")
            .field("identity", &self.inner.me)
            .finish()
    }
}

impl Messaging {
    /// Starts messaging as `identity`, with messages in memory only.
    ///
    /// Cancel-safe: messaging starts when the future completes, at its
    /// first poll; dropped before that, it starts nothing.
    pub async fn new(
        identity: Identity,
        config: MessagingConfig,
    ) -> Result<Messaging, MessagingError> {
        Messaging::start(identity, config, None).await
    }

    /// Starts messaging as `identity` with persistent storage: messages
    /// stored by an earlier run are loaded and queued again (those whose TTL
    /// ran out meanwhile are dropped from storage).
    ///
    /// Cancel-safe: messaging starts only when the future completes. If it
    /// is dropped while the stored messages load (on a blocking thread),
    /// the load runs to its end and `storage` is then dropped; nothing is
    /// started and nothing is deleted from storage.
    pub async fn with_storage(
        identity: Identity,
        config: MessagingConfig,
        storage: impl Storage,
    ) -> Result<Messaging, MessagingError> {
        Messaging::start(identity, config, Some(Box::new(storage))).await
    }

    async fn start(
        identity: Identity,
        config: MessagingConfig,
        storage: Option<Box<dyn Storage>>,
    ) -> Result<Messaging, MessagingError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MessagingError::NoRuntime);
        }
        let mut core = Core::new(identity.clone(), config.clone(), now());
        let mut store_rows_skipped = 0;
        let storage = match storage {
            None => None,
            Some(mut s) => {
                let max_packet = config.packeter.max_packet;
                let keep_seen = config.dedupe_window;
                let (s, loaded) = tokio::task::spawn_blocking(move || {
                    let loaded = crate::storage::load_for_start(&mut *s, max_packet, keep_seen);
                    (s, loaded)
                })
                .await
                .map_err(|_| crate::error::StorageError::Closed)?;
                let loaded = loaded?;
                store_rows_skipped = loaded.skipped;
                // Received ids are recorded before they are acknowledged.
                core.record_seen(loaded.seen);
                let now = now();
                let wall = SystemTime::now();
                let worker = StorageWorker::start(s, keep_seen);
                for stored in loaded.messages {
                    match stored.expires_at {
                        Some(at) if at <= wall => worker.delete(stored.message.id),
                        expires_at => {
                            let left =
                                expires_at.map(|at| at.duration_since(wall).unwrap_or_default());
                            let mut entry = Entry::new(stored.message, now);
                            entry.deadline = left.map(|l| later(now, l));
                            core.restore(stored.to, entry, now);
                        }
                    }
                }
                Some(worker)
            }
        };
        let mut packeter = Packeter::new(config.link.clone(), config.packeter.clone());
        let link = packeter.link().clone();
        let default_queue = SubscriptionQueue {
            shared: Arc::new(QueueShared::new(
                0,
                Subscription::all(),
                config.subscription_capacity,
            )),
        };
        let inner = Arc::new(Inner {
            me: identity,
            link,
            core: Mutex::new(core),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            progress: Notify::new(),
            flushing: AtomicUsize::new(0),
            dispatch: Mutex::new(Arc::new(Dispatch {
                queues: vec![default_queue.shared.clone()],
                ..Dispatch::default()
            })),
            storage,
            store_rows_skipped,
            next_id: AtomicU64::new(1),
            unhandled: AtomicU64::new(0),
            subscription_drops: AtomicU64::new(0),
            default_queue,
            pending: Mutex::new(HashMap::new()),
            topics: Mutex::new(Topics::new(&config)),
            resting: Mutex::new(HashMap::new()),
            config,
        });
        let task_inner = inner.clone();
        tokio::spawn(async move {
            run(task_inner, &mut packeter).await;
        });
        Ok(Messaging {
            _stop: Arc::new(StopOnDrop(inner.clone())),
            inner,
        })
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.inner.me
    }

    /// The link underneath: add listeners and connectors here.
    pub fn link(&self) -> &Link {
        &self.inner.link
    }

    /// The configuration.
    pub fn config(&self) -> &MessagingConfig {
        &self.inner.config
    }

    /// Puts `message` in `to`'s outgoing queue; it is written as soon as `to`
    /// is connected. A persistent message is stored first (this waits for
    /// the commit). Sending to our own identity delivers locally.
    ///
    /// Fails with [`Misuse::MessageTooLarge`] when the message could
    /// never be sent (its frame would exceed the packet limit), and with
    /// [`MessagingError::QueueFull`] when `to`'s queue is full
    /// under [`QueuePolicy::Error`](crate::config::QueuePolicy::Error).
    ///
    /// Cancel-safe up to the storage commit: if dropped while a persistent
    /// message is being stored, the message may be stored but not queued
    /// (it is queued on the next start).
    pub async fn send_message(
        &self,
        to: &Identity,
        message: Message,
    ) -> Result<(), MessagingError> {
        let persistent = message.is_persistent() && *to != self.inner.me;
        if persistent {
            // Never stored when it could never be sent.
            check_size(&self.inner.config, &message).map_err(|r| r.into_error(to))?;
            if let Some(storage) = &self.inner.storage {
                // A TTL too long for the clock stores no expiry.
                let expires_at = message.ttl.and_then(|t| SystemTime::now().checked_add(t));
                storage
                    .store(StoredMessage {
                        to: to.clone(),
                        message: message.clone(),
                        expires_at,
                    })
                    .await?;
            }
        }
        self.enqueue(to, message, persistent)
    }

    /// [`send_message`](Self::send_message) for a message that needs no
    /// storage (not persistent, or no storage configured): never waits.
    /// A persistent message while storage is configured fails with
    /// [`Misuse::PersistentTrySend`].
    pub fn try_send_message(&self, to: &Identity, message: Message) -> Result<(), MessagingError> {
        if self.must_store(to, &message) {
            return Err(Misuse::PersistentTrySend.into());
        }
        self.enqueue(to, message, false)
    }

    /// Whether `message` to `to` is stored before it is queued: only a
    /// `send_message` can wait for that.
    fn must_store(&self, to: &Identity, message: &Message) -> bool {
        message.is_persistent() && self.inner.storage.is_some() && *to != self.inner.me
    }

    /// [`try_send_message`](Self::try_send_message) of one message to
    /// each of `targets`, under one lock: each gets a copy with the same
    /// id, the data shared, not copied. A target that refuses its copy
    /// (a full queue, say) does not stop the others: the refusals come
    /// back in the order of `targets`, and none allocates when every copy
    /// is queued.
    ///
    /// ```no_run
    /// # async fn demo(messaging: weft_messaging::Messaging) {
    /// use weft_messaging::{Identity, Message};
    ///
    /// let to = [Identity::new("b").unwrap(), Identity::new("c").unwrap()];
    /// for (who, error) in messaging.try_send_each(&to, Message::new("hi")) {
    ///     eprintln!("{who}: {error}");
    /// }
    /// # }
    /// ```
    pub fn try_send_each(
        &self,
        targets: &[Identity],
        message: Message,
    ) -> Vec<(Identity, MessagingError)> {
        let mut refused = Vec::new();
        self.with_core(|core| {
            let now = send_time(core, &message);
            for to in targets {
                let result = if self.must_store(to, &message) {
                    Err(Misuse::PersistentTrySend.into())
                } else {
                    core.send_message(to, message.clone(), now)
                        .map_err(|r| r.into_error(to))
                };
                if let Err(e) = result {
                    refused.push((to.clone(), e));
                }
            }
        });
        refused
    }

    /// Queues a copy of `message` (same id, data shared) for each of
    /// `targets` under one lock: the publish path. The message is not
    /// stored. Stops at the first full queue.
    pub(crate) fn enqueue_each(
        &self,
        targets: &[Identity],
        message: Message,
    ) -> Result<(), MessagingError> {
        // Refused for every target, also when there is none.
        check_size(&self.inner.config, &message).map_err(|r| r.into_error(&self.inner.me))?;
        self.with_core(|core| {
            let now = send_time(core, &message);
            targets.iter().try_for_each(|to| {
                core.send_message(to, message.clone(), now)
                    .map_err(|r| r.into_error(to))
            })
        })
    }

    fn enqueue(&self, to: &Identity, message: Message, stored: bool) -> Result<(), MessagingError> {
        let id = message.id;
        let result = self.with_core(|core| {
            let now = send_time(core, &message);
            core.send_message(to, message, now)
        });
        match result {
            Ok(()) => Ok(()),
            Err(refused) => {
                if stored {
                    if let Some(s) = &self.inner.storage {
                        s.delete(id);
                    }
                }
                Err(refused.into_error(to))
            }
        }
    }

    /// A queue of the received messages that match `subscription`. Every
    /// matching queue gets its own copy.
    pub fn subscribe(&self, subscription: Subscription) -> SubscriptionQueue {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(QueueShared::new(
            id,
            subscription,
            self.inner.config.subscription_capacity,
        ));
        Arc::make_mut(&mut lock(&self.inner.dispatch))
            .queues
            .push(shared.clone());
        SubscriptionQueue { shared }
    }

    /// Removes a subscription queue; its `recv` then fails once drained.
    /// Id 0 is the default queue. Returns whether it existed.
    pub fn unsubscribe(&self, id: u64) -> bool {
        let mut guard = lock(&self.inner.dispatch);
        let d = Arc::make_mut(&mut guard);
        let before = d.queues.len();
        d.queues.retain(|q| {
            if q.id == id {
                q.close();
                false
            } else {
                true
            }
        });
        d.queues.len() != before
    }

    /// The next message from the default queue, waiting up to `timeout`;
    /// `None` waits with no limit, as [`SubscriptionQueue::recv`] says.
    /// The default queue takes every message until a handler or a
    /// subscription is installed, and none after
    /// ([`MessagingConfig::default_queue`] says otherwise). Cancel-safe.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<Received, MessagingError> {
        self.inner.default_queue.recv(timeout).await
    }

    /// The default queue (id 0): every message while no handler or
    /// subscription takes messages (see [`MessagingConfig::default_queue`]),
    /// until unsubscribed.
    pub fn default_queue(&self) -> SubscriptionQueue {
        self.inner.default_queue.clone()
    }

    fn handler_id(&self) -> HandlerId {
        HandlerId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A handle that does not keep this instance running: for handlers,
    /// which live inside the instance. A handler that captured a
    /// [`Messaging`] would keep it running after every other handle is
    /// dropped; one that captures a [`WeakMessaging`] and
    /// [upgrades](WeakMessaging::upgrade) it when called does not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weft_messaging::MessagingError> {
    /// use weft_messaging::{Identity, Message, Messaging};
    /// let echo = Messaging::new(Identity::new("echo")?, Default::default()).await?;
    /// let me = echo.downgrade();
    /// echo.on_message(move |r| {
    ///     if let Some(echo) = me.upgrade() {
    ///         let _ = echo.try_send_message(&r.from, Message::new(r.message.data.clone()));
    ///     }
    /// });
    /// drop(echo); // stops: the handler held no strong handle
    /// # Ok(()) }
    /// ```
    pub fn downgrade(&self) -> WeakMessaging {
        WeakMessaging {
            inner: Arc::downgrade(&self.inner),
            stop: Arc::downgrade(&self._stop),
        }
    }

    /// Calls `f` for every received message, on the messaging task: keep
    /// it short (hand work to another task). To use this instance from
    /// `f`, capture a [`downgrade`](Self::downgrade)d handle: a captured
    /// [`Messaging`] keeps the instance running for as long as the handler
    /// is installed.
    pub fn on_message(&self, f: impl Fn(&Received) + Send + Sync + 'static) -> HandlerId {
        let id = self.handler_id();
        Arc::make_mut(&mut lock(&self.inner.dispatch))
            .on_message
            .push((id, Arc::new(f)));
        id
    }

    /// Calls `f` when a peer has identified itself.
    pub fn on_connect(&self, f: impl Fn(&Identity) + Send + Sync + 'static) -> HandlerId {
        let id = self.handler_id();
        Arc::make_mut(&mut lock(&self.inner.dispatch))
            .on_connect
            .push((id, Arc::new(f)));
        id
    }

    /// Calls `f` when an identified peer's connection ends.
    pub fn on_disconnect(&self, f: impl Fn(&Identity) + Send + Sync + 'static) -> HandlerId {
        let id = self.handler_id();
        Arc::make_mut(&mut lock(&self.inner.dispatch))
            .on_disconnect
            .push((id, Arc::new(f)));
        id
    }

    /// Calls `f` when a peer breaks the protocol (its connection is closed).
    pub fn on_protocol_error(
        &self,
        f: impl Fn(Option<&Identity>, &ProtocolError) + Send + Sync + 'static,
    ) -> HandlerId {
        let id = self.handler_id();
        Arc::make_mut(&mut lock(&self.inner.dispatch))
            .on_error
            .push((id, Arc::new(f)));
        id
    }

    /// Calls `f` on the messaging task after each run of events it has
    /// handed to handlers and queues: the messages that arrived together
    /// (one read of the packets ready at once), or what one timer or
    /// wake-up brought. An [`on_message`](Self::on_message) handler can
    /// tell from it which messages came in one run, e.g. to handle a lone
    /// message at once and hand a burst to another task.
    pub fn on_batch_end(&self, f: impl Fn() + Send + Sync + 'static) -> HandlerId {
        let id = self.handler_id();
        Arc::make_mut(&mut lock(&self.inner.dispatch))
            .on_batch_end
            .push((id, Arc::new(f)));
        id
    }

    /// Removes a handler. Returns whether it existed.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        let mut guard = lock(&self.inner.dispatch);
        let d = Arc::make_mut(&mut guard);
        let count = |d: &Dispatch| {
            d.on_message.len()
                + d.on_connect.len()
                + d.on_disconnect.len()
                + d.on_error.len()
                + d.on_batch_end.len()
        };
        let before = count(d);
        d.on_message.retain(|(h, _)| *h != id);
        d.on_connect.retain(|(h, _)| *h != id);
        d.on_disconnect.retain(|(h, _)| *h != id);
        d.on_error.retain(|(h, _)| *h != id);
        d.on_batch_end.retain(|(h, _)| *h != id);
        before != count(d)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MessagingStats {
        let c = lock(&self.inner.core).counters;
        let (filters_refused, regexes_refused) = {
            let t = lock(&self.inner.topics);
            (t.filters_refused, t.regexes_refused)
        };
        MessagingStats {
            sent: c.sent,
            received: c.received,
            delivered: c.delivered,
            acked: c.acked,
            expired: c.expired,
            dropped: c.dropped,
            resent: c.resent,
            duplicates: c.duplicates,
            protocol_errors: c.protocol_errors,
            handshake_timeouts: c.handshake_timeouts,
            unidentified_evicted: c.unidentified_evicted,
            filters_refused: c.filters_refused.saturating_add(filters_refused),
            regexes_refused,
            identities_refused: c.identities_refused,
            identities_unbound: c.identities_unbound,
            all_queues_full: c.all_queues_full,
            queued_bytes: c.queued_bytes as u64,
            unhandled: self.inner.unhandled.load(Ordering::Relaxed),
            subscription_drops: self.inner.subscription_drops.load(Ordering::Relaxed),
            store_rows_skipped: self.inner.store_rows_skipped,
        }
    }

    /// Messages waiting for, or in flight to, `identity`.
    pub fn queue_depth(&self, identity: &Identity) -> usize {
        lock(&self.inner.core).queue_depth(identity)
    }

    /// Drops every message waiting for `identity` (one that is gone for
    /// good, say), removing persistent ones from storage; messages in
    /// flight on a live connection stay. They count as dropped. Returns how
    /// many were dropped.
    pub fn purge_queue(&self, identity: &Identity) -> usize {
        self.with_core(|core| core.purge(identity))
    }

    /// Runs `f` on the core, then wakes the I/O task if the core wants it
    /// (after the lock is released).
    fn with_core<R>(&self, f: impl FnOnce(&mut Core<PacketSender>) -> R) -> R {
        let (result, wake) = {
            let mut core = lock(&self.inner.core);
            let result = f(&mut core);
            (result, core.poll_wake())
        };
        if wake {
            self.inner.wake.notify_one();
        }
        result
    }

    /// Every identity with a queue, and its depth.
    pub fn queue_depths(&self) -> HashMap<Identity, usize> {
        lock(&self.inner.core).queue_depths().into_iter().collect()
    }

    /// The identities connected now.
    pub fn connected(&self) -> Vec<Identity> {
        lock(&self.inner.core).connected()
    }

    /// Whether `identity` is connected now.
    pub fn is_connected(&self, identity: &Identity) -> bool {
        lock(&self.inner.core).is_connected(identity)
    }

    /// Marks a connection of this messaging's link as a stand-in path, such
    /// as a relay: when its peer's identity arrives on another connection
    /// too, the other one is kept, whatever the
    /// [`duplicate_identity`](MessagingConfig::duplicate_identity) policy,
    /// and a stand-in never displaces a live connection. Both peers mark
    /// the same connection, so both keep the same one; what was in flight
    /// on the one let go is resent on the one kept (and deduplicated), so
    /// switching paths loses and duplicates nothing. Mark a connection
    /// before its peer can identify on it, for example right after
    /// [`Link::adopt`](weft_link::Link::adopt).
    pub fn mark_standby(&self, connection: weft_link::ConnectionId) {
        lock(&self.inner.core).mark_standby(connection);
    }

    /// Closes the connection of `identity` (frames already queued on it
    /// still go out); its messages wait for the next connection, and a
    /// connector reconnects as usual. For a layer above that finds the
    /// peer unfit (it failed to prove something). Returns whether it was
    /// connected.
    pub fn disconnect(&self, identity: &Identity) -> bool {
        let tx = lock(&self.inner.core).transmit_of(identity);
        tx.map(|tx| tx.close()).is_some()
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, HashMap<MessageId, oneshot::Sender<Received>>> {
        lock(&self.inner.pending)
    }

    /// The pub/sub bookkeeping; release it before calling into the core.
    pub(crate) fn topics(&self) -> MutexGuard<'_, Topics> {
        lock(&self.inner.topics)
    }

    /// Sends an extension frame to every connected weft peer.
    pub(crate) fn tell_peers(&self, frame: &Frame) {
        let mut core = lock(&self.inner.core);
        for ident in core.connected() {
            core.send_extension(&ident, frame);
        }
    }

    /// Waits until every queue is empty and everything sent was delivered,
    /// up to `timeout`. Returns whether that happened. Cancel-safe.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::from_std(later(now(), timeout));
        // Counted before the core is first read: a delivery made after
        // that read signals this call (see `io_task`).
        let _waiting = Flushing::new(&self.inner.flushing);
        loop {
            let notified = self.inner.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.inner.core).is_idle() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return lock(&self.inner.core).is_idle();
            }
        }
    }

    /// Closes every connection gracefully and stops. Queued messages stay
    /// queued (and persistent ones stored).
    ///
    /// Cancel-safe: the first poll starts closing everything; dropping the
    /// future then only stops waiting for the connections to end, which
    /// they go on doing.
    pub async fn close(&self) {
        self.inner.link.close().await;
    }
}

/// Counts a `flush` call as waiting until dropped (also when cancelled).
struct Flushing<'a>(&'a AtomicUsize);

impl<'a> Flushing<'a> {
    fn new(count: &'a AtomicUsize) -> Flushing<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Flushing(count)
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The time to queue `message` at: read from the clock only when the
/// core needs it (see [`Core::reusable_now`]).
fn send_time(core: &Core<PacketSender>, message: &Message) -> std::time::Instant {
    match core.reusable_now(message) {
        Some(now) => now,
        None => now(),
    }
}

/// The runtime's clock as the core's time. The core takes `std` instants;
/// reading tokio's clock keeps it on the paused clock in tests.
#[inline]
fn now() -> std::time::Instant {
    Instant::now().into_std()
}
