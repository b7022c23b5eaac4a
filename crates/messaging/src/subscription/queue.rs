//! The bounded queue of the messages that matched a subscription:
//! weft-link's [`Inbox`], dropping its oldest when full and counting it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use weft_link::inbox::{DropPolicy, Inbox, Pushed, RecvError};

use crate::{MessagingError, Received, Subscription};

pub(crate) struct QueueShared {
    pub(crate) id: u64,
    pub(crate) subscription: Subscription,
    inbox: Inbox<Received>,
}

impl QueueShared {
    pub(crate) fn new(id: u64, subscription: Subscription, capacity: usize) -> QueueShared {
        QueueShared {
            id,
            subscription,
            inbox: Inbox::new(capacity, DropPolicy::DropOldest),
        }
    }

    /// Appends `items` in order under one lock, with one wake-up; when
    /// full, the oldest are dropped. Returns how many were lost: dropped,
    /// or all of them when the queue is closed (unsubscribed while they
    /// were being dispatched). `items` is left empty (possibly holding the
    /// queue's old buffer, for reuse).
    pub(crate) fn push_all(&self, items: &mut VecDeque<Received>) -> u64 {
        let pushed = items.len() as u64;
        match self.inbox.push_all(items) {
            Pushed::Taken { dropped } => dropped,
            Pushed::Refused => pushed,
        }
    }

    pub(crate) fn close(&self) {
        self.inbox.close();
    }
}

/// What a queue's wait ended with, as messaging names it.
fn recv_error(e: RecvError) -> MessagingError {
    match e {
        RecvError::Timeout(t) => MessagingError::Timeout(t),
        // Closed, or whatever else ends a wait without a message: the
        // queue gives nothing more.
        _ => MessagingError::Closed,
    }
}

/// A bounded queue of the messages that matched a [`Subscription`]. When
/// full, the oldest message is dropped and counted in
/// [`dropped`](Self::dropped). Cheap to clone; clones share the queue.
///
/// The queue is weft-link's [`Inbox`] with
/// [`DropPolicy::DropOldest`]; its timeouts mean what they mean there.
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
        self.shared.inbox.recv(timeout).await.map_err(recv_error)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Option<Received> {
        self.shared.inbox.try_recv()
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
        self.shared.inbox.try_recv_many(out, max)
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
        self.shared
            .inbox
            .recv_many(out, max, timeout)
            .await
            .map_err(recv_error)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.shared.inbox.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.shared.inbox.is_empty()
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.inbox.dropped()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::subscription::Deliveries;
    use crate::{Identity, Message};

    pub(in crate::subscription) fn received(n: u8) -> Received {
        Received {
            from: Identity::new("peer").unwrap(),
            message: Message::new(vec![n]),
            topic: None,
        }
    }

    pub(in crate::subscription) fn queue(capacity: usize) -> SubscriptionQueue {
        SubscriptionQueue {
            shared: Arc::new(QueueShared::new(1, Subscription::all(), capacity)),
        }
    }

    pub(in crate::subscription) fn data(r: Option<Received>) -> Option<u8> {
        r.map(|r| r.message.data[0])
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

    #[tokio::test]
    async fn a_closed_queue_gives_what_it_held_and_takes_nothing_more() {
        let q = queue(10);
        let mut deliveries = Deliveries::default();
        deliveries.add(&q.shared, received(1));
        deliveries.deliver();
        q.shared.close();
        // A dispatch that still held the queue when it was unsubscribed.
        deliveries.add(&q.shared, received(2));
        assert_eq!(
            deliveries.deliver(),
            1,
            "refused, and counted as lost for the stats"
        );
        assert_eq!(data(q.recv(None).await.ok()), Some(1));
        assert!(matches!(q.recv(None).await, Err(MessagingError::Closed)));
        assert_eq!(q.dropped(), 0, "not a drop of this queue's policy");
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
}
