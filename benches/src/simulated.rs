//! `participants simulated 1,000`: 1,000 participants started at once in
//! weft-participant's deterministic simulator (its `sim` feature), on
//! virtual time: how long the bounded-degree overlay takes to converge
//! (membership and interest), the most streams a participant holds, and
//! what an idle participant sends (its streams' control messages and its
//! discovery's beacons). Each row is an absolute target. The simulation is
//! deterministic (one seed), so one run gives every row; its wall time is
//! in the notes.
//!
//! In a full run (not `--quick`, which it would take past its three
//! minutes) a second simulation adds the churn rows: a group like it
//! (another seed), converged, then a virtual minute in which a tenth of it restarts while
//! two participants publish ten times a second: the publications missed
//! by the subscribers that never restarted (per million; the target is
//! the 99.99 % delivered), and what an idle participant sends
//! after.

use std::time::Duration;

use weft_participant::sim::{CONVERGENCE_LIMIT, churned, started_at_once};

use crate::Scale;
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

/// The seed of the churn simulation.
const CHURN_SEED: u64 = 22;

/// Virtual minutes of churn (a tenth of the group restarting in each).
const CHURN_MINUTES: usize = 1;

/// Publishers during the churn, and how often each publishes.
const CHURN_PUBLISHERS: usize = 2;
const CHURN_EVERY: Duration = Duration::from_millis(100);

/// The most publications the subscribers that never restarted may miss,
/// per million (the 99.99 % delivered).
const CHURN_MISSED: f64 = 100.0;

/// Runs the simulations and adds their rows (the churn's only in a full
/// run).
pub(crate) fn run(scale: Scale, report: &mut Report) {
    started(report);
    if !scale.quick {
        churn(report);
    }
}

/// The group started at once: its three rows.
fn started(report: &mut Report) {
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

/// The churn: its two rows.
fn churn(report: &mut Report) {
    let case = format!("{CASE} churn");
    eprintln!("{case}: simulating");
    let run = churned(
        CHURN_SEED,
        PARTICIPANTS,
        CHURN_PUBLISHERS,
        CHURN_MINUTES,
        CHURN_EVERY,
    );
    let detail = "one seeded simulation";
    let missed = if run.converged {
        Ok(1e6 * (1.0 - run.delivered_ratio()))
    } else {
        Err("not converged before the churn".to_owned())
    };
    report.row(Row::limit(
        &format!("{case}: missed by stable subscribers"),
        "ppm",
        &Series::single(missed, detail),
        CHURN_MISSED,
    ));
    report.row(Row::limit(
        &format!("{case}: idle bytes/s per participant after"),
        "B/s",
        &Series::single(Ok(run.idle_bytes_per_s()), detail),
        IDLE_LIMIT,
    ));
    report.note(format!(
        "{case}: a group like the one above (seed {CHURN_SEED}), converged, then \
         {CHURN_MINUTES} virtual minute(s) in which a tenth of it ({} participants in all) \
         restarted at random instants in the first 5 s of each minute (half leaving, half \
         crashing), while {CHURN_PUBLISHERS} participants that never restart published every \
         {} ms; delivered: of {} (publication, subscriber) pairs for the half of the \
         subscribers that never restart, {} arrived ({:.4} %; {} twice, {} to participants without \
         subscribers); {} control messages and {} bytes per restart, {} frames lost with the \
         streams that ended, at most {} neighbours; idle after: a virtual minute, {:.0} B/s of \
         control on streams plus {:.0} B/s of beacons; {:.1} s of wall time",
        run.restarts,
        CHURN_EVERY.as_millis(),
        run.expected,
        run.delivered,
        100.0 * run.delivered_ratio(),
        run.duplicates,
        run.misdelivered,
        run.control_per_restart,
        run.control_bytes_per_restart,
        run.lost_frames,
        run.peak_neighbours,
        run.idle_stream_bytes_per_s,
        run.idle_beacon_bytes_per_s,
        run.wall.as_secs_f64()
    ));
}
