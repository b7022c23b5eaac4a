//! The link and packeter layers: every transport, then a reconnect.

use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{ConnectOptions, LinkConfig, ListenOptions, ReconnectPolicy};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use super::{DemoResult, WAIT};

pub(crate) async fn run() -> DemoResult<()> {
    println!("== link + packeter: every transport ==\n");
    let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1", "::1"])?;
    let tls_server = pki.server_config(ClientAuth::None)?;
    let mtls_server = pki.server_config(ClientAuth::Required(pki.anchors()))?;
    let tls_client = pki.client_config(false)?;
    let mtls_client = pki.client_config(true)?;
    let dir = tempfile::tempdir()?;
    let sock = |name: &str| dir.path().join(name).display().to_string();

    let cases: Vec<(&str, String, ListenOptions, ConnectOptions)> = vec![
        (
            "tcp v4",
            "tcp://127.0.0.1:0".into(),
            Default::default(),
            Default::default(),
        ),
        (
            "tcp v6",
            "tcp://[::1]:0".into(),
            Default::default(),
            Default::default(),
        ),
        (
            "tls",
            "tls://127.0.0.1:0".into(),
            ListenOptions::tls(tls_server.clone()),
            ConnectOptions::tls(tls_client.clone()),
        ),
        (
            "mutual tls",
            "tls://[::1]:0".into(),
            ListenOptions::tls(mtls_server.clone()),
            ConnectOptions::tls(mtls_client.clone()),
        ),
        (
            "quic",
            "quic://127.0.0.1:0".into(),
            ListenOptions::tls(tls_server.clone()),
            ConnectOptions::tls(tls_client.clone()),
        ),
        (
            "mutual quic",
            "quic://[::1]:0".into(),
            ListenOptions::tls(mtls_server.clone()),
            ConnectOptions::tls(mtls_client.clone()),
        ),
        (
            "unix path",
            format!("unix://{}", sock("demo.sock")),
            Default::default(),
            Default::default(),
        ),
        (
            "unix abstract",
            format!("unix://@weft-demo-{}", std::process::id()),
            Default::default(),
            Default::default(),
        ),
        (
            "unix+tls",
            format!("unix+tls://{}", sock("demo-tls.sock")),
            ListenOptions::tls(mtls_server),
            ConnectOptions::tls(mtls_client),
        ),
        (
            "udp",
            "udp://127.0.0.1:0".into(),
            Default::default(),
            Default::default(),
        ),
    ];
    let mut packets = 0;
    let transports = cases.len();
    for (name, url, listen, connect) in cases {
        packets += exchange(name, &url, listen, connect).await?;
    }
    reconnect().await?;
    println!("\nall {packets} packets delivered over {transports} transports; reconnect shown.\n");
    Ok(())
}

fn link_config() -> LinkConfig {
    let mut c = LinkConfig::default();
    c.reconnect = ReconnectPolicy::fixed(Duration::from_millis(50));
    c
}

async fn next(p: &mut Packeter) -> DemoResult<PacketEvent> {
    tokio::time::timeout(WAIT, p.recv())
        .await
        .map_err(|_| "timed out waiting for an event")?
        .ok_or_else(|| "link closed".into())
}

async fn connected(p: &mut Packeter) -> DemoResult<PacketSender> {
    match next(p).await? {
        PacketEvent::Connected(s) => Ok(s),
        other => Err(format!("expected a connection, got {other:?}").into()),
    }
}

async fn packet(p: &mut Packeter) -> DemoResult<Bytes> {
    match next(p).await? {
        PacketEvent::Packet { data, .. } => Ok(data),
        other => Err(format!("expected a packet, got {other:?}").into()),
    }
}

fn show(a: &Option<weft_link::Address>) -> String {
    a.as_ref()
        .map_or_else(|| "(unnamed)".to_owned(), ToString::to_string)
}

/// Listens, connects, and sends three packets each way; returns how many
/// packets went through.
async fn exchange(
    name: &str,
    url: &str,
    listen: ListenOptions,
    connect: ConnectOptions,
) -> DemoResult<usize> {
    let tag = format!("[{name}]");
    let mut server = Packeter::new(link_config(), PacketerConfig::default());
    let mut client = Packeter::new(link_config(), PacketerConfig::default());
    let bound = server.link().listen_with(url, listen).await?;
    println!("{tag:<16} server listening on {}", bound.address);
    client.link().connect_with(&bound.address, connect)?;
    let to_server = connected(&mut client).await?;
    let info = to_server.info();
    let certs = info
        .peer_certificates
        .as_ref()
        .map(|c| format!(", server presented {} certificate(s)", c.len()))
        .unwrap_or_default();
    println!(
        "{tag:<16} client connected from {}{certs}",
        show(&info.local)
    );

    let started = Instant::now();
    let messages = ["hello", "a second packet", ""];
    for m in messages {
        to_server.send(Bytes::from(m)).await?;
    }
    let to_client = connected(&mut server).await?;
    let mtls = if to_client.info().peer_certificates.is_some() {
        " (client certificate verified)"
    } else {
        ""
    };
    println!(
        "{tag:<16} server accepted {}{mtls}",
        show(&to_client.info().peer)
    );
    for want in messages {
        let got = packet(&mut server).await?;
        if got != want.as_bytes() {
            return Err(format!("{name}: sent {want:?}, received {got:?}").into());
        }
        println!(
            "{tag:<16}   client -> server  {:>3} B  {:?}",
            got.len(),
            String::from_utf8_lossy(&got)
        );
        to_client
            .send(Bytes::from(format!("ack {}", got.len())))
            .await?;
    }
    for want in messages {
        let got = packet(&mut client).await?;
        let expected = format!("ack {}", want.len());
        if got != expected.as_bytes() {
            return Err(format!("{name}: expected {expected:?}, received {got:?}").into());
        }
        println!(
            "{tag:<16}   server -> client  {:>3} B  {:?}",
            got.len(),
            String::from_utf8_lossy(&got)
        );
    }
    println!(
        "{tag:<16} 6 packets in {:.2} ms\n",
        started.elapsed().as_secs_f64() * 1e3
    );
    client.link().close().await;
    server.link().close().await;
    Ok(2 * messages.len())
}

/// The listener goes away and comes back on the same port; the connector
/// reconnects by itself.
async fn reconnect() -> DemoResult<()> {
    let tag = "[reconnect]";
    let mut first = Packeter::new(link_config(), PacketerConfig::default());
    let bound = first.link().listen("tcp://127.0.0.1:0").await?;
    let mut client = Packeter::new(link_config(), PacketerConfig::default());
    client.link().connect(&bound.address)?;
    let _ = connected(&mut client).await?;
    let _ = connected(&mut first).await?;
    println!("{tag:<16} connected to {}", bound.address);
    let link = first.link().clone();
    let closing = tokio::spawn(async move {
        link.close().await;
        while first.recv().await.is_some() {}
    });
    match next(&mut client).await? {
        PacketEvent::Disconnected { reason, .. } => {
            println!("{tag:<16} server went away: {reason}")
        }
        other => return Err(format!("expected a disconnect, got {other:?}").into()),
    }
    closing.await?;
    let mut second = Packeter::new(link_config(), PacketerConfig::default());
    second.link().listen(&bound.address).await?;
    println!("{tag:<16} a new server listens on the same port");
    let to_server = connected(&mut client).await?;
    to_server.send(Bytes::from_static(b"back again")).await?;
    let _ = connected(&mut second).await?;
    let got = packet(&mut second).await?;
    println!(
        "{tag:<16} client reconnected on its own ({} reconnect) and delivered {:?}",
        client.link().stats().reconnects,
        String::from_utf8_lossy(&got)
    );
    Ok(())
}
