//! A bounded window of recently seen ids, cheap to append to and searched
//! only when a caller asks: the recent-ids window that weft-link's pipes
//! and weft-messaging both deduplicate with.
//!
//! [`record`](RecentIds::record) appends an id (a copy into a ring);
//! [`check_and_record`](RecentIds::check_and_record) answers `true` for an
//! id not in the window (it is new, and now remembered) and `false` for
//! one that is (a duplicate, not remembered again). The first check builds
//! an index of the ring; the index is kept up to date while checks keep
//! coming and dropped once a whole window of plain records has passed
//! without one, so a caller that checks rarely pays no hashing at all.
//!
//! ```
//! use weft_link::window::RecentIds;
//! let mut seen: RecentIds<u64> = RecentIds::new(2);
//! assert!(seen.check_and_record(1));
//! assert!(!seen.check_and_record(1), "a duplicate");
//! seen.record(2);
//! seen.record(3); // 1 falls out
//! assert!(seen.check_and_record(1));
//! ```

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hash};

/// The last `capacity` ids seen; older ones are forgotten in arrival
/// order. An id recorded twice stays known until its last copy leaves.
pub struct RecentIds<K, S = RandomState> {
    capacity: usize,
    /// Grows to `capacity`, then each id overwrites the oldest, at `next`.
    ring: Vec<K>,
    /// Where the next id goes once the ring is full: the oldest id.
    next: usize,
    /// The ring's ids, while checks are coming.
    index: Option<HashMap<K, u32, S>>,
    /// Ids recorded since the last check, while there is an index.
    since_check: usize,
}

impl<K: Copy + Eq + Hash, S: BuildHasher + Default> RecentIds<K, S> {
    /// A window of the last `capacity` ids (0 remembers nothing).
    pub fn new(capacity: usize) -> RecentIds<K, S> {
        RecentIds {
            capacity,
            ring: Vec::new(),
            next: 0,
            index: None,
            since_check: 0,
        }
    }

    /// Remembers `id` without looking for it (the caller knows it is new,
    /// and only needs it found by later checks).
    pub fn record(&mut self, id: K) {
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
    /// window), `false` for a duplicate, which is not recorded again.
    pub fn check_and_record(&mut self, id: K) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let ring = &self.ring;
        let index = self.index.get_or_insert_with(|| {
            let mut index = HashMap::with_capacity_and_hasher(ring.len(), S::default());
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

    type DedupeWindow = RecentIds<u8>;

    fn id(n: u8) -> u8 {
        n
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
            let mut ring: Vec<u8> = w.ring.clone();
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
