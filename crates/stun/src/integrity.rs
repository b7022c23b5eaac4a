//! Keys, MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.

use std::fmt;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::{Attribute, StunMessage};

/// The value FINGERPRINT's CRC-32 is XORed with ("STUN" in ASCII).
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// The hash of a long-term key (PASSWORD-ALGORITHM, RFC 8489 §14.12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithm {
    /// MD5 (algorithm 1); the default when a message names none.
    #[default]
    Md5,
    /// SHA-256 (algorithm 2).
    Sha256,
}

impl PasswordAlgorithm {
    /// The algorithm's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            PasswordAlgorithm::Md5 => 1,
            PasswordAlgorithm::Sha256 => 2,
        }
    }

    /// The algorithm for a number, if this crate knows it.
    pub fn from_code(code: u16) -> Option<PasswordAlgorithm> {
        match code {
            1 => Some(PasswordAlgorithm::Md5),
            2 => Some(PasswordAlgorithm::Sha256),
            _ => None,
        }
    }

    /// The algorithm a message asks for: its PASSWORD-ALGORITHM, or MD5 when
    /// it has none. `None` when it names an algorithm this crate does not
    /// know.
    pub fn of(message: &StunMessage) -> Option<PasswordAlgorithm> {
        match message.get(crate::attribute::AttributeType::PASSWORD_ALGORITHM) {
            Some(Attribute::PasswordAlgorithm(p)) => PasswordAlgorithm::from_code(p.algorithm),
            _ => Some(PasswordAlgorithm::Md5),
        }
    }
}

/// A key for MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256. Its `Debug`
/// form does not show the bytes.
///
/// Short-term credentials use the password as the key. Long-term
/// credentials use `H(username ":" realm ":" password)` (RFC 8489 §9.2.2),
/// where H is the PASSWORD-ALGORITHM's hash: MD5 (the default, when the
/// message has no PASSWORD-ALGORITHM) or SHA-256. The same key serves
/// MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256.
///
/// The RFC asks for the username, realm and password to be prepared with
/// the OpaqueString profile (RFC 8265) first; this crate uses them as given,
/// so callers pass already-prepared strings (for ASCII they are unchanged).
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// The short-term key: the password itself.
    pub fn short_term(password: &str) -> Key {
        Key(password.as_bytes().to_vec())
    }

    /// The long-term key with the default algorithm (MD5):
    /// `MD5(username ":" realm ":" password)`.
    pub fn long_term(username: &str, realm: &str, password: &str) -> Key {
        Key::long_term_with(PasswordAlgorithm::Md5, username, realm, password)
    }

    /// The long-term key with the given PASSWORD-ALGORITHM:
    /// `H(username ":" realm ":" password)`.
    pub fn long_term_with(
        algorithm: PasswordAlgorithm,
        username: &str,
        realm: &str,
        password: &str,
    ) -> Key {
        let parts = [
            username.as_bytes(),
            b":",
            realm.as_bytes(),
            b":",
            password.as_bytes(),
        ];
        match algorithm {
            PasswordAlgorithm::Md5 => {
                let mut h = Md5::new();
                for p in parts {
                    h.update(p);
                }
                Key(h.finalize().to_vec())
            }
            PasswordAlgorithm::Sha256 => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                Key(h.finalize().to_vec())
            }
        }
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Key {
        Key(bytes.into())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// USERHASH: `SHA-256(username ":" realm)` (RFC 8489 §14.4).
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.finalize().into()
}

/// What [`StunMessage::encode_with`] computes and appends after the message's
/// attributes, in the RFC's order: MESSAGE-INTEGRITY, then
/// MESSAGE-INTEGRITY-SHA256, then FINGERPRINT. The default appends nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trailer<'k> {
    /// Append MESSAGE-INTEGRITY (HMAC-SHA1) with this key.
    pub message_integrity: Option<&'k Key>,
    /// Append MESSAGE-INTEGRITY-SHA256 (full 32-byte HMAC-SHA256) with this
    /// key.
    pub message_integrity_sha256: Option<&'k Key>,
    /// Append FINGERPRINT.
    pub fingerprint: bool,
}

impl<'k> Trailer<'k> {
    /// FINGERPRINT only.
    pub fn fingerprint() -> Trailer<'k> {
        Trailer {
            fingerprint: true,
            ..Trailer::default()
        }
    }

    /// MESSAGE-INTEGRITY with `key`, then FINGERPRINT.
    pub fn integrity(key: &'k Key) -> Trailer<'k> {
        Trailer {
            message_integrity: Some(key),
            fingerprint: true,
            ..Trailer::default()
        }
    }

    /// Whether the trailer appends anything.
    pub fn is_empty(&self) -> bool {
        self.message_integrity.is_none()
            && self.message_integrity_sha256.is_none()
            && !self.fingerprint
    }
}

/// HMAC-SHA1 over the concatenation of `parts`.
pub(crate) fn hmac_sha1(key: &Key, parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = sha1_mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &Key, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = sha256_mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Compares, in constant time, an HMAC-SHA1 over `parts` with `tag`.
pub(crate) fn verify_sha1(key: &Key, parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = sha1_mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(tag).is_ok()
}

/// Compares, in constant time, the leftmost `tag.len()` bytes of an
/// HMAC-SHA256 over `parts` with `tag`.
pub(crate) fn verify_sha256(key: &Key, parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = sha256_mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.verify_truncated_left(tag).is_ok()
}

fn sha1_mac(key: &Key) -> Hmac<Sha1> {
    // HMAC takes keys of any length; this never fails.
    match <Hmac<Sha1> as Mac>::new_from_slice(&key.0) {
        Ok(mac) => mac,
        Err(_) => unreachable_key(),
    }
}

fn sha256_mac(key: &Key) -> Hmac<Sha256> {
    match <Hmac<Sha256> as Mac>::new_from_slice(&key.0) {
        Ok(mac) => mac,
        Err(_) => unreachable_key(),
    }
}

#[cold]
fn unreachable_key() -> ! {
    unreachable!("HMAC accepts keys of every length")
}

/// FINGERPRINT's value over the concatenation of `parts`.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize() ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_keys() {
        // MD5("user:realm:pass") computed independently.
        let key = Key::long_term("user", "realm", "pass");
        assert_eq!(key.as_bytes().len(), 16);
        let sha = Key::long_term_with(PasswordAlgorithm::Sha256, "user", "realm", "pass");
        assert_eq!(sha.as_bytes().len(), 32);
        assert_ne!(key, sha);
        assert_eq!(format!("{key:?}"), "Key(16 bytes)");
        assert_eq!(Key::short_term("pw").as_bytes(), b"pw");
    }

    #[test]
    fn algorithm_defaults_to_md5() {
        let m = StunMessage::binding_request();
        assert_eq!(PasswordAlgorithm::of(&m), Some(PasswordAlgorithm::Md5));
        let m = m.with(Attribute::PasswordAlgorithm(
            crate::attribute::PasswordAlgorithmParams {
                algorithm: 2,
                parameters: vec![],
            },
        ));
        assert_eq!(PasswordAlgorithm::of(&m), Some(PasswordAlgorithm::Sha256));
        assert_eq!(PasswordAlgorithm::from_code(7), None);
    }
}
