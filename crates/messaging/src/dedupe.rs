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
//! [`record`]: DedupeWindow::record
//! [`check_and_record`]: DedupeWindow::check_and_record

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

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

/// Ids in the ring, with how many times each is there (a sender may reuse
/// an id it chose itself).
type IdCounts = HashMap<MessageId, u32, BuildHasherDefault<IdHasher>>;

/// The last `capacity` ids received; older ones are forgotten in arrival
/// order.
pub(crate) struct DedupeWindow {
    capacity: usize,
    /// Grows to `capacity`, then each id overwrites the oldest, at `next`.
    ring: Vec<MessageId>,
    /// Where the next id goes once the ring is full: the oldest id.
    next: usize,
    /// The ring's ids, while checks are coming.
    index: Option<IdCounts>,
    /// Ids recorded since the last check, while there is an index.
    since_check: usize,
}

impl DedupeWindow {
    pub(crate) fn new(capacity: usize) -> DedupeWindow {
        DedupeWindow {
            capacity,
            ring: Vec::new(),
            next: 0,
            index: None,
            since_check: 0,
        }
    }

    /// Remembers `id` without looking for it (its sender did not mark it as
    /// a possible resend).
    pub(crate) fn record(&mut self, id: MessageId) {
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(id);
        } else {
            let old = std::mem::replace(&mut self.ring[self.next], id);
            self.next += 1;
            if self.next == self.capacity {
                self.next = 0;
            }
            if let Some(index) = &mut self.index {
                if let Entry::Occupied(mut e) = index.entry(old) {
                    *e.get_mut() -= 1;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
            }
        }
        if let Some(index) = &mut self.index {
            *index.entry(id).or_insert(0) += 1;
            self.since_check += 1;
            if self.since_check > self.capacity {
                self.index = None;
            }
        }
    }

    /// Looks for `id` and remembers it: `true` when it is new (not in the
    /// window), `false` for a duplicate, which is not recorded again. True
    /// means new, as in link's pipe window (`pipe/dedupe.rs`).
    pub(crate) fn check_and_record(&mut self, id: MessageId) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let ring = &self.ring;
        let index = self.index.get_or_insert_with(|| {
            let mut index = IdCounts::with_capacity_and_hasher(ring.len(), Default::default());
            for id in ring {
                *index.entry(*id).or_insert(0) += 1;
            }
            index
        });
        self.since_check = 0;
        if index.contains_key(&id) {
            return false;
        }
        self.record(id);
        true
    }

    /// Whether an index is kept (for tests).
    #[cfg(test)]
    fn indexed(&self) -> bool {
        self.index.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    #[test]
    fn remembers_the_last_n() {
        let mut w = DedupeWindow::new(2);
        let (a, b, c) = (id(1), id(2), id(3));
        assert!(w.check_and_record(a));
        assert!(!w.check_and_record(a));
        assert!(w.check_and_record(b));
        assert!(w.check_and_record(c)); // a falls out
        assert!(w.check_and_record(a));
        assert!(!w.check_and_record(c));
    }

    #[test]
    fn plain_records_are_found_by_a_later_check() {
        let mut w = DedupeWindow::new(3);
        for n in 1..=4 {
            w.record(id(n));
        }
        assert!(!w.indexed(), "no check yet: no index");
        assert!(w.check_and_record(id(1)), "1 fell out of the window");
        assert!(!w.check_and_record(id(3)));
        assert!(!w.check_and_record(id(4)));
        // While indexed, records and evictions keep the index exact.
        w.record(id(5)); // 3 falls out; the ring is 4, 1, 5
        assert!(w.check_and_record(id(3)));
        assert!(!w.check_and_record(id(5)));
    }

    #[test]
    fn the_index_is_dropped_after_a_window_without_checks_and_rebuilt() {
        let mut w = DedupeWindow::new(4);
        assert!(w.check_and_record(id(1)));
        assert!(w.indexed());
        for n in 2..=6 {
            w.record(id(n));
        }
        assert!(!w.indexed());
        assert!(!w.check_and_record(id(6)));
        assert!(w.indexed());
        assert!(w.check_and_record(id(1)), "1 fell out while unindexed");
    }

    #[test]
    fn a_reused_id_stays_known_until_its_last_copy_leaves() {
        let mut w = DedupeWindow::new(3);
        assert!(w.check_and_record(id(9)));
        w.record(id(9)); // the sender reused its own id
        w.record(id(1)); // ring: 9, 9, 1
        w.record(id(2)); // first 9 leaves: 9, 1, 2
        assert!(!w.check_and_record(id(9)));
        w.record(id(3)); // last 9 leaves
        assert!(w.check_and_record(id(9)));
    }

    #[test]
    fn the_oldest_falls_out_first_over_many_turns_of_the_ring() {
        let mut w = DedupeWindow::new(3);
        for n in 0..20u8 {
            w.record(id(n));
            // The window is the last three ids recorded, whatever the turn.
            let kept: Vec<u8> = (n.saturating_sub(2)..=n).collect();
            let mut ring: Vec<u8> = w.ring.iter().map(|i| i.0[0]).collect();
            ring.sort_unstable();
            assert_eq!(ring, kept, "after {n}");
        }
        assert!(!w.check_and_record(id(19)));
        assert!(!w.check_and_record(id(17)));
        // Indexed now: 16 comes back and pushes 17, the oldest, out.
        assert!(w.check_and_record(id(16)), "16 fell out");
        assert!(w.check_and_record(id(17)), "17 fell out while indexed");
        assert!(!w.check_and_record(id(16)));
        assert!(!w.check_and_record(id(19)));
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let mut w = DedupeWindow::new(0);
        w.record(id(1));
        assert!(w.check_and_record(id(1)));
        assert!(w.check_and_record(id(1)));
    }
}
