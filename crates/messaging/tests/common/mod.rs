//! Helpers shared by the messaging integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use tokio::time::timeout;
use weft_link::{LinkConfig, ReconnectPolicy};
use weft_messaging::{Identity, MessagingConfig};

/// The longest any one wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// An identity from a name known to be valid.
pub(crate) fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

/// Defaults, with connectors that retry every 20 ms.
pub(crate) fn config() -> MessagingConfig {
    let mut c = MessagingConfig::default();
    let mut link = LinkConfig::default();
    link.reconnect = ReconnectPolicy::fixed(Duration::from_millis(20));
    c.link = link;
    c
}

/// Polls `check` every 5 ms until it holds, at most [`WAIT`].
pub(crate) async fn until(what: &str, mut check: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// `b` connects to `a` at `at` and, once identified, the two exchange a
/// ping and a pong, which must take less than a second: what a real peer
/// expects from `a` whatever else `a` is going through. Returns `b`, still
/// connected.
pub(crate) async fn a_real_peer_is_answered_within_a_second(
    a: &weft_messaging::Messaging,
    at: &weft_link::Address,
) -> weft_messaging::Messaging {
    use weft_messaging::{Message, Messaging};
    let b = Messaging::new(id("b"), config()).await.unwrap();
    b.link().connect(at).unwrap();
    until("b to be identified", || a.is_connected(&id("b"))).await;
    let exchange = async {
        b.send_message(&id("a"), Message::new("ping"))
            .await
            .unwrap();
        let got = a.recv(None).await.unwrap();
        assert_eq!(&got.message.data[..], b"ping");
        a.send_message(&id("b"), Message::new("pong"))
            .await
            .unwrap();
        b.recv(None).await.unwrap()
    };
    let got = timeout(Duration::from_secs(1), exchange)
        .await
        .expect("a round trip within 1 s");
    assert_eq!(&got.message.data[..], b"pong");
    b
}
