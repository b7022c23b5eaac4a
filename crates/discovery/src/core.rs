//! The sans-I/O discovery state machine: beacons in, beacons out, events,
//! all driven by the caller's clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::auth::GroupKey;
use crate::beacon::{Beacon, MAX_BEACON, ParticipantId, Rejection, resolve};
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
    /// The table was full and a newcomer took its place (it was heard
    /// from least recently and had no stream; see
    /// [`DiscoveryCore::protect`]).
    Evicted,
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
    /// Rejected: too many participants known, all of them protected.
    pub too_many: u64,
    /// Rejected: no valid group tag (with a group key).
    pub unauthenticated: u64,
    /// Participants evicted to make room for a newcomer.
    pub evicted: u64,
    /// Beacons whose lease was cut to the longest accepted.
    pub leases_capped: u64,
    /// Locators left out because they named another host than the one
    /// the beacon came from.
    pub foreign_locators: u64,
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
            + self.unauthenticated
    }
}

struct Known {
    peer: RemoteParticipant,
    expires: Instant,
    /// When its last beacon came.
    heard: Instant,
    /// Kept when the table is full (it has a stream).
    protected: bool,
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
    backoff_above: usize,
    max_participants: usize,
    max_lease: Duration,
    group_key: Option<GroupKey>,
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
            backoff_above: config.backoff_above,
            max_participants: config.max_participants,
            max_lease: config.max_lease.max(Duration::from_millis(1)),
            group_key: config.group_key.clone(),
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

    /// How many times slower than configured beacons go in a group of the
    /// size we know (see [`DiscoveryConfig::backoff_above`]): 1 up to
    /// that size, then a power of two, so that the lease we announce
    /// changes only when the group doubles.
    pub fn backoff(&self) -> u32 {
        if self.backoff_above == 0 {
            return 1;
        }
        let group = self.peers.len() + 1;
        let factor = group.div_ceil(self.backoff_above).next_power_of_two();
        // Bounded: past this the interval is capped anyway.
        u32::try_from(factor).unwrap_or(u32::MAX).min(1 << 16)
    }

    /// The steady interval at the group's size.
    fn interval_now(&self) -> Duration {
        (self.interval * self.backoff())
            .min(self.max_lease / 4)
            .max(self.interval)
    }

    /// The lease our beacons announce at the group's size: covers four
    /// intervals, as the configured one does.
    fn lease_now(&self) -> Duration {
        (self.lease * self.backoff())
            .min(self.max_lease)
            .max(self.lease)
    }

    fn announce_soon(&mut self, now: Instant) {
        let earliest = match self.last_announce {
            Some(last) => (last + self.burst_interval * self.backoff()).max(now),
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
            Rejection::Unauthenticated => &mut self.stats.unauthenticated,
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
        let bytes = match &self.group_key {
            Some(key) => key
                .open_beacon(bytes)
                .ok_or_else(|| self.reject(Rejection::Unauthenticated))?,
            None => bytes,
        };
        let mut beacon = Beacon::decode(bytes).map_err(|e| self.reject(e))?;
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
        if beacon.lease > self.max_lease {
            beacon.lease = self.max_lease;
            self.stats.leases_capped += 1;
        }
        let expires = now + beacon.lease;
        let addresses = self.addresses_of(&beacon.locators, from);
        if !self.peers.contains_key(&beacon.id) {
            if beacon.leaving {
                self.stats.accepted += 1;
                return Ok(Accepted::Left);
            }
            if self.peers.len() >= self.max_participants && !self.evict_one() {
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
                    heard: now,
                    protected: false,
                },
            );
            self.stats.accepted += 1;
            self.push(DiscoveryEvent::Found(peer));
            if self.answer_newcomers {
                self.announce_soon(now);
            }
            return Ok(Accepted::Found);
        }
        let known = self.peers.get_mut(&beacon.id).expect("present");
        if beacon.incarnation < known.peer.incarnation {
            return Err(self.reject(Rejection::StaleIncarnation));
        }
        self.stats.accepted += 1;
        known.heard = now;
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

    /// Keeps a participant when the table is full: the caller has a
    /// stream with it, so it is no stranger to make room for. Returns
    /// whether it is known.
    pub fn protect(&mut self, id: ParticipantId) -> bool {
        match self.peers.get_mut(&id) {
            Some(known) => {
                known.protected = true;
                true
            }
            None => false,
        }
    }

    /// Where to reach a participant: its locators resolved against the
    /// beacon's source, only on the host the beacon came from, so that a
    /// beacon can never make us connect to a third party.
    fn addresses_of(&mut self, locators: &[SocketAddr], from: SocketAddr) -> Vec<SocketAddr> {
        let mut addresses = resolve(locators, from);
        let before = addresses.len();
        addresses.retain(|a| a.ip().to_canonical() == from.ip().to_canonical());
        self.stats.foreign_locators += (before - addresses.len()) as u64;
        addresses
    }

    /// Makes room for a newcomer: forgets the unprotected participant heard
    /// from least recently. False when every one is protected.
    fn evict_one(&mut self) -> bool {
        let Some(id) = self
            .peers
            .iter()
            .filter(|(_, k)| !k.protected)
            .min_by_key(|(_, k)| k.heard)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let known = self.peers.remove(&id).expect("present");
        self.stats.evicted += 1;
        self.push(DiscoveryEvent::Gone {
            peer: known.peer,
            reason: GoneReason::Evicted,
        });
        true
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
            self.lease_now(),
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
            // Up to 10 % shorter, never longer: at most a quarter of the
            // lease this beacon announces apart.
            let interval = self.interval_now();
            let shave = interval.mul_f64(self.rng.f64() * 0.1);
            interval - shave
        };
        self.next_announce = now + wait;
        let encoded = beacon.encode().and_then(|mut bytes| {
            if let Some(key) = &self.group_key {
                key.sign_beacon(&mut bytes);
                if bytes.len() > MAX_BEACON {
                    return Err(Rejection::TooLarge(bytes.len()));
                }
            }
            Ok(bytes)
        });
        match encoded {
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
                assert!(b.protect(p.id));
            } else {
                // No unprotected place to take.
                assert_eq!(r, Err(Rejection::TooManyParticipants));
            }
        }
        assert_eq!(b.stats().too_many, 1);
        assert_eq!(b.peers().count(), 2);
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

    #[test]
    fn a_lease_asked_for_past_the_cap_is_held_for_the_cap() {
        let now = Instant::now();
        let mut b = core("b", now);
        let a = LocalParticipant::new("a", vec![addr("0.0.0.0:9000")]);
        let mut beacon = Beacon::new(
            a.id,
            a.incarnation,
            "a",
            a.locators.clone(),
            Duration::from_millis(u64::from(u32::MAX)),
        );
        let bytes = beacon.encode().unwrap();
        b.handle_beacon(&bytes, addr("10.0.0.7:1"), now).unwrap();
        assert_eq!(b.stats().leases_capped, 1);
        let Some(DiscoveryEvent::Found(peer)) = b.poll_event() else {
            panic!()
        };
        assert_eq!(peer.lease, config().max_lease);
        b.handle_timeout(now + config().max_lease);
        assert!(matches!(
            b.poll_event(),
            Some(DiscoveryEvent::Gone {
                reason: GoneReason::LeaseExpired,
                ..
            })
        ));
        // A lease within the cap is taken as it is.
        beacon.lease = Duration::from_secs(5);
        b.handle_beacon(&beacon.encode().unwrap(), addr("10.0.0.7:1"), now)
            .unwrap();
        assert_eq!(b.stats().leases_capped, 1);
    }

    #[test]
    fn only_addresses_on_the_beacons_host_are_kept() {
        let now = Instant::now();
        let mut b = core("b", now);
        let a = LocalParticipant::new(
            "a",
            vec![
                addr("192.0.2.1:9000"),
                addr("0.0.0.0:9001"),
                addr("10.0.0.7:9002"),
                addr("[2001:db8::1]:9003"),
            ],
        );
        b.handle_beacon(&beacon_of(&a), addr("10.0.0.7:47474"), now)
            .unwrap();
        let Some(DiscoveryEvent::Found(peer)) = b.poll_event() else {
            panic!()
        };
        assert_eq!(
            peer.addresses,
            vec![addr("10.0.0.7:9001"), addr("10.0.0.7:9002")],
            "a third party's address is never one to dial"
        );
        assert_eq!(b.stats().foreign_locators, 2);
    }

    #[test]
    fn a_full_table_makes_room_but_never_evicts_a_protected_participant() {
        let now = Instant::now();
        let mut cfg = config();
        cfg.max_participants = 4;
        let mut b = DiscoveryCore::new(LocalParticipant::new("b", vec![]), &cfg, now);
        let from = addr("10.0.0.7:1");
        let genuine: Vec<LocalParticipant> = (0..2)
            .map(|i| LocalParticipant::new(format!("g{i}"), vec![]))
            .collect();
        for (i, g) in genuine.iter().enumerate() {
            let t = now + Duration::from_millis(i as u64);
            b.handle_beacon(&beacon_of(g), from, t).unwrap();
            assert!(b.protect(g.id));
        }
        // A flood of forged ids: each newcomer takes an unprotected place,
        // and each one evicted is reported gone.
        let is_evicted = |e: &DiscoveryEvent| {
            matches!(
                e,
                DiscoveryEvent::Gone {
                    reason: GoneReason::Evicted,
                    ..
                }
            )
        };
        let mut evicted = 0u64;
        for i in 0..10_000u64 {
            let forged = LocalParticipant::new(format!("f{i}"), vec![]);
            let t = now + Duration::from_millis(10 + i);
            assert_eq!(
                b.handle_beacon(&beacon_of(&forged), from, t),
                Ok(Accepted::Found)
            );
            evicted += std::iter::from_fn(|| b.poll_event())
                .filter(is_evicted)
                .count() as u64;
        }
        assert_eq!(evicted, b.stats().evicted);
        assert_eq!(b.peers().count(), 4);
        for g in &genuine {
            assert!(b.peers().any(|p| p.id == g.id), "protected ones stay");
        }
        assert_eq!(b.stats().evicted, 10_000 - 2);
        // A genuine newcomer is still found during the flood.
        let newcomer = LocalParticipant::new("new", vec![]);
        let t = now + Duration::from_secs(20);
        assert_eq!(
            b.handle_beacon(&beacon_of(&newcomer), from, t),
            Ok(Accepted::Found)
        );
        assert_eq!(b.stats().evicted, 10_000 - 2 + 1);
        assert!(b.peers().any(|p| p.id == newcomer.id));
        // Every place protected: newcomers are turned away.
        for p in b.peers().map(|p| p.id).collect::<Vec<_>>() {
            b.protect(p);
        }
        let late = LocalParticipant::new("late", vec![]);
        assert_eq!(
            b.handle_beacon(&beacon_of(&late), from, t),
            Err(Rejection::TooManyParticipants)
        );
    }

    #[test]
    fn with_a_group_key_only_tagged_beacons_are_taken() {
        let now = Instant::now();
        let mut keyed = config();
        keyed.group_key = Some(GroupKey::new([42u8; 32]).unwrap());
        let mut a = DiscoveryCore::new(LocalParticipant::new("a", vec![]), &keyed, now);
        let mut b = DiscoveryCore::new(LocalParticipant::new("b", vec![]), &keyed, now);
        let from = addr("10.0.0.7:1");
        let tagged = a.poll_transmit(now).unwrap();
        assert_eq!(b.handle_beacon(&tagged, from, now), Ok(Accepted::Found));

        // A forger without the key: plain, or with a tag of another key.
        let stranger = LocalParticipant::new("forger", vec![]);
        let plain = beacon_of(&stranger);
        assert_eq!(
            b.handle_beacon(&plain, from, now),
            Err(Rejection::Unauthenticated)
        );
        let mut wrong = plain.clone();
        GroupKey::new([1u8; 32]).unwrap().sign_beacon(&mut wrong);
        assert_eq!(
            b.handle_beacon(&wrong, from, now),
            Err(Rejection::Unauthenticated)
        );
        // A stolen id with a newer incarnation, untagged: dropped.
        let mut stolen = a.local().restarted();
        stolen.identity = "a".into();
        assert_eq!(
            b.handle_beacon(&beacon_of(&stolen), from, now),
            Err(Rejection::Unauthenticated)
        );
        assert_eq!(b.stats().unauthenticated, 3);
        assert_eq!(b.peers().count(), 1);

        // A receiver without a key still reads a tagged beacon.
        let mut plain_b = core("c", now);
        assert_eq!(
            plain_b.handle_beacon(&tagged, from, now),
            Ok(Accepted::Found)
        );
    }

    /// A core with `backoff_above` of `above`, that knows `others`
    /// participants and is past its start burst; the time it is at.
    fn in_a_group(above: usize, others: usize, start: Instant) -> (DiscoveryCore, Instant) {
        let mut cfg = config();
        cfg.backoff_above = above;
        let local = LocalParticipant::new("me", vec![addr("0.0.0.0:9000")]);
        let mut c = DiscoveryCore::new(local, &cfg, start);
        let mut now = start;
        for _ in 0..3 {
            while c.poll_transmit(now).is_some() {}
            now = c.poll_timeout().unwrap();
        }
        for i in 0..others {
            let peer = LocalParticipant::new(format!("p{i}"), vec![]);
            c.handle_beacon(&beacon_of(&peer), addr("127.0.0.1:1"), now)
                .unwrap();
        }
        (c, now)
    }

    #[test]
    fn beacons_back_off_in_steps_as_the_group_grows() {
        let start = Instant::now();
        // Up to the size, the configured pace; then powers of two.
        for (others, backoff) in [(0, 1), (3, 1), (4, 2), (7, 2), (8, 4), (12, 4), (16, 8)] {
            let (c, _) = in_a_group(4, others, start);
            assert_eq!(c.backoff(), backoff, "{} participants", others + 1);
        }
        // 0 turns it off.
        assert_eq!(in_a_group(0, 40, start).0.backoff(), 1);

        // Nine participants, four per step: beacons four times apart,
        // each announcing four times the lease.
        let (mut c, mut now) = in_a_group(4, 8, start);
        let mut sent = Vec::new();
        let end = now + Duration::from_secs(60);
        while now < end {
            while let Some(bytes) = c.poll_transmit(now) {
                sent.push((now, Beacon::decode(&bytes).unwrap().lease));
            }
            // Keep the others alive, as their beacons would.
            now = c.poll_timeout().unwrap().min(now + Duration::from_secs(1));
            for p in c.peers.values_mut() {
                p.expires = now + Duration::from_secs(30);
            }
        }
        let interval = config().effective_interval() * 4;
        assert!(sent.len() >= 10, "{} beacons in a minute", sent.len());
        for pair in sent[1..].windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap <= interval, "gap {gap:?} > {interval:?}");
            assert!(gap >= interval.mul_f64(0.9), "gap {gap:?} too short");
        }
        for (_, lease) in &sent {
            assert_eq!(*lease, config().lease * 4);
        }
    }

    #[test]
    fn the_interval_never_passes_a_quarter_of_the_longest_lease() {
        let start = Instant::now();
        let (c, _) = in_a_group(1, 1000, start);
        assert_eq!(c.backoff(), 1024);
        assert_eq!(c.interval_now(), config().max_lease / 4);
        assert_eq!(c.lease_now(), config().max_lease);
    }

    #[test]
    fn in_a_large_group_answers_to_newcomers_are_spaced_by_the_backoff() {
        let start = Instant::now();
        // Seven participants, two per step: a backoff of 4, and still 4
        // with the newcomer.
        let (mut c, now) = in_a_group(2, 6, start);
        assert_eq!(c.backoff(), 4);
        while c.poll_transmit(now).is_some() {}
        let regular = c.poll_timeout().unwrap();
        let newcomer = LocalParticipant::new("new", vec![]);
        let t = now + Duration::from_millis(10);
        c.handle_beacon(&beacon_of(&newcomer), addr("127.0.0.1:2"), t)
            .unwrap();
        // Answered, but no sooner than four gaps after the last beacon.
        let answer = now + config().burst_interval * 4;
        assert!(answer < regular);
        assert_eq!(c.poll_timeout(), Some(answer));
        assert!(c.poll_transmit(answer).is_some());
        // A second newcomer right after waits for the next gap.
        let second = LocalParticipant::new("second", vec![]);
        c.handle_beacon(&beacon_of(&second), addr("127.0.0.1:3"), answer)
            .unwrap();
        // Nine participants now: a backoff of 8.
        assert_eq!(c.backoff(), 8);
        assert_eq!(c.poll_timeout(), Some(answer + config().burst_interval * 8));
    }
}
