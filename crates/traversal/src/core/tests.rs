use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_link::ConnectionId;
use weft_messaging::Identity;

use super::*;
use crate::wire::{Candidate, CandidateKind, CandidateTransport};

mod relay;

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

const A: ConnectionId = ConnectionId(1);
const B: ConnectionId = ConnectionId(2);
const C: ConnectionId = ConnectionId(3);

struct Harness {
    core: RendezvousCore,
    t0: Instant,
}

impl Harness {
    fn new(config: RendezvousConfig) -> Harness {
        Harness {
            core: RendezvousCore::new(config),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn connect(&mut self, conn: ConnectionId) {
        let addr = format!("198.51.100.{}:4000{}", conn.0, conn.0)
            .parse()
            .unwrap();
        self.core.handle_connected(self.t0, conn, Some(addr));
    }

    fn send(&mut self, ms: u64, conn: ConnectionId, frame: Frame) -> Result<(), RendezvousError> {
        self.core.handle_packet(self.at(ms), conn, &frame.encode())
    }

    fn register(&mut self, conn: ConnectionId, name: &str) {
        self.connect(conn);
        self.send(0, conn, Frame::Register { identity: id(name) })
            .unwrap();
    }

    fn out(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.core.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<RendezvousEvent> {
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }

    /// Two registered peers, `a` on A and `b` on B, with channel 1 open.
    fn pair(config: RendezvousConfig) -> Harness {
        let mut h = Harness::new(config);
        h.register(A, "a");
        h.register(B, "b");
        h.send(0, A, Frame::Reach { peer: id("b") }).unwrap();
        h.out();
        h.events();
        h
    }
}

fn frame(conn: ConnectionId, frame: Frame) -> Transmit {
    Transmit::Frame { conn, frame }
}

fn data(channel: ChannelId, bytes: &'static [u8]) -> Frame {
    Frame::RelayData {
        channel,
        data: Bytes::from_static(bytes),
    }
}

/// Bytes of `RelayData` sent to `conn` among `out`.
fn data_to(out: &[Transmit], to: ConnectionId) -> usize {
    out.iter()
        .map(|t| match t {
            Transmit::Frame {
                conn,
                frame: Frame::RelayData { data, .. },
            } if *conn == to => data.len(),
            _ => 0,
        })
        .sum()
}

/// Credit granted to `conn` among `out`.
fn credit_to(out: &[Transmit], to: ConnectionId) -> u64 {
    out.iter()
        .map(|t| match t {
            Transmit::Frame {
                conn,
                frame: Frame::RelayWindow { credit, .. },
            } if *conn == to => u64::from(*credit),
            _ => 0,
        })
        .sum()
}

#[test]
fn registration_names_the_second_stun_server_when_there_is_one() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.core.set_second_stun(Some(3479));
    h.register(A, "a");
    assert_eq!(
        h.out(),
        vec![frame(
            A,
            Frame::Registered {
                observed: Some("198.51.100.1:40001".parse().unwrap()),
                second_stun: Some(3479),
            }
        )]
    );
}

#[test]
fn registration_tells_the_observed_address() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.register(A, "a");
    assert_eq!(
        h.out(),
        vec![frame(
            A,
            Frame::Registered {
                observed: Some("198.51.100.1:40001".parse().unwrap()),
                second_stun: None,
            }
        )]
    );
    assert!(matches!(
        &h.events()[..],
        [RendezvousEvent::Registered { conn: A, .. }]
    ));
    assert_eq!(h.core.registration(&id("a")), Some(A));
    assert_eq!(h.core.stats().registrations, 1);
}

#[test]
fn a_duplicate_is_refused_and_closed() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.register(A, "a");
    h.out();
    h.register(B, "a");
    assert_eq!(
        h.out(),
        vec![
            frame(
                B,
                Frame::Refused {
                    reason: RefuseReason::Duplicate
                }
            ),
            Transmit::Close { conn: B }
        ]
    );
    assert_eq!(h.core.registration(&id("a")), Some(A));
    assert_eq!(h.core.stats().refused_duplicate, 1);
}

#[test]
fn with_replace_the_newer_registration_wins() {
    let config = RendezvousConfig {
        replace_registration: true,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::new(config);
    h.register(A, "a");
    h.register(C, "c");
    h.send(0, C, Frame::Reach { peer: id("a") }).unwrap();
    h.out();
    h.register(B, "a");
    let out = h.out();
    assert!(out.contains(&frame(
        A,
        Frame::Refused {
            reason: RefuseReason::Replaced
        }
    )));
    assert!(out.contains(&Transmit::Close { conn: A }));
    // The channel through the old registration ended.
    assert!(out.contains(&frame(
        C,
        Frame::RelayClose {
            channel: 1,
            reason: CloseReason::PeerGone
        }
    )));
    assert!(matches!(
        out.last(),
        Some(Transmit::Frame {
            conn: B,
            frame: Frame::Registered { .. }
        })
    ));
    assert_eq!(h.core.registration(&id("a")), Some(B));
    assert_eq!(h.core.stats().replaced, 1);
    // What the old connection still sends is not acted on.
    h.send(1, A, Frame::Reach { peer: id("c") }).unwrap();
    assert!(h.out().is_empty());
}

#[test]
fn the_table_is_bounded() {
    let config = RendezvousConfig {
        max_registrations: 1,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::new(config);
    h.register(A, "a");
    h.out();
    h.register(B, "b");
    assert_eq!(
        h.out()[0],
        frame(
            B,
            Frame::Refused {
                reason: RefuseReason::Full
            }
        )
    );
    assert_eq!(h.core.stats().refused_full, 1);
}

#[test]
fn a_connection_that_never_registers_is_closed_on_time() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.connect(A);
    let deadline = h.core.poll_timeout(h.t0);
    assert_eq!(deadline, Some(h.t0 + Duration::from_secs(10)));
    h.core.handle_timeout(h.at(9_999));
    assert!(h.out().is_empty());
    h.core.handle_timeout(h.at(10_000));
    assert_eq!(
        h.out(),
        vec![
            frame(
                A,
                Frame::Refused {
                    reason: RefuseReason::Timeout
                }
            ),
            Transmit::Close { conn: A }
        ]
    );
    assert_eq!(h.core.poll_timeout(h.at(10_000)), None);
}

#[test]
fn garbage_is_a_typed_error_and_a_closed_connection() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.register(A, "a");
    h.out();
    let err = h
        .core
        .handle_packet(h.t0, A, &Bytes::from_static(b"\x01\x7fjunk"))
        .unwrap_err();
    assert!(matches!(
        err,
        RendezvousError::Wire(crate::wire::WireError::UnknownType(0x7f))
    ));
    assert_eq!(
        h.out(),
        vec![
            frame(
                A,
                Frame::Refused {
                    reason: RefuseReason::Protocol
                }
            ),
            Transmit::Close { conn: A }
        ]
    );
    assert_eq!(h.core.registration(&id("a")), None);
    // Frames only the rendezvous sends, and frames before Register, too.
    h.connect(B);
    let err = h.send(0, B, Frame::Reach { peer: id("a") }).unwrap_err();
    assert!(matches!(err, RendezvousError::NotRegistered));
    h.register(C, "c");
    let err = h
        .send(
            0,
            C,
            Frame::Registered {
                observed: None,
                second_stun: None,
            },
        )
        .unwrap_err();
    assert!(matches!(err, RendezvousError::Unexpected("Registered")));
    assert_eq!(h.core.stats().protocol_errors, 3);
}

#[test]
fn candidates_go_only_to_the_registered_peer_named_as_sender() {
    let mut h = Harness::new(RendezvousConfig::default());
    h.register(A, "a");
    h.register(B, "b");
    h.connect(C); // connected, never registered
    h.out();
    let elsewhere: std::net::SocketAddr = "192.0.2.99:53".parse().unwrap();
    let addrs = vec![Candidate {
        transport: CandidateTransport::Udp,
        kind: CandidateKind::Reflexive,
        addr: elsewhere,
    }];
    h.send(
        0,
        A,
        Frame::Candidates {
            peer: id("b"),
            addrs: addrs.clone(),
        },
    )
    .unwrap();
    // To B's own connection, naming A: never to the address in the frame.
    assert_eq!(
        h.out(),
        vec![frame(
            B,
            Frame::Candidates {
                peer: id("a"),
                addrs: addrs.clone()
            }
        )]
    );
    // To an identity nobody registered: answered, sent nowhere else.
    h.send(
        0,
        A,
        Frame::Start {
            peer: id("nobody"),
            attempt: 1,
            strategy: 1,
            delay_ms: 0,
        },
    )
    .unwrap();
    assert_eq!(
        h.out(),
        vec![frame(
            A,
            Frame::Unreachable {
                peer: id("nobody"),
                reason: UnreachableReason::NotRegistered
            }
        )]
    );
    // Every transmit so far went to A or B, never to C.
    assert_eq!(h.core.stats().signals, 1);
}

#[test]
fn signals_are_rate_limited() {
    let config = RendezvousConfig {
        signals_per_second: 2,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::new(config);
    h.register(A, "a");
    h.register(B, "b");
    h.out();
    let start = || Frame::Start {
        peer: id("b"),
        attempt: 1,
        strategy: 1,
        delay_ms: 0,
    };
    for _ in 0..3 {
        h.send(0, A, start()).unwrap();
    }
    let out = h.out();
    assert_eq!(
        out.iter()
            .filter(|t| matches!(t, Transmit::Frame { conn: B, .. }))
            .count(),
        2
    );
    assert!(matches!(
        out.last(),
        Some(Transmit::Frame {
            conn: A,
            frame: Frame::Unreachable {
                reason: UnreachableReason::RateLimited,
                ..
            }
        })
    ));
    h.send(500, A, start()).unwrap();
    assert!(matches!(h.out()[..], [Transmit::Frame { conn: B, .. }]));
}

#[test]
fn with_bind_identity_only_a_certificate_naming_the_identity_registers() {
    use std::sync::Arc;
    use weft_messaging::certificate::CertificateNames;

    let config = RendezvousConfig {
        bind_identity: true,
        ..RendezvousConfig::default()
    };
    let mut h = Harness::new(config);
    let names = |name: &str| {
        let mut n = CertificateNames::default();
        n.dns_names.push(name.to_owned());
        Some(Arc::new(n))
    };
    h.core.handle_connected_with(h.t0, A, None, names("alice"));
    h.core
        .handle_connected_with(h.t0, B, None, names("mallory"));
    h.core.handle_connected(h.t0, C, None); // no certificate
    h.send(
        0,
        A,
        Frame::Register {
            identity: id("alice"),
        },
    )
    .unwrap();
    h.send(
        0,
        B,
        Frame::Register {
            identity: id("alice"),
        },
    )
    .unwrap();
    h.send(
        0,
        C,
        Frame::Register {
            identity: id("bob"),
        },
    )
    .unwrap();
    let unbound = Frame::Refused {
        reason: RefuseReason::Unbound,
    };
    assert_eq!(
        h.out(),
        vec![
            frame(
                A,
                Frame::Registered {
                    observed: None,
                    second_stun: None,
                }
            ),
            frame(B, unbound.clone()),
            Transmit::Close { conn: B },
            frame(C, unbound),
            Transmit::Close { conn: C },
        ]
    );
    assert_eq!(h.core.registration(&id("alice")), Some(A));
    assert_eq!(h.core.stats().refused_unbound, 2);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Packets that are often frames: a frame's bytes with a byte changed
    /// or not, or raw bytes.
    fn packet() -> impl Strategy<Value = Bytes> {
        let frames = prop_oneof![
            Just(Frame::Reach { peer: id("a") }),
            Just(Frame::Reach { peer: id("b") }),
            Just(Frame::Register { identity: id("c") }),
            (1u32..4, 1usize..300).prop_map(|(channel, n)| Frame::RelayData {
                channel,
                data: vec![9u8; n].into()
            }),
            (1u32..4, any::<u32>())
                .prop_map(|(channel, credit)| Frame::RelayWindow { channel, credit }),
            (1u32..4).prop_map(|channel| Frame::RelayClose {
                channel,
                reason: CloseReason::Closed
            }),
            Just(Frame::Start {
                peer: id("a"),
                attempt: 1,
                strategy: 1,
                delay_ms: 0
            }),
        ];
        prop_oneof![
            3 => frames.prop_map(|f| f.encode()),
            1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
        ]
    }

    proptest! {
        /// Whatever three connections send, in any order and at any
        /// times: no panic, frames only to connections the core was told
        /// about, and no more relayed than the counters say and the rate
        /// allows.
        #[test]
        fn any_packets_keep_the_core_within_its_bounds(
            steps in proptest::collection::vec((0usize..3, packet(), 0u64..50), 0..60),
        ) {
            let config = RendezvousConfig {
                relay_window: 256,
                relay_rate: 2_000,
                ..RendezvousConfig::default()
            };
            let mut h = Harness::new(config);
            h.register(A, "a");
            h.register(B, "b");
            h.connect(C);
            h.send(0, A, Frame::Reach { peer: id("b") }).unwrap();
            let mut ms = 0;
            let mut relayed_to = [0usize; 3];
            for (who, packet, wait) in steps {
                ms += wait;
                let conn = [A, B, C][who];
                let _ = h.core.handle_packet(h.at(ms), conn, &packet);
                h.core.handle_timeout(h.at(ms));
                let _ = h.core.poll_timeout(h.at(ms));
                for t in h.out() {
                    let to = match &t {
                        Transmit::Frame { conn, .. } | Transmit::Close { conn } => *conn,
                    };
                    prop_assert!([A, B, C].contains(&to));
                    if let Transmit::Frame { conn, frame: Frame::RelayData { data, .. } } = t {
                        relayed_to[conn.0 as usize - 1] += data.len();
                    }
                }
            }
            let stats = h.core.stats();
            prop_assert_eq!(stats.relayed_bytes as usize, relayed_to.iter().sum::<usize>());
            // Within the rate: the burst plus what accrued.
            prop_assert!(stats.relayed_bytes <= 1024 + 2 * ms + 2);
        }
    }
}
