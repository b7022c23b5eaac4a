//! PUB/SUB: a publication carries [`Flags::PUBLISH`] and a body of
//! `[u8 topic length][topic][payload]`; subscriptions travel to the
//! publishers (SUBSCRIBE and UNSUBSCRIBE frames), which send only to the
//! peers that want a topic.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::MAX_TOPIC;
use crate::error::Misuse;
use crate::frame::Frame;
use crate::message::Flags;
use crate::{Message, Messaging, MessagingError, Subscription, SubscriptionQueue, TopicFilter};

impl Messaging {
    /// Publishes `data` on `topic` to every peer (and to ourselves) whose
    /// subscriptions match it; returns how many got a copy. Peers that have
    /// not subscribed get nothing: subscriptions travel to publishers.
    /// Every copy carries the same message id. A full queue fails the
    /// publication for that peer and those after it. `data` is copied once,
    /// behind the topic, into the message all copies share: pass a slice,
    /// there is nothing to gain from allocating it first. A topic over
    /// [`MAX_TOPIC`] bytes fails with [`Misuse::TopicTooLong`], and a
    /// publication too large for a packet with [`Misuse::MessageTooLarge`]
    /// (nobody gets it).
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
