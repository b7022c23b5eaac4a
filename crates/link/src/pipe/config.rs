//! A pipe's configuration: a plain struct with documented defaults.

use std::time::Duration;

use super::handler::{EndHandler, MessageHandler, UpHandler};
use crate::inbox::DropPolicy;
use crate::{LinkConfig, TlsClientConfig, TlsServerConfig};

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
/// hashes in a [`RecentIds`](crate::window::RecentIds) window (with its
/// index, about `20 * window` bytes per sender whatever the id size); the
/// chance that a new id is mistaken for a remembered one is about
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
/// Everything about sockets and connections (timeouts, socket options,
/// queue sizes) is the pipe's [`LinkConfig`], in [`link`](Self::link);
/// the other fields are the pipe's own. `LinkConfig` is `non_exhaustive`,
/// so change its fields on a default:
///
/// ```
/// use weft_link::pipe::PipeConfig;
/// let mut config = PipeConfig::default();
/// config.link.socket.bind = Some("127.0.0.2:0".parse().unwrap());
/// config.link.send_queue_bytes = 64 << 10;
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct PipeConfig {
    /// Client (has a destination) or server (listens). Used by
    /// [`Pipe::open`](super::Pipe::open); [`Pipe::connect`](super::Pipe::connect)
    /// and [`Pipe::listen`](super::Pipe::listen) set it themselves.
    /// Default: [`Role::Client`].
    pub role: Role,
    /// The configuration of the pipe's [`Link`](crate::Link): timeouts
    /// (connect, TLS handshake, DNS, and [`close_timeout`], how long
    /// [`Pipe::close`](super::Pipe::close) lets each connection wait for
    /// its peer), socket options, the send queue's size, and for UDP the
    /// largest datagram and [`max_udp_peers`], the distinct peers a UDP
    /// server pipe tracks (datagrams from further peers are dropped and
    /// counted in
    /// [`PipeStats::datagrams_dropped`](super::PipeStats::datagrams_dropped)).
    /// A server pipe binds to the address it is opened with and ignores
    /// [`SocketOptions::bind`](crate::SocketOptions::bind); pipes connect
    /// once, so [`LinkConfig::reconnect`] does not apply.
    /// Default: [`LinkConfig::default()`].
    ///
    /// [`close_timeout`]: LinkConfig::close_timeout
    /// [`max_udp_peers`]: LinkConfig::max_udp_peers
    pub link: LinkConfig,
    /// How long [`SubscriptionQueue::recv`](super::SubscriptionQueue::recv)
    /// and [`Pipe::recv`](super::Pipe::recv) wait when given no timeout
    /// (`None`), as P2PD's do. A pipe passes it to its queue's
    /// [`Inbox`](crate::inbox::Inbox), where `None` would wait without
    /// limit. Default: 2 s (P2PD's).
    pub recv_timeout: Duration,
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
    /// 64 KiB, or a datagram of up to [`LinkConfig::max_datagram`]).
    /// Default: 1024. (0 is taken as 1.)
    pub queue_capacity: usize,
    /// What a full subscription queue drops; either way the lost message
    /// is counted in [`SubscriptionQueue::dropped`](super::SubscriptionQueue::dropped)
    /// and [`PipeStats::queue_dropped`](super::PipeStats::queue_dropped).
    /// Default: [`DropPolicy::DropOldest`] (what P2PD does).
    pub queue_policy: DropPolicy,
    /// Duplicate suppression by message id. Default: none.
    pub dedupe: Option<Dedupe>,
    /// The TLS client configuration; required to connect to `tls://` or
    /// `unix+tls://`. Default: none.
    pub tls_client: Option<TlsClientConfig>,
    /// The TLS server configuration; required to listen on `tls://` or
    /// `unix+tls://`. Default: none.
    pub tls_server: Option<TlsServerConfig>,
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
        PipeConfig {
            role: Role::Client,
            link: LinkConfig::default(),
            recv_timeout: Duration::from_secs(2),
            send_retries: 3,
            send_retry_wait: Duration::from_millis(200),
            queue_capacity: 1024,
            queue_policy: DropPolicy::DropOldest,
            dedupe: None,
            tls_client: None,
            tls_server: None,
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
}
