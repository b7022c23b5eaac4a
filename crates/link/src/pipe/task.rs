//! The pipe's task: reads the link's events (or an adopted UDP socket) and
//! runs each message through dedupe, relays, queues and handlers, in order.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::dedupe::SenderKey;
use super::{
    Handle, Handlers, PeerInfo, Pipe, PipeMessage, Route, Shared, UpHandler, bump, normalize_addr,
    raw_entry,
};
use crate::{Address, ConnectionId, Link, LinkEvent, LinkEvents, SocketOptions};

/// Where the task's events come from.
pub(super) enum Source {
    /// A link's events.
    Link(LinkEvents),
    /// An adopted UDP socket, read directly.
    Udp {
        socket: Arc<UdpSocket>,
        max_datagram: usize,
    },
}

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
pub(super) async fn run(shared: Arc<Shared>, handle: Weak<Handle>, source: Source) {
    let _guard = FinishGuard(shared.clone());
    let driver = Driver { shared, handle };
    match source {
        Source::Link(events) => driver.run_link(events).await,
        Source::Udp {
            socket,
            max_datagram,
        } => driver.run_udp(&socket, max_datagram).await,
    }
    tracing::debug!(pipe = driver.shared.id, "pipe closed");
}

/// Accepts from an adopted TCP listener into the pipe's link until `stop`.
pub(super) async fn accept(
    listener: tokio::net::TcpListener,
    link: Link,
    sockopts: SocketOptions,
    stop: CancellationToken,
    stopped: CancellationToken,
) {
    let _stopped = stopped.drop_guard();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(sockopts.nodelay);
                if let Some(linger) = sockopts.linger {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(linger));
                }
                let local = stream.local_addr().ok().map(Address::tcp);
                if let Err(e) = link.adopt(stream, Some(Address::tcp(peer)), local) {
                    tracing::debug!("adopting an accepted stream failed: {e}");
                    break;
                }
            }
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// A peer heard from for the first time, and the up handlers to run.
type Announce = (PeerInfo, Handlers<UpHandler>);

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
                    st.insert_peer(info.clone(), Route::Link(conn), true);
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

    async fn run_udp(&self, socket: &UdpSocket, max_datagram: usize) {
        let sh = &self.shared;
        let (stop, abort) = (sh.close_requested.clone(), sh.abort.clone());
        let mut buf = vec![0u8; max_datagram.max(1)];
        loop {
            let received = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = socket.recv_from(&mut buf) => r,
            };
            let (n, from) = match received {
                Ok(x) => x,
                // ICMP port unreachable from an earlier send.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::warn!(pipe = sh.id, "UDP receive failed: {e}");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    continue;
                }
            };
            let data = Bytes::copy_from_slice(&buf[..n]);
            let Some((id, announce)) = self.udp_peer_for(from) else {
                bump(&sh.stats.datagrams_dropped);
                continue;
            };
            let work = async {
                if let Some((info, handlers)) = announce {
                    self.run_up(info, handlers).await;
                }
                self.on_data(id, data).await;
            };
            tokio::select! {
                biased;
                _ = abort.cancelled() => break,
                _ = work => {}
            }
        }
    }

    /// The peer entry of an adopted UDP socket for a sender, made if new
    /// (unless the pipe tracks too many), with its up handlers when it is
    /// heard from for the first time.
    fn udp_peer_for(&self, from: SocketAddr) -> Option<(ConnectionId, Option<Announce>)> {
        let sh = &self.shared;
        let raw = sh.raw.as_ref()?;
        let mut st = sh.lock();
        let handlers = st.up_handlers.clone();
        if let Some(&id) = st.by_addr.get(&normalize_addr(from)) {
            let entry = st.peers.get_mut(&id)?;
            let announce = !entry.announced;
            entry.announced = true;
            return Some((id, announce.then(|| (entry.info.clone(), handlers))));
        }
        if st.peers.len() >= sh.max_udp_peers {
            return None;
        }
        let (info, route) = raw_entry(raw, from);
        let id = info.connection;
        st.insert_peer(info.clone(), route, true);
        Some((id, Some((info, handlers))))
    }
}
