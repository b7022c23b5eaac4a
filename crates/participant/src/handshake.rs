//! Stream handshakes with a group key, free of I/O: each side of a new
//! stream sends a random challenge, answers the other's with an
//! HMAC-SHA256 proof that it holds the key, and takes the other side as a
//! neighbour only once the other's proof checks out. A stream that sends
//! a wrong proof, or none within the deadline, is refused.
//!
//! The proof for a challenge `n`, from the prover `P` to the verifier `V`,
//! is `HMAC-SHA256(key, "weft stream v1" || n || len(P) || P || V)`:
//! bound to the nonce (so it cannot be replayed on another stream) and to
//! both identities (so it cannot be reflected back as the verifier's
//! own). It proves that the other end holds the key, not that nobody
//! relays between the two ends: for that, run the streams over TLS.

use std::time::{Duration, Instant};

use weft_discovery::GroupKey;
use weft_discovery::auth::TAG_LEN;
use weft_messaging::Identity;

use crate::control::NONCE_LEN;
use crate::hashing::{KeyedHashing, KeyedMap};

const STREAM_DOMAIN: &[u8] = b"weft stream v1";
const NONCE_DOMAIN: &[u8] = b"weft nonce v1";
const HASHING_DOMAIN: &[u8] = b"weft hashing v1";

/// The handshakes of one participant.
pub(crate) struct Handshakes {
    key: GroupKey,
    /// Nonces are `HMAC(seed, counter)`: unpredictable without the seed.
    seed: GroupKey,
    counter: u64,
    timeout: Duration,
    /// Streams whose proof we wait for: our nonce and the deadline.
    /// (Keyed from the seed: see `hashing.rs`.)
    pending: KeyedMap<Identity, ([u8; NONCE_LEN], Instant)>,
}

/// What a proof showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It checks out: the stream's other end holds the key.
    Proved,
    /// It does not: refuse the stream.
    Refused,
    /// We asked nothing of this stream (a late or repeated proof).
    Unasked,
}

impl Handshakes {
    /// Handshakes with `key`; `seed` (32 random bytes) makes the nonces
    /// and keys the map of pending handshakes, `timeout` is how long a
    /// stream has to prove itself.
    pub(crate) fn new(key: GroupKey, seed: [u8; 32], timeout: Duration) -> Handshakes {
        let seed = GroupKey::new(seed).expect("32 bytes are a long enough key");
        let tag = seed.tag(HASHING_DOMAIN, &[]);
        let hash_key = u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"));
        Handshakes {
            key,
            seed,
            counter: 0,
            timeout,
            pending: KeyedMap::with_hasher(KeyedHashing::new(hash_key)),
        }
    }

    /// A new stream with `peer`: the challenge to send it.
    pub(crate) fn start(&mut self, peer: &Identity, now: Instant) -> [u8; NONCE_LEN] {
        self.counter += 1;
        let tag = self.seed.tag(NONCE_DOMAIN, &[&self.counter.to_be_bytes()]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag[..NONCE_LEN]);
        self.pending
            .insert(peer.clone(), (nonce, now + self.timeout));
        nonce
    }

    /// Our answer to `challenger`'s challenge.
    pub(crate) fn answer(
        &self,
        me: &Identity,
        challenger: &Identity,
        nonce: &[u8; NONCE_LEN],
    ) -> [u8; TAG_LEN] {
        proof(&self.key, nonce, me, challenger)
    }

    /// Checks `peer`'s answer to our challenge.
    pub(crate) fn check(&mut self, me: &Identity, peer: &Identity, tag: &[u8]) -> Verdict {
        let Some((nonce, _)) = self.pending.remove(peer) else {
            return Verdict::Unasked;
        };
        let len = prover_len(peer);
        let parts = proof_parts(&nonce, &len, peer, me);
        if self.key.verify(STREAM_DOMAIN, &parts, tag) {
            Verdict::Proved
        } else {
            Verdict::Refused
        }
    }

    /// The stream with `peer` ended.
    pub(crate) fn forget(&mut self, peer: &Identity) {
        self.pending.remove(peer);
    }

    /// Streams whose deadline passed by `now`, forgotten; in name order.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<Identity> {
        let mut late: Vec<Identity> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(p, _)| p.clone())
            .collect();
        late.sort_unstable();
        for p in &late {
            self.pending.remove(p);
        }
        late
    }

    /// The next deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|(_, d)| *d).min()
    }
}

fn proof(
    key: &GroupKey,
    nonce: &[u8; NONCE_LEN],
    prover: &Identity,
    verifier: &Identity,
) -> [u8; TAG_LEN] {
    let len = prover_len(prover);
    key.tag(STREAM_DOMAIN, &proof_parts(nonce, &len, prover, verifier))
}

/// The prover's length keeps ("ab", "c") apart from ("a", "bc").
fn prover_len(prover: &Identity) -> [u8; 1] {
    [u8::try_from(prover.as_str().len()).unwrap_or(u8::MAX)]
}

fn proof_parts<'a>(
    nonce: &'a [u8; NONCE_LEN],
    len: &'a [u8; 1],
    prover: &'a Identity,
    verifier: &'a Identity,
) -> [&'a [u8]; 4] {
    [
        nonce,
        len,
        prover.as_str().as_bytes(),
        verifier.as_str().as_bytes(),
    ]
}
