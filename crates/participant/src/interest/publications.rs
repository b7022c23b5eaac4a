//! Publications routed through participants: ours split by next hop
//! into copies, a neighbour's copy delivered to our subscribers once and
//! the rest of its targets passed on (see the [module
//! documentation](super)).

use std::mem::take;
use std::sync::Arc;

use bytes::Bytes;
use weft_messaging::Identity;

use super::plan::Plan;
use super::{Delivery, Interest, hash_of};
use crate::control::PublicationHeader;

impl Interest {
    /// Our publication on `topic`: one copy per next hop, for the
    /// subscribers that are not neighbours (those get it as a PUBLISH
    /// message) and whose filter matches. Returns the copies as
    /// (neighbour, tagged payload) and how many subscribers they are for.
    pub(crate) fn publish(&mut self, topic: &str, data: &[u8]) -> (Vec<(Identity, Bytes)>, usize) {
        let mut plans = take(&mut self.plans);
        // Far subscribers are never neighbours: every copy names its
        // targets.
        let make = || Plan::new(self.routes_matching(topic).collect(), 0, |_| false);
        let plan = plans.publish(self.generation, topic, make);
        let count = plan.len();
        let mut out = Vec::new();
        if count > 0 {
            let header = PublicationHeader {
                origin: self.me.as_str(),
                epoch: self.epoch,
                seq: self.next_seq,
                topic,
                hops_left: self.max_hops - 1,
                targets: Vec::new(),
            };
            out = plan.copies(&header, data);
            self.next_seq += 1;
            self.stats.forwarded += out.len() as u64;
        }
        self.plans = plans;
        (out, count)
    }

    /// A copy that neighbour `from` passed to us: delivered once if we are
    /// among its targets and a subscriber of ours (`local` says which
    /// topics they match) still wants it; the other targets passed on,
    /// one copy per next hop. Returns those copies.
    pub(crate) fn handle_publication(
        &mut self,
        from: &str,
        mut header: PublicationHeader<&str>,
        data: &Bytes,
        local: impl Fn(&str) -> bool,
    ) -> Vec<(Identity, Bytes)> {
        // A copy naming no target is for us: the last hop's copy, the
        // same bytes for each of its subscribers (FEATURE_UNNAMED).
        let for_us = header.targets.is_empty()
            || match header.targets.iter().position(|t| *t == self.me) {
                Some(at) => {
                    header.targets.swap_remove(at);
                    true
                }
                None => false,
            };
        if for_us && !local(header.topic) {
            self.stats.unwanted += 1;
        } else if for_us {
            let name = self.name_of(&header);
            if !self.seen.check_and_record(name) {
                self.stats.duplicates += 1;
            } else {
                self.stats.delivered += 1;
                // `decode` lets through no copy whose publisher is not an
                // identity.
                if let Some((from, topic)) = self.delivered_names(header.origin, header.topic) {
                    self.deliveries.push_back(Delivery {
                        from,
                        topic,
                        // A slice of the copy received: not copied again.
                        data: data.clone(),
                    });
                }
            }
        }
        if header.targets.is_empty() {
            return Vec::new();
        }
        if header.hops_left == 0 {
            self.stats.hop_limit += header.targets.len() as u64;
            return Vec::new();
        }
        header.hops_left -= 1;
        self.split(&header, from, data)
    }

    /// The name `h` is known by in the window of recent ones: its
    /// publisher and epoch hashed (once per run of publications from one
    /// publisher) and its sequence number.
    fn name_of(&mut self, h: &PublicationHeader<&str>) -> (u64, u64) {
        let hash = match &self.last_publisher {
            Some((origin, epoch, hash)) if origin == h.origin && *epoch == h.epoch => *hash,
            _ => {
                let hash = hash_of(&(&h.origin, h.epoch));
                self.last_publisher = Some((h.origin.to_owned(), h.epoch, hash));
                hash
            }
        };
        (hash, h.seq)
    }

    /// The names of a publication delivered: those of the one before when
    /// they are the same, else checked and allocated (once per run of
    /// publications from one publisher on one topic).
    fn delivered_names(&mut self, origin: &str, topic: &str) -> Option<(Identity, Arc<str>)> {
        match &self.last_delivered {
            Some((from, t)) if from.as_str() == origin && **t == *topic => {
                Some((from.clone(), t.clone()))
            }
            _ => {
                let names = (Identity::new(origin).ok()?, Arc::from(topic));
                Some(self.last_delivered.insert(names).clone())
            }
        }
    }

    /// Splits `header`'s targets by next hop (never back to `from`) into
    /// one copy each.
    fn split(
        &mut self,
        header: &PublicationHeader<&str>,
        from: &str,
        data: &[u8],
    ) -> Vec<(Identity, Bytes)> {
        let mut plans = take(&mut self.plans);
        let make = || self.plan_split(&header.targets, from);
        let plan = plans.pass_on(self.generation, from, &header.targets, make);
        self.stats.no_route += plan.unrouted;
        let out = plan.copies(header, data);
        self.stats.forwarded += out.len() as u64;
        self.plans = plans;
        out
    }

    /// Where the copies for `targets` go, never back to `from`.
    fn plan_split(&self, targets: &[&str], from: &str) -> Plan {
        let mut hops: Vec<(&Identity, &str)> = Vec::with_capacity(targets.len());
        let mut unrouted = 0;
        for &t in targets {
            match self.best.get(t) {
                Some(b) if b.via.as_str() != from => hops.push((&b.via, t)),
                _ => unrouted += 1,
            }
        }
        let takes_unnamed = |n: &Identity| {
            self.neighbours
                .get(n.as_str())
                .is_some_and(|n| n.takes_unnamed)
        };
        Plan::new(hops, unrouted, takes_unnamed)
    }
}
