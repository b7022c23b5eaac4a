//! Interface enumeration compared with what `ip -j addr` (iproute2) reports.

use weft_netiface::{Scope, interfaces};

#[test]
fn every_address_has_a_consistent_scope_and_prefix() {
    for iface in interfaces().unwrap() {
        for addr in &iface.addrs {
            assert_eq!(addr.scope, Scope::of(addr.ip), "{} {addr}", iface.name);
            let max = if addr.ip.is_ipv4() { 32 } else { 128 };
            assert!(addr.prefix <= max, "{} {addr}", iface.name);
            if addr.ip.is_ipv6() {
                assert_eq!(addr.broadcast, None, "{} {addr}", iface.name);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod ip_addr {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::{IpAddr, Ipv4Addr};

    use weft_netiface::interfaces;

    /// What `ip -j addr` says about one interface.
    #[derive(Debug)]
    struct IpView {
        index: u32,
        flags: BTreeSet<String>,
        addrs: BTreeSet<(IpAddr, u8)>,
        broadcasts: BTreeMap<IpAddr, Ipv4Addr>,
    }

    fn ip_addr_json() -> Option<serde_json::Value> {
        let output = match std::process::Command::new("ip")
            .args(["-j", "addr"])
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "!!!!! SKIPPED: `ip` (iproute2) is not installed; enumeration not compared !!!!!"
                );
                return None;
            }
            Err(e) => panic!("running `ip -j addr`: {e}"),
        };
        assert!(
            output.status.success(),
            "`ip -j addr` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(serde_json::from_slice(&output.stdout).expect("`ip -j addr` prints JSON"))
    }

    fn ip_view(json: &serde_json::Value) -> BTreeMap<String, IpView> {
        let mut views = BTreeMap::new();
        for link in json.as_array().expect("an array of interfaces") {
            let name = link["ifname"].as_str().expect("ifname").to_owned();
            let index = u32::try_from(link["ifindex"].as_u64().expect("ifindex")).unwrap();
            let flags = link["flags"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut addrs = BTreeSet::new();
            let mut broadcasts = BTreeMap::new();
            for info in link["addr_info"].as_array().into_iter().flatten() {
                let Some(local) = info["local"].as_str() else {
                    continue;
                };
                let ip: IpAddr = local.parse().expect("an IP address");
                let prefix = u8::try_from(info["prefixlen"].as_u64().expect("prefixlen")).unwrap();
                addrs.insert((ip, prefix));
                if let Some(brd) = info["broadcast"].as_str() {
                    broadcasts.insert(ip, brd.parse().expect("an IPv4 broadcast address"));
                }
            }
            views.insert(
                name,
                IpView {
                    index,
                    flags,
                    addrs,
                    broadcasts,
                },
            );
        }
        views
    }

    #[test]
    fn matches_ip_addr() {
        let Some(json) = ip_addr_json() else {
            return;
        };
        let theirs = ip_view(&json);
        let ours = interfaces().unwrap();

        let our_names: BTreeSet<&str> = ours.iter().map(|i| i.name.as_str()).collect();
        let their_names: BTreeSet<&str> = theirs.keys().map(String::as_str).collect();
        assert_eq!(our_names, their_names, "interface names");

        for iface in &ours {
            let view = &theirs[&iface.name];
            let name = &iface.name;
            assert_eq!(iface.index, Some(view.index), "index of {name}");
            let our_addrs: BTreeSet<(IpAddr, u8)> =
                iface.addrs.iter().map(|a| (a.ip, a.prefix)).collect();
            assert_eq!(our_addrs, view.addrs, "addresses of {name}");
            assert_eq!(
                iface.addrs.len(),
                view.addrs.len(),
                "duplicate addresses on {name}"
            );
            for addr in &iface.addrs {
                assert_eq!(
                    addr.broadcast,
                    view.broadcasts.get(&addr.ip).copied(),
                    "broadcast of {addr} on {name}"
                );
            }
            let has = |flag: &str| view.flags.contains(flag);
            assert!(!iface.flags.inferred, "flags of {name} read from /sys");
            assert_eq!(iface.flags.up, has("UP"), "UP on {name}");
            assert_eq!(iface.flags.loopback, has("LOOPBACK"), "LOOPBACK on {name}");
            assert_eq!(
                iface.flags.multicast,
                has("MULTICAST"),
                "MULTICAST on {name}"
            );
            assert_eq!(
                iface.flags.broadcast,
                has("BROADCAST"),
                "BROADCAST on {name}"
            );
            assert_eq!(
                iface.flags.point_to_point,
                has("POINTOPOINT"),
                "POINTOPOINT on {name}"
            );
        }

        let indexes: Vec<u32> = ours.iter().filter_map(|i| i.index).collect();
        assert!(indexes.is_sorted(), "sorted by index: {indexes:?}");
    }
}
