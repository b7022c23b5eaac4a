//! The connecting side of a QUIC link connection, and running one (either
//! side) to its end.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::client::Lease;
use super::stream::QuicStream;
use super::{STREAM_PACKETS, endpoint};
use crate::address::{Address, Scheme};
use crate::connection::Connection;
use crate::connection::{Ends, run_stream};
use crate::dial::{Dialled, Established};
use crate::error::LinkError;
use crate::link::{ConnectOptions, LinkEvent};
use crate::registry::Registry;
use crate::socket;

/// What keeps a connection's endpoint open while the connection runs.
pub(crate) enum Held {
    /// Nothing: a listener's or an adopted socket's endpoint, which their
    /// owners keep.
    Elsewhere,
    /// The link's shared client endpoint of the connection's family.
    Shared(Lease),
    /// An endpoint made for this connection alone (a connector bound to a
    /// local address or an interface).
    Own(quinn::Endpoint),
}

impl Held {
    fn endpoint(&self) -> Option<&quinn::Endpoint> {
        match self {
            Held::Elsewhere => None,
            Held::Shared(lease) => Some(lease.endpoint()),
            Held::Own(endpoint) => Some(endpoint),
        }
    }
}

/// An established QUIC link connection: its stream, ready to run.
pub(crate) struct QuicLink {
    /// Kept until the connection ends.
    pub(crate) held: Held,
    pub(crate) connection: quinn::Connection,
    pub(crate) stream: QuicStream,
}

/// Connects (handshake, stream, its first byte) to `address`, on `adopted`
/// when given; else on the link's shared client endpoint, or on a socket
/// of its own when the socket options name a local address or an
/// interface. Each resolved address is tried in turn, the last error
/// returned.
pub(crate) async fn dial(
    registry: &Registry,
    address: &Address,
    options: &ConnectOptions,
    adopted: Option<&quinn::Endpoint>,
) -> Result<Dialled, LinkError> {
    let cfg = &registry.config;
    let tls = options
        .tls
        .as_ref()
        .ok_or_else(|| LinkError::TlsConfigMissing {
            address: address.to_string(),
            side: "client",
        })?;
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| address.tls_server_name());
    tls.server_name_for(name.clone())?;
    let client = endpoint::client_config(tls, &cfg.quic, false)?;
    let mut loopback_client = None;
    let sockopts = options.socket.as_ref().unwrap_or(&cfg.socket);
    let mut last_err = None;
    for addr in socket::resolve(address, cfg.dns_timeout).await? {
        let held = match adopted {
            Some(_) => Held::Elsewhere,
            None if sockopts.bind.is_none() && sockopts.interface.is_none() => {
                let dropped = &registry.stats.quic_datagrams_dropped;
                // Nobody reads the STUN of a shared client socket.
                let stun = super::accept::stun_inbox(registry);
                Held::Shared(
                    registry
                        .quic_clients
                        .lease(&addr, sockopts, dropped, &stun)
                        .await?,
                )
            }
            None => {
                let local = sockopts
                    .bind
                    .unwrap_or_else(|| socket::any_local_for(&addr));
                let dropped = &registry.stats.quic_datagrams_dropped;
                let stun = super::accept::stun_inbox(registry);
                Held::Own(endpoint::bind(local, sockopts, None, dropped, &stun).await?)
            }
        };
        let endpoint = held
            .endpoint()
            .or(adopted)
            .expect("an endpoint is held or adopted");
        let config = if endpoint::is_loopback(addr.ip()) {
            match &loopback_client {
                Some(c) => c,
                None => loopback_client.insert(endpoint::client_config(tls, &cfg.quic, true)?),
            }
        } else {
            &client
        };
        let connecting = endpoint
            .connect_with(config.clone(), addr, &name)
            .map_err(|source| LinkError::QuicConnect {
                address: addr.to_string(),
                source,
            })?;
        let timeout = cfg.tls_handshake_timeout;
        let opened = tokio::time::timeout(timeout, async {
            let connection = connecting.await?;
            let (mut send, recv) = connection.open_bi().await?;
            send.write_all(&[STREAM_PACKETS])
                .await
                .map_err(|e| match e {
                    quinn::WriteError::ConnectionLost(e) => e,
                    // The stream was just opened; anything else means the
                    // connection is going away.
                    _ => quinn::ConnectionError::LocallyClosed,
                })?;
            Ok::<_, quinn::ConnectionError>((connection, send, recv))
        })
        .await;
        let peer = addr.to_string();
        let (connection, send, recv) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(source)) => {
                last_err = Some(LinkError::Quic { peer, source });
                continue;
            }
            Err(_) => {
                last_err = Some(LinkError::HandshakeTimeout { peer, timeout });
                continue;
            }
        };
        let ends = Ends {
            peer: Some(Address::ip(Scheme::Quic, connection.remote_address())),
            local: endpoint::local_addr(endpoint, &connection)
                .map(|a| Address::ip(Scheme::Quic, a)),
            certificates: endpoint::peer_certificates(&connection),
            credentials: None,
        };
        let link = QuicLink {
            held,
            connection,
            stream: QuicStream { send, recv },
        };
        return Ok(Dialled {
            socket: Established::Quic(Box::new(link)),
            ends,
        });
    }
    Err(last_err.expect("resolve returns at least one address"))
}

/// Runs a QUIC link connection as `conn` until it ends, then closes the
/// QUIC connection: at once when aborted or already lost, else once the
/// peer has acknowledged everything sent (within the close timeout), so
/// that what the stream driver handed to QUIC is not cut off by the close.
pub(crate) async fn run_quic(
    registry: Arc<Registry>,
    conn: Connection,
    link: QuicLink,
    events: mpsc::Sender<LinkEvent>,
) {
    let QuicLink {
        held,
        connection,
        stream,
    } = link;
    // Resolves once our finished stream is acknowledged, the peer stops
    // reading it, or the connection is gone.
    let acknowledged = stream.send.stopped();
    let abort = conn.shared.abort.clone();
    let lanes = super::lane::host_lanes(&registry, &connection, &conn, &events);
    let run = run_stream(registry.clone(), conn, stream, events);
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => {}
        // The QUIC connection is gone: the stream's driver sees it too.
        () = super::lane::accept_lanes(&registry, &lanes) => run.await,
    }
    super::lane::end_lanes(&registry, lanes, abort.is_cancelled()).await;
    if connection.close_reason().is_none() && !abort.is_cancelled() {
        let _ = tokio::time::timeout(registry.config.close_timeout, acknowledged).await;
    }
    connection.close(quinn::VarInt::from_u32(0), b"");
    drop(held);
}
