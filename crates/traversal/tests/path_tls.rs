//! Paths with certificates (`TraversalConfig::tls`): on loopback, the
//! relay's channel and the direct paths run mutual TLS from end to end,
//! so peers whose messaging binds identities to certificates talk over
//! every path, each proving its name; a peer whose certificate names
//! someone else gets nothing.

mod common;

use std::time::Duration;

use tokio::time::timeout;
use weft_link::Address;
use weft_link::tls::TlsIdentity;
use weft_messaging::{Identity, Message, Messaging, MessagingConfig};
use weft_traversal::{PathTls, Traversal, TraversalConfig, TraversalEvents, Via};

use common::{LOOPBACK, WAIT, certificates, exchange, next_path, rendezvous};

/// A peer `name` whose messaging binds identities to certificates, with
/// paths secured by `identity` (a certificate of the CA `anchors` come
/// from); `direct`: race direct paths beside the relay.
async fn peer(
    name: &str,
    at: &Address,
    identity: TlsIdentity,
    anchors: &weft_link::tls::TrustAnchors,
    direct: bool,
) -> (Messaging, Traversal, TraversalEvents) {
    let mut messaging_config = MessagingConfig::default();
    messaging_config.bind_identity = true;
    let messaging = Messaging::new(Identity::new(name).unwrap(), messaging_config)
        .await
        .unwrap();
    let mut config = TraversalConfig::default();
    config.direct.enabled = direct;
    config.direct.host_ips = Some(vec![LOOPBACK]);
    config.tls = Some(PathTls::new(identity, anchors.clone()).unwrap());
    let (traversal, events) = Traversal::start(&messaging, at, Default::default(), config).unwrap();
    (messaging, traversal, events)
}

/// The DNS names of the certificate `at`'s connection to `peer` carries.
fn proven(at: &Messaging, peer: &Identity) -> Vec<String> {
    at.peer_info(peer)
        .and_then(|i| i.certificate)
        .map(|c| c.dns_names)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_relay_carries_tls_and_each_peer_proves_its_identity() {
    let (anchors, ids) = certificates(&["alice", "bob"]);
    let (rv, at) = rendezvous().await;
    let (alice, to_alice, mut alice_events) =
        peer("alice", &at, ids[0].clone(), &anchors, false).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at, ids[1].clone(), &anchors, false).await;
    let exchange = exchange((&alice, &to_alice), (&bob, &to_bob));
    for events in [&mut alice_events, &mut bob_events] {
        assert_eq!(next_path(events).await.via, Via::Relay);
    }
    exchange.finish().await;
    assert_eq!(proven(&alice, bob.identity()), ["bob"]);
    assert_eq!(proven(&bob, alice.identity()), ["alice"]);
    // What the rendezvous relayed was TLS: more than the messages, and
    // neither side refused an identity.
    assert!(rv.stats().relayed_bytes > 0);
    assert_eq!(alice.stats().identities_unbound, 0);
    assert_eq!(bob.stats().identities_unbound, 0);
    rv.close().await;
}

#[tokio::test]
async fn a_direct_path_carries_tls_too() {
    let (anchors, ids) = certificates(&["alice", "bob"]);
    let (rv, at) = rendezvous().await;
    let (alice, to_alice, mut alice_events) =
        peer("alice", &at, ids[0].clone(), &anchors, true).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at, ids[1].clone(), &anchors, true).await;
    let exchange = exchange((&alice, &to_alice), (&bob, &to_bob));
    // The relay, then a direct path (TCP or QUIC, whichever comes first),
    // on each side.
    for events in [&mut alice_events, &mut bob_events] {
        let mut path = next_path(events).await;
        if path.via == Via::Relay {
            path = next_path(events).await;
        }
        assert_eq!(path.via, Via::Direct);
    }
    exchange.finish().await;
    let info = alice.peer_info(bob.identity()).expect("connected");
    assert_ne!(
        info.connection.peer.as_ref().and_then(Address::socket_addr),
        at.socket_addr(),
        "the connection kept is the direct one"
    );
    assert_eq!(proven(&alice, bob.identity()), ["bob"]);
    assert_eq!(proven(&bob, alice.identity()), ["alice"]);
    rv.close().await;
}

#[tokio::test]
async fn a_peer_whose_certificate_names_someone_else_gets_nothing() {
    // "aaron" sorts before "alice" (alice is TLS's server: the chain is
    // good, messaging refuses the name), "zed" after (alice is TLS's
    // client: the handshake refuses the name).
    let (anchors, ids) = certificates(&["alice", "mallory"]);
    for (impostor, refused_by_tls) in [("aaron", false), ("zed", true)] {
        let (rv, at) = rendezvous().await;
        let (alice, to_alice, mut alice_events) =
            peer("alice", &at, ids[0].clone(), &anchors, false).await;
        let (mallory, to_mallory, _events) =
            peer(impostor, &at, ids[1].clone(), &anchors, false).await;
        let them = Identity::new(impostor).unwrap();
        alice
            .send_message(&them, Message::new("for the real one"))
            .await
            .unwrap();
        to_alice.reach(&them).unwrap();
        to_mallory.reach(alice.identity()).unwrap();
        assert_eq!(next_path(&mut alice_events).await.via, Via::Relay);
        // The refusal is seen, where it happens.
        timeout(WAIT, async {
            loop {
                let seen = if refused_by_tls {
                    alice.link().stats().handshake_failures
                } else {
                    alice.stats().identities_unbound
                };
                if seen > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{impostor}: no refusal"));
        assert!(!alice.is_connected(&them), "{impostor}");
        assert_eq!(alice.queue_depths().get(&them), Some(&1), "{impostor}");
        assert!(mallory.recv(Some(Duration::ZERO)).await.is_err());
        rv.close().await;
    }
}
