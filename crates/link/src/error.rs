//! The link's error type.

use std::io;
use std::time::Duration;

use crate::AddressError;

/// Everything that can go wrong in weft-link. Match on the variant; the
/// enum grows, so keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The address did not parse.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// DNS resolution took longer than the configured timeout.
    #[error("resolving `{host}` timed out after {timeout:?}")]
    DnsTimeout {
        /// The name being resolved.
        host: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// DNS resolution failed or gave no address.
    #[error("resolving `{host}` failed: {source}")]
    Dns {
        /// The name being resolved.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than the configured timeout.
    #[error("connecting to {address} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Where we tried to connect.
        address: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The TLS handshake took longer than the configured timeout.
    #[error("TLS handshake with {peer} timed out after {timeout:?}")]
    HandshakeTimeout {
        /// The other side.
        peer: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The TLS handshake failed (bad certificate, wrong CA, missing client
    /// certificate, protocol error).
    #[error("TLS handshake with {peer} failed: {source}")]
    Tls {
        /// The other side.
        peer: String,
        /// What rustls reported.
        #[source]
        source: io::Error,
    },
    /// A TLS address was used without a TLS configuration for that side.
    #[error("{address} needs a TLS {side} configuration and none was given")]
    TlsConfigMissing {
        /// The address that needs TLS.
        address: String,
        /// `server` or `client`.
        side: &'static str,
    },
    /// A QUIC connection could not be started (an invalid server name, an
    /// endpoint that is closing, an address of the wrong family).
    #[error("cannot start a QUIC connection to {address}: {source}")]
    QuicConnect {
        /// Where we tried to connect.
        address: String,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectError,
    },
    /// A QUIC connection failed before it was up: its handshake (a
    /// certificate the other side does not trust, a missing client
    /// certificate, no common ALPN protocol), or it was refused, lost or
    /// closed before its stream was open.
    #[error("QUIC connection with {peer} failed: {source}")]
    Quic {
        /// The other side.
        peer: String,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectionError,
    },
    /// [`Link::open_lane`](crate::Link::open_lane) on a connection that
    /// cannot carry lanes: not a `quic://` connection of the link, a lane
    /// itself, or one that has ended or is closing.
    #[error("{0} cannot carry lanes (only a quic:// connection that is up can)")]
    NoLanes(crate::ConnectionId),
    /// A QUIC connection's stream did not start as weft's does.
    #[error("QUIC connection from {peer} refused: {detail}")]
    QuicStream {
        /// The other side.
        peer: String,
        /// What was wrong.
        detail: &'static str,
    },
    /// A TLS configuration cannot run QUIC (its provider lacks TLS 1.3's
    /// AES-128-GCM, which QUIC's first packets need).
    #[error("the TLS configuration cannot run QUIC: {0}")]
    QuicTls(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A certificate, key or CA bundle could not be loaded.
    #[error("bad TLS material: {0}")]
    TlsMaterial(String),
    /// The operation does not apply to this transport (for example a Unix
    /// abstract address on a system without one).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Binding to an interface is not permitted (needs CAP_NET_RAW on Linux).
    #[error("binding to interface `{interface}` is not permitted: {source}")]
    BindDevicePermission {
        /// The interface name.
        interface: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// An interface given by index does not exist.
    #[error("no network interface with index {0}")]
    NoSuchInterface(u32),
    /// The connection's send queue is full (`try_send`).
    #[error("send queue full")]
    QueueFull,
    /// The connection or link is closed.
    #[error("closed")]
    Closed,
    /// An operating system I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> LinkError {
        LinkError::Io {
            context: context.into(),
            source,
        }
    }
}
