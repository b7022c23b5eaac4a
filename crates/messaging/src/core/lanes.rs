//! The data lane: messages sent [on it](crate::Lane::Data) wait in a queue
//! of their own and travel on a lane of the peer's connection (a further
//! stream of a `quic://` connection), so that they hold up nothing on the
//! control lane.
//!
//! - A message for the data lane is queued on it unless the peer's
//!   connection is up and carries no lanes; then it goes on the control
//!   lane, behind what waits there.
//! - With messages waiting and no lane up, the core asks the shell for a
//!   lane beside the peer's connection ([`poll_open_lane`]), once at a
//!   time. The lane comes up as a connection that introduces itself like
//!   any other (HELLO, IDENT); its IDENT must name the identity of the
//!   connection it rides beside. It then carries the data lane's
//!   messages, acknowledged on it and resent after its end as on any
//!   connection.
//! - Either side may open a lane: the first one that identifies carries
//!   our data lane; any other only brings the peer's messages.
//! - A lane that cannot be opened ([`handle_lane_failed`]) sends the data
//!   lane's waiting messages to the control lane, and no lane is asked
//!   for beside that connection again; so does a peer connection that
//!   identifies and carries no lanes.
//!
//! [`poll_open_lane`]: Core::poll_open_lane
//! [`handle_lane_failed`]: Core::handle_lane_failed

use std::time::Instant;

use weft_link::ConnectionId;

use super::{Core, Transmit};
use crate::error::ProtocolError;
use crate::frame::caps;
use crate::{Identity, Lane};

impl<T: Transmit> Core<T> {
    /// The next connection to open a lane beside, for the shell: it opens
    /// one (which comes up as a connection, with
    /// [`ConnFacts::lane_of`](super::ConnFacts::lane_of) naming this one),
    /// or calls [`handle_lane_failed`](Self::handle_lane_failed).
    pub(crate) fn poll_open_lane(&mut self) -> Option<ConnectionId> {
        self.lanes_wanted.pop()
    }

    /// The lane the shell was asked for beside `first` could not be
    /// opened: the data lane's messages go on the control lane, and no
    /// lane is asked for beside `first` again.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "queued bytes are sums of the lengths of messages held, moved whole from one lane to the other"
    )]
    pub(crate) fn handle_lane_failed(&mut self, first: ConnectionId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&first) else {
            return;
        };
        conn.lanes = false;
        let Some(ident) = conn.ident.clone() else {
            return;
        };
        tracing::debug!(conn = %first, %ident, "no lane: the data lane shares the connection");
        if let Some(peer) = self.peers.get_mut(&ident) {
            peer.lane_asked = false;
        }
        self.share_connection(&ident);
        self.flush_at(&ident, Lane::Control, now, None);
    }

    /// Asks the shell for a lane beside `ident`'s connection when the data
    /// lane has messages waiting and no lane, none was asked for yet, and
    /// the connection can carry one.
    pub(super) fn want_lane(&mut self, ident: &Identity) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        let waiting = peer
            .data
            .as_deref()
            .is_some_and(|d| d.conn.is_none() && !d.queue.is_empty());
        if !waiting || peer.lane_asked {
            return;
        }
        let Some(first) = peer.conn else {
            return;
        };
        if !self.conns.get(&first).is_some_and(|c| c.lanes && !c.failed) {
            return;
        }
        peer.lane_asked = true;
        self.lanes_wanted.push(first);
    }

    /// `ident` identified on `conn`, its connection: the data lane's
    /// messages wait for a lane, or, when the connection carries none, go
    /// on the control lane.
    pub(super) fn settle_lanes(&mut self, ident: &Identity, conn: ConnectionId) {
        if self.conns.get(&conn).is_some_and(|c| c.lanes) {
            self.want_lane(ident);
        } else {
            self.share_connection(ident);
        }
    }

    /// Moves the messages waiting on `ident`'s data lane, which has no
    /// lane, behind those waiting on the control lane.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "queued bytes are sums of the lengths of messages held, moved whole from one lane to the other"
    )]
    fn share_connection(&mut self, ident: &Identity) {
        let Some(peer) = self.peers.get_mut(ident) else {
            return;
        };
        let Some(data) = peer.data.as_deref_mut().filter(|d| d.conn.is_none()) else {
            return;
        };
        let moved: usize = data.queue.iter().map(|e| e.message.data.len()).sum();
        let queue = std::mem::take(&mut data.queue);
        data.bytes -= moved;
        peer.bytes += moved;
        peer.queue.extend(queue);
    }

    /// A lane of `first` identified as `ident`: it must be `first`'s
    /// identity, and the first lane of the peer to identify carries our
    /// data lane.
    pub(super) fn identify_lane(
        &mut self,
        conn_id: ConnectionId,
        first: ConnectionId,
        ident: Identity,
        now: Instant,
    ) {
        // A lane rides the same QUIC connection, so the same TLS peer, as
        // `first`: it claims what `first` claimed, or nothing.
        if let Some(named) = self.conns.get(&first).and_then(|c| c.ident.clone())
            && named != ident
        {
            return self.fail_claiming(
                conn_id,
                Some(ident.clone()),
                ProtocolError::LaneIdentity {
                    connection: named,
                    claimed: ident,
                },
            );
        }
        if !self.peers.contains_key(&ident) && self.peers.len() >= self.config.max_identities {
            self.counters.identities_refused = self.counters.identities_refused.saturating_add(1);
            return self.fail(conn_id, ProtocolError::TooManyIdentities);
        }
        let sender_salt = self.sender_salt(&ident);
        let acks = self.config.acks;
        let conn = self.conns.get_mut(&conn_id).expect("caller checked");
        self.unidentified_count = self.unidentified_count.saturating_sub(1);
        conn.ident = Some(ident.clone());
        conn.sender_salt = sender_salt;
        let acks_both = acks && conn.weft.is_some_and(|c| c & caps::ACKS != 0);
        conn.acks = acks_both;
        let peer = self.peers.entry(ident.clone()).or_default();
        let data = peer.lane_mut(Lane::Data);
        if data.conn.is_none() {
            data.conn = Some(conn_id);
            data.acked_mode = acks_both;
            data.acked = 0;
            data.blocked = false;
            peer.lane_asked = false;
        }
        tracing::debug!(conn = %conn_id, %first, %ident, acks = acks_both, "lane identified");
        self.prune_unidentified();
        self.flush_at(&ident, Lane::Data, now, None);
    }
}
