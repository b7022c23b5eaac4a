//! The tokio shell around the core: one task reads packets and runs the
//! timers; senders call into the core directly under a short lock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_link::{ConnectionId, Link};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerError};

use crate::core::{Core, CoreEvent, Entry, Transmit, TxError};
use crate::frame::Frame;
use crate::patterns::{Interest, TargetCache, split_publication, split_reply};
use crate::storage::worker::StorageWorker;
use crate::storage::{Storage, StoredMessage};
use crate::subscription::{Deliveries, QueueMatches, QueueShared};
use crate::timer::LazyTimer;
use crate::{
    Identity, Kind, Message, MessageId, MessagingConfig, MessagingError, ProtocolError, Received,
    Subscription, SubscriptionQueue, TopicFilter,
};
use tokio::sync::oneshot;

/// Stops the I/O task when the last [`Messaging`] handle is dropped.
struct StopOnDrop(tokio::sync::watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

impl Transmit for PacketSender {
    fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError> {
        match self.try_send_parts(head, body) {
            Ok(()) => Ok(()),
            Err(PacketerError::Link(weft_link::LinkError::QueueFull)) => Err(TxError::Full),
            Err(_) => Err(TxError::Closed),
        }
    }

    fn close(&self) {
        PacketSender::close(self);
    }

    fn bytes_accepted(&self) -> u64 {
        self.connection().bytes_accepted()
    }

    fn bytes_written(&self) -> u64 {
        self.connection().bytes_written()
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
    /// Received messages that matched no subscription and no handler.
    pub unhandled: u64,
    /// Copies dropped by full subscription queues.
    pub subscription_drops: u64,
}

/// Identifies a registered handler, for [`Messaging::remove_handler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

type MessageHandler = Arc<dyn Fn(&Received) + Send + Sync>;
type PeerHandler = Arc<dyn Fn(&Identity) + Send + Sync>;
type ErrorHandler = Arc<dyn Fn(Option<&Identity>, &ProtocolError) + Send + Sync>;

#[derive(Default, Clone)]
struct Dispatch {
    queues: Vec<Arc<QueueShared>>,
    on_message: Vec<(HandlerId, MessageHandler)>,
    on_connect: Vec<(HandlerId, PeerHandler)>,
    on_disconnect: Vec<(HandlerId, PeerHandler)>,
    on_error: Vec<(HandlerId, ErrorHandler)>,
}

struct Inner {
    me: Identity,
    config: MessagingConfig,
    link: Link,
    core: Mutex<Core<PacketSender>>,
    /// Wakes the I/O task: events to dispatch, connections to wait for,
    /// timers that moved.
    wake: Notify,
    /// Signalled whenever deliveries happen (for `flush`).
    progress: Notify,
    /// Handlers and queues; copied on write, so a dispatch takes a cheap
    /// snapshot.
    dispatch: Mutex<Arc<Dispatch>>,
    storage: Option<StorageWorker>,
    next_id: AtomicU64,
    unhandled: AtomicU64,
    subscription_drops: AtomicU64,
    default_queue: SubscriptionQueue,
    /// Requests waiting for their reply.
    pending: Mutex<HashMap<MessageId, oneshot::Sender<Received>>>,
    /// Our topic subscriptions (queue id, filter).
    topics: Mutex<Vec<(u64, TopicFilter)>>,
    /// Connected weft peers' topic subscriptions.
    interest: Mutex<HashMap<Identity, Vec<Interest>>>,
    /// Publication targets per topic, from `interest` and `topics`.
    targets: Mutex<TargetCache>,
}

impl Inner {
    /// Changes the peers' topic interest; publication targets are then
    /// worked out again (see [`TargetCache`]).
    fn change_interest<R>(&self, f: impl FnOnce(&mut HashMap<Identity, Vec<Interest>>) -> R) -> R {
        let result = f(&mut lock(&self.interest));
        lock(&self.targets).clear();
        result
    }

    /// Changes our own topic subscriptions; publication targets are then
    /// worked out again (see [`TargetCache`]).
    fn change_topics<R>(&self, f: impl FnOnce(&mut Vec<(u64, TopicFilter)>) -> R) -> R {
        let result = f(&mut lock(&self.topics));
        lock(&self.targets).clear();
        result
    }
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

impl fmt::Debug for Messaging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messaging")
            .field("identity", &self.inner.me)
            .finish()
    }
}

impl Messaging {
    /// Starts messaging as `identity`, with messages in memory only.
    pub async fn new(
        identity: Identity,
        config: MessagingConfig,
    ) -> Result<Messaging, MessagingError> {
        Messaging::start(identity, config, None).await
    }

    /// Starts messaging as `identity` with persistent storage: messages
    /// stored by an earlier run are loaded and queued again (those whose TTL
    /// ran out meanwhile are dropped from storage).
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
        let mut core = Core::new(identity.clone(), config.clone());
        let storage = match storage {
            None => None,
            Some(mut s) => {
                let (s, loaded) = tokio::task::spawn_blocking(move || {
                    let loaded = s.load();
                    (s, loaded)
                })
                .await
                .map_err(|_| crate::StorageError::Closed)?;
                let loaded = loaded?;
                let now = Instant::now();
                let wall = SystemTime::now();
                let worker = StorageWorker::start(s);
                for stored in loaded {
                    match stored.expires_at {
                        Some(at) if at <= wall => worker.delete(stored.message.id),
                        expires_at => {
                            let left =
                                expires_at.map(|at| at.duration_since(wall).unwrap_or_default());
                            let mut entry = Entry::new(stored.message, now);
                            entry.deadline = left.map(|l| now + l);
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
            progress: Notify::new(),
            dispatch: Mutex::new(Arc::new(Dispatch {
                queues: vec![default_queue.shared.clone()],
                ..Dispatch::default()
            })),
            storage,
            next_id: AtomicU64::new(1),
            unhandled: AtomicU64::new(0),
            subscription_drops: AtomicU64::new(0),
            default_queue,
            pending: Mutex::new(HashMap::new()),
            topics: Mutex::new(Vec::new()),
            interest: Mutex::new(HashMap::new()),
            targets: Mutex::new(TargetCache::default()),
            config,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task_inner = inner.clone();
        tokio::spawn(async move {
            run(task_inner, &mut packeter, stop_rx).await;
        });
        Ok(Messaging {
            inner,
            _stop: Arc::new(StopOnDrop(stop_tx)),
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
    /// Fails with [`MessagingError::QueueFull`] when `to`'s queue is full
    /// under [`QueuePolicy::Error`](crate::QueuePolicy::Error).
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
            if let Some(storage) = &self.inner.storage {
                let expires_at = message.ttl.map(|t| SystemTime::now() + t);
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
    pub fn try_send_message(&self, to: &Identity, message: Message) -> Result<(), MessagingError> {
        if message.is_persistent() && self.inner.storage.is_some() && *to != self.inner.me {
            return Err(MessagingError::Storage(crate::StorageError::Failed(
                "a persistent message must go through send_message".into(),
            )));
        }
        self.enqueue(to, message, false)
    }

    /// Queues a copy of `message` (same id, data shared) for each of
    /// `targets` under one lock: the publish path. The message is not
    /// stored. Stops at the first full queue.
    pub(crate) fn enqueue_each(
        &self,
        targets: &[Identity],
        message: Message,
    ) -> Result<(), MessagingError> {
        self.with_core(|core| {
            let now = send_time(core, &message);
            targets.iter().try_for_each(|to| {
                core.send_message(to, message.clone(), now)
                    .map_err(|_| MessagingError::QueueFull(to.clone()))
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
            Err(_) => {
                if stored {
                    if let Some(s) = &self.inner.storage {
                        s.delete(id);
                    }
                }
                Err(MessagingError::QueueFull(to.clone()))
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

    /// The next message from the default queue (every message, SUB_ALL),
    /// waiting up to `timeout`. Cancel-safe.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<Received, MessagingError> {
        self.inner.default_queue.recv(timeout).await
    }

    /// The default queue (id 0) that receives every message until
    /// unsubscribed.
    pub fn default_queue(&self) -> SubscriptionQueue {
        self.inner.default_queue.clone()
    }

    fn handler_id(&self) -> HandlerId {
        HandlerId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Calls `f` for every received message, on the messaging task: keep
    /// it short (hand work to another task).
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

    /// Removes a handler. Returns whether it existed.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        let mut guard = lock(&self.inner.dispatch);
        let d = Arc::make_mut(&mut guard);
        let before =
            d.on_message.len() + d.on_connect.len() + d.on_disconnect.len() + d.on_error.len();
        d.on_message.retain(|(h, _)| *h != id);
        d.on_connect.retain(|(h, _)| *h != id);
        d.on_disconnect.retain(|(h, _)| *h != id);
        d.on_error.retain(|(h, _)| *h != id);
        before != d.on_message.len() + d.on_connect.len() + d.on_disconnect.len() + d.on_error.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MessagingStats {
        let c = lock(&self.inner.core).counters;
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
            unhandled: self.inner.unhandled.load(Ordering::Relaxed),
            subscription_drops: self.inner.subscription_drops.load(Ordering::Relaxed),
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
            (result, core.wants_attention())
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
        lock(&self.inner.core).transmit_of(identity).is_some()
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, HashMap<MessageId, oneshot::Sender<Received>>> {
        lock(&self.inner.pending)
    }

    pub(crate) fn local_topics(&self) -> MutexGuard<'_, Vec<(u64, TopicFilter)>> {
        lock(&self.inner.topics)
    }

    pub(crate) fn interest(&self) -> MutexGuard<'_, HashMap<Identity, Vec<Interest>>> {
        lock(&self.inner.interest)
    }

    pub(crate) fn target_cache(&self) -> MutexGuard<'_, TargetCache> {
        lock(&self.inner.targets)
    }

    /// Changes our own topic subscriptions (see `Inner::change_topics`).
    pub(crate) fn change_local_topics<R>(
        &self,
        f: impl FnOnce(&mut Vec<(u64, TopicFilter)>) -> R,
    ) -> R {
        self.inner.change_topics(f)
    }

    /// Sends an extension frame to every connected weft peer.
    pub(crate) fn tell_peers(&self, frame: &Frame) {
        let core = lock(&self.inner.core);
        for ident in core.connected() {
            core.send_extension(&ident, frame);
        }
    }

    /// Waits until every queue is empty and everything sent was delivered,
    /// up to `timeout`. Returns whether that happened. Cancel-safe.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
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
    pub async fn close(&self) {
        self.inner.link.close().await;
    }
}

/// The time to queue `message` at: read from the clock only when a TTL
/// needs it (see [`Core::needs_clock`]).
fn send_time(core: &Core<PacketSender>, message: &Message) -> Instant {
    if core.needs_clock(message) {
        Instant::now()
    } else {
        core.last_now()
    }
}

/// The I/O task: packets in, timers, waits for blocked connections.
async fn run(
    inner: Arc<Inner>,
    packeter: &mut Packeter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut ready_waits: JoinSet<ConnectionId> = JoinSet::new();
    let mut events = VecDeque::new();
    let mut deliveries = Deliveries::default();
    let mut matches = QueueMatches::default();
    let mut timer = LazyTimer::new();
    loop {
        timer.arm(lock(&inner.core).poll_timeout());
        // More packets were ready than one batch takes.
        let mut more = false;
        tokio::select! {
            n = packeter.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                more = n == MAX_BATCH;
                let now = Instant::now();
                let mut core = lock(&inner.core);
                for event in batch.drain(..) {
                    match event {
                        PacketEvent::Connected(sender) => core.on_connected(sender.id(), sender, now),
                        PacketEvent::Packet { connection, data } => core.on_packet(connection, data, now),
                        PacketEvent::Disconnected { connection, .. } => core.on_disconnected(connection),
                        _ => {}
                    }
                }
                core.end_batch();
            }
            _ = timer.fired() => {
                lock(&inner.core).on_timeout(Instant::now());
            }
            _ = inner.wake.notified() => {}
            Some(Ok(conn)) = ready_waits.join_next(), if !ready_waits.is_empty() => {
                lock(&inner.core).on_ready(conn, Instant::now());
            }
            _ = stop.changed() => break,
        }
        {
            let mut core = lock(&inner.core);
            for (conn, tx) in core.take_blocked() {
                ready_waits.spawn(async move {
                    let _ = tx.ready().await;
                    conn
                });
            }
            core.take_events(&mut events);
            if core.take_progress() {
                inner.progress.notify_waiters();
            }
        }
        if !events.is_empty() {
            dispatch(&inner, &mut events, &mut deliveries, &mut matches);
            // Drained: start the ring over at its first slots.
            events.clear();
        }
        if more {
            // Let the receivers take this batch while it is in the cache,
            // before the next one: queues stay short, and memory with them.
            yield_once().await;
        }
    }
    inner.link.close().await;
}

/// Packets the I/O task takes in one go, at most.
const MAX_BATCH: usize = 1024;

/// Goes to the back of the runtime's queue of ready tasks once, with no
/// trip through the driver (unlike `tokio::task::yield_now`, which waits
/// for the next driver poll).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Hands core events to queues, handlers and storage. Messages reach
/// their queues in runs (one lock and one wake-up per queue and run), each
/// run handed over before the next event that is not a message, so queues
/// and handlers see events in the order they happened.
fn dispatch(
    inner: &Inner,
    events: &mut VecDeque<CoreEvent>,
    deliveries: &mut Deliveries,
    matches: &mut QueueMatches,
) {
    // A snapshot: handlers may subscribe or add handlers without deadlock.
    let d = Arc::clone(&lock(&inner.dispatch));
    matches.reset(&d.queues);
    let mut last_topic = None;
    let deliver = |deliveries: &mut Deliveries| {
        let dropped = deliveries.deliver();
        if dropped > 0 {
            inner
                .subscription_drops
                .fetch_add(dropped, Ordering::Relaxed);
        }
    };
    for event in events.drain(..) {
        if !matches!(event, CoreEvent::Message { .. }) {
            deliver(deliveries);
        }
        match event {
            CoreEvent::Message { from, mut message } => {
                let mut topic = None;
                let kind = message.flags.kind();
                match kind {
                    Kind::Reply => {
                        let waiting = split_reply(&mut message.data)
                            .and_then(|id| lock(&inner.pending).remove(&id));
                        match waiting {
                            Some(tx) => {
                                let _ = tx.send(Received {
                                    from,
                                    message,
                                    topic: None,
                                });
                            }
                            None => {
                                inner.unhandled.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        continue;
                    }
                    Kind::Publish => match split_publication(&mut message.data, &mut last_topic) {
                        Some(t) => topic = Some(t),
                        None => {
                            inner.unhandled.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    },
                    _ => {}
                }
                let received = Received {
                    from,
                    message,
                    topic,
                };
                // Every matching queue gets a copy; the last one (when no
                // handler needs it after) gets the message itself.
                let mut matched: Option<&Arc<QueueShared>> = None;
                for &i in matches.find(&d.queues, &received, kind) {
                    if let Some(before) = matched.replace(&d.queues[i]) {
                        deliveries.add(before, received.clone());
                    }
                }
                if d.on_message.is_empty() {
                    match matched {
                        Some(q) => deliveries.add(q, received),
                        None => {
                            inner.unhandled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else {
                    if let Some(q) = matched {
                        deliveries.add(q, received.clone());
                    }
                    for (_, h) in &d.on_message {
                        h(&received);
                    }
                }
            }
            CoreEvent::Connected { ident } => {
                // Our topic interest travels to every weft peer that connects.
                let filters: Vec<_> = lock(&inner.topics).iter().map(|(_, f)| f.wire()).collect();
                if !filters.is_empty() {
                    let core = lock(&inner.core);
                    for (kind, text) in filters {
                        core.send_extension(&ident, &Frame::Subscribe(kind, text));
                    }
                }
                for (_, h) in &d.on_connect {
                    h(&ident);
                }
            }
            CoreEvent::Disconnected { ident } => {
                inner.change_interest(|interest| interest.remove(&ident));
                for (_, h) in &d.on_disconnect {
                    h(&ident);
                }
            }
            CoreEvent::Settled { id } => {
                if let Some(s) = &inner.storage {
                    s.delete(id);
                }
            }
            CoreEvent::ProtocolError { ident, error } => {
                for (_, h) in &d.on_error {
                    h(ident.as_ref(), &error);
                }
            }
            CoreEvent::Subscribe { from, kind, filter } => inner.change_interest(|interest| {
                let filters = interest.entry(from).or_default();
                if !filters.iter().any(|f| f.same(kind, &filter)) {
                    if let Some(f) = Interest::new(kind, filter) {
                        filters.push(f);
                    }
                }
            }),
            CoreEvent::Unsubscribe { from, kind, filter } => inner.change_interest(|interest| {
                if let Some(filters) = interest.get_mut(&from) {
                    filters.retain(|f| !f.same(kind, &filter));
                }
            }),
        }
    }
    deliver(deliveries);
}
