//! A bounded queue of received items that several readers share: the one
//! queue type behind weft-link's pipe subscriptions and weft-messaging's
//! subscription queues.
//!
//! An [`Inbox`] never makes its producer wait. It holds at most
//! [`capacity`](Inbox::capacity) items; when a push finds it full, its
//! [`DropPolicy`] decides which item is lost (the oldest queued, or the
//! one pushed), and [`dropped`](Inbox::dropped) counts every item lost
//! that way. Readers wait for items with [`recv`](Inbox::recv), whose
//! timeout has one meaning: `Some(d)` waits at most `d` and fails with
//! [`RecvError::Timeout`], `None` waits until an item arrives or the inbox
//! closes, however long that takes. A layer that wants a default limit
//! (pipes wait P2PD's `recv_timeout` when given none) passes it as
//! `Some`. Once [closed](Inbox::close) an inbox takes no more items; what
//! it holds can still be read, then reads fail with [`RecvError::Closed`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use weft_link::inbox::{DropPolicy, Inbox, Pushed, RecvError};
//!
//! let inbox = Arc::new(Inbox::new(2, DropPolicy::DropOldest));
//! assert_eq!(inbox.push("a"), Pushed::Taken { dropped: 0 });
//! inbox.push("b");
//! assert_eq!(inbox.push("c").dropped(), 1, "a, the oldest, made room");
//! assert_eq!(inbox.dropped(), 1);
//!
//! assert_eq!(inbox.recv(None).await, Ok("b"));
//! assert_eq!(inbox.recv(Some(Duration::from_secs(1))).await, Ok("c"));
//! let nothing = inbox.recv(Some(Duration::ZERO)).await;
//! assert_eq!(nothing, Err(RecvError::Timeout(Duration::ZERO)));
//!
//! // A reader waiting with no limit wakes for the next item.
//! let reader = tokio::spawn({
//!     let inbox = inbox.clone();
//!     async move { inbox.recv(None).await }
//! });
//! inbox.push("d");
//! assert_eq!(reader.await.unwrap(), Ok("d"));
//!
//! inbox.close();
//! assert_eq!(inbox.push("e"), Pushed::Refused);
//! assert_eq!(inbox.recv(None).await, Err(RecvError::Closed));
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// Which item a full [`Inbox`] loses when another is pushed. Either way
/// the lost item is counted in [`Inbox::dropped`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DropPolicy {
    /// Drop the oldest queued item to make room, so the inbox holds the
    /// newest ones (what P2PD's queues and weft-messaging's subscription
    /// queues do). The default.
    #[default]
    DropOldest,
    /// Keep what is queued and drop the item pushed.
    DropNewest,
}

/// What a push did.
#[must_use = "a push may drop items or be refused"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pushed {
    /// The inbox was open and took the push; `dropped` items (queued or
    /// pushed ones, as the [`DropPolicy`] says) were lost to make room and
    /// counted in [`Inbox::dropped`].
    Taken {
        /// Items lost to the drop policy.
        dropped: u64,
    },
    /// The inbox is closed: nothing was queued, and the items pushed were
    /// dropped without being counted in [`Inbox::dropped`].
    Refused,
}

impl Pushed {
    /// Items lost to the drop policy (0 when refused).
    pub fn dropped(self) -> u64 {
        match self {
            Pushed::Taken { dropped } => dropped,
            Pushed::Refused => 0,
        }
    }
}

/// Why [`Inbox::recv`] returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing arrived within the timeout given.
    #[error("nothing arrived within {0:?}")]
    Timeout(Duration),
    /// The inbox is closed and empty.
    #[error("the inbox is closed")]
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// A bounded queue that producers push into without waiting and readers
/// wait on; see the [module documentation](self). Share it in an `Arc`:
/// each item goes to one reader.
pub struct Inbox<T> {
    capacity: usize,
    policy: DropPolicy,
    state: Mutex<State<T>>,
    ready: Notify,
    dropped: AtomicU64,
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, closed) = {
            let st = self.lock();
            (st.items.len(), st.closed)
        };
        f.debug_struct("Inbox")
            .field("len", &len)
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("dropped", &self.dropped())
            .field("closed", &closed)
            .finish()
    }
}

impl<T> Inbox<T> {
    /// An open, empty inbox holding at most `capacity` items (0 is taken
    /// as 1), losing items to `policy` when full.
    pub fn new(capacity: usize, policy: DropPolicy) -> Inbox<T> {
        Inbox {
            capacity: capacity.max(1),
            policy,
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every change to the state is complete before anything can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most items the inbox holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What a full inbox drops.
    pub fn policy(&self) -> DropPolicy {
        self.policy
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items lost to the drop policy since the inbox was made.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the inbox is closed. Items still queued can be read.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Queues `item`, behind what is there, and wakes a reader. When full,
    /// the policy drops the oldest queued item or `item` itself. A closed
    /// inbox refuses it.
    pub fn push(&self, item: T) -> Pushed {
        let dropped = {
            let mut st = self.lock();
            if st.closed {
                return Pushed::Refused;
            }
            if st.items.len() < self.capacity {
                st.items.push_back(item);
                0
            } else {
                if self.policy == DropPolicy::DropOldest {
                    st.items.pop_front();
                    st.items.push_back(item);
                }
                1
            }
        };
        self.pushed(dropped)
    }

    /// Queues `items` in order under one lock, with one wake-up, as that
    /// many [`push`](Self::push)es would: when they do not all fit, the
    /// policy drops the oldest of the queue and then of `items`
    /// ([`DropOldest`](DropPolicy::DropOldest)), or the last of `items`
    /// ([`DropNewest`](DropPolicy::DropNewest)). `items` is left empty,
    /// possibly holding the inbox's old buffer for reuse. A closed inbox
    /// refuses them all.
    pub fn push_all(&self, items: &mut VecDeque<T>) -> Pushed {
        let dropped = {
            let mut st = self.lock();
            if st.closed {
                items.clear();
                return Pushed::Refused;
            }
            let queue = &mut st.items;
            if queue.is_empty() && items.len() <= self.capacity {
                // The readers kept up: the batch becomes the queue, with
                // nothing moved one by one.
                std::mem::swap(queue, items);
                0
            } else {
                let over = (queue.len() + items.len()).saturating_sub(self.capacity);
                match self.policy {
                    DropPolicy::DropOldest => {
                        let from_queue = over.min(queue.len());
                        queue.drain(..from_queue);
                        items.drain(..over - from_queue);
                        queue.append(items);
                    }
                    DropPolicy::DropNewest => {
                        items.truncate(items.len() - over);
                        queue.append(items);
                    }
                }
                over as u64
            }
        };
        self.pushed(dropped)
    }

    /// Counts what a push dropped and wakes a reader.
    fn pushed(&self, dropped: u64) -> Pushed {
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.ready.notify_one();
        Pushed::Taken { dropped }
    }

    /// The oldest item, if one is waiting. Does not wait.
    pub fn try_recv(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// Moves up to `max` waiting items, oldest first, into `out` under one
    /// lock (where [`try_recv`](Self::try_recv) takes one per item);
    /// returns how many. Does not wait.
    pub fn try_recv_many(&self, out: &mut impl Extend<T>, max: usize) -> usize {
        let mut st = self.lock();
        let n = max.min(st.items.len());
        out.extend(st.items.drain(..n));
        n
    }

    /// The oldest item, waiting for one if none is there.
    ///
    /// `Some(d)` waits at most `d`, then fails with
    /// [`RecvError::Timeout`]`(d)` (`Some(Duration::ZERO)` only takes what
    /// is already there). `None` waits with no limit: until an item
    /// arrives, or until the inbox is [closed](Self::close) and empty,
    /// which fails with [`RecvError::Closed`].
    ///
    /// Cancel-safe: an item is taken only when the future completes with
    /// it.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<T, RecvError> {
        self.wait(timeout, |items| items.pop_front()).await
    }

    /// Waits as [`recv`](Self::recv) does until an item is waiting, then
    /// moves up to `max` (at least one, unless `max` is 0, which returns
    /// at once) into `out`, oldest first; returns how many.
    ///
    /// Cancel-safe: nothing is taken unless the call returns it.
    pub async fn recv_many(
        &self,
        out: &mut impl Extend<T>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        self.wait(timeout, |items| {
            let n = max.min(items.len());
            out.extend(items.drain(..n));
            (n > 0).then_some(n)
        })
        .await
    }

    /// Runs `take` on the queue until it takes something, waiting for
    /// pushes in between, within `timeout`.
    async fn wait<R>(
        &self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&mut VecDeque<T>) -> Option<R>,
    ) -> Result<R, RecvError> {
        let wait = async {
            loop {
                // Registered before looking, so a push between the look
                // and the wait still wakes this reader.
                let notified = self.ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut st = self.lock();
                    if let Some(r) = take(&mut st.items) {
                        let more = !st.items.is_empty();
                        drop(st);
                        if more {
                            // A batch came with one wake-up: pass it on to
                            // the next reader.
                            self.ready.notify_one();
                        }
                        return Ok(r);
                    }
                    if st.closed {
                        return Err(RecvError::Closed);
                    }
                }
                notified.await;
            }
        };
        match timeout {
            None => wait.await,
            Some(d) => tokio::time::timeout(d, wait)
                .await
                .map_err(|_| RecvError::Timeout(d))?,
        }
    }

    /// Closes the inbox: it takes no more items, and every waiting reader
    /// wakes (to take what is left, or to fail with
    /// [`RecvError::Closed`]).
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn drain<T>(inbox: &Inbox<T>) -> Vec<T> {
        std::iter::from_fn(|| inbox.try_recv()).collect()
    }

    fn batch(items: impl IntoIterator<Item = u32>) -> VecDeque<u32> {
        items.into_iter().collect()
    }

    #[test]
    fn a_full_inbox_drops_its_oldest_and_counts_it() {
        let inbox = Inbox::new(2, DropPolicy::DropOldest);
        assert_eq!(inbox.push(1), Pushed::Taken { dropped: 0 });
        assert_eq!(inbox.push(2), Pushed::Taken { dropped: 0 });
        assert_eq!(inbox.push(3), Pushed::Taken { dropped: 1 });
        assert_eq!(inbox.push(4).dropped(), 1);
        assert_eq!(inbox.dropped(), 2);
        assert_eq!(drain(&inbox), [3, 4]);
    }

    #[test]
    fn a_full_inbox_drops_the_newest_and_counts_it() {
        let inbox = Inbox::new(2, DropPolicy::DropNewest);
        let _ = inbox.push(1);
        let _ = inbox.push(2);
        assert_eq!(inbox.push(3), Pushed::Taken { dropped: 1 });
        assert_eq!(inbox.push(4).dropped(), 1);
        assert_eq!(inbox.dropped(), 2);
        assert_eq!(drain(&inbox), [1, 2]);
    }

    #[test]
    fn a_batch_keeps_what_pushes_one_by_one_would_under_either_policy() {
        for policy in [DropPolicy::DropOldest, DropPolicy::DropNewest] {
            // (queued before, batch): from empty, fitting, overflowing the
            // queue, and larger than the whole inbox.
            let cases = [(0..0, 0..3), (0..0, 0..6), (0..2, 10..12), (0..3, 10..17)];
            for (before, pushed) in cases {
                let (one, all) = (Inbox::new(4, policy), Inbox::new(4, policy));
                for n in before.clone() {
                    let _ = one.push(n);
                    let _ = all.push(n);
                }
                let mut dropped = 0;
                for n in pushed.clone() {
                    dropped += one.push(n).dropped();
                }
                let mut items = batch(pushed.clone());
                assert_eq!(all.push_all(&mut items).dropped(), dropped);
                assert!(items.is_empty(), "the batch is taken");
                assert_eq!(all.dropped(), one.dropped());
                assert_eq!(drain(&all), drain(&one), "{policy:?} {before:?} {pushed:?}");
            }
        }
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        for policy in [DropPolicy::DropOldest, DropPolicy::DropNewest] {
            let inbox = Inbox::new(3, policy);
            for n in 0..100 {
                if n % 7 == 0 {
                    let _ = inbox.push_all(&mut batch(n..n + 5));
                } else {
                    let _ = inbox.push(n);
                }
                assert!(inbox.len() <= 3);
            }
            assert_eq!(inbox.len(), 3);
            let zero = Inbox::new(0, policy);
            assert_eq!(zero.capacity(), 1, "0 is taken as 1");
            let _ = zero.push_all(&mut batch(0..3));
            assert_eq!((zero.len(), zero.dropped()), (1, 2));
        }
    }

    #[test]
    fn a_closed_inbox_refuses_pushes_uncounted_and_keeps_what_it_holds() {
        let inbox = Inbox::new(2, DropPolicy::DropOldest);
        let _ = inbox.push(1);
        inbox.close();
        assert!(inbox.is_closed());
        assert_eq!(inbox.push(2), Pushed::Refused);
        let mut items = batch([3, 4, 5]);
        assert_eq!(inbox.push_all(&mut items), Pushed::Refused);
        assert!(items.is_empty());
        assert_eq!(inbox.dropped(), 0, "refusals are not drops");
        assert_eq!(drain(&inbox), [1]);
    }

    #[test]
    fn many_at_once_in_order_and_no_more_than_asked() {
        let inbox = Inbox::new(10, DropPolicy::DropOldest);
        let _ = inbox.push_all(&mut batch(0..5));
        let mut got = Vec::new();
        assert_eq!(inbox.try_recv_many(&mut got, 2), 2);
        assert_eq!(inbox.len(), 3, "the rest wait");
        assert_eq!(inbox.try_recv_many(&mut got, 10), 3);
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(inbox.try_recv_many(&mut got, 10), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_bounds_the_wait_and_takes_nothing() {
        let inbox = Inbox::<u32>::new(4, DropPolicy::DropOldest);
        let start = tokio::time::Instant::now();
        let waited = Duration::from_secs(3);
        assert_eq!(
            inbox.recv(Some(waited)).await,
            Err(RecvError::Timeout(waited))
        );
        assert_eq!(start.elapsed(), waited, "paused time: exactly the timeout");
        let mut got = Vec::new();
        let r = inbox.recv_many(&mut got, 4, Some(waited)).await;
        assert_eq!(r, Err(RecvError::Timeout(waited)));
        assert!(got.is_empty());
        let _ = inbox.push(7);
        assert_eq!(
            inbox.recv(Some(Duration::ZERO)).await,
            Ok(7),
            "ready at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_waits_as_long_as_it_takes() {
        let inbox = Arc::new(Inbox::new(4, DropPolicy::DropOldest));
        let reader = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.recv(None).await }
        });
        // An hour of paused time passes with the reader still waiting.
        tokio::time::advance(Duration::from_secs(3600)).await;
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        let _ = inbox.push(5);
        assert_eq!(reader.await.unwrap(), Ok(5));
    }

    #[tokio::test]
    async fn close_wakes_every_waiting_reader() {
        let inbox = Arc::new(Inbox::<u32>::new(4, DropPolicy::DropOldest));
        let readers: Vec<_> = (0..3)
            .map(|i| {
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    if i == 0 {
                        inbox.recv(None).await.map(|_| 0)
                    } else {
                        inbox.recv_many(&mut Vec::new(), 4, None).await
                    }
                })
            })
            .collect();
        // On this current-thread runtime, one yield lets them all park.
        tokio::task::yield_now().await;
        assert!(readers.iter().all(|r| !r.is_finished()));
        inbox.close();
        for r in readers {
            assert_eq!(r.await.unwrap(), Err(RecvError::Closed));
        }
        assert_eq!(inbox.recv_many(&mut Vec::new(), 0, None).await, Ok(0));
    }

    #[tokio::test]
    async fn a_batch_pushed_with_one_wake_up_reaches_every_waiting_reader() {
        let inbox = Arc::new(Inbox::new(10, DropPolicy::DropOldest));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.recv(None).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let _ = inbox.push_all(&mut batch([1, 2]));
        let mut got = Vec::new();
        for r in readers {
            got.push(r.await.unwrap().unwrap());
        }
        got.sort();
        assert_eq!(got, [1, 2]);
    }
}
