//! weft-traversal's errors.

use weft_link::LinkError;
use weft_packeter::PacketerError;
use weft_stun::StunError;

use crate::wire::{ChannelId, WireError};

/// A peer broke the rendezvous protocol; its connection is closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// A packet is not a frame.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A frame other than `Register` came before the connection registered.
    #[error("frame before registration")]
    NotRegistered,
    /// A second `Register` on one connection.
    #[error("already registered")]
    AlreadyRegistered,
    /// A frame only the rendezvous sends.
    #[error("unexpected {0} frame from a peer")]
    Unexpected(&'static str),
    /// A relay frame for a channel the connection is not an end of.
    #[error("no relay channel {0} on this connection")]
    UnknownChannel(ChannelId),
}

/// What can go wrong starting or using a [`Rendezvous`](crate::Rendezvous)
/// or a [`Traversal`](crate::Traversal).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraversalError {
    /// A listener, connector or adopted connection failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Sending a packet failed.
    #[error(transparent)]
    Packeter(#[from] PacketerError),
    /// The STUN server could not start.
    #[error("STUN server: {0}")]
    Stun(#[from] StunError),
    /// A rendezvous needs at least one listen address.
    #[error("no listen address")]
    NoListenAddress,
    /// The first listen address has no IP and port to serve STUN on (a
    /// Unix socket).
    #[error("the first listen address {0} has no IP and port for STUN")]
    NoStunAddress(String),
    /// The service's task has ended (closed, or its runtime shut down).
    #[error("closed")]
    Closed,
    /// The direct paths' TCP port could not be bound.
    #[error("binding the direct port: {0}")]
    DirectPort(#[source] std::io::Error),
    /// A bounded command queue is full; try again.
    #[error("command queue full")]
    Busy,
}
