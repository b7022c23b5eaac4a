//! P2PD-style routes from a caller's own lookup type, over this host's real
//! interfaces. The lookup only answers from a table; nothing is sent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use weft_netiface::{ExternalLookup, interfaces, routes};

/// What a STUN client would be: a type of the caller's own.
struct TableLookup {
    /// External address per local address.
    answers: HashMap<IpAddr, IpAddr>,
    asked: Mutex<Vec<IpAddr>>,
}

impl ExternalLookup for TableLookup {
    async fn external_address(&self, local: IpAddr) -> Option<IpAddr> {
        self.asked.lock().unwrap().push(local);
        tokio::task::yield_now().await;
        self.answers.get(&local).copied()
    }
}

#[tokio::test]
async fn routes_of_this_host() {
    let all = interfaces().unwrap();
    let routable: Vec<IpAddr> = all
        .iter()
        .flat_map(|i| i.addrs.iter())
        .filter(|a| a.scope.is_routable())
        .map(|a| a.ip)
        .collect();
    // Every IPv4 address behind one NAT address (a documentation address,
    // as a value only); IPv6 addresses seen as themselves.
    let nat = IpAddr::from([203, 0, 113, 5]);
    let answers = routable
        .iter()
        .map(|ip| (*ip, if ip.is_ipv4() { nat } else { *ip }))
        .collect();
    let lookup = TableLookup {
        answers,
        asked: Mutex::new(Vec::new()),
    };
    let found = routes(&all, &lookup).await;

    let mut asked = lookup.asked.into_inner().unwrap();
    asked.sort();
    let mut want = routable.clone();
    want.sort();
    assert_eq!(asked, want, "each routable address looked up once");
    let covered: usize = found.iter().map(|r| r.local.len()).sum();
    assert_eq!(covered, routable.len());
    for route in &found {
        assert!(route.local.iter().all(|a| a.scope.is_routable()));
        assert!(
            route
                .local
                .iter()
                .all(|a| a.ip.is_ipv6() == route.is_ipv6())
        );
        if route.is_ipv6() {
            assert!(route.is_direct() && route.local.len() == 1);
        } else {
            assert_eq!(route.external, Some(nat));
            assert!(!route.is_direct());
        }
        let iface = all.iter().find(|i| i.name == route.interface).unwrap();
        assert_eq!(route.index, iface.index);
    }
    // One IPv4 route per interface with IPv4 addresses.
    let v4_routes = found.iter().filter(|r| !r.is_ipv6()).count();
    let v4_ifaces = all
        .iter()
        .filter(|i| {
            i.addrs
                .iter()
                .any(|a| a.ip.is_ipv4() && a.scope.is_routable())
        })
        .count();
    assert_eq!(v4_routes, v4_ifaces);
}
