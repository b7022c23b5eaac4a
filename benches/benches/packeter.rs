//! Criterion benches of the packet decoder: `PacketDecoder::decode_chunk`
//! on the two shapes that matter, many small packets inside one chunk
//! (returned as slices, no copy) and large packets split across chunks
//! (gathered into a buffer).
//!
//! `cargo bench -p weft-benches --bench packeter`. Kept short: a few
//! seconds per bench.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use weft_packeter::PacketDecoder;
use weft_packeter::codec::{HEADER_LEN, encode};

/// One read's worth of bytes, as a link delivers it at most by default.
const CHUNK: usize = 64 << 10;

/// A 64 KiB chunk (rounded down to whole packets) of 64-byte packets.
fn small_packets_chunk() -> (Bytes, usize) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let payload = [0x11u8; 64];
    let mut n = 0;
    while buf.len() + HEADER_LEN + payload.len() <= CHUNK {
        encode(&payload, &mut buf);
        n += 1;
    }
    (buf.freeze(), n)
}

/// `count` packets of 64 KiB, cut into 64 KiB chunks: every packet spans
/// two chunks because of its prefix.
fn large_packets_chunks(count: usize) -> Vec<Bytes> {
    let mut stream = BytesMut::new();
    let payload = vec![0x22u8; 64 << 10];
    for _ in 0..count {
        encode(&payload, &mut stream);
    }
    let stream = stream.freeze();
    (0..stream.len())
        .step_by(CHUNK)
        .map(|at| stream.slice(at..(at + CHUNK).min(stream.len())))
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_chunk");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    let (chunk, n) = small_packets_chunk();
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    let mut out = Vec::with_capacity(n);
    group.bench_function("64 B packets in one 64 KiB chunk", |b| {
        let mut decoder = PacketDecoder::new(1 << 20);
        b.iter(|| {
            out.clear();
            let got = decoder
                .decode_chunk(chunk.clone(), &mut out)
                .expect("valid stream");
            assert_eq!(got, n);
        })
    });

    let packets = 16;
    let chunks = large_packets_chunks(packets);
    let total: usize = chunks.iter().map(Bytes::len).sum();
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("64 KiB packets split across 64 KiB chunks", |b| {
        let mut decoder = PacketDecoder::new(1 << 20);
        b.iter(|| {
            out.clear();
            for chunk in &chunks {
                decoder
                    .decode_chunk(chunk.clone(), &mut out)
                    .expect("valid stream");
            }
            assert_eq!(out.len(), packets);
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    decode(&mut c);
    c.final_summary();
}
