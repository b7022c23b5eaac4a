//! Relay channels: reaches, forwarding within the window and the rate,
//! the total cap, closing, and the bound on channels per registration.

use super::*;

#[test]
fn reach_opens_one_channel_for_both_and_a_second_reach_adds_none() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.register(A, "a");
    h.register(B, "b");
    h.out();
    h.send(0, A, Frame::Reach { peer: id("b") }).unwrap();
    let window = 64 * 1024;
    assert_eq!(
        h.out(),
        vec![
            frame(
                A,
                Frame::RelayOpen {
                    channel: 1,
                    peer: id("b"),
                    window
                }
            ),
            frame(
                B,
                Frame::RelayOpen {
                    channel: 1,
                    peer: id("a"),
                    window
                }
            ),
        ]
    );
    h.send(0, B, Frame::Reach { peer: id("a") }).unwrap();
    assert!(h.out().is_empty());
    assert_eq!(h.core.stats().channels, 1);
    h.send(0, A, Frame::Reach { peer: id("a") }).unwrap();
    assert_eq!(
        h.out(),
        vec![frame(
            A,
            Frame::Unreachable {
                peer: id("a"),
                reason: UnreachableReason::SelfReach
            }
        )]
    );
}

#[test]
fn a_reach_waits_for_the_identity_to_register() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.register(A, "a");
    h.send(0, A, Frame::Reach { peer: id("b") }).unwrap();
    h.out();
    h.register(B, "b");
    let out = h.out();
    assert!(out.contains(&frame(
        A,
        Frame::RelayOpen {
            channel: 1,
            peer: id("b"),
            window: 64 * 1024
        }
    )));
    assert!(out.iter().any(|t| matches!(
        t,
        Transmit::Frame {
            conn: B,
            frame: Frame::RelayOpen { .. }
        }
    )));
}

#[test]
fn waiting_reaches_are_bounded() {
    let config = RendezvousConfig {
        max_pending_reaches: 1,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::new(config);
    h.register(A, "a");
    h.out();
    h.send(0, A, Frame::Reach { peer: id("x") }).unwrap();
    h.send(0, A, Frame::Reach { peer: id("y") }).unwrap();
    assert_eq!(
        h.out(),
        vec![frame(
            A,
            Frame::Unreachable {
                peer: id("y"),
                reason: UnreachableReason::TooManyPending
            }
        )]
    );
}

#[test]
fn data_is_forwarded_and_the_window_granted_back() {
    let mut h = Harness::pair(RendezvousConfig::default());
    h.send(0, A, data(1, b"hello")).unwrap();
    assert_eq!(
        h.out(),
        vec![
            frame(B, data(1, b"hello")),
            // Nothing else held: all of it granted back at once.
            frame(
                A,
                Frame::RelayWindow {
                    channel: 1,
                    credit: 5
                }
            )
        ]
    );
    assert_eq!(h.core.stats().relayed_bytes, 5);
    // Data from a connection that is no end of the channel goes nowhere.
    h.register(C, "c");
    h.out();
    h.send(0, C, data(1, b"intruder")).unwrap();
    assert!(h.out().is_empty());
}

#[test]
fn without_credit_from_the_receiver_data_is_held_not_dropped() {
    let config = RendezvousConfig {
        relay_window: 8,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::pair(config);
    h.send(0, A, data(1, b"12345678")).unwrap();
    let out = h.out();
    assert_eq!(data_to(&out, B), 8);
    // B granted nothing back yet: A's next bytes wait at the rendezvous.
    h.send(0, A, data(1, b"abcd")).unwrap();
    assert_eq!(data_to(&h.out(), B), 0);
    h.send(
        0,
        B,
        Frame::RelayWindow {
            channel: 1,
            credit: 2,
        },
    )
    .unwrap();
    let out = h.out();
    assert_eq!(out[0], frame(B, data(1, b"ab")));
    h.send(
        0,
        B,
        Frame::RelayWindow {
            channel: 1,
            credit: 8,
        },
    )
    .unwrap();
    assert_eq!(h.out()[0], frame(B, data(1, b"cd")));
}

#[test]
fn overrunning_the_window_closes_the_channel() {
    let config = RendezvousConfig {
        relay_window: 4,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::pair(config);
    h.send(0, A, data(1, b"12345")).unwrap();
    let out = h.out();
    for conn in [A, B] {
        assert!(out.contains(&frame(
            conn,
            Frame::RelayClose {
                channel: 1,
                reason: CloseReason::FlowViolation
            }
        )));
    }
    assert_eq!(h.core.stats().flow_violations, 1);
    assert_eq!(h.core.stats().channels, 0);
}

#[test]
fn the_rate_holds_bytes_back_until_tokens_refill() {
    // 10 000 B/s: a burst of 1 024 bytes, then about 10 bytes a ms.
    let config = RendezvousConfig {
        relay_rate: 10_000,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::pair(config);
    let big = Bytes::from(vec![7u8; 4096]);
    h.send(
        0,
        A,
        Frame::RelayData {
            channel: 1,
            data: big,
        },
    )
    .unwrap();
    let out = h.out();
    assert_eq!(data_to(&out, B), 1024);
    // Not all forwarded: A is granted back only a quarter window's worth
    // at a time, so it cannot run ahead of the rate.
    assert_eq!(credit_to(&out, A), 0);
    assert_eq!(h.core.stats().rate_waits, 1);
    let wake = h.core.poll_timeout(h.t0).expect("held back by the rate");
    assert!(wake > h.t0 && wake <= h.at(2), "{wake:?}");
    // Every 100 ms, 1 000 more bytes (the burst caps what accrues).
    for ms in [100, 200, 300] {
        h.core.handle_timeout(h.at(ms));
        let out = h.out();
        assert_eq!(data_to(&out, B), 1000, "at {ms} ms");
        assert_eq!(credit_to(&out, A), 0);
    }
    // Then the last 72 bytes, and A gets its whole window back.
    h.core.handle_timeout(h.at(1_000));
    let out = h.out();
    assert_eq!(data_to(&out, B), 72);
    assert_eq!(credit_to(&out, A), 4096);
    assert_eq!(h.core.poll_timeout(h.at(1_000)), None);
    assert_eq!(h.core.stats().relayed_bytes, 4096);
}

#[test]
fn at_the_total_cap_the_channel_closes_and_stays_closed_for_the_pair() {
    let config = RendezvousConfig {
        relay_total: 10,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::pair(config);
    h.send(0, A, data(1, b"123456")).unwrap();
    h.send(0, B, data(1, b"abcdef")).unwrap();
    let out = h.out();
    assert_eq!(data_to(&out, B), 6);
    assert_eq!(data_to(&out, A), 4);
    for conn in [A, B] {
        assert!(out.contains(&frame(
            conn,
            Frame::RelayClose {
                channel: 1,
                reason: CloseReason::CapReached
            }
        )));
    }
    let events = h.events();
    assert!(matches!(
        &events[..],
        [RendezvousEvent::RelayEnded {
            reason: CloseReason::CapReached,
            bytes: 10,
            ..
        }]
    ));
    h.send(0, A, Frame::Reach { peer: id("b") }).unwrap();
    assert_eq!(
        h.out(),
        vec![frame(
            A,
            Frame::Unreachable {
                peer: id("b"),
                reason: UnreachableReason::CapReached
            }
        )]
    );
    assert_eq!(h.core.stats().channels_capped, 1);
}

#[test]
fn a_closed_or_departed_end_closes_the_channel_for_the_other() {
    let mut h = Harness::pair(RendezvousConfig::default());
    h.send(
        0,
        A,
        Frame::RelayClose {
            channel: 1,
            reason: CloseReason::Closed,
        },
    )
    .unwrap();
    assert_eq!(
        h.out(),
        vec![frame(
            B,
            Frame::RelayClose {
                channel: 1,
                reason: CloseReason::Closed
            }
        )]
    );
    // Reopened, then A goes away.
    h.send(0, B, Frame::Reach { peer: id("a") }).unwrap();
    h.out();
    h.core.handle_disconnected(h.t0, A);
    assert_eq!(
        h.out(),
        vec![frame(
            B,
            Frame::RelayClose {
                channel: 2,
                reason: CloseReason::PeerGone
            }
        )]
    );
    assert_eq!(h.core.registration(&id("a")), None);
    // The operator can end one too.
    h.register(C, "a");
    h.send(0, C, Frame::Reach { peer: id("b") }).unwrap();
    h.out();
    assert!(h.core.close_relay(&id("b"), &id("a")));
    assert_eq!(h.out().len(), 2);
}

#[test]
fn both_ends_closing_a_channel_at_once_is_no_protocol_error() {
    // Both peers moved to a direct path and closed the relay in the same
    // moment: B's close was in flight when A's ended the channel.
    let mut h = Harness::pair(RendezvousConfig::default());
    let close = Frame::RelayClose {
        channel: 1,
        reason: CloseReason::Closed,
    };
    h.send(0, A, close.clone()).unwrap();
    assert_eq!(h.out(), vec![frame(B, close.clone())]);
    h.send(1, B, close).unwrap();
    assert_eq!(h.out(), vec![], "no Refused, nothing closed");
    assert_eq!(h.core.registration(&id("b")), Some(B));
    assert_eq!(h.core.stats().protocol_errors, 0);
    // A close for a channel that is not B's is moot too.
    h.send(
        2,
        B,
        Frame::RelayClose {
            channel: 9,
            reason: CloseReason::Closed,
        },
    )
    .unwrap();
    assert_eq!(h.core.registration(&id("b")), Some(B));
}

#[test]
fn channels_per_registration_are_bounded() {
    let config = RendezvousConfig {
        max_channels: 1,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::pair(config);
    h.register(C, "c");
    h.out();
    h.send(0, C, Frame::Reach { peer: id("a") }).unwrap();
    assert_eq!(
        h.out(),
        vec![frame(
            C,
            Frame::Unreachable {
                peer: id("a"),
                reason: UnreachableReason::TooManyChannels
            }
        )]
    );
}
