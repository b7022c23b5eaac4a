//! The messaging protocol as a state machine, free of I/O.
//!
//! The shell feeds it connections (with what is known of each, as plain
//! [`ConnFacts`]), packets, disconnections, sends, room on a blocked
//! connection and the time (`handle_*`, always with `now`). It answers
//! with what the shell takes from it (`poll_*`): events, connections to
//! end ([`Close`]), connections to wait for. Frames are the one output it
//! pushes itself, through each connection's [`Transmit`] (a non-blocking
//! queue push that may answer "full"), at the moment it decides them, so
//! that a frame is copied once, into the connection's send queue. Tests
//! drive it with a fake transmitter and chosen instants.
//!
//! The shell's I/O task drives it in a loop, under the shell's lock:
//!
//! ```text
//! loop {
//!     wait for packets, the time core.poll_timeout() names, a wake-up,
//!         or a blocked connection that has room again
//!     packets   -> core.handle_connected_with(conn, tx, facts, now)
//!                  core.handle_packet(conn, packet, now)
//!                  core.handle_disconnected(conn)
//!                  then core.handle_batch_end(now)    (acks due now leave)
//!     the time  -> core.handle_timeout(now)
//!     room      -> core.handle_writable(conn, now)
//!     then      -> core.poll_blocked()     wait for each connection's room
//!                  core.poll_close()       close or abort connections
//!                  core.poll_events(..)    hand events to queues, handlers
//!                  core.poll_progress()    wake `flush` waiters
//! }
//! ```
//!
//! Senders call [`Core::send_message`] from their own tasks (with
//! [`Core::reusable_now`] or the clock's time) and wake the I/O task when
//! [`Core::poll_wake`] says it must run.
//!
//! Here: [`Core`], its events and timeouts. A connection's handshake, the
//! acknowledgements owed to it and its keep-alive are in [`conn`]; what a
//! datagram connection does when its peer restarts, in [`datagram`]; each
//! peer's queue, from waiting to delivered, in [`peer_queue`]; its data
//! lane, in [`lanes`]. Pub/sub
//! bookkeeping, which the shell keeps under a lock of its own, is in
//! [`topics`].
//!
//! Delivery: to a weft peer that offered acks, a message is delivered when
//! the peer acknowledges it (a cumulative count of MESSAGE frames on the
//! connection); unacknowledged messages go back to the front of the queue
//! when the connection drops and are sent again as RESENT frames, and the
//! receiver checks those (only those) against its window of received ids.
//! To any other peer (snakeMQ has no acks) a message is delivered once its
//! bytes were written to the socket; what was not written is sent again,
//! so without acks a message can only be lost with the connection, never
//! arrive twice, and nothing needs checking.

// Arithmetic on what a peer sends (TTLs, counts) must never panic: each
// operation is checked or saturating, or allowed where it is provably in
// range, with the reason beside it.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_link::{ConnectionId, ConnectorId};

use crate::certificate::CertificateNames;
use crate::dedupe::DedupeWindow;
use crate::error::{Misuse, ProtocolError};
use crate::frame::{FilterKind, Frame, MESSAGE_HEAD_LEN, PROTOCOL_VERSION};
use crate::storage::SeenId;
use crate::{Identity, Lane, Message, MessageId, MessagingConfig, MessagingError};

mod conn;
mod datagram;
mod lanes;
mod peer_queue;
mod seen;
mod topics;

use conn::Conn;
pub(crate) use peer_queue::Entry;
use peer_queue::Peer;
pub(crate) use topics::Topics;

/// Maps keyed by identity or connection: hashed with a per-process random
/// seed (identities come from the network), faster than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A connection's send queue, as the core sees it: where its frames go,
/// and how far writing got.
pub(crate) trait Transmit: Clone {
    /// Queues one packet made of `head` and `body` without waiting.
    /// [`TxError::Full`] is back-pressure: the frame stays with the core
    /// until the shell reports room with
    /// [`handle_writable`](Core::handle_writable).
    fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError>;
    /// Bytes written to the socket, counted as the core counts what it
    /// queued (see [`ConnFacts::overhead`]).
    fn bytes_written(&self) -> u64;
}

/// What the shell knows of a connection when it comes up, given to the
/// core as plain data.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnFacts {
    /// Each packet is a datagram (UDP): the connection has no end a
    /// restarted peer would close (see [`datagram`]).
    pub(crate) datagram: bool,
    /// The connector that made the connection, when we dialled it.
    pub(crate) connector: Option<ConnectorId>,
    /// One of our listeners accepted it (it was not dialled, adopted or
    /// opened as a lane).
    pub(crate) inbound: bool,
    /// Bytes the transport adds to each packet (a length prefix), so that
    /// the core's count of bytes queued matches the transport's count of
    /// bytes written.
    pub(crate) overhead: u64,
    /// The names of the certificate the peer presented and the TLS
    /// handshake verified; `None` without one.
    pub(crate) certificate: Option<Arc<CertificateNames>>,
    /// Lanes can be opened beside the connection (see [`lanes`]).
    pub(crate) lanes: bool,
    /// The connection is a lane of this one.
    pub(crate) lane_of: Option<ConnectionId>,
}

/// How the core wants a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Gracefully: what is queued on it still goes out.
    Close,
    /// At once, dropping what is queued: for a peer that stopped
    /// answering, whose queue would only delay the end (and the switch to
    /// another path) by the link's close timeout.
    Abort,
}

/// A connection the core gave up on, for the shell to end.
#[derive(Debug)]
pub(crate) struct Close<T> {
    pub(crate) conn: ConnectionId,
    pub(crate) tx: T,
    pub(crate) how: Ending,
}

/// Why a transmit failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxError {
    /// No room now; wait for the connection to be ready.
    Full,
    /// The connection is gone.
    Closed,
}

/// What the shell acts on.
#[derive(Debug)]
pub(crate) enum CoreEvent {
    /// A peer finished its handshake.
    Connected { ident: Identity },
    /// A peer's connection ended.
    Disconnected { ident: Identity },
    /// Two connections with a peer crossed (each side dialled the other)
    /// and the one this connector made is the redundant one: the connector
    /// may rest while the peer stays connected.
    Redundant {
        ident: Identity,
        connector: ConnectorId,
    },
    /// A message arrived (or was sent to ourselves).
    Message { from: Identity, message: Message },
    /// A persistent message is settled (delivered, expired or dropped:
    /// the counters say which): storage may forget it. Not emitted for
    /// messages that were never stored.
    Settled { id: MessageId },
    /// A peer broke the protocol; its connection was closed.
    ProtocolError {
        ident: Option<Identity>,
        error: ProtocolError,
    },
    /// A weft peer subscribed to topics.
    Subscribe {
        from: Identity,
        kind: FilterKind,
        filter: String,
    },
    /// A weft peer unsubscribed.
    Unsubscribe {
        from: Identity,
        kind: FilterKind,
        filter: String,
    },
}

/// Counters, read under the shell's lock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) delivered: u64,
    pub(crate) acked: u64,
    pub(crate) expired: u64,
    pub(crate) dropped: u64,
    pub(crate) resent: u64,
    pub(crate) duplicates: u64,
    pub(crate) protocol_errors: u64,
    pub(crate) handshake_timeouts: u64,
    pub(crate) unidentified_evicted: u64,
    /// SUBSCRIBE filters refused before they reach the topics (too long).
    pub(crate) filters_refused: u64,
    /// Identities refused because the table of identities was full.
    pub(crate) identities_refused: u64,
    /// Identities refused because the connection's certificate does not
    /// bind them.
    pub(crate) identities_unbound: u64,
    /// Times the bound on queued bytes across all identities bit.
    pub(crate) all_queues_full: u64,
    /// Payload bytes queued for all identities together (a gauge).
    pub(crate) queued_bytes: usize,
}

pub(crate) struct Core<T> {
    me: Identity,
    config: MessagingConfig,
    conns: HashMap<ConnectionId, Conn<T>>,
    peers: HashMap<Identity, Peer>,
    dedupe: DedupeWindow,
    /// Secret keys that make each sender's salt for the dedupe window.
    sender_keys: (std::hash::RandomState, std::hash::RandomState),
    events: VecDeque<CoreEvent>,
    blocked: Vec<(ConnectionId, T)>,
    /// Connections to end, oldest first.
    closing: VecDeque<Close<T>>,
    /// Connections in their handshake, oldest first (with some that since
    /// identified or ended, dropped when they reach the front).
    unidentified: VecDeque<ConnectionId>,
    /// How many connections are open and not identified.
    unidentified_count: usize,
    /// Connections marked as stand-ins before they reached the core,
    /// oldest first, at most [`STANDBY_PENDING`].
    standby_pending: VecDeque<ConnectionId>,
    next_sweep: Option<Instant>,
    /// Something happened that may make `poll_timeout` earlier.
    timer_moved: bool,
    /// A message was settled since the shell last asked.
    progress: bool,
    /// When to check which writes to peers without acks have completed.
    next_write_check: Option<Instant>,
    /// The most data a message to a peer may carry (the packet limit less
    /// the MESSAGE head).
    max_data: usize,
    /// The latest time the shell gave with a packet, a batch's end or a
    /// timeout.
    last_now: Instant,
    /// With a store: ids of messages received from peers with acks, for
    /// the shell to record before they are acknowledged (see [`seen`]).
    seen_log: Option<Vec<SeenId>>,
    /// Connections to open a lane beside, for the shell (see [`lanes`]).
    lanes_wanted: Vec<ConnectionId>,
    pub(crate) counters: Counters,
}

/// `t + d`; for a `d` too long for an `Instant` (a TTL of `u64::MAX`
/// seconds, say), a time decades ahead, which never comes in practice.
/// Durations from input and configuration go through here, never `+`.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d).or_else(|| t.checked_add(FAR)).unwrap_or(t)
}

/// What a sender's message ids are mixed with before they go into the
/// dedupe window, so that the window tells senders apart at the cost of
/// one XOR per message, with no lookup: ids are random, and a peer cannot
/// make its ids collide with another's without the secret keys the salts
/// come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SenderSalt(u128);

impl SenderSalt {
    /// The key `id` is remembered under for this sender.
    #[inline]
    fn apply(self, id: MessageId) -> MessageId {
        MessageId((u128::from_ne_bytes(id.0) ^ self.0).to_ne_bytes())
    }
}

/// Why the core refused a message: nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The identity's queue is full and the policy does not make room.
    QueueFull,
    /// The queues of all identities together hold
    /// [`MessagingConfig::max_total_queue_bytes`].
    AllQueuesFull,
    /// Its MESSAGE frame would not fit in a packet: it could never leave.
    TooLarge { size: usize, max: usize },
}

impl Refused {
    /// The caller's error for a message to `to`.
    pub(crate) fn into_error(self, to: &Identity) -> MessagingError {
        match self {
            Refused::QueueFull => MessagingError::QueueFull(to.clone()),
            Refused::AllQueuesFull => MessagingError::AllQueuesFull,
            Refused::TooLarge { size, max } => Misuse::MessageTooLarge { size, max }.into(),
        }
    }
}

/// The most data a MESSAGE frame carries within the packet limit.
pub(crate) fn max_message_data(config: &MessagingConfig) -> usize {
    config.packeter.max_packet.saturating_sub(MESSAGE_HEAD_LEN)
}

/// Refuses `message` when it could never be sent under `config`.
pub(crate) fn check_size(config: &MessagingConfig, message: &Message) -> Result<(), Refused> {
    let max = max_message_data(config);
    let size = message.data.len();
    if size > max {
        return Err(Refused::TooLarge { size, max });
    }
    Ok(())
}

/// How often unconfirmed writes to peers without acks are checked.
const WRITE_CHECK: Duration = Duration::from_millis(5);

/// Unacknowledged messages from a peer that make a receiver send ACK at
/// once, without waiting for [`MessagingConfig::ack_delay`].
pub(crate) const ACK_EVERY: u64 = 256;

/// Connections marked as stand-ins before they reach the core that are
/// remembered; a mark is made just after the connection is adopted, so
/// only marks of connections that failed before connecting age out.
const STANDBY_PENDING: usize = 64;

impl<T: Transmit> Core<T> {
    /// A core for identity `me`, started at `now`.
    pub(crate) fn new(me: Identity, config: MessagingConfig, now: Instant) -> Core<T> {
        Core {
            dedupe: DedupeWindow::new(config.dedupe_window),
            max_data: max_message_data(&config),
            sender_keys: Default::default(),
            me,
            config,
            conns: HashMap::default(),
            peers: HashMap::default(),
            events: VecDeque::new(),
            blocked: Vec::new(),
            closing: VecDeque::new(),
            unidentified: VecDeque::new(),
            unidentified_count: 0,
            standby_pending: VecDeque::new(),
            next_sweep: None,
            timer_moved: false,
            progress: false,
            next_write_check: None,
            last_now: now,
            seen_log: None,
            lanes_wanted: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Closes `conn` for breaking the protocol. From here on nothing it
    /// sent is acted on, also what was read with the frame that broke it.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    fn fail(&mut self, conn: ConnectionId, error: ProtocolError) {
        self.fail_claiming(conn, None, error);
    }

    /// [`fail`](Self::fail), reporting the error under `claimed` when the
    /// connection has no identity yet: the identity it announced and was
    /// refused.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "a counter grows by one per failed connection (u64 never wraps)"
    )]
    fn fail_claiming(
        &mut self,
        conn: ConnectionId,
        claimed: Option<Identity>,
        error: ProtocolError,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.failed {
            return;
        }
        if c.unidentified() {
            self.unidentified_count = self.unidentified_count.saturating_sub(1);
        }
        c.failed = true;
        let how = if matches!(error, ProtocolError::KeepaliveTimeout) {
            Ending::Abort
        } else {
            Ending::Close
        };
        self.closing.push_back(Close {
            conn,
            tx: c.tx.clone(),
            how,
        });
        self.counters.protocol_errors += 1;
        let ident = c.ident.clone().or(claimed);
        tracing::debug!(%conn, ?ident, %error, "protocol error");
        self.events
            .push_back(CoreEvent::ProtocolError { ident, error });
    }

    /// `ident`'s salt for the dedupe window: a keyed hash of the name,
    /// worked out once per connection, when the peer identifies itself.
    fn sender_salt(&self, ident: &Identity) -> SenderSalt {
        use std::hash::BuildHasher;
        let high = self.sender_keys.0.hash_one(ident.as_str());
        let low = self.sender_keys.1.hash_one(ident.as_str());
        SenderSalt((u128::from(high) << 64) | u128::from(low))
    }

    /// A time [`send_message`](Self::send_message) may be given for
    /// `message` instead of the clock's: the latest time the shell gave the
    /// core. `None` when the current time is needed, that is when the
    /// message or any queued message has a TTL; otherwise the time only
    /// schedules the next write check, and a time in the past only makes
    /// that check run early. Spares a sender a clock read per message.
    pub(crate) fn reusable_now(&self, message: &Message) -> Option<Instant> {
        if message.ttl.is_some() || self.next_sweep.is_some() {
            None
        } else {
            Some(self.last_now)
        }
    }

    /// One packet from a connection.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(crate) fn handle_packet(&mut self, conn_id: ConnectionId, packet: Bytes, now: Instant) {
        self.last_now = now;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.failed {
            return;
        }
        conn.last_recv = now;
        conn.ping_sent = None;
        let frame = match Frame::parse(packet) {
            Ok(f) => f,
            Err(e) => return self.fail(conn_id, ProtocolError::Frame(e)),
        };
        match frame {
            Frame::Version(v) if v != PROTOCOL_VERSION => {
                let _ = conn.send_frame(&Frame::Incompatible);
                self.fail(conn_id, ProtocolError::IncompatibleVersion(v));
            }
            Frame::Version(_) if conn.ident.is_some() => self.handle_version_again(conn_id, now),
            Frame::Version(_) | Frame::Pong | Frame::Unknown(_) => {}
            Frame::Incompatible => self.fail(conn_id, ProtocolError::PeerRejectedVersion),
            Frame::Ping => {
                // Always answered: snakeMQ's loop fails on an unanswered PING.
                let _ = conn.send_frame(&Frame::Pong);
            }
            Frame::Hello { capabilities, .. } => {
                if conn.ident.is_none() {
                    conn.weft = Some(capabilities);
                }
            }
            Frame::Ident(ident) => self.handle_ident(conn_id, ident, now),
            Frame::Message {
                id,
                ttl,
                flags,
                data,
                resent,
            } => {
                let Some(from) = conn.ident.clone() else {
                    if conn.datagram {
                        // A restarted listener's old peer: our greeting
                        // asked it to identify again (see `datagram`).
                        tracing::debug!(conn = %conn_id, "MESSAGE before IDENT on a datagram connection: dropped");
                        return;
                    }
                    return self.fail(conn_id, ProtocolError::MessageBeforeIdent);
                };
                conn.received += 1;
                self.counters.received += 1;
                if conn.acks {
                    // Ids are remembered per sender: the same id from
                    // another peer is another message.
                    let id = conn.sender_salt.apply(id);
                    if resent {
                        if !self.dedupe.check_and_record(id) {
                            self.counters.duplicates += 1;
                            return;
                        }
                    } else {
                        self.dedupe.record(id);
                    }
                }
                if conn.acks
                    && let Some(log) = &mut self.seen_log
                {
                    log.push(SeenId {
                        from: from.clone(),
                        id,
                    });
                }
                let message = Message {
                    id,
                    data,
                    ttl: ttl.map(|s| Duration::from_secs(u64::from(s))),
                    flags,
                };
                self.events.push_back(CoreEvent::Message { from, message });
            }
            Frame::Ack(count) => {
                if let Some(ident) = conn.ident.clone() {
                    let lane = conn.lane();
                    // Acks of a lane count what was sent on it: only while
                    // it is the lane the peer's data goes on.
                    let current = self
                        .peers
                        .get(&ident)
                        .and_then(|p| p.lane(lane))
                        .is_some_and(|p| p.conn == Some(conn_id));
                    if current {
                        self.handle_ack(&ident, lane, count);
                    }
                }
            }
            Frame::Subscribe(kind, filter) => {
                if filter.len() > topics::MAX_REMOTE_FILTER {
                    // Longer than any topic: refused here, before it waits
                    // in the events.
                    self.counters.filters_refused += 1;
                    return;
                }
                if let Some(from) = conn.ident.clone() {
                    self.events
                        .push_back(CoreEvent::Subscribe { from, kind, filter });
                }
            }
            Frame::Unsubscribe(kind, filter) => {
                if let Some(from) = conn.ident.clone() {
                    self.events
                        .push_back(CoreEvent::Unsubscribe { from, kind, filter });
                }
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.expire_handshakes(now);
        if let Some(interval) = self.config.keepalive_interval {
            let wait = self.config.keepalive_wait;
            let mut dead = Vec::new();
            for (id, conn) in &mut self.conns {
                if conn.failed {
                    continue;
                }
                match conn.ping_sent {
                    Some(sent) if now.saturating_duration_since(sent) >= wait => dead.push(*id),
                    Some(_) => {}
                    None if now.saturating_duration_since(conn.last_recv) >= interval => {
                        conn.ping_sent = Some(now);
                        let _ = conn.send_frame(&Frame::Ping);
                    }
                    None => {}
                }
            }
            for id in dead {
                self.fail(id, ProtocolError::KeepaliveTimeout);
            }
        }
        let retry = later(now, self.config.ack_delay.max(Duration::from_millis(1)));
        for conn in self.conns.values_mut() {
            if conn.ack_due.is_some_and(|due| now >= due) && !conn.send_ack() {
                // No room: try again later (or with the next message).
                conn.ack_due = Some(retry);
            }
        }
        if self.next_sweep.is_some_and(|t| now >= t) {
            self.sweep(now);
            let more = self
                .peers
                .values()
                .any(|p| p.queue.iter().any(|e| e.deadline.is_some()));
            self.next_sweep = more.then(|| later(now, self.config.ttl_sweep));
        }
        if self.next_write_check.is_some_and(|t| now >= t) {
            let unconfirmed: Vec<(Identity, Lane, T)> = self
                .peers
                .iter()
                .flat_map(|(ident, p)| {
                    [Lane::Control, Lane::Data]
                        .into_iter()
                        .filter_map(move |lane| Some((ident, lane, p.lane(lane)?)))
                })
                .filter(|(_, _, p)| !p.acked_mode && !p.inflight.is_empty())
                .filter_map(|(ident, lane, p)| {
                    let conn = self.conns.get(&p.conn?)?;
                    Some((ident.clone(), lane, conn.tx.clone()))
                })
                .collect();
            for (ident, lane, tx) in unconfirmed {
                self.confirm_writes(&ident, lane, &tx);
            }
            let waits = |p: &Peer| !p.acked_mode && p.conn.is_some() && !p.inflight.is_empty();
            let more = self
                .peers
                .values()
                .any(|p| waits(p) || p.data.as_deref().is_some_and(waits));
            self.next_write_check = more.then(|| later(now, WRITE_CHECK));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    /// The task that drives the core arms its timer with this, so a move
    /// made before it is accounted for: [`poll_wake`](Self::poll_wake)
    /// does not wake that task for it again.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        self.timer_moved = false;
        let mut next = self.next_sweep;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = self.handshake_deadline() {
            earliest(t);
        }
        for conn in self.conns.values() {
            if conn.failed {
                continue;
            }
            if let Some(interval) = self.config.keepalive_interval {
                earliest(match conn.ping_sent {
                    Some(sent) => later(sent, self.config.keepalive_wait),
                    None => later(conn.last_recv, interval),
                });
            }
            if let Some(due) = conn.ack_due {
                earliest(due);
            }
        }
        if let Some(t) = self.next_write_check {
            earliest(t);
        }
        next
    }

    /// Whether a message was settled since the last call (for the shell's
    /// `flush` waiters).
    pub(crate) fn poll_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    /// Whether the task that drives the core must be woken, after a call
    /// made from another task: events to dispatch, connections to wait
    /// for, or a [`poll_timeout`](Self::poll_timeout) that moved. Clears
    /// the last.
    pub(crate) fn poll_wake(&mut self) -> bool {
        let moved = std::mem::take(&mut self.timer_moved);
        moved
            || !self.events.is_empty()
            || !self.blocked.is_empty()
            || !self.closing.is_empty()
            || !self.lanes_wanted.is_empty()
    }

    /// The next connection to end, oldest first.
    pub(crate) fn poll_close(&mut self) -> Option<Close<T>> {
        self.closing.pop_front()
    }

    /// The next event, oldest first.
    #[cfg(test)]
    pub(crate) fn poll_event(&mut self) -> Option<CoreEvent> {
        self.events.pop_front()
    }

    /// Every event so far, oldest first, swapped for `into` (which must be
    /// empty): the shell drains a whole turn's events at once, and neither
    /// list is copied nor reallocated.
    pub(crate) fn poll_events(&mut self, into: &mut VecDeque<CoreEvent>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.events, into);
    }

    /// Identities whose handshake finished.
    pub(crate) fn connected(&self) -> Vec<Identity> {
        self.peers
            .iter()
            .filter(|(_, p)| p.conn.is_some())
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// Marks a connection as a stand-in path (a relay): another
    /// connection of the same identity replaces it, and it never replaces
    /// another. Works before the connection reaches the core too.
    pub(crate) fn mark_standby(&mut self, conn: ConnectionId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.standby = true;
            return;
        }
        if self.standby_pending.len() >= STANDBY_PENDING {
            self.standby_pending.pop_front();
        }
        self.standby_pending.push_back(conn);
    }

    /// Whether `ident` finished its handshake on a connection that is up.
    pub(crate) fn is_connected(&self, ident: &Identity) -> bool {
        self.peers.get(ident).is_some_and(|p| p.conn.is_some())
    }

    /// The transmit of a connected identity.
    pub(crate) fn transmit_of(&self, ident: &Identity) -> Option<T> {
        let conn = self.peers.get(ident)?.conn?;
        Some(self.conns.get(&conn)?.tx.clone())
    }

    /// Sends an extension frame to a connected weft peer.
    pub(crate) fn send_extension(&mut self, ident: &Identity, frame: &Frame) -> bool {
        let Some(conn) = self.peers.get(ident).and_then(|p| p.conn) else {
            return false;
        };
        self.conns
            .get_mut(&conn)
            .filter(|c| c.weft.is_some())
            .is_some_and(|c| c.send_frame(frame).is_ok())
    }
}

#[cfg(test)]
mod tests;
