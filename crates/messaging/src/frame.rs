//! The messaging frames: snakeMQ's protocol version 1 and weft's
//! extension frames. One frame per packet: `[u8 type][body]`. See
//! `PROTOCOL.md` for byte examples.
//!
//! Parsing takes the packet as [`Bytes`] and never copies a message's data:
//! [`Frame::Message`] holds a slice of the packet.

use bytes::{Buf, Bytes};

use crate::identity::IdentityError;
use crate::message::Flags;
use crate::{Identity, MessageId};

/// The messaging protocol version weft speaks (snakeMQ 1.6's).
pub const PROTOCOL_VERSION: u32 = 1;

/// The `ttl` field's value for "no TTL".
pub const INFINITE_TTL: u32 = 0xFFFF_FFFF;

/// The magic at the start of a weft HELLO frame's body.
pub const WEFT_MAGIC: &[u8; 4] = b"weft";

/// The version of weft's extension frames.
pub const EXTENSION_VERSION: u16 = 1;

/// Frame types on the wire.
pub mod kind {
    /// `[u32 version]`
    pub const VERSION: u8 = 0;
    /// empty: the peer's version is not supported
    pub const INCOMPATIBLE: u8 = 1;
    /// `[UTF-8 identity]`
    pub const IDENT: u8 = 2;
    /// `[uuid 16][ttl u32][flags u32][data]`
    pub const MESSAGE: u8 = 3;
    /// empty
    pub const PING: u8 = 4;
    /// empty
    pub const PONG: u8 = 5;
    /// weft: `["weft"][u16 extension version][u32 capabilities]`
    pub const HELLO: u8 = 0x80;
    /// weft: `[u64 messages received on this connection]`
    pub const ACK: u8 = 0x81;
    /// weft: `[u8 filter kind][UTF-8 filter]`
    pub const SUBSCRIBE: u8 = 0x82;
    /// weft: `[u8 filter kind][UTF-8 filter]`
    pub const UNSUBSCRIBE: u8 = 0x83;
    /// weft: a MESSAGE the sender may have sent before (see
    /// [`Frame::Message::resent`](super::Frame::Message)); same body as MESSAGE
    pub const RESENT: u8 = 0x84;
}

/// The size of a MESSAGE frame's header: type, uuid, ttl, flags.
pub const MESSAGE_HEAD_LEN: usize = 1 + 16 + 4 + 4;

/// Extension capabilities announced in HELLO.
pub mod caps {
    /// Delivery acks and resending after reconnects.
    pub const ACKS: u32 = 1;
    /// Publish/subscribe interest travelling to publishers.
    pub const PUBSUB: u32 = 2;
}

/// How a topic filter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterKind {
    /// The topic starts with the filter.
    Prefix,
    /// The regular expression matches the topic.
    Regex,
}

/// One frame, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// The sender's protocol version.
    Version(u32),
    /// The receiver of our VERSION does not speak it.
    Incompatible,
    /// The sender's identity.
    Ident(Identity),
    /// A message.
    Message {
        /// Its id.
        id: MessageId,
        /// Whole seconds left to live; `None` for no TTL.
        ttl: Option<u32>,
        /// Flags.
        flags: Flags,
        /// The payload: a slice of the packet.
        data: Bytes,
        /// weft: sent as a RESENT frame, because the sender may have sent
        /// it before (after a reconnect, or after loading it from storage);
        /// the receiver checks it for a duplicate. Only sent to weft peers
        /// that take acks.
        resent: bool,
    },
    /// Are you there?
    Ping,
    /// I am.
    Pong,
    /// weft: the sender speaks weft's extensions.
    Hello {
        /// Extension version.
        version: u16,
        /// Capability bits ([`caps`]).
        capabilities: u32,
    },
    /// weft: the sender has received this many MESSAGE frames on this
    /// connection, counted from its start.
    Ack(u64),
    /// weft: the sender wants published messages whose topic matches.
    Subscribe(FilterKind, String),
    /// weft: the sender no longer wants them.
    Unsubscribe(FilterKind, String),
    /// A frame type weft does not know: ignored, as snakeMQ does.
    Unknown(u8),
}

/// Why a packet is not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// An empty packet: not even a type.
    #[error("empty frame")]
    Empty,
    /// The body is shorter (or longer) than the frame type needs.
    #[error("{frame} frame has a {got}-byte body; it needs {need}")]
    BadLength {
        /// The frame type's name.
        frame: &'static str,
        /// What it needs.
        need: &'static str,
        /// What arrived.
        got: usize,
    },
    /// The IDENT frame's identity is invalid.
    #[error("bad identity: {0}")]
    Identity(#[from] IdentityError),
    /// A HELLO frame without weft's magic.
    #[error("HELLO frame without the weft magic")]
    BadMagic,
    /// A filter that is not UTF-8, or of an unknown kind.
    #[error("bad subscription filter")]
    BadFilter,
}

fn exact(
    frame: &'static str,
    need: &'static str,
    body: &[u8],
    len: usize,
) -> Result<(), FrameError> {
    if body.len() == len {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            frame,
            need,
            got: body.len(),
        })
    }
}

impl Frame {
    /// Parses one packet.
    pub fn parse(mut packet: Bytes) -> Result<Frame, FrameError> {
        if packet.is_empty() {
            return Err(FrameError::Empty);
        }
        let ty = packet.get_u8();
        let body = packet;
        Ok(match ty {
            kind::VERSION => {
                exact("VERSION", "4", &body, 4)?;
                Frame::Version(u32::from_be_bytes(body[..4].try_into().expect("4 bytes")))
            }
            kind::INCOMPATIBLE => Frame::Incompatible,
            kind::IDENT => Frame::Ident(Identity::from_bytes(&body)?),
            kind::MESSAGE | kind::RESENT => {
                if body.len() < MESSAGE_HEAD_LEN - 1 {
                    return Err(FrameError::BadLength {
                        frame: if ty == kind::MESSAGE {
                            "MESSAGE"
                        } else {
                            "RESENT"
                        },
                        need: "at least 24",
                        got: body.len(),
                    });
                }
                let id = MessageId(body[..16].try_into().expect("16 bytes"));
                let ttl = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes"));
                let flags = u32::from_be_bytes(body[20..24].try_into().expect("4 bytes"));
                // The packet's own handle becomes the data: no second one.
                let mut data = body;
                data.advance(24);
                Frame::Message {
                    id,
                    ttl: (ttl != INFINITE_TTL).then_some(ttl),
                    flags: Flags(flags),
                    data,
                    resent: ty == kind::RESENT,
                }
            }
            kind::PING => Frame::Ping,
            kind::PONG => Frame::Pong,
            kind::HELLO => {
                if body.len() < 10 {
                    return Err(FrameError::BadLength {
                        frame: "HELLO",
                        need: "at least 10",
                        got: body.len(),
                    });
                }
                if &body[..4] != WEFT_MAGIC {
                    return Err(FrameError::BadMagic);
                }
                Frame::Hello {
                    version: u16::from_be_bytes(body[4..6].try_into().expect("2 bytes")),
                    capabilities: u32::from_be_bytes(body[6..10].try_into().expect("4 bytes")),
                }
            }
            kind::ACK => {
                exact("ACK", "8", &body, 8)?;
                Frame::Ack(u64::from_be_bytes(body[..8].try_into().expect("8 bytes")))
            }
            kind::SUBSCRIBE | kind::UNSUBSCRIBE => {
                let (&k, filter) = body.split_first().ok_or(FrameError::BadFilter)?;
                let k = match k {
                    0 => FilterKind::Prefix,
                    1 => FilterKind::Regex,
                    _ => return Err(FrameError::BadFilter),
                };
                let filter = std::str::from_utf8(filter)
                    .map_err(|_| FrameError::BadFilter)?
                    .to_owned();
                if ty == kind::SUBSCRIBE {
                    Frame::Subscribe(k, filter)
                } else {
                    Frame::Unsubscribe(k, filter)
                }
            }
            other => Frame::Unknown(other),
        })
    }

    /// The frame as a head (copied into the packet) and a body (sent
    /// without a copy). Only MESSAGE and IDENT have bodies.
    pub fn encode(&self) -> (Head, Bytes) {
        let mut head = Head::default();
        let body = match self {
            Frame::Version(v) => {
                head.push(&[kind::VERSION]);
                head.push(&v.to_be_bytes());
                Bytes::new()
            }
            Frame::Incompatible => {
                head.push(&[kind::INCOMPATIBLE]);
                Bytes::new()
            }
            Frame::Ident(id) => {
                head.push(&[kind::IDENT]);
                Bytes::copy_from_slice(id.as_str().as_bytes())
            }
            Frame::Message {
                id,
                ttl,
                flags,
                data,
                resent,
            } => {
                head = message_head(id, *ttl, *flags, *resent);
                data.clone()
            }
            Frame::Ping => {
                head.push(&[kind::PING]);
                Bytes::new()
            }
            Frame::Pong => {
                head.push(&[kind::PONG]);
                Bytes::new()
            }
            Frame::Hello {
                version,
                capabilities,
            } => {
                head.push(&[kind::HELLO]);
                head.push(WEFT_MAGIC);
                head.push(&version.to_be_bytes());
                head.push(&capabilities.to_be_bytes());
                Bytes::new()
            }
            Frame::Ack(n) => {
                head.push(&[kind::ACK]);
                head.push(&n.to_be_bytes());
                Bytes::new()
            }
            Frame::Subscribe(k, f) | Frame::Unsubscribe(k, f) => {
                let ty = if matches!(self, Frame::Subscribe(..)) {
                    kind::SUBSCRIBE
                } else {
                    kind::UNSUBSCRIBE
                };
                head.push(&[ty, matches!(k, FilterKind::Regex) as u8]);
                Bytes::copy_from_slice(f.as_bytes())
            }
            Frame::Unknown(t) => {
                head.push(&[*t]);
                Bytes::new()
            }
        };
        (head, body)
    }
}

/// A MESSAGE (or, `resent`, a RESENT) frame's 25-byte head.
pub fn message_head(id: &MessageId, ttl: Option<u32>, flags: Flags, resent: bool) -> Head {
    let mut head = Head::default();
    head.push(&[if resent { kind::RESENT } else { kind::MESSAGE }]);
    head.push(&id.0);
    head.push(&ttl.unwrap_or(INFINITE_TTL).to_be_bytes());
    head.push(&flags.0.to_be_bytes());
    head
}

/// A frame's head: at most 32 bytes, kept on the stack.
#[derive(Clone, Copy, Default)]
pub struct Head {
    buf: [u8; 32],
    len: usize,
}

impl Head {
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Head({:02x?})", self.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(f: &Frame) -> Vec<u8> {
        let (head, body) = f.encode();
        [head.as_slice(), &body].concat()
    }

    #[test]
    fn byte_examples() {
        assert_eq!(wire(&Frame::Version(1)), [0, 0, 0, 0, 1]);
        assert_eq!(wire(&Frame::Incompatible), [1]);
        assert_eq!(
            wire(&Frame::Ident(Identity::new("bob").unwrap())),
            b"\x02bob"
        );
        assert_eq!(wire(&Frame::Ping), [4]);
        assert_eq!(wire(&Frame::Pong), [5]);
        let m = Frame::Message {
            id: MessageId([0xAB; 16]),
            ttl: Some(60),
            flags: Flags::PERSISTENT,
            data: Bytes::from_static(b"hi"),
            resent: false,
        };
        let mut expected = vec![3];
        expected.extend([0xAB; 16]);
        expected.extend([0, 0, 0, 60, 0, 0, 0, 1]);
        expected.extend(b"hi");
        assert_eq!(wire(&m), expected);
        let Frame::Message {
            id,
            ttl,
            flags,
            data,
            ..
        } = m
        else {
            unreachable!()
        };
        let resent = Frame::Message {
            id,
            ttl,
            flags,
            data,
            resent: true,
        };
        expected[0] = 0x84;
        assert_eq!(wire(&resent), expected);
        let forever = Frame::Message {
            id: MessageId([0; 16]),
            ttl: None,
            flags: Flags::default(),
            data: Bytes::new(),
            resent: false,
        };
        assert_eq!(&wire(&forever)[17..21], [0xFF; 4]);
        assert_eq!(
            wire(&Frame::Hello {
                version: 1,
                capabilities: 3
            }),
            b"\x80weft\x00\x01\x00\x00\x00\x03"
        );
        assert_eq!(wire(&Frame::Ack(258)), [0x81, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            wire(&Frame::Subscribe(FilterKind::Prefix, "news.".into())),
            b"\x82\x00news."
        );
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let parse = |b: &'static [u8]| Frame::parse(Bytes::from_static(b));
        assert_eq!(parse(b""), Err(FrameError::Empty));
        assert!(matches!(
            parse(b"\x00\x00\x01"),
            Err(FrameError::BadLength {
                frame: "VERSION",
                ..
            })
        ));
        assert!(matches!(
            parse(b"\x03short"),
            Err(FrameError::BadLength {
                frame: "MESSAGE",
                ..
            })
        ));
        assert!(matches!(
            parse(b"\x84short"),
            Err(FrameError::BadLength {
                frame: "RESENT",
                ..
            })
        ));
        assert!(matches!(
            parse(b"\x02\xff"),
            Err(FrameError::Identity(IdentityError::NotUtf8))
        ));
        assert!(matches!(
            parse(b"\x02"),
            Err(FrameError::Identity(IdentityError::Empty))
        ));
        let long: &'static [u8] = Box::leak([&[2u8][..], &[b'a'; 51]].concat().into_boxed_slice());
        assert!(matches!(
            parse(long),
            Err(FrameError::Identity(IdentityError::TooLong { chars: 51 }))
        ));
        assert_eq!(
            parse(b"\x80nope\x00\x01\x00\x00\x00\x00"),
            Err(FrameError::BadMagic)
        );
        assert_eq!(parse(b"\x82\x07x"), Err(FrameError::BadFilter));
        assert_eq!(parse(b"\x42whatever"), Ok(Frame::Unknown(0x42)));
    }

    #[test]
    fn message_data_is_a_slice_of_the_packet() {
        let packet = Bytes::from(wire(&Frame::Message {
            id: MessageId([1; 16]),
            ttl: None,
            flags: Flags(0),
            data: Bytes::from_static(b"payload"),
            resent: false,
        }));
        let Ok(Frame::Message { data, .. }) = Frame::parse(packet.clone()) else {
            panic!()
        };
        assert_eq!(data.as_ptr(), packet[25..].as_ptr());
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            any::<u32>().prop_map(Frame::Version),
            Just(Frame::Incompatible),
            "[a-zA-Z0-9ž]{1,50}".prop_map(|s| Frame::Ident(Identity::new(s).unwrap())),
            (
                any::<[u8; 16]>(),
                any::<Option<u32>>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..100),
                any::<bool>(),
            )
                .prop_map(|(id, ttl, flags, data, resent)| Frame::Message {
                    id: MessageId(id),
                    ttl: ttl.filter(|t| *t != INFINITE_TTL),
                    flags: Flags(flags),
                    data: Bytes::from(data),
                    resent,
                }),
            Just(Frame::Ping),
            Just(Frame::Pong),
            (any::<u16>(), any::<u32>()).prop_map(|(version, capabilities)| Frame::Hello {
                version,
                capabilities
            }),
            any::<u64>().prop_map(Frame::Ack),
            ".{0,20}".prop_map(|f| Frame::Subscribe(FilterKind::Regex, f)),
            ".{0,20}".prop_map(|f| Frame::Unsubscribe(FilterKind::Prefix, f)),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(frame in any_frame()) {
            prop_assert_eq!(Frame::parse(Bytes::from(wire(&frame))).unwrap(), frame);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::parse(Bytes::from(bytes));
        }
    }
}
