//! `weft participant --transport quic` with certificates from `weft cert`:
//! two daemons on loopback beacons meet over QUIC, and a publication
//! through them reaches `weft sub`; the TLS flags are checked.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{WAIT, free_port, start_on_loopback as start, weft};

fn as_str(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn local_name(tag: &str) -> String {
    format!("unix://@weft-cli-quic-test-{}-{tag}", std::process::id())
}

/// The flags of a QUIC participant presenting `name`'s certificate and
/// trusting the CA in `dir`.
fn quic_flags(dir: &Path, name: &str) -> Vec<String> {
    let file = |f: String| dir.join(f).to_str().unwrap().to_owned();
    vec![
        "--ident".into(),
        name.into(),
        "--transport".into(),
        "quic".into(),
        "--cert".into(),
        file(format!("{name}.pem")),
        "--key".into(),
        file(format!("{name}-key.pem")),
        "--ca".into(),
        file("ca.pem".into()),
    ]
}

#[test]
fn daemons_meet_over_quic_with_certificates_from_weft_cert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    weft(&["cert", "ca", d]);
    for name in ["quic-a", "quic-b"] {
        weft(&["cert", "issue", d, name]);
    }
    let port = free_port();
    let (la, lb) = (local_name("a"), local_name("b"));
    let flags_a = quic_flags(dir.path(), "quic-a");
    let flags_b = quic_flags(dir.path(), "quic-b");
    let a = start("participant", &as_str(&flags_a), port, &la);
    let ready = a.expect("ready");
    assert_eq!(ready["transport"], "quic");
    let b = start("participant", &as_str(&flags_b), port, &lb);
    b.expect("ready");
    assert_eq!(a.expect("connected")["identity"], "quic-b");
    assert_eq!(b.expect("connected")["identity"], "quic-a");

    let sub = start("sub", &["news.", "--count", "1"], port, &lb);
    let s = a.expect("subscriber");
    assert_eq!(s["participant"], "quic-b");
    let mut publisher = start("pub", &["news.today"], port, &la);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        publisher.send_line("over quic");
        if let Some(line) = sub.line_within(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "nothing reached the subscriber");
    };
    assert_eq!(
        line,
        r#"{"event":"message","topic":"news.today","from":"quic-a","data":"over quic"}"#
    );
    publisher.end_input();
    assert!(publisher.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn tls_flags_go_with_quic_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    weft(&["cert", "ca", d]);
    weft(&["cert", "issue", d, "lone"]);
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let bad: [&[&str]; 3] = [
        // QUIC without trust material.
        &["--transport", "quic"],
        &["--transport", "quic", "--ca", ca],
        // TLS flags on plain TCP would be silently unused.
        &["--ca", ca],
    ];
    for args in bad {
        let status = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("participant")
            .args(args)
            .args(["--beacon", "loopback", "--port", &free_port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(2), "weft participant {args:?}");
    }
}
