//! The pipe's error type.

use std::time::Duration;

use super::Peer;
use crate::LinkError;

/// Everything that can go wrong with a [`Pipe`](super::Pipe). Match on the
/// variant; the enum grows, so keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    /// Opening the pipe failed in the link (bad address, DNS, connect,
    /// TLS, bind, ...), or the link refused an operation.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// No message arrived within the time allowed.
    #[error("no message within {waited:?}")]
    Timeout {
        /// How long the receive waited.
        waited: Duration,
    },
    /// A send named no peer, on a pipe that has no destination (a server).
    #[error("this pipe has no destination: name the peer to send to")]
    NoDestination,
    /// The pipe has no connection to this peer.
    #[error("no connection to {0}")]
    UnknownPeer(Peer),
    /// The peer's send queue stayed full (after the configured retries for
    /// [`Pipe::send`](super::Pipe::send); at once for `try_send`).
    #[error("send queue full")]
    QueueFull,
    /// The pipe is closed, or a client pipe's connection has ended, or the
    /// queue was unsubscribed.
    #[error("the pipe is closed")]
    Closed,
    /// [`Pipe::recv`](super::Pipe::recv) on a pipe without its default
    /// `SUB_ALL` queue (a server pipe, a pipe opened with a message
    /// handler, or one whose default queue was unsubscribed).
    #[error("this pipe has no default subscription queue")]
    NoDefaultQueue,
    /// A UDP pipe already tracks as many peers as allowed.
    #[error("the pipe already tracks {max} UDP peers")]
    TooManyPeers {
        /// [`LinkConfig::max_udp_peers`](crate::LinkConfig::max_udp_peers).
        max: usize,
    },
    /// A pipe was made from a std socket outside a Tokio runtime.
    #[error("pipes need a Tokio runtime")]
    NoRuntime,
}

impl PipeError {
    /// Maps the link's send errors onto the pipe's own variants.
    pub(crate) fn from_link(e: LinkError) -> PipeError {
        match e {
            LinkError::Closed => PipeError::Closed,
            LinkError::QueueFull => PipeError::QueueFull,
            other => PipeError::Link(other),
        }
    }
}
