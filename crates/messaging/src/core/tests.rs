//! The core on chosen instants, with a fake transmitter.

#![allow(
    clippy::arithmetic_side_effects,
    reason = "tests compute chosen instants and counts of their own"
)]

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::frame::caps;
use crate::message::Flags;

/// Records frames; can refuse (full) and pretend bytes were written.
#[derive(Clone, Default)]
struct FakeTx {
    frames: Rc<RefCell<Vec<Frame>>>,
    full: Rc<RefCell<bool>>,
    accepted: Rc<RefCell<u64>>,
    written: Rc<RefCell<u64>>,
    closed: Rc<RefCell<bool>>,
    aborted: Rc<RefCell<bool>>,
    /// Pretends to be a UDP connection.
    datagram: bool,
    /// Pretends we dialled it with this connector.
    connector: Option<weft_link::ConnectorId>,
}

impl Transmit for FakeTx {
    fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError> {
        if *self.full.borrow() {
            return Err(TxError::Full);
        }
        let packet = Bytes::from([head, &body[..]].concat());
        *self.accepted.borrow_mut() += packet.len() as u64;
        self.frames.borrow_mut().push(Frame::parse(packet).unwrap());
        Ok(())
    }
    fn bytes_written(&self) -> u64 {
        *self.written.borrow()
    }
}

/// Plays the shell's part for the connections `core` ended: marks each
/// one's transmitter closed or aborted.
fn take_closes(core: &mut Core<FakeTx>) {
    while let Some(close) = core.poll_close() {
        match close.how {
            Ending::Close => *close.tx.closed.borrow_mut() = true,
            Ending::Abort => *close.tx.aborted.borrow_mut() = true,
        }
    }
}

impl FakeTx {
    /// What the shell is told of the connection when it comes up.
    fn facts(&self) -> ConnFacts {
        ConnFacts {
            datagram: self.datagram,
            connector: self.connector,
            ..ConnFacts::default()
        }
    }
    /// Whether `core` ended this connection gracefully.
    fn closed(&self, core: &mut Core<FakeTx>) -> bool {
        take_closes(core);
        *self.closed.borrow()
    }
    /// Whether `core` ended this connection at once.
    fn aborted(&self, core: &mut Core<FakeTx>) -> bool {
        take_closes(core);
        *self.aborted.borrow()
    }
    fn take(&self) -> Vec<Frame> {
        std::mem::take(&mut self.frames.borrow_mut())
    }
    fn messages(&self) -> Vec<Bytes> {
        self.messages_marked().into_iter().map(|(d, _)| d).collect()
    }
    /// Messages with whether each was sent as a RESENT frame.
    fn messages_marked(&self) -> Vec<(Bytes, bool)> {
        self.take()
            .into_iter()
            .filter_map(|f| match f {
                Frame::Message { data, resent, .. } => Some((data, resent)),
                _ => None,
            })
            .collect()
    }
}

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

fn packet(f: &Frame) -> Bytes {
    let (head, body) = f.encode();
    Bytes::from([head.as_slice(), &body[..]].concat())
}

const WEFT: Frame = Frame::Hello {
    version: 1,
    capabilities: caps::ACKS | caps::PUBSUB,
};

/// A core whose connection 1 is an identified peer `bob`.
fn connected(weft: bool, now: Instant) -> (Core<FakeTx>, FakeTx) {
    let mut core = Core::new(id("me"), MessagingConfig::default(), now);
    let tx = FakeTx::default();
    core.handle_connected(ConnectionId(1), tx.clone(), now);
    assert!(matches!(
        &tx.take()[..],
        [Frame::Version(1), Frame::Hello { .. }, Frame::Ident(_)]
    ));
    if weft {
        core.handle_packet(ConnectionId(1), packet(&WEFT), now);
    }
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), now);
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Connected { .. })
    ));
    (core, tx)
}

#[test]
fn unacked_messages_are_resent_in_order_after_a_drop() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    for m in ["1", "2", "3"] {
        core.send_message(&id("bob"), Message::new(m), t0).unwrap();
    }
    assert_eq!(tx.messages(), ["1", "2", "3"]);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ack(1)), t0);
    assert_eq!(core.counters.delivered, 1);
    assert!(core.poll_progress());
    assert!(
        core.poll_event().is_none(),
        "nothing stored: nothing for storage"
    );
    assert_eq!(core.queue_depth(&id("bob")), 2);
    core.handle_disconnected(ConnectionId(1));
    assert!(matches!(
        core.poll_event(),
        Some(CoreEvent::Disconnected { .. })
    ));

    let tx2 = FakeTx::default();
    core.handle_connected(ConnectionId(2), tx2.clone(), t0);
    core.handle_packet(ConnectionId(2), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(2), packet(&Frame::Ident(id("bob"))), t0);
    assert_eq!(
        tx2.messages_marked(),
        [("2".into(), true), ("3".into(), true)],
        "only the unacknowledged, in order, marked as RESENT"
    );
    assert_eq!(core.counters.resent, 2);
    core.send_message(&id("bob"), Message::new("4"), t0)
        .unwrap();
    assert_eq!(tx2.messages_marked(), [("4".into(), false)]);
    // Acks count per connection, from its start.
    core.handle_packet(ConnectionId(2), packet(&Frame::Ack(3)), t0);
    assert!(core.is_idle());
    assert_eq!(core.counters.acked, 4);
}

fn message(n: u8, resent: bool) -> Frame {
    Frame::Message {
        id: MessageId([n; 16]),
        ttl: None,
        flags: Flags(0),
        data: Bytes::from_static(b"data"),
        resent,
    }
}

/// The ids of the messages the core delivered.
fn delivered(core: &mut Core<FakeTx>) -> Vec<u8> {
    std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            CoreEvent::Message { message, .. } => Some(message.id.0[0]),
            _ => None,
        })
        .collect()
}

#[test]
fn resent_duplicates_from_weft_peers_are_dropped_and_still_acked() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    core.handle_packet(ConnectionId(1), packet(&message(9, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(8, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(9, true)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(7, true)), t0);
    core.handle_batch_end(t0);
    assert_eq!(delivered(&mut core), [9, 8, 7]);
    assert_eq!(core.counters.duplicates, 1);
    core.handle_timeout(t0 + MessagingConfig::default().ack_delay);
    assert!(tx.take().contains(&Frame::Ack(4)));
}

#[test]
fn acks_wait_for_an_outgoing_message_or_the_delay() {
    let t0 = Instant::now();
    let delay = MessagingConfig::default().ack_delay;
    let (mut core, tx) = connected(true, t0);
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_batch_end(t0);
    assert!(tx.take().is_empty(), "held back");
    assert_eq!(core.poll_timeout(), Some(t0 + delay));
    // A reply carries it: ACK first, in the same write.
    core.send_message(&id("bob"), Message::new("reply"), t0)
        .unwrap();
    let frames = tx.take();
    assert!(matches!(
        &frames[..],
        [Frame::Ack(1), Frame::Message { .. }]
    ));
    core.handle_timeout(t0 + delay);
    assert!(tx.take().is_empty(), "sent once");

    // Nothing to carry it: it leaves when due.
    core.handle_packet(ConnectionId(1), packet(&message(2, false)), t0 + delay);
    core.handle_batch_end(t0 + delay);
    assert!(tx.take().is_empty());
    core.handle_timeout(t0 + delay * 2 - Duration::from_nanos(1));
    assert!(tx.take().is_empty(), "not yet due");
    core.handle_timeout(t0 + delay * 2);
    assert_eq!(tx.take(), [Frame::Ack(2)]);

    // A long run of messages is acknowledged at once.
    for n in 0..ACK_EVERY {
        core.handle_packet(ConnectionId(1), packet(&message(n as u8, false)), t0);
    }
    core.handle_batch_end(t0);
    assert_eq!(tx.take(), [Frame::Ack(2 + ACK_EVERY)]);
}

#[test]
fn a_deadline_the_driver_has_read_wakes_no_one() {
    let t0 = Instant::now();
    let (mut core, _tx) = connected(true, t0);
    // A batch holds back its ACK: the deadline moved.
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_batch_end(t0);
    // The driver takes the events and arms its timer with the deadline
    // before any sender comes.
    while core.poll_event().is_some() {}
    assert!(core.poll_timeout().is_some());
    core.send_message(&id("bob"), Message::new("reply"), t0)
        .unwrap();
    assert!(!core.poll_wake(), "the driver already knows the deadline");

    // A move the driver has not read yet wakes it, once.
    core.handle_packet(ConnectionId(1), packet(&message(2, false)), t0);
    core.handle_batch_end(t0);
    while core.poll_event().is_some() {}
    core.send_message(&id("bob"), Message::new("another"), t0)
        .unwrap();
    assert!(core.poll_wake());
    assert!(!core.poll_wake());
}

#[test]
fn a_zero_ack_delay_acknowledges_every_batch() {
    let t0 = Instant::now();
    let mut core: Core<FakeTx> = Core::new(
        id("me"),
        MessagingConfig {
            ack_delay: Duration::ZERO,
            ..MessagingConfig::default()
        },
        t0,
    );
    let tx = FakeTx::default();
    core.handle_connected(ConnectionId(1), tx.clone(), t0);
    core.handle_packet(ConnectionId(1), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
    tx.take();
    core.handle_packet(ConnectionId(1), packet(&message(1, false)), t0);
    core.handle_batch_end(t0);
    assert_eq!(tx.take(), [Frame::Ack(1)]);
}

#[test]
fn purging_drops_what_waits_and_forgets_a_gone_identity() {
    let t0 = Instant::now();
    let mut core: Core<FakeTx> = Core::new(id("me"), MessagingConfig::default(), t0);
    core.send_message(&id("gone"), Message::new("a").persistent(), t0)
        .unwrap();
    core.send_message(&id("gone"), Message::new("b"), t0)
        .unwrap();
    assert_eq!(core.purge(&id("gone")), 2);
    assert_eq!(core.counters.dropped, 2);
    assert!(
        matches!(core.poll_event(), Some(CoreEvent::Settled { .. })),
        "storage forgets the persistent one"
    );
    assert!(core.poll_event().is_none());
    assert!(core.queue_depths().is_empty());
    assert_eq!(core.purge(&id("never")), 0);
}

#[test]
fn only_resent_frames_are_checked() {
    let t0 = Instant::now();
    let (mut core, _tx) = connected(true, t0);
    // A sender may reuse an id it chose; only RESENT marks a repeat.
    core.handle_packet(ConnectionId(1), packet(&message(5, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(5, false)), t0);
    assert_eq!(delivered(&mut core), [5, 5]);
    assert_eq!(core.counters.duplicates, 0);
}

#[test]
fn peers_without_acks_are_not_checked() {
    // Without acks nothing is sent twice: the window is not used.
    let t0 = Instant::now();
    let config = MessagingConfig {
        acks: false,
        ..MessagingConfig::default()
    };
    let mut core: Core<FakeTx> = Core::new(id("me"), config, t0);
    let tx = FakeTx::default();
    core.handle_connected(ConnectionId(1), tx.clone(), t0);
    core.handle_packet(ConnectionId(1), packet(&WEFT), t0);
    core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
    core.handle_packet(ConnectionId(1), packet(&message(3, false)), t0);
    core.handle_packet(ConnectionId(1), packet(&message(3, true)), t0);
    core.handle_batch_end(t0);
    assert_eq!(delivered(&mut core), [3, 3]);
    assert!(
        !tx.take().iter().any(|f| matches!(f, Frame::Ack(_))),
        "no acks offered, none sent"
    );
}

#[test]
fn restored_messages_are_marked_resent_only_to_peers_with_acks() {
    let t0 = Instant::now();
    for weft in [true, false] {
        let mut core: Core<FakeTx> = Core::new(id("me"), MessagingConfig::default(), t0);
        let m = Message::new("stored").persistent();
        core.restore(id("bob"), Entry::new(m, t0), t0);
        let tx = FakeTx::default();
        core.handle_connected(ConnectionId(1), tx.clone(), t0);
        tx.take();
        if weft {
            core.handle_packet(ConnectionId(1), packet(&WEFT), t0);
        }
        core.handle_packet(ConnectionId(1), packet(&Frame::Ident(id("bob"))), t0);
        assert_eq!(tx.messages_marked(), [("stored".into(), weft)]);
        assert_eq!(core.counters.resent, 0, "restored is not resent");
    }
}

#[test]
fn without_acks_a_message_is_delivered_once_written() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(false, t0);
    let m = Message::new("x").persistent();
    let stored = m.id;
    core.send_message(&id("bob"), m, t0).unwrap();
    assert_eq!(core.queue_depth(&id("bob")), 1, "in flight until written");
    let check = core.poll_timeout().expect("a write check is due");
    *tx.written.borrow_mut() = *tx.accepted.borrow();
    core.handle_timeout(check);
    assert!(matches!(core.poll_event(), Some(CoreEvent::Settled { id }) if id == stored));
    assert!(core.is_idle());
    assert!(
        !tx.take().iter().any(|f| matches!(f, Frame::Ack(_))),
        "no extension frames"
    );
}

#[test]
fn ttl_expires_exactly_at_the_sweep_after_the_deadline() {
    let t0 = Instant::now();
    let mut core: Core<FakeTx> = Core::new(id("me"), MessagingConfig::default(), t0);
    let m = Message::new("soon")
        .with_ttl(Duration::from_millis(1500))
        .persistent();
    core.send_message(&id("away"), m, t0).unwrap();
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    core.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(core.counters.expired, 0);
    core.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(core.counters.expired, 1);
    assert!(matches!(core.poll_event(), Some(CoreEvent::Settled { .. })));
    assert_eq!(core.poll_timeout(), None, "nothing left to sweep");
}

#[test]
fn a_full_connection_blocks_until_ready() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    *tx.full.borrow_mut() = true;
    core.send_message(&id("bob"), Message::new("a"), t0)
        .unwrap();
    assert_eq!(core.poll_blocked().len(), 1);
    core.send_message(&id("bob"), Message::new("b"), t0)
        .unwrap();
    assert!(core.poll_blocked().next().is_none(), "already waiting");
    *tx.full.borrow_mut() = false;
    core.handle_writable(ConnectionId(1), t0);
    assert_eq!(tx.messages(), ["a", "b"]);
}

#[test]
fn keepalive_pings_then_aborts() {
    let t0 = Instant::now();
    let (mut core, tx) = connected(true, t0);
    tx.take();
    let interval = Duration::from_secs(30);
    core.handle_timeout(t0 + interval);
    assert_eq!(tx.take(), [Frame::Ping]);
    core.handle_timeout(t0 + interval + Duration::from_secs(9));
    assert!(!tx.aborted(&mut core));
    core.handle_timeout(t0 + interval + Duration::from_secs(10));
    assert!(
        tx.aborted(&mut core),
        "a silent peer's connection ends at once"
    );
    assert!(!tx.closed(&mut core), "not a graceful close");
}

mod binding;
mod crossed;
mod datagram;
mod hardening;
mod lanes;
mod output;
