//! The [`Rpc`] handle and its API, over the state its parts share
//! ([`Inner`]). The tokio shell: messaging's task handles results and a
//! lone call as it reads them, one dispatcher task per RPC instance the
//! other RPC frames (see [`crate::dispatch`]); callers wait on a oneshot
//! channel. The task that handles a call polls its handler once itself;
//! a handler that does not finish at once continues in a task of its own.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use weft_messaging::{HandlerId, Identity, Message, MessageId, Messaging, Received};

use crate::client::Waiter;
use crate::core::calls::Calls;
use crate::dispatch::{Router, dispatch};
use crate::handler::{Handler, Request};
use crate::server::Serving;
use crate::stats::{Counters, RpcStats, inc};
use crate::wire::{self, Body, REPLY_HEADROOM};
use crate::{CallOptions, DecodeError, Method, RemoteError, RemoteErrorKind, RpcConfig, RpcError};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type Registry = FastMap<String, FastMap<String, Handler>>;

/// What every [`Rpc`] clone, the dispatcher and the handler tasks share.
pub(crate) struct Inner {
    pub(crate) messaging: Messaging,
    pub(crate) config: RpcConfig,
    pub(crate) closed: AtomicBool,
    pub(crate) handler_ids: Mutex<Vec<HandlerId>>,
    pub(crate) next_id: AtomicU64,
    /// Calls waiting for their result.
    pub(crate) calls: Mutex<Calls<Waiter>>,
    /// Handlers by object and method (names we registered: a fast hash).
    pub(crate) registry: RwLock<Registry>,
    pub(crate) turns: Semaphore,
    pub(crate) serving: Mutex<Serving>,
    /// Handler tasks alive, and a wake-up when that reaches 0.
    pub(crate) active: AtomicUsize,
    pub(crate) idle: Notify,
    pub(crate) counters: Arc<Counters>,
}

/// Stops the dispatcher and aborts running handlers when the last [`Rpc`]
/// handle is dropped.
pub(crate) struct StopOnDrop(Arc<Inner>);

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
    pub(crate) inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

impl fmt::Debug for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rpc")
            .field("identity", self.inner.messaging.identity())
            .finish()
    }
}

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
            calls: Mutex::new(Calls::new()),
            registry: RwLock::new(FastMap::default()),
            turns: Semaphore::new(
                config
                    .server
                    .max_concurrent_calls
                    .clamp(1, Semaphore::MAX_PERMITS),
            ),
            serving: Mutex::new(
                Serving::new(
                    config
                        .server
                        .max_concurrent_calls
                        .max(1)
                        .saturating_add(config.server.max_waiting_calls),
                    config.server.result_cache,
                    config.server.result_cache_bytes,
                )
                .with_error_transfer(config.server.transfer_errors),
            ),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            counters: counters.clone(),
            config,
        });

        let (tx, rx) = mpsc::channel::<Received>(inner.config.inbound_capacity.max(1));
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let queued = Arc::new(AtomicUsize::new(0));
        let router = Arc::new(Router::new(weak.clone(), tx, queued.clone(), counters));
        let on_message = messaging.on_message({
            let router = router.clone();
            move |r| router.on_message(r)
        });
        let on_batch_end = messaging.on_batch_end(move || router.on_batch_end());
        let on_connect = messaging.on_connect(move |who| {
            if let Some(inner) = weak.upgrade() {
                inner.resend_to(who);
            }
        });
        lock(&inner.handler_ids).extend([on_message, on_batch_end, on_connect]);
        tokio::spawn(dispatch(inner.clone(), rx, queued));
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
                s.cache().len() as u64,
                s.cache().bytes() as u64,
                s.cache().evicted,
                s.in_progress() as u64,
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
            calls_inline: get(&c.calls_inline),
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
    /// The handler is called, and polled once, by the task that handles
    /// the call: messaging's I/O task for a call that arrives alone while
    /// the RPC dispatcher is idle, the dispatcher otherwise. Its work up to
    /// its first wait runs there, and meanwhile that task reads nothing;
    /// keep it short or set
    /// [`ServerConfig::spawn_handlers`](crate::ServerConfig::spawn_handlers).
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
        let body =
            Body::encode(wire::call_headroom(object, name), &args).map_err(RpcError::Encode)?;
        drop(args);
        let bytes = self.call_body(to, object, name, body, timeout).await?;
        postcard::from_bytes(&bytes).map_err(|source| {
            RpcError::Decode(DecodeError::Result {
                type_name: std::any::type_name::<R>(),
                source,
            })
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
        let body =
            Body::encode(wire::signal_headroom(object, name), &args).map_err(RpcError::Encode)?;
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
        lock(&self.inner.calls).handle_close(Instant::now().into_std());
        self.inner.drain_calls();
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Inner {
    /// Stops taking frames (idempotent).
    pub(crate) fn shut(&self) {
        // SeqCst: `close` then reads the count of running handlers, and
        // a handler that ends reads this mark (see `Active`).
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for id in lock(&self.handler_ids).drain(..) {
            self.messaging.remove_handler(id);
        }
    }

    pub(crate) fn send(&self, to: &Identity, frame: Bytes, ttl: Duration) {
        let message = Message::new(frame).with_ttl(ttl.max(Duration::from_secs(1)));
        if let Err(e) = self.messaging.try_send_message(to, message) {
            inc(&self.counters.send_failures);
            tracing::debug!(%to, error = %e, "RPC frame not sent");
        }
    }
}
