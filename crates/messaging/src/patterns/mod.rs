//! pyroute2's patterns on identity messaging: REQ/REP, PUSH/PULL and
//! PUB/SUB. Each is a convention in the MESSAGE flags (see
//! [`Flags`](crate::message::Flags)), so a pattern message is an ordinary
//! message to a snakeMQ peer.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use weft_messaging::{Identity, Kind, Messaging, Subscription, TopicFilter};
//!
//! let server = Messaging::new(Identity::new("server")?, Default::default()).await?;
//! let at = server.link().listen("tcp://127.0.0.1:0").await?.address;
//! let client = Messaging::new(Identity::new("client")?, Default::default()).await?;
//! client.link().connect(&at)?;
//!
//! // REQ/REP: the server answers what its request queue receives.
//! let requests = server.subscribe(Subscription::all().of_kind(Kind::Request));
//! let answering = tokio::spawn({
//!     let server = server.clone();
//!     async move {
//!         let req = requests.recv(None).await?;
//!         server.reply(&req, "pong").await
//!     }
//! });
//! let reply = client.request(server.identity(), "ping", Duration::from_secs(5)).await?;
//! assert_eq!(&reply.message.data[..], b"pong");
//! answering.await??;
//!
//! // PUB/SUB: the subscription travels to the publisher, which then sends.
//! let news = client.subscribe_topic(TopicFilter::Prefix("news.".into()));
//! while server.publish("news.weather", "sunny")? == 0 {
//!     tokio::time::sleep(Duration::from_millis(5)).await; // until the interest arrived
//! }
//! let got = news.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(got.topic.as_deref(), Some("news.weather"));
//! # Ok(()) }
//! ```
//!
//! Each pattern is in the file named for it: `request.rs` (REQ/REP),
//! `push.rs` (PUSH/PULL), `pubsub.rs` (PUB/SUB).

mod pubsub;
mod push;
mod request;

pub(crate) use pubsub::split_publication;
pub use push::Pusher;
pub(crate) use request::split_reply;

/// The longest topic, in bytes.
pub const MAX_TOPIC: usize = 255;
