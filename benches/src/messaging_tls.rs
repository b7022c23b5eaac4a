//! `messaging 64 B tls bind-identity`: what identities bound to
//! certificates cost. Two `Messaging` peers exchange 64-byte messages (acks
//! on) over tls:// with mutual TLS and
//! [`MessagingConfig::bind_identity`] on both sides, against the same two
//! peers over plain tcp://, alternating in the same rounds. The load and
//! timing are the `messaging 64 B` rows': warm-up, then from the first
//! timed send to the last receive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};
use weft_link::Address;
use weft_link::tls::SelfSignedPki;
use weft_messaging::{Identity, Messaging, MessagingConfig};

use crate::Scale;
use crate::harness::{self, LIMIT, ctx};
use crate::messaging::send_burst;
use crate::report::{Report, Row, Target};
use crate::secure::{self, SERVER_NAME, Secure};
use crate::series::Series;
use crate::throughput::Load;

/// The row's name.
pub(crate) const CASE: &str = "messaging 64 B tls bind-identity";

/// The receiver's identity: the DNS name of its server certificate.
const RECEIVER: &str = SERVER_NAME;
/// The sender's identity: the name of [`SelfSignedPki`]'s client certificate.
const SENDER: &str = "weft-client";

/// The load of a messaging 64 B row over a transport with TLS.
pub(crate) fn load(scale: Scale) -> Load {
    Load {
        size: 64,
        warm: 100_000,
        count: if scale.quick { 1_000_000 } else { 3_000_000 },
    }
}

/// Runs the row.
pub(crate) fn run(scale: Scale, report: &mut Report) {
    let load = load(scale);
    let pki = match SelfSignedPki::generate(&[RECEIVER]) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            let failed = Series::single(Err(format!("certificates: {e}")), "");
            report.row(Row::compare(
                CASE,
                "msg/s",
                &failed,
                "tcp://",
                &failed,
                Target::RatioAtLeast(0.8),
            ));
            return;
        }
    };
    let mut tls = Series::default();
    let mut tcp = Series::default();
    for round in 0..scale.rounds {
        eprintln!("{CASE}: round {}/{}", round + 1, scale.rounds);
        if tls.live() {
            tls.push(once(Some(Secure::tls(pki.clone())), load).map(|t| rate(load.count, t)));
        }
        if tcp.live() {
            tcp.push(once(None, load).map(|t| rate(load.count, t)));
        }
    }
    report.row(Row::compare(
        CASE,
        "msg/s",
        &tls,
        "tcp://",
        &tcp,
        Target::RatioAtLeast(0.8),
    ));
    report.note(format!(
        "{CASE}: two Messaging peers on their own threads and current-thread runtimes, acks \
         on, over tls:// with mutual TLS (rustls, TLS 1.3) and bind_identity on both sides \
         against the same peers over tcp://; {} messages timed after {} of warm-up",
        load.count, load.warm
    ));
}

pub(crate) fn rate(count: u64, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

fn config(bind: bool) -> MessagingConfig {
    let mut config = MessagingConfig::default();
    config.bind_identity = bind;
    config
}

/// One measurement with binding over `over` (tls:// or quic://), or
/// without over tcp:// (`None`).
pub(crate) fn once(over: Option<Secure>, load: Load) -> Result<Duration, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<Address>();
    let (warm_tx, warm_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let server_over = over.clone();
    let receiver = move || {
        harness::block_on(LIMIT, async move {
            let me = Identity::new(RECEIVER).map_err(ctx("identity"))?;
            let m = Messaging::new(me, config(server_over.is_some()))
                .await
                .map_err(ctx("starting the receiver"))?;
            m.unsubscribe(0);
            let got = Arc::new(AtomicU64::new(0));
            let arrived = Arc::new(Notify::new());
            let (g, a) = (got.clone(), arrived.clone());
            let marks = [load.warm, load.warm + load.count];
            m.on_message(move |_| {
                let n = g.fetch_add(1, Ordering::Relaxed) + 1;
                if marks.contains(&n) {
                    a.notify_one();
                }
            });
            let (url, options) = secure::listen(server_over.as_ref())?;
            let at = m
                .link()
                .listen_with(url, options)
                .await
                .map_err(ctx("listening"))?
                .address;
            addr_tx.send(at).map_err(|_| "sender gone")?;
            let reach = |mark: u64| {
                let (got, arrived) = (got.clone(), arrived.clone());
                async move {
                    while got.load(Ordering::Relaxed) < mark {
                        arrived.notified().await;
                    }
                }
            };
            reach(marks[0]).await;
            let _ = warm_tx.send(());
            reach(marks[1]).await;
            let end = Instant::now();
            let _ = done_tx.send(());
            Ok(end)
        })
    };
    let sender = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx.await.map_err(|_| "receiver gone")?;
            let me = Identity::new(SENDER).map_err(ctx("identity"))?;
            let m = Messaging::new(me, config(over.is_some()))
                .await
                .map_err(ctx("starting the sender"))?;
            let to = Identity::new(RECEIVER).map_err(ctx("identity"))?;
            let up = Arc::new(Notify::new());
            let signal = up.clone();
            m.on_connect(move |_| signal.notify_one());
            let options = secure::connect(over.as_ref())?;
            m.link()
                .connect_with(&at, options)
                .map_err(ctx("connecting"))?;
            while !m.is_connected(&to) {
                up.notified().await;
            }
            let payload = Bytes::from(vec![0xA5; load.size]);
            send_burst(&m, &to, &payload, load.warm).await?;
            warm_rx.await.map_err(|_| "receiver failed in warm-up")?;
            let start = Instant::now();
            send_burst(&m, &to, &payload, load.count).await?;
            done_rx.await.map_err(|_| "receiver failed")?;
            Ok(start)
        })
    };
    let (end, start) = harness::pair(("tls-recv", receiver), ("tls-send", sender))?;
    Ok(end.saturating_duration_since(start))
}
