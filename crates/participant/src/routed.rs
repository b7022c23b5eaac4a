//! A routed publication's header as bytes, written and read by hand on
//! the hot path: written once for all the copies of a publication, read
//! without a copy of its names. The bytes are postcard's encoding of
//! [`PublicationHeader`] (see `PROTOCOL.md`): each field in order, a
//! string as its length and its UTF-8 bytes, integers as varints
//! (seven bits a byte, lowest first, the top bit set on every byte but
//! the last), `hops_left` as one byte, the targets last as their count
//! and each string. The tests hold both directions to postcard.

use bytes::{BufMut, Bytes, BytesMut};

use crate::control::{MAX_LIST, PUBLICATION_TAG, PublicationHeader};

/// The most bytes a varint of a `u64` takes.
const MAX_VARINT: usize = 10;

/// The copies of one routed publication, which differ only in their
/// targets: the tag and the header up to the targets are written once,
/// and every copy is written into one buffer that the copies share: one
/// allocation for all of them, as a PUBLICATION's copies share one body.
pub(crate) struct PublicationCopies<'a> {
    head: Vec<u8>,
    data: &'a [u8],
}

impl<'a> PublicationCopies<'a> {
    /// The copies of `h` (whose targets are left out) carrying `data`.
    pub(crate) fn new<S: AsRef<str>>(
        h: &PublicationHeader<S>,
        data: &'a [u8],
    ) -> PublicationCopies<'a> {
        let (origin, topic) = (h.origin.as_ref(), h.topic.as_ref());
        let mut head = Vec::with_capacity(
            PUBLICATION_TAG.len() + 4 * MAX_VARINT + origin.len() + topic.len() + 1,
        );
        head.extend_from_slice(&PUBLICATION_TAG);
        put_str(&mut head, origin);
        put_varint(&mut head, h.epoch);
        put_varint(&mut head, h.seq);
        put_str(&mut head, topic);
        head.push(h.hops_left);
        PublicationCopies { head, data }
    }

    /// One copy for each list of targets, in order.
    pub(crate) fn copies<'t, S: AsRef<str> + 't>(
        &self,
        targets: impl Iterator<Item = &'t [S]> + Clone,
    ) -> Vec<Bytes> {
        let size = |t: &[S]| {
            let names: usize = t.iter().map(|n| n.as_ref().len() + MAX_VARINT).sum();
            self.head.len() + MAX_VARINT + names + self.data.len()
        };
        let mut buf = BytesMut::with_capacity(targets.clone().map(size).sum());
        targets
            .map(|t| {
                buf.put_slice(&self.head);
                put_varint(&mut buf, t.len() as u64);
                for name in t {
                    put_str(&mut buf, name.as_ref());
                }
                buf.put_slice(self.data);
                buf.split().freeze()
            })
            .collect()
    }

    /// The copy naming no target, for a neighbour that is its only target
    /// and set [`FEATURE_UNNAMED`](crate::control::FEATURE_UNNAMED).
    pub(crate) fn unnamed(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.head.len() + 1 + self.data.len());
        buf.put_slice(&self.head);
        put_varint(&mut buf, 0);
        buf.put_slice(self.data);
        buf.freeze()
    }
}

/// `n` as a varint.
fn put_varint(buf: &mut impl BufMut, mut n: u64) {
    while n >= 0x80 {
        buf.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// `s` as its length and its bytes.
fn put_str(buf: &mut impl BufMut, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.put_slice(s.as_bytes());
}

/// The header at the start of `body` (what follows the tag), its names
/// borrowed from `body`, and how many bytes it took; `None` for bytes
/// that are not one, or that name more than [`MAX_LIST`] targets.
pub(crate) fn read_header(body: &[u8]) -> Option<(PublicationHeader<&str>, usize)> {
    let mut r = Reader { rest: body };
    let origin = r.str()?;
    let epoch = r.varint()?;
    let seq = r.varint()?;
    let topic = r.str()?;
    let hops_left = r.byte()?;
    let count = usize::try_from(r.varint()?).ok()?;
    // Every target takes at least a byte: a count past what is left is
    // refused before anything is allocated for it.
    if count > MAX_LIST || count > r.rest.len() {
        return None;
    }
    let mut targets = Vec::with_capacity(count);
    for _ in 0..count {
        targets.push(r.str()?);
    }
    let header = PublicationHeader {
        origin,
        epoch,
        seq,
        topic,
        hops_left,
        targets,
    };
    Some((header, body.len() - r.rest.len()))
}

/// Untrusted bytes, read from the front.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    /// A varint of a `u64`: at most ten bytes, the tenth holding only
    /// the top bit.
    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for i in 0..MAX_VARINT {
            let b = self.byte()?;
            if i == MAX_VARINT - 1 && b > 1 {
                return None;
            }
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.rest.len() {
            return None;
        }
        let (s, rest) = self.rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(targets: Vec<&str>) -> PublicationHeader<&str> {
        PublicationHeader {
            origin: "publisher",
            epoch: u64::MAX,
            seq: 300,
            topic: "news.ünïcode",
            hops_left: 7,
            targets,
        }
    }

    /// postcard's bytes of `h`, after the tag.
    fn postcard_body(h: &PublicationHeader<&str>) -> Vec<u8> {
        postcard::to_allocvec(h).unwrap()
    }

    #[test]
    fn the_copies_are_postcards_bytes_and_read_back_as_postcard_reads_them() {
        let long = "x".repeat(200);
        for targets in [vec![], vec!["a"], vec!["a", long.as_str(), "c"]] {
            let h = header(targets.clone());
            let copies = PublicationCopies::new(&h, b"data");
            let copy = if targets.is_empty() {
                copies.unnamed()
            } else {
                copies.copies(std::iter::once(&targets[..])).remove(0)
            };
            let body = postcard_body(&h);
            assert_eq!(&copy[..4], &PUBLICATION_TAG);
            assert_eq!(&copy[4..4 + body.len()], &body[..]);
            assert_eq!(&copy[4 + body.len()..], b"data");
            let (read, used) = read_header(&copy[4..]).unwrap();
            assert_eq!((read, used), (h, body.len()));
        }
    }

    #[test]
    fn bytes_that_postcard_refuses_are_refused_and_none_panics() {
        let body = postcard_body(&header(vec!["a", "bb"]));
        // Every cut: the header is incomplete.
        for end in 0..body.len() {
            assert_eq!(read_header(&body[..end]), None, "cut at {end}");
        }
        // Every byte changed to a few telling values: accepted exactly
        // when postcard accepts, and then read alike.
        for at in 0..body.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff, 0xc3] {
                let mut bad = body.clone();
                bad[at] = value;
                let ours = read_header(&bad);
                let theirs = postcard::take_from_bytes::<PublicationHeader<&str>>(&bad)
                    .ok()
                    .map(|(h, rest)| (h, bad.len() - rest.len()));
                assert_eq!(ours, theirs, "byte {at} set to {value:#04x}");
            }
        }
        // A count of targets no body could hold allocates nothing.
        let mut huge = postcard_body(&header(vec![]));
        huge.pop();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(read_header(&huge), None);
    }
}
