//! `weft-bench`: weft measured side by side with its baselines, in one run.
//!
//! `cargo xtask bench [--quick]` builds and runs this binary. Every case
//! measures weft and its baseline in the same run, alternating rounds so
//! that both see the same machine noise, and the table reports their ratio:
//! absolute numbers are noisy on a shared machine, ratios much less so.
//!
//! | case | weft | baseline | target |
//! | --- | --- | --- | --- |
//! | throughput 64 B, 1 KiB | packeter over loopback TCP | libzmq PUSH/PULL | >= 1.5x, >= 1.2x msg/s |
//! | throughput 64 KiB | packeter | raw TCP, 256 KiB writes | >= 0.85x MB/s |
//! | ping-pong 64 B | packeter | raw Tokio TCP | p50 <= 1.1x |
//! | memory | 1 000 idle connections, both ends in one process | | <= 64 MiB |
//! | memory quic | the same over quic:// (the connectors share one UDP socket) | | <= 64 MiB |
//! | messaging 64 B no acks | two `Messaging` peers, acks off | libzmq PUSH/PULL | >= 1.0x msg/s |
//! | messaging 64 B with acks | two `Messaging` peers, acks on | libzmq PUSH/PULL | >= 0.7x msg/s |
//! | messaging 64 B no acks vs Zenoh | the no acks row | Zenoh 1.x, one publisher and one subscriber session, peer mode over TCP | >= 1.5x msg/s |
//! | messaging vs snakeMQ 64 B | the row above | snakeMQ 1.6, two Python processes | >= 50x msg/s |
//! | messaging persistent SQLite | persistent messages, `SqliteStorage` | | >= 50 000 msg/s |
//! | messaging 100k queued 1 KiB | RSS growth for a disconnected identity | | <= 2x payload |
//! | messaging 64 B tls bind-identity | two `Messaging` peers, mutual TLS, `bind_identity` | the same over tcp:// | >= 0.8x msg/s |
//! | messaging 64 B quic | the tls bind-identity row's peers over quic:// | the same over tls:// | >= 0.8x msg/s |
//! | ping-pong 64 B quic | the ping-pong packeters over quic:// | the same over tls:// | p50 <= 1.2x |
//! | throughput 64 KiB quic | the 64 KiB packeters over quic:// | the same over tls:// | >= 0.8x MB/s |
//! | packeter throughput 64 B quic | packeter over quic:// | a quinn stream, one `write_all` per framed packet | >= 1.5x msg/s |
//! | rpc 64 B sequential p50 round trip | weft-rpc echo calls one at a time over loopback TCP | tarpc 0.38 over TCP | p50 <= 1.0x |
//! | rpc 64 B 64 in flight | the same echo, 64 calls in flight | tarpc 0.38 over TCP | >= 1.5x calls/s |
//! | rpc vs snakeMQ 64 B | the row above | snakeMQ 1.6 RPC, two Python processes | >= 20x calls/s |
//! | participants: full mesh of 10 | 10 loopback participants, start to full mesh | | <= 1 000 ms (the beacon interval) |
//! | participants: 200 to full delivery | 200 loopback participants (bounded streams), start to full membership and one publication at 20 subscribers | | <= 10 000 ms |
//! | participants pub/sub fan-out 10 | 1 publisher, 10 subscriber participants, 64 B, deliveries/s | libzmq PUB, 10 SUB | >= 1.0x msg/s |
//! | participants pub/sub fan-out 10 through one participant | the fan-out row's load, every publication through one intermediate participant | the direct fan-out row | >= 0.8x msg/s |
//! | participants pub/sub fan-out 10 vs Zenoh | the row above | Zenoh 1.x, 1 publisher and 10 subscriber sessions, peer mode over TCP | >= 1.5x msg/s |
//! | participants simulated 1,000: convergence | 1,000 participant cores started at once in weft-participant's simulator, virtual time to converged membership and interest | | <= 30 s |
//! | participants simulated 1,000: streams per participant | the same run, the most neighbours (streams kept) a participant had at once | | <= 16 |
//! | participants simulated 1,000: idle bytes/s per participant | the same run, idle: streams' control messages and discovery's beacons | | <= 2 000 B/s |
//! | participants simulated 1,000 churn: missed by stable subscribers | 1,000 simulated participant cores as above (another seed) converged, then a virtual minute in which a tenth restart while two publish every 100 ms: publications missed by the subscribers that never restarted (full runs only) | | <= 100 ppm (99.99 % delivered) |
//! | participants simulated 1,000 churn: idle bytes/s per participant after | the same run, a virtual minute after the churn | | <= 2 000 B/s |
//!
//! ```text
//! weft-bench [--quick] [--json PATH] [--only TEXT] [--snakemq-python PATH]
//! ```
//!
//! - `--quick`: fewer rounds and messages (well under 3 minutes on 2 cores).
//! - `--json PATH`: also write the rows as JSON (see `report.rs` for the
//!   format), and beside it (PATH with the extension `.html`) a
//!   self-contained HTML report that draws them (see `report/html.rs`).
//! - `--only TEXT`: run only the cases whose name contains TEXT
//!   (`throughput`, `ping-pong`, `memory`, `messaging`, `messaging 64 B`,
//!   `snakeMQ`, `persistent`, `queued`, `tls`, `quic`, `rpc`, `participants`, `mesh`,
//!   `fan-out`, `simulated`).
//! - `--snakemq-python PATH`: a Python with snakeMQ 1.6 for the snakeMQ
//!   baseline (default: `$WEFT_SNAKEMQ_PYTHON`).
//!
//! Built without the `zmq` feature, the libzmq rows have no baseline value
//! (`null` in the JSON, with a note) instead of failing; so have the Zenoh
//! rows without the `zenoh` feature, and the snakeMQ row without a Python
//! with snakeMQ.
//!
//! The exit status is non-zero when a measurement failed (never because a
//! target was missed: benches measure, tests assert).

mod harness;
mod memory;
mod messaging;
mod messaging_tls;
mod participants;
mod participants_routed;
mod pingpong;
mod quic;
mod quinn_stream;
mod report;
mod rpc;
mod secure;
mod series;
mod simulated;
mod snakemq;
mod tarpc_echo;
mod throughput;
#[cfg(feature = "zenoh")]
mod zenoh_pubsub;
#[cfg(feature = "zmq")]
mod zmq_pubsub;
#[cfg(feature = "zmq")]
mod zmq_pushpull;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use report::Report;

/// Why the libzmq baselines have no value in a build without them.
#[cfg(not(feature = "zmq"))]
pub(crate) const NO_ZMQ: &str = "not measured: weft-bench was built without the `zmq` feature \
     (cargo xtask bench does so when libzmq cannot be installed or built)";

/// Why the Zenoh baselines have no value in a build without them.
#[cfg(not(feature = "zenoh"))]
pub(crate) const NO_ZENOH: &str = "not measured: weft-bench was built without the `zenoh` feature \
     (cargo xtask bench turns it on)";

/// How long the run is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale {
    /// The short run.
    pub(crate) quick: bool,
    /// Rounds per comparison (each round measures weft and the baseline).
    pub(crate) rounds: usize,
}

struct Args {
    scale: Scale,
    json: Option<PathBuf>,
    only: Option<String>,
    memory_child: Option<String>,
    snakemq_python: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scale: Scale {
            quick: false,
            rounds: 9,
        },
        json: None,
        only: None,
        memory_child: None,
        snakemq_python: std::env::var_os("WEFT_SNAKEMQ_PYTHON").map(PathBuf::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => {
                args.scale = Scale {
                    quick: true,
                    rounds: 5,
                }
            }
            "--json" => args.json = Some(PathBuf::from(value("--json")?)),
            "--only" => args.only = Some(value("--only")?),
            "--memory-child" => args.memory_child = Some(value("--memory-child")?),
            "--snakemq-python" => {
                args.snakemq_python = Some(PathBuf::from(value("--snakemq-python")?));
            }
            "-h" | "--help" => {
                return Err("usage: weft-bench [--quick] [--json PATH] [--only TEXT] \
                     [--snakemq-python PATH]"
                    .into());
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(args)
}

/// Raises the soft limit on open files to at least `want` (up to the hard
/// limit).
pub(crate) fn raise_fd_limit(want: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    let want = want as libc::rlim_t;
    if limit.rlim_cur >= want {
        return Ok(());
    }
    if limit.rlim_max < want {
        return Err(format!(
            "need {want} open files, the hard limit is {}; raise it with `ulimit -Hn`",
            limit.rlim_max
        ));
    }
    limit.rlim_cur = want;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("weft-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(mode) = &args.memory_child {
        let measured = if mode == messaging::MEMORY_CHILD {
            messaging::memory_child()
        } else {
            memory::child_main(mode)
        };
        return match measured {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = raise_fd_limit(4096) {
        eprintln!("weft-bench: {e}");
        return ExitCode::FAILURE;
    }
    let wanted = |case: &str| args.only.as_deref().is_none_or(|o| case.contains(o));
    let start = Instant::now();
    let mut report = Report::default();
    if wanted("throughput") {
        throughput::run(args.scale, &mut report);
    }
    if wanted("ping-pong") {
        pingpong::run(args.scale, &mut report);
    }
    if wanted("memory") {
        memory::run(&mut report);
    }
    if wanted(memory::QUIC_CASE) {
        memory::run_quic(&mut report);
    }
    messaging::run(
        args.scale,
        args.snakemq_python.as_deref(),
        &wanted,
        &mut report,
    );
    if wanted(messaging_tls::CASE) {
        messaging_tls::run(args.scale, &mut report);
    }
    quic::run(args.scale, &wanted, &mut report);
    if wanted(quinn_stream::CASE) {
        quinn_stream::run(args.scale, &mut report);
    }
    participants::run(args.scale, &wanted, &mut report);
    if wanted(simulated::CASE) {
        simulated::run(args.scale, &mut report);
    }
    rpc::run(
        args.scale,
        args.snakemq_python.as_deref(),
        &wanted,
        &mut report,
    );
    report.note(format!(
        "{} run: {} rounds per comparison, {:.0} s in all, on {} CPUs",
        if args.scale.quick { "quick" } else { "full" },
        args.scale.rounds,
        start.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    report.note(if cfg!(debug_assertions) {
        "build: a debug build (numbers are not comparable; `cargo xtask bench` builds release)"
    } else {
        "build: the workspace's release profile as `cargo xtask bench` uses it (fat LTO, one \
         codegen unit) for weft and the Rust baselines alike; libzmq as Debian builds it"
    });
    #[cfg(feature = "zmq")]
    {
        let (major, minor, patch) = zmq::version();
        report.note(format!(
            "libzmq {major}.{minor}.{patch} (as linked by the zmq crate)"
        ));
    }
    #[cfg(feature = "zenoh")]
    report.note(format!(
        "Zenoh {} (the zenoh crate with its TCP transport only)",
        zenoh::GIT_VERSION
    ));
    println!("\n{}", report.render());
    if let Some(path) = &args.json {
        let html = path.with_extension("html");
        let written = report
            .write_json(path)
            .and_then(|()| report.write_html(&html));
        match written {
            Ok(()) => println!("wrote {} and {}", path.display(), html.display()),
            Err(e) => {
                eprintln!("weft-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if report.failed() {
        eprintln!("weft-bench: some measurements failed (see the table)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
