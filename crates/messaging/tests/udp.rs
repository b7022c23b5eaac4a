//! Identity messaging over udp:// on loopback: what the TCP tests check
//! where it applies (messages both ways, acknowledged), a listener that
//! restarts on its port while messages flow (on loopback no datagram is
//! lost, so the restart is the cut), and keep-alive ending a connection to
//! a peer that is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use weft_messaging::storage::MemoryStorage;
use weft_messaging::{Message, Messaging, MessagingConfig};

mod common;
use common::{WAIT, config, id, until};

/// `a` listens on udp://, `b` connects to it.
async fn pair(config_a: MessagingConfig, config_b: MessagingConfig) -> (Messaging, Messaging) {
    let a = Messaging::new(id("a"), config_a).await.unwrap();
    let at = a.link().listen("udp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::new(id("b"), config_b).await.unwrap();
    b.link().connect(&at).unwrap();
    (a, b)
}

fn numbered(i: u32) -> Message {
    Message::new(Bytes::from(i.to_be_bytes().to_vec()))
}

fn number(data: &[u8]) -> u32 {
    u32::from_be_bytes(data.try_into().expect("4 bytes"))
}

/// Counts `m`'s connects and disconnects.
fn count_connections(m: &Messaging) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let connects = Arc::new(AtomicUsize::new(0));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let c = connects.clone();
    m.on_connect(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let d = disconnects.clone();
    m.on_disconnect(move |_| {
        d.fetch_add(1, Ordering::SeqCst);
    });
    (connects, disconnects)
}

#[tokio::test]
async fn messages_both_ways_over_udp_are_acknowledged() {
    let (a, b) = pair(config(), config()).await;
    let n = 200u32;
    for i in 0..n {
        b.send_message(&id("a"), numbered(i)).await.unwrap();
        a.send_message(&id("b"), numbered(i)).await.unwrap();
        // A window of 50 in flight: a loopback socket's buffer never
        // overflows.
        if i % 50 == 49 {
            assert!(b.flush(WAIT).await, "b's window acknowledged");
            assert!(a.flush(WAIT).await, "a's window acknowledged");
        }
    }
    for i in 0..n {
        let got = a.recv(Some(WAIT)).await.unwrap();
        assert_eq!(got.from.as_str(), "b");
        assert_eq!(number(&got.message.data), i, "in order");
        let got = b.recv(Some(WAIT)).await.unwrap();
        assert_eq!(got.from.as_str(), "a");
        assert_eq!(number(&got.message.data), i, "in order");
    }
    until("both acknowledged", || {
        a.stats().acked == u64::from(n) && b.stats().acked == u64::from(n)
    })
    .await;
}

#[tokio::test]
async fn a_udp_listener_that_restarts_on_its_port_gets_everything_exactly_once() {
    // The listener's received ids are kept in a store that its restart
    // opens again, so what it took before the restart and sees again
    // after it is recognised: each message is delivered once across both
    // runs.
    let store = MemoryStorage::new();
    let a = Messaging::with_storage(id("a"), config(), store.clone())
        .await
        .unwrap();
    let at = a.link().listen("udp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::new(id("b"), config()).await.unwrap();
    let (connects, disconnects) = count_connections(&b);
    b.link().connect(&at).unwrap();

    let mut got: HashMap<u32, usize> = HashMap::new();
    let mut take = |data: &[u8]| *got.entry(number(data)).or_default() += 1;
    // Before the restart: 200 messages in windows of 50, all received;
    // the last window's acknowledgements may still be on their way.
    for i in 0..200 {
        b.send_message(&id("a"), numbered(i)).await.unwrap();
        if i % 50 == 49 {
            for _ in 0..50 {
                take(&a.recv(Some(WAIT)).await.unwrap().message.data);
            }
        }
    }
    a.close().await;
    drop(a);

    // While the listener is gone: 50 more, into the void.
    for i in 200..250 {
        b.send_message(&id("a"), numbered(i)).await.unwrap();
    }
    assert!(b.is_connected(&id("a")), "UDP shows no end");

    // The listener starts again on its port; b's next message reaches it,
    // and b meets it again.
    let a = Messaging::with_storage(id("a"), config(), store.clone())
        .await
        .unwrap();
    let again = a.link().listen(at.clone()).await.unwrap().address;
    assert_eq!(again, at);
    b.send_message(&id("a"), numbered(250)).await.unwrap();
    until("b met the restarted listener", || {
        connects.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(
        disconnects.load(Ordering::SeqCst),
        1,
        "the restart was reported"
    );
    for i in 251..300 {
        b.send_message(&id("a"), numbered(i)).await.unwrap();
    }
    assert!(b.flush(WAIT).await, "everything acknowledged");
    while let Some(r) = a.default_queue().try_recv() {
        take(&r.message.data);
    }
    for i in 0..300 {
        assert_eq!(got.get(&i), Some(&1), "message {i} delivered once");
    }
    assert_eq!(got.len(), 300);
    assert_eq!(b.stats().delivered, 300);
    assert!(b.stats().resent >= 50, "what went into the void came again");
    assert_eq!(connects.load(Ordering::SeqCst), 2);
    assert_eq!(disconnects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_udp_peer_that_is_gone_is_reported_disconnected_by_keepalive() {
    let mut quick = config();
    quick.keepalive_interval = Some(Duration::from_millis(50));
    quick.keepalive_wait = Duration::from_millis(50);
    let (a, b) = pair(config(), quick).await;
    let (_, disconnects) = count_connections(&b);
    b.send_message(&id("a"), numbered(1)).await.unwrap();
    assert_eq!(number(&a.recv(Some(WAIT)).await.unwrap().message.data), 1);
    assert!(b.flush(WAIT).await);
    a.close().await;
    drop(a);
    until("b noticed a is gone", || {
        disconnects.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(!b.is_connected(&id("a")));
    assert!(b.stats().protocol_errors >= 1, "a keep-alive timeout");
}

#[tokio::test]
async fn a_quiet_sender_meets_a_restarted_udp_listener_through_keepalive() {
    // Nothing more is sent after the restart: b's keep-alive PING is the
    // datagram the restarted listener greets, and what b had in flight
    // arrives.
    let mut quick = config();
    quick.keepalive_interval = Some(Duration::from_millis(50));
    quick.keepalive_wait = Duration::from_secs(5);
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let at = a.link().listen("udp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::new(id("b"), quick).await.unwrap();
    let (connects, disconnects) = count_connections(&b);
    b.link().connect(&at).unwrap();
    b.send_message(&id("a"), numbered(0)).await.unwrap();
    assert_eq!(number(&a.recv(Some(WAIT)).await.unwrap().message.data), 0);
    assert!(b.flush(WAIT).await);
    a.close().await;
    drop(a);
    for i in 1..10 {
        b.send_message(&id("a"), numbered(i)).await.unwrap();
    }
    let a = Messaging::new(id("a"), config()).await.unwrap();
    a.link().listen(at.clone()).await.unwrap();
    for i in 1..10 {
        assert_eq!(number(&a.recv(Some(WAIT)).await.unwrap().message.data), i);
    }
    assert!(b.flush(WAIT).await, "everything acknowledged");
    assert!(a.default_queue().try_recv().is_none(), "nothing twice");
    assert_eq!(connects.load(Ordering::SeqCst), 2);
    assert_eq!(disconnects.load(Ordering::SeqCst), 1);
}
