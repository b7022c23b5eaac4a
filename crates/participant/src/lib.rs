//! weft-participant: where weft-discovery meets weft-messaging. Start a
//! publisher or a subscriber on any host of a network and have data flow,
//! with no configuration.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), weft_participant::ParticipantError> {
//! use std::time::Duration;
//! use weft_participant::{Participant, ParticipantConfig, TopicFilter};
//!
//! // Participants of this host only, on a beacon port of our own.
//! // `ParticipantConfig::default()` finds the participants of the network.
//! let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! let here = Participant::start(ParticipantConfig::loopback(port).with_identity("here")).await?;
//! let there = Participant::start(ParticipantConfig::loopback(port).with_identity("there")).await?;
//!
//! // A subscriber by regex; a publisher by topic.
//! let temps = there.subscriber(TopicFilter::Regex(regex::Regex::new(r"^temp\.").unwrap()));
//! let kitchen = here.publisher("temp.kitchen")?;
//! // Publishers send only while someone subscribes: wait for the interest.
//! assert!(kitchen.wait_for_subscribers(Duration::from_secs(5)).await);
//! kitchen.publish("21.5")?;
//!
//! let got = temps.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!((&*got.topic, got.from.as_str(), &got.data[..]), ("temp.kitchen", "here", &b"21.5"[..]));
//! here.close().await;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! A [`Participant`] hosts any number of [`Publisher`]s and
//! [`Subscriber`]s. It is discovery ([`weft_discovery`]) composed with
//! messaging ([`weft_messaging`]):
//!
//! 1. Beacons: discovery announces the participant (its id, incarnation,
//!    identity and the address of its stream listener) and hears the
//!    others'. A participant that stops is reported gone within its lease;
//!    a restart is seen as a new incarnation.
//! 2. Streams: of each pair of participants, the one with the lower id
//!    opens the stream (a TCP messaging connection, or QUIC with mutual
//!    TLS: [`StreamTransport`]), so each pair has exactly one. A restarted
//!    participant's new stream replaces its old one.
//! 3. Lists: meeting participants exchange the full lists of their
//!    publishers and subscribers; later changes travel as they happen;
//!    a participant whose stream ends is forgotten, with its lists. The
//!    subscribers' filters also travel as messaging's SUBSCRIBE frames,
//!    and a publisher sends a publication only to participants with a
//!    matching subscriber.
//! 4. Routing through brokers: [`Participant::send_to`] reaches an
//!    identity with no direct stream through participants that announced
//!    they reach it, with a hop limit and no loops.
//! 5. Interest and publications through participants: a subscriber's
//!    interest travels on past the neighbours, with split horizon and a
//!    hop limit, so that a publisher reaches subscribers it has no stream
//!    to; each publication follows the shortest routes to the matching
//!    subscribers, one copy per subscriber even where the streams form
//!    cycles, and crosses no stream that leads to none.
//!
//! [`typed`] carries serde types on a topic (postcard on the wire) beside
//! the raw bytes.
//!
//! The [`local`] module lets processes of one host attach to a running
//! participant (the `weft participant` daemon) through a Unix socket
//! instead of running their own. See `PROTOCOL.md` for the control
//! messages.

#![forbid(unsafe_code)]

mod advert;
mod config;
mod control;
mod controls;
mod core;
mod error;
mod event;
mod filters;
mod handshake;
mod hashing;
mod interest;
pub mod local;
mod output;
mod participant;
mod pubsub;
mod recent;
mod routed;
mod router;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod transport;
pub mod typed;

pub use config::ParticipantConfig;
pub use control::FilterSpec;
pub use error::{LocalProtocolError, ParticipantError};
pub use event::{Direct, ParticipantEvent, ParticipantEvents, ParticipantInfo, ParticipantStats};
pub use participant::Participant;
pub use pubsub::{Publication, Publisher, Subscriber};
pub use router::IdentityRoute;
pub use transport::{StreamTls, StreamTransport};
pub use typed::{TypedPublication, TypedPublisher, TypedSubscriber};
pub use weft_discovery::{DiscoveryConfig, GoneReason, GroupKey, ParticipantId};
pub use weft_messaging::{Identity, TopicFilter};
