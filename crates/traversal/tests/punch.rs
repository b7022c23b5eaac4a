//! UDP hole punching carrying QUIC, on loopback: two peers with no
//! listeners and no TCP candidates exchange UDP candidates through the
//! rendezvous (the mapping its STUN saw, and a host address), punch, and
//! run QUIC on the punched sockets; the relay carries the first messages
//! at once, the QUIC path replaces it, and 2,000 messages each way arrive
//! once each and in order.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::time::timeout;
use weft_link::Address;
use weft_messaging::{Identity, Message, Messaging};
use weft_traversal::{
    Path, Rendezvous, RendezvousOptions, Transport, Traversal, TraversalConfig, TraversalEvent,
    TraversalEvents, Via,
};

const WAIT: Duration = Duration::from_secs(20);
const COUNT: usize = 2_000;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A peer that offers loopback only and dials no TCP candidate: its
/// direct path can only be UDP's.
async fn peer(name: &str, at: &Address) -> (Messaging, Traversal, TraversalEvents) {
    let messaging = Messaging::new(Identity::new(name).unwrap(), Default::default())
        .await
        .unwrap();
    let mut config = TraversalConfig::default();
    config.direct.host_ips = Some(vec![LOOPBACK]);
    config.direct.max_targets = 0;
    let (traversal, events) = Traversal::start(&messaging, at, Default::default(), config).unwrap();
    (messaging, traversal, events)
}

async fn next_path(events: &mut TraversalEvents) -> Path {
    timeout(WAIT, async {
        loop {
            match events.recv().await.expect("traversal stopped") {
                TraversalEvent::Path(p) => return p,
                _ => continue,
            }
        }
    })
    .await
    .expect("a path in time")
}

async fn receive_all(at: Messaging, from: Identity) {
    for i in 0..COUNT {
        let got = at.recv(Some(WAIT)).await.expect("a message in time");
        assert_eq!(got.from, from);
        assert_eq!(
            std::str::from_utf8(&got.message.data).unwrap(),
            format!("{from}-{i}"),
            "message {i} at {}",
            at.identity()
        );
    }
    // No second copy of anything.
    assert!(at.recv(Some(Duration::from_millis(300))).await.is_err());
}

#[tokio::test]
async fn a_punched_udp_path_carries_quic_and_replaces_the_relay() {
    let (rv, _) = Rendezvous::start(RendezvousOptions::listen(
        "tcp://127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let at = rv.listening()[0].clone();
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at).await;

    let mut senders = Vec::new();
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let (from, to) = (from.clone(), to.identity().clone());
        senders.push(tokio::spawn(async move {
            for i in 0..COUNT {
                let text = format!("{}-{i}", from.identity());
                from.send_message(&to, Message::new(text)).await.unwrap();
            }
        }));
    }
    to_alice.reach(bob.identity()).unwrap();
    to_bob.reach(alice.identity()).unwrap();
    let receivers = [
        tokio::spawn(receive_all(alice.clone(), bob.identity().clone())),
        tokio::spawn(receive_all(bob.clone(), alice.identity().clone())),
    ];

    // The relay first, then the direct path over QUIC, on each side.
    for events in [&mut alice_events, &mut bob_events] {
        let relay = next_path(events).await;
        assert_eq!(relay.via, Via::Relay);
        let direct = next_path(events).await;
        assert_eq!(direct.via, Via::Direct);
        assert_eq!(direct.transport, Transport::Quic);
        assert_eq!(direct.remote.map(|a| a.ip()), Some(LOOPBACK));
    }
    for r in receivers {
        timeout(WAIT, r).await.unwrap().unwrap();
    }
    for s in senders {
        s.await.unwrap();
    }
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
