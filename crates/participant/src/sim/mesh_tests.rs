//! A full mesh forming while a publisher publishes: every subscriber
//! gets PUBLISH messages only, each publication once and in order, and
//! nothing is ever routed to a participant that will be a neighbour.

use std::time::Duration;

use weft_messaging::TopicFilter;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// The subscribers of the fan-out.
const SUBSCRIBERS: usize = 10;

/// The publications' numbers `i` received, in order, and whether any came
/// routed.
fn received(sim: &Sim, i: usize) -> (Vec<u32>, bool) {
    let got = &sim.nodes[i].got;
    let seqs = got
        .iter()
        .map(|g| u32::from_be_bytes(g.data[..4].try_into().unwrap()))
        .collect();
    (seqs, got.iter().any(|g| g.routed))
}

/// Eleven participants with discovery, PUBLISH as messaging sends it and
/// the shell's grace: p0 publishes, p1..p10 subscribe and see each other
/// from the start, and p0's streams come up one by one, 20 ms apart,
/// while it publishes every millisecond. Before p0 hears of a subscriber
/// itself, the others tell it of that subscriber (one hop past them).
fn fan_out(grace: Duration) -> (Sim, Vec<usize>) {
    let n = SUBSCRIBERS + 1;
    let mut sim = Sim::new(7, n, 8)
        .with_discovery()
        .with_subscribe_frames()
        .with_sight_grace(grace);
    for s in 1..n {
        sim.subscribe(s, TopicFilter::Prefix("bench.".into()));
    }
    for a in 1..n {
        for b in a + 1..n {
            sim.link(a, b, MS);
        }
    }
    sim.run_for(100 * MS);
    let mut counts = Vec::new();
    for seq in 0..400u32 {
        if seq % 20 == 0 && (seq / 20) as usize + 1 < n {
            sim.link(0, (seq / 20) as usize + 1, MS);
        }
        counts.push(sim.publish(0, "bench.fanout", &seq.to_be_bytes()));
        sim.run_for(MS);
    }
    sim.settle(Duration::from_secs(1));
    (sim, counts)
}

#[test]
fn a_forming_full_mesh_delivers_each_publication_once_in_order_and_routes_none() {
    let (sim, counts) = fan_out(Duration::from_secs(1));
    let last = counts.len() as u32 - 1;
    // The count grows as subscribers' streams come up, never above one
    // per subscriber, and once all are reached it stays there.
    assert!(counts.iter().all(|&c| c <= SUBSCRIBERS), "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    let all = counts
        .iter()
        .position(|&c| c == SUBSCRIBERS)
        .expect("all reached");
    for s in 1..=SUBSCRIBERS {
        let (seqs, routed) = received(&sim, s);
        assert!(!routed, "p{s} got routed copies: it was to be a neighbour");
        let first = *seqs.first().expect("publications");
        assert!(first as usize <= all, "p{s} first got {first}");
        let want: Vec<u32> = (first..=last).collect();
        assert_eq!(seqs, want, "p{s}: each once, in order, none missing");
    }
    assert_eq!(sim.sent_total().routed, 0, "nothing routed at all");
    assert_eq!(sim.nodes[0].core.interest().stats().forwarded, 0);
}

#[test]
fn without_the_grace_a_subscriber_still_unknown_is_routed_to_and_never_twice() {
    // Zero grace: p0 routes to subscribers it has not heard of yet, and
    // stops as soon as discovery tells it of them, before their stream:
    // a gap, never a copy twice.
    let (sim, counts) = fan_out(Duration::ZERO);
    assert!(sim.sent_total().routed > 0, "copies were routed");
    assert!(counts.iter().all(|&c| c <= SUBSCRIBERS), "{counts:?}");
    for s in 1..=SUBSCRIBERS {
        let (seqs, _) = received(&sim, s);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "p{s}: {seqs:?}");
    }
}
