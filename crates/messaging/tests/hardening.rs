//! The bounds of issue 16 through the public API, on loopback: what a
//! caller or a remote party controls never panics nor grows without limit.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use weft_messaging::error::Misuse;
use weft_messaging::storage::MemoryStorage;
use weft_messaging::{Message, Messaging, MessagingError};

mod common;
use common::{WAIT, a_real_peer_is_answered_within_a_second, config, id, until};

#[tokio::test]
async fn the_longest_ttl_saturates_instead_of_panicking() {
    let forever = Duration::from_secs(u64::MAX);
    let a = Messaging::with_storage(id("a"), config(), MemoryStorage::new())
        .await
        .unwrap();
    let at = a.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::new(id("b"), config()).await.unwrap();
    b.send_message(&id("a"), Message::new("plain").with_ttl(forever))
        .await
        .unwrap();
    b.try_send_message(&id("a"), Message::new("try").with_ttl(forever))
        .unwrap();
    a.send_message(
        &id("b"),
        Message::new("stored").with_ttl(forever).persistent(),
    )
    .await
    .unwrap();
    b.link().connect(&at).unwrap();
    for want in ["plain", "try"] {
        let got = a.recv(Some(WAIT)).await.unwrap();
        assert_eq!(&got.message.data[..], want.as_bytes());
    }
    assert_eq!(
        &b.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"stored"
    );
    assert!(a.flush(Duration::MAX).await);
}

#[tokio::test]
async fn a_message_that_can_never_be_sent_is_refused_and_the_rest_arrive() {
    let mut small = config();
    small.packeter.max_packet = 1024;
    let max = 1024 - weft_messaging::internal::frame::MESSAGE_HEAD_LEN;
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let at = a.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::with_storage(id("b"), small, MemoryStorage::new())
        .await
        .unwrap();
    let too_large = |e| matches!(e, MessagingError::Misuse(Misuse::MessageTooLarge { size, max: m }) if size > max && m == max);
    let big = || Message::new(vec![7u8; max + 1]);
    assert!(too_large(
        b.send_message(&id("a"), big()).await.unwrap_err()
    ));
    assert!(too_large(
        b.send_message(&id("a"), big().persistent())
            .await
            .unwrap_err()
    ));
    assert!(too_large(b.try_send_message(&id("a"), big()).unwrap_err()));
    assert!(too_large(b.publish("t", vec![7u8; max]).unwrap_err()));
    assert_eq!(b.queue_depth(&id("a")), 0);
    for i in 0..4u8 {
        b.send_message(&id("a"), Message::new(vec![i; max]))
            .await
            .unwrap();
    }
    b.link().connect(&at).unwrap();
    for i in 0..4u8 {
        let got = a.recv(Some(WAIT)).await.unwrap();
        assert_eq!(&got.message.data[..], &vec![i; max][..]);
    }
    assert!(b.flush(WAIT).await);
}

#[tokio::test]
async fn connections_that_never_identify_do_not_keep_a_real_peer_out() {
    const CAP: usize = 64;
    let mut config_a = config();
    config_a.max_unidentified = CAP;
    let a = Messaging::new(id("a"), config_a).await.unwrap();
    let at = a.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let addr = at.to_string().trim_start_matches("tcp://").to_owned();
    // Each sends VERSION (a whole packet) and then nothing, ever.
    let mut silent = Vec::new();
    for _ in 0..CAP + 36 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&[0, 0, 0, 5, 0, 0, 0, 0, 1]).await.unwrap();
        silent.push(s);
    }
    until("the oldest silent connections to be closed", || {
        a.stats().unidentified_evicted >= 36
    })
    .await;
    // The oldest was closed by the server: it reads to the end.
    let mut rest = Vec::new();
    timeout(WAIT, silent[0].read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();

    let _b = a_real_peer_is_answered_within_a_second(&a, &at).await;
    // b's own connection, unidentified for a round trip, made room too.
    assert_eq!(a.stats().unidentified_evicted, 37);
    drop(silent);
}
