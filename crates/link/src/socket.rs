//! Opening sockets with [`SocketOptions`]: TCP and UDP through socket2,
//! Unix sockets by path or abstract name, and binding to an interface.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket, UnixListener, UnixStream};

use crate::{Address, BindInterface, Host, LinkError, SocketOptions, UnixPath};

/// Resolves the host of an IP address, with a timeout for DNS names.
pub(crate) async fn resolve(
    address: &Address,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, LinkError> {
    let Address::Ip { host, port, .. } = address else {
        return Err(LinkError::Unsupported(format!(
            "{address} is not an IP address"
        )));
    };
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, *port)]),
        Host::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), *port));
            let addrs: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
                .await
                .map_err(|_| LinkError::DnsTimeout {
                    host: name.clone(),
                    timeout,
                })?
                .map_err(|source| LinkError::Dns {
                    host: name.clone(),
                    source,
                })?
                .collect();
            if addrs.is_empty() {
                return Err(LinkError::Dns {
                    host: name.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
                });
            }
            Ok(addrs)
        }
    }
}

/// The name of the interface, from a name or an index.
pub(crate) fn interface_name(interface: &BindInterface) -> Result<String, LinkError> {
    match interface {
        BindInterface::Name(name) => Ok(name.clone()),
        BindInterface::Index(index) => {
            let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
            let ptr = unsafe { libc::if_indextoname(*index, buf.as_mut_ptr()) };
            if ptr.is_null() {
                return Err(LinkError::NoSuchInterface(*index));
            }
            // SAFETY: on success the buffer holds a NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            Ok(name.to_string_lossy().into_owned())
        }
    }
}

/// Binds `socket` to an interface (SO_BINDTODEVICE).
pub(crate) fn bind_interface(socket: &Socket, interface: &BindInterface) -> Result<(), LinkError> {
    let name = interface_name(interface)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket.bind_device(Some(name.as_bytes())).map_err(|source| {
            if source.kind() == io::ErrorKind::PermissionDenied {
                LinkError::BindDevicePermission {
                    interface: name.clone(),
                    source,
                }
            } else {
                LinkError::io(format!("binding to interface `{name}`"), source)
            }
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = socket;
        Err(LinkError::Unsupported(format!(
            "binding to interface `{name}` is only implemented on Linux"
        )))
    }
}

fn new_socket(addr: &SocketAddr, ty: Type, protocol: Protocol) -> Result<Socket, LinkError> {
    let socket = Socket::new(Domain::for_address(*addr), ty, Some(protocol))
        .map_err(|e| LinkError::io("creating a socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
    Ok(socket)
}

fn common_options(
    socket: &Socket,
    opts: &SocketOptions,
    addr: &SocketAddr,
) -> Result<(), LinkError> {
    if let Some(interface) = &opts.interface {
        bind_interface(socket, interface)?;
    }
    if addr.is_ipv6() {
        // Listening on [::] serves both families; a specific v6 address only v6.
        let _ = socket.set_only_v6(!addr.ip().is_unspecified());
    }
    Ok(())
}

/// Connects over TCP with the options and a timeout.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    opts: &SocketOptions,
    timeout: Duration,
) -> Result<TcpStream, LinkError> {
    let socket = new_socket(&addr, Type::STREAM, Protocol::TCP)?;
    common_options(&socket, opts, &addr)?;
    if let Some(linger) = opts.linger {
        socket
            .set_linger(Some(linger))
            .map_err(|e| LinkError::io("setting SO_LINGER", e))?;
    }
    if let Some(local) = opts.bind {
        socket
            .bind(&local.into())
            .map_err(|e| LinkError::io(format!("binding to {local}"), e))?;
    }
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| LinkError::ConnectTimeout {
            address: addr.to_string(),
            timeout,
        })?
        .map_err(|e| LinkError::io(format!("connecting to {addr}"), e))?;
    stream
        .set_nodelay(opts.nodelay)
        .map_err(|e| LinkError::io("setting TCP_NODELAY", e))?;
    Ok(stream)
}

/// Sets per-connection options on an accepted TCP stream.
pub(crate) fn configure_accepted(stream: &TcpStream, opts: &SocketOptions) {
    let _ = stream.set_nodelay(opts.nodelay);
    if let Some(linger) = opts.linger {
        let _ = socket2::SockRef::from(stream).set_linger(Some(linger));
    }
}

/// Binds a TCP listener with the options.
pub(crate) fn listen_tcp(addr: SocketAddr, opts: &SocketOptions) -> Result<TcpListener, LinkError> {
    let socket = new_socket(&addr, Type::STREAM, Protocol::TCP)?;
    common_options(&socket, opts, &addr)?;
    if opts.reuse_addr {
        socket
            .set_reuse_address(true)
            .map_err(|e| LinkError::io("setting SO_REUSEADDR", e))?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| LinkError::io(format!("binding to {addr}"), e))?;
    socket
        .listen(1024)
        .map_err(|e| LinkError::io(format!("listening on {addr}"), e))?;
    TcpListener::from_std(socket.into()).map_err(|e| LinkError::io("registering a listener", e))
}

/// Binds a UDP socket with the options; `connect_to` makes it a connected
/// (client) socket.
pub(crate) async fn bind_udp(
    addr: SocketAddr,
    connect_to: Option<SocketAddr>,
    opts: &SocketOptions,
) -> Result<UdpSocket, LinkError> {
    let socket = new_socket(&addr, Type::DGRAM, Protocol::UDP)?;
    common_options(&socket, opts, &addr)?;
    if opts.reuse_addr && connect_to.is_none() {
        socket
            .set_reuse_address(true)
            .map_err(|e| LinkError::io("setting SO_REUSEADDR", e))?;
    }
    if opts.broadcast {
        socket
            .set_broadcast(true)
            .map_err(|e| LinkError::io("setting SO_BROADCAST", e))?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| LinkError::io(format!("binding to {addr}"), e))?;
    let socket = UdpSocket::from_std(socket.into())
        .map_err(|e| LinkError::io("registering a UDP socket", e))?;
    if let Some(peer) = connect_to {
        socket
            .connect(peer)
            .await
            .map_err(|e| LinkError::io(format!("connecting to {peer}"), e))?;
    }
    Ok(socket)
}

/// The unspecified local address of the same family as `peer`.
pub(crate) fn any_local_for(peer: &SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

fn unix_sockaddr(path: &UnixPath) -> Result<SockAddr, LinkError> {
    match path {
        UnixPath::Path(p) => {
            SockAddr::unix(p).map_err(|e| LinkError::io(format!("Unix address {}", p.display()), e))
        }
        UnixPath::Abstract(name) => {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err(LinkError::Unsupported(
                    "abstract Unix sockets exist only on Linux".into(),
                ));
            }
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(name);
            let os = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes);
            SockAddr::unix(os).map_err(|e| LinkError::io("abstract Unix address", e))
        }
    }
}

fn describe(path: &UnixPath) -> String {
    Address::unix(path.clone(), false).to_string()
}

/// Connects to a Unix stream socket.
pub(crate) async fn connect_unix(
    path: &UnixPath,
    timeout: Duration,
) -> Result<UnixStream, LinkError> {
    let addr = unix_sockaddr(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
        .map_err(|e| LinkError::io("creating a Unix socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| LinkError::io("setting non-blocking mode", e))?;
    match socket.connect(&addr) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => {
            return Err(LinkError::io(
                format!("connecting to {}", describe(path)),
                e,
            ));
        }
    }
    let stream = UnixStream::from_std(std::os::unix::net::UnixStream::from(socket))
        .map_err(|e| LinkError::io("registering a Unix stream", e))?;
    tokio::time::timeout(timeout, stream.writable())
        .await
        .map_err(|_| LinkError::ConnectTimeout {
            address: describe(path),
            timeout,
        })?
        .map_err(|e| LinkError::io(format!("connecting to {}", describe(path)), e))?;
    if let Some(e) = stream
        .take_error()
        .map_err(|e| LinkError::io("connecting", e))?
    {
        return Err(LinkError::io(
            format!("connecting to {}", describe(path)),
            e,
        ));
    }
    Ok(stream)
}

/// Binds a Unix listener. A stale socket file nobody listens on is replaced.
pub(crate) fn listen_unix(path: &UnixPath) -> Result<UnixListener, LinkError> {
    let addr = unix_sockaddr(path)?;
    let bind = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr)?;
        socket.listen(1024)?;
        Ok(socket)
    };
    let socket = match (bind(), path) {
        (Ok(s), _) => s,
        (Err(e), UnixPath::Path(p)) if e.kind() == io::ErrorKind::AddrInUse => {
            let in_use = std::os::unix::net::UnixStream::connect(p).is_ok();
            if in_use {
                return Err(LinkError::io(format!("binding to {}", describe(path)), e));
            }
            std::fs::remove_file(p)
                .map_err(|e| LinkError::io(format!("removing stale socket {}", p.display()), e))?;
            bind().map_err(|e| LinkError::io(format!("binding to {}", describe(path)), e))?
        }
        (Err(e), _) => return Err(LinkError::io(format!("binding to {}", describe(path)), e)),
    };
    UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
        .map_err(|e| LinkError::io("registering a Unix listener", e))
}
