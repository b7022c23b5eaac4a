//! Subscriptions: bounded queues of the messages that match a payload
//! regex and a reply address.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{DropPolicy, PipeError, PipeMessage};
use crate::inbox::{Inbox, RecvError};

/// Identifies a subscription within its pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscription#{}", self.0)
    }
}

/// The socket address with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
/// written as the IPv4 address it stands for; any other address as is.
/// Pipes report and compare peer addresses in this form.
///
/// ```
/// use weft_link::pipe::normalize_addr;
/// let mapped = "[::ffff:127.0.0.1]:9".parse().unwrap();
/// assert_eq!(normalize_addr(mapped), "127.0.0.1:9".parse().unwrap());
/// ```
pub fn normalize_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Which messages a subscription queue receives: those whose payload
/// matches `pattern` (searched anywhere unless anchored) and whose sender
/// matches `from`. `None` matches everything.
///
/// `from` is compared after [normalising](normalize_addr) both addresses,
/// so `::ffff:10.0.0.1` and `10.0.0.1` are the same; port 0 matches any
/// port and an unspecified IP (`0.0.0.0` or `::`) any IP. A message
/// without a sender address (Unix sockets) matches only when `from` is
/// `None`.
///
/// ```
/// use weft_link::pipe::{Regex, Subscription};
/// let pongs_from_one_host = Subscription::matching(Regex::new("^pong").unwrap())
///     .with_from("192.0.2.7:0".parse().unwrap());
/// assert!(pongs_from_one_host.matches(b"pong 1", Some("192.0.2.7:5000".parse().unwrap())));
/// assert!(!pongs_from_one_host.matches(b"pong 1", Some("192.0.2.8:5000".parse().unwrap())));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    /// A regex the payload must match.
    pub pattern: Option<regex::bytes::Regex>,
    /// The address the message must come from.
    pub from: Option<SocketAddr>,
}

/// The subscription that matches every message (P2PD's `SUB_ALL`).
pub const SUB_ALL: Subscription = Subscription {
    pattern: None,
    from: None,
};

impl Subscription {
    /// Every message: [`SUB_ALL`].
    pub fn all() -> Subscription {
        SUB_ALL
    }

    /// Messages whose payload matches `pattern`, from anyone.
    pub fn matching(pattern: regex::bytes::Regex) -> Subscription {
        Subscription {
            pattern: Some(pattern),
            from: None,
        }
    }

    /// Messages from `addr` (port 0: any port), whatever their payload.
    pub fn from_addr(addr: SocketAddr) -> Subscription {
        Subscription {
            pattern: None,
            from: Some(addr),
        }
    }

    /// This subscription restricted to messages from `addr`.
    pub fn with_from(mut self, addr: SocketAddr) -> Subscription {
        self.from = Some(addr);
        self
    }

    /// This subscription restricted to payloads matching `pattern`.
    pub fn with_pattern(mut self, pattern: regex::bytes::Regex) -> Subscription {
        self.pattern = Some(pattern);
        self
    }

    /// Whether a message with this payload and sender belongs here.
    pub fn matches(&self, data: &[u8], from: Option<SocketAddr>) -> bool {
        self.matches_from(from) && self.pattern.as_ref().is_none_or(|re| re.is_match(data))
    }

    fn matches_from(&self, from: Option<SocketAddr>) -> bool {
        let Some(want) = self.from else {
            return true;
        };
        let Some(got) = from else {
            return false;
        };
        let (want, got) = (normalize_addr(want), normalize_addr(got));
        (want.ip().is_unspecified() || want.ip() == got.ip())
            && (want.port() == 0 || want.port() == got.port())
    }
}

struct QueueInner {
    id: SubscriptionId,
    subscription: Subscription,
    /// What `recv(None)` waits: the pipe's P2PD default.
    recv_timeout: Duration,
    inbox: Inbox<PipeMessage>,
}

/// A bounded queue of the messages matching a [`Subscription`], returned by
/// [`Pipe::subscribe`](super::Pipe::subscribe). Cheap to clone; clones
/// share the queue (each message goes to one reader).
///
/// The queue is weft-link's [`Inbox`]: when full, the pipe's
/// [`DropPolicy`] decides which message is lost, and
/// [`dropped`](Self::dropped) counts it. The queue lives until
/// [unsubscribed](super::Pipe::unsubscribe) or until the pipe closes; after
/// that, what is left can still be read, then reads fail with
/// [`PipeError::Closed`].
#[derive(Clone)]
pub struct SubscriptionQueue {
    inner: Arc<QueueInner>,
}

impl fmt::Debug for SubscriptionQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionQueue")
            .field("id", &self.inner.id)
            .field("subscription", &self.inner.subscription)
            .field("len", &self.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl SubscriptionQueue {
    pub(crate) fn new(
        id: SubscriptionId,
        subscription: Subscription,
        capacity: usize,
        policy: DropPolicy,
        recv_timeout: Duration,
    ) -> SubscriptionQueue {
        SubscriptionQueue {
            inner: Arc::new(QueueInner {
                id,
                subscription,
                recv_timeout,
                inbox: Inbox::new(capacity, policy),
            }),
        }
    }

    /// The subscription's id, for [`Pipe::unsubscribe`](super::Pipe::unsubscribe).
    pub fn id(&self) -> SubscriptionId {
        self.inner.id
    }

    /// What the queue receives.
    pub fn subscription(&self) -> &Subscription {
        &self.inner.subscription
    }

    /// The next message, waiting at most `timeout`. `None` means
    /// [`PipeConfig::recv_timeout`](super::PipeConfig::recv_timeout),
    /// P2PD's default (2 s unless configured), not "no limit" as it does
    /// for an [`Inbox`]; `Some(Duration::MAX)` waits without limit. Fails
    /// with [`PipeError::Timeout`] when nothing came in time, and with
    /// [`PipeError::Closed`] once the queue is closed and empty.
    ///
    /// Cancel-safe: a message is taken from the queue only when the
    /// future completes with it.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<PipeMessage, PipeError> {
        let waited = timeout.unwrap_or(self.inner.recv_timeout);
        self.inner
            .inbox
            .recv(Some(waited))
            .await
            .map_err(|e| match e {
                RecvError::Timeout(waited) => PipeError::Timeout { waited },
                RecvError::Closed => PipeError::Closed,
            })
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<PipeMessage> {
        self.inner.inbox.try_recv()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.inner.inbox.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.inner.inbox.is_empty()
    }

    /// The most messages the queue holds.
    pub fn capacity(&self) -> usize {
        self.inner.inbox.capacity()
    }

    /// Messages lost to the drop policy because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.inbox.dropped()
    }

    /// Whether the queue is closed (unsubscribed, or its pipe closed).
    /// Messages still queued can be read.
    pub fn is_closed(&self) -> bool {
        self.inner.inbox.is_closed()
    }

    /// Queues a copy of a message the pipe received. Returns whether a
    /// message was dropped to the policy (a closed queue takes nothing and
    /// drops nothing).
    pub(crate) fn push(&self, msg: PipeMessage) -> bool {
        self.inner.inbox.push(msg).dropped() > 0
    }

    /// Closes the queue: no more messages arrive; waiting readers wake.
    pub(crate) fn close(&self) {
        self.inner.inbox.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionId;
    use bytes::Bytes;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn msg(n: u8) -> PipeMessage {
        PipeMessage {
            data: Bytes::from(vec![n]),
            from: None,
            connection: ConnectionId(1),
        }
    }

    #[test]
    fn addresses_are_normalised_and_wildcards_match() {
        let from = Some(addr("127.0.0.1:4000"));
        let sub = |s: &str| Subscription::from_addr(addr(s));
        assert!(sub("127.0.0.1:4000").matches(b"", from));
        assert!(sub("[::ffff:127.0.0.1]:4000").matches(b"", from));
        assert!(sub("127.0.0.1:4000").matches(b"", Some(addr("[::ffff:127.0.0.1]:4000"))));
        assert!(sub("127.0.0.1:0").matches(b"", from), "port 0 is any port");
        assert!(
            sub("0.0.0.0:4000").matches(b"", from),
            "unspecified is any IP"
        );
        assert!(!sub("127.0.0.1:4001").matches(b"", from));
        assert!(!sub("127.0.0.2:4000").matches(b"", from));
        assert!(!sub("[::1]:4000").matches(b"", from));
        assert!(sub("[::1]:0").matches(b"", Some(addr("[::1]:9"))));
        assert!(!sub("127.0.0.1:0").matches(b"", None), "no sender address");
        assert!(SUB_ALL.matches(b"anything", None));
    }

    #[test]
    fn pattern_and_address_both_apply() {
        let re = regex::bytes::Regex::new("^ping").unwrap();
        let sub = Subscription::matching(re).with_from(addr("10.0.0.1:0"));
        assert!(sub.matches(b"ping!", Some(addr("10.0.0.1:5"))));
        assert!(!sub.matches(b"pong", Some(addr("10.0.0.1:5"))));
        assert!(!sub.matches(b"ping", Some(addr("10.0.0.2:5"))));
        let bin = regex::bytes::Regex::new(r"(?-u)^\xff\x00").unwrap();
        assert!(Subscription::matching(bin).matches(&[0xff, 0, 1], None));
    }

    #[test]
    fn bounded_with_either_drop_policy() {
        let q = SubscriptionQueue::new(
            SubscriptionId(1),
            SUB_ALL,
            2,
            DropPolicy::DropOldest,
            Duration::from_secs(1),
        );
        assert!(!q.push(msg(1)));
        assert!(!q.push(msg(2)));
        assert!(q.push(msg(3)));
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.try_recv().unwrap().data[0], 2);
        assert_eq!(q.try_recv().unwrap().data[0], 3);

        let q = SubscriptionQueue::new(
            SubscriptionId(2),
            SUB_ALL,
            2,
            DropPolicy::DropNewest,
            Duration::from_secs(1),
        );
        q.push(msg(1));
        q.push(msg(2));
        assert!(q.push(msg(3)));
        assert_eq!(q.try_recv().unwrap().data[0], 1);
        assert_eq!(q.try_recv().unwrap().data[0], 2);
        assert!(q.try_recv().is_none());
    }

    #[tokio::test]
    async fn recv_times_out_then_reads_what_is_left_after_close() {
        let q = SubscriptionQueue::new(
            SubscriptionId(1),
            SUB_ALL,
            4,
            DropPolicy::DropOldest,
            Duration::from_millis(10),
        );
        assert!(matches!(
            q.recv(None).await,
            Err(PipeError::Timeout { waited }) if waited == Duration::from_millis(10)
        ));
        q.push(msg(1));
        q.close();
        assert!(!q.push(msg(2)), "closed queues take nothing");
        assert_eq!(q.recv(None).await.unwrap().data[0], 1);
        assert!(matches!(q.recv(None).await, Err(PipeError::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes() {
        let q = SubscriptionQueue::new(
            SubscriptionId(1),
            SUB_ALL,
            4,
            DropPolicy::DropOldest,
            Duration::from_secs(5),
        );
        let q2 = q.clone();
        let reader = tokio::spawn(async move { q2.recv(Some(Duration::MAX)).await });
        tokio::task::yield_now().await;
        q.push(msg(9));
        assert_eq!(reader.await.unwrap().unwrap().data[0], 9);
    }
}
