//! `weft stun` and `weft stun-server` as users run them, on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The bound on every wait for a `weft` process.
const WAIT: Duration = Duration::from_secs(60);

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// Runs `weft` to completion, killing it after [`WAIT`].
fn output(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft starts");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Asserts exit status 2 and exactly one line on stderr, which names
/// `needle`.
fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A `weft stun-server` process, killed when dropped.
struct Server {
    child: Child,
    /// The addresses of its `ready` line.
    listen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = weft()
            .arg("stun-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft stun-server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            child,
            listen: Vec::new(),
        };
        let line = rx
            .recv_timeout(WAIT)
            .expect("weft stun-server prints its ready line");
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        assert_eq!(ready["event"], "ready", "{line}");
        server.listen = ready["listen"]
            .as_array()
            .expect("listen is an array")
            .iter()
            .map(|a| a.as_str().expect("addresses are strings").to_owned())
            .collect();
        server
    }
}

#[test]
fn bad_addresses_are_usage_errors() {
    let out = output(weft().args(["stun", "--server", "ftp://127.0.0.1:3478"]));
    assert_usage_error(&out, "ftp://127.0.0.1:3478");
    let out = output(weft().args(["stun", "--server", "127.0.0.1:3478", "--local", "nowhere"]));
    assert_usage_error(&out, "--local");
    let out = output(weft().args(["stun-server", "--listen", "not-an-address"]));
    assert_usage_error(&out, "--listen");
    let out = output(weft().args(["stun-server", "--listen", "127.0.0.1:0", "--alt", "x.y"]));
    assert_usage_error(&out, "--alt");
}

#[test]
fn stun_against_weft_stun_server() {
    let server = Server::start(&["--listen", "127.0.0.1:0"]);
    assert_eq!(server.listen.len(), 1, "{:?}", server.listen);
    let out = output(weft().args(["stun", "--server", &server.listen[0], "--json"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    for key in ["local", "mapped", "servers"] {
        assert!(report.get(key).is_some(), "no `{key}`: {stdout}");
    }
    assert!(
        report.get("nat").is_none(),
        "no `nat` without --nat: {stdout}"
    );
    // Loopback: no NAT, so the mapped address is the local one.
    assert_eq!(report["mapped"], report["local"], "{stdout}");
    assert!(
        report["local"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{stdout}"
    );
    let servers = report["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{stdout}");
    assert_eq!(servers[0]["address"], server.listen[0].as_str());
    assert_eq!(servers[0]["transport"], "udp");
    assert_eq!(servers[0]["mapped"], report["mapped"]);
    assert_eq!(servers[0]["error"], Value::Null);
}

#[test]
fn stun_nat_against_an_rfc5780_weft_stun_server() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--alt", "127.0.0.2:0"]);
    // Primary, primary IP and alternate port, alternate IP and primary
    // port, alternate.
    assert_eq!(server.listen.len(), 4, "{:?}", server.listen);
    assert!(
        server.listen[3].starts_with("127.0.0.2:"),
        "{:?}",
        server.listen
    );
    let out = output(weft().args([
        "stun",
        "--server",
        &server.listen[0],
        "--local",
        "127.0.0.1",
        "--nat",
        "--json",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mapped"], report["local"], "{stdout}");
    assert_eq!(report["nat"]["mapping"], "endpoint-independent", "{stdout}");
    assert_eq!(
        report["nat"]["filtering"], "endpoint-independent",
        "{stdout}"
    );
    assert_eq!(report["nat"]["type"], "open", "{stdout}");
    assert!(report["nat"].get("error").is_none(), "{stdout}");
}
