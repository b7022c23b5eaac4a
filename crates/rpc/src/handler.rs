//! Handlers as the server holds them, and how one runs: a panic caught,
//! counted alive, holding a turn, polled once where the call is read.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use weft_messaging::Identity;

use crate::rpc::Inner;
use crate::server::Serving;
use crate::stats::inc;
use crate::wire::Body;
use crate::{RemoteError, RemoteErrorKind};

/// A call or signal as a raw handler ([`Rpc::register_raw`](crate::Rpc::register_raw)) sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// Who called.
    pub caller: Identity,
    /// The postcard-encoded arguments, as sent.
    pub args: Bytes,
}

pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Body, RemoteError>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// Runs a handler's future, turning a panic into an error.
pub(crate) struct CatchUnwind(pub(crate) HandlerFuture);

impl Future for CatchUnwind {
    type Output = Result<Result<Body, RemoteError>, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.get_mut().0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the handler panicked with a value that is not a string".to_owned()
    }
}

/// Counts a handler as alive until dropped (also when its task is
/// aborted): `I` is `Arc<Inner>` in a task, `&Inner` while the task that
/// handles the call polls a handler itself.
pub(crate) struct Active<I: std::ops::Deref<Target = Inner>>(I);

impl<I: std::ops::Deref<Target = Inner>> Active<I> {
    pub(crate) fn new(inner: I) -> Active<I> {
        inner.active.fetch_add(1, Ordering::AcqRel);
        Active(inner)
    }
}

impl<I: std::ops::Deref<Target = Inner>> Drop for Active<I> {
    fn drop(&mut self) {
        // Only `close` waits for the count to reach 0, and it marks the
        // instance closed before it reads the count: without the mark no
        // one waits (a signal takes the `Notify`'s lock even then).
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.closed.load(Ordering::SeqCst)
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// A turn (a permit of [`Inner::turns`]) held by a handler task; given
/// back when dropped, also when the task is aborted.
pub(crate) struct Turn(pub(crate) Arc<Inner>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.turns.add_permits(1);
    }
}

/// How a handler task begins.
pub(crate) enum Start {
    /// Polled once where the call was handled, with a turn for it: the turn
    /// travels with it.
    Started(CatchUnwind, Turn),
    /// Not started: it waits for a turn first.
    Waiting(Handler, Request),
}

/// What [`Inner::begin`] made of a handler.
pub(crate) enum Begun<'a> {
    /// It finished when first polled: its outcome, and the guard that
    /// counts it as alive until its result is dealt with.
    Done(<CatchUnwind as Future>::Output, Active<&'a Inner>),
    /// Spawn its task with the serving lock held; the guard, when the
    /// handler already started, counts it as alive until the task counts
    /// itself.
    Task(MutexGuard<'a, Serving>, Start, Option<Active<&'a Inner>>),
}

impl Start {
    /// Runs the handler to its end, holding a turn all the while; one that
    /// had to wait for its turn is counted in `executed` when it starts.
    pub(crate) async fn finish(
        self,
        inner: &Inner,
        executed: &AtomicU64,
    ) -> <CatchUnwind as Future>::Output {
        match self {
            Start::Started(work, _turn) => work.await,
            Start::Waiting(handler, request) => {
                let _turn = inner.turns.acquire().await;
                inc(executed);
                CatchUnwind(handler(request)).await
            }
        }
    }
}

/// Polls `work` once, with a waker that does nothing: a future that is not
/// ready is then moved into a task, which polls it again at once (and so
/// registers the task's waker).
pub(crate) fn poll_once(work: &mut CatchUnwind) -> Poll<<CatchUnwind as Future>::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(work).poll(&mut cx)
}

/// A finished handler's outcome, a panic turned into an error.
pub(crate) fn outcome_of(
    inner: &Inner,
    finished: Result<Result<Body, RemoteError>, Box<dyn Any + Send>>,
    caller: &Identity,
    id: u64,
) -> Result<Body, RemoteError> {
    match finished {
        Ok(outcome) => outcome,
        Err(panic) => {
            inc(&inner.counters.panics);
            let message = panic_message(&*panic);
            tracing::warn!(%caller, id, %message, "RPC handler panicked");
            Err(RemoteError::builtin(RemoteErrorKind::Panic, message))
        }
    }
}
