//! The core under the attacks of issue 16, on chosen instants: each test
//! asserts the bound that holds now.

use super::*;
use crate::config::QueuePolicy;

#[test]
fn a_protocol_error_stops_everything_read_after_it() {
    let t0 = Instant::now();
    let mut core = Core::new(id("me"), MessagingConfig::default(), t0);
    let tx = FakeTx::default();
    core.handle_connected(ConnectionId(1), tx.clone(), t0);
    // One read brings a frame that does not parse, then an IDENT and a
    // MESSAGE: the first closes the connection, the others do nothing.
    core.handle_packet(ConnectionId(1), Bytes::from_static(&[3, 1, 2]), t0);
    core.handle_packet(ConnectionId(1), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_batch_end(t0);
    assert!(tx.closed(&mut core));
    let events: Vec<CoreEvent> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(
        matches!(&events[..], [CoreEvent::ProtocolError { ident: None, .. }]),
        "{events:?}"
    );
    assert!(core.connected().is_empty());
    assert_eq!(core.counters.received, 0);
    assert_eq!(core.counters.protocol_errors, 1);
}

#[test]
fn a_protocol_error_after_ident_stops_later_messages() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_packet(ConnectionId(1), Bytes::new(), t0);
    core.handle_packet(ConnectionId(1), packet(&message(2, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ping), t0);
    assert!(tx.closed(&mut core));
    assert_eq!(delivered(&mut core), [1]);
    assert!(!tx.take().contains(&Frame::Pong));
    // A keep-alive never fails it a second time.
    core.handle_timeout(t0 + Duration::from_secs(3600));
    core.handle_timeout(t0 + Duration::from_secs(7200));
    assert_eq!(core.counters.protocol_errors, 1);
}

#[test]
fn a_ttl_too_long_for_the_clock_saturates() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    let forever = Message::new("x").with_ttl(Duration::from_secs(u64::MAX));
    core.send_message(&id("bob"), forever.clone(), t0).unwrap();
    // Queued for someone absent: the TTL sweep runs over it.
    core.send_message(&id("carol"), forever, t0).unwrap();
    core.handle_timeout(t0 + Duration::from_secs(1));
    assert!(core.poll_timeout().is_some());
    let ttls: Vec<Option<u32>> = tx
        .take()
        .into_iter()
        .filter_map(|f| match f {
            Frame::Message { ttl, .. } => Some(ttl),
            _ => None,
        })
        .collect();
    // Saturated to decades (beyond what Instant holds nothing is sent).
    assert!(
        matches!(ttls[..], [Some(s)] if s > 3_000_000_000),
        "{ttls:?}"
    );
    assert_eq!(core.queue_depth(&id("carol")), 1);
    assert_eq!(core.counters.expired, 0);
}

#[test]
fn counts_and_durations_from_the_network_never_panic() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    core.send_message(&id("bob"), Message::new("x"), t0)
        .unwrap();
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(u64::MAX)), t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(u64::MAX)), t0);
    assert_eq!(core.counters.delivered, 1);
    let longest = Frame::Message {
        id: MessageId([1; 16]),
        ttl: Some(u32::MAX - 1),
        flags: Flags(0),
        data: Bytes::new(),
        resent: false,
    };
    core.handle_packet(ConnectionId(1), packet(&longest), t0);
    assert_eq!(delivered(&mut core), [1]);
    tx.take();
}

#[test]
fn duplicates_are_detected_per_sender() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    let tx2 = FakeTx::default();
    core.handle_connected(ConnectionId(2), tx2.clone(), t0);
    core.handle_packet(ConnectionId(2), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(2), packet(&Frame::Ident(id("carol"))), t0);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Connected { .. })
    ));
    // carol sends id 7 first; bob's resend of his own 7 is still new, and
    // acknowledged as every message is.
    core.handle_packet(ConnectionId(2), packet(&message(7, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(7, true)), t0);
    assert_eq!(delivered(&mut core), [7, 7]);
    assert_eq!(core.counters.duplicates, 0);
    // A real repeat from the same sender is still caught.
    core.handle_packet(ConnectionId(1), packet(&message(7, true)), t0);
    core.handle_packet(ConnectionId(2), packet(&message(7, true)), t0);
    assert!(delivered(&mut core).is_empty());
    assert_eq!(core.counters.duplicates, 2);
    core.handle_batch_end(t0);
    core.handle_timeout(t0 + MessagingConfig::default().ack_delay);
    assert!(tx.take().contains(&Frame::Ack(2)));
    assert!(tx2.take().contains(&Frame::Ack(2)));
}

#[test]
fn a_sender_is_known_again_after_it_reconnects() {
    let t0 = Instant::now();
    let (mut core, _tx) = connected(true, t0);
    core.handle_packet(ConnectionId(1), packet(&message(5, false)), t0);
    core.handle_disconnected(ConnectionId(1));
    let tx2 = FakeTx::default();
    core.handle_connected(ConnectionId(2), tx2, t0);
    core.handle_packet(ConnectionId(2), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(2), packet(&Frame::Ident(id("bob"))), t0);
    core.handle_packet(ConnectionId(2), packet(&message(5, true)), t0);
    assert_eq!(delivered(&mut core), [5]);
    assert_eq!(core.counters.duplicates, 1);
}

#[test]
fn a_message_too_large_for_a_packet_is_refused_and_blocks_nothing() {
    let t0 = Instant::now();
    let mut config = MessagingConfig::default();
    config.packeter.max_packet = 100;
    let mut core = Core::<FakeTx>::new(id("me"), config, t0);
    let max = 100 - crate::frame::MESSAGE_HEAD_LEN;
    let big = Message::new(vec![0u8; max + 1]);
    assert_eq!(
        core.send_message(&id("bob"), big, t0),
        Err(Refused::TooLarge { size: max + 1, max })
    );
    assert_eq!(core.queue_depth(&id("bob")), 0);
    core.send_message(&id("bob"), Message::new(vec![1u8; max]), t0)
        .unwrap();
    // To ourselves nothing goes on the wire: no limit.
    core.send_message(&id("me"), Message::new(vec![2u8; 1000]), t0)
        .unwrap();
    assert_eq!(core.queue_depth(&id("bob")), 1);
}

/// Connection `n` comes up and sends VERSION and HELLO, never IDENT.
fn silent_conn(core: &mut Core<FakeTx>, n: u64, now: Instant) -> FakeTx {
    let tx = FakeTx::default();
    core.handle_connected(ConnectionId(n), tx.clone(), now);
    core.handle_packet(ConnectionId(n), packet(&Frame::Version(1)), now);
    core.handle_packet(ConnectionId(n), packet(&WEFT), now);
    tx
}

#[test]
fn a_connection_that_never_identifies_is_closed_at_the_handshake_deadline() {
    let t0 = Instant::now();
    let (mut core, bob) = connected(true, t0);
    core.config.keepalive_interval = Some(Duration::from_secs(2));
    let silent = silent_conn(&mut core, 2, t0);
    let deadline = t0 + Duration::from_secs(10);
    // It answers every PING, which keeps it alive but does not identify it.
    let mut t = t0;
    while t + Duration::from_secs(2) < deadline {
        t += Duration::from_secs(2);
        core.handle_timeout(t);
        core.handle_packet(ConnectionId(2), packet(&Frame::Pong), t);
        core.handle_packet(ConnectionId(1), packet(&Frame::Pong), t);
        assert!(!silent.closed(&mut core));
    }
    assert_eq!(core.poll_timeout(), Some(deadline));
    core.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!silent.closed(&mut core));
    core.handle_timeout(deadline);
    assert!(silent.closed(&mut core));
    assert!(
        !bob.closed(&mut core),
        "identified connections have no deadline"
    );
    assert_eq!(core.counters.handshake_timeouts, 1);
    assert!(core.poll_timeout() > Some(deadline));
    let errors: Vec<ProtocolError> = std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            CoreEvent::ProtocolError { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [ProtocolError::HandshakeTimeout(Duration::from_secs(10))]
    );
}

#[test]
fn unidentified_connections_past_the_cap_close_the_oldest_and_never_an_identified_one() {
    let t0 = Instant::now();
    let (mut core, bob) = connected(true, t0);
    core.config.max_unidentified = 3;
    let silent: Vec<FakeTx> = (2..7).map(|n| silent_conn(&mut core, n, t0)).collect();
    let closed: Vec<bool> = silent.iter().map(|tx| tx.closed(&mut core)).collect();
    assert_eq!(closed, [true, true, false, false, false]);
    assert_eq!(core.counters.unidentified_evicted, 2);
    assert!(!bob.closed(&mut core));
    // A real peer still gets in: it identifies at once, and the oldest
    // silent one made room for it.
    let carol = silent_conn(&mut core, 7, t0);
    core.handle_packet(ConnectionId(7), packet(&Frame::Ident(id("carol"))), t0);
    assert!(!carol.closed(&mut core));
    assert!(*silent[2].closed.borrow());
    assert_eq!(core.connected().len(), 2);
    // Identified, it no longer counts, and an ended one frees its place:
    // room for one more.
    core.handle_disconnected(ConnectionId(5));
    let more = silent_conn(&mut core, 8, t0);
    assert!(!more.closed(&mut core));
    assert_eq!(core.counters.unidentified_evicted, 3);
    assert_eq!(core.unidentified_count, 2);
}

/// Connection `n` comes up as a weft peer and identifies as `name`.
fn peer_conn(core: &mut Core<FakeTx>, n: u64, name: &str, now: Instant) -> FakeTx {
    let tx = silent_conn(core, n, now);
    core.handle_packet(ConnectionId(n), packet(&Frame::Ident(id(name))), now);
    tx
}

#[test]
fn identities_with_nothing_queued_are_forgotten_and_their_number_is_bounded() {
    let t0 = Instant::now();
    let mut core = Core::<FakeTx>::new(id("me"), MessagingConfig::default(), t0);
    core.config.max_identities = 3;
    for n in 0..1000 {
        peer_conn(&mut core, n, &format!("p{n}"), t0);
        core.handle_disconnected(ConnectionId(n));
    }
    assert_eq!(core.peers.len(), 0, "every identity ever seen stayed");
    core.send_message(&id("absent"), Message::new("x"), t0)
        .unwrap();
    peer_conn(&mut core, 1001, "one", t0);
    peer_conn(&mut core, 1002, "two", t0);
    let refused = peer_conn(&mut core, 1003, "three", t0);
    assert!(refused.closed(&mut core));
    assert_eq!(core.counters.identities_refused, 1);
    // An identity already remembered still gets in, and its message leaves.
    let absent = peer_conn(&mut core, 1004, "absent", t0);
    assert!(!absent.closed(&mut core));
    assert_eq!(absent.messages(), ["x"]);
    assert_eq!(core.peers.len(), 3);
}

#[test]
fn queued_bytes_are_bounded_across_all_identities() {
    let t0 = Instant::now();
    let (mut core, _tx) = connected(true, t0);
    core.config.max_total_queue_bytes = 10;
    let m = |n: usize| Message::new(vec![0u8; n]);
    core.send_message(&id("a"), m(6), t0).unwrap();
    core.send_message(&id("b"), m(4), t0).unwrap();
    assert_eq!(core.counters.queued_bytes, 10);
    assert_eq!(
        core.send_message(&id("c"), m(1), t0),
        Err(Refused::AllQueuesFull)
    );
    assert_eq!(core.counters.all_queues_full, 1);
    // Drop-oldest makes room from the destination's own queue only.
    core.config.queue_policy = QueuePolicy::DropOldest;
    core.send_message(&id("a"), m(3), t0).unwrap();
    assert_eq!(core.queue_depth(&id("b")), 1);
    assert_eq!(core.counters.dropped, 1);
    assert_eq!(core.counters.queued_bytes, 7);
    assert_eq!(
        core.send_message(&id("c"), m(4), t0),
        Err(Refused::AllQueuesFull),
        "c has nothing of its own to drop"
    );
    // What is delivered leaves the bound.
    core.send_message(&id("bob"), m(3), t0).unwrap();
    assert_eq!(core.counters.queued_bytes, 10);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(1)), t0);
    assert_eq!(core.counters.queued_bytes, 7);
    assert_eq!(core.purge(&id("a")), 1);
    assert_eq!(core.purge(&id("b")), 1);
    assert_eq!(core.counters.queued_bytes, 0);
}

#[test]
fn overlong_subscribe_filters_are_refused_before_they_are_kept() {
    let t0 = Instant::now();
    let (mut core, _tx) = connected(true, t0);
    let long = "x".repeat(topics::MAX_REMOTE_FILTER + 1);
    core.handle_packet(
        ConnectionId(1),
        packet(&Frame::Subscribe(FilterKind::Prefix, long)),
        t0,
    );
    assert!(core.poll_event().is_none());
    assert_eq!(core.counters.filters_refused, 1);
}
