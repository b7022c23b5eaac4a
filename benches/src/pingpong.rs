//! Case 2: ping-pong latency of 64-byte messages over loopback TCP.
//!
//! A client sends 64 bytes and waits for the echo, one at a time; the round
//! trip is timed on the client. weft runs a packeter on each side; the
//! baseline is plain Tokio TCP (`write_all` 64 bytes, `read_exact` 64
//! bytes, TCP_NODELAY on both ends, which weft sets by default too). Client
//! and server each run on their own thread and current-thread runtime.
//! Rounds alternate between the two; percentiles are over every timed round
//! trip of all rounds.

use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use weft_link::{Address, LinkConfig};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use crate::Scale;
use crate::harness::{self, LIMIT, LOOPBACK, ctx};
use crate::report::{Report, Row, Target};
use crate::secure::{self, Secure};
use crate::series::{Series, percentile_series};

const SIZE: usize = 64;

/// Round trips per measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trips {
    warm: usize,
    timed: usize,
}

/// The round trips of one measurement at `scale`.
pub(crate) fn trips(scale: Scale) -> Trips {
    Trips {
        warm: 2_000,
        timed: if scale.quick { 10_000 } else { 40_000 },
    }
}

/// Runs case 2 and adds its row.
pub(crate) fn run(scale: Scale, report: &mut Report) {
    let trips = trips(scale);
    let mut weft = Samples::default();
    let mut raw = Samples::default();
    for round in 0..scale.rounds {
        eprintln!("ping-pong 64 B: round {}/{}", round + 1, scale.rounds);
        if weft.error.is_none() {
            weft.take(weft_once(trips, None));
        }
        if raw.error.is_none() {
            raw.take(raw_once(trips));
        }
    }
    let p50 = (weft.series(50.0), raw.series(50.0));
    let p99 = (weft.series(99.0), raw.series(99.0));
    report.row(Row::compare(
        "ping-pong 64 B p50 round trip",
        "us",
        &p50.0,
        "raw-tcp",
        &p50.1,
        Target::RatioAtMost(1.1),
    ));
    match (p99.0.median(), p99.1.median()) {
        (Some(w), Some(r)) => report.note(format!(
            "ping-pong 64 B p99 round trip (not a target): weft {w:.1} us, raw-tcp {r:.1} us, ratio {:.2}x",
            w / r
        )),
        _ => report.note("ping-pong 64 B p99: not measured (see the p50 row)"),
    }
    report.note(format!(
        "ping-pong: {} rounds x {} timed round trips each (after {} untimed), client and server \
         on separate threads and runtimes",
        scale.rounds, trips.timed, trips.warm
    ));
}

/// Round-trip times in microseconds, from every round.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    micros: Vec<f64>,
    error: Option<String>,
}

impl Samples {
    /// Whether every measurement so far worked.
    pub(crate) fn live(&self) -> bool {
        self.error.is_none()
    }

    /// Adds a round's times, or keeps its failure.
    pub(crate) fn take(&mut self, round: Result<Vec<f64>, String>) {
        match round {
            Ok(v) => self.micros.extend(v),
            Err(e) => self.error = Some(e),
        }
    }

    /// The `p`th percentile as a one-value series (or the failure).
    pub(crate) fn series(&self, p: f64) -> Series {
        percentile_series(&self.micros, self.error.as_ref(), p, "round trips")
    }
}

/// One weft measurement over `over` (tls:// or quic://), or tcp:// when
/// `None`: round-trip times in microseconds.
pub(crate) fn weft_once(trips: Trips, over: Option<Secure>) -> Result<Vec<f64>, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<Address>();
    let server_over = over.clone();
    let server = move || {
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
                .map_err(|_| "client gone before connecting")?;
            let mut to_client: Option<PacketSender> = None;
            loop {
                match packeter.recv().await {
                    Some(PacketEvent::Connected(s)) => to_client = Some(s),
                    Some(PacketEvent::Packet { data, .. }) => {
                        let to = to_client.as_ref().ok_or("a packet before the connection")?;
                        to.send(data).await.map_err(ctx("echoing"))?;
                    }
                    // The client is done when it goes.
                    Some(PacketEvent::Disconnected { .. }) | None => return Ok(()),
                    Some(_) => {}
                }
            }
        })
    };
    let client = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx.await.map_err(|_| "server gone before listening")?;
            let mut packeter = Packeter::new(LinkConfig::default(), PacketerConfig::default());
            packeter
                .link()
                .connect_with(&at, secure::connect(over.as_ref())?)
                .map_err(ctx("connecting"))?;
            let to = crate::throughput::connected(&mut packeter).await?;
            let payload = Bytes::from(vec![0x5A; SIZE]);
            let mut micros = Vec::with_capacity(trips.timed);
            for i in 0..trips.warm + trips.timed {
                let start = Instant::now();
                to.send(payload.clone()).await.map_err(ctx("sending"))?;
                loop {
                    match packeter.recv().await {
                        Some(PacketEvent::Packet { data, .. }) if data.len() == SIZE => break,
                        Some(PacketEvent::Packet { data, .. }) => {
                            return Err(format!("echo of {} bytes, sent {SIZE}", data.len()));
                        }
                        Some(PacketEvent::Disconnected { reason, .. }) => {
                            return Err(format!("disconnected: {reason}"));
                        }
                        Some(_) => {}
                        None => return Err("link closed".into()),
                    }
                }
                if i >= trips.warm {
                    micros.push(start.elapsed().as_secs_f64() * 1e6);
                }
            }
            Ok(micros)
        })
    };
    let (micros, ()) = harness::pair(("pp-weft-client", client), ("pp-weft-server", server))?;
    Ok(micros)
}

fn raw_once(trips: Trips) -> Result<Vec<f64>, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<std::net::SocketAddr>();
    let server = move || {
        harness::block_on(LIMIT, async move {
            let listener = tokio::net::TcpListener::bind(LOOPBACK)
                .await
                .map_err(ctx("binding"))?;
            addr_tx
                .send(listener.local_addr().map_err(ctx("local address"))?)
                .map_err(|_| "client gone before connecting")?;
            let (mut stream, _) = listener.accept().await.map_err(ctx("accepting"))?;
            stream.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
            let mut buf = [0u8; SIZE];
            loop {
                match stream.read_exact(&mut buf).await {
                    Ok(_) => stream.write_all(&buf).await.map_err(ctx("echoing"))?,
                    // The client is done when it goes.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(format!("reading: {e}")),
                }
            }
        })
    };
    let client = move || {
        harness::block_on(LIMIT, async move {
            let at = addr_rx.await.map_err(|_| "server gone before listening")?;
            let mut stream = tokio::net::TcpStream::connect(at)
                .await
                .map_err(ctx("connecting"))?;
            stream.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
            let payload = [0x5Au8; SIZE];
            let mut buf = [0u8; SIZE];
            let mut micros = Vec::with_capacity(trips.timed);
            for i in 0..trips.warm + trips.timed {
                let start = Instant::now();
                stream.write_all(&payload).await.map_err(ctx("sending"))?;
                stream
                    .read_exact(&mut buf)
                    .await
                    .map_err(ctx("receiving"))?;
                if i >= trips.warm {
                    micros.push(start.elapsed().as_secs_f64() * 1e6);
                }
            }
            Ok(micros)
        })
    };
    let (micros, ()) = harness::pair(("pp-raw-client", client), ("pp-raw-server", server))?;
    Ok(micros)
}
