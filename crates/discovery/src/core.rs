//! The sans-I/O discovery state machine: beacons in, beacons out, events,
//! all driven by the caller's clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::beacon::{Beacon, ParticipantId, Rejection, resolve};
use crate::config::DiscoveryConfig;

/// The most resolved addresses kept per participant.
const MAX_ADDRESSES: usize = 8;

/// Events kept before the oldest is dropped (and counted); the shell
/// drains them after every call.
const MAX_EVENTS: usize = 4096;

/// This participant: what its beacons say.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalParticipant {
    /// Its random id, kept across restarts if the caller wishes.
    pub id: ParticipantId,
    /// This start's incarnation: microseconds since the Unix epoch at
    /// start, so a restart has a greater one.
    pub incarnation: u64,
    /// Its identity.
    pub identity: String,
    /// Where it accepts streams (an unspecified IP stands for the address
    /// beacons leave from).
    pub locators: Vec<SocketAddr>,
}

impl LocalParticipant {
    /// A participant with a new random id and a fresh incarnation.
    pub fn new(identity: impl Into<String>, locators: Vec<SocketAddr>) -> LocalParticipant {
        LocalParticipant {
            id: ParticipantId::random(),
            incarnation: fresh_incarnation(0),
            identity: identity.into(),
            locators,
        }
    }

    /// The same participant started again: same id, a greater incarnation.
    pub fn restarted(&self) -> LocalParticipant {
        LocalParticipant {
            incarnation: fresh_incarnation(self.incarnation),
            ..self.clone()
        }
    }
}

/// Microseconds since the epoch, and always greater than `previous`.
fn fresh_incarnation(previous: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    now.max(previous.saturating_add(1))
}

/// Another participant, as its beacons describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteParticipant {
    /// Its id.
    pub id: ParticipantId,
    /// Its current incarnation.
    pub incarnation: u64,
    /// Its identity.
    pub identity: String,
    /// Its locators as announced.
    pub locators: Vec<SocketAddr>,
    /// Where to reach it: the locators with unspecified IPs replaced by
    /// the IPs its beacons came from (same family), those of the first
    /// beacon first.
    pub addresses: Vec<SocketAddr>,
    /// The lease it announced.
    pub lease: Duration,
    /// Where its first beacon of this incarnation came from.
    pub source: SocketAddr,
}

/// Why a participant was reported gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoneReason {
    /// Nothing was heard from it for its lease.
    LeaseExpired,
    /// It said goodbye (a leaving beacon).
    Left,
}

/// What discovery reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// A participant was heard from for the first time (or again after it
    /// was gone).
    Found(RemoteParticipant),
    /// A known participant's identity, locators, lease or addresses
    /// changed (same incarnation).
    Changed(RemoteParticipant),
    /// A known participant started again: a new incarnation.
    Restarted {
        /// The incarnation it had.
        previous_incarnation: u64,
        /// The participant now.
        peer: RemoteParticipant,
    },
    /// A participant is gone.
    Gone {
        /// The participant as last known.
        peer: RemoteParticipant,
        /// Why.
        reason: GoneReason,
    },
}

/// What [`DiscoveryCore::handle_beacon`] did with an accepted beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// Our own beacon, looped back: ignored.
    Own,
    /// A new participant ([`DiscoveryEvent::Found`]).
    Found,
    /// A known participant, lease renewed, nothing changed.
    Renewed,
    /// A known participant whose details changed
    /// ([`DiscoveryEvent::Changed`]).
    Changed,
    /// A new incarnation ([`DiscoveryEvent::Restarted`]).
    Restarted,
    /// A goodbye ([`DiscoveryEvent::Gone`]), or one from a participant
    /// already gone (ignored).
    Left,
}

/// Counters of a discovery instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryStats {
    /// Beacons built to be sent (each goes to every target).
    pub announced: u64,
    /// Datagrams sent (one per beacon and target address).
    pub sent: u64,
    /// Datagrams that could not be sent.
    pub send_errors: u64,
    /// Datagrams received.
    pub received: u64,
    /// Beacons accepted (our own included).
    pub accepted: u64,
    /// Our own beacons heard back.
    pub own: u64,
    /// Rejected: truncated.
    pub truncated: u64,
    /// Rejected: bad magic.
    pub bad_magic: u64,
    /// Rejected: another version.
    pub other_version: u64,
    /// Rejected: larger than a beacon may be.
    pub too_large: u64,
    /// Rejected: malformed body.
    pub malformed: u64,
    /// Rejected: a known id with an older incarnation (delayed or spoofed).
    pub stale_incarnation: u64,
    /// Rejected: too many participants known.
    pub too_many: u64,
    /// Events dropped because nobody drained them.
    pub events_dropped: u64,
}

impl DiscoveryStats {
    /// All rejected beacons.
    pub fn rejected(&self) -> u64 {
        self.truncated
            + self.bad_magic
            + self.other_version
            + self.too_large
            + self.malformed
            + self.stale_incarnation
            + self.too_many
    }
}

struct Known {
    peer: RemoteParticipant,
    expires: Instant,
}

/// Discovery without I/O: feed it received datagrams
/// ([`handle_beacon`](Self::handle_beacon)) and timeouts
/// ([`handle_timeout`](Self::handle_timeout)); take from it the beacons
/// to send ([`poll_transmit`](Self::poll_transmit)), when to wake it next
/// ([`poll_timeout`](Self::poll_timeout)) and what happened
/// ([`poll_event`](Self::poll_event)).
///
/// ```
/// use std::time::Duration;
/// use std::time::Instant;
/// use weft_discovery::{DiscoveryConfig, DiscoveryCore, DiscoveryEvent, LocalParticipant};
///
/// let config = DiscoveryConfig::default();
/// let now = Instant::now();
/// let mut a = DiscoveryCore::new(LocalParticipant::new("a", vec![]), &config, now);
/// let mut b = DiscoveryCore::new(LocalParticipant::new("b", vec![]), &config, now);
///
/// let beacon = a.poll_transmit(now).expect("the first beacon leaves at once");
/// b.handle_beacon(&beacon, "10.0.0.1:47474".parse()?, now).unwrap();
/// let Some(DiscoveryEvent::Found(peer)) = b.poll_event() else { panic!() };
/// assert_eq!(peer.identity, "a");
///
/// // Nothing more from a: b reports it gone once its lease ran out.
/// let later = now + config.lease + Duration::from_millis(1);
/// b.handle_timeout(later);
/// assert!(matches!(b.poll_event(), Some(DiscoveryEvent::Gone { .. })));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub struct DiscoveryCore {
    local: LocalParticipant,
    lease: Duration,
    interval: Duration,
    burst_interval: Duration,
    answer_newcomers: bool,
    max_participants: usize,
    peers: HashMap<ParticipantId, Known>,
    /// Participants gone, with their last incarnation, until a lease has
    /// passed: a late beacon of theirs is not a new participant.
    tombstones: HashMap<ParticipantId, (u64, Instant)>,
    next_announce: Instant,
    burst_left: u32,
    last_announce: Option<Instant>,
    leaving: bool,
    left: bool,
    events: VecDeque<DiscoveryEvent>,
    stats: DiscoveryStats,
    rng: fastrand::Rng,
}

impl std::fmt::Debug for DiscoveryCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryCore")
            .field("local", &self.local)
            .field("peers", &self.peers.len())
            .finish()
    }
}

impl DiscoveryCore {
    /// A core for `local`, announcing from `now` on.
    pub fn new(local: LocalParticipant, config: &DiscoveryConfig, now: Instant) -> DiscoveryCore {
        let seed = local.id.as_u128() as u64 ^ local.incarnation;
        DiscoveryCore {
            local,
            lease: config.lease.max(Duration::from_millis(1)),
            interval: config.effective_interval(),
            burst_interval: config.burst_interval,
            answer_newcomers: config.answer_newcomers,
            max_participants: config.max_participants,
            peers: HashMap::new(),
            tombstones: HashMap::new(),
            next_announce: now,
            burst_left: config.burst.max(1),
            last_announce: None,
            leaving: false,
            left: false,
            events: VecDeque::new(),
            stats: DiscoveryStats::default(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Who we are.
    pub fn local(&self) -> &LocalParticipant {
        &self.local
    }

    /// Changes the locators we announce; the next beacon leaves soon
    /// (within [`burst_interval`](DiscoveryConfig::burst_interval)).
    pub fn set_locators(&mut self, locators: Vec<SocketAddr>, now: Instant) {
        if self.local.locators != locators {
            self.local.locators = locators;
            self.announce_soon(now);
        }
    }

    /// Changes the identity we announce; the next beacon leaves soon.
    pub fn set_identity(&mut self, identity: impl Into<String>, now: Instant) {
        let identity = identity.into();
        if self.local.identity != identity {
            self.local.identity = identity;
            self.announce_soon(now);
        }
    }

    /// Says goodbye: the next [`poll_transmit`](Self::poll_transmit)
    /// returns a leaving beacon, and nothing is announced after it.
    pub fn leave(&mut self) {
        self.leaving = true;
    }

    /// The participants known now.
    pub fn peers(&self) -> impl Iterator<Item = &RemoteParticipant> + '_ {
        self.peers.values().map(|k| &k.peer)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// Counts datagrams the shell sent (`ok`) or failed to send.
    pub fn record_send(&mut self, ok: bool) {
        if ok {
            self.stats.sent += 1;
        } else {
            self.stats.send_errors += 1;
        }
    }

    fn announce_soon(&mut self, now: Instant) {
        let earliest = match self.last_announce {
            Some(last) => (last + self.burst_interval).max(now),
            None => now,
        };
        self.next_announce = self.next_announce.min(earliest);
    }

    fn push(&mut self, event: DiscoveryEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn reject(&mut self, why: Rejection) -> Rejection {
        let counter = match why {
            Rejection::Truncated => &mut self.stats.truncated,
            Rejection::BadMagic => &mut self.stats.bad_magic,
            Rejection::OtherVersion(_) => &mut self.stats.other_version,
            Rejection::TooLarge(_) => &mut self.stats.too_large,
            Rejection::Malformed => &mut self.stats.malformed,
            Rejection::StaleIncarnation => &mut self.stats.stale_incarnation,
            Rejection::TooManyParticipants => &mut self.stats.too_many,
        };
        *counter += 1;
        why
    }

    /// Takes in a datagram that arrived from `from`. Rejected ones are
    /// counted by reason in [`stats`](Self::stats) and change nothing else.
    pub fn handle_beacon(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Accepted, Rejection> {
        self.stats.received += 1;
        let beacon = Beacon::decode(bytes).map_err(|e| self.reject(e))?;
        if beacon.id == self.local.id {
            if beacon.incarnation > self.local.incarnation {
                // Someone else claims our id with a newer incarnation:
                // spoofed (or a second copy of us); never a peer.
                return Err(self.reject(Rejection::StaleIncarnation));
            }
            self.stats.accepted += 1;
            self.stats.own += 1;
            return Ok(Accepted::Own);
        }
        if let Some(&(incarnation, _)) = self.tombstones.get(&beacon.id) {
            if beacon.incarnation < incarnation
                || (beacon.incarnation == incarnation && beacon.leaving)
            {
                return Err(self.reject(Rejection::StaleIncarnation));
            }
            // A newer incarnation, or the same one back (its beacons were
            // lost for a lease): found again below.
            self.tombstones.remove(&beacon.id);
        }
        let expires = now + beacon.lease;
        let addresses = resolve(&beacon.locators, from);
        let Some(known) = self.peers.get_mut(&beacon.id) else {
            if beacon.leaving {
                self.stats.accepted += 1;
                return Ok(Accepted::Left);
            }
            if self.peers.len() >= self.max_participants {
                return Err(self.reject(Rejection::TooManyParticipants));
            }
            let peer = RemoteParticipant {
                id: beacon.id,
                incarnation: beacon.incarnation,
                identity: beacon.identity,
                locators: beacon.locators,
                addresses: cap(addresses),
                lease: beacon.lease,
                source: from,
            };
            self.peers.insert(
                peer.id,
                Known {
                    peer: peer.clone(),
                    expires,
                },
            );
            self.stats.accepted += 1;
            self.push(DiscoveryEvent::Found(peer));
            if self.answer_newcomers {
                self.announce_soon(now);
            }
            return Ok(Accepted::Found);
        };
        if beacon.incarnation < known.peer.incarnation {
            return Err(self.reject(Rejection::StaleIncarnation));
        }
        self.stats.accepted += 1;
        if beacon.leaving {
            let known = self.peers.remove(&beacon.id).expect("present");
            self.tombstones
                .insert(beacon.id, (beacon.incarnation, now + self.lease_of(&known)));
            self.push(DiscoveryEvent::Gone {
                peer: known.peer,
                reason: GoneReason::Left,
            });
            return Ok(Accepted::Left);
        }
        if beacon.incarnation > known.peer.incarnation {
            let previous_incarnation = known.peer.incarnation;
            known.peer = RemoteParticipant {
                id: beacon.id,
                incarnation: beacon.incarnation,
                identity: beacon.identity,
                locators: beacon.locators,
                addresses: cap(addresses),
                lease: beacon.lease,
                source: from,
            };
            known.expires = expires;
            let peer = known.peer.clone();
            self.push(DiscoveryEvent::Restarted {
                previous_incarnation,
                peer,
            });
            if self.answer_newcomers {
                self.announce_soon(now);
            }
            return Ok(Accepted::Restarted);
        }
        known.expires = known.expires.max(expires);
        let mut changed = false;
        if known.peer.identity != beacon.identity
            || known.peer.locators != beacon.locators
            || known.peer.lease != beacon.lease
        {
            known.peer.identity = beacon.identity;
            known.peer.lease = beacon.lease;
            if known.peer.locators != beacon.locators {
                known.peer.locators = beacon.locators;
                known.peer.addresses.clear();
            }
            changed = true;
        }
        for a in addresses {
            if !known.peer.addresses.contains(&a) && known.peer.addresses.len() < MAX_ADDRESSES {
                known.peer.addresses.push(a);
                changed = true;
            }
        }
        if changed {
            let peer = known.peer.clone();
            self.push(DiscoveryEvent::Changed(peer));
            Ok(Accepted::Changed)
        } else {
            Ok(Accepted::Renewed)
        }
    }

    fn lease_of(&self, known: &Known) -> Duration {
        known.peer.lease.max(self.lease)
    }

    /// Expires participants whose lease ran out, and forgets old
    /// tombstones. Call it at [`poll_timeout`](Self::poll_timeout) (calling
    /// it at other times is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<ParticipantId> = self
            .peers
            .iter()
            .filter(|(_, k)| k.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let known = self.peers.remove(&id).expect("present");
            let until = now + self.lease_of(&known);
            self.tombstones.insert(id, (known.peer.incarnation, until));
            self.push(DiscoveryEvent::Gone {
                peer: known.peer,
                reason: GoneReason::LeaseExpired,
            });
        }
        self.tombstones.retain(|_, (_, until)| *until > now);
        // Bounded like the participants themselves.
        while self.tombstones.len() > self.max_participants {
            let Some(oldest) = self
                .tombstones
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.tombstones.remove(&oldest);
        }
    }

    /// The beacon to send now, if one is due; send it to every target.
    /// After [`leave`](Self::leave), returns one leaving beacon and then
    /// nothing.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.left {
            return None;
        }
        if !self.leaving && now < self.next_announce {
            return None;
        }
        let mut beacon = Beacon::new(
            self.local.id,
            self.local.incarnation,
            self.local.identity.clone(),
            self.local.locators.clone(),
            self.lease,
        );
        beacon.leaving = self.leaving;
        if self.leaving {
            self.left = true;
        }
        self.last_announce = Some(now);
        let wait = if self.burst_left > 1 {
            self.burst_left -= 1;
            self.burst_interval
        } else {
            self.burst_left = 0;
            // Up to 10 % shorter, never longer: at most lease/4 apart.
            let shave = self.interval.mul_f64(self.rng.f64() * 0.1);
            self.interval - shave
        };
        self.next_announce = now + wait;
        match beacon.encode() {
            Ok(bytes) => {
                self.stats.announced += 1;
                Some(bytes)
            }
            Err(e) => {
                tracing::warn!(error = %e, "our own beacon does not encode");
                None
            }
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) and
    /// [`poll_transmit`](Self::poll_transmit) next; `None` once we left
    /// and nothing is left to expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.peers.values().map(|k| k.expires).min();
        let tomb = self.tombstones.values().map(|(_, until)| *until).min();
        let announce = (!self.left).then_some(self.next_announce);
        [expiry, tomb, announce].into_iter().flatten().min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        self.events.pop_front()
    }
}

fn cap(mut addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addresses.truncate(MAX_ADDRESSES);
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DiscoveryConfig {
        DiscoveryConfig::default()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn core(name: &str, now: Instant) -> DiscoveryCore {
        DiscoveryCore::new(
            LocalParticipant::new(name, vec![addr("0.0.0.0:9000")]),
            &config(),
            now,
        )
    }

    fn beacon_of(local: &LocalParticipant) -> Vec<u8> {
        Beacon::new(
            local.id,
            local.incarnation,
            local.identity.clone(),
            local.locators.clone(),
            Duration::from_secs(4),
        )
        .encode()
        .unwrap()
    }

    #[test]
    fn announces_a_burst_then_every_interval_at_most_lease_over_four() {
        let start = Instant::now();
        let mut c = core("a", start);
        let mut sent = Vec::new();
        let end = start + Duration::from_secs(20);
        let mut now = start;
        while now < end {
            while c.poll_transmit(now).is_some() {
                sent.push(now - start);
            }
            now = c.poll_timeout().unwrap();
        }
        assert_eq!(sent[0], Duration::ZERO, "the first beacon leaves at once");
        assert_eq!(sent[1], Duration::from_millis(150));
        assert_eq!(sent[2], Duration::from_millis(300));
        let quarter = config().lease / 4;
        for pair in sent[2..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap <= quarter, "gap {gap:?} > lease/4");
            assert!(gap >= Duration::from_millis(900), "gap {gap:?} too short");
        }
        assert!((20..=25).contains(&sent.len()), "{} beacons", sent.len());
        assert_eq!(c.stats().announced, sent.len() as u64);
    }

    #[test]
    fn interval_is_clamped_to_a_quarter_lease() {
        let mut cfg = config();
        cfg.interval = Duration::from_secs(10);
        cfg.lease = Duration::from_secs(2);
        assert_eq!(cfg.effective_interval(), Duration::from_millis(500));
    }

    #[test]
    fn found_renewed_then_gone_when_the_lease_runs_out() {
        let now = Instant::now();
        let mut b = core("b", now);
        let a = LocalParticipant::new("a", vec![addr("0.0.0.0:9000")]);
        let from = addr("10.0.0.7:47474");
        assert_eq!(
            b.handle_beacon(&beacon_of(&a), from, now),
            Ok(Accepted::Found)
        );
        let Some(DiscoveryEvent::Found(peer)) = b.poll_event() else {
            panic!()
        };
        assert_eq!(peer.addresses, vec![addr("10.0.0.7:9000")]);
        // Renewed at 3 s: the lease now ends at 7 s.
        let t3 = now + Duration::from_secs(3);
        assert_eq!(
            b.handle_beacon(&beacon_of(&a), from, t3),
            Ok(Accepted::Renewed)
        );
        assert_eq!(b.poll_event(), None);
        b.handle_timeout(t3 + Duration::from_millis(3999));
        assert_eq!(b.poll_event(), None, "still within the lease");
        let expiry = b.poll_timeout().unwrap();
        assert!(expiry <= t3 + Duration::from_secs(4));
        b.handle_timeout(t3 + Duration::from_secs(4));
        match b.poll_event() {
            Some(DiscoveryEvent::Gone { peer, reason }) => {
                assert_eq!(peer.id, a.id);
                assert_eq!(reason, GoneReason::LeaseExpired);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.peers().count(), 0);
        // A late beacon of the same incarnation brings it back.
        let t9 = t3 + Duration::from_secs(5);
        assert_eq!(
            b.handle_beacon(&beacon_of(&a), from, t9),
            Ok(Accepted::Found)
        );
    }

    #[test]
    fn a_restart_is_a_new_incarnation_and_old_ones_are_rejected() {
        let now = Instant::now();
        let mut b = core("b", now);
        let a1 = LocalParticipant::new("a", vec![addr("127.0.0.1:9000")]);
        let a2 = a1.restarted();
        assert!(a2.incarnation > a1.incarnation);
        let from = addr("127.0.0.1:47474");
        b.handle_beacon(&beacon_of(&a1), from, now).unwrap();
        assert_eq!(
            b.handle_beacon(&beacon_of(&a2), from, now),
            Ok(Accepted::Restarted)
        );
        b.poll_event();
        match b.poll_event() {
            Some(DiscoveryEvent::Restarted {
                previous_incarnation,
                peer,
            }) => {
                assert_eq!(previous_incarnation, a1.incarnation);
                assert_eq!(peer.incarnation, a2.incarnation);
            }
            other => panic!("{other:?}"),
        }
        // A spoofed (or delayed) beacon: known id, old incarnation.
        assert_eq!(
            b.handle_beacon(&beacon_of(&a1), from, now),
            Err(Rejection::StaleIncarnation)
        );
        assert_eq!(b.stats().stale_incarnation, 1);
        assert_eq!(b.poll_event(), None);
        assert_eq!(b.peers().next().unwrap().incarnation, a2.incarnation);
    }

    #[test]
    fn bad_beacons_are_rejected_and_counted() {
        let now = Instant::now();
        let mut b = core("b", now);
        let a = LocalParticipant::new("a", vec![]);
        let good = beacon_of(&a);
        let from = addr("127.0.0.1:1");
        assert_eq!(
            b.handle_beacon(&good[..good.len() - 3], from, now),
            Err(Rejection::Truncated)
        );
        assert_eq!(
            b.handle_beacon(&good[..3], from, now),
            Err(Rejection::Truncated)
        );
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(
            b.handle_beacon(&v2, from, now),
            Err(Rejection::OtherVersion(2))
        );
        assert_eq!(
            b.handle_beacon(b"GET / HTTP/1.1", from, now),
            Err(Rejection::BadMagic)
        );
        let mut bad_body = good[..5].to_vec();
        bad_body.extend_from_slice(&[0xff; 40]);
        assert!(b.handle_beacon(&bad_body, from, now).is_err());
        let s = b.stats();
        assert_eq!((s.truncated, s.other_version, s.bad_magic), (2, 1, 1));
        assert_eq!(s.rejected(), 5);
        assert_eq!(s.received, 5);
        assert_eq!(b.poll_event(), None);
        assert_eq!(b.peers().count(), 0);
    }

    #[test]
    fn own_beacons_are_ignored_and_a_newer_claim_to_our_id_is_rejected() {
        let now = Instant::now();
        let mut a = core("a", now);
        let own = a.poll_transmit(now).unwrap();
        let from = addr("127.0.0.1:47474");
        assert_eq!(a.handle_beacon(&own, from, now), Ok(Accepted::Own));
        let thief = a.local().restarted();
        assert_eq!(
            a.handle_beacon(&beacon_of(&thief), from, now),
            Err(Rejection::StaleIncarnation)
        );
        assert_eq!(a.poll_event(), None);
    }

    #[test]
    fn goodbye_reports_gone_at_once_and_late_beacons_stay_gone() {
        let now = Instant::now();
        let mut a = core("a", now);
        let mut b = core("b", now);
        let from = addr("127.0.0.1:47474");
        let first = a.poll_transmit(now).unwrap();
        b.handle_beacon(&first, from, now).unwrap();
        b.poll_event();
        a.leave();
        let bye = a.poll_transmit(now).unwrap();
        assert_eq!(a.poll_transmit(now), None, "nothing after the goodbye");
        assert_eq!(b.handle_beacon(&bye, from, now), Ok(Accepted::Left));
        assert!(matches!(
            b.poll_event(),
            Some(DiscoveryEvent::Gone {
                reason: GoneReason::Left,
                ..
            })
        ));
        // A delayed goodbye is stale; a delayed older beacon too.
        assert_eq!(
            b.handle_beacon(&bye, from, now),
            Err(Rejection::StaleIncarnation)
        );
    }

    #[test]
    fn changes_are_reported() {
        let now = Instant::now();
        let mut b = core("b", now);
        let mut a = LocalParticipant::new("a", vec![addr("0.0.0.0:9000")]);
        b.handle_beacon(&beacon_of(&a), addr("10.0.0.1:1"), now)
            .unwrap();
        b.poll_event();
        // Heard through a second address: a second way to reach it.
        assert_eq!(
            b.handle_beacon(&beacon_of(&a), addr("10.9.0.1:1"), now),
            Ok(Accepted::Changed)
        );
        let Some(DiscoveryEvent::Changed(p)) = b.poll_event() else {
            panic!()
        };
        assert_eq!(
            p.addresses,
            vec![addr("10.0.0.1:9000"), addr("10.9.0.1:9000")]
        );
        a.identity = "a2".into();
        assert_eq!(
            b.handle_beacon(&beacon_of(&a), addr("10.0.0.1:1"), now),
            Ok(Accepted::Changed)
        );
        let Some(DiscoveryEvent::Changed(p)) = b.poll_event() else {
            panic!()
        };
        assert_eq!(p.identity, "a2");
    }

    #[test]
    fn the_number_of_participants_is_bounded() {
        let now = Instant::now();
        let mut cfg = config();
        cfg.max_participants = 2;
        let mut b = DiscoveryCore::new(LocalParticipant::new("b", vec![]), &cfg, now);
        let from = addr("127.0.0.1:1");
        for i in 0..3 {
            let p = LocalParticipant::new(format!("p{i}"), vec![]);
            let r = b.handle_beacon(&beacon_of(&p), from, now);
            if i < 2 {
                assert_eq!(r, Ok(Accepted::Found));
            } else {
                assert_eq!(r, Err(Rejection::TooManyParticipants));
            }
        }
        assert_eq!(b.stats().too_many, 1);
    }

    #[test]
    fn newcomers_are_answered_soon_but_not_too_often() {
        let start = Instant::now();
        let mut b = core("b", start);
        // Past b's burst.
        let mut now = start;
        for _ in 0..3 {
            while b.poll_transmit(now).is_some() {}
            now = b.poll_timeout().unwrap();
        }
        while b.poll_transmit(now).is_some() {}
        let last = now;
        let next_regular = b.poll_timeout().unwrap();
        assert!(next_regular - last >= Duration::from_millis(900));
        let from = addr("127.0.0.1:1");
        let t = last + Duration::from_millis(10);
        let n1 = LocalParticipant::new("n1", vec![]);
        b.handle_beacon(&beacon_of(&n1), from, t).unwrap();
        assert_eq!(b.poll_timeout(), Some(last + Duration::from_millis(150)));
        assert!(b.poll_transmit(last + Duration::from_millis(150)).is_some());
    }
}
