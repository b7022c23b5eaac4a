//! Socket options that change where and how sockets live.

use std::time::Duration;

use tokio::time::timeout;
use weft_link::config::{BindInterface, SocketOptions};
use weft_link::{
    Adopted, ConnectOptions, DisconnectReason, Link, LinkConfig, LinkError, LinkEvent,
};

const WAIT: Duration = Duration::from_secs(10);

fn bound_to(interface: BindInterface) -> ConnectOptions {
    let mut socket = SocketOptions::default();
    socket.interface = Some(interface);
    let mut options = ConnectOptions::default();
    options.socket = Some(socket);
    options
}

fn loopback_index() -> u32 {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .expect("Linux exposes lo's index")
        .trim()
        .parse()
        .unwrap()
}

/// Binding to `lo` by name or index reaches a loopback listener; where the
/// process may not bind to devices, the error says so by type.
#[tokio::test]
async fn binding_to_an_interface_by_name_or_index() {
    let (server, _events) = Link::new(LinkConfig::default());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, _client_events) = Link::new(LinkConfig::default());
    for interface in [
        BindInterface::Name("lo".into()),
        BindInterface::Index(loopback_index()),
    ] {
        match client
            .connect_once(&bound.address, bound_to(interface.clone()))
            .await
        {
            Ok(conn) => assert!(conn.info().local.is_some()),
            Err(LinkError::BindDevicePermission {
                interface: name, ..
            }) => {
                eprintln!("not permitted to bind to {name} here; the typed error is the behaviour");
            }
            Err(e) => panic!("{interface:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn binding_to_a_missing_interface_is_a_typed_error() {
    let (client, _events) = Link::new(LinkConfig::default());
    let err = client
        .connect_once("tcp://127.0.0.1:9", bound_to(BindInterface::Index(999_999)))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::NoSuchInterface(999_999)), "{err}");
    let err = client
        .connect_once(
            "tcp://127.0.0.1:9",
            bound_to(BindInterface::Name("nope-weft0".into())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Io { .. } | LinkError::BindDevicePermission { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn binding_to_a_local_address() {
    let (server, mut server_events) = Link::new(LinkConfig::default());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut socket = SocketOptions::default();
    socket.bind = Some("127.0.0.2:0".parse().unwrap());
    let mut options = ConnectOptions::default();
    options.socket = Some(socket);
    let (client, _events) = Link::new(LinkConfig::default());
    let conn = client.connect_once(&bound.address, options).await.unwrap();
    let local = conn.info().local.as_ref().unwrap().socket_addr().unwrap();
    assert_eq!(local.ip().to_string(), "127.0.0.2");
    match timeout(WAIT, server_events.recv()).await.unwrap().unwrap() {
        LinkEvent::Connected(c) => assert_eq!(c.info().peer, conn.info().local),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_last_handle_closes_everything() {
    let (server, mut server_events) = Link::new(LinkConfig::default());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, client_events) = Link::new(LinkConfig::default());
    let clone = client.clone();
    clone.connect(&bound.address).unwrap();
    let Some(LinkEvent::Connected(_)) = timeout(WAIT, server_events.recv()).await.unwrap() else {
        panic!("no connection")
    };
    drop(client);
    drop(clone);
    drop(client_events);
    match timeout(WAIT, server_events.recv()).await.unwrap().unwrap() {
        LinkEvent::Disconnected { reason, .. } => {
            assert!(
                matches!(
                    reason,
                    DisconnectReason::PeerClosed | DisconnectReason::Io(_)
                ),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn removing_a_listener_stops_accepting_but_keeps_connections() {
    let (server, mut server_events) = Link::new(LinkConfig::default());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let (client, _client_events) = Link::new(LinkConfig::default());
    let first = client
        .connect_once(&bound.address, Default::default())
        .await
        .unwrap();
    let Some(LinkEvent::Connected(accepted)) = timeout(WAIT, server_events.recv()).await.unwrap()
    else {
        panic!("no connection")
    };
    assert!(server.remove_listener(bound.id));
    assert!(!server.remove_listener(bound.id));
    // New connections are refused once the accept task has stopped.
    let mut refused = false;
    for _ in 0..100 {
        if client
            .connect_once(&bound.address, Default::default())
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener kept accepting");
    first.send("still up".into()).await.unwrap();
    match timeout(WAIT, server_events.recv()).await.unwrap().unwrap() {
        LinkEvent::Data { connection, data } => {
            assert_eq!(connection, accepted.id());
            assert_eq!(&data[..], b"still up");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn adopting_std_listeners_and_udp_sockets() {
    let (link, mut events) = Link::new(LinkConfig::default());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listening = link.adopt_tcp_listener(std_listener).unwrap();
    assert_eq!(listening.address.socket_addr(), Some(addr));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, b"via std listener")
        .await
        .unwrap();
    let Some(LinkEvent::Connected(conn)) = timeout(WAIT, events.recv()).await.unwrap() else {
        panic!("no connection")
    };
    let mut got = Vec::new();
    while got.len() < 16 {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            LinkEvent::Data { connection, data } if connection == conn.id() => {
                got.extend_from_slice(&data)
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, b"via std listener");

    // An unconnected UDP socket serves many peers; a connected one is one.
    let server_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server_socket.local_addr().unwrap();
    let Adopted::Listener(l) = link.adopt_udp(server_socket, None).await.unwrap() else {
        panic!("an unconnected socket is a listener")
    };
    assert_eq!(l.address.socket_addr(), Some(server_addr));
    let client_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let Adopted::Connection(c) = link
        .adopt_udp(client_socket, Some(server_addr))
        .await
        .unwrap()
    else {
        panic!("a socket given a peer is a connection")
    };
    c.send("datagram".into()).await.unwrap();
    let mut saw_client = false;
    let mut saw_server_side = false;
    let mut data_seen = false;
    while !(saw_client && saw_server_side && data_seen) {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            LinkEvent::Connected(x) if x.id() == c.id() => saw_client = true,
            LinkEvent::Connected(x) => {
                assert_eq!(x.info().peer, c.info().local);
                saw_server_side = true;
            }
            LinkEvent::Data { data, .. } => {
                assert_eq!(&data[..], b"datagram");
                data_seen = true;
            }
            other => panic!("{other:?}"),
        }
    }
}
