//! A neighbour's subscriber filters, held within the limits messaging puts
//! on a peer's SUBSCRIBE frames: the same filters reach a participant both
//! ways (as control messages and as SUBSCRIBE frames), so one set of knobs
//! ([`MessagingConfig::max_peer_filters`] and the limits beside it)
//! bounds what either may cost.

use std::collections::BTreeMap;

use weft_messaging::{MessagingConfig, TopicFilter};

use crate::control::{FilterSpec, MAX_FILTER};

/// What one neighbour's subscriber filters may cost, from a
/// [`MessagingConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FilterLimits {
    /// Filters, both kinds together.
    pub(crate) filters: usize,
    /// Regex filters.
    pub(crate) regex_filters: usize,
    /// Bytes of filter text, both kinds together.
    pub(crate) bytes: usize,
    /// The compiled size of one regex (`RegexBuilder::size_limit`).
    pub(crate) regex_size: usize,
    /// The matching cache of one regex (`RegexBuilder::dfa_size_limit`).
    pub(crate) regex_dfa_size: usize,
}

impl FilterLimits {
    /// The limits `config` puts on a peer's SUBSCRIBE frames.
    pub(crate) fn of(config: &MessagingConfig) -> FilterLimits {
        FilterLimits {
            filters: config.max_peer_filters,
            regex_filters: config.max_peer_regex_filters,
            bytes: config.max_peer_filter_bytes,
            regex_size: config.regex_size_limit,
            regex_dfa_size: config.regex_dfa_size_limit,
        }
    }
}

impl FilterLimits {
    /// `spec` compiled within these limits (its length, and a regex's
    /// compiled and matching-cache sizes).
    pub(crate) fn compile(&self, spec: &FilterSpec) -> Result<TopicFilter, Refused> {
        if spec.text.len() > MAX_FILTER {
            return Err(Refused::Limit);
        }
        if !spec.regex {
            return Ok(TopicFilter::Prefix(spec.text.clone()));
        }
        regex::RegexBuilder::new(&spec.text)
            .size_limit(self.regex_size)
            .dfa_size_limit(self.regex_dfa_size)
            .build()
            .map(TopicFilter::Regex)
            .map_err(|_| Refused::Regex)
    }
}

impl Default for FilterLimits {
    fn default() -> FilterLimits {
        FilterLimits::of(&MessagingConfig::default())
    }
}

/// Why a neighbour's filter was not taken, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Over the count or byte limits, or longer than any filter may be.
    Limit,
    /// A regex that does not compile within its size limits.
    Regex,
}

/// One neighbour's subscriber filters, each compiled. Limits are checked
/// before anything is compiled, so a refused filter costs nothing kept.
#[derive(Debug, Default)]
pub(crate) struct RemoteFilters {
    filters: BTreeMap<FilterSpec, TopicFilter>,
    /// How many of `filters` are regexes.
    regexes: usize,
    /// Bytes of filter text held, both kinds.
    bytes: usize,
    /// Regexes compiled (kept or not), for tests to see that a refused
    /// filter never was.
    #[cfg(test)]
    pub(crate) compiled: usize,
}

impl RemoteFilters {
    /// Takes `spec` within `limits`: `Ok(true)` when it is new, `Ok(false)`
    /// when it is already held.
    pub(crate) fn add(
        &mut self,
        spec: &FilterSpec,
        limits: &FilterLimits,
    ) -> Result<bool, Refused> {
        if self.filters.contains_key(spec) {
            return Ok(false);
        }
        let bytes = self.bytes.saturating_add(spec.text.len());
        if spec.text.len() > MAX_FILTER
            || self.filters.len() >= limits.filters
            || bytes > limits.bytes
            || (spec.regex && self.regexes >= limits.regex_filters)
        {
            return Err(Refused::Limit);
        }
        #[cfg(test)]
        if spec.regex {
            self.compiled += 1;
        }
        let filter = limits.compile(spec)?;
        if spec.regex {
            self.regexes += 1;
        }
        self.bytes = bytes;
        self.filters.insert(spec.clone(), filter);
        Ok(true)
    }

    /// Drops `spec`; whether it was held.
    pub(crate) fn remove(&mut self, spec: &FilterSpec) -> bool {
        if self.filters.remove(spec).is_none() {
            return false;
        }
        self.bytes = self.bytes.saturating_sub(spec.text.len());
        if spec.regex {
            self.regexes = self.regexes.saturating_sub(1);
        }
        true
    }

    /// Whether any filter matches `topic`.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.filters.values().any(|f| f.matches(topic))
    }

    /// Whether none is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// How many are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.filters.len()
    }

    /// The filters as told, sorted.
    pub(crate) fn specs(&self) -> impl Iterator<Item = &FilterSpec> {
        self.filters.keys()
    }

    /// The filters as told, sorted, taken out.
    pub(crate) fn into_specs(self) -> impl Iterator<Item = FilterSpec> {
        self.filters.into_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(text: &str) -> FilterSpec {
        FilterSpec {
            regex: true,
            text: text.into(),
        }
    }

    #[test]
    fn compile_holds_a_regex_to_the_configured_sizes() {
        // A counted repetition compiles to a program far over 10 KiB.
        let big = regex(r"^[a-z]{1,300}$");
        let default = FilterLimits::default();
        assert!(matches!(default.compile(&big), Ok(TopicFilter::Regex(_))));
        let small = FilterLimits {
            regex_size: 10 << 10,
            ..default
        };
        assert_eq!(small.compile(&big).err(), Some(Refused::Regex));
        assert_eq!(
            small
                .compile(&prefix("news."))
                .ok()
                .map(|f| f.matches("news.x")),
            Some(true)
        );
        let long = prefix(&"x".repeat(MAX_FILTER + 1));
        assert_eq!(default.compile(&long).err(), Some(Refused::Limit));
    }

    fn prefix(text: &str) -> FilterSpec {
        FilterSpec {
            regex: false,
            text: text.into(),
        }
    }

    #[test]
    fn the_same_limits_as_messaging_by_default() {
        let l = FilterLimits::default();
        assert_eq!(
            (
                l.filters,
                l.regex_filters,
                l.bytes,
                l.regex_size,
                l.regex_dfa_size
            ),
            (1024, 16, 64 << 10, 256 << 10, 256 << 10)
        );
    }

    #[test]
    fn each_limit_refuses_before_compiling_and_a_removal_frees_its_share() {
        let limits = FilterLimits {
            filters: 4,
            regex_filters: 2,
            bytes: 20,
            regex_size: 256 << 10,
            regex_dfa_size: 256 << 10,
        };
        let mut f = RemoteFilters::default();
        assert_eq!(f.add(&regex("^a"), &limits), Ok(true));
        assert_eq!(f.add(&regex("^a"), &limits), Ok(false), "held already");
        assert_eq!(f.add(&regex("^b"), &limits), Ok(true));
        assert_eq!(f.add(&regex("^c"), &limits), Err(Refused::Limit));
        assert_eq!(f.compiled, 2, "the third regex was never compiled");
        assert_eq!(f.add(&prefix("0123456789"), &limits), Ok(true));
        assert_eq!(f.add(&prefix("0123456789x"), &limits), Err(Refused::Limit));
        assert_eq!(f.add(&prefix("x"), &limits), Ok(true));
        assert_eq!(f.add(&prefix("y"), &limits), Err(Refused::Limit));
        assert_eq!(f.len(), 4);
        assert!(f.matches("b.c") && f.matches("xyz") && !f.matches("zz"));

        assert!(f.remove(&regex("^a")));
        assert!(!f.remove(&regex("^a")));
        assert_eq!(f.add(&regex("^c"), &limits), Ok(true));
        let long = prefix(&"p".repeat(MAX_FILTER + 1));
        let roomy = FilterLimits {
            bytes: usize::MAX,
            filters: usize::MAX,
            ..limits
        };
        assert_eq!(f.add(&long, &roomy), Err(Refused::Limit));
    }

    #[test]
    fn a_regex_too_large_to_compile_is_refused() {
        let limits = FilterLimits {
            regex_size: 1 << 10,
            ..FilterLimits::default()
        };
        let mut f = RemoteFilters::default();
        assert_eq!(f.add(&regex(r"\w{100}"), &limits), Err(Refused::Regex));
        assert_eq!(f.add(&regex("("), &limits), Err(Refused::Regex));
        assert!(f.is_empty());
        assert_eq!(f.add(&regex("^ok$"), &limits), Ok(true));
    }
}
