//! The attach protocol: a postcard header per packet, then raw payload
//! bytes (see `PROTOCOL.md`).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::control::FilterSpec;

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    Subscribe {
        sub: u32,
        filter: FilterSpec,
    },
    Unsubscribe {
        sub: u32,
    },
    Advertise {
        publisher: u32,
        topic: String,
    },
    Withdraw {
        publisher: u32,
    },
    /// The payload follows the header.
    Publish {
        publisher: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Reply {
    Welcome {
        identity: String,
    },
    /// The payload follows the header.
    Publication {
        sub: u32,
        topic: String,
        from: String,
    },
    Failed {
        text: String,
    },
}

pub(super) fn frame<T: Serialize>(header: &T, tail: &[u8]) -> Bytes {
    let head = postcard::to_stdvec(header).expect("encoding to a Vec does not fail");
    let mut b = BytesMut::with_capacity(head.len() + tail.len());
    b.extend_from_slice(&head);
    b.extend_from_slice(tail);
    b.freeze()
}

pub(super) fn unframe<'de, T: Deserialize<'de>>(data: &'de Bytes) -> Option<(T, Bytes)> {
    let (t, rest) = postcard::take_from_bytes::<T>(data).ok()?;
    let start = data.len() - rest.len();
    Some((t, data.slice(start..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let b = frame(&Request::Publish { publisher: 7 }, b"data");
        let (r, tail) = unframe::<Request>(&b).unwrap();
        assert!(matches!(r, Request::Publish { publisher: 7 }));
        assert_eq!(&tail[..], b"data");
        assert!(unframe::<Request>(&Bytes::from_static(&[0xff, 0xff])).is_none());
    }
}
