//! Two hundred participants in one process, on loopback: past the full
//! mesh's size, each keeps a bounded set of streams and routes the rest.
//! Beacons go to 127.255.255.255 on a port of the test's own, so nothing
//! leaves the host.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};
use weft_participant::{Participant, ParticipantConfig, TopicFilter};

use common::free_port;

/// Participants started.
const N: usize = 200;
/// Of them, how many host a subscriber (the first ones after the
/// publisher's).
const SUBSCRIBERS: usize = 20;
/// How long the test waits, from the first start to delivery everywhere,
/// before it fails: a bound on a hang, three times the 10 s that the bench
/// row `participants: 200 to full delivery` holds a release build to
/// (benches measure, tests assert; a debug build on a loaded machine is
/// slower).
const WITHIN: Duration = Duration::from_secs(30);

/// How many other participants `p` knows: heard in beacons, or reached
/// through its neighbours.
fn known_of(p: &Participant) -> usize {
    let mut known: BTreeSet<String> = p.peers().into_iter().map(|i| i.identity).collect();
    known.extend(p.routes().into_iter().map(|r| r.destination));
    known.remove(p.identity().as_str());
    known.len()
}

/// The routing counters of the group, summed, for a failure's message.
fn routing_counts(ps: &[Participant]) -> String {
    let (mut routed_in, mut routed_on, mut duplicate, mut unrouted) = (0, 0, 0, 0);
    for p in ps {
        let s = p.stats();
        routed_in += s.publications_routed_in;
        routed_on += s.publications_routed_on;
        duplicate += s.publications_duplicate;
        unrouted += s.publications_unrouted;
    }
    format!(
        "publications routed in {routed_in}, routed on {routed_on}, duplicate {duplicate}, \
         unrouted {unrouted}"
    )
}

/// Raises this process's open-file limit to its hard limit: 200
/// participants hold about 4,000 sockets, past the usual soft limit of
/// 1,024. Returns the limit now in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct
    // passed, which lives across both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_participants_reach_full_membership_and_deliver_with_bounded_streams() {
    let fds = raise_fd_limit();
    if fds < 8192 {
        eprintln!("!!! SKIPPED: 200 participants need about 4,000 open files; the limit is {fds}");
        return;
    }
    let port = free_port();
    let begin = Instant::now();
    let mut ps = Vec::with_capacity(N);
    for i in 0..N {
        let config = ParticipantConfig::loopback(port).with_identity(format!("s{i}"));
        ps.push(Participant::start(config).await.unwrap());
    }
    let max_streams = ParticipantConfig::default().max_streams;
    let subscribers: Vec<_> = ps[1..=SUBSCRIBERS]
        .iter()
        .map(|p| p.subscriber(TopicFilter::Prefix("scale.".into())))
        .collect();
    let publisher = ps[0].publisher("scale.news").unwrap();

    // Full membership: every participant knows every other, from its
    // beacons or as an identity it has a route to through the overlay; and
    // the publisher has heard of every subscriber, most of them through
    // other participants.
    let deadline = begin + WITHIN;
    loop {
        let known = ps.iter().map(known_of).min().unwrap();
        let heard = publisher.subscribers().len();
        if known == N - 1 && heard == SUBSCRIBERS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {:?}: the least informed participant knows {known} of {} others; the \
             publisher heard of {heard} of {SUBSCRIBERS} subscribers",
            begin.elapsed(),
            N - 1
        );
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(publisher.publish("hello").unwrap(), SUBSCRIBERS);
    for (k, s) in subscribers.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(got) = timeout(left, s.recv(None)).await else {
            panic!(
                "subscriber {k} got nothing within {WITHIN:?}; {}",
                routing_counts(&ps)
            );
        };
        let got = got.unwrap();
        assert_eq!((&*got.topic, &got.data[..]), ("scale.news", &b"hello"[..]));
    }
    let delivered = begin.elapsed();
    // Bounded degree, and each publication once.
    for (i, p) in ps.iter().enumerate() {
        let streams = p.connected().len();
        assert!(
            (1..=max_streams).contains(&streams),
            "participant {i} holds {streams} streams (at most {max_streams})"
        );
    }
    for s in &subscribers {
        assert!(s.try_recv().is_none(), "a second copy");
    }
    eprintln!("{N} participants: membership and delivery in {delivered:?}");
    let mut closing = tokio::task::JoinSet::new();
    for p in ps {
        closing.spawn(async move { p.abort().await });
    }
    while closing.join_next().await.is_some() {}
}
