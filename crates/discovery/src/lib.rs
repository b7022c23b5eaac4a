//! weft-discovery: participants find each other on a network with UDP
//! beacons, with no configuration; a sibling of weft's pipeline that
//! depends on weft-netiface only.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), weft_discovery::DiscoveryError> {
//! use weft_discovery::{Discovery, DiscoveryConfig, DiscoveryEvent, LocalParticipant};
//!
//! // Beacons to 127.255.255.255 only, on a port of our own: nothing leaves
//! // this host. `DiscoveryConfig::default()` beacons on every interface.
//! let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! let config = DiscoveryConfig::loopback(port);
//!
//! let alice = LocalParticipant::new("alice", vec!["127.0.0.1:4100".parse().unwrap()]);
//! let (_a, _a_events) = Discovery::start(alice, config.clone())?;
//! let (bob, mut bob_events) = Discovery::start(LocalParticipant::new("bob", vec![]), config)?;
//!
//! let Some(DiscoveryEvent::Found(peer)) = bob_events.recv().await else { panic!() };
//! assert_eq!(peer.identity, "alice");
//! assert_eq!(peer.addresses, ["127.0.0.1:4100".parse().unwrap()]);
//! bob.close().await; // a goodbye beacon: alice reports bob gone at once
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! A participant has a random 128-bit [`ParticipantId`], an incarnation
//! that grows with every start, an identity, the locators where it accepts
//! streams, and a lease. Its [`Beacon`](beacon::Beacon) (a magic prefix, a
//! version, a postcard body; see `PROTOCOL.md`) goes to every [`BeaconTarget`]: by
//! default IPv4 broadcast on every suitable interface, an IPv4 multicast
//! group and an IPv6 link-local multicast group. A burst of beacons leaves
//! at start, then one every [`interval`](DiscoveryConfig::interval) (at
//! most a quarter of the lease); participants that hear a newcomer answer
//! at once, so the defaults make a new participant visible within 2
//! seconds.
//!
//! Receivers report [`DiscoveryEvent`]s: a participant found (with its
//! locators and the addresses they resolve to), changed, restarted (a new
//! incarnation), or gone (its lease ran out, or it said goodbye).
//! Truncated beacons, beacons of another version and beacons of a known id
//! with an older incarnation (delayed or spoofed) are rejected and counted
//! in [`DiscoveryStats`].
//!
//! - [`DiscoveryCore`] is the protocol without I/O: datagrams and a clock
//!   in, beacons to send, timeouts and events out. Its tests run on a
//!   paused clock.
//! - [`Discovery`] is the tokio shell: one task owns the sockets.
//!
//! Several participants of one host share the beacon port
//! (`SO_REUSEADDR` and `SO_REUSEPORT`); broadcast and multicast datagrams
//! reach each of them. Linux's loopback interface has neither the
//! BROADCAST nor the MULTICAST flag, so the default targets skip it;
//! [`BeaconTarget::LoopbackBroadcast`] (`127.255.255.255`) is how
//! participants of one host, or of tests, find each other.
//!
//! The root holds what most users name; the wire form and its limits are in
//! [`beacon`], the group key's in [`auth`], the default port and groups in
//! [`config`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod beacon;
pub mod config;
mod core;
mod error;
mod service;

pub use auth::GroupKey;
pub use beacon::ParticipantId;
pub use config::{BeaconTarget, DiscoveryConfig};
pub use core::{
    Accepted, DiscoveryCore, DiscoveryEvent, DiscoveryStats, GoneReason, LocalParticipant,
    RemoteParticipant,
};
pub use error::DiscoveryError;
pub use service::{Discovery, DiscoveryEvents};
