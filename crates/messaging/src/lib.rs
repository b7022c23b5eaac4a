//! weft-messaging: peers addressed by identity, messages with TTL, queues
//! that survive disconnects and restarts, on top of weft-packeter (and
//! weft-link below it); weft-rpc and weft-participant build on it.
//! Wire-compatible with snakeMQ 1.6.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use weft_messaging::{Identity, Message, Messaging};
//!
//! let server = Messaging::new(Identity::new("server")?, Default::default()).await?;
//! let at = server.link().listen("tcp://127.0.0.1:0").await?.address;
//! let client = Messaging::new(Identity::new("client")?, Default::default()).await?;
//! client.link().connect(&at)?;
//!
//! let msg = Message::new("ping").with_ttl(Duration::from_secs(10));
//! client.send_message(server.identity(), msg).await?;
//! let got = server.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(got.from, *client.identity());
//! # Ok(()) }
//! ```
//!
//! - [`Messaging`] sends by identity: [`send_message`](Messaging::send_message)
//!   queues the message for that identity and it leaves once the identity is
//!   connected. Queues are bounded ([`QueuePolicy`](config::QueuePolicy)); a
//!   TTL runs while a message waits, and a message whose TTL runs out is
//!   dropped and counted.
//! - Persistent messages are stored ([`Storage`](storage::Storage):
//!   [`SqliteStorage`](storage::SqliteStorage),
//!   [`MemoryStorage`](storage::MemoryStorage)) before `send_message`
//!   returns and removed once delivered.
//! - Between weft peers, delivery is acknowledged: a dropped connection
//!   loses nothing and duplicates nothing. snakeMQ peers never see weft's
//!   extension frames (see `PROTOCOL.md`).
//! - Receive through [`SubscriptionQueue`]s (a regex over the data and an
//!   optional sender) and handlers.
//! - Request/reply, push/pull and publish/subscribe ride on these messages
//!   ([`patterns`]).
//!
//! The root holds what most users name; the rest is in modules named for
//! what they hold: [`certificate`], [`config`], [`error`], [`identity`],
//! [`message`], [`patterns`], [`storage`], [`subscription`].

#![forbid(unsafe_code)]

pub mod certificate;
pub mod config;
mod core;
mod dedupe;
pub mod error;
mod frame;
pub mod identity;
pub mod message;
mod messaging;
pub mod patterns;
pub mod storage;
pub mod subscription;
mod timer;

pub use config::MessagingConfig;
pub use error::MessagingError;
pub use identity::Identity;
pub use message::{Kind, Lane, Message, MessageId};
pub use messaging::{HandlerId, Messaging, MessagingStats, PeerInfo, WeakMessaging};
pub use subscription::{Received, Subscription, SubscriptionQueue, TopicFilter};

/// weft-messaging's insides, public for its fuzz targets and wire tests
/// only: no part of its API, and no promise that they stay as they are.
#[doc(hidden)]
pub mod internal {
    /// The frame codec (`PROTOCOL.md` on the wire).
    pub mod frame {
        pub use crate::frame::*;
    }
}

// The README's Rust examples, compiled and run as doc tests here: this
// crate sees every crate they use (weft-link, weft-packeter, itself).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
