//! The packet format and its sans-I/O decoder.
//!
//! A packet is a `u32` big-endian length followed by that many bytes of
//! payload (snakeMQ's format). `00 00 00 03 61 62 63` is the packet `abc`;
//! `00 00 00 00` is an empty packet.
//!
//! [`PacketDecoder`] takes the chunks a stream delivers, in any sizes, and
//! returns whole payloads. Payloads that lie entirely inside one chunk are
//! returned as slices of it, without a copy; only a packet split across
//! chunks is gathered into a buffer. That buffer grows with the bytes that
//! arrive (geometrically, never past the packet), not with the length the
//! prefix announces, and only after the length was checked against the
//! maximum: a prefix alone cannot make a decoder hold memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The length prefix's size in bytes.
pub const HEADER_LEN: usize = 4;

/// The default largest payload: 16 MiB.
pub const DEFAULT_MAX_PACKET: usize = 16 << 20;

/// The least a buffer for a split packet grows by. Packets up to this size
/// get one allocation of exactly their size; larger ones double as their
/// bytes arrive, so copying stays linear and a buffer is never more than
/// about twice what arrived.
const GROWTH_STEP: usize = 64 << 10;

/// How much more room to reserve in a buffer holding `len` bytes of a
/// packet of `need` bytes, for `more` bytes about to arrive: `more`, or
/// (to double) `len`, or [`GROWTH_STEP`], whichever is largest, but no
/// more than the packet's rest.
fn growth(len: usize, more: usize, need: usize) -> usize {
    more.max(len).max(GROWTH_STEP).min(need.saturating_sub(len))
}

/// Why a byte stream is not a valid packet stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A length prefix announced more than the configured maximum. Nothing
    /// was allocated for it.
    #[error("packet of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced payload length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended inside a packet.
    #[error("stream ended inside a packet: {have} of {need} bytes received")]
    Truncated {
        /// Bytes of the packet (prefix included) that did arrive.
        have: usize,
        /// Bytes the packet needed (prefix included; 4 when the prefix itself
        /// was cut).
        need: usize,
    },
}

/// The length prefix for a payload of `len` bytes.
///
/// # Panics
/// If `len` does not fit in a `u32`; [`PacketDecoder`]'s maximum and the
/// senders' checks keep payloads far below that.
#[inline]
pub fn header(len: usize) -> [u8; HEADER_LEN] {
    u32::try_from(len)
        .expect("packet length fits in u32")
        .to_be_bytes()
}

/// Appends one encoded packet to `dst`.
pub fn encode(payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_slice(&header(payload.len()));
    dst.put_slice(payload);
}

/// Turns chunks of a byte stream into packet payloads. Free of I/O.
///
/// ```
/// use bytes::Bytes;
/// use weft_packeter::PacketDecoder;
/// let mut decoder = PacketDecoder::new(1024);
/// let mut out = Vec::new();
/// decoder.decode_chunk(Bytes::from_static(b"\0\0\0\x02hi\0\0"), &mut out)?;
/// decoder.decode_chunk(Bytes::from_static(b"\0\x01!"), &mut out)?;
/// assert_eq!(out, [Bytes::from_static(b"hi"), Bytes::from_static(b"!")]);
/// decoder.finish()?; // nothing left over
/// # Ok::<(), weft_packeter::codec::PacketError>(())
/// ```
#[derive(Debug)]
pub struct PacketDecoder {
    max: usize,
    /// A packet (prefix included) split across chunks.
    partial: BytesMut,
    /// The partial packet's full size, once its prefix is known.
    need: Option<usize>,
}

impl PacketDecoder {
    /// A decoder that rejects payloads over `max_packet` bytes.
    pub fn new(max_packet: usize) -> PacketDecoder {
        PacketDecoder {
            max: max_packet.min(u32::MAX as usize),
            partial: BytesMut::new(),
            need: None,
        }
    }

    /// The configured maximum payload.
    pub fn max_packet(&self) -> usize {
        self.max
    }

    /// Bytes held of a packet not yet complete.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    fn check(&self, len: u32) -> Result<usize, PacketError> {
        let len = len as usize;
        if len > self.max {
            return Err(PacketError::TooLarge {
                len: len as u64,
                max: self.max,
            });
        }
        Ok(HEADER_LEN + len)
    }

    /// Decodes what `chunk` completes, pushing payloads onto `out`. Returns
    /// how many were pushed. After an error the stream is unusable.
    pub fn decode_chunk(
        &mut self,
        mut chunk: Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<usize, PacketError> {
        let before = out.len();
        if !self.partial.is_empty() {
            if self.need.is_none() {
                let take = (HEADER_LEN - self.partial.len()).min(chunk.len());
                self.partial.extend_from_slice(&chunk[..take]);
                chunk.advance(take);
                if self.partial.len() < HEADER_LEN {
                    return Ok(0);
                }
                let len =
                    u32::from_be_bytes(self.partial[..HEADER_LEN].try_into().expect("4 bytes"));
                self.need = Some(self.check(len)?);
            }
            let need = self.need.expect("set above");
            let len = self.partial.len();
            let take = (need - len).min(chunk.len());
            if self.partial.capacity() - len < take {
                self.partial.reserve(growth(len, take, need));
            }
            self.partial.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
            if self.partial.len() < need {
                return Ok(0);
            }
            // The whole buffer goes with the packet; the next split packet
            // starts a new one.
            let mut packet = std::mem::take(&mut self.partial).freeze();
            packet.advance(HEADER_LEN);
            out.push(packet);
            self.need = None;
        }
        while chunk.len() >= HEADER_LEN {
            let len = u32::from_be_bytes(chunk[..HEADER_LEN].try_into().expect("4 bytes"));
            let need = self.check(len)?;
            if chunk.len() < need {
                self.partial.reserve(growth(0, chunk.len(), need));
                self.need = Some(need);
                break;
            }
            out.push(chunk.slice(HEADER_LEN..need));
            chunk.advance(need);
        }
        if !chunk.is_empty() {
            self.partial.extend_from_slice(&chunk);
        }
        Ok(out.len() - before)
    }

    /// Checks that the stream ended on a packet boundary.
    pub fn finish(&self) -> Result<(), PacketError> {
        if self.partial.is_empty() {
            Ok(())
        } else {
            Err(PacketError::Truncated {
                have: self.partial.len(),
                need: self.need.unwrap_or(HEADER_LEN),
            })
        }
    }
}

/// [`tokio_util::codec`] framing with the same format, for packets over any
/// `AsyncRead + AsyncWrite` (`Framed::new(stream, PacketCodec::new(max))`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), std::io::Error> {
/// use futures_util::{SinkExt, StreamExt};
/// use tokio_util::codec::Framed;
/// use weft_packeter::PacketCodec;
/// let (a, b) = tokio::io::duplex(1024);
/// let mut a = Framed::new(a, PacketCodec::new(1024));
/// let mut b = Framed::new(b, PacketCodec::new(1024));
/// a.send(bytes::Bytes::from_static(b"hello")).await?;
/// assert_eq!(&b.next().await.unwrap()?[..], b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PacketCodec {
    max: usize,
    need: Option<usize>,
}

impl PacketCodec {
    /// A codec that rejects payloads over `max_packet` bytes.
    pub fn new(max_packet: usize) -> PacketCodec {
        PacketCodec {
            max: max_packet.min(u32::MAX as usize),
            need: None,
        }
    }
}

impl Default for PacketCodec {
    fn default() -> PacketCodec {
        PacketCodec::new(DEFAULT_MAX_PACKET)
    }
}

fn io_error(e: PacketError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl tokio_util::codec::Decoder for PacketCodec {
    type Item = Bytes;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, std::io::Error> {
        let need = match self.need {
            Some(n) => n,
            None => {
                if src.len() < HEADER_LEN {
                    return Ok(None);
                }
                let len =
                    u32::from_be_bytes(src[..HEADER_LEN].try_into().expect("4 bytes")) as usize;
                if len > self.max {
                    return Err(io_error(PacketError::TooLarge {
                        len: len as u64,
                        max: self.max,
                    }));
                }
                let need = HEADER_LEN + len;
                self.need = Some(need);
                need
            }
        };
        if src.len() < need {
            // Room for the next reads, not for the whole announced packet.
            src.reserve(growth(src.len(), 0, need));
            return Ok(None);
        }
        self.need = None;
        let mut packet = src.split_to(need).freeze();
        packet.advance(HEADER_LEN);
        Ok(Some(packet))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, std::io::Error> {
        match self.decode(src)? {
            Some(p) => Ok(Some(p)),
            None if src.is_empty() => Ok(None),
            None => Err(io_error(PacketError::Truncated {
                have: src.len(),
                need: self.need.unwrap_or(HEADER_LEN),
            })),
        }
    }
}

impl<T: AsRef<[u8]>> tokio_util::codec::Encoder<T> for PacketCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let payload = item.as_ref();
        if payload.len() > self.max {
            return Err(io_error(PacketError::TooLarge {
                len: payload.len() as u64,
                max: self.max,
            }));
        }
        encode(payload, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut b = BytesMut::new();
        for p in payloads {
            encode(p, &mut b);
        }
        b.to_vec()
    }

    fn decode_in_pieces(
        stream: &[u8],
        cuts: &[usize],
        max: usize,
    ) -> Result<Vec<Bytes>, PacketError> {
        let mut d = PacketDecoder::new(max);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(start, stream.len());
            d.decode_chunk(Bytes::copy_from_slice(&stream[start..cut]), &mut out)?;
            start = cut;
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn byte_examples() {
        assert_eq!(encoded(&[b"abc".to_vec()]), b"\x00\x00\x00\x03abc");
        assert_eq!(encoded(&[vec![]]), b"\x00\x00\x00\x00");
    }

    #[test]
    fn one_byte_at_a_time() {
        let payloads = vec![b"hello".to_vec(), vec![], vec![9; 300]];
        let stream = encoded(&payloads);
        let cuts: Vec<usize> = (1..stream.len()).collect();
        let out = decode_in_pieces(&stream, &cuts, 1000).unwrap();
        assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), payloads);
    }

    #[test]
    fn many_packets_in_one_chunk_are_slices_of_it() {
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; i as usize]).collect();
        let chunk = Bytes::from(encoded(&payloads));
        let mut d = PacketDecoder::new(1000);
        let mut out = Vec::new();
        assert_eq!(d.decode_chunk(chunk.clone(), &mut out).unwrap(), 100);
        assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), payloads);
        let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        assert!(
            out.iter()
                .filter(|p| !p.is_empty())
                .all(|p| range.contains(&(p.as_ptr() as usize)))
        );
    }

    #[test]
    fn zero_length_packets() {
        let out = decode_in_pieces(b"\0\0\0\0\0\0\0\0", &[2, 5], 10).unwrap();
        assert_eq!(out, [Bytes::new(), Bytes::new()]);
    }

    #[test]
    fn the_limit_is_checked_before_allocating() {
        let mut d = PacketDecoder::new(10);
        let mut out = Vec::new();
        // Exactly the maximum is fine.
        d.decode_chunk(Bytes::from(encoded(&[vec![1; 10]])), &mut out)
            .unwrap();
        // A 4 GiB announcement fails at once, whole or split, with no allocation.
        let err = d
            .decode_chunk(Bytes::from_static(b"\xff\xff\xff\xff"), &mut out)
            .unwrap_err();
        assert_eq!(
            err,
            PacketError::TooLarge {
                len: u32::MAX as u64,
                max: 10
            }
        );
        let mut d = PacketDecoder::new(10);
        d.decode_chunk(Bytes::from_static(b"\xff\xff"), &mut out)
            .unwrap();
        assert!(
            d.decode_chunk(Bytes::from_static(b"\xff\xff"), &mut out)
                .is_err()
        );
        assert!(
            d.partial.capacity() < 64,
            "no buffer was sized from the bad length"
        );
        assert_eq!(
            decode_in_pieces(&encoded(&[vec![0; 11]]), &[], 10),
            Err(PacketError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn an_announced_length_alone_reserves_little() {
        // A prefix announcing a 16 MiB packet and then 1 byte, in every way
        // the 5 bytes can arrive.
        let mut five = header(DEFAULT_MAX_PACKET).to_vec();
        five.push(1);
        for cuts in [&[][..], &[4], &[2, 4], &[1, 2, 3, 4]] {
            let mut d = PacketDecoder::new(DEFAULT_MAX_PACKET);
            let mut out = Vec::new();
            let mut start = 0;
            for &cut in cuts.iter().chain([&five.len()]) {
                d.decode_chunk(Bytes::copy_from_slice(&five[start..cut]), &mut out)
                    .unwrap();
                start = cut;
            }
            assert!(out.is_empty());
            assert_eq!(d.buffered(), 5);
            assert!(
                d.partial.capacity() <= GROWTH_STEP,
                "{} bytes held for 5 that arrived (cuts {cuts:?})",
                d.partial.capacity()
            );
            assert!(d.finish().is_err());
        }

        use tokio_util::codec::Decoder;
        let mut codec = PacketCodec::default();
        let mut src = BytesMut::from(&five[..]);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() < 1 << 20, "{}", src.capacity());
    }

    #[test]
    fn a_large_packet_in_pieces_decodes_exactly_in_a_buffer_that_grows() {
        let payload: Vec<u8> = (0..8usize << 20).map(|i| (i * 31 % 251) as u8).collect();
        let mut stream = encoded(&[payload.clone(), b"after".to_vec()]);
        stream.extend_from_slice(&header(3)); // a next packet's start
        let mut d = PacketDecoder::new(DEFAULT_MAX_PACKET);
        let mut out = Vec::new();
        let sizes = [1, 3, 4093, 65_536, 100_003, 1 << 20];
        let mut start = 0;
        for size in sizes.iter().cycle() {
            if start == stream.len() {
                break;
            }
            let end = (start + size).min(stream.len());
            d.decode_chunk(Bytes::copy_from_slice(&stream[start..end]), &mut out)
                .unwrap();
            start = end;
            // Never much more than what arrived.
            assert!(
                d.partial.capacity() <= 4 * d.buffered().max(GROWTH_STEP),
                "{} bytes held for {}",
                d.partial.capacity(),
                d.buffered()
            );
        }
        assert_eq!(out.len(), 2);
        assert!(out[0] == payload, "the 8 MiB payload decodes exactly");
        assert_eq!(out[1], Bytes::from_static(b"after"));
        assert_eq!(d.buffered(), 4);
    }

    #[test]
    fn truncation_is_reported() {
        assert_eq!(
            decode_in_pieces(b"\0\0\0\x05ab", &[], 10),
            Err(PacketError::Truncated { have: 6, need: 9 })
        );
        assert_eq!(
            decode_in_pieces(b"\0\0", &[], 10),
            Err(PacketError::Truncated { have: 2, need: 4 })
        );
    }

    #[test]
    fn codec_agrees_with_the_decoder() {
        use tokio_util::codec::{Decoder, Encoder};
        let mut codec = PacketCodec::new(100);
        let mut buf = BytesMut::new();
        codec.encode(b"one".as_slice(), &mut buf).unwrap();
        codec.encode(Bytes::new(), &mut buf).unwrap();
        assert!(codec.encode(vec![0u8; 101], &mut buf).is_err());
        buf.extend_from_slice(b"\0\0");
        assert_eq!(
            codec.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"one")
        );
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), Bytes::new());
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(codec.decode_eof(&mut buf).is_err());
        let mut big = BytesMut::from(&b"\0\0\x01\0"[..]);
        assert!(codec.decode(&mut big).is_err());
    }

    proptest! {
        #[test]
        fn round_trip_with_any_cuts(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..20),
            cuts in proptest::collection::vec(0usize..15_000, 0..30),
        ) {
            let stream = encoded(&payloads);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let out = decode_in_pieces(&stream, &cuts, 600).unwrap();
            prop_assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), payloads);
        }

        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..10)) {
            let mut d = PacketDecoder::new(256);
            let mut out = Vec::new();
            for c in chunks {
                if d.decode_chunk(Bytes::from(c), &mut out).is_err() {
                    break;
                }
            }
            let _ = d.finish();
        }
    }
}
