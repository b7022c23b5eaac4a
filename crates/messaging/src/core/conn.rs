//! A connection as the core sees it: the handshake, the acknowledgements
//! owed to the peer, and keep-alive.

use std::sync::Arc;
use std::time::Instant;

use weft_link::{ConnectionId, ConnectorId};

use super::{
    ACK_EVERY, Close, ConnFacts, Core, CoreEvent, Ending, SenderSalt, Transmit, TxError, later,
};
use crate::certificate::CertificateNames;
use crate::config::DuplicateIdentity;
use crate::error::ProtocolError;
use crate::frame::{Frame, caps};
use crate::{Identity, Lane};

pub(super) struct Conn<T> {
    pub(super) tx: T,
    /// Each packet is a datagram (see [`ConnFacts::datagram`]).
    pub(super) datagram: bool,
    /// The connector that made the connection, when we dialled it.
    pub(super) connector: Option<ConnectorId>,
    /// Bytes the transport adds to each packet.
    overhead: u64,
    /// Bytes queued on the connection so far, counted as the transport
    /// counts them (a message to a peer without acks is delivered once
    /// the bytes written pass its end).
    pub(super) accepted: u64,
    pub(super) ident: Option<Identity>,
    /// The peer sent HELLO (before IDENT): its capabilities.
    pub(super) weft: Option<u32>,
    /// When the connection came up: its handshake must end by
    /// [`MessagingConfig::handshake_timeout`](crate::MessagingConfig::handshake_timeout) after.
    pub(super) opened: Instant,
    pub(super) last_recv: Instant,
    pub(super) ping_sent: Option<Instant>,
    /// Both sides take acks (known from IDENT on): messages from this
    /// peer may come again, as RESENT frames.
    pub(super) acks: bool,
    /// The peer's salt for the dedupe window (known from IDENT on).
    pub(super) sender_salt: SenderSalt,
    /// MESSAGE frames received on this connection.
    pub(super) received: u64,
    /// The count last acknowledged to the peer.
    pub(super) ack_sent: u64,
    /// When a held-back ACK must leave.
    pub(super) ack_due: Option<Instant>,
    /// With received ids recorded in a store: how many of the messages
    /// received are recorded, as far as acks may go. `None`: acks wait for
    /// nothing.
    pub(super) recorded: Option<u64>,
    /// The peer broke the protocol and the connection is closing: nothing
    /// more read from it is acted on (packets already read or in flight
    /// from the socket still arrive until it is gone).
    pub(super) failed: bool,
    /// The names of the certificate the peer presented and the TLS
    /// handshake verified; `None` without one.
    pub(super) certificate: Option<Arc<CertificateNames>>,
    /// A stand-in path (a relay): any other connection of its identity
    /// replaces it, and it never replaces one. See [`Core::mark_standby`].
    pub(super) standby: bool,
    /// Lanes can be opened beside it (see [`lanes`](super::lanes)).
    pub(super) lanes: bool,
    /// It is a lane of this connection.
    pub(super) lane_of: Option<ConnectionId>,
    /// Our handshake went out. With
    /// [`bind_identity`](crate::MessagingConfig::bind_identity), a
    /// connection a listener accepted holds it until the peer's identity
    /// is proved: a peer that cannot prove one never learns ours, nor
    /// sees a moment's connection.
    pub(super) introduced: bool,
}

impl<T: Transmit> Conn<T> {
    /// The lane it carries: a lane of another connection carries the data
    /// lane; every other connection, the control lane.
    pub(super) fn lane(&self) -> Lane {
        match self.lane_of {
            Some(_) => Lane::Data,
            None => Lane::Control,
        }
    }

    /// Open, and the peer has not identified itself yet.
    pub(super) fn unidentified(&self) -> bool {
        self.ident.is_none() && !self.failed
    }

    /// Queues one packet made of `head` and `body`, counting its bytes.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "a count of bytes queued in memory (u64 never wraps)"
    )]
    #[inline]
    pub(super) fn send(&mut self, head: &[u8], body: &bytes::Bytes) -> Result<(), TxError> {
        self.tx.try_send(head, body)?;
        self.accepted += self.overhead + (head.len() + body.len()) as u64;
        Ok(())
    }

    /// Queues our `handshake`: a connection that has sent nothing yet (or
    /// a datagram connection starting over) has room for it.
    pub(super) fn introduce(&mut self, handshake: &[Frame]) {
        for frame in handshake {
            let _ = self.send_frame(frame);
        }
        self.introduced = true;
    }

    /// Queues `frame`.
    pub(super) fn send_frame(&mut self, frame: &Frame) -> Result<(), TxError> {
        let (head, body) = frame.encode();
        self.send(head.as_slice(), &body)
    }

    /// Sends ACK for what arrived since the last one, if anything did.
    /// False when the connection had no room for it.
    pub(super) fn send_ack(&mut self) -> bool {
        // Only recorded messages are acknowledged; the rest wait for
        // `handle_recorded`, which acknowledges them.
        let upto = self.recorded.unwrap_or(self.received);
        if !self.acks || upto == self.ack_sent {
            if upto != self.received {
                self.ack_due = None;
            }
            return true;
        }
        if self.send_frame(&Frame::Ack(upto)).is_err() {
            return false;
        }
        self.ack_sent = upto;
        self.ack_due = None;
        true
    }
}

impl<T: Transmit> Core<T> {
    /// A connection without a verified certificate is up.
    #[cfg(test)]
    pub(crate) fn handle_connected(&mut self, conn: ConnectionId, tx: T, now: Instant) {
        self.handle_connected_with(conn, tx, ConnFacts::default(), now);
    }

    /// A connection is up, with what the shell knows of it (its peer
    /// verified as holding a certificate with `facts.certificate`'s names
    /// if any): introduce ourselves.
    pub(crate) fn handle_connected_with(
        &mut self,
        conn: ConnectionId,
        tx: T,
        facts: ConnFacts,
        now: Instant,
    ) {
        let ConnFacts {
            datagram,
            connector,
            inbound,
            overhead,
            certificate,
            lanes,
            lane_of,
        } = facts;
        self.unidentified.push_back(conn);
        self.unidentified_count = self.unidentified_count.saturating_add(1);
        let recorded = self.seen_log.as_ref().map(|_| 0);
        let standby = match self.standby_pending.iter().position(|&c| c == conn) {
            Some(at) => {
                self.standby_pending.remove(at);
                true
            }
            None => false,
        };
        let mut c = Conn {
            tx,
            datagram,
            connector,
            overhead,
            accepted: 0,
            ident: None,
            weft: None,
            opened: now,
            last_recv: now,
            ping_sent: None,
            acks: false,
            sender_salt: SenderSalt::default(),
            received: 0,
            ack_sent: 0,
            ack_due: None,
            recorded,
            failed: false,
            certificate,
            standby,
            lanes,
            lane_of,
            introduced: false,
        };
        if !(inbound && self.config.bind_identity) {
            c.introduce(&self.handshake());
        }
        self.conns.insert(conn, c);
        // Past the cap the oldest unidentified connection goes: a flood of
        // connections that never identify cannot keep a real peer, whose
        // handshake takes a round trip, from getting in.
        while self.unidentified_count > self.config.max_unidentified {
            let Some(oldest) = self.unidentified.pop_front() else {
                break;
            };
            if self.conns.get(&oldest).is_some_and(Conn::unidentified) {
                self.counters.unidentified_evicted =
                    self.counters.unidentified_evicted.saturating_add(1);
                self.fail(oldest, ProtocolError::TooManyUnidentified);
            }
        }
    }

    /// For a peer identified on `new` while `old` is up: when the two
    /// crossed (we dialled one, the peer the other), whether to keep the
    /// new one. Both sides keep the connection dialled by the smaller
    /// identity, so they settle on the same one whatever the order the
    /// two identified in. `None` when they did not cross.
    fn crossed(&self, peer: &Identity, new: ConnectionId, old: ConnectionId) -> Option<bool> {
        let dialled = |c: ConnectionId| self.conns.get(&c).map(|c| c.connector.is_some());
        let (new_ours, old_ours) = (dialled(new)?, dialled(old)?);
        if new_ours == old_ours || *peer == self.me {
            return None;
        }
        // The smaller identity's dialled connection wins: ours when we are
        // the smaller one.
        let ours_wins = self.me.as_str() < peer.as_str();
        Some(new_ours == ours_wins)
    }

    pub(super) fn handle_ident(&mut self, conn_id: ConnectionId, ident: Identity, now: Instant) {
        let conn = self.conns.get_mut(&conn_id).expect("caller checked");
        if conn.ident.is_some() {
            return; // a second IDENT on one connection is ignored, as snakeMQ does
        }
        // Before anything else: a peer whose certificate does not bind the
        // identity neither receives its queue nor displaces its holder.
        if self.config.bind_identity {
            let refused = match conn.certificate.as_deref() {
                None => Some(ProtocolError::NoCertificate(ident.clone())),
                Some(names) if !names.binds(ident.as_str()) => {
                    Some(ProtocolError::IdentityNotInCertificate {
                        claimed: ident.clone(),
                        names: names.binding_names(),
                    })
                }
                Some(_) => None,
            };
            if let Some(error) = refused {
                self.counters.identities_unbound =
                    self.counters.identities_unbound.saturating_add(1);
                return self.fail_claiming(conn_id, Some(ident), error);
            }
            if !conn.introduced {
                let handshake = self.handshake();
                self.conns
                    .get_mut(&conn_id)
                    .expect("caller checked")
                    .introduce(&handshake);
            }
        }
        let conn = self.conns.get(&conn_id).expect("caller checked");
        if let Some(first) = conn.lane_of {
            return self.identify_lane(conn_id, first, ident, now);
        }
        let known = self.peers.get(&ident);
        if known.is_none() && self.peers.len() >= self.config.max_identities {
            self.counters.identities_refused = self.counters.identities_refused.saturating_add(1);
            return self.fail(conn_id, ProtocolError::TooManyIdentities);
        }
        if let Some(old) = known.and_then(|p| p.conn) {
            let standby = |c: ConnectionId| self.conns.get(&c).is_some_and(|c| c.standby);
            // A stand-in (relay) path gives way to any other path and
            // never displaces one; both sides see the same connections as
            // stand-ins, so they keep the same one. Otherwise: crossed
            // dials, then the duplicate policy.
            let crossed = match (standby(old), standby(conn_id)) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => self.crossed(&ident, conn_id, old),
            };
            let keep_new = match (crossed, self.config.duplicate_identity) {
                (Some(keep_new), _) => keep_new,
                (None, DuplicateIdentity::RejectNew) => false,
                (None, DuplicateIdentity::ReplaceOld) => true,
            };
            // When they crossed, the connector that made the redundant one
            // may rest while the other lives, instead of dialling in vain
            // every second.
            let redundant = if keep_new { old } else { conn_id };
            let resting = crossed
                .and_then(|_| self.conns.get(&redundant))
                .and_then(|c| c.connector)
                .map(|connector| CoreEvent::Redundant {
                    ident: ident.clone(),
                    connector,
                });
            if !keep_new {
                self.events.extend(resting);
                return self.fail(conn_id, ProtocolError::DuplicateIdentity(ident));
            }
            if let Some(c) = self.conns.get_mut(&old) {
                self.closing.push_back(Close {
                    conn: old,
                    tx: c.tx.clone(),
                    how: Ending::Close,
                });
                c.ident = None;
                // Closing: nothing more from it is acted on.
                c.failed = true;
            }
            self.unbind(&ident, Lane::Control);
            // After the old one's end is reported, which wakes connectors.
            self.events.extend(resting);
        }
        let sender_salt = self.sender_salt(&ident);
        let conn = self.conns.get_mut(&conn_id).expect("caller checked");
        self.unidentified_count = self.unidentified_count.saturating_sub(1);
        conn.ident = Some(ident.clone());
        conn.sender_salt = sender_salt;
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
        self.prune_unidentified();
        self.settle_lanes(&ident, conn_id);
        self.flush_at(&ident, Lane::Control, now, None);
    }

    /// The live connection `ident` holds: its transmit side and its
    /// certificate's names.
    pub(crate) fn peer_connection(
        &self,
        ident: &Identity,
    ) -> Option<(&T, Option<&Arc<CertificateNames>>)> {
        let conn = self.conns.get(&self.peers.get(ident)?.conn?)?;
        if conn.failed {
            return None;
        }
        Some((&conn.tx, conn.certificate.as_ref()))
    }

    /// Drops connections that identified, failed or ended from the front
    /// of the handshake line, so that its front is the oldest connection
    /// still in its handshake.
    pub(super) fn prune_unidentified(&mut self) {
        while let Some(front) = self.unidentified.front() {
            if self.conns.get(front).is_some_and(Conn::unidentified) {
                break;
            }
            self.unidentified.pop_front();
        }
    }

    /// Closes connections whose handshake did not end in time.
    pub(super) fn expire_handshakes(&mut self, now: Instant) {
        self.prune_unidentified();
        let timeout = self.config.handshake_timeout;
        while let Some(&front) = self.unidentified.front() {
            let Some(conn) = self.conns.get(&front) else {
                break;
            };
            if now.saturating_duration_since(conn.opened) < timeout {
                break;
            }
            self.unidentified.pop_front();
            self.counters.handshake_timeouts = self.counters.handshake_timeouts.saturating_add(1);
            self.fail(front, ProtocolError::HandshakeTimeout(timeout));
            self.prune_unidentified();
        }
    }

    /// When the oldest handshake in progress runs out.
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        let conn = self.conns.get(self.unidentified.front()?)?;
        Some(later(conn.opened, self.config.handshake_timeout))
    }

    /// A batch of packets ended: acknowledges what it brought, at once
    /// when [`ACK_EVERY`] messages wait for it (or without an ack delay),
    /// else by `ack_delay` at the latest, earlier with an outgoing message.
    pub(crate) fn handle_batch_end(&mut self, now: Instant) {
        self.last_now = now;
        let delay = self.config.ack_delay;
        for conn in self.conns.values_mut() {
            // What was acknowledged was received before.
            let unacked = conn.received.saturating_sub(conn.ack_sent);
            if !conn.acks || unacked == 0 {
                continue;
            }
            if (unacked >= ACK_EVERY || delay.is_zero()) && conn.send_ack() {
                continue;
            }
            if conn.ack_due.is_none() {
                conn.ack_due = Some(later(now, delay));
                self.timer_moved = true;
            }
        }
    }

    /// A connection ended.
    pub(crate) fn handle_disconnected(&mut self, conn_id: ConnectionId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        if conn.unidentified() {
            self.unidentified_count = self.unidentified_count.saturating_sub(1);
            self.prune_unidentified();
        }
        let lane = conn.lane();
        if let Some(ident) = conn.ident {
            self.confirm_writes(&ident, lane, &conn.tx);
            if self
                .peers
                .get(&ident)
                .and_then(|p| p.lane(lane))
                .is_some_and(|p| p.conn == Some(conn_id))
            {
                self.unbind(&ident, lane);
                if lane == Lane::Data {
                    // Its messages wait for another lane.
                    self.want_lane(&ident);
                }
            }
            // An identity with nothing queued is forgotten: memory does not
            // grow with every identity ever seen.
            if self
                .peers
                .get(&ident)
                .is_some_and(|p| p.conn.is_none() && p.totals().0 == 0)
            {
                self.peers.remove(&ident);
            }
        }
    }
}
