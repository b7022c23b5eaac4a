//! Transport addresses written as URLs.
//!
//! | URL | transport |
//! | --- | --- |
//! | `tcp://127.0.0.1:4000`, `tcp://[::1]:4000`, `tcp://example.org:4000` | TCP |
//! | `tls://host:port`, `ssl://host:port` (alias) | TLS over TCP |
//! | `udp://host:port` | UDP, one datagram per message |
//! | `quic://host:port` | QUIC (TLS 1.3 over UDP): reliable, ordered, encrypted |
//! | `unix:///abs/path`, `unix://rel/path` | Unix stream socket at a path |
//! | `unix://@name`, `unix://\0name` | Linux abstract Unix socket |
//! | `unix+tls://...` | TLS over a Unix stream socket |
//!
//! Parsing never touches the network; DNS names are resolved later, when a
//! listener binds or a connector connects, with the link's DNS timeout.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed transport address. Build one with [`str::parse`] or the
/// constructors; [`Display`](fmt::Display) writes it back as a URL.
///
/// ```
/// use weft_link::Address;
/// use weft_link::address::Scheme;
/// let addr: Address = "tls://[::1]:4433".parse()?;
/// assert_eq!(addr.scheme(), Scheme::Tls);
/// assert_eq!(addr.to_string(), "tls://[::1]:4433");
/// # Ok::<(), weft_link::address::AddressError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IP transport (`tcp`, `tls`, `udp`, `quic`) with a host and a port.
    Ip {
        /// The transport.
        scheme: Scheme,
        /// The host: an IP literal or a DNS name.
        host: Host,
        /// The port; 0 asks the system for one when listening.
        port: u16,
    },
    /// A Unix stream socket, plain or with TLS.
    Unix {
        /// Whether TLS runs over the socket (`unix+tls://`).
        tls: bool,
        /// Where the socket lives.
        path: UnixPath,
    },
}

/// The transport named by an address's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `tcp://`
    Tcp,
    /// `tls://` or `ssl://`
    Tls,
    /// `udp://`
    Udp,
    /// `quic://`: QUIC, whose handshake is TLS 1.3, so it needs the same
    /// TLS configurations as `tls://`.
    Quic,
    /// `unix://`
    Unix,
    /// `unix+tls://`
    UnixTls,
}

impl Scheme {
    /// The scheme as written in a URL (`ssl` is written as `tls`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Udp => "udp",
            Scheme::Quic => "quic",
            Scheme::Unix => "unix",
            Scheme::UnixTls => "unix+tls",
        }
    }

    /// Whether the transport runs TLS (QUIC does: its handshake is TLS 1.3).
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Tls | Scheme::UnixTls | Scheme::Quic)
    }

    /// Whether the transport carries datagrams rather than a byte stream.
    pub fn is_datagram(self) -> bool {
        matches!(self, Scheme::Udp)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host part of an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A DNS name, resolved when used.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Where a Unix socket lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixPath {
    /// A path in the file system, absolute or relative.
    Path(PathBuf),
    /// A name in Linux's abstract namespace (no file is created).
    Abstract(Vec<u8>),
}

/// Why a string is not a valid [`Address`]. Each variant names the bad part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `scheme://` in front.
    #[error("`{input}` has no scheme: expected a URL such as tcp://127.0.0.1:4000")]
    MissingScheme {
        /// The whole input.
        input: String,
    },
    /// A scheme weft does not know.
    #[error(
        "unknown scheme `{scheme}` in `{input}`: expected tcp, tls, ssl, udp, quic, unix or unix+tls"
    )]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
        /// The whole input.
        input: String,
    },
    /// The host is empty or malformed.
    #[error("bad host `{host}` in `{input}`: {reason}")]
    BadHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
        /// The whole input.
        input: String,
    },
    /// No `:port` after the host.
    #[error("missing port in `{input}`: expected host:port")]
    MissingPort {
        /// The whole input.
        input: String,
    },
    /// The port is not a number from 0 to 65535.
    #[error("bad port `{port}` in `{input}`: expected a number from 0 to 65535")]
    BadPort {
        /// The port as written.
        port: String,
        /// The whole input.
        input: String,
    },
    /// A path, query or fragment after `host:port`.
    #[error("unexpected `{rest}` after the port in `{input}`")]
    TrailingPath {
        /// What follows the port.
        rest: String,
        /// The whole input.
        input: String,
    },
    /// A Unix address with nothing after `unix://`.
    #[error("empty Unix socket path in `{input}`")]
    EmptyPath {
        /// The whole input.
        input: String,
    },
    /// A Unix socket path longer than the system allows.
    #[error("Unix socket path in `{input}` is {len} bytes; the limit is {max}")]
    PathTooLong {
        /// The whole input.
        input: String,
        /// The path's length in bytes.
        len: usize,
        /// The longest path the system accepts.
        max: usize,
    },
}

/// The longest Unix socket path (or abstract name) Linux accepts in `sun_path`.
pub const MAX_UNIX_PATH: usize = 107;

impl Address {
    /// A `tcp://` address for a socket address.
    pub fn tcp(addr: SocketAddr) -> Address {
        Address::Ip {
            scheme: Scheme::Tcp,
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// A `udp://` address for a socket address.
    pub fn udp(addr: SocketAddr) -> Address {
        Address::Ip {
            scheme: Scheme::Udp,
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// An address of the given IP scheme for a socket address.
    ///
    /// A Unix scheme is mapped to its IP counterpart (`unix` to `tcp`,
    /// `unix+tls` to `tls`); use [`Address::unix`] for Unix sockets.
    pub fn ip(scheme: Scheme, addr: SocketAddr) -> Address {
        let scheme = match scheme {
            Scheme::Unix => Scheme::Tcp,
            Scheme::UnixTls => Scheme::Tls,
            other => other,
        };
        Address::Ip {
            scheme,
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// A `unix://` (or `unix+tls://`) address for a path or abstract name.
    pub fn unix(path: UnixPath, tls: bool) -> Address {
        Address::Unix { tls, path }
    }

    /// The transport.
    pub fn scheme(&self) -> Scheme {
        match self {
            Address::Ip { scheme, .. } => *scheme,
            Address::Unix { tls: false, .. } => Scheme::Unix,
            Address::Unix { tls: true, .. } => Scheme::UnixTls,
        }
    }

    /// The host and port as a socket address, when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip {
                host: Host::Ip(ip),
                port,
                ..
            } => Some(SocketAddr::new(*ip, *port)),
            _ => None,
        }
    }

    /// The name a TLS client checks the server's certificate against, unless
    /// overridden: the host for IP transports, `localhost` for Unix sockets.
    pub fn tls_server_name(&self) -> String {
        match self {
            Address::Ip {
                host: Host::Name(n),
                ..
            } => n.clone(),
            Address::Ip {
                host: Host::Ip(ip), ..
            } => ip.to_string(),
            Address::Unix { .. } => "localhost".to_owned(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip { scheme, host, port } => write!(f, "{scheme}://{host}:{port}"),
            Address::Unix { tls, path } => {
                f.write_str(if *tls { "unix+tls://" } else { "unix://" })?;
                match path {
                    UnixPath::Path(p) => write!(f, "{}", p.display()),
                    UnixPath::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
                }
            }
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Address, AddressError> {
        let owned = || input.to_owned();
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| AddressError::MissingScheme { input: owned() })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Scheme::Tcp,
            "tls" | "ssl" => Scheme::Tls,
            "udp" => Scheme::Udp,
            "quic" => Scheme::Quic,
            "unix" => Scheme::Unix,
            "unix+tls" | "unix+ssl" => Scheme::UnixTls,
            _ => {
                return Err(AddressError::UnknownScheme {
                    scheme: scheme.to_owned(),
                    input: owned(),
                });
            }
        };
        match scheme {
            Scheme::Unix | Scheme::UnixTls => parse_unix(rest, scheme == Scheme::UnixTls, input),
            _ => parse_ip(scheme, rest, input),
        }
    }
}

fn parse_unix(rest: &str, tls: bool, input: &str) -> Result<Address, AddressError> {
    let path = if let Some(name) = rest.strip_prefix('@').or_else(|| rest.strip_prefix('\0')) {
        if name.is_empty() {
            return Err(AddressError::EmptyPath {
                input: input.to_owned(),
            });
        }
        UnixPath::Abstract(name.as_bytes().to_vec())
    } else {
        if rest.is_empty() {
            return Err(AddressError::EmptyPath {
                input: input.to_owned(),
            });
        }
        UnixPath::Path(PathBuf::from(rest))
    };
    let len = match &path {
        UnixPath::Path(p) => p.as_os_str().len(),
        UnixPath::Abstract(n) => n.len(),
    };
    if len > MAX_UNIX_PATH {
        return Err(AddressError::PathTooLong {
            input: input.to_owned(),
            len,
            max: MAX_UNIX_PATH,
        });
    }
    Ok(Address::Unix { tls, path })
}

fn parse_ip(scheme: Scheme, rest: &str, input: &str) -> Result<Address, AddressError> {
    let bad_host = |host: &str, reason| AddressError::BadHost {
        host: host.to_owned(),
        reason,
        input: input.to_owned(),
    };
    let (host, after_host) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad_host(rest, "an IPv6 literal needs a closing `]`"))?;
        let ip: std::net::Ipv6Addr = inside
            .parse()
            .map_err(|_| bad_host(inside, "not an IPv6 address"))?;
        (Host::Ip(IpAddr::V6(ip)), after)
    } else {
        let end = rest.find([':', '/', '?', '#']).unwrap_or(rest.len());
        let host = &rest[..end];
        if host.is_empty() {
            return Err(bad_host(host, "the host is empty"));
        }
        let host = if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else if is_dns_name(host) {
            Host::Name(host.to_ascii_lowercase())
        } else {
            return Err(bad_host(
                host,
                "not an IPv4 address, a bracketed IPv6 address or a DNS name",
            ));
        };
        (host, &rest[end..])
    };
    let port_and_rest = after_host
        .strip_prefix(':')
        .ok_or_else(|| AddressError::MissingPort {
            input: input.to_owned(),
        })?;
    let port_end = port_and_rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(port_and_rest.len());
    let (port_str, trailing) = port_and_rest.split_at(port_end);
    if port_str.is_empty() {
        return Err(AddressError::MissingPort {
            input: input.to_owned(),
        });
    }
    let port: u16 = port_str.parse().map_err(|_| AddressError::BadPort {
        port: port_str.to_owned(),
        input: input.to_owned(),
    })?;
    match trailing {
        "" | "/" => Ok(Address::Ip { scheme, host, port }),
        rest if rest.starts_with(['/', '?', '#']) => Err(AddressError::TrailingPath {
            rest: rest.to_owned(),
            input: input.to_owned(),
        }),
        rest => Err(AddressError::BadPort {
            port: format!("{port_str}{rest}"),
            input: input.to_owned(),
        }),
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and `-`,
/// each 1 to 63 characters, not starting or ending with `-`; 253 in all.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Something that names an address: an [`Address`] or a URL string.
pub trait ToAddress {
    /// Parses or clones into an [`Address`].
    fn to_address(&self) -> Result<Address, AddressError>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address, AddressError> {
        Ok(self.clone())
    }
}

impl ToAddress for &Address {
    fn to_address(&self) -> Result<Address, AddressError> {
        Ok((*self).clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address, AddressError> {
        self.parse()
    }
}

impl ToAddress for &str {
    fn to_address(&self) -> Result<Address, AddressError> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address, AddressError> {
        self.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Address {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ip_schemes_parse_and_print_back() {
        for (input, canonical) in [
            ("tcp://127.0.0.1:4000", "tcp://127.0.0.1:4000"),
            ("tcp://[::1]:4000", "tcp://[::1]:4000"),
            ("TCP://Example.ORG:80", "tcp://example.org:80"),
            ("tls://[fe80::1]:0", "tls://[fe80::1]:0"),
            ("ssl://localhost:443", "tls://localhost:443"),
            ("udp://0.0.0.0:9", "udp://0.0.0.0:9"),
            ("quic://127.0.0.1:4433", "quic://127.0.0.1:4433"),
            ("QUIC://[::1]:0", "quic://[::1]:0"),
            ("quic://Peer.Example:443/", "quic://peer.example:443"),
            ("tcp://localhost:5/", "tcp://localhost:5"),
        ] {
            let addr = ok(input);
            assert_eq!(addr.to_string(), canonical);
            assert_eq!(ok(canonical), addr, "round trip of {canonical}");
        }
        assert_eq!(ok("ssl://h:1").scheme(), Scheme::Tls);
        let quic = ok("quic://[::1]:4433");
        assert_eq!(quic.scheme(), Scheme::Quic);
        assert!(quic.scheme().is_tls() && !quic.scheme().is_datagram());
        assert_eq!(quic.socket_addr(), Some("[::1]:4433".parse().unwrap()));
        assert_eq!(quic.tls_server_name(), "::1");
        assert_eq!(
            ok("quic://peer.example:1").tls_server_name(),
            "peer.example"
        );
        assert_eq!(
            ok("tcp://[::1]:7").socket_addr(),
            Some("[::1]:7".parse().unwrap())
        );
        assert_eq!(ok("tcp://example.org:7").socket_addr(), None);
    }

    #[test]
    fn unix_forms() {
        assert_eq!(
            ok("unix:///tmp/weft.sock"),
            Address::Unix {
                tls: false,
                path: UnixPath::Path("/tmp/weft.sock".into())
            }
        );
        assert_eq!(
            ok("unix://rel/weft.sock"),
            Address::Unix {
                tls: false,
                path: UnixPath::Path("rel/weft.sock".into())
            }
        );
        let abs = Address::Unix {
            tls: false,
            path: UnixPath::Abstract(b"weft".to_vec()),
        };
        assert_eq!(ok("unix://@weft"), abs);
        assert_eq!(ok("unix://\0weft"), abs);
        assert_eq!(abs.to_string(), "unix://@weft");
        assert_eq!(ok("unix+tls://@x").scheme(), Scheme::UnixTls);
        assert_eq!(ok("unix+tls:///a/b").to_string(), "unix+tls:///a/b");
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = |s: &str| s.parse::<Address>().unwrap_err();
        assert!(matches!(
            err("127.0.0.1:80"),
            AddressError::MissingScheme { .. }
        ));
        assert!(
            matches!(err("http://a:1"), AddressError::UnknownScheme { scheme, .. } if scheme == "http")
        );
        assert!(matches!(err("tcp://:80"), AddressError::BadHost { .. }));
        assert!(matches!(err("tcp://[::1:80"), AddressError::BadHost { .. }));
        assert!(matches!(err("tcp://[zz]:80"), AddressError::BadHost { host, .. } if host == "zz"));
        assert!(matches!(
            err("tcp://bad_host:80"),
            AddressError::BadHost { .. }
        ));
        assert!(matches!(
            err("tcp://1.2.3:80"),
            AddressError::BadHost { .. }
        ));
        assert!(matches!(
            err("tcp://host"),
            AddressError::MissingPort { .. }
        ));
        assert!(matches!(
            err("tcp://host:"),
            AddressError::MissingPort { .. }
        ));
        assert!(
            matches!(err("tcp://host:70000"), AddressError::BadPort { port, .. } if port == "70000")
        );
        assert!(matches!(err("tcp://host:8x"), AddressError::BadPort { .. }));
        assert!(
            matches!(err("tcp://host:8/path"), AddressError::TrailingPath { rest, .. } if rest == "/path")
        );
        assert!(matches!(
            err("quic://host"),
            AddressError::MissingPort { .. }
        ));
        assert!(matches!(
            err("quic://[::1:80"),
            AddressError::BadHost { .. }
        ));
        assert!(matches!(err("unix://"), AddressError::EmptyPath { .. }));
        assert!(matches!(err("unix://@"), AddressError::EmptyPath { .. }));
        let long = format!("unix:///{}", "a".repeat(200));
        assert!(matches!(err(&long), AddressError::PathTooLong { .. }));
        let msg = err("tcp://host:99999").to_string();
        assert!(msg.contains("99999") && msg.contains("port"), "{msg}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,64}") {
            let _ = s.parse::<Address>();
        }

        #[test]
        fn socket_addrs_round_trip(ip in proptest::arbitrary::any::<IpAddr>(), port: u16) {
            for scheme in [Scheme::Tcp, Scheme::Tls, Scheme::Udp, Scheme::Quic] {
                let a = Address::ip(scheme, SocketAddr::new(ip, port));
                proptest::prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
            }
        }
    }
}
