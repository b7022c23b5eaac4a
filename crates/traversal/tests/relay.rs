//! Two messaging peers with no listeners meet at a rendezvous on loopback
//! and exchange messages through its relay: all of them, once each, in
//! order, also when the relay channel is cut mid-stream.

use std::time::Duration;

use tokio::time::timeout;
use weft_link::Address;
use weft_messaging::{Identity, Message, Messaging};
use weft_traversal::wire::CloseReason;
use weft_traversal::{
    Rendezvous, RendezvousConfig, RendezvousEvent, RendezvousOptions, Transport, Traversal,
    TraversalConfig, TraversalEvent, TraversalEvents, Via,
};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(20);
const COUNT: usize = 2_000;

async fn rendezvous(config: RendezvousConfig) -> (Rendezvous, weft_traversal::RendezvousEvents) {
    let mut options = RendezvousOptions::listen("tcp://127.0.0.1:0".parse().unwrap());
    options.config = config;
    Rendezvous::start(options).await.unwrap()
}

async fn peer(name: &str, at: &Address) -> (Messaging, Traversal, TraversalEvents) {
    let messaging = Messaging::new(Identity::new(name).unwrap(), Default::default())
        .await
        .unwrap();
    // The relay alone: direct paths (tests/direct.rs) would replace it
    // on loopback at once.
    let mut config = TraversalConfig::default();
    config.direct.enabled = false;
    let (traversal, events) = Traversal::start(&messaging, at, Default::default(), config).unwrap();
    (messaging, traversal, events)
}

/// Waits for the first event `f` accepts, within [`WAIT`].
async fn until<T>(
    events: &mut TraversalEvents,
    mut f: impl FnMut(TraversalEvent) -> Option<T>,
) -> T {
    timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("traversal stopped");
            if let Some(t) = f(event) {
                return t;
            }
        }
    })
    .await
    .expect("event in time")
}

async fn registered(events: &mut TraversalEvents) {
    until(events, |e| {
        matches!(e, TraversalEvent::Registered { .. }).then_some(())
    })
    .await
}

/// Sends `COUNT` numbered messages from `from` to `to`.
fn send_all(from: &Messaging, to: &Identity) -> tokio::task::JoinHandle<()> {
    let (from, to) = (from.clone(), to.clone());
    tokio::spawn(async move {
        for i in 0..COUNT {
            let text = format!("{}-{i}", from.identity());
            from.send_message(&to, Message::new(text)).await.unwrap();
        }
    })
}

/// Receives `COUNT` messages from `from` and checks they are `0..COUNT`
/// in order; calls `midway` after the first `COUNT / 4`.
async fn receive_all(
    at: &Messaging,
    from: &Identity,
    midway: impl std::future::Future<Output = ()>,
) {
    let mut midway = Some(Box::pin(midway));
    for i in 0..COUNT {
        let got = at.recv(Some(WAIT)).await.expect("a message in time");
        assert_eq!(got.from, *from);
        assert_eq!(
            std::str::from_utf8(&got.message.data).unwrap(),
            format!("{from}-{i}"),
            "message {i} at {}",
            at.identity()
        );
        if i == COUNT / 4 {
            if let Some(m) = midway.take() {
                m.await;
            }
        }
    }
    // Nothing more: no duplicate arrives once all were received.
    assert!(at.recv(Some(Duration::from_millis(300))).await.is_err());
}

#[tokio::test]
async fn two_peers_without_listeners_exchange_through_the_relay() {
    let (rv, mut rv_events) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at).await;
    registered(&mut alice_events).await;
    registered(&mut bob_events).await;

    // A message sent before any path exists waits in its queue.
    let senders = [
        send_all(&alice, bob.identity()),
        send_all(&bob, alice.identity()),
    ];
    to_alice.reach(bob.identity()).unwrap();
    to_bob.reach(alice.identity()).unwrap();

    let path = until(&mut alice_events, |e| match e {
        TraversalEvent::Path(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(path.peer, *bob.identity());
    assert_eq!(path.via, Via::Relay);
    assert_eq!(path.transport, Transport::Tcp);
    assert_eq!(path.remote, at.socket_addr());

    let (a, b) = (alice.clone(), bob.clone());
    let at_bob = tokio::spawn(async move { receive_all(&b, a.identity(), async {}).await });
    receive_all(&alice, bob.identity(), async {}).await;
    timeout(WAIT, at_bob).await.unwrap().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(alice.stats().duplicates, 0);
    assert_eq!(bob.stats().duplicates, 0);
    let stats = rv.stats();
    assert_eq!(stats.registrations, 2);
    assert_eq!(stats.channels, 1);
    assert!(stats.relayed_bytes > 2 * COUNT as u64 * 6, "{stats:?}");

    // The operator saw both registrations and one relay.
    let mut registrations = 0;
    let mut relays = 0;
    while let Ok(Some(e)) = timeout(Duration::from_millis(50), rv_events.recv()).await {
        match e {
            RendezvousEvent::Registered { .. } => registrations += 1,
            RendezvousEvent::RelayStarted { .. } => relays += 1,
            _ => {}
        }
    }
    assert_eq!((registrations, relays), (2, 1));
    rv.close().await;
}

#[tokio::test]
async fn a_cut_relay_reopens_and_loses_and_duplicates_nothing() {
    let (rv, _rv_events) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at).await;
    registered(&mut alice_events).await;
    registered(&mut bob_events).await;
    to_alice.reach(bob.identity()).unwrap();
    to_bob.reach(alice.identity()).unwrap();

    let senders = [
        send_all(&alice, bob.identity()),
        send_all(&bob, alice.identity()),
    ];
    let (a, b) = (alice.clone(), bob.clone());
    let at_bob = tokio::spawn(async move { receive_all(&b, a.identity(), async {}).await });
    // A quarter of the way through, the rendezvous cuts the channel.
    let rv2 = rv.clone();
    let (ai, bi) = (alice.identity().clone(), bob.identity().clone());
    receive_all(&alice, bob.identity(), async move {
        assert!(rv2.close_relay(&ai, &bi).await.unwrap());
    })
    .await;
    timeout(WAIT, at_bob).await.unwrap().unwrap();
    for s in senders {
        s.await.unwrap();
    }

    // Alice saw the path end and a new one open.
    let mut ended = false;
    let mut paths = 0;
    while let Ok(Some(e)) = timeout(Duration::from_millis(50), alice_events.recv()).await {
        match e {
            TraversalEvent::Path(_) => paths += 1,
            TraversalEvent::PathEnded { reason, .. } => {
                assert_eq!(reason, CloseReason::Operator);
                ended = true;
            }
            _ => {}
        }
    }
    assert!(ended && paths >= 2, "ended {ended}, paths {paths}");
    assert!(rv.stats().channels_opened >= 2);
    rv.close().await;
}

#[tokio::test]
async fn a_message_waits_for_an_identity_that_registers_later() {
    let (rv, _) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    registered(&mut alice_events).await;
    alice
        .send_message(&Identity::new("late").unwrap(), Message::new("hello"))
        .await
        .unwrap();
    to_alice.reach(&Identity::new("late").unwrap()).unwrap();

    let (late, _to_late, _late_events) = peer("late", &at).await;
    let got = late.recv(Some(WAIT)).await.unwrap();
    assert_eq!(&got.message.data[..], b"hello");
    rv.close().await;
}

#[tokio::test]
async fn a_duplicate_registration_is_refused() {
    let (rv, _) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    let (_first, _t1, mut first_events) = peer("same", &at).await;
    registered(&mut first_events).await;
    let (_second, _t2, mut second_events) = peer("same", &at).await;
    let reason = until(&mut second_events, |e| match e {
        TraversalEvent::Refused { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, weft_traversal::wire::RefuseReason::Duplicate);
    assert_eq!(rv.stats().registrations, 1);
    rv.close().await;
}

#[tokio::test]
async fn a_flood_is_held_to_the_rate_and_cut_at_the_cap() {
    let mut config = RendezvousConfig::default();
    config.relay_rate = 400_000;
    config.relay_total = 400_000;
    let (rv, _) = rendezvous(config).await;
    let at = rv.listening()[0].clone();
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, _to_bob, mut bob_events) = peer("bob", &at).await;
    registered(&mut alice_events).await;
    registered(&mut bob_events).await;
    // 4 MB queued at once, ten times the cap.
    for _ in 0..64 {
        let data = vec![0x55u8; 64 * 1024];
        alice
            .send_message(bob.identity(), Message::new(data))
            .await
            .unwrap();
    }
    to_alice.reach(bob.identity()).unwrap();
    until(&mut alice_events, |e| {
        matches!(e, TraversalEvent::Path(_)).then_some(())
    })
    .await;
    let opened = tokio::time::Instant::now();
    let reason = until(&mut alice_events, |e| match e {
        TraversalEvent::PathEnded { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    let took = opened.elapsed();
    assert_eq!(reason, CloseReason::CapReached);
    let stats = rv.stats();
    assert_eq!(stats.relayed_bytes, 400_000, "{stats:?}");
    assert_eq!(stats.channels_capped, 1);
    assert_eq!(stats.flow_violations, 0);
    assert!(stats.rate_waits >= 1, "{stats:?}");
    // 400 kB at 400 kB/s with a burst of 40 kB: at least 0.9 s.
    assert!(took >= Duration::from_millis(850), "capped after {took:?}");
    // The pair's cap holds for a new reach too.
    to_alice.reach(bob.identity()).unwrap();
    let (peer, reason) = until(&mut alice_events, |e| match e {
        TraversalEvent::Unreachable { peer, reason } => Some((peer, reason)),
        _ => None,
    })
    .await;
    assert_eq!(peer, *bob.identity());
    assert_eq!(reason, weft_traversal::wire::UnreachableReason::CapReached);
    // Nothing was delivered twice, and what did not arrive is still queued.
    assert_eq!(bob.stats().duplicates, 0);
    assert!(alice.queue_depth(bob.identity()) > 0);
    rv.close().await;
}

/// A client that ignores its window: the channel is closed, the other end
/// is told, and the rendezvous held no more than the window.
#[tokio::test]
async fn a_sender_that_overruns_its_window_loses_the_channel() {
    use weft_packeter::{PacketEvent, Packeter};
    use weft_traversal::wire::Frame;

    let (rv, _) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    let (bob, _to_bob, mut bob_events) = peer("bob", &at).await;
    registered(&mut bob_events).await;

    let mut raw = Packeter::new(Default::default(), Default::default());
    raw.link().connect(&at).unwrap();
    let Some(PacketEvent::Connected(tx)) = timeout(WAIT, raw.recv()).await.unwrap() else {
        panic!("connected");
    };
    let id = |s: &str| Identity::new(s).unwrap();
    tx.send(
        Frame::Register {
            identity: id("mallory"),
        }
        .encode(),
    )
    .await
    .unwrap();
    tx.send(
        Frame::Reach {
            peer: bob.identity().clone(),
        }
        .encode(),
    )
    .await
    .unwrap();
    let mut channel = None;
    while channel.is_none() {
        match timeout(WAIT, raw.recv()).await.unwrap() {
            Some(PacketEvent::Packet { data, .. }) => {
                if let Ok(Frame::RelayOpen { channel: c, .. }) = Frame::decode(&data) {
                    channel = Some(c);
                }
            }
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    let channel = channel.unwrap();
    // Bob's messaging holds the relay's bytes; mallory sends 4 windows'
    // worth at once, never waiting for credit.
    let chunk = bytes::Bytes::from(vec![0u8; 16 * 1024]);
    for _ in 0..16 {
        let frame = Frame::RelayData {
            channel,
            data: chunk.clone(),
        };
        if tx.send(frame.encode()).await.is_err() {
            break;
        }
    }
    let reason = until(&mut bob_events, |e| match e {
        TraversalEvent::PathEnded { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    // Bob's messaging saw garbage and may close first; either way the
    // channel ends and the rendezvous relayed at most one window from
    // mallory (and bob's own handshake the other way).
    assert!(
        matches!(reason, CloseReason::FlowViolation | CloseReason::Closed),
        "{reason:?}"
    );
    assert!(rv.stats().relayed_bytes <= 65 * 1024, "{:?}", rv.stats());
    rv.close().await;
}

/// relay -> direct -> relay: a direct connection made mid-stream takes
/// over from the relay on both sides, and when it dies the relay comes
/// back; 2,000 messages each way arrive once each and in order.
#[tokio::test]
async fn switching_paths_loses_and_duplicates_nothing() {
    let (rv, _) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    // jack > bob: by the crossed-dial rule alone jack would keep the
    // relay and bob the direct path.
    let (jack, to_jack, mut jack_events) = peer("jack", &at).await;
    let (bob, to_bob, mut bob_events) = peer("bob", &at).await;
    registered(&mut jack_events).await;
    registered(&mut bob_events).await;
    to_jack.reach(bob.identity()).unwrap();
    to_bob.reach(jack.identity()).unwrap();
    until(&mut jack_events, |e| {
        matches!(e, TraversalEvent::Path(_)).then_some(())
    })
    .await;
    let senders = [
        send_all(&jack, bob.identity()),
        send_all(&bob, jack.identity()),
    ];
    let (j, b) = (jack.clone(), bob.clone());
    let at_bob = tokio::spawn(async move { receive_all(&b, j.identity(), async {}).await });

    let from = bob.identity().clone();
    for i in 0..COUNT {
        let got = jack.recv(Some(WAIT)).await.expect("a message in time");
        assert_eq!(got.from, from);
        assert_eq!(
            std::str::from_utf8(&got.message.data).unwrap(),
            format!("bob-{i}")
        );
        if i == COUNT / 4 {
            // A direct path: jack dials a listener bob opens now. Both
            // keep it, and the relay's pipe closes.
            let url = bob
                .link()
                .listen("tcp://127.0.0.1:0")
                .await
                .unwrap()
                .address;
            let connector = jack.link().connect(&url).unwrap();
            // Reported as a direct path, and the relay's end, in either
            // order.
            let (mut direct, mut ended) = (None, None);
            while direct.is_none() || ended.is_none() {
                until(&mut jack_events, |e| match e {
                    TraversalEvent::Path(p) if p.via == Via::Direct => {
                        direct = Some(p);
                        Some(())
                    }
                    TraversalEvent::PathEnded { reason, .. } => {
                        ended = Some(reason);
                        Some(())
                    }
                    _ => None,
                })
                .await;
            }
            let direct = direct.unwrap();
            assert_eq!(direct.peer, *bob.identity());
            assert_eq!(direct.transport, Transport::Tcp);
            assert_eq!(direct.remote, url.socket_addr());
            assert_eq!(ended, Some(CloseReason::Closed));
            assert!(jack.is_connected(bob.identity()));
            jack.link().remove_connector(connector);
            // The direct path dies: the relay comes back.
            assert!(jack.disconnect(bob.identity()));
            let path = until(&mut jack_events, |e| match e {
                TraversalEvent::Path(p) => Some(p),
                _ => None,
            })
            .await;
            assert_eq!(path.via, Via::Relay);
        }
    }
    assert!(jack.recv(Some(Duration::from_millis(300))).await.is_err());
    timeout(WAIT, at_bob).await.unwrap().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    // What was in flight on a path let go went again on the next one, and
    // the copies that had arrived already were dropped unseen (counted).
    assert!(jack.stats().resent + bob.stats().resent > 0);
    assert!(rv.stats().channels_opened >= 2);
    rv.close().await;
}

/// Candidates and start signals travel between registered peers through
/// the rendezvous, named as from their sender (the ground the direct
/// paths of the next step stand on).
#[tokio::test]
async fn candidates_and_start_signals_reach_the_other_peer() {
    use weft_traversal::wire::{Candidate, CandidateKind, CandidateTransport};

    let (rv, _) = rendezvous(RendezvousConfig::default()).await;
    let at = rv.listening()[0].clone();
    let (alice, to_alice, mut alice_events) = peer("alice", &at).await;
    let (bob, _to_bob, mut bob_events) = peer("bob", &at).await;
    let observed = until(&mut alice_events, |e| match e {
        TraversalEvent::Registered { observed } => Some(observed),
        _ => None,
    })
    .await;
    registered(&mut bob_events).await;
    let ours = Candidate {
        transport: CandidateTransport::Udp,
        kind: CandidateKind::Reflexive,
        addr: observed.expect("an observed address over TCP"),
    };
    to_alice
        .send_candidates(bob.identity(), vec![ours])
        .unwrap();
    to_alice
        .send_start(bob.identity(), 7, 2, Duration::from_millis(150))
        .unwrap();
    let (from, addrs) = until(&mut bob_events, |e| match e {
        TraversalEvent::Candidates { peer, addrs } => Some((peer, addrs)),
        _ => None,
    })
    .await;
    assert_eq!(from, *alice.identity());
    assert_eq!(addrs, vec![ours]);
    let start = until(&mut bob_events, |e| match e {
        TraversalEvent::Start {
            peer,
            attempt,
            strategy,
            delay,
        } => Some((peer, attempt, strategy, delay)),
        _ => None,
    })
    .await;
    assert_eq!(
        start,
        (alice.identity().clone(), 7, 2, Duration::from_millis(150))
    );
    // To an identity that is not registered: answered, not delivered.
    to_alice
        .send_candidates(&Identity::new("nobody").unwrap(), vec![ours])
        .unwrap();
    let (peer, reason) = until(&mut alice_events, |e| match e {
        TraversalEvent::Unreachable { peer, reason } => Some((peer, reason)),
        _ => None,
    })
    .await;
    assert_eq!(peer.as_str(), "nobody");
    assert_eq!(
        reason,
        weft_traversal::wire::UnreachableReason::NotRegistered
    );
    assert_eq!(rv.stats().signals, 2);
    rv.close().await;
}
