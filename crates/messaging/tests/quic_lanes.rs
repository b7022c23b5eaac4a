//! The data lane over quic:// on loopback: bulk on the data lane and small
//! messages on the control lane each arrive once and in order, the bulk
//! on a lane of the connection; and with connections cut again and again,
//! nothing on either lane is lost, duplicated or reordered.

use std::collections::HashSet;

use bytes::Bytes;
use weft_link::connection::Origin;
use weft_messaging::{Lane, Message};

mod common;
use common::{WAIT, config, id, quic_pair};

/// A numbered message on `lane`, `size` bytes long.
fn numbered(n: u32, lane: Lane, size: usize) -> Message {
    let mut data = vec![0u8; size.max(4)];
    data[..4].copy_from_slice(&n.to_be_bytes());
    Message::new(Bytes::from(data)).on_lane(lane)
}

fn number(m: &Message) -> u32 {
    u32::from_be_bytes(m.data[..4].try_into().unwrap())
}

#[tokio::test]
async fn bulk_on_the_data_lane_and_small_messages_each_arrive_once_in_order() {
    let (a, b) = quic_pair(config(), config()).await;
    const BULK: u32 = 40;
    const SMALL: u32 = 400;
    let sender = b.clone();
    let sending = tokio::spawn(async move {
        for i in 0..SMALL {
            if i % 10 == 0 {
                let big = numbered(i / 10, Lane::Data, 256 * 1024);
                sender.send_message(&id("a"), big).await.unwrap();
            }
            let small = numbered(i, Lane::Control, 64);
            sender.send_message(&id("a"), small).await.unwrap();
        }
    });
    let (mut bulk, mut small) = (0, 0);
    while bulk < BULK || small < SMALL {
        let got = a.recv(Some(WAIT)).await.expect("every message arrives");
        assert_eq!(got.from.as_str(), "b");
        match got.message.lane() {
            Lane::Data => {
                assert_eq!(number(&got.message), bulk, "the data lane in order");
                assert_eq!(got.message.data.len(), 256 * 1024);
                bulk += 1;
            }
            Lane::Control => {
                assert_eq!(number(&got.message), small, "the control lane in order");
                small += 1;
            }
        }
    }
    sending.await.unwrap();
    assert!(b.flush(WAIT).await, "every delivery acknowledged");
    assert_eq!(b.stats().delivered, u64::from(BULK + SMALL));
    // The bulk went on a lane of b's connection to a.
    let conns = b.link().connections();
    assert_eq!(conns.len(), 2, "the connection and its lane");
    let first = conns
        .iter()
        .find(|c| c.info().lanes)
        .expect("the connection");
    assert!(
        conns
            .iter()
            .any(|c| c.info().origin == Origin::Lane(first.id())),
        "a lane beside it"
    );
    assert!(a.default_queue().try_recv().is_none(), "nothing more");
}

#[tokio::test]
async fn cut_connections_lose_duplicate_and_reorder_nothing_on_either_lane() {
    let (a, b) = quic_pair(config(), config()).await;
    let total = 1_500u32;
    let sender = b.clone();
    let sending = tokio::spawn(async move {
        for i in 0..total {
            let lane = if i % 3 == 0 {
                Lane::Data
            } else {
                Lane::Control
            };
            sender
                .send_message(&id("a"), numbered(i, lane, 2_000))
                .await
                .unwrap();
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut seen = HashSet::new();
    let mut last = [None::<u32>; 2];
    while seen.len() < total as usize {
        let got = a.recv(Some(WAIT)).await.expect("every message arrives");
        let n = number(&got.message);
        assert!(seen.insert(n), "message {n} arrived twice");
        let lane = usize::from(got.message.lane() == Lane::Data);
        assert_eq!(lane == 1, n % 3 == 0, "message {n} on its lane");
        // Within a lane, in order across the cuts too: what was in
        // flight on a cut lane is resent first, and what had arrived of
        // it is dropped as a duplicate.
        assert!(last[lane].is_none_or(|l| n > l), "message {n} out of order");
        last[lane] = Some(n);
        if [200, 700, 1200].contains(&seen.len()) {
            // Cuts every connection of a, lanes and all.
            for conn in a.link().connections() {
                conn.abort();
            }
        }
    }
    sending.await.unwrap();
    assert!(b.flush(WAIT).await, "every delivery acknowledged");
    assert_eq!(b.stats().delivered, u64::from(total));
    assert!(a.default_queue().try_recv().is_none(), "no extra copies");
    assert!(b.link().stats().reconnects >= 1, "the connection was cut");
}
