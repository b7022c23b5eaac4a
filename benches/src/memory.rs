//! Case 3: the memory 1 000 idle connections cost.
//!
//! Each measurement runs in a fresh child process (this binary again, with
//! `--memory-child MODE`), so that memory freed by an earlier measurement
//! cannot hide the next one's growth. The child reads its resident set size
//! (`VmRSS` in `/proc/self/status`) once its links are set up and before any
//! connection exists, then makes the connections, lets one 64-byte packet
//! cross each, waits for everything to go idle, and reads it again. The
//! difference is what the connections cost in user space; kernel socket
//! buffers are not part of RSS.
//!
//! - `both` (the row): ONE process holds both ends, a listening packeter
//!   and a connecting packeter with 1 000 connectors: 2 000 weft
//!   connections. This is the harder case.
//! - `listener` (a note): the listening packeter alone; the 1 000 clients
//!   are bare blocking sockets from a helper thread, which cost the process
//!   next to nothing.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weft_link::LinkConfig;
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use crate::harness::{self, LIMIT, ctx};
use crate::report::{Report, Row};
use crate::secure::{self, Secure};
use crate::series::Series;

/// Connections made.
const CONNECTIONS: usize = 1_000;

/// The quic:// row's name.
pub(crate) const QUIC_CASE: &str = "memory 1000 idle quic connections (both ends, one process)";

/// The row's limit, in MiB.
const LIMIT_MIB: f64 = 64.0;

/// How long the links are left alone before RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

/// What a child reports, as one JSON line on stdout.
#[derive(Debug, Serialize, Deserialize)]
struct Measured {
    before_kib: u64,
    after_kib: u64,
    connections: usize,
}

impl Measured {
    fn grown_mib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / 1024.0
    }
}

/// Runs case 3 (two child processes) and adds its row.
pub(crate) fn run(report: &mut Report) {
    eprintln!("memory: {CONNECTIONS} connections, both ends in one process");
    let both = in_child::<Measured>("both");
    eprintln!("memory: {CONNECTIONS} connections, listener side alone");
    let listener = in_child::<Measured>("listener");
    let detail = match &both {
        Ok(m) => format!(
            "one child process, VmRSS {} -> {} KiB",
            m.before_kib, m.after_kib
        ),
        Err(_) => "one child process".into(),
    };
    let series = Series::single(
        both.as_ref().map(Measured::grown_mib).map_err(Clone::clone),
        detail,
    );
    report.row(Row::limit(
        "memory 1000 idle connections (both ends, one process)",
        "MiB",
        &series,
        LIMIT_MIB,
    ));
    if let Ok(m) = &both {
        report.note(format!(
            "memory: the row is the RSS growth of ONE process holding BOTH ends: a listening \
             packeter and a connecting packeter with {CONNECTIONS} connectors, so {} weft \
             connections ({:.1} KiB per connection pair). Each connection carried one 64 B \
             packet, then sat idle {} ms; kernel socket buffers are not in RSS",
            2 * m.connections,
            m.after_kib.saturating_sub(m.before_kib) as f64 / m.connections as f64,
            SETTLE.as_millis()
        ));
    }
    match listener {
        Ok(m) => report.note(format!(
            "memory, listener side alone (not a target): {:.1} MiB for {} accepted connections \
             ({:.1} KiB each; clients were bare sockets in the same process)",
            m.grown_mib(),
            m.connections,
            m.after_kib.saturating_sub(m.before_kib) as f64 / m.connections as f64
        )),
        Err(e) => report.note(format!("memory, listener side alone: FAILED: {e}")),
    }
}

/// Runs the quic:// row: the `both` measurement over quic:// with mutual
/// TLS, in a child process of its own.
pub(crate) fn run_quic(report: &mut Report) {
    eprintln!("memory: {CONNECTIONS} quic:// connections, both ends in one process");
    let both = in_child::<Measured>("quic");
    let detail = match &both {
        Ok(m) => format!(
            "one child process, VmRSS {} -> {} KiB",
            m.before_kib, m.after_kib
        ),
        Err(_) => "one child process".into(),
    };
    let series = Series::single(
        both.as_ref().map(Measured::grown_mib).map_err(Clone::clone),
        detail,
    );
    report.row(Row::limit(QUIC_CASE, "MiB", &series, LIMIT_MIB));
    if let Ok(m) = &both {
        report.note(format!(
            "{QUIC_CASE}: as the tcp:// memory row, over quic:// with mutual TLS (one client \
             configuration for all connectors); the connectors share the link's one client \
             UDP socket and were all added at once ({:.1} KiB per connection pair)",
            m.after_kib.saturating_sub(m.before_kib) as f64 / m.connections as f64
        ));
    }
}

/// Runs this binary with `--memory-child mode` and parses its report.
pub(crate) fn in_child<T: serde::de::DeserializeOwned>(mode: &str) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(ctx("finding this executable"))?;
    let mut child = Command::new(exe)
        .args(["--memory-child", mode])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(ctx("starting the child"))?;
    let deadline = Instant::now() + LIMIT + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("child `{mode}` did not finish in time; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .map_err(ctx("reading the child's output"))?;
    }
    if !status.success() {
        return Err(format!("child `{mode}` failed ({status}): {}", out.trim()));
    }
    serde_json::from_str(out.trim()).map_err(|e| format!("child `{mode}` said {out:?}: {e}"))
}

/// The child's side: measures `mode` and prints one JSON line (or an
/// error line, returned as the error).
pub(crate) fn child_main(mode: &str) -> Result<(), String> {
    crate::raise_fd_limit(4 * CONNECTIONS as u64 + 1024)?;
    let (listener_only, over) = match mode {
        "both" => (false, None),
        "listener" => (true, None),
        "quic" => (false, Some(Secure::pair()?.1)),
        other => return Err(format!("unknown memory mode `{other}`")),
    };
    let measured = harness::block_on(LIMIT, measure(listener_only, over))?;
    let line = serde_json::to_string(&measured).map_err(ctx("encoding"))?;
    println!("{line}");
    Ok(())
}

/// The resident set size of this process, in KiB.
pub(crate) fn rss_kib() -> Result<u64, String> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(ctx("reading /proc/self/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_string())
}

/// Measures over `over` (quic://), or tcp:// when `None`.
async fn measure(listener_only: bool, over: Option<Secure>) -> Result<Measured, String> {
    let mut server = Packeter::new(LinkConfig::default(), PacketerConfig::default());
    let (url, options) = secure::listen(over.as_ref())?;
    let at = server
        .link()
        .listen_with(url, options)
        .await
        .map_err(ctx("listening"))?
        .address;
    let mut client =
        (!listener_only).then(|| Packeter::new(LinkConfig::default(), PacketerConfig::default()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before_kib = rss_kib()?;

    let packet = Bytes::from(vec![0x33u8; 64]);
    let (server_senders, client_senders, bare) = if let Some(client) = client.as_mut() {
        // One client configuration for every connector, as an application
        // makes it: each rustls configuration has a session cache of its own.
        let options = secure::connect(over.as_ref())?;
        for _ in 0..CONNECTIONS {
            client
                .link()
                .connect_with(&at, options.clone())
                .map_err(ctx("adding a connector"))?;
        }
        let (s, c) = tokio::try_join!(
            accept_all(&mut server, CONNECTIONS),
            connect_all(client, CONNECTIONS, packet)
        )?;
        (s, c, Vec::new())
    } else {
        let addr = at
            .socket_addr()
            .ok_or("the listener has no socket address")?;
        let (s, b) = tokio::try_join!(
            accept_all(&mut server, CONNECTIONS),
            bare_clients(addr, CONNECTIONS, packet)
        )?;
        (s, Vec::new(), b)
    };
    tokio::time::sleep(SETTLE).await;
    let after_kib = rss_kib()?;

    let opened = server.link().stats().connections_opened as usize;
    if opened != CONNECTIONS {
        return Err(format!(
            "the listener opened {opened} connections, expected {CONNECTIONS}"
        ));
    }
    if let Some(client) = &client {
        let opened = client.link().stats().connections_opened as usize;
        if opened != CONNECTIONS {
            return Err(format!(
                "the connectors opened {opened} connections, expected {CONNECTIONS}"
            ));
        }
    }
    // Everything measured stays alive until after the second reading.
    drop((server_senders, client_senders, bare));
    Ok(Measured {
        before_kib,
        after_kib,
        connections: CONNECTIONS,
    })
}

/// Takes `n` connections and one packet on each.
async fn accept_all(server: &mut Packeter, n: usize) -> Result<Vec<PacketSender>, String> {
    let mut senders = Vec::with_capacity(n);
    let mut packets = 0;
    while senders.len() < n || packets < n {
        match server.recv().await {
            Some(PacketEvent::Connected(s)) => senders.push(s),
            Some(PacketEvent::Packet { .. }) => packets += 1,
            Some(PacketEvent::Disconnected { reason, .. }) => {
                return Err(format!("an accepted connection ended: {reason}"));
            }
            Some(_) => {}
            None => return Err("the listening link closed".into()),
        }
    }
    Ok(senders)
}

/// Waits for `n` connections of the connecting packeter, sending one packet
/// on each as it comes up.
async fn connect_all(
    client: &mut Packeter,
    n: usize,
    packet: Bytes,
) -> Result<Vec<PacketSender>, String> {
    let mut senders = Vec::with_capacity(n);
    while senders.len() < n {
        match client.recv().await {
            Some(PacketEvent::Connected(s)) => {
                s.send(packet.clone()).await.map_err(ctx("sending"))?;
                senders.push(s);
            }
            Some(PacketEvent::Disconnected { reason, .. }) => {
                return Err(format!("a connector's connection ended: {reason}"));
            }
            Some(_) => {}
            None => return Err("the connecting link closed".into()),
        }
    }
    Ok(senders)
}

/// Opens `n` plain blocking TCP connections from a helper thread, writing
/// one packet on each, and hands them over.
async fn bare_clients(
    addr: SocketAddr,
    n: usize,
    packet: Bytes,
) -> Result<Vec<std::net::TcpStream>, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("memory-clients".into())
        .spawn(move || {
            let mut framed = weft_packeter::codec::header(packet.len()).to_vec();
            framed.extend_from_slice(&packet);
            let result = (0..n)
                .map(|_| {
                    let mut s =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                            .map_err(ctx("connecting"))?;
                    s.write_all(&framed).map_err(ctx("writing"))?;
                    Ok(s)
                })
                .collect::<Result<Vec<_>, String>>();
            let _ = tx.send(result);
        })
        .map_err(ctx("starting the client thread"))?;
    let streams = rx.await.map_err(|_| "the client thread died")?;
    // It has sent its result, so it is about to end.
    let _ = thread.join();
    streams
}
