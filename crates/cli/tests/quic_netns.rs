//! Root only: two `weft peer` processes over quic:// in two network
//! namespaces this test creates and deletes, joined by a veth pair on
//! which each side drops 5% of what it receives (nftables `numgen random`;
//! this kernel has no `tc netem`):
//!
//! ```text
//!  weft-cli-<pid>-<tag>-a             weft-cli-<pid>-<tag>-b
//!  wa0 192.0.2.1/24  <===== veth =====>  wb0 192.0.2.2/24
//!  alice: --listen quic://192.0.2.1:0    bob: --connect quic://192.0.2.1:PORT
//!  input: 5% dropped                     input: 5% dropped
//! ```
//!
//! bob sends alice 5,000 messages; all arrive once each and in order. In
//! the second test the path is cut both ways for 2 s mid-stream (an
//! nftables drop-all rule on each side) and restored: nothing is lost and
//! nothing duplicated, and bob exits 0 (everything acknowledged). QUIC
//! rides such a cut out on its own (its idle timeout is 30 s); in the third
//! test bob's is 1 s (`--quic-idle-timeout 1`), so the cut kills the
//! connection, bob reconnects and resends what alice had not acknowledged,
//! and alice drops what she already had: still once each and in order. Each run
//! prints what it measured: its time, the packets the loss rule dropped,
//! and bob's reconnects (alice's `connect` events past the first).
//!
//! Without root, `ip netns` or nft, each test says loudly that it was
//! skipped, and passes.

#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

mod common;
use common::netns::{VethPair, peer_in, skip, unusable};
use common::{Weft, certificates};

const COUNT: usize = 5_000;
/// Each side's loss, in percent.
const LOSS: u32 = 5;
/// How long the path is cut.
const CUT: Duration = Duration::from_secs(2);
/// The bound on all of one run's messages arriving.
const DELIVERY: Duration = Duration::from_secs(25);

/// What alice saw of bob.
#[derive(Default)]
struct Received {
    /// The next message's number.
    next: usize,
    uuids: HashSet<String>,
    connects: usize,
    disconnects: usize,
}

impl Received {
    /// Reads alice's events until `until` of bob's messages have arrived,
    /// each the next in order and never seen before, by `deadline`.
    fn read(&mut self, alice: &Weft, until: usize, deadline: Instant) {
        while self.next < until {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = alice.event_within(left) else {
                panic!("only {} of {until} messages arrived in time", self.next);
            };
            self.take(&event);
        }
    }

    fn take(&mut self, event: &serde_json::Value) {
        match event["event"].as_str() {
            Some("message") => {
                assert_eq!(event["from"], "bob", "{event}");
                let uuid = event["uuid"].as_str().unwrap().to_owned();
                assert!(self.uuids.insert(uuid), "delivered twice: {event}");
                let want = format!("m{}", self.next);
                assert_eq!(event["data"].as_str(), Some(want.as_str()), "out of order");
                self.next += 1;
            }
            Some("connect") => self.connects += 1,
            Some("disconnect") => self.disconnects += 1,
            _ => {}
        }
    }
}

/// How the path is cut.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Not at all.
    Never,
    /// For [`CUT`], which QUIC rides out.
    RiddenOut,
    /// For [`CUT`], with bob's QUIC idle timeout shorter than that: the
    /// connection dies and bob reconnects.
    Reconnecting,
}

/// Runs the lab: with a cut, the path is cut for [`CUT`] once a fifth of
/// the messages arrived, while bob still has the later ones to send.
fn run(tag: &str, cut: Cut) {
    let name = format!("quic_netns::{tag}");
    if let Some(why) = unusable() {
        skip(&name, &why);
        return;
    }
    let pair = match VethPair::create(tag) {
        Ok(pair) => pair,
        Err(e) => {
            skip(&name, &format!("building the namespaces failed: {e}"));
            return;
        }
    };
    pair.set_loss(LOSS).expect("loss rules");
    let dir = certificates(&["alice", "bob"]);

    let listen = format!("quic://{}:0", VethPair::A_IP);
    let alice = peer_in(&pair.a, dir.path(), "alice", &["--listen", &listen]);
    let url = alice.expect("ready")["listen"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut received = Received::default();
    let mut bob_args = vec![
        "--connect",
        &url,
        "--server-name",
        "alice",
        "--linger",
        "20",
    ];
    if cut == Cut::Reconnecting {
        bob_args.extend(["--quic-idle-timeout", "1"]);
    }
    let mut bob = peer_in(&pair.b, dir.path(), "bob", &bob_args);
    assert_eq!(bob.expect("connect")["ident"], "alice");

    let start = Instant::now();
    let deadline = start + DELIVERY;
    let mut cut_at = None;
    if cut != Cut::Never {
        // The second half is written while the path is down, so it waits
        // in bob's queue with whatever was in flight when the cut came.
        let half = COUNT / 2;
        for i in 0..half {
            bob.send("alice", &format!("m{i}"));
        }
        received.read(&alice, COUNT / 5, deadline);
        pair.set_cut(true).expect("cutting the path");
        let at = Instant::now();
        for i in half..COUNT {
            bob.send("alice", &format!("m{i}"));
        }
        // The cut's length is the scenario, not a wait for something.
        std::thread::sleep(CUT.saturating_sub(at.elapsed()));
        pair.set_cut(false).expect("restoring the path");
        cut_at = Some((at - start, received.next));
    } else {
        for i in 0..COUNT {
            bob.send("alice", &format!("m{i}"));
        }
    }
    received.read(&alice, COUNT, deadline);
    let took = start.elapsed();

    // bob exits 0 only once alice acknowledged all it accepted, so
    // alice has had everything bob ever sent; what she prints past that
    // would be a duplicate. Her disconnect event is no signal to wait for:
    // the loss may eat bob's CONNECTION_CLOSE, and she then notices only
    // at her idle timeout.
    bob.end_input();
    assert_eq!(bob.wait_exit(Duration::from_secs(25)).code(), Some(0));
    let until = Instant::now() + Duration::from_secs(5);
    while let Some(event) = alice.event_within(Duration::from_millis(300)) {
        assert!(Instant::now() < until, "alice keeps printing");
        received.take(&event);
    }
    assert_eq!(received.next, COUNT, "nothing past the last message");
    let (sent, dropped) = pair.loss_counters().expect("nft counters");
    eprintln!(
        "{name}: {COUNT} messages once each and in order in {:.2} s; \
         loss rule dropped {dropped} of {sent} packets; \
         reconnects: {}; cut: {cut_at:?} (at, messages arrived by then)",
        took.as_secs_f64(),
        received.connects - 1,
    );
    assert!(dropped > 0, "the loss rule dropped nothing");
    if cut == Cut::Reconnecting {
        assert!(received.connects > 1, "the cut did not end the connection");
    }
    drop(alice);
    drop(pair);
}

#[test]
fn five_thousand_messages_over_lossy_quic_arrive_once_and_in_order() {
    run("loss", Cut::Never);
}

#[test]
fn a_two_second_cut_mid_stream_loses_and_duplicates_nothing() {
    run("cut", Cut::RiddenOut);
}

#[test]
fn a_cut_longer_than_the_idle_timeout_reconnects_and_loses_and_duplicates_nothing() {
    run("reconnect", Cut::Reconnecting);
}
