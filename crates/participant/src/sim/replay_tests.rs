//! A run is reproduced by its seed: past the full mesh's size, with
//! restarts, streams going down and up and publications, two runs of one
//! seed are the same to the last message, and another seed runs
//! differently.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_messaging::TopicFilter;

use super::{Got, Sent, Sim};
use crate::core::CoreStats;

const MS: Duration = Duration::from_millis(1);

/// Participants in a run: well past the full mesh's size.
const N: usize = 300;

/// How many participants after it each participant has a link to, around
/// a ring: each hears 36 others, past the full mesh's 32, so every core's
/// overlay chooses whom to dial at random.
const REACH: usize = 18;

/// The hop limit: routes and interest reach two hops, which keeps the
/// run to a second or two of wall time in a debug build (every hop more
/// multiplies the routes each change moves).
const MAX_HOPS: u8 = 2;

/// Everything a run shows: each participant's trace (everything its
/// cores asked for and reported, in order, at what virtual time), what
/// its subscribers received and its last core's counters, and what was
/// sent each way on every link.
#[derive(Debug, PartialEq)]
struct Run {
    traces: Vec<u64>,
    received: Vec<Vec<Got>>,
    stats: Vec<CoreStats>,
    sent: BTreeMap<(usize, usize), Sent>,
}

/// `N` participants with discovery, each linked to its `REACH` next
/// around a ring (delays of 1 to 10 ms), every tenth subscribed; they
/// start at once, then while two publish, 15 of them restart (leaving or
/// crashing), 15 links go down (4 of them up again) and one participant
/// is partitioned away and healed.
fn run(seed: u64) -> Run {
    let mut sim = Sim::new(seed, N, MAX_HOPS)
        .with_discovery()
        .with_advertise_batch(20 * MS);
    for s in (0..N).step_by(10) {
        sim.subscribe(s, TopicFilter::Prefix("news".into()));
    }
    for a in 0..N {
        for k in 1..=REACH {
            let delay = MS * (1 + sim.rng.below(10) as u32);
            sim.link(a, (a + k) % N, delay);
        }
    }
    sim.run_for(Duration::from_millis(500));
    let links = sim.links();
    let mut down = Vec::new();
    for round in 0..15u32 {
        let who = 1 + 10 * sim.rng.below(N as u64 / 10) as usize;
        if round % 2 == 0 {
            sim.restart_leaving(who);
        } else {
            sim.restart_crashing(who);
        }
        let (a, b) = links[sim.rng.below(links.len() as u64) as usize];
        sim.set_link(a, b, false);
        down.push((a, b));
        if round % 4 == 0 {
            let (a, b) = down.swap_remove(sim.rng.below(down.len() as u64) as usize);
            sim.set_link(a, b, true);
        }
        if round == 5 {
            sim.set_up(5, false);
        }
        if round == 10 {
            sim.set_up(5, true);
        }
        sim.publish(2, "news.today", &round.to_be_bytes());
        sim.publish(3, "news.today", &round.to_be_bytes());
        sim.run_for(100 * MS);
    }
    sim.run_for(Duration::from_millis(500));
    Run {
        traces: sim.traces(),
        received: sim.nodes.iter().map(|n| n.got.clone()).collect(),
        stats: sim.nodes.iter().map(|n| n.core.stats()).collect(),
        sent: sim.sent.clone(),
    }
}

#[test]
fn three_hundred_churned_run_the_same_for_one_seed_and_differently_for_another() {
    let first = run(31);
    let second = run(31);
    let differing = (0..N)
        .filter(|&i| first.traces[i] != second.traces[i])
        .count();
    assert_eq!(differing, 0, "participants whose traces differ");
    assert_eq!(first, second);
    let total = |f: fn(&Sent) -> u64| first.sent.values().map(f).sum::<u64>();
    assert!(total(|s| s.routed) > 0, "publications were routed");
    assert!(
        total(|s| s.lost) > 0,
        "streams went down with frames on them"
    );
    assert!(first.received.iter().any(|got| !got.is_empty()));

    let other = run(32);
    assert_ne!(first.traces, other.traces);
}
