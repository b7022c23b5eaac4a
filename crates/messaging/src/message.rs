//! Messages: an id, data, a time to live and flags.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// A message's 16-byte id (a random UUID unless given).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A random version-4 UUID.
    pub fn random() -> MessageId {
        let mut b = fastrand::u128(..).to_be_bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        MessageId(b)
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(32);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Message flags, as on the wire (a `u32`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// Bit 0: the sender keeps the message in persistent storage until it is
    /// delivered (snakeMQ's `FLAG_PERSISTENT`).
    pub const PERSISTENT: Flags = Flags(1);
    /// Bit 8 (weft patterns): a request expecting a reply.
    pub const REQUEST: Flags = Flags(1 << 8);
    /// Bit 9 (weft patterns): a reply; the data starts with the request's
    /// 16-byte id.
    pub const REPLY: Flags = Flags(1 << 9);
    /// Bit 10 (weft patterns): a pushed work item.
    pub const PUSH: Flags = Flags(1 << 10);
    /// Bit 11 (weft patterns): a publication; the data starts with
    /// `[u8 topic length][topic]`.
    pub const PUBLISH: Flags = Flags(1 << 11);
    /// Bit 12 (weft): the message travels on the data lane (see [`Lane`]).
    pub const DATA_LANE: Flags = Flags(1 << 12);

    /// The pattern this message belongs to.
    pub fn kind(self) -> Kind {
        if self.contains(Flags::REPLY) {
            Kind::Reply
        } else if self.contains(Flags::REQUEST) {
            Kind::Request
        } else if self.contains(Flags::PUSH) {
            Kind::Push
        } else if self.contains(Flags::PUBLISH) {
            Kind::Publish
        } else {
            Kind::Plain
        }
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Which pattern a message belongs to, from its [`Flags`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An ordinary message (all a snakeMQ peer sends).
    Plain,
    /// A request ([`Messaging::request`](crate::Messaging::request)).
    Request,
    /// A reply to a request; never delivered to queues.
    Reply,
    /// A pushed work item ([`Pusher`](crate::patterns::Pusher)).
    Push,
    /// A publication ([`Messaging::publish`](crate::Messaging::publish)).
    Publish,
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// Which lane of a connection a message travels on.
///
/// Over `quic://` a connection has lanes that do not wait for each other:
/// the control lane (the connection's first stream) and, opened when the
/// first message for it is sent, a data lane (another stream of the same
/// QUIC connection; see weft-link's `Link::open_lane`). Large messages on
/// the data lane hold up neither small ones on the control lane nor,
/// when a packet is lost, anything but themselves. Messages keep their
/// order within a lane, not across lanes; each lane is acknowledged, and
/// resent after a reconnect, on its own. Transports without lanes (TCP,
/// TLS, Unix, UDP) carry both lanes on their one connection.
///
/// ```
/// use weft_messaging::{Lane, Message};
/// let bulk = Message::new(vec![0u8; 1 << 20]).on_lane(Lane::Data);
/// assert_eq!(bulk.lane(), Lane::Data);
/// assert_eq!(Message::new("small").lane(), Lane::Control);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The connection's first stream: where messages go unless told
    /// otherwise, and where the protocol's own frames go.
    #[default]
    Control,
    /// A lane of its own for bulk: [`Flags::DATA_LANE`] on the message.
    Data,
}

/// A message: what [`send_message`](crate::Messaging::send_message) queues
/// and what peers receive.
///
/// ```
/// use std::time::Duration;
/// use weft_messaging::Message;
/// let m = Message::new("hello").with_ttl(Duration::from_secs(30)).persistent();
/// assert!(m.is_persistent());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The id; receivers use it to drop duplicates.
    pub id: MessageId,
    /// The payload.
    pub data: Bytes,
    /// How long the message may wait before it is written; `None` waits
    /// forever. Whole seconds on the wire (rounded down).
    pub ttl: Option<Duration>,
    /// Flags, such as [`Flags::PERSISTENT`].
    pub flags: Flags,
}

impl Message {
    /// A message with a random id, no TTL and no flags.
    pub fn new(data: impl Into<Bytes>) -> Message {
        Message {
            id: MessageId::random(),
            data: data.into(),
            ttl: None,
            flags: Flags::default(),
        }
    }

    /// Sets the time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Message {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: MessageId) -> Message {
        self.id = id;
        self
    }

    /// Marks the message persistent.
    pub fn persistent(mut self) -> Message {
        self.flags = self.flags | Flags::PERSISTENT;
        self
    }

    /// Whether the message is persistent.
    pub fn is_persistent(&self) -> bool {
        self.flags.contains(Flags::PERSISTENT)
    }

    /// Sends the message on `lane` (see [`Lane`]); a received message
    /// tells the lane it was sent on.
    pub fn on_lane(mut self, lane: Lane) -> Message {
        self.flags = match lane {
            Lane::Control => Flags(self.flags.0 & !Flags::DATA_LANE.0),
            Lane::Data => self.flags | Flags::DATA_LANE,
        };
        self
    }

    /// The lane the message is sent on.
    pub fn lane(&self) -> Lane {
        if self.flags.contains(Flags::DATA_LANE) {
            Lane::Data
        } else {
            Lane::Control
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_v4_uuids_and_differ() {
        let a = MessageId::random();
        let b = MessageId::random();
        assert_ne!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 0b10);
        assert_eq!(a.to_hex().len(), 32);
    }
}
