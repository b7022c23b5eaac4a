//! A deterministic simulator of many participants, for tests: N
//! participant cores (`ParticipantCore`) on virtual time (std `Instant`s the simulator
//! advances; no runtime, no sleeps), joined by simulated streams.
//!
//! The simulator stands where the shell (`participant.rs`) and
//! weft-messaging stand for a real participant, and drives each core the
//! way the shell does: after every input it polls every output until it is
//! empty. The topology says which pairs of participants can reach each
//! other. By default a pair with a link up has its stream, as if the
//! lower id had dialled it; `Sim::with_discovery` makes
//! the cores choose instead: each end of a link that comes up hears of the
//! other (a discovery `Found`), and a stream exists where a core asked for
//! one (`Dial::Open`, kept and reconnected while its link is up, until
//! `Dial::Close`), after the link's delay. What a core transmits
//! travels over the stream to its neighbour after the link's delay, in
//! order; a neighbour's subscribers get our publications as messaging's
//! PUBLISH would carry them (one message to every neighbour with a
//! matching subscriber, and to our own subscribers).
//!
//! `Sim::with_subscribe_frames` makes PUBLISH as
//! messaging sends it: to the neighbours whose SUBSCRIBE frames arrived,
//! which each end sends when its messaging sees the stream up, before its
//! core hears of it; without it a PUBLISH goes to the neighbours the core
//! knows to subscribe.
//!
//! A stream is reliable while it is up, as a messaging connection is:
//! "drop" here is a stream going down (what was in flight on it is lost,
//! both cores are told through `handle_streams`) and coming back, never a
//! lost frame inside a live stream. Partition takes down every stream of
//! a participant; heal brings them back.
//!
//! A run is reproduced by its seed, whatever its size: a seeded RNG
//! chooses whatever a test leaves to chance (and each core's epoch, which
//! seeds its overlay's choices), the cores' hash maps are keyed from the
//! seed too (a participant keys them at random, see `hashing.rs`), the
//! cores put in order whatever they take from a map before it reaches
//! what they ask of the shell, and time is virtual. What each core asks
//! for and reports is traced (`Sim::traces`): two runs of one seed have
//! the same traces, message for message (`replay_tests.rs`).
//!
//! The simulator itself is for this crate's tests (so the names above are
//! not links: with the feature on, only what follows is public). With the `sim` feature
//! (off by default) two measurements are public, for the bench:
//! [`started_at_once`], a group started at once, how long it takes to
//! converge, how many streams each participant holds, and what an idle
//! participant sends ([`GroupRun`]); and [`churned`], such a group with a
//! tenth of it restarting every minute, how many publications reach the
//! subscribers that never restart ([`ChurnRun`]).

// Outside this crate's tests only the measurements of a group started
// at once and of churn are used (the `sim` feature, for the bench): the
// rest of the simulator is there for the tests.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_discovery::{
    DiscoveryConfig, DiscoveryCore, DiscoveryEvent, GoneReason, LocalParticipant, ParticipantId,
    RemoteParticipant,
};
use weft_messaging::{Identity, TopicFilter};

use crate::control::{Decoded, FilterSpec, decode};
use crate::core::{Dial, ParticipantCore, TransmitKind};
use crate::hashing::KeyedHashing;

pub use churn::{ChurnRun, churned};
pub use group::{CONVERGENCE_LIMIT, GroupRun, started_at_once};

mod beacons;
mod churn;
#[cfg(test)]
mod churn_tests;
mod group;
#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod replay_tests;
mod streams;
#[cfg(test)]
mod tests;

/// A seeded generator (SplitMix64): the same seed, the same run.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// A publication a participant's subscribers received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Got {
    /// The publisher.
    pub(crate) from: String,
    /// The topic.
    pub(crate) topic: String,
    /// The payload.
    pub(crate) data: Bytes,
    /// Whether it came routed through participants (else as a PUBLISH
    /// from a neighbour, or from ourselves).
    pub(crate) routed: bool,
}

/// One simulated participant.
pub(crate) struct Node {
    /// Its core.
    pub(crate) core: ParticipantCore,
    /// Its identity.
    pub(crate) name: Identity,
    /// Whether it is part of the network (partitioned away when not).
    up: bool,
    /// Whether it plays a participant that predates routed interest: its
    /// Hello has no features byte, and it could not read an Interest or a
    /// routed publication.
    old: bool,
    /// How many times it started, for the epoch of its publications.
    starts: u64,
    /// Its subscribers' filters, as subscribed.
    filters: Vec<TopicFilter>,
    /// What its subscribers received, in order.
    pub(crate) got: Vec<Got>,
    /// A digest of everything its cores asked for and reported, in
    /// order, with the virtual time of each (see [`Sim::traces`]).
    trace: DefaultHasher,
}

/// How a participant restarts, as the others' discovery sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    /// Only its new incarnation found.
    Quiet,
    /// Gone (a leaving beacon), then its new incarnation found.
    Leaving,
    /// Its new incarnation reported as a restart of the old one.
    Crashing,
}

/// A stream between two participants, when up.
struct Link {
    up: bool,
    delay: Duration,
    /// Bumped each time the stream goes down, so that what was in flight
    /// on the old stream is lost.
    generation: u64,
    /// When the last frame sent each way arrives (first: from the lower
    /// index): frames never overtake each other on a stream.
    last: [Instant; 2],
}

/// What travels on a stream.
#[derive(Clone, Debug)]
enum Payload {
    /// A tagged message (control, routed message or routed publication).
    Tagged(TransmitKind, Bytes),
    /// A messaging PUBLISH.
    Publish { topic: String, data: Bytes },
    /// A stream a core asked for, connected when it arrives.
    Connect,
    /// Messaging's SUBSCRIBE frames: the sender's subscribers' filters
    /// now (its whole list; an empty one unsubscribes).
    Subscribe(Vec<TopicFilter>),
}

/// A frame in flight.
struct Frame {
    from: usize,
    to: usize,
    generation: u64,
    payload: Payload,
}

/// Frames sent over one direction of a link, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Control messages.
    pub(crate) control: u64,
    /// Bytes of control messages.
    pub(crate) control_bytes: u64,
    /// Routed publications.
    pub(crate) routed: u64,
    /// PUBLISH messages.
    pub(crate) publish: u64,
    /// Frames lost because the stream went down.
    pub(crate) lost: u64,
    /// Interest messages and routed publications that reached a
    /// participant playing an old one, which could not have read them.
    pub(crate) unreadable: u64,
}

/// The simulated network. See the [module documentation](self).
pub(crate) struct Sim {
    /// When the simulation started (its virtual time zero).
    start: Instant,
    now: Instant,
    /// Chooses what tests leave to chance.
    pub(crate) rng: Rng,
    /// Keys each new core's maps, from the seed too (apart from `rng`, so
    /// that what the tests draw does not depend on how many cores
    /// started).
    hash_keys: Rng,
    max_hops: u8,
    pub(crate) nodes: Vec<Node>,
    links: BTreeMap<(usize, usize), Link>,
    /// Frames in flight by arrival time, then in the order sent.
    flight: BTreeMap<(Instant, u64), Frame>,
    sent_frames: u64,
    sent: BTreeMap<(usize, usize), Sent>,
    /// Whether streams are the cores' choice (see the module docs).
    discovery: bool,
    /// Streams asked for, by (the core that asked, the other end).
    pub(crate) connectors: BTreeSet<(usize, usize)>,
    /// Streams connected (lower index first), with discovery.
    established: BTreeSet<(usize, usize)>,
    /// Each participant's links (up or down), by index, so that a
    /// participant's neighbours are found without scanning every link.
    adjacent: Vec<BTreeSet<usize>>,
    /// Each participant's connected streams, with discovery (the
    /// `established` pairs by end).
    streams: Vec<BTreeSet<usize>>,
    /// What each participant's beacon tells, as discovery reports it, for
    /// the incarnation it was made for.
    beacons: Vec<Option<(u64, RemoteParticipant)>>,
    /// The most streams any participant had connected at once, with
    /// discovery (a stream a core turns away counts until it is closed).
    pub(crate) peak_streams: usize,
    /// The most neighbours any core had at once, looked at after every
    /// change of its streams and every message it handled.
    pub(crate) peak_neighbours: usize,
    /// The cores' grace before routing to a subscriber learned through
    /// others (see `interest.rs`).
    grace: Duration,
    /// How long the cores gather changes before telling them.
    batch: Duration,
    /// Each core's next timer, as it last said.
    deadlines: Vec<Option<Instant>>,
    /// The same, in order, so that the next one is found without asking
    /// every core.
    timers: BTreeSet<(Instant, usize)>,
    /// Whether PUBLISH follows SUBSCRIBE frames (see the module docs).
    subscribe_frames: bool,
    /// With SUBSCRIBE frames: what each participant's messaging knows of
    /// its neighbours' filters, by (participant, neighbour).
    told: BTreeMap<(usize, usize), Vec<TopicFilter>>,
    /// While a participant that crashed comes back: it, and the
    /// incarnation it had, which discovery reports as restarted to those
    /// who hear it.
    crashed: Option<(usize, u64)>,
}

impl Sim {
    /// `n` participants named `p0`, `p1`, ... with no streams yet, routing
    /// with at most `max_hops`; `seed` seeds [`rng`](Self::rng).
    pub(crate) fn new(seed: u64, n: usize, max_hops: u8) -> Sim {
        let start = Instant::now();
        let mut sim = Sim {
            start,
            now: start,
            rng: Rng::new(seed),
            hash_keys: Rng::new(seed ^ 0x6861_7368_206b_6579),
            max_hops,
            nodes: Vec::with_capacity(n),
            links: BTreeMap::new(),
            flight: BTreeMap::new(),
            sent_frames: 0,
            sent: BTreeMap::new(),
            discovery: false,
            connectors: BTreeSet::new(),
            established: BTreeSet::new(),
            adjacent: vec![BTreeSet::new(); n],
            streams: vec![BTreeSet::new(); n],
            beacons: vec![None; n],
            peak_streams: 0,
            peak_neighbours: 0,
            grace: Duration::ZERO,
            batch: Duration::ZERO,
            deadlines: vec![None; n],
            timers: BTreeSet::new(),
            subscribe_frames: false,
            told: BTreeMap::new(),
            crashed: None,
        };
        for i in 0..n {
            let name = Identity::new(format!("p{i}")).expect("a valid identity");
            let core = sim.core(i, &name, 1);
            sim.nodes.push(Node {
                core,
                name,
                up: true,
                old: false,
                starts: 1,
                filters: Vec::new(),
                got: Vec::new(),
                trace: DefaultHasher::new(),
            });
        }
        sim
    }

    fn core(&mut self, i: usize, name: &Identity, starts: u64) -> ParticipantCore {
        // A new epoch each start, as the shell draws one at random.
        let epoch = self.rng.next_u64() ^ starts;
        let hashing = KeyedHashing::new(self.hash_keys.next_u64());
        ParticipantCore::keyed(id_of(i), name.clone(), self.max_hops, hashing)
            .with_epoch(epoch)
            .with_sight_grace(self.grace)
            .with_advertise_batch(self.batch)
    }

    /// The same simulation, with cores that gather changes of routes and
    /// interest for `batch` before telling them (as the shell does);
    /// before any link.
    pub(crate) fn with_advertise_batch(mut self, batch: Duration) -> Sim {
        self.batch = batch;
        for i in 0..self.nodes.len() {
            let (name, starts) = (self.nodes[i].name.clone(), self.nodes[i].starts);
            self.nodes[i].core = self.core(i, &name, starts);
        }
        self
    }

    /// The same simulation, with cores that route to a subscriber learned
    /// through others only `grace` after they learned it, while their
    /// group is a full mesh (what the shell does with discovery's beacon
    /// interval); before any link.
    pub(crate) fn with_sight_grace(mut self, grace: Duration) -> Sim {
        self.grace = grace;
        for i in 0..self.nodes.len() {
            let (name, starts) = (self.nodes[i].name.clone(), self.nodes[i].starts);
            self.nodes[i].core = self.core(i, &name, starts);
        }
        self
    }

    /// The same simulation, with PUBLISH going where messaging sends it
    /// (see the [module documentation](self)); before any link.
    pub(crate) fn with_subscribe_frames(mut self) -> Sim {
        self.subscribe_frames = true;
        self
    }

    /// The same simulation, with streams opened and closed as the cores
    /// ask (see the [module documentation](self)); before any link.
    pub(crate) fn with_discovery(mut self) -> Sim {
        self.discovery = true;
        self
    }

    /// What `j`'s beacon tells the others, as discovery reports it (made
    /// once per incarnation).
    fn remote(&mut self, j: usize) -> RemoteParticipant {
        let starts = self.nodes[j].starts;
        if let Some((made, peer)) = &self.beacons[j] {
            if *made == starts {
                return peer.clone();
            }
        }
        let peer = self.make_remote(j);
        self.beacons[j] = Some((starts, peer.clone()));
        peer
    }

    fn make_remote(&self, j: usize) -> RemoteParticipant {
        let config = DiscoveryConfig::default();
        let (beacon, at) = self.first_beacon(j);
        let mut observer =
            DiscoveryCore::new(LocalParticipant::new("observer", vec![]), &config, self.now);
        observer
            .handle_beacon(&beacon, at, self.now)
            .expect("a valid beacon");
        match observer.poll_event() {
            Some(DiscoveryEvent::Found(p)) => p,
            other => panic!("not found: {other:?}"),
        }
    }

    /// With discovery: `a` and `b` hear each other's beacons, and the
    /// streams asked for between them connect again.
    fn hear(&mut self, a: usize, b: usize) {
        if !self.discovery || !self.nodes[a].up || !self.nodes[b].up {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.remote(y);
            let event = match self.crashed {
                Some((c, previous_incarnation)) if c == y => DiscoveryEvent::Restarted {
                    previous_incarnation,
                    peer,
                },
                _ => DiscoveryEvent::Found(peer),
            };
            self.nodes[x].core.handle_discovery(event);
            self.pump(x);
        }
        for (x, y) in [(a, b), (b, a)] {
            if self.connectors.contains(&(x, y)) && !self.established.contains(&key(x, y)) {
                self.send(x, y, Payload::Connect);
            }
        }
    }

    // ===== topology =====

    /// A link between `a` and `b` with `delay` each way, up at once (and
    /// the stream on it, unless the cores choose theirs).
    pub(crate) fn link(&mut self, a: usize, b: usize, delay: Duration) {
        let now = self.now;
        self.adjacent[a].insert(b);
        self.adjacent[b].insert(a);
        self.links.insert(
            key(a, b),
            Link {
                up: true,
                delay,
                generation: 0,
                last: [now; 2],
            },
        );
        // With discovery a new link carries no stream yet: nobody's
        // streams changed, only what discovery hears.
        if !self.discovery {
            self.streams_changed(&[a, b]);
        }
        self.hear(a, b);
    }

    /// Takes the link between `a` and `b` down (`up` false: its stream
    /// ends, what was in flight on it is lost) or brings it back.
    pub(crate) fn set_link(&mut self, a: usize, b: usize, up: bool) {
        let link = self.links.get_mut(&key(a, b)).expect("a link");
        if link.up != up {
            link.up = up;
            if !up {
                link.generation += 1;
                self.disconnect(a, b);
            }
            self.streams_changed(&[a, b]);
            if up {
                self.hear(a, b);
            }
        }
    }

    /// The links, as pairs of indices.
    pub(crate) fn links(&self) -> Vec<(usize, usize)> {
        self.links.keys().copied().collect()
    }

    /// Partitions `i` away from everyone (`up` false: each of its streams
    /// goes down) or heals it (they come back).
    pub(crate) fn set_up(&mut self, i: usize, up: bool) {
        if self.nodes[i].up == up {
            return;
        }
        self.nodes[i].up = up;
        let mut touched = vec![i];
        for j in self.adjacent[i].clone() {
            if !up {
                if let Some(link) = self.links.get_mut(&key(i, j)) {
                    link.generation += 1;
                }
                self.disconnect(i, j);
            }
            touched.push(j);
        }
        self.streams_changed(&touched);
        if up {
            for &j in &touched[1..] {
                if self.links.get(&key(i, j)).is_some_and(|l| l.up) {
                    self.hear(i, j);
                }
            }
        }
    }

    /// Restarts `i` with a fresh core (what it knew is lost; its
    /// subscribers are subscribed again): its streams go down and come
    /// back up.
    pub(crate) fn restart(&mut self, i: usize) {
        self.restart_with(i, Restart::Quiet);
    }

    /// Restarts `i` as [`restart`](Self::restart) does, and with
    /// discovery, as a participant that says goodbye on its way out: each
    /// participant that hears it sees the old incarnation gone (a
    /// leaving beacon) before the new one is found.
    pub(crate) fn restart_leaving(&mut self, i: usize) {
        self.restart_with(i, Restart::Leaving);
    }

    /// Restarts `i` as [`restart`](Self::restart) does, and with
    /// discovery, as a participant that crashed and came back before its
    /// lease ran out: each participant that hears it sees its new
    /// incarnation as a restart of the one it knew.
    pub(crate) fn restart_crashing(&mut self, i: usize) {
        self.restart_with(i, Restart::Crashing);
    }

    fn restart_with(&mut self, i: usize, how: Restart) {
        let was_up = self.nodes[i].up;
        let hearers: Vec<usize> = if how == Restart::Leaving && self.discovery && was_up {
            self.adjacent[i]
                .iter()
                .copied()
                .filter(|&j| self.nodes[j].up)
                .filter(|&j| self.links.get(&key(i, j)).is_some_and(|l| l.up))
                .collect()
        } else {
            Vec::new()
        };
        self.set_up(i, false);
        if !hearers.is_empty() {
            let peer = self.remote(i);
            for j in hearers {
                self.nodes[j].core.handle_discovery(DiscoveryEvent::Gone {
                    peer: peer.clone(),
                    reason: GoneReason::Left,
                });
                self.pump(j);
            }
        }
        // Its connectors die with it; the new core asks again.
        self.connectors.retain(|&(from, _)| from != i);
        self.nodes[i].starts += 1;
        let (name, starts) = (self.nodes[i].name.clone(), self.nodes[i].starts);
        self.nodes[i].core = self.core(i, &name, starts);
        for f in self.nodes[i].filters.clone() {
            self.nodes[i].core.add_subscriber(&f);
        }
        if how == Restart::Crashing {
            self.crashed = Some((i, starts - 1));
        }
        self.set_up(i, was_up);
        self.crashed = None;
    }

    /// Makes `i` play a participant that predates routed interest (see
    /// [`Sent::unreadable`]); before its links come up.
    pub(crate) fn make_old(&mut self, i: usize) {
        self.nodes[i].old = true;
    }

    /// The neighbours of `i`: a link up and both ends in the network.
    pub(crate) fn neighbours(&self, i: usize) -> Vec<usize> {
        if !self.nodes[i].up {
            return Vec::new();
        }
        let ends = if self.discovery {
            &self.streams[i]
        } else {
            &self.adjacent[i]
        };
        ends.iter()
            .copied()
            .filter(|&j| self.links.get(&key(i, j)).is_some_and(|l| l.up))
            .filter(|&j| self.nodes[j].up)
            .collect()
    }

    fn streams_changed(&mut self, touched: &[usize]) {
        let touched: BTreeSet<usize> = touched.iter().copied().collect();
        for &i in &touched {
            if !self.subscribe_frames {
                break;
            }
            // Messaging sees the streams first: it forgets what a lost
            // one told, and tells a new one our filters.
            let now: BTreeSet<usize> = self.neighbours(i).into_iter().collect();
            self.told.retain(|&(a, b), _| a != i || now.contains(&b));
            for j in now {
                let key = (j, i);
                if !self.told.contains_key(&key) && !self.nodes[i].filters.is_empty() {
                    // Marked as told (empty) until the frame arrives.
                    self.told.insert(key, Vec::new());
                    let filters = self.nodes[i].filters.clone();
                    self.send(i, j, Payload::Subscribe(filters));
                }
            }
        }
        for i in touched {
            let names: Vec<Identity> = self
                .neighbours(i)
                .into_iter()
                .map(|j| self.nodes[j].name.clone())
                .collect();
            let now = self.now;
            self.nodes[i].core.handle_streams(names, now);
            self.pump(i);
        }
    }

    // ===== what participants host =====

    /// A subscriber on `i`.
    pub(crate) fn subscribe(&mut self, i: usize, filter: TopicFilter) {
        self.nodes[i].core.add_subscriber(&filter);
        self.nodes[i].filters.push(filter);
        self.tell_filters(i);
        self.pump(i);
    }

    /// With SUBSCRIBE frames: `i`'s messaging tells each neighbour its
    /// filters.
    fn tell_filters(&mut self, i: usize) {
        if !self.subscribe_frames {
            return;
        }
        for j in self.neighbours(i) {
            let filters = self.nodes[i].filters.clone();
            self.send(i, j, Payload::Subscribe(filters));
        }
    }

    /// The subscriber on `i` with `filter` gone.
    pub(crate) fn unsubscribe(&mut self, i: usize, filter: &TopicFilter) {
        let spec = FilterSpec::of(filter);
        let node = &mut self.nodes[i];
        if let Some(at) = node.filters.iter().position(|f| FilterSpec::of(f) == spec) {
            node.filters.remove(at);
            node.core.remove_subscriber(&spec);
        }
        self.tell_filters(i);
        self.pump(i);
    }

    /// A publication by `i`, sent as the shell sends it: a PUBLISH to
    /// every neighbour with a matching subscriber (and to our own), and
    /// copies routed through participants to the others. Returns how many
    /// participants it was sent to.
    pub(crate) fn publish(&mut self, i: usize, topic: &str, data: &[u8]) -> usize {
        let data = Bytes::copy_from_slice(data);
        let mut direct = self.nodes[i].core.subscribers_of(topic);
        if self.subscribe_frames {
            let me = self.nodes[i].name.clone();
            let wants = |f: &Vec<TopicFilter>| f.iter().any(|f| f.matches(topic));
            direct.retain(|s| *s == me);
            for j in self.neighbours(i) {
                if self.told.get(&(i, j)).is_some_and(wants) {
                    direct.push(self.nodes[j].name.clone());
                }
            }
        }
        let mut count = 0;
        for s in direct {
            if s == self.nodes[i].name {
                let from = s.as_str().to_owned();
                self.nodes[i].got.push(Got {
                    from,
                    topic: topic.to_owned(),
                    data: data.clone(),
                    routed: false,
                });
                count += 1;
            } else if let Some(j) = self.neighbour_named(i, s.as_str()) {
                let payload = Payload::Publish {
                    topic: topic.to_owned(),
                    data: data.clone(),
                };
                self.send(i, j, payload);
                count += 1;
            }
        }
        count += self.nodes[i].core.publish(topic, &data);
        self.pump(i);
        count
    }

    fn neighbour_named(&self, i: usize, name: &str) -> Option<usize> {
        self.neighbours(i)
            .into_iter()
            .find(|&j| self.nodes[j].name.as_str() == name)
    }

    // ===== time =====

    /// Runs everything due within `d` of now, then sets now `d` later.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        // Bounded: every frame is handled once, and a simulation of this
        // size settles long before.
        for _ in 0..10_000_000 {
            let next_frame = self.flight.keys().next().map(|(t, _)| *t);
            let next_timer = self.timers.first().map(|(t, _)| *t);
            let next = match (next_frame, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            while let Some(&(t, i)) = self.timers.first() {
                if t > self.now {
                    break;
                }
                self.timers.remove(&(t, i));
                self.deadlines[i] = None;
                let now = self.now;
                self.nodes[i].core.handle_timeout(now);
                self.pump(i);
            }
            if let Some(entry) = self.flight.first_entry() {
                if entry.key().0 <= self.now {
                    let frame = entry.remove();
                    self.arrive(frame);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs until nothing is in flight, for at most `limit`; returns how
    /// long it took.
    pub(crate) fn settle(&mut self, limit: Duration) -> Duration {
        let start = self.now;
        while !self.flight.is_empty() && self.now - start < limit {
            self.run_for(Duration::from_millis(1));
        }
        self.now - start
    }

    /// What was sent from `a` to `b`.
    pub(crate) fn sent(&self, a: usize, b: usize) -> Sent {
        self.sent.get(&(a, b)).copied().unwrap_or_default()
    }

    /// Each participant's trace: a digest of everything its cores asked
    /// for (messages, streams to open and close, participants to keep)
    /// and reported (events, messages and publications routed to it,
    /// whether its interest changed, its next timer), in order, each with
    /// the virtual time it came at. Two runs alike have the same traces.
    pub(crate) fn traces(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.trace.finish()).collect()
    }

    /// Everything sent, summed over every link.
    pub(crate) fn sent_total(&self) -> Sent {
        let mut total = Sent::default();
        for s in self.sent.values() {
            total.control += s.control;
            total.control_bytes += s.control_bytes;
            total.routed += s.routed;
            total.publish += s.publish;
            total.lost += s.lost;
            total.unreadable += s.unreadable;
        }
        total
    }
}

/// The id of participant `i`: ids grow with indices, so of two
/// participants the lower index dials.
fn id_of(i: usize) -> ParticipantId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    ParticipantId(id)
}

/// The index of the participant with id `id`.
fn index_of(id: ParticipantId) -> usize {
    let index = u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"));
    usize::try_from(index).expect("an index")
}

/// A link's key: its two ends, lower first.
fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
