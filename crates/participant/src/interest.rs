//! Interest and publications routed through participants, without I/O.
//!
//! A participant's own subscribers reach its neighbours in Hello and
//! SubscriberAdded/Removed, and publications reach them as weft-messaging
//! PUBLISH messages, as before. This module carries both further:
//!
//! - Interest is a distance vector keyed by subscriber: each participant
//!   tells each neighbour (an [`Interest`](crate::control::Control::Interest)
//!   message, a full list sent when it changes) the subscribers it reaches,
//!   how many hops away and with which filters, leaving out the neighbour
//!   itself and those it reaches through that neighbour (split horizon).
//!   Entries of `max_hops` or more are ignored, which bounds how long a
//!   withdrawn subscriber can be counted up around a cycle. A subscriber's
//!   filters are taken from the neighbour on its shortest route, so a
//!   withdrawal (an unsubscribe, a neighbour lost) travels the way the
//!   subscription came.
//! - A publication for subscribers that are not neighbours travels in
//!   copies, each naming the subscribers it is for (its targets). The
//!   publisher splits its targets by next hop, and so does every
//!   participant on the way: each subscriber is named in exactly one copy
//!   at each split, so even where the streams form cycles every subscriber
//!   gets one copy, and a copy only crosses a stream on the shortest route
//!   to a subscriber whose filter matched. A spanning tree would do the
//!   same only once every participant agreed on it, and would lose copies
//!   while it is rebuilt after a partition; the target lists need no
//!   agreement beyond the routes.
//! - While routes change, two copies could still name one subscriber (one
//!   sent before the change, one after). A subscriber therefore delivers a
//!   publication only the first time: publications are named by their
//!   publisher, its epoch and a sequence number, and a bounded window of
//!   the last names seen ([`RecentNames`](crate::recent::RecentNames))
//!   drops the second copy. A copy is never sent back to the neighbour it
//!   came from, and its hop count bounds any loop of stale routes.
//!
//! - Routing is for subscribers out of sight. While the group is within
//!   the full mesh's size, a subscriber that discovery knows will be a
//!   neighbour (of each pair the lower id dials) and gets PUBLISH messages
//!   once its stream is up and messaging has its filters: a copy routed
//!   to it meanwhile would switch it from one path to another mid-stream,
//!   where a PUBLISH overtakes older copies still a hop or two away. So it
//!   is never routed to ([`set_sight`](Interest::set_sight)); nor is one
//!   learned through others until discovery had one beacon interval to
//!   hear of it (the grace, [`set_grace`](Interest::set_grace)), since a
//!   participant of our own network is often told of by its neighbours
//!   before its own beacon reaches us. Past the full mesh's size most
//!   participants are never neighbours, and everyone that is not one is
//!   routed to at once.
//!
//! Only neighbours whose Hello carried the interest feature take part:
//! participants that predate it get no Interest and no routed publication,
//! and their own subscribers are served by PUBLISH messages as before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::control::{
    FEATURE_CHANGES, FEATURE_INTEREST, FEATURE_UNNAMED, FilterSpec, InterestEntry, MAX_LIST,
};
use crate::filters::{FilterLimits, RemoteFilters};
use crate::recent::RecentNames;
use plan::Plans;
use weft_messaging::Identity;

mod advertise;
mod plan;
mod publications;

/// How many publication names are remembered unless
/// [`set_recent`](Interest::set_recent) says otherwise.
const DEFAULT_RECENT: usize = 4096;

/// A publication routed to us, for our own subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The publishing participant.
    pub(crate) from: Identity,
    /// The topic.
    pub(crate) topic: Arc<str>,
    /// The payload.
    pub(crate) data: Bytes,
}

/// The counters of routed publications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InterestStats {
    /// Publications routed to us and delivered to our subscribers.
    pub(crate) delivered: u64,
    /// Copies passed on to a neighbour (ours included).
    pub(crate) forwarded: u64,
    /// Second copies of a publication we had delivered.
    pub(crate) duplicates: u64,
    /// Publications for us that no subscriber of ours matches any more.
    pub(crate) unwanted: u64,
    /// Targets dropped: the hop count ran out.
    pub(crate) hop_limit: u64,
    /// Targets dropped: no route to them, or only back where the copy came
    /// from.
    pub(crate) no_route: u64,
    /// Filters in Interest messages refused for a limit or a regex that
    /// does not compile within them.
    pub(crate) filters_refused: u64,
}

/// A subscriber a neighbour told us it reaches.
#[derive(Debug)]
struct Learned {
    /// Hops from that neighbour.
    hops: u8,
    /// Its filters, compiled within the limits.
    filters: RemoteFilters,
    /// The filters as told (some may have been refused), hashed: the
    /// same list told again is not compiled, nor counted, again.
    told: u64,
}

/// What we know of one neighbour.
#[derive(Debug, Default)]
struct Neighbour {
    /// Its Hello carried the interest feature.
    capable: bool,
    /// Its Hello said it takes what changed rather than whole lists.
    takes_changes: bool,
    /// Its Hello said it takes a copy naming no target as one for itself
    /// ([`FEATURE_UNNAMED`]).
    takes_unnamed: bool,
    /// Its own subscribers' filters, as the core took them.
    direct: BTreeSet<FilterSpec>,
    /// The subscribers it reaches (itself excluded).
    learned: BTreeMap<String, Learned>,
    /// What we last told it.
    told: Option<Vec<InterestEntry>>,
}

/// The best route to a subscriber: how many hops, through which neighbour.
#[derive(Clone, Debug)]
struct Best {
    hops: u8,
    /// The neighbour, as the handle copies to it are sent to.
    via: Identity,
    /// How many filters its entry in an Interest list carries.
    specs: usize,
}

/// Interest and routed publications of one participant. See the
/// [module documentation](self).
pub(crate) struct Interest {
    me: String,
    max_hops: u8,
    limits: FilterLimits,
    epoch: u64,
    next_seq: u64,
    neighbours: BTreeMap<String, Neighbour>,
    /// The best route to every subscriber we reach, kept up to date one
    /// subscriber at a time: a change touches only the subscribers it
    /// names, each worked out again from the neighbours
    /// ([`touch`](Self::touch)), so a change costs the neighbours, not
    /// the group.
    best: BTreeMap<String, Best>,
    /// The filters of all entries of `best`: with `best`'s length, whether
    /// an Interest list could be cut to fit one control message.
    specs_total: usize,
    /// The subscribers touched since the last
    /// [`changed_advertisements`](Self::changed_advertisements): only
    /// their entries can differ from what each neighbour was told.
    pending: BTreeSet<String>,
    /// Whether the next [`changed_advertisements`](Self::changed_advertisements)
    /// compares whole lists: the last one's lists may have been cut, so
    /// they may lack entries no change touched.
    compare_whole: bool,
    /// The most entries, and filters, in one Interest list.
    max_list: usize,
    seen: RecentNames,
    deliveries: VecDeque<Delivery>,
    /// The names of the publication delivered last: a stream of
    /// publications comes from one publisher on one topic, so its names
    /// are checked and allocated once.
    last_delivered: Option<(Identity, Arc<str>)>,
    /// The publisher and epoch of the publication named last, and their
    /// hash.
    last_publisher: Option<(String, u64, u64)>,
    /// Whether what we reach may have changed since the last
    /// [`poll_changed`](Self::poll_changed).
    changed: bool,
    /// Participants we expect a stream with (those discovery knows while
    /// the group is within the full mesh's size): never routed to.
    sight: BTreeSet<String>,
    /// Whether the group is within the full mesh's size, where a
    /// subscriber learned through others waits out the grace.
    mesh: bool,
    /// How long a subscriber learned through others waits before it is
    /// routed to, in the full mesh.
    grace: Duration,
    /// Subscribers out of sight waiting out the grace, since when (`None`
    /// until the next [`tick`](Self::tick) says when that is).
    hidden: BTreeMap<String, Option<Instant>>,
    /// The subscribers our publications are routed to: out of sight, and
    /// past the grace.
    far: BTreeSet<String>,
    /// Bumped by every change to the routes, to what is in sight or far,
    /// or to a neighbour's filters or features: the plans of earlier
    /// generations are stale.
    generation: u64,
    /// The last plans of where copies go ([`plan`]).
    plans: Plans,
    stats: InterestStats,
}

impl Interest {
    /// The interest of participant `me`, with at most `max_hops` between a
    /// publisher and a subscriber, neighbours' filters held within
    /// `limits`, and `epoch` naming this run's publications.
    pub(crate) fn new(me: &str, max_hops: u8, limits: FilterLimits, epoch: u64) -> Interest {
        Interest {
            me: me.to_owned(),
            max_hops: max_hops.max(1),
            limits,
            epoch,
            next_seq: 0,
            neighbours: BTreeMap::new(),
            best: BTreeMap::new(),
            specs_total: 0,
            pending: BTreeSet::new(),
            compare_whole: false,
            max_list: MAX_LIST,
            seen: RecentNames::new(DEFAULT_RECENT),
            deliveries: VecDeque::new(),
            last_delivered: None,
            last_publisher: None,
            changed: false,
            sight: BTreeSet::new(),
            mesh: false,
            grace: Duration::ZERO,
            hidden: BTreeMap::new(),
            far: BTreeSet::new(),
            generation: 0,
            plans: Plans::default(),
            stats: InterestStats::default(),
        }
    }

    /// The same, with subscribers learned through others routed to only
    /// `grace` after they were learned while the group is a full mesh
    /// (default zero: at once). See the [module documentation](self).
    pub(crate) fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
        self.sort_out_of_sight();
    }

    /// The same, naming publications with another epoch.
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.next_seq = 0;
    }

    /// The same, remembering the names of the last `n` publications
    /// delivered (see the [module documentation](self)).
    pub(crate) fn set_recent(&mut self, n: usize) {
        self.seen = RecentNames::new(n);
    }

    /// The same, with other limits on neighbours' filters.
    pub(crate) fn set_limits(&mut self, limits: FilterLimits) {
        self.limits = limits;
    }

    // ===== input =====

    /// A stream came up with `n`: a neighbour, which takes part once its
    /// Hello says it can ([`handle_hello`](Self::handle_hello)).
    pub(crate) fn neighbour_up(&mut self, n: &str) {
        self.neighbours.entry(n.to_owned()).or_default();
        self.touch(n);
    }

    /// `n`'s stream ended: what it told us goes with it.
    pub(crate) fn neighbour_down(&mut self, n: &str) {
        let Some(gone) = self.neighbours.remove(n) else {
            return;
        };
        self.touch(n);
        for subscriber in gone.learned.keys() {
            self.touch(subscriber);
        }
    }

    /// `n`'s Hello, its features byte: whether it routes interest (and
    /// is told ours), whether it takes what changed after the first list,
    /// and whether it takes copies naming no target.
    pub(crate) fn handle_hello(&mut self, n: &str, features: u8) {
        if let Some(neighbour) = self.neighbours.get_mut(n) {
            neighbour.capable = features & FEATURE_INTEREST != 0;
            neighbour.takes_changes = features & FEATURE_CHANGES != 0;
            neighbour.takes_unnamed = features & FEATURE_UNNAMED != 0;
            // A new Hello starts a new conversation: tell it everything.
            neighbour.told = None;
            let reached: Vec<String> = neighbour.learned.keys().cloned().collect();
            self.touch(n);
            for subscriber in &reached {
                self.touch(subscriber);
            }
        }
    }

    /// `n`'s own subscribers' filters now (those the core took).
    pub(crate) fn set_direct<'a>(&mut self, n: &str, specs: impl Iterator<Item = &'a FilterSpec>) {
        if let Some(neighbour) = self.neighbours.get_mut(n) {
            neighbour.direct = specs.cloned().collect();
            self.touch(n);
        }
    }

    /// `n`'s list of the subscribers it reaches, replacing the previous
    /// one. Entries about us or `n`, with no filters, or of `max_hops` or
    /// more are ignored; a subscriber's filters are held within the limits
    /// (compiled again only when they changed).
    pub(crate) fn handle_interest(&mut self, n: &str, entries: Vec<InterestEntry>) {
        let max = self.max_hops;
        let Some(neighbour) = self.neighbours.get_mut(n) else {
            return;
        };
        let mut old = std::mem::take(&mut neighbour.learned);
        let mut touched: Vec<String> = Vec::with_capacity(entries.len());
        for (subscriber, hops, specs) in entries {
            if subscriber == self.me || subscriber == n || hops == 0 || hops >= max {
                continue;
            }
            let previous = old.remove(&subscriber);
            let learned = self.learn(previous, hops, &specs);
            if let (Some(l), Some(neighbour)) = (learned, self.neighbours.get_mut(n)) {
                neighbour.learned.insert(subscriber.clone(), l);
            }
            touched.push(subscriber);
        }
        self.changed |= !old.is_empty();
        for subscriber in touched.iter().chain(old.keys()) {
            self.touch(subscriber);
        }
    }

    /// What changed in `n`'s list: entries new or different (one of
    /// `max_hops` or more, or with no filter left, removes the
    /// subscriber) and subscribers gone.
    pub(crate) fn handle_interest_changes(
        &mut self,
        n: &str,
        set: Vec<InterestEntry>,
        removed: Vec<String>,
    ) {
        let max = self.max_hops;
        let Some(neighbour) = self.neighbours.get_mut(n) else {
            return;
        };
        let mut touched: Vec<String> = Vec::with_capacity(set.len() + removed.len());
        for subscriber in removed {
            if neighbour.learned.remove(&subscriber).is_some() {
                self.changed = true;
                touched.push(subscriber);
            }
        }
        for (subscriber, hops, specs) in set {
            if subscriber == self.me || subscriber == n {
                continue;
            }
            let Some(neighbour) = self.neighbours.get_mut(n) else {
                return;
            };
            let previous = neighbour.learned.remove(&subscriber);
            let had = previous.is_some();
            if hops == 0 || hops >= max {
                self.changed |= had;
            } else {
                match self.learn(previous, hops, &specs) {
                    Some(l) => {
                        if let Some(neighbour) = self.neighbours.get_mut(n) {
                            neighbour.learned.insert(subscriber.clone(), l);
                        }
                    }
                    None => self.changed |= had,
                }
            }
            touched.push(subscriber);
        }
        for subscriber in &touched {
            self.touch(subscriber);
        }
    }

    /// A subscriber told with `hops` and `specs`, from what was learned of
    /// it before: its filters compiled again only when they changed (a
    /// refused one counted once); `None` when none is left.
    fn learn(
        &mut self,
        previous: Option<Learned>,
        hops: u8,
        specs: &[FilterSpec],
    ) -> Option<Learned> {
        let told = hash_of(&specs);
        let filters = match previous {
            Some(l) if l.told == told => {
                self.changed |= l.hops != hops;
                l.filters
            }
            _ => {
                self.changed = true;
                let mut filters = RemoteFilters::default();
                for spec in specs {
                    if filters.add(spec, &self.limits).is_err() {
                        self.stats.filters_refused += 1;
                    }
                }
                filters
            }
        };
        (!filters.is_empty()).then_some(Learned {
            hops,
            filters,
            told,
        })
    }

    /// The participants we expect a stream with, while the group is
    /// within the full mesh's size (`Some`: they are never routed to, and
    /// others wait out the grace), or `None` past it (every subscriber
    /// that is not a neighbour is routed to at once).
    pub(crate) fn set_sight(&mut self, sight: Option<BTreeSet<String>>) {
        let mesh = sight.is_some();
        let sight = sight.unwrap_or_default();
        if mesh != self.mesh || sight != self.sight {
            self.mesh = mesh;
            self.sight = sight;
            self.sort_out_of_sight();
        }
    }

    /// The time is `now`: subscribers out of sight that waited out the
    /// grace are routed to from now on.
    pub(crate) fn tick(&mut self, now: Instant) {
        let grace = self.grace;
        let mut due = Vec::new();
        for (s, since) in &mut self.hidden {
            let since = *since.get_or_insert(now);
            if now.saturating_duration_since(since) >= grace {
                due.push(s.clone());
            }
        }
        for s in due {
            self.hidden.remove(&s);
            self.far.insert(s);
            self.changed = true;
            self.generation += 1;
        }
    }

    /// When [`tick`](Self::tick) is next due: `now` when a subscriber
    /// waits without a start yet, else the end of the first grace.
    pub(crate) fn poll_timeout(&self, now: Option<Instant>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for since in self.hidden.values() {
            let due = match since {
                Some(t) => *t + self.grace,
                None => now?,
            };
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next
    }

    // ===== output =====

    /// The next publication routed to us, for our subscribers.
    pub(crate) fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// Whether the subscribers we reach may have changed since the last
    /// call (publishers waiting for subscribers look again).
    pub(crate) fn poll_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    // ===== getters =====

    /// The subscribers we reach through participants (neighbours' own
    /// included), with hops and the neighbour on the way.
    #[cfg(test)]
    pub(crate) fn subscribers(&self) -> impl Iterator<Item = (&str, u8, &str)> {
        self.best
            .iter()
            .map(|(s, b)| (s.as_str(), b.hops, b.via.as_str()))
    }

    /// The subscribers out of sight, reached through participants, with a
    /// filter matching `topic`: those a publication of ours is routed to
    /// (see the [module documentation](self)).
    pub(crate) fn matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.routes_matching(topic).map(|(_, s)| s)
    }

    /// [`matching`](Self::matching)'s subscribers, each with the
    /// neighbour its route goes through.
    fn routes_matching<'a>(
        &'a self,
        topic: &'a str,
    ) -> impl Iterator<Item = (&'a Identity, &'a str)> + 'a {
        self.far.iter().filter_map(move |s| {
            let b = self.best.get(s)?;
            let wants = self
                .neighbours
                .get(b.via.as_str())
                .and_then(|n| n.learned.get(s))
                .is_some_and(|l| l.filters.matches(topic));
            wants.then_some((&b.via, s.as_str()))
        })
    }

    /// Whether we route to any subscriber (only then can a publication of
    /// ours need routing).
    pub(crate) fn reaches_far(&self) -> bool {
        !self.far.is_empty()
    }

    /// Subscribers learned from neighbours, counted once per neighbour
    /// (what this participant holds).
    #[cfg(test)]
    pub(crate) fn learned_len(&self) -> usize {
        self.neighbours.values().map(|n| n.learned.len()).sum()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> InterestStats {
        self.stats
    }

    // ===== internals =====

    /// A change named `subscriber`: its best route is worked out again
    /// (see [`best_of`](Self::best_of)), it is sorted in or out of sight
    /// again, and its entry is compared with what each neighbour was told
    /// at the next [`changed_advertisements`](Self::changed_advertisements).
    fn touch(&mut self, subscriber: &str) {
        self.generation += 1;
        let now = self.best_of(subscriber);
        let before = self.best.get(subscriber);
        let moved = before.map(|b| (b.hops, b.via.as_str()))
            != now.as_ref().map(|b| (b.hops, b.via.as_str()));
        self.changed |= moved;
        self.specs_total -= before.map_or(0, |b| b.specs);
        self.specs_total += now.as_ref().map_or(0, |b| b.specs);
        match now {
            Some(b) => {
                self.best.insert(subscriber.to_owned(), b);
            }
            None => {
                self.best.remove(subscriber);
            }
        }
        self.sort_one(subscriber);
        self.pending.insert(subscriber.to_owned());
    }

    /// The best route to `subscriber`: a capable neighbour's own
    /// subscribers are 1 hop away, what a capable neighbour reaches in `h`
    /// hops is `h + 1` away; the fewest hops win, ties going to the
    /// neighbour first in name order.
    fn best_of(&self, subscriber: &str) -> Option<Best> {
        if subscriber == self.me {
            return None;
        }
        let mut best: Option<(u8, &String, &Neighbour)> = None;
        for (name, n) in self.neighbours.iter().filter(|(_, n)| n.capable) {
            let hops = if name == subscriber {
                (!n.direct.is_empty()).then_some(0u8)
            } else {
                n.learned.get(subscriber).map(|l| l.hops)
            };
            let Some(hops) = hops.map(|h| h.saturating_add(1)) else {
                continue;
            };
            if hops <= self.max_hops && best.is_none_or(|(h, _, _)| hops < h) {
                best = Some((hops, name, n));
            }
        }
        let (hops, via, n) = best?;
        let specs = if via == subscriber {
            n.direct.len()
        } else {
            n.learned
                .get(subscriber)
                .map_or(0, |l| l.filters.specs().count())
        };
        Some(Best {
            hops,
            // A neighbour's name is an identity: it came from messaging.
            via: Identity::new(via.as_str()).ok()?,
            specs,
        })
    }

    /// Whether `subscriber` is out of sight: reached only through others,
    /// not a neighbour, not expected as one.
    fn out_of_sight(&self, subscriber: &str) -> bool {
        self.best.get(subscriber).is_some_and(|b| b.hops >= 2)
            && !self.neighbours.contains_key(subscriber)
            && !self.sight.contains(subscriber)
    }

    /// Sorts `subscriber` in or out of sight: one out of sight is routed
    /// to, or waits out the grace; one in sight is neither.
    fn sort_one(&mut self, subscriber: &str) {
        self.generation += 1;
        if self.out_of_sight(subscriber) {
            if !self.far.contains(subscriber) && !self.hidden.contains_key(subscriber) {
                if self.mesh && !self.grace.is_zero() {
                    self.hidden.insert(subscriber.to_owned(), None);
                } else {
                    self.far.insert(subscriber.to_owned());
                    self.changed = true;
                }
            }
        } else {
            self.changed |= self.far.remove(subscriber);
            self.hidden.remove(subscriber);
        }
    }

    /// Sorts every subscriber in or out of sight again (what is in sight
    /// changed).
    fn sort_out_of_sight(&mut self) {
        let all: Vec<String> = self
            .best
            .keys()
            .chain(self.far.iter())
            .chain(self.hidden.keys())
            .cloned()
            .collect();
        for subscriber in &all {
            self.sort_one(subscriber);
        }
    }
}

/// `value` hashed with fixed keys, so that every participant and every run
/// hashes it alike.
fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advert::Advert;
    use crate::control::{Decoded, FEATURES, PublicationHeader, decode};

    fn spec(text: &str) -> FilterSpec {
        FilterSpec {
            regex: false,
            text: text.into(),
        }
    }

    fn interest(me: &str) -> Interest {
        Interest::new(me, 8, FilterLimits::default(), 1)
    }

    /// `me` between `from` and `c`, which subscribes to `news`.
    fn between(me: &str, from: &str) -> Interest {
        let mut i = interest(me);
        for n in [from, "c"] {
            i.neighbour_up(n);
            i.handle_hello(n, FEATURE_INTEREST);
        }
        i.set_direct("c", [spec("news")].iter());
        i
    }

    /// A copy of `z`'s publication on `news` for `c`.
    fn copy_for_c() -> PublicationHeader<&'static str> {
        PublicationHeader {
            origin: "z",
            epoch: 0,
            seq: 0,
            topic: "news",
            hops_left: 3,
            targets: vec!["c"],
        }
    }

    #[test]
    fn neighbours_own_subscribers_travel_on_but_never_back() {
        // b between a and c: c subscribes.
        let mut b = interest("b");
        for n in ["a", "c"] {
            b.neighbour_up(n);
            b.handle_hello(n, FEATURE_INTEREST);
        }
        b.set_direct("c", [spec("news")].iter());
        let adv = b.changed_advertisements();
        assert_eq!(
            adv,
            vec![
                (
                    "a".to_owned(),
                    Advert::Full(vec![("c".to_owned(), 1, vec![spec("news")])])
                ),
                ("c".to_owned(), Advert::Full(vec![])),
            ]
        );
        assert_eq!(b.changed_advertisements(), vec![], "told once");
        // a neighbour without the feature is told nothing and not routed
        // through.
        b.neighbour_up("old");
        b.set_direct("old", [spec("x")].iter());
        assert_eq!(b.changed_advertisements(), vec![]);
        assert!(b.subscribers().all(|(s, _, _)| s != "old"));
    }

    #[test]
    fn a_publication_is_split_by_next_hop_and_not_sent_back() {
        let mut a = interest("a");
        a.neighbour_up("b");
        a.handle_hello("b", FEATURE_INTEREST);
        a.handle_interest(
            "b",
            vec![
                ("c".into(), 1, vec![spec("news")]),
                ("d".into(), 2, vec![spec("sport")]),
                ("a".into(), 1, vec![spec("news")]),
            ],
        );
        let (copies, count) = a.publish("news.today", b"x");
        assert_eq!(count, 1);
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].0.as_str(), "b");
        let (copies, count) = a.publish("weather", b"x");
        assert_eq!(
            (copies.len(), count),
            (0, 0),
            "nobody matches: nothing sent"
        );

        // b gets a copy for c from a; a copy for a, from a, is not sent
        // back.
        let header = copy_for_c();
        let mut b = between("b", "a");
        let out = b.handle_publication("a", header.clone(), &Bytes::from_static(b"x"), |_| false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.as_str(), "c");
        let back = b.handle_publication("c", header.clone(), &Bytes::from_static(b"x"), |_| false);
        assert!(back.is_empty());
        assert_eq!(b.stats().no_route, 1);
        let spent = PublicationHeader {
            hops_left: 0,
            ..header
        };
        assert!(
            b.handle_publication("a", spent, &Bytes::from_static(b"x"), |_| false)
                .is_empty()
        );
        assert_eq!(b.stats().hop_limit, 1);
    }

    #[test]
    fn the_copies_of_a_publication_share_one_buffer_and_a_delivery_is_not_copied() {
        let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let mut b = interest("b");
        for n in std::iter::once("a").chain(names.iter().map(String::as_str)) {
            b.neighbour_up(n);
            b.handle_hello(n, FEATURE_INTEREST);
        }
        for n in &names {
            b.set_direct(n, [spec("news")].iter());
        }
        let mut targets = names.clone();
        targets.push("b".into());
        let header = PublicationHeader {
            origin: "z".into(),
            epoch: 0,
            seq: 0,
            topic: "news".into(),
            hops_left: 3,
            targets,
        };
        let received = Bytes::from(vec![9u8; 64]);
        let out = b.handle_publication("a", header.view(), &received, |_| true);
        assert_eq!(out.len(), 10);
        // One allocation for the ten: each copy starts where the one
        // before it ends.
        for pair in out.windows(2) {
            let end = pair[0].1.as_ptr().wrapping_add(pair[0].1.len());
            assert_eq!(end, pair[1].1.as_ptr());
        }
        for (to, copy) in &out {
            let Some(Decoded::Publication(h, data)) = decode(copy) else {
                panic!("not a publication: {copy:?}");
            };
            assert_eq!(h.targets, vec![to.to_string()]);
            assert_eq!((h.hops_left, &data[..]), (2, &received[..]));
        }
        let delivered = b.poll_delivery().expect("a delivery to b");
        assert_eq!(delivered.data.as_ptr(), received.as_ptr(), "not copied");
    }

    #[test]
    fn the_last_hop_gets_one_shared_copy_naming_no_target_where_it_takes_one() {
        // b passes on a's publication for c and d (which take unnamed
        // copies), e (which does not) and x, reached through d.
        let mut b = interest("b");
        b.neighbour_up("a");
        b.handle_hello("a", FEATURES);
        for n in ["c", "d"] {
            b.neighbour_up(n);
            b.handle_hello(n, FEATURES);
            b.set_direct(n, [spec("news")].iter());
        }
        b.neighbour_up("e");
        b.handle_hello("e", FEATURE_INTEREST);
        b.set_direct("e", [spec("news")].iter());
        b.handle_interest("d", vec![("x".into(), 1, vec![spec("news")])]);
        let header = PublicationHeader {
            origin: "a",
            epoch: 5,
            seq: 9,
            topic: "news",
            hops_left: 3,
            targets: vec!["c", "d", "e"],
        };
        let received = Bytes::from_static(b"payload");
        let out = b.handle_publication("a", header.clone(), &received, |_| false);
        let names: Vec<&str> = out.iter().map(|(to, _)| to.as_str()).collect();
        assert_eq!(names, ["c", "d", "e"]);
        assert_eq!(out[0].1.as_ptr(), out[1].1.as_ptr(), "c and d share bytes");
        for (to, copy) in &out {
            let Some(Decoded::Publication(h, data)) = decode(copy) else {
                panic!("not a publication: {copy:?}");
            };
            let want: Vec<&str> = if to.as_str() == "e" {
                vec!["e"]
            } else {
                vec![]
            };
            assert_eq!(
                (h.targets, h.hops_left, &data[..]),
                (want, 2, &b"payload"[..])
            );
        }
        // d is a target and the way to x: one copy naming both.
        let both = PublicationHeader {
            targets: vec!["d", "x"],
            seq: 10,
            ..header.clone()
        };
        let out = b.handle_publication("a", both, &received, |_| false);
        let Some(Decoded::Publication(h, _)) = decode(&out[0].1) else {
            panic!("not a publication");
        };
        assert_eq!(
            (out.len(), out[0].0.as_str(), h.targets),
            (1, "d", vec!["d", "x"])
        );

        // c delivers the copy naming no target once, and passes nothing on.
        let mut c = interest("c");
        c.neighbour_up("b");
        c.handle_hello("b", FEATURES);
        let copies = b.handle_publication("a", header, &received, |_| false);
        let Some(Decoded::Publication(h, data)) = decode(&copies[0].1) else {
            panic!("not a publication");
        };
        assert!(h.targets.is_empty());
        for _ in 0..2 {
            let on = c.handle_publication("b", h.clone(), &data, |t| t == "news");
            assert!(on.is_empty());
        }
        let got = c.poll_delivery().expect("delivered");
        assert_eq!(
            (got.from.as_str(), &*got.topic, &got.data[..]),
            ("a", "news", &b"payload"[..])
        );
        assert!(c.poll_delivery().is_none());
        assert_eq!((c.stats().delivered, c.stats().duplicates), (1, 1));
    }

    #[test]
    fn a_plan_used_again_follows_every_change_of_routes_filters_and_features() {
        let hops = |out: &[(Identity, Bytes)]| -> Vec<String> {
            out.iter().map(|(to, _)| to.to_string()).collect()
        };
        let mut a = interest("a");
        for n in ["b", "c"] {
            a.neighbour_up(n);
            a.handle_hello(n, FEATURES);
        }
        a.handle_interest("b", vec![("s".into(), 1, vec![spec("news")])]);
        a.handle_interest("c", vec![("s".into(), 2, vec![spec("news")])]);
        for _ in 0..2 {
            assert_eq!(hops(&a.publish("news", b"x").0), ["b"]);
        }
        // The route through b is lost: c's is next.
        a.neighbour_down("b");
        assert_eq!(hops(&a.publish("news", b"x").0), ["c"]);
        // s's filter stops matching.
        a.handle_interest("c", vec![("s".into(), 2, vec![spec("sport")])]);
        assert_eq!(a.publish("news", b"x"), (Vec::new(), 0));
        assert_eq!(a.publish("sport", b"x").1, 1);

        // Passing on: the same targets from the same neighbour.
        let header = copy_for_c();
        let mut m = between("m", "p");
        let names = |out: &[(Identity, Bytes)]| -> Vec<Vec<String>> {
            out.iter()
                .map(|(_, copy)| match decode(copy) {
                    Some(Decoded::Publication(h, _)) => {
                        h.targets.iter().map(|t| (*t).to_owned()).collect()
                    }
                    _ => panic!("not a publication"),
                })
                .collect()
        };
        let received = Bytes::from_static(b"x");
        let out = m.handle_publication("p", header.clone(), &received, |_| false);
        assert_eq!(names(&out), [["c"]]);
        // c now takes copies naming no target.
        m.handle_hello("c", FEATURES);
        let out = m.handle_publication("p", header.clone(), &received, |_| false);
        assert_eq!(names(&out), [Vec::<String>::new()]);
        // c is gone: no route.
        m.neighbour_down("c");
        let out = m.handle_publication("p", header, &received, |_| false);
        assert!(out.is_empty());
        assert_eq!(m.stats().no_route, 1);
    }

    #[test]
    fn publications_are_told_apart_by_publisher_epoch_and_sequence() {
        let mut c = interest("c");
        c.neighbour_up("b");
        c.handle_hello("b", FEATURES);
        let copy = |origin, epoch, seq| PublicationHeader {
            origin,
            epoch,
            seq,
            topic: "news",
            hops_left: 1,
            targets: Vec::new(),
        };
        let data = Bytes::from_static(b"x");
        for (origin, epoch, seq) in [
            ("a", 1, 0),
            ("z", 1, 0),
            ("a", 1, 0),
            ("a", 2, 0),
            ("z", 1, 1),
        ] {
            c.handle_publication("b", copy(origin, epoch, seq), &data, |_| true);
        }
        assert_eq!((c.stats().delivered, c.stats().duplicates), (4, 1));
        let from: Vec<String> = std::iter::from_fn(|| c.poll_delivery())
            .map(|d| d.from.to_string())
            .collect();
        assert_eq!(from, ["a", "z", "a", "z"]);
    }

    #[test]
    fn a_refused_filter_told_again_is_neither_compiled_nor_counted_again() {
        let limits = FilterLimits {
            regex_size: 1 << 10,
            ..FilterLimits::default()
        };
        let mut a = Interest::new("a", 8, limits, 1);
        a.neighbour_up("b");
        a.handle_hello("b", FEATURE_INTEREST);
        let costly = FilterSpec {
            regex: true,
            text: r"\w{200}".into(),
        };
        let entries = vec![("c".to_owned(), 1, vec![spec("news"), costly])];
        a.handle_interest("b", entries.clone());
        assert!(a.poll_changed());
        assert_eq!(a.stats().filters_refused, 1);
        a.handle_interest("b", entries);
        assert_eq!(a.stats().filters_refused, 1);
        assert!(!a.poll_changed());
        assert_eq!(a.matching("news.x").collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn a_subscriber_in_sight_is_never_routed_to_and_one_out_of_sight_after_the_grace() {
        let second = Duration::from_secs(1);
        let mut a = interest("a");
        a.set_grace(second);
        a.set_sight(Some(["c".to_owned()].into()));
        a.neighbour_up("b");
        a.handle_hello("b", FEATURE_INTEREST);
        let news = || vec![spec("news")];
        a.handle_interest("b", vec![("c".into(), 1, news()), ("d".into(), 1, news())]);
        assert!(a.poll_changed());
        // c will be a neighbour; d waits out the grace, from the next tick.
        assert_eq!(a.matching("news").count(), 0);
        assert!(!a.reaches_far());
        let t0 = Instant::now();
        assert_eq!(a.poll_timeout(Some(t0)), Some(t0), "d waits for a start");
        a.tick(t0);
        assert_eq!(a.poll_timeout(Some(t0)), Some(t0 + second));
        a.tick(t0 + second - Duration::from_millis(1));
        assert_eq!(a.matching("news").count(), 0, "not before the grace");
        assert!(!a.poll_changed());
        a.tick(t0 + second);
        assert_eq!(a.matching("news").collect::<Vec<_>>(), ["d"]);
        assert!(a.reaches_far() && a.poll_changed());
        assert_eq!(a.poll_timeout(Some(t0 + second)), None);
        let (copies, count) = a.publish("news", b"x");
        assert_eq!((copies.len(), count), (1, 1));

        // Discovery hears of d: it will be a neighbour, and is not routed
        // to any more.
        a.set_sight(Some(["c".to_owned(), "d".to_owned()].into()));
        assert_eq!(a.matching("news").count(), 0);
        assert!(!a.reaches_far() && a.poll_changed());
        // Past the full mesh's size: everyone but neighbours, at once.
        a.set_sight(None);
        assert_eq!(a.matching("news").collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(a.poll_timeout(Some(t0)), None);
    }

    #[test]
    fn a_second_copy_is_not_delivered() {
        let mut c = interest("c");
        c.neighbour_up("b");
        let header = PublicationHeader {
            origin: "a",
            epoch: 5,
            seq: 0,
            topic: "news",
            hops_left: 3,
            targets: vec!["c"],
        };
        c.handle_publication("b", header.clone(), &Bytes::from_static(b"x"), |_| true);
        c.handle_publication("b", header.clone(), &Bytes::from_static(b"x"), |_| true);
        let other_epoch = PublicationHeader { epoch: 6, ..header };
        c.handle_publication("b", other_epoch, &Bytes::from_static(b"y"), |_| true);
        let got: Vec<Delivery> = std::iter::from_fn(|| c.poll_delivery()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(c.stats().duplicates, 1);
    }

    #[test]
    fn the_window_of_recent_names_is_bounded() {
        let mut c = interest("c");
        c.neighbour_up("b");
        let copy = |seq| PublicationHeader {
            origin: "a",
            epoch: 5,
            seq,
            topic: "news",
            hops_left: 0,
            targets: vec!["c"],
        };
        let n = 100;
        c.set_recent(n as usize);
        for seq in 0..=n {
            c.handle_publication("b", copy(seq), &Bytes::from_static(b"x"), |_| true);
        }
        // The newest are remembered; the oldest fell out of the window,
        // which holds no more than its capacity.
        c.handle_publication("b", copy(n), &Bytes::from_static(b"x"), |_| true);
        assert_eq!(c.stats().duplicates, 1);
        c.handle_publication("b", copy(0), &Bytes::from_static(b"x"), |_| true);
        assert_eq!(c.stats().duplicates, 1);
        assert_eq!(c.stats().delivered, n + 2);
    }
    /// The best routes worked out from scratch, as every subscriber's
    /// (hops, next hop): what the routes kept one subscriber at a time
    /// must equal.
    fn best_from_scratch(i: &Interest) -> BTreeMap<String, (u8, String)> {
        let mut best: BTreeMap<String, (u8, String)> = BTreeMap::new();
        for (name, n) in i.neighbours.iter().filter(|(_, n)| n.capable) {
            let direct = (!n.direct.is_empty()).then_some((name, 0u8));
            let learned = n.learned.iter().map(|(s, l)| (s, l.hops));
            for (subscriber, hops) in direct.into_iter().chain(learned) {
                let hops = hops.saturating_add(1);
                if hops > i.max_hops || *subscriber == i.me {
                    continue;
                }
                match best.get(subscriber) {
                    Some((h, _)) if *h <= hops => {}
                    _ => {
                        best.insert(subscriber.clone(), (hops, name.clone()));
                    }
                }
            }
        }
        best
    }

    /// Random sequences of neighbours coming, going and greeting, their
    /// own subscribers, whole lists and changes, what is in sight and the
    /// time, some with lists short enough to be cut: after every step the
    /// routes equal those worked out from scratch, every subscriber out
    /// of sight is routed to or waits (and no other), and what is told
    /// equals what comparing whole lists with what each neighbour was told
    /// gives.
    #[test]
    fn interest_kept_one_subscriber_at_a_time_equals_that_worked_out_from_scratch() {
        let names: Vec<String> = (0..10).map(|i| format!("s{i:02}")).collect();
        let specs = [spec("a"), spec("b"), spec("c")];
        let (mut full, mut changes) = (0, 0);
        for seed in 1..=20u64 {
            let mut rng = crate::router::tests::Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut i = interest("s00");
            i.set_grace(Duration::from_secs(1));
            if seed % 2 == 0 {
                i.max_list = 4;
            }
            let mut told: BTreeMap<String, Vec<InterestEntry>> = BTreeMap::new();
            let t0 = Instant::now();
            let pick = |rng: &mut crate::router::tests::Rng| {
                names[rng.below(names.len() as u64) as usize].clone()
            };
            let some_specs = |rng: &mut crate::router::tests::Rng| -> Vec<FilterSpec> {
                specs
                    .iter()
                    .filter(|_| rng.below(2) == 0)
                    .cloned()
                    .collect()
            };
            let list = |rng: &mut crate::router::tests::Rng| -> Vec<InterestEntry> {
                (0..rng.below(6))
                    .map(|_| (pick(rng), rng.below(10) as u8, some_specs(rng)))
                    .collect()
            };
            for step in 0..300u64 {
                let n = pick(&mut rng);
                match rng.below(10) {
                    0 => i.neighbour_up(&n),
                    1 => {
                        i.neighbour_down(&n);
                        told.remove(&n);
                    }
                    2 => {
                        if i.neighbours.contains_key(&n) {
                            told.remove(&n);
                        }
                        let features = [FEATURE_INTEREST, FEATURE_CHANGES, FEATURE_UNNAMED]
                            .into_iter()
                            .filter(|_| rng.below(4) != 0)
                            .fold(0, |all, f| all | f);
                        i.handle_hello(&n, features);
                    }
                    3 => {
                        let direct = some_specs(&mut rng);
                        i.set_direct(&n, direct.iter());
                    }
                    4 | 5 => {
                        let l = list(&mut rng);
                        i.handle_interest(&n, l);
                    }
                    6 | 7 => {
                        let set = list(&mut rng);
                        let removed = list(&mut rng).into_iter().map(|e| e.0).collect();
                        i.handle_interest_changes(&n, set, removed);
                    }
                    8 => {
                        let sight = (rng.below(3) != 0).then(|| {
                            names
                                .iter()
                                .filter(|_| rng.below(3) == 0)
                                .cloned()
                                .collect()
                        });
                        i.set_sight(sight);
                    }
                    _ => i.tick(t0 + Duration::from_millis(100 * step)),
                }
                let scratch = best_from_scratch(&i);
                let kept: BTreeMap<String, (u8, String)> = i
                    .best
                    .iter()
                    .map(|(s, b)| (s.clone(), (b.hops, b.via.as_str().to_owned())))
                    .collect();
                assert_eq!(kept, scratch, "seed {seed}");
                let specs_total: usize = i
                    .best
                    .iter()
                    .map(|(s, b)| {
                        let via = &i.neighbours[b.via.as_str()];
                        match via.learned.get(s) {
                            Some(l) => l.filters.specs().count(),
                            None => via.direct.len(),
                        }
                    })
                    .sum();
                assert_eq!(i.specs_total, specs_total, "seed {seed}");
                let out: BTreeSet<&String> = scratch
                    .iter()
                    .filter(|(s, (hops, _))| {
                        *hops >= 2 && !i.neighbours.contains_key(*s) && !i.sight.contains(*s)
                    })
                    .map(|(s, _)| s)
                    .collect();
                let sorted: BTreeSet<&String> = i.far.iter().chain(i.hidden.keys()).collect();
                assert_eq!(sorted, out, "seed {seed}");
                assert!(i.far.iter().all(|s| !i.hidden.contains_key(s)));
                if rng.below(3) == 0 {
                    let mut want = Vec::new();
                    for (name, n) in i.neighbours.iter().filter(|(_, n)| n.capable) {
                        let adv = i.advertisement_for(name);
                        let before = told.get(name);
                        if before != Some(&adv) {
                            let before = before.map(Vec::as_slice);
                            let advert = Advert::between(before, &adv, n.takes_changes, |e| &e.0);
                            match advert {
                                Advert::Full(_) => full += 1,
                                Advert::Changes { .. } => changes += 1,
                            }
                            want.push((name.clone(), advert));
                            told.insert(name.clone(), adv);
                        }
                    }
                    assert_eq!(i.changed_advertisements(), want, "seed {seed}");
                }
            }
        }
        assert!(
            full > 100 && changes > 100,
            "{full} lists, {changes} changes"
        );
    }
}
