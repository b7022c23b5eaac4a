//! The link: listeners and connectors, added and removed while running,
//! and the connections they make, reported as events.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::connection::{ConnectionInfo, finish, run_stream};
use crate::queue::Take;
use crate::socket;
use crate::{
    Address, AddressError, Connection, ConnectionId, DisconnectReason, LinkConfig, LinkError,
    Origin, ReconnectPolicy, Scheme, SocketOptions, TlsClientConfig, TlsServerConfig, UnixPath,
};

/// Identifies a listener within its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u64);

/// Identifies a connector within its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorId(pub u64);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}", self.0)
    }
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connector#{}", self.0)
    }
}

/// Something that names an address: an [`Address`] or a URL string.
pub trait ToAddress {
    /// Parses or clones into an [`Address`].
    fn to_address(&self) -> Result<Address, AddressError>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address, AddressError> {
        Ok(self.clone())
    }
}

impl ToAddress for &Address {
    fn to_address(&self) -> Result<Address, AddressError> {
        Ok((*self).clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address, AddressError> {
        self.parse()
    }
}

impl ToAddress for &str {
    fn to_address(&self) -> Result<Address, AddressError> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address, AddressError> {
        self.parse()
    }
}

/// What [`Link::adopt_udp`] made of a socket.
#[derive(Clone, Debug)]
pub enum Adopted {
    /// A connected socket: one datagram connection.
    Connection(Connection),
    /// An unconnected socket: a listener with a connection per peer.
    Listener(Listening),
}

/// Options for one listener.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ListenOptions {
    /// The TLS server configuration; required for `tls://` and `unix+tls://`.
    pub tls: Option<TlsServerConfig>,
    /// Socket options; `None` uses the link's.
    pub socket: Option<SocketOptions>,
}

impl ListenOptions {
    /// Options with a TLS server configuration.
    pub fn tls(tls: TlsServerConfig) -> ListenOptions {
        ListenOptions {
            tls: Some(tls),
            socket: None,
        }
    }
}

/// Options for one connector.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The TLS client configuration; required for `tls://` and `unix+tls://`.
    pub tls: Option<TlsClientConfig>,
    /// Socket options; `None` uses the link's.
    pub socket: Option<SocketOptions>,
    /// Reconnect policy; `None` uses the link's.
    pub reconnect: Option<ReconnectPolicy>,
}

impl ConnectOptions {
    /// Options with a TLS client configuration.
    pub fn tls(tls: TlsClientConfig) -> ConnectOptions {
        ConnectOptions {
            tls: Some(tls),
            ..ConnectOptions::default()
        }
    }
}

/// A listener that is accepting.
#[derive(Clone, Debug)]
pub struct Listening {
    /// Its id, for [`Link::remove_listener`].
    pub id: ListenerId,
    /// The address actually bound (port 0 replaced by the real port).
    pub address: Address,
}

/// What happens on a link, in order per connection: `Connected`, then its
/// `Data`, then `Disconnected`.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A connection is up; the handle sends on it.
    Connected(Connection),
    /// Bytes arrived: a chunk of the stream, or one datagram.
    Data {
        /// The connection.
        connection: ConnectionId,
        /// The bytes.
        data: Bytes,
    },
    /// A connection ended.
    Disconnected {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        reason: DisconnectReason,
    },
    /// A connector's attempt failed; it tries again after its backoff.
    /// Informational: dropped (and counted) when the event queue is full.
    ConnectFailed {
        /// The connector.
        connector: ConnectorId,
        /// What went wrong.
        error: Arc<LinkError>,
    },
    /// An accepted connection failed its TLS handshake and was dropped.
    /// Informational like `ConnectFailed`.
    AcceptFailed {
        /// The listener.
        listener: ListenerId,
        /// What went wrong.
        error: Arc<LinkError>,
    },
}

/// Counters of a link, read with [`Link::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Connections established.
    pub connections_opened: u64,
    /// Connections ended.
    pub connections_closed: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Failed connect attempts (including TLS handshakes).
    pub connect_failures: u64,
    /// Accepted connections whose TLS handshake failed.
    pub accept_failures: u64,
    /// Connections re-established by a connector after the first.
    pub reconnects: u64,
    /// Informational events dropped because the event queue was full.
    pub events_dropped: u64,
    /// UDP datagrams dropped because the listener tracked too many peers.
    pub datagrams_dropped: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) accept_failures: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
}

struct ListenerEntry {
    cancel: CancellationToken,
    unix_file: Option<std::path::PathBuf>,
    udp: Option<Arc<UdpListener>>,
}

struct UdpListener {
    id: ListenerId,
    socket: Arc<UdpSocket>,
    local: Option<Address>,
    peers: tokio::sync::Mutex<HashMap<SocketAddr, Connection>>,
    cancel: CancellationToken,
}

pub(crate) struct Core {
    pub(crate) config: LinkConfig,
    events: Mutex<Option<mpsc::Sender<LinkEvent>>>,
    next_id: AtomicU64,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    listeners: Mutex<HashMap<ListenerId, ListenerEntry>>,
    connectors: Mutex<HashMap<ConnectorId, CancellationToken>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    pub(crate) stats: Counters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn sender(&self) -> Result<mpsc::Sender<LinkEvent>, LinkError> {
        lock(&self.events).clone().ok_or(LinkError::Closed)
    }

    fn new_connection(
        &self,
        origin: Origin,
        peer: Option<Address>,
        local: Option<Address>,
        peer_certificates: Option<Arc<[rustls::pki_types::CertificateDer<'static>]>>,
        datagram: bool,
        parent: &CancellationToken,
    ) -> Connection {
        let info = ConnectionInfo {
            id: ConnectionId(self.next_id()),
            origin,
            peer,
            local,
            peer_certificates,
            datagram,
        };
        let conn = Connection::new(info, self.config.send_queue_bytes, parent);
        lock(&self.connections).insert(conn.id(), conn.clone());
        self.stats
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        conn
    }

    pub(crate) fn unregister(&self, conn: &Connection, reason: DisconnectReason) {
        conn.shared.queue.mark_closed();
        if lock(&self.connections).remove(&conn.id()).is_some() {
            self.stats
                .connections_closed
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(conn = %conn.id(), %reason, "disconnected");
        }
    }

    fn inform(&self, events: &mpsc::Sender<LinkEvent>, event: LinkEvent) {
        if events.try_send(event).is_err() {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A set of listeners and connectors and the connections they make.
///
/// Cheap to clone; all clones drive the same link. Events arrive on the
/// [`LinkEvents`] returned by [`Link::new`]. Dropping the last `Link` handle
/// aborts everything; [`Link::close`] closes gracefully.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weft_link::LinkError> {
/// use weft_link::{Link, LinkConfig, LinkEvent};
/// let (server, mut server_events) = Link::new(LinkConfig::default());
/// let listening = server.listen("tcp://127.0.0.1:0").await?;
///
/// let (client, mut client_events) = Link::new(LinkConfig::default());
/// client.connect(&listening.address)?;
/// let Some(LinkEvent::Connected(conn)) = client_events.recv().await else { panic!() };
/// conn.send("hello".into()).await?;
///
/// let Some(LinkEvent::Connected(_)) = server_events.recv().await else { panic!() };
/// let Some(LinkEvent::Data { data, .. }) = server_events.recv().await else { panic!() };
/// assert_eq!(&data[..], b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Link {
    handle: Arc<Handle>,
}

struct Handle {
    core: Arc<Core>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.shutdown.cancel();
        lock(&self.core.events).take();
        self.core.tracker.close();
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("connections", &lock(&self.handle.core.connections).len())
            .finish()
    }
}

/// The events of a [`Link`]. Read them steadily: when the queue is full,
/// connections stop reading from their sockets.
#[derive(Debug)]
pub struct LinkEvents {
    rx: mpsc::Receiver<LinkEvent>,
}

impl LinkEvents {
    /// The next event; `None` once the link is closed and every connection
    /// has reported its end. Cancel-safe.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<LinkEvent> {
        self.rx.try_recv().ok()
    }

    /// Poll form of [`recv`](Self::recv).
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<LinkEvent>> {
        self.rx.poll_recv(cx)
    }

    /// Moves up to `limit` ready events into `buf`, waiting for at least one.
    /// Returns how many; 0 means the link is closed. Cancel-safe.
    pub async fn recv_many(&mut self, buf: &mut Vec<LinkEvent>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }
}

enum Established {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    TlsTcp(Box<tokio_rustls::TlsStream<tokio::net::TcpStream>>),
    TlsUnix(Box<tokio_rustls::TlsStream<tokio::net::UnixStream>>),
    Udp(UdpSocket),
}

fn certs_of<IO>(
    tls: &tokio_rustls::TlsStream<IO>,
) -> Option<Arc<[rustls::pki_types::CertificateDer<'static>]>> {
    let (_, state) = tls.get_ref();
    state.peer_certificates().map(|c| c.to_vec().into())
}

impl Link {
    /// A new link and its events. Needs a Tokio runtime when listeners or
    /// connectors are added.
    pub fn new(config: LinkConfig) -> (Link, LinkEvents) {
        let (tx, rx) = mpsc::channel(config.event_capacity.max(1));
        let core = Arc::new(Core {
            config,
            events: Mutex::new(Some(tx)),
            next_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            listeners: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            stats: Counters::default(),
        });
        (
            Link {
                handle: Arc::new(Handle { core }),
            },
            LinkEvents { rx },
        )
    }

    fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// The link's configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.core().config
    }

    /// Starts listening with the link's socket options. See
    /// [`listen_with`](Self::listen_with).
    pub async fn listen(&self, address: impl ToAddress) -> Result<Listening, LinkError> {
        self.listen_with(address, ListenOptions::default()).await
    }

    /// Binds a listener and starts accepting. Returns once bound, with the
    /// address actually bound. TLS listeners need `options.tls`. A UDP
    /// listener makes one connection per remote address it hears from.
    pub async fn listen_with(
        &self,
        address: impl ToAddress,
        options: ListenOptions,
    ) -> Result<Listening, LinkError> {
        let core = self.core().clone();
        let address = address.to_address()?;
        let events = core.sender()?;
        let sockopts = options.socket.unwrap_or_else(|| core.config.socket.clone());
        let tls = match (address.scheme().is_tls(), options.tls) {
            (true, None) => {
                return Err(LinkError::TlsConfigMissing {
                    address: address.to_string(),
                    side: "server",
                });
            }
            (true, Some(t)) => Some(tokio_rustls::TlsAcceptor::from(t.inner)),
            (false, _) => None,
        };
        let id = ListenerId(core.next_id());
        let cancel = core.shutdown.child_token();
        let scheme = address.scheme();
        let (bound, unix_file, udp) = match &address {
            Address::Ip { .. } => {
                let addr = *socket::resolve(&address, core.config.dns_timeout)
                    .await?
                    .first()
                    .expect("resolve returns at least one address");
                if scheme == Scheme::Udp {
                    let sock = Arc::new(socket::bind_udp(addr, None, &sockopts).await?);
                    let local = sock
                        .local_addr()
                        .map_err(|e| LinkError::io("reading the local address", e))?;
                    let bound = Address::ip(scheme, local);
                    let udp = Arc::new(UdpListener {
                        id,
                        socket: sock,
                        local: Some(bound.clone()),
                        peers: tokio::sync::Mutex::new(HashMap::new()),
                        cancel: cancel.clone(),
                    });
                    core.tracker
                        .spawn(udp_listener_task(core.clone(), udp.clone(), events));
                    (bound, None, Some(udp))
                } else {
                    let listener = socket::listen_tcp(addr, &sockopts)?;
                    let local = listener
                        .local_addr()
                        .map_err(|e| LinkError::io("reading the local address", e))?;
                    let bound = Address::ip(scheme, local);
                    core.tracker.spawn(tcp_accept_task(
                        core.clone(),
                        id,
                        listener,
                        tls,
                        sockopts,
                        bound.clone(),
                        cancel.clone(),
                        events,
                    ));
                    (bound, None, None)
                }
            }
            Address::Unix { path, .. } => {
                let listener = socket::listen_unix(path)?;
                core.tracker.spawn(unix_accept_task(
                    core.clone(),
                    id,
                    listener,
                    tls,
                    address.clone(),
                    cancel.clone(),
                    events,
                ));
                let file = match path {
                    UnixPath::Path(p) => Some(p.clone()),
                    UnixPath::Abstract(_) => None,
                };
                (address.clone(), file, None)
            }
        };
        tracing::debug!(listener = %id, address = %bound, "listening");
        lock(&core.listeners).insert(
            id,
            ListenerEntry {
                cancel,
                unix_file,
                udp,
            },
        );
        Ok(Listening { id, address: bound })
    }

    /// Stops a listener. Stream connections it accepted stay up; a UDP
    /// listener's connections end with it (they share its socket). A Unix
    /// socket file it created is removed. Returns whether it existed.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let Some(entry) = lock(&self.core().listeners).remove(&id) else {
            return false;
        };
        entry.cancel.cancel();
        if let Some(file) = entry.unix_file {
            let _ = std::fs::remove_file(file);
        }
        drop(entry.udp);
        true
    }

    /// Adds a connector with the link's options. See
    /// [`connect_with`](Self::connect_with).
    pub fn connect(&self, address: impl ToAddress) -> Result<ConnectorId, LinkError> {
        self.connect_with(address, ConnectOptions::default())
    }

    /// Adds a connector: it connects in the background and, whenever its
    /// connection fails or ends, connects again after the reconnect policy's
    /// wait, until removed. Each success is a `Connected` event; each failed
    /// attempt a `ConnectFailed` event.
    pub fn connect_with(
        &self,
        address: impl ToAddress,
        options: ConnectOptions,
    ) -> Result<ConnectorId, LinkError> {
        let core = self.core().clone();
        let address = address.to_address()?;
        if address.scheme().is_tls() && options.tls.is_none() {
            return Err(LinkError::TlsConfigMissing {
                address: address.to_string(),
                side: "client",
            });
        }
        let events = core.sender()?;
        let id = ConnectorId(core.next_id());
        let cancel = core.shutdown.child_token();
        lock(&core.connectors).insert(id, cancel.clone());
        core.tracker.spawn(connector_task(
            core.clone(),
            id,
            address,
            options,
            cancel,
            events,
        ));
        Ok(id)
    }

    /// Connects once, now, without reconnecting: returns the connection when
    /// it is up (its `Connected` event is sent too), or the error.
    pub async fn connect_once(
        &self,
        address: impl ToAddress,
        options: ConnectOptions,
    ) -> Result<Connection, LinkError> {
        let core = self.core().clone();
        let address = address.to_address()?;
        let events = core.sender()?;
        let (est, peer, local, certs) = establish(&core, &address, &options).await?;
        let datagram = matches!(est, Established::Udp(_));
        let conn = core.new_connection(
            Origin::Adopted,
            peer,
            local,
            certs,
            datagram,
            &core.shutdown,
        );
        core.tracker
            .spawn(run_established(core.clone(), conn.clone(), est, events));
        Ok(conn)
    }

    /// Stops a connector and aborts its connection, if any. Returns whether
    /// it existed.
    pub fn remove_connector(&self, id: ConnectorId) -> bool {
        match lock(&self.core().connectors).remove(&id) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Runs any byte stream (an in-memory pipe, a serial port, a socket made
    /// elsewhere) as a connection of this link. It gets a `Connected` event
    /// like any other.
    pub fn adopt<S>(
        &self,
        stream: S,
        peer: Option<Address>,
        local: Option<Address>,
    ) -> Result<Connection, LinkError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let core = self.core().clone();
        let events = core.sender()?;
        let conn = core.new_connection(Origin::Adopted, peer, local, None, false, &core.shutdown);
        core.tracker
            .spawn(run_stream(core.clone(), conn.clone(), stream, events));
        Ok(conn)
    }

    /// Runs an existing std TCP stream as a connection.
    pub fn adopt_tcp(&self, stream: std::net::TcpStream) -> Result<Connection, LinkError> {
        stream
            .set_nonblocking(true)
            .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
        let peer = stream.peer_addr().ok().map(Address::tcp);
        let local = stream.local_addr().ok().map(Address::tcp);
        let stream = tokio::net::TcpStream::from_std(stream)
            .map_err(|e| LinkError::io("registering a TCP stream", e))?;
        socket::configure_accepted(&stream, &self.core().config.socket);
        self.adopt(stream, peer, local)
    }

    /// Accepts on an existing std TCP listener as if [`listen`](Self::listen)
    /// had bound it (plain TCP; the link's socket options apply to accepted
    /// streams).
    pub fn adopt_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> Result<Listening, LinkError> {
        let core = self.core().clone();
        let events = core.sender()?;
        listener
            .set_nonblocking(true)
            .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| LinkError::io("registering a listener", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| LinkError::io("reading the local address", e))?;
        let bound = Address::tcp(local);
        let id = ListenerId(core.next_id());
        let cancel = core.shutdown.child_token();
        core.tracker.spawn(tcp_accept_task(
            core.clone(),
            id,
            listener,
            None,
            core.config.socket.clone(),
            bound.clone(),
            cancel.clone(),
            events,
        ));
        lock(&core.listeners).insert(
            id,
            ListenerEntry {
                cancel,
                unix_file: None,
                udp: None,
            },
        );
        Ok(Listening { id, address: bound })
    }

    /// Runs an existing std UDP socket. A connected socket (or one given a
    /// `peer`, which connects it) becomes one datagram connection, like a
    /// `udp://` connector; an unconnected one becomes a UDP listener with a
    /// connection per remote address, like [`listen`](Self::listen).
    pub async fn adopt_udp(
        &self,
        socket: std::net::UdpSocket,
        peer: Option<SocketAddr>,
    ) -> Result<Adopted, LinkError> {
        let core = self.core().clone();
        let events = core.sender()?;
        socket
            .set_nonblocking(true)
            .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
        let socket = UdpSocket::from_std(socket)
            .map_err(|e| LinkError::io("registering a UDP socket", e))?;
        if let Some(peer) = peer {
            socket
                .connect(peer)
                .await
                .map_err(|e| LinkError::io(format!("connecting to {peer}"), e))?;
        }
        let local = socket.local_addr().ok().map(Address::udp);
        if let Ok(peer) = socket.peer_addr() {
            let conn = core.new_connection(
                Origin::Adopted,
                Some(Address::udp(peer)),
                local,
                None,
                true,
                &core.shutdown,
            );
            core.tracker.spawn(run_udp_connected(
                core.clone(),
                conn.clone(),
                socket,
                events,
            ));
            return Ok(Adopted::Connection(conn));
        }
        let id = ListenerId(core.next_id());
        let cancel = core.shutdown.child_token();
        let bound =
            local.ok_or_else(|| LinkError::Unsupported("UDP socket without an address".into()))?;
        let udp = Arc::new(UdpListener {
            id,
            socket: Arc::new(socket),
            local: Some(bound.clone()),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            cancel: cancel.clone(),
        });
        core.tracker
            .spawn(udp_listener_task(core.clone(), udp.clone(), events));
        lock(&core.listeners).insert(
            id,
            ListenerEntry {
                cancel,
                unix_file: None,
                udp: Some(udp),
            },
        );
        Ok(Adopted::Listener(Listening { id, address: bound }))
    }

    /// The connection with this id, while it is up.
    pub fn connection(&self, id: ConnectionId) -> Option<Connection> {
        lock(&self.core().connections).get(&id).cloned()
    }

    /// All connections that are up.
    pub fn connections(&self) -> Vec<Connection> {
        lock(&self.core().connections).values().cloned().collect()
    }

    /// Queues `data` on a connection, waiting for room. Cancel-safe.
    pub async fn send(&self, id: ConnectionId, data: Bytes) -> Result<(), LinkError> {
        self.connection(id)
            .ok_or(LinkError::Closed)?
            .send(data)
            .await
    }

    /// The connection of a UDP listener to `peer`, made if the listener has
    /// not heard from it yet, so a server can send first.
    /// Cancel-safe.
    pub async fn udp_peer(
        &self,
        listener: ListenerId,
        peer: SocketAddr,
    ) -> Result<Connection, LinkError> {
        let udp = lock(&self.core().listeners)
            .get(&listener)
            .and_then(|l| l.udp.clone())
            .ok_or(LinkError::Closed)?;
        let events = self.core().sender()?;
        udp_peer_connection(self.core(), &udp, peer, &events)
            .await
            .ok_or_else(|| {
                LinkError::Unsupported(format!(
                    "UDP listener tracks {} peers already",
                    self.core().config.max_udp_peers
                ))
            })
    }

    /// A snapshot of the link's counters.
    pub fn stats(&self) -> LinkStats {
        let c = &self.core().stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            connections_opened: get(&c.connections_opened),
            connections_closed: get(&c.connections_closed),
            bytes_sent: get(&c.bytes_sent),
            bytes_received: get(&c.bytes_received),
            connect_failures: get(&c.connect_failures),
            accept_failures: get(&c.accept_failures),
            reconnects: get(&c.reconnects),
            events_dropped: get(&c.events_dropped),
            datagrams_dropped: get(&c.datagrams_dropped),
        }
    }

    /// Closes gracefully: stops listeners and connectors, closes every
    /// connection after its queued data is written, and waits until all
    /// have ended (each waits at most the `close_timeout` for its peer).
    /// Keep reading [`LinkEvents`] meanwhile, or connections with unread
    /// data cannot finish. Cancel-safe.
    pub async fn close(&self) {
        let core = self.core();
        for (_, entry) in lock(&core.listeners).drain() {
            entry.cancel.cancel();
            if let Some(file) = entry.unix_file {
                let _ = std::fs::remove_file(file);
            }
        }
        for (_, cancel) in lock(&core.connectors).drain() {
            // Connectors stop connecting; their live connection closes below.
            cancel.cancel();
        }
        for conn in self.connections() {
            conn.close();
        }
        lock(&core.events).take();
        core.tracker.close();
        core.tracker.wait().await;
    }
}

async fn run_established(
    core: Arc<Core>,
    conn: Connection,
    est: Established,
    events: mpsc::Sender<LinkEvent>,
) {
    match est {
        Established::Tcp(s) => run_stream(core, conn, s, events).await,
        Established::Unix(s) => run_stream(core, conn, s, events).await,
        Established::TlsTcp(s) => run_stream(core, conn, s, events).await,
        Established::TlsUnix(s) => run_stream(core, conn, s, events).await,
        Established::Udp(s) => run_udp_connected(core, conn, s, events).await,
    }
}

type EstablishedParts = (
    Established,
    Option<Address>,
    Option<Address>,
    Option<Arc<[rustls::pki_types::CertificateDer<'static>]>>,
);

/// Connects (and handshakes) once.
async fn establish(
    core: &Core,
    address: &Address,
    options: &ConnectOptions,
) -> Result<EstablishedParts, LinkError> {
    let sockopts = options.socket.as_ref().unwrap_or(&core.config.socket);
    let cfg = &core.config;
    let tls = match (address.scheme().is_tls(), &options.tls) {
        (true, None) => {
            return Err(LinkError::TlsConfigMissing {
                address: address.to_string(),
                side: "client",
            });
        }
        (true, Some(t)) => Some((
            tokio_rustls::TlsConnector::from(t.inner.clone()),
            t.server_name_for(address.tls_server_name())?,
        )),
        (false, _) => None,
    };
    let handshake = |peer: String| move |e: std::io::Error| LinkError::Tls { peer, source: e };
    match address {
        Address::Ip { scheme, .. } => {
            let addrs = socket::resolve(address, cfg.dns_timeout).await?;
            let mut last_err = None;
            for addr in addrs {
                if *scheme == Scheme::Udp {
                    let local = sockopts
                        .bind
                        .unwrap_or_else(|| socket::any_local_for(&addr));
                    let sock = socket::bind_udp(local, Some(addr), sockopts).await?;
                    let local = sock.local_addr().ok().map(Address::udp);
                    return Ok((
                        Established::Udp(sock),
                        Some(Address::udp(addr)),
                        local,
                        None,
                    ));
                }
                let stream = match socket::connect_tcp(addr, sockopts, cfg.connect_timeout).await {
                    Ok(s) => s,
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                };
                let local = stream.local_addr().ok().map(|a| Address::ip(*scheme, a));
                let peer = Some(Address::ip(*scheme, addr));
                let Some((connector, name)) = tls else {
                    return Ok((Established::Tcp(stream), peer, local, None));
                };
                let tls_stream = tokio::time::timeout(
                    cfg.tls_handshake_timeout,
                    connector.connect(name, stream),
                )
                .await
                .map_err(|_| LinkError::HandshakeTimeout {
                    peer: addr.to_string(),
                    timeout: cfg.tls_handshake_timeout,
                })?
                .map_err(handshake(addr.to_string()))?;
                let tls_stream = tokio_rustls::TlsStream::Client(tls_stream);
                let certs = certs_of(&tls_stream);
                return Ok((
                    Established::TlsTcp(Box::new(tls_stream)),
                    peer,
                    local,
                    certs,
                ));
            }
            Err(last_err.expect("resolve returns at least one address"))
        }
        Address::Unix { path, .. } => {
            let stream = socket::connect_unix(path, cfg.connect_timeout).await?;
            let peer = Some(address.clone());
            let Some((connector, name)) = tls else {
                return Ok((Established::Unix(stream), peer, None, None));
            };
            let tls_stream =
                tokio::time::timeout(cfg.tls_handshake_timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| LinkError::HandshakeTimeout {
                        peer: address.to_string(),
                        timeout: cfg.tls_handshake_timeout,
                    })?
                    .map_err(handshake(address.to_string()))?;
            let tls_stream = tokio_rustls::TlsStream::Client(tls_stream);
            let certs = certs_of(&tls_stream);
            Ok((
                Established::TlsUnix(Box::new(tls_stream)),
                peer,
                None,
                certs,
            ))
        }
    }
}

async fn connector_task(
    core: Arc<Core>,
    id: ConnectorId,
    address: Address,
    options: ConnectOptions,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    let policy = options
        .reconnect
        .clone()
        .unwrap_or_else(|| core.config.reconnect.clone());
    let mut backoff = Backoff::new(policy);
    let mut connected_before = false;
    loop {
        let attempt = tokio::select! {
            r = establish(&core, &address, &options) => r,
            _ = cancel.cancelled() => break,
        };
        let wait = match attempt {
            Ok((est, peer, local, certs)) => {
                if connected_before {
                    core.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                connected_before = true;
                let datagram = matches!(est, Established::Udp(_));
                let conn = core.new_connection(
                    Origin::Connector(id),
                    peer,
                    local,
                    certs,
                    datagram,
                    &cancel,
                );
                tracing::debug!(connector = %id, conn = %conn.id(), %address, "connected");
                run_established(core.clone(), conn, est, events.clone()).await;
                backoff.after_disconnect(fastrand::f64())
            }
            Err(error) => {
                core.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(connector = %id, %address, %error, "connect failed");
                core.inform(
                    &events,
                    LinkEvent::ConnectFailed {
                        connector: id,
                        error: Arc::new(error),
                    },
                );
                backoff.after_failure(fastrand::f64())
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => break,
        }
    }
    lock(&core.connectors).remove(&id);
}

#[allow(clippy::too_many_arguments)]
async fn tcp_accept_task(
    core: Arc<Core>,
    id: ListenerId,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sockopts: SocketOptions,
    bound: Address,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    let scheme = bound.scheme();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = cancel.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(listener = %id, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        socket::configure_accepted(&stream, &sockopts);
        let local = stream.local_addr().ok().map(|a| Address::ip(scheme, a));
        let peer = Some(Address::ip(scheme, peer));
        start_accepted(&core, id, stream, tls.as_ref(), peer, local, &events);
    }
}

/// Runs an accepted stream as a connection, after the TLS handshake when
/// the listener has TLS (in its own task, so a slow handshake never holds
/// up the accept loop).
fn start_accepted<IO>(
    core: &Arc<Core>,
    id: ListenerId,
    stream: IO,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    peer: Option<Address>,
    local: Option<Address>,
    events: &mpsc::Sender<LinkEvent>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let core2 = core.clone();
    let events = events.clone();
    match tls {
        None => {
            let conn = core.new_connection(
                Origin::Listener(id),
                peer,
                local,
                None,
                false,
                &core.shutdown,
            );
            core.tracker.spawn(run_stream(core2, conn, stream, events));
        }
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            core.tracker.spawn(async move {
                let name = peer
                    .as_ref()
                    .or(local.as_ref())
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if let Some(tls) = accept_tls(&core2, id, &acceptor, stream, name, &events).await {
                    let tls = tokio_rustls::TlsStream::Server(tls);
                    let certs = certs_of(&tls);
                    let conn = core2.new_connection(
                        Origin::Listener(id),
                        peer,
                        local,
                        certs,
                        false,
                        &core2.shutdown,
                    );
                    run_stream(core2, conn, tls, events).await;
                }
            });
        }
    }
}

async fn accept_tls<IO>(
    core: &Core,
    id: ListenerId,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: IO,
    peer: String,
    events: &mpsc::Sender<LinkEvent>,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = core.config.tls_handshake_timeout;
    let result = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => return Some(s),
        Ok(Err(source)) => LinkError::Tls { peer, source },
        Err(_) => LinkError::HandshakeTimeout { peer, timeout },
    };
    core.stats.accept_failures.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(listener = %id, error = %result, "TLS accept failed");
    core.inform(
        events,
        LinkEvent::AcceptFailed {
            listener: id,
            error: Arc::new(result),
        },
    );
    None
}

async fn unix_accept_task(
    core: Arc<Core>,
    id: ListenerId,
    listener: tokio::net::UnixListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    bound: Address,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = cancel.cancelled() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(listener = %id, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        start_accepted(
            &core,
            id,
            stream,
            tls.as_ref(),
            None,
            Some(bound.clone()),
            &events,
        );
    }
}

/// A connected UDP socket: each send is a datagram, each datagram an event.
async fn run_udp_connected(
    core: Arc<Core>,
    conn: Connection,
    socket: UdpSocket,
    events: mpsc::Sender<LinkEvent>,
) {
    if events
        .send(LinkEvent::Connected(conn.clone()))
        .await
        .is_err()
    {
        core.unregister(&conn, DisconnectReason::Aborted);
        return;
    }
    let mut buf = vec![0u8; core.config.max_datagram.max(1)];
    let mut batch = VecDeque::new();
    let abort = conn.shared.abort.clone();
    let reason = loop {
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    core.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if events.send(LinkEvent::Data { connection: conn.id(), data }).await.is_err() {
                        break DisconnectReason::Aborted;
                    }
                }
                // ICMP port unreachable from an earlier send: UDP has no
                // connection to lose, so keep going.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => break e.into(),
            },
            t = std::future::poll_fn(|cx| conn.shared.queue.poll_take(cx, &mut batch)) => {
                if t == Take::Close {
                    break DisconnectReason::Closed;
                }
                if let Err(reason) = send_datagrams(&core, &conn, &socket, None, &mut batch).await {
                    break reason;
                }
            }
            _ = abort.cancelled() => break DisconnectReason::Aborted,
        }
    };
    finish(&core, &conn, reason, &events).await;
}

async fn send_datagrams(
    core: &Core,
    conn: &Connection,
    socket: &UdpSocket,
    to: Option<SocketAddr>,
    batch: &mut VecDeque<Bytes>,
) -> Result<(), DisconnectReason> {
    while let Some(d) = batch.pop_front() {
        let sent = match to {
            Some(peer) => socket.send_to(&d, peer).await,
            None => socket.send(&d).await,
        };
        match sent {
            Ok(n) => {
                core.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
        // A datagram refused by ICMP still left this host: it counts.
        conn.shared
            .written
            .fetch_add(d.len() as u64, Ordering::Release);
    }
    Ok(())
}

/// The listener's connection for `peer`, made (and announced) if new.
/// `Connected` is sent under the peers lock, so no `Data` for the peer can
/// overtake it.
async fn udp_peer_connection(
    core: &Arc<Core>,
    udp: &Arc<UdpListener>,
    peer: SocketAddr,
    events: &mpsc::Sender<LinkEvent>,
) -> Option<Connection> {
    let mut peers = udp.peers.lock().await;
    if let Some(c) = peers.get(&peer) {
        return Some(c.clone());
    }
    if peers.len() >= core.config.max_udp_peers {
        return None;
    }
    let conn = core.new_connection(
        Origin::Listener(udp.id),
        Some(Address::udp(peer)),
        udp.local.clone(),
        None,
        true,
        &udp.cancel,
    );
    if events
        .send(LinkEvent::Connected(conn.clone()))
        .await
        .is_err()
    {
        core.unregister(&conn, DisconnectReason::Aborted);
        return None;
    }
    peers.insert(peer, conn.clone());
    drop(peers);
    core.tracker.spawn(udp_peer_task(
        core.clone(),
        udp.clone(),
        conn.clone(),
        peer,
        events.clone(),
    ));
    Some(conn)
}

/// Writes one UDP peer's queue through the listener's socket.
async fn udp_peer_task(
    core: Arc<Core>,
    udp: Arc<UdpListener>,
    conn: Connection,
    peer: SocketAddr,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut batch = VecDeque::new();
    let abort = conn.shared.abort.clone();
    let reason = loop {
        tokio::select! {
            t = std::future::poll_fn(|cx| conn.shared.queue.poll_take(cx, &mut batch)) => {
                if t == Take::Close {
                    break DisconnectReason::Closed;
                }
                if let Err(reason) = send_datagrams(&core, &conn, &udp.socket, Some(peer), &mut batch).await {
                    break reason;
                }
            }
            _ = abort.cancelled() => break DisconnectReason::Aborted,
        }
    };
    udp.peers.lock().await.remove(&peer);
    finish(&core, &conn, reason, &events).await;
}

async fn udp_listener_task(
    core: Arc<Core>,
    udp: Arc<UdpListener>,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut buf = vec![0u8; core.config.max_datagram.max(1)];
    loop {
        let received = tokio::select! {
            r = udp.socket.recv_from(&mut buf) => r,
            _ = udp.cancel.cancelled() => break,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(listener = %udp.id, "UDP receive failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(conn) = udp_peer_connection(&core, &udp, peer, &events).await else {
            core.stats.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        core.stats
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        let data = Bytes::copy_from_slice(&buf[..n]);
        if events
            .send(LinkEvent::Data {
                connection: conn.id(),
                data,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}
