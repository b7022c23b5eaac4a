//! Subscription queues, P2PD's model: a filter over the data and the
//! sender, and a bounded queue of the messages that matched.
//!
//! The filters are here; the bounded queue is in `queue.rs`, and how one
//! dispatch hands its messages to the queues in `delivery.rs`.

use std::sync::Arc;

use bytes::Bytes;
use regex::bytes::Regex;

use crate::{Identity, Kind, Message};

mod delivery;
mod queue;

pub(crate) use delivery::{Deliveries, QueueMatches};
pub(crate) use queue::QueueShared;
pub use queue::SubscriptionQueue;

/// A received message and who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's identity.
    pub from: Identity,
    /// The message; its `ttl` is what was left of it when it was written.
    /// For a publication, `data` is the payload without the topic.
    pub message: Message,
    /// A publication's topic.
    pub topic: Option<Arc<str>>,
}

impl Received {
    /// The pattern the message belongs to.
    pub fn kind(&self) -> Kind {
        self.message.flags.kind()
    }
}

/// Which messages a queue gets: those whose data the pattern matches
/// (anywhere, unless anchored) and starts with the prefix, and if given
/// only from one identity, of
/// one [`Kind`], or (publications) on a matching topic.
/// [`Subscription::all`] (P2PD's SUB_ALL) matches every message.
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    /// A regular expression over the message data; `None` matches all.
    pub pattern: Option<Regex>,
    /// Only messages from this identity; `None` for any sender.
    pub from: Option<Identity>,
    /// Only messages of this kind; `None` for any.
    pub kind: Option<Kind>,
    /// Only publications whose topic this filter matches.
    pub topic: Option<TopicFilter>,
    /// Only messages whose data starts with these bytes: an anchored
    /// literal, checked without a regex.
    pub prefix: Option<Bytes>,
}

/// Which topics a subscriber wants.
#[derive(Clone, Debug)]
pub enum TopicFilter {
    /// Topics starting with this prefix (`""` for all).
    Prefix(String),
    /// Topics this regular expression matches.
    Regex(regex::Regex),
}

impl TopicFilter {
    /// Whether `topic` passes.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::Prefix(p) => topic.starts_with(p.as_str()),
            TopicFilter::Regex(r) => r.is_match(topic),
        }
    }

    pub(crate) fn wire(&self) -> (crate::frame::FilterKind, String) {
        match self {
            TopicFilter::Prefix(p) => (crate::frame::FilterKind::Prefix, p.clone()),
            TopicFilter::Regex(r) => (crate::frame::FilterKind::Regex, r.as_str().to_owned()),
        }
    }
}

impl Subscription {
    /// Everything (SUB_ALL).
    pub fn all() -> Subscription {
        Subscription::default()
    }

    /// Messages whose data `pattern` matches.
    pub fn matching(pattern: Regex) -> Subscription {
        Subscription {
            pattern: Some(pattern),
            ..Subscription::default()
        }
    }

    /// Messages whose data starts with `prefix`: what the regex
    /// `\A` followed by the literal bytes would match, at the cost of
    /// one comparison.
    ///
    /// ```
    /// use weft_messaging::{Identity, Kind, Message, Received, Subscription};
    ///
    /// let tagged = Subscription::starting_with(&b"\0TAG"[..]);
    /// let received = |data: &'static [u8]| Received {
    ///     from: Identity::new("peer").unwrap(),
    ///     message: Message::new(data),
    ///     topic: None,
    /// };
    /// assert!(tagged.matches(&received(b"\0TAG and more")));
    /// assert!(!tagged.matches(&received(b"no \0TAG at the start")));
    /// ```
    pub fn starting_with(prefix: impl Into<Bytes>) -> Subscription {
        Subscription {
            prefix: Some(prefix.into()),
            ..Subscription::default()
        }
    }

    /// Only messages of `kind`.
    pub fn of_kind(mut self, kind: Kind) -> Subscription {
        self.kind = Some(kind);
        self
    }

    /// Only messages from `from`.
    pub fn from(mut self, from: Identity) -> Subscription {
        self.from = Some(from);
        self
    }

    /// Whether a message matches.
    pub fn matches(&self, received: &Received) -> bool {
        self.matches_of_kind(received, received.kind())
    }

    /// [`matches`](Self::matches) for a message of `kind` (known by the
    /// caller, so not worked out again for every queue).
    pub(crate) fn matches_of_kind(&self, received: &Received, kind: Kind) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.from.as_ref().is_none_or(|f| *f == received.from)
            && self.topic.as_ref().is_none_or(|t| {
                received
                    .topic
                    .as_deref()
                    .is_some_and(|topic| t.matches(topic))
            })
            && self
                .prefix
                .as_ref()
                .is_none_or(|p| received.message.data.starts_with(p))
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&received.message.data))
    }
}
