//! Opening sockets: a local address, an optional interface
//! (SO_BINDTODEVICE through socket2), and the local address the system
//! would use towards a destination.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::StunError;

/// The unspecified address of `peer`'s family, port 0.
pub(crate) fn unspecified_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// Binds `socket` to the interface named `interface` (SO_BINDTODEVICE).
pub(crate) fn bind_device(socket: &Socket, interface: &str) -> Result<(), StunError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(|source| {
                if source.kind() == io::ErrorKind::PermissionDenied {
                    StunError::InterfacePermission {
                        interface: interface.to_owned(),
                        source,
                    }
                } else {
                    StunError::io(format!("binding to interface `{interface}`"), source)
                }
            })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = socket;
        Err(StunError::Unsupported(format!(
            "binding to interface `{interface}` is only implemented on Linux"
        )))
    }
}

fn new_socket(family: SocketAddr, ty: Type, protocol: Protocol) -> Result<Socket, StunError> {
    let socket = Socket::new(Domain::for_address(family), ty, Some(protocol))
        .map_err(|e| StunError::io("creating a socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| StunError::io("setting non-blocking mode", e))?;
    if family.is_ipv6() {
        // One family per socket: IPv4 peers never show up as mapped IPv6.
        let _ = socket.set_only_v6(true);
    }
    Ok(socket)
}

/// A UDP socket bound to `local`, and to `interface` when given.
pub(crate) fn bind_udp(local: SocketAddr, interface: Option<&str>) -> Result<UdpSocket, StunError> {
    let socket = new_socket(local, Type::DGRAM, Protocol::UDP)?;
    if let Some(name) = interface {
        bind_device(&socket, name)?;
    }
    socket
        .bind(&SockAddr::from(local))
        .map_err(|e| StunError::io(format!("binding UDP to {local}"), e))?;
    UdpSocket::from_std(socket.into()).map_err(|e| StunError::io("registering a UDP socket", e))
}

/// Connects over TCP to `server` from `local_ip` (any port) and
/// `interface` when given.
pub(crate) async fn connect_tcp(
    server: SocketAddr,
    local_ip: Option<IpAddr>,
    interface: Option<&str>,
) -> Result<TcpStream, StunError> {
    let socket = new_socket(server, Type::STREAM, Protocol::TCP)?;
    if let Some(name) = interface {
        bind_device(&socket, name)?;
    }
    if let Some(ip) = local_ip {
        let local = SocketAddr::new(ip, 0);
        socket
            .bind(&SockAddr::from(local))
            .map_err(|e| StunError::io(format!("binding TCP to {local}"), e))?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    let _ = socket.set_nodelay(true);
    socket
        .connect(server)
        .await
        .map_err(|e| StunError::io(format!("connecting to {server}"), e))
}

/// A TCP listener on `addr`.
pub(crate) fn listen_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(128)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// A UDP socket for a server on `addr`.
pub(crate) fn server_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket.bind(&SockAddr::from(addr))?;
    UdpSocket::from_std(socket.into())
}

/// The local address a socket bound to `bound` uses towards `peer`: when
/// bound to an unspecified IP, the source IP the routing table picks
/// (found by connecting a throw-away UDP socket, which sends nothing).
pub(crate) fn local_towards(
    bound: SocketAddr,
    peer: SocketAddr,
    interface: Option<&str>,
) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let probe = || -> Result<IpAddr, StunError> {
        let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| StunError::io("creating a probe socket", e))?;
        if let Some(name) = interface {
            bind_device(&socket, name)?;
        }
        socket
            .connect(&SockAddr::from(peer))
            .map_err(|e| StunError::io("routing probe", e))?;
        let local = socket
            .local_addr()
            .map_err(|e| StunError::io("routing probe", e))?;
        local
            .as_socket()
            .map(|a| a.ip())
            .ok_or_else(|| StunError::Unsupported("probe socket has no IP address".into()))
    };
    match probe() {
        Ok(ip) => SocketAddr::new(ip, bound.port()),
        Err(_) => bound,
    }
}

/// Runs `f` with `timeout`, mapping elapsed to a typed timeout for
/// `server` (one request sent).
pub(crate) async fn with_timeout<T>(
    server: SocketAddr,
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, StunError>>,
) -> Result<T, StunError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(StunError::Timeout {
            server,
            requests: 1,
            elapsed: timeout,
        }),
    }
}
