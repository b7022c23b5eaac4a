//! `PathRace`: which direct TCP paths to try to which peer, and when, free
//! of I/O. The shell (`direct.rs`) feeds it what happens (a relay opened,
//! a peer's candidates or start signal arrived, a dial ended, a direct
//! path won) with the time, and does what it polls out: send our
//! candidates or a start signal, dial an address.
//!
//! A race runs beside the relay, never instead of it. It begins when a
//! relay path to a peer opens: each side sends its candidates (and
//! answers the other's with its own). Host candidates (a LAN, a public
//! host, IPv6) are dialled at once; reflexive ones (the address the
//! rendezvous observed, with our direct port) at the moment a `Start`
//! signal names, which the side with the smaller identity sends, so that
//! both sides' SYNs cross in their NATs (TCP simultaneous open). Each
//! address is dialled at most [`RaceConfig::attempts`] times, one attempt
//! at a time, and a race gives up after [`RaceConfig::race_timeout`].
//! Only addresses a registered peer sent are ever dialled, at most
//! [`RaceConfig::max_targets`] of them.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use weft_messaging::Identity;

use crate::wire::{Candidate, CandidateKind, CandidateTransport};

/// `Start`'s strategy byte for TCP simultaneous open.
pub const STRATEGY_TCP_SIMULTANEOUS: u8 = 1;

/// How direct TCP paths are raced: plain data with documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RaceConfig {
    /// Whether direct paths are tried at all. Default: `true`.
    pub enabled: bool,
    /// How long one TCP connect may take before it counts as failed (a
    /// NAT that drops the SYN answers nothing). Default: 1 s.
    pub dial_timeout: Duration,
    /// Attempts per address, one at a time. Default: 3.
    pub attempts: u32,
    /// The wait between an address's failed attempt and its next one.
    /// Default: 100 ms.
    pub retry_after: Duration,
    /// How far ahead of now a `Start` signal sets the simultaneous open,
    /// so that it reaches the other side through the rendezvous first.
    /// Default: 100 ms.
    pub start_delay: Duration,
    /// A race with no direct path after this gives up; the relay stays.
    /// Default: 6 s.
    pub race_timeout: Duration,
    /// The most addresses of one peer dialled in a race; its other
    /// candidates are ignored. Default: 8.
    pub max_targets: usize,
    /// The most candidates of ours sent. Default: 8 (never more than the
    /// protocol's 16).
    pub max_candidates: usize,
    /// Races remembered at once (running or finished); beyond it a new
    /// race evicts the oldest finished one, or is not started. Default: 64.
    pub max_races: usize,
    /// How long the two ends of a direct stream have for the path
    /// preamble (who is there, and whether to keep it). Default: 2 s.
    pub preamble_timeout: Duration,
    /// The host addresses offered as candidates; `None`: the addresses
    /// of this host's interfaces, without loopback and link-local ones.
    /// Default: `None`.
    pub host_ips: Option<Vec<IpAddr>>,
}

impl Default for RaceConfig {
    fn default() -> RaceConfig {
        RaceConfig {
            enabled: true,
            dial_timeout: Duration::from_secs(1),
            attempts: 3,
            retry_after: Duration::from_millis(100),
            start_delay: Duration::from_millis(100),
            race_timeout: Duration::from_secs(6),
            max_targets: 8,
            max_candidates: 8,
            max_races: 64,
            preamble_timeout: Duration::from_secs(2),
            host_ips: None,
        }
    }
}

/// What the shell should do for a race.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaceAction {
    /// Send our candidates to `peer`.
    SendCandidates {
        /// The peer.
        peer: Identity,
    },
    /// Send `peer` a start signal for the simultaneous open.
    SendStart {
        /// The peer.
        peer: Identity,
        /// The race it is for.
        attempt: u32,
        /// When it begins, from now.
        delay: Duration,
    },
    /// Dial `addr` from our direct port, for at most `timeout`, and report
    /// with [`PathRace::handle_dialled`].
    Dial {
        /// The peer there.
        peer: Identity,
        /// Its candidate address.
        addr: SocketAddr,
        /// How long the connect may take.
        timeout: Duration,
    },
}

/// One address of a peer's, as the race dials it.
#[derive(Clone, Debug)]
struct Target {
    addr: SocketAddr,
    /// Dialled at the start moment rather than at once.
    at_start: bool,
    attempts: u32,
    busy: bool,
    next: Option<Instant>,
}

#[derive(Debug)]
struct Race {
    /// The race's number, in our `Start` and theirs.
    attempt: u32,
    sent: bool,
    got: bool,
    start_sent: bool,
    start_at: Option<Instant>,
    targets: Vec<Target>,
    deadline: Instant,
    finished: bool,
    /// A stream was kept (by the deciding end).
    kept: bool,
    /// When it began, for evicting the oldest.
    began: Instant,
}

impl Race {
    fn new(attempt: u32, now: Instant, config: &RaceConfig) -> Race {
        Race {
            attempt,
            sent: false,
            got: false,
            start_sent: false,
            start_at: None,
            targets: Vec::new(),
            deadline: now + config.race_timeout,
            finished: false,
            kept: false,
            began: now,
        }
    }
}

/// The direct-path races of one peer of ours, free of I/O: see the
/// module's docs.
#[derive(Debug)]
pub struct PathRace {
    me: Identity,
    config: RaceConfig,
    races: HashMap<Identity, Race>,
    actions: VecDeque<RaceAction>,
    next_attempt: u32,
}

impl PathRace {
    /// Races for `me` with `config`.
    pub fn new(me: Identity, config: RaceConfig) -> PathRace {
        PathRace {
            me,
            config,
            races: HashMap::new(),
            actions: VecDeque::new(),
            next_attempt: 1,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RaceConfig {
        &self.config
    }

    /// Whether we decide which direct stream with `peer` is kept (the
    /// smaller identity does, so both ends keep the same one).
    pub fn decides(&self, peer: &Identity) -> bool {
        self.me.as_str() < peer.as_str()
    }

    /// The peers with a running race.
    pub fn racing(&self) -> impl Iterator<Item = &Identity> {
        self.races
            .iter()
            .filter(|(_, r)| !r.finished)
            .map(|(p, _)| p)
    }

    /// The peers with a race, running or finished.
    pub fn peers(&self) -> impl Iterator<Item = &Identity> {
        self.races.keys()
    }

    /// Whether a race with `peer` runs.
    pub fn is_racing(&self, peer: &Identity) -> bool {
        self.races.get(peer).is_some_and(|r| !r.finished)
    }

    /// A race with `peer`, begun when none runs; `None` when the table is
    /// full of running races.
    fn race(&mut self, peer: &Identity, now: Instant) -> Option<&mut Race> {
        let running = self.races.get(peer).is_some_and(|r| !r.finished);
        if !running {
            if !self.races.contains_key(peer) && self.races.len() >= self.config.max_races {
                let oldest = self
                    .races
                    .iter()
                    .filter(|(_, r)| r.finished)
                    .min_by_key(|(_, r)| r.began)
                    .map(|(p, _)| p.clone());
                self.races.remove(&oldest?);
            }
            let attempt = self.next_attempt;
            self.next_attempt = self.next_attempt.wrapping_add(1).max(1);
            self.races
                .insert(peer.clone(), Race::new(attempt, now, &self.config));
        }
        self.races.get_mut(peer)
    }

    /// A relay path to `peer` opened: race for a direct one (we send our
    /// candidates) unless one runs.
    pub fn handle_relay(&mut self, peer: &Identity, now: Instant) {
        if !self.config.enabled || *peer == self.me {
            return;
        }
        let Some(race) = self.race(peer, now) else {
            return;
        };
        if !race.sent {
            race.sent = true;
            self.actions
                .push_back(RaceAction::SendCandidates { peer: peer.clone() });
        }
    }

    /// `peer`'s candidates arrived: the TCP ones worth dialling become the
    /// race's targets (answered with ours when we had not sent them).
    pub fn handle_candidates(&mut self, peer: &Identity, addrs: &[Candidate], now: Instant) {
        if !self.config.enabled || *peer == self.me {
            return;
        }
        let max = self.config.max_targets;
        // A peer's candidates begin a new race only once the last one is
        // old: its signals cannot make us dial again and again (our own
        // relay opening again can).
        let recent = self.config.race_timeout;
        if self
            .races
            .get(peer)
            .is_some_and(|r| r.finished && now < r.began + recent)
        {
            return;
        }
        let Some(race) = self.race(peer, now) else {
            return;
        };
        for c in addrs {
            if race.targets.len() >= max {
                break;
            }
            if c.transport != CandidateTransport::Tcp || !dialable(c.addr) {
                continue;
            }
            let at_start = c.kind != CandidateKind::Host;
            match race.targets.iter_mut().find(|t| t.addr == c.addr) {
                // A host address that is also reflexive is a public host:
                // dialled at once.
                Some(t) => t.at_start &= at_start,
                None => race.targets.push(Target {
                    addr: c.addr,
                    at_start,
                    attempts: 0,
                    busy: false,
                    next: None,
                }),
            }
        }
        race.got = true;
        for t in &mut race.targets {
            if t.next.is_none() && t.attempts == 0 {
                t.next = if t.at_start { race.start_at } else { Some(now) };
            }
        }
        if !race.sent {
            race.sent = true;
            self.actions
                .push_back(RaceAction::SendCandidates { peer: peer.clone() });
        }
        self.maybe_start(peer, now);
    }

    /// The deciding side sends the start signal once both sets of
    /// candidates are out, and starts itself after the same delay.
    fn maybe_start(&mut self, peer: &Identity, now: Instant) {
        let decides = self.decides(peer);
        let delay = self.config.start_delay;
        let Some(race) = self.races.get_mut(peer) else {
            return;
        };
        if !decides || race.finished || !race.sent || !race.got || race.start_sent {
            return;
        }
        race.start_sent = true;
        self.actions.push_back(RaceAction::SendStart {
            peer: peer.clone(),
            attempt: race.attempt,
            delay,
        });
        Self::set_start(race, now + delay);
    }

    fn set_start(race: &mut Race, at: Instant) {
        // Once per race: a peer's repeated starts cannot renew attempts.
        if race.start_at.is_some() {
            return;
        }
        race.start_at = Some(at);
        for t in race.targets.iter_mut().filter(|t| t.at_start) {
            // A fresh attempt at the start moment, even for an address
            // dialled before: the crossing SYNs are what opens the NATs.
            t.next = Some(at);
            t.attempts = 0;
        }
    }

    /// `peer`'s start signal: its simultaneous open begins after `delay`.
    pub fn handle_start(&mut self, peer: &Identity, strategy: u8, delay: Duration, now: Instant) {
        if strategy != STRATEGY_TCP_SIMULTANEOUS || self.decides(peer) {
            return;
        }
        let bound = self.config.start_delay.max(Duration::from_secs(1));
        if let Some(race) = self.races.get_mut(peer).filter(|r| !r.finished) {
            Self::set_start(race, now + delay.min(bound));
        }
    }

    /// A dial of `addr` for `peer` ended, connected or not. A connected
    /// one is the shell's to settle (the preamble); a failed one is tried
    /// again while attempts remain.
    pub fn handle_dialled(&mut self, peer: &Identity, addr: SocketAddr, ok: bool, now: Instant) {
        let (attempts, retry) = (self.config.attempts, self.config.retry_after);
        let Some(race) = self.races.get_mut(peer) else {
            return;
        };
        if let Some(t) = race.targets.iter_mut().find(|t| t.addr == addr) {
            t.busy = false;
            t.next = (!ok && t.attempts < attempts && !race.finished).then_some(now + retry);
        }
    }

    /// The deciding end's choice for a stream to `peer` that passed its
    /// preamble: keep it when it is the first of a running race (which
    /// then stops dialling), else close it.
    pub fn handle_keep(&mut self, peer: &Identity) -> bool {
        let decides = self.decides(peer);
        match self.races.get_mut(peer) {
            Some(race) if decides && !race.finished && !race.kept => {
                race.kept = true;
                race.finished = true;
                true
            }
            _ => false,
        }
    }

    /// A direct path to `peer` won (or messaging has one): the race stops.
    pub fn handle_won(&mut self, peer: &Identity) {
        if let Some(race) = self.races.get_mut(peer) {
            race.finished = true;
        }
    }

    /// Whether an inbound stream from `from` may be `peer`'s: a running
    /// race's peer whose candidates include that IP.
    pub fn inbound_from(&self, from: IpAddr) -> Option<&Identity> {
        self.races
            .iter()
            .find(|(_, r)| !r.finished && r.targets.iter().any(|t| t.addr.ip() == from))
            .map(|(p, _)| p)
    }

    /// Time passes: dials that are due go out; races past their time give
    /// up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (attempts, timeout) = (self.config.attempts, self.config.dial_timeout);
        for (peer, race) in self.races.iter_mut() {
            if race.finished {
                continue;
            }
            if now >= race.deadline {
                race.finished = true;
                continue;
            }
            for t in race.targets.iter_mut() {
                let due = t.next.is_some_and(|at| at <= now);
                if due && !t.busy && t.attempts < attempts {
                    t.busy = true;
                    t.attempts += 1;
                    t.next = None;
                    self.actions.push_back(RaceAction::Dial {
                        peer: peer.clone(),
                        addr: t.addr,
                        timeout,
                    });
                }
            }
        }
    }

    /// The next thing to do, after [`handle_timeout`](Self::handle_timeout)
    /// with the current time.
    pub fn poll_action(&mut self) -> Option<RaceAction> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next wanted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.races
            .values()
            .filter(|r| !r.finished)
            .flat_map(|r| {
                r.targets
                    .iter()
                    .filter(|t| !t.busy)
                    .filter_map(|t| t.next)
                    .chain(std::iter::once(r.deadline))
            })
            .min()
    }
}

/// Whether an address a peer sent may be dialled: a unicast address with
/// a port (never unspecified, multicast or broadcast).
fn dialable(addr: SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast(),
        IpAddr::V6(ip) => !ip.is_unspecified() && !ip.is_multicast(),
    };
    ip_ok && addr.port() != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::new(s).unwrap()
    }

    fn cand(kind: CandidateKind, addr: &str) -> Candidate {
        Candidate {
            transport: CandidateTransport::Tcp,
            kind,
            addr: addr.parse().unwrap(),
        }
    }

    fn drain(race: &mut PathRace, now: Instant) -> Vec<RaceAction> {
        race.handle_timeout(now);
        std::iter::from_fn(|| race.poll_action()).collect()
    }

    fn dials(actions: &[RaceAction]) -> Vec<SocketAddr> {
        actions
            .iter()
            .filter_map(|a| match a {
                RaceAction::Dial { addr, .. } => Some(*addr),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn host_candidates_are_dialled_at_once_reflexive_ones_at_the_start() {
        let t0 = Instant::now();
        let mut race = PathRace::new(id("alice"), RaceConfig::default());
        let bob = id("bob");
        race.handle_relay(&bob, t0);
        assert_eq!(
            drain(&mut race, t0),
            vec![RaceAction::SendCandidates { peer: bob.clone() }]
        );
        race.handle_candidates(
            &bob,
            &[
                cand(CandidateKind::Host, "10.0.0.2:4000"),
                cand(CandidateKind::Reflexive, "198.51.100.7:4000"),
                // Not TCP, not dialable: ignored.
                Candidate {
                    transport: CandidateTransport::Udp,
                    ..cand(CandidateKind::Host, "10.0.0.2:5000")
                },
                cand(CandidateKind::Host, "0.0.0.0:4000"),
                cand(CandidateKind::Host, "224.0.0.1:4000"),
                cand(CandidateKind::Host, "10.0.0.2:0"),
            ],
            t0,
        );
        let actions = drain(&mut race, t0);
        // alice < bob: alice decides, and sends the start.
        assert!(actions.contains(&RaceAction::SendStart {
            peer: bob.clone(),
            attempt: 1,
            delay: Duration::from_millis(100)
        }));
        assert_eq!(dials(&actions), vec!["10.0.0.2:4000".parse().unwrap()]);
        let start = t0 + Duration::from_millis(100);
        assert_eq!(race.poll_timeout(), Some(start));
        assert_eq!(
            dials(&drain(&mut race, start)),
            vec!["198.51.100.7:4000".parse().unwrap()]
        );
        assert_eq!(
            race.inbound_from("198.51.100.7".parse().unwrap()),
            Some(&bob)
        );
        assert_eq!(race.inbound_from("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn the_other_side_answers_and_waits_for_the_start() {
        let t0 = Instant::now();
        let mut race = PathRace::new(id("bob"), RaceConfig::default());
        let alice = id("alice");
        race.handle_candidates(
            &alice,
            &[cand(CandidateKind::Reflexive, "198.51.100.9:4000")],
            t0,
        );
        assert_eq!(
            drain(&mut race, t0),
            vec![RaceAction::SendCandidates {
                peer: alice.clone()
            }]
        );
        // No start of its own: bob is the larger identity.
        assert_eq!(race.poll_timeout(), Some(t0 + Duration::from_secs(6)));
        let t1 = t0 + Duration::from_millis(30);
        race.handle_start(
            &alice,
            STRATEGY_TCP_SIMULTANEOUS,
            Duration::from_millis(100),
            t1,
        );
        let at = t1 + Duration::from_millis(100);
        assert!(dials(&drain(&mut race, at - Duration::from_millis(1))).is_empty());
        assert_eq!(
            dials(&drain(&mut race, at)),
            vec!["198.51.100.9:4000".parse().unwrap()]
        );
    }

    #[test]
    fn failed_dials_retry_a_bounded_number_of_times_and_the_race_gives_up() {
        let t0 = Instant::now();
        let config = RaceConfig::default();
        let mut race = PathRace::new(id("alice"), config.clone());
        let bob = id("bob");
        let addr: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        race.handle_relay(&bob, t0);
        race.handle_candidates(&bob, &[cand(CandidateKind::Host, "10.0.0.2:4000")], t0);
        let mut now = t0;
        let mut count = 0;
        // Five rounds of a failed attempt: within the race's time.
        for _ in 0..5 {
            count += dials(&drain(&mut race, now)).len();
            // One attempt at a time: nothing more while it runs.
            assert!(dials(&drain(&mut race, now)).is_empty());
            now += config.dial_timeout;
            race.handle_dialled(&bob, addr, false, now);
            now += config.retry_after;
        }
        assert_eq!(count, config.attempts as usize);
        assert!(race.is_racing(&bob));
        race.handle_timeout(t0 + config.race_timeout);
        assert!(!race.is_racing(&bob));
        assert_eq!(race.poll_timeout(), None);
    }

    #[test]
    fn a_won_race_dials_nothing_more_and_a_new_relay_races_again() {
        let t0 = Instant::now();
        let mut race = PathRace::new(id("alice"), RaceConfig::default());
        let bob = id("bob");
        race.handle_relay(&bob, t0);
        race.handle_candidates(
            &bob,
            &[cand(CandidateKind::Reflexive, "198.51.100.7:4000")],
            t0,
        );
        drain(&mut race, t0);
        race.handle_won(&bob);
        assert!(dials(&drain(&mut race, t0 + Duration::from_secs(1))).is_empty());
        assert_eq!(race.inbound_from("198.51.100.7".parse().unwrap()), None);
        // The direct path died and the relay came back: a new race.
        let t1 = t0 + Duration::from_secs(10);
        race.handle_relay(&bob, t1);
        assert_eq!(
            drain(&mut race, t1),
            vec![RaceAction::SendCandidates { peer: bob.clone() }]
        );
        assert!(race.is_racing(&bob));
    }

    #[test]
    fn the_deciding_end_keeps_only_the_first_stream_of_a_race() {
        let t0 = Instant::now();
        let mut alice = PathRace::new(id("alice"), RaceConfig::default());
        let bob = id("bob");
        alice.handle_relay(&bob, t0);
        assert!(alice.handle_keep(&bob));
        assert!(!alice.handle_keep(&bob), "a second stream is closed");
        assert!(!alice.is_racing(&bob));
        // The next race keeps its own first one.
        alice.handle_relay(&bob, t0 + Duration::from_secs(1));
        assert!(alice.handle_keep(&bob));
        // The larger identity never decides.
        let mut bobs = PathRace::new(bob, RaceConfig::default());
        bobs.handle_relay(&id("alice"), t0);
        assert!(!bobs.handle_keep(&id("alice")));
    }

    #[test]
    fn targets_and_races_are_bounded() {
        let t0 = Instant::now();
        let config = RaceConfig {
            max_targets: 2,
            max_races: 2,
            ..RaceConfig::default()
        };
        let mut race = PathRace::new(id("alice"), config);
        let many: Vec<Candidate> = (1..=16)
            .map(|i| cand(CandidateKind::Host, &format!("10.0.0.{i}:4000")))
            .collect();
        race.handle_candidates(&id("bob"), &many, t0);
        assert_eq!(dials(&drain(&mut race, t0)).len(), 2);
        race.handle_relay(&id("carol"), t0);
        // Two running races: a third is not started.
        race.handle_relay(&id("dave"), t0);
        assert!(!race.is_racing(&id("dave")));
        race.handle_won(&id("bob"));
        race.handle_relay(&id("dave"), t0);
        assert!(race.is_racing(&id("dave")));
        // Our own identity is never raced.
        race.handle_relay(&id("alice"), t0);
        assert!(!race.is_racing(&id("alice")));
    }
}
