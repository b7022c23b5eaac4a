//! Binding a socket to the loopback interface: it works as root (and, on
//! Linux 5.7 and later, for everyone), or fails with the typed permission
//! error. Traffic goes from the socket to itself over loopback only.

use std::net::UdpSocket;
use std::time::Duration;

use weft_netiface::{NetifaceError, bind_to_interface, interfaces};

fn loopback_name() -> String {
    interfaces()
        .unwrap()
        .into_iter()
        .find(|i| i.flags.loopback)
        .expect("a loopback interface")
        .name
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[cfg(unix)]
    return unsafe { libc::geteuid() == 0 };
    #[cfg(not(unix))]
    return false;
}

#[test]
fn binding_to_loopback_works_or_is_denied() {
    let lo = loopback_name();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    match bind_to_interface(&socket, &lo) {
        Ok(()) => {
            #[cfg(target_os = "linux")]
            assert_eq!(
                socket2::SockRef::from(&socket).device().unwrap(),
                Some(lo.clone().into_bytes()),
                "SO_BINDTODEVICE is set"
            );
            // Still usable: a datagram to itself over loopback.
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let me = socket.local_addr().unwrap();
            socket.send_to(b"weft", me).unwrap();
            let mut buf = [0; 16];
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"weft"[..], me));
        }
        Err(NetifaceError::PermissionDenied { interface, source }) => {
            assert!(!is_root(), "root was refused: {source}");
            assert_eq!(interface, lo);
            eprintln!("not root: binding to {lo} refused as expected ({source})");
        }
        Err(NetifaceError::Unsupported(_))
            if !cfg!(any(target_os = "linux", target_vendor = "apple")) => {}
        Err(e) => panic!("binding to {lo}: {e}"),
    }
}

#[test]
fn binding_works_on_ipv6_and_tcp_sockets_too() {
    let lo = loopback_name();
    let Ok(v6) = UdpSocket::bind("[::1]:0") else {
        eprintln!("!!!!! SKIPPED: no IPv6 loopback here !!!!!");
        return;
    };
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for result in [bind_to_interface(&v6, &lo), bind_to_interface(&tcp, &lo)] {
        match result {
            Ok(()) => {}
            Err(NetifaceError::PermissionDenied { .. }) if !is_root() => {}
            Err(NetifaceError::Unsupported(_))
                if !cfg!(any(target_os = "linux", target_vendor = "apple")) => {}
            Err(e) => panic!("binding to {lo}: {e}"),
        }
    }
}

#[test]
fn an_unknown_interface_is_named_in_the_error() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    match bind_to_interface(&socket, "weft-none9") {
        Err(NetifaceError::NoSuchInterface(name)) => assert_eq!(name, "weft-none9"),
        Err(NetifaceError::PermissionDenied { .. }) if !is_root() => {}
        Err(NetifaceError::Unsupported(_))
            if !cfg!(any(target_os = "linux", target_vendor = "apple")) => {}
        other => panic!("{other:?}"),
    }
}

/// Linux lets anyone bind an unbound socket (since 5.7), but changing the
/// binding of a bound socket needs `CAP_NET_RAW`: without it the answer is
/// the typed permission error. As root, a thread gives up root for itself
/// (a raw `setresuid` changes only the calling thread) to show it.
#[cfg(target_os = "linux")]
#[test]
fn without_privilege_rebinding_is_a_typed_permission_error() {
    let lo = loopback_name();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    match bind_to_interface(&socket, &lo) {
        Ok(()) => {}
        Err(NetifaceError::PermissionDenied { .. }) if !is_root() => return, // Linux < 5.7
        Err(e) => panic!("binding to {lo}: {e}"),
    }
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            if is_root() {
                let nobody: libc::c_long = 65534;
                // SAFETY: the raw system call changes this thread's
                // credentials only; the thread ends right after.
                let rc = unsafe { libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) };
                assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
                assert!(!is_root());
            }
            bind_to_interface(&socket, &lo)
        })
        .join()
        .unwrap()
    });
    match result {
        Err(NetifaceError::PermissionDenied { interface, source }) => {
            assert_eq!(interface, lo);
            assert_eq!(source.raw_os_error(), Some(libc::EPERM));
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}
