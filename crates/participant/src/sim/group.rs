//! A group started at once, measured: how long the overlay takes to
//! converge, how many streams each participant holds, and what an idle
//! participant sends. The tests of `overlay_tests.rs` and `churn_tests.rs`
//! start their groups here, and the bench's rows of the simulated 1,000
//! call [`started_at_once`] (with the `sim` feature).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use weft_messaging::TopicFilter;

use super::Sim;

const MS: Duration = Duration::from_millis(1);

/// How long a group started at once may take to converge, in virtual
/// time.
pub const CONVERGENCE_LIMIT: Duration = Duration::from_secs(30);

/// How long the idle traffic is measured for, in virtual time.
const IDLE: Duration = Duration::from_secs(60);

/// What a group started at once measured (see [`started_at_once`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRun {
    /// Participants in the group.
    pub participants: usize,
    /// The virtual time from the start until every participant routed to
    /// every subscriber, to the nearest 100 ms; `None` when that did not
    /// happen within [`CONVERGENCE_LIMIT`].
    pub converged_in: Option<Duration>,
    /// The most neighbours any participant's core had at once.
    pub peak_neighbours: usize,
    /// The most streams any participant had connected at once (a stream
    /// its core turns away counts until it is closed).
    pub peak_streams: usize,
    /// Control bytes per second each participant sent on its streams
    /// while idle, over a virtual minute after convergence.
    pub idle_stream_bytes_per_s: f64,
    /// Beacon bytes per second each participant's discovery sends while
    /// idle (see `beacons.rs`).
    pub idle_beacon_bytes_per_s: f64,
    /// Wall time the simulation took.
    pub wall: Duration,
}

impl GroupRun {
    /// What an idle participant sends per second: its beacons and its
    /// streams' control messages.
    pub fn idle_bytes_per_s(&self) -> f64 {
        self.idle_stream_bytes_per_s + self.idle_beacon_bytes_per_s
    }
}

/// Starts `n` participants at once in the simulator (every pair hears
/// the other's beacons, streams 1 to 10 ms apart, every tenth participant
/// subscribed to one topic, each core with the default limits: a full
/// mesh up to 32 participants, at most 16 streams past it) and measures
/// them: convergence within [`CONVERGENCE_LIMIT`] of virtual time, then,
/// after 5 virtual seconds of settling, a virtual minute of idle traffic.
/// `seed` chooses the delays; the same seed, the same run.
pub fn started_at_once(seed: u64, n: usize) -> GroupRun {
    run_started_at_once(seed, n).2
}

/// [`started_at_once`], and the simulation it leaves, with its
/// subscribers.
pub(crate) fn run_started_at_once(seed: u64, n: usize) -> (Sim, Vec<usize>, GroupRun) {
    let wall = std::time::Instant::now();
    let (mut sim, subscribers) = group(seed, n);
    let start = sim.now;
    let mut converged_in = None;
    // Bounded: steps of 100 ms up to the limit.
    let steps = CONVERGENCE_LIMIT.as_millis() / 100;
    for _ in 0..steps {
        sim.run_for(100 * MS);
        if converged(&sim, &subscribers) {
            converged_in = Some(sim.now - start);
            break;
        }
    }
    // Settle what is still in flight (streams turned away and replaced),
    // then measure the quiet.
    sim.run_for(Duration::from_secs(5));
    let before = sim.sent_total();
    sim.run_for(IDLE);
    let after = sim.sent_total();
    let idle_stream_bytes_per_s =
        (after.control_bytes - before.control_bytes) as f64 / n as f64 / IDLE.as_secs_f64();
    // Every participant of the group hears the same beacons: one stands
    // for all.
    let idle_beacon_bytes_per_s = sim.beacon_rate(0);
    let run = GroupRun {
        participants: n,
        converged_in,
        peak_neighbours: sim.peak_neighbours,
        peak_streams: sim.peak_streams,
        idle_stream_bytes_per_s,
        idle_beacon_bytes_per_s,
        wall: wall.elapsed(),
    };
    (sim, subscribers, run)
}

/// The topic filter of the group's subscribers.
pub(crate) fn news() -> TopicFilter {
    TopicFilter::Prefix("news".into())
}

/// `n` participants on one network (every pair hears the other's
/// beacons, 1 to 10 ms apart), every tenth one subscribed to `news`;
/// returns the simulation and the subscribers.
pub(crate) fn group(seed: u64, n: usize) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new(seed, n, 8)
        .with_discovery()
        .with_advertise_batch(20 * MS);
    let subscribers: Vec<usize> = (0..n).step_by(10).collect();
    for &s in &subscribers {
        sim.subscribe(s, news());
    }
    for a in 0..n {
        for b in a + 1..n {
            let delay = MS * (1 + sim.rng.below(10) as u32);
            sim.link(a, b, delay);
        }
    }
    (sim, subscribers)
}

/// Whether every participant's routing reaches every subscriber (but
/// itself) of `news`.
pub(crate) fn converged(sim: &Sim, subscribers: &[usize]) -> bool {
    (0..sim.nodes.len()).all(|i| {
        let reached: BTreeSet<String> = sim.nodes[i]
            .core
            .subscribers_of("news.today")
            .into_iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        subscribers.iter().all(|&s| {
            let name = sim.nodes[s].name.as_str();
            s == i || reached.contains(name)
        })
    })
}

/// Whether the streams connect everyone.
pub(crate) fn connected(sim: &Sim) -> bool {
    let n = sim.nodes.len();
    let mut seen = vec![false; n];
    let mut queue = VecDeque::from([0]);
    seen[0] = true;
    while let Some(i) = queue.pop_front() {
        for j in sim.neighbours(i) {
            if !seen[j] {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    seen.iter().all(|s| *s)
}
