//! Pub/sub bookkeeping, free of I/O: our topic subscriptions, the
//! connected weft peers' interest, and who gets a publication on a topic.
//!
//! The shell keeps it under a lock of its own, apart from the core's: a
//! cache miss works out a topic's targets (prefix filters through an
//! index, one lookup per prefix length in use; regexes one by one), and
//! the I/O task should not wait for that to read packets.
//!
//! What a peer may ask for is bounded (filters, regex filters and their
//! bytes per peer, each regex's compiled size): beyond that its filters
//! are refused and counted, so that no peer makes us spend memory or time
//! without limit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::frame::FilterKind;
use crate::{Identity, MessagingConfig, TopicFilter};

/// The longest filter accepted from a peer, in bytes. Topics are at most
/// 255 bytes, so a longer prefix could never match anyway.
pub(crate) const MAX_REMOTE_FILTER: usize = 1024;

/// Topics whose publication targets are kept at most; past that the cache
/// starts over (a publisher of ever new topics pays the matching each
/// time, and memory stays bounded).
const TARGET_CACHE_TOPICS: usize = 1024;

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// What one peer may ask for, from [`MessagingConfig`].
#[derive(Clone, Copy, Debug)]
struct Limits {
    filters: usize,
    regex_filters: usize,
    bytes: usize,
    regex_size: usize,
    regex_dfa_size: usize,
}

/// A connected weft peer's interest in topics, as it told us. Its
/// prefixes are also in [`Topics::prefixes`], where publications find
/// them; its regexes are tried one by one, and there are few of them.
#[derive(Debug, Default)]
struct PeerInterest {
    prefixes: FastSet<Box<str>>,
    regexes: Vec<regex::Regex>,
    /// Bytes of filter text held, both kinds.
    bytes: usize,
}

impl PeerInterest {
    fn len(&self) -> usize {
        self.prefixes.len().saturating_add(self.regexes.len())
    }

    fn has(&self, kind: FilterKind, text: &str) -> bool {
        match kind {
            FilterKind::Prefix => self.prefixes.contains(text),
            FilterKind::Regex => self.regexes.iter().any(|r| r.as_str() == text),
        }
    }
}

/// Why a peer's filter was not taken, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FilterRefused {
    /// Over the count or byte limits, or longer than any topic.
    Limit,
    /// A regex that does not compile within its size limits.
    Regex,
}

/// Our topic subscriptions, the peers' interest, and the publication
/// targets worked out from both. Every change to either empties the
/// targets, so no stale list outlives a change.
#[derive(Debug)]
pub(crate) struct Topics {
    limits: Limits,
    /// Our topic subscriptions (queue id, filter).
    local: Vec<(u64, TopicFilter)>,
    /// Connected weft peers' topic subscriptions.
    interest: HashMap<Identity, PeerInterest>,
    /// Every peer's prefix filters: the peers that asked for each prefix.
    /// A publication looks up each of its topic's prefixes (of the lengths
    /// in `prefix_lens`) instead of trying every filter.
    prefixes: FastMap<Box<str>, Vec<Identity>>,
    /// The lengths of the prefixes in `prefixes`, with how many have each.
    prefix_lens: BTreeMap<usize, usize>,
    /// Publication targets per recently published topic.
    targets: FastMap<Box<str>, Arc<[Identity]>>,
    /// Filters refused for a limit (count, bytes, length).
    pub(crate) filters_refused: u64,
    /// Regex filters refused because they do not compile within limits.
    pub(crate) regexes_refused: u64,
    /// Index lookups made by `targets` (tests assert there is no scan).
    #[cfg(test)]
    probes: usize,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics::new(&MessagingConfig::default())
    }
}

impl Topics {
    /// Empty bookkeeping, with the limits of `config` on peers' filters.
    pub(crate) fn new(config: &MessagingConfig) -> Topics {
        Topics {
            limits: Limits {
                filters: config.max_peer_filters,
                regex_filters: config.max_peer_regex_filters,
                bytes: config.max_peer_filter_bytes,
                regex_size: config.regex_size_limit,
                regex_dfa_size: config.regex_dfa_size_limit,
            },
            local: Vec::new(),
            interest: HashMap::new(),
            prefixes: FastMap::default(),
            prefix_lens: BTreeMap::new(),
            targets: FastMap::default(),
            filters_refused: 0,
            regexes_refused: 0,
            #[cfg(test)]
            probes: 0,
        }
    }

    /// Who gets a publication on `topic`: the peers whose interest matches
    /// it, then `me` if one of our topic subscriptions does. Worked out
    /// once per topic and kept until the interest or our subscriptions
    /// change.
    pub(crate) fn targets(&mut self, topic: &str, me: &Identity) -> Arc<[Identity]> {
        if let Some(targets) = self.targets.get(topic) {
            return targets.clone();
        }
        let mut seen: HashSet<&Identity> = HashSet::new();
        let mut targets: Vec<Identity> = Vec::new();
        #[cfg(test)]
        let mut probes = 0usize;
        for &len in self.prefix_lens.range(..=topic.len()).map(|(len, _)| len) {
            let Some(prefix) = topic.get(..len) else {
                continue; // not a character boundary: no filter is this
            };
            #[cfg(test)]
            {
                probes = probes.saturating_add(1);
            }
            for who in self.prefixes.get(prefix).into_iter().flatten() {
                if seen.insert(who) {
                    targets.push(who.clone());
                }
            }
        }
        for (who, interest) in &self.interest {
            if !seen.contains(who) && interest.regexes.iter().any(|r| r.is_match(topic)) {
                targets.push(who.clone());
            }
        }
        if self.local.iter().any(|(_, f)| f.matches(topic)) {
            targets.push(me.clone());
        }
        #[cfg(test)]
        {
            self.probes = self.probes.saturating_add(probes);
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

    /// A weft peer subscribed to `filter`. A filter past the peer's limits
    /// (count, regex count, bytes, length) or a regex that does not
    /// compile within its size limits is refused and counted; the peer's
    /// other filters stay.
    pub(crate) fn handle_subscribe(&mut self, from: Identity, kind: FilterKind, filter: String) {
        match self.add(from, kind, filter) {
            Ok(()) => {}
            Err(FilterRefused::Limit) => {
                self.filters_refused = self.filters_refused.saturating_add(1);
            }
            Err(FilterRefused::Regex) => {
                self.regexes_refused = self.regexes_refused.saturating_add(1);
            }
        }
    }

    fn add(
        &mut self,
        from: Identity,
        kind: FilterKind,
        filter: String,
    ) -> Result<(), FilterRefused> {
        let limits = self.limits;
        let interest = self.interest.entry(from.clone()).or_default();
        if interest.has(kind, &filter) {
            return Ok(());
        }
        let bytes = interest.bytes.saturating_add(filter.len());
        if filter.len() > MAX_REMOTE_FILTER
            || interest.len() >= limits.filters
            || bytes > limits.bytes
            || (kind == FilterKind::Regex && interest.regexes.len() >= limits.regex_filters)
        {
            return Err(FilterRefused::Limit);
        }
        match kind {
            FilterKind::Prefix => {
                let text: Box<str> = filter.into();
                interest.prefixes.insert(text.clone());
                let len = text.len();
                self.prefixes.entry(text).or_default().push(from);
                let n = self.prefix_lens.entry(len).or_insert(0);
                *n = n.saturating_add(1);
            }
            FilterKind::Regex => {
                let regex = regex::RegexBuilder::new(&filter)
                    .size_limit(limits.regex_size)
                    .dfa_size_limit(limits.regex_dfa_size)
                    .build()
                    .map_err(|_| FilterRefused::Regex)?;
                interest.regexes.push(regex);
            }
        }
        interest.bytes = bytes;
        self.targets.clear();
        Ok(())
    }

    /// Takes `who`'s `prefix` out of the index.
    fn unindex(&mut self, who: &Identity, prefix: &str) {
        let Some(peers) = self.prefixes.get_mut(prefix) else {
            return;
        };
        peers.retain(|p| p != who);
        if peers.is_empty() {
            self.prefixes.remove(prefix);
            if let Some(n) = self.prefix_lens.get_mut(&prefix.len()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.prefix_lens.remove(&prefix.len());
                }
            }
        }
    }

    /// A weft peer unsubscribed from `filter`.
    pub(crate) fn handle_unsubscribe(&mut self, from: &Identity, kind: FilterKind, filter: &str) {
        let Some(interest) = self.interest.get_mut(from) else {
            return;
        };
        let removed = match kind {
            FilterKind::Prefix => interest.prefixes.remove(filter),
            FilterKind::Regex => {
                let before = interest.regexes.len();
                interest.regexes.retain(|r| r.as_str() != filter);
                interest.regexes.len() != before
            }
        };
        if !removed {
            return;
        }
        interest.bytes = interest.bytes.saturating_sub(filter.len());
        if kind == FilterKind::Prefix {
            self.unindex(from, filter);
        }
        self.targets.clear();
    }

    /// A peer disconnected: its interest is gone with it.
    pub(crate) fn handle_disconnected(&mut self, ident: &Identity) {
        if let Some(interest) = self.interest.remove(ident) {
            for prefix in &interest.prefixes {
                self.unindex(ident, prefix);
            }
        }
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
    fn prefix_filters_are_found_through_the_index_not_a_scan() {
        let config = MessagingConfig {
            max_peer_filters: 100_000,
            max_peer_filter_bytes: usize::MAX,
            ..MessagingConfig::default()
        };
        let mut topics = Topics::new(&config);
        for i in 0..100_000 {
            topics.handle_subscribe(id("bob"), FilterKind::Prefix, format!("feed.{i}."));
        }
        topics.handle_subscribe(id("carol"), FilterKind::Prefix, "feed.7".into());
        assert_eq!(topics.filters_refused, 0);
        for n in 0..1000 {
            let topic = format!("feed.{n}.x");
            let want: &[&str] = if topic.starts_with("feed.7") {
                &["bob", "carol"]
            } else {
                &["bob"]
            };
            let mut got = targets(&mut topics, &topic);
            got.sort();
            assert_eq!(got, want, "{topic}");
        }
        // Lookups per publication: one per prefix length in use up to the
        // topic's length (at most 13 here), never one per filter.
        assert!(topics.probes <= 1000 * 13, "{} lookups", topics.probes);
        topics.handle_disconnected(&id("bob"));
        assert_eq!(targets(&mut topics, "feed.70.x"), ["carol"]);
        assert_eq!(topics.prefix_lens.len(), 1);
    }

    #[test]
    fn a_peers_filters_are_bounded_and_the_excess_counted() {
        let config = MessagingConfig {
            max_peer_filters: 10,
            max_peer_regex_filters: 2,
            max_peer_filter_bytes: 100,
            ..MessagingConfig::default()
        };
        let mut topics = Topics::new(&config);
        let bob = id("bob");
        for i in 0..20 {
            topics.handle_subscribe(bob.clone(), FilterKind::Prefix, format!("p{i}"));
        }
        assert_eq!(topics.filters_refused, 10);
        // Again: already there, nothing new, nothing refused.
        topics.handle_subscribe(bob.clone(), FilterKind::Prefix, "p0".into());
        assert_eq!(topics.filters_refused, 10);
        topics.handle_unsubscribe(&bob, FilterKind::Prefix, "p0");
        topics.handle_unsubscribe(&bob, FilterKind::Prefix, "p1");
        topics.handle_unsubscribe(&bob, FilterKind::Prefix, "p2");
        for r in ["^a", "^b", "^c"] {
            topics.handle_subscribe(bob.clone(), FilterKind::Regex, r.into());
        }
        assert_eq!(topics.filters_refused, 11, "a third regex is one too many");
        topics.handle_subscribe(bob.clone(), FilterKind::Prefix, "x".repeat(90));
        assert_eq!(topics.filters_refused, 12, "over the bytes");
        // Another peer has limits of its own.
        topics.handle_subscribe(id("carol"), FilterKind::Prefix, "p".into());
        assert_eq!(sorted_targets(&mut topics, "p5"), ["bob", "carol"]);
    }

    /// The targets of a publication on `topic`, by name, sorted.
    fn sorted_targets(topics: &mut Topics, topic: &str) -> Vec<String> {
        let mut t = targets(topics, topic);
        t.sort();
        t
    }

    #[test]
    fn regexes_over_their_size_limit_are_refused() {
        let mut topics = Topics::default();
        // Unicode word characters repeated: far over the compiled size limit.
        topics.handle_subscribe(id("bob"), FilterKind::Regex, r"\w{200}\w{200}".into());
        assert_eq!(topics.regexes_refused, 1);
        assert!(targets(&mut topics, "x").is_empty());
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
