//! A pipe's configuration: a plain struct with documented defaults.

use std::net::SocketAddr;
use std::time::Duration;

use super::handler::{EndHandler, MessageHandler, UpHandler};
use crate::{Interface, LinkConfig, SocketOptions, TlsClientConfig, TlsServerConfig};

/// Whether a pipe connects to a destination or listens without one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Connects to a destination, which is where [`Pipe::send`] sends when
    /// no peer is named. The default.
    ///
    /// [`Pipe::send`]: super::Pipe::send
    #[default]
    Client,
    /// Listens on a local address and talks to whoever connects (TCP, TLS,
    /// Unix) or sends datagrams to it (UDP). It has no destination: sends
    /// name their peer.
    Server,
}

/// What a full subscription queue does with a new message. Either way the
/// lost message is counted ([`SubscriptionQueue::dropped`] and
/// [`PipeStats::queue_dropped`]).
///
/// [`SubscriptionQueue::dropped`]: super::SubscriptionQueue::dropped
/// [`PipeStats::queue_dropped`]: super::PipeStats::queue_dropped
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DropPolicy {
    /// Drop the oldest queued message to make room, so the queue holds the
    /// newest ones (what P2PD does). The default.
    #[default]
    DropOldest,
    /// Keep what is queued and drop the new message.
    DropNewest,
}

/// How a message's id is found for [`Dedupe`].
#[derive(Clone, Debug)]
pub enum DedupeId {
    /// The whole payload is the id.
    Payload,
    /// Capture group 1 of this regex, searched in the payload, is the id.
    /// A message where the regex does not match (or group 1 does not take
    /// part) has no id and is never dropped as a duplicate.
    Regex(regex::bytes::Regex),
}

/// Drops messages whose id was already seen recently from the same sender.
///
/// For each sender (its normalised socket address, or its connection when
/// it has no address, as on Unix sockets) the pipe remembers the ids of the
/// last `window` messages it accepted. A message whose id is among them is
/// dropped before it reaches relays, queues or handlers, and counted in
/// [`PipeStats::duplicates_dropped`](super::PipeStats::duplicates_dropped).
/// Dropped duplicates do not refresh the window. A sender's ids are
/// forgotten when its connection ends. Ids are remembered as 64-bit keyed
/// hashes, so memory is `8 * window` bytes per sender whatever the id size;
/// the chance that a new id is mistaken for a remembered one is about
/// `window / 2^64`. A `window` of 0 turns deduplication off.
#[derive(Clone, Debug)]
pub struct Dedupe {
    /// How many recent ids are remembered per sender.
    pub window: usize,
    /// Where the id is.
    pub id: DedupeId,
}

impl Dedupe {
    /// Deduplicates whole payloads over the last `window` messages.
    pub fn payload(window: usize) -> Dedupe {
        Dedupe {
            window,
            id: DedupeId::Payload,
        }
    }

    /// Deduplicates by capture group 1 of `id` over the last `window` ids.
    pub fn regex(window: usize, id: regex::bytes::Regex) -> Dedupe {
        Dedupe {
            window,
            id: DedupeId::Regex(id),
        }
    }
}

/// How a [`Pipe`](super::Pipe) is opened and behaves.
///
/// Build it with struct update syntax so that fields added later keep
/// your code compiling:
///
/// ```
/// use std::time::Duration;
/// use weft_link::pipe::{PipeConfig, Role};
/// let config = PipeConfig {
///     role: Role::Server,
///     recv_timeout: Duration::from_secs(5),
///     ..PipeConfig::default()
/// };
/// # let _ = config;
/// ```
///
/// Timeouts and socket options map onto the pipe's [`LinkConfig`]
/// ([`link_config`](Self::link_config)) and [`SocketOptions`]
/// ([`socket_options`](Self::socket_options)).
#[derive(Clone, Debug)]
pub struct PipeConfig {
    /// Client (has a destination) or server (listens). Used by
    /// [`Pipe::open`](super::Pipe::open); [`Pipe::connect`](super::Pipe::connect)
    /// and [`Pipe::listen`](super::Pipe::listen) set it themselves.
    /// Default: [`Role::Client`].
    pub role: Role,
    /// Limit for establishing a TCP or Unix connection
    /// ([`LinkConfig::connect_timeout`]). Default: 10 s.
    pub connect_timeout: Duration,
    /// Limit for a TLS handshake, on both sides
    /// ([`LinkConfig::tls_handshake_timeout`]). Default: 10 s.
    pub tls_handshake_timeout: Duration,
    /// Limit for resolving a DNS name ([`LinkConfig::dns_timeout`]).
    /// Default: 5 s.
    pub dns_timeout: Duration,
    /// On [`Pipe::close`](super::Pipe::close), how long a connection waits
    /// for its peer to close too ([`LinkConfig::close_timeout`]).
    /// Default: 2 s.
    pub close_timeout: Duration,
    /// How long [`SubscriptionQueue::recv`](super::SubscriptionQueue::recv)
    /// and [`Pipe::recv`](super::Pipe::recv) wait when given no timeout.
    /// Default: 2 s (P2PD's).
    pub recv_timeout: Duration,
    /// SO_REUSEADDR on listening sockets ([`SocketOptions::reuse_addr`]).
    /// Default: true.
    pub reuse_addr: bool,
    /// SO_BROADCAST on UDP sockets ([`SocketOptions::broadcast`]).
    /// Default: false.
    pub broadcast: bool,
    /// SO_LINGER on TCP sockets; `None` leaves the system default
    /// ([`SocketOptions::linger`]). Default: none.
    pub linger: Option<Duration>,
    /// TCP_NODELAY ([`SocketOptions::nodelay`]). Default: true.
    pub nodelay: bool,
    /// The local address a client pipe binds to before connecting
    /// ([`SocketOptions::bind`]); a server pipe binds to the address it
    /// is opened with and ignores this. Default: none (the system picks).
    pub bind: Option<SocketAddr>,
    /// The network interface sockets are bound to, by name or index
    /// ([`SocketOptions::interface`]; SO_BINDTODEVICE, which needs
    /// CAP_NET_RAW on Linux). Default: none.
    pub interface: Option<Interface>,
    /// How many more times [`Pipe::send`](super::Pipe::send) tries when an
    /// attempt fails because the send queue stayed full for
    /// [`send_retry_wait`](Self::send_retry_wait), or because a server
    /// pipe's peer has no connection yet or its connection just closed. So
    /// a send gives up after about `(send_retries + 1) * send_retry_wait`.
    /// A client pipe whose connection has ended fails at once.
    /// Default: 3.
    pub send_retries: u32,
    /// How long one send attempt waits for room, and the pause before
    /// retrying a missing peer. Default: 200 ms.
    pub send_retry_wait: Duration,
    /// How many messages each subscription queue holds, so a queue holds
    /// at most this many times the largest message (a read chunk of up to
    /// 64 KiB, or a datagram of up to [`max_datagram`](Self::max_datagram)).
    /// Default: 1024. (0 is taken as 1.)
    pub queue_capacity: usize,
    /// What a full subscription queue drops. Default:
    /// [`DropPolicy::DropOldest`].
    pub queue_policy: DropPolicy,
    /// Duplicate suppression by message id. Default: none.
    pub dedupe: Option<Dedupe>,
    /// The TLS client configuration; required to connect to `tls://` or
    /// `unix+tls://`. Default: none.
    pub tls_client: Option<TlsClientConfig>,
    /// The TLS server configuration; required to listen on `tls://` or
    /// `unix+tls://`. Default: none.
    pub tls_server: Option<TlsServerConfig>,
    /// Distinct UDP peers a server pipe tracks; datagrams from further
    /// peers are dropped and counted ([`LinkConfig::max_udp_peers`], and
    /// [`PipeStats::datagrams_dropped`](super::PipeStats::datagrams_dropped)
    /// for adopted UDP sockets). Default: 1024.
    pub max_udp_peers: usize,
    /// The largest UDP datagram received ([`LinkConfig::max_datagram`]).
    /// Default: 65 535.
    pub max_datagram: usize,
    /// Bytes each connection's send queue holds
    /// ([`LinkConfig::send_queue_bytes`]). Default: 4 MiB.
    pub send_queue_bytes: usize,
    /// Message handlers installed before the pipe receives anything, run in
    /// this order, before any added later with
    /// [`Pipe::add_message_handler`](super::Pipe::add_message_handler).
    /// A client pipe opened with none gets the default `SUB_ALL` queue.
    /// Default: none.
    pub message_handlers: Vec<MessageHandler>,
    /// Connection-up handlers installed before anything connects.
    /// Default: none.
    pub up_handlers: Vec<UpHandler>,
    /// Connection-end handlers installed before anything connects.
    /// Default: none.
    pub end_handlers: Vec<EndHandler>,
}

impl Default for PipeConfig {
    fn default() -> PipeConfig {
        let link = LinkConfig::default();
        let socket = SocketOptions::default();
        PipeConfig {
            role: Role::Client,
            connect_timeout: link.connect_timeout,
            tls_handshake_timeout: link.tls_handshake_timeout,
            dns_timeout: link.dns_timeout,
            close_timeout: link.close_timeout,
            recv_timeout: Duration::from_secs(2),
            reuse_addr: socket.reuse_addr,
            broadcast: socket.broadcast,
            linger: socket.linger,
            nodelay: socket.nodelay,
            bind: None,
            interface: None,
            send_retries: 3,
            send_retry_wait: Duration::from_millis(200),
            queue_capacity: 1024,
            queue_policy: DropPolicy::DropOldest,
            dedupe: None,
            tls_client: None,
            tls_server: None,
            max_udp_peers: link.max_udp_peers,
            max_datagram: link.max_datagram,
            send_queue_bytes: link.send_queue_bytes,
            message_handlers: Vec::new(),
            up_handlers: Vec::new(),
            end_handlers: Vec::new(),
        }
    }
}

impl PipeConfig {
    /// The default configuration with [`Role::Server`].
    pub fn server() -> PipeConfig {
        PipeConfig {
            role: Role::Server,
            ..PipeConfig::default()
        }
    }

    /// The socket options these settings stand for.
    pub fn socket_options(&self) -> SocketOptions {
        SocketOptions {
            nodelay: self.nodelay,
            reuse_addr: self.reuse_addr,
            broadcast: self.broadcast,
            linger: self.linger,
            bind: self.bind,
            interface: self.interface.clone(),
        }
    }

    /// The configuration of the pipe's [`Link`](crate::Link): the
    /// timeouts, sizes and socket options above, defaults otherwise.
    pub fn link_config(&self) -> LinkConfig {
        LinkConfig {
            dns_timeout: self.dns_timeout,
            connect_timeout: self.connect_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            close_timeout: self.close_timeout,
            socket: self.socket_options(),
            max_udp_peers: self.max_udp_peers,
            max_datagram: self.max_datagram,
            send_queue_bytes: self.send_queue_bytes,
            ..LinkConfig::default()
        }
    }
}
