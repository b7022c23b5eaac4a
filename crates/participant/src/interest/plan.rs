//! Where the copies of a routed publication go: its targets grouped by
//! next hop, worked out once and used again for every publication that
//! has the same targets while the routes stay the same.
//!
//! A stream of publications has the same targets from one publication to
//! the next: a publisher's topic matches the same subscribers, and a
//! participant passing publications on gets the same target lists from
//! the same neighbour. [`Plans`] keeps the last plan of each kind, valid
//! for as long as [`Interest`](super::Interest)'s generation (bumped by
//! every change of neighbours, routes, filters or sight) stays the same.

use std::ops::Range;

use bytes::Bytes;
use weft_messaging::Identity;

use crate::control::PublicationHeader;
use crate::routed::PublicationCopies;

/// A publication's targets grouped by next hop.
#[derive(Debug)]
pub(super) struct Plan {
    /// The targets, grouped by next hop in the order of the hops' names.
    targets: Vec<String>,
    /// Each next hop and its targets in `targets`: none for the copy
    /// naming no target (the hop is its only target and takes it).
    groups: Vec<(Identity, Range<usize>)>,
    /// The targets left out for want of a route.
    pub(super) unrouted: u64,
}

impl Plan {
    /// The plan for `hops`, each (next hop, target), in the order the
    /// targets came: one copy per next hop, each naming its targets in
    /// that order. A next hop that is its only target and `takes_unnamed`
    /// gets the copy naming no target.
    pub(super) fn new(
        mut hops: Vec<(&Identity, &str)>,
        unrouted: u64,
        takes_unnamed: impl Fn(&Identity) -> bool,
    ) -> Plan {
        // A stable sort: each hop's targets keep their order.
        hops.sort_by_key(|&(via, _)| via);
        let mut groups: Vec<(Identity, Range<usize>)> = Vec::new();
        for (i, &(via, _)) in hops.iter().enumerate() {
            match groups.last_mut() {
                Some((last, range)) if last == via => range.end = i + 1,
                _ => groups.push((via.clone(), i..i + 1)),
            }
        }
        for (via, range) in &mut groups {
            if range.len() == 1 && hops[range.start].1 == via.as_str() && takes_unnamed(via) {
                *range = 0..0;
            }
        }
        Plan {
            targets: hops.into_iter().map(|(_, t)| t.to_owned()).collect(),
            groups,
            unrouted,
        }
    }

    /// How many targets the copies are for.
    pub(super) fn len(&self) -> usize {
        self.targets.len()
    }

    /// The copies of `header` (whose targets are left out) carrying
    /// `data`, each with its next hop. The copies naming no target are
    /// one buffer, made once.
    pub(super) fn copies(
        &self,
        header: &PublicationHeader<&str>,
        data: &[u8],
    ) -> Vec<(Identity, Bytes)> {
        let copier = PublicationCopies::new(header, data);
        let mut named = copier
            .copies(
                self.groups
                    .iter()
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(_, r)| &self.targets[r.clone()]),
            )
            .into_iter();
        let mut unnamed: Option<Bytes> = None;
        let mut out = Vec::with_capacity(self.groups.len());
        for (via, range) in &self.groups {
            let copy = if range.is_empty() {
                unnamed.get_or_insert_with(|| copier.unnamed()).clone()
            } else {
                match named.next() {
                    Some(copy) => copy,
                    None => break,
                }
            };
            out.push((via.clone(), copy));
        }
        out
    }
}

/// The last plans, each with the generation it was made in.
#[derive(Debug, Default)]
pub(super) struct Plans {
    /// Our publications': by topic.
    publish: Option<(u64, String, Plan)>,
    /// Publications passed on: by the neighbour they came from and their
    /// targets.
    pass_on: Option<(u64, String, Vec<String>, Plan)>,
}

impl Plans {
    /// The plan for our publications on `topic` in `generation`, made by
    /// `make` unless the last one is still good.
    pub(super) fn publish(
        &mut self,
        generation: u64,
        topic: &str,
        make: impl FnOnce() -> Plan,
    ) -> &Plan {
        let fresh = matches!(&self.publish, Some((g, t, _)) if *g == generation && t == topic);
        if !fresh {
            self.publish = None;
        }
        let made = || (generation, topic.to_owned(), make());
        &self.publish.get_or_insert_with(made).2
    }

    /// The plan for a copy from `from` naming `targets`, in `generation`,
    /// made by `make` unless the last one is still good.
    pub(super) fn pass_on(
        &mut self,
        generation: u64,
        from: &str,
        targets: &[&str],
        make: impl FnOnce() -> Plan,
    ) -> &Plan {
        let fresh = matches!(&self.pass_on, Some((g, f, t, _))
            if *g == generation && f == from && t.iter().map(String::as_str).eq(targets.iter().copied()));
        if !fresh {
            self.pass_on = None;
        }
        let made = || {
            let targets = targets.iter().map(|t| (*t).to_owned()).collect();
            (generation, from.to_owned(), targets, make())
        };
        &self.pass_on.get_or_insert_with(made).3
    }
}
