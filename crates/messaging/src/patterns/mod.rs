//! pyroute2's patterns on identity messaging: REQ/REP, PUSH/PULL and
//! PUB/SUB. Each is a convention in the MESSAGE flags (see
//! [`Flags`](crate::message::Flags)), so a pattern message is an ordinary
//! message to a snakeMQ peer.
//!
//! - REQ/REP: [`Messaging::request`](crate::Messaging::request) sends and
//!   waits for the answer, which the other side gives with
//!   [`Messaging::reply`](crate::Messaging::reply) to what a subscription
//!   of [`Kind::Request`](crate::Kind::Request) received.
//! - PUSH/PULL: a [`Pusher`] ([`Messaging::pusher`](crate::Messaging::pusher))
//!   hands each work item to one of its pullers, in turn; pullers take work
//!   with a subscription of [`Kind::Push`](crate::Kind::Push). Unlike
//!   [`send_message`](crate::Messaging::send_message), which queues a
//!   message until its identity connects,
//!   [`Pusher::push`] goes only to a puller that is connected now and fails
//!   with [`MessagingError::NoPeer`](crate::MessagingError::NoPeer) when
//!   none is; [`Pusher::push_to`] names a puller and queues like
//!   `send_message`.
//! - PUB/SUB: [`Messaging::subscribe_topic`](crate::Messaging::subscribe_topic)
//!   tells every connected weft peer which topics it wants;
//!   [`Messaging::publish`](crate::Messaging::publish) sends only to the
//!   peers that want the topic and returns how many there were.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use weft_messaging::{Identity, Kind, Messaging, MessagingError, Subscription, TopicFilter};
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
//! // PUSH/PULL: the server pulls work; the client pushes it to whichever
//! // of its pullers is connected, in turn.
//! let work = server.subscribe(Subscription::all().of_kind(Kind::Push));
//! let pusher = client.pusher([server.identity().clone()]);
//! assert_eq!(&pusher.push("job 1")?, server.identity());
//! let job = work.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(&job.message.data[..], b"job 1");
//!
//! // `push` needs a connected puller; `push_to` (like `send_message`)
//! // queues for one that is not connected yet.
//! let later = Identity::new("later")?;
//! let waiting = client.pusher([later.clone()]);
//! assert!(matches!(waiting.push("job 2"), Err(MessagingError::NoPeer)));
//! waiting.push_to(&later, "job 2")?;
//! assert_eq!(client.queue_depth(&later), 1);
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
