//! Packets over real link connections and in-memory streams.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;
use weft_link::{Link, LinkConfig, LinkError};
use weft_packeter::codec::{PacketError, encode};
use weft_packeter::{
    PacketDisconnect, PacketEvent, PacketSender, Packeter, PacketerConfig, PacketerError,
};

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

fn config(max_packet: usize) -> PacketerConfig {
    let mut c = PacketerConfig::default();
    c.max_packet = max_packet;
    c
}

/// A packeter whose one connection is an in-memory stream; the test holds
/// the other end and writes raw bytes.
async fn over_duplex(max_packet: usize) -> (Packeter, PacketSender, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (link, events) = Link::new(LinkConfig::default());
    let mut p = Packeter::with_link(link, events, config(max_packet));
    p.link().adopt(ours, None, None).unwrap();
    let sender = connected(&mut p).await;
    (p, sender, theirs)
}

fn wire(payloads: &[&[u8]]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for p in payloads {
        encode(p, &mut b);
    }
    b.to_vec()
}

#[tokio::test]
async fn many_packets_both_ways_over_tcp_in_order() {
    let mut server = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let mut client = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let at = server
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    client.link().connect(&at).unwrap();
    let to_server = connected(&mut client).await;
    let to_client = connected(&mut server).await;
    let sizes = [0usize, 1, 63, 64, 1000, 4096, 4097, 70_000, 1 << 20];
    let sending = tokio::spawn(async move {
        for i in 0..2000usize {
            let size = sizes[i % sizes.len()];
            let mut payload = vec![(i % 251) as u8; size];
            if size >= 8 {
                payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
            }
            to_server.send(Bytes::from(payload)).await.unwrap();
        }
        to_server
    });
    for i in 0..2000usize {
        let got = packet(&mut server).await;
        let size = sizes[i % sizes.len()];
        assert_eq!(got.len(), size, "packet {i}");
        if size >= 8 {
            assert_eq!(&got[..8], &(i as u64).to_be_bytes());
        }
    }
    let to_server = sending.await.unwrap();
    to_client.send(Bytes::from_static(b"done")).await.unwrap();
    assert_eq!(packet(&mut client).await, "done");
    assert_eq!(server.stats().packets_received, 2000);
    assert_eq!(client.stats().packets_sent, 2000);
    drop(to_server);
}

#[tokio::test]
async fn bytes_arriving_one_at_a_time() {
    let (mut p, _sender, mut raw) = over_duplex(1024).await;
    let bytes = wire(&[b"hello", b"", b"world!"]);
    let writer = tokio::spawn(async move {
        for b in bytes {
            raw.write_all(&[b]).await.unwrap();
            raw.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        raw
    });
    assert_eq!(packet(&mut p).await, "hello");
    assert_eq!(packet(&mut p).await, "");
    assert_eq!(packet(&mut p).await, "world!");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn many_packets_in_one_read() {
    let (mut p, _sender, mut raw) = over_duplex(1024).await;
    let payloads: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().repeat(3)).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    raw.write_all(&wire(&refs)).await.unwrap();
    for want in &payloads {
        assert_eq!(&packet(&mut p).await[..], &want[..]);
    }
    assert_eq!(p.stats().packets_received, 500);
}

#[tokio::test]
async fn many_at_once_in_order_up_to_the_limit_then_the_end() {
    let (mut p, _sender, mut raw) = over_duplex(1024).await;
    let payloads: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    raw.write_all(&wire(&refs)).await.unwrap();
    // A truncated packet after them, then the end.
    raw.write_all(&[0, 0, 0, 9, 1]).await.unwrap();
    drop(raw);
    let mut got = Vec::new();
    let mut ended = None;
    for _ in 0..1000 {
        let mut batch = Vec::new();
        let n = timeout(WAIT, p.recv_many(&mut batch, 64))
            .await
            .expect("events in time");
        assert!((1..=64).contains(&n), "{n} events, at most 64 asked");
        assert_eq!(batch.len(), n);
        for e in batch {
            match e {
                PacketEvent::Packet { data, .. } => {
                    assert!(ended.is_none(), "a packet after the end");
                    got.push(data.to_vec());
                }
                PacketEvent::Disconnected { reason, .. } => ended = Some(reason),
                other => panic!("{other:?}"),
            }
        }
        if ended.is_some() {
            break;
        }
    }
    assert_eq!(got, payloads, "every packet, in order, before the end");
    assert!(matches!(
        ended,
        Some(PacketDisconnect::Packet(PacketError::Truncated {
            have: 5,
            need: 13
        }))
    ));
    // Once the link is closed and drained: 0, with nothing added.
    p.link().close().await;
    let mut rest = Vec::new();
    assert_eq!(timeout(WAIT, p.recv_many(&mut rest, 64)).await.unwrap(), 0);
    assert!(rest.is_empty());
}

#[tokio::test]
async fn zero_length_packets_go_both_ways() {
    let (mut p, sender, mut raw) = over_duplex(16).await;
    sender.send(Bytes::new()).await.unwrap();
    let mut got = [0u8; 4];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(got, [0, 0, 0, 0]);
    raw.write_all(&[0, 0, 0, 0]).await.unwrap();
    assert_eq!(packet(&mut p).await, "");
}

#[tokio::test]
async fn an_oversized_length_closes_that_connection_only() {
    let mut server = Packeter::new(LinkConfig::default(), config(1000));
    let at = server
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let addr = at.socket_addr().unwrap();

    // A well-behaved peer, and a bad one announcing 4 GiB.
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    let good_id = connected(&mut server).await.id();
    let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
    let bad_id = connected(&mut server).await.id();
    bad.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    match next(&mut server).await {
        PacketEvent::Disconnected { connection, reason } => {
            assert_eq!(connection, bad_id);
            assert!(matches!(
                reason,
                PacketDisconnect::Packet(PacketError::TooLarge {
                    len: 4_294_967_295,
                    max: 1000
                })
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().oversized, 1);
    // The bad peer sees its connection closed.
    let mut sink = [0u8; 16];
    let n = timeout(WAIT, bad.read(&mut sink))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The good one is untouched.
    good.write_all(&wire(&[b"still here"])).await.unwrap();
    match next(&mut server).await {
        PacketEvent::Packet { connection, data } => {
            assert_eq!(connection, good_id);
            assert_eq!(data, "still here");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_truncated_packet_is_reported() {
    let (mut p, _sender, mut raw) = over_duplex(1000).await;
    raw.write_all(&[0, 0, 0, 10, b'a', b'b']).await.unwrap();
    drop(raw);
    match next(&mut p).await {
        PacketEvent::Disconnected { reason, .. } => assert!(matches!(
            reason,
            PacketDisconnect::Packet(PacketError::Truncated { have: 6, need: 14 })
        )),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.stats().truncated, 1);
}

#[tokio::test]
async fn sending_over_the_limit_is_refused() {
    let (_p, sender, _raw) = over_duplex(10).await;
    assert!(matches!(
        sender.try_send(Bytes::from(vec![0u8; 11])),
        Err(PacketerError::Packet(PacketError::TooLarge {
            len: 11,
            max: 10
        }))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn packets_queued_together_leave_in_one_write() {
    let (_p, sender, mut raw) = over_duplex(1000).await;
    // Queue 100 packets without yielding: the connection's task cannot run
    // in between, so it finds them all queued at once.
    for i in 0..100u32 {
        sender
            .try_send(Bytes::copy_from_slice(&i.to_be_bytes()))
            .unwrap();
    }
    let mut buf = vec![0u8; 64 << 10];
    let n = timeout(WAIT, raw.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(
        n,
        100 * 8,
        "one read saw every packet: they were written at once"
    );
}

#[tokio::test]
async fn the_send_queue_is_bounded() {
    let mut link_config = LinkConfig::default();
    link_config.send_queue_bytes = 4096;
    let (ours, theirs) = tokio::io::duplex(1024);
    let (link, events) = Link::new(link_config);
    let mut p = Packeter::with_link(link, events, PacketerConfig::default());
    p.link().adopt(ours, None, None).unwrap();
    let sender = connected(&mut p).await;
    let payload = Bytes::from(vec![0u8; 1000]);
    let mut accepted = 0;
    let full = loop {
        match sender.try_send(payload.clone()) {
            Ok(()) => accepted += 1,
            Err(PacketerError::Link(LinkError::QueueFull)) => break true,
            Err(e) => panic!("{e}"),
        }
        if accepted > 100 {
            break false;
        }
        tokio::task::yield_now().await;
    };
    assert!(full, "try_send never reported a full queue");
    // `send` waits instead, and completes once the peer reads.
    let waiting = tokio::spawn({
        let sender = sender.clone();
        let payload = payload.clone();
        async move { sender.send(payload).await }
    });
    let mut theirs = theirs;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut total = 0;
        while total < (accepted + 1) * 1004 {
            total += theirs.read(&mut buf).await.unwrap();
        }
        total
    });
    timeout(WAIT, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(
        timeout(WAIT, reader).await.unwrap().unwrap(),
        (accepted + 1) * 1004
    );
}

#[tokio::test]
async fn over_udp_a_datagram_is_a_packet_without_prefix() {
    let mut server = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let at = server
        .link()
        .listen("udp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.connect(at.socket_addr().unwrap()).await.unwrap();
    raw.send(b"datagram one").await.unwrap();
    let to_raw = connected(&mut server).await;
    assert_eq!(packet(&mut server).await, "datagram one");
    to_raw.send(Bytes::from_static(b"reply")).await.unwrap();
    let mut buf = [0u8; 64];
    let n = timeout(WAIT, raw.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"reply", "no length prefix over UDP");
}

#[tokio::test]
async fn packets_over_packeters_on_udp() {
    let mut server = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let mut client = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let at = server.link().listen("udp://[::1]:0").await.unwrap().address;
    client.link().connect(&at).unwrap();
    let to_server = connected(&mut client).await;
    to_server
        .send(Bytes::from_static(b"over v6"))
        .await
        .unwrap();
    let _ = connected(&mut server).await;
    assert_eq!(packet(&mut server).await, "over v6");
}

#[tokio::test]
async fn a_packet_in_parts_is_one_packet() {
    let (mut p, sender, mut raw) = over_duplex(100).await;
    sender
        .send_parts(b"head:", &Bytes::from_static(b"body"))
        .await
        .unwrap();
    sender
        .try_send_parts(b"", &Bytes::from_static(b"x"))
        .unwrap();
    let mut got = [0u8; 4 + 9 + 4 + 1];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"\0\0\0\x09head:body\0\0\0\x01x");
    assert!(matches!(
        sender.try_send_parts(&[0u8; 65], &Bytes::new()),
        Err(PacketerError::HeadTooLong { len: 65, max: 64 })
    ));
    assert!(matches!(
        sender.try_send_parts(&[0u8; 50], &Bytes::from(vec![0u8; 51])),
        Err(PacketerError::Packet(PacketError::TooLarge {
            len: 101,
            max: 100
        }))
    ));
    sender.ready().await.unwrap();
    raw.write_all(&wire(&[b"in"])).await.unwrap();
    assert_eq!(packet(&mut p).await, "in");
}
