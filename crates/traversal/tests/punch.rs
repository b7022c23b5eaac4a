//! UDP hole punching carrying QUIC, on loopback: two peers with no
//! listeners and no TCP candidates exchange UDP candidates through the
//! rendezvous (the mapping its STUN saw, and a host address), punch, and
//! run QUIC on the punched sockets; the relay carries the first messages
//! at once, the QUIC path replaces it, and 2,000 messages each way arrive
//! once each and in order. And both races at once, TCP and UDP: both
//! ends keep one and the same direct path.

mod common;

use weft_link::Address;
use weft_messaging::Messaging;
use weft_traversal::{Transport, Traversal, TraversalConfig, TraversalEvents, Via};

use common::{LOOPBACK, exchange, next_path, peer_with, rendezvous};

/// A peer that offers loopback only and dials no TCP candidate: its
/// direct path can only be UDP's.
async fn peer(name: &str, at: &Address) -> (Messaging, Traversal, TraversalEvents) {
    let mut config = TraversalConfig::default();
    config.direct.host_ips = Some(vec![LOOPBACK]);
    config.direct.max_targets = 0;
    peer_with(name, at, config).await
}

#[tokio::test]
async fn a_punched_udp_path_carries_quic_and_replaces_the_relay() {
    let (rv, at) = rendezvous().await;
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at).await;

    let exchange = exchange((&alice, &to_alice), (&bob, &to_bob));

    // The relay first, then the direct path over QUIC, on each side.
    for events in [&mut alice_events, &mut bob_events] {
        let relay = next_path(events).await;
        assert_eq!(relay.via, Via::Relay);
        let direct = next_path(events).await;
        assert_eq!(direct.via, Via::Direct);
        assert_eq!(direct.transport, Transport::Quic);
        assert_eq!(direct.remote.map(|a| a.ip()), Some(LOOPBACK));
    }
    exchange.finish().await;
    // Messaging's one connection to bob is the QUIC one.
    let info = alice.peer_info(bob.identity()).expect("connected");
    let remote = info.connection.peer.expect("a peer address");
    assert!(remote.to_string().starts_with("quic://"), "{remote}");
    to_alice.close().await;
    to_bob.close().await;
    alice.close().await;
    bob.close().await;
    rv.close().await;
}

/// Both races at once: TCP dials the peer's loopback candidate the moment
/// it arrives, and the punching starts then too (no start delay). Each
/// race finds a path within milliseconds of the other; one choice, made
/// by the smaller identity, puts both ends on the same direct path, and no
/// second direct connection is opened for messaging to refuse.
#[tokio::test]
async fn with_both_races_at_once_both_ends_keep_one_and_the_same_direct_path() {
    let (rv, at) = rendezvous().await;
    let both = || {
        let mut config = TraversalConfig::default();
        config.direct.host_ips = Some(vec![LOOPBACK]);
        config.punch.start_delay = std::time::Duration::ZERO;
        config
    };
    let (alice, to_alice, mut alice_events) = peer_with("alice", &at, both()).await;
    let (bob, to_bob, mut bob_events) = peer_with("bob", &at, both()).await;

    let exchange = exchange((&alice, &to_alice), (&bob, &to_bob));
    let mut direct = Vec::new();
    for events in [&mut alice_events, &mut bob_events] {
        let relay = next_path(events).await;
        assert_eq!(relay.via, Via::Relay);
        let path = next_path(events).await;
        assert_eq!(path.via, Via::Direct);
        direct.push(path.transport);
    }
    assert_eq!(direct[0], direct[1], "both ends on one transport");
    exchange.finish().await;
    // Each end's one connection to the other is that path, and neither
    // refused a second direct connection.
    for (at, other) in [(&alice, &bob), (&bob, &alice)] {
        let info = at.peer_info(other.identity()).expect("connected");
        let remote = info.connection.peer.expect("a peer address");
        assert_eq!(Transport::of(remote.scheme()), direct[0], "{remote}");
        assert_eq!(at.stats().protocol_errors, 0);
    }
    to_alice.close().await;
    to_bob.close().await;
    alice.close().await;
    bob.close().await;
    rv.close().await;
}
