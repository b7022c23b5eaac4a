//! Lanes of quic:// connections on loopback: either side opens them, each
//! carries its own bytes both ways, one lane's bulk does not hold up
//! another's packets, they end with their connection without losing what
//! they sent, and only QUIC connections carry them.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use weft_link::connection::Origin;
use weft_link::throttle::Throttle;
use weft_link::tls::ClientAuth;
use weft_link::{
    ConnectOptions, Connection, ConnectionId, DisconnectReason, Link, LinkConfig, LinkError,
    LinkEvent, LinkEvents, ListenOptions,
};

mod common;
use common::{config, connected, next, pki, read_exactly};

/// A quic:// connection between two links configured alike: (client's
/// end, server's end, client link and events, server link and events).
async fn pair(
    link_config: LinkConfig,
) -> (Connection, Connection, Link, LinkEvents, Link, LinkEvents) {
    let pki = pki();
    let (server, mut server_events) = Link::new(link_config.clone());
    let (client, mut client_events) = Link::new(link_config);
    let bound = server
        .listen_with(
            "quic://127.0.0.1:0",
            ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap()),
        )
        .await
        .unwrap();
    client
        .connect_with(
            &bound.address,
            ConnectOptions::tls(pki.client_config(false).unwrap()),
        )
        .unwrap();
    let to_server = connected(&mut client_events).await;
    let to_client = connected(&mut server_events).await;
    (
        to_server,
        to_client,
        client,
        client_events,
        server,
        server_events,
    )
}

/// Gathers data events until `want` bytes arrived for each connection
/// named, in arrival order: (connection, bytes so far) after each event.
async fn gather(
    events: &mut LinkEvents,
    want: &HashMap<ConnectionId, usize>,
) -> Vec<(ConnectionId, usize)> {
    let mut got: HashMap<ConnectionId, usize> = HashMap::new();
    let mut order = Vec::new();
    while want
        .iter()
        .any(|(c, n)| got.get(c).copied().unwrap_or(0) < *n)
    {
        match next(events).await {
            LinkEvent::Data { connection, data } => {
                let so_far = got.entry(connection).or_default();
                *so_far += data.len();
                order.push((connection, *so_far));
            }
            other => panic!("expected data, got {other:?}"),
        }
    }
    for (c, n) in want {
        assert_eq!(got[c], *n, "no more than was sent on {c}");
    }
    order
}

#[tokio::test]
async fn either_side_opens_lanes_and_each_carries_its_own_bytes_both_ways() {
    let (to_server, to_client, client, mut client_events, server, mut server_events) =
        pair(config()).await;
    assert!(to_server.info().lanes && to_client.info().lanes);

    // The client opens one: both sides announce it as a lane of their
    // end of the connection.
    let lane = client.open_lane(to_server.id()).await.unwrap();
    assert_eq!(lane.info().origin, Origin::Lane(to_server.id()));
    assert!(!lane.info().lanes, "a lane carries no lanes");
    assert_eq!(lane.info().peer, to_server.info().peer);
    let announced = connected(&mut client_events).await;
    assert_eq!(announced.id(), lane.id());
    lane.send(Bytes::from_static(b"on the lane")).await.unwrap();
    let lane_at_server = connected(&mut server_events).await;
    assert_eq!(lane_at_server.info().origin, Origin::Lane(to_client.id()));
    assert_eq!(
        read_exactly(&mut server_events, lane_at_server.id(), 11).await,
        b"on the lane"
    );

    // The server opens another; each of the three carries its own bytes.
    let other = server.open_lane(to_client.id()).await.unwrap();
    let _ = connected(&mut server_events).await;
    let other_at_client = connected(&mut client_events).await;
    assert_eq!(other_at_client.info().origin, Origin::Lane(to_server.id()));
    other.send(Bytes::from_static(b"other")).await.unwrap();
    to_client.send(Bytes::from_static(b"first")).await.unwrap();
    lane_at_server
        .send(Bytes::from_static(b"back"))
        .await
        .unwrap();
    let want = HashMap::from([
        (other_at_client.id(), 5),
        (to_server.id(), 5),
        (lane.id(), 4),
    ]);
    gather(&mut client_events, &want).await;

    // A lane of a lane, or of a connection that is not one of ours, is
    // refused.
    assert!(matches!(
        client.open_lane(lane.id()).await,
        Err(LinkError::NoLanes(id)) if id == lane.id()
    ));
    assert!(matches!(
        client.open_lane(ConnectionId(u64::MAX)).await,
        Err(LinkError::NoLanes(_))
    ));
    assert_eq!(client.connections().len(), 3);
}

#[tokio::test]
async fn a_bulk_transfer_on_a_lane_does_not_hold_up_the_first_streams_packets() {
    // Each connection, lanes included, sends at most 1 MB/s: the bulk on
    // the lane takes seconds, and a packet sent on the first stream after
    // it has started must not wait for it.
    let mut c = config();
    c.throttle = Some(Throttle::per_second(1_000_000));
    let (to_server, to_client, client, _client_events, _server, mut server_events) = pair(c).await;
    let lane = client.open_lane(to_server.id()).await.unwrap();
    let lane_at_server = connected(&mut server_events).await;
    const BULK: usize = 3_000_000;
    let sender = lane.clone();
    let bulk = tokio::spawn(async move {
        for _ in 0..BULK / 50_000 {
            sender.send(Bytes::from(vec![7u8; 50_000])).await.unwrap();
        }
    });
    // Once the bulk's first bytes arrived, the small packet goes.
    let mut so_far = match next(&mut server_events).await {
        LinkEvent::Data { connection, data } if connection == lane_at_server.id() => data.len(),
        other => panic!("expected the bulk's first bytes, got {other:?}"),
    };
    to_server.send(Bytes::from_static(b"small")).await.unwrap();
    let mut small_at = None;
    while small_at.is_none() || so_far < BULK {
        match next(&mut server_events).await {
            LinkEvent::Data { connection, data } if connection == lane_at_server.id() => {
                so_far += data.len();
            }
            LinkEvent::Data { connection, data } if connection == to_client.id() => {
                assert_eq!(&data[..], b"small");
                small_at = Some(so_far);
            }
            other => panic!("expected data, got {other:?}"),
        }
    }
    bulk.await.unwrap();
    let small_at = small_at.unwrap();
    assert!(
        small_at < BULK / 2,
        "the small packet arrived after {small_at} of the lane's {BULK} bytes"
    );
}

#[tokio::test]
async fn closing_a_connection_ends_its_lanes_after_what_they_sent_arrived() {
    const LANES: u32 = 6;
    let mut c = config();
    c.quic.max_lanes = LANES;
    let (to_server, to_client, client, mut client_events, _server, mut server_events) =
        pair(c).await;
    let mut lanes = Vec::new();
    for _ in 0..LANES {
        lanes.push(client.open_lane(to_server.id()).await.unwrap());
        let _ = connected(&mut client_events).await;
    }
    let mut at_server = Vec::new();
    for _ in 0..LANES {
        at_server.push(connected(&mut server_events).await.id());
    }
    for lane in &lanes {
        lane.send(Bytes::from(vec![1u8; 100_000])).await.unwrap();
    }
    to_server.close();
    // Every lane's bytes arrive whole, each before that lane's end; and
    // every connection ends.
    let mut got: HashMap<ConnectionId, usize> = HashMap::new();
    let mut ended = Vec::new();
    while ended.len() < at_server.len() + 1 {
        match next(&mut server_events).await {
            LinkEvent::Data { connection, data } => {
                assert!(!ended.contains(&connection), "data after the end");
                *got.entry(connection).or_default() += data.len();
            }
            LinkEvent::Disconnected { connection, .. } => ended.push(connection),
            other => panic!("expected data or an end, got {other:?}"),
        }
    }
    assert!(ended.contains(&to_client.id()));
    for c in &at_server {
        assert!(ended.contains(c));
        assert_eq!(got.get(c), Some(&100_000), "{c}");
    }
    let mut ours = 0;
    while ours < lanes.len() + 1 {
        if let LinkEvent::Disconnected { reason, .. } = next(&mut client_events).await {
            assert!(
                matches!(reason, DisconnectReason::Closed),
                "closed cleanly, got {reason}"
            );
            ours += 1;
        }
    }
    assert!(client.connections().is_empty());
    assert!(client.open_lane(to_server.id()).await.is_err());
}

#[tokio::test]
async fn aborting_a_connection_aborts_its_lanes() {
    let (to_server, _to_client, client, mut client_events, _server, _server_events) =
        pair(config()).await;
    let lane = client.open_lane(to_server.id()).await.unwrap();
    let _ = connected(&mut client_events).await;
    to_server.abort();
    tokio::time::timeout(Duration::from_secs(10), lane.closed())
        .await
        .expect("the lane ended with its connection");
}

#[tokio::test]
async fn a_tcp_connection_carries_no_lanes() {
    let (server, mut server_events) = Link::new(config());
    let (client, mut client_events) = Link::new(config());
    let bound = server.listen("tcp://127.0.0.1:0").await.unwrap();
    client.connect(&bound.address).unwrap();
    let conn = connected(&mut client_events).await;
    let _ = connected(&mut server_events).await;
    assert!(!conn.info().lanes);
    assert!(matches!(
        client.open_lane(conn.id()).await,
        Err(LinkError::NoLanes(id)) if id == conn.id()
    ));
}
