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
        self.from.as_ref().is_none_or(|f| *f == received.from)
            && self.kind.is_none_or(|k| k == received.kind())
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

    /// Adds a copy; when full the oldest is dropped and counted. Returns
    /// whether something was dropped.
    pub(crate) fn push(&self, r: Received) -> bool {
        let dropped = {
            let mut items = self.lock();
            let dropped = if items.len() >= self.capacity {
                items.pop_front();
                true
            } else {
                false
            };
            items.push_back(r);
            dropped
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.notify.notify_one();
        dropped
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

    /// The next message, waiting up to `timeout` (`None`: forever).
    /// Fails with [`MessagingError::Timeout`], or
    /// [`MessagingError::Closed`] once unsubscribed or closed and empty.
    /// Cancel-safe.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<Received, MessagingError> {
        let wait = async {
            loop {
                let notified = self.shared.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(r) = self.try_recv() {
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
        self.shared.lock().pop_front()
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
