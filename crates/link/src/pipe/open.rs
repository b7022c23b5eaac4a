//! Opening a pipe: from an address (connect, listen) or from a std socket
//! made elsewhere, each on the pipe's own link; then its task starts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::core::PipeCore;
use super::peers::{PeerInfo, Route, in_family_of};
use super::pipe::{Handle, Pipe, Shared};
use super::stats::Counters;
use super::{
    CURRENT_PIPE, HandlerId, PipeConfig, PipeError, Role, SUB_ALL, SubscriptionId,
    SubscriptionQueue, next_id, task,
};
use crate::{
    Address, Adopted, ConnectOptions, Connection, Link, LinkEvents, ListenOptions, ListenerId,
    Scheme, ToAddress,
};

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
}
