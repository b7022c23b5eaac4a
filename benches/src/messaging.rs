//! Case 4: weft-messaging, two peers addressed by identity over loopback
//! TCP, side by side with libzmq PUSH/PULL and snakeMQ 1.6.
//!
//! - `messaging 64 B no acks` and `messaging 64 B with acks`: a sending
//!   and a receiving [`Messaging`], each on its own OS thread and
//!   current-thread runtime (as the packeter cases run), `acks` off and on
//!   in both peers' [`MessagingConfig`]; everything else is the default.
//!   The sender calls [`Messaging::try_send_message`] in a loop and yields
//!   to its runtime every [`BURST`] messages (and whenever the queue is
//!   full) so its connection can write; the receiver counts in an
//!   [`on_message`](Messaging::on_message) handler with its default queue
//!   unsubscribed, so nothing is copied into a queue no one reads. Timed
//!   from the first send to the last receive, after a warm-up. Every round
//!   measures both weft rows, then libzmq PUSH/PULL with the same load
//!   (see `zmq_pushpull.rs`), then (in the first rounds) snakeMQ.
//! - `messaging vs snakeMQ 64 B`: the `with acks` series against snakeMQ
//!   1.6 moving 64-byte messages between two Python processes (see
//!   `snakemq.rs`).
//! - `messaging persistent SQLite`: the sender has a [`SqliteStorage`] (a
//!   fresh file in the system's temporary directory) and [`SENDERS`]
//!   tasks each awaiting [`Messaging::send_message`] of persistent
//!   messages, so the storage worker's group commits are shared; acks on.
//!   Timed from the first send until the receiver has every message and
//!   the sender's [`Messaging::flush`] returned (every message stored,
//!   acknowledged and its delete handed to the storage worker). Afterwards
//!   (untimed) the file is checked to be empty again.
//! - `messaging 100k queued 1 KiB`: in a fresh child process, the RSS
//!   growth of queueing 100 000 messages of 1 KiB (each its own
//!   allocation) for an identity that never connects, over their payload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use weft_link::Address;
use weft_messaging::storage::{SqliteStorage, Storage};
use weft_messaging::{Identity, Message, Messaging, MessagingConfig, MessagingError};

use crate::Scale;
use crate::harness::{self, LIMIT, LOOPBACK, ctx};
use crate::report::{Report, Row, Target};
use crate::series::Series;
use crate::throughput::{self, Load};
use crate::{memory, snakemq};

/// The `--memory-child` mode of the queued-messages measurement.
pub(crate) const MEMORY_CHILD: &str = "messaging-queue";

/// Payload bytes of the throughput rows.
const SIZE: usize = 64;

/// Messages the sender queues between two yields to its runtime.
const BURST: u64 = 4096;

/// Concurrent sending tasks in the persistent row.
const SENDERS: u64 = 64;

/// The persistent row's target, in messages/s.
const PERSISTENT_TARGET: f64 = 50_000.0;

/// Messages queued in the memory row, and their size.
const QUEUED: usize = 100_000;
const QUEUED_SIZE: usize = 1024;

/// The memory row's limit: RSS growth over payload bytes.
const QUEUED_LIMIT: f64 = 2.0;

/// The receiving peer's identity.
const RECEIVER: &str = "bench-recv";
/// The sending peer's identity.
const SENDER: &str = "bench-send";

/// Runs case 4 and adds its rows. `python` is a Python with snakeMQ 1.6
/// (without it the snakeMQ row has no baseline value); `wanted` says
/// whether a row, by its name, should run.
pub(crate) fn run(
    scale: Scale,
    python: Option<&Path>,
    wanted: &dyn Fn(&str) -> bool,
    report: &mut Report,
) {
    if [FAST_NO_ACKS, FAST_ACKS, VS_SNAKEMQ]
        .iter()
        .any(|c| wanted(c))
    {
        fast(scale, python, report);
    }
    if wanted(PERSISTENT) {
        persistent(scale, report);
    }
    if wanted(QUEUED_CASE) {
        queued(report);
    }
}

/// The rows' names.
const FAST_NO_ACKS: &str = "messaging 64 B no acks";
const FAST_ACKS: &str = "messaging 64 B with acks";
const VS_ZENOH: &str = "messaging 64 B no acks vs Zenoh";
const VS_SNAKEMQ: &str = "messaging vs snakeMQ 64 B";
const PERSISTENT: &str = "messaging persistent SQLite";
const QUEUED_CASE: &str = "messaging 100k queued 1 KiB";

/// The 64-byte rows against libzmq and snakeMQ.
fn fast(scale: Scale, python: Option<&Path>, report: &mut Report) {
    let n = |quick: u64, full: u64| if scale.quick { quick } else { full };
    let load = Load {
        size: SIZE,
        warm: 100_000,
        count: n(2_000_000, 5_000_000),
    };
    let snake_count = n(20_000, 50_000);
    let snake_rounds = n(3, 5) as usize;
    let mut no_acks = Series::default();
    let mut acks = Series::default();
    let mut zmq = throughput::zmq_series();
    let mut zenoh = throughput::zenoh_series();
    let mut snake = match python {
        Some(_) => Series::default(),
        None => Series::unavailable(snakemq::NO_PYTHON),
    };
    for round in 0..scale.rounds {
        eprintln!("messaging 64 B: round {}/{}", round + 1, scale.rounds);
        if no_acks.live() {
            no_acks.push(fast_once(false, load).map(|t| rate(load.count, t)));
        }
        if acks.live() {
            acks.push(fast_once(true, load).map(|t| rate(load.count, t)));
        }
        if zmq.live() {
            zmq.push(throughput::zmq_once(load).map(|t| rate(load.count, t)));
        }
        if zenoh.live() {
            zenoh.push(throughput::zenoh_once(load, 1).map(|t| rate(load.count, t)));
        }
        if let Some(python) = python.filter(|_| round < snake_rounds && snake.live()) {
            snake.push(snakemq::once(python, snake_count, SIZE));
        }
    }
    report.row(Row::compare(
        FAST_NO_ACKS,
        "msg/s",
        &no_acks,
        "libzmq",
        &zmq,
        Target::RatioAtLeast(1.0),
    ));
    report.row(Row::compare(
        FAST_ACKS,
        "msg/s",
        &acks,
        "libzmq",
        &zmq,
        Target::RatioAtLeast(0.7),
    ));
    report.row(Row::compare(
        VS_ZENOH,
        "msg/s",
        &no_acks,
        "Zenoh",
        &zenoh,
        Target::RatioAtLeast(1.5),
    ));
    report.row(Row::compare(
        VS_SNAKEMQ,
        "msg/s",
        &acks,
        "snakeMQ",
        &snake,
        Target::RatioAtLeast(50.0),
    ));
    report.note(format!(
        "messaging 64 B: two Messaging peers, each on its own OS thread and current-thread \
         runtime; default MessagingConfig but `acks` off (no acks row) or on (with acks and \
         snakeMQ rows) in both; the sender loops on try_send_message and yields every {BURST} \
         messages, the receiver counts in an on_message handler (default queue unsubscribed); \
         {} messages timed after {} of warm-up, from the first send to the last receive; the \
         libzmq baseline is the same load over PUSH/PULL, measured in the same rounds; the \
         Zenoh baseline is the same load from one publisher session to one subscriber \
         session in peer mode over loopback TCP, scouting off, congestion control Block, each \
         sample checked in a callback (see zenoh_pubsub.rs), in the same rounds",
        load.count, load.warm
    ));
    if python.is_none() {
        return;
    }
    report.note(format!(
        "messaging vs snakeMQ: snakeMQ 1.6 sends {snake_count} messages of {SIZE} B between two \
         Python processes (one Link each) over loopback TCP, timed from the first send to the \
         last receive, {} rounds; weft's value is the `with acks` row",
        snake_rounds.min(scale.rounds)
    ));
}

/// The persistent row.
fn persistent(scale: Scale, report: &mut Report) {
    let n = |quick: u64, full: u64| if scale.quick { quick } else { full };
    let persistent = Load {
        size: SIZE,
        warm: 5_000,
        count: n(100_000, 300_000),
    };
    let rounds = n(3, 5) as usize;
    let mut stored = Series::default();
    let mut leftovers = Vec::new();
    for round in 0..rounds {
        eprintln!("messaging persistent SQLite: round {}/{rounds}", round + 1);
        if stored.live() {
            stored.push(persistent_once(persistent).map(|(t, left)| {
                leftovers.push(left);
                rate(persistent.count, t)
            }));
        }
    }
    report.row(Row::floor(PERSISTENT, "msg/s", &stored, PERSISTENT_TARGET));
    report.note(format!(
        "messaging persistent SQLite: {} persistent {SIZE} B messages per round from {SENDERS} \
         tasks awaiting send_message (SqliteStorage in a fresh file under {}, WAL, \
         synchronous=NORMAL), acks on; timed until the receiver had them all and the sender's \
         flush() returned: each stored (committed) before it was sent, delivered and \
         acknowledged; rows left in the file after the round (untimed check): {leftovers:?}",
        persistent.count,
        std::env::temp_dir().display()
    ));
}

/// The memory row.
fn queued(report: &mut Report) {
    eprintln!("messaging: {QUEUED} queued messages of {QUEUED_SIZE} B, in a child process");
    let queued = memory::in_child::<Queued>(MEMORY_CHILD);
    let detail = match &queued {
        Ok(q) => format!(
            "one child process, VmRSS {} -> {} KiB for {} queued messages",
            q.before_kib, q.after_kib, q.queued
        ),
        Err(_) => "one child process".into(),
    };
    let series = Series::single(
        queued.as_ref().map(Queued::ratio).map_err(Clone::clone),
        detail,
    );
    report.row(Row::limit(QUEUED_CASE, "x payload", &series, QUEUED_LIMIT));
    if let Ok(q) = &queued {
        report.note(format!(
            "messaging 100k queued 1 KiB: RSS grew {:.1} MiB for {:.1} MiB of payload ({:.0} B \
             per message beyond its 1 KiB), queued in memory for an identity that never \
             connects",
            q.after_kib.saturating_sub(q.before_kib) as f64 / 1024.0,
            (q.queued * QUEUED_SIZE) as f64 / (1 << 20) as f64,
            (q.grown_bytes() - (q.queued * QUEUED_SIZE) as f64) / q.queued as f64
        ));
    }
}

/// Messages/s.
fn rate(count: u64, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

fn identity(name: &str) -> Result<Identity, String> {
    Identity::new(name).map_err(ctx("identity"))
}

fn config(acks: bool) -> MessagingConfig {
    let mut config = MessagingConfig::default();
    config.acks = acks;
    config
}

/// The receiver's count of messages, kept by an `on_message` handler.
struct Tally {
    got: AtomicU64,
    /// Messages whose size was not the size sent.
    wrong: AtomicU64,
    size: usize,
    /// Counts at which waiters are woken and the time noted.
    marks: [u64; 2],
    at: Mutex<Option<Instant>>,
    notify: Notify,
}

impl Tally {
    fn new(size: usize, marks: [u64; 2]) -> Tally {
        Tally {
            got: AtomicU64::new(0),
            wrong: AtomicU64::new(0),
            size,
            marks,
            at: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    fn hit(&self, len: usize) {
        if len != self.size {
            self.wrong.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.got.fetch_add(1, Ordering::Relaxed) + 1;
        if self.marks.contains(&n) {
            *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            self.notify.notify_one();
        }
    }

    /// Waits until `n` (one of the marks) messages arrived; when the last
    /// one arrived.
    async fn wait(&self, n: u64) -> Result<Instant, String> {
        while self.got.load(Ordering::Relaxed) < n {
            self.notify.notified().await;
        }
        let wrong = self.wrong.load(Ordering::Relaxed);
        if wrong > 0 {
            return Err(format!(
                "{wrong} messages arrived with a size other than {}",
                self.size
            ));
        }
        let got = self.got.load(Ordering::Relaxed);
        if got != n {
            return Err(format!("got {got} messages, expected {n}"));
        }
        let at = *self.at.lock().unwrap_or_else(|p| p.into_inner());
        at.ok_or_else(|| "no arrival time noted".into())
    }
}

/// Starts the receiving peer: listening, counting, default queue gone.
async fn start_receiver(
    acks: bool,
    marks: [u64; 2],
) -> Result<(Messaging, Arc<Tally>, Address), String> {
    let messaging = Messaging::new(identity(RECEIVER)?, config(acks))
        .await
        .map_err(ctx("starting the receiver"))?;
    messaging.unsubscribe(0);
    let tally = Arc::new(Tally::new(SIZE, marks));
    let counter = tally.clone();
    messaging.on_message(move |r| counter.hit(r.message.data.len()));
    let at = messaging
        .link()
        .listen(format!("tcp://{LOOPBACK}"))
        .await
        .map_err(ctx("listening"))?
        .address;
    Ok((messaging, tally, at))
}

/// Connects `messaging` to `at` and waits until the receiver identified
/// itself.
async fn connect(messaging: &Messaging, at: &Address) -> Result<Identity, String> {
    let to = identity(RECEIVER)?;
    let up = Arc::new(Notify::new());
    let signal = up.clone();
    messaging.on_connect(move |_| signal.notify_one());
    messaging.link().connect(at).map_err(ctx("connecting"))?;
    while !messaging.is_connected(&to) {
        up.notified().await;
    }
    Ok(to)
}

/// One measurement of the 64-byte rows: the time from the first timed send
/// to the last receive.
fn fast_once(acks: bool, load: Load) -> Result<Duration, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<Address>();
    let (warm_tx, warm_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let receiver = move || {
        harness::block_on(LIMIT, async move {
            let marks = [load.warm, load.warm + load.count];
            let (_messaging, tally, at) = start_receiver(acks, marks).await?;
            addr_tx
                .send(at)
                .map_err(|_| "sender gone before connecting")?;
            tally.wait(marks[0]).await?;
            let _ = warm_tx.send(());
            let end = tally.wait(marks[1]).await?;
            let _ = done_tx.send(());
            Ok(end)
        })
    };
    let sender = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx
                .await
                .map_err(|_| "receiver gone before listening")?;
            let messaging = Messaging::new(identity(SENDER)?, config(acks))
                .await
                .map_err(ctx("starting the sender"))?;
            let to = connect(&messaging, &at).await?;
            let payload = Bytes::from(vec![0xA5; load.size]);
            send_burst(&messaging, &to, &payload, load.warm).await?;
            warm_rx
                .await
                .map_err(|_| "receiver failed during warm-up")?;
            let start = Instant::now();
            send_burst(&messaging, &to, &payload, load.count).await?;
            // Keep this runtime (and so the connection) running until
            // everything has arrived.
            done_rx.await.map_err(|_| "receiver failed")?;
            Ok(start)
        })
    };
    let (end, start) = harness::pair(("msg-recv", receiver), ("msg-send", sender))?;
    Ok(end.saturating_duration_since(start))
}

/// Sends `count` messages with `try_send_message`, yielding every
/// [`BURST`] messages and whenever the queue is full.
pub(crate) async fn send_burst(
    messaging: &Messaging,
    to: &Identity,
    payload: &Bytes,
    count: u64,
) -> Result<(), String> {
    let mut sent = 0;
    while sent < count {
        match messaging.try_send_message(to, Message::new(payload.clone())) {
            Ok(()) => {
                sent += 1;
                if sent % BURST == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Err(MessagingError::QueueFull(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(format!("sending message {sent}: {e}")),
        }
    }
    Ok(())
}

/// One measurement of the persistent row: the time, and the rows left in
/// the store afterwards.
fn persistent_once(load: Load) -> Result<(Duration, usize), String> {
    let dir = tempfile::Builder::new()
        .prefix("weft-bench-")
        .tempdir()
        .map_err(ctx("making a temporary directory"))?;
    let path = dir.path().join("queues.sqlite");
    let (addr_tx, addr_rx) = oneshot::channel::<Address>();
    let (warm_tx, warm_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let receiver = move || {
        harness::block_on(LIMIT, async move {
            let marks = [load.warm, load.warm + load.count];
            let (_messaging, tally, at) = start_receiver(true, marks).await?;
            addr_tx
                .send(at)
                .map_err(|_| "sender gone before connecting")?;
            tally.wait(marks[0]).await?;
            let _ = warm_tx.send(());
            let end = tally.wait(marks[1]).await?;
            // Stay connected until the sender has its acks.
            let _ = done_rx.await;
            Ok(end)
        })
    };
    let store = path.clone();
    let sender = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx
                .await
                .map_err(|_| "receiver gone before listening")?;
            let storage = SqliteStorage::open(&store).map_err(ctx("opening SQLite"))?;
            let messaging = Messaging::with_storage(identity(SENDER)?, config(true), storage)
                .await
                .map_err(ctx("starting the sender"))?;
            let to = connect(&messaging, &at).await?;
            let payload = Bytes::from(vec![0x5A; load.size]);
            send_stored(&messaging, &to, &payload, load.warm).await?;
            warm_rx
                .await
                .map_err(|_| "receiver failed during warm-up")?;
            let start = Instant::now();
            send_stored(&messaging, &to, &payload, load.count).await?;
            if !messaging.flush(LIMIT).await {
                return Err("flush did not finish".to_string());
            }
            let flushed = Instant::now();
            let left = emptied(&store).await?;
            let _ = done_tx.send(());
            Ok((start, flushed, left))
        })
    };
    let (received, (start, flushed, left)) =
        harness::pair(("msg-recv", receiver), ("msg-send", sender))?;
    drop(dir);
    Ok((received.max(flushed).saturating_duration_since(start), left))
}

/// Sends `count` persistent messages from [`SENDERS`] tasks, each awaiting
/// its sends one after the other.
async fn send_stored(
    messaging: &Messaging,
    to: &Identity,
    payload: &Bytes,
    count: u64,
) -> Result<(), String> {
    let mut tasks = JoinSet::new();
    for k in 0..SENDERS {
        let share = count / SENDERS + u64::from(k < count % SENDERS);
        let (messaging, to, payload) = (messaging.clone(), to.clone(), payload.clone());
        tasks.spawn(async move {
            for i in 0..share {
                messaging
                    .send_message(&to, Message::new(payload.clone()).persistent())
                    .await
                    .map_err(|e| format!("task {k}, message {i}: {e}"))?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(ctx("a sending task"))??;
    }
    Ok(())
}

/// Waits (up to 10 s) for the store at `path` to be empty again, as every
/// delivered message is deleted; the rows still there at the end.
async fn emptied(path: &Path) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let path: PathBuf = path.to_path_buf();
    loop {
        let check = path.clone();
        let left = tokio::task::spawn_blocking(move || {
            SqliteStorage::open(&check)
                .and_then(|mut s| s.load())
                .map(|loaded| loaded.messages.len())
        })
        .await
        .map_err(ctx("reading the store"))?
        .map_err(ctx("reading the store"))?;
        if left == 0 || Instant::now() > deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the memory child reports, as one JSON line on stdout.
#[derive(Debug, Serialize, Deserialize)]
struct Queued {
    before_kib: u64,
    after_kib: u64,
    queued: usize,
}

impl Queued {
    fn grown_bytes(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 * 1024.0
    }

    /// RSS growth over payload bytes.
    fn ratio(&self) -> f64 {
        self.grown_bytes() / (self.queued * QUEUED_SIZE) as f64
    }
}

/// The memory child's side: queues the messages and prints one JSON line.
pub(crate) fn memory_child() -> Result<(), String> {
    let measured = harness::block_on(LIMIT, queue_memory())?;
    let line = serde_json::to_string(&measured).map_err(ctx("encoding"))?;
    println!("{line}");
    Ok(())
}

async fn queue_memory() -> Result<Queued, String> {
    let messaging = Messaging::new(identity("bench-memory")?, MessagingConfig::default())
        .await
        .map_err(ctx("starting messaging"))?;
    let to = identity("never-connects")?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before_kib = memory::rss_kib()?;
    for i in 0..QUEUED {
        // Each message has its own payload, as real messages would.
        let payload = Bytes::from(vec![i as u8; QUEUED_SIZE]);
        messaging
            .try_send_message(&to, Message::new(payload))
            .map_err(|e| format!("queueing message {i}: {e}"))?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_kib = memory::rss_kib()?;
    let queued = messaging.queue_depth(&to);
    if queued != QUEUED {
        return Err(format!("{queued} messages queued, expected {QUEUED}"));
    }
    if messaging.stats().dropped != 0 {
        return Err("messages were dropped".into());
    }
    Ok(Queued {
        before_kib,
        after_kib,
        queued,
    })
}
