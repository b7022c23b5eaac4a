//! `weft peer` as scripts use it: JSON lines out, `IDENT<TAB>TEXT` in.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{WAIT, Weft};

/// `weft peer ARGS...`.
fn peer(args: &[&str]) -> Weft {
    let mut all = vec!["peer"];
    all.extend_from_slice(args);
    Weft::start(&all)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_peers_talk_through_stdin_and_json_lines() {
    let mut bob = peer(&["--ident", "bob", "--listen", "tcp://127.0.0.1:0"]);
    let ready = bob.next();
    assert_eq!(ready["event"], "ready", "the first line is ready");
    let url = ready["listen"][0].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("tcp://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );

    let mut alice = peer(&["--ident", "alice", "--connect", &url, "--ttl", "30"]);
    assert_eq!(alice.next()["event"], "ready");
    assert_eq!(alice.expect("connect")["ident"], "bob");
    assert_eq!(bob.expect("connect")["ident"], "alice");

    alice.send("bob", "hello bob");
    let sent = alice.expect("sent");
    let got = bob.expect("message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["data"], "hello bob");
    assert_eq!(got["flags"], 0);
    assert_eq!(got["uuid"], sent["uuid"]);
    assert_eq!(got["uuid"].as_str().unwrap().len(), 32);
    assert!(
        got["uuid"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
    let ttl = got["ttl"].as_u64().unwrap();
    assert!((28..=30).contains(&ttl), "{ttl}");

    bob.send("alice", "hi alice");
    let got = alice.expect("message");
    assert_eq!(got["from"], "bob");
    assert_eq!(got["ttl"], Value::Null);

    // End of input: queues drain, then a clean exit.
    alice.send("bob", "last words");
    alice.end_input();
    assert_eq!(alice.wait_exit(WAIT).code().unwrap_or(-1), 0);
    assert_eq!(bob.expect("message")["data"], "last words");
    assert_eq!(bob.expect("disconnect")["ident"], "alice");
}

#[test]
fn bad_arguments_get_one_line_and_exit_2() {
    for args in [
        vec!["peer"],
        vec!["peer", "--ident", &"x".repeat(51)],
        vec!["peer", "--ident", "ok", "--listen", "tcp://nope"],
        vec!["peer", "--ident", "ok", "--connect", "carrier-pigeon://x:1"],
        vec!["peer", "--ident", "ok", "--linger", "-1"],
        vec!["peer", "--ident", "ok", "--quic-idle-timeout", "0"],
        vec!["peer", "--ident", "ok", "--quic-idle-timeout", "-1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// The sender holds persistent messages in SQLite, is killed with SIGKILL
/// in the middle of delivering them, and restarts: every message arrives
/// exactly once.
#[test]
fn persistent_messages_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tx.sqlite");
    let store = store.to_str().unwrap();
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let total = 2_000;

    // The receiver is not there yet: everything waits in the sender's store.
    let tx_args = [
        "--ident",
        "tx",
        "--connect",
        &url,
        "--store",
        store,
        "--persistent",
    ];
    let mut tx = peer(&tx_args);
    assert_eq!(tx.next()["event"], "ready");
    let mut accepted = Vec::new();
    for i in 0..total {
        tx.send("rx", &format!("m{i}"));
    }
    for _ in 0..total {
        accepted.push(tx.expect("sent")["uuid"].as_str().unwrap().to_owned());
    }

    let rx = peer(&["--ident", "rx", "--listen", &url]);
    assert_eq!(rx.next()["event"], "ready");
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Kill the sender once delivery is under way.
    while seen.len() < 10 {
        let m = rx.expect("message");
        *seen
            .entry(m["uuid"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    tx.kill9();

    let mut tx = peer(&tx_args);
    assert_eq!(tx.next()["event"], "ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived",
            seen.len()
        );
        let v = rx.next();
        if v["event"] == "message" {
            *seen
                .entry(v["uuid"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    tx.end_input();
    assert_eq!(tx.wait_exit(WAIT).code().unwrap_or(-1), 0);
    // Anything left over would have arrived by now: drain what is there.
    while let Some(v) = rx.event_within(Duration::from_millis(200)) {
        if v["event"] == "message" {
            *seen
                .entry(v["uuid"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let mut accepted_sorted = accepted.clone();
    accepted_sorted.sort();
    let mut seen_sorted: Vec<_> = seen.keys().cloned().collect();
    seen_sorted.sort();
    assert_eq!(
        seen_sorted, accepted_sorted,
        "exactly the accepted messages arrived"
    );
}

#[test]
fn messages_left_undelivered_are_reported_and_exit_1() {
    // Nobody named carol ever connects: what was sent to her stays queued.
    let mut alice = peer(&["--ident", "alice", "--linger", "0.2"]);
    assert_eq!(alice.next()["event"], "ready");
    for i in 0..3 {
        alice.send("carol", &format!("m{i}"));
        alice.expect("sent");
    }
    alice.end_input();
    assert_eq!(alice.expect("undelivered")["count"], 3);
    assert_eq!(alice.wait_exit(WAIT).code().unwrap_or(-1), 1);

    // Everything delivered: exit 0, no such event.
    let bob = peer(&["--ident", "bob", "--listen", "tcp://127.0.0.1:0"]);
    let url = bob.next()["listen"][0].as_str().unwrap().to_owned();
    let mut dave = peer(&["--ident", "dave", "--connect", &url]);
    assert_eq!(dave.next()["event"], "ready");
    assert_eq!(dave.expect("connect")["ident"], "bob");
    dave.send("bob", "hello");
    assert_eq!(bob.expect("message")["data"], "hello");
    dave.end_input();
    assert_eq!(dave.wait_exit(WAIT).code().unwrap_or(-1), 0);
    let rest: Vec<Value> = dave.ready_events();
    assert!(rest.iter().all(|v| v["event"] != "undelivered"), "{rest:?}");
}
