//! STUN server addresses written as URLs.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::StunError;

/// The default port for STUN over UDP and TCP.
pub const STUN_PORT: u16 = 3478;
/// The default port for STUN over TLS.
pub const STUNS_PORT: u16 = 5349;

/// How a request reaches a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP, with retransmissions.
    Udp,
    /// TCP, one request per connection.
    Tcp,
    /// TLS over TCP, one request per connection.
    Tls,
}

impl Transport {
    /// `udp`, `tcp` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The transport's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => STUNS_PORT,
            _ => STUN_PORT,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A STUN server: transport, host (IP literal or DNS name) and port.
///
/// ```
/// use weft_stun::ServerUrl;
/// use weft_stun::url::Transport;
/// let url: ServerUrl = "stun:stun.example.org".parse()?;
/// assert_eq!((url.transport, url.port), (Transport::Udp, 3478));
/// let url: ServerUrl = "tls://[::1]".parse()?;
/// assert_eq!(url.to_string(), "tls://[::1]:5349");
/// # Ok::<(), weft_stun::StunError>(())
/// ```
///
/// The forms it parses:
///
/// | form | transport | default port |
/// | --- | --- | --- |
/// | `host:port`, `host`, `[::1]:3478` | UDP | 3478 |
/// | `stun:host:port`, `stun://host:port`, `udp://host:port` | UDP | 3478 |
/// | `stun:host:port?transport=tcp` (RFC 7064), `tcp://host:port` | TCP | 3478 |
/// | `stuns:host:port` (RFC 7064), `tls://host:port` | TLS over TCP | 5349 |
///
/// Parsing never touches the network; names are resolved by
/// [`ServerUrl::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    /// The transport.
    pub transport: Transport,
    /// An IP literal (without brackets) or a DNS name.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl ServerUrl {
    /// A URL for a socket address.
    pub fn new(transport: Transport, address: SocketAddr) -> ServerUrl {
        ServerUrl {
            transport,
            host: address.ip().to_string(),
            port: address.port(),
        }
    }

    /// The host as an IP address, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Resolves the host, with a timeout for DNS names. `Some(true)` takes
    /// the first IPv4 address and `Some(false)` the first IPv6 address when
    /// there is one; otherwise (and with `None`) the resolver's first.
    /// Cancel-safe.
    pub async fn resolve(
        &self,
        timeout: Duration,
        prefer_ipv4: Option<bool>,
    ) -> Result<SocketAddr, StunError> {
        if let Some(ip) = self.ip() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
        let addrs: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
            .await
            .map_err(|_| StunError::DnsTimeout {
                host: self.host.clone(),
                timeout,
            })?
            .map_err(|source| StunError::Dns {
                host: self.host.clone(),
                source,
            })?
            .collect();
        let preferred = prefer_ipv4.and_then(|v4| addrs.iter().find(|a| a.is_ipv4() == v4));
        preferred
            .or(addrs.first())
            .copied()
            .ok_or_else(|| StunError::Dns {
                host: self.host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
            })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.transport, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.transport, self.host, self.port)
        }
    }
}

impl FromStr for ServerUrl {
    type Err = StunError;

    fn from_str(input: &str) -> Result<ServerUrl, StunError> {
        let bad = |reason: &'static str| StunError::BadUrl {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let (mut transport, rest) = if let Some(r) = s.strip_prefix("stun://") {
            (Transport::Udp, r)
        } else if let Some(r) = s.strip_prefix("udp://") {
            (Transport::Udp, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (Transport::Tcp, r)
        } else if let Some(r) = s.strip_prefix("tls://") {
            (Transport::Tls, r)
        } else if let Some(r) = s.strip_prefix("stuns:") {
            (Transport::Tls, r.strip_prefix("//").unwrap_or(r))
        } else if let Some(r) = s.strip_prefix("stun:") {
            (Transport::Udp, r)
        } else if s.contains("://") {
            return Err(bad("unknown scheme: expected stun, udp, tcp or tls"));
        } else {
            (Transport::Udp, s)
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        if let Some(query) = query {
            transport = match (transport, query) {
                (Transport::Udp, "transport=udp") => Transport::Udp,
                (Transport::Udp, "transport=tcp") => Transport::Tcp,
                (Transport::Tls, "transport=tcp") => Transport::Tls,
                _ => return Err(bad("expected ?transport=udp or ?transport=tcp")),
            };
        }
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(bad("unexpected path after the host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, after) = v6
                .split_once(']')
                .ok_or(bad("missing `]` after an IPv6 address"))?;
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 address in brackets"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or(bad("expected `:port` after `]`"))?,
                ),
            };
            (ip, port)
        } else if authority.parse::<std::net::Ipv6Addr>().is_ok() {
            (authority, None)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("an IPv6 address with a port must be in brackets"));
        }
        if !host.contains(':')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(bad("the host has characters a DNS name cannot have"));
        }
        let port = match port {
            None => transport.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(ServerUrl {
            transport,
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ServerUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form() {
        let cases = [
            ("stun:example.org:1234", "udp://example.org:1234"),
            ("stun:example.org", "udp://example.org:3478"),
            ("stun://example.org:1234", "udp://example.org:1234"),
            ("udp://127.0.0.1:9", "udp://127.0.0.1:9"),
            ("tcp://127.0.0.1:9", "tcp://127.0.0.1:9"),
            ("tls://example.org", "tls://example.org:5349"),
            ("stuns:example.org", "tls://example.org:5349"),
            ("stun:example.org?transport=tcp", "tcp://example.org:3478"),
            ("127.0.0.1:3478", "udp://127.0.0.1:3478"),
            ("example.org", "udp://example.org:3478"),
            ("[::1]:4000", "udp://[::1]:4000"),
            ("::1", "udp://[::1]:3478"),
            ("tls://[2001:db8::1]", "tls://[2001:db8::1]:5349"),
        ];
        for (input, shown) in cases {
            let url = parse(input);
            assert_eq!(url.to_string(), shown, "{input}");
            assert_eq!(parse(shown), url);
        }
    }

    #[test]
    fn bad_forms_say_why() {
        for input in [
            "http://example.org",
            "stun:",
            "udp://host:0",
            "udp://host:99999",
            "udp://host:port",
            "udp://[::1",
            "udp://[zz]:1",
            "udp://host:1/path",
            "udp://ho st:1",
            "stun:host?transport=sctp",
        ] {
            let err = input.parse::<ServerUrl>().unwrap_err();
            assert!(matches!(err, StunError::BadUrl { .. }), "{input}: {err:?}");
        }
    }

    #[tokio::test]
    async fn literals_resolve_without_dns() {
        let url = parse("udp://127.0.0.1:5000");
        assert_eq!(
            url.resolve(Duration::from_secs(1), None).await.unwrap(),
            "127.0.0.1:5000".parse().unwrap()
        );
    }
}
