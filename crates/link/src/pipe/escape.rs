//! Patterns for binary payloads: a regex that matches given bytes exactly,
//! for subscriptions keyed by a binary id (a STUN transaction id, say).

use std::fmt::Write;

/// A [`Regex`](super::Regex) pattern that matches exactly `bytes`, byte for
/// byte, whatever they are: any byte that is not an ASCII letter, digit or
/// `_` is written as `\xNN` inside a `(?-u:...)` group, so it matches that
/// one byte (not a UTF-8 character, not a metacharacter). Like
/// `regex::escape`, the pattern is not anchored; put `^` before it to
/// match at the start of the payload only. Compile it with
/// [`Regex::new`](super::Regex::new) (a `regex::bytes::Regex`: a
/// `regex::Regex` is UTF-8 only and refuses such patterns).
///
/// ```
/// use weft_link::pipe::{Regex, Subscription, escape_bytes};
///
/// let txid = [0x00, 0xff, b'.', b'*', b'\\', 0x21];
/// let pattern = Regex::new(&format!("^{}", escape_bytes(&txid))).unwrap();
/// let replies = Subscription::matching(pattern);
///
/// let mut reply = txid.to_vec();
/// reply.extend_from_slice(b" payload");
/// assert!(replies.matches(&reply, None));
/// assert!(!replies.matches(b"\x00\xff.x\\! payload", None), "'*' is not a wildcard");
/// ```
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut pattern = String::with_capacity(6 + 4 * bytes.len());
    pattern.push_str("(?-u:");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b == b'_' {
            pattern.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(pattern, "\\x{b:02x}");
        }
    }
    pattern.push(')');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::Regex;

    fn exactly(bytes: &[u8]) -> Regex {
        Regex::new(&format!("^{}$", escape_bytes(bytes))).unwrap()
    }

    #[test]
    fn every_byte_matches_itself_only() {
        for b in 0..=255u8 {
            let re = exactly(&[b]);
            for other in 0..=255u8 {
                assert_eq!(
                    re.is_match(&[other]),
                    b == other,
                    "{b:#04x} vs {other:#04x}"
                );
            }
            assert!(!re.is_match(b""));
            assert!(!re.is_match(&[b, b]));
        }
    }

    #[test]
    fn letters_stay_readable_and_the_empty_id_matches_empty() {
        assert_eq!(escape_bytes(b"id_7.\xff"), r"(?-u:id_7\x2e\xff)");
        assert!(exactly(b"").is_match(b""));
        assert!(!exactly(b"").is_match(b"x"));
    }
}
