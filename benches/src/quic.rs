//! quic:// against tls://: the same weft code over both transports, with
//! mutual TLS from one self-signed PKI, alternating in the same rounds.
//!
//! - `messaging 64 B quic`: the `messaging 64 B tls bind-identity` load
//!   (two `Messaging` peers, acks on, `bind_identity`) over quic:// against
//!   tls://.
//! - `ping-pong 64 B quic p50 round trip`: the `ping-pong 64 B` packeter
//!   client and echo server over quic:// against tls://.
//! - `throughput 64 KiB quic`: the `packeter throughput 64 KiB` load over
//!   quic:// against tls://.

use crate::Scale;
use crate::messaging_tls;
use crate::pingpong::{self, Samples};
use crate::report::{Report, Row, Target};
use crate::secure::Secure;
use crate::series::Series;
use crate::throughput::{self, Load};

/// The messaging row's name.
pub(crate) const MESSAGING: &str = "messaging 64 B quic";
/// The ping-pong row's name.
pub(crate) const PING_PONG: &str = "ping-pong 64 B quic p50 round trip";
/// The throughput row's name.
pub(crate) const THROUGHPUT: &str = "throughput 64 KiB quic";

/// The baseline's name in every row.
const BASELINE: &str = "tls://";

/// Runs the rows `wanted` picks.
pub(crate) fn run(scale: Scale, wanted: &dyn Fn(&str) -> bool, report: &mut Report) {
    let (tls, quic) = match Secure::pair() {
        Ok(pair) => pair,
        Err(e) => {
            let failed = Series::single(Err(e), "");
            for case in [MESSAGING, PING_PONG, THROUGHPUT] {
                if wanted(case) {
                    report.row(Row::compare(
                        case,
                        "",
                        &failed,
                        BASELINE,
                        &failed,
                        Target::RatioAtLeast(0.8),
                    ));
                }
            }
            return;
        }
    };
    if wanted(MESSAGING) {
        messaging(scale, &tls, &quic, report);
    }
    if wanted(PING_PONG) {
        ping_pong(scale, &tls, &quic, report);
    }
    if wanted(THROUGHPUT) {
        bulk(scale, &tls, &quic, report);
    }
}

fn messaging(scale: Scale, tls: &Secure, quic: &Secure, report: &mut Report) {
    let load = messaging_tls::load(scale);
    let rate = |t| messaging_tls::rate(load.count, t);
    let (mut over_quic, mut over_tls) = (Series::default(), Series::default());
    for round in 0..scale.rounds {
        eprintln!("{MESSAGING}: round {}/{}", round + 1, scale.rounds);
        if over_quic.live() {
            over_quic.push(messaging_tls::once(Some(quic.clone()), load).map(rate));
        }
        if over_tls.live() {
            over_tls.push(messaging_tls::once(Some(tls.clone()), load).map(rate));
        }
    }
    report.row(Row::compare(
        MESSAGING,
        "msg/s",
        &over_quic,
        BASELINE,
        &over_tls,
        Target::RatioAtLeast(0.8),
    ));
    report.note(format!(
        "{MESSAGING}: two Messaging peers on their own threads and current-thread runtimes, \
         acks on, mutual TLS and bind_identity on both sides, over quic:// against tls://; {} \
         messages timed after {} of warm-up",
        load.count, load.warm
    ));
}

fn ping_pong(scale: Scale, tls: &Secure, quic: &Secure, report: &mut Report) {
    let trips = pingpong::trips(scale);
    let (mut over_quic, mut over_tls) = (Samples::default(), Samples::default());
    for round in 0..scale.rounds {
        eprintln!("{PING_PONG}: round {}/{}", round + 1, scale.rounds);
        if over_quic.live() {
            over_quic.take(pingpong::weft_once(trips, Some(quic.clone())));
        }
        if over_tls.live() {
            over_tls.take(pingpong::weft_once(trips, Some(tls.clone())));
        }
    }
    report.row(Row::compare(
        PING_PONG,
        "us",
        &over_quic.series(50.0),
        BASELINE,
        &over_tls.series(50.0),
        Target::RatioAtMost(1.2),
    ));
    match (
        over_quic.series(99.0).median(),
        over_tls.series(99.0).median(),
    ) {
        (Some(q), Some(t)) => report.note(format!(
            "ping-pong 64 B quic p99 round trip (not a target): quic {q:.1} us, tls {t:.1} us, \
             ratio {:.2}x",
            q / t
        )),
        _ => report.note("ping-pong 64 B quic p99: not measured (see the p50 row)"),
    }
}

fn bulk(scale: Scale, tls: &Secure, quic: &Secure, report: &mut Report) {
    let load = Load {
        size: 64 << 10,
        warm: 2_000,
        count: if scale.quick { 20_000 } else { 60_000 },
    };
    let rate = |t| throughput::rate(load, t, true);
    let (mut over_quic, mut over_tls) = (Series::default(), Series::default());
    for round in 0..scale.rounds {
        eprintln!("{THROUGHPUT}: round {}/{}", round + 1, scale.rounds);
        if over_quic.live() {
            over_quic.push(throughput::weft_once_over(load, Some(quic.clone())).map(rate));
        }
        if over_tls.live() {
            over_tls.push(throughput::weft_once_over(load, Some(tls.clone())).map(rate));
        }
    }
    report.row(Row::compare(
        THROUGHPUT,
        "MB/s",
        &over_quic,
        BASELINE,
        &over_tls,
        Target::RatioAtLeast(0.8),
    ));
    report.note(format!(
        "{THROUGHPUT}: packeters on their own threads and current-thread runtimes, default \
         LinkConfig and PacketerConfig, mutual TLS, over quic:// against tls://; {} packets of \
         64 KiB timed after {} of warm-up",
        load.count, load.warm
    ));
}
