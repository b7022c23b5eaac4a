//! Datagram connections on chosen instants: a peer that restarts on the
//! same addresses is met again, and keep-alive ends a silent one.

use super::*;

/// A core whose datagram connection 1 is an identified weft peer `bob`.
fn connected_datagram(now: Instant) -> (Core<FakeTx>, FakeTx) {
    let mut core = Core::new(id("me"), MessagingConfig::default(), now);
    let tx = FakeTx {
        datagram: true,
        ..FakeTx::default()
    };
    core.handle_connected_with(ConnectionId(1), tx.clone(), tx.facts(), now);
    core.handle_packet(ConnectionId(1), packet(&WEFT), now);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), now);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Connected { .. })
    ));
    tx.take();
    (core, tx)
}

/// `bob`'s greeting, as a restarted peer sends it.
fn greeting(core: &mut Core<FakeTx>, now: Instant) {
    for frame in [Frame::Version(1), WEFT, Frame::Ident(id("bob"))] {
        core.handle_packet(ConnectionId(1), packet(&frame), now);
    }
}

#[test]
fn a_peer_that_started_over_is_met_again_and_gets_what_it_did_not_acknowledge() {
    let t0 = Instant::now();
    let (mut core, tx) = connected_datagram(t0);
    for m in ["1", "2", "3"] {
        core.send_message(&id("bob"), Message::new(m), t0).unwrap();
    }
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(1)), t0);
    assert_eq!(tx.messages(), ["1", "2", "3"]);

    // bob restarted on its port: its greeting arrives on the same
    // connection.
    let t1 = t0 + Duration::from_secs(1);
    core.handle_packet(ConnectionId(1), packet(&Frame::Version(1)), t1);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Disconnected { ident }) if ident == id("bob")
    ));
    assert!(core.connected().is_empty());
    assert!(
        matches!(
            &tx.take()[..],
            [Frame::Version(1), Frame::Hello { .. }, Frame::Ident(me)] if *me == id("me")
        ),
        "answered with a handshake of our own"
    );
    core.handle_packet(ConnectionId(1), packet(&WEFT), t1);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t1);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Connected { ident }) if ident == id("bob")
    ));
    assert_eq!(
        tx.messages_marked(),
        [("2".into(), true), ("3".into(), true)],
        "the unacknowledged, in order, as RESENT"
    );
    assert!(!tx.closed(&mut core));
    // Acks count from the new start.
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(2)), t1);
    assert!(core.is_idle());
    assert_eq!(core.counters.delivered, 3);
    assert_eq!(core.counters.resent, 2);
    assert_eq!(core.counters.protocol_errors, 0);
}

#[test]
fn what_a_peer_that_started_over_receives_counts_from_its_new_start() {
    let t0 = Instant::now();
    let (mut core, tx) = connected_datagram(t0);
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(2, false)), t0);
    greeting(&mut core, t0);
    core.handle_packet(ConnectionId(1), packet(&message(3, false)), t0);
    core.handle_batch_end(t0);
    core.handle_timeout(t0 + Duration::from_millis(1));
    let acks: Vec<Frame> = tx
        .take()
        .into_iter()
        .filter(|f| matches!(f, Frame::Ack(_)))
        .collect();
    assert_eq!(acks, [Frame::Ack(1)], "one message since the new start");
}

#[test]
fn a_restarted_listener_drops_messages_before_ident_and_waits_for_it() {
    let t0 = Instant::now();
    let mut core = Core::new(id("me"), MessagingConfig::default(), t0);
    let tx = FakeTx {
        datagram: true,
        ..FakeTx::default()
    };
    // The old peer's next datagram makes the connection: it is greeted,
    // which asks the peer to identify again.
    core.handle_connected_with(ConnectionId(1), tx.clone(), tx.facts(), t0);
    assert!(matches!(
        &tx.take()[..],
        [Frame::Version(1), Frame::Hello { .. }, Frame::Ident(_)]
    ));
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(2, false)), t0);
    assert!(core.poll_event().is_none(), "dropped, no protocol error");
    assert!(!tx.closed(&mut core));
    assert!(tx.take().is_empty(), "no second greeting");

    greeting(&mut core, t0);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Connected { .. })
    ));
    assert!(tx.take().is_empty(), "the greeting was sent already");
    core.handle_packet(ConnectionId(1), packet(&message(1, true)), t0);
    assert!(matches!(core.poll_event(), Some(CoreEvent::Message { .. })));
    assert_eq!(core.counters.protocol_errors, 0);
}

#[test]
fn streams_keep_snakemqs_rules() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    tx.take();
    // A second VERSION on a stream changes nothing.
    greeting(&mut core, t0);
    assert!(core.poll_event().is_none());
    assert!(tx.take().is_empty());
    assert_eq!(core.connected(), [id("bob")]);

    // MESSAGE before IDENT on a stream closes it.
    let tx2 = FakeTx::default();
    core.handle_connected(ConnectionId(2), tx2.clone(), t0);
    core.handle_packet(ConnectionId(2), packet(&message(1, false)), t0);
    assert!(tx2.closed(&mut core));
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::ProtocolError {
            error: ProtocolError::MessageBeforeIdent,
            ..
        })
    ));
}

#[test]
fn keepalive_ends_a_silent_datagram_connection() {
    let t0 = Instant::now();
    let (mut core, tx) = connected_datagram(t0);
    let interval = Duration::from_secs(30);
    assert_eq!(core.poll_timeout(), Some(t0 + interval));
    core.handle_timeout(t0 + interval);
    assert_eq!(tx.take(), [Frame::Ping]);
    core.handle_timeout(t0 + interval + Duration::from_secs(10));
    assert!(tx.aborted(&mut core));
    core.handle_disconnected(ConnectionId(1));
    let events: Vec<CoreEvent> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(
        matches!(
            &events[..],
            [
                CoreEvent::ProtocolError {
                    error: ProtocolError::KeepaliveTimeout,
                    ..
                },
                CoreEvent::Disconnected { .. }
            ]
        ),
        "{events:?}"
    );
}
