//! The calling side: calls waiting for their result, sent again after a
//! reconnect, cancelled when given up.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use weft_messaging::{Identity, Message, Received};

use crate::rpc::{Inner, lock};
use crate::stats::inc;
use crate::wire::{self, Body, Outcome};
use crate::{Rpc, RpcError};

/// A call waiting for its result.
pub(crate) struct Pending {
    pub(crate) to: Identity,
    /// The CALL frame, to send again after a reconnect.
    pub(crate) frame: Bytes,
    pub(crate) deadline: Instant,
    /// Send again when `to` reconnects: the frame may have gone out on
    /// the connection that broke.
    pub(crate) resend: bool,
    pub(crate) tx: oneshot::Sender<Result<Bytes, RpcError>>,
}

/// Sends CANCEL when a call is given up (timed out, or its future dropped)
/// before its result arrived.
pub(crate) struct CallGuard<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) to: &'a Identity,
    pub(crate) id: u64,
    pub(crate) ttl: Duration,
    pub(crate) live: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.live || lock(&self.inner.pending).remove(&self.id).is_none() {
            return;
        }
        let cancel = Message::new(wire::cancel_frame(self.id)).with_ttl(self.ttl);
        match self.inner.messaging.try_send_message(self.to, cancel) {
            Ok(()) => inc(&self.inner.counters.cancels_sent),
            Err(e) => {
                inc(&self.inner.counters.send_failures);
                tracing::debug!(id = self.id, to = %self.to, error = %e, "CANCEL not sent");
            }
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
        lock(&inner.pending).insert(
            id,
            Pending {
                to: to.clone(),
                frame: frame.clone(),
                deadline,
                resend: inner.messaging.is_connected(to),
                tx,
            },
        );
        let mut guard = CallGuard {
            inner,
            to,
            id,
            ttl: timeout,
            live: true,
        };
        if let Err(e) = inner
            .messaging
            .try_send_message(to, Message::new(frame).with_ttl(timeout))
        {
            guard.live = false;
            lock(&inner.pending).remove(&id);
            return Err(e.into());
        }
        inc(&inner.counters.calls_sent);
        tracing::trace!(id, %to, object, method, "call sent");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => {
                guard.live = false;
                outcome
            }
            Ok(Err(_)) => {
                guard.live = false;
                Err(RpcError::Cancelled)
            }
            Err(_) => {
                inc(&inner.counters.timed_out);
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
        let now = Instant::now();
        let mut again = Vec::new();
        for p in lock(&self.pending).values_mut() {
            if p.to == *who {
                if p.resend && p.deadline > now {
                    again.push((p.frame.clone(), p.deadline - now));
                }
                // Sent on this connection from now on (queued ones leave
                // as it comes up).
                p.resend = true;
            }
        }
        for (frame, ttl) in again {
            match self
                .messaging
                .try_send_message(who, Message::new(frame).with_ttl(ttl))
            {
                Ok(()) => inc(&self.counters.calls_resent),
                Err(_) => inc(&self.counters.send_failures),
            }
        }
    }

    pub(crate) fn on_result(&self, r: &Received, reply: wire::Reply<'_>) {
        let Some(pending) = self.take_pending(&r.from, reply.id) else {
            inc(&self.counters.results_unmatched);
            return;
        };
        inc(&self.counters.results_received);
        let outcome = match reply.outcome {
            Outcome::Ok(value) => Ok(r.message.data.slice_ref(value)),
            Outcome::Err(e) => Err(RpcError::Remote(e)),
        };
        let _ = pending.tx.send(outcome);
    }

    pub(crate) fn fail_pending(&self, from: &Identity, id: u64, error: RpcError) {
        if let Some(p) = self.take_pending(from, id) {
            let _ = p.tx.send(Err(error));
        }
    }

    /// The pending call `id`, if it was made to `from`.
    pub(crate) fn take_pending(&self, from: &Identity, id: u64) -> Option<Pending> {
        let mut pending = lock(&self.pending);
        match pending.get(&id) {
            Some(p) if p.to == *from => pending.remove(&id),
            _ => None,
        }
    }
}
