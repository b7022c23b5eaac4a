//! `participants pub/sub fan-out 10 through one participant`: the fan-out
//! row's load (`participants.rs`) with the publisher out of the
//! subscribers' sight, so every publication crosses one intermediate
//! participant, measured in the same rounds as the direct fan-out row and
//! set against it.
//!
//! Discovery is unicast on loopback, each participant on a beacon port of
//! its own: the publisher and the subscribers beacon to the intermediate
//! only, the intermediate to all of them. So the publisher has one stream
//! (to the intermediate), the intermediate eleven, and the subscribers'
//! interest reaches the publisher through the intermediate; each
//! publication leaves the publisher once, as one routed copy naming the
//! ten subscribers, and the intermediate sends a copy to each.
//!
//! Three threads, each with its own current-thread runtime: the
//! publisher's, the intermediate's and the subscribers' (the direct row
//! has two). The publisher's queue is to the intermediate, so it paces on
//! what the subscribers took instead: it waits while the slowest is
//! [`HWM`](crate::participants::HWM) publications behind. No loss: the sequence numbers are checked
//! as in the direct row, and any drop counted by the publisher, the
//! intermediate or a subscriber fails the round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weft_participant::ParticipantConfig;

use crate::harness::{self, LIMIT};
use crate::participants::{
    POLL, Progress, Received, SUBSCRIBERS, close_all, free_port, publisher, start_with,
    subscriber_name, subscribers,
};
use crate::throughput::Load;

/// A participant beaconing from `port` to the loopback ports `to` only.
fn unicast(name: &str, port: u16, to: &[u16]) -> ParticipantConfig {
    ParticipantConfig::loopback(port)
        .with_identity(name)
        .beaconing_to(to)
}

/// One measurement: the time from the first timed publish to the last
/// subscriber's last receive.
pub(crate) fn once(load: Load) -> Result<Duration, String> {
    let publisher_port = free_port()?;
    let middle_port = free_port()?;
    let subscriber_ports = (0..SUBSCRIBERS)
        .map(|_| free_port())
        .collect::<Result<Vec<_>, _>>()?;
    let mut everyone = subscriber_ports.clone();
    everyone.push(publisher_port);

    let progress = Arc::new(Progress::default());
    let received: Received = Arc::new((0..SUBSCRIBERS).map(|_| AtomicU64::new(0)).collect());
    let finished = Arc::new(AtomicBool::new(false));

    // The intermediate runs until both sides are done.
    let middle = {
        let config = unicast("fan-middle", middle_port, &everyone);
        let finished = finished.clone();
        let progress = progress.clone();
        std::thread::Builder::new()
            .name("fan-middle".into())
            .spawn(move || {
                let side = async move {
                    let p = start_with(config).await?;
                    while !finished.load(Ordering::Relaxed) {
                        tokio::time::sleep(POLL * 10).await;
                    }
                    let dropped = p.stats().messaging.dropped;
                    close_all(vec![p]).await;
                    match dropped {
                        0 => Ok(()),
                        n => Err(format!("the intermediate dropped {n}")),
                    }
                };
                progress.guard(harness::block_on(LIMIT, side))
            })
            .map_err(|e| format!("starting the intermediate's thread: {e}"))?
    };

    let shared = progress.clone();
    let counts = received.clone();
    let configs = subscriber_ports
        .iter()
        .enumerate()
        .map(|(i, port)| unicast(&subscriber_name(i), *port, &[middle_port]))
        .collect();
    let subscribing = move || {
        let side = subscribers(configs, load.count, shared.clone(), Some(counts));
        shared.guard(harness::block_on(LIMIT, side))
    };
    let config = unicast("fan-pub", publisher_port, &[middle_port]);
    let publishing = move || {
        let side = publisher(config, load, progress.clone(), Some(received));
        progress.guard(harness::block_on(LIMIT, side))
    };
    let sides = harness::pair(("fan-subs", subscribing), ("fan-pub", publishing));
    finished.store(true, Ordering::Relaxed);
    let middle = middle
        .join()
        .map_err(|_| "the intermediate's thread panicked".to_string())?;
    let (end, start) = sides?;
    middle?;
    Ok(end.saturating_duration_since(start))
}
