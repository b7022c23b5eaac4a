//! Pipes: P2PD's one API for TCP, UDP, TLS and Unix endpoints.
//!
//! A [`Pipe`] is a client when it has a destination ([`Pipe::connect`]) and
//! a server when it has none ([`Pipe::listen`]), over any transport an
//! [`Address`](crate::Address) names, IPv4 or IPv6; it can also wrap a std socket made
//! elsewhere ([`Pipe::from_std_tcp_stream`], [`Pipe::from_std_udp_socket`],
//! [`Pipe::from_std_tcp_listener`]). Pipes carry raw bytes without framing:
//! a message is what one read returned on a stream (so two quick sends may
//! arrive as one message, or one as two), or one datagram on UDP. For
//! framed messages use weft-packeter on a [`Link`](crate::Link).
//!
//! Coming from P2PD: weft-rpc's `guide` module sets P2PD's calls
//! (`pipe_open`, `SUB_ALL`, `add_pipe`, ...) next to these.
//!
//! A TCP echo server and a client, as in P2PD's examples:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft_link::pipe::PipeError> {
//! use std::time::Duration;
//! use weft_link::pipe::{MessageHandler, Pipe, PipeConfig};
//!
//! // A server has no destination. Its handler sends each message back.
//! let echo = MessageHandler::new(|msg, pipe| async move {
//!     let _ = pipe.reply(&msg, msg.data.clone()).await;
//! });
//! let server = Pipe::listen(
//!     "tcp://127.0.0.1:0",
//!     PipeConfig { message_handlers: vec![echo], ..PipeConfig::default() },
//! )
//! .await?;
//!
//! // A client has a destination, and without a handler it gets a default
//! // queue subscribed to every message (SUB_ALL).
//! let at = server.local_address().expect("a listening pipe has an address");
//! let client = Pipe::connect(at, PipeConfig::default()).await?;
//! client.send("hello", None).await?;
//! let reply = client.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(&reply.data[..], b"hello");
//!
//! client.close().await;
//! server.close().await;
//! # Ok(()) }
//! ```
//!
//! # What happens to a message
//! Each pipe has one task that reads its link's events, so everything below
//! happens in order, one message at a time:
//!
//! 1. With [`PipeConfig::dedupe`], a message whose id its sender sent
//!    recently is dropped (and counted).
//! 2. It is sent on by every [relay](#relays) that takes it: those made
//!    with [`Pipe::relay_to`] (P2PD's `add_pipe`) and
//!    [`Pipe::relay_to_peer`] take every message, those made with
//!    [`Pipe::relay_from`] the messages of one peer.
//! 3. A copy goes to every [`SubscriptionQueue`] whose [`Subscription`]
//!    matches its payload (a [`Regex`] over bytes, re-exported here; build
//!    one for a binary id with [`escape_bytes`]) and sender address.
//!    Queues are bounded; a full queue drops by [`DropPolicy`], counted.
//! 4. The message handlers run, in the order they were added, each awaited
//!    before the next. A handler that takes long holds up the pipe.
//!
//! Connection-up and connection-end handlers run in the same task when
//! connections (or UDP peers) come and go.
//!
//! # Sending
//! [`Pipe::send`] sends to a client's destination when given no peer, or
//! to the [`Peer`] named: a socket address or a connection id. A UDP server
//! pipe can send first to an address it never heard from. Sends wait for
//! room in the connection's bounded send queue, retrying as
//! [`PipeConfig::send_retries`] says; [`Pipe::try_send`] never waits.
//!
//! # Relays
//! A relay sends each message a pipe receives into another pipe: to its
//! destination ([`Pipe::relay_to`], P2PD's `add_pipe`) or to one of its
//! peers ([`Pipe::relay_to_peer`]), for every message or only those of
//! one peer ([`Pipe::relay_from`]). Relays run in the receiving pipe's
//! task, before its queues and handlers, and do not keep their target
//! open; [`Pipe::stop_relay`] (P2PD's `del_pipe`) ends one, and a relay
//! from a connection ends with that connection.
//!
//! Two relays make P2PD's two-way relay between a connection a server
//! pipe accepted and a client pipe: what the accepted connection sends
//! goes up the client pipe, what comes back down the client pipe goes to
//! that accepted connection, and nothing of other connections mixes in.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft_link::pipe::PipeError> {
//! use std::time::Duration;
//! use weft_link::pipe::{MessageHandler, Peer, Pipe, PipeConfig, UpHandler};
//!
//! // The upstream server: it echoes.
//! let echo = MessageHandler::new(|msg, pipe| async move {
//!     let _ = pipe.reply(&msg, msg.data.clone()).await;
//! });
//! let upstream = Pipe::listen(
//!     "tcp://127.0.0.1:0",
//!     PipeConfig { message_handlers: vec![echo], ..PipeConfig::server() },
//! )
//! .await?;
//!
//! // The front: a server pipe that says which connections it accepts.
//! let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(8);
//! let on_accept = UpHandler::new(move |peer, _| {
//!     let accepted_tx = accepted_tx.clone();
//!     async move {
//!         let _ = accepted_tx.send(peer.connection).await;
//!     }
//! });
//! let front = Pipe::listen(
//!     "tcp://127.0.0.1:0",
//!     PipeConfig { up_handlers: vec![on_accept], ..PipeConfig::server() },
//! )
//! .await?;
//!
//! // Someone connects to the front...
//! let far = Pipe::connect(front.local_address().unwrap(), PipeConfig::default()).await?;
//! let conn = Peer::Connection(accepted.recv().await.expect("a connection"));
//!
//! // ...and gets a client pipe to upstream of its own, relayed both ways.
//! let up = Pipe::connect(upstream.local_address().unwrap(), PipeConfig::default()).await?;
//! front.relay_from(conn, &up, None); // the connection's bytes go upstream
//! up.relay_to_peer(&front, conn); // upstream's answers go to that connection
//!
//! far.send("there and back", None).await?;
//! let back = far.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(&back.data[..], b"there and back");
//! assert_eq!((front.stats().relayed, up.stats().relayed), (1, 1));
//!
//! for pipe in [far, up, front, upstream] {
//!     pipe.close().await;
//! }
//! # Ok(()) }
//! ```
//!
//! # Closing
//! [`Pipe::close`] closes gracefully with [`Link::close`](crate::Link::close): queued data is
//! written, listeners stop, connections end. Dropping the last handle of a
//! pipe aborts it. Handlers get clones of the pipe; a handler that keeps
//! one (in a spawned task, say) keeps the pipe open.

use std::sync::atomic::{AtomicU64, Ordering};

mod config;
mod core;
mod dedupe;
mod error;
mod escape;
mod handler;
mod open;
mod peers;
// Named for the type it holds, as the crate's link.rs is.
#[allow(clippy::module_inception)]
mod pipe;
mod stats;
mod subscription;
mod task;

pub use crate::inbox::DropPolicy;
pub use config::{Dedupe, DedupeId, PipeConfig, Role};
pub use error::PipeError;
pub use escape::escape_bytes;
pub use handler::{BoxFuture, EndHandler, HandlerId, MessageHandler, UpHandler};
pub use peers::{Peer, PeerInfo, PipeMessage};
pub use pipe::{Pipe, RelayId};
pub use stats::PipeStats;
pub use subscription::{SUB_ALL, Subscription, SubscriptionId, SubscriptionQueue, normalize_addr};

/// The regex crate that [`Subscription`] patterns come from, so that a
/// pipe user needs no `regex` dependency of their own (and never one of
/// another version).
pub use regex;
/// The pattern type a [`Subscription`] takes: a regex over bytes, so it
/// can match binary payloads (see [`escape_bytes`]).
pub use regex::bytes::Regex;

/// Ids for pipes, handlers, subscriptions and relays. Process-wide, so
/// never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

tokio::task_local! {
    /// The id of the pipe whose task is running (so `close` called from a
    /// handler does not wait for its own task).
    static CURRENT_PIPE: u64;
}
