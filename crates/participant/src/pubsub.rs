//! Publishers and subscribers hosted by a participant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use weft_link::inbox::{Inbox, RecvError};
use weft_messaging::{Identity, MessagingError, Received, SubscriptionQueue, TopicFilter};

use crate::control::FilterSpec;
use crate::{Participant, ParticipantError};

/// A publication received by a [`Subscriber`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Publication {
    /// Its topic.
    pub topic: Arc<str>,
    /// The identity of the participant that published it.
    pub from: Identity,
    /// The payload.
    pub data: Bytes,
}

impl Publication {
    pub(crate) fn new(topic: Arc<str>, from: Identity, data: Bytes) -> Publication {
        Publication { topic, from, data }
    }

    fn from_received(r: Received) -> Publication {
        Publication {
            topic: r.topic.unwrap_or_else(|| Arc::from("")),
            from: r.from,
            data: r.message.data,
        }
    }
}

/// Takes received messages into a list of publications.
struct AsPublications<'a>(&'a mut Vec<Publication>);

impl Extend<Received> for AsPublications<'_> {
    fn extend<I: IntoIterator<Item = Received>>(&mut self, iter: I) {
        self.0
            .extend(iter.into_iter().map(Publication::from_received));
    }
}

/// Publishes on one topic (from [`Participant::publisher`]). The other
/// participants know we publish it while this lives; dropping it tells
/// them we no longer do (once no other publisher of the topic is left).
#[derive(Debug)]
pub struct Publisher {
    participant: Participant,
    topic: String,
}

impl Publisher {
    pub(crate) fn new(participant: Participant, topic: String) -> Publisher {
        Publisher { participant, topic }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `data` to every participant (ourselves included) with a
    /// subscriber whose filter matches the topic; returns how many
    /// participants got a copy. Neighbours get it directly; participants
    /// further away get it through the participants between, one copy per
    /// stream on the way. With no matching subscriber anywhere nothing is
    /// sent and 0 is returned. Never waits: a participant's queue that is
    /// full drops its oldest message
    /// ([`QueuePolicy::DropOldest`](weft_messaging::config::QueuePolicy::DropOldest)
    /// in the default configuration). `data` is copied once into the
    /// message every neighbour's copy shares, and once more for the copies
    /// routed further.
    pub fn publish(&self, data: impl AsRef<[u8]>) -> Result<usize, ParticipantError> {
        self.participant.publish(&self.topic, data.as_ref())
    }

    /// The participants with a subscriber to our topic, as they told us.
    pub fn subscribers(&self) -> Vec<Identity> {
        self.participant.subscribers_of(&self.topic)
    }

    /// Waits until at least one participant has told us it subscribes to
    /// our topic, up to `timeout`. Returns whether one has. It wakes when
    /// what the others told us changes, not on a timer. Cancel-safe.
    pub async fn wait_for_subscribers(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        // Watching before looking: a change between the two is not missed.
        let mut changes = self.participant.interest_changes();
        loop {
            if !self.subscribers().is_empty() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the participant is gone.
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// The participant hosting this publisher.
    pub fn participant(&self) -> &Participant {
        &self.participant
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.participant.drop_publisher(&self.topic);
    }
}

/// Receives the publications whose topic its filter matches (from
/// [`Participant::subscriber`]). Dropping it withdraws its interest.
///
/// Its queue is bounded ([`subscription_capacity`](weft_messaging::MessagingConfig::subscription_capacity));
/// when full, the oldest publication is dropped and counted in
/// [`dropped`](Self::dropped).
#[derive(Debug)]
pub struct Subscriber {
    participant: Participant,
    /// Publications from neighbours (and ourselves), as messaging's
    /// PUBLISH messages.
    queue: SubscriptionQueue,
    /// Publications routed to us through other participants.
    routed: Arc<Inbox<Publication>>,
    /// Which queue [`try_recv`](Self::try_recv) and
    /// [`try_recv_many`](Self::try_recv_many) look at first: they take
    /// turns, so that neither queue starves the other.
    routed_first: AtomicBool,
    filter: TopicFilter,
    spec: FilterSpec,
}

impl Subscriber {
    pub(crate) fn new(
        participant: Participant,
        queue: SubscriptionQueue,
        routed: Arc<Inbox<Publication>>,
        filter: TopicFilter,
        spec: FilterSpec,
    ) -> Subscriber {
        Subscriber {
            participant,
            queue,
            routed,
            routed_first: AtomicBool::new(false),
            filter,
            spec,
        }
    }

    /// The next publication, waiting up to `timeout` (`None`: until the
    /// participant closes). Cancel-safe.
    ///
    /// Publications from neighbours and those routed through other
    /// participants wait in two queues, each in its order; when both hold
    /// some, either may go first.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<Publication, ParticipantError> {
        // What is already waiting is taken without a timer or a select.
        if let Some(p) = self.try_recv() {
            return Ok(p);
        }
        // Both receives are cancel-safe, so the one that loses the race
        // takes nothing.
        let either = async {
            // Unbiased, so that neither queue starves the other.
            tokio::select! {
                r = self.routed.recv(None) => r.map_err(|e| match e {
                    RecvError::Timeout(t) => ParticipantError::Timeout(t),
                    _ => ParticipantError::Closed,
                }),
                r = self.queue.recv(None) => match r {
                    Ok(r) => Ok(Publication::from_received(r)),
                    Err(MessagingError::Closed) => Err(ParticipantError::Closed),
                    Err(e) => Err(e.into()),
                },
            }
        };
        match timeout {
            None => either.await,
            // The queues are looked at once before the deadline counts,
            // so `Some(Duration::ZERO)` takes what is already there.
            Some(t) => tokio::time::timeout(t, either)
                .await
                .map_err(|_| ParticipantError::Timeout(t))?,
        }
    }

    /// The next publication if one is waiting.
    pub fn try_recv(&self) -> Option<Publication> {
        let published = || self.queue.try_recv().map(Publication::from_received);
        if self.routed_first.fetch_xor(true, Ordering::Relaxed) {
            self.routed.try_recv().or_else(published)
        } else {
            published().or_else(|| self.routed.try_recv())
        }
    }

    /// Moves up to `max` waiting publications, oldest first, into `out`
    /// with one lock of each queue (where [`try_recv`](Self::try_recv)
    /// takes one per publication); returns how many. Does not wait.
    pub fn try_recv_many(&self, out: &mut Vec<Publication>, max: usize) -> usize {
        // Taking turns at going first, as try_recv does.
        if self.routed_first.fetch_xor(true, Ordering::Relaxed) {
            let n = self.routed.try_recv_many(out, max);
            n + self.queue.try_recv_many(&mut AsPublications(out), max - n)
        } else {
            let n = self.queue.try_recv_many(&mut AsPublications(out), max);
            n + self.routed.try_recv_many(out, max - n)
        }
    }

    /// Waits up to `timeout` (`None`: until the participant closes) until
    /// a publication is waiting, then moves up to `max` of them (at least
    /// one, unless `max` is 0) into `out`, oldest first; returns how many.
    /// Fails as [`recv`](Self::recv) does. Cancel-safe.
    pub async fn recv_many(
        &self,
        out: &mut Vec<Publication>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, ParticipantError> {
        if max == 0 {
            return Ok(0);
        }
        let taken = self.try_recv_many(out, max);
        if taken > 0 {
            return Ok(taken);
        }
        let first = self.recv(timeout).await?;
        out.push(first);
        Ok(1 + self.try_recv_many(out, max - 1))
    }

    /// Publications waiting.
    pub fn len(&self) -> usize {
        self.queue.len() + self.routed.len()
    }

    /// Whether no publication is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.routed.is_empty()
    }

    /// Publications dropped because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped() + self.routed.dropped()
    }

    /// The filter.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }

    /// The participant hosting this subscriber.
    pub fn participant(&self) -> &Participant {
        &self.participant
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.participant.drop_subscriber(&self.queue, &self.spec);
    }
}
