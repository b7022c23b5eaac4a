//! The I/O task: packets in, timers, waits for blocked connections, and
//! the core's events handed to [`dispatch`](super::dispatch).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_link::ConnectionId;
use weft_packeter::{PacketEvent, Packeter};

use super::dispatch::dispatch;
use super::{Inner, lock, now, transmit};
use crate::storage::SeenId;
use crate::subscription::{Deliveries, QueueMatches};
use crate::timer::LazyTimer;

/// The I/O task: packets in, timers, waits for blocked connections.
pub(super) async fn run(inner: Arc<Inner>, packeter: &mut Packeter) {
    let mut batch = Vec::with_capacity(256);
    let mut ready_waits: JoinSet<ConnectionId> = JoinSet::new();
    // Lanes being opened: the connection each is beside, and whether it
    // opened.
    let mut lane_opens: JoinSet<(ConnectionId, bool)> = JoinSet::new();
    let mut events = VecDeque::new();
    let mut closing = Vec::new();
    let mut seen = Vec::new();
    let mut deliveries = Deliveries::default();
    let mut matches = QueueMatches::default();
    let mut timer = LazyTimer::new();
    // Made once and kept while it waits, instead of made, registered with
    // the `Notify` and dropped again on every turn.
    let wake = inner.wake.notified();
    tokio::pin!(wake);
    loop {
        timer.arm(lock(&inner.core).poll_timeout().map(Instant::from_std));
        // More packets were ready than one batch takes.
        let mut more = false;
        tokio::select! {
            // Packets last: each other branch is ready once per cause (a
            // deadline, a wake-up, a connection with room), so none is
            // starved while packets keep coming.
            biased;
            _ = timer.fired() => {
                lock(&inner.core).handle_timeout(now());
            }
            _ = &mut wake => {
                if inner.stopping.load(Ordering::Acquire) {
                    break;
                }
                wake.set(inner.wake.notified());
            }
            Some(Ok(conn)) = ready_waits.join_next(), if !ready_waits.is_empty() => {
                lock(&inner.core).handle_writable(conn, now());
            }
            Some(Ok((first, opened))) = lane_opens.join_next(), if !lane_opens.is_empty() => {
                // An opened lane comes up with the packets, as a connection.
                if !opened {
                    lock(&inner.core).handle_lane_failed(first, now());
                }
            }
            n = packeter.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                more = n == MAX_BATCH;
                let now = now();
                let mut core = lock(&inner.core);
                for event in batch.drain(..) {
                    match event {
                        PacketEvent::Connected(sender) => {
                            let facts = transmit::facts(&sender);
                            core.handle_connected_with(sender.id(), sender, facts, now)
                        }
                        PacketEvent::Packet { connection, data } => core.handle_packet(connection, data, now),
                        PacketEvent::Disconnected { connection, .. } => core.handle_disconnected(connection),
                        _ => {}
                    }
                }
                core.handle_batch_end(now);
            }
        }
        {
            let mut core = lock(&inner.core);
            for (conn, tx) in core.poll_blocked() {
                ready_waits.spawn(async move {
                    let _ = tx.ready().await;
                    conn
                });
            }
            closing.extend(std::iter::from_fn(|| core.poll_close()));
            while let Some(first) = core.poll_open_lane() {
                let link = inner.link.clone();
                lane_opens.spawn(async move {
                    let opened = link.open_lane(first).await;
                    if let Err(error) = &opened {
                        tracing::debug!(conn = %first, %error, "no lane");
                    }
                    (first, opened.is_ok())
                });
            }
            core.poll_events(&mut events);
            core.poll_seen(&mut seen);
            // A `flush` counts itself before it reads the core, under this
            // lock: one that reads none here has seen what was delivered.
            if core.poll_progress() && inner.flushing.load(Ordering::SeqCst) > 0 {
                inner.progress.notify_waiters();
            }
        }
        // Outside the lock: ending a connection wakes its driver.
        closing.drain(..).for_each(transmit::end);
        if !seen.is_empty() {
            record_seen(&inner, &mut seen).await;
        }
        // Handlers may have answered what they were handed: the writers of
        // their connections run before this task's next turn (timer,
        // waits), so that an answer leaves as soon as it is queued.
        let answered = !events.is_empty();
        if answered {
            dispatch(&inner, &mut events, &mut deliveries, &mut matches);
            // Drained: start the ring over at its first slots.
            events.clear();
        }
        if more || answered {
            // Also lets the receivers take this batch before the next one
            // is read: queues stay short, and memory with them.
            yield_once().await;
        }
    }
    inner.link.close().await;
}

/// Commits the ids of the messages just received (with a store, the core
/// logs them), and only then lets their acks leave and, back in the loop,
/// hands the messages over: a receiver killed at any moment after this
/// finds them in its store and drops their resends, and one killed before
/// it never acknowledged them, so their senders send them again. A failed
/// commit is logged by the storage thread; the messages go on, acknowledged,
/// without that protection.
async fn record_seen(inner: &Inner, seen: &mut Vec<SeenId>) {
    if let Some(storage) = &inner.storage {
        let _ = storage.record_seen(std::mem::take(seen)).await;
    }
    seen.clear();
    lock(&inner.core).handle_recorded(now());
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
