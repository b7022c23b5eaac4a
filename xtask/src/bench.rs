//! `cargo xtask bench [--quick]`: weft side by side with its baselines.
//!
//! Builds the `weft-bench` binary of `weft-benches` in release mode (with
//! the libzmq baselines when libzmq can be had) and runs it once: it
//! measures every comparison in the same run, prints one table of ratios
//! and writes `target/weft-bench/latest.json`, a list of
//! `{case, unit, weft, baseline, baseline_value, ratio, target}` objects,
//! and beside it `target/weft-bench/latest.html`, a self-contained page
//! that draws each row's ratio against its target, its spread over rounds
//! and the latency rows' percentiles. Both paths are printed at the end.
//!
//! Without libzmq the binary is built without the `zmq` feature and the
//! libzmq rows carry `null` baseline values with a note, rather than the
//! whole run failing. The same happens when the build with libzmq fails.
//!
//! The snakeMQ baseline needs Python with snakeMQ 1.6: the venv that
//! `cargo xtask interop` makes (`target/interop/venv`, made here when
//! missing), passed to the binary as `--snakemq-python`. When it cannot be
//! made, the snakeMQ row carries a `null` baseline value with a note.

use crate::util::{self, cargo, run as step};

/// Makes libzmq available for the ZeroMQ baselines; false when it cannot be.
pub(crate) fn ensure_libzmq() -> bool {
    util::has_pkg("libzmq")
        || (util::ensure_debs(&["libzmq3-dev", "pkg-config"]) && util::has_pkg("libzmq"))
}

/// Where the results go, relative to the workspace root.
const JSON: &str = "target/weft-bench/latest.json";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            other => return Err(format!("`bench` takes only --quick, got `{other}`")),
        }
    }

    let mut zmq = ensure_libzmq();
    if !zmq {
        println!("!!! libzmq is unavailable: the libzmq baselines will have no values");
    }
    if zmq {
        if let Err(e) = step("build weft-bench with libzmq", build(true)) {
            println!("!!! {e}; building without the libzmq baselines");
            zmq = false;
        }
    }
    if !zmq {
        step("build weft-bench", build(false))?;
    }

    let python = match crate::interop::snakemq_venv() {
        Ok(python) => Some(python),
        Err(e) => {
            println!("!!! {e}: the snakeMQ baseline will have no value");
            None
        }
    };

    let json = util::root().join(JSON);
    let mut bench = cargo();
    bench.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "weft-benches",
        "--bin",
        "weft-bench",
    ]);
    bench.args(["--features", features(zmq)]);
    bench.arg("--");
    if quick {
        bench.arg("--quick");
    }
    bench.arg("--json").arg(&json);
    if let Some(python) = &python {
        bench.arg("--snakemq-python").arg(python);
    }
    step(if quick { "bench (quick)" } else { "bench" }, bench)?;
    println!("\nresults: {}", json.display());
    println!("report:  {}", json.with_extension("html").display());
    Ok(())
}

fn build(zmq: bool) -> std::process::Command {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "weft-benches",
        "--bin",
        "weft-bench",
    ]);
    c.args(["--features", features(zmq)]);
    c
}

/// The baselines built in: Zenoh always (a Rust crate), libzmq when it
/// can be had.
fn features(zmq: bool) -> &'static str {
    if zmq { "zenoh,zmq" } else { "zenoh" }
}
