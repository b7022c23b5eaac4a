//! The bounds of issue 16 through the public API, on loopback: what a
//! caller or a remote party controls never panics nor grows without limit.

use std::time::Duration;

use weft_messaging::error::Misuse;
use weft_messaging::storage::MemoryStorage;
use weft_messaging::{Message, Messaging, MessagingError};

mod common;
use common::{WAIT, config, id};

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
