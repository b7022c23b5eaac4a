//! The window of the names of recent publications routed to us, which drops
//! a second copy of a publication while routes change (see
//! [`Interest`](crate::interest::Interest)).
//!
//! It is weft-link's [`RecentIds`], looked into only when a name could be
//! in it. A publisher numbers its publications in order, so a name whose
//! sequence number is above every name of its publisher in the window is
//! new without a look: it is only recorded, which costs no hashing while
//! no check comes. The window follows one publisher at a time this way,
//! the one whose publications keep coming: another publisher's names are
//! looked up until a whole window has passed since its first one, when
//! the highest of its names seen since is the highest of its names in the
//! window, and it is followed instead.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use weft_link::window::RecentIds;

/// A publication's name: its publisher and epoch hashed, and its sequence
/// number.
pub(crate) type Name = (u64, u64);

/// The last names recorded, as [`RecentIds`] keeps them. See the
/// [module documentation](self).
pub(crate) struct RecentNames {
    ids: RecentIds<Name, NameHashing>,
    capacity: u64,
    /// Names recorded so far.
    recorded: u64,
    /// The publisher followed and the highest sequence number of its names
    /// in the window.
    followed: Option<(u64, u64)>,
    /// Another publisher, how many names had been recorded before its
    /// first one since it became the candidate, and the highest sequence
    /// number of its names since.
    candidate: Option<(u64, u64, u64)>,
}

impl RecentNames {
    /// A window of the last `capacity` names (0 remembers nothing).
    pub(crate) fn new(capacity: usize) -> RecentNames {
        RecentNames {
            ids: RecentIds::new(capacity),
            capacity: capacity as u64,
            recorded: 0,
            followed: None,
            candidate: None,
        }
    }

    /// `true` when `name` is new (and now remembered), `false` for a
    /// duplicate, which is not recorded again: what
    /// [`RecentIds::check_and_record`] answers.
    pub(crate) fn check_and_record(&mut self, name: Name) -> bool {
        let (publisher, seq) = name;
        if let Some((followed, highest)) = &mut self.followed {
            if *followed == publisher {
                if seq > *highest {
                    *highest = seq;
                    self.ids.record(name);
                    self.recorded += 1;
                    return true;
                }
                // At or below the highest, which stays the highest.
                let new = self.ids.check_and_record(name);
                self.recorded += u64::from(new);
                return new;
            }
        }
        if !self.ids.check_and_record(name) {
            return false;
        }
        let before = self.recorded;
        self.recorded += 1;
        let (since, highest) = match self.candidate {
            Some((c, since, highest)) if c == publisher => (since, highest.max(seq)),
            _ => (before, seq),
        };
        // Its names recorded before `since` have left the window once a
        // whole window was recorded after them.
        if since == 0 || self.recorded - since >= self.capacity {
            self.followed = Some((publisher, highest));
            self.candidate = None;
        } else {
            self.candidate = Some((publisher, since, highest));
        }
        true
    }
}

/// Hashes names for the window's index: a name is already a hash and a
/// sequence number, so two multiplications mix it, with a key drawn for
/// each index so that nobody can choose names that collide in it.
#[derive(Clone)]
struct NameHashing(u64);

impl Default for NameHashing {
    fn default() -> NameHashing {
        NameHashing(RandomState::new().hash_one(0u64))
    }
}

impl BuildHasher for NameHashing {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(self.0)
    }
}

/// The hasher of [`NameHashing`].
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }

    fn finish(&self) -> u64 {
        // splitmix64's finish, so that every bit of the state reaches
        // the bits a table looks at.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answers as a plain window, name for name, over a mix of
    /// publishers in turn and interleaved, with duplicates near and far
    /// and sequence numbers going back.
    #[test]
    fn answers_as_the_plain_window_does() {
        for capacity in [0, 1, 5, 64] {
            let mut fast = RecentNames::new(capacity);
            let mut plain: RecentIds<Name> = RecentIds::new(capacity);
            let mut x: u64 = 0x2545_F491_4F6C_DD1D;
            let mut next = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let mut seqs = [0u64; 3];
            for i in 0..20_000 {
                // Stretches of one publisher, then of all three mixed.
                let publisher = if (i / 500) % 2 == 0 {
                    (i / 1000) % 3
                } else {
                    next(3)
                };
                let p = publisher as usize;
                let seq = match next(10) {
                    // A copy of a recent one, or of one long gone.
                    0 => seqs[p].saturating_sub(next(8)),
                    1 => seqs[p].saturating_sub(next(200)),
                    _ => {
                        seqs[p] += 1 + next(2);
                        seqs[p]
                    }
                };
                let name = (publisher, seq);
                assert_eq!(
                    fast.check_and_record(name),
                    plain.check_and_record(name),
                    "name {name:?}, step {i}, capacity {capacity}"
                );
            }
        }
    }
}
