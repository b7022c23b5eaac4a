//! The I/O task's one timer, moved as rarely as it can be.
//!
//! The core's next deadline changes with nearly every packet: a message in
//! holds back an ACK for `ack_delay`, the reply going out takes the ACK
//! along and the deadline goes back to the keepalive or the TTL sweep. A
//! fresh [`Sleep`] per turn of the loop (or a reset to
//! each new deadline) costs a timer-wheel insert and removal every turn,
//! and a deadline earlier than the one the runtime parked for makes Tokio
//! wake its own driver (an eventfd write, and one more `epoll_wait`), even
//! from the runtime's own thread.
//!
//! So the timer only ever moves earlier while it is pending: a later
//! deadline waits until the armed one has fired. Firing early is harmless
//! (the core's `handle_timeout` does only what is due), and a deadline is never
//! missed: while the timer is pending it is armed no later than the core's
//! next deadline.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How far off "no deadline" is put.
const IDLE: Duration = Duration::from_secs(3600);

/// A timer that fires no later than the deadline it was last given, and
/// is moved only when that deadline is earlier than the armed one or the
/// armed one has passed.
pub(crate) struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    armed: Instant,
    /// Whether `sleep` fired since it was last set.
    fired: bool,
}

impl LazyTimer {
    /// A timer that is not due for a long time.
    pub(crate) fn new() -> Self {
        let armed = Instant::now() + IDLE;
        Self {
            sleep: Box::pin(tokio::time::sleep_until(armed)),
            armed,
            fired: false,
        }
    }

    /// Makes the timer fire by `deadline` (`None`: no deadline), moving it
    /// only if it is armed later or has fired.
    pub(crate) fn arm(&mut self, deadline: Option<Instant>) {
        let target = deadline.unwrap_or_else(|| Instant::now() + IDLE);
        if self.fired || target < self.armed {
            self.sleep.as_mut().reset(target);
            self.armed = target;
            self.fired = false;
        }
    }

    /// The deadline the timer is armed at.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> Instant {
        self.armed
    }

    /// Ready once the armed deadline passes; ready again only after the
    /// next [`arm`](Self::arm).
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired {
            return Poll::Pending;
        }
        let fired = self.sleep.as_mut().poll(cx);
        if fired.is_ready() {
            self.fired = true;
        }
        fired
    }

    /// Waits until the armed deadline passes.
    pub(crate) async fn fired(&mut self) {
        std::future::poll_fn(|cx| self.poll_fired(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moves_earlier_at_once_and_later_only_after_firing() {
        let start = Instant::now();
        let mut timer = LazyTimer::new();
        timer.arm(Some(start + Duration::from_millis(20)));
        assert_eq!(timer.armed(), start + Duration::from_millis(20));
        // Earlier: moved.
        timer.arm(Some(start + Duration::from_millis(1)));
        assert_eq!(timer.armed(), start + Duration::from_millis(1));
        // Later while pending: stays (fires early, never late).
        timer.arm(Some(start + Duration::from_millis(20)));
        assert_eq!(timer.armed(), start + Duration::from_millis(1));
        timer.fired().await;
        assert_eq!(Instant::now(), start + Duration::from_millis(1));
        // Fired: the next deadline is taken as it is.
        timer.arm(Some(start + Duration::from_millis(20)));
        assert_eq!(timer.armed(), start + Duration::from_millis(20));
        timer.fired().await;
        assert_eq!(Instant::now(), start + Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn fires_once_per_arming() {
        let start = Instant::now();
        let mut timer = LazyTimer::new();
        timer.arm(Some(start + Duration::from_millis(5)));
        timer.fired().await;
        // Not re-armed: pending, even though the deadline is past.
        let again = tokio::time::timeout(Duration::from_millis(50), timer.fired()).await;
        assert!(again.is_err(), "fired twice for one arming");
        // A deadline in the past fires at once.
        timer.arm(Some(start));
        let before = Instant::now();
        timer.fired().await;
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_is_far_off() {
        let start = Instant::now();
        let mut timer = LazyTimer::new();
        timer.arm(None);
        assert!(timer.armed() >= start + IDLE);
        let waited = tokio::time::timeout(Duration::from_secs(60), timer.fired()).await;
        assert!(waited.is_err());
    }
}
