//! Case 1: one-way throughput over loopback TCP.
//!
//! weft's packeter against libzmq PUSH/PULL (64 B and 1 KiB messages) and
//! against raw TCP with large writes (64 KiB packets, in bytes/s). Sender and
//! receiver run on separate threads, each with its own current-thread
//! runtime (libzmq: each with its own context and I/O thread). Every
//! measurement is fresh: set up, warm up with `warm` messages until the
//! receiver has them all, then time `count` messages from the first timed
//! send to the last receive. Rounds alternate between weft and the
//! baselines so that both see the same machine noise; the table shows the
//! median round.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use weft_link::{Address, LinkConfig};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use crate::Scale;
use crate::harness::{self, LIMIT, LOOPBACK, ctx};
use crate::report::{Report, Row, Target};
use crate::secure::{self, Secure};
use crate::series::{Series, short};

/// How much one measurement moves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    /// Payload bytes per message.
    pub(crate) size: usize,
    /// Messages sent (and all received) before timing starts.
    pub(crate) warm: u64,
    /// Messages timed.
    pub(crate) count: u64,
}

impl Load {
    /// Payload bytes timed.
    pub(crate) fn bytes(&self) -> u64 {
        self.count * self.size as u64
    }
}

/// Events taken per `drain_ready` call on the receiving side.
const BULK: usize = 1024;

/// Raw TCP's write and read buffer size.
const RAW_BUF: usize = 256 << 10;

/// Runs case 1 and adds its rows.
pub(crate) fn run(scale: Scale, report: &mut Report) {
    let n = |quick: u64, full: u64| if scale.quick { quick } else { full };
    let loads = [
        (
            "64 B",
            Load {
                size: 64,
                warm: 200_000,
                count: n(2_000_000, 6_000_000),
            },
        ),
        (
            "1 KiB",
            Load {
                size: 1024,
                warm: 50_000,
                count: n(600_000, 2_000_000),
            },
        ),
        (
            "64 KiB",
            Load {
                size: 64 << 10,
                warm: 2_000,
                count: n(50_000, 150_000),
            },
        ),
    ];
    for (label, load) in loads {
        let big = load.size >= 64 << 10;
        let mut weft = Series::default();
        let mut zmq = zmq_series();
        let mut raw = if big {
            Series::default()
        } else {
            Series::unavailable("not run")
        };
        for round in 0..scale.rounds {
            eprintln!("throughput {label}: round {}/{}", round + 1, scale.rounds);
            if weft.live() {
                weft.push(weft_once(load).map(|t| rate(load, t, big)));
            }
            if zmq.live() {
                zmq.push(zmq_once(load).map(|t| rate(load, t, big)));
            }
            if raw.live() {
                raw.push(raw_once(load).map(|t| rate(load, t, big)));
            }
        }
        let case = format!("packeter throughput {label}");
        if big {
            report.row(Row::compare(
                &case,
                "MB/s",
                &weft,
                "raw-tcp",
                &raw,
                Target::RatioAtLeast(0.85),
            ));
            match (weft.median(), zmq.median()) {
                (Some(w), Some(z)) => report.note(format!(
                    "throughput 64 KiB vs libzmq (not a target): weft {} MB/s, libzmq {} MB/s, ratio {:.2}x ({})",
                    short(w),
                    short(z),
                    w / z,
                    zmq.describe()
                )),
                _ => report.note(format!("throughput 64 KiB vs libzmq: {}", zmq.describe())),
            }
        } else {
            let target = if load.size <= 64 { 1.5 } else { 1.2 };
            report.row(Row::compare(
                &case,
                "msg/s",
                &weft,
                "libzmq",
                &zmq,
                Target::RatioAtLeast(target),
            ));
            if let Some(w) = weft.median() {
                report.note(format!(
                    "throughput {label}: weft moves {} MB/s of payload",
                    short(w * load.size as f64 / 1e6)
                ));
            }
        }
    }
    report.note(
        "throughput: sender and receiver each on their own OS thread and current-thread runtime \
         (libzmq: each with its own context, so 2 more I/O threads); default LinkConfig and \
         PacketerConfig; raw-tcp writes 256 KiB buffers and reads into a 256 KiB buffer; time \
         from the first timed send to the last receive, after a warm-up",
    );
}

/// Messages/s, or payload MB/s when `bytes`.
pub(crate) fn rate(load: Load, took: Duration, bytes: bool) -> f64 {
    let secs = took.as_secs_f64().max(1e-9);
    if bytes {
        load.bytes() as f64 / 1e6 / secs
    } else {
        load.count as f64 / secs
    }
}

/// A series for a libzmq baseline: empty, or unavailable in a build
/// without libzmq.
#[cfg(feature = "zmq")]
pub(crate) fn zmq_series() -> Series {
    Series::default()
}

/// A series for a libzmq baseline: empty, or unavailable in a build
/// without libzmq.
#[cfg(not(feature = "zmq"))]
pub(crate) fn zmq_series() -> Series {
    Series::unavailable(crate::NO_ZMQ)
}

/// One libzmq PUSH/PULL measurement of `load`.
#[cfg(feature = "zmq")]
pub(crate) fn zmq_once(load: Load) -> Result<Duration, String> {
    crate::zmq_pushpull::once(load)
}

/// One libzmq PUSH/PULL measurement of `load` (not built in).
#[cfg(not(feature = "zmq"))]
pub(crate) fn zmq_once(_load: Load) -> Result<Duration, String> {
    Err(crate::NO_ZMQ.into())
}

/// A series for a Zenoh baseline: empty, or unavailable in a build
/// without Zenoh.
#[cfg(feature = "zenoh")]
pub(crate) fn zenoh_series() -> Series {
    Series::default()
}

/// A series for a Zenoh baseline: empty, or unavailable in a build
/// without Zenoh.
#[cfg(not(feature = "zenoh"))]
pub(crate) fn zenoh_series() -> Series {
    Series::unavailable(crate::NO_ZENOH)
}

/// One Zenoh publish/subscribe measurement of `load` with `subscribers`
/// subscriber sessions (see `zenoh_pubsub.rs`).
#[cfg(feature = "zenoh")]
pub(crate) fn zenoh_once(load: Load, subscribers: usize) -> Result<Duration, String> {
    crate::zenoh_pubsub::once(load, subscribers)
}

/// One Zenoh measurement (not built in).
#[cfg(not(feature = "zenoh"))]
pub(crate) fn zenoh_once(_load: Load, _subscribers: usize) -> Result<Duration, String> {
    Err(crate::NO_ZENOH.into())
}

/// One weft measurement: a packeter listening, one connecting, `send` in a
/// loop on one side, `recv` plus `drain_ready` counting on the other.
pub(crate) fn weft_once(load: Load) -> Result<Duration, String> {
    weft_once_over(load, None)
}

/// [`weft_once`] over `over` (tls:// or quic://), or tcp:// when `None`.
pub(crate) fn weft_once_over(load: Load, over: Option<Secure>) -> Result<Duration, String> {
    let server_over = over.clone();
    let (addr_tx, addr_rx) = oneshot::channel::<Address>();
    let (warm_tx, warm_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let receiver = move || {
        harness::block_on(LIMIT, async move {
            let mut packeter = Packeter::new(LinkConfig::default(), PacketerConfig::default());
            let (url, options) = secure::listen(server_over.as_ref())?;
            let listening = packeter
                .link()
                .listen_with(url, options)
                .await
                .map_err(ctx("listening"))?;
            addr_tx
                .send(listening.address)
                .map_err(|_| "sender gone before connecting")?;
            let mut events = Vec::with_capacity(BULK);
            count_packets(&mut packeter, &mut events, load.warm, load.size).await?;
            let _ = warm_tx.send(());
            count_packets(&mut packeter, &mut events, load.count, load.size).await?;
            let end = Instant::now();
            let _ = done_tx.send(());
            Ok(end)
        })
    };
    let sender = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx
                .await
                .map_err(|_| "receiver gone before listening")?;
            let mut packeter = Packeter::new(LinkConfig::default(), PacketerConfig::default());
            packeter
                .link()
                .connect_with(&at, secure::connect(over.as_ref())?)
                .map_err(ctx("connecting"))?;
            let to = connected(&mut packeter).await?;
            let payload = Bytes::from(vec![0xA5; load.size]);
            for _ in 0..load.warm {
                to.send(payload.clone()).await.map_err(ctx("sending"))?;
            }
            warm_rx
                .await
                .map_err(|_| "receiver failed during warm-up")?;
            let start = Instant::now();
            for _ in 0..load.count {
                to.send(payload.clone()).await.map_err(ctx("sending"))?;
            }
            // Keep this runtime (and so the connection's driver) running
            // until everything has arrived.
            done_rx.await.map_err(|_| "receiver failed")?;
            Ok(start)
        })
    };
    let (end, start) = harness::pair(("weft-recv", receiver), ("weft-send", sender))?;
    Ok(end.saturating_duration_since(start))
}

/// Waits for the first connection of a packeter.
pub(crate) async fn connected(packeter: &mut Packeter) -> Result<PacketSender, String> {
    loop {
        match packeter.recv().await {
            Some(PacketEvent::Connected(sender)) => return Ok(sender),
            Some(PacketEvent::Disconnected { reason, .. }) => {
                return Err(format!("disconnected before connecting: {reason}"));
            }
            Some(_) => {}
            None => return Err("link closed before connecting".into()),
        }
    }
}

/// Receives `want` packets of `size` bytes, taking what is ready in bulk.
async fn count_packets(
    packeter: &mut Packeter,
    events: &mut Vec<PacketEvent>,
    want: u64,
    size: usize,
) -> Result<(), String> {
    let mut got = 0u64;
    while got < want {
        let Some(first) = packeter.recv().await else {
            return Err(format!("link closed after {got} of {want} packets"));
        };
        events.push(first);
        packeter.drain_ready(events, BULK);
        for event in events.drain(..) {
            match event {
                PacketEvent::Packet { data, .. } => {
                    if data.len() != size {
                        return Err(format!("got a packet of {} bytes, sent {size}", data.len()));
                    }
                    got += 1;
                }
                PacketEvent::Disconnected { reason, .. } => {
                    return Err(format!(
                        "disconnected after {got} of {want} packets: {reason}"
                    ));
                }
                _ => {}
            }
        }
    }
    if got > want {
        return Err(format!("got {got} packets, {want} were sent"));
    }
    Ok(())
}

/// One raw TCP measurement: the same payload bytes as `load`, written in
/// 256 KiB `write_all`s and read into a 256 KiB buffer.
pub(crate) fn raw_once(load: Load) -> Result<Duration, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<std::net::SocketAddr>();
    let (warm_tx, warm_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let warm_bytes = load.warm * load.size as u64;
    let timed_bytes = load.bytes();
    let receiver = move || {
        harness::block_on(LIMIT, async move {
            let listener = tokio::net::TcpListener::bind(LOOPBACK)
                .await
                .map_err(ctx("binding"))?;
            addr_tx
                .send(listener.local_addr().map_err(ctx("local address"))?)
                .map_err(|_| "sender gone before connecting")?;
            let (mut stream, _) = listener.accept().await.map_err(ctx("accepting"))?;
            stream.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
            let mut buf = vec![0u8; RAW_BUF];
            read_bytes(&mut stream, &mut buf, warm_bytes).await?;
            let _ = warm_tx.send(());
            read_bytes(&mut stream, &mut buf, timed_bytes).await?;
            let end = Instant::now();
            let _ = done_tx.send(());
            Ok(end)
        })
    };
    let sender = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx
                .await
                .map_err(|_| "receiver gone before listening")?;
            let mut stream = tokio::net::TcpStream::connect(at)
                .await
                .map_err(ctx("connecting"))?;
            stream.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
            let buf = vec![0xA5u8; RAW_BUF];
            write_bytes(&mut stream, &buf, warm_bytes).await?;
            warm_rx
                .await
                .map_err(|_| "receiver failed during warm-up")?;
            let start = Instant::now();
            write_bytes(&mut stream, &buf, timed_bytes).await?;
            done_rx.await.map_err(|_| "receiver failed")?;
            Ok(start)
        })
    };
    let (end, start) = harness::pair(("raw-recv", receiver), ("raw-send", sender))?;
    Ok(end.saturating_duration_since(start))
}

async fn write_bytes(
    stream: &mut tokio::net::TcpStream,
    buf: &[u8],
    mut left: u64,
) -> Result<(), String> {
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n]).await.map_err(ctx("writing"))?;
        left -= n as u64;
    }
    Ok(())
}

async fn read_bytes(
    stream: &mut tokio::net::TcpStream,
    buf: &mut [u8],
    mut left: u64,
) -> Result<(), String> {
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..n]).await.map_err(ctx("reading"))? {
            0 => return Err(format!("peer closed with {left} bytes to go")),
            got => left -= got as u64,
        }
    }
    Ok(())
}
