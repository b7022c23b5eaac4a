//! What the core gives the shell, on chosen instants: frames in the order
//! decided, held while the connection is full, the bytes it counts for
//! write confirmation, and the connections it ends.

use super::*;

#[test]
fn frames_leave_in_order_and_a_full_connection_holds_them_until_writable() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_batch_end(t0);
    *tx.full.borrow_mut() = true;
    for m in ["a", "b", "c"] {
        core.send_message(&id("bob"), Message::new(m), t0).unwrap();
    }
    let blocked: Vec<ConnectionId> = core.poll_blocked().map(|(c, _)| c).collect();
    assert_eq!(blocked, [ConnectionId(1)], "the shell waits for room once");
    assert!(tx.take().is_empty(), "nothing left while full");
    assert_eq!(core.queue_depth(&id("bob")), 3);

    // Still full when the shell reports room: nothing lost, asked again.
    core.handle_writable(ConnectionId(1), t0);
    assert!(tx.take().is_empty());
    assert_eq!(core.poll_blocked().count(), 1);

    *tx.full.borrow_mut() = false;
    core.send_message(&id("bob"), Message::new("d"), t0)
        .unwrap();
    assert!(tx.take().is_empty(), "behind the blocked ones, not before");
    core.handle_writable(ConnectionId(1), t0);
    let frames = tx.take();
    let datas: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Message { data, .. } => Some(&data[..]),
            _ => None,
        })
        .collect();
    assert_eq!(datas, [b"a", b"b", b"c", b"d"]);
    assert_eq!(frames[0], Frame::Ack(1), "the held-back ACK first");
    assert_eq!(core.poll_blocked().count(), 0);
}

#[test]
fn without_acks_the_bytes_counted_with_the_transport_overhead_settle_each_message() {
    let t0 = Instant::now();
    let mut core = Core::new(id("me"), MessagingConfig::default(), t0);
    let tx = FakeTx::default();
    let facts = ConnFacts {
        overhead: 4,
        ..tx.facts()
    };
    core.handle_connected_with(ConnectionId(1), tx.clone(), facts, t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
    // The transport's count: each packet with its 4-byte prefix.
    let written =
        |frames: &[Frame]| -> u64 { frames.iter().map(|f| 4 + packet(f).len() as u64).sum() };
    let handshake = written(&tx.take());
    for m in ["one", "two"] {
        core.send_message(&id("bob"), Message::new(m).persistent(), t0)
            .unwrap();
    }
    let frames = tx.take();
    assert_eq!(frames.len(), 2);
    let check = core.poll_timeout().expect("a write check is due");

    // One byte short of the first message's end: nothing is delivered.
    *tx.written.borrow_mut() = handshake + written(&frames[..1]) - 1;
    core.handle_timeout(check);
    assert_eq!(core.counters.delivered, 0);

    *tx.written.borrow_mut() = handshake + written(&frames[..1]);
    let check = core.poll_timeout().expect("another check is due");
    core.handle_timeout(check);
    assert_eq!(core.counters.delivered, 1);
    assert_eq!(core.queue_depth(&id("bob")), 1);

    *tx.written.borrow_mut() = handshake + written(&frames);
    let check = core.poll_timeout().expect("another check is due");
    core.handle_timeout(check);
    assert_eq!(core.counters.delivered, 2);
    assert!(core.is_idle());
}

#[test]
fn connections_the_core_gives_up_are_polled_with_how_to_end_them() {
    let t0 = Instant::now();
    let (mut core, _tx) = connected(true, t0);
    let other = FakeTx::default();
    core.handle_connected(ConnectionId(2), other.clone(), t0);
    core.handle_packet(ConnectionId(2), Bytes::from_static(&[3, 1, 2]), t0);
    assert!(core.poll_wake(), "a connection to end wakes the driver");
    let close = core.poll_close().expect("the broken connection");
    assert_eq!((close.conn, close.how), (ConnectionId(2), Ending::Close));
    assert!(core.poll_close().is_none(), "each once");

    // bob's connection goes silent: PING, then an abort.
    let interval = Duration::from_secs(30);
    core.handle_timeout(t0 + interval);
    assert!(core.poll_close().is_none());
    core.handle_timeout(t0 + interval + Duration::from_secs(10));
    let close = core.poll_close().expect("the silent connection");
    assert_eq!((close.conn, close.how), (ConnectionId(1), Ending::Abort));
    assert!(core.poll_close().is_none());
}
