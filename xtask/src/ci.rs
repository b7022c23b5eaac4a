//! `cargo xtask ci`: what CI checks, in order, failing on the first error.
//!
//! 1. formatting (`cargo fmt --check`)
//! 2. the workspace's rules (`cargo xtask tidy`, see [`mod@crate::tidy`])
//! 3. clippy on every target with `-D warnings` (the benches with their
//!    libzmq and Zenoh baselines)
//! 4. each crate under `crates/` checked alone, as its users build it: with
//!    `--no-default-features`, and with its tests (`--tests`)
//! 5. the workspace tests (unit and integration), then the simulator's
//!    group of 1,000 participants started at once (ignored in a debug
//!    build, too slow there) in the optimised `profiling` profile
//! 6. the doc tests
//! 7. the docs, without warnings
//! 8. the benches compiled (with the libzmq baselines where libzmq can be had)
//! 9. the fuzz targets compiled (checked on stable; `cargo xtask fuzz` runs
//!    them with nightly)
//! 10. interop against real peers (`cargo xtask interop`)
//!
//! What a machine cannot run (no root for namespaces, no libzmq) is said
//! loudly, never silently skipped.

use std::time::Instant;

use crate::metadata::Workspace;
use crate::util::{self, cargo, run as step};

pub(crate) fn run_ci() -> Result<(), String> {
    let start = Instant::now();
    let mut skipped: Vec<String> = Vec::new();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("format", fmt)?;

    println!("\n==> tidy");
    crate::tidy::run_tidy()?;

    let zmq = crate::bench::ensure_libzmq();
    if !zmq {
        skipped.push("libzmq baselines in benches (libzmq3-dev could not be installed)".into());
    }
    let bench_features: &[&str] = if zmq {
        &["--features", "weft-benches/zmq"]
    } else {
        &[]
    };

    // Clippy also reads the Zenoh baselines, which only `cargo xtask
    // bench` builds: compiling Zenoh's optimised crates here would cost CI
    // minutes for a baseline CI never runs.
    let mut clippy = cargo();
    clippy
        .args(["clippy", "--workspace", "--all-targets", "--locked"])
        .args(bench_features)
        .args(["--features", "weft-benches/zenoh"])
        .args(["--", "-D", "warnings"]);
    step("clippy", clippy)?;

    // The crates under `crates/`, each of which must build alone.
    let workspace = Workspace::load()?;
    for krate in workspace.crates().map(|p| p.name.as_str()) {
        let mut check = cargo();
        check.args(["check", "--locked", "-p", krate, "--no-default-features"]);
        step(&format!("{krate} alone, no default features"), check)?;
        let mut tests = cargo();
        tests.args(["check", "--locked", "-p", krate, "--tests"]);
        step(&format!("{krate} alone, with its tests"), tests)?;
    }

    // Tools the multi-host tests (network namespaces, NAT) use.
    util::ensure_debs(&["iproute2", "nftables", "procps", "coturn"]);
    let mut test = cargo();
    test.args([
        "test",
        "--workspace",
        "--locked",
        "--lib",
        "--bins",
        "--tests",
    ]);
    step("tests", test)?;

    // The participant simulator's group of 1,000 started at once (issue
    // 20) takes minutes unoptimised: it runs optimised, without LTO. Its
    // churn test at 1,000 is left out (far too slow even so).
    let mut thousand = cargo();
    thousand.args([
        "test",
        "--locked",
        "--profile",
        "profiling",
        "-p",
        "weft-participant",
        "--lib",
        "--",
        "--ignored",
        "a_thousand_started",
    ]);
    step("the simulator's 1,000 participants", thousand)?;

    let mut doctest = cargo();
    doctest.args(["test", "--workspace", "--locked", "--doc"]);
    step("doc tests", doctest)?;

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--locked", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    step("docs", doc)?;

    let mut bench = cargo();
    bench
        .args(["bench", "--workspace", "--locked", "--no-run"])
        .args(bench_features);
    step("benches compile", bench)?;

    // Outside the workspace: checked so that they keep up with the crates.
    let mut fuzz = cargo();
    fuzz.args([
        "check",
        "--locked",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--bins",
    ]);
    step("fuzz targets compile", fuzz)?;

    println!("\n==> interop");
    crate::interop::run(&[])?;

    if !util::is_root() {
        skipped.push("multi-host tests in network namespaces (need root)".into());
    }
    println!("\n==> ci passed in {:.0}s", start.elapsed().as_secs_f64());
    for s in &skipped {
        println!("!!! SKIPPED: {s}");
    }
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("`ci` takes no arguments, got `{a}`"));
    }
    run_ci()
}
