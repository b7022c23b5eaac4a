//! Arbitrary bytes through weft-messaging's frame parser (what a peer sends
//! after the length prefix): never a panic, and whatever parses encodes
//! back to bytes that parse to the same frame.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weft_messaging::internal::frame::Frame;

fuzz_target!(|input: &[u8]| {
    let Ok(frame) = Frame::parse(Bytes::copy_from_slice(input)) else {
        return;
    };
    let (head, body) = frame.encode();
    let mut bytes = head.as_slice().to_vec();
    bytes.extend_from_slice(&body);
    let again = Frame::parse(Bytes::from(bytes)).expect("an encoded frame parses");
    assert_eq!(again, frame);
});
