//! The dedupe window: plain logic, no I/O.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

use super::config::{Dedupe, DedupeId};
use crate::ConnectionId;
use crate::window::RecentIds;

/// Who sent a message, for deduplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SenderKey {
    /// Its normalised socket address.
    Addr(SocketAddr),
    /// Its connection, when it has no address (Unix sockets).
    Connection(ConnectionId),
}

/// The ids of the last `window` messages accepted from each sender.
pub(crate) struct DedupeWindow {
    window: usize,
    id: DedupeId,
    hasher: RandomState,
    /// Each sender's recent ids, as keyed hashes.
    senders: HashMap<SenderKey, RecentIds<u64>>,
}

impl DedupeWindow {
    pub(crate) fn new(config: Dedupe) -> DedupeWindow {
        DedupeWindow {
            window: config.window,
            id: config.id,
            hasher: RandomState::new(),
            senders: HashMap::new(),
        }
    }

    /// Looks for the id of `data` among those `sender` sent recently and
    /// remembers it, pushing out the oldest: true when it is new (or
    /// `data` has no id), false for a duplicate, which is not remembered
    /// again. True means new, as in weft-messaging's window.
    pub(crate) fn check_and_record(&mut self, sender: SenderKey, data: &[u8]) -> bool {
        if self.window == 0 {
            return true;
        }
        let id = match &self.id {
            DedupeId::Payload => data,
            DedupeId::Regex(re) => match re.captures(data).and_then(|c| c.get(1)) {
                Some(m) => m.as_bytes(),
                None => return true,
            },
        };
        let hash = self.hasher.hash_one(id);
        let window = self.window;
        self.senders
            .entry(sender)
            .or_insert_with(|| RecentIds::new(window))
            .check_and_record(hash)
    }

    /// Forgets a sender's ids (its connection ended).
    pub(crate) fn forget(&mut self, sender: &SenderKey) {
        self.senders.remove(sender);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> SenderKey {
        SenderKey::Addr(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn payload_window_per_sender() {
        let mut f = DedupeWindow::new(Dedupe::payload(2));
        assert!(f.check_and_record(key(1), b"a"));
        assert!(!f.check_and_record(key(1), b"a"));
        assert!(f.check_and_record(key(2), b"a"), "another sender");
        assert!(f.check_and_record(key(1), b"b"));
        assert!(f.check_and_record(key(1), b"c"), "pushes a out");
        assert!(f.check_and_record(key(1), b"a"), "a left the window");
        assert!(!f.check_and_record(key(1), b"c"));
        f.forget(&key(1));
        assert!(f.check_and_record(key(1), b"c"));
    }

    #[test]
    fn regex_ids_and_messages_without_one() {
        let re = regex::bytes::Regex::new(r"^id=(\d+);").unwrap();
        let mut f = DedupeWindow::new(Dedupe::regex(8, re));
        assert!(f.check_and_record(key(1), b"id=7;hello"));
        assert!(!f.check_and_record(key(1), b"id=7;other body"));
        assert!(f.check_and_record(key(1), b"id=8;hello"));
        assert!(f.check_and_record(key(1), b"no id"));
        assert!(
            f.check_and_record(key(1), b"no id"),
            "no id, never a duplicate"
        );
    }

    #[test]
    fn zero_window_is_off() {
        let mut f = DedupeWindow::new(Dedupe::payload(0));
        assert!(f.check_and_record(key(1), b"a"));
        assert!(f.check_and_record(key(1), b"a"));
    }
}
