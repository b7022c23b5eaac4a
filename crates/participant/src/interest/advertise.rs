//! What a participant tells each neighbour of the subscribers it
//! reaches: its Interest lists, compared with what each was told, one
//! touched subscriber at a time when no list is cut to fit a message.

use std::mem::take;

use super::{Best, Interest};
use crate::advert::Advert;
use crate::control::{FilterSpec, InterestEntry};

impl Interest {
    /// The Interest lists that changed since each neighbour was last told,
    /// for the neighbours that route interest (whole lists, or what
    /// changed to those that take it); records them as told. Only the
    /// entries of subscribers touched since the last call are compared
    /// with what each neighbour was told, unless a list may be cut to fit
    /// one message (then, and once after, whole lists are compared).
    pub(crate) fn changed_advertisements(&mut self) -> Vec<(String, Advert<InterestEntry>)> {
        let pending = take(&mut self.pending);
        let may_cut = self.best.len() > self.max_list || self.specs_total > self.max_list;
        if std::mem::replace(&mut self.compare_whole, may_cut) || may_cut {
            return self.changed_whole_advertisements();
        }
        let mut out = Vec::new();
        for name in self.capable_neighbours() {
            if self.neighbours.get(&name).is_some_and(|n| n.told.is_none()) {
                let full = self.advertisement_for(&name);
                if let Some(neighbour) = self.neighbours.get_mut(&name) {
                    neighbour.told = Some(full.clone());
                }
                out.push((name, Advert::Full(full)));
                continue;
            }
            let Some(told) = self.neighbours.get(&name).and_then(|n| n.told.as_ref()) else {
                continue;
            };
            // Compared in place; only the entries that differ are copied.
            let entries: Vec<(&String, Option<InterestEntry>)> = pending
                .iter()
                .filter(|s| {
                    let at = told.binary_search_by(|e| e.0.as_str().cmp(s)).ok();
                    !self.entry_is(&name, s, at.map(|i| &told[i]))
                })
                .map(|s| (s, self.entry_for(&name, s)))
                .collect();
            let neighbour = self.neighbours.get_mut(&name).expect("listed above");
            let Some(told) = neighbour.told.as_mut() else {
                continue;
            };
            let (mut set, mut removed) = (Vec::new(), Vec::new());
            for (s, now) in entries {
                let at = told.binary_search_by(|e| e.0.as_str().cmp(s));
                match (at, now) {
                    (Ok(i), Some(e)) if told[i] != e => {
                        told[i] = e.clone();
                        set.push(e);
                    }
                    (Ok(i), None) => {
                        told.remove(i);
                        removed.push(s.to_string());
                    }
                    (Err(i), Some(e)) => {
                        told.insert(i, e.clone());
                        set.push(e);
                    }
                    _ => {}
                }
            }
            if set.is_empty() && removed.is_empty() {
                continue;
            }
            let advert = if neighbour.takes_changes {
                Advert::Changes { set, removed }
            } else {
                Advert::Full(told.clone())
            };
            out.push((name, advert));
        }
        out
    }

    /// The names of the neighbours that take Interest lists.
    fn capable_neighbours(&self) -> Vec<String> {
        self.neighbours
            .iter()
            .filter(|(_, n)| n.capable)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// [`changed_advertisements`](Self::changed_advertisements) by whole
    /// lists: each neighbour's worked out and compared with what it was
    /// told.
    fn changed_whole_advertisements(&mut self) -> Vec<(String, Advert<InterestEntry>)> {
        let mut out = Vec::new();
        for name in self.capable_neighbours() {
            let adv = self.advertisement_for(&name);
            let neighbour = self.neighbours.get_mut(&name).expect("listed above");
            if neighbour.told.as_ref() != Some(&adv) {
                let told = neighbour.told.as_deref();
                let advert = Advert::between(told, &adv, neighbour.takes_changes, |e| &e.0);
                neighbour.told = Some(adv);
                out.push((name, advert));
            }
        }
        out
    }

    /// Whether `told` is the entry of `subscriber` in what to tell
    /// neighbour `n` (see [`entry_for`](Self::entry_for)).
    fn entry_is(&self, n: &str, subscriber: &str, told: Option<&InterestEntry>) -> bool {
        let now = self
            .best
            .get(subscriber)
            .filter(|b| subscriber != n && b.via.as_str() != n && b.hops < self.max_hops)
            .and_then(|b| Some((b, self.neighbours.get(b.via.as_str())?)));
        match (now, told) {
            (None, None) => true,
            (Some((b, via)), Some((_, hops, specs))) => {
                b.hops == *hops
                    && if subscriber == b.via.as_str() {
                        via.direct.iter().eq(specs.iter())
                    } else {
                        via.learned
                            .get(subscriber)
                            .is_some_and(|l| l.filters.specs().eq(specs.iter()))
                    }
            }
            _ => false,
        }
    }

    /// The entry of `subscriber` in what to tell neighbour `n` (see
    /// [`advertisement_for`](Self::advertisement_for)), when no list is
    /// cut to fit.
    fn entry_for(&self, n: &str, subscriber: &str) -> Option<InterestEntry> {
        let b = self.best.get(subscriber)?;
        if subscriber == n || b.via.as_str() == n || b.hops >= self.max_hops {
            return None;
        }
        let via = self.neighbours.get(b.via.as_str())?;
        let specs: Vec<FilterSpec> = if subscriber == b.via.as_str() {
            via.direct.iter().cloned().collect()
        } else {
            via.learned
                .get(subscriber)?
                .filters
                .specs()
                .cloned()
                .collect()
        };
        Some((subscriber.to_owned(), b.hops, specs))
    }

    /// What to tell neighbour `n`: every subscriber we reach but `n` and
    /// those we reach through `n`, under `max_hops`, within the limits of
    /// one control message (the nearest first when they do not all fit).
    pub(super) fn advertisement_for(&self, n: &str) -> Vec<InterestEntry> {
        let mut entries: Vec<InterestEntry> = Vec::new();
        let mut candidates: Vec<(&String, &Best)> = self
            .best
            .iter()
            .filter(|(s, b)| *s != n && b.via.as_str() != n && b.hops < self.max_hops)
            .collect();
        candidates.sort_by_key(|(s, b)| (b.hops, *s));
        let mut filters = 0;
        for (s, b) in candidates {
            let Some(via) = self.neighbours.get(b.via.as_str()) else {
                continue;
            };
            let specs: Vec<FilterSpec> = if *s == b.via.as_str() {
                via.direct.iter().cloned().collect()
            } else {
                match via.learned.get(s) {
                    Some(l) => l.filters.specs().cloned().collect(),
                    None => continue,
                }
            };
            filters += specs.len();
            if entries.len() >= self.max_list || filters > self.max_list {
                break;
            }
            entries.push((s.clone(), b.hops, specs));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }
}
