//! The wire format: RPC frames inside MESSAGE data (see `PROTOCOL.md`).
//!
//! A frame is [`TAG`], a [`FrameKind`] byte, then a postcard body. [`Frame`]
//! is a borrowed view parsed from untrusted bytes: names and arguments point
//! into the message data, nothing is copied, and nothing in it is ever
//! executed. [`Frame::encode`] writes a frame; the crate's own hot path
//! writes the same bytes without copying the payload.
//!
//! ```
//! use weft_rpc::wire::{Call, Frame};
//!
//! let call = Frame::Call(Call {
//!     id: 7,
//!     object: "calc",
//!     method: "add",
//!     deadline_ms: 5000,
//!     args: &[2, 4],
//! });
//! let bytes = call.encode();
//! assert_eq!(
//!     bytes,
//!     b"\xF7rpc\x01\x07\x04calc\x03add\x88\x27\x02\x02\x04".to_vec()
//! );
//! assert_eq!(Frame::parse(&bytes)?, call);
//! # Ok::<(), weft_rpc::wire::WireError>(())
//! ```

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize, Serializer};

use crate::RemoteError;

/// The four bytes every RPC frame starts with. `0xF7` never starts UTF-8
/// text, so plain text messages are never mistaken for RPC frames.
pub const TAG: [u8; 4] = [0xF7, b'r', b'p', b'c'];

/// The longest object or method name, in bytes.
pub const MAX_NAME: usize = 255;

/// What a frame is: the byte after [`TAG`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// 1: a call that expects a result.
    Call,
    /// 2: the result of a call.
    Result,
    /// 3: the caller gave up on a call.
    Cancel,
    /// 4: a call without a result.
    Signal,
}

impl FrameKind {
    /// The kind's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Call => 1,
            FrameKind::Result => 2,
            FrameKind::Cancel => 3,
            FrameKind::Signal => 4,
        }
    }

    /// The kind of a byte, if known.
    pub fn from_code(code: u8) -> Option<FrameKind> {
        Some(match code {
            1 => FrameKind::Call,
            2 => FrameKind::Result,
            3 => FrameKind::Cancel,
            4 => FrameKind::Signal,
            _ => return None,
        })
    }
}

fn bytes_field<S: Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// CALL: run `object.method(args)` and answer with a RESULT of the same id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call<'a> {
    /// The caller's id for this call, unique per caller; a repeated id is
    /// the same call sent again.
    pub id: u64,
    /// The object's name.
    pub object: &'a str,
    /// The method's name.
    pub method: &'a str,
    /// How long the server may work on it, in milliseconds from when it
    /// arrives (relative: the peers' clocks may differ).
    pub deadline_ms: u32,
    /// The postcard-encoded arguments.
    #[serde(serialize_with = "bytes_field")]
    pub args: &'a [u8],
}

/// RESULT: how a call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply<'a> {
    /// The call's id.
    pub id: u64,
    /// The encoded return value, or the error.
    #[serde(borrow)]
    pub outcome: Outcome<'a>,
}

/// A RESULT's outcome (postcard encodes it as `Result<bytes, RemoteError>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<'a> {
    /// Variant 0: the postcard-encoded return value.
    Ok(#[serde(serialize_with = "bytes_field")] &'a [u8]),
    /// Variant 1: the call failed.
    Err(RemoteError),
}

/// SIGNAL: run `object.method(args)`, answer nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal<'a> {
    /// The object's name.
    pub object: &'a str,
    /// The method's name.
    pub method: &'a str,
    /// The postcard-encoded arguments.
    #[serde(serialize_with = "bytes_field")]
    pub args: &'a [u8],
}

/// One RPC frame, borrowed from the message data it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// A call expecting a result.
    Call(Call<'a>),
    /// A call's result.
    Result(Reply<'a>),
    /// The caller stopped waiting for call `id`.
    Cancel {
        /// The call's id.
        id: u64,
    },
    /// A call without a result.
    Signal(Signal<'a>),
}

/// Why bytes are not a valid RPC frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The data does not start with [`TAG`].
    #[error("not an RPC frame")]
    NotRpc,
    /// The data ends after the tag.
    #[error("RPC frame without a kind")]
    Truncated,
    /// A frame kind this version does not know.
    #[error("unknown RPC frame kind {0}")]
    UnknownKind(u8),
    /// The body does not decode.
    #[error("malformed {kind:?} frame: {source}")]
    Malformed {
        /// The frame's kind.
        kind: FrameKind,
        /// Why postcard could not decode it.
        #[source]
        source: postcard::Error,
    },
    /// An object or method name longer than [`MAX_NAME`].
    #[error("name of {0} bytes; the limit is 255")]
    NameTooLong(usize),
}

/// Whether `data` starts with [`TAG`].
pub fn is_rpc(data: &[u8]) -> bool {
    data.starts_with(&TAG)
}

/// The kind and, for CALL, RESULT and CANCEL, the id of a frame, read
/// without decoding the rest (used to answer frames whose body is bad).
pub fn peek(data: &[u8]) -> Option<(FrameKind, Option<u64>)> {
    let rest = data.strip_prefix(&TAG)?;
    let (&code, body) = rest.split_first()?;
    let kind = FrameKind::from_code(code)?;
    let id = match kind {
        FrameKind::Signal => None,
        _ => postcard::take_from_bytes::<u64>(body)
            .ok()
            .map(|(id, _)| id),
    };
    Some((kind, id))
}

fn check_name(name: &str) -> Result<(), WireError> {
    if name.len() > MAX_NAME {
        return Err(WireError::NameTooLong(name.len()));
    }
    Ok(())
}

impl<'a> Frame<'a> {
    /// Parses a frame. Bytes after the body are ignored (room for fields
    /// added later).
    pub fn parse(data: &'a [u8]) -> Result<Frame<'a>, WireError> {
        let rest = data.strip_prefix(&TAG).ok_or(WireError::NotRpc)?;
        let (&code, body) = rest.split_first().ok_or(WireError::Truncated)?;
        let kind = FrameKind::from_code(code).ok_or(WireError::UnknownKind(code))?;
        let bad = |source: postcard::Error| WireError::Malformed { kind, source };
        Ok(match kind {
            FrameKind::Call => {
                let (call, _) = postcard::take_from_bytes::<Call<'a>>(body).map_err(bad)?;
                check_name(call.object)?;
                check_name(call.method)?;
                Frame::Call(call)
            }
            FrameKind::Result => {
                Frame::Result(postcard::take_from_bytes::<Reply<'a>>(body).map_err(bad)?.0)
            }
            FrameKind::Cancel => Frame::Cancel {
                id: postcard::take_from_bytes::<u64>(body).map_err(bad)?.0,
            },
            FrameKind::Signal => {
                let (signal, _) = postcard::take_from_bytes::<Signal<'a>>(body).map_err(bad)?;
                check_name(signal.object)?;
                check_name(signal.method)?;
                Frame::Signal(signal)
            }
        })
    }

    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Call(_) => FrameKind::Call,
            Frame::Result(_) => FrameKind::Result,
            Frame::Cancel { .. } => FrameKind::Cancel,
            Frame::Signal(_) => FrameKind::Signal,
        }
    }

    /// The frame's bytes: [`TAG`], the kind, the postcard body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&TAG);
        out.push(self.kind().code());
        let out = match self {
            Frame::Call(c) => postcard::to_extend(c, out),
            Frame::Result(r) => postcard::to_extend(r, out),
            Frame::Cancel { id } => postcard::to_extend(id, out),
            Frame::Signal(s) => postcard::to_extend(s, out),
        };
        // Writing to a Vec only fails for values serde cannot describe with
        // a known length; frames have none.
        out.unwrap_or_default()
    }
}

/// The most bytes a varint of a `u64` takes.
const VARINT_MAX: usize = 10;

/// The headroom a RESULT's header needs before an `Ok` payload.
pub(crate) const REPLY_HEADROOM: usize = TAG.len() + 1 + VARINT_MAX + 1 + VARINT_MAX;

/// The headroom a CALL's header needs before its arguments.
pub(crate) fn call_headroom(object: &str, method: &str) -> usize {
    TAG.len()
        + 1
        + VARINT_MAX
        + (VARINT_MAX + object.len())
        + (VARINT_MAX + method.len())
        + 5
        + VARINT_MAX
}

/// The headroom a SIGNAL's header needs before its arguments.
pub(crate) fn signal_headroom(object: &str, method: &str) -> usize {
    TAG.len() + 1 + (VARINT_MAX + object.len()) + (VARINT_MAX + method.len()) + VARINT_MAX
}

/// Room reserved for an encoded value beyond its headroom, so that small
/// values are written without growing the buffer.
const VALUE_ROOM: usize = 128;

/// A postcard value written after free room for a frame header, so the
/// header can be put in front without copying the value.
#[derive(Debug)]
pub(crate) struct Body {
    buf: Vec<u8>,
    start: usize,
}

/// postcard's output: appended to a `Vec` (which already holds the
/// headroom), byte slices copied at once.
struct VecOut(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecOut {
    type Output = Vec<u8>;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

impl Body {
    /// Encodes `value` after `headroom` free bytes.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        headroom: usize,
        value: &T,
    ) -> Result<Body, postcard::Error> {
        let mut buf = Vec::with_capacity(headroom + VALUE_ROOM);
        buf.resize(headroom, 0);
        let buf = postcard::serialize_with_flavor(value, VecOut(buf))?;
        Ok(Body {
            buf,
            start: headroom,
        })
    }

    /// Copies already encoded bytes after `headroom` free bytes.
    pub(crate) fn raw(headroom: usize, bytes: &[u8]) -> Body {
        let mut buf = Vec::with_capacity(headroom + bytes.len());
        buf.resize(headroom, 0);
        buf.extend_from_slice(bytes);
        Body {
            buf,
            start: headroom,
        }
    }

    /// The value's length.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The value's bytes.
    pub(crate) fn value(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Writes the header with `header` (back to front, see [`Front`]) right
    /// before the value and hands out header + value.
    fn finish(mut self, header: impl Fn(&mut Front<'_>)) -> Bytes {
        let mut front = Front::new(&mut self.buf[..self.start]);
        header(&mut front);
        if let Some(at) = front.done() {
            let mut frame = Bytes::from(self.buf);
            frame.advance(at);
            return frame;
        }
        // Not enough room (never with the headroom functions above): build
        // the frame again with room for the longest header.
        let mut body = Body::raw(HEADER_MAX, self.value());
        let mut front = Front::new(&mut body.buf[..body.start]);
        header(&mut front);
        let at = front.done().unwrap_or(0);
        let mut frame = Bytes::from(body.buf);
        frame.advance(at);
        frame
    }
}

/// The longest frame header: tag, kind, four varints and two names.
const HEADER_MAX: usize = TAG.len() + 1 + 4 * VARINT_MAX + 2 * (VARINT_MAX + MAX_NAME);

/// Writes a frame header back to front into the headroom before a value,
/// its last field first, so that it ends right where the value starts.
struct Front<'a> {
    room: &'a mut [u8],
    at: usize,
    fits: bool,
}

impl<'a> Front<'a> {
    fn new(room: &'a mut [u8]) -> Front<'a> {
        let at = room.len();
        Front {
            room,
            at,
            fits: true,
        }
    }

    /// Where the header starts, if it fit.
    fn done(self) -> Option<usize> {
        self.fits.then_some(self.at)
    }

    /// Puts `bytes` before what is written so far.
    fn put(&mut self, bytes: &[u8]) {
        match self.at.checked_sub(bytes.len()) {
            Some(at) if self.fits => {
                self.room[at..self.at].copy_from_slice(bytes);
                self.at = at;
            }
            _ => self.fits = false,
        }
    }

    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }

    fn varint(&mut self, mut v: u64) {
        let mut tmp = [0u8; VARINT_MAX];
        let mut n = 0;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                tmp[n] = byte;
                n += 1;
                break;
            }
            tmp[n] = byte | 0x80;
            n += 1;
        }
        self.put(&tmp[..n]);
    }

    /// A name: its length, then its bytes (written in reverse order).
    /// Names are checked against [`MAX_NAME`] before a frame is built;
    /// should one be longer, it is cut rather than panicking, and the peer
    /// rejects the frame.
    fn name(&mut self, name: &str) {
        let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
        self.put(name);
        self.varint(name.len() as u64);
    }

    /// The tag and the kind, which start every frame.
    fn start(&mut self, kind: FrameKind) {
        self.byte(kind.code());
        self.put(&TAG);
    }
}

/// A CALL frame around encoded arguments.
pub(crate) fn call_frame(
    id: u64,
    object: &str,
    method: &str,
    deadline_ms: u32,
    args: Body,
) -> Bytes {
    let len = args.len() as u64;
    args.finish(|h| {
        h.varint(len);
        h.varint(u64::from(deadline_ms));
        h.name(method);
        h.name(object);
        h.varint(id);
        h.start(FrameKind::Call);
    })
}

/// A SIGNAL frame around encoded arguments.
pub(crate) fn signal_frame(object: &str, method: &str, args: Body) -> Bytes {
    let len = args.len() as u64;
    args.finish(|h| {
        h.varint(len);
        h.name(method);
        h.name(object);
        h.start(FrameKind::Signal);
    })
}

/// A RESULT frame around an encoded return value.
pub(crate) fn ok_frame(id: u64, value: Body) -> Bytes {
    let len = value.len() as u64;
    value.finish(|h| {
        h.varint(len);
        h.byte(0); // Ok
        h.varint(id);
        h.start(FrameKind::Result);
    })
}

/// A RESULT frame carrying an error.
pub(crate) fn err_frame(id: u64, error: &RemoteError) -> Bytes {
    Bytes::from(
        Frame::Result(Reply {
            id,
            outcome: Outcome::Err(error.clone()),
        })
        .encode(),
    )
}

/// A CANCEL frame.
pub(crate) fn cancel_frame(id: u64) -> Bytes {
    Bytes::from(Frame::Cancel { id }.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemoteErrorKind;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z.]{0,40}"
    }

    proptest! {
        #[test]
        fn fast_call_matches_postcard(id: u64, object in name(), method in name(),
                                      deadline_ms: u32, args: Vec<u8>) {
            let fast = call_frame(id, &object, &method, deadline_ms,
                Body::raw(call_headroom(&object, &method), &args));
            let reference = Frame::Call(Call { id, object: &object, method: &method, deadline_ms, args: &args });
            prop_assert_eq!(&fast[..], &reference.encode()[..]);
            prop_assert_eq!(Frame::parse(&fast).unwrap(), reference);
        }

        #[test]
        fn fast_signal_and_ok_match_postcard(id: u64, object in name(), method in name(), args: Vec<u8>) {
            let fast = signal_frame(&object, &method, Body::raw(signal_headroom(&object, &method), &args));
            let reference = Frame::Signal(Signal { object: &object, method: &method, args: &args });
            prop_assert_eq!(&fast[..], &reference.encode()[..]);
            prop_assert_eq!(Frame::parse(&fast).unwrap(), reference);

            let fast = ok_frame(id, Body::raw(REPLY_HEADROOM, &args));
            let reference = Frame::Result(Reply { id, outcome: Outcome::Ok(&args) });
            prop_assert_eq!(&fast[..], &reference.encode()[..]);
            prop_assert_eq!(Frame::parse(&fast).unwrap(), reference);
        }

        #[test]
        fn frames_without_headroom_are_built_all_the_same(id: u64, object in name(), method in name(),
                                                          deadline_ms: u32, args: Vec<u8>) {
            let fast = call_frame(id, &object, &method, deadline_ms, Body::raw(3, &args));
            let reference = Frame::Call(Call { id, object: &object, method: &method, deadline_ms, args: &args });
            prop_assert_eq!(&fast[..], &reference.encode()[..]);
            let fast = ok_frame(id, Body::raw(0, &args));
            let reference = Frame::Result(Reply { id, outcome: Outcome::Ok(&args) });
            prop_assert_eq!(&fast[..], &reference.encode()[..]);
        }

        #[test]
        fn encoded_bodies_are_postcard(headroom in 0usize..64, bytes: Vec<u8>, text in ".{0,300}", n: i64) {
            let value = (bytes, text, n);
            let body = Body::encode(headroom, &value).unwrap();
            prop_assert_eq!(body.value(), &postcard::to_allocvec(&value).unwrap()[..]);
            prop_assert_eq!(body.len(), body.value().len());
        }

        #[test]
        fn errors_round_trip(id: u64, message in ".{0,50}", context in proptest::collection::vec(".{0,20}", 0..4)) {
            let mut e = RemoteError::new(RemoteErrorKind::Application, "my::Error", message);
            e.context = context;
            let bytes = err_frame(id, &e);
            prop_assert_eq!(Frame::parse(&bytes).unwrap(), Frame::Result(Reply { id, outcome: Outcome::Err(e) }));
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>, kind in 0u8..6) {
            let mut frame = TAG.to_vec();
            frame.push(kind);
            frame.extend_from_slice(&data);
            let _ = Frame::parse(&frame);
            let _ = peek(&frame);
        }
    }

    /// The examples in `PROTOCOL.md`.
    #[test]
    fn protocol_examples() {
        let args = postcard::to_allocvec(&(2i32, 3i32)).unwrap();
        let call = Frame::Call(Call {
            id: 7,
            object: "calc",
            method: "add",
            deadline_ms: 5000,
            args: &args,
        });
        assert_eq!(
            call.encode(),
            b"\xf7rpc\x01\x07\x04calc\x03add\x88\x27\x02\x04\x06"
        );
        let five = postcard::to_allocvec(&5i32).unwrap();
        let ok = Frame::Result(Reply {
            id: 7,
            outcome: Outcome::Ok(&five),
        });
        assert_eq!(ok.encode(), b"\xf7rpc\x02\x07\x00\x01\x0a");
        let mut e = RemoteError::new(RemoteErrorKind::Application, "app::Neg", "neg");
        e.context.push("io".into());
        let err = Frame::Result(Reply {
            id: 8,
            outcome: Outcome::Err(e),
        });
        assert_eq!(
            err.encode(),
            b"\xf7rpc\x02\x08\x01\x00\x08app::Neg\x03neg\x01\x02io"
        );
        assert_eq!(Frame::Cancel { id: 7 }.encode(), b"\xf7rpc\x03\x07");
        let args = postcard::to_allocvec(&5u32).unwrap();
        let signal = Frame::Signal(Signal {
            object: "log",
            method: "note",
            args: &args,
        });
        assert_eq!(signal.encode(), b"\xf7rpc\x04\x03log\x04note\x01\x05");
    }

    #[test]
    fn cancel_and_peek() {
        let c = cancel_frame(300);
        assert_eq!(&c[..], b"\xF7rpc\x03\xac\x02");
        assert_eq!(Frame::parse(&c).unwrap(), Frame::Cancel { id: 300 });
        assert_eq!(peek(&c), Some((FrameKind::Cancel, Some(300))));
    }

    #[test]
    fn bad_frames_are_typed() {
        assert_eq!(Frame::parse(b"hello"), Err(WireError::NotRpc));
        assert_eq!(Frame::parse(b"\xF7rpc"), Err(WireError::Truncated));
        assert_eq!(Frame::parse(b"\xF7rpc\x09"), Err(WireError::UnknownKind(9)));
        assert!(matches!(
            Frame::parse(b"\xF7rpc\x01\x05\xff"),
            Err(WireError::Malformed {
                kind: FrameKind::Call,
                ..
            })
        ));
        assert_eq!(
            peek(b"\xF7rpc\x01\x05\xff"),
            Some((FrameKind::Call, Some(5)))
        );
        let long = "x".repeat(MAX_NAME + 1);
        let frame = Frame::Call(Call {
            id: 1,
            object: &long,
            method: "m",
            deadline_ms: 1,
            args: &[],
        })
        .encode();
        assert_eq!(
            Frame::parse(&frame),
            Err(WireError::NameTooLong(MAX_NAME + 1))
        );
    }

    #[test]
    fn unknown_error_kinds_survive() {
        let mut e = RemoteError::new(RemoteErrorKind::Other(77), "t", "m");
        e.context.push("c".into());
        let bytes = err_frame(1, &e);
        let Frame::Result(Reply {
            outcome: Outcome::Err(back),
            ..
        }) = Frame::parse(&bytes).unwrap()
        else {
            panic!("not an error result")
        };
        assert_eq!(back.kind, RemoteErrorKind::Other(77));
    }
}
