//! The bounds of issue 16 through the public API, on loopback: what a
//! caller or a remote party controls never panics nor grows without limit.

use std::time::Duration;

use weft_messaging::storage::MemoryStorage;
use weft_messaging::{Message, Messaging};

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
