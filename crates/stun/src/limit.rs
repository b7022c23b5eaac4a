//! Per-source rate limits for the [`Responder`](crate::Responder): a token
//! bucket per source address, in a table of bounded size.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

/// Nano-tokens in one token: buckets count in billionths so that refills
/// over any interval are exact integers.
const TOKEN: u128 = 1_000_000_000;

/// A token bucket's shape: up to `burst` at once, refilled at
/// `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// How many a source that has been quiet may have at once. 0 allows
    /// none.
    pub burst: u32,
    /// How many more each second. 0 never refills.
    pub per_second: u32,
}

impl RateLimit {
    /// A limit of `burst` at once and `per_second` after that.
    pub const fn new(burst: u32, per_second: u32) -> RateLimit {
        RateLimit { burst, per_second }
    }
}

/// What the [`Responder`](crate::Responder) grants one source address.
/// Sources are IP addresses (an IPv4-mapped IPv6 address counts as its
/// IPv4 address; the port is ignored, so a client's sockets share one
/// budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLimits {
    /// Answers (success and error) per source; requests over it get
    /// none. Default: a burst of 200, then 100 a second.
    pub answers: RateLimit,
    /// Answers sent to the port a RESPONSE-PORT names rather than to the
    /// request's source, per source; requests over it get none. A client
    /// needs a handful for NAT behaviour discovery. Default: a burst of
    /// 10, then 1 a second.
    pub redirects: RateLimit,
    /// How many sources are tracked at once; the one seen first is
    /// forgotten to make room for a new one (it then starts again with a
    /// full budget). Default: 4096.
    pub max_sources: usize,
}

impl Default for SourceLimits {
    fn default() -> SourceLimits {
        SourceLimits {
            answers: RateLimit::new(200, 100),
            redirects: RateLimit::new(10, 1),
            max_sources: 4096,
        }
    }
}

/// How often each limit of [`SourceLimits`] has bitten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Requests not answered because their source was over
    /// [`SourceLimits::answers`].
    pub rate_limited: u64,
    /// Requests not answered because their source was over
    /// [`SourceLimits::redirects`].
    pub redirects_refused: u64,
    /// Sources forgotten to stay within [`SourceLimits::max_sources`].
    pub sources_evicted: u64,
}

/// One token bucket, in nano-tokens.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    level: u128,
    at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Bucket {
        Bucket {
            level: u128::from(limit.burst) * TOKEN,
            at: now,
        }
    }

    /// Takes one token if there is one, after refilling up to `now`.
    fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        // An instant earlier than the last one refills nothing.
        if now > self.at {
            let elapsed = now.duration_since(self.at).as_nanos();
            let refill = elapsed.saturating_mul(u128::from(limit.per_second));
            let cap = u128::from(limit.burst) * TOKEN;
            self.level = self.level.saturating_add(refill).min(cap);
            self.at = now;
        }
        match self.level.checked_sub(TOKEN) {
            Some(rest) => {
                self.level = rest;
                true
            }
            None => false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Source {
    answers: Bucket,
    redirects: Bucket,
}

/// The buckets of the sources seen most recently, oldest forgotten first.
#[derive(Clone, Debug)]
pub(crate) struct SourceTable {
    limits: SourceLimits,
    sources: HashMap<IpAddr, Source>,
    /// Insertion order, for eviction; holds exactly the keys of `sources`.
    order: VecDeque<IpAddr>,
    stats: LimitStats,
}

impl SourceTable {
    pub(crate) fn new(limits: SourceLimits) -> SourceTable {
        SourceTable {
            limits,
            sources: HashMap::new(),
            order: VecDeque::new(),
            stats: LimitStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> LimitStats {
        self.stats
    }

    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }

    /// Takes an answer token for `ip`; counts a refusal.
    pub(crate) fn take_answer(&mut self, ip: IpAddr, now: Instant) -> bool {
        let limit = self.limits.answers;
        let ok = self.source(ip, now).answers.take(limit, now);
        if !ok {
            self.stats.rate_limited += 1;
        }
        ok
    }

    /// Takes a redirect token for `ip`; counts a refusal.
    pub(crate) fn take_redirect(&mut self, ip: IpAddr, now: Instant) -> bool {
        let limit = self.limits.redirects;
        let ok = self.source(ip, now).redirects.take(limit, now);
        if !ok {
            self.stats.redirects_refused += 1;
        }
        ok
    }

    fn source(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        let ip = ip.to_canonical();
        if !self.sources.contains_key(&ip) {
            while self.sources.len() >= self.limits.max_sources.max(1) {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.sources.remove(&oldest);
                self.stats.sources_evicted += 1;
            }
            self.order.push_back(ip);
        }
        let limits = self.limits;
        self.sources.entry(ip).or_insert_with(|| Source {
            answers: Bucket::full(limits.answers, now),
            redirects: Bucket::full(limits.redirects, now),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut table = SourceTable::new(SourceLimits {
            answers: RateLimit::new(5, 2),
            ..SourceLimits::default()
        });
        let t0 = Instant::now();
        let granted = (0..100).filter(|_| table.take_answer(ip(1), t0)).count();
        assert_eq!(granted, 5);
        // Half a second refills one token; a full second two.
        assert!(table.take_answer(ip(1), t0 + Duration::from_millis(500)));
        assert!(!table.take_answer(ip(1), t0 + Duration::from_millis(500)));
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!((0..10).filter(|_| table.take_answer(ip(1), t1)).count(), 2);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| table.take_answer(ip(1), t2)).count(), 5);
        // An instant in the past refills nothing and panics nowhere.
        assert!(!table.take_answer(ip(1), t0));
        assert_eq!(table.stats().rate_limited, 95 + 1 + 8 + 5 + 1);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest() {
        let mut table = SourceTable::new(SourceLimits {
            answers: RateLimit::new(1, 0),
            max_sources: 3,
            ..SourceLimits::default()
        });
        let t0 = Instant::now();
        for n in 0..3 {
            assert!(table.take_answer(ip(n), t0));
        }
        assert!(!table.take_answer(ip(0), t0));
        assert!(table.take_answer(ip(3), t0)); // evicts ip(0)
        assert_eq!(table.len(), 3);
        assert_eq!(table.stats().sources_evicted, 1);
        assert!(!table.take_answer(ip(1), t0), "ip(1) is still tracked");
        for n in 4..10_000 {
            table.take_answer(ip(n), t0);
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.stats().sources_evicted, 9_997);
    }

    #[test]
    fn mapped_ipv4_is_the_same_source() {
        let mut table = SourceTable::new(SourceLimits {
            answers: RateLimit::new(1, 0),
            ..SourceLimits::default()
        });
        let t0 = Instant::now();
        assert!(table.take_answer("10.0.0.1".parse().unwrap(), t0));
        assert!(!table.take_answer("::ffff:10.0.0.1".parse().unwrap(), t0));
        assert_eq!(table.len(), 1);
    }
}
