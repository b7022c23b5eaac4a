//! Each peer's queue: messages waiting for the peer's connection, then in
//! flight on it until delivered; TTLs, queue bounds and settling. A peer
//! has a queue per [`Lane`]: the data lane's is a [`Peer`] of its own
//! (see [`lanes`](super::lanes)) whose connection is a lane of the
//! peer's.

use std::collections::VecDeque;
use std::time::Instant;

use weft_link::ConnectionId;

use super::conn::Conn;
use super::{Core, CoreEvent, Counters, Refused, Transmit, TxError, WRITE_CHECK, later};
use crate::config::QueuePolicy;
use crate::frame::message_head;
use crate::{Identity, Lane, Message};

/// Records a settled message: an event when storage must forget it.
fn settle(events: &mut VecDeque<CoreEvent>, progress: &mut bool, message: &Message) {
    *progress = true;
    if message.is_persistent() {
        events.push_back(CoreEvent::Settled { id: message.id });
    }
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
        // A TTL comes from the caller or the network: it saturates.
        let deadline = message.ttl.map(|ttl| later(now, ttl));
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

/// Offers `entry` to `conn`. `acked_mode`: the peer acknowledges messages.
fn write_entry<T: Transmit>(
    conn: &mut Conn<T>,
    acked_mode: bool,
    entry: &mut Entry,
    now: Instant,
) -> Wrote {
    let ttl = match entry.deadline {
        None => None,
        Some(d) if d < now => return Wrote::Expired,
        Some(d) => {
            Some(u32::try_from(d.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX - 1))
        }
    };
    let m = &entry.message;
    // Without acks a message is sent again only when none of it was
    // written, so only peers with acks can get it twice.
    let resent = acked_mode && (entry.resend || entry.restored);
    let head = message_head(&m.id, ttl, m.flags, resent);
    match conn.send(head.as_slice(), &m.data) {
        Ok(()) => {
            entry.end = conn.accepted;
            Wrote::Sent
        }
        Err(TxError::Full) => Wrote::Full,
        Err(TxError::Closed) => Wrote::Closed,
    }
}

#[derive(Default)]
pub(super) struct Peer {
    pub(super) queue: VecDeque<Entry>,
    pub(super) inflight: VecDeque<Entry>,
    pub(super) bytes: usize,
    pub(super) conn: Option<ConnectionId>,
    /// Deliveries are confirmed by acks (else by writes).
    pub(super) acked_mode: bool,
    /// MESSAGE frames acknowledged on the current connection.
    pub(super) acked: u64,
    pub(super) blocked: bool,
    /// The data lane's queue, made when the first message for it is
    /// queued: a peer of its own whose `conn` is a lane of `conn` (and
    /// whose own `data` is always `None`).
    pub(super) data: Option<Box<Peer>>,
    /// A lane beside `conn` was asked of the shell and has neither come up
    /// nor failed.
    pub(super) lane_asked: bool,
}

impl Peer {
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "two lengths of collections in memory"
    )]
    pub(super) fn len(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    /// Messages and their bytes, of both lanes.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "lengths of collections in memory, and sums of the lengths of messages held"
    )]
    pub(super) fn totals(&self) -> (usize, usize) {
        let (n, bytes) = self.data.as_deref().map_or((0, 0), |d| (d.len(), d.bytes));
        (self.len() + n, self.bytes + bytes)
    }

    /// The queue of `lane`, made if need be.
    pub(super) fn lane_mut(&mut self, lane: Lane) -> &mut Peer {
        match lane {
            Lane::Control => self,
            Lane::Data => self.data.get_or_insert_with(Box::default),
        }
    }

    /// The queue of `lane`, if it exists.
    pub(super) fn lane(&self, lane: Lane) -> Option<&Peer> {
        match lane {
            Lane::Control => Some(self),
            Lane::Data => self.data.as_deref(),
        }
    }

    /// Takes the oldest message waiting (not in flight) on `lane`, else on
    /// the other lane, to make room.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    fn pop_oldest(&mut self, lane: Lane) -> Option<Entry> {
        let other = match lane {
            Lane::Control => Lane::Data,
            Lane::Data => Lane::Control,
        };
        for lane in [lane, other] {
            let queue = self.lane_mut(lane);
            if let Some(old) = queue.queue.pop_front() {
                queue.bytes -= old.message.data.len();
                return Some(old);
            }
        }
        None
    }

    /// `entry` was written whole: it is in flight now, and counted;
    /// without acks, the check for completed writes is armed.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
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
            *write_check = Some(later(now, WRITE_CHECK));
            *timer_moved = true;
        }
        self.inflight.push_back(entry);
    }

    /// Without acks: the messages in flight whose bytes are among the
    /// bytes `tx` has written are delivered. With acks, nothing to do (and
    /// `tx` is not asked). Two functions so that the check is inlined into
    /// every send and the loop ([`settle_written`](Self::settle_written))
    /// stays out of line: joined, they are too big to inline, and every
    /// send to a peer with acks would pay a call that does nothing.
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

    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
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
            counters.queued_bytes -= e.message.data.len();
            counters.delivered += 1;
            settle(events, progress, &e.message);
        }
    }
}

impl<T: Transmit> Core<T> {
    /// The peer's connection (or its data lane's) ended or was replaced:
    /// what is in flight on it goes back to the front of its queue, in
    /// order. The end of the peer's connection is an event; a lane's is
    /// not.
    pub(super) fn unbind(&mut self, ident: &Identity, lane: Lane) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        let peer = match lane {
            Lane::Control => peer,
            Lane::Data => match peer.data.as_deref_mut() {
                Some(data) => data,
                None => return,
            },
        };
        if peer.conn.take().is_none() {
            return;
        }
        while let Some(mut e) = peer.inflight.pop_back() {
            e.resend = true;
            peer.queue.push_front(e);
        }
        peer.blocked = false;
        if lane == Lane::Control {
            self.events.push_back(CoreEvent::Disconnected {
                ident: ident.clone(),
            });
        }
    }

    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(super) fn handle_ack(&mut self, ident: &Identity, lane: Lane, count: u64) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        let peer = match lane {
            Lane::Control => peer,
            Lane::Data => match peer.data.as_deref_mut() {
                Some(data) => data,
                None => return,
            },
        };
        if !peer.acked_mode || count <= peer.acked {
            return;
        }
        // The count is the peer's: above what it acknowledged before (checked),
        // and however large, no more than what is in flight.
        let newly = usize::try_from(count - peer.acked)
            .unwrap_or(usize::MAX)
            .min(peer.inflight.len());
        peer.acked = count;
        if newly == 0 {
            return;
        }
        self.counters.acked += newly as u64;
        self.counters.delivered += newly as u64;
        for e in peer.inflight.drain(..newly) {
            peer.bytes -= e.message.data.len();
            self.counters.queued_bytes -= e.message.data.len();
            settle(&mut self.events, &mut self.progress, &e.message);
        }
        if peer.inflight.is_empty() {
            // Start the ring over at its first slots: a steady send and
            // ack cycle keeps reusing the same few.
            peer.inflight.clear();
        }
    }

    /// Queues a message for `to`; it leaves as soon as `to` is connected.
    /// A message too large to ever be sent is refused, never queued (it
    /// would hold up everything behind it).
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(crate) fn send_message(
        &mut self,
        to: &Identity,
        message: Message,
        now: Instant,
    ) -> Result<(), Refused> {
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
        let len = message.data.len();
        if len > self.max_data {
            return Err(Refused::TooLarge {
                size: len,
                max: self.max_data,
            });
        }
        let (max_n, max_bytes, max_all, policy) = (
            self.config.max_queue_messages,
            self.config.max_queue_bytes,
            self.config.max_total_queue_bytes,
            self.config.queue_policy,
        );
        let peer = match self.peers.get_mut(to) {
            Some(peer) => peer,
            None => self.peers.entry(to.clone()).or_default(),
        };
        // The data lane, unless the peer's connection is up and carries
        // no lanes: then both lanes share it.
        let lane = if message.lane() == Lane::Data
            && peer
                .conn
                .is_none_or(|c| self.conns.get(&c).is_some_and(|c| c.lanes))
        {
            Lane::Data
        } else {
            Lane::Control
        };
        loop {
            // As for one queue, a single message larger than the bound
            // still goes into empty queues (of both lanes).
            let (n, bytes) = peer.totals();
            let refused = if n >= max_n || (bytes + len > max_bytes && n > 0) {
                Refused::QueueFull
            } else if self.counters.queued_bytes + len > max_all && self.counters.queued_bytes > 0 {
                self.counters.all_queues_full += 1;
                Refused::AllQueuesFull
            } else {
                break;
            };
            match policy {
                QueuePolicy::Error => return Err(refused),
                QueuePolicy::DropNewest => {
                    self.counters.dropped += 1;
                    settle(&mut self.events, &mut self.progress, &message);
                    return Ok(());
                }
                QueuePolicy::DropOldest => {
                    // Only this identity's messages make room for it: the
                    // bound across all of them never drops another's.
                    let Some(old) = peer.pop_oldest(lane) else {
                        // Everything is in flight: nothing waiting can make room.
                        return Err(refused);
                    };
                    self.counters.queued_bytes -= old.message.data.len();
                    self.counters.dropped += 1;
                    settle(&mut self.events, &mut self.progress, &old.message);
                }
            }
        }
        let peer = peer.lane_mut(lane);
        peer.bytes += len;
        self.counters.queued_bytes += len;
        let mut entry = Entry::new(message, now);
        if entry.deadline.is_some() && self.next_sweep.is_none() {
            self.next_sweep = Some(later(now, self.config.ttl_sweep));
            self.timer_moved = true;
        }
        let writable = peer.conn.filter(|_| !peer.blocked);
        let Some(conn_id) = writable else {
            peer.queue.push_back(entry);
            if lane == Lane::Data {
                self.want_lane(to);
            }
            return Ok(());
        };
        if peer.queue.is_empty() {
            // Nothing waits before it: straight to the connection, with no
            // trip through the queue and no second peer lookup. Anything
            // but a clean write goes the queue's way below.
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.send_ack();
                if let Wrote::Sent = write_entry(conn, peer.acked_mode, &mut entry, now) {
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
        self.flush_at(to, lane, now, Some(entry));
        Ok(())
    }

    /// Puts back a message loaded from storage at start.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(crate) fn restore(&mut self, to: Identity, mut entry: Entry, now: Instant) {
        entry.restored = true;
        if entry.deadline.is_some() && self.next_sweep.is_none() {
            // The first timeout runs the sweep at once.
            self.next_sweep = Some(now);
        }
        let peer = self
            .peers
            .entry(to)
            .or_default()
            .lane_mut(entry.message.lane());
        peer.bytes += entry.message.data.len();
        self.counters.queued_bytes += entry.message.data.len();
        peer.queue.push_back(entry);
    }

    /// Writes what `ident`'s queue on `lane` holds, then `last`, while its
    /// connection (the lane's) takes them.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(super) fn flush_at(
        &mut self,
        ident: &Identity,
        lane: Lane,
        now: Instant,
        mut last: Option<Entry>,
    ) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        let peer = peer.lane_mut(lane);
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
        while let Some(mut entry) = peer.queue.pop_front().or_else(|| last.take()) {
            match write_entry(conn, peer.acked_mode, &mut entry, now) {
                Wrote::Sent => peer.now_in_flight(
                    entry,
                    now,
                    &mut self.counters,
                    &mut self.next_write_check,
                    &mut self.timer_moved,
                ),
                Wrote::Expired => {
                    peer.bytes -= entry.message.data.len();
                    self.counters.queued_bytes -= entry.message.data.len();
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

    /// Peers without acks: messages on `lane` whose bytes were written
    /// (by `tx`, the lane's connection) are delivered.
    pub(super) fn confirm_writes(&mut self, ident: &Identity, lane: Lane, tx: &T) {
        if let Some(peer) = self.peers.get_mut(ident).and_then(|p| match lane {
            Lane::Control => Some(p),
            Lane::Data => p.data.as_deref_mut(),
        }) {
            peer.confirm_written(tx, &mut self.counters, &mut self.events, &mut self.progress);
        }
    }

    /// Connections that had no room since the last call; the shell waits
    /// for each to have room, then calls
    /// [`handle_writable`](Self::handle_writable).
    pub(crate) fn poll_blocked(&mut self) -> std::vec::Drain<'_, (ConnectionId, T)> {
        self.blocked.drain(..)
    }

    /// A blocked connection has room again: what waits for it leaves, in
    /// order, while it takes it.
    pub(crate) fn handle_writable(&mut self, conn_id: ConnectionId, now: Instant) {
        let Some((ident, lane)) = self
            .conns
            .get(&conn_id)
            .and_then(|c| Some((c.ident.clone()?, c.lane())))
        else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&ident) else {
            return;
        };
        let peer = peer.lane_mut(lane);
        if peer.conn != Some(conn_id) {
            return;
        }
        peer.blocked = false;
        self.flush_at(&ident, lane, now, None);
    }

    /// Keep-alive, TTL sweeps and write confirmations.
    /// Drops messages whose TTL ran out while they waited.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(super) fn sweep(&mut self, now: Instant) {
        let events = &mut self.events;
        let counters = &mut self.counters;
        let progress = &mut self.progress;
        let mut expire = |lane: &mut Peer| {
            let bytes = &mut lane.bytes;
            lane.queue.retain(|e| {
                let live = e.deadline.is_none_or(|d| d >= now);
                if !live {
                    *bytes -= e.message.data.len();
                    counters.queued_bytes -= e.message.data.len();
                    counters.expired += 1;
                    settle(events, progress, &e.message);
                }
                live
            });
        };
        self.peers.retain(|_, peer| {
            expire(peer);
            if let Some(data) = peer.data.as_deref_mut() {
                expire(data);
            }
            peer.conn.is_some() || peer.totals().0 > 0
        });
    }

    /// Messages waiting for, or in flight to, `ident`.
    pub(crate) fn queue_depth(&self, ident: &Identity) -> usize {
        self.peers.get(ident).map_or(0, |p| p.totals().0)
    }

    /// Drops the messages waiting for `ident` (not those in flight on a
    /// live connection), counted as dropped; returns how many.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "counters grow by one per message (u64 never wraps), and queued bytes are sums of the lengths of messages held, taken off only as each leaves"
    )]
    pub(crate) fn purge(&mut self, ident: &Identity) -> usize {
        let Some(peer) = self.peers.get_mut(ident) else {
            return 0;
        };
        let mut purged = 0;
        for lane in [Lane::Control, Lane::Data] {
            let Some(peer) = (match lane {
                Lane::Control => Some(&mut *peer),
                Lane::Data => peer.data.as_deref_mut(),
            }) else {
                continue;
            };
            purged += peer.queue.len();
            for e in peer.queue.drain(..) {
                peer.bytes -= e.message.data.len();
                self.counters.queued_bytes -= e.message.data.len();
                self.counters.dropped += 1;
                settle(&mut self.events, &mut self.progress, &e.message);
            }
        }
        if peer.conn.is_none() && peer.totals().0 == 0 {
            self.peers.remove(ident);
        }
        purged
    }

    /// Every identity with a queue, with its depth.
    pub(crate) fn queue_depths(&self) -> Vec<(Identity, usize)> {
        self.peers
            .iter()
            .map(|(i, p)| (i.clone(), p.totals().0))
            .collect()
    }

    /// Nothing waiting and nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.peers.values().all(|p| p.totals().0 == 0)
    }
}
