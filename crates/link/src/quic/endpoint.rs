//! quinn's configurations made from the link's, and endpoints on sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use rustls::pki_types::CertificateDer;

use super::garbage::CountingSocket;
use super::stun::{Sender, StunInbox};
use super::{ALPN, QuicOptions};
use crate::config::SocketOptions;
use crate::error::LinkError;
use crate::socket;
use crate::tls::{TlsClientConfig, TlsServerConfig};

/// The largest UDP payload MTU discovery searches for, and the largest an
/// endpoint accepts. QUIC starts at 1,200 bytes and probes upwards while a
/// connection is idle; every packet costs a fixed amount of work (header,
/// AEAD call, loss and acknowledgement bookkeeping) on both sides, so on
/// paths that carry more (loopback, jumbo frames) larger packets cut that
/// work per byte several times over. quinn hands the system up to ten
/// datagrams per GSO send, which Linux refuses (EMSGSIZE, taken as loss)
/// once they add up to more than 65,507 bytes, so this stays below a tenth
/// of that. On a 1,500-byte Ethernet path the probes above it are lost
/// and the search settles where quinn's default bound (1,452) would.
/// The cost: each endpoint's receive buffer (quinn sizes it as this times
/// its batch) and each connection's send buffer grow with it.
const MAX_UDP_PAYLOAD: u16 = 6_500;
// quinn's batches of ten datagrams fit in one UDP send.
const _: () = assert!(10 * MAX_UDP_PAYLOAD as u32 <= 65_507);

/// Transport parameters for one side. The side that accepts streams lets
/// its peer open one bidirectional stream at a time, the packet stream;
/// the side that opens it accepts none. Unidirectional streams are unused.
fn transport(options: &QuicOptions, accepts_streams: bool) -> Arc<TransportConfig> {
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    let mut t = TransportConfig::default();
    t.max_idle_timeout(IdleTimeout::try_from(options.idle_timeout).ok())
        .keep_alive_interval(options.keep_alive)
        .max_concurrent_bidi_streams(VarInt::from_u32(u32::from(accepts_streams)))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .mtu_discovery_config(Some(mtu));
    Arc::new(t)
}

/// A listener's quinn configuration from its TLS configuration.
pub(crate) fn server_config(
    tls: &TlsServerConfig,
    options: &QuicOptions,
) -> Result<quinn::ServerConfig, LinkError> {
    let mut rustls = (*tls.inner).clone();
    if rustls.alpn_protocols.is_empty() {
        rustls.alpn_protocols = vec![ALPN.to_vec()];
    }
    let crypto = QuicServerConfig::try_from(rustls).map_err(LinkError::QuicTls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(options, true));
    Ok(config)
}

/// A connector's quinn configuration from its TLS configuration.
pub(crate) fn client_config(
    tls: &TlsClientConfig,
    options: &QuicOptions,
) -> Result<quinn::ClientConfig, LinkError> {
    let mut rustls = (*tls.inner).clone();
    if rustls.alpn_protocols.is_empty() {
        rustls.alpn_protocols = vec![ALPN.to_vec()];
    }
    let crypto = QuicClientConfig::try_from(rustls).map_err(LinkError::QuicTls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(options, false));
    Ok(config)
}

/// An endpoint on a std socket (made non-blocking here); it accepts
/// connections when given a server configuration. Datagrams that are not
/// QUIC are counted in `dropped`; STUN datagrams go to `stun`, whose
/// replies then leave from this socket.
pub(crate) fn on_socket(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    dropped: &Arc<AtomicU64>,
    stun: &Arc<StunInbox>,
) -> Result<quinn::Endpoint, LinkError> {
    let (socket, sender) = counting(socket, dropped, stun)?;
    let mut config = EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("within QUIC's limits");
    // Every packet to us keeps QUIC's fixed bit, so that a datagram without
    // it is known for garbage (see `garbage.rs`).
    config.grease_quic_bit(false);
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        config,
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| LinkError::io("starting a QUIC endpoint", e))?;
    stun.send_through(sender);
    Ok(endpoint)
}

/// A std socket (made non-blocking here) for quinn, counting the datagrams
/// that are not QUIC in `dropped` and handing STUN to `stun`; and the
/// sender to give `stun` once the endpoint uses the socket.
pub(crate) fn counting(
    socket: std::net::UdpSocket,
    dropped: &Arc<AtomicU64>,
    stun: &Arc<StunInbox>,
) -> Result<(Arc<dyn quinn::AsyncUdpSocket>, Arc<Sender>), LinkError> {
    socket
        .set_nonblocking(true)
        .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
    CountingSocket::wrap(socket, dropped.clone(), stun.clone())
        .map_err(|e| LinkError::io("registering a UDP socket", e))
}

/// The receive buffer asked for on the sockets QUIC endpoints bind. One
/// socket carries every connection of a listener, or every connector's of
/// a link, so a burst of handshakes (each Initial is a padded datagram of
/// at least 1,200 bytes, each server flight several) arrives on one socket
/// at once; the system's default buffer (about 200 KiB on Linux) holds
/// fewer than a hundred such datagrams and drops the rest, whose
/// retransmission QUIC delays by a second and more. The system caps the
/// value (`net.core.rmem_max` on Linux); the memory is the kernel's, and
/// only what is queued uses it.
const RECEIVE_BUFFER: usize = 4 << 20;

/// An endpoint on a new socket bound to `addr` with the socket options.
pub(crate) async fn bind(
    addr: SocketAddr,
    options: &SocketOptions,
    server: Option<quinn::ServerConfig>,
    dropped: &Arc<AtomicU64>,
    stun: &Arc<StunInbox>,
) -> Result<quinn::Endpoint, LinkError> {
    let socket = socket::bind_udp(addr, None, options).await?;
    let socket = socket
        .into_std()
        .map_err(|e| LinkError::io("taking a UDP socket back from the runtime", e))?;
    // Best effort: a smaller buffer only makes bursts slower.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RECEIVE_BUFFER);
    on_socket(socket, server, dropped, stun)
}

/// The certificate chain the peer of an established connection presented.
pub(crate) fn peer_certificates(
    connection: &quinn::Connection,
) -> Option<Arc<[CertificateDer<'static>]>> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    Some(chain.as_slice().into())
}

/// Our address on a connection: the endpoint's port, and the local IP
/// its packets use: the one the system reports for the connection, else
/// the bound one, else (bound to a wildcard address) the one the routing
/// table picks for the peer, asked of a socket connected for the purpose
/// (which sends nothing).
pub(crate) fn local_addr(
    endpoint: &quinn::Endpoint,
    connection: &quinn::Connection,
) -> Option<SocketAddr> {
    let bound = endpoint.local_addr().ok()?;
    let ip = match connection.local_ip() {
        Some(ip) => ip,
        None if !bound.ip().is_unspecified() => bound.ip(),
        None => {
            let remote = connection.remote_address();
            let probe = std::net::UdpSocket::bind(socket::any_local_for(&remote)).ok()?;
            probe.connect(remote).ok()?;
            probe.local_addr().ok()?.ip()
        }
    };
    Some(SocketAddr::new(ip, bound.port()))
}
