//! Routes as P2PD has them: an interface's addresses grouped by the external
//! address the internet sees when traffic leaves from them.
//!
//! The external address is found by a lookup the caller supplies (in weft's
//! CLI, a STUN query sent from the local address); this crate sends nothing
//! itself.

use std::future::Future;
use std::net::IpAddr;

use crate::{Interface, InterfaceAddr};

/// Finds the external address seen when sending from a local address.
///
/// Implemented for every `Fn(IpAddr) -> impl Future<Output = Option<IpAddr>>`,
/// so an async closure (`async |local: IpAddr| ...`), a closure returning an
/// `async` block or a function returning a future will do:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::net::IpAddr;
/// use weft_netiface::ExternalLookup;
///
/// // A stand-in for a STUN query sent from `local`.
/// let lookup = |local: IpAddr| async move { local.is_ipv4().then(|| IpAddr::from([192, 0, 2, 7])) };
/// assert_eq!(lookup.external_address("10.0.0.2".parse().unwrap()).await, Some(IpAddr::from([192, 0, 2, 7])));
/// # }
/// ```
pub trait ExternalLookup {
    /// The external address for traffic sent from `local`, or `None` when
    /// it cannot be found (no answer, timeout, no route). The lookup bounds
    /// its own time; [`routes`] waits for it.
    fn external_address(&self, local: IpAddr) -> impl Future<Output = Option<IpAddr>>;
}

impl<F, Fut> ExternalLookup for F
where
    F: Fn(IpAddr) -> Fut,
    Fut: Future<Output = Option<IpAddr>>,
{
    fn external_address(&self, local: IpAddr) -> impl Future<Output = Option<IpAddr>> {
        self(local)
    }
}

/// Addresses of one interface that reach the internet through the same
/// external address.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The interface's name.
    pub interface: String,
    /// The interface's index.
    pub index: Option<u32>,
    /// The local addresses, all of one family, in the interface's order.
    pub local: Vec<InterfaceAddr>,
    /// What the lookup found for them, or `None` when it found nothing.
    pub external: Option<IpAddr>,
}

impl Route {
    /// Whether the route's local addresses are IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.local.first().is_some_and(|a| a.ip.is_ipv6())
    }

    /// Whether the external address is one of the local ones, that is,
    /// there is no NAT on the way (typical of global IPv6 addresses).
    pub fn is_direct(&self) -> bool {
        self.external
            .is_some_and(|ext| self.local.iter().any(|a| a.ip == ext))
    }
}

/// The routes of the given interfaces: each interface's loopback-free,
/// link-local-free addresses ([`Scope::is_routable`](crate::Scope::is_routable)),
/// grouped by family and by the external address `lookup` finds for them.
///
/// Addresses for which the lookup finds nothing are grouped, per interface
/// and family, in a route whose `external` is `None`. Routes come in the
/// order of the interfaces, then of each interface's first address in them.
/// Pass only the interfaces you want looked up (for example those that are
/// up and not loopback).
///
/// Lookups run one after another, one per address. Cancel-safe: dropping
/// the future drops the lookup under way and returns nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weft_netiface::NetifaceError> {
/// use std::net::IpAddr;
///
/// let up: Vec<_> = weft_netiface::interfaces()?
///     .into_iter()
///     .filter(|i| i.flags.up && !i.flags.loopback)
///     .collect();
/// // A stand-in lookup that finds nothing; weft's CLI asks a STUN server.
/// let routes = weft_netiface::routes(&up, &|_local: IpAddr| async { None }).await;
/// assert!(routes.iter().all(|r| r.external.is_none()));
/// # Ok(()) }
/// ```
pub async fn routes<L>(interfaces: &[Interface], lookup: &L) -> Vec<Route>
where
    L: ExternalLookup + ?Sized,
{
    let mut routes: Vec<Route> = Vec::new();
    for iface in interfaces {
        let first = routes.len();
        for addr in iface.addrs.iter().filter(|a| a.scope.is_routable()) {
            let external = lookup.external_address(addr.ip).await;
            let same = |r: &&mut Route| r.external == external && r.is_ipv6() == addr.ip.is_ipv6();
            match routes[first..].iter_mut().find(same) {
                Some(route) => route.local.push(*addr),
                None => routes.push(Route {
                    interface: iface.name.clone(),
                    index: iface.index,
                    local: vec![*addr],
                    external,
                }),
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::InterfaceFlags;

    fn iface(name: &str, index: u32, addrs: &[(&str, u8)]) -> Interface {
        Interface {
            name: name.to_owned(),
            index: Some(index),
            flags: InterfaceFlags::from_linux_bits(0x1043),
            addrs: addrs
                .iter()
                .map(|(ip, prefix)| InterfaceAddr::new(ip.parse().unwrap(), *prefix, None))
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn grouped_by_external_address() {
        let ifaces = [
            iface(
                "eth0",
                2,
                &[
                    ("192.168.1.10", 24),
                    ("192.168.1.11", 24),
                    ("10.9.0.2", 16),
                    ("fe80::1", 64),
                    ("2001:db8::10", 64),
                    ("2001:db8::11", 64),
                    ("fd00::5", 64),
                ],
            ),
            iface("lo", 1, &[("127.0.0.1", 8), ("::1", 128)]),
            iface("wlan0", 3, &[("192.168.1.12", 24), ("169.254.3.3", 16)]),
        ];
        let answers: HashMap<IpAddr, IpAddr> = [
            ("192.168.1.10", "198.51.100.1"),
            ("192.168.1.11", "198.51.100.1"),
            ("10.9.0.2", "198.51.100.2"),
            ("2001:db8::10", "2001:db8::10"),
            ("2001:db8::11", "2001:db8::11"),
            ("192.168.1.12", "198.51.100.1"),
        ]
        .into_iter()
        .map(|(a, b)| (ip(a), ip(b)))
        .collect();
        let asked = Mutex::new(Vec::new());
        let lookup = |local: IpAddr| {
            asked.lock().unwrap().push(local);
            let answer = answers.get(&local).copied();
            async move { answer }
        };
        let routes = routes(&ifaces, &lookup).await;

        let summary: Vec<(&str, Vec<String>, Option<IpAddr>)> = routes
            .iter()
            .map(|r| {
                let local = r.local.iter().map(|a| a.ip.to_string()).collect();
                (r.interface.as_str(), local, r.external)
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summary,
            [
                (
                    "eth0",
                    s(&["192.168.1.10", "192.168.1.11"]),
                    Some(ip("198.51.100.1"))
                ),
                ("eth0", s(&["10.9.0.2"]), Some(ip("198.51.100.2"))),
                ("eth0", s(&["2001:db8::10"]), Some(ip("2001:db8::10"))),
                ("eth0", s(&["2001:db8::11"]), Some(ip("2001:db8::11"))),
                ("eth0", s(&["fd00::5"]), None),
                ("wlan0", s(&["192.168.1.12"]), Some(ip("198.51.100.1"))),
            ]
        );
        assert!(!routes[0].is_ipv6() && !routes[0].is_direct());
        assert!(routes[2].is_ipv6() && routes[2].is_direct());
        assert_eq!(routes[5].index, Some(3));
        // Loopback and link-local addresses are never looked up.
        let asked = asked.into_inner().unwrap();
        assert_eq!(asked.len(), 7);
        assert!(asked.iter().all(|a| crate::Scope::of(*a).is_routable()));
    }

    #[tokio::test]
    async fn nothing_found_groups_per_family() {
        let ifaces = [iface(
            "eth0",
            2,
            &[("192.168.1.10", 24), ("fd00::5", 64), ("10.0.0.1", 8)],
        )];
        let routes = routes(&ifaces, &|_: IpAddr| async { None }).await;
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].local.len(), 2);
        assert!(!routes[0].is_ipv6() && routes[1].is_ipv6());
        assert!(
            routes
                .iter()
                .all(|r| r.external.is_none() && !r.is_direct())
        );
        assert!(
            super::routes(&[], &|_: IpAddr| async { None })
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_async_closure_is_a_lookup() {
        let ifaces = [iface("eth0", 2, &[("10.0.0.1", 8), ("fd00::1", 64)])];
        let external = IpAddr::from([192, 0, 2, 9]);
        let lookup = async |local: IpAddr| local.is_ipv4().then_some(external);
        let routes = routes(&ifaces, &lookup).await;
        assert_eq!(routes[0].external, Some(external));
        assert_eq!(routes[1].external, None);
    }

    #[tokio::test]
    async fn the_future_is_send_with_a_send_lookup() {
        let ifaces = vec![iface("eth0", 2, &[("10.0.0.1", 8)])];
        let lookup = |_: IpAddr| async {
            tokio::task::yield_now().await;
            Some(IpAddr::from([192, 0, 2, 1]))
        };
        let routes = tokio::spawn(async move { routes(&ifaces, &lookup).await })
            .await
            .unwrap();
        assert_eq!(routes[0].external, Some(IpAddr::from([192, 0, 2, 1])));
    }
}
