use std::time::Duration;

use super::*;
use crate::punch::{PunchConfig, PunchEvent, PunchTransmit};
use crate::race::RaceConfig;
use crate::wire::{Candidate, CandidateKind, CandidateTransport};

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

fn udp(addr: &str) -> Candidate {
    Candidate {
        transport: CandidateTransport::Udp,
        kind: CandidateKind::Host,
        addr: addr.parse().unwrap(),
    }
}

fn tcp(addr: &str) -> Candidate {
    Candidate {
        transport: CandidateTransport::Tcp,
        ..udp(addr)
    }
}

/// The deciding end's two races toward one peer and its choice, as the
/// shells hold them, on chosen instants.
struct Decider {
    choice: PathChoice,
    race: PathRace,
    punch: PunchSchedule,
    bob: Identity,
    t0: Instant,
}

impl Decider {
    /// alice (the smaller identity) races bob both ways: the relay opened
    /// at `t0`, bob's TCP and UDP candidates arrived, the punching began.
    fn new() -> Decider {
        let t0 = Instant::now();
        let alice = id("alice");
        let bob = id("bob");
        let mut choice = PathChoice::new(alice.clone(), 64);
        let mut race = PathRace::new(alice, RaceConfig::default());
        let mut punch = PunchSchedule::new(PunchConfig::default(), true, false, 7, t0);
        choice.handle_relay(&bob, t0);
        race.handle_relay(&bob, t0);
        let candidates = [tcp("10.0.0.2:4000"), udp("10.0.0.2:5000")];
        race.handle_candidates(&bob, &candidates, t0);
        punch.handle_candidates(&candidates, t0);
        punch.handle_timeout(t0 + Duration::from_millis(100));
        Decider {
            choice,
            race,
            punch,
            bob,
            t0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// A punch packet of `kind` from bob's host candidate.
    fn punch_arrives(&mut self, kind: PunchKind, ms: u64) -> (Vec<PunchTransmit>, Vec<PunchEvent>) {
        while self.punch.poll_transmit().is_some() {}
        while self.punch.poll_event().is_some() {}
        let now = self.at(ms);
        let from = "10.0.0.2:5000".parse().unwrap();
        self.choice
            .handle_punch(&mut self.punch, &self.bob, 0, from, kind, now);
        (
            std::iter::from_fn(|| self.punch.poll_transmit()).collect(),
            std::iter::from_fn(|| self.punch.poll_event()).collect(),
        )
    }
}

fn named(sent: &[PunchTransmit]) -> usize {
    sent.iter().filter(|t| t.kind == PunchKind::Chosen).count()
}

#[test]
fn a_kept_tcp_stream_means_no_punched_pair_is_named() {
    let mut d = Decider::new();
    // 110 ms: a TCP stream to bob passed its preamble and is kept; its
    // messaging handshake has not run yet, so nothing has told either
    // race that a path won.
    let bob = d.bob.clone();
    let now = d.at(110);
    assert!(d.choice.keep_stream(&mut d.race, &bob, now));
    // 111 ms: bob's answer to a punch arrives. Alone, the schedule would
    // open the pair and name it to bob, who would run QUIC on it beside
    // the TCP stream; now it stops and names nothing.
    let (sent, events) = d.punch_arrives(PunchKind::Answer, 111);
    assert_eq!(named(&sent), 0, "{sent:?}");
    assert!(events.is_empty(), "{events:?}");
    assert!(d.punch.is_done());
    // A punch is still answered (as any punch is), and opens nothing.
    let (sent, events) = d.punch_arrives(PunchKind::Punch, 112);
    assert_eq!(
        sent.iter().map(|t| t.kind).collect::<Vec<_>>(),
        [PunchKind::Answer]
    );
    assert!(events.is_empty());
    assert_eq!(d.choice.chosen(&bob), Some(Transport::Tcp));
    assert!(
        !d.choice.may_punch(&bob),
        "late candidates begin no punching"
    );
}

#[test]
fn a_named_punched_pair_means_no_tcp_stream_is_kept() {
    let mut d = Decider::new();
    // 105 ms: bob's punch reaches us first: the pair is named (three
    // times) and QUIC will run on it.
    let (sent, events) = d.punch_arrives(PunchKind::Punch, 105);
    assert_eq!(named(&sent), 3);
    assert!(matches!(events[..], [PunchEvent::Opened { socket: 0, .. }]));
    // 106 ms: a TCP stream passes its preamble before messaging has
    // identified the QUIC connection. Alone, the TCP race would keep it
    // (the first of its race); now it is closed (verdict 0) and the race
    // keeps none.
    let bob = d.bob.clone();
    let now = d.at(106);
    assert!(!d.choice.keep_stream(&mut d.race, &bob, now));
    assert!(!d.race.is_racing(&bob));
    assert_eq!(d.choice.chosen(&bob), Some(Transport::Quic));
}

#[test]
fn the_other_end_follows_what_it_is_told_and_a_new_relay_begins_a_new_round() {
    let t0 = Instant::now();
    let alice = id("alice");
    let mut bobs = PathChoice::new(id("bob"), 64);
    bobs.handle_relay(&alice, t0);
    // bob never chooses: alice decides for both.
    assert!(!bobs.decides(&alice));
    assert!(!bobs.choose(&alice, Transport::Tcp, t0));
    assert!(bobs.may_punch(&alice));
    // alice kept a TCP stream: bob adopts it and punches no more.
    bobs.handle_told(&alice, Transport::Tcp, t0);
    assert_eq!(bobs.chosen(&alice), Some(Transport::Tcp));
    assert!(!bobs.may_punch(&alice));
    // The direct path died and the relay came back: a new round.
    let t1 = t0 + Duration::from_secs(30);
    bobs.handle_relay(&alice, t1);
    assert_eq!(bobs.chosen(&alice), None);
    assert!(bobs.may_punch(&alice));
    // At the deciding end, a new round chooses again.
    let mut alices = PathChoice::new(alice, 64);
    let bob = id("bob");
    alices.handle_relay(&bob, t0);
    assert!(alices.choose(&bob, Transport::Quic, t0));
    assert!(!alices.choose(&bob, Transport::Quic, t0), "one per round");
    alices.handle_relay(&bob, t1);
    assert!(alices.choose(&bob, Transport::Tcp, t1));
}

#[test]
fn rounds_are_bounded() {
    let t0 = Instant::now();
    let mut choice = PathChoice::new(id("a"), 2);
    for (i, peer) in ["b", "c", "d"].into_iter().enumerate() {
        let now = t0 + Duration::from_secs(i as u64);
        choice.handle_relay(&id(peer), now);
        assert!(choice.choose(&id(peer), Transport::Tcp, now));
    }
    assert_eq!(choice.rounds.len(), 2);
    // The oldest round was forgotten: b may be punched again.
    assert!(choice.may_punch(&id("b")));
    assert!(!choice.may_punch(&id("d")));
}
