//! quic:// end to end on loopback: round trips, TLS as on tls://
//! (mutual TLS, refusals, the server name override, the peer's
//! certificate), reconnects, ordering of small and large sends, graceful
//! close, and QUIC on a socket the caller made.

use bytes::Bytes;
use tokio::time::timeout;
use weft_link::address::Scheme;
use weft_link::config::SocketOptions;
use weft_link::connection::Origin;
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{
    Address, ConnectOptions, Connection, DisconnectReason, Link, LinkError, LinkEvent, LinkEvents,
    ListenOptions,
};

mod common;
use common::{WAIT, config, connected, next, pki, read_exactly};

fn listen_tls(pki: &SelfSignedPki, auth: ClientAuth) -> ListenOptions {
    ListenOptions::tls(pki.server_config(auth).unwrap())
}

fn connect_tls(pki: &SelfSignedPki, with_cert: bool) -> ConnectOptions {
    ConnectOptions::tls(pki.client_config(with_cert).unwrap())
}

/// Both links of a round trip, kept alive while the test looks at them.
struct Ends {
    server: Link,
    client: Link,
    server_events: LinkEvents,
    client_events: LinkEvents,
}

/// Listens on `url`, connects to what was bound, and exchanges a message
/// each way; returns both sides' connections (client's first).
async fn round_trip(
    url: &str,
    listen: ListenOptions,
    connect: ConnectOptions,
) -> (Connection, Connection, Ends) {
    let (server, mut server_events) = Link::new(config());
    let (client, mut client_events) = Link::new(config());
    let bound = server.listen_with(url, listen).await.expect("listen");
    assert!(bound.address.to_string().starts_with("quic://"));
    client
        .connect_with(&bound.address, connect)
        .expect("connect");

    let to_server = connected(&mut client_events).await;
    assert!(matches!(to_server.info().origin, Origin::Connector(_)));
    to_server.send(Bytes::from_static(b"ping")).await.unwrap();

    let to_client = connected(&mut server_events).await;
    assert_eq!(to_client.info().origin, Origin::Listener(bound.id));
    assert_eq!(
        read_exactly(&mut server_events, to_client.id(), 4).await,
        b"ping"
    );
    to_client.send(Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(
        read_exactly(&mut client_events, to_server.id(), 4).await,
        b"pong"
    );
    let ends = Ends {
        server,
        client,
        server_events,
        client_events,
    };
    (to_server, to_client, ends)
}

/// The DER of a PEM certificate.
fn der_of_pem(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn quic_round_trip_both_ways_with_the_servers_certificate() {
    let pki = pki();
    let (c, s, ends) = round_trip(
        "quic://127.0.0.1:0",
        listen_tls(&pki, ClientAuth::None),
        connect_tls(&pki, false),
    )
    .await;
    assert_eq!(c.info().peer, s.info().local);
    assert_eq!(s.info().peer, c.info().local);
    assert!(!c.info().datagram, "a QUIC connection is a byte stream");
    let chain = c.info().peer_certificates.as_ref().expect("server chain");
    assert_eq!(
        chain[0].as_ref(),
        der_of_pem(&pki.server_cert_pem).as_slice()
    );
    assert!(
        s.info().peer_certificates.is_none(),
        "the client presented none"
    );
    let (client, server) = (ends.client.stats(), ends.server.stats());
    assert!(client.bytes_sent >= 4 && client.bytes_received >= 4);
    assert!(server.bytes_sent >= 4 && server.bytes_received >= 4);
    assert_eq!(
        (client.connections_opened, server.connections_opened),
        (1, 1)
    );
}

#[tokio::test]
async fn quic_over_ipv6() {
    let pki = pki();
    let (c, _, _ends) = round_trip(
        "quic://[::1]:0",
        listen_tls(&pki, ClientAuth::None),
        connect_tls(&pki, false),
    )
    .await;
    let peer = c.info().peer.as_ref().unwrap().to_string();
    assert!(peer.starts_with("quic://[::1]:"), "{peer}");
}

#[tokio::test]
async fn quic_by_dns_name() {
    let pki = pki();
    let (server, _server_events) = Link::new(config());
    let bound = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let port = bound.address.socket_addr().unwrap().port();
    let (client, mut client_events) = Link::new(config());
    // Resolved later; the certificate names localhost.
    client
        .connect_with(format!("quic://localhost:{port}"), connect_tls(&pki, false))
        .unwrap();
    let conn = connected(&mut client_events).await;
    assert_eq!(
        conn.info()
            .peer
            .as_ref()
            .unwrap()
            .socket_addr()
            .unwrap()
            .port(),
        port
    );
}

#[tokio::test]
async fn quic_mutual_tls_shows_the_clients_certificate() {
    let pki = pki();
    let (_, s, _ends) = round_trip(
        "quic://127.0.0.1:0",
        listen_tls(&pki, ClientAuth::Required(pki.anchors())),
        connect_tls(&pki, true),
    )
    .await;
    let chain = s.info().peer_certificates.as_ref().expect("client chain");
    assert_eq!(
        chain[0].as_ref(),
        der_of_pem(&pki.client_cert_pem).as_slice()
    );
}

#[tokio::test]
async fn quic_server_name_override() {
    let pki = SelfSignedPki::generate(&["weft.test"]).unwrap();
    let connect = ConnectOptions::tls(
        pki.client_config(false)
            .unwrap()
            .with_server_name("weft.test"),
    );
    round_trip(
        "quic://127.0.0.1:0",
        listen_tls(&pki, ClientAuth::None),
        connect,
    )
    .await;
}

#[tokio::test]
async fn a_quic_client_without_the_right_ca_is_refused() {
    let (pki, other) = (pki(), pki());
    let (server, mut server_events) = Link::new(config());
    let bound = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(&bound.address, connect_tls(&other, false))
        .unwrap();
    match next(&mut client_events).await {
        LinkEvent::ConnectFailed { error, .. } => {
            assert!(matches!(*error, LinkError::Quic { .. }), "{error}");
            let quinn = std::error::Error::source(&*error).expect("a typed source");
            assert!(quinn.is::<quinn::ConnectionError>(), "{quinn}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert!(client.stats().connect_failures >= 1);
    assert_eq!(server.connections().len(), 0);
    // The server never saw a connection either: at most failed accepts.
    while let Some(event) = server_events.try_recv() {
        assert!(matches!(event, LinkEvent::AcceptFailed { .. }), "{event:?}");
    }
}

#[tokio::test]
async fn quic_mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let bound = server
        .listen_with(
            "quic://127.0.0.1:0",
            listen_tls(&pki, ClientAuth::Required(pki.anchors())),
        )
        .await
        .unwrap();
    let (client, _client_events) = Link::new(config());
    client
        .connect_with(&bound.address, connect_tls(&pki, false))
        .unwrap();
    match next(&mut server_events).await {
        LinkEvent::AcceptFailed { error, .. } => {
            assert!(matches!(*error, LinkError::Quic { .. }), "{error}");
        }
        other => panic!("the server must refuse, got {other:?}"),
    }
    assert_eq!(server.connections().len(), 0);
    assert!(server.stats().accept_failures >= 1);
}

#[tokio::test]
async fn quic_without_a_tls_config_is_a_typed_error() {
    let (link, _events) = Link::new(config());
    assert!(matches!(
        link.listen("quic://127.0.0.1:0").await,
        Err(LinkError::TlsConfigMissing { side: "server", .. })
    ));
    assert!(matches!(
        link.connect("quic://127.0.0.1:1"),
        Err(LinkError::TlsConfigMissing { side: "client", .. })
    ));
    assert!(matches!(
        link.connect_once("quic://127.0.0.1:1", ConnectOptions::default())
            .await,
        Err(LinkError::TlsConfigMissing { side: "client", .. })
    ));
}

#[tokio::test]
async fn quic_carries_many_small_and_a_few_large_sends_in_order() {
    let pki = pki();
    let (c, s, mut ends) = round_trip(
        "quic://127.0.0.1:0",
        listen_tls(&pki, ClientAuth::None),
        connect_tls(&pki, false),
    )
    .await;
    let mut expected = Vec::new();
    for i in 0..1000u32 {
        let mut small = vec![(i % 251) as u8; 64];
        small[..4].copy_from_slice(&i.to_be_bytes());
        expected.extend_from_slice(&small);
        c.send(Bytes::from(small)).await.unwrap();
    }
    for i in 0..3u8 {
        let large: Vec<u8> = (0..1 << 20).map(|n: u32| (n % 253) as u8 ^ i).collect();
        expected.extend_from_slice(&large);
        c.send(Bytes::from(large)).await.unwrap();
    }
    let got = read_exactly(&mut ends.server_events, s.id(), expected.len()).await;
    assert!(got == expected, "the bytes arrive whole and in order");

    // And the other way, while the first direction is idle.
    let back: Vec<u8> = (0..(1u32 << 20)).map(|n| (n % 241) as u8).collect();
    s.send(Bytes::from(back.clone())).await.unwrap();
    let got = read_exactly(&mut ends.client_events, c.id(), back.len()).await;
    assert!(got == back);
}

#[tokio::test]
async fn a_graceful_quic_close_delivers_everything_queued() {
    let pki = pki();
    let (c, s, mut ends) = round_trip(
        "quic://127.0.0.1:0",
        listen_tls(&pki, ClientAuth::None),
        connect_tls(&pki, false),
    )
    .await;
    let big: Vec<u8> = (0..(2u32 << 20)).map(|n| (n % 199) as u8).collect();
    c.send(Bytes::from(big.clone())).await.unwrap();
    c.close();
    let got = read_exactly(&mut ends.server_events, s.id(), big.len()).await;
    assert!(got == big);
    match next(&mut ends.server_events).await {
        LinkEvent::Disconnected { connection, reason } => {
            assert_eq!(connection, s.id());
            assert!(matches!(reason, DisconnectReason::PeerClosed), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    loop {
        match next(&mut ends.client_events).await {
            LinkEvent::Disconnected { connection, reason } => {
                assert_eq!(connection, c.id());
                assert!(matches!(reason, DisconnectReason::Closed), "{reason}");
                break;
            }
            LinkEvent::ConnectFailed { .. } | LinkEvent::Connected(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn quic_reconnects_when_the_listener_comes_back_on_the_same_port() {
    let pki = pki();
    let (first, mut first_events) = Link::new(config());
    let bound = first
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(&bound.address, connect_tls(&pki, false))
        .unwrap();
    let conn = connected(&mut client_events).await;
    let _ = connected(&mut first_events).await;

    // The listener goes away with its connection.
    let closing = tokio::spawn(async move {
        first.close().await;
        while first_events.recv().await.is_some() {}
    });
    loop {
        match next(&mut client_events).await {
            LinkEvent::Disconnected { connection, reason } => {
                assert_eq!(connection, conn.id());
                assert!(
                    matches!(
                        reason,
                        DisconnectReason::PeerClosed | DisconnectReason::Io(_)
                    ),
                    "{reason}"
                );
                break;
            }
            LinkEvent::Data { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    timeout(WAIT, closing).await.unwrap().unwrap();

    // The connector keeps trying; a new listener on the same port gets it.
    let (second, mut second_events) = Link::new(config());
    let again = second
        .listen_with(&bound.address, listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    assert_eq!(again.address, bound.address);
    let conn = connected(&mut client_events).await;
    conn.send(Bytes::from_static(b"back")).await.unwrap();
    let to_client = connected(&mut second_events).await;
    assert_eq!(
        read_exactly(&mut second_events, to_client.id(), 4).await,
        b"back"
    );
    assert!(client.stats().reconnects >= 1);
}

#[tokio::test]
async fn a_links_quic_connectors_share_one_socket_unless_bound_to_an_address() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let bound = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    let local_port = |c: &Connection| c.info().local.as_ref().unwrap().socket_addr().unwrap();

    // Two connectors without a local address: one socket, two connections,
    // each with its own bytes.
    let mut shared = Vec::new();
    for payload in [&b"first"[..], b"other"] {
        client
            .connect_with(&bound.address, connect_tls(&pki, false))
            .unwrap();
        let conn = connected(&mut client_events).await;
        conn.send(Bytes::from_static(payload)).await.unwrap();
        let accepted = connected(&mut server_events).await;
        assert_eq!(
            read_exactly(&mut server_events, accepted.id(), payload.len()).await,
            payload
        );
        assert_eq!(accepted.info().peer, conn.info().local);
        shared.push(conn);
    }
    let port = local_port(&shared[0]);
    assert_eq!(local_port(&shared[1]), port, "one socket for both");

    // A connector bound to a local address gets a socket of its own there.
    let mut socket = SocketOptions::default();
    socket.bind = Some("127.0.0.1:0".parse().unwrap());
    let mut options = connect_tls(&pki, false);
    options.socket = Some(socket);
    client.connect_with(&bound.address, options).unwrap();
    let own = connected(&mut client_events).await;
    let _ = connected(&mut server_events).await;
    assert_ne!(local_port(&own), port);
    assert_eq!(client.stats().connections_opened, 3);
}

#[tokio::test]
async fn removing_a_quic_connector_aborts_its_connection() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let bound = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    let id = client
        .connect_with(&bound.address, connect_tls(&pki, false))
        .unwrap();
    let conn = connected(&mut client_events).await;
    let _ = connected(&mut server_events).await;
    assert!(client.remove_connector(id));
    match next(&mut client_events).await {
        LinkEvent::Disconnected { reason, .. } => {
            assert!(matches!(reason, DisconnectReason::Aborted), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    timeout(WAIT, conn.closed()).await.unwrap();
    // The server learns of it from QUIC's close, not from a timeout.
    match next(&mut server_events).await {
        LinkEvent::Disconnected { .. } => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn quic_runs_on_sockets_the_caller_made() {
    let pki = pki();
    // A listener on a socket the caller bound.
    let (server, mut server_events) = Link::new(config());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let endpoint = server
        .adopt_quic(socket, Some(pki.server_config(ClientAuth::None).unwrap()))
        .unwrap();
    let listening = endpoint.listening().expect("accepts").clone();
    assert_eq!(listening.address.socket_addr().unwrap().port(), port);

    // A reconnecting connector of another link dials it.
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(&listening.address, connect_tls(&pki, false))
        .unwrap();
    let to_server = connected(&mut client_events).await;
    to_server.send(Bytes::from_static(b"hi")).await.unwrap();
    let to_client = connected(&mut server_events).await;
    assert_eq!(to_client.info().origin, Origin::Listener(listening.id));
    assert_eq!(
        read_exactly(&mut server_events, to_client.id(), 2).await,
        b"hi"
    );

    // A connection made from a second caller-made socket leaves from it.
    let (peer, mut peer_events) = Link::new(config());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = socket.local_addr().unwrap();
    let outgoing = peer.adopt_quic(socket, None).unwrap();
    assert!(outgoing.listening().is_none());
    let conn = outgoing
        .connect_once(&listening.address, connect_tls(&pki, false))
        .await
        .unwrap();
    assert_eq!(conn.info().origin, Origin::Adopted);
    assert_eq!(conn.info().local, Some(Address::ip(Scheme::Quic, from)));
    let _ = connected(&mut peer_events).await;
    conn.send(Bytes::from_static(b"punched")).await.unwrap();
    let accepted = connected(&mut server_events).await;
    assert_eq!(
        accepted.info().peer.as_ref().and_then(Address::socket_addr),
        Some(from),
        "the listener sees the caller's socket"
    );
    assert_eq!(
        read_exactly(&mut server_events, accepted.id(), 7).await,
        b"punched"
    );

    // Only quic:// addresses go through a QUIC endpoint.
    assert!(matches!(
        outgoing
            .connect_once("tcp://127.0.0.1:1", connect_tls(&pki, false))
            .await,
        Err(LinkError::Unsupported(_))
    ));
    // Removing the listener stops the accepting, not what it accepted.
    assert!(server.remove_listener(listening.id));
    to_client.send(Bytes::from_static(b"still")).await.unwrap();
    assert_eq!(
        read_exactly(&mut client_events, to_server.id(), 5).await,
        b"still"
    );
}

#[tokio::test]
async fn an_adopted_quic_socket_can_run_a_reconnecting_connector() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let bound = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = socket.local_addr().unwrap();
    let endpoint = client.adopt_quic(socket, None).unwrap();
    let id = endpoint
        .connect_with(&bound.address, connect_tls(&pki, false))
        .unwrap();
    let conn = connected(&mut client_events).await;
    assert_eq!(conn.info().origin, Origin::Connector(id));
    let accepted = connected(&mut server_events).await;
    assert_eq!(
        accepted.info().peer.as_ref().and_then(Address::socket_addr),
        Some(from)
    );
    assert!(matches!(
        endpoint.connect_with(&bound.address, ConnectOptions::default()),
        Err(LinkError::TlsConfigMissing { .. })
    ));
}

/// Connection migration: the client's endpoint moves to another socket
/// mid-stream and the connection carries on, nothing lost or repeated.
#[tokio::test]
async fn a_quic_connection_survives_a_rebind_of_the_clients_socket() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let listening = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    let first = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let endpoint = client.adopt_quic(first, None).unwrap();
    let conn = endpoint
        .connect_once(&listening.address, connect_tls(&pki, false))
        .await
        .unwrap();
    let _ = connected(&mut client_events).await;
    let accepted = connected(&mut server_events).await;
    for i in 0..100u8 {
        conn.send(Bytes::from(vec![i; 64])).await.unwrap();
    }
    let second = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let moved_to = second.local_addr().unwrap();
    endpoint.rebind(second).unwrap();
    assert_eq!(endpoint.local_addr().unwrap(), moved_to);
    for i in 100..200u8 {
        conn.send(Bytes::from(vec![i; 64])).await.unwrap();
    }
    let got = read_exactly(&mut server_events, accepted.id(), 200 * 64).await;
    let expected: Vec<u8> = (0..200u8).flat_map(|i| vec![i; 64]).collect();
    assert_eq!(got, expected, "every byte once, in order");
    // And the server still reaches the client at its new address.
    accepted.send(Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(
        read_exactly(&mut client_events, conn.id(), 4).await,
        b"pong"
    );
}

/// Garbage on the QUIC port, and Initial-sized datagrams from many source
/// ports, do not disturb a connection that is up; the garbage is counted.
#[tokio::test]
async fn garbage_on_the_quic_port_leaves_other_connections_alone() {
    let pki = pki();
    let (server, mut server_events) = Link::new(config());
    let listening = server
        .listen_with("quic://127.0.0.1:0", listen_tls(&pki, ClientAuth::None))
        .await
        .unwrap();
    let port_addr = listening.address.socket_addr().unwrap();
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(&listening.address, connect_tls(&pki, false))
        .unwrap();
    let conn = connected(&mut client_events).await;
    let accepted = connected(&mut server_events).await;

    // 200 sockets each send garbage and a 1200-byte datagram that starts
    // like a long-header Initial but is nothing valid.
    let mut initial = vec![0u8; 1200];
    initial[0] = 0xc0;
    initial[1..5].copy_from_slice(&1u32.to_be_bytes());
    for i in 0..200u32 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // 0x20 first: neither QUIC nor STUN (0 to 3, RFC 7983), so garbage.
        let _ = s.send_to(&(0x2000_0000 | i).to_be_bytes(), port_addr);
        let _ = s.send_to(&initial, port_addr);
    }
    for i in 0..50u8 {
        conn.send(Bytes::from(vec![i; 100])).await.unwrap();
    }
    let got = read_exactly(&mut server_events, accepted.id(), 50 * 100).await;
    assert_eq!(got[..100], [0u8; 100]);
    assert_eq!(got[got.len() - 100..], [49u8; 100]);
    assert_eq!(server.connections().len(), 1, "no connection from garbage");
    // The garbage (four bytes, no fixed bit) was counted; the fake Initials
    // look like QUIC and are quinn's to drop.
    assert!(
        server.stats().quic_datagrams_dropped >= 200,
        "{:?}",
        server.stats()
    );
    assert_eq!(client.stats().quic_datagrams_dropped, 0);
}
