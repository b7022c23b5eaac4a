//! Whom a pipe talks to: messages and their senders, the peers given to
//! handlers, and the connection a send goes out on.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::{PipeError, normalize_addr};
use crate::{Address, Connection, ConnectionId, ConnectionInfo};

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
    pub(super) fn of(info: ConnectionInfo) -> PeerInfo {
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

/// How to reach one peer: its link connection.
#[derive(Clone)]
pub(super) struct Route(pub(super) Connection);

impl Route {
    /// Sends, waiting at most `wait` for room in the send queue.
    pub(super) async fn send(&self, data: &Bytes, wait: Duration) -> Result<(), PipeError> {
        match tokio::time::timeout(wait, self.0.send(data.clone())).await {
            Ok(r) => r.map_err(PipeError::from_link),
            Err(_) => Err(PipeError::QueueFull),
        }
    }

    pub(super) fn try_send(&self, data: &Bytes) -> Result<(), PipeError> {
        self.0.try_send(data.clone()).map_err(PipeError::from_link)
    }
}

/// `addr` in the family of a socket bound to `ours`: an IPv4 peer of an
/// IPv6 socket becomes `::ffff:a.b.c.d`, a mapped peer of an IPv4 socket
/// plain IPv4.
pub(super) fn in_family_of(ours: Option<SocketAddr>, addr: SocketAddr) -> SocketAddr {
    match (ours, addr) {
        (Some(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        (Some(SocketAddr::V4(_)), a) => normalize_addr(a),
        (_, a) => a,
    }
}
