//! pyroute2's patterns on identity messaging: REQ/REP, PUSH/PULL and
//! PUB/SUB. Each is a convention in the MESSAGE flags (see [`Flags`]), so a
//! pattern message is an ordinary message to a snakeMQ peer.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use weft_messaging::{Identity, Kind, Messaging, Subscription, TopicFilter};
//!
//! let server = Messaging::new(Identity::new("server")?, Default::default()).await?;
//! let at = server.link().listen("tcp://127.0.0.1:0").await?.address;
//! let client = Messaging::new(Identity::new("client")?, Default::default()).await?;
//! client.link().connect(&at)?;
//!
//! // REQ/REP: the server answers what its request queue receives.
//! let requests = server.subscribe(Subscription::all().of_kind(Kind::Request));
//! let answering = tokio::spawn({
//!     let server = server.clone();
//!     async move {
//!         let req = requests.recv(None).await?;
//!         server.reply(&req, "pong").await
//!     }
//! });
//! let reply = client.request(server.identity(), "ping", Duration::from_secs(5)).await?;
//! assert_eq!(&reply.message.data[..], b"pong");
//! answering.await??;
//!
//! // PUB/SUB: the subscription travels to the publisher, which then sends.
//! let news = client.subscribe_topic(TopicFilter::Prefix("news.".into()));
//! while server.publish("news.weather", "sunny")? == 0 {
//!     tokio::time::sleep(Duration::from_millis(5)).await; // until the interest arrived
//! }
//! let got = news.recv(Some(Duration::from_secs(5))).await?;
//! assert_eq!(got.topic.as_deref(), Some("news.weather"));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::error::Misuse;
use crate::frame::Frame;
use crate::message::Flags;
use crate::{
    Identity, Message, MessageId, Messaging, MessagingError, Received, Subscription,
    SubscriptionQueue, TopicFilter,
};

/// The longest topic, in bytes.
pub const MAX_TOPIC: usize = 255;

/// Removes a pending request when its caller stops waiting.
struct PendingGuard<'a> {
    messaging: &'a Messaging,
    id: MessageId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.messaging.pending().remove(&self.id);
    }
}

impl Messaging {
    /// Sends a request to `to` and waits for its reply, at most `timeout`
    /// (which is also the request's TTL). Fails with
    /// [`MessagingError::Timeout`] when no reply comes.
    ///
    /// Cancel-safe: dropping the future forgets the request; a late reply is
    /// counted as unhandled.
    pub async fn request(
        &self,
        to: &Identity,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Received, MessagingError> {
        let mut message = Message::new(data).with_ttl(timeout);
        message.flags = Flags::REQUEST;
        let id = message.id;
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        let _guard = PendingGuard {
            messaging: self,
            id,
        };
        self.send_message(to, message).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(MessagingError::Closed),
            Err(_) => Err(MessagingError::Timeout(timeout)),
        }
    }

    /// Answers a request received from a peer. Fails with
    /// [`Misuse::NotARequest`] when `request` is not a request.
    ///
    /// Cancel-safe: a reply is never stored, so it is queued at the first
    /// poll, or not at all if the future is dropped before.
    pub async fn reply(
        &self,
        request: &Received,
        data: impl Into<Bytes>,
    ) -> Result<(), MessagingError> {
        if request.kind() != crate::Kind::Request {
            return Err(Misuse::NotARequest.into());
        }
        let data = data.into();
        let mut body = BytesMut::with_capacity(16 + data.len());
        body.put_slice(&request.message.id.0);
        body.put_slice(&data);
        let mut message = Message::new(body.freeze());
        message.ttl = request.message.ttl;
        message.flags = Flags::REPLY;
        self.send_message(&request.from, message).await
    }

    /// A pusher that spreads work over `pullers` (PUSH/PULL). Pullers take
    /// work with a subscription of [`Kind::Push`](crate::Kind::Push).
    pub fn pusher(&self, pullers: impl IntoIterator<Item = Identity>) -> Pusher {
        Pusher {
            messaging: self.clone(),
            pullers: pullers.into_iter().collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Publishes `data` on `topic` to every peer (and to ourselves) whose
    /// subscriptions match it; returns how many got a copy. Peers that have
    /// not subscribed get nothing: subscriptions travel to publishers.
    /// Every copy carries the same message id. A full queue fails the
    /// publication for that peer and those after it. `data` is copied once,
    /// behind the topic, into the message all copies share: pass a slice,
    /// there is nothing to gain from allocating it first. A topic over
    /// [`MAX_TOPIC`] bytes fails with [`Misuse::TopicTooLong`].
    pub fn publish(&self, topic: &str, data: impl AsRef<[u8]>) -> Result<usize, MessagingError> {
        if topic.len() > MAX_TOPIC {
            return Err(Misuse::TopicTooLong(topic.len()).into());
        }
        let data = data.as_ref();
        let mut body = BytesMut::with_capacity(1 + topic.len() + data.len());
        body.put_u8(topic.len() as u8);
        body.put_slice(topic.as_bytes());
        body.put_slice(data);
        let body = body.freeze();
        let targets = self.topics().targets(topic, self.identity());
        let mut message = Message::new(body);
        message.flags = Flags::PUBLISH;
        self.enqueue_each(&targets, message)?;
        Ok(targets.len())
    }

    /// A queue of publications whose topic matches `filter`. The filter is
    /// sent to every connected weft peer now and to every peer that
    /// connects later, until the queue is unsubscribed with
    /// [`unsubscribe_topic`](Self::unsubscribe_topic).
    pub fn subscribe_topic(&self, filter: TopicFilter) -> SubscriptionQueue {
        let queue = self.subscribe(Subscription {
            kind: Some(crate::Kind::Publish),
            topic: Some(filter.clone()),
            ..Subscription::default()
        });
        let (kind, text) = filter.wire();
        self.topics().subscribe_local(queue.id(), filter);
        self.tell_peers(&Frame::Subscribe(kind, text));
        queue
    }

    /// Removes a topic subscription and tells the peers.
    pub fn unsubscribe_topic(&self, queue: &SubscriptionQueue) -> bool {
        let removed = self.topics().unsubscribe_local(queue.id());
        let Some((filter, still_wanted)) = removed else {
            return false;
        };
        self.unsubscribe(queue.id());
        if !still_wanted {
            let (kind, text) = filter.wire();
            self.tell_peers(&Frame::Unsubscribe(kind, text));
        }
        true
    }
}

/// Spreads work over pullers in turn (PUSH/PULL).
#[derive(Debug)]
pub struct Pusher {
    messaging: Messaging,
    pullers: Vec<Identity>,
    next: AtomicUsize,
}

impl Pusher {
    /// Pushes to the next connected puller, round robin; returns which.
    /// Fails with [`MessagingError::NoPeer`] when none is connected.
    pub fn push(&self, data: impl Into<Bytes>) -> Result<Identity, MessagingError> {
        let connected: Vec<&Identity> = self
            .pullers
            .iter()
            .filter(|p| self.messaging.is_connected(p))
            .collect();
        if connected.is_empty() {
            return Err(MessagingError::NoPeer);
        }
        let who = connected[self.next.fetch_add(1, Ordering::Relaxed) % connected.len()];
        self.push_to(who, data)?;
        Ok(who.clone())
    }

    /// Pushes to a named puller, queued until it connects.
    pub fn push_to(&self, puller: &Identity, data: impl Into<Bytes>) -> Result<(), MessagingError> {
        let mut message = Message::new(data);
        message.flags = Flags::PUSH;
        self.messaging.try_send_message(puller, message)
    }
}

/// Splits a publication's body into topic and payload.
/// `last` is the topic of the publication before, shared when it is the
/// same (publications mostly come in runs on one topic): no allocation.
pub(crate) fn split_publication(data: &mut Bytes, last: &mut Option<Arc<str>>) -> Option<Arc<str>> {
    let (&len, rest) = data.split_first()?;
    let len = len as usize;
    let raw = rest.get(..len)?;
    let topic = match last {
        Some(t) if same_bytes(t.as_bytes(), raw) => t.clone(),
        _ => {
            let t: Arc<str> = Arc::from(std::str::from_utf8(raw).ok()?);
            *last = Some(t.clone());
            t
        }
    };
    // In place: no second handle on the buffer to count up and down.
    data.advance(1 + len);
    Some(topic)
}

/// `a == b`, for topics (short, most of them) with no call into libc:
/// up to 32 bytes are compared as four overlapping words.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=32).contains(&n) {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = n / 2;
    let at = [0, half.saturating_sub(8).min(n - 8), half.min(n - 8), n - 8];
    at.iter().all(|&i| word(a, i) == word(b, i))
}

/// Splits a reply's body into the request id and, left in `data`, the
/// payload. `data` is unchanged when it is too short.
pub(crate) fn split_reply(data: &mut Bytes) -> Option<MessageId> {
    let id: [u8; 16] = data.get(..16)?.try_into().ok()?;
    data.advance(16);
    Some(MessageId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_compare_byte_for_byte_at_every_length() {
        for n in 0..=40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "equal at {n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same_bytes(&a, &b), "byte {i} of {n} differs");
            }
            assert!(!same_bytes(&a, &[a.as_slice(), b"x"].concat()));
        }
    }

    #[test]
    fn a_run_of_publications_on_one_topic_shares_it() {
        let mut last = None;
        let split = |raw: &'static [u8], last: &mut Option<Arc<str>>| {
            let mut data = Bytes::from_static(raw);
            split_publication(&mut data, last).map(|t| (t, data))
        };
        let (t1, data) = split(b"\x02ababc", &mut last).unwrap();
        assert_eq!((&*t1, &data[..]), ("ab", &b"abc"[..]));
        let (t2, _) = split(b"\x02ababc", &mut last).unwrap();
        assert!(Arc::ptr_eq(&t1, &t2), "the same topic is shared");
        let (t3, data) = split(b"\x01xy", &mut last).unwrap();
        assert_eq!((&*t3, &data[..]), ("x", &b"y"[..]));
        for bad in [&b"\x05ab"[..], b"\x01\xff", b""] {
            let mut data = Bytes::from_static(bad);
            assert!(split_publication(&mut data, &mut last).is_none());
            assert_eq!(&data[..], bad, "left as it was");
        }
    }
}
