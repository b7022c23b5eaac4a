//! A connection's bounded send queue, where small writes are coalesced.
//!
//! Senders append under a short lock; the connection's driver takes
//! everything queued at once and writes it with one vectored write. Writes
//! up to [`COPY_THRESHOLD`] bytes are copied into one contiguous buffer (a
//! memcpy of a few dozen bytes is far cheaper than a system call or an
//! extra I/O slice); larger payloads are queued as they are, without a copy.
//!
//! Bound: `capacity` bytes queued. A write that does not fit waits
//! (`push`) or fails (`try_push`); a single write larger than `capacity` is
//! accepted into an empty queue so that it can be sent at all. The driver
//! holds at most one batch besides, so a connection buffers at most about
//! twice `capacity`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Payloads up to this size are copied into the coalescing buffer.
pub(crate) const COPY_THRESHOLD: usize = 4096;

/// The smallest coalescing buffer allocated for the writes after a batch.
const MIN_TAIL: usize = 8 * 1024;

/// The largest batch after which a fresh coalescing buffer is allocated
/// (see [`SendQueue::take`]).
const MAX_FRESH_TAIL: usize = 64 * 1024;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds `capacity` bytes already.
    Full,
    /// The connection is closing or closed.
    Closed,
}

/// What the driver found when it asked for work.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Chunks were moved into the driver's batch.
    Data,
    /// Nothing queued; the driver's waker is registered.
    Empty,
    /// Nothing queued and a graceful close was asked for.
    Close,
}

struct State {
    /// Ready chunks in order (each one a datagram in datagram mode).
    chunks: VecDeque<Bytes>,
    /// Small writes being coalesced, after `chunks` (stream mode only).
    tail: BytesMut,
    /// The capacity to give `tail` at the next small write, when a take
    /// left it without a buffer (0: grow as writes come). Allocating then
    /// rather than at the take keeps an idle connection from holding a
    /// buffer for writes that may never come.
    fresh_tail: usize,
    queued: usize,
    /// Bytes ever accepted, for write-progress tracking.
    pushed_total: u64,
    writer: Option<Waker>,
    closing: bool,
    closed: bool,
}

pub(crate) struct SendQueue {
    state: Mutex<State>,
    space: Notify,
    someone_waits: AtomicBool,
    capacity: usize,
    datagrams: bool,
}

impl SendQueue {
    /// A queue of `capacity` bytes; `datagrams` keeps every push a separate
    /// chunk (UDP) instead of coalescing.
    pub(crate) fn new(capacity: usize, datagrams: bool) -> SendQueue {
        SendQueue {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                tail: BytesMut::new(),
                fresh_tail: 0,
                queued: 0,
                pushed_total: 0,
                writer: None,
                closing: false,
                closed: false,
            }),
            space: Notify::new(),
            someone_waits: AtomicBool::new(false),
            capacity: capacity.max(1),
            datagrams,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state
        // inconsistent in a way that matters more than losing the queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `prefix` then `payload` as one write (one datagram in
    /// datagram mode), or says why not.
    pub(crate) fn try_push(&self, prefix: &[u8], payload: &Bytes) -> Result<(), PushError> {
        let len = prefix.len() + payload.len();
        let waker = {
            let mut st = self.lock();
            if st.closing || st.closed {
                return Err(PushError::Closed);
            }
            if st.queued > 0 && st.queued + len > self.capacity {
                self.someone_waits.store(true, Ordering::Relaxed);
                return Err(PushError::Full);
            }
            st.queued += len;
            st.pushed_total += len as u64;
            if self.datagrams {
                let dgram = if prefix.is_empty() {
                    payload.clone()
                } else {
                    let mut b = BytesMut::with_capacity(len);
                    b.extend_from_slice(prefix);
                    b.extend_from_slice(payload);
                    b.freeze()
                };
                st.chunks.push_back(dgram);
            } else if payload.len() <= COPY_THRESHOLD {
                if st.tail.capacity() == 0 && st.fresh_tail > 0 {
                    let want = std::mem::take(&mut st.fresh_tail).max(len);
                    st.tail.reserve(want);
                }
                st.tail.extend_from_slice(prefix);
                st.tail.extend_from_slice(payload);
            } else {
                st.tail.extend_from_slice(prefix);
                if !st.tail.is_empty() {
                    let head = st.tail.split().freeze();
                    st.chunks.push_back(head);
                }
                st.chunks.push_back(payload.clone());
            }
            st.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Appends, waiting for room. Cancel-safe: if the future is dropped
    /// before it completes, nothing was queued.
    pub(crate) async fn push(&self, prefix: &[u8], payload: &Bytes) -> Result<(), PushError> {
        // The common case, room in the queue, touches only the queue's lock;
        // a waiter is armed (before retrying, so no wake-up is lost) only
        // once the queue was found full.
        match self.try_push(prefix, payload) {
            Err(PushError::Full) => {}
            other => return other,
        }
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(prefix, payload) {
                Err(PushError::Full) => notified.await,
                other => return other,
            }
        }
    }

    /// Waits until the queue has room (holds less than its capacity) or is
    /// closed. Cancel-safe.
    pub(crate) async fn ready(&self) -> Result<(), PushError> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if st.closing || st.closed {
                    return Err(PushError::Closed);
                }
                if st.queued < self.capacity {
                    return Ok(());
                }
                self.someone_waits.store(true, Ordering::Relaxed);
            }
            notified.await;
        }
    }

    /// Moves everything queued into `batch` (driver only).
    pub(crate) fn take(&self, batch: &mut VecDeque<Bytes>, waker: &Waker) -> Take {
        let took = {
            let mut st = self.lock();
            // An empty datagram adds no bytes but is still a write.
            if st.queued == 0 && st.chunks.is_empty() {
                if st.closing {
                    return Take::Close;
                }
                // Nothing to write: what is left of a small coalescing
                // buffer is given back rather than held while the
                // connection idles; the next write allocates its like.
                let room = st.tail.capacity();
                if room > 0 && room <= MAX_FRESH_TAIL {
                    st.tail = BytesMut::new();
                    st.fresh_tail = room.max(MIN_TAIL);
                }
                match &st.writer {
                    Some(w) if w.will_wake(waker) => {}
                    _ => st.writer = Some(waker.clone()),
                }
                return Take::Empty;
            }
            batch.extend(st.chunks.drain(..));
            if !st.tail.is_empty() {
                let tail = st.tail.split().freeze();
                if st.tail.capacity() < tail.len() && tail.len() <= MAX_FRESH_TAIL {
                    // What is left of the buffer is shared with the batch
                    // being written: growing it would allocate from a small
                    // size and copy at every doubling. One buffer the size
                    // of this batch instead. Bigger batches keep the
                    // buffer, which is reused in place once written.
                    st.tail = BytesMut::new();
                    st.fresh_tail = tail.len().max(MIN_TAIL);
                }
                batch.push_back(tail);
            }
            st.queued = 0;
            true
        };
        if took && self.someone_waits.swap(false, Ordering::Relaxed) {
            self.space.notify_waiters();
        }
        Take::Data
    }

    /// Poll form of waiting for work (datagram drivers).
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Bytes>,
    ) -> Poll<Take> {
        match self.take(batch, cx.waker()) {
            Take::Empty => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    /// Asks for a graceful close: queued data is still written, then the
    /// connection shuts down. Further pushes fail.
    pub(crate) fn close(&self) {
        let waker = {
            let mut st = self.lock();
            st.closing = true;
            st.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        self.space.notify_waiters();
    }

    /// Marks the queue dead (the connection ended); waiting senders fail.
    pub(crate) fn mark_closed(&self) -> usize {
        let dropped = {
            let mut st = self.lock();
            st.closed = true;
            st.chunks.clear();
            st.tail = BytesMut::new();
            std::mem::take(&mut st.queued)
        };
        self.space.notify_waiters();
        dropped
    }

    /// Bytes ever accepted by this queue.
    pub(crate) fn pushed_total(&self) -> u64 {
        self.lock().pushed_total
    }

    /// Bytes queued and not yet taken by the driver.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn drain(q: &SendQueue) -> Vec<u8> {
        let mut batch = VecDeque::new();
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Data);
        batch.iter().flat_map(|b| b.iter().copied()).collect()
    }

    #[test]
    fn after_a_take_the_next_batch_has_room_without_growing() {
        let q = SendQueue::new(1 << 20, false);
        let small = Bytes::from_static(&[9u8; 100]);
        for _ in 0..100 {
            q.try_push(b"HEAD", &small).unwrap();
        }
        let mut batch = VecDeque::new();
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Data);
        // The batch is still being written; the next one must fit a buffer
        // of its own without reallocating at every doubling.
        q.try_push(b"HEAD", &small).unwrap();
        let room = q.lock().tail.capacity();
        assert!(room >= 104 * 100, "room for a batch like the last: {room}");
        let at = q.lock().tail.as_ptr();
        for _ in 1..100 {
            q.try_push(b"HEAD", &small).unwrap();
        }
        assert_eq!(q.lock().tail.as_ptr(), at, "no reallocation");
        assert_eq!(batch.iter().map(Bytes::len).sum::<usize>(), 104 * 100);
        assert_eq!(drain(&q).len(), 104 * 100);
    }

    #[test]
    fn a_take_leaves_no_buffer_until_the_next_write() {
        let q = SendQueue::new(1 << 20, false);
        q.try_push(b"HEAD", &Bytes::from_static(&[1u8; 64]))
            .unwrap();
        assert_eq!(drain(&q).len(), 68);
        assert_eq!(q.lock().tail.capacity(), 0, "an idle queue holds no buffer");
        // Two writes: the second lands in the fresh buffer, whose rest the
        // take leaves for the next batch; finding nothing more to write
        // gives it back.
        q.try_push(b"HEAD", &Bytes::from_static(&[1u8; 64]))
            .unwrap();
        assert_eq!(drain(&q).len(), 68);
        let mut batch = VecDeque::new();
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Empty);
        assert_eq!(q.lock().tail.capacity(), 0, "an idle queue holds no buffer");
        q.try_push(b"HEAD", &Bytes::from_static(&[2u8; 64]))
            .unwrap();
        assert!(
            q.lock().tail.capacity() >= MIN_TAIL,
            "a whole buffer at the next write"
        );
        assert_eq!(drain(&q), [&b"HEAD"[..], &[2u8; 64]].concat());
    }

    #[test]
    fn small_writes_coalesce_and_large_ones_are_not_copied() {
        let q = SendQueue::new(1 << 20, false);
        q.try_push(b"\x00\x00\x00\x01", &Bytes::from_static(b"a"))
            .unwrap();
        q.try_push(b"", &Bytes::from_static(b"bc")).unwrap();
        let big = Bytes::from(vec![7u8; COPY_THRESHOLD + 1]);
        q.try_push(b"HD", &big).unwrap();
        let mut batch = VecDeque::new();
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Data);
        assert_eq!(batch.len(), 2, "coalesced head, then the big payload as is");
        assert_eq!(&batch[0][..], b"\x00\x00\x00\x01abcHD");
        assert_eq!(
            batch[1].as_ptr(),
            big.as_ptr(),
            "no copy of the big payload"
        );
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Empty);
    }

    #[test]
    fn bounded_but_an_oversized_write_fits_an_empty_queue() {
        let q = SendQueue::new(10, false);
        q.try_push(b"", &Bytes::from(vec![1u8; 25])).unwrap();
        assert_eq!(
            q.try_push(b"", &Bytes::from_static(b"x")),
            Err(PushError::Full)
        );
        assert_eq!(drain(&q).len(), 25);
        q.try_push(b"", &Bytes::from(vec![1u8; 6])).unwrap();
        assert_eq!(
            q.try_push(b"", &Bytes::from(vec![1u8; 5])),
            Err(PushError::Full)
        );
        q.try_push(b"", &Bytes::from(vec![1u8; 4])).unwrap();
        assert_eq!(q.queued_bytes(), 10);
    }

    #[test]
    fn datagrams_stay_separate() {
        let q = SendQueue::new(100, true);
        q.try_push(b"", &Bytes::from_static(b"one")).unwrap();
        q.try_push(b"p", &Bytes::from_static(b"two")).unwrap();
        let mut batch = VecDeque::new();
        q.take(&mut batch, Waker::noop());
        assert_eq!(
            batch,
            [Bytes::from_static(b"one"), Bytes::from_static(b"ptwo")]
        );
    }

    #[test]
    fn an_empty_datagram_alone_is_taken() {
        let q = SendQueue::new(100, true);
        let mut batch = VecDeque::new();
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Empty);
        q.try_push(b"", &Bytes::new()).unwrap();
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Data);
        assert_eq!(batch, [Bytes::new()]);
        q.try_push(b"", &Bytes::new()).unwrap();
        q.close();
        batch.clear();
        assert_eq!(
            q.take(&mut batch, Waker::noop()),
            Take::Data,
            "written before the close"
        );
        assert_eq!(batch, [Bytes::new()]);
        assert_eq!(q.take(&mut batch, Waker::noop()), Take::Close);
    }

    #[test]
    fn close_refuses_new_writes_after_flushing() {
        let q = SendQueue::new(100, false);
        q.try_push(b"", &Bytes::from_static(b"last")).unwrap();
        q.close();
        assert_eq!(
            q.try_push(b"", &Bytes::from_static(b"x")),
            Err(PushError::Closed)
        );
        assert_eq!(drain(&q), b"last");
        assert_eq!(q.take(&mut VecDeque::new(), Waker::noop()), Take::Close);
    }

    #[tokio::test]
    async fn push_waits_for_room() {
        let q = std::sync::Arc::new(SendQueue::new(4, false));
        q.try_push(b"", &Bytes::from_static(b"abcd")).unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.push(b"", &Bytes::from_static(b"ef")).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(drain(&q), b"abcd");
        waiter.await.unwrap().unwrap();
        assert_eq!(drain(&q), b"ef");
        q.mark_closed();
        assert_eq!(
            q.push(b"", &Bytes::from_static(b"x")).await,
            Err(PushError::Closed)
        );
    }
}
