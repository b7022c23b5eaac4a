//! What kind of address an IP address is: loopback, link-local, unique
//! local, private or global.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of an interface address, from the ranges the IETF set aside.
///
/// Classification is a pure function of the address ([`Scope::of`]); it
/// never touches the network. The words [`Scope::as_str`] gives (and `weft
/// ifaces --json` prints) are in brackets.
///
/// | scope | IPv4 | IPv6 |
/// | --- | --- | --- |
/// | [`Loopback`](Scope::Loopback) (`loopback`) | `127.0.0.0/8` | `::1` |
/// | [`LinkLocal`](Scope::LinkLocal) (`link-local`) | `169.254.0.0/16` | `fe80::/10` |
/// | [`UniqueLocal`](Scope::UniqueLocal) (`unique-local`) | — | `fc00::/7`, and the deprecated site-local `fec0::/10` |
/// | [`Private`](Scope::Private) (`private`) | `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, and the shared address space `100.64.0.0/10` | — |
/// | [`Global`](Scope::Global) (`global`) | everything else | everything else |
///
/// `100.64.0.0/10` (RFC 6598) is what carrier-grade NAT hands out: not
/// reachable from the internet, so it counts as `Private` even though RFC
/// 1918 does not list it. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) take
/// the scope of the IPv4 address inside.
///
/// `Global` means "none of the ranges above". It is meant for the unicast
/// addresses interfaces carry; an unspecified, multicast, broadcast or
/// documentation address is not special-cased and also comes out `Global`.
///
/// ```
/// use weft_netiface::Scope;
/// assert_eq!(Scope::of("192.168.1.7".parse()?), Scope::Private);
/// assert_eq!(Scope::of("fe80::1".parse()?), Scope::LinkLocal);
/// assert_eq!(Scope::UniqueLocal.as_str(), "unique-local");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scope {
    /// This host only: `127.0.0.0/8`, `::1`.
    Loopback,
    /// This link only, never routed: `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// IPv6 unique local addresses, routed within a site: `fc00::/7` (and
    /// the deprecated site-local `fec0::/10`).
    UniqueLocal,
    /// IPv4 private networks: RFC 1918 (`10/8`, `172.16/12`, `192.168/16`)
    /// and the RFC 6598 shared address space (`100.64/10`) of carrier-grade
    /// NAT.
    Private,
    /// None of the above; a unicast address in this scope may be reachable
    /// from the internet.
    Global,
}

impl Scope {
    /// The scope of an address.
    pub fn of(ip: IpAddr) -> Scope {
        match ip {
            IpAddr::V4(v4) => Scope::of_v4(v4),
            IpAddr::V6(v6) => Scope::of_v6(v6),
        }
    }

    /// The scope of an IPv4 address.
    pub fn of_v4(ip: Ipv4Addr) -> Scope {
        let [a, b, ..] = ip.octets();
        match (a, b) {
            (127, _) => Scope::Loopback,
            (169, 254) => Scope::LinkLocal,
            (10, _) | (192, 168) => Scope::Private,
            (172, b) if b & 0xf0 == 16 => Scope::Private,
            (100, b) if b & 0xc0 == 64 => Scope::Private,
            _ => Scope::Global,
        }
    }

    /// The scope of an IPv6 address.
    pub fn of_v6(ip: Ipv6Addr) -> Scope {
        if let Some(v4) = ip.to_ipv4_mapped() {
            return Scope::of_v4(v4);
        }
        let first = ip.segments()[0];
        if ip == Ipv6Addr::LOCALHOST {
            Scope::Loopback
        } else if first & 0xffc0 == 0xfe80 {
            Scope::LinkLocal
        } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
            Scope::UniqueLocal
        } else {
            Scope::Global
        }
    }

    /// The scope as one word: `loopback`, `link-local`, `unique-local`,
    /// `private` or `global`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Loopback => "loopback",
            Scope::LinkLocal => "link-local",
            Scope::UniqueLocal => "unique-local",
            Scope::Private => "private",
            Scope::Global => "global",
        }
    }

    /// Whether an address of this scope can leave this host and its link
    /// (everything but loopback and link-local).
    pub fn is_routable(self) -> bool {
        !matches!(self, Scope::Loopback | Scope::LinkLocal)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::of(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn sample_addresses() {
        for (ip, want) in [
            ("127.0.0.1", Scope::Loopback),
            ("127.255.255.254", Scope::Loopback),
            ("::1", Scope::Loopback),
            ("169.254.0.1", Scope::LinkLocal),
            ("169.254.255.255", Scope::LinkLocal),
            ("fe80::1", Scope::LinkLocal),
            ("febf:ffff::1", Scope::LinkLocal),
            ("fc00::1", Scope::UniqueLocal),
            ("fd12:3456:789a::1", Scope::UniqueLocal),
            ("fec0::1", Scope::UniqueLocal),
            ("10.0.0.1", Scope::Private),
            ("10.255.255.255", Scope::Private),
            ("172.16.0.1", Scope::Private),
            ("172.31.255.255", Scope::Private),
            ("192.168.0.1", Scope::Private),
            ("192.168.255.255", Scope::Private),
            ("100.64.0.1", Scope::Private),
            ("100.127.255.255", Scope::Private),
            ("::ffff:192.168.1.1", Scope::Private),
            ("::ffff:127.0.0.1", Scope::Loopback),
            // Global, as values only: nothing is sent anywhere.
            ("1.1.1.1", Scope::Global),
            ("2606:4700:4700::1111", Scope::Global),
            ("2001:4860:4860::8888", Scope::Global),
            // Just outside the ranges.
            ("172.15.255.255", Scope::Global),
            ("172.32.0.0", Scope::Global),
            ("100.63.255.255", Scope::Global),
            ("100.128.0.0", Scope::Global),
            ("169.253.255.255", Scope::Global),
            ("192.169.0.1", Scope::Global),
            ("11.0.0.1", Scope::Global),
            ("fbff::1", Scope::Global),
            ("fe00::1", Scope::Global),
            ("::2", Scope::Global),
        ] {
            assert_eq!(scope(ip), want, "{ip}");
        }
    }

    #[test]
    fn words() {
        let all = [
            Scope::Loopback,
            Scope::LinkLocal,
            Scope::UniqueLocal,
            Scope::Private,
            Scope::Global,
        ];
        let words: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            words,
            [
                "loopback",
                "link-local",
                "unique-local",
                "private",
                "global"
            ]
        );
        assert!(!Scope::Loopback.is_routable() && !Scope::LinkLocal.is_routable());
        assert!(Scope::Private.is_routable() && Scope::Global.is_routable());
    }
}
