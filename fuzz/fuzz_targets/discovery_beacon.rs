//! Arbitrary datagrams through weft-discovery's beacon decoder and the
//! discovery core (with and without a group key): never a panic, and
//! whatever decodes encodes (to no more bytes than it came in) to bytes
//! that decode to the same beacon.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weft_discovery::beacon::{Beacon, MAX_BEACON};
use weft_discovery::{DiscoveryConfig, DiscoveryCore, GroupKey, LocalParticipant, ParticipantId};

fuzz_target!(|input: &[u8]| {
    if let Ok(beacon) = Beacon::decode(input) {
        let bytes = beacon.encode().expect("a decoded beacon encodes");
        // Bytes after the body are ignored, so what decodes is never
        // shorter than its encoding.
        assert!(bytes.len() <= input.len().min(MAX_BEACON));
        let again = Beacon::decode(&bytes).expect("an encoded beacon decodes");
        assert_eq!(again, beacon);
    }

    let now = Instant::now();
    let from: SocketAddr = "192.0.2.7:7400".parse().unwrap();
    let mut keyed = DiscoveryConfig::default();
    keyed.group_key = Some(GroupKey::new([7u8; 32]).unwrap());
    for config in [DiscoveryConfig::default(), keyed] {
        let mut local = LocalParticipant::new("fuzz", vec!["0.0.0.0:7000".parse().unwrap()]);
        // Fixed, so that inputs can reach the paths for our own id.
        local.id = ParticipantId([1; 16]);
        local.incarnation = 1;
        let mut core = DiscoveryCore::new(local, &config, now);
        // The same datagram twice and from another host, then time passing.
        let _ = core.handle_beacon(input, from, now);
        let _ = core.handle_beacon(input, from, now + Duration::from_millis(1));
        let _ = core.handle_beacon(input, "[2001:db8::1]:7400".parse().unwrap(), now);
        while core.poll_event().is_some() {}
        let _ = core.poll_transmit(now);
        let later = now + Duration::from_secs(3600);
        core.handle_timeout(later);
        while core.poll_event().is_some() {}
        let _ = core.poll_timeout();
        let _ = core.peers().count();
    }
});
