//! Frame routing and the dispatcher task: every RPC frame messaging
//! received, in order, sent to its side. Results, and a CALL that arrives
//! alone while the dispatcher is idle, are handled on messaging's task as
//! they are read; every other frame goes through the dispatcher.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::time::Instant;
use weft_messaging::{Kind, Received};

use crate::rpc::Inner;
use crate::stats::{Counters, inc};
use crate::wire::{self, Frame, FrameKind};
use crate::{RemoteError, RemoteErrorKind, RpcError};

/// Where each RPC frame goes, decided on messaging's task as it hands
/// over the messages it read ([`on_message`](Router::on_message)), one run
/// of messages read together at a time ([`on_batch_end`](Router::on_batch_end)).
///
/// A RESULT only wakes its caller: it is handled at once. A CALL is
/// handled at once too when it is the first CALL of its run and the
/// dispatcher has no frame waiting or being handled: nothing received
/// before it is then left to handle, so the order of frames holds, and the
/// server answers without a hop to another task. Every other frame goes to
/// the dispatcher, so that a burst is still handled in two halves there
/// while the first half's results are sent.
pub(crate) struct Router {
    inner: Weak<Inner>,
    tx: mpsc::Sender<Received>,
    /// Frames handed to the dispatcher and not yet handled by it: 0 means
    /// it is idle (messaging's task is the only one that hands it frames).
    queued: Arc<AtomicUsize>,
    /// No CALL has been seen yet in the current run of messages.
    fresh: AtomicBool,
    counters: Arc<Counters>,
}

impl Router {
    /// A router handing frames to the dispatcher through `tx`; `queued`
    /// is shared with [`dispatch`].
    pub(crate) fn new(
        inner: Weak<Inner>,
        tx: mpsc::Sender<Received>,
        queued: Arc<AtomicUsize>,
        counters: Arc<Counters>,
    ) -> Router {
        Router {
            inner,
            tx,
            queued,
            fresh: AtomicBool::new(true),
            counters,
        }
    }

    /// Routes a message messaging received (one that is not an RPC frame
    /// is left alone).
    pub(crate) fn on_message(&self, r: &Received) {
        if r.kind() != Kind::Plain || !wire::is_rpc(&r.message.data) {
            return;
        }
        let kind = wire::peek(&r.message.data).map(|(kind, _)| kind);
        let now = match kind {
            Some(FrameKind::Result) => true,
            // Only messaging's task touches `fresh`: relaxed is enough.
            // Acquire pairs with the dispatcher's count down: every frame
            // it had is handled.
            Some(FrameKind::Call) => {
                self.fresh.swap(false, Ordering::Relaxed)
                    && self.queued.load(Ordering::Acquire) == 0
            }
            _ => false,
        };
        if now {
            if let Some(inner) = self.inner.upgrade() {
                if matches!(kind, Some(FrameKind::Call)) {
                    inc(&self.counters.calls_inline);
                }
                inner.on_frame(r, &mut Clock::default());
            }
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(r.clone()).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            inc(&self.counters.inbound_dropped);
        }
    }

    /// The run of messages read together has been handed over: the next
    /// CALL is the first of a new run.
    pub(crate) fn on_batch_end(&self) {
        self.fresh.store(true, Ordering::Relaxed);
    }
}

/// The instant the dispatcher handles a chunk of frames: read once per
/// chunk, and only if a frame needs it.
#[derive(Default)]
pub(crate) struct Clock(Option<Instant>);

impl Clock {
    pub(crate) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// The most frames the dispatcher handles in one go.
pub(crate) const MAX_CHUNK: usize = 256;

/// The dispatcher: every RPC frame messaging received, in order.
///
/// The frames waiting when it starts on them (a wave, often a burst of
/// calls that one write brought) are handled in two halves, and between
/// the halves, and whenever more frames wait, it lets the runtime's other
/// tasks run: the connection writers send the first half's results while
/// the second half is handled, so that the peer can start on them instead
/// of waiting for the whole wave. Each chunk reads the clock at most once,
/// and only if a frame needs the time. `queued` counts down each frame
/// once handled (see [`Router`]).
pub(crate) async fn dispatch(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Received>,
    queued: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(MAX_CHUNK);
    // Frames of the current wave not taken yet, and the size of its chunks.
    let mut left = 0usize;
    let mut chunk = 1usize;
    loop {
        if left == 0 {
            if rx.recv_many(&mut batch, 1).await == 0 {
                return; // messaging is gone
            }
            left = 1 + rx.len();
            chunk = left.div_ceil(2).min(MAX_CHUNK);
        }
        let more = chunk.min(left).saturating_sub(batch.len());
        if more > 0 {
            rx.recv_many(&mut batch, more).await;
        }
        left = left.saturating_sub(batch.len());
        let mut clock = Clock::default();
        for received in batch.drain(..) {
            inner.on_frame(&received, &mut clock);
            queued.fetch_sub(1, Ordering::Release);
        }
        if !rx.is_empty() {
            YieldOnce(false).await;
        }
    }
}

/// Goes to the back of the runtime's queue of ready tasks once: the tasks
/// woken meanwhile (the connection writers among them) run first.
pub(crate) struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Inner {
    pub(crate) fn on_frame(self: &Arc<Self>, r: &Received, clock: &mut Clock) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let data = &r.message.data;
        let Some((kind, id)) = wire::peek(data) else {
            inc(&self.counters.bad_frames);
            tracing::debug!(from = %r.from, "RPC frame of unknown kind ignored");
            return;
        };
        let ttl = r.message.ttl;
        let limit = match kind {
            FrameKind::Result => self.config.max_response_bytes,
            _ => self.config.max_request_bytes,
        };
        if data.len() > limit {
            inc(&self.counters.bad_frames);
            match (kind, id) {
                (FrameKind::Call, Some(id)) => {
                    let e = RemoteError::builtin(
                        RemoteErrorKind::TooLarge,
                        format!("request of {} bytes; the limit is {limit}", data.len()),
                    );
                    self.send(
                        &r.from,
                        self.error_frame(id, e),
                        self.deadline_of(u32::MAX, ttl),
                    );
                }
                (FrameKind::Result, Some(id)) => self.fail_pending(
                    &r.from,
                    id,
                    RpcError::TooLarge {
                        what: "response",
                        size: data.len(),
                        limit,
                    },
                ),
                _ => {}
            }
            return;
        }
        match Frame::parse(data) {
            Ok(Frame::Call(call)) => self.serve_call(r, call, clock),
            Ok(Frame::Result(reply)) => self.on_result(r, reply),
            Ok(Frame::Cancel { id }) => self.on_cancel(&r.from, id),
            Ok(Frame::Signal(signal)) => self.serve_signal(r, signal, clock),
            Err(e) => {
                inc(&self.counters.bad_frames);
                tracing::debug!(from = %r.from, error = %e, "bad RPC frame");
                match (kind, id) {
                    (FrameKind::Call, Some(id)) => {
                        let e = RemoteError::builtin(RemoteErrorKind::BadPayload, e.to_string());
                        self.send(
                            &r.from,
                            self.error_frame(id, e),
                            self.deadline_of(u32::MAX, ttl),
                        );
                    }
                    (FrameKind::Result, Some(id)) => {
                        self.fail_pending(&r.from, id, RpcError::Decode(e.into()))
                    }
                    _ => {}
                }
            }
        }
    }
}
