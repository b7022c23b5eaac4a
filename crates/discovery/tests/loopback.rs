//! Discovery on the loopback interface: beacons to 127.255.255.255 on a
//! port of each test's own, so nothing leaves the host and tests running
//! at the same time do not hear each other.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tokio::time::{Instant, timeout};
use weft_discovery::beacon::Beacon;
use weft_discovery::{
    BeaconTarget, Discovery, DiscoveryConfig, DiscoveryEvent, DiscoveryEvents, GoneReason,
    LocalParticipant,
};

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fast(port: u16) -> DiscoveryConfig {
    let mut c = DiscoveryConfig::loopback(port);
    c.lease = Duration::from_millis(1200);
    c.interval = Duration::from_millis(300);
    c
}

fn locator(port: u16) -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], port))]
}

/// The next event matching `f`, within `within`.
async fn wait_for<T>(
    events: &mut DiscoveryEvents,
    within: Duration,
    mut f: impl FnMut(&DiscoveryEvent) -> Option<T>,
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
            Ok(None) => panic!("discovery stopped"),
            Err(_) => panic!("no matching event within {within:?}"),
        }
    }
}

#[tokio::test]
async fn five_participants_see_each_other_within_two_seconds() {
    let port = free_port();
    let start = Instant::now();
    let mut all = Vec::new();
    for i in 0..5u16 {
        let local = LocalParticipant::new(format!("p{i}"), locator(4000 + i));
        all.push(Discovery::start(local, DiscoveryConfig::loopback(port)).unwrap());
    }
    for (d, events) in &mut all {
        let me = d.local().identity;
        let mut seen = HashSet::new();
        while seen.len() < 4 {
            let name = wait_for(events, Duration::from_secs(2), |e| match e {
                DiscoveryEvent::Found(p) => Some(p.identity.clone()),
                _ => None,
            })
            .await;
            assert_ne!(name, me);
            seen.insert(name);
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let (d0, _) = &all[0];
    let peers = d0.peers();
    assert_eq!(peers.len(), 4);
    let p = peers.iter().find(|p| p.identity == "p3").unwrap();
    assert_eq!(p.addresses, locator(4003));
    assert!(
        d0.stats().own > 0,
        "our own beacons come back and are ignored"
    );
    assert_eq!(d0.stats().rejected(), 0);
}

#[tokio::test]
async fn a_stopped_participant_is_gone_within_its_lease_and_a_restart_is_seen() {
    let port = free_port();
    let config = fast(port);
    let (_watcher, mut events) =
        Discovery::start(LocalParticipant::new("watcher", vec![]), config.clone()).unwrap();
    let first = LocalParticipant::new("phoenix", locator(5000));
    let (d, _e) = Discovery::start(first.clone(), config.clone()).unwrap();
    wait_for(&mut events, Duration::from_secs(2), |e| match e {
        DiscoveryEvent::Found(p) if p.id == first.id => Some(()),
        _ => None,
    })
    .await;

    // Killed without a goodbye: gone once the lease ran out, not before.
    d.abort().await;
    let stopped = Instant::now();
    let reason = wait_for(&mut events, Duration::from_secs(3), |e| match e {
        DiscoveryEvent::Gone { peer, reason } if peer.id == first.id => Some(*reason),
        _ => None,
    })
    .await;
    let took = stopped.elapsed();
    assert_eq!(reason, GoneReason::LeaseExpired);
    assert!(
        took <= config.lease + Duration::from_millis(300),
        "{took:?}"
    );
    assert!(
        took >= config.lease - config.interval - Duration::from_millis(50),
        "{took:?}"
    );

    // Started again (same id, new incarnation), while still known.
    let second = first.restarted();
    let (d2, _e2) = Discovery::start(second.clone(), config.clone()).unwrap();
    wait_for(&mut events, Duration::from_secs(2), |e| match e {
        DiscoveryEvent::Found(p) if p.id == first.id => Some(()),
        _ => None,
    })
    .await;
    let third = second.restarted();
    d2.abort().await;
    let (d3, _e3) = Discovery::start(third.clone(), config.clone()).unwrap();
    let (prev, now) = wait_for(&mut events, Duration::from_secs(2), |e| match e {
        DiscoveryEvent::Restarted {
            previous_incarnation,
            peer,
        } if peer.id == first.id => Some((*previous_incarnation, peer.incarnation)),
        _ => None,
    })
    .await;
    assert_eq!((prev, now), (second.incarnation, third.incarnation));

    // A goodbye is reported at once.
    d3.close().await;
    let reason = wait_for(&mut events, Duration::from_millis(500), |e| match e {
        DiscoveryEvent::Gone { peer, reason } if peer.id == first.id => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, GoneReason::Left);
}

#[tokio::test]
async fn bad_beacons_on_the_wire_are_rejected_and_counted() {
    // Unicast to a port of its own: exactly one socket gets each datagram.
    let mut config = DiscoveryConfig::loopback(0);
    config.bind_v4 = std::net::Ipv4Addr::LOCALHOST;
    config.targets = vec![BeaconTarget::Unicast("127.0.0.1:9".parse().unwrap())];
    let (d, mut events) =
        Discovery::start(LocalParticipant::new("target", vec![]), config).unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], d.port()));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();

    let known = LocalParticipant::new("known", vec![]);
    let good = |who: &LocalParticipant| {
        Beacon::new(
            who.id,
            who.incarnation,
            who.identity.clone(),
            vec![],
            Duration::from_secs(4),
        )
        .encode()
        .unwrap()
    };
    let newer = known.restarted();
    sock.send_to(&good(&newer), to).unwrap();
    wait_for(&mut events, Duration::from_secs(2), |e| match e {
        DiscoveryEvent::Found(p) if p.id == known.id => Some(()),
        _ => None,
    })
    .await;
    let bytes = good(&newer);
    sock.send_to(&bytes[..bytes.len() - 2], to).unwrap(); // truncated
    let mut v9 = bytes.clone();
    v9[4] = 9;
    sock.send_to(&v9, to).unwrap(); // another version
    sock.send_to(&good(&known), to).unwrap(); // known id, older incarnation
    sock.send_to(b"hello?", to).unwrap(); // not a beacon

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = d.stats();
        if s.rejected() >= 4 {
            assert_eq!(s.truncated, 1);
            assert_eq!(s.other_version, 1);
            assert_eq!(s.stale_incarnation, 1);
            assert_eq!(s.bad_magic, 1);
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The spoofed beacon changed nothing.
    let peer = d.peers().into_iter().find(|p| p.id == known.id).unwrap();
    assert_eq!(peer.incarnation, newer.incarnation);
    assert!(events.try_recv().is_none());
}
