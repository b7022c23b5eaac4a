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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::advert::Advert;
use crate::control::Envelope;

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
    learned: HashMap<String, HashMap<String, u8>>,
    /// What we last told each neighbour.
    told: HashMap<String, Vec<(String, u8)>>,
    /// The neighbours told only what changed (their Hello said they take
    /// it).
    changes: BTreeSet<String>,
    /// Whether neighbours or what they told changed since the last
    /// [`changed_advertisements`](Self::changed_advertisements): when
    /// nothing did, nothing is worked out again (the table costs the
    /// neighbours times the identities each reaches).
    dirty: bool,
}

impl Router {
    pub(crate) fn new(me: impl Into<String>, max_hops: u8) -> Router {
        Router {
            me: me.into(),
            max_hops: max_hops.max(1),
            neighbours: BTreeSet::new(),
            learned: HashMap::new(),
            told: HashMap::new(),
            changes: BTreeSet::new(),
            dirty: false,
        }
    }

    pub(crate) fn max_hops(&self) -> u8 {
        self.max_hops
    }

    pub(crate) fn neighbour_up(&mut self, n: &str) {
        self.neighbours.insert(n.to_owned());
        self.dirty = true;
    }

    pub(crate) fn neighbour_down(&mut self, n: &str) {
        self.neighbours.remove(n);
        self.learned.remove(n);
        self.told.remove(n);
        self.changes.remove(n);
        self.dirty = true;
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
        let (max, me) = (self.max_hops, &self.me);
        let table = self.learned.entry(n.to_owned()).or_default();
        let mut changed = false;
        for dest in removed {
            changed |= table.remove(&dest).is_some();
        }
        for (dest, hops) in set {
            if hops >= 1 && hops < max && dest != *me {
                changed |= table.insert(dest, hops) != Some(hops);
            } else {
                changed |= table.remove(&dest).is_some();
            }
        }
        self.dirty |= changed;
    }

    /// A neighbour's list of what it reaches (replacing the previous one).
    /// Entries beyond the hop limit are ignored.
    pub(crate) fn learn(&mut self, n: &str, routes: Vec<(String, u8)>) {
        if !self.neighbours.contains(n) {
            return;
        }
        let max = self.max_hops;
        let table: HashMap<String, u8> = routes
            .into_iter()
            .filter(|(dest, hops)| *hops >= 1 && *hops < max && *dest != self.me)
            .collect();
        if self.learned.get(n) != Some(&table) {
            self.learned.insert(n.to_owned(), table);
            self.dirty = true;
        }
    }

    /// The best route to every identity we reach, excluding ourselves.
    pub(crate) fn table(&self) -> BTreeMap<String, (u8, String)> {
        let mut best: BTreeMap<String, (u8, String)> = BTreeMap::new();
        for n in &self.neighbours {
            best.insert(n.clone(), (1, n.clone()));
        }
        // Neighbours in name order, so ties go the same way every time.
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
        self.table()
            .into_iter()
            .map(|(destination, (hops, next_hop))| IdentityRoute {
                destination,
                next_hop,
                hops,
            })
            .collect()
    }

    /// What to tell neighbour `n`: every identity we reach except `n`
    /// itself and those we reach through `n`.
    pub(crate) fn advertisement_for(&self, n: &str) -> Vec<(String, u8)> {
        advertisement(&self.table(), n)
    }

    /// The advertisements that changed since last told, per neighbour
    /// (whole lists, or what changed to those that take it); records them
    /// as told. The table is worked out once for all neighbours.
    pub(crate) fn changed_advertisements(&mut self) -> Vec<(String, Advert<(String, u8)>)> {
        if !std::mem::take(&mut self.dirty) {
            return Vec::new();
        }
        // Borrowed names, compared with what each was told before anything
        // is copied: most changes leave most neighbours' lists alone.
        let table = self.table_borrowed();
        let mut out = Vec::new();
        for n in &self.neighbours {
            let adv = table
                .iter()
                .filter(|(dest, (_, via))| **dest != n.as_str() && *via != n.as_str())
                .map(|(dest, (hops, _))| (*dest, *hops));
            let told = self.told.get(n);
            let same =
                told.is_some_and(|t| t.iter().map(|(d, h)| (d.as_str(), *h)).eq(adv.clone()));
            if !same {
                let adv: Vec<(String, u8)> = adv.map(|(d, h)| (d.to_owned(), h)).collect();
                out.push((n.clone(), adv));
            }
        }
        out.into_iter()
            .map(|(n, adv)| {
                let told = self.told.get(&n).map(Vec::as_slice);
                let advert = Advert::between(told, &adv, self.changes.contains(&n), |e| &e.0);
                self.told.insert(n.clone(), adv);
                (n, advert)
            })
            .collect()
    }

    /// [`table`](Self::table) with borrowed names.
    fn table_borrowed(&self) -> BTreeMap<&str, (u8, &str)> {
        let mut best: BTreeMap<&str, (u8, &str)> = BTreeMap::new();
        for n in &self.neighbours {
            best.insert(n, (1, n));
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
                match best.get(dest.as_str()) {
                    Some((h, _)) if *h <= total => {}
                    _ => {
                        best.insert(dest, (total, n));
                    }
                }
            }
        }
        best
    }

    /// Records what neighbour `n` was told (in a hello).
    pub(crate) fn told(&mut self, n: &str, adv: Vec<(String, u8)>) {
        self.told.insert(n.to_owned(), adv);
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
/// `table` except `n` itself and those reached through `n` (split horizon).
fn advertisement(table: &BTreeMap<String, (u8, String)>, n: &str) -> Vec<(String, u8)> {
    table
        .iter()
        .filter(|(dest, (_, via))| *dest != n && via != n)
        .map(|(dest, (hops, _))| (dest.clone(), *hops))
        .collect()
}

#[cfg(test)]
mod tests {
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
}
