//! The rendezvous protocol's frames: one frame per packeter packet,
//! `[version u8 = 1][type u8][fields]`, hand-encoded (see `PROTOCOL.md`).
//!
//! [`Frame::decode`] parses untrusted bytes with checked reads: every field
//! is bounds-checked before it is read, anything wrong is a typed
//! [`WireError`] naming the field, and nothing panics. The data of a
//! `RelayData` frame is a zero-copy slice of the packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use weft_messaging::Identity;

/// The protocol version this crate speaks, the first byte of every frame.
pub const VERSION: u8 = 1;

/// The most candidate addresses one `Candidates` frame carries.
pub const MAX_CANDIDATES: usize = 16;

/// Frame type bytes (the second byte of every frame).
mod kind {
    pub(super) const REGISTER: u8 = 0x01;
    pub(super) const REGISTERED: u8 = 0x02;
    pub(super) const REFUSED: u8 = 0x03;
    pub(super) const REACH: u8 = 0x04;
    pub(super) const UNREACHABLE: u8 = 0x05;
    pub(super) const CANDIDATES: u8 = 0x06;
    pub(super) const START: u8 = 0x07;
    pub(super) const RELAY_OPEN: u8 = 0x10;
    pub(super) const RELAY_DATA: u8 = 0x11;
    pub(super) const RELAY_WINDOW: u8 = 0x12;
    pub(super) const RELAY_CLOSE: u8 = 0x13;
}

/// A relay channel's number, chosen by the rendezvous, unique among its
/// open channels.
pub type ChannelId = u32;

/// Why the rendezvous refused or ended a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// Another connection holds the identity (and newer registrations do
    /// not replace older ones).
    Duplicate,
    /// The rendezvous holds as many registrations as it may.
    Full,
    /// A newer registration of the same identity replaced this one.
    Replaced,
    /// The connection broke the protocol.
    Protocol,
    /// The connection did not register in time.
    Timeout,
    /// The certificate of the connection does not name the identity.
    Unbound,
    /// A code this version does not know.
    Other(u8),
}

/// Why a `Reach`, `Candidates` or `Start` could not be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnreachableReason {
    /// The identity is our own.
    SelfReach,
    /// The identity is not registered.
    NotRegistered,
    /// Too many reaches wait for identities that have not registered.
    TooManyPending,
    /// One side has as many relay channels open as it may.
    TooManyChannels,
    /// The pair used up its relay byte cap.
    CapReached,
    /// Signalling between the pair is over its rate.
    RateLimited,
    /// A code this version does not know.
    Other(u8),
}

/// Why a relay channel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The other end closed it.
    Closed,
    /// The other end's registration ended.
    PeerGone,
    /// The pair used up its relay byte cap; messaging resends what was
    /// not acknowledged on the next path.
    CapReached,
    /// A side sent more than its window allowed.
    FlowViolation,
    /// The rendezvous's operator ended it.
    Operator,
    /// A code this version does not know.
    Other(u8),
}

/// How a candidate address is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CandidateTransport {
    /// TCP (simultaneous open or plain connect).
    Tcp,
    /// UDP (QUIC on a punched socket).
    Udp,
    /// A code this version does not know.
    Other(u8),
}

/// Where a candidate address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CandidateKind {
    /// An address of a local interface.
    Host,
    /// The address a server (the rendezvous, STUN) saw.
    Reflexive,
    /// A predicted NAT mapping.
    Predicted,
    /// The address a server saw, from a NAT whose mapping varies by
    /// destination (symmetric): its IP is the NAT's, its port is only the
    /// one that server saw. Code 4.
    Varies,
    /// A code this version does not know.
    Other(u8),
}

/// One address at which a peer may be reachable directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// TCP or UDP.
    pub transport: CandidateTransport,
    /// Host, reflexive or predicted.
    pub kind: CandidateKind,
    /// The address.
    pub addr: SocketAddr,
}

/// A rendezvous protocol frame, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Peer to rendezvous: register this connection as `identity`.
    Register {
        /// The identity claimed.
        identity: Identity,
    },
    /// Rendezvous to peer: registered; the address the rendezvous sees the
    /// connection come from (none for a Unix socket).
    Registered {
        /// The observed address.
        observed: Option<SocketAddr>,
        /// The port of a second STUN server on the IP of the rendezvous's
        /// STUN, when STUN has no RFC 5780 alternate address: a mapping
        /// that differs there varies by destination. Sent only when there
        /// is one (the frame ends after `observed` otherwise).
        second_stun: Option<u16>,
    },
    /// Rendezvous to peer: the registration was refused or ended; the
    /// connection is closed after it.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// Peer to rendezvous: open a relay channel to `peer` (at once when it
    /// is registered, else as soon as it registers).
    Reach {
        /// The identity to reach.
        peer: Identity,
    },
    /// Rendezvous to peer: a `Reach`, `Candidates` or `Start` for `peer`
    /// was not served.
    Unreachable {
        /// The identity named in the refused frame.
        peer: Identity,
        /// Why.
        reason: UnreachableReason,
    },
    /// Candidate addresses: from a peer, for `peer`; from the rendezvous,
    /// from `peer`.
    Candidates {
        /// The other side of the exchange.
        peer: Identity,
        /// At most [`MAX_CANDIDATES`] addresses.
        addrs: Vec<Candidate>,
    },
    /// A start signal for a direct attempt: from a peer, for `peer`; from
    /// the rendezvous, from `peer`. Both sides start attempt `attempt` of
    /// kind `strategy` `delay_ms` after they receive it.
    Start {
        /// The other side.
        peer: Identity,
        /// Chosen by the initiator; names the attempt in later signals.
        attempt: u32,
        /// What to try (the next slice's strategies; opaque to the
        /// rendezvous).
        strategy: u8,
        /// How long to wait before starting.
        delay_ms: u16,
    },
    /// Rendezvous to peer: relay channel `channel` to `peer` is open; each
    /// side may send `window` bytes on it before it is granted more.
    RelayOpen {
        /// The channel.
        channel: ChannelId,
        /// The identity at the other end.
        peer: Identity,
        /// The initial window, in bytes, in each direction.
        window: u32,
    },
    /// Either way: bytes of the channel's byte stream.
    RelayData {
        /// The channel.
        channel: ChannelId,
        /// The bytes (at least one).
        data: Bytes,
    },
    /// Either way: the sender accepts `credit` more bytes on the channel.
    RelayWindow {
        /// The channel.
        channel: ChannelId,
        /// More bytes the receiver of this frame may send.
        credit: u32,
    },
    /// Either way: the channel is closed.
    RelayClose {
        /// The channel.
        channel: ChannelId,
        /// Why.
        reason: CloseReason,
    },
}

/// A frame that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame ended inside a field.
    #[error("frame truncated in {field} at byte {at}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its offset.
        at: usize,
    },
    /// The first byte is not a version this crate speaks.
    #[error("unsupported version {0}")]
    Version(u8),
    /// The type byte names no frame.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// An identity is not valid UTF-8 or not a valid messaging identity.
    #[error("invalid identity at byte {at}")]
    Identity {
        /// Its offset.
        at: usize,
    },
    /// An address family byte is neither 4 nor 6 (nor 0 where an address
    /// is optional).
    #[error("invalid address family {family} at byte {at}")]
    Family {
        /// The byte.
        family: u8,
        /// Its offset.
        at: usize,
    },
    /// A `Candidates` frame lists more than [`MAX_CANDIDATES`].
    #[error("{0} candidates, more than {MAX_CANDIDATES}")]
    TooManyCandidates(usize),
    /// A `RelayData` frame carries no bytes.
    #[error("empty relay data")]
    EmptyData,
    /// Bytes follow the last field.
    #[error("{extra} bytes after the frame's last field")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

impl RefuseReason {
    /// A short lowercase name (`duplicate`, `full`, ...; `other` for an
    /// unknown code), as `weft rendezvous` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::Duplicate => "duplicate",
            RefuseReason::Full => "full",
            RefuseReason::Replaced => "replaced",
            RefuseReason::Protocol => "protocol",
            RefuseReason::Timeout => "timeout",
            RefuseReason::Unbound => "unbound",
            RefuseReason::Other(_) => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            RefuseReason::Duplicate => 1,
            RefuseReason::Full => 2,
            RefuseReason::Replaced => 3,
            RefuseReason::Protocol => 4,
            RefuseReason::Timeout => 5,
            RefuseReason::Unbound => 6,
            RefuseReason::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> RefuseReason {
        match c {
            1 => RefuseReason::Duplicate,
            2 => RefuseReason::Full,
            3 => RefuseReason::Replaced,
            4 => RefuseReason::Protocol,
            5 => RefuseReason::Timeout,
            6 => RefuseReason::Unbound,
            c => RefuseReason::Other(c),
        }
    }
}

impl UnreachableReason {
    /// A short lowercase name (`not registered`, `cap reached`, ...;
    /// `other` for an unknown code).
    pub fn as_str(self) -> &'static str {
        match self {
            UnreachableReason::SelfReach => "self",
            UnreachableReason::NotRegistered => "not registered",
            UnreachableReason::TooManyPending => "too many pending",
            UnreachableReason::TooManyChannels => "too many channels",
            UnreachableReason::CapReached => "cap reached",
            UnreachableReason::RateLimited => "rate limited",
            UnreachableReason::Other(_) => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            UnreachableReason::SelfReach => 1,
            UnreachableReason::NotRegistered => 2,
            UnreachableReason::TooManyPending => 3,
            UnreachableReason::TooManyChannels => 4,
            UnreachableReason::CapReached => 5,
            UnreachableReason::RateLimited => 6,
            UnreachableReason::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> UnreachableReason {
        match c {
            1 => UnreachableReason::SelfReach,
            2 => UnreachableReason::NotRegistered,
            3 => UnreachableReason::TooManyPending,
            4 => UnreachableReason::TooManyChannels,
            5 => UnreachableReason::CapReached,
            6 => UnreachableReason::RateLimited,
            c => UnreachableReason::Other(c),
        }
    }
}

impl CloseReason {
    /// A short lowercase name (`closed`, `cap reached`, ...; `other` for
    /// an unknown code), as `weft rendezvous` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Closed => "closed",
            CloseReason::PeerGone => "peer gone",
            CloseReason::CapReached => "cap reached",
            CloseReason::FlowViolation => "flow violation",
            CloseReason::Operator => "operator",
            CloseReason::Other(_) => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            CloseReason::Closed => 1,
            CloseReason::PeerGone => 2,
            CloseReason::CapReached => 3,
            CloseReason::FlowViolation => 4,
            CloseReason::Operator => 5,
            CloseReason::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> CloseReason {
        match c {
            1 => CloseReason::Closed,
            2 => CloseReason::PeerGone,
            3 => CloseReason::CapReached,
            4 => CloseReason::FlowViolation,
            5 => CloseReason::Operator,
            c => CloseReason::Other(c),
        }
    }
}

impl CandidateTransport {
    fn code(self) -> u8 {
        match self {
            CandidateTransport::Tcp => 1,
            CandidateTransport::Udp => 2,
            CandidateTransport::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> CandidateTransport {
        match c {
            1 => CandidateTransport::Tcp,
            2 => CandidateTransport::Udp,
            c => CandidateTransport::Other(c),
        }
    }
}

impl CandidateKind {
    fn code(self) -> u8 {
        match self {
            CandidateKind::Host => 1,
            CandidateKind::Reflexive => 2,
            CandidateKind::Predicted => 3,
            CandidateKind::Varies => 4,
            CandidateKind::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> CandidateKind {
        match c {
            1 => CandidateKind::Host,
            2 => CandidateKind::Reflexive,
            3 => CandidateKind::Predicted,
            4 => CandidateKind::Varies,
            c => CandidateKind::Other(c),
        }
    }
}

/// A checked reader over a frame's bytes.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(WireError::Truncated { field, at: self.at });
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn identity(&mut self) -> Result<Identity, WireError> {
        let len = self.u8("identity length")? as usize;
        let at = self.at;
        let raw = self.take(len, "identity")?;
        let text = std::str::from_utf8(raw).map_err(|_| WireError::Identity { at })?;
        Identity::new(text).map_err(|_| WireError::Identity { at })
    }

    /// An address; family 0 (none) only when `optional`.
    fn addr(&mut self, optional: bool) -> Result<Option<SocketAddr>, WireError> {
        let at = self.at;
        let ip = match self.u8("address family")? {
            0 if optional => return Ok(None),
            4 => {
                let b = self.take(4, "IPv4 address")?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(self.take(16, "IPv6 address")?);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            family => return Err(WireError::Family { family, at }),
        };
        let port = self.u16("port")?;
        Ok(Some(SocketAddr::new(ip, port)))
    }

    fn rest(&mut self) -> Bytes {
        let rest = self.bytes.slice(self.at..);
        self.at = self.bytes.len();
        rest
    }

    /// Whether every byte was read.
    fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn end(&self) -> Result<(), WireError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            extra => Err(WireError::Trailing { extra }),
        }
    }
}

fn put_identity(out: &mut BytesMut, identity: &Identity) {
    // An identity is at most 50 characters of UTF-8: at most 200 bytes.
    let raw = identity.as_str().as_bytes();
    out.put_u8(raw.len() as u8);
    out.put_slice(raw);
}

fn put_addr(out: &mut BytesMut, addr: Option<SocketAddr>) {
    match addr {
        None => out.put_u8(0),
        Some(SocketAddr::V4(a)) => {
            out.put_u8(4);
            out.put_slice(&a.ip().octets());
            out.put_u16(a.port());
        }
        Some(SocketAddr::V6(a)) => {
            out.put_u8(6);
            out.put_slice(&a.ip().octets());
            out.put_u16(a.port());
        }
    }
}

/// The bytes of a `RelayData` frame before its data, so that a sender can
/// send them as a head with the data as the body, uncopied
/// (`PacketSender::send_parts`).
pub fn relay_data_head(channel: ChannelId) -> [u8; 6] {
    let c = channel.to_be_bytes();
    [VERSION, kind::RELAY_DATA, c[0], c[1], c[2], c[3]]
}

impl Frame {
    /// Parses one frame (a whole packeter packet).
    pub fn decode(bytes: &Bytes) -> Result<Frame, WireError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let frame = match r.u8("type")? {
            kind::REGISTER => Frame::Register {
                identity: r.identity()?,
            },
            kind::REGISTERED => Frame::Registered {
                observed: r.addr(true)?,
                second_stun: if r.is_done() {
                    None
                } else {
                    Some(r.u16("second STUN port")?).filter(|p| *p != 0)
                },
            },
            kind::REFUSED => Frame::Refused {
                reason: RefuseReason::from_code(r.u8("reason")?),
            },
            kind::REACH => Frame::Reach {
                peer: r.identity()?,
            },
            kind::UNREACHABLE => Frame::Unreachable {
                peer: r.identity()?,
                reason: UnreachableReason::from_code(r.u8("reason")?),
            },
            kind::CANDIDATES => {
                let peer = r.identity()?;
                let count = r.u8("candidate count")? as usize;
                if count > MAX_CANDIDATES {
                    return Err(WireError::TooManyCandidates(count));
                }
                let mut addrs = Vec::with_capacity(count);
                for _ in 0..count {
                    let transport = CandidateTransport::from_code(r.u8("candidate transport")?);
                    let kind = CandidateKind::from_code(r.u8("candidate kind")?);
                    let addr = r.addr(false)?.expect("not optional");
                    addrs.push(Candidate {
                        transport,
                        kind,
                        addr,
                    });
                }
                Frame::Candidates { peer, addrs }
            }
            kind::START => Frame::Start {
                peer: r.identity()?,
                attempt: r.u32("attempt")?,
                strategy: r.u8("strategy")?,
                delay_ms: r.u16("delay")?,
            },
            kind::RELAY_OPEN => Frame::RelayOpen {
                channel: r.u32("channel")?,
                peer: r.identity()?,
                window: r.u32("window")?,
            },
            kind::RELAY_DATA => {
                let channel = r.u32("channel")?;
                let data = r.rest();
                if data.is_empty() {
                    return Err(WireError::EmptyData);
                }
                Frame::RelayData { channel, data }
            }
            kind::RELAY_WINDOW => Frame::RelayWindow {
                channel: r.u32("channel")?,
                credit: r.u32("credit")?,
            },
            kind::RELAY_CLOSE => Frame::RelayClose {
                channel: r.u32("channel")?,
                reason: CloseReason::from_code(r.u8("reason")?),
            },
            other => return Err(WireError::UnknownType(other)),
        };
        r.end()?;
        Ok(frame)
    }

    /// Encodes the frame. A `Candidates` frame is cut to
    /// [`MAX_CANDIDATES`] addresses.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(VERSION);
        match self {
            Frame::Register { identity } => {
                out.put_u8(kind::REGISTER);
                put_identity(&mut out, identity);
            }
            Frame::Registered {
                observed,
                second_stun,
            } => {
                out.put_u8(kind::REGISTERED);
                put_addr(&mut out, *observed);
                if let Some(port) = second_stun {
                    out.put_u16(*port);
                }
            }
            Frame::Refused { reason } => {
                out.put_u8(kind::REFUSED);
                out.put_u8(reason.code());
            }
            Frame::Reach { peer } => {
                out.put_u8(kind::REACH);
                put_identity(&mut out, peer);
            }
            Frame::Unreachable { peer, reason } => {
                out.put_u8(kind::UNREACHABLE);
                put_identity(&mut out, peer);
                out.put_u8(reason.code());
            }
            Frame::Candidates { peer, addrs } => {
                out.put_u8(kind::CANDIDATES);
                put_identity(&mut out, peer);
                let addrs = &addrs[..addrs.len().min(MAX_CANDIDATES)];
                out.put_u8(addrs.len() as u8);
                for c in addrs {
                    out.put_u8(c.transport.code());
                    out.put_u8(c.kind.code());
                    put_addr(&mut out, Some(c.addr));
                }
            }
            Frame::Start {
                peer,
                attempt,
                strategy,
                delay_ms,
            } => {
                out.put_u8(kind::START);
                put_identity(&mut out, peer);
                out.put_u32(*attempt);
                out.put_u8(*strategy);
                out.put_u16(*delay_ms);
            }
            Frame::RelayOpen {
                channel,
                peer,
                window,
            } => {
                out.put_u8(kind::RELAY_OPEN);
                out.put_u32(*channel);
                put_identity(&mut out, peer);
                out.put_u32(*window);
            }
            Frame::RelayData { channel, data } => {
                out.reserve(4 + data.len());
                out.put_u8(kind::RELAY_DATA);
                out.put_u32(*channel);
                out.put_slice(data);
            }
            Frame::RelayWindow { channel, credit } => {
                out.put_u8(kind::RELAY_WINDOW);
                out.put_u32(*channel);
                out.put_u32(*credit);
            }
            Frame::RelayClose { channel, reason } => {
                out.put_u8(kind::RELAY_CLOSE);
                out.put_u32(*channel);
                out.put_u8(reason.code());
            }
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::new(s).unwrap()
    }

    fn round_trip(frame: Frame) {
        let bytes = frame.encode();
        assert_eq!(Frame::decode(&bytes), Ok(frame));
    }

    #[test]
    fn every_frame_round_trips() {
        let v4: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        round_trip(Frame::Register {
            identity: id("alice"),
        });
        round_trip(Frame::Registered {
            observed: Some(v4),
            second_stun: None,
        });
        round_trip(Frame::Registered {
            observed: Some(v6),
            second_stun: Some(3479),
        });
        round_trip(Frame::Registered {
            observed: None,
            second_stun: None,
        });
        round_trip(Frame::Refused {
            reason: RefuseReason::Duplicate,
        });
        round_trip(Frame::Refused {
            reason: RefuseReason::Other(99),
        });
        round_trip(Frame::Reach { peer: id("bob") });
        round_trip(Frame::Unreachable {
            peer: id("bob"),
            reason: UnreachableReason::CapReached,
        });
        round_trip(Frame::Candidates {
            peer: id("bob"),
            addrs: vec![
                Candidate {
                    transport: CandidateTransport::Udp,
                    kind: CandidateKind::Reflexive,
                    addr: v4,
                },
                Candidate {
                    transport: CandidateTransport::Tcp,
                    kind: CandidateKind::Host,
                    addr: v6,
                },
            ],
        });
        round_trip(Frame::Start {
            peer: id("bob"),
            attempt: 7,
            strategy: 2,
            delay_ms: 150,
        });
        round_trip(Frame::RelayOpen {
            channel: 1,
            peer: id("bob"),
            window: 65536,
        });
        round_trip(Frame::RelayData {
            channel: 1,
            data: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::RelayWindow {
            channel: 1,
            credit: 4096,
        });
        round_trip(Frame::RelayClose {
            channel: 1,
            reason: CloseReason::CapReached,
        });
    }

    /// The byte examples of PROTOCOL.md.
    #[test]
    fn protocol_md_examples() {
        let register = Frame::Register {
            identity: id("bob"),
        }
        .encode();
        assert_eq!(&register[..], b"\x01\x01\x03bob");
        let registered = Frame::Registered {
            observed: Some("203.0.113.7:40000".parse().unwrap()),
            second_stun: None,
        }
        .encode();
        assert_eq!(
            &registered[..],
            &[0x01, 0x02, 0x04, 203, 0, 113, 7, 0x9c, 0x40]
        );
        let with_second = Frame::Registered {
            observed: Some("203.0.113.7:40000".parse().unwrap()),
            second_stun: Some(3479),
        }
        .encode();
        assert_eq!(
            &with_second[..],
            &[0x01, 0x02, 0x04, 203, 0, 113, 7, 0x9c, 0x40, 0x0d, 0x97]
        );
        let open = Frame::RelayOpen {
            channel: 1,
            peer: id("alice"),
            window: 65536,
        }
        .encode();
        assert_eq!(
            &open[..],
            b"\x01\x10\x00\x00\x00\x01\x05alice\x00\x01\x00\x00"
        );
        let data = Frame::RelayData {
            channel: 1,
            data: Bytes::from_static(b"hi"),
        }
        .encode();
        assert_eq!(&data[..], b"\x01\x11\x00\x00\x00\x01hi");
        assert_eq!(&data[..6], &relay_data_head(1));
        let refused = Frame::Refused {
            reason: RefuseReason::Duplicate,
        };
        assert_eq!(&refused.encode()[..], b"\x01\x03\x01");
        let reach = Frame::Reach { peer: id("bob") };
        assert_eq!(&reach.encode()[..], b"\x01\x04\x03bob");
        let window = Frame::RelayWindow {
            channel: 1,
            credit: 4096,
        };
        assert_eq!(
            &window.encode()[..],
            b"\x01\x12\x00\x00\x00\x01\x00\x00\x10\x00"
        );
        let close = Frame::RelayClose {
            channel: 1,
            reason: CloseReason::CapReached,
        };
        assert_eq!(&close.encode()[..], b"\x01\x13\x00\x00\x00\x01\x03");
        let candidates = Frame::Candidates {
            peer: id("a"),
            addrs: vec![Candidate {
                transport: CandidateTransport::Udp,
                kind: CandidateKind::Reflexive,
                addr: "203.0.113.7:40000".parse().unwrap(),
            }],
        };
        assert_eq!(
            &candidates.encode()[..],
            &[
                0x01, 0x06, 0x01, b'a', 0x01, 0x02, 0x02, 0x04, 203, 0, 113, 7, 0x9c, 0x40
            ]
        );
        // A symmetric NAT's mapping: kind 4, read back as such.
        let varies = Frame::Candidates {
            peer: id("a"),
            addrs: vec![Candidate {
                transport: CandidateTransport::Udp,
                kind: CandidateKind::Varies,
                addr: "203.0.113.7:40000".parse().unwrap(),
            }],
        };
        let bytes = varies.encode();
        assert_eq!(
            &bytes[..],
            &[
                0x01, 0x06, 0x01, b'a', 0x01, 0x02, 0x04, 0x04, 203, 0, 113, 7, 0x9c, 0x40
            ]
        );
        assert_eq!(Frame::decode(&bytes), Ok(varies));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let d = |b: &'static [u8]| Frame::decode(&Bytes::from_static(b));
        assert_eq!(
            d(b""),
            Err(WireError::Truncated {
                field: "version",
                at: 0
            })
        );
        assert_eq!(d(b"\x02\x01"), Err(WireError::Version(2)));
        assert_eq!(d(b"\x01\x7f"), Err(WireError::UnknownType(0x7f)));
        assert_eq!(
            d(b"\x01\x01\x09bob"),
            Err(WireError::Truncated {
                field: "identity",
                at: 3
            })
        );
        assert_eq!(
            d(b"\x01\x01\x02\xff\xfe"),
            Err(WireError::Identity { at: 3 })
        );
        assert_eq!(d(b"\x01\x01\x00"), Err(WireError::Identity { at: 3 }));
        assert_eq!(
            d(b"\x01\x02\x05"),
            Err(WireError::Family { family: 5, at: 2 })
        );
        assert_eq!(
            d(b"\x01\x06\x01b\x11"),
            Err(WireError::TooManyCandidates(17))
        );
        assert_eq!(d(b"\x01\x11\x00\x00\x00\x01"), Err(WireError::EmptyData));
        assert_eq!(
            d(b"\x01\x03\x01\x00"),
            Err(WireError::Trailing { extra: 1 })
        );
    }

    #[test]
    fn every_prefix_of_every_frame_fails_cleanly() {
        let frames = [
            Frame::Candidates {
                peer: id("bob"),
                addrs: vec![Candidate {
                    transport: CandidateTransport::Udp,
                    kind: CandidateKind::Host,
                    addr: "[2001:db8::1]:443".parse().unwrap(),
                }],
            },
            Frame::Start {
                peer: id("bob"),
                attempt: 1,
                strategy: 1,
                delay_ms: 1,
            },
            Frame::RelayOpen {
                channel: 9,
                peer: id("bob"),
                window: 1,
            },
        ];
        for frame in frames {
            let bytes = frame.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Frame::decode(&bytes.slice(..cut)).is_err(),
                    "{frame:?} cut at {cut}"
                );
            }
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn identity() -> impl Strategy<Value = Identity> {
            "[a-zA-Z0-9_.-]{1,50}".prop_map(|s| Identity::new(s).unwrap())
        }

        fn addr() -> impl Strategy<Value = SocketAddr> {
            prop_oneof![
                (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| (ip, port).into()),
                (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| (ip, port).into()),
            ]
        }

        fn candidate() -> impl Strategy<Value = Candidate> {
            (any::<u8>(), any::<u8>(), addr()).prop_map(|(t, k, addr)| Candidate {
                transport: CandidateTransport::from_code(t),
                kind: CandidateKind::from_code(k),
                addr,
            })
        }

        fn frame() -> impl Strategy<Value = Frame> {
            prop_oneof![
                identity().prop_map(|identity| Frame::Register { identity }),
                (proptest::option::of(addr()), proptest::option::of(1u16..)).prop_map(
                    |(observed, second_stun)| Frame::Registered {
                        observed,
                        second_stun
                    }
                ),
                any::<u8>().prop_map(|c| Frame::Refused {
                    reason: RefuseReason::from_code(c)
                }),
                identity().prop_map(|peer| Frame::Reach { peer }),
                (identity(), any::<u8>()).prop_map(|(peer, c)| Frame::Unreachable {
                    peer,
                    reason: UnreachableReason::from_code(c)
                }),
                (
                    identity(),
                    proptest::collection::vec(candidate(), 0..=MAX_CANDIDATES)
                )
                    .prop_map(|(peer, addrs)| Frame::Candidates { peer, addrs }),
                (identity(), any::<u32>(), any::<u8>(), any::<u16>()).prop_map(
                    |(peer, attempt, strategy, delay_ms)| Frame::Start {
                        peer,
                        attempt,
                        strategy,
                        delay_ms
                    }
                ),
                (any::<u32>(), identity(), any::<u32>()).prop_map(|(channel, peer, window)| {
                    Frame::RelayOpen {
                        channel,
                        peer,
                        window,
                    }
                }),
                (any::<u32>(), proptest::collection::vec(any::<u8>(), 1..512)).prop_map(
                    |(channel, data)| Frame::RelayData {
                        channel,
                        data: data.into()
                    }
                ),
                (any::<u32>(), any::<u32>())
                    .prop_map(|(channel, credit)| Frame::RelayWindow { channel, credit }),
                (any::<u32>(), any::<u8>()).prop_map(|(channel, c)| Frame::RelayClose {
                    channel,
                    reason: CloseReason::from_code(c)
                }),
            ]
        }

        proptest! {
            #[test]
            fn frames_round_trip(frame in frame()) {
                let bytes = frame.encode();
                prop_assert_eq!(Frame::decode(&bytes), Ok(frame));
            }

            /// Whatever parses is exactly what encodes back: one encoding
            /// per frame, and no byte of the input ignored.
            #[test]
            fn arbitrary_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
                let bytes = Bytes::from(bytes);
                if let Ok(frame) = Frame::decode(&bytes) {
                    prop_assert_eq!(frame.encode(), bytes);
                }
            }

            /// Valid frames with one byte changed or cut short.
            #[test]
            fn damaged_frames_fail_cleanly(frame in frame(), at in any::<usize>(), byte in any::<u8>()) {
                let mut bytes = frame.encode().to_vec();
                let at = at % bytes.len();
                bytes[at] = byte;
                let damaged = Bytes::from(bytes);
                if let Ok(frame) = Frame::decode(&damaged) {
                    prop_assert_eq!(frame.encode(), damaged.clone());
                }
                let _ = Frame::decode(&damaged.slice(..at));
            }
        }
    }
}
