//! Participants in one process, on loopback: beacons to 127.255.255.255 on
//! a port of each test's own (or unicast between ports of their own), so
//! nothing leaves the host and concurrent tests do not meet.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::{Instant, timeout};
use weft_participant::{
    GoneReason, Participant, ParticipantConfig, ParticipantEvent, ParticipantEvents, TopicFilter,
};

use common::{eventually, free_port};

async fn next_event<T>(
    events: &mut ParticipantEvents,
    within: Duration,
    mut f: impl FnMut(&ParticipantEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(e)) => {
                if let Some(t) = f(&e) {
                    return t;
                }
            }
            Ok(None) => panic!("participant stopped"),
            Err(_) => panic!("no matching event within {within:?}"),
        }
    }
}

fn fast(port: u16, name: &str) -> ParticipantConfig {
    let mut c = ParticipantConfig::loopback(port).with_identity(name);
    c.discovery.lease = Duration::from_millis(1200);
    c.discovery.interval = Duration::from_millis(300);
    c
}

/// Participants a, b and c in a line, each [`fast`]: a sees b, b sees a
/// and c, c sees b; a never sees c (each beacons to its neighbours only).
async fn line() -> (Participant, Participant, Participant) {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let start =
        |name: &str, port: u16, to: &[u16]| Participant::start(fast(port, name).beaconing_to(to));
    let a = start("a", pa, &[pb]).await.unwrap();
    let b = start("b", pb, &[pa, pc]).await.unwrap();
    let c = start("c", pc, &[pb]).await.unwrap();
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_participants_form_a_full_mesh_and_publishers_reach_subscribers() {
    let port = free_port();
    let start = Instant::now();
    let mut ps = Vec::new();
    for i in 0..5 {
        let config = ParticipantConfig::loopback(port).with_identity(format!("p{i}"));
        ps.push(Participant::start(config).await.unwrap());
    }
    eventually(Duration::from_secs(3), "a full mesh", || {
        ps.iter()
            .all(|p| p.connected().len() == 4 && p.peers().len() == 4)
    })
    .await;
    let mesh_after = start.elapsed();
    // Exactly one stream per pair: 10 pairs, 20 stream ends.
    let ends: usize = ps
        .iter()
        .map(|p| p.messaging().link().connections().len())
        .sum();
    assert_eq!(ends, 20, "one stream per pair");
    for p in &ps {
        let names: BTreeSet<String> = p.connected().iter().map(|i| i.to_string()).collect();
        assert!(!names.contains(p.identity().as_str()));
        assert_eq!(p.peers().len(), 4);
    }
    eprintln!("full mesh of 5 after {mesh_after:?}");

    // Subscribers on p1..p4 (prefixes and a regex); p0 publishes.
    let subs = [
        ps[1].subscriber(TopicFilter::Prefix("sensors.".into())),
        ps[2].subscriber(TopicFilter::Prefix("sensors.temp".into())),
        ps[3].subscriber(TopicFilter::Regex(
            regex::Regex::new(r"^sensors\.[a-z]+$").unwrap(),
        )),
        ps[4].subscriber(TopicFilter::Prefix("other.".into())),
    ];
    let publisher = ps[0].publisher("sensors.temp").unwrap();
    eventually(Duration::from_secs(3), "three subscribers known", || {
        publisher.subscribers().len() == 3
    })
    .await;
    // Messaging's own interest (SUBSCRIBE frames) arrives with the lists.
    eventually(Duration::from_secs(3), "three copies", || {
        let n = publisher.publish("probe").unwrap();
        assert!(n <= 3, "only matching participants get a copy");
        n == 3
    })
    .await;
    for s in &subs[..3] {
        let got = s.recv(Some(Duration::from_secs(3))).await.unwrap();
        assert_eq!(&*got.topic, "sensors.temp");
        assert_eq!(got.from.as_str(), "p0");
    }

    // The lists: p1 knows p0 publishes sensors.temp, and who subscribes.
    let p0 = ps[1]
        .peers()
        .into_iter()
        .find(|p| p.identity == "p0")
        .unwrap();
    assert_eq!(p0.publishers, ["sensors.temp"]);
    assert!(p0.connected);
    let p4 = ps[1]
        .peers()
        .into_iter()
        .find(|p| p.identity == "p4")
        .unwrap();
    assert_eq!(p4.subscribers[0].text, "other.");

    // p4 subscribes to other topics: the first publication it gets is one
    // of those, sent after the probes on the same stream.
    let other = ps[0].publisher("other.marker").unwrap();
    eventually(Duration::from_secs(3), "p4's interest known", || {
        other.publish("marker").unwrap() == 1
    })
    .await;
    let got = subs[3].recv(Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(&*got.topic, "other.marker", "p4 subscribes to other topics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_travel_as_they_change() {
    let port = free_port();
    let a = Participant::start(fast(port, "a")).await.unwrap();
    let mut events = a.events();
    let b = Participant::start(fast(port, "b")).await.unwrap();
    // Made before the streams are up: travels in the first exchange.
    let early = b.publisher("early").unwrap();
    next_event(&mut events, Duration::from_secs(3), |e| match e {
        ParticipantEvent::PublisherAdded { participant, topic }
            if participant.as_str() == "b" && topic == "early" =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // Made later: travels as it happens.
    let sub = b.subscriber(TopicFilter::Prefix("x".into()));
    next_event(&mut events, Duration::from_secs(3), |e| match e {
        ParticipantEvent::SubscriberAdded {
            participant,
            filter,
        } if participant.as_str() == "b" && filter.text == "x" => Some(()),
        _ => None,
    })
    .await;
    drop(sub);
    next_event(&mut events, Duration::from_secs(3), |e| match e {
        ParticipantEvent::SubscriberRemoved { filter, .. } if filter.text == "x" => Some(()),
        _ => None,
    })
    .await;
    drop(early);
    next_event(&mut events, Duration::from_secs(3), |e| match e {
        ParticipantEvent::PublisherRemoved { topic, .. } if topic == "early" => Some(()),
        _ => None,
    })
    .await;
    assert!(a.subscribers_of("xyz").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_takes_publications_many_at_once_in_order() {
    let port = free_port();
    let a = Participant::start(fast(port, "a")).await.unwrap();
    let b = Participant::start(fast(port, "b")).await.unwrap();
    let sub = b.subscriber(TopicFilter::Prefix("n.".into()));
    let publisher = a.publisher("n.seq").unwrap();
    eventually(Duration::from_secs(3), "b's interest at a", || {
        publisher.publish("probe").unwrap() == 1
    })
    .await;
    for n in 0..50u32 {
        assert_eq!(publisher.publish(n.to_be_bytes()).unwrap(), 1);
    }
    let mut got = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let took = sub
            .recv_many(&mut got, 16, Some(Duration::from_secs(3)))
            .await
            .expect("the publications arrive");
        assert!((1..=16).contains(&took), "took {took}, at most 16 asked");
        for p in got.drain(..) {
            assert_eq!((&*p.topic, p.from.as_str()), ("n.seq", "a"));
            if let Ok(n) = <[u8; 4]>::try_from(&p.data[..]) {
                seen.push(u32::from_be_bytes(n));
            }
        }
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>(), "all, in order");
    assert_eq!(sub.try_recv_many(&mut got, 16), 0, "nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_flooded_with_regex_subscribers_keeps_the_bound_and_still_delivers() {
    let port = free_port();
    let a = Participant::start(fast(port, "a")).await.unwrap();
    let b = Participant::start(fast(port, "b")).await.unwrap();
    eventually(Duration::from_secs(3), "a stream between a and b", || {
        a.connected().len() == 1 && b.connected().len() == 1
    })
    .await;
    // 500 regex subscribers on b, each announced to a as it is made; then
    // one prefix subscriber.
    let flood: Vec<_> = (0..500)
        .map(|i| {
            let re = regex::Regex::new(&format!(r"^flood{i}\.[a-z]+$")).unwrap();
            b.subscriber(TopicFilter::Regex(re))
        })
        .collect();
    let sub = b.subscriber(TopicFilter::Prefix("n.".into()));
    let regexes = ParticipantConfig::default()
        .messaging
        .max_peer_regex_filters;
    eventually(
        Duration::from_secs(5),
        "the excess refused and counted",
        || a.stats().filters_refused == (500 - regexes) as u64,
    )
    .await;
    let kept = a
        .peers()
        .into_iter()
        .find(|p| p.identity == "b")
        .expect("a knows b")
        .subscribers;
    assert_eq!(kept.iter().filter(|f| f.regex).count(), regexes);
    assert_eq!(a.stats().regexes_refused, 0);

    let publisher = a.publisher("n.x").unwrap();
    eventually(Duration::from_secs(3), "b's prefix interest at a", || {
        publisher.publish("probe").unwrap() == 1
    })
    .await;
    let got = sub.recv(Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!((&*got.topic, got.from.as_str()), ("n.x", "a"));
    // The first regexes, announced first, are the ones kept.
    assert_eq!(a.subscribers_of("flood0.x"), vec![b.identity().clone()]);
    assert!(a.subscribers_of("flood499.x").is_empty());
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_participant_is_gone_within_its_lease_with_its_interest() {
    let port = free_port();
    let a = Participant::start(fast(port, "a")).await.unwrap();
    let mut events = a.events();
    let b = Participant::start(fast(port, "b")).await.unwrap();
    let _sub = b.subscriber(TopicFilter::Prefix("t".into()));
    let publisher = a.publisher("t").unwrap();
    assert!(publisher.wait_for_subscribers(Duration::from_secs(3)).await);

    // Dies without a goodbye.
    b.abort().await;
    let stopped = Instant::now();
    let (reason, took) = next_event(&mut events, Duration::from_secs(3), |e| match e {
        ParticipantEvent::Gone {
            identity, reason, ..
        } if identity == "b" => Some((*reason, stopped.elapsed())),
        _ => None,
    })
    .await;
    assert_eq!(reason, GoneReason::LeaseExpired);
    assert!(
        took <= Duration::from_millis(1200 + 300),
        "gone after {took:?}"
    );
    assert!(
        publisher.subscribers().is_empty(),
        "its interest is dropped"
    );
    assert_eq!(publisher.publish("x").unwrap(), 0, "nobody to send to");
    assert!(a.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_seen_as_a_new_incarnation() {
    let port = free_port();
    let watcher = Participant::start(fast(port, "watcher")).await.unwrap();
    let mut events = watcher.events();
    // A lease long enough that the restart (closing streams included)
    // happens within it, even on a loaded machine.
    let phoenix = || {
        let mut c = fast(port, "phoenix");
        c.discovery.lease = Duration::from_secs(30);
        c
    };
    let first = Participant::start(phoenix()).await.unwrap();
    let id = first.id();
    next_event(&mut events, Duration::from_secs(10), |e| match e {
        ParticipantEvent::Found { id: found, .. } if *found == id => Some(()),
        _ => None,
    })
    .await;
    let old = watcher
        .peers()
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
        .incarnation;
    first.abort().await;
    drop(first);

    let mut config = phoenix();
    config.id = Some(id);
    let second = Participant::start(config).await.unwrap();
    let new = next_event(&mut events, Duration::from_secs(10), |e| match e {
        ParticipantEvent::Restarted {
            id: r, incarnation, ..
        } if *r == id => Some(*incarnation),
        _ => None,
    })
    .await;
    assert!(new > old);
    // The new incarnation gets a stream and publications.
    let sub = second.subscriber(TopicFilter::Prefix("".into()));
    let publisher = watcher.publisher("again").unwrap();
    eventually(
        Duration::from_secs(10),
        "a copy for the new incarnation",
        || publisher.publish("hi").unwrap() == 1,
    )
    .await;
    let got = sub.recv(Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(&got.data[..], b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_an_identity_out_of_sight_goes_through_a_broker() {
    let (a, b, c) = line().await;
    // Routes are told in batches: each way in its own time.
    eventually(Duration::from_secs(5), "routes between a and c", || {
        let reaches = |p: &Participant, to: &str| {
            p.routes()
                .iter()
                .any(|r| r.destination == to && r.next_hop == "b" && r.hops == 2)
        };
        reaches(&a, "c") && reaches(&c, "a")
    })
    .await;
    let a_sees: Vec<String> = a.connected().iter().map(|i| i.to_string()).collect();
    assert_eq!(a_sees, ["b"], "a has no stream to c");
    assert!(a.peers().iter().all(|p| p.identity != "c"));

    a.send_to("c", "through b").unwrap();
    let got = c.recv_direct(Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(
        (got.from.as_str(), &got.data[..], got.hops),
        ("a", &b"through b"[..], 1)
    );
    assert_eq!(b.stats().routed_forwarded, 1);
    // And back.
    c.send_to("a", "reply").unwrap();
    let got = a.recv_direct(Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(got.from, "c");
    // Nobody reaches an unknown identity.
    assert!(a.send_to("nobody", "x").is_err());
    // When c goes, the route goes.
    c.close().await;
    eventually(Duration::from_secs(5), "the route to c withdrawn", || {
        a.routes().iter().all(|r| r.destination != "c")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_cross_a_participant_to_a_subscriber_out_of_sight() {
    let (a, b, c) = line().await;
    let news = c.subscriber(TopicFilter::Prefix("news".into()));
    let publisher = a.publisher("news.today").unwrap();
    // a learns of c's subscriber through b.
    assert!(publisher.wait_for_subscribers(Duration::from_secs(5)).await);
    let subscribers: Vec<String> = publisher
        .subscribers()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(subscribers, ["c"]);
    let a_sees: Vec<String> = a.connected().iter().map(|i| i.to_string()).collect();
    assert_eq!(a_sees, ["b"], "a has no stream to c");

    for k in 0..100u32 {
        assert_eq!(publisher.publish(k.to_be_bytes()).unwrap(), 1);
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        news.recv_many(&mut got, 100, Some(Duration::from_secs(3)))
            .await
            .unwrap();
    }
    let seqs: Vec<u32> = got
        .iter()
        .map(|p| {
            assert_eq!((&*p.topic, p.from.as_str()), ("news.today", "a"));
            u32::from_be_bytes(p.data[..].try_into().unwrap())
        })
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>(), "once each, in order");
    assert!(news.try_recv().is_none());
    assert_eq!(b.stats().publications_routed_on, 100);
    assert_eq!(c.stats().publications_routed_in, 100);
    assert_eq!(c.stats().publications_duplicate, 0);

    // c's subscriber gone: a's publisher hears of it, and sends nothing.
    drop(news);
    eventually(Duration::from_secs(5), "the interest withdrawn", || {
        publisher.subscribers().is_empty()
    })
    .await;
    assert_eq!(publisher.publish("x").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_group_key_only_members_become_neighbours() {
    let port = free_port();
    let member = |name: &str, key: u8| {
        let mut c = fast(port, name);
        c.group_key = Some(weft_participant::GroupKey::new([key; 32]).unwrap());
        c.handshake_timeout = Duration::from_millis(300);
        c
    };
    let a = Participant::start(member("a", 1)).await.unwrap();
    let b = Participant::start(member("b", 1)).await.unwrap();
    // Another group, and someone with no key at all (it reads the
    // members' beacons and dials them, but cannot prove it is a member).
    let other = Participant::start(member("other", 2)).await.unwrap();
    // The lowest id: it dials the members it hears of.
    let mut config = fast(port, "keyless");
    config.id = Some(weft_participant::ParticipantId([0; 16]));
    let keyless = Participant::start(config).await.unwrap();

    let news = b.subscriber(TopicFilter::Prefix("news".into()));
    let publisher = a.publisher("news.today").unwrap();
    assert!(publisher.wait_for_subscribers(Duration::from_secs(5)).await);
    publisher.publish("hello").unwrap();
    let got = news.recv(Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!(&got.data[..], b"hello");

    eventually(Duration::from_secs(5), "the keyless stream refused", || {
        a.stats().streams_refused + b.stats().streams_refused >= 1
    })
    .await;
    eventually(
        Duration::from_secs(3),
        "the other group's beacons dropped",
        || a.stats().discovery.unauthenticated > 0,
    )
    .await;
    for p in [&a, &b] {
        let neighbours: Vec<String> = p.connected().iter().map(|i| i.to_string()).collect();
        assert_eq!(neighbours.len(), 1, "{neighbours:?}");
        assert!(p.peers().iter().all(|q| q.identity != "other"));
    }
    assert!(other.connected().is_empty());
    for p in [a, b, other, keyless] {
        p.close().await;
    }
}
