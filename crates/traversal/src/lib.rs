//! weft-traversal: peers that cannot reach each other meet at a
//! rendezvous, and weft messaging runs between them over the paths it
//! finds. Its layer: the one place where weft-stun meets the pipeline; it
//! sits on weft-messaging (with weft-packeter and weft-link below it) and
//! weft-stun, and only weft-cli and the benches sit on it.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use weft_messaging::{Identity, Message, Messaging};
//! use weft_traversal::{Rendezvous, RendezvousOptions, Traversal, TraversalEvent, Via};
//!
//! // A rendezvous: registrations, STUN on its UDP port, a bounded relay.
//! let (rendezvous, _) =
//!     Rendezvous::start(RendezvousOptions::listen("tcp://127.0.0.1:0".parse()?)).await?;
//! let at = rendezvous.listening()[0].clone();
//!
//! // Two messaging peers with no listener at all.
//! let alice = Messaging::new(Identity::new("alice")?, Default::default()).await?;
//! let bob = Messaging::new(Identity::new("bob")?, Default::default()).await?;
//! let (alice_side, mut alice_paths) =
//!     Traversal::start(&alice, &at, Default::default(), Default::default())?;
//! let (_bob_side, mut bob_paths) =
//!     Traversal::start(&bob, &at, Default::default(), Default::default())?;
//! while let Some(event) = bob_paths.recv().await {
//!     if matches!(event, TraversalEvent::Registered { .. }) {
//!         break;
//!     }
//! }
//!
//! alice.send_message(bob.identity(), Message::new("hello")).await?;
//! alice_side.reach(bob.identity())?;
//! let got = bob.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(&got.message.data[..], b"hello");
//! while let Some(event) = alice_paths.recv().await {
//!     if let TraversalEvent::Path(path) = event {
//!         assert_eq!(path.via, Via::Relay);
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`Rendezvous`] serves the rendezvous protocol (`PROTOCOL.md`) on
//!   weft link URLs (`tcp://`, `tls://`, `quic://`) with packeter framing,
//!   and STUN (weft-stun's server, RFC 5780 with an alternate IP) on the
//!   UDP port of its first listen address. Its logic is the sans-I/O
//!   [`RendezvousCore`]: registrations by identity, observed addresses,
//!   candidates and start signals passed only between registered
//!   connections, and relay channels bounded per pair (a window per
//!   direction, a rate, a byte cap), limits in [`RendezvousConfig`] and
//!   counters in [`RendezvousStats`].
//! - [`Traversal`] is a [`Messaging`](weft_messaging::Messaging) peer's
//!   side: it registers the peer's identity, and [`Traversal::reach`]
//!   opens a relay channel that becomes an ordinary messaging connection
//!   (an in-memory pipe adopted into the messaging's link). Messaging's
//!   handshake, acks, resend and dedupe run over it unchanged: a path that
//!   ends loses nothing, and a later path is one more connection for the
//!   same identity. [`TraversalEvent::Path`] reports each path.
//! - Beside each relay, direct TCP paths are raced ([`race`]'s
//!   sans-I/O [`PathRace`](race::PathRace), configured by
//!   [`TraversalConfig::direct`]): the peers exchange candidates through
//!   the rendezvous, dial each other's host addresses at once and their
//!   public ones at an agreed moment (TCP simultaneous open), from one
//!   port; the stream both ends keep replaces the relay in messaging
//!   without loss, reported as a [`Via::Direct`] path.
//! - Beside those, UDP hole punching carrying QUIC ([`punch`]'s sans-I/O
//!   [`PunchSchedule`](punch::PunchSchedule), configured by
//!   [`TraversalConfig::punch`]): each peer learns its UDP mapping from
//!   the rendezvous's STUN on its punching socket (and whether it varies
//!   by destination, from RFC 5780's other address), the UDP candidates
//!   travel with the TCP ones, both ends punch on a schedule (birthday
//!   probing when one NAT is symmetric), and QUIC runs on the punched
//!   socket itself ([`Link::adopt_quic`](weft_link::Link::adopt_quic)),
//!   a direct path whose [`Transport`] is QUIC. Probes toward a NAT that
//!   varies begin with the ports right above the one the rendezvous saw
//!   (port prediction, for NATs that allocate in sequence). A reverse
//!   connection needs no signal of its own: both ends dial each other's
//!   candidates, so the one that can be reached is dialled by the other,
//!   whichever of the two asked for the path.
//! - With certificates ([`TraversalConfig::tls`], a [`PathTls`]) every
//!   path runs mutual TLS from end to end, the relay's channel included
//!   ([`Link::adopt_tls`](weft_link::Link::adopt_tls)): the rendezvous
//!   relays ciphertext, and each peer proves its identity on every path,
//!   as messaging's `bind_identity` asks.
//!
//! The root holds what most users name; the frames are in [`wire`], the
//! path types in [`path`], the limits in [`config`], the errors in
//! [`error`].

#![forbid(unsafe_code)]

mod choice;
pub mod config;
mod core;
mod direct;
pub mod error;
mod event;
pub mod path;
mod path_tls;
pub mod punch;
mod punch_tls;
pub mod race;
mod relay;
mod rendezvous;
mod stun_on_quic;
mod traversal;
mod udp_punch;
pub mod wire;

pub use crate::core::RendezvousCore;
pub use crate::event::{RendezvousEvent, RendezvousStats, Transmit};
pub use config::RendezvousConfig;
pub use error::{RendezvousError, TraversalError};
pub use path::{Path, Transport, TraversalEvent, Via};
pub use path_tls::PathTls;
pub use rendezvous::{MAX_FRAME, Rendezvous, RendezvousEvents, RendezvousOptions};
pub use traversal::{SIGNAL_QUEUE, Traversal, TraversalConfig, TraversalEvents};
