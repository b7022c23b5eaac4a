//! Plain configuration with documented defaults.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The UDP port beacons are sent to and received on by default.
pub const DEFAULT_BEACON_PORT: u16 = 47_474;

/// The IPv4 multicast group of the default configuration (in the
/// organization-local scope `239.255.0.0/16`).
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 74, 74);

/// The IPv6 link-local multicast group of the default configuration.
pub const DEFAULT_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x77, 0x6566);

/// Where beacons are sent. Every target but [`Unicast`](Self::Unicast)
/// uses [`DiscoveryConfig::port`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BeaconTarget {
    /// IPv4 broadcast on every suitable interface: to the broadcast
    /// address of each of its IPv4 addresses (as
    /// [`weft_netiface`] reports it).
    Broadcast,
    /// An IPv4 multicast group, sent on and joined on every suitable
    /// multicast interface (`IP_MULTICAST_IF` set to the interface's
    /// address, TTL 1).
    Multicast4(Ipv4Addr),
    /// An IPv6 link-local multicast group, sent on and joined on every
    /// suitable multicast interface (by interface index).
    Multicast6(Ipv6Addr),
    /// This host only: the loopback broadcast address `127.255.255.255`.
    /// Linux delivers it to every socket bound to the port on the
    /// unspecified address (several participants of one host can share
    /// the port with `SO_REUSEPORT`), and never sends it off the host.
    /// Linux's `lo` has neither the BROADCAST nor the MULTICAST flag, so
    /// [`Broadcast`](Self::Broadcast) and the multicast targets skip it;
    /// this target is how participants of one host (or of tests) find
    /// each other without touching a real network.
    LoopbackBroadcast,
    /// One address. Unicast reaches one socket even when several share
    /// the port, so participants found this way each need their own port;
    /// useful for routed networks and for building topologies in tests.
    Unicast(SocketAddr),
}

/// How discovery behaves. Each field documents its default; the defaults
/// make a new participant visible to the others within 2 seconds (its
/// first beacon leaves at once, [`burst`](Self::burst) more follow
/// within a few hundred milliseconds, and participants that hear a
/// newcomer answer at once).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// The UDP port beacons are received on and sent to; 0 picks a free
    /// port (useful with unicast targets). Default: [`DEFAULT_BEACON_PORT`].
    pub port: u16,
    /// Where beacons go. Default: [`BeaconTarget::Broadcast`],
    /// [`BeaconTarget::Multicast4`]`(`[`DEFAULT_GROUP_V4`]`)` and
    /// [`BeaconTarget::Multicast6`]`(`[`DEFAULT_GROUP_V6`]`)`.
    pub targets: Vec<BeaconTarget>,
    /// Only these interfaces (by name) are used for broadcast and
    /// multicast; empty means every suitable one (up and not loopback).
    /// Default: empty.
    pub interfaces: Vec<String>,
    /// How long an announcement holds: a participant not heard from for
    /// this long is reported gone. Default: 4 s.
    pub lease: Duration,
    /// Time between announcements once the start burst is over, at most
    /// `lease / 4` (so a participant survives three lost beacons in a
    /// row); each wait is shortened by up to 10 % at random so that
    /// participants do not announce in step. Default: 1 s.
    pub interval: Duration,
    /// Beacons sent at start, the first at once. Default: 3.
    pub burst: u32,
    /// Time between the beacons of the start burst; also the shortest time
    /// between an answer to a newcomer and the previous beacon.
    /// Default: 150 ms.
    pub burst_interval: Duration,
    /// Answer a newly found participant (or a restarted one) with a beacon
    /// at once (at most one per [`burst_interval`](Self::burst_interval)),
    /// so that it does not wait a whole interval to see us. Default: true.
    pub answer_newcomers: bool,
    /// The group size up to which beacons keep the pace above. In a larger
    /// group the pace slows in steps: with `n` participants known, the
    /// steady interval, the lease our beacons announce and the shortest
    /// gap between answers to newcomers are multiplied by `n /
    /// backoff_above` rounded up to a power of two (the interval at most
    /// [`max_lease`](Self::max_lease)` / 4`). So a participant hears about
    /// `backoff_above` beacons per interval however large the group, and,
    /// while newcomers keep arriving, at most one answer per participant
    /// per `backoff_above` answer gaps: its beacon traffic stays bounded
    /// whatever the group's size. A participant that stops is noticed
    /// later in a large group (one longer lease); a newcomer still hears
    /// everyone's answer within one such gap. 0 keeps the pace whatever
    /// the size. Default: 32.
    pub backoff_above: usize,
    /// Participants tracked at once. When the table is full, a newcomer
    /// takes the place of the participant heard from least recently among
    /// those not [protected](crate::DiscoveryCore::protect) (reported
    /// [gone](crate::GoneReason::Evicted) and counted); when every one is
    /// protected, the newcomer's beacons are rejected and counted.
    /// Default: 1024.
    pub max_participants: usize,
    /// The longest lease accepted: a beacon asking for more is held for
    /// this long (and counted), so one beacon cannot keep a participant
    /// for weeks. Default: 60 s.
    pub max_lease: Duration,
    /// The group's shared secret: with one, beacons carry an HMAC-SHA256
    /// tag and beacons without a valid tag are dropped and counted (see
    /// [`GroupKey`](crate::GroupKey)). Default: none.
    pub group_key: Option<crate::GroupKey>,
    /// How often the interface list is read again (new interfaces get
    /// beacons and join the groups). Default: 5 s.
    pub interface_refresh: Duration,
    /// Events waiting to be read from
    /// [`DiscoveryEvents`](crate::DiscoveryEvents); when full, the
    /// discovery task waits for the reader (nothing is dropped, but
    /// beacons are neither sent nor read meanwhile). Default: 1024.
    pub event_capacity: usize,
    /// The IPv4 address the beacon socket binds to. Broadcasts are only
    /// received on the unspecified address. Default: `0.0.0.0`.
    pub bind_v4: Ipv4Addr,
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            port: DEFAULT_BEACON_PORT,
            targets: vec![
                BeaconTarget::Broadcast,
                BeaconTarget::Multicast4(DEFAULT_GROUP_V4),
                BeaconTarget::Multicast6(DEFAULT_GROUP_V6),
            ],
            interfaces: Vec::new(),
            lease: Duration::from_secs(4),
            interval: Duration::from_secs(1),
            burst: 3,
            burst_interval: Duration::from_millis(150),
            answer_newcomers: true,
            backoff_above: 32,
            max_participants: 1024,
            max_lease: Duration::from_secs(60),
            group_key: None,
            interface_refresh: Duration::from_secs(5),
            event_capacity: 1024,
            bind_v4: Ipv4Addr::UNSPECIFIED,
        }
    }
}

impl DiscoveryConfig {
    /// The default timing with beacons to `127.255.255.255` on `port`
    /// only: participants of this host find each other, nothing leaves it.
    pub fn loopback(port: u16) -> DiscoveryConfig {
        DiscoveryConfig {
            port,
            targets: vec![BeaconTarget::LoopbackBroadcast],
            ..DiscoveryConfig::default()
        }
    }

    /// The time between steady announcements: [`interval`](Self::interval)
    /// clamped to at most `lease / 4` (and at least 1 ms).
    pub fn effective_interval(&self) -> Duration {
        self.interval
            .min(self.lease / 4)
            .max(Duration::from_millis(1))
    }
}
