//! `cargo xtask natlab [--runs N] [--quick]`: the NAT matrix, measured.
//!
//! Builds `weft-traversal`'s `nat_lab` test (network namespaces with NATs
//! between two peers and a rendezvous) in the `profiling` profile and runs
//! each cell of the matrix N times (10 by default, 2 with `--quick`), round
//! robin so that the machine's other load falls on every cell alike. Each
//! run is a process of its own, so that a run that fails ends only itself
//! and is counted. With `WEFT_NATLAB_RECORD` set, each run appends its
//! times to `target/natlab/runs.jsonl` before the test asserts anything;
//! each run's output goes to `target/natlab/logs/CELL-N.log`.
//!
//! It then prints one markdown table, also written to
//! `target/natlab/latest.md`: per cell, the runs that passed the test's
//! assertions, the paths taken, the time to the first message and to the
//! direct path (p50 / p95 from both peers having registered, each run's
//! the later of the two peers'), the direct-path success rate, and whether
//! the targets were met:
//!
//! - first message: p95 at most 1 s, in every cell;
//! - direct path, in every cell that goes direct: p50 at most 1.5 s, p95
//!   at most 5 s, and every run direct;
//! - every run passes the test.
//!
//! Then the quic:// lanes lab (`weft-cli`'s `quic_lanes_netns`: two `weft
//! peer` processes over a path with 5% loss each way and 20 ms added each
//! way), N times: the control lane's p99 latency beside a bulk transfer
//! on the data lane against its p99 alone, in a second table. Target:
//! the ratio's median over the runs at most 1.25x (issue 18).
//!
//! The exit status is non-zero when a target is missed. Without root, `ip
//! netns` or nft (installed with apt-get when missing and we may), it says
//! so and fails rather than measure nothing. `cargo xtask ci` does not run
//! it: CI runs each cell once, as a test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::json::{self, Value};
use crate::util::{self, cargo};

/// One cell of the matrix: the `nat_lab` test that runs it and the path it
/// should reach.
struct Cell {
    /// What the test's record calls it.
    tag: &'static str,
    name: &'static str,
    test: &'static str,
    /// Whether the peers should go direct (otherwise they stay on the
    /// relay).
    direct: bool,
}

const CELLS: &[Cell] = &[
    Cell {
        tag: "pub",
        name: "public host + masquerade",
        test: "a_public_host_and_a_peer_behind_masquerade_go_direct",
        direct: true,
    },
    Cell {
        tag: "cone",
        name: "both port-restricted cone",
        test: "two_peers_behind_port_restricted_cone_nats_go_direct_by_simultaneous_open",
        direct: true,
    },
    Cell {
        tag: "same",
        name: "same NAT (LAN)",
        test: "two_peers_behind_one_nat_go_direct_on_the_lan",
        direct: true,
    },
    Cell {
        tag: "bday",
        name: "cone + symmetric",
        test: "a_cone_nat_and_a_symmetric_nat_go_direct_over_quic_by_birthday_probing",
        direct: true,
    },
    Cell {
        tag: "bday1",
        name: "cone + symmetric, rendezvous on one IP",
        test: "with_a_rendezvous_on_one_ip_a_cone_nat_and_a_symmetric_nat_still_go_direct",
        direct: true,
    },
    Cell {
        tag: "sym",
        name: "both symmetric",
        test: "two_peers_behind_symmetric_nats_talk_through_the_relay",
        direct: false,
    },
    Cell {
        tag: "noudp",
        name: "UDP blocked on one side",
        test: "with_udp_blocked_on_one_side_the_path_is_direct_over_tcp",
        direct: true,
    },
];

/// The lanes lab: `weft-cli`'s test binary and its test.
const LANES_TEST: &str = "quic_lanes_netns";
const LANES_TEST_FN: &str =
    "bulk_on_the_data_lane_keeps_the_control_lanes_p99_over_a_lossy_delayed_path";
/// The lanes target: the control lane's p99 beside the bulk at most this
/// many times its p99 alone (the median over the runs).
const LANES_RATIO: f64 = 1.25;

/// The targets, in milliseconds.
const FIRST_P95_MS: f64 = 1_000.0;
const DIRECT_P50_MS: f64 = 1_500.0;
const DIRECT_P95_MS: f64 = 5_000.0;

/// How long one run may take before it is killed (the test bounds itself
/// well within this).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Where the records, logs and table go, relative to the workspace root.
const DIR: &str = "target/natlab";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let runs = parse_args(args)?;
    check_host()?;
    let exe = build("weft-traversal", "nat_lab")?;
    let lanes_exe = build("weft-cli", LANES_TEST)?;

    let dir = util::root().join(DIR);
    let logs = dir.join("logs");
    // The logs of an earlier run with more runs would linger among these.
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let record = dir.join("runs.jsonl");
    fs::write(&record, "").map_err(|e| format!("{}: {e}", record.display()))?;

    println!("\n==> the NAT matrix, {runs} run(s) of each cell");
    let start = Instant::now();
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); CELLS.len()];
    for n in 1..=runs {
        for (cell, done) in CELLS.iter().zip(&mut results) {
            let log = logs.join(format!("{}-{n}.log", cell.tag));
            let (passed, recorded) = run_once(&exe, cell.test, cell.tag, &record, &log)?;
            let run = Run::of(passed, recorded.as_ref());
            println!("    {} {n}/{runs}: {}", cell.name, run.describe(&log));
            done.push(run);
        }
    }
    println!(
        "    (the NAT matrix: {:.0}s)",
        start.elapsed().as_secs_f64()
    );

    let rows: Vec<Row> = CELLS
        .iter()
        .zip(&results)
        .map(|(cell, runs)| Row::of(cell, runs))
        .collect();
    println!("\n==> the quic:// lanes lab, {runs} run(s)");
    let mut lanes = Vec::new();
    for n in 1..=runs {
        let log = logs.join(format!("lanes-{n}.log"));
        let (passed, recorded) = run_once(&lanes_exe, LANES_TEST_FN, "lanes", &record, &log)?;
        let run = LanesRun::of(passed, recorded.as_ref());
        println!("    lanes {n}/{runs}: {}", run.describe(&log));
        lanes.push(run);
    }
    let lanes = LanesRow::of(&lanes);
    let table = format!("{}\n{}", render(&rows), lanes.render());
    println!("\n{table}");
    let latest = dir.join("latest.md");
    fs::write(&latest, &table).map_err(|e| format!("{}: {e}", latest.display()))?;
    println!("table:   {}", latest.display());
    println!("records: {}", record.display());
    println!("logs:    {}", logs.display());

    let mut missed: Vec<&str> = rows.iter().filter(|r| !r.met()).map(|r| r.name).collect();
    if !lanes.met() {
        missed.push("quic:// lanes");
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("targets missed in: {}", missed.join(", ")))
    }
}

/// The number of runs of each cell: `--runs N` (at least 1), else 2 with
/// `--quick`, else 10.
fn parse_args(args: &[String]) -> Result<usize, String> {
    let (mut runs, mut quick) = (None, false);
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--runs" => {
                let n = args.next().ok_or("`--runs` needs a number")?;
                match n.parse::<usize>() {
                    Ok(n) if n >= 1 => runs = Some(n),
                    _ => return Err(format!("`--runs` needs a number of at least 1, got `{n}`")),
                }
            }
            other => {
                return Err(format!(
                    "`natlab` takes --runs N and --quick, got `{other}`"
                ));
            }
        }
    }
    Ok(runs.unwrap_or(if quick { 2 } else { 10 }))
}

/// Root, `ip netns` and nft, or why not.
fn check_host() -> Result<(), String> {
    if !util::is_root() {
        return Err("needs root: the lab makes network namespaces and NATs".into());
    }
    util::ensure_debs(&["iproute2", "nftables", "procps"]);
    for (what, program, args) in [
        ("`ip netns`", "ip", &["netns", "list"][..]),
        ("nft", "nft", &["--version"][..]),
    ] {
        let works = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            return Err(format!("needs {what}, which does not work here"));
        }
    }
    Ok(())
}

/// Builds `package`'s integration test `test`; its binary's path.
fn build(package: &str, test: &str) -> Result<PathBuf, String> {
    let mut c = cargo();
    c.args([
        "test",
        "--locked",
        "--profile",
        "profiling",
        "-p",
        package,
        "--test",
        test,
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    println!("\n==> build the {test} test\n    $ {c:?}");
    let start = Instant::now();
    let out = c
        .output()
        .map_err(|e| format!("cargo could not start: {e}"))?;
    println!("    (build: {:.1}s)", start.elapsed().as_secs_f64());
    if !out.status.success() {
        return Err(format!("building the {test} test failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| json::parse(line).ok())
        .find_map(|msg| {
            let artifact = msg.get("reason")?.as_str()? == "compiler-artifact"
                && msg.get("target")?.get("name")?.as_str()? == test;
            let exe = msg.get("executable")?.as_str()?;
            artifact.then(|| PathBuf::from(exe))
        })
        .ok_or_else(|| format!("cargo named no {test} test binary"))
}

/// Runs the test `test` of `exe` once, its output to `log`: whether it
/// passed, and the last line it recorded for `tag`.
fn run_once(
    exe: &Path,
    test: &str,
    tag: &str,
    record: &Path,
    log: &Path,
) -> Result<(bool, Option<Value>), String> {
    let offset = fs::metadata(record).map_or(0, |m| m.len() as usize);
    let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new(exe)
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env("WEFT_NATLAB_RECORD", record)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let deadline = Instant::now() + RUN_LIMIT;
    let passed = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                println!("    !! {test} still running after {RUN_LIMIT:?}: killed");
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            Err(e) => return Err(format!("waiting for {test}: {e}")),
        }
    };
    // A run that was killed left its namespaces behind.
    remove_namespaces_of(child.id());

    let text = fs::read_to_string(record).map_err(|e| format!("{}: {e}", record.display()))?;
    let mut recorded = None;
    for line in text.get(offset..).unwrap_or("").lines() {
        let value = json::parse(line).map_err(|e| format!("{}: {e}", record.display()))?;
        if value.get("cell").and_then(Value::as_str) == Some(tag) {
            recorded = Some(value);
        }
    }
    if passed && recorded.is_none() {
        return Err(format!(
            "{test} passed without measuring (skipped? see {})",
            log.display()
        ));
    }
    Ok((passed, recorded))
}

/// Deletes the namespaces of the lab run by process `pid`
/// (`weft-trav-PID-...`, `weft-cli-PID-...`), which only a killed run
/// leaves behind.
fn remove_namespaces_of(pid: u32) {
    let prefixes = [format!("weft-trav-{pid}-"), format!("weft-cli-{pid}-")];
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            println!("    removing {name}, left behind");
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

/// What one run measured: nothing when it failed before recording.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    /// Whether the test passed (its assertions and the run's bounds).
    passed: bool,
    first_ms: Option<f64>,
    /// `None` when the peers stayed on the relay.
    direct_ms: Option<f64>,
    /// `tcp`, `quic`, `mixed` or `relay`; `None` without a record.
    via: Option<String>,
}

impl Run {
    fn of(passed: bool, record: Option<&Value>) -> Run {
        let number = |key: &str| record?.get(key)?.as_f64();
        Run {
            passed,
            first_ms: number("first_message_ms"),
            direct_ms: number("direct_ms"),
            via: record
                .and_then(|r| r.get("via"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    fn describe(&self, log: &Path) -> String {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
        let verdict = if self.passed {
            "passed".to_owned()
        } else {
            format!("FAILED (see {})", log.display())
        };
        format!(
            "first message {}, direct {}, via {}: {verdict}",
            ms(self.first_ms),
            ms(self.direct_ms),
            self.via.as_deref().unwrap_or("?")
        )
    }
}

/// A cell's runs summed up, and the targets it missed.
#[derive(Debug)]
struct Row {
    name: &'static str,
    direct: bool,
    runs: usize,
    passed: usize,
    /// p50 and p95.
    first: Option<(f64, f64)>,
    direct_times: Option<(f64, f64)>,
    /// Runs that went direct.
    went_direct: usize,
    /// How many runs took each path, e.g. `tcp 9, quic 1`.
    via: String,
    missed: Vec<String>,
}

impl Row {
    fn of(cell: &Cell, runs: &[Run]) -> Row {
        let spread = |values: Vec<f64>| {
            (!values.is_empty()).then(|| (percentile(&values, 50.0), percentile(&values, 95.0)))
        };
        let first = spread(runs.iter().filter_map(|r| r.first_ms).collect());
        let directs: Vec<f64> = runs.iter().filter_map(|r| r.direct_ms).collect();
        let went_direct = directs.len();
        let direct_times = spread(directs);
        let passed = runs.iter().filter(|r| r.passed).count();

        let mut paths: Vec<(String, usize)> = Vec::new();
        for r in runs {
            let via = r.via.clone().unwrap_or_else(|| "unmeasured".into());
            match paths.iter_mut().find(|(v, _)| *v == via) {
                Some((_, n)) => *n += 1,
                None => paths.push((via, 1)),
            }
        }
        let via = paths
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ");

        let mut missed = Vec::new();
        if passed < runs.len() {
            missed.push(format!(
                "{} of {} runs failed",
                runs.len() - passed,
                runs.len()
            ));
        }
        match first {
            None => missed.push("no first message measured".into()),
            Some((_, p95)) if p95 > FIRST_P95_MS => {
                missed.push(format!(
                    "first message p95 {p95:.0} ms > {FIRST_P95_MS:.0} ms"
                ));
            }
            Some(_) => {}
        }
        if cell.direct {
            if went_direct < runs.len() {
                missed.push(format!("direct in {went_direct} of {} runs", runs.len()));
            }
            if let Some((p50, p95)) = direct_times {
                if p50 > DIRECT_P50_MS {
                    missed.push(format!("direct p50 {p50:.0} ms > {DIRECT_P50_MS:.0} ms"));
                }
                if p95 > DIRECT_P95_MS {
                    missed.push(format!("direct p95 {p95:.0} ms > {DIRECT_P95_MS:.0} ms"));
                }
            }
        }
        Row {
            name: cell.name,
            direct: cell.direct,
            runs: runs.len(),
            passed,
            first,
            direct_times,
            went_direct,
            via,
            missed,
        }
    }

    fn met(&self) -> bool {
        self.missed.is_empty()
    }
}

/// What one run of the lanes lab measured, in ms: the control lane's p50
/// and p99 alone and beside the bulk.
#[derive(Debug, Clone, PartialEq)]
struct LanesRun {
    passed: bool,
    alone: Option<(f64, f64)>,
    bulk: Option<(f64, f64)>,
}

impl LanesRun {
    fn of(passed: bool, record: Option<&Value>) -> LanesRun {
        let number = |key: &str| record?.get(key)?.as_f64();
        let both = |p50: &str, p99: &str| Some((number(p50)?, number(p99)?));
        LanesRun {
            passed,
            alone: both("alone_p50_ms", "alone_p99_ms"),
            bulk: both("bulk_p50_ms", "bulk_p99_ms"),
        }
    }

    /// The p99 beside the bulk over the p99 alone.
    fn ratio(&self) -> Option<f64> {
        Some(self.bulk?.1 / self.alone?.1)
    }

    fn describe(&self, log: &Path) -> String {
        let pair = |v: Option<(f64, f64)>| {
            v.map_or("-".into(), |(p50, p99)| {
                format!("p50 {p50:.1} p99 {p99:.1} ms")
            })
        };
        let verdict = if self.passed {
            "passed".to_owned()
        } else {
            format!("FAILED (see {})", log.display())
        };
        format!(
            "alone {}, beside the bulk {}, ratio {}: {verdict}",
            pair(self.alone),
            pair(self.bulk),
            self.ratio().map_or("-".into(), |r| format!("{r:.2}x"))
        )
    }
}

/// The lanes lab's runs summed up.
#[derive(Debug)]
struct LanesRow {
    runs: usize,
    passed: usize,
    /// Medians over the runs of the p99 alone and beside the bulk.
    p99: Option<(f64, f64)>,
    /// The ratio's median and largest.
    ratio: Option<(f64, f64)>,
}

impl LanesRow {
    fn of(runs: &[LanesRun]) -> LanesRow {
        let median = |values: Vec<f64>| (!values.is_empty()).then(|| percentile(&values, 50.0));
        let ratios: Vec<f64> = runs.iter().filter_map(LanesRun::ratio).collect();
        let alone = median(runs.iter().filter_map(|r| Some(r.alone?.1)).collect());
        let bulk = median(runs.iter().filter_map(|r| Some(r.bulk?.1)).collect());
        LanesRow {
            runs: runs.len(),
            passed: runs.iter().filter(|r| r.passed).count(),
            p99: alone.zip(bulk),
            ratio: median(ratios.clone()).zip(ratios.iter().copied().reduce(f64::max)),
        }
    }

    fn met(&self) -> bool {
        self.passed == self.runs && self.ratio.is_some_and(|(median, _)| median <= LANES_RATIO)
    }

    fn render(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} ms"));
        format!(
            "| quic:// lanes | runs passed | control p99 alone | beside bulk | ratio median / most \
             | target met |\n| --- | --- | --- | --- | --- | --- |\n\
             | 5% loss and 20 ms each way | {}/{} | {} | {} | {} | {} |\n\n\
             The control lane's p99 latency (median over the runs) while the data lane carries \
             16 KiB messages, against its p99 alone. Target: ratio median <= {LANES_RATIO}x; \
             every run passes the test (which asserts <= 2.5x + 50 ms).\n",
            self.passed,
            self.runs,
            ms(self.p99.map(|p| p.0)),
            ms(self.p99.map(|p| p.1)),
            self.ratio
                .map_or("-".into(), |(m, most)| format!("{m:.2}x / {most:.2}x")),
            if self.met() { "yes" } else { "NO" },
        )
    }
}

/// The `p`th percentile (0 to 100) of `values`, by the nearest rank on a
/// sorted copy, as weft-bench reckons it. `values` must not be empty.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The markdown table, the targets and what each row missed.
fn render(rows: &[Row]) -> String {
    let pair = |v: Option<(f64, f64)>| v.map_or("-".into(), |(a, b)| format!("{a:.0} / {b:.0} ms"));
    let mut out = String::from(
        "| cell | expected | runs passed | paths | first message p50 / p95 | direct p50 / p95 \
         | direct success | target met |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let (direct, success) = if r.direct {
            let rate = r.went_direct as f64 / r.runs.max(1) as f64 * 100.0;
            (
                pair(r.direct_times),
                format!("{rate:.0}% ({}/{})", r.went_direct, r.runs),
            )
        } else {
            ("n/a (relay)".into(), "n/a".into())
        };
        out.push_str(&format!(
            "| {} | {} | {}/{} | {} | {} | {} | {} | {} |\n",
            r.name,
            if r.direct { "direct" } else { "relay" },
            r.passed,
            r.runs,
            r.via,
            pair(r.first),
            direct,
            success,
            if r.met() { "yes" } else { "NO" },
        ));
    }
    out.push_str(&format!(
        "\nTimes from both peers having registered, each run's the later peer's. \
         Targets: first message p95 <= {FIRST_P95_MS:.0} ms in every cell; where the \
         cell goes direct, direct p50 <= {DIRECT_P50_MS:.0} ms, p95 <= {DIRECT_P95_MS:.0} ms \
         and every run direct; every run passes the test.\n"
    ));
    for r in rows.iter().filter(|r| !r.met()) {
        out.push_str(&format!("\nmissed in {}: {}", r.name, r.missed.join("; ")));
    }
    if rows.iter().any(|r| !r.met()) {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn ran(first: f64, direct: Option<f64>) -> Run {
        Run {
            passed: true,
            first_ms: Some(first),
            direct_ms: direct,
            via: Some(if direct.is_some() { "tcp" } else { "relay" }.into()),
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        // Of ten runs, the p95 is the slowest: rank round(0.95 * 9) = 9.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 95.0), 10.0);
        assert_eq!(percentile(&ten, 50.0), 6.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
    }

    #[test]
    fn runs_from_the_arguments() {
        assert_eq!(parse_args(&[]), Ok(10));
        assert_eq!(parse_args(&args(&["--quick"])), Ok(2));
        assert_eq!(parse_args(&args(&["--runs", "4"])), Ok(4));
        assert_eq!(parse_args(&args(&["--quick", "--runs", "3"])), Ok(3));
        assert!(parse_args(&args(&["--runs", "0"])).is_err());
        assert!(parse_args(&args(&["--runs"])).is_err());
        assert!(parse_args(&args(&["--slow"])).is_err());
    }

    #[test]
    fn a_record_line_read() {
        let line = r#"{"cell":"cone","first_message_ms":12.5,"direct_ms":null,"via":"relay","alice":{"first_message_ms":12.5,"direct_ms":null,"via":"relay"}}"#;
        let value = json::parse(line).unwrap();
        let got = Run::of(false, Some(&value));
        assert_eq!(
            got,
            Run {
                passed: false,
                first_ms: Some(12.5),
                direct_ms: None,
                via: Some("relay".into()),
            }
        );
        assert_eq!(Run::of(false, None).first_ms, None);
    }

    #[test]
    fn the_lanes_ratio_is_the_median_of_the_runs() {
        let run = |alone: f64, bulk: f64| LanesRun {
            passed: true,
            alone: Some((10.0, alone)),
            bulk: Some((20.0, bulk)),
        };
        let row = LanesRow::of(&[run(100.0, 110.0), run(100.0, 200.0), run(50.0, 60.0)]);
        assert_eq!(row.ratio, Some((1.2, 2.0)));
        assert!(row.met());
        let row = LanesRow::of(&[run(100.0, 130.0)]);
        assert!(!row.met(), "1.3x");
        let mut failed = run(100.0, 100.0);
        failed.passed = false;
        assert!(!LanesRow::of(&[failed]).met());
        let line = json::parse(
            r#"{"cell":"lanes","alone_p50_ms":22.5,"alone_p99_ms":80,"bulk_p50_ms":40,"bulk_p99_ms":120}"#,
        )
        .unwrap();
        assert_eq!(LanesRun::of(true, Some(&line)).ratio(), Some(1.5));
        assert_eq!(LanesRun::of(false, None).ratio(), None);
    }

    #[test]
    fn targets_met_and_missed() {
        let direct = CELLS.iter().find(|c| c.tag == "cone").unwrap();
        let relay = CELLS.iter().find(|c| c.tag == "sym").unwrap();
        assert!(direct.direct && !relay.direct);

        let fine: Vec<Run> = (0..10)
            .map(|i| ran(10.0 + f64::from(i), Some(400.0)))
            .collect();
        let row = Row::of(direct, &fine);
        assert!(row.met(), "{:?}", row.missed);
        assert_eq!(row.first, Some((15.0, 19.0)));
        assert_eq!(row.via, "tcp 10");

        // One run of ten on the relay: 90% direct misses.
        let mut one_relayed = fine.clone();
        one_relayed[3] = ran(10.0, None);
        let row = Row::of(direct, &one_relayed);
        assert_eq!(row.missed, ["direct in 9 of 10 runs"]);
        assert_eq!(row.via, "tcp 9, relay 1");

        // A slow direct median, a slow first message at the p95.
        let slow: Vec<Run> = (0..10).map(|_| ran(1_200.0, Some(2_000.0))).collect();
        let row = Row::of(direct, &slow);
        assert_eq!(row.missed.len(), 2, "{:?}", row.missed);

        // The relay cell needs no direct path, but every run passed.
        let relayed: Vec<Run> = (0..10).map(|_| ran(30.0, None)).collect();
        assert!(Row::of(relay, &relayed).met());
        let mut failed = relayed.clone();
        failed[0] = Run::of(false, None);
        let row = Row::of(relay, &failed);
        assert_eq!(row.missed, ["1 of 10 runs failed"]);
        assert_eq!(row.via, "unmeasured 1, relay 9");

        let table = render(&[Row::of(direct, &fine), row]);
        assert!(table.contains("| both port-restricted cone | direct | 10/10 | tcp 10 | 15 / 19 ms | 400 / 400 ms | 100% (10/10) | yes |"), "{table}");
        assert!(
            table.contains("| both symmetric | relay | 9/10 |"),
            "{table}"
        );
        assert!(
            table.contains("missed in both symmetric: 1 of 10 runs failed"),
            "{table}"
        );
    }
}
