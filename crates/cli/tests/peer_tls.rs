//! `weft peer` over tls:// with certificates from `weft cert`, identities
//! bound to them (`--cert --key --ca --bind-identity`): the connect event
//! shows the verified certificate, a message goes through, and a peer with
//! a certificate for another name claiming an identity is `rejected` and
//! gets nothing, also of what was queued for that identity.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A `weft peer` process started (and, on drop, killed) by this test.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("peer")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Peer {
            child,
            stdin,
            events,
        }
    }

    /// The next event of this kind, skipping others.
    fn expect(&self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{kind}` event in time"));
            if v["event"] == kind {
                return v;
            }
        }
    }

    fn send(&mut self, to: &str, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{to}\t{text}").unwrap();
        stdin.flush().unwrap();
    }

    /// Kills the process and returns every event it printed.
    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::iter::from_fn(|| self.events.recv_timeout(WAIT).ok()).collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weft(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("weft runs");
    assert!(out.status.success(), "weft {args:?}: {out:?}");
}

/// The flags that make a peer present `name`'s certificate and trust the
/// CA in `dir`.
fn tls_flags(dir: &Path, name: &str) -> Vec<String> {
    let file = |f: String| dir.join(f).to_str().unwrap().to_owned();
    vec![
        "--cert".into(),
        file(format!("{name}.pem")),
        "--key".into(),
        file(format!("{name}-key.pem")),
        "--ca".into(),
        file("ca.pem".into()),
        "--bind-identity".into(),
    ]
}

fn start(ident: &str, cert: &str, dir: &Path, more: &[&str]) -> Peer {
    let flags = tls_flags(dir, cert);
    let mut args = vec!["--ident", ident];
    args.extend(flags.iter().map(String::as_str));
    args.extend(more);
    Peer::start(&args)
}

#[test]
fn identities_bound_to_certificates_from_weft_cert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    weft(&["cert", "ca", d]);
    for name in ["alice", "bob", "mallory"] {
        weft(&["cert", "issue", d, name]);
    }

    let mut alice = start(
        "alice",
        "alice",
        dir.path(),
        &["--listen", "tls://127.0.0.1:0"],
    );
    let ready = alice.expect("ready");
    let url = ready["listen"][0].as_str().unwrap().to_owned();
    assert!(url.starts_with("tls://127.0.0.1:"), "{url}");
    // Queued for bob before anyone claims to be bob.
    alice.send("bob", "for bob only");
    alice.expect("sent");

    // mallory's certificate is good, but does not name bob.
    let connect = ["--connect", &url, "--server-name", "alice"];
    let mallory = start("bob", "mallory", dir.path(), &connect);
    let rejected = alice.expect("rejected");
    assert_eq!(rejected["ident"], "bob");
    assert!(
        rejected["reason"].as_str().unwrap().contains("mallory"),
        "{rejected}"
    );
    let seen = mallory.stop();
    assert!(
        seen.iter().all(|e| e["event"] != "message"),
        "the squatter got nothing: {seen:?}"
    );

    let bob = start("bob", "bob", dir.path(), &connect);
    let to_alice = bob.expect("connect");
    assert_eq!(to_alice["ident"], "alice");
    assert_eq!(
        to_alice["cert"],
        json!({"subject": "alice", "names": ["alice"]})
    );
    let got = bob.expect("message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["data"], "for bob only");
    let to_bob = alice.expect("connect");
    assert_eq!(to_bob["ident"], "bob");
    assert_eq!(to_bob["cert"], json!({"subject": "bob", "names": ["bob"]}));
}
