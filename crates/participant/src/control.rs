//! What participants tell each other, inside ordinary MESSAGE data: a
//! 4-byte tag, then a postcard body (see `PROTOCOL.md`).

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use weft_messaging::TopicFilter;

use crate::filters::FilterLimits;

/// Control messages: lists of publishers and subscribers, routes.
pub(crate) const CONTROL_TAG: [u8; 4] = *b"\0WPC";
/// A routed message: an envelope header, then the payload.
pub(crate) const ROUTED_TAG: [u8; 4] = *b"\0WPR";

/// The most entries one list in a control message may have.
pub(crate) const MAX_LIST: usize = 4096;

/// The longest filter taken from a neighbour, and the longest regex
/// [`FilterSpec::to_filter`] compiles, in bytes (messaging's limit on one
/// SUBSCRIBE filter).
pub(crate) const MAX_FILTER: usize = 1024;

/// A topic filter as participants describe it to each other.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FilterSpec {
    /// A regular expression (`true`) or a prefix (`false`).
    pub regex: bool,
    /// The prefix or the expression.
    pub text: String,
}

impl FilterSpec {
    /// The spec of a filter.
    pub fn of(filter: &TopicFilter) -> FilterSpec {
        match filter {
            TopicFilter::Prefix(p) => FilterSpec {
                regex: false,
                text: p.clone(),
            },
            TopicFilter::Regex(r) => FilterSpec {
                regex: true,
                text: r.as_str().to_owned(),
            },
            // TopicFilter is exhaustive today; a future kind is shown as
            // a prefix that matches everything.
            #[allow(unreachable_patterns)]
            _ => FilterSpec {
                regex: false,
                text: String::new(),
            },
        }
    }

    /// The filter, compiled within the default limits of
    /// [`MessagingConfig`](weft_messaging::MessagingConfig)
    /// (`regex_size_limit`, `regex_dfa_size_limit`); `None` when it does
    /// not compile or is too long. A participant compiles the filters of
    /// its neighbours and local clients within the limits of its own
    /// [`ParticipantConfig::messaging`](crate::ParticipantConfig::messaging).
    pub fn to_filter(&self) -> Option<TopicFilter> {
        FilterLimits::default().compile(self).ok()
    }
}

impl fmt::Display for FilterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.regex {
            write!(f, "/{}/", self.text)
        } else {
            write!(f, "{}*", self.text)
        }
    }
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Sent once when a stream comes up: everything we host, and the
    /// identities we reach.
    Hello {
        publishers: Vec<String>,
        subscribers: Vec<FilterSpec>,
        routes: Vec<(String, u8)>,
    },
    PublisherAdded(String),
    PublisherRemoved(String),
    SubscriberAdded(FilterSpec),
    SubscriberRemoved(FilterSpec),
    /// The identities we reach and in how many hops (a full replacement
    /// of the previous list).
    Routes(Vec<(String, u8)>),
    /// With a group key: prove you hold it, over this nonce.
    Challenge([u8; NONCE_LEN]),
    /// With a group key: the answer to the other side's challenge.
    Proof([u8; weft_discovery::auth::TAG_LEN]),
}

/// The length of a stream challenge's nonce.
pub(crate) const NONCE_LEN: usize = 16;

/// The header of a routed message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The destination identity.
    pub(crate) to: String,
    /// The origin identity.
    pub(crate) from: String,
    /// Hops it may still take.
    pub(crate) hops_left: u8,
    /// The origin and every participant that forwarded it, in order.
    pub(crate) path: Vec<String>,
}

/// What a tagged message holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Control(Control),
    Routed(Envelope, Bytes),
}

pub(crate) fn encode_control(c: &Control) -> Bytes {
    let mut out = CONTROL_TAG.to_vec();
    out = postcard::to_extend(c, out).expect("encoding to a Vec does not fail");
    Bytes::from(out)
}

pub(crate) fn encode_routed(e: &Envelope, data: &[u8]) -> Bytes {
    let mut out = ROUTED_TAG.to_vec();
    out = postcard::to_extend(e, out).expect("encoding to a Vec does not fail");
    let mut b = BytesMut::with_capacity(out.len() + data.len());
    b.extend_from_slice(&out);
    b.extend_from_slice(data);
    b.freeze()
}

/// Parses a tagged message; `None` for anything else or anything broken.
pub(crate) fn decode(data: &Bytes) -> Option<Decoded> {
    let tag: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let body = &data[4..];
    if tag == CONTROL_TAG {
        let c: Control = postcard::from_bytes(body).ok()?;
        let ok = match &c {
            Control::Hello {
                publishers,
                subscribers,
                routes,
            } => {
                publishers.len() <= MAX_LIST
                    && subscribers.len() <= MAX_LIST
                    && routes.len() <= MAX_LIST
            }
            Control::Routes(r) => r.len() <= MAX_LIST,
            _ => true,
        };
        ok.then_some(Decoded::Control(c))
    } else if tag == ROUTED_TAG {
        let (e, rest) = postcard::take_from_bytes::<Envelope>(body).ok()?;
        if e.path.len() > usize::from(u8::MAX) {
            return None;
        }
        let start = data.len() - rest.len();
        Some(Decoded::Routed(e, data.slice(start..)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Control::Hello {
            publishers: vec!["news.weather".into()],
            subscribers: vec![FilterSpec {
                regex: true,
                text: "^a.*".into(),
            }],
            routes: vec![("c".into(), 1)],
        };
        let bytes = encode_control(&c);
        assert_eq!(&bytes[..4], b"\0WPC");
        assert_eq!(decode(&bytes), Some(Decoded::Control(c)));
        let e = Envelope {
            to: "c".into(),
            from: "a".into(),
            hops_left: 7,
            path: vec!["a".into()],
        };
        let bytes = encode_routed(&e, b"payload");
        assert_eq!(
            decode(&bytes),
            Some(Decoded::Routed(e, Bytes::from_static(b"payload")))
        );
        assert_eq!(decode(&Bytes::from_static(b"\0WPC\xff\xff")), None);
        assert_eq!(decode(&Bytes::from_static(b"\0WP")), None);
        assert_eq!(decode(&Bytes::from_static(b"plain data")), None);
    }

    #[test]
    fn filters_compile_within_bounds() {
        let p = FilterSpec::of(&TopicFilter::Prefix("a.".into()));
        assert!(p.to_filter().unwrap().matches("a.b"));
        let bad = FilterSpec {
            regex: true,
            text: "(".into(),
        };
        assert!(bad.to_filter().is_none());
        assert_eq!(p.to_string(), "a.*");
    }
}
