//! Datagram (`udp://`) connections: a peer that restarted on the same
//! address.
//!
//! A stream ends when either side goes away, so a restarted peer comes
//! back on a new connection with a new handshake. A datagram connection
//! has no end to see: a UDP listener that restarts on its port takes the
//! next datagram from an old peer as a new connection and greets it with
//! VERSION, HELLO and IDENT (as every new connection is greeted), while the
//! old peer still has the old listener's identity on its side of the same
//! addresses. The rules that make both sides meet again:
//!
//! - A VERSION on a datagram connection that is identified is a peer
//!   starting over: the connection is reported disconnected (what was in
//!   flight goes back to the front of the queue, to be sent again as
//!   RESENT), forgets the peer's identity, acknowledgements and
//!   capabilities, answers with a handshake of its own and waits for the
//!   peer's IDENT, as a new connection does. Only a peer's first frame on
//!   a new connection is VERSION, so this happens once per restart.
//! - MESSAGE before IDENT on a datagram connection is dropped, not a
//!   protocol error: it is an old peer's datagram reaching a restarted
//!   listener, whose greeting asks that peer to identify again. The peer
//!   sends the message again once identified (with acks), so nothing is
//!   lost; without acks it was lost with the restart, as on a stream.
//!
//! Nothing here is a new frame: a snakeMQ peer sees only what a new
//! connection shows it. Streams never take these paths: both are reached
//! only from frames that are rare on a connection (a second VERSION, a
//! MESSAGE before IDENT), and the transport is asked there.

use std::time::Instant;

use weft_link::ConnectionId;

use super::{Core, SenderSalt, Transmit};
use crate::Lane;
use crate::frame::{EXTENSION_VERSION, Frame, PROTOCOL_VERSION, caps};

impl<T: Transmit> Core<T> {
    /// Our greeting: VERSION, then weft's HELLO (snakeMQ ignores it), then
    /// IDENT, so that when the peer's IDENT arrives we already know
    /// whether it speaks weft.
    pub(super) fn handshake(&self) -> [Frame; 3] {
        let capabilities = if self.config.acks {
            caps::ACKS | caps::PUBSUB
        } else {
            caps::PUBSUB
        };
        [
            Frame::Version(PROTOCOL_VERSION),
            Frame::Hello {
                version: EXTENSION_VERSION,
                capabilities,
            },
            Frame::Ident(self.me.clone()),
        ]
    }

    /// A VERSION arrived on `conn_id` after its peer identified itself.
    /// On a datagram connection the peer started over (see the module
    /// docs); on a stream it is ignored, as snakeMQ does.
    pub(super) fn handle_version_again(&mut self, conn_id: ConnectionId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if !conn.datagram {
            return;
        }
        let Some(ident) = conn.ident.take() else {
            return;
        };
        tracing::debug!(conn = %conn_id, %ident, "peer started over: handshake again");
        // A new connection on the same addresses, as far as anything that
        // counts per connection knows.
        conn.weft = None;
        conn.opened = now;
        conn.last_recv = now;
        conn.ping_sent = None;
        conn.acks = false;
        conn.sender_salt = SenderSalt::default();
        conn.received = 0;
        conn.ack_sent = 0;
        conn.ack_due = None;
        conn.recorded = self.seen_log.as_ref().map(|_| 0);
        let tx = conn.tx.clone();
        // What was written to a peer without acks counts as delivered, as
        // when a stream drops.
        self.confirm_writes(&ident, Lane::Control, &tx);
        if self
            .peers
            .get(&ident)
            .is_some_and(|p| p.conn == Some(conn_id))
        {
            self.unbind(&ident, Lane::Control);
        }
        self.unidentified.push_back(conn_id);
        self.unidentified_count = self.unidentified_count.saturating_add(1);
        let handshake = self.handshake();
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.introduce(&handshake);
        }
        self.timer_moved = true;
    }
}
