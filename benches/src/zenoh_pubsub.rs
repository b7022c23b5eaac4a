//! The Zenoh 1.x baseline of the 64-byte messaging row and of the
//! participants' fan-out row: Zenoh sessions in peer mode over loopback
//! TCP, shaped like the libzmq baseline of `zmq_pubsub.rs` (a fresh set of
//! sessions per round, the same payloads, markers, sequence checks and
//! shared [`Progress`]).
//!
//! - The publisher's session listens on a TCP port of `127.0.0.1` and
//!   declares one publisher with congestion control `Block` (Zenoh waits
//!   instead of dropping when a link's queue is full), then calls
//!   `put` in a loop with Zenoh's synchronous API (`Wait`).
//! - Each subscriber is a session of its own (as each weft subscriber is a
//!   participant of its own) that connects to the publisher's endpoint and
//!   declares one subscriber whose callback checks every sample.
//! - No session scouts: multicast and gossip scouting are off, and no
//!   subscriber session listens, so the only links are publisher to
//!   subscriber, over loopback.
//!
//! The subscribers' declarations reach the publisher only after the
//! sessions connected, so the publisher sends warm-up publications every
//! [`POLL`] until every subscriber has received one; then the counted
//! warm-up, the sync publication and the timed ones, as for libzmq.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use zenoh::Wait;
use zenoh::qos::CongestionControl;

use crate::harness::{LIMIT, ctx};
use crate::participants::{POLL, PREFIX, Progress, SYNC, TIMED, TOPIC, Tally, WARM, payload};
use crate::throughput::Load;

/// The key expression published (the fan-out row's topic, in Zenoh's
/// `/`-separated form).
fn key() -> String {
    TOPIC.replace('.', "/")
}

/// One measurement with `subscribers` subscriber sessions; the time from
/// the first timed `put` to the last subscriber's last sample.
pub(crate) fn once(load: Load, subscribers: usize) -> Result<Duration, String> {
    debug_assert!(PREFIX.len() < TOPIC.len());
    let deadline = Instant::now() + LIMIT;
    let port = free_tcp_port()?;
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let progress = Arc::new(Progress::default());

    let publisher_session = zenoh::open(config(Some(&endpoint), None)?)
        .wait()
        .map_err(ctx("opening the publisher's session"))?;
    let publisher = publisher_session
        .declare_publisher(key())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(ctx("declaring the publisher"))?;

    let ends: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let mut sessions = Vec::with_capacity(subscribers);
    let mut declared = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let session = zenoh::open(config(None, Some(&endpoint))?)
            .wait()
            .map_err(ctx("opening a subscriber's session"))?;
        let tally = Mutex::new(Tally::new(load.count));
        let (progress, ends, failure) = (progress.clone(), ends.clone(), failure.clone());
        let subscriber = session
            .declare_subscriber(key())
            .callback(move |sample: zenoh::sample::Sample| {
                let bytes = sample.payload().to_bytes();
                let taken = tally
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(&bytes, &progress);
                match taken {
                    Ok(true) => ends
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Instant::now()),
                    Ok(false) => {}
                    // The publisher's thread looks for it while it waits.
                    Err(e) => {
                        failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                }
            })
            .wait()
            .map_err(ctx("declaring a subscriber"))?;
        sessions.push(session);
        declared.push(subscriber);
    }

    let all =
        |counter: &std::sync::atomic::AtomicUsize| counter.load(Ordering::Relaxed) >= subscribers;
    let check = |waiting: &str| -> Result<(), String> {
        if let Some(e) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        progress.check(deadline, waiting)
    };
    let send = |marker: u8, count: u64| -> Result<(), String> {
        for seq in 0..count {
            publisher
                .put(&payload(marker, seq)[..])
                .wait()
                .map_err(ctx("put"))?;
        }
        Ok(())
    };
    // The subscribers' declarations arrive some time after they connected.
    while !all(&progress.ready) {
        check("waiting for the subscribers to join")?;
        send(WARM, 1)?;
        std::thread::sleep(POLL);
    }
    send(WARM, load.warm)?;
    send(SYNC, 1)?;
    while !all(&progress.synced) {
        check("waiting for the subscribers to warm up")?;
        std::thread::sleep(POLL);
    }
    let start = Instant::now();
    send(TIMED, load.count)?;
    while !all(&progress.done) {
        check("waiting for the subscribers to finish")?;
        std::thread::sleep(POLL);
    }
    let end = ends
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .max()
        .ok_or("no subscriber finished")?;
    // Closed untimed: subscribers first, so that none sees the publisher go.
    drop(declared);
    for s in sessions {
        s.close()
            .wait()
            .map_err(ctx("closing a subscriber's session"))?;
    }
    drop(publisher);
    publisher_session
        .close()
        .wait()
        .map_err(ctx("closing the publisher's session"))?;
    Ok(end.saturating_duration_since(start))
}

/// A peer-mode session's configuration: listening on `listen` (or
/// nowhere), connecting to `connect` (or nothing), scouting off.
fn config(listen: Option<&str>, connect: Option<&str>) -> Result<zenoh::Config, String> {
    let list = |e: Option<&str>| match e {
        Some(e) => format!("[\"{e}\"]"),
        None => "[]".to_owned(),
    };
    let mut config = zenoh::Config::default();
    for (key, value) in [
        ("mode", "\"peer\"".to_owned()),
        ("scouting/multicast/enabled", "false".to_owned()),
        ("scouting/gossip/enabled", "false".to_owned()),
        ("listen/endpoints", list(listen)),
        ("connect/endpoints", list(connect)),
    ] {
        config
            .insert_json5(key, &value)
            .map_err(|e| format!("zenoh config {key} = {value}: {e}"))?;
    }
    Ok(config)
}

/// A TCP port of loopback no one uses now, for the publisher to listen on.
fn free_tcp_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(ctx("finding a free TCP port"))
}
