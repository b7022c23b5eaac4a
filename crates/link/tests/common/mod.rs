//! Helpers shared by the link's integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use tokio::time::timeout;
use weft_link::tls::SelfSignedPki;
use weft_link::{Connection, ConnectionId, LinkConfig, LinkEvent, LinkEvents, ReconnectPolicy};

/// The longest any one wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Defaults, with connectors that retry every 20 ms.
pub(crate) fn config() -> LinkConfig {
    let mut c = LinkConfig::default();
    c.reconnect = ReconnectPolicy::fixed(Duration::from_millis(20));
    c
}

/// A certificate authority and certificates for loopback names.
pub(crate) fn pki() -> SelfSignedPki {
    SelfSignedPki::generate(&["localhost", "127.0.0.1", "::1"]).unwrap()
}

/// The next event, within [`WAIT`].
pub(crate) async fn next(events: &mut LinkEvents) -> LinkEvent {
    timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("link still open")
}

/// The next `Connected`, skipping informational events.
pub(crate) async fn connected(events: &mut LinkEvents) -> Connection {
    loop {
        match next(events).await {
            LinkEvent::Connected(c) => return c,
            LinkEvent::ConnectFailed { .. } | LinkEvent::AcceptFailed { .. } => {}
            other => panic!("expected Connected, got {other:?}"),
        }
    }
}

/// Gathers `n` bytes of data for `conn` (a stream may split or join sends).
pub(crate) async fn read_exactly(events: &mut LinkEvents, conn: ConnectionId, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match next(events).await {
            LinkEvent::Data { connection, data } if connection == conn => {
                got.extend_from_slice(&data)
            }
            other => panic!("expected data for {conn}, got {other:?}"),
        }
    }
    assert_eq!(got.len(), n, "no more than was sent");
    got
}
