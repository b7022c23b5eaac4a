//! Discovery's beacons in the simulator: the streams the simulator carries
//! are only half of a participant's idle traffic, the other half is the
//! beacons its discovery keeps sending. They are not carried (every
//! participant of a simulated network hears every beacon, so nothing they
//! say would change), but they are counted: weft-discovery's own core,
//! with the default configuration, runs for a participant that hears
//! every participant it has a link to, and what it sends is measured.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weft_discovery::{DiscoveryConfig, DiscoveryCore, LocalParticipant};

use super::{Sim, id_of, key};

/// How long the measured core runs before its beacons are counted: past
/// its start burst and its answers to the participants it found, and at
/// least one steady interval at the largest backoff (a quarter of the
/// longest lease).
const WARM_UP: Duration = Duration::from_secs(30);

/// How long its beacons are counted: several steady intervals at the
/// largest backoff.
const MEASURED: Duration = Duration::from_secs(120);

/// How often the measured core hears each other participant again: well
/// within the lease of a beacon (a first beacon's lease is the shortest).
const REHEAR: Duration = Duration::from_secs(1);

impl Sim {
    /// The bytes per second of beacons `i` sends while idle (its discovery
    /// past its start and knowing everyone it hears: those up with a link
    /// to it): each beacon counted once per target of
    /// [`DiscoveryConfig::default`] (broadcast, IPv4 and IPv6 multicast),
    /// UDP payload only, as the streams' control bytes count messages
    /// only. The group's size slows the beacons down
    /// ([`DiscoveryConfig::backoff_above`]).
    pub(crate) fn beacon_rate(&mut self, i: usize) -> f64 {
        let config = DiscoveryConfig::default();
        let heard: Vec<usize> = self.adjacent[i]
            .iter()
            .copied()
            .filter(|&j| self.nodes[j].up)
            .filter(|&j| self.links.get(&key(i, j)).is_some_and(|l| l.up))
            .collect();
        let beacons: Vec<(Vec<u8>, SocketAddr)> =
            heard.iter().map(|&j| self.first_beacon(j)).collect();
        let start = self.now;
        let (mut core, _) = self.discovery_core(i, &config, start);
        let counted_from = start + WARM_UP;
        let end = counted_from + MEASURED;
        let mut next_hear = start;
        let mut bytes = 0u64;
        // Bounded: every turn moves time on to the next timer or the next
        // hearing, and both move on by at least a millisecond.
        for _ in 0..10_000_000 {
            let due = core.poll_timeout().map_or(next_hear, |t| t.min(next_hear));
            if due >= end {
                break;
            }
            let now = due;
            if now >= next_hear {
                for (beacon, from) in &beacons {
                    let _ = core.handle_beacon(beacon, *from, now);
                }
                next_hear = now + REHEAR;
            }
            core.handle_timeout(now);
            while let Some(beacon) = core.poll_transmit(now) {
                if now >= counted_from {
                    bytes += (beacon.len() * config.targets.len()) as u64;
                }
            }
            while core.poll_event().is_some() {}
        }
        bytes as f64 / MEASURED.as_secs_f64()
    }

    /// The first beacon `j`'s discovery sends in its current incarnation,
    /// and where it comes from.
    pub(super) fn first_beacon(&self, j: usize) -> (Vec<u8>, SocketAddr) {
        let config = DiscoveryConfig::default();
        let (mut core, at) = self.discovery_core(j, &config, self.now);
        let beacon = core.poll_transmit(self.now).expect("a first beacon");
        (beacon, at)
    }

    /// A discovery core for `j` in its current incarnation, started at
    /// `now`, and the address its beacons come from.
    fn discovery_core(
        &self,
        j: usize,
        config: &DiscoveryConfig,
        now: Instant,
    ) -> (DiscoveryCore, SocketAddr) {
        let index = u16::try_from(j).expect("at most 65 536 participants");
        let at = SocketAddr::from(([10, 0, (index >> 8) as u8, index as u8], 7000));
        let mut local = LocalParticipant::new(self.nodes[j].name.as_str(), vec![at]);
        local.id = id_of(j);
        local.incarnation = self.nodes[j].starts;
        (DiscoveryCore::new(local, config, now), at)
    }
}
