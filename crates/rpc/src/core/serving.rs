//! The server's admission of calls and signals: duplicate suppression with
//! the result cache, cancel markers, and the decision whether there is room
//! to run one more. No I/O: the shell runs what this admits, and tells it
//! when each ends.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use weft_messaging::Identity;

use crate::cache::ResultCache;
use crate::wire::{self, Body};
use crate::{RemoteError, RemoteErrorKind};

/// A call as the server knows it: its caller and the caller's id for it.
pub(crate) type CallKey = (Identity, u64);

/// What to do with a CALL or SIGNAL received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action<T> {
    /// Run it with this handler: there is room. A call run at once ends
    /// with [`Serving::handle_finished`]; one that goes on in a task is
    /// first admitted with [`Serving::admit_call`] (a signal with
    /// [`Serving::admit_signal`]).
    Run(T),
    /// Answer with this RESULT frame; the handler does not run.
    Reply(Bytes, Reply),
    /// Do nothing.
    Drop(Dropped),
}

/// Why a call is answered without running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A repeat of a call that ran (or was cancelled): its remembered
    /// result.
    Cached,
    /// No such object or method: an error, not remembered (the method did
    /// not run, so running it when the call comes again breaks no promise).
    Unknown,
    /// Too many calls running and waiting: an error, not remembered.
    Overloaded,
}

/// Why a frame is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// A repeat of a call still running: it answers when done.
    Running,
    /// A signal for no object or method.
    Unknown,
    /// A signal while too many calls run and wait.
    Overloaded,
}

/// What a CANCEL did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancelled<H> {
    /// The call was running or waiting for a turn: stop it with its handle
    /// (none if the shell never gave one).
    Stopped(Option<H>),
    /// The call was not running: it had finished (its result stays), or
    /// its CALL has not come yet (it will be answered as cancelled and
    /// never run).
    NotRunning,
}

/// The server's calls and signals in progress, and its memory of results.
/// `H` is the shell's handle to stop a running handler.
pub(crate) struct Serving<H> {
    /// Calls running or waiting for a turn.
    running: HashMap<CallKey, Option<H>>,
    /// Signals running or waiting, by a local number.
    signals: HashMap<u64, Option<H>>,
    next_signal: u64,
    /// Calls and signals running or waiting.
    admitted: usize,
    /// The most that may be running and waiting at once.
    limit: usize,
    cache: ResultCache,
    /// Whether error frames carry the error's type, message and context
    /// ([`error_frame`]).
    transfer_errors: bool,
}

impl<H> Serving<H> {
    /// Room for `limit` calls and signals running and waiting, and a
    /// result cache of `per_caller` results per caller and `max_bytes` in
    /// all.
    pub(crate) fn new(limit: usize, per_caller: usize, max_bytes: usize) -> Serving<H> {
        Serving {
            running: HashMap::new(),
            signals: HashMap::new(),
            next_signal: 0,
            admitted: 0,
            limit,
            cache: ResultCache::new(per_caller, max_bytes),
            transfer_errors: true,
        }
    }

    /// With `on` false, the errors this core answers with (unknown
    /// object or method, overloaded, cancelled) go out bare, as
    /// [`error_frame`] says.
    pub(crate) fn with_error_transfer(mut self, on: bool) -> Serving<H> {
        self.transfer_errors = on;
        self
    }

    /// Calls and signals admitted and not ended: running or waiting for a
    /// turn, in tasks of their own.
    pub(crate) fn in_progress(&self) -> usize {
        self.admitted
    }

    /// The result cache, for its counters.
    pub(crate) fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// A CALL `key`, for `handler` (or the error of looking it up): a
    /// repeat is answered from the cache or dropped while the first runs;
    /// else an unknown method or a full server is refused; else run.
    pub(crate) fn handle_call<T>(
        &self,
        key: &CallKey,
        handler: Result<T, RemoteError>,
    ) -> Action<T> {
        let (caller, id) = (&key.0, key.1);
        if let Some(frame) = self.cache.get(caller, id) {
            return Action::Reply(frame, Reply::Cached);
        }
        if self.running.contains_key(key) {
            return Action::Drop(Dropped::Running);
        }
        match handler {
            Err(e) => Action::Reply(error_frame(id, e, self.transfer_errors), Reply::Unknown),
            Ok(_) if self.admitted >= self.limit => {
                let e = RemoteError::builtin(
                    RemoteErrorKind::Overloaded,
                    format!("{} calls running or waiting", self.admitted),
                );
                Action::Reply(error_frame(id, e, self.transfer_errors), Reply::Overloaded)
            }
            Ok(h) => Action::Run(h),
        }
    }

    /// A SIGNAL for `handler` (or the error of looking it up): the handler
    /// to run if there is room, else why it is dropped (a signal is never
    /// answered).
    pub(crate) fn handle_signal<T>(&self, handler: Result<T, RemoteError>) -> Result<T, Dropped> {
        match handler {
            Err(_) => Err(Dropped::Unknown),
            Ok(_) if self.admitted >= self.limit => Err(Dropped::Overloaded),
            Ok(h) => Ok(h),
        }
    }

    /// Call `key`, run at once, finished with `frame`: remember it for
    /// repeats.
    pub(crate) fn handle_finished(&mut self, key: &CallKey, frame: Bytes) {
        self.cache.insert(&key.0, key.1, frame);
    }

    /// Call `key` goes on (or waits for a turn) in a task: it
    /// counts as running until [`handle_done`](Self::handle_done) or a
    /// cancel. Its stop handle may follow with
    /// [`set_call_handle`](Self::set_call_handle).
    pub(crate) fn admit_call(&mut self, key: CallKey) {
        self.admitted += 1;
        self.running.insert(key, None);
    }

    /// The handle that stops admitted call `key`.
    pub(crate) fn set_call_handle(&mut self, key: &CallKey, handle: H) {
        if let Some(slot) = self.running.get_mut(key) {
            *slot = Some(handle);
        }
    }

    /// Admitted call `key` finished with `frame`: returns whether to send
    /// it (not if the call was cancelled meanwhile: its caller is not
    /// waiting).
    pub(crate) fn handle_done(&mut self, key: &CallKey, frame: &Bytes) -> bool {
        if self.running.remove(key).is_none() {
            return false;
        }
        self.admitted -= 1;
        self.cache.insert(&key.0, key.1, frame.clone());
        true
    }

    /// A signal goes on (or waits for a turn) in a task: returns its
    /// number, for [`set_signal_handle`](Self::set_signal_handle) and
    /// [`handle_signal_done`](Self::handle_signal_done).
    pub(crate) fn admit_signal(&mut self) -> u64 {
        self.admitted += 1;
        let n = self.next_signal;
        self.next_signal += 1;
        self.signals.insert(n, None);
        n
    }

    /// The handle that stops admitted signal `n`.
    pub(crate) fn set_signal_handle(&mut self, n: u64, handle: H) {
        if let Some(slot) = self.signals.get_mut(&n) {
            *slot = Some(handle);
        }
    }

    /// Admitted signal `n` ended.
    pub(crate) fn handle_signal_done(&mut self, n: u64) {
        if self.signals.remove(&n).is_some() {
            self.admitted -= 1;
        }
    }

    /// A CANCEL of call `key`. A running call stops and is
    /// remembered as cancelled, so that a repeat does not run it again; a
    /// finished one keeps its result; one not seen yet is remembered as
    /// cancelled, so that its CALL, arriving after, does not run.
    pub(crate) fn handle_cancel(&mut self, key: &CallKey) -> Cancelled<H> {
        let (caller, id) = (&key.0, key.1);
        let transfer = self.transfer_errors;
        let marker = || {
            let e =
                RemoteError::builtin(RemoteErrorKind::Cancelled, "the caller cancelled the call");
            error_frame(id, e, transfer)
        };
        match self.running.remove(key) {
            Some(handle) => {
                self.admitted -= 1;
                self.cache.insert(caller, id, marker());
                Cancelled::Stopped(handle)
            }
            None => {
                if self.cache.get(caller, id).is_none() {
                    self.cache.insert(caller, id, marker());
                }
                Cancelled::NotRunning
            }
        }
    }

    /// Forgets every running call and signal (the server stops): their
    /// handles, to stop them.
    pub(crate) fn handle_close(&mut self) -> Vec<H> {
        self.admitted = 0;
        self.running
            .drain()
            .map(|(_, h)| h)
            .chain(self.signals.drain().map(|(_, h)| h))
            .flatten()
            .collect()
    }
}

/// How long the server gives a call: what the caller asked
/// (`deadline_ms`), at most `max_deadline`, and at most what was left of
/// the CALL message's TTL when it was written (whole seconds, rounded down,
/// so plus one): time the call spent waiting in a queue is not given twice.
pub(crate) fn call_deadline(
    deadline_ms: u32,
    ttl: Option<Duration>,
    max_deadline: Duration,
) -> Duration {
    let mut d = Duration::from_millis(u64::from(deadline_ms)).min(max_deadline);
    if let Some(ttl) = ttl {
        d = d.min(ttl + Duration::from_secs(1));
    }
    d
}

/// The RESULT frame answering call `id` with `outcome`, at most `limit`
/// bytes: a result over it becomes a [`TooLarge`](RemoteErrorKind::TooLarge)
/// error. An error goes as [`error_frame`] makes it: whole when
/// `transfer_errors`, bare (its kind only) when not; a whole error that is
/// still over the limit loses its message and context.
pub(crate) fn result_frame(
    id: u64,
    outcome: Result<Body, RemoteError>,
    limit: usize,
    transfer_errors: bool,
) -> Bytes {
    let mut error = match outcome {
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
    let frame = error_frame(id, error.clone(), transfer_errors);
    if frame.len() <= limit {
        return frame;
    }
    error.context.clear();
    error.message.truncate(0);
    wire::err_frame(id, &error)
}

/// The RESULT frame of call `id` failing with `error`: the whole error
/// when `transfer_errors`; else a bare failure, the error's
/// [kind](RemoteError::kind) with no type name, message or context, so
/// that nothing of the server's error (its type, its text, its causes, a
/// panic's message) reaches the caller.
pub(crate) fn error_frame(id: u64, error: RemoteError, transfer_errors: bool) -> Bytes {
    if transfer_errors {
        wire::err_frame(id, &error)
    } else {
        wire::err_frame(id, &RemoteError::bare(error.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frame, Outcome, REPLY_HEADROOM};

    fn peer(name: &str) -> Identity {
        Identity::new(name).unwrap()
    }

    fn serving() -> Serving<&'static str> {
        Serving::new(2, 16, 1 << 20)
    }

    fn known() -> Result<(), RemoteError> {
        Ok(())
    }

    fn error_kind(frame: &Bytes) -> RemoteErrorKind {
        match Frame::parse(frame) {
            Ok(Frame::Result(reply)) => match reply.outcome {
                Outcome::Err(e) => e.kind,
                Outcome::Ok(_) => panic!("not an error"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_call_is_answered_from_the_cache_and_not_run_twice() {
        let a = peer("a");
        let mut s = serving();
        assert_eq!(s.handle_call(&(a.clone(), 1), known()), Action::Run(()));
        s.admit_call((a.clone(), 1));
        // The repeat while it runs: dropped, the first answers.
        assert_eq!(
            s.handle_call(&(a.clone(), 1), known()),
            Action::Drop(Dropped::Running)
        );
        let result = Bytes::from_static(b"result of 1");
        assert!(s.handle_done(&(a.clone(), 1), &result));
        assert_eq!(s.in_progress(), 0);
        // The repeat after: the same frame, and no run.
        assert_eq!(
            s.handle_call(&(a.clone(), 1), known()),
            Action::Reply(result, Reply::Cached)
        );
        // Another caller's call 1 is another call.
        assert_eq!(s.handle_call(&(peer("b"), 1), known()), Action::Run(()));
    }

    #[test]
    fn a_call_run_at_once_is_remembered_too() {
        let a = peer("a");
        let mut s = serving();
        assert_eq!(s.handle_call(&(a.clone(), 5), known()), Action::Run(()));
        s.handle_finished(&(a.clone(), 5), Bytes::from_static(b"five"));
        assert_eq!(s.in_progress(), 0);
        assert_eq!(
            s.handle_call(&(a.clone(), 5), known()),
            Action::Reply(Bytes::from_static(b"five"), Reply::Cached)
        );
    }

    #[test]
    fn admission_refuses_past_the_limit_and_does_not_remember_the_refusal() {
        let a = peer("a");
        let mut s = serving();
        s.admit_call((a.clone(), 1));
        s.admit_call((a.clone(), 2));
        let Action::Reply(frame, Reply::Overloaded) = s.handle_call(&(a.clone(), 3), known())
        else {
            panic!("not refused");
        };
        assert_eq!(error_kind(&frame), RemoteErrorKind::Overloaded);
        assert_eq!(s.handle_signal(known()), Err(Dropped::Overloaded));
        // Room again: call 3, refused before, runs now.
        assert!(s.handle_done(&(a.clone(), 1), &Bytes::new()));
        assert_eq!(s.handle_call(&(a.clone(), 3), known()), Action::Run(()));
    }

    #[test]
    fn an_unknown_method_is_refused_and_not_remembered() {
        let a = peer("a");
        let s = serving();
        let missing = || Err::<(), _>(RemoteError::builtin(RemoteErrorKind::UnknownMethod, "no"));
        let Action::Reply(frame, Reply::Unknown) = s.handle_call(&(a.clone(), 1), missing()) else {
            panic!("not refused");
        };
        assert_eq!(error_kind(&frame), RemoteErrorKind::UnknownMethod);
        assert_eq!(s.handle_call(&(a.clone(), 1), known()), Action::Run(()));
        assert_eq!(s.handle_signal(missing()), Err(Dropped::Unknown));
    }

    #[test]
    fn a_cancel_stops_a_running_call_which_then_never_answers_or_runs_again() {
        let a = peer("a");
        let mut s = serving();
        s.admit_call((a.clone(), 1));
        s.set_call_handle(&(a.clone(), 1), "task 1");
        assert_eq!(
            s.handle_cancel(&(a.clone(), 1)),
            Cancelled::Stopped(Some("task 1"))
        );
        assert_eq!(s.in_progress(), 0);
        // Its task, if it still finishes, sends nothing.
        assert!(!s.handle_done(&(a.clone(), 1), &Bytes::from_static(b"late")));
        let Action::Reply(frame, Reply::Cached) = s.handle_call(&(a.clone(), 1), known()) else {
            panic!("ran again");
        };
        assert_eq!(error_kind(&frame), RemoteErrorKind::Cancelled);
    }

    #[test]
    fn a_cancel_of_a_finished_call_keeps_its_result() {
        let a = peer("a");
        let mut s = serving();
        s.handle_finished(&(a.clone(), 1), Bytes::from_static(b"done"));
        assert_eq!(s.handle_cancel(&(a.clone(), 1)), Cancelled::NotRunning);
        assert_eq!(s.in_progress(), 0);
        assert_eq!(
            s.handle_call(&(a.clone(), 1), known()),
            Action::Reply(Bytes::from_static(b"done"), Reply::Cached)
        );
    }

    #[test]
    fn a_cancel_of_an_unknown_call_stops_nothing_and_keeps_its_call_from_running() {
        let a = peer("a");
        let mut s = serving();
        s.admit_call((a.clone(), 1));
        assert_eq!(s.handle_cancel(&(a.clone(), 2)), Cancelled::NotRunning);
        assert_eq!(s.in_progress(), 1);
        // The CANCEL overtook its CALL: the CALL is answered, not run.
        let Action::Reply(frame, Reply::Cached) = s.handle_call(&(a.clone(), 2), known()) else {
            panic!("ran");
        };
        assert_eq!(error_kind(&frame), RemoteErrorKind::Cancelled);
    }

    #[test]
    fn signals_count_while_admitted_and_close_hands_back_every_handle() {
        let a = peer("a");
        let mut s = serving();
        let n = s.admit_signal();
        s.set_signal_handle(n, "signal");
        s.admit_call((a.clone(), 1));
        s.set_call_handle(&(a.clone(), 1), "call");
        assert_eq!(s.in_progress(), 2);
        let mut stopped = s.handle_close();
        stopped.sort();
        assert_eq!(stopped, ["call", "signal"]);
        assert_eq!(s.in_progress(), 0);
        s.handle_signal_done(n);
        assert_eq!(s.in_progress(), 0);
    }

    const SEC: Duration = Duration::from_secs(1);

    fn outcome(frame: &Bytes) -> Result<Vec<u8>, RemoteError> {
        match Frame::parse(frame) {
            Ok(Frame::Result(reply)) => match reply.outcome {
                Outcome::Ok(value) => Ok(value.to_vec()),
                Outcome::Err(e) => Err(e),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_call_gets_what_it_asked_within_the_cap_and_its_ttl() {
        assert_eq!(call_deadline(5_000, None, 60 * SEC), 5 * SEC);
        assert_eq!(call_deadline(120_000, None, 60 * SEC), 60 * SEC);
        // Two whole seconds of TTL left: at most three.
        assert_eq!(call_deadline(10_000, Some(2 * SEC), 60 * SEC), 3 * SEC);
        assert_eq!(call_deadline(500, Some(2 * SEC), 60 * SEC), SEC / 2);
    }

    #[test]
    fn a_result_over_the_limit_becomes_a_too_large_error() {
        let small = result_frame(1, Ok(Body::raw(REPLY_HEADROOM, b"ok")), 64, true);
        assert_eq!(outcome(&small), Ok(b"ok".to_vec()));
        let big = result_frame(2, Ok(Body::raw(REPLY_HEADROOM, &[7; 200])), 100, true);
        assert!(big.len() <= 100);
        assert_eq!(outcome(&big).unwrap_err().kind, RemoteErrorKind::TooLarge);
    }

    #[test]
    fn an_error_goes_whole_when_transferred_and_loses_its_text_when_too_long() {
        let mut e = RemoteError::new(RemoteErrorKind::Application, "app::LedgerError", "failed");
        e.context = vec!["because".to_owned()];
        let whole = outcome(&result_frame(1, Err(e.clone()), 1000, true)).unwrap_err();
        assert_eq!(whole, e);

        e.message = "x".repeat(500);
        let frame = result_frame(1, Err(e), 200, true);
        assert!(frame.len() <= 200);
        let cut = outcome(&frame).unwrap_err();
        assert_eq!(
            (cut.kind, cut.type_name.as_str(), cut.message.as_str()),
            (RemoteErrorKind::Application, "app::LedgerError", "")
        );
        assert!(cut.context.is_empty());
    }

    /// Whether any of `needles` is in the frame's bytes.
    fn carries(frame: &Bytes, needles: &[&str]) -> bool {
        needles
            .iter()
            .any(|n| frame.windows(n.len()).any(|w| w == n.as_bytes()))
    }

    #[test]
    fn without_error_transfer_an_error_goes_bare_on_the_wire() {
        let mut e = RemoteError::new(
            RemoteErrorKind::Application,
            "app::LedgerError",
            "secret ledger",
        );
        e.context = vec!["secret cause".to_owned()];
        let secrets = ["LedgerError", "secret"];
        let bare_8 = result_frame(8, Err(e.clone()), 1000, false);
        assert_eq!(
            &bare_8[..],
            [0xf7, 0x72, 0x70, 0x63, 2, 8, 1, 0, 0, 0, 0],
            "PROTOCOL.md's example"
        );
        let frame = result_frame(7, Err(e), 1000, false);
        assert!(!carries(&frame, &secrets), "{frame:?}");
        assert_eq!(
            frame,
            wire::err_frame(7, &RemoteError::bare(RemoteErrorKind::Application)),
            "the kind and nothing else"
        );
        assert_eq!(
            outcome(&frame).unwrap_err(),
            RemoteError::bare(RemoteErrorKind::Application)
        );
        let panic = RemoteError::builtin(RemoteErrorKind::Panic, "secret index out of bounds");
        let frame = result_frame(9, Err(panic), 1000, false);
        assert!(!carries(&frame, &["secret", "Panic"]));
        assert_eq!(outcome(&frame).unwrap_err().kind, RemoteErrorKind::Panic);
        let too_large = result_frame(10, Ok(Body::raw(REPLY_HEADROOM, &[7; 200])), 100, false);
        assert_eq!(
            outcome(&too_large).unwrap_err(),
            RemoteError::bare(RemoteErrorKind::TooLarge)
        );
    }

    #[test]
    fn without_error_transfer_the_cores_own_refusals_go_bare() {
        let mut serving = Serving::<&'static str>::new(1, 16, 1 << 20).with_error_transfer(false);
        let unknown = RemoteError::builtin(RemoteErrorKind::UnknownMethod, "no method secret_name");
        let Action::Reply(frame, Reply::Unknown) =
            serving.handle_call(&(peer("a"), 1), Err::<(), _>(unknown))
        else {
            panic!("an answer")
        };
        assert_eq!(
            outcome(&frame).unwrap_err(),
            RemoteError::bare(RemoteErrorKind::UnknownMethod)
        );
        serving.admit_call((peer("a"), 2));
        let Action::Reply(frame, Reply::Overloaded) = serving.handle_call(&(peer("a"), 3), known())
        else {
            panic!("overloaded")
        };
        assert_eq!(
            outcome(&frame).unwrap_err(),
            RemoteError::bare(RemoteErrorKind::Overloaded)
        );
        serving.handle_cancel(&(peer("a"), 4));
        let Action::Reply(frame, Reply::Cached) = serving.handle_call(&(peer("a"), 4), known())
        else {
            panic!("the cancel marker")
        };
        assert_eq!(
            outcome(&frame).unwrap_err(),
            RemoteError::bare(RemoteErrorKind::Cancelled)
        );
    }
}
