//! `weft participant`, `weft pub` and `weft sub` as people and scripts use
//! them. Every process gets `--beacon loopback` on a port of the test's own
//! and its own local socket, so nothing leaves the host and tests do not
//! meet each other (or a real daemon).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{WAIT, free_port, start_on_loopback as start};

fn local_name(tag: &str) -> String {
    format!("unix://@weft-cli-test-{}-{tag}", std::process::id())
}

#[test]
fn pub_and_sub_attach_to_daemons_that_find_each_other() {
    let port = free_port();
    let (la, lb) = (local_name("a"), local_name("b"));
    let a = start("participant", &["--ident", "daemon-a"], port, &la);
    let ready = a.expect("ready");
    assert_eq!(ready["identity"], "daemon-a");
    assert_eq!(ready["local"], la.as_str());
    let b = start("participant", &["--ident", "daemon-b"], port, &lb);
    b.expect("ready");
    let connected = a.expect("connected");
    assert_eq!(connected["identity"], "daemon-b");

    let sub = start("sub", &["news.", "--count", "1"], port, &lb);
    // daemon-a hears of the subscriber daemon-b now hosts.
    let s = a.expect("subscriber");
    assert_eq!(
        (s["participant"].as_str(), s["added"].as_bool()),
        (Some("daemon-b"), Some(true))
    );

    let mut publisher = start("pub", &["news.today"], port, &la);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        publisher.send_line("hello world");
        if let Some(line) = sub.line_within(Duration::from_millis(200)) {
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
    publisher.end_input();
    assert!(publisher.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn pub_and_sub_run_a_participant_of_their_own_when_none_runs() {
    let port = free_port();
    let nobody = local_name("nobody");
    let mut sub = start(
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
    let mut publisher = start(
        "pub",
        &["t.1", "--ident", "lonely-pub", "--wait", "10"],
        port,
        &nobody,
    );
    // Published once the subscriber is known (within --wait), then EOF.
    publisher.send_line("one");
    publisher.send_line("two");
    publisher.end_input();
    let first = sub.line_within(WAIT).expect("a message");
    let second = sub.line_within(WAIT).expect("a second message");
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
        let mut w = start(cmd, &args, port, &nobody);
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

#[test]
fn participant_reports_its_number_of_neighbours_and_takes_max_streams() {
    let port = free_port();
    let (la, lb, lc) = (local_name("na"), local_name("nb"), local_name("nc"));
    let args = ["--max-streams", "4"];
    let a = start(
        "participant",
        &[&args[..], &["--ident", "count-a"]].concat(),
        port,
        &la,
    );
    a.expect("ready");
    let b = start("participant", &["--ident", "count-b"], port, &lb);
    b.expect("ready");
    assert_eq!(a.expect("neighbours")["count"], 1);
    let c = start("participant", &["--ident", "count-c"], port, &lc);
    c.expect("ready");
    assert_eq!(a.expect("neighbours")["count"], 2);
    drop(c);
    assert_eq!(a.expect("neighbours")["count"], 1);
    drop(b);

    let nobody = local_name("nmax");
    for bad in ["0", "x"] {
        let mut w = start("participant", &["--max-streams", bad], port, &nobody);
        let status = w.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "--max-streams {bad}");
    }
}
