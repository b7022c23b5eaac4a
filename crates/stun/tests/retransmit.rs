//! RFC 8489 §6.2.1 retransmission through the tokio shell, on tokio's
//! paused clock: every instant below is exact.

mod common;

use std::time::Duration;

use common::addr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use weft_stun::transaction::RetransmitConfig;
use weft_stun::{ClientConfig, StunClient, StunError, StunMessage, TransactionId};

/// A server that never answers: it reports when each request arrived
/// (relative to `t0`) and its transaction id.
fn record(
    socket: UdpSocket,
    t0: Instant,
) -> (
    mpsc::Receiver<(Duration, TransactionId)>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, _)) = socket.recv_from(&mut buf).await {
            let request = StunMessage::decode(&buf[..n]).expect("a STUN request");
            if tx
                .send((t0.elapsed(), request.transaction_id))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    (rx, task)
}

fn drain(rx: &mut mpsc::Receiver<(Duration, TransactionId)>) -> Vec<(Duration, TransactionId)> {
    let mut out = Vec::new();
    while let Ok(item) = rx.try_recv() {
        out.push(item);
    }
    out
}

fn ms(list: &[(Duration, TransactionId)]) -> Vec<u128> {
    list.iter().map(|(d, _)| d.as_millis()).collect()
}

#[tokio::test(start_paused = true)]
async fn silent_server_gets_rc_requests_then_a_timeout_at_39_5_s() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = silent.local_addr().unwrap();
    let t0 = Instant::now();
    let (mut arrivals, recorder) = record(silent, t0);
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();

    let result = tokio::time::timeout(Duration::from_secs(60), client.binding(target))
        .await
        .expect("the client gives up before 60 s");
    let gave_up = t0.elapsed();
    match result {
        Err(StunError::Timeout {
            server,
            requests,
            elapsed,
        }) => {
            assert_eq!(server, target);
            assert_eq!(requests, 7);
            assert_eq!(elapsed, Duration::from_millis(39_500));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(gave_up, Duration::from_millis(39_500));

    let got = drain(&mut arrivals);
    assert_eq!(ms(&got), [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert!(
        got.iter().all(|(_, id)| *id == got[0].1),
        "retransmissions repeat the transaction id"
    );
    let stats = client.stats();
    assert_eq!(stats.requests_sent, 7);
    assert_eq!(stats.retransmissions, 6);
    assert_eq!(stats.timeouts, 1);

    // Nothing more is sent afterwards.
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(drain(&mut arrivals).is_empty());
    recorder.abort();
}

#[tokio::test(start_paused = true)]
async fn the_schedule_follows_the_configuration() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = silent.local_addr().unwrap();
    let t0 = Instant::now();
    let (mut arrivals, recorder) = record(silent, t0);
    let config = ClientConfig {
        retransmit: RetransmitConfig {
            rto: Duration::from_millis(100),
            rc: 3,
            rm: 2,
        },
        ..ClientConfig::default()
    };
    let client = StunClient::bind(addr("127.0.0.1:0"), &config)
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), client.binding(target))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
    assert_eq!(ms(&drain(&mut arrivals)), [0, 100, 300]);
    recorder.abort();
}

#[tokio::test(start_paused = true)]
async fn concurrent_transactions_keep_their_own_timers() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = silent.local_addr().unwrap();
    let t0 = Instant::now();
    let (mut arrivals, recorder) = record(silent, t0);
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.binding(target).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::time::timeout(Duration::from_secs(60), client.binding(target))
        .await
        .unwrap();
    assert!(second.unwrap_err().is_timeout());
    assert_eq!(t0.elapsed(), Duration::from_millis(39_700));
    let first = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .unwrap()
        .unwrap();
    assert!(first.unwrap_err().is_timeout());
    let got = drain(&mut arrivals);
    let first_id = got[0].1;
    let of = |id_is_first: bool| -> Vec<u128> {
        got.iter()
            .filter(|(_, id)| (*id == first_id) == id_is_first)
            .map(|(d, _)| d.as_millis())
            .collect()
    };
    assert_eq!(of(true), [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert_eq!(of(false), [200, 700, 1_700, 3_700, 7_700, 15_700, 31_700]);
    recorder.abort();
}

#[tokio::test(start_paused = true)]
async fn abandoning_a_binding_stops_its_retransmissions() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = silent.local_addr().unwrap();
    let t0 = Instant::now();
    let (mut arrivals, recorder) = record(silent, t0);
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    // The caller gives up after 2 s (requests at 0, 0.5 and 1.5 s).
    let abandoned = tokio::time::timeout(Duration::from_secs(2), client.binding(target)).await;
    assert!(abandoned.is_err());
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(ms(&drain(&mut arrivals)), [0, 500, 1_500]);
    assert_eq!(client.stats().requests_sent, 3);
    assert_eq!(client.stats().timeouts, 0);
    recorder.abort();
}
