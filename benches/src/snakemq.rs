//! The snakeMQ 1.6 baseline of the messaging rows: `snakemq_bench.py`
//! (embedded in this binary) run as two Python processes, a receiver and a
//! sender, over loopback TCP.
//!
//! The receiver listens on an ephemeral port and says which; the sender
//! connects, and once the receiver has identified itself notes the time
//! and queues every message. The receiver notes the time of the last
//! receive. Both use Python's `time.monotonic()`, which is the system-wide
//! `CLOCK_MONOTONIC`, so the two times compare. Python's start-up and the
//! connection are not timed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{LIMIT, ctx};

/// The script, run with `python -c`.
const SCRIPT: &str = include_str!("../snakemq_bench.py");

/// Why the snakeMQ baseline has no value without a Python.
pub(crate) const NO_PYTHON: &str = "not measured: no Python with snakeMQ 1.6 was given \
     (cargo xtask bench passes --snakemq-python with its venv; without the venv the row has \
     no baseline)";

/// How long a peer may take to start (Python, imports, listening).
pub(crate) const START: Duration = Duration::from_secs(30);

/// One Python peer running a script with `python -c`, killed if still
/// running when dropped. Each stdout line is one JSON event.
pub(crate) struct Peer {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `script` with `args`; `name` says which peer in errors.
    pub(crate) fn start(
        python: &Path,
        script: &str,
        name: &'static str,
        args: &[String],
    ) -> Result<Peer, String> {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {} for the snakeMQ {name}: {e}", python.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("snakemq-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(ctx("starting a reader thread"))?;
        Ok(Peer { name, child, lines })
    }

    /// The next event line, as JSON, of kind `event`.
    pub(crate) fn expect(&self, event: &str, by: Instant) -> Result<Value, String> {
        let left = by.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => {
                format!("the snakeMQ {} said nothing ({event}) in time", self.name)
            }
            mpsc::RecvTimeoutError::Disconnected => {
                format!("the snakeMQ {} ended before `{event}`", self.name)
            }
        })?;
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| format!("the snakeMQ {} said {line:?}: {e}", self.name))?;
        if value["event"] != event {
            return Err(format!(
                "the snakeMQ {} said {line:?}, expected `{event}`",
                self.name
            ));
        }
        Ok(value)
    }

    /// Waits for the process to exit by itself.
    pub(crate) fn finish(mut self, by: Instant) -> Result<(), String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!("the snakeMQ {} failed: {status}", self.name));
                }
                Ok(None) if Instant::now() > by => {
                    return Err(format!("the snakeMQ {} did not exit in time", self.name));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for the snakeMQ {}: {e}", self.name)),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number `key` of an event.
pub(crate) fn number(value: &Value, key: &str) -> Result<f64, String> {
    value[key]
        .as_f64()
        .ok_or_else(|| format!("no number `{key}` in {value}"))
}

/// One snakeMQ measurement: `count` messages of `size` bytes; messages/s.
pub(crate) fn once(python: &Path, count: u64, size: usize) -> Result<f64, String> {
    let started = Instant::now();
    let receiver = Peer::start(
        python,
        SCRIPT,
        "receiver",
        &[
            "--role".into(),
            "recv".into(),
            "--count".into(),
            count.to_string(),
        ],
    )?;
    let ready = receiver.expect("ready", started + START)?;
    let port = ready["port"]
        .as_u64()
        .ok_or_else(|| format!("no port in {ready}"))?;
    let sender = Peer::start(
        python,
        SCRIPT,
        "sender",
        &[
            "--role".into(),
            "send".into(),
            "--port".into(),
            port.to_string(),
            "--count".into(),
            count.to_string(),
            "--size".into(),
            size.to_string(),
        ],
    )?;
    let start = sender.expect("start", Instant::now() + START)?;
    let end = receiver.expect("end", Instant::now() + LIMIT)?;
    let got = number(&end, "count")?;
    let bytes = number(&end, "bytes")?;
    if got != count as f64 || bytes != (count * size as u64) as f64 {
        return Err(format!(
            "the snakeMQ receiver got {got} messages, {bytes} bytes; sent {count} of {size} B"
        ));
    }
    let took = number(&end, "at")? - number(&start, "at")?;
    if took <= 0.0 {
        return Err(format!("the snakeMQ run took {took} s"));
    }
    let by = Instant::now() + Duration::from_secs(10);
    receiver.finish(by)?;
    sender.finish(by)?;
    Ok(count as f64 / took)
}
