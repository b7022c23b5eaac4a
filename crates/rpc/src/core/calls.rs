//! The caller's table of calls waiting for their result: which to send
//! again after a reconnect, which a result answers, which a deadline or a
//! cancel gives up. No I/O, no clock: `now` comes from the shell.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_messaging::Identity;

use crate::wire;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The shortest TTL a CANCEL sent on close gets: messaging counts TTLs in
/// whole seconds, and a CANCEL that expires in the queue is no CANCEL.
const MIN_CANCEL_TTL: Duration = Duration::from_secs(1);

/// A call to start: what [`Calls::start`] takes.
#[derive(Debug)]
pub(crate) struct NewCall {
    /// The call's id, unique among this caller's calls.
    pub(crate) id: u64,
    /// The peer called.
    pub(crate) to: Identity,
    /// The CALL frame, kept to send again after a reconnect.
    pub(crate) frame: Bytes,
    /// When the caller stops waiting.
    pub(crate) deadline: Instant,
    /// The whole timeout: the TTL of the CANCEL sent when the call is
    /// given up.
    pub(crate) timeout: Duration,
    /// Whether `to` is connected as the call is sent: then the frame may
    /// leave on a connection that breaks, and is sent again after the next
    /// reconnect. Otherwise it waits in messaging's queue and leaves when
    /// `to` first connects.
    pub(crate) connected: bool,
}

/// Why a frame is to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransmitKind {
    /// A CALL sent again after its peer reconnected.
    Resend,
    /// A CANCEL for a call given up.
    Cancel,
}

/// A frame the shell must send: from [`Calls::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transmit {
    /// The peer to send it to.
    pub(crate) to: Identity,
    /// The RPC frame.
    pub(crate) frame: Bytes,
    /// How long it may wait in messaging's queue.
    pub(crate) ttl: Duration,
    /// What it is, for the shell's counters.
    pub(crate) kind: TransmitKind,
}

/// What became of a call whose caller must be told: from
/// [`Calls::poll_event`]. The waiter is handed back to complete.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CallEvent<W> {
    /// No result came by the deadline; a CANCEL is queued.
    TimedOut {
        /// The call's id.
        id: u64,
        /// Its whole timeout, as the caller set it.
        timeout: Duration,
        /// The caller's waiter.
        waiter: W,
    },
    /// The table was closed with the call waiting; a CANCEL is queued.
    Closed {
        /// The call's id.
        id: u64,
        /// The caller's waiter.
        waiter: W,
    },
}

/// One call waiting for its result.
#[derive(Debug)]
struct Call<W> {
    to: Identity,
    frame: Bytes,
    deadline: Instant,
    timeout: Duration,
    /// Send again when `to` reconnects.
    resend: bool,
    waiter: W,
}

/// Calls waiting for their result, by id, each with the shell's waiter
/// `W` (whatever wakes the caller: the tokio shell keeps a oneshot
/// sender).
///
/// Input: [`start`](Self::start), [`handle_result`](Self::handle_result),
/// [`handle_connected`](Self::handle_connected),
/// [`handle_cancel`](Self::handle_cancel),
/// [`handle_timeout`](Self::handle_timeout),
/// [`handle_close`](Self::handle_close). Output, to drain after each input:
/// [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
/// and [`poll_timeout`](Self::poll_timeout) for the next deadline.
#[derive(Debug)]
pub(crate) struct Calls<W> {
    calls: FastMap<u64, Call<W>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<CallEvent<W>>,
}

impl<W> Default for Calls<W> {
    fn default() -> Self {
        Calls {
            calls: FastMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }
}

impl<W> Calls<W> {
    /// An empty table.
    pub(crate) fn new() -> Calls<W> {
        Calls::default()
    }

    /// Calls waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Adds a call the shell is sending now; `waiter` comes back with its
    /// result, timeout or close. An id already waiting is replaced (ids
    /// are the shell's to keep unique).
    pub(crate) fn start(&mut self, call: NewCall, waiter: W) {
        self.calls.insert(
            call.id,
            Call {
                to: call.to,
                frame: call.frame,
                deadline: call.deadline,
                timeout: call.timeout,
                resend: call.connected,
                waiter,
            },
        );
    }

    /// Call `id` was never sent (messaging refused its CALL): drops it,
    /// with no CANCEL. Returns its waiter.
    pub(crate) fn forget(&mut self, id: u64) -> Option<W> {
        self.calls.remove(&id).map(|c| c.waiter)
    }

    /// A result (or a frame that fails the call) for call `id` came from
    /// `from`: the waiter to complete, if `id` waits for an answer from
    /// `from`. A result for no waiting call, or from another peer, changes
    /// nothing.
    pub(crate) fn handle_result(&mut self, from: &Identity, id: u64) -> Option<W> {
        match self.calls.get(&id) {
            Some(call) if call.to == *from => self.calls.remove(&id).map(|c| c.waiter),
            _ => None,
        }
    }

    /// `peer` (re)connected at `now`: every call to it that may have gone
    /// out on the connection that broke and is not past its deadline is
    /// queued to be sent again (with what is left of its time as TTL).
    /// Calls still in messaging's queue leave on this connection by
    /// themselves; from now on all calls to `peer` count as sent.
    pub(crate) fn handle_connected(&mut self, peer: &Identity, now: Instant) {
        for call in self.calls.values_mut() {
            if call.to != *peer {
                continue;
            }
            if call.resend && call.deadline > now {
                self.transmits.push_back(Transmit {
                    to: call.to.clone(),
                    frame: call.frame.clone(),
                    ttl: call.deadline - now,
                    kind: TransmitKind::Resend,
                });
            }
            call.resend = true;
        }
    }

    /// The caller gave call `id` up (dropped it): a CANCEL is queued for
    /// the server. Returns whether the call was waiting; a call unknown or
    /// already answered changes nothing.
    pub(crate) fn handle_cancel(&mut self, id: u64) -> bool {
        let Some(call) = self.calls.remove(&id) else {
            return false;
        };
        self.transmits.push_back(cancel(id, call.to, call.timeout));
        true
    }

    /// Gives up every call whose deadline is `now` or earlier: each gets a
    /// [`CallEvent::TimedOut`] and a queued CANCEL. Calls with later
    /// deadlines are untouched.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(call) = self.calls.remove(&id) {
                self.transmits.push_back(cancel(id, call.to, call.timeout));
                self.events.push_back(CallEvent::TimedOut {
                    id,
                    timeout: call.timeout,
                    waiter: call.waiter,
                });
            }
        }
    }

    /// Gives up every call at `now` (the instance closes): each gets a
    /// [`CallEvent::Closed`] and a queued CANCEL whose TTL is what was left
    /// of its time, at least a second.
    pub(crate) fn handle_close(&mut self, now: Instant) {
        for (id, call) in self.calls.drain() {
            let ttl = call
                .deadline
                .saturating_duration_since(now)
                .max(MIN_CANCEL_TTL);
            self.transmits.push_back(cancel(id, call.to, ttl));
            self.events.push_back(CallEvent::Closed {
                id,
                waiter: call.waiter,
            });
        }
    }

    /// The next frame to send, oldest first.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next call whose caller must be told, oldest first.
    pub(crate) fn poll_event(&mut self) -> Option<CallEvent<W>> {
        self.events.pop_front()
    }

    /// The earliest deadline of a waiting call: when to call
    /// [`handle_timeout`](Self::handle_timeout) next. A scan of the table,
    /// for shells that drive deadlines from one timer.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the tokio shell times each call in its caller's future"
        )
    )]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.calls.values().map(|c| c.deadline).min()
    }
}

fn cancel(id: u64, to: Identity, ttl: Duration) -> Transmit {
    Transmit {
        to,
        frame: wire::cancel_frame(id),
        ttl,
        kind: TransmitKind::Cancel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> Identity {
        Identity::new(name).unwrap()
    }

    fn call(id: u64, to: &Identity, at: Instant, timeout: Duration, connected: bool) -> NewCall {
        NewCall {
            id,
            to: to.clone(),
            frame: Bytes::from(format!("call {id}")),
            deadline: at + timeout,
            timeout,
            connected,
        }
    }

    fn transmits<W>(calls: &mut Calls<W>) -> Vec<Transmit> {
        std::iter::from_fn(|| calls.poll_transmit()).collect()
    }

    fn events<W>(calls: &mut Calls<W>) -> Vec<CallEvent<W>> {
        std::iter::from_fn(|| calls.poll_event()).collect()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_deadline_fires_at_its_instant_and_not_before() {
        let t0 = Instant::now();
        let server = peer("server");
        let mut calls = Calls::new();
        calls.start(call(1, &server, t0, 5 * SEC, true), "one");
        calls.start(call(2, &server, t0, 7 * SEC, true), "two");
        assert_eq!(calls.poll_timeout(), Some(t0 + 5 * SEC));

        calls.handle_timeout(t0 + 5 * SEC - Duration::from_nanos(1));
        assert!(events(&mut calls).is_empty());
        assert!(transmits(&mut calls).is_empty());

        calls.handle_timeout(t0 + 5 * SEC);
        assert_eq!(
            events(&mut calls),
            [CallEvent::TimedOut {
                id: 1,
                timeout: 5 * SEC,
                waiter: "one"
            }]
        );
        assert_eq!(
            transmits(&mut calls),
            [Transmit {
                to: server.clone(),
                frame: wire::cancel_frame(1),
                ttl: 5 * SEC,
                kind: TransmitKind::Cancel,
            }]
        );
        assert_eq!(calls.poll_timeout(), Some(t0 + 7 * SEC));
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn a_reconnect_resends_exactly_the_unanswered_calls_to_that_peer() {
        let t0 = Instant::now();
        let (a, b) = (peer("a"), peer("b"));
        let mut calls = Calls::new();
        calls.start(call(1, &a, t0, 10 * SEC, true), 1);
        calls.start(call(2, &a, t0, 10 * SEC, true), 2);
        calls.start(call(3, &a, t0, 2 * SEC, true), 3);
        calls.start(call(4, &b, t0, 10 * SEC, true), 4);
        assert_eq!(calls.handle_result(&a, 2), Some(2));

        calls.handle_connected(&a, t0 + 3 * SEC);
        let sent = transmits(&mut calls);
        // 2 was answered, 3 is past its deadline, 4 is for another peer.
        assert_eq!(
            sent,
            [Transmit {
                to: a.clone(),
                frame: Bytes::from("call 1"),
                ttl: 7 * SEC,
                kind: TransmitKind::Resend,
            }]
        );
    }

    #[test]
    fn a_call_queued_while_disconnected_is_not_sent_twice_on_first_connect() {
        let t0 = Instant::now();
        let a = peer("a");
        let mut calls = Calls::new();
        calls.start(call(1, &a, t0, 10 * SEC, false), ());
        // The first connect carries it out of messaging's queue.
        calls.handle_connected(&a, t0 + SEC);
        assert!(transmits(&mut calls).is_empty());
        // That connection may break with it: the next connect resends.
        calls.handle_connected(&a, t0 + 2 * SEC);
        assert_eq!(transmits(&mut calls).len(), 1);
    }

    #[test]
    fn a_result_from_another_peer_or_for_no_call_changes_nothing() {
        let t0 = Instant::now();
        let (a, b) = (peer("a"), peer("b"));
        let mut calls = Calls::new();
        calls.start(call(1, &a, t0, SEC, true), "w");
        assert_eq!(calls.handle_result(&b, 1), None);
        assert_eq!(calls.handle_result(&a, 9), None);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls.handle_result(&a, 1), Some("w"));
        assert_eq!(calls.handle_result(&a, 1), None);
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn cancelling_a_waiting_call_queues_one_cancel() {
        let t0 = Instant::now();
        let a = peer("a");
        let mut calls = Calls::new();
        calls.start(call(1, &a, t0, 3 * SEC, true), ());
        assert!(calls.handle_cancel(1));
        let sent = transmits(&mut calls);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].frame, wire::cancel_frame(1));
        assert_eq!(sent[0].ttl, 3 * SEC);
        assert_eq!(calls.poll_timeout(), None);
    }

    #[test]
    fn cancelling_an_unknown_or_answered_call_is_a_no_op() {
        let t0 = Instant::now();
        let a = peer("a");
        let mut calls = Calls::new();
        calls.start(call(1, &a, t0, SEC, true), ());
        assert_eq!(calls.handle_result(&a, 1), Some(()));
        assert!(!calls.handle_cancel(1));
        assert!(!calls.handle_cancel(7));
        assert!(transmits(&mut calls).is_empty());
        // And an answered call never times out.
        calls.handle_timeout(t0 + 10 * SEC);
        assert!(events(&mut calls).is_empty());
    }

    #[test]
    fn closing_gives_every_call_up_with_a_cancel() {
        let t0 = Instant::now();
        let (a, b) = (peer("a"), peer("b"));
        let mut calls = Calls::new();
        calls.start(call(1, &a, t0, 10 * SEC, true), 1);
        calls.start(call(2, &b, t0, SEC, true), 2);
        calls.handle_close(t0 + 4 * SEC);
        let mut sent = transmits(&mut calls);
        sent.sort_by_key(|t| t.to.as_str().to_owned());
        assert_eq!(
            sent.iter()
                .map(|t| (t.to.clone(), t.ttl))
                .collect::<Vec<_>>(),
            [(a, 6 * SEC), (b, SEC)]
        );
        let mut closed: Vec<u64> = events(&mut calls)
            .into_iter()
            .map(|e| match e {
                CallEvent::Closed { id, waiter } => {
                    assert_eq!(id, waiter);
                    id
                }
                other => panic!("{other:?}"),
            })
            .collect();
        closed.sort();
        assert_eq!(closed, [1, 2]);
        assert_eq!(calls.len(), 0);
    }
}
