//! Identity messaging over quic:// on loopback: messages both ways with
//! acknowledgements, and a QUIC connection cut again and again losing and
//! duplicating nothing.

use bytes::Bytes;
use std::collections::HashSet;
use weft_messaging::Message;

mod common;
use common::{WAIT, config, id, quic_pair, until};

#[tokio::test]
async fn messages_both_ways_over_quic_are_acknowledged() {
    let (a, b) = quic_pair(config(), config()).await;
    let n = 200u32;
    for i in 0..n {
        b.send_message(
            &id("a"),
            Message::new(Bytes::from(i.to_be_bytes().to_vec())),
        )
        .await
        .unwrap();
        a.send_message(
            &id("b"),
            Message::new(Bytes::from(i.to_be_bytes().to_vec())),
        )
        .await
        .unwrap();
    }
    for i in 0..n {
        let got = a.recv(Some(WAIT)).await.unwrap();
        assert_eq!(got.from.as_str(), "b");
        assert_eq!(&got.message.data[..], &i.to_be_bytes(), "in order");
        let got = b.recv(Some(WAIT)).await.unwrap();
        assert_eq!(got.from.as_str(), "a");
        assert_eq!(&got.message.data[..], &i.to_be_bytes(), "in order");
    }
    assert!(b.flush(WAIT).await, "b's messages acknowledged");
    assert!(a.flush(WAIT).await, "a's messages acknowledged");
    until("both acknowledged", || {
        a.stats().acked == u64::from(n) && b.stats().acked == u64::from(n)
    })
    .await;
}

#[tokio::test]
async fn a_cut_quic_connection_loses_nothing_and_duplicates_nothing() {
    let (a, b) = quic_pair(config(), config()).await;
    let total = 2_000u32;
    let sender = b.clone();
    let sending = tokio::spawn(async move {
        for i in 0..total {
            sender
                .send_message(
                    &id("a"),
                    Message::new(Bytes::from(i.to_be_bytes().to_vec())),
                )
                .await
                .unwrap();
            if i % 200 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    // Cut mid-stream, at chosen points of what has arrived.
    let mut seen = HashSet::new();
    while seen.len() < total as usize {
        let got = a.recv(Some(WAIT)).await.expect("every message arrives");
        let n = u32::from_be_bytes(got.message.data[..].try_into().unwrap());
        assert!(seen.insert(n), "message {n} arrived twice");
        if [300, 900, 1500].contains(&seen.len()) {
            for conn in a.link().connections() {
                conn.abort();
            }
        }
    }
    sending.await.unwrap();
    assert!(b.flush(WAIT).await, "every delivery acknowledged");
    assert!(
        a.default_queue().try_recv().is_none(),
        "no extra copies after all arrived"
    );
    assert_eq!(b.stats().delivered, u64::from(total));
    assert!(b.link().stats().reconnects >= 1, "the connection was cut");
}
