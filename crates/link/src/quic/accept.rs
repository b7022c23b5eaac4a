//! The listening side of QUIC link connections: an endpoint's accept loop,
//! each handshake in a task of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dial::Held;
use super::stream::QuicStream;
use super::{QuicLink, STREAM_PACKETS, StunInbox, endpoint, run_quic};
use crate::address::{Address, Scheme};
use crate::connection::Ends;
use crate::connection::Origin;
use crate::error::LinkError;
use crate::link::{LinkEvent, ListenOptions, ListenerId, Listening};
use crate::registry::{ListenerEntry, Registry};
use crate::socket;

/// Binds a `quic://` listener and starts accepting.
pub(crate) async fn listen(
    registry: &Arc<Registry>,
    address: &Address,
    options: ListenOptions,
) -> Result<Listening, LinkError> {
    let tls = options.tls.ok_or_else(|| LinkError::TlsConfigMissing {
        address: address.to_string(),
        side: "server",
    })?;
    let server = endpoint::server_config(&tls, &registry.config.quic)?;
    let loopback = endpoint::for_loopback(&server, &registry.config.quic);
    let sockopts = options
        .socket
        .unwrap_or_else(|| registry.config.socket.clone());
    let addr = *socket::resolve(address, registry.config.dns_timeout)
        .await?
        .first()
        .expect("resolve returns at least one address");
    let dropped = &registry.stats.quic_datagrams_dropped;
    let stun = stun_inbox(registry);
    let endpoint = endpoint::bind(addr, &sockopts, Some(server), dropped, &stun).await?;
    start(registry, endpoint, stun, loopback)
}

/// A STUN inbox for a new endpoint of the link.
pub(crate) fn stun_inbox(registry: &Registry) -> Arc<StunInbox> {
    StunInbox::new(
        registry.config.quic.stun_queue,
        registry.stats.stun_datagrams_dropped.clone(),
    )
}

/// Accepts on `endpoint` (which has a server configuration, and whose
/// socket hands its STUN datagrams to `stun`) as a listener of the link
/// until the listener is removed; loopback peers' connections with
/// `loopback` (see [`endpoint::for_loopback`]).
pub(crate) fn start(
    registry: &Arc<Registry>,
    endpoint: quinn::Endpoint,
    stun: Arc<StunInbox>,
    loopback: Arc<quinn::ServerConfig>,
) -> Result<Listening, LinkError> {
    let events = registry.sender()?;
    let bound = endpoint
        .local_addr()
        .map_err(|e| LinkError::io("reading the local address", e))?;
    let address = Address::ip(Scheme::Quic, bound);
    let id = ListenerId(registry.next_id());
    let cancel = registry.shutdown().child_token();
    registry.spawn(accept_task(
        registry.clone(),
        id,
        endpoint,
        loopback,
        cancel.clone(),
        events,
    ));
    registry.add_listener(
        id,
        ListenerEntry {
            cancel,
            unix_file: None,
            udp: None,
            stun: Some(stun),
        },
    );
    tracing::debug!(listener = %id, %address, "listening");
    Ok(Listening { id, address })
}

/// Accepts until `cancel`; then refuses new connections and, unless the
/// link is shutting down, waits until the endpoint's accepted connections
/// have ended, so that a closed link has released its port.
async fn accept_task(
    registry: Arc<Registry>,
    id: ListenerId,
    endpoint: quinn::Endpoint,
    loopback: Arc<quinn::ServerConfig>,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = cancel.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let registry2 = registry.clone();
        let events = events.clone();
        let endpoint = endpoint.clone();
        let config =
            endpoint::is_loopback(incoming.remote_address().ip()).then(|| loopback.clone());
        registry.spawn(async move {
            handshake(registry2, id, endpoint, incoming, config, events).await;
        });
    }
    endpoint.set_server_config(None);
    tokio::select! {
        _ = endpoint.wait_idle() => {}
        _ = registry.shutdown().cancelled() => endpoint.close(quinn::VarInt::from_u32(0), b""),
    }
}

/// The server side of one connection: handshake, the stream and its first
/// byte, all within the handshake timeout; then the connection runs. A
/// failure is counted and reported as `AcceptFailed`.
async fn handshake(
    registry: Arc<Registry>,
    id: ListenerId,
    endpoint: quinn::Endpoint,
    incoming: quinn::Incoming,
    config: Option<Arc<quinn::ServerConfig>>,
    events: mpsc::Sender<LinkEvent>,
) {
    let peer = incoming.remote_address();
    let timeout = registry.config.tls_handshake_timeout;
    let accepted = tokio::time::timeout(timeout, accept_stream(incoming, config, peer)).await;
    let error = match accepted {
        Ok(Ok((connection, stream))) => {
            let ends = Ends {
                peer: Some(Address::ip(Scheme::Quic, connection.remote_address())),
                local: endpoint::local_addr(&endpoint, &connection)
                    .map(|a| Address::ip(Scheme::Quic, a)),
                certificates: endpoint::peer_certificates(&connection),
                credentials: None,
            };
            let conn =
                registry.new_connection(Origin::Listener(id), ends, false, registry.shutdown());
            let link = QuicLink {
                held: Held::Elsewhere,
                connection,
                stream,
            };
            run_quic(registry, conn, link, events).await;
            return;
        }
        Ok(Err(error)) => error,
        Err(_) => LinkError::HandshakeTimeout {
            peer: peer.to_string(),
            timeout,
        },
    };
    registry
        .stats
        .accept_failures
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(listener = %id, %error, "QUIC accept failed");
    registry.inform(
        &events,
        LinkEvent::AcceptFailed {
            listener: id,
            error: Arc::new(error),
        },
    );
}

/// Completes the handshake (with `config` instead of the endpoint's when
/// given) and takes the packet stream the connector opens.
async fn accept_stream(
    incoming: quinn::Incoming,
    config: Option<Arc<quinn::ServerConfig>>,
    peer: SocketAddr,
) -> Result<(quinn::Connection, QuicStream), LinkError> {
    let lost = |source| LinkError::Quic {
        peer: peer.to_string(),
        source,
    };
    let connecting = match config {
        Some(config) => incoming.accept_with(config),
        None => incoming.accept(),
    };
    let connection = connecting.map_err(lost)?.await.map_err(lost)?;
    let (send, mut recv) = connection.accept_bi().await.map_err(lost)?;
    let mut kind = [0u8; 1];
    let bad = |detail| LinkError::QuicStream {
        peer: peer.to_string(),
        detail,
    };
    match recv.read_exact(&mut kind).await {
        Ok(()) if kind[0] == STREAM_PACKETS => Ok((connection, QuicStream { send, recv })),
        Ok(()) => Err(bad("its stream starts with an unknown kind")),
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e))) => Err(lost(e)),
        Err(_) => Err(bad("its stream ended or was reset before its first byte")),
    }
}
