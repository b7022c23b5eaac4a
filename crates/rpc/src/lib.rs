//! weft-rpc: calls, signals, typed remote errors and deadlines between
//! peers, on top of weft-messaging; the top of weft's pipeline, used by
//! applications.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_messaging::{Identity, Messaging};
//! use weft_rpc::{Method, RemoteErrorKind, Rpc, RpcError};
//!
//! // Declared once, in a module both sides share.
//! const ADD: Method<(i32, i32), i32> = Method::new("calc", "add");
//! const SQRT: Method<f64, f64> = Method::new("calc", "sqrt");
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("cannot take the square root of {0}")]
//! struct Negative(f64);
//!
//! // The server: register handlers, listen.
//! let server = Rpc::new(Messaging::new(Identity::new("server")?, Default::default()).await?, Default::default())?;
//! server.register(ADD, |(a, b)| async move { Ok::<_, std::convert::Infallible>(a + b) });
//! server.register(SQRT, |x: f64| async move { if x < 0.0 { Err(Negative(x)) } else { Ok(x.sqrt()) } });
//! let at = server.messaging().link().listen("tcp://127.0.0.1:0").await?.address;
//!
//! // The client: connect, call with types, no strings.
//! let client = Rpc::new(Messaging::new(Identity::new("client")?, Default::default()).await?, Default::default())?;
//! client.messaging().link().connect(&at)?;
//! assert_eq!(client.call(server.identity(), ADD, (2, 3)).await?, 5);
//!
//! // A remote error comes back typed, with its type name and message.
//! match client.call(server.identity(), SQRT, -1.0).await {
//!     Err(RpcError::Remote(e)) => {
//!         assert_eq!(e.kind, RemoteErrorKind::Application);
//!         assert!(e.type_name.ends_with("Negative"));
//!         assert_eq!(e.message, "cannot take the square root of -1");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! - One [`Rpc`] per [`Messaging`](weft_messaging::Messaging) is both
//!   server and caller. Handlers are async and run concurrently, at most
//!   [`ServerConfig::max_concurrent_calls`] at once. A handler that
//!   finishes without waiting runs right where the call is received, with
//!   no task of its own; one that waits goes on in a task (see
//!   [`ServerConfig::spawn_handlers`]).
//! - A [`Method`] names an object and a method and fixes the argument and
//!   result types; [`Rpc::call_raw`] and [`Rpc::register_raw`] work with
//!   names and bytes.
//! - Calls wait until the peer is connected. After a broken connection a
//!   call is sent again with the same id, and the server answers repeats
//!   from a bounded cache of results: a method runs at most once per call.
//! - Every call has a timeout, sent to the server as a relative deadline;
//!   the server stops the handler past it. Dropping a call's future sends
//!   a CANCEL that stops the handler.
//! - [`Rpc::signal`] sends a call without a result, with a TTL, and never
//!   waits.
//! - Failures on the server reach the caller as a [`RemoteError`]: its
//!   [`RemoteErrorKind`], the error's type name, message and cause chain.
//! - Arguments and results are serde values encoded with postcard inside
//!   MESSAGE data, bounded in size (see `PROTOCOL.md` and [`wire`]).
//!   Nothing received is ever executed.

#![forbid(unsafe_code)]

mod cache;
mod client;
mod config;
mod core;
mod dispatch;
mod error;
mod handler;
mod method;
mod rpc;
mod server;
mod stats;
pub mod wire;

/// A guide for people coming from snakeMQ, P2PD and pyroute2: each of
/// their concepts and calls next to weft's, with examples compiled as doc
/// tests.
#[doc = include_str!("../GUIDE.md")]
pub mod guide {}

pub use config::{CallOptions, RpcConfig, ServerConfig};
pub use error::{DecodeError, RemoteError, RemoteErrorKind, RpcError};
pub use handler::Request;
pub use method::Method;
pub use rpc::Rpc;
pub use stats::RpcStats;
