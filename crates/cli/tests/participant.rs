//! `weft participant`, `weft pub` and `weft sub` as people and scripts use
//! them. Every process gets `--beacon loopback` on a port of the test's own
//! and its own local socket, so nothing leaves the host and tests do not
//! meet each other (or a real daemon).

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn local_name(tag: &str) -> String {
    format!("unix://@weft-cli-test-{}-{tag}", std::process::id())
}

/// A `weft` process started (and, on drop, killed) by this test.
struct Weft {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Weft {
    fn start(command: &str, args: &[&str], port: u16, local: &str) -> Weft {
        let port = port.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg(command)
            .args(args)
            .args(["--beacon", "loopback", "--port", &port])
            .args(["--listen", "tcp://127.0.0.1:0", "--local", local])
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

    /// The next JSON line whose `event` is `kind`, skipping others.
    fn expect(&self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{kind}` event in time"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
            if v["event"] == kind {
                return v;
            }
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "weft did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pub_and_sub_attach_to_daemons_that_find_each_other() {
    let port = free_port();
    let (la, lb) = (local_name("a"), local_name("b"));
    let a = Weft::start("participant", &["--ident", "daemon-a"], port, &la);
    let ready = a.expect("ready");
    assert_eq!(ready["identity"], "daemon-a");
    assert_eq!(ready["local"], la.as_str());
    let b = Weft::start("participant", &["--ident", "daemon-b"], port, &lb);
    b.expect("ready");
    let connected = a.expect("connected");
    assert_eq!(connected["identity"], "daemon-b");

    let sub = Weft::start("sub", &["news.", "--count", "1"], port, &lb);
    // daemon-a hears of the subscriber daemon-b now hosts.
    let s = a.expect("subscriber");
    assert_eq!(
        (s["participant"].as_str(), s["added"].as_bool()),
        (Some("daemon-b"), Some(true))
    );

    let mut publisher = Weft::start("pub", &["news.today"], port, &la);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        publisher.send_line("hello world");
        if let Ok(line) = sub.lines.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no message reached the subscriber"
        );
    };
    assert_eq!(
        line,
        r#"{"event":"message","topic":"news.today","from":"daemon-a","data":"hello world"}"#
    );
    let mut sub = sub;
    assert!(sub.wait_exit(Duration::from_secs(5)).success());
    let s = a.expect("subscriber");
    assert_eq!(s["added"], false, "the subscriber left with `weft sub`");
    // End of input ends `weft pub`.
    publisher.stdin.take();
    assert!(publisher.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn pub_and_sub_run_a_participant_of_their_own_when_none_runs() {
    let port = free_port();
    let nobody = local_name("nobody");
    let mut sub = Weft::start(
        "sub",
        &[
            "t",
            "--filter",
            r"^t\.[0-9]+$",
            "--count",
            "2",
            "--ident",
            "lonely-sub",
        ],
        port,
        &nobody,
    );
    let mut publisher = Weft::start(
        "pub",
        &["t.1", "--ident", "lonely-pub", "--wait", "10"],
        port,
        &nobody,
    );
    // Published once the subscriber is known (within --wait), then EOF.
    publisher.send_line("one");
    publisher.send_line("two");
    publisher.stdin.take();
    let first = sub.lines.recv_timeout(WAIT).expect("a message");
    let second = sub.lines.recv_timeout(WAIT).expect("a second message");
    assert_eq!(
        first,
        r#"{"event":"message","topic":"t.1","from":"lonely-pub","data":"one"}"#
    );
    assert!(second.contains(r#""data":"two""#), "{second}");
    assert!(sub.wait_exit(Duration::from_secs(10)).success());
    assert!(publisher.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn bad_arguments_exit_with_2() {
    let port = free_port();
    let nobody = local_name("bad");
    for (cmd, args) in [
        ("sub", vec!["x", "--filter", "("]),
        ("pub", vec!["x", "--wait", "-1"]),
        ("participant", vec!["--ident", ""]),
    ] {
        let mut w = Weft::start(cmd, &args, port, &nobody);
        let status = w.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "weft {cmd} {args:?}");
    }
    let status = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sub", "x", "--beacon", "nonsense"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
