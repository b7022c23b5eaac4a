//! `weft peer` over tls:// with certificates from `weft cert`, identities
//! bound to them (`--cert --key --ca --bind-identity`): the connect event
//! shows the verified certificate, a message goes through, and a peer with
//! a certificate for another name claiming an identity is `rejected` and
//! gets nothing, also of what was queued for that identity.

use std::path::Path;

use serde_json::json;

mod common;
use common::{Weft, certificates};

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

fn start(ident: &str, cert: &str, dir: &Path, more: &[&str]) -> Weft {
    let flags = tls_flags(dir, cert);
    let mut args = vec!["peer", "--ident", ident];
    args.extend(flags.iter().map(String::as_str));
    args.extend(more);
    Weft::start(&args)
}

#[test]
fn identities_bound_to_certificates_from_weft_cert() {
    let dir = certificates(&["alice", "bob", "mallory"]);

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

/// The same flags over quic://: a listener and a connector with
/// certificates from `weft cert`, a message each way.
#[test]
fn two_peers_talk_over_quic_with_certificates() {
    let dir = certificates(&["alice", "bob"]);
    let mut alice = start(
        "alice",
        "alice",
        dir.path(),
        &["--listen", "quic://127.0.0.1:0"],
    );
    let url = alice.expect("ready")["listen"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with("quic://127.0.0.1:"), "{url}");
    let mut bob = start(
        "bob",
        "bob",
        dir.path(),
        &["--connect", &url, "--server-name", "alice"],
    );
    let to_alice = bob.expect("connect");
    assert_eq!(to_alice["ident"], "alice");
    assert_eq!(
        to_alice["cert"],
        json!({"subject": "alice", "names": ["alice"]})
    );
    bob.send("alice", "over quic");
    let got = alice.expect("message");
    assert_eq!(
        (got["from"].as_str(), got["data"].as_str()),
        (Some("bob"), Some("over quic"))
    );
    alice.send("bob", "and back");
    assert_eq!(bob.expect("message")["data"], "and back");
}

/// `--data-lane-from`: over quic://, long lines go on the data lane and
/// short ones on the control lane, each in order, and the receiver's
/// events say which lane each came on.
#[test]
fn long_lines_go_on_the_data_lane_over_quic() {
    let dir = certificates(&["alice", "bob"]);
    let alice = start(
        "alice",
        "alice",
        dir.path(),
        &["--listen", "quic://127.0.0.1:0"],
    );
    let url = alice.expect("ready")["listen"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob = start(
        "bob",
        "bob",
        dir.path(),
        &[
            "--connect",
            &url,
            "--server-name",
            "alice",
            "--data-lane-from",
            "100",
        ],
    );
    assert_eq!(bob.expect("connect")["ident"], "alice");
    let long = |n: usize| format!("{n}{}", "x".repeat(200));
    for n in 0..5 {
        bob.send("alice", &long(n));
        bob.send("alice", &format!("short {n}"));
    }
    let (mut data, mut control) = (Vec::new(), Vec::new());
    while data.len() + control.len() < 10 {
        let got = alice.expect("message");
        let text = got["data"].as_str().unwrap().to_owned();
        match got["lane"].as_str() {
            Some("data") => data.push(text),
            Some("control") => control.push(text),
            other => panic!("no lane: {other:?} in {got}"),
        }
    }
    assert_eq!(data, (0..5).map(long).collect::<Vec<_>>());
    assert_eq!(
        control,
        (0..5).map(|n| format!("short {n}")).collect::<Vec<_>>()
    );
}
