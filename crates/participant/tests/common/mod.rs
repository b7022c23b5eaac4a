//! Helpers shared by the tests: a free port of loopback, waiting for a
//! condition, and for the namespace tests, running a command with a time
//! limit and the loud skip when the test cannot run here.
#![allow(dead_code)] // each test file uses its own subset

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Polls `cond` every 10 ms until it holds, at most `within`: for what a
/// test can only observe, such as a set of neighbours, never to wait for
/// time to pass.
pub(crate) async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The longest any one command may run.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A UDP port of loopback that no one uses now (a participant's beacon
/// port of the test's own).
pub(crate) fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn skip(why: &str) {
    eprintln!("!!!!! SKIPPED (needs root): {why} !!!!!");
}

pub(crate) fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Runs a command to completion, killing it after `timeout`.
pub(crate) fn run<I, S>(program: &str, args: I, timeout: Duration) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} still running after {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    let output = reader.join().unwrap_or_default();
    if status.success() {
        Ok(output)
    } else {
        Err(format!("{shown} failed ({status}):\n{output}"))
    }
}

pub(crate) fn ip(args: &str) -> Result<String, String> {
    run("ip", args.split_whitespace(), COMMAND_TIMEOUT)
}
