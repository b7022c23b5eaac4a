//! QUIC as a transport of the link (`quic://`), on quinn.
//!
//! A link connection over QUIC is one QUIC connection carrying one
//! bidirectional stream, on which the bytes run exactly as on a TCP or TLS
//! connection: the same stream driver, send queue, counters, throttle and
//! close semantics, so every layer above (the packeter's framing and all
//! that sits on it) runs unchanged. What QUIC adds is under that stream:
//! UDP, which gets through NATs, TLS 1.3 on every connection, and loss
//! recovery of its own.
//!
//! TLS is configured as for `tls://`: a listener needs a
//! [`TlsServerConfig`](crate::TlsServerConfig), a connector a
//! [`TlsClientConfig`](crate::TlsClientConfig) (the same identities, trust
//! anchors, mutual TLS and server name override), and the peer's
//! certificate chain is in [`ConnectionInfo`](crate::ConnectionInfo). Both
//! sides offer the ALPN protocol [`ALPN`] unless a configuration built by
//! hand names its own.
//!
//! # On the wire
//! The connector opens the stream and writes one byte, [`STREAM_PACKETS`],
//! before anything else; the listener announces the connection only once
//! it has read that byte. QUIC tells a peer of a new stream only when data
//! arrives on it, so the byte lets the listener's side start without
//! waiting for the first packet, and it names what the stream carries,
//! which leaves room for streams of other kinds on the same connection.
//!
//! Either side may open further streams on a connection, each a link
//! connection of its own: [lanes](crate::Link::open_lane), which do not wait for
//! each other.
//!
//! # Sockets
//! A listener binds its own UDP socket. A link's connectors share one
//! client socket per address family, made when the first needs it and
//! closed when the last connection on it ends (QUIC tells connections
//! apart by connection ID, not by port); a connector whose socket options
//! name a local address or an interface binds a socket of its own.
//! [`Link::adopt_quic`](crate::Link::adopt_quic) runs QUIC on a socket the
//! caller already holds instead (one whose NAT binding was opened by hole
//! punching): it may accept connections, make them, or both.
//!
//! # STUN on the same socket
//! Every socket under an endpoint tells STUN from QUIC by the first byte of
//! each datagram (RFC 7983: 0 to 3 is STUN; QUIC always sets 0x40). STUN
//! never reaches quinn: [`QuicEndpoint::stun`] and
//! [`Link::quic_stun`](crate::Link::quic_stun) (for a `quic://` listener)
//! give a [`StunChannel`] that reads it and answers from the same port,
//! which is what lets hole punching and a rendezvous's STUN server share
//! the QUIC port. Unread, it is dropped and counted.

mod accept;
mod adopt;
mod client;
mod dial;
mod endpoint;
mod garbage;
mod lane;
mod options;
mod stream;
mod stun;

pub use adopt::QuicEndpoint;
pub use options::QuicOptions;
pub use stun::StunChannel;

pub(crate) use accept::listen;
pub(crate) use client::ClientEndpoints;
pub(crate) use dial::{QuicLink, dial, run_quic};
pub(crate) use lane::LaneHosts;
pub(crate) use stun::StunInbox;

/// The ALPN protocol name weft's QUIC connections negotiate.
pub const ALPN: &[u8] = b"weft/1";

/// The first byte the connector writes on a connection's stream: the
/// stream carries the link connection's bytes.
pub const STREAM_PACKETS: u8 = 0;

/// The first byte the side that opens a [lane](crate::Link::open_lane)
/// writes on its stream: the stream carries the lane's bytes.
pub const STREAM_LANE: u8 = 1;
