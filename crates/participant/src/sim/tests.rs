//! Interest and publications routed through participants, in the
//! simulator.

use std::time::Duration;

use weft_messaging::TopicFilter;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn news() -> TopicFilter {
    TopicFilter::Prefix("news".into())
}

/// The sequence numbers of what `i` received from `from`, in order.
fn seqs(sim: &Sim, i: usize, from: usize) -> Vec<u32> {
    let from = sim.nodes[from].name.as_str();
    sim.nodes[i]
        .got
        .iter()
        .filter(|g| g.from == from)
        .map(|g| u32::from_be_bytes(g.data[..4].try_into().unwrap()))
        .collect()
}

/// Publishes `n` numbered publications from `i`, one every `every`;
/// returns their numbers.
fn publish_numbered(sim: &mut Sim, i: usize, from: u32, n: u32, every: Duration) -> Vec<u32> {
    for k in from..from + n {
        sim.publish(i, "news.today", &k.to_be_bytes());
        sim.run_for(every);
    }
    (from..from + n).collect()
}

/// The subscribers `i` reaches through participants, with their hops and
/// next hop.
fn interest_of(sim: &Sim, i: usize) -> Vec<(String, u8, String)> {
    sim.nodes[i]
        .core
        .interest()
        .subscribers()
        .map(|(s, h, v)| (s.to_owned(), h, v.to_owned()))
        .collect()
}

/// A line p0 - p1 - ... with `delay` on each stream.
fn line(seed: u64, n: usize, max_hops: u8, delay: Duration) -> Sim {
    let mut sim = Sim::new(seed, n, max_hops);
    for i in 1..n {
        sim.link(i - 1, i, delay);
    }
    sim
}

#[test]
fn in_a_line_the_far_end_learns_of_a_subscriber_and_gets_every_publication_once_in_order() {
    let mut sim = line(1, 3, 8, 5 * MS);
    let (a, b, c) = (0, 1, 2);
    sim.subscribe(c, news());
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        interest_of(&sim, a),
        vec![("p2".to_owned(), 2, "p1".to_owned())],
        "a learns that c subscribes, through b"
    );

    let sent = publish_numbered(&mut sim, a, 0, 100, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, c, a), sent, "every publication, once, in order");
    assert!(sim.nodes[c].got.iter().all(|g| g.routed));
    assert!(sim.nodes[b].got.is_empty(), "b has no subscriber");
    // One copy per publication on each stream of the path, nothing else.
    assert_eq!(sim.sent(a, b).routed, 100);
    assert_eq!(sim.sent(b, c).routed, 100);
    assert_eq!(sim.sent(c, b).routed + sim.sent(b, a).routed, 0);
    assert_eq!(sim.nodes[c].core.interest().stats().delivered, 100);
    assert_eq!(sim.nodes[c].core.interest().stats().duplicates, 0);
}

#[test]
fn a_neighbour_gets_a_publish_and_the_far_end_a_routed_copy_never_both() {
    let mut sim = line(2, 3, 8, 5 * MS);
    sim.subscribe(1, news());
    sim.subscribe(2, news());
    sim.run_for(Duration::from_secs(1));
    let sent = publish_numbered(&mut sim, 0, 0, 20, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, 1, 0), sent);
    assert_eq!(seqs(&sim, 2, 0), sent);
    assert!(sim.nodes[1].got.iter().all(|g| !g.routed), "b as a PUBLISH");
    assert!(
        sim.nodes[2].got.iter().all(|g| g.routed),
        "c routed through b"
    );
    assert_eq!(sim.sent(0, 1).publish, 20);
    assert_eq!(sim.sent(0, 1).routed, 20);
    // b's subscriber does not make b deliver the copy meant for c.
    assert_eq!(sim.nodes[1].core.interest().stats().delivered, 0);
}

#[test]
fn in_a_square_every_publication_arrives_exactly_once_and_only_on_the_shortest_path() {
    // a - b - c - d - a: two paths from a to c.
    let mut sim = Sim::new(3, 4, 8);
    let (a, b, c, d) = (0, 1, 2, 3);
    for (x, y) in [(a, b), (b, c), (c, d), (d, a)] {
        sim.link(x, y, 3 * MS);
    }
    sim.subscribe(c, news());
    sim.run_for(Duration::from_secs(1));
    let sent = publish_numbered(&mut sim, a, 0, 50, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, c, a), sent);
    // The tie between the two paths goes to the first neighbour by name
    // (b): nothing crosses d, which leads to no one else.
    assert_eq!(sim.sent(a, b).routed + sim.sent(b, c).routed, 100);
    assert_eq!(sim.sent(a, d).routed + sim.sent(d, c).routed, 0);
    assert_eq!(sim.nodes[c].core.interest().stats().duplicates, 0);

    // With the b path slower and down for a while, the d path carries
    // them, and still exactly once.
    sim.set_link(a, b, false);
    sim.run_for(Duration::from_secs(1));
    let more = publish_numbered(&mut sim, a, 50, 50, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, c, a), [sent, more].concat());
    assert_eq!(sim.sent(a, d).routed, 50);
}

#[test]
fn with_subscribers_everywhere_in_a_ring_each_gets_each_publication_once() {
    // A ring of 6 with a chord: cycles of several lengths.
    let mut sim = Sim::new(4, 6, 8);
    for i in 0..6 {
        sim.link(i, (i + 1) % 6, MS * (1 + i as u32));
    }
    sim.link(1, 4, 2 * MS);
    for i in 1..6 {
        sim.subscribe(i, news());
    }
    sim.run_for(Duration::from_secs(2));
    let sent = publish_numbered(&mut sim, 0, 0, 30, MS);
    sim.settle(Duration::from_secs(1));
    for i in 1..6 {
        assert_eq!(seqs(&sim, i, 0), sent, "p{i}");
    }
    let total = sim.sent_total();
    // Neighbours (p1, p5) by PUBLISH; p2, p3, p4 routed, 1 hop each
    // through p1 and p5 at most two per publication.
    assert_eq!(total.publish, 60);
    assert!(total.routed <= 30 * 4, "{total:?}");
}

#[test]
fn a_partitioned_middle_stops_publications_and_healing_resumes_them() {
    let mut sim = line(5, 3, 8, 5 * MS);
    let (a, b, c) = (0, 1, 2);
    sim.subscribe(c, news());
    sim.run_for(Duration::from_secs(1));
    let before = publish_numbered(&mut sim, a, 0, 10, MS);
    sim.settle(Duration::from_secs(1));

    sim.set_up(b, false);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(interest_of(&sim, a), vec![], "the interest is withdrawn");
    let routed = sim.sent(a, b).routed;
    for k in 10..20u32 {
        assert_eq!(sim.publish(a, "news.today", &k.to_be_bytes()), 0);
        sim.run_for(MS);
    }
    assert_eq!(sim.sent(a, b).routed, routed, "nothing sent toward nobody");

    sim.set_up(b, true);
    sim.run_for(Duration::from_secs(1));
    let after = publish_numbered(&mut sim, a, 20, 10, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, c, a), [before, after].concat());
}

#[test]
fn an_unsubscribe_is_withdrawn_along_the_line_and_nothing_more_is_sent() {
    let mut sim = line(6, 5, 8, 2 * MS);
    sim.subscribe(4, news());
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        interest_of(&sim, 0),
        vec![("p4".to_owned(), 4, "p1".to_owned())]
    );
    sim.unsubscribe(4, &news());
    sim.run_for(Duration::from_secs(1));
    for i in 0..4 {
        assert_eq!(interest_of(&sim, i), vec![], "p{i}");
    }
    assert_eq!(sim.publish(0, "news.x", b"1234"), 0);
    sim.settle(Duration::from_secs(1));
    assert_eq!(sim.sent_total().routed, 0);
}

#[test]
fn a_participant_that_predates_routed_interest_is_sent_none_and_still_served() {
    // a - old - c, and a - b: the old one in the middle gets no Interest
    // and no routed publication, and its own subscriber is served by
    // PUBLISH as before.
    let mut sim = Sim::new(12, 4, 8);
    let (a, old, c, b) = (0, 1, 2, 3);
    sim.make_old(old);
    sim.link(a, old, MS);
    sim.link(old, c, MS);
    sim.link(a, b, MS);
    sim.subscribe(old, news());
    sim.subscribe(c, news());
    sim.subscribe(b, news());
    sim.run_for(Duration::from_secs(1));
    // a knows only b's subscriber routes interest; c is out of reach.
    assert_eq!(
        interest_of(&sim, a),
        vec![("p3".to_owned(), 1, "p3".to_owned())]
    );
    let sent = publish_numbered(&mut sim, a, 0, 10, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, old, a), sent, "by PUBLISH");
    assert_eq!(seqs(&sim, b, a), sent);
    assert_eq!(seqs(&sim, c, a), Vec::<u32>::new());
    assert_eq!(sim.sent_total().unreadable, 0);
    assert_eq!(sim.sent_total().routed, 0);
}

#[test]
fn a_restarted_publisher_is_not_taken_for_its_old_self() {
    let mut sim = line(7, 3, 8, MS);
    sim.subscribe(2, news());
    sim.run_for(Duration::from_secs(1));
    let first = publish_numbered(&mut sim, 0, 0, 5, MS);
    sim.settle(Duration::from_secs(1));
    // Its sequence numbers start again at 0: a new epoch names them.
    sim.restart(0);
    sim.run_for(Duration::from_secs(1));
    let second = publish_numbered(&mut sim, 0, 100, 5, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, 2, 0), [first, second].concat());
    assert_eq!(sim.nodes[2].core.interest().stats().duplicates, 0);
}

#[test]
fn streams_going_down_and_up_at_random_never_duplicate_or_reorder() {
    // Half the runs with streams as the cores ask for them.
    for seed in 0..8 {
        let n = 6;
        let mut sim = Sim::new(100 + seed, n, 8);
        if seed % 2 == 1 {
            sim = sim.with_discovery();
        }
        for i in 1..n {
            let delay = MS * (1 + sim.rng.below(20) as u32);
            sim.link(i - 1, i, delay);
        }
        // A second path, so that routes move while streams flap.
        sim.link(0, 3, 7 * MS);
        sim.subscribe(n - 1, news());
        sim.subscribe(2, news());
        sim.run_for(Duration::from_secs(1));
        let links = sim.links();
        for k in 0..400u32 {
            sim.publish(0, "news.today", &k.to_be_bytes());
            if sim.rng.below(10) == 0 {
                let (x, y) = links[sim.rng.below(links.len() as u64) as usize];
                let up = sim.rng.below(2) == 0;
                sim.set_link(x, y, up);
            }
            sim.run_for(Duration::from_millis(5));
        }
        for &(x, y) in &links {
            sim.set_link(x, y, true);
        }
        sim.run_for(Duration::from_secs(2));
        let last = publish_numbered(&mut sim, 0, 1000, 20, MS);
        sim.settle(Duration::from_secs(1));
        for sub in [2, n - 1] {
            let got = seqs(&sim, sub, 0);
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}, p{sub}: in order, never twice: {got:?}"
            );
            assert!(
                got.ends_with(&last),
                "seed {seed}, p{sub}: healed, all arrive"
            );
        }
        assert!(sim.sent_total().lost > 0, "seed {seed}: streams went down");
    }
}

#[test]
fn a_tree_of_127_converges_delivers_once_everywhere_and_keeps_its_tables_bounded() {
    // A binary tree: 127 participants, 64 leaves, 12 hops across.
    let n = 127;
    let mut sim = Sim::new(8, n, 16);
    for i in 1..n {
        let delay = MS * (1 + sim.rng.below(5) as u32);
        sim.link((i - 1) / 2, i, delay);
    }
    let leaves: Vec<usize> = (63..n).collect();
    for &l in &leaves {
        sim.subscribe(l, TopicFilter::Prefix(format!("leaf{l}.")));
        sim.subscribe(l, TopicFilter::Prefix("all".into()));
    }
    let took = sim.settle(Duration::from_secs(30));
    assert!(took < Duration::from_secs(30), "converged in {took:?}");
    // Once converged, the streams are quiet: nothing is told again.
    let converged = sim.sent_total();
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.sent_total(), converged, "no idle control traffic");
    for i in 0..n {
        let interest = sim.nodes[i].core.interest();
        // At most every subscriber once, however many neighbours told.
        let reached = interest.subscribers().count();
        let leaf = leaves.contains(&i);
        assert_eq!(reached, leaves.len() - usize::from(leaf), "p{i}");
        assert!(interest.learned_len() <= leaves.len(), "p{i}");
    }
    // The root reaches every leaf in 6 hops.
    assert!(
        sim.nodes[0]
            .core
            .interest()
            .subscribers()
            .all(|(_, h, _)| h == 6)
    );

    for k in 0..10u32 {
        sim.publish(0, "all", &k.to_be_bytes());
        sim.publish(n - 1, "leaf63.x", &k.to_be_bytes());
        sim.run_for(MS);
    }
    sim.settle(Duration::from_secs(5));
    let all: Vec<u32> = (0..10).collect();
    for &l in &leaves {
        assert_eq!(seqs(&sim, l, 0), all, "p{l}");
    }
    assert_eq!(seqs(&sim, 63, n - 1), all);
    // "all" from the root: one copy on each of the tree's 126 streams;
    // leaf to leaf: one on each of the 12 streams between them.
    let total = sim.sent_total();
    assert_eq!(total.routed, 10 * 126 + 10 * 12, "{total:?}");
    assert_eq!(total.publish, 0, "no leaf is a neighbour of a publisher");
    for i in 0..n {
        assert_eq!(sim.nodes[i].core.interest().stats().duplicates, 0);
    }
}

#[test]
fn a_line_of_100_beyond_the_default_hop_limit_is_crossed_with_more_hops() {
    let n = 100;
    let mut sim = line(9, n, 120, MS);
    sim.subscribe(n - 1, news());
    let took = sim.settle(Duration::from_secs(30));
    assert!(took < Duration::from_secs(30), "converged in {took:?}");
    assert_eq!(
        interest_of(&sim, 0),
        vec![(format!("p{}", n - 1), 99, "p1".to_owned())]
    );
    let sent = publish_numbered(&mut sim, 0, 0, 5, MS);
    sim.settle(Duration::from_secs(5));
    assert_eq!(seqs(&sim, n - 1, 0), sent);
    for i in 0..n {
        assert!(sim.nodes[i].core.interest().learned_len() <= 1);
    }

    // With the default hop limit, the far end is out of reach and nothing
    // is sent toward it.
    let mut short = line(9, 12, 8, MS);
    short.subscribe(11, news());
    short.settle(Duration::from_secs(5));
    assert_eq!(interest_of(&short, 0), vec![]);
    assert_eq!(
        interest_of(&short, 4),
        vec![("p11".to_owned(), 7, "p5".to_owned())]
    );
    assert_eq!(short.publish(0, "news", b"0000"), 0);
}

#[test]
fn the_same_seed_runs_the_same() {
    let run = |seed| {
        let mut sim = line(seed, 4, 8, MS);
        sim.link(0, 3, MS);
        sim.subscribe(2, news());
        sim.run_for(Duration::from_secs(1));
        for k in 0..50u32 {
            sim.publish(0, "news", &k.to_be_bytes());
            let (x, y) = sim.links()[sim.rng.below(4) as usize];
            let up = sim.rng.below(3) != 0;
            sim.set_link(x, y, up);
            sim.run_for(2 * MS);
        }
        (seqs(&sim, 2, 0), sim.sent_total())
    };
    assert_eq!(run(11), run(11));
}

#[test]
fn with_discovery_the_lower_id_opens_each_stream_and_publications_cross_the_line() {
    let mut sim = Sim::new(13, 4, 8).with_discovery();
    for (x, y) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        sim.link(x, y, 2 * MS);
    }
    sim.subscribe(2, news());
    sim.run_for(Duration::from_secs(1));
    // One stream per link, opened by its lower end.
    assert_eq!(
        sim.connectors.iter().copied().collect::<Vec<_>>(),
        vec![(0, 1), (0, 3), (1, 2), (2, 3)]
    );
    for i in 0..4 {
        assert_eq!(sim.neighbours(i).len(), 2, "p{i}");
    }
    let sent = publish_numbered(&mut sim, 0, 0, 20, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, 2, 0), sent);

    // The dialler restarts: its new core opens its streams again; the
    // other end of a stream it did not open reconnects on its own.
    sim.restart(0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.neighbours(0), vec![1, 3]);
    let more = publish_numbered(&mut sim, 0, 20, 20, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, 2, 0), [sent, more.clone()].concat());
    sim.restart(3);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.neighbours(3), vec![0, 2]);

    // Partitioned and healed: the streams come back as they were asked.
    sim.set_up(1, false);
    sim.run_for(Duration::from_secs(1));
    sim.set_up(1, true);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.neighbours(1), vec![0, 2]);
    let last = publish_numbered(&mut sim, 0, 40, 20, MS);
    sim.settle(Duration::from_secs(1));
    assert_eq!(seqs(&sim, 2, 0), [(0..40).collect(), last].concat());
}
