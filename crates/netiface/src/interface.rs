//! Enumerating network interfaces with their flags and addresses.
//!
//! Addresses come from [`if_addrs`]. On Linux the list of interfaces, their
//! indexes and their flags come from `/sys/class/net/<name>/{ifindex,flags}`,
//! so interfaces without an address are listed too. Elsewhere the list is
//! the interfaces [`if_addrs`] reports addresses for, the index comes from
//! `if_nametoindex`, and the flags are inferred from the addresses
//! ([`InterfaceFlags::inferred`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{NetifaceError, Scope};

/// A network interface: its name, index, flags and addresses.
///
/// Build the list with [`interfaces`]; one interface with
/// [`interface_by_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Interface {
    /// The name, such as `eth0`, `lo` or `en0`.
    pub name: String,
    /// The system's index for the interface (`None` only when the system
    /// would not say).
    pub index: Option<u32>,
    /// Up, loopback, multicast, broadcast, ...
    pub flags: InterfaceFlags,
    /// The addresses, IPv4 and IPv6, in the order the system lists them.
    pub addrs: Vec<InterfaceAddr>,
}

impl Interface {
    /// The interface's IP addresses, without prefixes.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addrs.iter().map(|a| a.ip)
    }

    /// The first address of the given scope, if any.
    pub fn addr_of_scope(&self, scope: Scope) -> Option<&InterfaceAddr> {
        self.addrs.iter().find(|a| a.scope == scope)
    }
}

/// An interface's flags.
///
/// On Linux these are the kernel's `IFF_*` flags from
/// `/sys/class/net/<name>/flags` and [`inferred`](InterfaceFlags::inferred) is
/// false. Elsewhere the system's flags are not read: `loopback` is set when
/// every address is a loopback address, `broadcast` when an IPv4 address
/// has a broadcast address, `up` and `running` are assumed, `multicast` and
/// `point_to_point` are left false, and `inferred` is true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct InterfaceFlags {
    /// The interface is administratively up (`IFF_UP`).
    pub up: bool,
    /// The link is operational (`IFF_RUNNING`).
    pub running: bool,
    /// The interface is a loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// The interface supports multicast (`IFF_MULTICAST`).
    pub multicast: bool,
    /// The interface has a valid broadcast address (`IFF_BROADCAST`).
    pub broadcast: bool,
    /// The interface is a point-to-point link (`IFF_POINTOPOINT`).
    pub point_to_point: bool,
    /// The flags were guessed from the addresses rather than read from the
    /// system.
    pub inferred: bool,
}

impl InterfaceFlags {
    /// Flags from the bits Linux uses (`/sys/class/net/<name>/flags`,
    /// `SIOCGIFFLAGS`): `IFF_UP` 0x1, `IFF_BROADCAST` 0x2, `IFF_LOOPBACK`
    /// 0x8, `IFF_POINTOPOINT` 0x10, `IFF_RUNNING` 0x40, `IFF_MULTICAST`
    /// 0x1000. Other bits are ignored.
    ///
    /// ```
    /// let flags = weft_netiface::InterfaceFlags::from_linux_bits(0x1003);
    /// assert!(flags.up && flags.broadcast && flags.multicast && !flags.loopback);
    /// ```
    pub fn from_linux_bits(bits: u32) -> InterfaceFlags {
        let has = |bit: u32| bits & bit != 0;
        InterfaceFlags {
            up: has(0x1),
            broadcast: has(0x2),
            loopback: has(0x8),
            point_to_point: has(0x10),
            running: has(0x40),
            multicast: has(0x1000),
            inferred: false,
        }
    }

    /// Flags guessed from an interface's addresses (see the type's docs).
    fn infer(addrs: &[InterfaceAddr]) -> InterfaceFlags {
        InterfaceFlags {
            up: true,
            running: true,
            loopback: !addrs.is_empty() && addrs.iter().all(|a| a.scope == Scope::Loopback),
            broadcast: addrs.iter().any(|a| a.broadcast.is_some()),
            multicast: false,
            point_to_point: false,
            inferred: true,
        }
    }
}

/// One address of an interface, with its prefix length, broadcast address
/// and [`Scope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct InterfaceAddr {
    /// The address.
    pub ip: IpAddr,
    /// The prefix length: how many leading bits name the network (0 to 32
    /// for IPv4, 0 to 128 for IPv6).
    pub prefix: u8,
    /// The IPv4 broadcast address, when the interface has one. IPv6 has no
    /// broadcast.
    pub broadcast: Option<Ipv4Addr>,
    /// What kind of address this is.
    pub scope: Scope,
}

impl InterfaceAddr {
    /// An address with its prefix length (clamped to the family's width)
    /// and broadcast address; the scope is computed with [`Scope::of`].
    ///
    /// ```
    /// use weft_netiface::{InterfaceAddr, Scope};
    /// let a = InterfaceAddr::new("10.1.2.3".parse()?, 24, None);
    /// assert_eq!(a.scope, Scope::Private);
    /// assert_eq!(a.network().to_string(), "10.1.2.0");
    /// assert!(a.contains("10.1.2.200".parse()?));
    /// assert_eq!(a.to_string(), "10.1.2.3/24");
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn new(ip: IpAddr, prefix: u8, broadcast: Option<Ipv4Addr>) -> InterfaceAddr {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        InterfaceAddr {
            ip,
            prefix: prefix.min(max),
            broadcast,
            scope: Scope::of(ip),
        }
    }

    /// The network address: the address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.ip {
            IpAddr::V4(ip) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask))
            }
            IpAddr::V6(ip) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
            }
        }
    }

    /// Whether `ip` is in this address's network (same family, same prefix).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.ip.is_ipv4()
            && InterfaceAddr::new(ip, self.prefix, None).network() == self.network()
    }
}

impl fmt::Display for InterfaceAddr {
    /// `address/prefix`, such as `192.168.1.7/24` or `fe80::1/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Every network interface of this host (of the current network namespace
/// on Linux), sorted by index, with its addresses.
///
/// Nothing is sent on the network. On Linux, interfaces without addresses
/// are included; elsewhere only those with at least one address are.
///
/// # Errors
/// [`NetifaceError::Io`] when the system will not list the addresses.
pub fn interfaces() -> Result<Vec<Interface>, NetifaceError> {
    let listed = if_addrs::get_if_addrs()
        .map_err(|e| NetifaceError::io("listing interface addresses", e))?;
    let mut all = sys::interfaces();
    for entry in listed {
        let (ip, prefix, broadcast) = match entry.addr {
            if_addrs::IfAddr::V4(v4) => (IpAddr::V4(v4.ip), v4.prefixlen, v4.broadcast),
            if_addrs::IfAddr::V6(v6) => (IpAddr::V6(v6.ip), v6.prefixlen, None),
        };
        let addr = InterfaceAddr::new(ip, prefix, broadcast);
        // Linux lists labelled IPv4 addresses under their label (`eth0:1`),
        // which if_nametoindex maps to the interface's own index.
        let found = all.iter_mut().find(|i| match (i.index, entry.index) {
            (Some(a), Some(b)) => a == b,
            _ => i.name == entry.name,
        });
        match found {
            Some(iface) => iface.addrs.push(addr),
            None => all.push(Interface {
                name: entry.name,
                index: entry.index,
                flags: InterfaceFlags {
                    inferred: true,
                    ..InterfaceFlags::default()
                },
                addrs: vec![addr],
            }),
        }
    }
    for iface in &mut all {
        if iface.flags.inferred {
            iface.flags = InterfaceFlags::infer(&iface.addrs);
        }
    }
    all.sort_by(|a, b| {
        (a.index.unwrap_or(u32::MAX), &a.name).cmp(&(b.index.unwrap_or(u32::MAX), &b.name))
    });
    Ok(all)
}

/// The interface with this name.
///
/// # Errors
/// [`NetifaceError::NoSuchInterface`] when there is none, and the errors of
/// [`interfaces`].
pub fn interface_by_name(name: &str) -> Result<Interface, NetifaceError> {
    interfaces()?
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| NetifaceError::NoSuchInterface(name.to_owned()))
}

/// The index of the interface with this name (`if_nametoindex`).
///
/// # Errors
/// [`NetifaceError::NoSuchInterface`] when there is none.
pub fn index_of(name: &str) -> Result<u32, NetifaceError> {
    sys::index_of(name).ok_or_else(|| NetifaceError::NoSuchInterface(name.to_owned()))
}

/// The name of the interface with this index (`if_indextoname`).
///
/// # Errors
/// [`NetifaceError::NoSuchIndex`] when there is none.
pub fn name_of(index: u32) -> Result<String, NetifaceError> {
    sys::name_of(index).ok_or(NetifaceError::NoSuchIndex(index))
}

/// Parses a number as sysfs writes it: decimal, or hexadecimal after `0x`,
/// with surrounding whitespace.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_sys_number(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(unix)]
mod sys {
    use std::ffi::{CStr, CString};

    pub(super) fn index_of(name: &str) -> Option<u32> {
        let name = CString::new(name).ok()?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        (index != 0).then_some(index)
    }

    pub(super) fn name_of(index: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
        let ptr = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: on success the buffer holds a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Some(name.to_string_lossy().into_owned())
    }

    /// The interfaces listed in /sys/class/net, with the kernel's flags.
    ///
    /// An entry whose index disagrees with `if_nametoindex` belongs to
    /// another network namespace (a /sys mounted outside this one) and is
    /// left out; if_addrs fills in what it knows of the real interface.
    #[cfg(target_os = "linux")]
    pub(super) fn interfaces() -> Vec<super::Interface> {
        use super::{Interface, InterfaceFlags, parse_sys_number};
        let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
            return Vec::new();
        };
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| parse_sys_number(&t))
        };
        let mut found = Vec::new();
        for entry in dir.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            // Files such as `bonding_masters` have no ifindex.
            let Some(sys_index) = read(path.join("ifindex")) else {
                continue;
            };
            if index_of(&name) != Some(sys_index) {
                continue;
            }
            let flags = match read(path.join("flags")) {
                Some(bits) => InterfaceFlags::from_linux_bits(bits),
                None => InterfaceFlags {
                    inferred: true,
                    ..InterfaceFlags::default()
                },
            };
            found.push(Interface {
                name,
                index: Some(sys_index),
                flags,
                addrs: Vec::new(),
            });
        }
        found
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn interfaces() -> Vec<super::Interface> {
        Vec::new()
    }
}

#[cfg(not(unix))]
mod sys {
    pub(super) fn index_of(name: &str) -> Option<u32> {
        super::interfaces()
            .ok()?
            .into_iter()
            .find(|i| i.name == name)?
            .index
    }

    pub(super) fn name_of(index: u32) -> Option<String> {
        super::interfaces()
            .ok()?
            .into_iter()
            .find(|i| i.index == Some(index))
            .map(|i| i.name)
    }

    pub(super) fn interfaces() -> Vec<super::Interface> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str, prefix: u8) -> InterfaceAddr {
        InterfaceAddr::new(s.parse().unwrap(), prefix, None)
    }

    #[test]
    fn networks_and_containment() {
        assert_eq!(addr("192.168.7.9", 24).network().to_string(), "192.168.7.0");
        assert_eq!(addr("192.168.7.9", 0).network().to_string(), "0.0.0.0");
        assert_eq!(addr("192.168.7.9", 32).network().to_string(), "192.168.7.9");
        assert_eq!(addr("192.168.7.9", 99).prefix, 32);
        assert_eq!(addr("fe80::1:2:3:4", 64).network().to_string(), "fe80::");
        assert_eq!(addr("::1", 128).network().to_string(), "::1");
        assert_eq!(addr("2001:db8::1", 0).network().to_string(), "::");
        assert!(addr("10.0.0.1", 8).contains("10.200.3.4".parse().unwrap()));
        assert!(!addr("10.0.0.1", 8).contains("11.0.0.1".parse().unwrap()));
        assert!(!addr("0.0.0.0", 0).contains("::".parse().unwrap()));
        assert_eq!(addr("fe80::1", 64).to_string(), "fe80::1/64");
    }

    #[test]
    fn flags_from_bits_and_inferred() {
        let lo = InterfaceFlags::from_linux_bits(0x9); // UP | LOOPBACK
        assert!(lo.up && lo.loopback && !lo.broadcast && !lo.multicast && !lo.inferred);
        let eth = InterfaceFlags::from_linux_bits(0x1043);
        assert!(eth.up && eth.running && eth.broadcast && eth.multicast && !eth.loopback);
        assert_eq!(
            InterfaceFlags::from_linux_bits(0),
            InterfaceFlags::default()
        );

        let inferred = InterfaceFlags::infer(&[addr("127.0.0.1", 8), addr("::1", 128)]);
        assert!(inferred.loopback && inferred.inferred && !inferred.broadcast);
        let inferred = InterfaceFlags::infer(&[InterfaceAddr::new(
            "10.0.0.2".parse().unwrap(),
            24,
            Some("10.0.0.255".parse().unwrap()),
        )]);
        assert!(!inferred.loopback && inferred.broadcast);
        assert!(!InterfaceFlags::infer(&[]).loopback);
    }

    #[test]
    fn sys_numbers() {
        assert_eq!(parse_sys_number("0x1003\n"), Some(0x1003));
        assert_eq!(parse_sys_number("  17 \n"), Some(17));
        assert_eq!(parse_sys_number(""), None);
        assert_eq!(parse_sys_number("0x"), None);
        assert_eq!(parse_sys_number("zz"), None);
        assert_eq!(parse_sys_number("99999999999"), None);
    }

    #[test]
    fn loopback_is_listed() {
        let all = interfaces().unwrap();
        let lo = all
            .iter()
            .find(|i| i.flags.loopback)
            .expect("a loopback interface");
        assert!(lo.index.is_some());
        assert_eq!(index_of(&lo.name).ok(), lo.index);
        assert_eq!(name_of(lo.index.unwrap()).unwrap(), lo.name);
        assert_eq!(interface_by_name(&lo.name).unwrap().name, lo.name);
        assert!(matches!(
            index_of("weft-no-such-if"),
            Err(NetifaceError::NoSuchInterface(_))
        ));
        assert!(matches!(
            interface_by_name("weft-no-such-if"),
            Err(NetifaceError::NoSuchInterface(_))
        ));
        assert!(matches!(
            index_of("bad\0name"),
            Err(NetifaceError::NoSuchInterface(_))
        ));
        assert!(matches!(
            name_of(u32::MAX),
            Err(NetifaceError::NoSuchIndex(_))
        ));
    }
}
