//! Typed topics between two participants on loopback.

mod common;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_participant::{Participant, ParticipantConfig, ParticipantError, TopicFilter};

use common::free_port;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Reading {
    Temp { room: String, celsius: f32 },
    Door(bool),
}

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_arrive_and_a_bad_payload_is_a_counted_error() {
    let port = free_port();
    let here = Participant::start(ParticipantConfig::loopback(port).with_identity("here"))
        .await
        .unwrap();
    let there = Participant::start(ParticipantConfig::loopback(port).with_identity("there"))
        .await
        .unwrap();

    let readings = there.typed_subscriber::<Reading>(TopicFilter::Prefix("readings".into()));
    let typed = here.typed_publisher::<Reading>("readings").unwrap();
    // A raw publisher of the same topic, sending bytes of another shape.
    let raw = here.publisher("readings").unwrap();
    assert!(
        typed
            .raw()
            .wait_for_subscribers(Duration::from_secs(5))
            .await
    );

    let first = Reading::Temp {
        room: "kitchen".into(),
        celsius: 21.5,
    };
    assert_eq!(typed.publish(&first).unwrap(), 1);
    // A variant index past the enum's end, then bytes after a valid value.
    raw.publish([9u8]).unwrap();
    let mut trailing = postcard::to_allocvec(&Reading::Door(true)).unwrap();
    trailing.push(0);
    raw.publish(&trailing).unwrap();
    typed.publish(&Reading::Door(false)).unwrap();

    let got = readings.recv(WAIT).await.unwrap();
    assert_eq!((&*got.topic, got.from.as_str()), ("readings", "here"));
    assert_eq!(got.value, first);
    for _ in 0..2 {
        match readings.recv(WAIT).await {
            Err(ParticipantError::Undecodable { topic, from, .. }) => {
                assert_eq!((&*topic, from.as_str()), ("readings", "here"));
            }
            other => panic!("expected an undecodable publication, got {other:?}"),
        }
    }
    // The subscriber goes on after the errors, in order.
    assert_eq!(
        readings.recv(WAIT).await.unwrap().value,
        Reading::Door(false)
    );
    assert_eq!(readings.undecodable(), 2);
    assert!(readings.try_recv().is_none());
    here.close().await;
    there.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_too_large_for_a_packet_is_refused_not_sent() {
    let port = free_port();
    let mut config = ParticipantConfig::loopback(port).with_identity("big");
    config.messaging.packeter.max_packet = 4096;
    let p = Participant::start(config).await.unwrap();
    let _sub = p.typed_subscriber::<Vec<u8>>(TopicFilter::Prefix("blobs".into()));
    let blobs = p.typed_publisher::<Vec<u8>>("blobs").unwrap();
    assert!(blobs.publish(&vec![1; 100]).is_ok());
    match blobs.publish(&vec![1; 8192]) {
        Err(ParticipantError::Messaging(e)) => {
            assert!(e.to_string().contains("can never be sent"), "{e}");
        }
        other => panic!("expected the packet limit, got {other:?}"),
    }
    p.close().await;
}
