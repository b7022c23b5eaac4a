//! The client against weft's own server (and a few hand-made peers) on
//! loopback: UDP over IPv4 and IPv6, TCP, TLS, shared sockets, matching by
//! transaction id and source, several servers at once.

mod common;

use std::net::SocketAddr;

use common::{addr, bounded, quick_client, server, tls_pair};
use tokio::net::UdpSocket;
use weft_stun::attribute::ChangeRequest;
use weft_stun::client::{BindingOptions, binding_tcp, binding_tls};
use weft_stun::integrity::Trailer;
use weft_stun::url::Transport;
use weft_stun::{
    Attribute, Class, ClientConfig, ServerUrl, StunClient, StunError, StunMessage, StunMethod,
    StunServer, StunServerConfig, binding, query_servers,
};

#[tokio::test]
async fn udp_binding_over_ipv4_and_ipv6() {
    for (listen, local) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
        let server = server(listen, None).await;
        let client = StunClient::bind(addr(local), &ClientConfig::default())
            .await
            .unwrap();
        let b = bounded(client.binding(server.primary())).await.unwrap();
        assert_eq!(b.mapped, client.local_addr());
        assert_eq!(b.local, client.local_addr());
        assert!(b.is_local());
        assert_eq!(b.transport, Transport::Udp);
        assert_eq!(b.requests, 1);
        assert!(b.other_address.is_none(), "no RFC 5780 without --alt");
        assert!(b.software.as_deref().unwrap().starts_with("weft-stun"));
        assert_eq!(server.stats().replied, 1);
    }
}

#[tokio::test]
async fn unspecified_local_address_reports_the_routed_one() {
    let server = server("127.0.0.1:0", None).await;
    let client = StunClient::bind(addr("0.0.0.0:0"), &ClientConfig::default())
        .await
        .unwrap();
    let b = bounded(client.binding(server.primary())).await.unwrap();
    assert_eq!(b.local.ip(), addr("127.0.0.1:0").ip());
    assert_eq!(b.local.port(), client.local_addr().port());
    assert!(b.is_local());
}

#[tokio::test]
async fn many_transactions_in_flight_on_one_socket() {
    let a = server("127.0.0.1:0", None).await;
    let b = server("127.0.0.1:0", None).await;
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let client = client.clone();
        let target = if i % 2 == 0 { a.primary() } else { b.primary() };
        tasks.spawn(async move { client.binding(target).await });
    }
    let mut done = 0;
    while let Some(r) = bounded(tasks.join_next()).await {
        let binding = r.unwrap().unwrap();
        assert_eq!(binding.mapped, client.local_addr());
        done += 1;
    }
    assert_eq!(done, 32);
    let stats = client.stats();
    assert_eq!(stats.transactions, 32);
    assert_eq!(stats.responses, 32);
    assert_eq!(a.stats().replied + b.stats().replied, 32);
}

/// A peer that answers each request three times: first with a wrong
/// transaction id, then with the right one from another socket, then
/// properly. Only the last counts; the other two are counted as ignored.
#[tokio::test]
async fn stray_responses_are_ignored_and_counted() {
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let impostor = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let answering = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let request = StunMessage::decode(&buf[..n]).unwrap();
        let answer = |tid| {
            StunMessage::new(Class::SuccessResponse, StunMethod::BINDING, tid)
                .with(Attribute::XorMappedAddress(from))
                .encode_with(&Trailer::fingerprint())
                .unwrap()
        };
        let stranger = weft_stun::TransactionId::new([9; 12]);
        peer.send_to(&answer(stranger), from).await.unwrap();
        impostor
            .send_to(&answer(request.transaction_id), from)
            .await
            .unwrap();
        peer.send_to(b"not stun at all", from).await.unwrap();
        peer.send_to(&answer(request.transaction_id), from)
            .await
            .unwrap();
    });
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let b = bounded(client.binding(peer_addr)).await.unwrap();
    assert_eq!(b.mapped, client.local_addr());
    bounded(answering).await.unwrap();
    let stats = client.stats();
    assert_eq!(stats.ignored_unknown_transaction, 1);
    assert_eq!(stats.ignored_unexpected_source, 1);
    assert_eq!(stats.ignored_malformed, 1);
    assert_eq!(stats.responses, 1);
}

#[tokio::test]
async fn error_responses_are_typed() {
    // Without an alternate address the server answers CHANGE-REQUEST with
    // 420 Unknown Attribute.
    let server = server("127.0.0.1:0", None).await;
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let options = BindingOptions {
        change_request: Some(ChangeRequest {
            change_ip: true,
            change_port: true,
        }),
        ..BindingOptions::default()
    };
    let err = bounded(client.binding_with(server.primary(), options))
        .await
        .unwrap_err();
    match err {
        StunError::ErrorResponse {
            code, server: s, ..
        } => {
            assert_eq!(code, 420);
            assert_eq!(s, server.primary());
        }
        other => panic!("expected a 420, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_gives_a_typed_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = quick_client();
    let client = StunClient::bind(addr("127.0.0.1:0"), &config)
        .await
        .unwrap();
    let err = bounded(client.binding(silent.local_addr().unwrap()))
        .await
        .unwrap_err();
    match err {
        StunError::Timeout {
            server, requests, ..
        } => {
            assert_eq!(server, silent.local_addr().unwrap());
            assert_eq!(requests, 3);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        let (n, _) = bounded(silent.recv_from(&mut buf)).await.unwrap();
        assert!(StunMessage::decode(&buf[..n]).is_ok());
    }
    assert_eq!(client.stats().retransmissions, 2);
    assert_eq!(client.stats().timeouts, 1);
}

#[tokio::test]
async fn tcp_and_tls_bindings() {
    let (tls, client_tls) = tls_pair("127.0.0.1:0");
    let server = StunServer::bind(StunServerConfig {
        listen: addr("127.0.0.1:0"),
        tcp: true,
        tls: Some(tls),
        ..StunServerConfig::default()
    })
    .await
    .unwrap();
    let config = ClientConfig {
        tls: Some(client_tls),
        ..quick_client()
    };
    let tcp = bounded(binding_tcp(server.tcp_addr().unwrap(), &config))
        .await
        .unwrap();
    assert_eq!(tcp.transport, Transport::Tcp);
    assert!(tcp.is_local(), "{tcp:?}");
    for name in ["localhost", "127.0.0.1"] {
        let b = bounded(binding_tls(server.tls_addr().unwrap(), name, &config))
            .await
            .unwrap();
        assert_eq!(b.transport, Transport::Tls);
        assert!(b.is_local());
        assert_eq!(b.mapped.ip(), addr("127.0.0.1:0").ip());
    }
    // The certificate does not name this host: verification fails.
    let err = bounded(binding_tls(
        server.tls_addr().unwrap(),
        "example.org",
        &config,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, StunError::Tls { .. }), "{err:?}");
    // No TLS configuration at all.
    let err = bounded(binding_tls(
        server.tls_addr().unwrap(),
        "localhost",
        &quick_client(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, StunError::TlsConfigMissing { .. }), "{err:?}");
    assert_eq!(server.stats().connections, 4);
}

#[tokio::test]
async fn tcp_over_ipv6() {
    let server = StunServer::bind(StunServerConfig {
        listen: addr("[::1]:0"),
        tcp: true,
        ..StunServerConfig::default()
    })
    .await
    .unwrap();
    let b = bounded(binding_tcp(server.tcp_addr().unwrap(), &quick_client()))
        .await
        .unwrap();
    assert!(b.mapped.is_ipv6());
    assert!(b.is_local(), "{b:?}");
    let url: ServerUrl = format!("tcp://[::1]:{}", server.tcp_addr().unwrap().port())
        .parse()
        .unwrap();
    let b = bounded(binding(&url, &quick_client())).await.unwrap();
    assert!(b.is_local(), "{b:?}");
}

#[tokio::test]
async fn tcp_to_a_closed_port_and_a_silent_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let config = ClientConfig {
        stream_timeout: std::time::Duration::from_millis(300),
        ..quick_client()
    };
    // Accepted (by the backlog) but never answered: the stream timeout.
    let err = bounded(binding_tcp(silent, &config)).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    drop(listener);
    let err = bounded(binding_tcp(silent, &config)).await.unwrap_err();
    assert!(matches!(err, StunError::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn binding_from_urls() {
    let server = StunServer::bind(StunServerConfig {
        listen: addr("127.0.0.1:0"),
        tcp: true,
        ..StunServerConfig::default()
    })
    .await
    .unwrap();
    let port = server.primary().port();
    for url in [
        format!("127.0.0.1:{port}"),
        format!("stun:127.0.0.1:{port}"),
        format!("stun://127.0.0.1:{port}"),
        format!("udp://127.0.0.1:{port}"),
        format!("tcp://127.0.0.1:{port}"),
        format!("stun:127.0.0.1:{port}?transport=tcp"),
    ] {
        let url: ServerUrl = url.parse().unwrap();
        let b = bounded(binding(&url, &quick_client())).await.unwrap();
        assert_eq!(b.transport, url.transport);
        assert!(b.is_local(), "{url}: {b:?}");
    }
}

/// A peer that claims every client is at 127.0.0.1:1.
async fn liar() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = StunMessage::decode(&buf[..n]) else {
                continue;
            };
            let answer = StunMessage::new(
                Class::SuccessResponse,
                StunMethod::BINDING,
                request.transaction_id,
            )
            .with(Attribute::XorMappedAddress(addr("127.0.0.1:1")))
            .encode()
            .unwrap();
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (at, task)
}

#[tokio::test]
async fn several_servers_in_parallel_agree() {
    let a = server("127.0.0.1:0", None).await;
    let b = server("127.0.0.1:0", None).await;
    let c = StunServer::bind(StunServerConfig {
        listen: addr("127.0.0.1:0"),
        tcp: true,
        ..StunServerConfig::default()
    })
    .await
    .unwrap();
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let urls: Vec<ServerUrl> = vec![
        ServerUrl::new(Transport::Udp, a.primary()),
        ServerUrl::new(Transport::Udp, b.primary()),
        ServerUrl::new(Transport::Tcp, c.tcp_addr().unwrap()),
        ServerUrl::new(Transport::Udp, silent.local_addr().unwrap()),
    ];
    let config = ClientConfig {
        local: Some(addr("127.0.0.1:0")),
        ..quick_client()
    };
    let report = bounded(query_servers(&urls, &config)).await;
    assert_eq!(report.results.len(), 4);
    assert_eq!(report.answered(), 3);
    assert!(report.agree);
    let mapped = report.mapped.unwrap();
    assert_eq!(Some(mapped), report.local);
    // Both UDP servers saw the same socket.
    let first = report.results[0].result.as_ref().unwrap();
    let second = report.results[1].result.as_ref().unwrap();
    assert_eq!(first.mapped, second.mapped);
    assert_eq!(first.mapped, mapped);
    assert!(report.agrees(&report.results[2]));
    assert!(report.results[3].result.as_ref().unwrap_err().is_timeout());
    assert!(!report.agrees(&report.results[3]));
}

#[tokio::test]
async fn a_lying_server_breaks_agreement() {
    let a = server("127.0.0.1:0", None).await;
    let b = server("127.0.0.1:0", None).await;
    let (lie, task) = liar().await;
    let urls: Vec<ServerUrl> = [a.primary(), lie, b.primary()]
        .into_iter()
        .map(|s| ServerUrl::new(Transport::Udp, s))
        .collect();
    let config = ClientConfig {
        local: Some(addr("127.0.0.1:0")),
        ..quick_client()
    };
    let report = bounded(query_servers(&urls, &config)).await;
    assert_eq!(report.answered(), 3);
    assert!(!report.agree);
    // Two against one: the truth wins the count.
    assert_eq!(report.mapped, report.local);
    assert!(report.agrees(&report.results[0]));
    assert!(!report.agrees(&report.results[1]));
    task.abort();
}

#[tokio::test]
async fn bound_to_the_loopback_interface() {
    let server = server("127.0.0.1:0", None).await;
    let config = ClientConfig {
        interface: Some("lo".into()),
        ..quick_client()
    };
    let client = match StunClient::bind(addr("0.0.0.0:0"), &config).await {
        Ok(c) => c,
        Err(StunError::InterfacePermission { .. }) => {
            eprintln!("SKIPPED: binding to an interface needs CAP_NET_RAW");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let b = bounded(client.binding(server.primary())).await.unwrap();
    assert!(b.is_local(), "{b:?}");
    // A name that is no interface is a typed error.
    let config = ClientConfig {
        interface: Some("no-such-if0".into()),
        ..quick_client()
    };
    let err = StunClient::bind(addr("0.0.0.0:0"), &config)
        .await
        .unwrap_err();
    assert!(matches!(err, StunError::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn dropping_the_last_handle_ends_the_socket_task() {
    let server = server("127.0.0.1:0", None).await;
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let local = client.local_addr();
    bounded(client.binding(server.primary())).await.unwrap();
    drop(client);
    // Once the task has ended the port is free to bind again.
    bounded(async {
        loop {
            if UdpSocket::bind(local).await.is_ok() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}
