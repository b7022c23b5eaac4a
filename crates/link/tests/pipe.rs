//! Pipes over loopback: P2PD's examples, routing, dedupe, queue bounds,
//! relays, IPv6, TLS, Unix sockets and adopted std sockets.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use regex::bytes::Regex;
use tokio::sync::mpsc;
use weft_link::address::Scheme;
use weft_link::config::BindInterface;
use weft_link::pipe::{
    Dedupe, DropPolicy, EndHandler, MessageHandler, Peer, PeerInfo, Pipe, PipeConfig, PipeError,
    PipeMessage, Role, SUB_ALL, Subscription, SubscriptionQueue, UpHandler,
};
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{DisconnectReason, LinkError};

const LIMIT: Duration = Duration::from_secs(5);

/// Awaits `f`, failing the test if it takes more than five seconds.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("timed out after 5 s")
}

async fn next(queue: &SubscriptionQueue) -> PipeMessage {
    queue.recv(Some(LIMIT)).await.expect("a message")
}

async fn next_data(queue: &SubscriptionQueue) -> Bytes {
    next(queue).await.data
}

async fn reply(pipe: &Pipe) -> Bytes {
    pipe.recv(Some(LIMIT)).await.expect("a reply").data
}

fn echo() -> MessageHandler {
    MessageHandler::new(|msg, pipe| async move {
        let _ = pipe.reply(&msg, msg.data.clone()).await;
    })
}

fn echo_server_config() -> PipeConfig {
    PipeConfig {
        message_handlers: vec![echo()],
        ..PipeConfig::server()
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap()
}

/// A handler that reports each message's payload on a bounded channel.
fn reporter(capacity: usize) -> (MessageHandler, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(capacity);
    let handler = MessageHandler::new(move |msg, _| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(msg.data).await;
        }
    });
    (handler, rx)
}

#[tokio::test]
async fn tcp_echo_like_p2pd() {
    let server = within(Pipe::open("tcp://127.0.0.1:0", echo_server_config()))
        .await
        .unwrap();
    assert_eq!(server.role(), Role::Server);
    assert_eq!(server.scheme(), Scheme::Tcp);
    assert!(server.destination().is_none());
    let at = server.local_address().unwrap();
    assert_ne!(server.local_addr().unwrap().port(), 0, "the real port");

    let client = within(Pipe::open(&at, PipeConfig::default()))
        .await
        .unwrap();
    assert_eq!(client.role(), Role::Client);
    assert_eq!(client.destination(), Some(&at));
    assert_eq!(client.destination_addr(), server.local_addr());

    within(client.send("hello", None)).await.unwrap();
    assert_eq!(&reply(&client).await[..], b"hello");
    let msg = within(async {
        client.send("again", None).await.unwrap();
        client.recv(None).await.unwrap()
    })
    .await;
    assert_eq!(&msg.data[..], b"again");
    assert_eq!(msg.from, server.local_addr());

    let stats = client.stats();
    assert_eq!((stats.messages_sent, stats.messages_received), (2, 2));
    within(client.close()).await;
    within(server.close()).await;
    assert!(client.is_closed() && server.is_closed());
}

#[tokio::test]
async fn udp_request_response_like_p2pd() {
    let server = within(Pipe::listen("udp://127.0.0.1:0", echo_server_config()))
        .await
        .unwrap();
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    for i in 0..3 {
        let request = format!("request {i}");
        within(client.send(request.clone(), None)).await.unwrap();
        assert_eq!(reply(&client).await, request.as_bytes());
    }
    // The server saw one peer: the client's socket.
    let peers = server.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].addr, client.local_addr());
    assert_eq!(server.stats().messages_sent, 3);
    within(client.close()).await;
    within(server.close()).await;
}

#[tokio::test]
async fn sub_all_is_the_default_only_on_client_pipes_without_a_handler() {
    let server = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let at = server.local_address().unwrap();
    assert!(server.default_queue().is_none());
    assert!(matches!(
        server.recv(Some(Duration::from_millis(1))).await,
        Err(PipeError::NoDefaultQueue)
    ));

    let plain = within(Pipe::connect(&at, PipeConfig::default()))
        .await
        .unwrap();
    let default = plain.default_queue().expect("SUB_ALL on a client pipe");
    assert!(default.subscription().pattern.is_none() && default.subscription().from.is_none());

    let (handler, _rx) = reporter(4);
    let with_handler = within(Pipe::connect(
        &at,
        PipeConfig {
            message_handlers: vec![handler],
            ..PipeConfig::default()
        },
    ))
    .await
    .unwrap();
    assert!(with_handler.default_queue().is_none());

    // The server can still reach a client's default queue.
    let queue = server.subscribe(SUB_ALL);
    within(plain.send("hi", None)).await.unwrap();
    let hi = next(&queue).await;
    within(server.reply(&hi, "there")).await.unwrap();
    assert_eq!(&reply(&plain).await[..], b"there");

    assert!(plain.unsubscribe(default.id()));
    assert!(!plain.unsubscribe(default.id()));
    assert!(plain.default_queue().is_none());
    assert!(matches!(default.recv(None).await, Err(PipeError::Closed)));
    for p in [plain, with_handler, server] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn recv_times_out_with_a_typed_error() {
    let server = within(Pipe::listen("tcp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig {
            recv_timeout: Duration::from_millis(20),
            ..PipeConfig::default()
        },
    ))
    .await
    .unwrap();
    let wait = Duration::from_millis(30);
    assert!(matches!(
        client.recv(Some(wait)).await,
        Err(PipeError::Timeout { waited }) if waited == wait
    ));
    assert!(matches!(
        client.recv(None).await,
        Err(PipeError::Timeout { waited }) if waited == Duration::from_millis(20)
    ));
    within(client.close()).await;
    within(server.close()).await;
}

#[tokio::test]
async fn regex_and_address_routing() {
    let server = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let at = server.local_address().unwrap();
    let a = within(Pipe::connect(&at, PipeConfig::default()))
        .await
        .unwrap();
    let b = within(Pipe::connect(&at, PipeConfig::default()))
        .await
        .unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

    let all = server.subscribe(SUB_ALL);
    let pings = server.subscribe(Subscription::matching(re("^ping")));
    let from_a = server.subscribe(Subscription::from_addr(a_addr));
    // B's address written as IPv4-mapped IPv6: the same address.
    let mapped_b: SocketAddr = format!("[::ffff:127.0.0.1]:{}", b_addr.port())
        .parse()
        .unwrap();
    let from_b = server.subscribe(Subscription::from_addr(mapped_b));
    let a_pongs = server
        .subscribe(Subscription::matching(re("^pong")).with_from("127.0.0.1:0".parse().unwrap()));
    let a_pongs_exact =
        server.subscribe(Subscription::matching(re(r"^pong \d$")).with_from(a_addr));
    let nobody = server.subscribe(Subscription::from_addr("127.0.0.2:0".parse().unwrap()));

    for (pipe, payload) in [
        (&a, "ping 1"),
        (&a, "pong 2"),
        (&b, "ping 3"),
        (&b, "pong 4"),
    ] {
        within(pipe.send(payload, None)).await.unwrap();
        // Every queue gets its copy in the same step: once `all` has the
        // message, the others have theirs.
        let msg = next(&all).await;
        assert_eq!(&msg.data[..], payload.as_bytes());
        let sender = if std::ptr::eq(pipe, &a) {
            a_addr
        } else {
            b_addr
        };
        assert_eq!(msg.from, Some(sender));
    }

    let drain = |q: &SubscriptionQueue| {
        let mut got = Vec::new();
        while let Some(m) = q.try_recv() {
            got.push(String::from_utf8(m.data.to_vec()).unwrap());
        }
        got
    };
    assert_eq!(drain(&pings), ["ping 1", "ping 3"]);
    assert_eq!(drain(&from_a), ["ping 1", "pong 2"]);
    assert_eq!(drain(&from_b), ["ping 3", "pong 4"]);
    assert_eq!(drain(&a_pongs), ["pong 2", "pong 4"], "port 0 is any port");
    assert_eq!(drain(&a_pongs_exact), ["pong 2"]);
    assert!(drain(&nobody).is_empty());
    assert_eq!(server.stats().queue_dropped, 0);

    // The server answers A by address; B hears nothing.
    within(server.send("for a", Some(Peer::Addr(a_addr))))
        .await
        .unwrap();
    assert_eq!(&reply(&a).await[..], b"for a");
    assert!(b.default_queue().unwrap().is_empty());
    for p in [a, b, server] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn a_binary_id_escaped_with_escape_bytes_matches_itself_only() {
    use weft_link::pipe::{Regex as PipeRegex, escape_bytes};

    let id: &[u8] = &[0x00, 0xff, b'.', b'*', b'\\', b'(', b'?', 0x80, b'a', b'$'];
    let server = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    // The pattern type comes from the pipe module: no regex dependency.
    let pattern = PipeRegex::new(&format!("^{}", escape_bytes(id))).unwrap();
    let replies = server.subscribe(Subscription::matching(pattern));
    let all = server.subscribe(SUB_ALL);
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();

    let with_tail = |head: &[u8]| [head, b" tail"].concat();
    let mut near_misses: Vec<Vec<u8>> = Vec::new();
    for at in 0..id.len() {
        // Each byte changed in turn: a '.' or '*' must not act as a
        // wildcard, 0xff must not match as U+00FF's UTF-8 form.
        let mut other = id.to_vec();
        other[at] = other[at].wrapping_add(1);
        near_misses.push(with_tail(&other));
    }
    near_misses.push(with_tail(&id[..id.len() - 1]));
    near_misses.push(with_tail("\0\u{ff}.*\\(?\u{80}a$".as_bytes()));
    for payload in near_misses.iter().chain([&with_tail(id)]) {
        within(client.send(payload.clone(), None)).await.unwrap();
        assert_eq!(&next_data(&all).await[..], &payload[..]);
    }
    let matched = next(&replies).await;
    assert_eq!(&matched.data[..], &with_tail(id)[..]);
    assert!(replies.is_empty(), "only the id itself matched");
    for p in [client, server] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn every_matching_queue_gets_a_copy() {
    let server = within(Pipe::listen("tcp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    let x1 = server.subscribe(Subscription::matching(re("^x")));
    let x2 = server.subscribe(Subscription::matching(re("^x")));
    let y = server.subscribe(Subscription::matching(re("^y")));

    within(client.send("x-ray", None)).await.unwrap();
    assert_eq!(&within(next_data(&x1)).await[..], b"x-ray");
    assert_eq!(&x2.try_recv().expect("a copy").data[..], b"x-ray");
    within(client.send("yak", None)).await.unwrap();
    assert_eq!(&within(next_data(&y)).await[..], b"yak");
    assert!(x1.is_empty() && x2.is_empty());

    assert!(server.unsubscribe(x2.id()));
    within(client.send("xylophone", None)).await.unwrap();
    assert_eq!(&within(next_data(&x1)).await[..], b"xylophone");
    assert!(x2.is_empty() && x2.is_closed());
    within(client.close()).await;
    within(server.close()).await;
}

#[tokio::test]
async fn dedupe_drops_recent_ids_per_sender() {
    let server = within(Pipe::listen(
        "udp://127.0.0.1:0",
        PipeConfig {
            dedupe: Some(Dedupe::payload(2)),
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    let at = server.local_address().unwrap();
    let all = server.subscribe(SUB_ALL);
    let a = within(Pipe::connect(&at, PipeConfig::default()))
        .await
        .unwrap();
    let b = within(Pipe::connect(&at, PipeConfig::default()))
        .await
        .unwrap();

    for m in ["a", "a", "b"] {
        within(a.send(m, None)).await.unwrap();
    }
    assert_eq!(&next_data(&all).await[..], b"a");
    assert_eq!(
        &next_data(&all).await[..],
        b"b",
        "the repeated a was dropped"
    );
    // The window holds two ids: c pushes a out, so a passes again.
    for m in ["c", "a"] {
        within(a.send(m, None)).await.unwrap();
    }
    assert_eq!(&next_data(&all).await[..], b"c");
    assert_eq!(&next_data(&all).await[..], b"a");
    // Another sender has its own window.
    within(b.send("a", None)).await.unwrap();
    let from_b = next(&all).await;
    assert_eq!((&from_b.data[..], from_b.from), (&b"a"[..], b.local_addr()));
    assert_eq!(server.stats().duplicates_dropped, 1);
    for p in [a, b, server] {
        within(p.close()).await;
    }

    // Ids taken from the payload by a regex.
    let server = within(Pipe::listen(
        "udp://127.0.0.1:0",
        PipeConfig {
            dedupe: Some(Dedupe::regex(16, re(r"^id=(\d+);"))),
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    let all = server.subscribe(SUB_ALL);
    let a = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    for m in ["id=1;first", "id=1;retry", "id=2;second", "no id", "no id"] {
        within(a.send(m, None)).await.unwrap();
    }
    for want in ["id=1;first", "id=2;second", "no id", "no id"] {
        assert_eq!(next_data(&all).await, want.as_bytes());
    }
    assert_eq!(server.stats().duplicates_dropped, 1);
    within(a.close()).await;
    within(server.close()).await;
}

async fn fill_a_queue_of_three(policy: DropPolicy) -> (Vec<Bytes>, u64, u64) {
    let (seen, mut seen_rx) = reporter(16);
    let server = within(Pipe::listen(
        "udp://127.0.0.1:0",
        PipeConfig {
            queue_capacity: 3,
            queue_policy: policy,
            message_handlers: vec![seen],
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    let queue = server.subscribe(SUB_ALL);
    assert_eq!(queue.capacity(), 3);
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    for i in 1..=5u8 {
        within(client.send(vec![i], None)).await.unwrap();
    }
    // Handlers run after the queues got their copy.
    for i in 1..=5u8 {
        assert_eq!(within(seen_rx.recv()).await.unwrap()[..], [i]);
    }
    let mut kept = Vec::new();
    while let Some(m) = queue.try_recv() {
        kept.push(m.data);
    }
    let result = (kept, queue.dropped(), server.stats().queue_dropped);
    within(client.close()).await;
    within(server.close()).await;
    result
}

#[tokio::test]
async fn queues_are_bounded_and_drop_as_configured() {
    let (kept, dropped, counted) = fill_a_queue_of_three(DropPolicy::DropOldest).await;
    assert_eq!(kept, [vec![3u8], vec![4], vec![5]]);
    assert_eq!((dropped, counted), (2, 2));

    let (kept, dropped, counted) = fill_a_queue_of_three(DropPolicy::DropNewest).await;
    assert_eq!(kept, [vec![1u8], vec![2], vec![3]]);
    assert_eq!((dropped, counted), (2, 2));
}

#[tokio::test]
async fn relay_one_pipe_into_another() {
    let s1 = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let s2 = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let (s1_all, s2_all) = (s1.subscribe(SUB_ALL), s2.subscribe(SUB_ALL));
    let a = within(Pipe::connect(
        s1.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    let b = within(Pipe::connect(
        s2.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();

    let relay = a.add_pipe(&b);
    within(a.send("hello s1", None)).await.unwrap();
    let hello = next(&s1_all).await;
    within(s1.reply(&hello, "relay me")).await.unwrap();
    // A gets it, and B sends it on to S2.
    assert_eq!(&reply(&a).await[..], b"relay me");
    let relayed = next(&s2_all).await;
    assert_eq!(&relayed.data[..], b"relay me");
    assert_eq!(relayed.from, b.local_addr());
    assert_eq!(a.stats().relayed, 1);
    assert_eq!(b.stats().messages_sent, 1);

    assert!(a.del_pipe(relay));
    assert!(!a.del_pipe(relay));
    within(s1.send("stays here", Some(Peer::Addr(a.local_addr().unwrap()))))
        .await
        .unwrap();
    assert_eq!(&reply(&a).await[..], b"stays here");
    // A relays before it queues: had it relayed, S2 would get that first.
    within(b.send("marker", None)).await.unwrap();
    assert_eq!(&next_data(&s2_all).await[..], b"marker");
    assert_eq!(a.stats().relayed, 1);

    // A relay to a server pipe (no destination) fails and is counted.
    a.add_pipe(&s2);
    within(s1.reply(&hello, "nowhere")).await.unwrap();
    assert_eq!(&reply(&a).await[..], b"nowhere");
    assert_eq!(a.stats().relay_failures, 1);
    for p in [a, b, s1, s2] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn an_accepted_connection_is_relayed_both_ways_through_a_client_pipe() {
    let upstream = within(Pipe::listen("tcp://127.0.0.1:0", echo_server_config()))
        .await
        .unwrap();
    let (up_tx, mut ups) = mpsc::channel(4);
    let (end_tx, mut ends) = mpsc::channel(4);
    let front_config = PipeConfig {
        up_handlers: vec![UpHandler::new(move |peer: PeerInfo, _| {
            let up_tx = up_tx.clone();
            async move {
                let _ = up_tx.send(peer.connection).await;
            }
        })],
        end_handlers: vec![EndHandler::new(move |peer: PeerInfo, _, _| {
            let end_tx = end_tx.clone();
            async move {
                let _ = end_tx.send(peer.connection).await;
            }
        })],
        ..PipeConfig::server()
    };
    let front = within(Pipe::listen("tcp://127.0.0.1:0", front_config))
        .await
        .unwrap();

    // Two far ends, each with its accepted connection relayed to a client
    // pipe of its own and back.
    let mut tunnels = Vec::new();
    for _ in 0..2 {
        let far = within(Pipe::connect(
            front.local_address().unwrap(),
            PipeConfig::default(),
        ))
        .await
        .unwrap();
        let conn = within(ups.recv()).await.unwrap();
        let up = within(Pipe::connect(
            upstream.local_address().unwrap(),
            PipeConfig::default(),
        ))
        .await
        .unwrap();
        let there = front.relay_from(conn, &up, None);
        up.relay_to_peer(&front, conn);
        tunnels.push((far, conn, up, there));
    }

    for round in 0..3 {
        for (i, (far, ..)) in tunnels.iter().enumerate() {
            let text = format!("far end {i}, round {round}");
            within(far.send(text.clone(), None)).await.unwrap();
            assert_eq!(&reply(far).await[..], text.as_bytes());
        }
    }
    for (far, _, up, _) in &tunnels {
        assert!(
            far.default_queue().unwrap().is_empty(),
            "nothing of the other"
        );
        assert_eq!(up.stats().relayed, 3);
        assert_eq!(up.stats().relay_failures, 0);
    }
    assert_eq!(front.stats().relayed, 6);
    assert_eq!(upstream.stats().messages_received, 6);

    // When the accepted connection ends, the relay of its messages ends.
    let (far, conn, up, there) = tunnels.remove(0);
    within(far.close()).await;
    assert_eq!(within(ends.recv()).await, Some(conn));
    assert!(!front.stop_relay(there), "gone with its connection");
    let (other_far, _, other_up, _) = tunnels.remove(0);
    within(other_far.send("still here", None)).await.unwrap();
    assert_eq!(&reply(&other_far).await[..], b"still here");
    for p in [other_far, up, other_up, front, upstream] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn p2pds_relay_names_are_the_same_relays() {
    let a = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let b = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let relay = a.relay_to(&b);
    assert!(a.del_pipe(relay), "del_pipe stops what relay_to made");
    assert!(!a.stop_relay(relay));
    let relay = a.add_pipe(&b);
    assert!(a.stop_relay(relay), "stop_relay stops what add_pipe made");
    assert!(!a.del_pipe(relay));
    for p in [a, b] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn ipv6_client_and_server() {
    for scheme in ["tcp", "udp"] {
        let server = within(Pipe::listen(
            format!("{scheme}://[::1]:0"),
            echo_server_config(),
        ))
        .await
        .unwrap();
        let at = server.local_address().unwrap();
        assert!(at.to_string().starts_with(&format!("{scheme}://[::1]:")));
        let client = within(Pipe::connect(&at, PipeConfig::default()))
            .await
            .unwrap();
        assert!(client.local_addr().unwrap().is_ipv6());
        within(client.send("over v6", None)).await.unwrap();
        let msg = client.recv(Some(LIMIT)).await.unwrap();
        assert_eq!(&msg.data[..], b"over v6");
        assert_eq!(msg.from, server.local_addr());
        let peers = server.peers();
        assert_eq!(peers.len(), 1, "{scheme}");
        assert_eq!(peers[0].addr, client.local_addr());
        within(client.close()).await;
        within(server.close()).await;
    }
}

#[tokio::test]
async fn dual_stack_server_reports_v4_clients_as_v4() {
    let server = within(Pipe::listen("udp://[::]:0", PipeConfig::server()))
        .await
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let all = server.subscribe(SUB_ALL);
    let v4_only = server.subscribe(Subscription::from_addr("127.0.0.1:0".parse().unwrap()));
    let client = within(Pipe::connect(
        format!("udp://127.0.0.1:{port}"),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    within(client.send("v4", None)).await.unwrap();
    let msg = next(&all).await;
    assert_eq!(msg.from, client.local_addr(), "::ffff:127.0.0.1 normalised");
    assert_eq!(&v4_only.try_recv().unwrap().data[..], b"v4");
    // Sending to the plain IPv4 address reaches the mapped peer.
    within(server.send("back", Some(Peer::Addr(client.local_addr().unwrap()))))
        .await
        .unwrap();
    assert_eq!(&reply(&client).await[..], b"back");
    within(client.close()).await;
    within(server.close()).await;
}

#[tokio::test]
async fn udp_server_can_send_first() {
    let server = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    let (ups, mut ups_rx) = mpsc::channel::<PeerInfo>(4);
    server.add_up_handler(move |peer, _| {
        let ups = ups.clone();
        async move {
            let _ = ups.send(peer).await;
        }
    });
    let to = client.local_addr().unwrap();
    // Not heard from yet: try_send cannot make the connection, send can.
    assert!(matches!(
        server.try_send("early", Some(Peer::Addr(to))),
        Err(PipeError::UnknownPeer(_))
    ));
    // Written as IPv4-mapped: the server's IPv4 socket sends to 127.0.0.1.
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", to.port()).parse().unwrap();
    within(server.send("first", Some(Peer::Addr(mapped))))
        .await
        .unwrap();
    assert_eq!(&reply(&client).await[..], b"first");
    assert_eq!(within(ups_rx.recv()).await.unwrap().addr, Some(to));
    server.try_send("second", Some(Peer::Addr(to))).unwrap();
    assert_eq!(&reply(&client).await[..], b"second");
    within(client.close()).await;
    within(server.close()).await;
}

#[tokio::test]
async fn tls_pipes_with_a_self_signed_pki() {
    let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let (ups, mut ups_rx) = mpsc::channel::<PeerInfo>(4);
    let up = UpHandler::new(move |peer, _| {
        let ups = ups.clone();
        async move {
            let _ = ups.send(peer).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let unix_tls = format!("unix+tls://{}", dir.path().join("tls.sock").display());
    for address in ["tls://127.0.0.1:0", unix_tls.as_str()] {
        let server = within(Pipe::listen(
            address,
            PipeConfig {
                tls_server: Some(
                    pki.server_config(ClientAuth::Required(pki.anchors()))
                        .unwrap(),
                ),
                up_handlers: vec![up.clone()],
                ..echo_server_config()
            },
        ))
        .await
        .unwrap();
        let at = server.local_address().unwrap();
        assert!(at.scheme().is_tls());

        // Without TLS configuration the pipe does not open.
        assert!(matches!(
            Pipe::connect(&at, PipeConfig::default()).await,
            Err(PipeError::Link(LinkError::TlsConfigMissing { .. }))
        ));

        let client = within(Pipe::connect(
            &at,
            PipeConfig {
                tls_client: Some(pki.client_config(true).unwrap()),
                ..PipeConfig::default()
            },
        ))
        .await
        .unwrap();
        within(client.send("secret", None)).await.unwrap();
        assert_eq!(&reply(&client).await[..], b"secret");
        let peer = within(ups_rx.recv()).await.unwrap();
        assert!(
            peer.info.peer_certificates.is_some(),
            "the server sees the client's certificate"
        );
        within(client.close()).await;
        within(server.close()).await;
    }
}

#[tokio::test]
async fn unix_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("unix://{}", dir.path().join("pipe.sock").display());
    let abstract_name = format!("unix://@weft-pipe-test-{}", std::process::id());
    for address in [path.as_str(), abstract_name.as_str()] {
        let server = within(Pipe::listen(address, echo_server_config()))
            .await
            .unwrap();
        let all = server.subscribe(SUB_ALL);
        let client = within(Pipe::connect(address, PipeConfig::default()))
            .await
            .unwrap();
        assert_eq!(client.scheme(), Scheme::Unix);
        within(client.send("local", None)).await.unwrap();
        assert_eq!(&reply(&client).await[..], b"local");
        let msg = next(&all).await;
        assert_eq!(msg.from, None, "Unix peers have no socket address");
        // Servers answer Unix peers by connection.
        within(server.send("by id", Some(Peer::from(&msg))))
            .await
            .unwrap();
        assert_eq!(&reply(&client).await[..], b"by id");
        within(client.close()).await;
        within(server.close()).await;
    }
}

#[tokio::test]
async fn handlers_run_in_order_and_can_be_removed() {
    let (ends, mut ends_rx) = mpsc::channel::<(PeerInfo, DisconnectReason)>(4);
    let server = within(Pipe::listen(
        "tcp://127.0.0.1:0",
        PipeConfig {
            end_handlers: vec![EndHandler::new(move |peer, reason, _| {
                let ends = ends.clone();
                async move {
                    let _ = ends.send((peer, reason)).await;
                }
            })],
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    let first_runs = Arc::new(AtomicUsize::new(0));
    let counter = first_runs.clone();
    let first = server.add_message_handler(move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let (tx, mut rx) = mpsc::channel::<(usize, Bytes)>(8);
    let counter = first_runs.clone();
    server.add_message_handler(move |msg, _| {
        let tx = tx.clone();
        let runs_before = counter.load(Ordering::SeqCst);
        async move {
            let _ = tx.send((runs_before, msg.data)).await;
        }
    });
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();

    within(client.send("one", None)).await.unwrap();
    let (runs_before, data) = within(rx.recv()).await.unwrap();
    assert_eq!(
        (runs_before, &data[..]),
        (1, &b"one"[..]),
        "first ran first"
    );
    assert!(server.remove_handler(first));
    assert!(!server.remove_handler(first));
    within(client.send("two", None)).await.unwrap();
    let (runs_before, data) = within(rx.recv()).await.unwrap();
    assert_eq!((runs_before, &data[..]), (1, &b"two"[..]), "first is gone");

    let client_addr = client.local_addr();
    within(client.close()).await;
    let (peer, reason) = within(ends_rx.recv()).await.unwrap();
    assert_eq!(peer.addr, client_addr);
    assert!(matches!(reason, DisconnectReason::PeerClosed), "{reason}");
    assert!(server.peers().is_empty());
    within(server.close()).await;
}

#[tokio::test]
async fn adopted_std_sockets() {
    // A std TCP listener as a server, a std TCP stream as its client.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    let server = Pipe::from_std_tcp_listener(listener, echo_server_config()).unwrap();
    assert_eq!(server.local_addr(), Some(at));
    let stream = tokio::net::TcpStream::connect(at)
        .await
        .unwrap()
        .into_std()
        .unwrap();
    let client = Pipe::from_std_tcp_stream(stream, PipeConfig::default()).unwrap();
    assert_eq!(client.destination_addr(), Some(at));
    within(client.send("adopted", None)).await.unwrap();
    assert_eq!(&reply(&client).await[..], b"adopted");
    within(client.close()).await;
    within(server.close()).await;

    // Std UDP sockets: a server without a destination, a client with one.
    let server_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = server_socket.local_addr().unwrap();
    let server = Pipe::from_std_udp_socket(server_socket, None, echo_server_config()).unwrap();
    assert_eq!(server.role(), Role::Server);
    let all = server.subscribe(SUB_ALL);
    let client_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = Pipe::from_std_udp_socket(client_socket, Some(at), PipeConfig::default()).unwrap();
    assert_eq!(client.role(), Role::Client);
    for i in 0..3 {
        let data = format!("datagram {i}");
        within(client.send(data.clone(), None)).await.unwrap();
        assert_eq!(reply(&client).await, data.as_bytes());
        assert_eq!(next(&all).await.from, client.local_addr());
    }
    // The adopted server sends first to a new peer too.
    let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    let other = Pipe::from_std_udp_socket(other, Some(at), PipeConfig::default()).unwrap();
    server.try_send("hi", Some(Peer::Addr(other_addr))).unwrap();
    assert_eq!(&reply(&other).await[..], b"hi");
    assert_eq!(
        server.link_stats().connections_opened,
        2,
        "the adopted socket runs on the pipe's link, a connection per peer"
    );
    assert_eq!(server.stats().messages_sent, 4);
    for p in [client, other, server] {
        within(p.close()).await;
    }
}

#[tokio::test]
async fn send_errors_are_typed() {
    let server = within(Pipe::listen(
        "tcp://127.0.0.1:0",
        PipeConfig {
            send_retries: 1,
            send_retry_wait: Duration::from_millis(10),
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    assert!(matches!(
        server.send("x", None).await,
        Err(PipeError::NoDestination)
    ));
    let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(matches!(
        within(server.send("x", Some(Peer::Addr(nobody)))).await,
        Err(PipeError::UnknownPeer(Peer::Addr(a))) if a == nobody
    ));
    assert!(matches!(
        server.try_send("x", Some(Peer::Addr(nobody))),
        Err(PipeError::UnknownPeer(_))
    ));
    assert_eq!(server.stats().send_failures, 3);
    within(server.close()).await;
}

#[tokio::test]
async fn close_is_graceful_and_final() {
    let (seen, mut seen_rx) = reporter(1024);
    let server = within(Pipe::listen(
        "tcp://127.0.0.1:0",
        PipeConfig {
            message_handlers: vec![seen],
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    // Everything queued before close is written.
    let total = 1 << 20;
    within(client.send(vec![7u8; total], None)).await.unwrap();
    within(client.close()).await;
    let mut got = 0;
    while got < total {
        got += within(seen_rx.recv()).await.unwrap().len();
    }
    assert_eq!(got, total);
    assert!(matches!(
        client.send("late", None).await,
        Err(PipeError::Closed)
    ));
    assert!(matches!(client.recv(None).await, Err(PipeError::Closed)));
    assert!(client.peers().is_empty());
    within(server.close()).await;
}

#[tokio::test]
async fn a_handler_can_close_its_own_pipe() {
    let server = within(Pipe::listen(
        "udp://127.0.0.1:0",
        PipeConfig {
            message_handlers: vec![MessageHandler::new(|msg, pipe| async move {
                if &msg.data[..] == b"quit" {
                    pipe.close().await;
                }
            })],
            ..PipeConfig::server()
        },
    ))
    .await
    .unwrap();
    let queue = server.subscribe(SUB_ALL);
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    within(client.send("quit", None)).await.unwrap();
    assert_eq!(&next_data(&queue).await[..], b"quit");
    // The pipe ends on its own; close just waits for that.
    within(server.close()).await;
    assert!(server.is_closed());
    assert!(matches!(queue.recv(None).await, Err(PipeError::Closed)));
    within(client.close()).await;
}

#[tokio::test]
async fn dropping_the_last_handle_aborts_the_pipe() {
    let (ends, mut ends_rx) = mpsc::channel::<DisconnectReason>(4);
    let server = within(Pipe::listen("tcp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    server.add_end_handler(move |_, reason, _| {
        let ends = ends.clone();
        async move {
            let _ = ends.send(reason).await;
        }
    });
    let client = within(Pipe::connect(
        server.local_address().unwrap(),
        PipeConfig::default(),
    ))
    .await
    .unwrap();
    let queue = client.default_queue().unwrap();
    drop(client);
    let reason = within(ends_rx.recv()).await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::PeerClosed | DisconnectReason::Io(_)
        ),
        "{reason}"
    );
    assert!(matches!(
        queue.recv(Some(LIMIT)).await,
        Err(PipeError::Closed)
    ));
    within(server.close()).await;
}

#[tokio::test]
async fn socket_options_reach_the_link() {
    let server = within(Pipe::listen("udp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let all = server.subscribe(SUB_ALL);
    let at = server.local_address().unwrap();
    // Bound to another loopback address, the client is seen from there.
    let mut config = PipeConfig::default();
    config.link.socket.bind = Some("127.0.0.2:0".parse().unwrap());
    let client = within(Pipe::connect(&at, config)).await.unwrap();
    within(client.send("from .2", None)).await.unwrap();
    let msg = next(&all).await;
    assert_eq!(msg.from.unwrap().ip().to_string(), "127.0.0.2");
    assert_eq!(msg.from, client.local_addr());

    // An interface that does not exist is a typed error.
    let tcp_server = within(Pipe::listen("tcp://127.0.0.1:0", PipeConfig::server()))
        .await
        .unwrap();
    let mut config = PipeConfig::default();
    config.link.socket.interface = Some(BindInterface::Index(u32::MAX));
    let result = Pipe::connect(tcp_server.local_address().unwrap(), config).await;
    assert!(
        matches!(
            result,
            Err(PipeError::Link(LinkError::NoSuchInterface(u32::MAX)))
        ),
        "{result:?}"
    );
    for p in [client, server, tcp_server] {
        within(p.close()).await;
    }
}

#[test]
fn adopting_outside_a_runtime_is_an_error_not_a_panic() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(matches!(
        Pipe::from_std_udp_socket(socket, None, PipeConfig::default()),
        Err(PipeError::NoRuntime)
    ));
}

#[tokio::test]
async fn sends_to_a_peer_that_never_reads_end_in_queue_full() {
    // A peer that accepts and never reads: the kernel's buffers fill, then
    // the connection's send queue.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut config = PipeConfig {
        send_retries: 1,
        send_retry_wait: Duration::from_millis(20),
        ..PipeConfig::default()
    };
    config.link.send_queue_bytes = 1024;
    let client = within(Pipe::connect(format!("tcp://{at}"), config))
        .await
        .unwrap();
    let (_stream, _) = within(listener.accept()).await.unwrap();
    let chunk = Bytes::from(vec![0u8; 1 << 20]);
    let mut sent = 0;
    let error = within(async {
        loop {
            match client.send(chunk.clone(), None).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 256, "256 MiB went into a socket nobody reads");
        }
    })
    .await;
    assert!(matches!(error, PipeError::QueueFull), "{error}");
    assert!(matches!(
        client.try_send(chunk.clone(), None),
        Err(PipeError::QueueFull)
    ));
    assert_eq!(client.stats().send_failures, 2);
    assert_eq!(client.stats().messages_sent, sent);
    drop(client);
}
