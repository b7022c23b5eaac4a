//! One publisher and ten subscribers, each its own participant, on
//! loopback with the default beacon timing (as the fan-out bench row):
//! all of them see each other, so every publication reaches every
//! subscriber as a PUBLISH message, once and in order, and none is routed
//! through another participant, even while the mesh forms.

mod common;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use weft_participant::{Participant, ParticipantConfig, Subscriber, TopicFilter};

use common::free_port;

const SUBSCRIBERS: usize = 10;

/// Numbered publications, after the subscribers were all reached.
const COUNT: u32 = 3_000;

/// The first payload byte: a probe sent until every subscriber is
/// reached, or a numbered publication.
const PROBE: u8 = 0;
const NUMBERED: u8 = 1;

fn payload(marker: u8, seq: u32) -> [u8; 5] {
    let mut p = [marker, 0, 0, 0, 0];
    p[1..].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The numbered publications `sub` receives until the last one, in the
/// order they came.
async fn numbered(sub: Subscriber) -> (Vec<u32>, Subscriber) {
    let mut seqs = Vec::new();
    let mut batch = Vec::new();
    while seqs.last() != Some(&(COUNT - 1)) {
        sub.recv_many(&mut batch, 256, Some(Duration::from_secs(10)))
            .await
            .expect("publications keep coming");
        for p in batch.drain(..) {
            assert_eq!(p.from.as_str(), "fan-pub");
            if p.data[0] == NUMBERED {
                seqs.push(u32::from_be_bytes(p.data[1..5].try_into().unwrap()));
            }
        }
    }
    (seqs, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_subscribers_in_a_full_mesh_get_every_publication_once_in_order_none_routed() {
    let port = free_port();
    let config = |name: String| ParticipantConfig::loopback(port).with_identity(name);
    let mut subscribers = Vec::new();
    let mut drains = JoinSet::new();
    for i in 0..SUBSCRIBERS {
        let p = Participant::start(config(format!("fan-sub-{i}")))
            .await
            .unwrap();
        drains.spawn(numbered(p.subscriber(TopicFilter::Prefix("bench.".into()))));
        subscribers.push(p);
    }
    // Started last, as in the bench: the others may tell it of a
    // subscriber before that subscriber's own beacon reaches it.
    let p = Participant::start(config("fan-pub".into())).await.unwrap();
    let publisher = p.publisher("bench.fanout").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reached = Vec::new();
    loop {
        let n = publisher.publish(payload(PROBE, 0)).unwrap();
        reached.push(n);
        if n == SUBSCRIBERS {
            break;
        }
        assert!(Instant::now() < deadline, "not every subscriber reached");
        sleep(Duration::from_millis(1)).await;
    }
    assert!(reached.iter().all(|&n| n <= SUBSCRIBERS), "{reached:?}");
    for seq in 0..COUNT {
        let n = publisher.publish(payload(NUMBERED, seq)).unwrap();
        assert_eq!(n, SUBSCRIBERS, "publication {seq} reached {n}");
        if seq % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    while let Some(done) = drains.join_next().await {
        let (seqs, sub) = done.unwrap();
        let name = sub.participant().identity().to_string();
        assert_eq!(
            seqs,
            (0..COUNT).collect::<Vec<_>>(),
            "{name}: once each, in order"
        );
        assert_eq!(sub.dropped(), 0, "{name}");
        let stats = sub.participant().stats();
        assert_eq!(stats.publications_routed_in, 0, "{name}: nothing routed");
        assert_eq!(stats.messaging.dropped, 0, "{name}");
    }
    let stats = p.stats();
    assert_eq!(
        stats.publications_routed_on, 0,
        "the publisher routed nothing"
    );
    assert_eq!(stats.messaging.dropped, 0);
    for s in subscribers {
        s.close().await;
    }
    p.close().await;
}
