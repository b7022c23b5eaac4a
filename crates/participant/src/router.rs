//! Routing through brokers, without I/O: a distance vector over the
//! streams between participants.
//!
//! Every participant tells each neighbour (a participant it has a stream
//! with) the identities it reaches and in how many hops, leaving out those
//! it reaches through that neighbour (split horizon). A message for an
//! identity that is not a neighbour goes to the neighbour with the fewest
//! hops to it, in an envelope with a hop limit and the path it took; a
//! participant already on the path is never chosen again, and a message
//! whose hops ran out is dropped.

use std::collections::{BTreeMap, BTreeSet};

use crate::advert::Advert;
use crate::control::Envelope;
use crate::hashing::{KeyedHashing, KeyedMap};

/// A route to an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdentityRoute {
    /// The identity reached.
    pub destination: String,
    /// The neighbour messages for it go to.
    pub next_hop: String,
    /// How many hops away it is (1 for a neighbour).
    pub hops: u8,
}

/// What to do with an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It is for us.
    Deliver,
    /// Send it on to this neighbour.
    Forward(String),
    /// Drop it.
    Drop(DropReason),
}

/// Why a routed message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    HopLimit,
    Loop,
    NoRoute,
}

#[derive(Debug)]
pub(crate) struct Router {
    me: String,
    max_hops: u8,
    neighbours: BTreeSet<String>,
    /// What each neighbour told us it reaches, and in how many hops.
    /// (In name order, as the neighbours: ties go the same way every time.)
    learned: BTreeMap<String, KeyedMap<String, u8>>,
    /// The best route to every identity we reach: hops and next hop.
    /// Kept up to date one identity at a time: a change touches only the
    /// identities it names, and each is worked out again from the
    /// neighbours' lists ([`settle`](Self::settle)), so a change costs
    /// the neighbours, not the group.
    best: KeyedMap<String, (u8, String)>,
    /// The identities whose best route moved since the last
    /// [`changed_advertisements`](Self::changed_advertisements): only
    /// their entries can differ from what each neighbour was told.
    moved: BTreeSet<String>,
    /// What we last told each neighbour, by identity.
    told: KeyedMap<String, KeyedMap<String, u8>>,
    /// The neighbours told only what changed (their Hello said they take
    /// it).
    changes: BTreeSet<String>,
    /// Whether neighbours or what they told changed since the last
    /// [`changed_advertisements`](Self::changed_advertisements).
    dirty: bool,
    /// How the maps above hash the names (see `hashing.rs`).
    hashing: KeyedHashing,
}

impl Router {
    /// A router with maps keyed at random.
    #[cfg(test)]
    pub(crate) fn new(me: impl Into<String>, max_hops: u8) -> Router {
        Router::with_hashing(me, max_hops, KeyedHashing::random())
    }

    /// A router whose maps hash names with `hashing`.
    pub(crate) fn with_hashing(
        me: impl Into<String>,
        max_hops: u8,
        hashing: KeyedHashing,
    ) -> Router {
        Router {
            me: me.into(),
            max_hops: max_hops.max(1),
            neighbours: BTreeSet::new(),
            learned: BTreeMap::new(),
            best: KeyedMap::with_hasher(hashing),
            moved: BTreeSet::new(),
            told: KeyedMap::with_hasher(hashing),
            changes: BTreeSet::new(),
            dirty: false,
            hashing,
        }
    }

    pub(crate) fn max_hops(&self) -> u8 {
        self.max_hops
    }

    pub(crate) fn neighbour_up(&mut self, n: &str) {
        self.neighbours.insert(n.to_owned());
        self.dirty = true;
        self.settle(n);
    }

    pub(crate) fn neighbour_down(&mut self, n: &str) {
        self.neighbours.remove(n);
        let learned = self
            .learned
            .remove(n)
            .unwrap_or_else(|| KeyedMap::with_hasher(self.hashing));
        self.told.remove(n);
        self.changes.remove(n);
        self.dirty = true;
        self.settle(n);
        for dest in learned.keys() {
            self.offer_moved(n, dest, None);
        }
    }

    /// Whether neighbour `n` takes what changed rather than whole lists.
    pub(crate) fn set_takes_changes(&mut self, n: &str, takes: bool) {
        if takes && self.neighbours.contains(n) {
            self.changes.insert(n.to_owned());
        } else {
            self.changes.remove(n);
        }
    }

    /// What changed in neighbour `n`'s list: entries new or different
    /// (one beyond the hop limit removes its name) and names gone.
    pub(crate) fn learn_changes(&mut self, n: &str, set: Vec<(String, u8)>, removed: Vec<String>) {
        if !self.neighbours.contains(n) {
            return;
        }
        let (max, me, hashing) = (self.max_hops, &self.me, self.hashing);
        let table = self
            .learned
            .entry(n.to_owned())
            .or_insert_with(|| KeyedMap::with_hasher(hashing));
        let mut touched = Vec::new();
        for dest in removed {
            if table.remove(&dest).is_some() {
                touched.push((dest, None));
            }
        }
        for (dest, hops) in set {
            if hops >= 1 && hops < max && dest != *me {
                if table.insert(dest.clone(), hops) != Some(hops) {
                    touched.push((dest, Some(hops)));
                }
            } else if table.remove(&dest).is_some() {
                touched.push((dest, None));
            }
        }
        self.dirty |= !touched.is_empty();
        for (dest, hops) in &touched {
            self.offer_moved(n, dest, *hops);
        }
    }

    /// A neighbour's list of what it reaches (replacing the previous one).
    /// Entries beyond the hop limit are ignored.
    pub(crate) fn learn(&mut self, n: &str, routes: Vec<(String, u8)>) {
        if !self.neighbours.contains(n) {
            return;
        }
        let max = self.max_hops;
        let table = self.hashing.map_of(
            routes
                .into_iter()
                .filter(|(dest, hops)| *hops >= 1 && *hops < max && *dest != self.me),
        );
        let old = self.learned.get(n);
        if old == Some(&table) {
            return;
        }
        let empty = KeyedMap::with_hasher(self.hashing);
        let old = old.unwrap_or(&empty);
        let touched: Vec<(String, Option<u8>)> = old
            .iter()
            .filter(|(dest, hops)| table.get(*dest) != Some(hops))
            .map(|(dest, _)| (dest.clone(), table.get(dest).copied()))
            .chain(
                table
                    .iter()
                    .filter(|(dest, _)| !old.contains_key(*dest))
                    .map(|(dest, hops)| (dest.clone(), Some(*hops))),
            )
            .collect();
        self.learned.insert(n.to_owned(), table);
        self.dirty = true;
        for (dest, hops) in &touched {
            self.offer_moved(n, dest, *hops);
        }
    }

    /// Neighbour `n` now reaches `dest` in `hops` (`None`: no longer):
    /// the best route to `dest` moves to `n` when that is better, and is
    /// worked out again from all neighbours only when it went through `n`
    /// and got no better.
    fn offer_moved(&mut self, n: &str, dest: &str, hops: Option<u8>) {
        let offer = hops
            .map(|h| h.saturating_add(1))
            .filter(|total| *total <= self.max_hops);
        let best = self.best.get(dest).map(|(h, via)| (*h, via.as_str()));
        match (offer, best) {
            (Some(total), best) if best.is_none_or(|b| (total, n) < b) => {
                self.best.insert(dest.to_owned(), (total, n.to_owned()));
                self.moved.insert(dest.to_owned());
            }
            (_, Some((_, via))) if via == n => self.settle(dest),
            _ => {}
        }
    }

    /// Works out the best route to `dest` again from the neighbours'
    /// lists, noting it as moved when it changed: a neighbour is 1 hop
    /// away, what a neighbour reaches in `h` hops is `h + 1` away; the
    /// fewest hops win, ties going to the neighbour first in name order.
    fn settle(&mut self, dest: &str) {
        let now = self.best_of(dest);
        let before = self.best.get(dest).map(|(h, via)| (*h, via.as_str()));
        if before == now {
            return;
        }
        let now = now.map(|(h, via)| (h, via.to_owned()));
        match now {
            Some(b) => self.best.insert(dest.to_owned(), b),
            None => self.best.remove(dest),
        };
        self.moved.insert(dest.to_owned());
    }

    /// The best route to `dest` from the neighbours and their lists.
    fn best_of(&self, dest: &str) -> Option<(u8, &str)> {
        if let Some(n) = self.neighbours.get(dest) {
            return Some((1, n.as_str()));
        }
        if dest == self.me {
            return None;
        }
        let mut best: Option<(u8, &str)> = None;
        // Neighbours in name order, so ties go the same way every time.
        for (n, routes) in &self.learned {
            let Some(hops) = routes.get(dest) else {
                continue;
            };
            let total = hops.saturating_add(1);
            if total <= self.max_hops && best.is_none_or(|(h, _)| total < h) {
                best = Some((total, n.as_str()));
            }
        }
        best
    }

    /// The best route to every identity we reach, worked out from
    /// scratch: what [`best`](Self::best) must equal after any change.
    #[cfg(test)]
    fn table_from_scratch(&self) -> BTreeMap<String, (u8, String)> {
        let mut best: BTreeMap<String, (u8, String)> = BTreeMap::new();
        for n in &self.neighbours {
            best.insert(n.clone(), (1, n.clone()));
        }
        for n in &self.neighbours {
            let Some(routes) = self.learned.get(n) else {
                continue;
            };
            for (dest, hops) in routes {
                let total = hops.saturating_add(1);
                if total > self.max_hops || *dest == self.me {
                    continue;
                }
                match best.get(dest) {
                    Some((h, _)) if *h <= total => {}
                    _ => {
                        best.insert(dest.clone(), (total, n.clone()));
                    }
                }
            }
        }
        best
    }

    /// The routes, for display.
    pub(crate) fn routes(&self) -> Vec<IdentityRoute> {
        let mut routes: Vec<IdentityRoute> = self
            .best
            .iter()
            .map(|(destination, (hops, next_hop))| IdentityRoute {
                destination: destination.clone(),
                next_hop: next_hop.clone(),
                hops: *hops,
            })
            .collect();
        routes.sort_unstable_by(|a, b| a.destination.cmp(&b.destination));
        routes
    }

    /// What to tell neighbour `n`: every identity we reach except `n`
    /// itself and those we reach through `n`.
    pub(crate) fn advertisement_for(&self, n: &str) -> Vec<(String, u8)> {
        advertisement(&self.best, n)
    }

    /// The advertisements that changed since last told, per neighbour
    /// (whole lists, or what changed to those that take it); records them
    /// as told. Only the entries of identities whose route moved are
    /// compared with what each neighbour was told; a neighbour never told
    /// anything gets the whole list.
    pub(crate) fn changed_advertisements(&mut self) -> Vec<(String, Advert<(String, u8)>)> {
        let moved = std::mem::take(&mut self.moved);
        if !std::mem::take(&mut self.dirty) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for n in &self.neighbours {
            let Some(told) = self.told.get_mut(n) else {
                let adv = advertisement(&self.best, n);
                let told = self.hashing.map_of(adv.iter().cloned());
                self.told.insert(n.clone(), told);
                out.push((n.clone(), Advert::Full(adv)));
                continue;
            };
            let (mut set, mut removed) = (Vec::new(), Vec::new());
            for dest in &moved {
                let now = self
                    .best
                    .get(dest)
                    .filter(|(_, via)| dest != n && via != n)
                    .map(|(hops, _)| *hops);
                if told.get(dest).copied() == now {
                    continue;
                }
                match now {
                    Some(hops) => {
                        told.insert(dest.clone(), hops);
                        set.push((dest.clone(), hops));
                    }
                    None => {
                        told.remove(dest);
                        removed.push(dest.clone());
                    }
                }
            }
            if set.is_empty() && removed.is_empty() {
                continue;
            }
            let advert = if self.changes.contains(n) {
                Advert::Changes { set, removed }
            } else {
                let mut list: Vec<(String, u8)> =
                    told.iter().map(|(d, h)| (d.clone(), *h)).collect();
                list.sort_unstable();
                Advert::Full(list)
            };
            out.push((n.clone(), advert));
        }
        out
    }

    /// Records what neighbour `n` was told (in a hello).
    pub(crate) fn told(&mut self, n: &str, adv: Vec<(String, u8)>) {
        self.told.insert(n.to_owned(), self.hashing.map_of(adv));
    }

    /// The next hop for a message to `to` that has passed through `path`.
    fn next_hop(&self, to: &str, path: &[String]) -> Option<String> {
        if self.neighbours.contains(to) && !path.iter().any(|p| p == to) {
            return Some(to.to_owned());
        }
        let mut best: Option<(u8, &String)> = None;
        for n in &self.neighbours {
            if path.iter().any(|p| p == n) {
                continue;
            }
            if let Some(h) = self.learned.get(n).and_then(|r| r.get(to)) {
                if best.is_none_or(|(bh, _)| *h < bh) {
                    best = Some((*h, n));
                }
            }
        }
        best.map(|(_, n)| n.clone())
    }

    /// Decides what to do with an envelope that reached us (or that we
    /// are sending: then `path` is empty). On `Forward` the envelope is
    /// updated (a hop used, us on the path).
    pub(crate) fn route(&self, e: &mut Envelope) -> Decision {
        if e.to == self.me {
            return Decision::Deliver;
        }
        if e.path.contains(&self.me) {
            return Decision::Drop(DropReason::Loop);
        }
        if e.hops_left == 0 || e.path.len() >= usize::from(self.max_hops) {
            return Decision::Drop(DropReason::HopLimit);
        }
        match self.next_hop(&e.to, &e.path) {
            Some(n) => {
                e.hops_left -= 1;
                e.path.push(self.me.clone());
                Decision::Forward(n)
            }
            None => Decision::Drop(DropReason::NoRoute),
        }
    }
}

/// What to tell neighbour `n`, from the best routes: every identity in
/// `table` except `n` itself and those reached through `n` (split
/// horizon), in name order.
fn advertisement<'a>(
    table: impl IntoIterator<Item = (&'a String, &'a (u8, String))>,
    n: &str,
) -> Vec<(String, u8)> {
    let mut list: Vec<(String, u8)> = table
        .into_iter()
        .filter(|(dest, (_, via))| *dest != n && via != n)
        .map(|(dest, (hops, _))| (dest.clone(), *hops))
        .collect();
    list.sort_unstable();
    list
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn env(to: &str, from: &str, hops_left: u8, path: &[&str]) -> Envelope {
        Envelope {
            to: to.into(),
            from: from.into(),
            hops_left,
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A line a - b - c - d, each knowing only its neighbours, converged
    /// by passing advertisements until nothing changes.
    fn line(names: &[&str], max_hops: u8) -> Vec<Router> {
        let mut rs: Vec<Router> = names.iter().map(|n| Router::new(*n, max_hops)).collect();
        for i in 0..names.len() {
            if i > 0 {
                rs[i].neighbour_up(names[i - 1]);
            }
            if i + 1 < names.len() {
                rs[i].neighbour_up(names[i + 1]);
            }
        }
        for _round in 0..10 {
            let mut any = false;
            let mut mail = Vec::new();
            for (i, r) in rs.iter_mut().enumerate() {
                for (n, adv) in r.changed_advertisements() {
                    mail.push((names[i].to_string(), n, adv));
                    any = true;
                }
            }
            for (from, to, adv) in mail {
                let j = names.iter().position(|x| *x == to).unwrap();
                match adv {
                    Advert::Full(list) => rs[j].learn(&from, list),
                    Advert::Changes { set, removed } => rs[j].learn_changes(&from, set, removed),
                }
            }
            if !any {
                break;
            }
        }
        rs
    }

    #[test]
    fn a_line_converges_and_routes_through_the_middle() {
        let rs = line(&["a", "b", "c", "d"], 8);
        let routes = rs[0].routes();
        let to_d = routes.iter().find(|r| r.destination == "d").unwrap();
        assert_eq!((to_d.next_hop.as_str(), to_d.hops), ("b", 3));
        // a → d: a sends to b, b to c, c to d, d delivers.
        let mut e = env("d", "a", 8, &[]);
        assert_eq!(rs[0].route(&mut e), Decision::Forward("b".into()));
        assert_eq!(rs[1].route(&mut e), Decision::Forward("c".into()));
        assert_eq!(rs[2].route(&mut e), Decision::Forward("d".into()));
        assert_eq!(rs[3].route(&mut e), Decision::Deliver);
        assert_eq!(e.path, ["a", "b", "c"]);
        assert_eq!(e.hops_left, 5);
    }

    #[test]
    fn split_horizon_and_hop_limit() {
        let rs = line(&["a", "b", "c"], 8);
        // b does not tell c that it reaches c, nor a what it reaches via a.
        assert_eq!(rs[1].advertisement_for("a"), vec![("c".to_string(), 1)]);
        assert_eq!(rs[1].advertisement_for("c"), vec![("a".to_string(), 1)]);
        let mut e = env("c", "a", 0, &["a"]);
        assert_eq!(rs[1].route(&mut e), Decision::Drop(DropReason::HopLimit));
        // A line longer than the hop limit is not reachable end to end.
        let rs = line(&["a", "b", "c", "d"], 2);
        assert!(rs[0].routes().iter().all(|r| r.destination != "d"));
    }

    #[test]
    fn only_changed_advertisements_are_told_and_each_keeps_split_horizon() {
        let mut b = Router::new("b", 8);
        b.neighbour_up("a");
        b.neighbour_up("c");
        b.learn("c", vec![("d".into(), 1)]);
        let told: BTreeMap<_, _> = b.changed_advertisements().into_iter().collect();
        let full = |l: Vec<(String, u8)>| Advert::Full(l);
        assert_eq!(
            told["a"],
            full(vec![("c".to_string(), 1), ("d".to_string(), 2)])
        );
        // c is not told what b reaches through c.
        assert_eq!(told["c"], full(vec![("a".to_string(), 1)]));
        assert!(b.changed_advertisements().is_empty());
        // A change reaches only those whose advertisement it changes.
        b.learn("a", vec![("e".into(), 1)]);
        let told = b.changed_advertisements();
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].0, "c");
        assert!(matches!(&told[0].1, Advert::Full(l) if l.contains(&("e".to_string(), 2))));
    }

    #[test]
    fn a_neighbour_that_takes_changes_is_told_only_what_changed_and_applies_them() {
        let mut b = Router::new("b", 8);
        b.neighbour_up("a");
        b.neighbour_up("c");
        b.set_takes_changes("c", true);
        b.learn("a", vec![("x".into(), 1), ("y".into(), 1)]);
        // The first list is whole, even to one that takes changes.
        let first = b.changed_advertisements();
        let to_c = |told: &[(String, Advert<(String, u8)>)]| {
            told.iter()
                .find(|(n, _)| n == "c")
                .expect("c is told")
                .1
                .clone()
        };
        let first = to_c(&first);
        assert!(
            matches!(&first, Advert::Full(l) if l.len() == 3),
            "{first:?}"
        );
        b.learn("a", vec![("x".into(), 2), ("z".into(), 1)]);
        let second = b.changed_advertisements();
        assert_eq!(
            second,
            vec![(
                "c".to_owned(),
                Advert::Changes {
                    set: vec![("x".into(), 3), ("z".into(), 2)],
                    removed: vec!["y".into()],
                }
            )]
        );

        // c applies them to what it learned from b.
        let mut c = Router::new("c", 8);
        c.neighbour_up("b");
        let Advert::Full(list) = first else {
            panic!("a whole list first")
        };
        c.learn("b", list);
        let Advert::Changes { set, removed } = second[0].1.clone() else {
            panic!("changes")
        };
        c.learn_changes("b", set, removed);
        let reached: Vec<(String, u8)> = c
            .routes()
            .into_iter()
            .map(|r| (r.destination, r.hops))
            .collect();
        let want = [("a", 2), ("b", 1), ("x", 4), ("z", 3)];
        let want: Vec<(String, u8)> = want.iter().map(|(d, h)| ((*d).into(), *h)).collect();
        assert_eq!(reached, want);
        // Changes from a participant that is no neighbour are ignored.
        c.learn_changes("q", vec![("w".into(), 1)], vec![]);
        assert!(c.routes().iter().all(|r| r.destination != "w"));
    }

    #[test]
    fn loops_are_dropped_and_the_path_is_avoided() {
        let mut b = Router::new("b", 8);
        b.neighbour_up("a");
        b.neighbour_up("c");
        b.learn("a", vec![("x".into(), 1)]);
        b.learn("c", vec![("x".into(), 2)]);
        // Came through b already: a loop.
        let mut e = env("x", "a", 5, &["a", "b"]);
        assert_eq!(b.route(&mut e), Decision::Drop(DropReason::Loop));
        // a is on the path: go through c even though a is closer.
        let mut e = env("x", "a", 5, &["a"]);
        assert_eq!(b.route(&mut e), Decision::Forward("c".into()));
        // Nobody else reaches it.
        let mut e = env("y", "a", 5, &["a"]);
        assert_eq!(b.route(&mut e), Decision::Drop(DropReason::NoRoute));
        // A neighbour gone takes its routes with it.
        b.neighbour_down("c");
        let mut e = env("x", "a", 5, &["a"]);
        assert_eq!(b.route(&mut e), Decision::Drop(DropReason::NoRoute));
    }
    /// A small xorshift generator: the same sequence every run.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Random sequences of neighbours coming and going, whole lists and
    /// changes, each followed at random by the advertisements: after
    /// every step the routes kept one identity at a time equal the table
    /// worked out from scratch, and what is told equals what comparing
    /// whole lists with what each neighbour was told gives.
    #[test]
    fn routes_kept_one_identity_at_a_time_equal_those_worked_out_from_scratch() {
        let names: Vec<String> = (0..12).map(|i| format!("p{i:02}")).collect();
        // How many lists and changes were told: the sequences tell both.
        let (mut full, mut changes) = (0, 0);
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut r = Router::new("p00", 6);
            // What each neighbour was told, as whole lists.
            let mut told: BTreeMap<String, Vec<(String, u8)>> = BTreeMap::new();
            let mut pick = |rng: &mut Rng| names[rng.below(names.len() as u64) as usize].clone();
            let list = |rng: &mut Rng, pick: &mut dyn FnMut(&mut Rng) -> String| {
                (0..rng.below(8))
                    .map(|_| (pick(rng), rng.below(8) as u8))
                    .collect::<Vec<_>>()
            };
            for _step in 0..300 {
                let n = pick(&mut rng);
                match rng.below(8) {
                    0 => r.neighbour_up(&n),
                    1 => {
                        r.neighbour_down(&n);
                        told.remove(&n);
                    }
                    2 => r.set_takes_changes(&n, rng.below(2) == 0),
                    3 | 4 => {
                        let l = list(&mut rng, &mut pick);
                        r.learn(&n, l);
                    }
                    5 | 6 => {
                        let set = list(&mut rng, &mut pick);
                        let removed = list(&mut rng, &mut pick).into_iter().map(|e| e.0);
                        r.learn_changes(&n, set, removed.collect());
                    }
                    _ if r.neighbours.contains(&n) && rng.below(2) == 0 => {
                        let adv = r.advertisement_for(&n);
                        r.told(&n, adv.clone());
                        told.insert(n, adv);
                    }
                    _ => {}
                }
                let scratch = r.table_from_scratch();
                let kept: BTreeMap<String, (u8, String)> = r.best.clone().into_iter().collect();
                assert_eq!(kept, scratch, "seed {seed}");
                if rng.below(3) == 0 {
                    let mut want = Vec::new();
                    for n in &r.neighbours {
                        let adv = advertisement(&scratch, n);
                        let before = told.get(n);
                        if before != Some(&adv) {
                            let takes = r.changes.contains(n);
                            let advert =
                                Advert::between(before.map(Vec::as_slice), &adv, takes, |e| &e.0);
                            want.push((n.clone(), advert));
                            told.insert(n.clone(), adv);
                        }
                    }
                    for (_, advert) in &want {
                        match advert {
                            Advert::Full(_) => full += 1,
                            Advert::Changes { .. } => changes += 1,
                        }
                    }
                    assert_eq!(r.changed_advertisements(), want, "seed {seed}");
                }
            }
        }
        assert!(
            full > 100 && changes > 100,
            "{full} lists, {changes} changes"
        );
    }
}
