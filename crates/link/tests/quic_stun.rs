//! STUN and QUIC on one UDP socket (RFC 7983): STUN datagrams on a QUIC
//! port reach the endpoint's `StunChannel` with their sender, replies leave
//! from the QUIC port, and the QUIC connections on the socket carry on;
//! unread STUN is bounded and counted. The STUN messages are written by
//! hand (a Binding request's 20-byte header): weft-link knows no STUN codec.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::time::timeout;
use weft_link::tls::ClientAuth;
use weft_link::{ConnectOptions, Link, ListenOptions};

mod common;
use common::{WAIT, config, connected, pki, read_exactly};

/// STUN's magic cookie (RFC 8489).
const MAGIC_COOKIE: u32 = 0x2112_A442;

/// A STUN header of `class_method` (0x0001 a Binding request, 0x0101 a
/// Binding success response) with no attributes and transaction `id`.
fn stun_header(class_method: u16, id: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&class_method.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&[id; 12]);
    m
}

#[tokio::test]
async fn stun_on_an_adopted_quic_socket_is_answered_from_it_while_quic_flows() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let quic_port = socket.local_addr().unwrap();
    let endpoint = server
        .adopt_quic(socket, Some(pki.server_config(ClientAuth::None).unwrap()))
        .unwrap();
    let stun = endpoint.stun();
    let listening = endpoint.listening().unwrap().clone();

    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(
            &listening.address,
            ConnectOptions::tls(pki.client_config(false).unwrap()),
        )
        .unwrap();
    let conn = connected(&mut client_events).await;
    let accepted = connected(&mut server_events).await;

    let stun_client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stun_client_addr = stun_client.local_addr().unwrap();
    for round in 0..10u8 {
        // QUIC packets in flight on the socket while STUN comes and goes.
        for i in 0..10u8 {
            conn.send(Bytes::from(vec![round * 10 + i; 64]))
                .await
                .unwrap();
        }
        let request = stun_header(0x0001, round);
        stun_client.send_to(&request, quic_port).await.unwrap();
        let (got, from) = timeout(WAIT, stun.recv()).await.unwrap().unwrap();
        assert_eq!(got, request, "the datagram as sent");
        assert_eq!(from, stun_client_addr, "with its source");
        let reply = stun_header(0x0101, round);
        assert_eq!(stun.send_to(&reply, from).await.unwrap(), 20);
        let mut buf = [0u8; 64];
        let (n, replier) = timeout(WAIT, stun_client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &reply[..]);
        assert_eq!(replier, quic_port, "the reply leaves from the QUIC port");
    }
    let got = read_exactly(&mut server_events, accepted.id(), 100 * 64).await;
    let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; 64]).collect();
    assert_eq!(got, expected, "every byte once, in order");
    // And the other way, after all that.
    accepted.send(Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(
        read_exactly(&mut client_events, conn.id(), 4).await,
        b"pong"
    );

    let stats = server.stats();
    assert_eq!(stats.quic_datagrams_dropped, 0, "STUN is not garbage");
    assert_eq!(stats.stun_datagrams_dropped, 0);
    assert!(stun.try_recv().is_none());
}

/// A reply goes out from the socket the endpoint moved to.
#[tokio::test]
async fn stun_replies_follow_a_rebind() {
    let (link, _events) = Link::new(config());
    let first = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let endpoint = link.adopt_quic(first, None).unwrap();
    let stun = endpoint.stun();
    let second = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let moved_to = second.local_addr().unwrap();
    endpoint.rebind(second).unwrap();

    let stun_client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let request = stun_header(0x0001, 7);
    stun_client.send_to(&request, moved_to).await.unwrap();
    let (got, from) = timeout(WAIT, stun.recv()).await.unwrap().unwrap();
    assert_eq!(got, request);
    stun.send_to(&stun_header(0x0101, 7), from).await.unwrap();
    let mut buf = [0u8; 64];
    let (_, replier) = timeout(WAIT, stun_client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replier, moved_to);
}

/// A flood of STUN-looking datagrams that nobody reads is bounded by the
/// queue and counted, and the QUIC connection on the port goes on.
#[tokio::test]
async fn unread_stun_on_a_quic_listener_is_bounded_and_counted() {
    let pki = pki();
    let mut cfg = config();
    cfg.quic.stun_queue = 8;
    let (server, mut server_events) = Link::new(cfg);
    let listening = server
        .listen_with(
            "quic://127.0.0.1:0",
            ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap()),
        )
        .await
        .unwrap();
    let port: SocketAddr = listening.address.socket_addr().unwrap();
    let stun = server.quic_stun(listening.id).expect("a QUIC listener");
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(
            &listening.address,
            ConnectOptions::tls(pki.client_config(false).unwrap()),
        )
        .unwrap();
    let conn = connected(&mut client_events).await;
    let accepted = connected(&mut server_events).await;

    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A message through QUIC after each burst: the socket is read in order,
    // so once it arrives the burst before it has been sorted.
    let mut round_trip = async |n: u8| {
        conn.send(Bytes::from(vec![n; 100])).await.unwrap();
        let got = read_exactly(&mut server_events, accepted.id(), 100).await;
        assert_eq!(got, vec![n; 100]);
    };
    for i in 0..200u32 {
        let mut d = stun_header(0x0001, 0);
        d[8..12].copy_from_slice(&i.to_be_bytes());
        flooder.send_to(&d, port).await.unwrap();
    }
    round_trip(1).await;
    assert_eq!(stun.queued(), 8, "the queue holds its bound");
    assert_eq!(server.stats().stun_datagrams_dropped, 192);
    // The oldest were kept.
    let (first, _) = stun.try_recv().unwrap();
    assert_eq!(first[8..12], 0u32.to_be_bytes());

    // Without a reader, STUN is dropped at once; what was queued too.
    drop(stun);
    assert_eq!(server.stats().stun_datagrams_dropped, 192 + 7);
    for _ in 0..50 {
        flooder
            .send_to(&stun_header(0x0001, 1), port)
            .await
            .unwrap();
    }
    round_trip(2).await;
    let stats = server.stats();
    assert_eq!(stats.stun_datagrams_dropped, 192 + 7 + 50);
    assert_eq!(stats.quic_datagrams_dropped, 0, "STUN is not garbage");
    assert_eq!(server.connections().len(), 1);

    // Only QUIC listeners have a STUN side.
    let tcp = server.listen("tcp://127.0.0.1:0").await.unwrap();
    assert!(server.quic_stun(tcp.id).is_none());
}

/// A channel does not keep the socket: once the endpoint is gone, `recv`
/// ends and `send_to` fails, and the port is free again.
#[tokio::test]
async fn a_stun_channel_ends_with_its_endpoint() {
    let (link, _events) = Link::new(config());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = socket.local_addr().unwrap();
    let endpoint = link.adopt_quic(socket, None).unwrap();
    let stun = endpoint.stun();
    drop(endpoint);
    assert!(timeout(WAIT, stun.recv()).await.unwrap().is_none());
    assert!(stun.send_to(&stun_header(0x0101, 1), at).await.is_err());
    std::net::UdpSocket::bind(at).expect("the port is free");
}
