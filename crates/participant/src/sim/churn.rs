//! Churn in the bounded-degree overlay, measured: a converged group where
//! a tenth of the participants restart every minute, while publishers
//! that never restart publish at a steady rate to subscribers that never
//! restart. The tests of `churn_tests.rs` run it and assert on what it
//! measured; the bench's churn row calls [`churned`] (with the `sim`
//! feature).

use std::time::Duration;

use super::Sim;
use super::group::{converged, group};

const MS: Duration = Duration::from_millis(1);

/// How long the restarts of a minute take: each restart comes at a
/// random instant in the first `WAVE` of its minute, so the rest of the
/// minute shows the overlay settled.
const WAVE: Duration = Duration::from_secs(5);

/// How long a group may take to converge before the churn starts, in
/// virtual time.
const CONVERGENCE: Duration = Duration::from_secs(30);

/// What a churn run measured (see [`churned`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnRun {
    /// Participants in the group.
    pub participants: usize,
    /// Whether the group converged before the churn (within 30 virtual
    /// seconds); when it did not, no churn ran and nothing was counted.
    pub converged: bool,
    /// Participants restarted in all.
    pub restarts: usize,
    /// (publication, stable subscriber) pairs that should have been
    /// delivered.
    pub expected: u64,
    /// Those delivered (each counted once).
    pub delivered: u64,
    /// Publications a stable subscriber got a second time.
    pub duplicates: u64,
    /// Publications delivered to participants that subscribe to nothing.
    pub misdelivered: u64,
    /// The most neighbours any participant's core had at once.
    pub peak_neighbours: usize,
    /// The most streams any participant had connected at once.
    pub peak_streams: usize,
    /// Frames lost with the streams that ended during the churn.
    pub lost_frames: u64,
    /// Control messages sent per restart during the churn.
    pub control_per_restart: u64,
    /// Control bytes sent per restart during the churn.
    pub control_bytes_per_restart: u64,
    /// Control bytes per second each participant sent on its streams
    /// while idle, over a virtual minute after the churn.
    pub idle_stream_bytes_per_s: f64,
    /// Beacon bytes per second each participant's discovery sends while
    /// idle.
    pub idle_beacon_bytes_per_s: f64,
    /// Wall time the simulation took.
    pub wall: Duration,
}

impl ChurnRun {
    /// The share of the expected deliveries that happened (1 when none
    /// were expected).
    pub fn delivered_ratio(&self) -> f64 {
        if self.expected == 0 {
            return 1.0;
        }
        self.delivered as f64 / self.expected as f64
    }

    /// What an idle participant sends per second after the churn: its
    /// beacons and its streams' control messages.
    pub fn idle_bytes_per_s(&self) -> f64 {
        self.idle_stream_bytes_per_s + self.idle_beacon_bytes_per_s
    }
}

/// `n` participants started at once (every tenth subscribed to `news`,
/// as in [`started_at_once`](super::started_at_once)), converged; then
/// for `minutes` virtual minutes a tenth of them restart at random
/// instants in the first 5 s of each minute (half leaving, half crashing,
/// as discovery sees them), while `publishers` participants that
/// subscribe to nothing publish every `every`. The publishers and the
/// first half of the subscribers never restart: every publication should
/// reach each of those subscribers once. Then a virtual minute of idle
/// traffic. `seed` chooses the delays and the restarts.
pub fn churned(
    seed: u64,
    n: usize,
    publishers: usize,
    minutes: usize,
    every: Duration,
) -> ChurnRun {
    run_churn(seed, n, publishers, minutes, every, |_, _, _| {})
}

/// [`churned`], calling `settled(sim, subscribers, minute)` once the
/// group converged (minute 0) and at the end of every minute of churn.
pub(crate) fn run_churn(
    seed: u64,
    n: usize,
    publishers: usize,
    minutes: usize,
    every: Duration,
    mut settled: impl FnMut(&Sim, &[usize], usize),
) -> ChurnRun {
    let wall = std::time::Instant::now();
    let (mut sim, subscribers) = group(seed, n);
    let mut run = ChurnRun {
        participants: n,
        converged: false,
        restarts: 0,
        expected: 0,
        delivered: 0,
        duplicates: 0,
        misdelivered: 0,
        peak_neighbours: 0,
        peak_streams: 0,
        lost_frames: 0,
        control_per_restart: 0,
        control_bytes_per_restart: 0,
        idle_stream_bytes_per_s: 0.0,
        idle_beacon_bytes_per_s: 0.0,
        wall: Duration::ZERO,
    };
    // Bounded: steps of 100 ms up to the limit.
    for _ in 0..CONVERGENCE.as_millis() / 100 {
        sim.run_for(100 * MS);
        if converged(&sim, &subscribers) {
            run.converged = true;
            break;
        }
    }
    if !run.converged {
        run.wall = wall.elapsed();
        return run;
    }
    sim.run_for(Duration::from_secs(5));
    settled(&sim, &subscribers, 0);

    // The stable: the first half of the subscribers, and publishers that
    // subscribe to nothing. Everyone else may restart.
    let stable_subscribers: Vec<usize> = subscribers[..subscribers.len() / 2].to_vec();
    let chosen: Vec<usize> = (0..n)
        .filter(|i| !subscribers.contains(i))
        .take(publishers)
        .collect();
    let churnable: Vec<usize> = (0..n)
        .filter(|i| !stable_subscribers.contains(i) && !chosen.contains(i))
        .collect();
    let calm = sim.sent_total();
    let per_minute = n / 10;
    let minute = Duration::from_secs(60);
    let steps = (minute.as_millis() / every.as_millis().max(1)) as usize;
    let mut next_seq = 0u32;
    for m in 1..=minutes {
        // This minute's restarts: distinct participants, each at a step
        // within the wave.
        let mut pool = churnable.clone();
        let mut restarts: Vec<(usize, usize)> = (0..per_minute.min(pool.len()))
            .map(|_| {
                let k = sim.rng.below(pool.len() as u64) as usize;
                let who = pool.swap_remove(k);
                let wave_steps = (WAVE.as_millis() / every.as_millis().max(1)).max(1) as u64;
                (sim.rng.below(wave_steps) as usize, who)
            })
            .collect();
        restarts.sort_unstable();
        let mut due = restarts.into_iter().peekable();
        for step in 0..steps {
            while let Some(&(_, who)) = due.peek().filter(|(at, _)| *at == step) {
                // Half say goodbye, half crash and come back.
                if run.restarts % 2 == 0 {
                    sim.restart_leaving(who);
                } else {
                    sim.restart_crashing(who);
                }
                run.restarts += 1;
                due.next();
            }
            for &p in &chosen {
                sim.publish(p, "news.today", &next_seq.to_be_bytes());
            }
            next_seq += 1;
            sim.run_for(every);
        }
        settled(&sim, &subscribers, m);
    }
    sim.run_for(Duration::from_secs(2));
    let churned = sim.sent_total();

    for &s in &stable_subscribers {
        for &p in &chosen {
            let mut seen = vec![false; next_seq as usize];
            for q in seqs(&sim, s, p) {
                match seen.get_mut(q as usize) {
                    Some(true) => run.duplicates += 1,
                    Some(slot) => {
                        *slot = true;
                        run.delivered += 1;
                    }
                    None => {}
                }
            }
            run.expected += u64::from(next_seq);
        }
    }
    run.misdelivered = (0..n)
        .filter(|i| !subscribers.contains(i))
        .map(|i| sim.nodes[i].got.len() as u64)
        .sum();
    let restarts = run.restarts.max(1) as u64;
    run.lost_frames = churned.lost - calm.lost;
    run.control_per_restart = (churned.control - calm.control) / restarts;
    run.control_bytes_per_restart = (churned.control_bytes - calm.control_bytes) / restarts;

    // The quiet after the churn: what the cores send on their streams,
    // and the beacons of their discovery (every participant hears the
    // same beacons: one stands for all).
    sim.run_for(Duration::from_secs(5));
    let before = sim.sent_total();
    sim.run_for(minute);
    let after = sim.sent_total();
    run.idle_stream_bytes_per_s =
        (after.control_bytes - before.control_bytes) as f64 / n as f64 / minute.as_secs_f64();
    run.idle_beacon_bytes_per_s = sim.beacon_rate(0);
    run.peak_neighbours = sim.peak_neighbours;
    run.peak_streams = sim.peak_streams;
    run.wall = wall.elapsed();
    run
}

/// The sequence numbers `i`'s subscribers received from `from`.
fn seqs(sim: &Sim, i: usize, from: usize) -> Vec<u32> {
    let name = sim.nodes[from].name.as_str();
    sim.nodes[i]
        .got
        .iter()
        .filter(|g| g.from == name)
        .filter_map(|g| Some(u32::from_be_bytes(g.data.get(..4)?.try_into().ok()?)))
        .collect()
}
