//! The serving side's shell: looks handlers up, asks the admission core
//! ([`crate::core::serving`]) what to do with each CALL, SIGNAL and
//! CANCEL, and runs the admitted handlers (at once, or in tasks it can
//! abort, within their deadlines).

use std::any::Any;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use weft_messaging::{Identity, Received};

use crate::core::serving::{self, Action, Cancelled, Dropped, Reply};
use crate::dispatch::Clock;
use crate::handler::{
    Active, Begun, CatchUnwind, Handler, Request, Start, Turn, outcome_of, panic_message, poll_once,
};
use crate::rpc::{Inner, lock};
use crate::stats::inc;
use crate::wire::{self, Body};
use crate::{RemoteError, RemoteErrorKind};

/// The serving side's state, under one lock: the core's admission, with
/// tokio's abort handles to stop the handlers running in tasks.
pub(crate) type Serving = serving::Serving<AbortHandle>;

/// `now + d`, or a time too far to matter when that does not fit.
pub(crate) fn deadline_at(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

impl Inner {
    /// Aborts every running handler.
    pub(crate) fn abort_all(&self) {
        let handles = lock(&self.serving).handle_close();
        for h in handles {
            h.abort();
        }
    }

    /// How long the server gives a call (see [`serving::call_deadline`]).
    pub(crate) fn deadline_of(&self, deadline_ms: u32, ttl: Option<Duration>) -> Duration {
        serving::call_deadline(deadline_ms, ttl, self.config.server.max_deadline)
    }

    pub(crate) fn lookup(&self, object: &str, method: &str) -> Result<Handler, RemoteError> {
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

    pub(crate) fn serve_call(
        self: &Arc<Self>,
        r: &Received,
        call: wire::Call<'_>,
        clock: &mut Clock,
    ) {
        inc(&self.counters.calls_received);
        let deadline = self.deadline_of(call.deadline_ms, r.message.ttl);
        let handler = self.lookup(call.object, call.method);
        let key = (r.from.clone(), call.id);
        let s = lock(&self.serving);
        let handler = match s.handle_call(&key, handler) {
            Action::Run(h) => h,
            Action::Reply(frame, why) => {
                drop(s);
                inc(match why {
                    Reply::Cached => &self.counters.duplicates_cached,
                    Reply::Unknown => &self.counters.unknown,
                    Reply::Overloaded => &self.counters.overloaded,
                });
                self.send(&r.from, frame, deadline);
                return;
            }
            Action::Drop(_) => {
                inc(&self.counters.duplicates_running);
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
                    lock(&self.serving).handle_finished(&key, frame.clone());
                }
                self.send(&key.0, frame, deadline);
            }
            Begun::Task(s, start, _active) => self.spawn_call(s, key, start, deadline, clock),
        }
    }

    /// Starts an admitted handler (`s`, held, was checked for room): in
    /// the task handling the frame (messaging's or the dispatcher's) if a
    /// turn is free and it finishes when first polled,
    /// else in a task the caller spawns, going on or waiting for its turn.
    /// `executed` counts it once it runs.
    pub(crate) fn begin<'a>(
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

    /// A turn for the task handling the frame to poll a handler itself: none if
    /// handlers are always spawned, or if every turn is taken (the handler
    /// then waits in a task, in line with the others).
    pub(crate) fn inline_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if self.config.server.spawn_handlers {
            return None;
        }
        self.turns.try_acquire().ok()
    }

    /// Admits call `key` as running (or waiting for a turn) and spawns its
    /// task; `s` is held until the task's abort handle is stored.
    pub(crate) fn spawn_call(
        self: &Arc<Self>,
        mut s: MutexGuard<'_, Serving>,
        key: (Identity, u64),
        start: Start,
        deadline: Duration,
        clock: &mut Clock,
    ) {
        let at = deadline_at(clock.now(), deadline);
        s.admit_call(key.clone());
        let active = Active::new(self.clone());
        let task = tokio::spawn(
            self.clone()
                .run_call(key.clone(), start, deadline, at, active),
        );
        s.set_call_handle(&key, task.abort_handle());
    }

    pub(crate) async fn run_call(
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
        if !lock(&self.serving).handle_done(&key, &frame) {
            return; // cancelled meanwhile: the caller is not waiting
        }
        self.send(&key.0, frame, deadline);
    }

    /// The RESULT frame of a call that failed with `error` before it ran,
    /// bare unless errors are transferred (see [`serving::error_frame`]).
    pub(crate) fn error_frame(&self, id: u64, error: RemoteError) -> Bytes {
        serving::error_frame(id, error, self.config.server.transfer_errors)
    }

    /// The RESULT frame of a finished call (see [`serving::result_frame`]).
    pub(crate) fn result_frame(&self, id: u64, outcome: Result<Body, RemoteError>) -> Bytes {
        serving::result_frame(
            id,
            outcome,
            self.config.max_response_bytes,
            self.config.server.transfer_errors,
        )
    }

    pub(crate) fn on_cancel(&self, from: &Identity, id: u64) {
        let cancelled = lock(&self.serving).handle_cancel(&(from.clone(), id));
        if let Cancelled::Stopped(handle) = cancelled {
            if let Some(h) = handle {
                h.abort();
            }
            inc(&self.counters.cancelled);
            tracing::debug!(caller = %from, id, "call cancelled");
        }
    }

    pub(crate) fn serve_signal(
        self: &Arc<Self>,
        r: &Received,
        signal: wire::Signal<'_>,
        clock: &mut Clock,
    ) {
        inc(&self.counters.signals_received);
        let handler = self.lookup(signal.object, signal.method);
        let s = lock(&self.serving);
        let handler = match s.handle_signal(handler) {
            Ok(h) => h,
            Err(Dropped::Unknown) => {
                inc(&self.counters.unknown);
                tracing::debug!(from = %r.from, "signal for nothing");
                return;
            }
            Err(_) => {
                inc(&self.counters.overloaded);
                tracing::debug!(from = %r.from, "signal dropped: overloaded");
                return;
            }
        };
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
    pub(crate) fn spawn_signal(
        self: &Arc<Self>,
        mut s: MutexGuard<'_, Serving>,
        caller: Identity,
        start: Start,
        clock: &mut Clock,
    ) {
        let at = deadline_at(clock.now(), self.config.server.max_deadline);
        let n = s.admit_signal();
        let active = Active::new(self.clone());
        let task = tokio::spawn(self.clone().run_signal(n, caller, start, at, active));
        s.set_signal_handle(n, task.abort_handle());
    }

    pub(crate) async fn run_signal(
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
        lock(&self.serving).handle_signal_done(n);
    }

    /// Counts and logs how a signal's handler ended.
    pub(crate) fn signal_done(
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
}
