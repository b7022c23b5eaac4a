//! weft-link: the transport layer of weft, at the bottom of its pipeline
//! (link -> packeter -> messaging -> rpc): it sits on Tokio's sockets,
//! depends on no weft crate, and weft-packeter builds on it.
//!
//! A [`Link`] holds any number of listeners and connectors, added and
//! removed while it runs. Connectors reconnect on their own. Once a
//! connection is up there is no difference between the side that listened
//! and the side that connected: both get a [`Connection`] handle to send on,
//! and [`LinkEvent`]s for what arrives.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft_link::LinkError> {
//! use weft_link::{Link, LinkConfig, LinkEvent};
//!
//! let (a, mut a_events) = Link::new(LinkConfig::default());
//! let (b, mut b_events) = Link::new(LinkConfig::default());
//! let listening = a.listen("tcp://127.0.0.1:0").await?;
//! b.connect(&listening.address)?; // reconnects whenever the connection drops
//!
//! let Some(LinkEvent::Connected(to_a)) = b_events.recv().await else { unreachable!() };
//! to_a.send("ping".into()).await?;
//! let Some(LinkEvent::Connected(to_b)) = a_events.recv().await else { unreachable!() };
//! let Some(LinkEvent::Data { data, .. }) = a_events.recv().await else { unreachable!() };
//! assert_eq!(&data[..], b"ping");
//! to_b.send("pong".into()).await?;
//! # Ok(()) }
//! ```
//!
//! Addresses are URLs ([`Address`]): `tcp://`, `tls://` (or `ssl://`),
//! `udp://`, `unix:///path`, `unix://@abstract`, `unix+tls://`. TLS uses
//! rustls ([`TlsServerConfig`], [`TlsClientConfig`]), with optional mutual
//! TLS; the peer's certificates are in [`ConnectionInfo`].
//!
//! Links carry bytes, not messages: a `Data` event is whatever one read
//! returned (or one datagram on UDP). Framing is the next layer's job
//! (weft-packeter). For P2PD-style message handling over raw transports,
//! see [`pipe`].
//!
//! # Bounds
//! Every queue is bounded ([`LinkConfig`] documents each): the event queue
//! applies back-pressure to sockets, a connection's send queue makes
//! [`Connection::send`] wait and [`Connection::try_send`] fail.
//!
//! # Throttling
//! [`LinkConfig::throttle`] limits each connection's sending rate with a
//! [`TokenBucket`]; the bucket itself is plain logic, usable alone.

mod accept;
mod address;
mod backoff;
mod config;
mod connection;
mod dial;
mod error;
mod link;
pub mod pipe;
mod queue;
pub mod quic;
mod registry;
mod socket;
mod throttle;
mod tls;
mod udp;

pub use address::{Address, AddressError, Host, MAX_UNIX_PATH, Scheme, ToAddress, UnixPath};
pub use config::{BindInterface, LinkConfig, ReconnectPolicy, SocketOptions};
pub use connection::{
    Connection, ConnectionId, ConnectionInfo, DisconnectReason, Origin, PeerCredentials,
};
pub use error::LinkError;
pub use link::{
    Adopted, ConnectOptions, ConnectorId, Link, LinkEvent, LinkEvents, LinkStats, ListenOptions,
    ListenerId, Listening,
};
pub use throttle::{Throttle, TokenBucket};
#[cfg(feature = "self-signed")]
pub use tls::SelfSignedPki;
pub use tls::{ClientAuth, TlsClientConfig, TlsIdentity, TlsServerConfig, TrustAnchors};

/// Re-exported so that users name the same types weft uses.
pub use bytes::Bytes;
pub use rustls::pki_types::CertificateDer;
