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
//! - **Codec** ([`StunMessageView`], [`StunMessage`], [`Attribute`]): a checked
//!   view borrowing the bytes (never panics on any input) and an owned
//!   representation that encodes back. MESSAGE-INTEGRITY,
//!   MESSAGE-INTEGRITY-SHA256 ([`Key`] for short- and long-term
//!   credentials) and FINGERPRINT are computed by [`StunMessage::encode_with`]
//!   and checked by [`StunMessageView::verify_integrity`] and
//!   [`StunMessageView::verify_fingerprint`]. Unknown comprehension-optional
//!   attributes are kept as [`Attribute::Unknown`]; unknown
//!   comprehension-required ones are listed by
//!   [`StunMessageView::unknown_comprehension_required`] for a 420 answer.
//! - **Client transactions** ([`Transactions`]): the RFC 8489 §6.2.1
//!   retransmission schedule and response matching, free of I/O: given
//!   `now`, it returns datagrams to send and the next timeout.
//! - **Client** ([`StunClient`] over UDP, [`binding_tcp`], [`binding_tls`],
//!   [`binding`] from a [`ServerUrl`]), several servers at once
//!   ([`query_servers`]) and NAT discovery ([`discover_nat`]).
//! - **Server** ([`Responder`], free of I/O, and [`StunServer`] around it),
//!   with per-source [`SourceLimits`] on answers and RESPONSE-PORT.
//!
//! Errors are one enum, [`StunError`]; bytes that are not STUN give
//! [`StunError::Decode`] with a [`DecodeError`] naming what is wrong, and a
//! server that never answers gives [`StunError::Timeout`].
//!
//! The wire format, with byte examples, is in `PROTOCOL.md` beside this
//! crate.

#![forbid(unsafe_code)]

mod attribute;
mod client;
pub mod error;
mod integrity;
mod limit;
pub mod message;
mod nat;
mod query;
mod responder;
mod server;
mod socket;
mod transaction;
mod url;

pub use attribute::{
    Attribute, AttributeType, ChangeRequest, ErrorCode, MAX_TEXT_LEN, MAX_USERNAME_LEN,
    PasswordAlgorithmParams,
};
pub use client::{
    Binding, BindingOptions, ClientConfig, StunClient, binding, binding_tcp, binding_tls,
    system_tls_config, tls_config_from_pem,
};
pub use error::{DecodeError, StunError};
pub use integrity::{FINGERPRINT_XOR, Key, PasswordAlgorithm, Trailer, userhash};
pub use limit::{LimitStats, RateLimit, SourceLimits};
pub use message::{
    Attributes, Class, MAGIC_COOKIE, MAX_MESSAGE_LEN, RawAttribute, StunMessage, StunMessageView,
    StunMethod, TransactionId,
};
pub use nat::{
    FilteringBehaviour, MappingBehaviour, NatReport, NatType, classify_filtering, classify_mapping,
    discover_nat,
};
pub use query::{QueryReport, ServerResult, query_servers};
pub use responder::{Endpoint, Handled, Ignored, Reply, Responder, ResponderConfig};
pub use server::{ServerStats, ServerTls, StunServer, StunServerConfig};
pub use transaction::{
    ClientStats, Outcome, Response, ResponseMatch, RetransmitConfig, Transactions, Transmit,
};
pub use url::{STUN_PORT, STUNS_PORT, ServerUrl, Transport};
