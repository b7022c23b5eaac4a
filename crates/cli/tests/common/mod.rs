//! A `weft` process as the command-line tests drive it: JSON lines out,
//! lines in, killed (by its PID) when dropped.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) mod netns;

/// The longest any one wait for an event may take.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A UDP port of loopback no one uses now (beacons of the test's own).
pub(crate) fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `weft ARGS...` to its end (such as `weft cert`); it must succeed.
pub(crate) fn weft(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("weft runs");
    assert!(out.status.success(), "weft {args:?}: {out:?}");
}

/// A fresh directory with a certificate authority (`weft cert ca`) and a
/// certificate it issued for each of `names` (`weft cert issue`).
pub(crate) fn certificates(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    weft(&["cert", "ca", d]);
    for name in names {
        weft(&["cert", "issue", d, name]);
    }
    dir
}

/// `weft COMMAND ARGS...` (participant, pub, sub) on loopback beacons on
/// `port`, with its own local socket `local`.
pub(crate) fn start_on_loopback(command: &str, args: &[&str], port: u16, local: &str) -> Weft {
    let port = port.to_string();
    let mut all = vec![command];
    all.extend_from_slice(args);
    all.extend(["--beacon", "loopback", "--port", &port]);
    all.extend(["--listen", "tcp://127.0.0.1:0", "--local", local]);
    Weft::start(&all)
}

/// A running `weft` with its JSON events.
pub(crate) struct Weft {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Every line it printed, in order.
    lines: mpsc::Receiver<String>,
}

impl Weft {
    /// Runs `weft ARGS...` (the first argument is the subcommand).
    pub(crate) fn start(args: &[&str]) -> Weft {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
        command.args(args);
        Weft::spawn(command)
    }

    /// Runs `weft ARGS...` inside the network namespace `ns` (`ip netns
    /// exec` execs it in place, so the PID is weft's own).
    pub(crate) fn start_in(ns: &str, args: &[&str]) -> Weft {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_weft")])
            .args(args);
        Weft::spawn(command)
    }

    fn spawn(mut command: Command) -> Weft {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Weft {
            child,
            stdin,
            lines,
        }
    }

    /// The next line as it was printed, waiting at most `within`.
    pub(crate) fn line_within(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// The next event, waiting at most `within`.
    pub(crate) fn event_within(&self, within: Duration) -> Option<Value> {
        self.line_within(within).map(|l| parse(&l))
    }

    /// The next event.
    pub(crate) fn next(&self) -> Value {
        self.event_within(WAIT).expect("an event in time")
    }

    /// The events printed and not read yet, without waiting.
    pub(crate) fn ready_events(&self) -> Vec<Value> {
        self.lines.try_iter().map(|l| parse(&l)).collect()
    }

    /// The next event of this kind, skipping others.
    pub(crate) fn expect(&self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .event_within(left)
                .unwrap_or_else(|| panic!("no `{kind}` event in time; skipped {skipped:?}"));
            if v["event"] == kind {
                return v;
            }
            skipped.push(v);
        }
    }

    /// Writes one line to its input.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// `weft peer`'s input: TEXT for the identity `to`.
    pub(crate) fn send(&mut self, to: &str, text: &str) {
        self.send_line(&format!("{to}\t{text}"));
    }

    /// Closes its input.
    pub(crate) fn end_input(&mut self) {
        self.stdin.take();
    }

    /// Waits at most `within` for it to exit.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "weft did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, by the PID of the process this test started.
    pub(crate) fn kill9(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }

    /// Kills it and returns every event it printed that was not read.
    pub(crate) fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::iter::from_fn(|| self.event_within(WAIT)).collect()
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"))
}
