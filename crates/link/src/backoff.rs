//! Reconnect timing, free of I/O: the connector asks it how long to wait.

use std::time::Duration;

use crate::ReconnectPolicy;

/// The waits of one connector, following a [`ReconnectPolicy`].
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The wait after a failed attempt; each failure grows the next one.
    /// `unit` is a random number in `[0, 1)` that drives the jitter.
    pub(crate) fn after_failure(&mut self, unit: f64) -> Duration {
        let base = self.policy.interval.as_secs_f64()
            * self
                .policy
                .backoff
                .max(1.0)
                .powi(self.failures.min(64) as i32);
        self.failures = self.failures.saturating_add(1);
        self.spread(base.min(self.policy.max_interval.as_secs_f64()), unit)
    }

    /// The wait after a connection that worked has ended: back to `interval`.
    pub(crate) fn after_disconnect(&mut self, unit: f64) -> Duration {
        self.failures = 0;
        self.spread(self.policy.interval.as_secs_f64(), unit)
    }

    fn spread(&self, secs: f64, unit: f64) -> Duration {
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((secs * factor).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(ReconnectPolicy {
            interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(500),
            backoff: 2.0,
            jitter: 0.0,
        });
        let waits: Vec<u128> = (0..5).map(|_| b.after_failure(0.5).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(b.after_disconnect(0.5).as_millis(), 100);
        assert_eq!(b.after_failure(0.5).as_millis(), 100);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut b = Backoff::new(ReconnectPolicy {
            interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(1),
            backoff: 1.0,
            jitter: 0.2,
        });
        assert_eq!(b.after_failure(0.0).as_millis(), 800);
        assert_eq!(b.after_failure(1.0).as_millis(), 1200);
        assert_eq!(b.after_failure(0.5).as_millis(), 1000);
    }
}
