//! Arbitrary bytes through weft-rpc's frame parser (what a peer puts in
//! MESSAGE data): never a panic, `peek` agrees with `parse`, and whatever
//! parses encodes to bytes that parse to the same frame. Each input is
//! also tried behind the frame tag, which a fuzzer would seldom guess.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_rpc::wire::{self, Frame, TAG};

fn check(data: &[u8]) {
    let peeked = wire::peek(data);
    let Ok(frame) = Frame::parse(data) else {
        return;
    };
    assert!(wire::is_rpc(data));
    let id = match &frame {
        Frame::Call(call) => Some(call.id),
        Frame::Result(reply) => Some(reply.id),
        Frame::Cancel { id } => Some(*id),
        _ => None,
    };
    assert_eq!(peeked, Some((frame.kind(), id)));
    let bytes = frame.encode();
    let again = Frame::parse(&bytes).expect("an encoded frame parses");
    assert_eq!(again, frame);
    // What parses is at least as long as its canonical encoding.
    assert!(bytes.len() <= data.len());
}

fuzz_target!(|input: &[u8]| {
    check(input);
    let mut tagged = TAG.to_vec();
    tagged.extend_from_slice(input);
    check(&tagged);
});
