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

/// Two peers over quic:// on loopback: `a` listens (with a certificate
/// for 127.0.0.1), `b` connects to it.
pub(crate) async fn quic_pair(
    config_a: MessagingConfig,
    config_b: MessagingConfig,
) -> (weft_messaging::Messaging, weft_messaging::Messaging) {
    use weft_link::tls::{ClientAuth, SelfSignedPki};
    use weft_link::{ConnectOptions, ListenOptions};
    let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let a = weft_messaging::Messaging::new(id("a"), config_a)
        .await
        .unwrap();
    let at = a
        .link()
        .listen_with(
            "quic://127.0.0.1:0",
            ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap()),
        )
        .await
        .unwrap()
        .address;
    let b = weft_messaging::Messaging::new(id("b"), config_b)
        .await
        .unwrap();
    b.link()
        .connect_with(&at, ConnectOptions::tls(pki.client_config(false).unwrap()))
        .unwrap();
    (a, b)
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

/// The most one round trip may take, however busy the machine is with
/// other work: past it, the peer was not served.
pub(crate) const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(5);

/// What a served peer expects of a round trip: the quickest of a few
/// rounds (or their median) must be under it.
pub(crate) const ANSWERED: Duration = Duration::from_secs(1);

/// `b` sends `ping {n}` to `a`, which answers `pong {n}`; how long that
/// took. Panics past [`ROUND_TRIP_LIMIT`].
pub(crate) async fn round_trip(
    a: &weft_messaging::Messaging,
    b: &weft_messaging::Messaging,
    n: usize,
) -> Duration {
    use weft_messaging::Message;
    let started = std::time::Instant::now();
    let round = async {
        b.send_message(&id("a"), Message::new(format!("ping {n}")))
            .await
            .unwrap();
        let got = a.recv(None).await.unwrap();
        assert_eq!(got.message.data, format!("ping {n}"));
        a.send_message(&id("b"), Message::new(format!("pong {n}")))
            .await
            .unwrap();
        let got = b.recv(None).await.unwrap();
        assert_eq!(got.message.data, format!("pong {n}"));
    };
    timeout(ROUND_TRIP_LIMIT, round)
        .await
        .unwrap_or_else(|_| panic!("round trip {n} took over {ROUND_TRIP_LIMIT:?}"));
    started.elapsed()
}

/// `b` connects to `a` at `at` and, once identified, the two exchange
/// three pings and pongs: each within [`ROUND_TRIP_LIMIT`], the quickest
/// within [`ANSWERED`] (a second), which is what a real peer expects from
/// `a` whatever else `a` is going through. Returns `b`, still connected.
pub(crate) async fn a_real_peer_is_answered_within_a_second(
    a: &weft_messaging::Messaging,
    at: &weft_link::Address,
) -> weft_messaging::Messaging {
    use weft_messaging::Messaging;
    let b = Messaging::new(id("b"), config()).await.unwrap();
    b.link().connect(at).unwrap();
    until("b to be identified", || a.is_connected(&id("b"))).await;
    let mut quickest = ROUND_TRIP_LIMIT;
    for n in 0..3 {
        quickest = quickest.min(round_trip(a, &b, n).await);
    }
    assert!(
        quickest < ANSWERED,
        "the quickest round trip took {quickest:?}"
    );
    b
}
