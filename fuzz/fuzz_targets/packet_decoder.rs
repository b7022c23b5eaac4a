//! Arbitrary bytes, cut into arbitrary chunks, through the packet decoder:
//! it must never panic, never return more bytes than it was given, and
//! agree with the tokio-util codec on every stream both accept.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use weft_packeter::{PacketCodec, PacketDecoder};

/// Decodes a whole stream with the codec; None when the codec rejects it.
fn decode_with_codec(stream: &[u8], max: usize) -> Option<Vec<Vec<u8>>> {
    let mut codec = PacketCodec::new(max);
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(p)) => out.push(p.to_vec()),
            Ok(None) => return Some(out),
            Err(_) => return None,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let max = 1 + seed as usize * 16;
    let step = 1 + seed as usize % 13;
    let mut decoder = PacketDecoder::new(max);
    let mut out = Vec::new();
    let mut ok = true;
    for chunk in stream.chunks(step) {
        if decoder.decode_chunk(Bytes::copy_from_slice(chunk), &mut out).is_err() {
            ok = false;
            break;
        }
    }
    let total: usize = out.iter().map(|p| p.len()).sum();
    assert!(total <= stream.len());
    if ok && decoder.finish().is_ok() {
        let ours: Vec<Vec<u8>> = out.iter().map(|p| p.to_vec()).collect();
        assert_eq!(Some(ours), decode_with_codec(stream, max));
    }
});
