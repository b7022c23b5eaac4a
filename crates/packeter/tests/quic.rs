//! Packets over quic:// link connections: the packeter's framing runs on
//! a QUIC stream unchanged.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{ConnectOptions, LinkConfig, ListenOptions};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

const WAIT: Duration = Duration::from_secs(10);

async fn next(p: &mut Packeter) -> PacketEvent {
    timeout(WAIT, p.recv())
        .await
        .expect("event in time")
        .expect("open")
}

async fn connected(p: &mut Packeter) -> PacketSender {
    match next(p).await {
        PacketEvent::Connected(s) => s,
        other => panic!("expected Connected, got {other:?}"),
    }
}

async fn packet(p: &mut Packeter) -> Bytes {
    match next(p).await {
        PacketEvent::Packet { data, .. } => data,
        other => panic!("expected a packet, got {other:?}"),
    }
}

#[tokio::test]
async fn packets_both_ways_over_quic_in_order() {
    let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let mut server = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let mut client = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let at = server
        .link()
        .listen_with(
            "quic://127.0.0.1:0",
            ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap()),
        )
        .await
        .unwrap()
        .address;
    client
        .link()
        .connect_with(&at, ConnectOptions::tls(pki.client_config(false).unwrap()))
        .unwrap();
    let to_server = connected(&mut client).await;
    let to_client = connected(&mut server).await;
    let sizes = [0usize, 1, 64, 64, 64, 4097, 70_000, 1 << 20];
    let count = 1000usize;
    let sending = tokio::spawn(async move {
        for i in 0..count {
            let size = sizes[i % sizes.len()];
            let mut payload = vec![(i % 251) as u8; size];
            if size >= 8 {
                payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
            }
            to_server.send(Bytes::from(payload)).await.unwrap();
        }
        to_server
    });
    for i in 0..count {
        let got = packet(&mut server).await;
        let size = sizes[i % sizes.len()];
        assert_eq!(got.len(), size, "packet {i}");
        if size >= 8 {
            assert_eq!(&got[..8], &(i as u64).to_be_bytes(), "packet {i}");
        }
    }
    let _to_server = sending.await.unwrap();
    for i in 0..100u32 {
        to_client
            .send(Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    for i in 0..100u32 {
        assert_eq!(
            packet(&mut client).await,
            Bytes::from(i.to_be_bytes().to_vec())
        );
    }
    assert_eq!(server.stats().packets_received, count as u64);
    assert_eq!(client.stats().packets_sent, count as u64);
}
