//! Direct TCP paths raced beside the relay, on loopback: two peers with
//! no listeners exchange candidates on 127.0.0.1 through the rendezvous;
//! the relay carries the first messages at once, a direct path replaces
//! it, and 2,000 messages each way arrive once each and in order.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::timeout;
use weft_link::Address;
use weft_messaging::{Identity, Messaging};
use weft_traversal::{Transport, Traversal, TraversalConfig, TraversalEvent, TraversalEvents, Via};

use common::{
    COUNT, LOOPBACK, WAIT, exchange, next_path, peer_with, receive_all, rendezvous, send_both_ways,
};

async fn peer(name: &str, at: &Address) -> (Messaging, Traversal, TraversalEvents) {
    peer_on(name, at, vec![LOOPBACK]).await
}

/// A peer whose host candidates are `host_ips`.
async fn peer_on(
    name: &str,
    at: &Address,
    host_ips: Vec<IpAddr>,
) -> (Messaging, Traversal, TraversalEvents) {
    let mut config = TraversalConfig::default();
    config.direct.host_ips = Some(host_ips);
    // These are the direct TCP paths' tests; UDP punching has its own.
    config.punch.enabled = false;
    peer_with(name, at, config).await
}

#[tokio::test]
async fn a_direct_path_replaces_the_relay_and_nothing_is_lost() {
    let (rv, at) = rendezvous().await;
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at).await;
    let (alice_port, bob_port) = (
        to_alice.direct_port().expect("direct on"),
        to_bob.direct_port().expect("direct on"),
    );

    // From the first moment: nothing waits for a hole.
    let exchange = exchange((&alice, &to_alice), (&bob, &to_bob));

    // The relay first, then the direct path, on each side.
    for (events, port) in [(&mut alice_events, bob_port), (&mut bob_events, alice_port)] {
        let relay = next_path(events).await;
        assert_eq!(relay.via, Via::Relay);
        let direct = next_path(events).await;
        assert_eq!(direct.via, Via::Direct);
        assert_eq!(direct.transport, Transport::Tcp);
        assert_eq!(direct.remote, Some(SocketAddr::new(LOOPBACK, port)));
    }
    exchange.finish().await;
    // One connection each, the direct one; its remote is the other's
    // direct port.
    let info = alice.peer_info(bob.identity()).expect("connected");
    assert_eq!(
        info.connection.peer.as_ref().and_then(Address::socket_addr),
        Some(SocketAddr::new(LOOPBACK, bob_port))
    );
    to_alice.close().await;
    to_bob.close().await;
    rv.close().await;
}

/// relay -> direct -> relay -> direct with the real strategies: the direct
/// path dies mid-stream, the relay comes back at once and a new race finds
/// a direct path again; 2,000 messages each way arrive once each and in
/// order, and messaging ends on the direct connection.
#[tokio::test]
async fn a_dead_direct_path_falls_back_to_the_relay_and_races_again() {
    let (rv, at) = rendezvous().await;
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, to_bob, _bob_events) = peer("bob", &at).await;
    to_alice.reach(bob.identity()).unwrap();
    to_bob.reach(alice.identity()).unwrap();
    let senders = send_both_ways(&alice, &bob);
    let at_bob = tokio::spawn(receive_all(bob.clone(), alice.identity().clone()));

    let from = bob.identity().clone();
    let mut vias = Vec::new();
    for i in 0..COUNT {
        let got = alice.recv(Some(WAIT)).await.expect("a message in time");
        assert_eq!(got.from, from);
        assert_eq!(
            std::str::from_utf8(&got.message.data).unwrap(),
            format!("bob-{i}")
        );
        if i == COUNT / 4 {
            // Until the direct path is up, then cut it.
            loop {
                let path = next_path(&mut alice_events).await;
                vias.push(path.via);
                if path.via == Via::Direct {
                    break;
                }
            }
            assert!(alice.disconnect(bob.identity()));
            // The relay again, then a direct path again.
            loop {
                let path = next_path(&mut alice_events).await;
                vias.push(path.via);
                if path.via == Via::Direct && vias.len() > 2 {
                    break;
                }
            }
        }
    }
    assert_eq!(vias, [Via::Relay, Via::Direct, Via::Relay, Via::Direct]);
    assert!(alice.recv(Some(Duration::from_millis(300))).await.is_err());
    timeout(WAIT, at_bob).await.unwrap().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    assert!(rv.stats().channels_opened >= 2);
    // Messaging's one connection to bob is the direct one: the second
    // relay gave way too.
    let info = alice.peer_info(bob.identity()).expect("connected");
    assert_eq!(
        info.connection.peer.as_ref().and_then(Address::socket_addr),
        Some(SocketAddr::new(LOOPBACK, to_bob.direct_port().unwrap()))
    );
    to_alice.close().await;
    to_bob.close().await;
    rv.close().await;
}

/// Several direct streams succeed at once, from both ends (each dials the
/// other's two addresses): the ends still adopt one and the same stream,
/// and nothing is lost or repeated.
#[tokio::test]
async fn crossing_direct_streams_settle_on_one() {
    let (rv, at) = rendezvous().await;
    let two = vec![LOOPBACK, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))];
    let (alice, to_alice, mut alice_events) = peer_on("alice", &at, two.clone()).await;
    let (bob, to_bob, mut bob_events) = peer_on("bob", &at, two).await;
    let exchange = exchange((&alice, &to_alice), (&bob, &to_bob));
    let mut directs = Vec::new();
    for events in [&mut alice_events, &mut bob_events] {
        loop {
            let path = next_path(events).await;
            if path.via == Via::Direct {
                directs.push(path.remote.expect("a remote"));
                break;
            }
        }
    }
    exchange.finish().await;
    // The same stream at both ends: each one's remote is the other's local.
    let local = |m: &Messaging, peer: &Identity| {
        let info = m.peer_info(peer).expect("connected");
        let local = info
            .connection
            .local
            .as_ref()
            .and_then(Address::socket_addr);
        let remote = info.connection.peer.as_ref().and_then(Address::socket_addr);
        (local, remote)
    };
    let (alice_local, alice_remote) = local(&alice, bob.identity());
    let (bob_local, bob_remote) = local(&bob, alice.identity());
    assert_eq!(alice_remote, bob_local);
    assert_eq!(bob_remote, alice_local);
    assert_eq!(directs, [alice_remote.unwrap(), bob_remote.unwrap()]);
    // No other path came or went but the relay's end: nothing fought over.
    while let Ok(event) = timeout(Duration::from_millis(300), alice_events.recv()).await {
        match event.expect("traversal runs") {
            TraversalEvent::PathEnded { path, .. } => assert_eq!(path.via, Via::Relay),
            TraversalEvent::Path(path) => panic!("another path: {path:?}"),
            _ => {}
        }
    }
    to_alice.close().await;
    to_bob.close().await;
    rv.close().await;
}
