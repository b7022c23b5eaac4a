//! quinn's configurations made from the link's, and endpoints on sockets.

use std::net::{IpAddr, SocketAddr};
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
/// its peer open one bidirectional stream, the packet stream, and either
/// side lets its peer open [`QuicOptions::max_lanes`] more at a time, the
/// lanes.
/// Unidirectional streams are unused.
///
/// Toward a loopback peer the path carries [`MAX_UDP_PAYLOAD`] for sure (a
/// loopback interface's MTU is 64 KiB), so packets have that size from
/// the start and no MTU discovery runs: its probes would only cost each
/// connection a send buffer of the probe's size (and the peer a receive
/// of it), which a thousand idle connections feel.
fn transport(options: &QuicOptions, accepts_streams: bool, loopback: bool) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(IdleTimeout::try_from(options.idle_timeout).ok())
        .keep_alive_interval(options.keep_alive)
        .max_concurrent_bidi_streams(VarInt::from_u32(
            u32::from(accepts_streams).saturating_add(options.max_lanes),
        ))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    if loopback {
        t.initial_mtu(MAX_UDP_PAYLOAD).mtu_discovery_config(None);
    } else {
        let mut mtu = MtuDiscoveryConfig::default();
        mtu.upper_bound(MAX_UDP_PAYLOAD);
        t.mtu_discovery_config(Some(mtu));
    }
    Arc::new(t)
}

/// Whether `ip` is a loopback address, also as an IPv4-mapped IPv6 one
/// (a dual-stack socket sees IPv4 peers so).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
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
    config.transport_config(transport(options, true, false));
    Ok(config)
}

/// A listener's configuration for the connections of loopback peers:
/// `server`'s, with the transport of a loopback path.
pub(crate) fn for_loopback(
    server: &quinn::ServerConfig,
    options: &QuicOptions,
) -> Arc<quinn::ServerConfig> {
    let mut config = server.clone();
    config.transport_config(transport(options, true, true));
    Arc::new(config)
}

/// A connector's quinn configuration from its TLS configuration, for a
/// loopback peer or another.
pub(crate) fn client_config(
    tls: &TlsClientConfig,
    options: &QuicOptions,
    loopback: bool,
) -> Result<quinn::ClientConfig, LinkError> {
    let mut rustls = (*tls.inner).clone();
    if rustls.alpn_protocols.is_empty() {
        rustls.alpn_protocols = vec![ALPN.to_vec()];
    }
    let crypto = QuicClientConfig::try_from(rustls).map_err(LinkError::QuicTls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(options, false, loopback));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers_are_known_also_behind_a_mapped_address() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "0.0.0.0"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
