//! Arbitrary packets through weft-traversal's rendezvous frame parser and
//! the rendezvous core: never a panic; whatever parses encodes back to
//! exactly the bytes it came from; and the core, given the packets on
//! registered and unregistered connections with time passing, answers only
//! connections it was told about.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weft_link::ConnectionId;
use weft_messaging::Identity;
use weft_traversal::wire::Frame;
use weft_traversal::{RendezvousConfig, RendezvousCore, Transmit};

fuzz_target!(|input: &[u8]| {
    let packet = Bytes::copy_from_slice(input);
    if let Ok(frame) = Frame::decode(&packet) {
        assert_eq!(frame.encode(), packet, "{frame:?}");
    }

    let now = Instant::now();
    let mut config = RendezvousConfig::default();
    config.relay_window = 64;
    config.relay_rate = 1_000;
    let mut core = RendezvousCore::new(config);
    let (a, b, c) = (ConnectionId(1), ConnectionId(2), ConnectionId(3));
    for conn in [a, b, c] {
        core.handle_connected(now, conn, Some("192.0.2.1:1".parse().unwrap()));
    }
    let register = |name: &str| Frame::Register { identity: Identity::new(name).unwrap() }.encode();
    let _ = core.handle_packet(now, a, &register("a"));
    let _ = core.handle_packet(now, b, &register("b"));
    let _ = core.handle_packet(now, a, &Frame::Reach { peer: Identity::new("b").unwrap() }.encode());
    // The input, split at each 0xff byte into packets, from each side.
    for (i, chunk) in input.split(|&x| x == 0xff).enumerate() {
        let conn = [a, b, c][i % 3];
        let at = now + Duration::from_millis(i as u64 * 7);
        let _ = core.handle_packet(at, conn, &Bytes::copy_from_slice(chunk));
        core.handle_timeout(at);
        let _ = core.poll_timeout(at);
    }
    core.handle_timeout(now + Duration::from_secs(60));
    while let Some(t) = core.poll_transmit() {
        let conn = match t {
            Transmit::Frame { conn, .. } | Transmit::Close { conn } => conn,
            _ => continue,
        };
        assert!([a, b, c].contains(&conn));
    }
    while core.poll_event().is_some() {}
    let _ = core.stats();
});
