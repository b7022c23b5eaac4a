//! Every transport end to end on loopback, TLS rejections, reconnects and
//! the throttle.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;
use weft_link::connection::Origin;
use weft_link::throttle::Throttle;
use weft_link::tls::{ClientAuth, SelfSignedPki, TlsClientConfig, TlsServerConfig};
use weft_link::{
    Address, ConnectOptions, Connection, DisconnectReason, Link, LinkError, LinkEvent, LinkEvents,
    ListenOptions,
};

mod common;
use common::{WAIT, config, connected, next, pki, read_exactly};

/// Both links of a round trip, kept alive while the test looks at them.
struct Ends {
    _links: (Link, Link, LinkEvents, LinkEvents),
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
        _links: (server, client, server_events, client_events),
    };
    (to_server, to_client, ends)
}

#[tokio::test]
async fn tcp_v4() {
    let (c, s, _ends) =
        round_trip("tcp://127.0.0.1:0", Default::default(), Default::default()).await;
    assert_eq!(c.info().peer, s.info().local);
    assert_eq!(s.info().peer, c.info().local);
}

#[tokio::test]
async fn tcp_v6() {
    let (c, _, _ends) = round_trip("tcp://[::1]:0", Default::default(), Default::default()).await;
    assert!(
        c.info()
            .peer
            .as_ref()
            .unwrap()
            .to_string()
            .starts_with("tcp://[::1]:")
    );
}

#[tokio::test]
async fn tcp_by_dns_name() {
    let (server, _events) = Link::new(config());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let port = bound.address.socket_addr().unwrap().port();
    let (client, mut client_events) = Link::new(config());
    client.connect(format!("tcp://localhost:{port}")).unwrap();
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
async fn tls() {
    let pki = pki();
    let listen = ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap());
    let connect = ConnectOptions::tls(pki.client_config(false).unwrap());
    let (c, s, _ends) = round_trip("tls://127.0.0.1:0", listen, connect).await;
    assert_eq!(
        c.info().peer_certificates.as_ref().map(|c| c.len()),
        Some(1)
    );
    assert!(
        s.info().peer_certificates.is_none(),
        "the client presented none"
    );
}

#[tokio::test]
async fn ssl_is_an_alias_of_tls() {
    let pki = pki();
    let listen = ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap());
    let connect = ConnectOptions::tls(pki.client_config(false).unwrap());
    let (c, _, _ends) = round_trip("ssl://127.0.0.1:0", listen, connect).await;
    assert!(
        c.info()
            .peer
            .as_ref()
            .unwrap()
            .to_string()
            .starts_with("tls://")
    );
}

#[tokio::test]
async fn mutual_tls() {
    let pki = pki();
    let listen = ListenOptions::tls(
        pki.server_config(ClientAuth::Required(pki.anchors()))
            .unwrap(),
    );
    let connect = ConnectOptions::tls(pki.client_config(true).unwrap());
    let (_, s, _ends) = round_trip("tls://[::1]:0", listen, connect).await;
    let client_cert = &s
        .info()
        .peer_certificates
        .as_ref()
        .expect("client certificate")[0];
    let expected = der_of_pem(&pki.client_cert_pem);
    assert_eq!(client_cert.as_ref(), expected.as_slice());
}

/// The DER of a PEM certificate.
fn der_of_pem(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Expects that the server reports a failed TLS accept and never a
/// connection, and that no data reaches it.
async fn expect_rejected(listen: TlsServerConfig, connect: TlsClientConfig) -> Vec<LinkEvent> {
    let (server, mut server_events) = Link::new(config());
    let bound = server
        .listen_with("tls://127.0.0.1:0", ListenOptions::tls(listen))
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(&bound.address, ConnectOptions::tls(connect))
        .unwrap();
    let mut client_seen = Vec::new();
    // The server's view: a failed accept, whatever the client thinks.
    match next(&mut server_events).await {
        LinkEvent::AcceptFailed { error, .. } => {
            assert!(matches!(*error, LinkError::Tls { .. }), "{error}");
        }
        other => panic!("server must reject, got {other:?}"),
    }
    while let Some(e) = client_events.try_recv() {
        client_seen.push(e);
    }
    assert_eq!(server.connections().len(), 0);
    client_seen
}

#[tokio::test]
async fn mutual_tls_rejects_a_client_from_another_ca() {
    let (pki, other) = (pki(), pki());
    let listen = pki
        .server_config(ClientAuth::Required(pki.anchors()))
        .unwrap();
    // Trusts the right server, presents a certificate of the wrong CA.
    let client_id = weft_link::tls::TlsIdentity::from_pem(
        other.client_cert_pem.as_bytes(),
        other.client_key_pem.as_bytes(),
    )
    .unwrap();
    let connect = TlsClientConfig::new(pki.anchors(), Some(client_id)).unwrap();
    expect_rejected(listen, connect).await;
}

#[tokio::test]
async fn mutual_tls_rejects_a_client_without_certificate() {
    let pki = pki();
    let listen = pki
        .server_config(ClientAuth::Required(pki.anchors()))
        .unwrap();
    expect_rejected(listen, pki.client_config(false).unwrap()).await;
}

#[tokio::test]
async fn a_client_rejects_a_server_from_another_ca() {
    let (pki, other) = (pki(), pki());
    let (server, _server_events) = Link::new(config());
    let listen = ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap());
    let bound = server
        .listen_with("tls://127.0.0.1:0", listen)
        .await
        .unwrap();
    let (client, mut client_events) = Link::new(config());
    client
        .connect_with(
            &bound.address,
            ConnectOptions::tls(other.client_config(false).unwrap()),
        )
        .unwrap();
    match next(&mut client_events).await {
        LinkEvent::ConnectFailed { error, .. } => {
            assert!(matches!(*error, LinkError::Tls { .. }), "{error}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert!(client.stats().connect_failures >= 1);
}

#[tokio::test]
async fn tls_without_a_config_is_a_typed_error() {
    let (link, _events) = Link::new(config());
    assert!(matches!(
        link.listen("tls://127.0.0.1:0").await,
        Err(LinkError::TlsConfigMissing { side: "server", .. })
    ));
    assert!(matches!(
        link.connect("tls://127.0.0.1:1"),
        Err(LinkError::TlsConfigMissing { side: "client", .. })
    ));
}

#[tokio::test]
async fn unix_path() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("unix://{}", dir.path().join("weft.sock").display());
    round_trip(&url, Default::default(), Default::default()).await;
}

#[tokio::test]
async fn unix_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let url = format!("unix://{}", path.display());
    round_trip(&url, Default::default(), Default::default()).await;
}

#[tokio::test]
async fn unix_abstract() {
    let url = format!(
        "unix://@weft-test-{}-{}",
        std::process::id(),
        fastrand_u64()
    );
    round_trip(&url, Default::default(), Default::default()).await;
}

#[tokio::test]
async fn unix_connections_carry_the_peers_credentials() {
    let url = format!(
        "unix://@weft-test-cred-{}-{}",
        std::process::id(),
        fastrand_u64()
    );
    let (server, mut server_events) = Link::new(config());
    let listening = server.listen(url.as_str()).await.unwrap();
    let (client, mut client_events) = Link::new(config());
    client.connect(&listening.address).unwrap();
    let accepted = connected(&mut server_events).await;
    let dialled = connected(&mut client_events).await;
    // Both ends are this process.
    let me = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    for conn in [&accepted, &dialled] {
        let cred = conn
            .info()
            .peer_credentials
            .expect("SO_PEERCRED on Unix sockets");
        assert_eq!(cred.pid, Some(std::process::id() as i32));
        if let Ok(uid) = me {
            assert_eq!(cred.uid, uid);
        }
    }
    // TCP has none.
    let tcp = server.listen("tcp://127.0.0.1:0").await.unwrap();
    client.connect(&tcp.address).unwrap();
    assert!(
        connected(&mut server_events)
            .await
            .info()
            .peer_credentials
            .is_none()
    );
}

#[tokio::test]
async fn a_resting_connector_does_not_reconnect_until_woken() {
    let (server, mut server_events) = Link::new(config());
    let listening = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, mut client_events) = Link::new(config());
    let connector = client.connect(&listening.address).unwrap();
    let first = connected(&mut client_events).await;
    assert!(client.rest_connector(connector));
    // The server ends the connection; the connector, resting, stays away
    // for many of its 20 ms backoffs.
    connected(&mut server_events).await.abort();
    loop {
        if let LinkEvent::Disconnected { connection, .. } = next(&mut client_events).await {
            assert_eq!(connection, first.id());
            break;
        }
    }
    let quiet = timeout(Duration::from_millis(300), async {
        loop {
            if let LinkEvent::Connected(_) = next(&mut client_events).await {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a resting connector reconnected");
    assert_eq!(client.stats().connections_opened, 1);
    // Woken, it connects again.
    assert!(client.wake_connector(connector));
    connected(&mut client_events).await;
    assert!(!client.rest_connector(weft_link::ConnectorId(u64::MAX)));
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

#[tokio::test]
async fn unix_tls() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("unix+tls://{}", dir.path().join("tls.sock").display());
    let listen = ListenOptions::tls(
        pki.server_config(ClientAuth::Required(pki.anchors()))
            .unwrap(),
    );
    // Unix sockets have no host name: the default server name is localhost.
    let connect = ConnectOptions::tls(pki.client_config(true).unwrap());
    let (c, s, _ends) = round_trip(&url, listen, connect).await;
    assert!(c.info().peer_certificates.is_some() && s.info().peer_certificates.is_some());
}

#[tokio::test]
async fn tls_server_name_override() {
    let pki = SelfSignedPki::generate(&["weft.test"]).unwrap();
    let listen = ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap());
    let connect = ConnectOptions::tls(
        pki.client_config(false)
            .unwrap()
            .with_server_name("weft.test"),
    );
    round_trip("tls://127.0.0.1:0", listen, connect).await;
}

#[tokio::test]
async fn udp_both_ways() {
    let (server, mut server_events) = Link::new(config());
    let (client, mut client_events) = Link::new(config());
    let bound = server.listen("udp://127.0.0.1:0").await.unwrap();
    client.connect(&bound.address).unwrap();
    let to_server = connected(&mut client_events).await;
    assert!(to_server.info().datagram);
    to_server.send(Bytes::from_static(b"one")).await.unwrap();
    to_server.send(Bytes::from_static(b"two")).await.unwrap();

    let to_client = connected(&mut server_events).await;
    assert_eq!(to_client.info().peer, to_server.info().local);
    // One datagram, one event: boundaries are kept.
    for want in [&b"one"[..], b"two"] {
        match next(&mut server_events).await {
            LinkEvent::Data { connection, data } => {
                assert_eq!(connection, to_client.id());
                assert_eq!(&data[..], want);
            }
            other => panic!("{other:?}"),
        }
    }
    to_client.send(Bytes::from_static(b"reply")).await.unwrap();
    match next(&mut client_events).await {
        LinkEvent::Data { data, .. } => assert_eq!(&data[..], b"reply"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn udp_server_can_send_first() {
    let (server, _server_events) = Link::new(config());
    let (client, mut client_events) = Link::new(config());
    let bound = server.listen("udp://127.0.0.1:0").await.unwrap();
    let client_bound = client.listen("udp://127.0.0.1:0").await.unwrap();
    let peer = client_bound.address.socket_addr().unwrap();
    let conn = server.udp_peer(bound.id, peer).await.unwrap();
    conn.send(Bytes::from_static(b"hello first")).await.unwrap();
    let _ = connected(&mut client_events).await;
    match next(&mut client_events).await {
        LinkEvent::Data { data, .. } => assert_eq!(&data[..], b"hello first"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reconnects_when_the_listener_comes_back_on_the_same_port() {
    let (first, mut first_events) = Link::new(config());
    let bound = first.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, mut client_events) = Link::new(config());
    client.connect(&bound.address).unwrap();
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
    closing.await.unwrap();

    // The connector keeps trying; a new listener on the same port gets it.
    let (second, mut second_events) = Link::new(config());
    let again = second.listen(&bound.address).await.unwrap();
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
async fn removing_a_connector_aborts_its_connection_and_stops_retrying() {
    let (server, mut server_events) = Link::new(config());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, mut client_events) = Link::new(config());
    let id = client.connect(&bound.address).unwrap();
    let conn = connected(&mut client_events).await;
    let _ = connected(&mut server_events).await;
    assert!(client.remove_connector(id));
    assert!(!client.remove_connector(id));
    match next(&mut client_events).await {
        LinkEvent::Disconnected { reason, .. } => {
            assert!(matches!(reason, DisconnectReason::Aborted))
        }
        other => panic!("{other:?}"),
    }
    timeout(WAIT, conn.closed()).await.unwrap();
    match next(&mut server_events).await {
        LinkEvent::Disconnected { .. } => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_graceful_close_delivers_everything_queued() {
    let (server, mut server_events) = Link::new(config());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, _client_events) = Link::new(config());
    let conn = client
        .connect_once(&bound.address, Default::default())
        .await
        .unwrap();
    let payload = Bytes::from(vec![7u8; 1 << 20]);
    for _ in 0..4 {
        conn.send(payload.clone()).await.unwrap();
    }
    conn.close();
    assert!(matches!(
        conn.try_send(payload.clone()),
        Err(LinkError::Closed)
    ));
    let to_client = connected(&mut server_events).await;
    assert_eq!(
        read_exactly(&mut server_events, to_client.id(), 4 << 20)
            .await
            .len(),
        4 << 20
    );
    match next(&mut server_events).await {
        LinkEvent::Disconnected { reason, .. } => {
            assert!(matches!(reason, DisconnectReason::PeerClosed))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn try_send_fails_when_the_queue_is_full() {
    let mut cfg = config();
    cfg.send_queue_bytes = 1024;
    let (a, b) = tokio::io::duplex(64);
    let (link, _events) = Link::new(cfg);
    let conn = link.adopt(a, None, None).unwrap();
    let chunk = Bytes::from(vec![1u8; 512]);
    // Nobody reads `b`: the duplex fills, then the queue.
    let mut accepted = 0;
    while accepted < 1000 {
        match conn.try_send(chunk.clone()) {
            Ok(()) => accepted += 1,
            Err(LinkError::QueueFull) => break,
            Err(e) => panic!("{e}"),
        }
        tokio::task::yield_now().await;
    }
    assert!(accepted < 1000, "the queue never filled");
    drop(b);
}

#[tokio::test]
async fn a_bad_address_names_the_bad_part() {
    let (link, _events) = Link::new(config());
    let err = link.listen("tcp://127.0.0.1:99999").await.unwrap_err();
    assert!(err.to_string().contains("99999"), "{err}");
    let err = link.connect("tcpp://h:1").unwrap_err();
    assert!(err.to_string().contains("tcpp"), "{err}");
}

#[tokio::test]
async fn adopting_a_std_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    let (link, mut events) = Link::new(config());
    let conn = link.adopt_tcp(server_side).unwrap();
    assert_eq!(conn.info().local, Some(Address::tcp(addr)));
    let _ = connected(&mut events).await;
    let mut client = tokio::net::TcpStream::from_std({
        client.set_nonblocking(true).unwrap();
        client
    })
    .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, b"adopted")
        .await
        .unwrap();
    assert_eq!(read_exactly(&mut events, conn.id(), 7).await, b"adopted");
}

/// 40 KB through a 10 KB/s throttle with a 1 KB burst takes 3.9 s of
/// (paused, virtual) time.
#[tokio::test(start_paused = true)]
async fn throttle_holds_the_rate() {
    let mut cfg = config();
    cfg.throttle = Some(Throttle {
        bytes_per_second: 10_000,
        burst: 1_000,
    });
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let (link, _events) = Link::new(cfg);
    let conn = link.adopt(a, None, None).unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..40 {
        conn.send(Bytes::from(vec![0u8; 1000])).await.unwrap();
    }
    let mut buf = vec![0u8; 40_000];
    tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf)
        .await
        .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let expected = (40_000.0 - 1_000.0) / 10_000.0;
    assert!(
        (elapsed - expected).abs() <= expected * 0.05,
        "took {elapsed:.3}s of virtual time, expected {expected:.3}s"
    );
    assert_eq!(link.stats().bytes_sent, 40_000);
}

#[tokio::test(start_paused = true)]
async fn throttle_rate_is_measured_within_tolerance_midway() {
    let mut cfg = config();
    cfg.throttle = Some(Throttle::per_second(100_000));
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let (link, _events) = Link::new(cfg);
    let conn = link.adopt(a, None, None).unwrap();
    conn.send(Bytes::from(vec![0u8; 1_000_000])).await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let start = tokio::time::Instant::now();
    let mut total = 0usize;
    while start.elapsed() < Duration::from_secs(5) {
        total += tokio::io::AsyncReadExt::read(&mut b, &mut buf)
            .await
            .unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    assert!(
        (rate - 100_000.0).abs() < 100_000.0 * 0.05,
        "measured {rate:.0} B/s"
    );
}

/// A peer that never reads cannot make a graceful close hang: the close
/// ends after `close_timeout` (virtual time here), dropping what is queued.
#[tokio::test(start_paused = true)]
async fn a_close_to_a_peer_that_never_reads_times_out() {
    let mut cfg = config();
    cfg.close_timeout = Duration::from_secs(3);
    let (a, _never_read) = tokio::io::duplex(1024);
    let (link, mut events) = Link::new(cfg);
    let conn = link.adopt(a, None, None).unwrap();
    let _ = connected(&mut events).await;
    conn.send(Bytes::from(vec![0u8; 1 << 20])).await.unwrap();
    let start = tokio::time::Instant::now();
    link.close().await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    match next(&mut events).await {
        LinkEvent::Disconnected { reason, .. } => {
            assert!(
                matches!(reason, DisconnectReason::CloseTimedOut),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn write_progress_is_observable() {
    let (a, mut b) = tokio::io::duplex(64);
    let (link, _events) = Link::new(config());
    let conn = link.adopt(a, None, None).unwrap();
    conn.send(Bytes::from(vec![1u8; 1000])).await.unwrap();
    let accepted = conn.bytes_accepted();
    assert_eq!(accepted, 1000);
    // Only 64 bytes fit in the duplex until the other end reads.
    let mut buf = vec![0u8; 1000];
    tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf[..64])
        .await
        .unwrap();
    assert!(conn.bytes_written() < accepted);
    tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf[64..])
        .await
        .unwrap();
    timeout(WAIT, async {
        while conn.bytes_written() < accepted {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every accepted byte is written");
}
