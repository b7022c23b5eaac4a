//! Dialling: one attempt to connect (and handshake), and the connector task
//! that repeats it with backoff for as long as the connector lives.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::connection::{Ends, PeerCredentials, run_stream};
use crate::registry::Registry;
use crate::tls::{Secured, bounded_handshake};
use crate::udp::run_udp_connected;
use crate::{
    Address, ConnectOptions, Connection, ConnectorId, LinkConfig, LinkError, LinkEvent, Origin,
    Scheme, socket,
};

/// The socket of a connection that is up, before its task runs it.
pub(crate) enum Established {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    TlsTcp(Box<tokio_rustls::TlsStream<tokio::net::TcpStream>>),
    TlsUnix(Box<tokio_rustls::TlsStream<tokio::net::UnixStream>>),
    Udp(UdpSocket),
    Quic(Box<crate::quic::QuicLink>),
}

impl Established {
    pub(crate) fn is_datagram(&self) -> bool {
        matches!(self, Established::Udp(_))
    }
}

/// One successful attempt: the socket and what is known of both ends.
pub(crate) struct Dialled {
    pub(crate) socket: Established,
    pub(crate) ends: Ends,
}

/// Runs an established socket as `conn` until the connection ends.
pub(crate) async fn run_established(
    registry: Arc<Registry>,
    conn: Connection,
    socket: Established,
    events: mpsc::Sender<LinkEvent>,
) {
    match socket {
        Established::Tcp(s) => run_stream(registry, conn, s, events).await,
        Established::Unix(s) => run_stream(registry, conn, s, events).await,
        Established::TlsTcp(s) => run_stream(registry, conn, s, events).await,
        Established::TlsUnix(s) => run_stream(registry, conn, s, events).await,
        Established::Udp(s) => run_udp_connected(registry, conn, s, events).await,
        Established::Quic(q) => crate::quic::run_quic(registry, conn, *q, events).await,
    }
}

/// Connects (and handshakes) once.
pub(crate) async fn establish(
    registry: &Registry,
    address: &Address,
    options: &ConnectOptions,
) -> Result<Dialled, LinkError> {
    establish_on(registry, address, options, None).await
}

/// [`establish`], from the given QUIC endpoint when `address` is QUIC (a
/// socket the caller made) instead of a socket of its own.
pub(crate) async fn establish_on(
    registry: &Registry,
    address: &Address,
    options: &ConnectOptions,
    quic: Option<&quinn::Endpoint>,
) -> Result<Dialled, LinkError> {
    let sockopts = options.socket.as_ref().unwrap_or(&registry.config.socket);
    let cfg = &registry.config;
    if address.scheme() == Scheme::Quic {
        return crate::quic::dial(registry, address, options, quic).await;
    }
    let tls = match (address.scheme().is_tls(), &options.tls) {
        (true, None) => {
            return Err(LinkError::TlsConfigMissing {
                address: address.to_string(),
                side: "client",
            });
        }
        (true, Some(t)) => Some((
            tokio_rustls::TlsConnector::from(t.inner.clone()),
            t.server_name_for(address.tls_server_name())?,
        )),
        (false, _) => None,
    };
    match address {
        Address::Ip { scheme, .. } => {
            let addrs = socket::resolve(address, cfg.dns_timeout).await?;
            let mut last_err = None;
            for addr in addrs {
                if *scheme == Scheme::Udp {
                    let local = sockopts
                        .bind
                        .unwrap_or_else(|| socket::any_local_for(&addr));
                    let sock = socket::bind_udp(local, Some(addr), sockopts).await?;
                    let local = sock.local_addr().ok().map(Address::udp);
                    return Ok(Dialled {
                        socket: Established::Udp(sock),
                        ends: Ends {
                            peer: Some(Address::udp(addr)),
                            local,
                            ..Ends::default()
                        },
                    });
                }
                let stream = match socket::connect_tcp(addr, sockopts, cfg.connect_timeout).await {
                    Ok(s) => s,
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                };
                let local = stream.local_addr().ok().map(|a| Address::ip(*scheme, a));
                let peer = Some(Address::ip(*scheme, addr));
                let Some(tls) = tls else {
                    return Ok(Dialled {
                        socket: Established::Tcp(stream),
                        ends: Ends {
                            peer,
                            local,
                            ..Ends::default()
                        },
                    });
                };
                let (stream, certificates) =
                    tls_connect(cfg, tls, stream, addr.to_string()).await?;
                return Ok(Dialled {
                    socket: Established::TlsTcp(Box::new(stream)),
                    ends: Ends {
                        peer,
                        local,
                        certificates,
                        credentials: None,
                    },
                });
            }
            Err(last_err.expect("resolve returns at least one address"))
        }
        Address::Unix { path, .. } => {
            let stream = socket::connect_unix(path, cfg.connect_timeout).await?;
            let ends = Ends {
                peer: Some(address.clone()),
                credentials: PeerCredentials::of(&stream),
                ..Ends::default()
            };
            let Some(tls) = tls else {
                return Ok(Dialled {
                    socket: Established::Unix(stream),
                    ends,
                });
            };
            let (stream, certificates) = tls_connect(cfg, tls, stream, address.to_string()).await?;
            Ok(Dialled {
                socket: Established::TlsUnix(Box::new(stream)),
                ends: Ends {
                    certificates,
                    ..ends
                },
            })
        }
    }
}

/// The client side of a TLS handshake on a connected stream, bounded by the
/// link's handshake timeout; `peer` names the other end in errors.
pub(crate) async fn tls_connect<IO>(
    cfg: &LinkConfig,
    (connector, name): (tokio_rustls::TlsConnector, ServerName<'static>),
    stream: IO,
    peer: String,
) -> Result<Secured<IO>, LinkError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = connector.connect(name, stream);
    bounded_handshake(cfg, peer, async move {
        handshake.await.map(tokio_rustls::TlsStream::Client)
    })
    .await
}

/// A connector: connects, runs the connection until it ends, waits as the
/// reconnect policy says, and again, until `cancel`.
pub(crate) async fn connector_task(
    registry: Arc<Registry>,
    id: ConnectorId,
    address: Address,
    options: ConnectOptions,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    connector_task_on(registry, id, address, options, None, cancel, events).await
}

/// [`connector_task`], connecting from the given QUIC endpoint (see
/// [`establish_on`]).
pub(crate) async fn connector_task_on(
    registry: Arc<Registry>,
    id: ConnectorId,
    address: Address,
    options: ConnectOptions,
    quic: Option<quinn::Endpoint>,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    let policy = options
        .reconnect
        .clone()
        .unwrap_or_else(|| registry.config.reconnect.clone());
    let mut backoff = Backoff::new(policy);
    let mut connected_before = false;
    let mut rest = registry.rest_signal(id);
    'connecting: loop {
        let attempt = tokio::select! {
            r = establish_on(&registry, &address, &options, quic.as_ref()) => r,
            _ = cancel.cancelled() => break,
        };
        let wait = match attempt {
            Ok(dialled) => {
                if connected_before {
                    registry.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                connected_before = true;
                let conn = registry.new_connection(
                    Origin::Connector(id),
                    dialled.ends,
                    dialled.socket.is_datagram(),
                    &cancel,
                );
                tracing::debug!(connector = %id, conn = %conn.id(), %address, "connected");
                run_established(registry.clone(), conn, dialled.socket, events.clone()).await;
                backoff.after_disconnect(fastrand::f64())
            }
            Err(error) => {
                registry
                    .stats
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(connector = %id, %address, %error, "connect failed");
                registry.inform(
                    &events,
                    LinkEvent::ConnectFailed {
                        connector: id,
                        error: Arc::new(error),
                    },
                );
                backoff.after_failure(fastrand::f64())
            }
        };
        // Resting (another connection to the same peer made this one
        // redundant): no attempt until told to go on.
        if let Some(rest) = &mut rest {
            while *rest.borrow_and_update() {
                tokio::select! {
                    changed = rest.changed() => if changed.is_err() { break },
                    _ = cancel.cancelled() => break 'connecting,
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => break,
        }
    }
    registry.remove_connector(id);
}
