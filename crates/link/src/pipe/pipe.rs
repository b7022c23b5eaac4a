//! The [`Pipe`] handle: what its clones share with its task, and its API
//! for sending, handlers, subscriptions, relays and closing.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::core::{Found, Handles, PipeCore};
use super::peers::{Peer, PeerInfo, PipeMessage, Route, in_family_of};
use super::stats::{Counters, PipeStats, bump};
use super::{
    CURRENT_PIPE, DropPolicy, EndHandler, HandlerId, MessageHandler, PipeError, Role, Subscription,
    SubscriptionId, SubscriptionQueue, UpHandler, next_id, normalize_addr,
};
use crate::{Address, ConnectionId, Link, LinkStats, ListenerId, Scheme};

/// Identifies a relay made with [`Pipe::relay_to`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub(crate) u64);

impl fmt::Display for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "relay#{}", self.0)
    }
}

/// The shell's handles in the core: a peer's connection, a relay's
/// target, a subscription's queue.
pub(super) struct Shell;

impl Handles for Shell {
    type Route = Route;
    type Target = RelayTarget;
    type Queue = SubscriptionQueue;
}

/// Where a relay sends: a pipe (held weakly: a relay does not keep its
/// target open) and the peer of it, or its destination when `None`.
#[derive(Clone)]
pub(super) struct RelayTarget {
    pub(super) pipe: Weak<Handle>,
    pub(super) to: Option<Peer>,
}

/// What the pipe's handles and its task share.
pub(super) struct Shared {
    pub(super) id: u64,
    pub(super) role: Role,
    pub(super) scheme: Scheme,
    pub(super) destination: Option<Address>,
    pub(super) dest_connection: Option<ConnectionId>,
    pub(super) local: Option<Address>,
    pub(super) udp_listener: Option<ListenerId>,
    /// Whether `try_send` may make a UDP peer connection (adopted
    /// unconnected sockets), or only `send` may (pipes opened from an
    /// address).
    pub(super) try_send_makes_peers: bool,
    pub(super) recv_timeout: Duration,
    pub(super) send_retries: u32,
    pub(super) send_retry_wait: Duration,
    pub(super) queue_capacity: usize,
    pub(super) queue_policy: DropPolicy,
    pub(super) max_udp_peers: usize,
    pub(super) default_queue: Option<SubscriptionQueue>,
    pub(super) core: Mutex<PipeCore<Shell>>,
    pub(super) stats: Counters,
    /// Cancelled when the last handle goes: the task stops at once.
    pub(super) abort: CancellationToken,
    /// Cancelled by `close` (and by `abort`, being its child).
    pub(super) close_requested: CancellationToken,
    /// Cancelled when the task has ended.
    pub(super) finished: CancellationToken,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, PipeCore<Shell>> {
        // No invariant spans a panic here that matters more than going on.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn local_socket_addr(&self) -> Option<SocketAddr> {
        self.local.as_ref().and_then(Address::socket_addr)
    }

    /// The address in the family of our socket: an IPv4 peer of an IPv6
    /// socket becomes `::ffff:a.b.c.d`, a mapped peer of an IPv4 socket
    /// plain IPv4.
    pub(super) fn in_our_family(&self, addr: SocketAddr) -> SocketAddr {
        in_family_of(self.local_socket_addr(), addr)
    }

    /// The connection of the UDP listener to `addr`, made now without
    /// waiting, for `try_send` on adopted unconnected sockets.
    pub(super) fn try_udp_peer(&self, link: &Link, addr: SocketAddr) -> Result<Route, PipeError> {
        let listener = self
            .udp_listener
            .filter(|_| self.try_send_makes_peers)
            .ok_or(PipeError::UnknownPeer(Peer::Addr(addr)))?;
        self.check_room()?;
        let conn = link
            .try_udp_peer(listener, self.in_our_family(addr))
            .map_err(PipeError::from_link)?;
        self.lock()
            .add_peer(PeerInfo::of(conn.info().clone()), Route(conn.clone()));
        Ok(Route(conn))
    }

    /// Fails with `TooManyPeers` when a UDP pipe tracks as many peers as
    /// it may.
    pub(super) fn check_room(&self) -> Result<(), PipeError> {
        if self.lock().peer_count() >= self.max_udp_peers {
            return Err(PipeError::TooManyPeers {
                max: self.max_udp_peers,
            });
        }
        Ok(())
    }

    pub(super) fn find(&self, to: Option<Peer>) -> Result<Found<Route>, PipeError> {
        if self.close_requested.is_cancelled() {
            return Err(PipeError::Closed);
        }
        self.lock().route(to, self.dest_connection)
    }

    /// Ends the pipe's life: queues close (what is queued stays readable),
    /// handlers and relays are released.
    pub(super) fn finish(&self) {
        let queues = self.lock().close();
        for q in queues {
            q.close();
        }
        self.close_requested.cancel();
        self.finished.cancel();
    }
}

/// What dropping the last [`Pipe`] drops.
pub(super) struct Handle {
    pub(super) shared: Arc<Shared>,
    pub(super) link: Link,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.abort.cancel();
    }
}

/// A P2PD-style pipe: a client or server endpoint over TCP, TLS, UDP or a
/// Unix socket, with message handlers, subscription queues, deduplication
/// and relaying. See the [module documentation](super).
///
/// Cheap to clone; all clones are the same pipe. Dropping the last handle
/// aborts the pipe; [`close`](Self::close) closes it gracefully. Opening a
/// pipe needs a Tokio runtime.
#[derive(Clone)]
pub struct Pipe {
    pub(super) handle: Arc<Handle>,
}

impl fmt::Debug for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sh = self.shared();
        f.debug_struct("Pipe")
            .field("role", &sh.role)
            .field("scheme", &sh.scheme)
            .field("local", &sh.local)
            .field("destination", &sh.destination)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Pipe {
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.shared().role
    }

    /// The transport.
    pub fn scheme(&self) -> Scheme {
        self.shared().scheme
    }

    /// Where a client pipe sends by default, as it was given (it may name
    /// a host); `None` for servers.
    pub fn destination(&self) -> Option<&Address> {
        self.shared().destination.as_ref()
    }

    /// The socket address a client pipe is connected to, normalised;
    /// `None` for servers and Unix sockets.
    pub fn destination_addr(&self) -> Option<SocketAddr> {
        let sh = self.shared();
        let id = sh.dest_connection?;
        let core = sh.lock();
        core.peer(id).and_then(|p| p.addr).or_else(|| {
            sh.destination
                .as_ref()
                .and_then(Address::socket_addr)
                .map(normalize_addr)
        })
    }

    /// The local address: where a server listens (with the real port when
    /// opened with port 0), or a client's side of its connection.
    pub fn local_address(&self) -> Option<Address> {
        self.shared().local.clone()
    }

    /// The local socket address, when the transport has one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared().local_socket_addr()
    }

    /// The connections (or UDP peers) that are up.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared().lock().peers().cloned().collect()
    }

    /// Sends `data` to `to`, or to a client pipe's destination when `to` is
    /// `None`. A UDP server pipe sends to an address it has not heard from
    /// yet by making a connection for it.
    ///
    /// Waits for room in the peer's bounded send queue, at most
    /// [`PipeConfig::send_retry_wait`](super::PipeConfig::send_retry_wait) per attempt, and tries
    /// [`PipeConfig::send_retries`](super::PipeConfig::send_retries) more times when the queue stayed full
    /// or a server pipe's peer has no connection (yet, or any more). Then
    /// fails with [`PipeError::QueueFull`], [`PipeError::UnknownPeer`] or
    /// [`PipeError::Closed`]. A pipe without a destination given `None`
    /// fails with [`PipeError::NoDestination`] at once.
    ///
    /// Cancel-safe: dropping the future before it completes sends nothing.
    ///
    /// Called from one of this pipe's handlers, a send that has to make a
    /// new UDP peer connection waits for room in the link's event queue,
    /// which only the pipe's task empties; it can wait forever if that
    /// queue is full.
    pub async fn send(&self, data: impl Into<Bytes>, to: Option<Peer>) -> Result<(), PipeError> {
        let data = data.into();
        let sh = self.shared();
        let mut attempt = 0;
        loop {
            let result = match self.route(to).await {
                Ok(route) => route.send(&data, sh.send_retry_wait).await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(()) => {
                    bump(&sh.stats.messages_sent);
                    return Ok(());
                }
                Err(e) => e,
            };
            if attempt >= sh.send_retries || !self.worth_retrying(&error, to) {
                bump(&sh.stats.send_failures);
                return Err(error);
            }
            attempt += 1;
            if !matches!(error, PipeError::QueueFull) {
                // A full queue already waited; a missing peer waits here.
                tokio::select! {
                    _ = tokio::time::sleep(sh.send_retry_wait) => {}
                    _ = sh.close_requested.cancelled() => {}
                }
            }
        }
    }

    fn worth_retrying(&self, error: &PipeError, to: Option<Peer>) -> bool {
        if self.shared().close_requested.is_cancelled() {
            return false;
        }
        match error {
            PipeError::QueueFull | PipeError::UnknownPeer(_) => true,
            // A client's connection does not come back; a server's peer may.
            PipeError::Closed => to.is_some() && self.role() == Role::Server,
            _ => false,
        }
    }

    /// Sends `data` now or fails: with [`PipeError::QueueFull`] when the
    /// peer's send queue (or the UDP socket's buffer) is full, with
    /// [`PipeError::UnknownPeer`] for a peer without a connection (it
    /// cannot make one for a UDP server pipe opened from an address; use
    /// [`send`](Self::send) for that). No retries.
    pub fn try_send(&self, data: impl Into<Bytes>, to: Option<Peer>) -> Result<(), PipeError> {
        let data = data.into();
        let sh = self.shared();
        let result = match sh.find(to) {
            Ok(Found::Route(route)) => route.try_send(&data),
            Ok(Found::Missing(addr)) => sh
                .try_udp_peer(&self.handle.link, addr)
                .and_then(|r| r.try_send(&data)),
            Err(e) => Err(e),
        };
        match &result {
            Ok(()) => bump(&sh.stats.messages_sent),
            Err(_) => bump(&sh.stats.send_failures),
        }
        result
    }

    /// Sends `data` back to where `msg` came from (its connection), like
    /// `send(data, Some(Peer::from(msg)))`. Cancel-safe like
    /// [`send`](Self::send).
    pub async fn reply(&self, msg: &PipeMessage, data: impl Into<Bytes>) -> Result<(), PipeError> {
        self.send(data, Some(Peer::Connection(msg.connection)))
            .await
    }

    async fn route(&self, to: Option<Peer>) -> Result<Route, PipeError> {
        let sh = self.shared();
        let addr = match sh.find(to)? {
            Found::Route(route) => return Ok(route),
            Found::Missing(addr) => addr,
        };
        let Some(listener) = sh.udp_listener else {
            return Err(PipeError::UnknownPeer(Peer::Addr(addr)));
        };
        sh.check_room()?;
        let link = &self.handle.link;
        let conn = link
            .udp_peer(listener, sh.in_our_family(addr))
            .await
            .map_err(PipeError::from_link)?;
        let mut core = sh.lock();
        // Unless the task has seen the connection end already (the link
        // forgets a connection before reporting its end).
        if link.connection(conn.id()).is_some() {
            core.add_peer(PeerInfo::of(conn.info().clone()), Route(conn.clone()));
        }
        Ok(Route(conn))
    }

    /// Adds a handler for every message, run after those added before.
    /// It applies from the next message the pipe's task takes up.
    pub fn add_message_handler<F, Fut>(&self, f: F) -> HandlerId
    where
        F: Fn(PipeMessage, Pipe) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let id = HandlerId(next_id());
        self.shared()
            .lock()
            .add_message_handler(id, MessageHandler::new(f));
        id
    }

    /// Adds a handler for each connection (or UDP peer) that comes up.
    pub fn add_up_handler<F, Fut>(&self, f: F) -> HandlerId
    where
        F: Fn(PeerInfo, Pipe) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let id = HandlerId(next_id());
        self.shared().lock().add_up_handler(id, UpHandler::new(f));
        id
    }

    /// Adds a handler for each connection that ends. (A UDP peer's
    /// connection ends when the pipe closes.)
    pub fn add_end_handler<F, Fut>(&self, f: F) -> HandlerId
    where
        F: Fn(PeerInfo, crate::DisconnectReason, Pipe) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let id = HandlerId(next_id());
        self.shared().lock().add_end_handler(id, EndHandler::new(f));
        id
    }

    /// Removes a message, up or end handler (including those given in the
    /// config). A handler that is running finishes. Returns whether it
    /// existed.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        self.shared().lock().remove_handler(id)
    }

    /// Adds a queue that gets a copy of every message matching `sub` from
    /// now on, holding [`PipeConfig::queue_capacity`](super::PipeConfig::queue_capacity) messages. On a closed
    /// pipe the queue comes back closed.
    pub fn subscribe(&self, sub: Subscription) -> SubscriptionQueue {
        let sh = self.shared();
        let queue = SubscriptionQueue::new(
            SubscriptionId(next_id()),
            sub.clone(),
            sh.queue_capacity,
            sh.queue_policy,
            sh.recv_timeout,
        );
        if !sh.lock().subscribe(queue.id(), sub, queue.clone()) {
            queue.close();
        }
        queue
    }

    /// Removes a subscription and closes its queue (what it holds can
    /// still be read). Returns whether it existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let queue = self.shared().lock().unsubscribe(id);
        queue.map(|q| q.close()).is_some()
    }

    /// The `SUB_ALL` queue a client pipe gets when opened without a
    /// message handler, while it is subscribed.
    pub fn default_queue(&self) -> Option<SubscriptionQueue> {
        let sh = self.shared();
        let queue = sh.default_queue.as_ref()?;
        let core = sh.lock();
        (core.is_closed() || core.is_subscribed(queue.id())).then(|| queue.clone())
    }

    /// The next message on the [default queue](Self::default_queue), waiting
    /// at most `timeout`. `None` means
    /// [`PipeConfig::recv_timeout`](super::PipeConfig::recv_timeout), P2PD's
    /// default, as for [`SubscriptionQueue::recv`]. Fails with
    /// [`PipeError::Timeout`], [`PipeError::Closed`] or
    /// [`PipeError::NoDefaultQueue`].
    ///
    /// Cancel-safe: a message is taken only when the future completes
    /// with it.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<PipeMessage, PipeError> {
        let queue = self.default_queue().ok_or(PipeError::NoDefaultQueue)?;
        queue.recv(timeout).await
    }

    /// Relays every message this pipe receives (after deduplication) into
    /// `other`, from the next message on: it is sent to `other`'s
    /// destination, with `other`'s send retries, before it reaches this
    /// pipe's queues and handlers. Failures are counted in
    /// [`PipeStats::relay_failures`]. The relay does not keep `other` open;
    /// once `other` is gone, relaying to it fails. P2PD calls this
    /// [`add_pipe`](Self::add_pipe).
    ///
    /// To relay into one peer of `other` (an accepted connection of a
    /// server pipe, say) use [`relay_to_peer`](Self::relay_to_peer); to
    /// relay one peer's messages only, [`relay_from`](Self::relay_from).
    #[doc(alias = "add_pipe")]
    pub fn relay_to(&self, other: &Pipe) -> RelayId {
        self.add_relay(None, other, None)
    }

    /// Like [`relay_to`](Self::relay_to), but every message is sent to
    /// `other`'s peer `to` (as [`other.send(data, Some(to))`](Self::send)
    /// would): a connection a server pipe accepted, or a socket address.
    /// Once that peer is gone, relaying to it fails (counted in
    /// [`PipeStats::relay_failures`]) until the relay is stopped.
    ///
    /// With [`relay_from`](Self::relay_from) the other way, this is
    /// P2PD's two-way relay between an accepted connection and a client
    /// pipe; see the [module documentation](super#relays).
    pub fn relay_to_peer(&self, other: &Pipe, to: impl Into<Peer>) -> RelayId {
        self.add_relay(None, other, Some(to.into()))
    }

    /// Relays the messages this pipe receives from its peer `from` (a
    /// connection, or a socket address compared after
    /// [normalising](super::normalize_addr)) into `other`: to `other`'s
    /// peer `to`, or to its destination when `to` is `None`. Messages
    /// from other peers are not relayed. A relay from a connection stops
    /// by itself when that connection ends; one from an address lasts
    /// until [`stop_relay`](Self::stop_relay). Otherwise as
    /// [`relay_to`](Self::relay_to).
    pub fn relay_from(&self, from: impl Into<Peer>, other: &Pipe, to: Option<Peer>) -> RelayId {
        self.add_relay(Some(from.into()), other, to)
    }

    fn add_relay(&self, from: Option<Peer>, other: &Pipe, to: Option<Peer>) -> RelayId {
        let id = RelayId(next_id());
        let target = RelayTarget {
            pipe: Arc::downgrade(&other.handle),
            to,
        };
        self.shared().lock().relay(id, from, target);
        id
    }

    /// Stops a relay made by [`relay_to`](Self::relay_to),
    /// [`relay_to_peer`](Self::relay_to_peer) or
    /// [`relay_from`](Self::relay_from). Returns whether it existed (a
    /// relay from a connection that ended is gone). P2PD calls this
    /// [`del_pipe`](Self::del_pipe).
    #[doc(alias = "del_pipe")]
    pub fn stop_relay(&self, id: RelayId) -> bool {
        self.shared().lock().stop_relay(id)
    }

    /// P2PD's name for [`relay_to`](Self::relay_to), which it calls.
    pub fn add_pipe(&self, other: &Pipe) -> RelayId {
        self.relay_to(other)
    }

    /// P2PD's name for [`stop_relay`](Self::stop_relay), which it calls.
    pub fn del_pipe(&self, id: RelayId) -> bool {
        self.stop_relay(id)
    }

    /// Closes gracefully with [`Link::close`]: stops listening, writes what
    /// is queued, ends every connection (each waits at most
    /// [`LinkConfig::close_timeout`](crate::LinkConfig::close_timeout) for its peer) and waits until the pipe's
    /// task has handled the last events (letting a running handler finish).
    /// Then the subscription queues are
    /// closed (what they hold stays readable) and sends fail with
    /// [`PipeError::Closed`].
    ///
    /// Called from one of this pipe's own handlers, it starts the close and
    /// returns without waiting (the task cannot wait for itself).
    ///
    /// Cancel-safe: once called, the close goes on; calling again waits
    /// for it.
    pub async fn close(&self) {
        let sh = self.shared();
        sh.close_requested.cancel();
        let in_own_task = CURRENT_PIPE.try_with(|id| *id == sh.id).unwrap_or(false);
        let link = self.handle.link.clone();
        if in_own_task {
            tokio::spawn(async move { link.close().await });
            return;
        }
        link.close().await;
        sh.finished.cancelled().await;
    }

    /// Whether the pipe is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.shared().close_requested.is_cancelled()
    }

    /// A snapshot of the pipe's counters.
    pub fn stats(&self) -> PipeStats {
        let c = &self.shared().stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PipeStats {
            messages_received: get(&c.messages_received),
            messages_sent: get(&c.messages_sent),
            send_failures: get(&c.send_failures),
            queue_dropped: get(&c.queue_dropped),
            duplicates_dropped: get(&c.duplicates_dropped),
            relayed: get(&c.relayed),
            relay_failures: get(&c.relay_failures),
            datagrams_dropped: self.handle.link.stats().datagrams_dropped,
        }
    }

    /// The counters of the pipe's link (bytes, connections, ...).
    pub fn link_stats(&self) -> LinkStats {
        self.handle.link.stats()
    }
}
