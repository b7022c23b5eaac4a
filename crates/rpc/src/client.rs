//! The calling side's shell: encodes and sends calls, waits on a oneshot
//! channel with a timer per call, and does what the call table
//! ([`crate::core::calls`]) decides: resend after a reconnect, CANCEL when
//! a call is given up, wake callers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use weft_messaging::{Identity, Message, Received};

use crate::core::calls::{CallEvent, NewCall, Transmit, TransmitKind};
use crate::rpc::{Inner, lock};
use crate::stats::inc;
use crate::wire::{self, Body, Outcome};
use crate::{Rpc, RpcError};

/// How a waiting caller is woken: the core's call table holds one per call.
pub(crate) type Waiter = oneshot::Sender<Result<Bytes, RpcError>>;

/// Gives a call up (its future dropped) before its result arrived: the
/// call table queues a CANCEL, sent here.
pub(crate) struct CallGuard<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) id: u64,
    pub(crate) live: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.live && lock(&self.inner.calls).handle_cancel(self.id) {
            self.inner.drain_calls();
        }
    }
}

/// The longest timeout a call may have: what `deadline_ms` can carry.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_millis(u32::MAX as u64);

impl Rpc {
    pub(crate) async fn call_body(
        &self,
        to: &Identity,
        object: &str,
        method: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(RpcError::Closed);
        }
        let timeout = timeout.min(MAX_TIMEOUT);
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let frame = wire::call_frame(id, object, method, deadline_ms, body);
        let limit = inner.config.max_request_bytes;
        if frame.len() > limit {
            return Err(RpcError::TooLarge {
                what: "request",
                size: frame.len(),
                limit,
            });
        }
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        lock(&inner.calls).start(
            NewCall {
                id,
                to: to.clone(),
                frame: frame.clone(),
                deadline: deadline.into_std(),
                timeout,
                connected: inner.messaging.is_connected(to),
            },
            tx,
        );
        let mut guard = CallGuard {
            inner,
            id,
            live: true,
        };
        if let Err(e) = inner
            .messaging
            .try_send_message(to, Message::new(frame).with_ttl(timeout))
        {
            guard.live = false;
            lock(&inner.calls).forget(id);
            return Err(e.into());
        }
        inc(&inner.counters.calls_sent);
        tracing::trace!(id, %to, object, method, "call sent");
        let outcome = tokio::time::timeout_at(deadline, rx).await;
        guard.live = false;
        match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(RpcError::Cancelled),
            Err(_) => {
                // The timer fired, so the deadline has passed: the core
                // gives up this call and any other whose time is up.
                let now = Instant::now().max(deadline).into_std();
                lock(&inner.calls).handle_timeout(now);
                inner.drain_calls();
                Err(RpcError::Timeout(timeout))
            }
        }
    }

    pub(crate) fn signal_body(
        &self,
        to: &Identity,
        object: &str,
        method: &str,
        body: Body,
        ttl: Duration,
    ) -> Result<(), RpcError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(RpcError::Closed);
        }
        let frame = wire::signal_frame(object, method, body);
        let limit = inner.config.max_request_bytes;
        if frame.len() > limit {
            return Err(RpcError::TooLarge {
                what: "request",
                size: frame.len(),
                limit,
            });
        }
        inner
            .messaging
            .try_send_message(to, Message::new(frame).with_ttl(ttl))?;
        inc(&inner.counters.signals_sent);
        Ok(())
    }
}

impl Inner {
    /// The caller's peer is back: send again the calls that may have been
    /// lost with the old connection.
    pub(crate) fn resend_to(&self, who: &Identity) {
        let now = Instant::now().into_std();
        lock(&self.calls).handle_connected(who, now);
        self.drain_calls();
    }

    /// Does what the call table asks: sends its frames and tells the
    /// callers it gave up. Each item is taken under the lock and dealt
    /// with outside it.
    pub(crate) fn drain_calls(&self) {
        loop {
            let (transmit, event) = {
                let mut calls = lock(&self.calls);
                (calls.poll_transmit(), calls.poll_event())
            };
            if transmit.is_none() && event.is_none() {
                return;
            }
            if let Some(t) = transmit {
                self.transmit(t);
            }
            match event {
                Some(CallEvent::TimedOut {
                    id,
                    timeout,
                    waiter,
                }) => {
                    inc(&self.counters.timed_out);
                    tracing::trace!(id, "call timed out");
                    let _ = waiter.send(Err(RpcError::Timeout(timeout)));
                }
                // Dropping the waiter fails the call with `Cancelled`.
                Some(CallEvent::Closed { id, waiter }) => {
                    tracing::trace!(id, "call given up on close");
                    drop(waiter);
                }
                None => {}
            }
        }
    }

    fn transmit(&self, t: Transmit) {
        let counter = match t.kind {
            TransmitKind::Resend => &self.counters.calls_resent,
            TransmitKind::Cancel => &self.counters.cancels_sent,
        };
        match self
            .messaging
            .try_send_message(&t.to, Message::new(t.frame).with_ttl(t.ttl))
        {
            Ok(()) => inc(counter),
            Err(e) => {
                inc(&self.counters.send_failures);
                tracing::debug!(to = %t.to, kind = ?t.kind, error = %e, "RPC frame not sent");
            }
        }
    }

    pub(crate) fn on_result(&self, r: &Received, reply: wire::Reply<'_>) {
        let Some(waiter) = lock(&self.calls).handle_result(&r.from, reply.id) else {
            inc(&self.counters.results_unmatched);
            return;
        };
        inc(&self.counters.results_received);
        let outcome = match reply.outcome {
            Outcome::Ok(value) => Ok(r.message.data.slice_ref(value)),
            Outcome::Err(e) => Err(RpcError::Remote(e)),
        };
        let _ = waiter.send(outcome);
    }

    pub(crate) fn fail_pending(&self, from: &Identity, id: u64, error: RpcError) {
        if let Some(waiter) = lock(&self.calls).handle_result(from, id) {
            let _ = waiter.send(Err(error));
        }
    }
}
