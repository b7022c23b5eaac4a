//! The tokio shell: one task owns the beacon sockets and drives the core.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    BeaconTarget, DiscoveryConfig, DiscoveryCore, DiscoveryError, DiscoveryEvent, DiscoveryStats,
    LocalParticipant, ParticipantId, RemoteParticipant,
};

/// Now, on the runtime's clock (which tests may pause), as the core takes it.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The loopback broadcast address.
const LOOPBACK_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

/// How long [`Discovery::close`] waits for the goodbye to leave.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    Close,
    Abort,
}

struct Shared {
    core: Mutex<DiscoveryCore>,
    wake: Notify,
    port: u16,
    done: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Says goodbye when the last handle is dropped.
struct StopOnDrop(watch::Sender<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_if_modified(|s| {
            if *s == Stop::Run {
                *s = Stop::Close;
                true
            } else {
                false
            }
        });
    }
}

/// Discovery running on the network: beacons sent and received on UDP by
/// one task, events on the [`DiscoveryEvents`] that
/// [`start`](Self::start) returns.
///
/// Cheap to clone; dropping the last clone stops it with a goodbye
/// beacon, like [`close`](Self::close).
#[derive(Clone)]
pub struct Discovery {
    shared: Arc<Shared>,
    stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("local", lock(&self.shared.core).local())
            .field("port", &self.shared.port)
            .finish()
    }
}

/// The events of a [`Discovery`]. Read them steadily: when
/// [`event_capacity`](DiscoveryConfig::event_capacity) are waiting, the
/// discovery task waits too.
#[derive(Debug)]
pub struct DiscoveryEvents {
    rx: mpsc::Receiver<DiscoveryEvent>,
}

impl DiscoveryEvents {
    /// The next event; `None` once discovery stopped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<DiscoveryEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<DiscoveryEvent> {
        self.rx.try_recv().ok()
    }
}

impl Discovery {
    /// Opens the beacon sockets (port [`DiscoveryConfig::port`], shared
    /// with other participants of this host through `SO_REUSEADDR` and
    /// `SO_REUSEPORT`) and starts announcing `local`. Needs a Tokio
    /// runtime.
    pub fn start(
        local: LocalParticipant,
        config: DiscoveryConfig,
    ) -> Result<(Discovery, DiscoveryEvents), DiscoveryError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DiscoveryError::NoRuntime);
        }
        if config.targets.is_empty() {
            return Err(DiscoveryError::Config("no beacon targets".into()));
        }
        let v4 = open_v4(config.bind_v4, config.port)?;
        let port = v4
            .local_addr()
            .map_err(|e| DiscoveryError::io("reading the beacon port", e))?
            .port();
        let wants_v6 = config.targets.iter().any(|t| match t {
            BeaconTarget::Multicast6(_) => true,
            BeaconTarget::Unicast(a) => a.is_ipv6(),
            _ => false,
        });
        let v6 = if wants_v6 {
            match open_v6(port) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no IPv6 beacons");
                    None
                }
            }
        } else {
            None
        };
        let core = DiscoveryCore::new(local, &config, clock());
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let (events_tx, rx) = mpsc::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake: Notify::new(),
            port,
            done: Mutex::new(None),
        });
        let task = Task {
            shared: shared.clone(),
            config,
            v4,
            v6,
            events: events_tx,
            stop: stop_rx,
            targets: Vec::new(),
            joined_v4: HashSet::new(),
            joined_v6: HashSet::new(),
            refreshed: None,
        };
        let handle = tokio::spawn(task.run());
        *lock(&shared.done) = Some(handle);
        Ok((
            Discovery {
                shared,
                stop: Arc::new(StopOnDrop(stop_tx)),
            },
            DiscoveryEvents { rx },
        ))
    }

    /// Who we announce.
    pub fn local(&self) -> LocalParticipant {
        lock(&self.shared.core).local().clone()
    }

    /// The UDP port beacons are received on (the configured one, or the
    /// one picked for port 0).
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// The participants known now.
    pub fn peers(&self) -> Vec<RemoteParticipant> {
        lock(&self.shared.core).peers().cloned().collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DiscoveryStats {
        lock(&self.shared.core).stats()
    }

    /// Keeps a participant we have a stream with when the table is full
    /// (see [`DiscoveryCore::protect`]). Returns whether it is known.
    pub fn protect(&self, id: ParticipantId) -> bool {
        lock(&self.shared.core).protect(id)
    }

    /// Changes the locators we announce; announced soon.
    pub fn set_locators(&self, locators: Vec<SocketAddr>) {
        lock(&self.shared.core).set_locators(locators, clock());
        self.shared.wake.notify_one();
    }

    /// Stops with a goodbye beacon, so that the others report us gone at
    /// once; waits (at most 2 s) for the task to end. Cancel-safe: the
    /// task stops whether or not this is awaited to the end.
    pub async fn close(&self) {
        self.stop.0.send_if_modified(|s| {
            if *s == Stop::Run {
                *s = Stop::Close;
                true
            } else {
                false
            }
        });
        self.join().await;
    }

    /// Stops at once without a goodbye, as if the process had died: the
    /// others report us gone when our lease runs out. Cancel-safe.
    pub async fn abort(&self) {
        self.stop.0.send_if_modified(|s| {
            if *s == Stop::Run {
                *s = Stop::Abort;
                true
            } else {
                false
            }
        });
        self.join().await;
    }

    async fn join(&self) {
        let handle = lock(&self.shared.done).take();
        if let Some(handle) = handle {
            let _ = tokio::time::timeout(CLOSE_WAIT, handle).await;
        }
    }
}

/// The beacon sockets' receive buffer: a large group's beacons (and the
/// answers to a burst of newcomers) can arrive faster than a busy task
/// takes them, and what the system drops is heard only an interval later.
/// A thousand beacons of the largest size fit.
const RECEIVE_BUFFER: usize = 1 << 20;

fn open_v4(bind: Ipv4Addr, port: u16) -> Result<UdpSocket, DiscoveryError> {
    let what = format!("opening the beacon socket {bind}:{port}");
    let err = |e| DiscoveryError::io(what.clone(), e);
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true).map_err(err)?;
    s.set_broadcast(true).map_err(err)?;
    s.set_multicast_loop_v4(true).map_err(err)?;
    s.set_multicast_ttl_v4(1).map_err(err)?;
    // Best effort: the system may cap it (net.core.rmem_max).
    let _ = s.set_recv_buffer_size(RECEIVE_BUFFER);
    s.bind(&SocketAddr::from((bind, port)).into())
        .map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

fn open_v6(port: u16) -> Result<UdpSocket, DiscoveryError> {
    let what = format!("opening the beacon socket [::]:{port}");
    let err = |e| DiscoveryError::io(what.clone(), e);
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    s.set_only_v6(true).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true).map_err(err)?;
    s.set_multicast_loop_v6(true).map_err(err)?;
    s.set_multicast_hops_v6(1).map_err(err)?;
    // Best effort: the system may cap it (net.core.rmem_max).
    let _ = s.set_recv_buffer_size(RECEIVE_BUFFER);
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())
        .map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

/// One destination of every beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    /// Plain send.
    To(SocketAddr),
    /// IPv4 multicast out of the interface with this address.
    Multicast4 { to: SocketAddrV4, via: Ipv4Addr },
    /// IPv6 multicast out of the interface with this index.
    Multicast6 { to: SocketAddrV6, via: u32 },
}

struct Task {
    shared: Arc<Shared>,
    config: DiscoveryConfig,
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    events: mpsc::Sender<DiscoveryEvent>,
    stop: watch::Receiver<Stop>,
    targets: Vec<Destination>,
    joined_v4: HashSet<(Ipv4Addr, Ipv4Addr)>,
    joined_v6: HashSet<(Ipv6Addr, u32)>,
    refreshed: Option<Instant>,
}

/// Beacons taken from a socket at once, at most: the rest wait for the
/// next turn, so that sending beacons and events is not held up.
const DRAIN: usize = 64;

/// Takes the beacons already waiting in `socket` (up to [`DRAIN`]) into
/// `core`, with one lock and one reading of the clock for all.
fn drain(socket: &UdpSocket, buf: &mut [u8], core: &mut DiscoveryCore, now: Instant) {
    for _ in 0..DRAIN {
        match socket.try_recv_from(buf) {
            Ok((n, from)) => {
                let _ = core.handle_beacon(&buf[..n], from, now);
            }
            // Nothing waiting, or an error the next receive reports.
            Err(_) => break,
        }
    }
}

impl Task {
    async fn run(mut self) {
        let mut buf_v4 = vec![0u8; crate::beacon::MAX_BEACON + 1];
        let mut buf_v6 = vec![0u8; crate::beacon::MAX_BEACON + 1];
        let mut pending = Vec::new();
        loop {
            let now = clock();
            if self
                .refreshed
                .is_none_or(|at| now.duration_since(at) >= self.config.interface_refresh)
            {
                self.refresh_interfaces();
                self.refreshed = Some(now);
            }
            let (beacons, deadline) = {
                let mut core = lock(&self.shared.core);
                let mut beacons = Vec::new();
                while let Some(b) = core.poll_transmit(now) {
                    beacons.push(b);
                }
                while let Some(e) = core.poll_event() {
                    pending.push(e);
                }
                (beacons, core.poll_timeout())
            };
            for b in &beacons {
                self.send(b).await;
            }
            for e in pending.drain(..) {
                // Waits while the reader is behind; a dropped reader is fine.
                let _ = self.events.send(e).await;
            }
            let deadline = deadline.unwrap_or_else(|| now + Duration::from_secs(3600));
            let refresh_at = self.refreshed.unwrap_or(now) + self.config.interface_refresh;
            let wake_at = deadline.min(refresh_at);
            let v6 = self.v6.as_ref();
            tokio::select! {
                r = self.v4.recv_from(&mut buf_v4) => {
                    if let Ok((n, from)) = r {
                        let mut core = lock(&self.shared.core);
                        let now = clock();
                        let _ = core.handle_beacon(&buf_v4[..n], from, now);
                        drain(&self.v4, &mut buf_v4, &mut core, now);
                    }
                }
                r = async { v6.expect("guarded").recv_from(&mut buf_v6).await }, if v6.is_some() => {
                    if let Ok((n, from)) = r {
                        let mut core = lock(&self.shared.core);
                        let now = clock();
                        let _ = core.handle_beacon(&buf_v6[..n], from, now);
                        drain(v6.expect("guarded"), &mut buf_v6, &mut core, now);
                    }
                }
                _ = tokio::time::sleep_until(wake_at.into()) => {
                    let mut core = lock(&self.shared.core);
                    let now = clock();
                    // Beacons that arrived while this task waited for a
                    // thread renew their leases before any lease is judged.
                    drain(&self.v4, &mut buf_v4, &mut core, now);
                    if let Some(v6) = v6 {
                        drain(v6, &mut buf_v6, &mut core, now);
                    }
                    core.handle_timeout(now);
                }
                _ = self.shared.wake.notified() => {}
                changed = self.stop.changed() => {
                    let how = if changed.is_err() { Stop::Close } else { *self.stop.borrow() };
                    if how == Stop::Close {
                        let bye = {
                            let mut core = lock(&self.shared.core);
                            core.leave();
                            core.poll_transmit(clock())
                        };
                        if let Some(bye) = bye {
                            self.send(&bye).await;
                        }
                    }
                    if how != Stop::Run {
                        break;
                    }
                }
            }
        }
        tracing::debug!("discovery stopped");
    }

    /// Reads the interfaces again: the destinations of broadcast and
    /// multicast targets, and group memberships on new interfaces.
    fn refresh_interfaces(&mut self) {
        let ifaces = match weft_netiface::interfaces() {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list interfaces");
                Vec::new()
            }
        };
        let port = self.shared.port;
        let suitable = ifaces.iter().filter(|i| {
            i.flags.up
                && !i.flags.loopback
                && (self.config.interfaces.is_empty() || self.config.interfaces.contains(&i.name))
        });
        let mut targets = Vec::new();
        for target in &self.config.targets {
            match target {
                BeaconTarget::Unicast(a) => targets.push(Destination::To(*a)),
                BeaconTarget::LoopbackBroadcast => targets.push(Destination::To(SocketAddr::from(
                    (LOOPBACK_BROADCAST, port),
                ))),
                BeaconTarget::Broadcast => {
                    for iface in suitable.clone() {
                        if !(iface.flags.broadcast || iface.flags.inferred) {
                            continue;
                        }
                        for a in &iface.addrs {
                            if let Some(b) = a.broadcast {
                                let d = Destination::To(SocketAddr::from((b, port)));
                                if !targets.contains(&d) {
                                    targets.push(d);
                                }
                            }
                        }
                    }
                }
                BeaconTarget::Multicast4(group) => {
                    for iface in suitable.clone() {
                        if !(iface.flags.multicast || iface.flags.inferred) {
                            continue;
                        }
                        let Some(via) = iface.addrs.iter().find_map(|a| match a.ip {
                            IpAddr::V4(v4) => Some(v4),
                            IpAddr::V6(_) => None,
                        }) else {
                            continue;
                        };
                        if self.joined_v4.insert((*group, via)) {
                            if let Err(e) = self.v4.join_multicast_v4(*group, via) {
                                tracing::debug!(%group, interface = %iface.name, error = %e, "join failed");
                            }
                        }
                        targets.push(Destination::Multicast4 {
                            to: SocketAddrV4::new(*group, port),
                            via,
                        });
                    }
                }
                BeaconTarget::Multicast6(group) => {
                    let Some(v6) = &self.v6 else { continue };
                    for iface in suitable.clone() {
                        if !(iface.flags.multicast || iface.flags.inferred) {
                            continue;
                        }
                        let Some(index) = iface.index else { continue };
                        let link_local = iface
                            .addrs
                            .iter()
                            .any(|a| matches!(a.ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80));
                        if !link_local {
                            continue;
                        }
                        if self.joined_v6.insert((*group, index)) {
                            if let Err(e) = v6.join_multicast_v6(group, index) {
                                tracing::debug!(%group, interface = %iface.name, error = %e, "join failed");
                            }
                        }
                        targets.push(Destination::Multicast6 {
                            to: SocketAddrV6::new(*group, port, 0, index),
                            via: index,
                        });
                    }
                }
            }
        }
        self.targets = targets;
    }

    async fn send(&self, beacon: &[u8]) {
        for d in &self.targets {
            let ok = match d {
                Destination::To(to) => match (to, &self.v6) {
                    (SocketAddr::V4(_), _) => self.v4.send_to(beacon, to).await.is_ok(),
                    (SocketAddr::V6(_), Some(v6)) => v6.send_to(beacon, to).await.is_ok(),
                    (SocketAddr::V6(_), None) => false,
                },
                Destination::Multicast4 { to, via } => {
                    socket2::SockRef::from(&self.v4)
                        .set_multicast_if_v4(via)
                        .is_ok()
                        && self.v4.send_to(beacon, SocketAddr::V4(*to)).await.is_ok()
                }
                Destination::Multicast6 { to, via } => match &self.v6 {
                    Some(v6) => {
                        socket2::SockRef::from(v6).set_multicast_if_v6(*via).is_ok()
                            && v6.send_to(beacon, SocketAddr::V6(*to)).await.is_ok()
                    }
                    None => false,
                },
            };
            if !ok {
                tracing::trace!(destination = ?d, "beacon not sent");
            }
            lock(&self.shared.core).record_send(ok);
        }
    }
}
