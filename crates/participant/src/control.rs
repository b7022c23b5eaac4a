//! What participants tell each other, inside ordinary MESSAGE data: a
//! 4-byte tag, then a postcard body (see `PROTOCOL.md`).

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use weft_messaging::{Identity, TopicFilter};

use crate::filters::FilterLimits;

/// Control messages: lists of publishers and subscribers, routes.
pub(crate) const CONTROL_TAG: [u8; 4] = *b"\0WPC";
/// A routed message: an envelope header, then the payload.
pub(crate) const ROUTED_TAG: [u8; 4] = *b"\0WPR";
/// A publication routed through participants: a [`PublicationHeader`],
/// then the payload. Sent only to neighbours whose Hello carried
/// [`FEATURE_INTEREST`].
pub(crate) const PUBLICATION_TAG: [u8; 4] = *b"\0WPP";

/// The bit of Hello's trailing features byte saying that its sender
/// routes interest and publications ([`Control::Interest`],
/// [`PUBLICATION_TAG`]).
pub(crate) const FEATURE_INTEREST: u8 = 1;

/// The bit of Hello's features byte saying that its sender takes
/// [`Control::RoutesChanged`] and [`Control::InterestChanged`]: after the
/// first list, only what changed.
pub(crate) const FEATURE_CHANGES: u8 = 2;

/// The bit of Hello's features byte saying that its sender takes a
/// routed publication naming no target as one for itself: a participant
/// passing a publication on sends each neighbour that is the only target
/// of its copy the same bytes, made once.
pub(crate) const FEATURE_UNNAMED: u8 = 4;

/// The features this participant sets in its Hello: all of them.
pub(crate) const FEATURES: u8 = FEATURE_INTEREST | FEATURE_CHANGES | FEATURE_UNNAMED;

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
        /// What the sender understands beyond the first protocol: one
        /// byte after the postcard body, outside serde, because postcard
        /// leaves trailing bytes unread: a participant that predates it
        /// decodes the Hello as before, and one that reads a Hello without
        /// it sees 0.
        #[serde(skip)]
        features: u8,
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
    /// The subscribers we reach through participants and their filters
    /// (a full replacement of the previous list); only to neighbours that
    /// announced [`FEATURE_INTEREST`].
    Interest(Vec<InterestEntry>),
    /// In a group past its full-mesh size: the sender keeps no stream
    /// with us (it has as many as it may); the one that dialled it closes
    /// the stream and dials someone else.
    Leave,
    /// What changed in the identities we reach since the last list or
    /// change we sent: new or different entries, and names no longer
    /// reached; only to neighbours that announced [`FEATURE_CHANGES`].
    RoutesChanged {
        set: Vec<(String, u8)>,
        removed: Vec<String>,
    },
    /// What changed in the subscribers we reach since the last list or
    /// change we sent; only to neighbours that announced
    /// [`FEATURE_INTEREST`] and [`FEATURE_CHANGES`].
    InterestChanged {
        set: Vec<InterestEntry>,
        removed: Vec<String>,
    },
}

/// One subscriber a neighbour reaches: its identity, how many hops away
/// it is from that neighbour, and its filters.
pub(crate) type InterestEntry = (String, u8, Vec<FilterSpec>);

/// The header of a publication routed through participants, its names
/// as `S`: a participant passing a copy on reads them as `&str` borrowed
/// from the copy received (see [`decode`]), without a copy of each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PublicationHeader<S = String> {
    /// The identity of the publishing participant.
    pub(crate) origin: S,
    /// Chosen at random each time the publisher starts, so that its
    /// sequence numbers, which start again at 0, name new publications.
    pub(crate) epoch: u64,
    /// The publisher's count of routed publications.
    pub(crate) seq: u64,
    /// The topic.
    pub(crate) topic: S,
    /// How many more times this copy may be passed on.
    pub(crate) hops_left: u8,
    /// The subscribers this copy is for.
    pub(crate) targets: Vec<S>,
}

#[cfg(test)]
impl PublicationHeader<String> {
    /// The header with its names borrowed.
    pub(crate) fn view(&self) -> PublicationHeader<&str> {
        PublicationHeader {
            origin: &self.origin,
            epoch: self.epoch,
            seq: self.seq,
            topic: &self.topic,
            hops_left: self.hops_left,
            targets: self.targets.iter().map(String::as_str).collect(),
        }
    }
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
pub(crate) enum Decoded<'a> {
    Control(Control),
    Routed(Envelope, Bytes),
    /// The header's names are borrowed from the message decoded.
    Publication(PublicationHeader<&'a str>, Bytes),
}

pub(crate) fn encode_control(c: &Control) -> Bytes {
    let mut out = CONTROL_TAG.to_vec();
    out = postcard::to_extend(c, out).expect("encoding to a Vec does not fail");
    if let Control::Hello { features, .. } = c {
        out.push(*features);
    }
    Bytes::from(out)
}

/// A routed publication as one message, by postcard (copies are made by
/// [`PublicationCopies`](crate::routed::PublicationCopies), which tests
/// hold to this).
#[cfg(test)]
pub(crate) fn encode_publication<S: Serialize>(h: &PublicationHeader<S>, data: &[u8]) -> Bytes {
    let mut out = PUBLICATION_TAG.to_vec();
    out = postcard::to_extend(h, out).expect("encoding to a Vec does not fail");
    let mut b = BytesMut::with_capacity(out.len() + data.len());
    b.extend_from_slice(&out);
    b.extend_from_slice(data);
    b.freeze()
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
pub(crate) fn decode(data: &Bytes) -> Option<Decoded<'_>> {
    let tag: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let body = &data[4..];
    if tag == CONTROL_TAG {
        let (mut c, rest) = postcard::take_from_bytes::<Control>(body).ok()?;
        let ok = match &mut c {
            Control::Hello {
                publishers,
                subscribers,
                routes,
                features,
            } => {
                *features = rest.first().copied().unwrap_or(0);
                publishers.len() <= MAX_LIST
                    && subscribers.len() <= MAX_LIST
                    && routes.len() <= MAX_LIST
            }
            Control::Routes(r) => r.len() <= MAX_LIST,
            Control::RoutesChanged { set, removed } => {
                set.len() <= MAX_LIST && removed.len() <= MAX_LIST
            }
            Control::Interest(entries) => {
                entries.len() <= MAX_LIST
                    && entries.iter().map(|(_, _, f)| f.len()).sum::<usize>() <= MAX_LIST
            }
            Control::InterestChanged { set, removed } => {
                set.len() <= MAX_LIST
                    && removed.len() <= MAX_LIST
                    && set.iter().map(|(_, _, f)| f.len()).sum::<usize>() <= MAX_LIST
            }
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
    } else if tag == PUBLICATION_TAG {
        let (h, used) = crate::routed::read_header(body)?;
        if h.targets.len() > MAX_LIST
            || h.topic.len() > weft_messaging::patterns::MAX_TOPIC
            || Identity::check(h.origin).is_err()
        {
            return None;
        }
        Some(Decoded::Publication(h, data.slice(4 + used..)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_have_the_bytes_protocol_md_shows_and_their_bounds() {
        let c = Control::RoutesChanged {
            set: vec![("c".into(), 2)],
            removed: vec!["d".into()],
        };
        let bytes = encode_control(&c);
        assert_eq!(
            &bytes[..],
            b"\0WPC\x0a\x01\x01c\x02\x01\x01d",
            "{bytes:02x?}"
        );
        assert_eq!(decode(&bytes), Some(Decoded::Control(c)));
        let c = Control::InterestChanged {
            set: vec![(
                "c".into(),
                1,
                vec![FilterSpec::of(&TopicFilter::Prefix("n".into()))],
            )],
            removed: vec![],
        };
        let bytes = encode_control(&c);
        assert_eq!(bytes[4], 11);
        assert_eq!(decode(&bytes), Some(Decoded::Control(c)));
        let too_many = Control::RoutesChanged {
            set: Vec::new(),
            removed: (0..=MAX_LIST).map(|i| i.to_string()).collect(),
        };
        assert_eq!(decode(&encode_control(&too_many)), None);
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Control::Hello {
            publishers: vec!["news.weather".into()],
            subscribers: vec![FilterSpec {
                regex: true,
                text: "^a.*".into(),
            }],
            routes: vec![("c".into(), 1)],
            features: FEATURE_INTEREST,
        };
        let bytes = encode_control(&c);
        assert_eq!(&bytes[..4], b"\0WPC");
        assert_eq!(decode(&bytes), Some(Decoded::Control(c.clone())));
        // A participant that predates the features byte reads the same
        // Hello (postcard leaves the byte unread), and one without it is
        // read as offering no features.
        let old: Control = postcard::from_bytes(&bytes[4..]).unwrap();
        let without = Control::Hello {
            publishers: vec!["news.weather".into()],
            subscribers: c_subscribers(&c),
            routes: vec![("c".into(), 1)],
            features: 0,
        };
        assert_eq!(old, without);
        let short = bytes.slice(..bytes.len() - 1);
        assert_eq!(decode(&short), Some(Decoded::Control(without)));
        // PROTOCOL.md's example.
        let empty = Control::Hello {
            publishers: Vec::new(),
            subscribers: Vec::new(),
            routes: Vec::new(),
            features: FEATURE_INTEREST,
        };
        assert_eq!(&encode_control(&empty)[..], b"\0WPC\0\0\0\0\x01");
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

    fn c_subscribers(c: &Control) -> Vec<FilterSpec> {
        match c {
            Control::Hello { subscribers, .. } => subscribers.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn interest_and_publications_round_trip_within_limits() {
        let spec = FilterSpec {
            regex: false,
            text: "news".into(),
        };
        let c = Control::Interest(vec![("c".into(), 1, vec![spec.clone()])]);
        let bytes = encode_control(&c);
        assert_eq!(
            &bytes[..],
            &[
                0, 0x57, 0x50, 0x43, 8, 1, 1, b'c', 1, 1, 0, 4, b'n', b'e', b'w', b's'
            ][..]
        );
        assert_eq!(decode(&bytes), Some(Decoded::Control(c)));
        let too_many = Control::Interest(vec![("c".into(), 1, vec![spec; MAX_LIST + 1])]);
        assert_eq!(decode(&encode_control(&too_many)), None);

        let h = PublicationHeader {
            origin: "a",
            epoch: 7,
            seq: 1,
            topic: "news",
            hops_left: 7,
            targets: vec!["c"],
        };
        let bytes = encode_publication(&h, b"hi");
        assert_eq!(
            &bytes[..],
            &[
                0, 0x57, 0x50, 0x50, 1, b'a', 7, 1, 4, b'n', b'e', b'w', b's', 7, 1, 1, b'c', b'h',
                b'i'
            ][..]
        );
        assert_eq!(
            decode(&bytes),
            Some(Decoded::Publication(h.clone(), Bytes::from_static(b"hi")))
        );
        // A publisher whose name cannot be an identity: not a publication.
        let long = "p".repeat(51);
        for origin in ["", long.as_str()] {
            let bad = PublicationHeader {
                origin,
                ..h.clone()
            };
            assert_eq!(decode(&encode_publication(&bad, b"hi")), None, "{origin:?}");
        }
        // An index no participant knows of is not a control message.
        assert_eq!(decode(&Bytes::from_static(b"\0WPC\x63")), None);
    }

    #[test]
    fn publication_copies_are_encoded_as_whole_headers_are() {
        let mut h = PublicationHeader {
            origin: "publisher".into(),
            epoch: u64::MAX - 3,
            seq: 300,
            topic: "t".repeat(200),
            hops_left: 6,
            targets: Vec::new(),
        };
        let data = [7u8; 70];
        let copies = crate::routed::PublicationCopies::new(&h, &data);
        let many: Vec<String> = (0..140).map(|i| format!("subscriber-{i}")).collect();
        let lists = [&[][..], &many[..1], &many[..3], &many[..], &many[5..7]];
        let made = copies.copies(lists.iter().copied());
        assert_eq!(made.len(), lists.len());
        for (targets, made) in lists.iter().zip(made) {
            h.targets = targets.to_vec();
            assert_eq!(made, encode_publication(&h, &data));
        }
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
