//! The beacon: what a participant announces, and its wire form.
//!
//! ```text
//! magic "WFTB" (4 bytes) | version u8 (1) | postcard body
//! ```
//!
//! The body is, in postcard's encoding (varints for integers): the
//! participant id (16 bytes), the incarnation (`u64`), flags (`u8`, bit 0 =
//! leaving), the lease in milliseconds (`u32`), the identity (UTF-8 string)
//! and the locators (a sequence of socket addresses). Bytes after the body
//! are ignored, so later revisions of version 1 may append fields. See
//! `PROTOCOL.md` for byte examples.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The first four bytes of every beacon.
pub const MAGIC: [u8; 4] = *b"WFTB";

/// The beacon format this crate speaks.
pub const VERSION: u8 = 1;

/// The largest beacon accepted or sent, in bytes: it fits one datagram
/// on any link (below the IPv6 minimum MTU of 1280 with headers).
pub const MAX_BEACON: usize = 1200;

/// The longest identity, in bytes.
pub const MAX_IDENTITY: usize = 255;

/// The most locators one beacon carries.
pub const MAX_LOCATORS: usize = 16;

/// A participant's random 128-bit id, chosen once per participant.
///
/// Ids are compared as big-endian numbers; when two participants meet,
/// the one with the lower id opens the stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParticipantId(pub [u8; 16]);

impl ParticipantId {
    /// A new random id from the system's random source.
    pub fn random() -> ParticipantId {
        let mut id = [0u8; 16];
        if getrandom::getrandom(&mut id).is_err() {
            // No system randomness: fall back to a seeded generator.
            let mut rng = fastrand::Rng::new();
            id.iter_mut().for_each(|b| *b = rng.u8(..));
        }
        ParticipantId(id)
    }

    /// The id as a `u128` (big-endian).
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

impl fmt::Debug for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParticipantId({self})")
    }
}

/// Why a datagram was not accepted as a beacon. Each reason has its
/// counter in [`DiscoveryStats`](crate::DiscoveryStats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Shorter than its header, or the body ends early.
    #[error("truncated beacon")]
    Truncated,
    /// Does not start with [`MAGIC`]: not a weft beacon.
    #[error("not a weft beacon (bad magic)")]
    BadMagic,
    /// A beacon of another version.
    #[error("beacon version {0}, expected {VERSION}")]
    OtherVersion(u8),
    /// Longer than [`MAX_BEACON`].
    #[error("beacon of {0} bytes, more than {MAX_BEACON}")]
    TooLarge(usize),
    /// The body does not decode, or breaks a limit (identity length,
    /// locator count, a zero lease).
    #[error("malformed beacon body")]
    Malformed,
    /// A known participant id with an incarnation older than the one
    /// known: a delayed or spoofed beacon.
    #[error("beacon of an older incarnation")]
    StaleIncarnation,
    /// A new participant while [`max_participants`](crate::DiscoveryConfig::max_participants)
    /// are known, every one of them protected.
    #[error("too many participants")]
    TooManyParticipants,
    /// With a [group key](crate::DiscoveryConfig::group_key): no valid tag.
    #[error("beacon without a valid group tag")]
    Unauthenticated,
}

#[derive(Serialize, Deserialize)]
struct Body {
    id: ParticipantId,
    incarnation: u64,
    flags: u8,
    lease_ms: u32,
    identity: String,
    locators: Vec<SocketAddr>,
}

const FLAG_LEAVING: u8 = 1;

/// One beacon, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Beacon {
    /// Who sends it.
    pub id: ParticipantId,
    /// Which start of that participant; greater after every restart.
    pub incarnation: u64,
    /// The participant is stopping: forget it now.
    pub leaving: bool,
    /// How long the announcement holds without a fresh beacon
    /// (millisecond precision).
    pub lease: Duration,
    /// Its identity, such as `weft-1a2b3c4d`.
    pub identity: String,
    /// Where it accepts streams. An unspecified IP (`0.0.0.0` or `::`)
    /// stands for the address the beacon came from.
    pub locators: Vec<SocketAddr>,
}

impl Beacon {
    /// A beacon; the lease is clamped to `u32::MAX` milliseconds.
    pub fn new(
        id: ParticipantId,
        incarnation: u64,
        identity: impl Into<String>,
        locators: Vec<SocketAddr>,
        lease: Duration,
    ) -> Beacon {
        Beacon {
            id,
            incarnation,
            leaving: false,
            lease,
            identity: identity.into(),
            locators,
        }
    }

    /// The wire form. Fails with [`Rejection::Malformed`] when the beacon
    /// breaks a limit a receiver checks (identity length, locator count,
    /// zero lease) and [`Rejection::TooLarge`] when it would not fit
    /// [`MAX_BEACON`].
    pub fn encode(&self) -> Result<Vec<u8>, Rejection> {
        let lease_ms = u32::try_from(self.lease.as_millis()).unwrap_or(u32::MAX);
        if self.identity.len() > MAX_IDENTITY || self.locators.len() > MAX_LOCATORS || lease_ms == 0
        {
            return Err(Rejection::Malformed);
        }
        let body = Body {
            id: self.id,
            incarnation: self.incarnation,
            flags: if self.leaving { FLAG_LEAVING } else { 0 },
            lease_ms,
            identity: self.identity.clone(),
            locators: self.locators.clone(),
        };
        let mut out = Vec::with_capacity(64 + self.identity.len() + 19 * self.locators.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        let out = postcard::to_extend(&body, out).map_err(|_| Rejection::Malformed)?;
        if out.len() > MAX_BEACON {
            return Err(Rejection::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Parses a datagram. The length is checked before anything is
    /// decoded; strings and lists are bounded by the datagram's size and
    /// then by [`MAX_IDENTITY`] and [`MAX_LOCATORS`].
    pub fn decode(bytes: &[u8]) -> Result<Beacon, Rejection> {
        if bytes.len() > MAX_BEACON {
            return Err(Rejection::TooLarge(bytes.len()));
        }
        let Some((magic, rest)) = bytes.split_first_chunk::<4>() else {
            return if MAGIC.starts_with(bytes) {
                Err(Rejection::Truncated)
            } else {
                Err(Rejection::BadMagic)
            };
        };
        if *magic != MAGIC {
            return Err(Rejection::BadMagic);
        }
        let Some((&version, body)) = rest.split_first() else {
            return Err(Rejection::Truncated);
        };
        if version != VERSION {
            return Err(Rejection::OtherVersion(version));
        }
        let (body, _later_fields) =
            postcard::take_from_bytes::<Body>(body).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => Rejection::Truncated,
                _ => Rejection::Malformed,
            })?;
        if body.identity.len() > MAX_IDENTITY
            || body.locators.len() > MAX_LOCATORS
            || body.lease_ms == 0
        {
            return Err(Rejection::Malformed);
        }
        Ok(Beacon {
            id: body.id,
            incarnation: body.incarnation,
            leaving: body.flags & FLAG_LEAVING != 0,
            lease: Duration::from_millis(u64::from(body.lease_ms)),
            identity: body.identity,
            locators: body.locators,
        })
    }
}

/// Locators with unspecified IPs replaced by `source`'s IP where the
/// families match; unresolvable ones are left out.
pub(crate) fn resolve(locators: &[SocketAddr], source: SocketAddr) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(locators.len());
    for l in locators {
        let resolved = if !l.ip().is_unspecified() {
            Some(*l)
        } else {
            match (l, source) {
                (SocketAddr::V4(l), SocketAddr::V4(s)) => {
                    Some(SocketAddr::from((*s.ip(), l.port())))
                }
                (SocketAddr::V6(l), SocketAddr::V6(s)) => Some(SocketAddr::V6(
                    std::net::SocketAddrV6::new(*s.ip(), l.port(), 0, s.scope_id()),
                )),
                // A dual-stack listener on `::` also takes IPv4.
                (SocketAddr::V6(l), SocketAddr::V4(s)) => {
                    Some(SocketAddr::from((*s.ip(), l.port())))
                }
                (SocketAddr::V4(_), SocketAddr::V6(_)) => None,
            }
        };
        if let Some(r) = resolved {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Beacon {
        Beacon::new(
            ParticipantId([0xab; 16]),
            7,
            "alice",
            vec!["127.0.0.1:4000".parse().unwrap()],
            Duration::from_secs(4),
        )
    }

    #[test]
    fn known_bytes() {
        let bytes = sample().encode().unwrap();
        let mut expected = b"WFTB\x01".to_vec();
        expected.extend_from_slice(&[0xab; 16]);
        expected.extend_from_slice(&[
            0x07, // incarnation 7
            0x00, // flags
            0xa0, 0x1f, // lease 4000 ms, varint
            0x05, b'a', b'l', b'i', b'c', b'e', // identity
            0x01, // one locator
            0x00, 127, 0, 0, 1, // V4, 127.0.0.1
            0xa0, 0x1f, // port 4000, varint
        ]);
        assert_eq!(bytes, expected);
        assert_eq!(Beacon::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn rejects_what_it_should() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                Beacon::decode(&bytes[..cut]),
                Err(Rejection::Truncated),
                "cut at {cut}"
            );
        }
        let mut other = bytes.clone();
        other[4] = 2;
        assert_eq!(Beacon::decode(&other), Err(Rejection::OtherVersion(2)));
        let mut garbage = bytes.clone();
        garbage[0] = b'X';
        assert_eq!(Beacon::decode(&garbage), Err(Rejection::BadMagic));
        assert_eq!(Beacon::decode(b"hi"), Err(Rejection::BadMagic));
        assert_eq!(
            Beacon::decode(&[0; MAX_BEACON + 1]),
            Err(Rejection::TooLarge(MAX_BEACON + 1))
        );
        // Later fields of version 1 are ignored.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"future");
        assert_eq!(Beacon::decode(&longer).unwrap(), sample());
        // Limits.
        let mut b = sample();
        b.identity = "x".repeat(MAX_IDENTITY + 1);
        assert_eq!(b.encode(), Err(Rejection::Malformed));
        let mut b = sample();
        b.lease = Duration::ZERO;
        assert_eq!(b.encode(), Err(Rejection::Malformed));
    }

    #[test]
    fn unspecified_locators_take_the_source_address() {
        let locs: Vec<SocketAddr> = vec![
            "0.0.0.0:5000".parse().unwrap(),
            "[::]:5001".parse().unwrap(),
            "10.1.1.1:5002".parse().unwrap(),
        ];
        let got = resolve(&locs, "192.168.7.9:47474".parse().unwrap());
        assert_eq!(
            got,
            vec![
                "192.168.7.9:5000".parse::<SocketAddr>().unwrap(),
                "192.168.7.9:5001".parse().unwrap(),
                "10.1.1.1:5002".parse().unwrap(),
            ]
        );
        let v6 = resolve(&locs, "[fe80::1%3]:47474".parse().unwrap());
        assert_eq!(v6.len(), 2);
        assert_eq!(v6[0], "[fe80::1%3]:5001".parse().unwrap());
    }

    proptest! {
        #[test]
        fn round_trip(
            id in any::<[u8; 16]>(),
            incarnation in any::<u64>(),
            leaving in any::<bool>(),
            lease_ms in 1u32..,
            identity in "\\PC{0,40}",
            ports in proptest::collection::vec(any::<u16>(), 0..MAX_LOCATORS),
        ) {
            let locators = ports.iter().enumerate().map(|(i, p)| {
                if i % 2 == 0 {
                    SocketAddr::from(([10, 0, 0, i as u8], *p))
                } else {
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, *p))
                }
            }).collect();
            let mut b = Beacon::new(ParticipantId(id), incarnation, identity, locators,
                Duration::from_millis(u64::from(lease_ms)));
            b.leaving = leaving;
            let bytes = b.encode().unwrap();
            prop_assert_eq!(Beacon::decode(&bytes).unwrap(), b);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Beacon::decode(&bytes);
            let mut framed = b"WFTB\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Beacon::decode(&framed);
        }
    }
}
