//! weft-packeter: length-prefixed packets on top of weft-link's
//! connections; weft-messaging builds on it.
//!
//! A packet is a `u32` big-endian length and that many bytes (snakeMQ's
//! format; see `PROTOCOL.md`). Over UDP one datagram is one packet, with no
//! prefix.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_packeter::{PacketEvent, Packeter};
//!
//! let mut a = Packeter::new(Default::default(), Default::default());
//! let mut b = Packeter::new(Default::default(), Default::default());
//! let at = a.link().listen("tcp://127.0.0.1:0").await?.address;
//! b.link().connect(&at)?;
//!
//! let Some(PacketEvent::Connected(to_a)) = b.recv().await else { unreachable!() };
//! to_a.send(bytes::Bytes::from_static(b"packet")).await?;
//! let Some(PacketEvent::Connected(_)) = a.recv().await else { unreachable!() };
//! let Some(PacketEvent::Packet { data, .. }) = a.recv().await else { unreachable!() };
//! assert_eq!(&data[..], b"packet");
//! # Ok(()) }
//! ```
//!
//! - [`PacketDecoder`] is the sans-I/O decoder: chunks in, payloads out,
//!   zero-copy where a packet lies within one chunk, the length checked
//!   against the maximum before anything is allocated.
//! - [`PacketCodec`] frames any `AsyncRead + AsyncWrite` with tokio-util.
//! - [`Packeter`] runs packets over a [`weft_link::Link`]. Packets queued for
//!   one connection are coalesced into one write; each connection's queue is
//!   bounded: [`PacketSender::send`] waits for room, [`PacketSender::try_send`]
//!   fails when full. A peer that breaks the format (oversized length,
//!   truncated packet) gets its connection closed, counted in
//!   [`PacketStats`]; other connections are untouched.
//!
//! The root holds what most users name; the packet format itself (its
//! prefix length, the default maximum, [`encode`](codec::encode),
//! [`PacketError`](codec::PacketError)) is in [`codec`].

#![forbid(unsafe_code)]

pub mod codec;
mod packeter;

pub use codec::{PacketCodec, PacketDecoder};
pub use packeter::{
    MAX_HEAD, PacketDisconnect, PacketEvent, PacketSender, PacketStats, Packeter, PacketerConfig,
    PacketerError,
};
