//! `weft rendezvous` and `weft peer --rendezvous`: two peers with no
//! listener exchange lines through the rendezvous's relay.

mod common;
use common::{WAIT, Weft};

#[test]
fn rendezvous_ready_line_names_listen_urls_and_stun() {
    let rv = Weft::start(&[
        "rendezvous",
        "--listen",
        "tcp://127.0.0.1:0",
        "--relay-rate",
        "100000",
    ]);
    let ready = rv.next();
    assert_eq!(ready["event"], "ready", "the first line is ready");
    let url = ready["listen"][0].as_str().unwrap();
    let port = url.rsplit(':').next().unwrap();
    assert!(url.starts_with("tcp://127.0.0.1:") && port != "0", "{url}");
    assert_eq!(ready["stun"], format!("127.0.0.1:{port}"));

    // Without --alt-ip, a second STUN server on another port of that IP.
    let second = ready["second_stun"].as_str().expect("a second STUN server");
    assert!(second.starts_with("127.0.0.1:"), "{second}");
    assert_ne!(second, ready["stun"].as_str().unwrap());

    // STUN answers on both UDP ports.
    for at in [format!("127.0.0.1:{port}"), second.to_owned()] {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(&[7u8; 12]);
        socket.send_to(&request, &at).unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        assert!(n >= 20);
        assert_eq!(&buf[..2], &[0x01, 0x01], "a Binding success response");
        assert_eq!(&buf[8..20], &[7u8; 12], "our transaction id");
    }
}

#[test]
fn bad_rendezvous_arguments_exit_2() {
    for args in [
        vec!["rendezvous"],
        vec!["rendezvous", "--listen", "tcp://nope"],
        vec![
            "rendezvous",
            "--listen",
            "tcp://127.0.0.1:0",
            "--alt-ip",
            "x",
        ],
        vec![
            "peer",
            "--ident",
            "a",
            "--rendezvous",
            "carrier-pigeon://x:1",
        ],
    ] {
        let mut weft = Weft::start(&args);
        let status = weft.wait_exit(WAIT);
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn two_peers_behind_nothing_but_a_rendezvous_exchange_lines() {
    let rv = Weft::start(&["rendezvous", "--listen", "tcp://127.0.0.1:0"]);
    let ready = rv.next();
    let url = ready["listen"][0].as_str().unwrap().to_owned();
    let remote = url.trim_start_matches("tcp://").to_owned();

    let mut alice = Weft::start(&["peer", "--ident", "alice", "--rendezvous", &url]);
    assert_eq!(alice.next()["event"], "ready");
    assert_eq!(rv.expect("register")["ident"], "alice");
    // Bob has not registered yet: the line waits in alice's queue.
    alice.send("bob", "hello bob");
    assert_eq!(alice.expect("sent")["to"], "bob");

    let mut bob = Weft::start(&["peer", "--ident", "bob", "--rendezvous", &url]);
    assert_eq!(bob.next()["event"], "ready");
    let path = bob.expect("path");
    assert_eq!(path["ident"], "alice");
    assert_eq!(path["via"], "relay");
    assert_eq!(path["transport"], "tcp");
    assert_eq!(path["remote"], remote.as_str());
    let got = bob.expect("message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["data"], "hello bob");
    let path = alice.expect("path");
    assert_eq!(path["ident"], "bob");
    assert_eq!(path["via"], "relay");
    assert_eq!(path["remote"], remote.as_str());

    bob.send("alice", "hi alice");
    let got = alice.expect("message");
    assert_eq!(got["from"], "bob");
    assert_eq!(got["data"], "hi alice");

    let relay = rv.expect("relay");
    assert_eq!(relay["from"], "alice");
    assert_eq!(relay["to"], "bob");

    // End of input: alice's queue is delivered, she exits 0 and the relay
    // ends.
    alice.send("bob", "bye");
    alice.end_input();
    assert_eq!(alice.wait_exit(WAIT).code(), Some(0));
    assert_eq!(bob.expect("message")["data"], "bye");
    let end = rv.expect("relay_end");
    assert_eq!(end["channel"], relay["channel"]);
    assert!(end["bytes"].as_u64().unwrap() > 0);
}

/// Over tls:// with certificates from `weft cert`: the rendezvous
/// registers an identity only for a certificate that names it, and the
/// paths between two certified peers run TLS with their certificates, so
/// peers that bind identities to certificates talk over them.
#[test]
fn with_bind_identity_the_rendezvous_registers_only_certified_identities() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let weft = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "weft {args:?}: {out:?}");
    };
    weft(&["cert", "ca", d]);
    for name in ["rv", "alice", "bob", "mallory"] {
        weft(&["cert", "issue", d, name]);
    }
    let file = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let (ca, rv_cert, rv_key) = (file("ca.pem"), file("rv.pem"), file("rv-key.pem"));
    let rv = Weft::start(&[
        "rendezvous",
        "--listen",
        "tls://127.0.0.1:0",
        "--cert",
        &rv_cert,
        "--key",
        &rv_key,
        "--ca",
        &ca,
        "--bind-identity",
    ]);
    let url = rv.next()["listen"][0].as_str().unwrap().to_owned();
    assert!(url.starts_with("tls://"), "{url}");
    let peer = |ident: &str, cert: &str| {
        let (c, k) = (
            file(&format!("{cert}.pem")),
            file(&format!("{cert}-key.pem")),
        );
        Weft::start(&[
            "peer",
            "--ident",
            ident,
            "--cert",
            &c,
            "--key",
            &k,
            "--ca",
            &ca,
            "--server-name",
            "rv",
            "--bind-identity",
            "--rendezvous",
            &url,
        ])
    };

    // mallory's certificate is good, but does not name bob.
    let _mallory = peer("bob", "mallory");
    let refused = rv.expect("refused");
    assert_eq!(refused["ident"], "bob");
    assert_eq!(refused["reason"], "unbound");

    let mut alice = peer("alice", "alice");
    assert_eq!(rv.expect("register")["ident"], "alice");
    let mut bob = peer("bob", "bob");
    let register = rv.expect("register");
    assert_eq!(register["ident"], "bob");
    alice.send("bob", "certified");
    // bob took alice's identity on a path whose certificate names her.
    let connect = bob.expect("connect");
    assert_eq!(connect["ident"], "alice");
    assert_eq!(connect["cert"]["names"][0], "alice", "{connect}");
    let got = bob.expect("message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["data"], "certified");
    assert_eq!(alice.expect("path")["transport"], "tcp");
    bob.send("alice", "back");
    assert_eq!(alice.expect("message")["data"], "back");
}

/// Beside the relay, the peers race direct paths (TCP, and QUIC on a
/// punched UDP socket); when one wins each prints a path event via
/// direct, for the same transport at both ends, and lines keep arriving
/// over it.
#[test]
fn a_direct_path_replaces_the_relay_and_is_reported() {
    let rv = Weft::start(&["rendezvous", "--listen", "tcp://127.0.0.1:0"]);
    let url = rv.next()["listen"][0].as_str().unwrap().to_owned();
    let mut alice = Weft::start(&["peer", "--ident", "alice", "--rendezvous", &url]);
    assert_eq!(alice.next()["event"], "ready");
    let mut bob = Weft::start(&["peer", "--ident", "bob", "--rendezvous", &url]);
    assert_eq!(bob.next()["event"], "ready");
    alice.send("bob", "hello bob");
    // The direct path may win before the message arrives (which then
    // comes over it): a direct path bob reports before the message counts.
    let mut bob_direct = None;
    let mut got = None;
    for _ in 0..32 {
        let event = bob.next();
        if event["event"] == "path" && event["via"] == "direct" {
            bob_direct = Some(event);
        } else if event["event"] == "message" {
            got = Some(event);
            break;
        }
    }
    assert_eq!(got.expect("the message")["data"], "hello bob");
    let mut transports = Vec::new();
    for (peer, seen) in [(&alice, None), (&bob, bob_direct)] {
        let path = seen.unwrap_or_else(|| {
            (0..8)
                .map(|_| peer.expect("path"))
                .find(|path| path["via"] == "direct")
                .expect("a direct path among the first paths")
        });
        let remote: std::net::SocketAddr = path["remote"].as_str().unwrap().parse().unwrap();
        assert_ne!(remote.port(), 0);
        transports.push(path["transport"].clone());
    }
    // TCP usually wins on loopback (host addresses are dialled at once,
    // punching begins 100 ms later), but whichever wins, both ends are on
    // the same direct path.
    assert_eq!(transports[0], transports[1], "{transports:?}");
    assert!(
        transports[0] == "tcp" || transports[0] == "quic",
        "{transports:?}"
    );
    bob.send("alice", "hi alice");
    assert_eq!(alice.expect("message")["data"], "hi alice");
    alice.end_input();
    assert_eq!(alice.wait_exit(WAIT).code(), Some(0));
}
