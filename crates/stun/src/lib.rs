//! weft-stun: STUN (RFC 8489) with RFC 5780 NAT behaviour discovery, a
//! sibling of weft's pipeline that depends on no weft crate: a sans-I/O
//! codec, a client with retransmission, and a server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft_stun::StunError> {
//! use weft_stun::{ClientConfig, StunServerConfig, StunClient, StunServer};
//!
//! // A server on loopback with an alternate address: RFC 5780.
//! let server = StunServer::bind(StunServerConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     alternate: Some("127.0.0.2:0".parse().unwrap()),
//!     ..StunServerConfig::default()
//! })
//! .await?;
//!
//! // A client socket; many requests may share it.
//! let config = ClientConfig::default();
//! let client = StunClient::bind("127.0.0.1:0".parse().unwrap(), &config).await?;
//! let binding = client.binding(server.primary()).await?;
//! assert_eq!(binding.mapped, client.local_addr()); // no NAT on loopback
//! assert_eq!(binding.other_address, server.alternate());
//!
//! // NAT behaviour discovery against it.
//! let config = ClientConfig { local: Some("127.0.0.1:0".parse().unwrap()), ..config };
//! let nat = weft_stun::discover_nat(server.primary(), &config).await?;
//! assert_eq!(nat.nat_type, Some(weft_stun::NatType::Open));
//! # Ok(()) }
//! ```
//!
//! # Layers
//!
//! - **Codec** ([`message`], [`attribute`], [`integrity`]):
//!   [`StunMessageView`] is a checked view borrowing the bytes (never panics
//!   on any input) and [`StunMessage`] an owned representation that encodes
//!   back, with [`Attribute`]s. MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256
//!   ([`Key`](integrity::Key) for short- and long-term credentials) and
//!   FINGERPRINT are computed by [`StunMessage::encode_with`] and checked by
//!   [`StunMessageView::verify_integrity`] and
//!   [`StunMessageView::verify_fingerprint`]. Unknown comprehension-optional
//!   attributes are kept as [`Attribute::Unknown`]; unknown
//!   comprehension-required ones are listed by
//!   [`StunMessageView::unknown_comprehension_required`] for a 420 answer.
//! - **Client transactions** ([`Transactions`], in [`transaction`]): the
//!   RFC 8489 §6.2.1 retransmission schedule and response matching, free of
//!   I/O: given `now`, it returns datagrams to send and the next timeout.
//! - **Client** ([`client`]: [`StunClient`] over UDP,
//!   [`binding_tcp`](client::binding_tcp),
//!   [`binding_tls`](client::binding_tls), [`binding`] from a
//!   [`ServerUrl`]), several servers at once ([`query_servers`], in
//!   [`query`]) and NAT discovery ([`discover_nat`], in [`nat`]).
//! - **Server** ([`Responder`], free of I/O, in [`responder`], and
//!   [`StunServer`] around it, in [`server`]), with per-source
//!   [`SourceLimits`](limit::SourceLimits) on answers and RESPONSE-PORT.
//!
//! Errors are one enum, [`StunError`]; bytes that are not STUN give
//! [`StunError::Decode`] with a [`DecodeError`](error::DecodeError) naming
//! what is wrong, and a server that never answers gives
//! [`StunError::Timeout`].
//!
//! The root holds what most users name; the rest is in the modules above
//! and [`url`].
//!
//! The wire format, with byte examples, is in `PROTOCOL.md` beside this
//! crate.

#![forbid(unsafe_code)]

pub mod attribute;
pub mod client;
pub mod error;
pub mod integrity;
pub mod limit;
pub mod message;
pub mod nat;
pub mod query;
pub mod responder;
pub mod server;
mod socket;
pub mod transaction;
pub mod url;

pub use attribute::Attribute;
pub use client::{Binding, ClientConfig, StunClient, binding};
pub use error::StunError;
pub use message::{Class, StunMessage, StunMessageView, StunMethod, TransactionId};
pub use nat::{NatReport, NatType, discover_nat};
pub use query::query_servers;
pub use responder::Responder;
pub use server::{StunServer, StunServerConfig};
pub use transaction::Transactions;
pub use url::{STUN_PORT, STUNS_PORT, ServerUrl};
