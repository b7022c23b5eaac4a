//! Calls and signals between RPC peers over quic:// on loopback.

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::timeout;
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{ConnectOptions, LinkConfig, ListenOptions, ReconnectPolicy};
use weft_messaging::{Identity, Messaging, MessagingConfig};
use weft_rpc::{CallOptions, Method, Rpc, RpcConfig};

const WAIT: Duration = Duration::from_secs(10);
const ADD: Method<(i32, i32), i32> = Method::new("calc", "add");
const ECHO: Method<Vec<u8>, Vec<u8>> = Method::new("calc", "echo");

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

async fn peer(name: &str) -> Rpc {
    let mut config = MessagingConfig::default();
    let mut link = LinkConfig::default();
    link.reconnect = ReconnectPolicy::fixed(Duration::from_millis(20));
    config.link = link;
    let m = Messaging::new(id(name), config).await.unwrap();
    Rpc::new(m, RpcConfig::default()).unwrap()
}

#[tokio::test]
async fn calls_over_quic() {
    let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let server = peer("server").await;
    server.register(ADD, |(a, b)| async move { Ok::<_, Infallible>(a + b) });
    server.register(ECHO, |v: Vec<u8>| async move { Ok::<_, Infallible>(v) });
    let at = server
        .messaging()
        .link()
        .listen_with(
            "quic://127.0.0.1:0",
            ListenOptions::tls(
                pki.server_config(ClientAuth::Required(pki.anchors()))
                    .unwrap(),
            ),
        )
        .await
        .unwrap()
        .address;
    let client = peer("client").await;
    client
        .messaging()
        .link()
        .connect_with(&at, ConnectOptions::tls(pki.client_config(true).unwrap()))
        .unwrap();
    let opts = CallOptions::timeout(WAIT);
    assert_eq!(
        client
            .call_with(&id("server"), ADD, (2, 40), opts)
            .await
            .unwrap(),
        42
    );
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = client.clone();
        calls.spawn(async move { (i, client.call_with(&id("server"), ADD, (i, 1), opts).await) });
    }
    while let Some(done) = calls.join_next().await {
        let (i, sum) = done.unwrap();
        assert_eq!(sum.unwrap(), i + 1);
    }
    let big: Vec<u8> = (0..256 * 1024u32).map(|n| (n % 251) as u8).collect();
    let echoed = timeout(
        WAIT,
        client.call_with(&id("server"), ECHO, big.clone(), opts),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(echoed == big);
    assert_eq!(server.stats().calls_executed, 102);
}
