//! Plain configuration structs with documented defaults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Throttle;

/// How a [`Link`](crate::Link) behaves. `LinkConfig::default()` is a good
/// start; each field documents its default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LinkConfig {
    /// Events (connected, data, disconnected) waiting to be read from
    /// [`LinkEvents`](crate::LinkEvents). When full, connections stop reading
    /// from their sockets (TCP back-pressure) until room frees up; nothing is
    /// dropped. Default: 1024.
    pub event_capacity: usize,
    /// Bytes a connection's send queue holds before `send().await` waits and
    /// `try_send` fails with [`LinkError::QueueFull`](crate::LinkError::QueueFull).
    /// A single larger message is still accepted into an empty queue.
    /// Default: 4 MiB.
    pub send_queue_bytes: usize,
    /// The largest chunk read from a socket at once. Connections start with a
    /// small buffer and grow to this while reads keep filling it, so idle
    /// connections stay cheap. Default: 64 KiB.
    pub max_read_chunk: usize,
    /// Limit for resolving a DNS name. Default: 5 s.
    pub dns_timeout: Duration,
    /// Limit for establishing a TCP or Unix connection. Default: 10 s.
    pub connect_timeout: Duration,
    /// Limit for a TLS handshake, on both sides; for `quic://`, for the
    /// whole QUIC handshake and the opening of its stream. Default: 10 s.
    pub tls_handshake_timeout: Duration,
    /// How long a graceful close may take in all: writing what is queued,
    /// shutting down our side, and reading the peer's last data until it
    /// closes too. Past it the connection is dropped. Default: 5 s.
    pub close_timeout: Duration,
    /// How connectors retry. Default: see [`ReconnectPolicy`].
    pub reconnect: ReconnectPolicy,
    /// Socket options for every listener and connector unless overridden.
    pub socket: SocketOptions,
    /// A per-connection send bandwidth limit. Default: none.
    pub throttle: Option<Throttle>,
    /// Connections one stream listener (TCP, TLS, Unix) keeps open at
    /// once. Past it an accepted socket is closed at once and counted in
    /// [`LinkStats::connections_refused`](crate::LinkStats::connections_refused),
    /// so that one listener's peers cannot take every file descriptor of
    /// the process. Each listener also keeps one descriptor in reserve:
    /// when the process runs out (EMFILE), it frees that one to accept and
    /// close the waiting connection (counted too), so refused peers see a
    /// closed connection at once and accepting resumes as soon as
    /// descriptors free up. Default: 4096.
    pub max_connections_per_listener: usize,
    /// Distinct peers a UDP listener tracks as connections; datagrams from
    /// further peers are dropped and counted. Default: 1024.
    pub max_udp_peers: usize,
    /// The largest UDP datagram received. Default: 65 535.
    pub max_datagram: usize,
    /// How `quic://` connections behave. Default: see
    /// [`QuicOptions`](crate::quic::QuicOptions).
    pub quic: crate::quic::QuicOptions,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            event_capacity: 1024,
            send_queue_bytes: 4 << 20,
            max_read_chunk: 64 << 10,
            dns_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            reconnect: ReconnectPolicy::default(),
            socket: SocketOptions::default(),
            throttle: None,
            max_connections_per_listener: 4096,
            max_udp_peers: 1024,
            max_datagram: 65_535,
            quic: crate::quic::QuicOptions::default(),
        }
    }
}

/// How a connector waits between attempts: `interval`, multiplied by
/// `backoff` after each failure up to `max_interval`, each wait spread by
/// ±`jitter` (a fraction) so that many connectors do not retry in step.
/// After a connection that worked ends, the wait starts again at `interval`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The first wait. Default: 1 s (snakeMQ's reconnect interval).
    pub interval: Duration,
    /// The longest wait. Default: 30 s.
    pub max_interval: Duration,
    /// Growth factor after each failed attempt; 1.0 keeps it constant.
    /// Default: 2.0.
    pub backoff: f64,
    /// Random spread as a fraction of the wait, 0.0 to 1.0. Default: 0.1.
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> ReconnectPolicy {
        ReconnectPolicy {
            interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            backoff: 2.0,
            jitter: 0.1,
        }
    }
}

impl ReconnectPolicy {
    /// A policy that waits `interval` every time, without growth or jitter.
    pub fn fixed(interval: Duration) -> ReconnectPolicy {
        ReconnectPolicy {
            interval,
            max_interval: interval,
            backoff: 1.0,
            jitter: 0.0,
        }
    }
}

/// The network interface a socket is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BindInterface {
    /// By name, such as `eth0`.
    Name(String),
    /// By index, as `ip link` numbers them.
    Index(u32),
}

/// Socket options. Defaults suit message traffic.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// TCP_NODELAY: send small writes at once. Default: true.
    pub nodelay: bool,
    /// SO_REUSEADDR on listening sockets, so a restarted listener gets its
    /// port back at once. Default: true.
    pub reuse_addr: bool,
    /// SO_BROADCAST on UDP sockets. Default: false.
    pub broadcast: bool,
    /// SO_LINGER; `None` leaves the system default. Default: none.
    pub linger: Option<Duration>,
    /// The local address outgoing connections bind to. Default: none.
    pub bind: Option<SocketAddr>,
    /// The interface sockets are bound to (SO_BINDTODEVICE on Linux, which
    /// needs CAP_NET_RAW). Default: none.
    pub interface: Option<BindInterface>,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            nodelay: true,
            reuse_addr: true,
            broadcast: false,
            linger: None,
            bind: None,
            interface: None,
        }
    }
}
