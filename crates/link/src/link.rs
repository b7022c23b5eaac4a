//! The link: listeners and connectors, added and removed while running,
//! and the connections they make, reported as events.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::accept::{TcpStreams, UnixStreams, accept_task};
use crate::connection::{Ends, run_stream};
use crate::dial::{connector_task, establish, run_established};
use crate::registry::{ListenerEntry, Registry};
use crate::udp::{UdpListener, run_udp_connected, try_udp_peer_connection, udp_peer_connection};
use crate::{
    Address, Connection, ConnectionId, DisconnectReason, LinkConfig, LinkError, Origin,
    ReconnectPolicy, Scheme, SocketOptions, TlsClientConfig, TlsServerConfig, ToAddress, UnixPath,
    socket,
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
    /// Streams given to [`adopt_tls`](Link::adopt_tls) whose TLS handshake
    /// failed.
    pub handshake_failures: u64,
    /// Connections re-established by a connector after the first.
    pub reconnects: u64,
    /// Informational events dropped because the event queue was full.
    pub events_dropped: u64,
    /// UDP datagrams dropped because the listener tracked too many peers.
    pub datagrams_dropped: u64,
    /// Accepted connections closed at once: their listener had
    /// [`LinkConfig::max_connections_per_listener`](crate::LinkConfig::max_connections_per_listener)
    /// open, or the process had no file descriptor left.
    pub connections_refused: u64,
    /// Datagrams that arrived on a QUIC socket of the link and cannot be
    /// QUIC packets (no fixed bit, a header cut short, an Initial shorter
    /// than QUIC requires), dropped. Datagrams that look like QUIC but fail
    /// authentication or belong to no connection are dropped by quinn
    /// without being counted.
    pub quic_datagrams_dropped: u64,
    /// STUN datagrams (RFC 7983: first byte 0 to 3) that arrived on a QUIC
    /// socket of the link and were dropped: no
    /// [`StunChannel`](crate::quic::StunChannel) of that socket was alive,
    /// or its queue ([`QuicOptions::stun_queue`](crate::quic::QuicOptions::stun_queue))
    /// was full. Such datagrams never count as
    /// [`quic_datagrams_dropped`](Self::quic_datagrams_dropped).
    pub stun_datagrams_dropped: u64,
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
    registry: Arc<Registry>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.registry.abort();
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("connections", &self.handle.registry.connection_count())
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

impl Link {
    /// A new link and its events. Needs a Tokio runtime when listeners or
    /// connectors are added.
    pub fn new(config: LinkConfig) -> (Link, LinkEvents) {
        let (tx, rx) = mpsc::channel(config.event_capacity.max(1));
        let registry = Arc::new(Registry::new(config, tx));
        (
            Link {
                handle: Arc::new(Handle { registry }),
            },
            LinkEvents { rx },
        )
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.handle.registry
    }

    /// The link's configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.registry().config
    }

    /// Starts listening with the link's socket options. See
    /// [`listen_with`](Self::listen_with). Cancel-safe: cancelled before it
    /// returns, it leaves no listener behind.
    pub async fn listen(&self, address: impl ToAddress) -> Result<Listening, LinkError> {
        self.listen_with(address, ListenOptions::default()).await
    }

    /// Binds a listener and starts accepting. Returns once bound, with the
    /// address actually bound. TLS listeners need `options.tls`. A UDP
    /// listener makes one connection per remote address it hears from.
    /// Cancel-safe, as [`listen`](Self::listen).
    pub async fn listen_with(
        &self,
        address: impl ToAddress,
        options: ListenOptions,
    ) -> Result<Listening, LinkError> {
        let registry = self.registry();
        let address = address.to_address()?;
        let events = registry.sender()?;
        if address.scheme() == Scheme::Quic {
            return crate::quic::listen(registry, &address, options).await;
        }
        let sockopts = options
            .socket
            .unwrap_or_else(|| registry.config.socket.clone());
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
        let id = ListenerId(registry.next_id());
        let cancel = registry.shutdown().child_token();
        let scheme = address.scheme();
        let mut entry = ListenerEntry {
            cancel: cancel.clone(),
            unix_file: None,
            udp: None,
            stun: None,
        };
        let bound = match &address {
            Address::Ip { .. } => {
                let addr = *socket::resolve(&address, registry.config.dns_timeout)
                    .await?
                    .first()
                    .expect("resolve returns at least one address");
                if scheme == Scheme::Udp {
                    let sock = socket::bind_udp(addr, None, &sockopts).await?;
                    let bound = Address::ip(scheme, local_addr(sock.local_addr())?);
                    entry.udp = Some(UdpListener::start(
                        registry,
                        id,
                        sock,
                        bound.clone(),
                        cancel,
                        events,
                    ));
                    bound
                } else {
                    let listener = socket::listen_tcp(addr, &sockopts)?;
                    let bound = Address::ip(scheme, local_addr(listener.local_addr())?);
                    let streams = TcpStreams {
                        listener,
                        options: sockopts,
                        scheme,
                    };
                    registry.spawn(accept_task(
                        registry.clone(),
                        id,
                        streams,
                        tls,
                        cancel,
                        events,
                    ));
                    bound
                }
            }
            Address::Unix { path, .. } => {
                let listener = socket::listen_unix(path)?;
                let streams = UnixStreams {
                    listener,
                    bound: address.clone(),
                };
                registry.spawn(accept_task(
                    registry.clone(),
                    id,
                    streams,
                    tls,
                    cancel,
                    events,
                ));
                if let UnixPath::Path(p) = path {
                    entry.unix_file = Some(p.clone());
                }
                address.clone()
            }
        };
        tracing::debug!(listener = %id, address = %bound, "listening");
        registry.add_listener(id, entry);
        Ok(Listening { id, address: bound })
    }

    /// Stops a listener. Stream connections it accepted stay up; a UDP
    /// listener's connections end with it (they share its socket). A Unix
    /// socket file it created is removed. Returns whether it existed.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.registry().remove_listener(id)
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
        let registry = self.registry();
        let address = address.to_address()?;
        if address.scheme().is_tls() && options.tls.is_none() {
            return Err(LinkError::TlsConfigMissing {
                address: address.to_string(),
                side: "client",
            });
        }
        let events = registry.sender()?;
        let id = ConnectorId(registry.next_id());
        let cancel = registry.shutdown().child_token();
        registry.add_connector(id, cancel.clone());
        registry.spawn(connector_task(
            registry.clone(),
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
    /// Cancel-safe: a cancelled attempt leaves no connection behind.
    pub async fn connect_once(
        &self,
        address: impl ToAddress,
        options: ConnectOptions,
    ) -> Result<Connection, LinkError> {
        let registry = self.registry();
        let address = address.to_address()?;
        let events = registry.sender()?;
        let dialled = establish(registry, &address, &options).await?;
        let conn = registry.new_connection(
            Origin::Adopted,
            dialled.ends,
            dialled.socket.is_datagram(),
            registry.shutdown(),
        );
        registry.spawn(run_established(
            registry.clone(),
            conn.clone(),
            dialled.socket,
            events,
        ));
        Ok(conn)
    }

    /// Stops a connector and aborts its connection, if any. Returns whether
    /// it existed.
    pub fn remove_connector(&self, id: ConnectorId) -> bool {
        self.registry().remove_connector(id)
    }

    /// Lets a connector rest: once its connection ends it does not connect
    /// again until [`wake_connector`](Self::wake_connector). For a layer
    /// above that finds the connector's connections redundant (another
    /// connection reaches the same peer). Returns whether it exists.
    pub fn rest_connector(&self, id: ConnectorId) -> bool {
        self.registry().rest_connector(id, true)
    }

    /// Ends a connector's rest: it connects again after its backoff.
    /// Returns whether it exists.
    pub fn wake_connector(&self, id: ConnectorId) -> bool {
        self.registry().rest_connector(id, false)
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
        let registry = self.registry();
        let events = registry.sender()?;
        let ends = Ends {
            peer,
            local,
            ..Ends::default()
        };
        let conn = registry.new_connection(Origin::Adopted, ends, false, registry.shutdown());
        registry.spawn(run_stream(registry.clone(), conn.clone(), stream, events));
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
        socket::configure_accepted(&stream, &self.registry().config.socket);
        self.adopt(stream, peer, local)
    }

    /// Accepts on an existing std TCP listener as if [`listen`](Self::listen)
    /// had bound it (plain TCP; the link's socket options apply to accepted
    /// streams).
    pub fn adopt_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> Result<Listening, LinkError> {
        let registry = self.registry();
        let events = registry.sender()?;
        listener
            .set_nonblocking(true)
            .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| LinkError::io("registering a listener", e))?;
        let bound = Address::tcp(local_addr(listener.local_addr())?);
        let id = ListenerId(registry.next_id());
        let cancel = registry.shutdown().child_token();
        let streams = TcpStreams {
            listener,
            options: registry.config.socket.clone(),
            scheme: Scheme::Tcp,
        };
        registry.spawn(accept_task(
            registry.clone(),
            id,
            streams,
            None,
            cancel.clone(),
            events,
        ));
        registry.add_listener(
            id,
            ListenerEntry {
                cancel,
                unix_file: None,
                udp: None,
                stun: None,
            },
        );
        Ok(Listening { id, address: bound })
    }

    /// Runs an existing std UDP socket. A connected socket (or one given a
    /// `peer`, which connects it) becomes one datagram connection, like a
    /// `udp://` connector; an unconnected one becomes a UDP listener with a
    /// connection per remote address, like [`listen`](Self::listen). Of the
    /// link's socket options only `broadcast` applies (when true): the
    /// socket is bound already.
    /// Cancel-safe: a cancelled call leaves the socket dropped.
    pub async fn adopt_udp(
        &self,
        socket: std::net::UdpSocket,
        peer: Option<SocketAddr>,
    ) -> Result<Adopted, LinkError> {
        self.registry().sender()?;
        let socket = self.register_udp(socket)?;
        if let Some(peer) = peer {
            socket
                .connect(peer)
                .await
                .map_err(|e| LinkError::io(format!("connecting to {peer}"), e))?;
        }
        self.start_udp(socket)
    }

    /// [`adopt_udp`](Self::adopt_udp) without a `peer`, which needs no
    /// waiting: the socket runs as it is, connected or not.
    pub(crate) fn adopt_udp_as_is(
        &self,
        socket: std::net::UdpSocket,
    ) -> Result<Adopted, LinkError> {
        self.registry().sender()?;
        let socket = self.register_udp(socket)?;
        self.start_udp(socket)
    }

    /// Hands a std UDP socket to the runtime, with the link's `broadcast`.
    fn register_udp(&self, socket: std::net::UdpSocket) -> Result<UdpSocket, LinkError> {
        socket
            .set_nonblocking(true)
            .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
        if self.registry().config.socket.broadcast {
            socket
                .set_broadcast(true)
                .map_err(|e| LinkError::io("setting SO_BROADCAST", e))?;
        }
        UdpSocket::from_std(socket).map_err(|e| LinkError::io("registering a UDP socket", e))
    }

    /// Runs a registered UDP socket: a connection when it is connected, a
    /// listener when not.
    fn start_udp(&self, socket: UdpSocket) -> Result<Adopted, LinkError> {
        let registry = self.registry();
        let events = registry.sender()?;
        let local = socket.local_addr().ok().map(Address::udp);
        if let Ok(peer) = socket.peer_addr() {
            let ends = Ends {
                peer: Some(Address::udp(peer)),
                local,
                ..Ends::default()
            };
            let conn = registry.new_connection(Origin::Adopted, ends, true, registry.shutdown());
            registry.spawn(run_udp_connected(
                registry.clone(),
                conn.clone(),
                socket,
                events,
            ));
            return Ok(Adopted::Connection(conn));
        }
        let bound =
            local.ok_or_else(|| LinkError::Unsupported("UDP socket without an address".into()))?;
        let id = ListenerId(registry.next_id());
        let cancel = registry.shutdown().child_token();
        let udp = UdpListener::start(registry, id, socket, bound.clone(), cancel.clone(), events);
        registry.add_listener(
            id,
            ListenerEntry {
                cancel,
                unix_file: None,
                udp: Some(udp),
                stun: None,
            },
        );
        Ok(Adopted::Listener(Listening { id, address: bound }))
    }

    /// The connection with this id, while it is up.
    pub fn connection(&self, id: ConnectionId) -> Option<Connection> {
        self.registry().connection(id)
    }

    /// All connections that are up.
    pub fn connections(&self) -> Vec<Connection> {
        self.registry().connections()
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
        let registry = self.registry();
        let udp = registry.udp_listener(listener).ok_or(LinkError::Closed)?;
        let events = registry.sender()?;
        udp_peer_connection(registry, &udp, peer, &events)
            .await
            .ok_or_else(|| {
                LinkError::Unsupported(format!(
                    "UDP listener tracks {} peers already",
                    registry.config.max_udp_peers
                ))
            })
    }

    /// [`udp_peer`](Self::udp_peer) without waiting: the connection of a
    /// UDP listener to `peer`, made now if new. Fails with
    /// [`LinkError::QueueFull`] when the link's event queue has no room for
    /// the new connection's `Connected` event (or the listener is busy
    /// announcing another peer), and as `udp_peer` otherwise.
    pub fn try_udp_peer(
        &self,
        listener: ListenerId,
        peer: SocketAddr,
    ) -> Result<Connection, LinkError> {
        let registry = self.registry();
        let udp = registry.udp_listener(listener).ok_or(LinkError::Closed)?;
        let events = registry.sender()?;
        try_udp_peer_connection(registry, &udp, peer, &events)
    }

    /// A snapshot of the link's counters.
    pub fn stats(&self) -> LinkStats {
        let c = &self.registry().stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            connections_opened: get(&c.connections_opened),
            connections_closed: get(&c.connections_closed),
            bytes_sent: get(&c.bytes_sent),
            bytes_received: get(&c.bytes_received),
            connect_failures: get(&c.connect_failures),
            accept_failures: get(&c.accept_failures),
            handshake_failures: get(&c.handshake_failures),
            reconnects: get(&c.reconnects),
            events_dropped: get(&c.events_dropped),
            datagrams_dropped: get(&c.datagrams_dropped),
            quic_datagrams_dropped: get(&c.quic_datagrams_dropped),
            stun_datagrams_dropped: get(&c.stun_datagrams_dropped),
            connections_refused: get(&c.connections_refused),
        }
    }

    /// Closes gracefully: stops listeners and connectors, closes every
    /// connection after its queued data is written, and waits until all
    /// have ended (each waits at most the `close_timeout` for its peer).
    /// Keep reading [`LinkEvents`] meanwhile, or connections with unread
    /// data cannot finish. Cancel-safe.
    pub async fn close(&self) {
        self.registry().close().await;
    }
}

/// A socket's bound address, or the error of reading it.
fn local_addr(addr: std::io::Result<SocketAddr>) -> Result<SocketAddr, LinkError> {
    addr.map_err(|e| LinkError::io("reading the local address", e))
}
