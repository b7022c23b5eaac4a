//! Case 6: weft-participant, zero-configuration participants of one host
//! finding each other and carrying publications.
//!
//! Every participant here is [`ParticipantConfig::loopback`] on a UDP port
//! of the round's own (a port the system just handed out): streams listen
//! on `127.0.0.1`, and discovery beacons go to `127.255.255.255` only
//! ([`BeaconTarget::LoopbackBroadcast`](weft_participant::DiscoveryConfig)),
//! which Linux never sends off the host. Nothing leaves `127.0.0.0/8`.
//! Everything else is the participant default (acks on, per-participant
//! queues of 65 536 messages that drop their oldest, 1 s beacon interval).
//!
//! - `participants: full mesh of 10`: ten participants started one after
//!   the other on a multi-thread runtime with [`MESH_WORKERS`] workers,
//!   timed from just before the first [`Participant::start`] until every
//!   one of them reports the other nine in [`Participant::connected`]
//!   (polled every [`POLL`]). The runtime has workers so that each
//!   participant's tasks run, and its first beacon leaves, while the next
//!   ones start, as they would in separate processes; on one
//!   current-thread runtime all ten would be started before any beacon
//!   left, and every first beacon would find all the others at once.
//!   A limit row: the limit is the discovery beacon interval
//!   ([`DiscoveryConfig::effective_interval`] of the default, 1 s). The
//!   start burst (3 beacons, 150 ms apart) and the answers to newcomers
//!   (at most one per 150 ms) must find everyone; a mesh that needs a
//!   steady beacon (one interval after start) means a beacon or an
//!   answer was lost or late, on a loopback that loses nothing. The
//!   discovery docs promise visibility within 2 s; the limit is the
//!   stricter of the two.
//! - `participants pub/sub fan-out 10`: one publisher participant on one
//!   thread, ten subscriber participants (one [`Subscriber`] each, prefix
//!   filter) together on a second thread, each thread with its own
//!   current-thread runtime. The publisher publishes 64-byte messages
//!   with [`Publisher::publish`]; every subscriber drains its queue with
//!   [`Subscriber::recv_many`] (up to [`RECV_MANY`] per call: one lock of
//!   the queue per call, not per publication; libzmq has no such call,
//!   its subscribers take one message per `recv`). The value is
//!   deliveries per second: ten times the publications, over the time
//!   from the first timed publish to the moment the last subscriber has
//!   its last publication. The baseline is libzmq PUB with ten SUB sockets
//!   (`zmq_pubsub.rs`), shaped the same and counted the same; rounds
//!   alternate between the two. `participants pub/sub fan-out 10 vs
//!   Zenoh` sets the same series beside Zenoh sessions, one per
//!   subscriber, shaped the same (`zenoh_pubsub.rs`).
//!
//! # No loss, on both sides
//!
//! A participant's queue drops its oldest message when full, and libzmq's
//! PUB drops at its high-water mark; a rate over dropped messages would be
//! meaningless. So both publishers wait instead: weft's checks the queue
//! depth of every subscriber every [`BURST`] publications (after
//! yielding to its runtime, so that the streams write) and sleeps while
//! the deepest holds [`HWM`] or more (far below the queue's 65 536, so
//! nothing is dropped; the depth counts messages not yet acknowledged by
//! the subscriber's participant); libzmq's PUB has
//! `ZMQ_XPUB_NODROP` set and [`HWM`] as its send and receive high-water
//! marks, so `send` waits while any subscriber's pipe is full. Timed
//! publications carry a sequence number that every subscriber checks:
//! a lost or reordered one fails the round, as does any drop counted by
//! weft ([`Subscriber::dropped`], the participant's `dropped`).

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use weft_participant::{
    DiscoveryConfig, Identity, Participant, ParticipantConfig, ParticipantError, Publisher,
    Subscriber, TopicFilter,
};

use crate::Scale;
use crate::harness::{self, LIMIT, ctx};
use crate::report::{Report, Row, Target};
use crate::series::Series;
use crate::throughput::{self, Load};

/// The rows' names (both contain `participants`, for `--only`).
const MESH_CASE: &str = "participants: full mesh of 10";
const FANOUT_CASE: &str = "participants pub/sub fan-out 10";
const FANOUT_ZENOH: &str = "participants pub/sub fan-out 10 vs Zenoh";
const FANOUT_ROUTED: &str = "participants pub/sub fan-out 10 through one participant";
const SCALE_CASE: &str = "participants: 200 to full delivery";

/// Participants in the scale row, of which [`SCALE_SUBSCRIBERS`] host a
/// subscriber.
const SCALE: usize = 200;
const SCALE_SUBSCRIBERS: usize = 20;

/// The scale row's limit: from the first start to delivery everywhere.
const SCALE_LIMIT: Duration = Duration::from_secs(10);

/// Participants in the mesh row.
const MESH: usize = 10;

/// Worker threads of the mesh row's runtime.
const MESH_WORKERS: usize = 2;

/// Subscribers (each its own participant) in the fan-out row.
pub(crate) const SUBSCRIBERS: usize = 10;

/// Payload bytes of every publication.
pub(crate) const SIZE: usize = 64;

/// The topic published, and the prefix the subscribers subscribe to.
pub(crate) const TOPIC: &str = "bench.fanout";
pub(crate) const PREFIX: &str = "bench.";

/// Messages one subscriber may have waiting at the publisher (weft: its
/// participant's queue depth; libzmq: the pipe's high-water mark) before
/// the publisher waits.
pub(crate) const HWM: usize = 32_768;

/// Publications between two yields of weft's publisher to its runtime
/// (and checks of the queue depths).
const BURST: u64 = 512;

/// How often a waiting side looks again (the mesh, the other side's
/// progress).
pub(crate) const POLL: Duration = Duration::from_millis(1);

/// Publications a subscriber takes from its queue at once, at most
/// ([`Subscriber::recv_many`]).
const RECV_MANY: usize = 256;

/// How long a subscriber waits for one publication before it checks
/// whether the other side failed.
const STEP: Duration = Duration::from_secs(1);

/// The first payload byte: what a publication is for.
pub(crate) const WARM: u8 = 0;
/// Sent once after the warm-up; every subscriber notes it.
pub(crate) const SYNC: u8 = 1;
/// Timed; bytes 1..9 are the sequence number (little-endian `u64`).
pub(crate) const TIMED: u8 = 2;

/// Runs case 6 and adds the rows `wanted` asks for.
pub(crate) fn run(scale: Scale, wanted: &dyn Fn(&str) -> bool, report: &mut Report) {
    if wanted(MESH_CASE) {
        mesh(scale, report);
    }
    if wanted(FANOUT_CASE) {
        fanout(scale, report);
    }
    if wanted(SCALE_CASE) {
        group(scale, report);
    }
}

/// The scale row.
fn group(scale: Scale, report: &mut Report) {
    let rounds = if scale.quick { 2 } else { 3 };
    let mut series = match raise_fd_limit() {
        Ok(()) => Series::default(),
        Err(e) => Series::unavailable(e),
    };
    for round in 0..rounds {
        eprintln!("{SCALE_CASE}: round {}/{rounds}", round + 1);
        if series.live() {
            series.push(group_once().map(|t| t.as_secs_f64() * 1e3));
        }
    }
    report.row(Row::limit(
        SCALE_CASE,
        "ms",
        &series,
        SCALE_LIMIT.as_secs_f64() * 1e3,
    ));
    report.note(format!(
        "participants: 200 to full delivery: {SCALE} ParticipantConfig::loopback participants \
         (default max_streams and group_size: past the full mesh's size each keeps a bounded \
         set of streams) started in turn on a {MESH_WORKERS}-worker runtime, {SCALE_SUBSCRIBERS} \
         of them with a subscriber and one with a publisher; timed from the first start until \
         every participant knows every other (in beacons or as a route), the publisher has heard \
         of every subscriber, and one publication has reached each; {rounds} rounds"
    ));
}

/// Lets this process open as many files as its hard limit allows: 200
/// participants hold about 4,000 sockets.
fn raise_fd_limit() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct
    // passed, which lives across both calls.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !ok || limit.rlim_cur < 8192 {
        return Err(format!(
            "not measured: {SCALE} participants need about 4,000 open files; the limit is {}",
            limit.rlim_cur
        ));
    }
    Ok(())
}

/// How many other participants `p` knows: heard in beacons, or reached
/// through its neighbours.
fn known_of(p: &Participant) -> usize {
    let mut known: std::collections::BTreeSet<String> =
        p.peers().into_iter().map(|i| i.identity).collect();
    known.extend(p.routes().into_iter().map(|r| r.destination));
    known.remove(p.identity().as_str());
    known.len()
}

/// One measurement of the scale row.
fn group_once() -> Result<Duration, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(MESH_WORKERS)
        .enable_all()
        .build()
        .map_err(ctx("building a Tokio runtime"))?;
    let run = async {
        let port = free_port()?;
        let deadline = Instant::now() + LIMIT / 2;
        let begin = Instant::now();
        let mut participants = Vec::with_capacity(SCALE);
        for i in 0..SCALE {
            participants.push(start(port, &format!("scale-{i}")).await?);
        }
        let subscribers: Vec<Subscriber> = participants[1..=SCALE_SUBSCRIBERS]
            .iter()
            .map(|p| p.subscriber(TopicFilter::Prefix(PREFIX.into())))
            .collect();
        let publisher = participants[0]
            .publisher(TOPIC)
            .map_err(ctx("a publisher"))?;
        loop {
            let known = participants.iter().map(known_of).min().unwrap_or(0);
            let heard = publisher.subscribers().len();
            if known == SCALE - 1 && heard == SCALE_SUBSCRIBERS {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "after {} s the least informed participant knows {known} of {} others, \
                     and the publisher heard of {heard} of {SCALE_SUBSCRIBERS} subscribers",
                    (LIMIT / 2).as_secs(),
                    SCALE - 1
                ));
            }
            tokio::time::sleep(POLL * 10).await;
        }
        publisher
            .publish(payload(WARM, 0))
            .map_err(ctx("publishing"))?;
        for s in &subscribers {
            let left = deadline.saturating_duration_since(Instant::now());
            s.recv(Some(left)).await.map_err(ctx("a subscriber"))?;
        }
        let took = begin.elapsed();
        drop(subscribers);
        drop(publisher);
        close_all(participants).await;
        Ok(took)
    };
    let measured = runtime.block_on(async { tokio::time::timeout(LIMIT, run).await });
    measured.unwrap_or_else(|_| Err(format!("timed out after {} s", LIMIT.as_secs())))
}

/// The mesh row.
fn mesh(scale: Scale, report: &mut Report) {
    let limit = DiscoveryConfig::default().effective_interval();
    let mut series = Series::default();
    for round in 0..scale.rounds {
        eprintln!("{MESH_CASE}: round {}/{}", round + 1, scale.rounds);
        if series.live() {
            series.push(mesh_once().map(|t| t.as_secs_f64() * 1e3));
        }
    }
    report.row(Row::limit(
        MESH_CASE,
        "ms",
        &series,
        limit.as_secs_f64() * 1e3,
    ));
    report.note(format!(
        "participants: full mesh of 10: {MESH} ParticipantConfig::loopback participants \
         (beacons to 127.255.255.255 on a fresh port) started in turn on a {MESH_WORKERS}-worker \
         runtime, timed until each has the other {} in connected() (polled every {} ms); the \
         limit is the default beacon interval ({} ms): the start burst and the answers to \
         newcomers must do it, with no steady beacon needed; a round near 150 ms is one where \
         some participant's answer waited out its 150 ms minimum gap",
        MESH - 1,
        POLL.as_millis(),
        limit.as_millis()
    ));
}

/// The fan-out row.
fn fanout(scale: Scale, report: &mut Report) {
    let load = Load {
        size: SIZE,
        warm: 20_000,
        count: if scale.quick { 200_000 } else { 500_000 },
    };
    let deliveries = load.count * SUBSCRIBERS as u64;
    let mut weft = Series::default();
    let mut zmq = throughput::zmq_series();
    let mut zenoh = throughput::zenoh_series();
    let mut routed = Series::default();
    for round in 0..scale.rounds {
        eprintln!("{FANOUT_CASE}: round {}/{}", round + 1, scale.rounds);
        if weft.live() {
            weft.push(fanout_once(load).map(|t| rate(deliveries, t)));
        }
        if zmq.live() {
            zmq.push(zmq_once(load).map(|t| rate(deliveries, t)));
        }
        if zenoh.live() {
            zenoh.push(throughput::zenoh_once(load, SUBSCRIBERS).map(|t| rate(deliveries, t)));
        }
        if routed.live() {
            routed.push(crate::participants_routed::once(load).map(|t| rate(deliveries, t)));
        }
    }
    report.row(Row::compare(
        FANOUT_CASE,
        "msg/s",
        &weft,
        "libzmq",
        &zmq,
        Target::RatioAtLeast(1.0),
    ));
    report.row(Row::compare(
        FANOUT_ROUTED,
        "msg/s",
        &routed,
        "direct",
        &weft,
        Target::RatioAtLeast(0.8),
    ));
    report.row(Row::compare(
        FANOUT_ZENOH,
        "msg/s",
        &weft,
        "Zenoh",
        &zenoh,
        Target::RatioAtLeast(1.5),
    ));
    report.note(format!(
        "participants pub/sub fan-out 10: one publisher participant on one thread, \
         {SUBSCRIBERS} subscriber participants (prefix `{PREFIX}`) on a second, each thread with \
         its own current-thread runtime; {} publications of {SIZE} B on `{TOPIC}` timed after {} \
         of warm-up, from the first publish to the last subscriber's last receive; weft's \
         subscribers take up to {RECV_MANY} at once (Subscriber::recv_many), libzmq's one per \
         recv; msg/s counts \
         deliveries ({SUBSCRIBERS} per publication), the same for libzmq (PUB and {SUBSCRIBERS} \
         SUB sockets over loopback TCP, one context per side); no loss on either side: weft's \
         publisher sleeps while a subscriber's queue holds {HWM} messages, libzmq's PUB has \
         ZMQ_XPUB_NODROP and high-water marks of {HWM}, and every subscriber checks the \
         sequence numbers; the Zenoh baseline is one publisher session and {SUBSCRIBERS} \
         subscriber sessions in peer mode over loopback TCP (scouting off), congestion control \
         Block, each sample checked in a subscriber callback (see zenoh_pubsub.rs)",
        load.count, load.warm
    ));
}

/// Deliveries/s.
fn rate(deliveries: u64, took: Duration) -> f64 {
    deliveries as f64 / took.as_secs_f64().max(1e-9)
}

/// The libzmq baseline's measurement.
#[cfg(feature = "zmq")]
fn zmq_once(load: Load) -> Result<Duration, String> {
    crate::zmq_pubsub::once(load)
}

/// The libzmq baseline's measurement, in a build without libzmq.
#[cfg(not(feature = "zmq"))]
fn zmq_once(_load: Load) -> Result<Duration, String> {
    Err(crate::NO_ZMQ.into())
}

/// A UDP port of loopback no one uses now, for one round's beacons.
pub(crate) fn free_port() -> Result<u16, String> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(ctx("finding a free UDP port"))
}

/// A participant of this host only (see the module docs), named `name`.
fn config(port: u16, name: &str) -> ParticipantConfig {
    ParticipantConfig::loopback(port).with_identity(name)
}

async fn start(port: u16, name: &str) -> Result<Participant, String> {
    start_with(config(port, name)).await
}

pub(crate) async fn start_with(config: ParticipantConfig) -> Result<Participant, String> {
    let name = config.identity.clone().unwrap_or_default();
    Participant::start(config)
        .await
        .map_err(|e| format!("starting participant {name}: {e}"))
}

/// Closes every participant, all at once, and waits (untimed).
pub(crate) async fn close_all(participants: Vec<Participant>) {
    let mut closing = JoinSet::new();
    for p in participants {
        closing.spawn(async move { p.close().await });
    }
    while closing.join_next().await.is_some() {}
}

/// One measurement of the mesh row: the time from the first start to a
/// full mesh.
fn mesh_once() -> Result<Duration, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(MESH_WORKERS)
        .enable_all()
        .build()
        .map_err(ctx("building a Tokio runtime"))?;
    let mesh = async {
        let port = free_port()?;
        let deadline = Instant::now() + LIMIT / 2;
        let begin = Instant::now();
        let mut participants = Vec::with_capacity(MESH);
        for i in 0..MESH {
            participants.push(start(port, &format!("mesh-{i}")).await?);
        }
        while !participants.iter().all(|p| p.connected().len() == MESH - 1) {
            if Instant::now() > deadline {
                let counts: Vec<usize> = participants.iter().map(|p| p.connected().len()).collect();
                return Err(format!(
                    "no full mesh after {} s; streams per participant: {counts:?}",
                    (LIMIT / 2).as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        let took = begin.elapsed();
        close_all(participants).await;
        Ok(took)
    };
    // The timer needs the runtime: made inside it.
    let measured = runtime.block_on(async { tokio::time::timeout(LIMIT, mesh).await });
    measured.unwrap_or_else(|_| Err(format!("timed out after {} s", LIMIT.as_secs())))
}

/// How far the subscribers of one fan-out measurement are, shared by the
/// publisher's and the subscribers' threads (weft's and libzmq's alike).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Subscribers that received anything.
    pub(crate) ready: AtomicUsize,
    /// Subscribers that received the [`SYNC`] publication.
    pub(crate) synced: AtomicUsize,
    /// Subscribers that received every timed publication.
    pub(crate) done: AtomicUsize,
    /// A side failed: the other stops waiting.
    failed: AtomicBool,
}

impl Progress {
    /// Notes a side's failure, so that the other stops waiting for it;
    /// passes `result` on.
    pub(crate) fn guard<T>(&self, result: Result<T, String>) -> Result<T, String> {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Fails when the other side failed or `deadline` passed, saying what
    /// was being waited for.
    pub(crate) fn check(&self, deadline: Instant, waiting: &str) -> Result<(), String> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(format!("the other side failed while {waiting}"));
        }
        if Instant::now() > deadline {
            return Err(format!("timed out while {waiting}"));
        }
        Ok(())
    }

    /// Whether all subscribers reached `counter`.
    pub(crate) fn all(counter: &AtomicUsize) -> bool {
        counter.load(Ordering::Relaxed) >= SUBSCRIBERS
    }
}

/// One subscriber's view of the publications: checks them and moves the
/// shared [`Progress`] on.
#[derive(Debug)]
pub(crate) struct Tally {
    seen: bool,
    synced: bool,
    /// The sequence number expected next.
    next: u64,
    count: u64,
}

impl Tally {
    /// A subscriber expecting `count` timed publications.
    pub(crate) fn new(count: u64) -> Tally {
        Tally {
            seen: false,
            synced: false,
            next: 0,
            count,
        }
    }

    /// Takes one payload; true once it was the last timed one.
    pub(crate) fn take(&mut self, payload: &[u8], progress: &Progress) -> Result<bool, String> {
        if payload.len() != SIZE {
            return Err(format!(
                "a publication of {} bytes, sent {SIZE}",
                payload.len()
            ));
        }
        if !self.seen {
            self.seen = true;
            progress.ready.fetch_add(1, Ordering::Relaxed);
        }
        match payload[0] {
            WARM => {}
            SYNC => {
                if !self.synced {
                    self.synced = true;
                    progress.synced.fetch_add(1, Ordering::Relaxed);
                }
            }
            TIMED => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&payload[1..9]);
                let seq = u64::from_le_bytes(seq);
                if seq != self.next {
                    return Err(format!(
                        "expected publication {}, got {seq}: publications were lost or reordered",
                        self.next
                    ));
                }
                self.next += 1;
                if self.next == self.count {
                    progress.done.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
            }
            other => return Err(format!("a publication marked {other}")),
        }
        Ok(false)
    }
}

/// The payload of a publication: `marker`, then `seq` for timed ones.
pub(crate) fn payload(marker: u8, seq: u64) -> [u8; SIZE] {
    let mut p = [0xA5u8; SIZE];
    p[0] = marker;
    p[1..9].copy_from_slice(&seq.to_le_bytes());
    p
}

/// One measurement of the fan-out row: the time from the first timed
/// publish to the last subscriber's last receive.
fn fanout_once(load: Load) -> Result<Duration, String> {
    let port = free_port()?;
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let configs = (0..SUBSCRIBERS)
        .map(|i| config(port, &subscriber_name(i)))
        .collect();
    let subscribing = move || {
        let side = subscribers(configs, load.count, shared.clone(), None);
        shared.guard(harness::block_on(LIMIT, side))
    };
    let publishing = move || {
        let side = publisher(config(port, "fan-pub"), load, progress.clone(), None);
        progress.guard(harness::block_on(LIMIT, side))
    };
    let (end, start) = harness::pair(("fan-subs", subscribing), ("fan-pub", publishing))?;
    Ok(end.saturating_duration_since(start))
}

/// Publications each subscriber has taken, for a publisher that paces
/// on them (when its own queues do not show the subscribers' backlog).
pub(crate) type Received = Arc<Vec<std::sync::atomic::AtomicU64>>;

/// The subscribers' side: starts the ten participants and their
/// subscribers, drains them; when the last timed publication arrived.
pub(crate) async fn subscribers(
    configs: Vec<ParticipantConfig>,
    count: u64,
    progress: Arc<Progress>,
    received: Option<Received>,
) -> Result<Instant, String> {
    let mut participants = Vec::with_capacity(SUBSCRIBERS);
    let mut drains = JoinSet::new();
    for (i, config) in configs.into_iter().enumerate() {
        let participant = start_with(config).await?;
        let subscriber = participant.subscriber(TopicFilter::Prefix(PREFIX.into()));
        let progress = progress.clone();
        let received = received.clone();
        drains.spawn(async move {
            let taken = received.as_ref().map(|r| &r[i]);
            let result = drain(&subscriber, count, &progress, taken).await;
            progress.guard(result)
        });
        participants.push(participant);
    }
    let mut last: Option<Instant> = None;
    while let Some(done) = drains.join_next().await {
        let end = done.map_err(ctx("a subscriber's task"))??;
        last = Some(last.map_or(end, |l| l.max(end)));
    }
    let dropped: u64 = participants
        .iter()
        .map(|p| p.stats().messaging.dropped)
        .sum();
    close_all(participants).await;
    if dropped > 0 {
        return Err(format!("the subscribers' participants dropped {dropped}"));
    }
    last.ok_or_else(|| "no subscribers".into())
}

pub(crate) fn subscriber_name(i: usize) -> String {
    format!("fan-sub-{i}")
}

/// Takes publications from `subscriber` until the last timed one; when it
/// arrived.
async fn drain(
    subscriber: &Subscriber,
    count: u64,
    progress: &Progress,
    taken: Option<&std::sync::atomic::AtomicU64>,
) -> Result<Instant, String> {
    let mut tally = Tally::new(count);
    let deadline = Instant::now() + LIMIT;
    let mut batch = Vec::with_capacity(RECV_MANY);
    loop {
        match subscriber
            .recv_many(&mut batch, RECV_MANY, Some(STEP))
            .await
        {
            Ok(n) => {
                if let Some(taken) = taken {
                    taken.fetch_add(n as u64, Ordering::Relaxed);
                }
                for p in batch.drain(..) {
                    if tally.take(&p.data, progress)? {
                        return finished(subscriber);
                    }
                }
            }
            Err(ParticipantError::Timeout(_)) => {
                progress.check(deadline, "waiting for publications")?;
            }
            Err(e) => return Err(format!("receiving: {e}")),
        }
    }
}

/// The time now, unless the subscriber's queue dropped something.
fn finished(subscriber: &Subscriber) -> Result<Instant, String> {
    let end = Instant::now();
    match subscriber.dropped() {
        0 => Ok(end),
        n => Err(format!("a subscriber's queue dropped {n} publications")),
    }
}

/// The publisher's side: waits for the subscribers' interest, warms up,
/// publishes the timed publications; when the first was published.
///
/// It waits while a subscriber is [`HWM`] publications behind: as its own
/// queue to that subscriber shows, or, with `received`, as the
/// subscribers' counts show (when its queues are to an intermediate).
pub(crate) async fn publisher(
    config: ParticipantConfig,
    load: Load,
    progress: Arc<Progress>,
    received: Option<Received>,
) -> Result<Instant, String> {
    let deadline = Instant::now() + LIMIT;
    let participant = start_with(config).await?;
    let publisher = participant.publisher(TOPIC).map_err(ctx("a publisher"))?;
    let subscribers = (0..SUBSCRIBERS)
        .map(|i| Identity::new(subscriber_name(i)).map_err(ctx("an identity")))
        .collect::<Result<Vec<_>, String>>()?;
    // Until every subscriber's interest has arrived (the mesh forms first).
    while publish(&publisher, WARM, 0)? < SUBSCRIBERS {
        progress.check(deadline, "waiting for the subscribers' interest")?;
        tokio::time::sleep(POLL).await;
    }
    let paced = Paced {
        publisher: &publisher,
        subscribers: &subscribers,
        progress: &progress,
        deadline,
        received,
        published: std::sync::atomic::AtomicU64::new(0),
    };
    paced.send(WARM, load.warm).await?;
    paced.send(SYNC, 1).await?;
    while !Progress::all(&progress.synced) {
        progress.check(deadline, "waiting for the subscribers to warm up")?;
        tokio::time::sleep(POLL).await;
    }
    let start = Instant::now();
    paced.send(TIMED, load.count).await?;
    // Keep this runtime (and so the streams) running until all arrived.
    while !Progress::all(&progress.done) {
        progress.check(deadline, "waiting for the subscribers to finish")?;
        tokio::time::sleep(POLL).await;
    }
    let dropped = participant.stats().messaging.dropped;
    drop(publisher);
    participant.close().await;
    if dropped > 0 {
        return Err(format!("the publisher's participant dropped {dropped}"));
    }
    Ok(start)
}

/// Publishes one publication; to how many participants.
fn publish(publisher: &Publisher, marker: u8, seq: u64) -> Result<usize, String> {
    publisher
        .publish(payload(marker, seq))
        .map_err(|e| format!("publishing: {e}"))
}

/// weft's publisher, waiting whenever a subscriber's queue is deep.
struct Paced<'a> {
    publisher: &'a Publisher,
    subscribers: &'a [Identity],
    progress: &'a Progress,
    deadline: Instant,
    /// What the subscribers took, when pacing on that.
    received: Option<Received>,
    /// Publications sent, for pacing on `received`.
    published: std::sync::atomic::AtomicU64,
}

impl Paced<'_> {
    /// Publishes `count` publications marked `marker`, numbered from 0,
    /// each of which must reach every subscriber.
    async fn send(&self, marker: u8, count: u64) -> Result<(), String> {
        for seq in 0..count {
            let reached = publish(self.publisher, marker, seq)?;
            self.published.fetch_add(1, Ordering::Relaxed);
            if reached != SUBSCRIBERS {
                return Err(format!(
                    "publication {seq} reached {reached} of {SUBSCRIBERS} subscribers"
                ));
            }
            if (seq + 1) % BURST == 0 {
                tokio::task::yield_now().await;
                self.pace().await?;
            }
        }
        Ok(())
    }

    /// Waits while the deepest subscriber queue holds [`HWM`] or more:
    /// yields once (the streams may write meanwhile), then sleeps [`POLL`]
    /// at a time, as libzmq's `send` sleeps at its high-water mark rather
    /// than spin. A queue that deep takes far longer than [`POLL`] to
    /// drain, so the sleeps never leave a stream idle.
    async fn pace(&self) -> Result<(), String> {
        let messaging = self.publisher.participant().messaging();
        let deepest = || match &self.received {
            Some(received) => {
                let slowest = received
                    .iter()
                    .map(|r| r.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                usize::try_from(
                    self.published
                        .load(Ordering::Relaxed)
                        .saturating_sub(slowest),
                )
                .unwrap_or(usize::MAX)
            }
            None => self
                .subscribers
                .iter()
                .map(|s| messaging.queue_depth(s))
                .max()
                .unwrap_or(0),
        };
        if deepest() < HWM {
            return Ok(());
        }
        tokio::task::yield_now().await;
        while deepest() >= HWM {
            self.progress
                .check(self.deadline, "waiting for the subscribers' queues")?;
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}
