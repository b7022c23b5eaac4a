//! The pipe's task: reads the link's events and runs each message through
//! dedupe, relays, queues and handlers, in order.

use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::dedupe::SenderKey;
use super::{Handle, Handlers, PeerInfo, Pipe, PipeMessage, Route, Shared, UpHandler, bump};
use crate::{ConnectionId, LinkEvent, LinkEvents};

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

    async fn on_link_event(&self, event: LinkEvent) {
        match event {
            LinkEvent::Connected(conn) => {
                let info = PeerInfo::of(conn.info().clone());
                let handlers = {
                    let mut st = self.shared.lock();
                    st.insert_peer(info.clone(), Route(conn));
                    st.up_handlers.clone()
                };
                tracing::trace!(pipe = self.shared.id, conn = %info.connection, "up");
                self.run_up(info, handlers).await;
            }
            LinkEvent::Data { connection, data } => self.on_data(connection, data).await,
            LinkEvent::Disconnected { connection, reason } => {
                let (info, handlers) = {
                    let mut st = self.shared.lock();
                    (st.remove_peer(connection), st.end_handlers.clone())
                };
                tracing::trace!(pipe = self.shared.id, conn = %connection, %reason, "end");
                let Some(info) = info else { return };
                if handlers.is_empty() {
                    return;
                }
                let Some(pipe) = self.pipe() else { return };
                for (_, h) in handlers.iter() {
                    h.call(info.clone(), reason.clone(), pipe.clone()).await;
                }
            }
            LinkEvent::ConnectFailed { error, .. } => {
                tracing::debug!(pipe = self.shared.id, %error, "connect failed");
            }
            LinkEvent::AcceptFailed { error, .. } => {
                tracing::debug!(pipe = self.shared.id, %error, "accept failed");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    async fn run_up(&self, info: PeerInfo, handlers: Handlers<UpHandler>) {
        if handlers.is_empty() {
            return;
        }
        let Some(pipe) = self.pipe() else { return };
        for (_, h) in handlers.iter() {
            h.call(info.clone(), pipe.clone()).await;
        }
    }

    /// One message: dedupe, relays, queues, handlers.
    async fn on_data(&self, connection: ConnectionId, data: Bytes) {
        let sh = &self.shared;
        bump(&sh.stats.messages_received);
        let (msg, relays) = {
            let mut st = sh.lock();
            let from = st.peers.get(&connection).and_then(|p| p.info.addr);
            let sender = match from {
                Some(addr) => SenderKey::Addr(addr),
                None => SenderKey::Connection(connection),
            };
            if let Some(dedupe) = &mut st.dedupe {
                if dedupe.is_duplicate(sender, &data) {
                    bump(&sh.stats.duplicates_dropped);
                    return;
                }
            }
            let msg = PipeMessage {
                data,
                from,
                connection,
            };
            (msg, st.relays.clone())
        };
        for (id, target) in relays.iter() {
            let Some(handle) = target.upgrade() else {
                bump(&sh.stats.relay_failures);
                continue;
            };
            let other = Pipe { handle };
            match other.send(msg.data.clone(), None).await {
                Ok(()) => bump(&sh.stats.relayed),
                Err(error) => {
                    bump(&sh.stats.relay_failures);
                    tracing::debug!(pipe = sh.id, relay = %id, %error, "relay failed");
                }
            }
        }
        let handlers = {
            let st = sh.lock();
            for queue in &st.queues {
                if queue.subscription().matches(&msg.data, msg.from) && queue.push(msg.clone()) {
                    bump(&sh.stats.queue_dropped);
                }
            }
            st.message_handlers.clone()
        };
        if handlers.is_empty() {
            return;
        }
        let Some(pipe) = self.pipe() else { return };
        for (_, h) in handlers.iter() {
            h.call(msg.clone(), pipe.clone()).await;
        }
    }
}
