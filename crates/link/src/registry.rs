//! What every task of a link shares: its configuration, its event sender,
//! the tables of live connections, listeners and connectors, and its
//! counters. [`Link`](crate::Link) is a handle to one of these.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::Scheme;
use crate::connection::{ConnectionInfo, Ends};
use crate::quic::StunInbox;
use crate::udp::UdpListener;
use crate::{
    Connection, ConnectionId, ConnectorId, DisconnectReason, LinkConfig, LinkError, LinkEvent,
    ListenerId, Origin,
};

/// The link's counters, read as a [`LinkStats`](crate::LinkStats) snapshot.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) accept_failures: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    /// Shared with the QUIC sockets' wrappers, which count as they receive.
    pub(crate) quic_datagrams_dropped: Arc<AtomicU64>,
    /// Shared with the QUIC sockets' STUN inboxes, which count as they drop.
    pub(crate) stun_datagrams_dropped: Arc<AtomicU64>,
}

/// A running listener: how to stop it and what to clean up after it.
pub(crate) struct ListenerEntry {
    pub(crate) cancel: CancellationToken,
    /// The Unix socket file it created, removed when it stops.
    pub(crate) unix_file: Option<PathBuf>,
    /// For UDP listeners, the socket and its peers.
    pub(crate) udp: Option<Arc<UdpListener>>,
    /// For QUIC listeners, the STUN datagrams of their socket.
    pub(crate) stun: Option<Arc<StunInbox>>,
}

impl ListenerEntry {
    fn stop(self) {
        self.cancel.cancel();
        if let Some(file) = self.unix_file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// A running connector: how to stop it, and whether it rests.
struct ConnectorEntry {
    cancel: CancellationToken,
    rest: watch::Sender<bool>,
}

pub(crate) struct Registry {
    pub(crate) config: LinkConfig,
    /// `None` once the link is closing: nothing new may start.
    events: Mutex<Option<mpsc::Sender<LinkEvent>>>,
    next_id: AtomicU64,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    listeners: Mutex<HashMap<ListenerId, ListenerEntry>>,
    connectors: Mutex<HashMap<ConnectorId, ConnectorEntry>>,
    /// The parent of every listener's, connector's and connection's token.
    shutdown: CancellationToken,
    /// Cancelled when [`close`](Self::close) begins (and with `shutdown`):
    /// what has no connection yet (a handshake on an adopted stream)
    /// stops.
    closing: CancellationToken,
    tracker: TaskTracker,
    pub(crate) stats: Counters,
    /// The client endpoints the link's QUIC connectors share.
    pub(crate) quic_clients: crate::quic::ClientEndpoints,
    /// The QUIC connections lanes can be opened beside.
    pub(crate) lane_hosts: crate::quic::LaneHosts,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub(crate) fn new(config: LinkConfig, events: mpsc::Sender<LinkEvent>) -> Registry {
        let shutdown = CancellationToken::new();
        let closing = shutdown.child_token();
        Registry {
            config,
            events: Mutex::new(Some(events)),
            next_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            listeners: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
            shutdown,
            closing,
            tracker: TaskTracker::new(),
            stats: Counters::default(),
            quic_clients: Default::default(),
            lane_hosts: Default::default(),
        }
    }

    /// A fresh id; listeners, connectors and connections share the sequence.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The event sender, or `Closed` once the link is closing.
    pub(crate) fn sender(&self) -> Result<mpsc::Sender<LinkEvent>, LinkError> {
        lock(&self.events).clone().ok_or(LinkError::Closed)
    }

    /// Runs a task of this link; [`close`](Self::close) waits for it.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// The link-wide token: cancelled when the last handle goes.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancelled once the link is closing or gone.
    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// Registers a new connection; its token is a child of `parent`.
    pub(crate) fn new_connection(
        &self,
        origin: Origin,
        ends: Ends,
        datagram: bool,
        parent: &CancellationToken,
    ) -> Connection {
        let id = self.reserve_id();
        self.new_connection_as(id, origin, ends, datagram, parent)
    }

    /// A connection id taken now for a connection registered later with
    /// [`new_connection_as`](Self::new_connection_as).
    pub(crate) fn reserve_id(&self) -> ConnectionId {
        ConnectionId(self.next_id())
    }

    /// Registers a new connection under `id`, from
    /// [`reserve_id`](Self::reserve_id).
    pub(crate) fn new_connection_as(
        &self,
        id: ConnectionId,
        origin: Origin,
        ends: Ends,
        datagram: bool,
        parent: &CancellationToken,
    ) -> Connection {
        // The first stream of a QUIC connection can have lanes beside it.
        let lanes = !matches!(origin, Origin::Lane(_))
            && ends
                .peer
                .as_ref()
                .is_some_and(|p| p.scheme() == Scheme::Quic);
        let info = ConnectionInfo {
            id,
            origin,
            lanes,
            peer: ends.peer,
            local: ends.local,
            peer_certificates: ends.certificates,
            datagram,
            peer_credentials: ends.credentials,
        };
        let conn = Connection::new(info, self.config.send_queue_bytes, parent);
        lock(&self.connections).insert(conn.id(), conn.clone());
        // Accepted or dialled while the link was closing, after close()
        // looked at the connections: it closes like the others.
        if self.is_closing() {
            conn.close();
        }
        self.stats
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        conn
    }

    /// Forgets a connection that has ended; its queue refuses new data.
    pub(crate) fn unregister(&self, conn: &Connection, reason: DisconnectReason) {
        conn.shared.queue.mark_closed();
        if lock(&self.connections).remove(&conn.id()).is_some() {
            self.stats
                .connections_closed
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(conn = %conn.id(), %reason, "disconnected");
        }
    }

    /// Sends an informational event, or counts it as dropped when the queue
    /// is full.
    pub(crate) fn inform(&self, events: &mpsc::Sender<LinkEvent>, event: LinkEvent) {
        if events.try_send(event).is_err() {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn connection(&self, id: ConnectionId) -> Option<Connection> {
        lock(&self.connections).get(&id).cloned()
    }

    pub(crate) fn connections(&self) -> Vec<Connection> {
        lock(&self.connections).values().cloned().collect()
    }

    pub(crate) fn connection_count(&self) -> usize {
        lock(&self.connections).len()
    }

    pub(crate) fn add_listener(&self, id: ListenerId, entry: ListenerEntry) {
        lock(&self.listeners).insert(id, entry);
    }

    /// Stops a listener; whether it existed.
    pub(crate) fn remove_listener(&self, id: ListenerId) -> bool {
        let entry = lock(&self.listeners).remove(&id);
        entry.map(ListenerEntry::stop).is_some()
    }

    pub(crate) fn quic_stun(&self, id: ListenerId) -> Option<Arc<StunInbox>> {
        lock(&self.listeners).get(&id).and_then(|l| l.stun.clone())
    }

    pub(crate) fn udp_listener(&self, id: ListenerId) -> Option<Arc<UdpListener>> {
        lock(&self.listeners).get(&id).and_then(|l| l.udp.clone())
    }

    pub(crate) fn add_connector(&self, id: ConnectorId, cancel: CancellationToken) {
        let entry = ConnectorEntry {
            cancel,
            rest: watch::channel(false).0,
        };
        lock(&self.connectors).insert(id, entry);
        if self.is_closing() {
            // Added while the link was closing, after close() stopped the
            // others: it stops too.
            if let Some(entry) = lock(&self.connectors).remove(&id) {
                entry.cancel.cancel();
            }
        }
    }

    /// Whether [`close`](Self::close) or [`abort`](Self::abort) began.
    fn is_closing(&self) -> bool {
        lock(&self.events).is_none()
    }

    /// Stops a connector (and so its connection); whether it existed.
    pub(crate) fn remove_connector(&self, id: ConnectorId) -> bool {
        let entry = lock(&self.connectors).remove(&id);
        entry.map(|e| e.cancel.cancel()).is_some()
    }

    /// Whether a connector rests: once its connection ends, it does not
    /// connect again until told to go on. Returns whether it exists.
    pub(crate) fn rest_connector(&self, id: ConnectorId, rest: bool) -> bool {
        let connectors = lock(&self.connectors);
        let Some(entry) = connectors.get(&id) else {
            return false;
        };
        entry.rest.send_replace(rest);
        true
    }

    /// What tells a connector to rest, for its task.
    pub(crate) fn rest_signal(&self, id: ConnectorId) -> Option<watch::Receiver<bool>> {
        lock(&self.connectors).get(&id).map(|e| e.rest.subscribe())
    }

    /// The last handle is gone: everything stops now.
    pub(crate) fn abort(&self) {
        self.shutdown.cancel();
        lock(&self.events).take();
        self.tracker.close();
    }

    /// Stops listeners and connectors, closes every connection after its
    /// queued data, and waits for every task to end.
    pub(crate) async fn close(&self) {
        // First, so that a connection or connector registered from here on
        // sees the link closing (an accept or a dial already under way
        // registers after the loops below looked).
        lock(&self.events).take();
        self.closing.cancel();
        let listeners: Vec<_> = lock(&self.listeners).drain().collect();
        for (_, entry) in listeners {
            entry.stop();
        }
        for (_, entry) in lock(&self.connectors).drain() {
            // Connectors stop connecting; their live connection closes below.
            entry.cancel.cancel();
        }
        for conn in self.connections() {
            conn.close();
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends() -> Ends {
        Ends {
            peer: None,
            local: None,
            certificates: None,
            credentials: None,
        }
    }

    #[tokio::test]
    async fn what_registers_while_the_link_closes_is_closed_too() {
        let (tx, _rx) = mpsc::channel(8);
        let registry = Registry::new(LinkConfig::default(), tx);
        let before = registry.new_connection(Origin::Adopted, ends(), false, registry.shutdown());
        assert!(!before.shared.closing.is_cancelled());
        registry.close().await;
        assert!(before.shared.closing.is_cancelled());
        // An accept or a dial that was under way registers after close()
        // looked at the connections and connectors.
        let late = registry.new_connection(Origin::Adopted, ends(), false, registry.shutdown());
        assert!(
            late.shared.closing.is_cancelled(),
            "a late connection closes"
        );
        let cancel = CancellationToken::new();
        registry.add_connector(ConnectorId(registry.next_id()), cancel.clone());
        assert!(cancel.is_cancelled(), "a late connector stops");
        assert!(registry.connectors.lock().unwrap().is_empty());
    }
}
