//! A bandwidth limit between link and packeter, free of I/O.
//!
//! A connection with a [`Throttle`] writes at most `bytes_per_second` on
//! average, in bursts of at most `burst` bytes. The connection's writer asks
//! the [`TokenBucket`] how much it may write now and, when nothing, how long
//! to wait; nothing is dropped, senders simply see their queue fill up.

use std::time::{Duration, Instant};

/// A per-connection send bandwidth limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// The average rate. Must be above zero.
    pub bytes_per_second: u64,
    /// The most written at once after an idle period. At least 1; a burst
    /// of one write's worth (for example 16 KiB) keeps the rate smooth.
    pub burst: u64,
}

impl Throttle {
    /// A limit of `bytes_per_second` with a burst of a tenth of a second's
    /// worth (at least 1 KiB).
    pub fn per_second(bytes_per_second: u64) -> Throttle {
        Throttle {
            bytes_per_second: bytes_per_second.max(1),
            burst: (bytes_per_second / 10).max(1024),
        }
    }
}

/// The classic token bucket: tokens accrue at the rate up to the burst, and
/// each byte written spends one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `throttle` at time `now`.
    pub fn new(throttle: Throttle, now: Instant) -> TokenBucket {
        let burst = throttle.burst.max(1) as f64;
        TokenBucket {
            rate: throttle.bytes_per_second.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// How many bytes may be written at `now` (whole bytes).
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.max(0.0).floor() as usize
    }

    /// Spends `bytes` that were written.
    pub fn consume(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// How long until at least `bytes` (capped at the burst) may be written.
    pub fn wait_for(&mut self, now: Instant, bytes: usize) -> Duration {
        self.refill(now);
        let want = (bytes as f64).min(self.burst).max(1.0);
        if self.tokens >= want {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((want - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Throttle {
                bytes_per_second: 1000,
                burst: 500,
            },
            t0,
        );
        assert_eq!(b.available(t0), 500);
        b.consume(500);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.wait_for(t0, 100), Duration::from_millis(100));
        assert_eq!(b.available(t0 + Duration::from_millis(250)), 250);
        assert_eq!(b.available(t0 + Duration::from_secs(10)), 500);
        assert_eq!(
            b.wait_for(t0 + Duration::from_secs(10), 10_000),
            Duration::ZERO
        );
    }
}
