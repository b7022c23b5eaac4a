//! The messaging protocol as a state machine, free of I/O.
//!
//! The shell feeds it connections, packets, disconnections, sends and the
//! time; it answers by writing frames through each connection's
//! [`Transmit`] (a non-blocking queue push) and by queueing [`CoreEvent`]s.
//! Tests drive it with a fake transmitter and chosen instants.
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

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use weft_link::ConnectionId;

use crate::dedupe::DedupeWindow;
use crate::frame::{EXTENSION_VERSION, FilterKind, Frame, PROTOCOL_VERSION, caps, message_head};
use crate::{
    DuplicateIdentity, Identity, Message, MessageId, MessagingConfig, ProtocolError, QueuePolicy,
};

/// Maps keyed by identity or connection: hashed with a per-process random
/// seed (identities come from the network), faster than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A connection's transmit side, as the core sees it.
pub(crate) trait Transmit: Clone {
    /// Queues one packet made of `head` and `body` without waiting.
    fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError>;
    /// Closes the connection (gracefully: queued packets still go out).
    fn close(&self);
    /// Bytes ever accepted for sending.
    fn bytes_accepted(&self) -> u64;
    /// Bytes written to the socket.
    fn bytes_written(&self) -> u64;
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

/// Records a settled message: an event when storage must forget it.
fn settle(events: &mut VecDeque<CoreEvent>, progress: &mut bool, message: &Message) {
    *progress = true;
    if message.is_persistent() {
        events.push_back(CoreEvent::Settled { id: message.id });
    }
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
}

/// A message waiting in a queue or in flight.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) message: Message,
    pub(crate) deadline: Option<Instant>,
    /// In flight to a peer without acks: the byte offset that, once
    /// written, means the message left.
    end: u64,
    /// Sent before on a connection that dropped.
    resend: bool,
    /// Loaded from storage at start: it may have been sent before.
    restored: bool,
}

impl Entry {
    pub(crate) fn new(message: Message, now: Instant) -> Entry {
        let deadline = message.ttl.map(|ttl| now + ttl);
        Entry {
            message,
            deadline,
            end: 0,
            resend: false,
            restored: false,
        }
    }
}

/// What became of an entry offered to a connection.
enum Wrote {
    /// Queued on the connection: now in flight.
    Sent,
    /// Its TTL ran out while it waited.
    Expired,
    /// The connection has no room: it waits for it.
    Full,
    /// The connection is closing.
    Closed,
}

/// Offers `entry` to `tx`. `acked_mode`: the peer acknowledges messages.
fn write_entry<T: Transmit>(tx: &T, acked_mode: bool, entry: &mut Entry, now: Instant) -> Wrote {
    let ttl = match entry.deadline {
        None => None,
        Some(d) if d < now => return Wrote::Expired,
        Some(d) => Some(u32::try_from((d - now).as_secs()).unwrap_or(u32::MAX - 1)),
    };
    let m = &entry.message;
    // Without acks a message is sent again only when none of it was
    // written, so only peers with acks can get it twice.
    let resent = acked_mode && (entry.resend || entry.restored);
    let head = message_head(&m.id, ttl, m.flags, resent);
    match tx.try_send(head.as_slice(), &m.data) {
        Ok(()) => {
            if !acked_mode {
                entry.end = tx.bytes_accepted();
            }
            Wrote::Sent
        }
        Err(TxError::Full) => Wrote::Full,
        Err(TxError::Closed) => Wrote::Closed,
    }
}

struct Conn<T> {
    tx: T,
    ident: Option<Identity>,
    /// The peer sent HELLO (before IDENT): its capabilities.
    weft: Option<u32>,
    last_recv: Instant,
    ping_sent: Option<Instant>,
    /// Both sides take acks (known from IDENT on): messages from this
    /// peer may come again, as RESENT frames.
    acks: bool,
    /// MESSAGE frames received on this connection.
    received: u64,
    /// The count last acknowledged to the peer.
    ack_sent: u64,
    /// When a held-back ACK must leave.
    ack_due: Option<Instant>,
}

impl<T: Transmit> Conn<T> {
    /// Sends ACK for what arrived since the last one, if anything did.
    /// False when the connection had no room for it.
    fn send_ack(&mut self) -> bool {
        if !self.acks || self.received == self.ack_sent {
            return true;
        }
        if Core::<T>::send_frame(&self.tx, &Frame::Ack(self.received)).is_err() {
            return false;
        }
        self.ack_sent = self.received;
        self.ack_due = None;
        true
    }
}

#[derive(Default)]
struct Peer {
    queue: VecDeque<Entry>,
    inflight: VecDeque<Entry>,
    bytes: usize,
    conn: Option<ConnectionId>,
    /// Deliveries are confirmed by acks (else by writes).
    acked_mode: bool,
    /// MESSAGE frames acknowledged on the current connection.
    acked: u64,
    blocked: bool,
}

impl Peer {
    fn len(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    /// `entry` was written whole: it is in flight now, and counted;
    /// without acks, the check for completed writes is armed.
    fn now_in_flight(
        &mut self,
        entry: Entry,
        now: Instant,
        counters: &mut Counters,
        write_check: &mut Option<Instant>,
        timer_moved: &mut bool,
    ) {
        counters.sent += 1;
        if entry.resend {
            counters.resent += 1;
        }
        if !self.acked_mode && write_check.is_none() {
            *write_check = Some(now + WRITE_CHECK);
            *timer_moved = true;
        }
        self.inflight.push_back(entry);
    }

    /// Without acks: the messages in flight whose bytes are among the
    /// bytes `tx` has written are delivered. With acks, nothing to do (and
    /// `tx` is not asked). The check is inlined into every send and the
    /// loop kept out of line: as one function it is not inlined, and the
    /// call alone cost the fan-out bench's publisher 2.5% of its
    /// instructions (callgrind).
    #[inline]
    fn confirm_written<T: Transmit>(
        &mut self,
        tx: &T,
        counters: &mut Counters,
        events: &mut VecDeque<CoreEvent>,
        progress: &mut bool,
    ) {
        if !self.acked_mode {
            self.settle_written(tx.bytes_written(), counters, events, progress);
        }
    }

    fn settle_written(
        &mut self,
        written: u64,
        counters: &mut Counters,
        events: &mut VecDeque<CoreEvent>,
        progress: &mut bool,
    ) {
        while self.inflight.front().is_some_and(|e| e.end <= written) {
            let e = self.inflight.pop_front().expect("checked");
            self.bytes -= e.message.data.len();
            counters.delivered += 1;
            settle(events, progress, &e.message);
        }
    }
}

pub(crate) struct Core<T> {
    me: Identity,
    config: MessagingConfig,
    conns: HashMap<ConnectionId, Conn<T>>,
    peers: HashMap<Identity, Peer>,
    dedupe: DedupeWindow,
    events: VecDeque<CoreEvent>,
    blocked: Vec<(ConnectionId, T)>,
    next_sweep: Option<Instant>,
    /// Something happened that may make `poll_timeout` earlier.
    timer_moved: bool,
    /// A message was settled since the shell last asked.
    progress: bool,
    /// When to check which writes to peers without acks have completed.
    next_write_check: Option<Instant>,
    /// The latest time the shell gave.
    last_now: Instant,
    pub(crate) counters: Counters,
}

/// How often unconfirmed writes to peers without acks are checked.
const WRITE_CHECK: Duration = Duration::from_millis(5);

/// Unacknowledged messages from a peer that make a receiver send ACK at
/// once, without waiting for [`MessagingConfig::ack_delay`].
pub const ACK_EVERY: u64 = 256;

impl<T: Transmit> Core<T> {
    pub(crate) fn new(me: Identity, config: MessagingConfig) -> Core<T> {
        Core {
            dedupe: DedupeWindow::new(config.dedupe_window),
            me,
            config,
            conns: HashMap::default(),
            peers: HashMap::default(),
            events: VecDeque::new(),
            blocked: Vec::new(),
            next_sweep: None,
            timer_moved: false,
            progress: false,
            next_write_check: None,
            last_now: Instant::now(),
            counters: Counters::default(),
        }
    }

    fn send_frame(tx: &T, frame: &Frame) -> Result<(), TxError> {
        let (head, body) = frame.encode();
        tx.try_send(head.as_slice(), &body)
    }

    /// A connection is up: introduce ourselves.
    pub(crate) fn on_connected(&mut self, conn: ConnectionId, tx: T, now: Instant) {
        let capabilities = if self.config.acks {
            caps::ACKS | caps::PUBSUB
        } else {
            caps::PUBSUB
        };
        // VERSION, then weft's HELLO (snakeMQ ignores it), then IDENT: when
        // the peer's IDENT arrives we already know whether it speaks weft.
        let hello = [
            Frame::Version(PROTOCOL_VERSION),
            Frame::Hello {
                version: EXTENSION_VERSION,
                capabilities,
            },
            Frame::Ident(self.me.clone()),
        ];
        for frame in &hello {
            // A fresh connection's queue has room for the handshake.
            let _ = Self::send_frame(&tx, frame);
        }
        self.conns.insert(
            conn,
            Conn {
                tx,
                ident: None,
                weft: None,
                last_recv: now,
                ping_sent: None,
                acks: false,
                received: 0,
                ack_sent: 0,
                ack_due: None,
            },
        );
    }

    fn fail(&mut self, conn: ConnectionId, error: ProtocolError) {
        self.counters.protocol_errors += 1;
        let ident = self.conns.get(&conn).and_then(|c| c.ident.clone());
        tracing::debug!(%conn, ?ident, %error, "protocol error");
        if let Some(c) = self.conns.get(&conn) {
            c.tx.close();
        }
        self.events
            .push_back(CoreEvent::ProtocolError { ident, error });
    }

    /// Whether [`send_message`](Self::send_message) needs the time read
    /// from the clock for `message`; when not, [`last_now`](Self::last_now)
    /// does as well. It does when the message or any queued message has a
    /// TTL: otherwise the time only schedules the next write check, and a
    /// time in the past only makes that check run early.
    pub(crate) fn needs_clock(&self, message: &Message) -> bool {
        message.ttl.is_some() || self.next_sweep.is_some()
    }

    /// The latest time the shell gave the core.
    pub(crate) fn last_now(&self) -> Instant {
        self.last_now
    }

    /// One packet from a connection.
    pub(crate) fn on_packet(&mut self, conn_id: ConnectionId, packet: Bytes, now: Instant) {
        self.last_now = now;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.last_recv = now;
        conn.ping_sent = None;
        let frame = match Frame::parse(packet) {
            Ok(f) => f,
            Err(e) => return self.fail(conn_id, ProtocolError::Frame(e)),
        };
        match frame {
            Frame::Version(v) if v != PROTOCOL_VERSION => {
                let _ = Self::send_frame(&conn.tx, &Frame::Incompatible);
                self.fail(conn_id, ProtocolError::IncompatibleVersion(v));
            }
            Frame::Version(_) | Frame::Pong | Frame::Unknown(_) => {}
            Frame::Incompatible => self.fail(conn_id, ProtocolError::PeerRejectedVersion),
            Frame::Ping => {
                // Always answered: snakeMQ's loop fails on an unanswered PING.
                let _ = Self::send_frame(&conn.tx, &Frame::Pong);
            }
            Frame::Hello { capabilities, .. } => {
                if conn.ident.is_none() {
                    conn.weft = Some(capabilities);
                }
            }
            Frame::Ident(ident) => self.on_ident(conn_id, ident, now),
            Frame::Message {
                id,
                ttl,
                flags,
                data,
                resent,
            } => {
                let Some(from) = conn.ident.clone() else {
                    return self.fail(conn_id, ProtocolError::MessageBeforeIdent);
                };
                conn.received += 1;
                self.counters.received += 1;
                if conn.acks {
                    if resent {
                        if !self.dedupe.check_and_record(id) {
                            self.counters.duplicates += 1;
                            return;
                        }
                    } else {
                        self.dedupe.record(id);
                    }
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
                    self.on_ack(&ident, count);
                }
            }
            Frame::Subscribe(kind, filter) => {
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

    fn on_ident(&mut self, conn_id: ConnectionId, ident: Identity, now: Instant) {
        let conn = self.conns.get_mut(&conn_id).expect("caller checked");
        if conn.ident.is_some() {
            return; // a second IDENT on one connection is ignored, as snakeMQ does
        }
        if let Some(old) = self.peers.get(&ident).and_then(|p| p.conn) {
            match self.config.duplicate_identity {
                DuplicateIdentity::RejectNew => {
                    return self.fail(conn_id, ProtocolError::DuplicateIdentity(ident));
                }
                DuplicateIdentity::ReplaceOld => {
                    if let Some(c) = self.conns.get_mut(&old) {
                        c.tx.close();
                        c.ident = None;
                    }
                    self.unbind(&ident);
                }
            }
        }
        let conn = self.conns.get_mut(&conn_id).expect("caller checked");
        conn.ident = Some(ident.clone());
        let acks_both = self.config.acks && conn.weft.is_some_and(|c| c & caps::ACKS != 0);
        conn.acks = acks_both;
        let weft = conn.weft.is_some();
        let peer = self.peers.entry(ident.clone()).or_default();
        peer.conn = Some(conn_id);
        peer.acked_mode = acks_both;
        peer.acked = 0;
        peer.blocked = false;
        tracing::debug!(conn = %conn_id, %ident, weft, acks = acks_both, "identified");
        self.events.push_back(CoreEvent::Connected {
            ident: ident.clone(),
        });
        self.flush_at(&ident, now, None);
    }

    /// The peer's connection ended or was replaced: what is in flight goes
    /// back to the front of the queue, in order.
    fn unbind(&mut self, ident: &Identity) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        if peer.conn.take().is_none() {
            return;
        }
        while let Some(mut e) = peer.inflight.pop_back() {
            e.resend = true;
            peer.queue.push_front(e);
        }
        peer.blocked = false;
        self.events.push_back(CoreEvent::Disconnected {
            ident: ident.clone(),
        });
    }

    fn on_ack(&mut self, ident: &Identity, count: u64) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        if !peer.acked_mode || count <= peer.acked {
            return;
        }
        let newly = ((count - peer.acked) as usize).min(peer.inflight.len());
        peer.acked = count;
        if newly == 0 {
            return;
        }
        self.counters.acked += newly as u64;
        self.counters.delivered += newly as u64;
        for e in peer.inflight.drain(..newly) {
            peer.bytes -= e.message.data.len();
            settle(&mut self.events, &mut self.progress, &e.message);
        }
        if peer.inflight.is_empty() {
            // Start the ring over at its first slots (warm in the cache).
            peer.inflight.clear();
        }
    }

    /// Acknowledges what the last batch of packets brought: at once when
    /// [`ACK_EVERY`] messages wait for it (or without an ack delay), else
    /// by `ack_delay` at the latest, earlier with an outgoing message.
    pub(crate) fn end_batch(&mut self) {
        let delay = self.config.ack_delay;
        for conn in self.conns.values_mut() {
            let unacked = conn.received - conn.ack_sent;
            if !conn.acks || unacked == 0 {
                continue;
            }
            if (unacked >= ACK_EVERY || delay.is_zero()) && conn.send_ack() {
                continue;
            }
            if conn.ack_due.is_none() {
                conn.ack_due = Some(self.last_now + delay);
                self.timer_moved = true;
            }
        }
    }

    /// A connection ended.
    pub(crate) fn on_disconnected(&mut self, conn_id: ConnectionId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        if let Some(ident) = conn.ident {
            self.confirm_writes(&ident, &conn.tx);
            if self
                .peers
                .get(&ident)
                .is_some_and(|p| p.conn == Some(conn_id))
            {
                self.unbind(&ident);
            }
        }
    }

    /// Queues a message for `to`; it leaves as soon as `to` is connected.
    pub(crate) fn send_message(
        &mut self,
        to: &Identity,
        message: Message,
        now: Instant,
    ) -> Result<(), MessageId> {
        if *to == self.me {
            self.counters.sent += 1;
            self.counters.received += 1;
            self.counters.delivered += 1;
            self.events.push_back(CoreEvent::Message {
                from: self.me.clone(),
                message,
            });
            return Ok(());
        }
        let (max_n, max_bytes, policy) = (
            self.config.max_queue_messages,
            self.config.max_queue_bytes,
            self.config.queue_policy,
        );
        let peer = match self.peers.get_mut(to) {
            Some(peer) => peer,
            None => self.peers.entry(to.clone()).or_default(),
        };
        let len = message.data.len();
        while peer.len() >= max_n || (peer.bytes + len > max_bytes && peer.len() > 0) {
            match policy {
                QueuePolicy::Error => return Err(message.id),
                QueuePolicy::DropNewest => {
                    self.counters.dropped += 1;
                    settle(&mut self.events, &mut self.progress, &message);
                    return Ok(());
                }
                QueuePolicy::DropOldest => {
                    let Some(old) = peer.queue.pop_front() else {
                        // Everything is in flight: nothing waiting can make room.
                        return Err(message.id);
                    };
                    peer.bytes -= old.message.data.len();
                    self.counters.dropped += 1;
                    settle(&mut self.events, &mut self.progress, &old.message);
                }
            }
        }
        peer.bytes += len;
        let mut entry = Entry::new(message, now);
        if entry.deadline.is_some() && self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.config.ttl_sweep);
            self.timer_moved = true;
        }
        let writable = peer.conn.filter(|_| !peer.blocked);
        let Some(conn_id) = writable else {
            peer.queue.push_back(entry);
            return Ok(());
        };
        if peer.queue.is_empty() {
            // Nothing waits before it: straight to the connection, with no
            // trip through the queue and no second peer lookup. Anything
            // but a clean write goes the queue's way below.
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.send_ack();
                if let Wrote::Sent = write_entry(&conn.tx, peer.acked_mode, &mut entry, now) {
                    peer.now_in_flight(
                        entry,
                        now,
                        &mut self.counters,
                        &mut self.next_write_check,
                        &mut self.timer_moved,
                    );
                    peer.confirm_written(
                        &conn.tx,
                        &mut self.counters,
                        &mut self.events,
                        &mut self.progress,
                    );
                    return Ok(());
                }
            }
        }
        // Behind what waits (or after a write that did not go through):
        // the queue's order, and its handling of a full or closed
        // connection, decide.
        self.flush_at(to, now, Some(entry));
        Ok(())
    }

    /// Puts back a message loaded from storage at start.
    pub(crate) fn restore(&mut self, to: Identity, mut entry: Entry, now: Instant) {
        entry.restored = true;
        if entry.deadline.is_some() && self.next_sweep.is_none() {
            // The first timeout runs the sweep at once.
            self.next_sweep = Some(now);
        }
        let peer = self.peers.entry(to).or_default();
        peer.bytes += entry.message.data.len();
        peer.queue.push_back(entry);
    }

    /// Writes what `ident`'s queue holds, then `last`, while its connection
    /// takes them.
    fn flush_at(&mut self, ident: &Identity, now: Instant, mut last: Option<Entry>) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        let writable = peer.conn.filter(|_| !peer.blocked);
        let Some((conn_id, conn)) =
            writable.and_then(|id| self.conns.get_mut(&id).map(|conn| (id, conn)))
        else {
            peer.queue.extend(last);
            return;
        };
        if last.is_some() || !peer.queue.is_empty() {
            // A held-back ACK leaves in the same write as the messages.
            conn.send_ack();
        }
        let conn = &*conn;
        while let Some(mut entry) = peer.queue.pop_front().or_else(|| last.take()) {
            match write_entry(&conn.tx, peer.acked_mode, &mut entry, now) {
                Wrote::Sent => peer.now_in_flight(
                    entry,
                    now,
                    &mut self.counters,
                    &mut self.next_write_check,
                    &mut self.timer_moved,
                ),
                Wrote::Expired => {
                    peer.bytes -= entry.message.data.len();
                    self.counters.expired += 1;
                    settle(&mut self.events, &mut self.progress, &entry.message);
                }
                Wrote::Full => {
                    peer.queue.push_front(entry);
                    peer.blocked = true;
                    self.blocked.push((conn_id, conn.tx.clone()));
                    break;
                }
                Wrote::Closed => {
                    peer.queue.push_front(entry);
                    break;
                }
            }
        }
        peer.queue.extend(last);
        peer.confirm_written(
            &conn.tx,
            &mut self.counters,
            &mut self.events,
            &mut self.progress,
        );
    }

    /// Peers without acks: messages whose bytes were written are delivered.
    fn confirm_writes(&mut self, ident: &Identity, tx: &T) {
        if let Some(peer) = self.peers.get_mut(ident) {
            peer.confirm_written(tx, &mut self.counters, &mut self.events, &mut self.progress);
        }
    }

    /// Connections that had no room; the shell waits for each to be ready.
    pub(crate) fn take_blocked(&mut self) -> Vec<(ConnectionId, T)> {
        std::mem::take(&mut self.blocked)
    }

    /// A blocked connection has room again.
    pub(crate) fn on_ready(&mut self, conn_id: ConnectionId, now: Instant) {
        let Some(ident) = self.conns.get(&conn_id).and_then(|c| c.ident.clone()) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&ident) {
            peer.blocked = false;
        }
        self.flush_at(&ident, now, None);
    }

    /// Keep-alive, TTL sweeps and write confirmations.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if let Some(interval) = self.config.keepalive_interval {
            let wait = self.config.keepalive_wait;
            let mut dead = Vec::new();
            for (id, conn) in &mut self.conns {
                match conn.ping_sent {
                    Some(sent) if now >= sent + wait => dead.push(*id),
                    Some(_) => {}
                    None if now >= conn.last_recv + interval => {
                        conn.ping_sent = Some(now);
                        let _ = Self::send_frame(&conn.tx, &Frame::Ping);
                    }
                    None => {}
                }
            }
            for id in dead {
                self.fail(id, ProtocolError::KeepaliveTimeout);
            }
        }
        let retry = now + self.config.ack_delay.max(Duration::from_millis(1));
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
            self.next_sweep = more.then(|| now + self.config.ttl_sweep);
        }
        if self.next_write_check.is_some_and(|t| now >= t) {
            let unconfirmed: Vec<(Identity, T)> = self
                .peers
                .iter()
                .filter(|(_, p)| !p.acked_mode && !p.inflight.is_empty())
                .filter_map(|(ident, p)| {
                    let conn = self.conns.get(&p.conn?)?;
                    Some((ident.clone(), conn.tx.clone()))
                })
                .collect();
            for (ident, tx) in unconfirmed {
                self.confirm_writes(&ident, &tx);
            }
            let more = self
                .peers
                .values()
                .any(|p| !p.acked_mode && p.conn.is_some() && !p.inflight.is_empty());
            self.next_write_check = more.then(|| now + WRITE_CHECK);
        }
    }

    /// Drops messages whose TTL ran out while they waited.
    fn sweep(&mut self, now: Instant) {
        let events = &mut self.events;
        let counters = &mut self.counters;
        let progress = &mut self.progress;
        self.peers.retain(|_, peer| {
            let bytes = &mut peer.bytes;
            peer.queue.retain(|e| {
                let live = e.deadline.is_none_or(|d| d >= now);
                if !live {
                    *bytes -= e.message.data.len();
                    counters.expired += 1;
                    settle(events, progress, &e.message);
                }
                live
            });
            peer.conn.is_some() || peer.len() > 0
        });
    }

    /// When [`on_timeout`](Self::on_timeout) wants to run next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_sweep;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for conn in self.conns.values() {
            if let Some(interval) = self.config.keepalive_interval {
                earliest(match conn.ping_sent {
                    Some(sent) => sent + self.config.keepalive_wait,
                    None => conn.last_recv + interval,
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
    pub(crate) fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    /// Whether the shell's task should run now: events to dispatch,
    /// connections to wait for, or a timer that moved. Clears the last.
    pub(crate) fn wants_attention(&mut self) -> bool {
        let moved = std::mem::take(&mut self.timer_moved);
        moved || !self.events.is_empty() || !self.blocked.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn poll_event(&mut self) -> Option<CoreEvent> {
        self.events.pop_front()
    }

    /// Every event so far, swapped for `into` (which must be empty), so
    /// that neither list is copied nor reallocated.
    pub(crate) fn take_events(&mut self, into: &mut VecDeque<CoreEvent>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.events, into);
    }

    /// Messages waiting for, or in flight to, `ident`.
    pub(crate) fn queue_depth(&self, ident: &Identity) -> usize {
        self.peers.get(ident).map_or(0, Peer::len)
    }

    /// Drops the messages waiting for `ident` (not those in flight on a
    /// live connection), counted as dropped; returns how many.
    pub(crate) fn purge(&mut self, ident: &Identity) -> usize {
        let Some(peer) = self.peers.get_mut(ident) else {
            return 0;
        };
        let purged = peer.queue.len();
        for e in peer.queue.drain(..) {
            peer.bytes -= e.message.data.len();
            self.counters.dropped += 1;
            settle(&mut self.events, &mut self.progress, &e.message);
        }
        if peer.conn.is_none() && peer.inflight.is_empty() {
            self.peers.remove(ident);
        }
        purged
    }

    /// Every identity with a queue, with its depth.
    pub(crate) fn queue_depths(&self) -> Vec<(Identity, usize)> {
        self.peers
            .iter()
            .map(|(i, p)| (i.clone(), p.len()))
            .collect()
    }

    /// Nothing waiting and nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.peers.values().all(|p| p.len() == 0)
    }

    /// Identities whose handshake finished.
    pub(crate) fn connected(&self) -> Vec<Identity> {
        self.peers
            .iter()
            .filter(|(_, p)| p.conn.is_some())
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// The transmit of a connected identity.
    pub(crate) fn transmit_of(&self, ident: &Identity) -> Option<T> {
        let conn = self.peers.get(ident)?.conn?;
        Some(self.conns.get(&conn)?.tx.clone())
    }

    /// Whether `ident` is a connected weft peer (it gets extension frames).
    pub(crate) fn is_weft(&self, ident: &Identity) -> bool {
        self.peers
            .get(ident)
            .and_then(|p| p.conn)
            .and_then(|c| self.conns.get(&c))
            .is_some_and(|c| c.weft.is_some())
    }

    /// Sends an extension frame to a connected weft peer.
    pub(crate) fn send_extension(&self, ident: &Identity, frame: &Frame) -> bool {
        if !self.is_weft(ident) {
            return false;
        }
        self.transmit_of(ident)
            .is_some_and(|tx| Self::send_frame(&tx, frame).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::Flags;

    /// Records frames; can refuse (full) and pretend bytes were written.
    #[derive(Clone, Default)]
    struct FakeTx {
        frames: Rc<RefCell<Vec<Frame>>>,
        full: Rc<RefCell<bool>>,
        accepted: Rc<RefCell<u64>>,
        written: Rc<RefCell<u64>>,
        closed: Rc<RefCell<bool>>,
    }

    impl Transmit for FakeTx {
        fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError> {
            if *self.full.borrow() {
                return Err(TxError::Full);
            }
            let packet = Bytes::from([head, &body[..]].concat());
            *self.accepted.borrow_mut() += packet.len() as u64;
            self.frames.borrow_mut().push(Frame::parse(packet).unwrap());
            Ok(())
        }
        fn close(&self) {
            *self.closed.borrow_mut() = true;
        }
        fn bytes_accepted(&self) -> u64 {
            *self.accepted.borrow()
        }
        fn bytes_written(&self) -> u64 {
            *self.written.borrow()
        }
    }

    impl FakeTx {
        fn take(&self) -> Vec<Frame> {
            std::mem::take(&mut self.frames.borrow_mut())
        }
        fn messages(&self) -> Vec<Bytes> {
            self.messages_marked().into_iter().map(|(d, _)| d).collect()
        }
        /// Messages with whether each was sent as a RESENT frame.
        fn messages_marked(&self) -> Vec<(Bytes, bool)> {
            self.take()
                .into_iter()
                .filter_map(|f| match f {
                    Frame::Message { data, resent, .. } => Some((data, resent)),
                    _ => None,
                })
                .collect()
        }
    }

    fn id(s: &str) -> Identity {
        Identity::new(s).unwrap()
    }

    fn packet(f: &Frame) -> Bytes {
        let (head, body) = f.encode();
        Bytes::from([head.as_slice(), &body[..]].concat())
    }

    const WEFT: Frame = Frame::Hello {
        version: 1,
        capabilities: caps::ACKS | caps::PUBSUB,
    };

    /// A core whose connection 1 is an identified peer `bob`.
    fn connected(weft: bool, now: Instant) -> (Core<FakeTx>, FakeTx) {
        let mut core = Core::new(id("me"), MessagingConfig::default());
        let tx = FakeTx::default();
        core.on_connected(ConnectionId(1), tx.clone(), now);
        assert!(matches!(
            &tx.take()[..],
            [Frame::Version(1), Frame::Hello { .. }, Frame::Ident(_)]
        ));
        if weft {
            core.on_packet(ConnectionId(1), packet(&WEFT), now);
        }
        core.on_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), now);
        assert!(matches!(
            core.poll_event(),
            Some(CoreEvent::Connected { .. })
        ));
        (core, tx)
    }

    #[test]
    fn unacked_messages_are_resent_in_order_after_a_drop() {
        let t0 = Instant::now();
        let (mut core, tx) = connected(true, t0);
        for m in ["1", "2", "3"] {
            core.send_message(&id("bob"), Message::new(m), t0).unwrap();
        }
        assert_eq!(tx.messages(), ["1", "2", "3"]);
        core.on_packet(ConnectionId(1), packet(&Frame::Ack(1)), t0);
        assert_eq!(core.counters.delivered, 1);
        assert!(core.take_progress());
        assert!(
            core.poll_event().is_none(),
            "nothing stored: nothing for storage"
        );
        assert_eq!(core.queue_depth(&id("bob")), 2);
        core.on_disconnected(ConnectionId(1));
        assert!(matches!(
            core.poll_event(),
            Some(CoreEvent::Disconnected { .. })
        ));

        let tx2 = FakeTx::default();
        core.on_connected(ConnectionId(2), tx2.clone(), t0);
        core.on_packet(ConnectionId(2), packet(&WEFT), t0);
        core.on_packet(ConnectionId(2), packet(&Frame::Ident(id("bob"))), t0);
        assert_eq!(
            tx2.messages_marked(),
            [("2".into(), true), ("3".into(), true)],
            "only the unacknowledged, in order, marked as RESENT"
        );
        assert_eq!(core.counters.resent, 2);
        core.send_message(&id("bob"), Message::new("4"), t0)
            .unwrap();
        assert_eq!(tx2.messages_marked(), [("4".into(), false)]);
        // Acks count per connection, from its start.
        core.on_packet(ConnectionId(2), packet(&Frame::Ack(3)), t0);
        assert!(core.is_idle());
        assert_eq!(core.counters.acked, 4);
    }

    fn message(n: u8, resent: bool) -> Frame {
        Frame::Message {
            id: MessageId([n; 16]),
            ttl: None,
            flags: Flags(0),
            data: Bytes::from_static(b"data"),
            resent,
        }
    }

    /// The ids of the messages the core delivered.
    fn delivered(core: &mut Core<FakeTx>) -> Vec<u8> {
        std::iter::from_fn(|| core.poll_event())
            .filter_map(|e| match e {
                CoreEvent::Message { message, .. } => Some(message.id.0[0]),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn resent_duplicates_from_weft_peers_are_dropped_and_still_acked() {
        let t0 = Instant::now();
        let (mut core, tx) = connected(true, t0);
        core.on_packet(ConnectionId(1), packet(&message(9, false)), t0);
        core.on_packet(ConnectionId(1), packet(&message(8, false)), t0);
        core.on_packet(ConnectionId(1), packet(&message(9, true)), t0);
        core.on_packet(ConnectionId(1), packet(&message(7, true)), t0);
        core.end_batch();
        assert_eq!(delivered(&mut core), [9, 8, 7]);
        assert_eq!(core.counters.duplicates, 1);
        core.on_timeout(t0 + MessagingConfig::default().ack_delay);
        assert!(tx.take().contains(&Frame::Ack(4)));
    }

    #[test]
    fn acks_wait_for_an_outgoing_message_or_the_delay() {
        let t0 = Instant::now();
        let delay = MessagingConfig::default().ack_delay;
        let (mut core, tx) = connected(true, t0);
        core.on_packet(ConnectionId(1), packet(&message(1, false)), t0);
        core.end_batch();
        assert!(tx.take().is_empty(), "held back");
        assert_eq!(core.poll_timeout(), Some(t0 + delay));
        // A reply carries it: ACK first, in the same write.
        core.send_message(&id("bob"), Message::new("reply"), t0)
            .unwrap();
        let frames = tx.take();
        assert!(matches!(
            &frames[..],
            [Frame::Ack(1), Frame::Message { .. }]
        ));
        core.on_timeout(t0 + delay);
        assert!(tx.take().is_empty(), "sent once");

        // Nothing to carry it: it leaves when due.
        core.on_packet(ConnectionId(1), packet(&message(2, false)), t0 + delay);
        core.end_batch();
        assert!(tx.take().is_empty());
        core.on_timeout(t0 + delay * 2 - Duration::from_nanos(1));
        assert!(tx.take().is_empty(), "not yet due");
        core.on_timeout(t0 + delay * 2);
        assert_eq!(tx.take(), [Frame::Ack(2)]);

        // A long run of messages is acknowledged at once.
        for n in 0..ACK_EVERY {
            core.on_packet(ConnectionId(1), packet(&message(n as u8, false)), t0);
        }
        core.end_batch();
        assert_eq!(tx.take(), [Frame::Ack(2 + ACK_EVERY)]);
    }

    #[test]
    fn a_zero_ack_delay_acknowledges_every_batch() {
        let t0 = Instant::now();
        let mut core: Core<FakeTx> = Core::new(
            id("me"),
            MessagingConfig {
                ack_delay: Duration::ZERO,
                ..MessagingConfig::default()
            },
        );
        let tx = FakeTx::default();
        core.on_connected(ConnectionId(1), tx.clone(), t0);
        core.on_packet(ConnectionId(1), packet(&WEFT), t0);
        core.on_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
        tx.take();
        core.on_packet(ConnectionId(1), packet(&message(1, false)), t0);
        core.end_batch();
        assert_eq!(tx.take(), [Frame::Ack(1)]);
    }

    #[test]
    fn purging_drops_what_waits_and_forgets_a_gone_identity() {
        let t0 = Instant::now();
        let mut core: Core<FakeTx> = Core::new(id("me"), MessagingConfig::default());
        core.send_message(&id("gone"), Message::new("a").persistent(), t0)
            .unwrap();
        core.send_message(&id("gone"), Message::new("b"), t0)
            .unwrap();
        assert_eq!(core.purge(&id("gone")), 2);
        assert_eq!(core.counters.dropped, 2);
        assert!(
            matches!(core.poll_event(), Some(CoreEvent::Settled { .. })),
            "storage forgets the persistent one"
        );
        assert!(core.poll_event().is_none());
        assert!(core.queue_depths().is_empty());
        assert_eq!(core.purge(&id("never")), 0);
    }

    #[test]
    fn only_resent_frames_are_checked() {
        let t0 = Instant::now();
        let (mut core, _tx) = connected(true, t0);
        // A sender may reuse an id it chose; only RESENT marks a repeat.
        core.on_packet(ConnectionId(1), packet(&message(5, false)), t0);
        core.on_packet(ConnectionId(1), packet(&message(5, false)), t0);
        assert_eq!(delivered(&mut core), [5, 5]);
        assert_eq!(core.counters.duplicates, 0);
    }

    #[test]
    fn peers_without_acks_are_not_checked() {
        // Without acks nothing is sent twice: the window is not used.
        let t0 = Instant::now();
        let config = MessagingConfig {
            acks: false,
            ..MessagingConfig::default()
        };
        let mut core: Core<FakeTx> = Core::new(id("me"), config);
        let tx = FakeTx::default();
        core.on_connected(ConnectionId(1), tx.clone(), t0);
        core.on_packet(ConnectionId(1), packet(&WEFT), t0);
        core.on_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
        core.on_packet(ConnectionId(1), packet(&message(3, false)), t0);
        core.on_packet(ConnectionId(1), packet(&message(3, true)), t0);
        core.end_batch();
        assert_eq!(delivered(&mut core), [3, 3]);
        assert!(
            !tx.take().iter().any(|f| matches!(f, Frame::Ack(_))),
            "no acks offered, none sent"
        );
    }

    #[test]
    fn restored_messages_are_marked_resent_only_to_peers_with_acks() {
        let t0 = Instant::now();
        for weft in [true, false] {
            let mut core: Core<FakeTx> = Core::new(id("me"), MessagingConfig::default());
            let m = Message::new("stored").persistent();
            core.restore(id("bob"), Entry::new(m, t0), t0);
            let tx = FakeTx::default();
            core.on_connected(ConnectionId(1), tx.clone(), t0);
            tx.take();
            if weft {
                core.on_packet(ConnectionId(1), packet(&WEFT), t0);
            }
            core.on_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
            assert_eq!(tx.messages_marked(), [("stored".into(), weft)]);
            assert_eq!(core.counters.resent, 0, "restored is not resent");
        }
    }

    #[test]
    fn without_acks_a_message_is_delivered_once_written() {
        let t0 = Instant::now();
        let (mut core, tx) = connected(false, t0);
        let m = Message::new("x").persistent();
        let stored = m.id;
        core.send_message(&id("bob"), m, t0).unwrap();
        assert_eq!(core.queue_depth(&id("bob")), 1, "in flight until written");
        let check = core.poll_timeout().expect("a write check is due");
        *tx.written.borrow_mut() = tx.bytes_accepted();
        core.on_timeout(check);
        assert!(matches!(core.poll_event(), Some(CoreEvent::Settled { id }) if id == stored));
        assert!(core.is_idle());
        assert!(
            !tx.take().iter().any(|f| matches!(f, Frame::Ack(_))),
            "no extension frames"
        );
    }

    #[test]
    fn ttl_expires_exactly_at_the_sweep_after_the_deadline() {
        let t0 = Instant::now();
        let mut core: Core<FakeTx> = Core::new(id("me"), MessagingConfig::default());
        let m = Message::new("soon")
            .with_ttl(Duration::from_millis(1500))
            .persistent();
        core.send_message(&id("away"), m, t0).unwrap();
        assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        core.on_timeout(t0 + Duration::from_secs(1));
        assert_eq!(core.counters.expired, 0);
        core.on_timeout(t0 + Duration::from_secs(2));
        assert_eq!(core.counters.expired, 1);
        assert!(matches!(core.poll_event(), Some(CoreEvent::Settled { .. })));
        assert_eq!(core.poll_timeout(), None, "nothing left to sweep");
    }

    #[test]
    fn a_full_connection_blocks_until_ready() {
        let t0 = Instant::now();
        let (mut core, tx) = connected(true, t0);
        *tx.full.borrow_mut() = true;
        core.send_message(&id("bob"), Message::new("a"), t0)
            .unwrap();
        assert_eq!(core.take_blocked().len(), 1);
        core.send_message(&id("bob"), Message::new("b"), t0)
            .unwrap();
        assert!(core.take_blocked().is_empty(), "already waiting");
        *tx.full.borrow_mut() = false;
        core.on_ready(ConnectionId(1), t0);
        assert_eq!(tx.messages(), ["a", "b"]);
    }

    #[test]
    fn keepalive_pings_then_closes() {
        let t0 = Instant::now();
        let (mut core, tx) = connected(true, t0);
        tx.take();
        let interval = Duration::from_secs(30);
        core.on_timeout(t0 + interval);
        assert_eq!(tx.take(), [Frame::Ping]);
        core.on_timeout(t0 + interval + Duration::from_secs(9));
        assert!(!*tx.closed.borrow());
        core.on_timeout(t0 + interval + Duration::from_secs(10));
        assert!(*tx.closed.borrow());
    }
}
