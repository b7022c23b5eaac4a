//! weft's task runner, in the rust-analyzer style: plain Rust, no shell
//! scripts to keep in sync.
//!
//! - `cargo xtask ci`: everything CI checks, in order (see [`mod@ci`]).
//! - `cargo xtask tidy`: the workspace's rules as code, in seconds (see
//!   [`mod@tidy`]).
//! - `cargo xtask bench [--quick]`: the side-by-side comparisons (see [`mod@bench`]).
//! - `cargo xtask natlab [--runs N] [--quick]`: the NAT matrix measured,
//!   as root (see [`mod@natlab`]).
//! - `cargo xtask interop`: tests against real peers weft did not write.
//! - `cargo xtask fuzz [--seconds N] [TARGET]...`: the fuzz targets under
//!   libFuzzer (nightly; see [`mod@fuzz`]).

mod bench;
mod ci;
mod coturn;
mod fuzz;
mod interop;
mod json;
mod metadata;
mod natlab;
mod tidy;
mod util;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, rest)) => (t.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "ci" => ci::run(rest),
        "tidy" => tidy::run(rest),
        "bench" => bench::run(rest),
        "natlab" => natlab::run(rest),
        "interop" => interop::run(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <ci | tidy | bench [--quick] | natlab [--runs N] [--quick] | interop | fuzz [--seconds N] [TARGET]...>"
            );
            Ok(())
        }
        other => Err(format!("unknown task `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}
