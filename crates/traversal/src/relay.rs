//! One relay channel inside the rendezvous: two ends, a bounded buffer per
//! direction, hop-by-hop windows, and the pair's rate and byte cap.
//!
//! Flow control is credit-based on each hop. A side may send the
//! rendezvous at most `allowance` bytes; the rendezvous grants it more
//! (`RelayWindow`) only as it forwards what it holds, so what it holds per
//! direction never exceeds the window. It forwards to a side only within
//! the credit that side granted, and only as the pair's token bucket
//! allows. At the rate limit it therefore stops forwarding and stops
//! granting: the sender's window runs out and it waits, nothing is dropped.

use std::collections::VecDeque;

use bytes::Bytes;
use weft_link::ConnectionId;
use weft_messaging::Identity;

/// One end of a channel.
#[derive(Debug)]
pub(crate) struct End {
    pub(crate) conn: ConnectionId,
    pub(crate) identity: Identity,
    /// Bytes this end may still send us.
    pub(crate) allowance: u64,
    /// Bytes we may still send this end (it granted them).
    pub(crate) credit: u64,
    /// Bytes forwarded from this end that it was not granted back yet.
    pub(crate) owed: u64,
    /// What this end sent that waits to go to the other end.
    pub(crate) held: VecDeque<Bytes>,
    pub(crate) held_bytes: u64,
}

impl End {
    pub(crate) fn new(conn: ConnectionId, identity: Identity, window: u32) -> End {
        End {
            conn,
            identity,
            allowance: u64::from(window),
            credit: u64::from(window),
            owed: 0,
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }
}

/// A relay channel between two registrations.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) ends: [End; 2],
    /// Bytes forwarded on this channel, both directions.
    pub(crate) relayed: u64,
}

impl Channel {
    /// Which end `conn` is.
    pub(crate) fn side_of(&self, conn: ConnectionId) -> Option<usize> {
        self.ends.iter().position(|e| e.conn == conn)
    }

    /// Whether anything waits to be forwarded.
    pub(crate) fn holds_data(&self) -> bool {
        self.ends.iter().any(|e| e.held_bytes > 0)
    }

    /// Whether data waits for which the receiving side has credit, so that
    /// only the rate holds it back.
    pub(crate) fn rate_bound(&self) -> bool {
        (0..2).any(|s| self.ends[s].held_bytes > 0 && self.ends[1 - s].credit > 0)
    }
}
