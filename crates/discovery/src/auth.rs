//! The group key: a secret shared by the participants of one group, with
//! which beacons (and, in weft-participant, stream handshakes) are
//! authenticated with HMAC-SHA256.
//!
//! An authenticated beacon is the beacon followed by a 32-byte tag,
//! `HMAC-SHA256(key, "weft beacon v1" || beacon)`. Version 1 receivers
//! ignore bytes after the body, so a receiver without a key still reads
//! it; a receiver with a key drops (and counts) every beacon without a
//! valid tag. The tag proves that the beacon was made by a holder of the
//! key, not that it is fresh or came from the address it came from: a
//! captured beacon can be sent again, which renews its lease at most.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::DiscoveryError;

/// The length of a tag in bytes.
pub const TAG_LEN: usize = 32;

/// The shortest secret accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// What beacon tags are computed over, before the beacon itself.
const BEACON_DOMAIN: &[u8] = b"weft beacon v1";

/// A group's shared secret. Cheap to clone; its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey(Arc<[u8]>);

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

impl GroupKey {
    /// A key from a secret of at least [`MIN_KEY_LEN`] bytes (such as 32
    /// random bytes: `head -c 32 /dev/urandom > group.key`).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<GroupKey, DiscoveryError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_KEY_LEN {
            return Err(DiscoveryError::Config(format!(
                "a group key of {} bytes; at least {MIN_KEY_LEN} are needed",
                secret.len()
            )));
        }
        Ok(GroupKey(secret.into()))
    }

    /// A key from a file's bytes, as they are.
    pub fn from_file(path: impl AsRef<Path>) -> Result<GroupKey, DiscoveryError> {
        let path = path.as_ref();
        let secret = std::fs::read(path)
            .map_err(|e| DiscoveryError::io(format!("reading {}", path.display()), e))?;
        GroupKey::new(secret)
    }

    /// `HMAC-SHA256(key, domain || parts...)`: the tag of a message of
    /// this kind (`domain` keeps tags of one kind from passing as another).
    pub fn tag(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
        self.mac(domain, parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `domain || parts...`, compared in
    /// constant time.
    pub fn verify(&self, domain: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(domain, parts).verify_slice(tag).is_ok()
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(domain);
        for p in parts {
            mac.update(p);
        }
        mac
    }

    /// Appends the beacon's tag.
    pub(crate) fn sign_beacon(&self, beacon: &mut Vec<u8>) {
        let tag = self.tag(BEACON_DOMAIN, &[beacon]);
        beacon.extend_from_slice(&tag);
    }

    /// The beacon without its tag, if the tag is valid.
    pub(crate) fn open_beacon<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (beacon, tag) = datagram.split_at(split);
        self.verify(BEACON_DOMAIN, &[beacon], tag).then_some(beacon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_beacon_opens_with_its_key_only() {
        let key = GroupKey::new([7u8; 32]).unwrap();
        let other = GroupKey::new([8u8; 32]).unwrap();
        let mut beacon = b"WFTB\x01body".to_vec();
        key.sign_beacon(&mut beacon);
        assert_eq!(beacon.len(), 9 + TAG_LEN);
        assert_eq!(key.open_beacon(&beacon), Some(&b"WFTB\x01body"[..]));
        assert_eq!(other.open_beacon(&beacon), None);
        let mut flipped = beacon.clone();
        flipped[5] ^= 1;
        assert_eq!(key.open_beacon(&flipped), None, "a changed body");
        assert_eq!(key.open_beacon(&beacon[..10]), None, "a cut tag");
        assert_eq!(key.open_beacon(b"short"), None);
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_key() {
        assert!(GroupKey::new([1u8; MIN_KEY_LEN - 1]).is_err());
        let key = GroupKey::new(b"0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), "GroupKey(..)");
        assert_ne!(
            key.tag(b"a", &[b"x"]),
            key.tag(b"b", &[b"x"]),
            "domains keep kinds apart"
        );
        assert_eq!(key.tag(b"a", &[b"x", b"y"]), key.tag(b"a", &[b"xy"]));
    }
}
