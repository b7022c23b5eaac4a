//! `participants simulated 1,000`: 1,000 participants started at once in
//! weft-participant's deterministic simulator (its `sim` feature), on
//! virtual time: how long the bounded-degree overlay takes to converge
//! (membership and interest), the most streams a participant holds, and
//! what an idle participant sends (its streams' control messages and its
//! discovery's beacons). Each row is an absolute target. The simulation is
//! deterministic (one seed), so one run gives every row; its wall time is
//! in the notes.

use weft_participant::sim::{CONVERGENCE_LIMIT, started_at_once};

use crate::report::{Report, Row};
use crate::series::Series;

/// The rows' common prefix, for `--only`.
pub(crate) const CASE: &str = "participants simulated 1,000";

/// Participants in the group.
const PARTICIPANTS: usize = 1000;

/// Streams a participant may hold past the full mesh's size (the default
/// `ParticipantConfig::max_streams`).
const MAX_STREAMS: f64 = 16.0;

/// What an idle participant may send, bytes per second.
const IDLE_LIMIT: f64 = 2000.0;

/// The seed of the simulation.
const SEED: u64 = 5;

/// Runs the simulation and adds its three rows.
pub(crate) fn run(report: &mut Report) {
    eprintln!("{CASE}: simulating");
    let run = started_at_once(SEED, PARTICIPANTS);
    let detail = "one deterministic simulation";
    let converged = match run.converged_in {
        Some(t) => Ok(t.as_secs_f64()),
        None => Err(format!(
            "not converged within {} virtual seconds",
            CONVERGENCE_LIMIT.as_secs()
        )),
    };
    report.row(Row::limit(
        &format!("{CASE}: convergence"),
        "s",
        &Series::single(converged, detail),
        CONVERGENCE_LIMIT.as_secs_f64(),
    ));
    report.row(Row::limit(
        &format!("{CASE}: streams per participant"),
        "streams",
        &Series::single(Ok(run.peak_neighbours as f64), detail),
        MAX_STREAMS,
    ));
    report.row(Row::limit(
        &format!("{CASE}: idle bytes/s per participant"),
        "B/s",
        &Series::single(Ok(run.idle_bytes_per_s()), detail),
        IDLE_LIMIT,
    ));
    report.note(format!(
        "{CASE}: {PARTICIPANTS} ParticipantCores in weft-participant's simulator (every pair \
         hears the other's beacons, streams 1 to 10 ms apart, every tenth participant \
         subscribed, default limits), started at once with seed {SEED}; convergence: every \
         participant routes to every subscriber; streams: the most neighbours any \
         participant's core kept at once (counting also the streams it turned away until \
         they closed, one participant had {} connected at once); idle: over a virtual minute after convergence, {:.0} B/s of control messages \
         on streams plus {:.0} B/s of beacons (weft-discovery's core with its default \
         configuration and backoff, one copy per target, UDP payloads and message payloads \
         without framing); {:.1} s of wall time",
        run.peak_streams,
        run.idle_stream_bytes_per_s,
        run.idle_beacon_bytes_per_s,
        run.wall.as_secs_f64()
    ));
}
