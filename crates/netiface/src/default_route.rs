//! The default route: which interface and gateway traffic to the internet
//! leaves through, read from the system's routing table without sending
//! anything.
//!
//! On Linux the tables are `/proc/net/route` (IPv4) and
//! `/proc/net/ipv6_route` (IPv6). Parsing them is done by pure functions,
//! [`parse_proc_net_route`] and [`parse_proc_net_ipv6_route`], which take
//! the file's text and skip any line they cannot read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::NetifaceError;

/// `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x0001;
/// `RTF_REJECT`: the route rejects traffic (an "unreachable" route).
const RTF_REJECT: u32 = 0x0200;

/// One default route: the interface it leaves through and the next hop.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DefaultRoute {
    /// The name of the interface the route leaves through.
    pub interface: String,
    /// The next hop, or `None` for a route straight onto the link (such as
    /// a point-to-point or VPN interface).
    pub gateway: Option<IpAddr>,
    /// The route's metric; among several default routes the lowest wins.
    pub metric: u32,
}

/// The default routes of both families, each `None` when there is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DefaultRoutes {
    /// The IPv4 default route (`0.0.0.0/0`).
    pub v4: Option<DefaultRoute>,
    /// The IPv6 default route (`::/0`).
    pub v6: Option<DefaultRoute>,
}

/// The default routes of this host (of the current network namespace),
/// read from the routing tables; nothing is sent.
///
/// A missing table (for example `/proc/net/ipv6_route` with IPv6 disabled)
/// gives `None` for that family.
///
/// # Errors
/// [`NetifaceError::Unsupported`] anywhere but Linux, and
/// [`NetifaceError::Io`] when a table exists but cannot be read.
pub fn default_routes() -> Result<DefaultRoutes, NetifaceError> {
    #[cfg(target_os = "linux")]
    {
        let read = |path: &str| match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NetifaceError::io(format!("reading {path}"), e)),
        };
        let v4 = read("/proc/net/route")?;
        let v6 = read("/proc/net/ipv6_route")?;
        Ok(DefaultRoutes {
            v4: v4.as_deref().and_then(parse_proc_net_route),
            v6: v6.as_deref().and_then(parse_proc_net_ipv6_route),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(NetifaceError::Unsupported(
            "reading the default route is only implemented on Linux",
        ))
    }
}

/// The IPv4 default route in the text of Linux's `/proc/net/route`.
///
/// A default route has destination `00000000` and mask `00000000`, is up
/// (`RTF_UP`) and is not a reject route; among several the lowest metric
/// wins, and the first listed on a tie. The kernel writes addresses as the
/// hexadecimal value of a 32-bit word in the machine's byte order (so
/// `010200C0` is `192.0.2.1` on little-endian machines); this function reads
/// them in the byte order of the machine it runs on. The header line and any
/// malformed line are skipped; this function never panics.
///
/// ```
/// use weft_netiface::default_route::parse_proc_net_route;
/// let gateway = u32::from_ne_bytes([192, 0, 2, 1]);
/// let text = format!(
///     "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
///      eth0\t00000000\t{gateway:08X}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
/// );
/// let route = parse_proc_net_route(&text).unwrap();
/// assert_eq!(route.interface, "eth0");
/// assert_eq!(route.gateway, Some("192.0.2.1".parse()?));
/// assert_eq!(route.metric, 100);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn parse_proc_net_route(text: &str) -> Option<DefaultRoute> {
    let routes = text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [iface, dest, gateway, flags, _refcnt, _use, metric, mask, ..] = fields[..] else {
            return None;
        };
        let hex = |s: &str| (s.len() == 8).then(|| hex_u32(s)).flatten();
        let (dest, gateway, mask) = (hex(dest)?, hex(gateway)?, hex(mask)?);
        let flags = hex_u32(flags)?;
        let metric = metric
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| metric.parse::<u32>().ok())
            .flatten()?;
        let default = dest == 0 && mask == 0;
        let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
        (default && usable).then(|| DefaultRoute {
            interface: iface.to_owned(),
            gateway: (gateway != 0).then(|| IpAddr::V4(Ipv4Addr::from(gateway.to_ne_bytes()))),
            metric,
        })
    });
    lowest_metric(routes)
}

/// The IPv6 default route in the text of Linux's `/proc/net/ipv6_route`.
///
/// Each line holds the destination and its prefix length, the source and
/// its prefix length, the next hop, the metric, the reference count, the use
/// count and the flags (all hexadecimal), then the interface name. A default
/// route has destination `::/0`, is up (`RTF_UP`) and is not a reject route
/// (Linux keeps an unreachable `::/0` on `lo`); among several the lowest
/// metric wins, and the first listed on a tie. Malformed lines are skipped;
/// this function never panics.
///
/// ```
/// use weft_netiface::default_route::parse_proc_net_ipv6_route;
/// let text = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
///             fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n";
/// let route = parse_proc_net_ipv6_route(text).unwrap();
/// assert_eq!(route.interface, "eth0");
/// assert_eq!(route.gateway, Some("fe80::1".parse()?));
/// assert_eq!(route.metric, 1024);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn parse_proc_net_ipv6_route(text: &str) -> Option<DefaultRoute> {
    let routes = text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            dest,
            dest_len,
            _src,
            _src_len,
            next_hop,
            metric,
            _refcnt,
            _use,
            flags,
            iface,
        ] = fields[..]
        else {
            return None;
        };
        let addr = |s: &str| {
            (s.len() == 32 && is_hex(s))
                .then(|| u128::from_str_radix(s, 16).ok())
                .flatten()
        };
        let (dest, next_hop) = (addr(dest)?, addr(next_hop)?);
        let (dest_len, metric, flags) = (hex_u32(dest_len)?, hex_u32(metric)?, hex_u32(flags)?);
        let default = dest == 0 && dest_len == 0;
        let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
        (default && usable).then(|| DefaultRoute {
            interface: iface.to_owned(),
            gateway: (next_hop != 0).then(|| IpAddr::V6(Ipv6Addr::from(next_hop))),
            metric,
        })
    });
    lowest_metric(routes)
}

/// Whether `s` is one or more hexadecimal digits (no sign, no `0x`).
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hexadecimal `u32` written with digits only.
fn hex_u32(s: &str) -> Option<u32> {
    is_hex(s).then(|| u32::from_str_radix(s, 16).ok()).flatten()
}

/// The route with the lowest metric, the first one on a tie.
fn lowest_metric(routes: impl Iterator<Item = DefaultRoute>) -> Option<DefaultRoute> {
    routes.fold(None, |best: Option<DefaultRoute>, r| match best {
        Some(b) if b.metric <= r.metric => Some(b),
        _ => Some(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    /// The gateway as the kernel writes it on this machine.
    fn gw(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    fn v4_line(iface: &str, dest: &str, gateway: &str, flags: &str, metric: u32) -> String {
        format!("{iface}\t{dest}\t{gateway}\t{flags}\t0\t0\t{metric}\t00000000\t0\t0\t0\n")
    }

    #[test]
    fn v4_default_with_gateway() {
        let text = format!(
            "{V4_HEADER}{}{}",
            v4_line("eth0", "00000000", &gw([192, 0, 2, 1]), "0003", 0),
            "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        );
        let route = parse_proc_net_route(&text).unwrap();
        assert_eq!(route.interface, "eth0");
        assert_eq!(route.gateway, Some(IpAddr::from([192, 0, 2, 1])));
        assert_eq!(route.metric, 0);
    }

    /// The exact text of a little-endian machine's table.
    #[cfg(target_endian = "little")]
    #[test]
    fn v4_sample_from_a_little_endian_machine() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT                                                       \n\
            wlp2s0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0                                                                               \n\
            wlp2s0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0                                                                               \n";
        let route = parse_proc_net_route(text).unwrap();
        assert_eq!(route.interface, "wlp2s0");
        assert_eq!(route.gateway, Some(IpAddr::from([192, 168, 1, 1])));
        assert_eq!(route.metric, 600);
    }

    #[test]
    fn v4_lowest_metric_wins_first_on_tie() {
        let text = format!(
            "{V4_HEADER}{}{}{}{}",
            v4_line("wlan0", "00000000", &gw([10, 0, 0, 1]), "0003", 600),
            v4_line("eth0", "00000000", &gw([10, 1, 0, 1]), "0003", 100),
            v4_line("eth1", "00000000", &gw([10, 2, 0, 1]), "0003", 100),
            v4_line("vpn0", "00000000", "00000000", "0001", 50),
        );
        let route = parse_proc_net_route(&text).unwrap();
        assert_eq!(route.interface, "vpn0");
        assert_eq!(route.gateway, None, "a route onto the link has no gateway");
        let without_vpn: String =
            text.lines()
                .filter(|l| !l.starts_with("vpn0"))
                .fold(String::new(), |mut s, l| {
                    s.push_str(l);
                    s.push('\n');
                    s
                });
        let route = parse_proc_net_route(&without_vpn).unwrap();
        assert_eq!(route.interface, "eth0");
        assert_eq!(route.gateway, Some(IpAddr::from([10, 1, 0, 1])));
    }

    #[test]
    fn v4_skips_down_reject_and_non_default() {
        let text = format!(
            "{V4_HEADER}{}{}{}{}",
            v4_line("down0", "00000000", &gw([10, 0, 0, 1]), "0002", 0),
            v4_line("rej0", "00000000", "00000000", "0201", 0),
            v4_line("eth0", "0000000A", "00000000", "0001", 0),
            "eth9\t00000000\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n",
        );
        assert_eq!(parse_proc_net_route(&text), None);
        assert_eq!(parse_proc_net_route(V4_HEADER), None);
        assert_eq!(parse_proc_net_route(""), None);
    }

    #[test]
    fn v4_malformed_lines_are_skipped() {
        let good = v4_line("eth0", "00000000", &gw([192, 0, 2, 1]), "0003", 5);
        for bad in [
            "eth0\n",
            "eth0\t00000000\n",
            "eth0\t00000000\t0102\t0003\t0\t0\t0\t00000000\n",
            "eth0\tZZZZZZZZ\t00000000\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
            "eth0\t00000000\t00000000\tXX\t0\t0\t0\t00000000\t0\t0\t0\n",
            "eth0\t00000000\t00000000\t0003\t0\t0\t-1\t00000000\t0\t0\t0\n",
            "eth0\t00000000\t00000000\t0003\t0\t0\t99999999999\t00000000\t0\t0\t0\n",
            "eth0\t000000000\t00000000\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
            "eth0\t+0000000\t00000000\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
            "\u{0}\u{ff}é\t\t\t\n",
            "\t\t\t\t\t\t\t\t\t\t\t\n",
            "eth0\t00000000\t00000000\t0003\t0\t0\t+5\t00000000\t0\t0\t0\n",
            "eth0\t00000000\t00000000\t+3\t0\t0\t5\t00000000\t0\t0\t0\n",
            "eth0\t00000000\t0x000000\t0003\t0\t0\t5\t00000000\t0\t0\t0\n",
        ] {
            assert_eq!(parse_proc_net_route(bad), None, "{bad:?}");
            let text = format!("{V4_HEADER}{bad}{good}{bad}");
            let route = parse_proc_net_route(&text).unwrap();
            assert_eq!((route.interface.as_str(), route.metric), ("eth0", 5));
        }
    }

    const V6_SAMPLE: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001       lo
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn v6_default_skips_the_unreachable_route_on_lo() {
        let route = parse_proc_net_ipv6_route(V6_SAMPLE).unwrap();
        assert_eq!(route.interface, "eth0");
        assert_eq!(route.gateway, Some("fd00::1".parse().unwrap()));
        assert_eq!(route.metric, 0x400);
        // Only the reject route left: no default.
        let only_lo: String = V6_SAMPLE.lines().last().unwrap().to_owned();
        assert_eq!(parse_proc_net_ipv6_route(&only_lo), None);
        assert_eq!(parse_proc_net_ipv6_route(""), None);
    }

    #[test]
    fn v6_lowest_metric_and_on_link() {
        let text = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000000 00000000 00450003    wlan0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000080 00000000 00000000 00000001     wg0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000002 00000080 00000000 00000000 00000003     eth0
";
        let route = parse_proc_net_ipv6_route(text).unwrap();
        assert_eq!(route.interface, "wg0");
        assert_eq!(route.gateway, None);
        assert_eq!(route.metric, 0x80);
    }

    #[test]
    fn v6_malformed_lines_are_skipped() {
        let good = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000000 00000000 00000003 eth0\n";
        for bad in [
            "garbage\n",
            "00000000000000000000000000000000 00\n",
            // Nine fields: no interface name.
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000001 0 0 00000003\n",
            // Eleven fields.
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000001 0 0 00000003 eth1 x\n",
            // Short destination.
            "0 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000001 0 0 00000003 eth1\n",
            // Destination too long.
            "000000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000001 0 0 00000003 eth1\n",
            // Bad prefix length, bad metric, bad flags, bad next hop.
            "00000000000000000000000000000000 0g 00000000000000000000000000000000 00 00000000000000000000000000000000 00000001 0 0 00000003 eth1\n",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 1ffffffff 0 0 00000003 eth1\n",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000001 0 0 zz eth1\n",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 0000000000000000000000000000000x 00000001 0 0 00000003 eth1\n",
            "\u{0}\u{ff}é \u{2028}\n",
        ] {
            assert_eq!(parse_proc_net_ipv6_route(bad), None, "{bad:?}");
            let text = format!("{bad}{good}{bad}");
            let route = parse_proc_net_ipv6_route(&text).unwrap();
            assert_eq!(route.interface, "eth0", "{bad:?}");
        }
    }

    /// Every truncation and every one-character corruption of real tables
    /// parses without panicking.
    #[test]
    fn mangled_tables_never_panic() {
        let v4 = format!(
            "{V4_HEADER}{}{}",
            v4_line("eth0", "00000000", &gw([192, 0, 2, 1]), "0003", 7),
            v4_line("eth1", "0000A8C0", "00000000", "0001", 0),
        );
        for text in [v4.as_str(), V6_SAMPLE] {
            let boundaries = text.char_indices().map(|(i, _)| i).chain([text.len()]);
            for cut in boundaries {
                let _ = parse_proc_net_route(&text[..cut]);
                let _ = parse_proc_net_ipv6_route(&text[..cut]);
            }
            for (i, c) in text.char_indices() {
                for replacement in ['\n', ' ', '\t', 'F', 'g', '-', '+', '\0', 'é'] {
                    let mut mangled = String::with_capacity(text.len() + 2);
                    mangled.push_str(&text[..i]);
                    mangled.push(replacement);
                    mangled.push_str(&text[i + c.len_utf8()..]);
                    let _ = parse_proc_net_route(&mangled);
                    let _ = parse_proc_net_ipv6_route(&mangled);
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_hosts_tables() {
        // Whatever the host has; only that reading works and agrees with
        // the parsers.
        let routes = default_routes().unwrap();
        let v4 = std::fs::read_to_string("/proc/net/route").ok();
        assert_eq!(routes.v4, v4.as_deref().and_then(parse_proc_net_route));
    }
}
