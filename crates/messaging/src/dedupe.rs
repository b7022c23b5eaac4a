//! A bounded window of recently seen message ids.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::MessageId;

/// Message ids are random: their first eight bytes are already a good hash.
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

type IdSet = HashSet<MessageId, BuildHasherDefault<IdHasher>>;

/// The last `capacity` ids seen; older ones are forgotten in arrival order.
pub(crate) struct DedupeWindow {
    capacity: usize,
    seen: IdSet,
    order: VecDeque<MessageId>,
}

impl DedupeWindow {
    pub(crate) fn new(capacity: usize) -> DedupeWindow {
        DedupeWindow {
            capacity,
            seen: IdSet::default(),
            order: VecDeque::new(),
        }
    }

    /// Records `id`; returns false when it is already in the window.
    pub(crate) fn insert(&mut self, id: MessageId) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_n() {
        let mut w = DedupeWindow::new(2);
        let (a, b, c) = (MessageId([1; 16]), MessageId([2; 16]), MessageId([3; 16]));
        assert!(w.insert(a));
        assert!(!w.insert(a));
        assert!(w.insert(b));
        assert!(w.insert(c)); // a falls out
        assert!(w.insert(a));
        assert!(!w.insert(c));
    }
}
