//! The tokio shell: one dispatcher task per RPC instance reads the RPC
//! frames messaging hands it; callers wait on a oneshot channel. The
//! dispatcher polls a served call's handler once itself; a handler that
//! does not finish at once continues in a task of its own.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use weft_messaging::{HandlerId, Identity, Kind, Message, MessageId, Messaging, Received};

use crate::cache::ResultCache;
use crate::wire::{self, Body, Frame, FrameKind, Outcome, REPLY_HEADROOM};
use crate::{CallOptions, Method, RemoteError, RemoteErrorKind, RpcConfig, RpcError};

/// Counters of an RPC instance, read with [`Rpc::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcStats {
    /// Calls sent (first sends).
    pub calls_sent: u64,
    /// Calls sent again because their peer reconnected.
    pub calls_resent: u64,
    /// Results received for a call still waiting.
    pub results_received: u64,
    /// Results for no waiting call (late, repeated, or from another peer).
    pub results_unmatched: u64,
    /// Calls that got no result within their timeout.
    pub timed_out: u64,
    /// CANCEL frames sent (for timed-out and dropped calls).
    pub cancels_sent: u64,
    /// Signals sent.
    pub signals_sent: u64,
    /// CALL frames received (repeats included).
    pub calls_received: u64,
    /// Handlers started for calls.
    pub calls_executed: u64,
    /// Repeated calls answered from the result cache.
    pub duplicates_cached: u64,
    /// Repeated calls that arrived while the first was still running (it
    /// answers when done).
    pub duplicates_running: u64,
    /// Running or waiting calls stopped by the caller's CANCEL.
    pub cancelled: u64,
    /// Calls stopped by their deadline.
    pub deadline_exceeded: u64,
    /// Handlers that panicked.
    pub panics: u64,
    /// Calls and signals refused because too many were running and waiting.
    pub overloaded: u64,
    /// Calls and signals for an unknown object or method.
    pub unknown: u64,
    /// SIGNAL frames received.
    pub signals_received: u64,
    /// Handlers started for signals.
    pub signals_executed: u64,
    /// Frames that did not parse or were over a size limit.
    pub bad_frames: u64,
    /// Frames dropped because the dispatcher's inbound queue was full.
    pub inbound_dropped: u64,
    /// Results dropped from the result cache to respect its bounds.
    pub results_evicted: u64,
    /// Frames the messaging layer refused (its queue for the peer full).
    pub send_failures: u64,
    /// Results in the result cache now.
    pub cached_results: u64,
    /// Bytes the result cache holds now (frames plus per-entry overhead).
    pub cached_bytes: u64,
    /// Calls and signals running or waiting for a turn now, in tasks of
    /// their own (a handler that finishes when the dispatcher first polls
    /// it is never counted here).
    pub in_progress: u64,
}

#[derive(Default)]
struct Counters {
    calls_sent: AtomicU64,
    calls_resent: AtomicU64,
    results_received: AtomicU64,
    results_unmatched: AtomicU64,
    timed_out: AtomicU64,
    cancels_sent: AtomicU64,
    signals_sent: AtomicU64,
    calls_received: AtomicU64,
    calls_executed: AtomicU64,
    duplicates_cached: AtomicU64,
    duplicates_running: AtomicU64,
    cancelled: AtomicU64,
    deadline_exceeded: AtomicU64,
    panics: AtomicU64,
    overloaded: AtomicU64,
    unknown: AtomicU64,
    signals_received: AtomicU64,
    signals_executed: AtomicU64,
    bad_frames: AtomicU64,
    inbound_dropped: AtomicU64,
    send_failures: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A call or signal as a raw handler ([`Rpc::register_raw`]) sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// Who called.
    pub caller: Identity,
    /// The postcard-encoded arguments, as sent.
    pub args: Bytes,
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Body, RemoteError>> + Send>>;
type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Registry = FastMap<String, FastMap<String, Handler>>;

/// A call waiting for its result.
struct Pending {
    to: Identity,
    /// The CALL frame, to send again after a reconnect.
    frame: Bytes,
    deadline: Instant,
    /// Send again when `to` reconnects: the frame may have gone out on
    /// the connection that broke.
    resend: bool,
    tx: oneshot::Sender<Result<Bytes, RpcError>>,
}

/// The serving side's state, under one lock.
struct Serving {
    /// Calls running or waiting for a turn, by caller and id.
    running: HashMap<(Identity, u64), Option<AbortHandle>>,
    /// Signals running or waiting, by a local number.
    signals: HashMap<u64, Option<AbortHandle>>,
    next_signal: u64,
    /// Calls and signals running or waiting.
    admitted: usize,
    cache: ResultCache,
}

struct Inner {
    messaging: Messaging,
    config: RpcConfig,
    closed: AtomicBool,
    handler_ids: Mutex<Vec<HandlerId>>,
    next_id: AtomicU64,
    /// Calls waiting for their result, by id (our own ids: a fast hash).
    pending: Mutex<FastMap<u64, Pending>>,
    /// Handlers by object and method (names we registered: a fast hash).
    registry: RwLock<Registry>,
    turns: Semaphore,
    serving: Mutex<Serving>,
    /// Handler tasks alive, and a wake-up when that reaches 0.
    active: AtomicUsize,
    idle: Notify,
    counters: Arc<Counters>,
}

/// Stops the dispatcher and aborts running handlers when the last [`Rpc`]
/// handle is dropped.
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.shut();
        self.0.abort_all();
    }
}

/// Calls and signals over a [`Messaging`] instance, as a caller and as a
/// server at once (like snakeMQ, both peers may serve and call).
///
/// Cheap to clone; dropping the last clone stops serving (running
/// handlers are aborted). The messaging instance stays up as long as
/// other handles to it exist. Use one `Rpc` per `Messaging`.
///
/// A handler that keeps a clone of its own `Rpc` (to call others) keeps
/// it alive: call [`close`](Rpc::close) to stop such an instance (it
/// drops the handlers, which ends the cycle).
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use weft_messaging::{Identity, Messaging};
/// use weft_rpc::{CallOptions, Method, Rpc};
///
/// const ECHO: Method<String, String> = Method::new("echo", "say");
///
/// let server = Rpc::new(Messaging::new(Identity::new("s")?, Default::default()).await?, Default::default())?;
/// server.register(ECHO, |s: String| async move { Ok::<_, std::io::Error>(s) });
/// let at = server.messaging().link().listen("tcp://127.0.0.1:0").await?.address;
///
/// let client = Rpc::new(Messaging::new(Identity::new("c")?, Default::default()).await?, Default::default())?;
/// client.messaging().link().connect(&at)?;
/// let options = CallOptions::timeout(Duration::from_secs(5));
/// let back = client.call_with(server.identity(), ECHO, "hi".to_string(), options).await?;
/// assert_eq!(back, "hi");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

impl fmt::Debug for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rpc")
            .field("identity", self.inner.messaging.identity())
            .finish()
    }
}

/// Runs a handler's future, turning a panic into an error.
struct CatchUnwind(HandlerFuture);

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

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the handler panicked with a value that is not a string".to_owned()
    }
}

/// Counts a handler as alive until dropped (also when its task is
/// aborted): `I` is `Arc<Inner>` in a task, `&Inner` while the dispatcher
/// polls a handler itself.
struct Active<I: std::ops::Deref<Target = Inner>>(I);

impl<I: std::ops::Deref<Target = Inner>> Active<I> {
    fn new(inner: I) -> Active<I> {
        inner.active.fetch_add(1, Ordering::AcqRel);
        Active(inner)
    }
}

impl<I: std::ops::Deref<Target = Inner>> Drop for Active<I> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A turn (a permit of [`Inner::turns`]) held by a handler task; given
/// back when dropped, also when the task is aborted.
struct Turn(Arc<Inner>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.turns.add_permits(1);
    }
}

/// How a handler task begins.
enum Start {
    /// Polled once by the dispatcher, which had a turn for it: the turn
    /// travels with it.
    Started(CatchUnwind, Turn),
    /// Not started: it waits for a turn first.
    Waiting(Handler, Request),
}

/// What [`Inner::begin`] made of a handler.
enum Begun<'a> {
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
    async fn finish(self, inner: &Inner, executed: &AtomicU64) -> <CatchUnwind as Future>::Output {
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

/// The instant the dispatcher handles a chunk of frames: read once per
/// chunk, and only if a frame needs it.
#[derive(Default)]
struct Clock(Option<Instant>);

impl Clock {
    fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// Polls `work` once, with a waker that does nothing: a future that is not
/// ready is then moved into a task, which polls it again at once (and so
/// registers the task's waker).
fn poll_once(work: &mut CatchUnwind) -> Poll<<CatchUnwind as Future>::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(work).poll(&mut cx)
}

/// A finished handler's outcome, a panic turned into an error.
fn outcome_of(
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

/// Sends CANCEL when a call is given up (timed out, or its future dropped)
/// before its result arrived.
struct CallGuard<'a> {
    inner: &'a Inner,
    to: &'a Identity,
    id: u64,
    ttl: Duration,
    live: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.live || lock(&self.inner.pending).remove(&self.id).is_none() {
            return;
        }
        let cancel = Message::new(wire::cancel_frame(self.id)).with_ttl(self.ttl);
        match self.inner.messaging.try_send_message(self.to, cancel) {
            Ok(()) => inc(&self.inner.counters.cancels_sent),
            Err(e) => {
                inc(&self.inner.counters.send_failures);
                tracing::debug!(id = self.id, to = %self.to, error = %e, "CANCEL not sent");
            }
        }
    }
}

/// The longest timeout a call may have: what `deadline_ms` can carry.
const MAX_TIMEOUT: Duration = Duration::from_millis(u32::MAX as u64);

fn check_name(name: &str) -> Result<(), RpcError> {
    if name.len() > wire::MAX_NAME {
        return Err(RpcError::NameTooLong(name.len()));
    }
    Ok(())
}

impl Rpc {
    /// Starts RPC on `messaging`: from now on this peer answers calls to
    /// the handlers it registers, and may call others.
    ///
    /// Fails with [`RpcError::NoRuntime`] outside a Tokio runtime.
    pub fn new(messaging: Messaging, config: RpcConfig) -> Result<Rpc, RpcError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RpcError::NoRuntime);
        }
        if config.close_default_queue {
            messaging.unsubscribe(0);
        }
        let counters = Arc::new(Counters::default());
        let base = MessageId::random().0;
        let base = u64::from_le_bytes([
            base[0], base[1], base[2], base[3], base[4], base[5], base[7], base[9],
        ]);
        let inner = Arc::new(Inner {
            messaging: messaging.clone(),
            closed: AtomicBool::new(false),
            handler_ids: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(base),
            pending: Mutex::new(HashMap::default()),
            registry: RwLock::new(FastMap::default()),
            turns: Semaphore::new(
                config
                    .server
                    .max_concurrent_calls
                    .clamp(1, Semaphore::MAX_PERMITS),
            ),
            serving: Mutex::new(Serving {
                running: HashMap::new(),
                signals: HashMap::new(),
                next_signal: 0,
                admitted: 0,
                cache: ResultCache::new(
                    config.server.result_cache,
                    config.server.result_cache_bytes,
                ),
            }),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            counters: counters.clone(),
            config,
        });

        let (tx, rx) = mpsc::channel::<Received>(inner.config.inbound_capacity.max(1));
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let results_to = weak.clone();
        let on_message = messaging.on_message(move |r| {
            if r.kind() != Kind::Plain || !wire::is_rpc(&r.message.data) {
                return;
            }
            if matches!(wire::peek(&r.message.data), Some((FrameKind::Result, _))) {
                // A result only wakes its caller: done here, on messaging's
                // task, without the hop to the dispatcher.
                if let Some(inner) = results_to.upgrade() {
                    inner.on_frame(r.clone(), &mut Clock::default());
                }
            } else if tx.try_send(r.clone()).is_err() {
                inc(&counters.inbound_dropped);
            }
        });
        let on_connect = messaging.on_connect(move |who| {
            if let Some(inner) = weak.upgrade() {
                inner.resend_to(who);
            }
        });
        lock(&inner.handler_ids).extend([on_message, on_connect]);
        tokio::spawn(dispatch(inner.clone(), rx));
        Ok(Rpc {
            _stop: Arc::new(StopOnDrop(inner.clone())),
            inner,
        })
    }

    /// The messaging instance underneath: add listeners and connectors
    /// there.
    pub fn messaging(&self) -> &Messaging {
        &self.inner.messaging
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        self.inner.messaging.identity()
    }

    /// The configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.inner.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RpcStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (cached, cached_bytes, evicted, in_progress) = {
            let s = lock(&self.inner.serving);
            (
                s.cache.len() as u64,
                s.cache.bytes() as u64,
                s.cache.evicted,
                s.admitted as u64,
            )
        };
        RpcStats {
            calls_sent: get(&c.calls_sent),
            calls_resent: get(&c.calls_resent),
            results_received: get(&c.results_received),
            results_unmatched: get(&c.results_unmatched),
            timed_out: get(&c.timed_out),
            cancels_sent: get(&c.cancels_sent),
            signals_sent: get(&c.signals_sent),
            calls_received: get(&c.calls_received),
            calls_executed: get(&c.calls_executed),
            duplicates_cached: get(&c.duplicates_cached),
            duplicates_running: get(&c.duplicates_running),
            cancelled: get(&c.cancelled),
            deadline_exceeded: get(&c.deadline_exceeded),
            panics: get(&c.panics),
            overloaded: get(&c.overloaded),
            unknown: get(&c.unknown),
            signals_received: get(&c.signals_received),
            signals_executed: get(&c.signals_executed),
            bad_frames: get(&c.bad_frames),
            inbound_dropped: get(&c.inbound_dropped),
            results_evicted: evicted,
            send_failures: get(&c.send_failures),
            cached_results: cached,
            cached_bytes,
            in_progress,
        }
    }

    /// Serves `method` with `handler`, replacing any handler it had. The
    /// handler gets the decoded arguments; its `Ok` value is the result,
    /// its error reaches the caller as a [`RemoteError`] of kind
    /// [`Application`](RemoteErrorKind::Application), with the error's
    /// message, type name and `source()` chain (a handler that returns a
    /// [`RemoteError`] passes it on as it is). Arguments that do not decode
    /// are answered with [`BadPayload`](RemoteErrorKind::BadPayload) and a
    /// panic with [`Panic`](RemoteErrorKind::Panic); the server keeps
    /// serving.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use weft_messaging::{Identity, Messaging};
    /// use weft_rpc::{Method, Rpc};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("division by zero")]
    /// struct DivByZero;
    ///
    /// const DIV: Method<(i64, i64), i64> = Method::new("calc", "div");
    ///
    /// let rpc = Rpc::new(Messaging::new(Identity::new("calc")?, Default::default()).await?, Default::default())?;
    /// rpc.register(DIV, |(a, b)| async move {
    ///     if b == 0 { Err(DivByZero) } else { Ok(a / b) }
    /// });
    /// // Calling ourselves stays local.
    /// assert_eq!(rpc.call(rpc.identity(), DIV, (7, 2)).await?, 3);
    /// # Ok(()) }
    /// ```
    pub fn register<A, R, E, F, Fut>(&self, method: Method<A, R>, handler: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: std::error::Error + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let h: Handler = Arc::new(move |req: Request| {
            let handler = handler.clone();
            Box::pin(async move {
                let args: A = postcard::from_bytes(&req.args).map_err(|e| {
                    RemoteError::new(
                        RemoteErrorKind::BadPayload,
                        std::any::type_name::<A>(),
                        format!(
                            "the arguments do not decode as {}: {e}",
                            std::any::type_name::<A>()
                        ),
                    )
                })?;
                match handler(args).await {
                    Ok(r) => Body::encode(REPLY_HEADROOM, &r).map_err(|e| {
                        RemoteError::new(
                            RemoteErrorKind::BadPayload,
                            std::any::type_name::<R>(),
                            format!("the result does not encode: {e}"),
                        )
                    }),
                    Err(e) => Err(match (&e as &dyn Any).downcast_ref::<RemoteError>() {
                        Some(remote) => remote.clone(),
                        None => RemoteError::from_error(&e),
                    }),
                }
            })
        });
        self.insert_handler(method.object(), method.method(), h);
    }

    /// Serves `object.method` with a handler of raw bytes: it gets the
    /// caller and the encoded arguments, and returns the encoded result or
    /// the error to send. Fails with [`RpcError::NameTooLong`].
    pub fn register_raw<F, Fut>(
        &self,
        object: &str,
        method: &str,
        handler: F,
    ) -> Result<(), RpcError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, RemoteError>> + Send + 'static,
    {
        check_name(object)?;
        check_name(method)?;
        let handler = Arc::new(handler);
        let h: Handler = Arc::new(move |req: Request| {
            let handler = handler.clone();
            Box::pin(async move {
                let out = handler(req).await?;
                Ok(Body::raw(REPLY_HEADROOM, &out))
            })
        });
        self.insert_handler(object, method, h);
        Ok(())
    }

    fn insert_handler(&self, object: &str, method: &str, h: Handler) {
        self.inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(object.to_owned())
            .or_default()
            .insert(method.to_owned(), h);
    }

    /// Stops serving `object.method`. Returns whether it was served.
    pub fn unregister(&self, object: &str, method: &str) -> bool {
        let mut reg = self
            .inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let Some(methods) = reg.get_mut(object) else {
            return false;
        };
        let removed = methods.remove(method).is_some();
        if methods.is_empty() {
            reg.remove(object);
        }
        removed
    }

    /// Calls `method` on the peer `to` with the config's
    /// [`default_timeout`](RpcConfig::default_timeout); see
    /// [`call_with`](Self::call_with).
    ///
    /// Not cancel-safe: dropping the future cancels the call on the server.
    pub async fn call<A, R>(
        &self,
        to: &Identity,
        method: Method<A, R>,
        args: A,
    ) -> Result<R, RpcError>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.call_with(to, method, args, CallOptions::default())
            .await
    }

    /// Calls `method` on the peer `to` and waits for its result.
    ///
    /// The call waits in messaging's queue until `to` is connected (at
    /// most the timeout: the CALL's TTL). If the connection breaks, the
    /// call is sent again with the same id when `to` reconnects, and the
    /// server answers a repeated id from its result cache: the method runs
    /// at most once (while the server remembers the call, see
    /// [`ServerConfig::result_cache`](crate::ServerConfig::result_cache)). The timeout travels to the server as a relative
    /// deadline; past it the server stops working on the call.
    ///
    /// Fails with [`RpcError::Remote`] (the server's error, typed),
    /// [`RpcError::Timeout`], [`RpcError::TooLarge`], [`RpcError::Encode`]
    /// or [`RpcError::Decode`], [`RpcError::Messaging`] when messaging
    /// refuses the message.
    ///
    /// Dropping the future cancels the call: the server is sent a CANCEL
    /// and stops the handler (which may or may not have run, or have run in
    /// part). So not cancel-safe in the sense of `select!` loops: a dropped
    /// call is gone.
    pub async fn call_with<A, R>(
        &self,
        to: &Identity,
        method: Method<A, R>,
        args: A,
        options: CallOptions,
    ) -> Result<R, RpcError>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let timeout = options.timeout.unwrap_or(self.inner.config.default_timeout);
        let (object, name) = (method.object(), method.method());
        let body = Body::encode(wire::call_headroom(object, name), &args)
            .map_err(|e| RpcError::Encode(e.to_string()))?;
        drop(args);
        let bytes = self.call_body(to, object, name, body, timeout).await?;
        postcard::from_bytes(&bytes).map_err(|e| {
            RpcError::Decode(format!(
                "the result does not decode as {}: {e}",
                std::any::type_name::<R>()
            ))
        })
    }

    /// Calls `object.method` on `to` with encoded arguments and returns the
    /// encoded result: the lower level under [`call`](Self::call), for
    /// names known only at run time. Same behaviour and errors as
    /// [`call_with`](Self::call_with), plus [`RpcError::NameTooLong`].
    /// Not cancel-safe: dropping the future cancels the call on the server.
    pub async fn call_raw(
        &self,
        to: &Identity,
        object: &str,
        method: &str,
        args: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        check_name(object)?;
        check_name(method)?;
        let body = Body::raw(wire::call_headroom(object, method), args);
        self.call_body(to, object, method, body, timeout).await
    }

    async fn call_body(
        &self,
        to: &Identity,
        object: &str,
        method: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(RpcError::Closed);
        }
        let timeout = timeout.min(MAX_TIMEOUT);
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let frame = wire::call_frame(id, object, method, deadline_ms, body);
        let limit = inner.config.max_request_bytes;
        if frame.len() > limit {
            return Err(RpcError::TooLarge {
                what: "request",
                size: frame.len(),
                limit,
            });
        }
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        lock(&inner.pending).insert(
            id,
            Pending {
                to: to.clone(),
                frame: frame.clone(),
                deadline,
                resend: inner.messaging.is_connected(to),
                tx,
            },
        );
        let mut guard = CallGuard {
            inner,
            to,
            id,
            ttl: timeout,
            live: true,
        };
        if let Err(e) = inner
            .messaging
            .try_send_message(to, Message::new(frame).with_ttl(timeout))
        {
            guard.live = false;
            lock(&inner.pending).remove(&id);
            return Err(e.into());
        }
        inc(&inner.counters.calls_sent);
        tracing::trace!(id, %to, object, method, "call sent");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => {
                guard.live = false;
                outcome
            }
            Ok(Err(_)) => {
                guard.live = false;
                Err(RpcError::Cancelled)
            }
            Err(_) => {
                inc(&inner.counters.timed_out);
                Err(RpcError::Timeout(timeout))
            }
        }
    }

    /// Sends a signal: a call without a result. Returns at once, never
    /// waiting: the signal waits in messaging's queue until `to` is
    /// connected, at most `ttl`; if the TTL runs out first it is dropped
    /// (counted in messaging's `expired`) and never runs. The handler's
    /// result and errors stay on the server.
    ///
    /// Fails with [`RpcError::Encode`], [`RpcError::TooLarge`] or
    /// [`RpcError::Messaging`] (its queue for `to` is full).
    pub fn signal<A, R>(
        &self,
        to: &Identity,
        method: Method<A, R>,
        args: A,
        ttl: Duration,
    ) -> Result<(), RpcError>
    where
        A: Serialize,
    {
        let (object, name) = (method.object(), method.method());
        let body = Body::encode(wire::signal_headroom(object, name), &args)
            .map_err(|e| RpcError::Encode(e.to_string()))?;
        self.signal_body(to, object, name, body, ttl)
    }

    /// [`signal`](Self::signal) with names and encoded arguments.
    pub fn signal_raw(
        &self,
        to: &Identity,
        object: &str,
        method: &str,
        args: &[u8],
        ttl: Duration,
    ) -> Result<(), RpcError> {
        check_name(object)?;
        check_name(method)?;
        let body = Body::raw(wire::signal_headroom(object, method), args);
        self.signal_body(to, object, method, body, ttl)
    }

    fn signal_body(
        &self,
        to: &Identity,
        object: &str,
        method: &str,
        body: Body,
        ttl: Duration,
    ) -> Result<(), RpcError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(RpcError::Closed);
        }
        let frame = wire::signal_frame(object, method, body);
        let limit = inner.config.max_request_bytes;
        if frame.len() > limit {
            return Err(RpcError::TooLarge {
                what: "request",
                size: frame.len(),
                limit,
            });
        }
        inner
            .messaging
            .try_send_message(to, Message::new(frame).with_ttl(ttl))?;
        inc(&inner.counters.signals_sent);
        Ok(())
    }

    /// Stops: no more calls are served or made, calls still waiting for a
    /// result fail with [`RpcError::Cancelled`] (their servers are sent a
    /// CANCEL), the registered handlers are dropped, and this waits until
    /// the handlers still running have finished (each within its
    /// deadline). The messaging instance stays up.
    ///
    /// Cancel-safe: if dropped, the instance is closed all the same and
    /// the running handlers finish on their own.
    pub async fn close(&self) {
        self.inner.shut();
        let handlers = std::mem::take(
            &mut *self
                .inner
                .registry
                .write()
                .unwrap_or_else(|p| p.into_inner()),
        );
        drop(handlers); // outside the lock: a handler may hold an Rpc
        let given_up: Vec<Pending> = lock(&self.inner.pending).drain().map(|(_, p)| p).collect();
        let now = Instant::now();
        for p in given_up {
            if let Some(id) = wire::peek(&p.frame).and_then(|(_, id)| id) {
                let ttl = p.deadline.saturating_duration_since(now);
                self.inner.send(&p.to, wire::cancel_frame(id), ttl);
                inc(&self.inner.counters.cancels_sent);
            }
        }
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.active.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// The most frames the dispatcher handles in one go.
const MAX_CHUNK: usize = 256;

/// The dispatcher: every RPC frame messaging received, in order.
///
/// The frames waiting when it starts on them (a wave, often a burst of
/// calls that one write brought) are handled in two halves, and between
/// the halves, and whenever more frames wait, it lets the runtime's other
/// tasks run: the connection writers send the first half's results while
/// the second half is handled, so that the peer can start on them instead
/// of waiting for the whole wave. Each chunk reads the clock at most once,
/// and only if a frame needs the time.
async fn dispatch(inner: Arc<Inner>, mut rx: mpsc::Receiver<Received>) {
    let mut batch = Vec::with_capacity(MAX_CHUNK);
    // Frames of the current wave not taken yet, and the size of its chunks.
    let mut left = 0usize;
    let mut chunk = 1usize;
    loop {
        if left == 0 {
            if rx.recv_many(&mut batch, 1).await == 0 {
                return; // messaging is gone
            }
            left = 1 + rx.len();
            chunk = left.div_ceil(2).min(MAX_CHUNK);
        }
        let more = chunk.min(left).saturating_sub(batch.len());
        if more > 0 {
            rx.recv_many(&mut batch, more).await;
        }
        left = left.saturating_sub(batch.len());
        let mut clock = Clock::default();
        for received in batch.drain(..) {
            inner.on_frame(received, &mut clock);
        }
        if !rx.is_empty() {
            YieldOnce(false).await;
        }
    }
}

/// Goes to the back of the runtime's queue of ready tasks once: the tasks
/// woken meanwhile (the connection writers among them) run first.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// `now + d`, or a time too far to matter when that does not fit.
fn deadline_at(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

impl Inner {
    /// Stops taking frames (idempotent).
    fn shut(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for id in lock(&self.handler_ids).drain(..) {
            self.messaging.remove_handler(id);
        }
    }

    /// Aborts every running handler.
    fn abort_all(&self) {
        let mut s = lock(&self.serving);
        for h in s.running.values().chain(s.signals.values()).flatten() {
            h.abort();
        }
        s.running.clear();
        s.signals.clear();
        s.admitted = 0;
    }

    fn send(&self, to: &Identity, frame: Bytes, ttl: Duration) {
        let message = Message::new(frame).with_ttl(ttl.max(Duration::from_secs(1)));
        if let Err(e) = self.messaging.try_send_message(to, message) {
            inc(&self.counters.send_failures);
            tracing::debug!(%to, error = %e, "RPC frame not sent");
        }
    }

    /// The caller's peer is back: send again the calls that may have been
    /// lost with the old connection.
    fn resend_to(&self, who: &Identity) {
        let now = Instant::now();
        let mut again = Vec::new();
        for p in lock(&self.pending).values_mut() {
            if p.to == *who {
                if p.resend && p.deadline > now {
                    again.push((p.frame.clone(), p.deadline - now));
                }
                // Sent on this connection from now on (queued ones leave
                // as it comes up).
                p.resend = true;
            }
        }
        for (frame, ttl) in again {
            match self
                .messaging
                .try_send_message(who, Message::new(frame).with_ttl(ttl))
            {
                Ok(()) => inc(&self.counters.calls_resent),
                Err(_) => inc(&self.counters.send_failures),
            }
        }
    }

    fn on_frame(self: &Arc<Self>, r: Received, clock: &mut Clock) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let data = &r.message.data;
        let Some((kind, id)) = wire::peek(data) else {
            inc(&self.counters.bad_frames);
            tracing::debug!(from = %r.from, "RPC frame of unknown kind ignored");
            return;
        };
        let ttl = r.message.ttl;
        let limit = match kind {
            FrameKind::Result => self.config.max_response_bytes,
            _ => self.config.max_request_bytes,
        };
        if data.len() > limit {
            inc(&self.counters.bad_frames);
            match (kind, id) {
                (FrameKind::Call, Some(id)) => {
                    let e = RemoteError::builtin(
                        RemoteErrorKind::TooLarge,
                        format!("request of {} bytes; the limit is {limit}", data.len()),
                    );
                    self.send(
                        &r.from,
                        wire::err_frame(id, &e),
                        self.deadline_of(u32::MAX, ttl),
                    );
                }
                (FrameKind::Result, Some(id)) => self.fail_pending(
                    &r.from,
                    id,
                    RpcError::TooLarge {
                        what: "response",
                        size: data.len(),
                        limit,
                    },
                ),
                _ => {}
            }
            return;
        }
        match Frame::parse(data) {
            Ok(Frame::Call(call)) => self.serve_call(&r, call, clock),
            Ok(Frame::Result(reply)) => self.on_result(&r, reply),
            Ok(Frame::Cancel { id }) => self.on_cancel(&r.from, id),
            Ok(Frame::Signal(signal)) => self.serve_signal(&r, signal, clock),
            Err(e) => {
                inc(&self.counters.bad_frames);
                tracing::debug!(from = %r.from, error = %e, "bad RPC frame");
                match (kind, id) {
                    (FrameKind::Call, Some(id)) => {
                        let e = RemoteError::builtin(RemoteErrorKind::BadPayload, e.to_string());
                        self.send(
                            &r.from,
                            wire::err_frame(id, &e),
                            self.deadline_of(u32::MAX, ttl),
                        );
                    }
                    (FrameKind::Result, Some(id)) => {
                        self.fail_pending(&r.from, id, RpcError::Decode(e.to_string()))
                    }
                    _ => {}
                }
            }
        }
    }

    /// How long the server gives a call: what the caller asked, at most
    /// `max_deadline`, and at most what was left of the CALL message's TTL
    /// when it was written (whole seconds, rounded down, so plus one): time
    /// the call spent waiting in a queue is not given twice.
    fn deadline_of(&self, deadline_ms: u32, ttl: Option<Duration>) -> Duration {
        let mut d =
            Duration::from_millis(u64::from(deadline_ms)).min(self.config.server.max_deadline);
        if let Some(ttl) = ttl {
            d = d.min(ttl + Duration::from_secs(1));
        }
        d
    }

    fn lookup(&self, object: &str, method: &str) -> Result<Handler, RemoteError> {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let Some(methods) = reg.get(object) else {
            return Err(RemoteError::builtin(
                RemoteErrorKind::UnknownObject,
                format!("no object `{object}`"),
            ));
        };
        methods.get(method).cloned().ok_or_else(|| {
            RemoteError::builtin(
                RemoteErrorKind::UnknownMethod,
                format!("object `{object}` has no method `{method}`"),
            )
        })
    }

    fn admission_limit(&self) -> usize {
        let s = &self.config.server;
        s.max_concurrent_calls
            .max(1)
            .saturating_add(s.max_waiting_calls)
    }

    fn serve_call(self: &Arc<Self>, r: &Received, call: wire::Call<'_>, clock: &mut Clock) {
        inc(&self.counters.calls_received);
        let deadline = self.deadline_of(call.deadline_ms, r.message.ttl);
        let handler = self.lookup(call.object, call.method);
        let key = (r.from.clone(), call.id);
        let s = lock(&self.serving);
        if let Some(frame) = s.cache.get(&r.from, call.id) {
            drop(s);
            inc(&self.counters.duplicates_cached);
            self.send(&r.from, frame, deadline);
            return;
        }
        if s.running.contains_key(&key) {
            inc(&self.counters.duplicates_running);
            return;
        }
        let refused = match handler {
            Err(e) => {
                inc(&self.counters.unknown);
                Err(e)
            }
            Ok(_) if s.admitted >= self.admission_limit() => {
                inc(&self.counters.overloaded);
                Err(RemoteError::builtin(
                    RemoteErrorKind::Overloaded,
                    format!("{} calls running or waiting", s.admitted),
                ))
            }
            Ok(h) => Ok(h),
        };
        let handler = match refused {
            Ok(h) => h,
            Err(e) => {
                // Not cached: the method did not run, so running it when
                // the call comes again breaks no promise.
                drop(s);
                self.send(&r.from, wire::err_frame(call.id, &e), deadline);
                return;
            }
        };
        let request = Request {
            caller: r.from.clone(),
            args: r.message.data.slice_ref(call.args),
        };
        match self.begin(s, handler, request, &self.counters.calls_executed) {
            Begun::Done(finished, _active) => {
                let outcome = outcome_of(self, finished, &key.0, key.1);
                let frame = self.result_frame(key.1, outcome);
                if self.config.server.result_cache > 0 {
                    lock(&self.serving)
                        .cache
                        .insert(&key.0, key.1, frame.clone());
                }
                self.send(&key.0, frame, deadline);
            }
            Begun::Task(s, start, _active) => self.spawn_call(s, key, start, deadline, clock),
        }
    }

    /// Starts an admitted handler (`s`, held, was checked for room): in
    /// the dispatcher if a turn is free and it finishes when first polled,
    /// else in a task the caller spawns, going on or waiting for its turn.
    /// `executed` counts it once it runs.
    fn begin<'a>(
        self: &'a Arc<Self>,
        s: MutexGuard<'a, Serving>,
        handler: Handler,
        request: Request,
        executed: &AtomicU64,
    ) -> Begun<'a> {
        let Some(turn) = self.inline_turn() else {
            return Begun::Task(s, Start::Waiting(handler, request), None);
        };
        drop(s); // the handler may use this instance
        inc(executed);
        let active = Active::new(&**self);
        let mut work = CatchUnwind(handler(request));
        match poll_once(&mut work) {
            Poll::Ready(finished) => Begun::Done(finished, active),
            Poll::Pending => {
                turn.forget();
                let start = Start::Started(work, Turn(self.clone()));
                Begun::Task(lock(&self.serving), start, Some(active))
            }
        }
    }

    /// A turn for the dispatcher to poll a handler itself: none if
    /// handlers are always spawned, or if every turn is taken (the handler
    /// then waits in a task, in line with the others).
    fn inline_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if self.config.server.spawn_handlers {
            return None;
        }
        self.turns.try_acquire().ok()
    }

    /// Admits call `key` as running (or waiting for a turn) and spawns its
    /// task; `s` is held until the task's abort handle is stored.
    fn spawn_call(
        self: &Arc<Self>,
        mut s: MutexGuard<'_, Serving>,
        key: (Identity, u64),
        start: Start,
        deadline: Duration,
        clock: &mut Clock,
    ) {
        let at = deadline_at(clock.now(), deadline);
        s.admitted += 1;
        s.running.insert(key.clone(), None);
        let active = Active::new(self.clone());
        let task = tokio::spawn(
            self.clone()
                .run_call(key.clone(), start, deadline, at, active),
        );
        if let Some(slot) = s.running.get_mut(&key) {
            *slot = Some(task.abort_handle());
        }
    }

    async fn run_call(
        self: Arc<Self>,
        key: (Identity, u64),
        start: Start,
        deadline: Duration,
        at: Instant,
        _active: Active<Arc<Inner>>,
    ) {
        let id = key.1;
        let work = start.finish(&self, &self.counters.calls_executed);
        let outcome = match tokio::time::timeout_at(at, work).await {
            Err(_) => {
                inc(&self.counters.deadline_exceeded);
                Err(RemoteError::builtin(
                    RemoteErrorKind::DeadlineExceeded,
                    format!("the deadline of {deadline:?} passed; the call was stopped"),
                ))
            }
            Ok(finished) => outcome_of(&self, finished, &key.0, id),
        };
        let frame = self.result_frame(id, outcome);
        {
            let mut s = lock(&self.serving);
            if s.running.remove(&key).is_none() {
                return; // cancelled meanwhile: the caller is not waiting
            }
            s.admitted -= 1;
            s.cache.insert(&key.0, id, frame.clone());
        }
        self.send(&key.0, frame, deadline);
    }

    /// The RESULT frame of a finished call, within `max_response_bytes`.
    fn result_frame(&self, id: u64, outcome: Result<Body, RemoteError>) -> Bytes {
        let limit = self.config.max_response_bytes;
        let error = match outcome {
            Ok(value) => {
                let frame = wire::ok_frame(id, value);
                if frame.len() <= limit {
                    return frame;
                }
                RemoteError::builtin(
                    RemoteErrorKind::TooLarge,
                    format!("result of {} bytes; the limit is {limit}", frame.len()),
                )
            }
            Err(e) => e,
        };
        let mut error = error;
        if !self.config.server.send_error_context {
            error.context.clear();
        }
        let frame = wire::err_frame(id, &error);
        if frame.len() <= limit {
            return frame;
        }
        error.context.clear();
        error.message.truncate(0);
        wire::err_frame(id, &error)
    }

    fn on_cancel(&self, from: &Identity, id: u64) {
        let key = (from.clone(), id);
        let marker = || {
            wire::err_frame(
                id,
                &RemoteError::builtin(RemoteErrorKind::Cancelled, "the caller cancelled the call"),
            )
        };
        let mut s = lock(&self.serving);
        match s.running.remove(&key) {
            Some(handle) => {
                s.admitted -= 1;
                if let Some(h) = handle {
                    h.abort();
                }
                inc(&self.counters.cancelled);
                tracing::debug!(caller = %from, id, "call cancelled");
                // A repeat of this id must not run it again.
                s.cache.insert(from, id, marker());
            }
            None => {
                if s.cache.get(from, id).is_none() {
                    // The CANCEL overtook its CALL: the CALL must not run.
                    s.cache.insert(from, id, marker());
                }
            }
        }
    }

    fn serve_signal(self: &Arc<Self>, r: &Received, signal: wire::Signal<'_>, clock: &mut Clock) {
        inc(&self.counters.signals_received);
        let handler = match self.lookup(signal.object, signal.method) {
            Ok(h) => h,
            Err(e) => {
                inc(&self.counters.unknown);
                tracing::debug!(from = %r.from, error = %e, "signal for nothing");
                return;
            }
        };
        let s = lock(&self.serving);
        if s.admitted >= self.admission_limit() {
            inc(&self.counters.overloaded);
            tracing::debug!(from = %r.from, "signal dropped: overloaded");
            return;
        }
        let request = Request {
            caller: r.from.clone(),
            args: r.message.data.slice_ref(signal.args),
        };
        match self.begin(s, handler, request, &self.counters.signals_executed) {
            Begun::Done(finished, _active) => self.signal_done(finished, &r.from),
            Begun::Task(s, start, _active) => self.spawn_signal(s, r.from.clone(), start, clock),
        }
    }

    /// Admits a signal as running (or waiting for a turn) and spawns its
    /// task; `s` is held until the task's abort handle is stored.
    fn spawn_signal(
        self: &Arc<Self>,
        mut s: MutexGuard<'_, Serving>,
        caller: Identity,
        start: Start,
        clock: &mut Clock,
    ) {
        let at = deadline_at(clock.now(), self.config.server.max_deadline);
        s.admitted += 1;
        let n = s.next_signal;
        s.next_signal += 1;
        s.signals.insert(n, None);
        let active = Active::new(self.clone());
        let task = tokio::spawn(self.clone().run_signal(n, caller, start, at, active));
        if let Some(slot) = s.signals.get_mut(&n) {
            *slot = Some(task.abort_handle());
        }
    }

    async fn run_signal(
        self: Arc<Self>,
        n: u64,
        caller: Identity,
        start: Start,
        at: Instant,
        _active: Active<Arc<Inner>>,
    ) {
        let work = start.finish(&self, &self.counters.signals_executed);
        match tokio::time::timeout_at(at, work).await {
            Err(_) => {
                inc(&self.counters.deadline_exceeded);
                tracing::debug!(%caller, "signal handler stopped at the deadline");
            }
            Ok(finished) => self.signal_done(finished, &caller),
        }
        let mut s = lock(&self.serving);
        if s.signals.remove(&n).is_some() {
            s.admitted -= 1;
        }
    }

    /// Counts and logs how a signal's handler ended.
    fn signal_done(
        &self,
        finished: Result<Result<Body, RemoteError>, Box<dyn Any + Send>>,
        caller: &Identity,
    ) {
        match finished {
            Err(panic) => {
                inc(&self.counters.panics);
                let message = panic_message(&*panic);
                tracing::warn!(%caller, %message, "RPC signal handler panicked");
            }
            Ok(Err(e)) => tracing::debug!(%caller, error = %e, "signal handler failed"),
            Ok(Ok(_)) => {}
        }
    }

    fn on_result(&self, r: &Received, reply: wire::Reply<'_>) {
        let Some(pending) = self.take_pending(&r.from, reply.id) else {
            inc(&self.counters.results_unmatched);
            return;
        };
        inc(&self.counters.results_received);
        let outcome = match reply.outcome {
            Outcome::Ok(value) => Ok(r.message.data.slice_ref(value)),
            Outcome::Err(e) => Err(RpcError::Remote(e)),
        };
        let _ = pending.tx.send(outcome);
    }

    fn fail_pending(&self, from: &Identity, id: u64, error: RpcError) {
        if let Some(p) = self.take_pending(from, id) {
            let _ = p.tx.send(Err(error));
        }
    }

    /// The pending call `id`, if it was made to `from`.
    fn take_pending(&self, from: &Identity, id: u64) -> Option<Pending> {
        let mut pending = lock(&self.pending);
        match pending.get(&id) {
            Some(p) if p.to == *from => pending.remove(&id),
            _ => None,
        }
    }
}
