//! `packeter throughput 64 B quic`: the packeter over quic:// against a
//! plain quinn stream writing one framed packet (the packeter's header and
//! 64 bytes) per `write_all`, so the row shows what the packeter's
//! coalescing of small packets is worth on QUIC. The baseline's receiver
//! reads the stream into a 256 KiB buffer and counts bytes; quinn runs with
//! its default transport settings and TLS 1.3 (rustls, ring) with the same
//! self-signed server certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;
use weft_link::tls::SelfSignedPki;

use crate::Scale;
use crate::harness::{self, LIMIT, LOOPBACK, ctx};
use crate::report::{Report, Row, Target};
use crate::secure::{SERVER_NAME, Secure};
use crate::series::Series;
use crate::throughput::{self, Load};

/// The row's name.
pub(crate) const CASE: &str = "packeter throughput 64 B quic";

/// The baseline's read buffer.
const READ_BUF: usize = 256 << 10;

/// The ALPN both quinn ends agree on.
const ALPN: &[u8] = b"weft-bench";

/// Runs the row.
pub(crate) fn run(scale: Scale, report: &mut Report) {
    let load = Load {
        size: 64,
        warm: 100_000,
        count: if scale.quick { 1_000_000 } else { 3_000_000 },
    };
    let rate = |t: Duration| load.count as f64 / t.as_secs_f64().max(1e-9);
    let (mut weft, mut quinn) = (Series::default(), Series::default());
    match (Secure::pair(), pki()) {
        (Ok((_, quic)), Ok(pki)) => {
            for round in 0..scale.rounds {
                eprintln!("{CASE}: round {}/{}", round + 1, scale.rounds);
                if weft.live() {
                    weft.push(throughput::weft_once_over(load, Some(quic.clone())).map(rate));
                }
                if quinn.live() {
                    quinn.push(quinn_once(pki.clone(), load).map(rate));
                }
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            weft = Series::single(Err(e.clone()), "");
            quinn = Series::single(Err(e), "");
        }
    }
    report.row(Row::compare(
        CASE,
        "msg/s",
        &weft,
        "quinn stream",
        &quinn,
        Target::RatioAtLeast(1.5),
    ));
    report.note(format!(
        "{CASE}: sender and receiver on their own threads and current-thread runtimes; weft's \
         packeter over quic:// (mutual TLS) against one quinn unidirectional stream with one \
         write_all per framed 64 B packet (quinn defaults, server TLS only); {} packets timed \
         after {} of warm-up",
        load.count, load.warm
    ));
}

fn pki() -> Result<Arc<SelfSignedPki>, String> {
    Ok(Arc::new(
        SelfSignedPki::generate(&[SERVER_NAME]).map_err(ctx("certificates"))?,
    ))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(pki: &SelfSignedPki) -> Result<quinn::ServerConfig, String> {
    let certs = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx("server certificate"))?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).map_err(ctx("server key"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ctx("TLS versions"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ctx("server TLS"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(Arc::new(tls)).map_err(ctx("QUIC server TLS"))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

fn client_config(pki: &SelfSignedPki) -> Result<quinn::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(ctx("CA certificate"))?)
            .map_err(ctx("CA certificate"))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ctx("TLS versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(Arc::new(tls)).map_err(ctx("QUIC client TLS"))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// One baseline measurement.
fn quinn_once(pki: Arc<SelfSignedPki>, load: Load) -> Result<Duration, String> {
    let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
    let (warm_tx, warm_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let framed_len = weft_packeter::codec::HEADER_LEN + load.size;
    let server = server_config(&pki)?;
    let client = client_config(&pki)?;
    let receiver = move || {
        harness::block_on(LIMIT, async move {
            let bind: SocketAddr = LOOPBACK.parse().map_err(ctx("loopback address"))?;
            let endpoint = quinn::Endpoint::server(server, bind).map_err(ctx("binding"))?;
            addr_tx
                .send(endpoint.local_addr().map_err(ctx("local address"))?)
                .map_err(|_| "sender gone before connecting")?;
            let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
            let connection = incoming.await.map_err(ctx("accepting"))?;
            let mut stream = connection.accept_uni().await.map_err(ctx("the stream"))?;
            let mut buf = vec![0u8; READ_BUF];
            let mut left = load.warm * framed_len as u64;
            read_bytes(&mut stream, &mut buf, &mut left).await?;
            let _ = warm_tx.send(());
            left = load.count * framed_len as u64;
            read_bytes(&mut stream, &mut buf, &mut left).await?;
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
            let bind: SocketAddr = LOOPBACK.parse().map_err(ctx("loopback address"))?;
            let mut endpoint = quinn::Endpoint::client(bind).map_err(ctx("binding"))?;
            endpoint.set_default_client_config(client);
            let connection = endpoint
                .connect(at, SERVER_NAME)
                .map_err(ctx("connecting"))?
                .await
                .map_err(ctx("handshake"))?;
            let mut stream = connection.open_uni().await.map_err(ctx("the stream"))?;
            let mut framed = weft_packeter::codec::header(load.size).to_vec();
            framed.resize(framed_len, 0xA5);
            for _ in 0..load.warm {
                stream.write_all(&framed).await.map_err(ctx("writing"))?;
            }
            warm_rx
                .await
                .map_err(|_| "receiver failed during warm-up")?;
            let start = Instant::now();
            for _ in 0..load.count {
                stream.write_all(&framed).await.map_err(ctx("writing"))?;
            }
            done_rx.await.map_err(|_| "receiver failed")?;
            Ok(start)
        })
    };
    let (end, start) = harness::pair(("quinn-recv", receiver), ("quinn-send", sender))?;
    Ok(end.saturating_duration_since(start))
}

/// Reads until `left` bytes have come.
async fn read_bytes(
    stream: &mut quinn::RecvStream,
    buf: &mut [u8],
    left: &mut u64,
) -> Result<(), String> {
    while *left > 0 {
        let n = (*left).min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..n]).await.map_err(ctx("reading"))? {
            Some(got) => *left -= got as u64,
            None => return Err(format!("the stream ended with {left} bytes to go")),
        }
    }
    Ok(())
}
