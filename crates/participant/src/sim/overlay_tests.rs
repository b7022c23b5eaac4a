//! The bounded-degree overlay in the simulator: groups past the full
//! mesh's size, every participant hearing every other's beacons, all
//! started at once.

use std::time::Duration;

use super::group::{connected, converged, group, run_started_at_once};

/// The default limit on streams past the full mesh's size.
pub(super) const MAX_STREAMS: usize = 16;

/// Starts `n` participants at once and checks the overlay: converged
/// within 30 virtual seconds, never more than [`MAX_STREAMS`]
/// neighbours, connected, every table bounded by `n`, each publication
/// delivered once to every subscriber and to nobody else.
fn converge(seed: u64, n: usize, publishers: usize) -> Duration {
    let (mut sim, subscribers, run) = run_started_at_once(seed, n);
    let took = run
        .converged_in
        .expect("converged within 30 virtual seconds");
    assert!(converged(&sim, &subscribers));
    // Beacons and the streams' control messages.
    let idle = run.idle_bytes_per_s();

    assert!(
        sim.peak_neighbours <= sim.nodes[0].core.overlay().max_streams(),
        "{} neighbours",
        sim.peak_neighbours
    );
    assert!(connected(&sim), "the overlay is connected");

    for i in 0..n {
        let core = &sim.nodes[i].core;
        assert!(core.connected().count() <= MAX_STREAMS, "p{i}");
        assert!(sim.neighbours(i).len() <= MAX_STREAMS, "p{i}");
        // Nothing per participant grows faster than the group.
        assert!(core.known_len() < n, "p{i}");
        assert!(core.overlay().len() <= 2 * n, "p{i}");
        assert!(core.routes().len() < n, "p{i}");
        let interest = core.interest();
        assert!(interest.subscribers().count() <= subscribers.len(), "p{i}");
        assert!(
            interest.learned_len() <= MAX_STREAMS * subscribers.len(),
            "p{i}"
        );
    }

    // A publication from any participant reaches every subscriber once.
    let mut from: Vec<usize> = (0..n).collect();
    let mut chosen = Vec::new();
    for _ in 0..publishers.min(n) {
        let k = sim.rng.below(from.len() as u64) as usize;
        chosen.push(from.swap_remove(k));
    }
    for (k, &p) in chosen.iter().enumerate() {
        let k = u32::try_from(k).expect("few publishers");
        sim.publish(p, "news.today", &k.to_be_bytes());
    }
    sim.run_for(Duration::from_secs(2));
    for i in 0..n {
        let got = &sim.nodes[i].got;
        if subscribers.contains(&i) {
            for &p in &chosen {
                let name = sim.nodes[p].name.as_str();
                let copies = got.iter().filter(|g| g.from == name).count();
                assert_eq!(copies, 1, "p{i} from p{p}");
            }
        } else {
            assert!(got.is_empty(), "p{i} subscribes to nothing");
        }
    }
    for i in 0..n {
        assert_eq!(sim.nodes[i].core.interest().stats().duplicates, 0);
    }
    assert!(idle <= 2000.0, "{idle} idle bytes/s per participant");
    eprintln!(
        "{n} participants: converged in {took:?}, at most {} neighbours and {} streams \
         connected, {idle:.0} idle bytes/s per participant ({:.0} of control on streams, {:.0} \
         of beacons), {:?} of wall time",
        run.peak_neighbours,
        run.peak_streams,
        run.idle_stream_bytes_per_s,
        run.idle_beacon_bytes_per_s,
        run.wall
    );
    took
}

#[test]
fn a_group_of_the_full_mesh_size_keeps_one_stream_per_pair() {
    // 32 participants, ourselves included: the mesh stays full.
    let (mut sim, _) = group(1, 32);
    sim.run_for(Duration::from_secs(5));
    for i in 0..32 {
        assert_eq!(sim.neighbours(i).len(), 31, "p{i}");
    }
    // Each stream was opened by its lower id only.
    assert!(sim.connectors.iter().all(|&(a, b)| a < b));
}

#[test]
fn a_group_of_33_keeps_at_most_16_streams_each_and_stays_connected() {
    converge(2, 33, 33);
}

// The cores gather changes for 20 ms and tell neighbours only what
// changed, so convergence costs each stream a few messages per batch
// rather than a full list per moved entry. In a debug build 200
// participants take a few seconds of wall time; 1 000 take about three
// minutes (most of it the half million simulated links every pair hears
// each other on), so that one runs only when asked, and in CI optimised
// (`cargo xtask ci`):
// `cargo test --profile profiling -p weft-participant --lib -- --ignored a_thousand_started`.

#[test]
fn two_hundred_started_at_once_converge_with_at_most_16_streams_each() {
    converge(3, 200, 200);
}

#[test]
fn a_hundred_started_at_once_converge_with_at_most_16_streams_each() {
    converge(4, 100, 100);
}

#[test]
fn sixty_four_started_at_once_converge_with_at_most_16_streams_each() {
    converge(6, 64, 64);
}

#[test]
#[ignore = "about three minutes in a debug build (see above): cargo test --profile profiling -p weft-participant --lib -- --ignored a_thousand_started"]
fn a_thousand_started_at_once_converge_with_at_most_16_streams_each_slow_in_debug() {
    converge(5, 1000, 20);
}
