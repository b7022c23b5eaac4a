use super::*;

fn cand(transport: CandidateTransport, kind: CandidateKind, addr: &str) -> Candidate {
    Candidate {
        transport,
        kind,
        addr: addr.parse().unwrap(),
    }
}

fn udp(kind: CandidateKind, addr: &str) -> Candidate {
    cand(CandidateTransport::Udp, kind, addr)
}

fn drain(p: &mut PunchSchedule) -> Vec<PunchTransmit> {
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

fn events(p: &mut PunchSchedule) -> Vec<PunchEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn to(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

/// Runs the schedule's timers until `until`, returning what it sent and
/// when.
fn run_until(p: &mut PunchSchedule, until: Instant) -> Vec<(Instant, PunchTransmit)> {
    let mut sent = Vec::new();
    for _ in 0..100_000 {
        let Some(at) = p.poll_timeout().filter(|at| *at <= until) else {
            break;
        };
        p.handle_timeout(at);
        sent.extend(drain(p).into_iter().map(|t| (at, t)));
    }
    sent
}

#[test]
fn every_candidate_from_the_start_each_bounded() {
    let t0 = Instant::now();
    let config = PunchConfig {
        punches: 3,
        ..PunchConfig::default()
    };
    let mut p = PunchSchedule::new(config, true, false, 7, t0);
    p.handle_candidates(
        &[
            udp(CandidateKind::Host, "10.0.0.2:4000"),
            udp(CandidateKind::Reflexive, "198.51.100.7:4000"),
            // Not for UDP punching: TCP, broadcast, no port.
            cand(
                CandidateTransport::Tcp,
                CandidateKind::Host,
                "10.0.0.3:4000",
            ),
            udp(CandidateKind::Host, "255.255.255.255:4000"),
            udp(CandidateKind::Host, "10.0.0.2:0"),
        ],
        t0,
    );
    assert_eq!(
        events(&mut p),
        [PunchEvent::SendStart {
            delay: Duration::from_millis(100)
        }]
    );
    let sent = run_until(&mut p, t0 + Duration::from_secs(2));
    let host: Vec<_> = sent
        .iter()
        .filter(|(_, t)| t.to == to("10.0.0.2:4000"))
        .collect();
    let reflexive: Vec<_> = sent
        .iter()
        .filter(|(_, t)| t.to == to("198.51.100.7:4000"))
        .collect();
    assert_eq!(host.len(), 3);
    assert_eq!(reflexive.len(), 3);
    assert_eq!(sent.len(), 6, "nothing else: {sent:?}");
    // Host candidates too wait for the start: a direct TCP path that
    // gets through at once is dialled at once, and comes first.
    assert_eq!(host[0].0, t0 + Duration::from_millis(100));
    assert_eq!(reflexive[0].0, t0 + Duration::from_millis(100));
    assert_eq!(host[1].0 - host[0].0, Duration::from_millis(20));
    assert!(
        sent.iter()
            .all(|(_, t)| t.socket == 0 && t.kind == PunchKind::Punch)
    );
}

#[test]
fn candidates_without_udp_ones_wait_for_a_set_with_some() {
    let t0 = Instant::now();
    let mut p = PunchSchedule::new(PunchConfig::default(), true, false, 7, t0);
    let tcp = cand(
        CandidateTransport::Tcp,
        CandidateKind::Reflexive,
        "198.51.100.7:5000",
    );
    p.handle_candidates(&[tcp], t0);
    assert_eq!(events(&mut p), [], "no start for a TCP-only set");
    p.handle_candidates(&[udp(CandidateKind::Reflexive, "198.51.100.7:4000")], t0);
    assert_eq!(events(&mut p).len(), 1, "the start, for the UDP set");
    let sent = run_until(&mut p, t0 + Duration::from_millis(100));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.to, to("198.51.100.7:4000"));
}

#[test]
fn the_other_side_starts_when_told_and_a_long_delay_is_bounded() {
    let t0 = Instant::now();
    let mut p = PunchSchedule::new(PunchConfig::default(), false, false, 7, t0);
    p.handle_candidates(&[udp(CandidateKind::Reflexive, "198.51.100.7:4000")], t0);
    assert_eq!(events(&mut p), [], "only the deciding side sends the start");
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    p.handle_start(Duration::from_secs(60), t0);
    // A second start cannot move it.
    p.handle_start(Duration::from_millis(10), t0);
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(1)));
}

#[test]
fn the_deciding_side_opens_on_the_first_punch_and_names_the_pair() {
    let t0 = Instant::now();
    let mut p = PunchSchedule::new(PunchConfig::default(), true, false, 7, t0);
    p.handle_candidates(&[udp(CandidateKind::Reflexive, "198.51.100.7:4000")], t0);
    events(&mut p);
    let from = to("198.51.100.7:4001");
    p.handle_punch(0, from, PunchKind::Punch, t0);
    assert_eq!(
        events(&mut p),
        [PunchEvent::Opened {
            socket: 0,
            remote: from
        }]
    );
    let sent = |kind| PunchTransmit {
        socket: 0,
        to: from,
        kind,
    };
    let chosen = sent(PunchKind::Chosen);
    assert_eq!(
        drain(&mut p),
        [sent(PunchKind::Answer), chosen, chosen, chosen],
        "answered, then the pair named (more than once: it may be lost)"
    );
    assert!(p.is_done());
    assert_eq!(p.poll_timeout(), None, "no more punches");
    // Later punches are still answered; answers are not; nothing reopens.
    p.handle_punch(0, from, PunchKind::Punch, t0);
    p.handle_punch(0, from, PunchKind::Answer, t0);
    assert_eq!(drain(&mut p), [sent(PunchKind::Answer)]);
    assert_eq!(events(&mut p), []);
}

#[test]
fn the_other_side_answers_everywhere_and_opens_where_it_is_named() {
    let t0 = Instant::now();
    let mut p = PunchSchedule::new(PunchConfig::default(), false, true, 7, t0);
    p.handle_candidates(&[udp(CandidateKind::Reflexive, "198.51.100.7:4000")], t0);
    // Two birthday sockets heard the peer: both answer, neither opens.
    let from = to("198.51.100.7:4000");
    p.handle_punch(3, from, PunchKind::Punch, t0);
    p.handle_punch(5, from, PunchKind::Punch, t0);
    p.handle_punch(5, from, PunchKind::Answer, t0);
    let answers: Vec<usize> = drain(&mut p).iter().map(|t| t.socket).collect();
    assert_eq!(answers, [3, 5]);
    assert_eq!(events(&mut p), []);
    assert!(!p.is_done());
    // The deciding side names socket 5's pair.
    p.handle_punch(5, from, PunchKind::Chosen, t0);
    assert_eq!(
        events(&mut p),
        [PunchEvent::Opened {
            socket: 5,
            remote: from
        }]
    );
    assert_eq!(drain(&mut p), [], "nothing more to say");
    p.handle_punch(3, from, PunchKind::Chosen, t0);
    assert_eq!(events(&mut p), [], "opened once");
}

#[test]
fn without_an_answer_it_gives_up_at_the_timeout() {
    let t0 = Instant::now();
    let mut p = PunchSchedule::new(PunchConfig::default(), true, false, 7, t0);
    p.handle_candidates(&[udp(CandidateKind::Reflexive, "198.51.100.7:4000")], t0);
    let sent = run_until(&mut p, t0 + Duration::from_secs(10));
    assert_eq!(sent.len(), 100, "the configured punches, no more");
    assert!(events(&mut p).contains(&PunchEvent::GaveUp));
    assert!(p.is_done());
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn a_varying_side_opens_one_mapping_per_birthday_socket_at_the_rate() {
    let t0 = Instant::now();
    let config = PunchConfig {
        birthday_sockets: 100,
        probe_rate: 1_000,
        punches: 1,
        ..PunchConfig::default()
    };
    let mut p = PunchSchedule::new(config, false, true, 7, t0);
    p.handle_candidates(&[udp(CandidateKind::Reflexive, "198.51.100.7:4000")], t0);
    assert_eq!(p.sockets(), 101);
    p.handle_start(Duration::from_millis(100), t0);
    let sent = run_until(&mut p, t0 + Duration::from_secs(10));
    let birthday: Vec<_> = sent.iter().filter(|(_, t)| t.socket > 0).collect();
    let sockets: HashSet<usize> = birthday.iter().map(|(_, t)| t.socket).collect();
    assert_eq!(birthday.len(), 100);
    assert_eq!(sockets, (1..=100).collect());
    assert!(
        birthday
            .iter()
            .all(|(_, t)| t.to == to("198.51.100.7:4000"))
    );
    // 1,000 a second: 20 per 20 ms batch, the first at the start moment.
    let first = t0 + Duration::from_millis(100);
    let in_first = birthday.iter().filter(|(at, _)| *at == first).count();
    assert_eq!(in_first, 20);
    assert_eq!(
        birthday.last().unwrap().0,
        first + Duration::from_millis(80)
    );
}

#[test]
fn facing_a_varying_side_probes_distinct_random_ports_of_its_ip_bounded() {
    let t0 = Instant::now();
    let config = PunchConfig {
        birthday_probes: 500,
        probe_rate: 2_000,
        predicted_ports: 0,
        ..PunchConfig::default()
    };
    let mut p = PunchSchedule::new(config, true, false, 42, t0);
    p.handle_candidates(&[udp(CandidateKind::Varies, "198.51.100.7:4000")], t0);
    assert_eq!(p.sockets(), 1);
    let sent = run_until(&mut p, t0 + Duration::from_secs(10));
    let ports: HashSet<u16> = sent.iter().map(|(_, t)| t.to.port()).collect();
    assert_eq!(sent.len(), 500);
    assert_eq!(ports.len(), 500, "no port probed twice");
    assert!(ports.iter().all(|p| *p >= 1024));
    assert!(
        sent.iter()
            .all(|(_, t)| t.to.ip() == to("198.51.100.7:1").ip())
    );
    // 2,000 a second: 40 per batch, so 500 take 13 batches, 240 ms.
    let (first, last) = (sent[0].0, sent.last().unwrap().0);
    assert_eq!(last - first, Duration::from_millis(240));
    assert!(
        sent.iter().filter(|(at, _)| *at == first).count() <= 40,
        "the rate holds"
    );
}

#[test]
fn the_ports_above_the_one_seen_are_probed_first_in_order() {
    let t0 = Instant::now();
    let config = PunchConfig {
        birthday_probes: 300,
        predicted_ports: 100,
        ..PunchConfig::default()
    };
    // Near the top: prediction wraps around to the lowest NAT port.
    let mut p = PunchSchedule::new(config, true, false, 42, t0);
    p.handle_candidates(&[udp(CandidateKind::Varies, "198.51.100.7:65500")], t0);
    let sent = run_until(&mut p, t0 + Duration::from_secs(10));
    let ports: Vec<u16> = sent.iter().map(|(_, t)| t.to.port()).collect();
    let predicted: Vec<u16> = (65501..=65535).chain(1024..1024 + 65).collect();
    assert_eq!(ports[..100], predicted[..]);
    // Then random ones, none probed twice, all within the budget.
    assert_eq!(ports.len(), 300);
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 300);
    assert!(ports.iter().all(|p| *p >= 1024));
}

#[test]
fn two_varying_sides_try_no_birthday_probing() {
    let t0 = Instant::now();
    let mut p = PunchSchedule::new(PunchConfig::default(), true, true, 7, t0);
    p.handle_candidates(&[udp(CandidateKind::Varies, "198.51.100.7:4000")], t0);
    assert_eq!(p.sockets(), 1);
    let sent = run_until(&mut p, t0 + Duration::from_secs(10));
    assert!(sent.is_empty(), "{sent:?}");
}
