//! Pub/sub bookkeeping, free of I/O: our topic subscriptions, the
//! connected weft peers' interest, and who gets a publication on a topic.
//!
//! The shell keeps it under a lock of its own, apart from the core's: a
//! cache miss matches every peer's filters (regexes among them), and the
//! I/O task should not wait for that to read packets.

use std::collections::HashMap;
use std::sync::Arc;

use crate::frame::FilterKind;
use crate::{Identity, TopicFilter};

/// The longest filter accepted from a peer, in bytes.
const MAX_REMOTE_FILTER: usize = 1024;

/// Topics whose publication targets are kept at most; past that the cache
/// starts over (a publisher of ever new topics pays the matching each
/// time, and memory stays bounded).
const TARGET_CACHE_TOPICS: usize = 1024;

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A peer's interest in topics, as it told us.
#[derive(Clone, Debug)]
struct Interest {
    kind: FilterKind,
    text: String,
    regex: Option<regex::Regex>,
}

impl Interest {
    /// Parses a filter from the network; `None` when unusable (too long, a
    /// regex that does not compile within bounds).
    fn new(kind: FilterKind, text: String) -> Option<Interest> {
        if text.len() > MAX_REMOTE_FILTER {
            return None;
        }
        let regex = match kind {
            FilterKind::Prefix => None,
            FilterKind::Regex => Some(
                regex::RegexBuilder::new(&text)
                    .size_limit(1 << 20)
                    .build()
                    .ok()?,
            ),
        };
        Some(Interest { kind, text, regex })
    }

    fn same(&self, kind: FilterKind, text: &str) -> bool {
        self.kind == kind && self.text == text
    }

    fn matches(&self, topic: &str) -> bool {
        match &self.regex {
            Some(r) => r.is_match(topic),
            None => topic.starts_with(self.text.as_str()),
        }
    }
}

/// Our topic subscriptions, the peers' interest, and the publication
/// targets worked out from both. Every change to either empties the
/// targets, so no stale list outlives a change.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    /// Our topic subscriptions (queue id, filter).
    local: Vec<(u64, TopicFilter)>,
    /// Connected weft peers' topic subscriptions.
    interest: HashMap<Identity, Vec<Interest>>,
    /// Publication targets per recently published topic.
    targets: FastMap<Box<str>, Arc<[Identity]>>,
}

impl Topics {
    /// Who gets a publication on `topic`: the peers whose interest matches
    /// it, then `me` if one of our topic subscriptions does. Worked out
    /// once per topic and kept until the interest or our subscriptions
    /// change.
    pub(crate) fn targets(&mut self, topic: &str, me: &Identity) -> Arc<[Identity]> {
        if let Some(targets) = self.targets.get(topic) {
            return targets.clone();
        }
        let mut targets: Vec<Identity> = self
            .interest
            .iter()
            .filter(|(_, filters)| filters.iter().any(|f| f.matches(topic)))
            .map(|(who, _)| who.clone())
            .collect();
        if self.local.iter().any(|(_, f)| f.matches(topic)) {
            targets.push(me.clone());
        }
        let targets: Arc<[Identity]> = targets.into();
        if self.targets.len() >= TARGET_CACHE_TOPICS {
            self.targets.clear();
        }
        self.targets.insert(topic.into(), targets.clone());
        targets
    }

    /// Our subscription queue `queue` takes publications matching `filter`.
    pub(crate) fn subscribe_local(&mut self, queue: u64, filter: TopicFilter) {
        self.local.push((queue, filter));
        self.targets.clear();
    }

    /// Forgets our subscription queue `queue`. Returns its filter, and
    /// whether another of our queues still has the same one (then the
    /// peers need not hear of it).
    pub(crate) fn unsubscribe_local(&mut self, queue: u64) -> Option<(TopicFilter, bool)> {
        let at = self.local.iter().position(|(id, _)| *id == queue);
        let removed = at.map(|i| self.local.remove(i));
        self.targets.clear();
        let (_, filter) = removed?;
        let wire = filter.wire();
        let still_wanted = self.local.iter().any(|(_, f)| f.wire() == wire);
        Some((filter, still_wanted))
    }

    /// Our subscriptions' filters as the wire carries them, for a weft
    /// peer that connects.
    pub(crate) fn local_filters(&self) -> Vec<(FilterKind, String)> {
        self.local.iter().map(|(_, f)| f.wire()).collect()
    }

    /// A weft peer subscribed to `filter`; an unusable filter is ignored.
    pub(crate) fn handle_subscribe(&mut self, from: Identity, kind: FilterKind, filter: String) {
        let filters = self.interest.entry(from).or_default();
        if !filters.iter().any(|f| f.same(kind, &filter)) {
            if let Some(f) = Interest::new(kind, filter) {
                filters.push(f);
            }
        }
        self.targets.clear();
    }

    /// A weft peer unsubscribed from `filter`.
    pub(crate) fn handle_unsubscribe(&mut self, from: &Identity, kind: FilterKind, filter: &str) {
        if let Some(filters) = self.interest.get_mut(from) {
            filters.retain(|f| !f.same(kind, filter));
        }
        self.targets.clear();
    }

    /// A peer disconnected: its interest is gone with it.
    pub(crate) fn handle_disconnected(&mut self, ident: &Identity) {
        self.interest.remove(ident);
        self.targets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::new(s).unwrap()
    }

    /// The targets of a publication on `topic`, by name.
    fn targets(topics: &mut Topics, topic: &str) -> Vec<String> {
        let targets = topics.targets(topic, &id("me"));
        targets.iter().map(|i| i.as_str().to_owned()).collect()
    }

    #[test]
    fn targets_follow_interest_and_our_subscriptions() {
        let bob = id("bob");
        let mut topics = Topics::default();
        assert!(targets(&mut topics, "news.x").is_empty());
        topics.handle_subscribe(bob.clone(), FilterKind::Prefix, "news.".into());
        assert_eq!(targets(&mut topics, "news.x"), ["bob"]);
        assert!(targets(&mut topics, "sport").is_empty());
        topics.subscribe_local(7, TopicFilter::Prefix("news".into()));
        assert_eq!(targets(&mut topics, "news.x"), ["bob", "me"]);
        topics.handle_unsubscribe(&bob, FilterKind::Prefix, "news.");
        assert_eq!(targets(&mut topics, "news.x"), ["me"]);
        topics.handle_subscribe(bob.clone(), FilterKind::Regex, "^sp".into());
        assert_eq!(targets(&mut topics, "sport"), ["bob"]);
        topics.handle_disconnected(&bob);
        assert!(targets(&mut topics, "sport").is_empty());
    }

    #[test]
    fn a_filter_still_wanted_by_another_queue_is_reported() {
        let mut topics = Topics::default();
        topics.subscribe_local(1, TopicFilter::Prefix("a".into()));
        topics.subscribe_local(2, TopicFilter::Prefix("a".into()));
        assert!(matches!(topics.unsubscribe_local(1), Some((_, true))));
        assert!(matches!(topics.unsubscribe_local(2), Some((_, false))));
        assert!(topics.unsubscribe_local(2).is_none());
        assert!(topics.local_filters().is_empty());
    }

    #[test]
    fn unusable_remote_filters_are_ignored() {
        let mut topics = Topics::default();
        let long = "x".repeat(MAX_REMOTE_FILTER + 1);
        topics.handle_subscribe(id("bob"), FilterKind::Prefix, long);
        topics.handle_subscribe(id("bob"), FilterKind::Regex, "(".into());
        assert!(targets(&mut topics, "x").is_empty());
    }
}
