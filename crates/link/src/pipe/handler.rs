//! Handlers: boxed async callbacks run by the pipe's task, in order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{PeerInfo, Pipe, PipeMessage};
use crate::DisconnectReason;

/// The future a handler returns, boxed.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Identifies a handler within its pipe, for
/// [`Pipe::remove_handler`](super::Pipe::remove_handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub(crate) u64);

impl fmt::Display for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler#{}", self.0)
    }
}

type MessageFn = dyn Fn(PipeMessage, Pipe) -> BoxFuture + Send + Sync;
type UpFn = dyn Fn(PeerInfo, Pipe) -> BoxFuture + Send + Sync;
type EndFn = dyn Fn(PeerInfo, DisconnectReason, Pipe) -> BoxFuture + Send + Sync;

/// An async callback for every message a pipe receives (after
/// deduplication). It gets the message and a handle to the pipe, so it can
/// reply. Cheap to clone.
///
/// ```
/// use weft_link::pipe::MessageHandler;
/// let echo = MessageHandler::new(|msg, pipe| async move {
///     let _ = pipe.reply(&msg, msg.data.clone()).await;
/// });
/// # let _ = echo;
/// ```
#[derive(Clone)]
pub struct MessageHandler(Arc<MessageFn>);

impl MessageHandler {
    /// Wraps an async closure.
    pub fn new<F, Fut>(f: F) -> MessageHandler
    where
        F: Fn(PipeMessage, Pipe) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        MessageHandler(Arc::new(move |m, p| Box::pin(f(m, p)) as BoxFuture))
    }

    pub(crate) fn call(&self, msg: PipeMessage, pipe: Pipe) -> BoxFuture {
        (self.0)(msg, pipe)
    }
}

impl fmt::Debug for MessageHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageHandler")
    }
}

/// An async callback for each connection (or UDP peer) that comes up.
/// Cheap to clone.
#[derive(Clone)]
pub struct UpHandler(Arc<UpFn>);

impl UpHandler {
    /// Wraps an async closure.
    pub fn new<F, Fut>(f: F) -> UpHandler
    where
        F: Fn(PeerInfo, Pipe) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        UpHandler(Arc::new(move |i, p| Box::pin(f(i, p)) as BoxFuture))
    }

    pub(crate) fn call(&self, peer: PeerInfo, pipe: Pipe) -> BoxFuture {
        (self.0)(peer, pipe)
    }
}

impl fmt::Debug for UpHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpHandler")
    }
}

/// An async callback for each connection that ends, with the reason.
/// Cheap to clone.
#[derive(Clone)]
pub struct EndHandler(Arc<EndFn>);

impl EndHandler {
    /// Wraps an async closure.
    pub fn new<F, Fut>(f: F) -> EndHandler
    where
        F: Fn(PeerInfo, DisconnectReason, Pipe) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        EndHandler(Arc::new(move |i, r, p| Box::pin(f(i, r, p)) as BoxFuture))
    }

    pub(crate) fn call(&self, peer: PeerInfo, reason: DisconnectReason, pipe: Pipe) -> BoxFuture {
        (self.0)(peer, reason, pipe)
    }
}

impl fmt::Debug for EndHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndHandler")
    }
}
