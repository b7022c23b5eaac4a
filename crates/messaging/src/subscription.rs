//! Subscription queues, P2PD's model: a filter over the data and the
//! sender, and a bounded queue of the messages that matched.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::bytes::Regex;
use tokio::sync::Notify;

use crate::{Identity, Kind, Message, MessagingError};

/// A received message and who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's identity.
    pub from: Identity,
    /// The message; its `ttl` is what was left of it when it was written.
    /// For a publication, `data` is the payload without the topic.
    pub message: Message,
    /// A publication's topic.
    pub topic: Option<Arc<str>>,
}

impl Received {
    /// The pattern the message belongs to.
    pub fn kind(&self) -> Kind {
        self.message.flags.kind()
    }
}

/// Which messages a queue gets: those whose data the pattern matches
/// (anywhere, unless anchored), and if given only from one identity, of
/// one [`Kind`], or (publications) on a matching topic.
/// [`Subscription::all`] (P2PD's SUB_ALL) matches every message.
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    /// A regular expression over the message data; `None` matches all.
    pub pattern: Option<Regex>,
    /// Only messages from this identity; `None` for any sender.
    pub from: Option<Identity>,
    /// Only messages of this kind; `None` for any.
    pub kind: Option<Kind>,
    /// Only publications whose topic this filter matches.
    pub topic: Option<TopicFilter>,
}

/// Which topics a subscriber wants.
#[derive(Clone, Debug)]
pub enum TopicFilter {
    /// Topics starting with this prefix (`""` for all).
    Prefix(String),
    /// Topics this regular expression matches.
    Regex(regex::Regex),
}

impl TopicFilter {
    /// Whether `topic` passes.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::Prefix(p) => topic.starts_with(p.as_str()),
            TopicFilter::Regex(r) => r.is_match(topic),
        }
    }

    pub(crate) fn wire(&self) -> (crate::frame::FilterKind, String) {
        match self {
            TopicFilter::Prefix(p) => (crate::frame::FilterKind::Prefix, p.clone()),
            TopicFilter::Regex(r) => (crate::frame::FilterKind::Regex, r.as_str().to_owned()),
        }
    }
}

impl Subscription {
    /// Everything (SUB_ALL).
    pub fn all() -> Subscription {
        Subscription::default()
    }

    /// Messages whose data `pattern` matches.
    pub fn matching(pattern: Regex) -> Subscription {
        Subscription {
            pattern: Some(pattern),
            ..Subscription::default()
        }
    }

    /// Only messages of `kind`.
    pub fn of_kind(mut self, kind: Kind) -> Subscription {
        self.kind = Some(kind);
        self
    }

    /// Only messages from `from`.
    pub fn from(mut self, from: Identity) -> Subscription {
        self.from = Some(from);
        self
    }

    /// Whether a message matches.
    pub fn matches(&self, received: &Received) -> bool {
        self.matches_of_kind(received, received.kind())
    }

    /// [`matches`](Self::matches) for a message of `kind` (known by the
    /// caller, so not worked out again for every queue).
    pub(crate) fn matches_of_kind(&self, received: &Received, kind: Kind) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.from.as_ref().is_none_or(|f| *f == received.from)
            && self.topic.as_ref().is_none_or(|t| {
                received
                    .topic
                    .as_deref()
                    .is_some_and(|topic| t.matches(topic))
            })
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&received.message.data))
    }
}

pub(crate) struct QueueShared {
    pub(crate) id: u64,
    pub(crate) subscription: Subscription,
    capacity: usize,
    items: Mutex<VecDeque<Received>>,
    notify: Notify,
    dropped: AtomicU64,
    closed: AtomicBool,
}

impl QueueShared {
    pub(crate) fn new(id: u64, subscription: Subscription, capacity: usize) -> QueueShared {
        QueueShared {
            id,
            subscription,
            capacity: capacity.max(1),
            items: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Received>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `items` in order under one lock, with one wake-up; when
    /// full, the oldest are dropped and counted. Returns how many were
    /// dropped. `items` is left empty (possibly holding the queue's old
    /// buffer, for reuse).
    pub(crate) fn push_all(&self, items: &mut VecDeque<Received>) -> u64 {
        let dropped = {
            let mut queue = self.lock();
            if queue.is_empty() && items.len() <= self.capacity {
                // The receivers kept up: the batch becomes the queue, with
                // nothing moved one by one.
                std::mem::swap(&mut *queue, items);
                0
            } else {
                // The oldest of the queue, then of the batch, make room.
                let over = (queue.len() + items.len()).saturating_sub(self.capacity);
                let from_queue = over.min(queue.len());
                queue.drain(..from_queue);
                items.drain(..over - from_queue);
                queue.append(items);
                over as u64
            }
        };
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.notify.notify_one();
        dropped
    }

    /// The oldest message, and whether more wait after it.
    fn pop(&self) -> (Option<Received>, bool) {
        let mut queue = self.lock();
        let r = queue.pop_front();
        (r, !queue.is_empty())
    }

    /// Moves up to `max` of the oldest messages into `out` under one lock:
    /// how many, and whether more wait after them.
    fn pop_many(&self, out: &mut impl Extend<Received>, max: usize) -> (usize, bool) {
        let mut queue = self.lock();
        let n = max.min(queue.len());
        out.extend(queue.drain(..n));
        (n, !queue.is_empty())
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// A bounded queue of the messages that matched a [`Subscription`]. When
/// full, the oldest message is dropped and counted in
/// [`dropped`](Self::dropped). Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct SubscriptionQueue {
    pub(crate) shared: Arc<QueueShared>,
}

impl std::fmt::Debug for SubscriptionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionQueue")
            .field("id", &self.shared.id)
            .field("len", &self.len())
            .finish()
    }
}

impl SubscriptionQueue {
    /// The queue's id, for [`Messaging::unsubscribe`](crate::Messaging::unsubscribe).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The next message, oldest first, waiting for one if none is there.
    ///
    /// `timeout` bounds the wait: `Some(t)` fails with
    /// [`MessagingError::Timeout`]`(t)` when nothing came within `t`
    /// (`Some(Duration::ZERO)` only takes what is already there). `None`
    /// waits with no limit at all (no default timeout applies): until a
    /// message arrives, or until the queue is closed by
    /// [`unsubscribe`](crate::Messaging::unsubscribe) or
    /// [`unsubscribe_topic`](crate::Messaging::unsubscribe_topic) and
    /// drained, which fails with [`MessagingError::Closed`]. Stopping
    /// messaging ([`close`](crate::Messaging::close), dropping the last
    /// handle) does not close the queue: a receiver that must notice that
    /// passes a timeout.
    ///
    /// Cancel-safe: a message is taken from the queue only when the future
    /// completes with it.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<Received, MessagingError> {
        let wait = async {
            loop {
                let notified = self.shared.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let (Some(r), more) = self.shared.pop() {
                    if more {
                        // A batch came with one wake-up: pass it on to
                        // the next receiver of a shared queue.
                        self.shared.notify.notify_one();
                    }
                    return Ok(r);
                }
                if self.shared.closed.load(Ordering::Acquire) {
                    return Err(MessagingError::Closed);
                }
                notified.await;
            }
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| MessagingError::Timeout(t))?,
        }
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Option<Received> {
        self.shared.pop().0
    }

    /// Moves up to `max` waiting messages, oldest first, into `out`, under
    /// one lock of the queue (where [`try_recv`](Self::try_recv) takes one
    /// per message); returns how many. Does not wait.
    ///
    /// ```
    /// # use weft_messaging::{Messaging, MessagingConfig, Identity, Message};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let me = Messaging::new(Identity::new("me")?, MessagingConfig::default()).await?;
    /// for n in 0..3u8 {
    ///     me.send_message(&Identity::new("me")?, Message::new(vec![n])).await?;
    /// }
    /// let queue = me.default_queue();
    /// let mut got = Vec::new();
    /// while got.len() < 3 {
    ///     queue.recv_many(&mut got, 64, Some(std::time::Duration::from_secs(5))).await?;
    /// }
    /// assert_eq!(queue.try_recv_many(&mut got, 64), 0);
    /// let data: Vec<u8> = got.iter().map(|r| r.message.data[0]).collect();
    /// assert_eq!(data, [0, 1, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_recv_many(&self, out: &mut impl Extend<Received>, max: usize) -> usize {
        self.shared.pop_many(out, max).0
    }

    /// Waits until a message is waiting, then moves up to `max` (at least
    /// one, unless `max` is 0) into `out`, oldest first, as
    /// [`try_recv_many`](Self::try_recv_many) does; returns how many.
    /// `timeout` means what it means for [`recv`](Self::recv) (`None`: no
    /// limit, until a message or the queue's close), and the call fails as
    /// `recv` does. Cancel-safe: nothing is taken unless the call returns
    /// it.
    pub async fn recv_many(
        &self,
        out: &mut impl Extend<Received>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, MessagingError> {
        if max == 0 {
            return Ok(0);
        }
        let wait = async {
            loop {
                let notified = self.shared.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (n, more) = self.shared.pop_many(out, max);
                if n > 0 {
                    if more {
                        // Pass the wake-up on to the next receiver.
                        self.shared.notify.notify_one();
                    }
                    return Ok(n);
                }
                if self.shared.closed.load(Ordering::Acquire) {
                    return Err(MessagingError::Closed);
                }
                notified.await;
            }
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| MessagingError::Timeout(t))?,
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Which of a dispatch's queues each message goes to, worked out once per
/// run of messages from one sender, of one kind, on one topic (a run of
/// publications, say), unless a queue that takes that kind looks at the
/// data.
#[derive(Default)]
pub(crate) struct QueueMatches {
    /// Kinds some queue matches by data (bit `kind as u8`): never cached.
    by_data: u8,
    /// What `hits` was worked out for. The handles keep the names alive,
    /// so that a pointer match is never a stale one.
    key: Option<(Kind, Identity, Option<Arc<str>>)>,
    /// Indexes into the queues.
    hits: Vec<usize>,
}

impl QueueMatches {
    /// Starts over for a dispatch over `queues`.
    pub(crate) fn reset(&mut self, queues: &[Arc<QueueShared>]) {
        self.key = None;
        self.by_data = 0;
        for q in queues {
            let s = &q.subscription;
            if s.pattern.is_some() {
                self.by_data |= s.kind.map_or(u8::MAX, |k| 1 << k as u8);
            }
        }
    }

    /// The indexes of the queues in `queues` (the ones given to the last
    /// [`reset`](Self::reset)) that `received`, of `kind`, matches.
    pub(crate) fn find(
        &mut self,
        queues: &[Arc<QueueShared>],
        received: &Received,
        kind: Kind,
    ) -> &[usize] {
        let cacheable = self.by_data & (1 << kind as u8) == 0;
        let same = cacheable
            && self.key.as_ref().is_some_and(|(k, from, topic)| {
                *k == kind
                    && from.same_handle(&received.from)
                    && match (topic, &received.topic) {
                        (None, None) => true,
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    }
            });
        if !same {
            self.hits.clear();
            for (i, q) in queues.iter().enumerate() {
                if q.subscription.matches_of_kind(received, kind) {
                    self.hits.push(i);
                }
            }
            self.key = cacheable.then(|| (kind, received.from.clone(), received.topic.clone()));
        }
        &self.hits
    }
}

/// Emptied buffers [`Deliveries`] keeps for the next dispatch.
const SPARE_BUFFERS: usize = 8;

/// The copies for subscription queues gathered over one dispatch, handed
/// to each queue with one lock and one wake-up.
#[derive(Default)]
pub(crate) struct Deliveries {
    by_queue: Vec<(Arc<QueueShared>, VecDeque<Received>)>,
    /// Emptied buffers, kept for the next dispatch.
    spare: Vec<VecDeque<Received>>,
}

impl Deliveries {
    /// Adds `r` for `queue`, behind what it was given before.
    pub(crate) fn add(&mut self, queue: &Arc<QueueShared>, r: Received) {
        // Newest first: most runs go to the queue of the message before.
        match self
            .by_queue
            .iter_mut()
            .rev()
            .find(|(q, _)| Arc::ptr_eq(q, queue))
        {
            Some((_, items)) => items.push_back(r),
            None => {
                let mut items = self.spare.pop().unwrap_or_default();
                items.push_back(r);
                self.by_queue.push((queue.clone(), items));
            }
        }
    }

    /// Hands everything to the queues; returns how many older messages
    /// they dropped for it.
    pub(crate) fn deliver(&mut self) -> u64 {
        let mut dropped = 0;
        for (queue, mut items) in self.by_queue.drain(..) {
            dropped += queue.push_all(&mut items);
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(items);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(n: u8) -> Received {
        Received {
            from: Identity::new("peer").unwrap(),
            message: Message::new(vec![n]),
            topic: None,
        }
    }

    fn queue(capacity: usize) -> SubscriptionQueue {
        SubscriptionQueue {
            shared: Arc::new(QueueShared::new(1, Subscription::all(), capacity)),
        }
    }

    fn data(r: Option<Received>) -> Option<u8> {
        r.map(|r| r.message.data[0])
    }

    #[test]
    fn runs_keep_their_order_per_queue_and_a_full_queue_drops_its_oldest() {
        let (a, b) = (queue(3), queue(10));
        let mut deliveries = Deliveries::default();
        for n in 0..5 {
            deliveries.add(&a.shared, received(n));
            deliveries.add(&b.shared, received(10 + n));
        }
        assert!(
            a.try_recv().is_none(),
            "nothing before the run is handed over"
        );
        assert_eq!(deliveries.deliver(), 2, "a holds 3: its 2 oldest dropped");
        assert_eq!(a.dropped(), 2);
        let got: Vec<_> = std::iter::from_fn(|| data(a.try_recv())).collect();
        assert_eq!(got, [2, 3, 4]);
        let got: Vec<_> = std::iter::from_fn(|| data(b.try_recv())).collect();
        assert_eq!(got, [10, 11, 12, 13, 14]);
        assert_eq!(deliveries.deliver(), 0, "nothing left to hand over");
    }

    #[tokio::test]
    async fn many_at_once_in_order_and_no_more_than_asked() {
        let q = queue(10);
        let mut deliveries = Deliveries::default();
        for n in 0..5 {
            deliveries.add(&q.shared, received(n));
        }
        deliveries.deliver();
        let mut got = Vec::new();
        assert_eq!(q.try_recv_many(&mut got, 2), 2);
        assert_eq!(q.len(), 3, "the rest wait");
        let waited = q
            .recv_many(&mut got, 10, Some(Duration::from_secs(5)))
            .await;
        assert_eq!(waited.unwrap(), 3);
        let data: Vec<u8> = got.iter().map(|r| r.message.data[0]).collect();
        assert_eq!(data, [0, 1, 2, 3, 4]);
        assert_eq!(q.try_recv_many(&mut got, 10), 0);
        assert_eq!(q.recv_many(&mut got, 0, None).await.unwrap(), 0);
        q.shared.close();
        assert!(matches!(
            q.recv_many(&mut got, 10, None).await,
            Err(MessagingError::Closed)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_many_times_out_with_nothing_taken() {
        let q = queue(10);
        let mut got = Vec::new();
        let r = q
            .recv_many(&mut got, 10, Some(Duration::from_secs(1)))
            .await;
        assert!(matches!(r, Err(MessagingError::Timeout(_))));
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_run_handed_over_with_one_wake_up_reaches_every_waiting_receiver() {
        let q = queue(10);
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.recv(None).await })
            })
            .collect();
        // On this current-thread runtime, one yield lets both park.
        tokio::task::yield_now().await;
        let mut deliveries = Deliveries::default();
        deliveries.add(&q.shared, received(1));
        deliveries.add(&q.shared, received(2));
        deliveries.deliver();
        let mut got = Vec::new();
        for w in waiting {
            let r = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("every receiver woke")
                .unwrap()
                .unwrap();
            got.push(r.message.data[0]);
        }
        got.sort();
        assert_eq!(got, [1, 2]);
    }
}
