//! The data lane on chosen instants: its messages wait for a lane, travel
//! and are acknowledged on it alone, are resent on the next lane after
//! one ends, and share the connection when there can be no lane.

use super::*;

fn data(s: &'static str) -> Message {
    Message::new(s).on_lane(Lane::Data)
}

/// A core whose connection 1, which can carry lanes (`lanes`), is the
/// identified weft peer `bob`.
fn with_lanes(lanes: bool, now: Instant) -> (Core<FakeTx>, FakeTx) {
    let mut core = Core::new(id("me"), MessagingConfig::default(), now);
    let tx = FakeTx::default();
    let facts = ConnFacts {
        lanes,
        ..ConnFacts::default()
    };
    core.handle_connected_with(ConnectionId(1), tx.clone(), facts, now);
    core.handle_packet(ConnectionId(1), packet(&WEFT), now);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), now);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Connected { .. })
    ));
    tx.take();
    (core, tx)
}

/// Lane `conn` of connection 1 comes up and introduces itself as `who`.
fn lane_up(core: &mut Core<FakeTx>, conn: u64, who: &str, now: Instant) -> FakeTx {
    let tx = FakeTx::default();
    let facts = ConnFacts {
        lane_of: Some(ConnectionId(1)),
        ..ConnFacts::default()
    };
    core.handle_connected_with(ConnectionId(conn), tx.clone(), facts, now);
    assert!(
        matches!(
            &tx.take()[..],
            [Frame::Version(1), Frame::Hello { .. }, Frame::Ident(_)]
        ),
        "a lane introduces itself as any connection does"
    );
    core.handle_packet(ConnectionId(conn), packet(&WEFT), now);
    core.handle_packet(ConnectionId(conn), packet(&Frame::Ident(id(who))), now);
    tx
}

#[test]
fn the_data_lane_waits_for_a_lane_then_travels_and_is_acknowledged_on_it_alone() {
    let t0 = Instant::now();
    let (mut core, tx) = with_lanes(true, t0);
    core.send_message(&id("bob"), Message::new("c1"), t0)
        .unwrap();
    for m in ["d1", "d2"] {
        core.send_message(&id("bob"), data(m), t0).unwrap();
    }
    assert_eq!(tx.messages(), ["c1"], "the data lane waits for its lane");
    assert!(core.poll_wake(), "the shell is woken to open it");
    assert_eq!(core.poll_open_lane(), Some(ConnectionId(1)));
    core.send_message(&id("bob"), data("d3"), t0).unwrap();
    assert_eq!(core.poll_open_lane(), None, "one lane asked for at a time");

    let lane = lane_up(&mut core, 2, "bob", t0);
    assert_eq!(lane.messages(), ["d1", "d2", "d3"]);
    assert!(core.poll_event().is_none(), "a lane is not a new peer");
    core.send_message(&id("bob"), Message::new("c2"), t0)
        .unwrap();
    core.send_message(&id("bob"), data("d4"), t0).unwrap();
    assert_eq!(tx.messages(), ["c2"]);
    assert_eq!(lane.messages(), ["d4"]);
    assert_eq!(core.queue_depth(&id("bob")), 6);

    // Each lane's acks count what was sent on it.
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(2)), t0);
    assert_eq!(core.queue_depth(&id("bob")), 4);
    core.handle_packet(ConnectionId(2), packet(&Frame::Ack(3)), t0);
    assert_eq!(core.queue_depth(&id("bob")), 1);
    core.handle_packet(ConnectionId(2), packet(&Frame::Ack(9)), t0);
    assert_eq!(
        core.queue_depth(&id("bob")),
        0,
        "no more than was in flight"
    );

    // What arrives on the lane is bob's, and acknowledged on the lane.
    core.handle_packet(ConnectionId(2), packet(&message(7, false)), t0);
    core.handle_batch_end(t0);
    assert_eq!(delivered(&mut core), [7]);
    core.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(lane.take(), [Frame::Ack(1)]);
    assert!(tx.take().is_empty());
}

#[test]
fn a_lane_that_ends_has_its_messages_resent_on_the_next() {
    let t0 = Instant::now();
    let (mut core, tx) = with_lanes(true, t0);
    for m in ["d1", "d2"] {
        core.send_message(&id("bob"), data(m), t0).unwrap();
    }
    assert_eq!(core.poll_open_lane(), Some(ConnectionId(1)));
    let lane = lane_up(&mut core, 2, "bob", t0);
    assert_eq!(lane.messages(), ["d1", "d2"]);
    core.handle_packet(ConnectionId(2), packet(&Frame::Ack(1)), t0);

    core.handle_disconnected(ConnectionId(2));
    assert!(core.is_connected(&id("bob")), "the peer is still connected");
    assert!(core.poll_event().is_none(), "and nobody is told otherwise");
    assert_eq!(core.poll_open_lane(), Some(ConnectionId(1)), "asked again");
    core.send_message(&id("bob"), data("d3"), t0).unwrap();
    assert!(tx.messages().is_empty());
    let next = lane_up(&mut core, 3, "bob", t0);
    assert_eq!(
        next.messages_marked(),
        [("d2".into(), true), ("d3".into(), false)],
        "the unacknowledged one again, marked, then the rest, in order"
    );
}

#[test]
fn either_side_may_open_a_lane_and_the_first_to_identify_carries_ours() {
    let t0 = Instant::now();
    let (mut core, _tx) = with_lanes(true, t0);
    core.send_message(&id("bob"), data("d1"), t0).unwrap();
    assert_eq!(core.poll_open_lane(), Some(ConnectionId(1)));
    // bob's lane comes first, then ours: ours only brings bob's messages.
    let theirs = lane_up(&mut core, 2, "bob", t0);
    let ours = lane_up(&mut core, 3, "bob", t0);
    assert_eq!(theirs.messages(), ["d1"]);
    core.send_message(&id("bob"), data("d2"), t0).unwrap();
    assert_eq!(theirs.messages(), ["d2"]);
    assert!(ours.messages().is_empty());
    core.handle_packet(ConnectionId(3), packet(&message(5, false)), t0);
    assert_eq!(delivered(&mut core), [5]);
    // An ack on the lane that carries nothing of ours acknowledges nothing.
    core.handle_packet(ConnectionId(3), packet(&Frame::Ack(2)), t0);
    assert_eq!(core.queue_depth(&id("bob")), 2);
}

#[test]
fn without_lanes_the_data_lane_shares_the_connection() {
    let t0 = Instant::now();
    let (mut core, tx) = with_lanes(false, t0);
    core.send_message(&id("bob"), Message::new("c1"), t0)
        .unwrap();
    core.send_message(&id("bob"), data("d1"), t0).unwrap();
    assert_eq!(tx.messages(), ["c1", "d1"], "in the order sent");
    assert_eq!(core.poll_open_lane(), None);

    // Queued before any connection: the data lane waits on its own, and
    // goes behind the control lane on a connection without lanes.
    let mut core = Core::new(id("me"), MessagingConfig::default(), t0);
    core.send_message(&id("bob"), data("d1"), t0).unwrap();
    core.send_message(&id("bob"), Message::new("c1"), t0)
        .unwrap();
    let tx = FakeTx::default();
    core.handle_connected(ConnectionId(1), tx.clone(), t0);
    core.handle_packet(ConnectionId(1), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
    assert_eq!(tx.messages(), ["c1", "d1"]);
    assert_eq!(core.poll_open_lane(), None);
}

#[test]
fn a_lane_that_cannot_be_opened_sends_the_data_lane_on_the_connection() {
    let t0 = Instant::now();
    let (mut core, tx) = with_lanes(true, t0);
    core.send_message(&id("bob"), data("d1"), t0).unwrap();
    core.send_message(&id("bob"), data("d2"), t0).unwrap();
    assert_eq!(core.poll_open_lane(), Some(ConnectionId(1)));
    core.handle_lane_failed(ConnectionId(1), t0);
    assert_eq!(tx.messages(), ["d1", "d2"]);
    core.send_message(&id("bob"), data("d3"), t0).unwrap();
    assert_eq!(tx.messages(), ["d3"]);
    assert_eq!(core.poll_open_lane(), None, "not asked again");
}

#[test]
fn a_lane_claiming_another_identity_is_closed() {
    let t0 = Instant::now();
    let (mut core, _tx) = with_lanes(true, t0);
    let lane = lane_up(&mut core, 2, "eve", t0);
    assert!(lane.closed(&mut core));
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::ProtocolError {
            error: ProtocolError::LaneIdentity { .. },
            ..
        })
    ));
    core.send_message(&id("eve"), data("d1"), t0).unwrap();
    assert!(lane.messages().is_empty(), "eve has no lane");
}
