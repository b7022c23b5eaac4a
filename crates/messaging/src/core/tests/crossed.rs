//! Two peers that dial each other: both keep the connection the smaller
//! identity dialled, and the connector of the other one may rest.

use super::*;

/// Connection `n` (dialled by our connector `dialled` when given) comes up
/// and identifies as `name`.
fn conn(core: &mut Core<FakeTx>, n: u64, dialled: Option<u64>, name: &str, now: Instant) -> FakeTx {
    let tx = FakeTx {
        connector: dialled.map(weft_link::ConnectorId),
        ..FakeTx::default()
    };
    core.handle_connected_with(ConnectionId(n), tx.clone(), tx.facts(), now);
    core.handle_packet(ConnectionId(n), packet(&WEFT), now);
    core.handle_packet(ConnectionId(n), packet(&Frame::Ident(id(name))), now);
    tx
}

fn events(core: &mut Core<FakeTx>) -> Vec<CoreEvent> {
    let mut out = VecDeque::new();
    core.poll_events(&mut out);
    out.into()
}

fn rested(events: &[CoreEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            CoreEvent::Redundant { connector, .. } => Some(connector.0),
            _ => None,
        })
        .collect()
}

/// bob and jack each dial the other, in both orders of identification, on
/// both sides: every time the connection bob dialled is the one kept.
#[test]
fn crossed_connections_settle_on_the_one_the_smaller_identity_dialled() {
    let t0 = Instant::now();
    // bob's side: connection 1 bob dialled (connector 7), 2 jack dialled.
    for bob_dialled_first in [true, false] {
        let mut bob = Core::<FakeTx>::new(id("bob"), MessagingConfig::default(), t0);
        let (mine, theirs) = if bob_dialled_first {
            let mine = conn(&mut bob, 1, Some(7), "jack", t0);
            let theirs = conn(&mut bob, 2, None, "jack", t0);
            (mine, theirs)
        } else {
            let theirs = conn(&mut bob, 2, None, "jack", t0);
            let mine = conn(&mut bob, 1, Some(7), "jack", t0);
            (mine, theirs)
        };
        assert!(!mine.closed(&mut bob), "bob keeps the one bob dialled");
        assert!(theirs.closed(&mut bob));
        assert_eq!(
            bob.transmit_of(&id("jack")).unwrap().connector,
            Some(weft_link::ConnectorId(7))
        );
        // jack's connection was not ours: no connector of ours rests.
        assert!(rested(&events(&mut bob)).is_empty());
    }
    // jack's side: connection 3 jack dialled (connector 9), 4 bob dialled.
    for jack_dialled_first in [true, false] {
        let mut jack = Core::<FakeTx>::new(id("jack"), MessagingConfig::default(), t0);
        let (mine, theirs) = if jack_dialled_first {
            let mine = conn(&mut jack, 3, Some(9), "bob", t0);
            let theirs = conn(&mut jack, 4, None, "bob", t0);
            (mine, theirs)
        } else {
            let theirs = conn(&mut jack, 4, None, "bob", t0);
            let mine = conn(&mut jack, 3, Some(9), "bob", t0);
            (mine, theirs)
        };
        assert!(mine.closed(&mut jack), "jack lets its own go");
        assert!(!theirs.closed(&mut jack));
        let events = events(&mut jack);
        assert_eq!(rested(&events), vec![9], "jack's connector rests");
        if jack_dialled_first {
            // The rest is asked after the replaced connection's end, which
            // wakes resting connectors.
            let end = events
                .iter()
                .position(|e| matches!(e, CoreEvent::Disconnected { .. }))
                .unwrap();
            let rest = events
                .iter()
                .position(|e| matches!(e, CoreEvent::Redundant { .. }))
                .unwrap();
            assert!(end < rest);
        }
    }
}

#[test]
fn connections_that_did_not_cross_follow_the_duplicate_rule() {
    let t0 = Instant::now();
    let mut core = Core::<FakeTx>::new(id("bob"), MessagingConfig::default(), t0);
    let first = conn(&mut core, 1, None, "jack", t0);
    let second = conn(&mut core, 2, None, "jack", t0);
    assert!(!first.closed(&mut core));
    assert!(second.closed(&mut core), "RejectNew: the second one goes");
    assert!(rested(&events(&mut core)).is_empty());
}

/// A stand-in (relay) connection gives way to another path in either
/// order, on both sides, whatever the identities and the duplicate
/// policy; what was in flight on it goes out again on the new one.
#[test]
fn a_standby_connection_gives_way_to_any_other_and_never_displaces_one() {
    let t0 = Instant::now();
    for (me, peer) in [("bob", "jack"), ("jack", "bob")] {
        for dialled in [None, Some(5)] {
            // The relay first, then the direct path: the direct one wins.
            let mut core = Core::<FakeTx>::new(id(me), MessagingConfig::default(), t0);
            core.mark_standby(ConnectionId(1)); // before it reaches the core
            let relay = conn(&mut core, 1, None, peer, t0);
            core.send_message(&id(peer), Message::new("in flight"), t0)
                .unwrap();
            assert_eq!(relay.messages().len(), 1);
            let direct = conn(&mut core, 2, dialled, peer, t0);
            assert!(relay.closed(&mut core), "{me}: the relay gives way");
            assert!(!direct.closed(&mut core));
            assert_eq!(direct.messages(), vec![Bytes::from_static(b"in flight")]);

            // The direct path first, then a relay: the relay is refused.
            let mut core = Core::<FakeTx>::new(id(me), MessagingConfig::default(), t0);
            let direct = conn(&mut core, 2, dialled, peer, t0);
            core.handle_connected(ConnectionId(3), FakeTx::default(), t0);
            core.mark_standby(ConnectionId(3)); // after: as good
            let relay = FakeTx::default();
            core.handle_connected(ConnectionId(4), relay.clone(), t0);
            core.mark_standby(ConnectionId(4));
            core.handle_packet(ConnectionId(4), packet(&WEFT), t0);
            core.handle_packet(ConnectionId(4), packet(&Frame::Ident(id(peer))), t0);
            assert!(relay.closed(&mut core), "{me}: a relay never displaces");
            assert!(!direct.closed(&mut core));
        }
    }
}
