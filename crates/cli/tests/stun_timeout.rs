//! `weft stun` gives up on a server that never answers within its
//! `--timeout`, instead of RFC 8489's 39.5 s.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The bound on every wait for a `weft` process; a run past it fails the
/// test (and the process is left to the harness to reap).
const WAIT: Duration = Duration::from_secs(60);

/// Runs `weft` with these arguments to completion, within [`WAIT`].
fn run(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft starts");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("weft {args:?} still running after {WAIT:?}"))
        .expect("weft's output")
}

#[test]
fn a_silent_server_is_given_up_within_the_timeout() {
    // Bound and never read: requests reach it and nothing comes back.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = run(&["stun", "--server", &server, "--timeout", "1"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    // Not a terminal: no progress line, just the one error line.
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("weft: no STUN server answered (udp://{server}: ")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn bad_timeouts_are_usage_errors() {
    for bad in ["0", "-2", "soon"] {
        let flag = format!("--timeout={bad}");
        let out = run(&["stun", "--server", "127.0.0.1:3478", &flag]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--timeout"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}
