//! The pipe's task, the shell around its [core](super::core): it hands the
//! link's events to the core and does what the core asks (relays, queue
//! deliveries, handlers), in order, one event at a time.

use std::sync::{Arc, Weak};

use super::core::{Action, Received};
use super::peers::{PeerInfo, Route};
use super::pipe::{Handle, Pipe, Shared, Shell};
use super::stats::bump;
use crate::{LinkEvent, LinkEvents};

/// Marks the pipe finished however the task ends (also by a panicking
/// handler), so `close` never waits for a task that is gone.
struct FinishGuard(Arc<Shared>);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Runs the pipe until its events end, it is closed, or its last handle
/// is dropped.
pub(super) async fn run(shared: Arc<Shared>, handle: Weak<Handle>, events: LinkEvents) {
    let _guard = FinishGuard(shared.clone());
    let driver = Driver { shared, handle };
    driver.run_link(events).await;
    tracing::debug!(pipe = driver.shared.id, "pipe closed");
}

struct Driver {
    shared: Arc<Shared>,
    handle: Weak<Handle>,
}

impl Driver {
    /// A handle for handlers, while the pipe has one.
    fn pipe(&self) -> Option<Pipe> {
        self.handle.upgrade().map(|handle| Pipe { handle })
    }

    async fn run_link(&self, mut events: LinkEvents) {
        let abort = self.shared.abort.clone();
        loop {
            let event = tokio::select! {
                biased;
                _ = abort.cancelled() => break,
                e = events.recv() => e,
            };
            let Some(event) = event else { break };
            tokio::select! {
                biased;
                _ = abort.cancelled() => break,
                _ = self.on_link_event(event) => {}
            }
        }
    }

    /// Hands one event to the core, then does what the core asks, in
    /// order.
    async fn on_link_event(&self, event: LinkEvent) {
        let sh = &self.shared;
        match event {
            LinkEvent::Connected(conn) => {
                let info = PeerInfo::of(conn.info().clone());
                tracing::trace!(pipe = sh.id, conn = %info.connection, "up");
                sh.lock().handle_connected(info, Route(conn));
            }
            LinkEvent::Data { connection, data } => {
                bump(&sh.stats.messages_received);
                if sh.lock().handle_data(connection, data) == Received::Duplicate {
                    bump(&sh.stats.duplicates_dropped);
                }
            }
            LinkEvent::Disconnected { connection, reason } => {
                tracing::trace!(pipe = sh.id, conn = %connection, %reason, "end");
                sh.lock().handle_disconnected(connection, reason);
            }
            LinkEvent::ConnectFailed { error, .. } => {
                tracing::debug!(pipe = sh.id, %error, "connect failed");
            }
            LinkEvent::AcceptFailed { error, .. } => {
                tracing::debug!(pipe = sh.id, %error, "accept failed");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        loop {
            let action = sh.lock().poll_action();
            let Some(action) = action else { break };
            self.perform(action).await;
        }
    }

    async fn perform(&self, action: Action<Shell>) {
        let sh = &self.shared;
        match action {
            Action::Relay { message, targets } => {
                for (id, target) in targets {
                    let Some(handle) = target.pipe.upgrade() else {
                        bump(&sh.stats.relay_failures);
                        continue;
                    };
                    let other = Pipe { handle };
                    match other.send(message.data.clone(), target.to).await {
                        Ok(()) => bump(&sh.stats.relayed),
                        Err(error) => {
                            bump(&sh.stats.relay_failures);
                            tracing::debug!(pipe = sh.id, relay = %id, %error, "relay failed");
                        }
                    }
                }
            }
            Action::Deliver { message, queues } => {
                for queue in queues {
                    if queue.push(message.clone()) {
                        bump(&sh.stats.queue_dropped);
                    }
                }
            }
            Action::RunMessageHandlers { message, handlers } => {
                let Some(pipe) = self.pipe() else { return };
                for (_, h) in handlers.iter() {
                    h.call(message.clone(), pipe.clone()).await;
                }
            }
            Action::RunUpHandlers { peer, handlers } => {
                let Some(pipe) = self.pipe() else { return };
                for (_, h) in handlers.iter() {
                    h.call(peer.clone(), pipe.clone()).await;
                }
            }
            Action::RunEndHandlers {
                peer,
                reason,
                handlers,
            } => {
                let Some(pipe) = self.pipe() else { return };
                for (_, h) in handlers.iter() {
                    h.call(peer.clone(), reason.clone(), pipe.clone()).await;
                }
            }
        }
    }
}
