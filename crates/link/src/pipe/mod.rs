//! Pipes: P2PD's one API for TCP, UDP, TLS and Unix endpoints.
//!
//! A [`Pipe`] is a client when it has a destination ([`Pipe::connect`]) and
//! a server when it has none ([`Pipe::listen`]), over any transport an
//! [`Address`] names, IPv4 or IPv6; it can also wrap a std socket made
//! elsewhere ([`Pipe::from_std_tcp_stream`], [`Pipe::from_std_udp_socket`],
//! [`Pipe::from_std_tcp_listener`]). Pipes carry raw bytes without framing:
//! a message is what one read returned on a stream (so two quick sends may
//! arrive as one message, or one as two), or one datagram on UDP. For
//! framed messages use weft-packeter on a [`Link`].
//!
//! A TCP echo server and a client, as in P2PD's examples:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft_link::pipe::PipeError> {
//! use std::time::Duration;
//! use weft_link::pipe::{MessageHandler, Pipe, PipeConfig};
//!
//! // A server has no destination. Its handler sends each message back.
//! let echo = MessageHandler::new(|msg, pipe| async move {
//!     let _ = pipe.reply(&msg, msg.data.clone()).await;
//! });
//! let server = Pipe::listen(
//!     "tcp://127.0.0.1:0",
//!     PipeConfig { message_handlers: vec![echo], ..PipeConfig::default() },
//! )
//! .await?;
//!
//! // A client has a destination, and without a handler it gets a default
//! // queue subscribed to every message (SUB_ALL).
//! let at = server.local_address().expect("a listening pipe has an address");
//! let client = Pipe::connect(at, PipeConfig::default()).await?;
//! client.send("hello", None).await?;
//! let reply = client.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(&reply.data[..], b"hello");
//!
//! client.close().await;
//! server.close().await;
//! # Ok(()) }
//! ```
//!
//! # What happens to a message
//! Each pipe has one task that reads its link's events, so everything below
//! happens in order, one message at a time:
//!
//! 1. With [`PipeConfig::dedupe`], a message whose id its sender sent
//!    recently is dropped (and counted).
//! 2. It is sent on every pipe relayed to with [`Pipe::add_pipe`].
//! 3. A copy goes to every [`SubscriptionQueue`] whose [`Subscription`]
//!    matches its payload (a `regex::bytes::Regex`) and sender address.
//!    Queues are bounded; a full queue drops by [`DropPolicy`], counted.
//! 4. The message handlers run, in the order they were added, each awaited
//!    before the next. A handler that takes long holds up the pipe.
//!
//! Connection-up and connection-end handlers run in the same task when
//! connections (or UDP peers) come and go.
//!
//! # Sending
//! [`Pipe::send`] sends to a client's destination when given no peer, or
//! to the [`Peer`] named: a socket address or a connection id. A UDP server
//! pipe can send first to an address it never heard from. Sends wait for
//! room in the connection's bounded send queue, retrying as
//! [`PipeConfig::send_retries`] says; [`Pipe::try_send`] never waits.
//!
//! # Closing
//! [`Pipe::close`] closes gracefully with [`Link::close`]: queued data is
//! written, listeners stop, connections end. Dropping the last handle of a
//! pipe aborts it. Handlers get clones of the pipe; a handler that keeps
//! one (in a spawned task, say) keeps the pipe open.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::{
    Address, Adopted, ConnectOptions, Connection, ConnectionId, ConnectionInfo, Link, LinkEvents,
    LinkStats, ListenOptions, ListenerId, Scheme, ToAddress,
};

mod config;
mod core;
mod dedupe;
mod error;
mod handler;
mod subscription;
mod task;

pub use config::{Dedupe, DedupeId, DropPolicy, PipeConfig, Role};
pub use error::PipeError;
pub use handler::{BoxFuture, EndHandler, HandlerId, MessageHandler, UpHandler};
pub use subscription::{SUB_ALL, Subscription, SubscriptionId, SubscriptionQueue, normalize_addr};

use self::core::{Found, Handles, PipeCore};

/// Ids for pipes, handlers, subscriptions, relays and the connections of
/// adopted UDP sockets. Process-wide, so never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

tokio::task_local! {
    /// The id of the pipe whose task is running (so `close` called from a
    /// handler does not wait for its own task).
    static CURRENT_PIPE: u64;
}

/// One message a pipe received.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PipeMessage {
    /// The payload: one read chunk of a stream, or one datagram.
    pub data: Bytes,
    /// The sender's socket address, [normalised](normalize_addr); `None`
    /// on Unix sockets.
    pub from: Option<SocketAddr>,
    /// The connection it came on (for UDP servers: one per peer address).
    pub connection: ConnectionId,
}

/// Whom a send goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The peer at this socket address (compared after
    /// [normalising](normalize_addr)).
    Addr(SocketAddr),
    /// The peer on this connection.
    Connection(ConnectionId),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Connection(c) => write!(f, "{c}"),
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::Addr(addr)
    }
}

impl From<ConnectionId> for Peer {
    fn from(id: ConnectionId) -> Peer {
        Peer::Connection(id)
    }
}

impl From<&PipeMessage> for Peer {
    /// The connection the message came on.
    fn from(msg: &PipeMessage) -> Peer {
        Peer::Connection(msg.connection)
    }
}

/// A connection (or UDP peer) of a pipe, as given to up and end handlers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The connection's id.
    pub connection: ConnectionId,
    /// The peer's socket address, [normalised](normalize_addr); `None` on
    /// Unix sockets.
    pub addr: Option<SocketAddr>,
    /// What the link knows about the connection (addresses, TLS
    /// certificates).
    pub info: ConnectionInfo,
}

impl PeerInfo {
    fn of(info: ConnectionInfo) -> PeerInfo {
        PeerInfo {
            connection: info.id,
            addr: info
                .peer
                .as_ref()
                .and_then(Address::socket_addr)
                .map(normalize_addr),
            info,
        }
    }
}

/// Identifies a relay made with [`Pipe::add_pipe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(u64);

impl fmt::Display for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "relay#{}", self.0)
    }
}

/// Counters of a pipe, read with [`Pipe::stats`]. The link's own counters
/// (bytes, connections) are in [`Pipe::link_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeStats {
    /// Messages received (before deduplication).
    pub messages_received: u64,
    /// Messages sent through this pipe (by `send`, `try_send`, `reply`, and
    /// relays from other pipes into this one).
    pub messages_sent: u64,
    /// Sends that failed.
    pub send_failures: u64,
    /// Messages lost to full subscription queues, summed over queues.
    pub queue_dropped: u64,
    /// Messages dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Messages this pipe relayed into other pipes.
    pub relayed: u64,
    /// Relays that failed (the other pipe was closed, had no destination,
    /// or its send failed).
    pub relay_failures: u64,
    /// Datagrams dropped by a UDP server pipe because it tracked
    /// [`LinkConfig::max_udp_peers`](crate::LinkConfig::max_udp_peers) peers already (its link's
    /// [`LinkStats::datagrams_dropped`]).
    pub datagrams_dropped: u64,
}

#[derive(Default)]
struct Counters {
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    send_failures: AtomicU64,
    queue_dropped: AtomicU64,
    duplicates_dropped: AtomicU64,
    relayed: AtomicU64,
    relay_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How to reach one peer: its link connection.
#[derive(Clone)]
struct Route(Connection);

impl Route {
    /// Sends, waiting at most `wait` for room in the send queue.
    async fn send(&self, data: &Bytes, wait: Duration) -> Result<(), PipeError> {
        match tokio::time::timeout(wait, self.0.send(data.clone())).await {
            Ok(r) => r.map_err(PipeError::from_link),
            Err(_) => Err(PipeError::QueueFull),
        }
    }

    fn try_send(&self, data: &Bytes) -> Result<(), PipeError> {
        self.0.try_send(data.clone()).map_err(PipeError::from_link)
    }
}

/// The shell's handles in the core: a peer's connection, a relay's
/// target pipe (held weakly: a relay does not keep its target open), a
/// subscription's queue.
struct Shell;

impl Handles for Shell {
    type Route = Route;
    type Target = Weak<Handle>;
    type Queue = SubscriptionQueue;
}

/// What the pipe's handles and its task share.
struct Shared {
    id: u64,
    role: Role,
    scheme: Scheme,
    destination: Option<Address>,
    dest_connection: Option<ConnectionId>,
    local: Option<Address>,
    udp_listener: Option<ListenerId>,
    /// Whether `try_send` may make a UDP peer connection (adopted
    /// unconnected sockets), or only `send` may (pipes opened from an
    /// address).
    try_send_makes_peers: bool,
    recv_timeout: Duration,
    send_retries: u32,
    send_retry_wait: Duration,
    queue_capacity: usize,
    queue_policy: DropPolicy,
    max_udp_peers: usize,
    default_queue: Option<SubscriptionQueue>,
    core: Mutex<PipeCore<Shell>>,
    stats: Counters,
    /// Cancelled when the last handle goes: the task stops at once.
    abort: CancellationToken,
    /// Cancelled by `close` (and by `abort`, being its child).
    close_requested: CancellationToken,
    /// Cancelled when the task has ended.
    finished: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PipeCore<Shell>> {
        // No invariant spans a panic here that matters more than going on.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local_socket_addr(&self) -> Option<SocketAddr> {
        self.local.as_ref().and_then(Address::socket_addr)
    }

    /// The address in the family of our socket: an IPv4 peer of an IPv6
    /// socket becomes `::ffff:a.b.c.d`, a mapped peer of an IPv4 socket
    /// plain IPv4.
    fn in_our_family(&self, addr: SocketAddr) -> SocketAddr {
        in_family_of(self.local_socket_addr(), addr)
    }

    /// The connection of the UDP listener to `addr`, made now without
    /// waiting, for `try_send` on adopted unconnected sockets.
    fn try_udp_peer(&self, link: &Link, addr: SocketAddr) -> Result<Route, PipeError> {
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
    fn check_room(&self) -> Result<(), PipeError> {
        if self.lock().peer_count() >= self.max_udp_peers {
            return Err(PipeError::TooManyPeers {
                max: self.max_udp_peers,
            });
        }
        Ok(())
    }

    fn find(&self, to: Option<Peer>) -> Result<Found<Route>, PipeError> {
        if self.close_requested.is_cancelled() {
            return Err(PipeError::Closed);
        }
        self.lock().route(to, self.dest_connection)
    }

    /// Ends the pipe's life: queues close (what is queued stays readable),
    /// handlers and relays are released.
    fn finish(&self) {
        let queues = self.lock().close();
        for q in queues {
            q.close();
        }
        self.close_requested.cancel();
        self.finished.cancel();
    }
}

/// `addr` in the family of a socket bound to `ours`: an IPv4 peer of an
/// IPv6 socket becomes `::ffff:a.b.c.d`, a mapped peer of an IPv4 socket
/// plain IPv4.
fn in_family_of(ours: Option<SocketAddr>, addr: SocketAddr) -> SocketAddr {
    match (ours, addr) {
        (Some(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        (Some(SocketAddr::V4(_)), a) => normalize_addr(a),
        (_, a) => a,
    }
}

/// What dropping the last [`Pipe`] drops.
struct Handle {
    shared: Arc<Shared>,
    link: Link,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.abort.cancel();
    }
}

/// A P2PD-style pipe: a client or server endpoint over TCP, TLS, UDP or a
/// Unix socket, with message handlers, subscription queues, deduplication
/// and relaying. See the [module documentation](self).
///
/// Cheap to clone; all clones are the same pipe. Dropping the last handle
/// aborts the pipe; [`close`](Self::close) closes it gracefully. Opening a
/// pipe needs a Tokio runtime.
#[derive(Clone)]
pub struct Pipe {
    handle: Arc<Handle>,
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

/// Adopting a std socket outside a runtime would panic in tokio.
fn need_runtime() -> Result<(), PipeError> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| PipeError::NoRuntime)
}

/// How a pipe starts: everything known before its task runs.
struct Parts {
    role: Role,
    scheme: Scheme,
    destination: Option<Address>,
    dest_connection: Option<Connection>,
    local: Option<Address>,
    udp_listener: Option<ListenerId>,
    try_send_makes_peers: bool,
    link: Link,
    events: LinkEvents,
}

impl Pipe {
    /// Opens a pipe as `config.role` says: a client connected to
    /// `address` ([`connect`](Self::connect)), or a server listening on it
    /// ([`listen`](Self::listen)).
    ///
    /// Cancel-safe: dropping the future before it completes opens nothing
    /// (a connection being made is dropped).
    pub async fn open(address: impl ToAddress, config: PipeConfig) -> Result<Pipe, PipeError> {
        match config.role {
            Role::Client => Pipe::connect(address, config).await,
            Role::Server => Pipe::listen(address, config).await,
        }
    }

    /// Opens a client pipe: connects once to `destination` (no reconnect)
    /// and returns when the connection is up (TLS handshake included). Over
    /// `udp://` this makes a connected UDP socket and returns at once.
    /// Unless `config.message_handlers` has a handler, the pipe gets a
    /// default queue subscribed to every message: see [`recv`](Self::recv).
    /// Ignores `config.role`.
    ///
    /// Cancel-safe like [`open`](Self::open).
    pub async fn connect(
        destination: impl ToAddress,
        config: PipeConfig,
    ) -> Result<Pipe, PipeError> {
        let address = destination.to_address().map_err(crate::LinkError::from)?;
        let (link, events) = Link::new(config.link.clone());
        let options = ConnectOptions {
            tls: config.tls_client.clone(),
            socket: None,
            reconnect: None,
        };
        let conn = link.connect_once(&address, options).await?;
        let local = conn.info().local.clone();
        Ok(Pipe::start(
            Parts {
                role: Role::Client,
                scheme: address.scheme(),
                destination: Some(address),
                dest_connection: Some(conn),
                local,
                udp_listener: None,
                try_send_makes_peers: false,
                link,
                events,
            },
            config,
        ))
    }

    /// Opens a server pipe listening on `local` (port 0 picks a free port;
    /// see [`local_address`](Self::local_address)). Over `udp://`, each
    /// remote address it hears from becomes a connection. Returns once
    /// bound. Ignores `config.role` and `config.bind`.
    ///
    /// Cancel-safe like [`open`](Self::open).
    pub async fn listen(local: impl ToAddress, config: PipeConfig) -> Result<Pipe, PipeError> {
        let address = local.to_address().map_err(crate::LinkError::from)?;
        let (link, events) = Link::new(config.link.clone());
        let options = ListenOptions {
            tls: config.tls_server.clone(),
            socket: None,
        };
        let listening = link.listen_with(&address, options).await?;
        let scheme = address.scheme();
        Ok(Pipe::start(
            Parts {
                role: Role::Server,
                scheme,
                destination: None,
                dest_connection: None,
                local: Some(listening.address),
                udp_listener: (scheme == Scheme::Udp).then_some(listening.id),
                try_send_makes_peers: false,
                link,
                events,
            },
            config,
        ))
    }

    /// Wraps a connected std TCP stream as a client pipe whose destination
    /// is the stream's peer. TLS is not started on it. Of the socket
    /// options, only `nodelay` and `linger` are applied (the socket is
    /// connected already).
    ///
    /// Fails with [`PipeError::NoRuntime`] outside a Tokio runtime.
    pub fn from_std_tcp_stream(
        stream: std::net::TcpStream,
        config: PipeConfig,
    ) -> Result<Pipe, PipeError> {
        need_runtime()?;
        let (link, events) = Link::new(config.link.clone());
        let conn = link.adopt_tcp(stream)?;
        let destination = conn.info().peer.clone();
        let local = conn.info().local.clone();
        Ok(Pipe::start(
            Parts {
                role: Role::Client,
                scheme: Scheme::Tcp,
                destination,
                dest_connection: Some(conn),
                local,
                udp_listener: None,
                try_send_makes_peers: false,
                link,
                events,
            },
            config,
        ))
    }

    /// Wraps a bound std UDP socket, run by the pipe's link
    /// ([`Link::adopt_udp`]). With a destination (given, or the peer of an
    /// already connected socket) it is a client pipe sending there; without
    /// one, a server pipe that tracks each address it hears from or sends
    /// to as a peer, up to [`LinkConfig::max_udp_peers`](crate::LinkConfig::max_udp_peers). The socket is
    /// used as it is: an unconnected socket with a destination still
    /// receives from anyone, and those senders become peers too. Unlike a
    /// pipe opened from an address, [`try_send`](Self::try_send) makes the
    /// connection for a new peer of an unconnected socket. Of the socket
    /// options, only `broadcast` is applied (when true).
    ///
    /// Fails with [`PipeError::NoRuntime`] outside a Tokio runtime.
    pub fn from_std_udp_socket(
        socket: std::net::UdpSocket,
        destination: Option<SocketAddr>,
        config: PipeConfig,
    ) -> Result<Pipe, PipeError> {
        need_runtime()?;
        let connected_to = socket.peer_addr().ok();
        let (link, events) = Link::new(config.link.clone());
        let (local, udp_listener, dest_connection) = match link.adopt_udp_as_is(socket)? {
            Adopted::Connection(conn) => (conn.info().local.clone(), None, Some(conn)),
            Adopted::Listener(listening) => {
                let ours = listening.address.socket_addr();
                let dest = match destination {
                    Some(to) => Some(
                        link.try_udp_peer(listening.id, in_family_of(ours, to))
                            .map_err(PipeError::from_link)?,
                    ),
                    None => None,
                };
                (Some(listening.address), Some(listening.id), dest)
            }
        };
        let destination = destination.or(connected_to);
        Ok(Pipe::start(
            Parts {
                role: if destination.is_some() {
                    Role::Client
                } else {
                    Role::Server
                },
                scheme: Scheme::Udp,
                destination: destination.map(Address::udp),
                dest_connection,
                local,
                try_send_makes_peers: udp_listener.is_some(),
                udp_listener,
                link,
                events,
            },
            config,
        ))
    }

    /// Wraps a bound, listening std TCP listener as a server pipe, run by
    /// the pipe's link ([`Link::adopt_tcp_listener`]): each accepted stream
    /// becomes a connection, with the pipe's `nodelay` and `linger` applied
    /// to it.
    ///
    /// Fails with [`PipeError::NoRuntime`] outside a Tokio runtime.
    pub fn from_std_tcp_listener(
        listener: std::net::TcpListener,
        config: PipeConfig,
    ) -> Result<Pipe, PipeError> {
        need_runtime()?;
        let (link, events) = Link::new(config.link.clone());
        let listening = link.adopt_tcp_listener(listener)?;
        Ok(Pipe::start(
            Parts {
                role: Role::Server,
                scheme: Scheme::Tcp,
                destination: None,
                dest_connection: None,
                local: Some(listening.address),
                udp_listener: None,
                try_send_makes_peers: false,
                link,
                events,
            },
            config,
        ))
    }

    fn start(parts: Parts, config: PipeConfig) -> Pipe {
        let abort = CancellationToken::new();
        let close_requested = abort.child_token();
        let default_queue = (parts.destination.is_some() && config.message_handlers.is_empty())
            .then(|| {
                SubscriptionQueue::new(
                    SubscriptionId(next_id()),
                    SUB_ALL,
                    config.queue_capacity,
                    config.queue_policy,
                    config.recv_timeout,
                )
            });
        let mut core = PipeCore::new(config.dedupe);
        for h in config.message_handlers {
            core.add_message_handler(HandlerId(next_id()), h);
        }
        for h in config.up_handlers {
            core.add_up_handler(HandlerId(next_id()), h);
        }
        for h in config.end_handlers {
            core.add_end_handler(HandlerId(next_id()), h);
        }
        if let Some(q) = &default_queue {
            core.subscribe(q.id(), SUB_ALL, q.clone());
        }
        let dest_connection = parts.dest_connection.as_ref().map(Connection::id);
        if let Some(conn) = parts.dest_connection {
            core.add_peer(PeerInfo::of(conn.info().clone()), Route(conn));
        }
        let shared = Arc::new(Shared {
            id: next_id(),
            role: parts.role,
            scheme: parts.scheme,
            destination: parts.destination,
            dest_connection,
            local: parts.local,
            udp_listener: parts.udp_listener,
            try_send_makes_peers: parts.try_send_makes_peers,
            recv_timeout: config.recv_timeout,
            send_retries: config.send_retries,
            send_retry_wait: config.send_retry_wait,
            queue_capacity: config.queue_capacity,
            queue_policy: config.queue_policy,
            max_udp_peers: config.link.max_udp_peers,
            default_queue,
            core: Mutex::new(core),
            stats: Counters::default(),
            abort,
            close_requested,
            finished: CancellationToken::new(),
        });
        let handle = Arc::new(Handle {
            shared: shared.clone(),
            link: parts.link,
        });
        let run = task::run(shared.clone(), Arc::downgrade(&handle), parts.events);
        tokio::spawn(CURRENT_PIPE.scope(shared.id, run));
        tracing::debug!(pipe = shared.id, role = ?shared.role, local = ?shared.local,
            destination = ?shared.destination, "pipe open");
        Pipe { handle }
    }

    fn shared(&self) -> &Arc<Shared> {
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
    /// [`PipeConfig::send_retry_wait`] per attempt, and tries
    /// [`PipeConfig::send_retries`] more times when the queue stayed full
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

    /// Adds a handler for each connection that ends. (Peers of adopted UDP
    /// sockets never end.)
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
    /// now on, holding [`PipeConfig::queue_capacity`] messages. On a closed
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
    /// at most `timeout` (`None`: [`PipeConfig::recv_timeout`]). Fails with
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
    /// `other`: it is sent to `other`'s destination, with `other`'s send
    /// retries, before it reaches this pipe's queues and handlers. Failures
    /// are counted in [`PipeStats::relay_failures`]. The relay does not keep
    /// `other` open; once `other` is gone, relaying to it fails.
    pub fn add_pipe(&self, other: &Pipe) -> RelayId {
        let id = RelayId(next_id());
        self.shared()
            .lock()
            .relay_to(id, Arc::downgrade(&other.handle));
        id
    }

    /// Stops a relay. Returns whether it existed.
    pub fn del_pipe(&self, id: RelayId) -> bool {
        self.shared().lock().stop_relay(id)
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
