//! The server's memory of recent results, so that a call sent again (same
//! caller, same id) is answered without running the method again. No I/O.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use weft_messaging::Identity;

/// What each entry costs beyond its frame, for the byte bound.
pub(crate) const ENTRY_OVERHEAD: usize = 64;

#[derive(Default)]
struct CallerResults {
    order: VecDeque<u64>,
    frames: HashMap<u64, Bytes>,
    bytes: usize,
}

impl CallerResults {
    fn pop_oldest(&mut self) -> usize {
        while let Some(id) = self.order.pop_front() {
            if let Some(frame) = self.frames.remove(&id) {
                let cost = frame.len() + ENTRY_OVERHEAD;
                self.bytes -= cost;
                return cost;
            }
        }
        0
    }
}

/// Encoded RESULT frames by caller and call id. Per caller at most
/// `per_caller` entries, first in first out; all callers together at most
/// `max_bytes`, by dropping the oldest entry of the caller holding the most.
pub(crate) struct ResultCache {
    per_caller: usize,
    max_bytes: usize,
    callers: HashMap<Identity, CallerResults>,
    bytes: usize,
    entries: usize,
    pub(crate) evicted: u64,
}

impl ResultCache {
    pub(crate) fn new(per_caller: usize, max_bytes: usize) -> ResultCache {
        ResultCache {
            per_caller,
            max_bytes,
            callers: HashMap::new(),
            bytes: 0,
            entries: 0,
            evicted: 0,
        }
    }

    /// The result of `caller`'s call `id`, if remembered.
    pub(crate) fn get(&self, caller: &Identity, id: u64) -> Option<Bytes> {
        self.callers.get(caller)?.frames.get(&id).cloned()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Bytes held (frames plus overhead).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Remembers a result; returns how many older ones were dropped.
    pub(crate) fn insert(&mut self, caller: &Identity, id: u64, frame: Bytes) -> usize {
        let cost = frame.len() + ENTRY_OVERHEAD;
        if self.per_caller == 0 || cost > self.max_bytes {
            return 0;
        }
        let mut dropped = 0;
        let results = self.callers.entry(caller.clone()).or_default();
        if let Some(old) = results.frames.insert(id, frame) {
            // The same id again (a cancelled call's marker replaced): keep
            // its place in the order.
            let old_cost = old.len() + ENTRY_OVERHEAD;
            results.bytes = results.bytes - old_cost + cost;
            self.bytes = self.bytes - old_cost + cost;
        } else {
            results.order.push_back(id);
            results.bytes += cost;
            self.bytes += cost;
            self.entries += 1;
            while results.frames.len() > self.per_caller {
                self.bytes -= results.pop_oldest();
                self.entries -= 1;
                dropped += 1;
            }
        }
        while self.bytes > self.max_bytes {
            let Some(biggest) = self
                .callers
                .iter()
                .max_by_key(|(_, r)| r.bytes)
                .map(|(who, _)| who.clone())
            else {
                break;
            };
            let results = self.callers.get_mut(&biggest).expect("just found");
            let freed = results.pop_oldest();
            if freed == 0 {
                break;
            }
            self.bytes -= freed;
            self.entries -= 1;
            dropped += 1;
            if results.frames.is_empty() {
                self.callers.remove(&biggest);
            }
        }
        self.evicted += dropped as u64;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(s: &str) -> Identity {
        Identity::new(s).unwrap()
    }

    #[test]
    fn first_in_first_out_per_caller() {
        let mut c = ResultCache::new(2, usize::MAX);
        let a = who("a");
        assert_eq!(c.insert(&a, 1, Bytes::from_static(b"1")), 0);
        assert_eq!(c.insert(&a, 2, Bytes::from_static(b"2")), 0);
        assert_eq!(c.insert(&who("b"), 9, Bytes::from_static(b"9")), 0);
        assert_eq!(c.insert(&a, 3, Bytes::from_static(b"3")), 1);
        assert_eq!(c.get(&a, 1), None);
        assert_eq!(c.get(&a, 2).as_deref(), Some(&b"2"[..]));
        assert_eq!(c.get(&a, 3).as_deref(), Some(&b"3"[..]));
        assert_eq!(c.get(&who("b"), 9).as_deref(), Some(&b"9"[..]));
        assert_eq!(c.len(), 3);
        assert_eq!(c.evicted, 1);
    }

    #[test]
    fn byte_bound_takes_from_the_biggest_caller() {
        let cost = 10 + ENTRY_OVERHEAD;
        let mut c = ResultCache::new(100, 4 * cost);
        let (a, b) = (who("a"), who("b"));
        for id in 0..3 {
            c.insert(&a, id, Bytes::from(vec![0; 10]));
        }
        c.insert(&b, 0, Bytes::from(vec![0; 10]));
        assert_eq!(c.bytes(), 4 * cost);
        assert_eq!(c.insert(&b, 1, Bytes::from(vec![0; 10])), 1);
        assert_eq!(c.get(&a, 0), None, "a held the most: its oldest went");
        assert!(c.get(&b, 0).is_some() && c.get(&b, 1).is_some());
        assert!(c.bytes() <= 4 * cost);
    }

    #[test]
    fn replacing_an_entry_keeps_counts() {
        let mut c = ResultCache::new(2, usize::MAX);
        let a = who("a");
        c.insert(&a, 1, Bytes::from_static(b"x"));
        c.insert(&a, 1, Bytes::from_static(b"yy"));
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), 2 + ENTRY_OVERHEAD);
        assert_eq!(c.get(&a, 1).as_deref(), Some(&b"yy"[..]));
    }

    #[test]
    fn off_when_zero() {
        let mut c = ResultCache::new(0, usize::MAX);
        c.insert(&who("a"), 1, Bytes::from_static(b"x"));
        assert_eq!(c.get(&who("a"), 1), None);
    }
}
