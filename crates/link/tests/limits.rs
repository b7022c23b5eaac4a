//! A listener's connections are bounded (issue 16): past its cap an
//! accepted socket is closed at once and counted, and the listener keeps
//! accepting once a place frees up.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use weft_link::{Link, LinkConfig, LinkEvent, LinkEvents};

const WAIT: Duration = Duration::from_secs(10);

/// The next connection that comes up, skipping other events.
async fn next_connected(events: &mut LinkEvents) -> weft_link::ConnectionId {
    timeout(WAIT, async {
        loop {
            if let Some(LinkEvent::Connected(c)) = events.recv().await {
                return c.id();
            }
        }
    })
    .await
    .expect("a connection came up")
}

/// Waits until `s` is closed by the other end.
async fn closed(s: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed in time")
    {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("read {n} bytes from a refused connection"),
    }
}

#[tokio::test]
async fn a_listener_past_its_cap_closes_new_connections_at_once() {
    let mut config = LinkConfig::default();
    config.max_connections_per_listener = 2;
    let (server, mut events) = Link::new(config);
    let at = server.listen("tcp://127.0.0.1:0").await.unwrap().address;
    let addr = at.socket_addr().unwrap();

    let first = TcpStream::connect(addr).await.unwrap();
    let first_id = next_connected(&mut events).await;
    let _second = TcpStream::connect(addr).await.unwrap();
    next_connected(&mut events).await;
    for _ in 0..3 {
        let mut over = TcpStream::connect(addr).await.unwrap();
        closed(&mut over).await;
    }
    assert_eq!(server.stats().connections_refused, 3);
    assert_eq!(server.connections().len(), 2);

    // A place frees up: the next one is accepted.
    drop(first);
    timeout(WAIT, async {
        loop {
            if let Some(LinkEvent::Disconnected { connection, .. }) = events.recv().await {
                if connection == first_id {
                    return;
                }
            }
        }
    })
    .await
    .unwrap();
    let _third = TcpStream::connect(addr).await.unwrap();
    next_connected(&mut events).await;
    assert_eq!(server.connections().len(), 2);
    assert_eq!(server.stats().connections_refused, 3);
}
