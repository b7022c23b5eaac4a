//! A bounded window of recently received message ids, cheap to append to
//! and searched only for messages that may be duplicates.
//!
//! Between weft peers with acks, a message is sent twice only when its
//! sender marks it (a RESENT frame: resent after a reconnect, or loaded
//! from storage at start). So every received id is [`record`]ed, which is
//! a 16-byte copy into a ring, and only marked ones go through
//! [`check_and_record`], which answers `true` for an id not in the window
//! (a new message) and `false` for a duplicate. The first check builds an
//! index of the ring; the index is kept up to date while checks keep
//! coming and dropped once a whole window of plain messages has passed
//! without one, so the steady state costs no hashing at all.
//!
//! That window is weft-link's [`RecentIds`], shared with the pipes.
//!
//! [`record`]: RecentIds::record
//! [`check_and_record`]: RecentIds::check_and_record

use std::hash::{BuildHasherDefault, Hasher};

use weft_link::window::RecentIds;

use crate::MessageId;

/// Message ids are random: their bytes are already a good hash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

/// The window of received ids: weft-link's recent-ids window, keyed by
/// message id (salted per sender) with a hasher that trusts the id's
/// randomness.
pub(crate) type DedupeWindow = RecentIds<MessageId, BuildHasherDefault<IdHasher>>;
