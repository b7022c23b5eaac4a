//! A line a - m - c on loopback (unicast beacons: a and c beacon to m
//! only, m to both), once the line is up and discovery has nothing new to
//! tell: c's subscription reaches a through m. Nothing but c's control
//! message wakes m then (no beacon event, no timer of its own), so this
//! holds only if a run of control messages that schedules work for later
//! (m's advertisement batch, a's grace for a subscriber learned through
//! others) wakes the participant's task to wait for it.

mod common;

use std::time::Duration;

use weft_participant::{Participant, ParticipantConfig, TopicFilter};

use common::{eventually, free_port};

/// A participant beaconing from `port` to the loopback ports `to` only.
fn unicast(name: &str, port: u16, to: &[u16]) -> ParticipantConfig {
    ParticipantConfig::loopback(port)
        .with_identity(name)
        .beaconing_to(to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_crosses_a_quiet_participant_without_a_beacon_to_wake_it() {
    let (pa, pm, pc) = (free_port(), free_port(), free_port());
    let m = Participant::start(unicast("line-m", pm, &[pa, pc]))
        .await
        .unwrap();
    let a = Participant::start(unicast("line-a", pa, &[pm]))
        .await
        .unwrap();
    let c = Participant::start(unicast("line-c", pc, &[pm]))
        .await
        .unwrap();
    let within = Duration::from_secs(10);
    eventually(within, "the line a - m - c", || {
        m.connected().len() == 2 && a.connected().len() == 1 && c.connected().len() == 1
    })
    .await;
    assert!(a.subscribers_of("news").is_empty());

    let _sub = c.subscriber(TopicFilter::Prefix("news".into()));
    // The grace for a subscriber learned through others is one beacon
    // interval (1 s by default); m and a wake for it or never.
    eventually(Duration::from_secs(5), "c's subscription at a", || {
        a.subscribers_of("news")
            .iter()
            .any(|s| s.as_str() == "line-c")
    })
    .await;
    let publisher = a.publisher("news").unwrap();
    assert_eq!(publisher.publish(&b"hi"[..]).unwrap(), 1);
    for p in [a, m, c] {
        p.close().await;
    }
}
