//! `cargo xtask fuzz [--seconds N] [TARGET]...`: every fuzz target under
//! libFuzzer for a while, without cargo-fuzz.
//!
//! The targets live in `fuzz/` (outside the workspace). They need a
//! nightly toolchain (`cargo +nightly`) for the sanitizer-coverage flags,
//! the same ones cargo-fuzz passes; the flags apply only to the fuzz
//! target's own build (`--target` keeps them off build scripts). Each
//! target runs `N` seconds (default 60) with its corpus kept in
//! `fuzz/corpus/TARGET`, so that later runs start where earlier ones got
//! to. A crash stops the run, leaves its input in `fuzz/artifacts/` (as
//! libFuzzer names it) and fails the task.
//!
//! `cargo xtask ci` only checks that the targets compile (on stable): CI
//! has no nightly toolchain, and a minute per target is better spent by
//! hand before a release.

use std::process::Command;

use crate::util::{root, run as step};

/// The targets, as `fuzz/Cargo.toml` names them.
const TARGETS: &[&str] = &[
    "packet_decoder",
    "address_parse",
    "stun_message",
    "message_frame",
    "rpc_frame",
    "discovery_beacon",
    "rendezvous_frame",
];

/// libFuzzer's coverage instrumentation, as cargo-fuzz sets it.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing";

/// The host triple the targets are built for.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 60;
    let mut chosen: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .map_err(|_| format!("--seconds takes a whole number, got `{v}`"))?;
            }
            t if TARGETS.contains(&t) => chosen.push(t),
            other => {
                return Err(format!(
                    "`fuzz` takes --seconds N and target names ({}), got `{other}`",
                    TARGETS.join(", ")
                ));
            }
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.to_vec();
    }
    let fuzz = root().join("fuzz");
    // rustup's cargo, not the one running us: `+nightly` is a rustup
    // argument.
    let mut build = Command::new("cargo");
    build.current_dir(&fuzz).env("RUSTFLAGS", RUSTFLAGS).args([
        "+nightly",
        "build",
        "--release",
        "--bins",
        "--target",
        TRIPLE,
    ]);
    step("fuzz targets built (nightly, libFuzzer coverage)", build)?;
    for target in chosen {
        let corpus = fuzz.join("corpus").join(target);
        for dir in [&corpus, &fuzz.join("artifacts")] {
            std::fs::create_dir_all(dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
        }
        let mut cmd = Command::new(
            fuzz.join("target")
                .join(TRIPLE)
                .join("release")
                .join(target),
        );
        cmd.current_dir(&fuzz)
            .arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-artifact_prefix=artifacts/")
            .arg("-rss_limit_mb=2048");
        step(&format!("fuzz {target} for {seconds} s"), cmd)?;
    }
    Ok(())
}
