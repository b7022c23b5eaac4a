//! Keyed hashing for the core's hash maps, whose keys (identities and ids)
//! arrive from the network.
//!
//! [`KeyedHashing`] builds std's [`DefaultHasher`] (SipHash) and feeds it
//! a secret 64-bit key before the data: without the key, nobody can
//! choose names that collide in a map, as with std's `RandomState`. Unlike
//! `RandomState`, the key is the constructor's: a participant draws one at
//! random ([`KeyedHashing::random`]), and the simulator derives one from
//! its seed, so that the maps' order of iteration, and everything that
//! follows from it, is the same in every run of a seed.
//!
//! It has no `Default`, so that no map gets a key of its own by accident:
//! a [`KeyedMap`] is made with [`HashMap::with_hasher`] and the core's
//! hashing.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};

/// A [`HashMap`] hashed with a [`KeyedHashing`].
pub(crate) type KeyedMap<K, V> = HashMap<K, V, KeyedHashing>;

/// Builds hashers keyed with a secret. See the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyedHashing {
    key: u64,
}

impl KeyedHashing {
    /// Hashing keyed with `key`: the same key, the same hashes.
    pub(crate) fn new(key: u64) -> KeyedHashing {
        KeyedHashing { key }
    }

    /// Hashing keyed with a key drawn at random (from std's random
    /// hashing keys, which the system's random source seeds).
    pub(crate) fn random() -> KeyedHashing {
        KeyedHashing::new(RandomState::new().hash_one(0u64))
    }

    /// A map of `entries` hashed with these keys.
    pub(crate) fn map_of<K: Hash + Eq, V>(
        self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> KeyedMap<K, V> {
        let entries = entries.into_iter();
        let mut map = KeyedMap::with_capacity_and_hasher(entries.size_hint().0, self);
        map.extend(entries);
        map
    }
}

impl BuildHasher for KeyedHashing {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        let mut hasher = DefaultHasher::new();
        hasher.write_u64(self.key);
        hasher
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(hashing: KeyedHashing) -> Vec<String> {
        let mut map: KeyedMap<String, usize> = KeyedMap::with_hasher(hashing);
        for i in 0..200 {
            map.insert(format!("p{i}"), i);
        }
        map.retain(|_, i| *i % 3 != 0);
        map.into_keys().collect()
    }

    #[test]
    fn one_key_hashes_and_orders_alike_and_another_key_differently() {
        let (a, b) = (KeyedHashing::new(7), KeyedHashing::new(8));
        assert_eq!(a.hash_one("p1"), KeyedHashing::new(7).hash_one("p1"));
        assert_ne!(a.hash_one("p1"), b.hash_one("p1"));
        assert_eq!(order(a), order(KeyedHashing::new(7)));
        assert_ne!(order(a), order(b));
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(KeyedHashing::random(), KeyedHashing::random());
    }
}
