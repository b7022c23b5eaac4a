//! 10,000 SUBSCRIBE frames from one connection (issue 16): the filters a
//! peer may have are bounded, so the process's memory stays far below
//! 64 MiB and another client keeps exchanging messages (each round trip
//! within 5 s, their median within 1 s). Alone
//! in its test binary: it measures the process's resident memory.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_messaging::Messaging;
use weft_messaging::internal::frame::{FilterKind, Frame, caps};

mod common;
use common::{ANSWERED, config, id, round_trip, until};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn packet(frame: &Frame) -> Vec<u8> {
    let (head, body) = frame.encode();
    let frame = [head.as_slice(), &body].concat();
    let mut packet = (frame.len() as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&frame);
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscribe_frames_keep_memory_bounded_and_others_served() {
    const FRAMES: usize = 10_000;
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let at = a.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::new(id("b"), config()).await.unwrap();
    b.link().connect(&at).unwrap();
    round_trip(&a, &b, 0).await;
    let before = rss();

    // The attack the issue measured: short regexes whose compiled programs
    // are large (Unicode classes, repeated), each different.
    let mut s = TcpStream::connect(at.socket_addr().unwrap()).await.unwrap();
    let mut hello = packet(&Frame::Version(1));
    hello.extend(packet(&Frame::Hello {
        version: 1,
        capabilities: caps::ACKS | caps::PUBSUB,
    }));
    hello.extend(packet(&Frame::Ident(id("mallory"))));
    s.write_all(&hello).await.unwrap();
    let flood: Vec<u8> = (0..FRAMES)
        .flat_map(|i| {
            let filter = format!(r"\w{{{}}}[a-z]{}", 2 + i % 30, i);
            packet(&Frame::Subscribe(FilterKind::Regex, filter))
        })
        .collect();
    let writer = tokio::spawn(async move {
        s.write_all(&flood).await.unwrap();
        s
    });
    // Publications make every kept regex match (and fill its caches).
    let mut rounds = Vec::new();
    for n in 1..=5 {
        for t in 0..20 {
            a.publish(&format!("topic.{t}.{}", "word".repeat(t)), b"x")
                .unwrap();
        }
        rounds.push(round_trip(&a, &b, n).await);
    }
    let _s = writer.await.unwrap();
    until("every SUBSCRIBE to be handled", || {
        let st = a.stats();
        st.filters_refused + st.regexes_refused >= (FRAMES - 16) as u64
    })
    .await;
    for t in 0..200 {
        a.publish(&format!("topic.{t}.{}", "word".repeat(t % 50)), b"x")
            .unwrap();
    }
    rounds.push(round_trip(&a, &b, 6).await);
    rounds.sort();
    assert!(
        rounds[rounds.len() / 2] < ANSWERED,
        "b was served slowly during the flood: {rounds:?}"
    );

    let added = rss().saturating_sub(before);
    let st = a.stats();
    assert!(
        added < 16 << 20,
        "the flood added {} KiB (filters refused {}, regexes refused {})",
        added >> 10,
        st.filters_refused,
        st.regexes_refused
    );
    until("mallory to be counted", || a.is_connected(&id("mallory"))).await;
}
