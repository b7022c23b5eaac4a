//! What one dispatch hands to the subscription queues: which queues each
//! message goes to (worked out once per run of alike messages), and the
//! copies gathered per queue, handed over with one lock and one wake-up.

use std::collections::VecDeque;
use std::sync::Arc;

use super::QueueShared;
use crate::{Identity, Kind, Received};

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
    use std::time::Duration;

    use super::*;
    use crate::subscription::queue::tests::{data, queue, received};

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
