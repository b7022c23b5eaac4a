//! Binding a socket to a network interface, so that what it sends leaves
//! through that interface whatever the routing table prefers, and it
//! receives only what arrives there.
//!
//! | system | mechanism |
//! | --- | --- |
//! | Linux, Android | `SO_BINDTODEVICE`, by name |
//! | macOS, iOS and other Apple systems | `IP_BOUND_IF` / `IPV6_BOUND_IF`, by index |
//! | elsewhere | [`NetifaceError::Unsupported`] |

use std::io;

use crate::NetifaceError;

/// Binds `socket` to the interface named `interface`: packets it sends leave
/// through that interface, and it receives only packets that arrived there.
///
/// Call it before `connect` (and preferably before `bind`). On Apple
/// systems the option is per family; the family is taken from the socket's
/// local address. Works on anything that owns a socket descriptor:
/// [`std::net::UdpSocket`], [`socket2::Socket`], tokio sockets.
///
/// ```
/// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// # let lo = weft_netiface::interfaces()?.into_iter().find(|i| i.flags.loopback).unwrap().name;
/// match weft_netiface::bind_to_interface(&socket, &lo) {
///     Ok(()) => {}
///     Err(weft_netiface::NetifaceError::PermissionDenied { .. }) => {} // needs CAP_NET_RAW on old Linux
///     Err(weft_netiface::NetifaceError::Unsupported(_)) => {}
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// - [`NetifaceError::PermissionDenied`] when the system refuses (`EPERM`,
///   `EACCES`; Linux before 5.7 requires `CAP_NET_RAW`),
/// - [`NetifaceError::NoSuchInterface`] when no interface has that name (or
///   the name is empty, too long or holds a NUL),
/// - [`NetifaceError::Unsupported`] on systems with no way to do it,
/// - [`NetifaceError::Io`] for anything else the system reports.
#[cfg(unix)]
pub fn bind_to_interface<S: std::os::fd::AsFd>(
    socket: &S,
    interface: &str,
) -> Result<(), NetifaceError> {
    if interface.is_empty() || interface.len() >= libc::IF_NAMESIZE || interface.contains('\0') {
        // An empty name would remove the binding rather than set one.
        return Err(NetifaceError::NoSuchInterface(interface.to_owned()));
    }
    let socket = socket2::SockRef::from(socket);
    imp::bind(&socket, interface).map_err(|e| bind_error(interface, e))
}

/// Binds `socket` to the interface named `interface`; not implemented here.
///
/// # Errors
/// Always [`NetifaceError::Unsupported`].
#[cfg(windows)]
pub fn bind_to_interface<S: std::os::windows::io::AsSocket>(
    socket: &S,
    interface: &str,
) -> Result<(), NetifaceError> {
    let _ = (socket, interface);
    Err(NetifaceError::Unsupported(
        "binding a socket to an interface is not implemented on Windows",
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    pub(super) fn bind(socket: &socket2::SockRef<'_>, interface: &str) -> std::io::Result<()> {
        socket.bind_device(Some(interface.as_bytes()))
    }
}

#[cfg(target_vendor = "apple")]
mod imp {
    use std::io;
    use std::num::NonZeroU32;

    pub(super) fn bind(socket: &socket2::SockRef<'_>, interface: &str) -> io::Result<()> {
        let index = crate::interface::index_of(interface)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENXIO))?;
        let is_v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        if is_v6 {
            socket.bind_device_by_index_v6(Some(index))
        } else {
            socket.bind_device_by_index_v4(Some(index))
        }
    }
}

#[cfg(all(
    unix,
    not(any(target_os = "linux", target_os = "android", target_vendor = "apple"))
))]
mod imp {
    pub(super) fn bind(_socket: &socket2::SockRef<'_>, _interface: &str) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Maps the system's error for binding to `interface` to a typed one.
#[cfg_attr(not(unix), allow(dead_code))]
fn bind_error(interface: &str, source: io::Error) -> NetifaceError {
    #[cfg(unix)]
    let (no_such, denied) = match source.raw_os_error() {
        Some(code) => (
            code == libc::ENODEV || code == libc::ENXIO,
            code == libc::EPERM || code == libc::EACCES,
        ),
        None => (false, false),
    };
    #[cfg(not(unix))]
    let (no_such, denied) = (false, false);
    if no_such {
        NetifaceError::NoSuchInterface(interface.to_owned())
    } else if denied || source.kind() == io::ErrorKind::PermissionDenied {
        NetifaceError::PermissionDenied {
            interface: interface.to_owned(),
            source,
        }
    } else if source.kind() == io::ErrorKind::Unsupported {
        NetifaceError::Unsupported("binding a socket to an interface")
    } else {
        NetifaceError::io(format!("binding to interface `{interface}`"), source)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        let err = |code| bind_error("eth9", io::Error::from_raw_os_error(code));
        assert!(matches!(
            err(libc::EPERM),
            NetifaceError::PermissionDenied { interface, .. } if interface == "eth9"
        ));
        assert!(matches!(
            err(libc::EACCES),
            NetifaceError::PermissionDenied { .. }
        ));
        assert!(matches!(
            err(libc::ENODEV),
            NetifaceError::NoSuchInterface(name) if name == "eth9"
        ));
        assert!(matches!(
            bind_error("x", io::ErrorKind::Unsupported.into()),
            NetifaceError::Unsupported(_)
        ));
        let other = err(libc::EINVAL);
        assert!(matches!(other, NetifaceError::Io { .. }));
        assert!(other.to_string().contains("eth9"), "{other}");
    }

    #[test]
    fn bad_names_are_refused_before_the_system_call() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for name in ["", "a\0b", "a-name-far-too-long-for-any-system"] {
            assert!(
                matches!(
                    bind_to_interface(&socket, name),
                    Err(NetifaceError::NoSuchInterface(_))
                ),
                "{name:?}"
            );
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn unknown_interface() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        match bind_to_interface(&socket, "weft-nope0") {
            Err(NetifaceError::NoSuchInterface(name)) => assert_eq!(name, "weft-nope0"),
            // Without the right, the check for the name may come second.
            Err(NetifaceError::PermissionDenied { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
