//! Typed topics: publishers and subscribers of a serde type, beside the
//! raw-bytes [`Publisher`] and [`Subscriber`].
//!
//! A value travels as its postcard encoding in the publication's payload,
//! so it is bounded as any publication is (by the packet limit,
//! [`PacketerConfig::max_packet`](weft_packeter::PacketerConfig::max_packet)),
//! and raw and typed publishers and subscribers of one topic meet: a typed
//! subscriber reads what a raw publisher sends when the bytes are that
//! type's encoding. A payload that is not is counted and reported as
//! [`ParticipantError::Undecodable`]; the subscriber goes on with the next
//! one.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_messaging::{Identity, TopicFilter};

use crate::{Participant, ParticipantError, Publication, Publisher, Subscriber};

impl Participant {
    /// A publisher of values of type `T` on `topic` (see [`typed`](crate::typed)).
    pub fn typed_publisher<T: Serialize>(
        &self,
        topic: impl Into<String>,
    ) -> Result<TypedPublisher<T>, ParticipantError> {
        Ok(TypedPublisher {
            raw: self.publisher(topic)?,
            _type: PhantomData,
        })
    }

    /// A subscriber to values of type `T` on the topics `filter` matches
    /// (see [`typed`](crate::typed)).
    pub fn typed_subscriber<T: DeserializeOwned>(&self, filter: TopicFilter) -> TypedSubscriber<T> {
        TypedSubscriber {
            raw: self.subscriber(filter),
            undecodable: AtomicU64::new(0),
            _type: PhantomData,
        }
    }
}

/// Publishes values of `T` on one topic (from
/// [`Participant::typed_publisher`]): a [`Publisher`] that encodes with
/// postcard.
pub struct TypedPublisher<T> {
    raw: Publisher,
    _type: PhantomData<fn(&T)>,
}

impl<T: Serialize> TypedPublisher<T> {
    /// Publishes `value`, as [`Publisher::publish`] publishes bytes;
    /// returns how many participants got a copy. Fails with
    /// [`ParticipantError::Encode`] when serde cannot encode it, or as
    /// `publish` fails (such as for a value whose encoding is larger than
    /// messaging's limit).
    pub fn publish(&self, value: &T) -> Result<usize, ParticipantError> {
        let bytes = postcard::to_allocvec(value).map_err(ParticipantError::Encode)?;
        self.raw.publish(bytes)
    }

    /// The raw publisher underneath: its topic, subscribers and waits.
    pub fn raw(&self) -> &Publisher {
        &self.raw
    }
}

impl<T> fmt::Debug for TypedPublisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPublisher")
            .field("topic", &self.raw.topic())
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// A publication of a typed topic, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypedPublication<T> {
    /// Its topic.
    pub topic: Arc<str>,
    /// The identity of the participant that published it.
    pub from: Identity,
    /// The value.
    pub value: T,
}

/// Receives values of `T` (from [`Participant::typed_subscriber`]): a
/// [`Subscriber`] that decodes with postcard. Dropping it withdraws its
/// interest.
pub struct TypedSubscriber<T> {
    raw: Subscriber,
    undecodable: AtomicU64,
    _type: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TypedSubscriber<T> {
    /// The next publication, decoded, waiting up to `timeout` (`None`:
    /// until the participant closes). A payload that is not an encoding of
    /// `T` (or has bytes after one) is taken, counted in
    /// [`undecodable`](Self::undecodable) and returned as
    /// [`ParticipantError::Undecodable`]; the next call goes on with the
    /// next publication. Otherwise fails as [`Subscriber::recv`] does.
    /// Cancel-safe.
    pub async fn recv(
        &self,
        timeout: Option<Duration>,
    ) -> Result<TypedPublication<T>, ParticipantError> {
        let publication = self.raw.recv(timeout).await?;
        self.decode(publication)
    }

    /// The next publication if one is waiting, decoded as
    /// [`recv`](Self::recv) decodes.
    pub fn try_recv(&self) -> Option<Result<TypedPublication<T>, ParticipantError>> {
        self.raw.try_recv().map(|p| self.decode(p))
    }

    fn decode(&self, p: Publication) -> Result<TypedPublication<T>, ParticipantError> {
        match decode_exact::<T>(&p.data) {
            Ok(value) => Ok(TypedPublication {
                topic: p.topic,
                from: p.from,
                value,
            }),
            Err(source) => {
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                Err(ParticipantError::Undecodable {
                    topic: p.topic,
                    from: p.from,
                    source,
                })
            }
        }
    }

    /// Publications taken that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// The raw subscriber underneath: its filter, queue length and drops.
    pub fn raw(&self) -> &Subscriber {
        &self.raw
    }
}

impl<T> fmt::Debug for TypedSubscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSubscriber")
            .field("filter", self.raw.filter())
            .field("type", &std::any::type_name::<T>())
            .field("undecodable", &self.undecodable.load(Ordering::Relaxed))
            .finish()
    }
}

/// `bytes` as one `T` and nothing after it: trailing bytes mean the
/// publisher sent another type.
fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes::<T>(bytes)? {
        (value, []) => Ok(value),
        (_, _) => Err(postcard::Error::DeserializeBadEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Reading {
        Temp { celsius: f32 },
        Door(bool),
    }

    #[test]
    fn a_value_decodes_exactly() {
        let bytes = postcard::to_allocvec(&Reading::Temp { celsius: 21.5 }).unwrap();
        assert_eq!(
            decode_exact::<Reading>(&bytes).unwrap(),
            Reading::Temp { celsius: 21.5 }
        );
    }

    #[test]
    fn trailing_bytes_and_bad_bytes_are_errors() {
        let mut bytes = postcard::to_allocvec(&Reading::Door(true)).unwrap();
        bytes.push(0);
        assert!(decode_exact::<Reading>(&bytes).is_err());
        // A variant index past the enum's end.
        assert!(decode_exact::<Reading>(&[7]).is_err());
        assert!(decode_exact::<Reading>(&[]).is_err());
    }
}
