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
//! Addresses are URLs ([`Address`], with the rest in [`address`]):
//! `tcp://`, `tls://` (or `ssl://`), `udp://`, `quic://`, `unix:///path`,
//! `unix://@abstract`, `unix+tls://`. TLS uses rustls
//! ([`tls::TlsServerConfig`], [`tls::TlsClientConfig`]), with optional mutual
//! TLS; the peer's certificates are in [`ConnectionInfo`]. QUIC's own
//! options and a caller's UDP socket are in [`quic`].
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
//! [`throttle::TokenBucket`]; the bucket itself is plain logic, usable alone.
//!
//! The root holds what most users name; the rest is in modules named for
//! what they hold: [`address`] (schemes, hosts, Unix paths, parse errors),
//! [`config`] (socket options, binding to an interface), [`connection`]
//! (who opened it, a Unix peer's credentials), [`throttle`], [`tls`]
//! (identities, trust anchors, client authentication, the test PKI),
//! [`quic`] and [`pipe`]; and two pieces that pipes and weft-messaging
//! share: [`inbox`] (the bounded queue their subscriptions deliver into)
//! and [`window`] (the recent-ids window both deduplicate with).

mod accept;
pub mod address;
mod adopt;
mod backoff;
pub mod config;
pub mod connection;
mod dial;
mod error;
pub mod inbox;
mod link;
pub mod pipe;
mod queue;
pub mod quic;
mod registry;
mod socket;
pub mod throttle;
pub mod tls;
mod udp;
pub mod window;

pub use address::{Address, ToAddress};
pub use adopt::AdoptTls;
pub use config::{LinkConfig, ReconnectPolicy};
pub use connection::{Connection, ConnectionId, ConnectionInfo, DisconnectReason};
pub use error::LinkError;
pub use link::{
    Adopted, ConnectOptions, ConnectorId, Link, LinkEvent, LinkEvents, LinkStats, ListenOptions,
    ListenerId, Listening,
};

/// Re-exported so that users name the same types weft uses.
pub use bytes::Bytes;

// The modules name these from the crate root.
pub(crate) use address::{AddressError, Host, Scheme, UnixPath};
pub(crate) use config::{BindInterface, SocketOptions};
pub(crate) use connection::Origin;
pub(crate) use throttle::{Throttle, TokenBucket};
pub(crate) use tls::{TlsClientConfig, TlsServerConfig};
