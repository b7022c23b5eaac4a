//! Case 5: weft-rpc, 64-byte echo calls over loopback TCP, side by side
//! with tarpc (in the same process, in the same rounds) and with snakeMQ
//! 1.6's RPC (two Python processes).
//!
//! In every measurement a client calls `echo` with 64 bytes on a server
//! whose handler returns its argument, and checks that every reply is the
//! payload it sent. For weft and tarpc, client and server each run on
//! their own OS thread and current-thread Tokio runtime (as the other
//! cases run), over 127.0.0.1. Every round sets up a fresh pair for weft,
//! then one for tarpc (see `tarpc_echo.rs`), so both see the same machine
//! noise; on each pair the client makes, after untimed warm-up calls:
//!
//! - `rpc 64 B sequential p50 round trip`: calls one after the other, each
//!   timed from making the call until its result is decoded. The row is
//!   the median (p50) of every timed call of all rounds, in microseconds
//!   (lower is better); p99 and calls/s are in the notes.
//! - `rpc 64 B 64 in flight`: [`IN_FLIGHT`] tasks on the client's runtime,
//!   each making its share of the calls one after the other, so that 64
//!   calls are in flight all the time; calls/s from spawning the tasks
//!   until the last one finished, median of the rounds.
//! - `rpc vs snakeMQ 64 B`: the `64 in flight` series against snakeMQ
//!   1.6's RPC (`snakemq.rpc.RpcServer` and `RpcClient`, each in its own
//!   Python process, see `snakemq_rpc_bench.py`). A snakeMQ call blocks
//!   its calling thread, so snakeMQ is measured both with one calling
//!   thread and with 64 (64 calls in flight), and each round's baseline is
//!   the better of the two: each side at its best, from one client
//!   process. The like-for-like ratios (weft sequential against one
//!   thread, 64 in flight against 64 threads) are in the notes.
//!
//! weft's side: two [`Messaging`] peers with the default
//! [`MessagingConfig`] (acks on) and an [`Rpc`] on each; the method is a
//! typed [`Method`] of `Vec<u8>` to `Vec<u8>` (tarpc's is the same types).
//! The [`RpcConfig`] is the default but for the server's result cache,
//! which is off (`result_cache` 0): the client never repeats a call id, and
//! tarpc has no such cache. The default admission (256 handlers running,
//! 4 096 waiting) is far above 64 calls in flight. After every round the
//! counters are checked: every call ran exactly once, and none was refused
//! as overloaded, sent again or timed out.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use weft_link::Address;
use weft_messaging::{Identity, Messaging, MessagingConfig};
use weft_rpc::{Method, Rpc, RpcConfig, RpcStats};

use crate::Scale;
use crate::harness::{self, LIMIT, LOOPBACK, ctx};
use crate::report::{Report, Row, Target};
use crate::series::{Series, percentile_series};
use crate::snakemq::{self, Peer};
use crate::tarpc_echo;

/// Payload bytes of every call (and of every result).
const SIZE: usize = 64;

/// Calls in flight in the `64 in flight` row (and snakeMQ's calling
/// threads in its like-for-like measurement).
const IN_FLIGHT: usize = 64;

/// The rows' names.
const SEQUENTIAL: &str = "rpc 64 B sequential p50 round trip";
const PARALLEL: &str = "rpc 64 B 64 in flight";
const VS_SNAKEMQ: &str = "rpc vs snakeMQ 64 B";

/// weft's echo method.
const ECHO: Method<Vec<u8>, Vec<u8>> = Method::new("bench", "echo");

/// The weft peers' identities.
const SERVER: &str = "bench-rpc-server";
const CLIENT: &str = "bench-rpc-client";

/// snakeMQ's side, run with `python -c`.
const SCRIPT: &str = include_str!("../snakemq_rpc_bench.py");

/// Untimed calls a snakeMQ client makes (one after the other) first.
const SNAKE_WARM: usize = 200;

/// The calls one weft or tarpc client makes in a round.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// Untimed calls, one after the other, before the sequential ones.
    warm: usize,
    /// Timed calls, one after the other.
    sequential: usize,
    /// Untimed calls, 64 in flight, before the timed ones.
    parallel_warm: usize,
    /// Timed calls, 64 in flight.
    parallel: usize,
}

impl Load {
    /// Every call of a round.
    fn total(&self) -> usize {
        self.warm + self.sequential + self.parallel_warm + self.parallel
    }
}

/// What one round measured on one system.
#[derive(Debug)]
struct Round {
    /// Each timed sequential call's round trip, in microseconds.
    micros: Vec<f64>,
    /// The timed sequential calls, all together.
    sequential: Duration,
    /// The timed 64-in-flight calls, all together.
    parallel: Duration,
}

/// One system's results over the rounds, or the error that stopped them.
#[derive(Debug, Default)]
struct Side {
    /// Sequential round trips of all rounds, in microseconds.
    micros: Vec<f64>,
    /// Sequential calls/s, one per round.
    sequential: Vec<f64>,
    /// 64-in-flight calls/s, one per round.
    parallel: Vec<f64>,
    error: Option<String>,
}

impl Side {
    /// Whether another round should be run.
    fn live(&self) -> bool {
        self.error.is_none()
    }

    fn take(&mut self, round: Result<Round, String>, load: Load) {
        match round {
            Ok(r) => {
                self.micros.extend(r.micros);
                self.sequential.push(rate(load.sequential, r.sequential));
                self.parallel.push(rate(load.parallel, r.parallel));
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Per-round values as a series, failed if a round failed.
    fn series(&self, values: &[f64]) -> Series {
        let mut s = Series::default();
        for &v in values {
            s.push(Ok(v));
        }
        if let Some(e) = &self.error {
            s.push(Err(e.clone()));
        }
        s
    }

    /// The `p`th percentile of all sequential round trips as a one-value
    /// series (or the failure).
    fn latency(&self, p: f64) -> Series {
        percentile_series(&self.micros, self.error.as_ref(), p, "sequential calls")
    }
}

/// Runs case 5 and adds its rows. `python` is a Python with snakeMQ 1.6
/// (without it the snakeMQ row has no baseline value); `wanted` says
/// whether a row, by its name, should run.
pub(crate) fn run(
    scale: Scale,
    python: Option<&Path>,
    wanted: &dyn Fn(&str) -> bool,
    report: &mut Report,
) {
    let tarpc_rows = wanted(SEQUENTIAL) || wanted(PARALLEL);
    let snake_row = wanted(VS_SNAKEMQ);
    if !tarpc_rows && !snake_row {
        return;
    }
    let n = |quick: usize, full: usize| if scale.quick { quick } else { full };
    let load = Load {
        warm: 1_000,
        sequential: n(5_000, 20_000),
        parallel_warm: 10_000,
        parallel: n(100_000, 200_000),
    };
    let snake_calls = n(2_000, 4_000);
    let snake_rounds = n(3, 5).min(scale.rounds);
    let mut weft = Side::default();
    let mut tarpc = Side::default();
    let (mut snake_one, mut snake_many, mut snake_best) = match python {
        Some(_) => Default::default(),
        None => (
            Series::unavailable(snakemq::NO_PYTHON),
            Series::unavailable(snakemq::NO_PYTHON),
            Series::unavailable(snakemq::NO_PYTHON),
        ),
    };
    for round in 0..scale.rounds {
        eprintln!("rpc 64 B: round {}/{}", round + 1, scale.rounds);
        if weft.live() {
            weft.take(weft_once(load), load);
        }
        if tarpc_rows && tarpc.live() {
            tarpc.take(tarpc_once(load), load);
        }
        let snake_now = snake_row && round < snake_rounds && snake_best.live();
        if let Some(python) = python.filter(|_| snake_now) {
            let one = snake_once(python, snake_calls, 1);
            let many = snake_once(python, snake_calls, IN_FLIGHT);
            snake_best.push(match (&one, &many) {
                (Ok(a), Ok(b)) => Ok(a.max(*b)),
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            });
            snake_one.push(one);
            snake_many.push(many);
        }
    }

    if wanted(SEQUENTIAL) {
        report.row(Row::compare(
            SEQUENTIAL,
            "us",
            &weft.latency(50.0),
            "tarpc",
            &tarpc.latency(50.0),
            Target::RatioAtMost(1.0),
        ));
    }
    if wanted(PARALLEL) {
        report.row(Row::compare(
            PARALLEL,
            "calls/s",
            &weft.series(&weft.parallel),
            "tarpc",
            &tarpc.series(&tarpc.parallel),
            Target::RatioAtLeast(1.5),
        ));
    }
    if snake_row {
        report.row(Row::compare(
            VS_SNAKEMQ,
            "calls/s",
            &weft.series(&weft.parallel),
            "snakeMQ",
            &snake_best,
            Target::RatioAtLeast(20.0),
        ));
    }

    report.note(format!(
        "rpc 64 B: echo of {SIZE} B (Vec<u8> in, Vec<u8> out) over loopback TCP, client and \
         server on separate threads and current-thread runtimes; weft: two Messaging peers \
         (default config, acks on) with an Rpc each, result cache off, other RpcConfig \
         defaults; tarpc 0.38: serde_transport::tcp with bincode, default client and server \
         config, TCP_NODELAY on both ends, each request spawned as a task; per round and \
         system a fresh pair makes {} untimed and {} timed sequential calls, then {} untimed \
         and {} timed calls with {IN_FLIGHT} in flight ({IN_FLIGHT} tasks); {} rounds, weft \
         and tarpc alternating",
        load.warm, load.sequential, load.parallel_warm, load.parallel, scale.rounds
    ));
    let median = |s: &Series| s.median();
    let (weft_seq, tarpc_seq) = (
        weft.series(&weft.sequential),
        tarpc.series(&tarpc.sequential),
    );
    if tarpc_rows {
        match (
            weft.latency(99.0).median(),
            tarpc.latency(99.0).median(),
            median(&weft_seq),
            median(&tarpc_seq),
        ) {
            (Some(w99), Some(t99), Some(ws), Some(ts)) => report.note(format!(
                "rpc 64 B sequential (not targets): p99 round trip weft {w99:.1} us, tarpc \
                 {t99:.1} us ({:.2}x); calls/s weft {ws:.0}, tarpc {ts:.0} ({:.2}x)",
                w99 / t99,
                ws / ts
            )),
            _ => report.note("rpc 64 B sequential p99 and calls/s: not measured (see the rows)"),
        }
    }
    if snake_row && python.is_some() {
        let ratio = |w: Option<f64>, b: Option<f64>| match (w, b) {
            (Some(w), Some(b)) if b > 0.0 => format!("{w:.0} / {b:.0} = {:.1}x", w / b),
            _ => "not measured".to_string(),
        };
        report.note(format!(
            "rpc vs snakeMQ: snakeMQ 1.6 RpcServer/RpcClient in two Python processes over \
             loopback TCP, {snake_calls} timed calls of echo({SIZE} B) after {SNAKE_WARM} \
             untimed, from 1 calling thread ({}) and from {IN_FLIGHT} threads ({}) in calls/s, \
             {snake_rounds} rounds; the row's baseline is the better of the two per round, \
             weft's value its {IN_FLIGHT}-in-flight series. Like for like: weft sequential / \
             snakeMQ 1 thread: {}; weft {IN_FLIGHT} in flight / snakeMQ {IN_FLIGHT} threads: {}",
            snake_one.describe(),
            snake_many.describe(),
            ratio(median(&weft_seq), snake_one.median()),
            ratio(median(&weft.series(&weft.parallel)), snake_many.median()),
        ));
    }
}

/// Calls/s.
fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

fn identity(name: &str) -> Result<Identity, String> {
    Identity::new(name).map_err(ctx("identity"))
}

/// An [`Rpc`] on a fresh [`Messaging`] peer named `name`, result cache
/// off.
async fn start_rpc(name: &str) -> Result<Rpc, String> {
    let messaging = Messaging::new(identity(name)?, MessagingConfig::default())
        .await
        .map_err(ctx("starting messaging"))?;
    let mut config = RpcConfig::default();
    config.server.result_cache = 0;
    Rpc::new(messaging, config).map_err(ctx("starting RPC"))
}

/// One round of weft: a fresh server and client, the client's calls.
fn weft_once(load: Load) -> Result<Round, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<Address>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let server = move || {
        harness::block_on(LIMIT, async move {
            let rpc = start_rpc(SERVER).await?;
            rpc.register(
                ECHO,
                |data: Vec<u8>| async move { Ok::<_, Infallible>(data) },
            );
            let at = rpc
                .messaging()
                .link()
                .listen(format!("tcp://{LOOPBACK}"))
                .await
                .map_err(ctx("listening"))?
                .address;
            addr_tx
                .send(at)
                .map_err(|_| "client gone before connecting")?;
            // Serve until the client is done (or failed; it says why).
            let _ = done_rx.await;
            Ok(rpc.stats())
        })
    };
    let client = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx.await.map_err(|_| "server gone before listening")?;
            let rpc = start_rpc(CLIENT).await?;
            rpc.messaging()
                .link()
                .connect(&at)
                .map_err(ctx("connecting"))?;
            let to = identity(SERVER)?;
            let caller = rpc.clone();
            let call = move |data: Vec<u8>| {
                let (rpc, to) = (caller.clone(), to.clone());
                async move {
                    rpc.call(&to, ECHO, data)
                        .await
                        .map_err(ctx("calling weft echo"))
                }
            };
            let round = drive(call, load).await?;
            let stats = rpc.stats();
            let _ = done_tx.send(());
            Ok((round, stats))
        })
    };
    let ((round, client), server) =
        harness::pair(("rpc-weft-client", client), ("rpc-weft-server", server))?;
    check(load, &client, &server)?;
    Ok(round)
}

/// Fails when weft's counters show anything but each call running once.
fn check(load: Load, client: &RpcStats, server: &RpcStats) -> Result<(), String> {
    let calls = load.total() as u64;
    if server.calls_executed != calls
        || server.overloaded != 0
        || client.results_received != calls
        || client.calls_resent != 0
        || client.timed_out != 0
    {
        return Err(format!(
            "weft's counters are off: {calls} calls made; the server ran {} and refused {} as \
             overloaded; the client got {} results, resent {} calls, {} timed out",
            server.calls_executed,
            server.overloaded,
            client.results_received,
            client.calls_resent,
            client.timed_out
        ));
    }
    Ok(())
}

/// One round of tarpc: a fresh server and client, the client's calls.
fn tarpc_once(load: Load) -> Result<Round, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
    let server = move || {
        harness::block_on(LIMIT, async move {
            let (at, serve) = tarpc_echo::listen().await?;
            addr_tx
                .send(at)
                .map_err(|_| "client gone before connecting")?;
            // Serves until the client disconnects.
            serve.await
        })
    };
    let client = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx.await.map_err(|_| "server gone before listening")?;
            let client = tarpc_echo::connect(at).await?;
            let call = move |data: Vec<u8>| {
                let client = client.clone();
                async move { tarpc_echo::call(&client, data).await }
            };
            drive(call, load).await
        })
    };
    let (round, ()) = harness::pair(("rpc-tarpc-client", client), ("rpc-tarpc-server", server))?;
    Ok(round)
}

/// Makes one round's calls through `call` (one echo call of the system
/// measured) and times them: warm-up, sequential, warm-up and timed with
/// [`IN_FLIGHT`] in flight.
async fn drive<C, F>(call: C, load: Load) -> Result<Round, String>
where
    C: Fn(Vec<u8>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Vec<u8>, String>> + Send + 'static,
{
    let payload = vec![0xA5u8; SIZE];
    for _ in 0..load.warm {
        echo(&call, &payload).await?;
    }
    let mut micros = Vec::with_capacity(load.sequential);
    let start = Instant::now();
    for _ in 0..load.sequential {
        let t = Instant::now();
        echo(&call, &payload).await?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let sequential = start.elapsed();
    in_flight(&call, &payload, load.parallel_warm).await?;
    let start = Instant::now();
    in_flight(&call, &payload, load.parallel).await?;
    let parallel = start.elapsed();
    Ok(Round {
        micros,
        sequential,
        parallel,
    })
}

/// One call, checked to come back as sent.
async fn echo<C, F>(call: &C, payload: &[u8]) -> Result<(), String>
where
    C: Fn(Vec<u8>) -> F,
    F: Future<Output = Result<Vec<u8>, String>>,
{
    let back = call(payload.to_vec()).await?;
    if back != payload {
        return Err(format!(
            "the echo of {} bytes came back as {} other bytes",
            payload.len(),
            back.len()
        ));
    }
    Ok(())
}

/// `count` calls from [`IN_FLIGHT`] tasks, each making its share one after
/// the other.
async fn in_flight<C, F>(call: &C, payload: &[u8], count: usize) -> Result<(), String>
where
    C: Fn(Vec<u8>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Vec<u8>, String>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for k in 0..IN_FLIGHT {
        let share = count / IN_FLIGHT + usize::from(k < count % IN_FLIGHT);
        let (call, payload) = (call.clone(), payload.to_vec());
        tasks.spawn(async move {
            for _ in 0..share {
                echo(&call, &payload).await?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(ctx("a calling task"))??;
    }
    Ok(())
}

/// One snakeMQ measurement: `calls` timed calls from `threads` calling
/// threads; calls/s as the client process timed them.
fn snake_once(python: &Path, calls: usize, threads: usize) -> Result<f64, String> {
    let runtime = LIMIT.as_secs().to_string();
    let server = Peer::start(
        python,
        SCRIPT,
        "RPC server",
        &[
            "--role".into(),
            "server".into(),
            "--runtime".into(),
            runtime.clone(),
        ],
    )?;
    let ready = server.expect("ready", Instant::now() + snakemq::START)?;
    let port = ready["port"]
        .as_u64()
        .ok_or_else(|| format!("no port in {ready}"))?;
    let client = Peer::start(
        python,
        SCRIPT,
        "RPC client",
        &[
            "--role".into(),
            "client".into(),
            "--port".into(),
            port.to_string(),
            "--calls".into(),
            calls.to_string(),
            "--warm".into(),
            SNAKE_WARM.to_string(),
            "--threads".into(),
            threads.to_string(),
            "--size".into(),
            SIZE.to_string(),
            "--runtime".into(),
            runtime,
        ],
    )?;
    let end = client.expect("end", Instant::now() + snakemq::START + LIMIT)?;
    let got = snakemq::number(&end, "calls")?;
    let bad = snakemq::number(&end, "bad")?;
    let secs = snakemq::number(&end, "secs")?;
    if got != calls as f64 || bad != 0.0 {
        return Err(format!(
            "the snakeMQ RPC client made {got} calls ({bad} wrong replies); asked for {calls}"
        ));
    }
    if secs <= 0.0 {
        return Err(format!("the snakeMQ RPC calls took {secs} s"));
    }
    let by = Instant::now() + Duration::from_secs(10);
    client.finish(by)?;
    server.finish(by)?;
    Ok(calls as f64 / secs)
}
